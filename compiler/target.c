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

#include <pthread.h>

#include "codegen.h"

static void init_once(void)
{
    LLVMInitializeAllTargetInfos();
    LLVMInitializeAllTargets();
    LLVMInitializeAllTargetMCs();
    LLVMInitializeAllAsmPrinters();
}

/* Once per process, whichever thread gets here first (codegen.c builds
 * modules on several threads). */
static void init_llvm_targets(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_once);
}

void target_init(void)
{
    init_llvm_targets();
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

/* Whether LLVM's feature string has +feature. */
static int has_feature(const char *features, const char *feature)
{
    size_t n = strlen(feature);
    for (const char *p = features; (p = strstr(p, feature)); p += n)
        if (p > features && p[-1] == '+' && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

/* x86 levels and CPUs by their widest vectors. */
static const struct {
    const char *cpu;
    int bits;
    int fma;
} x86_cpus[] = {
    {"x86-64", 128, 0},         {"x86-64-v2", 128, 0},      {"x86-64-v3", 256, 1},
    {"x86-64-v4", 512, 1},      {"haswell", 256, 1},        {"skylake", 256, 1},
    {"skylake-avx512", 512, 1}, {"icelake-server", 512, 1}, {"sapphirerapids", 512, 1},
    {"znver3", 256, 1},         {"znver4", 512, 1},         {"znver5", 512, 1},
};

int target_describe(const char *triple, const char *cpu, target_desc *t)
{
    memset(t, 0, sizeof *t);
    t->l1_bytes = 32 * 1024;
    t->l2_bytes = 1024 * 1024;
    if (triple && strncmp(triple, "aarch64", 7) == 0) {
        t->arch = "aarch64";
        t->vector_bits = 128;
        t->registers = 32;
        t->fma = 1;
    } else if (!triple || target_is_host(triple) || strncmp(triple, "x86_64", 6) == 0) {
        t->arch = "x86_64";
        if (!cpu && target_is_host(triple)) {
            char *features = LLVMGetHostCPUFeatures();
            t->vector_bits = has_feature(features, "avx512f") ? 512
                             : has_feature(features, "avx2") ? 256 : 128;
            t->fma = has_feature(features, "fma");
            LLVMDisposeMessage(features);
        } else {
            const char *name = cpu ? cpu : "x86-64";
            for (size_t i = 0; i < sizeof x86_cpus / sizeof x86_cpus[0]; i++)
                if (strcmp(x86_cpus[i].cpu, name) == 0) {
                    t->vector_bits = x86_cpus[i].bits;
                    t->fma = x86_cpus[i].fma;
                }
            if (!t->vector_bits)
                t->vector_bits = 128; /* a CPU LLVM knows but this table does not */
        }
        t->registers = t->vector_bits == 512 ? 32 : 16;
    } else {
        fprintf(stderr, "cnnc: error: unknown target '%s'; supported: x86_64-linux-gnu, "
                        "aarch64-linux-gnu\n", triple);
        return -1;
    }
    t->lanes = t->vector_bits / 32;
    return 0;
}
