/*
 * memplan.c — where every intermediate tensor lives in the arena.
 *
 * Every VAL_ACT value that is not a view gets a byte offset, 64-byte
 * aligned (a cache line, and one AVX-512 vector).  Views (flatten, and the
 * gradient of a flatten) take the offset of the value they view, and keep
 * it alive: a use of a view is a use of its base.
 *
 * Without reuse (-O0) values are laid out one after another.  With reuse,
 * each value lives from the node that writes it to the last node that
 * reads it (the loss lives to the end: the entry point returns it; so do
 * the logits, which the runtime reads after a train step), and a value is
 * placed at the lowest offset that does not overlap any value alive at the
 * same time.  Lifetimes are inclusive at both ends, so an output never
 * shares memory with an input of the same node.  Placing the largest
 * values first keeps fragmentation low; on these small graphs the greedy
 * fit is within a few percent of the peak live size.
 *
 * The forward program is planned `like` the train program: a value with
 * the same name and size as one of the train step's takes its offset
 * wherever that clears everything placed so far, and the rest fit around
 * them.  The forward pass's kernels then read and write the same
 * addresses as the train step's forward kernels, so codegen.c compiles
 * each such kernel once and both entry points call it (a quarter less
 * code to compile for LeNet-5).  The arena is sized for the train step
 * anyway, so this costs no memory.
 */
#include <stdlib.h>
#include <string.h>

#include "cnnc.h"

static int64_t align64(int64_t x)
{
    return (x + 63) & ~(int64_t)63;
}

/* The value whose memory v uses. */
static int base_of(const ir_graph *g, int v)
{
    while (g->values[v].alias >= 0)
        v = g->values[v].alias;
    return v;
}

typedef struct interval {
    int value;
    int start, end; /* node indices, inclusive */
    int64_t size;   /* bytes, aligned */
} interval;

static int by_size_desc(const void *a, const void *b)
{
    const interval *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return x->start - y->start;
}

static int overlap(const interval *x, const interval *y)
{
    return !(x->end < y->start || y->end < x->start);
}

/* Whether interval i could sit at byte `at` without overlapping a placed
 * interval alive at the same time. */
static int clear_of(const ir_graph *g, const interval *iv, const char *placed, int count, int i,
                    int64_t at)
{
    for (int o = 0; o < count; o++) {
        if (!placed[o] || o == i || !overlap(&iv[o], &iv[i]))
            continue;
        int64_t lo = g->values[iv[o].value].offset;
        if (at < lo + iv[o].size && lo < at + iv[i].size)
            return 0;
    }
    return 1;
}

/* The offset of the arena value called `name` in graph `like`, if it has
 * one of `size` bytes; else -1. */
static int64_t offset_in(const ir_graph *like, const char *name, int64_t size)
{
    for (int v = 0; v < like->nvalues; v++) {
        const ir_value *val = &like->values[v];
        if (val->kind == VAL_ACT && val->alias < 0 && val->producer >= 0 &&
            align64(ir_shape_size(val->shape) * 4) == size && name && val->name &&
            strcmp(val->name, name) == 0)
            return val->offset;
    }
    return -1;
}

int64_t memplan(ir_graph *g, int reuse, const ir_graph *like, plan_stats *stats)
{
    int nv = g->nvalues;
    interval *iv = calloc((size_t)nv, sizeof *iv);
    int *index = calloc((size_t)nv, sizeof *index);
    int count = 0;
    for (int v = 0; v < nv; v++) {
        const ir_value *val = &g->values[v];
        index[v] = -1;
        if (val->kind != VAL_ACT || val->alias >= 0 || val->producer < 0)
            continue; /* not in the arena, a view, or left over by a rewrite */
        int start = val->producer >= 0 ? val->producer : 0;
        iv[count] = (interval){v, start, start, align64(ir_shape_size(val->shape) * 4)};
        index[v] = count++;
    }
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++) {
            int b = index[base_of(g, g->nodes[i].in[j])];
            if (b >= 0 && iv[b].end < i)
                iv[b].end = i;
        }
    /* A pad done by the kernel that reads it (pad_inlined) reads its input
     * there: that input lives to that node. */
    for (int i = 0; i < g->nnodes; i++) {
        int at = pad_inlined(g, &g->nodes[i]);
        int b = at >= 0 ? index[base_of(g, g->nodes[i].in[0])] : -1;
        if (b >= 0 && iv[b].end < at)
            iv[b].end = at;
    }
    int keep[2] = {g->loss, g->logits};
    for (int k = 0; k < 2; k++)
        if (keep[k] >= 0 && index[base_of(g, keep[k])] >= 0)
            iv[index[base_of(g, keep[k])]].end = g->nnodes;
    int64_t total = 0;
    if (!reuse) {
        for (int i = 0; i < count; i++) {
            g->values[iv[i].value].offset = total;
            total += iv[i].size;
        }
    } else {
        qsort(iv, (size_t)count, sizeof *iv, by_size_desc);
        char *placed = calloc((size_t)count + 1, 1);
        if (like)
            for (int i = 0; i < count; i++) {
                int64_t at = offset_in(like, g->values[iv[i].value].name, iv[i].size);
                if (at >= 0 && clear_of(g, iv, placed, count, i, at)) {
                    g->values[iv[i].value].offset = at;
                    placed[i] = 1;
                }
            }
        for (int i = 0; i < count; i++) {
            if (placed[i])
                continue;
            /* Lowest offset clear of every placed interval alive at the same time:
             * try 0 and the end of each such interval. */
            int64_t best = -1;
            for (int c = -1; c < count; c++) {
                if (c >= 0 && (!placed[c] || !overlap(&iv[c], &iv[i])))
                    continue;
                int64_t at = c < 0 ? 0 : g->values[iv[c].value].offset + iv[c].size;
                if (clear_of(g, iv, placed, count, i, at) && (best < 0 || at < best))
                    best = at;
            }
            g->values[iv[i].value].offset = best;
            placed[i] = 1;
        }
        for (int i = 0; i < count; i++)
            if (g->values[iv[i].value].offset + iv[i].size > total)
                total = g->values[iv[i].value].offset + iv[i].size;
        free(placed);
    }
    for (int v = 0; v < nv; v++)
        if (g->values[v].kind == VAL_ACT && g->values[v].alias >= 0)
            g->values[v].offset = g->values[base_of(g, v)].offset;
    if (stats) {
        *stats = (plan_stats){align64(total), 0, 0, count, like && reuse};
        for (int i = 0; i < count; i++)
            stats->buffers += iv[i].size;
        for (int t = 0; t <= g->nnodes; t++) {
            int64_t live = 0;
            for (int i = 0; i < count; i++)
                if (iv[i].start <= t && t <= iv[i].end)
                    live += iv[i].size;
            if (live > stats->peak_live)
                stats->peak_live = live;
        }
    }
    free(iv);
    free(index);
    return align64(total);
}
