/*
 * reference.c — the reference interpreter (reference.h).
 *
 * Each value of the graph gets a float array (views share their base's);
 * each node runs the function of its op from the table at the bottom.
 * Shapes come from the graph; the batch is the n given to ref_run.  The
 * forward ops read "output[i] = sum ...", the backward ops are written as
 * the transposed loops — scattering each output gradient to the inputs
 * that produced it — which is a different computation from the gathers
 * the compiler emits, so agreement means something.
 */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ref {
    const ir_graph *g;
    int n;
    float **val;      /* per value */
    int32_t *labels;
    float *params;    /* written by batch norm (running statistics) */
    float *grads;
    double loss;
    uint64_t seed, step; /* dropout's stream */
} ref;

typedef struct d4 {
    int64_t c, h, w;
} d4;

static d4 dims(const ref *r, int v)
{
    const ir_value *val = &r->g->values[v];
    d4 d = {val->shape.d[1], 1, 1};
    if (val->shape.ndim == 4) {
        d.h = val->shape.d[2];
        d.w = val->shape.d[3];
    }
    return d;
}

#define AT(D, I, C, H, W) ((((int64_t)(I) * (D).c + (C)) * (D).h + (H)) * (D).w + (W))

static float *V(ref *r, const ir_node *n, int which)
{
    return r->val[n->in[which]];
}

static float *OUT(ref *r, const ir_node *n)
{
    return r->val[n->out[0]];
}

/* ---- convolution ------------------------------------------------------------- */

static void conv2d(ref *r, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    d4 x = dims(r, n->in[0]), y = dims(r, n->out[0]);
    int64_t cg = x.c / a->groups, kg = y.c / a->groups;
    const float *in = V(r, n, 0), *w = V(r, n, 1), *b = ir_nin_core(n) > 2 ? V(r, n, 2) : NULL;
    float *out = OUT(r, n);
    for (int i = 0; i < r->n; i++)
        for (int64_t k = 0; k < y.c; k++)
            for (int64_t oh = 0; oh < y.h; oh++)
                for (int64_t ow = 0; ow < y.w; ow++) {
                    double s = b ? b[k] : 0.0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int p = 0; p < a->kernel[0]; p++)
                            for (int q = 0; q < a->kernel[1]; q++) {
                                int64_t ih = oh * a->stride[0] - a->pad[0] + p * a->dilation[0];
                                int64_t iw = ow * a->stride[1] - a->pad[1] + q * a->dilation[1];
                                if (ih < 0 || ih >= x.h || iw < 0 || iw >= x.w)
                                    continue;
                                int64_t cin = k / kg * cg + c;
                                s += (double)in[AT(x, i, cin, ih, iw)] *
                                     w[((k * cg + c) * a->kernel[0] + p) * a->kernel[1] + q];
                            }
                    out[AT(y, i, k, oh, ow)] = (float)s;
                }
}

/* Scatter each output gradient to the input pixels and weights that
 * produced it; which of the two is kept depends on the op. */
static void conv2d_backward(ref *r, const ir_node *n, const float *dy_p, const float *w,
                            const float *x_p, d4 x, d4 y, double *dx, double *dw)
{
    const ir_attrs *a = &n->attr;
    int64_t cg = x.c / a->groups, kg = y.c / a->groups;
    for (int i = 0; i < r->n; i++)
        for (int64_t k = 0; k < y.c; k++)
            for (int64_t oh = 0; oh < y.h; oh++)
                for (int64_t ow = 0; ow < y.w; ow++) {
                    double g = dy_p[AT(y, i, k, oh, ow)];
                    for (int64_t c = 0; c < cg; c++)
                        for (int p = 0; p < a->kernel[0]; p++)
                            for (int q = 0; q < a->kernel[1]; q++) {
                                int64_t ih = oh * a->stride[0] - a->pad[0] + p * a->dilation[0];
                                int64_t iw = ow * a->stride[1] - a->pad[1] + q * a->dilation[1];
                                if (ih < 0 || ih >= x.h || iw < 0 || iw >= x.w)
                                    continue;
                                int64_t cin = k / kg * cg + c;
                                int64_t wi = ((k * cg + c) * a->kernel[0] + p) * a->kernel[1] + q;
                                if (dx)
                                    dx[AT(x, i, cin, ih, iw)] += g * w[wi];
                                if (dw)
                                    dw[wi] += g * x_p[AT(x, i, cin, ih, iw)];
                            }
                }
}

static void store(float *dst, const double *src, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        dst[i] = (float)src[i];
}

static void conv2d_bwd_data(ref *r, const ir_node *n)
{
    d4 y = dims(r, n->in[0]), x = dims(r, n->out[0]);
    int64_t count = r->n * x.c * x.h * x.w;
    double *dx = calloc((size_t)count, sizeof *dx);
    conv2d_backward(r, n, V(r, n, 0), V(r, n, 1), NULL, x, y, dx, NULL);
    store(OUT(r, n), dx, count);
    free(dx);
}

static void conv2d_bwd_filter(ref *r, const ir_node *n)
{
    d4 y = dims(r, n->in[0]), x = dims(r, n->in[1]);
    int64_t count = ir_shape_size(r->g->values[n->out[0]].shape);
    double *dw = calloc((size_t)count, sizeof *dw);
    conv2d_backward(r, n, V(r, n, 0), NULL, V(r, n, 1), x, y, NULL, dw);
    store(OUT(r, n), dw, count);
    free(dw);
}

static void bias_bwd(ref *r, const ir_node *n)
{
    d4 y = dims(r, n->in[0]);
    const float *dy = V(r, n, 0);
    for (int64_t k = 0; k < y.c; k++) {
        double s = 0;
        for (int i = 0; i < r->n; i++)
            for (int64_t e = 0; e < y.h * y.w; e++)
                s += dy[(i * y.c + k) * y.h * y.w + e];
        OUT(r, n)[k] = (float)s;
    }
}

/* ---- dense ------------------------------------------------------------------------- */

static void dense(ref *r, const ir_node *n)
{
    int64_t f = dims(r, n->in[0]).c, u = dims(r, n->out[0]).c;
    const float *x = V(r, n, 0), *w = V(r, n, 1), *b = ir_nin_core(n) > 2 ? V(r, n, 2) : NULL;
    for (int i = 0; i < r->n; i++)
        for (int64_t o = 0; o < u; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t j = 0; j < f; j++)
                s += (double)x[i * f + j] * w[o * f + j];
            OUT(r, n)[i * u + o] = (float)s;
        }
}

static void dense_bwd_data(ref *r, const ir_node *n)
{
    int64_t u = dims(r, n->in[0]).c, f = dims(r, n->out[0]).c;
    const float *dy = V(r, n, 0), *w = V(r, n, 1);
    double *dx = calloc((size_t)(r->n * f), sizeof *dx);
    for (int i = 0; i < r->n; i++)
        for (int64_t o = 0; o < u; o++)
            for (int64_t j = 0; j < f; j++)
                dx[i * f + j] += (double)dy[i * u + o] * w[o * f + j];
    store(OUT(r, n), dx, r->n * f);
    free(dx);
}

static void dense_bwd_weight(ref *r, const ir_node *n)
{
    int64_t u = dims(r, n->in[0]).c, f = dims(r, n->in[1]).c;
    const float *dy = V(r, n, 0), *x = V(r, n, 1);
    double *dw = calloc((size_t)(u * f), sizeof *dw);
    for (int i = 0; i < r->n; i++)
        for (int64_t o = 0; o < u; o++)
            for (int64_t j = 0; j < f; j++)
                dw[o * f + j] += (double)dy[i * u + o] * x[i * f + j];
    store(OUT(r, n), dw, u * f);
    free(dw);
}

/* ---- element-wise ------------------------------------------------------------------- */

static int64_t count_of(const ref *r, int v)
{
    return r->n * ir_row_size(&r->g->values[v]);
}

static void relu(ref *r, const ir_node *n)
{
    const float *x = V(r, n, 0);
    for (int64_t e = 0; e < count_of(r, n->out[0]); e++)
        OUT(r, n)[e] = isnan(x[e]) ? x[e] : x[e] > 0 ? x[e] : 0.0f;
}

static void relu_bwd(ref *r, const ir_node *n)
{
    const float *dy = V(r, n, 0), *y = V(r, n, 1);
    for (int64_t e = 0; e < count_of(r, n->out[0]); e++)
        OUT(r, n)[e] = y[e] > 0 ? dy[e] : 0.0f;
}

static void add(ref *r, const ir_node *n)
{
    const float *a = V(r, n, 0), *b = V(r, n, 1);
    for (int64_t e = 0; e < count_of(r, n->out[0]); e++)
        OUT(r, n)[e] = a[e] + b[e];
}

static void copy(ref *r, const ir_node *n)
{
    memcpy(OUT(r, n), V(r, n, 0), sizeof(float) * (size_t)count_of(r, n->out[0]));
}

static void nothing(ref *r, const ir_node *n)
{
    (void)r, (void)n;
}

/* ---- pooling ------------------------------------------------------------------------ */

/* The flat index (in x) of the first maximum of a window; -1 if empty. */
static int64_t argmax(const ref *r, const ir_node *n, const float *x, d4 xd, int i, int64_t c,
                      int64_t oh, int64_t ow)
{
    const ir_attrs *a = &n->attr;
    int64_t best = -1;
    float m = -INFINITY;
    (void)r;
    for (int p = 0; p < a->kernel[0]; p++)
        for (int q = 0; q < a->kernel[1]; q++) {
            int64_t ih = oh * a->stride[0] - a->pad[0] + p;
            int64_t iw = ow * a->stride[1] - a->pad[1] + q;
            if (ih < 0 || ih >= xd.h || iw < 0 || iw >= xd.w)
                continue;
            float v = x[AT(xd, i, c, ih, iw)];
            if (v > m || isnan(v)) {
                m = v;
                best = AT(xd, i, c, ih, iw);
            }
        }
    return best;
}

static void maxpool(ref *r, const ir_node *n)
{
    d4 x = dims(r, n->in[0]), y = dims(r, n->out[0]);
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < y.c; c++)
            for (int64_t oh = 0; oh < y.h; oh++)
                for (int64_t ow = 0; ow < y.w; ow++) {
                    int64_t at = argmax(r, n, V(r, n, 0), x, i, c, oh, ow);
                    OUT(r, n)[AT(y, i, c, oh, ow)] = at >= 0 ? V(r, n, 0)[at] : -INFINITY;
                }
}

static void maxpool_bwd(ref *r, const ir_node *n)
{
    d4 y = dims(r, n->in[0]), x = dims(r, n->in[1]);
    double *dx = calloc((size_t)(r->n * x.c * x.h * x.w), sizeof *dx);
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < y.c; c++)
            for (int64_t oh = 0; oh < y.h; oh++)
                for (int64_t ow = 0; ow < y.w; ow++) {
                    int64_t at = argmax(r, n, V(r, n, 1), x, i, c, oh, ow);
                    if (at >= 0)
                        dx[at] += V(r, n, 0)[AT(y, i, c, oh, ow)];
                }
    store(OUT(r, n), dx, r->n * x.c * x.h * x.w);
    free(dx);
}

static void avgpool(ref *r, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    d4 x = dims(r, n->in[0]), y = dims(r, n->out[0]);
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < y.c; c++)
            for (int64_t oh = 0; oh < y.h; oh++)
                for (int64_t ow = 0; ow < y.w; ow++) {
                    double s = 0;
                    for (int p = 0; p < a->kernel[0]; p++)
                        for (int q = 0; q < a->kernel[1]; q++) {
                            int64_t ih = oh * a->stride[0] - a->pad[0] + p;
                            int64_t iw = ow * a->stride[1] - a->pad[1] + q;
                            if (ih >= 0 && ih < x.h && iw >= 0 && iw < x.w)
                                s += V(r, n, 0)[AT(x, i, c, ih, iw)];
                        }
                    OUT(r, n)[AT(y, i, c, oh, ow)] = (float)(s / (a->kernel[0] * a->kernel[1]));
                }
}

static void avgpool_bwd(ref *r, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    d4 y = dims(r, n->in[0]), x = dims(r, n->out[0]);
    double *dx = calloc((size_t)(r->n * x.c * x.h * x.w), sizeof *dx);
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < y.c; c++)
            for (int64_t oh = 0; oh < y.h; oh++)
                for (int64_t ow = 0; ow < y.w; ow++) {
                    double g = V(r, n, 0)[AT(y, i, c, oh, ow)] / (a->kernel[0] * a->kernel[1]);
                    for (int p = 0; p < a->kernel[0]; p++)
                        for (int q = 0; q < a->kernel[1]; q++) {
                            int64_t ih = oh * a->stride[0] - a->pad[0] + p;
                            int64_t iw = ow * a->stride[1] - a->pad[1] + q;
                            if (ih >= 0 && ih < x.h && iw >= 0 && iw < x.w)
                                dx[AT(x, i, c, ih, iw)] += g;
                        }
                }
    store(OUT(r, n), dx, r->n * x.c * x.h * x.w);
    free(dx);
}

/* ---- loss ---------------------------------------------------------------------------- */

static void softmax_xent(ref *r, const ir_node *n)
{
    int64_t k = dims(r, n->in[0]).c;
    const float *z = V(r, n, 0);
    float *probs = r->val[n->out[1]];
    double total = 0;
    for (int i = 0; i < r->n; i++) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < k; j++)
            m = fmax(m, z[i * k + j]);
        for (int64_t j = 0; j < k; j++)
            s += exp(z[i * k + j] - m);
        for (int64_t j = 0; j < k; j++)
            probs[i * k + j] = (float)(exp(z[i * k + j] - m) / s);
        /* cross-entropy against (1 - eps) onehot + eps / K */
        double eps = n->attr.alpha;
        for (int64_t j = 0; j < k; j++) {
            double target = (1 - eps) * (j == r->labels[i]) + eps / (double)k;
            total += target * (log(s) + m - z[i * k + j]);
        }
    }
    r->loss = total / r->n;
    OUT(r, n)[0] = (float)r->loss;
}

static void softmax_xent_bwd(ref *r, const ir_node *n)
{
    int64_t k = dims(r, n->in[0]).c;
    for (int i = 0; i < r->n; i++)
        for (int64_t j = 0; j < k; j++) {
            double eps = n->attr.alpha;
            double target = (1 - eps) * (j == r->labels[i]) + eps / (double)k;
            OUT(r, n)[i * k + j] = (float)((V(r, n, 0)[i * k + j] - target) / r->n);
        }
}

/* ---- layers of modern CNNs ------------------------------------------------------ */

static int64_t hw_of(d4 d)
{
    return d.h * d.w;
}

/* Batch norm in training mode: statistics in double, running statistics
 * updated in the parameter array (momentum, unbiased variance). */
static void batchnorm(ref *r, const ir_node *n)
{
    d4 d = dims(r, n->in[0]);
    const float *x = V(r, n, 0), *gamma = V(r, n, 1), *beta = V(r, n, 2);
    float *rm = V(r, n, 3), *rv = V(r, n, 4);
    double m = (double)r->n * hw_of(d), mom = n->attr.momentum;
    const int *pad = n->attr.out_pad;
    d4 y = dims(r, n->out[0]);
    memset(OUT(r, n), 0, sizeof(float) * (size_t)(r->n * y.c * y.h * y.w));
    for (int64_t c = 0; c < d.c; c++) {
        double sum = 0, sq = 0;
        for (int i = 0; i < r->n; i++)
            for (int64_t e = 0; e < hw_of(d); e++)
                sum += x[(i * d.c + c) * hw_of(d) + e];
        double mean = sum / m;
        for (int i = 0; i < r->n; i++)
            for (int64_t e = 0; e < hw_of(d); e++) {
                double dev = x[(i * d.c + c) * hw_of(d) + e] - mean;
                sq += dev * dev;
            }
        double var = sq / m, invstd = 1 / sqrt(var + n->attr.eps);
        r->val[n->out[1]][c] = (float)mean;
        r->val[n->out[2]][c] = (float)invstd;
        rm[c] = (float)(mom * mean + (1 - mom) * rm[c]);
        rv[c] = (float)(mom * sq / (m > 1 ? m - 1 : 1) + (1 - mom) * rv[c]);
        for (int i = 0; i < r->n; i++)
            for (int64_t e = 0; e < hw_of(d); e++) {
                int64_t at = (i * d.c + c) * hw_of(d) + e;
                /* inside a zero border when pack.c gave y one (out_pad) */
                int64_t out = AT(y, i, c, e / d.w + pad[0], e % d.w + pad[1]);
                OUT(r, n)[out] = (float)((x[at] - mean) * invstd * gamma[c] + beta[c]);
            }
    }
}

/* The textbook gradient of batch norm, from x-hat, in double. */
static void batchnorm_bwd(ref *r, const ir_node *n)
{
    d4 d = dims(r, n->in[1]);
    const float *dy = V(r, n, 0), *x = V(r, n, 1), *gamma = V(r, n, 2);
    const float *mean = V(r, n, 3), *invstd = V(r, n, 4);
    float *dx = r->val[n->out[0]], *dg = r->val[n->out[1]], *db = r->val[n->out[2]];
    double m = (double)r->n * hw_of(d);
    const int *pad = n->attr.out_pad;
    d4 y = dims(r, n->out[0]);
    memset(dx, 0, sizeof(float) * (size_t)(r->n * y.c * y.h * y.w));
    for (int64_t c = 0; c < d.c; c++) {
        double sdy = 0, sdyx = 0;
        for (int i = 0; i < r->n; i++)
            for (int64_t e = 0; e < hw_of(d); e++) {
                int64_t at = (i * d.c + c) * hw_of(d) + e;
                double xhat = ((double)x[at] - mean[c]) * invstd[c];
                sdy += dy[at];
                sdyx += dy[at] * xhat;
            }
        dg[c] = (float)sdyx;
        db[c] = (float)sdy;
        for (int i = 0; i < r->n; i++)
            for (int64_t e = 0; e < hw_of(d); e++) {
                int64_t at = (i * d.c + c) * hw_of(d) + e;
                double xhat = ((double)x[at] - mean[c]) * invstd[c];
                /* inside a zero border when pack.c gave dx one (out_pad) */
                int64_t out = AT(y, i, c, e / d.w + pad[0], e % d.w + pad[1]);
                dx[out] = (float)(gamma[c] * invstd[c] / m * (m * dy[at] - sdy - xhat * sdyx));
            }
    }
}

/* Evaluation mode, straight from the definition (also what a folded
 * convolution must reproduce). */
static void batchnorm_eval(ref *r, const ir_node *n)
{
    d4 d = dims(r, n->in[0]);
    const float *x = V(r, n, 0), *gamma = V(r, n, 1), *beta = V(r, n, 2);
    const float *rm = V(r, n, 3), *rv = V(r, n, 4);
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < d.c; c++)
            for (int64_t e = 0; e < hw_of(d); e++) {
                int64_t at = (i * d.c + c) * hw_of(d) + e;
                OUT(r, n)[at] = (float)(((double)x[at] - rm[c]) / sqrt((double)rv[c] + n->attr.eps) *
                                            gamma[c] + beta[c]);
            }
}

/* The folded weights, in double. */
static void bn_fold(ref *r, const ir_node *n)
{
    const ir_value *w = &r->g->values[n->in[0]];
    int64_t k = w->shape.d[0], per = ir_shape_size(w->shape) / k;
    const float *wt = V(r, n, 0), *gamma = V(r, n, 1), *beta = V(r, n, 2);
    const float *rm = V(r, n, 3), *rv = V(r, n, 4), *b = ir_nin_core(n) > 5 ? V(r, n, 5) : NULL;
    for (int64_t f = 0; f < k; f++) {
        double s = gamma[f] / sqrt((double)rv[f] + n->attr.eps);
        r->val[n->out[1]][f] = (float)(((b ? b[f] : 0.0) - rm[f]) * s + beta[f]);
        for (int64_t j = 0; j < per; j++)
            OUT(r, n)[f * per + j] = (float)(wt[f * per + j] * s);
    }
}

/* SplitMix64's finalizer; the dropout stream of lower_layers.c. */
static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void dropout(ref *r, const ir_node *n)
{
    uint64_t key = mix(mix(r->seed ^ ((uint64_t)n->attr.salt * 0xD1B54A32D192ED03ull)) + r->step);
    double p = n->attr.alpha;
    float scale = (float)(1.0 / (1.0 - p));
    const float *x = V(r, n, 0);
    for (int64_t e = 0; e < count_of(r, n->out[0]); e++) {
        double u = (double)(mix(key + (uint64_t)e) >> 40) / 16777216.0;
        OUT(r, n)[e] = u >= p ? x[e] * scale : 0.0f;
    }
}

static void concat(ref *r, const ir_node *n)
{
    d4 y = dims(r, n->out[0]);
    int64_t off = 0;
    for (int j = 0; j < n->nin; j++) {
        d4 x = dims(r, n->in[j]);
        for (int i = 0; i < r->n; i++)
            memcpy(OUT(r, n) + (i * y.c + off) * hw_of(y), V(r, n, j) + i * x.c * hw_of(x),
                   sizeof(float) * (size_t)(x.c * hw_of(x)));
        off += x.c;
    }
}

static void slice(ref *r, const ir_node *n)
{
    d4 y = dims(r, n->in[0]), x = dims(r, n->out[0]);
    for (int i = 0; i < r->n; i++)
        memcpy(OUT(r, n) + i * x.c * hw_of(x), V(r, n, 0) + (i * y.c + n->attr.offset) * hw_of(y),
               sizeof(float) * (size_t)(x.c * hw_of(x)));
}

static void global_avgpool(ref *r, const ir_node *n)
{
    d4 x = dims(r, n->in[0]);
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < x.c; c++) {
            double s = 0;
            for (int64_t e = 0; e < hw_of(x); e++)
                s += V(r, n, 0)[(i * x.c + c) * hw_of(x) + e];
            OUT(r, n)[i * x.c + c] = (float)(s / (double)hw_of(x));
        }
}

static void global_avgpool_bwd(ref *r, const ir_node *n)
{
    d4 x = dims(r, n->out[0]);
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < x.c; c++)
            for (int64_t e = 0; e < hw_of(x); e++)
                OUT(r, n)[(i * x.c + c) * hw_of(x) + e] =
                    (float)(V(r, n, 0)[i * x.c + c] / (double)hw_of(x));
}

static double act_value(int kind, double slope, double x)
{
    switch (kind) {
    case ACT_LEAKY_RELU:
        return x > 0 ? x : x * slope;
    case ACT_SIGMOID:
        return 1 / (1 + exp(-x));
    case ACT_TANH:
        return tanh(x);
    default: /* gelu */
        return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    }
}

/* Derivatives from the definitions (not from the output, as the compiler does). */
static double act_derivative(int kind, double slope, double x)
{
    double s;
    switch (kind) {
    case ACT_LEAKY_RELU:
        return x > 0 ? 1 : slope;
    case ACT_SIGMOID:
        s = 1 / (1 + exp(-x));
        return s * (1 - s);
    case ACT_TANH:
        return 1 - tanh(x) * tanh(x);
    default:
        return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-x * x / 2) / sqrt(2 * M_PI);
    }
}

static void act(ref *r, const ir_node *n)
{
    for (int64_t e = 0; e < count_of(r, n->out[0]); e++)
        OUT(r, n)[e] = (float)act_value(n->attr.act, n->attr.alpha, V(r, n, 0)[e]);
}

static void act_bwd(ref *r, const ir_node *n)
{
    for (int64_t e = 0; e < count_of(r, n->out[0]); e++)
        OUT(r, n)[e] = (float)(V(r, n, 0)[e] * act_derivative(n->attr.act, n->attr.alpha,
                                                              V(r, n, 1)[e]));
}

static void softmax(ref *r, const ir_node *n)
{
    int64_t k = dims(r, n->in[0]).c;
    for (int i = 0; i < r->n; i++) {
        const float *z = V(r, n, 0) + i * k;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < k; j++)
            m = fmax(m, z[j]);
        for (int64_t j = 0; j < k; j++)
            s += exp(z[j] - m);
        for (int64_t j = 0; j < k; j++)
            OUT(r, n)[i * k + j] = (float)(exp(z[j] - m) / s);
    }
}

/* The Jacobian of softmax applied to dy: dx_j = sum_l dy_l y_l (delta_jl - y_j). */
static void softmax_bwd(ref *r, const ir_node *n)
{
    int64_t k = dims(r, n->in[0]).c;
    for (int i = 0; i < r->n; i++) {
        const float *dy = V(r, n, 0) + i * k, *y = V(r, n, 1) + i * k;
        for (int64_t j = 0; j < k; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++)
                s += dy[l] * (double)y[l] * ((j == l) - (double)y[j]);
            OUT(r, n)[i * k + j] = (float)s;
        }
    }
}

static void mse_loss(ref *r, const ir_node *n)
{
    int64_t k = dims(r, n->in[0]).c;
    double total = 0;
    for (int i = 0; i < r->n; i++)
        for (int64_t j = 0; j < k; j++) {
            double d = V(r, n, 0)[i * k + j] - (j == r->labels[i]);
            total += d * d;
        }
    r->loss = total / ((double)r->n * k);
    OUT(r, n)[0] = (float)r->loss;
}

static void mse_loss_bwd(ref *r, const ir_node *n)
{
    int64_t k = dims(r, n->in[0]).c;
    for (int i = 0; i < r->n; i++)
        for (int64_t j = 0; j < k; j++)
            OUT(r, n)[i * k + j] =
                (float)(2 * (V(r, n, 0)[i * k + j] - (j == r->labels[i])) / ((double)r->n * k));
}

/* ---- the tiled forms of pack.c: the rewrite itself is tested by running
 * the reference on rewritten graphs too ------------------------------------------ */

static void pad(ref *r, const ir_node *n)
{
    d4 x = dims(r, n->in[0]), y = dims(r, n->out[0]);
    const ir_attrs *a = &n->attr;
    memset(OUT(r, n), 0, sizeof(float) * (size_t)(r->n * y.c * y.h * y.w));
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < x.c; c++)
            for (int64_t h = 0; h < x.h; h++)
                for (int64_t w = 0; w < x.w; w++)
                    OUT(r, n)[AT(y, i, c, a->pad[0] + h * a->stride[0], a->pad[1] + w * a->stride[1])] =
                        V(r, n, 0)[AT(x, i, c, h, w)];
}

/* Where W[g*cg + c][kin][p][q] (c: dy channel in the group, kin: dx
 * channel in the group) is in a PACK_PHASES buffer: the phase is the one
 * whose taps include p (p = first + stride*t), reversed within it. */
static int64_t phase_index(const ir_attrs *a, int64_t kg, int64_t cg, int64_t kt, int64_t k,
                           int64_t c, int p, int q)
{
    int ph = ((p - a->pad[0]) % a->stride[0] + a->stride[0]) % a->stride[0];
    int pw = ((q - a->pad[1]) % a->stride[1] + a->stride[1]) % a->stride[1];
    phase_axis ah = phase_axis_of(ph, a->stride[0], a->pad[0], a->kernel[0], 1, 0);
    phase_axis aw = phase_axis_of(pw, a->stride[1], a->pad[1], a->kernel[1], 1, 0);
    int t = ah.taps - 1 - (p - ah.first) / a->stride[0];
    int u = aw.taps - 1 - (q - aw.first) / a->stride[1];
    int64_t g = k / kg, kin = k % kg;
    return phase_pack_base(ph, pw, a->stride, a->pad, a->kernel[0], a->kernel[1], kt * cg) +
           g * kg * cg * ah.taps * aw.taps + ((c * ah.taps + t) * aw.taps + u) * kg + kin;
}

static void pack_weights(ref *r, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    if (a->mode == PACK_PHASES) {
        int64_t kt = a->filters, cg = a->units, kg = kt / a->groups;
        for (int64_t k = 0; k < kt; k++)
            for (int64_t c = 0; c < cg; c++)
                for (int p = 0; p < a->kernel[0]; p++)
                    for (int q = 0; q < a->kernel[1]; q++) {
                        int64_t oc = k / kg * cg + c;
                        int64_t src = ((oc * kg + k % kg) * a->kernel[0] + p) * a->kernel[1] + q;
                        OUT(r, n)[phase_index(a, kg, cg, kt, k, c, p, q)] = V(r, n, 0)[src];
                    }
        return;
    }
    int64_t kt = a->filters, cg = a->units, kg = kt / a->groups;
    int R = a->kernel[0], S = a->kernel[1];
    for (int64_t k = 0; k < kt; k++)
        for (int64_t c = 0; c < cg; c++)
            for (int p = 0; p < R; p++)
                for (int q = 0; q < S; q++) {
                    int64_t src;
                    if (a->mode == PACK_FORWARD) {
                        src = ((k * cg + c) * R + p) * S + q;
                    } else {
                        int64_t g = k / kg, oc = g * cg + c;
                        src = ((oc * kg + k % kg) * R + (R - 1 - p)) * S + (S - 1 - q);
                    }
                    OUT(r, n)[pack_offset(k, c, p, q, kg, cg, R, S, a->lanes)] = V(r, n, 0)[src];
                }
}

/* x perhaps inside a zero border (in_pad) */
static void transpose_nhwc(ref *r, const ir_node *n)
{
    const int *pad = n->attr.in_pad;
    d4 b = dims(r, n->in[0]), x = {b.c, b.h - pad[0] - pad[2], b.w - pad[1] - pad[3]};
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < x.c; c++)
            for (int64_t e = 0; e < hw_of(x); e++)
                OUT(r, n)[(i * hw_of(x) + e) * x.c + c] =
                    V(r, n, 0)[AT(b, i, c, e / x.w + pad[0], e % x.w + pad[1])];
}

/* conv2d of an already padded input with packed weights */
/* The backward-data of a strided convolution from its definition: dx at
 * (h, w) sums dy at (oh, ow) over the taps with oh*stride - pad + p = h
 * (and the same for columns); dy is padded by phase_pad in front. */
static void tconv_phases(ref *r, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    d4 x = dims(r, n->in[0]), y = dims(r, n->out[0]);
    int64_t cg = x.c / a->groups, kg = y.c / a->groups;
    for (int i = 0; i < r->n; i++)
        for (int64_t k = 0; k < y.c; k++)
            for (int64_t h = 0; h < y.h; h++)
                for (int64_t w = 0; w < y.w; w++) {
                    double s = 0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int p = 0; p < a->kernel[0]; p++)
                            for (int q = 0; q < a->kernel[1]; q++) {
                                int64_t th = h + a->pad[0] - p, tw = w + a->pad[1] - q;
                                if (th < 0 || tw < 0 || th % a->stride[0] || tw % a->stride[1])
                                    continue;
                                int64_t oh = th / a->stride[0] + a->phase_pad[0];
                                int64_t ow = tw / a->stride[1] + a->phase_pad[1];
                                if (oh >= x.h || ow >= x.w)
                                    continue;
                                s += (double)V(r, n, 0)[AT(x, i, k / kg * cg + c, oh, ow)] *
                                     V(r, n, 1)[phase_index(a, kg, cg, y.c, k, c, p, q)];
                            }
                    OUT(r, n)[AT(y, i, k, h, w)] = (float)s;
                }
}

static void tconv(ref *r, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    if (a->phases) {
        tconv_phases(r, n);
        return;
    }
    d4 x = dims(r, n->in[0]), y = dims(r, n->out[0]);
    int64_t cg = x.c / a->groups, kg = y.c / a->groups;
    const float *b = ir_nin_core(n) > 2 ? V(r, n, 2) : NULL;
    for (int i = 0; i < r->n; i++)
        for (int64_t k = 0; k < y.c; k++)
            for (int64_t oh = 0; oh < y.h; oh++)
                for (int64_t ow = 0; ow < y.w; ow++) {
                    double s = b ? b[k] : 0.0;
                    for (int64_t c = 0; c < cg; c++)
                        for (int p = 0; p < a->kernel[0]; p++)
                            for (int q = 0; q < a->kernel[1]; q++)
                                s += (double)V(r, n, 0)[AT(x, i, k / kg * cg + c,
                                                           a->in_pad[0] + oh * a->stride[0] + p * a->dilation[0],
                                                           a->in_pad[1] + ow * a->stride[1] + q * a->dilation[1])] *
                                     V(r, n, 1)[pack_offset(k, c, p, q, kg, cg, a->kernel[0],
                                                            a->kernel[1], a->lanes)];
                    OUT(r, n)[AT(y, i, k, oh, ow)] = (float)s;
                }
}

/* dW (and db) from dy in NHWC and the padded input */
static void tconv_bwd_filter(ref *r, const ir_node *n)
{
    const ir_attrs *a = &n->attr;
    d4 x = dims(r, n->in[1]);
    const ir_value *dw = &r->g->values[n->out[0]];
    int64_t kt = dw->shape.d[0], cg = dw->shape.d[1], kg = kt / a->groups;
    /* dy in NHWC, or (the spatial form) as it is, NCHW, perhaps inside a
     * zero border (in_pad) */
    const ir_node *t = a->spatial ? n : &r->g->nodes[r->g->values[n->in[0]].producer];
    const int *pad = t->attr.in_pad;
    d4 b = dims(r, t->in[0]);
    int64_t oh_n = b.h - pad[0] - pad[2], ow_n = b.w - pad[1] - pad[3];
    const float *dy = V(r, n, 0);
#define DY(i, pixel) (a->spatial ? dy[AT(b, i, k, (pixel) / ow_n + pad[0], (pixel) % ow_n + pad[1])] \
                                 : dy[((i) * oh_n * ow_n + (pixel)) * kt + k])
    for (int64_t k = 0; k < kt; k++) {
        double bias = 0;
        for (int64_t c = 0; c < cg; c++)
            for (int p = 0; p < a->kernel[0]; p++)
                for (int q = 0; q < a->kernel[1]; q++) {
                    double s = 0;
                    for (int i = 0; i < r->n; i++)
                        for (int64_t oh = 0; oh < oh_n; oh++)
                            for (int64_t ow = 0; ow < ow_n; ow++)
                                s += (double)DY(i, oh * ow_n + ow) *
                                     V(r, n, 1)[AT(x, i, k / kg * cg + c,
                                                   a->x_pad[0] + oh * a->stride[0] + p * a->dilation[0],
                                                   a->x_pad[1] + ow * a->stride[1] + q * a->dilation[1])];
                    OUT(r, n)[((k * cg + c) * a->kernel[0] + p) * a->kernel[1] + q] = (float)s;
                }
        for (int i = 0; i < r->n; i++)
            for (int64_t e = 0; e < oh_n * ow_n; e++)
                bias += DY(i, e);
        if (n->nout > 1)
            r->val[n->out[1]][k] = (float)bias;
    }
#undef DY
}

static void tdense(ref *r, const ir_node *n)
{
    int64_t f = dims(r, n->in[0]).c, u = dims(r, n->out[0]).c;
    const float *b = ir_nin_core(n) > 2 ? V(r, n, 2) : NULL;
    for (int i = 0; i < r->n; i++)
        for (int64_t o = 0; o < u; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t j = 0; j < f; j++)
                s += (double)V(r, n, 0)[i * f + j] *
                     V(r, n, 1)[pack_offset(o, j, 0, 0, u, f, 1, 1, n->attr.lanes)];
            OUT(r, n)[i * u + o] = (float)s;
        }
}

typedef void (*ref_fn)(ref *r, const ir_node *n);

static const ref_fn ref_ops[OP_COUNT] = {
    [OP_CONV2D] = conv2d,
    [OP_DENSE] = dense,
    [OP_RELU] = relu,
    [OP_MAXPOOL] = maxpool,
    [OP_AVGPOOL] = avgpool,
    [OP_FLATTEN] = nothing,
    [OP_ADD] = add,
    [OP_SOFTMAX_XENT] = softmax_xent,
    [OP_SOFTMAX_XENT_BWD] = softmax_xent_bwd,
    [OP_CONV2D_BWD_DATA] = conv2d_bwd_data,
    [OP_CONV2D_BWD_FILTER] = conv2d_bwd_filter,
    [OP_BIAS_BWD] = bias_bwd,
    [OP_DENSE_BWD_DATA] = dense_bwd_data,
    [OP_DENSE_BWD_WEIGHT] = dense_bwd_weight,
    [OP_RELU_BWD] = relu_bwd,
    [OP_MAXPOOL_BWD] = maxpool_bwd,
    [OP_AVGPOOL_BWD] = avgpool_bwd,
    [OP_COPY] = copy,
    [OP_BATCHNORM] = batchnorm,
    [OP_BATCHNORM_BWD] = batchnorm_bwd,
    [OP_BATCHNORM_EVAL] = batchnorm_eval,
    [OP_BN_FOLD] = bn_fold,
    [OP_DROPOUT] = dropout,
    [OP_DROPOUT_BWD] = dropout,
    [OP_CONCAT] = concat,
    [OP_SLICE] = slice,
    [OP_GLOBAL_AVGPOOL] = global_avgpool,
    [OP_GLOBAL_AVGPOOL_BWD] = global_avgpool_bwd,
    [OP_ACT] = act,
    [OP_ACT_BWD] = act_bwd,
    [OP_SOFTMAX] = softmax,
    [OP_SOFTMAX_BWD] = softmax_bwd,
    [OP_MSE_LOSS] = mse_loss,
    [OP_MSE_LOSS_BWD] = mse_loss_bwd,
    [OP_PAD] = pad,
    [OP_PACK_WEIGHTS] = pack_weights,
    [OP_TRANSPOSE_NHWC] = transpose_nhwc,
    [OP_TCONV] = tconv,
    [OP_TCONV_BWD_FILTER] = tconv_bwd_filter,
    [OP_TDENSE] = tdense,
};

uint64_t ref_seed, ref_step;

/* One element of a fused epilogue: y and the operands' elements a and m
 * (0 when there is no such operand). */
static void post_element(int p, float *y, float a, float m)
{
    if (p & POST_ADD)
        *y = *y + a;
    if ((p & POST_RELU) && *y < 0)
        *y = 0;
    if ((p & POST_MASK) && !(m > 0))
        *y = 0;
}

/* Index of element (i, c, h, w) of a d-shaped tensor inside border pad. */
static int64_t at_in(d4 d, const int pad[4], int i, int64_t c, int64_t h, int64_t w)
{
    d4 b = {d.c, d.h + pad[0] + pad[2], d.w + pad[1] + pad[3]};
    return AT(b, i, c, h + pad[0], w + pad[1]);
}

/* A fused epilogue (fuse.c) on the node's first output, after the op;
 * the output and each operand may lie inside a zero border of its own
 * (pack.c's graph_absorb_pads: out_pad, add_pad, mask_pad). */
static void post(ref *r, const ir_node *n)
{
    int p = n->attr.post;
    if (!p)
        return;
    float *y = OUT(r, n);
    const float *add = (p & POST_ADD) ? r->val[ir_add_operand(n)] : NULL;
    const float *mask = (p & POST_MASK) ? r->val[ir_mask_operand(n)] : NULL;
    const int *op = n->attr.out_pad, *ap = n->attr.add_pad, *mp = n->attr.mask_pad;
    static const int none[4];
    if (!memcmp(op, none, sizeof none) && !memcmp(ap, none, sizeof none) &&
        !memcmp(mp, none, sizeof none)) {
        for (int64_t e = 0; e < count_of(r, n->out[0]); e++)
            post_element(p, &y[e], add ? add[e] : 0, mask ? mask[e] : 0);
        return;
    }
    d4 yb = dims(r, n->out[0]), d = {yb.c, yb.h - op[0] - op[2], yb.w - op[1] - op[3]};
    for (int i = 0; i < r->n; i++)
        for (int64_t c = 0; c < d.c; c++)
            for (int64_t h = 0; h < d.h; h++)
                for (int64_t w = 0; w < d.w; w++)
                    post_element(p, &y[at_in(d, op, i, c, h, w)],
                                 add ? add[at_in(d, ap, i, c, h, w)] : 0,
                                 mask ? mask[at_in(d, mp, i, c, h, w)] : 0);
}

int ref_has_op(op_kind op)
{
    return op == OP_INPUT || ref_ops[op] != NULL;
}

int ref_run(const ir_graph *g, const float *params, float *grads, const float *x,
            const int32_t *labels, int n, ref_result *out)
{
    memset(out, 0, sizeof *out);
    ref r = {g, n, calloc((size_t)g->nvalues, sizeof(float *)), NULL, (float *)params, grads, 0,
             ref_seed, ref_step};
    char *owned = calloc((size_t)g->nvalues, 1);
    for (int v = 0; v < g->nvalues; v++) {
        const ir_value *val = &g->values[v];
        switch (val->kind) {
        case VAL_PARAM:
            r.val[v] = (float *)params + g->params[val->param].offset;
            break;
        case VAL_GRAD:
            r.val[v] = grads + g->params[val->param].offset;
            break;
        case VAL_INPUT:
            r.val[v] = (float *)x;
            break;
        case VAL_LABELS:
            r.labels = (int32_t *)labels;
            break;
        default:
            if (val->alias < 0) {
                r.val[v] = calloc((size_t)ir_shape_size(val->shape) + 1, sizeof(float));
                owned[v] = 1;
            }
            break;
        }
    }
    for (int v = 0; v < g->nvalues; v++) {
        int base = v;
        while (g->values[base].alias >= 0)
            base = g->values[base].alias;
        r.val[v] = r.val[base];
    }
    int rc = 0;
    for (int i = 0; i < g->nnodes && rc == 0; i++) {
        if (!ref_ops[g->nodes[i].op])
            rc = -1;
        else {
            ref_ops[g->nodes[i].op](&r, &g->nodes[i]);
            post(&r, &g->nodes[i]);
        }
    }
    if (rc == 0) {
        int64_t classes = g->values[g->logits].shape.d[1];
        out->loss = r.loss;
        out->logits = malloc(sizeof(float) * (size_t)(n * classes));
        memcpy(out->logits, r.val[g->logits], sizeof(float) * (size_t)(n * classes));
        if (g->input_grad >= 0) {
            int64_t size = n * ir_row_size(&g->values[g->input]);
            out->input_grad = malloc(sizeof(float) * (size_t)size);
            memcpy(out->input_grad, r.val[g->input_grad], sizeof(float) * (size_t)size);
        }
    }
    for (int v = 0; v < g->nvalues; v++)
        if (owned[v])
            free(r.val[v]);
    free(owned);
    free(r.val);
    return rc;
}

void ref_result_free(ref_result *r)
{
    free(r->logits);
    free(r->input_grad);
    memset(r, 0, sizeof *r);
}
