/*
 * test_dsl.c — the language and the front end: parser, semantic checks,
 * shape inference, diagnostics and the cnnc command line.
 *
 * Golden diagnostics: every tests/diagnostics/NAME.cnn is compiled by the
 * cnnc binary ($CNNC, default build/cnnc); its standard error must equal
 * NAME.err byte for byte and its exit status must be 1.  To add a case,
 * write the .cnn, run `build/cnnc NAME.cnn --emit ir -o /dev/null
 * 2> NAME.err`, and read the .err before committing it.
 *
 * Robustness: thousands of seeded random mutations of the LeNet-5 source
 * go through the front end in-process; check forks each test, so a crash
 * would fail it.
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static const char *cnnc_bin(void)
{
    const char *p = getenv("CNNC");
    return p ? p : "build/cnnc";
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Run cnnc with args (NULL-terminated), stderr into *err; returns the exit status. */
static int run_cnnc(const char *const *args, char **err)
{
    char *errpath = tu_path("stderr.txt");
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        dup2(null, 1);
        const char *argv[32] = {cnnc_bin()};
        int n = 1;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = args[n - 1];
        argv[n] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    if (err)
        *err = slurp(errpath);
    free(errpath);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- golden diagnostics ----------------------------------------------------------- */

START_TEST(test_golden_diagnostics)
{
    DIR *dir = opendir("tests/diagnostics");
    ck_assert_ptr_nonnull(dir);
    struct dirent *e;
    int count = 0;
    char saved[PATH_MAX];
    ck_assert_ptr_nonnull(getcwd(saved, sizeof saved));
    while ((e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".cnn") != 0)
            continue;
        char errfile[512];
        snprintf(errfile, sizeof errfile, "tests/diagnostics/%.*s.err", (int)(len - 4), e->d_name);
        char *expected = slurp(errfile);
        ck_assert_msg(expected != NULL, "%s has no .err file", e->d_name);
        /* Run from the directory so that messages name the file as in .err. */
        char bin[2 * PATH_MAX];
        if (cnnc_bin()[0] == '/')
            snprintf(bin, sizeof bin, "%s", cnnc_bin());
        else
            snprintf(bin, sizeof bin, "%s/%s", saved, cnnc_bin());
        setenv("CNNC", bin, 1);
        ck_assert_int_eq(chdir("tests/diagnostics"), 0);
        const char *args[] = {e->d_name, "--emit", "ir", "-o", "/dev/null", NULL};
        char *got = NULL;
        int status = run_cnnc(args, &got);
        ck_assert_int_eq(chdir(saved), 0);
        unsetenv("CNNC");
        ck_assert_msg(status == 1, "%s: exit status %d, expected 1", e->d_name, status);
        ck_assert_msg(got && strcmp(got, expected) == 0, "%s: diagnostics differ:\n%s\nexpected:\n%s",
                      e->d_name, got ? got : "(none)", expected);
        free(got);
        free(expected);
        count++;
    }
    closedir(dir);
    ck_assert_int_ge(count, 30);
}
END_TEST

/* ---- parser --------------------------------------------------------------------------- */

START_TEST(test_parse_structure)
{
    const char *text = "# comment\n"
                       "network n {  // another comment\n"
                       "  x = input(1, 2, 3);\n"
                       "  c = conv2d(x, filters = 4, kernel = [3, 5], padding = \"same\",)\n"
                       "  v = f(-2, -0.5, 1e-3, .25, [])\n"
                       "}\n"
                       "train { seed = 7 }\n";
    src_file *src = src_from_string("t.cnn", text);
    arena a = {0};
    diag d;
    diag_init(&d, stderr);
    ast_file *f = dsl_parse(src, &a, &d);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(d.errors, 0);
    ck_assert_int_eq(f->nblocks, 2);
    const ast_block *b = &f->blocks[0];
    ck_assert_str_eq(b->kind, "network");
    ck_assert_str_eq(b->name, "n");
    ck_assert_int_eq(b->kind_loc.line, 2);
    ck_assert_int_eq(b->nstmts, 3);
    const ast_expr *c = b->stmts[1].value;
    ck_assert_int_eq(c->kind, AST_CALL);
    ck_assert_str_eq(c->text, "conv2d");
    ck_assert_int_eq(c->nargs, 4);
    ck_assert_ptr_null(c->args[0].key);
    ck_assert_str_eq(c->args[1].key, "filters");
    ck_assert_int_eq(c->args[2].value->kind, AST_LIST);
    ck_assert_int_eq(c->args[2].value->nargs, 2);
    ck_assert_int_eq(c->args[3].value->kind, AST_STRING);
    ck_assert_str_eq(c->args[3].value->text, "same");
    ck_assert_int_eq(c->loc.line, 4);
    ck_assert_int_eq(c->loc.col, 7);
    ck_assert_int_eq(c->loc.len, 6);
    const ast_expr *v = b->stmts[2].value;
    ck_assert_int_eq(v->nargs, 5);
    ck_assert(v->args[0].value->number == -2 && v->args[0].value->is_int);
    ck_assert(v->args[1].value->number == -0.5 && !v->args[1].value->is_int);
    ck_assert(v->args[2].value->number == 1e-3);
    ck_assert(v->args[3].value->number == 0.25);
    ck_assert_int_eq(v->args[4].value->nargs, 0);
    ck_assert_ptr_null(f->blocks[1].name);
    arena_free(&a);
    src_free(src);
}
END_TEST

START_TEST(test_parse_nested_calls)
{
    const char *text = "train { optimizer = sgd(lr = f(g(1), 2), momentum = h(3)) }\n";
    src_file *src = src_from_string("t.cnn", text);
    arena a = {0};
    diag d;
    diag_init(&d, stderr);
    ast_file *f = dsl_parse(src, &a, &d);
    ck_assert_ptr_nonnull(f);
    const ast_expr *sgd = f->blocks[0].stmts[0].value;
    ck_assert_int_eq(sgd->nargs, 2);
    const ast_expr *inner = sgd->args[0].value;
    ck_assert_str_eq(inner->text, "f");
    ck_assert_int_eq(inner->nargs, 2);
    ck_assert_str_eq(inner->args[0].value->text, "g");
    ck_assert_str_eq(sgd->args[1].value->text, "h");
    arena_free(&a);
    src_free(src);
}
END_TEST

/* ---- semantics and shapes ----------------------------------------------------------------- */

static char *read_example(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "examples/%s", name);
    char *text = slurp(path);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    return text;
}

static const ir_value *value_named(const ir_graph *g, const char *name)
{
    for (int v = 0; v < g->nvalues; v++)
        if (g->values[v].kind == VAL_ACT && strcmp(g->values[v].name, name) == 0)
            return &g->values[v];
    ck_abort_msg("no value %s", name);
    return NULL;
}

static void assert_shape(const ir_graph *g, const char *name, int ndim, int64_t a, int64_t b,
                         int64_t c, int64_t d)
{
    const ir_value *v = value_named(g, name);
    ck_assert_msg(v->shape.ndim == ndim, "%s: ndim %d", name, v->shape.ndim);
    int64_t want[4] = {a, b, c, d};
    for (int i = 0; i < ndim; i++)
        ck_assert_msg(v->shape.d[i] == want[i], "%s: dim %d is %lld, expected %lld", name, i,
                      (long long)v->shape.d[i], (long long)want[i]);
}

START_TEST(test_lenet5_shapes)
{
    char *text = read_example("lenet5.cnn");
    cnnc_unit u;
    cnnc_options opt = {.opt_level = 2};
    char *diags = NULL;
    ck_assert_msg(tu_frontend(&u, &opt, "lenet5.cnn", text, &diags) == 0, "%s", diags);
    free(diags);
    const ir_graph *g = u.infer;
    assert_shape(g, "conv1", 4, 64, 6, 28, 28);
    assert_shape(g, "pool1", 4, 64, 6, 14, 14);
    assert_shape(g, "conv2", 4, 64, 16, 10, 10);
    assert_shape(g, "pool2", 4, 64, 16, 5, 5);
    assert_shape(g, "flat", 2, 64, 400, 0, 0);
    assert_shape(g, "fc1", 2, 64, 120, 0, 0);
    assert_shape(g, "fc3", 2, 64, 10, 0, 0);
    ck_assert_int_eq(g->nparams, 10);
    ck_assert_str_eq(g->params[2].name, "conv2.weight");
    ck_assert_int_eq(g->params[2].fan_in, 6 * 25);
    ck_assert_int_eq(g->params[2].fan_out, 16 * 25);
    ck_assert_int_eq(g->params[4].shape.d[0], 120);
    ck_assert_int_eq(g->params[4].shape.d[1], 400);
    ck_assert_int_eq(g->params[0].init.kind, CNN_INIT_TORCH_DEFAULT);
    /* Training recipe from the train block. */
    ck_assert_int_eq(u.net->batch, 64);
    json_t *o = json_object_get(u.net->train, "optimizer");
    ck_assert_str_eq(json_string_value(json_object_get(o, "type")), "sgd");
    ck_assert(json_real_value(json_object_get(o, "lr")) == 0.01);
    ck_assert(json_real_value(json_object_get(o, "momentum")) == 0.9);
    ck_assert_int_eq(json_integer_value(json_object_get(u.net->train, "epochs")), 5);
    /* Every train-graph parameter has a gradient written by exactly one node. */
    const ir_graph *t = u.train;
    for (int p = 0; p < t->nparams; p++) {
        int writers = 0;
        for (int i = 0; i < t->nnodes; i++)
            for (int j = 0; j < t->nodes[i].nout; j++)
                writers += t->nodes[i].out[j] == t->params[p].grad;
        ck_assert_msg(writers == 1, "%s: %d writers", t->params[p].name, writers);
    }
    /* conv1 needs no gradient of its input: no backward-data node for it. */
    for (int i = 0; i < t->nnodes; i++)
        ck_assert(!(t->nodes[i].op == OP_CONV2D_BWD_DATA && strncmp(t->nodes[i].name, "conv1", 5) == 0));
    cnnc_unit_free(&u);
    free(text);
}
END_TEST

static const char *same_net =
    "network s {\n"
    "  init = normal(std = 0.1)\n"
    "  bias_init = constant(0.5)\n"
    "  x = input(2, 7, 8)\n"
    "  a = conv2d(x, filters = 3, kernel = 4, padding = same)\n"
    "  b = conv2d(a, filters = 3, kernel = 3, stride = 2, padding = same, init = he_normal(gain = 2))\n"
    "  c = maxpool(b, kernel = 3, stride = 1, padding = 1)\n"
    "  d = avgpool(c, 2)\n"
    "  e = conv2d(d, 5, [1, 2], padding = valid)\n"
    "  f = flatten(e)\n"
    "  g = dense(f, units = 4)\n"
    "  loss = softmax_cross_entropy(g)\n"
    "}\n"
    "train { batch = 3 }\n";

START_TEST(test_padding_and_defaults)
{
    /* -O0: the graph as built (at -O2 the tiled rewrite moves padding into
     * pad nodes of its own) */
    cnnc_unit u;
    cnnc_options opt = {.opt_level = 0};
    char *diags = NULL;
    ck_assert_msg(tu_frontend(&u, &opt, "s.cnn", same_net, &diags) == 0, "%s", diags);
    free(diags);
    const ir_graph *g = u.infer;
    assert_shape(g, "a", 4, 3, 3, 7, 8);   /* same, stride 1: size kept */
    assert_shape(g, "b", 4, 3, 3, 4, 4);   /* same, stride 2: ceil(7/2), ceil(8/2) */
    assert_shape(g, "c", 4, 3, 3, 4, 4);
    assert_shape(g, "d", 4, 3, 3, 2, 2);   /* positional kernel, stride = kernel */
    assert_shape(g, "e", 4, 3, 5, 2, 1);   /* positional filters and [1, 2] kernel */
    const ir_node *a = NULL, *b = NULL;
    for (int i = 0; i < g->nnodes; i++) {
        if (strcmp(g->nodes[i].name, "a") == 0)
            a = &g->nodes[i];
        if (strcmp(g->nodes[i].name, "b") == 0)
            b = &g->nodes[i];
    }
    /* kernel 4: total padding 3, the extra pixel at the bottom/right */
    ck_assert_int_eq(a->attr.pad[0], 1);
    ck_assert_int_eq(a->attr.pad[2], 2);
    ck_assert_int_eq(a->attr.pad[1], 1);
    ck_assert_int_eq(a->attr.pad[3], 2);
    /* 7 rows, kernel 3, stride 2, 4 outputs: total (4-1)*2+3-7 = 2 */
    ck_assert_int_eq(b->attr.pad[0], 1);
    ck_assert_int_eq(b->attr.pad[2], 1);
    /* 8 columns: total (4-1)*2+3-8 = 1 */
    ck_assert_int_eq(b->attr.pad[1], 0);
    ck_assert_int_eq(b->attr.pad[3], 1);
    ck_assert_int_eq(g->params[0].init.kind, CNN_INIT_NORMAL);
    ck_assert(g->params[0].init.b == 0.1);
    ck_assert_int_eq(g->params[1].init.kind, CNN_INIT_CONSTANT);
    ck_assert(g->params[1].init.a == 0.5);
    ck_assert_int_eq(g->params[2].init.kind, CNN_INIT_HE_NORMAL);
    ck_assert(g->params[2].init.a == 2);
    ck_assert_int_eq(u.net->batch, 3);
    cnnc_unit_free(&u);
}
END_TEST

START_TEST(test_unused_layer_warning)
{
    const char *text = "network w {\n"
                       "  x = input(1, 4, 4)\n"
                       "  spare = relu(x)\n"
                       "  f = flatten(x)\n"
                       "  d = dense(f, units = 2)\n"
                       "  loss = softmax_cross_entropy(d)\n"
                       "}\n";
    cnnc_unit u;
    cnnc_options opt = {0};
    char *diags = NULL;
    ck_assert_int_eq(tu_frontend(&u, &opt, "w.cnn", text, &diags), 0);
    ck_assert_ptr_nonnull(strstr(diags, "w.cnn:3:3: warning: layer 'spare' does not contribute"));
    for (int i = 0; i < u.train->nnodes; i++)
        ck_assert_str_ne(u.train->nodes[i].name, "spare");
    free(diags);
    cnnc_unit_free(&u);
}
END_TEST

/* Every train setting reaches the JSON the runtime reads, in canonical form. */
START_TEST(test_train_block_json)
{
    const char *text = "network t {\n"
                       "  x = input(3, 4, 4)\n"
                       "  f = flatten(x)\n"
                       "  d = dense(f, units = 2)\n"
                       "  loss = softmax_cross_entropy(d)\n"
                       "}\n"
                       "train {\n"
                       "  optimizer = rmsprop(lr = 0.005, centered = true, momentum = 0.5)\n"
                       "  schedule = multistep(milestones = [3, 7], gamma = 0.5)\n"
                       "  warmup_epochs = 0.5\n"
                       "  l1 = 1e-5  l2 = 5e-4  clip_norm = 2\n"
                       "  mean = [0.5, 0.4, 0.3]  std = [0.2, 0.2, 0.25]\n"
                       "  validation = 0.1\n"
                       "  augment = [hflip, crop(padding = 2), rotate(degrees = 15, fill = 0.5)]\n"
                       "}\n";
    cnnc_unit u;
    cnnc_options opt = {0};
    char *diags = NULL;
    ck_assert_msg(tu_frontend(&u, &opt, "t.cnn", text, &diags) == 0, "%s", diags);
    free(diags);
    json_t *t = u.net->train;
    json_t *o = json_object_get(t, "optimizer");
    ck_assert_str_eq(json_string_value(json_object_get(o, "type")), "rmsprop");
    ck_assert(json_real_value(json_object_get(o, "lr")) == 0.005);
    ck_assert(json_real_value(json_object_get(o, "alpha")) == 0.99);
    ck_assert(json_real_value(json_object_get(o, "eps")) == 1e-8);
    ck_assert(json_real_value(json_object_get(o, "momentum")) == 0.5);
    ck_assert(json_is_real(json_object_get(o, "weight_decay")));
    ck_assert(json_is_true(json_object_get(o, "centered")));
    json_t *sch = json_object_get(t, "schedule");
    ck_assert_str_eq(json_string_value(json_object_get(sch, "type")), "multistep");
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(sch, "milestones"), 1)), 7);
    ck_assert(json_real_value(json_object_get(sch, "gamma")) == 0.5);
    ck_assert(json_real_value(json_object_get(t, "warmup_epochs")) == 0.5);
    ck_assert(json_real_value(json_object_get(t, "warmup_start")) == 0.1);
    ck_assert(json_real_value(json_object_get(t, "l1")) == 1e-5);
    ck_assert(json_real_value(json_object_get(t, "l2")) == 5e-4);
    ck_assert(json_real_value(json_object_get(t, "clip_norm")) == 2);
    ck_assert(json_is_false(json_object_get(t, "regularize_biases")));
    ck_assert_str_eq(json_string_value(json_object_get(t, "normalize")), "given");
    ck_assert(json_real_value(json_array_get(json_object_get(t, "mean"), 2)) == 0.3);
    ck_assert(json_real_value(json_array_get(json_object_get(t, "std"), 2)) == 0.25);
    ck_assert(json_real_value(json_object_get(t, "validation")) == 0.1);
    json_t *aug = json_object_get(t, "augment");
    ck_assert_int_eq(json_array_size(aug), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(aug, 0), "type")), "hflip");
    ck_assert(json_real_value(json_object_get(json_array_get(aug, 0), "p")) == 0.5);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(aug, 1), "padding")), 2);
    ck_assert(json_is_real(json_object_get(json_array_get(aug, 1), "fill")));
    ck_assert(json_real_value(json_object_get(json_array_get(aug, 2), "fill")) == 0.5);
    ck_assert_int_eq(json_integer_value(json_object_get(t, "batch")), 64);
    cnnc_unit_free(&u);
}
END_TEST

/* ---- robustness -------------------------------------------------------------------------- */

START_TEST(test_mutations_never_crash)
{
    char *base = read_example("lenet5.cnn");
    size_t len = strlen(base);
    cnn_rng r;
    cnn_rng_seed(&r, 2024 + (uint64_t)_i);
    static const char alphabet[] = "{}()[]=,;-#\"\n x0123456789.e_abcz";
    FILE *null = fopen("/dev/null", "w");
    int failures = 0;
    for (int iter = 0; iter < 400; iter++) {
        char *text = malloc(len + 64);
        memcpy(text, base, len + 1);
        size_t n = len;
        int edits = 1 + (int)cnn_rng_below(&r, 4);
        for (int e = 0; e < edits && n > 1; e++) {
            size_t at = cnn_rng_below(&r, n);
            switch (cnn_rng_below(&r, 3)) {
            case 0: /* delete */
                memmove(text + at, text + at + 1, n - at);
                n--;
                break;
            case 1: /* insert */
                memmove(text + at + 1, text + at, n - at + 1);
                text[at] = alphabet[cnn_rng_below(&r, sizeof alphabet - 1)];
                n++;
                break;
            default: /* replace */
                text[at] = (char)(1 + cnn_rng_below(&r, 255));
                break;
            }
        }
        cnnc_unit u;
        cnnc_options opt = {.input = "m.cnn", .opt_level = 2};
        int rc = cnnc_frontend(&u, &opt, text, null);
        if (rc != 0)
            failures++;
        ck_assert(rc != 0 || u.d.errors == 0);
        ck_assert(rc == 0 || u.d.errors > 0);
        cnnc_unit_free(&u);
        free(text);
    }
    fclose(null);
    ck_assert_int_gt(failures, 0); /* the mutations do break things */
    free(base);
}
END_TEST

/* ---- command line -------------------------------------------------------------------------- */

START_TEST(test_cli_exit_codes)
{
    const char *help[] = {"--help", NULL};
    ck_assert_int_eq(run_cnnc(help, NULL), 0);
    const char *bad_option[] = {"examples/lenet5.cnn", "--frobnicate", NULL};
    char *err = NULL;
    ck_assert_int_eq(run_cnnc(bad_option, &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown option '--frobnicate'"));
    free(err);
    const char *bad_emit[] = {"examples/lenet5.cnn", "--emit", "pdf", NULL};
    ck_assert_int_eq(run_cnnc(bad_emit, NULL), 2);
    const char *no_input[] = {NULL};
    ck_assert_int_eq(run_cnnc(no_input, NULL), 2);
    const char *missing[] = {"no/such/file.cnn", NULL};
    ck_assert_int_eq(run_cnnc(missing, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "cannot read no/such/file.cnn"));
    free(err);
    const char *unwritable[] = {"examples/lenet5.cnn", "--emit", "llvm", "-o", "/no/such/dir/x.ll",
                                NULL};
    ck_assert_int_eq(run_cnnc(unwritable, &err), 1);
    ck_assert_ptr_nonnull(strstr(err, "/no/such/dir/x.ll"));
    free(err);
}
END_TEST

/* pack.c's graph_absorb_pads, seen in the IR: ResNet-8's batch norms write
 * their outputs and input gradients inside the borders the next
 * convolution's pads would add, and the readers read inside them. */
START_TEST(test_ir_borders)
{
    char *ir = tu_path("r8.ir");
    const char *args[] = {"examples/resnet8.cnn", "--emit", "ir", "-o", ir, NULL};
    ck_assert_int_eq(run_cnnc(args, NULL), 0);
    char *text = slurp(ir);
    ck_assert_ptr_nonnull(strstr(text, "= batchnorm(%stem, "));
    ck_assert_ptr_nonnull(strstr(text, "[output in border 1 1 1 1]"));
    ck_assert_ptr_nonnull(strstr(text, "[add operand in border 1 1 1 1]"));
    ck_assert_ptr_nonnull(strstr(text, "[mask operand in border 1 1 1 1]"));
    /* r0's gradient sum in the backward-data convolution that writes its
     * later term, with the relu mask; r1's and r2's stay adds (those
     * convolutions are strided: phase by phase, fuse.c) */
    ck_assert_ptr_nonnull(
        strstr(text, "= conv2d_tiled(%c1a.grad_input.pad, %c1a.grad_input.wflip) +add(%d.s1) "
                     "+relu_mask(%c1a.pad)"));
    ck_assert_ptr_nonnull(strstr(text, " = add(%d.r1, %d.r1) +relu_mask(%c2a.pad)"));
    ck_assert_ptr_nonnull(strstr(text, " = add(%d.r2, %d.r2) +relu_mask(%c3a.pad)"));
    char *infer = strstr(text, "graph resnet8 (infer");
    ck_assert_ptr_nonnull(infer);
    *infer = '\0'; /* the train step: no pad of r0 left */
    ck_assert_ptr_null(strstr(text, "= pad(%r0)"));
    free(text);
    const char *dot[] = {"examples/resnet8.cnn", "--emit", "dot", "-o", ir, NULL};
    ck_assert_int_eq(run_cnnc(dot, NULL), 0);
    text = slurp(ir); /* the DOT boxes say the same */
    ck_assert_ptr_nonnull(strstr(text, "batchnorm + relu\\n[128, 16, 34, 34]\\n[output in border 1 1 1 1]"));
    free(text);
    const char *keep[] = {"examples/resnet8.cnn", "--keep-pads", "--emit", "ir", "-o", ir, NULL};
    ck_assert_int_eq(run_cnnc(keep, NULL), 0);
    text = slurp(ir);
    ck_assert_ptr_null(strstr(text, " in border "));
    ck_assert_ptr_nonnull(strstr(text, "= pad(%r0)"));
    free(text);
    free(ir);
}
END_TEST

/* -o - is standard output for the text outputs, never a file named "-". */
START_TEST(test_cli_stdout_dash)
{
    unlink("-");
    const char *args[] = {"examples/mlp.cnn", "--emit", "ir", "-o", "-", NULL};
    ck_assert_int_eq(run_cnnc(args, NULL), 0);
    struct stat st;
    int made = stat("-", &st) == 0;
    unlink("-");
    ck_assert_msg(!made, "cnnc --emit ir -o - wrote a file named '-'");
}
END_TEST

START_TEST(test_cli_emit_kinds)
{
    char *ll = tu_path("l.ll"), *h = tu_path("l.h"), *so = tu_path("l.so"), *dot = tu_path("l.dot");
    const char *a1[] = {"examples/lenet5.cnn", "--emit", "llvm", "-o", ll, NULL};
    ck_assert_int_eq(run_cnnc(a1, NULL), 0);
    char *text = slurp(ll);
    ck_assert_ptr_nonnull(strstr(text, "define float @lenet5_train_step("));
    ck_assert_ptr_nonnull(strstr(text, "define void @lenet5_forward("));
    ck_assert_ptr_nonnull(strstr(text, "@cnn_model = weak alias"));
    free(text);
    const char *a2[] = {"examples/lenet5.cnn", "-o", so, "-O3", NULL};
    ck_assert_int_eq(run_cnnc(a2, NULL), 0);
    text = slurp(h); /* written beside the .so */
    ck_assert_ptr_nonnull(strstr(text, "float lenet5_train_step(cnn_ctx *ctx, const float *x, "
                                       "const int32_t *labels, int32_t n);"));
    ck_assert_ptr_nonnull(strstr(text, "#define LENET5_BATCH 64"));
    free(text);
    const char *a3[] = {"examples/lenet5.cnn", "--emit", "dot", "-o", dot, NULL};
    ck_assert_int_eq(run_cnnc(a3, NULL), 0);
    text = slurp(dot);
    ck_assert_ptr_nonnull(strstr(text, "digraph"));
    ck_assert_ptr_nonnull(strstr(text, "conv2d_bwd_filter"));
    free(text);
    char *s = tu_path("l.s"), *o = tu_path("l.o"), *hh = tu_path("only.h");
    const char *a4[] = {"examples/mlp.cnn", "--emit", "asm", "-o", s, NULL};
    ck_assert_int_eq(run_cnnc(a4, NULL), 0);
    text = slurp(s);
    ck_assert_ptr_nonnull(strstr(text, "mlp_train_step:"));
    free(text);
    const char *a5[] = {"examples/mlp.cnn", "--emit", "obj", "-o", o, NULL};
    ck_assert_int_eq(run_cnnc(a5, NULL), 0);
    text = slurp(o);
    ck_assert(memcmp(text, "\x7f" "ELF", 4) == 0);
    free(text);
    const char *a6[] = {"examples/mlp.cnn", "--emit", "header", "-o", hh, NULL};
    ck_assert_int_eq(run_cnnc(a6, NULL), 0);
    text = slurp(hh);
    ck_assert_ptr_nonnull(strstr(text, "void mlp_forward(cnn_ctx *ctx"));
    free(text);
    free(ll), free(h), free(so), free(dot), free(s), free(o), free(hh);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dsl");
    TCase *tc = tcase_create("front end");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_golden_diagnostics);
    tcase_add_test(tc, test_parse_structure);
    tcase_add_test(tc, test_parse_nested_calls);
    tcase_add_test(tc, test_lenet5_shapes);
    tcase_add_test(tc, test_padding_and_defaults);
    tcase_add_test(tc, test_unused_layer_warning);
    tcase_add_test(tc, test_train_block_json);
    tcase_add_loop_test(tc, test_mutations_never_crash, 0, 5);
    tcase_add_test(tc, test_cli_exit_codes);
    tcase_add_test(tc, test_cli_emit_kinds);
    tcase_add_test(tc, test_cli_stdout_dash);
    tcase_add_test(tc, test_ir_borders);
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
