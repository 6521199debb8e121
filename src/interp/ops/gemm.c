/* Gemm: Y = alpha * op(A) @ op(B) + beta * C, op = optional transpose.
 *
 * Semantics of opset 7 onward: C is broadcast unidirectionally to [M, N]
 * (no `broadcast` attribute) and, as opset 11 allows, may be omitted.  The
 * kernel writes beta * C (broadcast) into Y and lets one sgemm / dgemm add
 * alpha * op(A) @ op(B) to it. */
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

static cs_status gemm_forward(cs_op_call *c, cs_err *err)
{
    const cs_tensor *a = c->in[0], *b = c->in[1], *bias = gemm_bias(c);
    cs_tensor *y = c->out[0];
    gemm_attrs at = gemm_read_attrs(c->node);
    int m = (int)y->dims[0], n = (int)y->dims[1];
    int k = (int)(at.trans_a ? a->dims[0] : a->dims[1]);
    if (m == 0 || n == 0)
        return CS_OK;

    if (bias)
        gemm_fill_bias(y, bias, at.beta);
    if (k == 0) { /* empty product: Y = beta * C, or 0 */
        if (!bias)
            memset(y->data, 0, cs_tensor_bytes(y));
        return CS_OK;
    }
    double blas_beta = bias ? 1.0 : 0.0; /* BLAS beta 0: Y is written, not read */

    /* Row-major storage: A is [m, k] or [k, m], B is [k, n] or [n, k]. */
    int lda = blas_ld(a->dims[1]), ldb = blas_ld(b->dims[1]), ldy = n;
    enum CBLAS_TRANSPOSE ta = at.trans_a ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tb = at.trans_b ? CblasTrans : CblasNoTrans;
    if (y->dtype == CS_DT_FLOAT)
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, (float)at.alpha, a->data, lda, b->data, ldb,
                    (float)blas_beta, y->data, ldy);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, at.alpha, a->data, lda, b->data, ldb,
                    blas_beta, y->data, ldy);
    return CS_OK;
}

const cs_op_def cs_op_Gemm = {
    .name = "Gemm",
    .min_opset = 7,
    .flags = 0,
    .infer = gemm_infer,
    .forward = gemm_forward,
};
