/*
 * test_parity.c — cnnc against PyTorch, step for step.
 *
 * For LeNet-5, a small residual network with strided and pooled
 * convolutions, and ResNet-8 (batch norm; its evaluation-mode predictions
 * are compared too), and six optimizer recipes (SGD with momentum and
 * weight decay; SGD with Nesterov momentum and an L2 penalty; Adam with an
 * L2 penalty; AdamW; RMSprop centered with momentum and an L2 penalty; SGD
 * with an L1 penalty and gradient clipping): compile the training program
 * (batch 16), write the initial weights (--steps 0 --save), train 5 steps
 * without shuffling or augmentation, and let tests/parity.py train the same
 * network from the same weights on the same batches in PyTorch and compare
 * every parameter: max |cnnc - torch| / max |torch| <= 1e-4 per tensor.
 *
 * Needs Debian's python3-torch (`make check` installs it); without it the
 * test says so and passes.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

static const char *lenet = "examples/lenet5.cnn";

static const char *residual =
    "network resnet_small {\n"
    "  x  = input(1, 28, 28)\n"
    "  c1 = conv2d(x, filters = 8, kernel = 3, padding = 1)\n"
    "  r1 = relu(c1)\n"
    "  c2 = conv2d(r1, filters = 8, kernel = 3, padding = same)\n"
    "  s  = add(c2, r1)\n"
    "  r2 = relu(s)\n"
    "  p  = avgpool(r2, kernel = 2)\n"
    "  c3 = conv2d(p, filters = 12, kernel = 3, stride = 2, bias = false)\n"
    "  r3 = relu(c3)\n"
    "  m  = maxpool(r3, kernel = 3, stride = 2, padding = 1)\n"
    "  f  = flatten(m)\n"
    "  d  = dense(f, units = 10)\n"
    "  loss = softmax_cross_entropy(d)\n"
    "}\n";

static const char *const recipes[] = {
    "optimizer = sgd(lr = 0.05, momentum = 0.9, weight_decay = 5e-4)",
    "optimizer = sgd(lr = 0.05, momentum = 0.9, nesterov = true)  l2 = 1e-3",
    "optimizer = adam(lr = 0.002)  l2 = 1e-3",
    "optimizer = adamw(lr = 0.002, weight_decay = 0.05)",
    "optimizer = rmsprop(lr = 0.001, eps = 1e-6, centered = true, momentum = 0.5)  l2 = 1e-3",
    "optimizer = sgd(lr = 0.1)  l1 = 1e-4  clip_norm = 0.5",
};

/* The cases: a network and a recipe.  ResNet-8 (batch norm in training
 * mode, then evaluation-mode predictions) with SGD and momentum. */
static const struct {
    int net;    /* 0 LeNet-5, 1 resnet_small, 2 ResNet-8 for 28x28 */
    int recipe; /* index into recipes */
} cases[] = {{0, 0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5}, {1, 0}, {1, 1},
             {1, 2}, {1, 3}, {1, 4}, {1, 5}, {2, 0}};

static char *data_dir;

static int have_torch(void)
{
    return system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = calloc((size_t)n + 1, 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    fclose(f);
    return buf;
}

/* The network text of case i: the network block with recipe r's train block. */
static char *network_text(int net, int recipe)
{
    char *base = net == 0 ? slurp(lenet) : net == 1 ? strdup(residual)
                                                    : slurp("examples/resnet8_mnist.cnn");
    ck_assert_ptr_nonnull(base);
    char *train = strstr(base, "\ntrain {");
    if (train)
        *train = '\0'; /* drop the example's own train block */
    size_t len = strlen(base) + strlen(recipes[recipe]) + 64;
    char *text = malloc(len);
    snprintf(text, len, "%s\ntrain {\n  %s\n}\n", base, recipes[recipe]);
    free(base);
    return text;
}

START_TEST(test_parity)
{
    if (!have_torch()) {
        fprintf(stderr, "SKIP test_parity: /usr/bin/python3 cannot import torch "
                        "(install python3-torch)\n");
        return;
    }
    if (!data_dir) {
        data_dir = tu_path("parity-data");
        mkdir(data_dir, 0755);
        ck_assert_int_eq(tu_write_idx_split(data_dir, "train", 96, 5), 0);
        ck_assert_int_eq(tu_write_idx_split(data_dir, "t10k", 32, 6), 0);
    }
    int net = cases[_i].net, recipe = cases[_i].recipe;
    char name[64];
    snprintf(name, sizeof name, "parity%d", _i);
    char *text = network_text(net, recipe);
    char file[128];
    snprintf(file, sizeof file, "%s.cnn", name);
    char *src = tu_path(file), *exe = tu_path(name), *json = NULL;
    ck_assert_int_eq(tu_write(src, text), 0);
    snprintf(file, sizeof file, "%s.json", name);
    json = tu_path(file);
    snprintf(file, sizeof file, "%s-init.safetensors", name);
    char *init = tu_path(file);
    snprintf(file, sizeof file, "%s-out.safetensors", name);
    char *out = tu_path(file);
    snprintf(file, sizeof file, "%s-predict.npy", name);
    char *npy = tu_path(file);
    const char *cnnc = getenv("CNNC") ? getenv("CNNC") : "build/cnnc";
    char *log = NULL;
    const char *c1[] = {cnnc, src, "--batch", "16", "--emit", "exe", "-o", exe, NULL};
    ck_assert_msg(tu_run(c1, &log) == 0, "%s", log);
    free(log);
    const char *c2[] = {cnnc, src, "--batch", "16", "--emit", "json", "-o", json, NULL};
    ck_assert_msg(tu_run(c2, &log) == 0, "%s", log);
    free(log);
    const char *r1[] = {exe, "--steps", "0", "--seed", "9", "--save", init, NULL};
    ck_assert_msg(tu_run(r1, &log) == 0, "%s", log);
    free(log);
    const char *r2[] = {exe, "--data", data_dir, "--load", init, "--steps", "5", "--no-shuffle",
                        "--no-augment", "--quiet", "--save", out, "--predict", npy, NULL};
    ck_assert_msg(tu_run(r2, &log) == 0, "%s", log);
    free(log);
    const char *py[] = {"/usr/bin/python3", "tests/parity.py", json, init, data_dir, "5", out,
                        net == 2 ? npy : NULL, NULL};
    int rc = tu_run(py, &log);
    const char *summary = strstr(log, "parity ");
    int len = summary ? (int)strcspn(summary, "\n") : 0;
    fprintf(stderr, "%.*s [%s]\n", len, summary ? summary : "", recipes[recipe]);
    ck_assert_msg(rc == 0, "parity failed for network %d with %s:\n%s", net,
                  recipes[recipe], log);
    free(log);
    free(text), free(src), free(exe), free(json), free(init), free(out), free(npy);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("parity");
    TCase *tc = tcase_create("pytorch");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_parity, 0, (int)(sizeof cases / sizeof cases[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
