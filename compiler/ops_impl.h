/*
 * ops_impl.h — the functions behind op_table (ops.c), one set per op:
 * shape rules (shape.c), gradient rules (autodiff.c), lowerings (lower.c)
 * and FLOP counts (ops.c).  Private to the compiler.
 */
#ifndef CNNC_OPS_IMPL_H
#define CNNC_OPS_IMPL_H

#include "cnnc.h"

int graph_add_param(ir_graph *g, int layer_index, const char *suffix, int kind, unsigned flags,
                    ir_shape shape, int64_t fan_in, int64_t fan_out, init_spec init);

int infer_conv2d(ir_graph *g, ir_node *n, diag *d);
int infer_dense(ir_graph *g, ir_node *n, diag *d);
int infer_same(ir_graph *g, ir_node *n, diag *d);
int infer_pool(ir_graph *g, ir_node *n, diag *d);
int infer_flatten(ir_graph *g, ir_node *n, diag *d);
int infer_add(ir_graph *g, ir_node *n, diag *d);
int infer_batchnorm(ir_graph *g, ir_node *n, diag *d);
int infer_concat(ir_graph *g, ir_node *n, diag *d);
int infer_global_avgpool(ir_graph *g, ir_node *n, diag *d);
int infer_flat(ir_graph *g, ir_node *n, diag *d);

void grad_softmax_xent(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_conv2d(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_dense(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_relu(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_maxpool(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_avgpool(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_flatten(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_add(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_batchnorm(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_dropout(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_concat(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_global_avgpool(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_act(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_softmax(ir_graph *g, int node, const int *gy, const int *want, int *gx);
void grad_mse_loss(ir_graph *g, int node, const int *gy, const int *want, int *gx);

void lower_conv2d(lprogram *p, const ir_node *n);
void lower_conv2d_bwd_data(lprogram *p, const ir_node *n);
void lower_conv2d_bwd_filter(lprogram *p, const ir_node *n);
void lower_dense(lprogram *p, const ir_node *n);
void lower_dense_bwd_data(lprogram *p, const ir_node *n);
void lower_dense_bwd_weight(lprogram *p, const ir_node *n);
void lower_bias_bwd(lprogram *p, const ir_node *n);
void lower_relu(lprogram *p, const ir_node *n);
void lower_relu_bwd(lprogram *p, const ir_node *n);
void lower_maxpool(lprogram *p, const ir_node *n);
void lower_maxpool_bwd(lprogram *p, const ir_node *n);
void lower_avgpool(lprogram *p, const ir_node *n);
void lower_avgpool_bwd(lprogram *p, const ir_node *n);
void lower_softmax_xent(lprogram *p, const ir_node *n);
void lower_softmax_xent_bwd(lprogram *p, const ir_node *n);
void lower_add(lprogram *p, const ir_node *n);
void lower_copy(lprogram *p, const ir_node *n);
void lower_nothing(lprogram *p, const ir_node *n);
void lower_batchnorm(lprogram *p, const ir_node *n);
void lower_batchnorm_bwd(lprogram *p, const ir_node *n);
void lower_batchnorm_eval(lprogram *p, const ir_node *n);
void lower_bn_fold(lprogram *p, const ir_node *n);
void lower_dropout(lprogram *p, const ir_node *n);
void lower_dropout_bwd(lprogram *p, const ir_node *n);
void lower_concat(lprogram *p, const ir_node *n);
void lower_slice(lprogram *p, const ir_node *n);
void lower_global_avgpool(lprogram *p, const ir_node *n);
void lower_global_avgpool_bwd(lprogram *p, const ir_node *n);
void lower_act(lprogram *p, const ir_node *n);
void lower_act_bwd(lprogram *p, const ir_node *n);
void lower_softmax(lprogram *p, const ir_node *n);
void lower_softmax_bwd(lprogram *p, const ir_node *n);
void lower_mse_loss(lprogram *p, const ir_node *n);
void lower_mse_loss_bwd(lprogram *p, const ir_node *n);
void lower_pad(lprogram *p, const ir_node *n);
void lower_pack_weights(lprogram *p, const ir_node *n);
void lower_transpose_nhwc(lprogram *p, const ir_node *n);

#endif
