/*
 * config.c — the training recipe: parsing the descriptor's train_config.
 *
 * The compiler writes the `train` block of the .cnn file as JSON, with its
 * defaults filled in:
 *
 *   {"batch": 64, "epochs": 5, "seed": 1,
 *    "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0, "dampening": 0,
 *                  "nesterov": false, "weight_decay": 0}
 *               | {"type": "adam" | "adamw", "lr": 0.001, "betas": [0.9, 0.999],
 *                  "eps": 1e-8, "weight_decay": 0 (adamw: 0.01), "amsgrad": false}
 *               | {"type": "rmsprop", "lr": 0.01, "alpha": 0.99, "eps": 1e-8,
 *                  "weight_decay": 0, "momentum": 0, "centered": false},
 *    "l1": 0, "l2": 0, "regularize_biases": false, "clip_norm": 0,
 *    "schedule": {"type": "constant"}
 *              | {"type": "step", "step_size": 10, "gamma": 0.1}
 *              | {"type": "multistep", "milestones": [5, 8], "gamma": 0.1}
 *              | {"type": "exponential", "gamma": 0.95}
 *              | {"type": "cosine", "t_max": 0, "eta_min": 0},
 *    "warmup_epochs": 0, "warmup_start": 0.1,
 *    ...the data keys, which data_config.c reads}
 *
 * Keys this runtime does not know are ignored, so that a model compiled by
 * a newer cnnc still trains with the parts this runtime understands; but a
 * known key with a value of the wrong type or out of range, or a type it
 * cannot run, is an error naming the key, because guessing would train
 * something other than what the user wrote.  Each optimizer and each
 * schedule is a row of a table (opt_parsers, sched_parsers) with its
 * defaults and the function that reads its own keys.  Types are checked
 * here; the optimizer's ranges by cnn_optim_config_check (which create
 * repeats), the schedule's here (nothing else checks them).
 */
#include "rt_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Read an optional number at key into *out; -1 if present but not a number. */
static int get_number(const json_t *obj, const char *key, double *out, cnn_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return cnn_fail(err, "train config: \"%s\" must be a number", key);
    *out = json_number_value(v);
    return 0;
}

/* Read an optional non-negative integer at key into *out. */
static int get_count(const json_t *obj, const char *key, int64_t *out, cnn_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return cnn_fail(err, "train config: \"%s\" must be a non-negative integer", key);
    *out = json_integer_value(v);
    return 0;
}

/* The same into an int, at most INT32_MAX. */
static int get_int(const json_t *obj, const char *key, int *out, cnn_error *err)
{
    int64_t x = *out;
    if (get_count(obj, key, &x, err) < 0)
        return -1;
    if (x > INT32_MAX)
        return cnn_fail(err, "train config: \"%s\" %lld is too large", key, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_bool(const json_t *obj, const char *key, int *out, cnn_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return cnn_fail(err, "train config: \"%s\" must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* The "type" string of obj, or dflt when absent; NULL (with a message) if
 * it is not a string. */
static const char *get_type(const json_t *obj, const char *what, const char *dflt,
                            cnn_error *err)
{
    const json_t *t = json_object_get(obj, "type");
    if (!t)
        return dflt;
    if (!json_is_string(t)) {
        cnn_fail(err, "train config: %s \"type\" must be a string", what);
        return NULL;
    }
    return json_string_value(t);
}

/* ---- optimizers ---------------------------------------------------------- */

static int parse_sgd(const json_t *o, cnn_optim_config *c, cnn_error *err)
{
    if (get_number(o, "lr", &c->lr, err) < 0 ||
        get_number(o, "momentum", &c->momentum, err) < 0 ||
        get_number(o, "dampening", &c->dampening, err) < 0 ||
        get_number(o, "weight_decay", &c->weight_decay, err) < 0 ||
        get_bool(o, "nesterov", &c->nesterov, err) < 0)
        return -1;
    return 0;
}

/* "betas": [beta1, beta2]. */
static int get_betas(const json_t *o, cnn_optim_config *c, cnn_error *err)
{
    const json_t *v = json_object_get(o, "betas");
    if (!v)
        return 0;
    if (!json_is_array(v) || json_array_size(v) != 2 ||
        !json_is_number(json_array_get(v, 0)) || !json_is_number(json_array_get(v, 1)))
        return cnn_fail(err, "train config: \"betas\" must be an array of two numbers");
    c->beta1 = json_number_value(json_array_get(v, 0));
    c->beta2 = json_number_value(json_array_get(v, 1));
    return 0;
}

static int parse_adam(const json_t *o, cnn_optim_config *c, cnn_error *err)
{
    if (get_number(o, "lr", &c->lr, err) < 0 || get_betas(o, c, err) < 0 ||
        get_number(o, "eps", &c->eps, err) < 0 ||
        get_number(o, "weight_decay", &c->weight_decay, err) < 0 ||
        get_bool(o, "amsgrad", &c->amsgrad, err) < 0)
        return -1;
    return 0;
}

static int parse_rmsprop(const json_t *o, cnn_optim_config *c, cnn_error *err)
{
    if (get_number(o, "lr", &c->lr, err) < 0 || get_number(o, "alpha", &c->alpha, err) < 0 ||
        get_number(o, "eps", &c->eps, err) < 0 ||
        get_number(o, "weight_decay", &c->weight_decay, err) < 0 ||
        get_number(o, "momentum", &c->momentum, err) < 0 ||
        get_bool(o, "centered", &c->centered, err) < 0)
        return -1;
    return 0;
}

/* Each type's defaults are its torch.optim constructor's. */
static const struct {
    int type;
    double lr, weight_decay; /* defaults that differ between types */
    int (*parse)(const json_t *obj, cnn_optim_config *c, cnn_error *err);
} opt_parsers[] = {
    {CNN_OPTIM_SGD, 0.01, 0, parse_sgd},
    {CNN_OPTIM_ADAM, 0.001, 0, parse_adam},
    {CNN_OPTIM_ADAMW, 0.001, 0.01, parse_adam},
    {CNN_OPTIM_RMSPROP, 0.01, 0, parse_rmsprop},
};

static int parse_optimizer(const json_t *o, cnn_optim_config *c, cnn_error *err)
{
    if (!json_is_object(o))
        return cnn_fail(err, "train config: \"optimizer\" must be an object");
    const char *name = get_type(o, "optimizer", "sgd", err);
    if (!name)
        return -1;
    int type = cnn_optim_lookup(name);
    for (size_t i = 0; i < sizeof opt_parsers / sizeof opt_parsers[0]; i++) {
        if (opt_parsers[i].type == type) {
            c->type = type;
            c->lr = opt_parsers[i].lr;
            c->weight_decay = opt_parsers[i].weight_decay;
            return opt_parsers[i].parse(o, c, err);
        }
    }
    char known[128] = "";
    for (size_t i = 0; i < sizeof opt_parsers / sizeof opt_parsers[0]; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                 cnn_optim_name(opt_parsers[i].type));
    return cnn_fail(err, "train config: unknown optimizer \"%s\" (this runtime knows: %s)",
                    name, known);
}

/* The keys beside "optimizer" that shape the gradient. */
static int parse_regularization(const json_t *root, cnn_optim_config *c, cnn_error *err)
{
    if (get_number(root, "l1", &c->l1, err) < 0 || get_number(root, "l2", &c->l2, err) < 0 ||
        get_bool(root, "regularize_biases", &c->regularize_biases, err) < 0 ||
        get_number(root, "clip_norm", &c->clip_norm, err) < 0)
        return -1;
    return 0;
}

/* ---- schedules ------------------------------------------------------------ */

/* "gamma" > 0. */
static int get_gamma(const json_t *o, cnn_schedule_config *s, cnn_error *err)
{
    if (get_number(o, "gamma", &s->gamma, err) < 0)
        return -1;
    if (!isfinite(s->gamma) || s->gamma <= 0)
        return cnn_fail(err, "train config: schedule \"gamma\" %g must be > 0", s->gamma);
    return 0;
}

static int parse_constant(const json_t *o, cnn_schedule_config *s, cnn_error *err)
{
    (void)o, (void)s, (void)err;
    return 0;
}

static int parse_step(const json_t *o, cnn_schedule_config *s, cnn_error *err)
{
    if (get_int(o, "step_size", &s->step_size, err) < 0 || get_gamma(o, s, err) < 0)
        return -1;
    if (s->step_size < 1)
        return cnn_fail(err, "train config: schedule \"step_size\" must be at least 1");
    return 0;
}

/* "milestones": increasing epochs, required (torch's MultiStepLR has no
 * default for them either). */
static int parse_multistep(const json_t *o, cnn_schedule_config *s, cnn_error *err)
{
    if (get_gamma(o, s, err) < 0)
        return -1;
    const json_t *v = json_object_get(o, "milestones");
    if (!v)
        return cnn_fail(err, "train config: schedule \"milestones\" is required for "
                        "multistep");
    if (!json_is_array(v) || json_array_size(v) > CNN_MAX_MILESTONES)
        return cnn_fail(err, "train config: schedule \"milestones\" must be an array of at "
                        "most %d epochs", CNN_MAX_MILESTONES);
    size_t i;
    const json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 ||
            json_integer_value(x) > INT32_MAX)
            return cnn_fail(err, "train config: schedule \"milestones\"[%zu] must be a "
                            "non-negative integer", i);
        s->milestones[i] = (int)json_integer_value(x);
        if (i > 0 && s->milestones[i] <= s->milestones[i - 1])
            return cnn_fail(err, "train config: schedule \"milestones\" must increase (%d "
                            "after %d)", s->milestones[i], s->milestones[i - 1]);
    }
    s->n_milestones = (int)json_array_size(v);
    return 0;
}

static int parse_cosine(const json_t *o, cnn_schedule_config *s, cnn_error *err)
{
    if (get_int(o, "t_max", &s->t_max, err) < 0 || get_number(o, "eta_min", &s->eta_min, err) < 0)
        return -1;
    if (!isfinite(s->eta_min) || s->eta_min < 0)
        return cnn_fail(err, "train config: schedule \"eta_min\" %g must be >= 0", s->eta_min);
    return 0;
}

static const struct {
    int type;        /* enum cnn_schedule_type */
    const char *name;
    double gamma;    /* default */
    int (*parse)(const json_t *obj, cnn_schedule_config *s, cnn_error *err);
} sched_parsers[] = {
    {CNN_SCHED_CONSTANT, "constant", 0.1, parse_constant},
    {CNN_SCHED_STEP, "step", 0.1, parse_step},
    {CNN_SCHED_MULTISTEP, "multistep", 0.1, parse_multistep},
    {CNN_SCHED_EXPONENTIAL, "exponential", 0.95, get_gamma},
    {CNN_SCHED_COSINE, "cosine", 0.1, parse_cosine},
};

static int parse_schedule(const json_t *o, cnn_schedule_config *s, cnn_error *err)
{
    if (!json_is_object(o))
        return cnn_fail(err, "train config: \"schedule\" must be an object");
    const char *name = get_type(o, "schedule", "constant", err);
    if (!name)
        return -1;
    for (size_t i = 0; i < sizeof sched_parsers / sizeof sched_parsers[0]; i++) {
        if (strcmp(sched_parsers[i].name, name) == 0) {
            s->type = sched_parsers[i].type;
            s->gamma = sched_parsers[i].gamma;
            return sched_parsers[i].parse(o, s, err);
        }
    }
    char known[128] = "";
    for (size_t i = 0; i < sizeof sched_parsers / sizeof sched_parsers[0]; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                 sched_parsers[i].name);
    return cnn_fail(err, "train config: unknown schedule \"%s\" (this runtime knows: %s)", name,
                    known);
}

/* "warmup_epochs" >= 0 and "warmup_start" in [0, 1], at the root. */
static int parse_warmup(const json_t *root, cnn_schedule_config *s, cnn_error *err)
{
    if (get_number(root, "warmup_epochs", &s->warmup_epochs, err) < 0 ||
        get_number(root, "warmup_start", &s->warmup_start, err) < 0)
        return -1;
    if (!isfinite(s->warmup_epochs) || s->warmup_epochs < 0)
        return cnn_fail(err, "train config: \"warmup_epochs\" %g must be >= 0",
                        s->warmup_epochs);
    if (!(s->warmup_start >= 0 && s->warmup_start <= 1))
        return cnn_fail(err, "train config: \"warmup_start\" %g must be in [0, 1]",
                        s->warmup_start);
    return 0;
}

/* ---- the whole config ----------------------------------------------------- */

static int parse_root(const json_t *root, cnn_train_config *cfg, cnn_error *err)
{
    if (!json_is_object(root))
        return cnn_fail(err, "train config: expected a JSON object");
    int64_t batch = cfg->batch, epochs = cfg->epochs, seed = (int64_t)cfg->seed;
    if (get_count(root, "batch", &batch, err) < 0 ||
        get_count(root, "epochs", &epochs, err) < 0 || get_count(root, "seed", &seed, err) < 0)
        return -1;
    if (batch > INT32_MAX || epochs > INT32_MAX)
        return cnn_fail(err, "train config: batch %lld or epochs %lld too large",
                        (long long)batch, (long long)epochs);
    cfg->batch = (int)batch;
    cfg->epochs = (int)epochs;
    cfg->seed = (uint64_t)seed;
    const json_t *o = json_object_get(root, "optimizer");
    if (o && parse_optimizer(o, &cfg->optim, err) < 0)
        return -1;
    if (parse_regularization(root, &cfg->optim, err) < 0)
        return -1;
    const json_t *s = json_object_get(root, "schedule");
    if (s && parse_schedule(s, &cfg->schedule, err) < 0)
        return -1;
    if (parse_warmup(root, &cfg->schedule, err) < 0)
        return -1;
    if (cnn_data_config_parse(root, &cfg->data, err) < 0)
        return -1;
    return cnn_optim_config_check(&cfg->optim, err);
}

/* Defaults: SGD as torch.optim.SGD's (lr 0.01, the rest 0), the other
 * types' arguments at their torch defaults too, so that switching
 * cfg->optim.type in code gives a working configuration; a constant
 * schedule without warm-up. */
int cnn_train_config_parse(const char *json, cnn_train_config *cfg, cnn_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->epochs = 1;
    cfg->optim.type = CNN_OPTIM_SGD;
    cfg->optim.lr = 0.01;
    cfg->optim.beta1 = 0.9;
    cfg->optim.beta2 = 0.999;
    cfg->optim.eps = 1e-8;
    cfg->optim.alpha = 0.99;
    cfg->schedule.type = CNN_SCHED_CONSTANT;
    cfg->schedule.step_size = 10;
    cfg->schedule.gamma = 0.1;
    cfg->schedule.warmup_start = 0.1;
    if (!json)
        return 0;
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return cnn_fail(err, "train config: invalid JSON at line %d column %d: %s", jerr.line,
                        jerr.column, jerr.text);
    int rc = parse_root(root, cfg, err);
    json_decref(root);
    return rc;
}
