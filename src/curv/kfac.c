#include "curv/kfac.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curv/alloc.h"
#include "interp/autodiff.h"
#include "interp/window.h"
#include "tensor/blas.h"

/* ---- layout ---- */

int cs_kfac_input_value(const cs_graph *g, int l)
{
    const cs_layer *L = &g->layers[l];
    const cs_node *n = &g->nodes[L->node];
    return n->inputs[0] == g->params[L->first_param].value ? n->inputs[1] : n->inputs[0];
}

/* ---- factors ---- */

/* Row blocks of the factor syrk (see cs_kfac_factor_syrk). */
#define SYRK_BLOCKS 4

/* Large factors are cut into SYRK_BLOCKS row blocks of equal work (block b
 * ends at row n (1 - sqrt(1 - (b+1)/SYRK_BLOCKS))), each one dsyrk on its
 * diagonal block and one dgemm on the part to its right, spread over the
 * threads.  The cut is fixed, so the result does not depend on the thread
 * count. */
void cs_kfac_factor_syrk(double *C, int64_t n, int64_t k, const double *X)
{
    if (k == 0 || n == 0)
        return;
    int nb = n >= 256 ? SYRK_BLOCKS : 1;
    int64_t edge[SYRK_BLOCKS + 1];
    for (int b = 0; b <= nb; b++)
        edge[b] = b == nb ? n : (int64_t)((double)n * (1.0 - sqrt(1.0 - (double)b / nb)));
#pragma omp parallel for schedule(static) if (nb > 1)
    for (int b = 0; b < nb; b++) {
        int64_t r0 = edge[b], r1 = edge[b + 1], m = r1 - r0;
        if (m <= 0)
            continue;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)m, (int)k, 1.0, X + r0, (int)n,
                    1.0, C + r0 * n + r0, (int)n);
        if (r1 < n)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)(n - r1), (int)k,
                        1.0, X + r0, (int)n, X + r1, (int)n, 1.0, C + r0 * n + r1, (int)n);
    }
}

/* Gemm / MatMul rows wait in a buffer for one syrk: a micro-batch gives few
 * rows, and a syrk over many runs near the GEMM rate instead of streaming
 * the whole factor through memory each time. */
cs_status cs_kfac_factor_init(cs_kfac_factor *F, int64_t groups, int64_t d, int64_t cap, const char *what,
                              cs_err *err)
{
    memset(F, 0, sizeof *F);
    F->groups = groups;
    F->d = d;
    F->cap = cap;
    cs_status st = cs_curv_zalloc_touched(&F->M, (size_t)(groups * d * d), err, "%s", what);
    if (!st && cap > 0)
        st = cs_curv_zalloc_touched(&F->rows, (size_t)(cap * d), err, "the row buffer of %s", what);
    return st;
}

void cs_kfac_factor_flush(cs_kfac_factor *F)
{
    if (F->rows)
        cs_kfac_factor_syrk(F->M, F->d, F->n, F->rows);
    F->n = 0;
}

void cs_kfac_factor_free(cs_kfac_factor *F)
{
    free(F->M);
    free(F->rows);
    memset(F, 0, sizeof *F);
}

/* Room for `rows` more buffered rows, flushing the buffer first when full. */
static double *factor_rows(cs_kfac_factor *F, int64_t rows)
{
    if (F->n + rows > F->cap) {
        cs_kfac_factor_syrk(F->M, F->d, F->n, F->rows);
        F->n = 0;
    }
    double *r = F->rows + F->n * F->d;
    F->n += rows;
    return r;
}

/* The unfolding geometry of a Conv or ConvTranspose layer: *T patch
 * columns per sample, *x_size input elements per channel, channels = the
 * input channels of one group (the patch rows are channels * kernel_size). */
static cs_status patch_geometry(const cs_layer_layout *s, const cs_node *n, const cs_tensor *X,
                                const cs_tensor *w, cs_conv_geom *geo, int64_t *groups, int64_t *T,
                                int64_t *x_size, cs_err *err)
{
    if (s->kfac != CS_KFAC_PATCHES_TRANSPOSED) {
        cs_status st = cs_conv_geometry(n, X, w, geo, groups, err);
        *T = geo->out_size, *x_size = geo->in_size;
        return st;
    }
    cs_status st = cs_conv_transpose_geometry(n, X, w, geo, groups, err);
    geo->channels = X->dims[1] / *groups;
    *T = geo->in_size, *x_size = geo->out_size;
    return st;
}

cs_status cs_kfac_work_size(const cs_layer_layout *s, const cs_node *n, const cs_tensor *X, const cs_tensor *w,
                            int64_t out_numel, int64_t B, size_t *need, cs_err *err)
{
    *need = 0;
    if (s->kfac == CS_KFAC_SEQUENCE) {
        /* every group's rows, one per (sample, step): X is [T, B, I] or [B, T, I] */
        int64_t rows = X->ndim == 3 && X->dims[2] > 0 ? cs_tensor_numel(X) / X->dims[2] : 0;
        *need = (size_t)(s->groups * rows * (s->dA > s->dG ? s->dA : s->dG));
        return CS_OK;
    }
    if (!cs_kfac_patches(s))
        return CS_OK;
    /* A: [dA, B T] doubles + [Kp, B T] floats; G: D and its per-group
     * copy, 2 [B, M, T]. */
    cs_conv_geom geo;
    int64_t groups, T, x_size;
    cs_status st = patch_geometry(s, n, X, w, &geo, &groups, &T, &x_size, err);
    if (st)
        return st;
    size_t bt = (size_t)(B * T);
    size_t a_need = (size_t)s->dA * bt + ((size_t)s->fan_in * bt + 1) / 2;
    *need = 2 * (size_t)out_numel > a_need ? 2 * (size_t)out_numel : a_need;
    return CS_OK;
}

cs_status cs_kfac_add_A(const cs_layer_layout *s, const cs_node *n, const cs_tensor *X, const cs_tensor *w,
                        double *work, cs_kfac_factor *A, double *count, cs_err *err)
{
    int64_t B = X->dims[0];
    if (s->kfac == CS_KFAC_ONEHOT) {
        /* X holds the ids: each position adds onehot(id) onehot(id)^T, a
         * one on the diagonal; no one-hot row is formed. */
        int64_t rows = cs_tensor_numel(X), V = s->fan_in;
        for (int64_t r = 0; r < rows; r++) {
            int64_t id = X->dtype == CS_DT_INT64 ? ((const int64_t *)X->data)[r]
                         : X->dtype == CS_DT_INT32 ? ((const int32_t *)X->data)[r] : -V - 1;
            id = id < 0 ? id + V : id;
            if (id < 0 || id >= V)
                return cs_fail(err, CS_ERR_RUNTIME, "K-FAC of an embedding: id %lld (%s) outside %lld rows",
                               (long long)id, cs_dtype_name(X->dtype), (long long)V);
            A->M[id * s->dA + id] += 1.0;
        }
        *count += (double)rows;
        return CS_OK;
    }
    if (s->kfac == CS_KFAC_ROWS) {
        int64_t rows = cs_tensor_numel(X) / s->fan_in; /* B * T */
        double *a = factor_rows(A, rows);
        for (int64_t r = 0; r < rows; r++) {
            if (X->dtype == CS_DT_FLOAT)
                for (int64_t j = 0; j < s->fan_in; j++)
                    a[r * s->dA + j] = ((const float *)X->data)[r * s->fan_in + j];
            else
                for (int64_t j = 0; j < s->fan_in; j++)
                    a[r * s->dA + j] = cs_kfac_at(X, r * s->fan_in + j);
            if (s->bias)
                a[r * s->dA + s->fan_in] = 1.0;
        }
        *count += (double)rows;
        return CS_OK;
    }
    /* Conv: the patches of every sample side by side, columns = (sample,
     * position), so each group's A is one dsyrk per batch. */
    cs_conv_geom geo;
    int64_t groups, T, x_size;
    cs_status st = patch_geometry(s, n, X, w, &geo, &groups, &T, &x_size, err);
    if (st)
        return st;
    int64_t C = X->dims[1], Kp = s->fan_in, BT = B * T;
    double *col = work;                      /* [dA, B T] */
    float *colf = (float *)(col + s->dA * BT); /* [Kp, B T] */
    size_t es = cs_dtype_size(X->dtype);
    for (int64_t grp = 0; grp < groups; grp++) {
        for (int64_t b = 0; b < B; b++) {
            const char *xg = (const char *)X->data + (size_t)((b * C + grp * (C / groups)) * x_size) * es;
            if (s->kfac == CS_KFAC_PATCHES_TRANSPOSED && X->dtype == CS_DT_DOUBLE)
                cs_im2col_transposed_f64(&geo, (const double *)xg, col + b * T, BT);
            else if (s->kfac == CS_KFAC_PATCHES_TRANSPOSED)
                cs_im2col_transposed_f32(&geo, (const float *)xg, colf + b * T, BT);
            else if (X->dtype == CS_DT_DOUBLE)
                cs_im2col_f64(&geo, (const double *)xg, col + b * T, BT);
            else
                cs_im2col_f32(&geo, (const float *)xg, colf + b * T, BT);
        }
        if (X->dtype != CS_DT_DOUBLE)
            for (int64_t i = 0; i < Kp * BT; i++)
                col[i] = colf[i];
        if (s->bias)
            for (int64_t t = 0; t < BT; t++)
                col[Kp * BT + t] = 1.0;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)s->dA, (int)BT, 1.0, col, (int)BT,
                    1.0, A->M + grp * s->dA * s->dA, (int)s->dA);
    }
    *count += (double)BT;
    return CS_OK;
}

void cs_kfac_add_G(const cs_layer_layout *s, const cs_tensor *D, double scale, double *work, cs_kfac_factor *G)
{
    int64_t n = cs_tensor_numel(D);
    if (s->kfac == CS_KFAC_ROWS || s->kfac == CS_KFAC_ONEHOT) {
        double *d = factor_rows(G, n / s->dG);
        for (int64_t i = 0; i < n; i++)
            d[i] = scale * cs_kfac_at(D, i);
        return;
    }
    double *d = work;
    for (int64_t i = 0; i < n; i++)
        d[i] = scale * cs_kfac_at(D, i);
    /* Conv: D is [B, M, T]; each group's rows gathered as [M/G, B T] so
     * its G is one dsyrk per batch. */
    int64_t B = D->dims[0], M = D->dims[1], T = n / (B * M), BT = B * T;
    double *dg = d + n; /* [dG, B T] */
    for (int64_t grp = 0; grp < s->groups; grp++) {
        for (int64_t m = 0; m < s->dG; m++)
            for (int64_t b = 0; b < B; b++)
                memcpy(dg + m * BT + b * T, d + (b * M + grp * s->dG + m) * T, sizeof(double) * (size_t)T);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)s->dG, (int)BT, 1.0, dg, (int)BT, 1.0,
                    G->M + grp * s->dG * s->dG, (int)s->dG);
    }
}

cs_status cs_kfac_add_sequence(const cs_ad *ad, int l, const cs_layer_layout *s, bool grads, double scale,
                               double *work, cs_kfac_factor *F, double *count, cs_err *err)
{
    const cs_layer *L = &ad->g->layers[l];
    if (!L->kind->kfac_rows)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s' (%s): no K-FAC rows rule", L->name, L->op_type);
    int64_t rows = 0, d = grads ? s->dG : s->dA;
    cs_status st = L->kind->kfac_rows(ad, L, s, grads, work, &rows, err);
    if (st)
        return st;
    double alpha = grads ? scale * scale : 1.0;
    for (int64_t grp = 0; grp < s->groups && rows > 0; grp++)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)rows, alpha, work + grp * rows * d, (int)d,
                    1.0, F->M + grp * d * d, (int)d);
    if (!grads)
        *count += (double)rows;
    return CS_OK;
}

void cs_kfac_expand(const cs_layer_layout *s, const double *A, const double *G, double *M)
{
    int64_t W = s->W;
    for (int64_t p = 0; p < W; p++)
        for (int64_t q = 0; q < W; q++) {
            const int64_t *kp = s->kron + 3 * p, *kq = s->kron + 3 * q;
            M[p * W + q] = kp[0] != kq[0] ? 0.0
                                          : G[kp[0] * s->dG * s->dG + kp[1] * s->dG + kq[1]] *
                                                A[kp[0] * s->dA * s->dA + kp[2] * s->dA + kq[2]];
        }
}
