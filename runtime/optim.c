/*
 * optim.c — optimizers: the update of the flat parameter array from the
 * flat gradient array after each train step.
 *
 * An optimizer is a row of `kinds`: its name, a check of its own
 * arguments, the state arrays it needs for a configuration (named as
 * torch.optim names them in its state dicts), and an update function over
 * one contiguous run of parameters.  State arrays have the parameter
 * layout (param_floats floats each), so the update of parameter p at
 * offset o reads state[k] + o: one loop per parameter, no indirection, and
 * the state can be written to a checkpoint as it is.  They are allocated
 * and zeroed by create, so that no allocation or page fault happens inside
 * a step.
 *
 * A step is what this PyTorch code does, in this order:
 *
 *   loss = ce + l1 * sum|w| + l2 / 2 * sum w^2     (w: the decayed params)
 *   loss.backward()                                 grad += l1*sign(w) + l2*w
 *   torch.nn.utils.clip_grad_norm_(params, clip)    scale all grads
 *   opt.step()                                      the update
 *
 * Updates are in float, operation by operation as torch.optim 1.13's
 * single-tensor paths (_single_tensor_sgd, _single_tensor_adam, ...) do
 * them: each tensor op rounds to float, and each Python scalar (a double)
 * is rounded to float where the op takes it, so `exp_avg.mul_(beta1)` is
 * m * (float)beta1 and `param.addcdiv_(m, d, value=-step_size)` is
 * p + ((float)-step_size * m) / d.  Scalars torch computes in Python (bias
 * corrections, step sizes) are computed here in double the same way.  On
 * AVX2 machines torch fuses `add(alpha)` and `addcmul` into FMAs; we do
 * not (see cnnrt.h), so results may differ from torch's by an ulp.
 *
 * The step counter is torch's state['step'] (the updates applied so far):
 * SGD's first step, where torch creates the momentum buffer, and Adam's
 * bias corrections depend on it, so a resumed run restores it with
 * cnn_optimizer_set_steps.  Only trainable parameters are updated;
 * regularization and weight decay apply to those flagged CNN_PARAM_DECAY,
 * or to all trainable ones with regularize_biases.
 */
#include "cnnrt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STATE CNN_MAX_OPT_STATE /* state arrays per optimizer (at most 3 in use) */

/* One parameter's update: n floats of p, g and each state array, all
 * pointing at the parameter's offset.  decay: weight decay applies. */
typedef void (*update_fn)(const cnn_optimizer *opt, int decay, int64_t n, float *p,
                          const float *g, float *const *state);

typedef struct optim_kind {
    int type;          /* enum cnn_optim_type */
    const char *name;  /* the name in train configs */
    /* The arguments this type uses, checked as its torch constructor does. */
    int (*check)(const cnn_optim_config *cfg, cnn_error *err);
    /* The state arrays a configuration needs, their names into names[];
     * returns how many (<= MAX_STATE).  The update finds them in this order. */
    int (*layout)(const cnn_optim_config *cfg, const char **names);
    update_fn update;
} optim_kind;

struct cnn_optimizer {
    const cnn_model_desc *model;
    cnn_optim_config cfg;            /* cfg.lr follows cnn_optimizer_set_lr */
    const optim_kind *kind;
    int n_state;                     /* state arrays in use */
    const char *names[MAX_STATE];    /* their torch names */
    float *state[MAX_STATE];         /* param_floats floats each */
    float *norms;                    /* n_params floats: per-tensor norms for clipping */
    uint64_t steps;                  /* updates applied so far (torch's `step`) */
};

/* NaN-propagating maximum, as torch.maximum. */
static float max_nan(float a, float b)
{
    if (isnan(a) || isnan(b))
        return a + b;
    return a > b ? a : b;
}

/* ---- SGD ------------------------------------------------------------------ */

static int sgd_check(const cnn_optim_config *c, cnn_error *err)
{
    if (!isfinite(c->momentum) || c->momentum < 0)
        return cnn_fail(err, "optimizer: momentum %g must be >= 0", c->momentum);
    if (!isfinite(c->dampening))
        return cnn_fail(err, "optimizer: dampening %g is not finite", c->dampening);
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
        return cnn_fail(err, "optimizer: nesterov needs momentum > 0 and dampening 0 "
                        "(momentum %g, dampening %g)", c->momentum, c->dampening);
    return 0;
}

static int sgd_layout(const cnn_optim_config *c, const char **names)
{
    int n = 0;
    if (c->momentum != 0)
        names[n++] = "momentum_buffer";
    return n;
}

/* torch.optim.SGD, per element:
 *   d = g + wd * p
 *   b = d (first step) | momentum * b + (1 - dampening) * d
 *   d = d + momentum * b (nesterov) | b
 *   p = p - lr * d */
/* The loop of SGD with momentum, in a function of its own: restrict
 * parameters let it vectorize without alias checks, and flags that arrive
 * as ints (not inlined as 64-bit comparisons, which GCC's vectorizer turns
 * down) become selects. */
__attribute__((noinline)) static void sgd_momentum_pass(int64_t n, float *restrict p, const float *restrict g,
                              float *restrict buf, float wd, float mom, float keep,
                              float neg_lr, int decays, int first, int nesterov)
{
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i], gi = g[i], bi = buf[i];
        float d = decays ? gi + wd * pi : gi;
        float b = first ? d : bi * mom + keep * d;
        buf[i] = b;
        d = nesterov ? d + mom * b : b;
        p[i] = pi + neg_lr * d;
    }
}

static void sgd_update(const cnn_optimizer *opt, int decay, int64_t n, float *p,
                       const float *g, float *const *state)
{
    const cnn_optim_config *c = &opt->cfg;
    const float wd = decay ? (float)c->weight_decay : 0.0f;
    const float mom = (float)c->momentum;
    const float keep = (float)(1.0 - c->dampening);
    const float neg_lr = (float)-c->lr;
    const int first = opt->steps == 0, nesterov = c->nesterov, decays = wd != 0.0f;
    float *restrict pr = p, *restrict buf = opt->n_state > 0 ? state[0] : NULL;
    const float *restrict gr = g;

    /* invariant choices as selects between values loaded unconditionally:
     * no branch in the loop, so it vectorizes */
    if (!buf) {
        for (int64_t i = 0; i < n; i++) {
            float pi = pr[i], gi = gr[i];
            float d = decays ? gi + wd * pi : gi;
            pr[i] = pi + neg_lr * d;
        }
        return;
    }
    sgd_momentum_pass(n, pr, gr, buf, wd, mom, keep, neg_lr, decays, first, nesterov);
}

/* ---- Adam and AdamW ------------------------------------------------------- */

static int adam_check(const cnn_optim_config *c, cnn_error *err)
{
    if (!isfinite(c->eps) || c->eps < 0)
        return cnn_fail(err, "optimizer: eps %g must be >= 0", c->eps);
    if (!(c->beta1 >= 0 && c->beta1 < 1))
        return cnn_fail(err, "optimizer: betas[0] %g must be in [0, 1)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
        return cnn_fail(err, "optimizer: betas[1] %g must be in [0, 1)", c->beta2);
    return 0;
}

static int adam_layout(const cnn_optim_config *c, const char **names)
{
    int n = 0;
    names[n++] = "exp_avg";
    names[n++] = "exp_avg_sq";
    if (c->amsgrad)
        names[n++] = "max_exp_avg_sq";
    return n;
}

/* torch.optim.Adam (decoupled = 0) and AdamW (decoupled = 1), 1.13's
 * _single_tensor_adam / _single_tensor_adamw, with t = steps + 1:
 *   p = p * (1 - lr*wd)                       AdamW only (param.mul_)
 *   g = g + wd * p                            Adam only, if wd != 0
 *   m = m * beta1 + (1 - beta1) * g
 *   v = v * beta2 + ((1 - beta2) * g) * g     (addcmul_)
 *   vmax = maximum(vmax, v); use vmax for v   amsgrad
 *   step_size = lr / (1 - beta1^t)            Python doubles
 *   bc2_sqrt = sqrt(1 - beta2^t)
 *   denom = sqrt(v) / bc2_sqrt + eps
 *   p = p + (-step_size * m) / denom          (addcdiv_) */
/* Adam's first pass: AdamW's shrink of p, Adam's weight decay, the
 * moments (a function of its own, as sgd_momentum_pass). */
__attribute__((noinline)) static void adam_moments(int64_t n, float *restrict p, const float *restrict g,
                         float *restrict m, float *restrict v, int shrinks, float shrink,
                         int decays, float wd, float b1, float one_b1, float b2, float one_b2)
{
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i], gi = g[i];
        pi = shrinks ? pi * shrink : pi;
        gi = decays ? gi + wd * pi : gi;
        p[i] = pi;
        m[i] = m[i] * b1 + one_b1 * gi;
        v[i] = v[i] * b2 + one_b2 * gi * gi;
    }
}

static void adam_core(const cnn_optimizer *opt, int decoupled, int decay, int64_t n, float *p,
                      const float *g, float *const *state)
{
    const cnn_optim_config *c = &opt->cfg;
    const double t = (double)(opt->steps + 1);
    const double step_size = c->lr / (1.0 - pow(c->beta1, t));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(c->beta2, t));
    const float neg_step = (float)-step_size;
    const float b1 = (float)c->beta1, one_b1 = (float)(1.0 - c->beta1);
    const float b2 = (float)c->beta2, one_b2 = (float)(1.0 - c->beta2);
    const float eps = (float)c->eps;
    const float wd = decay && !decoupled ? (float)c->weight_decay : 0.0f;
    const float shrink = (float)(1.0 - c->lr * c->weight_decay);
    const int shrinks = decay && decoupled, decays = wd != 0.0f;
    float *restrict pr = p, *restrict m = state[0], *restrict v = state[1];
    float *restrict vmax = c->amsgrad ? state[2] : NULL;
    const float *restrict gr = g;

    /* in passes without branches, so that each vectorizes; every element
     * sees the same float operations in the same order as in one loop */
    adam_moments(n, pr, gr, m, v, shrinks, shrink, decays, wd, b1, one_b1, b2, one_b2);
    const float *restrict s = v;
    if (vmax) {
        for (int64_t i = 0; i < n; i++)
            vmax[i] = max_nan(vmax[i], v[i]);
        s = vmax;
    }
    for (int64_t i = 0; i < n; i++) {
        float denom = sqrtf(s[i]) / bc2_sqrt + eps;
        pr[i] = pr[i] + neg_step * m[i] / denom;
    }
}

static void adam_update(const cnn_optimizer *opt, int decay, int64_t n, float *p,
                        const float *g, float *const *state)
{
    adam_core(opt, 0, decay, n, p, g, state);
}

static void adamw_update(const cnn_optimizer *opt, int decay, int64_t n, float *p,
                         const float *g, float *const *state)
{
    adam_core(opt, 1, decay, n, p, g, state);
}

/* ---- RMSprop -------------------------------------------------------------- */

static int rmsprop_check(const cnn_optim_config *c, cnn_error *err)
{
    if (!isfinite(c->eps) || c->eps < 0)
        return cnn_fail(err, "optimizer: eps %g must be >= 0", c->eps);
    if (!isfinite(c->momentum) || c->momentum < 0)
        return cnn_fail(err, "optimizer: momentum %g must be >= 0", c->momentum);
    if (!isfinite(c->alpha) || c->alpha < 0)
        return cnn_fail(err, "optimizer: alpha %g must be >= 0", c->alpha);
    return 0;
}

/* torch's state order: square_avg, momentum_buffer, grad_avg. */
static int rmsprop_layout(const cnn_optim_config *c, const char **names)
{
    int n = 0;
    names[n++] = "square_avg";
    if (c->momentum > 0)
        names[n++] = "momentum_buffer";
    if (c->centered)
        names[n++] = "grad_avg";
    return n;
}

/* torch.optim.RMSprop, 1.13's _single_tensor_rmsprop, per element:
 *   g = g + wd * p                               if wd != 0
 *   sq = sq * alpha + ((1 - alpha) * g) * g      (addcmul_)
 *   centered: ga = ga * alpha + (1 - alpha) * g
 *             avg = sqrt(sq - ga * ga)           (addcmul value=-1, sqrt_)
 *   else      avg = sqrt(sq)
 *   avg = avg + eps
 *   momentum > 0: b = b * momentum + g / avg;  p = p + (-lr) * b
 *   else          p = p + (-lr * g) / avg        (addcdiv_)
 * The momentum buffer starts at zero (torch creates it zeroed). */
static void rmsprop_update(const cnn_optimizer *opt, int decay, int64_t n, float *p,
                           const float *g, float *const *state)
{
    const cnn_optim_config *c = &opt->cfg;
    const float wd = decay ? (float)c->weight_decay : 0.0f;
    const float alpha = (float)c->alpha, one_alpha = (float)(1.0 - c->alpha);
    const float eps = (float)c->eps;
    const float mom = (float)c->momentum;
    const float neg_lr = (float)-c->lr;
    int k = 0;
    float *restrict sq = state[k++];
    float *restrict buf = c->momentum > 0 ? state[k++] : NULL;
    float *restrict ga = c->centered ? state[k++] : NULL;
    float *restrict pr = p;
    const float *restrict gr = g;
    const int decays = wd != 0.0f;

    /* branch-free loops (invariant choices as selects between values
     * loaded unconditionally), so that each vectorizes */
    for (int64_t i = 0; i < n; i++) {
        float pi = pr[i], gi = gr[i];
        gi = decays ? gi + wd * pi : gi;
        sq[i] = sq[i] * alpha + one_alpha * gi * gi;
    }
    if (ga) { /* avg = sqrt(sq - ga^2), kept in ga */
        for (int64_t i = 0; i < n; i++) {
            float pi = pr[i], gi = gr[i];
            gi = decays ? gi + wd * pi : gi;
            float a = ga[i] * alpha + one_alpha * gi;
            ga[i] = a;
        }
    }
    /* the last pass written out for each of centered / not and momentum /
     * not: a branch on a pointer that may be NULL cannot become a select */
#define RMSPROP_PASS(AVG, UPDATE)                                              \
    for (int64_t i = 0; i < n; i++) {                                          \
        float pi = pr[i], gi = gr[i];                                          \
        gi = decays ? gi + wd * pi : gi;                                       \
        float avg = (AVG) + eps;                                               \
        UPDATE;                                                                \
    }
#define CENTERED sqrtf(sq[i] + -1.0f * ga[i] * ga[i])
#define MOMENTUM buf[i] = buf[i] * mom + gi / avg, pr[i] = pi + neg_lr * buf[i]
#define PLAIN pr[i] = pi + neg_lr * gi / avg
    if (ga && buf)
        RMSPROP_PASS(CENTERED, MOMENTUM)
    else if (ga)
        RMSPROP_PASS(CENTERED, PLAIN)
    else if (buf)
        RMSPROP_PASS(sqrtf(sq[i]), MOMENTUM)
    else
        RMSPROP_PASS(sqrtf(sq[i]), PLAIN)
#undef RMSPROP_PASS
#undef CENTERED
#undef MOMENTUM
#undef PLAIN
}

/* ---- the table ------------------------------------------------------------ */

static const optim_kind kinds[] = {
    {CNN_OPTIM_SGD, "sgd", sgd_check, sgd_layout, sgd_update},
    {CNN_OPTIM_ADAM, "adam", adam_check, adam_layout, adam_update},
    {CNN_OPTIM_ADAMW, "adamw", adam_check, adam_layout, adamw_update},
    {CNN_OPTIM_RMSPROP, "rmsprop", rmsprop_check, rmsprop_layout, rmsprop_update},
};

static const optim_kind *find_kind(int type)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (kinds[i].type == type)
            return &kinds[i];
    return NULL;
}

int cnn_optim_lookup(const char *name)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (name && strcmp(kinds[i].name, name) == 0)
            return kinds[i].type;
    return -1;
}

const char *cnn_optim_name(int type)
{
    const optim_kind *k = find_kind(type);
    return k ? k->name : "?";
}

/* What every type shares (lr, weight decay, regularization, clipping),
 * then the type's own arguments, as torch.optim's constructors check them
 * plus finiteness.  The learning rate must be positive (torch allows 0,
 * which trains nothing). */
int cnn_optim_config_check(const cnn_optim_config *c, cnn_error *err)
{
    const optim_kind *k = find_kind(c->type);
    if (!k)
        return cnn_fail(err, "optimizer: unknown type %d", c->type);
    if (!isfinite(c->lr) || c->lr <= 0)
        return cnn_fail(err, "optimizer: learning rate %g must be positive", c->lr);
    if (!isfinite(c->weight_decay) || c->weight_decay < 0)
        return cnn_fail(err, "optimizer: weight_decay %g must be >= 0", c->weight_decay);
    if (!isfinite(c->l1) || c->l1 < 0)
        return cnn_fail(err, "optimizer: l1 %g must be >= 0", c->l1);
    if (!isfinite(c->l2) || c->l2 < 0)
        return cnn_fail(err, "optimizer: l2 %g must be >= 0", c->l2);
    if (!isfinite(c->clip_norm) || c->clip_norm < 0)
        return cnn_fail(err, "optimizer: clip_norm %g must be >= 0 (0: no clipping)",
                        c->clip_norm);
    return k->check(c, err);
}

cnn_optimizer *cnn_optimizer_create(const cnn_model_desc *m, const cnn_optim_config *cfg,
                                    cnn_error *err)
{
    if (cnn_model_check(m, err) < 0 || cnn_optim_config_check(cfg, err) < 0)
        return NULL;
    cnn_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) {
        cnn_fail(err, "optimizer: out of memory");
        return NULL;
    }
    opt->model = m;
    opt->cfg = *cfg;
    opt->kind = find_kind(cfg->type);
    opt->n_state = opt->kind->layout(cfg, opt->names);
    opt->norms = malloc((size_t)(m->n_params > 0 ? m->n_params : 1) * sizeof *opt->norms);
    if (!opt->norms) {
        cnn_fail(err, "optimizer: out of memory");
        cnn_optimizer_free(opt);
        return NULL;
    }
    size_t bytes = (size_t)(m->param_floats > 0 ? m->param_floats : 1) * sizeof(float);
    for (int k = 0; k < opt->n_state; k++) {
        opt->state[k] = malloc(bytes);
        if (!opt->state[k]) {
            cnn_fail(err, "optimizer: out of memory for %zu bytes of %s state", bytes,
                     opt->kind->name);
            cnn_optimizer_free(opt);
            return NULL;
        }
        memset(opt->state[k], 0, bytes); /* touch every page now, not in a step */
    }
    return opt;
}

/* ---- regularization and clipping ----------------------------------------- */

static int is_trainable(const cnn_param_desc *p)
{
    return (p->flags & CNN_PARAM_TRAINABLE) != 0;
}

/* Whether regularization and weight decay apply to trainable p. */
static int decays(const cnn_optimizer *opt, const cnn_param_desc *p)
{
    return opt->cfg.regularize_biases || (p->flags & CNN_PARAM_DECAY);
}

/* The gradient of l1*|p|_1 + l2/2*|p|^2: g = g + (l1*sign(p) + l2*p),
 * sign(0) = 0 as torch's abs backward has it. */
static void regularize(const cnn_optimizer *opt, const float *params, float *grads)
{
    const float l1 = (float)opt->cfg.l1, l2 = (float)opt->cfg.l2;
    if (l1 == 0.0f && l2 == 0.0f)
        return;
    const cnn_model_desc *m = opt->model;
    for (int32_t i = 0; i < m->n_params; i++) {
        const cnn_param_desc *p = &m->params[i];
        if (!is_trainable(p) || !decays(opt, p))
            continue;
        const float *w = params + p->offset;
        float *g = grads + p->offset;
        for (int64_t j = 0; j < p->size; j++) {
            float sign = (float)((w[j] > 0) - (w[j] < 0));
            g[j] = g[j] + (l1 * sign + l2 * w[j]);
        }
    }
}

/* torch.norm(x, 2) of n floats as torch 1.13 computes it on x86-64 CPUs
 * (the vectorized lastdim path of ReduceOpsKernel.cpp): eight float lanes,
 * each accumulating x*x with a fused multiply-add, summed lane 0 to 7,
 * then the leftover n % 8 elements added one by one.  The fused step is
 * (float)(acc + (double)x*x): x*x is exact in double, so only one rounding
 * is visible in practice.  Debian's build multiplies the leftovers in
 * groups of four before adding and fuses the rest; we do the same, which
 * makes the norm bit-identical to that torch (measured on random tensors
 * of 1 to 10^5 elements).  Summing in double instead would be more
 * accurate but differ from torch by several ulps on large tensors. */
static float torch_norm2(const float *x, int64_t n)
{
    float lane[8] = {0};
    int64_t d = 0;
    for (; d + 8 <= n; d += 8)
        for (int j = 0; j < 8; j++)
            lane[j] = (float)((double)lane[j] + (double)x[d + j] * (double)x[d + j]);
    float sum = lane[0];
    for (int j = 1; j < 8; j++)
        sum = sum + lane[j];
    int64_t fours = d + (n - d) / 4 * 4;
    for (; d < fours; d++)
        sum = sum + x[d] * x[d];
    for (; d < n; d++)
        sum = (float)((double)sum + (double)x[d] * (double)x[d]);
    return sqrtf(sum);
}

/* torch.nn.utils.clip_grad_norm_(params, max_norm) in 1.13:
 *   total = norm(stack([norm(g, 2) for g in grads]), 2)    float tensors
 *   coef = max_norm / (total + 1e-6)   = reciprocal(total + 1e-6) * max_norm
 *   g *= clamp(coef, max=1)
 * (Tensor.__rtruediv__ is reciprocal-then-multiply.)  Multiplying by 1 is
 * exact, so gradients are only touched when coef < 1 or is NaN. */
static void clip_grad_norm(cnn_optimizer *opt, float *grads)
{
    const cnn_model_desc *m = opt->model;
    int64_t k = 0;
    for (int32_t i = 0; i < m->n_params; i++) {
        const cnn_param_desc *p = &m->params[i];
        if (is_trainable(p))
            opt->norms[k++] = torch_norm2(grads + p->offset, p->size);
    }
    float total = torch_norm2(opt->norms, k);
    float coef = 1.0f / (total + (float)1e-6) * (float)opt->cfg.clip_norm;
    if (coef >= 1.0f)
        return;
    for (int32_t i = 0; i < m->n_params; i++) {
        const cnn_param_desc *p = &m->params[i];
        if (!is_trainable(p))
            continue;
        float *g = grads + p->offset;
        for (int64_t j = 0; j < p->size; j++)
            g[j] = g[j] * coef;
    }
}

/* ---- steps and state ------------------------------------------------------ */

void cnn_optimizer_step(cnn_optimizer *opt, float *params, float *grads)
{
    const cnn_model_desc *m = opt->model;
    regularize(opt, params, grads);
    if (opt->cfg.clip_norm > 0)
        clip_grad_norm(opt, grads);
    for (int32_t i = 0; i < m->n_params; i++) {
        const cnn_param_desc *p = &m->params[i];
        if (!is_trainable(p))
            continue;
        float *state[MAX_STATE] = {0};
        for (int k = 0; k < opt->n_state; k++)
            state[k] = opt->state[k] + p->offset;
        opt->kind->update(opt, decays(opt, p), p->size, params + p->offset,
                          grads + p->offset, state);
    }
    opt->steps++;
}

void cnn_optimizer_set_lr(cnn_optimizer *opt, double lr)
{
    opt->cfg.lr = lr;
}

int cnn_optimizer_state_count(const cnn_optimizer *opt)
{
    return opt->n_state;
}

const char *cnn_optimizer_state_name(const cnn_optimizer *opt, int i)
{
    return i >= 0 && i < opt->n_state ? opt->names[i] : NULL;
}

float *cnn_optimizer_state(cnn_optimizer *opt, int i)
{
    return i >= 0 && i < opt->n_state ? opt->state[i] : NULL;
}

int cnn_optimizer_type(const cnn_optimizer *opt)
{
    return opt->kind->type;
}

uint64_t cnn_optimizer_steps(const cnn_optimizer *opt)
{
    return opt->steps;
}

void cnn_optimizer_set_steps(cnn_optimizer *opt, uint64_t steps)
{
    opt->steps = steps;
}

void cnn_optimizer_free(cnn_optimizer *opt)
{
    if (!opt)
        return;
    for (int k = 0; k < MAX_STATE; k++)
        free(opt->state[k]);
    free(opt->norms);
    free(opt);
}
