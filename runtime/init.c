/*
 * init.c — parameter initializers, with PyTorch's definitions.
 *
 *   zeros, ones, constant(a)            the value
 *   uniform(a, b)                       U(a, b)
 *   normal(a, b)                        N(mean a, std b)
 *   xavier_uniform (Glorot)             U(-t, t),  t = g * sqrt(6 / (fan_in + fan_out))
 *   xavier_normal                       N(0, s),   s = g * sqrt(2 / (fan_in + fan_out))
 *   he_uniform (Kaiming, mode fan_in)   U(-t, t),  t = g * sqrt(6 / fan_in)
 *   he_normal                           N(0, s),   s = g * sqrt(2 / fan_in)
 *   torch_default (nn.Conv2d, Linear)   U(-t, t),  t = 1 / sqrt(fan_in)
 *
 * g is the gain multiplier init_a (1 = the standard gain; the sqrt(2) of
 * He is already in the formulas).  A descriptor that leaves init_a at 0 for
 * these kinds gets the standard gain rather than all-zero weights.
 *
 * Fans come from the descriptor, which knows them for biases too (a bias
 * uses its layer's fan_in under torch_default); where it leaves them 0 they
 * follow PyTorch's rule from the shape.  cnn_model_check refuses a model
 * whose initializer needs a fan it cannot have.
 *
 * Values are drawn in double and rounded to float.  Each parameter has its
 * own stream (cnn_rng_seed_stream with its name), so adding or reordering
 * layers leaves the initial values of the others unchanged.
 */
#include "cnnrt.h"

#include <math.h>

static const char *const init_names[] = {
    [CNN_INIT_ZEROS] = "zeros",
    [CNN_INIT_ONES] = "ones",
    [CNN_INIT_CONSTANT] = "constant",
    [CNN_INIT_UNIFORM] = "uniform",
    [CNN_INIT_NORMAL] = "normal",
    [CNN_INIT_XAVIER_UNIFORM] = "xavier_uniform",
    [CNN_INIT_XAVIER_NORMAL] = "xavier_normal",
    [CNN_INIT_HE_UNIFORM] = "he_uniform",
    [CNN_INIT_HE_NORMAL] = "he_normal",
    [CNN_INIT_TORCH_DEFAULT] = "torch_default",
};

const char *cnn_init_name(int kind)
{
    if (kind < 0 || kind >= (int)(sizeof init_names / sizeof init_names[0]))
        return "?";
    return init_names[kind];
}

void cnn_param_fans(const cnn_param_desc *p, int64_t *fan_in, int64_t *fan_out)
{
    int64_t in = 0, out = 0;
    if (p->ndim >= 2) {
        int64_t receptive = 1;
        for (int i = 2; i < p->ndim && i < 4; i++)
            receptive *= p->shape[i];
        in = p->shape[1] * receptive;
        out = p->shape[0] * receptive;
    }
    *fan_in = p->fan_in > 0 ? p->fan_in : in;
    *fan_out = p->fan_out > 0 ? p->fan_out : out;
}

static void fill_constant(float *w, int64_t n, double value)
{
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)value;
}

static void fill_uniform(float *w, int64_t n, double low, double high, cnn_rng *r)
{
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)(low + (high - low) * cnn_rng_uniform(r));
}

static void fill_normal(float *w, int64_t n, double mean, double std, cnn_rng *r)
{
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)(mean + std * cnn_rng_normal(r));
}

/* Fill p's slice of params.  Assumes p passed cnn_model_check (fans
 * available where needed); with a fan of 0 anyway, the bound or std is
 * taken as 0 instead of dividing by zero. */
void cnn_init_param(const cnn_param_desc *p, float *params, uint64_t seed)
{
    float *w = params + p->offset;
    int64_t n = p->size;
    int64_t fan_in, fan_out;
    cnn_param_fans(p, &fan_in, &fan_out);
    double gain = p->init_a != 0 ? p->init_a : 1.0;
    double fan_sum = (double)(fan_in + fan_out);
    double bound;
    cnn_rng r;
    cnn_rng_seed_stream(&r, seed, p->name, 0);

    switch (p->init) {
    case CNN_INIT_ZEROS:
        fill_constant(w, n, 0.0);
        break;
    case CNN_INIT_ONES:
        fill_constant(w, n, 1.0);
        break;
    case CNN_INIT_CONSTANT:
        fill_constant(w, n, p->init_a);
        break;
    case CNN_INIT_UNIFORM:
        fill_uniform(w, n, p->init_a, p->init_b, &r);
        break;
    case CNN_INIT_NORMAL:
        fill_normal(w, n, p->init_a, p->init_b, &r);
        break;
    case CNN_INIT_XAVIER_UNIFORM:
        bound = fan_sum > 0 ? gain * sqrt(6.0 / fan_sum) : 0.0;
        fill_uniform(w, n, -bound, bound, &r);
        break;
    case CNN_INIT_XAVIER_NORMAL:
        fill_normal(w, n, 0.0, fan_sum > 0 ? gain * sqrt(2.0 / fan_sum) : 0.0, &r);
        break;
    case CNN_INIT_HE_UNIFORM:
        bound = fan_in > 0 ? gain * sqrt(6.0 / (double)fan_in) : 0.0;
        fill_uniform(w, n, -bound, bound, &r);
        break;
    case CNN_INIT_HE_NORMAL:
        fill_normal(w, n, 0.0, fan_in > 0 ? gain * sqrt(2.0 / (double)fan_in) : 0.0, &r);
        break;
    case CNN_INIT_TORCH_DEFAULT:
        bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
        fill_uniform(w, n, -bound, bound, &r);
        break;
    default: /* refused by cnn_model_check; leave the zeros of a new ctx */
        break;
    }
}

void cnn_init_params(const cnn_model_desc *m, float *params, uint64_t seed)
{
    for (int32_t i = 0; i < m->n_params; i++)
        cnn_init_param(&m->params[i], params, seed);
}
