/*
 * driver.c — one compilation from source text to loop IR (cnnc_frontend),
 * shared by the cnnc command and the tests.
 *
 * Stages stop at the first that reports an error, so a syntax error never
 * produces a second, confused message from a later stage.  -O0 keeps every
 * tensor in its own arena slot (no buffer reuse); -O1 and up reuse memory
 * between tensors whose lifetimes do not overlap.
 */
#include <time.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"

/* Which forward kernels have a train kernel with the same code: the two
 * programs' forward layers lower alike, and memplan places the forward
 * program's values at the train step's offsets, so most of them do.  -O0
 * compiles each program on its own. */
static void match_kernels(cnnc_unit *u)
{
    const lprogram *t = u->train_prog, *f = u->infer_prog;
    u->same_as_train = arena_alloc(&u->a, sizeof(int) * (size_t)(f->nkernels + 1));
    u->nsame = 0;
    int fast = u->opt->opt_level >= 1;
    for (int i = 0; i < f->nkernels; i++) {
        u->same_as_train[i] = -1;
        for (int j = 0; fast && j < t->nkernels && u->same_as_train[i] < 0; j++)
            if (strcmp(f->kernels[i].name, t->kernels[j].name) == 0 && lk_same(f, i, t, j))
                u->same_as_train[i] = j;
        u->nsame += u->same_as_train[i] >= 0;
    }
}

int cnnc_frontend(cnnc_unit *u, const cnnc_options *opt, const char *text, FILE *diag_out)
{
    memset(u, 0, sizeof *u);
    u->opt = opt;
    diag_init(&u->d, diag_out);
    u->src = text ? src_from_string(opt->input, text) : src_read(opt->input);
    if (!u->src) {
        fprintf(diag_out, "cnnc: error: cannot read %s: %s\n", opt->input, strerror(errno));
        u->d.errors++;
        return -1;
    }
    u->ast = dsl_parse(u->src, &u->a, &u->d);
    if (!u->ast)
        return -1;
    u->net = sema_network(u->ast, &u->a, &u->d);
    if (!u->net)
        return -1;
    if (opt->batch > 0) {
        u->net->batch = opt->batch;
        json_object_set_new(u->net->train, "batch", json_integer(opt->batch));
    }
    if (target_describe(opt->target, opt->cpu, &u->target) != 0) {
        u->d.errors++;
        return -1;
    }
    u->train = graph_build(&u->a, u->net, GRAPH_TRAIN, &u->d);
    if (!u->train || u->d.errors)
        return -1;
    /* Same layers, same checks: only the train build warns. */
    u->infer = graph_build(&u->a, u->net, GRAPH_INFER, &u->d);
    if (!u->infer)
        return -1;
    graph_autodiff(u->train, 0);
    if (opt->emit == EMIT_JSON) { /* the layers as written, not their tiled forms */
        size_t len;
        FILE *f = open_memstream(&u->network_json, &len);
        graph_print_json(f, u->train);
        fclose(f);
    }
    int fast = opt->opt_level >= 1;
    u->layers = graph_copy(&u->a, u->train);
    if (fast) {
        graph_prepare_tiled(u->train, &u->target);
        graph_prepare_tiled(u->infer, &u->target);
        FILE *report = opt->verbose ? stderr : NULL;
        graph_fuse(u->train, report);
        graph_fuse(u->infer, report);
        if (!opt->keep_pads) {
            graph_absorb_pads(u->train, report);
            graph_absorb_pads(u->infer, report);
        }
        graph_bn_stats(u->train, report);
    }
    int reuse = opt->opt_level >= 1;
    u->train_arena = memplan(u->train, reuse, NULL, &u->train_plan);
    u->infer_arena = memplan(u->infer, reuse, u->train, &u->infer_plan);
    u->arena_bytes = u->train_arena > u->infer_arena ? u->train_arena : u->infer_arena;
    u->train_prog = lower_graph(&u->a, u->train, fast ? &u->target : NULL);
    u->infer_prog = lower_graph(&u->a, u->infer, fast ? &u->target : NULL);
    if (fast) {
        lprogram *progs[2] = {u->train_prog, u->infer_prog};
        for (int i = 0; i < 2; i++) {
            loop_vectorize(progs[i]);
            loop_unroll(progs[i]);
        }
    }
    match_kernels(u);
    return 0;
}

double cnnc_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void cnnc_unit_free(cnnc_unit *u)
{
    free(u->network_json);
    network_free(u->net);
    arena_free(&u->a);
    src_free(u->src);
    memset(u, 0, sizeof *u);
}
