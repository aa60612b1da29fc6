/*
 * cnn_model.h — the model ABI: the one header shared by code that cnnc
 * generates and by the runtime library (libcnnrt).
 *
 * A compiled network (a .so, an object file or a training executable)
 * exports one descriptor, `cnn_model`, of type cnn_model_desc.  Everything
 * the runtime knows about a network comes from it: its shapes, its
 * parameter table (names, PyTorch-layout shapes, offsets into the flat
 * parameter array, initializers), the size of the scratch arena, the
 * training recipe written in the .cnn file (as JSON text), and the two entry
 * points.  The compiler never links the runtime and the runtime never
 * includes a compiler header; this file is the whole contract between them.
 *
 * Memory model.  Parameters live in one flat float array (`params`), their
 * gradients in a second array of the same layout (`grads`), and every
 * intermediate tensor of a train step or forward pass in one arena of
 * `arena_bytes` bytes, 64-byte aligned.  The caller (normally the runtime)
 * owns all three and hands them to the generated code through cnn_ctx.
 * Tensors in `params` are always in PyTorch's canonical layout: conv weight
 * [out, in/groups, kh, kw], dense weight [out, in], flatten in C,H,W order.
 *
 * Versioning.  CNN_ABI_VERSION changes whenever the layout of cnn_ctx,
 * cnn_model_desc or cnn_param_desc changes.  The runtime refuses a model
 * whose abi_version it does not know (cnn_model_check).  The generated code
 * reads cnn_ctx fields by position, so fields are only ever appended, and
 * the runtime may keep private state after the public part.
 */
#ifndef CNN_MODEL_H
#define CNN_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CNN_ABI_VERSION 1

/* Name of the exported descriptor symbol, for dlsym(). */
#define CNN_MODEL_SYMBOL "cnn_model"

/* What a parameter slot holds.  Buffers (running statistics) live in the
 * parameter array so that checkpoints carry them, but have no gradient and
 * are skipped by optimizers. */
enum cnn_param_kind {
    CNN_PARAM_WEIGHT = 0,       /* conv/dense weight, batch-norm gamma */
    CNN_PARAM_BIAS = 1,         /* conv/dense bias, batch-norm beta */
    CNN_PARAM_RUNNING_MEAN = 2, /* batch-norm buffer */
    CNN_PARAM_RUNNING_VAR = 3,  /* batch-norm buffer */
};

/* Flags of a parameter slot. */
enum {
    CNN_PARAM_TRAINABLE = 1u << 0, /* has a gradient; optimizers update it */
    CNN_PARAM_DECAY = 1u << 1,     /* L1/L2 regularization applies by default */
};

/* Initializers.  Fans follow PyTorch: conv weight [K, C, R, S] has
 * fan_in = C*R*S and fan_out = K*R*S; dense weight [out, in] has fan_in = in
 * and fan_out = out.  Parameters a and b: uniform low/high, normal
 * mean/std, constant value/unused; for xavier_* and he_* `a` is the gain
 * multiplier (1 = the standard gain: 1 for Xavier, sqrt(2) for He).
 * CNN_INIT_TORCH_DEFAULT is what torch.nn.Conv2d / Linear do by default:
 * uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases alike. */
enum cnn_init_kind {
    CNN_INIT_ZEROS = 0,
    CNN_INIT_ONES = 1,
    CNN_INIT_CONSTANT = 2,
    CNN_INIT_UNIFORM = 3,
    CNN_INIT_NORMAL = 4,
    CNN_INIT_XAVIER_UNIFORM = 5,
    CNN_INIT_XAVIER_NORMAL = 6,
    CNN_INIT_HE_UNIFORM = 7,
    CNN_INIT_HE_NORMAL = 8,
    CNN_INIT_TORCH_DEFAULT = 9,
};

typedef struct cnn_param_desc {
    const char *name;   /* checkpoint tensor name, "conv1.weight" */
    const char *layer;  /* layer name from the .cnn file, "conv1" */
    int32_t kind;       /* enum cnn_param_kind */
    uint32_t flags;     /* CNN_PARAM_TRAINABLE | CNN_PARAM_DECAY */
    int32_t ndim;       /* 1..4 */
    int32_t init;       /* enum cnn_init_kind */
    int64_t shape[4];   /* PyTorch layout; unused dims are 1 */
    int64_t offset;     /* first element, in floats, in params and grads */
    int64_t size;       /* number of elements */
    int64_t fan_in;     /* for the initializers */
    int64_t fan_out;
    double init_a;      /* initializer parameters, see enum cnn_init_kind */
    double init_b;
} cnn_param_desc;

typedef struct cnn_ctx cnn_ctx;
typedef struct cnn_model_desc cnn_model_desc;

/* A parallel loop body: process iterations [begin, end) of a loop. */
typedef void (*cnn_task_fn)(void *closure, int64_t begin, int64_t end);
/* Run fn over [0, count) split into contiguous chunks, return when all are
 * done.  Chunk boundaries must not change results (generated code only
 * parallelizes loops whose iterations are independent). */
typedef void (*cnn_parallel_fn)(void *pool, cnn_task_fn fn, void *closure,
                                int64_t count);

/* Per-instance state passed to every entry point.  Generated code reads
 * the fields below by position; the runtime allocates a larger struct
 * with private fields after them. */
struct cnn_ctx {
    uint32_t abi_version;          /* CNN_ABI_VERSION */
    uint32_t reserved;
    const cnn_model_desc *model;
    float *params;                 /* model->param_floats floats */
    float *grads;                  /* same layout; written by train_step */
    void *arena;                   /* model->arena_bytes, 64-byte aligned */
    void *pool;                    /* thread pool, NULL = serial */
    cnn_parallel_fn parallel_for;  /* NULL = serial */
    uint64_t seed;                 /* seed for in-model randomness (dropout) */
    uint64_t step;                 /* train steps taken; the runtime counts */
};

/* Train step: forward in training mode, mean softmax cross-entropy over the
 * first n examples, backward.  Overwrites grads (not accumulated) with
 * d(loss)/d(params) and leaves the logits of the n examples, [n, classes]
 * floats, at arena + logits_offset.  Returns the loss.  x holds
 * n * in_c * in_h * in_w floats (NCHW), labels n class indices in
 * [0, classes).  n is clamped to [0, batch]. */
typedef float (*cnn_train_step_fn)(cnn_ctx *ctx, const float *x,
                                   const int32_t *labels, int32_t n);
/* Forward pass in evaluation mode: writes n * classes logits to out. */
typedef void (*cnn_forward_fn)(cnn_ctx *ctx, const float *x, float *out,
                               int32_t n);

struct cnn_model_desc {
    uint32_t abi_version;          /* CNN_ABI_VERSION */
    uint32_t flags;                /* reserved, 0 */
    const char *name;              /* network name from the .cnn file */
    const char *target;            /* LLVM target triple it was built for */
    int32_t batch;                 /* compiled (maximum) batch size */
    int32_t in_c, in_h, in_w;      /* input shape of one example */
    int32_t classes;               /* logits per example */
    int32_t n_params;              /* entries in params */
    const cnn_param_desc *params;  /* parameter table, in definition order */
    int64_t param_floats;          /* length of the params and grads arrays */
    int64_t arena_bytes;           /* scratch memory needed, 64-byte aligned */
    int64_t logits_offset;         /* bytes into arena, see train_step */
    uint64_t arch_hash;            /* hash of layers, shapes and params */
    const char *train_config;      /* JSON: the train block with defaults */
    cnn_train_step_fn train_step;
    cnn_forward_fn forward;
};

#ifdef __cplusplus
}
#endif

#endif /* CNN_MODEL_H */
