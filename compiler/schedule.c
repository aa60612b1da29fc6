/*
 * schedule.c — tiled, vectorized loop nests for the ops that dominate
 * training time: convolutions (forward, backward-data through the rewrite
 * of pack.c, backward-filter) and dense layers (forward, backward-data,
 * backward-weight), plus the packing kernels they read.
 *
 * Every one of them is the same register tile (register_tile): an output
 * block of `rows` x `cols` vectors of `lanes` floats lives in vector
 * registers across the whole reduction; each reduction step broadcasts one
 * scalar per row, loads one vector per column block, and does rows x cols
 * fused multiply-adds.  What differs between ops is only which tensor
 * gives the broadcast scalars, which gives the vectors, and where the
 * results go — the index functions of a tile_spec.
 *
 * Tile sizes come from the target description by one rule: use every
 * vector register but four for accumulators (28 of AVX-512's and NEON's
 * 32, 12 of AVX2's 16), as two column blocks when the output has them (two
 * vectors of weights per broadcast halve the broadcasts per FMA) and as
 * many rows as fit.  Zen 5 needs at least 8 independent accumulators to
 * keep its two FMA pipes busy (4-cycle latency); 28 leaves room.  Lanes
 * are the target's vector width, or the channel count when it is smaller.
 *
 * The tile is built with its row loop marked LOOP_UNROLL and its lane loop
 * LOOP_VECTOR; loopopt.c turns those into straight-line vector code and
 * LLVM keeps the accumulator array in registers.  Rows and column blocks
 * that do not divide evenly get a second tile of the remaining size.
 * Where a tile's rows are consecutive elements of its output (vectors of
 * output channels, rows of output columns, NCHW), each block is
 * transposed in registers (LS_TRANSPOSE) and stored a channel at a time;
 * the spatial weight gradient sums its lanes with LS_LANE_SUMS.
 */
#include "lower.h"

/* The index expressions of one use of the register tile. */
typedef struct tile_spec {
    const void *ctx;
    int a_buf;    /* the broadcast operand */
    int b_buf;    /* the vector operand (lane 0 at the index, lanes contiguous) */
    int lanes;
    int rows, cols;
    int nred;     /* reduction loops, outermost first */
    lexpr *red_extent[4];
    const char *red_name[4];
    /* index of the scalar for row m at the reduction point red[] */
    lexpr *(*a_index)(const void *ctx, lprogram *p, lexpr *m, const int *red);
    /* index of the vector of column block j */
    lexpr *(*b_index)(const void *ctx, lprogram *p, int j, const int *red);
    /* initial value of an accumulator (NULL: zero) */
    lexpr *(*init)(const void *ctx, lprogram *p, lexpr *m, int j, lexpr *v);
    /* store the finished accumulator of row m, block j, lane v */
    void (*store)(const void *ctx, lprogram *p, lstmt *body, lexpr *m, int j, lexpr *v,
                  lexpr *acc);
    /* optional: also sum the vectors of each column block over the
     * reduction into sum_buf at sum_index (a bias gradient alongside the
     * weight gradient: the same vectors, one add more per step) */
    int sum_buf;
    lexpr *(*sum_index)(const void *ctx, lprogram *p, int j, lexpr *v);
    int sum_resumes;  /* the sums start from what sum_index holds, not zero */
    /* store() writes rows m to consecutive elements: each column block is
     * transposed in registers and stored as `lanes` vectors over m */
    int transpose;
    int last_lanes;   /* lanes of the last column block where it is narrower
                       * (a dense layer's last vector and its tail in one
                       * tile), else 0; not with transpose */
} tile_spec;

/* Lanes of column block j of tile t. */
static int col_lanes(const tile_spec *t, int j)
{
    return j == t->cols - 1 && t->last_lanes ? t->last_lanes : t->lanes;
}

static lstmt *flagged_loop(lprogram *p, lstmt *parent, const char *name, int64_t extent, int flag,
                           int *var)
{
    lstmt *f = ls_for(p, parent, name, I(p, extent), var);
    f->flags |= flag;
    return f->body;
}

/* Whether a tile of rows x cols accumulators fits the vector registers with
 * its operands and `spare` registers more: each reduction step holds the
 * smaller side's operands (a spatial tile's rows weight broadcasts or cols
 * input vectors) while the other side's stream through one more register.
 * 4 x 7 = 28 accumulators plus 4 broadcasts and an input vector are 33 of
 * AVX-512's 32: LLVM spilled five accumulators inside the innermost loop. */
static int tile_fits(const lprogram *p, int64_t rows, int64_t cols, int spare)
{
    return rows * cols + (rows < cols ? rows : cols) + 1 + spare <= p->target->registers;
}

/* The innermost reduction loop of a tile is unrolled when it is this short
 * (a 3x3 convolution's column taps) and the tile leaves two registers for
 * the next tap's operands (LLVM loads them early; a 14 x 2 tile spilled
 * accumulators): no loop control between three bodies of FMAs, and each
 * tap's loads at constant offsets.  Measured on the 64-channel benchmark
 * convolution: forward 15.2-16.3 -> 13.9-14.4 ms,
 * backward-data 10% faster; ResNet-8 training 5%. */
#define UNROLL_REDUCTION_MAX 3

/* The results of a tile whose rows are consecutive elements of the output
 * (a channel-vector convolution tile: rows are output columns, lanes are
 * channels, NCHW keeps a channel's columns together): each column block
 * transposed in registers, then one vector of `rows` lanes per channel.
 * Stored as they come, each accumulator would be a 16-lane scatter; the
 * epilogue's operands (a residual, a mask) load contiguously here too. */
static void tile_store_transposed(lprogram *p, lstmt *parent, const tile_spec *t, int acc)
{
    int tr = lp_local_array(p, "tr", (int64_t)t->rows * t->lanes);
    for (int j = 0; j < t->cols; j++) {
        int l, u;
        ls_transpose(p, parent, tr, I(p, 0), acc, I(p, (int64_t)j * t->lanes), t->rows, t->lanes,
                     (int64_t)t->cols * t->lanes, t->rows);
        lstmt *lanes = flagged_loop(p, parent, "l", t->lanes, LOOP_UNROLL, &l);
        lstmt *cols = flagged_loop(p, lanes, "u", t->rows, LOOP_VECTOR, &u);
        t->store(t->ctx, p, cols, V(p, u), j, V(p, l),
                 lx_load(p, tr, lx_madd(p, V(p, l), t->rows, V(p, u))));
    }
}

/* An epilogue that reads tensors (a relu mask, a residual) misses the
 * cache on them and on its output lines (written long ago, or never) at
 * the end of every tile, and the core waits: the loads of the next tile's
 * reduction cannot start.  Prefetched before the reduction, the lines
 * arrive while it runs (the shortest, LeNet's, is hundreds of cycles).
 * Each vector's first and last element: both lines of an unaligned one.
 * Measured per kernel on ResNet-8 (8 rounds): the relu-masked
 * backward-data of the 16-channel layer 4664 -> 3988 kcycles, the 32- and
 * 64-channel ones -4%; prefetching the outputs of tiles without fused
 * operands (the forward convolutions) made those 3% slower, so they have
 * none. */
static void tile_prefetch(lprogram *p, lstmt *parent, const tile_spec *t)
{
    int outer = t->transpose ? t->lanes : t->rows;
    int inner = t->transpose ? t->rows : t->lanes, o;
    lstmt *epilogue = ls_block(p);
    lstmt *loop_o = ls_for(p, ls_block(p), "pf", I(p, outer), &o); /* placed below */
    for (int j = 0; j < t->cols; j++)
        for (int end = 0; end < 2; end++) {
            lexpr *in = I(p, end ? inner - 1 : 0);
            if (t->transpose)
                t->store(t->ctx, p, epilogue, in, j, V(p, o), lx_float(p, 0));
            else
                t->store(t->ctx, p, epilogue, V(p, o), j, in, lx_float(p, 0));
        }
    if (ls_prefetch_uses(p, NULL, epilogue, 0) == 0)
        return;
    /* a loop over the rows (or lanes), not unrolled: less LLVM IR to
     * compile (ResNet-8's 54 849 lines -> 53 963), the same speed */
    ls_prefetch_uses(p, loop_o->body, epilogue, 1);
    ls_append(p, parent, loop_o);
}

static void register_tile(lprogram *p, lstmt *parent, const tile_spec *t)
{
    int acc = lp_local_array(p, "acc", (int64_t)t->rows * t->cols * t->lanes);
    int sum = t->sum_buf >= 0 ? lp_local_array(p, "sum", (int64_t)t->cols * t->lanes) : -1;
    int m, v, red[4];
    for (int j = 0; j < t->cols && sum >= 0; j++) {
        lstmt *lane = flagged_loop(p, parent, "v", col_lanes(t, j), LOOP_VECTOR, &v);
        lexpr *start = t->sum_resumes ? lx_load(p, t->sum_buf, t->sum_index(t->ctx, p, j, V(p, v)))
                                      : lx_float(p, 0);
        ls_store(p, lane, sum, lx_madd(p, I(p, j), t->lanes, V(p, v)), start, 0);
    }
    /* acc = init */
    lstmt *rows = flagged_loop(p, parent, "m", t->rows, LOOP_UNROLL, &m);
    for (int j = 0; j < t->cols; j++) {
        lstmt *lane = flagged_loop(p, rows, "v", col_lanes(t, j), LOOP_VECTOR, &v);
        lexpr *at = lx_add(p, lx_mul(p, lx_add(p, lx_mul(p, V(p, m), I(p, t->cols)), I(p, j)),
                                     I(p, t->lanes)),
                           V(p, v));
        lexpr *init = t->init ? t->init(t->ctx, p, V(p, m), j, V(p, v)) : NULL;
        ls_store(p, lane, acc, at, init ? init : lx_float(p, 0), 0);
    }
    tile_prefetch(p, parent, t);
    /* the reduction: acc += a[m] * b[j] */
    lstmt *body = parent;
    for (int i = 0; i < t->nred; i++) {
        lstmt *f = ls_for(p, body, t->red_name[i], t->red_extent[i], &red[i]);
        if (i == t->nred - 1 && t->red_extent[i]->op == LX_INT &&
            t->red_extent[i]->i <= UNROLL_REDUCTION_MAX && tile_fits(p, t->rows, t->cols, 2))
            f->flags |= LOOP_UNROLL;
        body = f->body;
    }
    rows = flagged_loop(p, body, "m", t->rows, LOOP_UNROLL, &m);
    lexpr *a = lx_load(p, t->a_buf, t->a_index(t->ctx, p, V(p, m), red));
    for (int j = 0; j < t->cols; j++) {
        lstmt *lane = flagged_loop(p, rows, "v", col_lanes(t, j), LOOP_VECTOR, &v);
        lexpr *at = lx_add(p, lx_mul(p, lx_add(p, lx_mul(p, V(p, m), I(p, t->cols)), I(p, j)),
                                     I(p, t->lanes)),
                           V(p, v));
        lexpr *b = lx_load(p, t->b_buf, lx_add(p, t->b_index(t->ctx, p, j, red), V(p, v)));
        ls_store(p, lane, acc, at, lx_fma(p, a, b, lx_load(p, acc, at)), 0);
    }
    for (int j = 0; j < t->cols && sum >= 0; j++) {
        lstmt *lane = flagged_loop(p, body, "v", col_lanes(t, j), LOOP_VECTOR, &v);
        lexpr *at = lx_madd(p, I(p, j), t->lanes, V(p, v));
        lexpr *b = lx_load(p, t->b_buf, lx_add(p, t->b_index(t->ctx, p, j, red), V(p, v)));
        ls_store(p, lane, sum, at, lx_add(p, lx_load(p, sum, at), b), 0);
    }
    /* results out */
    if (t->transpose) {
        tile_store_transposed(p, parent, t, acc);
    } else {
        rows = flagged_loop(p, parent, "m", t->rows, LOOP_UNROLL, &m);
        for (int j = 0; j < t->cols; j++) {
            lstmt *lane = flagged_loop(p, rows, "v", col_lanes(t, j), LOOP_VECTOR, &v);
            lexpr *at = lx_add(p, lx_mul(p, lx_add(p, lx_mul(p, V(p, m), I(p, t->cols)), I(p, j)),
                                         I(p, t->lanes)),
                               V(p, v));
            t->store(t->ctx, p, lane, V(p, m), j, V(p, v), lx_load(p, acc, at));
        }
    }
    for (int j = 0; j < t->cols && sum >= 0; j++) {
        lstmt *lane = flagged_loop(p, parent, "v", col_lanes(t, j), LOOP_VECTOR, &v);
        ls_store(p, lane, t->sum_buf, t->sum_index(t->ctx, p, j, V(p, v)),
                 lx_load(p, sum, lx_madd(p, I(p, j), t->lanes, V(p, v))), 0);
    }
}

/* Accumulators available to a tile: all vector registers but four. */
static int tile_budget(const lprogram *p)
{
    return p->target->registers - 4;
}

/* ---- convolution (forward, and backward-data after pack.c) ------------------------ */

typedef struct conv_ctx {
    const ir_node *n;
    int bx, bw, bb, by;
    int64_t ct, hp, wp, kt, oh, ow, cg, kg;
    int R, S;
    int n_var, g_var, oh_var;
    lexpr *k0;      /* first output channel of the tile */
    lexpr *ow0;     /* first output column of the tile */
    int lanes;      /* lanes of this tile's blocks */
} conv_ctx;

static lexpr *conv_a(const void *vc, lprogram *p, lexpr *m, const int *red)
{
    const conv_ctx *c = vc;
    const ir_attrs *a = &c->n->attr;
    lexpr *ch = lx_madd(p, V(p, c->g_var), c->cg, V(p, red[0]));
    lexpr *row = lx_add(p, lx_mul(p, V(p, c->oh_var), I(p, a->stride[0])),
                        lx_mul(p, V(p, red[1]), I(p, a->dilation[0])));
    lexpr *col = lx_add(p, lx_mul(p, lx_add(p, c->ow0, m), I(p, a->stride[1])),
                        lx_mul(p, V(p, red[2]), I(p, a->dilation[1])));
    dims d = {c->ct, c->hp, c->wp}; /* x's buffer, with any border */
    return at4(p, d, V(p, c->n_var), ch, lx_add(p, row, I(p, a->in_pad[0])),
               lx_add(p, col, I(p, a->in_pad[1])));
}

/* Packed weights: the block of channel k0 + j*lanes, then [c][r][s][lanes]. */
static lexpr *conv_b(const void *vc, lprogram *p, int j, const int *red)
{
    const conv_ctx *c = vc;
    lexpr *block = lx_mul(p, lx_add(p, c->k0, I(p, (int64_t)j * c->lanes)),
                          I(p, c->cg * c->R * c->S));
    lexpr *tap = lx_madd(p, lx_madd(p, V(p, red[0]), c->R, V(p, red[1])), c->S, V(p, red[2]));
    return lx_add(p, block, lx_mul(p, tap, I(p, c->lanes)));
}

static lexpr *conv_init(const void *vc, lprogram *p, lexpr *m, int j, lexpr *v)
{
    const conv_ctx *c = vc;
    (void)m;
    if (c->bb < 0)
        return NULL;
    return lx_load(p, c->bb, lx_add(p, lx_add(p, c->k0, I(p, (int64_t)j * c->lanes)), v));
}

static void conv_store(const void *vc, lprogram *p, lstmt *body, lexpr *m, int j, lexpr *v,
                       lexpr *acc)
{
    const conv_ctx *c = vc;
    lexpr *k = lx_add(p, lx_add(p, c->k0, I(p, (int64_t)j * c->lanes)), v);
    dims d = {c->kt, c->oh, c->ow};
    lexpr *at = at4(p, d, V(p, c->n_var), k, V(p, c->oh_var), lx_add(p, c->ow0, m));
    post_addr post =
        post_at(p, c->n, d, V(p, c->n_var), k, V(p, c->oh_var), lx_add(p, c->ow0, m), at);
    ls_store(p, body, c->by, at, post_apply_at(p, c->n, acc, post), 0);
}

/* The register tiles of one output row `width` columns wide, t->cols
 * blocks each: as many tiles as the budget needs, as even as they can be
 * (16 columns as 8 + 8, not 14 + 2: two accumulators per block cannot
 * cover the FMA latency), each tile's first column put in *col0 before it
 * is built.  Tiles of 2 to `lanes` rows are transposed before their
 * stores (more rows than that: the padded block would be twice as wide,
 * no better than the scatters). */
static void row_of_tiles(lprogram *p, lstmt *parent, tile_spec *t, int64_t width, lexpr **col0)
{
    int rows = tile_budget(p) / t->cols, tv;
    if (rows > width)
        rows = (int)width;
    int64_t tiles = (width + rows - 1) / rows;
    rows = (int)((width + tiles - 1) / tiles);
    t->rows = rows;
    t->transpose = rows >= 2 && rows <= p->target->lanes;
    if (width / rows > 0) {
        lstmt *b = ls_for(p, parent, "owt", I(p, width / rows), &tv)->body;
        *col0 = lx_mul(p, V(p, tv), I(p, rows));
        register_tile(p, b, t);
    }
    if (width % rows) {
        t->rows = (int)(width % rows);
        t->transpose = t->rows >= 2;
        *col0 = I(p, width / rows * rows);
        register_tile(p, parent, t);
    }
}

/* The row tiles of one output row (oh_var) for blocks from k0. */
typedef void (*block_row_fn)(lprogram *p, lstmt *body, void *ctx, int oh_var, lexpr *k0,
                             int cols, int lanes);

/* Every block of `lanes` channels of kg (from base) over `rows` output
 * rows: pairs of full blocks (two vectors of weights per broadcast), the
 * odd full block, the channels left as a narrower vector. */
static void channel_blocks(lprogram *p, lstmt *parent, int64_t kg, int lanes, lexpr *base,
                           int64_t rows, block_row_fn row, void *ctx)
{
    int64_t full = kg / lanes, tail = kg % lanes;
    int cols = full >= 2 ? 2 : 1, kb, oh;
    if (full / cols > 0) {
        lstmt *kl = loop(p, parent, "kb", full / cols, &kb);
        kl = loop(p, kl, "oh", rows, &oh);
        row(p, kl, ctx, oh, lx_add(p, base, lx_mul(p, V(p, kb), I(p, (int64_t)cols * lanes))),
            cols, lanes);
    }
    if (full % cols) {
        lstmt *kl = loop(p, parent, "oh", rows, &oh);
        row(p, kl, ctx, oh, lx_add(p, base, I(p, (full - 1) * lanes)), 1, lanes);
    }
    if (tail) {
        lstmt *kl = loop(p, parent, "oh", rows, &oh);
        row(p, kl, ctx, oh, lx_add(p, base, I(p, full * lanes)), 1, (int)tail);
    }
}

static void conv_row(lprogram *p, lstmt *body, void *ctx, int oh_var, lexpr *k0, int cols,
                     int lanes)
{
    conv_ctx *c = ctx;
    c->oh_var = oh_var;
    c->k0 = k0;
    c->lanes = lanes;
    tile_spec t = {c, c->bx, c->bw, lanes, 0, cols, 3, {I(p, c->cg), I(p, c->R), I(p, c->S)},
                   {"c", "r", "s"}, conv_a, conv_b, conv_init, conv_store, -1, NULL, 0, 0, 0};
    row_of_tiles(p, body, &t, c->ow, &c->ow0);
}

static void lower_tconv_spatial(lprogram *p, const ir_node *n);

/* Fetches the `count` floats from buf[first], a cache line per iteration. */
static void prefetch_span(lprogram *p, lstmt *parent, int buf, lexpr *first, lexpr *count)
{
    int q;
    lexpr *lines =
        lx_div(p, lx_add(p, count, I(p, CACHE_LINE_FLOATS - 1)), I(p, CACHE_LINE_FLOATS));
    lstmt *b = ls_for(p, parent, "pf", lines, &q)->body;
    ls_prefetch(p, b, buf, lx_add(p, first, lx_mul(p, V(p, q), I(p, CACHE_LINE_FLOATS))), 0);
}

/* The pad node whose padding of each example tiled node n does itself
 * (pad_inlined) for its input `input`, or -1. */
static int own_pad(const lprogram *p, const ir_node *n, int input)
{
    int pad = p->g->values[n->in[input]].producer;
    if (pad < 0 || pad_inlined(p->g, &p->g->nodes[pad]) != (int)(n - p->g->nodes))
        return -1;
    return pad;
}

/* The loops of every form of tiled convolution n in kernel k: examples
 * in parallel (*n_var), and in each, groups (*g_var), whose body is
 * returned for the tiles.  Around the groups: example i of x padded first
 * where x is a pad this kernel does (pad_inlined), the next example's x
 * prefetched for a strided convolution, and the batch-norm sums of the
 * example's output after them where bnstats.c asked for them. */
static lstmt *example_loops(lprogram *p, const ir_node *n, lkernel *k, int *n_var, int *g_var)
{
    lstmt *ex = loop_n_par(p, k->body, n_var);
    int pad = own_pad(p, n, 0), x = n->in[0];
    if (pad >= 0) {
        pad_example(p, &p->g->nodes[pad], ex, V(p, *n_var));
        x = p->g->nodes[pad].in[0]; /* what the next example's pad will read */
    }
    if (!n->attr.phases && (n->attr.stride[0] > 1 || n->attr.stride[1] > 1)) {
        /* a strided convolution reads stride^2 input floats per output:
         * the next example's, all at once, while this one's tiles run
         * (ResNet-8 forward, kernels.py 7 rounds: c3a 1012 -> 920 us,
         * p3 366 -> 288, c2a 1124 -> 1082; stride-1 layers were slower
         * with it, c1a 1708 -> 1761) */
        int64_t per = ir_row_size(&p->g->values[x]);
        lexpr *next = lx_mul(p, lx_add(p, V(p, *n_var), I(p, 1)), I(p, per));
        prefetch_span(p, ex, lp_buf(p, x), next, I(p, per));
    }
    lstmt *groups = loop(p, ex, "g", n->attr.groups, g_var);
    if (n->attr.stats) /* appended after the group loop, which the caller fills */
        bn_example_stats(p, n, ex, *n_var);
    return groups;
}

static void lower_tconv(lprogram *p, const ir_node *n)
{
    if (n->attr.spatial || n->attr.phases) {
        lower_tconv_spatial(p, n);
        return;
    }
    const ir_attrs *a = &n->attr;
    const ir_value *x = &p->g->values[n->in[0]], *y = &p->g->values[n->out[0]];
    conv_ctx c = {n, lp_buf(p, n->in[0]), lp_buf(p, n->in[1]),
                  ir_nin_core(n) > 2 ? lp_buf(p, n->in[2]) : -1, lp_buf(p, n->out[0]),
                  x->shape.d[1], x->shape.d[2], x->shape.d[3], y->shape.d[1], y->shape.d[2],
                  y->shape.d[3], 0, 0, a->kernel[0], a->kernel[1], 0, 0, 0, NULL, NULL, 0};
    c.cg = c.ct / a->groups;
    c.kg = c.kt / a->groups;
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    k->tiled = 1;
    lstmt *b = example_loops(p, n, k, &c.n_var, &c.g_var);
    channel_blocks(p, b, c.kg, a->lanes, lx_mul(p, V(p, c.g_var), I(p, c.kg)), c.oh, conv_row, &c);
}

/* ---- convolution, vectorized over output columns ------------------------------------ */

/* For layers with few output channels (LeNet's 6, the backward-data of a
 * layer with few input channels), vectors over channels would be mostly
 * empty.  The spatial tile puts `lanes` consecutive output columns of one
 * output row in a vector instead (stride 1: they read consecutive input
 * columns), and holds rows = output channels x cols = output rows of them:
 * each reduction step (c, r, s) broadcasts one weight per channel and loads
 * one input row segment per output row.  Weights are packed as one block
 * per group ([c][r][s][kg]), so a channel's weight is at a constant offset
 * from the tap's. */
typedef struct sconv_ctx {
    const ir_node *n;
    int bx, bw, bb, by;
    int64_t ct, hp, wp, kt, oh, ow, cg, kg; /* oh, ow: the outputs the tiles cover */
    int R, S;
    int n_var, g_var;
    lexpr *k0, *oh0, *ow0;
    /* one phase of a strided backward-data (else the identity): output
     * (j, v) goes to row h0 + sh*j, column w0 + sw*v of the yh x yw output,
     * reads input row in_h + j + r, column in_w + v + s, and the phase's
     * weights start at w_base */
    int64_t yh, yw, in_h, in_w, w_base;
    int sh, sw, h0, w0;
    int lanes; /* channel-vector phases (cphase_row): this tile's lanes */
} sconv_ctx;

static lexpr *sconv_a(const void *vc, lprogram *p, lexpr *m, const int *red)
{
    const sconv_ctx *c = vc;
    lexpr *tap = lx_madd(p, lx_madd(p, V(p, red[0]), c->R, V(p, red[1])), c->S, V(p, red[2]));
    lexpr *group = lx_mul(p, V(p, c->g_var), I(p, c->kg * c->cg * c->R * c->S));
    lexpr *at = lx_add(p, group, lx_add(p, lx_mul(p, tap, I(p, c->kg)), lx_add(p, c->k0, m)));
    return lx_add(p, I(p, c->w_base), at);
}

static lexpr *sconv_b(const void *vc, lprogram *p, int j, const int *red)
{
    const sconv_ctx *c = vc;
    const ir_attrs *a = &c->n->attr;
    lexpr *ch = lx_madd(p, V(p, c->g_var), c->cg, V(p, red[0]));
    lexpr *row = lx_add(p, lx_add(p, c->oh0, I(p, j + c->in_h)),
                        lx_mul(p, V(p, red[1]), I(p, a->dilation[0])));
    lexpr *col = lx_add(p, lx_add(p, c->ow0, I(p, c->in_w)),
                        lx_mul(p, V(p, red[2]), I(p, a->dilation[1])));
    dims d = {c->ct, c->hp, c->wp};
    return at4(p, d, V(p, c->n_var), ch, row, col);
}

static lexpr *sconv_init(const void *vc, lprogram *p, lexpr *m, int j, lexpr *v)
{
    const sconv_ctx *c = vc;
    (void)j, (void)v;
    if (c->bb < 0)
        return NULL;
    return lx_load(p, c->bb, lx_add(p, lx_madd(p, V(p, c->g_var), c->kg, c->k0), m));
}

static void sconv_store(const void *vc, lprogram *p, lstmt *body, lexpr *m, int j, lexpr *v,
                        lexpr *acc)
{
    const sconv_ctx *c = vc;
    lexpr *k = lx_add(p, lx_madd(p, V(p, c->g_var), c->kg, c->k0), m);
    dims d = {c->kt, c->yh, c->yw};
    lexpr *row = lx_madd(p, lx_add(p, c->oh0, I(p, j)), c->sh, I(p, c->h0));
    lexpr *col = lx_madd(p, lx_add(p, c->ow0, v), c->sw, I(p, c->w0));
    lexpr *at = at4(p, d, V(p, c->n_var), k, row, col);
    post_addr post = post_at(p, c->n, d, V(p, c->n_var), k, row, col, at);
    ls_store(p, body, c->by, at, post_apply_at(p, c->n, acc, post), 0);
}

/* Channels per spatial tile.  Per reduction step a tile of rows x cols
 * accumulators does rows*cols FMAs for rows + cols loads (weight
 * broadcasts, input vectors): the tile with the most FMAs per load among
 * those that fit the register budget wins, with a channel count that
 * divides kg preferred (no narrower remainder tile).  (A cycle model with
 * FMA latency and remainder tiles chose smaller row counts that measured
 * slower on ResNet-8.) */
static int sconv_cols(const lprogram *p, int rows, int64_t oh)
{
    int64_t cols = 1;
    while (cols < oh && tile_fits(p, rows, cols + 1, 0))
        cols++;
    return (int)cols;
}

static int sconv_rows(const lprogram *p, int64_t kg, int64_t oh)
{
    int best = 1;
    double best_score = 0;
    for (int rows = 1; tile_fits(p, rows, 1, 0) && rows <= kg; rows++) {
        int64_t cols = sconv_cols(p, rows, oh);
        double score = (double)(rows * cols) / (double)(rows + cols);
        if (kg % rows)
            score *= 0.9;
        if (score > best_score + 1e-9) {
            best_score = score;
            best = rows;
        }
    }
    return best;
}

/* Tiles of `rows` channels from k0 over every output row and column. */
static void sconv_channels(lprogram *p, lstmt *parent, sconv_ctx *c, lexpr *k0, int rows)
{
    int lanes = p->target->lanes;
    int cols = sconv_cols(p, rows, c->oh);
    c->k0 = k0;
    tile_spec t = {c, c->bw, c->bx, lanes, rows, cols, 3,
                   {I(p, c->cg), I(p, c->R), I(p, c->S)}, {"c", "r", "s"},
                   sconv_a, sconv_b, sconv_init, sconv_store, -1, NULL, 0, 0, 0};
    /* output rows in groups as even as the register budget allows (32
     * rows in 6-row tiles: 6, 6, 5, 5, 5, 5, not 6 x 5 and a 2-row tile of
     * a third of the accumulators), and in each row the columns as whole
     * vectors (then the rest in a narrower one) */
    int64_t ntiles = (c->oh + cols - 1) / cols, big = (c->oh + ntiles - 1) / ntiles;
    int64_t nbig = c->oh - (big - 1) * ntiles;
    int oht, owt;
    for (int part = 0; part < 2; part++) {
        int64_t groups = part == 0 ? nbig : ntiles - nbig;
        if (!groups)
            continue;
        int64_t size = part == 0 ? big : big - 1;
        lstmt *rb = parent;
        lexpr *first = part == 0 ? I(p, 0) : I(p, nbig * big);
        if (groups > 1) {
            rb = ls_for(p, parent, "oht", I(p, groups), &oht)->body;
            c->oh0 = lx_madd(p, V(p, oht), size, first);
        } else {
            c->oh0 = first;
        }
        t.cols = (int)size;
        if (c->ow / lanes > 0) {
            lstmt *cb = ls_for(p, rb, "owt", I(p, c->ow / lanes), &owt)->body;
            c->ow0 = lx_mul(p, V(p, owt), I(p, lanes));
            t.lanes = lanes;
            register_tile(p, cb, &t);
        }
        if (c->ow % lanes) {
            c->ow0 = I(p, c->ow / lanes * lanes);
            t.lanes = (int)(c->ow % lanes);
            register_tile(p, rb, &t);
        }
    }
}

/* The spatial tiles of every output channel over c's outputs. */
static void sconv_all(lprogram *p, lstmt *parent, sconv_ctx *c)
{
    int rows = sconv_rows(p, c->kg, c->oh);
    int kb;
    if (c->kg / rows > 0) {
        lstmt *kl = loop(p, parent, "kb", c->kg / rows, &kb);
        sconv_channels(p, kl, c, lx_mul(p, V(p, kb), I(p, rows)), rows);
    }
    if (c->kg % rows)
        sconv_channels(p, parent, c, I(p, c->kg / rows * rows), (int)(c->kg % rows));
}

/* A phase no tap reaches (a 1x1 kernel with stride 2): zeros. */
static void sconv_zero_phase(lprogram *p, lstmt *parent, const sconv_ctx *c)
{
    int lanes = p->target->lanes, kk, j, wt, v;
    lstmt *b = loop(p, parent, "k", c->kg, &kk);
    b = loop(p, b, "j", c->oh, &j);
    lexpr *k = lx_madd(p, V(p, c->g_var), c->kg, V(p, kk));
    for (int part = 0; part < 2; part++) {
        int64_t width = part == 0 ? lanes : c->ow % lanes;
        if ((part == 0 && c->ow / lanes == 0) || width == 0)
            continue;
        lstmt *wb = b;
        lexpr *first = I(p, c->ow / lanes * lanes);
        if (part == 0) {
            wb = loop(p, b, "wt", c->ow / lanes, &wt);
            first = lx_mul(p, V(p, wt), I(p, lanes));
        }
        lstmt *vl = ls_for(p, wb, "v", I(p, width), &v);
        vl->flags |= LOOP_VECTOR;
        dims d = {c->kt, c->yh, c->yw};
        lexpr *row = lx_madd(p, V(p, j), c->sh, I(p, c->h0));
        lexpr *col = lx_madd(p, lx_add(p, first, V(p, v)), c->sw, I(p, c->w0));
        lexpr *at = at4(p, d, V(p, c->n_var), k, row, col);
        post_addr post = post_at(p, c->n, d, V(p, c->n_var), k, row, col, at);
        ls_store(p, vl->body, c->by, at, post_apply_at(p, c->n, lx_float(p, 0), post), 0);
    }
}

/* ---- a strided backward-data's phases, vectorized over channels ------------------------ */

/* Where a phase has fewer columns than a vector has lanes (8 for the
 * stride-2 backward-data of a 16-column layer) and dx has channels to
 * fill them, the tile of conv_row instead: rows = the phase's columns,
 * vectors over dx channels (the phase weights are packed [c][r][s][kg],
 * so a block of channels is contiguous), transposed and stored a channel
 * at a time, every sw-th column. */
static lexpr *cphase_a(const void *vc, lprogram *p, lexpr *m, const int *red)
{
    const sconv_ctx *c = vc;
    lexpr *ch = lx_madd(p, V(p, c->g_var), c->cg, V(p, red[0]));
    lexpr *row = lx_add(p, c->oh0, lx_add(p, V(p, red[1]), I(p, c->in_h)));
    lexpr *col = lx_add(p, lx_add(p, c->ow0, m), lx_add(p, V(p, red[2]), I(p, c->in_w)));
    dims d = {c->ct, c->hp, c->wp};
    return at4(p, d, V(p, c->n_var), ch, row, col);
}

static lexpr *cphase_b(const void *vc, lprogram *p, int j, const int *red)
{
    const sconv_ctx *c = vc;
    lexpr *tap = lx_madd(p, lx_madd(p, V(p, red[0]), c->R, V(p, red[1])), c->S, V(p, red[2]));
    lexpr *group = lx_mul(p, V(p, c->g_var), I(p, c->kg * c->cg * c->R * c->S));
    lexpr *k = lx_add(p, c->k0, I(p, (int64_t)j * c->lanes));
    return lx_add(p, I(p, c->w_base), lx_add(p, group, lx_add(p, lx_mul(p, tap, I(p, c->kg)), k)));
}

static lexpr *cphase_k(const sconv_ctx *c, lprogram *p, int j, lexpr *v)
{
    return lx_add(p, lx_madd(p, V(p, c->g_var), c->kg, c->k0), lx_madd(p, I(p, j), c->lanes, v));
}

static lexpr *cphase_init(const void *vc, lprogram *p, lexpr *m, int j, lexpr *v)
{
    const sconv_ctx *c = vc;
    (void)m;
    return c->bb < 0 ? NULL : lx_load(p, c->bb, cphase_k(c, p, j, v));
}

static void cphase_store(const void *vc, lprogram *p, lstmt *body, lexpr *m, int j, lexpr *v,
                         lexpr *acc)
{
    const sconv_ctx *c = vc;
    lexpr *k = cphase_k(c, p, j, v);
    dims d = {c->kt, c->yh, c->yw};
    lexpr *row = lx_madd(p, c->oh0, c->sh, I(p, c->h0));
    lexpr *col = lx_madd(p, lx_add(p, c->ow0, m), c->sw, I(p, c->w0));
    lexpr *at = at4(p, d, V(p, c->n_var), k, row, col);
    post_addr post = post_at(p, c->n, d, V(p, c->n_var), k, row, col, at);
    ls_store(p, body, c->by, at, post_apply_at(p, c->n, acc, post), 0);
}

static void cphase_row(lprogram *p, lstmt *body, void *ctx, int oh_var, lexpr *k0, int cols,
                       int lanes)
{
    sconv_ctx *c = ctx;
    c->oh0 = V(p, oh_var);
    c->k0 = k0;
    c->lanes = lanes;
    tile_spec t = {c, c->bx, c->bw, lanes, 0, cols, 3, {I(p, c->cg), I(p, c->R), I(p, c->S)},
                   {"c", "r", "s"}, cphase_a, cphase_b, cphase_init, cphase_store, -1, NULL, 0, 0,
                   0};
    row_of_tiles(p, body, &t, c->ow, &c->ow0);
}

static void lower_tconv_spatial(lprogram *p, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    const ir_value *x = &p->g->values[n->in[0]], *y = &p->g->values[n->out[0]];
    sconv_ctx c = {n, lp_buf(p, n->in[0]), lp_buf(p, n->in[1]),
                   ir_nin_core(n) > 2 ? lp_buf(p, n->in[2]) : -1, lp_buf(p, n->out[0]),
                   x->shape.d[1], x->shape.d[2], x->shape.d[3], y->shape.d[1], y->shape.d[2],
                   y->shape.d[3], 0, 0, a->kernel[0], a->kernel[1], 0, 0, NULL, NULL, NULL,
                   y->shape.d[2], y->shape.d[3], 0, 0, 0, 1, 1, 0, 0, 0};
    c.cg = c.ct / a->groups;
    c.kg = c.kt / a->groups;
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    k->tiled = 1;
    lstmt *b = example_loops(p, n, k, &c.n_var, &c.g_var);
    if (!a->phases) {
        sconv_all(p, b, &c);
        return;
    }
    c.sh = a->stride[0];
    for (int ph = 0; ph < a->stride[0]; ph++) {
        phase_axis rows = phase_axis_of(ph, a->stride[0], a->pad[0], a->kernel[0], c.yh,
                                        a->phase_pad[0]);
        if (rows.outs && !rows.taps) {
            /* rows no tap reaches (a 1x1 kernel with stride 2: every
             * other row): zeros a whole row at a time, not one column
             * phase after another, each a strided store that fills half
             * of every line it touches (ResNet-8's shortcuts' backward-data,
             * kcycles per call, 5 rounds: 1157 -> 1010 and 722 -> 651) */
            c.h0 = ph, c.w0 = 0;
            c.oh = rows.outs, c.ow = c.yw;
            c.sw = 1;
            sconv_zero_phase(p, b, &c);
            continue;
        }
        c.sw = a->stride[1];
        for (int pw = 0; pw < a->stride[1]; pw++) {
            phase_axis ah = rows;
            phase_axis aw = phase_axis_of(pw, a->stride[1], a->pad[1], a->kernel[1], c.yw,
                                          a->phase_pad[1]);
            if (!ah.outs || !aw.outs)
                continue;
            c.h0 = ph, c.w0 = pw;
            c.oh = ah.outs, c.ow = aw.outs;
            if (!ah.taps || !aw.taps) {
                sconv_zero_phase(p, b, &c);
                continue;
            }
            c.R = ah.taps, c.S = aw.taps;
            c.in_h = ah.shift, c.in_w = aw.shift;
            c.w_base = phase_pack_base(ph, pw, a->stride, a->pad, a->kernel[0], a->kernel[1],
                                       c.kt * c.cg);
            if (a->spatial)
                sconv_all(p, b, &c);
            else /* dx's channels of the group, within the group */
                channel_blocks(p, b, c.kg, a->lanes, I(p, 0), c.oh, cphase_row, &c);
        }
    }
}

/* ---- convolution backward-filter ---------------------------------------------------- */

typedef struct filter_ctx {
    const ir_node *n;
    int bdy, bx, bdw;
    int64_t ct, hp, wp, kt, oh, ow, cg, kg, taps;
    int R, S;
    int g_var;
    lexpr *k0;        /* first output channel of the tile */
    lexpr *c0;        /* first input channel (in the group) of the tile */
    int64_t t0;       /* first tap r*S + s of each channel in the tile */
    int64_t ntaps;    /* taps per channel in the tile */
    int lanes;
    int bdb;          /* where the bias gradient goes, or -1 */
    int bout;         /* where the weight gradient goes */
    lexpr *out_off;   /* first element of this part's weight gradient in bout */
    lexpr *bias_off;  /* and of its bias gradient in bdb */
    lexpr *first;     /* first example of the part */
    lexpr *red_n;     /* examples in the part */
    int64_t k_step, tap_step; /* element (k, tap) at out_off + k*k_step + tap*tap_step:
                               * [K][taps] in the gradient itself, [taps][K] in the
                               * parts, so that a vector of channels is one store */
    int resume;       /* tiles start from the sums in bout / bdb (example by example) */
} filter_ctx;

static lexpr *filter_bias_at(const void *vc, lprogram *p, int j, lexpr *v)
{
    const filter_ctx *c = vc;
    return lx_add(p, c->bias_off, lx_add(p, lx_add(p, c->k0, I(p, (int64_t)j * c->lanes)), v));
}

/* Row m of a tile is tap t0 + m % ntaps of channel c0 + m / ntaps: with m
 * unrolled to a constant, every row reads x at a constant offset from one
 * base (the tile's channel, the reduction's pixel), so the broadcasts need
 * no address registers of their own. */
static void filter_tap(const filter_ctx *c, lprogram *p, lexpr *m, lexpr **ch, lexpr **r,
                       lexpr **s)
{
    lexpr *t = lx_add(p, I(p, c->t0), lx_bin(p, LX_REM, m, I(p, c->ntaps)));
    *ch = lx_add(p, c->c0, lx_div(p, m, I(p, c->ntaps)));
    *r = lx_div(p, t, I(p, c->S));
    *s = lx_bin(p, LX_REM, t, I(p, c->S));
}

static lexpr *filter_a(const void *vc, lprogram *p, lexpr *m, const int *red)
{
    const filter_ctx *c = vc;
    const ir_attrs *a = &c->n->attr;
    lexpr *ch, *r, *s;
    filter_tap(c, p, m, &ch, &r, &s);
    lexpr *row = lx_add(p, lx_mul(p, V(p, red[1]), I(p, a->stride[0])),
                        lx_mul(p, r, I(p, a->dilation[0])));
    lexpr *col = lx_add(p, lx_mul(p, V(p, red[2]), I(p, a->stride[1])),
                        lx_mul(p, s, I(p, a->dilation[1])));
    dims d = {c->ct, c->hp, c->wp}; /* x's buffer, with any border */
    return at4(p, d, lx_add(p, c->first, V(p, red[0])), lx_madd(p, V(p, c->g_var), c->cg, ch),
               lx_add(p, row, I(p, a->x_pad[0])), lx_add(p, col, I(p, a->x_pad[1])));
}

/* dy in NHWC: the vector of `lanes` channels of block j at a pixel. */
static lexpr *filter_b(const void *vc, lprogram *p, int j, const int *red)
{
    const filter_ctx *c = vc;
    lexpr *pixel = lx_madd(p, lx_madd(p, lx_add(p, c->first, V(p, red[0])), c->oh, V(p, red[1])),
                           c->ow, V(p, red[2]));
    return lx_add(p, lx_mul(p, pixel, I(p, c->kt)), lx_add(p, c->k0, I(p, (int64_t)j * c->lanes)));
}

/* Where gradient element (k, tap) of this part goes in c->bout. */
static lexpr *filter_at(const filter_ctx *c, lprogram *p, lexpr *k, lexpr *tap)
{
    return lx_add(p, c->out_off, lx_add(p, lx_mul(p, k, I(p, c->k_step)),
                                        lx_mul(p, tap, I(p, c->tap_step))));
}

/* Where accumulator (m, j, v) of a tile is kept in c->bout. */
static lexpr *filter_acc_at(const filter_ctx *c, lprogram *p, lexpr *m, int j, lexpr *v)
{
    lexpr *k = lx_add(p, lx_add(p, c->k0, I(p, (int64_t)j * c->lanes)), v);
    lexpr *ch, *r, *s;
    filter_tap(c, p, m, &ch, &r, &s);
    return filter_at(c, p, k, lx_madd(p, lx_madd(p, ch, c->R, r), c->S, s));
}

static lexpr *filter_init(const void *vc, lprogram *p, lexpr *m, int j, lexpr *v)
{
    const filter_ctx *c = vc;
    return c->resume ? lx_load(p, c->bout, filter_acc_at(c, p, m, j, v)) : NULL;
}

static void filter_store(const void *vc, lprogram *p, lstmt *body, lexpr *m, int j, lexpr *v,
                         lexpr *acc)
{
    const filter_ctx *c = vc;
    ls_store(p, body, c->bout, filter_acc_at(c, p, m, j, v), acc, 0);
}

/* The weight gradients of output channels [k0, k0 + cols*lanes): tiles of
 * whole channels (as many as fit: 3 channels of a 3x3 kernel, 1 of a 5x5)
 * or, for kernels with more taps than fit, of runs of one channel's taps.
 * The first tile (channel 0, first taps) also sums dy: the bias gradient. */
static void filter_tiles(lprogram *p, lstmt *parent, filter_ctx *c, lexpr *k0, int cols,
                         int lanes)
{
    int rows_max = tile_budget(p) / cols;
    int64_t T = (int64_t)c->R * c->S;
    c->k0 = k0;
    c->lanes = lanes;
    tile_spec t = {c, c->bx, c->bdy, lanes, 0, cols, 3,
                   {c->red_n, I(p, c->oh), I(p, c->ow)}, {"i", "oh", "ow"},
                   filter_a, filter_b, filter_init, filter_store, -1, filter_bias_at, 0, 0, 0};
    tile_spec first = t;
    first.sum_buf = c->bdb;
    first.sum_resumes = c->resume;
    int cv;
    if (T <= rows_max) {
        int64_t cb = rows_max / T < c->cg ? rows_max / T : c->cg;
        c->t0 = 0;
        c->ntaps = T;
        t.rows = first.rows = (int)(cb * T);
        if (c->bdb < 0) { /* no bias: every tile alike */
            lstmt *b = loop_par(p, parent, "ct", c->cg / cb, &cv);
            c->c0 = lx_mul(p, V(p, cv), I(p, cb));
            register_tile(p, b, &t);
        } else {
            c->c0 = I(p, 0);
            register_tile(p, parent, &first);
            if (c->cg / cb > 1) {
                lstmt *b = loop_par(p, parent, "ct", c->cg / cb - 1, &cv);
                c->c0 = lx_mul(p, lx_add(p, V(p, cv), I(p, 1)), I(p, cb));
                register_tile(p, b, &t);
            }
        }
        if (c->cg % cb) {
            c->c0 = I(p, c->cg / cb * cb);
            t.rows = (int)(c->cg % cb * T);
            register_tile(p, parent, &t);
        }
        return;
    }
    for (int pass = 0; pass < 2; pass++) { /* channel 0, then the others in parallel */
        lstmt *b = parent;
        if (pass == 0) {
            c->c0 = I(p, 0);
        } else if (c->cg > 1) {
            b = loop_par(p, parent, "c", c->cg - 1, &cv);
            c->c0 = lx_add(p, V(p, cv), I(p, 1));
        } else {
            break;
        }
        for (int64_t t0 = 0; t0 < T; t0 += rows_max) {
            c->t0 = t0;
            c->ntaps = T - t0 < rows_max ? T - t0 : rows_max;
            tile_spec *ts = pass == 0 && t0 == 0 ? &first : &t;
            ts->rows = (int)c->ntaps;
            register_tile(p, b, ts);
        }
    }
}

/* The spatial form of the weight gradient (pack.c chooses it for stride-1
 * layers whose output rows fill the vectors at least as well as their
 * channels): dy stays NCHW and vectors run over output columns.  A tile
 * holds rk output channels x tc taps (a run of one input channel's taps)
 * of lane-wise partial sums; a reduction step loads rk vectors of dy and
 * tc of x (each tap a column shift) for rk*tc FMAs, and at the end each
 * partial vector is summed across its lanes.  dy needs no NHWC copy. */
typedef struct sfilter_tile {
    int rk, tc;       /* output channels x taps */
    lexpr *k0;        /* first output channel (in the group) */
    lexpr *ch;        /* input channel (in the group); NULL: the bias (x = 1) */
    int64_t t0;       /* first tap r*S + s */
    lexpr *i;         /* the example (in the part) the tile sums over */
} sfilter_tile;

/* dy[first + i, g*kg + k, oh, col], dy perhaps inside a zero border */
static lexpr *sfilter_dy(const filter_ctx *c, lprogram *p, lexpr *i, lexpr *k, lexpr *oh,
                         lexpr *col)
{
    dims d = {c->kt, c->oh, c->ow};
    return at4_in(p, d, c->n->attr.in_pad, lx_add(p, c->first, i),
                  lx_madd(p, V(p, c->g_var), c->kg, k), oh, col);
}

static void sfilter_emit(lprogram *p, lstmt *parent, const filter_ctx *c, const sfilter_tile *t)
{
    const ir_attrs *a = &c->n->attr;
    int lanes = p->target->lanes, m, v, oh, ov;
    int64_t width[2] = {c->ow / lanes ? lanes : 0, c->ow % lanes};
    int acc[2];
    for (int k = 0; k < 2; k++) {
        if (!width[k])
            continue;
        acc[k] = lp_local_array(p, k ? "acc_tail" : "acc", (int64_t)t->rk * t->tc * width[k]);
        lstmt *r = flagged_loop(p, parent, "m", t->rk, LOOP_UNROLL, &m);
        for (int j = 0; j < t->tc; j++) {
            lstmt *l = flagged_loop(p, r, "v", width[k], LOOP_VECTOR, &v);
            ls_store(p, l, acc[k], lx_madd(p, lx_madd(p, V(p, m), t->tc, I(p, j)), width[k], V(p, v)),
                     lx_float(p, 0), 0);
        }
        lstmt *b = loop(p, parent, "oh", c->oh, &oh);
        lexpr *col0 = I(p, c->ow / lanes * lanes);
        if (k == 0) {
            b = loop(p, b, "ov", c->ow / lanes, &ov);
            col0 = lx_mul(p, V(p, ov), I(p, lanes));
        }
        r = flagged_loop(p, b, "m", t->rk, LOOP_UNROLL, &m);
        for (int j = 0; j < t->tc; j++) {
            lstmt *l = flagged_loop(p, r, "v", width[k], LOOP_VECTOR, &v);
            lexpr *col = lx_add(p, col0, V(p, v));
            lexpr *dy = lx_load(p, c->bdy, sfilter_dy(c, p, t->i, lx_add(p, t->k0, V(p, m)),
                                                      V(p, oh), col));
            lexpr *x = lx_float(p, 1);
            if (t->ch) {
                int64_t tap = t->t0 + j, r0 = tap / c->S, s0 = tap % c->S;
                dims d = {c->ct, c->hp, c->wp};
                x = lx_load(p, c->bx,
                            at4(p, d, lx_add(p, c->first, t->i),
                                lx_madd(p, V(p, c->g_var), c->cg, t->ch),
                                lx_add(p, V(p, oh), I(p, r0 * a->dilation[0])),
                                lx_add(p, col, I(p, s0 * a->dilation[1]))));
            }
            lexpr *at = lx_madd(p, lx_madd(p, V(p, m), t->tc, I(p, j)), width[k], V(p, v));
            ls_store(p, l, acc[k], at, lx_fma(p, dy, x, lx_load(p, acc[k], at)), 0);
        }
    }
    /* the lanes summed: where a tap's rk sums go to consecutive floats (the
     * parts are [taps][K], the bias gradient [K]), all rk at once */
    if (!t->ch || c->k_step == 1) {
        lexpr *k0 = lx_madd(p, V(p, c->g_var), c->kg, t->k0);
        for (int j = 0; j < t->tc; j++) {
            lexpr *at = t->ch ? filter_at(c, p, k0, lx_madd(p, t->ch, c->R * c->S, I(p, t->t0 + j)))
                              : lx_add(p, c->bias_off, k0);
            for (int w = 0; w < 2; w++)
                if (width[w])
                    ls_lane_sums(p, parent, t->ch ? c->bout : c->bdb, at, acc[w],
                                 I(p, j * width[w]), t->rk, (int)width[w], t->tc * width[w]);
        }
        return;
    }
    /* else one at a time, in the order full vectors then the tail */
    lstmt *r = flagged_loop(p, parent, "m", t->rk, LOOP_UNROLL, &m);
    lexpr *k = lx_madd(p, V(p, c->g_var), c->kg, lx_add(p, t->k0, V(p, m)));
    for (int j = 0; j < t->tc; j++) {
        lexpr *sum = NULL;
        for (int w = 0; w < 2; w++) {
            if (!width[w])
                continue;
            lstmt *l = flagged_loop(p, r, "v", width[w], LOOP_VECTOR, &v);
            int part = lp_var(p, w ? "dot_tail" : "dot", LT_FLOAT, 0);
            lexpr *at = lx_madd(p, lx_madd(p, V(p, m), t->tc, I(p, j)), width[w], V(p, v));
            ls_set(p, l, part, lx_un(p, LX_HSUM, lx_load(p, acc[w], at)));
            sum = sum ? lx_add(p, sum, V(p, part)) : V(p, part);
        }
        if (!t->ch) {
            ls_store(p, r, c->bdb, lx_add(p, c->bias_off, k), sum, 1);
            continue;
        }
        lexpr *tap = lx_madd(p, t->ch, c->R * c->S, I(p, t->t0 + j));
        ls_store(p, r, c->bout, filter_at(c, p, k, tap), sum, 1);
    }
}

/* Cycles of one reduction step of an rk x tc tile, roughly: its FMAs, or
 * its loads where they are more (x vectors at a column shift mostly cross
 * a cache line: two loads). */
static int64_t sfilter_step_cost(int64_t rk, int64_t tc)
{
    int64_t fmas = rk * tc, loads = rk + 2 * tc;
    return fmas > loads ? fmas : loads;
}

/* Cycles of the lane sums of one tap of an rk-row tile: emit_lane_sums's
 * pairwise network over rk vectors (a combination is two shuffles and an
 * add: about 1.5 cycles).  Per example they are 5% of the benchmark
 * convolution's weight gradient in 5 x 5 tiles. */
static int64_t sfilter_sums_cost(const lprogram *p, int64_t rk)
{
    int64_t combinations = 0, n = rk;
    for (int w = p->target->lanes; w > 1; w /= 2) {
        n = (n + 1) / 2;
        combinations += n;
    }
    return 3 * combinations / 2;
}

/* The tile shape with the fewest cycles over all of a channel's tiles
 * (remainders included) among those that fit the registers: `steps`
 * reduction steps per example, then each tap's lane sums.  The 64-channel
 * benchmark layer: 8 x 3 tiles (eight outputs' sums in one network), not
 * 5 x 5 of the same FMAs and loads (its weight gradient 13.43 -> 13.14 ms,
 * kernels.py 5 rounds; 9 x 3 13.83, 6 x 4 13.85, 4 x 6 13.37, 12 x 2
 * 14.14). */
static void sfilter_shape(const lprogram *p, int64_t kg, int64_t T, int64_t steps, int *rk_out,
                          int *tc_out)
{
    int64_t best = -1;
    for (int64_t rk = 1; rk <= kg; rk++)
        for (int64_t tc = 1; tc <= T && tile_fits(p, rk, tc, 0); tc++) {
            int64_t cost = 0;
            for (int64_t k0 = 0; k0 < kg; k0 += rk)
                for (int64_t t0 = 0; t0 < T; t0 += tc) {
                    int64_t rows = kg - k0 < rk ? kg - k0 : rk, taps = T - t0 < tc ? T - t0 : tc;
                    cost += steps * sfilter_step_cost(rows, taps) +
                            taps * sfilter_sums_cost(p, rows);
                }
            /* equal cost: the bigger tile (fewer passes over dy and x) */
            if (best < 0 || cost < best ||
                (cost == best && rk * tc > (int64_t)*rk_out * *tc_out)) {
                best = cost;
                *rk_out = (int)rk;
                *tc_out = (int)tc;
            }
        }
}

/* The group's sums start at zero; each example's tiles add to them. */
static void zero_group_sums(lprogram *p, lstmt *parent, const filter_ctx *c)
{
    int m, tap;
    lstmt *z = loop(p, parent, "m", c->kg, &m);
    lexpr *k = lx_madd(p, V(p, c->g_var), c->kg, V(p, m));
    lstmt *zt = loop(p, z, "t", c->taps, &tap);
    ls_store(p, zt, c->bout, filter_at(c, p, k, V(p, tap)), lx_float(p, 0), 0);
    if (c->bdb >= 0)
        ls_store(p, z, c->bdb, lx_add(p, c->bias_off, k), lx_float(p, 0), 0);
}

/* Floats of example `next` that group c->g_var of weight gradient c reads
 * in the batched tensor v: its channels of an NCHW tensor, all of an NHWC
 * one (dy's copy) when there is one group, else none (0).  *first: where
 * they start. */
static int64_t example_share(lprogram *p, const filter_ctx *c, int v, lexpr *next, lexpr **first)
{
    const ir_value *val = &p->g->values[v];
    int groups = c->n->attr.groups;
    int64_t per = ir_row_size(val), share = per / groups;
    if (val->shape.ndim != 4 && groups > 1)
        return 0;
    *first = lx_madd(p, next, per, lx_mul(p, V(p, c->g_var), I(p, share)));
    return share;
}

/* Example `example` of weight gradient n's x (its input 1), padded into
 * parent before the example's tiles read it, where the kernel does the
 * padding (own_pad): the example is then in L2 for them (the benchmark
 * convolution's weight gradient under --keep-pads: a 0.65 ms pass over
 * memory before it, the padding now inside it). */
static void filter_pad_example(lprogram *p, const ir_node *n, lstmt *parent, lexpr *example)
{
    int pad = own_pad(p, n, 1);
    if (pad >= 0)
        pad_example(p, &p->g->nodes[pad], parent, example);
}

/* Fetches example `next`'s dy and x for weight gradient c while this
 * example's tiles run, where they are at most a quarter of L2: a small
 * layer's example (16 channels: 4.7 MFLOP over 150 KB) left its tiles
 * waiting on memory each time one began, while the 64-channel benchmark
 * layer's (75 MFLOP over 590 KB) ran 8% slower with the fetches (its
 * weight gradient 14.9 -> 16.2 ms, 4 alternating rounds).  The last
 * example fetches past the tensors, harmlessly (a prefetch never
 * faults). */
static void prefetch_next_example(lprogram *p, lstmt *parent, const filter_ctx *c, lexpr *next)
{
    int pad = own_pad(p, c->n, 1); /* x not yet padded: fetch what the pad reads */
    int v[2] = {c->n->in[0], pad >= 0 ? p->g->nodes[pad].in[0] : c->n->in[1]};
    lexpr *first[2] = {NULL, NULL};
    int64_t floats[2];
    for (int k = 0; k < 2; k++)
        floats[k] = example_share(p, c, v[k], next, &first[k]);
    if (4 * (floats[0] + floats[1]) > p->target->l2_bytes / 4)
        return;
    for (int k = 0; k < 2; k++)
        if (floats[k])
            prefetch_span(p, parent, lp_buf(p, v[k]), first[k], I(p, floats[k]));
}

/* Every output channel of the group: blocks of rk channels (then the
 * rest), each over every input channel's runs of tc taps, and the bias. */
static void sfilter_all(lprogram *p, lstmt *parent, filter_ctx *c)
{
    int rk = 1, tc = 1, kb, ch, kk, ex;
    int64_t T = (int64_t)c->R * c->S;
    int64_t steps = c->oh * ((c->ow + p->target->lanes - 1) / p->target->lanes);
    sfilter_shape(p, c->kg, T, steps, &rk, &tc);
    zero_group_sums(p, parent, c);
    /* Example by example: its dy rows for a block of output channels stay
     * in L1 while every input channel's tiles read them (over the part's
     * examples at once, every tile streamed them from L2 again). */
    lstmt *each = ls_for(p, parent, "i", c->red_n, &ex)->body;
    filter_pad_example(p, c->n, each, lx_add(p, c->first, V(p, ex)));
    /* and the next example's dy and x fetched at once while its tiles run
     * (ResNet-8's c1a 2517 -> 2202 us, c1b 2464 -> 2179, c2b 2285 -> 2150,
     * kernels.py, 5-7 rounds; spread over the input channels: about the
     * same) */
    prefetch_next_example(p, each, c, lx_add(p, lx_add(p, c->first, V(p, ex)), I(p, 1)));
    for (int part = 0; part < 2; part++) {
        int64_t blocks = part == 0 ? c->kg / rk : (c->kg % rk ? 1 : 0);
        if (!blocks)
            continue;
        lstmt *b = each;
        sfilter_tile t = {part == 0 ? rk : (int)(c->kg % rk), 0, NULL, NULL, 0, V(p, ex)};
        if (part == 0) {
            b = loop(p, each, "kb", blocks, &kb);
            t.k0 = lx_mul(p, V(p, kb), I(p, rk));
        } else {
            t.k0 = I(p, c->kg / rk * rk);
        }
        b = loop(p, b, "ch", c->cg, &ch);
        t.ch = V(p, ch);
        for (t.t0 = 0; t.t0 < T; t.t0 += tc) {
            t.tc = (int)(T - t.t0 < tc ? T - t.t0 : tc);
            sfilter_emit(p, b, c, &t);
        }
    }
    if (c->bdb < 0)
        return;
    int rows = tile_budget(p) < c->kg ? tile_budget(p) : (int)c->kg;
    for (int part = 0; part < 2; part++) {
        int64_t blocks = part == 0 ? c->kg / rows : (c->kg % rows ? 1 : 0);
        if (!blocks)
            continue;
        sfilter_tile t = {part == 0 ? rows : (int)(c->kg % rows), 1, NULL, NULL, 0, V(p, ex)};
        lstmt *b = each;
        if (part == 0) {
            b = loop(p, each, "kk", blocks, &kk);
            t.k0 = lx_mul(p, V(p, kk), I(p, rows));
        } else {
            t.k0 = I(p, c->kg / rows * rows);
        }
        sfilter_emit(p, b, c, &t);
    }
}

static void lower_tconv_bwd_filter(lprogram *p, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    const ir_value *x = &p->g->values[n->in[1]], *dw = &p->g->values[n->out[0]];
    filter_ctx c = {n, lp_buf(p, n->in[0]), lp_buf(p, n->in[1]), lp_buf(p, n->out[0]),
                    x->shape.d[1], x->shape.d[2], x->shape.d[3], dw->shape.d[0],
                    0, 0, 0, 0, 0, a->kernel[0], a->kernel[1], 0, NULL, NULL, 0, 0, 0, -1,
                    -1, NULL, NULL, NULL, NULL, 0, 0, 0};
    /* dy's rows and columns: of in[0] (spatial), or of the transposed input
     * (less the border either may be read inside) */
    const ir_node *t = a->spatial ? n : &p->g->nodes[p->g->values[n->in[0]].producer];
    const ir_value *dyv = &p->g->values[t->in[0]];
    c.oh = dyv->shape.d[2] - t->attr.in_pad[0] - t->attr.in_pad[2];
    c.ow = dyv->shape.d[3] - t->attr.in_pad[1] - t->attr.in_pad[3];
    c.cg = c.ct / a->groups;
    c.kg = c.kt / a->groups;
    c.taps = c.cg * c.R * c.S;
    int lanes = a->lanes;
    int64_t full = c.kg / lanes, tail = c.kg % lanes;
    int cols = full >= 2 ? 2 : 1;
    int split = a->split > 0 ? a->split : 1;
    int has_bias = n->nout > (a->split > 0 ? 2 : 1);
    int64_t wsize = c.kt * c.taps, per = wsize + (has_bias ? c.kt : 0);
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    k->tiled = 1;
    /* part q sums examples [q*n/split, (q+1)*n/split) */
    int q;
    lstmt *body = k->body;
    c.bdb = has_bias ? lp_buf(p, n->out[1]) : -1;
    c.out_off = c.bias_off = I(p, 0);
    c.k_step = c.taps;
    c.tap_step = 1;
    c.first = I(p, 0);
    c.red_n = lx_n(p);
    if (a->split > 0) {
        int parts = lp_buf(p, n->out[n->nout - 1]);
        body = loop_par(p, body, "part", split, &q);
        c.first = lx_div(p, lx_mul(p, V(p, q), lx_n(p)), I(p, split));
        c.red_n = lx_sub(p, lx_div(p, lx_mul(p, lx_add(p, V(p, q), I(p, 1)), lx_n(p)), I(p, split)),
                         c.first);
        c.bout = parts;
        c.out_off = lx_mul(p, V(p, q), I(p, per));
        c.k_step = 1;
        c.tap_step = c.kt;
        if (has_bias) {
            c.bdb = parts;
            c.bias_off = lx_add(p, c.out_off, I(p, wsize));
        }
    }
    lstmt *b = loop(p, body, "g", a->groups, &c.g_var);
    lexpr *gbase = lx_mul(p, V(p, c.g_var), I(p, c.kg));
    int kb;
    if (a->spatial) {
        sfilter_all(p, b, &c);
        full = tail = 0;
    } else {
        /* example by example (as the spatial form): the example's dy, in
         * L1, serves every input channel's tile, where each tile over the
         * part's examples streamed all of their dy from L2 or L3 again;
         * a tile resumes from the sums the last example left (the same
         * additions in the same order).  ResNet-8, kcycles per call (4
         * rounds): the stride-2 16->32 layer's 2517 -> 1993, 32->64
         * 2137 -> 1911, the 8x8 64-channel one unchanged. */
        int ex;
        zero_group_sums(p, b, &c);
        b = ls_for(p, b, "i", c.red_n, &ex)->body;
        filter_pad_example(p, n, b, lx_add(p, c.first, V(p, ex)));
        /* the next example's dy and x, fetched at once while this one's
         * tiles run: p3 241 -> 171 us, p2 404 -> 325, c3a 953 -> 918,
         * c2a 1001 -> 976 (ResNet-8, kernels.py, 5 rounds) */
        prefetch_next_example(p, b, &c, lx_add(p, lx_add(p, c.first, V(p, ex)), I(p, 1)));
        c.first = lx_add(p, c.first, V(p, ex));
        c.red_n = I(p, 1);
        c.resume = 1;
    }
    if (full / cols > 0) {
        lstmt *kl = loop(p, b, "kb", full / cols, &kb);
        lexpr *k0 = lx_add(p, gbase, lx_mul(p, V(p, kb), I(p, (int64_t)cols * lanes)));
        filter_tiles(p, kl, &c, k0, cols, lanes);
    }
    if (full % cols) {
        lexpr *k0 = lx_add(p, gbase, I(p, (full - 1) * lanes));
        filter_tiles(p, b, &c, k0, 1, lanes);
    }
    if (tail) {
        lexpr *k0 = lx_add(p, gbase, I(p, full * lanes));
        filter_tiles(p, b, &c, k0, 1, (int)tail);
    }
    if (a->split <= 0)
        return;
    /* the parts' sums, added in part order: the weight gradient's from
     * [taps][K] to [K][taps], then the bias's */
    int parts = lp_buf(p, n->out[n->nout - 1]), kv, tv, e;
    lstmt *l = loop(p, loop_par(p, k->body, "k", c.kt, &kv), "t", c.taps, &tv);
    lexpr *at = lx_madd(p, V(p, tv), c.kt, V(p, kv));
    lexpr *sum = lx_load(p, parts, at);
    for (int part = 1; part < split; part++)
        sum = lx_add(p, sum, lx_load(p, parts, lx_add(p, at, I(p, part * per))));
    ls_store(p, l, lp_buf(p, n->out[0]), lx_madd(p, V(p, kv), c.taps, V(p, tv)), sum, 0);
    if (!has_bias)
        return;
    l = loop_par(p, k->body, "e", c.kt, &e);
    sum = lx_load(p, parts, lx_add(p, V(p, e), I(p, wsize)));
    for (int part = 1; part < split; part++)
        sum = lx_add(p, sum, lx_load(p, parts, lx_add(p, V(p, e), I(p, part * per + wsize))));
    ls_store(p, l, lp_buf(p, n->out[1]), V(p, e), sum, 0);
}

/* ---- dense ----------------------------------------------------------------------------- */

/* The three products of a dense layer are one shape of tile: rows broadcast
 * one operand at (row, reduction), columns load `lanes` contiguous floats of
 * the other at (reduction, column), the result is [rows][columns]. */
typedef struct gemm_ctx {
    const ir_node *n;
    int a_buf, b_buf, out_buf, bias_buf;
    int64_t a_row, a_red;       /* a at row*a_row + red*a_red */
    int64_t b_red;              /* b at red*b_red + column; packed: column*b_red + red*lanes */
    int packed;                 /* b is dense's packed weights */
    int64_t out_row;            /* out at row*out_row + column */
    lexpr *row0, *col0;
    int lanes;
    int last_lanes;             /* the tile's last column block's lanes, if narrower (a
                                 * packed block of them is [red][last_lanes]), else 0 */
    int last_j;                 /* that block */
} gemm_ctx;

static lexpr *gemm_a(const void *vc, lprogram *p, lexpr *m, const int *red)
{
    const gemm_ctx *c = vc;
    return lx_add(p, lx_mul(p, lx_add(p, c->row0, m), I(p, c->a_row)),
                  lx_mul(p, V(p, red[0]), I(p, c->a_red)));
}

static lexpr *gemm_b(const void *vc, lprogram *p, int j, const int *red)
{
    const gemm_ctx *c = vc;
    lexpr *col = lx_add(p, c->col0, I(p, (int64_t)j * c->lanes));
    int width = c->last_lanes && j == c->last_j ? c->last_lanes : c->lanes;
    if (c->packed) /* the block starting at column col, then [red][width] */
        return lx_add(p, lx_mul(p, col, I(p, c->b_red)), lx_mul(p, V(p, red[0]), I(p, width)));
    return lx_add(p, lx_mul(p, V(p, red[0]), I(p, c->b_red)), col);
}

static lexpr *gemm_init(const void *vc, lprogram *p, lexpr *m, int j, lexpr *v)
{
    const gemm_ctx *c = vc;
    (void)m;
    if (c->bias_buf < 0)
        return NULL;
    return lx_load(p, c->bias_buf, lx_add(p, lx_add(p, c->col0, I(p, (int64_t)j * c->lanes)), v));
}

static void gemm_store(const void *vc, lprogram *p, lstmt *body, lexpr *m, int j, lexpr *v,
                       lexpr *acc)
{
    const gemm_ctx *c = vc;
    lexpr *at = lx_add(p, lx_mul(p, lx_add(p, c->row0, m), I(p, c->out_row)),
                       lx_add(p, lx_add(p, c->col0, I(p, (int64_t)j * c->lanes)), v));
    ls_store(p, body, c->out_buf, at, post_apply(p, c->n, acc, at), 0);
}

/* Tiles over rows [0, nrows) (a constant, or the batch n when nrows < 0) and
 * columns [0, ncols) in blocks of `lanes`, reducing over [0, nred) (or n). */
static void gemm(lprogram *p, lstmt *parent, gemm_ctx *c, int64_t nrows, int64_t ncols,
                 int64_t nred, int lanes)
{
    int64_t full = ncols / lanes, tail = ncols % lanes;
    int cols = full >= 2 ? 2 : 1;
    int rows = tile_budget(p) / cols;
    if (nrows > 0 && rows > nrows)
        rows = (int)nrows;
    lexpr *red = nred < 0 ? lx_n(p) : I(p, nred);
    lexpr *rows_e = nrows < 0 ? lx_n(p) : I(p, nrows);
    /* blocks of `cols` vectors, then the odd vector, then the tail; the
     * odd vector and the tail as one block of two where there are both
     * (LeNet-5's 120 units: 3 x 32, then 16 + 8): a tile less to compile
     * per layer, and one step of broadcasts feeds both */
    int merge = cols == 2 && full % cols == 1 && tail;
    struct {
        int64_t first, count;
        int cols, lanes, last_lanes;
    } parts[3] = {{0, full / cols, cols, lanes, 0},
                  {full / cols * cols * lanes, merge ? 1 : full % cols, merge ? 2 : 1, lanes,
                   merge ? (int)tail : 0},
                  {full * lanes, tail && !merge ? 1 : 0, 1, (int)tail, 0}};
    for (int part = 0; part < 3; part++) {
        if (!parts[part].count)
            continue;
        int cb, rt, rr;
        lstmt *b = loop_par(p, parent, "cb", parts[part].count, &cb);
        c->col0 = lx_add(p, I(p, parts[part].first),
                         lx_mul(p, V(p, cb), I(p, (int64_t)parts[part].cols * parts[part].lanes)));
        c->lanes = parts[part].lanes;
        c->last_lanes = parts[part].last_lanes;
        c->last_j = parts[part].cols - 1;
        tile_spec t = {c, c->a_buf, c->b_buf, c->lanes, rows, parts[part].cols, 1, {red},
                       {"red"}, gemm_a, gemm_b, gemm_init, gemm_store, -1, NULL, 0, 0,
                       parts[part].last_lanes};
        lstmt *tb = ls_for(p, b, "rt", lx_div(p, rows_e, I(p, rows)), &rt)->body;
        c->row0 = lx_mul(p, V(p, rt), I(p, rows));
        register_tile(p, tb, &t);
        /* the rows left, one at a time */
        tile_spec one = t;
        one.rows = 1;
        lstmt *rb = ls_for(p, b, "rr", lx_bin(p, LX_REM, rows_e, I(p, rows)), &rr)->body;
        c->row0 = lx_add(p, lx_mul(p, lx_div(p, rows_e, I(p, rows)), I(p, rows)), V(p, rr));
        register_tile(p, rb, &one);
    }
}

/* y[i][o] = b[o] + sum_f x[i][f] W[o][f], W packed [o block][f][lanes]. */
static void lower_tdense(lprogram *p, const ir_node *n)
{
    int64_t f = dims_of(p, n->in[0]).c, units = dims_of(p, n->out[0]).c;
    gemm_ctx c = {n, lp_buf(p, n->in[0]), lp_buf(p, n->in[1]), lp_buf(p, n->out[0]),
                  ir_nin_core(n) > 2 ? lp_buf(p, n->in[2]) : -1, f, 1, f, 1, units, NULL, NULL, 0,
                  0, 0};
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    k->tiled = 1;
    gemm(p, k->body, &c, -1, units, f, n->attr.lanes);
}

/* A dense layer at a batch of a few examples: y[i][o] = b[o] + W[o] . x[i],
 * `rows` outputs at a time, each a vector of lane-wise partial sums over
 * the row of W (contiguous) and x, reduced at the end.  No packing. */
static void dense_dot_rows(lprogram *p, lstmt *parent, const ir_node *n, lexpr *o0, int rows,
                           int i)
{
    int64_t f = dims_of(p, n->in[0]).c, units = dims_of(p, n->out[0]).c;
    int lanes = n->attr.lanes, bx = lp_buf(p, n->in[0]), bw = lp_buf(p, n->in[1]);
    int bb = ir_nin_core(n) > 2 ? lp_buf(p, n->in[2]) : -1, by = lp_buf(p, n->out[0]);
    int64_t width[2] = {f / lanes ? lanes : 0, f % lanes};
    int acc[2], m, v, fb;
    for (int k = 0; k < 2; k++) {
        if (!width[k])
            continue;
        acc[k] = lp_local_array(p, k ? "acc_tail" : "acc", rows * width[k]);
        lstmt *r = flagged_loop(p, parent, "m", rows, LOOP_UNROLL, &m);
        lstmt *l = flagged_loop(p, r, "v", width[k], LOOP_VECTOR, &v);
        ls_store(p, l, acc[k], lx_madd(p, V(p, m), width[k], V(p, v)), lx_float(p, 0), 0);
        lstmt *body = parent;
        lexpr *first = I(p, f / lanes * lanes);
        if (k == 0) {
            body = ls_for(p, parent, "fb", I(p, f / lanes), &fb)->body;
            first = lx_mul(p, V(p, fb), I(p, lanes));
        }
        r = flagged_loop(p, body, "m", rows, LOOP_UNROLL, &m);
        l = flagged_loop(p, r, "v", width[k], LOOP_VECTOR, &v);
        lexpr *col = lx_add(p, first, V(p, v));
        lexpr *wv = lx_load(p, bw, lx_add(p, lx_mul(p, lx_add(p, o0, V(p, m)), I(p, f)), col));
        lexpr *xv = lx_load(p, bx, lx_madd(p, V(p, i), f, col));
        lexpr *at = lx_madd(p, V(p, m), width[k], V(p, v));
        ls_store(p, l, acc[k], at, lx_fma(p, wv, xv, lx_load(p, acc[k], at)), 0);
    }
    lstmt *r = flagged_loop(p, parent, "m", rows, LOOP_UNROLL, &m);
    lexpr *o = lx_add(p, o0, V(p, m));
    lexpr *sum = bb >= 0 ? lx_load(p, bb, o) : lx_float(p, 0);
    for (int k = 0; k < 2; k++) {
        if (!width[k])
            continue;
        /* a vector loop around the reduction, so it sees the vectors */
        lstmt *l = flagged_loop(p, r, "v", width[k], LOOP_VECTOR, &v);
        int part = lp_var(p, k ? "dot_tail" : "dot", LT_FLOAT, 0);
        ls_set(p, l, part, lx_un(p, LX_HSUM, lx_load(p, acc[k], lx_madd(p, V(p, m), width[k], V(p, v)))));
        sum = lx_add(p, sum, V(p, part));
    }
    lexpr *at = lx_madd(p, V(p, i), units, o);
    ls_store(p, r, by, at, post_apply(p, n, sum, at), 0);
}

static void lower_dense_dot(lprogram *p, const ir_node *n)
{
    int64_t units = dims_of(p, n->out[0]).c;
    int rows = 8, ob, i;
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    k->tiled = 1;
    if (units / rows > 0) {
        lstmt *b = loop_par(p, k->body, "ob", units / rows, &ob);
        b = loop_n(p, b, &i);
        dense_dot_rows(p, b, n, lx_mul(p, V(p, ob), I(p, rows)), rows, i);
    }
    if (units % rows) {
        lstmt *b = loop_n(p, k->body, &i);
        dense_dot_rows(p, b, n, I(p, units / rows * rows), (int)(units % rows), i);
    }
}

/* dx[i][f] = sum_o dy[i][o] W[o][f]: W rows are contiguous in f. */
static int lower_dense_bwd_data_tiled(lprogram *p, const ir_node *n)
{
    int64_t units = dims_of(p, n->in[0]).c, f = dims_of(p, n->out[0]).c;
    int lanes = f < p->target->lanes ? (int)f : p->target->lanes;
    gemm_ctx c = {n, lp_buf(p, n->in[0]), lp_buf(p, n->in[1]), lp_buf(p, n->out[0]), -1, units, 1,
                  f, 0, f, NULL, NULL, 0, 0, 0};
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    k->tiled = 1;
    gemm(p, k->body, &c, -1, f, units, lanes);
    return 1;
}

/* dW[o][f] = sum_i dy[i][o] x[i][f]: x rows are contiguous in f. */
static int lower_dense_bwd_weight_tiled(lprogram *p, const ir_node *n)
{
    int64_t units = dims_of(p, n->in[0]).c, f = dims_of(p, n->in[1]).c;
    int lanes = f < p->target->lanes ? (int)f : p->target->lanes;
    gemm_ctx c = {n, lp_buf(p, n->in[0]), lp_buf(p, n->in[1]), lp_buf(p, n->out[0]), -1, 1, units,
                  f, 0, f, NULL, NULL, 0, 0, 0};
    lkernel *k = lp_kernel(p, n->name, (int)(n - p->g->nodes));
    k->tiled = 1;
    gemm(p, k->body, &c, units, f, -1, lanes);
    return 1;
}

int schedule_lower(lprogram *p, const ir_node *n)
{
    switch (n->op) {
    case OP_TCONV:
        lower_tconv(p, n);
        return 1;
    case OP_TCONV_BWD_FILTER:
        lower_tconv_bwd_filter(p, n);
        return 1;
    case OP_TDENSE:
        lower_tdense(p, n);
        return 1;
    case OP_DENSE:
        if (n->attr.lanes <= 0)
            return 0;
        lower_dense_dot(p, n);
        return 1;
    case OP_DENSE_BWD_DATA:
        return lower_dense_bwd_data_tiled(p, n);
    case OP_DENSE_BWD_WEIGHT:
        return lower_dense_bwd_weight_tiled(p, n);
    default:
        return 0;
    }
}
