/*
 * lower_layers.c — loop nests of the layers of modern CNNs: batch norm
 * (training, evaluation, folded into a convolution), dropout, concat and
 * its backward slice, global average pooling, activations, softmax and the
 * mean-squared-error loss.  The conventions are lower.c's.
 *
 * Numerics follow PyTorch's CPU kernels where it matters for matching them
 * step for step: batch-norm statistics accumulate in double, the running
 * variance uses the unbiased variance.  The output is (x - mean) * alpha +
 * bias with alpha = invstd * gamma: subtracting the mean first keeps
 * outputs near zero accurate (x * alpha + (bias - mean * alpha) cancels,
 * and a ReLU after it then flips on rounding noise, measured as a 4e-4
 * difference from PyTorch after 5 steps of ResNet-8).
 *
 * Dropout draws its mask from a counter-based generator: element e of a
 * step keeps its value when u(e) >= p, where
 *     key  = mix(mix(seed ^ salt * K) + step),   u(e) = (mix(key + e) >> 40) / 2^24
 * and mix is SplitMix64's finalizer.  The backward pass recomputes the same
 * mask instead of storing it, and the reference interpreter
 * (tests/reference.c) implements the same function.
 */
#include <assert.h>
#include <math.h>

#include "lower.h"

/* ---- batch normalization --------------------------------------------------------- */

/* Batch norm runs in parallel over channels: a thread reads channel c of
 * every example in turn, a run of H*W floats every C*H*W, and the
 * hardware prefetchers, which follow one stream within a 4 KiB page, start
 * over at each.  So each example's loop first prefetches the next
 * example's run (a cache line of CACHE_LINE_FLOATS at a time), loads and
 * stores alike.  Measured on ResNet-8's batch norms (6 rounds, kcycles per
 * call): the 16-channel layers' 1457 -> 1338 forward, 2118 -> 1932
 * backward; the whole train step -1.7%. */

/* Prefetches into parent for a run of `length` elements from index
 * `first`: for each cache line of it, what fn's element there reads and
 * writes. */
static void prefetch_run(lprogram *p, lstmt *parent, int64_t length, lexpr *first, row_fn fn,
                         const void *ctx)
{
    int q;
    lstmt *lines = ls_for(p, parent, "line", I(p, (length + CACHE_LINE_FLOATS - 1) / CACHE_LINE_FLOATS),
                          &q)->body;
    lstmt *elements = ls_block(p);
    fn(p, ctx, elements, lx_add(p, first, lx_mul(p, V(p, q), I(p, CACHE_LINE_FLOATS))));
    ls_prefetch_uses(p, lines, elements, 1);
    elements = ls_block(p); /* the last element: a line more where the run is not aligned */
    fn(p, ctx, elements, lx_add(p, first, I(p, length - 1)));
    ls_prefetch_uses(p, parent, elements, 1);
}

/* Flat index of element e of example i's run of channel c in a d-shaped
 * tensor, (i*C + c)*H*W + e; of the run's first element where e is NULL. */
static lexpr *run_at(lprogram *p, dims d, lexpr *i, lexpr *c, lexpr *e)
{
    lexpr *first = lx_mul(p, lx_madd(p, i, d.c, c), I(p, d.h * d.w));
    return e ? lx_add(p, first, e) : first;
}

/* Loops over the examples and pixels of channel c: for i in [0, n), e in
 * [0, H*W); *at receives the flat index. */
static lstmt *channel_loop(lprogram *p, lstmt *parent, dims d, int c, lexpr **at)
{
    int i, e;
    lstmt *b = ls_for(p, parent, "i", lx_n(p), &i)->body;
    b = ls_for(p, b, "e", I(p, d.h * d.w), &e)->body;
    *at = run_at(p, d, V(p, i), V(p, c), V(p, e));
    return b;
}

/* The value of element at (flat index in the inputs) of a batch norm's
 * output, to be stored at out; post: where its fused operands have it. */
typedef void (*elem_fn)(lprogram *p, const void *ctx, lstmt *body, lexpr *at, lexpr *out,
                        post_addr post);

/* fn for a flat index: `first` + the index given (first NULL: the index
 * itself, as prefetch_run gives it), the same in every tensor. */
typedef struct flat_element {
    elem_fn fn;
    const void *ctx;
    lexpr *first;
} flat_element;

static void flat_element_at(lprogram *p, const void *ctx, lstmt *body, lexpr *e)
{
    const flat_element *f = ctx;
    lexpr *at = f->first ? lx_add(p, f->first, e) : e;
    post_addr flat = {at, at};
    f->fn(p, f->ctx, body, at, at, flat);
}

/* fn for each element of channel c of an output without borders (the
 * same index in every tensor), in vectors (as the bordered outputs'
 * rows: left to LLVM, the loop stayed scalar for want of proof that the
 * output does not overlap the inputs), each example's run prefetched a
 * run ahead when tiled for a target. */
static void channel_elements(lprogram *p, lstmt *parent, dims d, int c, elem_fn fn,
                             const void *ctx)
{
    int i;
    int64_t hw = d.h * d.w;
    lstmt *b = ls_for(p, parent, "i", lx_n(p), &i)->body;
    if (p->target) {
        flat_element f = {fn, ctx, NULL};
        prefetch_run(p, b, hw, run_at(p, d, lx_add(p, V(p, i), I(p, 1)), V(p, c), NULL),
                     flat_element_at, &f);
    }
    flat_element run = {fn, ctx, run_at(p, d, V(p, i), V(p, c), NULL)};
    vector_row(p, b, hw, flat_element_at, &run);
}

typedef struct border_row {
    const ir_node *n;
    dims d, y;          /* the tensor, and its buffer with the border */
    int by, i, c, h;    /* output buffer; loop variables */
    lexpr *example;     /* the example: i, or i + 1 for prefetches */
    lexpr *xh;          /* the tensor's row */
    int64_t w0;         /* first column of the run */
    elem_fn fn;
    const void *ctx;
} border_row;

static void zero_element(lprogram *p, const void *ctx, lstmt *body, lexpr *w)
{
    const border_row *r = ctx;
    lexpr *col = lx_add(p, w, I(p, r->w0));
    ls_store(p, body, r->by, at4(p, r->y, V(p, r->i), V(p, r->c), V(p, r->h), col),
             lx_float(p, 0), 0);
}

static void inner_element(lprogram *p, const void *ctx, lstmt *body, lexpr *w)
{
    const border_row *r = ctx;
    lexpr *at = at4(p, r->d, r->example, V(p, r->c), r->xh, w);
    lexpr *out = at4_in(p, r->d, r->n->attr.out_pad, r->example, V(p, r->c), r->xh, w);
    r->fn(p, r->ctx, body, at, out, post_at(p, r->n, r->d, r->example, V(p, r->c), r->xh, w, at));
}

/* For each element of example i, channel c (loop variables) of a batch
 * norm's output (or input gradient) written inside a zero border
 * out_pad[4] (top, left, bottom, right; pack.c's graph_absorb_pads), or
 * whose fused operand lies inside one (add_pad): fn with its indices, row
 * by row in vectors; the output's border there is zeroed here.  With
 * prefetch, each row first fetches the next example's row. */
static void bordered_run(lprogram *p, lstmt *parent, const ir_node *n, dims d, int i, int c,
                         int by, int prefetch, elem_fn fn, const void *ctx)
{
    const int *pad = n->attr.out_pad;
    border_row r = {n, d, {d.c, d.h + pad[0] + pad[2], d.w + pad[1] + pad[3]}, by, i, c, 0,
                    V(p, i), NULL, 0, fn, ctx};
    lstmt *b = loop(p, parent, "h", r.y.h, &r.h);
    r.xh = lx_sub(p, V(p, r.h), I(p, pad[0]));
    lstmt *inside = b;
    if (pad[0] || pad[2]) {
        lstmt *in_rows = ls_if(p, b, lx_in_range(p, r.xh, d.h));
        in_rows->else_s = ls_block(p);
        vector_row(p, in_rows->else_s, r.y.w, zero_element, &r);
        inside = in_rows->then_s;
    }
    if (prefetch) {
        border_row next = r;
        next.example = lx_add(p, V(p, r.i), I(p, 1));
        prefetch_run(p, inside, d.w, I(p, 0), inner_element, &next);
    }
    r.w0 = 0;
    vector_row(p, inside, pad[1], zero_element, &r);
    border_row right = r;
    right.w0 = pad[1] + d.w;
    vector_row(p, inside, pad[3], zero_element, &right);
    vector_row(p, inside, d.w, inner_element, &r);
}

/* bordered_run for channel c of every example. */
static void bordered_loop(lprogram *p, lstmt *parent, const ir_node *n, dims d, int c, int by,
                          elem_fn fn, const void *ctx)
{
    int i;
    lstmt *b = ls_for(p, parent, "i", lx_n(p), &i)->body;
    bordered_run(p, b, n, d, i, c, by, p->target != NULL, fn, ctx);
}

/* Channels whose runs (H*W) are shorter than this get their batch norm's
 * output (or input gradient) written example by example, in a parallel
 * loop of its own after the channels' sums: a channel's runs are
 * 4*C*H*W bytes apart, and runs of 64 floats (8x8 maps) are a few cache
 * lines each, which the memory system served at half the speed of one
 * example's C*H*W contiguous floats (ResNet-8's 8x8 batch norms,
 * microseconds per call, 5 rounds: forward 212 -> 158 and 174 -> 136,
 * backward 316 -> 247 and 286 -> 243; 16x16 maps no faster). */
#define EXAMPLE_MAJOR_RUN 256

/* fn for every element of the batch norm node n's output, example by
 * example in a parallel loop appended to kernel k; set(p, ctx, body, c)
 * first sets the locals fn reads for channel c (a loop variable, which
 * set may record in ctx). */
static void example_major(lprogram *p, lkernel *k, const ir_node *n, dims d, int by,
                          void (*set)(lprogram *p, void *ctx, lstmt *body, int c), elem_fn fn,
                          void *ctx)
{
    int i, c;
    lstmt *b = loop(p, loop_n_par(p, k->body, &i), "c", d.c, &c);
    set(p, ctx, b, c);
    if (bordered(n->attr.out_pad) || post_bordered(n)) {
        bordered_run(p, b, n, d, i, c, by, 0, fn, ctx);
        return;
    }
    flat_element run = {fn, ctx, run_at(p, d, V(p, i), V(p, c), NULL)};
    vector_row(p, b, d.h * d.w, flat_element_at, &run);
}

static lexpr *dbl(lprogram *p, lexpr *x)
{
    return lx_un(p, LX_TODOUBLE, x);
}

static lexpr *flt(lprogram *p, lexpr *x)
{
    return lx_un(p, LX_TOFLOAT, x);
}

/* A per-element term of a channel sum: terms(ctx, j, at) is the float
 * value of term j at flat index at. */
typedef lexpr *(*term_fn)(lprogram *p, const void *ctx, int j, lexpr *at);

typedef struct sum_terms {
    term_fn terms;
    const void *ctx;
    int count;
    const int *sums;
} sum_terms;

/* The terms at one index (for prefetch_run: what they load). */
static void sum_terms_at(lprogram *p, const void *ctx, lstmt *body, lexpr *at)
{
    const sum_terms *t = ctx;
    for (int j = 0; j < t->count; j++)
        ls_set(p, body, t->sums[j], t->terms(p, t->ctx, j, at));
}

/* Lane-wise double partial sums of `count` terms over runs of a channel's
 * elements: over a run's whole vectors in `chains` interleaved sets
 * (independent additions, where one set would wait for each addition's
 * latency), then one set over the rest.  Each addition to a set is of
 * `group` consecutive vectors summed in float first: converting to double
 * is most of the work (4 conversions and 4 additions per vector of 16
 * floats), and a term computed in float ((x - K)^2) already carries a
 * float rounding, so a sum of a few of them in float is as exact. */
#define MAX_CHAINS 2
typedef struct run_parts {
    term_fn terms;
    const void *ctx;
    int count;
    int lanes, chains, group;
    int64_t hw;
    int part[MAX_CHAINS + 1][2]; /* [set (the last: the rest)][term] */
} run_parts;

/* The partial sums, zeroed into parent. */
static void parts_begin(lprogram *p, lstmt *parent, run_parts *rp)
{
    int lanes = rp->lanes;
    assert(rp->count <= 2 && rp->chains >= 1 && rp->chains <= MAX_CHAINS && rp->group >= 1);
    for (int k = 0; k <= rp->chains; k++)
        for (int j = 0; j < rp->count; j++) {
            rp->part[k][j] = -1;
            if (k < rp->chains ? rp->hw / lanes > k : rp->hw % lanes > 0) {
                rp->part[k][j] = lp_var(p, "part", LT_DOUBLE, 0);
                ls_set(p, parent, rp->part[k][j], lx_double(p, 0));
            }
        }
}

/* Set k += the terms of `vectors` vectors of `width` elements from flat
 * index at, summed in float. */
static void parts_vector(lprogram *p, lstmt *parent, const run_parts *rp, int k, int vectors,
                         int64_t width, lexpr *at)
{
    int v;
    lstmt *vl = ls_for(p, parent, "v", I(p, width), &v);
    vl->flags |= LOOP_VECTOR;
    at = lx_add(p, at, V(p, v));
    for (int j = 0; j < rp->count; j++) {
        lexpr *sum = rp->terms(p, rp->ctx, j, at);
        for (int e = 1; e < vectors; e++)
            sum = lx_add(p, sum, rp->terms(p, rp->ctx, j, lx_add(p, at, I(p, e * width))));
        ls_set(p, vl->body, rp->part[k][j], lx_add(p, V(p, rp->part[k][j]), dbl(p, sum)));
    }
}

/* The terms of the run of hw elements from flat index base, added in. */
static void parts_add(lprogram *p, lstmt *parent, const run_parts *rp, lexpr *base)
{
    int lanes = rp->lanes, eb;
    int64_t vectors = rp->hw / lanes, step = (int64_t)rp->chains * rp->group;
    int64_t rounds = vectors / step;
    if (rounds > 0) {
        lstmt *body = ls_for(p, parent, "eb", I(p, rounds), &eb)->body;
        lexpr *first = lx_add(p, base, lx_mul(p, V(p, eb), I(p, step * lanes)));
        for (int k = 0; k < rp->chains; k++)
            parts_vector(p, body, rp, k, rp->group, lanes,
                         lx_add(p, first, I(p, (int64_t)k * rp->group * lanes)));
    }
    for (int64_t e = rounds * step; e < vectors; e++)
        parts_vector(p, parent, rp, (int)(e % rp->chains), 1, lanes,
                     lx_add(p, base, I(p, e * lanes)));
    if (rp->hw % lanes)
        parts_vector(p, parent, rp, rp->chains, 1, rp->hw % lanes,
                     lx_add(p, base, I(p, vectors * lanes)));
}

/* sums[j] += the lanes of the partial sums, set by set (a vector loop
 * again, so the sums see vectors). */
static void parts_end(lprogram *p, lstmt *parent, const run_parts *rp, const int *sums)
{
    int lanes = rp->lanes, v;
    for (int k = 0; k <= rp->chains; k++) {
        if (rp->part[k][0] < 0)
            continue;
        lstmt *vl = ls_for(p, parent, "v", I(p, k < rp->chains ? lanes : rp->hw % lanes), &v);
        vl->flags |= LOOP_VECTOR;
        for (int j = 0; j < rp->count; j++)
            ls_set(p, vl->body, sums[j],
                   lx_add(p, V(p, sums[j]), lx_un(p, LX_HSUM, V(p, rp->part[k][j]))));
    }
}

/* sums[j] (double variables, already initialized) += the sum of term j
 * over the examples and pixels of channel c.  Unoptimized, one double
 * addition per element in order (the definition).  With a target, the
 * pixels go through `lanes`-wide double partial sums (vector code),
 * reduced once at the end: a different but fixed order, so the result
 * does not depend on the number of threads. */
static void channel_sums(lprogram *p, lstmt *parent, dims d, int c, int count, term_fn terms,
                         const void *ctx, const int *sums)
{
    int64_t hw = d.h * d.w;
    if (!p->target) {
        lexpr *at;
        lstmt *r = channel_loop(p, parent, d, c, &at);
        for (int j = 0; j < count; j++)
            ls_set(p, r, sums[j], lx_add(p, V(p, sums[j]), dbl(p, terms(p, ctx, j, at))));
        return;
    }
    int i;
    run_parts rp = {terms, ctx, count, p->target->lanes, 1, 1, hw, {{0}}};
    parts_begin(p, parent, &rp);
    lstmt *ex = ls_for(p, parent, "i", lx_n(p), &i)->body;
    sum_terms st = {terms, ctx, count, sums};
    prefetch_run(p, ex, hw, run_at(p, d, lx_add(p, V(p, i), I(p, 1)), V(p, c), NULL),
                 sum_terms_at, &st);
    parts_add(p, ex, &rp, run_at(p, d, V(p, i), V(p, c), NULL));
    parts_end(p, parent, &rp, sums);
}

typedef struct bn_terms {
    int bx, bdy;
    lexpr *mean; /* float */
} bn_terms;

/* x - K; (x - K)^2 (t->mean holds the shift K) */
static lexpr *bn_shifted_term(lprogram *p, const void *ctx, int j, lexpr *at)
{
    const bn_terms *t = ctx;
    lexpr *dev = lx_sub(p, lx_load(p, t->bx, at), t->mean);
    return j == 0 ? dev : lx_mul(p, dev, dev);
}

/* dy, then (x - mean) * dy */
static lexpr *bn_grad_term(lprogram *p, const void *ctx, int j, lexpr *at)
{
    const bn_terms *t = ctx;
    lexpr *dy = lx_load(p, t->bdy, at);
    if (j == 0)
        return dy;
    return lx_mul(p, lx_sub(p, lx_load(p, t->bx, at), t->mean), dy);
}

/* Lanes of the vectors bn_example_stats sums in, on every target. */
#define STATS_LANES 16

/* A double kept in two floats (STATS_FLOATS): hi = (float)d, lo = (float)(d - hi). */
static void store_split(lprogram *p, lstmt *parent, int buf, lexpr *at, int d)
{
    int hi = lp_var(p, "hi", LT_FLOAT, 0);
    ls_set(p, parent, hi, flt(p, V(p, d)));
    ls_store(p, parent, buf, at, V(p, hi), 0);
    ls_store(p, parent, buf, lx_add(p, at, I(p, 1)), flt(p, lx_sub(p, V(p, d), dbl(p, V(p, hi)))),
             0);
}

/* Where the sums of example i (loop variable), channel c (loop variable)
 * lie in a [N][C][STATS_FLOATS] value. */
static lexpr *stats_at(lprogram *p, dims d, int i, int c)
{
    return lx_mul(p, lx_madd(p, V(p, i), d.c, V(p, c)), I(p, STATS_FLOATS));
}

static lexpr *load_split(lprogram *p, int buf, lexpr *at)
{
    return lx_add(p, dbl(p, lx_load(p, buf, at)), dbl(p, lx_load(p, buf, lx_add(p, at, I(p, 1)))));
}

void bn_example_stats(lprogram *p, const ir_node *n, lstmt *parent, int i)
{
    dims d = dims_of(p, n->out[0]);
    int64_t hw = d.h * d.w;
    int by = lp_buf(p, n->out[0]), bs = lp_buf(p, n->out[1]), c;
    lstmt *b = loop(p, parent, "c", d.c, &c);
    lexpr *base = run_at(p, d, V(p, i), V(p, c), NULL);
    int sum = lp_var(p, "sum", LT_DOUBLE, 0), sq = lp_var(p, "sq", LT_DOUBLE, 0);
    int shift = lp_var(p, "shift", LT_FLOAT, 0), mean = lp_var(p, "mean", LT_DOUBLE, 0);
    ls_set(p, b, sum, lx_double(p, 0));
    ls_set(p, b, sq, lx_double(p, 0));
    ls_set(p, b, shift, lx_load(p, by, base));
    /* In cache, the sums cost what their arithmetic does: vectors four at
     * a time in float, then in double, two sets interleaved (runs have 16
     * vectors or more: bnstats.c's MIN_RUN).  Vectors of STATS_LANES on
     * every target: the float sums then add the same elements in the same
     * order everywhere, as the double ones all but do (with the target's
     * lanes, AArch64's means differed from x86-64's in the 8th digit, and
     * a relu after the batch norm turned the difference into 3e-4 in the
     * weights after 4 steps of resnet8_mnist: test_cross) */
    bn_terms terms = {by, -1, V(p, shift)};
    run_parts rp = {bn_shifted_term, &terms, 2, STATS_LANES, 2, 4, hw, {{0}}};
    int sums[2] = {sum, sq};
    parts_begin(p, b, &rp);
    parts_add(p, b, &rp, base);
    parts_end(p, b, &rp, sums);
    ls_set(p, b, mean, lx_add(p, dbl(p, V(p, shift)), lx_div(p, V(p, sum), lx_double(p, (double)hw))));
    ls_set(p, b, sq, lx_sub(p, V(p, sq), lx_div(p, lx_mul(p, V(p, sum), V(p, sum)),
                                                lx_double(p, (double)hw))));
    lexpr *at = stats_at(p, d, i, c);
    store_split(p, b, bs, at, mean);
    store_split(p, b, bs, lx_add(p, at, I(p, 2)), sq);
}

typedef struct bn_out {
    const ir_node *n;
    int bx, by, bmean, binv, bgamma, bbeta; /* buffers */
    int mean, alpha, beta;                  /* float locals */
} bn_out;

/* The locals of channel c: its mean, alpha = invstd * gamma, beta. */
static void bn_out_set(lprogram *p, void *ctx, lstmt *body, int c)
{
    const bn_out *o = ctx;
    ls_set(p, body, o->alpha,
           lx_mul(p, lx_load(p, o->binv, V(p, c)), lx_load(p, o->bgamma, V(p, c))));
    ls_set(p, body, o->beta, lx_load(p, o->bbeta, V(p, c)));
    ls_set(p, body, o->mean, lx_load(p, o->bmean, V(p, c)));
}

/* y = (x - mean) * alpha + beta, and the fused epilogue */
static void bn_output(lprogram *p, const void *ctx, lstmt *body, lexpr *at, lexpr *out,
                      post_addr post)
{
    const bn_out *o = ctx;
    lexpr *centered = lx_sub(p, lx_load(p, o->bx, at), V(p, o->mean));
    ls_store(p, body, o->by, out,
             post_apply_at(p, o->n, lx_add(p, lx_mul(p, centered, V(p, o->alpha)), V(p, o->beta)),
                           post), 0);
}

/* Training mode: batch statistics, running statistics, output. */
void lower_batchnorm(lprogram *p, const ir_node *n)
{
    dims d = dims_of(p, n->in[0]);
    int bx = lp_buf(p, n->in[0]), bg = lp_buf(p, n->in[1]), bb = lp_buf(p, n->in[2]);
    int brm = lp_buf(p, n->in[3]), brv = lp_buf(p, n->in[4]);
    int by = lp_buf(p, n->out[0]), bmean = lp_buf(p, n->out[1]), binv = lp_buf(p, n->out[2]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int c;
    lstmt *b = loop_par(p, k->body, "c", d.c, &c);
    int count = lp_var(p, "count", LT_DOUBLE, 0), sum = lp_var(p, "sum", LT_DOUBLE, 0);
    int mean = lp_var(p, "mean", LT_DOUBLE, 0), var = lp_var(p, "var", LT_DOUBLE, 0);
    int dev = lp_var(p, "dev", LT_DOUBLE, 0), inv = lp_var(p, "invstd", LT_DOUBLE, 0);
    ls_set(p, b, count, dbl(p, lx_mul(p, lx_n(p), I(p, d.h * d.w))));
    ls_set(p, b, sum, lx_double(p, 0));
    lexpr *at;
    lstmt *r;
    bn_terms terms = {bx, -1, NULL};
    if (n->attr.stats) { /* the producer's sums per example: mean_i, M2_i */
        int bs = lp_buf(p, n->in[ir_nin_core(n)]), i;
        lstmt *e = ls_for(p, b, "i", lx_n(p), &i)->body;
        at = stats_at(p, d, i, c);
        ls_set(p, e, sum, lx_add(p, V(p, sum), load_split(p, bs, at)));
        ls_set(p, b, mean, lx_div(p, V(p, sum), dbl(p, lx_n(p))));
        ls_set(p, b, sum, lx_double(p, 0));
        e = ls_for(p, b, "i", lx_n(p), &i)->body;
        at = stats_at(p, d, i, c);
        ls_set(p, e, dev, lx_sub(p, load_split(p, bs, at), V(p, mean)));
        ls_set(p, e, sum, lx_add(p, lx_add(p, V(p, sum), load_split(p, bs, lx_add(p, at, I(p, 2)))),
                                 lx_mul(p, lx_double(p, (double)(d.h * d.w)),
                                        lx_mul(p, V(p, dev), V(p, dev)))));
    } else if (p->target) {
        /* Vectorized, one pass over x instead of two: the sums of x - K and
         * (x - K)^2, K the channel's first element.  K lies within the
         * data, so sum((x-K)^2) - sum(x-K)^2/M does not cancel the way
         * sum(x^2) - M*mean^2 can (the shifted-data variance). */
        int shift = lp_var(p, "shift", LT_FLOAT, 0), sq = lp_var(p, "sq", LT_DOUBLE, 0);
        ls_set(p, b, shift, lx_load(p, bx, lx_mul(p, V(p, c), I(p, d.h * d.w))));
        ls_set(p, b, sq, lx_double(p, 0));
        terms.mean = V(p, shift);
        int sums[2] = {sum, sq};
        channel_sums(p, b, d, c, 2, bn_shifted_term, &terms, sums);
        ls_set(p, b, mean, lx_add(p, dbl(p, V(p, shift)), lx_div(p, V(p, sum), V(p, count))));
        ls_set(p, b, sum, lx_sub(p, V(p, sq), lx_div(p, lx_mul(p, V(p, sum), V(p, sum)), V(p, count))));
    } else {
        r = channel_loop(p, b, d, c, &at);
        ls_set(p, r, sum, lx_add(p, V(p, sum), dbl(p, lx_load(p, bx, at))));
        ls_set(p, b, mean, lx_div(p, V(p, sum), V(p, count)));
        ls_set(p, b, sum, lx_double(p, 0));
        r = channel_loop(p, b, d, c, &at);
        ls_set(p, r, dev, lx_sub(p, dbl(p, lx_load(p, bx, at)), V(p, mean)));
        ls_set(p, r, sum, lx_add(p, V(p, sum), lx_mul(p, V(p, dev), V(p, dev))));
    }
    ls_set(p, b, var, lx_div(p, V(p, sum), V(p, count)));
    ls_set(p, b, inv, lx_div(p, lx_double(p, 1),
                             lx_un(p, LX_SQRT, lx_add(p, V(p, var), lx_double(p, n->attr.eps)))));
    ls_store(p, b, bmean, V(p, c), flt(p, V(p, mean)), 0);
    ls_store(p, b, binv, V(p, c), flt(p, V(p, inv)), 0);
    /* running = momentum * batch + (1 - momentum) * running, variance unbiased */
    double m = n->attr.momentum;
    lexpr *unbiased = lx_div(p, V(p, sum), lx_max(p, lx_sub(p, V(p, count), lx_double(p, 1)),
                                                  lx_double(p, 1)));
    ls_store(p, b, brm, V(p, c),
             flt(p, lx_add(p, lx_mul(p, lx_double(p, m), V(p, mean)),
                           lx_mul(p, lx_double(p, 1 - m), dbl(p, lx_load(p, brm, V(p, c)))))), 0);
    ls_store(p, b, brv, V(p, c),
             flt(p, lx_add(p, lx_mul(p, lx_double(p, m), unbiased),
                           lx_mul(p, lx_double(p, 1 - m), dbl(p, lx_load(p, brv, V(p, c)))))), 0);
    bn_out o = {n, bx, by, bmean, binv, bg, bb, lp_var(p, "mean_f", LT_FLOAT, 0),
                lp_var(p, "alpha", LT_FLOAT, 0), lp_var(p, "beta", LT_FLOAT, 0)};
    if (p->target && d.h * d.w < EXAMPLE_MAJOR_RUN) {
        example_major(p, k, n, d, by, bn_out_set, bn_output, &o);
        return;
    }
    bn_out_set(p, &o, b, c);
    if (bordered(n->attr.out_pad) || post_bordered(n)) {
        bordered_loop(p, b, n, d, c, by, bn_output, &o);
        return;
    }
    channel_elements(p, b, d, c, bn_output, &o);
}

typedef struct bn_grad_out {
    int bdy, bx, bdx, bmean, binv, bgamma, bdgamma, bdbeta; /* buffers */
    int64_t hw;
    int c;                        /* the channel: a loop variable */
    int gm, kk, scale;            /* float locals */
} bn_grad_out;

/* The locals of channel c for example_major, from what the channel's
 * sums left in dgamma = dotp * invstd and dbeta = sum. */
static void bn_grad_set(lprogram *p, void *ctx, lstmt *body, int c)
{
    bn_grad_out *o = ctx;
    /* 1 / (n*H*W): a division LLVM hoists out of the loops, where one per
     * channel and example cost as much as the rest of the pass */
    lexpr *rcount = lx_div(p, lx_double(p, 1), dbl(p, lx_mul(p, lx_n(p), I(p, o->hw))));
    lexpr *inv = lx_load(p, o->binv, V(p, c));
    o->c = c;
    ls_set(p, body, o->kk, flt(p, lx_mul(p, lx_mul(p, dbl(p, lx_load(p, o->bdgamma, V(p, c))),
                                                   dbl(p, inv)),
                                         rcount)));
    ls_set(p, body, o->gm, flt(p, lx_mul(p, dbl(p, lx_load(p, o->bdbeta, V(p, c))), rcount)));
    ls_set(p, body, o->scale, lx_mul(p, inv, lx_load(p, o->bgamma, V(p, c))));
}

static void bn_grad_output(lprogram *p, const void *ctx, lstmt *body, lexpr *at, lexpr *out,
                           post_addr post)
{
    const bn_grad_out *o = ctx;
    (void)post;
    lexpr *t = lx_sub(p, lx_sub(p, lx_load(p, o->bdy, at), V(p, o->gm)),
                      lx_mul(p, lx_sub(p, lx_load(p, o->bx, at), lx_load(p, o->bmean, V(p, o->c))),
                             V(p, o->kk)));
    ls_store(p, body, o->bdx, out, lx_mul(p, t, V(p, o->scale)), 0);
}

/* dx, dgamma, dbeta (PyTorch's formula):
 *   sum = sum(dy), dotp = sum((x - mean) * dy)          (double)
 *   dgamma = dotp * invstd, dbeta = sum
 *   dx = (dy - sum/M - (x - mean) * dotp * invstd^2 / M) * invstd * gamma */
void lower_batchnorm_bwd(lprogram *p, const ir_node *n)
{
    dims d = dims_of(p, n->in[1]);
    int bdy = lp_buf(p, n->in[0]), bx = lp_buf(p, n->in[1]), bg = lp_buf(p, n->in[2]);
    int bmean = lp_buf(p, n->in[3]), binv = lp_buf(p, n->in[4]);
    int bdx = lp_buf(p, n->out[0]), bdg = lp_buf(p, n->out[1]), bdb = lp_buf(p, n->out[2]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int c;
    lstmt *b = loop_par(p, k->body, "c", d.c, &c);
    int count = lp_var(p, "count", LT_DOUBLE, 0), sum = lp_var(p, "sum", LT_DOUBLE, 0);
    int dotp = lp_var(p, "dotp", LT_DOUBLE, 0), inv = lp_var(p, "invstd", LT_DOUBLE, 0);
    ls_set(p, b, count, dbl(p, lx_mul(p, lx_n(p), I(p, d.h * d.w))));
    ls_set(p, b, sum, lx_double(p, 0));
    ls_set(p, b, dotp, lx_double(p, 0));
    ls_set(p, b, inv, dbl(p, lx_load(p, binv, V(p, c))));
    lexpr *at;
    lstmt *r;
    if (p->target) {
        int mean_f = lp_var(p, "mean_f", LT_FLOAT, 0);
        ls_set(p, b, mean_f, lx_load(p, bmean, V(p, c)));
        bn_terms terms = {bx, bdy, V(p, mean_f)};
        int sums[2] = {sum, dotp};
        channel_sums(p, b, d, c, 2, bn_grad_term, &terms, sums);
    } else {
        r = channel_loop(p, b, d, c, &at);
        lexpr *dy = lx_load(p, bdy, at);
        lexpr *centered = lx_sub(p, lx_load(p, bx, at), lx_load(p, bmean, V(p, c)));
        ls_set(p, r, sum, lx_add(p, V(p, sum), dbl(p, dy)));
        ls_set(p, r, dotp, lx_add(p, V(p, dotp), lx_mul(p, dbl(p, centered), dbl(p, dy))));
    }
    ls_store(p, b, bdg, V(p, c), flt(p, lx_mul(p, V(p, dotp), V(p, inv))), 0);
    ls_store(p, b, bdb, V(p, c), flt(p, V(p, sum)), 0);
    int kk = lp_var(p, "k", LT_FLOAT, 0), gm = lp_var(p, "grad_mean", LT_FLOAT, 0);
    int scale = lp_var(p, "scale", LT_FLOAT, 0);
    bn_grad_out o = {bdy, bx, bdx, bmean, binv, bg, bdg, bdb, d.h * d.w, c, gm, kk, scale};
    if (p->target && d.h * d.w < EXAMPLE_MAJOR_RUN) {
        example_major(p, k, n, d, bdx, bn_grad_set, bn_grad_output, &o);
        return;
    }
    ls_set(p, b, kk, flt(p, lx_div(p, lx_mul(p, lx_mul(p, V(p, dotp), V(p, inv)), V(p, inv)),
                                   V(p, count))));
    ls_set(p, b, gm, flt(p, lx_div(p, V(p, sum), V(p, count))));
    ls_set(p, b, scale, lx_mul(p, lx_load(p, binv, V(p, c)), lx_load(p, bg, V(p, c))));
    if (bordered(n->attr.out_pad)) {
        bordered_loop(p, b, n, d, c, bdx, bn_grad_output, &o);
        return;
    }
    channel_elements(p, b, d, c, bn_grad_output, &o);
}

/* Evaluation mode with the running statistics (when it could not be folded). */
void lower_batchnorm_eval(lprogram *p, const ir_node *n)
{
    dims d = dims_of(p, n->in[0]);
    int bx = lp_buf(p, n->in[0]), bg = lp_buf(p, n->in[1]), bb = lp_buf(p, n->in[2]);
    int brm = lp_buf(p, n->in[3]), brv = lp_buf(p, n->in[4]), by = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int c;
    lstmt *b = loop_par(p, k->body, "c", d.c, &c);
    int alpha = lp_var(p, "alpha", LT_FLOAT, 0), beta = lp_var(p, "beta", LT_FLOAT, 0);
    lexpr *inv = lx_div(p, lx_float(p, 1), lx_un(p, LX_SQRT, lx_add(p, lx_load(p, brv, V(p, c)),
                                                                 lx_float(p, n->attr.eps))));
    ls_set(p, b, alpha, lx_mul(p, inv, lx_load(p, bg, V(p, c))));
    ls_set(p, b, beta, lx_load(p, bb, V(p, c)));
    int mf = lp_var(p, "mean_f", LT_FLOAT, 0);
    ls_set(p, b, mf, lx_load(p, brm, V(p, c)));
    lexpr *at;
    lstmt *r = channel_loop(p, b, d, c, &at);
    lexpr *centered = lx_sub(p, lx_load(p, bx, at), V(p, mf));
    ls_store(p, r, by, at,
             post_apply(p, n, lx_add(p, lx_mul(p, centered, V(p, alpha)), V(p, beta)), at), 0);
}

typedef struct fold_row {
    int bw, bwf, s;
    lexpr *first;
} fold_row;

static void fold_element(lprogram *p, const void *ctx, lstmt *parent, lexpr *j)
{
    const fold_row *r = ctx;
    lexpr *at = lx_add(p, r->first, j);
    ls_store(p, parent, r->bwf, at, lx_mul(p, lx_load(p, r->bw, at), V(p, r->s)), 0);
}

/* Folded weights and bias of a convolution followed by a batch norm; each
 * filter's weights in vectors (the forward pass folds them for every chunk
 * of the batch, and the kernel is too small for LLVM's vectorizer to be
 * asked). */
void lower_bn_fold(lprogram *p, const ir_node *n)
{
    const ir_value *w = &p->g->values[n->in[0]];
    int64_t filters = w->shape.d[0], per = ir_shape_size(w->shape) / filters;
    int bw = lp_buf(p, n->in[0]), bg = lp_buf(p, n->in[1]), bb = lp_buf(p, n->in[2]);
    int brm = lp_buf(p, n->in[3]), brv = lp_buf(p, n->in[4]);
    int bias = ir_nin_core(n) > 5 ? lp_buf(p, n->in[5]) : -1;
    int bwf = lp_buf(p, n->out[0]), bbf = lp_buf(p, n->out[1]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int f;
    lstmt *b = loop_par(p, k->body, "k", filters, &f);
    int s = lp_var(p, "s", LT_FLOAT, 0);
    ls_set(p, b, s, lx_div(p, lx_load(p, bg, V(p, f)),
                           lx_un(p, LX_SQRT, lx_add(p, lx_load(p, brv, V(p, f)),
                                                    lx_float(p, n->attr.eps)))));
    lexpr *b0 = bias >= 0 ? lx_load(p, bias, V(p, f)) : lx_float(p, 0);
    ls_store(p, b, bbf, V(p, f),
             lx_add(p, lx_mul(p, lx_sub(p, b0, lx_load(p, brm, V(p, f))), V(p, s)),
                    lx_load(p, bb, V(p, f))), 0);
    fold_row row = {bw, bwf, s, lx_mul(p, V(p, f), I(p, per))};
    vector_row(p, b, per, fold_element, &row);
    k->tiled = p->target != NULL;
}

/* ---- dropout ------------------------------------------------------------------------ */

/* var = mix(z): SplitMix64's finalizer as statements on the int local var. */
static void mix(lprogram *p, lstmt *b, int var, lexpr *z)
{
    ls_set(p, b, var, lx_add(p, z, I(p, (int64_t)0x9E3779B97F4A7C15ull)));
    static const struct {
        int shift;
        uint64_t mul;
    } rounds[2] = {{30, 0xBF58476D1CE4E5B9ull}, {27, 0x94D049BB133111EBull}};
    for (int r = 0; r < 2; r++)
        ls_set(p, b, var,
               lx_mul(p, lx_bin(p, LX_XOR, V(p, var), lx_bin(p, LX_SHR, V(p, var), I(p, rounds[r].shift))),
                      I(p, (int64_t)rounds[r].mul)));
    ls_set(p, b, var, lx_bin(p, LX_XOR, V(p, var), lx_bin(p, LX_SHR, V(p, var), I(p, 31))));
}

/* y = keep(e) ? x * scale : 0 over the first n examples, for dropout and its
 * gradient alike. */
static void dropout_kernel(lprogram *p, const ir_node *n, int in, int out)
{
    int bx = lp_buf(p, in), by = lp_buf(p, out);
    int64_t row = ir_row_size(&p->g->values[out]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int key = lp_var(p, "key", LT_INT, 0), h = lp_var(p, "h", LT_INT, 0);
    lexpr *salted = lx_bin(p, LX_XOR, lx_var(p, LV_SEED),
                           I(p, (int64_t)((uint64_t)n->attr.salt * 0xD1B54A32D192ED03ull)));
    mix(p, k->body, key, salted);
    mix(p, k->body, key, lx_add(p, V(p, key), lx_var(p, LV_STEP)));
    int e;
    lstmt *f = ls_for(p, k->body, "e", lx_mul(p, lx_n(p), I(p, row)), &e);
    f->flags |= LOOP_PARALLEL;
    lstmt *b = f->body;
    mix(p, b, h, lx_add(p, V(p, key), V(p, e)));
    lexpr *u = lx_mul(p, lx_un(p, LX_TOFLOAT, lx_bin(p, LX_SHR, V(p, h), I(p, 40))),
                      lx_float(p, 1.0 / 16777216.0));
    double pr = n->attr.alpha;
    lexpr *keep = lx_bin(p, LX_LE, lx_float(p, pr), u);
    ls_store(p, b, by, V(p, e),
             lx_select(p, keep, lx_mul(p, lx_load(p, bx, V(p, e)), lx_float(p, 1.0 / (1.0 - pr))),
                       lx_float(p, 0)), 0);
}

void lower_dropout(lprogram *p, const ir_node *n)
{
    dropout_kernel(p, n, n->in[0], n->out[0]);
}

void lower_dropout_bwd(lprogram *p, const ir_node *n)
{
    dropout_kernel(p, n, n->in[0], n->out[0]);
}

/* ---- concat and slice --------------------------------------------------------------- */

void lower_concat(lprogram *p, const ir_node *n)
{
    dims y = dims_of(p, n->out[0]);
    int by = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int64_t hw = y.h * y.w, offset = 0;
    for (int j = 0; j < n->nin; j++) {
        int64_t cj = dims_of(p, n->in[j]).c;
        int bx = lp_buf(p, n->in[j]);
        int i, e;
        lstmt *b = loop_n_par(p, k->body, &i);
        b = loop(p, b, "e", cj * hw, &e);
        lexpr *dst = lx_add(p, lx_madd(p, V(p, i), y.c * hw, I(p, offset * hw)), V(p, e));
        ls_store(p, b, by, dst, lx_load(p, bx, lx_madd(p, V(p, i), cj * hw, V(p, e))), 0);
        offset += cj;
    }
}

/* dx = dy[:, offset : offset + C] */
void lower_slice(lprogram *p, const ir_node *n)
{
    dims y = dims_of(p, n->in[0]), x = dims_of(p, n->out[0]);
    int bdy = lp_buf(p, n->in[0]), bdx = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int64_t hw = x.h * x.w;
    int i, e;
    lstmt *b = loop_n_par(p, k->body, &i);
    b = loop(p, b, "e", x.c * hw, &e);
    lexpr *src = lx_add(p, lx_madd(p, V(p, i), y.c * hw, I(p, n->attr.offset * hw)), V(p, e));
    ls_store(p, b, bdx, lx_madd(p, V(p, i), x.c * hw, V(p, e)), lx_load(p, bdy, src), 0);
}

/* ---- global average pooling ----------------------------------------------------------- */

void lower_global_avgpool(lprogram *p, const ir_node *n)
{
    dims x = dims_of(p, n->in[0]);
    int bx = lp_buf(p, n->in[0]), by = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, c, e;
    lstmt *b = loop_n_par(p, k->body, &i);
    b = loop(p, b, "c", x.c, &c);
    int acc = lp_var(p, "acc", LT_FLOAT, 0);
    ls_set(p, b, acc, lx_float(p, 0));
    lstmt *r = loop(p, b, "e", x.h * x.w, &e);
    lexpr *at = lx_add(p, lx_mul(p, lx_madd(p, V(p, i), x.c, V(p, c)), I(p, x.h * x.w)), V(p, e));
    ls_set(p, r, acc, lx_add(p, V(p, acc), lx_load(p, bx, at)));
    lexpr *out = lx_madd(p, V(p, i), x.c, V(p, c));
    ls_store(p, b, by, out,
             post_apply(p, n, lx_div(p, V(p, acc), lx_float(p, (double)(x.h * x.w))), out), 0);
}

void lower_global_avgpool_bwd(lprogram *p, const ir_node *n)
{
    dims x = dims_of(p, n->out[0]);
    int bdy = lp_buf(p, n->in[0]), bdx = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, c, e;
    lstmt *b = loop_n_par(p, k->body, &i);
    b = loop(p, b, "c", x.c, &c);
    int g = lp_var(p, "g", LT_FLOAT, 0);
    ls_set(p, b, g, lx_div(p, lx_load(p, bdy, lx_madd(p, V(p, i), x.c, V(p, c))),
                           lx_float(p, (double)(x.h * x.w))));
    lstmt *r = loop(p, b, "e", x.h * x.w, &e);
    lexpr *at = lx_add(p, lx_mul(p, lx_madd(p, V(p, i), x.c, V(p, c)), I(p, x.h * x.w)), V(p, e));
    ls_store(p, r, bdx, at, post_apply(p, n, V(p, g), at), 0);
}

/* ---- activations ------------------------------------------------------------------------ */

#define SQRT1_2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

static lexpr *gelu_cdf(lprogram *p, lexpr *x)
{
    return lx_mul(p, lx_float(p, 0.5),
                  lx_add(p, lx_float(p, 1),
                         lx_un(p, LX_ERF, lx_mul(p, x, lx_float(p, SQRT1_2)))));
}

void lower_act(lprogram *p, const ir_node *n)
{
    int bx = lp_buf(p, n->in[0]), by = lp_buf(p, n->out[0]);
    int e;
    lstmt *b = elementwise(p, n, &e);
    int x = lp_var(p, "x", LT_FLOAT, 0);
    ls_set(p, b, x, lx_load(p, bx, V(p, e)));
    lexpr *y = NULL, *xv = V(p, x), *one = lx_float(p, 1);
    switch (n->attr.act) {
    case ACT_LEAKY_RELU: /* x > 0 ? x : x * slope; NaN stays NaN */
        y = lx_select(p, lx_lt(p, lx_float(p, 0), xv), xv,
                      lx_mul(p, xv, lx_float(p, n->attr.alpha)));
        break;
    case ACT_SIGMOID:
        y = lx_div(p, one, lx_add(p, one, lx_un(p, LX_EXP, lx_un(p, LX_NEG, xv))));
        break;
    case ACT_TANH:
        y = lx_un(p, LX_TANH, xv);
        break;
    case ACT_GELU:
        y = lx_mul(p, xv, gelu_cdf(p, xv));
        break;
    }
    ls_store(p, b, by, V(p, e), y, 0);
}

void lower_act_bwd(lprogram *p, const ir_node *n)
{
    int bdy = lp_buf(p, n->in[0]), bx = lp_buf(p, n->in[1]), by = lp_buf(p, n->in[2]);
    int bdx = lp_buf(p, n->out[0]);
    int e;
    lstmt *b = elementwise(p, n, &e);
    lexpr *dy = lx_load(p, bdy, V(p, e)), *x = lx_load(p, bx, V(p, e));
    lexpr *y = lx_load(p, by, V(p, e)), *one = lx_float(p, 1), *dx = NULL;
    switch (n->attr.act) {
    case ACT_LEAKY_RELU:
        dx = lx_select(p, lx_lt(p, lx_float(p, 0), x), dy,
                       lx_mul(p, dy, lx_float(p, n->attr.alpha)));
        break;
    case ACT_SIGMOID: /* dy * (1 - y) * y */
        dx = lx_mul(p, lx_mul(p, dy, lx_sub(p, one, y)), y);
        break;
    case ACT_TANH: /* dy * (1 - y^2) */
        dx = lx_mul(p, dy, lx_sub(p, one, lx_mul(p, y, y)));
        break;
    case ACT_GELU: { /* dy * (cdf(x) + x * pdf(x)) */
        lexpr *pdf = lx_mul(p, lx_float(p, INV_SQRT_2PI),
                            lx_un(p, LX_EXP, lx_mul(p, lx_float(p, -0.5), lx_mul(p, x, x))));
        dx = lx_mul(p, dy, lx_add(p, gelu_cdf(p, x), lx_mul(p, x, pdf)));
        break;
    }
    }
    ls_store(p, b, bdx, V(p, e), dx, 0);
}

/* ---- softmax and the squared error ------------------------------------------------------- */

void lower_softmax(lprogram *p, const ir_node *n)
{
    int64_t k = dims_of(p, n->in[0]).c;
    int bx = lp_buf(p, n->in[0]), by = lp_buf(p, n->out[0]);
    lkernel *kern = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, j;
    lstmt *row = loop_n_par(p, kern->body, &i);
    int m = lp_var(p, "m", LT_FLOAT, 0), sum = lp_var(p, "sum", LT_FLOAT, 0);
    ls_set(p, row, m, lx_float(p, -INFINITY));
    lstmt *b = loop(p, row, "j", k, &j);
    lexpr *z = lx_load(p, bx, lx_madd(p, V(p, i), k, V(p, j)));
    ls_set(p, b, m, lx_select(p, lx_lt(p, V(p, m), z), z, V(p, m)));
    ls_set(p, row, sum, lx_float(p, 0));
    b = loop(p, row, "j", k, &j);
    lexpr *at = lx_madd(p, V(p, i), k, V(p, j));
    int ex = lp_var(p, "e", LT_FLOAT, 0);
    ls_set(p, b, ex, lx_un(p, LX_EXP, lx_sub(p, lx_load(p, bx, at), V(p, m))));
    ls_store(p, b, by, at, V(p, ex), 0);
    ls_set(p, b, sum, lx_add(p, V(p, sum), V(p, ex)));
    b = loop(p, row, "j", k, &j);
    at = lx_madd(p, V(p, i), k, V(p, j));
    ls_store(p, b, by, at, lx_div(p, lx_load(p, by, at), V(p, sum)), 0);
}

/* dx = y * (dy - sum_j dy_j y_j) */
void lower_softmax_bwd(lprogram *p, const ir_node *n)
{
    int64_t k = dims_of(p, n->in[0]).c;
    int bdy = lp_buf(p, n->in[0]), by = lp_buf(p, n->in[1]), bdx = lp_buf(p, n->out[0]);
    lkernel *kern = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, j;
    lstmt *row = loop_n_par(p, kern->body, &i);
    int dot = lp_var(p, "dot", LT_FLOAT, 0);
    ls_set(p, row, dot, lx_float(p, 0));
    lstmt *b = loop(p, row, "j", k, &j);
    lexpr *at = lx_madd(p, V(p, i), k, V(p, j));
    ls_set(p, b, dot, lx_add(p, V(p, dot), lx_mul(p, lx_load(p, bdy, at), lx_load(p, by, at))));
    b = loop(p, row, "j", k, &j);
    at = lx_madd(p, V(p, i), k, V(p, j));
    ls_store(p, b, bdx, at, lx_mul(p, lx_load(p, by, at), lx_sub(p, lx_load(p, bdy, at), V(p, dot))),
             0);
}

/* The difference between prediction j of example i and its one-hot target. */
static lexpr *mse_diff(lprogram *p, int bx, int bl, int i, int j, int64_t k)
{
    lexpr *hot = lx_select(p, lx_bin(p, LX_EQ, V(p, j), label_of(p, bl, i, k)), lx_float(p, 1),
                           lx_float(p, 0));
    return lx_sub(p, lx_load(p, bx, lx_madd(p, V(p, i), k, V(p, j))), hot);
}

/* loss = mean over the n*K elements of (x - onehot(label))^2, as
 * torch.nn.MSELoss against one-hot targets. */
void lower_mse_loss(lprogram *p, const ir_node *n)
{
    int64_t k = dims_of(p, n->in[0]).c;
    int bx = lp_buf(p, n->in[0]), bl = lp_buf(p, n->in[1]), bloss = lp_buf(p, n->out[0]);
    lkernel *kern = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int total = lp_var(p, "total", LT_DOUBLE, 0), d = lp_var(p, "d", LT_FLOAT, 0);
    ls_set(p, kern->body, total, lx_double(p, 0));
    int i, j;
    lstmt *b = loop(p, loop_n(p, kern->body, &i), "j", k, &j);
    ls_set(p, b, d, mse_diff(p, bx, bl, i, j, k));
    ls_set(p, b, total, lx_add(p, V(p, total), dbl(p, lx_mul(p, V(p, d), V(p, d)))));
    ls_store(p, kern->body, bloss, I(p, 0),
             flt(p, lx_div(p, V(p, total), dbl(p, lx_mul(p, lx_n(p), I(p, k))))), 0);
}

/* dx = 2 (x - onehot) / (n K) */
void lower_mse_loss_bwd(lprogram *p, const ir_node *n)
{
    int64_t k = dims_of(p, n->in[0]).c;
    int bx = lp_buf(p, n->in[0]), bl = lp_buf(p, n->in[1]), bdx = lp_buf(p, n->out[0]);
    lkernel *kern = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int scale = lp_var(p, "scale", LT_FLOAT, 0);
    ls_set(p, kern->body, scale,
           lx_div(p, lx_float(p, 2), lx_un(p, LX_TOFLOAT, lx_mul(p, lx_n(p), I(p, k)))));
    int i, j;
    lstmt *b = loop(p, loop_n_par(p, kern->body, &i), "j", k, &j);
    ls_store(p, b, bdx, lx_madd(p, V(p, i), k, V(p, j)),
             lx_mul(p, mse_diff(p, bx, bl, i, j, k), V(p, scale)), 0);
}

/* ---- the packing kernels of tiled ops (pack.c) ------------------------------------------ */

/* One example padded (stride 1), rows in vectors: by the pad's own kernel,
 * or, where a tiled convolution or weight gradient reads the padded tensor
 * first (pad_inlined), by that kernel just before its tiles read the
 * example, which is then still in L2 (the benchmark convolution: a 0.73 ms
 * pass over memory of its 14 ms less). */
typedef struct pad_row {
    dims x, y;
    const int *pad;
    lexpr *i; /* the example */
    int bx, by, c, h;
    int64_t w0; /* zeros: the first column of the run */
} pad_row;

static void pad_copy(lprogram *p, const void *ctx, lstmt *body, lexpr *w)
{
    const pad_row *r = ctx;
    lexpr *xh = lx_sub(p, V(p, r->h), I(p, r->pad[0]));
    ls_store(p, body, r->by, at4(p, r->y, r->i, V(p, r->c), V(p, r->h),
                                 lx_add(p, w, I(p, r->pad[1]))),
             lx_load(p, r->bx, at4(p, r->x, r->i, V(p, r->c), xh, w)), 0);
}

static void pad_zero(lprogram *p, const void *ctx, lstmt *body, lexpr *w)
{
    const pad_row *r = ctx;
    ls_store(p, body, r->by, at4(p, r->y, r->i, V(p, r->c), V(p, r->h),
                                 lx_add(p, w, I(p, r->w0))),
             lx_float(p, 0), 0);
}

void pad_example(lprogram *p, const ir_node *n, lstmt *parent, lexpr *i)
{
    pad_row r = {dims_of(p, n->in[0]), dims_of(p, n->out[0]), n->attr.pad, i,
                 lp_buf(p, n->in[0]), lp_buf(p, n->out[0]), 0, 0, 0};
    lstmt *b = loop(p, parent, "c", r.y.c, &r.c);
    b = loop(p, b, "h", r.y.h, &r.h);
    lstmt *inside = ls_if(p, b, lx_in_range(p, lx_sub(p, V(p, r.h), I(p, r.pad[0])), r.x.h));
    inside->else_s = ls_block(p);
    vector_row(p, inside->else_s, r.y.w, pad_zero, &r);
    vector_row(p, inside->then_s, r.pad[1], pad_zero, &r);
    vector_row(p, inside->then_s, r.x.w, pad_copy, &r);
    pad_row right = r;
    right.w0 = r.pad[1] + r.x.w;
    vector_row(p, inside->then_s, r.y.w - right.w0, pad_zero, &right);
}

/* Zeros around and between (zero insertion by `stride`) the elements of x. */
void lower_pad(lprogram *p, const ir_node *n)
{
    dims x = dims_of(p, n->in[0]), y = dims_of(p, n->out[0]);
    const ir_attrs *a = &n->attr;
    if (p->target && pad_inlined(p->g, n) >= 0)
        return; /* the convolution's kernel pads each example (pad_example) */
    int bx = lp_buf(p, n->in[0]), by = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, c, h, w;
    if (a->stride[0] == 1 && a->stride[1] == 1) { /* each element written once */
        lstmt *b = loop_n_par(p, k->body, &i);
        pad_example(p, n, b, V(p, i));
        return;
    }
    zero_fill(p, k, by, y.c * y.h * y.w);
    lstmt *b = loop_n_par(p, k->body, &i);
    b = loop(p, b, "c", x.c, &c);
    b = loop(p, b, "h", x.h, &h);
    b = loop(p, b, "w", x.w, &w);
    lexpr *row = lx_add(p, I(p, a->pad[0]), lx_mul(p, V(p, h), I(p, a->stride[0])));
    lexpr *col = lx_add(p, I(p, a->pad[1]), lx_mul(p, V(p, w), I(p, a->stride[1])));
    ls_store(p, b, by, at4(p, y, V(p, i), V(p, c), row, col),
             lx_load(p, bx, at4(p, x, V(p, i), V(p, c), V(p, h), V(p, w))), 0);
}

/* dst[dst_at + t*dst_step] = src[src_at + t*src_step] for t < count:
 * scalar copies, PACK_UNROLL at a time (unrolled here, so LLVM is not
 * asked to: the packing kernels are tiled). */
#define PACK_UNROLL 8
static void copy_row(lprogram *p, lstmt *parent, int dst, lexpr *dst_at, int64_t dst_step,
                     int src, lexpr *src_at, int64_t src_step, int64_t count)
{
    int tb, u;
    int64_t groups = count / PACK_UNROLL;
    if (groups) {
        lstmt *b = groups > 1 ? loop(p, parent, "tb", groups, &tb) : parent;
        lexpr *t0 = groups > 1 ? lx_mul(p, V(p, tb), I(p, PACK_UNROLL)) : I(p, 0);
        lstmt *copies = ls_for(p, b, "u", I(p, PACK_UNROLL), &u);
        copies->flags |= LOOP_UNROLL;
        lexpr *t = lx_add(p, t0, V(p, u));
        ls_store(p, copies->body, dst, lx_madd(p, t, dst_step, dst_at),
                 lx_load(p, src, lx_madd(p, t, src_step, src_at)), 0);
    }
    for (int64_t t = groups * PACK_UNROLL; t < count; t++)
        ls_store(p, parent, dst, lx_add(p, dst_at, I(p, t * dst_step)),
                 lx_load(p, src, lx_add(p, src_at, I(p, t * src_step))), 0);
}

/* PACK_PHASES: per phase (ph, pw), per tap (t', u') of it, the weights
 * W[g*cg + c][kin][r][s] at [g][c][t'][u'][kin] of the phase's block. */
static void pack_phases(lprogram *p, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    int64_t kt = a->filters, cg = a->units, kg = kt / a->groups;
    int R = a->kernel[0], S = a->kernel[1];
    int bw = lp_buf(p, n->in[0]), bo = lp_buf(p, n->out[0]);
    lkernel *kern = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int gv, kin;
    for (int ph = 0; ph < a->stride[0]; ph++)
        for (int pw = 0; pw < a->stride[1]; pw++) {
            phase_axis ah = phase_axis_of(ph, a->stride[0], a->pad[0], R, 1, 0);
            phase_axis aw = phase_axis_of(pw, a->stride[1], a->pad[1], S, 1, 0);
            int64_t base = phase_pack_base(ph, pw, a->stride, a->pad, R, S, kt * cg);
            for (int t = 0; t < ah.taps; t++)
                for (int u = 0; u < aw.taps; u++) {
                    int r = ah.first + a->stride[0] * (ah.taps - 1 - t);
                    int s = aw.first + a->stride[1] * (aw.taps - 1 - u);
                    int64_t taps = (int64_t)ah.taps * aw.taps;
                    lstmt *b = kern->body;
                    lexpr *g = I(p, 0);
                    if (a->groups > 1) {
                        b = loop_par(p, b, "g", a->groups, &gv);
                        g = V(p, gv);
                    }
                    b = loop_par(p, b, "kin", kg, &kin);
                    /* c = 0: tap t*taps_w + u of output channel g*cg */
                    lexpr *group = lx_mul(p, g, I(p, kg * cg * taps));
                    lexpr *dst = lx_add(p, lx_add(p, I(p, base), group),
                                        lx_madd(p, I(p, (int64_t)t * aw.taps + u), kg, V(p, kin)));
                    lexpr *oc = lx_mul(p, g, I(p, cg)); /* the group's first output channel */
                    lexpr *src = lx_madd(p, lx_madd(p, lx_madd(p, oc, kg, V(p, kin)), R, I(p, r)),
                                         S, I(p, s));
                    copy_row(p, b, bo, dst, taps * kg, bw, src, kg * R * S, cg);
                }
        }
    kern->tiled = 1;
}

/* The weights of a tiled convolution or dense layer, blocks of `lanes`
 * output channels in pack_offset's order: each output channel's row of
 * taps copied as a strided column of its block (PACK_FORWARD), or, for
 * PACK_FLIPPED, each (output, input) channel pair's taps reversed. */
static void pack_rows(lprogram *p, const ir_node *n, lkernel *kern, int bw, int bo)
{
    const ir_attrs *a = &n->attr;
    int64_t kt = a->filters, cg = a->units, kg = kt / a->groups, lanes = a->lanes;
    int64_t RS = (int64_t)a->kernel[0] * a->kernel[1], T = cg * RS;
    int g, kb, c, m;
    for (int tail = 0; tail < 2; tail++) {
        int64_t blocks = tail ? kg % lanes != 0 : kg / lanes;
        int64_t width = tail ? kg % lanes : lanes;
        if (!blocks)
            continue;
        lstmt *b = a->groups > 1 ? loop_par(p, kern->body, "g", a->groups, &g) : kern->body;
        lexpr *gv = a->groups > 1 ? V(p, g) : I(p, 0);
        lexpr *first = I(p, tail ? kg / lanes * lanes : 0); /* the block's first kin */
        if (blocks > 1) {
            b = loop_par(p, b, "kb", blocks, &kb);
            first = lx_mul(p, V(p, kb), I(p, lanes));
        }
        lexpr *block = lx_mul(p, lx_madd(p, gv, kg, first), I(p, T)); /* the block's place */
        if (a->mode == PACK_FORWARD) {
            b = loop(p, b, "m", width, &m);
            copy_row(p, b, bo, lx_add(p, block, V(p, m)), width, bw,
                     lx_mul(p, lx_add(p, lx_madd(p, gv, kg, first), V(p, m)), I(p, T)), 1, T);
            continue;
        }
        b = loop(p, b, "c", cg, &c);
        b = loop(p, b, "m", width, &m);
        lexpr *oc = lx_madd(p, gv, cg, V(p, c));
        lexpr *last = lx_mul(p, lx_madd(p, V(p, c), RS, I(p, RS - 1)), I(p, width));
        copy_row(p, b, bo, lx_add(p, block, lx_add(p, last, V(p, m))), -width, bw,
                 lx_mul(p, lx_add(p, lx_madd(p, oc, kg, first), V(p, m)), I(p, RS)), 1, RS);
    }
    kern->tiled = 1;
}

/* Weights in the order of the tiled kernels (pack_offset); PACK_FLIPPED
 * also swaps input and output channels within each group and flips the
 * kernel, for the backward-data convolution.  Pack nodes exist only in
 * tiled graphs (pack.c), so only with a target. */
void lower_pack_weights(lprogram *p, const ir_node *n)
{
    assert(p->target);
    if (n->attr.mode == PACK_PHASES)
        pack_phases(p, n);
    else
        pack_rows(p, n, lp_kernel(p, n->name, (int)(n - p->g->nodes)), lp_buf(p, n->in[0]),
                  lp_buf(p, n->out[0]));
}

typedef struct nhwc_ctx {
    dims x, inner;
    const int *pad;
    int bx, by, i, h;
} nhwc_ctx;

/* The blocks of channels [c0, c0 + count*m) of columns [w0, w0 + l) of
 * row h: each m x l block of x transposed in registers and stored as l
 * vectors of m channels. */
static void nhwc_blocks(lprogram *p, lstmt *parent, const nhwc_ctx *t, int64_t c0, int64_t count,
                        int m, int64_t w0, int l)
{
    int cb;
    lexpr *c = I(p, c0);
    if (count > 1) {
        parent = loop(p, parent, "cb", count, &cb);
        c = lx_madd(p, V(p, cb), m, I(p, c0));
    }
    lexpr *src = at4(p, t->x, V(p, t->i), c, lx_add(p, V(p, t->h), I(p, t->pad[0])),
                     I(p, w0 + t->pad[1]));
    lexpr *dst = lx_add(p, lx_mul(p, lx_madd(p, lx_madd(p, V(p, t->i), t->inner.h, V(p, t->h)),
                                             t->inner.w, I(p, w0)),
                                  I(p, t->x.c)),
                        c);
    ls_transpose(p, parent, t->by, dst, t->bx, src, m, l, t->x.h * t->x.w, t->x.c);
}

/* [N][C][H][W] -> [N][H][W][C]; x may lie inside a zero border (in_pad).
 * Tiled: blocks of a vector of channels by a vector of columns, each
 * transposed in registers (LS_TRANSPOSE): contiguous loads and stores
 * where the scalar copy gathered a channel vector lane by lane.
 * ResNet-8's five copies (kcycles per call, 4 rounds): 2099 -> 1232 in
 * all, the 32-channel 16x16 ones 734 -> 322 and 593 -> 392. */
void lower_transpose_nhwc(lprogram *p, const ir_node *n)
{
    const int *pad = n->attr.in_pad;
    dims x = dims_of(p, n->in[0]);
    dims inner = {x.c, x.h - pad[0] - pad[2], x.w - pad[1] - pad[3]};
    int bx = lp_buf(p, n->in[0]), by = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, c, h, w;
    lstmt *b = loop_n_par(p, k->body, &i);
    b = loop(p, b, "h", inner.h, &h);
    if (p->target) {
        int lanes = p->target->lanes;
        nhwc_ctx t = {x, inner, pad, bx, by, i, h};
        for (int64_t w0 = 0; w0 < inner.w; w0 += lanes) {
            int l = inner.w - w0 < lanes ? (int)(inner.w - w0) : lanes;
            if (x.c / lanes)
                nhwc_blocks(p, b, &t, 0, x.c / lanes, lanes, w0, l);
            if (x.c % lanes)
                nhwc_blocks(p, b, &t, x.c / lanes * lanes, 1, (int)(x.c % lanes), w0, l);
        }
        k->tiled = 1;
        return;
    }
    b = loop(p, b, "w", inner.w, &w);
    b = loop(p, b, "c", x.c, &c);
    lexpr *src = at4(p, x, V(p, i), V(p, c), lx_add(p, V(p, h), I(p, pad[0])),
                     lx_add(p, V(p, w), I(p, pad[1])));
    lexpr *dst = lx_madd(p, lx_madd(p, lx_madd(p, V(p, i), inner.h, V(p, h)), inner.w, V(p, w)),
                         x.c, V(p, c));
    ls_store(p, b, by, dst, lx_load(p, bx, src), 0);
}
