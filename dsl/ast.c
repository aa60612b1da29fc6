/*
 * ast.c — building and printing syntax trees.
 *
 * Arrays in the tree grow by doubling inside the arena; their capacity is
 * implicit (the next power of two at or above the count, at least 4), so
 * nodes need no capacity field.
 */
#include "ast.h"

#include <string.h>

ast_expr *ast_new(arena *a, ast_kind kind, src_loc loc)
{
    ast_expr *e = arena_alloc(a, sizeof *e);
    e->kind = kind;
    e->loc = loc;
    return e;
}

/* Make room for one more item in an array holding n items. */
static void *grow(arena *a, void *items, size_t size, int n)
{
    if (n == 0)
        return arena_grow(a, NULL, size, 0, 4);
    if (n >= 4 && (n & (n - 1)) == 0)
        return arena_grow(a, items, size, (size_t)n, (size_t)n * 2);
    return items;
}

void ast_push_arg(arena *a, ast_expr *e, ast_arg arg)
{
    e->args = grow(a, e->args, sizeof arg, e->nargs);
    e->args[e->nargs++] = arg;
}

void ast_push_stmt(arena *a, ast_block *b, ast_stmt s)
{
    b->stmts = grow(a, b->stmts, sizeof s, b->nstmts);
    b->stmts[b->nstmts++] = s;
}

void ast_push_block(arena *a, ast_file *f, ast_block b)
{
    f->blocks = grow(a, f->blocks, sizeof b, f->nblocks);
    f->blocks[f->nblocks++] = b;
}

void ast_print_expr(FILE *out, const ast_expr *e)
{
    switch (e->kind) {
    case AST_NUMBER:
        fprintf(out, "%.17g", e->number);
        break;
    case AST_STRING:
        fprintf(out, "\"%s\"", e->text);
        break;
    case AST_NAME:
        fputs(e->text, out);
        break;
    case AST_LIST:
    case AST_CALL:
        if (e->kind == AST_CALL)
            fputs(e->text, out);
        fputc(e->kind == AST_CALL ? '(' : '[', out);
        for (int i = 0; i < e->nargs; i++) {
            if (i)
                fputs(", ", out);
            if (e->args[i].key)
                fprintf(out, "%s=", e->args[i].key);
            ast_print_expr(out, e->args[i].value);
        }
        fputc(e->kind == AST_CALL ? ')' : ']', out);
        break;
    }
}
