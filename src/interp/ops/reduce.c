/* ReduceSum and ReduceMean over float, double, int32 and int64; the
 * the nonlinear reductions, GlobalMaxPool and ArgMax / ArgMin are in
 * reduce_nonlinear.c, on the axes and views of reduce_common.h.
 *
 * Axes come from the `axes` attribute (ReduceSum before opset 13, ReduceMean
 * before 18) or from the optional second input (from those opsets on); the
 * input must then be known when the plan is prepared, else the output shape
 * is unknown and infer returns CS_ERR_UNSUPPORTED.  No axes (absent or
 * empty) means all axes, unless noop_with_empty_axes = 1, which makes the op
 * an identity.  keepdims defaults to 1.  Repeated axes are an error.
 *
 * Accumulation is in double for float types and in int64 for integers (in
 * scratch, one accumulator per output element); an integer mean is the
 * int64 sum divided by the count, truncated toward zero, which matches
 * numpy's mean followed by a cast.  The mean of zero elements is NaN for
 * float types (0/0) and 0 for integers.
 *
 * Derivative rules (float and double; both ops are linear, so no rop): with
 * c = 1 for ReduceSum and c = 1/count for ReduceMean (count = reduced
 * elements per output),
 *   vjp  gx[i] += c gy[proj(i)]    (gy broadcast back over the reduced axes)
 *   jvp  ty = the forward applied to tx
 * and the identity case (noop_with_empty_axes) passes gradients through.
 * The axes input is integer and gets no gradient.  The vjp walks x as runs
 * over the same merged view as the forward, so broadcasting gy back is a
 * contiguous add or a scalar fill per run. */
#include <math.h>
#include <string.h>

#include "interp/ops/reduce_common.h"

static const reduce_kind reduce_sum_kind = {13, false, false}, reduce_mean_kind = {18, true, false};

static bool axes_from_input(const cs_op_call *c, const reduce_kind *kind)
{
    return c->node->opset >= kind->axes_input_opset;
}

cs_status cs_reduce_get_axes(const cs_op_call *c, const reduce_kind *kind, reduce_axes *ax, cs_err *err)
{
    int rank = c->in[0]->ndim;
    int count = 0;
    if (kind->spatial) {
        memset(ax, 0, sizeof *ax);
        for (int d = 2; d < rank; d++)
            ax->reduced[d] = true;
        return CS_OK;
    }
    const int64_t *attr_axes = NULL;
    const cs_tensor *axes_t = NULL;
    if (axes_from_input(c, kind)) {
        axes_t = c->n_in > 1 ? c->in[1] : NULL;
        if (axes_t) {
            if (!axes_t->data)
                return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                                  "axes input must be a constant known before running");
            if (axes_t->dtype != CS_DT_INT64 && axes_t->dtype != CS_DT_INT32)
                return cs_op_fail(c, err, CS_ERR_FORMAT, "axes input has type %s (int64 expected)",
                                  cs_dtype_name(axes_t->dtype));
            if (axes_t->ndim > 1)
                return cs_op_fail(c, err, CS_ERR_SHAPE, "axes input must be 1-D");
            int64_t n = cs_tensor_numel(axes_t);
            if (n > CS_MAX_DIMS)
                return cs_op_fail(c, err, CS_ERR_SHAPE, "%lld axes for rank %d", (long long)n, rank);
            count = (int)n;
        }
    } else {
        attr_axes = cs_node_attr_ints(c->node, "axes", &count);
    }

    memset(ax, 0, sizeof *ax);
    if (count == 0) {
        if (cs_node_attr_int(c->node, "noop_with_empty_axes", 0))
            ax->identity = true;
        else
            for (int d = 0; d < rank; d++)
                ax->reduced[d] = true;
        return CS_OK;
    }
    for (int i = 0; i < count; i++) {
        int64_t a = attr_axes ? attr_axes[i] : cs_tensor_get_i64(axes_t, i);
        int d;
        if (rank == 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %lld given for a scalar input",
                              (long long)a);
        cs_status st = cs_op_axis(c, a, rank, &d, err);
        if (st)
            return st;
        if (ax->reduced[d])
            return cs_op_fail(c, err, CS_ERR_FORMAT, "axis %lld is repeated", (long long)a);
        ax->reduced[d] = true;
    }
    return CS_OK;
}

cs_status cs_reduce_infer(cs_op_call *c, const reduce_kind *kind, cs_err *err)
{
    int max_in = axes_from_input(c, kind) ? 2 : 1;
    if (c->n_in < 1 || c->n_in > max_in || !c->in[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 to %d inputs, got %d", max_in, c->n_in);
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    const cs_tensor *x = c->in[0];
    if (!cs_dtype_is_float(x->dtype) && x->dtype != CS_DT_INT32 && x->dtype != CS_DT_INT64)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s",
                          cs_dtype_name(x->dtype));
    reduce_axes ax;
    cs_status st = cs_reduce_get_axes(c, kind, &ax, err);
    if (st)
        return st;
    bool keepdims = cs_node_attr_int(c->node, "keepdims", 1) != 0;
    cs_tensor *y = c->out[0];
    y->dtype = x->dtype;
    y->ndim = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (ax.identity || !ax.reduced[d])
            y->dims[y->ndim++] = x->dims[d];
        else if (keepdims)
            y->dims[y->ndim++] = 1;
    }
    c->scratch_bytes = ax.identity ? 0 : (size_t)cs_tensor_numel(y) * 8;
    c->ad_scratch_bytes = c->scratch_bytes; /* jvp runs the forward kernel */
    return CS_OK;
}

void cs_reduce_view_of(const cs_tensor *x, const reduce_axes *ax, reduce_view *v)
{
    v->rank = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (x->dims[d] == 1)
            continue;
        if (v->rank > 0 && v->reduced[v->rank - 1] == ax->reduced[d]) {
            v->dims[v->rank - 1] *= x->dims[d];
        } else {
            v->dims[v->rank] = x->dims[d];
            v->reduced[v->rank] = ax->reduced[d];
            v->rank++;
        }
    }
    if (v->rank == 0) { /* one element */
        v->dims[0] = 1;
        v->reduced[0] = false;
        v->rank = 1;
    }
    int64_t step = 1;
    for (int d = v->rank - 1; d >= 0; d--) {
        v->out_stride[d] = v->reduced[d] ? 0 : step;
        if (!v->reduced[d])
            step *= v->dims[d];
    }
}

/* acc (numel(y) entries) += x summed over the reduced dimensions; then
 * y = acc, or acc / count for the mean. */
#define DEFINE_REDUCE(T, S, ACC)                                                          \
    static void reduce_##S(const reduce_view *v, const T *x, int64_t x_numel, T *y,       \
                           int64_t y_numel, ACC *acc, bool mean)                          \
    {                                                                                     \
        for (int64_t i = 0; i < y_numel; i++)                                             \
            acc[i] = 0;                                                                   \
        const int r = v->rank;                                                            \
        const int64_t inner = v->dims[r - 1];                                             \
        const int64_t outer = inner ? x_numel / inner : 0;                                \
        int64_t idx[CS_MAX_DIMS] = {0};                                                   \
        int64_t off = 0;                                                                  \
        for (int64_t o = 0; o < outer; o++) {                                             \
            const T *run = x + o * inner;                                                 \
            if (v->reduced[r - 1]) {                                                      \
                ACC s = 0;                                                                \
                for (int64_t j = 0; j < inner; j++)                                       \
                    s += run[j];                                                          \
                acc[off] += s;                                                            \
            } else {                                                                      \
                for (int64_t j = 0; j < inner; j++)                                       \
                    acc[off + j] += run[j];                                               \
            }                                                                             \
            reduce_view_next_run(v, idx, &off); \
        }                                                                                 \
        int64_t count = y_numel ? x_numel / y_numel : 0;                                  \
        for (int64_t i = 0; i < y_numel; i++)                                             \
            y[i] = (T)(!mean ? acc[i] : REDUCE_DIV_##S(acc[i], count));                   \
    }
#define REDUCE_DIV_f32(s, n) ((s) / (double)(n))
#define REDUCE_DIV_f64(s, n) ((s) / (double)(n))
#define REDUCE_DIV_i32(s, n) ((n) ? (s) / (n) : 0)
#define REDUCE_DIV_i64(s, n) ((n) ? (s) / (n) : 0)
DEFINE_REDUCE(float, f32, double)
DEFINE_REDUCE(double, f64, double)
DEFINE_REDUCE(int32_t, i32, int64_t)
DEFINE_REDUCE(int64_t, i64, int64_t)

/* y = the reduction of x (x, y shaped like c's input 0 and output 0; the
 * jvp passes tangents here, as the op is linear). */
static cs_status reduce_apply(cs_op_call *c, const reduce_kind *kind, const cs_tensor *x,
                              cs_tensor *y, cs_err *err)
{
    reduce_axes ax;
    cs_status st = cs_reduce_get_axes(c, kind, &ax, err);
    if (st)
        return st;
    if (ax.identity) {
        memcpy(y->data, x->data, cs_tensor_bytes(x));
        return CS_OK;
    }
    reduce_view v;
    cs_reduce_view_of(x, &ax, &v);
    int64_t xn = cs_tensor_numel(x), yn = cs_tensor_numel(y);
    switch (x->dtype) {
    case CS_DT_FLOAT: reduce_f32(&v, x->data, xn, y->data, yn, c->scratch, kind->mean); break;
    case CS_DT_DOUBLE: reduce_f64(&v, x->data, xn, y->data, yn, c->scratch, kind->mean); break;
    case CS_DT_INT32: reduce_i32(&v, x->data, xn, y->data, yn, c->scratch, kind->mean); break;
    case CS_DT_INT64: reduce_i64(&v, x->data, xn, y->data, yn, c->scratch, kind->mean); break;
    default:
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s",
                          cs_dtype_name(x->dtype));
    }
    return CS_OK;
}

static cs_status reduce_forward(cs_op_call *c, const reduce_kind *kind, cs_err *err)
{
    return reduce_apply(c, kind, c->in[0], c->out[0], err);
}

/* ---- derivative rules (formulas at the top of the file) ---- */

/* gx (x's shape) += scale * gy broadcast back over the reduced dimensions
 * of view v. */
#define DEFINE_REDUCE_VJP(T, S)                                                       \
    static void reduce_vjp_##S(const reduce_view *v, T *restrict gx, int64_t x_numel, \
                               const T *gy, T scale)                                  \
    {                                                                                 \
        const int r = v->rank;                                                        \
        const int64_t inner = v->dims[r - 1];                                         \
        const int64_t outer = inner ? x_numel / inner : 0;                            \
        int64_t idx[CS_MAX_DIMS] = {0};                                               \
        int64_t off = 0;                                                              \
        for (int64_t o = 0; o < outer; o++) {                                         \
            T *run = gx + o * inner;                                                  \
            if (v->reduced[r - 1]) {                                                  \
                const T g = scale * gy[off];                                          \
                for (int64_t j = 0; j < inner; j++)                                   \
                    run[j] += g;                                                      \
            } else {                                                                  \
                const T *src = gy + off;                                              \
                for (int64_t j = 0; j < inner; j++)                                   \
                    run[j] += scale * src[j];                                         \
            }                                                                         \
            reduce_view_next_run(v, idx, &off); \
        }                                                                             \
    }
DEFINE_REDUCE_VJP(float, f32)
DEFINE_REDUCE_VJP(double, f64)

static cs_status reduce_need_float(const cs_op_call *c, cs_err *err)
{
    if (!cs_dtype_is_float(c->in[0]->dtype))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "no derivative rules for type %s",
                          cs_dtype_name(c->in[0]->dtype));
    return CS_OK;
}

static cs_status reduce_vjp(cs_op_call *c, const cs_op_ad *a, const reduce_kind *kind,
                            cs_err *err)
{
    cs_tensor *gx = a->gin[0];
    const cs_tensor *gy = a->gout[0];
    if (!gx || !gy)
        return CS_OK;
    cs_status st = reduce_need_float(c, err);
    if (st)
        return st;
    reduce_axes ax;
    st = cs_reduce_get_axes(c, kind, &ax, err);
    if (st)
        return st;
    int64_t xn = cs_tensor_numel(gx), yn = cs_tensor_numel(gy);
    if (ax.identity) {
        if (gx->dtype == CS_DT_FLOAT)
            for (int64_t i = 0; i < xn; i++)
                ((float *)gx->data)[i] += ((const float *)gy->data)[i];
        else
            for (int64_t i = 0; i < xn; i++)
                ((double *)gx->data)[i] += ((const double *)gy->data)[i];
        return CS_OK;
    }
    reduce_view v;
    cs_reduce_view_of(c->in[0], &ax, &v);
    int64_t count = yn ? xn / yn : 0;
    double scale = kind->mean && count ? 1.0 / (double)count : 1.0;
    if (gx->dtype == CS_DT_FLOAT)
        reduce_vjp_f32(&v, gx->data, xn, gy->data, (float)scale);
    else
        reduce_vjp_f64(&v, gx->data, xn, gy->data, scale);
    return CS_OK;
}

static cs_status reduce_jvp(cs_op_call *c, const cs_op_ad *a, const reduce_kind *kind,
                            cs_err *err)
{
    cs_tensor *ty = a->tout[0];
    const cs_tensor *tx = a->tin[0];
    if (!ty)
        return CS_OK;
    cs_status st = reduce_need_float(c, err);
    if (st)
        return st;
    if (!tx) {
        memset(ty->data, 0, cs_tensor_bytes(ty));
        return CS_OK;
    }
    /* linear: the derivative is the op itself, applied to the tangent */
    return reduce_apply(c, kind, tx, ty, err);
}

static cs_status reduce_sum_infer(cs_op_call *c, cs_err *err)
{
    return cs_reduce_infer(c, &reduce_sum_kind, err);
}
static cs_status reduce_sum_forward(cs_op_call *c, cs_err *err)
{
    return reduce_forward(c, &reduce_sum_kind, err);
}
static cs_status reduce_mean_infer(cs_op_call *c, cs_err *err)
{
    return cs_reduce_infer(c, &reduce_mean_kind, err);
}
static cs_status reduce_mean_forward(cs_op_call *c, cs_err *err)
{
    return reduce_forward(c, &reduce_mean_kind, err);
}

static cs_status reduce_sum_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return reduce_vjp(c, a, &reduce_sum_kind, err);
}
static cs_status reduce_sum_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return reduce_jvp(c, a, &reduce_sum_kind, err);
}
static cs_status reduce_mean_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return reduce_vjp(c, a, &reduce_mean_kind, err);
}
static cs_status reduce_mean_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return reduce_jvp(c, a, &reduce_mean_kind, err);
}

const cs_op_def cs_op_ReduceMean = {.name = "ReduceMean", .min_opset = 1, .flags = CS_OP_LINEAR,
                                    .infer = reduce_mean_infer, .forward = reduce_mean_forward,
                                    .vjp = reduce_mean_vjp, .jvp = reduce_mean_jvp};
const cs_op_def cs_op_ReduceSum = {.name = "ReduceSum", .min_opset = 1, .flags = CS_OP_LINEAR,
                                   .infer = reduce_sum_infer, .forward = reduce_sum_forward,
                                   .vjp = reduce_sum_vjp, .jvp = reduce_sum_jvp};

