/*
 * rt_fake_model.h — a hand-written model for the runtime's tests.
 *
 * Softmax regression on 1x4x4 images with 3 classes, written in plain C so
 * that the runtime can be tested without the compiler: logits = W x + b,
 * mean cross-entropy, exact gradients.  It exports its descriptor under
 * the ABI's symbol name, `cnn_model`, exactly as a generated training
 * executable does, so the same file also builds into a loadable model .so
 * (the model_open test does that).
 *
 * Parameter layout (floats):  fc.weight [3,16] at 0 (trainable, decay),
 * fc.bias [3] at 48 (trainable, no decay), fc.running_mean [3] at 52
 * (a buffer: the running mean of the logits, updated by train_step like a
 * batch-norm statistic, never by the optimizer), 56 floats in all.
 */
#ifndef RT_FAKE_MODEL_H
#define RT_FAKE_MODEL_H

#include "cnn_model.h"

#define FAKE_BATCH 8
#define FAKE_CLASSES 3
#define FAKE_IN 16      /* 1 x 4 x 4 */
#define FAKE_W 0        /* offsets in the parameter array */
#define FAKE_B 48
#define FAKE_RM 52
#define FAKE_FLOATS 56

extern const cnn_model_desc cnn_model;
extern const cnn_param_desc rt_fake_params[3];

/* Test hooks, compared with ctx->step when train_step runs (-1 = off). */
extern int rt_fake_nan_at_step;    /* return NaN at that step */
extern int rt_fake_sigint_at_step; /* raise(SIGINT) at that step */
extern long rt_fake_train_calls;   /* train_step calls so far */
extern uint64_t rt_fake_last_seed; /* ctx->seed seen by the last train_step */

#endif
