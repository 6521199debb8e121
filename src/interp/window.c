/* Sliding-window geometry from a node's attributes (interp/window.h). */
#include "interp/window.h"

#include <string.h>

/* ---- geometry ---- */

typedef enum { PAD_NOTSET, PAD_VALID, PAD_SAME_UPPER, PAD_SAME_LOWER } pad_mode;

/* The node's auto_pad attribute (absent or empty: NOTSET). */
static cs_status pad_mode_of(const cs_op_call *c, pad_mode *mode, cs_err *err)
{
    const char *auto_pad = cs_node_attr_string(c->node, "auto_pad", "NOTSET");
    if (strcmp(auto_pad, "NOTSET") == 0 || auto_pad[0] == '\0')
        *mode = PAD_NOTSET;
    else if (strcmp(auto_pad, "VALID") == 0)
        *mode = PAD_VALID;
    else if (strcmp(auto_pad, "SAME_UPPER") == 0)
        *mode = PAD_SAME_UPPER;
    else if (strcmp(auto_pad, "SAME_LOWER") == 0)
        *mode = PAD_SAME_LOWER;
    else
        return cs_op_fail(c, err, CS_ERR_FORMAT, "unknown auto_pad '%s'", auto_pad);
    return CS_OK;
}

/* The strides, pads and dilations lists (NULL when absent) with their
 * lengths checked against rank, and auto_pad. */
static cs_status window_attrs(const cs_op_call *c, int rank, const int64_t **strides,
                              const int64_t **pads, const int64_t **dil, pad_mode *mode,
                              cs_err *err)
{
    if (rank < 1 || rank > CS_CONV_AXES)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "%d spatial axes (1 to %d are supported)", rank, CS_CONV_AXES);
    int n_strides, n_pads, n_dil;
    *strides = cs_node_attr_ints(c->node, "strides", &n_strides);
    *pads = cs_node_attr_ints(c->node, "pads", &n_pads);
    *dil = cs_node_attr_ints(c->node, "dilations", &n_dil);
    if (*strides && n_strides != rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "strides has %d values for %d spatial axes",
                          n_strides, rank);
    if (*dil && n_dil != rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "dilations has %d values for %d spatial axes",
                          n_dil, rank);
    if (*pads && n_pads != 2 * rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "pads has %d values for %d spatial axes",
                          n_pads, rank);
    return pad_mode_of(c, mode, err);
}

/* in_size, out_size and kernel_size from the extents. */
static cs_status geom_sizes(const cs_op_call *c, cs_conv_geom *g, cs_err *err)
{
    long long in_size = 1, out_size = 1, k_size = 1;
    for (int i = 0; i < CS_CONV_AXES; i++) {
        if (cs_mul_overflow_i64(in_size, g->in[i], &in_size) ||
            cs_mul_overflow_i64(out_size, g->out[i], &out_size) ||
            cs_mul_overflow_i64(k_size, g->kernel[i], &k_size))
            return cs_op_fail(c, err, CS_ERR_SHAPE, "window geometry overflows");
    }
    g->in_size = in_size;
    g->out_size = out_size;
    g->kernel_size = k_size;
    return CS_OK;
}

cs_status cs_window_geom(const cs_op_call *c, int rank, const int64_t *in, const int64_t *kernel,
                         bool ceil_mode, cs_conv_geom *g, cs_err *err)
{
    const int64_t *strides = NULL, *pads = NULL, *dil = NULL;
    pad_mode mode = PAD_NOTSET;
    cs_status st = window_attrs(c, rank, &strides, &pads, &dil, &mode, err);
    if (st)
        return st;

    memset(g, 0, sizeof *g);
    g->spatial_rank = rank;
    g->channels = 1;
    int lead = CS_CONV_AXES - rank; /* normalised axes added in front */
    for (int i = 0; i < lead; i++) {
        g->in[i] = g->out[i] = g->kernel[i] = g->stride[i] = g->dilation[i] = 1;
        g->pad_begin[i] = g->pad_end[i] = 0;
    }
    for (int i = 0; i < rank; i++) {
        int64_t n_in = in[i], k = kernel[i];
        int64_t s = strides ? strides[i] : 1;
        int64_t d = dil ? dil[i] : 1;
        if (n_in < 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "spatial axis %d has extent %lld", i,
                              (long long)n_in);
        if (k < 1 || s < 1 || d < 1)
            return cs_op_fail(c, err, CS_ERR_FORMAT,
                              "axis %d: kernel %lld, stride %lld, dilation %lld (all must be >= 1)",
                              i, (long long)k, (long long)s, (long long)d);
        long long ext_ll;
        if (cs_mul_overflow_i64(k - 1, d, &ext_ll) || ext_ll > INT64_MAX / 4)
            return cs_op_fail(c, err, CS_ERR_FORMAT, "axis %d: kernel extent overflows", i);
        int64_t ext = (int64_t)ext_ll + 1; /* (k-1)d + 1: span of one window */
        int64_t pb = 0, pe = 0, n_out;
        switch (mode) {
        case PAD_NOTSET: {
            pb = pads ? pads[i] : 0;
            pe = pads ? pads[i + rank] : 0;
            if (pb < 0 || pe < 0 || pb > INT64_MAX / 4 || pe > INT64_MAX / 4)
                return cs_op_fail(c, err, CS_ERR_FORMAT, "axis %d: pads %lld, %lld out of range",
                                  i, (long long)pb, (long long)pe);
            int64_t span = n_in + pb + pe - ext;
            if (span < 0)
                return cs_op_fail(c, err, CS_ERR_SHAPE,
                                  "axis %d: window of extent %lld is larger than the padded "
                                  "input (%lld)", i, (long long)ext, (long long)(n_in + pb + pe));
            if (ceil_mode) {
                n_out = cs_ceil_div(span, s) + 1;
                /* A last window that starts in the end padding is dropped
                 * (PyTorch, onnxruntime): it would see no input. */
                if ((n_out - 1) * s >= n_in + pb)
                    n_out--;
            } else {
                n_out = span / s + 1;
            }
            break;
        }
        case PAD_VALID:
            if (n_in < ext)
                return cs_op_fail(c, err, CS_ERR_SHAPE,
                                  "axis %d: window of extent %lld is larger than the input (%lld)",
                                  i, (long long)ext, (long long)n_in);
            n_out = (n_in - ext) / s + 1;
            break;
        default: { /* SAME_UPPER, SAME_LOWER */
            n_out = cs_ceil_div(n_in, s);
            int64_t total = n_out > 0 ? (n_out - 1) * s + ext - n_in : 0;
            if (total < 0)
                total = 0;
            if (mode == PAD_SAME_UPPER) {
                pb = total / 2;
                pe = total - pb;
            } else {
                pe = total / 2;
                pb = total - pe;
            }
            break;
        }
        }
        int j = lead + i;
        g->in[j] = n_in;
        g->out[j] = n_out;
        g->kernel[j] = k;
        g->stride[j] = s;
        g->dilation[j] = d;
        g->pad_begin[j] = pb;
        g->pad_end[j] = pe;
    }
    return geom_sizes(c, g, err);
}

/* kernel_shape, when given, must be W's spatial extents. */
static cs_status check_kernel_shape(const cs_op_call *c, const cs_tensor *w, int rank, cs_err *err)
{
    char bw[96];
    int n_ks;
    const int64_t *ks = cs_node_attr_ints(c->node, "kernel_shape", &n_ks);
    if (!ks)
        return CS_OK;
    if (n_ks != rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "kernel_shape has %d values for %d spatial axes",
                          n_ks, rank);
    for (int i = 0; i < rank; i++)
        if (ks[i] != w->dims[2 + i])
            return cs_op_fail(c, err, CS_ERR_SHAPE, "kernel_shape does not match W of shape %s",
                              cs_shape_str(w, bw, sizeof bw));
    return CS_OK;
}

/* X [N, C, 1 to 3 spatial axes] and W of the same rank; the group count. */
static cs_status check_ranks_group(const cs_op_call *c, const cs_tensor *x, const cs_tensor *w,
                                   int64_t *group, cs_err *err)
{
    char bx[96], bw[96];
    if (x->ndim < 3 || x->ndim > 2 + CS_CONV_AXES)
        return cs_op_fail(c, err, x->ndim < 3 ? CS_ERR_SHAPE : CS_ERR_UNSUPPORTED,
                          "X has shape %s; [N, C, D1 (, D2 (, D3))] expected",
                          cs_shape_str(x, bx, sizeof bx));
    if (w->ndim != x->ndim)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "W of shape %s does not match X of shape %s",
                          cs_shape_str(w, bw, sizeof bw), cs_shape_str(x, bx, sizeof bx));
    *group = cs_node_attr_int(c->node, "group", 1);
    if (*group < 1)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "group is %lld", (long long)*group);
    return CS_OK;
}

/* Checks X [N, C, *spatial], W [M, C/group, *kernel] and fills the geometry. */
static cs_status conv_geometry_call(const cs_op_call *c, const cs_tensor *x, const cs_tensor *w,
                                    cs_conv_geom *g, int64_t *group_out, cs_err *err)
{
    char bw[96];
    int64_t group = 1;
    cs_status st = check_ranks_group(c, x, w, &group, err);
    if (st)
        return st;
    int rank = x->ndim - 2;
    int64_t n_chan = x->dims[1], m = w->dims[0], cg = w->dims[1];
    if (cg < 1 || n_chan != cg * group)
        return cs_op_fail(c, err, CS_ERR_SHAPE,
                          "X has %lld channels but W of shape %s with group %lld expects %lld",
                          (long long)n_chan, cs_shape_str(w, bw, sizeof bw), (long long)group,
                          (long long)(cg * group));
    if (m < 1 || m % group != 0)
        return cs_op_fail(c, err, CS_ERR_SHAPE,
                          "W has %lld output channels, not a positive multiple of group %lld",
                          (long long)m, (long long)group);
    st = check_kernel_shape(c, w, rank, err);
    if (!st)
        st = cs_window_geom(c, rank, x->dims + 2, w->dims + 2, false, g, err);
    if (st)
        return st;
    g->channels = cg;
    *group_out = group;
    return CS_OK;
}

cs_status cs_conv_geometry(const cs_node *node, const cs_tensor *x, const cs_tensor *w,
                           cs_conv_geom *g, int64_t *group, cs_err *err)
{
    cs_op_call c = {.node = node};
    return conv_geometry_call(&c, x, w, g, group, err);
}

/* ---- ConvTranspose ---- */

/* Checks X [N, C, *spatial], W [C, M/group, *kernel] and fills the
 * geometry of the Conv whose input gradient the node is (window.h). */
static cs_status conv_transpose_geometry_call(const cs_op_call *c, const cs_tensor *x,
                                              const cs_tensor *w, cs_conv_geom *g,
                                              int64_t *group_out, cs_err *err)
{
    char bw[96];
    int64_t group = 1;
    cs_status st = check_ranks_group(c, x, w, &group, err);
    if (st)
        return st;
    int rank = x->ndim - 2;
    if (x->dims[1] != w->dims[0] || w->dims[0] % group != 0 || w->dims[1] < 1)
        return cs_op_fail(c, err, CS_ERR_SHAPE,
                          "X has %lld channels but W has shape %s (group %lld): [C, M/group, "
                          "kernel...] with C a multiple of group expected",
                          (long long)x->dims[1], cs_shape_str(w, bw, sizeof bw), (long long)group);
    const int64_t *strides = NULL, *pads = NULL, *dil = NULL;
    pad_mode mode = PAD_NOTSET;
    st = check_kernel_shape(c, w, rank, err);
    if (!st)
        st = window_attrs(c, rank, &strides, &pads, &dil, &mode, err);
    if (st)
        return st;
    int n_op, n_os;
    const int64_t *opad = cs_node_attr_ints(c->node, "output_padding", &n_op);
    const int64_t *oshape = cs_node_attr_ints(c->node, "output_shape", &n_os);
    if (opad && n_op != rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output_padding has %d values for %d spatial axes",
                          n_op, rank);
    /* output_shape names the spatial extents; [N, C, spatial...] is read too */
    if (oshape && n_os == rank + 2)
        oshape += 2;
    else if (oshape && n_os != rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output_shape has %d values for %d spatial axes",
                          n_os, rank);

    memset(g, 0, sizeof *g);
    g->spatial_rank = rank;
    g->channels = w->dims[1];
    int lead = CS_CONV_AXES - rank;
    for (int i = 0; i < lead; i++)
        g->in[i] = g->out[i] = g->kernel[i] = g->stride[i] = g->dilation[i] = 1;
    for (int i = 0; i < rank; i++) {
        int64_t n_x = x->dims[2 + i], k = w->dims[2 + i];
        int64_t s = strides ? strides[i] : 1, d = dil ? dil[i] : 1, op = opad ? opad[i] : 0;
        if (n_x < 0 || k < 1 || s < 1 || d < 1 || op < 0 || op > INT64_MAX / 8 ||
            n_x > INT64_MAX / 8 / s || k > INT64_MAX / 8 / d)
            return cs_op_fail(c, err, CS_ERR_FORMAT,
                              "axis %d: input %lld, kernel %lld, stride %lld, dilation %lld, "
                              "output_padding %lld out of range",
                              i, (long long)n_x, (long long)k, (long long)s, (long long)d,
                              (long long)op);
        /* the extent with no padding removed: s (in - 1) + op + (k - 1) d + 1 */
        int64_t full = n_x > 0 ? s * (n_x - 1) + op + (k - 1) * d + 1 : 0;
        int64_t pb = 0, pe = 0, n_y;
        if (oshape || mode == PAD_SAME_UPPER || mode == PAD_SAME_LOWER) {
            n_y = oshape ? oshape[i] : n_x * s;
            if (n_y < 0)
                return cs_op_fail(c, err, CS_ERR_FORMAT, "axis %d: output_shape %lld", i,
                                  (long long)n_y);
            /* total padding, split with the odd one at the end (SAME_UPPER)
             * or the beginning; an output longer than the full extent is
             * padded at the end, as output_padding does */
            int64_t total = full - n_y;
            if (total > 0) {
                pb = mode == PAD_SAME_UPPER ? total / 2 : total - total / 2;
                pe = total - pb;
            } else {
                pe = total;
            }
        } else {
            if (mode == PAD_NOTSET && pads) {
                pb = pads[i];
                pe = pads[i + rank];
            }
            if (pb < 0 || pe < 0 || pb > INT64_MAX / 8 || pe > INT64_MAX / 8)
                return cs_op_fail(c, err, CS_ERR_FORMAT, "axis %d: pads %lld, %lld out of range",
                                  i, (long long)pb, (long long)pe);
            n_y = full - pb - pe;
            if (n_y < 0)
                return cs_op_fail(c, err, CS_ERR_SHAPE,
                                  "axis %d: pads %lld + %lld exceed the output extent %lld", i,
                                  (long long)pb, (long long)pe, (long long)full);
        }
        int j = lead + i;
        g->in[j] = n_y;
        g->out[j] = n_x;
        g->kernel[j] = k;
        g->stride[j] = s;
        g->dilation[j] = d;
        g->pad_begin[j] = pb;
        g->pad_end[j] = pe;
    }
    st = geom_sizes(c, g, err);
    if (st)
        return st;
    *group_out = group;
    return CS_OK;
}

cs_status cs_conv_transpose_geometry(const cs_node *node, const cs_tensor *x, const cs_tensor *w,
                                     cs_conv_geom *g, int64_t *group, cs_err *err)
{
    cs_op_call c = {.node = node};
    return conv_transpose_geometry_call(&c, x, w, g, group, err);
}

/* ---- operands of Conv and ConvTranspose ---- */

cs_status cs_conv_check_operands(const cs_op_call *c, cs_err *err)
{
    if (c->n_in < 2 || c->n_in > 3)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 2 or 3 inputs, got %d", c->n_in);
    if (c->n_out != 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 output");
    cs_status st = cs_op_need_float(c, 0, err);
    if (!st)
        st = cs_op_need_float(c, 1, err);
    if (!st)
        st = cs_op_same_dtype(c, 0, 1, err);
    return st;
}

cs_status cs_conv_check_bias(const cs_op_call *c, int64_t m, cs_err *err)
{
    const cs_tensor *bias = c->n_in > 2 ? c->in[2] : NULL, *x = c->in[0];
    char bb[96];
    if (!bias)
        return CS_OK;
    if (bias->dtype != x->dtype)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "B has type %s, X has type %s",
                          cs_dtype_name(bias->dtype), cs_dtype_name(x->dtype));
    if (bias->ndim != 1 || bias->dims[0] != m)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "B has shape %s; [%lld] expected",
                          cs_shape_str(bias, bb, sizeof bb), (long long)m);
    return CS_OK;
}
