/*
 * data_config.c — the data part of the train config: normalization, the
 * validation split and augmentation.
 *
 * The compiler writes these keys beside the optimizer's:
 *
 *   "normalize": "none" | "auto" | "given",  "mean": [..], "std": [..],
 *   "validation": 0.1,
 *   "augment": [{"type": "hflip", "p": 0.5},
 *               {"type": "rotate", "degrees": 10, "fill": 0},
 *               {"type": "scale", "min": 0.9, "max": 1.1, "fill": 0},
 *               {"type": "crop", "padding": 4, "fill": 0},
 *               {"type": "translate", "max": 0.1, "fill": 0}]
 *
 * As in config.c, unknown keys are ignored and a known key with a wrong
 * type or an out-of-range value is an error naming it.  "mean" and "std"
 * belong to "normalize": "given" (one value per channel, checked against
 * the images when the loader is made); given with another mode they are an
 * error rather than silently unused; null stands for "not given", as the
 * compiler writes it.  Each augmentation type is a row of augment_kinds:
 * its name and the function that reads its own keys.  Defaults are the
 * compiler's (p 0.5, scale 0.9..1.1, padding 4, translate 0.1, fill 0),
 * except that a rotation needs its angle.
 */
#include "rt_internal.h"

#include <stdio.h>
#include <string.h>

/* Where a key lives, for messages: "" at the root, "augment[2] (rotate): "
 * inside an augmentation. */
typedef struct where {
    char text[64];
} where;

/* Read the number at key into *out if present; check it lies in [lo, hi]. */
static int get_number(const json_t *obj, const char *key, int required, double lo, double hi,
                      double *out, const where *at, cnn_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            return cnn_fail(err, "train config: %s\"%s\" is required", at->text, key);
        return 0;
    }
    if (!json_is_number(v))
        return cnn_fail(err, "train config: %s\"%s\" must be a number", at->text, key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return cnn_fail(err, "train config: %s\"%s\" is %g, must be in [%g, %g]", at->text, key,
                        x, lo, hi);
    *out = x;
    return 0;
}

/* ---- normalization ------------------------------------------------------------ */

/* An array of 1..CNN_MAX_CHANNELS numbers at key into out; returns its
 * length, 0 when absent or null (the compiler's "not given"), -1 on error.
 * positive: each must be > 0. */
static int get_channels(const json_t *root, const char *key, int positive, double *out,
                        cnn_error *err)
{
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > CNN_MAX_CHANNELS)
        return cnn_fail(err, "train config: \"%s\" must be an array of 1 to %d numbers, one "
                        "per channel", key, CNN_MAX_CHANNELS);
    size_t i;
    const json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_number(x))
            return cnn_fail(err, "train config: \"%s\"[%zu] must be a number", key, i);
        out[i] = json_number_value(x);
        if (positive && !(out[i] > 0))
            return cnn_fail(err, "train config: \"%s\"[%zu] is %g, must be > 0", key, i,
                            out[i]);
    }
    return (int)json_array_size(v);
}

static int parse_normalize(const json_t *root, cnn_data_config *cfg, cnn_error *err)
{
    static const char *const modes[] = {"none", "given", "auto"}; /* = cfg->normalize */
    const json_t *v = json_object_get(root, "normalize");
    if (v) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        int mode = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(s, modes[i]) == 0)
                mode = i;
        if (mode < 0)
            return cnn_fail(err, "train config: \"normalize\" must be \"none\", \"auto\" or "
                            "\"given\"");
        cfg->normalize = mode;
    }
    double mean[CNN_MAX_CHANNELS], std[CNN_MAX_CHANNELS];
    int nmean = get_channels(root, "mean", 0, mean, err);
    if (nmean < 0)
        return -1;
    int nstd = get_channels(root, "std", 1, std, err);
    if (nstd < 0)
        return -1;
    if (cfg->normalize != 1) {
        if (nmean > 0 || nstd > 0)
            return cnn_fail(err, "train config: \"%s\" is given but \"normalize\" is \"%s\" "
                            "(use \"given\" to normalize with it)", nmean ? "mean" : "std",
                            cfg->normalize == 2 ? "auto" : "none");
        return 0;
    }
    if (nmean == 0 && nstd == 0 && cfg->channels > 0)
        return 0; /* keep what the caller's cfg holds */
    if (nmean == 0 || nstd == 0)
        return cnn_fail(err, "train config: \"normalize\": \"given\" needs both \"mean\" and "
                        "\"std\"");
    if (nmean != nstd)
        return cnn_fail(err, "train config: \"mean\" has %d values but \"std\" has %d", nmean,
                        nstd);
    cfg->channels = nmean;
    memcpy(cfg->mean, mean, (size_t)nmean * sizeof *mean);
    memcpy(cfg->std, std, (size_t)nstd * sizeof *std);
    return 0;
}

/* ---- augmentation ------------------------------------------------------------------ */

#define MAX_DEGREES 180.0
#define MAX_ZOOM 10.0
#define MAX_PADDING 4096

static int parse_fill(const json_t *o, cnn_augment *a, const where *at, cnn_error *err)
{
    return get_number(o, "fill", 0, 0, 1, &a->fill, at, err);
}

static int parse_hflip(const json_t *o, cnn_augment *a, const where *at, cnn_error *err)
{
    a->p = 0.5;
    return get_number(o, "p", 0, 0, 1, &a->p, at, err);
}

static int parse_rotate(const json_t *o, cnn_augment *a, const where *at, cnn_error *err)
{
    if (get_number(o, "degrees", 1, 0, MAX_DEGREES, &a->degrees, at, err) < 0)
        return -1;
    return parse_fill(o, a, at, err);
}

static int parse_scale(const json_t *o, cnn_augment *a, const where *at, cnn_error *err)
{
    a->min = 0.9;
    a->max = 1.1;
    if (get_number(o, "min", 0, 1e-3, MAX_ZOOM, &a->min, at, err) < 0 ||
        get_number(o, "max", 0, 1e-3, MAX_ZOOM, &a->max, at, err) < 0)
        return -1;
    if (a->min > a->max)
        return cnn_fail(err, "train config: %s\"min\" %g is larger than \"max\" %g", at->text,
                        a->min, a->max);
    return parse_fill(o, a, at, err);
}

static int parse_crop(const json_t *o, cnn_augment *a, const where *at, cnn_error *err)
{
    const json_t *v = json_object_get(o, "padding");
    a->padding = 4;
    if (!v)
        return parse_fill(o, a, at, err);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MAX_PADDING)
        return cnn_fail(err, "train config: %s\"padding\" must be an integer in [0, %d]",
                        at->text, MAX_PADDING);
    a->padding = (int)json_integer_value(v);
    return parse_fill(o, a, at, err);
}

static int parse_translate(const json_t *o, cnn_augment *a, const where *at, cnn_error *err)
{
    a->max = 0.1;
    if (get_number(o, "max", 0, 0, 1, &a->max, at, err) < 0)
        return -1;
    return parse_fill(o, a, at, err);
}

static const struct augment_kind {
    const char *name;
    int type;
    int (*parse)(const json_t *o, cnn_augment *a, const where *at, cnn_error *err);
} augment_kinds[] = {
    {"hflip", CNN_AUG_HFLIP, parse_hflip},
    {"rotate", CNN_AUG_ROTATE, parse_rotate},
    {"scale", CNN_AUG_SCALE, parse_scale},
    {"crop", CNN_AUG_CROP, parse_crop},
    {"translate", CNN_AUG_TRANSLATE, parse_translate},
};
#define N_KINDS (sizeof augment_kinds / sizeof augment_kinds[0])

static int parse_one_augment(const json_t *o, size_t index, cnn_augment *a, cnn_error *err)
{
    if (!json_is_object(o))
        return cnn_fail(err, "train config: \"augment\"[%zu] must be an object", index);
    const json_t *t = json_object_get(o, "type");
    if (!t || !json_is_string(t))
        return cnn_fail(err, "train config: \"augment\"[%zu] needs a \"type\" string", index);
    const char *name = json_string_value(t);
    for (size_t k = 0; k < N_KINDS; k++) {
        if (strcmp(name, augment_kinds[k].name) != 0)
            continue;
        where at;
        snprintf(at.text, sizeof at.text, "augment[%zu] (%s): ", index, name);
        memset(a, 0, sizeof *a);
        a->type = augment_kinds[k].type;
        return augment_kinds[k].parse(o, a, &at, err);
    }
    char known[128] = "";
    for (size_t k = 0; k < N_KINDS; k++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", k ? ", " : "",
                 augment_kinds[k].name);
    return cnn_fail(err, "train config: \"augment\"[%zu]: unknown type \"%s\" (this runtime "
                    "knows: %s)", index, name, known);
}

static int parse_augment(const json_t *root, cnn_data_config *cfg, cnn_error *err)
{
    const json_t *v = json_object_get(root, "augment");
    if (!v)
        return 0;
    if (!json_is_array(v))
        return cnn_fail(err, "train config: \"augment\" must be an array of objects");
    if (json_array_size(v) > CNN_MAX_AUGMENT)
        return cnn_fail(err, "train config: \"augment\" has %zu entries, at most %d",
                        json_array_size(v), CNN_MAX_AUGMENT);
    cnn_augment list[CNN_MAX_AUGMENT];
    size_t i;
    const json_t *o;
    json_array_foreach(v, i, o) {
        if (parse_one_augment(o, i, &list[i], err) < 0)
            return -1;
    }
    cfg->n_augment = (int)json_array_size(v);
    memcpy(cfg->augment, list, (size_t)cfg->n_augment * sizeof *list);
    return 0;
}

/* ---- the data config ----------------------------------------------------------------- */

int cnn_data_config_parse(const json_t *root, cnn_data_config *cfg, cnn_error *err)
{
    const where at = {""};
    if (parse_normalize(root, cfg, err) < 0 ||
        get_number(root, "validation", 0, 0, 0.9, &cfg->validation, &at, err) < 0 ||
        parse_augment(root, cfg, err) < 0)
        return -1;
    return 0;
}
