/*
 * rt_util.c — the helpers of rt_util.h.
 *
 * Helpers fail the current test (ck_abort_msg) when the test's own setup
 * cannot be done, so that a broken environment reads as such and not as a
 * runtime bug.
 */
#include "rt_util.h"

#include <check.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "rt_fake_model.h"

static char base_dir[256];

/* ---- directories and paths -------------------------------------------------- */

void rt_base_create(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(base_dir, sizeof base_dir, "%s/cnnrt-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        exit(1);
    }
}

void rt_base_remove(void)
{
    if (base_dir[0])
        rt_rmtree(base_dir);
}

const char *rt_tmpdir(void)
{
    static char dirs[4][300];
    static int next;
    char *d = dirs[next++ % 4];
    snprintf(d, sizeof dirs[0], "%s/t-XXXXXX", base_dir);
    ck_assert_msg(mkdtemp(d) != NULL, "cannot create a directory in %s", base_dir);
    return d;
}

const char *rt_path(const char *dir, const char *name)
{
    static char bufs[16][4096];
    static int next;
    char *p = bufs[next++ % 16];
    snprintf(p, sizeof bufs[0], "%s/%s", dir, name);
    return p;
}

void rt_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        chmod(path, 0700);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[4096];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            rt_rmtree(child);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int rt_count_entries(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot list %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

/* ---- files -------------------------------------------------------------------- */

void rt_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(n == 0 || fwrite(data, 1, n, f) == n);
    ck_assert(fclose(f) == 0);
}

void rt_write_gz(const char *path, const void *data, size_t n)
{
    gzFile f = gzopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert(n == 0 || gzwrite(f, data, (unsigned)n) == (int)n);
    ck_assert(gzclose(f) == Z_OK);
}

uint8_t *rt_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    ck_assert(buf != NULL);
    *n = fread(buf, 1, (size_t)size, f);
    fclose(f);
    return buf;
}

int rt_files_equal(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    uint8_t *x = rt_read_file(a, &na), *y = rt_read_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

uint8_t *rt_idx_bytes(uint32_t magic, const uint32_t *dims, int ndim, const uint8_t *data,
                      size_t ndata, size_t *total)
{
    *total = 4 + 4 * (size_t)ndim + ndata;
    uint8_t *b = malloc(*total), *p = b;
    ck_assert(b != NULL);
    for (int i = 0; i <= ndim; i++) {
        uint32_t v = i == 0 ? magic : dims[i - 1];
        *p++ = (uint8_t)(v >> 24);
        *p++ = (uint8_t)(v >> 16);
        *p++ = (uint8_t)(v >> 8);
        *p++ = (uint8_t)v;
    }
    if (ndata)
        memcpy(p, data, ndata);
    return b;
}

void rt_write_idx(const char *path, int gz, uint32_t magic, const uint32_t *dims, int ndim,
                  const uint8_t *data, size_t ndata)
{
    size_t total;
    uint8_t *b = rt_idx_bytes(magic, dims, ndim, data, ndata, &total);
    if (gz)
        rt_write_gz(path, b, total);
    else
        rt_write_file(path, b, total);
    free(b);
}

void rt_write_split(const char *dir, const char *split, uint32_t count, uint64_t seed, int gz)
{
    uint8_t *pix = malloc((size_t)count * FAKE_IN), *lab = malloc(count ? count : 1);
    ck_assert(pix && lab);
    cnn_rng r;
    cnn_rng_seed(&r, seed);
    for (uint32_t i = 0; i < count; i++) {
        lab[i] = (uint8_t)cnn_rng_below(&r, FAKE_CLASSES);
        for (int j = 0; j < FAKE_IN; j++) {
            int bright = j / 4 == lab[i]; /* row k lights up for class k */
            pix[(size_t)i * FAKE_IN + j] =
                (uint8_t)(bright ? 160 + cnn_rng_below(&r, 96) : cnn_rng_below(&r, 100));
        }
    }
    char name[128];
    uint32_t idims[3] = {count, 4, 4};
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", split, gz ? ".gz" : "");
    rt_write_idx(rt_path(dir, name), gz, 0x803, idims, 3, pix, (size_t)count * FAKE_IN);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", split, gz ? ".gz" : "");
    rt_write_idx(rt_path(dir, name), gz, 0x801, &count, 1, lab, count);
    free(pix);
    free(lab);
}

void rt_write_dataset(const char *dir, uint32_t train, uint32_t test, int gz)
{
    rt_write_split(dir, "train", train, 1, gz);
    rt_write_split(dir, "t10k", test, 2, gz);
}

/* ---- the log ------------------------------------------------------------------ */

static void capture(void *user, enum cnn_log_level level, const char *msg)
{
    static const char prefix[] = "EWIP";
    rt_log *l = user;
    if (level >= 0 && level <= CNN_LOG_PROGRESS)
        l->count[level]++;
    int n = snprintf(l->text + l->len, sizeof l->text - l->len, "%c: %s\n",
                     prefix[level <= CNN_LOG_PROGRESS ? level : 0], msg);
    if (n > 0)
        l->len += (size_t)n < sizeof l->text - l->len ? (size_t)n : sizeof l->text - l->len - 1;
}

void rt_log_start(rt_log *l)
{
    memset(l, 0, sizeof *l);
    cnn_set_log(capture, l);
}

void rt_log_stop(void)
{
    cnn_set_log(NULL, NULL);
}

int rt_log_has(const rt_log *l, const char *needle)
{
    return strstr(l->text, needle) != NULL;
}

int rt_train(rt_log *l, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "train";
    va_list ap;
    va_start(ap, l);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    rt_log_start(l);
    int rc = cnn_train_main(argc, argv, &cnn_model);
    rt_log_stop();
    return rc;
}
