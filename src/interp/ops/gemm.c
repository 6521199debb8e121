/* Gemm: Y = alpha * op(A) @ op(B) + beta * C, op = optional transpose.
 *
 * Semantics of opset 7 onward: C is broadcast unidirectionally to [M, N]
 * (no `broadcast` attribute) and, as opset 11 allows, may be omitted.  The
 * kernel writes beta * C (broadcast) into Y and lets one sgemm / dgemm add
 * alpha * op(A) @ op(B) to it.
 *
 * Derivatives (matrix calculus of Y = alpha op(A) op(B) + beta C):
 *   d op(A) = alpha gY op(B)^T      d op(B) = alpha op(A)^T gY
 *   dC      = beta * gY summed over the dimensions C was broadcast along
 *   tY      = alpha (op(tA) op(B) + op(A) op(tB)) + beta tC
 * Y is bilinear in (A, B), so the second-order (R-op) term is the vjp with
 * the other operand replaced by its tangent: gA += alpha gY op(tB)^T (with
 * A's transpose), gB += alpha op(tA)^T gY; C enters linearly and adds none. */
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"
#include "tensor/blas.h"

typedef struct gemm_attrs {
    double alpha, beta;
    bool trans_a, trans_b;
} gemm_attrs;

static gemm_attrs gemm_read_attrs(const cs_node *node)
{
    gemm_attrs a;
    a.alpha = cs_node_attr_float(node, "alpha", 1.0f);
    a.beta = cs_node_attr_float(node, "beta", 1.0f);
    a.trans_a = cs_node_attr_int(node, "transA", 0) != 0;
    a.trans_b = cs_node_attr_int(node, "transB", 0) != 0;
    return a;
}

static const cs_tensor *gemm_bias(const cs_op_call *c)
{
    return c->n_in > 2 ? c->in[2] : NULL;
}

static cs_status gemm_infer(cs_op_call *c, cs_err *err)
{
    if (c->n_in < 2 || c->n_in > 3)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 2 or 3 inputs, got %d", c->n_in);
    if (c->n_out != 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 output");
    cs_status st = cs_op_need_float(c, 0, err);
    if (st)
        return st;
    st = cs_op_need_float(c, 1, err);
    if (st)
        return st;
    st = cs_op_same_dtype(c, 0, 1, err);
    if (st)
        return st;

    const cs_tensor *a = c->in[0], *b = c->in[1], *bias = gemm_bias(c);
    if (a->ndim != 2 || b->ndim != 2)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "A and B must be 2-D (got ranks %d and %d)",
                          a->ndim, b->ndim);
    gemm_attrs at = gemm_read_attrs(c->node);
    int64_t m = at.trans_a ? a->dims[1] : a->dims[0];
    int64_t k = at.trans_a ? a->dims[0] : a->dims[1];
    int64_t k_b = at.trans_b ? b->dims[1] : b->dims[0];
    int64_t n = at.trans_b ? b->dims[0] : b->dims[1];
    if (k != k_b)
        return cs_op_fail(c, err, CS_ERR_SHAPE,
                          "inner dimensions differ: op(A) is [%lld, %lld], op(B) is [%lld, %lld]",
                          (long long)m, (long long)k, (long long)k_b, (long long)n);
    /* BLAS takes int sizes; leading dimensions are at most max(m, n, k). */
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "dimensions exceed the BLAS int range");

    if (bias) {
        if (bias->dtype != a->dtype)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "C has type %s, A has type %s",
                              cs_dtype_name(bias->dtype), cs_dtype_name(a->dtype));
        /* Unidirectional broadcast: C's trailing-aligned dims are 1 or equal. */
        bool fits = bias->ndim <= 2;
        int64_t target[2] = {m, n};
        for (int i = 0; fits && i < bias->ndim; i++) {
            int64_t d = bias->dims[bias->ndim - 1 - i], want = target[1 - i];
            fits = d == 1 || d == want;
        }
        if (!fits) {
            char buf[64];
            return cs_op_fail(c, err, CS_ERR_SHAPE, "C of shape %s does not broadcast to [%lld, %lld]",
                              cs_shape_str(bias, buf, sizeof buf), (long long)m, (long long)n);
        }
    }
    int64_t out_dims[2] = {m, n};
    cs_tensor_set_shape(c->out[0], a->dtype, 2, out_dims);
    return CS_OK;
}

/* y[m, n] = beta * broadcast(bias); bias shape was checked by infer. */
static void gemm_fill_bias(cs_tensor *y, const cs_tensor *bias, double beta)
{
    int64_t m = y->dims[0], n = y->dims[1];
    int64_t bias_rows = bias->ndim == 2 ? bias->dims[0] : 1;
    int64_t bias_cols = bias->ndim >= 1 ? bias->dims[bias->ndim - 1] : 1;
    int64_t row_step = bias_rows == 1 ? 0 : bias_cols;
    int64_t col_step = bias_cols == 1 ? 0 : 1;
    if (y->dtype == CS_DT_FLOAT) {
        float *yd = y->data;
        const float *bd = bias->data;
        float fbeta = (float)beta;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                yd[i * n + j] = fbeta * bd[i * row_step + j * col_step];
    } else {
        double *yd = y->data;
        const double *bd = bias->data;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                yd[i * n + j] = beta * bd[i * row_step + j * col_step];
    }
}

/* Leading dimension for BLAS, which wants >= 1 even for empty matrices. */
static int blas_ld(int64_t d)
{
    return (int)(d > 1 ? d : 1);
}

static enum CBLAS_TRANSPOSE blas_trans(bool t)
{
    return t ? CblasTrans : CblasNoTrans;
}

/* Row-major X[m, n] = alpha * op(P)[m, k] @ op(Q)[k, n] + beta * X, in the
 * precision of dt (sgemm for float32, dgemm for float64). */
static void gemm_blas(cs_dtype dt, bool tp, bool tq, int m, int n, int k, double alpha,
                      const void *p, int ldp, const void *q, int ldq, double beta, void *x, int ldx)
{
    if (dt == CS_DT_FLOAT)
        cblas_sgemm(CblasRowMajor, blas_trans(tp), blas_trans(tq), m, n, k, (float)alpha, p, ldp, q,
                    ldq, (float)beta, x, ldx);
    else
        cblas_dgemm(CblasRowMajor, blas_trans(tp), blas_trans(tq), m, n, k, alpha, p, ldp, q, ldq,
                    beta, x, ldx);
}

/* The sizes of one call: op(A) is [m, k], op(B) is [k, n]. */
typedef struct gemm_dims {
    int m, n, k;
    int lda, ldb; /* row lengths of A and B as stored (and of their gradients) */
} gemm_dims;

static gemm_dims gemm_dims_of(const cs_op_call *c, const gemm_attrs *at)
{
    const cs_tensor *a = c->in[0], *b = c->in[1];
    gemm_dims d;
    d.m = (int)(at->trans_a ? a->dims[1] : a->dims[0]);
    d.k = (int)(at->trans_a ? a->dims[0] : a->dims[1]);
    d.n = (int)(at->trans_b ? b->dims[0] : b->dims[1]);
    d.lda = blas_ld(a->dims[1]);
    d.ldb = blas_ld(b->dims[1]);
    return d;
}

static cs_status gemm_forward(cs_op_call *c, cs_err *err)
{
    const cs_tensor *a = c->in[0], *b = c->in[1], *bias = gemm_bias(c);
    cs_tensor *y = c->out[0];
    gemm_attrs at = gemm_read_attrs(c->node);
    gemm_dims d = gemm_dims_of(c, &at);
    if (d.m == 0 || d.n == 0)
        return CS_OK;

    if (bias)
        gemm_fill_bias(y, bias, at.beta);
    if (d.k == 0) { /* empty product: Y = beta * C, or 0 */
        if (!bias)
            memset(y->data, 0, cs_tensor_bytes(y));
        return CS_OK;
    }
    double blas_beta = bias ? 1.0 : 0.0; /* BLAS beta 0: Y is written, not read */
    /* Row-major storage: A is [m, k] or [k, m], B is [k, n] or [n, k]. */
    gemm_blas(y->dtype, at.trans_a, at.trans_b, d.m, d.n, d.k, at.alpha, a->data, d.lda, b->data,
              d.ldb, blas_beta, y->data, d.n);
    return CS_OK;
}

/* gA += alpha * gY op(B)^T, transposed back to A's layout when transA:
 *   transA = 0:  gA[m, k] += alpha gY[m, n] op(B)^T[n, k]
 *   transA = 1:  gA[k, m] += alpha op(B)[k, n] gY^T[n, m]
 * b is B itself (vjp) or its tangent (rop's cross term). */
static void gemm_grad_a(const gemm_attrs *at, const gemm_dims *d, cs_dtype dt, const void *gy,
                        const void *b, void *ga)
{
    if (d->m == 0 || d->n == 0 || d->k == 0)
        return;
    if (!at->trans_a)
        gemm_blas(dt, false, !at->trans_b, d->m, d->k, d->n, at->alpha, gy, d->n, b, d->ldb, 1.0,
                  ga, d->lda);
    else
        gemm_blas(dt, at->trans_b, true, d->k, d->m, d->n, at->alpha, b, d->ldb, gy, d->n, 1.0, ga,
                  d->lda);
}

/* gB += alpha * op(A)^T gY, transposed back to B's layout when transB:
 *   transB = 0:  gB[k, n] += alpha op(A)^T[k, m] gY[m, n]
 *   transB = 1:  gB[n, k] += alpha gY^T[n, m] op(A)[m, k]
 * a is A itself (vjp) or its tangent (rop's cross term). */
static void gemm_grad_b(const gemm_attrs *at, const gemm_dims *d, cs_dtype dt, const void *gy,
                        const void *a, void *gb)
{
    if (d->m == 0 || d->n == 0 || d->k == 0)
        return;
    if (!at->trans_b)
        gemm_blas(dt, !at->trans_a, false, d->k, d->n, d->m, at->alpha, a, d->lda, gy, d->n, 1.0,
                  gb, d->ldb);
    else
        gemm_blas(dt, true, at->trans_a, d->n, d->k, d->m, at->alpha, gy, d->n, a, d->lda, 1.0, gb,
                  d->ldb);
}

/* gC += beta * gY reduced over C's broadcast dimensions: rows when C has one
 * row ([N], [1, N], scalar), columns when it has one column ([M, 1]). */
static void gemm_grad_c(const cs_tensor *gy, cs_tensor *gc, double beta)
{
    int64_t m = gy->dims[0], n = gy->dims[1];
    int64_t rows = gc->ndim == 2 ? gc->dims[0] : 1;
    int64_t cols = gc->ndim >= 1 ? gc->dims[gc->ndim - 1] : 1;
    int64_t row_step = rows == 1 ? 0 : cols;
    bool col_sum = cols == 1 && n != 1; /* each row of gY folds into one value */
    for (int64_t i = 0; i < m; i++) {
        /* Row i of gY lands on row i (or row 0) of gC; a [N] bias makes this
         * the column sum as a stream of contiguous row additions. */
        if (gy->dtype == CS_DT_FLOAT) {
            const float *g = (const float *)gy->data + i * n;
            float *dst = (float *)gc->data + i * row_step, fb = (float)beta;
            if (col_sum) {
                float s = 0;
                for (int64_t j = 0; j < n; j++)
                    s += g[j];
                dst[0] += fb * s;
            } else {
                for (int64_t j = 0; j < n; j++)
                    dst[j] += fb * g[j];
            }
        } else {
            const double *g = (const double *)gy->data + i * n;
            double *dst = (double *)gc->data + i * row_step;
            if (col_sum) {
                double s = 0;
                for (int64_t j = 0; j < n; j++)
                    s += g[j];
                dst[0] += beta * s;
            } else {
                for (int64_t j = 0; j < n; j++)
                    dst[j] += beta * g[j];
            }
        }
    }
}

static cs_status gemm_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    const cs_tensor *gy = ad->gout[0]; /* [m, n] */
    if (!gy)
        return CS_OK;
    gemm_attrs at = gemm_read_attrs(c->node);
    gemm_dims d = gemm_dims_of(c, &at);
    cs_dtype dt = c->out[0]->dtype;
    if (ad->gin[0])
        gemm_grad_a(&at, &d, dt, gy->data, c->in[1]->data, ad->gin[0]->data);
    if (ad->gin[1])
        gemm_grad_b(&at, &d, dt, gy->data, c->in[0]->data, ad->gin[1]->data);
    if (gemm_bias(c) && ad->gin[2])
        gemm_grad_c(gy, ad->gin[2], at.beta);
    return CS_OK;
}

static cs_status gemm_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    cs_tensor *ty = ad->tout[0]; /* [m, n] */
    if (!ty)
        return CS_OK;
    gemm_attrs at = gemm_read_attrs(c->node);
    gemm_dims d = gemm_dims_of(c, &at);
    const cs_tensor *ta = ad->tin[0], *tb = ad->tin[1];
    const cs_tensor *tc = gemm_bias(c) ? ad->tin[2] : NULL;
    if (d.m == 0 || d.n == 0)
        return CS_OK;
    /* Each term either writes tY (first one, BLAS beta 0) or adds to it. */
    bool written = false;
    if (tc) {
        gemm_fill_bias(ty, tc, at.beta); /* beta tC, broadcast */
        written = true;
    }
    if (d.k > 0 && ta) { /* alpha op(tA) op(B) */
        gemm_blas(ty->dtype, at.trans_a, at.trans_b, d.m, d.n, d.k, at.alpha, ta->data, d.lda,
                  c->in[1]->data, d.ldb, written ? 1.0 : 0.0, ty->data, d.n);
        written = true;
    }
    if (d.k > 0 && tb) { /* alpha op(A) op(tB) */
        gemm_blas(ty->dtype, at.trans_a, at.trans_b, d.m, d.n, d.k, at.alpha, c->in[0]->data, d.lda,
                  tb->data, d.ldb, written ? 1.0 : 0.0, ty->data, d.n);
        written = true;
    }
    if (!written)
        memset(ty->data, 0, cs_tensor_bytes(ty));
    return CS_OK;
}

static cs_status gemm_rop(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    const cs_tensor *gy = ad->gout[0];
    if (!gy)
        return CS_OK;
    gemm_attrs at = gemm_read_attrs(c->node);
    gemm_dims d = gemm_dims_of(c, &at);
    cs_dtype dt = c->out[0]->dtype;
    /* d/dB (alpha gY op(B)^T) along tB, and d/dA (alpha op(A)^T gY) along tA. */
    if (ad->gin[0] && ad->tin[1])
        gemm_grad_a(&at, &d, dt, gy->data, ad->tin[1]->data, ad->gin[0]->data);
    if (ad->gin[1] && ad->tin[0])
        gemm_grad_b(&at, &d, dt, gy->data, ad->tin[0]->data, ad->gin[1]->data);
    return CS_OK;
}

const cs_op_def cs_op_Gemm = {
    .name = "Gemm",
    .min_opset = 7,
    .flags = 0,
    .infer = gemm_infer,
    .forward = gemm_forward,
    .vjp = gemm_vjp,
    .jvp = gemm_jvp,
    .rop = gemm_rop,
};
