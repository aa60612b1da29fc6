/*
 * graph.h — the network as the user wrote it (after name resolution) and
 * the graph IR built from it.
 *
 * Two levels:
 *
 *  - `network`: what sema.c makes of the AST.  A list of layers, each with
 *    its op, its input layers, its options decoded into ir_attrs, and the
 *    source locations every later error points at.  Plus the training
 *    recipe, kept as JSON for the runtime.
 *
 *  - `ir_graph`: nodes (ops) and values (tensors with static shapes).  Built
 *    from a network by graph.c in one of two modes: TRAIN (forward in
 *    training mode, loss, and — after autodiff.c — the backward pass) or
 *    INFER (forward in evaluation mode, ending at the logits).  Every node
 *    keeps the location of the .cnn line that made it, backward nodes that
 *    of their forward layer.  Nodes are in execution order.
 *
 * Tensors of activations are NCHW with the batch first; a value whose
 * `batched` flag is set only has its first n (the runtime batch) rows
 * valid.  Dense layers produce [N, F]; the loss is a scalar.  Parameters
 * use PyTorch's layouts (conv [K, C/groups, R, S], dense [out, in]).
 */
#ifndef CNNC_GRAPH_H
#define CNNC_GRAPH_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "ast.h"
#include "cnn_model.h"

typedef enum op_kind {
#define OP(id, name, kind) OP_##id,
#include "ops.def"
#undef OP
    OP_COUNT
} op_kind;

/* Options of a node, decoded; which fields matter depends on the op. */
typedef struct ir_attrs {
    int kernel[2];   /* kh, kw (conv, pooling) */
    int stride[2];   /* sh, sw */
    int pad[4];      /* top, left, bottom, right */
    int pad_same;    /* padding = same: pad[] is computed by shape inference */
    int dilation[2]; /* dh, dw */
    int groups;      /* conv */
    int filters;     /* conv output channels */
    int units;       /* dense output features */
    int bias;        /* conv/dense: has a bias */
    int expect_in;   /* conv in_channels / dense in_features to check, 0 = any */
    int chw[3];      /* input: C, H, W of one example */
    int act;         /* ACT / ACT_BWD: enum act_kind */
    double alpha;    /* leaky_relu slope, dropout p, label smoothing */
    double eps;      /* batch norm */
    double momentum; /* batch norm running statistics */
    int offset;      /* SLICE: first channel */
    int salt;        /* DROPOUT: distinguishes the random streams of layers */
    int lanes;       /* tiled ops: vector width over output channels */
    int spatial;     /* TCONV: vectors over output columns instead (schedule.c) */
    int phases;      /* TCONV: a strided convolution's backward-data, phase by
                      * phase (pack.c); stride and pad are the forward's */
    int phase_pad[2];/* TCONV phases: top and left padding of dy */
    int split;       /* TCONV_BWD_FILTER: batch parts summed in order (pack.c) */
    int mode;        /* PACK_WEIGHTS: PACK_FORWARD or PACK_FLIPPED */
    int post;        /* epilogue fused into the node (fuse.c): POST_* flags */
    /* pack.c's absorb_pads: buffers with a zero border of top, left,
     * bottom, right around the tensor (the pad a convolution needed, taken
     * over by the tensor's writer) */
    int out_pad[4];  /* BATCHNORM, BATCHNORM_BWD: output 0 written inside one */
    int in_pad[4];   /* TRANSPOSE_NHWC, TCONV (channel form), TCONV_BWD_FILTER
                      * (spatial): input 0 read inside one */
    int x_pad[4];    /* TCONV_BWD_FILTER (channel form): input 1, x */
    int add_pad[4];  /* the operand of a fused add */
    int mask_pad[4]; /* the operand of a fused relu mask */
    int stats;       /* bnstats.c: TCONV writes the batch-norm sums of each
                      * example of its output to output 1; BATCHNORM reads
                      * them (its input after the core ones) */
} ir_attrs;

/* Epilogues (fuse.c), applied in this order to each output element y of
 * the node's first output; ADD and MASK each read an operand of their own
 * at the same element, the node's last inputs: ADD's, then MASK's. */
enum {
    POST_ADD = 1,  /* y = y + a */
    POST_RELU = 2, /* y = y < 0 ? 0 : y */
    POST_MASK = 4, /* y = 0 < m ? y : 0 */
};

/* Floats of a TCONV's batch-norm sums per example and channel (bnstats.c):
 * two doubles, each kept as hi = (float)d and lo = (float)(d - hi). */
#define STATS_FLOATS 4

/* How PACK_WEIGHTS reorders a weight tensor (see pack.c). */
enum pack_mode { PACK_FORWARD, PACK_FLIPPED, PACK_PHASES };

/* Largest batch whose dense layers are dot products of unpacked rows. */
#define DENSE_DOT_BATCH 4

/* Parts of the batch a tiled weight gradient sums separately (pack.c). */
#define FILTER_SPLIT 4

/* Activations of the ACT op (relu has an op of its own). */
enum act_kind { ACT_LEAKY_RELU, ACT_SIGMOID, ACT_TANH, ACT_GELU };

typedef struct init_spec {
    int kind;      /* enum cnn_init_kind */
    double a, b;   /* see cnn_model.h */
    int set;       /* written by the user (vs default) */
} init_spec;

typedef struct layer {
    const char *name;
    src_loc loc;          /* the layer's name in `name = op(...)` */
    src_loc op_loc;       /* the op name */
    op_kind op;
    int inputs[8];        /* indices into network.layers */
    src_loc input_locs[8];
    int ninputs;
    ir_attrs attr;
    init_spec init;       /* weights */
    init_spec bias_init;
} layer;

typedef struct network {
    const char *name;
    src_loc loc;
    layer *layers;
    int nlayers;
    int input;            /* index of the input layer */
    int loss;             /* index of the loss layer */
    int classes;          /* from `classes = N`, or 0 (taken from the loss input) */
    src_loc classes_loc;
    int batch;            /* from the train block (default 64) */
    json_t *train;        /* the train block with defaults, for the runtime */
    src_loc mean_loc;     /* where the train block's mean was given */
} network;

/* ---- graph IR ---------------------------------------------------------------- */

typedef enum val_kind {
    VAL_ACT,    /* intermediate tensor in the arena */
    VAL_INPUT,  /* the x argument */
    VAL_LABELS, /* the labels argument (int32) */
    VAL_PARAM,  /* a slice of the params array */
    VAL_GRAD,   /* a slice of the grads array */
    VAL_OUTPUT, /* the out argument of forward() */
} val_kind;

typedef enum dtype { DT_F32, DT_I32 } dtype;

typedef struct ir_shape {
    int ndim;       /* 0 (scalar) .. 4 */
    int64_t d[4];
} ir_shape;

typedef struct ir_value {
    const char *name;
    val_kind kind;
    dtype type;
    ir_shape shape;
    int batched;     /* d[0] is the batch: only the first n rows are valid */
    int param;       /* VAL_PARAM / VAL_GRAD: index into graph.params, else -1 */
    int producer;    /* node that writes it, -1 for arguments and params */
    int alias;       /* value whose memory this one shares (a view), or -1 */
    int layer;       /* network layer it belongs to, or -1 */
    int64_t offset;  /* VAL_ACT: byte offset in the arena (memplan.c) */
} ir_value;

typedef struct ir_param {
    const char *name;  /* checkpoint name, "conv1.weight" */
    const char *layer;
    int kind;          /* enum cnn_param_kind */
    unsigned flags;    /* CNN_PARAM_TRAINABLE | CNN_PARAM_DECAY */
    ir_shape shape;
    int64_t offset;    /* in floats */
    int64_t size;
    int64_t fan_in, fan_out;
    init_spec init;
    int value;         /* its VAL_PARAM value */
    int grad;          /* its VAL_GRAD value, or -1 */
} ir_param;

#define IR_MAX_IN 8
#define IR_MAX_OUT 3

typedef struct ir_node {
    op_kind op;
    const char *name;
    src_loc loc;
    int in[IR_MAX_IN];
    int nin;
    int out[IR_MAX_OUT];
    int nout;
    ir_attrs attr;
    int layer;         /* network layer it belongs to */
    int group;         /* fusion group (kernel) it was placed in, -1 before fusion */
    const char *fused; /* names of the nodes fused into it ("relu1"), or NULL */
} ir_node;

/* How many operands n's epilogue reads (0, 1 or 2): its last inputs. */
static inline int ir_post_operands(const ir_node *n)
{
    return ((n->attr.post & POST_ADD) != 0) + ((n->attr.post & POST_MASK) != 0);
}

/* The operand of n's fused add (POST_ADD set). */
static inline int ir_add_operand(const ir_node *n)
{
    return n->in[n->nin - ir_post_operands(n)];
}

/* The operand of n's fused relu mask (POST_MASK set). */
static inline int ir_mask_operand(const ir_node *n)
{
    return n->in[n->nin - 1];
}

/* Inputs of n that its op reads, without the sums bnstats.c gave a batch
 * norm and its epilogue's operands (in that order after them). */
static inline int ir_nin_core(const ir_node *n)
{
    return n->nin - ir_post_operands(n) - (n->op == OP_BATCHNORM && n->attr.stats);
}

typedef enum graph_mode { GRAPH_TRAIN, GRAPH_INFER } graph_mode;

typedef struct ir_graph {
    arena *a;
    const network *net;
    graph_mode mode;
    int batch;
    ir_node *nodes;
    int nnodes, cap_nodes;
    ir_value *values;
    int nvalues, cap_values;
    ir_param *params;
    int nparams;
    int64_t param_floats;
    int input, labels;   /* argument values */
    int logits;          /* value feeding the loss (TRAIN) or the output (INFER) */
    int loss;            /* scalar loss value (TRAIN), -1 otherwise */
    int output;          /* VAL_OUTPUT (INFER), -1 otherwise */
    int nforward;        /* nodes [0, nforward) are the forward pass and loss */
    int input_grad;      /* value of d(loss)/d(x) if requested, else -1 */
} ir_graph;

/* ---- ops: one row per op ----------------------------------------------------- */

typedef struct lprogram lprogram;

typedef struct op_info {
    const char *name;
    /* Shapes of the outputs from the inputs and attributes; reports errors
     * against the layer and returns -1.  NULL: output shape = input 0's. */
    int (*infer)(ir_graph *g, ir_node *n, diag *d);
    /* Append the backward nodes of n.  gy[i] is the gradient value of output
     * i (or -1); fill gx[j] with the gradient of input j when
     * g->values[n->in[j]] needs one (want[j]), writing parameter gradients
     * straight into their VAL_GRAD value.  NULL: not differentiable. */
    void (*backward)(ir_graph *g, int node, const int *gy, const int *want, int *gx);
    /* Append the loop nest computing n to the program. */
    void (*lower)(lprogram *p, const ir_node *n);
    /* Floating-point operations per example (multiply-add = 2). */
    int64_t (*flops)(const ir_graph *g, const ir_node *n);
    /* Epilogues (POST_*) its lowering applies, for fuse.c. */
    unsigned post;
} op_info;

extern const op_info op_table[OP_COUNT];
const char *op_name(op_kind op);

/* ---- building and printing ----------------------------------------------- */

int ir_add_value(ir_graph *g, const char *name, val_kind kind, dtype type, ir_shape shape);
int ir_add_node(ir_graph *g, op_kind op, const char *name, src_loc loc, int layer);
void ir_node_input(ir_graph *g, int node, int value);
void ir_node_output(ir_graph *g, int node, int value);
ir_shape ir_shape4(int64_t n, int64_t c, int64_t h, int64_t w);
ir_shape ir_shape2(int64_t n, int64_t f);
int64_t ir_shape_size(ir_shape s);
/* Per-example element count of a batched value (everything but d[0]). */
int64_t ir_row_size(const ir_value *v);
/* Write "[64, 6, 28, 28]". */
void ir_shape_print(FILE *out, ir_shape s);
const char *ir_shape_str(arena *a, ir_shape s);

/* Build the forward graph of net (ending at the loss in TRAIN mode, at the
 * output in INFER mode).  Runs shape inference; errors go to d. */
ir_graph *graph_build(arena *a, const network *net, graph_mode mode, diag *d);
/* Append the backward pass to a TRAIN graph (autodiff.c).  With input_grad,
 * also compute d(loss)/d(x) into g->input_grad (tests and saliency). */
void graph_autodiff(ir_graph *g, int input_grad);

void graph_print(FILE *out, const ir_graph *g);
void graph_print_dot(FILE *out, const ir_graph *g);
/* The forward network as JSON: layers with ops, inputs and attributes,
 * parameters, input shape, classes and the train block (--emit json). */
void graph_print_json(FILE *out, const ir_graph *g);
/* The layer table of cnnc --summary. */
/* A copy of g's node and value arrays (the graph before a rewrite). */
ir_graph *graph_copy(arena *a, const ir_graph *g);
/* Hash of the architecture: layer ops, attributes and parameter shapes. */
uint64_t graph_arch_hash(const ir_graph *g);

/* pack.c: rewrite the convolutions and dense layers that have tiled
 * kernels into them, with the padding and weight packing they need as nodes
 * of their own (so memory planning sees their buffers). */
typedef struct target_desc target_desc;
void graph_prepare_tiled(ir_graph *g, const target_desc *t);

/* fuse.c: fold element-wise ops (relu, residual add, relu's backward) into
 * the kernel producing their input as epilogues; each decision is printed
 * to report when it is not NULL.  Returns the number of nodes fused. */
int graph_fuse(ir_graph *g, FILE *report);
/* pack.c, after fusion: a batch norm writes its output or input gradient
 * inside the zero border a convolution pads it with, where every reader
 * can read it there; the pads go (reported to report when not NULL). */
void graph_absorb_pads(ir_graph *g, FILE *report);
/* bnstats.c, after graph_absorb_pads: a training batch norm's sums over
 * each example computed by the convolution that writes its input, while
 * the example is in cache; reported to report when not NULL.  Returns how
 * many batch norms read such sums. */
int graph_bn_stats(ir_graph *g, FILE *report);
/* Max pooling whose windows neither overlap nor need padding: its backward
 * writes each input element once (lower.c), so it can take an epilogue. */
int maxpool_windows_disjoint(const ir_graph *g, const ir_node *n);

/* The tiled node whose kernel pads each example for stride-1 pad node n
 * (pack.c): the first that reads the padded tensor, where that is a tiled
 * convolution reading it as its input (not phase by phase) or a weight
 * gradient of one group reading it as x; else -1.  That kernel pads each
 * example just before its tiles read it (still in L2); lower_pad emits no
 * kernel for n, and memplan keeps n's input alive up to that node. */
int pad_inlined(const ir_graph *g, const ir_node *n);

/* Offset of element (k, c, r, s) of a weight tensor packed for tiled
 * kernels: per group, blocks of `lanes` output channels, each block
 * [c][r][s][lanes in the block].  Shared by the packing kernel, the
 * tiled kernels and the reference interpreter. */
int64_t pack_offset(int64_t k, int64_t c, int64_t r, int64_t s, int64_t kg, int64_t cg, int64_t R,
                    int64_t S, int lanes);

/* The backward-data of a convolution with stride s > 1, by phases: the
 * outputs h = phase + s*j of one phase along an axis receive only the taps
 * r = first + s*t, and are a stride-1 correlation of the (padded) output
 * gradient with those taps in reverse order: output j, tap t' reads dy
 * index j + shift + t'.  (pack.c; shared with schedule.c, lower_layers.c
 * and the reference interpreter.) */
typedef struct phase_axis {
    int first;     /* first kernel tap of the phase */
    int taps;      /* how many */
    int64_t outs;  /* outputs of the phase: phase + stride*j < out */
    int64_t shift;
} phase_axis;
/* Phase `phase` along an axis of kernel size k, the forward's stride and
 * leading pad, out outputs (dx), dy padded by pad_lo in front. */
phase_axis phase_axis_of(int phase, int stride, int pad, int k, int64_t out, int64_t pad_lo);
/* The padding dy needs in front and behind for every phase (in: dy's size). */
void phase_padding(int stride, int pad, int k, int64_t out, int64_t in, int64_t *lo, int64_t *hi);
/* First element of phase (ph, pw)'s weights in a PACK_PHASES buffer (per
 * phase: [group][dy channel][t'][u'][dx channel in group]). */
int64_t phase_pack_base(int ph, int pw, const int stride[2], const int pad[2], int R, int S,
                        int64_t per_tap);

/* Spatial output size of a window op along one axis. */
int64_t window_out(int64_t in, int k, int stride, int pad_lo, int pad_hi, int dilation);

#endif
