/*
 * test_reference.c — the reference interpreter checked against finite
 * differences, so that it can serve as the oracle for compiled code.
 *
 * For every test network and every trainable parameter tensor, and for the
 * input x: pick a random direction u, and compare the directional
 * derivative from backpropagation, grad . u, with the central difference
 *     (L(p + eps u) - L(p - eps u)) / (2 eps),   eps = 1e-4.
 * eps is small so that the step rarely crosses a kink of relu or max
 * pooling (at 1e-2 it does, in the residual network).  The reference
 * stores tensors in float, so the difference carries about 1e-4..1e-3 of
 * rounding noise; the tolerance is 1e-2 relative plus 1e-3 absolute, far
 * below what a wrong gradient rule produces (a missing factor, a transposed
 * index, a dropped accumulation).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nets.h"
#include "reference.h"
#include "testutil.h"

#define EPS 1e-4

typedef struct fd_setup {
    cnnc_unit unit;
    cnnc_options opt;
    arena a;
    ir_graph *g; /* train graph with the input gradient */
    float *params, *grads, *x;
    int32_t *labels;
    int n;
    int64_t xcount;
} fd_setup;

static void setup(fd_setup *s, int which, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    char *diags = NULL;
    ck_assert_msg(tu_frontend(&s->unit, &s->opt, test_nets[which].name, test_nets[which].text,
                              &diags) == 0, "%s", diags);
    free(diags);
    diag d;
    diag_init(&d, stderr);
    s->g = graph_build(&s->a, s->unit.net, GRAPH_TRAIN, &d);
    ck_assert_ptr_nonnull(s->g);
    graph_autodiff(s->g, 1);
    ck_assert_int_ge(s->g->input_grad, 0);
    s->n = s->g->batch;
    s->xcount = s->n * ir_row_size(&s->g->values[s->g->input]);
    s->params = malloc(sizeof(float) * (size_t)s->g->param_floats);
    s->grads = calloc((size_t)s->g->param_floats, sizeof(float));
    s->x = malloc(sizeof(float) * (size_t)s->xcount);
    s->labels = malloc(sizeof(int32_t) * (size_t)s->n);
    tu_fill(s->params, s->g->param_floats, -0.5f, 0.5f, seed);
    tu_fill(s->x, s->xcount, -1, 1, seed + 1);
    int classes = (int)s->g->values[s->g->logits].shape.d[1];
    tu_fill_labels(s->labels, s->n, classes, seed + 2);
}

static void teardown(fd_setup *s)
{
    free(s->params), free(s->grads), free(s->x), free(s->labels);
    arena_free(&s->a);
    cnnc_unit_free(&s->unit);
}

static double loss_at(fd_setup *s)
{
    float *scratch = calloc((size_t)s->g->param_floats, sizeof(float));
    ref_result r;
    ck_assert_int_eq(ref_run(s->g, s->params, scratch, s->x, s->labels, s->n, &r), 0);
    double loss = r.loss;
    ref_result_free(&r);
    free(scratch);
    return loss;
}

/* Check d(loss)/d(v) . u for the count floats at v against a central difference. */
static void check_direction(fd_setup *s, float *v, const float *grad, int64_t count,
                            const char *what, uint64_t seed)
{
    float *u = malloc(sizeof(float) * (size_t)count);
    float *saved = malloc(sizeof(float) * (size_t)count);
    tu_fill(u, count, -1, 1, seed);
    memcpy(saved, v, sizeof(float) * (size_t)count);
    double analytic = 0;
    for (int64_t i = 0; i < count; i++)
        analytic += (double)grad[i] * u[i];
    for (int64_t i = 0; i < count; i++)
        v[i] = saved[i] + (float)EPS * u[i];
    double plus = loss_at(s);
    for (int64_t i = 0; i < count; i++)
        v[i] = saved[i] - (float)EPS * u[i];
    double minus = loss_at(s);
    memcpy(v, saved, sizeof(float) * (size_t)count);
    double numeric = (plus - minus) / (2 * EPS);
    ck_assert_msg(fabs(numeric - analytic) <= 1e-2 * fabs(analytic) + 1e-3,
                  "%s: backprop %.6g, finite difference %.6g", what, analytic, numeric);
    free(u);
    free(saved);
}

START_TEST(test_gradients)
{
    fd_setup s;
    setup(&s, _i, 100 + (uint64_t)_i);
    ref_result r;
    ck_assert_int_eq(ref_run(s.g, s.params, s.grads, s.x, s.labels, s.n, &r), 0);
    float *xgrad = r.input_grad;
    r.input_grad = NULL;
    ref_result_free(&r);
    for (int p = 0; p < s.g->nparams; p++) {
        const ir_param *prm = &s.g->params[p];
        char what[128];
        snprintf(what, sizeof what, "%s: %s", test_nets[_i].name, prm->name);
        check_direction(&s, s.params + prm->offset, s.grads + prm->offset, prm->size, what,
                        7 + (uint64_t)p);
    }
    char what[128];
    snprintf(what, sizeof what, "%s: input", test_nets[_i].name);
    check_direction(&s, s.x, xgrad, s.xcount, what, 99);
    free(xgrad);
    teardown(&s);
}
END_TEST

/* Every op has a reference implementation. */
START_TEST(test_every_op)
{
    for (int op = 0; op < OP_COUNT; op++)
        ck_assert_msg(ref_has_op((op_kind)op), "op %s has no reference", op_name((op_kind)op));
}
END_TEST

/* Softmax cross-entropy of known logits: loss and gradient by hand. */
START_TEST(test_softmax_by_hand)
{
    const char *text = "network h {\n"
                       "  x = input(1, 1, 2)\n"
                       "  f = flatten(x)\n"
                       "  d = dense(f, units = 2, bias = false)\n"
                       "  loss = softmax_cross_entropy(d)\n"
                       "}\n"
                       "train { batch = 1 }\n";
    cnnc_unit u;
    cnnc_options opt = {0};
    ck_assert_int_eq(tu_frontend(&u, &opt, "h.cnn", text, NULL), 0);
    /* identity weights: logits = x = (1, 3), label 0 */
    float params[16] = {1, 0, 0, 1}, grads[16] = {0}, x[2] = {1, 3};
    int32_t label = 0;
    ref_result r;
    ck_assert_int_eq(ref_run(u.train, params, grads, x, &label, 1, &r), 0);
    double p0 = 1 / (1 + exp(2.0));
    ck_assert_double_eq_tol(r.loss, -log(p0), 1e-6);
    /* dL/dW[o][j] = (softmax_o - onehot_o) * x_j */
    ck_assert_double_eq_tol(grads[0], (p0 - 1) * 1, 1e-6);
    ck_assert_double_eq_tol(grads[1], (p0 - 1) * 3, 1e-6);
    ck_assert_double_eq_tol(grads[2], (1 - p0) * 1, 1e-6);
    ck_assert_double_eq_tol(grads[3], (1 - p0) * 3, 1e-6);
    ref_result_free(&r);
    cnnc_unit_free(&u);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("reference");
    TCase *tc = tcase_create("finite differences");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_gradients, 0, test_net_count);
    tcase_add_test(tc, test_every_op);
    tcase_add_test(tc, test_softmax_by_hand);
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
