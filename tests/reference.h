/*
 * reference.h — the reference implementation: a plain C interpreter of the
 * graph IR, the oracle the compiled code is tested against.
 *
 * It shares nothing with the code generator but the graph: every op is
 * written again from its definition, in the most direct form (backward
 * passes as scatters where the compiler gathers), with sums accumulated
 * in double.  Independent of LLVM.
 */
#ifndef CNNC_REFERENCE_H
#define CNNC_REFERENCE_H

#include "cnnc.h"

typedef struct ref_result {
    double loss;       /* TRAIN graphs */
    float *logits;     /* n * classes, malloc'd */
    float *input_grad; /* d(loss)/d(x) when the graph computes it, else NULL */
} ref_result;

/* Run g on the first n examples of x (and labels, for TRAIN graphs).
 * params is the flat parameter array; grads (TRAIN) receives every
 * parameter gradient.  Returns 0, or -1 when an op has no reference
 * implementation. */
int ref_run(const ir_graph *g, const float *params, float *grads, const float *x,
            const int32_t *labels, int n, ref_result *out);
void ref_result_free(ref_result *r);

/* The context's seed and step counter that dropout reads (set before
 * ref_run; the compiled code reads ctx->seed and ctx->step). */
extern uint64_t ref_seed, ref_step;

/* Whether op has a reference implementation (every op should). */
int ref_has_op(op_kind op);

#endif
