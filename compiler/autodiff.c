/*
 * autodiff.c — reverse-mode differentiation of the graph IR.
 *
 * graph_autodiff appends, after the forward nodes and the loss, the nodes
 * that compute d(loss)/d(value) for every value that needs it, walking the
 * forward nodes backwards and calling each op's gradient rule (the grad_*
 * functions below, listed in op_table).  The gradient of the loss itself is
 * implicit: softmax_xent's rule produces d(loss)/d(logits) directly.
 *
 * Which values need a gradient is decided first, forwards: a value needs
 * one when it depends on a trainable parameter (or on the input x, when
 * the caller asks for the input gradient).  So the first convolution gets
 * no backward-data node, and nothing is computed that nothing reads.
 *
 * Values are single-assignment.  When a value feeds several layers (a
 * residual branch), its gradient contributions are summed by `add` nodes.
 * Parameter gradients go straight into VAL_GRAD values, which are slices
 * of the grads array, written (not accumulated) by exactly one node.
 * Views (flatten) need no node: the gradient of a view is a view of the
 * gradient.
 */
#include <string.h>

#include "cnnc.h"
#include "ops_impl.h"

/* The VAL_GRAD value of the parameter behind a VAL_PARAM value. */
static int param_grad(ir_graph *g, int param_value)
{
    ir_param *p = &g->params[g->values[param_value].param];
    if (p->grad < 0) {
        p->grad = ir_add_value(g, p->name, VAL_GRAD, DT_F32, p->shape);
        g->values[p->grad].param = g->values[param_value].param;
        g->values[p->grad].layer = g->values[param_value].layer;
    }
    return p->grad;
}

/* A new gradient tensor shaped like value v. */
static int grad_value(ir_graph *g, int v)
{
    const ir_value *val = &g->values[v];
    int gv = ir_add_value(g, arena_printf(g->a, "d.%s", val->name), VAL_ACT, DT_F32, val->shape);
    g->values[gv].batched = val->batched;
    g->values[gv].layer = val->layer;
    return gv;
}

/* Append a backward node of forward node `fwd` with the given inputs and
 * one output; returns the node. */
static int bwd_node(ir_graph *g, op_kind op, int fwd, const char *suffix, int out,
                    const int *inputs, int ninputs)
{
    const ir_node *f = &g->nodes[fwd];
    int node = ir_add_node(g, op, arena_printf(g->a, "%s.%s", f->name, suffix), f->loc, f->layer);
    g->nodes[node].attr = g->nodes[fwd].attr;
    for (int i = 0; i < ninputs; i++)
        ir_node_input(g, node, inputs[i]);
    ir_node_output(g, node, out);
    return node;
}

/* ---- gradient rules ------------------------------------------------------------ */

void grad_softmax_xent(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    (void)gy;
    const ir_node *n = &g->nodes[node];
    if (!want[0])
        return;
    gx[0] = grad_value(g, n->in[0]);
    int inputs[2] = {n->out[1], n->in[1]}; /* probabilities, labels */
    bwd_node(g, OP_SOFTMAX_XENT_BWD, node, "grad", gx[0], inputs, 2);
}

/* conv2d and dense share a shape of rule: data, weight, bias. */
static void grad_linear(ir_graph *g, int node, const int *gy, const int *want, int *gx,
                        op_kind bwd_data, op_kind bwd_weight)
{
    const ir_node n = g->nodes[node]; /* copy: the node array may grow */
    int dy = gy[0];
    if (want[0]) {
        gx[0] = grad_value(g, n.in[0]);
        int inputs[2] = {dy, n.in[1]};
        bwd_node(g, bwd_data, node, "grad_input", gx[0], inputs, 2);
    }
    if (want[1]) {
        int inputs[2] = {dy, n.in[0]};
        bwd_node(g, bwd_weight, node, "grad_weight", param_grad(g, n.in[1]), inputs, 2);
    }
    if (n.nin > 2 && want[2]) {
        int inputs[1] = {dy};
        bwd_node(g, OP_BIAS_BWD, node, "grad_bias", param_grad(g, n.in[2]), inputs, 1);
    }
}

void grad_conv2d(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    grad_linear(g, node, gy, want, gx, OP_CONV2D_BWD_DATA, OP_CONV2D_BWD_FILTER);
}

void grad_dense(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    grad_linear(g, node, gy, want, gx, OP_DENSE_BWD_DATA, OP_DENSE_BWD_WEIGHT);
}

void grad_relu(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    const ir_node n = g->nodes[node];
    if (!want[0])
        return;
    gx[0] = grad_value(g, n.in[0]);
    int inputs[2] = {gy[0], n.out[0]}; /* the mask is output > 0 */
    bwd_node(g, OP_RELU_BWD, node, "grad", gx[0], inputs, 2);
}

void grad_maxpool(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    const ir_node n = g->nodes[node];
    if (!want[0])
        return;
    gx[0] = grad_value(g, n.in[0]);
    int inputs[2] = {gy[0], n.in[0]}; /* the argmax is recomputed from the input */
    bwd_node(g, OP_MAXPOOL_BWD, node, "grad", gx[0], inputs, 2);
}

void grad_avgpool(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    const ir_node n = g->nodes[node];
    if (!want[0])
        return;
    gx[0] = grad_value(g, n.in[0]);
    int inputs[1] = {gy[0]};
    bwd_node(g, OP_AVGPOOL_BWD, node, "grad", gx[0], inputs, 1);
}

void grad_flatten(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    const ir_node *n = &g->nodes[node];
    if (!want[0])
        return;
    int x = n->in[0];
    gx[0] = ir_add_value(g, arena_printf(g->a, "d.%s", g->values[x].name), VAL_ACT, DT_F32,
                         g->values[x].shape);
    g->values[gx[0]].batched = 1;
    g->values[gx[0]].alias = gy[0];
    g->values[gx[0]].layer = g->values[x].layer;
}

void grad_add(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    (void)g, (void)node;
    for (int i = 0; i < 2; i++)
        if (want[i])
            gx[i] = gy[0];
}

/* y = batchnorm(x): dx, dgamma, dbeta from dy, x and the saved batch
 * statistics, in one node. */
void grad_batchnorm(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    const ir_node n = g->nodes[node];
    int dx = grad_value(g, n.in[0]);
    int inputs[5] = {gy[0], n.in[0], n.in[1], n.out[1], n.out[2]}; /* dy, x, gamma, mean, invstd */
    int b = bwd_node(g, OP_BATCHNORM_BWD, node, "grad", dx, inputs, 5);
    ir_node_output(g, b, param_grad(g, n.in[1]));
    ir_node_output(g, b, param_grad(g, n.in[2]));
    if (want[0])
        gx[0] = dx;
}

/* The mask is recomputed from the same random stream. */
void grad_dropout(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    const ir_node n = g->nodes[node];
    if (!want[0])
        return;
    gx[0] = grad_value(g, n.in[0]);
    int inputs[1] = {gy[0]};
    bwd_node(g, OP_DROPOUT_BWD, node, "grad", gx[0], inputs, 1);
}

/* The gradient of each input is its slice of channels of dy. */
void grad_concat(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    int offset = 0;
    for (int j = 0; j < g->nodes[node].nin; j++) {
        const ir_node n = g->nodes[node];
        int channels = (int)g->values[n.in[j]].shape.d[1];
        if (want[j]) {
            gx[j] = grad_value(g, n.in[j]);
            int inputs[1] = {gy[0]};
            int s = bwd_node(g, OP_SLICE, node, arena_printf(g->a, "grad%d", j), gx[j], inputs, 1);
            g->nodes[s].attr.offset = offset;
        }
        offset += channels;
    }
}

void grad_global_avgpool(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    const ir_node n = g->nodes[node];
    if (!want[0])
        return;
    gx[0] = grad_value(g, n.in[0]);
    int inputs[1] = {gy[0]};
    bwd_node(g, OP_GLOBAL_AVGPOOL_BWD, node, "grad", gx[0], inputs, 1);
}

/* Activations: the derivative from the input (leaky relu, gelu) or the
 * output (sigmoid, tanh); the node gets both. */
void grad_act(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    const ir_node n = g->nodes[node];
    if (!want[0])
        return;
    gx[0] = grad_value(g, n.in[0]);
    int inputs[3] = {gy[0], n.in[0], n.out[0]};
    bwd_node(g, OP_ACT_BWD, node, "grad", gx[0], inputs, 3);
}

void grad_softmax(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    const ir_node n = g->nodes[node];
    if (!want[0])
        return;
    gx[0] = grad_value(g, n.in[0]);
    int inputs[2] = {gy[0], n.out[0]};
    bwd_node(g, OP_SOFTMAX_BWD, node, "grad", gx[0], inputs, 2);
}

void grad_mse_loss(ir_graph *g, int node, const int *gy, const int *want, int *gx)
{
    (void)gy;
    const ir_node n = g->nodes[node];
    if (!want[0])
        return;
    gx[0] = grad_value(g, n.in[0]);
    int inputs[2] = {n.in[0], n.in[1]}; /* predictions, labels */
    bwd_node(g, OP_MSE_LOSS_BWD, node, "grad", gx[0], inputs, 2);
}

/* ---- the pass ---------------------------------------------------------------------- */

/* Add contribution c to the gradient of value v. */
static void accumulate(ir_graph *g, int *grad_of, int v, int c, src_loc loc)
{
    if (grad_of[v] < 0) {
        grad_of[v] = c;
        return;
    }
    int sum = grad_value(g, v);
    int node = ir_add_node(g, OP_ADD, arena_printf(g->a, "d.%s.sum", g->values[v].name), loc,
                           g->values[v].layer);
    ir_node_input(g, node, grad_of[v]);
    ir_node_input(g, node, c);
    ir_node_output(g, node, sum);
    grad_of[v] = sum;
}

void graph_autodiff(ir_graph *g, int input_grad)
{
    int nforward = g->nnodes;
    /* Values created below are never forward values, so nvalues bounds it. */
    int nvals = g->nvalues;
    char *needs = arena_alloc(g->a, (size_t)nvals);
    for (int v = 0; v < nvals; v++) {
        const ir_value *val = &g->values[v];
        if (val->kind == VAL_PARAM && (g->params[val->param].flags & CNN_PARAM_TRAINABLE))
            needs[v] = 1;
        if (v == g->input && input_grad)
            needs[v] = 1;
    }
    for (int i = 0; i < nforward; i++) {
        const ir_node *n = &g->nodes[i];
        int any = 0;
        for (int j = 0; j < n->nin; j++)
            any |= needs[n->in[j]];
        for (int j = 0; j < n->nout; j++)
            needs[n->out[j]] = (char)any;
    }
    int *grad_of = arena_alloc(g->a, sizeof(int) * (size_t)nvals);
    for (int v = 0; v < nvals; v++)
        grad_of[v] = -1;
    for (int i = nforward - 1; i >= 0; i--) {
        const ir_node *n = &g->nodes[i];
        int gy[IR_MAX_OUT], want[IR_MAX_IN] = {0}, gx[IR_MAX_IN];
        for (int j = 0; j < IR_MAX_OUT; j++)
            gy[j] = -1;
        for (int j = 0; j < IR_MAX_IN; j++)
            gx[j] = -1;
        int any_gy = n->op == OP_SOFTMAX_XENT || n->op == OP_MSE_LOSS;
        for (int j = 0; j < n->nout; j++) {
            gy[j] = grad_of[n->out[j]];
            any_gy |= gy[j] >= 0;
        }
        int any_want = 0;
        for (int j = 0; j < n->nin; j++) {
            want[j] = needs[n->in[j]];
            any_want |= want[j];
        }
        if (!any_gy || !any_want || !op_table[n->op].backward)
            continue;
        op_table[n->op].backward(g, i, gy, want, gx);
        n = &g->nodes[i]; /* the rule may have grown the node array */
        for (int j = 0; j < n->nin; j++)
            if (gx[j] >= 0 && g->values[n->in[j]].kind != VAL_PARAM)
                accumulate(g, grad_of, n->in[j], gx[j], n->loc);
    }
    if (input_grad && g->input >= 0)
        g->input_grad = grad_of[g->input];
}
