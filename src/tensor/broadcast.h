/* Numpy-style (multidirectional) broadcasting, as ONNX defines it.
 *
 * Shapes are aligned at the trailing dimension; a dimension of 1 stretches.
 * For iteration, cs_broadcast_strides gives, for an input of rank <= r, the
 * element stride of each of the r output dimensions (0 where the input is
 * broadcast), so a kernel walks output index space and reads inputs with
 * plain offsets.
 *
 * Kernels on hot paths walk the output as contiguous runs instead (cs_bcast):
 * dimensions that every input steps through contiguously (or not at all) are
 * merged, so equal shapes are one run, a bias [C] over [N, C] is N runs of C,
 * and a per-channel [C, 1, 1] over [N, C, H, W] is N*C runs of H*W against
 * one element.  Only the bookkeeping between runs costs index arithmetic. */
#ifndef CS_TENSOR_BROADCAST_H
#define CS_TENSOR_BROADCAST_H

#include <stdint.h>

#include "base/status.h"
#include "tensor/tensor.h"

/* Broadcast shape of n shapes into out (dtype untouched).  Error message
 * names `what` (e.g. the node) and both shapes when they are incompatible. */
cs_status cs_broadcast_shapes(const cs_tensor *const *in, int n, cs_tensor *out,
                              const char *what, cs_err *err) CS_MUST_CHECK;

/* Strides (in elements) of `in` along each dimension of `out`, which must be
 * a broadcast of it; strides has out->ndim entries. */
void cs_broadcast_strides(const cs_tensor *in, const cs_tensor *out, int64_t *strides);

/* ---- run-wise walk over a broadcast ---- */

#define CS_BCAST_MAX_IN 4

/* The output of a broadcast seen as n_runs runs of `run` contiguous output
 * elements; run o starts at output element o * run.  Within a run, input k
 * advances by run_stride[k] (1, or 0 when it is broadcast along the run). */
typedef struct cs_bcast {
    int n_in;
    int rank;                                      /* merged dimensions, >= 1 */
    int64_t dims[CS_MAX_DIMS];                     /* merged sizes */
    int64_t strides[CS_BCAST_MAX_IN][CS_MAX_DIMS]; /* element strides per input */
    int64_t run;                                   /* dims[rank - 1] */
    int64_t n_runs;                                /* 0 when out is empty */
    int64_t run_stride[CS_BCAST_MAX_IN];
} cs_bcast;

/* Where a walk stands: off[k] is input k's element offset at the current
 * run's start. */
typedef struct cs_bcast_pos {
    int64_t idx[CS_MAX_DIMS];
    int64_t off[CS_BCAST_MAX_IN];
} cs_bcast_pos;

/* Plan the walk of out, which must be the broadcast of the n_in (<=
 * CS_BCAST_MAX_IN) inputs' shapes (as cs_broadcast_shapes gives). */
void cs_bcast_init(cs_bcast *bc, const cs_tensor *const *in, int n_in, const cs_tensor *out);

/* Position at the first run. */
void cs_bcast_start(const cs_bcast *bc, cs_bcast_pos *pos);

/* Advance pos by one run (an odometer over the merged outer dimensions). */
static inline void cs_bcast_next(const cs_bcast *bc, cs_bcast_pos *pos)
{
    for (int d = bc->rank - 2; d >= 0; d--) {
        for (int k = 0; k < bc->n_in; k++)
            pos->off[k] += bc->strides[k][d];
        if (++pos->idx[d] < bc->dims[d])
            return;
        for (int k = 0; k < bc->n_in; k++)
            pos->off[k] -= bc->strides[k][d] * bc->dims[d];
        pos->idx[d] = 0;
    }
}

/* dst += alpha * (g summed over the dimensions along which dst is broadcast
 * to g's shape): the gradient of a broadcast input from the gradient of the
 * broadcast result (a bias [C] from [N, C], a [C, 1, 1] from [N, C, H, W]).
 * Both float or both double; g's shape must be a broadcast of dst's.  Sums
 * of each run are accumulated in double. */
cs_status cs_broadcast_reduce_add(cs_tensor *dst, const cs_tensor *g, double alpha,
                                  cs_err *err) CS_MUST_CHECK;

#endif
