/*
 * bench.c — time a compiled network: training steps (train_step plus the
 * optimizer update, as a training loop runs them) and forward passes.
 *
 *   bench MODEL.so train|forward ITERS REPS
 *
 * Prints one line per repetition ("rep 3: 18234.5 img/s") and a last line
 * with the median and the peak resident memory of the process:
 *   median_img_s 18234.5 peak_rss_kib 12345 arena_bytes 123456
 * Inputs are random; the parameters come from the network's initializers.
 * Timing is wall-clock (CLOCK_MONOTONIC); one warm-up repetition first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cnnrt.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench MODEL.so train|forward ITERS REPS\n");
        return 2;
    }
    int train = strcmp(argv[2], "train") == 0;
    int iters = atoi(argv[3]), reps = atoi(argv[4]);
    cnn_error err;
    void *handle;
    const cnn_model_desc *m = cnn_model_open(argv[1], &handle, &err);
    cnn_ctx *ctx = m ? cnn_ctx_create(m, 0, &err) : NULL;
    cnn_train_config cfg;
    if (!ctx || cnn_train_config_parse(m->train_config, &cfg, &err) != 0) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    cnn_optimizer *opt = cnn_optimizer_create(m, &cfg.optim, &err);
    if (!opt) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    cnn_init_params(m, ctx->params, 1);
    int64_t row = (int64_t)m->in_c * m->in_h * m->in_w;
    float *x = malloc(sizeof(float) * (size_t)(row * m->batch));
    float *out = malloc(sizeof(float) * (size_t)(m->classes * m->batch));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)m->batch);
    cnn_rng r;
    cnn_rng_seed(&r, 42);
    for (int64_t i = 0; i < row * m->batch; i++)
        x[i] = (float)cnn_rng_uniform(&r);
    for (int i = 0; i < m->batch; i++)
        y[i] = (int32_t)cnn_rng_below(&r, (uint64_t)m->classes);
    double *rates = malloc(sizeof(double) * (size_t)reps);
    for (int rep = -1; rep < reps; rep++) {
        double t0 = now();
        for (int it = 0; it < iters; it++) {
            if (train) {
                m->train_step(ctx, x, y, m->batch);
                cnn_optimizer_step(opt, ctx->params, ctx->grads);
            } else {
                m->forward(ctx, x, out, m->batch);
            }
        }
        double rate = (double)iters * m->batch / (now() - t0);
        if (rep >= 0) {
            rates[rep] = rate;
            printf("rep %d: %.1f img/s\n", rep, rate);
        }
    }
    qsort(rates, (size_t)reps, sizeof *rates, cmp);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("median_img_s %.1f peak_rss_kib %ld arena_bytes %lld\n", rates[reps / 2], ru.ru_maxrss,
           (long long)m->arena_bytes);
    free(rates), free(x), free(out), free(y);
    cnn_optimizer_free(opt);
    cnn_ctx_free(ctx);
    cnn_model_close(handle);
    return 0;
}
