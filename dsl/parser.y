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
 * tokens bison expected there and parsing stops.
 */
%code requires {
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
%define parse.error detailed
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

static void yyerror(YYLTYPE *loc, yyscan_t scanner, dsl_lexer *lx, const char *msg)
{
    (void)scanner;
    if (lx->failed) /* the lexer already said what is wrong */
        return;
    src_error(lx->diag, make_loc(lx, *loc), "%s", msg);
}
