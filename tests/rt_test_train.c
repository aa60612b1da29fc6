/*
 * rt_test_train.c — evaluation, the training executable's main
 * (cnn_train_main) end to end with the fake model on generated IDX data,
 * and loading a model .so.
 *
 * Training outcomes are judged through the public API: weights saved with
 * --save are loaded and evaluated, so "training reduced the loss" is a
 * measured fact, not a parsed log line.  Exit statuses and messages are
 * checked through the captured log.
 */
#define _GNU_SOURCE /* dladdr, to find zlib's file */
#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "cnnrt.h"
#include "rt_fake_model.h"
#include "rt_suites.h"
#include "rt_util.h"

/* Load a checkpoint of the fake model into params (fails the test). */
static void load_params(const char *path, float *params)
{
    cnn_error err;
    ck_assert_msg(cnn_checkpoint_load(path, &cnn_model, params, &err) == 0, "%s", err.msg);
}

/* Loss and accuracy of params on dir's t10k split. */
static void evaluate_params(const float *params, const char *dir, double *loss, double *acc)
{
    cnn_error err;
    cnn_dataset ds;
    ck_assert_msg(cnn_dataset_load_dir(dir, "t10k", &ds, &err) == 0, "%s", err.msg);
    cnn_ctx *ctx = cnn_ctx_create(&cnn_model, 1, &err);
    ck_assert_ptr_nonnull(ctx);
    memcpy(ctx->params, params, FAKE_FLOATS * sizeof(float));
    ck_assert_msg(cnn_evaluate(ctx, &ds, loss, acc, &err) == 0, "%s", err.msg);
    cnn_ctx_free(ctx);
    cnn_dataset_free(&ds);
}

START_TEST(test_evaluate_known_values)
{
    const char *dir = rt_tmpdir();
    rt_write_split(dir, "t10k", 11, 3, 0); /* batches of 8 and 3 */
    cnn_dataset ds;
    cnn_error err;
    ck_assert_int_eq(cnn_dataset_load_dir(dir, "t10k", &ds, &err), 0);
    int zeros = 0;
    for (int i = 0; i < 11; i++)
        zeros += ds.labels[i] == 0;
    ck_assert(zeros > 0 && zeros < 11);
    cnn_ctx *ctx = cnn_ctx_create(&cnn_model, 1, &err);
    double loss, acc;
    /* All-zero weights: equal logits, loss ln 3, argmax picks class 0. */
    ck_assert_int_eq(cnn_evaluate(ctx, &ds, &loss, &acc, &err), 0);
    ck_assert_double_eq_tol(loss, log(3.0), 1e-12);
    ck_assert_double_eq_tol(acc, zeros / 11.0, 1e-12);
    /* Logits (1000, 0, 0): exp(1000) overflows unless shifted. */
    ctx->params[FAKE_B] = 1000;
    ck_assert_int_eq(cnn_evaluate(ctx, &ds, &loss, &acc, &err), 0);
    ck_assert_double_eq_tol(loss, 1000.0 * (11 - zeros) / 11, 1e-9);
    ck_assert_double_eq_tol(acc, zeros / 11.0, 1e-12);
    /* A NaN logit gives a NaN loss for the caller to report. */
    ctx->params[FAKE_B + 1] = NAN;
    ck_assert_int_eq(cnn_evaluate(ctx, &ds, &loss, &acc, &err), 0);
    ck_assert(isnan(loss));
    ds.labels[4] = 7;
    ck_assert_int_eq(cnn_evaluate(ctx, &ds, &loss, &acc, &err), -1);
    ck_assert_msg(strstr(err.msg, "label 7 of image 4"), "%s", err.msg);
    cnn_ctx_free(ctx);
    cnn_dataset_free(&ds);
}
END_TEST

START_TEST(test_train_help)
{
    rt_log l;
    ck_assert_int_eq(rt_train(&l, "--help", NULL), CNN_EXIT_OK);
    ck_assert(rt_log_has(&l, "I: usage: train [--data DIR] [--epochs N] [--steps N]"));
    ck_assert(rt_log_has(&l, "--no-shuffle"));
    ck_assert(rt_log_has(&l, "train network fake"));
    ck_assert_int_eq(l.count[CNN_LOG_ERROR], 0);
}
END_TEST

static const struct { const char *args[3]; const char *expect; } usage_errors[] = {
    {{"--frobnicate"}, "unknown option '--frobnicate'"},
    {{"--epochs", "abc"}, "--epochs: expected an integer from 0 to 2147483647, got 'abc'"},
    {{"--epochs=-1"}, "--epochs: expected an integer"},
    {{"--steps", "5x"}, "--steps: expected an integer"},
    {{"--seed", "-3"}, "--seed: expected an integer from 0 to 2^64-1, got '-3'"},
    {{"--seed", "99999999999999999999999"}, "--seed: expected an integer"},
    {{"--lr", "-0.1"}, "--lr: expected a positive number, got '-0.1'"},
    {{"--lr", "nan"}, "--lr: expected a positive number"},
    {{"--lr", "0.1x"}, "--lr: expected a positive number"},
    {{"--threads", "100000"}, "--threads: expected an integer from 0 to 4096"},
    {{"--save"}, "--save needs a value (FILE)"},
    {{"--save", "--quiet"}, "--save needs a value"},
    {{"--data="}, "--data: empty DIR"},
    {{"--quiet=yes"}, "--quiet takes no value"},
    {{"extra"}, "unexpected argument 'extra'"},
    {{"-x"}, "unexpected argument '-x'"},
};

START_TEST(test_train_usage_errors)
{
    rt_log l;
    const char *const *a = usage_errors[_i].args;
    ck_assert_int_eq(rt_train(&l, a[0], a[1], a[2], NULL), CNN_EXIT_USAGE);
    char expect[256];
    snprintf(expect, sizeof expect, "E: error: %s", usage_errors[_i].expect);
    ck_assert_msg(rt_log_has(&l, expect), "expected \"%s\" in:\n%s", expect, l.text);
    ck_assert(rt_log_has(&l, "E: usage: train ["));
}
END_TEST

START_TEST(test_train_data_errors)
{
    const char *dir = rt_tmpdir();
    rt_log l;
    /* Missing directory. */
    const char *missing = rt_path(dir, "nothing");
    ck_assert_int_eq(rt_train(&l, "--data", missing, NULL), CNN_EXIT_USER);
    ck_assert_msg(rt_log_has(&l, "E: error: ") && rt_log_has(&l, missing), "%s", l.text);
    ck_assert_int_eq(l.count[CNN_LOG_ERROR], 1);
    /* Truncated training images. */
    rt_write_dataset(dir, 40, 10, 1);
    const char *images = rt_path(dir, "train-images-idx3-ubyte.gz");
    size_t n;
    uint8_t *raw = NULL;
    gzFile f = gzopen(images, "rb");
    raw = malloc(1000);
    n = (size_t)gzread(f, raw, 1000);
    gzclose(f);
    rt_write_gz(images, raw, n - 5);
    free(raw);
    ck_assert_int_eq(rt_train(&l, "--data", dir, NULL), CNN_EXIT_USER);
    ck_assert_msg(rt_log_has(&l, "truncated: expected 640 bytes of pixel data, found 635") &&
                  rt_log_has(&l, images), "%s", l.text);
    /* Labels the model cannot have. */
    rt_write_dataset(dir, 40, 10, 1);
    uint32_t count = 10;
    uint8_t labels[10] = {0, 1, 2, 0, 1, 9, 0, 1, 2, 0};
    rt_write_idx(rt_path(dir, "t10k-labels-idx1-ubyte.gz"), 1, 0x801, &count, 1, labels, 10);
    ck_assert_int_eq(rt_train(&l, "--data", dir, NULL), CNN_EXIT_USER);
    ck_assert_msg(rt_log_has(&l, "(test split): label 9 of image 5 is outside [0, 3)"), "%s",
                  l.text);
    /* Images of another size. */
    uint32_t dims[3] = {40, 5, 5};
    uint8_t pixels[40 * 25] = {0};
    rt_write_idx(rt_path(dir, "train-images-idx3-ubyte.gz"), 1, 0x803, dims, 3, pixels,
                 sizeof pixels);
    ck_assert_int_eq(rt_train(&l, "--data", dir, NULL), CNN_EXIT_USER);
    ck_assert_msg(rt_log_has(&l, "images are 1x5x5 (CxHxW), but model fake takes 1x4x4"),
                  "%s", l.text);
}
END_TEST

START_TEST(test_train_steps0_save_load)
{
    const char *dir = rt_tmpdir(), *nodata = rt_path(dir, "no-data");
    const char *a = rt_path(dir, "a.safetensors"), *b = rt_path(dir, "b.safetensors");
    rt_log l;
    /* No data needed to write the initial weights. */
    ck_assert_int_eq(rt_train(&l, "--steps", "0", "--seed", "5", "--save", a, "--data", nodata,
                              NULL), CNN_EXIT_OK);
    float saved[FAKE_FLOATS] = {0}, expect[FAKE_FLOATS] = {0}, again[FAKE_FLOATS] = {0};
    load_params(a, saved);
    cnn_init_params(&cnn_model, expect, 5);
    ck_assert(memcmp(saved, expect, sizeof saved) == 0);
    /* --load then --save: the same parameters, the same file. */
    ck_assert_int_eq(rt_train(&l, "--steps=0", "--load", a, "--save", b, NULL), CNN_EXIT_OK);
    load_params(b, again);
    ck_assert(memcmp(saved, again, sizeof saved) == 0);
    /* Another seed, other weights. */
    ck_assert_int_eq(rt_train(&l, "--steps", "0", "--seed", "6", "--save", b, NULL),
                     CNN_EXIT_OK);
    load_params(b, again);
    ck_assert(memcmp(saved, again, sizeof saved) != 0);
    /* A bad checkpoint: exit 1, one line naming the file. */
    rt_write_file(b, "garbage!", 8);
    ck_assert_int_eq(rt_train(&l, "--steps", "0", "--load", b, NULL), CNN_EXIT_USER);
    ck_assert_int_eq(l.count[CNN_LOG_ERROR], 1);
    ck_assert_msg(rt_log_has(&l, "E: error: ") && rt_log_has(&l, b), "%s", l.text);
}
END_TEST

START_TEST(test_train_reduces_loss)
{
    const char *dir = rt_tmpdir();
    const char *init = rt_path(dir, "init"), *final = rt_path(dir, "final");
    rt_write_dataset(dir, 400, 100, 1);
    rt_log l;
    ck_assert_int_eq(rt_train(&l, "--steps", "0", "--save", init, NULL), CNN_EXIT_OK);
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--epochs", "3", "--save", final, NULL),
                     CNN_EXIT_OK);
    ck_assert_int_eq(l.count[CNN_LOG_ERROR], 0);
    ck_assert_msg(rt_log_has(&l, "I: fake: 54 parameters, batch 8; sgd(lr 0.5, momentum 0.9, "
                                 "weight_decay 0.0001); seed 7; 400 train and 100 test images"),
                  "%s", l.text);
    ck_assert_msg(rt_log_has(&l, "P: epoch 1/3 [====================] 50/50  loss "), "%s",
                  l.text);
    ck_assert(rt_log_has(&l, "I: epoch 1/3  train loss "));
    ck_assert(rt_log_has(&l, "I: epoch 3/3  train loss "));
    ck_assert(!rt_log_has(&l, "epoch 4"));
    ck_assert(rt_log_has(&l, "I: saved "));
    float p0[FAKE_FLOATS], p1[FAKE_FLOATS];
    load_params(init, p0);
    load_params(final, p1);
    double loss0, acc0, loss1, acc1;
    evaluate_params(p0, dir, &loss0, &acc0);
    evaluate_params(p1, dir, &loss1, &acc1);
    ck_assert_msg(loss1 < 0.5 * loss0, "loss %g -> %g", loss0, loss1);
    ck_assert_msg(acc1 > 0.9, "accuracy %g -> %g", acc0, acc1);
    ck_assert(p1[FAKE_RM] != 0); /* the buffer was updated by train_step and saved */
}
END_TEST

START_TEST(test_train_reproducible)
{
    const char *dir = rt_tmpdir();
    const char *a = rt_path(dir, "a"), *b = rt_path(dir, "b"), *init = rt_path(dir, "init");
    rt_write_dataset(dir, 100, 20, 0);
    rt_log l;
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--seed", "3", "--save", a, NULL), 0);
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--seed", "3", "--save", b, NULL), 0);
    ck_assert(rt_files_equal(a, b));
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--seed", "4", "--save", b, NULL), 0);
    ck_assert(!rt_files_equal(a, b));
    /* Same start, shuffled with different seeds: different results ... */
    ck_assert_int_eq(rt_train(&l, "--steps", "0", "--save", init, NULL), 0);
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--load", init, "--seed", "1", "--save", a,
                              NULL), 0);
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--load", init, "--seed", "2", "--save", b,
                              NULL), 0);
    ck_assert(!rt_files_equal(a, b));
    /* ... but in file order the seed no longer matters to this model. */
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--load", init, "--seed", "1", "--no-shuffle",
                              "--save", a, NULL), 0);
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--load", init, "--seed", "2", "--no-shuffle",
                              "--save", b, NULL), 0);
    float pa[FAKE_FLOATS], pb[FAKE_FLOATS]; /* the files differ: they record the seed */
    load_params(a, pa);
    load_params(b, pb);
    ck_assert(memcmp(pa, pb, sizeof pa) == 0);
    /* --lr changes the result and is reported. */
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--load", init, "--no-shuffle", "--lr",
                              "0.125", "--save", b, NULL), 0);
    ck_assert(!rt_files_equal(a, b));
    ck_assert(rt_log_has(&l, "sgd(lr 0.125, momentum"));
}
END_TEST

START_TEST(test_train_steps_limit)
{
    const char *dir = rt_tmpdir();
    rt_write_dataset(dir, 400, 20, 0); /* 50 steps per epoch */
    rt_log l;
    rt_fake_train_calls = 0;
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--steps", "5", "--seed", "77", NULL), 0);
    ck_assert_int_eq(rt_fake_train_calls, 5);
    ck_assert_uint_eq(rt_fake_last_seed, 77); /* --seed reaches ctx->seed */
    ck_assert(rt_log_has(&l, "I: epoch 1  train loss")); /* one summary, no "/N" */
    rt_fake_train_calls = 0;
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--steps", "70", NULL), 0);
    ck_assert_int_eq(rt_fake_train_calls, 70);
    ck_assert(rt_log_has(&l, "I: epoch 2  train loss"));
    ck_assert(!rt_log_has(&l, "epoch 3"));
    rt_fake_train_calls = 0;
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--steps", "1000", "--epochs", "1", NULL), 0);
    ck_assert_int_eq(rt_fake_train_calls, 50);
    rt_fake_train_calls = 0;
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--epochs", "0", NULL), 0);
    ck_assert_int_eq(rt_fake_train_calls, 0);
    ck_assert_msg(rt_log_has(&l, "I: test loss "), "%s", l.text);
    ck_assert_int_eq(rt_train(&l, "--data", dir, "--steps", "3", "--quiet", NULL), 0);
    ck_assert_int_eq(l.count[CNN_LOG_INFO] + l.count[CNN_LOG_PROGRESS], 0);
}
END_TEST

START_TEST(test_train_nan_loss)
{
    const char *dir = rt_tmpdir(), *save = rt_path(dir, "w");
    rt_write_dataset(dir, 100, 20, 0);
    rt_log l;
    rt_fake_nan_at_step = 3;
    int rc = rt_train(&l, "--data", dir, "--save", save, NULL);
    rt_fake_nan_at_step = -1;
    ck_assert_int_eq(rc, CNN_EXIT_NONFINITE);
    ck_assert_msg(rt_log_has(&l, "E: error: loss is NaN at step 4 (epoch 1, batch 4)"), "%s",
                  l.text);
    ck_assert_int_eq(access(save, F_OK), -1); /* diverged weights are not saved */
}
END_TEST

START_TEST(test_train_interrupted)
{
    const char *dir = rt_tmpdir(), *save = rt_path(dir, "w");
    rt_write_dataset(dir, 100, 20, 0);
    rt_log l;
    struct sigaction before, now;
    sigaction(SIGINT, NULL, &before);
    rt_fake_sigint_at_step = 2;
    rt_fake_train_calls = 0;
    int rc = rt_train(&l, "--data", dir, "--save", save, NULL);
    rt_fake_sigint_at_step = -1;
    ck_assert_int_eq(rc, CNN_EXIT_INTERRUPTED);
    ck_assert_int_eq(rt_fake_train_calls, 3); /* stopped after the current step */
    ck_assert_msg(rt_log_has(&l, "W: interrupted at step 3 (epoch 1)"), "%s", l.text);
    ck_assert_int_eq(access(save, F_OK), 0); /* saved on the way out */
    sigaction(SIGINT, NULL, &now);
    ck_assert_ptr_eq((void *)now.sa_handler, (void *)before.sa_handler); /* restored */
}
END_TEST

START_TEST(test_train_bad_models)
{
    rt_log l;
    char *argv[] = {"train", "--steps", "0", NULL};
    cnn_model_desc m = cnn_model;
    m.abi_version = 9;
    rt_log_start(&l);
    ck_assert_int_eq(cnn_train_main(3, argv, &m), CNN_EXIT_USER);
    ck_assert(rt_log_has(&l, "E: error: model was compiled for ABI version 9"));
    m = cnn_model;
    m.train_step = NULL;
    ck_assert_int_eq(cnn_train_main(3, argv, &m), CNN_EXIT_USER);
    ck_assert(rt_log_has(&l, "has no train_step"));
    m = cnn_model;
    m.train_config = "{\"batch\": 16}";
    ck_assert_int_eq(cnn_train_main(3, argv, &m), CNN_EXIT_USER);
    ck_assert(rt_log_has(&l, "train config says batch 16, but it was compiled for batch 8"));
    m.train_config = "{\"optimizer\": {\"type\": \"lion\"}}";
    ck_assert_int_eq(cnn_train_main(3, argv, &m), CNN_EXIT_USER);
    ck_assert(rt_log_has(&l, "unknown optimizer \"lion\""));
    rt_log_stop();
}
END_TEST

/* ---- model .so -------------------------------------------------------------------- */

START_TEST(test_model_open_errors)
{
    const char *dir = rt_tmpdir();
    void *h = (void *)1;
    cnn_error err;
    const char *missing = rt_path(dir, "missing.so");
    ck_assert_ptr_null(cnn_model_open(missing, &h, &err));
    ck_assert_ptr_null(h);
    ck_assert_msg(strstr(err.msg, missing) && strstr(err.msg, "cannot load model"), "%s",
                  err.msg);
    const char *text = rt_path(dir, "text.so");
    rt_write_file(text, "not an ELF file", 15);
    ck_assert_ptr_null(cnn_model_open(text, &h, &err));
    ck_assert_msg(strstr(err.msg, text), "%s", err.msg);
    /* A real library without the descriptor: zlib. */
    Dl_info info;
    ck_assert(dladdr((void *)gzopen, &info) != 0 && info.dli_fname);
    ck_assert_ptr_null(cnn_model_open(info.dli_fname, &h, &err));
    ck_assert_msg(strstr(err.msg, "not a cnnc model (no symbol cnn_model)"), "%s", err.msg);
    cnn_model_close(NULL);
}
END_TEST

/* Build rt_fake_model.c into a .so with the system compiler and load it:
 * the path a real `cnnc -o net.so` model takes.  Skipped without a
 * compiler or the source (a test binary run away from its tree). */
START_TEST(test_model_open_so)
{
    const char *src = "tests/rt_fake_model.c";
    if (access(src, R_OK) != 0 || system("cc --version >/dev/null 2>&1") != 0) {
        printf("skipped: needs cc and %s (run from the repository root)\n", src);
        return;
    }
    const char *dir = rt_tmpdir(), *so = rt_path(dir, "fake.so");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O1 -Iruntime -o %s %s -lm", so, src);
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
    void *h;
    cnn_error err;
    const cnn_model_desc *m = cnn_model_open(so, &h, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    ck_assert_ptr_ne(m, &cnn_model); /* the .so's own descriptor */
    ck_assert_str_eq(m->name, "fake");
    /* Train it for a few steps through the loaded function pointers. */
    rt_write_split(dir, "train", 16, 1, 0);
    cnn_dataset ds;
    ck_assert_int_eq(cnn_dataset_load_dir(dir, "train", &ds, &err), 0);
    cnn_ctx *ctx = cnn_ctx_create(m, 1, &err);
    cnn_init_params(m, ctx->params, 1);
    double before, after, acc;
    ck_assert_int_eq(cnn_evaluate(ctx, &ds, &before, &acc, &err), 0);
    cnn_train_config cfg;
    ck_assert_int_eq(cnn_train_config_parse(m->train_config, &cfg, &err), 0);
    cnn_optimizer *opt = cnn_optimizer_create(m, &cfg.optim, &err);
    for (int s = 0; s < 20; s++) {
        float loss = m->train_step(ctx, ds.images + (s % 2) * 8 * 16, ds.labels + (s % 2) * 8, 8);
        ck_assert(isfinite(loss));
        cnn_optimizer_step(opt, ctx->params, ctx->grads);
    }
    ck_assert_int_eq(cnn_evaluate(ctx, &ds, &after, &acc, &err), 0);
    ck_assert_msg(after < before, "loss %g -> %g", before, after);
    cnn_optimizer_free(opt);
    cnn_ctx_free(ctx);
    cnn_dataset_free(&ds);
    cnn_model_close(h);
}
END_TEST

Suite *rt_train_suite(void)
{
    Suite *s = suite_create("train");
    TCase *t = tcase_create("evaluate");
    tcase_add_test(t, test_evaluate_known_values);
    suite_add_tcase(s, t);

    t = tcase_create("train_main");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_train_help);
    tcase_add_loop_test(t, test_train_usage_errors, 0,
                        (int)(sizeof usage_errors / sizeof usage_errors[0]));
    tcase_add_test(t, test_train_data_errors);
    tcase_add_test(t, test_train_steps0_save_load);
    tcase_add_test(t, test_train_reduces_loss);
    tcase_add_test(t, test_train_reproducible);
    tcase_add_test(t, test_train_steps_limit);
    tcase_add_test(t, test_train_nan_loss);
    tcase_add_test(t, test_train_interrupted);
    tcase_add_test(t, test_train_bad_models);
    suite_add_tcase(s, t);

    t = tcase_create("model_so");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_model_open_errors);
    tcase_add_test(t, test_model_open_so);
    suite_add_tcase(s, t);
    return s;
}
