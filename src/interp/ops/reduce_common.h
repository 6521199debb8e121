/* What ReduceSum / ReduceMean (reduce.c) share with the nonlinear
 * reductions (reduce_nonlinear.c): the reduced axes of a node and the
 * input seen as merged reduced / kept dimensions. */
#ifndef CS_INTERP_OPS_REDUCE_COMMON_H
#define CS_INTERP_OPS_REDUCE_COMMON_H

#include <stdbool.h>

#include "interp/op.h"

typedef struct reduce_axes {
    bool identity;             /* noop_with_empty_axes with no axes */
    bool reduced[CS_MAX_DIMS]; /* per input dimension */
} reduce_axes;

/* The two operators differ in the opset that moved axes to an input and in
 * the final division. */
typedef struct reduce_kind {
    int axes_input_opset;
    bool mean;
    bool spatial; /* global pooling: every axis from 2 on */
} reduce_kind;

/* The node's reduced axes (attribute before kind->axes_input_opset, input
 * 1 from then on; every axis from 2 on for global pooling). */
cs_status cs_reduce_get_axes(const cs_op_call *c, const reduce_kind *kind, reduce_axes *ax, cs_err *err)
    CS_MUST_CHECK;
/* Output shape (keepdims) and scratch of a reduction. */
cs_status cs_reduce_infer(cs_op_call *c, const reduce_kind *kind, cs_err *err) CS_MUST_CHECK;

/* The input viewed as merged dimensions: adjacent dimensions with the same
 * reduced/kept status fused, size-1 dimensions dropped.  out_stride is the
 * accumulator stride of each (0 for reduced ones). */
typedef struct reduce_view {
    int rank;
    int64_t dims[CS_MAX_DIMS];
    int64_t out_stride[CS_MAX_DIMS];
    bool reduced[CS_MAX_DIMS];
} reduce_view;

void cs_reduce_view_of(const cs_tensor *x, const reduce_axes *ax, reduce_view *v);

/* Step the odometer idx over v's dimensions except the innermost, keeping
 * *off the matching offset into the reduced output. */
static inline void reduce_view_next_run(const reduce_view *v, int64_t *idx, int64_t *off)
{
    for (int d = v->rank - 2; d >= 0; d--) {
        *off += v->out_stride[d];
        if (++idx[d] < v->dims[d])
            return;
        *off -= v->out_stride[d] * v->dims[d];
        idx[d] = 0;
    }
}

#endif
