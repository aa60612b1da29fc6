/*
 * rt_test_core.c — errors and logging, random numbers, initializers, model
 * checks, contexts, train configs and SGD.
 *
 * Statistical tests draw enough samples that the tolerances are several
 * standard errors wide (they do not flake) yet far tighter than any real
 * mistake (a wrong bound, a missing gain, a variance instead of a std).
 * SGD expectations are worked out by hand in the comments.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnnrt.h"
#include "rt_fake_model.h"
#include "rt_suites.h"
#include "rt_util.h"

/* ---- errors and logging ------------------------------------------------------ */

START_TEST(test_fail_formats_one_line)
{
    cnn_error err;
    ck_assert_int_eq(cnn_fail(&err, "%s: bad %d\nsecond", "file.idx", 7), -1);
    ck_assert_str_eq(err.msg, "file.idx: bad 7 second");
    ck_assert_int_eq(cnn_fail(NULL, "ignored %d", 1), -1);
    char longs[2000];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    cnn_fail(&err, "%s", longs);
    ck_assert_uint_eq(strlen(err.msg), sizeof err.msg - 1);
}
END_TEST

START_TEST(test_log_callback)
{
    rt_log l;
    rt_log_start(&l);
    cnn_log(CNN_LOG_ERROR, "error: %d", 1);
    cnn_log(CNN_LOG_PROGRESS, "step %d", 2);
    char big[3000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cnn_log(CNN_LOG_INFO, "%s", big); /* longer than the runtime's stack buffer */
    rt_log_stop();
    ck_assert_int_eq(l.count[CNN_LOG_ERROR], 1);
    ck_assert_int_eq(l.count[CNN_LOG_PROGRESS], 1);
    ck_assert_int_eq(l.count[CNN_LOG_INFO], 1);
    ck_assert(rt_log_has(&l, "E: error: 1\n"));
    ck_assert(rt_log_has(&l, "P: step 2\n"));
    ck_assert(rt_log_has(&l, big)); /* not truncated */
}
END_TEST

/* ---- random numbers ------------------------------------------------------------ */

START_TEST(test_rng_golden_and_reproducible)
{
    /* Values from an independent Python implementation of splitmix64 +
     * xoshiro256**: the stream must never change, or seeds stop
     * reproducing old runs. */
    cnn_rng r, q;
    cnn_rng_seed(&r, 42);
    ck_assert_uint_eq(cnn_rng_u64(&r), 0x15780b2e0c2ec716ull);
    ck_assert_uint_eq(cnn_rng_u64(&r), 0x6104d9866d113a7eull);
    ck_assert_uint_eq(cnn_rng_u64(&r), 0xae17533239e499a1ull);
    cnn_rng_seed(&r, 0);
    ck_assert_uint_eq(cnn_rng_u64(&r), 0x99ec5f36cb75f2b4ull);

    cnn_rng_seed(&r, 123);
    cnn_rng_seed(&q, 123);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(cnn_rng_u64(&r), cnn_rng_u64(&q));
    cnn_rng_seed(&q, 124);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += cnn_rng_u64(&r) == cnn_rng_u64(&q);
    ck_assert_int_eq(same, 0);
}
END_TEST

START_TEST(test_rng_uniform_distribution)
{
    cnn_rng r;
    cnn_rng_seed(&r, 1);
    const int n = 200000;
    double sum = 0, sq = 0;
    int below_tenth = 0;
    for (int i = 0; i < n; i++) {
        double u = cnn_rng_uniform(&r);
        ck_assert(u >= 0.0 && u < 1.0);
        sum += u;
        sq += u * u;
        below_tenth += u < 0.1;
    }
    double mean = sum / n, var = sq / n - mean * mean;
    ck_assert_double_eq_tol(mean, 0.5, 0.005);            /* se 0.00065 */
    ck_assert_double_eq_tol(var, 1.0 / 12, 0.002);        /* se 0.00017 */
    ck_assert_double_eq_tol(below_tenth / (double)n, 0.1, 0.005);
}
END_TEST

START_TEST(test_rng_normal_distribution)
{
    cnn_rng r;
    cnn_rng_seed(&r, 2);
    const int n = 200000;
    double sum = 0, sq = 0;
    int within_one = 0;
    for (int i = 0; i < n; i++) {
        double x = cnn_rng_normal(&r);
        ck_assert(isfinite(x));
        sum += x;
        sq += x * x;
        within_one += fabs(x) < 1;
    }
    double mean = sum / n, std = sqrt(sq / n - mean * mean);
    ck_assert_double_eq_tol(mean, 0.0, 0.015);  /* se 0.0022 */
    ck_assert_double_eq_tol(std, 1.0, 0.015);   /* se 0.0016 */
    ck_assert_double_eq_tol(within_one / (double)n, 0.6827, 0.01);
}
END_TEST

START_TEST(test_rng_below)
{
    cnn_rng r;
    cnn_rng_seed(&r, 3);
    int counts[3] = {0};
    for (int i = 0; i < 90000; i++) {
        uint64_t v = cnn_rng_below(&r, 3);
        ck_assert_uint_lt(v, 3);
        counts[v]++;
    }
    for (int k = 0; k < 3; k++)
        ck_assert_int_lt(abs(counts[k] - 30000), 900); /* se 141 */
    ck_assert_uint_eq(cnn_rng_below(&r, 1), 0);
    uint64_t big = (UINT64_C(1) << 63) + 1; /* the worst case for rejection */
    int upper = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t v = cnn_rng_below(&r, big);
        ck_assert_uint_lt(v, big);
        upper += v >= big / 2;
    }
    ck_assert_int_gt(upper, 400);
    ck_assert_int_lt(upper, 600);
    /* n = 3 * 2^62: plain x % n would put half the draws below 2^62
     * instead of a third. */
    uint64_t n3 = UINT64_C(3) << 62;
    int low = 0;
    for (int i = 0; i < 3000; i++)
        low += cnn_rng_below(&r, n3) < (UINT64_C(1) << 62);
    ck_assert_int_gt(low, 900);  /* expected 1000, se 26 */
    ck_assert_int_lt(low, 1100);
}
END_TEST

START_TEST(test_rng_streams)
{
    cnn_rng a, b;
    cnn_rng_seed_stream(&a, 5, "conv1.weight", 0);
    cnn_rng_seed_stream(&b, 5, "conv1.weight", 0);
    ck_assert_uint_eq(cnn_rng_u64(&a), cnn_rng_u64(&b));
    const struct { uint64_t seed; const char *name; uint64_t index; } other[] = {
        {6, "conv1.weight", 0}, {5, "conv1.bias", 0}, {5, "conv1.weight", 1}, {5, "", 0},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        cnn_rng_seed_stream(&a, 5, "conv1.weight", 0);
        cnn_rng_seed_stream(&b, other[i].seed, other[i].name, other[i].index);
        ck_assert_uint_ne(cnn_rng_u64(&a), cnn_rng_u64(&b));
    }
}
END_TEST

/* ---- initializers ---------------------------------------------------------------- */

#define BIG_N (64 * 32 * 3 * 3)
static float big_params[BIG_N];

/* A conv weight [64, 32, 3, 3] (fan_in 288, fan_out 576) with the
 * descriptor's fans left 0, so they come from the shape. */
static cnn_param_desc conv_param(int init, double a, double b)
{
    cnn_param_desc p = {.name = "conv.weight", .layer = "conv", .kind = CNN_PARAM_WEIGHT,
                        .flags = CNN_PARAM_TRAINABLE, .ndim = 4, .init = init,
                        .shape = {64, 32, 3, 3}, .offset = 0, .size = BIG_N,
                        .init_a = a, .init_b = b};
    return p;
}

typedef struct stats { double mean, std, min, max; } stats;

static stats init_stats(int init, double a, double b, uint64_t seed)
{
    cnn_param_desc p = conv_param(init, a, b);
    cnn_init_param(&p, big_params, seed);
    stats s = {0, 0, INFINITY, -INFINITY};
    double sq = 0;
    for (int i = 0; i < BIG_N; i++) {
        double x = big_params[i];
        s.mean += x;
        sq += x * x;
        s.min = x < s.min ? x : s.min;
        s.max = x > s.max ? x : s.max;
    }
    s.mean /= BIG_N;
    s.std = sqrt(sq / BIG_N - s.mean * s.mean);
    return s;
}

START_TEST(test_init_fans)
{
    int64_t in, out;
    cnn_param_desc p = conv_param(CNN_INIT_HE_NORMAL, 0, 0);
    cnn_param_fans(&p, &in, &out);
    ck_assert_int_eq(in, 32 * 9);
    ck_assert_int_eq(out, 64 * 9);
    cnn_param_desc dense = rt_fake_params[0]; /* [3, 16] */
    dense.fan_in = dense.fan_out = 0;
    cnn_param_fans(&dense, &in, &out);
    ck_assert_int_eq(in, 16);
    ck_assert_int_eq(out, 3);
    cnn_param_fans(&rt_fake_params[1], &in, &out); /* bias: the descriptor's fans */
    ck_assert_int_eq(in, 16);
    ck_assert_int_eq(out, 3);
    cnn_param_desc bias = rt_fake_params[1];
    bias.fan_in = bias.fan_out = 0;
    cnn_param_fans(&bias, &in, &out);
    ck_assert_int_eq(in, 0);
    ck_assert_int_eq(out, 0);
}
END_TEST

/* Uniform(-t, t): values inside, reaching near both ends, std t/sqrt(3). */
static void expect_uniform(stats s, double t)
{
    ck_assert_double_ge(s.min, -t);
    ck_assert_double_le(s.max, t);
    ck_assert_double_lt(s.min, -0.99 * t);
    ck_assert_double_gt(s.max, 0.99 * t);
    ck_assert_double_eq_tol(s.mean, 0.0, 0.03 * t);
    ck_assert_double_eq_tol(s.std, t / sqrt(3.0), 0.02 * t);
}

static void expect_normal(stats s, double mean, double std)
{
    ck_assert_double_eq_tol(s.mean, mean, 0.03 * std);
    ck_assert_double_eq_tol(s.std, std, 0.02 * std);
    ck_assert_double_gt(s.max - mean, 3 * std); /* tails exist: not a uniform */
}

START_TEST(test_init_xavier_and_he)
{
    const double fan_in = 288, fan_out = 576;
    expect_uniform(init_stats(CNN_INIT_XAVIER_UNIFORM, 1, 0, 1), sqrt(6 / (fan_in + fan_out)));
    expect_uniform(init_stats(CNN_INIT_XAVIER_UNIFORM, 2, 0, 1),
                   2 * sqrt(6 / (fan_in + fan_out)));
    expect_uniform(init_stats(CNN_INIT_XAVIER_UNIFORM, 0, 0, 1), /* unset gain = 1 */
                   sqrt(6 / (fan_in + fan_out)));
    expect_normal(init_stats(CNN_INIT_XAVIER_NORMAL, 1, 0, 1), 0, sqrt(2 / (fan_in + fan_out)));
    expect_uniform(init_stats(CNN_INIT_HE_UNIFORM, 1, 0, 1), sqrt(6 / fan_in));
    expect_normal(init_stats(CNN_INIT_HE_NORMAL, 1, 0, 1), 0, sqrt(2 / fan_in));
    expect_normal(init_stats(CNN_INIT_HE_NORMAL, 0.5, 0, 1), 0, 0.5 * sqrt(2 / fan_in));
    expect_uniform(init_stats(CNN_INIT_TORCH_DEFAULT, 0, 0, 1), 1 / sqrt(fan_in));
}
END_TEST

START_TEST(test_init_simple_kinds)
{
    stats s = init_stats(CNN_INIT_ZEROS, 5, 5, 1);
    ck_assert(s.min == 0 && s.max == 0);
    s = init_stats(CNN_INIT_ONES, 5, 5, 1);
    ck_assert(s.min == 1 && s.max == 1);
    s = init_stats(CNN_INIT_CONSTANT, 0.25, 0, 1);
    ck_assert(s.min == 0.25 && s.max == 0.25);
    s = init_stats(CNN_INIT_UNIFORM, 2, 3, 1);
    ck_assert_double_ge(s.min, 2);
    ck_assert_double_le(s.max, 3);
    ck_assert_double_eq_tol(s.mean, 2.5, 0.01);
    ck_assert_double_eq_tol(s.std, 1 / sqrt(12.0), 0.01);
    expect_normal(init_stats(CNN_INIT_NORMAL, -1, 0.1, 1), -1, 0.1);
}
END_TEST

START_TEST(test_init_reproducible)
{
    float a[FAKE_FLOATS] = {0}, b[FAKE_FLOATS] = {0}, c[FAKE_FLOATS] = {0};
    cnn_init_params(&cnn_model, a, 11);
    cnn_init_params(&cnn_model, b, 11);
    cnn_init_params(&cnn_model, c, 12);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    int differ = 0;
    for (int i = 0; i < FAKE_B + FAKE_CLASSES; i++)
        differ += a[i] != c[i];
    ck_assert_int_gt(differ, 45);
    /* A parameter's values depend on its name, not on the others. */
    float alone[FAKE_FLOATS] = {0};
    cnn_init_param(&rt_fake_params[1], alone, 11);
    ck_assert(memcmp(alone + FAKE_B, a + FAKE_B, FAKE_CLASSES * sizeof(float)) == 0);
    /* Two parameters alike but for the name draw different values. */
    cnn_param_desc p = rt_fake_params[1];
    float x[FAKE_FLOATS] = {0}, y[FAKE_FLOATS] = {0};
    cnn_init_param(&p, x, 11);
    p.name = "fc2.bias";
    cnn_init_param(&p, y, 11);
    for (int i = FAKE_B; i < FAKE_B + FAKE_CLASSES; i++)
        ck_assert_float_ne(x[i], y[i]);
    /* Bounds of the fake's initializers: xavier with fans 16 + 3, bias 1/4. */
    for (int i = 0; i < FAKE_B; i++)
        ck_assert_float_le(fabsf(a[i]), sqrt(6.0 / 19));
    for (int i = FAKE_B; i < FAKE_RM; i++)
        ck_assert_float_le(fabsf(a[i]), 0.25);
    for (int i = FAKE_RM; i < FAKE_FLOATS; i++)
        ck_assert_float_eq(a[i], 0);
}
END_TEST

/* ---- model checks -------------------------------------------------------------- */

START_TEST(test_model_check_accepts_fake)
{
    cnn_error err;
    ck_assert_int_eq(cnn_model_check(&cnn_model, &err), 0);
    ck_assert_ptr_eq(cnn_model_param(&cnn_model, "fc.bias"), &rt_fake_params[1]);
    ck_assert_ptr_null(cnn_model_param(&cnn_model, "fc.nope"));
}
END_TEST

START_TEST(test_model_check_abi)
{
    cnn_model_desc m = cnn_model;
    cnn_error err;
    m.abi_version = 7;
    ck_assert_int_eq(cnn_model_check(&m, &err), -1);
    ck_assert_msg(strstr(err.msg, "compiled for ABI version 7, this runtime speaks version 1"),
                  "%s", err.msg);
    ck_assert_int_eq(cnn_model_check(NULL, &err), -1);
}
END_TEST

/* Each mutation of the fake descriptor must be refused, with a message
 * containing `expect`. */
struct bad_model {
    const char *expect;
    int param; /* which parameter to mutate, -1 = the model */
    void (*mutate)(cnn_model_desc *m, cnn_param_desc *p);
};

static void bad_size(cnn_model_desc *m, cnn_param_desc *p) { (void)m; p->size = 47; }
static void bad_offset(cnn_model_desc *m, cnn_param_desc *p) { (void)m; p->offset = 54; }
static void bad_overlap(cnn_model_desc *m, cnn_param_desc *p) { (void)m; p->offset = 46; }
static void bad_ndim(cnn_model_desc *m, cnn_param_desc *p) { (void)m; p->ndim = 5; }
static void bad_unused_dim(cnn_model_desc *m, cnn_param_desc *p) { (void)m; p->shape[3] = 0; }
static void bad_init(cnn_model_desc *m, cnn_param_desc *p) { (void)m; p->init = 42; }
static void bad_kind(cnn_model_desc *m, cnn_param_desc *p) { (void)m; p->kind = 9; }
static void bad_name(cnn_model_desc *m, cnn_param_desc *p) { (void)m; p->name = "fc.weight"; }
static void bad_no_name(cnn_model_desc *m, cnn_param_desc *p) { (void)m; p->name = ""; }
static void bad_fans(cnn_model_desc *m, cnn_param_desc *p)
{
    (void)m;
    p->init = CNN_INIT_XAVIER_NORMAL;
    p->fan_in = p->fan_out = 0;
}
static void bad_uniform(cnn_model_desc *m, cnn_param_desc *p)
{
    (void)m;
    p->init = CNN_INIT_UNIFORM;
    p->init_a = 1;
    p->init_b = -1;
}
static void bad_normal(cnn_model_desc *m, cnn_param_desc *p)
{
    (void)m;
    p->init = CNN_INIT_NORMAL;
    p->init_b = -1;
}
static void bad_logits(cnn_model_desc *m, cnn_param_desc *p) { (void)p; m->logits_offset = 200; }
static void bad_batch(cnn_model_desc *m, cnn_param_desc *p) { (void)p; m->batch = 0; }
static void bad_forward(cnn_model_desc *m, cnn_param_desc *p) { (void)p; m->forward = NULL; }
static void bad_floats(cnn_model_desc *m, cnn_param_desc *p) { (void)p; m->param_floats = 50; }

static const struct bad_model bad_models[] = {
    {"fc.weight: shape has 48 elements, size says 47", 0, bad_size},
    {"fc.bias: [54, 57) lies outside", 1, bad_offset},
    {"parameters fc.weight and fc.bias overlap", 1, bad_overlap},
    {"fc.weight: 5 dimensions", 0, bad_ndim},
    {"fc.weight: bad dimension 3", 0, bad_unused_dim},
    {"fc.bias: unknown initializer 42", 1, bad_init},
    {"fc.bias: unknown kind 9", 1, bad_kind},
    {"two parameters named fc.weight", 1, bad_name},
    {"parameter 2 has no name", 2, bad_no_name},
    {"fc.bias: initializer xavier_normal needs fan_in and fan_out", 1, bad_fans},
    {"uniform(1, -1) has low > high", 0, bad_uniform},
    {"normal std -1 is negative", 0, bad_normal},
    {"logits at arena offset 200", -1, bad_logits},
    {"bad shape: batch 0", -1, bad_batch},
    {"no forward function", -1, bad_forward},
    {"lies outside the 50 parameter floats", -1, bad_floats},
};

START_TEST(test_model_check_rejects)
{
    const struct bad_model *b = &bad_models[_i];
    cnn_model_desc m = cnn_model;
    cnn_param_desc params[3];
    memcpy(params, rt_fake_params, sizeof params);
    m.params = params;
    b->mutate(&m, b->param >= 0 ? &params[b->param] : NULL);
    cnn_error err;
    ck_assert_int_eq(cnn_model_check(&m, &err), -1);
    ck_assert_msg(strstr(err.msg, b->expect), "expected \"%s\" in \"%s\"", b->expect, err.msg);
    ck_assert_msg(strstr(err.msg, "model fake"), "%s", err.msg);
}
END_TEST

/* ---- contexts ------------------------------------------------------------------- */

START_TEST(test_ctx_create)
{
    cnn_error err;
    cnn_ctx *ctx = cnn_ctx_create(&cnn_model, 1, &err);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_uint_eq(ctx->abi_version, CNN_ABI_VERSION);
    ck_assert_ptr_eq(ctx->model, &cnn_model);
    ck_assert_uint_eq((uintptr_t)ctx->params % 64, 0);
    ck_assert_uint_eq((uintptr_t)ctx->grads % 64, 0);
    ck_assert_uint_eq((uintptr_t)ctx->arena % 64, 0);
    for (int i = 0; i < FAKE_FLOATS; i++)
        ck_assert(ctx->params[i] == 0 && ctx->grads[i] == 0);
    for (int i = 0; i < 256; i++)
        ck_assert_int_eq(((unsigned char *)ctx->arena)[i], 0);
    ck_assert_uint_eq(ctx->seed, 0);
    ck_assert_uint_eq(ctx->step, 0);
    ck_assert_ptr_null(ctx->parallel_for); /* one thread: no pool */
    cnn_ctx_free(ctx);
    cnn_ctx_free(NULL);
    ctx = cnn_ctx_create(&cnn_model, 3, &err); /* more: a pool the kernels use */
    ck_assert_ptr_nonnull(ctx);
    ck_assert_ptr_nonnull(ctx->pool);
    ck_assert_ptr_nonnull(ctx->parallel_for);
    cnn_ctx_free(ctx);

    cnn_model_desc m = cnn_model;
    m.abi_version = 2;
    ck_assert_ptr_null(cnn_ctx_create(&m, 1, &err));
    ck_assert(strstr(err.msg, "ABI version 2"));
}
END_TEST

/* ---- train configs ---------------------------------------------------------------- */

START_TEST(test_config_parse_good)
{
    cnn_train_config c;
    cnn_error err;
    ck_assert_int_eq(cnn_train_config_parse(
                         "{\"batch\":64,\"epochs\":5,\"seed\":42,\"optimizer\":{\"type\":\"sgd\","
                         "\"lr\":0.05,\"momentum\":0.9,\"dampening\":0,\"nesterov\":true,"
                         "\"weight_decay\":0.0005}}",
                         &c, &err),
                     0);
    ck_assert_int_eq(c.batch, 64);
    ck_assert_int_eq(c.epochs, 5);
    ck_assert_uint_eq(c.seed, 42);
    ck_assert_int_eq(c.optim.type, CNN_OPTIM_SGD);
    ck_assert_double_eq(c.optim.lr, 0.05);
    ck_assert_double_eq(c.optim.momentum, 0.9);
    ck_assert_double_eq(c.optim.weight_decay, 0.0005);
    ck_assert_int_eq(c.optim.nesterov, 1);

    /* Defaults, and keys of later versions ignored. */
    ck_assert_int_eq(cnn_train_config_parse("{\"schedule\":{\"type\":\"cosine\"},"
                                            "\"optimizer\":{\"betas\":[1,2]}}", &c, &err), 0);
    ck_assert_int_eq(c.batch, 0);
    ck_assert_int_eq(c.epochs, 1);
    ck_assert_uint_eq(c.seed, 0);
    ck_assert_double_eq(c.optim.lr, 0.01);
    ck_assert_double_eq(c.optim.momentum, 0);
    ck_assert_int_eq(c.optim.nesterov, 0);
    ck_assert_int_eq(cnn_train_config_parse(NULL, &c, &err), 0);
    ck_assert_int_eq(c.epochs, 1);
    ck_assert_int_eq(cnn_train_config_parse(cnn_model.train_config, &c, &err), 0);
    ck_assert_double_eq(c.optim.lr, 0.5);
}
END_TEST

static const struct { const char *json, *expect; } bad_configs[] = {
    {"{\"batch\": 64,", "invalid JSON at line 1"},
    {"", "invalid JSON"},
    {"[1, 2]", "expected a JSON object"},
    {"{\"a\": 1, \"a\": 2}", "invalid JSON"},
    {"{\"optimizer\": {\"type\": \"adagrad\"}}", "unknown optimizer \"adagrad\" (this runtime knows: sgd,"},
    {"{\"optimizer\": {\"type\": 3}}", "\"type\" must be a string"},
    {"{\"optimizer\": \"sgd\"}", "\"optimizer\" must be an object"},
    {"{\"epochs\": -1}", "\"epochs\" must be a non-negative integer"},
    {"{\"epochs\": 2.5}", "\"epochs\" must be a non-negative integer"},
    {"{\"seed\": \"x\"}", "\"seed\" must be a non-negative integer"},
    {"{\"batch\": 99999999999}", "too large"},
    {"{\"optimizer\": {\"lr\": \"fast\"}}", "\"lr\" must be a number"},
    {"{\"optimizer\": {\"lr\": 0}}", "learning rate 0 must be positive"},
    {"{\"optimizer\": {\"momentum\": -0.5}}", "momentum -0.5 must be >= 0"},
    {"{\"optimizer\": {\"weight_decay\": -1}}", "weight_decay -1 must be >= 0"},
    {"{\"optimizer\": {\"nesterov\": 1}}", "\"nesterov\" must be true or false"},
    {"{\"optimizer\": {\"nesterov\": true}}", "nesterov needs momentum > 0 and dampening 0"},
    {"{\"optimizer\": {\"nesterov\": true, \"momentum\": 0.9, \"dampening\": 0.1}}",
     "nesterov needs momentum > 0 and dampening 0"},
};

START_TEST(test_config_parse_bad)
{
    cnn_train_config c;
    cnn_error err;
    ck_assert_int_eq(cnn_train_config_parse(bad_configs[_i].json, &c, &err), -1);
    ck_assert_msg(strstr(err.msg, bad_configs[_i].expect), "expected \"%s\" in \"%s\"",
                  bad_configs[_i].expect, err.msg);
    ck_assert(strncmp(err.msg, "train config: ", 14) == 0 ||
              strncmp(err.msg, "optimizer: ", 11) == 0);
}
END_TEST

/* ---- SGD -------------------------------------------------------------------------- */

/* Run SGD on the fake's layout, every weight starting at 1 with gradient
 * g1 then g2, bias at 2 with the same gradients, running mean at 3 with
 * gradient 100 (it must not move); returns weight and bias after each step. */
static void sgd_run(cnn_optim_config c, float g1, float g2, float w[2], float b[2])
{
    float params[FAKE_FLOATS], grads[FAKE_FLOATS];
    cnn_error err;
    for (int i = 0; i < FAKE_FLOATS; i++)
        params[i] = i < FAKE_B ? 1.0f : i < FAKE_RM ? 2.0f : 3.0f;
    cnn_optimizer *opt = cnn_optimizer_create(&cnn_model, &c, &err);
    ck_assert_msg(opt != NULL, "%s", err.msg);
    for (int step = 0; step < 2; step++) {
        for (int i = 0; i < FAKE_FLOATS; i++)
            grads[i] = i >= FAKE_RM ? 100.0f : step == 0 ? g1 : g2;
        cnn_optimizer_step(opt, params, grads);
        w[step] = params[FAKE_W + 5];
        b[step] = params[FAKE_B + 1];
        for (int i = 1; i < FAKE_B; i++)
            ck_assert_float_eq(params[i], params[0]);
        for (int i = FAKE_RM; i < FAKE_FLOATS; i++)
            ck_assert_float_eq(params[i], 3.0f);
    }
    cnn_optimizer_free(opt);
}

#define SGD(...) ((cnn_optim_config){.type = CNN_OPTIM_SGD, __VA_ARGS__})
#define EXPECT2(v, a, b)                                                                    \
    do {                                                                                    \
        ck_assert_float_eq_tol((v)[0], (a), 1e-6);                                          \
        ck_assert_float_eq_tol((v)[1], (b), 1e-6);                                          \
    } while (0)

START_TEST(test_sgd_plain)
{
    float w[2], b[2];
    /* p = 1 - 0.1*0.5 = 0.95, then 0.95 - 0.1*(-1) = 1.05 */
    sgd_run(SGD(.lr = 0.1), 0.5f, -1.0f, w, b);
    EXPECT2(w, 0.95, 1.05);
    EXPECT2(b, 1.95, 2.05);
}
END_TEST

START_TEST(test_sgd_momentum)
{
    float w[2], b[2];
    /* b1 = g1 = 0.5, p = 1 - 0.05 = 0.95;
     * b2 = 0.9*0.5 + 0.25 = 0.7, p = 0.95 - 0.07 = 0.88 */
    sgd_run(SGD(.lr = 0.1, .momentum = 0.9), 0.5f, 0.25f, w, b);
    EXPECT2(w, 0.95, 0.88);
    EXPECT2(b, 1.95, 1.88);
}
END_TEST

START_TEST(test_sgd_dampening)
{
    float w[2], b[2];
    /* First step undamped: b1 = 0.5, p = 0.95;
     * b2 = 0.9*0.5 + (1-0.5)*0.25 = 0.575, p = 0.95 - 0.0575 = 0.8925 */
    sgd_run(SGD(.lr = 0.1, .momentum = 0.9, .dampening = 0.5), 0.5f, 0.25f, w, b);
    EXPECT2(w, 0.95, 0.8925);
}
END_TEST

START_TEST(test_sgd_nesterov)
{
    float w[2], b[2];
    /* b1 = 0.5, d = 0.5 + 0.9*0.5 = 0.95, p = 1 - 0.095 = 0.905;
     * b2 = 0.45 + 0.25 = 0.7, d = 0.25 + 0.63 = 0.88, p = 0.905 - 0.088 = 0.817 */
    sgd_run(SGD(.lr = 0.1, .momentum = 0.9, .nesterov = 1), 0.5f, 0.25f, w, b);
    EXPECT2(w, 0.905, 0.817);
}
END_TEST

START_TEST(test_sgd_weight_decay)
{
    float w[2], b[2];
    /* Weights (decay flag): d = 0.5 + 0.1*1 = 0.6, p = 1 - 0.06 = 0.94;
     * d = 0.25 + 0.094 = 0.344, p = 0.94 - 0.0344 = 0.9056.
     * Bias (no decay flag): 2 - 0.05 = 1.95, 1.95 - 0.025 = 1.925. */
    sgd_run(SGD(.lr = 0.1, .weight_decay = 0.1), 0.5f, 0.25f, w, b);
    EXPECT2(w, 0.94, 0.9056);
    EXPECT2(b, 1.95, 1.925);
    /* With momentum: b1 = 0.6, p = 0.94; d2 = 0.344, b2 = 0.54 + 0.344 = 0.884,
     * p = 0.94 - 0.0884 = 0.8516 */
    sgd_run(SGD(.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1), 0.5f, 0.25f, w, b);
    EXPECT2(w, 0.94, 0.8516);
}
END_TEST

START_TEST(test_sgd_rejects_bad_config)
{
    cnn_error err;
    cnn_optim_config c = SGD(.lr = -1);
    ck_assert_ptr_null(cnn_optimizer_create(&cnn_model, &c, &err));
    ck_assert(strstr(err.msg, "learning rate -1"));
    c = (cnn_optim_config){.type = 9, .lr = 0.1};
    ck_assert_ptr_null(cnn_optimizer_create(&cnn_model, &c, &err));
    ck_assert(strstr(err.msg, "unknown type 9"));
    ck_assert_int_eq(cnn_optim_lookup("sgd"), CNN_OPTIM_SGD);
    ck_assert_int_eq(cnn_optim_lookup("adagrad"), -1);
    ck_assert_str_eq(cnn_optim_name(CNN_OPTIM_SGD), "sgd");
}
END_TEST

Suite *rt_core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *t = tcase_create("log");
    tcase_add_test(t, test_fail_formats_one_line);
    tcase_add_test(t, test_log_callback);
    suite_add_tcase(s, t);

    t = tcase_create("rng");
    tcase_add_test(t, test_rng_golden_and_reproducible);
    tcase_add_test(t, test_rng_uniform_distribution);
    tcase_add_test(t, test_rng_normal_distribution);
    tcase_add_test(t, test_rng_below);
    tcase_add_test(t, test_rng_streams);
    suite_add_tcase(s, t);

    t = tcase_create("init");
    tcase_add_test(t, test_init_fans);
    tcase_add_test(t, test_init_xavier_and_he);
    tcase_add_test(t, test_init_simple_kinds);
    tcase_add_test(t, test_init_reproducible);
    suite_add_tcase(s, t);

    t = tcase_create("model");
    tcase_add_test(t, test_model_check_accepts_fake);
    tcase_add_test(t, test_model_check_abi);
    tcase_add_loop_test(t, test_model_check_rejects, 0,
                        (int)(sizeof bad_models / sizeof bad_models[0]));
    tcase_add_test(t, test_ctx_create);
    suite_add_tcase(s, t);

    t = tcase_create("config");
    tcase_add_test(t, test_config_parse_good);
    tcase_add_loop_test(t, test_config_parse_bad, 0,
                        (int)(sizeof bad_configs / sizeof bad_configs[0]));
    suite_add_tcase(s, t);

    t = tcase_create("sgd");
    tcase_add_test(t, test_sgd_plain);
    tcase_add_test(t, test_sgd_momentum);
    tcase_add_test(t, test_sgd_dampening);
    tcase_add_test(t, test_sgd_nesterov);
    tcase_add_test(t, test_sgd_weight_decay);
    tcase_add_test(t, test_sgd_rejects_bad_config);
    suite_add_tcase(s, t);
    return s;
}
