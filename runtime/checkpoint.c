/*
 * checkpoint.c — parameters to and from safetensors files.
 *
 * Layout (https://github.com/huggingface/safetensors):
 *
 *   u64 little-endian N | N bytes of JSON header | data section
 *
 *   {"__metadata__": {"format": "cnnc", "network": "lenet5",
 *                     "arch_hash": "<16 hex digits>", "abi": "1"},
 *    "conv1.weight": {"dtype": "F32", "shape": [6, 1, 5, 5],
 *                     "data_offsets": [0, 600]}, ...}
 *
 * Offsets are relative to the data section; data is little-endian.  The
 * header is padded with spaces to a multiple of 8 so the data is aligned.
 * Tensors are written in the model's parameter order, in PyTorch's names
 * and layouts, so torch's safetensors loader reads our files and we read
 * files written by PyTorch.
 *
 * Saving is atomic: the file is written as "<path>.tmp.<pid>" in the same
 * directory, flushed, fsynced and renamed over path, and the directory is
 * fsynced so that the rename itself survives a crash.  Any failure before
 * the rename removes the temporary file and leaves the old checkpoint as
 * it was.
 *
 * Loading trusts nothing in the file: the header length must fit the file,
 * the header must be a JSON object, every tensor entry (ours or not) must
 * have a known dtype, a shape whose size matches its byte range, and a
 * range inside the data section that overlaps no other.  Then every
 * parameter of the model must be present as F32 with its exact shape.
 * Data is read into a scratch copy first, so a failed load leaves params
 * unchanged.  Every message names the file, and the tensor where one is
 * at fault.  The metadata is not required (PyTorch writes none); where it
 * names another network, mismatch messages say so.
 */
#include "cnnrt.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER (100 * 1000 * 1000) /* safetensors' own limit on N */
#define MAX_ELEMS (INT64_C(1) << 50)   /* shape sanity bound */

/* ---- little-endian floats ------------------------------------------------ */

static void store_le32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

/* Write n floats little-endian; 0 or -1 (errno set). */
static int write_floats(FILE *f, const float *x, int64_t n)
{
    uint8_t buf[4096 * 4];
    while (n > 0) {
        int64_t k = n < 4096 ? n : 4096;
        for (int64_t i = 0; i < k; i++) {
            uint32_t v;
            memcpy(&v, &x[i], 4);
            store_le32(buf + 4 * i, v);
        }
        if (fwrite(buf, 4, (size_t)k, f) != (size_t)k)
            return -1;
        x += k;
        n -= k;
    }
    return 0;
}

/* Convert n little-endian floats in place to host order. */
static void floats_from_le(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint8_t b[4];
        memcpy(b, &x[i], 4);
        uint32_t v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        memcpy(&x[i], &v, 4);
    }
}

/* ---- saving --------------------------------------------------------------- */

/* The JSON header for m, padded with spaces to a multiple of 8; malloc'd.
 * NULL when out of memory or when a name is not valid UTF-8 (jansson
 * refuses it): a header silently missing a tensor would be worse. */
static char *build_header(const cnn_model_desc *m, size_t *len)
{
    char hash[17], abi[16];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)m->arch_hash);
    snprintf(abi, sizeof abi, "%d", CNN_ABI_VERSION);
    json_t *root = json_object();
    int bad = !root || json_object_set_new(root, "__metadata__",
                                           json_pack("{s:s, s:s, s:s, s:s}", "format", "cnnc",
                                                     "network", m->name, "arch_hash", hash,
                                                     "abi", abi)) != 0;
    int64_t offset = 0;
    for (int32_t i = 0; i < m->n_params && !bad; i++) {
        const cnn_param_desc *p = &m->params[i];
        json_t *shape = json_array();
        for (int d = 0; d < p->ndim; d++)
            bad |= json_array_append_new(shape, json_integer(p->shape[d])) != 0;
        int64_t end = offset + p->size * 4;
        bad |= json_object_set_new(root, p->name,
                                   json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape",
                                             shape, "data_offsets", (json_int_t)offset,
                                             (json_int_t)end)) != 0;
        offset = end;
    }
    char *text = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text)
        return NULL;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = '\0';
    *len = padded;
    return out;
}

/* Write the whole file to f; 0 or -1 (errno set). */
static int write_checkpoint(FILE *f, const cnn_model_desc *m, const float *params,
                            const char *header, size_t header_len)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    if (fwrite(len, 1, 8, f) != 8 || fwrite(header, 1, header_len, f) != header_len)
        return -1;
    for (int32_t i = 0; i < m->n_params; i++)
        if (write_floats(f, params + m->params[i].offset, m->params[i].size) < 0)
            return -1;
    return 0;
}

/* Create the temporary file.  A leftover of a crashed process with our pid
 * (pids repeat in containers) is removed and the creation retried once. */
static FILE *create_temp(const char *tmp)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
    }
    return f;
}

/* fsync the directory holding path, so the rename is durable.  The new
 * file is already in place, so a failure is only worth a warning. */
static void sync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL && errno != EROFS))
        cnn_log(CNN_LOG_WARN, "warning: %s: cannot sync its directory: %s", path,
                strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
}

int cnn_checkpoint_save(const char *path, const cnn_model_desc *m, const float *params,
                        cnn_error *err)
{
    cnn_error inner;
    if (cnn_model_check(m, &inner) < 0)
        return cnn_fail(err, "%s: cannot save: %s", path, inner.msg);
    size_t header_len = 0;
    char *header = build_header(m, &header_len);
    char tmp[4096];
    if (!header)
        return cnn_fail(err, "%s: cannot build the checkpoint header (out of memory, or a "
                        "parameter name that is not UTF-8)", path);
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        free(header);
        return cnn_fail(err, "%s: path too long", path);
    }
    FILE *f = create_temp(tmp);
    if (!f) {
        int e = errno;
        free(header);
        return cnn_fail(err, "%s: cannot create temporary file %s: %s", path, tmp,
                        strerror(e));
    }
    const char *step = "write";
    int rc = write_checkpoint(f, m, params, header, header_len);
    free(header);
    if (rc == 0 && (step = "flush", fflush(f) != 0))
        rc = -1;
    if (rc == 0 && (step = "fsync", fsync(fileno(f)) != 0))
        rc = -1;
    int e = errno;
    if (fclose(f) != 0 && rc == 0) {
        step = "close";
        rc = -1;
        e = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        step = "rename";
        rc = -1;
        e = errno;
    }
    if (rc < 0) {
        unlink(tmp);
        return cnn_fail(err, "%s: cannot save checkpoint (%s %s): %s; the previous file, if "
                        "any, is unchanged", path, step, tmp, strerror(e));
    }
    sync_parent_dir(path);
    return 0;
}

/* ---- loading: the header ------------------------------------------------- */

typedef struct tensor_range {
    const char *name;
    int64_t begin, end; /* byte range in the data section */
} tensor_range;

static int dtype_size(const char *dtype)
{
    static const struct { const char *name; int size; } table[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
        {"I16", 2}, {"I8", 1},  {"U64", 8}, {"U32", 4},  {"U16", 2}, {"U8", 1},
        {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, dtype) == 0)
            return table[i].size;
    return 0;
}

/* Element count of a JSON shape, or -1 if it is not an array of
 * non-negative integers of sane size. */
static int64_t shape_elems(const json_t *shape)
{
    if (!json_is_array(shape))
        return -1;
    int64_t n = 1;
    for (size_t i = 0; i < json_array_size(shape); i++) {
        const json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 ||
            json_integer_value(d) > MAX_ELEMS)
            return -1;
        n *= json_integer_value(d);
        if (n > MAX_ELEMS)
            return -1;
    }
    return n;
}

/* Validate one tensor entry against the data section; fills *r. */
static int check_entry(const char *path, const char *name, const json_t *t,
                       int64_t data_size, tensor_range *r, cnn_error *err)
{
    const json_t *dtype = json_object_get(t, "dtype");
    const json_t *offs = json_object_get(t, "data_offsets");
    if (!json_is_object(t) || !json_is_string(dtype))
        return cnn_fail(err, "%s: tensor %s: no dtype in the header", path, name);
    int size = dtype_size(json_string_value(dtype));
    if (!size)
        return cnn_fail(err, "%s: tensor %s: unknown dtype %s", path, name,
                        json_string_value(dtype));
    int64_t elems = shape_elems(json_object_get(t, "shape"));
    if (elems < 0)
        return cnn_fail(err, "%s: tensor %s: bad or missing shape", path, name);
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) || !json_is_integer(json_array_get(offs, 1)))
        return cnn_fail(err, "%s: tensor %s: bad or missing data_offsets", path, name);
    r->name = name;
    r->begin = json_integer_value(json_array_get(offs, 0));
    r->end = json_integer_value(json_array_get(offs, 1));
    if (r->begin < 0 || r->end < r->begin)
        return cnn_fail(err, "%s: tensor %s: bad data_offsets [%lld, %lld]", path, name,
                        (long long)r->begin, (long long)r->end);
    if (r->end > data_size)
        return cnn_fail(err, "%s: tensor %s: data_offsets [%lld, %lld] run past the end of "
                        "the data (%lld bytes): truncated file?", path, name,
                        (long long)r->begin, (long long)r->end, (long long)data_size);
    if (r->end - r->begin != elems * size)
        return cnn_fail(err, "%s: tensor %s: %lld bytes of data for %lld elements of %s",
                        path, name, (long long)(r->end - r->begin), (long long)elems,
                        json_string_value(dtype));
    return 0;
}

static int compare_ranges(const void *a, const void *b)
{
    const tensor_range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Validate every tensor entry of the header and that no two overlap. */
static int check_entries(const char *path, const json_t *root, int64_t data_size,
                         cnn_error *err)
{
    size_t n = json_object_size(root), k = 0;
    tensor_range *r = malloc((n ? n : 1) * sizeof *r);
    if (!r)
        return cnn_fail(err, "%s: out of memory", path);
    const char *name;
    const json_t *t;
    int rc = 0;
    json_object_foreach((json_t *)root, name, t) {
        if (strcmp(name, "__metadata__") == 0) {
            if (!json_is_object(t))
                rc = cnn_fail(err, "%s: __metadata__ is not a JSON object", path);
        } else if (check_entry(path, name, t, data_size, &r[k], err) < 0) {
            rc = -1;
        } else {
            k++;
        }
        if (rc < 0)
            break;
    }
    if (rc == 0)
        qsort(r, k, sizeof *r, compare_ranges);
    const tensor_range *last = NULL; /* the non-empty range reaching furthest */
    for (size_t i = 0; rc == 0 && i < k; i++) {
        if (r[i].end == r[i].begin)
            continue;
        if (last && r[i].begin < last->end)
            rc = cnn_fail(err, "%s: tensors %s and %s overlap in the data section", path,
                          last->name, r[i].name);
        if (!last || r[i].end > last->end)
            last = &r[i];
    }
    free(r);
    return rc;
}

/* ---- loading: the parameters ---------------------------------------------- */

/* pread exactly len bytes at off; 0, or -1 (errno set, 0 at end of file). */
static int read_at(int fd, void *buf, int64_t len, int64_t off)
{
    while (len > 0) {
        ssize_t got = pread(fd, buf, (size_t)len, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = 0;
            return -1;
        }
        buf = (char *)buf + got;
        len -= got;
        off += got;
    }
    return 0;
}

/* " (the file is a checkpoint of network X)" when the metadata names
 * another network or architecture, else "". */
static void foreign_note(const json_t *root, const cnn_model_desc *m, char *buf, size_t size)
{
    const json_t *meta = json_object_get(root, "__metadata__");
    const char *net = json_string_value(json_object_get(meta, "network"));
    const char *hash = json_string_value(json_object_get(meta, "arch_hash"));
    char ours[17];
    snprintf(ours, sizeof ours, "%016llx", (unsigned long long)m->arch_hash);
    buf[0] = '\0';
    if (net && (strcmp(net, m->name) != 0 || (hash && strcmp(hash, ours) != 0)))
        snprintf(buf, size, " (the file is a checkpoint of network %s, arch %s; this is %s, "
                 "arch %s)", net, hash ? hash : "?", m->name, ours);
}

static void format_shape(char *buf, size_t size, const int64_t *dims, size_t n)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (size_t i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? "," : "",
                                 (long long)dims[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* Parameter p is in the header as F32 with p's shape. */
static int check_param_entry(const char *path, const json_t *root, const cnn_model_desc *m,
                             const cnn_param_desc *p, cnn_error *err)
{
    char note[256], want[96], have[96];
    foreign_note(root, m, note, sizeof note);
    const json_t *t = json_object_get(root, p->name);
    if (!t)
        return cnn_fail(err, "%s: tensor %s is missing%s", path, p->name, note);
    const char *dtype = json_string_value(json_object_get(t, "dtype"));
    if (strcmp(dtype, "F32") != 0)
        return cnn_fail(err, "%s: tensor %s has dtype %s, expected F32%s", path, p->name,
                        dtype, note);
    const json_t *shape = json_object_get(t, "shape");
    int64_t dims[8];
    size_t n = json_array_size(shape);
    for (size_t i = 0; i < n && i < 8; i++)
        dims[i] = json_integer_value(json_array_get(shape, i));
    int same = n == (size_t)p->ndim;
    for (size_t i = 0; same && i < n; i++)
        same = dims[i] == p->shape[i];
    if (!same) {
        format_shape(want, sizeof want, p->shape, (size_t)p->ndim);
        format_shape(have, sizeof have, dims, n < 8 ? n : 8);
        return cnn_fail(err, "%s: tensor %s has shape %s%s, network %s needs %s%s", path,
                        p->name, have, n > 8 ? "..." : "", m->name, want, note);
    }
    return 0;
}

/* Read every parameter of m into scratch (param_floats floats). */
static int read_params(int fd, const char *path, int64_t data_start, const json_t *root,
                       const cnn_model_desc *m, float *scratch, cnn_error *err)
{
    for (int32_t i = 0; i < m->n_params; i++) {
        const cnn_param_desc *p = &m->params[i];
        if (check_param_entry(path, root, m, p, err) < 0)
            return -1;
    }
    for (int32_t i = 0; i < m->n_params; i++) {
        const cnn_param_desc *p = &m->params[i];
        const json_t *offs = json_object_get(json_object_get(root, p->name), "data_offsets");
        int64_t begin = json_integer_value(json_array_get(offs, 0));
        if (read_at(fd, scratch + p->offset, p->size * 4, data_start + begin) < 0)
            return cnn_fail(err, "%s: tensor %s: read error: %s", path, p->name,
                            errno ? strerror(errno) : "unexpected end of file");
        floats_from_le(scratch + p->offset, p->size);
    }
    return 0;
}

/* Read and parse the header; *root receives the JSON object. */
static int read_header(int fd, const char *path, int64_t file_size, json_t **root,
                       int64_t *data_start, cnn_error *err)
{
    uint8_t len[8];
    if (file_size == 0)
        return cnn_fail(err, "%s: empty file, not a safetensors checkpoint", path);
    if (file_size < 8 || read_at(fd, len, 8, 0) < 0)
        return cnn_fail(err, "%s: truncated: %lld bytes, too short for a safetensors header",
                        path, (long long)file_size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | len[i];
    if (n > MAX_HEADER)
        return cnn_fail(err, "%s: not a safetensors file (header length %llu)", path,
                        (unsigned long long)n);
    if ((int64_t)n > file_size - 8)
        return cnn_fail(err, "%s: truncated: the header needs %llu bytes, the file has %lld "
                        "after the length", path, (unsigned long long)n,
                        (long long)(file_size - 8));
    char *text = malloc(n ? n : 1);
    if (!text)
        return cnn_fail(err, "%s: out of memory for a %llu-byte header", path,
                        (unsigned long long)n);
    if (read_at(fd, text, (int64_t)n, 8) < 0) {
        free(text);
        return cnn_fail(err, "%s: read error: %s", path, strerror(errno));
    }
    json_error_t jerr;
    *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!*root)
        return cnn_fail(err, "%s: bad safetensors header (invalid JSON at byte %d: %s)", path,
                        jerr.position, jerr.text);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return cnn_fail(err, "%s: bad safetensors header (not a JSON object)", path);
    }
    *data_start = 8 + (int64_t)n;
    return 0;
}

int cnn_checkpoint_load(const char *path, const cnn_model_desc *m, float *params,
                        cnn_error *err)
{
    cnn_error inner;
    if (cnn_model_check(m, &inner) < 0)
        return cnn_fail(err, "%s: cannot load: %s", path, inner.msg);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cnn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    json_t *root = NULL;
    float *scratch = NULL;
    int64_t data_start = 0;
    int rc = -1;
    if (fstat(fd, &st) != 0) {
        cnn_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        cnn_fail(err, "%s: not a regular file", path);
    } else if (read_header(fd, path, st.st_size, &root, &data_start, err) == 0 &&
               check_entries(path, root, st.st_size - data_start, err) == 0) {
        scratch = malloc((size_t)(m->param_floats > 0 ? m->param_floats : 1) * sizeof(float));
        if (!scratch)
            cnn_fail(err, "%s: out of memory", path);
        else
            rc = read_params(fd, path, data_start, root, m, scratch, err);
    }
    if (rc == 0)
        for (int32_t i = 0; i < m->n_params; i++)
            memcpy(params + m->params[i].offset, scratch + m->params[i].offset,
                   (size_t)m->params[i].size * sizeof(float));
    free(scratch);
    json_decref(root);
    close(fd);
    return rc;
}
