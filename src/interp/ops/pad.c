/* Pad: modes constant, reflect, edge (opset 2 on) and wrap (opset 19).
 *
 * Opsets 2-10 take pads and value as attributes; from opset 11 pads is
 * input 1 and constant_value the optional scalar input 2; from opset 18 the
 * optional input 3 names the axes that pads covers (the others get 0).
 * pads lists every begin first, then every end: [b_0, .., b_{r-1}, e_0, ..,
 * e_{r-1}].  The output shape depends on pads, so pads (and axes) must be
 * known at prepare time, like Reshape's shape.
 *
 * Negative pads crop: along each axis, -b elements (b < 0) are removed at
 * the start and -e at the end first, then the positive pads are added to
 * what is kept, so reflect / edge / wrap read the cropped extent n'.  Along
 * one axis, output index o reads kept index i = o - max(b, 0), mapped when
 * outside [0, n') by
 *   reflect  i mod 2(n'-1), then i -> 2(n'-1) - i past the end (the edge is
 *            not repeated, numpy's "reflect"; n' = 1 reads the one element),
 *   edge     clamp to [0, n'-1],
 *   wrap     i mod n',
 *   constant no element: the output is the constant value.
 * The output element is X at the mapped indices along every axis.
 *
 * Derivatives: Y is linear in (X, constant_value) jointly (CS_OP_LINEAR).
 * The vjp adds each gY element into the X element it was read from, so
 * reflect / edge / wrap accumulate several output gradients into one source
 * position, and sums gY over the constant positions into the constant
 * value's gradient; the jvp pads tX with the constant value's tangent. */
#include <stdbool.h>
#include <string.h>

#include "interp/ops/shape_common.h"

typedef enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP } pad_mode;

/* Per axis: where the kept (uncropped) part of X starts, its extent, the
 * positive pad before it, and the output extent. */
typedef struct pad_geom {
    pad_mode mode;
    int rank;
    int64_t first[CS_MAX_DIMS];
    int64_t kept[CS_MAX_DIMS];
    int64_t before[CS_MAX_DIMS];
    int64_t out[CS_MAX_DIMS];
} pad_geom;

/* Index of input i when present (omitted optional inputs are NULL). */
static const cs_tensor *opt_in(const cs_op_call *c, int i)
{
    return i < c->n_in ? c->in[i] : NULL;
}

static cs_status pad_read_mode(const cs_op_call *c, pad_mode *mode, cs_err *err)
{
    const char *m = cs_node_attr_string(c->node, "mode", "constant");
    if (strcmp(m, "constant") == 0)
        *mode = PAD_CONSTANT;
    else if (strcmp(m, "reflect") == 0)
        *mode = PAD_REFLECT;
    else if (strcmp(m, "edge") == 0)
        *mode = PAD_EDGE;
    else if (strcmp(m, "wrap") == 0 && c->node->opset >= 19)
        *mode = PAD_WRAP;
    else
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "mode '%s' is not supported at opset %d", m,
                          c->node->opset);
    return CS_OK;
}

/* pads as [begin of every axis, end of every axis] over all rank axes. */
static cs_status pad_read_pads(const cs_op_call *c, int64_t *begin, int64_t *end, cs_err *err)
{
    int rank = c->in[0]->ndim;
    int64_t vals[2 * CS_MAX_DIMS];
    int n = 0;
    cs_status st;
    if (c->node->opset >= 11) {
        if (c->n_in < 2 || !c->in[1])
            return cs_op_fail(c, err, CS_ERR_FORMAT, "input pads is missing");
        if ((st = read_int_input(c, 1, "pads", vals, 2 * CS_MAX_DIMS, &n, err)))
            return st;
    } else {
        const int64_t *p = cs_node_attr_ints(c->node, "pads", &n);
        if (!p)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "attribute pads is required");
        if (n > 2 * CS_MAX_DIMS)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "pads has %d entries for rank %d", n, rank);
        memcpy(vals, p, (size_t)n * sizeof *vals);
    }
    int axes[CS_MAX_DIMS], n_axes = rank;
    for (int a = 0; a < rank; a++)
        axes[a] = a;
    const cs_tensor *axes_in = c->node->opset >= 18 ? opt_in(c, 3) : NULL;
    if (axes_in) {
        int64_t given[CS_MAX_DIMS];
        if ((st = read_int_input(c, 3, "axes", given, CS_MAX_DIMS, &n_axes, err)))
            return st;
        bool seen[CS_MAX_DIMS] = {false};
        for (int k = 0; k < n_axes; k++) {
            if ((st = cs_op_axis(c, given[k], rank, &axes[k], err)))
                return st;
            if (seen[axes[k]])
                return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %lld is repeated", (long long)given[k]);
            seen[axes[k]] = true;
        }
    }
    if (n != 2 * n_axes)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "pads has %d entries for %d axes (2 per axis)", n,
                          n_axes);
    for (int a = 0; a < rank; a++)
        begin[a] = end[a] = 0;
    for (int k = 0; k < n_axes; k++) {
        begin[axes[k]] = vals[k];
        end[axes[k]] = vals[n_axes + k];
    }
    return CS_OK;
}

static cs_status pad_read(const cs_op_call *c, pad_geom *g, cs_err *err)
{
    int64_t begin[CS_MAX_DIMS], end[CS_MAX_DIMS];
    cs_status st = pad_read_mode(c, &g->mode, err);
    if (st || (st = pad_read_pads(c, begin, end, err)))
        return st;
    const cs_tensor *x = c->in[0];
    g->rank = x->ndim;
    for (int a = 0; a < g->rank; a++) {
        int64_t crop_b = begin[a] < 0 ? -begin[a] : 0, crop_e = end[a] < 0 ? -end[a] : 0;
        g->first[a] = crop_b;
        g->kept[a] = x->dims[a] - crop_b - crop_e;
        g->before[a] = begin[a] > 0 ? begin[a] : 0;
        if (g->kept[a] < 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "pads %lld, %lld crop more than axis %d holds (%lld)",
                              (long long)begin[a], (long long)end[a], a, (long long)x->dims[a]);
        g->out[a] = g->kept[a] + g->before[a] + (end[a] > 0 ? end[a] : 0);
        if (g->mode != PAD_CONSTANT && g->kept[a] == 0 && g->out[a] > 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %d keeps no element to pad from", a);
    }
    return CS_OK;
}

/* Index into X along axis a read by output index o, or -1 where constant
 * mode writes the constant (the mapping of the header comment). */
static int64_t pad_source(const pad_geom *g, int a, int64_t o)
{
    int64_t n = g->kept[a], i = o - g->before[a];
    if (i < 0 || i >= n) {
        switch (g->mode) {
        case PAD_CONSTANT:
            return -1;
        case PAD_EDGE:
            i = i < 0 ? 0 : n - 1;
            break;
        case PAD_WRAP:
            i %= n;
            if (i < 0)
                i += n;
            break;
        case PAD_REFLECT: {
            int64_t period = 2 * (n - 1);
            if (period == 0) {
                i = 0;
                break;
            }
            i %= period;
            if (i < 0)
                i += period;
            if (i >= n)
                i = period - i;
            break;
        }
        }
    }
    return g->first[a] + i;
}

/* Forward direction (adjoint false): Y = pad(X) with fill at the constant
 * positions; X NULL reads zeros, fill NULL writes zeros.  Adjoint (float
 * types only): X += each Y element at its source, and *fill_grad += the sum
 * of Y over the constant positions; X and fill_grad may be NULL. */
static void pad_move(const pad_geom *g, cs_tensor *y, cs_tensor *x, const void *fill, bool adjoint,
                     double *fill_grad)
{
    int64_t n_y = cs_tensor_numel(y);
    cs_dtype dt = y->dtype;
    size_t esize = cs_dtype_size(dt);
    char *yd = y->data, *xd = x ? x->data : NULL;
    if (n_y == 0)
        return;
    int rank = g->rank, last = rank - 1;
    int64_t x_stride[CS_MAX_DIMS], idx[CS_MAX_DIMS] = {0}, s = 1;
    for (int a = rank - 1; a >= 0; a--) {
        x_stride[a] = s;
        s *= x ? x->dims[a] : 0;
    }
    int64_t row = rank ? g->out[last] : 1, n_rows = n_y / row;
    double fill_sum = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        /* offset of the row's source line; -1 when an outer axis is in the
         * constant padding (the whole row is the constant) */
        int64_t base = 0;
        for (int a = 0; a < last && base >= 0; a++) {
            int64_t src = pad_source(g, a, idx[a]);
            base = src < 0 ? -1 : base + src * x_stride[a];
        }
        for (int64_t j = 0; j < row; j++) {
            int64_t src = base < 0 ? -1 : rank ? pad_source(g, last, j) : 0;
            int64_t yi = r * row + j, xi = src < 0 ? -1 : base + src;
            if (!adjoint) {
                char *dst = yd + (size_t)yi * esize;
                const void *from = xi >= 0 ? (xd ? xd + (size_t)xi * esize : NULL) : fill;
                if (from)
                    memcpy(dst, from, esize);
                else
                    memset(dst, 0, esize);
            } else {
                double gy = dt == CS_DT_FLOAT ? ((const float *)yd)[yi] : ((const double *)yd)[yi];
                if (xi < 0)
                    fill_sum += gy;
                else if (xd && dt == CS_DT_FLOAT)
                    ((float *)xd)[xi] += (float)gy;
                else if (xd)
                    ((double *)xd)[xi] += gy;
            }
        }
        for (int a = last - 1; a >= 0; a--) {
            if (++idx[a] < g->out[a])
                break;
            idx[a] = 0;
        }
    }
    if (fill_grad)
        *fill_grad += fill_sum;
}

/* The constant_value input (opset 11 on), or NULL. */
static const cs_tensor *pad_value_input(const cs_op_call *c)
{
    return c->node->opset >= 11 ? opt_in(c, 2) : NULL;
}

static cs_status pad_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, c->node->opset >= 18 ? 4 : c->node->opset >= 11 ? 3 : 1, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    const cs_tensor *v = pad_value_input(c);
    if (v && (v->dtype != c->in[0]->dtype || cs_tensor_numel(v) != 1 || v->ndim > 1))
        return cs_op_fail(c, err, CS_ERR_SHAPE, "constant_value must be one %s element",
                          cs_dtype_name(c->in[0]->dtype));
    pad_geom g;
    if ((st = pad_read(c, &g, err)))
        return st;
    return set_reshaped(c, g.rank, g.out, err);
}

static cs_status pad_forward(cs_op_call *c, cs_err *err)
{
    pad_geom g;
    cs_status st = pad_read(c, &g, err);
    if (st)
        return st;
    /* the constant as one element of the data type: input 2, or the value
     * attribute (opsets 2-10, float) converted */
    unsigned char fill[16] = {0};
    const cs_tensor *v = pad_value_input(c);
    if (v) {
        memcpy(fill, v->data, cs_dtype_size(v->dtype));
    } else if (c->node->opset < 11) {
        double value = cs_node_attr_float(c->node, "value", 0.0f);
        cs_convert(fill, c->in[0]->dtype, &value, CS_DT_DOUBLE, 1);
    }
    pad_move(&g, c->out[0], c->in[0], fill, false, NULL);
    return CS_OK;
}

/* gX += the gY elements read from each X position; g_value += the sum of
 * gY over the constant positions.  pads and axes are integers: no gradient. */
static cs_status pad_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    cs_tensor *gv = pad_value_input(c) ? ad->gin[2] : NULL;
    if (!ad->gout[0] || (!ad->gin[0] && !gv))
        return CS_OK;
    pad_geom g;
    cs_status st = pad_read(c, &g, err);
    if (st)
        return st;
    double fill_grad = 0;
    pad_move(&g, ad->gout[0], ad->gin[0], NULL, true, &fill_grad);
    if (gv)
        cs_tensor_set_f64(gv, 0, cs_tensor_get_f64(gv, 0) + fill_grad);
    return CS_OK;
}

/* tY = pad(tX) with the constant value's tangent at the constant positions. */
static cs_status pad_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->tout[0])
        return CS_OK;
    pad_geom g;
    cs_status st = pad_read(c, &g, err);
    if (st)
        return st;
    const cs_tensor *tv = pad_value_input(c) ? ad->tin[2] : NULL;
    pad_move(&g, ad->tout[0], ad->tin[0], tv ? tv->data : NULL, false, NULL);
    return CS_OK;
}

const cs_op_def cs_op_Pad = {
    .name = "Pad", .min_opset = 2, .flags = CS_OP_LINEAR, .infer = pad_infer,
    .forward = pad_forward, .vjp = pad_vjp, .jvp = pad_jvp,
};
