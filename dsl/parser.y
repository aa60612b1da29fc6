/*
 * parser.y — the grammar of the .cnn language (see dsl/README.md).
 *
 *   file   := block*
 *   block  := NAME [NAME] '{' stmt* '}'
 *   stmt   := NAME '=' expr [';']
 *   expr   := number | '-' number | string | NAME
 *           | NAME '(' [arg (',' arg)* [',']] ')'
 *           | '[' [expr (',' expr)* [',']] ']'
 *   arg    := expr | NAME '=' expr
 *
 * A pure (reentrant) parser with locations.  It builds the generic AST of
 * ast.h and nothing else; the first syntax error is reported with the
 * text of the offending token and the tokens bison expected there
 * ("syntax error: unexpected 'conv2d'; expected '='"), and parsing stops.
 */
%code requires {
#include <stdio.h>
#include <string.h>

#include "ast.h"
#include "lexer_state.h"
typedef void *yyscan_t;
}

%code {
int yylex(YYSTYPE *yylval, YYLTYPE *yylloc, yyscan_t scanner);
static void yyerror(YYLTYPE *loc, yyscan_t scanner, dsl_lexer *lx, const char *msg);
static src_loc make_loc(const dsl_lexer *lx, YYLTYPE l);
static ast_expr *number(dsl_lexer *lx, YYLTYPE l, double v, int is_int);
}

%define api.pure full
%locations
%define parse.error custom
%define parse.lac full
%param {yyscan_t scanner}
%parse-param {dsl_lexer *lx}

%union {
    const char *str;
    double num;
    ast_expr *expr;
    ast_block *block;
    ast_arg arg;
}

%token <str> NAME "name"
%token <str> STRING "string"
%token <num> INTEGER "integer"
%token <num> FLOAT "number"
%token LEX_ERROR "invalid token"
%token END 0 "end of file"

%type <expr> expr call_args call_arg_list list_items list_item_seq
%type <arg> call_arg
%type <block> stmts
%type <str> opt_name

%%

file
    : %empty            { lx->file = arena_alloc(lx->arena, sizeof *lx->file);
                          lx->file->src = lx->src; }
    | file block
    ;

block
    : NAME opt_name '{' stmts '}'
        { ast_block *b = $4;
          b->kind = $1;
          b->kind_loc = make_loc(lx, @1);
          b->name = $2;
          if ($2)
              b->name_loc = make_loc(lx, @2);
          b->end_loc = make_loc(lx, @5);
          ast_push_block(lx->arena, lx->file, *b); }
    ;

opt_name
    : %empty            { $$ = NULL; }
    | NAME              { $$ = $1; }
    ;

stmts
    : %empty            { $$ = arena_alloc(lx->arena, sizeof(ast_block)); }
    | stmts NAME '=' expr opt_semi
        { ast_stmt s = {$2, make_loc(lx, @2), $4};
          ast_push_stmt(lx->arena, $1, s);
          $$ = $1; }
    ;

opt_semi
    : %empty
    | ';'
    ;

expr
    : INTEGER           { $$ = number(lx, @1, $1, 1); }
    | FLOAT             { $$ = number(lx, @1, $1, 0); }
    | '-' INTEGER       { $$ = number(lx, @$, -$2, 1); }
    | '-' FLOAT         { $$ = number(lx, @$, -$2, 0); }
    | STRING            { $$ = ast_new(lx->arena, AST_STRING, make_loc(lx, @1));
                          $$->text = $1; }
    | NAME              { $$ = ast_new(lx->arena, AST_NAME, make_loc(lx, @1));
                          $$->text = $1; }
    | NAME '(' call_args ')'
        { $$ = $3;
          $$->kind = AST_CALL;
          $$->loc = make_loc(lx, @1);
          $$->text = $1; }
    | '[' list_items ']'
        { $$ = $2;
          $$->kind = AST_LIST;
          $$->loc = make_loc(lx, @$); }
    ;

call_args
    : %empty            { $$ = ast_new(lx->arena, AST_CALL, make_loc(lx, @$)); }
    | call_arg_list opt_comma
    ;

call_arg_list
    : call_arg          { $$ = ast_new(lx->arena, AST_CALL, $1.key_loc);
                          ast_push_arg(lx->arena, $$, $1); }
    | call_arg_list ',' call_arg
                        { ast_push_arg(lx->arena, $1, $3);
                          $$ = $1; }
    ;

call_arg
    : expr              { $$.key = NULL; $$.key_loc = $1->loc; $$.value = $1; }
    | NAME '=' expr     { $$.key = $1; $$.key_loc = make_loc(lx, @1); $$.value = $3; }
    ;

list_items
    : %empty            { $$ = ast_new(lx->arena, AST_LIST, make_loc(lx, @$)); }
    | list_item_seq opt_comma
    ;

list_item_seq
    : expr              { $$ = ast_new(lx->arena, AST_LIST, $1->loc);
                          ast_arg a = {NULL, $1->loc, $1};
                          ast_push_arg(lx->arena, $$, a); }
    | list_item_seq ',' expr
                        { ast_arg a = {NULL, $3->loc, $3};
                          ast_push_arg(lx->arena, $1, a);
                          $$ = $1; }
    ;

opt_comma
    : %empty
    | ','
    ;

%%

static src_loc make_loc(const dsl_lexer *lx, YYLTYPE l)
{
    int len = l.first_line == l.last_line ? l.last_column - l.first_column + 1 : 1;
    src_loc loc = {lx->src, l.first_line, l.first_column, len > 0 ? len : 1};
    return loc;
}

static ast_expr *number(dsl_lexer *lx, YYLTYPE l, double v, int is_int)
{
    ast_expr *e = ast_new(lx->arena, AST_NUMBER, make_loc(lx, l));
    e->number = v;
    e->is_int = is_int;
    return e;
}

/* A token's name for messages: bison's alias without its double quotes. */
static const char *token_name(yysymbol_kind_t kind, char *buf, size_t size)
{
    const char *name = yysymbol_name(kind);
    size_t len = strlen(name);
    if (len >= 2 && name[0] == '"')
        snprintf(buf, size, "%.*s", (int)(len - 2), name + 1);
    else
        snprintf(buf, size, "%s", name);
    return buf;
}

static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, dsl_lexer *lx)
{
    (void)scanner;
    if (lx->failed) /* the lexer already said what is wrong */
        return 0;
    const YYLTYPE *loc = yypcontext_location(ctx);
    src_loc at = make_loc(lx, *loc);
    char msg[400], name[64];
    yysymbol_kind_t got = yypcontext_token(ctx);
    if (got == YYSYMBOL_YYEOF) {
        snprintf(msg, sizeof msg, "syntax error: unexpected end of file");
    } else {
        /* the token's text, from its line in the source */
        const char *p = lx->src->text;
        for (int line = 1; line < loc->first_line && *p; p++)
            if (*p == '\n')
                line++;
        int len = at.len > 40 ? 40 : at.len;
        token_name(got, name, sizeof name);
        if (name[0] == '\'') /* punctuation: its name is its text */
            snprintf(msg, sizeof msg, "syntax error: unexpected %s", name);
        else
            snprintf(msg, sizeof msg, "syntax error: unexpected %s '%.*s'", name, len,
                     p + loc->first_column - 1);
    }
    yysymbol_kind_t expected[8];
    int n = yypcontext_expected_tokens(ctx, expected, 8);
    for (int i = 0; i < n; i++)
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "%s%s",
                 i == 0 ? "; expected " : i == n - 1 ? " or " : ", ",
                 token_name(expected[i], name, sizeof name));
    src_error(lx->diag, at, "%s", msg);
    return 0;
}

static void yyerror(YYLTYPE *loc, yyscan_t scanner, dsl_lexer *lx, const char *msg)
{
    (void)scanner;
    if (lx->failed) /* the lexer already said what is wrong */
        return;
    src_error(lx->diag, make_loc(lx, *loc), "%s", msg);
}
