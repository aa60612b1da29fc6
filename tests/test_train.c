/*
 * test_train.c — the training executable end to end: `cnnc --emit exe`
 * on LeNet-5 (batch 16), run on a small generated IDX data set.
 *
 *  - `--steps 0 --save` writes the initial weights; `--load` of that file
 *    followed by `--steps 0 --save` writes the same tensors again;
 *  - a few epochs from that checkpoint lower the loss and change the
 *    weights, and the weights equal those of an identical second run
 *    (training is deterministic);
 *  - bad input (missing data, corrupt checkpoint, unknown option) exits
 *    with 1 or 2 and names the problem.
 * The data set has ten classes drawn as bright horizontal bands at
 * class-dependent rows, plus noise, so a few epochs learn it.
 *
 * ResNet-8 (examples/resnet8.cnn, batch norm, residual adds, global
 * average pooling) trains on generated CIFAR-10 binary files with its own
 * recipe (normalization, flips, crops, warm-up, cosine schedule): it
 * learns, its checkpoint holds batch norm's tensors under PyTorch's names,
 * and evaluating that checkpoint (evaluation mode: the saved running
 * statistics) reproduces the test metrics of the run that wrote it.  A
 * truncated CIFAR-10 file stops the program with one line naming it.
 */
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char *exe_path, *data_dir;

/* Run the training program with args; stdout+stderr into *out. */
static int run_exe(const char *const *args, char **out)
{
    const char *argv[32] = {exe_path};
    int n = 1;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    return tu_run(argv, out);
}

static void setup(void)
{
    if (exe_path)
        return;
    data_dir = tu_path("data");
    ck_assert_int_eq(mkdir(data_dir, 0755), 0);
    ck_assert_int_eq(tu_write_idx_split(data_dir, "train", 480, 1), 0);
    ck_assert_int_eq(tu_write_idx_split(data_dir, "t10k", 160, 2), 0);
    exe_path = tu_path("lenet5-train");
    const char *cnnc = getenv("CNNC") ? getenv("CNNC") : "build/cnnc";
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s examples/lenet5.cnn --batch 16 --emit exe -o %s", cnnc, exe_path);
    ck_assert_int_eq(system(cmd), 0);
}

static int same_tensors(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    if (!fa || !fb)
        return 0;
    int same = 1, ca, cb;
    do {
        ca = fgetc(fa);
        cb = fgetc(fb);
        same = ca == cb;
    } while (same && ca != EOF);
    fclose(fa);
    fclose(fb);
    return same;
}

START_TEST(test_save_load_round_trip)
{
    setup();
    char *init = tu_path("init.safetensors"), *copy = tu_path("copy.safetensors");
    const char *a1[] = {"--data", data_dir, "--steps", "0", "--save", init, "--seed", "5", NULL};
    char *out = NULL;
    ck_assert_msg(run_exe(a1, &out) == 0, "%s", out);
    free(out);
    /* The same seed, so that the metadata (which records it) is the same too. */
    const char *a2[] = {"--data", data_dir, "--load", init, "--steps", "0", "--seed", "5",
                        "--save", copy, NULL};
    ck_assert_msg(run_exe(a2, &out) == 0, "%s", out);
    free(out);
    ck_assert_msg(same_tensors(init, copy), "a loaded and saved checkpoint differs");
    /* another seed gives other initial weights */
    char *other = tu_path("other.safetensors");
    const char *a3[] = {"--data", data_dir, "--steps", "0", "--save", other, "--seed", "6", NULL};
    ck_assert_int_eq(run_exe(a3, NULL), 0);
    ck_assert(!same_tensors(init, other));
    free(init), free(copy), free(other);
}
END_TEST

static double last_test_loss(const char *out)
{
    const char *p = out, *hit = NULL;
    while ((p = strstr(p, "test loss ")))
        hit = p++;
    ck_assert_msg(hit != NULL, "no 'test loss' in output:\n%s", out);
    return atof(hit + strlen("test loss "));
}

START_TEST(test_training_learns_and_is_deterministic)
{
    setup();
    char *init = tu_path("init2.safetensors");
    char *t1 = tu_path("t1.safetensors"), *t2 = tu_path("t2.safetensors");
    const char *a0[] = {"--data", data_dir, "--steps", "0", "--save", init, NULL};
    ck_assert_int_eq(run_exe(a0, NULL), 0);
    const char *a1[] = {"--data", data_dir, "--load", init, "--epochs", "1", "--steps", "1",
                        "--save", t1, NULL};
    char *out = NULL;
    ck_assert_msg(run_exe(a1, &out) == 0, "%s", out);
    double before = last_test_loss(out);
    free(out);
    const char *a2[] = {"--data", data_dir, "--load", init, "--epochs", "4", "--lr", "0.05",
                        "--save", t1, NULL};
    ck_assert_msg(run_exe(a2, &out) == 0, "%s", out);
    double after = last_test_loss(out);
    free(out);
    ck_assert_msg(after < 0.5 * before, "test loss %g after 4 epochs vs %g after one step", after,
                  before);
    ck_assert(!same_tensors(init, t1));
    const char *a3[] = {"--data", data_dir, "--load", init, "--epochs", "4", "--lr", "0.05",
                        "--save", t2, NULL};
    ck_assert_int_eq(run_exe(a3, NULL), 0);
    ck_assert_msg(same_tensors(t1, t2), "two identical runs gave different weights");
    free(init), free(t1), free(t2);
}
END_TEST

START_TEST(test_bad_input)
{
    setup();
    char *out = NULL;
    const char *a1[] = {"--data", "/no/such/dir", "--epochs", "1", NULL};
    ck_assert_int_eq(run_exe(a1, &out), 1);
    ck_assert_msg(strstr(out, "/no/such/dir") != NULL, "%s", out);
    free(out);
    char *bad = tu_path("bad.safetensors");
    tu_write(bad, "this is not a checkpoint");
    const char *a2[] = {"--data", data_dir, "--load", bad, "--steps", "0", NULL};
    ck_assert_int_eq(run_exe(a2, &out), 1);
    ck_assert_msg(strstr(out, "bad.safetensors") != NULL, "%s", out);
    free(out);
    const char *a3[] = {"--frobnicate", NULL};
    ck_assert_int_eq(run_exe(a3, NULL), 2);
    const char *a4[] = {"--epochs", "many", NULL};
    ck_assert_int_eq(run_exe(a4, NULL), 2);
    free(bad);
}
END_TEST

/* ---- resume, checkpoints, metrics, predictions ------------------------------- */

static char *rich_exe; /* LeNet-5 with a full training recipe */

static void setup_rich(void)
{
    setup();
    if (rich_exe)
        return;
    char *src = tu_path("rich.cnn");
    FILE *in = fopen("examples/lenet5.cnn", "r");
    ck_assert_ptr_nonnull(in);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, in);
    fclose(in);
    text[n] = '\0';
    *strstr(text, "\ntrain {") = '\0';
    strcat(text, "\ntrain {\n"
                 "  optimizer = adam(lr = 0.003)  l2 = 1e-4\n"
                 "  schedule = cosine()  warmup_epochs = 0.5\n"
                 "  normalize = auto  validation = 0.1\n"
                 "  augment = [hflip, crop(padding = 2), rotate(degrees = 10)]\n"
                 "  epochs = 3  seed = 11\n"
                 "}\n");
    ck_assert_int_eq(tu_write(src, text), 0);
    rich_exe = tu_path("rich-train");
    const char *cnnc = getenv("CNNC") ? getenv("CNNC") : "build/cnnc";
    const char *argv[] = {cnnc, src, "--batch", "16", "--emit", "exe", "-o", rich_exe, NULL};
    char *out = NULL;
    ck_assert_msg(tu_run(argv, &out) == 0, "%s", out);
    free(out);
    free(src);
}

/* Run exe on the data in dir with args (quietly unless `loud`). */
static int run_on(const char *exe, const char *dir, int loud, const char *const *args, char **out)
{
    const char *argv[32] = {exe, "--data", dir, "--quiet"};
    int n = loud ? 3 : 4;
    for (; *args && n < 31; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    return tu_run(argv, out);
}

/* Run the rich program with the data directory and args. */
static int run_rich(const char *const *args, char **out)
{
    return run_on(rich_exe, data_dir, 0, args, out);
}

START_TEST(test_resume_is_exact)
{
    setup_rich();
    char *straight = tu_path("straight.st"), *k1 = tu_path("k1.st"), *r = tu_path("r.st");
    char *mid = tu_path("mid.st"), *periodic = tu_path("periodic.st");
    char *out = NULL;
    const char *a[] = {"--epochs", "3", "--save", straight, NULL};
    ck_assert_msg(run_rich(a, &out) == 0, "%s", out);
    free(out);
    /* one epoch, then the other two */
    const char *b1[] = {"--epochs", "1", "--save", k1, NULL};
    ck_assert_int_eq(run_rich(b1, NULL), 0);
    const char *b2[] = {"--resume", k1, "--epochs", "3", "--save", r, NULL};
    ck_assert_msg(run_rich(b2, &out) == 0, "%s", out);
    free(out);
    ck_assert_msg(same_tensors(straight, r), "1 + 2 epochs differ from 3 straight");
    /* stopped in the middle of epoch 2, then resumed */
    const char *c1[] = {"--steps", "40", "--save", mid, NULL};
    ck_assert_int_eq(run_rich(c1, NULL), 0);
    const char *c2[] = {"--resume", mid, "--save", r, NULL};
    ck_assert_int_eq(run_rich(c2, NULL), 0);
    ck_assert_msg(same_tensors(straight, r), "resuming mid-epoch differs");
    /* periodic checkpoints: the last one, every 10 steps, resumed */
    const char *d1[] = {"--epochs", "3", "--checkpoint", periodic, "--checkpoint-every", "10",
                        NULL};
    ck_assert_int_eq(run_rich(d1, NULL), 0);
    ck_assert(!same_tensors(straight, periodic)); /* taken before the last steps */
    const char *d2[] = {"--resume", periodic, "--save", r, NULL};
    ck_assert_int_eq(run_rich(d2, NULL), 0);
    ck_assert_msg(same_tensors(straight, r), "resuming a periodic checkpoint differs");
    free(straight), free(k1), free(r), free(mid), free(periodic);
}
END_TEST

START_TEST(test_metrics_eval_predict)
{
    setup_rich();
    char *w = tu_path("w.st"), *csv = tu_path("m.csv"), *npy = tu_path("p.npy");
    const char *a[] = {"--epochs", "2", "--save", w, "--log", csv, NULL};
    ck_assert_int_eq(run_rich(a, NULL), 0);
    FILE *f = fopen(csv, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    int rows = 0;
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "epoch,step,lr,train_loss,train_acc,val_loss,val_acc,test_loss,"
                           "test_acc,seconds\n");
    while (fgets(line, sizeof line, f))
        rows++;
    fclose(f);
    ck_assert_int_eq(rows, 2);
    /* --eval prints the test accuracy of the loaded weights; --predict
     * writes their logits, whose argmax gives the same accuracy. */
    const char *b[] = {"--load", w, "--eval", "--predict", npy, NULL};
    const char *argv[16] = {rich_exe, "--data", data_dir};
    int n = 3;
    for (const char *const *p = b; *p; p++)
        argv[n++] = *p;
    argv[n] = NULL;
    char *out = NULL;
    ck_assert_int_eq(tu_run(argv, &out), 0);
    char *acc = strstr(out, "test loss ");
    ck_assert_msg(acc != NULL, "%s", out);
    double printed = atof(strstr(acc, "acc ") + 4);
    free(out);
    f = fopen(npy, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char head[10];
    ck_assert_int_eq(fread(head, 1, 10, f), 10);
    ck_assert(memcmp(head, "\x93NUMPY\x01\x00", 8) == 0);
    int hlen = head[8] | head[9] << 8;
    ck_assert_int_eq((10 + hlen) % 64, 0);
    char header[256] = {0};
    ck_assert_int_eq(fread(header, 1, (size_t)hlen, f), (size_t)hlen);
    ck_assert_ptr_nonnull(strstr(header, "'shape': (160, 10)"));
    float logits[160 * 10];
    ck_assert_int_eq(fread(logits, sizeof(float), 1600, f), 1600);
    fclose(f);
    char labels_path[1024];
    snprintf(labels_path, sizeof labels_path, "%s/t10k-labels-idx1-ubyte", data_dir);
    f = fopen(labels_path, "rb");
    unsigned char labels[160 + 8];
    ck_assert_int_eq(fread(labels, 1, sizeof labels, f), sizeof labels);
    fclose(f);
    int right = 0;
    for (int i = 0; i < 160; i++) {
        int best = 0;
        for (int j = 1; j < 10; j++)
            if (logits[i * 10 + j] > logits[i * 10 + best])
                best = j;
        right += best == labels[8 + i];
    }
    ck_assert_msg(fabs(100.0 * right / 160 - printed) < 0.01, "npy accuracy %g%%, printed %g%%",
                  100.0 * right / 160, printed);
    free(w), free(csv), free(npy);
}
END_TEST

START_TEST(test_foreign_and_bad_checkpoints)
{
    setup_rich();
    char *mlp = tu_path("mlp-train"), *mw = tu_path("mlp.st"), *trunc = tu_path("trunc.st");
    char *w = tu_path("w2.st");
    const char *cnnc = getenv("CNNC") ? getenv("CNNC") : "build/cnnc";
    const char *c[] = {cnnc, "examples/mlp.cnn", "--emit", "exe", "-o", mlp, NULL};
    ck_assert_int_eq(tu_run(c, NULL), 0);
    const char *m1[] = {mlp, "--steps", "0", "--save", mw, NULL};
    ck_assert_int_eq(tu_run(m1, NULL), 0);
    char *out = NULL;
    /* another network's weights: the first missing tensor is named */
    const char *a[] = {"--load", mw, "--eval", NULL};
    ck_assert_int_eq(run_rich(a, &out), 1);
    ck_assert_msg(strstr(out, "tensor conv1.weight is missing") &&
                      strstr(out, "checkpoint of network mlp"), "%s", out);
    free(out);
    /* resuming from weights of another network is refused too */
    const char *b[] = {"--resume", mw, NULL};
    ck_assert_int_eq(run_rich(b, &out), 1);
    ck_assert_msg(strstr(out, "mlp.st"), "%s", out);
    free(out);
    /* a truncated checkpoint */
    const char *s0[] = {"--steps", "0", "--save", w, NULL};
    ck_assert_int_eq(run_rich(s0, NULL), 0);
    FILE *f = fopen(w, "rb"), *g = fopen(trunc, "wb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fwrite(buf, 1, n, g);
    fclose(f);
    fclose(g);
    const char *t[] = {"--resume", trunc, NULL};
    ck_assert_int_eq(run_rich(t, &out), 1);
    ck_assert_msg(strstr(out, "trunc.st") && strstr(out, "truncated"), "%s", out);
    free(out);
    /* bad option values are usage errors */
    const char *u[] = {"--checkpoint-every", "often", NULL};
    ck_assert_int_eq(run_rich(u, &out), 2);
    ck_assert_msg(strstr(out, "--checkpoint-every"), "%s", out);
    free(out);
    const char *v[] = {"--load", w, "--resume", w, NULL};
    ck_assert_int_eq(run_rich(v, NULL), 2);
    free(mlp), free(mw), free(trunc), free(w);
}
END_TEST

/* ---- ResNet-8 on CIFAR-10 files ------------------------------------------------ */

static char *cifar_dir, *resnet_exe;

/* Two training batches of 160 records and a test batch of 160, named as
 * CIFAR-10's archive names them, and examples/resnet8.cnn compiled with
 * batch 16.  -O1 runs the same tiled kernels as -O2 (the two differ only
 * in LLVM's pass pipeline and give the same numbers) and compiles in about
 * half the time; test_compile checks the -O2 build against the reference. */
static void setup_cifar(void)
{
    if (resnet_exe)
        return;
    cifar_dir = tu_path("cifar");
    ck_assert_int_eq(mkdir(cifar_dir, 0755), 0);
    const char *files[] = {"data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"};
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", cifar_dir, files[i]);
        ck_assert_int_eq(tu_write_cifar_file(path, 160, (uint64_t)i + 1), 0);
    }
    resnet_exe = tu_path("resnet8-train");
    const char *cnnc = getenv("CNNC") ? getenv("CNNC") : "build/cnnc";
    const char *argv[] = {cnnc, "examples/resnet8.cnn", "--batch", "16", "-O1",
                          "--emit", "exe", "-o", resnet_exe, NULL};
    char *out = NULL;
    ck_assert_msg(tu_run(argv, &out) == 0, "%s", out);
    free(out);
}

/* Columns of the metrics CSV that the tests read. */
enum { CSV_TRAIN_LOSS = 3, CSV_TEST_LOSS = 7, CSV_TEST_ACC = 8, CSV_COLUMNS = 10 };

/* The last row of a metrics CSV into row (empty fields are NaN); returns
 * the number of rows after the header. */
static int csv_last_row(const char *path, double row[CSV_COLUMNS])
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no metrics file %s", path);
    char line[512];
    int rows = -1;
    while (fgets(line, sizeof line, f)) {
        if (++rows == 0)
            continue;
        const char *p = line;
        for (int i = 0; i < CSV_COLUMNS; i++) {
            row[i] = *p == ',' || *p == '\n' ? NAN : atof(p);
            p = strchr(p, ',');
            ck_assert_msg(p || i == CSV_COLUMNS - 1, "short row in %s: %s", path, line);
            p = p ? p + 1 : p;
        }
    }
    fclose(f);
    return rows;
}

/* A safetensors file's JSON header; *data is the whole file (malloc'd),
 * *base where the tensor bytes start in it. */
static json_t *safetensors_header(const char *path, unsigned char **data, size_t *base)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "no checkpoint %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    *data = malloc((size_t)size);
    ck_assert_int_eq(fread(*data, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | (*data)[i];
    ck_assert_uint_le(8 + hlen, (uint64_t)size);
    json_error_t jerr;
    json_t *h = json_loadb((const char *)*data + 8, hlen, 0, &jerr);
    ck_assert_msg(h != NULL, "%s: bad header: %s", path, jerr.text);
    *base = 8 + hlen;
    return h;
}

/* The tensor `name` of header h: F32, shape [channels]; its bytes. */
static const unsigned char *bn_tensor(json_t *h, const unsigned char *data, size_t base,
                              const char *name, int channels)
{
    json_t *t = json_object_get(h, name);
    ck_assert_msg(t != NULL, "checkpoint has no tensor %s", name);
    ck_assert_str_eq(json_string_value(json_object_get(t, "dtype")), "F32");
    json_t *shape = json_object_get(t, "shape");
    ck_assert_msg(json_array_size(shape) == 1 &&
                      json_integer_value(json_array_get(shape, 0)) == channels,
                  "%s: shape is not [%d]", name, channels);
    json_t *at = json_object_get(t, "data_offsets");
    json_int_t begin = json_integer_value(json_array_get(at, 0));
    ck_assert_int_eq(json_integer_value(json_array_get(at, 1)) - begin, 4 * channels);
    return data + base + begin;
}

/* Every batch norm layer of resnet8.cnn has weight, bias, running_mean and
 * running_var of its channel count, as nn.BatchNorm2d's state_dict does;
 * the running statistics moved from their initial 0 and 1, the variances
 * stayed positive, and the optimizer keeps no state for them. */
static void check_batchnorm_tensors(const char *path)
{
    static const struct {
        const char *layer;
        int channels;
    } bns[] = {{"bn0", 16}, {"b1a", 16}, {"b1b", 16}, {"b2a", 32}, {"b2b", 32},
               {"bp2", 32}, {"b3a", 64}, {"b3b", 64}, {"bp3", 64}};
    unsigned char *data;
    size_t base;
    json_t *h = safetensors_header(path, &data, &base);
    for (size_t i = 0; i < sizeof bns / sizeof bns[0]; i++) {
        char name[64];
        int c = bns[i].channels;
        snprintf(name, sizeof name, "%s.weight", bns[i].layer);
        bn_tensor(h, data, base, name, c);
        snprintf(name, sizeof name, "%s.bias", bns[i].layer);
        bn_tensor(h, data, base, name, c);
        snprintf(name, sizeof name, "%s.running_mean", bns[i].layer);
        const unsigned char *mean = bn_tensor(h, data, base, name, c);
        snprintf(name, sizeof name, "%s.running_var", bns[i].layer);
        const unsigned char *var = bn_tensor(h, data, base, name, c);
        int mean_moved = 0, var_moved = 0;
        for (int k = 0; k < c; k++) {
            float m, v;
            memcpy(&m, mean + 4 * k, sizeof m); /* little-endian F32, as this machine */
            memcpy(&v, var + 4 * k, sizeof v);
            mean_moved |= fabsf(m) > 1e-3f;
            var_moved |= fabsf(v - 1) > 1e-3f;
            ck_assert_msg(v > 0, "%s.running_var[%d] = %g", bns[i].layer, k, v);
        }
        ck_assert_msg(mean_moved && var_moved, "%s: running statistics never updated",
                      bns[i].layer);
    }
    ck_assert_ptr_null(json_object_get(h, "stem.bias")); /* bias = false: no tensor */
    const char *key;
    json_t *value;
    json_object_foreach(h, key, value)
        ck_assert_msg(strncmp(key, "optimizer.", 10) != 0 || !strstr(key, ".running_"),
                      "optimizer state for a running statistic: %s", key);
    json_decref(h);
    free(data);
}

/* "test loss L acc A%" in out. */
static void printed_test_metrics(const char *out, double *loss, double *acc)
{
    const char *p = strstr(out, "test loss ");
    ck_assert_msg(p && strstr(p, " acc "), "no test metrics in:\n%s", out);
    *loss = atof(p + strlen("test loss "));
    *acc = atof(strstr(p, " acc ") + strlen(" acc "));
}

START_TEST(test_resnet8_learns_cifar)
{
    setup_cifar();
    char *first = tu_path("r8-first.csv"), *log = tu_path("r8.csv"), *w = tu_path("r8.st");
    char *out = NULL;
    double row1[CSV_COLUMNS], row[CSV_COLUMNS];
    /* one step: the loss of the initial weights */
    const char *a1[] = {"--epochs", "1", "--steps", "1", "--log", first, NULL};
    ck_assert_msg(run_on(resnet_exe, cifar_dir, 0, a1, &out) == 0, "%s", out);
    free(out);
    ck_assert_int_eq(csv_last_row(first, row1), 1);
    /* three epochs of the example's recipe: 60 steps */
    const char *a2[] = {"--epochs", "3", "--log", log, "--save", w, NULL};
    ck_assert_msg(run_on(resnet_exe, cifar_dir, 0, a2, &out) == 0, "%s", out);
    free(out);
    ck_assert_int_eq(csv_last_row(log, row), 3);
    ck_assert_msg(row[CSV_TRAIN_LOSS] < 0.5 * row1[CSV_TRAIN_LOSS],
                  "train loss %g in epoch 3 vs %g at the first step", row[CSV_TRAIN_LOSS],
                  row1[CSV_TRAIN_LOSS]);
    ck_assert_msg(row[CSV_TEST_ACC] >= 0.6, "test accuracy %g after 3 epochs (chance: 0.1)",
                  row[CSV_TEST_ACC]);
    /* The checkpoint in evaluation mode gives the run's last test metrics:
     * the running statistics were saved and --eval uses them. */
    const char *a3[] = {"--load", w, "--eval", NULL};
    ck_assert_msg(run_on(resnet_exe, cifar_dir, 1, a3, &out) == 0, "%s", out);
    double loss, acc;
    printed_test_metrics(out, &loss, &acc);
    free(out);
    ck_assert_msg(fabs(loss - row[CSV_TEST_LOSS]) <= 1e-4 * (1 + row[CSV_TEST_LOSS]) &&
                      fabs(acc - 100 * row[CSV_TEST_ACC]) < 0.01,
                  "--eval of the checkpoint: loss %g acc %g%%; the run: loss %g acc %g%%", loss,
                  acc, row[CSV_TEST_LOSS], 100 * row[CSV_TEST_ACC]);
    check_batchnorm_tensors(w);
    free(first), free(log), free(w);
}
END_TEST

/* The loader's messages for every kind of broken CIFAR-10 file are tested
 * in rt_test_loader.c; this is the training program's side: exit status 1,
 * one line naming the file, nothing saved. */
START_TEST(test_cifar_truncated_file)
{
    setup_cifar();
    char *dir = tu_path("cifar-truncated"), *w = tu_path("never.st");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    char path[1024];
    snprintf(path, sizeof path, "%s/data_batch_1.bin", dir);
    ck_assert_int_eq(tu_write_cifar_file(path, 4, 1), 0);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    ck_assert_int_eq(tu_write_cifar_file(path, 4, 2), 0);
    snprintf(path, sizeof path, "%s/data_batch_2.bin", dir);
    ck_assert_int_eq(tu_write_cifar_file(path, 4, 3), 0);
    ck_assert_int_eq(truncate(path, 3 * 3073 + 1000), 0); /* a download cut short */
    const char *a[] = {"--epochs", "1", "--save", w, NULL};
    char *out = NULL;
    ck_assert_int_eq(run_on(resnet_exe, dir, 0, a, &out), 1);
    ck_assert_msg(strstr(out, path) && strstr(out, "truncated or not CIFAR-10"), "%s", out);
    ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "not one line:\n%s", out);
    free(out);
    ck_assert_int_ne(access(w, F_OK), 0);
    free(dir), free(w);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("executable");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_save_load_round_trip);
    tcase_add_test(tc, test_training_learns_and_is_deterministic);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_resume_is_exact);
    tcase_add_test(tc, test_metrics_eval_predict);
    tcase_add_test(tc, test_foreign_and_bad_checkpoints);
    suite_add_tcase(s, tc);
    /* its own case, so that CK_RUN_CASE=cifar runs it alone */
    TCase *cifar = tcase_create("cifar");
    tcase_set_timeout(cifar, 300);
    tcase_add_test(cifar, test_resnet8_learns_cifar);
    tcase_add_test(cifar, test_cifar_truncated_file);
    suite_add_tcase(s, cifar);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* the set-up is shared between tests */
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
