/*
 * options.h — checking the arguments of a call in a .cnn file against a
 * table of the options it takes.
 *
 * A call is `op(inputs..., key = value, ...)`.  After the inputs, positional
 * arguments fill options in table order; keyword arguments name them.  The
 * checker reports, with a caret on the culprit: unknown keys (with "did you
 * mean"), duplicates, missing required options, values of the wrong type
 * and values out of range.  What it returns is a JSON object holding every
 * option of the table, defaults filled in, in a canonical form:
 *
 *   OPT_INT      integer            OPT_FLOAT   real
 *   OPT_BOOL     true / false       OPT_NAME    one of `choices`, as a string
 *   OPT_SIZE2    [a, b] (from `k` or `[a, b]`)
 *   OPT_PADDING  [top, left, bottom, right] or "same" / "valid"
 *   OPT_CALL     {"type": name, its own options...}; a bare name is a
 *                call without arguments (`init = he_uniform`)
 *   OPT_FLOATS   [reals]          OPT_INTS    [integers]
 *   OPT_CALLS    [{"type": name, ...}, ...]
 *
 * Tables end with an entry whose key is NULL.  JSON also carries the train
 * block to the runtime unchanged (compiler/sema.c).
 */
#ifndef CNNC_OPTIONS_H
#define CNNC_OPTIONS_H

#include <jansson.h>

#include "ast.h"

typedef enum opt_type {
    OPT_INT,
    OPT_FLOAT,
    OPT_BOOL,
    OPT_NAME,
    OPT_SIZE2,
    OPT_PADDING,
    OPT_CALL,
    OPT_FLOATS, /* a list of numbers (a single number is a list of one) */
    OPT_INTS,   /* a list of integers */
    OPT_CALLS,  /* a list of calls or names from `calls` */
} opt_type;

typedef struct call_spec call_spec;

typedef struct opt_spec {
    const char *key;
    opt_type type;
    const char *def;             /* default as JSON text; NULL = required; "null" = optional */
    double min, max;             /* inclusive bounds on numbers (unchecked when min >= max) */
    const char *const *choices;  /* OPT_NAME: NULL-terminated */
    const call_spec *calls;      /* OPT_CALL: the calls allowed, key NULL ends */
    const char *help;            /* one line for the language reference */
    int min_len, max_len;        /* lists: allowed lengths (0, 0: 1 to 64) */
} opt_spec;

struct call_spec {
    const char *name;
    const opt_spec *opts;
    const char *help;
};

/* Check call->args[first..] against spec (named `what` in messages, e.g.
 * "conv2d").  Returns a new JSON object, or NULL after reporting errors. */
json_t *opt_check_call(const ast_expr *call, int first, const opt_spec *spec, const char *what,
                       diag *d);

/* Check a single value against one option (used for `key = value` lines of
 * blocks).  Returns a new JSON value, or NULL after reporting an error. */
json_t *opt_check_value(const ast_expr *value, const opt_spec *spec, const char *what, diag *d);

/* A new JSON value: the default of s in canonical form (a size given as one
 * number becomes [v, v], a padding [v, v, v, v]). */
json_t *opt_default(const opt_spec *s);

/* The option named key in spec, or NULL. */
const opt_spec *opt_find(const opt_spec *spec, const char *key);

/* "did you mean 'x'?" for key among spec's keys: returns the suggestion or NULL. */
const char *opt_suggest(const opt_spec *spec, const char *key);

/* Shorthands for reading a checked object. */
int opt_int(const json_t *obj, const char *key);
double opt_real(const json_t *obj, const char *key);
int opt_bool(const json_t *obj, const char *key);
const char *opt_str(const json_t *obj, const char *key);

#endif
