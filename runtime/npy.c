/*
 * npy.c — writing NumPy .npy files (--predict).
 *
 * Format 1.0: the magic "\x93NUMPY", version 1.0, a little-endian u16
 * header length, and a Python dict literal padded with spaces and ending
 * in a newline so that magic + length + header is a multiple of 64 bytes;
 * then the data, little-endian float32 in C order.  Written to a temporary
 * file and renamed, like checkpoints.
 */
#include "cnnrt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(FILE *f, const float *data, int64_t count)
{
    uint8_t buf[4096];
    while (count > 0) {
        int64_t k = count < 1024 ? count : 1024;
        for (int64_t i = 0; i < k; i++) {
            uint32_t v;
            memcpy(&v, &data[i], 4);
            for (int b = 0; b < 4; b++)
                buf[4 * i + b] = (uint8_t)(v >> (8 * b));
        }
        if (fwrite(buf, 4, (size_t)k, f) != (size_t)k)
            return -1;
        data += k;
        count -= k;
    }
    return 0;
}

int cnn_npy_write(const char *path, const float *data, int64_t rows, int64_t cols,
                  cnn_error *err)
{
    char header[128];
    int len = snprintf(header, sizeof header,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       (long long)rows, (long long)cols);
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    memset(header + len, ' ', (size_t)pad);
    header[len + pad] = '\n';
    int hlen = len + pad + 1;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return cnn_fail(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return cnn_fail(err, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)hlen, (uint8_t)(hlen >> 8)};
    int bad = fwrite(pre, 1, 10, f) != 10 || fwrite(header, 1, (size_t)hlen, f) != (size_t)hlen ||
              write_all(f, data, rows * cols) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad && rename(tmp, path) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(tmp);
        return cnn_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}
