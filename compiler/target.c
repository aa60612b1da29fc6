/*
 * target.c — target machines: the host by default, or a named triple.
 *
 * The host gets LLVM's view of this CPU (name and feature string), so the
 * generated code uses every vector extension the machine has.  A named
 * triple gets the CPU named by --cpu, or "generic".  The triple and data
 * layout are set on the module so that LLVM's optimizer knows pointer
 * sizes and alignments.  Code is position-independent: the same object
 * serves a shared library and a PIE executable.
 */
#include <stdio.h>
#include <string.h>

#include "codegen.h"

static void init_llvm_targets(void)
{
    static int done;
    if (done)
        return;
    LLVMInitializeAllTargetInfos();
    LLVMInitializeAllTargets();
    LLVMInitializeAllTargetMCs();
    LLVMInitializeAllAsmPrinters();
    done = 1;
}

int target_is_host(const char *triple)
{
    if (!triple)
        return 1;
    char *host = LLVMGetDefaultTargetTriple();
    char *norm = LLVMNormalizeTargetTriple(triple);
    /* x86_64-linux-gnu and x86_64-pc-linux-gnu are the same machine. */
    int same = strncmp(host, norm, strcspn(host, "-")) == 0 &&
               strstr(norm, "linux") && strstr(host, "linux");
    LLVMDisposeMessage(host);
    LLVMDisposeMessage(norm);
    return same;
}

const char *target_linker(const char *triple)
{
    if (!triple || target_is_host(triple))
        return "cc";
    if (strncmp(triple, "aarch64", 7) == 0)
        return "aarch64-linux-gnu-gcc";
    return "cc";
}

int target_setup(cg *c, const char *triple, const char *cpu, int opt_level)
{
    init_llvm_targets();
    int host = target_is_host(triple);
    char *t = host ? LLVMGetDefaultTargetTriple() : LLVMNormalizeTargetTriple(triple);
    char *host_cpu = host && !cpu ? LLVMGetHostCPUName() : NULL;
    char *features = host && !cpu ? LLVMGetHostCPUFeatures() : NULL;
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(t, &target, &err)) {
        fprintf(stderr, "cnnc: error: unknown target '%s' (%s); supported: x86_64-linux-gnu, "
                        "aarch64-linux-gnu\n", triple ? triple : t, err);
        LLVMDisposeMessage(err);
        LLVMDisposeMessage(t);
        return -1;
    }
    const char *use_cpu = host_cpu ? host_cpu : cpu ? cpu : "generic";
    LLVMCodeGenOptLevel level = opt_level >= 3   ? LLVMCodeGenLevelAggressive
                                : opt_level >= 1 ? LLVMCodeGenLevelDefault
                                                 : LLVMCodeGenLevelNone;
    c->tm = LLVMCreateTargetMachine(target, t, use_cpu, features ? features : "", level,
                                    LLVMRelocPIC, LLVMCodeModelDefault);
    c->triple = strdup(t);
    c->cpu = strdup(use_cpu);
    LLVMSetTarget(c->mod, t);
    LLVMTargetDataRef layout = LLVMCreateTargetDataLayout(c->tm);
    char *layout_str = LLVMCopyStringRepOfTargetData(layout);
    LLVMSetDataLayout(c->mod, layout_str);
    LLVMDisposeMessage(layout_str);
    LLVMDisposeTargetData(layout);
    LLVMDisposeMessage(t);
    if (host_cpu)
        LLVMDisposeMessage(host_cpu);
    if (features)
        LLVMDisposeMessage(features);
    return 0;
}
