/*
 * loop.h — the loop IR: what each kernel computes, as loop nests over
 * buffers.
 *
 * A program is a list of kernels run in order; a kernel is a tree of
 * statements:
 *
 *   for v in [0, extent) { ... }     (extent an expression; v a kernel var)
 *   buf[index] = value   /   buf[index] += value
 *   local = value                      (a scalar kept in a register)
 *   if cond { ... } else { ... }
 *   dst[index..] = transpose(src[at..], M x L)  (register tiles' stores)
 *   dst[index..] += lane_sums(src[at..], M x L)  (and their lane sums)
 *   prefetch buf[index]                (the cache line, ahead of its use)
 *
 * over expressions on 64-bit integers (indices), 32-bit floats and
 * booleans.  Loops always start at 0 with step 1.  The runtime batch size n
 * is the kernel variable LV_N, so every loop over examples reads
 * `for i in [0, n)`.
 *
 * Buffers name memory: a graph value in the arena, a slice of the params
 * or grads array, or one of the entry-point arguments (x, labels, out).
 * Arena offsets are assigned by memplan.c and read when LLVM IR is
 * emitted (llvm_emit.c), so lowering (lower.c) and the loop passes work
 * on buffers, not addresses.
 *
 * Expressions are built with the lx_* helpers below (lx_add(p, a, b)...),
 * which fold constants, so lowering code reads like the math it
 * implements.  Every node lives in the program's arena.
 */
#ifndef CNNC_LOOP_H
#define CNNC_LOOP_H

#include "graph.h"

typedef enum lx_op {
    LX_INT,    /* integer constant */
    LX_FLOAT,  /* float constant */
    LX_VAR,    /* a loop variable, LV_N, or a local */
    LX_LOAD,   /* buf[a] */
    LX_ADD, LX_SUB, LX_MUL, LX_DIV, LX_REM, LX_MIN, LX_MAX,
    LX_XOR, LX_SHR,  /* integers: bitwise xor, logical shift right */
    LX_NEG, LX_EXP, LX_LOG, LX_SQRT, LX_TANH, LX_ERF,
    LX_LT, LX_LE, LX_EQ, LX_NE, LX_AND, LX_OR,
    LX_SELECT,  /* a ? b : c */
    LX_TOFLOAT, /* integer or double -> float */
    LX_TODOUBLE, /* integer or float -> double */
    LX_FMA,     /* a * b + c, fused where the target can */
    LX_BROADCAST, /* a scalar in every lane */
    LX_HSUM,    /* the sum of a vector's lanes */
} lx_op;

/* LT_DOUBLE serves accumulators that must not lose precision over long
 * sums (batch-norm statistics); tensors are always float. */
typedef enum ltype { LT_INT, LT_FLOAT, LT_BOOL, LT_DOUBLE } ltype;

typedef struct lexpr lexpr;
struct lexpr {
    lx_op op;
    ltype type;
    int lanes;     /* 1: a scalar; > 1: a vector (LX_LOAD: that many
                    * elements from the index, `stride` apart) */
    int64_t stride; /* LX_LOAD of a vector: elements between lanes (1: contiguous) */
    int64_t i;     /* LX_INT */
    double f;      /* LX_FLOAT */
    int var;       /* LX_VAR */
    int buf;       /* LX_LOAD */
    lexpr *a, *b, *c;
};

typedef enum ls_kind {
    LS_BLOCK, LS_FOR, LS_STORE, LS_SET, LS_IF, LS_TRANSPOSE, LS_LANE_SUMS, LS_PREFETCH
} ls_kind;

enum { LOOP_PARALLEL = 1, LOOP_UNROLL = 2, LOOP_VECTOR = 4 };

typedef struct lstmt lstmt;
struct lstmt {
    ls_kind kind;
    /* LS_BLOCK */
    lstmt **items;
    int nitems;
    /* LS_FOR: for var in [0, extent) body; LS_SET: var = value */
    int var;
    lexpr *extent;
    lstmt *body;
    int flags;         /* LOOP_* hints for code generation */
    /* LS_STORE: buf[index] (+)= value; a vector value goes to `stride`-spaced
     * elements (1: contiguous).  LS_PREFETCH: the cache line holding
     * buf[index] is fetched into L1 (accumulate: to be written) */
    int buf;
    lexpr *index;
    lexpr *value;
    int accumulate;
    int64_t stride;
    int64_t dst_stride; /* LS_TRANSPOSE: elements between destination vectors */
    /* LS_TRANSPOSE: M = extent (a constant) vectors of L = value->lanes
     * floats, the first at value, each next one `stride` elements on,
     * become L vectors of M floats at buf[index], buf[index + dst_stride],
     * ...: dst[index + l*dst_stride + m] = src[at + m*stride + l].
     * LS_LANE_SUMS: the same M vectors, each summed across its lanes and
     * added to memory: buf[index + m] += sum over l of src[at + m*stride + l] */
    /* LS_IF */
    lexpr *cond;
    lstmt *then_s, *else_s;
};

/* LB_LOCAL: a small array on the kernel's stack (register tiles: after
 * unrolling its indices are constants and LLVM keeps it in registers). */
typedef enum lbuf_kind { LB_ARENA, LB_PARAMS, LB_GRADS, LB_X, LB_LABELS, LB_OUT, LB_LOCAL } lbuf_kind;

typedef struct lbuf {
    const char *name;
    lbuf_kind kind;
    dtype type;
    int value;      /* graph value (LB_ARENA: its offset is the base) */
    int64_t offset; /* LB_PARAMS / LB_GRADS: first element */
    int64_t size;   /* elements, for printing and checks */
} lbuf;

/* Variables of a kernel: LV_N is the batch argument, LV_SEED and LV_STEP
 * the context's seed and step counter (for in-model randomness); others are
 * loop counters (LT_INT) or locals. */
#define LV_N 0
#define LV_SEED 1
#define LV_STEP 2
typedef struct lvar {
    const char *name;
    ltype type;
    int is_loop;
    int lanes;       /* locals: 1, or the width of the vectors it holds */
} lvar;

typedef struct lkernel {
    const char *name;
    int node;        /* first graph node it computes */
    int local_buf;   /* LB_LOCAL buffers belong to one kernel: the first
                      * buffer index of this kernel's, for printing */
    lstmt *body;     /* an LS_BLOCK */
    lvar *vars;
    int nvars;
    int tiled;       /* built by schedule.c: already vectorized and unrolled,
                      * so LLVM is told not to unroll or vectorize it again */
    int small;       /* too little work for the threads (lower_graph), and
                      * for LLVM's unroller and vectorizer to pay: compiled
                      * as written */
} lkernel;

struct lprogram {
    arena *a;
    const ir_graph *g;
    lkernel *kernels;
    int nkernels;
    lbuf *bufs;
    int nbufs;
    int *value_buf;  /* graph value -> buffer, -1 until used */
    lkernel *cur;    /* kernel being built */
    const struct target_desc *target; /* tiled kernels: their target, else NULL */
};

/* ---- building ------------------------------------------------------------- */

lprogram *lp_new(arena *a, const ir_graph *g);
/* Start a kernel named name for node; statements go to its body. */
lkernel *lp_kernel(lprogram *p, const char *name, int node);
/* The buffer of a graph value (made on first use). */
int lp_buf(lprogram *p, int value);
int lp_var(lprogram *p, const char *name, ltype type, int is_loop);

lexpr *lx_int(lprogram *p, int64_t v);
lexpr *lx_float(lprogram *p, double v);
lexpr *lx_double(lprogram *p, double v);
lexpr *lx_var(lprogram *p, int var);
lexpr *lx_n(lprogram *p);
lexpr *lx_load(lprogram *p, int buf, lexpr *index);
lexpr *lx_bin(lprogram *p, lx_op op, lexpr *a, lexpr *b);
lexpr *lx_un(lprogram *p, lx_op op, lexpr *a);
lexpr *lx_select(lprogram *p, lexpr *cond, lexpr *a, lexpr *b);
lexpr *lx_fma(lprogram *p, lexpr *a, lexpr *b, lexpr *c);
/* A stack array of `size` floats for the current kernel. */
int lp_local_array(lprogram *p, const char *name, int64_t size);
#define lx_add(p, a, b) lx_bin(p, LX_ADD, a, b)
#define lx_sub(p, a, b) lx_bin(p, LX_SUB, a, b)
#define lx_mul(p, a, b) lx_bin(p, LX_MUL, a, b)
#define lx_div(p, a, b) lx_bin(p, LX_DIV, a, b)
#define lx_max(p, a, b) lx_bin(p, LX_MAX, a, b)
#define lx_lt(p, a, b) lx_bin(p, LX_LT, a, b)
#define lx_and(p, a, b) lx_bin(p, LX_AND, a, b)
/* a*s + b, for index arithmetic. */
lexpr *lx_madd(lprogram *p, lexpr *a, int64_t s, lexpr *b);
/* 0 <= v < hi */
lexpr *lx_in_range(lprogram *p, lexpr *v, int64_t hi);

lstmt *ls_block(lprogram *p);
void ls_append(lprogram *p, lstmt *block, lstmt *s);
/* A loop over a new variable; returns the loop, whose body is a block. */
lstmt *ls_for(lprogram *p, lstmt *parent, const char *name, lexpr *extent, int *var);
lstmt *ls_store(lprogram *p, lstmt *parent, int buf, lexpr *index, lexpr *value, int accumulate);
lstmt *ls_set(lprogram *p, lstmt *parent, int var, lexpr *value);
lstmt *ls_if(lprogram *p, lstmt *parent, lexpr *cond);
/* The M x L block of src at src_index (M vectors of L floats, src_stride
 * apart) into dst at dst_index, transposed: L vectors of M floats,
 * dst_stride apart. */
lstmt *ls_transpose(lprogram *p, lstmt *parent, int dst, lexpr *dst_index, int src,
                    lexpr *src_index, int m, int l, int64_t src_stride, int64_t dst_stride);
/* The same block's vectors summed across their lanes, the M sums added to
 * the M consecutive floats of dst at dst_index. */
lstmt *ls_lane_sums(lprogram *p, lstmt *parent, int dst, lexpr *dst_index, int src,
                    lexpr *src_index, int m, int l, int64_t src_stride);

/* A hint: fetch the cache line of buf[index] (for writing if `write`). */
lstmt *ls_prefetch(lprogram *p, lstmt *parent, int buf, lexpr *index, int write);
/* Prefetches into parent for the tensor memory that s reads and, with
 * `writes`, stores to (arena buffers over 4 KiB and the entry's
 * arguments: not stack arrays, parameters or small buffers, which stay
 * cached), each address once per parent block.  parent NULL: only count.
 * Returns the number of tensor reads in s. */
int ls_prefetch_uses(lprogram *p, lstmt *parent, const lstmt *s, int writes);

/* ---- passes --------------------------------------------------------------- */

/* Lower every node of g into kernels (lower.c).  With a target, ops that
 * have a tiled form for it (schedule.c) use it. */
lprogram *lower_graph(arena *a, const ir_graph *g, const struct target_desc *target);

/* schedule.c: lower node n as a tiled, vectorized kernel if it has such a
 * form for its shapes; returns 0 (and emits nothing) otherwise. */
int schedule_lower(lprogram *p, const ir_node *n);

/* loopopt.c: turn loops flagged LOOP_VECTOR (innermost, constant extent) into
 * vector statements, then replicate the bodies of loops flagged LOOP_UNROLL. */
void loop_vectorize(lprogram *p);
void loop_unroll(lprogram *p);

/* Copy of e with every use of variable var replaced by with. */
lexpr *lx_subst(lprogram *p, lexpr *e, int var, lexpr *with);
lstmt *ls_subst(lprogram *p, const lstmt *s, int var, lexpr *with);

void lp_print(FILE *out, const lprogram *p);

/* Whether kernel ka of pa and kernel kb of pb compile to the same code:
 * the same statements over the same memory (arena buffers at the same
 * offsets).  codegen.c compiles such a kernel once for both programs. */
int lk_same(const lprogram *pa, int ka, const lprogram *pb, int kb);

#endif
