/* MatMul with numpy.matmul semantics (all opsets).
 *
 * A 1-D left operand [K] acts as [1, K] and a 1-D right operand [K] as
 * [K, 1]; the added dimension is dropped from the result.  Leading (batch)
 * dimensions broadcast like numpy.  Kernels:
 *   - B has no batch dimensions (rank <= 2): every batch row of A shares B,
 *     so all of A is one [rows, K] x [K, N] GEMM (the activations x weight
 *     case of Linear layers over sequences);
 *   - otherwise one GEMM per output batch entry, with broadcast operands
 *     addressed by per-dimension matrix strides. */
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"
#include "tensor/blas.h"

typedef struct matmul_shape {
    int64_t m, k, n;
    int batch_rank;                    /* output batch dimensions */
    int64_t batch[CS_MAX_DIMS];
    int64_t a_stride[CS_MAX_DIMS];     /* in whole [m, k] matrices; 0 = broadcast */
    int64_t b_stride[CS_MAX_DIMS];     /* in whole [k, n] matrices; 0 = broadcast */
    int64_t n_batch;                   /* product of batch */
    int64_t a_rows;                    /* m times the product of A's own batch dims */
    bool b_shared;                     /* B has no batch dimensions */
} matmul_shape;

/* Strides, in matrices, of an operand's batch dims (rank r, the leading
 * r dims of dims) along the out_rank output batch dims. */
static void batch_strides(const int64_t *dims, int r, int out_rank, int64_t *stride)
{
    int64_t step = 1;
    for (int i = out_rank - 1; i >= 0; i--) {
        int src = i - (out_rank - r);
        if (src < 0 || dims[src] == 1) {
            stride[i] = 0;
        } else {
            stride[i] = step;
            step *= dims[src];
        }
    }
}

static cs_status matmul_shape_of(const cs_op_call *c, matmul_shape *s, cs_err *err)
{
    const cs_tensor *a = c->in[0], *b = c->in[1];
    if (a->ndim < 1 || b->ndim < 1)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "operands must have rank >= 1 (got %d and %d)",
                          a->ndim, b->ndim);
    int a_batch = a->ndim > 2 ? a->ndim - 2 : 0;
    int b_batch = b->ndim > 2 ? b->ndim - 2 : 0;
    s->m = a->ndim == 1 ? 1 : a->dims[a->ndim - 2];
    s->k = a->dims[a->ndim - 1];
    int64_t k_b = b->ndim == 1 ? b->dims[0] : b->dims[b->ndim - 2];
    s->n = b->ndim == 1 ? 1 : b->dims[b->ndim - 1];
    if (s->k != k_b) {
        char sa[96], sb[96];
        return cs_op_fail(c, err, CS_ERR_SHAPE, "inner dimensions differ: %s x %s",
                          cs_shape_str(a, sa, sizeof sa), cs_shape_str(b, sb, sizeof sb));
    }
    s->batch_rank = a_batch > b_batch ? a_batch : b_batch;
    s->n_batch = 1;
    for (int i = 0; i < s->batch_rank; i++) {
        int ia = i - (s->batch_rank - a_batch), ib = i - (s->batch_rank - b_batch);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[96], sb[96];
            return cs_op_fail(c, err, CS_ERR_SHAPE, "batch dimensions do not broadcast: %s x %s",
                              cs_shape_str(a, sa, sizeof sa), cs_shape_str(b, sb, sizeof sb));
        }
        s->batch[i] = da == 1 ? db : da;
        s->n_batch *= s->batch[i];
    }
    batch_strides(a->dims, a_batch, s->batch_rank, s->a_stride);
    batch_strides(b->dims, b_batch, s->batch_rank, s->b_stride);
    s->b_shared = b_batch == 0;
    s->a_rows = s->m;
    for (int i = 0; i < a_batch; i++)
        s->a_rows *= a->dims[i];
    return CS_OK;
}

static cs_status matmul_infer(cs_op_call *c, cs_err *err)
{
    if (c->n_in != 2)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 2 inputs, got %d", c->n_in);
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
    matmul_shape s;
    st = matmul_shape_of(c, &s, err);
    if (st)
        return st;

    /* BLAS sizes are int: the shared-B path folds A's batch into the rows. */
    if (s.a_rows > INT_MAX || s.m > INT_MAX || s.k > INT_MAX || s.n > INT_MAX)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "dimensions exceed the BLAS int range");

    int64_t dims[CS_MAX_DIMS];
    int r = 0;
    for (int i = 0; i < s.batch_rank; i++)
        dims[r++] = s.batch[i];
    if (c->in[0]->ndim > 1)
        dims[r++] = s.m;
    if (c->in[1]->ndim > 1)
        dims[r++] = s.n;
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, r, dims);
    return CS_OK;
}

/* Row-major y[m, n] = a[m, k] @ b[k, n], all tightly packed. */
static void matmul_gemm(cs_dtype dt, int m, int n, int k, const void *a, const void *b, void *y)
{
    if (dt == CS_DT_FLOAT)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b,
                    n > 1 ? n : 1, 0.0f, y, n > 1 ? n : 1);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, a, k, b,
                    n > 1 ? n : 1, 0.0, y, n > 1 ? n : 1);
}

static cs_status matmul_forward(cs_op_call *c, cs_err *err)
{
    const cs_tensor *a = c->in[0], *b = c->in[1];
    cs_tensor *y = c->out[0];
    matmul_shape s;
    cs_status st = matmul_shape_of(c, &s, err);
    if (st)
        return st;
    if (cs_tensor_numel(y) == 0)
        return CS_OK;
    if (s.k == 0) { /* empty sums */
        memset(y->data, 0, cs_tensor_bytes(y));
        return CS_OK;
    }
    size_t esize = cs_dtype_size(y->dtype);

    if (s.b_shared) {
        /* A as [rows, k] (rows = A's batch x m) times B [k, n]: one GEMM,
         * and the result [rows, n] is already Y's row-major layout. */
        matmul_gemm(y->dtype, (int)s.a_rows, (int)s.n, (int)s.k, a->data, b->data, y->data);
        return CS_OK;
    }

    int64_t idx[CS_MAX_DIMS] = {0};
    int64_t a_mat = s.m * s.k, b_mat = s.k * s.n, y_mat = s.m * s.n;
    const char *ad = a->data, *bd = b->data;
    char *yd = y->data;
    for (int64_t t = 0; t < s.n_batch; t++) {
        int64_t a_off = 0, b_off = 0;
        for (int i = 0; i < s.batch_rank; i++) {
            a_off += idx[i] * s.a_stride[i];
            b_off += idx[i] * s.b_stride[i];
        }
        matmul_gemm(y->dtype, (int)s.m, (int)s.n, (int)s.k, ad + (size_t)(a_off * a_mat) * esize,
                    bd + (size_t)(b_off * b_mat) * esize, yd + (size_t)(t * y_mat) * esize);
        /* Advance the batch index (row-major odometer). */
        for (int i = s.batch_rank - 1; i >= 0; i--) {
            if (++idx[i] < s.batch[i])
                break;
            idx[i] = 0;
        }
    }
    return CS_OK;
}

const cs_op_def cs_op_MatMul = {
    .name = "MatMul",
    .min_opset = 1,
    .flags = 0,
    .infer = matmul_infer,
    .forward = matmul_forward,
};
