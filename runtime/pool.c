/*
 * pool.c — the thread pool generated code runs its parallel loops on.
 *
 * A pool of T threads is the caller plus T-1 workers created once, with
 * the context.  cnn_pool_parallel_for splits [0, count) into T contiguous
 * chunks by a static rule (chunk i is [count*i/T, count*(i+1)/T)), runs
 * chunk 0 on the calling thread and the others on the workers, and returns
 * when all are done.  Generated code only parallelizes loops whose
 * iterations are independent and computes every reduction inside one
 * iteration in a fixed order, so results do not depend on T.
 *
 * A train step runs dozens of parallel loops of a few microseconds each,
 * so handing out work must cost far less than a microsecond: workers and
 * the caller spin on an atomic generation counter for a while before
 * falling back to a condition variable, and the calling thread does its
 * own share instead of waiting idle.
 */
#include "cnnrt.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Waiting: first spin with the CPU's pause hint (a few microseconds: the
 * gaps between parallel loops of a step), then yield the CPU between
 * checks (more threads than cores: let the thread we wait for run), then
 * sleep on a condition variable. */
#define SPIN_ITERATIONS 2000
#define YIELD_ITERATIONS 200

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __asm__ volatile("pause")
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() sched_yield()
#endif

typedef struct cnn_pool {
    int nthreads;                 /* including the caller */
    pthread_t *threads;           /* nthreads - 1 workers */
    pthread_mutex_t lock;
    pthread_cond_t wake;          /* a new generation started, or stop */
    pthread_cond_t done;          /* the last worker finished */
    atomic_uint_fast64_t generation;
    atomic_int pending;           /* workers still running this generation */
    atomic_int stop;
    /* the current job */
    cnn_task_fn fn;
    void *closure;
    int64_t count;
} cnn_pool;

typedef struct worker_arg {
    cnn_pool *pool;
    int index; /* 1 .. nthreads-1 */
} worker_arg;

static void run_chunk(cnn_pool *p, int index)
{
    int64_t begin = p->count * index / p->nthreads;
    int64_t end = p->count * (index + 1) / p->nthreads;
    if (begin < end)
        p->fn(p->closure, begin, end);
}

static void *worker(void *arg)
{
    worker_arg *w = arg;
    cnn_pool *p = w->pool;
    int index = w->index;
    free(w);
    uint64_t seen = 0; /* generations start at 0: none can be missed */
    for (;;) {
        uint64_t now = atomic_load_explicit(&p->generation, memory_order_acquire);
        for (int spin = 0; now == seen && spin < SPIN_ITERATIONS + YIELD_ITERATIONS &&
                           !atomic_load(&p->stop);
             spin++) {
            if (spin < SPIN_ITERATIONS)
                cpu_relax();
            else
                sched_yield();
            now = atomic_load_explicit(&p->generation, memory_order_acquire);
        }
        if (now == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->lock);
            while ((now = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->lock);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = now;
        run_chunk(p, index);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

void cnn_pool_parallel_for(void *pool, cnn_task_fn fn, void *closure, int64_t count)
{
    cnn_pool *p = pool;
    if (!p || p->nthreads <= 1 || count <= 1) {
        if (count > 0)
            fn(closure, 0, count);
        return;
    }
    p->fn = fn;
    p->closure = closure;
    p->count = count;
    atomic_store(&p->pending, p->nthreads - 1);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_chunk(p, 0);
    for (int spin = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0 &&
                       spin < SPIN_ITERATIONS + YIELD_ITERATIONS;
         spin++) {
        if (spin < SPIN_ITERATIONS)
            cpu_relax();
        else
            sched_yield();
    }
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }
}

cnn_pool *cnn_pool_create(int nthreads, cnn_error *err)
{
    cnn_pool *p = calloc(1, sizeof *p);
    if (!p) {
        cnn_fail(err, "thread pool: out of memory");
        return NULL;
    }
    p->nthreads = nthreads < 1 ? 1 : nthreads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)p->nthreads, sizeof *p->threads);
    if (!p->threads) {
        cnn_pool_free(p);
        cnn_fail(err, "thread pool: out of memory");
        return NULL;
    }
    for (int i = 1; i < p->nthreads; i++) {
        worker_arg *w = malloc(sizeof *w);
        if (w) {
            w->pool = p;
            w->index = i;
        }
        if (!w || pthread_create(&p->threads[i - 1], NULL, worker, w) != 0) {
            free(w);
            p->nthreads = i; /* the workers started so far */
            cnn_pool_free(p);
            cnn_fail(err, "thread pool: cannot start thread %d of %d", i, nthreads);
            return NULL;
        }
    }
    return p;
}

int cnn_pool_threads(const cnn_pool *p)
{
    return p ? p->nthreads : 1;
}

void cnn_pool_free(cnn_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->nthreads; i++)
        pthread_join(p->threads[i - 1], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}
