/*
 * ops.c — the op table: for every op of ops.def, its shape rule, gradient
 * rule, lowering and FLOP count.  Adding an op means a row in ops.def, a
 * row here, and the functions it names.
 */
#include "cnnc.h"
#include "ops_impl.h"

static const ir_value *in_val(const ir_graph *g, const ir_node *n, int i)
{
    return &g->values[n->in[i]];
}

static const ir_value *out_val(const ir_graph *g, const ir_node *n)
{
    return &g->values[n->out[0]];
}

/* Multiply-adds of a convolution per example, counted on the forward
 * shapes (the same for its backward-data and backward-filter passes). */
static int64_t conv_macs(const ir_graph *g, const ir_node *n)
{
    const ir_value *w, *y;
    switch (n->op) {
    case OP_CONV2D:
    case OP_TCONV:
        w = in_val(g, n, 1), y = out_val(g, n);
        break;
    case OP_TCONV_BWD_FILTER: /* dy in NHWC, dW */
        return ir_shape_size(out_val(g, n)->shape) * ir_row_size(in_val(g, n, 0)) /
               out_val(g, n)->shape.d[0];
    case OP_CONV2D_BWD_DATA:
        w = in_val(g, n, 1), y = in_val(g, n, 0);
        break;
    default: /* OP_CONV2D_BWD_FILTER: dy, x -> dW */
        w = out_val(g, n), y = in_val(g, n, 0);
        break;
    }
    return ir_shape_size(w->shape) * y->shape.d[2] * y->shape.d[3];
}

static int64_t flops_conv(const ir_graph *g, const ir_node *n)
{
    return 2 * conv_macs(g, n);
}

static int64_t flops_dense(const ir_graph *g, const ir_node *n)
{
    const ir_value *w = n->op == OP_DENSE_BWD_WEIGHT ? out_val(g, n) : in_val(g, n, 1);
    return 2 * ir_shape_size(w->shape); /* TDENSE: the packed weights, as many */
}

/* One operation per output element. */
static int64_t flops_elementwise(const ir_graph *g, const ir_node *n)
{
    return ir_row_size(out_val(g, n));
}

/* One per input element (reductions). */
static int64_t flops_input(const ir_graph *g, const ir_node *n)
{
    return ir_row_size(in_val(g, n, 0));
}

static int64_t flops_pool(const ir_graph *g, const ir_node *n)
{
    const ir_value *y = n->op == OP_MAXPOOL || n->op == OP_AVGPOOL ? out_val(g, n)
                                                                   : in_val(g, n, 0);
    return ir_row_size(y) * n->attr.kernel[0] * n->attr.kernel[1];
}

static int64_t flops_softmax(const ir_graph *g, const ir_node *n)
{
    return 5 * ir_row_size(in_val(g, n, 0));
}

/* Statistics, normalization: a few passes over the input. */
static int64_t flops_bn(const ir_graph *g, const ir_node *n)
{
    return 6 * ir_row_size(in_val(g, n, n->op == OP_BATCHNORM_BWD ? 1 : 0));
}

/* Transcendental activations cost more than one operation; count ten. */
static int64_t flops_act(const ir_graph *g, const ir_node *n)
{
    return (n->attr.act == ACT_LEAKY_RELU ? 1 : 10) * ir_row_size(out_val(g, n));
}

const op_info op_table[OP_COUNT] = {
    [OP_INPUT] = {"input", NULL, NULL, lower_nothing, NULL},
    [OP_CONV2D] = {"conv2d", infer_conv2d, grad_conv2d, lower_conv2d, flops_conv,
                   POST_ADD | POST_RELU | POST_MASK},
    [OP_DENSE] = {"dense", infer_dense, grad_dense, lower_dense, flops_dense,
                  POST_ADD | POST_RELU},
    [OP_RELU] = {"relu", infer_same, grad_relu, lower_relu, flops_elementwise},
    [OP_MAXPOOL] = {"maxpool", infer_pool, grad_maxpool, lower_maxpool, flops_pool, POST_RELU},
    [OP_AVGPOOL] = {"avgpool", infer_pool, grad_avgpool, lower_avgpool, flops_pool, POST_RELU},
    [OP_FLATTEN] = {"flatten", infer_flatten, grad_flatten, lower_nothing, NULL},
    [OP_ADD] = {"add", infer_add, grad_add, lower_add, flops_elementwise, POST_RELU | POST_MASK},
    [OP_SOFTMAX_XENT] = {"softmax_xent", NULL, grad_softmax_xent, lower_softmax_xent,
                         flops_softmax},
    [OP_SOFTMAX_XENT_BWD] = {"softmax_xent_bwd", NULL, NULL, lower_softmax_xent_bwd,
                             flops_elementwise},
    [OP_CONV2D_BWD_DATA] = {"conv2d_bwd_data", NULL, NULL, lower_conv2d_bwd_data, flops_conv},
    [OP_CONV2D_BWD_FILTER] = {"conv2d_bwd_filter", NULL, NULL, lower_conv2d_bwd_filter,
                              flops_conv},
    [OP_BIAS_BWD] = {"bias_bwd", NULL, NULL, lower_bias_bwd, flops_input},
    [OP_DENSE_BWD_DATA] = {"dense_bwd_data", NULL, NULL, lower_dense_bwd_data, flops_dense,
                           POST_MASK},
    [OP_DENSE_BWD_WEIGHT] = {"dense_bwd_weight", NULL, NULL, lower_dense_bwd_weight,
                             flops_dense},
    [OP_RELU_BWD] = {"relu_bwd", NULL, NULL, lower_relu_bwd, flops_elementwise},
    [OP_MAXPOOL_BWD] = {"maxpool_bwd", NULL, NULL, lower_maxpool_bwd, flops_pool, POST_MASK},
    [OP_AVGPOOL_BWD] = {"avgpool_bwd", NULL, NULL, lower_avgpool_bwd, flops_pool},
    [OP_COPY] = {"copy", NULL, NULL, lower_copy, NULL},
    [OP_BATCHNORM] = {"batchnorm", infer_batchnorm, grad_batchnorm, lower_batchnorm, flops_bn,
                      POST_ADD | POST_RELU},
    [OP_BATCHNORM_EVAL] = {"batchnorm_eval", infer_batchnorm, NULL, lower_batchnorm_eval,
                           flops_elementwise, POST_ADD | POST_RELU},
    [OP_BN_FOLD] = {"bn_fold", NULL, NULL, lower_bn_fold, NULL},
    [OP_BATCHNORM_BWD] = {"batchnorm_bwd", NULL, NULL, lower_batchnorm_bwd, flops_bn},
    [OP_DROPOUT] = {"dropout", infer_same, grad_dropout, lower_dropout, flops_elementwise},
    [OP_DROPOUT_BWD] = {"dropout_bwd", NULL, NULL, lower_dropout_bwd, flops_elementwise},
    [OP_CONCAT] = {"concat", infer_concat, grad_concat, lower_concat, NULL},
    [OP_SLICE] = {"slice", NULL, NULL, lower_slice, NULL},
    [OP_GLOBAL_AVGPOOL] = {"global_avgpool", infer_global_avgpool, grad_global_avgpool,
                           lower_global_avgpool, flops_input, POST_RELU},
    [OP_GLOBAL_AVGPOOL_BWD] = {"global_avgpool_bwd", NULL, NULL, lower_global_avgpool_bwd,
                               flops_elementwise, POST_MASK},
    [OP_ACT] = {"act", infer_same, grad_act, lower_act, flops_act},
    [OP_ACT_BWD] = {"act_bwd", NULL, NULL, lower_act_bwd, flops_act},
    [OP_SOFTMAX] = {"softmax", infer_flat, grad_softmax, lower_softmax, flops_softmax},
    [OP_SOFTMAX_BWD] = {"softmax_bwd", NULL, NULL, lower_softmax_bwd, flops_elementwise},
    [OP_MSE_LOSS] = {"mse_loss", NULL, grad_mse_loss, lower_mse_loss, flops_input},
    [OP_MSE_LOSS_BWD] = {"mse_loss_bwd", NULL, NULL, lower_mse_loss_bwd, flops_elementwise},
    /* the tiled forms (pack.c, schedule.c); only their lowering is special */
    [OP_PAD] = {"pad", NULL, NULL, lower_pad, NULL},
    [OP_PACK_WEIGHTS] = {"pack_weights", NULL, NULL, lower_pack_weights, NULL},
    [OP_TRANSPOSE_NHWC] = {"transpose_nhwc", NULL, NULL, lower_transpose_nhwc, NULL},
    [OP_TCONV] = {"conv2d_tiled", NULL, NULL, lower_nothing, flops_conv,
                  POST_ADD | POST_RELU | POST_MASK},
    [OP_TCONV_BWD_FILTER] = {"conv2d_bwd_filter_tiled", NULL, NULL, lower_nothing, flops_conv},
    [OP_TDENSE] = {"dense_tiled", NULL, NULL, lower_nothing, flops_dense, POST_ADD | POST_RELU},
};
