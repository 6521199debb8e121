/* Nonlinear reductions over the axes of reduce_common.h: ReduceMax,
 * ReduceMin, ReduceL1, ReduceL2, ReduceSumSquare, ReduceProd, ReduceLogSum,
 * ReduceLogSumExp, GlobalMaxPool (ReduceMax over the spatial axes, kept);
 * and ArgMax / ArgMin. */
#include <math.h>
#include <string.h>

#include "interp/ops/reduce_common.h"

/* ---- nonlinear reductions: ReduceMax, ReduceMin, ReduceL1, ReduceL2,
 * ReduceSumSquare, ReduceProd, ReduceLogSum, ReduceLogSumExp; ArgMax, ArgMin
 *
 * Each output element reduces one group of cnt = numel(x) / numel(y)
 * inputs.  The rules gather a group's elements into contiguous double
 * buffers (the group's input indices come from one walk of the reduced
 * view), so every function is written once for a plain vector x of n
 * values with result y:
 *   ReduceMax / Min   d_i = [x_i = y] / ties (PyTorch's amax / amin share a
 *                     tie evenly); piecewise linear
 *   ReduceL1          y = sum |x|, d = sign(x) (0 at 0); piecewise linear
 *   ReduceSumSquare   d = 2x, H = 2I
 *   ReduceL2          y = |x|, d = x / y (0 when y = 0),
 *                     H t = (t - x (x.t) / y^2) / y
 *   ReduceLogSum      y = log s, s = sum x: d = 1/s, H t = -(sum t) / s^2
 *   ReduceLogSumExp   y = m + log sum e^(x - m) (m the maximum, so nothing
 *                     overflows), p = e^(x - y): d = p, H t = p (t - p.t)
 *   ReduceProd        d_i = prod_{j != i} x_j (also with zeros: products of
 *                     the others, not y / x_i), (H t)_i = sum_{j != i}
 *                     prod_{k != i, j} x_k t_j
 * vjp gx_i += gy d_i, jvp ty = d.tx, rop gx_i += gy (H tx)_i.  The axes
 * come from the attribute before opset 18 and from input 1 after. */

typedef enum nl_kind { NL_MAX, NL_MIN, NL_L1, NL_L2, NL_SUMSQ, NL_PROD, NL_LOGSUM, NL_LOGSUMEXP } nl_kind;

static const reduce_kind reduce_nl_kind = {18, false, false}, global_pool_kind = {1 << 30, false, true};
extern const cs_op_def cs_op_GlobalMaxPool;

/* GlobalMaxPool is ReduceMax over the spatial axes, keeping them. */
static const reduce_kind *nl_axes_kind(const cs_op_call *c)
{
    return c->node->op == &cs_op_GlobalMaxPool ? &global_pool_kind : &reduce_nl_kind;
}

/* Scratch of the rules: the group index of every input ([xn] int64, the
 * fill count per group [yn] int64) and four group vectors of doubles
 * (values, gradient, tangent, Hessian times tangent). */
static size_t nl_scratch_bytes(int64_t xn, int64_t yn)
{
    int64_t cnt = yn ? xn / yn : 0;
    return (size_t)(xn + yn) * sizeof(int64_t) + (size_t)(4 * cnt + 1) * sizeof(double);
}

static cs_status nl_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = cs_reduce_infer(c, nl_axes_kind(c), err);
    if (st)
        return st;
    if (!cs_dtype_is_float(c->in[0]->dtype))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s",
                          cs_dtype_name(c->in[0]->dtype));
    size_t b = nl_scratch_bytes(cs_tensor_numel(c->in[0]), cs_tensor_numel(c->out[0]));
    c->scratch_bytes = b;
    c->ad_scratch_bytes = b;
    return CS_OK;
}

/* perm[g * cnt + k] = the k-th input (in memory order) of group g. */
static void nl_groups(const cs_op_call *c, const reduce_axes *ax, int64_t *perm, int64_t *fill)
{
    const cs_tensor *x = c->in[0];
    int64_t xn = cs_tensor_numel(x), yn = cs_tensor_numel(c->out[0]), cnt = yn ? xn / yn : 0;
    memset(fill, 0, sizeof(int64_t) * (size_t)yn);
    if (ax->identity) {
        for (int64_t i = 0; i < xn; i++)
            perm[i] = i;
        return;
    }
    reduce_view v;
    cs_reduce_view_of(x, ax, &v);
    const int r = v.rank;
    const int64_t inner = v.dims[r - 1], outer = inner ? xn / inner : 0;
    int64_t idx[CS_MAX_DIMS] = {0}, off = 0;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t j = 0; j < inner; j++) {
            int64_t g = v.reduced[r - 1] ? off : off + j;
            perm[g * cnt + fill[g]++] = o * inner + j;
        }
        reduce_view_next_run(&v, idx, &off);
    }
}

static double nl_value(nl_kind k, const double *x, int64_t n)
{
    double y;
    switch (k) {
    case NL_MAX:
    case NL_MIN:
        y = n ? x[0] : (k == NL_MAX ? -INFINITY : INFINITY);
        for (int64_t i = 1; i < n && !isnan(y); i++)
            if (isnan(x[i]) || (k == NL_MAX ? x[i] > y : x[i] < y))
                y = x[i];
        return y;
    case NL_L1:
    case NL_L2:
    case NL_SUMSQ:
    case NL_LOGSUM:
        y = 0;
        for (int64_t i = 0; i < n; i++)
            y += k == NL_L1 ? fabs(x[i]) : k == NL_LOGSUM ? x[i] : x[i] * x[i];
        return k == NL_L2 ? sqrt(y) : k == NL_LOGSUM ? log(y) : y;
    case NL_PROD:
        y = 1;
        for (int64_t i = 0; i < n; i++)
            y *= x[i];
        return y;
    case NL_LOGSUMEXP: {
        double m = nl_value(NL_MAX, x, n), s = 0;
        if (!isfinite(m))
            return m;
        for (int64_t i = 0; i < n; i++)
            s += exp(x[i] - m);
        return m + log(s);
    }
    }
    return NAN;
}

/* d = dy/dx at x (n values, result y). */
static void nl_grad(nl_kind k, const double *x, int64_t n, double y, double *d)
{
    int64_t ties = 0;
    double s = 0;
    switch (k) {
    case NL_MAX:
    case NL_MIN:
        for (int64_t i = 0; i < n; i++)
            ties += x[i] == y;
        for (int64_t i = 0; i < n; i++)
            d[i] = x[i] == y ? 1.0 / (double)ties : 0;
        return;
    case NL_L1:
        for (int64_t i = 0; i < n; i++)
            d[i] = x[i] > 0 ? 1 : x[i] < 0 ? -1 : 0;
        return;
    case NL_L2:
        for (int64_t i = 0; i < n; i++)
            d[i] = y > 0 ? x[i] / y : 0;
        return;
    case NL_SUMSQ:
        for (int64_t i = 0; i < n; i++)
            d[i] = 2 * x[i];
        return;
    case NL_LOGSUM:
        for (int64_t i = 0; i < n; i++)
            s += x[i];
        for (int64_t i = 0; i < n; i++)
            d[i] = 1 / s;
        return;
    case NL_LOGSUMEXP:
        for (int64_t i = 0; i < n; i++)
            d[i] = exp(x[i] - y);
        return;
    case NL_PROD: {
        /* prefix products into d, then times the suffix products */
        double acc = 1;
        for (int64_t i = 0; i < n; i++) {
            d[i] = acc;
            acc *= x[i];
        }
        acc = 1;
        for (int64_t i = n - 1; i >= 0; i--) {
            d[i] *= acc;
            acc *= x[i];
        }
        return;
    }
    }
}

/* h = H t (the Hessian of y at x times t); d holds nl_grad's result. */
static void nl_hess(nl_kind k, const double *x, const double *t, int64_t n, double y, const double *d, double *h)
{
    double a = 0, b = 0;
    switch (k) {
    case NL_MAX:
    case NL_MIN:
    case NL_L1:
        for (int64_t i = 0; i < n; i++)
            h[i] = 0;
        return;
    case NL_SUMSQ:
        for (int64_t i = 0; i < n; i++)
            h[i] = 2 * t[i];
        return;
    case NL_L2:
        for (int64_t i = 0; i < n; i++)
            a += x[i] * t[i];
        for (int64_t i = 0; i < n; i++)
            h[i] = y > 0 ? (t[i] - x[i] * a / (y * y)) / y : 0;
        return;
    case NL_LOGSUM:
        for (int64_t i = 0; i < n; i++)
            a += t[i], b += x[i];
        for (int64_t i = 0; i < n; i++)
            h[i] = -a / (b * b);
        return;
    case NL_LOGSUMEXP:
        for (int64_t i = 0; i < n; i++)
            a += d[i] * t[i];
        for (int64_t i = 0; i < n; i++)
            h[i] = d[i] * (t[i] - a);
        return;
    case NL_PROD:
        /* direct sums of products of the others: exact with zeros */
        for (int64_t i = 0; i < n; i++) {
            h[i] = 0;
            for (int64_t j = 0; j < n; j++) {
                if (j == i)
                    continue;
                double p = t[j];
                for (int64_t q = 0; q < n && p != 0; q++)
                    if (q != i && q != j)
                        p *= x[q];
                h[i] += p;
            }
        }
        return;
    }
}

static double elem(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

static void elem_set(cs_tensor *t, int64_t i, double v, bool add)
{
    if (t->dtype == CS_DT_FLOAT)
        ((float *)t->data)[i] = (float)(add ? ((float *)t->data)[i] + v : v);
    else
        ((double *)t->data)[i] = add ? ((double *)t->data)[i] + v : v;
}

typedef enum nl_rule { NL_FORWARD, NL_VJP, NL_JVP, NL_ROP } nl_rule;

/* One pass over the groups for the forward or a derivative rule:
 * forward y; vjp gx += gy d; jvp ty = d.tx; rop gx += gy H tx. */
static cs_status nl_run(cs_op_call *c, nl_kind k, nl_rule rule, const cs_op_ad *a, cs_err *err)
{
    reduce_axes ax;
    cs_status st = cs_reduce_get_axes(c, nl_axes_kind(c), &ax, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0];
    int64_t xn = cs_tensor_numel(x), yn = cs_tensor_numel(c->out[0]), cnt = yn ? xn / yn : 0;
    int64_t *perm = c->scratch, *fill = perm + xn;
    double *gx = (double *)(fill + yn), *gd = gx + cnt, *gt = gd + cnt, *gh = gt + cnt;
    nl_groups(c, &ax, perm, fill);
    const cs_tensor *tx = rule == NL_FORWARD || rule == NL_VJP ? NULL : a->tin[0];
    for (int64_t g = 0; g < yn; g++) {
        const int64_t *ix = perm + g * cnt;
        for (int64_t i = 0; i < cnt; i++)
            gx[i] = elem(x, ix[i]);
        double y = ax.identity ? gx[0] : nl_value(k, gx, cnt);
        if (rule == NL_FORWARD) {
            elem_set(c->out[0], g, y, false);
            continue;
        }
        if (ax.identity)
            gd[0] = 1;
        else
            nl_grad(k, gx, cnt, y, gd);
        if (rule == NL_VJP) {
            double gy = elem(a->gout[0], g);
            for (int64_t i = 0; i < cnt; i++)
                if (gd[i] != 0)
                    elem_set(a->gin[0], ix[i], gy * gd[i], true);
        } else if (rule == NL_JVP) {
            double s = 0;
            for (int64_t i = 0; tx && i < cnt; i++)
                s += gd[i] * elem(tx, ix[i]);
            elem_set(a->tout[0], g, s, false);
        } else if (!ax.identity) {
            double gy = elem(a->gout[0], g);
            for (int64_t i = 0; i < cnt; i++)
                gt[i] = elem(tx, ix[i]);
            nl_hess(k, gx, gt, cnt, y, gd, gh);
            for (int64_t i = 0; i < cnt; i++)
                if (gh[i] != 0)
                    elem_set(a->gin[0], ix[i], gy * gh[i], true);
        }
    }
    return CS_OK;
}

static cs_status nl_vjp(cs_op_call *c, const cs_op_ad *a, nl_kind k, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0])
        return CS_OK;
    return nl_run(c, k, NL_VJP, a, err);
}

static cs_status nl_jvp(cs_op_call *c, const cs_op_ad *a, nl_kind k, cs_err *err)
{
    if (cs_op_jvp_done_early(a, 0))
        return CS_OK;
    return nl_run(c, k, NL_JVP, a, err);
}

static cs_status nl_rop(cs_op_call *c, const cs_op_ad *a, nl_kind k, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0] || !a->tin[0])
        return CS_OK;
    return nl_run(c, k, NL_ROP, a, err);
}

#define NL_COMMON(NAME, KIND)                                                                        \
    static cs_status NAME##_forward(cs_op_call *c, cs_err *err) { return nl_run(c, KIND, NL_FORWARD, NULL, err); } \
    static cs_status NAME##_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err) { return nl_vjp(c, a, KIND, err); } \
    static cs_status NAME##_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err) { return nl_jvp(c, a, KIND, err); }
#define NL_OP(NAME, KIND)                                                                            \
    NL_COMMON(NAME, KIND)                                                                            \
    static cs_status NAME##_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err) { return nl_rop(c, a, KIND, err); } \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = 1, .infer = nl_infer,                \
                                    .forward = NAME##_forward, .vjp = NAME##_vjp, .jvp = NAME##_jvp, \
                                    .rop = NAME##_rop};
#define NL_LINEAR_OP(NAME, KIND)                                                                     \
    NL_COMMON(NAME, KIND)                                                                            \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = 1, .flags = CS_OP_LINEAR,            \
                                    .infer = nl_infer, .forward = NAME##_forward, .vjp = NAME##_vjp, \
                                    .jvp = NAME##_jvp};

NL_LINEAR_OP(ReduceMax, NL_MAX)
NL_LINEAR_OP(ReduceMin, NL_MIN)
NL_LINEAR_OP(ReduceL1, NL_L1)
NL_OP(ReduceL2, NL_L2)
NL_OP(ReduceSumSquare, NL_SUMSQ)
NL_OP(ReduceProd, NL_PROD)
NL_OP(ReduceLogSum, NL_LOGSUM)
NL_OP(ReduceLogSumExp, NL_LOGSUMEXP)

static cs_status global_max_pool_forward(cs_op_call *c, cs_err *err)
{
    return nl_run(c, NL_MAX, NL_FORWARD, NULL, err);
}
static cs_status global_max_pool_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return nl_vjp(c, a, NL_MAX, err);
}
static cs_status global_max_pool_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return nl_jvp(c, a, NL_MAX, err);
}
const cs_op_def cs_op_GlobalMaxPool = {.name = "GlobalMaxPool", .min_opset = 1, .flags = CS_OP_LINEAR,
                                       .infer = nl_infer, .forward = global_max_pool_forward,
                                       .vjp = global_max_pool_vjp, .jvp = global_max_pool_jvp};

/* ---- ArgMax, ArgMin: int64 indices along one axis (no gradient) ---- */

static cs_status arg_infer(cs_op_call *c, cs_err *err)
{
    if (c->n_in != 1 || !c->in[0] || c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 input and 1 output");
    const cs_tensor *x = c->in[0];
    if (!cs_dtype_is_float(x->dtype) && x->dtype != CS_DT_INT32 && x->dtype != CS_DT_INT64)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s", cs_dtype_name(x->dtype));
    int axis;
    cs_status st = cs_op_axis(c, cs_node_attr_int(c->node, "axis", 0), x->ndim, &axis, err);
    if (st)
        return st;
    bool keep = cs_node_attr_int(c->node, "keepdims", 1) != 0;
    cs_tensor *y = c->out[0];
    y->dtype = CS_DT_INT64;
    y->ndim = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != axis)
            y->dims[y->ndim++] = x->dims[d];
        else if (keep)
            y->dims[y->ndim++] = 1;
    if (x->dims[axis] == 0)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %d has no elements", axis);
    return CS_OK;
}

static cs_status arg_forward(cs_op_call *c, bool max, cs_err *err)
{
    const cs_tensor *x = c->in[0];
    int axis;
    cs_status st = cs_op_axis(c, cs_node_attr_int(c->node, "axis", 0), x->ndim, &axis, err);
    if (st)
        return st;
    bool last = cs_node_attr_int(c->node, "select_last_index", 0) != 0;
    int64_t outer = 1, inner = 1, n = x->dims[axis];
    for (int d = 0; d < axis; d++)
        outer *= x->dims[d];
    for (int d = axis + 1; d < x->ndim; d++)
        inner *= x->dims[d];
    int64_t *y = c->out[0]->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t best = 0;
            long double bv = 0;
            for (int64_t j = 0; j < n; j++) {
                int64_t at = (o * n + j) * inner + i;
                long double v = x->dtype == CS_DT_INT64   ? (long double)((const int64_t *)x->data)[at]
                                : x->dtype == CS_DT_INT32 ? (long double)((const int32_t *)x->data)[at]
                                                          : (long double)elem(x, at);
                /* NaN wins, as numpy's argmax; ties by select_last_index */
                bool better = j == 0 || (!isnan(bv) && (isnan(v) || (max ? v > bv : v < bv) ||
                                                        (last && v == bv)));
                if (better)
                    best = j, bv = v;
            }
            y[o * inner + i] = best;
        }
    return CS_OK;
}

static cs_status argmax_forward(cs_op_call *c, cs_err *err)
{
    return arg_forward(c, true, err);
}

static cs_status argmin_forward(cs_op_call *c, cs_err *err)
{
    return arg_forward(c, false, err);
}

const cs_op_def cs_op_ArgMax = {.name = "ArgMax", .min_opset = 1, .flags = CS_OP_NO_GRAD,
                                .no_derivative = "int64 indices: no gradient flows", .infer = arg_infer,
                                .forward = argmax_forward};
const cs_op_def cs_op_ArgMin = {.name = "ArgMin", .min_opset = 1, .flags = CS_OP_NO_GRAD,
                                .no_derivative = "int64 indices: no gradient flows", .infer = arg_infer,
                                .forward = argmin_forward};
