/*
 * ast.h — the syntax tree of a .cnn file, exactly as written.
 *
 * The grammar is deliberately generic: a file is a list of blocks
 * (`network lenet5 { ... }`, `train { ... }`), a block is a list of
 * `name = expression` statements, and an expression is a number, a string,
 * a name, a list `[a, b]` or a call `op(args, key = value)`.  The parser
 * knows nothing of layers, options or tensors: which block kinds, ops and
 * keys exist is decided later by the compiler (compiler/sema.c), which is
 * what lets it say "unknown option 'filter', did you mean 'filters'?"
 * with the caret on the right token, and lets new layers and training
 * options arrive without touching the grammar.
 *
 * Every node carries the location of its first token (and a length for
 * the caret).  Nodes live in the arena passed to the parser.
 */
#ifndef CNNC_AST_H
#define CNNC_AST_H

#include "source.h"

typedef enum ast_kind {
    AST_NUMBER, /* 64, 0.01, 1e-3; is_int says whether it was written as an integer */
    AST_STRING, /* "same" */
    AST_NAME,   /* conv1, true, he_uniform */
    AST_LIST,   /* [3, 3] */
    AST_CALL,   /* conv2d(x, filters = 6) */
} ast_kind;

typedef struct ast_expr ast_expr;

typedef struct ast_arg {
    const char *key; /* NULL for a positional argument */
    src_loc key_loc; /* location of key (or of the value when positional) */
    ast_expr *value;
} ast_arg;

struct ast_expr {
    ast_kind kind;
    src_loc loc;
    double number;       /* AST_NUMBER */
    int is_int;          /* AST_NUMBER written without '.' or exponent */
    const char *text;    /* AST_STRING contents, AST_NAME / AST_CALL name */
    ast_arg *args;       /* AST_CALL arguments, AST_LIST items (key NULL) */
    int nargs;
};

typedef struct ast_stmt {
    const char *name; /* left-hand side */
    src_loc name_loc;
    ast_expr *value;
} ast_stmt;

typedef struct ast_block {
    const char *kind; /* "network", "train", ... */
    src_loc kind_loc;
    const char *name; /* NULL when the block has none */
    src_loc name_loc;
    ast_stmt *stmts;
    int nstmts;
    src_loc end_loc;  /* the closing brace */
} ast_block;

typedef struct ast_file {
    const src_file *src;
    ast_block *blocks;
    int nblocks;
} ast_file;

/* Parse src into an AST allocated in a.  Syntax errors are reported through
 * d; returns NULL if there was any. */
ast_file *dsl_parse(const src_file *src, arena *a, diag *d);

/* Helpers for the parser actions. */
ast_expr *ast_new(arena *a, ast_kind kind, src_loc loc);
void ast_push_arg(arena *a, ast_expr *e, ast_arg arg);
void ast_push_stmt(arena *a, ast_block *b, ast_stmt s);
void ast_push_block(arena *a, ast_file *f, ast_block b);

/* Write an expression back as source text (for messages and golden tests). */
void ast_print_expr(FILE *out, const ast_expr *e);

#endif
