/*
 * bnstats.c — a training batch norm's statistics summed by the
 * convolution that writes its input, example by example, while each
 * example is in cache (run at -O1 and up on the train graph, after
 * graph_absorb_pads, before memory planning).
 *
 * A batch norm needs sums over the whole batch before it can write a
 * single output.  On its own, its kernel reads x from memory twice: once
 * for the sums, once for the output.  The tiled convolution that writes x
 * works one example at a time, and an example's output is still in L2
 * when its last tile is done: that kernel sums the example's channels
 * right then (lower_layers.c's bn_example_stats), into a small
 * [N][C][STATS_FLOATS] value that the batch norm reads instead of x.
 *
 * Per example i and channel c, in double (each stored as two floats, hi
 * and lo: 48 bits of the double), with the shift K = y[i, c, 0, 0] (inside
 * the data: no cancellation):
 *   mean_i = K + sum(y - K) / HW,   M2_i = sum((y - K)^2) - sum(y - K)^2 / HW.
 * The batch norm combines them as Chan et al.'s parallel variance does:
 *   mean = sum_i mean_i / N,   M2 = sum_i M2_i + HW sum_i (mean_i - mean)^2.
 * Every sum is in a fixed order, so the results do not depend on the
 * number of threads.
 *
 * Measured on ResNet-8's train step (microseconds per call, kernels.py, 4
 * rounds): its 32x32 batch norms 593 -> 441, 537 -> 418, 649 -> 517 for
 * their convolutions' 681 -> 712, 1737 -> 1827, 1778 -> 1830; on the
 * 8x8 layers the convolutions grew by more (MIN_RUN); the whole step (build/bench train, 5
 * alternating rounds) 3 064 -> 3 164 img/s median, faster in 4 of 5.
 *
 * The backward pass's sums (dy and (x - mean) dy) stay in the batch norm's
 * backward kernel: done in the backward-data convolution that writes dy,
 * they still read x from memory, and that convolution grew by as much as
 * the batch norm saved (measured, not kept).  Batch norms whose input
 * comes from anything but a tiled convolution keep their own pass.
 */
#include "cnnc.h"

/* The shortest run of a channel (H*W) whose sums pay in the convolution:
 * each channel of each example costs its lanes' reduction and four
 * stores there, a fixed cost that the 8x8 maps' 64 elements do not repay
 * (ResNet-8's three 8x8 layers, microseconds per call, 4 rounds: 94 less
 * in all with their batch norms' own pass; 16x16 about even, 32x32 well
 * ahead). */
#define MIN_RUN 256

/* The tiled convolution writing value v (every form of it works one
 * example per iteration of its parallel loop, its output without a
 * border), or NULL. */
static ir_node *summing_producer(ir_graph *g, int v)
{
    int p = g->values[v].producer;
    if (p < 0)
        return NULL;
    ir_node *n = &g->nodes[p];
    const ir_value *y = &g->values[v];
    if (n->op != OP_TCONV || n->attr.stats || n->nout != 1 || n->out[0] != v ||
        y->shape.ndim != 4 || y->shape.d[2] * y->shape.d[3] < MIN_RUN)
        return NULL;
    return n;
}

int graph_bn_stats(ir_graph *g, FILE *report)
{
    int count = 0;
    for (int i = 0; i < g->nnodes; i++) {
        ir_node *b = &g->nodes[i];
        ir_node *conv = b->op == OP_BATCHNORM && !b->attr.stats ? summing_producer(g, b->in[0])
                                                                : NULL;
        if (!conv)
            continue;
        const ir_value *x = &g->values[b->in[0]];
        ir_shape s = ir_shape4(x->shape.d[0], x->shape.d[1], STATS_FLOATS, 1);
        int v = ir_add_value(g, arena_printf(g->a, "%s.stats", b->name), VAL_ACT, DT_F32, s);
        g->values[v].batched = 1;
        g->values[v].layer = b->layer;
        conv->attr.stats = 1;
        ir_node_output(g, (int)(conv - g->nodes), v);
        /* the sums go after the core inputs, before the epilogue's operands */
        b = &g->nodes[i];
        ir_node_input(g, i, v);
        for (int k = b->nin - 1; k > b->nin - 1 - ir_post_operands(b); k--) {
            b->in[k] = b->in[k - 1];
            b->in[k - 1] = v;
        }
        b->attr.stats = 1;
        count++;
        if (report)
            fprintf(report, "cnnc: train: %s (%s) sums each example's channels for %s (%s)\n",
                    conv->name, op_name(conv->op), b->name, op_name(b->op));
    }
    return count;
}
