/*
 * lower.h — helpers shared by the lowering files (lower.c, lower_layers.c):
 * tensor dimensions, NCHW indexing, and the loop shapes every op uses.
 * Private to the compiler.
 */
#ifndef CNNC_LOWER_H
#define CNNC_LOWER_H

#include "cnnc.h"
#include "ops_impl.h"

/* Dimensions of an activation: N, C, H, W (dense: C = features, H = W = 1). */
typedef struct dims {
    int64_t c, h, w;
} dims;

static inline dims dims_of(const lprogram *p, int value)
{
    const ir_value *v = &p->g->values[value];
    dims d = {v->shape.d[1], 1, 1};
    if (v->shape.ndim == 4) {
        d.h = v->shape.d[2];
        d.w = v->shape.d[3];
    }
    return d;
}

/* ((i*C + c)*H + h)*W + w */
static inline lexpr *at4(lprogram *p, dims d, lexpr *i, lexpr *c, lexpr *h, lexpr *w)
{
    return lx_madd(p, lx_madd(p, lx_madd(p, i, d.c, c), d.h, h), d.w, w);
}

static inline lexpr *V(lprogram *p, int var)
{
    return lx_var(p, var);
}

static inline lexpr *I(lprogram *p, int64_t v)
{
    return lx_int(p, v);
}

/* Where the operands of a fused epilogue (fuse.c) have the element being
 * stored: each may lie inside a zero border of its own. */
typedef struct post_addr {
    lexpr *add;  /* the add's operand (POST_ADD) */
    lexpr *mask; /* the relu mask's operand (POST_MASK) */
} post_addr;

/* value after n's fused epilogue, its operands read at `at`; value itself
 * when nothing was fused. */
lexpr *post_apply_at(lprogram *p, const ir_node *n, lexpr *value, post_addr at);

/* post_apply_at for element `at` of n's first output where neither operand
 * has a border (the same flat index as the output's). */
static inline lexpr *post_apply(lprogram *p, const ir_node *n, lexpr *value, lexpr *at)
{
    post_addr flat = {at, at};
    return post_apply_at(p, n, value, flat);
}

/* for w in [0, width): fn(p, ctx, body, w) -- as vectors of the target's
 * lanes (LOOP_VECTOR: no alias checks, no scalar remainder loop) and a
 * narrower last one; a plain loop without a target. */
typedef void (*row_fn)(lprogram *p, const void *ctx, lstmt *body, lexpr *w);
void vector_row(lprogram *p, lstmt *parent, int64_t width, row_fn fn, const void *ctx);

/* The padding of example i by stride-1 pad node n, into parent: each
 * element written once, rows in vectors with a target. */
void pad_example(lprogram *p, const ir_node *n, lstmt *parent, lexpr *i);

/* Per-example batch-norm sums (bnstats.c) of example i (loop variable) of
 * tiled convolution n, whose output's example i is written: into parent,
 * after its tiles. */
void bn_example_stats(lprogram *p, const ir_node *n, lstmt *parent, int i);

/* Floats per cache line (64 bytes on every target cnnc knows). */
#define CACHE_LINE_FLOATS 16

/* Whether a border (pack.c's graph_absorb_pads: top, left, bottom, right) is set. */
static inline int bordered(const int pad[4])
{
    return pad[0] || pad[1] || pad[2] || pad[3];
}

/* Index of element (i, c, h, w) of a d-shaped tensor stored inside the zero
 * border pad[4]. */
static inline lexpr *at4_in(lprogram *p, dims d, const int pad[4], lexpr *i, lexpr *c, lexpr *h,
                            lexpr *w)
{
    dims b = {d.c, d.h + pad[0] + pad[2], d.w + pad[1] + pad[3]};
    return at4(p, b, i, c, lx_add(p, h, I(p, pad[0])), lx_add(p, w, I(p, pad[1])));
}

/* Whether an operand of n's fused epilogue lies inside a border. */
static inline int post_bordered(const ir_node *n)
{
    return bordered(n->attr.add_pad) || bordered(n->attr.mask_pad);
}

/* Where node n's fused add and mask operands have output element
 * (i, c, h, w) of the d-shaped output, whose flat index is at. */
static inline post_addr post_at(lprogram *p, const ir_node *n, dims d, lexpr *i, lexpr *c,
                                lexpr *h, lexpr *w, lexpr *at)
{
    const int *ap = n->attr.add_pad, *mp = n->attr.mask_pad;
    post_addr r = {bordered(ap) ? at4_in(p, d, ap, i, c, h, w) : at,
                   bordered(mp) ? at4_in(p, d, mp, i, c, h, w) : at};
    return r;
}

/* `for name in [0, extent)` nested in parent; returns the loop body. */
static inline lstmt *loop(lprogram *p, lstmt *parent, const char *name, int64_t extent, int *var)
{
    return ls_for(p, parent, name, lx_int(p, extent), var)->body;
}

static inline lstmt *loop_n(lprogram *p, lstmt *parent, int *var)
{
    return ls_for(p, parent, "i", lx_n(p), var)->body;
}

/* The same loops, marked parallel: only for loops whose iterations write
 * disjoint outputs and share no local (reductions stay serial). */
static inline lstmt *loop_par(lprogram *p, lstmt *parent, const char *name, int64_t extent,
                              int *var)
{
    lstmt *f = ls_for(p, parent, name, lx_int(p, extent), var);
    f->flags |= LOOP_PARALLEL;
    return f->body;
}

static inline lstmt *loop_n_par(lprogram *p, lstmt *parent, int *var)
{
    lstmt *f = ls_for(p, parent, "i", lx_n(p), var);
    f->flags |= LOOP_PARALLEL;
    return f->body;
}

/* for e in [0, n * row): out[e] = f(e) — the body is built by the caller. */
static inline lstmt *elementwise(lprogram *p, const ir_node *n, int *e)
{
    int64_t row = ir_row_size(&p->g->values[n->out[0]]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    lstmt *f = ls_for(p, k->body, "e", lx_mul(p, lx_n(p), I(p, row)), e);
    f->flags |= LOOP_PARALLEL;
    return f->body;
}

/* dx = 0 over the first n examples. */
static inline void zero_fill(lprogram *p, lkernel *k, int buf, int64_t row)
{
    int e;
    lstmt *f = ls_for(p, k->body, "e", lx_mul(p, lx_n(p), I(p, row)), &e);
    f->flags |= LOOP_PARALLEL;
    ls_store(p, f->body, buf, V(p, e), lx_float(p, 0), 0);
}

/* The label of example i, clamped into [0, classes) so that a bad label can
 * never address memory outside the row (the runtime validates labels). */
static inline lexpr *label_of(lprogram *p, int blabels, int i, int64_t classes)
{
    lexpr *l = lx_load(p, blabels, V(p, i));
    return lx_bin(p, LX_MIN, lx_bin(p, LX_MAX, l, I(p, 0)), I(p, classes - 1));
}

#endif
