/*
 * log.c — errors and the runtime's only way out to the user.
 *
 * cnn_fail() formats a one-line message into a caller's cnn_error; every
 * fallible function of the runtime ends with `return cnn_fail(err, ...)`.
 * Newlines in a message become spaces so that the line stays one line even
 * when it quotes text from a file (a JSON error, a dlerror string).
 *
 * cnn_log() formats a message and hands it to one callback, replaceable
 * with cnn_set_log().  A global lock serializes the calls: the runtime may
 * log from several threads, and a progress line must not be torn by an
 * error line.  The default callback writes errors and warnings to stderr
 * and the rest to stdout.  A progress message on a terminal rewrites the
 * current line ("\r" + text + erase-to-end-of-line); the next ordinary
 * message first erases it, so the per-epoch summary replaces the bar.  When
 * stdout is not a terminal (a log file, a pipe) progress would flood the
 * output, so it is printed as plain lines at most once every 10 seconds.
 */
#include "cnnrt.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PLAIN_PROGRESS_INTERVAL 10.0 /* seconds between progress lines in a log file */

static void default_log(void *user, enum cnn_log_level level, const char *msg);

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static cnn_log_fn log_fn = default_log; /* guarded by log_lock */
static void *log_user;                  /* guarded by log_lock */

/* State of the default logger, guarded by log_lock. */
static int stdout_tty = -1;          /* -1 unknown yet, then isatty(stdout) */
static int progress_open;            /* a progress line is on the terminal */
static double last_plain_progress = -1e300; /* monotonic seconds */

int cnn_fail(cnn_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return -1;
}

void cnn_set_log(cnn_log_fn fn, void *user)
{
    pthread_mutex_lock(&log_lock);
    log_fn = fn ? fn : default_log;
    log_user = fn ? user : NULL;
    pthread_mutex_unlock(&log_lock);
}

void cnn_log(enum cnn_log_level level, const char *fmt, ...)
{
    char buf[1024];
    char *big = NULL; /* for a message longer than buf */
    const char *msg = buf;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) {
        msg = "(unprintable log message)";
    } else if ((size_t)n >= sizeof buf) {
        /* Rare; if even this allocation fails, the truncated text goes out. */
        big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, ap2);
            msg = big;
        }
    }
    va_end(ap2);

    pthread_mutex_lock(&log_lock);
    log_fn(log_user, level, msg);
    pthread_mutex_unlock(&log_lock);
    free(big);
}

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Progress: rewrite the line on a terminal, rare plain lines elsewhere. */
static void default_progress(const char *msg)
{
    if (stdout_tty) {
        fprintf(stdout, "\r%s\033[K", msg);
        fflush(stdout);
        progress_open = 1;
        return;
    }
    double now = monotonic_seconds();
    if (now - last_plain_progress < PLAIN_PROGRESS_INTERVAL)
        return;
    last_plain_progress = now;
    fprintf(stdout, "%s\n", msg);
    fflush(stdout);
}

static void default_log(void *user, enum cnn_log_level level, const char *msg)
{
    (void)user;
    if (stdout_tty < 0)
        stdout_tty = isatty(STDOUT_FILENO);
    if (level == CNN_LOG_PROGRESS) {
        default_progress(msg);
        return;
    }
    if (progress_open) {
        fputs("\r\033[K", stdout);
        fflush(stdout);
        progress_open = 0;
    }
    /* Reset the rate limit so that each epoch's first progress line shows. */
    last_plain_progress = -1e300;
    FILE *out = (level == CNN_LOG_ERROR || level == CNN_LOG_WARN) ? stderr : stdout;
    fprintf(out, "%s\n", msg);
    fflush(out);
}
