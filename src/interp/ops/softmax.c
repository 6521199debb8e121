/* Softmax and LogSoftmax (float, double).
 *
 * Opset difference: before opset 13 the input is coerced to 2-D at `axis`
 * (default 1) and normalised over the whole flattened block dims[axis:];
 * from opset 13 on it is normalised along `axis` alone (default -1).  Both
 * are the same kernel on a [outer, n, inner] view: old = (prod dims[:axis],
 * prod dims[axis:], 1), new = (prod dims[:axis], dims[axis],
 * prod dims[axis+1:]).
 *
 * Stable form: with m = max_k x_k and s = sum_k exp(x_k - m),
 * softmax_k = exp(x_k - m) / s and logsoftmax_k = (x_k - m) - log s.
 * m and s are kept in double per inner position (scratch), so a float
 * model's normaliser is accumulated without float round-off growth. */
#include <math.h>

#include "interp/op.h"

typedef struct softmax_view {
    int64_t outer, n, inner;
} softmax_view;

static cs_status softmax_view_of(const cs_op_call *c, softmax_view *v, cs_err *err)
{
    const cs_tensor *x = c->in[0];
    bool legacy = c->node->opset < 13;
    int64_t axis_attr = cs_node_attr_int(c->node, "axis", legacy ? 1 : -1);
    int axis;
    if (x->ndim == 0) {
        /* a scalar is a single-element distribution */
        v->outer = v->n = v->inner = 1;
        return CS_OK;
    }
    /* the 2-D coercion also accepts axis == rank (empty trailing block) */
    if (legacy && axis_attr == x->ndim) {
        axis = x->ndim;
    } else {
        cs_status st = cs_op_axis(c, axis_attr, x->ndim, &axis, err);
        if (st)
            return st;
    }
    v->outer = 1;
    for (int d = 0; d < axis; d++)
        v->outer *= x->dims[d];
    int64_t rest = 1;
    for (int d = axis + (legacy ? 0 : 1); d < x->ndim; d++)
        rest *= x->dims[d];
    if (legacy) {
        v->n = rest;
        v->inner = 1;
    } else {
        v->n = x->dims[axis];
        v->inner = rest;
    }
    return CS_OK;
}

static cs_status softmax_infer(cs_op_call *c, cs_err *err)
{
    if (c->n_in != 1 || !c->in[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 input, got %d", c->n_in);
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    cs_status st = cs_op_need_float(c, 0, err);
    if (st)
        return st;
    softmax_view v;
    st = softmax_view_of(c, &v, err);
    if (st)
        return st;
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, c->in[0]->ndim, c->in[0]->dims);
    c->scratch_bytes = 2 * (size_t)v.inner * sizeof(double);
    return CS_OK;
}

/* x, y: [outer, n, inner]; mx, sum: [inner] scratch. */
#define DEFINE_SOFTMAX(T, S, EXP)                                                        \
    static void softmax_##S(const softmax_view *v, bool log_out, const T *x, T *y,      \
                            double *mx, double *sum)                                     \
    {                                                                                    \
        const int64_t n = v->n, inner = v->inner;                                        \
        if (n == 0)                                                                      \
            return;                                                                      \
        for (int64_t o = 0; o < v->outer; o++) {                                         \
            const T *xo = x + o * n * inner;                                             \
            T *yo = y + o * n * inner;                                                   \
            for (int64_t j = 0; j < inner; j++) {                                        \
                mx[j] = xo[j];                                                           \
                sum[j] = 0;                                                              \
            }                                                                            \
            for (int64_t k = 1; k < n; k++)                                              \
                for (int64_t j = 0; j < inner; j++)                                      \
                    if (xo[k * inner + j] > mx[j])                                       \
                        mx[j] = xo[k * inner + j];                                       \
            /* y holds exp(x - m) for now */                                             \
            for (int64_t k = 0; k < n; k++)                                              \
                for (int64_t j = 0; j < inner; j++) {                                    \
                    T e = EXP(xo[k * inner + j] - (T)mx[j]);                             \
                    yo[k * inner + j] = e;                                               \
                    sum[j] += e;                                                         \
                }                                                                        \
            if (log_out) {                                                               \
                for (int64_t j = 0; j < inner; j++)                                      \
                    sum[j] = log(sum[j]);                                                \
                for (int64_t k = 0; k < n; k++)                                          \
                    for (int64_t j = 0; j < inner; j++)                                  \
                        yo[k * inner + j] =                                              \
                            (T)((xo[k * inner + j] - (T)mx[j]) - (T)sum[j]);             \
            } else {                                                                     \
                for (int64_t j = 0; j < inner; j++)                                      \
                    sum[j] = 1.0 / sum[j];                                               \
                for (int64_t k = 0; k < n; k++)                                          \
                    for (int64_t j = 0; j < inner; j++)                                  \
                        yo[k * inner + j] = (T)(yo[k * inner + j] * sum[j]);             \
            }                                                                            \
        }                                                                                \
    }
DEFINE_SOFTMAX(float, f32, expf)
DEFINE_SOFTMAX(double, f64, exp)

static cs_status softmax_run(cs_op_call *c, bool log_out, cs_err *err)
{
    softmax_view v;
    cs_status st = softmax_view_of(c, &v, err);
    if (st)
        return st;
    double *mx = c->scratch, *sum = mx + v.inner;
    if (c->in[0]->dtype == CS_DT_FLOAT)
        softmax_f32(&v, log_out, c->in[0]->data, c->out[0]->data, mx, sum);
    else
        softmax_f64(&v, log_out, c->in[0]->data, c->out[0]->data, mx, sum);
    return CS_OK;
}

static cs_status softmax_forward(cs_op_call *c, cs_err *err)
{
    return softmax_run(c, false, err);
}

static cs_status log_softmax_forward(cs_op_call *c, cs_err *err)
{
    return softmax_run(c, true, err);
}

const cs_op_def cs_op_Softmax = {.name = "Softmax", .min_opset = 1, .infer = softmax_infer,
                                 .forward = softmax_forward};
const cs_op_def cs_op_LogSoftmax = {.name = "LogSoftmax", .min_opset = 1,
                                    .infer = softmax_infer, .forward = log_softmax_forward};
