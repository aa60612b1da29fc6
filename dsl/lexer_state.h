/* lexer_state.h — what the reentrant lexer and parser share (private to dsl/). */
#ifndef CNNC_LEXER_STATE_H
#define CNNC_LEXER_STATE_H

#include "ast.h"

typedef struct dsl_lexer {
    const src_file *src;
    arena *arena;
    diag *diag;
    int line, col;  /* position of the next character */
    int failed;     /* a lexical error was reported */
    ast_file *file; /* the parser's result */
} dsl_lexer;

#endif
