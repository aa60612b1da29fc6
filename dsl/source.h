/*
 * source.h — source files, locations and diagnostics, plus the bump
 * allocator every front-end and compiler structure lives in.
 *
 * Every user-facing error of cnnc goes through src_error(): it prints
 *
 *     file:line:col: error: message
 *         conv1 = conv2d(x, filter=6)
 *                           ^~~~~~
 *
 * and counts the error; the driver exits with status 1 when the count is
 * non-zero.  A location carries a length so the caret can underline a
 * whole token.  src_note() prints a follow-up ("note: ... defined here")
 * pointing at another place.  Output goes to a FILE* the caller chooses
 * (stderr in the driver, a memory stream in tests).
 */
#ifndef CNNC_SOURCE_H
#define CNNC_SOURCE_H

#include <stddef.h>
#include <stdio.h>

typedef struct src_file {
    const char *path;  /* as given on the command line */
    const char *text;  /* whole file, NUL-terminated */
    size_t len;
} src_file;

typedef struct src_loc {
    const src_file *file; /* NULL: no location (internal or command line) */
    int line;             /* 1-based */
    int col;              /* 1-based, in bytes */
    int len;              /* characters to underline, >= 1 */
} src_loc;

typedef struct diag {
    FILE *out;   /* where messages go */
    int errors;  /* errors reported so far */
    int limit;   /* stop printing after this many errors (0 = 20) */
} diag;

void diag_init(diag *d, FILE *out);
/* file:line:col: error: ..., the source line and a caret. */
void src_error(diag *d, src_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* file:line:col: warning: ...; does not count as an error. */
void src_warning(diag *d, src_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* file:line:col: note: ..., as a follow-up to the previous error. */
void src_note(diag *d, src_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Read a whole file; NULL (and errno) on failure. */
src_file *src_read(const char *path);
src_file *src_from_string(const char *path, const char *text);
void src_free(src_file *f);

/* ---- allocation ---------------------------------------------------------- */

/* A bump allocator: many small allocations, one free.  Memory is zeroed.
 * Out of memory aborts (the compiler has no way to continue). */
typedef struct arena_block arena_block;
typedef struct arena {
    arena_block *head;
} arena;

void *arena_alloc(arena *a, size_t size);
char *arena_strdup(arena *a, const char *s);
char *arena_strndup(arena *a, const char *s, size_t n);
char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(arena *a);

/* Grow a buffer owned by an arena: returns a copy of old (old_count items)
 * with room for new_count items. */
void *arena_grow(arena *a, void *old, size_t item, size_t old_count, size_t new_count);

/* The closest of candidates[0..n) to word by edit distance, or NULL when
 * none is close enough to suggest ("did you mean ...?"). */
const char *src_suggest(const char *word, const char *const *candidates, int n);

#endif
