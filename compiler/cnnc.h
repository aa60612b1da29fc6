/*
 * cnnc.h — the compiler's passes and driver interface.
 *
 *   .cnn ──dsl_parse──▶ AST ──sema_network──▶ network
 *        ──graph_build──▶ graph IR ──graph_autodiff──▶ train graph
 *        ──memplan──▶ arena offsets ──lower_graph──▶ loop IR
 *        ──codegen──▶ LLVM module ──target machine──▶ object ──cc──▶ .so / exe
 *
 * cnnc_unit carries one compilation through these stages; cnnc_frontend
 * runs everything up to the loop IR, cnnc_emit writes what --emit asks
 * for.  Tests use the same calls as the driver (compiler/main.c).
 */
#ifndef CNNC_H
#define CNNC_H

#include "graph.h"
#include "loop.h"
#include "options.h"

#define CNNC_VERSION "0.1.0"

/* target.c: what the tiling decisions need to know about a target. */
typedef struct target_desc {
    const char *arch;   /* "x86_64", "aarch64" */
    int vector_bits;    /* widest float vector: 512 (AVX-512), 256 (AVX2), 128 (SSE, NEON) */
    int lanes;          /* floats per vector: vector_bits / 32 */
    int registers;      /* vector registers: 32 (AVX-512, NEON), 16 (AVX2, SSE) */
    int fma;            /* fused multiply-add in hardware */
    int l1_bytes;       /* data cache per core */
    int l2_bytes;
} target_desc;

/* Describe triple/cpu (NULL: the host and its CPU); -1 with a message on
 * stderr for a target or CPU cnnc does not know. */
int target_describe(const char *triple, const char *cpu, target_desc *t);

/* 0 if cnnc knows triple (NULL: the host) and cpu (NULL: the default; on
 * the host also "native"); else -1, after printing to err an error that
 * lists the supported triples or CPUs. */
int target_check(const char *triple, const char *cpu, FILE *err);

/* The canonical spelling of a known triple ("aarch64-unknown-linux-gnu" ->
 * "aarch64-linux-gnu"; NULL -> the host's): the name of the target's
 * runtime directory.  Unknown triples are returned as given. */
const char *target_name(const char *triple);

/* sema.c */
network *sema_network(const ast_file *f, arena *a, diag *d);
void network_free(network *net);
extern const call_spec sema_initializers[];

/* memplan.c: give every arena value of g a 64-byte aligned offset.  With
 * reuse, values whose lifetimes do not overlap share memory; without, every
 * value gets its own.  Returns the arena size in bytes; with stats, also
 * the sum of all buffers and the most bytes alive at once (no plan can use
 * less).  With `like` (and reuse), values named as one of like's take its
 * offset where they can, so that kernels of both graphs match. */
typedef struct plan_stats {
    int64_t arena, buffers, peak_live;
    int values;
    int like;      /* placed like another graph's values (see memplan.c) */
} plan_stats;
int64_t memplan(ir_graph *g, int reuse, const ir_graph *like, plan_stats *stats);
/* The layer table of cnnc --summary: the layers (the train graph before
 * rewrites), then FLOPs, kernels and what memory planning achieved. */
void graph_summary(FILE *out, const ir_graph *layers, const ir_graph *train,
                   const plan_stats *train_plan, const plan_stats *infer_plan);

typedef enum emit_kind {
    EMIT_SO,      /* shared library + header (default) */
    EMIT_OBJ,     /* object file */
    EMIT_LLVM,    /* LLVM IR text */
    EMIT_ASM,     /* assembly */
    EMIT_HEADER,  /* the C header only */
    EMIT_EXE,     /* training executable */
    EMIT_IR,      /* graph IR text */
    EMIT_DOT,     /* graph IR as Graphviz */
    EMIT_LOOPS,   /* loop IR text */
    EMIT_JSON,    /* the network as JSON, for other tools */
    EMIT_SUMMARY, /* layer table */
} emit_kind;

typedef struct cnnc_options {
    const char *input;       /* .cnn path */
    const char *output;      /* NULL: derived from input */
    emit_kind emit;
    int opt_level;           /* 0..3 */
    const char *target;      /* LLVM triple, NULL = host */
    const char *cpu;         /* NULL = host CPU (or generic for cross targets) */
    int batch;               /* > 0 overrides the train block */
    int forward_chunk;       /* > 0: examples per pass of the forward entry; 0: by the
                              * rule of codegen.c's forward_chunk (none at -O0) */
    int keep_pads;           /* no graph_absorb_pads (benchmarks that subtract networks) */
    const char *runtime_dir; /* where libcnnrt.a lives, NULL = next to cnnc */
    int verbose;
} cnnc_options;

typedef struct cnnc_unit {
    arena a;
    diag d;
    const cnnc_options *opt;
    src_file *src;
    ast_file *ast;
    network *net;
    ir_graph *train;         /* forward + loss + backward */
    ir_graph *infer;         /* forward in evaluation mode */
    lprogram *train_prog;
    lprogram *infer_prog;
    int *same_as_train;      /* forward kernel -> the train kernel with the same
                              * code (compiled once, called by both), or -1 */
    int nsame;               /* how many forward kernels have one */
    int64_t train_arena;     /* bytes the train step needs */
    int64_t infer_arena;     /* bytes the forward pass needs */
    int64_t arena_bytes;     /* max of the two: one arena serves both */
    plan_stats train_plan, infer_plan;
    ir_graph *layers;        /* --summary: the forward graph before the rewrites */
    target_desc target;
    char *network_json;      /* --emit json: the network before the tiling rewrite */
} cnnc_unit;

/* Parse and check the source (text, or the file opt->input when text is
 * NULL), build and differentiate the graphs, plan memory, lower to loops.
 * Errors are printed to diag_out; returns 0 or -1. */
int cnnc_frontend(cnnc_unit *u, const cnnc_options *opt, const char *text, FILE *diag_out);
void cnnc_unit_free(cnnc_unit *u);
/* Monotonic clock in seconds (for cnnc -v timings). */
double cnnc_seconds(void);

/* codegen.c: write what opt->emit asks for to path; 0 or -1 (message printed). */
int cnnc_emit(cnnc_unit *u, emit_kind emit, const char *path);

/* header.c: the C header of the generated entry points. */
void header_write(FILE *out, const cnnc_unit *u);

#endif
