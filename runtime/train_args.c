/*
 * train_args.c — the command line of a training executable.
 *
 * One table lists every option: its name, the kind of value it takes, the
 * field of train_opts it fills and its help line; parsing, the usage line
 * and --help all read it.  "--name value" and "--name=value" both work.
 * No getopt: cnn_train_main may run several times in one process (tests),
 * and everything goes through cnn_log.
 */
#include "train_internal.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 4096

enum arg_kind { ARG_FLAG, ARG_PATH, ARG_COUNT, ARG_SEED, ARG_REAL, ARG_INTERVAL };

static const struct option_def {
    const char *name; /* without the leading "--" */
    enum arg_kind kind;
    size_t field;     /* offsetof the field in train_opts */
    int64_t max;      /* ARG_COUNT: largest value */
    const char *meta; /* the value's name in the help */
    const char *help;
} option_defs[] = {
    {"data", ARG_PATH, offsetof(train_opts, data), 0, "DIR",
     "data directory: MNIST-style IDX files (train-*, t10k-*) or CIFAR-10 binary "
     "(default " DEFAULT_DATA_DIR ")"},
    {"epochs", ARG_COUNT, offsetof(train_opts, epochs), INT32_MAX, "N",
     "epochs of the whole run (default: the train block's; 0 = evaluate only)"},
    {"steps", ARG_COUNT, offsetof(train_opts, steps), INT64_MAX, "N",
     "stop after N train steps of the whole run; --steps 0 --save F writes the initial "
     "weights"},
    {"seed", ARG_SEED, offsetof(train_opts, seed), 0, "N",
     "seed for initialization, shuffling, augmentation and in-model randomness"},
    {"lr", ARG_REAL, offsetof(train_opts, lr), 0, "X", "base learning rate (overrides the network's)"},
    {"no-shuffle", ARG_FLAG, offsetof(train_opts, no_shuffle), 0, NULL,
     "visit the training examples in file order"},
    {"no-augment", ARG_FLAG, offsetof(train_opts, no_augment), 0, NULL,
     "train without the train block's augmentations"},
    {"load", ARG_PATH, offsetof(train_opts, load), 0, "FILE",
     "start from the weights of this safetensors file instead of initializing"},
    {"resume", ARG_PATH, offsetof(train_opts, resume), 0, "FILE",
     "continue the run saved in this checkpoint (weights, optimizer, counters)"},
    {"save", ARG_PATH, offsetof(train_opts, save), 0, "FILE",
     "write the final checkpoint (resumable) to this file"},
    {"checkpoint", ARG_PATH, offsetof(train_opts, checkpoint), 0, "FILE",
     "where periodic and Ctrl-C checkpoints go (default: the --save file, else "
     "NETWORK-checkpoint.safetensors)"},
    {"checkpoint-every", ARG_INTERVAL, offsetof(train_opts, every), 0, "N[e]",
     "write a checkpoint every N steps, or every N epochs with a suffix e"},
    {"log", ARG_PATH, offsetof(train_opts, log), 0, "FILE",
     "append per-epoch metrics to this CSV file"},
    {"eval", ARG_FLAG, offsetof(train_opts, eval), 0, NULL,
     "evaluate the loaded weights on the test split and stop"},
    {"predict", ARG_PATH, offsetof(train_opts, predict), 0, "FILE",
     "write the logits of the test split to this .npy file at the end"},
    {"threads", ARG_COUNT, offsetof(train_opts, threads), MAX_THREADS, "N",
     "worker threads, 0 = all cores (default: $CNNC_THREADS, else all cores)"},
    {"quiet", ARG_FLAG, offsetof(train_opts, quiet), 0, NULL, "print only errors and warnings"},
    {"help", ARG_FLAG, offsetof(train_opts, help), 0, NULL, "show this help"},
};

#define N_OPTIONS (sizeof option_defs / sizeof option_defs[0])

const char *train_program_name(int argc, char **argv)
{
    if (argc < 1 || !argv || !argv[0] || !*argv[0])
        return "train";
    const char *slash = strrchr(argv[0], '/');
    return slash ? slash + 1 : argv[0];
}

void train_log_usage(enum cnn_log_level level, const char *prog)
{
    char line[1024];
    size_t used = (size_t)snprintf(line, sizeof line, "usage: %s", prog);
    for (size_t i = 0; i < N_OPTIONS && used < sizeof line; i++) {
        const struct option_def *d = &option_defs[i];
        used += (size_t)snprintf(line + used, sizeof line - used, " [--%s%s%s]", d->name,
                                 d->meta ? " " : "", d->meta ? d->meta : "");
    }
    cnn_log(level, "%s", line);
}

void train_log_help(const char *prog, const cnn_model_desc *m)
{
    cnn_log(CNN_LOG_INFO, "%s: train network %s", prog, m && m->name ? m->name : "?");
    train_log_usage(CNN_LOG_INFO, prog);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option_def *d = &option_defs[i];
        char head[64];
        snprintf(head, sizeof head, "--%s%s%s", d->name, d->meta ? " " : "",
                 d->meta ? d->meta : "");
        cnn_log(CNN_LOG_INFO, "  %-22s %s", head, d->help);
    }
}

/* A decimal integer in [0, max]; no sign, no trailing text unless `rest`
 * is given (it then receives the text after the digits). */
static int parse_count(const char *s, int64_t max, int64_t *out, const char **rest)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || (*end && !rest) || v > max)
        return -1;
    *out = v;
    if (rest)
        *rest = end;
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

/* "500", "500s", "500steps", "2e", "2epochs". */
static int parse_interval(const char *s, opt_interval *o)
{
    const char *rest;
    if (parse_count(s, INT64_MAX, &o->value, &rest) < 0 || o->value == 0)
        return -1;
    if (!*rest || !strcmp(rest, "s") || !strcmp(rest, "step") || !strcmp(rest, "steps"))
        o->epochs = 0;
    else if (!strcmp(rest, "e") || !strcmp(rest, "epoch") || !strcmp(rest, "epochs"))
        o->epochs = 1;
    else
        return -1;
    o->given = 1;
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
        if (parse_count(value, d->max, &((opt_count *)field)->value, NULL) < 0)
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
    case ARG_INTERVAL:
        if (parse_interval(value, (opt_interval *)field) < 0)
            return cnn_fail(err, "--%s: expected N (steps) or Ne (epochs), N > 0, got '%s'",
                            d->name, value);
        return 0;
    }
    return cnn_fail(err, "--%s: internal error", d->name);
}

int train_parse_args(int argc, char **argv, train_opts *o, cnn_error *err)
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
    if (o->load && o->resume)
        return cnn_fail(err, "--load and --resume exclude each other (--resume continues a run, "
                             "--load starts one from given weights)");
    return 0;
}
