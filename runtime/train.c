/*
 * train.c — cnn_train_main, the main() of a training executable.
 *
 * `cnnc net.cnn --emit exe` links a generated main that only calls
 * cnn_train_main(argc, argv, &cnn_model).  The run:
 *
 *   options (train_args.c) → train config + overrides → context, optimizer
 *   → weights: --resume (weights, optimizer state, counters), --load
 *     (weights) or the initializers → [--steps 0: save and stop]
 *   → data: train and test splits, validation split, normalization,
 *     loaders (augmentation, background thread) → [--eval: evaluate, stop]
 *   → epochs of steps: learning rate from the schedule, train_step,
 *     optimizer update, progress, periodic checkpoints; at each epoch's end
 *     evaluation on the validation and test splits, a summary line and a
 *     metrics row → final checkpoint (--save), predictions (--predict).
 *
 * Exactness of resume.  Everything random is derived from (seed, epoch,
 * position): the shuffle of an epoch, each example's augmentation, the
 * initial weights; the learning rate is a function of (epoch, step).  So a
 * checkpoint holding the weights, the optimizer's state and step count, and
 * the counters (step, epoch, batch within the epoch, seed) is the whole
 * state of a run, and a resumed run computes bit for bit what the
 * uninterrupted one would have.
 *
 * Failures.  Usage errors print the message and the usage line (exit 2);
 * bad data or checkpoints one "error: <file>: <problem>" line (exit 1).  A
 * loss that is NaN or infinite stops training at once, naming the step;
 * nothing is saved over the last good checkpoint (exit 3).  Ctrl-C stops
 * after the current step and writes a checkpoint to resume from (exit 130);
 * a second Ctrl-C kills.
 */
#include "train_internal.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROGRESS_INTERVAL 0.1 /* seconds between progress updates */

typedef struct trainer {
    const cnn_model_desc *m;
    const train_opts *o;
    cnn_train_config cfg;       /* the network's, with overrides applied */
    double base_lr;
    int64_t epochs;             /* of the whole run; INT64_MAX: until --steps */
    cnn_ctx *ctx;
    cnn_optimizer *opt;
    cnn_train_state state;      /* where the run stands */
    cnn_dataset train, val, test;
    cnn_data_config data;       /* normalization resolved to mean/std */
    cnn_loader *train_loader, *val_loader, *test_loader;
    const char *ckpt_path;      /* periodic and interrupt checkpoints */
    char ckpt_default[512];
    uint64_t good_ckpt_step;    /* step of the last checkpoint written, if any */
    int good_ckpt;
    FILE *metrics;
} trainer;

/* Running statistics of the epoch in progress. */
typedef struct epoch_stats {
    double loss_sum;  /* sum of per-example losses */
    int64_t seen;     /* examples trained on */
    int64_t right;    /* of which argmax == label */
    double start;     /* monotonic seconds */
    double last_shown;
} epoch_stats;

enum { EPOCH_DONE, EPOCH_STEPS_REACHED, EPOCH_NONFINITE, EPOCH_INTERRUPTED, EPOCH_FAILED };

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
    cnn_loader_free(t->train_loader);
    cnn_loader_free(t->val_loader);
    cnn_loader_free(t->test_loader);
    cnn_dataset_free(&t->train);
    cnn_dataset_free(&t->val);
    cnn_dataset_free(&t->test);
    cnn_optimizer_free(t->opt);
    cnn_ctx_free(t->ctx);
    if (t->metrics)
        fclose(t->metrics);
}

/* ---- set-up ---------------------------------------------------------------- */

/* Config with overrides, context, optimizer.  CNN_EXIT_*. */
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
    t->base_lr = t->cfg.optim.lr;
    t->state.seed = o->seed.given ? o->seed.value : t->cfg.seed;
    if (o->epochs.given)
        t->epochs = o->epochs.value;
    else
        t->epochs = o->steps.given ? INT64_MAX : t->cfg.epochs;
    if (o->no_augment)
        t->cfg.data.n_augment = 0;
    t->ctx = cnn_ctx_create(m, (int)o->threads.value, err);
    if (!t->ctx)
        return CNN_EXIT_USER;
    t->opt = cnn_optimizer_create(m, &t->cfg.optim, err);
    if (!t->opt)
        return CNN_EXIT_USER;
    if (o->checkpoint)
        t->ckpt_path = o->checkpoint;
    else if (o->save)
        t->ckpt_path = o->save;
    else {
        snprintf(t->ckpt_default, sizeof t->ckpt_default, "%s-checkpoint.safetensors", m->name);
        t->ckpt_path = t->ckpt_default;
    }
    return CNN_EXIT_OK;
}

/* Weights: resumed, loaded or initialized.  CNN_EXIT_*. */
static int initial_weights(trainer *t, cnn_error *err)
{
    const train_opts *o = t->o;
    if (o->resume) {
        cnn_train_state st;
        if (cnn_checkpoint_load_state(o->resume, t->m, t->ctx->params, t->opt, &st, err) < 0)
            return CNN_EXIT_USER;
        if (o->seed.given && o->seed.value != st.seed)
            cnn_log(CNN_LOG_WARN, "warning: %s was trained with seed %llu; continuing with "
                    "it, not --seed %llu", o->resume, (unsigned long long)st.seed,
                    (unsigned long long)o->seed.value);
        t->state = st;
    } else if (o->load) {
        if (cnn_checkpoint_load(o->load, t->m, t->ctx->params, err) < 0)
            return CNN_EXIT_USER;
    } else {
        cnn_init_params(t->m, t->ctx->params, t->state.seed);
    }
    t->ctx->seed = t->state.seed;
    t->ctx->step = t->state.step;
    return CNN_EXIT_OK;
}

/* Train, validation and test splits, normalization, loaders. */
static int prepare_data(trainer *t, int need_train, cnn_error *err)
{
    const char *dir = t->o->data ? t->o->data : DEFAULT_DATA_DIR;
    const cnn_model_desc *m = t->m;
    char train_what[4200], test_what[4200];
    snprintf(train_what, sizeof train_what, "%s (training split)", dir);
    snprintf(test_what, sizeof test_what, "%s (test split)", dir);
    t->data = t->cfg.data;
    if ((need_train || t->data.normalize == 2) &&
        (cnn_data_load(dir, 0, &t->train, err) < 0 ||
         cnn_dataset_check(&t->train, m, train_what, err) < 0))
        return -1;
    if (cnn_data_load(dir, 1, &t->test, err) < 0 ||
        cnn_dataset_check(&t->test, m, test_what, err) < 0)
        return -1;
    if (t->train.count > 0 && t->data.validation > 0 &&
        cnn_dataset_split(&t->train, t->data.validation, t->state.seed, &t->val, err) < 0)
        return -1;
    if (t->data.normalize == 2) { /* auto: from the training examples */
        cnn_dataset_stats(&t->train, t->data.mean, t->data.std);
        t->data.channels = t->train.c;
        t->data.normalize = 1;
    }
    int shuffle = !t->o->no_shuffle;
    if (need_train &&
        !(t->train_loader = cnn_loader_create(&t->train, m->batch, shuffle, 1, &t->data,
                                              t->state.seed, 1, err)))
        return -1;
    if (t->val.count > 0 &&
        !(t->val_loader = cnn_loader_create(&t->val, m->batch, 0, 0, &t->data, 0, 1, err)))
        return -1;
    t->test_loader = cnn_loader_create(&t->test, m->batch, 0, 0, &t->data, 0, 1, err);
    return t->test_loader ? 0 : -1;
}

/* ---- checkpoints --------------------------------------------------------------- */

static int write_checkpoint(trainer *t, const char *path, cnn_error *err)
{
    if (cnn_checkpoint_save_state(path, t->m, t->ctx->params, t->opt, &t->state, err) < 0)
        return -1;
    t->good_ckpt = 1;
    t->good_ckpt_step = t->state.step;
    return 0;
}

/* --checkpoint-every: is a checkpoint due now? */
static int checkpoint_due(const trainer *t, int at_epoch_end)
{
    const opt_interval *every = &t->o->every;
    if (!every->given || every->epochs != at_epoch_end)
        return 0;
    uint64_t count = at_epoch_end ? (uint64_t)t->state.epoch : t->state.step;
    return count % (uint64_t)every->value == 0;
}

/* ---- one epoch ------------------------------------------------------------------- */

static int argmax(const float *z, int n)
{
    int best = 0;
    for (int j = 1; j < n; j++)
        if (z[j] > z[best])
            best = j;
    return best;
}

static void show_progress(const trainer *t, epoch_stats *s, int force)
{
    double now = now_seconds();
    if (t->o->quiet || s->seen == 0 || (!force && now - s->last_shown < PROGRESS_INTERVAL))
        return;
    s->last_shown = now;
    int64_t batches = cnn_loader_batches(t->train_loader);
    double rate = now > s->start ? (double)s->seen / (now - s->start) : 0;
    int64_t left = (batches - t->state.batch_in_epoch) * t->m->batch;
    progress_show(t->state.epoch, t->epochs == INT64_MAX ? 0 : t->epochs,
                  t->state.batch_in_epoch, batches, s->loss_sum / (double)s->seen,
                  (double)s->right / (double)s->seen, rate, rate > 0 ? left / rate : -1);
}

/* One train step on (x, y): its loss, or NaN/Inf (then nothing is updated). */
static float train_batch(trainer *t, const float *x, const int32_t *y, int n, epoch_stats *s)
{
    const cnn_model_desc *m = t->m;
    cnn_ctx *ctx = t->ctx;
    int64_t per_epoch = cnn_loader_batches(t->train_loader);
    int total = t->epochs == INT64_MAX ? t->cfg.epochs : (int)t->epochs;
    double lr = cnn_schedule_lr(&t->cfg.schedule, t->base_lr, t->state.epoch,
                                (int64_t)t->state.step, per_epoch, total);
    cnn_optimizer_set_lr(t->opt, lr);
    float loss = m->train_step(ctx, x, y, n);
    if (!isfinite(loss))
        return loss;
    cnn_optimizer_step(t->opt, ctx->params, ctx->grads);
    ctx->step++;
    t->state.step++;
    t->state.batch_in_epoch++;
    const float *logits = (const float *)((const char *)ctx->arena + m->logits_offset);
    for (int i = 0; i < n; i++)
        s->right += argmax(logits + (int64_t)i * m->classes, m->classes) == y[i];
    s->loss_sum += (double)loss * n;
    s->seen += n;
    return loss;
}

static void diverged(trainer *t, float loss, cnn_error *err)
{
    char saved[600];
    if (t->good_ckpt)
        snprintf(saved, sizeof saved, "the last good checkpoint is %s (step %llu)",
                 t->ckpt_path, (unsigned long long)t->good_ckpt_step);
    else
        snprintf(saved, sizeof saved, "nothing was saved");
    cnn_fail(err, "loss is %s at step %llu (epoch %lld, batch %lld): training diverged; try a "
             "smaller learning rate than %g; %s", isnan(loss) ? "NaN" : "infinite",
             (unsigned long long)t->state.step + 1, (long long)t->state.epoch + 1,
             (long long)t->state.batch_in_epoch + 1, t->base_lr, saved);
}

/* Train the rest of the current epoch; EPOCH_*. */
static int train_epoch(trainer *t, epoch_stats *s, cnn_error *err)
{
    memset(s, 0, sizeof *s);
    s->start = s->last_shown = now_seconds();
    cnn_loader_epoch(t->train_loader, t->state.epoch, t->state.batch_in_epoch);
    const float *x;
    const int32_t *y;
    int n;
    while ((n = cnn_loader_next(t->train_loader, &x, &y)) > 0) {
        float loss = train_batch(t, x, y, n, s);
        if (!isfinite(loss)) {
            diverged(t, loss, err);
            return EPOCH_NONFINITE;
        }
        show_progress(t, s, 0);
        if (checkpoint_due(t, 0) && write_checkpoint(t, t->ckpt_path, err) < 0)
            return EPOCH_FAILED;
        if (interrupted)
            return EPOCH_INTERRUPTED;
        if (t->o->steps.given && (int64_t)t->state.step >= t->o->steps.value) {
            show_progress(t, s, 1);
            return EPOCH_STEPS_REACHED;
        }
    }
    show_progress(t, s, 1);
    return EPOCH_DONE;
}

/* Evaluate on the validation and test splits, print the epoch's line and
 * its metrics row.  epoch is 0-based. */
static int finish_epoch(trainer *t, int64_t epoch, epoch_stats *s, cnn_error *err)
{
    metrics_row r = {epoch + 1, t->state.step, NAN, NAN, NAN, NAN, NAN, NAN, NAN, 0};
    if (t->val_loader &&
        cnn_evaluate_loader(t->ctx, t->val_loader, &r.val_loss, &r.val_acc, NULL, err) < 0)
        return -1;
    if (cnn_evaluate_loader(t->ctx, t->test_loader, &r.test_loss, &r.test_acc, NULL, err) < 0)
        return -1;
    r.seconds = now_seconds() - s->start;
    if (s->seen > 0) {
        r.train_loss = s->loss_sum / (double)s->seen;
        r.train_acc = (double)s->right / (double)s->seen;
        int64_t per_epoch = t->train_loader ? cnn_loader_batches(t->train_loader) : 1;
        int total = t->epochs == INT64_MAX ? t->cfg.epochs : (int)t->epochs;
        r.lr = cnn_schedule_lr(&t->cfg.schedule, t->base_lr, epoch,
                               (int64_t)t->state.step - 1, per_epoch, total);
    }
    if (t->metrics && metrics_write(t->metrics, &r) < 0)
        return cnn_fail(err, "%s: cannot write metrics", t->o->log);
    if (t->o->quiet)
        return 0;
    char val[64] = "";
    if (t->val_loader)
        snprintf(val, sizeof val, "  val loss %.4f acc %.2f%%", r.val_loss, 100 * r.val_acc);
    if (s->seen == 0) {
        cnn_log(CNN_LOG_INFO, "%s%stest loss %.4f acc %.2f%%", val + (val[0] ? 2 : 0),
                val[0] ? "  " : "", r.test_loss, 100 * r.test_acc);
        return 0;
    }
    char head[48];
    if (t->epochs == INT64_MAX)
        snprintf(head, sizeof head, "epoch %lld", (long long)epoch + 1);
    else
        snprintf(head, sizeof head, "epoch %lld/%lld", (long long)epoch + 1, (long long)t->epochs);
    cnn_log(CNN_LOG_INFO, "%s  train loss %.4f acc %.2f%%%s  test loss %.4f acc %.2f%%  "
            "lr %.3g  %.1f s", head, r.train_loss, 100 * r.train_acc, val, r.test_loss,
            100 * r.test_acc, r.lr, r.seconds);
    return 0;
}

/* ---- the run --------------------------------------------------------------------- */

/* The epochs from where the state stands; CNN_EXIT_*. */
static int train_loop(trainer *t, cnn_error *err)
{
    epoch_stats s;
    while (t->state.epoch < t->epochs) {
        if (t->o->steps.given && (int64_t)t->state.step >= t->o->steps.value)
            break;
        int64_t epoch = t->state.epoch;
        int how = train_epoch(t, &s, err);
        switch (how) {
        case EPOCH_NONFINITE:
            return CNN_EXIT_NONFINITE;
        case EPOCH_FAILED:
            return CNN_EXIT_USER;
        case EPOCH_INTERRUPTED:
            cnn_log(CNN_LOG_WARN, "interrupted at step %llu (epoch %lld); writing %s",
                    (unsigned long long)t->state.step, (long long)epoch + 1, t->ckpt_path);
            if (write_checkpoint(t, t->ckpt_path, err) < 0)
                return CNN_EXIT_USER;
            cnn_log(CNN_LOG_INFO, "resume with --resume %s", t->ckpt_path);
            return CNN_EXIT_INTERRUPTED;
        default:
            break;
        }
        if (how == EPOCH_DONE) {
            t->state.epoch++;
            t->state.batch_in_epoch = 0;
        }
        if (finish_epoch(t, epoch, &s, err) < 0)
            return CNN_EXIT_USER;
        if (how == EPOCH_DONE && checkpoint_due(t, 1) && write_checkpoint(t, t->ckpt_path, err) < 0)
            return CNN_EXIT_USER;
        if (how == EPOCH_STEPS_REACHED)
            break;
    }
    return CNN_EXIT_OK;
}

/* "sgd(lr 0.1, momentum 0.9, nesterov, weight_decay 0.0005)": the settings
 * of the optimizer that differ from nothing, and the regularization. */
static void describe_optimizer(const trainer *t, char *buf, size_t size)
{
    const cnn_optim_config *c = &t->cfg.optim;
    size_t n = (size_t)snprintf(buf, size, "%s(lr %g", cnn_optim_name(c->type), t->base_lr);
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (n < size)                                                                              \
            n += (size_t)snprintf(buf + n, size - n, __VA_ARGS__);                                \
    } while (0)
    if (c->type == CNN_OPTIM_ADAM || c->type == CNN_OPTIM_ADAMW)
        ADD(", betas %g %g, eps %g%s", c->beta1, c->beta2, c->eps, c->amsgrad ? ", amsgrad" : "");
    if (c->type == CNN_OPTIM_RMSPROP)
        ADD(", alpha %g, eps %g%s", c->alpha, c->eps, c->centered ? ", centered" : "");
    if (c->momentum != 0)
        ADD(", momentum %g%s", c->momentum, c->nesterov ? ", nesterov" : "");
    if (c->dampening != 0)
        ADD(", dampening %g", c->dampening);
    if (c->weight_decay != 0)
        ADD(", weight_decay %g", c->weight_decay);
    ADD(")");
    if (c->l1 != 0)
        ADD(", l1 %g", c->l1);
    if (c->l2 != 0)
        ADD(", l2 %g", c->l2);
    if (c->clip_norm != 0)
        ADD(", clip_norm %g", c->clip_norm);
#undef ADD
}

static void log_start(const trainer *t)
{
    if (t->o->quiet)
        return;
    char optimizer[256];
    describe_optimizer(t, optimizer, sizeof optimizer);
    int64_t weights = 0;
    for (int32_t i = 0; i < t->m->n_params; i++)
        weights += t->m->params[i].size;
    char data[160] = "";
    if (t->val.count)
        snprintf(data, sizeof data, ", %lld validation", (long long)t->val.count);
    cnn_log(CNN_LOG_INFO, "%s: %lld parameters, batch %d; %s; seed %llu; %lld train%s "
            "and %lld test images%s%s", t->m->name, (long long)weights, (int)t->m->batch,
            optimizer, (unsigned long long)t->state.seed,
            (long long)t->train.count, data, (long long)t->test.count,
            t->data.n_augment ? ", augmented" : "", t->data.normalize ? ", normalized" : "");
    if (t->state.step > 0)
        cnn_log(CNN_LOG_INFO, "resuming at step %llu: epoch %lld, batch %lld",
                (unsigned long long)t->state.step, (long long)t->state.epoch + 1,
                (long long)t->state.batch_in_epoch);
}

static int save_final(trainer *t, cnn_error *err)
{
    if (!t->o->save)
        return CNN_EXIT_OK;
    if (write_checkpoint(t, t->o->save, err) < 0)
        return CNN_EXIT_USER;
    if (!t->o->quiet)
        cnn_log(CNN_LOG_INFO, "saved %s", t->o->save);
    return CNN_EXIT_OK;
}

/* --predict: logits of the test split as .npy. */
static int predict(trainer *t, cnn_error *err)
{
    if (!t->o->predict)
        return CNN_EXIT_OK;
    const cnn_model_desc *m = t->m;
    float *logits = malloc(sizeof(float) * (size_t)t->test.count * (size_t)m->classes);
    double loss, acc;
    int rc = !logits ? cnn_fail(err, "--predict: out of memory")
                     : cnn_evaluate_loader(t->ctx, t->test_loader, &loss, &acc, logits, err);
    if (rc == 0)
        rc = cnn_npy_write(t->o->predict, logits, t->test.count, m->classes, err);
    free(logits);
    if (rc < 0)
        return CNN_EXIT_USER;
    if (!t->o->quiet)
        cnn_log(CNN_LOG_INFO, "wrote %s: logits of %lld test images", t->o->predict,
                (long long)t->test.count);
    return CNN_EXIT_OK;
}

/* --eval: the loaded weights on the test (and validation) split. */
static int evaluate_only(trainer *t, cnn_error *err)
{
    epoch_stats s;
    memset(&s, 0, sizeof s);
    s.start = now_seconds();
    if (finish_epoch(t, t->state.epoch, &s, err) < 0)
        return CNN_EXIT_USER;
    return predict(t, err);
}

static int run(trainer *t, cnn_error *err)
{
    int rc = setup(t, err);
    if (rc == CNN_EXIT_OK)
        rc = initial_weights(t, err);
    if (rc != CNN_EXIT_OK)
        return rc;
    if (t->o->steps.given && t->o->steps.value == 0 && !t->o->eval)
        return save_final(t, err);
    int only_eval = t->o->eval || t->epochs == 0;
    if (prepare_data(t, !only_eval, err) < 0)
        return CNN_EXIT_USER;
    if (t->o->log && !(t->metrics = metrics_open(t->o->log, err)))
        return CNN_EXIT_USER;
    if (only_eval)
        return evaluate_only(t, err);
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
    if (rc == CNN_EXIT_OK) {
        rc = save_final(t, err);
        if (rc == CNN_EXIT_OK)
            rc = predict(t, err);
    }
    return rc;
}

int cnn_train_main(int argc, char **argv, const cnn_model_desc *m)
{
    const char *prog = train_program_name(argc, argv);
    train_opts o;
    cnn_error err;
    memset(&o, 0, sizeof o);
    if (train_parse_args(argc, argv, &o, &err) < 0) {
        cnn_log(CNN_LOG_ERROR, "error: %s", err.msg);
        train_log_usage(CNN_LOG_ERROR, prog);
        return CNN_EXIT_USAGE;
    }
    if (o.help) {
        train_log_help(prog, m);
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
