/*
 * peak.c — the machine's peak single-precision FMA rate, measured, so that
 * `make bench` can state a kernel's speed as a percentage of what this
 * machine (and this virtual machine's share of it) actually delivers.
 *
 * Each thread runs a loop of independent fused multiply-adds on full-width
 * vectors: acc_i = acc_i * m + c for NACC accumulators, all in registers.
 * The accumulators are independent, so the loop is bound by FMA
 * throughput, not latency, as long as NACC >= pipes * latency (Zen 5: two
 * 512-bit FMA pipes, 4-cycle latency, so 8; we use 24 of the 32 zmm
 * registers).  m < 1 and c > 0 keep every value near 1: no overflow, no
 * denormals.  The compiler cannot fold the chain (no -ffast-math), and the
 * final sum is stored to a volatile so nothing is dead.
 *
 * Built with -O2 -march=native (see the Makefile): the widest FMA the build
 * machine has is used — AVX-512, else AVX2+FMA, else NEON, else scalar
 * fmaf — and peak_isa() names it.  One FMA counts as two FLOPs.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "peak.h"

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec;
#define VLEN 16
#define ISA "AVX-512"
#define VSET(v) _mm512_set1_ps(v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c) /* a * b + c */
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vec;
#define VLEN 8
#define ISA "AVX2+FMA"
#define VSET(v) _mm256_set1_ps(v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define FEW_REGISTERS /* 16 ymm registers */
#elif defined(__ARM_NEON)
#include <arm_neon.h>
typedef float32x4_t vec;
#define VLEN 4
#define ISA "NEON"
#define VSET(v) vdupq_n_f32(v)
#define VFMA(a, b, c) vfmaq_f32(c, a, b)
#else
typedef float vec;
#define VLEN 1
#define ISA "scalar-fmaf" /* no vector FMA at build time */
#define VSET(v) (v)
#define VFMA(a, b, c) fmaf(a, b, c)
#endif

/* The accumulators, named a0..a23 (a0..a11 where registers are few). */
#ifdef FEW_REGISTERS
#define EACH_ACC(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11)
#define NACC 12
#else
#define EACH_ACC(F)                                                                            \
    F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15)      \
    F(16) F(17) F(18) F(19) F(20) F(21) F(22) F(23)
#define NACC 24
#endif

#define FLOPS_PER_ITER (2.0 * NACC * VLEN)

static volatile float peak_sink;

/* Lane sum of v (no horizontal intrinsics needed: it runs once). */
static float lane_sum(vec v)
{
    float lanes[VLEN];
    memcpy(lanes, &v, sizeof lanes);
    float s = 0;
    for (int i = 0; i < VLEN; i++)
        s += lanes[i];
    return s;
}

/* `iters` iterations of NACC independent FMAs; returns their sum. */
static float fma_loop(int64_t iters)
{
    const vec m = VSET(0.9999f), c = VSET(0.0001f);
#define DECLARE(i) vec a##i = VSET(1.0f + 0.001f * (i));
#define STEP(i) a##i = VFMA(a##i, m, c);
#define SUM(i) s += lane_sum(a##i);
    EACH_ACC(DECLARE)
    for (int64_t it = 0; it < iters; it++) {
        EACH_ACC(STEP)
    }
    float s = 0;
    EACH_ACC(SUM)
    return s;
}

typedef struct peak_job {
    atomic_int *go; /* set once every thread exists: all start together */
    int64_t iters;
    float result;
} peak_job;

static void *peak_worker(void *arg)
{
    peak_job *job = arg;
    while (!atomic_load(job->go))
        ;
    job->result = fma_loop(job->iters);
    return NULL;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

const char *peak_isa(void)
{
    return ISA;
}

int64_t peak_calibrate(double seconds)
{
    int64_t iters = 1 << 12;
    for (;;) {
        double t0 = now();
        peak_sink = fma_loop(iters);
        double elapsed = now() - t0;
        if (elapsed >= seconds / 4 || iters > ((int64_t)1 << 40))
            return (int64_t)((double)iters * seconds / elapsed) + 1;
        iters *= 4;
    }
}

double peak_gflops(int nthreads, int64_t iters)
{
    enum { MAX_THREADS = 256 };
    pthread_t tid[MAX_THREADS];
    peak_job job[MAX_THREADS];
    atomic_int go = 0;
    if (nthreads < 1 || nthreads > MAX_THREADS)
        return -1;
    for (int t = 0; t < nthreads; t++)
        job[t] = (peak_job){.go = &go, .iters = iters};
    int made = 1;
    for (; made < nthreads; made++)
        if (pthread_create(&tid[made], NULL, peak_worker, &job[made]) != 0)
            break;
    atomic_store(&go, 1);
    double t0 = now();
    job[0].result = fma_loop(iters);
    for (int t = 1; t < made; t++)
        pthread_join(tid[t], NULL);
    double elapsed = now() - t0;
    if (made < nthreads)
        return -1;
    float sum = 0;
    for (int t = 0; t < nthreads; t++)
        sum += job[t].result;
    peak_sink = sum;
    return FLOPS_PER_ITER * (double)iters * nthreads / elapsed * 1e-9;
}
