/* Numpy-style (multidirectional) broadcasting, as ONNX defines it.
 *
 * Shapes are aligned at the trailing dimension; a dimension of 1 stretches.
 * For iteration, cs_broadcast_strides gives, for an input of rank <= r, the
 * element stride of each of the r output dimensions (0 where the input is
 * broadcast), so a kernel walks output index space and reads inputs with
 * plain offsets. */
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

#endif
