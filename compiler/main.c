/*
 * main.c — the cnnc command line.
 *
 *   cnnc net.cnn [-o OUT] [--emit KIND] [-O0..-O3] [--target TRIPLE]
 *        [--cpu CPU] [--batch N] [--forward-chunk N] [--keep-pads] [--summary] [--runtime-dir DIR] [-v]
 *
 * Exit status: 0 success, 1 an error in the input (or a file that cannot
 * be written), 2 a usage error.
 */
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"

static const char usage[] =
    "usage: cnnc FILE.cnn [options]\n"
    "  -o PATH             output file (default: FILE with the extension of --emit)\n"
    "  --emit KIND         so (default: shared library + header), exe (training\n"
    "                      program), obj, llvm, asm, header, ir (graph IR), dot\n"
    "                      (Graphviz), loops (loop IR), json (the network, for tools)\n"
    "  --summary           print the layer table (shapes, parameters, FLOPs, memory)\n"
    "  -O0 -O1 -O2 -O3     optimization level (default -O2); -O0 keeps every\n"
    "                      tensor in its own buffer and does no LLVM optimization\n"
    "  --target TRIPLE     cross-compile: aarch64-linux-gnu (default: this machine)\n"
    "  --cpu CPU           CPU to compile for (default: this machine's; generic\n"
    "                      for another target); x86-64, x86-64-v2..v4 for\n"
    "                      portable x86 code; cortex-a72, neoverse-n1, ...\n"
    "  --batch N           compiled batch size (default: the train block's)\n"
    "  --forward-chunk N   the forward pass runs its layers over N examples at a\n"
    "                      time (default: what fits the L2 cache; -v prints it)\n"
    "  --keep-pads         keep every zero padding a copy of its own (default:\n"
    "                      a batch norm writes its output inside the border);\n"
    "                      for benchmarks that subtract one network from another\n"
    "  --runtime-dir DIR   where libcnnrt.a is, for --emit exe\n"
    "  -v                  print the commands run\n"
    "  --version, --help\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "cnnc: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

static int parse_emit(const char *s, emit_kind *out)
{
    static const struct {
        const char *name;
        emit_kind kind;
    } kinds[] = {{"so", EMIT_SO},         {"obj", EMIT_OBJ}, {"llvm", EMIT_LLVM},
                 {"asm", EMIT_ASM},       {"header", EMIT_HEADER}, {"exe", EMIT_EXE},
                 {"ir", EMIT_IR},         {"dot", EMIT_DOT}, {"loops", EMIT_LOOPS},
                 {"json", EMIT_JSON}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(s, kinds[i].name) == 0) {
            *out = kinds[i].kind;
            return 0;
        }
    return -1;
}

/* Default output: the input's base name with the kind's extension. */
static char *default_output(const char *input, emit_kind emit)
{
    static const char *const ext[] = {[EMIT_SO] = ".so",   [EMIT_OBJ] = ".o",
                                      [EMIT_LLVM] = ".ll", [EMIT_ASM] = ".s",
                                      [EMIT_HEADER] = ".h", [EMIT_EXE] = ""};
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    size_t stem = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot)
        stem = (size_t)(dot - base);
    char *out = malloc(stem + 8);
    memcpy(out, base, stem);
    strcpy(out + stem, ext[emit]);
    if (emit == EMIT_EXE && strcmp(out, base) == 0)
        strcat(out, ".out");
    return out;
}

/* Text outputs go to -o or stdout (also for -o -). */
static int emit_text(cnnc_unit *u, emit_kind emit, const char *path, int summary)
{
    if (path && strcmp(path, "-") == 0)
        path = NULL;
    FILE *out = path ? fopen(path, "w") : stdout;
    if (!out) {
        perror(path);
        return 1;
    }
    if (summary)
        graph_summary(out, u->layers, u->train, &u->train_plan, &u->infer_plan);
    else if (emit == EMIT_IR) {
        graph_print(out, u->train);
        fputc('\n', out);
        graph_print(out, u->infer);
    } else if (emit == EMIT_DOT) {
        graph_print_dot(out, u->train);
    } else if (emit == EMIT_JSON) {
        fputs(u->network_json, out);
    } else {
        lp_print(out, u->train_prog);
        fputc('\n', out);
        lp_print(out, u->infer_prog);
    }
    if (path && fclose(out) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    cnnc_options opt = {.emit = EMIT_SO, .opt_level = 2};
    const char *output = NULL;
    int summary = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("cnnc %s (LLVM C API, model ABI %d)\n", CNNC_VERSION, CNN_ABI_VERSION);
            return 0;
        } else if (strcmp(a, "-o") == 0 && next) {
            output = argv[++i];
        } else if (strcmp(a, "--emit") == 0 && next) {
            if (parse_emit(argv[++i], &opt.emit) != 0)
                return usage_error("unknown --emit kind '%s'", argv[i]);
        } else if (strncmp(a, "-O", 2) == 0 && a[2] >= '0' && a[2] <= '3' && !a[3]) {
            opt.opt_level = a[2] - '0';
        } else if (strcmp(a, "--summary") == 0) {
            summary = 1;
        } else if (strcmp(a, "--target") == 0 && next) {
            opt.target = argv[++i];
        } else if (strcmp(a, "--cpu") == 0 && next) {
            opt.cpu = argv[++i];
        } else if (strcmp(a, "--batch") == 0 && next) {
            char *end;
            long b = strtol(argv[++i], &end, 10);
            if (*end || b < 1 || b > 65536)
                return usage_error("--batch needs a number from 1 to 65536, not '%s'", argv[i]);
            opt.batch = (int)b;
        } else if (strcmp(a, "--forward-chunk") == 0 && next) {
            char *end;
            long b = strtol(argv[++i], &end, 10);
            if (*end || b < 1 || b > 65536)
                return usage_error("--forward-chunk needs a number from 1 to 65536, not '%s'",
                                   argv[i]);
            opt.forward_chunk = (int)b;
        } else if (strcmp(a, "--keep-pads") == 0) {
            opt.keep_pads = 1;
        } else if (strcmp(a, "--runtime-dir") == 0 && next) {
            opt.runtime_dir = argv[++i];
        } else if (strcmp(a, "-v") == 0) {
            opt.verbose = 1;
        } else if (a[0] == '-' && a[1]) {
            static const char *const with_value[] = {"-o", "--emit", "--target", "--cpu",
                                                     "--batch", "--forward-chunk",
                                                     "--runtime-dir"};
            for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
                if (strcmp(a, with_value[k]) == 0)
                    return usage_error("option '%s' needs a value", a);
            return usage_error("unknown option '%s'", a);
        } else if (opt.input) {
            return usage_error("only one input file, not also '%s'", a);
        } else {
            opt.input = a;
        }
    }
    if (!opt.input)
        return usage_error("%s", "no input file");
    if (target_check(opt.target, opt.cpu, stderr) != 0)
        return 2;
    cnnc_unit u;
    int rc = 1;
    double t0 = cnnc_seconds();
    if (cnnc_frontend(&u, &opt, NULL, stderr) == 0) {
        if (opt.verbose)
            fprintf(stderr, "cnnc: front end, graph passes and lowering: %.3f s\n",
                    cnnc_seconds() - t0);
        if (summary || opt.emit >= EMIT_IR) {
            rc = emit_text(&u, opt.emit, output, summary);
        } else {
            char *path = output ? NULL : default_output(opt.input, opt.emit);
            rc = cnnc_emit(&u, opt.emit, output ? output : path) == 0 ? 0 : 1;
            free(path);
        }
    }
    cnnc_unit_free(&u);
    return rc;
}
