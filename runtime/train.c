/*
 * train.c — cnn_train_main, the main() of a training executable.
 *
 * `cnnc net.cnn --emit exe` links a generated main that only calls
 * cnn_train_main(argc, argv, &cnn_model).  The run is:
 *
 *   options → train config (+ overrides) → context → initial or loaded
 *   parameters → [--steps 0: save and stop] → train and test splits →
 *   per epoch: shuffled batches through train_step + optimizer, a progress
 *   line, then evaluation on the test split and one summary line → save.
 *
 * Options are parsed by hand from one table (no getopt: this function may
 * run several times in one process, as in tests, and everything it prints
 * goes through cnn_log).  Exit statuses are the CNN_EXIT_* of cnnrt.h:
 * usage errors print the message and a usage line; user errors (data,
 * checkpoint) print one "error: <file>: <problem>" line.  A loss that is
 * NaN or infinite stops training at once with the step named, and the
 * diverged weights are not saved.  Ctrl-C stops after the current step,
 * saves if --save was given, and exits with 130; a second Ctrl-C kills.
 *
 * Seeds: one seed (the config's, or --seed) drives everything random:
 * parameter initialization (a stream per parameter name), the shuffle (a
 * stream per epoch) and ctx->seed for randomness inside the model.
 */
#include "cnnrt.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
#define PROGRESS_INTERVAL 0.1 /* seconds between progress updates */
#define MAX_THREADS 4096

/* ---- options -------------------------------------------------------------- */

typedef struct opt_count { int given; int64_t value; } opt_count;
typedef struct opt_seed { int given; uint64_t value; } opt_seed;
typedef struct opt_real { int given; double value; } opt_real;

typedef struct train_opts {
    const char *data;  /* --data DIR */
    opt_count epochs;  /* --epochs N */
    opt_count steps;   /* --steps N: total train steps of this run */
    opt_seed seed;     /* --seed N */
    int no_shuffle;    /* --no-shuffle */
    const char *load;  /* --load FILE */
    const char *save;  /* --save FILE */
    opt_count threads; /* --threads N, 0 = all cores */
    opt_real lr;       /* --lr X */
    int quiet;         /* --quiet: errors and warnings only */
    int help;          /* --help */
} train_opts;

enum arg_kind { ARG_FLAG, ARG_PATH, ARG_COUNT, ARG_SEED, ARG_REAL };

static const struct option_def {
    const char *name;   /* without the leading "--" */
    enum arg_kind kind;
    size_t field;       /* offsetof the field in train_opts */
    int64_t max;        /* ARG_COUNT: largest value */
    const char *meta;   /* the value's name in the help */
    const char *help;
} option_defs[] = {
    {"data", ARG_PATH, offsetof(train_opts, data), 0, "DIR",
     "MNIST-style directory with train-* and t10k-* IDX files (default "
     DEFAULT_DATA_DIR ")"},
    {"epochs", ARG_COUNT, offsetof(train_opts, epochs), INT32_MAX, "N",
     "epochs to train (default: the network's train block; 0 = evaluate only)"},
    {"steps", ARG_COUNT, offsetof(train_opts, steps), INT64_MAX, "N",
     "stop after N train steps in total (without --epochs: as many epochs as needed); "
     "--steps 0 --save F writes the initial weights"},
    {"seed", ARG_SEED, offsetof(train_opts, seed), 0, "N",
     "seed for initialization, shuffling and in-model randomness"},
    {"no-shuffle", ARG_FLAG, offsetof(train_opts, no_shuffle), 0, NULL,
     "visit the training examples in file order"},
    {"load", ARG_PATH, offsetof(train_opts, load), 0, "FILE",
     "start from this safetensors checkpoint instead of initializing"},
    {"save", ARG_PATH, offsetof(train_opts, save), 0, "FILE",
     "write the trained weights to this safetensors file"},
    {"threads", ARG_COUNT, offsetof(train_opts, threads), MAX_THREADS, "N",
     "worker threads, 0 = all cores (this version runs serially)"},
    {"lr", ARG_REAL, offsetof(train_opts, lr), 0, "X", "learning rate (overrides the network's)"},
    {"quiet", ARG_FLAG, offsetof(train_opts, quiet), 0, NULL, "print only errors and warnings"},
    {"help", ARG_FLAG, offsetof(train_opts, help), 0, NULL, "show this help"},
};

#define N_OPTIONS (sizeof option_defs / sizeof option_defs[0])

static const char *program_name(int argc, char **argv)
{
    if (argc < 1 || !argv || !argv[0] || !*argv[0])
        return "train";
    const char *slash = strrchr(argv[0], '/');
    return slash ? slash + 1 : argv[0];
}

static void log_usage(enum cnn_log_level level, const char *prog)
{
    char line[512];
    size_t used = (size_t)snprintf(line, sizeof line, "usage: %s", prog);
    for (size_t i = 0; i < N_OPTIONS && used < sizeof line; i++) {
        const struct option_def *d = &option_defs[i];
        used += (size_t)snprintf(line + used, sizeof line - used, " [--%s%s%s]", d->name,
                                 d->meta ? " " : "", d->meta ? d->meta : "");
    }
    cnn_log(level, "%s", line);
}

static void log_help(const char *prog, const cnn_model_desc *m)
{
    cnn_log(CNN_LOG_INFO, "%s: train network %s on an MNIST-style data set", prog,
            m && m->name ? m->name : "?");
    log_usage(CNN_LOG_INFO, prog);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_def *d = &option_defs[i];
        char head[64];
        snprintf(head, sizeof head, "--%s%s%s", d->name, d->meta ? " " : "",
                 d->meta ? d->meta : "");
        cnn_log(CNN_LOG_INFO, "  %-16s %s", head, d->help);
    }
}

/* Parse a decimal integer in [0, max]; no sign, no trailing text. */
static int parse_count(const char *s, int64_t max, int64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Store value into o according to d; 0 or -1 with err set. */
static int set_option(train_opts *o, const struct option_def *d, const char *value,
                      cnn_error *err)
{
    char *field = (char *)o + d->field;
    double real;
    char *end;
    switch (d->kind) {
    case ARG_FLAG:
        *(int *)field = 1;
        return 0;
    case ARG_PATH:
        if (!*value)
            return cnn_fail(err, "--%s: empty %s", d->name, d->meta);
        *(const char **)field = value;
        return 0;
    case ARG_COUNT:
        if (parse_count(value, d->max, &((opt_count *)field)->value) < 0)
            return cnn_fail(err, "--%s: expected an integer from 0 to %lld, got '%s'", d->name,
                            (long long)d->max, value);
        ((opt_count *)field)->given = 1;
        return 0;
    case ARG_SEED:
        if (parse_u64(value, &((opt_seed *)field)->value) < 0)
            return cnn_fail(err, "--%s: expected an integer from 0 to 2^64-1, got '%s'",
                            d->name, value);
        ((opt_seed *)field)->given = 1;
        return 0;
    case ARG_REAL:
        errno = 0;
        real = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(real) || real <= 0)
            return cnn_fail(err, "--%s: expected a positive number, got '%s'", d->name, value);
        ((opt_real *)field)->value = real;
        ((opt_real *)field)->given = 1;
        return 0;
    }
    return cnn_fail(err, "--%s: internal error", d->name);
}

/* Parse argv into o: "--name value" and "--name=value"; 0 or -1. */
static int parse_args(int argc, char **argv, train_opts *o, cnn_error *err)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0)
            arg = "--help";
        if (strncmp(arg, "--", 2) != 0)
            return cnn_fail(err, "unexpected argument '%s'", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const struct option_def *d = NULL;
        for (size_t k = 0; k < N_OPTIONS && !d; k++)
            if (strlen(option_defs[k].name) == len && strncmp(option_defs[k].name, name, len) == 0)
                d = &option_defs[k];
        if (!d)
            return cnn_fail(err, "unknown option '%.*s'", (int)(len + 2), arg);
        const char *value = NULL;
        if (d->kind == ARG_FLAG && eq)
            return cnn_fail(err, "--%s takes no value", d->name);
        if (d->kind != ARG_FLAG) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                value = argv[++i];
            else
                return cnn_fail(err, "--%s needs a value (%s)", d->name, d->meta);
        }
        if (set_option(o, d, value, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- the run -------------------------------------------------------------- */

typedef struct trainer {
    const cnn_model_desc *m;
    const train_opts *o;
    cnn_train_config cfg;  /* the network's, with overrides applied */
    uint64_t seed;
    int64_t epochs;        /* INT64_MAX: until --steps is reached */
    cnn_ctx *ctx;
    cnn_optimizer *opt;
    cnn_dataset train, test;
    cnn_batcher batches;
    int64_t steps_done;    /* train steps of this run */
} trainer;

/* Outcome of an epoch. */
enum { EPOCH_DONE, EPOCH_STEPS_REACHED, EPOCH_NONFINITE, EPOCH_INTERRUPTED };

/* Running statistics of the current epoch. */
typedef struct epoch_stats {
    double loss_sum;   /* sum of per-example losses */
    int64_t seen;      /* examples trained on */
    int64_t right;     /* of which argmax == label */
    int64_t batches;
    double start;      /* monotonic seconds */
    double last_shown;
} epoch_stats;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void trainer_free(trainer *t)
{
    cnn_batcher_free(&t->batches);
    cnn_dataset_free(&t->train);
    cnn_dataset_free(&t->test);
    cnn_optimizer_free(t->opt);
    cnn_ctx_free(t->ctx);
}

/* Config, overrides, context, initial parameters.  CNN_EXIT_*. */
static int setup(trainer *t, cnn_error *err)
{
    const cnn_model_desc *m = t->m;
    const train_opts *o = t->o;
    if (cnn_model_check(m, err) < 0)
        return CNN_EXIT_USER;
    if (!m->train_step) {
        cnn_fail(err, "model %s has no train_step: it was compiled for inference only",
                 m->name);
        return CNN_EXIT_USER;
    }
    if (cnn_train_config_parse(m->train_config, &t->cfg, err) < 0)
        return CNN_EXIT_USER;
    if (t->cfg.batch != 0 && t->cfg.batch != m->batch) {
        cnn_fail(err, "model %s: its train config says batch %d, but it was compiled for "
                 "batch %d", m->name, t->cfg.batch, (int)m->batch);
        return CNN_EXIT_USER;
    }
    if (o->lr.given)
        t->cfg.optim.lr = o->lr.value;
    t->seed = o->seed.given ? o->seed.value : t->cfg.seed;
    if (o->epochs.given)
        t->epochs = o->epochs.value;
    else
        t->epochs = o->steps.given ? INT64_MAX : t->cfg.epochs;
    t->ctx = cnn_ctx_create(m, (int)o->threads.value, err);
    if (!t->ctx)
        return CNN_EXIT_USER;
    t->ctx->seed = t->seed;
    if (o->load)
        return cnn_checkpoint_load(o->load, m, t->ctx->params, err) < 0 ? CNN_EXIT_USER
                                                                         : CNN_EXIT_OK;
    cnn_init_params(m, t->ctx->params, t->seed);
    return CNN_EXIT_OK;
}

/* Both splits, checked against the model; the optimizer and batcher. */
static int prepare_training(trainer *t, cnn_error *err)
{
    const char *dir = t->o->data ? t->o->data : DEFAULT_DATA_DIR;
    char train_what[4200], test_what[4200];
    snprintf(train_what, sizeof train_what, "%s (train split)", dir);
    snprintf(test_what, sizeof test_what, "%s (t10k split)", dir);
    if (cnn_dataset_load_dir(dir, "train", &t->train, err) < 0 ||
        cnn_dataset_load_dir(dir, "t10k", &t->test, err) < 0 ||
        cnn_dataset_check(&t->train, t->m, train_what, err) < 0 ||
        cnn_dataset_check(&t->test, t->m, test_what, err) < 0)
        return -1;
    t->opt = cnn_optimizer_create(t->m, &t->cfg.optim, err);
    if (!t->opt)
        return -1;
    return cnn_batcher_init(&t->batches, &t->train, t->m->batch, !t->o->no_shuffle, t->seed,
                            err);
}

static int argmax(const float *z, int n)
{
    int best = 0;
    for (int j = 1; j < n; j++)
        if (z[j] > z[best])
            best = j;
    return best;
}

/* "epoch 3/5", or "epoch 3" when training runs until --steps. */
static void epoch_label(const trainer *t, int64_t epoch, char *buf, size_t size)
{
    if (t->epochs == INT64_MAX)
        snprintf(buf, size, "epoch %lld", (long long)epoch + 1);
    else
        snprintf(buf, size, "epoch %lld/%lld", (long long)epoch + 1, (long long)t->epochs);
}

static void show_progress(const trainer *t, int64_t epoch, epoch_stats *s, int force)
{
    double now = now_seconds();
    if (t->o->quiet || (!force && now - s->last_shown < PROGRESS_INTERVAL))
        return;
    s->last_shown = now;
    int64_t per_epoch = (t->train.count + t->m->batch - 1) / t->m->batch;
    double seconds = now - s->start;
    char head[48];
    epoch_label(t, epoch, head, sizeof head);
    cnn_log(CNN_LOG_PROGRESS, "%s  step %lld/%lld  loss %.4f  acc %.2f%%  %.0f img/s", head,
            (long long)s->batches, (long long)per_epoch,
            s->loss_sum / (double)s->seen, 100.0 * (double)s->right / (double)s->seen,
            seconds > 0 ? (double)s->seen / seconds : 0.0);
}

/* One train step on the batch in t->batches; its loss, or NaN/Inf. */
static float train_batch(trainer *t, int n, epoch_stats *s)
{
    const cnn_model_desc *m = t->m;
    cnn_ctx *ctx = t->ctx;
    float loss = m->train_step(ctx, t->batches.x, t->batches.y, n);
    if (!isfinite(loss))
        return loss;
    cnn_optimizer_step(t->opt, ctx->params, ctx->grads);
    ctx->step++;
    t->steps_done++;
    const float *logits = (const float *)((const char *)ctx->arena + m->logits_offset);
    for (int i = 0; i < n; i++)
        s->right += argmax(logits + (int64_t)i * m->classes, m->classes) == t->batches.y[i];
    s->loss_sum += (double)loss * n;
    s->seen += n;
    s->batches++;
    return loss;
}

/* Train one epoch; EPOCH_*.  err is set for EPOCH_NONFINITE. */
static int train_epoch(trainer *t, int64_t epoch, epoch_stats *s, cnn_error *err)
{
    memset(s, 0, sizeof *s);
    s->start = now_seconds();
    s->last_shown = s->start;
    cnn_batcher_epoch(&t->batches);
    int n;
    while ((n = cnn_batcher_next(&t->batches)) > 0) {
        float loss = train_batch(t, n, s);
        if (!isfinite(loss)) {
            cnn_fail(err, "loss is %s at step %llu (epoch %lld, batch %lld): training "
                     "diverged; try a smaller learning rate than %g. Not saving.",
                     isnan(loss) ? "NaN" : "infinite", (unsigned long long)t->ctx->step + 1,
                     (long long)epoch + 1, (long long)s->batches + 1, t->cfg.optim.lr);
            return EPOCH_NONFINITE;
        }
        show_progress(t, epoch, s, 0);
        if (interrupted)
            return EPOCH_INTERRUPTED;
        if (t->o->steps.given && t->steps_done >= t->o->steps.value)
            return EPOCH_STEPS_REACHED;
    }
    return EPOCH_DONE;
}

/* Evaluate on the test split and print the epoch's line. */
static int finish_epoch(trainer *t, int64_t epoch, epoch_stats *s, cnn_error *err)
{
    double loss, acc;
    if (s->seen > 0)
        show_progress(t, epoch, s, 1);
    if (cnn_evaluate(t->ctx, &t->test, &loss, &acc, err) < 0)
        return -1;
    if (t->o->quiet)
        return 0;
    char head[48];
    epoch_label(t, epoch, head, sizeof head);
    if (s->seen == 0) {
        cnn_log(CNN_LOG_INFO, "test loss %.4f acc %.2f%%", loss, 100 * acc);
        return 0;
    }
    cnn_log(CNN_LOG_INFO, "%s  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.1f s",
            head, s->loss_sum / (double)s->seen, 100.0 * (double)s->right / (double)s->seen,
            loss, 100 * acc, now_seconds() - s->start);
    return 0;
}

/* The epochs; CNN_EXIT_*. */
static int train_loop(trainer *t, cnn_error *err)
{
    epoch_stats s;
    memset(&s, 0, sizeof s);
    if (t->epochs == 0) /* evaluation only */
        return finish_epoch(t, 0, &s, err) < 0 ? CNN_EXIT_USER : CNN_EXIT_OK;
    for (int64_t e = 0; e < t->epochs; e++) {
        int how = train_epoch(t, e, &s, err);
        if (how == EPOCH_NONFINITE)
            return CNN_EXIT_NONFINITE;
        if (how == EPOCH_INTERRUPTED) {
            cnn_log(CNN_LOG_WARN, "interrupted at step %llu (epoch %lld)",
                    (unsigned long long)t->ctx->step, (long long)e + 1);
            return CNN_EXIT_INTERRUPTED;
        }
        if (finish_epoch(t, e, &s, err) < 0)
            return CNN_EXIT_USER;
        if (how == EPOCH_STEPS_REACHED)
            break;
    }
    return CNN_EXIT_OK;
}

static void log_start(const trainer *t)
{
    const cnn_optim_config *c = &t->cfg.optim;
    if (t->o->quiet)
        return;
    int64_t weights = 0;
    for (int32_t i = 0; i < t->m->n_params; i++)
        weights += t->m->params[i].size;
    cnn_log(CNN_LOG_INFO,
            "%s: %lld parameters, batch %d; %s lr %g momentum %g%s weight decay %g; seed %llu; "
            "%lld train and %lld test images",
            t->m->name, (long long)weights, (int)t->m->batch,
            cnn_optim_name(c->type), c->lr, c->momentum, c->nesterov ? " (nesterov)" : "",
            c->weight_decay, (unsigned long long)t->seed, (long long)t->train.count,
            (long long)t->test.count);
}

static int save(const trainer *t, cnn_error *err)
{
    if (!t->o->save)
        return CNN_EXIT_OK;
    if (cnn_checkpoint_save(t->o->save, t->m, t->ctx->params, err) < 0)
        return CNN_EXIT_USER;
    if (!t->o->quiet)
        cnn_log(CNN_LOG_INFO, "saved %s", t->o->save);
    return CNN_EXIT_OK;
}

static int run(trainer *t, cnn_error *err)
{
    int rc = setup(t, err);
    if (rc != CNN_EXIT_OK)
        return rc;
    if (t->o->steps.given && t->o->steps.value == 0)
        return save(t, err);
    if (prepare_training(t, err) < 0)
        return CNN_EXIT_USER;
    log_start(t);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills */
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old);
    rc = train_loop(t, err);
    sigaction(SIGINT, &old, NULL);
    if (rc == CNN_EXIT_OK || rc == CNN_EXIT_INTERRUPTED) {
        int saved = save(t, err);
        if (saved != CNN_EXIT_OK)
            return saved;
    }
    return rc;
}

int cnn_train_main(int argc, char **argv, const cnn_model_desc *m)
{
    const char *prog = program_name(argc, argv);
    train_opts o;
    cnn_error err;
    memset(&o, 0, sizeof o);
    if (parse_args(argc, argv, &o, &err) < 0) {
        cnn_log(CNN_LOG_ERROR, "error: %s", err.msg);
        log_usage(CNN_LOG_ERROR, prog);
        return CNN_EXIT_USAGE;
    }
    if (o.help) {
        log_help(prog, m);
        return CNN_EXIT_OK;
    }
    trainer t;
    memset(&t, 0, sizeof t);
    t.m = m;
    t.o = &o;
    int rc = run(&t, &err);
    if (rc != CNN_EXIT_OK && rc != CNN_EXIT_INTERRUPTED)
        cnn_log(CNN_LOG_ERROR, "error: %s", err.msg);
    trainer_free(&t);
    return rc;
}
