/*
 * codegen.h — what the LLVM-facing files share (private to the compiler):
 * the module under construction, the types of the model ABI as LLVM sees
 * them, and the entry points of llvm_emit.c (loop IR → LLVM functions) and
 * target.c (target machines).
 */
#ifndef CNNC_CODEGEN_H
#define CNNC_CODEGEN_H

#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>

#include "cnnc.h"

typedef struct cg {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    LLVMTargetMachineRef tm;
    LLVMTypeRef i1, i8, i32, i64, f32, f64, ptr, void_t;
    /* The frame every kernel receives: where its buffers are. */
    LLVMTypeRef frame;       /* { params, grads, arena, x, labels, out, i64 n, seed, step } */
    LLVMTypeRef kernel_fn;   /* void (ptr frame) */
    LLVMTypeRef ctx_t;       /* struct cnn_ctx (public part) */
    const char *triple;
    const char *cpu;
    int opt_level;
    struct vn_table *vn;     /* llvm_emit.c's value numbering, for every kernel */
} cg;

/* Fields of the frame struct. */
enum { FR_PARAMS, FR_GRADS, FR_ARENA, FR_X, FR_LABELS, FR_OUT, FR_N, FR_SEED, FR_STEP,
       FR_POOL, FR_PARFOR, FR_COUNT };
/* Fields of struct cnn_ctx that generated code reads. */
enum { CTX_ABI, CTX_RESERVED, CTX_MODEL, CTX_PARAMS, CTX_GRADS, CTX_ARENA, CTX_POOL,
       CTX_PARALLEL_FOR, CTX_SEED, CTX_STEP, CTX_COUNT };

/* llvm_emit.c: one function `void name(ptr frame)` computing k; internal,
 * or with exported set external and hidden (called from another module of
 * the same library). */
LLVMValueRef emit_kernel(cg *c, const lprogram *p, const lkernel *k, const char *name,
                         int exported);
/* What emit_kernel keeps between kernels, freed. */
void emit_dispose(cg *c);

/* target.c: a target machine for triple/cpu (NULL = host); the data layout
 * and triple are set on c->mod.  Reports a clear error and returns -1 for
 * an unknown target or CPU. */
int target_setup(cg *c, const char *triple, const char *cpu, int opt_level);
/* Register LLVM's targets (once; before building modules on threads). */
void target_init(void);
/* The C compiler driver that links for the target ("cc", "aarch64-linux-gnu-gcc"). */
const char *target_linker(const char *triple);
/* Whether triple (NULL: yes) is the architecture cnnc runs on. */
int target_is_host(const char *triple);
/* The ELF e_machine of the target's objects (62 x86-64, 183 AArch64), 0 if unknown. */
int target_elf_machine(const char *triple);

#endif
