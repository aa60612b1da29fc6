/*
 * rt_fake_model.c — the softmax-regression model of rt_fake_model.h.
 *
 * train_step follows the ABI contract: it overwrites the gradients, leaves
 * the logits of the batch at arena + logits_offset, returns the mean loss,
 * and clamps n to [0, batch].  Loss and softmax use a shifted log-sum-exp.
 * The file depends on nothing but cnn_model.h and libm, so that a test can
 * compile it into a shared object.
 */
#include "rt_fake_model.h"

#include <math.h>
#include <signal.h>
#include <string.h>

int rt_fake_nan_at_step = -1;
int rt_fake_sigint_at_step = -1;
long rt_fake_train_calls;
uint64_t rt_fake_last_seed;

/* logits[i] = W x + b for the n examples. */
static void fake_logits(const float *params, const float *x, float *logits, int n)
{
    const float *w = params + FAKE_W, *b = params + FAKE_B;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < FAKE_CLASSES; k++) {
            float z = b[k];
            for (int j = 0; j < FAKE_IN; j++)
                z += w[k * FAKE_IN + j] * x[i * FAKE_IN + j];
            logits[i * FAKE_CLASSES + k] = z;
        }
}

static float fake_train_step(cnn_ctx *ctx, const float *x, const int32_t *labels, int32_t n)
{
    float *logits = (float *)((char *)ctx->arena + cnn_model.logits_offset);
    float *dw = ctx->grads + FAKE_W, *db = ctx->grads + FAKE_B, *rm = ctx->params + FAKE_RM;
    n = n < 0 ? 0 : n > FAKE_BATCH ? FAKE_BATCH : n;
    rt_fake_train_calls++;
    rt_fake_last_seed = ctx->seed;
    memset(ctx->grads, 0, FAKE_FLOATS * sizeof(float));
    fake_logits(ctx->params, x, logits, n);
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + i * FAKE_CLASSES;
        float max = z[0], p[FAKE_CLASSES], sum = 0;
        for (int k = 1; k < FAKE_CLASSES; k++)
            max = z[k] > max ? z[k] : max;
        for (int k = 0; k < FAKE_CLASSES; k++)
            sum += p[k] = expf(z[k] - max);
        loss += logf(sum) + max - z[labels[i]];
        for (int k = 0; k < FAKE_CLASSES; k++) {
            float dz = (p[k] / sum - (k == labels[i])) / (float)n;
            db[k] += dz;
            for (int j = 0; j < FAKE_IN; j++)
                dw[k * FAKE_IN + j] += dz * x[i * FAKE_IN + j];
        }
    }
    for (int k = 0; k < FAKE_CLASSES && n > 0; k++) { /* batch-norm-like buffer */
        float mean = 0;
        for (int i = 0; i < n; i++)
            mean += logits[i * FAKE_CLASSES + k] / (float)n;
        rm[k] = 0.9f * rm[k] + 0.1f * mean;
    }
    if (rt_fake_sigint_at_step >= 0 && ctx->step == (uint64_t)rt_fake_sigint_at_step)
        raise(SIGINT);
    if (rt_fake_nan_at_step >= 0 && ctx->step == (uint64_t)rt_fake_nan_at_step)
        return NAN;
    return n > 0 ? (float)(loss / n) : 0.0f;
}

static void fake_forward(cnn_ctx *ctx, const float *x, float *out, int32_t n)
{
    n = n < 0 ? 0 : n > FAKE_BATCH ? FAKE_BATCH : n;
    fake_logits(ctx->params, x, out, n);
}

const cnn_param_desc rt_fake_params[3] = {
    {.name = "fc.weight", .layer = "fc", .kind = CNN_PARAM_WEIGHT,
     .flags = CNN_PARAM_TRAINABLE | CNN_PARAM_DECAY, .ndim = 2,
     .init = CNN_INIT_XAVIER_UNIFORM, .shape = {FAKE_CLASSES, FAKE_IN, 1, 1},
     .offset = FAKE_W, .size = FAKE_CLASSES * FAKE_IN, .fan_in = FAKE_IN,
     .fan_out = FAKE_CLASSES, .init_a = 1.0},
    {.name = "fc.bias", .layer = "fc", .kind = CNN_PARAM_BIAS, .flags = CNN_PARAM_TRAINABLE,
     .ndim = 1, .init = CNN_INIT_TORCH_DEFAULT, .shape = {FAKE_CLASSES, 1, 1, 1},
     .offset = FAKE_B, .size = FAKE_CLASSES, .fan_in = FAKE_IN, .fan_out = FAKE_CLASSES},
    {.name = "fc.running_mean", .layer = "fc", .kind = CNN_PARAM_RUNNING_MEAN, .flags = 0,
     .ndim = 1, .init = CNN_INIT_ZEROS, .shape = {FAKE_CLASSES, 1, 1, 1}, .offset = FAKE_RM,
     .size = FAKE_CLASSES},
};

const cnn_model_desc cnn_model = {
    .abi_version = CNN_ABI_VERSION,
    .name = "fake",
    .target = "x86_64-pc-linux-gnu",
    .batch = FAKE_BATCH,
    .in_c = 1, .in_h = 4, .in_w = 4,
    .classes = FAKE_CLASSES,
    .n_params = 3,
    .params = rt_fake_params,
    .param_floats = FAKE_FLOATS,
    .arena_bytes = 256,
    .logits_offset = 64,
    .arch_hash = 0x0123456789abcdefull,
    .train_config = "{\"batch\": 8, \"epochs\": 2, \"seed\": 7, \"mixup\": {\"alpha\": 1},"
                    " \"optimizer\": {\"type\": \"sgd\", \"lr\": 0.5, \"momentum\": 0.9,"
                    " \"dampening\": 0, \"nesterov\": false, \"weight_decay\": 0.0001,"
                    " \"future\": 1}}",
    .train_step = fake_train_step,
    .forward = fake_forward,
};
