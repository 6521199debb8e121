/* Numpy-style broadcasting (ONNX "multidirectional broadcasting",
 * docs/Broadcasting.md in the ONNX repository): shapes are right-aligned,
 * missing leading dimensions count as 1, and along each dimension all sizes
 * must be equal or 1.  A size of 0 broadcasts like any other size (0 with 1
 * gives 0; 0 with 3 is an error), as in numpy. */
#include "tensor/broadcast.h"

#include <assert.h>

cs_status cs_broadcast_shapes(const cs_tensor *const *in, int n, cs_tensor *out,
                              const char *what, cs_err *err)
{
    int rank = 0;
    for (int k = 0; k < n; k++) {
        assert(in[k] && in[k]->ndim >= 0 && in[k]->ndim <= CS_MAX_DIMS);
        if (in[k]->ndim > rank)
            rank = in[k]->ndim;
    }
    int64_t dims[CS_MAX_DIMS];
    for (int d = 0; d < rank; d++) {
        int64_t size = 1;
        int from = -1; /* input that fixed `size`, for the message */
        for (int k = 0; k < n; k++) {
            int kd = d - (rank - in[k]->ndim);
            if (kd < 0 || in[k]->dims[kd] == 1)
                continue;
            if (from < 0) {
                size = in[k]->dims[kd];
                from = k;
            } else if (in[k]->dims[kd] != size) {
                char sa[128], sb[128];
                return cs_fail(err, CS_ERR_SHAPE,
                               "%s: shapes %s and %s cannot be broadcast together",
                               what ? what : "broadcast", cs_shape_str(in[from], sa, sizeof sa),
                               cs_shape_str(in[k], sb, sizeof sb));
            }
        }
        dims[d] = size;
    }
    out->ndim = rank;
    for (int d = 0; d < rank; d++)
        out->dims[d] = dims[d];
    return CS_OK;
}

void cs_broadcast_strides(const cs_tensor *in, const cs_tensor *out, int64_t *strides)
{
    int lead = out->ndim - in->ndim;
    assert(lead >= 0);
    for (int d = 0; d < lead; d++)
        strides[d] = 0;
    /* Row-major strides of `in`; a size-1 dimension gets 0 so that it
     * repeats (its only index is 0, so 0 is also right when out is 1). */
    int64_t step = 1;
    for (int d = in->ndim - 1; d >= 0; d--) {
        strides[lead + d] = in->dims[d] == 1 ? 0 : step;
        step *= in->dims[d];
    }
}
