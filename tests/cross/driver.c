/*
 * driver.c — run a compiled network once on given inputs and write what it
 * computed, so that builds for different machines can be compared number
 * by number (tests/test_cross.c).  The same source is built for the host
 * with cc and for AArch64 with aarch64-linux-gnu-gcc (run under qemu), each
 * linked with that machine's libcnnrt.
 *
 *   driver MODEL.so IN OUT
 *
 * IN, as test_cross.c writes it (host byte order; both machines are
 * little-endian):
 *     int32 n                       examples to use (n <= batch)
 *     float params[param_floats]    the parameters to start from
 *     float x[batch * in_c * in_h * in_w]
 *     int32 labels[batch]
 * OUT:
 *     float loss                    of one train step on (x, labels, n)
 *     float grads[param_floats]     its gradients
 *     float params[param_floats]    after it (batch norm's running statistics move)
 *     float out[n * classes]        the forward pass (evaluation mode) on x
 *
 * Exit status 0, or 1 with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnrt.h"

static int read_all(FILE *f, void *buf, size_t size, size_t count)
{
    return fread(buf, size, count, f) == count ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.so IN OUT\n", argv[0]);
        return 1;
    }
    cnn_error err;
    void *handle;
    const cnn_model_desc *m = cnn_model_open(argv[1], &handle, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    cnn_ctx *ctx = cnn_ctx_create(m, 1, &err);
    if (!ctx) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    size_t row = (size_t)m->in_c * (size_t)m->in_h * (size_t)m->in_w;
    size_t nparams = (size_t)m->param_floats, batch = (size_t)m->batch;
    float *x = malloc(sizeof(float) * row * batch);
    int32_t *labels = malloc(sizeof(int32_t) * batch);
    float *out = malloc(sizeof(float) * batch * (size_t)m->classes);
    int32_t n = 0;
    FILE *in = fopen(argv[2], "rb");
    if (!in || read_all(in, &n, sizeof n, 1) || n < 1 || (size_t)n > batch ||
        read_all(in, ctx->params, sizeof(float), nparams) ||
        read_all(in, x, sizeof(float), row * batch) ||
        read_all(in, labels, sizeof(int32_t), batch)) {
        fprintf(stderr, "%s: cannot read the inputs (missing or short)\n", argv[2]);
        return 1;
    }
    fclose(in);
    float loss = m->train_step(ctx, x, labels, n);
    m->forward(ctx, x, out, n);
    FILE *o = fopen(argv[3], "wb");
    int bad = !o;
    if (o) {
        bad |= fwrite(&loss, sizeof loss, 1, o) != 1;
        bad |= fwrite(ctx->grads, sizeof(float), nparams, o) != nparams;
        bad |= fwrite(ctx->params, sizeof(float), nparams, o) != nparams;
        bad |= fwrite(out, sizeof(float), (size_t)n * (size_t)m->classes, o) !=
               (size_t)n * (size_t)m->classes;
        bad |= fclose(o) != 0;
    }
    if (bad) {
        fprintf(stderr, "%s: cannot write the results\n", argv[3]);
        return 1;
    }
    free(x), free(labels), free(out);
    cnn_ctx_free(ctx);
    cnn_model_close(handle);
    return 0;
}
