/*
 * nets.c — small networks that together use every op and option; shared by
 * the compiled-vs-reference tests and the gradient checks.
 */
#include "nets.h"

#define TRAIN_BLOCK "train { batch = 5 }\n"

const net_case test_nets[] = {
    {"conv_basic",
     "network conv_basic {\n"
     "  x = input(3, 9, 11)\n"
     "  c = conv2d(x, filters = 5, kernel = 3, padding = 1)\n"
     "  r = relu(c)\n"
     "  f = flatten(r)\n"
     "  d = dense(f, units = 4)\n"
     "  loss = softmax_cross_entropy(d)\n"
     "}\n" TRAIN_BLOCK},
    {"conv_strides",
     "network conv_strides {\n"
     "  x = input(2, 13, 10)\n"
     "  a = conv2d(x, filters = 4, kernel = [2, 3], stride = 2)\n"
     "  b = conv2d(a, filters = 3, kernel = 3, stride = [3, 1], padding = [1, 0, 2, 1])\n"
     "  f = flatten(b)\n"
     "  d = dense(f, units = 3)\n"
     "  loss = softmax_cross_entropy(d)\n"
     "}\n" TRAIN_BLOCK},
    {"conv_same",
     "network conv_same {\n"
     "  x = input(3, 7, 8)\n"
     "  a = conv2d(x, filters = 6, kernel = 4, padding = same, bias = false)\n"
     "  r = relu(a)\n"
     "  b = conv2d(r, filters = 2, kernel = 3, stride = 2, padding = same)\n"
     "  f = flatten(b)\n"
     "  d = dense(f, units = 5, bias = false)\n"
     "  loss = softmax_cross_entropy(d)\n"
     "}\n" TRAIN_BLOCK},
    {"pools",
     "network pools {\n"
     "  x = input(2, 11, 9)\n"
     "  c = conv2d(x, filters = 3, kernel = 1)\n"
     "  m = maxpool(c, kernel = 3, stride = 2, padding = 1)\n"
     "  a = avgpool(m, kernel = 2, stride = 1)\n"
     "  p = avgpool(a, kernel = 3, stride = 2, padding = 1)\n"
     "  q = maxpool(p, kernel = [2, 1])\n"
     "  f = flatten(q)\n"
     "  d = dense(f, units = 3)\n"
     "  loss = softmax_cross_entropy(d)\n"
     "}\n" TRAIN_BLOCK},
    {"mlp_small",
     "network mlp_small {\n"
     "  x = input(1, 5, 7)\n"
     "  f = flatten(x)\n"
     "  h = dense(f, units = 13)\n"
     "  r = relu(h)\n"
     "  o = dense(r, units = 7, bias = false)\n"
     "  loss = softmax_cross_entropy(o)\n"
     "}\n" TRAIN_BLOCK},
    {"residual",
     "network residual {\n"
     "  x = input(4, 6, 6)\n"
     "  a = conv2d(x, filters = 4, kernel = 3, padding = 1)\n"
     "  r = relu(a)\n"
     "  b = conv2d(r, filters = 4, kernel = 3, padding = 1)\n"
     "  s = add(b, x)\n"
     "  t = relu(s)\n"
     "  u = add(t, t)\n"
     "  f = flatten(u)\n"
     "  d = dense(f, units = 6)\n"
     "  loss = softmax_cross_entropy(d)\n"
     "}\n" TRAIN_BLOCK},
    {"batchnorm",
     "network batchnorm {\n"
     "  x = input(3, 9, 7)\n"
     "  a = conv2d(x, filters = 5, kernel = 3, padding = 1)\n"
     "  b = batchnorm(a)\n"
     "  r = relu(b)\n"
     "  c = conv2d(r, filters = 5, kernel = 3, stride = 2, padding = 1, bias = false)\n"
     "  d = batchnorm(c, momentum = 0.3, eps = 1e-3)\n"
     "  e = conv2d(r, filters = 5, kernel = 1, stride = 2)\n"
     "  s = add(d, e)\n"
     "  t = batchnorm(s)\n"
     "  f = flatten(t)\n"
     "  h = dense(f, units = 6)\n"
     "  hb = batchnorm(h)\n"
     "  o = dense(hb, units = 4)\n"
     "  loss = softmax_cross_entropy(o)\n"
     "}\n" TRAIN_BLOCK},
    {"dropout_acts",
     "network dropout_acts {\n"
     "  x = input(2, 4, 5)\n"
     "  f = flatten(x)\n"
     "  a = dense(f, units = 17)\n"
     "  b = dropout(a, p = 0.3)\n"
     "  c = leaky_relu(b, slope = 0.1)\n"
     "  d = dense(c, units = 9)\n"
     "  e = sigmoid(d)\n"
     "  g = dense(e, units = 9)\n"
     "  h = tanh(g)\n"
     "  i = gelu(h)\n"
     "  j = dropout(i, p = 0.5)\n"
     "  k = dense(j, units = 5)\n"
     "  loss = softmax_cross_entropy(k, label_smoothing = 0.1)\n"
     "}\n" TRAIN_BLOCK},
    {"concat_gap_mse",
     "network concat_gap_mse {\n"
     "  x = input(3, 6, 5)\n"
     "  a = conv2d(x, filters = 4, kernel = 3, padding = same)\n"
     "  b = conv2d(x, filters = 2, kernel = 1)\n"
     "  c = concat(a, b, x)\n"
     "  r = relu(c)\n"
     "  g = global_avgpool(r)\n"
     "  d = dense(g, units = 7)\n"
     "  s = softmax(d)\n"
     "  o = dense(s, units = 3)\n"
     "  loss = mse(o)\n"
     "}\n" TRAIN_BLOCK},
    /* every fusion pattern of fuse.c: relu into a tiled and a depthwise
     * convolution, a residual add (operand computed before and after the
     * producer), batch norm + add + relu, relu after max/average/global
     * pooling, max pooling with gaps between windows and an uncovered tail
     * (its backward takes the relu mask), the mask into a dense layer's
     * backward, a gradient sum and global pooling's backward */
    {"fusion",
     "network fusion {\n"
     "  x = input(6, 13, 11)\n"
     "  a = conv2d(x, filters = 6, kernel = 3, padding = 1)\n"
     "  ar = relu(a)\n"
     "  dw = conv2d(ar, filters = 6, kernel = 3, padding = 1, groups = 6)\n"
     "  s = add(dw, ar)\n"
     "  sr = relu(s)\n"
     "  m = maxpool(sr, kernel = 2, stride = 3)\n"
     "  mr = relu(m)\n"
     "  b = conv2d(mr, filters = 8, kernel = 1)\n"
     "  bn = batchnorm(b)\n"
     "  c2 = conv2d(mr, filters = 8, kernel = 1, bias = false)\n"
     "  t = add(bn, c2)\n"
     "  tr = relu(t)\n"
     "  bn2 = batchnorm(tr)\n"
     "  u = add(bn2, tr)\n"
     "  ur = relu(u)\n"
     "  v = avgpool(ur, kernel = 2)\n"
     "  vr = relu(v)\n"
     "  g = global_avgpool(vr)\n"
     "  gr = relu(g)\n"
     "  d = dense(gr, units = 9)\n"
     "  dr = relu(d)\n"
     "  o = dense(dr, units = 5)\n"
     "  loss = softmax_cross_entropy(o)\n"
     "}\n" TRAIN_BLOCK},
    {"groups_dilation",
     "network groups_dilation {\n"
     "  x = input(6, 17, 13)\n"
     "  a = conv2d(x, filters = 4, kernel = 3, groups = 2, dilation = 2, padding = 2)\n"
     "  b = conv2d(a, filters = 4, kernel = [3, 1], groups = 4, padding = [1, 0])\n"
     "  c = conv2d(b, filters = 3, kernel = 7, stride = 3, padding = 3)\n"
     "  d = conv2d(c, filters = 6, kernel = 1, groups = 3, bias = false)\n"
     "  e = conv2d(d, filters = 5, kernel = [2, 3], stride = [2, 3], dilation = [2, 1])\n"
     "  f = flatten(e)\n"
     "  o = dense(f, units = 3)\n"
     "  loss = softmax_cross_entropy(o)\n"
     "}\n" TRAIN_BLOCK},
    /* strided 1x1 convolutions (a ResNet's projection shortcuts): stride
     * 2, stride [3, 1], grouped, with a relu fused after; spatial tiles
     * for the narrow ones, channel tiles for the 20-filter one */
    {"strided_1x1",
     "network strided_1x1 {\n"
     "  x = input(3, 11, 13)\n"
     "  a = conv2d(x, filters = 4, kernel = 1, stride = 2)\n"
     "  r = relu(a)\n"
     "  b = conv2d(r, filters = 3, kernel = 1, stride = [3, 1], bias = false)\n"
     "  c = conv2d(r, filters = 4, kernel = 1, stride = 2, groups = 2)\n"
     "  e = conv2d(x, filters = 20, kernel = 1, stride = 3, bias = false)\n"
     "  fb = flatten(b)\n"
     "  d1 = dense(fb, units = 5)\n"
     "  fc = flatten(c)\n"
     "  d2 = dense(fc, units = 5)\n"
     "  fe = flatten(e)\n"
     "  d3 = dense(fe, units = 5)\n"
     "  s = add(d1, d2)\n"
     "  t = add(s, d3)\n"
     "  loss = softmax_cross_entropy(t)\n"
     "}\n" TRAIN_BLOCK},
    /* weight gradients in the spatial form (pack.c: more channels than a
     * vector, rows that fill the lanes as well): with a bias, and grouped
     * with a dilated non-square kernel; column counts not a multiple of
     * the vector width */
    {"spatial_filter",
     "network spatial_filter {\n"
     "  x = input(3, 7, 13)\n"
     "  a = conv2d(x, filters = 20, kernel = 3, padding = 1)\n"
     "  r = relu(a)\n"
     "  b = conv2d(r, filters = 34, kernel = [2, 3], groups = 2, dilation = [1, 2], bias = false)\n"
     "  f = flatten(b)\n"
     "  d = dense(f, units = 4)\n"
     "  loss = softmax_cross_entropy(d)\n"
     "}\n" TRAIN_BLOCK},
    /* convolutions whose tiles hold vectors of output channels (stride 2,
     * and few columns): each tile transposed in registers before its
     * store; 29 columns as 10 + 10 + 9, 36 channels as two blocks of 16
     * and a 4-lane tail, a residual add and relu (forward) and a relu mask
     * (backward-data) applied after the transposition */
    {"channel_tiles",
     "network channel_tiles {\n"
     "  x = input(6, 9, 57)\n"
     "  a = conv2d(x, filters = 36, kernel = 3, stride = 2, padding = 1)\n"
     "  r = relu(a)\n"
     "  b = conv2d(r, filters = 36, kernel = 3, padding = 1)\n"
     "  s = add(b, a)\n"
     "  t = relu(s)\n"
     "  f = flatten(t)\n"
     "  d = dense(f, units = 4)\n"
     "  loss = softmax_cross_entropy(d)\n"
     "}\n" TRAIN_BLOCK},
    /* the backward-data of a stride-2 layer whose phases (7 columns) are
     * narrower than a vector: tiles over dx's channels (per group of 2:
     * 16 + a 4-lane tail), phase by phase, rows of 11 odd, the relu mask
     * fused */
    {"channel_phases",
     "network channel_phases {\n"
     "  x = input(3, 11, 14)\n"
     "  a = conv2d(x, filters = 40, kernel = 3, padding = 1)\n"
     "  r = relu(a)\n"
     "  b = conv2d(r, filters = 8, kernel = 3, stride = 2, padding = 1, groups = 2)\n"
     "  f = flatten(b)\n"
     "  d = dense(f, units = 4)\n"
     "  loss = softmax_cross_entropy(d)\n"
     "}\n" TRAIN_BLOCK},
    /* batch norms whose statistics their convolutions sum example by
     * example (bnstats.c): 17x17 outputs (18 vectors and 1: two rounds of
     * two chains of 4, two vectors left, a tail), the same with a residual
     * add fused into the batch norm, 16x17 ones (17 vectors: one left, no
     * tail); the 8x9 ones too short (MIN_RUN): the batch norm's own pass.
     * No relu: the finite differences of its tens of thousands of units
     * crossed a kink (3% off) */
    {"bn_sums",
     "network bn_sums {\n"
     "  x = input(3, 17, 17)\n"
     "  a = conv2d(x, filters = 16, kernel = 3, padding = 1)\n"
     "  b = batchnorm(a)\n"
     "  c = conv2d(b, filters = 16, kernel = 3, padding = 1, bias = false)\n"
     "  d = batchnorm(c, momentum = 0.2)\n"
     "  s = add(d, b)\n"
     "  e = conv2d(s, filters = 6, kernel = [2, 1], bias = false)\n"
     "  g = batchnorm(e)\n"
     "  h = conv2d(g, filters = 6, kernel = 3, stride = 2, padding = 1)\n"
     "  k = batchnorm(h)\n"
     "  f = flatten(k)\n"
     "  o = dense(f, units = 4)\n"
     "  loss = softmax_cross_entropy(o)\n"
     "}\n" TRAIN_BLOCK},
    /* dense layers whose last vector and tail share a tile (schedule.c's
     * gemm, at a batch above DENSE_DOT_BATCH): 63 units (three vectors
     * and 15: a's packed weights, and the columns of h's input gradient
     * and of both weight gradients), 56 units (three vectors and 8) */
    {"dense_tails",
     "network dense_tails {\n"
     "  x = input(1, 7, 9)\n"
     "  f = flatten(x)\n"
     "  a = dense(f, units = 63)\n"
     "  ar = relu(a)\n"
     "  h = dense(ar, units = 56)\n"
     "  hr = relu(h)\n"
     "  o = dense(hr, units = 5)\n"
     "  loss = softmax_cross_entropy(o)\n"
     "}\n" TRAIN_BLOCK},
};

const int test_net_count = (int)(sizeof test_nets / sizeof test_nets[0]);
