/*
 * loop.c — building and printing the loop IR (loop.h).
 *
 * The builders fold integer constants and drop neutral operands (x + 0,
 * x * 1), so index expressions written plainly in lower.c come out as
 * simple as hand-written ones.  The printer (--emit loops) writes one
 * statement per line, indented, with buffers by name.  lk_same compares
 * two kernels node by node.
 */
#include <inttypes.h>
#include <string.h>

#include "cnnc.h"

lprogram *lp_new(arena *a, const ir_graph *g)
{
    lprogram *p = arena_alloc(a, sizeof *p);
    p->a = a;
    p->g = g;
    p->value_buf = arena_alloc(a, sizeof(int) * (size_t)(g->nvalues + 1));
    for (int i = 0; i < g->nvalues; i++)
        p->value_buf[i] = -1;
    return p;
}

int lp_var(lprogram *p, const char *name, ltype type, int is_loop)
{
    lkernel *k = p->cur;
    k->vars = arena_grow(p->a, k->vars, sizeof(lvar), (size_t)k->nvars, (size_t)k->nvars + 1);
    k->vars[k->nvars].name = name;
    k->vars[k->nvars].type = type;
    k->vars[k->nvars].is_loop = is_loop;
    k->vars[k->nvars].lanes = 1;
    return k->nvars++;
}

lkernel *lp_kernel(lprogram *p, const char *name, int node)
{
    p->kernels = arena_grow(p->a, p->kernels, sizeof(lkernel), (size_t)p->nkernels,
                            (size_t)p->nkernels + 1);
    lkernel *k = &p->kernels[p->nkernels++];
    k->name = name;
    k->node = node;
    k->body = ls_block(p);
    p->cur = k;
    lp_var(p, "n", LT_INT, 0);    /* LV_N */
    lp_var(p, "seed", LT_INT, 0); /* LV_SEED */
    lp_var(p, "step", LT_INT, 0); /* LV_STEP */
    return k;
}

static lbuf_kind buf_kind(val_kind kind)
{
    switch (kind) {
    case VAL_PARAM:
        return LB_PARAMS;
    case VAL_GRAD:
        return LB_GRADS;
    case VAL_INPUT:
        return LB_X;
    case VAL_LABELS:
        return LB_LABELS;
    case VAL_OUTPUT:
        return LB_OUT;
    default:
        return LB_ARENA;
    }
}

int lp_buf(lprogram *p, int value)
{
    while (p->g->values[value].alias >= 0) /* a view reads its base's memory */
        value = p->g->values[value].alias;
    if (p->value_buf[value] >= 0)
        return p->value_buf[value];
    const ir_value *v = &p->g->values[value];
    p->bufs = arena_grow(p->a, p->bufs, sizeof(lbuf), (size_t)p->nbufs, (size_t)p->nbufs + 1);
    lbuf *b = &p->bufs[p->nbufs];
    b->name = v->kind == VAL_GRAD ? arena_printf(p->a, "d.%s", v->name) : v->name;
    b->kind = buf_kind(v->kind);
    b->type = v->type;
    b->value = value;
    b->size = ir_shape_size(v->shape);
    if (v->param >= 0)
        b->offset = p->g->params[v->param].offset;
    p->value_buf[value] = p->nbufs;
    return p->nbufs++;
}

/* ---- expressions --------------------------------------------------------------- */

static lexpr *node(lprogram *p, lx_op op, ltype type)
{
    lexpr *e = arena_alloc(p->a, sizeof *e);
    e->op = op;
    e->type = type;
    e->lanes = 1;
    e->stride = 1;
    return e;
}

static int max_lanes(const lexpr *a, const lexpr *b)
{
    return a->lanes > b->lanes ? a->lanes : b->lanes;
}

static int lanes3(const lexpr *a, const lexpr *b, const lexpr *c)
{
    int ab = max_lanes(a, b);
    return ab > c->lanes ? ab : c->lanes;
}

lexpr *lx_int(lprogram *p, int64_t v)
{
    lexpr *e = node(p, LX_INT, LT_INT);
    e->i = v;
    return e;
}

lexpr *lx_float(lprogram *p, double v)
{
    lexpr *e = node(p, LX_FLOAT, LT_FLOAT);
    e->f = v;
    return e;
}

lexpr *lx_double(lprogram *p, double v)
{
    lexpr *e = node(p, LX_FLOAT, LT_DOUBLE);
    e->f = v;
    return e;
}

lexpr *lx_var(lprogram *p, int var)
{
    lexpr *e = node(p, LX_VAR, p->cur->vars[var].type);
    e->var = var;
    e->lanes = p->cur->vars[var].lanes;
    return e;
}

lexpr *lx_n(lprogram *p)
{
    return lx_var(p, LV_N);
}

lexpr *lx_load(lprogram *p, int buf, lexpr *index)
{
    lexpr *e = node(p, LX_LOAD, p->bufs[buf].type == DT_I32 ? LT_INT : LT_FLOAT);
    e->buf = buf;
    e->a = index;
    return e;
}

static int is_int(const lexpr *e, int64_t v)
{
    return e->op == LX_INT && e->i == v;
}

static int64_t fold(lx_op op, int64_t a, int64_t b)
{
    switch (op) {
    case LX_ADD:
        return a + b;
    case LX_SUB:
        return a - b;
    case LX_MUL:
        return a * b;
    case LX_DIV:
        return a / b;
    case LX_REM:
        return a % b;
    case LX_MIN:
        return a < b ? a : b;
    case LX_MAX:
        return a > b ? a : b;
    case LX_XOR:
        return a ^ b;
    case LX_SHR:
        return (int64_t)((uint64_t)a >> (b & 63));
    default:
        return 0;
    }
}

lexpr *lx_bin(lprogram *p, lx_op op, lexpr *a, lexpr *b)
{
    int arith = op <= LX_SHR;
    if (a->type == LT_INT && b->type == LT_INT && arith) {
        if (a->op == LX_INT && b->op == LX_INT && !((op == LX_DIV || op == LX_REM) && b->i == 0))
            return lx_int(p, fold(op, a->i, b->i));
        if ((op == LX_ADD || op == LX_SUB) && is_int(b, 0))
            return a;
        if (op == LX_ADD && is_int(a, 0))
            return b;
        if ((op == LX_MUL || op == LX_DIV) && is_int(b, 1))
            return a;
        if (op == LX_MUL && is_int(a, 1))
            return b;
        if (op == LX_MUL && (is_int(a, 0) || is_int(b, 0)))
            return lx_int(p, 0);
    }
    ltype type = arith ? a->type : LT_BOOL;
    lexpr *e = node(p, op, type);
    e->a = a;
    e->b = b;
    e->lanes = max_lanes(a, b);
    return e;
}

lexpr *lx_un(lprogram *p, lx_op op, lexpr *a)
{
    if (op == LX_TOFLOAT && a->op == LX_INT)
        return lx_float(p, (double)a->i);
    if (op == LX_TODOUBLE && a->op == LX_INT)
        return lx_double(p, (double)a->i);
    ltype type = op == LX_TOFLOAT ? LT_FLOAT : op == LX_TODOUBLE ? LT_DOUBLE : a->type;
    lexpr *e = node(p, op, type);
    e->a = a;
    e->lanes = op == LX_HSUM ? 1 : a->lanes;
    return e;
}

lexpr *lx_select(lprogram *p, lexpr *cond, lexpr *a, lexpr *b)
{
    lexpr *e = node(p, LX_SELECT, a->type);
    e->a = cond;
    e->b = a;
    e->c = b;
    e->lanes = lanes3(cond, a, b);
    return e;
}

lexpr *lx_fma(lprogram *p, lexpr *a, lexpr *b, lexpr *c)
{
    lexpr *e = node(p, LX_FMA, c->type);
    e->a = a;
    e->b = b;
    e->c = c;
    e->lanes = lanes3(a, b, c);
    return e;
}

int lp_local_array(lprogram *p, const char *name, int64_t size)
{
    p->bufs = arena_grow(p->a, p->bufs, sizeof(lbuf), (size_t)p->nbufs, (size_t)p->nbufs + 1);
    lbuf *b = &p->bufs[p->nbufs];
    b->name = name;
    b->kind = LB_LOCAL;
    b->type = DT_F32;
    b->value = -1;
    b->size = size;
    b->offset = p->nkernels - 1; /* the kernel it belongs to */
    return p->nbufs++;
}

lexpr *lx_madd(lprogram *p, lexpr *a, int64_t s, lexpr *b)
{
    return lx_add(p, lx_mul(p, a, lx_int(p, s)), b);
}

lexpr *lx_in_range(lprogram *p, lexpr *v, int64_t hi)
{
    return lx_and(p, lx_bin(p, LX_LE, lx_int(p, 0), v), lx_lt(p, v, lx_int(p, hi)));
}

/* ---- statements ------------------------------------------------------------------ */

static lstmt *stmt(lprogram *p, ls_kind kind)
{
    lstmt *s = arena_alloc(p->a, sizeof *s);
    s->kind = kind;
    return s;
}

lstmt *ls_block(lprogram *p)
{
    return stmt(p, LS_BLOCK);
}

void ls_append(lprogram *p, lstmt *block, lstmt *s)
{
    int n = block->nitems;
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0))
        block->items = arena_grow(p->a, block->items, sizeof(lstmt *), (size_t)n,
                                  n == 0 ? 4 : (size_t)n * 2);
    block->items[block->nitems++] = s;
}

lstmt *ls_for(lprogram *p, lstmt *parent, const char *name, lexpr *extent, int *var)
{
    lstmt *s = stmt(p, LS_FOR);
    s->var = lp_var(p, name, LT_INT, 1);
    s->extent = extent;
    s->body = ls_block(p);
    if (var)
        *var = s->var;
    ls_append(p, parent, s);
    return s;
}

lstmt *ls_store(lprogram *p, lstmt *parent, int buf, lexpr *index, lexpr *value, int accumulate)
{
    lstmt *s = stmt(p, LS_STORE);
    s->buf = buf;
    s->index = index;
    s->value = value;
    s->accumulate = accumulate;
    s->stride = 1;
    ls_append(p, parent, s);
    return s;
}

lstmt *ls_set(lprogram *p, lstmt *parent, int var, lexpr *value)
{
    lstmt *s = stmt(p, LS_SET);
    s->var = var;
    s->value = value;
    ls_append(p, parent, s);
    return s;
}

lstmt *ls_if(lprogram *p, lstmt *parent, lexpr *cond)
{
    lstmt *s = stmt(p, LS_IF);
    s->cond = cond;
    s->then_s = ls_block(p);
    ls_append(p, parent, s);
    return s;
}

static lstmt *block_stmt(lprogram *p, ls_kind kind, lstmt *parent, int dst, lexpr *dst_index,
                         int src, lexpr *src_index, int m, int l, int64_t src_stride)
{
    lstmt *s = stmt(p, kind);
    s->buf = dst;
    s->index = dst_index;
    s->value = lx_load(p, src, src_index);
    s->value->lanes = l;
    s->value->stride = 1;
    s->extent = lx_int(p, m);
    s->stride = src_stride;
    ls_append(p, parent, s);
    return s;
}

lstmt *ls_transpose(lprogram *p, lstmt *parent, int dst, lexpr *dst_index, int src,
                    lexpr *src_index, int m, int l, int64_t src_stride, int64_t dst_stride)
{
    lstmt *s = block_stmt(p, LS_TRANSPOSE, parent, dst, dst_index, src, src_index, m, l, src_stride);
    s->dst_stride = dst_stride;
    return s;
}

lstmt *ls_lane_sums(lprogram *p, lstmt *parent, int dst, lexpr *dst_index, int src,
                    lexpr *src_index, int m, int l, int64_t src_stride)
{
    return block_stmt(p, LS_LANE_SUMS, parent, dst, dst_index, src, src_index, m, l, src_stride);
}

lstmt *ls_prefetch(lprogram *p, lstmt *parent, int buf, lexpr *index, int write)
{
    lstmt *s = stmt(p, LS_PREFETCH);
    s->buf = buf;
    s->index = index;
    s->accumulate = write;
    ls_append(p, parent, s);
    return s;
}

/* Memory worth prefetching: a tensor in the arena or an argument, larger
 * than 4 KiB (a batch norm's per-channel means are read again and again
 * and stay cached). */
static int is_tensor(const lprogram *p, int buf)
{
    lbuf_kind k = p->bufs[buf].kind;
    return (k == LB_ARENA || k == LB_X || k == LB_OUT) && p->bufs[buf].size > 1024;
}

static int expr_same_here(const lprogram *p, const lexpr *x, const lexpr *y);

static void prefetch_once(lprogram *p, lstmt *parent, int buf, lexpr *index, int write)
{
    if (!parent)
        return;
    for (int i = 0; i < parent->nitems; i++) {
        const lstmt *s = parent->items[i];
        if (s->kind == LS_PREFETCH && s->buf == buf && s->accumulate == write &&
            expr_same_here(p, s->index, index))
            return;
    }
    ls_prefetch(p, parent, buf, index, write);
}

static int prefetch_loads(lprogram *p, lstmt *parent, const lexpr *e)
{
    if (!e)
        return 0;
    int reads = e->op == LX_LOAD && is_tensor(p, e->buf);
    if (reads)
        prefetch_once(p, parent, e->buf, e->a, 0);
    return reads + prefetch_loads(p, parent, e->a) + prefetch_loads(p, parent, e->b) +
           prefetch_loads(p, parent, e->c);
}

int ls_prefetch_uses(lprogram *p, lstmt *parent, const lstmt *s, int writes)
{
    int reads = 0;
    if (!s)
        return 0;
    switch (s->kind) {
    case LS_BLOCK:
        for (int i = 0; i < s->nitems; i++)
            reads += ls_prefetch_uses(p, parent, s->items[i], writes);
        return reads;
    case LS_STORE:
        reads = prefetch_loads(p, parent, s->index) + prefetch_loads(p, parent, s->value);
        if (writes && is_tensor(p, s->buf))
            prefetch_once(p, parent, s->buf, s->index, 1);
        return reads;
    case LS_SET:
        return prefetch_loads(p, parent, s->value);
    default:
        return 0; /* loops and branches: not what a prefetch can follow */
    }
}

/* ---- comparing ---------------------------------------------------------------------- */

/* Buffer i of pa (kernel index ka) and buffer j of pb (kernel kb) are the
 * same memory to the code generator: the same kind and element type, at
 * the same arena offset or params/grads element; stack arrays of the same
 * size, each its own kernel's. */
static int buf_same(const lprogram *pa, int i, int ka, const lprogram *pb, int j, int kb)
{
    const lbuf *x = &pa->bufs[i], *y = &pb->bufs[j];
    if (x->kind != y->kind || x->type != y->type)
        return 0;
    switch (x->kind) {
    case LB_ARENA:
        return pa->g->values[x->value].offset == pb->g->values[y->value].offset;
    case LB_PARAMS:
    case LB_GRADS:
        return x->offset == y->offset;
    case LB_LOCAL:
        return x->size == y->size && x->offset == ka && y->offset == kb;
    default:
        return 1;
    }
}

typedef struct same_ctx {
    const lprogram *pa, *pb;
    int ka, kb;
} same_ctx;

static int expr_same(const same_ctx *c, const lexpr *x, const lexpr *y)
{
    if (!x || !y)
        return x == y;
    if (x->op != y->op || x->type != y->type || x->lanes != y->lanes || x->stride != y->stride ||
        x->i != y->i || memcmp(&x->f, &y->f, sizeof x->f) != 0 || x->var != y->var)
        return 0;
    if (x->op == LX_LOAD && !buf_same(c->pa, x->buf, c->ka, c->pb, y->buf, c->kb))
        return 0;
    return expr_same(c, x->a, y->a) && expr_same(c, x->b, y->b) && expr_same(c, x->c, y->c);
}

static int stmt_same(const same_ctx *c, const lstmt *x, const lstmt *y)
{
    if (!x || !y)
        return x == y;
    if (x->kind != y->kind)
        return 0;
    switch (x->kind) {
    case LS_BLOCK:
        if (x->nitems != y->nitems)
            return 0;
        for (int i = 0; i < x->nitems; i++)
            if (!stmt_same(c, x->items[i], y->items[i]))
                return 0;
        return 1;
    case LS_FOR:
        return x->var == y->var && x->flags == y->flags && expr_same(c, x->extent, y->extent) &&
               stmt_same(c, x->body, y->body);
    case LS_STORE:
        return x->accumulate == y->accumulate && x->stride == y->stride &&
               buf_same(c->pa, x->buf, c->ka, c->pb, y->buf, c->kb) &&
               expr_same(c, x->index, y->index) && expr_same(c, x->value, y->value);
    case LS_TRANSPOSE:
    case LS_LANE_SUMS:
        return x->stride == y->stride && x->dst_stride == y->dst_stride &&
               buf_same(c->pa, x->buf, c->ka, c->pb, y->buf, c->kb) &&
               expr_same(c, x->extent, y->extent) && expr_same(c, x->index, y->index) &&
               expr_same(c, x->value, y->value);
    case LS_PREFETCH:
        return x->accumulate == y->accumulate &&
               buf_same(c->pa, x->buf, c->ka, c->pb, y->buf, c->kb) &&
               expr_same(c, x->index, y->index);
    case LS_SET:
        return x->var == y->var && expr_same(c, x->value, y->value);
    case LS_IF:
        return expr_same(c, x->cond, y->cond) && stmt_same(c, x->then_s, y->then_s) &&
               stmt_same(c, x->else_s, y->else_s);
    }
    return 0;
}

/* Two expressions of the kernel being built. */
static int expr_same_here(const lprogram *p, const lexpr *x, const lexpr *y)
{
    same_ctx c = {p, p, 0, 0};
    return expr_same(&c, x, y);
}

int lk_same(const lprogram *pa, int ka, const lprogram *pb, int kb)
{
    const lkernel *a = &pa->kernels[ka], *b = &pb->kernels[kb];
    if (a->tiled != b->tiled || a->small != b->small || a->nvars != b->nvars ||
        pa->target != pb->target)
        return 0;
    for (int i = 0; i < a->nvars; i++)
        if (a->vars[i].type != b->vars[i].type || a->vars[i].is_loop != b->vars[i].is_loop ||
            a->vars[i].lanes != b->vars[i].lanes)
            return 0;
    same_ctx c = {pa, pb, ka, kb};
    return stmt_same(&c, a->body, b->body);
}

/* ---- printing ----------------------------------------------------------------------- */

static const char *const binop_text[] = {
    [LX_ADD] = "+", [LX_SUB] = "-", [LX_MUL] = "*",  [LX_DIV] = "/",  [LX_REM] = "%",
    [LX_XOR] = "^", [LX_SHR] = ">>",
    [LX_LT] = "<",  [LX_LE] = "<=", [LX_EQ] = "==", [LX_NE] = "!=", [LX_AND] = "&&",
    [LX_OR] = "||",
};

static void print_expr(FILE *out, const lprogram *p, const lkernel *k, const lexpr *e)
{
    switch (e->op) {
    case LX_INT:
        fprintf(out, "%" PRId64, e->i);
        break;
    case LX_FLOAT:
        fprintf(out, "%.9g", e->f);
        if (e->f == (double)(int64_t)e->f)
            fputs(".0", out);
        if (e->type == LT_DOUBLE)
            fputc('d', out);
        break;
    case LX_VAR:
        fputs(k->vars[e->var].name, out);
        break;
    case LX_LOAD:
        fprintf(out, "%s[", p->bufs[e->buf].name);
        print_expr(out, p, k, e->a);
        if (e->lanes > 1 && e->stride == 1)
            fprintf(out, " : +%d", e->lanes);
        else if (e->lanes > 1)
            fprintf(out, " : +%d by %" PRId64, e->lanes, e->stride);
        fputc(']', out);
        break;
    case LX_FMA:
        fputs("fma(", out);
        print_expr(out, p, k, e->a);
        fputs(", ", out);
        print_expr(out, p, k, e->b);
        fputs(", ", out);
        print_expr(out, p, k, e->c);
        fputc(')', out);
        break;
    case LX_BROADCAST:
    case LX_HSUM:
        fprintf(out, "%s%d(", e->op == LX_HSUM ? "hsum" : "splat", e->op == LX_HSUM ? e->a->lanes : e->lanes);
        print_expr(out, p, k, e->a);
        fputc(')', out);
        break;
    case LX_MIN:
    case LX_MAX:
        fputs(e->op == LX_MIN ? "min(" : "max(", out);
        print_expr(out, p, k, e->a);
        fputs(", ", out);
        print_expr(out, p, k, e->b);
        fputc(')', out);
        break;
    case LX_NEG:
        fputs("-", out);
        print_expr(out, p, k, e->a);
        break;
    case LX_EXP:
    case LX_LOG:
    case LX_SQRT:
    case LX_TANH:
    case LX_ERF:
    case LX_TOFLOAT:
    case LX_TODOUBLE: {
        static const char *const fn[] = {[LX_EXP] = "exp",     [LX_LOG] = "log",
                                         [LX_SQRT] = "sqrt",   [LX_TANH] = "tanh",
                                         [LX_ERF] = "erf",     [LX_TOFLOAT] = "float",
                                         [LX_TODOUBLE] = "double"};
        fprintf(out, "%s(", fn[e->op]);
        print_expr(out, p, k, e->a);
        fputc(')', out);
        break;
    }
    case LX_SELECT:
        fputc('(', out);
        print_expr(out, p, k, e->a);
        fputs(" ? ", out);
        print_expr(out, p, k, e->b);
        fputs(" : ", out);
        print_expr(out, p, k, e->c);
        fputc(')', out);
        break;
    default:
        fputc('(', out);
        print_expr(out, p, k, e->a);
        fprintf(out, " %s ", binop_text[e->op]);
        print_expr(out, p, k, e->b);
        fputc(')', out);
        break;
    }
}

static void print_stmt(FILE *out, const lprogram *p, const lkernel *k, const lstmt *s, int depth)
{
    switch (s->kind) {
    case LS_BLOCK:
        for (int i = 0; i < s->nitems; i++)
            print_stmt(out, p, k, s->items[i], depth);
        return;
    case LS_FOR:
        fprintf(out, "%*sfor %s in [0, ", depth * 2, "", k->vars[s->var].name);
        print_expr(out, p, k, s->extent);
        fprintf(out, ")%s%s%s:\n", s->flags & LOOP_PARALLEL ? " parallel" : "",
                s->flags & LOOP_VECTOR ? " vector" : "", s->flags & LOOP_UNROLL ? " unroll" : "");
        print_stmt(out, p, k, s->body, depth + 1);
        return;
    case LS_STORE:
        fprintf(out, "%*s%s[", depth * 2, "", p->bufs[s->buf].name);
        print_expr(out, p, k, s->index);
        if (s->value->lanes > 1 && s->stride == 1)
            fprintf(out, " : +%d", s->value->lanes);
        else if (s->value->lanes > 1)
            fprintf(out, " : +%d by %" PRId64, s->value->lanes, s->stride);
        fprintf(out, "] %s ", s->accumulate ? "+=" : "=");
        print_expr(out, p, k, s->value);
        fputc('\n', out);
        return;
    case LS_TRANSPOSE:
    case LS_LANE_SUMS:
        fprintf(out, "%*s%s[", depth * 2, "", p->bufs[s->buf].name);
        print_expr(out, p, k, s->index);
        if (s->kind == LS_TRANSPOSE)
            fprintf(out, " : %dx%" PRId64 " by %" PRId64 "] = transpose(", s->value->lanes,
                    s->extent->i, s->dst_stride);
        else
            fprintf(out, " : +%" PRId64 "] += lane_sums(", s->extent->i);
        fprintf(out, "%s[", p->bufs[s->value->buf].name);
        print_expr(out, p, k, s->value->a);
        fprintf(out, " : %" PRId64 "x%d by %" PRId64 "])\n", s->extent->i, s->value->lanes,
                s->stride);
        return;
    case LS_PREFETCH:
        fprintf(out, "%*sprefetch%s %s[", depth * 2, "", s->accumulate ? " for write" : "",
                p->bufs[s->buf].name);
        print_expr(out, p, k, s->index);
        fputs("]\n", out);
        return;
    case LS_SET:
        fprintf(out, "%*s%s = ", depth * 2, "", k->vars[s->var].name);
        print_expr(out, p, k, s->value);
        fputc('\n', out);
        return;
    case LS_IF:
        fprintf(out, "%*sif ", depth * 2, "");
        print_expr(out, p, k, s->cond);
        fputs(":\n", out);
        print_stmt(out, p, k, s->then_s, depth + 1);
        if (s->else_s) {
            fprintf(out, "%*selse:\n", depth * 2, "");
            print_stmt(out, p, k, s->else_s, depth + 1);
        }
        return;
    }
}

static const char *buf_kind_name(lbuf_kind kind)
{
    static const char *const names[] = {"arena", "params", "grads", "x", "labels", "out", "stack"};
    return names[kind];
}

void lp_print(FILE *out, const lprogram *p)
{
    fprintf(out, "# %s program of %s\n", p->g->mode == GRAPH_TRAIN ? "train" : "forward",
            p->g->net->name);
    for (int i = 0; i < p->nbufs; i++) {
        const lbuf *b = &p->bufs[i];
        if (b->kind == LB_LOCAL)
            continue; /* printed with its kernel */
        int64_t at = b->kind == LB_ARENA ? p->g->values[b->value].offset : b->offset;
        fprintf(out, "buffer %s: %s[%" PRId64 "] in %s", b->name, b->type == DT_I32 ? "i32" : "f32",
                b->size, buf_kind_name(b->kind));
        if (b->kind == LB_ARENA || b->kind == LB_PARAMS || b->kind == LB_GRADS)
            fprintf(out, " at %" PRId64 "%s", at, b->kind == LB_ARENA ? " bytes" : "");
        fputc('\n', out);
    }
    for (int i = 0; i < p->nkernels; i++) {
        const lkernel *k = &p->kernels[i];
        const ir_node *n = &p->g->nodes[k->node];
        fprintf(out, "\nkernel %s", k->name);
        if (n->loc.file)
            fprintf(out, "    # %s:%d", n->loc.file->path, n->loc.line);
        fputc('\n', out);
        for (int b = 0; b < p->nbufs; b++)
            if (p->bufs[b].kind == LB_LOCAL && p->bufs[b].offset == i)
                fprintf(out, "  local %s: f32[%" PRId64 "]\n", p->bufs[b].name, p->bufs[b].size);
        print_stmt(out, p, k, k->body, 1);
    }
}
