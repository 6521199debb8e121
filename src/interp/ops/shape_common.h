/* Helpers shared by the shape operators (shape_ops.c, generate.c) and the
 * data-movement operators (rearrange.c, pad.c, permute.c, slicing.c):
 * argument checks, byte copies and the float accumulation of their linear
 * derivative rules.  Private to interp/ops/. */
#ifndef CS_INTERP_OPS_SHAPE_COMMON_H
#define CS_INTERP_OPS_SHAPE_COMMON_H

#include <stdbool.h>
#include <string.h>

#include "interp/op.h"

/* Fail unless the call has min_in..max_in inputs (the first min_in present)
 * and min_out..max_out outputs (output 0 present). */
static inline cs_status need_counts(const cs_op_call *c, int min_in, int max_in, int min_out,
                                    int max_out, cs_err *err)
{
    if (c->n_in < min_in || c->n_in > max_in) {
        if (min_in == max_in)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "expects %d input(s), got %d", min_in, c->n_in);
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects %d to %d inputs, got %d", min_in, max_in,
                          c->n_in);
    }
    for (int i = 0; i < min_in; i++)
        if (!c->in[i])
            return cs_op_fail(c, err, CS_ERR_FORMAT, "input %d is missing", i);
    if (c->n_out < min_out || c->n_out > max_out)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects %d to %d outputs, got %d", min_out,
                          max_out, c->n_out);
    if (!c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output 0 is missing");
    return CS_OK;
}

/* Fail unless input i has a dtype with a fixed element size (not string). */
static inline cs_status need_sized(const cs_op_call *c, int i, cs_err *err)
{
    if (cs_dtype_size(c->in[i]->dtype) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input %d has unsupported type %s", i,
                          cs_dtype_name(c->in[i]->dtype));
    return CS_OK;
}

/* The contents of a 1-D (or scalar) int32 / int64 input i, which must be
 * known at prepare time: up to max values into vals, count in *n. */
static inline cs_status read_int_input(const cs_op_call *c, int i, const char *what, int64_t *vals,
                                       int max, int *n, cs_err *err)
{
    const cs_tensor *t = c->in[i];
    if (t->dtype != CS_DT_INT64 && t->dtype != CS_DT_INT32)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "%s input has type %s (int64 expected)", what,
                          cs_dtype_name(t->dtype));
    if (t->ndim > 1)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "%s input must be 1-D, has rank %d", what, t->ndim);
    int64_t count = cs_tensor_numel(t);
    if (!t->data && count > 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "%s input must be a constant", what);
    if (count > max)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "%s input has %lld values (at most %d)", what,
                          (long long)count, max);
    for (int64_t k = 0; k < count; k++)
        vals[k] = cs_tensor_get_i64(t, k);
    *n = (int)count;
    return CS_OK;
}

/* Copy src's bytes into dst (same byte size, by infer's construction). */
static inline void copy_bytes(cs_tensor *dst, const cs_tensor *src)
{
    if (dst->data != src->data)
        memcpy(dst->data, src->data, cs_tensor_bytes(src));
}

static inline int64_t dims_product(const int64_t *dims, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= dims[i];
    return p;
}

/* Set output 0 to input 0's dtype with the given shape. */
static inline cs_status set_reshaped(cs_op_call *c, int rank, const int64_t *dims, cs_err *err)
{
    if (rank > CS_MAX_DIMS)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "result rank %d exceeds %d", rank, CS_MAX_DIMS);
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, rank, dims);
    return CS_OK;
}

/* dst[i] += src[i] for n elements of float type dt (float32 / float64). */
static inline void add_into(void *dst, const void *src, cs_dtype dt, int64_t n)
{
    if (dt == CS_DT_FLOAT) {
        float *d = dst;
        const float *s = src;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    } else if (dt == CS_DT_DOUBLE) {
        double *d = dst;
        const double *s = src;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    }
}

/* Y = X with axes permuted (perm[i] = X's axis at Y's axis i), or, with
 * add_back (float types), the adjoint X += Y with the permutation undone.
 * Y must be shaped X.dims[perm[i]]; either may be a view of another tensor
 * under a reshaped header (DepthToSpace's 6-D views).  In rearrange.c. */
void cs_transpose_move(cs_tensor *y, cs_tensor *x, const int *perm, bool add_back);

/* Element picking by an index tensor (Gather, GatherElements): Y from X at
 * the indices along axis or, with add_back (float types), the adjoint
 * scatter-add X += Y (repeated indices accumulate). */
typedef void (*cs_indexed_move)(cs_tensor *y, cs_tensor *x, const cs_tensor *ind, int axis,
                                bool add_back);
/* forward (ad NULL), vjp (adjoint) or jvp through move, after checking the
 * indices against input 0's axis.  In rearrange.c. */
cs_status cs_indexed_rule(cs_op_call *c, const cs_op_ad *ad, bool adjoint, cs_indexed_move move,
                          cs_err *err) CS_MUST_CHECK;

static inline void zero_fill(cs_tensor *t)
{
    memset(t->data, 0, cs_tensor_bytes(t));
}

#endif
