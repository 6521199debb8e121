/* Slicing and tiling operators: Slice, Split, Expand, Tile.
 *
 * They move elements without looking at them, so they copy bytes by element
 * size and work for every dtype that has one (float, the int64 shape
 * tensors of Shape -> Slice -> Concat -> Reshape chains, bool masks, ...).
 * Their integer inputs (Slice's starts / ends / axes / steps, Split's
 * split, Expand's shape, Tile's repeats) fix the output shape, so they must
 * be known at prepare time (initializers, constants, folded values), as
 * Reshape's shape is; with data known too, the plan folds the node.
 *
 * Derivatives: each output element is one input element, so every op is
 * linear in its float data (CS_OP_LINEAR, no second-order term).  The jvp
 * is the forward movement applied to the tangent; the vjp the adjoint:
 * Slice adds gY into the selected elements of gX, Split adds each output's
 * gradient into its block, Expand sums gY over the broadcast axes
 * (cs_broadcast_reduce_add) and Tile sums gY over the tiles.  The integer
 * inputs get no gradient. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "interp/ops/shape_common.h"
#include "tensor/broadcast.h"

/* ---- helpers of this file ---- */

/* Advance the odometer idx over dims[0..rank): false after the last. */
static bool next_index(int64_t *idx, const int64_t *dims, int rank)
{
    for (int d = rank - 1; d >= 0; d--) {
        if (++idx[d] < dims[d])
            return true;
        idx[d] = 0;
    }
    return false;
}

/* Row-major element strides of t. */
static void elem_strides(const cs_tensor *t, int64_t *stride)
{
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= t->dims[d];
    }
}

/* Element dst[i] (+)= src[j] for a float type, or a byte copy for any type
 * when !add. */
static inline void move_elem(char *dst, int64_t i, const char *src, int64_t j, cs_dtype dt,
                             size_t esize, bool add)
{
    if (!add)
        memcpy(dst + (size_t)i * esize, src + (size_t)j * esize, esize);
    else if (dt == CS_DT_FLOAT)
        ((float *)dst)[i] += ((const float *)src)[j];
    else if (dt == CS_DT_DOUBLE)
        ((double *)dst)[i] += ((const double *)src)[j];
}

/* Tangent of an output when the data input has none: zero. */
static bool zero_if_no_tangent(const cs_op_ad *ad)
{
    if (ad->tin[0])
        return false;
    zero_fill(ad->tout[0]);
    return true;
}

/* ---- Slice ----
 *
 * Opset 10 on: starts, ends and optional axes, steps as inputs; opset 1-9:
 * starts, ends, axes as attributes, step 1.  Per ONNX (opset 13's text),
 * for each sliced axis of size n: a negative start or end gets n added;
 * then, for step > 0, start and end are clamped to [0, n]; for step < 0,
 * start to [0, n - 1] and end to [-1, n - 1] (so INT64_MAX means "to the
 * end" and INT64_MIN "to the front" whatever n).  The axis then keeps
 * max(0, ceil((end - start) / step)) elements, start + j * step. */

typedef struct slice_spec {
    int64_t start[CS_MAX_DIMS], step[CS_MAX_DIMS], len[CS_MAX_DIMS];
} slice_spec;

static cs_status slice_spec_read(const cs_op_call *c, slice_spec *s, cs_err *err)
{
    const cs_tensor *x = c->in[0];
    int rank = x->ndim;
    int64_t starts[CS_MAX_DIMS], ends[CS_MAX_DIMS], axes[CS_MAX_DIMS], steps[CS_MAX_DIMS];
    int n_starts = 0, n_ends = 0, n_axes = -1, n_steps = -1;
    cs_status st;
    if (c->node->opset >= 10) {
        if ((st = read_int_input(c, 1, "starts", starts, CS_MAX_DIMS, &n_starts, err)) ||
            (st = read_int_input(c, 2, "ends", ends, CS_MAX_DIMS, &n_ends, err)))
            return st;
        if (c->n_in > 3 && c->in[3] &&
            (st = read_int_input(c, 3, "axes", axes, CS_MAX_DIMS, &n_axes, err)))
            return st;
        if (c->n_in > 4 && c->in[4] &&
            (st = read_int_input(c, 4, "steps", steps, CS_MAX_DIMS, &n_steps, err)))
            return st;
    } else {
        const char *names[3] = {"starts", "ends", "axes"};
        int64_t *dst[3] = {starts, ends, axes};
        int *cnt[3] = {&n_starts, &n_ends, &n_axes};
        for (int k = 0; k < 3; k++) {
            int n = 0;
            const int64_t *v = cs_node_attr_ints(c->node, names[k], &n);
            if (!v) {
                if (k < 2)
                    return cs_op_fail(c, err, CS_ERR_FORMAT, "attribute %s is required", names[k]);
                continue;
            }
            if (n > CS_MAX_DIMS)
                return cs_op_fail(c, err, CS_ERR_SHAPE, "%s has %d values for rank %d", names[k], n,
                                  rank);
            memcpy(dst[k], v, (size_t)n * sizeof *v);
            *cnt[k] = n;
        }
    }
    if (n_ends != n_starts || (n_axes >= 0 && n_axes != n_starts) ||
        (n_steps >= 0 && n_steps != n_starts))
        return cs_op_fail(c, err, CS_ERR_SHAPE,
                          "starts, ends, axes and steps differ in length (%d, %d, %d, %d)", n_starts,
                          n_ends, n_axes, n_steps);
    if (n_starts > rank)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "%d sliced axes for rank %d", n_starts, rank);
    bool seen[CS_MAX_DIMS] = {false};
    for (int d = 0; d < rank; d++) {
        s->start[d] = 0;
        s->step[d] = 1;
        s->len[d] = x->dims[d];
    }
    for (int k = 0; k < n_starts; k++) {
        int a = k;
        if (n_axes >= 0 && (st = cs_op_axis(c, axes[k], rank, &a, err)))
            return st;
        if (seen[a])
            return cs_op_fail(c, err, CS_ERR_SHAPE, "axis %d is sliced twice", a);
        seen[a] = true;
        int64_t step = n_steps >= 0 ? steps[k] : 1, n = x->dims[a];
        if (step == 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "step of axis %d is 0", a);
        int64_t b = starts[k], e = ends[k];
        if (b < 0)
            b = b < -n ? 0 : b + n; /* below -n: the front, for either sign of step */
        if (e < 0)
            e = e < -n ? -1 : e + n;
        if (step > 0) {
            b = b > n ? n : b;
            e = e < 0 ? 0 : e > n ? n : e;
        } else {
            b = b > n - 1 ? n - 1 : b;
            e = e > n - 1 ? n - 1 : e;
        }
        /* ceil(span / |step|) as 1 + (span - 1) / |step|: no overflow for
         * any step, INT64_MIN included (|step| > span keeps one element). */
        int64_t len = 0;
        if (step > 0 && e > b)
            len = 1 + (e - b - 1) / step;
        else if (step < 0 && b > e)
            len = 1 + (b - e - 1) / (step == INT64_MIN ? INT64_MAX : -step);
        s->start[a] = b;
        s->step[a] = step;
        s->len[a] = len;
    }
    return CS_OK;
}

static cs_status slice_infer(cs_op_call *c, cs_err *err)
{
    int max_in = c->node->opset >= 10 ? 5 : 1;
    cs_status st = need_counts(c, max_in == 5 ? 3 : 1, max_in, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    slice_spec s;
    if ((st = slice_spec_read(c, &s, err)))
        return st;
    return set_reshaped(c, c->in[0]->ndim, s.len, err);
}

/* Y = X[start + idx * step] along every axis, or with add_back the adjoint
 * X[start + idx * step] += Y (float types).  Walks Y row by row (its last
 * axis): a row of Y is a line of X with stride step[-1], a plain copy when
 * that step is 1 (channel and sequence slices of activations). */
static void slice_move(cs_tensor *y, cs_tensor *x, const slice_spec *s, bool add_back)
{
    int rank = x->ndim;
    size_t esize = cs_dtype_size(x->dtype);
    if (cs_tensor_numel(y) == 0)
        return;
    if (rank == 0) {
        if (add_back)
            add_into(x->data, y->data, x->dtype, 1);
        else
            copy_bytes(y, x);
        return;
    }
    int64_t stride[CS_MAX_DIMS], idx[CS_MAX_DIMS] = {0};
    elem_strides(x, stride);
    int64_t row = y->dims[rank - 1], line_step = s->step[rank - 1];
    char *xd = x->data, *yd = y->data;
    do {
        int64_t off = s->start[rank - 1]; /* X offset of this row's first element */
        for (int d = 0; d < rank - 1; d++)
            off += (s->start[d] + idx[d] * s->step[d]) * stride[d];
        if (line_step == 1 && add_back)
            add_into(xd + (size_t)off * esize, yd, x->dtype, row);
        else if (line_step == 1)
            memcpy(yd, xd + (size_t)off * esize, (size_t)row * esize);
        else
            for (int64_t j = 0; j < row; j++) {
                if (add_back)
                    move_elem(xd, off + j * line_step, yd, j, x->dtype, esize, true);
                else
                    move_elem(yd, j, xd, off + j * line_step, x->dtype, esize, false);
            }
        yd += (size_t)row * esize;
    } while (next_index(idx, y->dims, rank - 1));
}

static cs_status slice_forward(cs_op_call *c, cs_err *err)
{
    slice_spec s;
    cs_status st = slice_spec_read(c, &s, err);
    if (st)
        return st;
    slice_move(c->out[0], c->in[0], &s, false);
    return CS_OK;
}

/* gX[selected] += gY. */
static cs_status slice_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->gin[0] || !ad->gout[0])
        return CS_OK;
    slice_spec s;
    cs_status st = slice_spec_read(c, &s, err);
    if (st)
        return st;
    slice_move(ad->gout[0], ad->gin[0], &s, true);
    return CS_OK;
}

/* tY = slice(tX). */
static cs_status slice_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->tout[0] || zero_if_no_tangent(ad))
        return CS_OK;
    slice_spec s;
    cs_status st = slice_spec_read(c, &s, err);
    if (st)
        return st;
    slice_move(ad->tout[0], ad->tin[0], &s, false);
    return CS_OK;
}

const cs_op_def cs_op_Slice = {
    .name = "Slice", .min_opset = 1, .flags = CS_OP_LINEAR, .infer = slice_infer,
    .forward = slice_forward, .vjp = slice_vjp, .jvp = slice_jvp,
};

/* ---- Split ----
 *
 * The part sizes along axis come from the 'split' input (opset 13 on) or
 * attribute (opsets 2-12); without them, from opset 18 the num_outputs
 * attribute (= the output count) cuts ceil(n / k) elements per part and
 * leaves the rest to the last one, and before 18 the axis must divide
 * into equal parts. */

static cs_status split_axis(const cs_op_call *c, int *axis, cs_err *err)
{
    if (c->in[0]->ndim == 0)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "cannot split a scalar");
    return cs_op_axis(c, cs_node_attr_int(c->node, "axis", 0), c->in[0]->ndim, axis, err);
}

/* Size of part k of the n_out parts of an axis of size n. */
static int64_t split_part(const cs_op_call *c, int k, int64_t n)
{
    if (c->node->opset >= 13 && c->n_in > 1 && c->in[1])
        return cs_tensor_get_i64(c->in[1], k);
    int count = 0;
    const int64_t *v = c->node->opset < 13 ? cs_node_attr_ints(c->node, "split", &count) : NULL;
    if (v)
        return v[k];
    int64_t per = (n + c->n_out - 1) / c->n_out;
    int64_t rest = n - per * k;
    return rest < 0 ? 0 : rest < per ? rest : per;
}

static cs_status split_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, c->node->opset >= 13 ? 2 : 1, 1, 1 << 20, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    int axis;
    if ((st = split_axis(c, &axis, err)))
        return st;
    const cs_tensor *x = c->in[0];
    int64_t n = x->dims[axis];
    bool given = false;
    if (c->node->opset >= 13 && c->n_in > 1 && c->in[1]) {
        const cs_tensor *s = c->in[1];
        if ((s->dtype != CS_DT_INT64 && s->dtype != CS_DT_INT32) || s->ndim != 1)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "split must be a 1-D int64 tensor");
        if (!s->data && cs_tensor_numel(s) > 0)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "split input must be a constant");
        if (cs_tensor_numel(s) != c->n_out)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "split has %lld values for %d outputs",
                              (long long)cs_tensor_numel(s), c->n_out);
        given = true;
    } else if (c->node->opset < 13) {
        int count = 0;
        if (cs_node_attr_ints(c->node, "split", &count)) {
            if (count != c->n_out)
                return cs_op_fail(c, err, CS_ERR_SHAPE, "split has %d values for %d outputs", count,
                                  c->n_out);
            given = true;
        }
    }
    if (!given) {
        const cs_attr *k = c->node->opset >= 18 ? cs_node_attr(c->node, "num_outputs") : NULL;
        if (k && k->i != c->n_out)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "num_outputs is %lld for %d outputs",
                              (long long)k->i, c->n_out);
        if (!k && n % c->n_out != 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "axis of size %lld does not split into %d equal parts",
                              (long long)n, c->n_out);
    }
    int64_t total = 0;
    for (int k = 0; k < c->n_out; k++) {
        int64_t part = split_part(c, k, n);
        if (part < 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "part %d has negative size %lld", k, (long long)part);
        if (part > n - total) /* compared before the sum, which could overflow */
            return cs_op_fail(c, err, CS_ERR_SHAPE, "parts 0..%d add up to more than the %lld of axis %d", k,
                              (long long)n, axis);
        total += part;
        if (c->out[k]) {
            int64_t dims[CS_MAX_DIMS];
            memcpy(dims, x->dims, sizeof dims);
            dims[axis] = part;
            cs_tensor_set_shape(c->out[k], x->dtype, x->ndim, dims);
        }
    }
    if (total != n)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "parts add up to %lld, axis %d has %lld", (long long)total,
                          axis, (long long)n);
    return CS_OK;
}

/* X viewed as [outer, n, inner]; output k is the block [outer, part_k,
 * inner] starting at row off_k.  The forward (and jvp) copies X's blocks
 * out; the vjp (adjoint) adds the outputs' gradients back into them.
 * x: X or its tangent / gradient; parts: the outputs or their tangents /
 * gradients (NULL entries are skipped). */
static cs_status split_move(const cs_op_call *c, cs_tensor *x, cs_tensor *const *parts, bool adjoint,
                            cs_err *err)
{
    int axis;
    cs_status st = split_axis(c, &axis, err);
    if (st)
        return st;
    cs_dtype dt = c->in[0]->dtype;
    size_t esize = cs_dtype_size(dt);
    int64_t n = c->in[0]->dims[axis];
    int64_t outer = dims_product(c->in[0]->dims, 0, axis);
    int64_t inner = dims_product(c->in[0]->dims, axis + 1, c->in[0]->ndim);
    int64_t row0 = 0;
    for (int k = 0; k < c->n_out; k++) {
        int64_t part = split_part(c, k, n), block = part * inner;
        if (parts[k]) {
            for (int64_t o = 0; o < outer; o++) {
                char *xb = (char *)x->data + (size_t)((o * n + row0) * inner) * esize;
                char *pb = (char *)parts[k]->data + (size_t)(o * block) * esize;
                if (adjoint)
                    add_into(xb, pb, dt, block);
                else
                    memcpy(pb, xb, (size_t)block * esize);
            }
        }
        row0 += part;
    }
    return CS_OK;
}

static cs_status split_forward(cs_op_call *c, cs_err *err)
{
    return split_move(c, c->in[0], c->out, false, err);
}

/* gX[block k] += gY_k for every output with a gradient. */
static cs_status split_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->gin[0])
        return CS_OK;
    return split_move(c, ad->gin[0], ad->gout, true, err);
}

/* tY_k = tX[block k]. */
static cs_status split_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->tin[0]) {
        for (int k = 0; k < c->n_out; k++)
            if (ad->tout[k])
                zero_fill(ad->tout[k]);
        return CS_OK;
    }
    return split_move(c, ad->tin[0], ad->tout, false, err);
}

const cs_op_def cs_op_Split = {
    .name = "Split", .min_opset = 2, .flags = CS_OP_LINEAR, .infer = split_infer,
    .forward = split_forward, .vjp = split_vjp, .jvp = split_jvp,
};

/* ---- Expand (opset 8 on) ----
 *
 * Y = X broadcast (numpy rules, both ways) with the shape input: a 1 in
 * shape keeps X's size, so Y's shape is the broadcast of the two. */

static cs_status expand_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 2, 2, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    int64_t dims[CS_MAX_DIMS];
    int rank = 0;
    if ((st = read_int_input(c, 1, "shape", dims, CS_MAX_DIMS, &rank, err)))
        return st;
    cs_tensor target = {0};
    for (int d = 0; d < rank; d++)
        if (dims[d] < 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "shape[%d] = %lld is negative", d, (long long)dims[d]);
    cs_tensor_set_shape(&target, c->in[0]->dtype, rank, dims);
    const cs_tensor *both[2] = {c->in[0], &target};
    cs_tensor out = {0};
    char what[160];
    snprintf(what, sizeof what, "%s node '%s'", c->node->op_type, c->node->name);
    if ((st = cs_broadcast_shapes(both, 2, &out, what, err)))
        return st;
    return set_reshaped(c, out.ndim, out.dims, err);
}

/* y = x broadcast to y's shape (any sized dtype): one run of y at a time,
 * a contiguous copy or one element repeated. */
static void expand_move(cs_tensor *y, const cs_tensor *x)
{
    size_t esize = cs_dtype_size(x->dtype);
    cs_bcast bc;
    const cs_tensor *in[1] = {x};
    cs_bcast_init(&bc, in, 1, y);
    cs_bcast_pos pos;
    cs_bcast_start(&bc, &pos);
    const char *xd = x->data;
    char *yd = y->data;
    for (int64_t o = 0; o < bc.n_runs; o++) {
        char *dst = yd + (size_t)(o * bc.run) * esize;
        const char *src = xd + (size_t)pos.off[0] * esize;
        if (bc.run_stride[0] == 1) {
            memcpy(dst, src, (size_t)bc.run * esize);
        } else {
            for (int64_t j = 0; j < bc.run; j++)
                memcpy(dst + (size_t)j * esize, src, esize);
        }
        cs_bcast_next(&bc, &pos);
    }
}

static cs_status expand_forward(cs_op_call *c, cs_err *err)
{
    expand_move(c->out[0], c->in[0]);
    return CS_OK;
}

/* gX += gY summed over the broadcast axes. */
static cs_status expand_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->gin[0] || !ad->gout[0])
        return CS_OK;
    cs_status st = cs_broadcast_reduce_add(ad->gin[0], ad->gout[0], 1.0, err);
    if (st)
        cs_err_prefix(err, "%s node '%s'", c->node->op_type, c->node->name);
    return st;
}

/* tY = expand(tX). */
static cs_status expand_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->tout[0] || zero_if_no_tangent(ad))
        return CS_OK;
    expand_move(ad->tout[0], ad->tin[0]);
    return CS_OK;
}

const cs_op_def cs_op_Expand = {
    .name = "Expand", .min_opset = 8, .flags = CS_OP_LINEAR, .infer = expand_infer,
    .forward = expand_forward, .vjp = expand_vjp, .jvp = expand_jvp,
};

/* ---- Tile (repeats input, opset 6 on) ----
 *
 * Y[i] = X[i mod dims(X)] with dims(Y) = dims(X) * repeats. */

static cs_status tile_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 2, 2, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    const cs_tensor *x = c->in[0];
    int64_t reps[CS_MAX_DIMS];
    int n = 0;
    if ((st = read_int_input(c, 1, "repeats", reps, CS_MAX_DIMS, &n, err)))
        return st;
    if (n != x->ndim)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "repeats has %d values for rank %d", n, x->ndim);
    int64_t dims[CS_MAX_DIMS];
    for (int d = 0; d < n; d++) {
        if (reps[d] < 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "repeats[%d] = %lld is negative", d,
                              (long long)reps[d]);
        long long p;
        if (cs_mul_overflow_i64(x->dims[d], reps[d], &p))
            return cs_op_fail(c, err, CS_ERR_SHAPE, "tiled shape overflows");
        dims[d] = p;
    }
    return set_reshaped(c, n, dims, err);
}

/* Y = tile(X), or with add_back X += the sum of Y's tiles (float types).
 * Y's rows (the last axis) are walked in order: row idx reads X's row
 * idx mod dims(X) and holds repeats[-1] copies of it. */
static void tile_move(cs_tensor *y, cs_tensor *x, bool add_back)
{
    int rank = x->ndim;
    size_t esize = cs_dtype_size(x->dtype);
    if (cs_tensor_numel(y) == 0)
        return;
    if (rank == 0) {
        if (add_back)
            add_into(x->data, y->data, x->dtype, 1);
        else
            copy_bytes(y, x);
        return;
    }
    int64_t stride[CS_MAX_DIMS], idx[CS_MAX_DIMS] = {0};
    elem_strides(x, stride);
    int64_t row = x->dims[rank - 1], reps = y->dims[rank - 1] / row;
    char *xd = x->data, *yd = y->data;
    do {
        int64_t off = 0;
        for (int d = 0; d < rank - 1; d++)
            off += idx[d] % x->dims[d] * stride[d];
        char *xrow = xd + (size_t)off * esize;
        for (int64_t r = 0; r < reps; r++, yd += (size_t)row * esize) {
            if (add_back)
                add_into(xrow, yd, x->dtype, row);
            else
                memcpy(yd, xrow, (size_t)row * esize);
        }
    } while (next_index(idx, y->dims, rank - 1));
}

static cs_status tile_forward(cs_op_call *c, cs_err *err)
{
    tile_move(c->out[0], c->in[0], false);
    return CS_OK;
}

/* gX += sum over tiles of gY. */
static cs_status tile_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (ad->gin[0] && ad->gout[0])
        tile_move(ad->gout[0], ad->gin[0], true);
    return CS_OK;
}

/* tY = tile(tX). */
static cs_status tile_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (ad->tout[0] && !zero_if_no_tangent(ad))
        tile_move(ad->tout[0], ad->tin[0], false);
    return CS_OK;
}

const cs_op_def cs_op_Tile = {
    .name = "Tile", .min_opset = 6, .flags = CS_OP_LINEAR, .infer = tile_infer,
    .forward = tile_forward, .vjp = tile_vjp, .jvp = tile_jvp,
};
