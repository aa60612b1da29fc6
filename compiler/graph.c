/*
 * graph.c — building the graph IR from a network, and printing it.
 *
 * graph_build walks the layers in source order and appends one node per
 * layer, running the op's shape rule (shape.c) as it goes, so a shape error
 * is found at the first layer that cannot take its input.  Layers the loss
 * does not depend on are left out (with a warning).  The loss layer becomes
 * softmax_xent (TRAIN) or a copy of the logits into the output argument
 * (INFER).  Parameters are created by the shape rules of the layers that
 * own them, in layer order, so both graphs of a network have the same
 * parameter table.
 *
 * Printing: graph_print (--emit ir) gives one line per node with the shape
 * of every value and the .cnn line it came from; graph_print_dot writes
 * Graphviz; graph_summary the layer table of --summary.
 */
#include <inttypes.h>
#include <string.h>

#include "cnnc.h"

/* ---- construction ----------------------------------------------------------- */

int ir_add_value(ir_graph *g, const char *name, val_kind kind, dtype type, ir_shape shape)
{
    if (g->nvalues == g->cap_values) {
        int cap = g->cap_values ? g->cap_values * 2 : 64;
        g->values = arena_grow(g->a, g->values, sizeof(ir_value), (size_t)g->nvalues, (size_t)cap);
        g->cap_values = cap;
    }
    ir_value *v = &g->values[g->nvalues];
    v->name = name;
    v->kind = kind;
    v->type = type;
    v->shape = shape;
    v->param = -1;
    v->producer = -1;
    v->alias = -1;
    v->layer = -1;
    v->offset = -1;
    return g->nvalues++;
}

int ir_add_node(ir_graph *g, op_kind op, const char *name, src_loc loc, int layer)
{
    if (g->nnodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        g->nodes = arena_grow(g->a, g->nodes, sizeof(ir_node), (size_t)g->nnodes, (size_t)cap);
        g->cap_nodes = cap;
    }
    ir_node *n = &g->nodes[g->nnodes];
    n->op = op;
    n->name = name;
    n->loc = loc;
    n->layer = layer;
    n->group = -1;
    return g->nnodes++;
}

void ir_node_input(ir_graph *g, int node, int value)
{
    ir_node *n = &g->nodes[node];
    n->in[n->nin++] = value;
}

void ir_node_output(ir_graph *g, int node, int value)
{
    ir_node *n = &g->nodes[node];
    n->out[n->nout++] = value;
    g->values[value].producer = node;
}

ir_shape ir_shape4(int64_t n, int64_t c, int64_t h, int64_t w)
{
    ir_shape s = {4, {n, c, h, w}};
    return s;
}

ir_shape ir_shape2(int64_t n, int64_t f)
{
    ir_shape s = {2, {n, f, 1, 1}};
    return s;
}

int64_t ir_shape_size(ir_shape s)
{
    int64_t size = 1;
    for (int i = 0; i < s.ndim; i++)
        size *= s.d[i];
    return size;
}

int64_t ir_row_size(const ir_value *v)
{
    int64_t size = 1;
    for (int i = v->batched ? 1 : 0; i < v->shape.ndim; i++)
        size *= v->shape.d[i];
    return size;
}

void ir_shape_print(FILE *out, ir_shape s)
{
    fputc('[', out);
    for (int i = 0; i < s.ndim; i++)
        fprintf(out, "%s%" PRId64, i ? ", " : "", s.d[i]);
    fputc(']', out);
}

const char *ir_shape_str(arena *a, ir_shape s)
{
    char buf[128] = "[";
    for (int i = 0; i < s.ndim; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%" PRId64, i ? ", " : "",
                 s.d[i]);
    strcat(buf, "]");
    return arena_strdup(a, buf);
}

const char *op_name(op_kind op)
{
    static const char *const names[] = {
#define OP(id, name, kind) name,
#include "ops.def"
#undef OP
    };
    return op >= 0 && op < OP_COUNT ? names[op] : "?";
}

int64_t window_out(int64_t in, int k, int stride, int pad_lo, int pad_hi, int dilation)
{
    int64_t span = (int64_t)dilation * (k - 1) + 1;
    int64_t padded = in + pad_lo + pad_hi;
    if (padded < span)
        return 0;
    return (padded - span) / stride + 1;
}

/* Mark the layers the loss depends on. */
static void mark_used(const network *net, int layer, char *used)
{
    if (used[layer])
        return;
    used[layer] = 1;
    for (int i = 0; i < net->layers[layer].ninputs; i++)
        mark_used(net, net->layers[layer].inputs[i], used);
}

/* Tensors are limited to 2^34 elements (64 GiB of floats) for a whole
 * batch, and parameter arrays likewise, so that no index computation in
 * the compiler or the generated code can overflow 64 bits. */
#define MAX_ELEMENTS ((int64_t)1 << 34)

static int too_large(const ir_graph *g, int value, const layer *l, diag *d)
{
    int64_t size = ir_shape_size(g->values[value].shape);
    if (size <= MAX_ELEMENTS && g->param_floats <= MAX_ELEMENTS)
        return 0;
    if (size > MAX_ELEMENTS)
        src_error(d, l->loc, "layer '%s' produces %s per batch of %d: more than the 2^34 "
                  "elements cnnc supports in one tensor", l->name,
                  ir_shape_str(g->a, g->values[value].shape), g->batch);
    else
        src_error(d, l->loc, "the parameters up to layer '%s' need more than the 2^34 floats "
                  "cnnc supports", l->name);
    return 1;
}

/* The loss layer: softmax cross-entropy in TRAIN mode, a copy of the
 * logits to the output in INFER mode. */
static int build_loss(ir_graph *g, const network *net, const int *layer_val, diag *d)
{
    const layer *l = &net->layers[net->loss];
    int logits = layer_val[l->inputs[0]];
    g->logits = logits;
    const ir_value *lv = &g->values[logits];
    const layer *producer = &net->layers[l->inputs[0]];
    int64_t classes = lv->shape.ndim == 2 ? lv->shape.d[1] : 0;
    if (lv->shape.ndim != 2) {
        ir_shape s = lv->shape;
        s.ndim--;
        memmove(s.d, s.d + 1, sizeof(int64_t) * 3);
        src_error(d, l->input_locs[0],
                  "%s needs one vector %sper example, but '%s' produces %s; add a flatten "
                  "and a dense layer",
                  l->op == OP_MSE_LOSS ? "mse" : "softmax_cross_entropy",
                  l->op == OP_MSE_LOSS ? "" : "of logits ", producer->name,
                  ir_shape_str(g->a, s));
        src_note(d, producer->loc, "'%s' is defined here", producer->name);
        return -1;
    }
    if (net->classes && classes != net->classes) {
        src_error(d, l->input_locs[0],
                  "the network has %d classes, but '%s' produces %" PRId64 " logits per example",
                  net->classes, producer->name, classes);
        src_note(d, net->classes_loc, "classes set here");
        src_note(d, producer->loc, "'%s' is defined here", producer->name);
        return -1;
    }
    if (g->mode == GRAPH_INFER) {
        int node = ir_add_node(g, OP_COPY, l->name, l->loc, net->loss);
        g->output = ir_add_value(g, "out", VAL_OUTPUT, DT_F32, lv->shape);
        g->values[g->output].batched = 1;
        ir_node_input(g, node, logits);
        ir_node_output(g, node, g->output);
        return 0;
    }
    g->labels = ir_add_value(g, "labels", VAL_LABELS, DT_I32, (ir_shape){1, {g->batch, 1, 1, 1}});
    g->values[g->labels].batched = 1;
    int node = ir_add_node(g, l->op, l->name, l->loc, net->loss);
    g->nodes[node].attr = l->attr;
    ir_node_input(g, node, logits);
    ir_node_input(g, node, g->labels);
    g->loss = ir_add_value(g, "loss", VAL_ACT, DT_F32, (ir_shape){0, {1, 1, 1, 1}});
    ir_node_output(g, node, g->loss);
    if (l->op == OP_SOFTMAX_XENT) { /* the backward pass reads the probabilities */
        int probs = ir_add_value(g, arena_printf(g->a, "%s.probs", l->name), VAL_ACT, DT_F32,
                                 lv->shape);
        g->values[probs].batched = 1;
        ir_node_output(g, node, probs);
    }
    return 0;
}

/* Consumers of value v among the nodes. */
static int uses_of(const ir_graph *g, int v)
{
    int count = 0;
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            count += g->nodes[i].in[j] == v;
    return count + (v == g->logits);
}

/* Evaluation mode: a batch norm whose input is a convolution used by nothing
 * else becomes part of that convolution.  A bn_fold node, run first in the
 * forward pass, computes
 *     s = gamma / sqrt(running_var + eps)
 *     W'[k] = W[k] * s[k],   b'[k] = (b[k] - running_mean[k]) * s[k] + beta[k]
 * into the arena, the convolution uses W' and b', and the batch-norm node
 * disappears: one pass over the activations instead of two. */
static void fold_batchnorm(ir_graph *g)
{
    int *fold_before = arena_alloc(g->a, sizeof(int) * (size_t)g->nnodes);
    char *dead = arena_alloc(g->a, (size_t)g->nnodes);
    int count = g->nnodes;
    for (int i = 0; i < count; i++) {
        fold_before[i] = -1;
        ir_node *bn = &g->nodes[i];
        if (bn->op != OP_BATCHNORM_EVAL)
            continue;
        int conv = g->values[bn->in[0]].producer;
        if (conv < 0 || g->nodes[conv].op != OP_CONV2D || uses_of(g, bn->in[0]) != 1)
            continue;
        ir_node *cv = &g->nodes[conv];
        int w = cv->in[1], k = cv->attr.filters;
        int f = ir_add_node(g, OP_BN_FOLD, arena_printf(g->a, "%s.fold", bn->name), bn->loc,
                            bn->layer);
        cv = &g->nodes[conv], bn = &g->nodes[i];
        g->nodes[f].attr = bn->attr;
        ir_node_input(g, f, w);
        for (int j = 1; j <= 4; j++)
            ir_node_input(g, f, bn->in[j]);
        if (cv->nin > 2)
            ir_node_input(g, f, cv->in[2]);
        int wf = ir_add_value(g, arena_printf(g->a, "%s.folded_weight", cv->name), VAL_ACT,
                              DT_F32, g->values[w].shape);
        ir_shape bs = {1, {k, 1, 1, 1}};
        int bf = ir_add_value(g, arena_printf(g->a, "%s.folded_bias", cv->name), VAL_ACT, DT_F32,
                              bs);
        ir_node_output(g, f, wf);
        ir_node_output(g, f, bf);
        cv = &g->nodes[conv], bn = &g->nodes[i];
        cv->in[1] = wf;
        if (cv->nin > 2)
            cv->in[2] = bf;
        else
            cv->in[cv->nin++] = bf;
        cv->attr.bias = 1;
        /* The convolution now produces the batch norm's output. */
        int y = bn->out[0], old = cv->out[0];
        cv->out[0] = y;
        g->values[y].producer = conv;
        g->values[old].producer = -1;
        dead[i] = 1;
        fold_before[conv] = f;
    }
    /* Reorder: each fold just before its convolution, folded batch norms gone. */
    ir_node *nodes = arena_alloc(g->a, sizeof(ir_node) * (size_t)g->cap_nodes);
    int n = 0;
    for (int i = 0; i < count; i++) {
        if (dead[i])
            continue;
        if (fold_before[i] >= 0)
            nodes[n++] = g->nodes[fold_before[i]];
        nodes[n++] = g->nodes[i];
    }
    g->nodes = nodes;
    g->nnodes = n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < nodes[i].nout; j++)
            g->values[nodes[i].out[j]].producer = i;
}

ir_graph *graph_build(arena *a, const network *net, graph_mode mode, diag *d)
{
    ir_graph *g = arena_alloc(a, sizeof *g);
    g->a = a;
    g->net = net;
    g->mode = mode;
    g->batch = net->batch;
    g->input = g->labels = g->logits = g->loss = g->output = g->input_grad = -1;
    char *used = arena_alloc(a, (size_t)net->nlayers);
    mark_used(net, net->loss, used);
    int *layer_val = arena_alloc(a, sizeof(int) * (size_t)net->nlayers);
    for (int i = 0; i < net->nlayers; i++) {
        const layer *l = &net->layers[i];
        layer_val[i] = -1;
        if (!used[i]) {
            if (mode == GRAPH_TRAIN)
                src_warning(d, l->loc, "layer '%s' does not contribute to the loss; it is left out",
                            l->name);
            continue;
        }
        if (i == net->loss)
            continue;
        if (l->op == OP_DROPOUT && mode == GRAPH_INFER) { /* the identity */
            layer_val[i] = layer_val[l->inputs[0]];
            continue;
        }
        if (l->op == OP_INPUT) {
            g->input = ir_add_value(g, l->name, VAL_INPUT, DT_F32,
                                    ir_shape4(g->batch, l->attr.chw[0], l->attr.chw[1],
                                              l->attr.chw[2]));
            g->values[g->input].batched = 1;
            g->values[g->input].layer = i;
            layer_val[i] = g->input;
            if (too_large(g, g->input, l, d))
                return NULL;
            continue;
        }
        op_kind op = l->op == OP_BATCHNORM && mode == GRAPH_INFER ? OP_BATCHNORM_EVAL : l->op;
        int node = ir_add_node(g, op, l->name, l->loc, i);
        g->nodes[node].attr = l->attr;
        for (int j = 0; j < l->ninputs; j++)
            ir_node_input(g, node, layer_val[l->inputs[j]]);
        const op_info *info = &op_table[op];
        if (info->infer(g, &g->nodes[node], d) != 0)
            return NULL;
        layer_val[i] = g->nodes[node].out[0];
        if (too_large(g, layer_val[i], l, d))
            return NULL;
        g->values[layer_val[i]].layer = i;
    }
    if (build_loss(g, net, layer_val, d) != 0)
        return NULL;
    if (mode == GRAPH_INFER)
        fold_batchnorm(g);
    g->nforward = g->nnodes;
    return g;
}

/* ---- printing ----------------------------------------------------------------- */

static const char *val_prefix(const ir_value *v)
{
    switch (v->kind) {
    case VAL_PARAM:
        return "$";
    case VAL_GRAD:
        return "$d.";
    default:
        return "%";
    }
}

static void print_attrs(FILE *out, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    switch (n->op) {
    case OP_CONV2D:
    case OP_CONV2D_BWD_DATA:
    case OP_CONV2D_BWD_FILTER:
    case OP_MAXPOOL:
    case OP_AVGPOOL:
    case OP_MAXPOOL_BWD:
    case OP_AVGPOOL_BWD:
        fprintf(out, " kernel=%dx%d stride=%dx%d pad=%d,%d,%d,%d", a->kernel[0], a->kernel[1],
                a->stride[0], a->stride[1], a->pad[0], a->pad[1], a->pad[2], a->pad[3]);
        if (a->dilation[0] != 1 || a->dilation[1] != 1)
            fprintf(out, " dilation=%dx%d", a->dilation[0], a->dilation[1]);
        if (a->groups > 1)
            fprintf(out, " groups=%d", a->groups);
        break;
    case OP_BATCHNORM:
    case OP_BATCHNORM_EVAL:
    case OP_BN_FOLD:
        fprintf(out, " eps=%g momentum=%g", a->eps, a->momentum);
        break;
    case OP_DROPOUT:
    case OP_DROPOUT_BWD:
        fprintf(out, " p=%g", a->alpha);
        break;
    case OP_ACT:
    case OP_ACT_BWD: {
        static const char *const kinds[] = {"leaky_relu", "sigmoid", "tanh", "gelu"};
        fprintf(out, " %s", kinds[a->act]);
        if (a->act == ACT_LEAKY_RELU)
            fprintf(out, " slope=%g", a->alpha);
        break;
    }
    case OP_SLICE:
        fprintf(out, " offset=%d", a->offset);
        break;
    case OP_SOFTMAX_XENT:
    case OP_SOFTMAX_XENT_BWD:
        if (a->alpha > 0)
            fprintf(out, " label_smoothing=%g", a->alpha);
        break;
    default:
        break;
    }
}

static void print_value_ref(FILE *out, const ir_graph *g, int v)
{
    const ir_value *val = &g->values[v];
    fprintf(out, "%s%s", val_prefix(val), val->name);
}

/* A fused epilogue: " +add(%r0) +relu", and the nodes it came from. */
/* pack.c's graph_absorb_pads: which of n's buffers have a zero border
 * around them, each as "[what in border top left bottom right]" after sep. */
static void print_borders(FILE *out, const ir_node *n, const char *sep)
{
    const int *border[5] = {n->attr.out_pad, n->attr.in_pad, n->attr.x_pad, n->attr.add_pad,
                            n->attr.mask_pad};
    static const char *const what[5] = {"output", "input 0", "input 1", "add operand",
                                         "mask operand"};
    for (int k = 0; k < 5; k++) {
        const int *b = border[k];
        if (b[0] | b[1] | b[2] | b[3])
            fprintf(out, "%s[%s in border %d %d %d %d]", sep, what[k], b[0], b[1], b[2], b[3]);
    }
}

static void print_post(FILE *out, const ir_graph *g, const ir_node *n)
{
    if (n->attr.post & POST_ADD) {
        fputs(" +add(", out);
        print_value_ref(out, g, ir_add_operand(n));
        fputc(')', out);
    }
    if (n->op == OP_BATCHNORM && n->attr.stats) {
        fputs(" sums(", out);
        print_value_ref(out, g, n->in[ir_nin_core(n)]);
        fputc(')', out);
    }
    if (n->attr.post & POST_RELU)
        fputs(" +relu", out);
    if (n->attr.post & POST_MASK) {
        fputs(" +relu_mask(", out);
        print_value_ref(out, g, ir_mask_operand(n));
        fputc(')', out);
    }
    if (n->fused)
        fprintf(out, " [fused: %s]", n->fused);
    print_borders(out, n, " ");
}

void graph_print(FILE *out, const ir_graph *g)
{
    fprintf(out, "graph %s (%s, batch %d)\n", g->net->name,
            g->mode == GRAPH_TRAIN ? "train" : "infer", g->batch);
    for (int i = 0; i < g->nparams; i++) {
        const ir_param *p = &g->params[i];
        fprintf(out, "  param $%s: f32", p->name);
        ir_shape_print(out, p->shape);
        fprintf(out, " at %" PRId64 "\n", p->offset);
    }
    if (g->input >= 0) {
        fprintf(out, "  arg %%%s: f32", g->values[g->input].name);
        ir_shape_print(out, g->values[g->input].shape);
        fputc('\n', out);
    }
    for (int i = 0; i < g->nnodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (i == g->nforward)
            fprintf(out, "  # backward\n");
        fputs("  ", out);
        for (int j = 0; j < n->nout; j++) {
            const ir_value *v = &g->values[n->out[j]];
            if (j)
                fputs(", ", out);
            print_value_ref(out, g, n->out[j]);
            fprintf(out, ": %s", v->type == DT_I32 ? "i32" : "f32");
            ir_shape_print(out, v->shape);
            if (v->alias >= 0)
                fprintf(out, " (view of %%%s)", g->values[v->alias].name);
            else if (v->kind == VAL_ACT && v->offset >= 0)
                fprintf(out, " @%" PRId64, v->offset);
        }
        fprintf(out, " = %s(", op_name(n->op));
        for (int j = 0; j < ir_nin_core(n); j++) {
            if (j)
                fputs(", ", out);
            print_value_ref(out, g, n->in[j]);
        }
        fputc(')', out);
        print_attrs(out, n);
        print_post(out, g, n);
        if (n->loc.file)
            fprintf(out, "    # %s:%d", n->loc.file->path, n->loc.line);
        fputc('\n', out);
    }
}

void graph_print_dot(FILE *out, const ir_graph *g)
{
    fprintf(out, "digraph \"%s_%s\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\"];\n",
            g->net->name, g->mode == GRAPH_TRAIN ? "train" : "infer");
    for (int i = 0; i < g->nnodes; i++) {
        const ir_node *n = &g->nodes[i];
        const char *color = i >= g->nforward ? "#f4cccc" : "#cfe2f3";
        /* a fused group: one box with a double border, the fused nodes named */
        fprintf(out, "  n%d [shape=box, style=filled, fillcolor=\"%s\",%s label=\"%s%s%s\\n%s", i,
                color, n->fused ? " peripheries=2," : "", n->name, n->fused ? " + " : "",
                n->fused ? n->fused : "", op_name(n->op));
        if (n->attr.post & POST_ADD)
            fputs(" + add", out);
        if (n->attr.post & POST_RELU)
            fputs(" + relu", out);
        if (n->attr.post & POST_MASK)
            fputs(" + relu mask", out);
        if (n->nout) {
            fputs("\\n", out);
            ir_shape_print(out, g->values[n->out[0]].shape);
        }
        print_borders(out, n, "\\n");
        fputs("\"];\n", out);
    }
    char *read = calloc((size_t)g->nvalues, 1);
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            read[g->nodes[i].in[j]] = 1;
    for (int v = 0; v < g->nvalues; v++) {
        const ir_value *val = &g->values[v];
        if (val->producer >= 0 || !read[v])
            continue;
        fprintf(out, "  v%d [shape=ellipse, label=\"%s%s\"];\n", v, val_prefix(val), val->name);
    }
    free(read);
    for (int i = 0; i < g->nnodes; i++) {
        const ir_node *n = &g->nodes[i];
        for (int j = 0; j < n->nin; j++) {
            int v = n->in[j];
            if (g->values[v].producer >= 0)
                fprintf(out, "  n%d -> n%d;\n", g->values[v].producer, i);
            else
                fprintf(out, "  v%d -> n%d;\n", v, i);
        }
    }
    fputs("}\n", out);
}

static json_t *ints(const int *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

void graph_print_json(FILE *out, const ir_graph *g)
{
    const network *net = g->net;
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("cnnc-network"));
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "name", json_string(net->name));
    json_object_set_new(root, "batch", json_integer(g->batch));
    const ir_value *x = &g->values[g->input];
    json_object_set_new(root, "input", json_pack("{s:s,s:[III]}", "name", x->name, "shape",
                                                 (json_int_t)x->shape.d[1],
                                                 (json_int_t)x->shape.d[2],
                                                 (json_int_t)x->shape.d[3]));
    json_object_set_new(root, "classes", json_integer(g->values[g->logits].shape.d[1]));
    json_t *layers = json_array();
    for (int i = 0; i < g->nforward; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op == OP_COPY)
            continue;
        if (n->op == OP_SOFTMAX_XENT || n->op == OP_MSE_LOSS) {
            json_object_set_new(root, "loss",
                                json_pack("{s:s, s:s, s:f}", "op", op_name(n->op), "input",
                                          g->values[n->in[0]].name, "label_smoothing",
                                          n->op == OP_SOFTMAX_XENT ? n->attr.alpha : 0.0));
            continue;
        }
        json_t *l = json_object();
        json_object_set_new(l, "name", json_string(n->name));
        json_object_set_new(l, "op", json_string(op_name(n->op)));
        json_t *in = json_array();
        for (int j = 0; j < n->nin; j++)
            if (g->values[n->in[j]].kind != VAL_PARAM)
                json_array_append_new(in, json_string(g->values[n->in[j]].name));
        json_object_set_new(l, "inputs", in);
        const ir_value *y = &g->values[n->out[0]];
        json_object_set_new(l, "shape", json_array());
        for (int d = 1; d < y->shape.ndim; d++)
            json_array_append_new(json_object_get(l, "shape"), json_integer(y->shape.d[d]));
        const ir_attrs *a = &n->attr;
        switch (n->op) {
        case OP_CONV2D:
            json_object_set_new(l, "filters", json_integer(a->filters));
            json_object_set_new(l, "groups", json_integer(a->groups));
            json_object_set_new(l, "dilation", ints(a->dilation, 2));
            json_object_set_new(l, "bias", json_boolean(a->bias));
            /* fall through */
        case OP_MAXPOOL:
        case OP_AVGPOOL:
            json_object_set_new(l, "kernel", ints(a->kernel, 2));
            json_object_set_new(l, "stride", ints(a->stride, 2));
            json_object_set_new(l, "padding", ints(a->pad, 4));
            break;
        case OP_DENSE:
            json_object_set_new(l, "units", json_integer(a->units));
            json_object_set_new(l, "bias", json_boolean(a->bias));
            break;
        case OP_BATCHNORM:
        case OP_BATCHNORM_EVAL:
            json_object_set_new(l, "momentum", json_real(a->momentum));
            json_object_set_new(l, "eps", json_real(a->eps));
            break;
        case OP_DROPOUT:
            json_object_set_new(l, "p", json_real(a->alpha));
            break;
        case OP_ACT: {
            static const char *const kinds[] = {"leaky_relu", "sigmoid", "tanh", "gelu"};
            json_object_set_new(l, "act", json_string(kinds[a->act]));
            json_object_set_new(l, "slope", json_real(a->alpha));
            break;
        }
        default:
            break;
        }
        json_array_append_new(layers, l);
    }
    json_object_set_new(root, "layers", layers);
    json_t *params = json_array();
    for (int i = 0; i < g->nparams; i++) {
        const ir_param *p = &g->params[i];
        json_t *shape = json_array();
        for (int d = 0; d < p->shape.ndim; d++)
            json_array_append_new(shape, json_integer(p->shape.d[d]));
        json_array_append_new(params, json_pack("{s:s,s:s,s:o,s:I}", "name", p->name, "layer",
                                                p->layer, "shape", shape, "offset",
                                                (json_int_t)p->offset));
    }
    json_object_set_new(root, "params", params);
    json_object_set(root, "train", net->train);
    json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(root);
}

/* ---- hashing and the summary -------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t graph_arch_hash(const ir_graph *g)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < g->nforward; i++) {
        const ir_node *n = &g->nodes[i];
        int32_t words[24] = {n->op,           n->attr.kernel[0], n->attr.kernel[1],
                             n->attr.stride[0], n->attr.stride[1], n->attr.pad[0],
                             n->attr.pad[1],    n->attr.pad[2],    n->attr.pad[3],
                             n->attr.dilation[0], n->attr.dilation[1], n->attr.groups,
                             n->attr.filters,   n->attr.units,     n->attr.bias};
        h = fnv(h, words, sizeof words);
        h = fnv(h, n->name, strlen(n->name) + 1);
    }
    for (int i = 0; i < g->nparams; i++) {
        const ir_param *p = &g->params[i];
        h = fnv(h, p->name, strlen(p->name) + 1);
        h = fnv(h, p->shape.d, sizeof p->shape.d);
    }
    return h;
}

static void human_bytes(char *buf, size_t size, int64_t bytes)
{
    if (bytes >= 10 * 1024 * 1024)
        snprintf(buf, size, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    else if (bytes >= 10 * 1024)
        snprintf(buf, size, "%.1f KiB", (double)bytes / 1024.0);
    else
        snprintf(buf, size, "%" PRId64 " B", bytes);
}

ir_graph *graph_copy(arena *a, const ir_graph *g)
{
    ir_graph *c = arena_alloc(a, sizeof *c);
    *c = *g;
    c->nodes = arena_alloc(a, sizeof(ir_node) * (size_t)(g->cap_nodes + 1));
    memcpy(c->nodes, g->nodes, sizeof(ir_node) * (size_t)g->nnodes);
    c->values = arena_alloc(a, sizeof(ir_value) * (size_t)(g->cap_values + 1));
    memcpy(c->values, g->values, sizeof(ir_value) * (size_t)g->nvalues);
    return c;
}

static void print_plan(FILE *out, const char *what, const plan_stats *s)
{
    char arena_s[32], buf_s[32], peak_s[32];
    human_bytes(arena_s, sizeof arena_s, s->arena);
    human_bytes(buf_s, sizeof buf_s, s->buffers);
    human_bytes(peak_s, sizeof peak_s, s->peak_live);
    if (s->like) { /* memplan.c: at the train step's offsets, in its arena */
        fprintf(out, "%s %d buffers of %s in all, most alive at once %s, placed where the train "
                     "step's are (so that both share kernels), within %s\n",
                what, s->values, buf_s, peak_s, arena_s);
        return;
    }
    fprintf(out, "%s arena %s for %d buffers of %s in all (%.1fx reuse); most alive at once %s "
                 "(the plan is %.0f%% of optimal)\n",
            what, arena_s, s->values, buf_s, s->arena ? (double)s->buffers / (double)s->arena : 0,
            peak_s, s->arena ? 100.0 * (double)s->peak_live / (double)s->arena : 100.0);
}

void graph_summary(FILE *out, const ir_graph *layers, const ir_graph *train,
                   const plan_stats *train_plan, const plan_stats *infer_plan)
{
    const ir_graph *g = layers;
    fprintf(out, "network %s: batch %d\n\n", g->net->name, g->batch);
    fprintf(out, "%-16s %-22s %-18s %10s %14s %12s\n", "layer", "type", "output", "params",
            "FLOPs/example", "act/example");
    int64_t total_params = 0, total_flops = 0, total_act = 0;
    if (g->input >= 0) {
        const ir_value *x = &g->values[g->input];
        ir_shape s = x->shape;
        s.ndim--;
        memmove(s.d, s.d + 1, sizeof(int64_t) * 3);
        char shape[64], act[32];
        snprintf(shape, sizeof shape, "%s", ir_shape_str(g->a, s));
        human_bytes(act, sizeof act, ir_row_size(x) * 4);
        fprintf(out, "%-16s %-22s %-18s %10d %14d %12s\n", x->name, "input", shape, 0, 0, act);
        total_act += ir_row_size(x) * 4;
    }
    for (int i = 0; i < g->nforward; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op == OP_COPY)
            continue;
        const ir_value *v = &g->values[n->out[0]];
        int64_t params = 0;
        for (int j = 0; j < n->nin; j++)
            if (g->values[n->in[j]].kind == VAL_PARAM)
                params += ir_shape_size(g->values[n->in[j]].shape);
        int64_t flops = op_table[n->op].flops ? op_table[n->op].flops(g, n) : 0;
        int64_t act = v->alias >= 0 ? 0 : ir_row_size(v) * 4;
        ir_shape s = v->shape;
        s.ndim--;
        memmove(s.d, s.d + 1, sizeof(int64_t) * 3);
        char shape[64], actb[32];
        snprintf(shape, sizeof shape, "%s", ir_shape_str(g->a, s));
        human_bytes(actb, sizeof actb, act);
        fprintf(out, "%-16s %-22s %-18s %10" PRId64 " %14" PRId64 " %12s\n", n->name,
                op_name(n->op), shape, params, flops, actb);
        total_params += params;
        total_flops += flops;
        total_act += act;
    }
    char act[32], ta[32], ia[32];
    human_bytes(act, sizeof act, total_act);
    fprintf(out, "%-16s %-22s %-18s %10" PRId64 " %14" PRId64 " %12s\n", "total", "", "",
            total_params, total_flops, act);
    int64_t train_flops = 0;
    for (int i = 0; i < layers->nnodes; i++)
        if (op_table[layers->nodes[i].op].flops)
            train_flops += op_table[layers->nodes[i].op].flops(layers, &layers->nodes[i]);
    int fused = 0;
    for (int i = 0; i < train->nnodes; i++)
        fused += train->nodes[i].fused != NULL;
    human_bytes(ta, sizeof ta, train_plan->arena);
    human_bytes(ia, sizeof ia, infer_plan->arena);
    fprintf(out, "\nparameters: %" PRId64 " (%" PRId64 " bytes)\n", total_params,
            total_params * 4);
    fprintf(out, "train step: %" PRId64 " FLOPs per example (forward + backward), %d kernels "
                 "(%d with fused epilogues)\n",
            train_flops, train->nnodes, fused);
    fprintf(out, "forward:    %" PRId64 " FLOPs per example\n", total_flops);
    print_plan(out, "train step:", train_plan);
    print_plan(out, "forward:   ", infer_plan);
}
