/*
 * target.c — the machines cnnc compiles for, described in one table.
 *
 * Each architecture (x86-64, AArch64) has a canonical triple, the C
 * compiler driver that links for it, its ELF machine number (to recognize
 * a runtime library built for something else) and a list of CPUs, each with
 * what the tiling decisions read (schedule.c, pack.c): the widest float
 * vector, the number of vector registers, whether there is a fused
 * multiply-add, and the data cache sizes.  Supporting a new CPU is a row;
 * a new architecture is a table and an entry in `arches`.
 *
 * The host is the default: LLVM's view of this CPU (its name and feature
 * string), so the generated code uses every vector extension the machine
 * has, with the vector width read from the features and the cache sizes
 * from the C library.  A named CPU (--cpu) or another triple (--target)
 * gets that CPU's row and no feature string beyond it, so the code runs on
 * any machine of that kind: `--cpu x86-64` is plain SSE2 without FMA,
 * `--target aarch64-linux-gnu` a generic ARMv8-A (NEON, FMA).  Code is
 * position-independent: the same object serves a shared library and a PIE
 * executable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>

#include "codegen.h"
#include <llvm-c/Support.h>

typedef struct cpu_row {
    const char *name;   /* LLVM's CPU name */
    int vector_bits;    /* widest float vector the tiles use */
    int registers;      /* vector registers */
    int fma;            /* fused multiply-add */
    int l1_kib, l2_kib; /* data cache per core */
} cpu_row;

typedef struct arch_row {
    const char *arch;    /* first word of the triple */
    const char *alias;   /* another spelling of it, or NULL */
    const char *triple;  /* canonical triple: runtime directories, messages */
    const char *linker;  /* C compiler driver that links for it */
    int elf_machine;     /* e_machine of its objects */
    const cpu_row *cpus; /* the first row is the default for cross builds */
    int ncpus;
} arch_row;

/* x86-64 levels first (portable binaries), then CPUs by generation.  The
 * AVX-512 rows are used at 512 bits: target_setup turns off the tuning that
 * makes some of them prefer 256-bit vectors. */
static const cpu_row x86_cpus[] = {
    {"x86-64", 128, 16, 0, 32, 512},          {"x86-64-v2", 128, 16, 0, 32, 512},
    {"x86-64-v3", 256, 16, 1, 32, 1024},      {"x86-64-v4", 512, 32, 1, 48, 1024},
    {"haswell", 256, 16, 1, 32, 256},         {"skylake", 256, 16, 1, 32, 256},
    {"skylake-avx512", 512, 32, 1, 32, 1024}, {"icelake-server", 512, 32, 1, 48, 1280},
    {"sapphirerapids", 512, 32, 1, 48, 2048}, {"znver3", 256, 16, 1, 32, 512},
    {"znver4", 512, 32, 1, 32, 1024},         {"znver5", 512, 32, 1, 48, 1024},
};

/* Every AArch64 CPU has NEON (128-bit, 32 registers) and FMA; the tiles
 * use NEON even where SVE is wider. */
static const cpu_row aarch64_cpus[] = {
    {"generic", 128, 32, 1, 32, 512},      {"cortex-a53", 128, 32, 1, 32, 512},
    {"cortex-a72", 128, 32, 1, 32, 1024},  {"cortex-a76", 128, 32, 1, 64, 512},
    {"neoverse-n1", 128, 32, 1, 64, 1024}, {"neoverse-v1", 128, 32, 1, 64, 1024},
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const arch_row arches[] = {
    {"x86_64", "amd64", "x86_64-linux-gnu", "cc", 62, x86_cpus, COUNT(x86_cpus)},
    {"aarch64", "arm64", "aarch64-linux-gnu", "aarch64-linux-gnu-gcc", 183, aarch64_cpus,
     COUNT(aarch64_cpus)},
};

/* $CNNC_LLVM_OPTIONS: LLVM's own command-line options, for looking into
 * the code generator (clang's -mllvm): "-time-passes", "-print-after=...". */
static void llvm_options(void)
{
    const char *env = getenv("CNNC_LLVM_OPTIONS");
    if (!env || !*env)
        return;
    char *copy = strdup(env), *save = NULL;
    const char *argv[64] = {"cnnc"};
    int argc = 1;
    for (char *w = strtok_r(copy, " \t", &save); w && argc < 63; w = strtok_r(NULL, " \t", &save))
        argv[argc++] = w;
    LLVMParseCommandLineOptions(argc, argv, NULL);
    free(copy);              /* LLVM copies what it keeps */
    atexit(LLVMShutdown);    /* prints the code generator's -time-passes report */
}

/* The two targets cnnc knows (target_describe), not all of LLVM's: cnnc
 * links only their static libraries (Makefile, LLVM_COMPONENTS). */
static void init_once(void)
{
    LLVMInitializeX86TargetInfo();
    LLVMInitializeX86Target();
    LLVMInitializeX86TargetMC();
    LLVMInitializeX86AsmPrinter();
    LLVMInitializeAArch64TargetInfo();
    LLVMInitializeAArch64Target();
    LLVMInitializeAArch64TargetMC();
    LLVMInitializeAArch64AsmPrinter();
    llvm_options();
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

/* The row of the architecture that a normalized triple names, or NULL:
 * ARCH-VENDOR-linux-gnu, any vendor. */
static const arch_row *arch_of_normalized(const char *norm)
{
    size_t len = strcspn(norm, "-");
    const char *os = strstr(norm, "-linux");
    if (!os || strcmp(norm + strlen(norm) - 4, "-gnu") != 0)
        return NULL;
    for (int i = 0; i < COUNT(arches); i++) {
        const arch_row *a = &arches[i];
        if ((strlen(a->arch) == len && strncmp(norm, a->arch, len) == 0) ||
            (a->alias && strlen(a->alias) == len && strncmp(norm, a->alias, len) == 0))
            return a;
    }
    return NULL;
}

static const arch_row *host_arch(void)
{
    char *host = LLVMGetDefaultTargetTriple();
    const arch_row *a = arch_of_normalized(host);
    LLVMDisposeMessage(host);
    return a;
}

/* The row of triple's architecture (NULL: the host's), or NULL. */
static const arch_row *arch_of(const char *triple)
{
    if (!triple)
        return host_arch();
    char *norm = LLVMNormalizeTargetTriple(triple);
    const arch_row *a = arch_of_normalized(norm);
    LLVMDisposeMessage(norm);
    return a;
}

int target_is_host(const char *triple)
{
    if (!triple)
        return 1;
    const arch_row *a = arch_of(triple);
    return a && a == host_arch();
}

const char *target_name(const char *triple)
{
    const arch_row *a = arch_of(triple);
    return a ? a->triple : triple;
}

const char *target_linker(const char *triple)
{
    const arch_row *a = arch_of(triple);
    if (!a || target_is_host(triple))
        return "cc";
    return a->linker;
}

int target_elf_machine(const char *triple)
{
    const arch_row *a = arch_of(triple);
    return a ? a->elf_machine : 0;
}

static const cpu_row *find_cpu(const arch_row *a, const char *cpu)
{
    for (int i = 0; i < a->ncpus; i++)
        if (strcmp(a->cpus[i].name, cpu) == 0)
            return &a->cpus[i];
    return NULL;
}

/* Whether the build uses this machine's own CPU (no --cpu, or --cpu native,
 * on the host). */
static int uses_host_cpu(const char *triple, const char *cpu)
{
    return target_is_host(triple) && (!cpu || strcmp(cpu, "native") == 0);
}

int target_check(const char *triple, const char *cpu, FILE *err)
{
    const arch_row *a = arch_of(triple);
    if (!a) {
        fprintf(err, "cnnc: error: unknown target '%s'; supported:", triple ? triple : "(host)");
        for (int i = 0; i < COUNT(arches); i++)
            fprintf(err, "%s %s", i ? "," : "", arches[i].triple);
        fputc('\n', err);
        return -1;
    }
    if (!cpu || uses_host_cpu(triple, cpu) || find_cpu(a, cpu))
        return 0;
    fprintf(err, "cnnc: error: unknown CPU '%s' for %s; supported:", cpu, a->triple);
    for (int i = 0; i < a->ncpus; i++)
        fprintf(err, "%s %s", i ? "," : "", a->cpus[i].name);
    if (a == host_arch())
        fprintf(err, ", native");
    fputc('\n', err);
    return -1;
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

/* This machine: vectors from LLVM's features, caches from the C library. */
static void describe_host(const arch_row *a, target_desc *t)
{
    const cpu_row *base = &a->cpus[0];
    t->vector_bits = base->vector_bits;
    t->registers = base->registers;
    t->fma = base->fma;
    t->l1_bytes = base->l1_kib * 1024;
    t->l2_bytes = base->l2_kib * 1024;
    if (strcmp(a->arch, "x86_64") == 0) {
        char *features = LLVMGetHostCPUFeatures();
        t->vector_bits = has_feature(features, "avx512f") ? 512
                         : has_feature(features, "avx2")  ? 256
                                                          : 128;
        t->fma = has_feature(features, "fma");
        t->registers = t->vector_bits == 512 ? 32 : 16;
        LLVMDisposeMessage(features);
    }
#ifdef _SC_LEVEL1_DCACHE_SIZE
    long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l1 > 0)
        t->l1_bytes = (int)l1;
    if (l2 > 0)
        t->l2_bytes = (int)l2;
#endif
}

int target_describe(const char *triple, const char *cpu, target_desc *t)
{
    memset(t, 0, sizeof *t);
    if (target_check(triple, cpu, stderr) != 0)
        return -1;
    const arch_row *a = arch_of(triple);
    t->arch = a->arch;
    if (uses_host_cpu(triple, cpu)) {
        describe_host(a, t);
    } else {
        const cpu_row *r = find_cpu(a, cpu ? cpu : a->cpus[0].name);
        t->vector_bits = r->vector_bits;
        t->registers = r->registers;
        t->fma = r->fma;
        t->l1_bytes = r->l1_kib * 1024;
        t->l2_bytes = r->l2_kib * 1024;
    }
    t->lanes = t->vector_bits / 32;
    return 0;
}

int target_setup(cg *c, const char *triple, const char *cpu, int opt_level)
{
    init_llvm_targets();
    target_desc desc;
    if (target_describe(triple, cpu, &desc) != 0)
        return -1;
    int host = uses_host_cpu(triple, cpu);
    const arch_row *a = arch_of(triple);
    char *t = target_is_host(triple) ? LLVMGetDefaultTargetTriple()
                                     : LLVMNormalizeTargetTriple(a->triple);
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(t, &target, &err)) {
        fprintf(stderr, "cnnc: error: LLVM has no back end for '%s': %s\n", t, err);
        LLVMDisposeMessage(err);
        LLVMDisposeMessage(t);
        return -1;
    }
    char *host_cpu = host ? LLVMGetHostCPUName() : NULL;
    char *host_features = host ? LLVMGetHostCPUFeatures() : NULL;
    const char *use_cpu = host ? host_cpu : cpu ? cpu : a->cpus[0].name;
    /* AVX-512 CPUs that LLVM tunes for 256-bit vectors would split the
     * tiles' 16-float vectors in two. */
    size_t size = (host_features ? strlen(host_features) : 0) + 32;
    char *features = malloc(size);
    snprintf(features, size, "%s%s%s", host_features ? host_features : "",
             host_features && *host_features ? "," : "",
             strcmp(desc.arch, "x86_64") == 0 && desc.vector_bits == 512 ? "-prefer-256-bit" : "");
    LLVMCodeGenOptLevel level = opt_level >= 3   ? LLVMCodeGenLevelAggressive
                                : opt_level >= 1 ? LLVMCodeGenLevelDefault
                                                 : LLVMCodeGenLevelNone;
    c->tm = LLVMCreateTargetMachine(target, t, use_cpu, features, level, LLVMRelocPIC,
                                    LLVMCodeModelDefault);
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
    if (host_features)
        LLVMDisposeMessage(host_features);
    free(features);
    return 0;
}
