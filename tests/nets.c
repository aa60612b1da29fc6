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
};

const int test_net_count = (int)(sizeof test_nets / sizeof test_nets[0]);
