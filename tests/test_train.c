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
 */
#include <check.h>
#include <fcntl.h>
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
    char *outpath = tu_path("train-out.txt");
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        const char *argv[32] = {exe_path};
        int n = 1;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(exe_path, (char *const *)argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    if (out) {
        FILE *f = fopen(outpath, "r");
        size_t cap = 1 << 16, len = 0;
        *out = calloc(cap, 1);
        if (f) {
            len = fread(*out, 1, cap - 1, f);
            fclose(f);
        }
        (*out)[len] = '\0';
    }
    free(outpath);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
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

static Suite *suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("executable");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_save_load_round_trip);
    tcase_add_test(tc, test_training_learns_and_is_deterministic);
    tcase_add_test(tc, test_bad_input);
    suite_add_tcase(s, tc);
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
