/*
 * train_lenet5.c — train LeNet-5 from C through the generated library.
 *
 * This is what embedding cnnc looks like: compile the network once,
 *
 *     cnnc examples/lenet5.cnn -o generated/lenet5.so   # also writes lenet5.h
 *
 * then link the shared library and the runtime into any C program:
 *
 *     cc -Igenerated -Iruntime examples/train_lenet5.c generated/lenet5.so \
 *        build/libcnnrt.a -ljansson -lz -lm -lpthread -ldl -o train_lenet5
 *
 * (`make examples` does both.)  The program loads Fashion-MNIST, trains
 * with the recipe of the .cnn file's train block, evaluates after each
 * epoch and saves the weights as safetensors.
 *
 * usage: train_lenet5 [DATA_DIR [EPOCHS [STEPS]]]
 */
#include <stdio.h>
#include <stdlib.h>

#include "cnnrt.h"
#include "lenet5.h"

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    const cnn_model_desc *model = &lenet5_model;
    cnn_error err;
    cnn_train_config cfg;
    if (cnn_train_config_parse(model->train_config, &cfg, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    int epochs = argc > 2 ? atoi(argv[2]) : cfg.epochs;
    long max_steps = argc > 3 ? atol(argv[3]) : -1;

    cnn_dataset train = {0}, test = {0};
    if (cnn_dataset_load_dir(dir, "train", &train, &err) != 0 ||
        cnn_dataset_load_dir(dir, "t10k", &test, &err) != 0 ||
        cnn_dataset_check(&train, model, "training set", &err) != 0 ||
        cnn_dataset_check(&test, model, "test set", &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        cnn_dataset_free(&train);
        cnn_dataset_free(&test);
        return 1;
    }

    /* Parameters, gradients and scratch arena, allocated once. */
    cnn_ctx *ctx = cnn_ctx_create(model, 0, &err);
    cnn_optimizer *opt = ctx ? cnn_optimizer_create(model, &cfg.optim, &err) : NULL;
    cnn_batcher batches;
    if (!opt || cnn_batcher_init(&batches, &train, LENET5_BATCH, 1, cfg.seed, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    cnn_init_params(model, ctx->params, cfg.seed);

    long step = 0;
    for (int epoch = 1; epoch <= epochs && step != max_steps; epoch++) {
        cnn_batcher_epoch(&batches);
        double sum = 0;
        int n, count = 0;
        while (step != max_steps && (n = cnn_batcher_next(&batches)) > 0) {
            /* forward + loss + backward: fills ctx->grads */
            sum += lenet5_train_step(ctx, batches.x, batches.y, n);
            cnn_optimizer_step(opt, ctx->params, ctx->grads);
            ctx->step = (uint64_t)++step;
            count++;
        }
        double loss, accuracy;
        if (cnn_evaluate(ctx, &test, &loss, &accuracy, &err) != 0) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        printf("epoch %d: train loss %.4f, test loss %.4f, test accuracy %.2f%%\n", epoch,
               count ? sum / count : 0.0, loss, 100 * accuracy);
    }
    int rc = 0;
    if (cnn_checkpoint_save("lenet5.safetensors", model, ctx->params, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        rc = 1;
    } else {
        printf("saved lenet5.safetensors\n");
    }
    cnn_batcher_free(&batches);
    cnn_optimizer_free(opt);
    cnn_ctx_free(ctx);
    cnn_dataset_free(&train);
    cnn_dataset_free(&test);
    return rc;
}
