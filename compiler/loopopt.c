/*
 * loopopt.c — transformations of the loop IR: substitution, vectorization
 * and unrolling.
 *
 * Tiled kernels (schedule.c) are built with their loops already split and
 * ordered, and with the loops that should become vector operations or be
 * replicated marked LOOP_VECTOR and LOOP_UNROLL.  These passes make that
 * happen on the IR, so the result can be printed (--emit loops) and tested
 * like any other loop nest:
 *
 *  - loop_vectorize: an innermost loop `for v in [0, L)` marked LOOP_VECTOR
 *    becomes one iteration on L-lane vectors.  Every index is analysed as an
 *    affine function of v: a load whose index has coefficient 1 in v becomes
 *    a vector load of L consecutive elements, one with coefficient 0 stays a
 *    scalar (broadcast where it meets a vector), another constant coefficient
 *    a strided gather (or scatter, for stores: an NCHW output written from
 *    registers holding channels); a non-linear index leaves the loop as it
 *    was.  Locals assigned vectors become vector
 *    locals.  A loop that cannot be vectorized is left scalar: the pass
 *    never changes what a kernel computes.
 *  - loop_unroll: a loop marked LOOP_UNROLL with a constant extent becomes
 *    that many copies of its body with the variable replaced by constants,
 *    so indices into register tiles (LB_LOCAL arrays) become constants and
 *    LLVM keeps the tiles in registers.
 */
#include <limits.h>

#include "cnnc.h"

/* ---- substitution --------------------------------------------------------------- */

lexpr *lx_subst(lprogram *p, lexpr *e, int var, lexpr *with)
{
    if (!e)
        return NULL;
    switch (e->op) {
    case LX_INT:
    case LX_FLOAT:
        return e;
    case LX_VAR:
        return e->var == var ? with : e;
    default:
        break;
    }
    lexpr *a = lx_subst(p, e->a, var, with), *b = lx_subst(p, e->b, var, with);
    lexpr *c = lx_subst(p, e->c, var, with);
    if (a == e->a && b == e->b && c == e->c)
        return e;
    if ((e->op >= LX_ADD && e->op <= LX_SHR) || (e->op >= LX_LT && e->op <= LX_OR))
        return lx_bin(p, e->op, a, b);
    lexpr *copy = arena_alloc(p->a, sizeof *copy);
    *copy = *e;
    copy->a = a;
    copy->b = b;
    copy->c = c;
    return copy;
}

lstmt *ls_subst(lprogram *p, const lstmt *s, int var, lexpr *with)
{
    lstmt *copy = arena_alloc(p->a, sizeof *copy);
    *copy = *s;
    switch (s->kind) {
    case LS_BLOCK:
        copy->items = arena_alloc(p->a, sizeof(lstmt *) * (size_t)(s->nitems + 1));
        for (int i = 0; i < s->nitems; i++)
            copy->items[i] = ls_subst(p, s->items[i], var, with);
        break;
    case LS_FOR:
        copy->extent = lx_subst(p, s->extent, var, with);
        copy->body = ls_subst(p, s->body, var, with);
        break;
    case LS_STORE:
    case LS_TRANSPOSE:
    case LS_LANE_SUMS:
        copy->index = lx_subst(p, s->index, var, with);
        copy->value = lx_subst(p, s->value, var, with);
        break;
    case LS_PREFETCH:
        copy->index = lx_subst(p, s->index, var, with);
        break;
    case LS_SET:
        copy->value = lx_subst(p, s->value, var, with);
        break;
    case LS_IF:
        copy->cond = lx_subst(p, s->cond, var, with);
        copy->then_s = ls_subst(p, s->then_s, var, with);
        copy->else_s = s->else_s ? ls_subst(p, s->else_s, var, with) : NULL;
        break;
    }
    return copy;
}

/* ---- vectorization -------------------------------------------------------------------- */

#define NONLINEAR INT64_MIN

/* The coefficient of var v in the integer expression e, or NONLINEAR. */
static int64_t coef(const lexpr *e, int v)
{
    int64_t a, b;
    switch (e->op) {
    case LX_INT:
        return 0;
    case LX_VAR:
        return e->var == v;
    case LX_ADD:
    case LX_SUB:
        a = coef(e->a, v), b = coef(e->b, v);
        if (a == NONLINEAR || b == NONLINEAR)
            return NONLINEAR;
        return e->op == LX_ADD ? a + b : a - b;
    case LX_MUL:
        a = coef(e->a, v), b = coef(e->b, v);
        if (a == 0 && b == 0)
            return 0;
        if (a != NONLINEAR && a != 0 && b == 0 && e->b->op == LX_INT)
            return a * e->b->i;
        if (b != NONLINEAR && b != 0 && a == 0 && e->a->op == LX_INT)
            return e->a->i * b;
        return NONLINEAR;
    case LX_LOAD:
        return coef(e->a, v) == 0 ? 0 : NONLINEAR;
    default:
        a = e->a ? coef(e->a, v) : 0;
        b = e->b ? coef(e->b, v) : 0;
        if (a == 0 && b == 0 && (!e->c || coef(e->c, v) == 0))
            return 0;
        return NONLINEAR;
    }
}

typedef struct vec_ctx {
    lprogram *p;
    lkernel *k;
    int v;      /* the vector loop's variable */
    int lanes;
    int failed;
} vec_ctx;

static lexpr *vec_expr(vec_ctx *c, lexpr *e)
{
    lprogram *p = c->p;
    if (c->failed)
        return e;
    switch (e->op) {
    case LX_INT:
    case LX_FLOAT:
        return e;
    case LX_VAR:
        if (e->var == c->v) {
            c->failed = 1; /* the lane index used as a value */
            return e;
        }
        if (c->k->vars[e->var].lanes != e->lanes) {
            lexpr *copy = arena_alloc(p->a, sizeof *copy);
            *copy = *e;
            copy->lanes = c->k->vars[e->var].lanes;
            return copy;
        }
        return e;
    case LX_LOAD: {
        int64_t k = coef(e->a, c->v);
        if (k == 0)
            return e;
        if (k == NONLINEAR || e->lanes != 1) {
            c->failed = 1;
            return e;
        }
        lexpr *copy = arena_alloc(p->a, sizeof *copy);
        *copy = *e;
        copy->a = lx_subst(p, e->a, c->v, lx_int(p, 0));
        copy->lanes = c->lanes;
        copy->stride = k; /* 1: a vector load; else a gather */
        return copy;
    }
    default:
        break;
    }
    lexpr *copy = arena_alloc(p->a, sizeof *copy);
    *copy = *e;
    copy->a = e->a ? vec_expr(c, e->a) : NULL;
    copy->b = e->b ? vec_expr(c, e->b) : NULL;
    copy->c = e->c ? vec_expr(c, e->c) : NULL;
    int lanes = 1;
    lexpr *kids[3] = {copy->a, copy->b, copy->c};
    for (int i = 0; i < 3; i++)
        if (kids[i] && kids[i]->lanes > lanes)
            lanes = kids[i]->lanes;
    copy->lanes = e->op == LX_HSUM ? 1 : lanes;
    return copy;
}

static lexpr *splat(lprogram *p, lexpr *e, int lanes)
{
    if (e->lanes == lanes)
        return e;
    lexpr *b = arena_alloc(p->a, sizeof *b);
    b->op = LX_BROADCAST;
    b->type = e->type;
    b->lanes = lanes;
    b->a = e;
    return b;
}

static lstmt *vec_stmt(vec_ctx *c, lstmt *s)
{
    lprogram *p = c->p;
    lstmt *copy = arena_alloc(p->a, sizeof *copy);
    *copy = *s;
    switch (s->kind) {
    case LS_BLOCK:
        copy->items = arena_alloc(p->a, sizeof(lstmt *) * (size_t)(s->nitems + 1));
        for (int i = 0; i < s->nitems && !c->failed; i++)
            copy->items[i] = vec_stmt(c, s->items[i]);
        break;
    case LS_FOR:
    case LS_TRANSPOSE:
    case LS_LANE_SUMS:
    case LS_PREFETCH:
        c->failed = 1; /* vector loops are innermost and of scalar statements */
        break;
    case LS_SET:
        copy->value = vec_expr(c, s->value);
        if (copy->value->lanes > 1)
            c->k->vars[s->var].lanes = copy->value->lanes;
        else if (c->k->vars[s->var].lanes > 1)
            copy->value = splat(p, copy->value, c->k->vars[s->var].lanes);
        break;
    case LS_STORE: {
        int64_t k = coef(s->index, c->v);
        copy->value = vec_expr(c, s->value);
        if (k != 0 && k != NONLINEAR) { /* contiguous (1) or scattered */
            copy->index = lx_subst(p, s->index, c->v, lx_int(p, 0));
            copy->value = splat(p, copy->value, c->lanes);
            copy->stride = k;
        } else if (k != 0 || copy->value->lanes > 1) {
            c->failed = 1;
        }
        break;
    }
    case LS_IF:
        if (coef(s->cond, c->v) != 0) {
            c->failed = 1;
            break;
        }
        copy->then_s = vec_stmt(c, s->then_s);
        copy->else_s = s->else_s ? vec_stmt(c, s->else_s) : NULL;
        break;
    }
    return copy;
}

/* Vectorize the marked loops under s; returns the statement to keep. */
static lstmt *vectorize(lprogram *p, lkernel *k, lstmt *s)
{
    switch (s->kind) {
    case LS_BLOCK:
        for (int i = 0; i < s->nitems; i++)
            s->items[i] = vectorize(p, k, s->items[i]);
        return s;
    case LS_IF:
        s->then_s = vectorize(p, k, s->then_s);
        if (s->else_s)
            s->else_s = vectorize(p, k, s->else_s);
        return s;
    case LS_FOR:
        if (!(s->flags & LOOP_VECTOR)) {
            s->body = vectorize(p, k, s->body);
            return s;
        }
        if (s->extent->op == LX_INT && s->extent->i > 1) {
            int saved[512];
            int nsave = k->nvars < 512 ? k->nvars : 512;
            for (int i = 0; i < nsave; i++)
                saved[i] = k->vars[i].lanes;
            vec_ctx c = {p, k, s->var, (int)s->extent->i, 0};
            lstmt *body = vec_stmt(&c, s->body);
            if (!c.failed)
                return body;
            for (int i = 0; i < nsave; i++) /* undo: the loop stays scalar */
                k->vars[i].lanes = saved[i];
        }
        s->flags &= ~LOOP_VECTOR;
        return s;
    default:
        return s;
    }
}

void loop_vectorize(lprogram *p)
{
    for (int i = 0; i < p->nkernels; i++) {
        p->cur = &p->kernels[i];
        p->kernels[i].body = vectorize(p, &p->kernels[i], p->kernels[i].body);
    }
}

/* ---- unrolling -------------------------------------------------------------------------- */

static lstmt *unroll(lprogram *p, lstmt *s)
{
    switch (s->kind) {
    case LS_BLOCK:
        for (int i = 0; i < s->nitems; i++)
            s->items[i] = unroll(p, s->items[i]);
        return s;
    case LS_IF:
        s->then_s = unroll(p, s->then_s);
        if (s->else_s)
            s->else_s = unroll(p, s->else_s);
        return s;
    case LS_FOR: {
        s->body = unroll(p, s->body);
        if (!(s->flags & LOOP_UNROLL) || s->extent->op != LX_INT)
            return s;
        lstmt *block = ls_block(p);
        for (int64_t i = 0; i < s->extent->i; i++)
            ls_append(p, block, ls_subst(p, s->body, s->var, lx_int(p, i)));
        return block;
    }
    default:
        return s;
    }
}

void loop_unroll(lprogram *p)
{
    for (int i = 0; i < p->nkernels; i++) {
        p->cur = &p->kernels[i];
        p->kernels[i].body = unroll(p, p->kernels[i].body);
    }
}
