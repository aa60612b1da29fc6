/*
 * testutil.h — helpers for the compiler-side tests: compile a network from
 * source text, load the result, fill tensors, compare tensors.
 */
#ifndef CNNC_TESTUTIL_H
#define CNNC_TESTUTIL_H

#include <stdint.h>

#include "cnnc.h"
#include "cnnrt.h"

/* A private temporary directory for this test process (created once,
 * removed at exit). */
const char *tu_tmpdir(void);

/* Path of a file in the temporary directory: tu_path("lenet.so"). */
char *tu_path(const char *name);

/* Write text to a file; 0 or -1. */
int tu_write(const char *path, const char *text);

/* Run the front end on text (the file name is used in messages).  Returns
 * 0 on success; diagnostics are captured into *diags (malloc'd, may be
 * NULL). */
int tu_frontend(cnnc_unit *u, cnnc_options *opt, const char *name, const char *text,
                char **diags);

/* A compiled and loaded network. */
typedef struct tu_model {
    cnnc_unit unit;      /* the compiled build */
    cnnc_unit ref;       /* the same network at -O0: the graphs the reference runs */
    cnnc_options opt;
    cnnc_options ref_opt;
    char *so_path;
    void *handle;
    const cnn_model_desc *desc;
    cnn_ctx *ctx;
} tu_model;

/* Compile text at opt_level into a .so in the temp dir and load it.
 * Returns 0, or -1 with the reason printed. */
int tu_compile(tu_model *m, const char *name, const char *text, int opt_level);
/* The same with the forward pass in chunks of `chunk` examples. */
int tu_compile_chunked(tu_model *m, const char *name, const char *text, int opt_level,
                       int chunk);
/* The same with the options in *opt (opt_level among them); the
 * reference is built with the same options at -O0. */
int tu_compile_with(tu_model *m, const char *name, const char *text, const cnnc_options *opt);
void tu_model_free(tu_model *m);

/* Fill with uniform values in [lo, hi) from a seeded generator. */
void tu_fill(float *x, int64_t count, float lo, float hi, uint64_t seed);
void tu_fill_labels(int32_t *y, int count, int classes, uint64_t seed);

/* Write an MNIST-style split (DIR/SPLIT-images-idx3-ubyte and
 * DIR/SPLIT-labels-idx1-ubyte, raw) of count 28x28 images: ten classes drawn
 * as bright horizontal bands at class-dependent rows, plus noise, so a
 * network learns them in a few epochs.  0 or -1. */
int tu_write_idx_split(const char *dir, const char *split, int count, uint64_t seed);

/* Write count CIFAR-10 records to path (the binary format: a label byte,
 * then 32x32 red, green and blue planes, no header).  Each of the ten
 * classes has its own colour (every channel at one of three levels) under
 * uniform noise, so a network learns them in a few epochs.  0 or -1. */
int tu_write_cifar_file(const char *path, int count, uint64_t seed);

/* Run argv[0] with argv (NULL-terminated); stdout and stderr go to *out
 * (malloc'd, may be NULL).  Returns the exit status, -1 if it did not exit. */
int tu_run(const char *const *argv, char **out);
/* The first cap - 1 bytes of a file as a string (malloc'd; empty if the
 * file cannot be read). */
char *tu_read_text(const char *path, size_t cap);

/* max |a - b| / max(max |b|, floor): the error of a against reference b. */
double tu_rel_err(const float *a, const float *b, int64_t count, double floor);

#endif
