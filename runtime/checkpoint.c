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

/* A tensor of a checkpoint: a parameter, or one optimizer state array of
 * a parameter ("optimizer.exp_avg.conv1.weight"), with the parameter's
 * shape. */
typedef struct ck_entry {
    char *name;               /* malloc'd */
    const cnn_param_desc *p;  /* shape and offset */
    float *data;              /* p->size floats */
} ck_entry;

static void free_entries(ck_entry *e, int n)
{
    for (int i = 0; i < n; i++)
        free(e[i].name);
    free(e);
}

/* The tensors of a checkpoint of m: every parameter (data in params), then,
 * with opt, each state array of each trainable parameter, named after opt's
 * state and with its data in state[s] (state may be NULL: opt's own arrays).
 * *n receives the count; NULL when out of memory. */
static ck_entry *collect_entries(const cnn_model_desc *m, const float *params,
                                 cnn_optimizer *opt, float *const *state, int *n)
{
    int nstate = opt ? cnn_optimizer_state_count(opt) : 0;
    ck_entry *e = calloc((size_t)m->n_params * (size_t)(1 + nstate) + 1, sizeof *e);
    if (!e)
        return NULL;
    int k = 0;
    for (int32_t i = 0; i < m->n_params; i++) {
        e[k].name = strdup(m->params[i].name);
        e[k].p = &m->params[i];
        e[k].data = (float *)params + m->params[i].offset;
        if (!e[k++].name)
            goto oom;
    }
    for (int s = 0; s < nstate; s++)
        for (int32_t i = 0; i < m->n_params; i++) {
            const cnn_param_desc *p = &m->params[i];
            if (!(p->flags & CNN_PARAM_TRAINABLE))
                continue;
            const char *sname = cnn_optimizer_state_name(opt, s);
            size_t len = strlen(sname) + strlen(p->name) + 16;
            e[k].name = malloc(len);
            if (!e[k].name)
                goto oom;
            snprintf(e[k].name, len, "optimizer.%s.%s", sname, p->name);
            e[k].p = p;
            e[k++].data = (state ? state[s] : cnn_optimizer_state(opt, s)) + p->offset;
        }
    *n = k;
    return e;
oom:
    free_entries(e, k + 1);
    return NULL;
}

/* The __metadata__ object: network, architecture, ABI and, with a training
 * state, the counters and the optimizer needed to resume. */
static json_t *build_metadata(const cnn_model_desc *m, const cnn_optimizer *opt,
                              const cnn_train_state *st)
{
    char hash[17], abi[16];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)m->arch_hash);
    snprintf(abi, sizeof abi, "%d", CNN_ABI_VERSION);
    json_t *meta = json_pack("{s:s, s:s, s:s, s:s}", "format", "cnnc", "network", m->name,
                             "arch_hash", hash, "abi", abi);
    if (meta && st) {
        char buf[4][32];
        snprintf(buf[0], sizeof buf[0], "%llu", (unsigned long long)st->step);
        snprintf(buf[1], sizeof buf[1], "%lld", (long long)st->epoch);
        snprintf(buf[2], sizeof buf[2], "%lld", (long long)st->batch_in_epoch);
        snprintf(buf[3], sizeof buf[3], "%llu", (unsigned long long)st->seed);
        json_object_set_new(meta, "step", json_string(buf[0]));
        json_object_set_new(meta, "epoch", json_string(buf[1]));
        json_object_set_new(meta, "batch_in_epoch", json_string(buf[2]));
        json_object_set_new(meta, "seed", json_string(buf[3]));
    }
    if (meta && opt) {
        char steps[32];
        snprintf(steps, sizeof steps, "%llu", (unsigned long long)cnn_optimizer_steps(opt));
        json_object_set_new(meta, "optimizer", json_string(cnn_optim_name(cnn_optimizer_type(opt))));
        json_object_set_new(meta, "optimizer_steps", json_string(steps));
    }
    return meta;
}

/* The JSON header for the entries, padded with spaces to a multiple of 8;
 * malloc'd.  NULL when out of memory or when a name is not valid UTF-8
 * (jansson refuses it): a header silently missing a tensor would be worse. */
static char *build_header(const ck_entry *e, int n, json_t *meta, size_t *len)
{
    json_t *root = json_object();
    int bad = !root || !meta || json_object_set_new(root, "__metadata__", meta) != 0;
    int64_t offset = 0;
    for (int i = 0; i < n && !bad; i++) {
        const cnn_param_desc *p = e[i].p;
        json_t *shape = json_array();
        for (int d = 0; d < p->ndim; d++)
            bad |= json_array_append_new(shape, json_integer(p->shape[d])) != 0;
        int64_t end = offset + p->size * 4;
        bad |= json_object_set_new(root, e[i].name,
                                   json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape",
                                             shape, "data_offsets", (json_int_t)offset,
                                             (json_int_t)end)) != 0;
        offset = end;
    }
    char *text = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text)
        return NULL;
    size_t used = strlen(text), padded = (used + 7) / 8 * 8;
    char *out = realloc(text, padded + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + used, ' ', padded - used);
    out[padded] = '\0';
    *len = padded;
    return out;
}

/* Write the whole file to f; 0 or -1 (errno set). */
static int write_checkpoint(FILE *f, const ck_entry *e, int n, const char *header,
                            size_t header_len)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    if (fwrite(len, 1, 8, f) != 8 || fwrite(header, 1, header_len, f) != header_len)
        return -1;
    for (int i = 0; i < n; i++)
        if (write_floats(f, e[i].data, e[i].p->size) < 0)
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
    return cnn_checkpoint_save_state(path, m, params, NULL, NULL, err);
}

int cnn_checkpoint_save_state(const char *path, const cnn_model_desc *m, const float *params,
                              cnn_optimizer *opt, const cnn_train_state *st, cnn_error *err)
{
    cnn_error inner;
    if (cnn_model_check(m, &inner) < 0)
        return cnn_fail(err, "%s: cannot save: %s", path, inner.msg);
    size_t header_len = 0;
    int n = 0;
    ck_entry *entries = collect_entries(m, params, opt, NULL, &n);
    char *header = entries ? build_header(entries, n, build_metadata(m, opt, st), &header_len)
                           : NULL;
    char tmp[4096];
    if (!header) {
        free_entries(entries, n);
        return cnn_fail(err, "%s: cannot build the checkpoint header (out of memory, or a "
                        "parameter name that is not UTF-8)", path);
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        free(header);
        free_entries(entries, n);
        return cnn_fail(err, "%s: path too long", path);
    }
    FILE *f = create_temp(tmp);
    if (!f) {
        int e = errno;
        free(header);
        free_entries(entries, n);
        return cnn_fail(err, "%s: cannot create temporary file %s: %s", path, tmp,
                        strerror(e));
    }
    const char *step = "write";
    int rc = write_checkpoint(f, entries, n, header, header_len);
    free(header);
    free_entries(entries, n);
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

/* Tensor `name` is in the header as F32 with p's shape. */
static int check_param_entry(const char *path, const json_t *root, const cnn_model_desc *m,
                             const char *name, const cnn_param_desc *p, cnn_error *err)
{
    char note[256], want[96], have[96];
    foreign_note(root, m, note, sizeof note);
    const json_t *t = json_object_get(root, name);
    if (!t)
        return cnn_fail(err, "%s: tensor %s is missing%s", path, name, note);
    const char *dtype = json_string_value(json_object_get(t, "dtype"));
    if (strcmp(dtype, "F32") != 0)
        return cnn_fail(err, "%s: tensor %s has dtype %s, expected F32%s", path, name, dtype,
                        note);
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
        return cnn_fail(err, "%s: tensor %s has shape %s%s, network %s needs %s%s", path, name,
                        have, n > 8 ? "..." : "", m->name, want, note);
    }
    return 0;
}

/* Read the entries' tensors into their data pointers: every entry is
 * checked before anything is read. */
static int read_entries(int fd, const char *path, int64_t data_start, const json_t *root,
                        const cnn_model_desc *m, const ck_entry *e, int n, cnn_error *err)
{
    for (int i = 0; i < n; i++)
        if (check_param_entry(path, root, m, e[i].name, e[i].p, err) < 0)
            return -1;
    for (int i = 0; i < n; i++) {
        const json_t *offs = json_object_get(json_object_get(root, e[i].name), "data_offsets");
        int64_t begin = json_integer_value(json_array_get(offs, 0));
        if (read_at(fd, e[i].data, e[i].p->size * 4, data_start + begin) < 0)
            return cnn_fail(err, "%s: tensor %s: read error: %s", path, e[i].name,
                            errno ? strerror(errno) : "unexpected end of file");
        floats_from_le(e[i].data, e[i].p->size);
    }
    return 0;
}

/* A metadata counter written as a decimal string. */
static int meta_count(const char *path, const json_t *meta, const char *key, uint64_t *out,
                      cnn_error *err)
{
    const char *v = json_string_value(json_object_get(meta, key));
    char *end;
    if (!v || *v < '0' || *v > '9')
        return cnn_fail(err, "%s: no training state (metadata \"%s\" missing): it holds "
                        "weights only; start from them with --load instead", path, key);
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end)
        return cnn_fail(err, "%s: bad metadata \"%s\": \"%s\"", path, key, v);
    *out = x;
    return 0;
}

/* With opt: the optimizer state must be in the file, for the same kind of
 * optimizer.  With st: the counters. */
static int check_state_meta(const char *path, const json_t *root, const cnn_model_desc *m,
                            cnn_optimizer *opt, cnn_train_state *st, uint64_t *opt_steps,
                            cnn_error *err)
{
    const json_t *meta = json_object_get(root, "__metadata__");
    const char *hash = json_string_value(json_object_get(meta, "arch_hash"));
    char ours[17];
    snprintf(ours, sizeof ours, "%016llx", (unsigned long long)m->arch_hash);
    if (hash && strcmp(hash, ours) != 0)
        return cnn_fail(err, "%s: written by a different network (%s, arch %s; this is %s, "
                        "arch %s): cannot resume from it", path,
                        json_string_value(json_object_get(meta, "network"))
                            ? json_string_value(json_object_get(meta, "network"))
                            : "?",
                        hash, m->name, ours);
    if (opt) {
        const char *name = json_string_value(json_object_get(meta, "optimizer"));
        const char *want = cnn_optim_name(cnn_optimizer_type(opt));
        if (!name)
            return cnn_fail(err, "%s: no optimizer state: it holds weights only; start from "
                            "them with --load instead", path);
        if (strcmp(name, want) != 0)
            return cnn_fail(err, "%s: its optimizer state is %s's, this run uses %s", path,
                            name, want);
        if (meta_count(path, meta, "optimizer_steps", opt_steps, err) < 0)
            return -1;
    }
    if (st) {
        uint64_t v[4];
        if (meta_count(path, meta, "step", &v[0], err) < 0 ||
            meta_count(path, meta, "epoch", &v[1], err) < 0 ||
            meta_count(path, meta, "batch_in_epoch", &v[2], err) < 0 ||
            meta_count(path, meta, "seed", &v[3], err) < 0)
            return -1;
        st->step = v[0];
        st->epoch = (int64_t)v[1];
        st->batch_in_epoch = (int64_t)v[2];
        st->seed = v[3];
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
    return cnn_checkpoint_load_state(path, m, params, NULL, NULL, err);
}

/* Everything is read into scratch copies first and copied out only when the
 * whole file checked out, so a failed load changes nothing. */
int cnn_checkpoint_load_state(const char *path, const cnn_model_desc *m, float *params,
                              cnn_optimizer *opt, cnn_train_state *st, cnn_error *err)
{
    cnn_error inner;
    if (cnn_model_check(m, &inner) < 0)
        return cnn_fail(err, "%s: cannot load: %s", path, inner.msg);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cnn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    json_t *root = NULL;
    int nstate = opt ? cnn_optimizer_state_count(opt) : 0;
    size_t floats = (size_t)(m->param_floats > 0 ? m->param_floats : 1);
    float *scratch = calloc(floats * (size_t)(1 + nstate), sizeof(float));
    float *params_copy = scratch;
    ck_entry *entries = NULL;
    int n = 0, rc = -1;
    int64_t data_start = 0;
    uint64_t opt_steps = 0;
    cnn_train_state state = {0};
    if (fstat(fd, &sb) != 0) {
        cnn_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        cnn_fail(err, "%s: not a regular file", path);
    } else if (!scratch) {
        cnn_fail(err, "%s: out of memory", path);
    } else if (read_header(fd, path, sb.st_size, &root, &data_start, err) == 0 &&
               check_entries(path, root, sb.st_size - data_start, err) == 0) {
        /* Entries that read into the scratch arrays: parameters first, then
         * state array k at scratch + (1 + k) * floats. */
        float *state[CNN_MAX_OPT_STATE];
        for (int k = 0; k < nstate && k < CNN_MAX_OPT_STATE; k++)
            state[k] = scratch + (size_t)(1 + k) * floats;
        entries = collect_entries(m, params_copy, opt, state, &n);
        if (!entries)
            cnn_fail(err, "%s: out of memory", path);
        else
            rc = read_entries(fd, path, data_start, root, m, entries, n, err);
    }
    if (rc == 0 && (opt || st))
        rc = check_state_meta(path, root, m, opt, st ? &state : NULL, &opt_steps, err);
    if (rc == 0) {
        for (int32_t i = 0; i < m->n_params; i++)
            memcpy(params + m->params[i].offset, params_copy + m->params[i].offset,
                   (size_t)m->params[i].size * sizeof(float));
        for (int k = 0; k < nstate; k++)
            memcpy(cnn_optimizer_state(opt, k), scratch + (size_t)(1 + k) * floats,
                   (size_t)m->param_floats * sizeof(float));
        if (opt)
            cnn_optimizer_set_steps(opt, opt_steps);
        if (st)
            *st = state;
    }
    free_entries(entries, n);
    free(scratch);
    json_decref(root);
    close(fd);
    return rc;
}
