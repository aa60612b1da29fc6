/*
 * test_cross.c — the same network compiled for other machines computes the
 * same numbers.
 *
 * Three builds of LeNet-5 (batch 16) and ResNet-8 for 28x28 (batch 8):
 *
 *   native   this machine, tuned for its CPU (AVX-512 here: 16-float tiles)
 *   x86-64   --cpu x86-64: SSE2 only, no FMA (4-float tiles, mul + add)
 *   aarch64  --target aarch64-linux-gnu: NEON (4-float tiles, 32 registers),
 *            run under qemu-aarch64 (binfmt is not available: qemu is
 *            called explicitly, with -L /usr/aarch64-linux-gnu)
 *
 * Each build is run by the same small program (tests/cross/driver.c, built
 * for the host and for AArch64 against that machine's libcnnrt) on the same
 * parameters, inputs and labels, written by this test: one train step (loss,
 * every gradient, the parameters after it — batch norm's running statistics
 * move) and a forward pass in evaluation mode.  Then the training programs
 * (`--emit exe`) of each build run a few steps of SGD on a generated IDX
 * data set from the same initial weights and save a checkpoint (AArch64's
 * with two threads, the others with one).  Against the native build,
 * every tensor must agree to
 *     max |other - native| / max(max |native|, floor)  <=  1e-5
 * for the loss and the forward outputs, and per parameter tensor for the
 * gradients and weights with floor = 1e-2 of the largest value of that
 * array in the network (a gradient that is zero in exact arithmetic, a bias
 * that starts at zero, is judged on the network's scale, not its own
 * rounding noise).  The measured errors are printed.
 *
 * The builds must really differ: the AArch64 library is an AArch64 ELF file
 * that the host cannot load, and its assembly has NEON fused multiply-adds;
 * the x86-64 build's assembly has no AVX register at all.  Without the
 * cross toolchain, the AArch64 runtime or qemu (make deps-cross; make
 * check builds the runtime), the AArch64 half says SKIP on stderr and the
 * x86-64 half still runs.
 */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define TOL 1e-5
/* The driver is linked dynamically (it dlopens the model): its C library
 * must be the one of the dynamic loader in /usr/aarch64-linux-gnu, not
 * Debian's arm64 multiarch libc6 that qemu would otherwise find in
 * /lib/aarch64-linux-gnu (make deps-cross installs it with arm64 jansson):
 * the two builds mixed can hang.  The training programs are static. */
#define QEMU "qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib"
#define CROSS "aarch64-linux-gnu"

static const char *cnnc;     /* the compiler under test */
static char build_dir[1024]; /* where cnnc and the runtimes are */
static char *host_driver, *arm_driver;
static const char *arm_missing; /* why the AArch64 half is skipped, or NULL */

/* Run a shell command built from fmt; its output goes to *log (malloc'd,
 * may be NULL).  Returns the exit status. */
static int sh(char **log, const char *fmt, ...)
{
    char cmd[8192], *logpath = tu_path("sh.log");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd - 64, fmt, ap);
    va_end(ap);
    char full[8448];
    snprintf(full, sizeof full, "( %s ) > '%s' 2>&1", cmd, logpath);
    int status = system(full);
    if (log)
        *log = tu_read_text(logpath, 1 << 16);
    free(logpath);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int have(const char *program)
{
    return sh(NULL, "command -v %s", program) == 0;
}

/* Build the drivers once; find out whether the AArch64 half can run. */
static void setup(void)
{
    if (host_driver)
        return;
    cnnc = getenv("CNNC") ? getenv("CNNC") : "build/cnnc";
    snprintf(build_dir, sizeof build_dir, "%s", cnnc);
    char *slash = strrchr(build_dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(build_dir, ".");
    /* The host driver links the host runtime as built (sanitized under
     * make asan: $CNNC_LDFLAGS then names the sanitizer runtimes). */
    host_driver = tu_path("driver-host");
    char *log = NULL;
    int rc = sh(&log,
                "cc -std=c11 -O2 -Iruntime tests/cross/driver.c %s/libcnnrt.a -o %s "
                "-ljansson -lz -lm -lpthread -ldl %s",
                build_dir, host_driver, getenv("CNNC_LDFLAGS") ? getenv("CNNC_LDFLAGS") : "");
    ck_assert_msg(rc == 0, "cannot build the host driver:\n%s", log);
    free(log);
    static char why[1200];
    char rt[1100];
    snprintf(rt, sizeof rt, "%s/%s/libcnnrt.a", build_dir, CROSS);
    if (!have(CROSS "-gcc"))
        arm_missing = CROSS "-gcc is not installed";
    else if (!have("qemu-aarch64"))
        arm_missing = "qemu-aarch64 is not installed";
    else if (access(rt, R_OK) != 0)
        arm_missing = (snprintf(why, sizeof why, "%s is not built", rt), why);
    if (arm_missing) {
        fprintf(stderr,
                "\n*** SKIP: test_cross: the AArch64 tests do not run: %s "
                "(make deps-cross installs the toolchain and qemu; make check builds the "
                "runtime) ***\n\n",
                arm_missing);
        return;
    }
    /* Dynamic, to dlopen the model, but with jansson and zlib static: qemu
     * then needs only the cross C library. */
    arm_driver = tu_path("driver-aarch64");
    rc = sh(&log,
            CROSS "-gcc -std=c11 -O2 -Iruntime tests/cross/driver.c %s -o %s "
                  "-Wl,-Bstatic -ljansson -lz -Wl,-Bdynamic -lm -lpthread -ldl",
            rt, arm_driver);
    ck_assert_msg(rc == 0, "cannot build the AArch64 driver:\n%s", log);
    free(log);
}

/* ---- one build of a network ------------------------------------------------------ */

typedef struct build {
    const char *name;  /* "native", "x86-64", "aarch64" */
    const char *flags; /* cnnc options */
    int cross;         /* runs under qemu, links without the sanitizers */
} build;

static const build builds[] = {
    {"native", "", 0},
    {"x86-64", "--cpu x86-64", 0},
    {"aarch64", "--target " CROSS, 1},
};
enum { NATIVE, BASELINE, ARM, NBUILDS };

/* cnnc FILE FLAGS [--emit exe] -o OUT, or the test fails; the path of
 * OUT (malloc'd).  A file compiled before is reused: compiling is most of
 * this test's time.  Cross builds link without $CNNC_LDFLAGS: sanitizer
 * runtimes are the host's. */
static char *compile(const char *file, const char *net, int batch, const build *b, int exe)
{
    char name[256];
    snprintf(name, sizeof name, "%s-%s%s", net, b->name, exe ? "-train" : ".so");
    char *out = tu_path(name), *log = NULL;
    if (access(out, R_OK) == 0)
        return out;
    int rc = sh(&log, "%s %s %s --batch %d %s %s -o %s", b->cross ? "env -u CNNC_LDFLAGS" : "",
                cnnc, file, batch, b->flags, exe ? "--emit exe" : "", out);
    ck_assert_msg(rc == 0, "cnnc %s %s failed:\n%s", file, b->flags, log);
    free(log);
    return out;
}

/* What the driver wrote. */
typedef struct result {
    float loss;
    float *grads, *params, *out;
} result;

static void run_driver(const build *b, const char *so, const char *in, const cnn_model_desc *d,
                       int n, result *r)
{
    char *outpath = tu_path("driver-out.bin"), *log = NULL;
    int rc = b->cross ? sh(&log, QEMU " %s %s %s %s", arm_driver, so, in, outpath)
                      : sh(&log, "%s %s %s %s", host_driver, so, in, outpath);
    ck_assert_msg(rc == 0, "the %s driver failed (status %d):\n%s", b->name, rc, log);
    free(log);
    size_t np = (size_t)d->param_floats, nout = (size_t)n * (size_t)d->classes;
    r->grads = malloc(sizeof(float) * np);
    r->params = malloc(sizeof(float) * np);
    r->out = malloc(sizeof(float) * nout);
    FILE *f = fopen(outpath, "rb");
    ck_assert(f != NULL);
    ck_assert(fread(&r->loss, sizeof(float), 1, f) == 1);
    ck_assert(fread(r->grads, sizeof(float), np, f) == np);
    ck_assert(fread(r->params, sizeof(float), np, f) == np);
    ck_assert(fread(r->out, sizeof(float), nout, f) == nout);
    ck_assert_msg(fgetc(f) == EOF, "the %s driver wrote too much", b->name);
    fclose(f);
    free(outpath);
}

static void result_free(result *r)
{
    free(r->grads), free(r->params), free(r->out);
}

static double max_abs(const float *x, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

/* The largest error over d's parameter tensors of a against reference b
 * (tu_rel_err per tensor, with the floor of the header comment). */
static double param_err(const cnn_model_desc *d, const float *a, const float *b)
{
    double floor = 1e-2 * max_abs(b, d->param_floats), worst = 0;
    for (int p = 0; p < d->n_params; p++) {
        const cnn_param_desc *pd = &d->params[p];
        worst = fmax(worst, tu_rel_err(a + pd->offset, b + pd->offset, pd->size, floor));
    }
    return worst;
}

/* The ELF machine of a file. */
static int elf_machine(const char *path)
{
    unsigned char h[20] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    return got == sizeof h ? h[18] | h[19] << 8 : -1;
}

/* ---- the tests ---------------------------------------------------------------------- */

static const struct {
    const char *file, *net;
    int batch;
} nets[] = {
    {"examples/lenet5.cnn", "lenet5", 16},
    {"examples/resnet8_mnist.cnn", "resnet8_mnist", 8},
};

/* Loss, gradients, parameters after a step and forward outputs of the
 * x86-64 and AArch64 builds against the native one. */
START_TEST(test_step_matches)
{
    setup();
    const char *file = nets[_i].file, *net = nets[_i].net;
    int batch = nets[_i].batch, n = batch - 1; /* a partial batch, as the last of an epoch */
    char *so[NBUILDS] = {0};
    for (int b = 0; b < NBUILDS; b++)
        if (b != ARM || !arm_missing)
            so[b] = compile(file, net, batch, &builds[b], 0);
    /* The inputs: the network's own initialization (with a seed), images
     * in [0, 1), random labels; the row past n is NaN and must not matter. */
    void *handle;
    cnn_error err;
    const cnn_model_desc *d = cnn_model_open(so[NATIVE], &handle, &err);
    ck_assert_msg(d != NULL, "%s", err.msg);
    int64_t np = d->param_floats, row = (int64_t)d->in_c * d->in_h * d->in_w;
    float *params = malloc(sizeof(float) * (size_t)np),
          *x = malloc(sizeof(float) * (size_t)(row * batch));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)batch);
    cnn_init_params(d, params, 11);
    tu_fill(x, row * batch, 0, 1, 12);
    for (int64_t i = row * n; i < row * batch; i++)
        x[i] = NAN;
    tu_fill_labels(labels, batch, d->classes, 13);
    char *in = tu_path("driver-in.bin");
    FILE *f = fopen(in, "wb");
    ck_assert(f != NULL);
    int32_t n32 = n;
    fwrite(&n32, sizeof n32, 1, f);
    fwrite(params, sizeof(float), (size_t)np, f);
    fwrite(x, sizeof(float), (size_t)(row * batch), f);
    fwrite(labels, sizeof(int32_t), (size_t)batch, f);
    ck_assert(fclose(f) == 0);

    result r[NBUILDS];
    run_driver(&builds[NATIVE], so[NATIVE], in, d, n, &r[NATIVE]);
    ck_assert_msg(isfinite(r[NATIVE].loss) && r[NATIVE].loss > 0, "loss %g", r[NATIVE].loss);
    ck_assert_msg(max_abs(r[NATIVE].grads, np) > 0, "every gradient is zero");
    for (int b = BASELINE; b < NBUILDS; b++) {
        if (!so[b])
            continue;
        run_driver(&builds[b], so[b], in, d, n, &r[b]);
        double e_loss = fabs((double)r[b].loss - r[NATIVE].loss) / fabs(r[NATIVE].loss);
        double e_grad = param_err(d, r[b].grads, r[NATIVE].grads);
        double e_param = param_err(d, r[b].params, r[NATIVE].params);
        double e_out = tu_rel_err(r[b].out, r[NATIVE].out, (int64_t)n * d->classes, 0);
        printf("test_cross: %-14s %-8s vs native: loss %.2g, gradients %.2g, parameters after "
               "the step %.2g, forward %.2g\n",
               net, builds[b].name, e_loss, e_grad, e_param, e_out);
        ck_assert_msg(e_loss <= TOL, "%s %s: loss %.9g vs %.9g", net, builds[b].name, r[b].loss,
                      r[NATIVE].loss);
        ck_assert_msg(e_grad <= TOL, "%s %s: gradients differ by %g", net, builds[b].name, e_grad);
        ck_assert_msg(e_param <= TOL, "%s %s: parameters differ by %g", net, builds[b].name,
                      e_param);
        ck_assert_msg(e_out <= TOL, "%s %s: forward differs by %g", net, builds[b].name, e_out);
        result_free(&r[b]);
    }
    fflush(stdout);
    result_free(&r[NATIVE]);
    if (so[ARM]) { /* really another machine's code */
        ck_assert_int_eq(elf_machine(so[ARM]), 183);
        void *h2;
        ck_assert(cnn_model_open(so[ARM], &h2, &err) == NULL);
    }
    cnn_model_close(handle);
    for (int b = 0; b < NBUILDS; b++)
        free(so[b]);
    free(params), free(x), free(labels), free(in);
}
END_TEST

/* A few SGD steps by each build's training program from the same initial
 * weights on the same generated data: the same weights. */
START_TEST(test_training_matches)
{
    setup();
    const char *file = nets[_i].file, *net = nets[_i].net;
    int batch = nets[_i].batch;
    char dname[128];
    snprintf(dname, sizeof dname, "data-%s", net);
    char *data = tu_path(dname);
    ck_assert_int_eq(mkdir(data, 0755), 0);
    ck_assert_int_eq(tu_write_idx_split(data, "train", 4 * batch, 21), 0);
    ck_assert_int_eq(tu_write_idx_split(data, "t10k", batch, 22), 0);
    char *so = compile(file, net, batch, &builds[NATIVE], 0);
    void *handle;
    cnn_error err;
    const cnn_model_desc *d = cnn_model_open(so, &handle, &err);
    ck_assert_msg(d != NULL, "%s", err.msg);
    size_t np = (size_t)d->param_floats;
    char init[1100];
    snprintf(init, sizeof init, "%s/%s-init.safetensors", tu_tmpdir(), net);
    float *w[NBUILDS + 1] = {0}; /* [NBUILDS]: the initial weights */
    char *log = NULL;
    for (int b = 0; b < NBUILDS; b++) {
        if (b == ARM && arm_missing)
            continue;
        char *exe = compile(file, net, batch, &builds[b], 1);
        if (b == ARM) { /* an AArch64 program that needs no shared library */
            ck_assert_int_eq(elf_machine(exe), 183);
            ck_assert_msg(sh(NULL,
                             CROSS "-readelf -lW %s | grep -q LOAD && ! " CROSS
                                   "-readelf -lW %s | grep -q INTERP",
                             exe, exe) == 0,
                          "%s is not static", exe);
        }
        if (b == NATIVE) { /* the initial weights, written by the native program */
            int rc = sh(&log, "%s --data %s --steps 0 --seed 5 --quiet --save %s", exe, data, init);
            ck_assert_msg(rc == 0, "%s", log);
            free(log);
        }
        char ckpt[1100];
        snprintf(ckpt, sizeof ckpt, "%s/%s-%s.safetensors", tu_tmpdir(), net, builds[b].name);
        /* AArch64 with two threads: the result must not depend on it, and
         * the thread pool's atomics get exercised on a weakly ordered ISA. */
        int rc = sh(&log,
                    "%s %s --data %s --load %s --steps 4 --seed 5 --threads %d --no-augment "
                    "--quiet --save %s",
                    b == ARM ? "qemu-aarch64" : "", exe, data, init, b == ARM ? 2 : 1, ckpt);
        ck_assert_msg(rc == 0, "the %s training program failed (status %d):\n%s", builds[b].name,
                      rc, log);
        free(log);
        w[b] = malloc(sizeof(float) * np);
        ck_assert_msg(cnn_checkpoint_load(ckpt, d, w[b], &err) == 0, "%s", err.msg);
        free(exe);
    }
    w[NBUILDS] = malloc(sizeof(float) * np);
    ck_assert_msg(cnn_checkpoint_load(init, d, w[NBUILDS], &err) == 0, "%s", err.msg);
    double moved = param_err(d, w[NATIVE], w[NBUILDS]);
    ck_assert_msg(moved > 1e-3, "%s: training did not change the weights (%g)", net, moved);
    for (int b = BASELINE; b < NBUILDS; b++) {
        if (!w[b])
            continue;
        double e = param_err(d, w[b], w[NATIVE]);
        printf("test_cross: %-14s %-8s vs native: weights after 4 SGD steps %.2g (the steps "
               "moved them by %.2g)\n",
               net, builds[b].name, e, moved);
        ck_assert_msg(e <= TOL, "%s %s: weights after training differ by %g", net, builds[b].name,
                      e);
    }
    fflush(stdout);
    for (int b = 0; b <= NBUILDS; b++)
        free(w[b]);
    cnn_model_close(handle);
    free(so), free(data);
}
END_TEST

/* What the tiling reads (schedule.c): NEON's 4 floats and 32 registers
 * for AArch64, each x86 level's own. */
START_TEST(test_descriptions)
{
    static const struct {
        const char *triple, *cpu;
        int lanes, registers, fma;
    } cases[] = {
        {CROSS, NULL, 4, 32, 1},
        {CROSS, "cortex-a72", 4, 32, 1},
        {"aarch64-unknown-linux-gnu", "neoverse-n1", 4, 32, 1},
        {NULL, "x86-64", 4, 16, 0},
        {NULL, "x86-64-v2", 4, 16, 0},
        {NULL, "x86-64-v3", 8, 16, 1},
        {"x86_64-linux-gnu", "x86-64-v4", 16, 32, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        target_desc t;
        ck_assert_int_eq(target_describe(cases[i].triple, cases[i].cpu, &t), 0);
        ck_assert_msg(t.lanes == cases[i].lanes && t.registers == cases[i].registers &&
                          t.fma == cases[i].fma && t.vector_bits == 32 * t.lanes,
                      "%s %s: %d lanes, %d registers, fma %d", cases[i].triple, cases[i].cpu,
                      t.lanes, t.registers, t.fma);
        ck_assert(t.l1_bytes >= 16 * 1024 && t.l2_bytes > t.l1_bytes);
    }
    target_desc host;
    ck_assert_int_eq(target_describe(NULL, NULL, &host), 0);
    ck_assert(host.lanes == 4 || host.lanes == 8 || host.lanes == 16);
    ck_assert(host.l1_bytes > 0 && host.l2_bytes > 0);
    ck_assert_str_eq(target_name("aarch64-unknown-linux-gnu"), CROSS);
}
END_TEST

/* The code really is each machine's: NEON FMAs for AArch64, no AVX at all
 * for x86-64, 512-bit registers for x86-64-v4. */
START_TEST(test_instructions)
{
    setup();
    static const struct {
        const char *flags, *must, *must_not;
    } cases[] = {
        {"--target " CROSS " --cpu cortex-a72", "fmla\tv", "ymm"},
        {"--target " CROSS, "fmla\tv", NULL},
        {"--cpu x86-64", "mulps", "ymm\\|vfmadd"}, /* no AVX, no FMA: multiply, add */
        {"--cpu x86-64-v4", "zmm", NULL},
    };
    char *s = tu_path("mlp.s");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *log = NULL;
        int rc = sh(&log, "%s examples/mlp.cnn %s --emit asm -o %s", cnnc, cases[i].flags, s);
        ck_assert_msg(rc == 0, "%s:\n%s", cases[i].flags, log);
        free(log);
        ck_assert_msg(sh(NULL, "grep -q '%s' %s", cases[i].must, s) == 0, "%s: no %s",
                      cases[i].flags, cases[i].must);
        if (cases[i].must_not)
            ck_assert_msg(sh(NULL, "grep -q '%s' %s", cases[i].must_not, s) != 0, "%s: has %s",
                          cases[i].flags, cases[i].must_not);
    }
    free(s);
}
END_TEST

/* Unknown targets and CPUs are usage errors that list what is supported;
 * a cross build never links a host runtime. */
START_TEST(test_errors)
{
    setup();
    char *log = NULL;
    ck_assert_int_eq(sh(&log, "%s examples/lenet5.cnn --target sparc-linux-gnu -o /dev/null", cnnc),
                     2);
    ck_assert_msg(strstr(log, "unknown target 'sparc-linux-gnu'") && strstr(log, CROSS) &&
                      strstr(log, "x86_64-linux-gnu"),
                  "%s", log);
    free(log);
    ck_assert_int_eq(
        sh(&log, "%s examples/lenet5.cnn --target %s --cpu pentium -o /dev/null", cnnc, CROSS), 2);
    ck_assert_msg(strstr(log, "unknown CPU 'pentium'") && strstr(log, "cortex-a72") &&
                      strstr(log, "neoverse-n1") && strstr(log, "generic"),
                  "%s", log);
    free(log);
    ck_assert_int_eq(sh(&log, "%s examples/lenet5.cnn --cpu cortex-a72 -o /dev/null", cnnc), 2);
    ck_assert_msg(strstr(log, "x86-64-v3") && strstr(log, "x86-64-v4"), "%s", log);
    free(log);
    /* Other spellings of a known triple are the same target. */
    char *s = tu_path("spelling.s");
    ck_assert_int_eq(sh(&log,
                        "%s examples/mlp.cnn --target aarch64-unknown-linux-gnu --emit asm "
                        "-o %s",
                        cnnc, s),
                     0);
    free(log);
    free(s);
    /* A cnnc whose only runtime is a host build: a cross --emit exe names
     * what is missing and how to build it. */
    char *bin = tu_path("bin");
    ck_assert_int_eq(mkdir(bin, 0755), 0);
    ck_assert_int_eq(sh(&log, "cp %s %s/cnnc && cp %s/libcnnrt.a %s/", cnnc, bin, build_dir, bin),
                     0);
    free(log);
    int rc = sh(&log,
                "env -u CNNC_RUNTIME_DIR %s/cnnc examples/mlp.cnn --target %s --emit exe "
                "-o %s/mlp-arm",
                bin, CROSS, bin);
    ck_assert_int_eq(rc, 1);
    if (have(CROSS "-gcc"))
        ck_assert_msg(strstr(log, "no runtime library libcnnrt.a for " CROSS) &&
                          strstr(log, "is built for x86-64") && strstr(log, "make TARGET=" CROSS),
                      "%s", log);
    else
        ck_assert_msg(strstr(log, CROSS "-gcc is not installed"), "%s", log);
    free(log);
    free(bin);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cross");
    TCase *tc = tcase_create("targets");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_descriptions);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_instructions);
    tcase_add_loop_test(tc, test_step_matches, 0, 2);
    tcase_add_loop_test(tc, test_training_matches, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* the drivers are built once */
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
