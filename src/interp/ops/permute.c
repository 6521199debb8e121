/* Element permutations: GatherElements, DepthToSpace, SpaceToDepth.
 *
 * Each output element is one input element, picked by an index tensor
 * (GatherElements) or by a fixed rearrangement of [N, C, H, W] (the other
 * two), so the forward copies bytes by element size for every sized dtype.
 *
 * DepthToSpace with blocksize b is ONNX's reshape-transpose-reshape:
 *   DCR (default)  X as [N, b, b, C/b², H, W], perm [0, 3, 4, 1, 5, 2]
 *   CRD            X as [N, C/b², b, b, H, W], perm [0, 1, 4, 2, 5, 3]
 * both giving Y as [N, C/b², H, b, W, b] = [N, C/b², H b, W b];
 * SpaceToDepth is X as [N, C, H/b, b, W/b, b], perm [0, 3, 5, 1, 2, 4], Y as
 * [N, b, b, C, H/b, W/b] = [N, C b², H/b, W/b] (DCR order).  They run as the
 * Transpose kernel on those 6-D views of the same buffers.
 *
 * Derivatives: linear in the float data (CS_OP_LINEAR); the vjp is the
 * adjoint movement (the transpose back; GatherElements' scatter-add, where
 * repeated indices accumulate), the jvp the movement of the tangent.  The
 * indices are integers and get no gradient. */
#include <stdbool.h>
#include <string.h>

#include "interp/ops/shape_common.h"

/* ---- GatherElements (opset 11: negative indices) ---- */

static cs_status gather_elements_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_counts(c, 2, 2, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    const cs_tensor *x = c->in[0], *ind = c->in[1];
    if (ind->dtype != CS_DT_INT64 && ind->dtype != CS_DT_INT32)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "indices have type %s (int32 or int64 expected)",
                          cs_dtype_name(ind->dtype));
    if (x->ndim == 0 || ind->ndim != x->ndim)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "data (rank %d) and indices (rank %d) need one rank >= 1",
                          x->ndim, ind->ndim);
    int axis;
    if ((st = cs_op_axis(c, cs_node_attr_int(c->node, "axis", 0), x->ndim, &axis, err)))
        return st;
    for (int a = 0; a < x->ndim; a++)
        if (a != axis && ind->dims[a] > x->dims[a])
            return cs_op_fail(c, err, CS_ERR_SHAPE, "indices dim %d (%lld) exceeds data's (%lld)", a,
                              (long long)ind->dims[a], (long long)x->dims[a]);
    cs_tensor_set_shape(c->out[0], x->dtype, ind->ndim, ind->dims);
    return CS_OK;
}

/* Y[i] = X[i with i_axis replaced by ind[i]] over Y's (= ind's) positions;
 * with add_back (float types), the adjoint X[...] += Y[i]. */
static void gather_elements_move(cs_tensor *y, cs_tensor *x, const cs_tensor *ind, int axis,
                                 bool add_back)
{
    int rank = x->ndim;
    size_t esize = cs_dtype_size(x->dtype);
    int64_t x_stride[CS_MAX_DIMS], idx[CS_MAX_DIMS] = {0}, s = 1;
    for (int a = rank - 1; a >= 0; a--) {
        x_stride[a] = s;
        s *= x->dims[a];
    }
    int64_t n = cs_tensor_numel(ind), dim = x->dims[axis];
    char *xd = x->data, *yd = y->data;
    for (int64_t j = 0; j < n; j++) {
        int64_t k = cs_tensor_get_i64(ind, j), off = 0;
        if (k < 0)
            k += dim;
        for (int a = 0; a < rank; a++)
            off += (a == axis ? k : idx[a]) * x_stride[a];
        if (!add_back)
            memcpy(yd + (size_t)j * esize, xd + (size_t)off * esize, esize);
        else
            add_into(xd + (size_t)off * esize, yd + (size_t)j * esize, x->dtype, 1);
        for (int a = rank - 1; a >= 0; a--) {
            if (++idx[a] < ind->dims[a])
                break;
            idx[a] = 0;
        }
    }
}

static cs_status gather_elements_forward(cs_op_call *c, cs_err *err)
{
    return cs_indexed_rule(c, NULL, false, gather_elements_move, err);
}

/* gX = scatter-add of gY at the indices. */
static cs_status gather_elements_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    return cs_indexed_rule(c, ad, true, gather_elements_move, err);
}

/* tY = GatherElements(tX) at the same indices. */
static cs_status gather_elements_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    return cs_indexed_rule(c, ad, false, gather_elements_move, err);
}

const cs_op_def cs_op_GatherElements = {
    .name = "GatherElements", .min_opset = 11, .flags = CS_OP_LINEAR,
    .infer = gather_elements_infer, .forward = gather_elements_forward,
    .vjp = gather_elements_vjp, .jvp = gather_elements_jvp,
};

/* ---- DepthToSpace / SpaceToDepth ---- */

/* The 6-D views and permutation of the header comment: X's view dims, Y's
 * view dims (X's permuted) and Y's 4-D shape. */
typedef struct block_move {
    int64_t x6[6], y6[6], y4[4];
    int perm[6];
} block_move;

static cs_status block_move_plan(const cs_op_call *c, bool to_space, block_move *m, cs_err *err)
{
    const cs_tensor *x = c->in[0];
    if (x->ndim != 4)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "input must be [N, C, H, W], has rank %d", x->ndim);
    int64_t b = cs_node_attr_int(c->node, "blocksize", 0);
    if (b < 1)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "attribute blocksize must be >= 1");
    int64_t n = x->dims[0], ch = x->dims[1], h = x->dims[2], w = x->dims[3];
    if (to_space) {
        const char *mode = cs_node_attr_string(c->node, "mode", "DCR");
        bool crd = strcmp(mode, "CRD") == 0;
        if (!crd && strcmp(mode, "DCR") != 0)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "mode '%s' (DCR or CRD expected)", mode);
        if (ch % (b * b) != 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "channels %lld are not a multiple of blocksize² %lld",
                              (long long)ch, (long long)(b * b));
        int64_t c2 = ch / (b * b);
        const int64_t dcr[6] = {n, b, b, c2, h, w}, crd6[6] = {n, c2, b, b, h, w};
        const int p_dcr[6] = {0, 3, 4, 1, 5, 2}, p_crd[6] = {0, 1, 4, 2, 5, 3};
        memcpy(m->x6, crd ? crd6 : dcr, sizeof m->x6);
        memcpy(m->perm, crd ? p_crd : p_dcr, sizeof m->perm);
        const int64_t y4[4] = {n, c2, h * b, w * b};
        memcpy(m->y4, y4, sizeof m->y4);
    } else {
        if (h % b != 0 || w % b != 0)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "H %lld and W %lld must be multiples of blocksize %lld",
                              (long long)h, (long long)w, (long long)b);
        const int64_t x6[6] = {n, ch, h / b, b, w / b, b};
        const int p[6] = {0, 3, 5, 1, 2, 4};
        memcpy(m->x6, x6, sizeof m->x6);
        memcpy(m->perm, p, sizeof m->perm);
        const int64_t y4[4] = {n, ch * b * b, h / b, w / b};
        memcpy(m->y4, y4, sizeof m->y4);
    }
    for (int i = 0; i < 6; i++)
        m->y6[i] = m->x6[m->perm[i]];
    return CS_OK;
}

/* Y = the movement of X (adjoint false) or X += its adjoint applied to Y,
 * through 6-D headers over the same buffers. */
static void block_move_run(const block_move *m, cs_tensor *y, cs_tensor *x, bool adjoint)
{
    cs_tensor x6 = *x, y6 = *y;
    cs_tensor_set_shape(&x6, x->dtype, 6, m->x6);
    cs_tensor_set_shape(&y6, y->dtype, 6, m->y6);
    cs_transpose_move(&y6, &x6, m->perm, adjoint);
}

static cs_status block_infer(cs_op_call *c, bool to_space, cs_err *err)
{
    cs_status st = need_counts(c, 1, 1, 1, 1, err);
    if (st || (st = need_sized(c, 0, err)))
        return st;
    block_move m;
    if ((st = block_move_plan(c, to_space, &m, err)))
        return st;
    return set_reshaped(c, 4, m.y4, err);
}

/* forward (ad NULL), vjp or jvp of either operator. */
static cs_status block_rule(cs_op_call *c, const cs_op_ad *ad, bool to_space, bool adjoint,
                            cs_err *err)
{
    cs_tensor *y = ad ? (adjoint ? ad->gout[0] : ad->tout[0]) : c->out[0];
    cs_tensor *x = ad ? (adjoint ? ad->gin[0] : ad->tin[0]) : c->in[0];
    if (!y || (adjoint && !x))
        return CS_OK;
    if (!x) { /* jvp without a tangent */
        zero_fill(y);
        return CS_OK;
    }
    block_move m;
    cs_status st = block_move_plan(c, to_space, &m, err);
    if (st)
        return st;
    block_move_run(&m, y, x, adjoint);
    return CS_OK;
}

static cs_status d2s_infer(cs_op_call *c, cs_err *err)
{
    return block_infer(c, true, err);
}
static cs_status d2s_forward(cs_op_call *c, cs_err *err)
{
    return block_rule(c, NULL, true, false, err);
}
static cs_status d2s_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    return block_rule(c, ad, true, true, err);
}
static cs_status d2s_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    return block_rule(c, ad, true, false, err);
}

static cs_status s2d_infer(cs_op_call *c, cs_err *err)
{
    return block_infer(c, false, err);
}
static cs_status s2d_forward(cs_op_call *c, cs_err *err)
{
    return block_rule(c, NULL, false, false, err);
}
static cs_status s2d_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    return block_rule(c, ad, false, true, err);
}
static cs_status s2d_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    return block_rule(c, ad, false, false, err);
}

/* min_opset 1: opset 1 is DepthToSpace's DCR order, which is the default
 * of the mode attribute added in opset 11. */
const cs_op_def cs_op_DepthToSpace = {
    .name = "DepthToSpace", .min_opset = 1, .flags = CS_OP_LINEAR, .infer = d2s_infer,
    .forward = d2s_forward, .vjp = d2s_vjp, .jvp = d2s_jvp,
};

const cs_op_def cs_op_SpaceToDepth = {
    .name = "SpaceToDepth", .min_opset = 1, .flags = CS_OP_LINEAR, .infer = s2d_infer,
    .forward = s2d_forward, .vjp = s2d_vjp, .jvp = s2d_jvp,
};
