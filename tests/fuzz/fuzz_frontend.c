/*
 * fuzz_frontend.c — libFuzzer target: any bytes as a .cnn file through the
 * whole front end (lexer, parser, semantic checks, shape inference,
 * autodiff, memory planning, lowering).  The only acceptable outcomes are
 * success or diagnostics; `make fuzz` runs it (FUZZ_SECONDS, default 60)
 * with the examples and the golden diagnostics as seeds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    static FILE *null;
    if (!null)
        null = fopen("/dev/null", "w");
    cnnc_options opt = {.input = "fuzz.cnn", .opt_level = 2};
    cnnc_unit u;
    int rc = cnnc_frontend(&u, &opt, text, null);
    if ((rc == 0) != (u.d.errors == 0))
        abort(); /* a failure must come with a diagnostic, and only then */
    cnnc_unit_free(&u);
    free(text);
    return 0;
}
