/*
 * codegen.c — the LLVM module of a network, and the files made from it.
 *
 * The module holds, for a network NAME:
 *
 *   - one internal function per kernel of the train and forward programs
 *     (llvm_emit.c);
 *   - the entry points NAME_train_step and NAME_forward (cnn_model.h
 *     gives their contract): clamp n to [0, batch], read params, grads and
 *     arena from the cnn_ctx, build the frame the kernels take, call the
 *     kernels in order;
 *   - the descriptor NAME_model of type cnn_model_desc, and `cnn_model`,
 *     a weak alias of it with a fixed name for dlsym();
 *   - for a training executable, main(), which hands over to the runtime's
 *     cnn_train_main.
 *
 * The module is verified, optimized with LLVM's standard pipeline at the
 * requested level (with the target machine, so it vectorizes for the real
 * CPU), and written as LLVM IR, assembly or an object; shared libraries and
 * executables are linked by the target's C compiler driver.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen.h"

extern char **environ;

static void cg_types(cg *c)
{
    c->i1 = LLVMInt1TypeInContext(c->ctx);
    c->i8 = LLVMInt8TypeInContext(c->ctx);
    c->i32 = LLVMInt32TypeInContext(c->ctx);
    c->i64 = LLVMInt64TypeInContext(c->ctx);
    c->f32 = LLVMFloatTypeInContext(c->ctx);
    c->f64 = LLVMDoubleTypeInContext(c->ctx);
    c->ptr = LLVMPointerTypeInContext(c->ctx, 0);
    c->void_t = LLVMVoidTypeInContext(c->ctx);
    LLVMTypeRef frame[FR_COUNT] = {c->ptr, c->ptr, c->ptr, c->ptr, c->ptr, c->ptr,
                                   c->i64, c->i64, c->i64, c->ptr, c->ptr};
    c->frame = LLVMStructCreateNamed(c->ctx, "frame");
    LLVMStructSetBody(c->frame, frame, FR_COUNT, 0);
    LLVMTypeRef kparams[1] = {c->ptr};
    c->kernel_fn = LLVMFunctionType(c->void_t, kparams, 1, 0);
    /* struct cnn_ctx: abi, reserved, model, params, grads, arena, pool,
     * parallel_for, seed, step */
    LLVMTypeRef ctx[CTX_COUNT] = {c->i32, c->i32, c->ptr, c->ptr, c->ptr,
                                  c->ptr, c->ptr, c->ptr, c->i64, c->i64};
    c->ctx_t = LLVMStructCreateNamed(c->ctx, "cnn_ctx");
    LLVMStructSetBody(c->ctx_t, ctx, CTX_COUNT, 0);
}

/* A private constant C string; returns its address. */
static LLVMValueRef cstr(cg *c, const char *s)
{
    size_t len = strlen(s);
    LLVMValueRef init = LLVMConstStringInContext(c->ctx, s, (unsigned)len, 0);
    LLVMValueRef g = LLVMAddGlobal(c->mod, LLVMTypeOf(init), ".str");
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    return g;
}

static LLVMValueRef i32c(cg *c, int64_t v)
{
    return LLVMConstInt(c->i32, (unsigned long long)v, 1);
}

static LLVMValueRef i64c(cg *c, int64_t v)
{
    return LLVMConstInt(c->i64, (unsigned long long)v, 1);
}

/* A symbol-safe version of a kernel name ("conv1.grad_input" -> "conv1_grad_input"). */
static char *symbol(const char *prefix, int index, const char *name)
{
    char *s = malloc(strlen(prefix) + strlen(name) + 24);
    sprintf(s, "%s%d_%s", prefix, index, name);
    for (char *q = s; *q; q++)
        if (!(*q == '_' || (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
              (*q >= '0' && *q <= '9')))
            *q = '_';
    return s;
}

/* ---- splitting the module ----------------------------------------------------- */

/* A large module is built as several (PARTS_PER_THREAD per thread, a
 * thread per CPU), each optimized and compiled to an object by whichever
 * thread is free (each with its own LLVM context), and linked together:
 * LLVM's time is spent per function, so this divides the compile time.
 * Part 0 holds the entry points, the descriptor and main();
 * kernels go to parts by size (the number of loop IR statements, after
 * unrolling: what LLVM will chew on), largest first to the lightest part.
 * Kernels outside part 0 are external with hidden visibility.  A kernel's
 * code does not depend on which module it is in. */
#define MAX_PARTS 16

typedef struct split {
    int parts;
    int *part[2]; /* [train, forward][kernel] -> part */
} split;

static int64_t stmt_size(const lstmt *s)
{
    if (!s)
        return 0;
    int64_t n = 1;
    switch (s->kind) {
    case LS_BLOCK:
        for (int i = 0; i < s->nitems; i++)
            n += stmt_size(s->items[i]);
        break;
    case LS_FOR:
        n += stmt_size(s->body);
        break;
    case LS_IF:
        n += stmt_size(s->then_s) + stmt_size(s->else_s);
        break;
    default:
        break;
    }
    return n;
}

static void plan_split(const cnnc_unit *u, int parts, split *sp)
{
    const lprogram *progs[2] = {u->train_prog, u->infer_prog};
    int total = progs[0]->nkernels + progs[1]->nkernels;
    int64_t *size = malloc(sizeof *size * (size_t)(total + 1));
    int64_t load[MAX_PARTS] = {0};
    sp->parts = parts;
    for (int j = 0, at = 0; j < 2; j++) {
        sp->part[j] = calloc((size_t)progs[j]->nkernels + 1, sizeof(int));
        for (int i = 0; i < progs[j]->nkernels; i++) {
            int shared = j == 1 && u->same_as_train && u->same_as_train[i] >= 0;
            size[at++] = shared ? -1 : stmt_size(progs[j]->kernels[i].body);
            if (shared)
                sp->part[j][i] = -1; /* the train kernel serves */
        }
    }
    size[total] = -1;
    load[0] = total / 2; /* part 0 also has the entry points */
    for (;;) {
        int best = 0;
        for (int i = 1; i < total; i++)
            if (size[i] > size[best])
                best = i;
        if (size[best] < 0)
            break;
        int lightest = 0;
        for (int q = 1; q < parts; q++)
            if (load[q] < load[lightest])
                lightest = q;
        load[lightest] += size[best];
        int j = best < progs[0]->nkernels ? 0 : 1;
        sp->part[j][j ? best - progs[0]->nkernels : best] = lightest;
        size[best] = -1;
    }
    free(size);
}

static void split_free(split *sp)
{
    free(sp->part[0]);
    free(sp->part[1]);
}

/* The kernels of program p (train or forward) for module `part`: defined
 * if they belong to it, declared if part 0 calls them from another.  A
 * forward kernel with the same code as a train kernel is that kernel
 * (`train_k`, this module's train kernels). */
static LLVMValueRef *emit_kernels(cg *c, const cnnc_unit *u, const lprogram *p, int train,
                                  const split *sp, int part, LLVMValueRef *train_k)
{
    LLVMValueRef *kernels = calloc((size_t)p->nkernels + 1, sizeof *kernels);
    for (int i = 0; i < p->nkernels; i++) {
        int home = sp->part[train ? 0 : 1][i];
        char *sym = symbol(train ? "train_k" : "fwd_k", i, p->kernels[i].name);
        if (home < 0) {
            kernels[i] = train_k[u->same_as_train[i]];
        } else if (home == part) {
            kernels[i] = emit_kernel(c, p, &p->kernels[i], sym, sp->parts > 1);
        } else if (part == 0) {
            kernels[i] = LLVMAddFunction(c->mod, sym, c->kernel_fn);
            LLVMSetVisibility(kernels[i], LLVMHiddenVisibility);
        }
        free(sym);
    }
    return kernels;
}

/* Work (floating-point operations) a chunk of the forward pass should
 * have at least, so that handing its kernels to the threads (about a
 * microsecond each) costs a few percent: ~0.5 ms on one core. */
#define CHUNK_MIN_FLOPS 100000000LL

/* Examples a chunk has at least: most kernels share out their loop over
 * examples among the threads, and a chunk of 3 (what the cache alone asks
 * of the benchmark's 64-channel 32x32 convolution) left one of two threads
 * idle a third of the time. */
#define CHUNK_MIN_EXAMPLES 16

/* Examples per pass of the forward entry's kernels; the batch when it is
 * not worth splitting.  Layer after layer over a whole batch of 256, every
 * activation goes to memory and back (ResNet-8: 74 KiB per example for its
 * largest tensor); over a chunk that fits the L2 cache the next layer finds
 * its input there.  The chunk is as many examples as the largest
 * activation of one example fits in L2, or more where one example is so
 * little work that the hand-offs would dominate (LeNet-5: 119 examples),
 * and at least CHUNK_MIN_EXAMPLES (ResNet-8: 16).  Measured on ResNet-8 at
 * batch 256: 8-32 examples per chunk all gave 5-25% more images/s than the
 * whole batch at once. */
static int64_t forward_chunk(const cnnc_unit *u)
{
    if (u->opt->forward_chunk > 0)
        return u->opt->forward_chunk;
    if (u->opt->opt_level == 0)
        return u->net->batch;
    const ir_graph *g = u->layers;
    int64_t flops = 0, largest = 1;
    for (int i = 0; i < g->nforward; i++)
        if (op_table[g->nodes[i].op].flops)
            flops += op_table[g->nodes[i].op].flops(g, &g->nodes[i]);
    for (int v = 0; v < u->infer->nvalues; v++) {
        const ir_value *val = &u->infer->values[v];
        if (val->batched && val->kind == VAL_ACT && ir_row_size(val) * 4 > largest)
            largest = ir_row_size(val) * 4;
    }
    int64_t by_cache = u->target.l2_bytes / largest;
    int64_t by_work = flops > 0 ? (CHUNK_MIN_FLOPS + flops - 1) / flops : u->net->batch;
    int64_t chunk = by_cache > by_work ? by_cache : by_work;
    return chunk < CHUNK_MIN_EXAMPLES ? CHUNK_MIN_EXAMPLES : chunk;
}

/* The forward pass's kernels run over the batch in chunks of `chunk`
 * examples: x, out and n in the frame advance chunk by chunk. */
static void emit_chunked_calls(cg *c, const cnnc_unit *u, LLVMValueRef fn, LLVMValueRef frame,
                               LLVMValueRef n, int64_t chunk, const lprogram *p,
                               LLVMValueRef *kernels)
{
    LLVMBuilderRef b = c->b;
    const ir_graph *g = u->infer;
    const ir_value *xv = &g->values[g->input];
    int64_t in_bytes = xv->shape.d[1] * xv->shape.d[2] * xv->shape.d[3] * 4;
    int64_t out_bytes = g->values[g->logits].shape.d[1] * 4;
    LLVMValueRef x0 = LLVMGetParam(fn, 1), out0 = LLVMGetParam(fn, 2);
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(c->ctx, fn, "chunk");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(c->ctx, fn, "chunks_done");
    LLVMBuildBr(b, body);
    LLVMPositionBuilderAtEnd(b, body);
    LLVMValueRef first = LLVMBuildPhi(b, c->i64, "first");
    LLVMValueRef left = LLVMBuildSub(b, n, first, "");
    LLVMValueRef count = LLVMBuildSelect(
        b, LLVMBuildICmp(b, LLVMIntSLT, left, i64c(c, chunk), ""), left, i64c(c, chunk), "count");
    LLVMValueRef xoff = LLVMBuildMul(b, first, i64c(c, in_bytes), "");
    LLVMValueRef ooff = LLVMBuildMul(b, first, i64c(c, out_bytes), "");
    LLVMBuildStore(b, LLVMBuildGEP2(b, c->i8, x0, &xoff, 1, ""),
                   LLVMBuildStructGEP2(b, c->frame, frame, FR_X, ""));
    LLVMBuildStore(b, LLVMBuildGEP2(b, c->i8, out0, &ooff, 1, ""),
                   LLVMBuildStructGEP2(b, c->frame, frame, FR_OUT, ""));
    LLVMBuildStore(b, count, LLVMBuildStructGEP2(b, c->frame, frame, FR_N, ""));
    for (int i = 0; i < p->nkernels; i++)
        LLVMBuildCall2(b, c->kernel_fn, kernels[i], &frame, 1, "");
    LLVMValueRef next = LLVMBuildAdd(b, first, i64c(c, chunk), "next");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, next, n, ""), body, done);
    LLVMValueRef zero = i64c(c, 0);
    LLVMBasicBlockRef from_body = LLVMGetInsertBlock(b);
    LLVMAddIncoming(first, &zero, &pre, 1);
    LLVMAddIncoming(first, &next, &from_body, 1);
    LLVMPositionBuilderAtEnd(b, done);
    LLVMBuildRetVoid(b);
}

/* Emit the entry point `ret name(ptr ctx, ptr a, ptr b, i32 n)`: clamp n,
 * build the frame, run the kernels of p (the forward pass in chunks, see
 * forward_chunk).  Train steps return the loss. */
static void emit_entry(cg *c, const cnnc_unit *u, const lprogram *p, const char *name, int train,
                       LLVMValueRef *kernels)
{
    LLVMTypeRef params[4] = {c->ptr, c->ptr, c->ptr, c->i32};
    LLVMTypeRef ret = train ? c->f32 : c->void_t;
    LLVMValueRef fn = LLVMAddFunction(c->mod, name, LLVMFunctionType(ret, params, 4, 0));
    LLVMBuilderRef b = c->b;
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(c->ctx, fn, "entry");
    LLVMBasicBlockRef empty = LLVMAppendBasicBlockInContext(c->ctx, fn, "empty");
    LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(c->ctx, fn, "run");
    LLVMPositionBuilderAtEnd(b, entry);
    LLVMValueRef ctx = LLVMGetParam(fn, 0);
    LLVMValueRef n = LLVMBuildSExt(b, LLVMGetParam(fn, 3), c->i64, "n");
    LLVMValueRef batch = i64c(c, u->net->batch);
    n = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSGT, n, batch, ""), batch, n, "");
    LLVMValueRef nonpos = LLVMBuildICmp(b, LLVMIntSLE, n, i64c(c, 0), "");
    LLVMValueRef frame = LLVMBuildAlloca(b, c->frame, "frame");
    LLVMBuildCondBr(b, nonpos, empty, run);
    LLVMPositionBuilderAtEnd(b, empty);
    if (train)
        LLVMBuildRet(b, LLVMConstReal(c->f32, 0.0));
    else
        LLVMBuildRetVoid(b);
    LLVMPositionBuilderAtEnd(b, run);
    static const int from_ctx[5][2] = {{FR_PARAMS, CTX_PARAMS}, {FR_GRADS, CTX_GRADS},
                                       {FR_ARENA, CTX_ARENA}, {FR_POOL, CTX_POOL},
                                       {FR_PARFOR, CTX_PARALLEL_FOR}};
    for (int i = 0; i < 5; i++) {
        LLVMValueRef src = LLVMBuildStructGEP2(b, c->ctx_t, ctx, (unsigned)from_ctx[i][1], "");
        LLVMValueRef v = LLVMBuildLoad2(b, c->ptr, src, "");
        LLVMBuildStore(b, v, LLVMBuildStructGEP2(b, c->frame, frame, (unsigned)from_ctx[i][0], ""));
    }
    LLVMValueRef null = LLVMConstPointerNull(c->ptr);
    LLVMBuildStore(b, LLVMGetParam(fn, 1), LLVMBuildStructGEP2(b, c->frame, frame, FR_X, ""));
    LLVMBuildStore(b, train ? LLVMGetParam(fn, 2) : null,
                   LLVMBuildStructGEP2(b, c->frame, frame, FR_LABELS, ""));
    LLVMBuildStore(b, train ? null : LLVMGetParam(fn, 2),
                   LLVMBuildStructGEP2(b, c->frame, frame, FR_OUT, ""));
    LLVMBuildStore(b, n, LLVMBuildStructGEP2(b, c->frame, frame, FR_N, ""));
    static const int counters[2][2] = {{FR_SEED, CTX_SEED}, {FR_STEP, CTX_STEP}};
    for (int i = 0; i < 2; i++) {
        LLVMValueRef src = LLVMBuildStructGEP2(b, c->ctx_t, ctx, (unsigned)counters[i][1], "");
        LLVMBuildStore(b, LLVMBuildLoad2(b, c->i64, src, ""),
                       LLVMBuildStructGEP2(b, c->frame, frame, (unsigned)counters[i][0], ""));
    }
    int64_t chunk = train ? 0 : forward_chunk(u);
    if (chunk > 0 && chunk < u->net->batch) {
        emit_chunked_calls(c, u, fn, frame, n, chunk, p, kernels);
        return;
    }
    for (int i = 0; i < p->nkernels; i++)
        LLVMBuildCall2(b, c->kernel_fn, kernels[i], &frame, 1, "");
    if (train) {
        LLVMValueRef arena = LLVMBuildLoad2(
            b, c->ptr, LLVMBuildStructGEP2(b, c->ctx_t, ctx, CTX_ARENA, ""), "arena");
        LLVMValueRef off = i64c(c, u->train->values[u->train->loss].offset);
        LLVMValueRef at = LLVMBuildGEP2(b, c->i8, arena, &off, 1, "");
        LLVMBuildRet(b, LLVMBuildLoad2(b, c->f32, at, "loss"));
    } else {
        LLVMBuildRetVoid(b);
    }
}

/* The parameter table: an array of cnn_param_desc. */
static LLVMValueRef emit_param_table(cg *c, const ir_graph *g, LLVMTypeRef *elem)
{
    LLVMTypeRef shape = LLVMArrayType2(c->i64, 4);
    LLVMTypeRef fields[13] = {c->ptr, c->ptr, c->i32, c->i32, c->i32, c->i32, shape,
                              c->i64, c->i64, c->i64, c->i64, c->f64, c->f64};
    *elem = LLVMStructCreateNamed(c->ctx, "cnn_param_desc");
    LLVMStructSetBody(*elem, fields, 13, 0);
    LLVMValueRef *rows = malloc(sizeof *rows * (size_t)(g->nparams + 1));
    for (int i = 0; i < g->nparams; i++) {
        const ir_param *p = &g->params[i];
        LLVMValueRef dims[4];
        for (int j = 0; j < 4; j++)
            dims[j] = i64c(c, j < p->shape.ndim ? p->shape.d[j] : 1);
        LLVMValueRef v[13] = {
            cstr(c, p->name), cstr(c, p->layer), i32c(c, p->kind), i32c(c, p->flags),
            i32c(c, p->shape.ndim), i32c(c, p->init.kind), LLVMConstArray2(c->i64, dims, 4),
            i64c(c, p->offset), i64c(c, p->size), i64c(c, p->fan_in), i64c(c, p->fan_out),
            LLVMConstReal(c->f64, p->init.a), LLVMConstReal(c->f64, p->init.b)};
        rows[i] = LLVMConstNamedStruct(*elem, v, 13);
    }
    LLVMValueRef init = LLVMConstArray2(*elem, rows, (uint64_t)g->nparams);
    LLVMValueRef table = LLVMAddGlobal(c->mod, LLVMTypeOf(init), "cnn_param_table");
    LLVMSetInitializer(table, init);
    LLVMSetGlobalConstant(table, 1);
    LLVMSetLinkage(table, LLVMPrivateLinkage);
    free(rows);
    return table;
}

static void emit_descriptor(cg *c, const cnnc_unit *u, LLVMValueRef train_fn,
                            LLVMValueRef forward_fn)
{
    const ir_graph *g = u->train;
    const network *net = u->net;
    LLVMTypeRef param_t;
    LLVMValueRef table = emit_param_table(c, g, &param_t);
    LLVMTypeRef fields[18] = {c->i32, c->i32, c->ptr, c->ptr, c->i32, c->i32, c->i32, c->i32, c->i32,
                              c->i32, c->ptr, c->i64, c->i64, c->i64, c->i64, c->ptr, c->ptr, c->ptr};
    LLVMTypeRef desc_t = LLVMStructCreateNamed(c->ctx, "cnn_model_desc");
    LLVMStructSetBody(desc_t, fields, 18, 0);
    const ir_value *x = &g->values[g->input];
    char *config = json_dumps(net->train, JSON_COMPACT | JSON_SORT_KEYS);
    int64_t classes = g->values[g->logits].shape.d[1];
    LLVMValueRef v[18] = {
        i32c(c, CNN_ABI_VERSION), i32c(c, 0), cstr(c, net->name), cstr(c, c->triple),
        i32c(c, net->batch), i32c(c, x->shape.d[1]), i32c(c, x->shape.d[2]),
        i32c(c, x->shape.d[3]), i32c(c, classes), i32c(c, g->nparams), table,
        i64c(c, g->param_floats), i64c(c, u->arena_bytes),
        i64c(c, g->values[g->logits].offset), i64c(c, (int64_t)graph_arch_hash(u->layers)),
        cstr(c, config), train_fn, forward_fn};
    free(config);
    char *name = malloc(strlen(net->name) + 8);
    sprintf(name, "%s_model", net->name);
    LLVMValueRef desc = LLVMAddGlobal(c->mod, desc_t, name);
    LLVMSetInitializer(desc, LLVMConstNamedStruct(desc_t, v, 18));
    LLVMSetGlobalConstant(desc, 1);
    LLVMValueRef alias = LLVMAddAlias2(c->mod, desc_t, 0, desc, CNN_MODEL_SYMBOL);
    LLVMSetLinkage(alias, LLVMWeakAnyLinkage);
    free(name);
}

/* main() of a training executable. */
static void emit_main(cg *c, const cnnc_unit *u)
{
    char name[512];
    snprintf(name, sizeof name, "%s_model", u->net->name);
    LLVMValueRef desc = LLVMGetNamedGlobal(c->mod, name);
    LLVMTypeRef tm_params[3] = {c->i32, c->ptr, c->ptr};
    LLVMTypeRef tm_type = LLVMFunctionType(c->i32, tm_params, 3, 0);
    LLVMValueRef train_main = LLVMAddFunction(c->mod, "cnn_train_main", tm_type);
    LLVMTypeRef main_params[2] = {c->i32, c->ptr};
    LLVMValueRef fn = LLVMAddFunction(c->mod, "main", LLVMFunctionType(c->i32, main_params, 2, 0));
    LLVMPositionBuilderAtEnd(c->b, LLVMAppendBasicBlockInContext(c->ctx, fn, "entry"));
    LLVMValueRef args[3] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), desc};
    LLVMBuildRet(c->b, LLVMBuildCall2(c->b, tm_type, train_main, args, 3, ""));
}

/* Build, verify and optimize module `part` of the split. */
static int build_module(cg *c, cnnc_unit *u, int with_main, const split *sp, int part)
{
    c->ctx = LLVMContextCreate();
    c->mod = LLVMModuleCreateWithNameInContext(u->net->name, c->ctx);
    c->b = LLVMCreateBuilderInContext(c->ctx);
    c->opt_level = u->opt->opt_level;
    cg_types(c);
    if (target_setup(c, u->opt->target, u->opt->cpu, c->opt_level) != 0)
        return -1;
    LLVMValueRef *train_k = emit_kernels(c, u, u->train_prog, 1, sp, part, NULL);
    LLVMValueRef *fwd_k = emit_kernels(c, u, u->infer_prog, 0, sp, part, train_k);
    if (part == 0) {
        char *train_name = malloc(strlen(u->net->name) + 16);
        char *fwd_name = malloc(strlen(u->net->name) + 16);
        sprintf(train_name, "%s_train_step", u->net->name);
        sprintf(fwd_name, "%s_forward", u->net->name);
        emit_entry(c, u, u->train_prog, train_name, 1, train_k);
        emit_entry(c, u, u->infer_prog, fwd_name, 0, fwd_k);
        emit_descriptor(c, u, LLVMGetNamedFunction(c->mod, train_name),
                        LLVMGetNamedFunction(c->mod, fwd_name));
        free(train_name);
        free(fwd_name);
        if (with_main)
            emit_main(c, u);
    }
    free(train_k);
    free(fwd_k);
    char *msg = NULL;
    if (LLVMVerifyModule(c->mod, LLVMReturnStatusAction, &msg)) {
        fprintf(stderr, "cnnc: internal error: invalid LLVM module: %s\n", msg);
        LLVMDisposeMessage(msg);
        return -1;
    }
    LLVMDisposeMessage(msg);
    /* -O1 and -O2 run a short pipeline of our own: the loop IR arrives
     * tiled, vectorized and unrolled, so what LLVM has to do is promote
     * the register tiles (sroa, repeated as other passes expose them),
     * clean up index arithmetic (early-cse, instcombine, gvn), hoist
     * invariant loads (licm), and vectorize and unroll the plain loops of
     * the element-wise kernels.  It compiles 2-3x faster than LLVM's
     * default<O2> and the code measured as fast (LeNet-5 and ResNet-8
     * train steps).  -O3 runs LLVM's full default<O3>. */
    static const char *const light =
        "function(sroa,early-cse,instcombine<no-verify-fixpoint>,simplifycfg,sroa,"
        "loop-mssa(licm),gvn,sroa,loop-simplify,lcssa,loop-rotate,loop-vectorize,%s"
        "instcombine<no-verify-fixpoint>,simplifycfg)";
    char passes[512];
    if (c->opt_level == 1 || c->opt_level == 2)
        snprintf(passes, sizeof passes, light, c->opt_level == 2 ? "loop-unroll<O2>," : "");
    else
        snprintf(passes, sizeof passes, "default<O%d>", c->opt_level);
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMErrorRef err = LLVMRunPasses(c->mod, passes, c->tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    if (err) {
        char *text = LLVMGetErrorMessage(err);
        fprintf(stderr, "cnnc: internal error: LLVM passes failed: %s\n", text);
        LLVMDisposeErrorMessage(text);
        return -1;
    }
    return 0;
}

static void cg_dispose(cg *c)
{
    emit_dispose(c);
    if (c->b)
        LLVMDisposeBuilder(c->b);
    if (c->mod)
        LLVMDisposeModule(c->mod);
    if (c->tm)
        LLVMDisposeTargetMachine(c->tm);
    if (c->ctx)
        LLVMContextDispose(c->ctx);
    free((char *)c->triple);
    free((char *)c->cpu);
}

/* ---- files ------------------------------------------------------------------ */

static int emit_machine_file(cg *c, const char *path, LLVMCodeGenFileType type)
{
    char *msg = NULL;
    if (LLVMTargetMachineEmitToFile(c->tm, c->mod, path, type, &msg)) {
        fprintf(stderr, "cnnc: error: cannot write %s: %s\n", path, msg);
        LLVMDisposeMessage(msg);
        return -1;
    }
    return 0;
}

static int run_argv(char *const argv[], int verbose)
{
    if (verbose) {
        for (int i = 0; argv[i]; i++)
            fprintf(stderr, "%s%s", i ? " " : "", argv[i]);
        fputc('\n', stderr);
    }
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "cnnc: error: cannot run %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "cnnc: error: %s failed (status %d)\n", argv[0],
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return -1;
    }
    return 0;
}

/* Run argv plus the words of $CNNC_LDFLAGS (extra link options, e.g.
 * sanitizer runtimes); 0 if it exits with status 0. */
static int run(char *const base[], int verbose)
{
    char *argv[64];
    int n = 0;
    while (base[n] && n < 32) {
        argv[n] = base[n];
        n++;
    }
    char *extra = getenv("CNNC_LDFLAGS") ? strdup(getenv("CNNC_LDFLAGS")) : NULL;
    for (char *save, *w = extra ? strtok_r(extra, " \t", &save) : NULL; w && n < 63;
         w = strtok_r(NULL, " \t", &save))
        argv[n++] = w;
    argv[n] = NULL;
    int rc = run_argv(argv, verbose);
    free(extra);
    return rc;
}

/* The e_machine of the first ELF object in the ar archive at path: 0 if
 * it has none, -1 if it cannot be read. */
static int archive_machine(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char magic[8], hdr[60], size_field[11] = {0};
    unsigned char elf[20];
    int machine = 0;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "!<arch>\n", 8) != 0) {
        fclose(f);
        return 0;
    }
    while (fread(hdr, 1, 60, f) == 60) {
        memcpy(size_field, hdr + 48, 10);
        long size = strtol(size_field, NULL, 10), start = ftell(f);
        if (size >= 20 && fread(elf, 1, 20, f) == 20 && memcmp(elf, "\177ELF", 4) == 0) {
            machine = elf[5] == 1 ? elf[18] | elf[19] << 8 : elf[18] << 8 | elf[19];
            break;
        }
        if (size < 0 || fseek(f, start + size + (size & 1), SEEK_SET) != 0)
            break;
    }
    fclose(f);
    return machine;
}

static const char *machine_name(int machine)
{
    return machine == 62 ? "x86-64" : machine == 183 ? "AArch64" : "another machine";
}

/* Where libcnnrt.a for this target is: --runtime-dir, $CNNC_RUNTIME_DIR,
 * the directory of the cnnc binary (a build tree), or ../lib/cnnc beside
 * it (an installation).  Builds for another target live in a subdirectory
 * named by its canonical triple (build/aarch64-linux-gnu/libcnnrt.a, what
 * `make TARGET=aarch64-linux-gnu` writes); a directory given by the user
 * may also hold the library itself.  A library built for another machine
 * is never taken: it would fail to link with a confusing message, or link
 * the host's runtime into a cross build. */
static int find_runtime(const cnnc_unit *u, char *out, size_t size)
{
    char exe[PATH_MAX];
    const char *dirs[4];
    char self[PATH_MAX], installed[PATH_MAX + 16];
    int n = 0;
    if (u->opt->runtime_dir)
        dirs[n++] = u->opt->runtime_dir;
    if (getenv("CNNC_RUNTIME_DIR"))
        dirs[n++] = getenv("CNNC_RUNTIME_DIR");
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(self, sizeof self, "%s", exe);
        snprintf(installed, sizeof installed, "%s/../lib/cnnc", exe);
        dirs[n++] = self;
        dirs[n++] = installed;
    }
    const char *name = target_name(u->opt->target);
    int host = target_is_host(u->opt->target), want = target_elf_machine(u->opt->target);
    char wrong[2 * PATH_MAX + 64] = "";
    for (int i = 0; i < n; i++)
        for (int sub = 0; sub < 2; sub++) { /* host: DIR first; cross: DIR/TRIPLE first */
            int w = sub == host ? snprintf(out, size, "%s/%s/libcnnrt.a", dirs[i], name)
                                : snprintf(out, size, "%s/libcnnrt.a", dirs[i]);
            if (w <= 0 || (size_t)w >= size || access(out, R_OK) != 0)
                continue;
            int machine = archive_machine(out);
            if (machine == want || machine <= 0)
                return 0;
            if (!wrong[0])
                snprintf(wrong, sizeof wrong, " (%s is built for %s)", out, machine_name(machine));
        }
    fprintf(stderr, "cnnc: error: no runtime library libcnnrt.a for %s%s; build it with `make%s%s` "
                    "or name its directory with --runtime-dir\n",
            name, wrong, host ? "" : " TARGET=", host ? "" : name);
    return -1;
}

/* Whether the program cc can be found on $PATH (or is a path that exists). */
static int on_path(const char *cc)
{
    if (strchr(cc, '/'))
        return access(cc, X_OK) == 0;
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, cc);
        if (n && access(buf, X_OK) == 0)
            return 1;
        p += n + (p[n] == ':');
    }
    return 0;
}

/* A shared library for this machine, linked by the system linker itself
 * with the options the C compiler's driver gives it (`cc -shared -v`),
 * less the start files, which a library without constructors does not
 * need: the driver's two extra processes were 25 of LeNet-5's 360 ms.
 * Not where $CNNC_LDFLAGS holds options for the driver, or there is no
 * `ld` (then -1, and link_output asks the driver). */
static int link_shared_ld(cnnc_unit *u, char **objs, int nobj, const char *path)
{
    if (getenv("CNNC_LDFLAGS") || !on_path("ld"))
        return -1;
    char *argv[MAX_PARTS + 16];
    int argc = 0;
    static char *const head[] = {"ld", "--build-id", "--eh-frame-hdr", "--hash-style=gnu",
                                 "--as-needed", "-shared", "-soname"};
    for (int i = 0; i < (int)(sizeof head / sizeof head[0]); i++)
        argv[argc++] = head[i];
    const char *base = strrchr(path, '/'); /* the soname: as link_output's */
    argv[argc++] = (char *)(base ? base + 1 : path);
    argv[argc++] = "-o";
    argv[argc++] = (char *)path;
    for (int i = 0; i < nobj; i++)
        argv[argc++] = objs[i];
    argv[argc++] = "-lm"; /* no -lc: its symbols bind when the library loads (a 15 ms scan) */
    argv[argc] = NULL;
    return run_argv(argv, u->opt->verbose);
}

/* Link the objects into a shared library or, with exe, a training program.
 * A training program for another machine is linked statically: one file
 * that runs on any Linux of that architecture, whatever C library the
 * board has (or none of jansson and zlib), and under qemu without a
 * sysroot. */
static int link_output(cnnc_unit *u, char **objs, int nobj, const char *path, int exe)
{
    const char *cc = target_linker(u->opt->target);
    int host = target_is_host(u->opt->target);
    if (!exe && host && link_shared_ld(u, objs, nobj, path) == 0)
        return 0;
    if (!host && !on_path(cc)) {
        fprintf(stderr, "cnnc: error: cannot link for %s: %s is not installed (`make "
                        "deps-cross` installs it); --emit obj needs no linker\n",
                target_name(u->opt->target), cc);
        return -1;
    }
    char *argv[MAX_PARTS + 16];
    int argc = 0;
    char soname[PATH_MAX + 16], rt[2 * PATH_MAX];
    argv[argc++] = (char *)cc;
    if (!exe) {
        /* The soname is the file's base name, so programs linked against it
         * find it by name (rpath, LD_LIBRARY_PATH), not by the build path. */
        const char *base = strrchr(path, '/');
        snprintf(soname, sizeof soname, "-Wl,-soname,%s", base ? base + 1 : path);
        argv[argc++] = "-shared";
        argv[argc++] = soname;
    } else if (find_runtime(u, rt, sizeof rt) != 0) {
        return -1;
    } else if (!host) {
        argv[argc++] = "-static";
    }
    argv[argc++] = "-o";
    argv[argc++] = (char *)path;
    for (int i = 0; i < nobj; i++)
        argv[argc++] = objs[i];
    if (exe) {
        static char *const libs[] = {"-ljansson", "-lz", "-lpthread", "-ldl"};
        argv[argc++] = rt;
        for (int i = 0; i < 4; i++)
            argv[argc++] = libs[i];
    }
    argv[argc++] = "-lm";
    argv[argc] = NULL;
    return run(argv, u->opt->verbose);
}

/* path with its extension replaced by ext (".h"). */
static char *replace_ext(const char *path, const char *ext)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
    char *out = malloc(stem + strlen(ext) + 1);
    memcpy(out, path, stem);
    strcpy(out + stem, ext);
    return out;
}

static int write_header(const cnnc_unit *u, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cnnc: error: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    header_write(f, u);
    if (fclose(f) != 0) {
        fprintf(stderr, "cnnc: error: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* One part of a split build: its module, optimized and written to obj. */
typedef struct part_job {
    cnnc_unit *u;
    const split *sp;
    int part, with_main;
    char obj[32];
    int rc;
    double ir_s, mc_s; /* seconds building + optimizing the module, and emitting code */
} part_job;

static void *build_part(void *arg)
{
    part_job *j = arg;
    cg c = {0};
    double t0 = cnnc_seconds();
    j->rc = build_module(&c, j->u, j->with_main, j->sp, j->part);
    double t1 = cnnc_seconds();
    if (j->rc == 0)
        j->rc = emit_machine_file(&c, j->obj, LLVMObjectFile);
    j->ir_s = t1 - t0;
    j->mc_s = cnnc_seconds() - t1;
    cg_dispose(&c);
    return NULL;
}

/* Modules per thread: more modules than threads, handed out one at a time
 * to whichever thread is free, balance what the size estimate of
 * plan_split gets wrong (LeNet-5 in two modules: one took 0.83 s, the
 * other 0.45 s).  Measured on 2 threads, 2 per thread: LeNet-5 0.71 ->
 * 0.65 s, ResNet-8 1.95 -> 1.88 s; 3 per thread: ResNet-8 2.1 s (each
 * module has its own setup). */
#define PARTS_PER_THREAD 2

/* Threads to build a unit's modules on: one per CPU, at most MAX_PARTS /
 * PARTS_PER_THREAD; one for small networks. */
static int threads_for(const cnnc_unit *u)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int kernels = u->train_prog->nkernels + u->infer_prog->nkernels;
    int most = MAX_PARTS / PARTS_PER_THREAD;
    int threads = cpus < 1 ? 1 : cpus > most ? most : (int)cpus;
    return kernels < 16 ? 1 : threads;
}

/* The modules still to build, taken in order by the threads. */
typedef struct part_queue {
    part_job *jobs;
    int parts;
    atomic_int next;
} part_queue;

static void *build_parts(void *arg)
{
    part_queue *q = arg;
    for (int i; (i = atomic_fetch_add(&q->next, 1)) < q->parts;)
        build_part(&q->jobs[i]);
    return NULL;
}

static int emit_linked(cnnc_unit *u, const char *path, int exe)
{
    split sp;
    int nthreads = threads_for(u);
    plan_split(u, nthreads > 1 ? nthreads * PARTS_PER_THREAD : 1, &sp);
    part_job jobs[MAX_PARTS];
    pthread_t threads[MAX_PARTS];
    int started[MAX_PARTS] = {0}, rc = 0;
    char *objs[MAX_PARTS];
    for (int i = 0; i < sp.parts; i++) {
        jobs[i] = (part_job){u, &sp, i, exe, "/tmp/cnnc-XXXXXX.o", -1, 0, 0};
        int fd = mkstemps(jobs[i].obj, 2);
        if (fd < 0) {
            fprintf(stderr, "cnnc: error: cannot create a temporary file: %s\n", strerror(errno));
            for (int k = 0; k < i; k++)
                unlink(jobs[k].obj);
            split_free(&sp);
            return -1;
        }
        close(fd);
        objs[i] = jobs[i].obj;
    }
    target_init();
    double t0 = cnnc_seconds();
    part_queue queue = {jobs, sp.parts, 0};
    for (int i = 1; i < nthreads; i++) /* a thread that cannot start leaves its share */
        started[i] = pthread_create(&threads[i], NULL, build_parts, &queue) == 0;
    build_parts(&queue);
    for (int i = 1; i < nthreads; i++)
        if (started[i])
            pthread_join(threads[i], NULL);
    for (int i = 0; i < sp.parts; i++)
        if (jobs[i].rc != 0)
            rc = -1;
    double t1 = cnnc_seconds();
    if (u->opt->verbose) {
        fprintf(stderr, "cnnc: LLVM: %d module%s on %d thread%s: %.3f s\n", sp.parts,
                sp.parts > 1 ? "s" : "", nthreads, nthreads > 1 ? "s" : "", t1 - t0);
        fprintf(stderr, "cnnc: forward pass: %d of its %d kernels are the train step's\n", u->nsame,
                u->infer_prog->nkernels);
    }
    int64_t chunk = forward_chunk(u);
    if (u->opt->verbose && chunk < u->net->batch)
        fprintf(stderr, "cnnc: forward pass in chunks of %" PRId64 " examples (of %d)\n", chunk,
                u->net->batch);
    for (int i = 0; u->opt->verbose && i < sp.parts; i++)
        fprintf(stderr, "cnnc:   module %d: IR and passes %.3f s, machine code %.3f s\n", i,
                jobs[i].ir_s, jobs[i].mc_s);
    if (rc == 0)
        rc = link_output(u, objs, sp.parts, path, exe);
    if (u->opt->verbose)
        fprintf(stderr, "cnnc: link: %.3f s\n", cnnc_seconds() - t1);
    for (int i = 0; i < sp.parts; i++)
        unlink(jobs[i].obj);
    split_free(&sp);
    if (rc == 0 && !exe) {
        char *h = replace_ext(path, ".h");
        rc = write_header(u, h);
        free(h);
    }
    return rc;
}

int cnnc_emit(cnnc_unit *u, emit_kind emit, const char *path)
{
    if (emit == EMIT_HEADER)
        return write_header(u, path);
    if (emit == EMIT_SO || emit == EMIT_EXE)
        return emit_linked(u, path, emit == EMIT_EXE);
    cg c = {0};
    split one;
    plan_split(u, 1, &one);
    int rc = build_module(&c, u, 0, &one, 0);
    split_free(&one);
    if (rc == 0) {
        switch (emit) {
        case EMIT_LLVM: {
            char *msg = NULL;
            if (LLVMPrintModuleToFile(c.mod, path, &msg)) {
                fprintf(stderr, "cnnc: error: cannot write %s: %s\n", path, msg);
                rc = -1;
            }
            LLVMDisposeMessage(msg);
            break;
        }
        case EMIT_ASM:
            rc = emit_machine_file(&c, path, LLVMAssemblyFile);
            break;
        case EMIT_OBJ:
            rc = emit_machine_file(&c, path, LLVMObjectFile);
            break;
        default:
            rc = -1;
            break;
        }
    }
    cg_dispose(&c);
    return rc;
}
