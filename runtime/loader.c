/*
 * loader.c — batches for training and evaluation: gathered in a per-epoch
 * order, augmented, normalized, and optionally prepared one batch ahead by
 * a background thread.
 *
 * Determinism.  Everything random about a batch is a function of (seed,
 * epoch, position in the epoch), never of what ran before it:
 *   - the order of epoch e is the batcher's: a Fisher-Yates shuffle drawn
 *     from the stream (seed, "shuffle", e), or file order without shuffle;
 *   - the example at position i of epoch e is augmented with a generator
 *     seeded from (epoch_seed, "example", i), where epoch_seed is the first
 *     word of the stream (seed, "augment", e).
 * So batch k of epoch e is the same whether it is made by the caller's
 * thread or the worker, and whether the epoch started at batch 0 or was
 * resumed at batch k (cnn_loader_epoch's skip): nothing is carried from
 * one batch to the next.  Normalization comes last, after augmentation,
 * so that fill values are in pixel units like the images.
 *
 * Threading.  With `background`, one worker thread makes batches into two
 * slots (double buffering).  The caller and the worker meet at one mutex
 * and a job of four states: IDLE, POSTED (batch b into slot s), RUNNING,
 * DONE.  Invariant: while an epoch has batches left, a job for the next
 * one is posted, running or done.  cnn_loader_next waits for DONE, hands
 * that slot to the caller and posts the following batch into the other
 * slot, so the worker fills one slot while the caller trains on the other;
 * the caller's slot is not touched until its next call.  The worker only
 * reads the dataset, the order and the configuration, and writes its slot
 * and its scratch; the order and the epoch seed change only in
 * cnn_loader_epoch after waiting for the worker to go idle, and the
 * mutex orders those writes before the next job.  cnn_loader_free sets
 * `quit` and joins: a worker in the middle of a batch finishes it first.
 */
#include "cnnrt.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum job_state { JOB_IDLE, JOB_POSTED, JOB_RUNNING, JOB_DONE };

typedef struct batch_slot {
    float *x;   /* batch * example floats */
    int32_t *y; /* batch labels */
    int n;      /* examples in it */
} batch_slot;

struct cnn_loader {
    const cnn_dataset *ds;
    int batch;
    int shuffle;
    size_t example;          /* floats per example: c*h*w */
    int64_t batches;         /* per epoch */
    uint64_t seed;
    int n_augment;           /* 0 unless augmentation is asked for and configured */
    cnn_augment augment[CNN_MAX_AUGMENT];
    float *mean, *std;       /* per channel, or NULL: no normalization */

    /* The epoch, changed only while no job runs. */
    int64_t *order;          /* this epoch's order of example indices */
    uint64_t epoch_seed;     /* seeds the per-example augmentation streams */
    int started;             /* cnn_loader_epoch was called */
    int64_t next;            /* the batch the next cnn_loader_next returns */
    int held;                /* slot last handed to the caller, -1 for none */

    batch_slot slot[2];      /* slot[1] only with a background thread */
    float *scratch;          /* one example, for augmentation */

    int background;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* to the worker: a job is posted, or quit */
    pthread_cond_t done;     /* to the caller: the job is done */
    int state;               /* enum job_state */
    int64_t job_batch;       /* the posted job: batch index and slot */
    int job_slot;
    int quit;
};

/* ---- making one batch ------------------------------------------------------------ */

/* Fill slot s with batch b of the current epoch.  Depends only on the
 * loader's configuration, the order and the epoch seed. */
static void make_batch(cnn_loader *l, int64_t b, int s)
{
    const cnn_dataset *ds = l->ds;
    batch_slot *out = &l->slot[s];
    int64_t first = b * l->batch, left = ds->count - first;
    int n = left < l->batch ? (int)left : l->batch;
    size_t plane = (size_t)ds->h * (size_t)ds->w;
    for (int i = 0; i < n; i++) {
        int64_t k = l->order[first + i];
        float *x = out->x + (size_t)i * l->example;
        memcpy(x, ds->images + (size_t)k * l->example, l->example * sizeof *x);
        out->y[i] = ds->labels[k];
        if (l->n_augment > 0) {
            cnn_rng r;
            cnn_rng_seed_stream(&r, l->epoch_seed, "example", (uint64_t)(first + i));
            for (int a = 0; a < l->n_augment; a++)
                cnn_augment_apply(&l->augment[a], x, ds->c, ds->h, ds->w, &r, l->scratch);
        }
        if (l->mean) {
            for (int ch = 0; ch < ds->c; ch++) {
                float m = l->mean[ch], sd = l->std[ch], *p = x + (size_t)ch * plane;
                for (size_t j = 0; j < plane; j++)
                    p[j] = (p[j] - m) / sd;
            }
        }
    }
    out->n = n;
}

/* ---- the worker -------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    cnn_loader *l = arg;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->quit && l->state != JOB_POSTED)
            pthread_cond_wait(&l->wake, &l->lock);
        if (l->quit)
            break;
        l->state = JOB_RUNNING;
        int64_t b = l->job_batch;
        int s = l->job_slot;
        pthread_mutex_unlock(&l->lock);
        make_batch(l, b, s);
        pthread_mutex_lock(&l->lock);
        l->state = JOB_DONE;
        pthread_cond_signal(&l->done);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

static void post_job(cnn_loader *l, int64_t b, int s)
{
    pthread_mutex_lock(&l->lock);
    l->job_batch = b;
    l->job_slot = s;
    l->state = JOB_POSTED;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

/* Wait until no job is posted or running; returns the slot of a finished
 * job, or -1 if none was pending.  The job is then consumed (IDLE). */
static int finish_job(cnn_loader *l)
{
    pthread_mutex_lock(&l->lock);
    while (l->state == JOB_POSTED || l->state == JOB_RUNNING)
        pthread_cond_wait(&l->done, &l->lock);
    int s = l->state == JOB_DONE ? l->job_slot : -1;
    l->state = JOB_IDLE;
    pthread_mutex_unlock(&l->lock);
    return s;
}

/* ---- the API ------------------------------------------------------------------------ */

/* Check cfg against ds and copy what the loader uses into l. */
static int setup_config(cnn_loader *l, const cnn_data_config *cfg, int augment,
                        cnn_error *err)
{
    const cnn_dataset *ds = l->ds;
    if (cfg->n_augment < 0 || cfg->n_augment > CNN_MAX_AUGMENT)
        return cnn_fail(err, "loader: %d augmentations, at most %d", cfg->n_augment,
                        CNN_MAX_AUGMENT);
    for (int a = 0; a < cfg->n_augment; a++)
        if (cfg->augment[a].type < CNN_AUG_HFLIP || cfg->augment[a].type > CNN_AUG_TRANSLATE)
            return cnn_fail(err, "loader: augmentation %d has unknown type %d", a,
                            cfg->augment[a].type);
    if (augment) {
        l->n_augment = cfg->n_augment;
        memcpy(l->augment, cfg->augment, sizeof l->augment);
    }
    if (cfg->normalize == 0)
        return 0;
    if (cfg->normalize != 1 && cfg->normalize != 2)
        return cnn_fail(err, "loader: unknown normalization %d", cfg->normalize);
    if (cfg->normalize == 1 && (cfg->channels != ds->c || cfg->channels > CNN_MAX_CHANNELS))
        return cnn_fail(err, "loader: normalization gives mean and std for %d channels, but "
                        "the images have %d", cfg->channels, (int)ds->c);
    size_t nc = ds->c > 0 ? (size_t)ds->c : 1;
    double *mean = malloc(nc * sizeof *mean), *std = malloc(nc * sizeof *std);
    l->mean = malloc(nc * sizeof *l->mean);
    l->std = malloc(nc * sizeof *l->std);
    int rc = 0;
    if (!mean || !std || !l->mean || !l->std) {
        rc = cnn_fail(err, "loader: out of memory");
        goto out;
    }
    if (cfg->normalize == 2) {
        cnn_dataset_stats(ds, mean, std);
    } else {
        memcpy(mean, cfg->mean, (size_t)ds->c * sizeof *mean);
        memcpy(std, cfg->std, (size_t)ds->c * sizeof *std);
    }
    for (int ch = 0; ch < ds->c && rc == 0; ch++) {
        if (cfg->normalize == 1 && !(std[ch] > 0))
            rc = cnn_fail(err, "loader: std %g of channel %d must be > 0", std[ch], ch);
        if (cfg->normalize == 2 && !(std[ch] > 0)) {
            if (ds->count > 0)
                cnn_log(CNN_LOG_WARN, "normalization: channel %d has the same value %g in "
                        "every image; it is shifted but not scaled", ch, mean[ch]);
            std[ch] = 1;
        }
        l->mean[ch] = (float)mean[ch];
        l->std[ch] = (float)std[ch];
    }
out:
    free(mean);
    free(std);
    return rc;
}

cnn_loader *cnn_loader_create(const cnn_dataset *ds, int batch, int shuffle, int augment,
                              const cnn_data_config *cfg, uint64_t seed, int background,
                              cnn_error *err)
{
    if (batch < 1) {
        cnn_fail(err, "loader: batch size %d must be >= 1", batch);
        return NULL;
    }
    if (ds->count < 0 || (ds->count > 0 && (ds->c < 1 || ds->h < 1 || ds->w < 1))) {
        cnn_fail(err, "loader: bad dataset (%lld images of %dx%dx%d)", (long long)ds->count,
                 (int)ds->c, (int)ds->h, (int)ds->w);
        return NULL;
    }
    cnn_loader *l = calloc(1, sizeof *l);
    if (!l) {
        cnn_fail(err, "loader: out of memory");
        return NULL;
    }
    l->ds = ds;
    l->batch = batch;
    l->shuffle = shuffle;
    l->seed = seed;
    l->example = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    l->batches = (ds->count + batch - 1) / batch;
    l->held = -1;
    if (cfg && setup_config(l, cfg, augment, err) < 0) {
        cnn_loader_free(l);
        return NULL;
    }
    size_t example = l->example > 0 ? l->example : 1;
    l->order = malloc((size_t)(ds->count > 0 ? ds->count : 1) * sizeof *l->order);
    l->scratch = malloc(example * sizeof *l->scratch);
    int ok = l->order && l->scratch;
    for (int s = 0; s < (background ? 2 : 1) && ok; s++) {
        l->slot[s].x = malloc((size_t)batch * example * sizeof *l->slot[s].x);
        l->slot[s].y = malloc((size_t)batch * sizeof *l->slot[s].y);
        ok = l->slot[s].x && l->slot[s].y;
    }
    if (!ok) {
        cnn_fail(err, "loader: out of memory for batches of %d", batch);
        cnn_loader_free(l);
        return NULL;
    }
    if (background) {
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->wake, NULL);
        pthread_cond_init(&l->done, NULL);
        int rc = pthread_create(&l->thread, NULL, worker_main, l);
        if (rc != 0) {
            pthread_cond_destroy(&l->done);
            pthread_cond_destroy(&l->wake);
            pthread_mutex_destroy(&l->lock);
            cnn_fail(err, "loader: cannot start the background thread: %s", strerror(rc));
            cnn_loader_free(l);
            return NULL;
        }
        l->background = 1;
    }
    return l;
}

void cnn_loader_epoch(cnn_loader *l, int64_t epoch, int64_t skip)
{
    if (l->background)
        finish_job(l); /* the worker reads the order: let it go idle first */
    int64_t n = l->ds->count;
    for (int64_t i = 0; i < n; i++)
        l->order[i] = i;
    cnn_rng r;
    if (l->shuffle) {
        cnn_rng_seed_stream(&r, l->seed, "shuffle", (uint64_t)epoch);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)cnn_rng_below(&r, (uint64_t)i + 1);
            int64_t t = l->order[i];
            l->order[i] = l->order[j];
            l->order[j] = t;
        }
    }
    cnn_rng_seed_stream(&r, l->seed, "augment", (uint64_t)epoch);
    l->epoch_seed = cnn_rng_u64(&r);
    l->started = 1;
    l->next = skip < 0 ? 0 : skip < l->batches ? skip : l->batches;
    if (l->background && l->next < l->batches)
        post_job(l, l->next, l->held == 0 ? 1 : 0); /* not the slot the caller holds */
}

int cnn_loader_next(cnn_loader *l, const float **x, const int32_t **y)
{
    if (!l->started || l->next >= l->batches)
        return 0;
    int s = 0;
    if (l->background) {
        s = finish_job(l);
        if (s < 0) { /* cannot happen while the invariant holds; be safe anyway */
            s = l->held == 0 ? 1 : 0;
            make_batch(l, l->next, s);
        }
        if (l->next + 1 < l->batches)
            post_job(l, l->next + 1, 1 - s);
    } else {
        make_batch(l, l->next, 0);
    }
    l->next++;
    l->held = s;
    *x = l->slot[s].x;
    *y = l->slot[s].y;
    return l->slot[s].n;
}

int64_t cnn_loader_batches(const cnn_loader *l)
{
    return l->batches;
}

void cnn_loader_free(cnn_loader *l)
{
    if (!l)
        return;
    if (l->background) {
        pthread_mutex_lock(&l->lock);
        l->quit = 1;
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->done);
        pthread_cond_destroy(&l->wake);
        pthread_mutex_destroy(&l->lock);
    }
    for (int s = 0; s < 2; s++) {
        free(l->slot[s].x);
        free(l->slot[s].y);
    }
    free(l->order);
    free(l->scratch);
    free(l->mean);
    free(l->std);
    free(l);
}
