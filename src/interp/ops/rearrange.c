/* Data-movement operators: Transpose, Concat, Gather.
 *
 * They move elements without looking at them, so they copy bytes by element
 * size and work for every dtype that has one (float, int64 shape tensors,
 * bool masks, ...).
 *
 * Derivatives: each output element is one input element, so the vjp is the
 * adjoint movement (transpose back, split, scatter-add) and the jvp the
 * forward movement applied to the tangent; all are flagged CS_OP_LINEAR,
 * with no second-order term.  Gradients exist for float32 / float64 only:
 * integer inputs (indices) never receive one. */
#include <stdbool.h>
#include <string.h>

#include "interp/ops/shape_common.h"

/* ---- Transpose ---- */

static cs_status transpose_perm(const cs_op_call *c, int *perm, cs_err *err)
{
    int rank = c->in[0]->ndim;
    int n = 0;
    const int64_t *p = cs_node_attr_ints(c->node, "perm", &n);
    if (!p) {
        for (int i = 0; i < rank; i++)
            perm[i] = rank - 1 - i;
        return CS_OK;
    }
    if (n != rank)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "perm has %d entries for rank %d", n, rank);
    bool seen[CS_MAX_DIMS] = {false};
    for (int i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= rank || seen[p[i]])
            return cs_op_fail(c, err, CS_ERR_SHAPE, "perm is not a permutation of 0..%d", rank - 1);
        seen[p[i]] = true;
        perm[i] = (int)p[i];
    }
    return CS_OK;
}

static cs_status transpose_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 1, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    int perm[CS_MAX_DIMS];
    if ((st = transpose_perm(c, perm, err)))
        return st;
    int64_t dims[CS_MAX_DIMS];
    for (int i = 0; i < c->in[0]->ndim; i++)
        dims[i] = c->in[0]->dims[perm[i]];
    return set_reshaped(c, c->in[0]->ndim, dims, err);
}

/* dst[i] = src[i * stride] for n elements of esize bytes. */
static void gather_strided(char *dst, const char *src, int64_t n, int64_t stride, size_t esize)
{
    if (stride == 1) { /* the last axis stays last: a plain row copy */
        memcpy(dst, src, (size_t)n * esize);
        return;
    }
    switch (esize) {
    case 1:
        for (int64_t i = 0; i < n; i++)
            dst[i] = src[i * stride];
        break;
    case 2:
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + 2 * i, src + 2 * i * stride, 2);
        break;
    case 4:
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + 4 * i, src + 4 * i * stride, 4);
        break;
    case 8:
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + 8 * i, src + 8 * i * stride, 8);
        break;
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + esize * (size_t)i, src + esize * (size_t)(i * stride), esize);
        break;
    }
}

/* Y = X with axes permuted (perm[i] = X's axis at Y's axis i), or, with
 * add_back, the adjoint: X += Y with the permutation undone.  Walks Y row
 * by row; in_stride[i] is X's element stride along Y's dim i, so one row of
 * Y is a strided line of X.  add_back needs a float type. */
void cs_transpose_move(cs_tensor *y, cs_tensor *x, const int *perm, bool add_back)
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
    int64_t x_stride[CS_MAX_DIMS], in_stride[CS_MAX_DIMS], idx[CS_MAX_DIMS] = {0};
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        x_stride[i] = s;
        s *= x->dims[i];
    }
    for (int i = 0; i < rank; i++)
        in_stride[i] = x_stride[perm[i]];
    int64_t row = y->dims[rank - 1], n_rows = cs_tensor_numel(y) / row;
    int64_t stride = in_stride[rank - 1];
    char *xd = x->data, *yd = y->data;
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t off = 0;
        for (int i = 0; i < rank - 1; i++)
            off += idx[i] * in_stride[i];
        if (!add_back) {
            gather_strided(yd + (size_t)(r * row) * esize, xd + (size_t)off * esize, row, stride,
                           esize);
        } else if (x->dtype == CS_DT_FLOAT) {
            const float *g = (const float *)yd + r * row;
            float *dst = (float *)xd + off;
            for (int64_t j = 0; j < row; j++)
                dst[j * stride] += g[j];
        } else if (x->dtype == CS_DT_DOUBLE) {
            const double *g = (const double *)yd + r * row;
            double *dst = (double *)xd + off;
            for (int64_t j = 0; j < row; j++)
                dst[j * stride] += g[j];
        }
        for (int i = rank - 2; i >= 0; i--) {
            if (++idx[i] < y->dims[i])
                break;
            idx[i] = 0;
        }
    }
}

static cs_status transpose_forward(cs_op_call *c, cs_err *err)
{
    int perm[CS_MAX_DIMS];
    cs_status st = transpose_perm(c, perm, err);
    if (st)
        return st;
    /* The source is only read (transpose_move writes Y when !add_back). */
    cs_transpose_move(c->out[0], c->in[0], perm, false);
    return CS_OK;
}

/* gX += transpose(gY, inverse perm): the adjoint of a permutation. */
static cs_status transpose_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->gin[0] || !ad->gout[0])
        return CS_OK;
    int perm[CS_MAX_DIMS];
    cs_status st = transpose_perm(c, perm, err);
    if (st)
        return st;
    cs_transpose_move(ad->gout[0], ad->gin[0], perm, true);
    return CS_OK;
}

/* tY = transpose(tX, perm). */
static cs_status transpose_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->tout[0])
        return CS_OK;
    if (!ad->tin[0]) {
        zero_fill(ad->tout[0]);
        return CS_OK;
    }
    int perm[CS_MAX_DIMS];
    cs_status st = transpose_perm(c, perm, err);
    if (st)
        return st;
    cs_transpose_move(ad->tout[0], ad->tin[0], perm, false);
    return CS_OK;
}

const cs_op_def cs_op_Transpose = {
    .name = "Transpose", .min_opset = 1, .flags = CS_OP_LINEAR, .infer = transpose_infer,
    .forward = transpose_forward, .vjp = transpose_vjp, .jvp = transpose_jvp,
};

/* ---- Concat ---- */

static cs_status concat_axis(const cs_op_call *c, int *axis, cs_err *err)
{
    const cs_attr *a = cs_node_attr(c->node, "axis");
    if (!a && c->node->opset >= 4)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "attribute axis is required");
    int64_t v = a ? a->i : 1; /* opsets 1-3 default to axis 1 */
    int rank = c->in[0]->ndim;
    if (rank == 0)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "cannot concatenate scalars");
    return cs_op_axis(c, v, rank, axis, err);
}

static cs_status concat_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 1, 1 << 20, 1, 1, err);
    if (st)
        return st;
    for (int i = 0; i < c->n_in; i++)
        if (!c->in[i])
            return cs_op_fail(c, err, CS_ERR_FORMAT, "input %d is missing", i);
    if ((st = need_sized(c, 0, err)))
        return st;
    int axis;
    if ((st = concat_axis(c, &axis, err)))
        return st;
    const cs_tensor *x0 = c->in[0];
    int64_t dims[CS_MAX_DIMS];
    memcpy(dims, x0->dims, sizeof dims);
    for (int i = 1; i < c->n_in; i++) {
        const cs_tensor *x = c->in[i];
        if ((st = cs_op_same_dtype(c, 0, i, err)))
            return st;
        bool fits = x->ndim == x0->ndim;
        for (int d = 0; fits && d < x->ndim; d++)
            fits = d == axis || x->dims[d] == x0->dims[d];
        if (!fits) {
            char s0[96], si[96];
            return cs_op_fail(c, err, CS_ERR_SHAPE, "input %d shape %s does not fit input 0 shape %s"
                              " outside axis %d", i, cs_shape_str(x, si, sizeof si),
                              cs_shape_str(x0, s0, sizeof s0), axis);
        }
        dims[axis] += x->dims[axis];
    }
    return set_reshaped(c, x0->ndim, dims, err);
}

static cs_status concat_forward(cs_op_call *c, cs_err *err)
{
    int axis;
    cs_status st = concat_axis(c, &axis, err);
    if (st)
        return st;
    const cs_tensor *x0 = c->in[0];
    size_t esize = cs_dtype_size(x0->dtype);
    int64_t outer = dims_product(x0->dims, 0, axis);
    size_t inner_bytes = (size_t)dims_product(x0->dims, axis + 1, x0->ndim) * esize;
    char *yd = c->out[0]->data;
    /* Y viewed as [outer, sum of axis dims, inner]: each input contributes a
     * contiguous [axis_i, inner] block per outer index. */
    for (int64_t o = 0; o < outer; o++) {
        for (int i = 0; i < c->n_in; i++) {
            size_t block = (size_t)c->in[i]->dims[axis] * inner_bytes;
            memcpy(yd, (const char *)c->in[i]->data + (size_t)o * block, block);
            yd += block;
        }
    }
    return CS_OK;
}

/* Y viewed as [outer, sum of axis dims, inner] is a sequence of blocks, one
 * per (outer index, input); the vjp splits gY back into them (adding) and
 * the jvp assembles tY from the input tangents (zero blocks for absent
 * ones).  `adjoint` picks the direction. */
static cs_status concat_move(cs_op_call *c, const cs_op_ad *ad, bool adjoint, cs_err *err)
{
    int axis;
    cs_status st = concat_axis(c, &axis, err);
    if (st)
        return st;
    const cs_tensor *x0 = c->in[0];
    cs_dtype dt = c->out[0]->dtype;
    size_t esize = cs_dtype_size(dt);
    int64_t outer = dims_product(x0->dims, 0, axis);
    int64_t inner = dims_product(x0->dims, axis + 1, x0->ndim);
    char *yd = adjoint ? ad->gout[0]->data : ad->tout[0]->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int i = 0; i < c->n_in; i++) {
            int64_t block = c->in[i]->dims[axis] * inner; /* elements */
            size_t bytes = (size_t)block * esize;
            if (adjoint) {
                if (ad->gin[i])
                    add_into((char *)ad->gin[i]->data + (size_t)o * bytes, yd, dt, block);
            } else if (ad->tin[i]) {
                memcpy(yd, (const char *)ad->tin[i]->data + (size_t)o * bytes, bytes);
            } else {
                memset(yd, 0, bytes);
            }
            yd += bytes;
        }
    }
    return CS_OK;
}

static cs_status concat_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->gout[0])
        return CS_OK;
    return concat_move(c, ad, true, err);
}

static cs_status concat_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    if (!ad->tout[0])
        return CS_OK;
    return concat_move(c, ad, false, err);
}

const cs_op_def cs_op_Concat = {
    .name = "Concat", .min_opset = 1, .flags = CS_OP_LINEAR, .infer = concat_infer,
    .forward = concat_forward, .vjp = concat_vjp, .jvp = concat_jvp,
};

/* ---- Gather ---- */

static cs_status gather_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 2, 2, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    const cs_tensor *x = c->in[0], *ind = c->in[1];
    if (ind->dtype != CS_DT_INT64 && ind->dtype != CS_DT_INT32)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "indices have type %s (int32 or int64 expected)",
                          cs_dtype_name(ind->dtype));
    if (x->ndim == 0)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "data must have rank >= 1");
    int axis;
    if ((st = cs_op_axis(c, cs_node_attr_int(c->node, "axis", 0), x->ndim, &axis, err)))
        return st;
    int rank = x->ndim - 1 + ind->ndim;
    if (rank > CS_MAX_DIMS)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "result rank %d exceeds %d", rank, CS_MAX_DIMS);
    int64_t dims[CS_MAX_DIMS]; /* data.shape[:axis] + indices.shape + data.shape[axis+1:] */
    int r = 0;
    for (int i = 0; i < axis; i++)
        dims[r++] = x->dims[i];
    for (int i = 0; i < ind->ndim; i++)
        dims[r++] = ind->dims[i];
    for (int i = axis + 1; i < x->ndim; i++)
        dims[r++] = x->dims[i];
    return set_reshaped(c, rank, dims, err);
}

/* The normalised axis of a Gather or GatherElements whose indices all lie
 * in [-axis_dim, axis_dim). */
static cs_status gather_check(const cs_op_call *c, int *axis, cs_err *err)
{
    const cs_tensor *x = c->in[0], *ind = c->in[1];
    cs_status st = cs_op_axis(c, cs_node_attr_int(c->node, "axis", 0), x->ndim, axis, err);
    if (st)
        return st;
    int64_t n_ind = cs_tensor_numel(ind), axis_dim = x->dims[*axis];
    for (int64_t j = 0; j < n_ind; j++) {
        int64_t k = cs_tensor_get_i64(ind, j);
        if (k < -axis_dim || k >= axis_dim)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "index %lld is out of range for axis %d of size %lld",
                              (long long)k, *axis, (long long)axis_dim);
    }
    return CS_OK;
}

/* Y[o, j, :] = X[o, ind[j], :] with X viewed as [outer, axis_dim, inner] and
 * Y as [outer, n_ind, inner]; with add_back, the adjoint scatter-add
 * X[o, ind[j], :] += Y[o, j, :] (repeated indices accumulate).  add_back
 * needs a float type. */
static void gather_move(cs_tensor *y, cs_tensor *x, const cs_tensor *ind, int axis, bool add_back)
{
    int64_t n_ind = cs_tensor_numel(ind), axis_dim = x->dims[axis];
    int64_t outer = dims_product(x->dims, 0, axis);
    int64_t inner = dims_product(x->dims, axis + 1, x->ndim);
    size_t esize = cs_dtype_size(x->dtype), inner_bytes = (size_t)inner * esize;
    char *xd = x->data, *yd = y->data;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t j = 0; j < n_ind; j++) {
            int64_t k = cs_tensor_get_i64(ind, j);
            if (k < 0)
                k += axis_dim;
            char *xrow = xd + (size_t)(o * axis_dim + k) * inner_bytes;
            if (add_back)
                add_into(xrow, yd, x->dtype, inner);
            else
                memcpy(yd, xrow, inner_bytes);
            yd += inner_bytes;
        }
    }
}

/* Forward (ad NULL), vjp (adjoint) or jvp of an operator that picks
 * elements of input 0 by the indices of input 1 along the axis attribute:
 * the indices are checked (every call, so that no index can send a write
 * outside the gradient), then move runs forward on (Y, X), adjoint on
 * (gY, gX) (scatter-add) or forward on (tY, tX); a jvp without a tangent
 * writes zeros.  The indices are integers and get no gradient. */
cs_status cs_indexed_rule(cs_op_call *c, const cs_op_ad *ad, bool adjoint, cs_indexed_move move,
                          cs_err *err)
{
    cs_tensor *y = ad ? (adjoint ? ad->gout[0] : ad->tout[0]) : c->out[0];
    cs_tensor *x = ad ? (adjoint ? ad->gin[0] : ad->tin[0]) : c->in[0];
    if (!y || (adjoint && !x))
        return CS_OK;
    if (!x) {
        zero_fill(y);
        return CS_OK;
    }
    int axis;
    cs_status st = gather_check(c, &axis, err);
    if (st)
        return st;
    move(y, x, c->in[1], axis, adjoint);
    return CS_OK;
}

static cs_status gather_forward(cs_op_call *c, cs_err *err)
{
    return cs_indexed_rule(c, NULL, false, gather_move, err);
}

/* gX = scatter-add of gY at the indices. */
static cs_status gather_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    return cs_indexed_rule(c, ad, true, gather_move, err);
}

/* tY = gather(tX) at the same indices. */
static cs_status gather_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    return cs_indexed_rule(c, ad, false, gather_move, err);
}

const cs_op_def cs_op_Gather = {
    .name = "Gather", .min_opset = 1, .flags = CS_OP_LINEAR, .infer = gather_infer,
    .forward = gather_forward, .vjp = gather_vjp, .jvp = gather_jvp,
};
