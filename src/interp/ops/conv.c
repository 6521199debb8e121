/* Conv (1-D, 2-D, 3-D), lowered to im2col + GEMM; and the sliding-window
 * geometry that the pooling operators share (interp/window.h, tensor/im2col.h).
 *
 * Y[n, m, o] = B[m] + sum_{c in group(m), k} W[m, c - c0(m), k] * X[n, c, o*s - p + k*d]
 * for output channel m of group g = m / (M/group), c0 = g * (C/group)
 * (ONNX Conv, opsets 1 to 22: the attributes did not change meaning).
 *
 * Lowering.  The patches of Cg = C/group channels form a K x T matrix
 * (K = Cg * prod(kernel), T = prod(out)) whose rows follow the weight's
 * (c, k_1, ..., k_d) order, so group g is one GEMM
 *     Y_g [Mg, T] = W_g [Mg, K] * col_g [K, T].
 * With T large (early layers) that GEMM is already well shaped and writes
 * straight into Y (row-major [M, T] per sample is NCHW), so we run one GEMM
 * per (sample, group).  With T small (late layers: 7x7 = 49 positions) the
 * per-sample GEMMs are thin, and BLAS spends its time on call and threading
 * overhead; there we unfold a chunk of samples side by side into one
 * K x (nb*T) matrix, run one GEMM per group over the chunk and scatter the
 * [Mg, nb*T] result back to NCHW.  The scatter is a copy of the output, cheap
 * next to the GEMM's K multiply-adds per output element.  The chunk holds
 * about CONV_GEMM_COLS columns, which bounds the scratch.  A 1x1 kernel with
 * stride 1 and no padding needs no unfolding at all: X's [C, T] rows are the
 * patch matrix, and GEMMs straight on X beat copying samples side by side
 * (measured on 7x7 inputs), so that case always runs per sample.
 *
 * Derivative rules.  Y is bilinear in (X, W) plus B, so the jvp is the
 * forward twice (tX with W, X with tW) plus tB, and the vjp is the
 * transposed lowering: gW_g [Mg, K] += gY_g [Mg, T] col_g^T, and
 * gX += col2im(W_g^T gY_g), with the same per-sample / chunked batching as
 * the forward.  The R-op's second-order term is the same backward with the
 * tangents tX, tW in place of X, W (no term for B, which enters linearly). */
#include "interp/window.h"

#include <limits.h>
#include <string.h>

#include "tensor/accum.h"
#include "tensor/blas.h"

/* Columns per GEMM that the chunking aims for (see above); -D overrides it
 * for tuning. */
#ifndef CONV_GEMM_COLS
#define CONV_GEMM_COLS 1024
#endif

/* ---- Conv ---- */

typedef struct conv_plan {
    cs_conv_geom g;        /* channels = C (all groups: one unfolding serves every group) */
    int64_t batch;         /* N */
    int64_t group;
    int64_t c_group;       /* Cg = C / group */
    int64_t m_total;       /* M */
    int64_t m_group;       /* Mg = M / group */
    int64_t k_rows;        /* K = Cg * prod(kernel): patch rows per group */
    int64_t chunk;         /* samples per GEMM */
    bool direct;           /* 1x1, stride 1, no padding (chunk 1): X is the patch matrix */
    int64_t col_elems;     /* scratch: patch matrix [C * prod(kernel), chunk * T] */
    int64_t tmp_elems;     /* scratch: GEMM result [M, chunk * T] when chunk > 1 */
} conv_plan;

static const cs_tensor *conv_bias(const cs_op_call *c)
{
    return c->n_in > 2 ? c->in[2] : NULL;
}

/* Validates the call and decides the lowering; infer and forward both call
 * it, so the scratch layout cannot drift between them. */
static cs_status conv_make_plan(const cs_op_call *c, conv_plan *p, cs_err *err)
{
    cs_status st = cs_conv_check_operands(c, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0], *w = c->in[1];

    memset(p, 0, sizeof *p);
    st = cs_conv_geometry(c->node, x, w, &p->g, &p->group, err);
    if (st)
        return st;
    p->batch = x->dims[0];
    p->c_group = p->g.channels;
    p->g.channels = x->dims[1];
    p->m_total = w->dims[0];
    p->m_group = p->m_total / p->group;
    p->k_rows = p->c_group * p->g.kernel_size;

    if ((st = cs_conv_check_bias(c, p->m_total, err)))
        return st;

    const int64_t t = p->g.out_size;
    bool pointwise = p->g.kernel_size == 1;
    for (int i = 0; i < CS_CONV_AXES; i++)
        pointwise = pointwise && p->g.stride[i] == 1 && p->g.pad_begin[i] == 0 &&
                    p->g.pad_end[i] == 0;
    p->chunk = 1;
    if (!pointwise && t > 0 && t < CONV_GEMM_COLS && p->batch > 1) {
        p->chunk = cs_ceil_div(CONV_GEMM_COLS, t);
        if (p->chunk > p->batch)
            p->chunk = p->batch;
    }
    p->direct = pointwise;

    long long cols, col_elems = 0, tmp_elems = 0;
    if (cs_mul_overflow_i64(p->chunk, t, &cols) || cols > INT_MAX || p->m_group > INT_MAX ||
        p->k_rows > INT_MAX)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "GEMM dimensions exceed the BLAS int range");
    if (!p->direct && (cs_mul_overflow_i64(p->g.channels * p->g.kernel_size, cols, &col_elems) ||
                       col_elems > INT64_MAX / 16))
        return cs_op_fail(c, err, CS_ERR_NOMEM, "im2col workspace size overflows");
    if (p->chunk > 1 && cs_mul_overflow_i64(p->m_total, cols, &tmp_elems))
        return cs_op_fail(c, err, CS_ERR_NOMEM, "GEMM workspace size overflows");
    p->col_elems = col_elems;
    p->tmp_elems = tmp_elems;
    return CS_OK;
}

static cs_status conv_infer(cs_op_call *c, cs_err *err)
{
    conv_plan p;
    cs_status st = conv_make_plan(c, &p, err);
    if (st)
        return st;
    int64_t dims[2 + CS_CONV_AXES];
    int rank = p.g.spatial_rank;
    dims[0] = p.batch;
    dims[1] = p.m_total;
    for (int i = 0; i < rank; i++)
        dims[2 + i] = p.g.out[CS_CONV_AXES - rank + i];
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, 2 + rank, dims);
    /* One patch buffer and one [M, chunk * T] buffer per thread (the
     * lowering splits chunks over threads); the rules walk the same
     * lowering, the patch buffer reused for the column gradient and the
     * other for the gathered gY. */
    c->scratch_bytes = (size_t)(p.col_elems + p.tmp_elems) * cs_dtype_size(c->in[0]->dtype) *
                       (size_t)cs_omp_max_threads();
    c->ad_scratch_bytes = c->scratch_bytes;
    return CS_OK;
}

/* y = (accumulate ? y : 0) + bias + conv(x, w), the forward's lowering.
 * Shapes: x [N, C, in], w [M, Cg, kernel] = per group [Mg, K], bias [M] or
 * NULL, y [N, M, out]; scratch as conv_plan says.  The jvp reuses it: Conv
 * is linear in X for fixed W and in W for fixed X. */
#define DEFINE_CONV_APPLY(T, SUF, GEMM)                                                          \
    static void conv_apply_##SUF(const conv_plan *p, const T *x, const T *w, const T *bias,      \
                                 T *y, bool accumulate, T *scratch)                              \
    {                                                                                            \
        const int64_t n_pos = p->g.out_size, m_all = p->m_total, mg = p->m_group;               \
        const int64_t kr = p->k_rows, x_sample = p->g.channels * p->g.in_size;                  \
        /* Chunks of samples are independent (disjoint rows of y): each     \
         * thread lowers its own chunks in its own part of the scratch      \
         * (conv_infer sizes it per thread), GEMMs included. */              \
        const int64_t n_chunks = (p->batch + p->chunk - 1) / p->chunk;                           \
        _Pragma("omp parallel if (p->batch * m_all * n_pos >= CS_OMP_MIN_ELEMS)")                \
        {                                                                                        \
        int64_t c_lo, c_hi;                                                                      \
        cs_omp_slice(n_chunks, &c_lo, &c_hi);                                                    \
        T *col = scratch + (p->col_elems + p->tmp_elems) * (int64_t)cs_omp_thread(); /* [C * prod(kernel), chunk * T] */ \
        T *tmp = col + p->col_elems;         /* [M, chunk * T] */                                \
        for (int64_t ci = c_lo; ci < c_hi && p->chunk == 1; ci++) {                              \
            const int64_t n = ci;                                                                \
            T *yn = y + n * m_all * n_pos; /* [M, T] */                                          \
            const T *pm = x + n * x_sample;                                                      \
            if (!p->direct) {                                                                    \
                cs_im2col_##SUF(&p->g, pm, col, n_pos);                                          \
                pm = col;                                                                        \
            }                                                                                    \
            if (bias && accumulate)                                                              \
                for (int64_t m = 0; m < m_all; m++)                                              \
                    for (int64_t t = 0; t < n_pos; t++)                                          \
                        yn[m * n_pos + t] += bias[m];                                            \
            else if (bias)                                                                       \
                for (int64_t m = 0; m < m_all; m++)                                              \
                    for (int64_t t = 0; t < n_pos; t++)                                          \
                        yn[m * n_pos + t] = bias[m];                                             \
            T beta = bias || accumulate ? 1 : 0;                                                 \
            for (int64_t gi = 0; gi < p->group; gi++)                                            \
                GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mg, (int)n_pos,            \
                     (int)kr, 1, w + gi * mg * kr, (int)kr, pm + gi * kr * n_pos,               \
                     (int)n_pos, beta, yn + gi * mg * n_pos, (int)n_pos);                        \
        }                                                                                        \
        for (int64_t ci = c_lo; ci < c_hi && p->chunk > 1; ci++) {                               \
            const int64_t n0 = ci * p->chunk;                                                    \
            int64_t nb = p->batch - n0 < p->chunk ? p->batch - n0 : p->chunk;                    \
            int64_t ld = nb * n_pos;                                                             \
            for (int64_t j = 0; j < nb; j++) /* samples' patches: disjoint columns */            \
                cs_im2col_##SUF(&p->g, x + (n0 + j) * x_sample, col + j * n_pos, ld);           \
            for (int64_t gi = 0; gi < p->group; gi++)                                            \
                GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mg, (int)ld, (int)kr, 1,   \
                     w + gi * mg * kr, (int)kr, col + gi * kr * ld, (int)ld, 0,                  \
                     tmp + gi * mg * ld, (int)ld);                                               \
            /* tmp [M, nb, T] -> y [nb, M, T], adding the bias */                                \
            for (int64_t j = 0; j < nb; j++)                                                     \
                for (int64_t m = 0; m < m_all; m++) {                                            \
                    const T *src = tmp + m * ld + j * n_pos;                                     \
                    T *dst = y + ((n0 + j) * m_all + m) * n_pos;                                 \
                    T b = bias ? bias[m] : 0;                                                    \
                    if (accumulate)                                                              \
                        for (int64_t t = 0; t < n_pos; t++)                                      \
                            dst[t] += src[t] + b;                                                \
                    else                                                                         \
                        for (int64_t t = 0; t < n_pos; t++)                                      \
                            dst[t] = src[t] + b;                                                 \
                }                                                                                \
        }                                                                                        \
        }                                                                                        \
    }

DEFINE_CONV_APPLY(float, f32, cblas_sgemm)
DEFINE_CONV_APPLY(double, f64, cblas_dgemm)

/* The transpose of the lowering, for one gY [N, M, out]:
 *   gw [M, Cg, kernel] += per group gY_g [Mg, T] * col_g(x)^T [T, K]   (x given)
 *   gx [N, C, in]      += col2im(W_g^T [K, Mg] * gY_g [Mg, T])        (w given)
 *   gb [M]             += sum over samples and positions of gY
 * each target NULL when not wanted.  The vjp passes the forward's X and W;
 * the R-op passes the tangents instead (see conv_rop).  Same batching as the
 * forward: per sample, gY_n is already the [M, T] matrix the GEMMs want;
 * per chunk, gY is gathered into tmp [M, nb*T] to sit beside the chunk's
 * patches, and the column gradient of the chunk comes out of one GEMM per
 * group before col2im folds it back per sample.  The patch buffer holds the
 * patches of x for gw first, then the column gradient for gx. */
#define DEFINE_CONV_BACKWARD(T, SUF, GEMM)                                                       \
    static void conv_backward_##SUF(const conv_plan *p, const T *x, const T *w, const T *gy,     \
                                    T *gx, T *gw, T *gb, T *scratch)                             \
    {                                                                                            \
        const int64_t n_pos = p->g.out_size, m_all = p->m_total, mg = p->m_group;               \
        const int64_t kr = p->k_rows, x_sample = p->g.channels * p->g.in_size;                  \
        T *col = scratch;                    /* [C * prod(kernel), chunk * T] */                 \
        T *tmp = scratch + p->col_elems;     /* [M, chunk * T] */                                \
        if (gb)                                                                                  \
            for (int64_t m = 0; m < m_all; m++) {                                                \
                double s = 0;                                                                    \
                for (int64_t n = 0; n < p->batch; n++)                                           \
                    s += cs_sum_##SUF(gy + (n * m_all + m) * n_pos, n_pos);                      \
                gb[m] += (T)s;                                                                   \
            }                                                                                    \
        if (!gx && !gw)                                                                          \
            return;                                                                              \
        if (p->chunk == 1) {                                                                     \
            for (int64_t n = 0; n < p->batch; n++) {                                             \
                const T *gyn = gy + n * m_all * n_pos; /* [M, T] */                              \
                if (gw) {                                                                        \
                    const T *pm = x + n * x_sample; /* patches [group * K, T] */                 \
                    if (!p->direct) {                                                            \
                        cs_im2col_##SUF(&p->g, pm, col, n_pos);                                  \
                        pm = col;                                                                \
                    }                                                                            \
                    for (int64_t gi = 0; gi < p->group; gi++)                                    \
                        GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mg, (int)kr,          \
                             (int)n_pos, 1, gyn + gi * mg * n_pos, (int)n_pos,                   \
                             pm + gi * kr * n_pos, (int)n_pos, 1, gw + gi * mg * kr, (int)kr);   \
                }                                                                                \
                if (gx) {                                                                        \
                    T *gxn = gx + n * x_sample; /* [C, in] */                                    \
                    /* direct: X's [C, T] rows are the patches, so the column gradient       \
                     * is gX_n itself and the GEMM accumulates into it */                        \
                    T *dst = p->direct ? gxn : col;                                              \
                    for (int64_t gi = 0; gi < p->group; gi++)                                    \
                        GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kr, (int)n_pos,       \
                             (int)mg, 1, w + gi * mg * kr, (int)kr, gyn + gi * mg * n_pos,       \
                             (int)n_pos, p->direct ? 1 : 0, dst + gi * kr * n_pos, (int)n_pos);  \
                    if (!p->direct)                                                              \
                        cs_col2im_##SUF(&p->g, col, n_pos, gxn);                                 \
                }                                                                                \
            }                                                                                    \
            return;                                                                              \
        }                                                                                        \
        /* gx: chunks touch disjoint samples, so they are split over threads, \
         * each with its own part of the scratch.  gw sums over all chunks:  \
         * that pass stays in chunk order, so the result does not depend on   \
         * the thread count. */                                               \
        const int64_t n_chunks = (p->batch + p->chunk - 1) / p->chunk;                           \
        _Pragma("omp parallel if (gx && p->batch * m_all * n_pos >= CS_OMP_MIN_ELEMS)")          \
        {                                                                                        \
        int64_t c_lo, c_hi;                                                                      \
        cs_omp_slice(n_chunks, &c_lo, &c_hi);                                                    \
        T *tcol = scratch + (p->col_elems + p->tmp_elems) * (int64_t)cs_omp_thread();           \
        T *ttmp = tcol + p->col_elems;                                                           \
        for (int64_t ci = c_lo; ci < c_hi && gx; ci++) {                                         \
            const int64_t n0 = ci * p->chunk;                                                    \
            int64_t nb = p->batch - n0 < p->chunk ? p->batch - n0 : p->chunk;                    \
            int64_t ld = nb * n_pos;                                                             \
            for (int64_t j = 0; j < nb; j++) /* gy [nb, M, T] -> tmp [M, nb, T] */               \
                for (int64_t m = 0; m < m_all; m++)                                              \
                    memcpy(ttmp + m * ld + j * n_pos, gy + ((n0 + j) * m_all + m) * n_pos,       \
                           (size_t)n_pos * sizeof(T));                                           \
            for (int64_t gi = 0; gi < p->group; gi++) /* col = W_g^T tmp_g, [K, nb*T] */         \
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kr, (int)ld, (int)mg, 1,     \
                     w + gi * mg * kr, (int)kr, ttmp + gi * mg * ld, (int)ld, 0,                 \
                     tcol + gi * kr * ld, (int)ld);                                              \
            for (int64_t j = 0; j < nb; j++) /* into disjoint samples of gx */                   \
                cs_col2im_##SUF(&p->g, tcol + j * n_pos, ld, gx + (n0 + j) * x_sample);         \
        }                                                                                        \
        }                                                                                        \
        for (int64_t n0 = 0; gw && n0 < p->batch; n0 += p->chunk) {                              \
            int64_t nb = p->batch - n0 < p->chunk ? p->batch - n0 : p->chunk;                    \
            int64_t ld = nb * n_pos;                                                             \
            _Pragma("omp parallel for schedule(static) if (nb * kr * n_pos >= CS_OMP_MIN_ELEMS)") \
            for (int64_t j = 0; j < nb; j++) { /* gy -> tmp, and the samples' patches */         \
                for (int64_t m = 0; m < m_all; m++)                                              \
                    memcpy(tmp + m * ld + j * n_pos, gy + ((n0 + j) * m_all + m) * n_pos,        \
                           (size_t)n_pos * sizeof(T));                                           \
                cs_im2col_##SUF(&p->g, x + (n0 + j) * x_sample, col + j * n_pos, ld);           \
            }                                                                                    \
            for (int64_t gi = 0; gi < p->group; gi++)                                            \
                GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mg, (int)kr, (int)ld, 1,     \
                     tmp + gi * mg * ld, (int)ld, col + gi * kr * ld, (int)ld, 1,                \
                     gw + gi * mg * kr, (int)kr);                                                \
        }                                                                                        \
    }

DEFINE_CONV_BACKWARD(float, f32, cblas_sgemm)
DEFINE_CONV_BACKWARD(double, f64, cblas_dgemm)

static const void *tensor_data(const cs_tensor *t)
{
    return t ? t->data : NULL;
}

static void *tensor_data_mut(cs_tensor *t)
{
    return t ? t->data : NULL;
}

static cs_status conv_forward(cs_op_call *c, cs_err *err)
{
    conv_plan p;
    cs_status st = conv_make_plan(c, &p, err);
    if (st)
        return st;
    if (p.batch == 0 || p.g.out_size == 0)
        return CS_OK;
    const void *b = tensor_data(conv_bias(c));
    if (c->in[0]->dtype == CS_DT_FLOAT)
        conv_apply_f32(&p, c->in[0]->data, c->in[1]->data, b, c->out[0]->data, false, c->scratch);
    else
        conv_apply_f64(&p, c->in[0]->data, c->in[1]->data, b, c->out[0]->data, false, c->scratch);
    return CS_OK;
}

/* ---- derivative rules ---- */

/* A gradient or tangent must be shaped and typed like its value: a mismatch
 * is an engine bug, reported rather than written past. */
static cs_status conv_check_ad(const cs_op_call *c, const cs_tensor *t, const cs_tensor *value,
                               const char *what, cs_err *err)
{
    if (t && (t->dtype != value->dtype || !cs_tensor_same_shape(t, value) || !t->data))
        return cs_op_fail(c, err, CS_ERR_SHAPE, "%s does not match its value's type and shape",
                          what);
    return CS_OK;
}

/* Plan plus the shape checks of the rule's tensors (NULL ones skipped). */
static cs_status conv_ad_plan(const cs_op_call *c, conv_plan *p, cs_tensor *const *in_side,
                              const cs_tensor *out_side, const char *in_what,
                              const char *out_what, cs_err *err)
{
    cs_status st = conv_make_plan(c, p, err);
    for (int i = 0; i < c->n_in && !st; i++)
        if (c->in[i])
            st = conv_check_ad(c, in_side[i], c->in[i], in_what, err);
    if (!st)
        st = conv_check_ad(c, out_side, c->out[0], out_what, err);
    return st;
}

/* vjp: gX += conv^T(gY; W), gW += gY (*) patches(X), gB += sum gY. */
static cs_status conv_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    conv_plan p;
    cs_status st = conv_ad_plan(c, &p, a->gin, a->gout[0], "gradient", "gradient of Y", err);
    if (st)
        return st;
    const cs_tensor *gy = a->gout[0];
    if (!gy || p.batch == 0 || p.g.out_size == 0)
        return CS_OK;
    void *gx = tensor_data_mut(a->gin[0]), *gw = tensor_data_mut(a->gin[1]);
    void *gb = c->n_in > 2 && c->in[2] ? tensor_data_mut(a->gin[2]) : NULL;
    if (c->in[0]->dtype == CS_DT_FLOAT)
        conv_backward_f32(&p, c->in[0]->data, c->in[1]->data, gy->data, gx, gw, gb, c->scratch);
    else
        conv_backward_f64(&p, c->in[0]->data, c->in[1]->data, gy->data, gx, gw, gb, c->scratch);
    return CS_OK;
}

/* jvp: tY = conv(tX, W) + conv(X, tW) + tB (product rule of the bilinear
 * map; each term is the forward on other data). */
static cs_status conv_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    conv_plan p;
    cs_status st = conv_ad_plan(c, &p, a->tin, a->tout[0], "tangent", "tangent of Y", err);
    if (st)
        return st;
    cs_tensor *ty = a->tout[0];
    if (!ty)
        return CS_OK;
    const cs_tensor *tx = a->tin[0], *tw = a->tin[1];
    const cs_tensor *tb = c->n_in > 2 && c->in[2] ? a->tin[2] : NULL;
    if (p.batch == 0 || p.g.out_size == 0)
        return CS_OK;
    bool f32 = c->in[0]->dtype == CS_DT_FLOAT, written = false;
    if (tx) {
        if (f32)
            conv_apply_f32(&p, tx->data, c->in[1]->data, tensor_data(tb), ty->data, false,
                           c->scratch);
        else
            conv_apply_f64(&p, tx->data, c->in[1]->data, tensor_data(tb), ty->data, false,
                           c->scratch);
        written = true;
    }
    if (tw) {
        const void *b = written ? NULL : tensor_data(tb);
        if (f32)
            conv_apply_f32(&p, c->in[0]->data, tw->data, b, ty->data, written, c->scratch);
        else
            conv_apply_f64(&p, c->in[0]->data, tw->data, b, ty->data, written, c->scratch);
        written = true;
    }
    if (!written) { /* only the bias moves: tY[n, m, :] = tB[m] */
        int64_t rows = p.batch * p.m_total, n_pos = p.g.out_size;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t t = 0; t < n_pos; t++)
                cs_tensor_set_f64(ty, r * n_pos + t,
                                  tb ? cs_tensor_get_f64(tb, r % p.m_total) : 0.0);
    }
    return CS_OK;
}

/* R-op.  Y is bilinear in (X, W), so the second derivative of <gY, Y> pairs
 * only X with W:
 *   gX += d/dW (J_X^T gY) tW = conv^T(gY; tW)
 *   gW += d/dX (J_W^T gY) tX = gY (*) patches(tX)
 * i.e. the backward with the tangents in place of X and W; B is linear and
 * gets nothing (Pearlmutter 1994, R{.} of the backward pass). */
static cs_status conv_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    conv_plan p;
    cs_status st = conv_ad_plan(c, &p, a->gin, a->gout[0], "gradient", "gradient of Y", err);
    for (int i = 0; i < c->n_in && !st; i++)
        if (c->in[i])
            st = conv_check_ad(c, a->tin[i], c->in[i], "tangent", err);
    if (st)
        return st;
    const cs_tensor *gy = a->gout[0], *tx = a->tin[0], *tw = a->tin[1];
    if (!gy || p.batch == 0 || p.g.out_size == 0)
        return CS_OK;
    void *gx = tw ? tensor_data_mut(a->gin[0]) : NULL;
    void *gw = tx ? tensor_data_mut(a->gin[1]) : NULL;
    if (c->in[0]->dtype == CS_DT_FLOAT)
        conv_backward_f32(&p, tensor_data(tx), tensor_data(tw), gy->data, gx, gw, NULL, c->scratch);
    else
        conv_backward_f64(&p, tensor_data(tx), tensor_data(tw), gy->data, gx, gw, NULL, c->scratch);
    return CS_OK;
}

const cs_op_def cs_op_Conv = {
    .name = "Conv",
    .min_opset = 1,
    .infer = conv_infer,
    .forward = conv_forward,
    .vjp = conv_vjp,
    .jvp = conv_jvp,
    .rop = conv_rop,
};
