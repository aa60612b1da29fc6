/*
 * train_internal.h — what the files of the training driver share
 * (train.c, train_args.c, progress.c).  Not installed.
 */
#ifndef CNNRT_TRAIN_INTERNAL_H
#define CNNRT_TRAIN_INTERNAL_H

#include <stdio.h>

#include "cnnrt.h"

#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"

typedef struct opt_count {
    int given;
    int64_t value;
} opt_count;
typedef struct opt_seed {
    int given;
    uint64_t value;
} opt_seed;
typedef struct opt_real {
    int given;
    double value;
} opt_real;
typedef struct opt_interval {
    int given;
    int64_t value;
    int epochs; /* the value counts epochs, else steps */
} opt_interval;

/* The command line of a training executable. */
typedef struct train_opts {
    const char *data;            /* --data DIR */
    opt_count epochs;            /* --epochs N: epochs of the whole run */
    opt_count steps;             /* --steps N: train steps of the whole run */
    opt_seed seed;               /* --seed N */
    int no_shuffle;              /* --no-shuffle */
    int no_augment;              /* --no-augment */
    const char *load;            /* --load FILE: weights to start from */
    const char *resume;          /* --resume FILE: a run to continue */
    const char *save;            /* --save FILE: the final checkpoint */
    const char *checkpoint;      /* --checkpoint FILE: periodic / interrupt checkpoints */
    opt_interval every;          /* --checkpoint-every N[e] */
    const char *log;             /* --log FILE.csv */
    int eval;                    /* --eval */
    const char *predict;         /* --predict FILE.npy */
    opt_count threads;           /* --threads N, 0 = all cores */
    opt_real lr;                 /* --lr X */
    int quiet;                   /* --quiet */
    int help;                    /* --help */
} train_opts;

/* Parse argv; 0, or -1 with a message for a usage error. */
int train_parse_args(int argc, char **argv, train_opts *o, cnn_error *err);
void train_log_usage(enum cnn_log_level level, const char *prog);
void train_log_help(const char *prog, const cnn_model_desc *m);
const char *train_program_name(int argc, char **argv);

/* ---- progress.c ---------------------------------------------------------- */

/* The progress line of a step: "epoch 2/5 [=====>    ] 534/938 loss 0.4369
 * acc 84.09% 1690 img/s ETA 0:12"; total_epochs <= 0 when unknown. */
void progress_show(int64_t epoch, int64_t total_epochs, int64_t batch, int64_t batches,
                   double loss, double acc, double img_per_s, double eta_s);
/* "1:02:03" or "2:03" into buf. */
void progress_duration(char *buf, size_t size, double seconds);

/* One row of the per-epoch metrics CSV. */
typedef struct metrics_row {
    int64_t epoch;     /* 1-based */
    uint64_t step;
    double lr;
    double train_loss, train_acc;
    double val_loss, val_acc;   /* NaN without a validation split */
    double test_loss, test_acc;
    double seconds;
} metrics_row;

/* Open path for appending rows, writing the header if it is new or empty. */
FILE *metrics_open(const char *path, cnn_error *err);
int metrics_write(FILE *f, const metrics_row *r);

#endif
