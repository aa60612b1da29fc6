/*
 * model.c — accepting a compiled network: ABI and consistency checks,
 * looking parameters up by name (loading a model .so: model_open.c).
 *
 * The descriptor comes from code we did not write (another cnnc version, a
 * hand-written model, a corrupt file), so cnn_model_check verifies what the
 * rest of the runtime relies on before anything touches memory through it:
 * the ABI version first (nothing else can be read safely if the layout
 * differs), then the shapes, the arena, and every parameter slot: its
 * shape matches its size, it lies inside param_floats without overlapping
 * another, its initializer is known and has the fans it needs.  The checks
 * are cheap (quadratic in the number of parameters, which is small).
 */
#include "cnnrt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM (INT64_C(1) << 31)        /* largest single dimension */
#define MAX_FLOATS (INT64_C(1) << 40)     /* sanity bound on sizes */

static int check_shape(const cnn_model_desc *m, cnn_error *err)
{
    if (m->batch < 1 || m->in_c < 1 || m->in_h < 1 || m->in_w < 1 || m->classes < 1)
        return cnn_fail(err,
                        "model %s: bad shape: batch %d, input %dx%dx%d, %d classes "
                        "(all must be >= 1)",
                        m->name, (int)m->batch, (int)m->in_c, (int)m->in_h, (int)m->in_w,
                        (int)m->classes);
    if (m->param_floats < 0 || m->param_floats > MAX_FLOATS)
        return cnn_fail(err, "model %s: bad param_floats %lld", m->name,
                        (long long)m->param_floats);
    if (m->n_params < 0 || (m->n_params > 0 && !m->params))
        return cnn_fail(err, "model %s: bad parameter table (%d entries)", m->name,
                        (int)m->n_params);
    int64_t logits_bytes = (int64_t)m->batch * m->classes * (int64_t)sizeof(float);
    if (m->arena_bytes < 0 || m->arena_bytes > MAX_FLOATS * 4 || m->logits_offset < 0 ||
        m->logits_offset % (int64_t)sizeof(float) != 0 ||
        m->logits_offset > m->arena_bytes - logits_bytes)
        return cnn_fail(err,
                        "model %s: logits at arena offset %lld (%lld bytes) do not fit "
                        "in an arena of %lld bytes",
                        m->name, (long long)m->logits_offset, (long long)logits_bytes,
                        (long long)m->arena_bytes);
    if (!m->forward)
        return cnn_fail(err, "model %s: no forward function", m->name);
    return 0;
}

/* Shape, size and placement of one parameter slot. */
static int check_param_layout(const cnn_model_desc *m, const cnn_param_desc *p,
                              cnn_error *err)
{
    if (p->ndim < 1 || p->ndim > 4)
        return cnn_fail(err, "model %s: parameter %s: %d dimensions (1 to 4 allowed)",
                        m->name, p->name, (int)p->ndim);
    int64_t size = 1;
    for (int d = 0; d < 4; d++) {
        int64_t dim = p->shape[d];
        if (dim < 1 || dim > MAX_DIM || (d >= p->ndim && dim != 1))
            return cnn_fail(err, "model %s: parameter %s: bad dimension %d: %lld", m->name,
                            p->name, d, (long long)dim);
        size *= dim;
        if (size > MAX_FLOATS)
            return cnn_fail(err, "model %s: parameter %s: too large", m->name, p->name);
    }
    if (size != p->size)
        return cnn_fail(err, "model %s: parameter %s: shape has %lld elements, size says %lld",
                        m->name, p->name, (long long)size, (long long)p->size);
    if (p->offset < 0 || p->offset > m->param_floats - p->size)
        return cnn_fail(err,
                        "model %s: parameter %s: [%lld, %lld) lies outside the %lld "
                        "parameter floats",
                        m->name, p->name, (long long)p->offset,
                        (long long)(p->offset + p->size), (long long)m->param_floats);
    if (p->kind < CNN_PARAM_WEIGHT || p->kind > CNN_PARAM_RUNNING_VAR)
        return cnn_fail(err, "model %s: parameter %s: unknown kind %d", m->name, p->name,
                        (int)p->kind);
    return 0;
}

/* The initializer is known, its arguments make sense, its fans exist. */
static int check_param_init(const cnn_model_desc *m, const cnn_param_desc *p,
                            cnn_error *err)
{
    const char *init = cnn_init_name(p->init);
    int64_t fan_in, fan_out;
    cnn_param_fans(p, &fan_in, &fan_out);
    if (p->init < CNN_INIT_ZEROS || p->init > CNN_INIT_TORCH_DEFAULT)
        return cnn_fail(err, "model %s: parameter %s: unknown initializer %d", m->name,
                        p->name, (int)p->init);
    if (!isfinite(p->init_a) || !isfinite(p->init_b))
        return cnn_fail(err, "model %s: parameter %s: %s arguments are not finite", m->name,
                        p->name, init);
    if (p->init == CNN_INIT_UNIFORM && p->init_a > p->init_b)
        return cnn_fail(err, "model %s: parameter %s: uniform(%g, %g) has low > high",
                        m->name, p->name, p->init_a, p->init_b);
    if (p->init == CNN_INIT_NORMAL && p->init_b < 0)
        return cnn_fail(err, "model %s: parameter %s: normal std %g is negative", m->name,
                        p->name, p->init_b);
    int needs_in = p->init >= CNN_INIT_XAVIER_UNIFORM;
    int needs_out = p->init == CNN_INIT_XAVIER_UNIFORM || p->init == CNN_INIT_XAVIER_NORMAL;
    if ((needs_in && fan_in <= 0) || (needs_out && fan_out <= 0))
        return cnn_fail(err, "model %s: parameter %s: initializer %s needs %s, which a "
                        "%d-dimensional parameter without fans in its descriptor lacks",
                        m->name, p->name, init, needs_out ? "fan_in and fan_out" : "fan_in",
                        (int)p->ndim);
    return 0;
}

/* Names are unique and slots do not overlap. */
static int check_param_pairs(const cnn_model_desc *m, int i, cnn_error *err)
{
    const cnn_param_desc *p = &m->params[i];
    for (int j = 0; j < i; j++) {
        const cnn_param_desc *q = &m->params[j];
        if (strcmp(p->name, q->name) == 0)
            return cnn_fail(err, "model %s: two parameters named %s", m->name, p->name);
        if (p->offset < q->offset + q->size && q->offset < p->offset + p->size)
            return cnn_fail(err, "model %s: parameters %s and %s overlap", m->name, q->name,
                            p->name);
    }
    return 0;
}

int cnn_model_check(const cnn_model_desc *m, cnn_error *err)
{
    if (!m)
        return cnn_fail(err, "no model descriptor");
    if (m->abi_version != CNN_ABI_VERSION)
        return cnn_fail(err,
                        "model was compiled for ABI version %u, this runtime speaks "
                        "version %d: recompile it with a matching cnnc",
                        (unsigned)m->abi_version, CNN_ABI_VERSION);
    if (!m->name || !*m->name)
        return cnn_fail(err, "model has no name");
    if (check_shape(m, err) < 0)
        return -1;
    for (int i = 0; i < m->n_params; i++) {
        const cnn_param_desc *p = &m->params[i];
        if (!p->name || !*p->name)
            return cnn_fail(err, "model %s: parameter %d has no name", m->name, i);
        if (check_param_layout(m, p, err) < 0 || check_param_init(m, p, err) < 0 ||
            check_param_pairs(m, i, err) < 0)
            return -1;
    }
    return 0;
}

const cnn_param_desc *cnn_model_param(const cnn_model_desc *m, const char *name)
{
    for (int32_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return &m->params[i];
    return NULL;
}
