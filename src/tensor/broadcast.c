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

void cs_bcast_init(cs_bcast *bc, const cs_tensor *const *in, int n_in, const cs_tensor *out)
{
    assert(n_in >= 1 && n_in <= CS_BCAST_MAX_IN);
    int64_t full[CS_BCAST_MAX_IN][CS_MAX_DIMS];
    for (int k = 0; k < n_in; k++)
        cs_broadcast_strides(in[k], out, full[k]);
    bc->n_in = n_in;
    bc->rank = 0;
    bc->n_runs = 1;
    /* Drop size-1 dimensions and fold a dimension into the previous one when
     * every input steps through the pair as one: previous stride == this
     * stride * this size (both 0 for a broadcast input). */
    for (int d = 0; d < out->ndim; d++) {
        int64_t size = out->dims[d];
        if (size == 0)
            bc->n_runs = 0;
        if (size == 1)
            continue;
        bool merge = bc->rank > 0;
        for (int k = 0; k < n_in && merge; k++)
            merge = bc->strides[k][bc->rank - 1] == full[k][d] * size;
        if (merge) {
            bc->dims[bc->rank - 1] *= size;
            for (int k = 0; k < n_in; k++)
                bc->strides[k][bc->rank - 1] = full[k][d];
        } else {
            bc->dims[bc->rank] = size;
            for (int k = 0; k < n_in; k++)
                bc->strides[k][bc->rank] = full[k][d];
            bc->rank++;
        }
    }
    if (bc->rank == 0) { /* one element */
        bc->dims[0] = 1;
        for (int k = 0; k < n_in; k++)
            bc->strides[k][0] = 0;
        bc->rank = 1;
    }
    /* The innermost stride is 0 or 1: a non-broadcast innermost dimension
     * of a contiguous tensor has unit stride. */
    bc->run = bc->dims[bc->rank - 1];
    for (int k = 0; k < n_in; k++)
        bc->run_stride[k] = bc->strides[k][bc->rank - 1];
    if (bc->n_runs)
        bc->n_runs = cs_tensor_numel(out) / bc->run;
}

void cs_bcast_start(const cs_bcast *bc, cs_bcast_pos *pos)
{
    for (int d = 0; d < bc->rank; d++)
        pos->idx[d] = 0;
    for (int k = 0; k < bc->n_in; k++)
        pos->off[k] = 0;
}

/* dst[off + j * s] += alpha * g[j] for one run; s == 0 sums the run first. */
#define DEFINE_REDUCE_RUN(T, S)                                                        \
    static void reduce_run_##S(int64_t n, T *dst, int64_t s, const T *g, double alpha) \
    {                                                                                  \
        if (s) {                                                                       \
            const T al = (T)alpha;                                                     \
            for (int64_t j = 0; j < n; j++)                                            \
                dst[j] += al * g[j];                                                   \
        } else {                                                                       \
            /* four partial sums: one chain would wait on each add's latency */        \
            double acc[4] = {0, 0, 0, 0};                                              \
            int64_t j = 0;                                                             \
            for (; j + 4 <= n; j += 4)                                                 \
                for (int k = 0; k < 4; k++)                                            \
                    acc[k] += g[j + k];                                                \
            for (; j < n; j++)                                                         \
                acc[0] += g[j];                                                        \
            dst[0] += (T)(alpha * ((acc[0] + acc[1]) + (acc[2] + acc[3])));            \
        }                                                                              \
    }
DEFINE_REDUCE_RUN(float, f32)
DEFINE_REDUCE_RUN(double, f64)

cs_status cs_broadcast_reduce_add(cs_tensor *dst, const cs_tensor *g, double alpha, cs_err *err)
{
    if (dst->dtype != g->dtype || !cs_dtype_is_float(g->dtype))
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "broadcast gradient: types %s and %s (float or double expected)",
                       cs_dtype_name(dst->dtype), cs_dtype_name(g->dtype));
    bool fits = dst->ndim <= g->ndim;
    for (int d = 0; d < dst->ndim && fits; d++) {
        int64_t s = dst->dims[d], gs = g->dims[d + g->ndim - dst->ndim];
        fits = s == 1 || s == gs;
    }
    if (!fits) {
        char sa[128], sb[128];
        return cs_fail(err, CS_ERR_SHAPE, "broadcast gradient: %s is not a broadcast of %s",
                       cs_shape_str(g, sa, sizeof sa), cs_shape_str(dst, sb, sizeof sb));
    }
    cs_bcast bc;
    const cs_tensor *in[1] = {dst};
    cs_bcast_init(&bc, in, 1, g);
    cs_bcast_pos pos;
    cs_bcast_start(&bc, &pos);
    int64_t s = bc.run_stride[0];
    for (int64_t o = 0; o < bc.n_runs; o++) {
        if (g->dtype == CS_DT_FLOAT)
            reduce_run_f32(bc.run, (float *)dst->data + pos.off[0], s,
                           (const float *)g->data + o * bc.run, alpha);
        else
            reduce_run_f64(bc.run, (double *)dst->data + pos.off[0], s,
                           (const double *)g->data + o * bc.run, alpha);
        cs_bcast_next(&bc, &pos);
    }
    return CS_OK;
}
