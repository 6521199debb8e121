#include "curv/kfac.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "curv/alloc.h"
#include "interp/window.h"
#include "tensor/blas.h"

/* ---- layout ---- */

static int slot_of(const cs_node *n, int v)
{
    for (int i = 0; i < n->n_inputs; i++)
        if (n->inputs[i] == v)
            return i;
    return -1;
}

/* K-FAC geometry and unit lists of layer l (DESIGN.md: the block is G (x) A
 * over [W | b], rows = output units; a MatMul weight is the transpose of
 * its stored (in, out) tensor; Conv features are (c_in, kh, kw)). */
cs_status cs_kfac_layer_geometry(const cs_graph *g, int l, cs_kfac_layout *s, cs_err *err)
{
    memset(s, 0, sizeof *s);
    const cs_layer *L = &g->layers[l];
    const cs_node *n = &g->nodes[L->node];
    const cs_param *P0 = &g->params[L->first_param];
    const cs_tensor *w = &g->values[P0->value].init;
    s->W = L->numel;
    s->offset = P0->offset;
    int w_slot = slot_of(n, P0->value);
    s->bias = L->n_params > 1;
    int64_t bias_numel = s->bias ? cs_tensor_numel(&g->values[g->params[L->first_param + 1].value].init) : 0;
    s->kind = CS_KFAC_NONE;
    s->kfac_ok = false;
    bool gemm = strcmp(L->op_type, "Gemm") == 0 && !cs_node_attr_int(n, "transA", 0);
    bool matmul = strcmp(L->op_type, "MatMul") == 0;
    cs_status st;
    if ((gemm || matmul) && w_slot == 1 && w->ndim == 2) {
        /* Stored [out, in] for Gemm with transB, else [in, out]. */
        bool tb = gemm && cs_node_attr_int(n, "transB", 0);
        s->kind = gemm ? CS_KFAC_GEMM : CS_KFAC_MATMUL;
        s->groups = 1;
        s->dG = tb ? w->dims[0] : w->dims[1];
        s->fan_in = tb ? w->dims[1] : w->dims[0];
        s->kfac_ok = !s->bias || bias_numel == s->dG;
        if ((st = cs_curv_malloc((void **)&s->kron, sizeof(int64_t) * 3 * (size_t)s->W, err,
                                 "the K-FAC index of layer '%s'", L->name)))
            return st;
        for (int64_t p = 0; p < s->W; p++) {
            int64_t *k = s->kron + 3 * p;
            k[0] = 0;
            if (p < s->dG * s->fan_in) {
                k[1] = tb ? p / s->fan_in : p % s->dG;
                k[2] = tb ? p % s->fan_in : p / s->dG;
            } else {
                k[1] = bias_numel == s->dG ? p - s->dG * s->fan_in : 0;
                k[2] = s->fan_in;
            }
        }
    } else if (strcmp(L->op_type, "Conv") == 0 && w_slot == 1) {
        s->kind = CS_KFAC_CONV;
        s->groups = cs_node_attr_int(n, "group", 1);
        int64_t M = w->dims[0], Kp = cs_tensor_numel(w) / M;
        if (s->groups < 1 || M % s->groups)
            return cs_fail(err, CS_ERR_SHAPE, "layer '%s': %lld output channels in %lld groups", L->name,
                           (long long)M, (long long)s->groups);
        s->dG = M / s->groups;
        s->fan_in = Kp;
        s->kfac_ok = !s->bias || bias_numel == M;
        if ((st = cs_curv_malloc((void **)&s->kron, sizeof(int64_t) * 3 * (size_t)s->W, err,
                                 "the K-FAC index of layer '%s'", L->name)))
            return st;
        for (int64_t p = 0; p < s->W; p++) {
            int64_t *k = s->kron + 3 * p;
            int64_t unit = p < M * Kp ? p / Kp : (bias_numel == M ? p - M * Kp : 0);
            k[0] = unit / s->dG;
            k[1] = unit % s->dG;
            k[2] = p < M * Kp ? p % Kp : Kp;
        }
    } else if (strcmp(L->op_type, "ConvTranspose") == 0 && w_slot == 1) {
        /* the layer row's layout (interp/layers/conv_transpose.c) */
        if ((st = cs_kfac_row_layout(g, l, &s->kfac_ok, &s->groups, &s->dG, &s->fan_in, &s->kron, err)))
            return st;
        s->kind = s->kfac_ok ? CS_KFAC_CONV : CS_KFAC_NONE;
        s->transposed = true;
    }
    s->dA = s->fan_in + (s->bias ? 1 : 0);

    /* Units: output unit rows of [W | b], or (scale_c, bias_c) pairs. */
    if (s->kind != CS_KFAC_NONE && s->kfac_ok) {
        s->n_units = s->groups * s->dG;
        s->unit_d = s->dA;
        if ((st = cs_curv_malloc((void **)&s->unit_idx, sizeof(int64_t) * (size_t)(s->n_units * s->unit_d), err,
                                 "the unit index of layer '%s'", L->name)))
            return st;
        for (int64_t i = 0; i < s->n_units * s->unit_d; i++)
            s->unit_idx[i] = -1;
        for (int64_t p = 0; p < s->W; p++) {
            const int64_t *k = s->kron + 3 * p;
            s->unit_idx[(k[0] * s->dG + k[1]) * s->unit_d + k[2]] = p;
        }
    } else if (strcmp(L->op_type, "BatchNormalization") == 0 ||
               strcmp(L->op_type, "LayerNormalization") == 0) {
        int64_t C = cs_tensor_numel(w);
        bool paired = s->bias && bias_numel == C;
        s->n_units = C;
        s->unit_d = paired ? 2 : 1;
        if ((st = cs_curv_malloc((void **)&s->unit_idx, sizeof(int64_t) * (size_t)(s->n_units * s->unit_d), err,
                                 "the unit index of layer '%s'", L->name)))
            return st;
        for (int64_t c = 0; c < C; c++) {
            s->unit_idx[c * s->unit_d] = c;
            if (paired)
                s->unit_idx[c * s->unit_d + 1] = C + c;
        }
    }
    return CS_OK;
}

void cs_kfac_layout_free(cs_kfac_layout *s)
{
    free(s->kron);
    free(s->unit_idx);
    s->kron = s->unit_idx = NULL;
}

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
static cs_status patch_geometry(const cs_kfac_layout *s, const cs_node *n, const cs_tensor *X,
                                const cs_tensor *w, cs_conv_geom *geo, int64_t *groups, int64_t *T,
                                int64_t *x_size, cs_err *err)
{
    if (!s->transposed) {
        cs_status st = cs_conv_geometry(n, X, w, geo, groups, err);
        *T = geo->out_size, *x_size = geo->in_size;
        return st;
    }
    cs_status st = cs_conv_transpose_geometry(n, X, w, geo, groups, err);
    geo->channels = X->dims[1] / *groups;
    *T = geo->in_size, *x_size = geo->out_size;
    return st;
}

cs_status cs_kfac_work_size(const cs_kfac_layout *s, const cs_node *n, const cs_tensor *X, const cs_tensor *w,
                            int64_t out_numel, int64_t B, size_t *need, cs_err *err)
{
    *need = 0;
    if (s->kind != CS_KFAC_CONV)
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

cs_status cs_kfac_add_A(const cs_kfac_layout *s, const cs_node *n, const cs_tensor *X, const cs_tensor *w,
                        double *work, cs_kfac_factor *A, double *count, cs_err *err)
{
    int64_t B = X->dims[0];
    if (s->kind == CS_KFAC_GEMM || s->kind == CS_KFAC_MATMUL) {
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
            if (s->transposed && X->dtype == CS_DT_DOUBLE)
                cs_im2col_transposed_f64(&geo, (const double *)xg, col + b * T, BT);
            else if (s->transposed)
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

void cs_kfac_add_G(const cs_kfac_layout *s, const cs_tensor *D, double scale, double *work, cs_kfac_factor *G)
{
    int64_t n = cs_tensor_numel(D);
    if (s->kind == CS_KFAC_GEMM || s->kind == CS_KFAC_MATMUL) {
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

void cs_kfac_expand(const cs_kfac_layout *s, const double *A, const double *G, double *M)
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
