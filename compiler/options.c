/*
 * options.c — the option checker of options.h.
 *
 * One recursive function per shape of value; each reports its own errors
 * with the caret on the value and says what was expected, so that
 * `conv2d(x, filters = 6.5)` reads "option 'filters' of conv2d expects an
 * integer, got 6.5".
 */
#include "options.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const opt_spec *opt_find(const opt_spec *spec, const char *key)
{
    for (; spec && spec->key; spec++)
        if (strcmp(spec->key, key) == 0)
            return spec;
    return NULL;
}

const char *opt_suggest(const opt_spec *spec, const char *key)
{
    const char *keys[64];
    int n = 0;
    for (; spec && spec->key && n < 64; spec++)
        keys[n++] = spec->key;
    return src_suggest(key, keys, n);
}

/* A short rendering of a value for messages. */
static void describe(const ast_expr *e, char *buf, size_t size)
{
    switch (e->kind) {
    case AST_NUMBER:
        snprintf(buf, size, "%g", e->number);
        break;
    case AST_STRING:
        snprintf(buf, size, "\"%s\"", e->text);
        break;
    case AST_NAME:
        snprintf(buf, size, "'%s'", e->text);
        break;
    case AST_LIST:
        snprintf(buf, size, "a list of %d", e->nargs);
        break;
    case AST_CALL:
        snprintf(buf, size, "%s(...)", e->text);
        break;
    }
}

static json_t *bad(const ast_expr *e, const opt_spec *s, const char *what, const char *expected,
                   diag *d)
{
    char got[96];
    describe(e, got, sizeof got);
    src_error(d, e->loc, "option '%s' of %s expects %s, got %s", s->key, what, expected, got);
    return NULL;
}

static int in_range(const ast_expr *e, const opt_spec *s, const char *what, double v, diag *d)
{
    if (s->min >= s->max) /* no bounds given */
        return 1;
    if (v < s->min) {
        src_error(d, e->loc, "option '%s' of %s must be at least %g, got %g", s->key, what,
                  s->min, v);
        return 0;
    }
    if (v > s->max) {
        src_error(d, e->loc, "option '%s' of %s must be at most %g, got %g", s->key, what, s->max,
                  v);
        return 0;
    }
    return 1;
}

static json_t *check_int(const ast_expr *e, const opt_spec *s, const char *what, diag *d)
{
    if (e->kind != AST_NUMBER || !e->is_int)
        return bad(e, s, what, "an integer", d);
    if (!in_range(e, s, what, e->number, d))
        return NULL;
    if (fabs(e->number) > 9.0e15)
        return bad(e, s, what, "a smaller integer", d);
    return json_integer((json_int_t)e->number);
}

static json_t *check_name(const ast_expr *e, const opt_spec *s, const char *what, diag *d)
{
    char expected[256] = "one of";
    int n = 0;
    for (const char *const *c = s->choices; *c; c++, n++)
        snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s %s",
                 n ? "," : "", *c);
    if (e->kind != AST_NAME && e->kind != AST_STRING)
        return bad(e, s, what, expected, d);
    for (const char *const *c = s->choices; *c; c++)
        if (strcmp(*c, e->text) == 0)
            return json_string(e->text);
    const char *hint = src_suggest(e->text, (const char *const *)s->choices, n);
    if (hint)
        src_error(d, e->loc, "option '%s' of %s expects %s, got '%s'; did you mean '%s'?", s->key,
                  what, expected, e->text, hint);
    else
        src_error(d, e->loc, "option '%s' of %s expects %s, got '%s'", s->key, what, expected,
                  e->text);
    return NULL;
}

/* Integers from a number or a list of `allowed` lengths; fills v[]. */
static int int_list(const ast_expr *e, const opt_spec *s, const char *what, int *v, int *count,
                    const char *expected, int max_items, diag *d)
{
    if (e->kind == AST_NUMBER) {
        if (!e->is_int)
            goto fail;
        *count = 1;
        v[0] = (int)e->number;
        return in_range(e, s, what, v[0], d);
    }
    if (e->kind != AST_LIST || e->nargs < 1 || e->nargs > max_items)
        goto fail;
    for (int i = 0; i < e->nargs; i++) {
        const ast_expr *item = e->args[i].value;
        if (item->kind != AST_NUMBER || !item->is_int) {
            bad(item, s, what, expected, d);
            return 0;
        }
        v[i] = (int)item->number;
        if (!in_range(item, s, what, v[i], d))
            return 0;
    }
    *count = e->nargs;
    return 1;
fail:
    bad(e, s, what, expected, d);
    return 0;
}

static json_t *check_size2(const ast_expr *e, const opt_spec *s, const char *what, diag *d)
{
    int v[2], n;
    const char *expected = "an integer or a list [height, width]";
    if (e->kind == AST_LIST && e->nargs != 2)
        return bad(e, s, what, expected, d);
    if (!int_list(e, s, what, v, &n, expected, 2, d))
        return NULL;
    return json_pack("[ii]", v[0], n == 2 ? v[1] : v[0]);
}

static json_t *check_padding(const ast_expr *e, const opt_spec *s, const char *what, diag *d)
{
    const char *expected =
        "an integer, [height, width], [top, left, bottom, right], same or valid";
    if (e->kind == AST_NAME || e->kind == AST_STRING) {
        if (strcmp(e->text, "same") == 0 || strcmp(e->text, "valid") == 0)
            return json_string(e->text);
        static const char *const modes[] = {"same", "valid"};
        const char *hint = src_suggest(e->text, modes, 2);
        if (hint) {
            src_error(d, e->loc, "option '%s' of %s expects %s, got '%s'; did you mean '%s'?",
                      s->key, what, expected, e->text, hint);
            return NULL;
        }
        return bad(e, s, what, expected, d);
    }
    int v[4], n;
    if (e->kind == AST_LIST && e->nargs != 2 && e->nargs != 4)
        return bad(e, s, what, expected, d);
    if (!int_list(e, s, what, v, &n, expected, 4, d))
        return NULL;
    if (n == 1)
        return json_pack("[iiii]", v[0], v[0], v[0], v[0]);
    if (n == 2)
        return json_pack("[iiii]", v[0], v[1], v[0], v[1]);
    return json_pack("[iiii]", v[0], v[1], v[2], v[3]);
}

static json_t *check_call(const ast_expr *e, const opt_spec *s, const char *what, diag *d)
{
    if (e->kind != AST_NAME && e->kind != AST_CALL)
        return bad(e, s, what, "a name or a call", d);
    const char *names[64] = {0};
    int n = 0;
    for (const call_spec *c = s->calls; c->name && n < 64; c++, n++) {
        names[n] = c->name;
        if (strcmp(c->name, e->text) != 0)
            continue;
        json_t *obj;
        if (e->kind == AST_NAME) {
            ast_expr empty = *e;
            empty.kind = AST_CALL;
            empty.nargs = 0;
            obj = opt_check_call(&empty, 0, c->opts, c->name, d);
        } else {
            obj = opt_check_call(e, 0, c->opts, c->name, d);
        }
        if (!obj)
            return NULL;
        json_object_set_new(obj, "type", json_string(c->name));
        return obj;
    }
    const char *hint = src_suggest(e->text, names, n);
    char list[512] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 names[i]);
    if (hint)
        src_error(d, e->loc, "unknown %s '%s' for option '%s' of %s; did you mean '%s'?", s->key,
                  e->text, s->key, what, hint);
    else
        src_error(d, e->loc, "unknown %s '%s' for option '%s' of %s (known: %s)", s->key, e->text,
                  s->key, what, list);
    return NULL;
}

/* A list of values of one kind; a single non-list value counts as a list of
 * one for numbers. */
static json_t *check_list(const ast_expr *e, const opt_spec *s, const char *what, diag *d)
{
    const char *expected = s->type == OPT_FLOATS ? "a list of numbers"
                           : s->type == OPT_INTS ? "a list of integers"
                                                 : "a list of calls";
    ast_expr one = {0};
    ast_arg item = {0};
    if (e->kind != AST_LIST) {
        if (s->type == OPT_CALLS || e->kind != AST_NUMBER)
            return bad(e, s, what, expected, d);
        item.value = (ast_expr *)e;
        one.kind = AST_LIST;
        one.loc = e->loc;
        one.args = &item;
        one.nargs = 1;
        e = &one;
    }
    int lo = s->min_len ? s->min_len : (s->type == OPT_CALLS ? 0 : 1);
    int hi = s->max_len ? s->max_len : 64;
    if (e->nargs < lo || e->nargs > hi) {
        char want[64];
        if (lo == hi)
            snprintf(want, sizeof want, "a list of %d", lo);
        else
            snprintf(want, sizeof want, "a list of %d to %d", lo, hi);
        return bad(e, s, what, want, d);
    }
    opt_spec elem = *s;
    elem.type = s->type == OPT_FLOATS ? OPT_FLOAT : s->type == OPT_INTS ? OPT_INT : OPT_CALL;
    json_t *arr = json_array();
    int ok = 1;
    for (int i = 0; i < e->nargs; i++) { /* check every item, report every error */
        json_t *v = opt_check_value(e->args[i].value, &elem, what, d);
        if (v)
            json_array_append_new(arr, v);
        ok &= v != NULL;
    }
    if (!ok) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

json_t *opt_check_value(const ast_expr *e, const opt_spec *s, const char *what, diag *d)
{
    switch (s->type) {
    case OPT_INT:
        return check_int(e, s, what, d);
    case OPT_FLOAT:
        if (e->kind != AST_NUMBER)
            return bad(e, s, what, "a number", d);
        if (!in_range(e, s, what, e->number, d))
            return NULL;
        return json_real(e->number);
    case OPT_BOOL:
        if (e->kind == AST_NAME && strcmp(e->text, "true") == 0)
            return json_true();
        if (e->kind == AST_NAME && strcmp(e->text, "false") == 0)
            return json_false();
        return bad(e, s, what, "true or false", d);
    case OPT_NAME:
        return check_name(e, s, what, d);
    case OPT_SIZE2:
        return check_size2(e, s, what, d);
    case OPT_PADDING:
        return check_padding(e, s, what, d);
    case OPT_CALL:
        return check_call(e, s, what, d);
    case OPT_FLOATS:
    case OPT_INTS:
    case OPT_CALLS:
        return check_list(e, s, what, d);
    }
    return NULL;
}

json_t *opt_default(const opt_spec *s)
{
    json_t *v = json_loads(s->def, JSON_DECODE_ANY, NULL);
    if (json_is_integer(v) && s->type == OPT_FLOAT) {
        json_t *r = json_real((double)json_integer_value(v));
        json_decref(v);
        return r;
    }
    if (json_is_integer(v) && (s->type == OPT_SIZE2 || s->type == OPT_PADDING)) {
        json_int_t x = json_integer_value(v);
        json_decref(v);
        v = s->type == OPT_SIZE2 ? json_pack("[II]", x, x) : json_pack("[IIII]", x, x, x, x);
    }
    return v;
}

json_t *opt_check_call(const ast_expr *call, int first, const opt_spec *spec, const char *what,
                       diag *d)
{
    int nspec = 0;
    while (spec && spec[nspec].key)
        nspec++;
    const ast_arg *given[64] = {0};
    int ok = 1, seen_key = 0;
    for (int i = first; i < call->nargs; i++) {
        const ast_arg *arg = &call->args[i];
        int slot = -1;
        if (!arg->key) {
            if (seen_key) {
                src_error(d, arg->key_loc,
                          "positional argument after a keyword argument in %s", what);
                ok = 0;
                continue;
            }
            slot = i - first;
            if (slot >= nspec) {
                src_error(d, arg->key_loc, "too many arguments to %s (it takes %d option%s)",
                          what, nspec, nspec == 1 ? "" : "s");
                ok = 0;
                continue;
            }
        } else {
            seen_key = 1;
            const opt_spec *s = opt_find(spec, arg->key);
            if (!s) {
                const char *hint = opt_suggest(spec, arg->key);
                if (hint)
                    src_error(d, arg->key_loc, "unknown option '%s' for %s; did you mean '%s'?",
                              arg->key, what, hint);
                else if (nspec == 0)
                    src_error(d, arg->key_loc, "unknown option '%s': %s takes no options",
                              arg->key, what);
                else
                    src_error(d, arg->key_loc, "unknown option '%s' for %s", arg->key, what);
                ok = 0;
                continue;
            }
            slot = (int)(s - spec);
        }
        if (given[slot]) {
            src_error(d, arg->key_loc, "option '%s' of %s is given twice", spec[slot].key, what);
            src_note(d, given[slot]->key_loc, "first given here");
            ok = 0;
            continue;
        }
        given[slot] = arg;
    }
    json_t *obj = json_object();
    for (int i = 0; i < nspec; i++) {
        const opt_spec *s = &spec[i];
        json_t *v = NULL;
        if (given[i]) {
            v = opt_check_value(given[i]->value, s, what, d);
            if (!v)
                ok = 0;
        } else if (!s->def) {
            src_error(d, call->loc, "%s needs option '%s'", what, s->key);
            ok = 0;
        } else {
            v = opt_default(s);
        }
        if (v)
            json_object_set_new(obj, s->key, v);
    }
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int opt_int(const json_t *obj, const char *key)
{
    return (int)json_integer_value(json_object_get(obj, key));
}

double opt_real(const json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

int opt_bool(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

const char *opt_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}
