/*
 * cifar.c — the binary format of CIFAR-10.
 *
 * A CIFAR-10 file (data_batch_1.bin .. data_batch_5.bin, test_batch.bin) is
 * a sequence of 3073-byte records with no header: one label byte (0..9),
 * then the 32x32 image as three planes of 1024 bytes, red, green, blue, each
 * row-major.  That is already CHW, so a record becomes one example of the
 * dataset by scaling its bytes to [0, 1] as torchvision's ToTensor does.
 *
 * Without a header the file size is the only check of integrity, so it is
 * checked before anything is allocated: a size that is zero or not a whole
 * number of records is an error naming the file.  All files are sized first
 * and the dataset is allocated once for their total; records are then read
 * in chunks, and every label is checked as it arrives.
 */
#include "cnnrt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE) /* bytes of one image */
#define CIFAR_RECORD (1 + CIFAR_PIXELS)            /* label + image */
#define CIFAR_CLASSES 10
#define CHUNK_RECORDS 1024                          /* records per fread */

/* The number of records in path, checked against its size; -1 with err. */
static int64_t cifar_records(const char *path, cnn_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return cnn_fail(err, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return cnn_fail(err, "%s: not a regular file (expected a CIFAR-10 binary file)", path);
    if (st.st_size == 0)
        return cnn_fail(err, "%s: empty file (expected CIFAR-10 records)", path);
    if (st.st_size % CIFAR_RECORD != 0)
        return cnn_fail(err,
                        "%s: truncated or not CIFAR-10: %lld bytes is not a whole number of "
                        "%d-byte records (%lld record%s and %lld bytes over)",
                        path, (long long)st.st_size, CIFAR_RECORD,
                        (long long)(st.st_size / CIFAR_RECORD),
                        st.st_size / CIFAR_RECORD == 1 ? "" : "s",
                        (long long)(st.st_size % CIFAR_RECORD));
    return st.st_size / CIFAR_RECORD;
}

/* Read `count` records of path into images / labels (room for count). */
static int cifar_read(const char *path, int64_t count, float *images, int32_t *labels,
                      uint8_t *chunk, cnn_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cnn_fail(err, "%s: %s", path, strerror(errno));
    int64_t done = 0;
    while (done < count) {
        size_t want = (size_t)(count - done < CHUNK_RECORDS ? count - done : CHUNK_RECORDS);
        size_t got = fread(chunk, CIFAR_RECORD, want, f);
        if (got < want) {
            int bad = ferror(f);
            fclose(f);
            if (bad)
                return cnn_fail(err, "%s: read error: %s", path, strerror(errno));
            return cnn_fail(err, "%s: truncated: expected %lld records, found %lld (the file "
                            "shrank while being read)", path, (long long)count,
                            (long long)(done + (int64_t)got));
        }
        for (size_t r = 0; r < got; r++) {
            const uint8_t *rec = chunk + r * CIFAR_RECORD;
            if (rec[0] >= CIFAR_CLASSES) {
                fclose(f);
                return cnn_fail(err, "%s: record %lld has label %d, expected 0..9", path,
                                (long long)(done + (int64_t)r), (int)rec[0]);
            }
            labels[done + (int64_t)r] = rec[0];
            float *img = images + (size_t)(done + (int64_t)r) * CIFAR_PIXELS;
            for (int i = 0; i < CIFAR_PIXELS; i++)
                img[i] = (float)rec[1 + i] / 255.0f; /* as torchvision's ToTensor */
        }
        done += (int64_t)got;
    }
    fclose(f);
    return 0;
}

int cnn_cifar10_load(const char *const *paths, int npaths, cnn_dataset *ds, cnn_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (npaths < 1)
        return cnn_fail(err, "CIFAR-10: no files to load");
    int64_t *counts = malloc((size_t)npaths * sizeof *counts); /* records per file */
    int64_t total = 0;
    if (!counts)
        return cnn_fail(err, "%s: out of memory", paths[0]);
    for (int i = 0; i < npaths; i++) {
        counts[i] = cifar_records(paths[i], err);
        if (counts[i] < 0) {
            free(counts);
            return -1;
        }
        total += counts[i];
    }
    ds->images = malloc((size_t)total * CIFAR_PIXELS * sizeof *ds->images);
    ds->labels = malloc((size_t)total * sizeof *ds->labels);
    uint8_t *chunk = malloc((size_t)CHUNK_RECORDS * CIFAR_RECORD);
    int rc = 0;
    if (!ds->images || !ds->labels || !chunk)
        rc = cnn_fail(err, "%s: out of memory for %lld CIFAR-10 images", paths[0],
                      (long long)total);
    int64_t at = 0;
    for (int i = 0; rc == 0 && i < npaths; i++) {
        rc = cifar_read(paths[i], counts[i], ds->images + (size_t)at * CIFAR_PIXELS,
                        ds->labels + at, chunk, err);
        at += counts[i];
    }
    free(chunk);
    free(counts);
    if (rc < 0) {
        cnn_dataset_free(ds);
        return -1;
    }
    ds->count = total;
    ds->c = 3;
    ds->h = CIFAR_SIDE;
    ds->w = CIFAR_SIDE;
    return 0;
}
