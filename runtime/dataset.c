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
 * The batcher walks a permutation of [0, count).  Each epoch's permutation
 * is a Fisher-Yates shuffle of the identity drawn from the stream (seed,
 * "shuffle", epoch), so it depends only on the seed and the epoch number:
 * a run resumed at epoch e sees the same orders as an uninterrupted one.
 * Each batch is gathered into contiguous x / y buffers allocated once, as
 * train_step wants them; the last batch of an epoch may be short.
 */
#include "cnnrt.h"

#include <errno.h>
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
