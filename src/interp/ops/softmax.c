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
 * model's normaliser is accumulated without float round-off growth.
 *
 * Derivative rules, per distribution (the n entries at one outer / inner
 * position), with y the forward output, g the output gradient, t the input
 * tangent and <u, v> = sum_k u_k v_k (accumulated in double):
 *   Softmax      J = diag(y) - y y^T, symmetric:
 *     vjp  gx += y (g - <g, y>)           jvp  ty = y (t - <t, y>)
 *     rop  with ty as above, d/dx [y (g - <g, y>)] . t
 *            = ty (g - <g, y>) - y <g, ty>
 *   LogSoftmax   p = exp(y), J = I - 1 p^T:
 *     vjp  gx += g - p sum(g)             jvp  ty = t - <p, t>
 *     rop  d/dx [g - p sum(g)] . t = -sum(g) p (t - <p, t>)
 * (the rop formulas are the derivatives of the vjp along t, Pearlmutter
 * 1994's R{.} applied to the vjp with g held fixed).  The scratch holds up
 * to three accumulators per inner position. */
#include <math.h>
#include <string.h>

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
    c->ad_scratch_bytes = 3 * (size_t)v.inner * sizeof(double);
    return CS_OK;
}

/* x, y: [outer, n, inner]; mx, sum: [inner] scratch. */
#define DEFINE_SOFTMAX(T, S, EXP)                                                  \
    static void softmax_##S(const softmax_view *v, bool log_out, const T *x, T *y, \
                            double *mx, double *sum)                               \
    {                                                                              \
        const int64_t n = v->n, inner = v->inner;                                  \
        if (n == 0)                                                                \
            return;                                                                \
        for (int64_t o = 0; o < v->outer; o++) {                                   \
            const T *xo = x + o * n * inner;                                       \
            T *yo = y + o * n * inner;                                             \
            for (int64_t j = 0; j < inner; j++) {                                  \
                mx[j] = xo[j];                                                     \
                sum[j] = 0;                                                        \
            }                                                                      \
            for (int64_t k = 1; k < n; k++)                                        \
                for (int64_t j = 0; j < inner; j++)                                \
                    if (xo[k * inner + j] > mx[j])                                 \
                        mx[j] = xo[k * inner + j];                                 \
            /* y holds exp(x - m) for now */                                       \
            for (int64_t k = 0; k < n; k++)                                        \
                for (int64_t j = 0; j < inner; j++) {                              \
                    T e = EXP(xo[k * inner + j] - (T)mx[j]);                       \
                    yo[k * inner + j] = e;                                         \
                    sum[j] += e;                                                   \
                }                                                                  \
            if (log_out) {                                                         \
                for (int64_t j = 0; j < inner; j++)                                \
                    sum[j] = log(sum[j]);                                          \
                for (int64_t k = 0; k < n; k++)                                    \
                    for (int64_t j = 0; j < inner; j++)                            \
                        yo[k * inner + j] =                                        \
                            (T)((xo[k * inner + j] - (T)mx[j]) - (T)sum[j]);       \
            } else {                                                               \
                for (int64_t j = 0; j < inner; j++)                                \
                    sum[j] = 1.0 / sum[j];                                         \
                for (int64_t k = 0; k < n; k++)                                    \
                    for (int64_t j = 0; j < inner; j++)                            \
                        yo[k * inner + j] = (T)(yo[k * inner + j] * sum[j]);       \
            }                                                                      \
        }                                                                          \
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

/* ---- derivative rules (formulas at the top of the file) ---- */

/* RESULT = sum over k < N of EXPR (a double expression of k), in four
 * partial sums: a single chain would wait on each add's latency. */
#define KSUM(RESULT, N, EXPR)                                          \
    do {                                                               \
        double a0_ = 0, a1_ = 0, a2_ = 0, a3_ = 0;                     \
        int64_t k4_ = 0;                                               \
        for (; k4_ + 4 <= (N); k4_ += 4) {                             \
            { const int64_t k = k4_;     a0_ += (EXPR); }              \
            { const int64_t k = k4_ + 1; a1_ += (EXPR); }              \
            { const int64_t k = k4_ + 2; a2_ += (EXPR); }              \
            { const int64_t k = k4_ + 3; a3_ += (EXPR); }              \
        }                                                              \
        for (int64_t k = k4_; k < (N); k++)                            \
            a0_ += (EXPR);                                             \
        (RESULT) = (a0_ + a1_) + (a2_ + a3_);                          \
    } while (0)

/* acc[j] = sum over k < n of EXPR (a double expression of e = k*inner + j
 * and j), for every j < inner: the j loop is contiguous. */
#define JSUM(ACC, EXPR)                                                \
    do {                                                               \
        for (int64_t j = 0; j < inner; j++)                            \
            (ACC)[j] = 0;                                              \
        for (int64_t k = 0; k < n; k++)                                \
            for (int64_t j = 0; j < inner; j++) {                      \
                const int64_t e = k * inner + j;                       \
                (ACC)[j] += (EXPR);                                    \
            }                                                          \
    } while (0)

/* STMT for every element e = k*inner + j of a block (j is the inner
 * position, the index of the accumulators). */
#define FOR_BLOCK(STMT)                                                \
    for (int64_t k = 0; k < n; k++)                                    \
        for (int64_t j = 0; j < inner; j++) {                          \
            const int64_t e = k * inner + j;                           \
            STMT;                                                      \
        }

/* All tensors [outer, n, inner]; s1, s2, s3: [inner] accumulators.  The
 * common inner == 1 case (the last axis) keeps its sums in registers and
 * its loops contiguous over k. */
#define DEFINE_SOFTMAX_AD(T, S, EXP)                                                  \
    /* d += J^T g */                                                                  \
    static void softmax_vjp_##S(const softmax_view *v, bool log_out, const T *y,      \
                                const T *g, T *restrict d, double *s1)                \
    {                                                                                 \
        const int64_t n = v->n, inner = v->inner, block = n * inner;                  \
        for (int64_t o = 0; o < v->outer; o++) {                                      \
            const T *yo = y + o * block, *go = g + o * block;                         \
            T *dd = d + o * block;                                                    \
            if (inner == 1) {                                                         \
                double sum;                                                           \
                if (log_out) { /* d += g - p sum(g) */                                \
                    KSUM(sum, n, (double)go[k]);                                      \
                    const T sg = (T)sum;                                              \
                    for (int64_t k = 0; k < n; k++)                                   \
                        dd[k] += go[k] - EXP(yo[k]) * sg;                             \
                } else { /* d += y (g - <g, y>) */                                    \
                    KSUM(sum, n, (double)go[k] * yo[k]);                              \
                    const T gy = (T)sum;                                              \
                    for (int64_t k = 0; k < n; k++)                                   \
                        dd[k] += yo[k] * (go[k] - gy);                                \
                }                                                                     \
            } else if (log_out) {                                                     \
                JSUM(s1, (double)go[e]);                                              \
                FOR_BLOCK(dd[e] += go[e] - EXP(yo[e]) * (T)s1[j])                     \
            } else {                                                                  \
                JSUM(s1, (double)go[e] * yo[e]);                                      \
                FOR_BLOCK(dd[e] += yo[e] * (go[e] - (T)s1[j]))                        \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    /* d = J t */                                                                     \
    static void softmax_jvp_##S(const softmax_view *v, bool log_out, const T *y,      \
                                const T *t, T *restrict d, double *s1)                \
    {                                                                                 \
        const int64_t n = v->n, inner = v->inner, block = n * inner;                  \
        for (int64_t o = 0; o < v->outer; o++) {                                      \
            const T *yo = y + o * block, *to = t + o * block;                         \
            T *dd = d + o * block;                                                    \
            if (inner == 1) {                                                         \
                double sum;                                                           \
                if (log_out) { /* d = t - <p, t> */                                   \
                    KSUM(sum, n, (double)EXP(yo[k]) * to[k]);                         \
                    const T pt = (T)sum;                                              \
                    for (int64_t k = 0; k < n; k++)                                   \
                        dd[k] = to[k] - pt;                                           \
                } else { /* d = y (t - <t, y>) */                                     \
                    KSUM(sum, n, (double)to[k] * yo[k]);                              \
                    const T ty = (T)sum;                                              \
                    for (int64_t k = 0; k < n; k++)                                   \
                        dd[k] = yo[k] * (to[k] - ty);                                 \
                }                                                                     \
            } else if (log_out) {                                                     \
                JSUM(s1, (double)EXP(yo[e]) * to[e]);                                 \
                FOR_BLOCK(dd[e] = to[e] - (T)s1[j])                                   \
            } else {                                                                  \
                JSUM(s1, (double)to[e] * yo[e]);                                      \
                FOR_BLOCK(dd[e] = yo[e] * (to[e] - (T)s1[j]))                         \
            }                                                                         \
        }                                                                             \
    }                                                                                 \
    /* d += (d/dx J^T g) . t.  Softmax: with s1 = <g, y>, s2 = <t, y> and             \
     * s3 = <g, y (t - s2)> = <g, y t> - s1 s2,                                       \
     * d += y ((t - s2) (g - s1) - s3).  LogSoftmax: with s1 = sum(g),                \
     * s2 = <p, t>, d -= s1 p (t - s2). */                                            \
    static void softmax_rop_##S(const softmax_view *v, bool log_out, const T *y,      \
                                const T *g, const T *t, T *restrict d, double *s1,    \
                                double *s2, double *s3)                               \
    {                                                                                 \
        const int64_t n = v->n, inner = v->inner, block = n * inner;                  \
        for (int64_t o = 0; o < v->outer; o++) {                                      \
            const T *yo = y + o * block, *go = g + o * block, *to = t + o * block;    \
            T *dd = d + o * block;                                                    \
            if (inner == 1) {                                                         \
                double a, b, c3;                                                      \
                if (log_out) {                                                        \
                    KSUM(a, n, (double)go[k]);                                        \
                    KSUM(b, n, (double)EXP(yo[k]) * to[k]);                           \
                    const T sg = (T)a, pt = (T)b;                                     \
                    for (int64_t k = 0; k < n; k++)                                   \
                        dd[k] -= sg * EXP(yo[k]) * (to[k] - pt);                      \
                } else {                                                              \
                    KSUM(a, n, (double)go[k] * yo[k]);                                \
                    KSUM(b, n, (double)to[k] * yo[k]);                                \
                    KSUM(c3, n, (double)go[k] * yo[k] * to[k]);                       \
                    const T gy = (T)a, ty = (T)b, q = (T)(c3 - a * b);                \
                    for (int64_t k = 0; k < n; k++)                                   \
                        dd[k] += yo[k] * ((to[k] - ty) * (go[k] - gy) - q);           \
                }                                                                     \
            } else if (log_out) {                                                     \
                JSUM(s1, (double)go[e]);                                              \
                JSUM(s2, (double)EXP(yo[e]) * to[e]);                                 \
                FOR_BLOCK(dd[e] -= (T)s1[j] * EXP(yo[e]) * (to[e] - (T)s2[j]))        \
            } else {                                                                  \
                JSUM(s1, (double)go[e] * yo[e]);                                      \
                JSUM(s2, (double)to[e] * yo[e]);                                      \
                JSUM(s3, (double)go[e] * yo[e] * to[e]);                              \
                for (int64_t j = 0; j < inner; j++)                                   \
                    s3[j] -= s1[j] * s2[j];                                           \
                FOR_BLOCK(dd[e] += yo[e] * ((to[e] - (T)s2[j]) * (go[e] - (T)s1[j]) - \
                                            (T)s3[j]))                                \
            }                                                                         \
        }                                                                             \
    }
DEFINE_SOFTMAX_AD(float, f32, expf)
DEFINE_SOFTMAX_AD(double, f64, exp)

static cs_status softmax_any_vjp(cs_op_call *c, const cs_op_ad *a, bool log_out, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0])
        return CS_OK;
    softmax_view v;
    cs_status st = softmax_view_of(c, &v, err);
    if (st)
        return st;
    const cs_tensor *y = c->out[0], *g = a->gout[0];
    cs_tensor *d = a->gin[0];
    if (y->dtype == CS_DT_FLOAT)
        softmax_vjp_f32(&v, log_out, y->data, g->data, d->data, c->scratch);
    else
        softmax_vjp_f64(&v, log_out, y->data, g->data, d->data, c->scratch);
    return CS_OK;
}

static cs_status softmax_any_jvp(cs_op_call *c, const cs_op_ad *a, bool log_out, cs_err *err)
{
    if (cs_op_jvp_done_early(a, 0))
        return CS_OK;
    cs_tensor *d = a->tout[0];
    softmax_view v;
    cs_status st = softmax_view_of(c, &v, err);
    if (st)
        return st;
    const cs_tensor *y = c->out[0], *t = a->tin[0];
    if (y->dtype == CS_DT_FLOAT)
        softmax_jvp_f32(&v, log_out, y->data, t->data, d->data, c->scratch);
    else
        softmax_jvp_f64(&v, log_out, y->data, t->data, d->data, c->scratch);
    return CS_OK;
}

static cs_status softmax_any_rop(cs_op_call *c, const cs_op_ad *a, bool log_out, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0] || !a->tin[0])
        return CS_OK;
    softmax_view v;
    cs_status st = softmax_view_of(c, &v, err);
    if (st)
        return st;
    const cs_tensor *y = c->out[0], *g = a->gout[0], *t = a->tin[0];
    cs_tensor *d = a->gin[0];
    double *s1 = c->scratch, *s2 = s1 + v.inner, *s3 = s2 + v.inner;
    if (y->dtype == CS_DT_FLOAT)
        softmax_rop_f32(&v, log_out, y->data, g->data, t->data, d->data, s1, s2, s3);
    else
        softmax_rop_f64(&v, log_out, y->data, g->data, t->data, d->data, s1, s2, s3);
    return CS_OK;
}

#define SOFTMAX_RULES(NAME, LOG)                                               \
    static cs_status NAME##_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err) \
    {                                                                          \
        return softmax_any_vjp(c, a, LOG, err);                                \
    }                                                                          \
    static cs_status NAME##_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err) \
    {                                                                          \
        return softmax_any_jvp(c, a, LOG, err);                                \
    }                                                                          \
    static cs_status NAME##_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err) \
    {                                                                          \
        return softmax_any_rop(c, a, LOG, err);                                \
    }
SOFTMAX_RULES(softmax, false)
SOFTMAX_RULES(log_softmax, true)

const cs_op_def cs_op_Softmax = {.name = "Softmax", .min_opset = 1, .infer = softmax_infer,
                                 .forward = softmax_forward, .vjp = softmax_vjp,
                                 .jvp = softmax_jvp, .rop = softmax_rop};
const cs_op_def cs_op_LogSoftmax = {.name = "LogSoftmax", .min_opset = 1,
                                    .infer = softmax_infer, .forward = log_softmax_forward,
                                    .vjp = log_softmax_vjp, .jvp = log_softmax_jvp,
                                    .rop = log_softmax_rop};
