/*
 * peak.h — the FMA peak microbenchmark of `make bench` (peak.c).
 */
#ifndef BENCH_PEAK_H
#define BENCH_PEAK_H

#include <stdint.h>

/* The vector FMA the benchmark was built with, one word for the report:
 * "AVX-512", "AVX2+FMA", "NEON" or "scalar-fmaf". */
const char *peak_isa(void);
/* Iterations of the FMA loop that take about `seconds` on one thread. */
int64_t peak_calibrate(double seconds);
/* Run `iters` iterations on each of nthreads threads (the caller is one of
 * them), all started together; returns the total GFLOP/s, or -1 when a
 * thread cannot be created. */
double peak_gflops(int nthreads, int64_t iters);

#endif
