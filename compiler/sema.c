/*
 * sema.c — from the syntax tree to a `network`: which blocks, layers and
 * options exist, and what the names refer to.
 *
 * The grammar (dsl/parser.y) accepts any `name = expression` in any block;
 * this file holds the tables that give those statements meaning:
 *
 *   network NAME { ... }   layers `name = op(inputs..., options)` and the
 *                          settings classes, init, bias_init
 *   train { ... }          batch, epochs, seed, optimizer (kept as JSON for
 *                          the runtime, defaults filled in)
 *
 * Layers refer to earlier layers by name, so a network is a DAG in source
 * order.  Everything the user can get wrong is reported here with a caret
 * and, where a near miss exists, "did you mean": unknown blocks, layer
 * types, options and names; redefinitions (with a note at the first
 * definition); a missing input or loss.  Shapes are checked later, when
 * the graph is built (graph.c, shape.c).
 */
#include <string.h>

#include "cnnc.h"

/* ---- option tables ------------------------------------------------------ */

/* Table rows: an option with numeric bounds (lo >= hi: unbounded), one
 * chosen from names, one that is a call, a list of calls, a list of numbers. */
#define OPT(k, t, d, lo, hi, h) {.key = k, .type = t, .def = d, .min = lo, .max = hi, .help = h}
#define NAME_OPT(k, d, names, h) {.key = k, .type = OPT_NAME, .def = d, .choices = names, .help = h}
#define CALL_OPT(k, d, c, h) {.key = k, .type = OPT_CALL, .def = d, .calls = c, .help = h}
#define CALLS_OPT(k, d, c, lo, hi, h)                                                              \
    {.key = k, .type = OPT_CALLS, .def = d, .calls = c, .min_len = lo, .max_len = hi, .help = h}
#define LIST_OPT(k, t, d, lo, hi, nlo, nhi, h)                                                     \
    {.key = k, .type = t, .def = d, .min = lo, .max = hi, .min_len = nlo, .max_len = nhi, .help = h}

static const opt_spec no_opts[] = {{0}};

static const opt_spec constant_opts[] = {
    OPT("value", OPT_FLOAT, NULL, 0, 0, "the value"),
    {0}};
static const opt_spec uniform_opts[] = {
    OPT("low", OPT_FLOAT, "-0.05", 0, 0, "lower bound"),
    OPT("high", OPT_FLOAT, "0.05", 0, 0, "upper bound"),
    {0}};
static const opt_spec normal_opts[] = {
    OPT("mean", OPT_FLOAT, "0", 0, 0, "mean"),
    OPT("std", OPT_FLOAT, "0.05", 0, 1e9, "standard deviation"),
    {0}};
static const opt_spec gain_opts[] = {
    OPT("gain", OPT_FLOAT, "1", 0, 1e9, "multiplier of the standard gain"),
    {0}};

/* Order matters: index i is enum cnn_init_kind i. */
const call_spec sema_initializers[] = {
    {"zeros", no_opts, "all zeros"},
    {"ones", no_opts, "all ones"},
    {"constant", constant_opts, "every element = value"},
    {"uniform", uniform_opts, "U(low, high)"},
    {"normal", normal_opts, "N(mean, std^2)"},
    {"xavier_uniform", gain_opts, "U(-b, b), b = gain*sqrt(6/(fan_in+fan_out))"},
    {"xavier_normal", gain_opts, "N(0, s^2), s = gain*sqrt(2/(fan_in+fan_out))"},
    {"he_uniform", gain_opts, "U(-b, b), b = gain*sqrt(6/fan_in)"},
    {"he_normal", gain_opts, "N(0, s^2), s = gain*sqrt(2/fan_in)"},
    {"torch_default", no_opts, "PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))"},
    {0}};

#define INIT_OPTS(k, h) CALL_OPT(k, "null", sema_initializers, h)

static const opt_spec input_opts[] = {
    OPT("channels", OPT_INT, NULL, 1, 1 << 16, "C"),
    OPT("height", OPT_INT, NULL, 1, 1 << 16, "H"),
    OPT("width", OPT_INT, NULL, 1, 1 << 16, "W"),
    {0}};
static const opt_spec conv2d_opts[] = {
    OPT("filters", OPT_INT, NULL, 1, 1 << 16, "output channels"),
    OPT("kernel", OPT_SIZE2, NULL, 1, 1024, "kernel size"),
    OPT("stride", OPT_SIZE2, "1", 1, 1024, "stride"),
    OPT("padding", OPT_PADDING, "0", 0, 1024, "zero padding"),
    OPT("bias", OPT_BOOL, "true", 0, 0, "add a learned bias"),
    INIT_OPTS("init", "weight initializer"),
    INIT_OPTS("bias_init", "bias initializer"),
    OPT("in_channels", OPT_INT, "0", 0, 1 << 16, "checked against the input"),
    OPT("dilation", OPT_SIZE2, "1", 1, 1024, "spacing of the kernel taps"),
    OPT("groups", OPT_INT, "1", 1, 1 << 16, "channel groups (= channels: depthwise)"),
    {0}};
static const opt_spec dense_opts[] = {
    OPT("units", OPT_INT, NULL, 1, 1 << 24, "output features"),
    OPT("bias", OPT_BOOL, "true", 0, 0, "add a learned bias"),
    INIT_OPTS("init", "weight initializer"),
    INIT_OPTS("bias_init", "bias initializer"),
    OPT("in_features", OPT_INT, "0", 0, 1 << 24, "checked against the input"),
    {0}};
static const opt_spec pool_opts[] = {
    OPT("kernel", OPT_SIZE2, "2", 1, 1024, "window size"),
    OPT("stride", OPT_SIZE2, "null", 1, 1024, "stride (default: the window size)"),
    OPT("padding", OPT_PADDING, "0", 0, 1024, "padding"),
    {0}};

static const opt_spec batchnorm_opts[] = {
    OPT("momentum", OPT_FLOAT, "0.1", 0, 1, "weight of a batch in the running statistics"),
    OPT("eps", OPT_FLOAT, "1e-5", 0, 1, "added to the variance"),
    {0}};
static const opt_spec dropout_opts[] = {
    OPT("p", OPT_FLOAT, "0.5", 0, 0.999999, "probability of zeroing an element"),
    {0}};
static const opt_spec leaky_opts[] = {
    OPT("slope", OPT_FLOAT, "0.01", 0, 1e6, "slope for negative inputs"),
    {0}};
static const opt_spec xent_opts[] = {
    OPT("label_smoothing", OPT_FLOAT, "0", 0, 1, "weight of the uniform target"),
    {0}};

typedef struct layer_spec {
    const char *name; /* as written in a .cnn file */
    op_kind op;
    int min_in, max_in;
    const opt_spec *opts;
    int act;          /* OP_ACT: enum act_kind */
} layer_spec;

static const layer_spec layer_specs[] = {
    {"input", OP_INPUT, 0, 0, input_opts, 0},
    {"conv2d", OP_CONV2D, 1, 1, conv2d_opts, 0},
    {"dense", OP_DENSE, 1, 1, dense_opts, 0},
    {"relu", OP_RELU, 1, 1, no_opts, 0},
    {"leaky_relu", OP_ACT, 1, 1, leaky_opts, ACT_LEAKY_RELU},
    {"sigmoid", OP_ACT, 1, 1, no_opts, ACT_SIGMOID},
    {"tanh", OP_ACT, 1, 1, no_opts, ACT_TANH},
    {"gelu", OP_ACT, 1, 1, no_opts, ACT_GELU},
    {"maxpool", OP_MAXPOOL, 1, 1, pool_opts, 0},
    {"avgpool", OP_AVGPOOL, 1, 1, pool_opts, 0},
    {"global_avgpool", OP_GLOBAL_AVGPOOL, 1, 1, no_opts, 0},
    {"batchnorm", OP_BATCHNORM, 1, 1, batchnorm_opts, 0},
    {"dropout", OP_DROPOUT, 1, 1, dropout_opts, 0},
    {"flatten", OP_FLATTEN, 1, 1, no_opts, 0},
    {"add", OP_ADD, 2, 2, no_opts, 0},
    {"concat", OP_CONCAT, 2, 8, no_opts, 0},
    {"softmax", OP_SOFTMAX, 1, 1, no_opts, 0},
    {"softmax_cross_entropy", OP_SOFTMAX_XENT, 1, 1, xent_opts, 0},
    {"mse", OP_MSE_LOSS, 1, 1, no_opts, 0},
    {0}};

static int is_loss(op_kind op)
{
    return op == OP_SOFTMAX_XENT || op == OP_MSE_LOSS;
}

static const opt_spec network_settings[] = {
    OPT("classes", OPT_INT, "0", 1, 1 << 24, "number of classes (checked)"),
    INIT_OPTS("init", "default weight initializer"),
    INIT_OPTS("bias_init", "default bias initializer"),
    {0}};

static const opt_spec sgd_opts[] = {
    OPT("lr", OPT_FLOAT, "0.01", 0, 1e6, "learning rate"),
    OPT("momentum", OPT_FLOAT, "0", 0, 1, "momentum factor"),
    OPT("dampening", OPT_FLOAT, "0", 0, 1, "dampening for momentum"),
    OPT("nesterov", OPT_BOOL, "false", 0, 0, "Nesterov momentum"),
    OPT("weight_decay", OPT_FLOAT, "0", 0, 1e6, "L2 penalty added to the gradient"),
    {0}};
#define ADAM_OPTS(decay)                                                                           \
    OPT("lr", OPT_FLOAT, "0.001", 0, 1e6, "learning rate"),                                        \
        LIST_OPT("betas", OPT_FLOATS, "[0.9, 0.999]", 0, 0.999999, 2, 2, "moment decay rates"),    \
        OPT("eps", OPT_FLOAT, "1e-8", 0, 1, "added to the denominator"),                           \
        OPT("weight_decay", OPT_FLOAT, decay, 0, 1e6, "weight decay"),                             \
        OPT("amsgrad", OPT_BOOL, "false", 0, 0, "AMSGrad variant"), {0}
static const opt_spec adam_opts[] = {ADAM_OPTS("0")};
static const opt_spec adamw_opts[] = {ADAM_OPTS("0.01")};
static const opt_spec rmsprop_opts[] = {
    OPT("lr", OPT_FLOAT, "0.01", 0, 1e6, "learning rate"),
    OPT("alpha", OPT_FLOAT, "0.99", 0, 1, "smoothing constant"),
    OPT("eps", OPT_FLOAT, "1e-8", 0, 1, "added to the denominator"),
    OPT("weight_decay", OPT_FLOAT, "0", 0, 1e6, "L2 penalty added to the gradient"),
    OPT("momentum", OPT_FLOAT, "0", 0, 1, "momentum factor"),
    OPT("centered", OPT_BOOL, "false", 0, 0, "normalize by the variance estimate"),
    {0}};
static const call_spec optimizers[] = {
    {"sgd", sgd_opts, "stochastic gradient descent (torch.optim.SGD)"},
    {"adam", adam_opts, "Adam (torch.optim.Adam)"},
    {"adamw", adamw_opts, "Adam with decoupled weight decay (torch.optim.AdamW)"},
    {"rmsprop", rmsprop_opts, "RMSprop (torch.optim.RMSprop)"},
    {0}};

static const opt_spec step_opts[] = {
    OPT("step_size", OPT_INT, NULL, 1, 1e9, "epochs between decays"),
    OPT("gamma", OPT_FLOAT, "0.1", 0, 1e6, "decay factor"),
    {0}};
static const opt_spec multistep_opts[] = {
    LIST_OPT("milestones", OPT_INTS, NULL, 1, 1e9, 1, 16, "epochs at which to decay"),
    OPT("gamma", OPT_FLOAT, "0.1", 0, 1e6, "decay factor"),
    {0}};
static const opt_spec exponential_opts[] = {
    OPT("gamma", OPT_FLOAT, NULL, 0, 1e6, "decay factor per epoch"),
    {0}};
static const opt_spec cosine_opts[] = {
    OPT("t_max", OPT_INT, "0", 0, 1e9, "epochs of the half period (0: all epochs)"),
    OPT("eta_min", OPT_FLOAT, "0", 0, 1e6, "minimum learning rate"),
    {0}};
static const call_spec schedules[] = {
    {"constant", no_opts, "the optimizer's learning rate throughout"},
    {"step", step_opts, "lr * gamma^floor(epoch / step_size)"},
    {"multistep", multistep_opts, "lr * gamma^(milestones passed)"},
    {"exponential", exponential_opts, "lr * gamma^epoch"},
    {"cosine", cosine_opts, "cosine annealing from lr to eta_min over t_max epochs"},
    {0}};

static const opt_spec hflip_opts[] = {
    OPT("p", OPT_FLOAT, "0.5", 0, 1, "probability"),
    {0}};
static const opt_spec rotate_opts[] = {
    OPT("degrees", OPT_FLOAT, NULL, 0, 180, "maximum angle either way"),
    OPT("fill", OPT_FLOAT, "0", 0, 1, "value outside the image"),
    {0}};
static const opt_spec scale_opts[] = {
    OPT("min", OPT_FLOAT, "0.9", 0.1, 10, "smallest zoom"),
    OPT("max", OPT_FLOAT, "1.1", 0.1, 10, "largest zoom"),
    OPT("fill", OPT_FLOAT, "0", 0, 1, "value outside the image"),
    {0}};
static const opt_spec crop_opts[] = {
    OPT("padding", OPT_INT, "4", 0, 1024, "pixels of fill around the image"),
    OPT("fill", OPT_FLOAT, "0", 0, 1, "value of the padding"),
    {0}};
static const opt_spec translate_opts[] = {
    OPT("max", OPT_FLOAT, "0.1", 0, 1, "largest shift, as a fraction of the size"),
    OPT("fill", OPT_FLOAT, "0", 0, 1, "value outside the image"),
    {0}};
static const call_spec augmentations[] = {
    {"hflip", hflip_opts, "mirror left-right"},
    {"rotate", rotate_opts, "rotate by a random angle, bilinear"},
    {"scale", scale_opts, "zoom by a random factor, bilinear"},
    {"crop", crop_opts, "pad, then crop back at a random offset"},
    {"translate", translate_opts, "shift by a random offset"},
    {0}};

static const char *const normalize_modes[] = {"none", "auto", "given", NULL};

#define DEFAULT_SGD                                                                                \
    "{\"type\": \"sgd\", \"lr\": 0.01, \"momentum\": 0.0, \"dampening\": 0.0, "                   \
    "\"nesterov\": false, \"weight_decay\": 0.0}"

static const opt_spec train_keys[] = {
    OPT("batch", OPT_INT, "64", 1, 1 << 16, "batch size (compiled in)"),
    OPT("epochs", OPT_INT, "1", 0, 1e9, "passes over the training set"),
    OPT("seed", OPT_INT, "0", 0, 9e15, "seed for initialization and shuffling"),
    CALL_OPT("optimizer", DEFAULT_SGD, optimizers, "optimizer"),
    CALL_OPT("schedule", "{\"type\": \"constant\"}", schedules, "learning-rate schedule"),
    OPT("warmup_epochs", OPT_FLOAT, "0", 0, 1e6, "linear warm-up length"),
    OPT("warmup_start", OPT_FLOAT, "0.1", 0, 1, "warm-up starting factor"),
    OPT("l1", OPT_FLOAT, "0", 0, 1e6, "L1 penalty"),
    OPT("l2", OPT_FLOAT, "0", 0, 1e6, "L2 penalty"),
    OPT("regularize_biases", OPT_BOOL, "false", 0, 0, "apply l1, l2, weight decay to biases"),
    OPT("clip_norm", OPT_FLOAT, "0", 0, 1e9, "clip the global gradient norm"),
    NAME_OPT("normalize", "\"none\"", normalize_modes, "input normalization"),
    LIST_OPT("mean", OPT_FLOATS, "null", -1e6, 1e6, 1, 16, "per-channel mean"),
    LIST_OPT("std", OPT_FLOATS, "null", 1e-9, 1e6, 1, 16, "per-channel standard deviation"),
    OPT("validation", OPT_FLOAT, "0", 0, 0.9, "fraction held out for validation"),
    CALLS_OPT("augment", "[]", augmentations, 0, 8, "training augmentations"),
    {0}};

static const char *const block_kinds[] = {"network", "train"};

/* ---- helpers -------------------------------------------------------------- */

static const layer_spec *find_layer_spec(const char *name)
{
    for (const layer_spec *s = layer_specs; s->name; s++)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static const char *suggest_layer_type(const char *name)
{
    const char *names[32];
    int n = 0;
    for (const layer_spec *s = layer_specs; s->name; s++)
        names[n++] = s->name;
    return src_suggest(name, names, n);
}

/* Decode {"type": name, ...} from the initializer table into a spec. */
static init_spec decode_init(const json_t *obj)
{
    init_spec spec = {0};
    if (!obj || json_is_null(obj))
        return spec;
    const char *type = opt_str(obj, "type");
    for (int i = 0; sema_initializers[i].name; i++)
        if (strcmp(sema_initializers[i].name, type) == 0)
            spec.kind = i;
    spec.set = 1;
    switch (spec.kind) {
    case CNN_INIT_CONSTANT:
        spec.a = opt_real(obj, "value");
        break;
    case CNN_INIT_UNIFORM:
        spec.a = opt_real(obj, "low");
        spec.b = opt_real(obj, "high");
        break;
    case CNN_INIT_NORMAL:
        spec.a = opt_real(obj, "mean");
        spec.b = opt_real(obj, "std");
        break;
    case CNN_INIT_XAVIER_UNIFORM:
    case CNN_INIT_XAVIER_NORMAL:
    case CNN_INIT_HE_UNIFORM:
    case CNN_INIT_HE_NORMAL:
        spec.a = opt_real(obj, "gain");
        break;
    default:
        break;
    }
    return spec;
}

static void get_pair(const json_t *obj, const char *key, int out[2])
{
    const json_t *v = json_object_get(obj, key);
    out[0] = (int)json_integer_value(json_array_get(v, 0));
    out[1] = (int)json_integer_value(json_array_get(v, 1));
}

static void get_padding(const json_t *obj, ir_attrs *a)
{
    const json_t *v = json_object_get(obj, "padding");
    if (json_is_string(v)) {
        a->pad_same = strcmp(json_string_value(v), "same") == 0;
        return;
    }
    for (int i = 0; i < 4; i++)
        a->pad[i] = (int)json_integer_value(json_array_get(v, (size_t)i));
}

/* Fill a layer's attributes from its checked options. */
static void decode_layer(layer *l, const json_t *o)
{
    ir_attrs *a = &l->attr;
    a->groups = 1;
    a->dilation[0] = a->dilation[1] = 1;
    a->stride[0] = a->stride[1] = 1;
    switch (l->op) {
    case OP_CONV2D:
        a->filters = opt_int(o, "filters");
        get_pair(o, "kernel", a->kernel);
        get_pair(o, "stride", a->stride);
        get_pair(o, "dilation", a->dilation);
        a->groups = opt_int(o, "groups");
        get_padding(o, a);
        a->bias = opt_bool(o, "bias");
        a->expect_in = opt_int(o, "in_channels");
        l->init = decode_init(json_object_get(o, "init"));
        l->bias_init = decode_init(json_object_get(o, "bias_init"));
        break;
    case OP_DENSE:
        a->units = opt_int(o, "units");
        a->bias = opt_bool(o, "bias");
        a->expect_in = opt_int(o, "in_features");
        l->init = decode_init(json_object_get(o, "init"));
        l->bias_init = decode_init(json_object_get(o, "bias_init"));
        break;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
        get_pair(o, "kernel", a->kernel);
        if (json_is_null(json_object_get(o, "stride"))) {
            a->stride[0] = a->kernel[0];
            a->stride[1] = a->kernel[1];
        } else {
            get_pair(o, "stride", a->stride);
        }
        get_padding(o, a);
        break;
    case OP_BATCHNORM:
        a->momentum = opt_real(o, "momentum");
        a->eps = opt_real(o, "eps");
        break;
    case OP_DROPOUT:
        a->alpha = opt_real(o, "p");
        break;
    case OP_ACT:
        if (l->attr.act == ACT_LEAKY_RELU)
            a->alpha = opt_real(o, "slope");
        break;
    case OP_SOFTMAX_XENT:
        a->alpha = opt_real(o, "label_smoothing");
        break;
    default:
        break;
    }
}

/* ---- blocks of settings ------------------------------------------------------ */

/* Check `key = value` statements against spec into obj; each key once. */
static int check_setting(const ast_stmt *st, const opt_spec *spec, const char *what, json_t *obj,
                         src_loc *seen, diag *d)
{
    const opt_spec *s = opt_find(spec, st->name);
    if (!s)
        return 0;
    int slot = (int)(s - spec);
    if (seen[slot].file) {
        src_error(d, st->name_loc, "'%s' is set twice in %s", st->name, what);
        src_note(d, seen[slot], "first set here");
        return 1;
    }
    seen[slot] = st->name_loc;
    json_t *v = opt_check_value(st->value, s, what, d);
    if (v)
        json_object_set_new(obj, s->key, v);
    return 1;
}

/* Fill the keys of spec not set in obj with their defaults. */
static void fill_defaults(const opt_spec *spec, json_t *obj)
{
    for (; spec->key; spec++)
        if (!json_object_get(obj, spec->key) && spec->def)
            json_object_set_new(obj, spec->key, opt_default(spec));
}

/* Where key was set, or the train block's keyword when it was not. */
static src_loc key_loc(const char *key, const ast_block *b, const src_loc *seen)
{
    const opt_spec *s = opt_find(train_keys, key);
    src_loc at = seen[s - train_keys];
    return at.file ? at : b->kind_loc;
}

/* Rules that tie train settings together. */
static void check_train_consistency(json_t *obj, const ast_block *b, const src_loc *seen, diag *d)
{
    const json_t *opt = json_object_get(obj, "optimizer");
    if (opt_bool(opt, "nesterov") &&
        (opt_real(opt, "momentum") <= 0 || opt_real(opt, "dampening") != 0))
        src_error(d, key_loc("optimizer", b, seen),
                  "nesterov momentum needs momentum > 0 and dampening = 0");
    const json_t *ms = json_object_get(json_object_get(obj, "schedule"), "milestones");
    for (size_t i = 1; i < json_array_size(ms); i++)
        if (json_integer_value(json_array_get(ms, i)) <=
            json_integer_value(json_array_get(ms, i - 1))) {
            src_error(d, key_loc("schedule", b, seen), "multistep milestones must increase");
            break;
        }
    const json_t *mean = json_object_get(obj, "mean"), *std = json_object_get(obj, "std");
    const char *mode = opt_str(obj, "normalize");
    int given = !json_is_null(mean) || !json_is_null(std);
    if (given && strcmp(mode, "auto") == 0)
        src_error(d, key_loc("normalize", b, seen),
                  "normalize = auto computes mean and std; do not also give them");
    else if (given && (json_is_null(mean) || json_is_null(std)))
        src_error(d, key_loc(json_is_null(mean) ? "std" : "mean", b, seen),
                  "give both mean and std (one value per input channel)");
    else if (given && json_array_size(mean) != json_array_size(std))
        src_error(d, key_loc("std", b, seen), "mean has %zu values but std has %zu",
                  json_array_size(mean), json_array_size(std));
    else if (!given && strcmp(mode, "given") == 0)
        src_error(d, key_loc("normalize", b, seen), "normalize = given needs mean and std");
    else if (given)
        json_object_set_new(obj, "normalize", json_string("given"));
    const json_t *aug = json_object_get(obj, "augment");
    for (size_t i = 0; i < json_array_size(aug); i++) {
        const json_t *a = json_array_get(aug, i);
        if (strcmp(opt_str(a, "type"), "scale") == 0 && opt_real(a, "min") > opt_real(a, "max"))
            src_error(d, key_loc("augment", b, seen), "scale needs min <= max");
    }
}

static void check_train_block(const ast_block *b, network *net, arena *a, diag *d)
{
    (void)a;
    src_loc seen[32] = {{0}};
    json_t *obj = json_object();
    for (int i = 0; i < b->nstmts; i++) {
        const ast_stmt *st = &b->stmts[i];
        if (check_setting(st, train_keys, "the train block", obj, seen, d))
            continue;
        const char *hint = opt_suggest(train_keys, st->name);
        if (hint) {
            src_error(d, st->name_loc, "unknown train setting '%s'; did you mean '%s'?", st->name,
                      hint);
        } else {
            char known[512] = "";
            for (const opt_spec *k = train_keys; k->key; k++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         k == train_keys ? "" : ", ", k->key);
            src_error(d, st->name_loc, "unknown train setting '%s' (known: %s)", st->name, known);
        }
    }
    fill_defaults(train_keys, obj);
    check_train_consistency(obj, b, seen, d);
    net->mean_loc = key_loc("mean", b, seen);
    /* Optional settings left unset are absent for the runtime, not null. */
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(obj, tmp, key, value) {
        if (json_is_null(value))
            json_object_del(obj, key);
    }
    json_decref(net->train);
    net->train = obj;
    net->batch = opt_int(obj, "batch");
}

/* ---- the network block -------------------------------------------------------- */

static int find_layer(const network *net, const char *name)
{
    for (int i = 0; i < net->nlayers; i++)
        if (strcmp(net->layers[i].name, name) == 0)
            return i;
    return -1;
}

/* Name → layer for an input argument; reports undefined names. */
static int resolve_input(const network *net, const ast_block *b, int stmt, const ast_arg *arg,
                         diag *d)
{
    const ast_expr *e = arg->value;
    if (e->kind != AST_NAME) {
        src_error(d, e->loc, "expected the name of an input layer here");
        return -1;
    }
    int idx = find_layer(net, e->text);
    if (idx >= 0)
        return idx;
    for (int j = stmt + 1; j < b->nstmts; j++)
        if (strcmp(b->stmts[j].name, e->text) == 0) {
            src_error(d, e->loc, "layer '%s' is used before it is defined", e->text);
            src_note(d, b->stmts[j].name_loc, "'%s' is defined here", e->text);
            return -1;
        }
    const char *names[256];
    int n = 0;
    for (int i = 0; i < net->nlayers && n < 256; i++)
        names[n++] = net->layers[i].name;
    const char *hint = src_suggest(e->text, names, n);
    if (hint)
        src_error(d, e->loc, "undefined layer '%s'; did you mean '%s'?", e->text, hint);
    else
        src_error(d, e->loc, "undefined layer '%s'", e->text);
    return -1;
}

static void add_layer(network *net, const ast_block *b, int stmt, arena *a, diag *d)
{
    const ast_stmt *st = &b->stmts[stmt];
    const ast_expr *call = st->value;
    if (call->kind != AST_CALL) {
        src_error(d, call->loc,
                  "expected a layer, 'name = op(inputs..., options)', or a setting (classes, "
                  "init, bias_init)");
        return;
    }
    const layer_spec *spec = find_layer_spec(call->text);
    if (!spec) {
        const char *hint = suggest_layer_type(call->text);
        if (hint)
            src_error(d, call->loc, "unknown layer type '%s'; did you mean '%s'?", call->text,
                      hint);
        else
            src_error(d, call->loc, "unknown layer type '%s'", call->text);
        return;
    }
    int prev = find_layer(net, st->name);
    if (prev >= 0) {
        src_error(d, st->name_loc, "layer '%s' is already defined", st->name);
        src_note(d, net->layers[prev].loc, "previous definition of '%s' is here", st->name);
        return;
    }
    layer l = {0};
    l.name = st->name;
    l.loc = st->name_loc;
    l.op_loc = call->loc;
    l.op = spec->op;
    /* Leading positional names are inputs, up to max_in. */
    int nin = 0, ok = 1;
    while (nin < spec->max_in && nin < call->nargs && !call->args[nin].key) {
        int idx = resolve_input(net, b, stmt, &call->args[nin], d);
        if (idx < 0)
            ok = 0;
        l.inputs[nin] = idx;
        l.input_locs[nin] = call->args[nin].value->loc;
        nin++;
    }
    l.ninputs = nin;
    if (nin == spec->max_in && nin < call->nargs && !call->args[nin].key &&
        call->args[nin].value->kind == AST_NAME && find_layer(net, call->args[nin].value->text) >= 0) {
        src_error(d, call->args[nin].value->loc, "%s takes %d input layer%s, got more", spec->name,
                  spec->max_in, spec->max_in == 1 ? "" : "s");
        return;
    }
    if (nin < spec->min_in) {
        src_error(d, call->loc, "%s takes %d input layer%s, got %d", spec->name, spec->min_in,
                  spec->min_in == 1 ? "" : "s", nin);
        ok = 0;
    }
    json_t *opts = opt_check_call(call, nin, spec->opts, spec->name, d);
    if (!opts || !ok) {
        /* Keep the name defined, so that later layers using it do not
         * report it as undefined: one mistake, one message. */
        json_decref(opts);
        net->layers = arena_grow(a, net->layers, sizeof(layer), (size_t)net->nlayers,
                                 (size_t)net->nlayers + 1);
        net->layers[net->nlayers++] = l;
        return;
    }
    l.attr.act = spec->act;
    l.attr.salt = net->nlayers;
    decode_layer(&l, opts);
    if (l.op == OP_INPUT) {
        l.attr.chw[0] = opt_int(opts, "channels");
        l.attr.chw[1] = opt_int(opts, "height");
        l.attr.chw[2] = opt_int(opts, "width");
    }
    json_decref(opts);
    for (int i = 0; i < l.ninputs; i++)
        if (is_loss(net->layers[l.inputs[i]].op)) {
            src_error(d, l.input_locs[i], "the loss '%s' cannot be the input of a layer",
                      net->layers[l.inputs[i]].name);
            return;
        }
    net->layers = arena_grow(a, net->layers, sizeof(layer), (size_t)net->nlayers,
                             (size_t)net->nlayers + 1);
    net->layers[net->nlayers++] = l;
}

static void check_network_block(const ast_block *b, network *net, arena *a, diag *d,
                                init_spec *def_init, init_spec *def_bias)
{
    src_loc seen[8] = {{0}};
    json_t *settings = json_object();
    for (int i = 0; i < b->nstmts; i++) {
        const ast_stmt *st = &b->stmts[i];
        if (opt_find(network_settings, st->name)) {
            if (strcmp(st->name, "classes") == 0)
                net->classes_loc = st->value->loc;
            check_setting(st, network_settings, "the network block", settings, seen, d);
            continue;
        }
        add_layer(net, b, i, a, d);
    }
    if (json_object_get(settings, "classes"))
        net->classes = opt_int(settings, "classes");
    *def_init = decode_init(json_object_get(settings, "init"));
    *def_bias = decode_init(json_object_get(settings, "bias_init"));
    json_decref(settings);
}

/* Input and loss: exactly one each.  A missing one is only reported when
 * the block had no other error (the layer with the error may have been
 * the loss). */
static void check_endpoints(network *net, const ast_block *b, diag *d, int errors_before)
{
    net->input = net->loss = -1;
    for (int i = 0; i < net->nlayers; i++) {
        int *slot = net->layers[i].op == OP_INPUT ? &net->input
                    : is_loss(net->layers[i].op)  ? &net->loss
                                                  : NULL;
        if (!slot)
            continue;
        if (*slot >= 0) {
            src_error(d, net->layers[i].loc, "a network has one %s layer; '%s' is a second",
                      net->layers[i].op == OP_INPUT ? "input" : "loss", net->layers[i].name);
            src_note(d, net->layers[*slot].loc, "the first is '%s'", net->layers[*slot].name);
            continue;
        }
        *slot = i;
    }
    if (d->errors > errors_before)
        return;
    if (net->input < 0)
        src_error(d, b->name_loc,
                  "network '%s' has no input layer; add one, e.g. 'x = input(1, 28, 28)'",
                  net->name);
    if (net->loss < 0)
        src_error(d, b->name_loc,
                  "network '%s' has no loss; add one, e.g. 'loss = softmax_cross_entropy(logits)'",
                  net->name);
}

static void apply_default_inits(network *net, init_spec def_init, init_spec def_bias)
{
    for (int i = 0; i < net->nlayers; i++) {
        layer *l = &net->layers[i];
        if (!l->init.set)
            l->init = def_init.set ? def_init : (init_spec){CNN_INIT_TORCH_DEFAULT, 0, 0, 0};
        if (!l->bias_init.set)
            l->bias_init = def_bias.set ? def_bias : (init_spec){CNN_INIT_TORCH_DEFAULT, 0, 0, 0};
    }
}

network *sema_network(const ast_file *f, arena *a, diag *d)
{
    network *net = arena_alloc(a, sizeof *net);
    net->input = net->loss = -1;
    net->batch = 64;
    const ast_block *netblock = NULL, *trainblock = NULL;
    for (int i = 0; i < f->nblocks; i++) {
        const ast_block *b = &f->blocks[i];
        const ast_block **slot = strcmp(b->kind, "network") == 0 ? &netblock
                                 : strcmp(b->kind, "train") == 0 ? &trainblock
                                                                 : NULL;
        if (!slot) {
            const char *hint = src_suggest(b->kind, block_kinds, 2);
            if (hint)
                src_error(d, b->kind_loc, "unknown block '%s'; did you mean '%s'?", b->kind,
                          hint);
            else
                src_error(d, b->kind_loc, "unknown block '%s' (expected network or train)",
                          b->kind);
            continue;
        }
        if (*slot) {
            src_error(d, b->kind_loc, "a file has one %s block", b->kind);
            src_note(d, (*slot)->kind_loc, "the first is here");
            continue;
        }
        *slot = b;
    }
    if (trainblock && trainblock->name)
        src_error(d, trainblock->name_loc, "a train block has no name: 'train { ... }'");
    if (!netblock) {
        src_loc start = {f->src, 1, 1, 1};
        if (d->errors == 0)
            src_error(d, start, "no network block; a file needs 'network NAME { ... }'");
        return NULL;
    }
    if (!netblock->name) {
        src_error(d, netblock->kind_loc, "a network needs a name: 'network NAME { ... }'");
        return NULL;
    }
    net->name = netblock->name;
    net->loc = netblock->name_loc;
    check_train_block(trainblock ? trainblock : &(ast_block){.kind = "train"}, net, a, d);
    init_spec def_init, def_bias;
    int errors_before = d->errors;
    check_network_block(netblock, net, a, d, &def_init, &def_bias);
    check_endpoints(net, netblock, d, errors_before);
    const json_t *mean = json_object_get(net->train, "mean");
    if (net->input >= 0 && mean &&
        (int)json_array_size(mean) != net->layers[net->input].attr.chw[0])
        src_error(d, net->mean_loc, "mean and std need one value per input channel: %d, not %zu",
                  net->layers[net->input].attr.chw[0], json_array_size(mean));
    apply_default_inits(net, def_init, def_bias);
    if (d->errors) {
        network_free(net);
        return NULL;
    }
    return net;
}

void network_free(network *net)
{
    if (net)
        json_decref(net->train);
}
