/*
 * rt_test_checkpoint.c — safetensors checkpoints.
 *
 * Files the runtime writes are read back bit for bit and also parsed here
 * independently (jansson and byte arithmetic), so that a writer and reader
 * sharing one mistake cannot pass.  Broken files are crafted by hand: a
 * header string and a data section; each must be refused with a message
 * that names the file and, where one is at fault, the tensor.  Failed
 * saves must leave the previous file byte for byte and no temporary file.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnnrt.h"
#include "rt_fake_model.h"
#include "rt_suites.h"
#include "rt_util.h"

/* Parameters with awkward values: signed zero, a denormal, huge, tiny. */
static void odd_params(float *p)
{
    for (int i = 0; i < FAKE_FLOATS; i++)
        p[i] = (float)(i * 0.37 - 7.1);
    p[0] = -0.0f;
    p[1] = 1e-40f;
    p[2] = 3.4e38f;
    p[3] = -1.17549435e-38f;
    p[FAKE_B] = 0.1f;
    p[FAKE_RM + 2] = 12345.678f;
}

/* The parameter slots of a and b hold the same bits (floats 51 and 55
 * belong to no parameter). */
static int same_params(const float *a, const float *b)
{
    for (int i = 0; i < 3; i++) {
        const cnn_param_desc *p = &rt_fake_params[i];
        if (memcmp(a + p->offset, b + p->offset, (size_t)p->size * sizeof(float)) != 0)
            return 0;
    }
    return 1;
}

static uint64_t le64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

START_TEST(test_roundtrip_bit_exact)
{
    const char *dir = rt_tmpdir(), *path = rt_path(dir, "w.safetensors");
    float params[FAKE_FLOATS], back[FAKE_FLOATS];
    cnn_error err;
    odd_params(params);
    ck_assert_msg(cnn_checkpoint_save(path, &cnn_model, params, &err) == 0, "%s", err.msg);
    memset(back, 0xff, sizeof back);
    ck_assert_msg(cnn_checkpoint_load(path, &cnn_model, back, &err) == 0, "%s", err.msg);
    ck_assert(same_params(params, back));
    ck_assert_int_eq(rt_count_entries(dir, ".tmp."), 0);
}
END_TEST

/* Parse the written file without the runtime: layout, header, data. */
START_TEST(test_written_file_format)
{
    const char *dir = rt_tmpdir(), *path = rt_path(dir, "w.safetensors");
    float params[FAKE_FLOATS];
    cnn_error err;
    odd_params(params);
    ck_assert_int_eq(cnn_checkpoint_save(path, &cnn_model, params, &err), 0);
    size_t size;
    uint8_t *file = rt_read_file(path, &size);
    ck_assert_ptr_nonnull(file);
    uint64_t n = le64(file);
    ck_assert_uint_eq(n % 8, 0);
    ck_assert_uint_eq(size, 8 + n + 54 * 4); /* 54 floats: no gaps, unused floats skipped */
    ck_assert_int_eq(file[8], '{');
    json_error_t jerr;
    json_t *root = json_loadb((const char *)file + 8, n, 0, &jerr);
    ck_assert_msg(root != NULL, "%s", jerr.text);
    json_t *meta = json_object_get(root, "__metadata__");
    ck_assert_str_eq(json_string_value(json_object_get(meta, "format")), "cnnc");
    ck_assert_str_eq(json_string_value(json_object_get(meta, "network")), "fake");
    ck_assert_str_eq(json_string_value(json_object_get(meta, "arch_hash")), "0123456789abcdef");
    ck_assert_str_eq(json_string_value(json_object_get(meta, "abi")), "1");
    ck_assert_int_eq(json_object_size(root), 4);
    int64_t expect_begin = 0;
    for (int i = 0; i < 3; i++) {
        const cnn_param_desc *p = &rt_fake_params[i];
        json_t *t = json_object_get(root, p->name);
        ck_assert_msg(t != NULL, "%s missing", p->name);
        ck_assert_str_eq(json_string_value(json_object_get(t, "dtype")), "F32");
        json_t *shape = json_object_get(t, "shape");
        ck_assert_int_eq(json_array_size(shape), p->ndim);
        for (int d = 0; d < p->ndim; d++)
            ck_assert_int_eq(json_integer_value(json_array_get(shape, d)), p->shape[d]);
        json_t *offs = json_object_get(t, "data_offsets");
        int64_t begin = json_integer_value(json_array_get(offs, 0));
        int64_t end = json_integer_value(json_array_get(offs, 1));
        ck_assert_int_eq(begin, expect_begin);
        ck_assert_int_eq(end, begin + p->size * 4);
        expect_begin = end;
        for (int64_t k = 0; k < p->size; k++) { /* little-endian floats */
            const uint8_t *b = file + 8 + n + begin + 4 * k;
            uint32_t bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                            (uint32_t)b[3] << 24;
            float v;
            memcpy(&v, &bits, 4);
            ck_assert(memcmp(&v, &params[p->offset + k], 4) == 0);
        }
    }
    json_decref(root);
    free(file);
}
END_TEST

/* Write a safetensors file from a header and `data_bytes` bytes of floats
 * 0, 0.5, 1, ...; pad the header to 8 unless raw. */
static void craft(const char *path, const char *header, size_t data_bytes, int raw)
{
    size_t n = strlen(header), padded = raw ? n : (n + 7) / 8 * 8;
    size_t total = 8 + padded + data_bytes;
    uint8_t *b = calloc(1, total);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(b + 8, header, n);
    memset(b + 8 + n, ' ', padded - n);
    for (size_t k = 0; k + 4 <= data_bytes; k += 4) {
        float v = (float)k / 8;
        uint32_t bits;
        memcpy(&bits, &v, 4);
        for (int i = 0; i < 4; i++)
            b[8 + padded + k + (size_t)i] = (uint8_t)(bits >> (8 * i));
    }
    rt_write_file(path, b, total);
    free(b);
}

#define W_OK_ENTRY "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[3,16],\"data_offsets\":[0,192]}"
#define B_OK_ENTRY "\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[192,204]}"
#define RM_OK_ENTRY \
    "\"fc.running_mean\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[204,216]}"

START_TEST(test_foreign_writer_and_extra_tensors)
{
    /* No metadata, no padding, tensors in another order, an extra tensor
     * of another dtype: what other safetensors writers produce. */
    const char *dir = rt_tmpdir(), *path = rt_path(dir, "torch.safetensors");
    craft(path, "{\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[216,224]},"
                RM_OK_ENTRY "," B_OK_ENTRY "," W_OK_ENTRY "}", 224, 1);
    float params[FAKE_FLOATS];
    cnn_error err;
    ck_assert_msg(cnn_checkpoint_load(path, &cnn_model, params, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 51; i++)
        ck_assert_float_eq(params[i], (float)i / 2);
    for (int i = FAKE_RM; i < FAKE_RM + 3; i++) /* float 51 is unused */
        ck_assert_float_eq(params[i], (float)(i - 1) / 2);
}
END_TEST

static const struct bad_file {
    const char *header;
    size_t data_bytes;
    const char *expect;
} bad_files[] = {
    {"{" B_OK_ENTRY "," RM_OK_ENTRY "}", 216, "tensor fc.weight is missing"},
    {"{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[3,15],\"data_offsets\":[0,180]}," B_OK_ENTRY
     "," RM_OK_ENTRY "}", 216, "tensor fc.weight has shape [3,15], network fake needs [3,16]"},
    {"{" W_OK_ENTRY ",\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[192,204]},"
     RM_OK_ENTRY "}", 216, "tensor fc.bias has shape [1,3], network fake needs [3]"},
    {"{\"fc.weight\":{\"dtype\":\"F16\",\"shape\":[3,16],\"data_offsets\":[0,96]}," B_OK_ENTRY
     "," RM_OK_ENTRY "}", 216, "tensor fc.weight has dtype F16, expected F32"},
    {"{" W_OK_ENTRY ",\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[180,192]},"
     RM_OK_ENTRY "}", 216, "tensors fc.weight and fc.bias overlap"},
    {"{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[3,16],\"data_offsets\":[0,100]}}", 216,
     "tensor fc.weight: 100 bytes of data for 48 elements of F32"},
    {"{\"fc.weight\":{\"dtype\":\"Q7\",\"shape\":[3,16],\"data_offsets\":[0,192]}}", 216,
     "tensor fc.weight: unknown dtype Q7"},
    {"{\"fc.weight\":{\"dtype\":\"F32\",\"data_offsets\":[0,192]}}", 216,
     "tensor fc.weight: bad or missing shape"},
    {"{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[3,-16],\"data_offsets\":[0,192]}}", 216,
     "tensor fc.weight: bad or missing shape"},
    {"{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[3,16],\"data_offsets\":[192]}}", 216,
     "tensor fc.weight: bad or missing data_offsets"},
    {"{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[3,16],\"data_offsets\":[200,8]}}", 216,
     "tensor fc.weight: bad data_offsets [200, 8]"},
    {"{\"fc.weight\":[1,2]}", 216, "tensor fc.weight: no dtype"},
    {"{" W_OK_ENTRY "," B_OK_ENTRY "," RM_OK_ENTRY "}", 210,
     "tensor fc.running_mean: data_offsets [204, 216] run past the end of the data (210 "
     "bytes): truncated file?"},
    {"{\"__metadata__\":[1]}", 0, "__metadata__ is not a JSON object"},
    {"{\"fc.weight\": nope}", 216, "bad safetensors header (invalid JSON"},
    {"[1, 2, 3]", 216, "bad safetensors header (not a JSON object)"},
    {"{\"a\":1,\"a\":2}", 216, "bad safetensors header (invalid JSON"},
};

START_TEST(test_bad_files)
{
    const struct bad_file *b = &bad_files[_i];
    const char *dir = rt_tmpdir(), *path = rt_path(dir, "bad.safetensors");
    craft(path, b->header, b->data_bytes, 0);
    float params[FAKE_FLOATS], before[FAKE_FLOATS];
    for (int i = 0; i < FAKE_FLOATS; i++)
        params[i] = before[i] = (float)i;
    cnn_error err;
    ck_assert_int_eq(cnn_checkpoint_load(path, &cnn_model, params, &err), -1);
    ck_assert_msg(strstr(err.msg, b->expect), "expected \"%s\" in \"%s\"", b->expect, err.msg);
    ck_assert_msg(strncmp(err.msg, path, strlen(path)) == 0, "file not named: %s", err.msg);
    ck_assert(memcmp(params, before, sizeof params) == 0); /* untouched */
}
END_TEST

START_TEST(test_truncated_files)
{
    const char *dir = rt_tmpdir(), *good = rt_path(dir, "good"), *cut = rt_path(dir, "cut");
    float params[FAKE_FLOATS];
    cnn_error err;
    odd_params(params);
    ck_assert_int_eq(cnn_checkpoint_save(good, &cnn_model, params, &err), 0);
    size_t size;
    uint8_t *bytes = rt_read_file(good, &size);
    size_t n = (size_t)le64(bytes);
    const struct { size_t keep; const char *expect; } cases[] = {
        {0, "empty file"},
        {5, "truncated: 5 bytes, too short for a safetensors header"},
        {8 + n / 2, "truncated: the header needs"},
        {size - 1, "tensor fc.running_mean: data_offsets [204, 216] run past the end"},
        {8 + n + 100, "tensor fc.weight: data_offsets [0, 192] run past the end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rt_write_file(cut, bytes, cases[i].keep);
        ck_assert_int_eq(cnn_checkpoint_load(cut, &cnn_model, params, &err), -1);
        ck_assert_msg(strstr(err.msg, cases[i].expect) && strstr(err.msg, cut),
                      "expected \"%s\" in \"%s\"", cases[i].expect, err.msg);
    }
    /* A length field far beyond any header. */
    memset(bytes, 0xff, 8);
    rt_write_file(cut, bytes, size);
    ck_assert_int_eq(cnn_checkpoint_load(cut, &cnn_model, params, &err), -1);
    ck_assert_msg(strstr(err.msg, "not a safetensors file"), "%s", err.msg);
    free(bytes);
    ck_assert_int_eq(cnn_checkpoint_load(rt_path(dir, "none"), &cnn_model, params, &err), -1);
    ck_assert_msg(strstr(err.msg, "none: cannot open: No such file"), "%s", err.msg);
    ck_assert_int_eq(cnn_checkpoint_load(dir, &cnn_model, params, &err), -1);
    ck_assert_msg(strstr(err.msg, "not a regular file"), "%s", err.msg);
}
END_TEST

/* A network "other" with 4 classes and its own architecture hash. */
static const cnn_param_desc other_params[2] = {
    {.name = "fc.weight", .layer = "fc", .flags = CNN_PARAM_TRAINABLE, .ndim = 2,
     .init = CNN_INIT_ZEROS, .shape = {4, 16, 1, 1}, .offset = 0, .size = 64},
    {.name = "fc.bias", .layer = "fc", .kind = CNN_PARAM_BIAS, .flags = CNN_PARAM_TRAINABLE,
     .ndim = 1, .init = CNN_INIT_ZEROS, .shape = {4, 1, 1, 1}, .offset = 64, .size = 4},
};

START_TEST(test_foreign_checkpoint)
{
    cnn_model_desc other = cnn_model;
    other.name = "other";
    other.classes = 4;
    other.params = other_params;
    other.n_params = 2;
    other.param_floats = 68;
    other.arch_hash = 0xfeed;
    const char *dir = rt_tmpdir(), *path = rt_path(dir, "other.safetensors");
    float params[68] = {0};
    cnn_error err;
    ck_assert_msg(cnn_checkpoint_save(path, &other, params, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cnn_checkpoint_load(path, &cnn_model, params, &err), -1);
    ck_assert_msg(strstr(err.msg, "tensor fc.weight has shape [4,16], network fake needs "
                                  "[3,16] (the file is a checkpoint of network other, arch "
                                  "000000000000feed"),
                  "%s", err.msg);
}
END_TEST

START_TEST(test_save_into_missing_directory)
{
    const char *dir = rt_tmpdir(), *path = rt_path(dir, "no/such/dir/w.safetensors");
    float params[FAKE_FLOATS] = {0};
    cnn_error err;
    ck_assert_int_eq(cnn_checkpoint_save(path, &cnn_model, params, &err), -1);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "cannot create temporary file") &&
                  strstr(err.msg, "No such file"), "%s", err.msg);
    /* A parent that is a file. */
    rt_write_file(rt_path(dir, "file"), "x", 1);
    ck_assert_int_eq(cnn_checkpoint_save(rt_path(dir, "file/w"), &cnn_model, params, &err), -1);
    ck_assert_msg(strstr(err.msg, "Not a directory"), "%s", err.msg);
}
END_TEST

START_TEST(test_save_refuses_unencodable_name)
{
    cnn_param_desc params[3];
    memcpy(params, rt_fake_params, sizeof params);
    params[1].name = "fc.bias\xff"; /* not UTF-8: JSON cannot carry it */
    cnn_model_desc m = cnn_model;
    m.params = params;
    const char *dir = rt_tmpdir(), *path = rt_path(dir, "w");
    float values[FAKE_FLOATS] = {0};
    cnn_error err;
    ck_assert_int_eq(cnn_checkpoint_save(path, &m, values, &err), -1);
    ck_assert_msg(strstr(err.msg, "cannot build the checkpoint header"), "%s", err.msg);
    ck_assert_int_eq(rt_count_entries(dir, "w"), 0);
}
END_TEST

/* Each failure keeps the old file byte for byte and leaves no temp file. */
START_TEST(test_failed_save_keeps_old_file)
{
    const char *dir = rt_tmpdir(), *path = rt_path(dir, "w.safetensors");
    const char *copy = rt_path(dir, "copy");
    float params[FAKE_FLOATS];
    cnn_error err;
    odd_params(params);
    ck_assert_int_eq(cnn_checkpoint_save(path, &cnn_model, params, &err), 0);
    size_t size;
    uint8_t *old = rt_read_file(path, &size);
    rt_write_file(copy, old, size);
    free(old);
    params[0] = 42;

    /* The disk fills up (file size limit) in the middle of the write. */
    struct rlimit saved, small;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 200;
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = cnn_checkpoint_save(path, &cnn_model, params, &err);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err.msg, "cannot save checkpoint") && strstr(err.msg, "unchanged"),
                  "%s", err.msg);
    ck_assert(rt_files_equal(path, copy));
    ck_assert_int_eq(rt_count_entries(dir, ".tmp."), 0);

    /* The target is a directory: the rename fails. */
    const char *target = rt_path(dir, "adir");
    ck_assert_int_eq(mkdir(target, 0755), 0);
    ck_assert_int_eq(cnn_checkpoint_save(target, &cnn_model, params, &err), -1);
    ck_assert_msg(strstr(err.msg, "rename"), "%s", err.msg);
    ck_assert_int_eq(rt_count_entries(dir, ".tmp."), 0);

    /* A stale temp file of a crashed process with our pid is replaced. */
    char stale[4200];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", path, (long)getpid());
    rt_write_file(stale, "junk", 4);
    ck_assert_msg(cnn_checkpoint_save(path, &cnn_model, params, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(rt_count_entries(dir, ".tmp."), 0);
    float back[FAKE_FLOATS];
    ck_assert_int_eq(cnn_checkpoint_load(path, &cnn_model, back, &err), 0);
    ck_assert_float_eq(back[0], 42);
}
END_TEST

Suite *rt_checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *t = tcase_create("safetensors");
    tcase_add_test(t, test_roundtrip_bit_exact);
    tcase_add_test(t, test_written_file_format);
    tcase_add_test(t, test_foreign_writer_and_extra_tensors);
    tcase_add_loop_test(t, test_bad_files, 0, (int)(sizeof bad_files / sizeof bad_files[0]));
    tcase_add_test(t, test_truncated_files);
    tcase_add_test(t, test_foreign_checkpoint);
    tcase_add_test(t, test_save_into_missing_directory);
    tcase_add_test(t, test_save_refuses_unencodable_name);
    tcase_add_test(t, test_failed_save_keeps_old_file);
    suite_add_tcase(s, t);
    return s;
}
