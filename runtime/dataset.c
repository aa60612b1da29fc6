/*
 * dataset.c — labelled image sets in memory and the batches drawn from
 * them.
 *
 * A dataset is two flat arrays: images as float NCHW in [0, 1] and int32
 * labels.  cnn_dataset_load_dir finds the files of a split in an
 * MNIST-style directory; cnn_dataset_check compares a dataset with what a
 * model expects, so that a mismatch is one clear line before training
 * rather than garbage (or a crash) inside generated code.
 *
 * cnn_data_load tells the formats apart by the files a directory holds:
 * IDX files of the split first, then CIFAR-10's batches in the directory or
 * in the cifar-10-batches-bin folder its archive unpacks to.
 * cnn_dataset_stats and cnn_dataset_split serve normalization and the
 * validation set: the split draws its subset from the stream (seed,
 * "validation", 0) and compacts the training part in place, so holding out
 * a fraction of CIFAR-10 costs only the memory of the fraction.
 *
 * The batcher walks a permutation of [0, count).  Each epoch's permutation
 * is a Fisher-Yates shuffle of the identity drawn from the stream (seed,
 * "shuffle", epoch), so it depends only on the seed and the epoch number:
 * a run resumed at epoch e sees the same orders as an uninterrupted one.
 * Each batch is gathered into contiguous x / y buffers allocated once, as
 * train_step wants them; the last batch of an epoch may be short.
 */
#include "cnnrt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Set buf to "<dir>/<split>-<stem>.gz" or, if that does not exist, to the
 * name without ".gz".  Returns 0, or -1 when neither exists. */
static int find_split_file(char *buf, size_t size, const char *dir, const char *split,
                           const char *stem)
{
    snprintf(buf, size, "%s/%s-%s.gz", dir, split, stem);
    if (access(buf, F_OK) == 0)
        return 0;
    snprintf(buf, size, "%s/%s-%s", dir, split, stem);
    return access(buf, F_OK) == 0 ? 0 : -1;
}

int cnn_dataset_load_dir(const char *dir, const char *split, cnn_dataset *ds, cnn_error *err)
{
    char images[4096], labels[4096];
    memset(ds, 0, sizeof *ds);
    if (strlen(dir) + strlen(split) + 32 > sizeof images)
        return cnn_fail(err, "%s: path too long", dir);
    struct stat st;
    if (stat(dir, &st) != 0)
        return cnn_fail(err, "%s: data directory: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cnn_fail(err, "%s: data directory: not a directory", dir);
    if (find_split_file(images, sizeof images, dir, split, "images-idx3-ubyte") < 0)
        return cnn_fail(err, "%s: no %s images: neither %s.gz nor %s exists", dir, split,
                        images, images);
    if (find_split_file(labels, sizeof labels, dir, split, "labels-idx1-ubyte") < 0)
        return cnn_fail(err, "%s: no %s labels: neither %s.gz nor %s exists", dir, split,
                        labels, labels);
    return cnn_idx_load(images, labels, ds, err);
}

/* ---- finding a data set ------------------------------------------------------- */

#define CIFAR_TRAIN_FILES 5

/* Put the paths of the CIFAR-10 files of a split that exist in dir into
 * paths, in order; returns how many. */
static int find_cifar_files(const char *dir, int test, char paths[][4096])
{
    int n = 0;
    if (test) {
        snprintf(paths[0], 4096, "%s/test_batch.bin", dir);
        return access(paths[0], F_OK) == 0;
    }
    for (int i = 1; i <= CIFAR_TRAIN_FILES; i++) {
        snprintf(paths[n], 4096, "%s/data_batch_%d.bin", dir, i);
        n += access(paths[n], F_OK) == 0;
    }
    return n;
}

int cnn_data_load(const char *dir, int test, cnn_dataset *ds, cnn_error *err)
{
    memset(ds, 0, sizeof *ds);
    const char *split = test ? "t10k" : "train";
    char paths[CIFAR_TRAIN_FILES][4096], sub[4096];
    if (strlen(dir) + 64 > sizeof sub)
        return cnn_fail(err, "%s: path too long", dir);
    struct stat st;
    if (stat(dir, &st) != 0)
        return cnn_fail(err, "%s: data directory: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cnn_fail(err, "%s: data directory: not a directory", dir);

    /* MNIST-style: either half present means IDX (load_dir names the other). */
    if (find_split_file(paths[0], sizeof paths[0], dir, split, "images-idx3-ubyte") == 0 ||
        find_split_file(paths[0], sizeof paths[0], dir, split, "labels-idx1-ubyte") == 0)
        return cnn_dataset_load_dir(dir, split, ds, err);

    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    const char *dirs[2] = {dir, sub};
    for (int d = 0; d < 2; d++) {
        int n = find_cifar_files(dirs[d], test, paths);
        if (n > 0) {
            const char *list[CIFAR_TRAIN_FILES];
            for (int i = 0; i < n; i++)
                list[i] = paths[i];
            return cnn_cifar10_load(list, n, ds, err);
        }
    }
    return cnn_fail(err,
                    "%s: no %s data found: looked for MNIST-style %s-images-idx3-ubyte[.gz] "
                    "and %s-labels-idx1-ubyte[.gz], and CIFAR-10 %s in %s and %s",
                    dir, test ? "test" : "training", split, split,
                    test ? "test_batch.bin" : "data_batch_1.bin .. data_batch_5.bin", dir, sub);
}

/* ---- statistics and the validation split --------------------------------------- */

void cnn_dataset_stats(const cnn_dataset *ds, double *mean, double *std)
{
    size_t plane = (size_t)ds->h * (size_t)ds->w, example = (size_t)ds->c * plane;
    double n = (double)ds->count * (double)plane;
    for (int ch = 0; ch < ds->c; ch++) {
        /* Two passes in double: the mean, then squared deviations from it,
         * which keeps the variance accurate over millions of pixels. */
        double sum = 0, squares = 0;
        for (int64_t i = 0; i < ds->count; i++) {
            const float *p = ds->images + (size_t)i * example + (size_t)ch * plane;
            for (size_t j = 0; j < plane; j++)
                sum += p[j];
        }
        double m = n > 0 ? sum / n : 0;
        for (int64_t i = 0; i < ds->count; i++) {
            const float *p = ds->images + (size_t)i * example + (size_t)ch * plane;
            for (size_t j = 0; j < plane; j++)
                squares += (p[j] - m) * (p[j] - m);
        }
        mean[ch] = m;
        std[ch] = n > 0 ? sqrt(squares / n) : 0;
    }
}

int cnn_dataset_split(cnn_dataset *ds, double fraction, uint64_t seed, cnn_dataset *val,
                      cnn_error *err)
{
    memset(val, 0, sizeof *val);
    val->c = ds->c, val->h = ds->h, val->w = ds->w;
    if (!(fraction >= 0 && fraction < 1))
        return cnn_fail(err, "validation split: fraction %g must be in [0, 1)", fraction);
    int64_t n = ds->count, k = (int64_t)floor(fraction * (double)n + 0.5);
    if (fraction > 0 && k == 0 && n > 1)
        k = 1; /* asked for a validation set: at least one example */
    if (k == 0)
        return 0;
    if (k >= n)
        return cnn_fail(err, "validation split: holding out %g of %lld examples leaves none "
                        "to train on", fraction, (long long)n);
    size_t example = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    int64_t *pick = malloc((size_t)n * sizeof *pick);
    uint8_t *held = calloc((size_t)n, 1);
    val->images = malloc((size_t)k * example * sizeof *val->images);
    val->labels = malloc((size_t)k * sizeof *val->labels);
    if (!pick || !held || !val->images || !val->labels) {
        free(pick);
        free(held);
        cnn_dataset_free(val);
        return cnn_fail(err, "validation split: out of memory for %lld examples", (long long)k);
    }
    /* The first k of a partial Fisher-Yates shuffle: a uniform k-subset. */
    cnn_rng r;
    cnn_rng_seed_stream(&r, seed, "validation", 0);
    for (int64_t i = 0; i < n; i++)
        pick[i] = i;
    for (int64_t i = 0; i < k; i++) {
        int64_t j = i + (int64_t)cnn_rng_below(&r, (uint64_t)(n - i));
        int64_t t = pick[i];
        pick[i] = pick[j];
        pick[j] = t;
        held[pick[i]] = 1;
    }
    free(pick);
    /* Both parts in the original order; the kept part moves down in place
     * (the write position never passes the read position). */
    int64_t nv = 0, nt = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *from = ds->images + (size_t)i * example;
        if (held[i]) {
            memcpy(val->images + (size_t)nv * example, from, example * sizeof *from);
            val->labels[nv++] = ds->labels[i];
        } else {
            if (nt != i)
                memmove(ds->images + (size_t)nt * example, from, example * sizeof *from);
            ds->labels[nt++] = ds->labels[i];
        }
    }
    free(held);
    ds->count = nt;
    val->count = nv;
    if (example > 0) { /* give the held-out part back; a failed shrink keeps the block */
        float *images = realloc(ds->images, (size_t)nt * example * sizeof *images);
        int32_t *labels = realloc(ds->labels, (size_t)nt * sizeof *labels);
        ds->images = images ? images : ds->images;
        ds->labels = labels ? labels : ds->labels;
    }
    return 0;
}

int cnn_dataset_check(const cnn_dataset *ds, const cnn_model_desc *m, const char *what,
                      cnn_error *err)
{
    if (ds->c != m->in_c || ds->h != m->in_h || ds->w != m->in_w)
        return cnn_fail(err, "%s: images are %dx%dx%d (CxHxW), but model %s takes %dx%dx%d",
                        what, (int)ds->c, (int)ds->h, (int)ds->w, m->name, (int)m->in_c,
                        (int)m->in_h, (int)m->in_w);
    if (ds->count < 1)
        return cnn_fail(err, "%s: no images", what);
    for (int64_t i = 0; i < ds->count; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= m->classes)
            return cnn_fail(err, "%s: label %d of image %lld is outside [0, %d) of model %s",
                            what, (int)ds->labels[i], (long long)i, (int)m->classes, m->name);
    return 0;
}

void cnn_dataset_free(cnn_dataset *ds)
{
    if (!ds)
        return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* ---- batches -------------------------------------------------------------- */

int cnn_batcher_init(cnn_batcher *b, const cnn_dataset *ds, int batch, int shuffle,
                     uint64_t seed, cnn_error *err)
{
    memset(b, 0, sizeof *b);
    if (batch < 1)
        return cnn_fail(err, "batcher: batch size %d must be >= 1", batch);
    if (ds->count < 0)
        return cnn_fail(err, "batcher: bad dataset count %lld", (long long)ds->count);
    int64_t example = (int64_t)ds->c * ds->h * ds->w;
    b->ds = ds;
    b->batch = batch;
    b->shuffle = shuffle;
    b->seed = seed;
    b->pos = ds->count; /* nothing until the first cnn_batcher_epoch */
    b->order = malloc((size_t)(ds->count > 0 ? ds->count : 1) * sizeof *b->order);
    b->x = malloc((size_t)batch * (size_t)(example > 0 ? example : 1) * sizeof *b->x);
    b->y = malloc((size_t)batch * sizeof *b->y);
    if (!b->order || !b->x || !b->y) {
        cnn_batcher_free(b);
        return cnn_fail(err, "batcher: out of memory for %lld examples", (long long)ds->count);
    }
    for (int64_t i = 0; i < ds->count; i++)
        b->order[i] = i;
    return 0;
}

void cnn_batcher_epoch(cnn_batcher *b)
{
    int64_t n = b->ds->count;
    b->pos = 0;
    for (int64_t i = 0; i < n; i++)
        b->order[i] = i;
    if (b->shuffle) {
        cnn_rng_seed_stream(&b->rng, b->seed, "shuffle", (uint64_t)b->epoch);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)cnn_rng_below(&b->rng, (uint64_t)i + 1);
            int64_t t = b->order[i];
            b->order[i] = b->order[j];
            b->order[j] = t;
        }
    }
    b->epoch++;
}

int cnn_batcher_next(cnn_batcher *b)
{
    const cnn_dataset *ds = b->ds;
    int64_t left = ds->count - b->pos;
    if (left <= 0)
        return 0;
    int n = left < b->batch ? (int)left : b->batch;
    size_t example = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    for (int i = 0; i < n; i++) {
        int64_t k = b->order[b->pos + i];
        memcpy(b->x + (size_t)i * example, ds->images + (size_t)k * example,
               example * sizeof(float));
        b->y[i] = ds->labels[k];
    }
    b->pos += n;
    return n;
}

void cnn_batcher_free(cnn_batcher *b)
{
    if (!b)
        return;
    free(b->order);
    free(b->x);
    free(b->y);
    memset(b, 0, sizeof *b);
}
