/* Generators: ConstantOfShape, Range, Size.
 *
 * Their outputs are made from integer or scalar inputs, not moved from a
 * float tensor.  ConstantOfShape's shape and Range's start / limit / delta
 * decide the output shape, so, like Reshape's shape, they must be known at
 * prepare time (initializers, constants, folded values); the plan then
 * folds the node whenever its inputs are constant (exports build Shape ->
 * ConstantOfShape -> Expand / Where masks and Range position ids from
 * shapes), and downstream shape inference reads the folded data.  Size
 * depends on its input's shape only and is always folded.
 *
 * Derivatives: none by design, each stated in its row: ConstantOfShape and
 * Size have no float input, and Range's length depends on the values of its
 * float inputs (CS_OP_NO_GRAD on all three). */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "interp/ops/shape_common.h"

/* ---- ConstantOfShape (opset 9) ---- */

/* The value attribute (a one-element tensor), or NULL for the default
 * float32 0. */
static cs_status constant_of_shape_value(const cs_op_call *c, const cs_tensor **value, cs_err *err)
{
    const cs_attr *a = cs_node_attr(c->node, "value");
    *value = NULL;
    if (!a)
        return CS_OK;
    if (a->type != CS_ATTR_TENSOR || cs_tensor_numel(&a->t) != 1 || !a->t.data)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "attribute value must be a one-element tensor");
    if (cs_dtype_size(a->t.dtype) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "value has unsupported type %s",
                          cs_dtype_name(a->t.dtype));
    *value = &a->t;
    return CS_OK;
}

static cs_status constant_of_shape_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 1, 1, 1, err);
    if (st)
        return st;
    const cs_tensor *value;
    int64_t dims[CS_MAX_DIMS];
    int rank = 0;
    if ((st = constant_of_shape_value(c, &value, err)) ||
        (st = read_int_input(c, 0, "shape", dims, CS_MAX_DIMS, &rank, err)))
        return st;
    for (int i = 0; i < rank; i++)
        if (dims[i] < 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "shape[%d] = %lld is negative", i,
                              (long long)dims[i]);
    cs_tensor_set_shape(c->out[0], value ? value->dtype : CS_DT_FLOAT, rank, dims);
    return CS_OK;
}

static cs_status constant_of_shape_forward(cs_op_call *c, cs_err *err)
{
    const cs_tensor *value;
    cs_status st = constant_of_shape_value(c, &value, err);
    if (st)
        return st;
    cs_tensor *y = c->out[0];
    size_t esize = cs_dtype_size(y->dtype);
    int64_t n = cs_tensor_numel(y);
    if (!value) {
        zero_fill(y);
        return CS_OK;
    }
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)y->data + (size_t)i * esize, value->data, esize);
    return CS_OK;
}

const cs_op_def cs_op_ConstantOfShape = {
    .name = "ConstantOfShape", .min_opset = 9, .flags = CS_OP_NO_GRAD,
    .infer = constant_of_shape_infer, .forward = constant_of_shape_forward,
    .no_derivative = "its only input is an integer shape: no float input to differentiate",
};

/* ---- Range (opset 11) ---- */

/* start, limit and delta: scalars (or one-element tensors) of one numeric
 * type, known at prepare time. */
static cs_status range_check(const cs_op_call *c, cs_err *err)
{
    static const char *const names[3] = {"start", "limit", "delta"};
    for (int i = 0; i < 3; i++) {
        const cs_tensor *t = c->in[i];
        if (t->ndim > 1 || cs_tensor_numel(t) != 1)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "%s must be a scalar", names[i]);
        if (t->dtype != c->in[0]->dtype)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "%s has type %s, start %s", names[i],
                              cs_dtype_name(t->dtype), cs_dtype_name(c->in[0]->dtype));
        if (!t->data)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                              "%s must be known at prepare time (it sets the output length)", names[i]);
    }
    cs_dtype dt = c->in[0]->dtype;
    if (dt != CS_DT_FLOAT && dt != CS_DT_DOUBLE && dt != CS_DT_INT16 && dt != CS_DT_INT32 &&
        dt != CS_DT_INT64)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "type %s (float, double, int16, int32 or int64)",
                          cs_dtype_name(dt));
    return CS_OK;
}

/* max(ceil((limit - start) / delta), 0), in the inputs' type: exact
 * integer arithmetic for integers, the float type's own division for
 * float32, as ONNX's definition computes it. */
static cs_status range_count(const cs_op_call *c, int64_t *count, cs_err *err)
{
    const cs_tensor *s = c->in[0], *l = c->in[1], *d = c->in[2];
    int64_t n;
    if (cs_dtype_is_float(s->dtype)) {
        double span;
        if (s->dtype == CS_DT_FLOAT) {
            float q = (((const float *)l->data)[0] - ((const float *)s->data)[0]) /
                      ((const float *)d->data)[0];
            span = ceilf(q);
        } else {
            span = ceil((cs_tensor_get_f64(l, 0) - cs_tensor_get_f64(s, 0)) / cs_tensor_get_f64(d, 0));
        }
        if (!(span < 9007199254740992.0)) /* also NaN: delta 0, or non-finite inputs */
            return cs_op_fail(c, err, CS_ERR_SHAPE, "start, limit and delta give no finite length");
        n = span > 0 ? (int64_t)span : 0;
    } else {
        int64_t start = cs_tensor_get_i64(s, 0), delta = cs_tensor_get_i64(d, 0);
        int64_t diff = cs_tensor_get_i64(l, 0) - start;
        if (delta == 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "delta is 0");
        n = diff / delta; /* truncated; one more where a remainder is left going forward */
        if (n * delta != diff && (diff < 0) == (delta < 0))
            n++;
        n = n > 0 ? n : 0;
    }
    *count = n;
    return CS_OK;
}

static cs_status range_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 3, 3, 1, 1, err);
    int64_t n;
    if (st || (st = range_check(c, err)) || (st = range_count(c, &n, err)))
        return st;
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, 1, &n);
    return CS_OK;
}

/* Y[i] = start + i * delta. */
static cs_status range_forward(cs_op_call *c, cs_err *err)
{
    cs_tensor *y = c->out[0];
    const cs_tensor *s = c->in[0], *d = c->in[2];
    int64_t n = cs_tensor_numel(y);
    if (y->dtype == CS_DT_FLOAT) {
        float start = ((const float *)s->data)[0], delta = ((const float *)d->data)[0];
        for (int64_t i = 0; i < n; i++)
            ((float *)y->data)[i] = start + (float)i * delta;
    } else if (y->dtype == CS_DT_DOUBLE) {
        double start = cs_tensor_get_f64(s, 0), delta = cs_tensor_get_f64(d, 0);
        for (int64_t i = 0; i < n; i++)
            ((double *)y->data)[i] = start + (double)i * delta;
    } else {
        int64_t start = cs_tensor_get_i64(s, 0), delta = cs_tensor_get_i64(d, 0);
        for (int64_t i = 0; i < n; i++) {
            int64_t v = start + i * delta;
            cs_convert((char *)y->data + (size_t)i * cs_dtype_size(y->dtype), y->dtype, &v,
                       CS_DT_INT64, 1);
        }
    }
    return CS_OK;
}

const cs_op_def cs_op_Range = {
    .name = "Range", .min_opset = 11, .flags = CS_OP_NO_GRAD, .infer = range_infer,
    .forward = range_forward,
    .no_derivative = "its length ceil((limit - start) / delta) depends on the values of its float "
                     "inputs, which must be known at prepare time: they are constants, no gradient flows",
};

/* ---- Size ---- */

static cs_status size_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 1, 1, 1, err);
    if (st)
        return st;
    cs_tensor_set_shape(c->out[0], CS_DT_INT64, 0, NULL);
    return CS_OK;
}

static cs_status size_forward(cs_op_call *c, cs_err *err)
{
    *(int64_t *)c->out[0]->data = cs_tensor_numel(c->in[0]);
    return CS_OK;
}

const cs_op_def cs_op_Size = {
    .name = "Size", .min_opset = 1, .flags = CS_OP_SHAPE_ONLY | CS_OP_NO_GRAD, .infer = size_infer,
    .forward = size_forward,
    .no_derivative = "its output is integer (the input's element count): no gradient flows",
};
