/*
 * source.c — reading source files, printing diagnostics with a caret,
 * the bump allocator, and "did you mean" suggestions.
 *
 * Diagnostics print the offending line verbatim (tabs kept, so the caret
 * lines up in a terminal: every tab before the column is echoed as a tab
 * in the caret line).  A location past the end of its line (an error at
 * end of file) puts the caret just after the last character.
 */
#include "source.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void diag_init(diag *d, FILE *out)
{
    d->out = out;
    d->errors = 0;
    d->limit = 20;
}

/* Print line `line` of f and a caret under [col, col+len). */
static void print_caret(FILE *out, const src_file *f, int line, int col, int len)
{
    const char *p = f->text;
    for (int l = 1; l < line && *p; p++)
        if (*p == '\n')
            l++;
    const char *end = p;
    while (*end && *end != '\n')
        end++;
    int width = (int)(end - p);
    fprintf(out, "    %.*s\n    ", width, p);
    if (col < 1)
        col = 1;
    if (col > width + 1)
        col = width + 1;
    for (int i = 0; i < col - 1; i++)
        fputc(p[i] == '\t' ? '\t' : ' ', out);
    fputc('^', out);
    if (len > width - (col - 1))
        len = width - (col - 1);
    for (int i = 1; i < len; i++)
        fputc('~', out);
    fputc('\n', out);
}

static void report(diag *d, src_loc loc, const char *kind, const char *fmt, va_list ap)
{
    if (loc.file)
        fprintf(d->out, "%s:%d:%d: %s: ", loc.file->path, loc.line, loc.col, kind);
    else
        fprintf(d->out, "cnnc: %s: ", kind);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    if (loc.file && loc.line > 0)
        print_caret(d->out, loc.file, loc.line, loc.col, loc.len > 0 ? loc.len : 1);
}

void src_error(diag *d, src_loc loc, const char *fmt, ...)
{
    d->errors++;
    if (d->errors > d->limit)
        return;
    va_list ap;
    va_start(ap, fmt);
    report(d, loc, "error", fmt, ap);
    va_end(ap);
    if (d->errors == d->limit)
        fprintf(d->out, "cnnc: too many errors, stopping\n");
}

void src_warning(diag *d, src_loc loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report(d, loc, "warning", fmt, ap);
    va_end(ap);
}

void src_note(diag *d, src_loc loc, const char *fmt, ...)
{
    if (d->errors > d->limit)
        return;
    va_list ap;
    va_start(ap, fmt);
    report(d, loc, "note", fmt, ap);
    va_end(ap);
}

src_file *src_from_string(const char *path, const char *text)
{
    src_file *f = calloc(1, sizeof *f);
    char *copy = strdup(text);
    char *name = strdup(path);
    if (!f || !copy || !name) {
        free(f), free(copy), free(name);
        return NULL;
    }
    f->path = name;
    f->text = copy;
    f->len = strlen(copy);
    return f;
}

src_file *src_read(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len - 1, fp)) > 0) {
        len += got;
        if (cap - len - 1 == 0) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    int failed = !buf || ferror(fp);
    int saved = errno;
    fclose(fp);
    if (failed) {
        free(buf);
        errno = saved ? saved : EIO;
        return NULL;
    }
    buf[len] = '\0';
    src_file *f = calloc(1, sizeof *f);
    char *name = strdup(path);
    if (!f || !name) {
        free(f), free(name), free(buf);
        errno = ENOMEM;
        return NULL;
    }
    f->path = name;
    f->text = buf;
    f->len = len;
    return f;
}

void src_free(src_file *f)
{
    if (!f)
        return;
    free((char *)f->path);
    free((char *)f->text);
    free(f);
}

/* ---- arena --------------------------------------------------------------- */

struct arena_block {
    arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *arena_alloc(arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    arena_block *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 60000 ? size : 60000;
        b = malloc(sizeof *b + cap);
        if (!b) {
            fputs("cnnc: out of memory\n", stderr);
            abort();
        }
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *arena_printf(arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void *arena_grow(arena *a, void *old, size_t item, size_t old_count, size_t new_count)
{
    void *p = arena_alloc(a, item * new_count);
    if (old && old_count)
        memcpy(p, old, item * old_count);
    return p;
}

void arena_free(arena *a)
{
    arena_block *b = a->head;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* ---- suggestions --------------------------------------------------------- */

/* Levenshtein distance, with an adjacent transposition counted as one edit
 * (so "relu" ~ "rleu" is 1). Words longer than 63 bytes are never close. */
static int edit_distance(const char *a, const char *b)
{
    int n = (int)strlen(a), m = (int)strlen(b);
    if (n > 63 || m > 63)
        return 1000;
    int d[64][64];
    for (int i = 0; i <= n; i++)
        d[i][0] = i;
    for (int j = 0; j <= m; j++)
        d[0][j] = j;
    for (int i = 1; i <= n; i++)
        for (int j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[n][m];
}

const char *src_suggest(const char *word, const char *const *candidates, int n)
{
    const char *best = NULL;
    int best_d = 1000;
    int len = (int)strlen(word);
    /* Allow one edit for short words, up to a third of the length for long. */
    int allowed = len <= 2 ? 0 : len <= 4 ? 1 : len / 3 + 1;
    for (int i = 0; i < n; i++) {
        int dist = edit_distance(word, candidates[i]);
        /* A prefix of at least 3 letters is as good as one edit ("conv" -> "conv2d"). */
        size_t cl = strlen(candidates[i]);
        if (len >= 3 && dist > 1 && (size_t)len < cl && strncmp(word, candidates[i], (size_t)len) == 0)
            dist = 1;
        if (dist < best_d) {
            best_d = dist;
            best = candidates[i];
        }
    }
    return best_d <= allowed ? best : NULL;
}
