/*
 * progress.c — what the training driver shows while it trains, and the
 * per-epoch metrics file.
 *
 * The progress line is formatted here and handed to cnn_log as a PROGRESS
 * message; the logger decides how to show it (rewritten in place on a
 * terminal, a plain line every few seconds in a log file).  The metrics
 * file is CSV with a header, appended to, so a resumed run continues the
 * same file.
 */
#include "train_internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

void progress_duration(char *buf, size_t size, double seconds)
{
    if (!(seconds >= 0) || seconds > 1e7) {
        snprintf(buf, size, "?");
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

void progress_show(int64_t epoch, int64_t total_epochs, int64_t batch, int64_t batches,
                   double loss, double acc, double img_per_s, double eta_s)
{
    enum { WIDTH = 20 };
    char bar[WIDTH + 1], head[48], eta[32];
    int filled = batches > 0 ? (int)(WIDTH * batch / batches) : 0;
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
    bar[WIDTH] = '\0';
    if (total_epochs > 0)
        snprintf(head, sizeof head, "epoch %lld/%lld", (long long)epoch + 1,
                 (long long)total_epochs);
    else
        snprintf(head, sizeof head, "epoch %lld", (long long)epoch + 1);
    progress_duration(eta, sizeof eta, eta_s);
    cnn_log(CNN_LOG_PROGRESS, "%s [%s] %lld/%lld  loss %.4f  acc %.2f%%  %.0f img/s  ETA %s", head,
            bar, (long long)batch, (long long)batches, loss, 100 * acc, img_per_s, eta);
}

FILE *metrics_open(const char *path, cnn_error *err)
{
    struct stat st;
    int fresh = stat(path, &st) != 0 || st.st_size == 0;
    FILE *f = fopen(path, "a");
    if (!f) {
        cnn_fail(err, "%s: cannot open for writing: %s", path, strerror(errno));
        return NULL;
    }
    if (fresh)
        fprintf(f, "epoch,step,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,"
                   "seconds\n");
    return f;
}

/* A number, or nothing for NaN (a missing value). */
static void field(FILE *f, double v, const char *sep)
{
    if (isnan(v))
        fprintf(f, "%s", sep);
    else
        fprintf(f, "%.6g%s", v, sep);
}

int metrics_write(FILE *f, const metrics_row *r)
{
    fprintf(f, "%lld,%llu,", (long long)r->epoch, (unsigned long long)r->step);
    field(f, r->lr, ",");
    field(f, r->train_loss, ",");
    field(f, r->train_acc, ",");
    field(f, r->val_loss, ",");
    field(f, r->val_acc, ",");
    field(f, r->test_loss, ",");
    field(f, r->test_acc, ",");
    field(f, r->seconds, "\n");
    return fflush(f) == 0 ? 0 : -1;
}
