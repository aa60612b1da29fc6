/*
 * test_compile.c — compiled code against the reference interpreter.
 *
 * For every network below, at -O0 and -O2: compile to a shared library,
 * load it through the runtime, run a train step and a forward pass on
 * random inputs, and compare the loss, the logits, every parameter
 * gradient and the forward outputs with the reference interpreter
 * (tests/reference.c).  Tolerance: for every tensor,
 *     max |compiled - reference| / max |reference|  <=  1e-4
 * (the reference accumulates in double, the compiled code in float); for
 * gradients, max |reference| is at least 1e-2 of the network's largest
 * gradient, so that a gradient that is zero in exact arithmetic (a bias
 * before batch norm) is judged on the network's scale, not its own noise.
 *
 * Each network runs twice: with a full batch, and with n = batch - 1 while
 * the unused last row of x is NaN — any kernel that reads past n would
 * poison a gradient.
 *
 * The networks cover every op and option: convolution with stride 1/2/3,
 * explicit, asymmetric and "same" padding, non-square kernels and inputs,
 * no bias; max and average pooling with stride and padding; dense with and
 * without bias; flatten of the input; residual add; and the examples.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nets.h"
#include "reference.h"
#include "testutil.h"

#define TOL 1e-4

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    size_t got = fread(buf, 1, (size_t)len, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* Compare compiled m against the reference on n examples. */
static void compare(tu_model *m, int n, uint64_t seed)
{
    const cnn_model_desc *d = m->desc;
    const ir_graph *tg = m->ref.train, *ig = m->ref.infer; /* unoptimized graphs */
    int64_t row = (int64_t)d->in_c * d->in_h * d->in_w;
    float *x = malloc(sizeof(float) * (size_t)(row * d->batch));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)d->batch);
    tu_fill(x, row * d->batch, -1, 1, seed);
    for (int64_t i = (int64_t)n * row; i < row * d->batch; i++)
        x[i] = NAN; /* rows past n must never be read */
    tu_fill_labels(y, d->batch, d->classes, seed + 1);
    tu_fill(m->ctx->params, d->param_floats, -0.5f, 0.5f, seed + 2);
    for (int p = 0; p < d->n_params; p++) /* variances must be positive */
        if (d->params[p].kind == CNN_PARAM_RUNNING_VAR)
            tu_fill(m->ctx->params + d->params[p].offset, d->params[p].size, 0.5f, 1.5f, seed + 3);
    size_t pbytes = sizeof(float) * (size_t)d->param_floats;
    float *ref_params = malloc(pbytes), *ref_grads = calloc((size_t)d->param_floats, sizeof(float));
    memcpy(ref_params, m->ctx->params, pbytes);
    m->ctx->seed = ref_seed = 1234 + seed; /* dropout's stream */
    m->ctx->step = ref_step = 7;
    ref_result ref;
    ck_assert_int_eq(ref_run(tg, ref_params, ref_grads, x, y, n, &ref), 0);
    if (m->unit.opt->opt_level > 0) {
        /* The rewritten graph (tiled forms, folded batch norm) computes the
         * same, run by the reference too: the rewrite alone is right. */
        float *p2 = malloc(pbytes), *g2 = calloc((size_t)d->param_floats, sizeof(float));
        memcpy(p2, m->ctx->params, pbytes);
        ref_result r2;
        ck_assert_int_eq(ref_run(m->unit.train, p2, g2, x, y, n, &r2), 0);
        ck_assert_msg(fabs(r2.loss - ref.loss) <= 1e-9 * fmax(1, fabs(ref.loss)),
                      "%s: the rewritten graph's loss %.12g vs %.12g", d->name, r2.loss, ref.loss);
        double e2 = tu_rel_err(g2, ref_grads, d->param_floats, 1e-6);
        ck_assert_msg(e2 <= 1e-6, "%s: the rewritten graph's gradients differ by %g", d->name, e2);
        ref_result_free(&r2);
        free(p2), free(g2);
    }

    float loss = d->train_step(m->ctx, x, y, n);
    ck_assert_msg(fabs(loss - ref.loss) <= TOL * fmax(1.0, fabs(ref.loss)),
                  "%s: loss %.9g vs reference %.9g", d->name, loss, ref.loss);
    const float *logits = (const float *)((char *)m->ctx->arena + d->logits_offset);
    double e = tu_rel_err(logits, ref.logits, (int64_t)n * d->classes, 1e-6);
    ck_assert_msg(e <= TOL, "%s: train logits error %g", d->name, e);
    /* A gradient that is zero in exact arithmetic (a bias followed by batch
     * norm) is rounding noise in both: it is judged on the scale of the
     * network's largest gradient. */
    double scale = 0;
    for (int64_t i = 0; i < d->param_floats; i++)
        scale = fmax(scale, fabs(ref_grads[i]));
    for (int p = 0; p < d->n_params; p++) {
        const cnn_param_desc *pd = &d->params[p];
        if (pd->flags & CNN_PARAM_TRAINABLE) {
            e = tu_rel_err(m->ctx->grads + pd->offset, ref_grads + pd->offset, pd->size,
                           fmax(1e-6, 1e-2 * scale));
            ck_assert_msg(e <= TOL, "%s: gradient of %s: error %g", d->name, pd->name, e);
        } else { /* running statistics, updated by the train step */
            e = tu_rel_err(m->ctx->params + pd->offset, ref_params + pd->offset, pd->size, 1e-6);
            ck_assert_msg(e <= TOL, "%s: %s after the step: error %g", d->name, pd->name, e);
        }
    }
    ref_result_free(&ref);

    /* Evaluation mode (batch norm with the running statistics, folded into
     * convolutions; no dropout), from the parameters the step left. */
    float *out = malloc(sizeof(float) * (size_t)(d->batch * d->classes));
    d->forward(m->ctx, x, out, n);
    memcpy(ref_params, m->ctx->params, pbytes);
    ck_assert_int_eq(ref_run(ig, ref_params, NULL, x, NULL, n, &ref), 0);
    e = tu_rel_err(out, ref.logits, (int64_t)n * d->classes, 1e-6);
    ck_assert_msg(e <= TOL, "%s: forward error %g", d->name, e);
    ref_result_free(&ref);
    free(out);
    free(ref_params);
    free(ref_grads);
    free(x);
    free(y);
}

/* The test net called name (nets.c); the test fails where there is none. */
static const net_case *net_named(const char *name)
{
    for (int i = 0; i < test_net_count; i++)
        if (strcmp(test_nets[i].name, name) == 0)
            return &test_nets[i];
    ck_abort_msg("no test net %s", name);
    return NULL;
}

static void check_case(const char *name, const char *text, int opt_level)
{
    tu_model m;
    ck_assert_msg(tu_compile(&m, name, text, opt_level) == 0, "%s did not compile", name);
    compare(&m, m.desc->batch, 11);
    compare(&m, m.desc->batch - 1, 23);
    tu_model_free(&m);
}

/* The forward pass in chunks of 2 examples (the rule picks chunks only for
 * networks far bigger than these): a full batch of 5 (chunks 2, 2, 1) and
 * a partial one of 4 (2, 2) agree with the reference. */
START_TEST(test_forward_chunks)
{
    static const char *const names[] = {"batchnorm", "strided_1x1", "fusion", "dropout_acts"};
    for (int k = 0; k < 4; k++) {
        const net_case *net = net_named(names[k]);
        tu_model m;
        ck_assert_msg(tu_compile_chunked(&m, net->name, net->text, 2, 2) == 0,
                      "%s did not compile", net->name);
        ck_assert_int_eq(m.desc->batch, 5);
        compare(&m, 5, 31);
        compare(&m, 4, 37);
        tu_model_free(&m);
    }
}
END_TEST

START_TEST(test_case_O0)
{
    check_case(test_nets[_i].name, test_nets[_i].text, 0);
}
END_TEST

START_TEST(test_case_O2)
{
    check_case(test_nets[_i].name, test_nets[_i].text, 2);
}
END_TEST

/* The example networks, at a small batch so -O0 stays quick. */
static void check_example(const char *file, int opt_level)
{
    char path[256];
    snprintf(path, sizeof path, "examples/%s", file);
    char *text = read_file(path);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    tu_model m;
    memset(&m, 0, sizeof m);
    m.opt.batch = 4;
    m.opt.opt_level = opt_level;
    char *diags = NULL;
    ck_assert_msg(tu_frontend(&m.unit, &m.opt, path, text, &diags) == 0, "%s", diags);
    free(diags);
    m.ref_opt = m.opt;
    m.ref_opt.opt_level = 0;
    ck_assert_int_eq(tu_frontend(&m.ref, &m.ref_opt, path, text, NULL), 0);
    m.so_path = tu_path(opt_level ? "example-O2.so" : "example-O0.so");
    ck_assert_int_eq(cnnc_emit(&m.unit, EMIT_SO, m.so_path), 0);
    cnn_error err;
    m.desc = cnn_model_open(m.so_path, &m.handle, &err);
    ck_assert_msg(m.desc != NULL, "%s", err.msg);
    /* the architecture's hash (checkpoints' arch_hash, which --resume
     * checks) is of the network as written: the same at every -O level */
    ck_assert_msg(m.desc->arch_hash == graph_arch_hash(m.ref.layers),
                  "%s: -O%d's arch hash %016llx is not -O0's %016llx", file, opt_level,
                  (unsigned long long)m.desc->arch_hash,
                  (unsigned long long)graph_arch_hash(m.ref.layers));
    m.ctx = cnn_ctx_create(m.desc, 1, &err);
    ck_assert_msg(m.ctx != NULL, "%s", err.msg);
    ck_assert_int_eq(m.desc->batch, 4);
    compare(&m, 4, 5);
    compare(&m, 3, 7);
    tu_model_free(&m);
    free(text);
}

START_TEST(test_lenet5_O0)
{
    check_example("lenet5.cnn", 0);
}
END_TEST

START_TEST(test_lenet5_O2)
{
    check_example("lenet5.cnn", 2);
}
END_TEST

START_TEST(test_mlp_O2)
{
    check_example("mlp.cnn", 2);
}
END_TEST

START_TEST(test_resnet8_O2)
{
    check_example("resnet8.cnn", 2);
}
END_TEST

START_TEST(test_mobilenet_tiny_O2)
{
    check_example("mobilenet_tiny.cnn", 2);
}
END_TEST

/* n = 0 does nothing and returns 0; n > batch is clamped to the batch. */
START_TEST(test_batch_clamp)
{
    tu_model m;
    ck_assert_int_eq(tu_compile(&m, "clamp", test_nets[4].text, 2), 0);
    const cnn_model_desc *d = m.desc;
    int64_t row = (int64_t)d->in_c * d->in_h * d->in_w;
    float *x = malloc(sizeof(float) * (size_t)(row * d->batch));
    int32_t y[5] = {0, 1, 2, 3, 4};
    tu_fill(x, row * d->batch, -1, 1, 3);
    tu_fill(m.ctx->params, d->param_floats, -0.5f, 0.5f, 4);
    ck_assert_float_eq(d->train_step(m.ctx, x, y, 0), 0.0f);
    float full = d->train_step(m.ctx, x, y, d->batch);
    float over = d->train_step(m.ctx, x, y, d->batch + 100);
    ck_assert_float_eq(full, over);
    free(x);
    tu_model_free(&m);
}
END_TEST

/* Threads change nothing: three SGD steps with 1, 2 and 3 threads give
 * bit-identical weights (parallel loops split independent work; every
 * reduction runs in a fixed order inside one iteration). */
static void check_threads(const char *name, const char *text)
{
    tu_model m;
    ck_assert_int_eq(tu_compile(&m, name, text, 2), 0);
    const cnn_model_desc *d = m.desc;
    int64_t row = (int64_t)d->in_c * d->in_h * d->in_w;
    float *x = malloc(sizeof(float) * (size_t)(row * d->batch));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)d->batch);
    tu_fill(x, row * d->batch, -1, 1, 5);
    tu_fill_labels(y, d->batch, d->classes, 6);
    size_t bytes = sizeof(float) * (size_t)d->param_floats;
    float *first = malloc(bytes);
    cnn_optim_config oc = {.type = CNN_OPTIM_SGD, .lr = 0.05, .momentum = 0.9};
    for (int threads = 1; threads <= 3; threads++) {
        cnn_error err;
        cnn_ctx *ctx = cnn_ctx_create(d, threads, &err);
        cnn_optimizer *opt = cnn_optimizer_create(d, &oc, &err);
        ck_assert_ptr_nonnull(ctx);
        ck_assert_ptr_nonnull(opt);
        ck_assert(threads == 1 || ctx->pool != NULL);
        cnn_init_params(d, ctx->params, 3);
        for (int step = 0; step < 3; step++) {
            d->train_step(ctx, x, y, step == 2 ? d->batch - 1 : d->batch);
            cnn_optimizer_step(opt, ctx->params, ctx->grads);
            ctx->step++;
        }
        if (threads == 1)
            memcpy(first, ctx->params, bytes);
        else
            ck_assert_msg(memcmp(first, ctx->params, bytes) == 0,
                          "%s: weights after 3 steps differ between 1 and %d threads", name,
                          threads);
        cnn_optimizer_free(opt);
        cnn_ctx_free(ctx);
    }
    free(first), free(x), free(y);
    tu_model_free(&m);
}

START_TEST(test_threads_bit_identical)
{
    check_threads(test_nets[_i].name, test_nets[_i].text);
}
END_TEST

/* u: the network `text` (named `name`) through the front end at -O`level`. */
static void front_end(cnnc_unit *u, int level, const char *name, const char *text)
{
    cnnc_options opt;
    memset(&opt, 0, sizeof opt);
    opt.opt_level = level;
    ck_assert_int_eq(tu_frontend(u, &opt, name, text, NULL), 0);
}

/* What fuse.c does to the network built to exercise it: every relu and
 * residual add becomes an epilogue, every relu backward but the one after
 * average pooling's (which accumulates into its output), and the gradient
 * sums whose later term a convolution's backward-data writes (the one a
 * batch norm's backward writes stays an add); -O0 fuses nothing.
 * (test_case_O2 checks the fused code computes the same.) */
static int count_ops(const ir_graph *g, op_kind op, int *with_post)
{
    int count = 0;
    *with_post = 0;
    for (int i = 0; i < g->nnodes; i++) {
        count += g->nodes[i].op == op;
        *with_post += g->nodes[i].attr.post != 0;
    }
    return count;
}

START_TEST(test_fusion_graph)
{
    const net_case *net = net_named("fusion");
    for (int level = 0; level <= 2; level += 2) {
        cnnc_unit u;
        front_end(&u, level, "fusion.cnn", net->text);
        int posts, relu = count_ops(u.train, OP_RELU, &posts);
        int relu_bwd = count_ops(u.train, OP_RELU_BWD, &posts);
        int infer_posts, infer_relu = count_ops(u.infer, OP_RELU, &infer_posts);
        if (level == 0) {
            ck_assert_int_eq(relu, 8);
            ck_assert_int_eq(relu_bwd, 8);
            ck_assert_int_eq(posts + infer_posts, 0);
        } else {
            ck_assert_int_eq(relu, 0);
            ck_assert_int_eq(relu_bwd, 1); /* after avgpool_bwd */
            ck_assert_int_eq(infer_relu, 0);
            ck_assert_int_eq(posts, 15); /* 8 relu + 3 add into 8 nodes, 7 masks */
            ck_assert_int_eq(infer_posts, 8);
            int adds = 0, both = 0;
            for (int i = 0; i < u.train->nnodes; i++) {
                const ir_node *n = &u.train->nodes[i];
                adds += n->op == OP_ADD;
                if ((n->attr.post & (POST_ADD | POST_MASK)) == (POST_ADD | POST_MASK)) {
                    both++;
                    ck_assert_int_eq(n->op, OP_TCONV);
                    ck_assert_int_ne(ir_add_operand(n), ir_mask_operand(n));
                }
            }
            ck_assert_int_eq(adds, 1); /* d.tr.sum: batch norm's backward wrote d.tr */
            ck_assert_int_eq(both, 2); /* d.mr.sum and d.ar.sum, each with its mask */
        }
        cnnc_unit_free(&u);
    }
}
END_TEST

/* The descriptor describes the network: shapes, parameter table, config. */
START_TEST(test_descriptor)
{
    tu_model m;
    ck_assert_int_eq(tu_compile(&m, "desc", test_nets[0].text, 0), 0);
    const cnn_model_desc *d = m.desc;
    ck_assert_int_eq(d->abi_version, CNN_ABI_VERSION);
    ck_assert_str_eq(d->name, "conv_basic");
    ck_assert_int_eq(d->batch, 5);
    ck_assert_int_eq(d->in_c, 3);
    ck_assert_int_eq(d->in_h, 9);
    ck_assert_int_eq(d->in_w, 11);
    ck_assert_int_eq(d->classes, 4);
    ck_assert_int_eq(d->n_params, 4);
    ck_assert_str_eq(d->params[0].name, "c.weight");
    ck_assert_int_eq(d->params[0].shape[0], 5);
    ck_assert_int_eq(d->params[0].shape[1], 3);
    ck_assert_int_eq(d->params[0].shape[2], 3);
    ck_assert_int_eq(d->params[0].fan_in, 27);
    ck_assert_str_eq(d->params[2].name, "d.weight");
    ck_assert_int_eq(d->params[2].shape[0], 4);
    ck_assert_int_eq(d->params[2].shape[1], 5 * 9 * 11);
    ck_assert_int_eq(d->params[2].offset % 16, 0);
    ck_assert_ptr_nonnull(strstr(d->train_config, "\"batch\":5"));
    ck_assert_ptr_nonnull(strstr(d->train_config, "\"type\":\"sgd\""));
    ck_assert_int_eq(d->arena_bytes % 64, 0);
    tu_model_free(&m);
}
END_TEST

/* No two arena values alive at the same time overlap: a value lives from
 * the node that writes it to the last node that reads it or a view of it
 * (the loss and logits to the end). */
static void check_plan(const ir_graph *g)
{
    int nv = g->nvalues;
    int *end = calloc((size_t)nv, sizeof *end);
    for (int v = 0; v < nv; v++)
        end[v] = g->values[v].producer;
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++) {
            int v = g->nodes[i].in[j];
            while (g->values[v].alias >= 0)
                v = g->values[v].alias;
            if (end[v] < i)
                end[v] = i;
        }
    int keep[2] = {g->loss, g->logits};
    for (int k = 0; k < 2; k++)
        if (keep[k] >= 0)
            end[keep[k]] = g->nnodes;
    for (int a = 0; a < nv; a++)
        for (int b = a + 1; b < nv; b++) {
            const ir_value *x = &g->values[a], *y = &g->values[b];
            if (x->kind != VAL_ACT || y->kind != VAL_ACT || x->alias >= 0 || y->alias >= 0 ||
                x->producer < 0 || y->producer < 0)
                continue;
            if (end[a] < y->producer || end[b] < x->producer)
                continue; /* never alive together */
            int64_t xs = ir_shape_size(x->shape) * 4, ys = ir_shape_size(y->shape) * 4;
            ck_assert_msg(x->offset + xs <= y->offset || y->offset + ys <= x->offset,
                          "%s and %s overlap in the arena", x->name, y->name);
        }
    free(end);
}

/* The forward program's values sit where the train step's do, so its
 * kernels are compiled once: LeNet-5's all but the last (logits go to
 * `out`), each pair the same code; both plans keep live values apart. */
START_TEST(test_shared_kernels)
{
    char *text = read_file("examples/lenet5.cnn");
    ck_assert_ptr_nonnull(text);
    static const char *const expect_same[] = {"conv1", "conv2", "pool1", "fc1", "fc2"};
    for (int level = 0; level <= 2; level += 2) {
        cnnc_unit u;
        front_end(&u, level, "lenet5.cnn", text);
        check_plan(u.train);
        check_plan(u.infer);
        const lprogram *f = u.infer_prog, *t = u.train_prog;
        if (level == 0) { /* no reuse, no shared offsets */
            ck_assert_int_eq(u.nsame, 0);
            cnnc_unit_free(&u);
            continue;
        }
        ck_assert_int_eq(u.nsame, f->nkernels - 1);
        for (int i = 0; i < f->nkernels; i++) {
            int j = u.same_as_train[i];
            if (j >= 0)
                ck_assert(lk_same(f, i, t, j) && lk_same(t, j, f, i));
        }
        for (int k = 0; k < 5; k++) {
            int found = 0;
            for (int i = 0; i < f->nkernels; i++)
                found |= strcmp(f->kernels[i].name, expect_same[k]) == 0 && u.same_as_train[i] >= 0;
            ck_assert_msg(found, "forward kernel %s is not the train step's", expect_same[k]);
        }
        /* A kernel is not the same as a different one. */
        ck_assert(!lk_same(t, 0, t, 1));
        cnnc_unit_free(&u);
    }
    free(text);
    /* Every test network's plans keep live values apart, and every shared
     * kernel is the same code. */
    for (int i = 0; i < test_net_count; i++) {
        cnnc_unit u;
        front_end(&u, 2, test_nets[i].name, test_nets[i].text);
        check_plan(u.train);
        check_plan(u.infer);
        for (int k = 0; k < u.infer_prog->nkernels; k++)
            if (u.same_as_train[k] >= 0)
                ck_assert(lk_same(u.infer_prog, k, u.train_prog, u.same_as_train[k]));
        cnnc_unit_free(&u);
    }
}
END_TEST

/* ---- prefetches ---- */

typedef struct prefetch_scan {
    const lprogram *p;
    int reads[64], writes[64];   /* prefetched buffers (indices), for read / write */
    int nreads, nwrites;
    int stray;                   /* prefetches of a buffer the kernel never accesses */
} prefetch_scan;

static int uses_buf(const lexpr *e, int buf)
{
    return e && ((e->op == LX_LOAD && e->buf == buf) || uses_buf(e->a, buf) ||
                 uses_buf(e->b, buf) || uses_buf(e->c, buf));
}

/* Whether statement s (not counting prefetches) writes buf, or with
 * `reads` also reads it. */
static int touches(const lstmt *s, int buf, int reads)
{
    if (!s)
        return 0;
    switch (s->kind) {
    case LS_BLOCK:
        for (int i = 0; i < s->nitems; i++)
            if (touches(s->items[i], buf, reads))
                return 1;
        return 0;
    case LS_FOR:
        return touches(s->body, buf, reads);
    case LS_IF:
        return touches(s->then_s, buf, reads) || touches(s->else_s, buf, reads);
    case LS_PREFETCH:
        return 0;
    case LS_STORE:
    case LS_TRANSPOSE:
    case LS_LANE_SUMS:
        return s->buf == buf ||
               (reads && (uses_buf(s->index, buf) || uses_buf(s->value, buf)));
    case LS_SET:
        return reads && uses_buf(s->value, buf);
    }
    return 0;
}

static int accesses(const lstmt *s, int buf)
{
    return touches(s, buf, 1);
}

static void scan_prefetches(prefetch_scan *sc, const lstmt *body, const lstmt *s)
{
    if (!s)
        return;
    switch (s->kind) {
    case LS_BLOCK:
        for (int i = 0; i < s->nitems; i++)
            scan_prefetches(sc, body, s->items[i]);
        break;
    case LS_FOR:
        scan_prefetches(sc, body, s->body);
        break;
    case LS_IF:
        scan_prefetches(sc, body, s->then_s);
        scan_prefetches(sc, body, s->else_s);
        break;
    case LS_PREFETCH:
        if (s->accumulate && sc->nwrites < 64)
            sc->writes[sc->nwrites++] = s->buf;
        else if (!s->accumulate && sc->nreads < 64)
            sc->reads[sc->nreads++] = s->buf;
        sc->stray += !accesses(body, s->buf);
        break;
    default:
        break;
    }
}

static const lkernel *kernel_named(const lprogram *p, const char *name)
{
    for (int i = 0; i < p->nkernels; i++)
        if (strcmp(p->kernels[i].name, name) == 0)
            return &p->kernels[i];
    return NULL;
}

static int prefetched(const prefetch_scan *sc, const char *buf, int write)
{
    const int *list = write ? sc->writes : sc->reads;
    int n = write ? sc->nwrites : sc->nreads;
    for (int i = 0; i < n; i++)
        if (strcmp(sc->p->bufs[list[i]].name, buf) == 0)
            return 1;
    return 0;
}

static prefetch_scan scan_kernel(const lprogram *p, const lkernel *k)
{
    prefetch_scan sc;
    memset(&sc, 0, sizeof sc);
    sc.p = p;
    scan_prefetches(&sc, k->body, k->body);
    return sc;
}

static prefetch_scan scan_named(const lprogram *p, const char *name)
{
    const lkernel *k = kernel_named(p, name);
    ck_assert_msg(k != NULL, "no kernel %s", name);
    return scan_kernel(p, k);
}

/* ResNet-8's prefetches (schedule.c, lower_layers.c): a backward-data tile
 * whose epilogue reads the relu mask fetches the mask and its output
 * lines; a forward convolution with nothing fused fetches nothing; a batch
 * norm fetches the next example's input and output, forward and backward.
 * No kernel of any test network prefetches memory it does not access, and
 * -O0 has no prefetches at all. */
START_TEST(test_prefetches)
{
    char *text = read_file("examples/resnet8.cnn");
    ck_assert_ptr_nonnull(text);
    for (int level = 0; level <= 2; level += 2) {
        cnnc_unit u;
        front_end(&u, level, "resnet8.cnn", text);
        const lprogram *t = u.train_prog;
        if (level == 0) {
            for (int i = 0; i < t->nkernels; i++) {
                prefetch_scan sc = scan_kernel(t, &t->kernels[i]);
                ck_assert_int_eq(sc.nreads + sc.nwrites, 0);
            }
            cnnc_unit_free(&u);
            continue;
        }
        prefetch_scan gi = scan_named(t, "c1b.grad_input");
        ck_assert(prefetched(&gi, "c1b.pad", 0));  /* r1a, the mask */
        ck_assert(prefetched(&gi, "d.b1a", 1));    /* the output */
        ck_assert_int_eq(gi.stray, 0);
        prefetch_scan fwd = scan_named(t, "c1a");
        ck_assert_int_eq(fwd.nreads + fwd.nwrites, 0);
        prefetch_scan bn = scan_named(t, "b1a");
        ck_assert(prefetched(&bn, "c1a", 0));
        ck_assert(prefetched(&bn, "c1b.pad", 1));
        prefetch_scan bwd = scan_named(t, "b1a.grad");
        ck_assert(prefetched(&bwd, "d.b1a", 0));
        ck_assert(prefetched(&bwd, "c1a", 0));
        ck_assert(prefetched(&bwd, "c1a.grad_input.pad", 1));
        for (int i = 0; i < t->nkernels; i++)
            ck_assert_int_eq(scan_kernel(t, &t->kernels[i]).stray, 0);
        cnnc_unit_free(&u);
    }
    free(text);
    for (int i = 0; i < test_net_count; i++) {
        cnnc_unit u;
        front_end(&u, 2, test_nets[i].name, test_nets[i].text);
        for (int k = 0; k < u.train_prog->nkernels; k++)
            ck_assert_msg(scan_kernel(u.train_prog, &u.train_prog->kernels[k]).stray == 0,
                          "%s: kernel %s prefetches memory it does not access",
                          test_nets[i].name, u.train_prog->kernels[k].name);
        cnnc_unit_free(&u);
    }
}
END_TEST

/* Whether statement s stores to buffer buf. */
static int stores_to(const lstmt *s, int buf)
{
    return touches(s, buf, 0);
}

/* The network's input padded for the stem (-O2; -O0 pads nothing, its
 * convolution tests bounds): by the stem's kernel, example by example,
 * the only kernel that writes the padded buffer; no pad kernel of its own.
 * (test_case_O2 checks what the kernels compute.) */
START_TEST(test_input_pad_inlined)
{
    char *text = read_file("examples/resnet8.cnn");
    ck_assert_ptr_nonnull(text);
    cnnc_unit u;
    front_end(&u, 2, "resnet8.cnn", text);
    const lprogram *t = u.train_prog;
    int pad_buf = -1;
    for (int b = 0; b < t->nbufs; b++)
        if (strcmp(t->bufs[b].name, "stem.pad") == 0)
            pad_buf = b;
    ck_assert_int_ge(pad_buf, 0);
    int writers = 0;
    for (int k = 0; k < t->nkernels; k++)
        writers += stores_to(t->kernels[k].body, pad_buf);
    ck_assert_int_eq(writers, 1);
    ck_assert_ptr_null(kernel_named(t, "stem.pad"));
    ck_assert(stores_to(kernel_named(t, "stem")->body, pad_buf));
    cnnc_unit_free(&u);
    free(text);
}
END_TEST

/* Under --keep-pads every padded tensor has a pad node of its own; each
 * stride-1 one read first by a tiled convolution or weight gradient is
 * done by that kernel, example by example (pad_inlined): no kernel of its
 * own, that kernel the only writer of its buffer.  That covers the
 * network's input and the tensors between layers (bn_sums' batch norm
 * outputs, gradients read by backward-data convolutions), whose memory
 * stays live up to the kernel that reads it (memplan).  What such builds
 * compute agrees with the reference. */
START_TEST(test_keep_pads)
{
    static const char *const names[] = {"conv_basic", "spatial_filter", "channel_tiles",
                                        "channel_phases", "bn_sums"};
    for (int k = 0; k < 5; k++) {
        const net_case *net = net_named(names[k]);
        cnnc_options opt = {0};
        opt.opt_level = 2;
        opt.keep_pads = 1;
        tu_model m;
        ck_assert_msg(tu_compile_with(&m, net->name, net->text, &opt) == 0, "%s did not compile",
                      net->name);
        const ir_graph *g = m.unit.train;
        const lprogram *t = m.unit.train_prog;
        int inlined = 0, of_input = 0, by_filter = 0;
        for (int i = 0; i < g->nnodes; i++) {
            int at = pad_inlined(g, &g->nodes[i]);
            if (at < 0)
                continue;
            const ir_node *pad = &g->nodes[i], *reader = &g->nodes[at];
            inlined++;
            of_input += g->values[pad->in[0]].kind == VAL_INPUT;
            by_filter += reader->op == OP_TCONV_BWD_FILTER;
            ck_assert_msg(kernel_named(t, pad->name) == NULL, "%s: %s has a kernel", net->name,
                          pad->name);
            int buf = -1, writers = 0;
            for (int b = 0; b < t->nbufs; b++)
                if (strcmp(t->bufs[b].name, g->values[pad->out[0]].name) == 0)
                    buf = b;
            ck_assert_int_ge(buf, 0);
            for (int j = 0; j < t->nkernels; j++)
                writers += stores_to(t->kernels[j].body, buf);
            ck_assert_int_eq(writers, 1);
            ck_assert_msg(stores_to(kernel_named(t, reader->name)->body, buf),
                          "%s: %s does not pad for %s", net->name, reader->name, pad->name);
        }
        ck_assert_msg(of_input >= 1 && by_filter >= 1, "%s: %d pads inlined, %d of the input, "
                      "%d by weight gradients", net->name, inlined, of_input, by_filter);
        if (strcmp(net->name, "bn_sums") == 0) /* batch norms' outputs and gradients too */
            ck_assert_int_ge(inlined - of_input, 4);
        compare(&m, m.desc->batch, 41);
        compare(&m, m.desc->batch - 1, 43);
        tu_model_free(&m);
    }
}
END_TEST

/* At -O2 the training batch norms of bn_sums and ResNet-8 whose channels
 * have runs of 256 or more read the sums of the tiled convolution that
 * writes their input (its second output): bn_sums' 17x17 and 16x17 ones
 * (one with a fused residual add), ResNet-8's 32x32 and 16x16 ones; none
 * at -O0.  (test_case_O2 and test_threads_bit_identical check what they
 * compute.) */
START_TEST(test_bn_sums)
{
    char *resnet = read_file("examples/resnet8.cnn");
    ck_assert_ptr_nonnull(resnet);
    const net_case *net = net_named("bn_sums");
    const char *texts[2] = {net->text, resnet};
    static const int expect[2][2] = {{4, 3}, {9, 6}}; /* batch norms, summed */
    for (int level = 0; level <= 2; level += 2)
        for (int t = 0; t < 2; t++) {
            cnnc_unit u;
            front_end(&u, level, t ? "resnet8.cnn" : "bn_sums.cnn", texts[t]);
            const ir_graph *g = u.train;
            int bns = 0, summed = 0, with_add = 0;
            for (int i = 0; i < g->nnodes; i++) {
                const ir_node *n = &g->nodes[i];
                if (n->op != OP_BATCHNORM)
                    continue;
                bns++;
                const ir_value *x = &g->values[n->in[0]];
                if (!n->attr.stats) {
                    ck_assert(level == 0 || x->shape.d[2] * x->shape.d[3] < 256);
                    continue;
                }
                summed++;
                with_add += (n->attr.post & POST_ADD) != 0;
                int sums = n->in[ir_nin_core(n)];
                const ir_node *conv = &g->nodes[x->producer];
                ck_assert_int_eq(conv->op, OP_TCONV);
                ck_assert_int_eq(conv->nout, 2);
                ck_assert_int_eq(conv->out[1], sums);
                ck_assert_int_eq(g->values[sums].shape.d[1], x->shape.d[1]);
            }
            ck_assert_int_eq(bns, expect[t][0]);
            ck_assert_int_eq(summed, level ? expect[t][1] : 0);
            ck_assert(level == 0 || with_add > 0);
            cnnc_unit_free(&u);
        }
    free(resnet);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("compile");
    TCase *tc = tcase_create("reference");
    tcase_set_timeout(tc, 300);
    int ncases = test_net_count;
    tcase_add_loop_test(tc, test_case_O0, 0, ncases);
    tcase_add_loop_test(tc, test_case_O2, 0, ncases);
    tcase_add_test(tc, test_lenet5_O0);
    tcase_add_test(tc, test_lenet5_O2);
    tcase_add_test(tc, test_mlp_O2);
    tcase_add_test(tc, test_resnet8_O2);
    tcase_add_test(tc, test_mobilenet_tiny_O2);
    tcase_add_test(tc, test_batch_clamp);
    tcase_add_loop_test(tc, test_threads_bit_identical, 0, ncases);
    tcase_add_test(tc, test_fusion_graph);
    tcase_add_test(tc, test_forward_chunks);
    tcase_add_test(tc, test_descriptor);
    tcase_add_test(tc, test_shared_kernels);
    tcase_add_test(tc, test_prefetches);
    tcase_add_test(tc, test_input_pad_inlined);
    tcase_add_test(tc, test_keep_pads);
    tcase_add_test(tc, test_bn_sums);
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
