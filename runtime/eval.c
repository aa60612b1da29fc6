/*
 * eval.c — loss and accuracy of a model on a dataset.
 *
 * The model's forward() writes logits for up to `batch` examples at a time;
 * images of a dataset are contiguous, so batches are slices of it and
 * nothing is gathered.  Cross-entropy is computed here, in double, with
 * the log-sum-exp shifted by the largest logit so that large logits do not
 * overflow:  loss_i = log(sum_j exp(z_j - max)) + max - z_label.  The mean
 * over the set is accumulated in double too, so 10 000 examples lose no
 * precision.  Accuracy counts an example as right when its label has the
 * largest logit (the first of equal ones, as torch.argmax).  A NaN logit
 * makes the loss NaN, which the caller sees and reports.
 * cnn_evaluate_loader does the same over the batches of a loader, which
 * normalizes them as training does.
 */
#include "cnnrt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Cross-entropy of one row of logits, and whether argmax == label. */
static double row_loss(const float *z, int classes, int label, int *correct)
{
    int best = 0;
    for (int j = 1; j < classes; j++)
        if (z[j] > z[best])
            best = j;
    double max = z[best], sum = 0;
    for (int j = 0; j < classes; j++)
        sum += exp((double)z[j] - max);
    *correct = best == label;
    return log(sum) + max - (double)z[label];
}

int cnn_evaluate(cnn_ctx *ctx, const cnn_dataset *ds, double *loss, double *accuracy,
                 cnn_error *err)
{
    const cnn_model_desc *m = ctx->model;
    if (cnn_dataset_check(ds, m, "evaluation set", err) < 0)
        return -1;
    float *out = malloc((size_t)m->batch * (size_t)m->classes * sizeof *out);
    if (!out)
        return cnn_fail(err, "evaluation: out of memory");
    int64_t example = (int64_t)ds->c * ds->h * ds->w;
    double total = 0;
    int64_t right = 0;
    for (int64_t start = 0; start < ds->count; start += m->batch) {
        int64_t left = ds->count - start;
        int n = left < m->batch ? (int)left : m->batch;
        m->forward(ctx, ds->images + start * example, out, n);
        for (int i = 0; i < n; i++) {
            int correct;
            total += row_loss(out + (int64_t)i * m->classes, m->classes,
                              ds->labels[start + i], &correct);
            right += correct;
        }
    }
    free(out);
    *loss = total / (double)ds->count;
    *accuracy = (double)right / (double)ds->count;
    return 0;
}

int cnn_evaluate_loader(cnn_ctx *ctx, cnn_loader *l, double *loss, double *accuracy,
                        float *logits, cnn_error *err)
{
    const cnn_model_desc *m = ctx->model;
    float *out = malloc((size_t)m->batch * (size_t)m->classes * sizeof *out);
    if (!out)
        return cnn_fail(err, "evaluation: out of memory");
    double total = 0;
    int64_t right = 0, seen = 0;
    const float *x;
    const int32_t *y;
    int n;
    cnn_loader_epoch(l, 0, 0);
    while ((n = cnn_loader_next(l, &x, &y)) > 0) {
        m->forward(ctx, x, out, n);
        for (int i = 0; i < n; i++) {
            int correct;
            total += row_loss(out + (int64_t)i * m->classes, m->classes, y[i], &correct);
            right += correct;
        }
        if (logits)
            memcpy(logits + seen * m->classes, out, sizeof(float) * (size_t)n * (size_t)m->classes);
        seen += n;
    }
    free(out);
    if (seen == 0)
        return cnn_fail(err, "evaluation: the data set is empty");
    *loss = total / (double)seen;
    *accuracy = (double)right / (double)seen;
    return 0;
}
