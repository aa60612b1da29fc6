/*
 * cnnrt.h — the public API of libcnnrt, the runtime that trains and runs
 * networks compiled by cnnc.
 *
 * The runtime is plain C with no knowledge of the compiler: everything it
 * knows about a network comes from the descriptor in cnn_model.h.  It owns
 * the memory a model needs (parameters, gradients, optimizer state, arena),
 * initializes parameters, applies optimizer updates, loads data, writes and
 * reads checkpoints, and provides the main() of training executables.
 *
 * Conventions.  Functions that can fail return 0 on success and -1 on
 * failure, and fill a caller-provided cnn_error with one line that names
 * the file or value at fault.  Nothing here prints except through the log
 * callback (cnn_set_log), and nothing calls exit() except cnn_train_main's
 * caller.  Everything allocated by a *_create / *_load / *_open function is
 * released by the matching *_free / *_close.
 */
#ifndef CNNRT_H
#define CNNRT_H

#include <stddef.h>
#include <stdint.h>

#include "cnn_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors and logging ------------------------------------------------ */

typedef struct cnn_error {
    char msg[512]; /* one line, no trailing newline */
} cnn_error;

/* Format msg into err (if err is not NULL); returns -1 for `return
 * cnn_fail(err, ...)`. */
int cnn_fail(cnn_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

enum cnn_log_level { CNN_LOG_ERROR, CNN_LOG_WARN, CNN_LOG_INFO, CNN_LOG_PROGRESS };
/* The runtime's only way out to the user.  The default writes errors and
 * warnings to stderr and the rest to stdout.  PROGRESS messages are
 * progress-bar updates: they carry no newline and replace the previous one
 * on a terminal. */
typedef void (*cnn_log_fn)(void *user, enum cnn_log_level level, const char *msg);
void cnn_set_log(cnn_log_fn fn, void *user); /* NULL restores the default */
/* Messages reach the callback as formatted, without a trailing newline;
 * callers write their own "error: " prefix.  Calls are serialized by a
 * lock, so the callback need not be thread-safe, but it must not call
 * cnn_log itself.  When stdout is not a terminal the default logger prints
 * PROGRESS messages as plain lines, at most one every 10 seconds. */
void cnn_log(enum cnn_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- models ------------------------------------------------------------ */

/* Check that m speaks this runtime's ABI and is self-consistent (parameter
 * offsets inside param_floats, shapes matching sizes). */
int cnn_model_check(const cnn_model_desc *m, cnn_error *err);

/* dlopen a compiled network (.so) and return its checked descriptor.
 * *handle receives what cnn_model_close needs.  A path without a '/'
 * names a file in the current directory, not a library to search for. */
const cnn_model_desc *cnn_model_open(const char *path, void **handle, cnn_error *err);
void cnn_model_close(void *handle);

/* Look a parameter up by checkpoint name; NULL when absent. */
const cnn_param_desc *cnn_model_param(const cnn_model_desc *m, const char *name);

/* ---- contexts ---------------------------------------------------------- */

/* Allocate a context for m: params, grads and arena, 64-byte aligned and
 * touched once so that no page fault happens inside a step, and a thread
 * pool when more than one thread is asked for (nthreads <= 0: see
 * cnn_default_threads).  Parameters are zero; call cnn_init_params or
 * cnn_checkpoint_load.  Results do not depend on the thread count. */
cnn_ctx *cnn_ctx_create(const cnn_model_desc *m, int nthreads, cnn_error *err);
void cnn_ctx_free(cnn_ctx *ctx);

/* ---- threads ------------------------------------------------------------ */

/* A pool of nthreads threads (the caller and nthreads - 1 workers) for
 * generated parallel loops; cnn_ctx_create makes one when it is given (or
 * finds) more than one thread.  cnn_pool_parallel_for has the type
 * cnn_parallel_fn of cnn_model.h. */
typedef struct cnn_pool cnn_pool;
cnn_pool *cnn_pool_create(int nthreads, cnn_error *err);
void cnn_pool_parallel_for(void *pool, cnn_task_fn fn, void *closure, int64_t count);
int cnn_pool_threads(const cnn_pool *pool);
void cnn_pool_free(cnn_pool *pool);

/* The thread count to use for a request of n: n itself when n > 0, else
 * $CNNC_THREADS when set to a positive number, else the available cores. */
int cnn_default_threads(int n);

/* ---- random numbers ---------------------------------------------------- */

/* xoshiro256** seeded through splitmix64: fast, reproducible everywhere. */
typedef struct cnn_rng {
    uint64_t s[4];
} cnn_rng;
void cnn_rng_seed(cnn_rng *r, uint64_t seed);
uint64_t cnn_rng_u64(cnn_rng *r);
double cnn_rng_uniform(cnn_rng *r);            /* [0, 1) */
double cnn_rng_normal(cnn_rng *r);             /* mean 0, std 1 */
uint64_t cnn_rng_below(cnn_rng *r, uint64_t n); /* [0, n), unbiased; n > 0 */
/* Seed r with a stream of its own, derived from (seed, name, index): the
 * initializer of parameter "conv1.weight" uses (seed, "conv1.weight", 0),
 * the shuffle of epoch e uses (seed, "shuffle", e).  Streams of different
 * names or indices are independent for practical purposes. */
void cnn_rng_seed_stream(cnn_rng *r, uint64_t seed, const char *name, uint64_t index);

/* ---- initialization ---------------------------------------------------- */

/* Fill one parameter according to its initializer.  Each parameter draws
 * from its own stream derived from (seed, parameter name), so adding a layer
 * does not change the initial values of the others. */
void cnn_init_param(const cnn_param_desc *p, float *params, uint64_t seed);
void cnn_init_params(const cnn_model_desc *m, float *params, uint64_t seed);
/* The fans p's initializer uses: the descriptor's fan_in / fan_out where
 * they are set (> 0), else PyTorch's rule from the shape (ndim >= 2:
 * fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive
 * field), else 0.  A gain multiplier init_a of 0 for xavier_* / he_* means
 * the standard gain (1). */
void cnn_param_fans(const cnn_param_desc *p, int64_t *fan_in, int64_t *fan_out);
/* "xavier_uniform", ... for messages; "?" for an unknown kind. */
const char *cnn_init_name(int kind);

/* ---- training configuration -------------------------------------------- */

enum cnn_optim_type {
    CNN_OPTIM_SGD = 0,
    CNN_OPTIM_ADAM = 1,
    CNN_OPTIM_ADAMW = 2,
    CNN_OPTIM_RMSPROP = 3,
};
/* The optimizer type called `name` in a train config ("sgd"), or -1. */
int cnn_optim_lookup(const char *name);
/* The name of an optimizer type, "?" if unknown. */
const char *cnn_optim_name(int type);

typedef struct cnn_optim_config {
    int type;            /* enum cnn_optim_type */
    double lr;
    double momentum;     /* sgd, rmsprop */
    double dampening;    /* sgd */
    double weight_decay; /* sgd, adam, rmsprop: added to the gradient (L2) as
                          * torch.optim does; adamw: decoupled decay */
    int nesterov;        /* sgd */
    double beta1, beta2; /* adam, adamw (0.9, 0.999) */
    double eps;          /* adam, adamw (1e-8), rmsprop (1e-8) */
    int amsgrad;         /* adam, adamw */
    double alpha;        /* rmsprop smoothing constant (0.99) */
    int centered;        /* rmsprop */
    /* Regularization of the loss, applied to the gradient before clipping
     * and before the optimizer: the penalty l1*|p|_1 + l2/2*|p|^2 adds
     *   grad += l1 * sign(p) + l2 * p.
     * It and weight_decay apply to parameters flagged CNN_PARAM_DECAY (the
     * weights), or to every trainable parameter with regularize_biases. */
    double l1;
    double l2;
    int regularize_biases;
    /* > 0: scale all gradients by max_norm / (norm + 1e-6) when their global
     * L2 norm exceeds it (torch.nn.utils.clip_grad_norm_). */
    double clip_norm;
} cnn_optim_config;

/* Learning-rate schedules, evaluated per epoch like torch.optim.lr_scheduler
 * stepped once per epoch, with an optional linear warm-up measured in steps.
 * The rate of a step is base_lr * schedule(epoch) * warmup(step):
 *   constant     1
 *   step         gamma ^ floor(epoch / step_size)
 *   multistep    gamma ^ (number of milestones <= epoch)
 *   exponential  gamma ^ epoch
 *   cosine       eta_min/base_lr + (1 - eta_min/base_lr) * (1 + cos(pi * epoch / t_max)) / 2
 *                (t_max = 0 means the run's total epochs)
 *   warmup(s)    warmup_start + (1 - warmup_start) * s / W for s < W, else 1,
 *                W = warmup_epochs * steps_per_epoch (rounded), s counted from 0
 * epoch and step are 0-based and count the whole run, resumed runs included. */
enum cnn_schedule_type {
    CNN_SCHED_CONSTANT = 0,
    CNN_SCHED_STEP = 1,
    CNN_SCHED_MULTISTEP = 2,
    CNN_SCHED_EXPONENTIAL = 3,
    CNN_SCHED_COSINE = 4,
};

#define CNN_MAX_MILESTONES 16

typedef struct cnn_schedule_config {
    int type;              /* enum cnn_schedule_type */
    int step_size;         /* step */
    double gamma;          /* step, multistep, exponential */
    int milestones[CNN_MAX_MILESTONES]; /* multistep, increasing epochs */
    int n_milestones;
    int t_max;             /* cosine */
    double eta_min;        /* cosine */
    double warmup_epochs;  /* 0: no warm-up; may be fractional */
    double warmup_start;   /* factor at the first step of warm-up */
} cnn_schedule_config;

/* The learning rate of step `step` (0-based, whole run) in epoch `epoch`. */
double cnn_schedule_lr(const cnn_schedule_config *s, double base_lr, int64_t epoch, int64_t step,
                       int64_t steps_per_epoch, int total_epochs);

/* ---- data configuration -------------------------------------------------- */

/* Augmentations, applied on the fly to training batches only, each example
 * with its own generator seeded from (seed, epoch, position in the epoch), so
 * a run is reproducible, a resumed run reproduces the rest of the epoch, and
 * the background thread changes nothing. */
enum cnn_augment_type {
    CNN_AUG_HFLIP = 0,     /* mirror left-right with probability p */
    CNN_AUG_ROTATE = 1,    /* rotate by U(-degrees, degrees), bilinear, fill */
    CNN_AUG_SCALE = 2,     /* zoom by U(min, max) about the centre, bilinear, fill */
    CNN_AUG_CROP = 3,      /* pad by `padding` pixels of fill, crop back at a random offset */
    CNN_AUG_TRANSLATE = 4, /* shift by U(-max, max) * size in each axis, fill */
};

#define CNN_MAX_AUGMENT 8
#define CNN_MAX_CHANNELS 16

typedef struct cnn_augment {
    int type;         /* enum cnn_augment_type */
    double p;         /* hflip probability */
    double degrees;   /* rotate */
    double min, max;  /* scale range; translate uses max (fraction of the size) */
    int padding;      /* crop */
    double fill;      /* value of pixels from outside the image, in [0, 1] pixel units */
} cnn_augment;

typedef struct cnn_data_config {
    /* normalization: x = (x - mean[c]) / std[c], after augmentation */
    int normalize;          /* 0 none, 1 mean/std given, 2 computed from the training set */
    int channels;           /* entries in mean/std when given */
    double mean[CNN_MAX_CHANNELS];
    double std[CNN_MAX_CHANNELS];
    double validation;      /* fraction of the training set held out, in [0, 0.9] */
    int n_augment;
    cnn_augment augment[CNN_MAX_AUGMENT];
} cnn_data_config;

typedef struct cnn_train_config {
    int batch;           /* must equal the model's compiled batch */
    int epochs;
    uint64_t seed;
    cnn_optim_config optim;
    cnn_schedule_config schedule;
    cnn_data_config data;
} cnn_train_config;

/* Parse the descriptor's train_config JSON. Missing keys get defaults:
 * epochs 1, seed 0, sgd lr 0.01, momentum 0, dampening 0, no nesterov,
 * weight_decay 0.  A missing batch is 0 (= the model's).  Unknown keys are
 * ignored (later versions add keys); a NULL json gives the defaults.
 * Values are range-checked here (lr > 0, momentum >= 0, nesterov only with
 * momentum and no dampening, as torch.optim.SGD demands). */
int cnn_train_config_parse(const char *json, cnn_train_config *cfg, cnn_error *err);

/* ---- optimizers ---------------------------------------------------------- */

/* Updates follow torch.optim's documented algorithms exactly, in float
 * arithmetic (each operation rounded as torch's are, but without fused
 * multiply-adds, so results agree with torch to within an ulp or so).  SGD:
 *   g = grad + weight_decay * p
 *   if momentum: b = g on the first step, else b = momentum*b + (1-dampening)*g
 *                g = g + momentum*b if nesterov else b
 *   p = p - lr * g
 * Only parameters flagged CNN_PARAM_TRAINABLE are touched, and weight decay
 * applies only to those also flagged CNN_PARAM_DECAY; state lives in flat
 * arrays of the parameter layout, allocated by create (the momentum buffer
 * is filled on the first step, as torch creates it then).  create checks
 * the configuration and fails with a message naming the bad value. */
typedef struct cnn_optimizer cnn_optimizer;
cnn_optimizer *cnn_optimizer_create(const cnn_model_desc *m, const cnn_optim_config *cfg,
                                    cnn_error *err);
/* One update.  grads is scratch: regularization and clipping are applied
 * to it in place before the update. */
void cnn_optimizer_step(cnn_optimizer *opt, float *params, float *grads);
/* Change the learning rate (schedules call it before each step). */
void cnn_optimizer_set_lr(cnn_optimizer *opt, double lr);
/* The optimizer's state, for checkpoints: state arrays of param_floats
 * floats each, named as torch.optim names them ("momentum_buffer",
 * "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "square_avg", "grad_avg"),
 * and the number of updates applied (torch's `step`). */
int cnn_optimizer_state_count(const cnn_optimizer *opt);
const char *cnn_optimizer_state_name(const cnn_optimizer *opt, int i);
float *cnn_optimizer_state(cnn_optimizer *opt, int i);
uint64_t cnn_optimizer_steps(const cnn_optimizer *opt);
void cnn_optimizer_set_steps(cnn_optimizer *opt, uint64_t steps);
/* The optimizer's enum cnn_optim_type. */
int cnn_optimizer_type(const cnn_optimizer *opt);
#define CNN_MAX_OPT_STATE 4 /* state arrays an optimizer may have */
/* Check an optimizer configuration as create does, without allocating. */
int cnn_optim_config_check(const cnn_optim_config *cfg, cnn_error *err);
void cnn_optimizer_free(cnn_optimizer *opt);

/* ---- data ---------------------------------------------------------------- */

/* A labelled image set in memory: images as float NCHW scaled to [0, 1]. */
typedef struct cnn_dataset {
    int64_t count;
    int32_t c, h, w;
    float *images;   /* count * c * h * w */
    int32_t *labels; /* count */
} cnn_dataset;

/* Load an IDX image file (magic 0x00000803, unsigned bytes, [count, h, w])
 * and an IDX label file (magic 0x00000801, [count]), each gzip-compressed
 * or raw.  Validates magic, dimensions, file length and that both files
 * have the same count; the error names the file and the problem. */
int cnn_idx_load(const char *images_path, const char *labels_path, cnn_dataset *ds,
                 cnn_error *err);

/* Load the split ("train" or "t10k") of an MNIST-style directory, trying
 * "<split>-images-idx3-ubyte.gz" and then the name without ".gz" (and the
 * same for labels). */
int cnn_dataset_load_dir(const char *dir, const char *split, cnn_dataset *ds, cnn_error *err);

/* Check that ds fits m: same image shape, labels in [0, classes). */
int cnn_dataset_check(const cnn_dataset *ds, const cnn_model_desc *m, const char *what,
                      cnn_error *err);

void cnn_dataset_free(cnn_dataset *ds);

/* Batches over a dataset in a seeded per-epoch order. */
typedef struct cnn_batcher {
    const cnn_dataset *ds;
    int batch;
    int shuffle;
    int64_t *order;  /* permutation of [0, count) for this epoch */
    int64_t pos;     /* next index into order */
    cnn_rng rng;     /* this epoch's shuffle stream */
    float *x;        /* batch * c*h*w, gathered batch */
    int32_t *y;      /* batch labels */
    uint64_t seed;   /* shuffle seed given to init */
    int64_t epoch;   /* epochs started so far (cnn_batcher_epoch calls) */
} cnn_batcher;

int cnn_batcher_init(cnn_batcher *b, const cnn_dataset *ds, int batch, int shuffle,
                     uint64_t seed, cnn_error *err);
/* Start an epoch: rewind and, if shuffling, draw a new permutation.  Epoch
 * e's order depends only on (seed, e), so a resumed run can reproduce it.
 * Call it before every epoch, the first included: until then
 * cnn_batcher_next returns 0. */
void cnn_batcher_epoch(cnn_batcher *b);
/* Gather the next batch into b->x / b->y; returns its size, 0 at the end of
 * the epoch (the last batch may be short). */
int cnn_batcher_next(cnn_batcher *b);
void cnn_batcher_free(cnn_batcher *b);

/* ---- data sets beyond IDX, normalization, validation split, loading ------ */

/* CIFAR-10 binary files: records of 1 label byte and 3072 pixel bytes (32x32
 * red, then green, then blue planes).  Loads and concatenates the files; a
 * file whose size is not a whole number of records, or a label > 9, is an
 * error naming the file. */
int cnn_cifar10_load(const char *const *paths, int npaths, cnn_dataset *ds, cnn_error *err);

/* Load the training (test = 0) or test split of a data directory, whatever
 * its format: MNIST-style IDX files (train-*, t10k-*), or CIFAR-10 binary
 * (data_batch_1..5.bin and test_batch.bin, in DIR or DIR/cifar-10-batches-bin). */
int cnn_data_load(const char *dir, int test, cnn_dataset *ds, cnn_error *err);

/* Per-channel mean and standard deviation (population) of a data set. */
void cnn_dataset_stats(const cnn_dataset *ds, double *mean, double *std);

/* Move a seeded random `fraction` of ds into val (ds keeps the rest, in its
 * original order).  Both own their memory afterwards. */
int cnn_dataset_split(cnn_dataset *ds, double fraction, uint64_t seed, cnn_dataset *val,
                      cnn_error *err);

/* Apply one augmentation to one example (c*h*w floats in [0,1] pixel units)
 * with generator r; scratch holds c*h*w floats. */
void cnn_augment_apply(const cnn_augment *a, float *x, int c, int h, int w, cnn_rng *r,
                       float *scratch);

/* Batches for training or evaluation: gathered, augmented (training only),
 * normalized, optionally prepared by a background thread one batch ahead.
 * Epoch e's order and augmentations depend only on (seed, e). */
typedef struct cnn_loader cnn_loader;
/* cfg may be NULL (no normalization or augmentation); mean/std for
 * normalization are cfg's, or computed from ds when cfg->normalize == 2 (the
 * caller computes them once from the training set and passes a cfg with
 * normalize = 1 to the test loader). */
cnn_loader *cnn_loader_create(const cnn_dataset *ds, int batch, int shuffle, int augment,
                              const cnn_data_config *cfg, uint64_t seed, int background,
                              cnn_error *err);
/* Start epoch e (0-based) at batch `skip` (to resume in the middle). */
void cnn_loader_epoch(cnn_loader *l, int64_t epoch, int64_t skip);
/* The next batch: returns its size (0 at the end of the epoch); the
 * pointers stay valid until the next call. */
int cnn_loader_next(cnn_loader *l, const float **x, const int32_t **y);
int64_t cnn_loader_batches(const cnn_loader *l); /* batches per epoch */
void cnn_loader_free(cnn_loader *l);

/* ---- checkpoints --------------------------------------------------------- */

/* Write every parameter of m to a safetensors file (F32, PyTorch names and
 * layouts) with metadata naming the network and its architecture hash.  The
 * write is atomic: a temporary file in the same directory, fsync, rename;
 * on any failure the previous file at path is untouched. */
int cnn_checkpoint_save(const char *path, const cnn_model_desc *m, const float *params,
                        cnn_error *err);
/* Where a run stands, saved with its checkpoints so it can resume exactly.
 * Everything random in a run is derived from (seed, epoch, position), so
 * the counters and the seed are the whole generator state. */
typedef struct cnn_train_state {
    uint64_t step;          /* train steps done, whole run */
    int64_t epoch;          /* the epoch in progress (0-based) */
    int64_t batch_in_epoch; /* batches of it already done */
    uint64_t seed;          /* the run's seed */
} cnn_train_state;

/* cnn_checkpoint_save plus, with opt, its state arrays as tensors named
 * "optimizer.<state>.<param>" (e.g. "optimizer.exp_avg.conv1.weight") and
 * its type and step count, and with st the training counters, in the
 * metadata.  Same atomic write. */
int cnn_checkpoint_save_state(const char *path, const cnn_model_desc *m, const float *params,
                              cnn_optimizer *opt, const cnn_train_state *st, cnn_error *err);
/* Load parameters and, with opt / st, the optimizer state (the same kind of
 * optimizer) and the counters, all of which must be present.  A checkpoint
 * whose metadata names another architecture is refused when resuming (opt
 * or st given).  Nothing changes unless everything loads. */
int cnn_checkpoint_load_state(const char *path, const cnn_model_desc *m, float *params,
                              cnn_optimizer *opt, cnn_train_state *st, cnn_error *err);

/* Read a safetensors file into params.  Every parameter of m must be present
 * with its exact shape and dtype F32; a missing, misshapen or truncated tensor
 * is an error naming the file and the tensor.  Extra tensors are ignored. */
int cnn_checkpoint_load(const char *path, const cnn_model_desc *m, float *params,
                        cnn_error *err);

/* ---- training ------------------------------------------------------------ */

/* Evaluate on ds in batches: mean loss (softmax cross-entropy, computed by
 * the runtime from forward()'s logits) and accuracy in [0, 1]. */
int cnn_evaluate(cnn_ctx *ctx, const cnn_dataset *ds, double *loss, double *accuracy,
                 cnn_error *err);

/* The same over one epoch of a loader (made without shuffling or
 * augmentation); with logits non-NULL, also stores the logits of every
 * example in loader order ([count, classes] floats). */
int cnn_evaluate_loader(cnn_ctx *ctx, cnn_loader *l, double *loss, double *accuracy,
                        float *logits, cnn_error *err);

/* Write a 2-D float32 array [rows, cols] as a NumPy .npy file (format 1.0,
 * little-endian '<f4', C order), atomically like checkpoints. */
int cnn_npy_write(const char *path, const float *data, int64_t rows, int64_t cols,
                  cnn_error *err);

/* The main() of a training executable built by `cnnc --emit exe`.  Returns
 * the process exit status: 0 success, 1 user error (bad data, checkpoint),
 * 2 usage, 3 a loss that is NaN or infinite, 130 interrupted by SIGINT
 * (after saving, if --save was given). */
int cnn_train_main(int argc, char **argv, const cnn_model_desc *m);

enum {
    CNN_EXIT_OK = 0,
    CNN_EXIT_USER = 1,        /* bad data file, checkpoint, model */
    CNN_EXIT_USAGE = 2,       /* unknown option or bad value */
    CNN_EXIT_NONFINITE = 3,   /* training diverged */
    CNN_EXIT_INTERRUPTED = 130,
};

#ifdef __cplusplus
}
#endif

#endif /* CNNRT_H */
