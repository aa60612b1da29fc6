/*
 * testutil.c — helpers for the compiler-side tests (testutil.h).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

static void remove_tmpdir(void)
{
    if (!tmpdir[0])
        return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmpdir);
}

const char *tu_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/cnnc-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

char *tu_path(const char *name)
{
    char *p = malloc(strlen(tu_tmpdir()) + strlen(name) + 2);
    sprintf(p, "%s/%s", tu_tmpdir(), name);
    return p;
}

int tu_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f) == 0 ? 0 : -1;
}

int tu_frontend(cnnc_unit *u, cnnc_options *opt, const char *name, const char *text,
                char **diags)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    opt->input = name;
    int rc = cnnc_frontend(u, opt, text, out);
    fclose(out);
    if (diags)
        *diags = buf;
    else
        free(buf);
    return rc;
}

int tu_compile(tu_model *m, const char *name, const char *text, int opt_level)
{
    return tu_compile_chunked(m, name, text, opt_level, 0);
}

int tu_compile_chunked(tu_model *m, const char *name, const char *text, int opt_level, int chunk)
{
    cnnc_options opt = {0};
    opt.opt_level = opt_level;
    opt.forward_chunk = chunk;
    return tu_compile_with(m, name, text, &opt);
}

int tu_compile_with(tu_model *m, const char *name, const char *text, const cnnc_options *opt)
{
    memset(m, 0, sizeof *m);
    m->opt = *opt;
    int opt_level = opt->opt_level;
    char *diags = NULL;
    if (tu_frontend(&m->unit, &m->opt, name, text, &diags) != 0) {
        fprintf(stderr, "%s: front end failed:\n%s", name, diags ? diags : "");
        free(diags);
        return -1;
    }
    free(diags);
    m->ref_opt = m->opt;
    m->ref_opt.opt_level = 0;
    if (tu_frontend(&m->ref, &m->ref_opt, name, text, NULL) != 0)
        return -1;
    char file[128];
    static int counter;
    snprintf(file, sizeof file, "%s-O%d-%d-%d.so", name, opt_level, (int)getpid(), counter++);
    m->so_path = tu_path(file);
    if (cnnc_emit(&m->unit, EMIT_SO, m->so_path) != 0)
        return -1;
    cnn_error err;
    m->desc = cnn_model_open(m->so_path, &m->handle, &err);
    if (!m->desc) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    m->ctx = cnn_ctx_create(m->desc, 1, &err);
    if (!m->ctx) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

void tu_model_free(tu_model *m)
{
    if (m->ctx)
        cnn_ctx_free(m->ctx);
    if (m->handle)
        cnn_model_close(m->handle);
    cnnc_unit_free(&m->unit);
    cnnc_unit_free(&m->ref);
    free(m->so_path);
    memset(m, 0, sizeof *m);
}

void tu_fill(float *x, int64_t count, float lo, float hi, uint64_t seed)
{
    cnn_rng r;
    cnn_rng_seed(&r, seed);
    for (int64_t i = 0; i < count; i++)
        x[i] = lo + (hi - lo) * (float)cnn_rng_uniform(&r);
}

void tu_fill_labels(int32_t *y, int count, int classes, uint64_t seed)
{
    cnn_rng r;
    cnn_rng_seed(&r, seed);
    for (int i = 0; i < count; i++)
        y[i] = (int32_t)cnn_rng_below(&r, (uint64_t)classes);
}

double tu_rel_err(const float *a, const float *b, int64_t count, double floor)
{
    double maxdiff = 0, maxref = floor;
    for (int64_t i = 0; i < count; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(d))
            return INFINITY;
        if (d > maxdiff)
            maxdiff = d;
        if (fabs(b[i]) > maxref)
            maxref = fabs(b[i]);
    }
    return maxdiff / maxref;
}

static void put_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

int tu_write_idx_split(const char *dir, const char *split, int count, uint64_t seed)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    FILE *img = fopen(path, "wb");
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, split);
    FILE *lab = fopen(path, "wb");
    if (!img || !lab) {
        if (img)
            fclose(img);
        if (lab)
            fclose(lab);
        return -1;
    }
    put_be32(img, 0x803), put_be32(img, (uint32_t)count), put_be32(img, 28), put_be32(img, 28);
    put_be32(lab, 0x801), put_be32(lab, (uint32_t)count);
    cnn_rng r;
    cnn_rng_seed(&r, seed);
    for (int i = 0; i < count; i++) {
        int label = (int)cnn_rng_below(&r, 10);
        fputc(label, lab);
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                int band = y >= 2 + label * 2 && y < 4 + label * 2;
                fputc((band ? 200 : 20) + (int)cnn_rng_below(&r, 40), img);
            }
    }
    int bad = fclose(img) != 0;
    bad |= fclose(lab) != 0;
    return bad ? -1 : 0;
}

int tu_write_cifar_file(const char *path, int count, uint64_t seed)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    cnn_rng r;
    cnn_rng_seed(&r, seed);
    for (int i = 0; i < count; i++) {
        int label = (int)cnn_rng_below(&r, 10);
        fputc(label, f);
        /* class k: channel c at level (k / 3^c) % 3, a digit of k in base 3 */
        for (int c = 0, digits = label; c < 3; c++, digits /= 3) {
            int level = 40 + 90 * (digits % 3);
            for (int p = 0; p < 32 * 32; p++)
                fputc(level - 35 + (int)cnn_rng_below(&r, 71), f); /* 5..255 */
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

int tu_run(const char *const *argv, char **out)
{
    char *outpath = tu_path("run-output.txt");
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(outpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (out)
        *out = tu_read_text(outpath, 1 << 20);
    free(outpath);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

char *tu_read_text(const char *path, size_t cap)
{
    char *text = calloc(cap, 1);
    FILE *f = fopen(path, "r");
    size_t len = 0;
    if (f) {
        len = fread(text, 1, cap - 1, f);
        fclose(f);
    }
    text[len] = '\0';
    return text;
}
