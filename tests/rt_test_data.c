/*
 * rt_test_data.c — IDX files, datasets and the batcher.
 *
 * Good and broken IDX files are written into a scratch directory, raw and
 * gzip-compressed; every broken one must be refused with -1 and a message
 * that names the file.  Batcher tests identify each example by a pixel
 * value equal to its index, so the gathered batches show which examples
 * came out, in which order.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cnnrt.h"
#include "rt_fake_model.h"
#include "rt_suites.h"
#include "rt_util.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* 5 images of 2x3 with pixel (i, j) = 10*i + j, labels 0..4. */
static void write_small(const char *dir, int gz, const char **images, const char **labels)
{
    uint8_t pix[30], lab[5];
    for (int i = 0; i < 5; i++) {
        lab[i] = (uint8_t)i;
        for (int j = 0; j < 6; j++)
            pix[i * 6 + j] = (uint8_t)(10 * i + j);
    }
    uint32_t idims[3] = {5, 2, 3}, ldims[1] = {5};
    *images = rt_path(dir, gz ? "img.gz" : "img");
    *labels = rt_path(dir, gz ? "lab.gz" : "lab");
    rt_write_idx(*images, gz, 0x803, idims, 3, pix, sizeof pix);
    rt_write_idx(*labels, gz, 0x801, ldims, 1, lab, sizeof lab);
}

START_TEST(test_idx_load_good)
{
    const char *dir = rt_tmpdir(), *images, *labels;
    int gz = _i; /* raw, then gzip */
    write_small(dir, gz, &images, &labels);
    cnn_dataset ds;
    cnn_error err;
    ck_assert_msg(cnn_idx_load(images, labels, &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.count, 5);
    ck_assert_int_eq(ds.c, 1);
    ck_assert_int_eq(ds.h, 2);
    ck_assert_int_eq(ds.w, 3);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(ds.labels[i], i);
        for (int j = 0; j < 6; j++)
            ck_assert_float_eq(ds.images[i * 6 + j], (float)(10 * i + j) / 255.0f);
    }
    cnn_dataset_free(&ds);
    ck_assert_ptr_null(ds.images);
    cnn_dataset_free(&ds); /* twice is harmless */
}
END_TEST

/* A broken image file: its bytes, and what the message must say. */
typedef struct broken_idx {
    const char *expect;
    uint32_t magic;
    uint32_t dims[3];
    int ndim;
    size_t ndata;  /* pixel bytes actually written */
    size_t cut;    /* if > 0, keep only this many bytes of the file */
} broken_idx;

static const broken_idx broken[] = {
    {"not an IDX file (magic 0x12340803", 0x12340803, {5, 2, 3}, 3, 30, 0},
    {"IDX element type 0x0d, expected unsigned bytes", 0x0d03, {5, 2, 3}, 3, 30, 0},
    {"IDX file with 1 dimensions (magic 0x00000801), expected 3", 0x801, {5}, 1, 5, 0},
    {"IDX file with 4 dimensions", 0x804, {5, 2, 3}, 3, 30, 0},
    {"truncated: expected 30 bytes of pixel data, found 27", 0x803, {5, 2, 3}, 3, 27, 0},
    {"3 bytes after the 30 bytes of pixel data", 0x803, {5, 2, 3}, 3, 33, 0},
    {"truncated: the IDX header needs 16 bytes, found 10", 0x803, {5, 2, 3}, 3, 0, 10},
    {"truncated: 2 bytes, too short for an IDX header", 0x803, {5, 2, 3}, 3, 0, 2},
    {"empty file", 0x803, {5, 2, 3}, 3, 0, 0},
    {"bad image count 0", 0x803, {0, 2, 3}, 3, 0, 0},
    {"bad image size 0x3", 0x803, {5, 0, 3}, 3, 0, 0},
    {"bad image size 2x70000", 0x803, {5, 2, 70000}, 3, 0, 0},
    /* A header promising 2^31-1 images of 64x64 over 30 bytes of data:
     * refused as truncated without allocating for the promise. */
    {"truncated: expected 8796093018112 bytes of pixel data, found 30", 0x803,
     {0x7fffffff, 64, 64}, 3, 30, 0},
};

START_TEST(test_idx_broken_images)
{
    const broken_idx *b = &broken[_i / 2];
    int gz = _i % 2;
    const char *dir = rt_tmpdir(), *images, *labels;
    write_small(dir, gz, &images, &labels);
    uint8_t data[64];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)i;
    size_t total;
    uint8_t *bytes = rt_idx_bytes(b->magic, b->dims, b->ndim, data, b->ndata, &total);
    if (b->cut > 0)
        total = b->cut;
    if (strcmp(b->expect, "empty file") == 0)
        total = 0;
    const char *bad = rt_path(dir, "bad-images");
    if (gz)
        rt_write_gz(bad, bytes, total);
    else
        rt_write_file(bad, bytes, total);
    free(bytes);

    cnn_dataset ds;
    cnn_error err;
    ck_assert_int_eq(cnn_idx_load(bad, labels, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, b->expect), "expected \"%s\" in \"%s\"", b->expect, err.msg);
    ck_assert_msg(strncmp(err.msg, bad, strlen(bad)) == 0, "file not named: %s", err.msg);
    ck_assert_ptr_null(ds.images);
    ck_assert_int_eq(ds.count, 0);
}
END_TEST

START_TEST(test_idx_broken_labels)
{
    const char *dir = rt_tmpdir(), *images, *labels;
    write_small(dir, 0, &images, &labels);
    cnn_dataset ds;
    cnn_error err;
    /* An image file given as labels. */
    ck_assert_int_eq(cnn_idx_load(images, images, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "IDX file with 3 dimensions") && strstr(err.msg, images),
                  "%s", err.msg);
    /* Count mismatch: 4 labels for 5 images; both files named. */
    uint32_t four = 4;
    uint8_t lab[4] = {0, 1, 2, 3};
    const char *short_labels = rt_path(dir, "labels4");
    rt_write_idx(short_labels, 1, 0x801, &four, 1, lab, 4);
    ck_assert_int_eq(cnn_idx_load(images, short_labels, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "4 labels, but") && strstr(err.msg, short_labels) &&
                  strstr(err.msg, images) && strstr(err.msg, "5 images"), "%s", err.msg);
    /* Truncated labels. */
    uint32_t five = 5;
    rt_write_idx(short_labels, 0, 0x801, &five, 1, lab, 4);
    ck_assert_int_eq(cnn_idx_load(images, short_labels, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "expected 5 bytes of label data, found 4"), "%s", err.msg);
}
END_TEST

START_TEST(test_idx_missing_and_corrupt)
{
    const char *dir = rt_tmpdir(), *images, *labels;
    write_small(dir, 0, &images, &labels);
    cnn_dataset ds;
    cnn_error err;
    const char *missing = rt_path(dir, "nope.gz");
    ck_assert_int_eq(cnn_idx_load(missing, labels, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, missing) && strstr(err.msg, "No such file"), "%s", err.msg);
    ck_assert_int_eq(cnn_idx_load(images, missing, &ds, &err), -1);
    ck_assert(strstr(err.msg, missing));
    /* A directory. */
    ck_assert_int_eq(cnn_idx_load(dir, labels, &ds, &err), -1);
    ck_assert_msg(strncmp(err.msg, dir, strlen(dir)) == 0, "%s", err.msg);
    /* gzip magic followed by garbage. */
    uint8_t junk[64] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    for (size_t i = 10; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37);
    const char *corrupt = rt_path(dir, "corrupt.gz");
    rt_write_file(corrupt, junk, sizeof junk);
    ck_assert_int_eq(cnn_idx_load(corrupt, labels, &ds, &err), -1);
    ck_assert_msg(strncmp(err.msg, corrupt, strlen(corrupt)) == 0, "%s", err.msg);
    /* A gzip stream cut in the middle of the pixel data. */
    size_t n;
    const char *gz_images, *gz_labels;
    write_small(dir, 1, &gz_images, &gz_labels);
    uint8_t *bytes = rt_read_file(gz_images, &n);
    rt_write_file(corrupt, bytes, n - 12);
    free(bytes);
    ck_assert_int_eq(cnn_idx_load(corrupt, gz_labels, &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, corrupt), "%s", err.msg);
}
END_TEST

START_TEST(test_dataset_load_dir)
{
    const char *dir = rt_tmpdir();
    cnn_dataset ds;
    cnn_error err;
    rt_write_split(dir, "train", 20, 1, 1);
    rt_write_split(dir, "t10k", 7, 2, 0); /* raw files */
    ck_assert_msg(cnn_dataset_load_dir(dir, "train", &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.count, 20);
    cnn_dataset_free(&ds);
    ck_assert_msg(cnn_dataset_load_dir(dir, "t10k", &ds, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(ds.count, 7);
    ck_assert_int_eq(ds.h, 4);
    cnn_dataset_free(&ds);
    /* .gz is preferred when both exist. */
    rt_write_split(dir, "t10k", 9, 2, 1);
    ck_assert_int_eq(cnn_dataset_load_dir(dir, "t10k", &ds, &err), 0);
    ck_assert_int_eq(ds.count, 9);
    cnn_dataset_free(&ds);

    ck_assert_int_eq(cnn_dataset_load_dir(dir, "valid", &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "no valid images") &&
                  strstr(err.msg, "valid-images-idx3-ubyte.gz"), "%s", err.msg);
    const char *nodir = rt_path(dir, "missing");
    ck_assert_int_eq(cnn_dataset_load_dir(nodir, "train", &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, nodir) && strstr(err.msg, "No such file"), "%s", err.msg);
    remove(rt_path(dir, "train-labels-idx1-ubyte.gz"));
    ck_assert_int_eq(cnn_dataset_load_dir(dir, "train", &ds, &err), -1);
    ck_assert_msg(strstr(err.msg, "no train labels"), "%s", err.msg);
}
END_TEST

START_TEST(test_dataset_check)
{
    const char *dir = rt_tmpdir();
    cnn_dataset ds;
    cnn_error err;
    rt_write_split(dir, "train", 10, 1, 0);
    ck_assert_int_eq(cnn_dataset_load_dir(dir, "train", &ds, &err), 0);
    ck_assert_int_eq(cnn_dataset_check(&ds, &cnn_model, "train set", &err), 0);
    ds.labels[7] = 3;
    ck_assert_int_eq(cnn_dataset_check(&ds, &cnn_model, "train set", &err), -1);
    ck_assert_msg(strstr(err.msg, "train set: label 3 of image 7 is outside [0, 3)"), "%s",
                  err.msg);
    ds.labels[7] = 0;
    ds.w = 5;
    ck_assert_int_eq(cnn_dataset_check(&ds, &cnn_model, "train set", &err), -1);
    ck_assert_msg(strstr(err.msg, "images are 1x4x5 (CxHxW), but model fake takes 1x4x4"),
                  "%s", err.msg);
    cnn_dataset_free(&ds);
}
END_TEST

START_TEST(test_fashion_mnist)
{
    struct stat st;
    if (stat(FASHION_DIR, &st) != 0) {
        printf("skipped: %s not installed (apt-get install dataset-fashion-mnist)\n",
               FASHION_DIR);
        return;
    }
    cnn_dataset ds;
    cnn_error err;
    const struct { const char *split; int64_t count; } splits[] = {{"train", 60000},
                                                                   {"t10k", 10000}};
    for (int s = 0; s < 2; s++) {
        ck_assert_msg(cnn_dataset_load_dir(FASHION_DIR, splits[s].split, &ds, &err) == 0, "%s",
                      err.msg);
        ck_assert_int_eq(ds.count, splits[s].count);
        ck_assert(ds.c == 1 && ds.h == 28 && ds.w == 28);
        int64_t per_class[10] = {0};
        for (int64_t i = 0; i < ds.count; i++) {
            ck_assert(ds.labels[i] >= 0 && ds.labels[i] < 10);
            per_class[ds.labels[i]]++;
        }
        for (int k = 0; k < 10; k++) /* Fashion-MNIST is balanced */
            ck_assert_int_eq(per_class[k], splits[s].count / 10);
        float max = 0;
        for (int64_t i = 0; i < ds.count * 784; i++)
            max = ds.images[i] > max ? ds.images[i] : max;
        ck_assert_float_eq(max, 1.0f);
        cnn_dataset_free(&ds);
    }
}
END_TEST

/* ---- the batcher ----------------------------------------------------------------- */

/* count examples of 1x1x2 whose first pixel is the example's index. */
static cnn_dataset indexed_set(int64_t count)
{
    cnn_dataset ds = {.count = count, .c = 1, .h = 1, .w = 2};
    ds.images = malloc((size_t)count * 2 * sizeof(float));
    ds.labels = malloc((size_t)count * sizeof(int32_t));
    for (int64_t i = 0; i < count; i++) {
        ds.images[2 * i] = (float)i;
        ds.images[2 * i + 1] = (float)-i;
        ds.labels[i] = (int32_t)(i % 3);
    }
    return ds;
}

/* Run one epoch; order[] receives the example indices; returns batches. */
static int epoch_order(cnn_batcher *b, int64_t *order, int *sizes)
{
    int nb = 0, n;
    int64_t k = 0;
    cnn_batcher_epoch(b);
    while ((n = cnn_batcher_next(b)) > 0) {
        sizes[nb++] = n;
        for (int i = 0; i < n; i++) {
            int64_t idx = (int64_t)b->x[2 * i];
            ck_assert_float_eq(b->x[2 * i + 1], (float)-idx); /* whole example copied */
            ck_assert_int_eq(b->y[i], idx % 3);
            order[k++] = idx;
        }
    }
    ck_assert_int_eq(cnn_batcher_next(b), 0); /* stays at the end */
    return nb;
}

START_TEST(test_batcher_epochs)
{
    cnn_dataset ds = indexed_set(21);
    cnn_batcher b;
    cnn_error err;
    ck_assert_int_eq(cnn_batcher_init(&b, &ds, 8, 1, 99, &err), 0);
    ck_assert_int_eq(cnn_batcher_next(&b), 0); /* no epoch started yet */
    int64_t order[3][21];
    for (int e = 0; e < 3; e++) {
        int sizes[8];
        ck_assert_int_eq(epoch_order(&b, order[e], sizes), 3);
        ck_assert(sizes[0] == 8 && sizes[1] == 8 && sizes[2] == 5);
        int seen[21] = {0};
        for (int i = 0; i < 21; i++)
            seen[order[e][i]]++;
        for (int i = 0; i < 21; i++)
            ck_assert_int_eq(seen[i], 1);
    }
    ck_assert(memcmp(order[0], order[1], sizeof order[0]) != 0);
    ck_assert(memcmp(order[1], order[2], sizeof order[0]) != 0);
    int identity = 1;
    for (int i = 0; i < 21; i++)
        identity &= order[0][i] == i;
    ck_assert(!identity);

    /* Same seed: the same orders; another seed: others. */
    cnn_batcher same, other;
    ck_assert_int_eq(cnn_batcher_init(&same, &ds, 8, 1, 99, &err), 0);
    ck_assert_int_eq(cnn_batcher_init(&other, &ds, 8, 1, 100, &err), 0);
    for (int e = 0; e < 3; e++) {
        int64_t again[21], different[21];
        int sizes[8];
        epoch_order(&same, again, sizes);
        epoch_order(&other, different, sizes);
        ck_assert(memcmp(order[e], again, sizeof again) == 0);
        ck_assert(memcmp(order[e], different, sizeof again) != 0);
    }
    cnn_batcher_free(&b);
    cnn_batcher_free(&same);
    cnn_batcher_free(&other);
    cnn_dataset_free(&ds);
}
END_TEST

/* Every permutation of 3 examples is equally likely across epochs. */
START_TEST(test_batcher_uniform_shuffle)
{
    cnn_dataset ds = indexed_set(3);
    cnn_batcher b;
    cnn_error err;
    ck_assert_int_eq(cnn_batcher_init(&b, &ds, 3, 1, 8, &err), 0);
    int counts[27] = {0};
    for (int e = 0; e < 6000; e++) {
        cnn_batcher_epoch(&b);
        ck_assert_int_eq(cnn_batcher_next(&b), 3);
        counts[(int)b.x[0] * 9 + (int)b.x[2] * 3 + (int)b.x[4]]++;
    }
    const int perms[6] = {0 * 9 + 1 * 3 + 2, 0 * 9 + 2 * 3 + 1, 1 * 9 + 0 * 3 + 2,
                          1 * 9 + 2 * 3 + 0, 2 * 9 + 0 * 3 + 1, 2 * 9 + 1 * 3 + 0};
    for (int k = 0; k < 6; k++)
        ck_assert_msg(abs(counts[perms[k]] - 1000) < 120, "permutation %d drawn %d times", k,
                      counts[perms[k]]); /* se 29 */
    cnn_batcher_free(&b);
    cnn_dataset_free(&ds);
}
END_TEST

START_TEST(test_batcher_no_shuffle)
{
    cnn_dataset ds = indexed_set(10);
    cnn_batcher b;
    cnn_error err;
    ck_assert_int_eq(cnn_batcher_init(&b, &ds, 4, 0, 5, &err), 0);
    for (int e = 0; e < 2; e++) {
        int64_t order[10];
        int sizes[4];
        ck_assert_int_eq(epoch_order(&b, order, sizes), 3);
        ck_assert_int_eq(sizes[2], 2);
        for (int i = 0; i < 10; i++)
            ck_assert_int_eq(order[i], i);
    }
    cnn_batcher_free(&b);
    /* A batch larger than the set: one short batch. */
    ck_assert_int_eq(cnn_batcher_init(&b, &ds, 64, 1, 5, &err), 0);
    cnn_batcher_epoch(&b);
    ck_assert_int_eq(cnn_batcher_next(&b), 10);
    ck_assert_int_eq(cnn_batcher_next(&b), 0);
    cnn_batcher_free(&b);
    ck_assert_int_eq(cnn_batcher_init(&b, &ds, 0, 1, 5, &err), -1);
    ck_assert(strstr(err.msg, "batch size 0"));
    cnn_dataset_free(&ds);
}
END_TEST

Suite *rt_data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *t = tcase_create("idx");
    tcase_add_loop_test(t, test_idx_load_good, 0, 2);
    tcase_add_loop_test(t, test_idx_broken_images, 0, 2 * (int)(sizeof broken / sizeof broken[0]));
    tcase_add_test(t, test_idx_broken_labels);
    tcase_add_test(t, test_idx_missing_and_corrupt);
    suite_add_tcase(s, t);

    t = tcase_create("dataset");
    tcase_add_test(t, test_dataset_load_dir);
    tcase_add_test(t, test_dataset_check);
    tcase_add_test(t, test_fashion_mnist);
    tcase_set_timeout(t, 60);
    suite_add_tcase(s, t);

    t = tcase_create("batcher");
    tcase_add_test(t, test_batcher_epochs);
    tcase_add_test(t, test_batcher_uniform_shuffle);
    tcase_add_test(t, test_batcher_no_shuffle);
    suite_add_tcase(s, t);
    return s;
}
