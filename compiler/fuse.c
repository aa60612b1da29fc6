/*
 * fuse.c — fusing element-wise ops into the kernel that produces their
 * input (run at -O1 and up, after pack.c, before memory planning).
 *
 * Each node becomes one kernel, and an element-wise op on its own is a
 * full pass over memory for a handful of instructions per element.  When
 * such an op is the only reader of a value, the node that writes the value
 * can apply the op to each element just before storing it — an epilogue —
 * and the value never exists.  Three epilogues cover what CNNs chain:
 *
 *   POST_ADD   y = y + a         a residual add (forward), or the sum of a
 *                                value's gradients (backward: a residual
 *                                connection's two paths meet)
 *   POST_RELU  y = max(y, 0)     the activation after conv/dense/batch norm
 *   POST_MASK  y = m > 0 ? y : 0 relu's backward, m = the relu's output
 *
 * applied in that order; a and m are the node's last inputs (graph.h).
 * ResNet's backward chains all but the relu: the backward-data convolution
 * of a block's first layer, plus the gradient that came down the shortcut,
 * masked by the relu before the block -- one kernel instead of the
 * convolution and a pass of add and mask over four tensors (though the
 * convolution, reading two more tensors, grows by most of what the pass
 * took).  The rules, checked per candidate:
 *
 *   - the op's input has no other reader (no other node, not the logits,
 *     loss or input gradient the entry points return, not a view);
 *   - the producer's kernel can apply the epilogue (op_table's `post`
 *     mask, narrowed for shapes whose kernel accumulates into its output:
 *     max pooling backward with overlapping windows or padding);
 *   - the operand of ADD or MASK is computed before the producer runs;
 *   - each epilogue at most once per node, and ADD before RELU and MASK
 *     (add-then-relu is the only order).
 *
 * The fused op's node disappears; the producer writes the op's output
 * value.  Nothing about what is computed changes, only where: results are
 * bit-identical to -O0 (every element goes through the same float
 * operations).  With a report stream, each decision is printed (cnnc -v).
 */
#include <string.h>

#include "cnnc.h"
#include "ops_impl.h"

/* Readers of each value (views count as readers of their base). */
static void count_uses(const ir_graph *g, int *uses)
{
    memset(uses, 0, sizeof(int) * (size_t)g->nvalues);
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            uses[g->nodes[i].in[j]]++;
    for (int v = 0; v < g->nvalues; v++)
        if (g->values[v].alias >= 0)
            uses[g->values[v].alias] += 1 + uses[v];
    int keep[4] = {g->loss, g->logits, g->output, g->input_grad};
    for (int k = 0; k < 4; k++)
        if (keep[k] >= 0)
            uses[keep[k]] += 2;
}

/* Can node n apply epilogue `post`? */
static int accepts(const ir_graph *g, const ir_node *n, int post)
{
    if (!(op_table[n->op].post & post))
        return 0;
    if (n->attr.post & post)
        return 0; /* one of each */
    if (post == POST_ADD && (n->attr.post & (POST_RELU | POST_MASK)))
        return 0; /* the add comes first */
    if (n->op == OP_MAXPOOL_BWD && !maxpool_windows_disjoint(g, n))
        return 0;
    /* a strided backward-data, phase by phase, stores every sw-th column,
     * and an added operand would be gathered the same way: ResNet-8's
     * c3a.grad_input (phases vectorized over channels) took 580 us more
     * with its gradient sum than without, the sum's own pass 384; c2a's
     * (over columns) 2040 -> 2127 with it.  Contiguous stores took it:
     * c1a's 2339 -> 2229 (kernels.py, 5 rounds). */
    if (post == POST_ADD && n->op == OP_TCONV && n->attr.phases)
        return 0;
    return 1;
}

typedef struct fuser {
    ir_graph *g;
    int *uses;
    char *dead;   /* nodes fused away */
    FILE *report;
    int fused;
} fuser;

/* Fuse node `at` (an element-wise op reading value `input`, with extra
 * operand `operand` or -1) into the producer of `input` as epilogue post. */
static int try_fuse(fuser *f, int at, int input, int operand, int post)
{
    ir_graph *g = f->g;
    ir_node *op = &g->nodes[at];
    int host = g->values[input].producer;
    const char *why = NULL;
    if (host < 0)
        why = "not fused: its input is an argument or parameter";
    else if (f->uses[input] != 1)
        why = "not fused: its input has other readers";
    else if (g->values[input].alias >= 0 || g->values[input].kind != VAL_ACT)
        why = "not fused: its input is a view or an argument";
    else if (!accepts(g, &g->nodes[host], post))
        why = arena_printf(g->a, "not fused: the kernel of %s (%s) cannot apply it",
                           g->nodes[host].name, op_name(g->nodes[host].op));
    else if (operand >= 0 && g->values[operand].producer > host)
        why = "not fused: its other operand is computed after the producer";
    if (why) {
        if (f->report)
            fprintf(f->report, "cnnc: %s: %s (%s): %s\n",
                    g->mode == GRAPH_TRAIN ? "train" : "infer", op->name, op_name(op->op), why);
        return 0;
    }
    ir_node *h = &g->nodes[host];
    if (operand >= 0)
        h->in[h->nin++] = operand;
    h->attr.post |= post;
    h->out[0] = op->out[0];
    g->values[op->out[0]].producer = host;
    g->values[input].producer = -1; /* never written now */
    h->fused = h->fused ? arena_printf(g->a, "%s+%s", h->fused, op->name) : op->name;
    f->dead[at] = 1;
    f->fused++;
    if (f->report)
        fprintf(f->report, "cnnc: %s: %s (%s) fused into %s (%s)\n",
                g->mode == GRAPH_TRAIN ? "train" : "infer", op->name, op_name(op->op), h->name,
                op_name(h->op));
    return 1;
}

/* Drop the dead nodes, keeping order; producers and nforward follow. */
static void compact(fuser *f)
{
    ir_graph *g = f->g;
    int *map = calloc((size_t)g->nnodes, sizeof *map);
    int kept = 0, forward = 0;
    for (int i = 0; i < g->nnodes; i++) {
        map[i] = -1;
        if (f->dead[i])
            continue;
        map[i] = kept;
        g->nodes[kept++] = g->nodes[i];
        if (i < g->nforward)
            forward++;
    }
    for (int v = 0; v < g->nvalues; v++)
        if (g->values[v].producer >= 0)
            g->values[v].producer = map[g->values[v].producer];
    g->nnodes = kept;
    g->nforward = forward;
    free(map);
}

int graph_fuse(ir_graph *g, FILE *report)
{
    int n0 = g->nnodes;
    fuser f = {g, calloc((size_t)g->nvalues, sizeof(int)), calloc((size_t)n0, 1), report, 0};
    count_uses(g, f.uses);
    /* residual adds first (they must precede the relu that usually follows) */
    for (int i = 0; i < n0; i++) {
        ir_node *n = &g->nodes[i];
        if (n->op != OP_ADD || n->attr.post)
            continue;
        int a = n->in[0], b = n->in[1];
        /* into the later producer; the earlier value is the operand */
        if (g->values[a].producer < g->values[b].producer) {
            int t = a;
            a = b;
            b = t;
        }
        if (!try_fuse(&f, i, a, b, POST_ADD))
            continue;
        count_uses(g, f.uses);
    }
    for (int i = 0; i < n0; i++) {
        ir_node *n = &g->nodes[i];
        if (f.dead[i])
            continue;
        if (n->op == OP_RELU && try_fuse(&f, i, n->in[0], -1, POST_RELU))
            count_uses(g, f.uses);
        else if (n->op == OP_RELU_BWD && try_fuse(&f, i, n->in[0], n->in[1], POST_MASK))
            count_uses(g, f.uses);
    }
    int fused = f.fused;
    compact(&f);
    free(f.uses);
    free(f.dead);
    return fused;
}
