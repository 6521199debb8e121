/* ConvTranspose (1-D, 2-D, 3-D), lowered to GEMM + col2im: the operator is
 * Conv's input gradient, so it reuses Conv's unfolding (tensor/im2col.h)
 * with the roles of input and output swapped.
 *
 * ONNX ConvTranspose (opsets 1 to 22, attributes unchanged in meaning): for
 * X [N, C, in...], W [C, M/group, k...], B [M], output channel
 * m = g Mg + j of group g (Mg = M/group, Cg = C/group),
 *   Y[n, m, y] = B[m] + sum_{c in group g} sum_k W[c, j, k] X[n, c, x]
 *                over the pairs (x, k) with y = x s - p + k d,
 * the output extents as window.h's cs_conv_transpose_geometry says
 * (strides, pads, auto_pad, output_padding, output_shape, dilations).
 *
 * Lowering.  With g the geometry of the Conv whose input gradient this is
 * (g.in = Y's extents, g.out = X's, channels = Mg), group g of sample n is
 *     col [Mg K, Tx] = W_g^T [Mg K, Cg] * X_ng [Cg, Tx],   Y_ng += col2im(col)
 * where W_g = W[g Cg : (g+1) Cg] is [Cg, Mg K] row-major as stored, K =
 * prod(kernel), Tx = prod(in), and col2im adds each (j, k) row at
 * y = x s - p + k d.  One GEMM per (sample, group); samples are spread over
 * threads, each with its own patch buffer.
 *
 * Derivative rules.  Y is bilinear in (X, W) plus B.  With
 * P = im2col(gY_ng) [Mg K, Tx] (Conv's unfolding of the output gradient):
 *   gX_ng [Cg, Tx]  += W_g [Cg, Mg K] * P      (a Conv of gY with W)
 *   gW_g [Cg, Mg K] += X_ng [Cg, Tx] * P^T     (Conv's weight gradient with
 *                                               gY as the input)
 *   gB[m] += sum_{n, y} gY[n, m, y].
 * The jvp is the forward twice (tX with W, X with tW) plus tB.  The R-op's
 * second-order term pairs only X with W, as for Conv (ops/conv.c): the
 * backward with tW in place of W for gX and tX in place of X for gW, none
 * for B. */
#include "interp/window.h"

#include <limits.h>
#include <string.h>

#include "tensor/accum.h"
#include "tensor/blas.h"

typedef struct convt_plan {
    cs_conv_geom g;   /* channels = Mg; in = Y's extents, out = X's */
    int64_t batch;    /* N */
    int64_t group;
    int64_t c_total;  /* C */
    int64_t c_group;  /* Cg */
    int64_t m_total;  /* M */
    int64_t m_group;  /* Mg */
    int64_t k_rows;   /* Mg K: rows of one group's patch matrix */
    int64_t t_x, t_y; /* positions of X and of Y per sample */
} convt_plan;

static const cs_tensor *convt_bias(const cs_op_call *c)
{
    return c->n_in > 2 ? c->in[2] : NULL;
}

/* Validates the call and fills the plan; infer and every rule call it. */
static cs_status convt_make_plan(const cs_op_call *c, convt_plan *p, cs_err *err)
{
    cs_status st = cs_conv_check_operands(c, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0], *w = c->in[1];
    memset(p, 0, sizeof *p);
    st = cs_conv_transpose_geometry(c->node, x, w, &p->g, &p->group, err);
    if (st)
        return st;
    p->batch = x->dims[0];
    p->c_total = x->dims[1];
    p->c_group = p->c_total / p->group;
    p->m_group = w->dims[1];
    p->m_total = p->m_group * p->group;
    p->k_rows = p->m_group * p->g.kernel_size;
    p->t_x = p->g.out_size;
    p->t_y = p->g.in_size;
    if ((st = cs_conv_check_bias(c, p->m_total, err)))
        return st;
    long long col_elems;
    if (p->t_x > INT_MAX || p->k_rows > INT_MAX || p->c_group > INT_MAX ||
        cs_mul_overflow_i64(p->k_rows, p->t_x, &col_elems) || col_elems > INT64_MAX / 16)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "GEMM dimensions exceed the BLAS int range");
    return CS_OK;
}

/* One patch buffer [Mg K, Tx] per thread. */
static size_t convt_col_bytes(const convt_plan *p, cs_dtype dt)
{
    return (size_t)(p->k_rows * p->t_x) * cs_dtype_size(dt);
}

static cs_status convt_infer(cs_op_call *c, cs_err *err)
{
    convt_plan p;
    cs_status st = convt_make_plan(c, &p, err);
    if (st)
        return st;
    int64_t dims[2 + CS_CONV_AXES];
    int rank = p.g.spatial_rank;
    dims[0] = p.batch;
    dims[1] = p.m_total;
    for (int i = 0; i < rank; i++)
        dims[2 + i] = p.g.in[CS_CONV_AXES - rank + i];
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, 2 + rank, dims);
    c->scratch_bytes = convt_col_bytes(&p, c->in[0]->dtype) * (size_t)cs_omp_max_threads();
    /* the jvp runs the forward's lowering; the backward uses one buffer */
    c->ad_scratch_bytes = c->scratch_bytes;
    return CS_OK;
}

/* y = (accumulate ? y : bias or 0) + convT(x, w), the forward's lowering;
 * x [N, C, in], w [C, Mg, kernel], bias [M] or NULL, y [N, M, out].  The
 * jvp reuses it (linear in x for fixed w and in w for fixed x). */
#define DEFINE_CONVT_APPLY(T, SUF, GEMM)                                                         \
    static void convt_apply_##SUF(const convt_plan *p, const T *x, const T *w, const T *bias,    \
                                  T *y, bool accumulate, T *scratch)                             \
    {                                                                                            \
        const int64_t tx = p->t_x, ty = p->t_y, kr = p->k_rows, cg = p->c_group;                 \
        const int64_t mg = p->m_group;                                                           \
        _Pragma("omp parallel if (p->batch * p->m_total * ty >= CS_OMP_MIN_ELEMS)")              \
        {                                                                                        \
        int64_t lo, hi;                                                                          \
        cs_omp_slice(p->batch, &lo, &hi);                                                        \
        T *col = scratch + kr * tx * (int64_t)cs_omp_thread(); /* [Mg K, Tx] */                 \
        for (int64_t n = lo; n < hi; n++)                                                        \
            for (int64_t gi = 0; gi < p->group; gi++) {                                          \
                T *yg = y + (n * p->m_total + gi * mg) * ty; /* [Mg, Ty] */                      \
                if (!accumulate)                                                                 \
                    for (int64_t j = 0; j < mg; j++)                                             \
                        for (int64_t q = 0; q < ty; q++)                                         \
                            yg[j * ty + q] = bias ? bias[gi * mg + j] : 0;                       \
                if (tx == 0 || kr == 0)                                                          \
                    continue;                                                                    \
                /* col = W_g^T X_ng */                                                           \
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kr, (int)tx, (int)cg, 1,     \
                     w + gi * cg * kr, (int)kr, x + (n * p->c_total + gi * cg) * tx, (int)tx, 0, \
                     col, (int)tx);                                                              \
                cs_col2im_##SUF(&p->g, col, tx, yg);                                             \
            }                                                                                    \
        }                                                                                        \
    }

DEFINE_CONVT_APPLY(float, f32, cblas_sgemm)
DEFINE_CONVT_APPLY(double, f64, cblas_dgemm)

/* The transposed lowering (see the top): gx += W_g P, gw += X_ng P^T,
 * gb += sum gy, each skipped when NULL (x may be NULL without gw, w without
 * gx).  Samples in order, so gw's sums do not depend on the thread count. */
#define DEFINE_CONVT_BACKWARD(T, SUF, GEMM)                                                      \
    static void convt_backward_##SUF(const convt_plan *p, const T *x, const T *w, const T *gy,   \
                                     T *gx, T *gw, T *gb, T *col)                                \
    {                                                                                            \
        const int64_t tx = p->t_x, ty = p->t_y, kr = p->k_rows, cg = p->c_group;                 \
        const int64_t mg = p->m_group;                                                           \
        for (int64_t m = 0; gb && m < p->m_total; m++) {                                         \
            double s = 0;                                                                        \
            for (int64_t n = 0; n < p->batch; n++)                                               \
                s += cs_sum_##SUF(gy + (n * p->m_total + m) * ty, ty);                           \
            gb[m] += (T)s;                                                                       \
        }                                                                                        \
        if ((!gx && !gw) || tx == 0 || kr == 0)                                                  \
            return;                                                                              \
        for (int64_t n = 0; n < p->batch; n++)                                                   \
            for (int64_t gi = 0; gi < p->group; gi++) {                                          \
                const int64_t xo = (n * p->c_total + gi * cg) * tx; /* X_ng [Cg, Tx] */         \
                cs_im2col_##SUF(&p->g, gy + (n * p->m_total + gi * mg) * ty, col, tx);          \
                if (gx)                                                                          \
                    GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cg, (int)tx, (int)kr,   \
                         1, w + gi * cg * kr, (int)kr, col, (int)tx, 1, gx + xo, (int)tx);       \
                if (gw)                                                                          \
                    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)cg, (int)kr, (int)tx, 1,  \
                         x + xo, (int)tx, col, (int)tx, 1, gw + gi * cg * kr, (int)kr);          \
            }                                                                                    \
    }

DEFINE_CONVT_BACKWARD(float, f32, cblas_sgemm)
DEFINE_CONVT_BACKWARD(double, f64, cblas_dgemm)

static const void *data_of(const cs_tensor *t)
{
    return t ? t->data : NULL;
}

static void *data_mut(cs_tensor *t)
{
    return t ? t->data : NULL;
}

static void convt_apply(const convt_plan *p, cs_dtype dt, const void *x, const void *w,
                        const void *bias, void *y, bool accumulate, void *scratch)
{
    if (dt == CS_DT_FLOAT)
        convt_apply_f32(p, x, w, bias, y, accumulate, scratch);
    else
        convt_apply_f64(p, x, w, bias, y, accumulate, scratch);
}

static void convt_backward(const convt_plan *p, cs_dtype dt, const void *x, const void *w,
                           const void *gy, void *gx, void *gw, void *gb, void *scratch)
{
    if (dt == CS_DT_FLOAT)
        convt_backward_f32(p, x, w, gy, gx, gw, gb, scratch);
    else
        convt_backward_f64(p, x, w, gy, gx, gw, gb, scratch);
}

static cs_status convt_forward(cs_op_call *c, cs_err *err)
{
    convt_plan p;
    cs_status st = convt_make_plan(c, &p, err);
    if (st)
        return st;
    convt_apply(&p, c->in[0]->dtype, c->in[0]->data, c->in[1]->data, data_of(convt_bias(c)),
                c->out[0]->data, false, c->scratch);
    return CS_OK;
}

/* Plan plus the checks of the rule's tensors against their values. */
static cs_status convt_ad_plan(const cs_op_call *c, convt_plan *p, cs_tensor *const *in_side,
                               cs_tensor *const *out_side, cs_err *err)
{
    cs_status st = convt_make_plan(c, p, err);
    return st ? st : cs_op_check_ad(c, in_side, out_side, err);
}

/* vjp: gX += conv(gY; W), gW += X (*) patches(gY), gB += sum gY. */
static cs_status convt_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    convt_plan p;
    cs_status st = convt_ad_plan(c, &p, a->gin, a->gout, err);
    if (st || !a->gout[0])
        return st;
    void *gb = convt_bias(c) ? data_mut(a->gin[2]) : NULL;
    convt_backward(&p, c->in[0]->dtype, c->in[0]->data, c->in[1]->data, a->gout[0]->data,
                   data_mut(a->gin[0]), data_mut(a->gin[1]), gb, c->scratch);
    return CS_OK;
}

/* jvp: tY = convT(tX, W) + convT(X, tW) + tB (the bilinear product rule). */
static cs_status convt_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    convt_plan p;
    cs_status st = convt_ad_plan(c, &p, a->tin, a->tout, err);
    cs_tensor *ty = a->tout[0];
    if (st || !ty)
        return st;
    const cs_tensor *tx = a->tin[0], *tw = a->tin[1];
    const cs_tensor *tb = convt_bias(c) ? a->tin[2] : NULL;
    cs_dtype dt = c->in[0]->dtype;
    bool written = false;
    if (tx) {
        convt_apply(&p, dt, tx->data, c->in[1]->data, data_of(tb), ty->data, false, c->scratch);
        written = true;
    }
    if (tw) {
        convt_apply(&p, dt, c->in[0]->data, tw->data, written ? NULL : data_of(tb), ty->data,
                    written, c->scratch);
        written = true;
    }
    if (!written) { /* only the bias moves: tY[n, m, :] = tB[m] */
        int64_t rows = p.batch * p.m_total;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t q = 0; q < p.t_y; q++)
                cs_tensor_set_f64(ty, r * p.t_y + q,
                                  tb ? cs_tensor_get_f64(tb, r % p.m_total) : 0.0);
    }
    return CS_OK;
}

/* R-op: gX += conv(gY; tW), gW += tX (*) patches(gY); B enters linearly. */
static cs_status convt_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    convt_plan p;
    cs_status st = convt_ad_plan(c, &p, a->gin, a->gout, err);
    if (!st)
        st = cs_op_check_ad(c, a->tin, NULL, err);
    if (st || !a->gout[0])
        return st;
    const cs_tensor *tx = a->tin[0], *tw = a->tin[1];
    void *gx = tw ? data_mut(a->gin[0]) : NULL, *gw = tx ? data_mut(a->gin[1]) : NULL;
    convt_backward(&p, c->in[0]->dtype, data_of(tx), data_of(tw), a->gout[0]->data, gx, gw, NULL,
                   c->scratch);
    return CS_OK;
}

const cs_op_def cs_op_ConvTranspose = {
    .name = "ConvTranspose",
    .min_opset = 1,
    .infer = convt_infer,
    .forward = convt_forward,
    .vjp = convt_vjp,
    .jvp = convt_jvp,
    .rop = convt_rop,
};
