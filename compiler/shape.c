/*
 * shape.c — shape inference: one rule per forward op.
 *
 * A rule checks that its op can take the shapes of its inputs, creates the
 * parameters the op owns (their shapes depend on the input: a conv's
 * weight is [K, C/groups, R, S]) and the output value.  When an input does
 * not fit, the error names both ends: it points at the argument in the
 * consuming layer's line and adds a note at the layer that produced the
 * shape, with a suggested fix when one is obvious (a missing flatten).
 */
#include <inttypes.h>
#include <string.h>

#include "cnnc.h"
#include "ops_impl.h"

/* Shape of one example, "[6, 28, 28]", for messages. */
static const char *example_shape(const ir_graph *g, int value)
{
    ir_shape s = g->values[value].shape;
    if (g->values[value].batched) {
        s.ndim--;
        memmove(s.d, s.d + 1, sizeof(int64_t) * 3);
    }
    return ir_shape_str(g->a, s);
}

static const layer *node_layer(const ir_graph *g, const ir_node *n)
{
    return &g->net->layers[n->layer];
}

/* The layer that produced input `which` of n. */
static const layer *input_layer(const ir_graph *g, const ir_node *n, int which)
{
    const layer *l = node_layer(g, n);
    return &g->net->layers[l->inputs[which]];
}

/* "note: 'pool2' is defined here" */
static void note_producer(const ir_graph *g, const ir_node *n, int which, diag *d)
{
    const layer *p = input_layer(g, n, which);
    src_note(d, p->loc, "'%s' is defined here", p->name);
}

static src_loc input_loc(const ir_graph *g, const ir_node *n, int which)
{
    return node_layer(g, n)->input_locs[which];
}

int graph_add_param(ir_graph *g, int layer_index, const char *suffix, int kind, unsigned flags,
                    ir_shape shape, int64_t fan_in, int64_t fan_out, init_spec init)
{
    const layer *l = &g->net->layers[layer_index];
    g->params = arena_grow(g->a, g->params, sizeof(ir_param), (size_t)g->nparams,
                           (size_t)g->nparams + 1);
    ir_param *p = &g->params[g->nparams];
    p->name = arena_printf(g->a, "%s.%s", l->name, suffix);
    p->layer = l->name;
    p->kind = kind;
    p->flags = flags;
    p->shape = shape;
    p->size = ir_shape_size(shape);
    /* Keep every parameter 16-float (64-byte) aligned for vector code. */
    p->offset = (g->param_floats + 15) & ~(int64_t)15;
    g->param_floats = p->offset + p->size;
    p->fan_in = fan_in;
    p->fan_out = fan_out;
    p->init = init;
    p->grad = -1;
    p->value = ir_add_value(g, p->name, VAL_PARAM, DT_F32, shape);
    g->values[p->value].param = g->nparams;
    g->values[p->value].layer = layer_index;
    return g->nparams++;
}

static int add_output(ir_graph *g, ir_node *n, ir_shape shape)
{
    int v = ir_add_value(g, n->name, VAL_ACT, DT_F32, shape);
    g->values[v].batched = 1;
    ir_node_output(g, (int)(n - g->nodes), v);
    return v;
}

static int need_image(ir_graph *g, ir_node *n, const char *what, diag *d)
{
    const ir_value *x = &g->values[n->in[0]];
    if (x->shape.ndim == 4)
        return 0;
    src_error(d, input_loc(g, n, 0),
              "%s '%s' needs an image input [channels, height, width], but '%s' produces %s",
              what, n->name, input_layer(g, n, 0)->name, example_shape(g, n->in[0]));
    note_producer(g, n, 0, d);
    return -1;
}

/* "same" padding along one axis: output ceil(in / stride), the extra pixel
 * (if the total is odd) at the bottom/right, as PyTorch and TensorFlow do. */
static void same_padding(int64_t in, int k, int stride, int dilation, int *lo, int *hi)
{
    int64_t out = (in + stride - 1) / stride;
    int64_t total = (out - 1) * stride + (int64_t)dilation * (k - 1) + 1 - in;
    if (total < 0)
        total = 0;
    *lo = (int)(total / 2);
    *hi = (int)(total - total / 2);
}

/* Output size of a window op; reports a window larger than its input. */
static int window_shape(ir_graph *g, ir_node *n, const char *what, diag *d, int64_t *oh,
                        int64_t *ow)
{
    const ir_value *x = &g->values[n->in[0]];
    ir_attrs *a = &n->attr;
    int64_t h = x->shape.d[2], w = x->shape.d[3];
    if (a->pad_same) {
        same_padding(h, a->kernel[0], a->stride[0], a->dilation[0], &a->pad[0], &a->pad[2]);
        same_padding(w, a->kernel[1], a->stride[1], a->dilation[1], &a->pad[1], &a->pad[3]);
    }
    int64_t span_h = (int64_t)a->dilation[0] * (a->kernel[0] - 1) + 1;
    int64_t span_w = (int64_t)a->dilation[1] * (a->kernel[1] - 1) + 1;
    int64_t ph = h + a->pad[0] + a->pad[2], pw = w + a->pad[1] + a->pad[3];
    if (span_h > ph || span_w > pw) {
        src_error(d, node_layer(g, n)->op_loc,
                  "the %" PRId64 "x%" PRId64 " window of %s '%s' is larger than its "
                  "%s%" PRId64 "x%" PRId64 " input from '%s'",
                  span_h, span_w, what, n->name,
                  ph != h || pw != w ? "padded " : "", ph, pw, input_layer(g, n, 0)->name);
        note_producer(g, n, 0, d);
        return -1;
    }
    *oh = window_out(h, a->kernel[0], a->stride[0], a->pad[0], a->pad[2], a->dilation[0]);
    *ow = window_out(w, a->kernel[1], a->stride[1], a->pad[1], a->pad[3], a->dilation[1]);
    return 0;
}

int infer_conv2d(ir_graph *g, ir_node *n, diag *d)
{
    if (need_image(g, n, "conv2d", d))
        return -1;
    const ir_value *x = &g->values[n->in[0]];
    ir_attrs *a = &n->attr;
    int64_t c = x->shape.d[1];
    if (a->expect_in && a->expect_in != c) {
        src_error(d, input_loc(g, n, 0),
                  "conv2d '%s' expects %d input channels (in_channels), but '%s' produces %" PRId64,
                  n->name, a->expect_in, input_layer(g, n, 0)->name, c);
        note_producer(g, n, 0, d);
        return -1;
    }
    if (c % a->groups != 0 || a->filters % a->groups != 0) {
        int filters = c % a->groups == 0;
        if (filters)
            src_error(d, node_layer(g, n)->op_loc,
                      "conv2d '%s' has groups = %d, which does not divide its %d filters",
                      n->name, a->groups, a->filters);
        else
            src_error(d, input_loc(g, n, 0),
                      "conv2d '%s' has groups = %d, which does not divide its %" PRId64
                      " input channels from '%s'", n->name, a->groups, c,
                      input_layer(g, n, 0)->name);
        if (!filters)
            note_producer(g, n, 0, d);
        return -1;
    }
    int64_t oh, ow;
    if (window_shape(g, n, "conv2d", d, &oh, &ow))
        return -1;
    int k = a->filters, r = a->kernel[0], s = a->kernel[1];
    const layer *l = node_layer(g, n);
    int64_t fan_in = c / a->groups * r * s, fan_out = (int64_t)k * r * s;
    int w = graph_add_param(g, n->layer, "weight", CNN_PARAM_WEIGHT,
                            CNN_PARAM_TRAINABLE | CNN_PARAM_DECAY,
                            ir_shape4(k, c / a->groups, r, s), fan_in, fan_out, l->init);
    ir_node_input(g, (int)(n - g->nodes), g->params[w].value);
    if (a->bias) {
        ir_shape bs = {1, {k, 1, 1, 1}};
        int b = graph_add_param(g, n->layer, "bias", CNN_PARAM_BIAS, CNN_PARAM_TRAINABLE, bs,
                                fan_in, fan_out, l->bias_init);
        ir_node_input(g, (int)(n - g->nodes), g->params[b].value);
    }
    add_output(g, n, ir_shape4(g->batch, k, oh, ow));
    return 0;
}

int infer_dense(ir_graph *g, ir_node *n, diag *d)
{
    const ir_value *x = &g->values[n->in[0]];
    ir_attrs *a = &n->attr;
    if (x->shape.ndim != 2) {
        const layer *p = input_layer(g, n, 0);
        src_error(d, input_loc(g, n, 0),
                  "dense '%s' needs a flat input [features], but '%s' produces %s; flatten it "
                  "first: 'flat = flatten(%s)'",
                  n->name, p->name, example_shape(g, n->in[0]), p->name);
        note_producer(g, n, 0, d);
        return -1;
    }
    int64_t f = x->shape.d[1];
    if (a->expect_in && a->expect_in != f) {
        src_error(d, input_loc(g, n, 0),
                  "dense '%s' expects %d input features (in_features), but '%s' produces %" PRId64,
                  n->name, a->expect_in, input_layer(g, n, 0)->name, f);
        note_producer(g, n, 0, d);
        return -1;
    }
    const layer *l = node_layer(g, n);
    int w = graph_add_param(g, n->layer, "weight", CNN_PARAM_WEIGHT,
                            CNN_PARAM_TRAINABLE | CNN_PARAM_DECAY, ir_shape2(a->units, f), f,
                            a->units, l->init);
    ir_node_input(g, (int)(n - g->nodes), g->params[w].value);
    if (a->bias) {
        ir_shape bs = {1, {a->units, 1, 1, 1}};
        int b = graph_add_param(g, n->layer, "bias", CNN_PARAM_BIAS, CNN_PARAM_TRAINABLE, bs, f,
                                a->units, l->bias_init);
        ir_node_input(g, (int)(n - g->nodes), g->params[b].value);
    }
    add_output(g, n, ir_shape2(g->batch, a->units));
    return 0;
}

int infer_same(ir_graph *g, ir_node *n, diag *d)
{
    (void)d;
    add_output(g, n, g->values[n->in[0]].shape);
    return 0;
}

int infer_pool(ir_graph *g, ir_node *n, diag *d)
{
    const char *what = n->op == OP_MAXPOOL ? "maxpool" : "avgpool";
    if (need_image(g, n, what, d))
        return -1;
    ir_attrs *a = &n->attr;
    int64_t oh, ow;
    if (window_shape(g, n, what, d, &oh, &ow))
        return -1;
    for (int i = 0; i < 4; i++)
        if (a->pad[i] > a->kernel[i % 2] / 2) {
            src_error(d, node_layer(g, n)->op_loc,
                      "%s '%s' has padding %d but a %dx%d window: padding may be at most half "
                      "the window",
                      what, n->name, a->pad[i], a->kernel[0], a->kernel[1]);
            return -1;
        }
    const ir_value *x = &g->values[n->in[0]];
    add_output(g, n, ir_shape4(g->batch, x->shape.d[1], oh, ow));
    return 0;
}

int infer_flatten(ir_graph *g, ir_node *n, diag *d)
{
    (void)d;
    const ir_value *x = &g->values[n->in[0]];
    int v = add_output(g, n, ir_shape2(g->batch, ir_row_size(x)));
    g->values[v].alias = n->in[0]; /* NCHW rows are already C*H*W contiguous */
    return 0;
}

int infer_add(ir_graph *g, ir_node *n, diag *d)
{
    ir_shape a = g->values[n->in[0]].shape, b = g->values[n->in[1]].shape;
    if (a.ndim != b.ndim || memcmp(a.d, b.d, sizeof a.d) != 0) {
        src_error(d, input_loc(g, n, 1),
                  "add '%s' needs inputs of the same shape, but '%s' produces %s and '%s' "
                  "produces %s",
                  n->name, input_layer(g, n, 0)->name, example_shape(g, n->in[0]),
                  input_layer(g, n, 1)->name, example_shape(g, n->in[1]));
        note_producer(g, n, 0, d);
        note_producer(g, n, 1, d);
        return -1;
    }
    add_output(g, n, a);
    return 0;
}

/* Batch normalization over N (and H, W) per channel: gamma (weight), beta
 * (bias) and the running statistics as parameters, PyTorch's names and
 * initial values.  In training mode it also outputs the batch mean and
 * 1/sqrt(var + eps) per channel, which the backward pass reads. */
int infer_batchnorm(ir_graph *g, ir_node *n, diag *d)
{
    const ir_value *x = &g->values[n->in[0]];
    if (x->shape.ndim != 4 && x->shape.ndim != 2) {
        src_error(d, input_loc(g, n, 0), "batchnorm '%s' needs an image or a vector input",
                  n->name);
        return -1;
    }
    int64_t c = x->shape.d[1];
    ir_shape cs = {1, {c, 1, 1, 1}};
    static const struct {
        const char *suffix;
        int kind;
        unsigned flags;
        int init;
    } slots[4] = {{"weight", CNN_PARAM_WEIGHT, CNN_PARAM_TRAINABLE, CNN_INIT_ONES},
                  {"bias", CNN_PARAM_BIAS, CNN_PARAM_TRAINABLE, CNN_INIT_ZEROS},
                  {"running_mean", CNN_PARAM_RUNNING_MEAN, 0, CNN_INIT_ZEROS},
                  {"running_var", CNN_PARAM_RUNNING_VAR, 0, CNN_INIT_ONES}};
    for (int i = 0; i < 4; i++) {
        init_spec init = {slots[i].init, 0, 0, 1};
        int p = graph_add_param(g, n->layer, slots[i].suffix, slots[i].kind, slots[i].flags, cs,
                                c, c, init);
        ir_node_input(g, (int)(n - g->nodes), g->params[p].value);
    }
    add_output(g, n, x->shape);
    if (g->mode == GRAPH_TRAIN)
        for (int i = 0; i < 2; i++) {
            int v = ir_add_value(g, arena_printf(g->a, "%s.%s", n->name, i ? "invstd" : "mean"),
                                 VAL_ACT, DT_F32, cs);
            ir_node_output(g, (int)(n - g->nodes), v);
        }
    return 0;
}

/* Channels stacked: every input has the same batch and spatial size. */
int infer_concat(ir_graph *g, ir_node *n, diag *d)
{
    ir_shape s = g->values[n->in[0]].shape;
    int64_t channels = 0;
    for (int i = 0; i < n->nin; i++) {
        ir_shape t = g->values[n->in[i]].shape;
        if (t.ndim != s.ndim || (s.ndim == 4 && (t.d[2] != s.d[2] || t.d[3] != s.d[3]))) {
            src_error(d, input_loc(g, n, i),
                      "concat '%s' joins channels of inputs of the same size, but '%s' "
                      "produces %s and '%s' produces %s",
                      n->name, input_layer(g, n, 0)->name, example_shape(g, n->in[0]),
                      input_layer(g, n, i)->name, example_shape(g, n->in[i]));
            note_producer(g, n, 0, d);
            note_producer(g, n, i, d);
            return -1;
        }
        channels += t.d[1];
    }
    s.d[1] = channels;
    add_output(g, n, s);
    return 0;
}

/* The mean of each channel: [N, C, H, W] -> [N, C]. */
int infer_global_avgpool(ir_graph *g, ir_node *n, diag *d)
{
    if (need_image(g, n, "global_avgpool", d))
        return -1;
    add_output(g, n, ir_shape2(g->batch, g->values[n->in[0]].shape.d[1]));
    return 0;
}

/* Ops on one vector per example: softmax. */
int infer_flat(ir_graph *g, ir_node *n, diag *d)
{
    const ir_value *x = &g->values[n->in[0]];
    if (x->shape.ndim != 2) {
        const layer *p = input_layer(g, n, 0);
        src_error(d, input_loc(g, n, 0),
                  "%s '%s' needs one vector per example, but '%s' produces %s; flatten it "
                  "first", op_name(n->op), n->name, p->name, example_shape(g, n->in[0]));
        note_producer(g, n, 0, d);
        return -1;
    }
    add_output(g, n, x->shape);
    return 0;
}
