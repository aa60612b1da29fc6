/*
 * pack.c — rewriting convolutions and dense layers into the forms the
 * tiled kernels take (run at -O1 and up, after autodiff, before memory
 * planning).
 *
 * The tiled kernels (schedule.c) hold a tile of outputs in vector
 * registers: a vector of `lanes` output channels times a few output pixels
 * (or batch rows).  For every input value they broadcast one scalar and
 * multiply it by a vector of weights, so the weights must be contiguous
 * across output channels and the input must need no bounds checks:
 *
 *  - conv2d(x, W)        -> conv2d_tiled(pad(x), pack_weights(W))
 *  - conv2d_bwd_data(dy, W) -> conv2d_tiled(pad(dy dilated by the stride),
 *                              pack_weights(W flipped, in/out swapped)):
 *    the gradient of a convolution with respect to its input is a
 *    stride-1 convolution of the stride-dilated, padded output gradient
 *    with the spatially flipped weights; for a strided convolution, most of
 *    the dilated input is zeros, so it is computed phase by phase instead
 *    (phase_axis_of: each output phase a correlation of the undilated dy
 *    with the taps that reach it);
 *  - conv2d_bwd_filter(dy, x) (and the layer's bias_bwd) ->
 *    conv2d_bwd_filter_tiled(transpose_nhwc(dy), pad(x)): a tile of
 *    weight gradients for `lanes` output channels reads dy with channels
 *    contiguous;
 *  - dense(x, W)         -> dense_tiled(x, pack_weights(W)).
 *
 * Packed weights keep PyTorch's layout in the parameter array; packing is
 * a small kernel run each step (the weights change every step).  Layers
 * with fewer than 4 output channels per group (depthwise convolutions)
 * keep their plain loops.  The rewrite only changes how values are
 * computed, never which: every test compares -O0 and -O2.
 *
 * After fusion, graph_absorb_pads removes the pad copies it can: a batch
 * norm writes its output (or input gradient) straight inside the zero
 * border a convolution needs, and the tensor's other readers are told
 * where it sits (the *_pad borders of ir_attrs).
 */
#include <string.h>

#include "cnnc.h"

int pad_inlined(const ir_graph *g, const ir_node *n)
{
    if (n->op != OP_PAD || n->attr.stride[0] != 1 || n->attr.stride[1] != 1)
        return -1;
    for (int j = (int)(n - g->nodes) + 1; j < g->nnodes; j++) {
        const ir_node *m = &g->nodes[j];
        for (int k = 0; k < m->nin; k++)
            if (m->in[k] == n->out[0]) {
                int conv = m->op == OP_TCONV && k == 0 && !m->attr.phases;
                int filter = m->op == OP_TCONV_BWD_FILTER && k == 1 && m->attr.groups == 1;
                return conv || filter ? j : -1;
            }
    }
    return -1;
}

int64_t pack_offset(int64_t k, int64_t c, int64_t r, int64_t s, int64_t kg, int64_t cg, int64_t R,
                    int64_t S, int lanes)
{
    int64_t g = k / kg, kin = k % kg, block = kin / lanes * lanes;
    int64_t width = kg - block < lanes ? kg - block : lanes;
    return (g * kg + block) * cg * R * S + ((c * R + r) * S + s) * width + kin - block;
}

phase_axis phase_axis_of(int phase, int stride, int pad, int k, int64_t out, int64_t pad_lo)
{
    phase_axis a = {(phase + pad) % stride, 0, 0, 0};
    if (a.first < k)
        a.taps = (k - a.first + stride - 1) / stride;
    if (phase < out)
        a.outs = (out - phase + stride - 1) / stride;
    /* output j, tap r = first + stride*t reads dy index j + (phase + pad - r)/stride;
     * in reverse tap order t' = taps-1-t that is j + e0 - (taps-1) + t' */
    int64_t e0 = (phase + pad - a.first) / stride;
    a.shift = e0 - (a.taps - 1) + pad_lo;
    return a;
}

void phase_padding(int stride, int pad, int k, int64_t out, int64_t in, int64_t *lo, int64_t *hi)
{
    *lo = *hi = 0;
    for (int ph = 0; ph < stride; ph++) {
        phase_axis a = phase_axis_of(ph, stride, pad, k, out, 0);
        if (!a.taps || !a.outs)
            continue;
        if (-a.shift > *lo)
            *lo = -a.shift;
        int64_t last = a.outs - 1 + a.shift + a.taps - 1; /* highest dy index read */
        if (last - (in - 1) > *hi)
            *hi = last - (in - 1);
    }
}

int64_t phase_pack_base(int ph, int pw, const int stride[2], const int pad[2], int R, int S,
                        int64_t per_tap)
{
    int64_t base = 0;
    for (int qh = 0; qh < stride[0]; qh++)
        for (int qw = 0; qw < stride[1]; qw++) {
            if (qh == ph && qw == pw)
                return base;
            base += per_tap * phase_axis_of(qh, stride[0], pad[0], R, 1, 0).taps *
                    phase_axis_of(qw, stride[1], pad[1], S, 1, 0).taps;
        }
    return base;
}

/* A new node computing one value; returns the value. */
static int aux_node(ir_graph *g, op_kind op, const ir_node *at, const char *suffix, int input,
                    ir_shape shape, int batched, ir_attrs attr)
{
    int node = ir_add_node(g, op, arena_printf(g->a, "%s.%s", at->name, suffix), at->loc,
                           at->layer);
    g->nodes[node].attr = attr;
    ir_node_input(g, node, input);
    int v = ir_add_value(g, g->nodes[node].name, VAL_ACT, DT_F32, shape);
    g->values[v].batched = batched;
    ir_node_output(g, node, v);
    return v;
}

typedef struct rewriter {
    ir_graph *g;
    int lanes;
    int *before;     /* node index -> first of its inserted nodes, chained by next */
    int *next;
    int count;       /* nodes before the rewrite */
} rewriter;

/* Schedule node `added` to run just before node `at`. */
static void run_before(rewriter *w, int at, int added)
{
    w->next[added] = -1;
    if (w->before[at] < 0) {
        w->before[at] = added;
        return;
    }
    int i = w->before[at];
    while (w->next[i] >= 0)
        i = w->next[i];
    w->next[i] = added;
}

/* pad(x): zeros around, and (zero insertion) `dilate - 1` zeros between
 * rows and columns.  Returns the padded value, scheduled before node at;
 * x itself when there is nothing to add (the phases of a strided 1x1
 * convolution's input gradient: ResNet-8's p2 and p3 copied their output
 * gradients, 0.4% of its train step). */
static int pad_value(rewriter *w, int at, int x, const int pad[4], const int dilate[2])
{
    ir_graph *g = w->g;
    if (!pad[0] && !pad[1] && !pad[2] && !pad[3] && dilate[0] == 1 && dilate[1] == 1)
        return x;
    const ir_value *xv = &g->values[x];
    int64_t h = (xv->shape.d[2] - 1) * dilate[0] + 1, wd = (xv->shape.d[3] - 1) * dilate[1] + 1;
    ir_attrs a = {0};
    memcpy(a.pad, pad, sizeof a.pad);
    a.stride[0] = dilate[0], a.stride[1] = dilate[1];
    ir_shape s = ir_shape4(xv->shape.d[0], xv->shape.d[1], h + pad[0] + pad[2],
                           wd + pad[1] + pad[3]);
    int v = aux_node(g, OP_PAD, &g->nodes[at], "pad", x, s, 1, a);
    run_before(w, at, g->values[v].producer);
    return v;
}

static int pack_weights(rewriter *w, int at, int weights, int64_t kt, int64_t cg, int R, int S,
                        int groups, int lanes, int mode)
{
    ir_graph *g = w->g;
    ir_attrs a = {0};
    a.filters = (int)kt, a.units = (int)cg, a.kernel[0] = R, a.kernel[1] = S;
    a.groups = groups, a.lanes = lanes, a.mode = mode;
    ir_shape s = {1, {kt * cg * R * S, 1, 1, 1}};
    int v = aux_node(g, OP_PACK_WEIGHTS, &g->nodes[at], mode == PACK_FLIPPED ? "wflip" : "wpack",
                     weights, s, 0, a);
    run_before(w, at, g->values[v].producer);
    return v;
}

static int lanes_for(const rewriter *w, int64_t per_group)
{
    return per_group < w->lanes ? (int)per_group : w->lanes;
}

/* Fraction of vector lanes doing work when `count` elements are split in
 * vectors of `lanes` (a narrower last vector counted as a whole one). */
static double lane_use(int64_t count, int lanes)
{
    return (double)count / (double)(((count + lanes - 1) / lanes) * lanes);
}

/* Vectors over output columns (schedule.c's spatial tile) instead of over
 * output channels: for stride 1, when they fill more lanes. */
static int spatial_pays(const rewriter *w, int64_t channels, int64_t width, const int stride[2])
{
    return stride[0] == 1 && stride[1] == 1 &&
           lane_use(width, w->lanes) >= lane_use(channels, w->lanes);
}

static void rewrite_conv(rewriter *w, int i)
{
    ir_node *n = &w->g->nodes[i];
    int64_t kg = n->attr.filters / n->attr.groups;
    int spatial = spatial_pays(w, kg, w->g->values[n->out[0]].shape.d[3], n->attr.stride);
    if (kg < 4 && !spatial)
        return;
    int no_dilate[2] = {1, 1};
    int x = n->in[0];
    if (n->attr.pad[0] || n->attr.pad[1] || n->attr.pad[2] || n->attr.pad[3])
        x = pad_value(w, i, x, w->g->nodes[i].attr.pad, no_dilate);
    n = &w->g->nodes[i];
    const ir_value *wv = &w->g->values[n->in[1]];
    int lanes = spatial ? (int)kg : lanes_for(w, kg);
    int packed = pack_weights(w, i, n->in[1], wv->shape.d[0], wv->shape.d[1], n->attr.kernel[0],
                              n->attr.kernel[1], n->attr.groups, lanes, PACK_FORWARD);
    n = &w->g->nodes[i];
    n->op = OP_TCONV;
    n->in[0] = x;
    n->in[1] = packed;
    memset(n->attr.pad, 0, sizeof n->attr.pad);
    n->attr.lanes = lanes;
    n->attr.spatial = spatial;
}

/* Strided, undilated: dx phase by phase (phase_axis_of), each a stride-1
 * correlation of dy (padded, not dilated) with the taps of the phase, in
 * spatial tiles (or, for phases narrower than dx's channels fill, tiles
 * over channels); 1/stride^2 of the work of the dilated form, which
 * multiplies zeros. */
static int rewrite_conv_bwd_data_phases(rewriter *w, int i)
{
    ir_graph *g = w->g;
    ir_node *n = &g->nodes[i];
    const ir_attrs *a = &n->attr;
    const ir_value *dy = &g->values[n->in[0]], *dx = &g->values[n->out[0]];
    if (a->stride[0] * a->stride[1] == 1 || a->dilation[0] != 1 || a->dilation[1] != 1 ||
        a->stride[0] > 4 || a->stride[1] > 4)
        return 0;
    int64_t cg = dx->shape.d[1] / a->groups, kg = dy->shape.d[1] / a->groups;
    int64_t lo[2], hi[2];
    for (int ax = 0; ax < 2; ax++)
        phase_padding(a->stride[ax], a->pad[ax], a->kernel[ax], dx->shape.d[2 + ax],
                      dy->shape.d[2 + ax], &lo[ax], &hi[ax]);
    int pad[4] = {(int)lo[0], (int)lo[1], (int)hi[0], (int)hi[1]}, one[2] = {1, 1};
    int padded = pad_value(w, i, n->in[0], pad, one);
    n = &g->nodes[i];
    int packed = pack_weights(w, i, n->in[1], dx->shape.d[1], kg, n->attr.kernel[0],
                              n->attr.kernel[1], n->attr.groups, (int)cg, PACK_PHASES);
    ir_node *pk = &g->nodes[g->values[packed].producer];
    n = &g->nodes[i];
    memcpy(pk->attr.stride, n->attr.stride, sizeof pk->attr.stride);
    memcpy(pk->attr.pad, n->attr.pad, sizeof pk->attr.pad);
    n->op = OP_TCONV;
    n->in[0] = padded;
    n->in[1] = packed;
    n->attr.pad[2] = n->attr.pad[3] = 0; /* pad[0..1]: the forward's, for the phases */
    n->attr.phase_pad[0] = (int)lo[0];
    n->attr.phase_pad[1] = (int)lo[1];
    n->attr.filters = (int)dx->shape.d[1];
    n->attr.bias = 0;
    /* vectors over a phase's columns, or over dx's channels where those
     * fill more lanes (a 16-column layer's stride-2 phases are 8 wide) */
    int64_t phase_w = (dx->shape.d[3] + a->stride[1] - 1) / a->stride[1];
    int spatial = lane_use(phase_w, w->lanes) >= lane_use(cg, w->lanes);
    n->attr.lanes = spatial ? (int)cg : lanes_for(w, cg);
    n->attr.spatial = spatial;
    n->attr.phases = 1;
    return 1;
}

/* dx = conv(pad(dilate(dy)), flip(W)): stride 1, the forward dilation. */
static void rewrite_conv_bwd_data(rewriter *w, int i)
{
    if (rewrite_conv_bwd_data_phases(w, i))
        return;
    ir_graph *g = w->g;
    ir_node *n = &g->nodes[i];
    const ir_attrs *a = &n->attr;
    const ir_value *dy = &g->values[n->in[0]], *dx = &g->values[n->out[0]];
    int64_t cg = dx->shape.d[1] / a->groups, kg = dy->shape.d[1] / a->groups;
    int one[2] = {1, 1};
    int spatial = spatial_pays(w, cg, dx->shape.d[3], one);
    if (cg < 4 && !spatial)
        return;
    int pad[4];
    pad[0] = (a->kernel[0] - 1) * a->dilation[0] - a->pad[0];
    pad[1] = (a->kernel[1] - 1) * a->dilation[1] - a->pad[1];
    int64_t dh = (dy->shape.d[2] - 1) * a->stride[0] + 1, dw = (dy->shape.d[3] - 1) * a->stride[1] + 1;
    pad[2] = (int)(dx->shape.d[2] + (int64_t)(a->kernel[0] - 1) * a->dilation[0] - pad[0] - dh);
    pad[3] = (int)(dx->shape.d[3] + (int64_t)(a->kernel[1] - 1) * a->dilation[1] - pad[1] - dw);
    if (pad[0] < 0 || pad[1] < 0 || pad[2] < 0 || pad[3] < 0)
        return; /* padding beyond the kernel: the plain loops handle it */
    int stride[2] = {a->stride[0], a->stride[1]};
    int padded = pad_value(w, i, n->in[0], pad, stride);
    n = &g->nodes[i];
    int lanes = spatial ? (int)cg : lanes_for(w, cg);
    int packed = pack_weights(w, i, n->in[1], dx->shape.d[1], kg, n->attr.kernel[0],
                              n->attr.kernel[1], n->attr.groups, lanes, PACK_FLIPPED);
    n = &g->nodes[i];
    n->op = OP_TCONV;
    n->in[0] = padded;
    n->in[1] = packed;
    memset(n->attr.pad, 0, sizeof n->attr.pad);
    n->attr.stride[0] = n->attr.stride[1] = 1;
    n->attr.filters = (int)dx->shape.d[1];
    n->attr.bias = 0;
    n->attr.lanes = lanes;
    n->attr.spatial = spatial;
}

/* dW from transpose_nhwc(dy) and pad(x); the layer's bias gradient (a
 * bias_bwd of the same dy) becomes a second output. */
static void rewrite_conv_bwd_filter(rewriter *w, int i, char *dead)
{
    ir_graph *g = w->g;
    ir_node *n = &g->nodes[i];
    const ir_value *dy = &g->values[n->in[0]];
    int64_t kg = dy->shape.d[1] / n->attr.groups;
    /* vectors over dy's columns (schedule.c's spatial form: no NHWC copy of
     * dy) where they fill the lanes at least as well as its channels, for
     * layers of a vector of channels or more; x is then read at column
     * shifts of whole vectors, so stride 1 only.  Measured since the
     * spatial form sums example by example: the 64-channel benchmark
     * convolution's weight gradient at 82% of peak; ResNet-8's 16-channel
     * layers in it 5-8% more images/s for the whole train step than in the
     * channel form's 27 x 1 tiles (4 alternating rounds; before, the
     * spatial form was 3% slower for them). */
    int spatial = kg >= w->lanes && spatial_pays(w, kg, dy->shape.d[3], n->attr.stride);
    if (kg < 4 && !spatial)
        return;
    int dyv = n->in[0], xv = n->in[1];
    int no_dilate[2] = {1, 1};
    if (n->attr.pad[0] || n->attr.pad[1] || n->attr.pad[2] || n->attr.pad[3])
        xv = pad_value(w, i, xv, g->nodes[i].attr.pad, no_dilate);
    int t = dyv;
    if (!spatial) {
        ir_attrs ta = {0};
        ir_shape ts = {2, {dy->shape.d[0], ir_row_size(dy), 1, 1}};
        t = aux_node(g, OP_TRANSPOSE_NHWC, &g->nodes[i], "dy_nhwc", dyv, ts, 1, ta);
        run_before(w, i, g->values[t].producer);
    }
    n = &g->nodes[i];
    n->op = OP_TCONV_BWD_FILTER;
    n->attr.spatial = spatial;
    n->in[0] = t;
    n->in[1] = xv;
    memset(n->attr.pad, 0, sizeof n->attr.pad);
    n->attr.lanes = lanes_for(w, kg);
    for (int j = 0; j < w->count; j++) {
        ir_node *b = &g->nodes[j];
        if (b->op == OP_BIAS_BWD && b->in[0] == dyv && b->layer == n->layer && !dead[j]) {
            ir_node_output(g, i, b->out[0]);
            dead[j] = 1;
        }
    }
    /* The batch in FILTER_SPLIT parts, each part's sums in a scratch buffer
     * (its last output), added in order at the end: parallel even for a
     * layer with one tile, and the same result for any thread count. */
    n = &g->nodes[i];
    int64_t per = ir_shape_size(g->values[n->out[0]].shape) +
                  (n->nout > 1 ? ir_shape_size(g->values[n->out[1]].shape) : 0);
    ir_shape ss = {1, {FILTER_SPLIT * per, 1, 1, 1}};
    int scratch = ir_add_value(g, arena_printf(g->a, "%s.parts", n->name), VAL_ACT, DT_F32, ss);
    ir_node_output(g, i, scratch);
    g->nodes[i].attr.split = FILTER_SPLIT;
}

/* dense(x, W) -> dense_tiled(x, pack_weights(W)); for a batch of a few
 * examples, packing the weights on every call would cost more than the
 * layer: it stays a dense node, lowered as dot products of W's rows
 * (schedule.c), marked by its lanes. */
static void rewrite_dense(rewriter *w, int i)
{
    ir_node *n = &w->g->nodes[i];
    if (w->g->batch <= DENSE_DOT_BATCH) {
        n->attr.lanes = w->lanes;
        return;
    }
    const ir_value *wv = &w->g->values[n->in[1]];
    int lanes = lanes_for(w, wv->shape.d[0]);
    int packed = pack_weights(w, i, n->in[1], wv->shape.d[0], wv->shape.d[1], 1, 1, 1, lanes,
                              PACK_FORWARD);
    n = &w->g->nodes[i];
    n->op = OP_TDENSE;
    n->in[1] = packed;
    n->attr.lanes = lanes;
}

/* Where node j would be told that it reads value v inside a zero border,
 * or NULL where its kernel cannot: the NHWC copy of a weight gradient's dy
 * (in_pad), the spatial weight gradient's dy (in_pad), the channel-form
 * weight gradient's x (x_pad), a channel-form convolution's x (in_pad:
 * ResNet-8's 1x1 strided shortcuts), and the operand of a fused add or
 * relu mask of a convolution, batch norm or add (add_pad, mask_pad). */
static int *border_slot(ir_node *j, int v)
{
    int uses = 0;
    for (int k = 0; k < j->nin; k++)
        uses += j->in[k] == v;
    if (uses != 1)
        return NULL;
    switch (j->op) {
    case OP_TRANSPOSE_NHWC:
        return j->attr.in_pad;
    case OP_TCONV_BWD_FILTER:
        if (j->attr.spatial)
            return j->in[0] == v ? j->attr.in_pad : NULL;
        return j->in[1] == v ? j->attr.x_pad : NULL;
    default:
        break;
    }
    if (j->op == OP_TCONV || j->op == OP_BATCHNORM || j->op == OP_ADD) {
        if ((j->attr.post & POST_ADD) && ir_add_operand(j) == v)
            return j->attr.add_pad;
        if ((j->attr.post & POST_MASK) && ir_mask_operand(j) == v)
            return j->attr.mask_pad;
    }
    if (j->op == OP_TCONV && !j->attr.spatial && !j->attr.phases && j->in[0] == v)
        return j->attr.in_pad;
    return NULL;
}

static int same_pad(const ir_node *a, const ir_node *b)
{
    return a->op == OP_PAD && b->op == OP_PAD && a->in[0] == b->in[0] &&
           !memcmp(a->attr.pad, b->attr.pad, sizeof a->attr.pad) &&
           a->attr.stride[0] == 1 && a->attr.stride[1] == 1 && b->attr.stride[0] == 1 &&
           b->attr.stride[1] == 1;
}

/* Node twin, a pad that same_pad says computes what pad does, goes: its
 * readers read pad's output, which then lives until the last of them. */
static void drop_twin(ir_graph *g, char *dead, const ir_node *pad, int twin)
{
    int was = g->nodes[twin].out[0];
    for (int t = 0; t < g->nnodes; t++)
        for (int k = 0; k < g->nodes[t].nin; k++)
            if (g->nodes[t].in[k] == was)
                g->nodes[t].in[k] = pad->out[0];
    g->values[was].producer = -1;
    dead[twin] = 1;
}

/* A batch norm's output (forward: what a convolution pads for its input
 * and its weight gradient) or input gradient (backward: what the
 * convolution's backward-data pads) is written by the batch norm's kernel
 * straight inside the zero border the pad would have added (out_pad), and
 * the pads of it go: a pass over the tensor and a copy of it less per pad.
 * A second pad of the same value with the same border (the weight
 * gradient's, in the backward pass) reads the same buffer.  Only where
 * every other reader of the value can read it inside the border
 * (border_slot).  Runs after fusion: a batch norm's relu and residual add
 * are its epilogue by then, so it writes what the convolution reads.
 * ResNet-8's train step: 18 pads go, 2 stay (the input's, for the stem
 * and its weight gradient; pad_value dropped 2 more that added nothing);
 * 1 thread +5%, 2 threads +3% images/s (see the commit). */
void graph_absorb_pads(ir_graph *g, FILE *report)
{
    if (g->nnodes <= 0)
        return;
    char *dead = arena_alloc(g->a, (size_t)g->nnodes);
    /* A value padded twice the same way (for a convolution and for its
     * weight gradient: the network's input, here) is padded once. */
    for (int i = 0; i < g->nnodes; i++)
        for (int j = i + 1; j < g->nnodes && !dead[i]; j++)
            if (!dead[j] && same_pad(&g->nodes[i], &g->nodes[j]) &&
                g->values[g->nodes[i].in[0]].producer < 0)
                drop_twin(g, dead, &g->nodes[i], j);
    for (int i = 0; i < g->nnodes; i++) {
        ir_node *pad = &g->nodes[i];
        if (dead[i] || pad->op != OP_PAD || pad->attr.stride[0] != 1 || pad->attr.stride[1] != 1)
            continue;
        int v = pad->in[0], b = g->values[v].producer;
        if (b < 0 || g->nodes[b].out[0] != v || g->values[v].alias >= 0 || v == g->logits ||
            v == g->loss || (g->nodes[b].op != OP_BATCHNORM_BWD && g->nodes[b].op != OP_BATCHNORM))
            continue;
        int ok = 1;
        for (int u = 0; u < g->nvalues && ok; u++)
            ok = g->values[u].alias != v;
        for (int j = 0; j < g->nnodes && ok; j++)
            for (int k = 0; k < g->nodes[j].nin && ok; k++)
                if (j != i && !dead[j] && g->nodes[j].in[k] == v)
                    ok = same_pad(pad, &g->nodes[j]) || border_slot(&g->nodes[j], v) != NULL;
        if (!ok)
            continue;
        int padded = pad->out[0];
        for (int j = 0; j < g->nnodes; j++) {
            if (j == i || dead[j])
                continue;
            if (same_pad(pad, &g->nodes[j])) { /* the same pad again: read this one */
                drop_twin(g, dead, pad, j);
                continue;
            }
            int *slot = border_slot(&g->nodes[j], v);
            for (int k = 0; slot && k < g->nodes[j].nin; k++)
                if (g->nodes[j].in[k] == v) {
                    g->nodes[j].in[k] = padded;
                    memcpy(slot, pad->attr.pad, sizeof pad->attr.pad);
                }
        }
        g->nodes[b].out[0] = padded;
        memcpy(g->nodes[b].attr.out_pad, pad->attr.pad, sizeof pad->attr.pad);
        g->values[padded].producer = b;
        g->values[v].producer = -1;
        dead[i] = 1;
        if (report)
            fprintf(report, "cnnc: %s: %s (pad) taken over by %s (%s): written inside its border\n",
                    g->mode == GRAPH_TRAIN ? "train" : "infer", pad->name, g->nodes[b].name,
                    op_name(g->nodes[b].op));
    }
    /* drop the pads, keeping order; producers and nforward follow */
    int *map = arena_alloc(g->a, sizeof *map * (size_t)g->nnodes);
    int kept = 0, forward = 0;
    for (int i = 0; i < g->nnodes; i++) {
        map[i] = -1;
        if (dead[i])
            continue;
        map[i] = kept;
        g->nodes[kept++] = g->nodes[i];
        forward += i < g->nforward;
    }
    for (int v = 0; v < g->nvalues; v++)
        if (g->values[v].producer >= 0)
            g->values[v].producer = map[g->values[v].producer];
    g->nnodes = kept;
    g->nforward = forward;
}

void graph_prepare_tiled(ir_graph *g, const target_desc *t)
{
    int count = g->nnodes;
    rewriter w = {g, t->lanes, NULL, NULL, count};
    size_t slots = (size_t)count * 8 + 64;
    w.before = arena_alloc(g->a, sizeof(int) * (size_t)count);
    w.next = arena_alloc(g->a, sizeof(int) * slots);
    char *dead = arena_alloc(g->a, (size_t)count);
    for (int i = 0; i < count; i++)
        w.before[i] = -1;
    for (int i = 0; i < count; i++) {
        switch (g->nodes[i].op) {
        case OP_CONV2D:
            rewrite_conv(&w, i);
            break;
        case OP_CONV2D_BWD_DATA:
            rewrite_conv_bwd_data(&w, i);
            break;
        case OP_CONV2D_BWD_FILTER:
            rewrite_conv_bwd_filter(&w, i, dead);
            break;
        case OP_DENSE:
            rewrite_dense(&w, i);
            break;
        default:
            break;
        }
    }
    /* New order: the inserted nodes just before the node that reads them. */
    ir_node *nodes = arena_alloc(g->a, sizeof(ir_node) * (size_t)g->cap_nodes);
    int n = 0, nforward = 0;
    for (int i = 0; i < count; i++) {
        for (int j = w.before[i]; j >= 0; j = w.next[j])
            nodes[n++] = g->nodes[j];
        if (!dead[i])
            nodes[n++] = g->nodes[i];
        if (i == g->nforward - 1)
            nforward = n;
    }
    g->nodes = nodes;
    g->nnodes = n;
    g->nforward = nforward;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < nodes[i].nout; j++)
            g->values[nodes[i].out[j]].producer = i;
}
