/*
 * config.c — the training recipe: parsing the descriptor's train_config.
 *
 * The compiler writes the `train` block of the .cnn file as JSON, with its
 * defaults filled in:
 *
 *   {"batch": 64, "epochs": 5, "seed": 42,
 *    "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9,
 *                  "dampening": 0, "nesterov": false, "weight_decay": 0}}
 *
 * Keys this runtime does not know are ignored, so that a model compiled by
 * a newer cnnc (with schedules, augmentation, ...) still trains with the
 * parts this runtime understands; but a known key with a value of the
 * wrong type, or an optimizer type it cannot run, is an error, because
 * guessing would train something other than what the user wrote.  Each
 * optimizer type has a row in opt_parsers: its own keys live in its own
 * object, and adding Adam means adding a row and its parse function.
 */
#include "rt_internal.h"

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

static const struct {
    int type;
    int (*parse)(const json_t *obj, cnn_optim_config *c, cnn_error *err);
} opt_parsers[] = {
    {CNN_OPTIM_SGD, parse_sgd},
};

static int parse_optimizer(const json_t *o, cnn_optim_config *c, cnn_error *err)
{
    if (!json_is_object(o))
        return cnn_fail(err, "train config: \"optimizer\" must be an object");
    const json_t *t = json_object_get(o, "type");
    if (t && !json_is_string(t))
        return cnn_fail(err, "train config: optimizer \"type\" must be a string");
    const char *name = t ? json_string_value(t) : "sgd";
    int type = cnn_optim_lookup(name);
    for (size_t i = 0; i < sizeof opt_parsers / sizeof opt_parsers[0]; i++) {
        if (opt_parsers[i].type == type) {
            c->type = type;
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
    if (cnn_data_config_parse(root, &cfg->data, err) < 0)
        return -1;
    return cnn_optim_config_check(&cfg->optim, err);
}

int cnn_train_config_parse(const char *json, cnn_train_config *cfg, cnn_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->epochs = 1;
    cfg->optim.type = CNN_OPTIM_SGD;
    cfg->optim.lr = 0.01;
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
