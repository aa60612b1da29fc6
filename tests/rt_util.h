/*
 * rt_util.h — helpers for the runtime's tests: scratch directories, files
 * (raw, gzip, IDX), a synthetic dataset, capturing the runtime's log, and
 * running cnn_train_main with arguments.
 *
 * Every test works in its own directory under one base directory that
 * test_runtime's main() creates and removes at the end, so a failing test
 * (check ends its forked child at the failed assertion) leaves nothing
 * behind either.
 */
#ifndef RT_UTIL_H
#define RT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "cnnrt.h"

/* ---- directories and paths -------------------------------------------------- */

void rt_base_create(void);          /* main(): make the base directory */
void rt_base_remove(void);          /* main(): remove it and all inside */
const char *rt_tmpdir(void);        /* a fresh directory (static storage) */
/* dir + "/" + name in one of 16 rotating static buffers. */
const char *rt_path(const char *dir, const char *name);
void rt_rmtree(const char *path);
/* Number of entries of dir whose name contains `part`. */
int rt_count_entries(const char *dir, const char *part);

/* ---- files -------------------------------------------------------------------- */

void rt_write_file(const char *path, const void *data, size_t n);
void rt_write_gz(const char *path, const void *data, size_t n);
/* Whole file, malloc'd (NULL if unreadable); *n receives its size. */
uint8_t *rt_read_file(const char *path, size_t *n);
int rt_files_equal(const char *a, const char *b);

/* An IDX file image in memory: magic, big-endian dims, data; malloc'd. */
uint8_t *rt_idx_bytes(uint32_t magic, const uint32_t *dims, int ndim, const uint8_t *data,
                      size_t ndata, size_t *total);
void rt_write_idx(const char *path, int gz, uint32_t magic, const uint32_t *dims, int ndim,
                  const uint8_t *data, size_t ndata);

/* The learnable synthetic set for the fake model: 1x4x4 images where
 * class k has bright pixels in row k and noise elsewhere.  Writes
 * <split>-images-idx3-ubyte[.gz] and the labels into dir. */
void rt_write_split(const char *dir, const char *split, uint32_t count, uint64_t seed,
                    int gz);
void rt_write_dataset(const char *dir, uint32_t train, uint32_t test, int gz);

/* ---- the log ------------------------------------------------------------------ */

/* Captured messages, one per line, prefixed "E: ", "W: ", "I: " or "P: ". */
typedef struct rt_log {
    char text[1 << 16];
    size_t len;
    int count[4]; /* per enum cnn_log_level */
} rt_log;

void rt_log_start(rt_log *l); /* route cnn_log into l (cleared) */
void rt_log_stop(void);       /* restore the default logger */
int rt_log_has(const rt_log *l, const char *needle);

/* cnn_train_main(&cnn_model) with argv {"train", args..., NULL-terminated},
 * its log captured in l; returns the exit status. */
int rt_train(rt_log *l, ...);

#endif
