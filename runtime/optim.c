/*
 * optim.c — optimizers: the update of the flat parameter array from the
 * flat gradient array after each train step.
 *
 * An optimizer is a row of `kinds`: its name, how many state arrays it
 * needs for a configuration (SGD: a momentum buffer if momentum != 0; Adam
 * will need two, RMSprop up to three), and an update function over one
 * contiguous run of parameters.  State arrays have the parameter layout
 * (param_floats floats each), so the update of parameter p at offset o
 * reads state[k] + o: one loop per parameter, no indirection, and the state
 * can be written to a checkpoint as it is.  They are allocated and zeroed
 * by create, so that no allocation or page fault happens inside a step.
 *
 * Updates are in float, operation by operation as torch.optim does them
 * (torch.optim.SGD's single-tensor path); the step counter tells the
 * update whether this is the first step, where torch creates its buffers.
 * Only trainable parameters are updated; weight decay applies to those
 * flagged CNN_PARAM_DECAY.
 */
#include "cnnrt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STATE 4 /* state arrays per optimizer: room for Adam/RMSprop */

/* One parameter's update: n floats of p, g and each state array, all
 * pointing at the parameter's offset. */
typedef void (*update_fn)(const cnn_optimizer *opt, int decay, int64_t n, float *p,
                          const float *g, float *const *state);

typedef struct optim_kind {
    int type;          /* enum cnn_optim_type */
    const char *name;  /* the name in train configs */
    int (*n_state)(const cnn_optim_config *cfg);
    update_fn update;
} optim_kind;

struct cnn_optimizer {
    const cnn_model_desc *model;
    cnn_optim_config cfg;
    const optim_kind *kind;
    int n_state;              /* state arrays in use */
    float *state[MAX_STATE];  /* param_floats floats each */
    uint64_t steps;           /* updates applied so far */
};

/* ---- SGD ------------------------------------------------------------------ */

static int sgd_n_state(const cnn_optim_config *cfg)
{
    return cfg->momentum != 0 ? 1 : 0;
}

/* torch.optim.SGD, per element:
 *   d = g + wd * p
 *   b = d (first step) | momentum * b + (1 - dampening) * d
 *   d = d + momentum * b (nesterov) | b
 *   p = p - lr * d
 * Constants are rounded to float as torch rounds its Python scalars. */
static void sgd_update(const cnn_optimizer *opt, int decay, int64_t n, float *p,
                       const float *g, float *const *state)
{
    const cnn_optim_config *c = &opt->cfg;
    const float wd = decay ? (float)c->weight_decay : 0.0f;
    const float mom = (float)c->momentum;
    const float keep = (float)(1.0 - c->dampening);
    const float neg_lr = (float)-c->lr;
    const int first = opt->steps == 0;
    float *buf = opt->n_state > 0 ? state[0] : NULL;

    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (wd != 0.0f)
            d = d + wd * p[i];
        if (buf) {
            float b;
            if (first) {
                b = d;
            } else {
                b = buf[i] * mom;
                b = b + keep * d;
            }
            buf[i] = b;
            d = c->nesterov ? d + mom * b : b;
        }
        p[i] = p[i] + neg_lr * d;
    }
}

/* ---- the table ------------------------------------------------------------ */

static const optim_kind kinds[] = {
    {CNN_OPTIM_SGD, "sgd", sgd_n_state, sgd_update},
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

/* torch.optim.SGD's own argument checks, plus finiteness. */
int cnn_optim_config_check(const cnn_optim_config *c, cnn_error *err)
{
    if (!find_kind(c->type))
        return cnn_fail(err, "optimizer: unknown type %d", c->type);
    if (!isfinite(c->lr) || c->lr <= 0)
        return cnn_fail(err, "optimizer: learning rate %g must be positive", c->lr);
    if (!isfinite(c->momentum) || c->momentum < 0)
        return cnn_fail(err, "optimizer: momentum %g must be >= 0", c->momentum);
    if (!isfinite(c->dampening))
        return cnn_fail(err, "optimizer: dampening %g is not finite", c->dampening);
    if (!isfinite(c->weight_decay) || c->weight_decay < 0)
        return cnn_fail(err, "optimizer: weight_decay %g must be >= 0", c->weight_decay);
    if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
        return cnn_fail(err, "optimizer: nesterov needs momentum > 0 and dampening 0 "
                        "(momentum %g, dampening %g)", c->momentum, c->dampening);
    return 0;
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
    opt->n_state = opt->kind->n_state(cfg);
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

void cnn_optimizer_step(cnn_optimizer *opt, float *params, float *grads)
{
    const cnn_model_desc *m = opt->model;
    for (int32_t i = 0; i < m->n_params; i++) {
        const cnn_param_desc *p = &m->params[i];
        if (!(p->flags & CNN_PARAM_TRAINABLE))
            continue;
        float *state[MAX_STATE] = {0};
        for (int k = 0; k < opt->n_state; k++)
            state[k] = opt->state[k] + p->offset;
        opt->kind->update(opt, (p->flags & CNN_PARAM_DECAY) != 0, p->size,
                          params + p->offset, grads + p->offset, state);
    }
    opt->steps++;
}

void cnn_optimizer_free(cnn_optimizer *opt)
{
    if (!opt)
        return;
    for (int k = 0; k < MAX_STATE; k++)
        free(opt->state[k]);
    free(opt);
}
