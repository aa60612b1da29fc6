/*
 * bench.c — the C side of `make bench` (tests/bench/bench.py drives it):
 * times compiled networks through the runtime's API, as a training loop
 * or an inference server calls them, and measures the machine's FMA peak.
 *
 *   bench train|step|forward MODEL.so [options]
 *       train: train_step + the optimizer update of the train block;
 *       step: train_step alone; forward: the evaluation-mode forward pass.
 *       Every call uses the model's full compiled batch (compile with
 *       `cnnc --batch 1` for latency).
 *   bench conv A.so A0.so B.so B0.so [options]
 *       one convolution's forward, backward-data and backward-weights
 *       times, isolated by differences between four networks (below).
 *   bench peak [options]
 *       FMA GFLOP/s (peak.c) on --threads threads.
 *
 * Options: --threads N (0: cnn_default_threads, i.e. $CNNC_THREADS or the
 * cores), --reps R (7), --seconds S (0.5): every repetition lasts about S
 * seconds.  One warm-up repetition first, which also fixes the number of
 * calls per repetition.  Timing is wall-clock (CLOCK_MONOTONIC); figures
 * are medians over the repetitions.  Inputs are uniform random in [0, 1),
 * labels random, parameters from the network's initializers (seed 1).
 *
 * --kernels FILE (train, step, forward; 2 threads or more): during the
 * timed repetitions, every parallel loop the model hands the thread pool
 * is timed (wall clock, waiting for the slower thread included) and FILE
 * gets a line per loop function, in first-call order: its offset in the
 * model's .so (hex; `nm` names it), calls, total nanoseconds.
 * tests/bench/kernels.py turns that into a table per kernel.
 *
 * Output: a line per repetition, then one line for bench.py,
 *   result key value key value ...
 * Peak memory is the process's VmHWM (its own address space's high-water
 * mark), not ru_maxrss, which Linux carries over from the parent across
 * fork and exec and would count the Python driver's memory.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cnnrt.h"
#include "peak.h"

enum bench_mode { MODE_TRAIN, MODE_STEP, MODE_FORWARD };

typedef struct bench_options {
    int threads;    /* 0: cnn_default_threads */
    int reps;       /* timed repetitions */
    double seconds; /* target length of one repetition */
    const char *kernels; /* --kernels: where the per-loop times go, or NULL */
} bench_options;

/* A compiled network opened for timing, with its inputs. */
typedef struct bench_model {
    void *handle;
    const cnn_model_desc *m;
    cnn_ctx *ctx;
    cnn_optimizer *opt; /* the train block's optimizer */
    float *x;           /* batch * in_c * in_h * in_w inputs */
    float *out;         /* batch * classes logits */
    int32_t *y;         /* batch labels */
    int64_t iters;      /* calls per repetition, set by calibrate() */
} bench_model;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts them); the mean of the middle two for even n. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Peak resident memory of this process in KiB: VmHWM from /proc, else
 * ru_maxrss (which may include the parent's, see the top of the file). */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    if (kib < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kib = ru.ru_maxrss;
    }
    return kib;
}

static void model_close(bench_model *b)
{
    free(b->x), free(b->out), free(b->y);
    if (b->opt)
        cnn_optimizer_free(b->opt);
    if (b->ctx)
        cnn_ctx_free(b->ctx);
    if (b->handle)
        cnn_model_close(b->handle);
    memset(b, 0, sizeof *b);
}

/* Open the network at path with a context of `threads` threads, initialized
 * parameters, its optimizer and random inputs.  Returns 0, or -1 with err. */
static int model_open(bench_model *b, const char *path, int threads, cnn_error *err)
{
    memset(b, 0, sizeof *b);
    cnn_train_config cfg;
    b->m = cnn_model_open(path, &b->handle, err);
    if (!b->m)
        return -1;
    if (cnn_train_config_parse(b->m->train_config, &cfg, err) != 0 ||
        !(b->ctx = cnn_ctx_create(b->m, threads, err)) ||
        !(b->opt = cnn_optimizer_create(b->m, &cfg.optim, err))) {
        model_close(b);
        return -1;
    }
    const cnn_model_desc *m = b->m;
    cnn_init_params(m, b->ctx->params, 1);
    int64_t inputs = (int64_t)m->in_c * m->in_h * m->in_w * m->batch;
    b->x = malloc(sizeof(float) * (size_t)inputs);
    b->out = malloc(sizeof(float) * (size_t)m->classes * (size_t)m->batch);
    b->y = malloc(sizeof(int32_t) * (size_t)m->batch);
    if (!b->x || !b->out || !b->y) {
        model_close(b);
        return cnn_fail(err, "%s: out of memory for the inputs", path);
    }
    cnn_rng r;
    cnn_rng_seed(&r, 42);
    for (int64_t i = 0; i < inputs; i++)
        b->x[i] = (float)cnn_rng_uniform(&r);
    for (int i = 0; i < m->batch; i++)
        b->y[i] = (int32_t)cnn_rng_below(&r, (uint64_t)m->classes);
    return 0;
}

/* One call, on the full compiled batch. */
static void model_call(bench_model *b, enum bench_mode mode)
{
    const cnn_model_desc *m = b->m;
    if (mode == MODE_FORWARD) {
        m->forward(b->ctx, b->x, b->out, m->batch);
        return;
    }
    m->train_step(b->ctx, b->x, b->y, m->batch);
    if (mode == MODE_TRAIN)
        cnn_optimizer_step(b->opt, b->ctx->params, b->ctx->grads);
}

/* Seconds per call over b->iters calls. */
static double model_time(bench_model *b, enum bench_mode mode)
{
    double t0 = now();
    for (int64_t i = 0; i < b->iters; i++)
        model_call(b, mode);
    return (now() - t0) / (double)b->iters;
}

/* The warm-up repetition: call until `seconds` have passed (at least twice)
 * and set b->iters to the number of calls that take about that long. */
static void calibrate(bench_model *b, enum bench_mode mode, double seconds)
{
    model_call(b, mode); /* first call: cold caches, lazy binding */
    int64_t calls = 0;
    double t0 = now(), elapsed;
    do {
        model_call(b, mode);
        calls++;
        elapsed = now() - t0;
    } while (elapsed < seconds || calls < 2);
    b->iters = (int64_t)((double)calls * seconds / elapsed + 0.5);
    if (b->iters < 1)
        b->iters = 1;
}

/* --kernels: the pool's parallel_for wrapped, each loop function's calls
 * and time summed (one model per process, so plain statics). */
#define MAX_LOOPS 1024
static struct {
    cnn_parallel_fn inner;
    int count;
    struct loop_time {
        cnn_task_fn fn;
        unsigned long offset; /* in the .so */
        long long calls;
        double seconds;
    } loop[MAX_LOOPS];
} timed;

static void timed_parallel_for(void *pool, cnn_task_fn fn, void *closure, int64_t count)
{
    double t0 = now();
    timed.inner(pool, fn, closure, count);
    double t = now() - t0;
    int i = 0;
    while (i < timed.count && timed.loop[i].fn != fn)
        i++;
    if (i == timed.count) {
        if (i == MAX_LOOPS)
            return;
        Dl_info info;
        timed.loop[i].fn = fn;
        timed.loop[i].offset = dladdr((void *)fn, &info) && info.dli_fbase
                                   ? (unsigned long)((char *)fn - (char *)info.dli_fbase)
                                   : 0;
        timed.count++;
    }
    timed.loop[i].calls++;
    timed.loop[i].seconds += t;
}

static int write_loop_times(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench: cannot write %s\n", path);
        return 1;
    }
    for (int i = 0; i < timed.count; i++)
        fprintf(f, "%lx %lld %.0f\n", timed.loop[i].offset, timed.loop[i].calls,
                1e9 * timed.loop[i].seconds);
    if (fclose(f) != 0) {
        fprintf(stderr, "bench: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

static int bench_model_main(enum bench_mode mode, const char *path, const bench_options *o)
{
    static const char *names[] = {"train", "step", "forward"};
    cnn_error err;
    bench_model b;
    if (model_open(&b, path, o->threads, &err) != 0) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    calibrate(&b, mode, o->seconds);
    if (o->kernels) {
        if (!b.ctx->parallel_for) {
            fprintf(stderr, "bench: --kernels needs 2 threads or more\n");
            model_close(&b);
            return 2;
        }
        timed.inner = b.ctx->parallel_for;
        b.ctx->parallel_for = timed_parallel_for;
    }
    double *sec = malloc(sizeof(double) * (size_t)o->reps);
    for (int rep = 0; rep < o->reps; rep++) {
        sec[rep] = model_time(&b, mode);
        printf("rep %d: %s %.1f us/call, %.1f img/s\n", rep, names[mode], 1e6 * sec[rep],
               b.m->batch / sec[rep]);
    }
    double s = median(sec, o->reps);
    printf("result mode %s img_s %.2f us_per_call %.3f batch %d calls_per_rep %lld threads %d "
           "peak_rss_kib %ld arena_bytes %lld\n",
           names[mode], b.m->batch / s, 1e6 * s, b.m->batch, (long long)b.iters,
           cnn_default_threads(o->threads), peak_rss_kib(), (long long)b.m->arena_bytes);
    free(sec);
    model_close(&b);
    return o->kernels ? write_loop_times(o->kernels) : 0;
}

/*
 * The convolution benchmark.  A conv layer's three passes cannot be timed
 * from outside a compiled train step one by one, so they are isolated by
 * differences between four networks that differ only around it:
 *   A  = input -> conv -> cheap tail        (conv first: no backward-data)
 *   A0 = input -> cheap tail                (A without the conv)
 *   B  = input -> pre -> conv -> cheap tail (pre has weights, so the conv
 *                                            must compute its input gradient)
 *   B0 = input -> pre -> cheap tail         (B without the conv)
 * Then, with fwd() the forward pass and step() the train step:
 *   forward          = fwd(A) - fwd(A0)
 *   backward-weights = step(A) - step(A0) - forward
 *   backward-data    = (step(B) - step(B0)) - (step(A) - step(A0))
 * Each repetition times all six in turn, so every difference is taken
 * between measurements seconds apart, and the median is over repetitions.
 */
static int bench_conv_main(char **paths, const bench_options *o)
{
    enum { A, A0, B, B0, NMODELS };
    bench_model b[NMODELS];
    cnn_error err;
    for (int i = 0; i < NMODELS; i++) {
        if (model_open(&b[i], paths[i], o->threads, &err) != 0) {
            fprintf(stderr, "bench: %s\n", err.msg);
            while (i-- > 0)
                model_close(&b[i]);
            return 1;
        }
    }
    /* The six timings, in the order each repetition takes them. */
    static const struct {
        int model;
        enum bench_mode mode;
        const char *name;
    } timing[] = {
        {A, MODE_FORWARD, "fwd_A"},   {A0, MODE_FORWARD, "fwd_A0"}, {A, MODE_STEP, "step_A"},
        {A0, MODE_STEP, "step_A0"},   {B, MODE_STEP, "step_B"},     {B0, MODE_STEP, "step_B0"},
    };
    enum { NTIMINGS = sizeof timing / sizeof timing[0] };
    int64_t iters[NTIMINGS];
    for (int t = 0; t < NTIMINGS; t++) {
        calibrate(&b[timing[t].model], timing[t].mode, o->seconds);
        iters[t] = b[timing[t].model].iters;
    }
    double *v = malloc(sizeof(double) * (size_t)o->reps * (NTIMINGS + 3));
    double *raw = v, *fwd = v + NTIMINGS * o->reps, *bwd_w = fwd + o->reps,
           *bwd_d = bwd_w + o->reps;
    for (int rep = 0; rep < o->reps; rep++) {
        double s[NTIMINGS];
        for (int t = 0; t < NTIMINGS; t++) {
            b[timing[t].model].iters = iters[t];
            s[t] = model_time(&b[timing[t].model], timing[t].mode);
            raw[t * o->reps + rep] = s[t];
        }
        fwd[rep] = s[0] - s[1];
        bwd_w[rep] = s[2] - s[3] - fwd[rep];
        bwd_d[rep] = (s[4] - s[5]) - (s[2] - s[3]);
        printf("rep %d: forward %.1f us, backward-data %.1f us, backward-weights %.1f us\n", rep,
               1e6 * fwd[rep], 1e6 * bwd_d[rep], 1e6 * bwd_w[rep]);
    }
    printf("result fwd_us %.3f bwd_data_us %.3f bwd_weights_us %.3f", 1e6 * median(fwd, o->reps),
           1e6 * median(bwd_d, o->reps), 1e6 * median(bwd_w, o->reps));
    for (int t = 0; t < NTIMINGS; t++)
        printf(" %s_us %.3f", timing[t].name, 1e6 * median(raw + t * o->reps, o->reps));
    printf(" batch %d threads %d\n", b[A].m->batch, cnn_default_threads(o->threads));
    free(v);
    for (int i = 0; i < NMODELS; i++)
        model_close(&b[i]);
    return 0;
}

static int bench_peak_main(const bench_options *o)
{
    int threads = cnn_default_threads(o->threads);
    int64_t iters = peak_calibrate(o->seconds);
    peak_gflops(threads, iters); /* warm-up: clocks up, threads created once */
    double *g = malloc(sizeof(double) * (size_t)o->reps);
    for (int rep = 0; rep < o->reps; rep++) {
        g[rep] = peak_gflops(threads, iters);
        if (g[rep] < 0) {
            fprintf(stderr, "bench: cannot create %d threads\n", threads);
            free(g);
            return 1;
        }
        printf("rep %d: %.1f GFLOP/s on %d thread%s\n", rep, g[rep], threads,
               threads > 1 ? "s" : "");
    }
    printf("result gflops %.2f threads %d isa %s\n", median(g, o->reps), threads, peak_isa());
    free(g);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench train|step|forward MODEL.so [OPTIONS]\n"
                    "       bench conv A.so A0.so B.so B0.so [OPTIONS]\n"
                    "       bench peak [OPTIONS]\n"
                    "options: --threads N  --reps R  --seconds S\n"
                    "         --kernels FILE (train, step, forward: time per parallel loop)\n");
    return 2;
}

int main(int argc, char **argv)
{
    bench_options o = {.threads = 0, .reps = 7, .seconds = 0.5, .kernels = NULL};
    char *args[4];
    int nargs = 0;
    if (argc < 2)
        return usage();
    for (int i = 2; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--threads") == 0)
            o.threads = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0)
            o.reps = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0)
            o.seconds = atof(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--kernels") == 0)
            o.kernels = argv[++i];
        else if (argv[i][0] != '-' && nargs < 4)
            args[nargs++] = argv[i];
        else
            return usage();
    }
    if (o.reps < 1 || o.seconds <= 0 || o.threads < 0)
        return usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "peak") == 0 && nargs == 0)
        return bench_peak_main(&o);
    if (strcmp(cmd, "conv") == 0 && nargs == 4)
        return bench_conv_main(args, &o);
    if (nargs == 1 && strcmp(cmd, "train") == 0)
        return bench_model_main(MODE_TRAIN, args[0], &o);
    if (nargs == 1 && strcmp(cmd, "step") == 0)
        return bench_model_main(MODE_STEP, args[0], &o);
    if (nargs == 1 && strcmp(cmd, "forward") == 0)
        return bench_model_main(MODE_FORWARD, args[0], &o);
    return usage();
}
