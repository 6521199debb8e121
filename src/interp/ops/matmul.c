/* MatMul with numpy.matmul semantics (all opsets).
 *
 * A 1-D left operand [K] acts as [1, K] and a 1-D right operand [K] as
 * [K, 1]; the added dimension is dropped from the result.  Leading (batch)
 * dimensions broadcast like numpy.  Kernels:
 *   - B has no batch dimensions (rank <= 2): every batch row of A shares B,
 *     so all of A is one [rows, K] x [K, N] GEMM (the activations x weight
 *     case of Linear layers over sequences);
 *   - otherwise one GEMM per output batch entry, with broadcast operands
 *     addressed by per-dimension matrix strides.
 *
 * Derivatives, per batch entry of Y = A B (1-D operands in their matrix view,
 * which has the same row-major layout, so gradients need no reshaping):
 *   gA += gY B^T,   gB += A^T gY,   tY = tA B + A tB.
 * An operand broadcast along a batch dimension receives the sum of the
 * gradients of every entry that read it: the per-entry GEMMs accumulate into
 * the same block with beta = 1.  With a shared B the rows of all entries
 * stack, so each gradient is again one GEMM: gB = A^T gY over the
 * [rows, k] x [rows, n] flattening sums the batch in the inner dimension.
 * Y is bilinear in (A, B), so the R-op's second-order term is the vjp with
 * the other operand replaced by its tangent: gA += gY tB^T, gB += tA^T gY. */
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

/* Row-major x[m, n] = op(p) @ op(q) + beta * x, all tightly packed:
 * p is [m, k] (or [k, m] when tp), q is [k, n] (or [n, k] when tq). */
static void matmul_gemm(cs_dtype dt, bool tp, bool tq, int m, int n, int k, const void *p,
                        const void *q, double beta, void *x)
{
    int ldp = tp ? m : k, ldq = tq ? k : n;
    enum CBLAS_TRANSPOSE op_p = tp ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE op_q = tq ? CblasTrans : CblasNoTrans;
    ldp = ldp > 1 ? ldp : 1; /* BLAS wants leading dimensions >= 1 */
    ldq = ldq > 1 ? ldq : 1;
    if (dt == CS_DT_FLOAT)
        cblas_sgemm(CblasRowMajor, op_p, op_q, m, n, k, 1.0f, p, ldp, q, ldq, (float)beta, x,
                    n > 1 ? n : 1);
    else
        cblas_dgemm(CblasRowMajor, op_p, op_q, m, n, k, 1.0, p, ldp, q, ldq, beta, x,
                    n > 1 ? n : 1);
}

/* Walks the output batch entries: for entry t, the matrix offsets (in whole
 * matrices) of A and B. */
typedef struct batch_walk {
    int64_t idx[CS_MAX_DIMS];
    int64_t t;
} batch_walk;

static void batch_offsets(const matmul_shape *s, const batch_walk *w, int64_t *a_off,
                          int64_t *b_off)
{
    *a_off = 0;
    *b_off = 0;
    for (int i = 0; i < s->batch_rank; i++) {
        *a_off += w->idx[i] * s->a_stride[i];
        *b_off += w->idx[i] * s->b_stride[i];
    }
}

/* Advance the batch index (row-major odometer). */
static void batch_next(const matmul_shape *s, batch_walk *w)
{
    w->t++;
    for (int i = s->batch_rank - 1; i >= 0; i--) {
        if (++w->idx[i] < s->batch[i])
            break;
        w->idx[i] = 0;
    }
}

/* y = a @ b + beta * y over every batch entry (beta 0 or 1). */
static void matmul_apply(const matmul_shape *s, cs_dtype dt, const void *a, const void *b,
                         double beta, void *y)
{
    if (s->b_shared) {
        /* A as [rows, k] (rows = A's batch x m) times B [k, n]: one GEMM,
         * and the result [rows, n] is already Y's row-major layout. */
        matmul_gemm(dt, false, false, (int)s->a_rows, (int)s->n, (int)s->k, a, b, beta, y);
        return;
    }
    size_t esize = cs_dtype_size(dt);
    int64_t a_mat = s->m * s->k, b_mat = s->k * s->n, y_mat = s->m * s->n;
    const char *ad = a, *bd = b;
    char *yd = y;
    batch_walk w = {{0}, 0};
    for (; w.t < s->n_batch; batch_next(s, &w)) {
        int64_t a_off, b_off;
        batch_offsets(s, &w, &a_off, &b_off);
        matmul_gemm(dt, false, false, (int)s->m, (int)s->n, (int)s->k,
                    ad + (size_t)(a_off * a_mat) * esize, bd + (size_t)(b_off * b_mat) * esize,
                    beta, yd + (size_t)(w.t * y_mat) * esize);
    }
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
    matmul_apply(&s, y->dtype, a->data, b->data, 0.0, y->data);
    return CS_OK;
}

/* gA += gY @ b^T, b being B (vjp) or its tangent (rop).  Broadcast batch
 * dims of A are summed by accumulating several entries into one block. */
static void matmul_grad_a(const matmul_shape *s, cs_dtype dt, const void *gy, const void *b,
                          void *ga)
{
    if (s->b_shared) {
        /* gA[rows, k] += gY[rows, n] B^T[n, k]: one GEMM for all entries. */
        matmul_gemm(dt, false, true, (int)s->a_rows, (int)s->k, (int)s->n, gy, b, 1.0, ga);
        return;
    }
    size_t esize = cs_dtype_size(dt);
    int64_t a_mat = s->m * s->k, b_mat = s->k * s->n, y_mat = s->m * s->n;
    const char *gyd = gy, *bd = b;
    char *gad = ga;
    batch_walk w = {{0}, 0};
    for (; w.t < s->n_batch; batch_next(s, &w)) {
        int64_t a_off, b_off;
        batch_offsets(s, &w, &a_off, &b_off);
        /* [m, k] += [m, n] @ [k, n]^T */
        matmul_gemm(dt, false, true, (int)s->m, (int)s->k, (int)s->n,
                    gyd + (size_t)(w.t * y_mat) * esize, bd + (size_t)(b_off * b_mat) * esize,
                    1.0, gad + (size_t)(a_off * a_mat) * esize);
    }
}

/* gB += a^T @ gY, a being A (vjp) or its tangent (rop).  Broadcast batch
 * dims of B are summed by accumulating several entries into one block. */
static void matmul_grad_b(const matmul_shape *s, cs_dtype dt, const void *gy, const void *a,
                          void *gb)
{
    if (s->b_shared) {
        /* gB[k, n] += A^T[k, rows] gY[rows, n]: the batch is summed inside
         * the one GEMM's inner dimension. */
        matmul_gemm(dt, true, false, (int)s->k, (int)s->n, (int)s->a_rows, a, gy, 1.0, gb);
        return;
    }
    size_t esize = cs_dtype_size(dt);
    int64_t a_mat = s->m * s->k, b_mat = s->k * s->n, y_mat = s->m * s->n;
    const char *gyd = gy, *ad = a;
    char *gbd = gb;
    batch_walk w = {{0}, 0};
    for (; w.t < s->n_batch; batch_next(s, &w)) {
        int64_t a_off, b_off;
        batch_offsets(s, &w, &a_off, &b_off);
        /* [k, n] += [m, k]^T @ [m, n] */
        matmul_gemm(dt, true, false, (int)s->k, (int)s->n, (int)s->m,
                    ad + (size_t)(a_off * a_mat) * esize, gyd + (size_t)(w.t * y_mat) * esize,
                    1.0, gbd + (size_t)(b_off * b_mat) * esize);
    }
}

/* Shape of the call, and whether any product is non-empty. */
static cs_status matmul_ad_shape(const cs_op_call *c, matmul_shape *s, bool *nonempty, cs_err *err)
{
    cs_status st = matmul_shape_of(c, s, err);
    *nonempty = st == CS_OK && s->k > 0 && s->m > 0 && s->n > 0 && s->n_batch > 0;
    return st;
}

static cs_status matmul_vjp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    const cs_tensor *gy = ad->gout[0]; /* Y's shape */
    if (!gy)
        return CS_OK;
    matmul_shape s;
    bool nonempty;
    cs_status st = matmul_ad_shape(c, &s, &nonempty, err);
    if (st || !nonempty) /* an empty product: every gradient term is zero */
        return st;
    cs_dtype dt = c->out[0]->dtype;
    if (ad->gin[0])
        matmul_grad_a(&s, dt, gy->data, c->in[1]->data, ad->gin[0]->data);
    if (ad->gin[1])
        matmul_grad_b(&s, dt, gy->data, c->in[0]->data, ad->gin[1]->data);
    return CS_OK;
}

static cs_status matmul_jvp(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    cs_tensor *ty = ad->tout[0];
    if (!ty)
        return CS_OK;
    matmul_shape s;
    bool nonempty;
    cs_status st = matmul_ad_shape(c, &s, &nonempty, err);
    if (st)
        return st;
    const cs_tensor *ta = ad->tin[0], *tb = ad->tin[1];
    if (!nonempty || (!ta && !tb)) {
        memset(ty->data, 0, cs_tensor_bytes(ty));
        return CS_OK;
    }
    /* tY = tA B + A tB: the first present term writes, the second adds. */
    if (ta)
        matmul_apply(&s, ty->dtype, ta->data, c->in[1]->data, 0.0, ty->data);
    if (tb)
        matmul_apply(&s, ty->dtype, c->in[0]->data, tb->data, ta ? 1.0 : 0.0, ty->data);
    return CS_OK;
}

static cs_status matmul_rop(cs_op_call *c, const cs_op_ad *ad, cs_err *err)
{
    const cs_tensor *gy = ad->gout[0];
    if (!gy)
        return CS_OK;
    matmul_shape s;
    bool nonempty;
    cs_status st = matmul_ad_shape(c, &s, &nonempty, err);
    if (st || !nonempty)
        return st;
    cs_dtype dt = c->out[0]->dtype;
    /* d/dB (gY B^T) along tB, and d/dA (A^T gY) along tA. */
    if (ad->gin[0] && ad->tin[1])
        matmul_grad_a(&s, dt, gy->data, ad->tin[1]->data, ad->gin[0]->data);
    if (ad->gin[1] && ad->tin[0])
        matmul_grad_b(&s, dt, gy->data, ad->tin[0]->data, ad->gin[1]->data);
    return CS_OK;
}

const cs_op_def cs_op_MatMul = {
    .name = "MatMul",
    .min_opset = 1,
    .flags = 0,
    .infer = matmul_infer,
    .forward = matmul_forward,
    .vjp = matmul_vjp,
    .jvp = matmul_jvp,
    .rop = matmul_rop,
};
