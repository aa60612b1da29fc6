/*
 * ctx.c — contexts: the memory one instance of a model trains in.
 *
 * A context owns three blocks: the parameters, their gradients (same
 * layout) and the scratch arena whose offsets the compiler planned.  Each
 * is allocated once, 64-byte aligned (a cache line, and the alignment the
 * generated vector code assumes), and written once with zeros right away:
 * the first touch of a page costs microseconds on these machines, and it
 * must not land inside a timed train step.
 *
 * With more than one thread it also owns the thread pool the generated
 * parallel loops run on (pool.c).
 *
 * Generated code reads the public cnn_ctx fields by position; the runtime
 * allocates a larger struct and keeps its private state after them.
 */
#include "cnnrt.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CTX_ALIGN 64

typedef struct ctx_impl {
    cnn_ctx pub;  /* must stay first: cnn_ctx * and ctx_impl * alias */
    int nthreads; /* resolved thread count */
} ctx_impl;

int cnn_default_threads(int n)
{
    if (n > 0)
        return n;
    const char *env = getenv("CNNC_THREADS");
    if (env && atoi(env) > 0)
        return atoi(env);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)cores : 1;
}

#define HUGE_PAGE (2u << 20)

/* posix_memalign + memset, for at least one byte; NULL on failure.  A
 * block of a huge page or more is aligned to huge pages and asks the
 * kernel for them (madvise: these machines back memory with 2 MiB pages
 * only where asked) before it is touched. */
static void *alloc_touched(int64_t bytes)
{
    size_t n = bytes > 0 ? (size_t)bytes : 1;
    size_t align = n >= HUGE_PAGE ? HUGE_PAGE : CTX_ALIGN;
    n = (n + align - 1) / align * align;
    void *p = NULL;
    if (posix_memalign(&p, align, n) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_PAGE)
        madvise(p, n, MADV_HUGEPAGE); /* a hint: without it, 4 KiB pages */
#endif
    memset(p, 0, n);
    return p;
}

cnn_ctx *cnn_ctx_create(const cnn_model_desc *m, int nthreads, cnn_error *err)
{
    if (cnn_model_check(m, err) < 0)
        return NULL;
    ctx_impl *c = calloc(1, sizeof *c);
    if (!c) {
        cnn_fail(err, "model %s: out of memory for a context", m->name);
        return NULL;
    }
    nthreads = cnn_default_threads(nthreads);
    c->nthreads = nthreads;
    c->pub.abi_version = CNN_ABI_VERSION;
    c->pub.model = m;
    int64_t param_bytes = m->param_floats * (int64_t)sizeof(float);
    c->pub.params = alloc_touched(param_bytes);
    c->pub.grads = alloc_touched(param_bytes);
    c->pub.arena = alloc_touched(m->arena_bytes);
    if (!c->pub.params || !c->pub.grads || !c->pub.arena) {
        cnn_fail(err, "model %s: out of memory: %lld bytes of parameters, the same of "
                 "gradients and %lld of arena", m->name, (long long)param_bytes,
                 (long long)m->arena_bytes);
        cnn_ctx_free(&c->pub);
        return NULL;
    }
    if (nthreads > 1) {
        c->pub.pool = cnn_pool_create(nthreads, err);
        if (!c->pub.pool) {
            cnn_ctx_free(&c->pub);
            return NULL;
        }
        c->pub.parallel_for = cnn_pool_parallel_for;
    }
    return &c->pub;
}

void cnn_ctx_free(cnn_ctx *ctx)
{
    if (!ctx)
        return;
    ctx_impl *c = (ctx_impl *)ctx;
    cnn_pool_free(c->pub.pool);
    free(c->pub.params);
    free(c->pub.grads);
    free(c->pub.arena);
    free(c);
}
