/* Sliding-window geometry from a node's attributes (interp/window.h). */
#include "interp/window.h"

#include <string.h>

/* ---- geometry ---- */

cs_status cs_window_geom(const cs_op_call *c, int rank, const int64_t *in, const int64_t *kernel,
                         bool ceil_mode, cs_conv_geom *g, cs_err *err)
{
    const cs_node *node = c->node;
    if (rank < 1 || rank > CS_CONV_AXES)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "%d spatial axes (1 to %d are supported)", rank, CS_CONV_AXES);
    int n_strides, n_pads, n_dil;
    const int64_t *strides = cs_node_attr_ints(node, "strides", &n_strides);
    const int64_t *pads = cs_node_attr_ints(node, "pads", &n_pads);
    const int64_t *dil = cs_node_attr_ints(node, "dilations", &n_dil);
    if (strides && n_strides != rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "strides has %d values for %d spatial axes",
                          n_strides, rank);
    if (dil && n_dil != rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "dilations has %d values for %d spatial axes",
                          n_dil, rank);
    if (pads && n_pads != 2 * rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "pads has %d values for %d spatial axes",
                          n_pads, rank);

    enum { PAD_NOTSET, PAD_VALID, PAD_SAME_UPPER, PAD_SAME_LOWER } mode;
    const char *auto_pad = cs_node_attr_string(node, "auto_pad", "NOTSET");
    if (strcmp(auto_pad, "NOTSET") == 0 || auto_pad[0] == '\0')
        mode = PAD_NOTSET;
    else if (strcmp(auto_pad, "VALID") == 0)
        mode = PAD_VALID;
    else if (strcmp(auto_pad, "SAME_UPPER") == 0)
        mode = PAD_SAME_UPPER;
    else if (strcmp(auto_pad, "SAME_LOWER") == 0)
        mode = PAD_SAME_LOWER;
    else
        return cs_op_fail(c, err, CS_ERR_FORMAT, "unknown auto_pad '%s'", auto_pad);

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

/* Checks X [N, C, *spatial], W [M, C/group, *kernel] and fills the geometry. */
static cs_status conv_geometry_call(const cs_op_call *c, const cs_tensor *x, const cs_tensor *w,
                                    cs_conv_geom *g, int64_t *group_out, cs_err *err)
{
    char bx[96], bw[96];
    if (x->ndim < 3 || x->ndim > 2 + CS_CONV_AXES)
        return cs_op_fail(c, err, x->ndim < 3 ? CS_ERR_SHAPE : CS_ERR_UNSUPPORTED,
                          "X has shape %s; [N, C, D1 (, D2 (, D3))] expected",
                          cs_shape_str(x, bx, sizeof bx));
    if (w->ndim != x->ndim)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "W of shape %s does not match X of shape %s",
                          cs_shape_str(w, bw, sizeof bw), cs_shape_str(x, bx, sizeof bx));
    int rank = x->ndim - 2;
    int64_t group = cs_node_attr_int(c->node, "group", 1);
    if (group < 1)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "group is %lld", (long long)group);
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
    int n_ks;
    const int64_t *ks = cs_node_attr_ints(c->node, "kernel_shape", &n_ks);
    if (ks) {
        if (n_ks != rank)
            return cs_op_fail(c, err, CS_ERR_FORMAT,
                              "kernel_shape has %d values for %d spatial axes", n_ks, rank);
        for (int i = 0; i < rank; i++)
            if (ks[i] != w->dims[2 + i])
                return cs_op_fail(c, err, CS_ERR_SHAPE, "kernel_shape does not match W of shape %s",
                                  cs_shape_str(w, bw, sizeof bw));
    }
    cs_status st = cs_window_geom(c, rank, x->dims + 2, w->dims + 2, false, g, err);
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
