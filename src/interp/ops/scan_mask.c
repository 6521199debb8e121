/* Running sums and triangular masks: CumSum and Trilu, both linear in
 * their float input (CS_OP_LINEAR), so their derivatives are the operators
 * themselves or their adjoints:
 *   CumSum   y_j = sum of x_i over i <= j along the axis (i < j when
 *            exclusive; i >= j, i > j when reverse);
 *            vjp: gx = the cumulative sum of gy in the opposite direction
 *            (reverse flipped, exclusive kept): the adjoint of a
 *            lower-triangular ones matrix is the upper one;
 *            jvp: ty = CumSum(tx)
 *   Trilu    keeps the upper (upper = 1) or lower triangle of the last two
 *            axes from diagonal k (input 1, default 0) and zeroes the rest;
 *            vjp gx += mask gy, jvp ty = mask tx
 * The axis and k inputs are integers and get no gradient.  CumSum runs on
 * float, double, int32 and int64 (accumulated in double and int64);
 * Trilu on every type with a fixed element size. */
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"

static cs_status scalar_int_input(const cs_op_call *c, int i, int64_t dflt, int64_t *out, cs_err *err)
{
    const cs_tensor *t = i < c->n_in ? c->in[i] : NULL;
    *out = dflt;
    if (!t)
        return CS_OK;
    if ((t->dtype != CS_DT_INT64 && t->dtype != CS_DT_INT32) || cs_tensor_numel(t) != 1)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "input %d must be one int32 or int64 value", i);
    if (t->data)
        *out = cs_tensor_get_i64(t, 0);
    return CS_OK;
}

static cs_status same_shape_infer(cs_op_call *c, int min_in, int max_in, cs_err *err)
{
    if (c->n_in < min_in || c->n_in > max_in || !c->in[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects %d to %d inputs, got %d", min_in, max_in, c->n_in);
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, c->in[0]->ndim, c->in[0]->dims);
    return CS_OK;
}

static cs_status need_float_rule(const cs_op_call *c, cs_err *err)
{
    if (!cs_dtype_is_float(c->in[0]->dtype))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "no derivative rules for type %s",
                          cs_dtype_name(c->in[0]->dtype));
    return CS_OK;
}

/* The jvp of a linear op is the op applied to the tangent: true when that
 * is still to do; false when nothing is (no tangent output, or a zero
 * tangent, whose zero output is written here) or the rule is refused
 * (*st says which). */
static bool tangent_needs_map(const cs_op_call *c, const cs_op_ad *a, cs_status *st, cs_err *err)
{
    *st = CS_OK;
    if (!a->tout[0] || (*st = need_float_rule(c, err)))
        return false;
    return !cs_op_jvp_done_early(a, 0);
}

/* ---- CumSum ---- */

static cs_status cumsum_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = same_shape_infer(c, 2, 2, err);
    if (st)
        return st;
    cs_dtype t = c->in[0]->dtype;
    if (!cs_dtype_is_float(t) && t != CS_DT_INT32 && t != CS_DT_INT64)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s", cs_dtype_name(t));
    if (!c->in[1])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "the axis input is missing");
    int64_t axis;
    return scalar_int_input(c, 1, 0, &axis, err);
}

/* y = the running sums of x along axis (x viewed as [outer, n, inner]);
 * add: y += instead of y = (the vjp accumulates). */
#define DEFINE_CUMSUM(T, S, ACC)                                                                     \
    static void cumsum_##S(const T *x, T *y, int64_t outer, int64_t n, int64_t inner, bool exclusive, \
                           bool reverse, bool add)                                                    \
    {                                                                                                 \
        for (int64_t o = 0; o < outer; o++)                                                           \
            for (int64_t i = 0; i < inner; i++) {                                                     \
                ACC acc = 0;                                                                          \
                for (int64_t s = 0; s < n; s++) {                                                     \
                    int64_t j = reverse ? n - 1 - s : s, at = (o * n + j) * inner + i;                \
                    ACC v = x[at];                                                                    \
                    if (!exclusive)                                                                   \
                        acc += v;                                                                     \
                    y[at] = (T)(add ? y[at] + acc : acc);                                             \
                    if (exclusive)                                                                    \
                        acc += v;                                                                     \
                }                                                                                     \
            }                                                                                         \
    }
DEFINE_CUMSUM(float, f32, double)
DEFINE_CUMSUM(double, f64, double)
DEFINE_CUMSUM(int32_t, i32, int64_t)
DEFINE_CUMSUM(int64_t, i64, int64_t)

static cs_status cumsum_apply(cs_op_call *c, const cs_tensor *x, cs_tensor *y, bool adjoint, bool add,
                              cs_err *err)
{
    int64_t a;
    int axis;
    cs_status st = scalar_int_input(c, 1, 0, &a, err);
    if (st || (st = cs_op_axis(c, a, x->ndim, &axis, err)))
        return st;
    bool exclusive = cs_node_attr_int(c->node, "exclusive", 0) != 0;
    bool reverse = (cs_node_attr_int(c->node, "reverse", 0) != 0) != adjoint;
    int64_t outer = 1, inner = 1, n = x->dims[axis];
    for (int d = 0; d < axis; d++)
        outer *= x->dims[d];
    for (int d = axis + 1; d < x->ndim; d++)
        inner *= x->dims[d];
    switch (x->dtype) {
    case CS_DT_FLOAT: cumsum_f32(x->data, y->data, outer, n, inner, exclusive, reverse, add); break;
    case CS_DT_DOUBLE: cumsum_f64(x->data, y->data, outer, n, inner, exclusive, reverse, add); break;
    case CS_DT_INT32: cumsum_i32(x->data, y->data, outer, n, inner, exclusive, reverse, add); break;
    case CS_DT_INT64: cumsum_i64(x->data, y->data, outer, n, inner, exclusive, reverse, add); break;
    default: return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s", cs_dtype_name(x->dtype));
    }
    return CS_OK;
}

static cs_status cumsum_forward(cs_op_call *c, cs_err *err)
{
    return cumsum_apply(c, c->in[0], c->out[0], false, false, err);
}

static cs_status cumsum_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0])
        return CS_OK;
    cs_status st = need_float_rule(c, err);
    return st ? st : cumsum_apply(c, a->gout[0], a->gin[0], true, true, err);
}

static cs_status cumsum_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_status st;
    return tangent_needs_map(c, a, &st, err) ? cumsum_apply(c, a->tin[0], a->tout[0], false, false, err) : st;
}

const cs_op_def cs_op_CumSum = {.name = "CumSum", .min_opset = 11, .flags = CS_OP_LINEAR, .infer = cumsum_infer,
                                .forward = cumsum_forward, .vjp = cumsum_vjp, .jvp = cumsum_jvp};

/* ---- Trilu ---- */

static cs_status trilu_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = same_shape_infer(c, 1, 2, err);
    if (st)
        return st;
    if (c->in[0]->ndim < 2)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "input has rank %d (at least 2)", c->in[0]->ndim);
    if (cs_dtype_size(c->in[0]->dtype) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s",
                          cs_dtype_name(c->in[0]->dtype));
    int64_t k;
    return scalar_int_input(c, 1, 0, &k, err);
}

/* Whether element (i, j) of a matrix is kept. */
static bool trilu_keeps(bool upper, int64_t k, int64_t i, int64_t j)
{
    return upper ? j - i >= k : j - i <= k;
}

/* mode 0: y = masked x (bytes); 1: y += masked x (float / double). */
static cs_status trilu_apply(cs_op_call *c, const cs_tensor *x, cs_tensor *y, bool add, cs_err *err)
{
    int64_t k;
    cs_status st = scalar_int_input(c, 1, 0, &k, err);
    if (st)
        return st;
    bool upper = cs_node_attr_int(c->node, "upper", 1) != 0;
    int r = x->ndim;
    int64_t rows = x->dims[r - 2], cols = x->dims[r - 1], mats = rows > 0 && cols > 0 ? cs_tensor_numel(x) / (rows * cols) : 0;
    size_t es = cs_dtype_size(x->dtype);
    for (int64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                int64_t at = (m * rows + i) * cols + j;
                bool keep = trilu_keeps(upper, k, i, j);
                if (add) {
                    if (!keep)
                        continue;
                    if (x->dtype == CS_DT_FLOAT)
                        ((float *)y->data)[at] += ((const float *)x->data)[at];
                    else
                        ((double *)y->data)[at] += ((const double *)x->data)[at];
                } else if (keep) {
                    memcpy((char *)y->data + (size_t)at * es, (const char *)x->data + (size_t)at * es, es);
                } else {
                    memset((char *)y->data + (size_t)at * es, 0, es);
                }
            }
    return CS_OK;
}

static cs_status trilu_forward(cs_op_call *c, cs_err *err)
{
    return trilu_apply(c, c->in[0], c->out[0], false, err);
}

static cs_status trilu_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0])
        return CS_OK;
    cs_status st = need_float_rule(c, err);
    return st ? st : trilu_apply(c, a->gout[0], a->gin[0], true, err);
}

static cs_status trilu_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_status st;
    return tangent_needs_map(c, a, &st, err) ? trilu_apply(c, a->tin[0], a->tout[0], false, err) : st;
}

const cs_op_def cs_op_Trilu = {.name = "Trilu", .min_opset = 14, .flags = CS_OP_LINEAR, .infer = trilu_infer,
                               .forward = trilu_forward, .vjp = trilu_vjp, .jvp = trilu_jvp};
