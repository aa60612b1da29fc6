/*
 * rt_test_loader.c — CIFAR-10 files, finding a data set's format,
 * statistics, the validation split and the loader.
 *
 * CIFAR-10 files are generated small (a few records) with known labels and
 * pixel bytes.  Loader tests mostly use images whose first pixel is the
 * example's index, so a batch shows which examples came out in which order;
 * determinism tests use random images with every augmentation on and
 * compare whole epochs bit for bit: thread against no thread, resumed
 * against uninterrupted, one loader against another.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnnrt.h"
#include "rt_suites.h"
#include "rt_util.h"

#define REC 3073

/* n CIFAR-10 records: record r has label (first + r) % 10 and pixel byte
 * i = (first + r + i) % 256. */
static void write_cifar(const char *path, int first, int n)
{
    uint8_t *b = malloc((size_t)n * REC + 1);
    ck_assert(b != NULL);
    for (int r = 0; r < n; r++) {
        b[(size_t)r * REC] = (uint8_t)((first + r) % 10);
        for (int i = 0; i < 3072; i++)
            b[(size_t)r * REC + 1 + i] = (uint8_t)((first + r + i) % 256);
    }
    rt_write_file(path, b, (size_t)n * REC);
    free(b);
}

/* Example k of ds is record `first + k` as written by write_cifar. */
static void check_cifar_example(const cnn_dataset *ds, int64_t k, int first)
{
    ck_assert_int_eq(ds->labels[k], (first + k) % 10);
    const float *img = ds->images + k * 3072;
    for (int i = 0; i < 3072; i += 341) /* R, G and B planes */
        ck_assert_float_eq(img[i], (float)((first + k + i) % 256) / 255.0f);
}

START_TEST(test_cifar_good)
{
    const char *dir = rt_tmpdir();
    const char *paths[2] = {rt_path(dir, "a.bin"), rt_path(dir, "b.bin")};
    write_cifar(paths[0], 0, 3);
    write_cifar(paths[1], 3, 2);
    cnn_dataset ds;
    cnn_error err;
    ck_assert_msg(cnn_cifar10_load(paths, 2, &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.count, 5);
    ck_assert(ds.c == 3 && ds.h == 32 && ds.w == 32);
    for (int k = 0; k < 5; k++)
        check_cifar_example(&ds, k, 0);
    /* Plane order: red (bytes 1..1024) first, then green, then blue. */
    ck_assert_float_eq(ds.images[1024], (float)(1024 % 256) / 255.0f);
    cnn_dataset_free(&ds);
}
END_TEST

START_TEST(test_cifar_broken)
{
    const char *dir = rt_tmpdir();
    const char *good = rt_path(dir, "good.bin");
    write_cifar(good, 0, 2);
    size_t n;
    uint8_t *bytes = rt_read_file(good, &n);
    const char *bad = rt_path(dir, "bad.bin");
    const char *missing = rt_path(dir, "missing.bin");
    struct {
        size_t size;      /* bytes of the good file to keep */
        int label_at;     /* record whose label becomes 10, or -1 */
        const char *path; /* file to load after the good one */
        const char *expect;
    } cases[] = {
        {2 * REC - 5, -1, bad, "6141 bytes is not a whole number of 3073-byte records"},
        {100, -1, bad, "truncated"},
        {2 * REC, 1, bad, "record 1 has label 10, expected 0..9"},
        {0, -1, bad, "empty file"},
        {0, -1, missing, "No such file"},
        {0, -1, dir, "not a regular file"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (cases[k].path == bad) {
            if (cases[k].label_at >= 0)
                bytes[(size_t)cases[k].label_at * REC] = 10;
            rt_write_file(bad, bytes, cases[k].size);
        }
        const char *paths[2] = {good, cases[k].path};
        cnn_dataset ds;
        cnn_error err;
        ck_assert_int_eq(cnn_cifar10_load(paths, 2, &ds, &err), -1);
        ck_assert_msg(strstr(err.msg, cases[k].expect), "case %zu: \"%s\" not in \"%s\"", k,
                      cases[k].expect, err.msg);
        ck_assert_msg(strncmp(err.msg, cases[k].path, strlen(cases[k].path)) == 0,
                      "file not named: %s", err.msg);
        ck_assert_ptr_null(ds.images);
        ck_assert_int_eq(ds.count, 0);
    }
    free(bytes);
    cnn_dataset ds;
    cnn_error err;
    ck_assert_int_eq(cnn_cifar10_load(NULL, 0, &ds, &err), -1);
}
END_TEST

/* ---- finding the format ------------------------------------------------------------ */

START_TEST(test_data_load_formats)
{
    cnn_dataset ds;
    cnn_error err;
    /* MNIST-style IDX. */
    const char *idx = rt_tmpdir();
    rt_write_dataset(idx, 12, 5, 1);
    ck_assert_msg(cnn_data_load(idx, 0, &ds, &err) == 0, "%s", err.msg);
    ck_assert(ds.count == 12 && ds.c == 1 && ds.h == 4);
    cnn_dataset_free(&ds);
    ck_assert_int_eq(cnn_data_load(idx, 1, &ds, &err), 0);
    ck_assert_int_eq(ds.count, 5);
    cnn_dataset_free(&ds);
    /* Half an IDX split: the IDX loader's message, not "no data". */
    remove(rt_path(idx, "t10k-labels-idx1-ubyte.gz"));
    ck_assert_int_eq(cnn_data_load(idx, 1, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "no t10k labels"), "%s", err.msg);

    /* CIFAR-10 in the directory: the batches that exist, in order. */
    const char *cifar = rt_tmpdir();
    write_cifar(rt_path(cifar, "data_batch_1.bin"), 0, 3);
    write_cifar(rt_path(cifar, "data_batch_3.bin"), 3, 2);
    write_cifar(rt_path(cifar, "test_batch.bin"), 7, 4);
    ck_assert_msg(cnn_data_load(cifar, 0, &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.count, 5);
    for (int k = 0; k < 5; k++)
        check_cifar_example(&ds, k, 0);
    cnn_dataset_free(&ds);
    ck_assert_int_eq(cnn_data_load(cifar, 1, &ds, &err), 0);
    ck_assert(ds.count == 4 && ds.c == 3 && ds.w == 32);
    check_cifar_example(&ds, 3, 7);
    cnn_dataset_free(&ds);

    /* ... or in cifar-10-batches-bin, as the archive unpacks. */
    const char *outer = rt_tmpdir();
    const char *inner = rt_path(outer, "cifar-10-batches-bin");
    ck_assert_int_eq(mkdir(inner, 0755), 0);
    for (int i = 1; i <= 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", i);
        write_cifar(rt_path(inner, name), 2 * (i - 1), 2);
    }
    ck_assert_int_eq(cnn_data_load(outer, 0, &ds, &err), 0);
    ck_assert_int_eq(ds.count, 10);
    for (int k = 0; k < 10; k++)
        check_cifar_example(&ds, k, 0);
    cnn_dataset_free(&ds);
    /* No test_batch.bin there: one message listing what was looked for. */
    ck_assert_int_eq(cnn_data_load(outer, 1, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "no test data found") &&
                  strstr(err.msg, "t10k-images-idx3-ubyte[.gz]") &&
                  strstr(err.msg, "test_batch.bin") && strstr(err.msg, inner) &&
                  strncmp(err.msg, outer, strlen(outer)) == 0, "%s", err.msg);
    /* A broken batch is reported by the CIFAR loader. */
    rt_write_file(rt_path(inner, "data_batch_4.bin"), "x", 1);
    ck_assert_int_eq(cnn_data_load(outer, 0, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "data_batch_4.bin: truncated or not CIFAR-10"), "%s", err.msg);

    /* Neither format. */
    const char *empty = rt_tmpdir();
    ck_assert_int_eq(cnn_data_load(empty, 0, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "no training data found") &&
                  strstr(err.msg, "train-images-idx3-ubyte[.gz]") &&
                  strstr(err.msg, "data_batch_1.bin .. data_batch_5.bin"), "%s", err.msg);
    ck_assert_int_eq(cnn_data_load(rt_path(empty, "nope"), 0, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "No such file"), "%s", err.msg);
    ck_assert_ptr_null(ds.images);
}
END_TEST

/* ---- statistics and the split ----------------------------------------------------------- */

/* count examples of c x 1 x 2: pixel 0 of channel 0 is the index, label i % 3. */
static cnn_dataset indexed_set(int64_t count, int c)
{
    cnn_dataset ds = {.count = count, .c = c, .h = 1, .w = 2};
    ds.images = calloc((size_t)count * (size_t)c * 2, sizeof(float));
    ds.labels = malloc((size_t)count * sizeof(int32_t));
    ck_assert(ds.images && ds.labels);
    for (int64_t i = 0; i < count; i++) {
        ds.images[i * c * 2] = (float)i;
        ds.images[i * c * 2 + 1] = (float)-i;
        ds.labels[i] = (int32_t)(i % 3);
    }
    return ds;
}

/* count random images of c x h x w in [0, 1] with a channel-dependent offset. */
static cnn_dataset random_set(int64_t count, int c, int h, int w, uint64_t seed)
{
    cnn_dataset ds = {.count = count, .c = c, .h = h, .w = w};
    size_t n = (size_t)count * (size_t)(c * h * w);
    ds.images = malloc(n * sizeof(float));
    ds.labels = malloc((size_t)count * sizeof(int32_t));
    ck_assert(ds.images && ds.labels);
    cnn_rng r;
    cnn_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        int ch = (int)(i / (size_t)(h * w) % (size_t)c);
        ds.images[i] = (float)(0.2 * ch + 0.5 * cnn_rng_uniform(&r));
    }
    for (int64_t i = 0; i < count; i++)
        ds.labels[i] = (int32_t)(i % 10);
    return ds;
}

START_TEST(test_stats)
{
    /* Channel 0: 0.25 and 0.75 alternating: mean 0.5, std 0.25.
     * Channel 1: always 1: mean 1, std 0. */
    cnn_dataset ds = {.count = 3, .c = 2, .h = 1, .w = 2};
    float images[12] = {0.25f, 0.75f, 1, 1, 0.75f, 0.25f, 1, 1, 0.25f, 0.75f, 1, 1};
    ds.images = images;
    double mean[3], std[3];
    cnn_dataset_stats(&ds, mean, std);
    ck_assert_double_eq(mean[0], 0.5);
    ck_assert_double_eq(std[0], 0.25);
    ck_assert_double_eq(mean[1], 1);
    ck_assert_double_eq(std[1], 0);
    /* Population std (divides by n): values 0, 1, 2, 3 -> sqrt(1.25). */
    float four[4] = {0, 1, 2, 3};
    cnn_dataset one = {.count = 2, .c = 1, .h = 1, .w = 2, .images = four};
    cnn_dataset_stats(&one, mean, std);
    ck_assert_double_eq_tol(mean[0], 1.5, 1e-15);
    ck_assert_double_eq_tol(std[0], sqrt(1.25), 1e-15);
    /* A large set: accumulated in double, so no drift. */
    cnn_dataset big = random_set(2000, 3, 8, 8, 4);
    cnn_dataset_stats(&big, mean, std);
    for (int ch = 0; ch < 3; ch++) {
        ck_assert_double_eq_tol(mean[ch], 0.2 * ch + 0.25, 2e-3);
        ck_assert_double_eq_tol(std[ch], 0.5 / sqrt(12), 2e-3);
    }
    cnn_dataset_free(&big);
}
END_TEST

/* The indices (pixel 0) of ds's examples into out; checks labels too. */
static void indices(const cnn_dataset *ds, int64_t *out)
{
    for (int64_t i = 0; i < ds->count; i++) {
        out[i] = (int64_t)ds->images[i * ds->c * 2];
        ck_assert_float_eq(ds->images[i * ds->c * 2 + 1], (float)-out[i]);
        ck_assert_int_eq(ds->labels[i], out[i] % 3);
    }
}

START_TEST(test_split)
{
    cnn_dataset ds = indexed_set(100, 2), val;
    cnn_error err;
    ck_assert_msg(cnn_dataset_split(&ds, 0.2, 7, &val, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.count, 80);
    ck_assert_int_eq(val.count, 20);
    ck_assert(val.c == 2 && val.h == 1 && val.w == 2);
    int64_t train_idx[100], val_idx[100];
    indices(&ds, train_idx);
    indices(&val, val_idx);
    int seen[100] = {0};
    for (int i = 0; i < 80; i++) {
        seen[train_idx[i]]++;
        ck_assert(i == 0 || train_idx[i] > train_idx[i - 1]); /* original order */
    }
    for (int i = 0; i < 20; i++) {
        seen[val_idx[i]]++;
        ck_assert(i == 0 || val_idx[i] > val_idx[i - 1]);
    }
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(seen[i], 1); /* disjoint, and together everything */
    /* Not simply the first or last 20. */
    ck_assert(val_idx[0] > 0 || val_idx[19] < 99);
    ck_assert(val_idx[19] - val_idx[0] > 19);

    /* The same seed picks the same examples; another seed others. */
    cnn_dataset again = indexed_set(100, 2), val2, other = indexed_set(100, 2), val3;
    ck_assert_int_eq(cnn_dataset_split(&again, 0.2, 7, &val2, &err), 0);
    ck_assert_int_eq(cnn_dataset_split(&other, 0.2, 8, &val3, &err), 0);
    int64_t idx2[100], idx3[100];
    indices(&val2, idx2);
    indices(&val3, idx3);
    ck_assert(memcmp(val_idx, idx2, 20 * sizeof *idx2) == 0);
    ck_assert(memcmp(val_idx, idx3, 20 * sizeof *idx3) != 0);
    cnn_dataset_free(&again);
    cnn_dataset_free(&val2);
    cnn_dataset_free(&other);
    cnn_dataset_free(&val3);

    /* Both own their memory: split the training part again. */
    cnn_dataset val4;
    ck_assert_int_eq(cnn_dataset_split(&ds, 0.5, 1, &val4, &err), 0);
    ck_assert(ds.count == 40 && val4.count == 40);
    cnn_dataset_free(&val4);
    cnn_dataset_free(&val);
    cnn_dataset_free(&ds);
}
END_TEST

START_TEST(test_split_edges)
{
    cnn_dataset ds = indexed_set(10, 1), val;
    cnn_error err;
    ck_assert_int_eq(cnn_dataset_split(&ds, 0, 1, &val, &err), 0); /* nothing held out */
    ck_assert(ds.count == 10 && val.count == 0 && val.images == NULL);
    cnn_dataset_free(&val);
    ck_assert_int_eq(cnn_dataset_split(&ds, 0.01, 1, &val, &err), 0); /* at least one */
    ck_assert(ds.count == 9 && val.count == 1);
    cnn_dataset_free(&val);
    ck_assert_int_eq(cnn_dataset_split(&ds, 1.0, 1, &val, &err), -1);
    ck_assert_msg(strstr(err.msg, "fraction 1 must be in [0, 1)"), "%s", err.msg);
    ck_assert_int_eq(cnn_dataset_split(&ds, -0.5, 1, &val, &err), -1);
    ck_assert_int_eq(ds.count, 9); /* untouched by a refusal */
    cnn_dataset_free(&ds);
    ds = indexed_set(1, 1);
    ck_assert_int_eq(cnn_dataset_split(&ds, 0.9, 1, &val, &err), -1);
    ck_assert_msg(strstr(err.msg, "leaves none to train on"), "%s", err.msg);
    ck_assert_int_eq(ds.count, 1);
    cnn_dataset_free(&ds);
}
END_TEST

/* ---- the loader -------------------------------------------------------------------------- */

/* One epoch's batches, copied: sizes, images and labels. */
typedef struct epoch_run {
    int batches;
    int sizes[64];
    float *x;    /* all images of the epoch, in batch order */
    int32_t *y;
    int64_t n;   /* examples */
} epoch_run;

/* Run epoch e from batch skip to the end. */
static epoch_run run_epoch(cnn_loader *l, const cnn_dataset *ds, int64_t e, int64_t skip)
{
    size_t example = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    epoch_run r = {0};
    r.x = malloc((size_t)(ds->count + 1) * example * sizeof *r.x);
    r.y = malloc((size_t)(ds->count + 1) * sizeof *r.y);
    ck_assert(r.x && r.y);
    cnn_loader_epoch(l, e, skip);
    const float *x;
    const int32_t *y;
    int n;
    while ((n = cnn_loader_next(l, &x, &y)) > 0) {
        ck_assert(r.batches < 64 && r.n + n <= ds->count);
        r.sizes[r.batches++] = n;
        memcpy(r.x + (size_t)r.n * example, x, (size_t)n * example * sizeof *x);
        memcpy(r.y + r.n, y, (size_t)n * sizeof *y);
        r.n += n;
    }
    ck_assert_int_eq(cnn_loader_next(l, &x, &y), 0); /* stays at the end */
    return r;
}

static int same_run(const epoch_run *a, const epoch_run *b, size_t example)
{
    return a->batches == b->batches && a->n == b->n &&
           memcmp(a->sizes, b->sizes, (size_t)a->batches * sizeof a->sizes[0]) == 0 &&
           memcmp(a->x, b->x, (size_t)a->n * example * sizeof *a->x) == 0 &&
           memcmp(a->y, b->y, (size_t)a->n * sizeof *a->y) == 0;
}

static void free_run(epoch_run *r)
{
    free(r->x);
    free(r->y);
}

/* The tail of a from example `from`, compared with b. */
static int same_tail(const epoch_run *a, int64_t from, const epoch_run *b, size_t example)
{
    return a->n - from == b->n &&
           memcmp(a->x + (size_t)from * example, b->x,
                  (size_t)b->n * example * sizeof *b->x) == 0 &&
           memcmp(a->y + from, b->y, (size_t)b->n * sizeof *b->y) == 0;
}

/* Every example exactly once per epoch, shuffled or in file order, with
 * and without the background thread. */
START_TEST(test_loader_each_once)
{
    int background = _i;
    cnn_dataset ds = indexed_set(23, 1);
    cnn_error err;
    cnn_loader *l = cnn_loader_create(&ds, 5, 1, 0, NULL, 99, background, &err);
    ck_assert_msg(l != NULL, "%s", err.msg);
    ck_assert_int_eq(cnn_loader_batches(l), 5);
    const float *x;
    const int32_t *y;
    ck_assert_int_eq(cnn_loader_next(l, &x, &y), 0); /* no epoch yet */
    int64_t first[23];
    for (int e = 0; e < 3; e++) {
        epoch_run r = run_epoch(l, &ds, e, 0);
        ck_assert_int_eq(r.batches, 5);
        ck_assert(r.sizes[0] == 5 && r.sizes[3] == 5 && r.sizes[4] == 3);
        int seen[23] = {0}, identity = 1;
        for (int i = 0; i < 23; i++) {
            int64_t k = (int64_t)r.x[2 * i];
            ck_assert_float_eq(r.x[2 * i + 1], (float)-k);
            ck_assert_int_eq(r.y[i], k % 3);
            seen[k]++;
            identity &= k == i;
            if (e == 0)
                first[i] = k;
        }
        for (int i = 0; i < 23; i++)
            ck_assert_int_eq(seen[i], 1);
        ck_assert(!identity);
        free_run(&r);
    }
    /* The loader's order is the batcher's for the same seed. */
    cnn_batcher b;
    ck_assert_int_eq(cnn_batcher_init(&b, &ds, 23, 1, 99, &err), 0);
    cnn_batcher_epoch(&b);
    ck_assert_int_eq(cnn_batcher_next(&b), 23);
    for (int i = 0; i < 23; i++)
        ck_assert_float_eq(b.x[2 * i], (float)first[i]);
    cnn_batcher_free(&b);
    cnn_loader_free(l);

    /* Without shuffle: file order, every epoch. */
    l = cnn_loader_create(&ds, 10, 0, 0, NULL, 99, background, &err);
    for (int e = 0; e < 2; e++) {
        epoch_run r = run_epoch(l, &ds, e, 0);
        ck_assert(r.batches == 3 && r.sizes[2] == 3);
        for (int i = 0; i < 23; i++)
            ck_assert_float_eq(r.x[2 * i], (float)i);
        free_run(&r);
    }
    cnn_loader_free(l);
    /* A batch larger than the set: one short batch. */
    l = cnn_loader_create(&ds, 64, 1, 0, NULL, 1, background, &err);
    ck_assert_int_eq(cnn_loader_batches(l), 1);
    epoch_run r = run_epoch(l, &ds, 0, 0);
    ck_assert(r.batches == 1 && r.sizes[0] == 23);
    free_run(&r);
    cnn_loader_free(l);
    cnn_dataset_free(&ds);
}
END_TEST

/* Every augmentation, and normalization computed from the set. */
static cnn_data_config full_config(void)
{
    cnn_data_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.normalize = 2;
    cfg.n_augment = 5;
    cfg.augment[0] = (cnn_augment){.type = CNN_AUG_HFLIP, .p = 0.5};
    cfg.augment[1] = (cnn_augment){.type = CNN_AUG_ROTATE, .degrees = 20, .fill = 0.1};
    cfg.augment[2] = (cnn_augment){.type = CNN_AUG_SCALE, .min = 0.8, .max = 1.2};
    cfg.augment[3] = (cnn_augment){.type = CNN_AUG_CROP, .padding = 2, .fill = 0.3};
    cfg.augment[4] = (cnn_augment){.type = CNN_AUG_TRANSLATE, .max = 0.2};
    return cfg;
}

/* Epochs depend only on (seed, epoch): two loaders agree, epochs run in
 * any order agree, and the background thread changes nothing. */
START_TEST(test_loader_deterministic)
{
    cnn_dataset ds = random_set(37, 3, 6, 5, 12);
    size_t example = 3 * 6 * 5;
    cnn_data_config cfg = full_config();
    cnn_error err;
    cnn_loader *fg = cnn_loader_create(&ds, 8, 1, 1, &cfg, 5, 0, &err);
    cnn_loader *bg = cnn_loader_create(&ds, 8, 1, 1, &cfg, 5, 1, &err);
    cnn_loader *other = cnn_loader_create(&ds, 8, 1, 1, &cfg, 6, 1, &err);
    ck_assert_msg(fg && bg && other, "%s", err.msg);
    epoch_run runs[3];
    for (int e = 0; e < 3; e++)
        runs[e] = run_epoch(fg, &ds, e, 0);
    ck_assert(!same_run(&runs[0], &runs[1], example));
    for (int e = 2; e >= 0; e--) { /* backwards, with the thread */
        epoch_run r = run_epoch(bg, &ds, e, 0);
        ck_assert_msg(same_run(&runs[e], &r, example), "epoch %d differs with the thread", e);
        free_run(&r);
        r = run_epoch(other, &ds, e, 0);
        ck_assert(!same_run(&runs[e], &r, example));
        free_run(&r);
    }
    /* Abandoning an epoch half-way changes nothing either. */
    const float *x;
    const int32_t *y;
    cnn_loader_epoch(bg, 7, 0);
    ck_assert_int_eq(cnn_loader_next(bg, &x, &y), 8);
    epoch_run r = run_epoch(bg, &ds, 1, 0);
    ck_assert(same_run(&runs[1], &r, example));
    free_run(&r);
    for (int e = 0; e < 3; e++)
        free_run(&runs[e]);
    cnn_loader_free(fg);
    cnn_loader_free(bg);
    cnn_loader_free(other);
    cnn_dataset_free(&ds);
}
END_TEST

/* Starting epoch e at batch k gives the batches an uninterrupted epoch e
 * gives from batch k on. */
START_TEST(test_loader_skip)
{
    int background = _i;
    cnn_dataset ds = random_set(30, 1, 7, 7, 3);
    size_t example = 49;
    cnn_data_config cfg = full_config();
    cnn_error err;
    cnn_loader *l = cnn_loader_create(&ds, 7, 1, 1, &cfg, 42, background, &err);
    ck_assert_msg(l != NULL, "%s", err.msg);
    epoch_run whole = run_epoch(l, &ds, 3, 0);
    ck_assert_int_eq(whole.batches, 5);
    for (int k = 0; k <= 6; k++) {
        cnn_loader *resumed = cnn_loader_create(&ds, 7, 1, 1, &cfg, 42, background, &err);
        epoch_run tail = run_epoch(resumed, &ds, 3, k);
        int64_t from = k < 5 ? 7 * k : 30;
        ck_assert_msg(same_tail(&whole, from, &tail, example), "skip %d differs", k);
        ck_assert_int_eq(tail.batches, k < 5 ? 5 - k : 0);
        free_run(&tail);
        cnn_loader_free(resumed);
    }
    free_run(&whole);
    cnn_loader_free(l);
    cnn_dataset_free(&ds);
}
END_TEST

/* The batch handed out stays put while the worker makes the next one. */
START_TEST(test_loader_pointers_stay_valid)
{
    cnn_dataset ds = random_set(40, 3, 8, 8, 1);
    size_t bytes = 4 * 3 * 8 * 8 * sizeof(float);
    cnn_data_config cfg = full_config();
    cnn_error err;
    cnn_loader *l = cnn_loader_create(&ds, 4, 1, 1, &cfg, 1, 1, &err);
    ck_assert(l != NULL);
    float *copy = malloc(bytes);
    const float *x, *prev = NULL;
    const int32_t *y;
    for (int e = 0; e < 2; e++) {
        cnn_loader_epoch(l, e, 0);
        while (cnn_loader_next(l, &x, &y) > 0) {
            ck_assert(x != prev); /* double buffered */
            memcpy(copy, x, bytes);
            usleep(2000); /* the worker has time to finish the next batch */
            ck_assert(memcmp(copy, x, bytes) == 0);
            prev = x;
        }
    }
    free(copy);
    cnn_loader_free(l);
    cnn_dataset_free(&ds);
}
END_TEST

/* cnn_loader_free at any point: before an epoch, with a job posted, in
 * the middle, at the end. */
START_TEST(test_loader_free_anytime)
{
    cnn_dataset ds = random_set(50, 3, 16, 16, 2);
    cnn_data_config cfg = full_config();
    cnn_error err;
    const float *x;
    const int32_t *y;
    for (int when = 0; when < 4; when++) {
        cnn_loader *l = cnn_loader_create(&ds, 10, 1, 1, &cfg, 1, 1, &err);
        ck_assert(l != NULL);
        if (when >= 1)
            cnn_loader_epoch(l, 0, 0);
        if (when >= 2)
            ck_assert_int_eq(cnn_loader_next(l, &x, &y), 10);
        if (when >= 3)
            while (cnn_loader_next(l, &x, &y) > 0)
                ;
        cnn_loader_free(l);
    }
    cnn_loader_free(NULL);
    cnn_dataset_free(&ds);
}
END_TEST

/* Per-channel mean and std of n examples of c planes of `plane` floats. */
static void batch_stats(const float *x, int64_t n, int c, size_t plane, double *mean,
                        double *std)
{
    for (int ch = 0; ch < c; ch++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++)
            for (size_t j = 0; j < plane; j++) {
                double v = x[((size_t)i * c + ch) * plane + j];
                s += v;
                s2 += v * v;
            }
        double count = (double)n * (double)plane;
        mean[ch] = s / count;
        std[ch] = sqrt(s2 / count - mean[ch] * mean[ch]);
    }
}

START_TEST(test_loader_normalize)
{
    cnn_dataset ds = random_set(64, 3, 4, 4, 9);
    cnn_data_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.normalize = 2;
    cnn_error err;
    cnn_loader *l = cnn_loader_create(&ds, 16, 1, 1, &cfg, 3, 1, &err);
    ck_assert_msg(l != NULL, "%s", err.msg);
    epoch_run r = run_epoch(l, &ds, 0, 0);
    double mean[3], std[3];
    batch_stats(r.x, r.n, 3, 16, mean, std);
    for (int ch = 0; ch < 3; ch++) {
        ck_assert_double_eq_tol(mean[ch], 0, 1e-5);
        ck_assert_double_eq_tol(std[ch], 1, 1e-5);
    }
    free_run(&r);
    cnn_loader_free(l);

    /* Given mean and std: x' = (x - mean) / std, channel by channel. */
    cfg.normalize = 1;
    cfg.channels = 3;
    for (int ch = 0; ch < 3; ch++) {
        cfg.mean[ch] = 0.5 * ch;
        cfg.std[ch] = 0.25 * (ch + 1);
    }
    l = cnn_loader_create(&ds, 16, 0, 0, &cfg, 3, 0, &err);
    ck_assert_msg(l != NULL, "%s", err.msg);
    r = run_epoch(l, &ds, 0, 0);
    for (int64_t i = 0; i < 64 * 48; i++) {
        int ch = (int)(i / 16 % 3);
        ck_assert_float_eq(r.x[i], (ds.images[i] - (float)cfg.mean[ch]) / (float)cfg.std[ch]);
    }
    free_run(&r);
    cnn_loader_free(l);

    /* Refusals: wrong channel count, std 0, bad batch size. */
    cfg.channels = 1;
    ck_assert_ptr_null(cnn_loader_create(&ds, 16, 0, 0, &cfg, 3, 0, &err));
    ck_assert_msg(strstr(err.msg, "mean and std for 1 channels, but the images have 3"), "%s",
                  err.msg);
    cfg.channels = 3;
    cfg.std[2] = 0;
    ck_assert_ptr_null(cnn_loader_create(&ds, 16, 0, 0, &cfg, 3, 1, &err));
    ck_assert_msg(strstr(err.msg, "std 0 of channel 2 must be > 0"), "%s", err.msg);
    ck_assert_ptr_null(cnn_loader_create(&ds, 0, 0, 0, NULL, 3, 1, &err));
    ck_assert_msg(strstr(err.msg, "batch size 0"), "%s", err.msg);

    /* A constant channel under "auto": shifted to 0, not divided by 0. */
    for (int64_t i = 0; i < 64; i++)
        for (int j = 0; j < 16; j++)
            ds.images[i * 48 + 32 + j] = 0.5f;
    cfg.normalize = 2;
    rt_log log;
    rt_log_start(&log);
    l = cnn_loader_create(&ds, 16, 0, 0, &cfg, 3, 0, &err);
    rt_log_stop();
    ck_assert(l != NULL);
    ck_assert_msg(rt_log_has(&log, "W: normalization: channel 2 has the same value 0.5"), "%s",
                  log.text);
    r = run_epoch(l, &ds, 0, 0);
    for (int64_t i = 0; i < 64; i++)
        ck_assert_float_eq(r.x[i * 48 + 40], 0.0f);
    free_run(&r);
    cnn_loader_free(l);
    cnn_dataset_free(&ds);
}
END_TEST

/* Augmentation only with augment set; then it differs per epoch and per
 * position, and only moves pixel values inside [0, 1]. */
START_TEST(test_loader_augment_only_when_asked)
{
    cnn_dataset ds = random_set(20, 3, 8, 8, 6);
    size_t example = 3 * 8 * 8;
    cnn_data_config cfg = full_config();
    cfg.normalize = 0;
    cnn_error err;
    cnn_loader *plain = cnn_loader_create(&ds, 6, 0, 0, &cfg, 1, 0, &err);
    cnn_loader *aug = cnn_loader_create(&ds, 6, 0, 1, &cfg, 1, 1, &err);
    cnn_loader *none = cnn_loader_create(&ds, 6, 0, 1, NULL, 1, 1, &err);
    ck_assert(plain && aug && none);
    epoch_run p = run_epoch(plain, &ds, 0, 0), n = run_epoch(none, &ds, 0, 0);
    ck_assert(memcmp(p.x, ds.images, 20 * example * sizeof(float)) == 0);
    ck_assert(memcmp(n.x, ds.images, 20 * example * sizeof(float)) == 0);
    epoch_run a0 = run_epoch(aug, &ds, 0, 0), a1 = run_epoch(aug, &ds, 1, 0);
    int changed = 0;
    for (int i = 0; i < 20; i++) {
        const float *e0 = a0.x + i * example, *e1 = a1.x + i * example;
        changed += memcmp(e0, ds.images + i * example, example * sizeof(float)) != 0;
        ck_assert(memcmp(e0, e1, example * sizeof(float)) != 0); /* not epoch to epoch */
        ck_assert_int_eq(a0.y[i], ds.labels[i]);
        for (size_t j = 0; j < example; j++)
            ck_assert(e0[j] >= 0 && e0[j] <= 1);
    }
    ck_assert_int_ge(changed, 19);
    free_run(&p);
    free_run(&n);
    free_run(&a0);
    free_run(&a1);
    cnn_loader_free(plain);
    cnn_loader_free(aug);
    cnn_loader_free(none);
    cnn_dataset_free(&ds);
}
END_TEST

/* An empty set: no batches, nothing breaks. */
START_TEST(test_loader_empty)
{
    cnn_dataset ds = {.count = 0, .c = 1, .h = 2, .w = 2};
    cnn_error err;
    cnn_loader *l = cnn_loader_create(&ds, 4, 1, 1, NULL, 0, 1, &err);
    ck_assert(l != NULL);
    ck_assert_int_eq(cnn_loader_batches(l), 0);
    epoch_run r = run_epoch(l, &ds, 0, 0);
    ck_assert_int_eq(r.batches, 0);
    free_run(&r);
    cnn_loader_free(l);
}
END_TEST

Suite *rt_loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *t = tcase_create("files");
    tcase_add_test(t, test_cifar_good);
    tcase_add_test(t, test_cifar_broken);
    tcase_add_test(t, test_data_load_formats);
    suite_add_tcase(s, t);

    t = tcase_create("sets");
    tcase_add_test(t, test_stats);
    tcase_add_test(t, test_split);
    tcase_add_test(t, test_split_edges);
    suite_add_tcase(s, t);

    t = tcase_create("loader");
    tcase_add_loop_test(t, test_loader_each_once, 0, 2);
    tcase_add_test(t, test_loader_deterministic);
    tcase_add_loop_test(t, test_loader_skip, 0, 2);
    tcase_add_test(t, test_loader_pointers_stay_valid);
    tcase_add_test(t, test_loader_free_anytime);
    tcase_add_test(t, test_loader_normalize);
    tcase_add_test(t, test_loader_augment_only_when_asked);
    tcase_add_test(t, test_loader_empty);
    tcase_set_timeout(t, 60); /* sanitizers are slow */
    suite_add_tcase(s, t);
    return s;
}
