/*
 * idx.c — the IDX format of MNIST and Fashion-MNIST, raw or gzip.
 *
 * An IDX file is a 4-byte magic (0, 0, element type, number of
 * dimensions), one big-endian 32-bit size per dimension, then the elements
 * in row-major order.  Images are type 0x08 (unsigned byte) with three
 * dimensions [count, h, w]: magic 0x00000803; labels are unsigned bytes
 * with one dimension [count]: magic 0x00000801.
 *
 * Files are read through zlib's gzread, which passes a file that is not
 * gzip through unchanged, so one path serves "x.gz" and "x" alike.  The
 * uncompressed size of a gzip file is unknown before reading it, so the
 * header is not trusted with memory: the buffer grows as data actually
 * arrives, up to the size the header promises.  A corrupt header claiming
 * billions of images therefore costs a clear "truncated" error, not a
 * giant allocation.  The file must hold exactly the promised bytes:
 * missing bytes (truncated) and extra bytes (a wrong header) are both
 * errors, and each message names the file.
 */
#include "cnnrt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_UBYTE 0x08
#define IDX_MAX_COUNT 0x7fffffffu /* examples in one file */
#define IDX_MAX_SIDE 65535u       /* image height or width */
#define READ_CHUNK (1 << 24)      /* bytes per gzread call */

typedef struct idx_file {
    const char *path;
    const char *what;   /* "image" or "label", for messages */
    int ndim;           /* expected: 3 for images, 1 for labels */
    uint32_t dims[3];   /* from the header */
    uint8_t *data;      /* the elements, dims[0] * dims[1] * dims[2] bytes */
    int64_t bytes;
} idx_file;

/* gzread up to len bytes, looping over chunks; returns the count read
 * (short only at the end of the data) or -1 with err set. */
static int64_t read_some(gzFile f, const char *path, void *buf, int64_t len, cnn_error *err)
{
    int64_t done = 0;
    while (done < len) {
        int64_t want = len - done < READ_CHUNK ? len - done : READ_CHUNK;
        int got = gzread(f, (char *)buf + done, (unsigned)want);
        if (got < 0) {
            int code;
            const char *msg = gzerror(f, &code);
            return cnn_fail(err, "%s: %s: %s", path,
                            code == Z_ERRNO ? "read error" : "corrupt gzip data",
                            code == Z_ERRNO ? strerror(errno) : msg);
        }
        done += got;
        if (got < want)
            break;
    }
    return done;
}

/* Read and check the magic and the dimensions. */
static int read_header(gzFile f, idx_file *x, cnn_error *err)
{
    uint8_t h[16];
    int64_t want = 4 + 4 * (int64_t)x->ndim;
    int64_t got = read_some(f, x->path, h, 4, err);
    if (got < 0)
        return -1;
    if (got == 0)
        return cnn_fail(err, "%s: empty file (expected an IDX %s file)", x->path, x->what);
    if (got < 4)
        return cnn_fail(err, "%s: truncated: %lld bytes, too short for an IDX header",
                        x->path, (long long)got);
    uint32_t magic = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    uint32_t expected = 0x800u | (uint32_t)x->ndim;
    if (h[0] != 0 || h[1] != 0)
        return cnn_fail(err, "%s: not an IDX file (magic 0x%08x, expected 0x%08x)", x->path,
                        magic, expected);
    if (h[2] != IDX_UBYTE)
        return cnn_fail(err, "%s: IDX element type 0x%02x, expected unsigned bytes (magic "
                        "0x%08x)", x->path, h[2], expected);
    if (h[3] != x->ndim)
        return cnn_fail(err, "%s: IDX file with %d dimensions (magic 0x%08x), expected %d: "
                        "an IDX %s file has magic 0x%08x", x->path, h[3], magic, x->ndim,
                        x->what, expected);
    got = read_some(f, x->path, h + 4, want - 4, err);
    if (got < 0)
        return -1;
    if (got < want - 4)
        return cnn_fail(err, "%s: truncated: the IDX header needs %lld bytes, found %lld",
                        x->path, (long long)want, (long long)(4 + got));
    for (int d = 0; d < 3; d++) {
        const uint8_t *b = h + 4 + 4 * d;
        x->dims[d] = d < x->ndim ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
                                       (uint32_t)b[2] << 8 | b[3]
                                 : 1;
    }
    return 0;
}

/* The header's dimensions are plausible; sets x->bytes. */
static int check_dims(idx_file *x, cnn_error *err)
{
    if (x->dims[0] == 0 || x->dims[0] > IDX_MAX_COUNT)
        return cnn_fail(err, "%s: bad %s count %u in the IDX header", x->path, x->what,
                        x->dims[0]);
    if (x->dims[1] == 0 || x->dims[1] > IDX_MAX_SIDE || x->dims[2] == 0 ||
        x->dims[2] > IDX_MAX_SIDE)
        return cnn_fail(err, "%s: bad image size %ux%u in the IDX header (1 to %u)", x->path,
                        x->dims[1], x->dims[2], IDX_MAX_SIDE);
    x->bytes = (int64_t)x->dims[0] * x->dims[1] * x->dims[2];
    return 0;
}

/* Read exactly x->bytes of data, growing the buffer as data arrives, then
 * make sure nothing follows. */
static int read_data(gzFile f, idx_file *x, cnn_error *err)
{
    const char *kind = x->ndim == 3 ? "pixel" : "label";
    int64_t have = 0, cap = 0;
    while (have < x->bytes) {
        int64_t next = cap ? 2 * cap : (int64_t)1 << 20;
        cap = next < x->bytes ? next : x->bytes;
        uint8_t *grown = realloc(x->data, (size_t)cap);
        if (!grown)
            return cnn_fail(err, "%s: out of memory for %lld bytes", x->path, (long long)cap);
        x->data = grown;
        int64_t got = read_some(f, x->path, x->data + have, cap - have, err);
        if (got < 0)
            return -1;
        have += got;
        if (have < cap)
            return cnn_fail(err, "%s: truncated: expected %lld bytes of %s data, found %lld",
                            x->path, (long long)x->bytes, kind, (long long)have);
    }
    int64_t extra = 0;
    uint8_t tail[4096];
    for (;;) {
        int64_t got = read_some(f, x->path, tail, sizeof tail, err);
        if (got < 0)
            return -1;
        extra += got;
        if (got < (int64_t)sizeof tail)
            break;
    }
    if (extra > 0)
        return cnn_fail(err, "%s: %lld bytes after the %lld bytes of %s data the header "
                        "promises", x->path, (long long)extra, (long long)x->bytes, kind);
    return 0;
}

/* Read one IDX file of unsigned bytes with x->ndim dimensions. */
static int idx_read(idx_file *x, cnn_error *err)
{
    errno = 0;
    gzFile f = gzopen(x->path, "rb");
    if (!f)
        return cnn_fail(err, "%s: cannot open: %s", x->path,
                        errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    int rc = read_header(f, x, err);
    if (rc == 0)
        rc = check_dims(x, err);
    if (rc == 0)
        rc = read_data(f, x, err);
    gzclose(f);
    if (rc < 0) {
        free(x->data);
        x->data = NULL;
    }
    return rc;
}

int cnn_idx_load(const char *images_path, const char *labels_path, cnn_dataset *ds,
                 cnn_error *err)
{
    memset(ds, 0, sizeof *ds);
    idx_file img = {.path = images_path, .what = "image", .ndim = 3};
    idx_file lab = {.path = labels_path, .what = "label", .ndim = 1};
    if (idx_read(&img, err) < 0)
        return -1;
    if (idx_read(&lab, err) < 0) {
        free(img.data);
        return -1;
    }
    int rc = 0;
    if (img.dims[0] != lab.dims[0]) {
        rc = cnn_fail(err, "%s: %u labels, but %s has %u images", labels_path, lab.dims[0],
                      images_path, img.dims[0]);
        goto done;
    }
    ds->images = malloc((size_t)img.bytes * sizeof(float));
    ds->labels = malloc((size_t)lab.bytes * sizeof(int32_t));
    if (!ds->images || !ds->labels) {
        rc = cnn_fail(err, "%s: out of memory for %u images", images_path, img.dims[0]);
        cnn_dataset_free(ds);
        goto done;
    }
    for (int64_t i = 0; i < img.bytes; i++)
        ds->images[i] = (float)img.data[i] / 255.0f; /* as torchvision's ToTensor */
    for (int64_t i = 0; i < lab.bytes; i++)
        ds->labels[i] = lab.data[i];
    ds->count = img.dims[0];
    ds->c = 1;
    ds->h = (int32_t)img.dims[1];
    ds->w = (int32_t)img.dims[2];
done:
    free(img.data);
    free(lab.data);
    return rc;
}
