/* Shape operators: Flatten, Reshape, Unsqueeze, Squeeze, Shape, Constant,
 * Identity, Dropout, Cast (the data-movement ones, Transpose, Concat and
 * Gather, are in rearrange.c).
 *
 * Except Cast, these move elements without looking at them, so they copy
 * bytes by element size and work for every dtype that has one (float,
 * int64 shape tensors, bool masks, ...).  Operators whose output shape
 * depends on an input's contents (Reshape's shape, Squeeze / Unsqueeze axes
 * from opset 13) need that input known at prepare time.
 *
 * Derivatives: every operator here is linear in its float data (each output
 * element is one input element, or a constant), so the vjp is the adjoint
 * data movement (copy back) and the jvp the forward movement applied to the
 * tangent; all are flagged CS_OP_LINEAR, with no second-order term.
 * Gradients exist for float32 / float64 only: integer inputs (shapes, axes)
 * never receive one, and Cast to or from a non-float type passes none.  Shape's output is integer: CS_OP_NO_GRAD. */
#include <stdbool.h>
#include <string.h>

#include "interp/ops/shape_common.h"

/* ---- helpers of this file ---- */

/* Forward of every operator whose output is input 0 under another shape. */
static cs_status copy_forward(cs_op_call *c, cs_err *err)
{
    copy_bytes(c->out[0], c->in[0]);
    return CS_OK;
}

/* vjp of an output that is input 0's elements in the same order (Flatten,
 * Reshape, Squeeze, Unsqueeze, Identity, Dropout): gX += gY.  Other inputs
 * (shape, axes, ratio) do not move the data and get nothing; a second
 * output (Dropout's mask) is constant and sends nothing back. */
static cs_status copy_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (ad->gin[0] && ad->gout[0])
        add_into(ad->gin[0]->data, ad->gout[0]->data, ad->gin[0]->dtype,
                 cs_tensor_numel(ad->gin[0]));
    return CS_OK;
}

/* jvp of the same: tY = tX (0 without a tangent); further outputs are
 * constants, so their tangents are 0. */
static cs_status copy_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    for (int k = 0; k < c->n_out; k++) {
        cs_tensor *t = ad->tout[k];
        if (!t)
            continue;
        if (k == 0 && ad->tin[0])
            copy_bytes(t, ad->tin[0]);
        else
            zero_fill(t);
    }
    return CS_OK;
}

/* ---- Flatten ---- */

static cs_status flatten_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 1, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    int rank = c->in[0]->ndim;
    int64_t axis = cs_node_attr_int(c->node, "axis", 1);
    if (axis < 0)
        axis += rank;
    if (axis < 0 || axis > rank) /* axis == rank is allowed: [numel, 1] */
        return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %lld is out of range for rank %d",
                          (long long)cs_node_attr_int(c->node, "axis", 1), rank);
    const int64_t *d = c->in[0]->dims;
    int64_t dims[2] = {dims_product(d, 0, (int)axis), dims_product(d, (int)axis, rank)};
    return set_reshaped(c, 2, dims, err);
}

const cs_op_def cs_op_Flatten = {
    .name = "Flatten", .min_opset = 1, .flags = CS_OP_LINEAR,
    .infer = flatten_infer, .forward = copy_forward, .vjp = copy_vjp, .jvp = copy_jvp,
};

/* ---- Reshape (shape from input 1, opset 5 on; allowzero from 14) ---- */

static cs_status reshape_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 2, 2, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    const cs_tensor *x = c->in[0];
    int64_t dims[CS_MAX_DIMS];
    int rank = 0;
    st = read_int_input(c, 1, "shape", dims, CS_MAX_DIMS, &rank, err);
    if (st)
        return st;
    bool allowzero = cs_node_attr_int(c->node, "allowzero", 0) != 0;

    int infer_at = -1;
    int64_t known = 1; /* product of the dims other than the -1 */
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0 && !allowzero) {
            if (i >= x->ndim)
                return cs_op_fail(c, err, CS_ERR_SHAPE,
                                  "shape[%d] = 0 copies a dimension the input (rank %d) lacks", i,
                                  x->ndim);
            dims[i] = x->dims[i];
        }
        if (dims[i] == -1) {
            if (infer_at >= 0)
                return cs_op_fail(c, err, CS_ERR_SHAPE, "shape has more than one -1");
            infer_at = i;
            continue;
        }
        if (dims[i] < 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "shape[%d] = %lld is negative", i,
                              (long long)dims[i]);
        long long p;
        if (cs_mul_overflow_i64(known, dims[i], &p))
            return cs_op_fail(c, err, CS_ERR_SHAPE, "shape overflows");
        known = p;
    }
    int64_t numel = cs_tensor_numel(x);
    if (infer_at >= 0) {
        if (known == 0 || numel % known != 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE,
                              "cannot infer the -1 dimension: %lld elements, %lld in the other dims",
                              (long long)numel, (long long)known);
        dims[infer_at] = numel / known;
        known = numel;
    }
    if (known != numel) {
        char buf[96];
        return cs_op_fail(c, err, CS_ERR_SHAPE, "cannot reshape %s (%lld elements) to %lld elements",
                          cs_shape_str(x, buf, sizeof buf), (long long)numel, (long long)known);
    }
    return set_reshaped(c, rank, dims, err);
}

const cs_op_def cs_op_Reshape = {
    .name = "Reshape", .min_opset = 5, .flags = CS_OP_LINEAR,
    .infer = reshape_infer, .forward = copy_forward, .vjp = copy_vjp, .jvp = copy_jvp,
};

/* ---- Unsqueeze / Squeeze (axes attribute before opset 13, input from 13) ---- */

/* The axes list: *present false when the node has none. */
static cs_status read_axes(const cs_op_call *c, int64_t *axes, int *n, bool *present, cs_err *err)
{
    *n = 0;
    *present = false;
    if (c->node->opset >= 13) {
        if (c->n_in < 2 || !c->in[1])
            return CS_OK;
        *present = true;
        return read_int_input(c, 1, "axes", axes, CS_MAX_DIMS, n, err);
    }
    int count = 0;
    const int64_t *a = cs_node_attr_ints(c->node, "axes", &count);
    if (!a)
        return CS_OK;
    if (count > CS_MAX_DIMS)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "%d axes (at most %d)", count, CS_MAX_DIMS);
    memcpy(axes, a, (size_t)count * sizeof *axes);
    *n = count;
    *present = true;
    return CS_OK;
}

/* Normalise axes against rank into a mask; repeated axes are an error. */
static cs_status axes_mask(const cs_op_call *c, const int64_t *axes, int n, int rank, bool *mask,
                           cs_err *err)
{
    for (int i = 0; i < rank; i++)
        mask[i] = false;
    for (int i = 0; i < n; i++) {
        int a;
        if (rank == 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %lld is out of range for rank 0",
                              (long long)axes[i]);
        cs_status st = cs_op_axis(c, axes[i], rank, &a, err);
        if (st)
            return st;
        if (mask[a])
            return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %lld is repeated", (long long)axes[i]);
        mask[a] = true;
    }
    return CS_OK;
}

static cs_status unsqueeze_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 2, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    int64_t axes[CS_MAX_DIMS];
    int n;
    bool present;
    if ((st = read_axes(c, axes, &n, &present, err)))
        return st;
    if (!present)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "axes are required");
    const cs_tensor *x = c->in[0];
    int rank = x->ndim + n;
    if (rank > CS_MAX_DIMS)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "result rank %d exceeds %d", rank, CS_MAX_DIMS);
    bool mask[CS_MAX_DIMS];
    if ((st = axes_mask(c, axes, n, rank, mask, err)))
        return st;
    int64_t dims[CS_MAX_DIMS];
    for (int i = 0, src = 0; i < rank; i++)
        dims[i] = mask[i] ? 1 : x->dims[src++];
    return set_reshaped(c, rank, dims, err);
}

const cs_op_def cs_op_Unsqueeze = {
    .name = "Unsqueeze", .min_opset = 1, .flags = CS_OP_LINEAR,
    .infer = unsqueeze_infer, .forward = copy_forward, .vjp = copy_vjp, .jvp = copy_jvp,
};

static cs_status squeeze_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 2, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    int64_t axes[CS_MAX_DIMS];
    int n;
    bool present;
    if ((st = read_axes(c, axes, &n, &present, err)))
        return st;
    const cs_tensor *x = c->in[0];
    bool mask[CS_MAX_DIMS];
    if (present) {
        if ((st = axes_mask(c, axes, n, x->ndim, mask, err)))
            return st;
        for (int i = 0; i < x->ndim; i++)
            if (mask[i] && x->dims[i] != 1)
                return cs_op_fail(c, err, CS_ERR_SHAPE, "cannot squeeze axis %d of size %lld", i,
                                  (long long)x->dims[i]);
    } else {
        for (int i = 0; i < x->ndim; i++)
            mask[i] = x->dims[i] == 1;
    }
    int64_t dims[CS_MAX_DIMS];
    int rank = 0;
    for (int i = 0; i < x->ndim; i++)
        if (!mask[i])
            dims[rank++] = x->dims[i];
    return set_reshaped(c, rank, dims, err);
}

const cs_op_def cs_op_Squeeze = {
    .name = "Squeeze", .min_opset = 1, .flags = CS_OP_LINEAR,
    .infer = squeeze_infer, .forward = copy_forward, .vjp = copy_vjp, .jvp = copy_jvp,
};

/* ---- Shape (start / end from opset 15) ---- */

static void shape_range(const cs_op_call *c, int *start, int *end)
{
    int64_t rank = c->in[0]->ndim;
    int64_t s = cs_node_attr_int(c->node, "start", 0);
    int64_t e = cs_node_attr_int(c->node, "end", rank);
    if (s < 0)
        s += rank;
    if (e < 0)
        e += rank;
    s = s < 0 ? 0 : s > rank ? rank : s; /* clamped, as the operator defines */
    e = e < 0 ? 0 : e > rank ? rank : e;
    *start = (int)s;
    *end = (int)(e > s ? e : s);
}

static cs_status shape_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 1, 1, 1, err);
    if (st)
        return st;
    int start, end;
    shape_range(c, &start, &end);
    int64_t n = end - start;
    cs_tensor_set_shape(c->out[0], CS_DT_INT64, 1, &n);
    return CS_OK;
}

static cs_status shape_forward(cs_op_call *c, cs_err *err)
{
    int start, end;
    shape_range(c, &start, &end);
    int64_t *yd = c->out[0]->data;
    for (int i = start; i < end; i++)
        yd[i - start] = c->in[0]->dims[i];
    return CS_OK;
}

const cs_op_def cs_op_Shape = {
    .name = "Shape", .min_opset = 1, .flags = CS_OP_SHAPE_ONLY | CS_OP_NO_GRAD,
    .infer = shape_infer, .forward = shape_forward,
    .no_derivative = "its output is integer (the input's shape): no gradient flows",
};

/* ---- Constant ---- */

/* The node's one value attribute; n_found counts how many are set. */
static const cs_attr *constant_attr(const cs_op_call *c, int *n_found)
{
    static const char *const names[] = {"value", "value_float", "value_floats", "value_int",
                                        "value_ints", "value_string", "value_strings",
                                        "sparse_value"};
    const cs_attr *found = NULL;
    *n_found = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const cs_attr *a = cs_node_attr(c->node, names[i]);
        if (a) {
            found = a;
            ++*n_found;
        }
    }
    return found;
}

static cs_status constant_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 0, 0, 1, 1, err);
    if (st)
        return st;
    int n_found;
    const cs_attr *a = constant_attr(c, &n_found);
    if (n_found != 1)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "needs exactly one value attribute, has %d", n_found);
    cs_tensor *y = c->out[0];
    if (strcmp(a->name, "value") == 0) {
        if (a->type != CS_ATTR_TENSOR)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "attribute value is not a tensor");
        if (cs_dtype_size(a->t.dtype) == 0)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "value has unsupported type %s",
                              cs_dtype_name(a->t.dtype));
        if (!a->t.data && cs_tensor_numel(&a->t) > 0)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "value tensor has no data");
        cs_tensor_set_shape(y, a->t.dtype, a->t.ndim, a->t.dims);
    } else if (strcmp(a->name, "value_float") == 0 && a->type == CS_ATTR_FLOAT) {
        cs_tensor_set_shape(y, CS_DT_FLOAT, 0, NULL);
    } else if (strcmp(a->name, "value_int") == 0 && a->type == CS_ATTR_INT) {
        cs_tensor_set_shape(y, CS_DT_INT64, 0, NULL);
    } else if (strcmp(a->name, "value_floats") == 0 && a->type == CS_ATTR_FLOATS) {
        int64_t n = a->n;
        cs_tensor_set_shape(y, CS_DT_FLOAT, 1, &n);
    } else if (strcmp(a->name, "value_ints") == 0 && a->type == CS_ATTR_INTS) {
        int64_t n = a->n;
        cs_tensor_set_shape(y, CS_DT_INT64, 1, &n);
    } else {
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "attribute %s is not supported", a->name);
    }
    return CS_OK;
}

static cs_status constant_forward(cs_op_call *c, cs_err *err)
{
    int n_found;
    const cs_attr *a = constant_attr(c, &n_found);
    cs_tensor *y = c->out[0];
    if (strcmp(a->name, "value") == 0)
        copy_bytes(y, &a->t);
    else if (a->type == CS_ATTR_FLOAT)
        *(float *)y->data = a->f;
    else if (a->type == CS_ATTR_INT)
        *(int64_t *)y->data = a->i;
    else if (a->type == CS_ATTR_FLOATS && a->n > 0)
        memcpy(y->data, a->floats, (size_t)a->n * sizeof(float));
    else if (a->type == CS_ATTR_INTS && a->n > 0)
        memcpy(y->data, a->ints, (size_t)a->n * sizeof(int64_t));
    return CS_OK;
}

/* A constant has no inputs: nothing to send back, and a zero tangent. */
static cs_status constant_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    return CS_OK;
}

static cs_status constant_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (ad->tout[0])
        zero_fill(ad->tout[0]);
    return CS_OK;
}

const cs_op_def cs_op_Constant = {
    .name = "Constant", .min_opset = 1, .flags = CS_OP_LINEAR, .infer = constant_infer,
    .forward = constant_forward, .vjp = constant_vjp, .jvp = constant_jvp,
    .no_derivative = "it has no inputs: nothing to send a gradient to, its tangent is zero",
};

/* ---- Identity ---- */

static cs_status identity_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 1, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    return set_reshaped(c, c->in[0]->ndim, c->in[0]->dims, err);
}

const cs_op_def cs_op_Identity = {
    .name = "Identity", .min_opset = 1, .flags = CS_OP_LINEAR,
    .infer = identity_infer, .forward = copy_forward, .vjp = copy_vjp, .jvp = copy_jvp,
};

/* ---- Dropout (inference only: identity) ----
 * Opset 7 on: no is_test attribute, so inference is the default.  From
 * opset 12 the ratio and training_mode are inputs; ratio is irrelevant at
 * inference and training_mode must be absent or false.  The mask is bool
 * from opset 10, the data type before. */

static cs_status dropout_check_mode(const cs_op_call *c, cs_err *err)
{
    if (c->n_in < 3 || !c->in[2] || !c->in[2]->data)
        return CS_OK;
    const cs_tensor *mode = c->in[2];
    for (int64_t i = 0; i < cs_tensor_numel(mode); i++)
        if (cs_tensor_get_i64(mode, i) != 0)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                              "training_mode is true (curvscope runs Dropout as identity)");
    return CS_OK;
}

static cs_status dropout_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 3, 1, 2, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    if (c->n_in >= 3 && c->in[2] && c->in[2]->dtype != CS_DT_BOOL)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "training_mode has type %s (bool expected)",
                          cs_dtype_name(c->in[2]->dtype));
    if ((st = dropout_check_mode(c, err)))
        return st;
    const cs_tensor *x = c->in[0];
    cs_tensor_set_shape(c->out[0], x->dtype, x->ndim, x->dims);
    if (c->n_out > 1 && c->out[1])
        cs_tensor_set_shape(c->out[1], c->node->opset >= 10 ? CS_DT_BOOL : x->dtype, x->ndim,
                            x->dims);
    return CS_OK;
}

static cs_status dropout_forward(cs_op_call *c, cs_err *err)
{
    /* training_mode may only become known now (a runtime input). */
    cs_status st = dropout_check_mode(c, err);
    if (st)
        return st;
    copy_bytes(c->out[0], c->in[0]);
    if (c->n_out > 1 && c->out[1]) {
        cs_tensor *mask = c->out[1]; /* everything kept */
        int64_t n = cs_tensor_numel(mask);
        if (mask->dtype == CS_DT_BOOL)
            memset(mask->data, 1, (size_t)n);
        else
            for (int64_t i = 0; i < n; i++)
                cs_tensor_set_f64(mask, i, 1.0);
    }
    return CS_OK;
}

/* As identity: gX += gY, tY = tX; the all-ones mask is constant (zero
 * tangent, its gradient goes nowhere) and the ratio does not enter. */
const cs_op_def cs_op_Dropout = {
    .name = "Dropout", .min_opset = 7, .flags = CS_OP_LINEAR, .infer = dropout_infer,
    .forward = dropout_forward, .vjp = copy_vjp, .jvp = copy_jvp,
};

/* ---- Cast (integer `to` from opset 6) ---- */

static cs_status cast_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 1, 1, 1, err);
    if (st)
        return st;
    const cs_attr *to = cs_node_attr(c->node, "to");
    if (!to || to->type != CS_ATTR_INT)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "integer attribute 'to' is required");
    if (to->i <= CS_DT_UNDEFINED || to->i >= CS_DT_COUNT_ || cs_dtype_size((cs_dtype)to->i) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "cast to ONNX type %lld (%s) is not supported",
                          (long long)to->i, to->i == 16 ? "bfloat16" : cs_dtype_name((int)to->i));
    if (cs_dtype_size(c->in[0]->dtype) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "cast from type %s is not supported",
                          cs_dtype_name(c->in[0]->dtype));
    cs_tensor_set_shape(c->out[0], (cs_dtype)to->i, c->in[0]->ndim, c->in[0]->dims);
    return CS_OK;
}

static cs_status cast_forward(cs_op_call *c, cs_err *err)
{
    const cs_tensor *x = c->in[0];
    cs_tensor *y = c->out[0];
    cs_convert(y->data, y->dtype, x->data, x->dtype, cs_tensor_numel(x));
    return CS_OK;
}

/* Between float types Cast is the identity up to rounding, whose derivative
 * is taken as 1 (as frameworks do): gX += convert(gY), tY = convert(tX).
 * To or from any other type (integers, bool, float16) no gradient passes. */
static bool cast_passes(const cs_op_call *c)
{
    return cs_dtype_is_float(c->in[0]->dtype) && cs_dtype_is_float(c->out[0]->dtype);
}

static cs_status cast_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    cs_tensor *gx = ad->gin[0];
    const cs_tensor *gy = ad->gout[0];
    if (!gx || !gy || !cast_passes(c))
        return CS_OK;
    int64_t n = cs_tensor_numel(gx);
    if (gx->dtype == gy->dtype) {
        add_into(gx->data, gy->data, gx->dtype, n);
    } else if (gx->dtype == CS_DT_FLOAT) { /* float32 <- float64 */
        float *d = gx->data;
        const double *g = gy->data;
        for (int64_t i = 0; i < n; i++)
            d[i] += (float)g[i];
    } else { /* float64 <- float32 */
        double *d = gx->data;
        const float *g = gy->data;
        for (int64_t i = 0; i < n; i++)
            d[i] += g[i];
    }
    return CS_OK;
}

static cs_status cast_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    cs_tensor *ty = ad->tout[0];
    if (!ty)
        return CS_OK;
    if (ad->tin[0] && cast_passes(c))
        cs_convert(ty->data, ty->dtype, ad->tin[0]->data, ad->tin[0]->dtype, cs_tensor_numel(ty));
    else /* integer source (or no tangent): the output does not move */
        zero_fill(ty);
    return CS_OK;
}

const cs_op_def cs_op_Cast = {
    .name = "Cast", .min_opset = 6, .flags = CS_OP_LINEAR, .infer = cast_infer,
    .forward = cast_forward, .vjp = cast_vjp, .jvp = cast_jvp,
};
