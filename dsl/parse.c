/*
 * parse.c — dsl_parse(): run the flex lexer and bison parser over a file.
 */
#include "ast.h"
#include "lexer_state.h"
#include "parser.h"
#include "lexer.h"

ast_file *dsl_parse(const src_file *src, arena *a, diag *d)
{
    dsl_lexer lx = {.src = src, .arena = a, .diag = d, .line = 1, .col = 1};
    yyscan_t scanner;
    if (yylex_init_extra(&lx, &scanner) != 0) {
        src_loc none = {0};
        src_error(d, none, "cannot start the lexer");
        return NULL;
    }
    YY_BUFFER_STATE buf = yy_scan_bytes(src->text, (int)src->len, scanner);
    int rc = yyparse(scanner, &lx);
    yy_delete_buffer(buf, scanner);
    yylex_destroy(scanner);
    if (rc != 0 || lx.failed)
        return NULL;
    return lx.file;
}
