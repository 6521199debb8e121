/* BatchNormalization (inference) and LayerNormalization.
 *
 * BatchNormalization, per channel c (axis 1), with the stored running
 * statistics (DESIGN.md: inference semantics):
 *     Y = scale[c] * (X - mean[c]) / sqrt(var[c] + epsilon) + B[c]
 * computed as Y = a[c] X + b[c], a = scale / sqrt(var + eps), b = B - mean a,
 * with a and b in double.  Training mode (batch statistics, updated running
 * statistics) is not supported and is refused with CS_ERR_UNSUPPORTED: in
 * opset 6 when is_test = 0, in opsets 7 to 13 when the optional statistics
 * outputs are requested, from opset 14 when training_mode = 1.  Opsets 7
 * and 8's spatial = 0 (statistics per element) is refused too.  Parameters may
 * have any float type (opset 15 lets them differ from X).
 *
 * LayerNormalization (opset 17): with rows = X.shape[:axis] and the
 * normalised shape X.shape[axis:] of D elements,
 *     mu = mean(x_row), sigma2 = mean((x_row - mu)^2) (population variance),
 *     Y = (x - mu) / sqrt(sigma2 + epsilon) * Scale + B,
 * Scale and B broadcast (numpy rules, trailing-aligned) to the normalised
 * shape.  Optional outputs Mean = mu and InvStdDev = 1/sqrt(sigma2 + eps) have
 * shape X.shape[:axis] + [1] * (rank - axis) and the type named by stash_type
 * (float by default, also for a double X, as the ONNX spec's shape inference
 * says).  The statistics are computed in double whatever stash_type says,
 * which is at least as accurate as the float computation it asks for. */
#include <math.h>
#include <string.h>

#include "interp/op.h"

/* ---- BatchNormalization ---- */

static cs_status bn_infer(cs_op_call *c, cs_err *err)
{
    const cs_node *node = c->node;
    if (c->n_in != 5)
        return cs_op_fail(c, err, CS_ERR_FORMAT,
                          "expects 5 inputs (X, scale, B, mean, var), got %d", c->n_in);
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output Y is missing");
    for (int i = 0; i < 5; i++) {
        cs_status st = cs_op_need_float(c, i, err);
        if (st)
            return st;
    }
    bool extra_outputs = false;
    for (int k = 1; k < c->n_out; k++)
        extra_outputs = extra_outputs || c->out[k] != NULL;
    if (node->opset < 7 && cs_node_attr_int(node, "is_test", 0) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "is_test = 0 asks for training mode (batch statistics); curvscope "
                          "runs BatchNormalization with its running statistics only");
    if (cs_node_attr_int(node, "training_mode", 0) != 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "training_mode = 1 (batch statistics) is not supported; curvscope "
                          "runs BatchNormalization with its running statistics only");
    if (extra_outputs)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "the running / saved statistics outputs belong to training mode, "
                          "which is not supported");
    if (cs_node_attr_int(node, "spatial", 1) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "spatial = 0 (statistics per element) is not supported");

    const cs_tensor *x = c->in[0];
    char bx[96], bp[96];
    if (x->ndim < 2)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "X has shape %s; [N, C, ...] expected",
                          cs_shape_str(x, bx, sizeof bx));
    static const char *const names[] = {"X", "scale", "B", "input_mean", "input_var"};
    for (int i = 1; i < 5; i++) {
        const cs_tensor *p = c->in[i];
        if (p->ndim != 1 || p->dims[0] != x->dims[1])
            return cs_op_fail(c, err, CS_ERR_SHAPE, "%s has shape %s; X of shape %s needs [%lld]",
                              names[i], cs_shape_str(p, bp, sizeof bp),
                              cs_shape_str(x, bx, sizeof bx), (long long)x->dims[1]);
    }
    cs_tensor_set_shape(c->out[0], x->dtype, x->ndim, x->dims);
    c->scratch_bytes = 2 * (size_t)x->dims[1] * sizeof(double);
    return CS_OK;
}

/* x, y [N, C, S] (S = spatial size); a, b [C]. */
#define DEFINE_BN(T, SUF)                                                                       \
    static void bn_##SUF(int64_t n, int64_t n_chan, int64_t s, const double *a,                 \
                         const double *b, const T *x, T *y)                                     \
    {                                                                                           \
        for (int64_t i = 0; i < n; i++)                                                         \
            for (int64_t ch = 0; ch < n_chan; ch++) {                                           \
                const T *xp = x + (i * n_chan + ch) * s;                                        \
                T *yp = y + (i * n_chan + ch) * s;                                              \
                const double ac = a[ch], bc = b[ch];                                            \
                for (int64_t j = 0; j < s; j++)                                                 \
                    yp[j] = (T)(ac * xp[j] + bc);                                               \
            }                                                                                   \
    }

DEFINE_BN(float, f32)
DEFINE_BN(double, f64)

static cs_status bn_forward(cs_op_call *c, cs_err *err)
{
    (void)err; /* validated by bn_infer; nothing can fail here */
    const cs_tensor *x = c->in[0], *scale = c->in[1], *bias = c->in[2], *mean = c->in[3],
                    *var = c->in[4];
    double eps = cs_node_attr_float(c->node, "epsilon", 1e-5f);
    int64_t n_chan = x->dims[1];
    double *a = c->scratch;   /* [C] */
    double *b = a + n_chan;   /* [C] */
    for (int64_t ch = 0; ch < n_chan; ch++) {
        a[ch] = cs_tensor_get_f64(scale, ch) / sqrt(cs_tensor_get_f64(var, ch) + eps);
        b[ch] = cs_tensor_get_f64(bias, ch) - cs_tensor_get_f64(mean, ch) * a[ch];
    }
    int64_t n = x->dims[0], numel = cs_tensor_numel(x);
    int64_t s = n * n_chan > 0 ? numel / (n * n_chan) : 0;
    if (x->dtype == CS_DT_FLOAT)
        bn_f32(n, n_chan, s, a, b, x->data, c->out[0]->data);
    else
        bn_f64(n, n_chan, s, a, b, x->data, c->out[0]->data);
    return CS_OK;
}

const cs_op_def cs_op_BatchNormalization = {
    .name = "BatchNormalization",
    .min_opset = 6,
    .infer = bn_infer,
    .forward = bn_forward,
};

/* ---- LayerNormalization ---- */

/* Split of X at the normalised axis. */
typedef struct ln_shape {
    int axis;
    int64_t rows;     /* prod(X.shape[:axis]) */
    int64_t d;        /* prod(X.shape[axis:]) */
    cs_dtype stash;   /* dtype of Mean and InvStdDev */
} ln_shape;

/* Fails unless p broadcasts (trailing-aligned, dims 1 or equal) to
 * X.shape[axis:]. */
static cs_status ln_check_param(const cs_op_call *c, int i, const char *name, int axis,
                                cs_err *err)
{
    const cs_tensor *x = c->in[0], *p = c->in[i];
    cs_status st = cs_op_need_float(c, i, err);
    if (!st)
        st = cs_op_same_dtype(c, 0, i, err);
    if (st)
        return st;
    int nr = x->ndim - axis;
    bool fits = p->ndim <= nr;
    for (int k = 0; fits && k < p->ndim; k++) {
        int64_t pd = p->dims[p->ndim - 1 - k], xd = x->dims[x->ndim - 1 - k];
        fits = pd == 1 || pd == xd;
    }
    if (!fits) {
        char bx[96], bp[96];
        return cs_op_fail(c, err, CS_ERR_SHAPE,
                          "%s of shape %s does not broadcast to X.shape[%d:] of X %s", name,
                          cs_shape_str(p, bp, sizeof bp), axis, cs_shape_str(x, bx, sizeof bx));
    }
    return CS_OK;
}

static cs_status ln_shape_of(const cs_op_call *c, ln_shape *s, cs_err *err)
{
    if (c->n_in < 2 || c->n_in > 3)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 2 or 3 inputs, got %d", c->n_in);
    if (c->n_out < 1 || c->n_out > 3 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 to 3 outputs with Y present");
    cs_status st = cs_op_need_float(c, 0, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0];
    if (x->ndim < 1)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "X is a scalar");
    st = cs_op_axis(c, cs_node_attr_int(c->node, "axis", -1), x->ndim, &s->axis, err);
    if (st)
        return st;
    st = ln_check_param(c, 1, "Scale", s->axis, err);
    if (!st && c->n_in > 2 && c->in[2])
        st = ln_check_param(c, 2, "B", s->axis, err);
    if (st)
        return st;
    int64_t stash = cs_node_attr_int(c->node, "stash_type", CS_DT_FLOAT);
    if (stash != CS_DT_FLOAT && stash != CS_DT_DOUBLE)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "stash_type %s (float or double expected)",
                          cs_dtype_name((int)stash));
    s->stash = (cs_dtype)stash;
    s->rows = 1;
    s->d = 1;
    for (int k = 0; k < x->ndim; k++) {
        if (k < s->axis)
            s->rows *= x->dims[k];
        else
            s->d *= x->dims[k];
    }
    return CS_OK;
}

static cs_status ln_infer(cs_op_call *c, cs_err *err)
{
    ln_shape s;
    cs_status st = ln_shape_of(c, &s, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0];
    cs_tensor_set_shape(c->out[0], x->dtype, x->ndim, x->dims);
    int64_t dims[CS_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++)
        dims[k] = k < s.axis ? x->dims[k] : 1;
    for (int k = 1; k < c->n_out; k++)
        if (c->out[k])
            cs_tensor_set_shape(c->out[k], s.stash, x->ndim, dims);
    /* Scale and B expanded to the normalised shape [2, D], then the
     * statistics [2, rows], all double. */
    c->scratch_bytes = 2 * (size_t)(s.d + s.rows) * sizeof(double);
    return CS_OK;
}

/* dst[j] = p broadcast to X.shape[axis:] at flat index j (or fill when p is
 * NULL), walking the normalised index like an odometer. */
static void ln_expand(const cs_tensor *x, int axis, const cs_tensor *p, double fill, double *dst,
                      int64_t d)
{
    if (!p) {
        for (int64_t j = 0; j < d; j++)
            dst[j] = fill;
        return;
    }
    if (cs_tensor_numel(p) == d) { /* same shape up to leading ones */
        for (int64_t j = 0; j < d; j++)
            dst[j] = cs_tensor_get_f64(p, j);
        return;
    }
    int nr = x->ndim - axis;
    int64_t pstride[CS_MAX_DIMS], idx[CS_MAX_DIMS];
    /* Stride of p along each normalised axis; 0 where p broadcasts. */
    int64_t acc = 1;
    for (int k = nr - 1; k >= 0; k--) {
        int pk = p->ndim - (nr - k); /* p's axis aligned with normalised axis k */
        int64_t extent = pk >= 0 ? p->dims[pk] : 1;
        pstride[k] = extent == 1 ? 0 : acc;
        acc *= extent;
        idx[k] = 0;
    }
    int64_t off = 0;
    for (int64_t j = 0; j < d; j++) {
        dst[j] = cs_tensor_get_f64(p, off);
        for (int k = nr - 1; k >= 0; k--) { /* advance the odometer */
            off += pstride[k];
            if (++idx[k] < x->dims[axis + k])
                break;
            off -= pstride[k] * idx[k];
            idx[k] = 0;
        }
    }
}

/* x, y [rows, d]; scale, bias [d]; mean, inv_std [rows]. */
#define DEFINE_LN(T, SUF)                                                                       \
    static void ln_##SUF(int64_t rows, int64_t d, double eps, const T *x, const double *scale,  \
                         const double *bias, T *y, double *mean, double *inv_std)               \
    {                                                                                           \
        for (int64_t r = 0; r < rows; r++) {                                                    \
            const T *xr = x + r * d;                                                            \
            T *yr = y + r * d;                                                                  \
            double sum = 0, sq = 0;                                                             \
            for (int64_t j = 0; j < d; j++)                                                     \
                sum += xr[j];                                                                   \
            double mu = sum / (double)d;                                                        \
            for (int64_t j = 0; j < d; j++) {                                                   \
                double dev = xr[j] - mu;                                                        \
                sq += dev * dev;                                                                \
            }                                                                                   \
            double inv = 1.0 / sqrt(sq / (double)d + eps);                                      \
            for (int64_t j = 0; j < d; j++)                                                     \
                yr[j] = (T)((xr[j] - mu) * inv * scale[j] + bias[j]);                           \
            mean[r] = mu;                                                                       \
            inv_std[r] = inv;                                                                   \
        }                                                                                       \
    }

DEFINE_LN(float, f32)
DEFINE_LN(double, f64)

static cs_status ln_forward(cs_op_call *c, cs_err *err)
{
    ln_shape s;
    cs_status st = ln_shape_of(c, &s, err);
    if (st)
        return st;
    if (s.rows == 0 || s.d == 0)
        return CS_OK;
    const cs_tensor *x = c->in[0];
    const cs_tensor *bias = c->n_in > 2 ? c->in[2] : NULL;
    double *scale_d = c->scratch; /* [D] */
    double *bias_d = scale_d + s.d; /* [D] */
    ln_expand(x, s.axis, c->in[1], 1.0, scale_d, s.d);
    ln_expand(x, s.axis, bias, 0.0, bias_d, s.d);
    double *mean = bias_d + s.d;    /* [rows] */
    double *inv_std = mean + s.rows; /* [rows] */
    double eps = cs_node_attr_float(c->node, "epsilon", 1e-5f);
    if (x->dtype == CS_DT_FLOAT)
        ln_f32(s.rows, s.d, eps, x->data, scale_d, bias_d, c->out[0]->data, mean, inv_std);
    else
        ln_f64(s.rows, s.d, eps, x->data, scale_d, bias_d, c->out[0]->data, mean, inv_std);
    if (c->n_out > 1 && c->out[1])
        cs_convert(c->out[1]->data, c->out[1]->dtype, mean, CS_DT_DOUBLE, s.rows);
    if (c->n_out > 2 && c->out[2])
        cs_convert(c->out[2]->data, c->out[2]->dtype, inv_std, CS_DT_DOUBLE, s.rows);
    return CS_OK;
}

const cs_op_def cs_op_LayerNormalization = {
    .name = "LayerNormalization",
    .min_opset = 17,
    .infer = ln_infer,
    .forward = ln_forward,
};
