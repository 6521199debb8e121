/* Resize (opsets 10-19) and Upsample (7-9): nearest, linear and cubic
 * resampling of every axis whose scale is not 1.
 *
 * Each output coordinate x of an axis maps to x_in in the input by the
 * coordinate_transformation_mode (ONNX's formulas):
 *   half_pixel            (x + 0.5) / s - 0.5
 *   half_pixel_symmetric  c (1 - L_out / (s L_in)) + (x + 0.5) / s - 0.5, c = L_in / 2
 *   pytorch_half_pixel    L_out > 1 ? (x + 0.5) / s - 0.5 : 0
 *   align_corners         L_out > 1 ? x (L_in - 1) / (L_out - 1) : 0
 *   asymmetric            x / s
 *   tf_half_pixel_for_nn  (x + 0.5) / s
 *   tf_crop_and_resize    from the roi (start, end in [0, 1] of L_in - 1);
 *                         outside the input: extrapolation_value
 * with s the axis' scale (output / input extent when sizes are given) and
 * L_out = L_in s unrounded (tf_crop_and_resize: the output extent).
 * The mode then gives the taps of the output element along the axis:
 *   nearest  one tap, x_in rounded by nearest_mode (round_prefer_floor,
 *            round_prefer_ceil, floor, ceil), clamped to the axis
 *   linear   floor(x_in) and the next, weights 1 - r and r (r the fraction)
 *   cubic    floor(x_in) - 1 .. + 2 with Keys' weights for cubic_coeff_a
 *            (Keys 1981); exclude_outside drops taps outside the axis and
 *            renormalises
 * taps outside the axis read the edge element.  The output element is the
 * sum over the product of its axes' taps.  The op is linear in X (its
 * weights depend only on shapes and attributes), so
 *   vjp  gX[taps] += weight gy      jvp  ty = Resize(tX)
 * and roi, scales and sizes (read at prepare) get no gradient.  Upsample is
 * nearest (floor of x / s) or linear with asymmetric coordinates. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"

#define RS_MAX_TAPS 4

typedef enum rs_mode { RS_NEAREST, RS_LINEAR, RS_CUBIC } rs_mode;
typedef enum rs_coord {
    RC_HALF_PIXEL, RC_HALF_PIXEL_SYMMETRIC, RC_PYTORCH_HALF_PIXEL, RC_ALIGN_CORNERS, RC_ASYMMETRIC,
    RC_TF_HALF_PIXEL_FOR_NN, RC_TF_CROP_AND_RESIZE
} rs_coord;
typedef enum rs_nearest { RN_ROUND_PREFER_FLOOR, RN_ROUND_PREFER_CEIL, RN_FLOOR, RN_CEIL } rs_nearest;

typedef struct rs_plan {
    rs_mode mode;
    rs_coord coord;
    rs_nearest nearest;
    double cubic_a, extrapolation;
    bool exclude_outside;
    int rank;
    int64_t in[CS_MAX_DIMS], out[CS_MAX_DIMS];
    double scale[CS_MAX_DIMS], roi_start[CS_MAX_DIMS], roi_end[CS_MAX_DIMS];
} rs_plan;

static int pick(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* Float values of input i (scales, roi), known at prepare. */
static cs_status read_floats(const cs_op_call *c, int i, double *v, int64_t want, bool *present, cs_err *err)
{
    const cs_tensor *t = i < c->n_in ? c->in[i] : NULL;
    *present = t && cs_tensor_numel(t) > 0;
    if (!*present)
        return CS_OK;
    if (!t->data)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input %d must be a constant known before running", i);
    if (cs_tensor_numel(t) != want)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "input %d has %lld values for rank %lld", i,
                          (long long)cs_tensor_numel(t), (long long)(want));
    for (int64_t k = 0; k < want; k++)
        v[k] = cs_tensor_get_f64(t, k);
    return CS_OK;
}

static cs_status rs_parse(const cs_op_call *c, rs_plan *p, cs_err *err)
{
    memset(p, 0, sizeof *p);
    const cs_tensor *x = c->in[0];
    bool upsample = strcmp(c->node->op_type, "Upsample") == 0;
    int opset = c->node->opset;
    p->rank = x->ndim;
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    const char *m = cs_node_attr_string(c->node, "mode", "nearest");
    int mi = pick(m, modes, 3);
    if (upsample && strcmp(m, "bilinear") == 0)
        mi = RS_LINEAR;
    if (mi < 0 || (upsample && mi == RS_CUBIC))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "mode '%s'", m);
    p->mode = (rs_mode)mi;
    static const char *const coords[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                         "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                                         "tf_crop_and_resize"};
    const char *cm = upsample || opset < 11 ? "asymmetric" : cs_node_attr_string(c->node, "coordinate_transformation_mode", "half_pixel");
    int ci = pick(cm, coords, 7);
    if (ci < 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "coordinate_transformation_mode '%s'", cm);
    p->coord = (rs_coord)ci;
    static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    const char *nm = upsample || opset < 11 ? "floor" : cs_node_attr_string(c->node, "nearest_mode", "round_prefer_floor");
    int ni = pick(nm, nearests, 4);
    if (ni < 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "nearest_mode '%s'", nm);
    p->nearest = (rs_nearest)ni;
    p->cubic_a = cs_node_attr_float(c->node, "cubic_coeff_a", -0.75f);
    p->exclude_outside = cs_node_attr_int(c->node, "exclude_outside", 0) != 0;
    p->extrapolation = cs_node_attr_float(c->node, "extrapolation_value", 0.0f);
    if (cs_node_attr_int(c->node, "antialias", 0))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "antialias is not supported");
    int n_axes = 0;
    if (cs_node_attr_ints(c->node, "axes", &n_axes) && n_axes)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "the axes attribute is not supported");
    const char *policy = cs_node_attr_string(c->node, "keep_aspect_ratio_policy", "stretch");
    if (strcmp(policy, "stretch") != 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "keep_aspect_ratio_policy '%s'", policy);
    for (int d = 0; d < p->rank; d++) {
        p->in[d] = x->dims[d];
        p->scale[d] = 1;
        p->roi_start[d] = 0;
        p->roi_end[d] = 1;
    }
    /* where the scales are: Upsample-7 attribute, Upsample-9 / Resize-10
     * input 1, Resize-11 on input 2 (roi 1, sizes 3) */
    bool have_scales = false, have_roi = false;
    cs_status st = CS_OK;
    if (upsample && opset < 9) {
        int n = 0;
        const float *sc = cs_node_attr_floats(c->node, "scales", &n);
        if (!sc || n != p->rank)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "scales attribute has %d values for rank %d", n, p->rank);
        for (int d = 0; d < p->rank; d++)
            p->scale[d] = sc[d];
        have_scales = true;
    } else if (upsample || opset < 11) {
        st = read_floats(c, 1, p->scale, p->rank, &have_scales, err);
    } else {
        double roi[2 * CS_MAX_DIMS];
        if (!(st = read_floats(c, 1, roi, 2 * p->rank, &have_roi, err)) && have_roi)
            for (int d = 0; d < p->rank; d++)
                p->roi_start[d] = roi[d], p->roi_end[d] = roi[p->rank + d];
        if (!st)
            st = read_floats(c, 2, p->scale, p->rank, &have_scales, err);
        const cs_tensor *sz = c->n_in > 3 ? c->in[3] : NULL;
        if (!st && sz && cs_tensor_numel(sz) > 0) {
            if (have_scales)
                return cs_op_fail(c, err, CS_ERR_FORMAT, "both scales and sizes are given");
            if (!sz->data)
                return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "sizes must be a constant known before running");
            if (cs_tensor_numel(sz) != p->rank)
                return cs_op_fail(c, err, CS_ERR_SHAPE, "sizes has %lld values for rank %d",
                                  (long long)cs_tensor_numel(sz), p->rank);
            for (int d = 0; d < p->rank; d++) {
                p->out[d] = cs_tensor_get_i64(sz, d);
                if (p->out[d] < 0)
                    return cs_op_fail(c, err, CS_ERR_SHAPE, "negative size %lld", (long long)p->out[d]);
                p->scale[d] = p->in[d] ? (double)p->out[d] / (double)p->in[d] : 1;
            }
            return CS_OK;
        }
    }
    if (st)
        return st;
    if (!have_scales)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "neither scales nor sizes are given");
    for (int d = 0; d < p->rank; d++) {
        if (!(p->scale[d] > 0))
            return cs_op_fail(c, err, CS_ERR_FORMAT, "scale %g of axis %d is not positive", p->scale[d], d);
        double roi_len = p->coord == RC_TF_CROP_AND_RESIZE ? p->roi_end[d] - p->roi_start[d] : 1.0;
        p->out[d] = (int64_t)floor((double)p->in[d] * roi_len * p->scale[d]);
    }
    return CS_OK;
}

/* The input coordinate of output coordinate x along axis d; *outside
 * when tf_crop_and_resize lands outside the input. */
static double rs_source(const rs_plan *p, int d, int64_t x, bool *outside)
{
    /* the resized length in these formulas is L_in s before rounding down
     * (ONNX's reference; equal to the output extent when sizes are given) */
    double s = p->scale[d], Li = (double)p->in[d], Lo = Li * s, xi;
    *outside = false;
    switch (p->coord) {
    case RC_HALF_PIXEL: return (x + 0.5) / s - 0.5;
    case RC_HALF_PIXEL_SYMMETRIC: {
        double adj = Lo / (s * Li), center = Li / 2;
        return center * (1 - adj) + (x + 0.5) / s - 0.5;
    }
    case RC_PYTORCH_HALF_PIXEL: return Lo > 1 ? (x + 0.5) / s - 0.5 : 0;
    case RC_ALIGN_CORNERS: return Lo > 1 ? (double)x * (Li - 1) / (Lo - 1) : 0;
    case RC_ASYMMETRIC: return x / s;
    case RC_TF_HALF_PIXEL_FOR_NN: return (x + 0.5) / s;
    case RC_TF_CROP_AND_RESIZE:
        Lo = (double)p->out[d];
        xi = Lo > 1 ? p->roi_start[d] * (Li - 1) + (double)x * (p->roi_end[d] - p->roi_start[d]) * (Li - 1) / (Lo - 1)
                    : 0.5 * (p->roi_start[d] + p->roi_end[d]) * (Li - 1);
        *outside = xi < 0 || xi > Li - 1;
        return xi;
    }
    return 0;
}

static int64_t clamp_index(int64_t i, int64_t n)
{
    return i < 0 ? 0 : i >= n ? n - 1 : i;
}

/* Taps (input index, weight) of output coordinate x along axis d; returns
 * their count, 0 when the element takes the extrapolation value. */
static int rs_taps(const rs_plan *p, int d, int64_t x, int64_t *idx, double *w)
{
    int64_t n = p->in[d];
    if (p->in[d] == p->out[d] && p->scale[d] == 1 && p->coord != RC_TF_CROP_AND_RESIZE) {
        idx[0] = x, w[0] = 1; /* an axis left alone */
        return 1;
    }
    bool outside;
    double xi = rs_source(p, d, x, &outside);
    if (outside)
        return 0;
    if (p->mode == RS_NEAREST) {
        double f = floor(xi), r = xi - f;
        int64_t i;
        switch (p->nearest) {
        case RN_ROUND_PREFER_FLOOR: i = (int64_t)(r <= 0.5 ? f : f + 1); break;
        case RN_ROUND_PREFER_CEIL: i = (int64_t)(r < 0.5 ? f : f + 1); break;
        case RN_FLOOR: i = (int64_t)f; break;
        default: i = (int64_t)ceil(xi); break;
        }
        idx[0] = clamp_index(i, n), w[0] = 1;
        return 1;
    }
    double f = floor(xi), r = xi - f;
    int64_t i0 = (int64_t)f;
    if (p->mode == RS_LINEAR) {
        idx[0] = clamp_index(i0, n), w[0] = 1 - r;
        idx[1] = clamp_index(i0 + 1, n), w[1] = r;
        return 2;
    }
    /* Keys' cubic convolution weights for taps at distances 1 + r, r,
     * 1 - r, 2 - r */
    double A = p->cubic_a, t[4] = {1 + r, r, 1 - r, 2 - r}, sum = 0;
    for (int k = 0; k < 4; k++) {
        double a = t[k];
        w[k] = a <= 1 ? ((A + 2) * a - (A + 3)) * a * a + 1 : ((A * a - 5 * A) * a + 8 * A) * a - 4 * A;
        int64_t j = i0 - 1 + k;
        if (p->exclude_outside && (j < 0 || j >= n))
            w[k] = 0;
        sum += w[k];
        idx[k] = clamp_index(j, n);
    }
    if (p->exclude_outside && sum != 0)
        for (int k = 0; k < 4; k++)
            w[k] /= sum;
    return 4;
}

static cs_status rs_infer(cs_op_call *c, cs_err *err)
{
    if (c->n_in < 1 || !c->in[0] || c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects an input and an output");
    if (cs_dtype_size(c->in[0]->dtype) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s", cs_dtype_name(c->in[0]->dtype));
    rs_plan p;
    cs_status st = rs_parse(c, &p, err);
    if (st)
        return st;
    if (p.mode != RS_NEAREST && !cs_dtype_is_float(c->in[0]->dtype))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "%s resampling of %s", p.mode == RS_LINEAR ? "linear" : "cubic",
                          cs_dtype_name(c->in[0]->dtype));
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, p.rank, p.out);
    return CS_OK;
}

typedef enum rs_rule { RR_FORWARD, RR_VJP } rs_rule;

/* forward: y = resample(x); vjp: x (the gradient buffer) += adjoint of y
 * (the output gradient).  Both walk the output once. */
static void rs_walk(const rs_plan *p, rs_rule rule, const cs_tensor *src, cs_tensor *dst)
{
    int r = p->rank;
    int64_t n_out = 1, in_stride[CS_MAX_DIMS];
    for (int d = 0; d < r; d++)
        n_out *= p->out[d];
    int64_t step = 1;
    for (int d = r - 1; d >= 0; d--)
        in_stride[d] = step, step *= p->in[d];
    size_t es = cs_dtype_size(src->dtype);
    bool is_float = cs_dtype_is_float(src->dtype);
    int64_t pos[CS_MAX_DIMS] = {0};
    for (int64_t o = 0; o < n_out; o++) {
        int64_t tidx[CS_MAX_DIMS][RS_MAX_TAPS];
        double tw[CS_MAX_DIMS][RS_MAX_TAPS];
        int nt[CS_MAX_DIMS];
        bool extrapolate = false;
        for (int d = 0; d < r; d++) {
            nt[d] = rs_taps(p, d, pos[d], tidx[d], tw[d]);
            extrapolate = extrapolate || nt[d] == 0;
        }
        if (rule == RR_FORWARD && (!is_float || p->mode == RS_NEAREST) && !extrapolate) {
            /* one tap per axis: a copy, exact for every type */
            int64_t at = 0;
            for (int d = 0; d < r; d++)
                at += tidx[d][0] * in_stride[d];
            memcpy((char *)dst->data + (size_t)o * es, (const char *)src->data + (size_t)at * es, es);
        } else if (extrapolate) {
            if (rule == RR_FORWARD)
                cs_tensor_set_f64(dst, o, p->extrapolation);
        } else {
            /* the product of the axes' taps */
            int k[CS_MAX_DIMS] = {0};
            double sum = 0, g = rule == RR_VJP ? cs_tensor_get_f64(src, o) : 0;
            for (;;) {
                double w = 1;
                int64_t at = 0;
                for (int d = 0; d < r; d++)
                    w *= tw[d][k[d]], at += tidx[d][k[d]] * in_stride[d];
                if (rule == RR_FORWARD)
                    sum += w * (src->dtype == CS_DT_DOUBLE ? ((const double *)src->data)[at]
                                                           : ((const float *)src->data)[at]);
                else if (w != 0 && g != 0) {
                    if (dst->dtype == CS_DT_DOUBLE)
                        ((double *)dst->data)[at] += w * g;
                    else
                        ((float *)dst->data)[at] += (float)(w * g);
                }
                int d = r - 1;
                for (; d >= 0; d--) {
                    if (++k[d] < nt[d])
                        break;
                    k[d] = 0;
                }
                if (d < 0)
                    break;
            }
            if (rule == RR_FORWARD)
                cs_tensor_set_f64(dst, o, sum);
        }
        for (int d = r - 1; d >= 0; d--) {
            if (++pos[d] < p->out[d])
                break;
            pos[d] = 0;
        }
    }
}

static cs_status rs_forward(cs_op_call *c, cs_err *err)
{
    rs_plan p;
    cs_status st = rs_parse(c, &p, err);
    if (!st)
        rs_walk(&p, RR_FORWARD, c->in[0], c->out[0]);
    return st;
}

static cs_status rs_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0])
        return CS_OK;
    rs_plan p;
    cs_status st = rs_parse(c, &p, err);
    if (!st)
        rs_walk(&p, RR_VJP, a->gout[0], a->gin[0]);
    return st;
}

static cs_status rs_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (cs_op_jvp_done_early(a, 0))
        return CS_OK;
    rs_plan p;
    cs_status st = rs_parse(c, &p, err);
    if (!st) {
        p.extrapolation = 0; /* a constant: its tangent is zero */
        rs_walk(&p, RR_FORWARD, a->tin[0], a->tout[0]);
    }
    return st;
}

const cs_op_def cs_op_Resize = {.name = "Resize", .min_opset = 10, .flags = CS_OP_LINEAR, .infer = rs_infer,
                                .forward = rs_forward, .vjp = rs_vjp, .jvp = rs_jvp};
const cs_op_def cs_op_Upsample = {.name = "Upsample", .min_opset = 7, .flags = CS_OP_LINEAR, .infer = rs_infer,
                                  .forward = rs_forward, .vjp = rs_vjp, .jvp = rs_jvp};
