/*
 * lower.c — graph IR to loop IR: one kernel per node, written as the
 * plainest loop nest that computes it.
 *
 * These nests are the definition of each op in loop form, and the
 * baseline every optimization is measured against.  Layout is NCHW with
 * the batch outermost; every loop over examples runs to the runtime batch
 * n, so rows past n are never read or written.  Reductions accumulate in
 * a local (a register after LLVM's mem2reg) and store once.
 *
 * Conventions shared with the reference interpreter (tests/reference.c)
 * and PyTorch:
 *   - padding is zeros for convolution, -inf for max pooling, and counts in
 *     the divisor of average pooling (count_include_pad = True);
 *   - max pooling picks the first maximum in row-major window order, and a
 *     NaN wins (as PyTorch does), both forward and backward;
 *   - relu(NaN) = NaN; the loss is the mean over the n examples.
 */
#include <math.h>

#include "lower.h"

/* Input coordinate of output coordinate o and kernel tap r along an axis;
 * wraps body in a bounds check when padding can make it fall outside. */
static lstmt *tap(lprogram *p, lstmt *body, lexpr *o, int r_var, int stride, int pad, int dil,
                  int64_t size, int pad_hi, lexpr **coord)
{
    *coord = lx_add(p, lx_sub(p, lx_mul(p, o, I(p, stride)), I(p, pad)),
                    lx_mul(p, V(p, r_var), I(p, dil)));
    if (pad == 0 && pad_hi == 0)
        return body;
    return ls_if(p, body, lx_in_range(p, *coord, size))->then_s;
}

void lower_nothing(lprogram *p, const ir_node *n)
{
    (void)p, (void)n;
}

lexpr *post_apply_at(lprogram *p, const ir_node *n, lexpr *value, post_addr at)
{
    int post = n->attr.post;
    if (post & POST_ADD)
        value = lx_add(p, value, lx_load(p, lp_buf(p, ir_add_operand(n)), at.add));
    if (post & POST_RELU)
        value = lx_select(p, lx_lt(p, value, lx_float(p, 0)), lx_float(p, 0), value);
    if (post & POST_MASK) {
        lexpr *m = lx_load(p, lp_buf(p, ir_mask_operand(n)), at.mask);
        value = lx_select(p, lx_lt(p, lx_float(p, 0), m), value, lx_float(p, 0));
    }
    return value;
}

/* ---- convolution ------------------------------------------------------------------ */

void lower_conv2d(lprogram *p, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    dims x = dims_of(p, n->in[0]), y = dims_of(p, n->out[0]);
    int64_t cg = x.c / a->groups, kg = y.c / a->groups;
    int R = a->kernel[0], S = a->kernel[1];
    int bx = lp_buf(p, n->in[0]), bw = lp_buf(p, n->in[1]), by = lp_buf(p, n->out[0]);
    int bb = ir_nin_core(n) > 2 ? lp_buf(p, n->in[2]) : -1;
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, ko, oh, ow, c, r, s;
    lstmt *b = loop_n_par(p, k->body, &i);
    b = loop(p, b, "k", y.c, &ko);
    b = loop(p, b, "oh", y.h, &oh);
    b = loop(p, b, "ow", y.w, &ow);
    int acc = lp_var(p, "acc", LT_FLOAT, 0);
    ls_set(p, b, acc, bb >= 0 ? lx_load(p, bb, V(p, ko)) : lx_float(p, 0));
    lstmt *red = loop(p, b, "c", cg, &c);
    red = loop(p, red, "r", R, &r);
    lexpr *ih, *iw;
    red = tap(p, red, V(p, oh), r, a->stride[0], a->pad[0], a->dilation[0], x.h, a->pad[2], &ih);
    red = loop(p, red, "s", S, &s);
    red = tap(p, red, V(p, ow), s, a->stride[1], a->pad[1], a->dilation[1], x.w, a->pad[3], &iw);
    lexpr *cin = lx_add(p, lx_mul(p, lx_div(p, V(p, ko), I(p, kg)), I(p, cg)), V(p, c));
    lexpr *xv = lx_load(p, bx, at4(p, x, V(p, i), cin, ih, iw));
    dims wd = {cg, R, S};
    lexpr *wv = lx_load(p, bw, at4(p, wd, V(p, ko), V(p, c), V(p, r), V(p, s)));
    ls_set(p, red, acc, lx_add(p, V(p, acc), lx_mul(p, xv, wv)));
    lexpr *at = at4(p, y, V(p, i), V(p, ko), V(p, oh), V(p, ow));
    ls_store(p, b, by, at, post_apply(p, n, V(p, acc), at), 0);
}

/* Output coordinate that input coordinate `in` reaches through tap r, if
 * any: o = (in + pad - r*dil) / stride when that divides and is in range. */
static lstmt *back_tap(lprogram *p, lstmt *body, lexpr *in, int r_var, int stride, int pad,
                       int dil, int64_t out_size, lexpr **coord)
{
    lexpr *t = lx_sub(p, lx_add(p, in, I(p, pad)), lx_mul(p, V(p, r_var), I(p, dil)));
    lexpr *ok = lx_bin(p, LX_LE, I(p, 0), t);
    if (stride == 1) {
        *coord = t;
    } else {
        ok = lx_and(p, ok, lx_bin(p, LX_EQ, lx_bin(p, LX_REM, t, I(p, stride)), I(p, 0)));
        *coord = lx_div(p, t, I(p, stride));
    }
    ok = lx_and(p, ok, lx_lt(p, *coord, I(p, out_size)));
    return ls_if(p, body, ok)->then_s;
}

void lower_conv2d_bwd_data(lprogram *p, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    /* inputs: dy, w; output dx */
    dims dy = dims_of(p, n->in[0]), dx = dims_of(p, n->out[0]);
    int64_t cg = dx.c / a->groups, kg = dy.c / a->groups;
    int R = a->kernel[0], S = a->kernel[1];
    int bdy = lp_buf(p, n->in[0]), bw = lp_buf(p, n->in[1]), bdx = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, c, ih, iw, kk, r, s;
    lstmt *b = loop_n_par(p, k->body, &i);
    b = loop(p, b, "c", dx.c, &c);
    b = loop(p, b, "ih", dx.h, &ih);
    b = loop(p, b, "iw", dx.w, &iw);
    int acc = lp_var(p, "acc", LT_FLOAT, 0);
    ls_set(p, b, acc, lx_float(p, 0));
    lstmt *red = loop(p, b, "kk", kg, &kk);
    lexpr *ko = lx_add(p, lx_mul(p, lx_div(p, V(p, c), I(p, cg)), I(p, kg)), V(p, kk));
    red = loop(p, red, "r", R, &r);
    lexpr *oh, *ow;
    red = back_tap(p, red, V(p, ih), r, a->stride[0], a->pad[0], a->dilation[0], dy.h, &oh);
    red = loop(p, red, "s", S, &s);
    red = back_tap(p, red, V(p, iw), s, a->stride[1], a->pad[1], a->dilation[1], dy.w, &ow);
    lexpr *g = lx_load(p, bdy, at4(p, dy, V(p, i), ko, oh, ow));
    dims wd = {cg, R, S};
    lexpr *cc = lx_bin(p, LX_REM, V(p, c), I(p, cg));
    lexpr *wv = lx_load(p, bw, at4(p, wd, ko, cc, V(p, r), V(p, s)));
    ls_set(p, red, acc, lx_add(p, V(p, acc), lx_mul(p, g, wv)));
    ls_store(p, b, bdx, at4(p, dx, V(p, i), V(p, c), V(p, ih), V(p, iw)), V(p, acc), 0);
}

void lower_conv2d_bwd_filter(lprogram *p, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    /* inputs: dy, x; output dW [K, C/groups, R, S] */
    dims dy = dims_of(p, n->in[0]), x = dims_of(p, n->in[1]);
    int64_t cg = x.c / a->groups, kg = dy.c / a->groups;
    int R = a->kernel[0], S = a->kernel[1];
    int bdy = lp_buf(p, n->in[0]), bx = lp_buf(p, n->in[1]), bdw = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int ko, c, r, s, i, oh, ow;
    lstmt *b = loop_par(p, k->body, "k", dy.c, &ko);
    b = loop(p, b, "c", cg, &c);
    b = loop(p, b, "r", R, &r);
    b = loop(p, b, "s", S, &s);
    int acc = lp_var(p, "acc", LT_FLOAT, 0);
    ls_set(p, b, acc, lx_float(p, 0));
    lstmt *red = loop_n(p, b, &i);
    red = loop(p, red, "oh", dy.h, &oh);
    lexpr *ih, *iw;
    red = tap(p, red, V(p, oh), r, a->stride[0], a->pad[0], a->dilation[0], x.h, a->pad[2], &ih);
    red = loop(p, red, "ow", dy.w, &ow);
    red = tap(p, red, V(p, ow), s, a->stride[1], a->pad[1], a->dilation[1], x.w, a->pad[3], &iw);
    lexpr *cin = lx_add(p, lx_mul(p, lx_div(p, V(p, ko), I(p, kg)), I(p, cg)), V(p, c));
    lexpr *g = lx_load(p, bdy, at4(p, dy, V(p, i), V(p, ko), V(p, oh), V(p, ow)));
    lexpr *xv = lx_load(p, bx, at4(p, x, V(p, i), cin, ih, iw));
    ls_set(p, red, acc, lx_add(p, V(p, acc), lx_mul(p, g, xv)));
    dims wd = {cg, R, S};
    ls_store(p, b, bdw, at4(p, wd, V(p, ko), V(p, c), V(p, r), V(p, s)), V(p, acc), 0);
}

/* db[k] = sum over examples and pixels of dy[i, k, h, w] (conv and dense). */
void lower_bias_bwd(lprogram *p, const ir_node *n)
{
    dims dy = dims_of(p, n->in[0]);
    int bdy = lp_buf(p, n->in[0]), bdb = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int ko, i, e;
    lstmt *b = loop_par(p, k->body, "k", dy.c, &ko);
    int acc = lp_var(p, "acc", LT_FLOAT, 0);
    ls_set(p, b, acc, lx_float(p, 0));
    lstmt *red = loop_n(p, b, &i);
    red = loop(p, red, "e", dy.h * dy.w, &e);
    lexpr *idx = lx_add(p, lx_mul(p, lx_madd(p, V(p, i), dy.c, V(p, ko)), I(p, dy.h * dy.w)),
                        V(p, e));
    ls_set(p, red, acc, lx_add(p, V(p, acc), lx_load(p, bdy, idx)));
    ls_store(p, b, bdb, V(p, ko), V(p, acc), 0);
}

/* ---- dense ---------------------------------------------------------------------------- */

void lower_dense(lprogram *p, const ir_node *n)
{
    int64_t f = dims_of(p, n->in[0]).c, units = dims_of(p, n->out[0]).c;
    int bx = lp_buf(p, n->in[0]), bw = lp_buf(p, n->in[1]), by = lp_buf(p, n->out[0]);
    int bb = ir_nin_core(n) > 2 ? lp_buf(p, n->in[2]) : -1;
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, o, j;
    lstmt *b = loop_n(p, k->body, &i);
    b = loop(p, b, "o", units, &o);
    int acc = lp_var(p, "acc", LT_FLOAT, 0);
    ls_set(p, b, acc, bb >= 0 ? lx_load(p, bb, V(p, o)) : lx_float(p, 0));
    lstmt *red = loop(p, b, "f", f, &j);
    lexpr *xv = lx_load(p, bx, lx_madd(p, V(p, i), f, V(p, j)));
    lexpr *wv = lx_load(p, bw, lx_madd(p, V(p, o), f, V(p, j)));
    ls_set(p, red, acc, lx_add(p, V(p, acc), lx_mul(p, xv, wv)));
    lexpr *at = lx_madd(p, V(p, i), units, V(p, o));
    ls_store(p, b, by, at, post_apply(p, n, V(p, acc), at), 0);
}

void lower_dense_bwd_data(lprogram *p, const ir_node *n)
{
    int64_t units = dims_of(p, n->in[0]).c, f = dims_of(p, n->out[0]).c;
    int bdy = lp_buf(p, n->in[0]), bw = lp_buf(p, n->in[1]), bdx = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int i, j, o;
    lstmt *b = loop_n(p, k->body, &i);
    b = loop(p, b, "f", f, &j);
    int acc = lp_var(p, "acc", LT_FLOAT, 0);
    ls_set(p, b, acc, lx_float(p, 0));
    lstmt *red = loop(p, b, "o", units, &o);
    lexpr *g = lx_load(p, bdy, lx_madd(p, V(p, i), units, V(p, o)));
    lexpr *wv = lx_load(p, bw, lx_madd(p, V(p, o), f, V(p, j)));
    ls_set(p, red, acc, lx_add(p, V(p, acc), lx_mul(p, g, wv)));
    lexpr *at = lx_madd(p, V(p, i), f, V(p, j));
    ls_store(p, b, bdx, at, post_apply(p, n, V(p, acc), at), 0);
}

void lower_dense_bwd_weight(lprogram *p, const ir_node *n)
{
    int64_t units = dims_of(p, n->in[0]).c, f = dims_of(p, n->in[1]).c;
    int bdy = lp_buf(p, n->in[0]), bx = lp_buf(p, n->in[1]), bdw = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int o, j, i;
    lstmt *b = loop(p, k->body, "o", units, &o);
    b = loop(p, b, "f", f, &j);
    int acc = lp_var(p, "acc", LT_FLOAT, 0);
    ls_set(p, b, acc, lx_float(p, 0));
    lstmt *red = loop_n(p, b, &i);
    lexpr *g = lx_load(p, bdy, lx_madd(p, V(p, i), units, V(p, o)));
    lexpr *xv = lx_load(p, bx, lx_madd(p, V(p, i), f, V(p, j)));
    ls_set(p, red, acc, lx_add(p, V(p, acc), lx_mul(p, g, xv)));
    ls_store(p, b, bdw, lx_madd(p, V(p, o), f, V(p, j)), V(p, acc), 0);
}

/* ---- element-wise ------------------------------------------------------------------------ */

void lower_relu(lprogram *p, const ir_node *n)
{
    int bx = lp_buf(p, n->in[0]), by = lp_buf(p, n->out[0]);
    int e;
    lstmt *b = elementwise(p, n, &e);
    lexpr *x = lx_load(p, bx, V(p, e));
    ls_store(p, b, by, V(p, e), lx_select(p, lx_lt(p, x, lx_float(p, 0)), lx_float(p, 0), x), 0);
}

void lower_relu_bwd(lprogram *p, const ir_node *n)
{
    int bdy = lp_buf(p, n->in[0]), by = lp_buf(p, n->in[1]), bdx = lp_buf(p, n->out[0]);
    int e;
    lstmt *b = elementwise(p, n, &e);
    lexpr *pos = lx_lt(p, lx_float(p, 0), lx_load(p, by, V(p, e)));
    ls_store(p, b, bdx, V(p, e), lx_select(p, pos, lx_load(p, bdy, V(p, e)), lx_float(p, 0)), 0);
}

void vector_row(lprogram *p, lstmt *parent, int64_t width, row_fn fn, const void *ctx)
{
    int w;
    if (!p->target) {
        lstmt *body = loop(p, parent, "w", width, &w);
        fn(p, ctx, body, V(p, w));
        return;
    }
    int lanes = p->target->lanes, wb;
    int64_t full = width / lanes, tail = width % lanes;
    if (full) {
        lstmt *b = full > 1 ? loop(p, parent, "wb", full, &wb) : parent;
        lstmt *v = ls_for(p, b, "w", I(p, lanes), &w);
        v->flags |= LOOP_VECTOR;
        lexpr *first = full > 1 ? lx_mul(p, V(p, wb), I(p, lanes)) : I(p, 0);
        fn(p, ctx, v->body, lx_add(p, first, V(p, w)));
    }
    if (tail) {
        lstmt *v = ls_for(p, parent, "w", I(p, tail), &w);
        v->flags |= LOOP_VECTOR;
        fn(p, ctx, v->body, lx_add(p, I(p, full * lanes), V(p, w)));
    }
}

typedef struct add_row {
    const ir_node *n;
    dims d;
    int ba, bb, by, i, c, h;
} add_row;

static void add_element(lprogram *p, const void *ctx, lstmt *body, lexpr *w)
{
    const add_row *r = ctx;
    lexpr *at = at4(p, r->d, V(p, r->i), V(p, r->c), V(p, r->h), w);
    post_addr post = post_at(p, r->n, r->d, V(p, r->i), V(p, r->c), V(p, r->h), w, at);
    lexpr *sum = lx_add(p, lx_load(p, r->ba, at), lx_load(p, r->bb, at));
    ls_store(p, body, r->by, at, post_apply_at(p, r->n, sum, post), 0);
}

void lower_add(lprogram *p, const ir_node *n)
{
    int ba = lp_buf(p, n->in[0]), bb = lp_buf(p, n->in[1]), by = lp_buf(p, n->out[0]);
    if (post_bordered(n)) { /* an operand inside a border: row by row */
        add_row r = {n, dims_of(p, n->out[0]), ba, bb, by, 0, 0, 0};
        lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
        lstmt *b = loop_n_par(p, k->body, &r.i);
        b = loop(p, b, "c", r.d.c, &r.c);
        b = loop(p, b, "h", r.d.h, &r.h);
        vector_row(p, b, r.d.w, add_element, &r);
        return;
    }
    int e;
    lstmt *b = elementwise(p, n, &e);
    lexpr *sum = lx_add(p, lx_load(p, ba, V(p, e)), lx_load(p, bb, V(p, e)));
    ls_store(p, b, by, V(p, e), post_apply(p, n, sum, V(p, e)), 0);
}

void lower_copy(lprogram *p, const ir_node *n)
{
    int bx = lp_buf(p, n->in[0]), by = lp_buf(p, n->out[0]);
    int e;
    lstmt *b = elementwise(p, n, &e);
    ls_store(p, b, by, V(p, e), lx_load(p, bx, V(p, e)), 0);
}

/* ---- pooling ------------------------------------------------------------------------------- */

/* The loops over (i, c, oh, ow) and the window (r, s) of a pooling op, with
 * the bounds checks padding needs.  x is the pooled tensor's dims, y the
 * pooled output's. */
typedef struct window {
    int i, c, oh, ow, r, s;
    lstmt *outer;  /* body at one output position */
    lstmt *inner;  /* body at one in-range tap */
    lexpr *ih, *iw;
} window;

static window pool_window(lprogram *p, lkernel *k, dims y)
{
    window wv;
    lstmt *b = loop_n_par(p, k->body, &wv.i);
    b = loop(p, b, "c", y.c, &wv.c);
    b = loop(p, b, "oh", y.h, &wv.oh);
    b = loop(p, b, "ow", y.w, &wv.ow);
    wv.outer = b;
    return wv;
}

static void pool_taps(lprogram *p, window *wv, const ir_attrs *a, dims x)
{
    lstmt *t = loop(p, wv->outer, "r", a->kernel[0], &wv->r);
    t = tap(p, t, V(p, wv->oh), wv->r, a->stride[0], a->pad[0], 1, x.h, a->pad[2], &wv->ih);
    t = loop(p, t, "s", a->kernel[1], &wv->s);
    t = tap(p, t, V(p, wv->ow), wv->s, a->stride[1], a->pad[1], 1, x.w, a->pad[3], &wv->iw);
    wv->inner = t;
}

/* The first maximum of the window (a NaN wins), into locals m and at
 * (at = ih*W + iw, or -1 for an empty window). */
static void window_argmax(lprogram *p, window *wv, const ir_attrs *a, dims x, int bx, int *m,
                          int *at)
{
    *m = lp_var(p, "m", LT_FLOAT, 0);
    *at = lp_var(p, "at", LT_INT, 0);
    ls_set(p, wv->outer, *m, lx_float(p, -INFINITY));
    ls_set(p, wv->outer, *at, I(p, -1));
    pool_taps(p, wv, a, x);
    int v = lp_var(p, "v", LT_FLOAT, 0);
    ls_set(p, wv->inner, v, lx_load(p, bx, at4(p, x, V(p, wv->i), V(p, wv->c), wv->ih, wv->iw)));
    lexpr *better = lx_bin(p, LX_OR, lx_lt(p, V(p, *m), V(p, v)),
                           lx_bin(p, LX_NE, V(p, v), V(p, v)));
    lexpr *pos = lx_madd(p, wv->ih, x.w, wv->iw);
    ls_set(p, wv->inner, *at, lx_select(p, better, pos, V(p, *at)));
    ls_set(p, wv->inner, *m, lx_select(p, better, V(p, v), V(p, *m)));
}

/* ---- max pooling, vectorized (-O1 and up, no padding) ---------------------------- */

/* Output columns in vectors of the target's width, the window's taps
 * written out (its size is a constant) so the column loop is innermost:
 * loop_vectorize turns it into vector code whose input reads are strided
 * (every second column for a stride of 2).  The argmax is the tap number
 * of the first maximum, a NaN winning, as in window_argmax. */
typedef struct vwindow {
    lexpr *i, *c, *oh, *ow;
    int m, at;       /* window maximum and its tap (-1: none) */
} vwindow;

static int vector_pool_ok(const lprogram *p, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    return p->target && !a->pad[0] && !a->pad[1] && !a->pad[2] && !a->pad[3] &&
           a->kernel[0] * a->kernel[1] <= 16;
}

static void vwindow_argmax(lprogram *p, const ir_node *n, lstmt *body, vwindow *w, dims x,
                           int bx)
{
    const ir_attrs *a = &n->attr;
    w->m = lp_var(p, "m", LT_FLOAT, 0);
    w->at = lp_var(p, "at", LT_INT, 0);
    int v = lp_var(p, "v", LT_FLOAT, 0);
    ls_set(p, body, w->m, lx_float(p, -INFINITY));
    ls_set(p, body, w->at, I(p, -1));
    for (int r = 0; r < a->kernel[0]; r++)
        for (int s = 0; s < a->kernel[1]; s++) {
            lexpr *ih = lx_madd(p, w->oh, a->stride[0], I(p, r));
            lexpr *iw = lx_madd(p, w->ow, a->stride[1], I(p, s));
            ls_set(p, body, v, lx_load(p, bx, at4(p, x, w->i, w->c, ih, iw)));
            lexpr *better = lx_bin(p, LX_OR, lx_lt(p, V(p, w->m), V(p, v)),
                                   lx_bin(p, LX_NE, V(p, v), V(p, v)));
            ls_set(p, body, w->at, lx_select(p, better, I(p, r * a->kernel[1] + s), V(p, w->at)));
            ls_set(p, body, w->m, lx_select(p, better, V(p, v), V(p, w->m)));
        }
}

typedef void (*vwindow_fn)(lprogram *p, const ir_node *n, lstmt *body, vwindow *w);

/* for i, c, oh: for each vector of output columns: fn (a body at one
 * vector of windows) */
static void vwindow_loops(lprogram *p, const ir_node *n, lkernel *k, dims y, vwindow_fn fn)
{
    int lanes = p->target->lanes, i, c, oh, owt, v;
    lstmt *b = loop_n_par(p, k->body, &i);
    b = loop(p, b, "c", y.c, &c);
    b = loop(p, b, "oh", y.h, &oh);
    vwindow w = {V(p, i), V(p, c), V(p, oh), NULL, 0, 0};
    if (y.w / lanes > 0) {
        lstmt *t = loop(p, b, "owt", y.w / lanes, &owt);
        lstmt *vl = ls_for(p, t, "v", I(p, lanes), &v);
        vl->flags |= LOOP_VECTOR;
        w.ow = lx_madd(p, V(p, owt), lanes, V(p, v));
        fn(p, n, vl->body, &w);
    }
    if (y.w % lanes) {
        lstmt *vl = ls_for(p, b, "v", I(p, y.w % lanes), &v);
        vl->flags |= LOOP_VECTOR;
        w.ow = lx_add(p, I(p, y.w / lanes * lanes), V(p, v));
        fn(p, n, vl->body, &w);
    }
}

static void vmaxpool_body(lprogram *p, const ir_node *n, lstmt *body, vwindow *w)
{
    dims x = dims_of(p, n->in[0]), y = dims_of(p, n->out[0]);
    vwindow_argmax(p, n, body, w, x, lp_buf(p, n->in[0]));
    lexpr *out = at4(p, y, w->i, w->c, w->oh, w->ow);
    ls_store(p, body, lp_buf(p, n->out[0]), out, post_apply(p, n, V(p, w->m), out), 0);
}

/* Disjoint windows: every tap of the window gets dy or 0. */
static void vmaxpool_bwd_body(lprogram *p, const ir_node *n, lstmt *body, vwindow *w)
{
    const ir_attrs *a = &n->attr;
    dims y = dims_of(p, n->in[0]), x = dims_of(p, n->in[1]);
    vwindow_argmax(p, n, body, w, x, lp_buf(p, n->in[1]));
    int g = lp_var(p, "g", LT_FLOAT, 0);
    ls_set(p, body, g, lx_load(p, lp_buf(p, n->in[0]), at4(p, y, w->i, w->c, w->oh, w->ow)));
    for (int r = 0; r < a->kernel[0]; r++)
        for (int s = 0; s < a->kernel[1]; s++) {
            lexpr *ih = lx_madd(p, w->oh, a->stride[0], I(p, r));
            lexpr *iw = lx_madd(p, w->ow, a->stride[1], I(p, s));
            lexpr *dst = at4(p, x, w->i, w->c, ih, iw);
            lexpr *hit = lx_bin(p, LX_EQ, V(p, w->at), I(p, r * a->kernel[1] + s));
            ls_store(p, body, lp_buf(p, n->out[0]), dst,
                     post_apply(p, n, lx_select(p, hit, V(p, g), lx_float(p, 0)), dst), 0);
        }
}

void lower_maxpool(lprogram *p, const ir_node *n)
{
    if (vector_pool_ok(p, n)) {
        lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
        vwindow_loops(p, n, k, dims_of(p, n->out[0]), vmaxpool_body);
        return;
    }
    dims x = dims_of(p, n->in[0]), y = dims_of(p, n->out[0]);
    int bx = lp_buf(p, n->in[0]), by = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    window wv = pool_window(p, k, y);
    int m, at;
    window_argmax(p, &wv, &n->attr, x, bx, &m, &at);
    lexpr *out = at4(p, y, V(p, wv.i), V(p, wv.c), V(p, wv.oh), V(p, wv.ow));
    ls_store(p, wv.outer, by, out, post_apply(p, n, V(p, m), out), 0);
}

int maxpool_windows_disjoint(const ir_graph *g, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    (void)g;
    return a->stride[0] >= a->kernel[0] && a->stride[1] >= a->kernel[1] && !a->pad[0] &&
           !a->pad[1] && !a->pad[2] && !a->pad[3];
}

/* Disjoint windows without padding: each input element is written once,
 * dy where it is its window's first maximum and 0 elsewhere (rows and
 * columns no window covers too), so no zero fill and no scattered adds,
 * and the result can take an epilogue. */
static void maxpool_bwd_disjoint(lprogram *p, const ir_node *n)
{
    dims y = dims_of(p, n->in[0]), x = dims_of(p, n->in[1]);
    const ir_attrs *a = &n->attr;
    int bdy = lp_buf(p, n->in[0]), bx = lp_buf(p, n->in[1]), bdx = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    if (vector_pool_ok(p, n)) {
        vwindow_loops(p, n, k, y, vmaxpool_bwd_body);
    } else {
        window wv = pool_window(p, k, y);
        int m, at;
        window_argmax(p, &wv, a, x, bx, &m, &at);
        int r, s;
        /* the window again, now each element gets its value */
        lstmt *t = loop(p, wv.outer, "r", a->kernel[0], &r);
        t = loop(p, t, "s", a->kernel[1], &s);
        lexpr *ih = lx_madd(p, V(p, wv.oh), a->stride[0], V(p, r));
        lexpr *iw = lx_madd(p, V(p, wv.ow), a->stride[1], V(p, s));
        lexpr *g = lx_load(p, bdy, at4(p, y, V(p, wv.i), V(p, wv.c), V(p, wv.oh), V(p, wv.ow)));
        lexpr *hit = lx_bin(p, LX_EQ, lx_madd(p, ih, x.w, iw), V(p, at));
        lexpr *dst = at4(p, x, V(p, wv.i), V(p, wv.c), ih, iw);
        ls_store(p, t, bdx, dst, post_apply(p, n, lx_select(p, hit, g, lx_float(p, 0)), dst), 0);
    }
    /* elements between windows (stride > kernel) and past the last one */
    int64_t covered_h = (y.h - 1) * a->stride[0] + a->kernel[0];
    int64_t covered_w = (y.w - 1) * a->stride[1] + a->kernel[1];
    if (a->stride[0] == a->kernel[0] && a->stride[1] == a->kernel[1] && covered_h == x.h &&
        covered_w == x.w)
        return;
    int i, c, h, w;
    lstmt *b = loop_n_par(p, k->body, &i);
    b = loop(p, b, "c", x.c, &c);
    b = loop(p, b, "h", x.h, &h);
    b = loop(p, b, "w", x.w, &w);
    lexpr *out_h = lx_bin(p, LX_OR, lx_bin(p, LX_LE, I(p, covered_h), V(p, h)),
                          lx_bin(p, LX_LE, I(p, a->kernel[0]),
                                 lx_bin(p, LX_REM, V(p, h), I(p, a->stride[0]))));
    lexpr *out_w = lx_bin(p, LX_OR, lx_bin(p, LX_LE, I(p, covered_w), V(p, w)),
                          lx_bin(p, LX_LE, I(p, a->kernel[1]),
                                 lx_bin(p, LX_REM, V(p, w), I(p, a->stride[1]))));
    lstmt *gap = ls_if(p, b, lx_bin(p, LX_OR, out_h, out_w))->then_s;
    ls_store(p, gap, bdx, at4(p, x, V(p, i), V(p, c), V(p, h), V(p, w)), lx_float(p, 0), 0);
}

void lower_maxpool_bwd(lprogram *p, const ir_node *n)
{
    /* inputs: dy, x; output dx */
    if (maxpool_windows_disjoint(p->g, n)) {
        maxpool_bwd_disjoint(p, n);
        return;
    }
    dims y = dims_of(p, n->in[0]), x = dims_of(p, n->in[1]);
    int bdy = lp_buf(p, n->in[0]), bx = lp_buf(p, n->in[1]), bdx = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    zero_fill(p, k, bdx, x.c * x.h * x.w);
    window wv = pool_window(p, k, y);
    int m, at;
    window_argmax(p, &wv, &n->attr, x, bx, &m, &at);
    lstmt *hit = ls_if(p, wv.outer, lx_bin(p, LX_LE, I(p, 0), V(p, at)))->then_s;
    lexpr *dst = lx_add(p, lx_mul(p, lx_madd(p, V(p, wv.i), x.c, V(p, wv.c)), I(p, x.h * x.w)),
                        V(p, at));
    lexpr *g = lx_load(p, bdy, at4(p, y, V(p, wv.i), V(p, wv.c), V(p, wv.oh), V(p, wv.ow)));
    ls_store(p, hit, bdx, dst, g, 1);
}

void lower_avgpool(lprogram *p, const ir_node *n)
{
    dims x = dims_of(p, n->in[0]), y = dims_of(p, n->out[0]);
    int bx = lp_buf(p, n->in[0]), by = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    window wv = pool_window(p, k, y);
    int acc = lp_var(p, "acc", LT_FLOAT, 0);
    ls_set(p, wv.outer, acc, lx_float(p, 0));
    pool_taps(p, &wv, &n->attr, x);
    lexpr *v = lx_load(p, bx, at4(p, x, V(p, wv.i), V(p, wv.c), wv.ih, wv.iw));
    ls_set(p, wv.inner, acc, lx_add(p, V(p, acc), v));
    double inv = 1.0 / (n->attr.kernel[0] * n->attr.kernel[1]);
    lexpr *at = at4(p, y, V(p, wv.i), V(p, wv.c), V(p, wv.oh), V(p, wv.ow));
    ls_store(p, wv.outer, by, at, post_apply(p, n, lx_mul(p, V(p, acc), lx_float(p, inv)), at), 0);
}

void lower_avgpool_bwd(lprogram *p, const ir_node *n)
{
    /* input: dy; output dx */
    dims y = dims_of(p, n->in[0]), x = dims_of(p, n->out[0]);
    int bdy = lp_buf(p, n->in[0]), bdx = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    zero_fill(p, k, bdx, x.c * x.h * x.w);
    window wv = pool_window(p, k, y);
    int g = lp_var(p, "g", LT_FLOAT, 0);
    double inv = 1.0 / (n->attr.kernel[0] * n->attr.kernel[1]);
    lexpr *dy = lx_load(p, bdy, at4(p, y, V(p, wv.i), V(p, wv.c), V(p, wv.oh), V(p, wv.ow)));
    ls_set(p, wv.outer, g, lx_mul(p, dy, lx_float(p, inv)));
    pool_taps(p, &wv, &n->attr, x);
    ls_store(p, wv.inner, bdx, at4(p, x, V(p, wv.i), V(p, wv.c), wv.ih, wv.iw), V(p, g), 1);
}

/* ---- loss ------------------------------------------------------------------------------------ */

/* loss = mean over i < n of -log softmax(z_i)[label_i]; probs = softmax(z). */
void lower_softmax_xent(lprogram *p, const ir_node *n)
{
    int64_t classes = dims_of(p, n->in[0]).c;
    int bz = lp_buf(p, n->in[0]), bl = lp_buf(p, n->in[1]);
    int bloss = lp_buf(p, n->out[0]), bp = lp_buf(p, n->out[1]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int total = lp_var(p, "total", LT_FLOAT, 0);
    ls_set(p, k->body, total, lx_float(p, 0));
    int i, j;
    lstmt *row = loop_n(p, k->body, &i);
    int m = lp_var(p, "m", LT_FLOAT, 0), sum = lp_var(p, "sum", LT_FLOAT, 0);
    ls_set(p, row, m, lx_float(p, -INFINITY));
    lstmt *b = loop(p, row, "j", classes, &j);
    lexpr *z = lx_load(p, bz, lx_madd(p, V(p, i), classes, V(p, j)));
    ls_set(p, b, m, lx_select(p, lx_lt(p, V(p, m), z), z, V(p, m)));
    ls_set(p, row, sum, lx_float(p, 0));
    b = loop(p, row, "j", classes, &j);
    lexpr *at = lx_madd(p, V(p, i), classes, V(p, j));
    int e = lp_var(p, "e", LT_FLOAT, 0);
    ls_set(p, b, e, lx_un(p, LX_EXP, lx_sub(p, lx_load(p, bz, at), V(p, m))));
    ls_store(p, b, bp, at, V(p, e), 0);
    ls_set(p, b, sum, lx_add(p, V(p, sum), V(p, e)));
    b = loop(p, row, "j", classes, &j);
    at = lx_madd(p, V(p, i), classes, V(p, j));
    ls_store(p, b, bp, at, lx_div(p, lx_load(p, bp, at), V(p, sum)), 0);
    lexpr *zl = lx_load(p, bz, lx_madd(p, V(p, i), classes, label_of(p, bl, i, classes)));
    double eps = n->attr.alpha; /* label smoothing */
    if (eps > 0) {
        /* target (1 - eps) onehot + eps/K: loss = lse - (1 - eps) z_label - eps/K sum_j z_j */
        int zsum = lp_var(p, "zsum", LT_FLOAT, 0);
        ls_set(p, row, zsum, lx_float(p, 0));
        b = loop(p, row, "j", classes, &j);
        ls_set(p, b, zsum,
               lx_add(p, V(p, zsum), lx_load(p, bz, lx_madd(p, V(p, i), classes, V(p, j)))));
        zl = lx_add(p, lx_mul(p, lx_float(p, 1 - eps), zl),
                    lx_mul(p, lx_float(p, eps / (double)classes), V(p, zsum)));
    }
    lexpr *nll = lx_sub(p, lx_add(p, lx_un(p, LX_LOG, V(p, sum)), V(p, m)), zl);
    ls_set(p, row, total, lx_add(p, V(p, total), nll));
    ls_store(p, k->body, bloss, I(p, 0), lx_div(p, V(p, total), lx_un(p, LX_TOFLOAT, lx_n(p))),
             0);
}

/* dz = (probs - target) / n, target = (1 - eps) onehot(label) + eps / K */
void lower_softmax_xent_bwd(lprogram *p, const ir_node *n)
{
    int64_t classes = dims_of(p, n->in[0]).c;
    int bp = lp_buf(p, n->in[0]), bl = lp_buf(p, n->in[1]), bdz = lp_buf(p, n->out[0]);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    int inv = lp_var(p, "inv_n", LT_FLOAT, 0);
    ls_set(p, k->body, inv, lx_div(p, lx_float(p, 1), lx_un(p, LX_TOFLOAT, lx_n(p))));
    int i, j;
    lstmt *row = loop_n_par(p, k->body, &i);
    int lbl = lp_var(p, "label", LT_INT, 0);
    ls_set(p, row, lbl, label_of(p, bl, i, classes));
    lstmt *b = loop(p, row, "j", classes, &j);
    lexpr *at = lx_madd(p, V(p, i), classes, V(p, j));
    double eps = n->attr.alpha, off = eps / (double)classes;
    lexpr *hot = lx_select(p, lx_bin(p, LX_EQ, V(p, j), V(p, lbl)), lx_float(p, 1 - eps + off),
                           lx_float(p, off));
    ls_store(p, b, bdz, at, lx_mul(p, lx_sub(p, lx_load(p, bp, at), hot), V(p, inv)), 0);
}

/* ---- the pass -------------------------------------------------------------------------------- */

/* Handing a loop to the thread pool costs about a microsecond (waking the
 * workers, and the data then sits in another core's cache); a kernel
 * smaller than this (FLOPs, or elements written) runs on one thread.  Nor
 * does LLVM unroll or vectorize it (lkernel.small): the weight packing,
 * loss and bias-gradient kernels, unrolled, were 11% of LeNet-5's compile
 * time and nothing of its step. */
#define PARALLEL_MIN_WORK 65536

static void clear_parallel(lstmt *s)
{
    if (!s)
        return;
    switch (s->kind) {
    case LS_BLOCK:
        for (int i = 0; i < s->nitems; i++)
            clear_parallel(s->items[i]);
        break;
    case LS_FOR:
        s->flags &= ~LOOP_PARALLEL;
        clear_parallel(s->body);
        break;
    case LS_IF:
        clear_parallel(s->then_s);
        clear_parallel(s->else_s);
        break;
    default:
        break;
    }
}

static int64_t node_work(const ir_graph *g, const ir_node *n)
{
    if (op_table[n->op].flops) {
        int64_t f = op_table[n->op].flops(g, n);
        int batched = g->values[n->out[0]].batched;
        return f * (batched ? g->batch : 1);
    }
    int64_t elements = 0;
    for (int j = 0; j < n->nout; j++)
        elements += ir_shape_size(g->values[n->out[j]].shape);
    return elements;
}

lprogram *lower_graph(arena *a, const ir_graph *g, const target_desc *target)
{
    lprogram *p = lp_new(a, g);
    p->target = target;
    for (int i = 0; i < g->nnodes; i++) {
        int first = p->nkernels;
        if (!target || !schedule_lower(p, &g->nodes[i]))
            op_table[g->nodes[i].op].lower(p, &g->nodes[i]);
        if (node_work(g, &g->nodes[i]) < PARALLEL_MIN_WORK)
            for (int k = first; k < p->nkernels; k++) {
                clear_parallel(p->kernels[k].body);
                p->kernels[k].small = 1;
            }
    }
    return p;
}
