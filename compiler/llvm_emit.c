/*
 * llvm_emit.c — loop IR to LLVM IR, one function per kernel.
 *
 * A kernel becomes `internal void @name(ptr %frame)`.  Its entry block
 * computes the base pointer of every buffer from the frame (arena + byte
 * offset, params/grads + element offset, or an argument) and gives every
 * kernel variable a stack slot; LLVM's mem2reg turns the slots into SSA
 * registers, so loop counters and accumulators never touch memory in
 * optimized code.  Loops are the canonical shape LLVM's loop passes
 * expect: preheader (extent computed once), header with the exit test,
 * body, latch that increments.
 *
 * Floating point is emitted without fast-math flags: results are what the
 * loop IR says, in the order it says, so -O0 and -O3 agree closely with
 * each other and with the reference interpreter.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/DebugInfo.h>

#include "codegen.h"

/* Value numbering within a basic block: the loop IR spells every index
 * out in full at every load and store (a tile's 72 FMAs each compute
 * their addresses from the loop counters), and LLVM's passes spent their
 * time removing the copies.  Integer operations, loop counters' loads and
 * addresses already built in the block being filled are reused instead
 * (LeNet-5's IR before the passes 60 203 -> 41 710 lines, ResNet-8's LLVM
 * time 1.25 -> 1.155 s, the same machine code).  Entries belong to one block (gen): a new block, or a store
 * to any variable's slot, starts afresh. */
#define VN_SIZE 8192
typedef struct vn_entry {
    unsigned gen;
    int op; /* an LX_ operation; VN_LOAD a counter's load, VN_GEP - type an address */
    LLVMValueRef a, b, v;
} vn_entry;
enum { VN_LOAD = -1, VN_GEP = -2 };

typedef struct vn_table {
    vn_entry *at;
    unsigned gen, count;
    LLVMBasicBlockRef block;
} vn_table;

typedef struct kemit {
    cg *c;
    const lprogram *p;
    const lkernel *k;
    LLVMValueRef fn;
    LLVMValueRef *slots; /* one alloca per kernel variable */
    LLVMValueRef *bases; /* one base pointer per buffer */
    LLVMValueRef frame;  /* the frame pointer of this function */
    int in_parallel;     /* inside an outlined parallel loop: nested ones run serially */
    int parallel_count;  /* outlined loops of this kernel, for their names */
    vn_table *vn;        /* shared with the outlined loops (one block at a time) */
} kemit;

static void vn_flush(kemit *e)
{
    e->vn->gen++;
    e->vn->count = 0;
}

/* The entry for (op, a, b) in the block being filled: a hit (v set) or the
 * free entry to fill with vn_keep. */
static vn_entry *vn_find(kemit *e, int op, LLVMValueRef a, LLVMValueRef b)
{
    vn_table *t = e->vn;
    LLVMBasicBlockRef block = LLVMGetInsertBlock(e->c->b);
    if (block != t->block || 4 * t->count >= 3 * VN_SIZE) {
        vn_flush(e);
        t->block = block;
    }
    uintptr_t h = (uintptr_t)a * 0x9E3779B97F4A7C15u ^ (uintptr_t)b * 0xC2B2AE3D27D4EB4Fu ^
                  (uintptr_t)(unsigned)op * 0x165667B19E3779F9u;
    for (size_t i = (h >> 17) % VN_SIZE;; i = (i + 1) % VN_SIZE) {
        vn_entry *en = &t->at[i];
        if (en->gen != t->gen) {
            en->gen = t->gen;
            en->op = op;
            en->a = a;
            en->b = b;
            en->v = NULL;
            return en;
        }
        if (en->op == op && en->a == a && en->b == b)
            return en;
    }
}

static LLVMValueRef vn_keep(kemit *e, vn_entry *en, LLVMValueRef v)
{
    if (!en->v) {
        en->v = v;
        e->vn->count++;
    }
    return v;
}

/* A store to variable slot `slot`: what was loaded from slots is stale. */
static LLVMValueRef store_slot(kemit *e, LLVMValueRef value, LLVMValueRef slot)
{
    vn_flush(e);
    return LLVMBuildStore(e->c->b, value, slot);
}

static LLVMValueRef intrinsic(cg *c, const char *name, LLVMTypeRef type, LLVMTypeRef *fn_type)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef params[1] = {type};
    *fn_type = LLVMIntrinsicGetType(c->ctx, id, params, 1);
    return LLVMGetIntrinsicDeclaration(c->mod, id, params, 1);
}

/* An overloaded unary intrinsic ("llvm.exp") at x's type. */
static LLVMValueRef call_unary(kemit *e, const char *name, LLVMValueRef x)
{
    LLVMTypeRef fn_type;
    LLVMValueRef fn = intrinsic(e->c, name, LLVMTypeOf(x), &fn_type);
    return LLVMBuildCall2(e->c->b, fn_type, fn, &x, 1, "");
}

/* Strided vectors with a small stride (pooling windows read every second
 * column) as one wide masked load or store plus a shuffle, instead of a
 * load or store per lane.  The mask covers exactly the elements the lanes
 * touch, so nothing outside them is read or written. */
#define WIDE_STRIDE_MAX 4

static int wide_strided(int lanes, int64_t stride)
{
    return stride > 1 && stride <= WIDE_STRIDE_MAX && lanes * stride <= 64;
}

/* A contiguous vector whose width is not a power of two (the last, narrower
 * vector of a row: 12 or 14 floats) is one masked load or store of the next
 * power of two, instead of the 8 + 4 + 2 pieces LLVM would split it into. */
static int odd_width(int lanes)
{
    return lanes > 2 && lanes < 64 && (lanes & (lanes - 1)) != 0;
}

static int pow2_above(int lanes)
{
    int w = 1;
    while (w < lanes)
        w *= 2;
    return w;
}

/* The `wide` floats a vector of `lanes` floats `step` apart spans, as a
 * masked vector type: element i is lane i/step when i % step == 0 and
 * i/step < lanes, and masked off otherwise. */
static int span_of(int lanes, int64_t step)
{
    return step > 1 ? (int)(lanes * step) : pow2_above(lanes);
}

static LLVMValueRef span_mask(cg *c, int lanes, int64_t step)
{
    int wide = span_of(lanes, step);
    LLVMValueRef bits[64];
    for (int i = 0; i < wide; i++)
        bits[i] = LLVMConstInt(c->i1, i % step == 0 && i / step < lanes, 0);
    return LLVMConstVector(bits, (unsigned)wide);
}

static LLVMValueRef masked_intrinsic(cg *c, const char *name, LLVMTypeRef vec, LLVMTypeRef *fn_type)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef params[2] = {vec, c->ptr};
    *fn_type = LLVMIntrinsicGetType(c->ctx, id, params, 2);
    return LLVMGetIntrinsicDeclaration(c->mod, id, params, 2);
}

static LLVMValueRef load_masked(cg *c, LLVMValueRef addr, int lanes, int64_t step)
{
    int wide = span_of(lanes, step);
    LLVMTypeRef vec = LLVMVectorType(c->f32, (unsigned)wide), fn_type;
    LLVMValueRef fn = masked_intrinsic(c, "llvm.masked.load", vec, &fn_type);
    LLVMValueRef args[4] = {addr, LLVMConstInt(c->i32, 4, 0), span_mask(c, lanes, step),
                            LLVMGetPoison(vec)};
    LLVMValueRef all = LLVMBuildCall2(c->b, fn_type, fn, args, 4, "");
    LLVMValueRef pick[64];
    for (int i = 0; i < lanes; i++)
        pick[i] = LLVMConstInt(c->i32, (unsigned long long)(i * step), 0);
    return LLVMBuildShuffleVector(c->b, all, LLVMGetPoison(vec),
                                  LLVMConstVector(pick, (unsigned)lanes), "");
}

/* A vector stored to elements `stride` apart (a register tile's vector of
 * output channels into an NCHW tensor) as llvm.masked.scatter: one
 * instruction on AVX-512, which LLVM splits into one store per lane where
 * the target has no scatter.  Lane by lane in our IR (extract, store) it
 * ran as fast on Zen 5 but took a quarter of ResNet-8's compile time in
 * instruction selection (2.4-2.65 s -> 1.78-1.86 s with scatters, train
 * step and forward pass unchanged, A/B of 3 rounds). */
static void store_scatter(cg *c, LLVMValueRef v, LLVMValueRef addr, int lanes, int64_t stride)
{
    LLVMValueRef offs[64], ones[64];
    for (int i = 0; i < lanes; i++) {
        offs[i] = LLVMConstInt(c->i64, (unsigned long long)(i * stride), 1);
        ones[i] = LLVMConstInt(c->i1, 1, 0);
    }
    LLVMValueRef idx = LLVMConstVector(offs, (unsigned)lanes);
    LLVMValueRef ptrs = LLVMBuildGEP2(c->b, c->f32, addr, &idx, 1, "");
    unsigned id = LLVMLookupIntrinsicID("llvm.masked.scatter", 19);
    LLVMTypeRef params[2] = {LLVMTypeOf(v), LLVMTypeOf(ptrs)};
    LLVMTypeRef fn_type = LLVMIntrinsicGetType(c->ctx, id, params, 2);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, params, 2);
    LLVMValueRef args[4] = {v, ptrs, LLVMConstInt(c->i32, 4, 0), LLVMConstVector(ones, (unsigned)lanes)};
    LLVMBuildCall2(c->b, fn_type, fn, args, 4, "");
}

static void store_masked(cg *c, LLVMValueRef v, LLVMValueRef addr, int lanes, int64_t step)
{
    int wide = span_of(lanes, step);
    LLVMTypeRef vec = LLVMVectorType(c->f32, (unsigned)wide), fn_type;
    LLVMValueRef spread[64];
    for (int i = 0; i < wide; i++)
        spread[i] = i % step == 0 && i / step < lanes
                        ? LLVMConstInt(c->i32, (unsigned long long)(i / step), 0)
                        : LLVMGetPoison(c->i32);
    LLVMValueRef w = LLVMBuildShuffleVector(c->b, v, LLVMGetPoison(LLVMTypeOf(v)),
                                            LLVMConstVector(spread, (unsigned)wide), "");
    LLVMValueRef fn = masked_intrinsic(c, "llvm.masked.store", vec, &fn_type);
    LLVMValueRef args[4] = {w, addr, LLVMConstInt(c->i32, 4, 0), span_mask(c, lanes, step)};
    LLVMBuildCall2(c->b, fn_type, fn, args, 4, "");
}

/* A float function of the C library (erff), declared on first use. */
static LLVMValueRef call_libm(kemit *e, const char *name, LLVMValueRef x)
{
    cg *c = e->c;
    LLVMTypeRef fn_type = LLVMFunctionType(c->f32, &c->f32, 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(c->mod, name);
    if (!fn)
        fn = LLVMAddFunction(c->mod, name, fn_type);
    return LLVMBuildCall2(c->b, fn_type, fn, &x, 1, "");
}

static LLVMTypeRef scalar_type(cg *c, ltype t)
{
    return t == LT_FLOAT ? c->f32 : t == LT_DOUBLE ? c->f64 : t == LT_BOOL ? c->i1 : c->i64;
}

static LLVMTypeRef ltype_of(cg *c, ltype t, int lanes)
{
    LLVMTypeRef s = scalar_type(c, t);
    return lanes > 1 ? LLVMVectorType(s, (unsigned)lanes) : s;
}

/* v in every one of `lanes` lanes (v itself when it is already a vector). */
static LLVMValueRef splat_to(cg *c, LLVMValueRef v, int lanes)
{
    if (lanes <= 1 || LLVMGetTypeKind(LLVMTypeOf(v)) == LLVMVectorTypeKind)
        return v;
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(v), (unsigned)lanes);
    LLVMValueRef one = LLVMBuildInsertElement(c->b, LLVMGetPoison(vt), v,
                                              LLVMConstInt(c->i32, 0, 0), "");
    LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(c->i32, (unsigned)lanes));
    return LLVMBuildShuffleVector(c->b, one, LLVMGetPoison(vt), zeros, "");
}

static LLVMTypeRef elem_type(cg *c, dtype t)
{
    return t == DT_I32 ? c->i32 : c->f32;
}

static LLVMValueRef expr(kemit *e, const lexpr *x);

static LLVMValueRef address(kemit *e, int buf, const lexpr *index)
{
    cg *c = e->c;
    LLVMValueRef idx = expr(e, index);
    vn_entry *en = vn_find(e, VN_GEP - (int)e->p->bufs[buf].type, e->bases[buf], idx);
    if (en->v)
        return en->v;
    return vn_keep(e, en, LLVMBuildGEP2(c->b, elem_type(c, e->p->bufs[buf].type), e->bases[buf],
                                        &idx, 1, ""));
}

static LLVMValueRef binary_op(kemit *e, const lexpr *x, LLVMValueRef l, LLVMValueRef r, int fl);

static LLVMValueRef binary(kemit *e, const lexpr *x)
{
    cg *c = e->c;
    LLVMValueRef l = splat_to(c, expr(e, x->a), x->lanes), r = splat_to(c, expr(e, x->b), x->lanes);
    int fl = x->a->type == LT_FLOAT || x->a->type == LT_DOUBLE;
    if (!fl && x->lanes <= 1) { /* index arithmetic: once per block */
        vn_entry *en = vn_find(e, x->op, l, r);
        if (en->v)
            return en->v;
        LLVMValueRef v = binary_op(e, x, l, r, fl);
        return v ? vn_keep(e, en, v) : NULL;
    }
    return binary_op(e, x, l, r, fl);
}

static LLVMValueRef binary_op(kemit *e, const lexpr *x, LLVMValueRef l, LLVMValueRef r, int fl)
{
    LLVMBuilderRef b = e->c->b;
    switch (x->op) {
    case LX_ADD:
        return fl ? LLVMBuildFAdd(b, l, r, "") : LLVMBuildAdd(b, l, r, "");
    case LX_SUB:
        return fl ? LLVMBuildFSub(b, l, r, "") : LLVMBuildSub(b, l, r, "");
    case LX_MUL:
        return fl ? LLVMBuildFMul(b, l, r, "") : LLVMBuildMul(b, l, r, "");
    case LX_DIV:
        return fl ? LLVMBuildFDiv(b, l, r, "") : LLVMBuildSDiv(b, l, r, "");
    case LX_REM:
        return LLVMBuildSRem(b, l, r, "");
    case LX_XOR:
        return LLVMBuildXor(b, l, r, "");
    case LX_SHR:
        return LLVMBuildLShr(b, l, r, "");
    case LX_MIN:
    case LX_MAX: {
        LLVMValueRef lt = fl ? LLVMBuildFCmp(b, LLVMRealOLT, l, r, "")
                             : LLVMBuildICmp(b, LLVMIntSLT, l, r, "");
        return x->op == LX_MIN ? LLVMBuildSelect(b, lt, l, r, "")
                               : LLVMBuildSelect(b, lt, r, l, "");
    }
    case LX_LT:
        return fl ? LLVMBuildFCmp(b, LLVMRealOLT, l, r, "") : LLVMBuildICmp(b, LLVMIntSLT, l, r, "");
    case LX_LE:
        return fl ? LLVMBuildFCmp(b, LLVMRealOLE, l, r, "") : LLVMBuildICmp(b, LLVMIntSLE, l, r, "");
    case LX_EQ:
        return fl ? LLVMBuildFCmp(b, LLVMRealOEQ, l, r, "") : LLVMBuildICmp(b, LLVMIntEQ, l, r, "");
    case LX_NE: /* unordered: NaN != NaN is true */
        return fl ? LLVMBuildFCmp(b, LLVMRealUNE, l, r, "") : LLVMBuildICmp(b, LLVMIntNE, l, r, "");
    case LX_AND:
        return LLVMBuildAnd(b, l, r, "");
    case LX_OR:
        return LLVMBuildOr(b, l, r, "");
    default:
        return NULL;
    }
}

static LLVMValueRef expr(kemit *e, const lexpr *x)
{
    cg *c = e->c;
    LLVMBuilderRef b = c->b;
    switch (x->op) {
    case LX_INT:
        return LLVMConstInt(c->i64, (unsigned long long)x->i, 1);
    case LX_FLOAT:
        return LLVMConstReal(x->type == LT_DOUBLE ? c->f64 : c->f32, x->f);
    case LX_VAR: {
        LLVMTypeRef t = ltype_of(c, x->type, e->k->vars[x->var].lanes);
        if (!e->k->vars[x->var].is_loop) /* set by statements: loaded where used */
            return LLVMBuildLoad2(b, t, e->slots[x->var], "");
        vn_entry *en = vn_find(e, VN_LOAD, e->slots[x->var], NULL);
        return en->v ? en->v : vn_keep(e, en, LLVMBuildLoad2(b, t, e->slots[x->var], ""));
    }
    case LX_LOAD: {
        const lbuf *buf = &e->p->bufs[x->buf];
        LLVMTypeRef t = elem_type(c, buf->type);
        LLVMValueRef v;
        if (x->lanes > 1 && buf->type == DT_F32 && buf->kind != LB_LOCAL &&
            wide_strided(x->lanes, x->stride)) {
            v = load_masked(c, address(e, x->buf, x->a), x->lanes, x->stride);
        } else if (x->lanes > 1 && x->stride != 1) { /* a gather, lane by lane */
            LLVMValueRef base = address(e, x->buf, x->a);
            v = LLVMGetPoison(LLVMVectorType(t, (unsigned)x->lanes));
            for (int i = 0; i < x->lanes; i++) {
                LLVMValueRef off = LLVMConstInt(c->i64, (unsigned long long)(i * x->stride), 1);
                LLVMValueRef at = LLVMBuildGEP2(b, t, base, &off, 1, "");
                LLVMValueRef lane = LLVMBuildLoad2(b, t, at, "");
                v = LLVMBuildInsertElement(b, v, lane, LLVMConstInt(c->i32, (unsigned)i, 0), "");
            }
        } else if (buf->type == DT_F32 && buf->kind != LB_LOCAL && x->stride == 1 &&
                   odd_width(x->lanes)) {
            v = load_masked(c, address(e, x->buf, x->a), x->lanes, 1);
        } else {
            if (x->lanes > 1)
                t = LLVMVectorType(t, (unsigned)x->lanes);
            v = LLVMBuildLoad2(b, t, address(e, x->buf, x->a), "");
            LLVMSetAlignment(v, 4);
        }
        return buf->type == DT_I32 ? LLVMBuildSExt(b, v, ltype_of(c, LT_INT, x->lanes), "") : v;
    }
    case LX_FMA: {
        LLVMValueRef args[3] = {splat_to(c, expr(e, x->a), x->lanes),
                                splat_to(c, expr(e, x->b), x->lanes),
                                splat_to(c, expr(e, x->c), x->lanes)};
        LLVMTypeRef fn_type;
        LLVMValueRef fn = intrinsic(c, "llvm.fmuladd", LLVMTypeOf(args[2]), &fn_type);
        return LLVMBuildCall2(b, fn_type, fn, args, 3, "");
    }
    case LX_BROADCAST:
        return splat_to(c, expr(e, x->a), x->lanes);
    case LX_HSUM: {
        LLVMValueRef v = expr(e, x->a);
        if (x->a->lanes <= 1)
            return v;
        LLVMTypeRef params[1] = {LLVMTypeOf(v)};
        unsigned id = LLVMLookupIntrinsicID("llvm.vector.reduce.fadd", 23);
        LLVMTypeRef fn_type = LLVMIntrinsicGetType(c->ctx, id, params, 1);
        LLVMValueRef fn = LLVMGetIntrinsicDeclaration(c->mod, id, params, 1);
        LLVMValueRef args[2] = {LLVMConstReal(LLVMGetElementType(LLVMTypeOf(v)), -0.0), v};
        LLVMValueRef r = LLVMBuildCall2(b, fn_type, fn, args, 2, "");
        LLVMSetFastMathFlags(r, LLVMFastMathAllowReassoc); /* a tree, not a chain */
        return r;
    }
    case LX_NEG:
        return LLVMBuildFNeg(b, expr(e, x->a), "");
    case LX_EXP:
        return call_unary(e, "llvm.exp", expr(e, x->a));
    case LX_LOG:
        return call_unary(e, "llvm.log", expr(e, x->a));
    case LX_SQRT:
        return call_unary(e, "llvm.sqrt", expr(e, x->a));
    case LX_TANH:
        return call_unary(e, "llvm.tanh", expr(e, x->a));
    case LX_ERF: {
        LLVMValueRef v = expr(e, x->a);
        if (x->lanes <= 1)
            return call_libm(e, "erff", v);
        LLVMValueRef r = LLVMGetPoison(LLVMTypeOf(v)); /* no vector erf: lane by lane */
        for (int i = 0; i < x->lanes; i++) {
            LLVMValueRef at = LLVMConstInt(c->i32, (unsigned long long)i, 0);
            LLVMValueRef lane = call_libm(e, "erff", LLVMBuildExtractElement(b, v, at, ""));
            r = LLVMBuildInsertElement(b, r, lane, at, "");
        }
        return r;
    }
    case LX_SELECT: {
        LLVMValueRef cond = expr(e, x->a);
        LLVMValueRef t = splat_to(c, expr(e, x->b), x->lanes);
        LLVMValueRef f = splat_to(c, expr(e, x->c), x->lanes);
        return LLVMBuildSelect(b, cond, t, f, "");
    }
    case LX_TOFLOAT:
        if (x->a->type == LT_DOUBLE)
            return LLVMBuildFPTrunc(b, expr(e, x->a), ltype_of(c, LT_FLOAT, x->lanes), "");
        return LLVMBuildSIToFP(b, expr(e, x->a), ltype_of(c, LT_FLOAT, x->lanes), "");
    case LX_TODOUBLE:
        if (x->a->type == LT_FLOAT)
            return LLVMBuildFPExt(b, expr(e, x->a), ltype_of(c, LT_DOUBLE, x->lanes), "");
        return LLVMBuildSIToFP(b, expr(e, x->a), ltype_of(c, LT_DOUBLE, x->lanes), "");
    default:
        return binary(e, x);
    }
}

static void stmt(kemit *e, const lstmt *s);

static void begin_function(kemit *e);
static void emit_parallel_for(kemit *e, const lstmt *s);

/* Loop metadata that keeps LLVM from unrolling or vectorizing a loop of a
 * tiled kernel again: those are built vectorized and unrolled, and a second
 * round only multiplies code (and compile time) without making it faster;
 * nor those of a small kernel, whose time is too little to gain from it. */
static void mark_loop_done(cg *c, LLVMValueRef latch)
{
    unsigned kind = LLVMGetMDKindIDInContext(c->ctx, "llvm.loop", 9);
    LLVMMetadataRef self = LLVMTemporaryMDNode(c->ctx, NULL, 0);
    LLVMMetadataRef hint[2];
    hint[0] = LLVMMDStringInContext2(c->ctx, "llvm.loop.unroll.disable", 24);
    LLVMMetadataRef unroll = LLVMMDNodeInContext2(c->ctx, hint, 1);
    hint[0] = LLVMMDStringInContext2(c->ctx, "llvm.loop.vectorize.width", 25);
    hint[1] = LLVMValueAsMetadata(LLVMConstInt(c->i32, 1, 0));
    LLVMMetadataRef width = LLVMMDNodeInContext2(c->ctx, hint, 2);
    hint[0] = LLVMMDStringInContext2(c->ctx, "llvm.loop.interleave.count", 26);
    hint[1] = LLVMValueAsMetadata(LLVMConstInt(c->i32, 1, 0));
    LLVMMetadataRef interleave = LLVMMDNodeInContext2(c->ctx, hint, 2);
    LLVMMetadataRef ops[4] = {self, unroll, width, interleave};
    LLVMMetadataRef node = LLVMMDNodeInContext2(c->ctx, ops, 4);
    LLVMMetadataReplaceAllUsesWith(self, node);
    LLVMSetMetadata(latch, kind, LLVMMetadataAsValue(c->ctx, node));
}

/* The loop from the value in the variable's slot up to `extent`. */
static void emit_loop_from(kemit *e, const lstmt *s, LLVMValueRef extent)
{
    cg *c = e->c;
    LLVMBuilderRef b = c->b;
    LLVMValueRef slot = e->slots[s->var];
    const char *name = e->k->vars[s->var].name;
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(c->ctx, e->fn, name);
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "body");
    LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "exit");
    LLVMBuildBr(b, head);
    LLVMPositionBuilderAtEnd(b, head);
    LLVMValueRef iv = LLVMBuildLoad2(b, c->i64, slot, "");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, iv, extent, ""), body, exit);
    LLVMPositionBuilderAtEnd(b, body);
    stmt(e, s->body);
    LLVMValueRef next = LLVMBuildAdd(b, LLVMBuildLoad2(b, c->i64, slot, ""),
                                     LLVMConstInt(c->i64, 1, 0), "");
    store_slot(e, next, slot);
    LLVMValueRef latch = LLVMBuildBr(b, head);
    if (e->k->tiled || e->k->small)
        mark_loop_done(c, latch);
    LLVMPositionBuilderAtEnd(b, exit);
}

static void emit_for(kemit *e, const lstmt *s)
{
    if ((s->flags & LOOP_PARALLEL) && !e->in_parallel) {
        emit_parallel_for(e, s);
        return;
    }
    LLVMValueRef extent = expr(e, s->extent);
    store_slot(e, LLVMConstInt(e->c->i64, 0, 0), e->slots[s->var]);
    emit_loop_from(e, s, extent);
}

/* A parallel loop: its body becomes a function of (closure, begin, end)
 * that the context's thread pool runs over chunks of [0, extent); the
 * closure carries the frame and the values of every kernel variable, so
 * the body sees the enclosing loops' counters.  Without a pool, the
 * function runs the whole range on this thread. */
static void emit_parallel_for(kemit *e, const lstmt *s)
{
    cg *c = e->c;
    LLVMBuilderRef b = c->b;
    const lkernel *k = e->k;
    LLVMTypeRef *fields = malloc(sizeof *fields * (size_t)(k->nvars + 1));
    fields[0] = c->ptr;
    for (int i = 0; i < k->nvars; i++)
        fields[i + 1] = ltype_of(c, k->vars[i].type, k->vars[i].lanes);
    LLVMTypeRef closure_t = LLVMStructTypeInContext(c->ctx, fields, (unsigned)k->nvars + 1, 0);
    free(fields);
    LLVMValueRef extent = expr(e, s->extent);
    LLVMValueRef closure = LLVMBuildAlloca(b, closure_t, "closure");
    LLVMBuildStore(b, e->frame, LLVMBuildStructGEP2(b, closure_t, closure, 0, ""));
    for (int i = 0; i < k->nvars; i++) {
        LLVMTypeRef t = ltype_of(c, k->vars[i].type, k->vars[i].lanes);
        LLVMBuildStore(b, LLVMBuildLoad2(b, t, e->slots[i], ""),
                       LLVMBuildStructGEP2(b, closure_t, closure, (unsigned)i + 1, ""));
    }
    /* the outlined body */
    char name[256];
    snprintf(name, sizeof name, "%s.par%d", LLVMGetValueName(e->fn), e->parallel_count++);
    LLVMTypeRef params[3] = {c->ptr, c->i64, c->i64};
    LLVMTypeRef task_t = LLVMFunctionType(c->void_t, params, 3, 0);
    LLVMBasicBlockRef resume = LLVMGetInsertBlock(b);
    kemit o = *e;
    o.fn = LLVMAddFunction(c->mod, name, task_t);
    LLVMSetLinkage(o.fn, LLVMInternalLinkage);
    o.in_parallel = 1;
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(c->ctx, o.fn, "entry"));
    LLVMValueRef oc = LLVMGetParam(o.fn, 0);
    o.frame = LLVMBuildLoad2(b, c->ptr, LLVMBuildStructGEP2(b, closure_t, oc, 0, ""), "frame");
    begin_function(&o);
    for (int i = 0; i < k->nvars; i++) {
        LLVMTypeRef t = ltype_of(c, k->vars[i].type, k->vars[i].lanes);
        LLVMValueRef field = LLVMBuildStructGEP2(b, closure_t, oc, (unsigned)i + 1, "");
        store_slot(&o, LLVMBuildLoad2(b, t, field, ""), o.slots[i]);
    }
    store_slot(&o, LLVMGetParam(o.fn, 1), o.slots[s->var]);
    emit_loop_from(&o, s, LLVMGetParam(o.fn, 2));
    LLVMBuildRetVoid(b);
    free(o.slots);
    free(o.bases);
    /* the call: through the pool when there is one */
    LLVMPositionBuilderAtEnd(b, resume);
    LLVMValueRef pool = LLVMBuildLoad2(b, c->ptr, LLVMBuildStructGEP2(b, c->frame, e->frame, FR_POOL, ""), "pool");
    LLVMValueRef pfor = LLVMBuildLoad2(b, c->ptr, LLVMBuildStructGEP2(b, c->frame, e->frame, FR_PARFOR, ""), "parallel_for");
    LLVMBasicBlockRef threaded = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "threaded");
    LLVMBasicBlockRef serial = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "serial");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "joined");
    LLVMBuildCondBr(b, LLVMBuildIsNotNull(b, pool, ""), threaded, serial);
    LLVMPositionBuilderAtEnd(b, threaded);
    LLVMTypeRef pf_params[4] = {c->ptr, c->ptr, c->ptr, c->i64};
    LLVMTypeRef pf_t = LLVMFunctionType(c->void_t, pf_params, 4, 0);
    LLVMValueRef pargs[4] = {pool, o.fn, closure, extent};
    LLVMBuildCall2(b, pf_t, pfor, pargs, 4, "");
    LLVMBuildBr(b, join);
    LLVMPositionBuilderAtEnd(b, serial);
    LLVMValueRef sargs[3] = {closure, LLVMConstInt(c->i64, 0, 0), extent};
    LLVMBuildCall2(b, task_t, o.fn, sargs, 3, "");
    LLVMBuildBr(b, join);
    LLVMPositionBuilderAtEnd(b, join);
}

static void emit_if(kemit *e, const lstmt *s)
{
    cg *c = e->c;
    LLVMBuilderRef b = c->b;
    LLVMValueRef cond = expr(e, s->cond);
    LLVMBasicBlockRef then_bb = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "then");
    LLVMBasicBlockRef else_bb = s->else_s ? LLVMAppendBasicBlockInContext(c->ctx, e->fn, "else")
                                          : NULL;
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(c->ctx, e->fn, "join");
    LLVMBuildCondBr(b, cond, then_bb, else_bb ? else_bb : join);
    LLVMPositionBuilderAtEnd(b, then_bb);
    stmt(e, s->then_s);
    LLVMBuildBr(b, join);
    if (else_bb) {
        LLVMPositionBuilderAtEnd(b, else_bb);
        stmt(e, s->else_s);
        LLVMBuildBr(b, join);
    }
    LLVMPositionBuilderAtEnd(b, join);
}

/* A vector of `lanes` lanes taken from v: lane i is lane pick[i] of v
 * (or of w, for pick[i] >= v's width), poison where pick[i] < 0. */
static LLVMValueRef shuffle(cg *c, LLVMValueRef v, LLVMValueRef w, const int *pick, int lanes)
{
    LLVMValueRef mask[64];
    for (int i = 0; i < lanes; i++)
        mask[i] = pick[i] < 0 ? LLVMGetPoison(c->i32)
                              : LLVMConstInt(c->i32, (unsigned long long)pick[i], 0);
    return LLVMBuildShuffleVector(c->b, v, w, LLVMConstVector(mask, (unsigned)lanes), "");
}

/* The source block of an LS_TRANSPOSE or LS_LANE_SUMS: its M vectors of
 * L lanes (s->value, then every s->stride elements) into v[], each widened
 * to `width` lanes with lanes of fill (poison or zeros). */
static void load_block(kemit *e, const lstmt *s, int width, LLVMValueRef fill, LLVMValueRef *v)
{
    cg *c = e->c;
    int l = s->value->lanes, pick[64];
    LLVMTypeRef src_t = LLVMVectorType(c->f32, (unsigned)l);
    LLVMValueRef src = address(e, s->value->buf, s->value->a);
    for (int i = 0; i < width; i++)
        pick[i] = i < l ? i : l; /* past l: lane 0 of fill */
    for (int m = 0; m < s->extent->i; m++) {
        LLVMValueRef off = LLVMConstInt(c->i64, (unsigned long long)(m * s->stride), 1);
        v[m] = LLVMBuildLoad2(c->b, src_t, LLVMBuildGEP2(c->b, c->f32, src, &off, 1, ""), "");
        LLVMSetAlignment(v[m], 4);
        if (l < width)
            v[m] = shuffle(c, v[m], fill, pick, width);
    }
}

/* LS_TRANSPOSE: the M source vectors (L lanes) padded to N x N, N the
 * power of two that holds both, then log2(N) rounds of two-input shuffles,
 * each swapping the off-diagonal b x b blocks of every 2b x 2b block (b =
 * N/2 ... 1): 4 rounds of 16 shuffles for a 16 x 16 block, where storing
 * each source vector as a scatter costs a store per lane.  Padding lanes
 * and rows are poison, which LLVM folds away. */
static void emit_transpose(kemit *e, const lstmt *s)
{
    cg *c = e->c;
    int m = (int)s->extent->i, l = s->value->lanes, n = 1;
    while (n < m || n < l)
        n *= 2;
    assert(n <= 64); /* the arrays below; schedule.c keeps blocks within a vector */
    LLVMValueRef row[64], next[64];
    int pick[64];
    load_block(e, s, n, LLVMGetPoison(LLVMVectorType(c->f32, (unsigned)l)), row);
    for (int i = m; i < n; i++)
        row[i] = LLVMGetPoison(LLVMVectorType(c->f32, (unsigned)n));
    for (int b = n / 2; b >= 1; b /= 2) {
        for (int i = 0; i < n; i++) {
            if (i & b)
                continue;
            int lo[64], hi[64];
            for (int t = 0; t < n; t++) {
                int first = (t & b) == 0; /* t in its 2b-group's first half */
                lo[t] = first ? t : n + t - b;
                hi[t] = first ? t + b : n + t;
            }
            next[i] = shuffle(c, row[i], row[i + b], lo, n);
            next[i + b] = shuffle(c, row[i], row[i + b], hi, n);
        }
        memcpy(row, next, sizeof(LLVMValueRef) * (size_t)n);
    }
    LLVMValueRef dst = address(e, s->buf, s->index);
    for (int i = 0; i < n; i++)
        pick[i] = i < m ? i : -1;
    for (int i = 0; i < l; i++) {
        LLVMValueRef v = m == n ? row[i] : shuffle(c, row[i], LLVMGetPoison(LLVMTypeOf(row[i])), pick, m);
        LLVMValueRef off = LLVMConstInt(c->i64, (unsigned long long)(i * s->dst_stride), 1);
        LLVMValueRef st = LLVMBuildStore(c->b, v, LLVMBuildGEP2(c->b, c->f32, dst, &off, 1, ""));
        LLVMSetAlignment(st, 4);
    }
}

/* v (lanes contiguous floats) stored at addr, or added to what is there;
 * odd: the width is not a power of two and addr is memory, so masked
 * accesses of the next power of two. */
static void store_floats(cg *c, LLVMValueRef addr, LLVMValueRef v, int lanes, int accumulate,
                         int odd)
{
    if (accumulate) {
        LLVMValueRef old = odd ? load_masked(c, addr, lanes, 1)
                               : LLVMBuildLoad2(c->b, ltype_of(c, LT_FLOAT, lanes), addr, "");
        if (!odd)
            LLVMSetAlignment(old, 4);
        v = LLVMBuildFAdd(c->b, old, v, "");
    }
    if (odd) {
        store_masked(c, v, addr, lanes, 1);
        return;
    }
    LLVMSetAlignment(LLVMBuildStore(c->b, v, addr), 4);
}

/* LS_LANE_SUMS: the S source vectors (L lanes, padded with zeros to W, a
 * power of two) summed pairwise: each round puts two vectors' halves side
 * by side and adds them, so a vector of g sources x p partial sums becomes
 * 2g sources x p/2 (sources stay in order), until each lane is one
 * source's sum.  16 sources of 16 lanes: 15 adds and 30 shuffles, where a
 * separate horizontal sum per source took 4 adds and 4 shuffles each, and
 * a scalar add to memory. */
static void emit_lane_sums(kemit *e, const lstmt *s)
{
    cg *c = e->c;
    int count = (int)s->extent->i, l = s->value->lanes, w = pow2_above(l);
    assert(count <= 64 && w <= 64); /* a tile's rows, a vector's lanes */
    LLVMValueRef vec[64];
    int pick[64], lo[64], hi[64];
    load_block(e, s, w, LLVMConstNull(LLVMVectorType(c->f32, (unsigned)l)), vec);
    int n = count;
    for (int p = w; p > 1; p /= 2) { /* p partial sums per source, w / p sources per vector */
        for (int t = 0; t < w; t++) {
            /* lane t of the sum: the first half from x, the second from y */
            int from_y = t >= w / 2, within = t % (w / 2);
            int source = within / (p / 2), part = within % (p / 2);
            lo[t] = from_y * w + source * p + part;
            hi[t] = lo[t] + p / 2;
        }
        int next = 0;
        for (int i = 0; i < n; i += 2) {
            LLVMValueRef x = vec[i], y = i + 1 < n ? vec[i + 1] : LLVMConstNull(LLVMTypeOf(x));
            vec[next++] = LLVMBuildFAdd(c->b, shuffle(c, x, y, lo, w), shuffle(c, x, y, hi, w), "");
        }
        n = next;
    }
    LLVMValueRef dst = address(e, s->buf, s->index);
    for (int k = 0; k < n; k++) { /* w sources per vector, in order */
        int lanes = count - k * w < w ? count - k * w : w;
        LLVMValueRef v = vec[k];
        if (lanes == 1) {
            v = LLVMBuildExtractElement(c->b, v, LLVMConstInt(c->i32, 0, 0), "");
        } else if (lanes < w) {
            for (int i = 0; i < lanes; i++)
                pick[i] = i;
            v = shuffle(c, v, LLVMGetPoison(LLVMTypeOf(v)), pick, lanes);
        }
        LLVMValueRef off = LLVMConstInt(c->i64, (unsigned long long)(k * w), 1);
        store_floats(c, LLVMBuildGEP2(c->b, c->f32, dst, &off, 1, ""), v, lanes, 1, odd_width(lanes));
    }
}

/* LS_PREFETCH: llvm.prefetch(addr, rw, locality 3 (keep in every cache
 * level), data cache). */
static void emit_prefetch(kemit *e, const lstmt *s)
{
    cg *c = e->c;
    LLVMTypeRef fn_type;
    LLVMValueRef fn = intrinsic(c, "llvm.prefetch", c->ptr, &fn_type);
    LLVMValueRef args[4] = {address(e, s->buf, s->index),
                            LLVMConstInt(c->i32, s->accumulate ? 1 : 0, 0),
                            LLVMConstInt(c->i32, 3, 0), LLVMConstInt(c->i32, 1, 0)};
    LLVMBuildCall2(c->b, fn_type, fn, args, 4, "");
}

static void stmt(kemit *e, const lstmt *s)
{
    cg *c = e->c;
    switch (s->kind) {
    case LS_BLOCK:
        for (int i = 0; i < s->nitems; i++)
            stmt(e, s->items[i]);
        break;
    case LS_FOR:
        emit_for(e, s);
        break;
    case LS_IF:
        emit_if(e, s);
        break;
    case LS_TRANSPOSE:
        emit_transpose(e, s);
        break;
    case LS_LANE_SUMS:
        emit_lane_sums(e, s);
        break;
    case LS_PREFETCH:
        emit_prefetch(e, s);
        break;
    case LS_SET:
        store_slot(e, splat_to(c, expr(e, s->value), e->k->vars[s->var].lanes),
                   e->slots[s->var]);
        break;
    case LS_STORE: {
        LLVMValueRef addr = address(e, s->buf, s->index);
        LLVMValueRef v = expr(e, s->value);
        int lanes = s->value->lanes;
        if (lanes > 1 && !s->accumulate && e->p->bufs[s->buf].type == DT_F32 &&
            e->p->bufs[s->buf].kind != LB_LOCAL && wide_strided(lanes, s->stride)) {
            store_masked(c, v, addr, lanes, s->stride);
            break;
        }
        if (lanes > 1 && s->stride != 1 && !s->accumulate && e->p->bufs[s->buf].type == DT_F32) {
            store_scatter(c, v, addr, lanes, s->stride);
            break;
        }
        if (lanes > 1 && s->stride != 1) { /* accumulated: lane by lane */
            for (int i = 0; i < lanes; i++) {
                LLVMValueRef off = LLVMConstInt(c->i64, (unsigned long long)(i * s->stride), 1);
                LLVMValueRef at = LLVMBuildGEP2(c->b, c->f32, addr, &off, 1, "");
                LLVMValueRef lane = LLVMBuildExtractElement(c->b, v, LLVMConstInt(c->i32, (unsigned)i, 0), "");
                if (s->accumulate)
                    lane = LLVMBuildFAdd(c->b, LLVMBuildLoad2(c->b, c->f32, at, ""), lane, "");
                LLVMBuildStore(c->b, lane, at);
            }
            break;
        }
        if (e->p->bufs[s->buf].type == DT_I32) {
            v = LLVMBuildTrunc(c->b, v, lanes > 1 ? LLVMVectorType(c->i32, (unsigned)lanes) : c->i32,
                               "");
            LLVMSetAlignment(LLVMBuildStore(c->b, v, addr), 4);
            break;
        }
        /* (stack arrays keep plain accesses: LLVM promotes them to registers) */
        store_floats(c, addr, v, lanes, s->accumulate,
                     e->p->bufs[s->buf].kind != LB_LOCAL && odd_width(lanes));
        break;
    }
    }
}

/* Base pointer of buffer i, from the frame. */
static LLVMValueRef buffer_base(kemit *e, LLVMValueRef frame, int i)
{
    cg *c = e->c;
    const lbuf *buf = &e->p->bufs[i];
    if (buf->kind == LB_LOCAL) {
        if (buf->offset != e->k - e->p->kernels)
            return NULL; /* another kernel's */
        LLVMValueRef a = LLVMBuildArrayAlloca(c->b, c->f32,
                                              LLVMConstInt(c->i64, (unsigned long long)buf->size, 0),
                                              buf->name);
        LLVMSetAlignment(a, 64);
        return a;
    }
    static const int field[] = {[LB_ARENA] = FR_ARENA, [LB_PARAMS] = FR_PARAMS,
                                [LB_GRADS] = FR_GRADS, [LB_X] = FR_X,
                                [LB_LABELS] = FR_LABELS, [LB_OUT] = FR_OUT};
    LLVMValueRef fp = LLVMBuildStructGEP2(c->b, c->frame, frame, (unsigned)field[buf->kind], "");
    LLVMValueRef base = LLVMBuildLoad2(c->b, c->ptr, fp, buf->name);
    if (buf->kind == LB_ARENA) {
        LLVMValueRef off = LLVMConstInt(c->i64, (unsigned long long)e->p->g->values[buf->value].offset, 0);
        return LLVMBuildGEP2(c->b, c->i8, base, &off, 1, buf->name);
    }
    if (buf->kind == LB_PARAMS || buf->kind == LB_GRADS) {
        LLVMValueRef off = LLVMConstInt(c->i64, (unsigned long long)buf->offset, 0);
        return LLVMBuildGEP2(c->b, c->f32, base, &off, 1, buf->name);
    }
    return base;
}

/* Entry of a kernel function (or an outlined loop of one): a stack slot per
 * variable, n/seed/step from the frame, the base pointer of every buffer
 * (this kernel's stack arrays allocated here). */
static void begin_function(kemit *e)
{
    cg *c = e->c;
    const lkernel *k = e->k;
    e->slots = calloc((size_t)k->nvars, sizeof *e->slots);
    e->bases = calloc((size_t)e->p->nbufs, sizeof *e->bases);
    for (int i = 0; i < k->nvars; i++)
        e->slots[i] = LLVMBuildAlloca(c->b, ltype_of(c, k->vars[i].type, k->vars[i].lanes),
                                      k->vars[i].name);
    static const int from_frame[3][2] = {{LV_N, FR_N}, {LV_SEED, FR_SEED}, {LV_STEP, FR_STEP}};
    for (int i = 0; i < 3; i++) {
        LLVMValueRef at = LLVMBuildStructGEP2(c->b, c->frame, e->frame, (unsigned)from_frame[i][1], "");
        store_slot(e, LLVMBuildLoad2(c->b, c->i64, at, ""), e->slots[from_frame[i][0]]);
    }
    for (int i = 0; i < e->p->nbufs; i++)
        e->bases[i] = buffer_base(e, e->frame, i);
}

LLVMValueRef emit_kernel(cg *c, const lprogram *p, const lkernel *k, const char *name,
                         int exported)
{
    if (!c->vn) {
        c->vn = calloc(1, sizeof *c->vn);
        c->vn->at = calloc(VN_SIZE, sizeof(vn_entry));
    }
    kemit e = {c, p, k, NULL, NULL, NULL, NULL, 0, 0, c->vn};
    vn_flush(&e); /* nothing of another function's */
    e.fn = LLVMAddFunction(c->mod, name, c->kernel_fn);
    if (exported)
        LLVMSetVisibility(e.fn, LLVMHiddenVisibility);
    else
        LLVMSetLinkage(e.fn, LLVMInternalLinkage);
    /* Kept as functions: profiles show time per kernel, and a call per
     * kernel costs nothing beside its loops. */
    unsigned noinline = LLVMGetEnumAttributeKindForName("noinline", 8);
    LLVMAddAttributeAtIndex(e.fn, LLVMAttributeFunctionIndex,
                               LLVMCreateEnumAttribute(c->ctx, noinline, 0));
    e.frame = LLVMGetParam(e.fn, 0);
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->ctx, e.fn, "entry");
    LLVMPositionBuilderAtEnd(c->b, entry);
    begin_function(&e);
    stmt(&e, k->body);
    LLVMBuildRetVoid(c->b);
    free(e.slots);
    free(e.bases);
    return e.fn;
}

void emit_dispose(cg *c)
{
    if (c->vn)
        free(c->vn->at);
    free(c->vn);
    c->vn = NULL;
}
