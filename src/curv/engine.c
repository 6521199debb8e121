#include "curv/engine.h"
#include "base/clock.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/parallel.h"
#include "base/rng.h"
#include "objective/objective.h"
#include "interp/window.h"
#include "tensor/blas.h"

void cs_curv_opts_init(cs_curv_opts *o)
{
    memset(o, 0, sizeof *o);
    o->curvatures = 1u << CS_CURV_GGN | 1u << CS_CURV_FISHER_EMP;
    o->reprs = 1u << CS_REPR_KFAC | 1u << CS_REPR_DIAG | 1u << CS_REPR_FULL;
    o->max_full = 4096;
    o->mc_samples = 1;
    o->probes = 20;
    o->batch = 128;
    o->loss = CS_LOSS_CE;
}

/* The GGN-type curvatures computed from captures; fisher shares ggn's
 * accumulators (they are one matrix for ce and mse). */
enum { FAM_GGN, FAM_MC, FAM_EMP, FAM_COUNT };

/* Per-layer structure and accumulators. */
typedef struct layer_state {
    int64_t W, offset;
    bool small;              /* block up to max_full: computed in full */
    /* K-FAC geometry: groups of (units x features); kron[p] = (group, unit, feature) */
    bool kfac_ok;
    int kind;                /* 0 Gemm, 1 MatMul, 2 Conv, 3 norm (no kfac) */
    int64_t groups, dG, dA, fan_in; /* per group; dA = fan_in + bias */
    bool bias;
    int64_t *kron;           /* [W][3] */
    /* unit blocks: n_units of d params each (index lists into the layer) */
    int64_t n_units, unit_d;
    int64_t *unit_idx;       /* [n_units][unit_d], -1 where absent */
    /* accumulators per family */
    double *full[FAM_COUNT], *diag[FAM_COUNT], *unit[FAM_COUNT], *G[FAM_COUNT];
    double *A;               /* K-FAC A, shared, [groups][dA][dA] */
    double *sh_L, *sh_R;     /* Shampoo statistics, [groups][dG][dG] and [groups][dA][dA] */
    double *sh_G;            /* one sample's gradient matrices [groups][dG][dA] */
    double a_count;
    /* Gemm / MatMul K-FAC rows waiting for one syrk (kfac_flush): a
     * micro-batch gives few rows, and a syrk over many runs near the GEMM
     * rate instead of streaming the whole factor through memory each time. */
    int64_t positions;       /* Gemm / MatMul: rows of the input per sample (T) */
    int64_t kfac_cap;        /* rows each buffer holds */
    double *a_rows;          /* [kfac_cap, dA] */
    int64_t a_n;
    double *g_rows[FAM_COUNT]; /* [kfac_cap, dG] */
    int64_t g_n[FAM_COUNT];
    /* Hessian */
    double *h_full, *h_diag, *h_diag_sq; /* h_diag_sq: per-probe trace estimates (stderr) */
    double *h_probe_trace;   /* [probes] */
    bool h_hutch;
} layer_state;

typedef struct engine {
    const cs_graph *g;
    const cs_dataset *ds;
    const cs_curv_opts *o;
    cs_objective obj;
    layer_state *L;
    bool fam[FAM_COUNT];
    bool hessian;
    bool net_full;           /* P <= max_full and full requested */
    int64_t P;
    double *net[FAM_COUNT], *h_net;
    double *rows, *net_rows; /* per-sample gradients [B, W] and [B, P] */
    double *unit_rows;       /* one unit's columns of rows, [B, unit_d] */
    double *abuf;            /* K-FAC input / gradient rows in double */
    size_t abuf_len;
    double *dbuf;            /* direct diagonals: squared inputs, squared gradients, product */
    double *seedwork;        /* loss rows */
    double *hcol;            /* one Hessian column (P) */
    double *probe;           /* [probes][P] Rademacher vectors */
    double *vec;             /* unit vector (P) */
    cs_rng rng;
    cs_curv_report *rep;
} engine;

static void note(cs_curv_report *r, const char *fmt, ...)
{
    if (r->n_notes >= 64)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->notes[r->n_notes++], sizeof r->notes[0], fmt, ap);
    va_end(ap);
}

static bool want(const engine *e, cs_curv_kind c, cs_repr_kind r)
{
    return (e->o->curvatures >> c & 1) && (e->o->reprs >> r & 1) && cs_curv_repr_valid(c, r, NULL);
}

static int family_of(cs_curv_kind c)
{
    switch (c) {
    case CS_CURV_GGN:
    case CS_CURV_FISHER: return FAM_GGN;
    case CS_CURV_FISHER_MC: return FAM_MC;
    case CS_CURV_FISHER_EMP: return FAM_EMP;
    default: return -1;
    }
}

static bool family_wanted(const engine *e, int f)
{
    for (int c = 0; c < CS_CURV_COUNT; c++)
        if (family_of((cs_curv_kind)c) == f && (e->o->curvatures >> c & 1))
            return true;
    return false;
}

static double *zalloc(size_t n)
{
    return calloc(n ? n : 1, sizeof(double));
}

/* zalloc with its pages touched here, for the K-FAC factors and row
 * buffers: calloc maps large blocks lazily, and first touches from the
 * threads of factor_syrk at once contend in the kernel's page-fault path
 * (a fresh 785 x 785 factor: 19 ms with 2 threads, 2 ms touched first on
 * this project's machine). */
static double *zalloc_touched(size_t n)
{
    double *p = zalloc(n);
    for (size_t i = 0; p && i < n; i += 4096 / sizeof(double))
        ((volatile double *)p)[i] = 0;
    return p;
}

/* ---- layer geometry ---- */

static int slot_of(const cs_node *n, int v)
{
    for (int i = 0; i < n->n_inputs; i++)
        if (n->inputs[i] == v)
            return i;
    return -1;
}

/* K-FAC geometry and unit lists of layer l (doc/design.md §2.4: the block is G (x) A
 * over [W | b], rows = output units; a MatMul weight is the transpose of
 * its stored (in, out) tensor; Conv features are (c_in, kh, kw)). */
static cs_status layer_geometry(engine *e, int l, layer_state *s, cs_err *err)
{
    const cs_graph *g = e->g;
    const cs_layer *L = &g->layers[l];
    const cs_node *n = &g->nodes[L->node];
    const cs_param *P0 = &g->params[L->first_param];
    const cs_tensor *w = &g->values[P0->value].init;
    s->W = L->numel;
    s->offset = P0->offset;
    s->small = s->W <= e->o->max_full;
    int w_slot = slot_of(n, P0->value);
    s->bias = L->n_params > 1;
    int64_t bias_numel = s->bias ? cs_tensor_numel(&g->values[g->params[L->first_param + 1].value].init) : 0;
    s->kind = 3;
    s->kfac_ok = false;
    bool gemm = strcmp(L->op_type, "Gemm") == 0 && !cs_node_attr_int(n, "transA", 0);
    bool matmul = strcmp(L->op_type, "MatMul") == 0;
    if ((gemm || matmul) && w_slot == 1 && w->ndim == 2) {
        /* Stored [out, in] for Gemm with transB, else [in, out]. */
        bool tb = gemm && cs_node_attr_int(n, "transB", 0);
        s->kind = gemm ? 0 : 1;
        s->groups = 1;
        s->dG = tb ? w->dims[0] : w->dims[1];
        s->fan_in = tb ? w->dims[1] : w->dims[0];
        s->kfac_ok = !s->bias || bias_numel == s->dG;
        s->kron = malloc(sizeof(int64_t) * 3 * (size_t)s->W);
        for (int64_t p = 0; s->kron && p < s->W; p++) {
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
        s->kind = 2;
        s->groups = cs_node_attr_int(n, "group", 1);
        int64_t M = w->dims[0], Kp = cs_tensor_numel(w) / M;
        if (s->groups < 1 || M % s->groups)
            return cs_fail(err, CS_ERR_SHAPE, "layer '%s': %lld output channels in %lld groups", L->name,
                           (long long)M, (long long)s->groups);
        s->dG = M / s->groups;
        s->fan_in = Kp;
        s->kfac_ok = !s->bias || bias_numel == M;
        s->kron = malloc(sizeof(int64_t) * 3 * (size_t)s->W);
        for (int64_t p = 0; s->kron && p < s->W; p++) {
            int64_t *k = s->kron + 3 * p;
            int64_t unit = p < M * Kp ? p / Kp : (bias_numel == M ? p - M * Kp : 0);
            k[0] = unit / s->dG;
            k[1] = unit % s->dG;
            k[2] = p < M * Kp ? p % Kp : Kp;
        }
    }
    if (s->kind != 3 && !s->kron)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    s->dA = s->fan_in + (s->bias ? 1 : 0);

    /* Units: output unit rows of [W | b], or (scale_c, bias_c) pairs. */
    if (s->kind != 3 && s->kfac_ok) {
        s->n_units = s->groups * s->dG;
        s->unit_d = s->dA;
        s->unit_idx = malloc(sizeof(int64_t) * (size_t)(s->n_units * s->unit_d));
        if (!s->unit_idx)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
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
        s->unit_idx = malloc(sizeof(int64_t) * (size_t)(s->n_units * s->unit_d));
        if (!s->unit_idx)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        for (int64_t c = 0; c < C; c++) {
            s->unit_idx[c * s->unit_d] = c;
            if (paired)
                s->unit_idx[c * s->unit_d + 1] = C + c;
        }
    }
    return CS_OK;
}

/* ---- accumulation from captures ---- */

static inline double at(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

/* Grow the shared row buffer to n doubles (planned once per run: the sizes
 * only depend on the batch size and the layers). */
static cs_status abuf_reserve(engine *e, size_t n, cs_err *err)
{
    if (n <= e->abuf_len)
        return CS_OK;
    double *b = realloc(e->abuf, sizeof(double) * n);
    if (!b)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for %zu K-FAC rows", n);
    e->abuf = b;
    e->abuf_len = n;
    return CS_OK;
}

/* Row blocks of the factor syrk (see factor_syrk). */
#define SYRK_BLOCKS 4
/* Rows a Gemm / MatMul K-FAC buffer holds at least. */
#define KFAC_ROWS 512

/* The upper triangle of C [n, n] += X^T X, X [k, n] row-major.  Large
 * factors are cut into SYRK_BLOCKS row blocks of equal work (block b ends
 * at row n (1 - sqrt(1 - (b+1)/SYRK_BLOCKS))), each one dsyrk on its
 * diagonal block and one dgemm on the part to its right, spread over the
 * threads.  The cut is fixed, so the result does not depend on the thread
 * count. */
static void factor_syrk(double *C, int64_t n, int64_t k, const double *X)
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

/* The buffered Gemm / MatMul rows into their factors. */
static void kfac_flush(layer_state *s)
{
    if (s->a_rows)
        factor_syrk(s->A, s->dA, s->a_n, s->a_rows);
    s->a_n = 0;
    for (int f = 0; f < FAM_COUNT; f++) {
        if (s->g_rows[f])
            factor_syrk(s->G[f], s->dG, s->g_n[f], s->g_rows[f]);
        s->g_n[f] = 0;
    }
}

/* K-FAC A += sum abar abar^T over the batch's samples and positions. */
static cs_status accumulate_A(engine *e, cs_ad *ad, int l, cs_err *err)
{
    layer_state *s = &e->L[l];
    cs_layer_capture cap;
    cs_status st = cs_ad_capture(ad, l, &cap, err);
    if (st)
        return st;
    const cs_tensor *X = cap.input;
    int64_t B = X->dims[0];
    if (s->kind == 0 || s->kind == 1) {
        int64_t rows = cs_tensor_numel(X) / s->fan_in; /* B * T */
        if (s->a_n + rows > s->kfac_cap) {
            factor_syrk(s->A, s->dA, s->a_n, s->a_rows);
            s->a_n = 0;
        }
        double *a = s->a_rows + s->a_n * s->dA;
        for (int64_t r = 0; r < rows; r++) {
            if (X->dtype == CS_DT_FLOAT)
                for (int64_t j = 0; j < s->fan_in; j++)
                    a[r * s->dA + j] = ((const float *)X->data)[r * s->fan_in + j];
            else
                for (int64_t j = 0; j < s->fan_in; j++)
                    a[r * s->dA + j] = at(X, r * s->fan_in + j);
            if (s->bias)
                a[r * s->dA + s->fan_in] = 1.0;
        }
        s->a_n += rows;
        s->a_count += (double)rows;
        return CS_OK;
    }
    /* Conv: the patches of every sample side by side, columns = (sample,
     * position), so each group's A is one dsyrk per batch. */
    const cs_graph *g = e->g;
    const cs_node *n = &g->nodes[g->layers[l].node];
    cs_conv_geom geo;
    int64_t groups;
    st = cs_conv_geometry(n, X, &ad->p->vals[n->inputs[1]], &geo, &groups, err);
    if (st)
        return st;
    int64_t T = geo.out_size, C = X->dims[1], Kp = s->fan_in, BT = B * T;
    double *col = e->abuf;                   /* [dA, B T] */
    float *colf = (float *)(col + s->dA * BT); /* [Kp, B T] */
    size_t es = cs_dtype_size(X->dtype);
    for (int64_t grp = 0; grp < groups; grp++) {
        for (int64_t b = 0; b < B; b++) {
            const char *xg = (const char *)X->data + (size_t)((b * C + grp * (C / groups)) * geo.in_size) * es;
            if (X->dtype == CS_DT_DOUBLE)
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
                    1.0, s->A + grp * s->dA * s->dA, (int)s->dA);
    }
    s->a_count += (double)BT;
    return CS_OK;
}

/* K-FAC G of family f += scale^2 sum delta delta^T from the layer's
 * output gradient. */
static cs_status accumulate_G(engine *e, cs_ad *ad, int l, int f, double scale, cs_err *err)
{
    layer_state *s = &e->L[l];
    cs_layer_capture cap;
    cs_status st = cs_ad_capture(ad, l, &cap, err);
    if (st)
        return st;
    const cs_tensor *D = cap.output_grad;
    double *G = s->G[f];
    int64_t n = cs_tensor_numel(D);
    if (s->kind == 0 || s->kind == 1) {
        int64_t rows = n / s->dG;
        if (s->g_n[f] + rows > s->kfac_cap) {
            factor_syrk(G, s->dG, s->g_n[f], s->g_rows[f]);
            s->g_n[f] = 0;
        }
        double *d = s->g_rows[f] + s->g_n[f] * s->dG;
        for (int64_t i = 0; i < n; i++)
            d[i] = scale * at(D, i);
        s->g_n[f] += rows;
        return CS_OK;
    }
    double *d = e->abuf;
    for (int64_t i = 0; i < n; i++)
        d[i] = scale * at(D, i);
    /* Conv: D is [B, M, T]; each group's rows gathered as [M/G, B T] so
     * its G is one dsyrk per batch. */
    int64_t B = D->dims[0], M = D->dims[1], T = n / (B * M), BT = B * T;
    double *dg = d + n; /* [dG, B T] */
    for (int64_t grp = 0; grp < s->groups; grp++) {
        for (int64_t m = 0; m < s->dG; m++)
            for (int64_t b = 0; b < B; b++)
                memcpy(dg + m * BT + b * T, d + (b * M + grp * s->dG + m) * T, sizeof(double) * (size_t)T);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)s->dG, (int)BT, 1.0, dg, (int)BT, 1.0,
                    G + grp * s->dG * s->dG, (int)s->dG);
    }
    return CS_OK;
}

/* Per-sample gradient rows of the layer (already scaled) into full, diag,
 * unit accumulators of one family. */
static void accumulate_rows(engine *e, int l, int f, const double *rows, int64_t B)
{
    layer_state *s = &e->L[l];
    int64_t W = s->W;
    if (s->full[f])
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)W, (int)B, 1.0, rows, (int)W, 1.0,
                    s->full[f], (int)W);
    if (s->diag[f]) {
        /* Parameters are independent: each thread sums its slice over the
         * samples in order. */
#pragma omp parallel if (B * W >= CS_OMP_MIN_ELEMS)
        {
            int64_t lo, hi;
            cs_omp_slice(W, &lo, &hi);
            double *d = s->diag[f];
            for (int64_t b = 0; b < B; b++)
                for (int64_t i = lo; i < hi; i++)
                    d[i] += rows[b * W + i] * rows[b * W + i];
        }
    }
    if (s->unit[f]) {
        /* Each unit's columns gathered to [B, d], then one dsyrk (absent
         * slots stay zero columns). */
        int64_t d = s->unit_d;
        double *X = e->unit_rows;
        for (int64_t u = 0; u < s->n_units; u++) {
            const int64_t *idx = s->unit_idx + u * d;
            for (int64_t b = 0; b < B; b++)
                for (int64_t x = 0; x < d; x++)
                    X[b * d + x] = idx[x] >= 0 ? rows[b * W + idx[x]] : 0.0;
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)B, 1.0, X, (int)d, 1.0,
                        s->unit[f] + u * d * d, (int)d);
        }
    }
}

/* Shampoo: each sample's gradient as [dG, dA] matrices per group;
 * L += G G^T, R += G^T G. */
static void accumulate_shampoo(layer_state *s, const double *rows, int64_t B)
{
    int64_t gsz = s->dG * s->dA;
    for (int64_t b = 0; b < B; b++) {
        const double *r = rows + b * s->W;
        memset(s->sh_G, 0, sizeof(double) * (size_t)(s->groups * gsz));
        for (int64_t p = 0; p < s->W; p++) {
            const int64_t *k = s->kron + 3 * p;
            s->sh_G[k[0] * gsz + k[1] * s->dA + k[2]] = r[p];
        }
        for (int64_t grp = 0; grp < s->groups; grp++) {
            const double *G = s->sh_G + grp * gsz;
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)s->dG, (int)s->dA, 1.0, G, (int)s->dA,
                        1.0, s->sh_L + grp * s->dG * s->dG, (int)s->dG);
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)s->dA, (int)s->dG, 1.0, G, (int)s->dA,
                        1.0, s->sh_R + grp * s->dA * s->dA, (int)s->dA);
        }
    }
}

/* A Gemm / MatMul layer whose samples have one position each (B rows per
 * capture): a sample's gradient is the outer product delta abar^T, so its
 * squares are delta^2 (abar^2)^T and the diagonal's sum over the batch is
 * one GEMM, (delta^2)^T (abar^2), with no per-sample gradient formed (the
 * way BackPACK's DiagGGN treats linear layers).  Layers with weight sharing
 * (Conv, MatMul over positions) square sums over positions and keep the
 * per-sample rows. */
static bool diag_direct_ok(const layer_state *s)
{
    return s->kfac_ok && (s->kind == 0 || s->kind == 1) && s->groups == 1 && s->positions == 1;
}

static cs_status accumulate_diag_direct(engine *e, cs_ad *ad, int l, int f, double scale, cs_err *err)
{
    layer_state *s = &e->L[l];
    cs_layer_capture cap;
    cs_status st = cs_ad_capture(ad, l, &cap, err);
    if (st)
        return st;
    const cs_tensor *X = cap.input, *D = cap.output_grad;
    int64_t B = D->dims[0];
    double *a2 = e->dbuf, *d2 = a2 + B * s->dA, *M = d2 + B * s->dG;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < s->fan_in; j++) {
            double v = at(X, b * s->fan_in + j);
            a2[b * s->dA + j] = v * v;
        }
        if (s->bias)
            a2[b * s->dA + s->fan_in] = 1.0;
        for (int64_t i = 0; i < s->dG; i++) {
            double v = scale * at(D, b * s->dG + i);
            d2[b * s->dG + i] = v * v;
        }
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)s->dG, (int)s->dA, (int)B, 1.0, d2,
                (int)s->dG, a2, (int)s->dA, 0.0, M, (int)s->dA);
    for (int64_t p = 0; p < s->W; p++) {
        const int64_t *k = s->kron + 3 * p; /* (group, unit, feature) */
        s->diag[f][p] += M[k[1] * s->dA + k[2]];
    }
    return CS_OK;
}

/* One seed's backward and everything its captures feed. */
static cs_status seed_pass(engine *e, int which, int f, int seed, double scale, int64_t start, int64_t B,
                           cs_err *err)
{
    cs_ad *ad = &e->obj.ad[which];
    ad->param_grads = false;
    cs_status st = cs_ad_backward(ad, err);
    if (st)
        return st;
    for (int l = 0; l < e->g->n_layers; l++) {
        layer_state *s = &e->L[l];
        bool other_rows = s->full[f] || s->unit[f] || (e->net_full && e->net[f]) ||
                          (f == FAM_EMP && s->sh_L) || e->o->on_rows;
        bool direct = s->diag[f] && !other_rows && diag_direct_ok(s);
        if (direct && (st = accumulate_diag_direct(e, ad, l, f, scale, err)))
            return st;
        if (other_rows || (s->diag[f] && !direct)) {
            if ((st = cs_ad_per_sample_grads(ad, l, e->rows, err)))
                return st;
            if (scale != 1.0)
                for (int64_t i = 0; i < B * s->W; i++)
                    e->rows[i] *= scale;
            accumulate_rows(e, l, f, e->rows, B);
            if (e->o->on_rows)
                e->o->on_rows(e->o->rows_ctx, l, start, seed, e->rows, B);
            if (f == FAM_EMP && s->sh_L)
                accumulate_shampoo(s, e->rows, B);
            if (e->net_full && e->net[f])
                for (int64_t b = 0; b < B; b++)
                    memcpy(e->net_rows + b * e->P + s->offset, e->rows + b * s->W,
                           sizeof(double) * (size_t)s->W);
        }
        if (s->G[f] && (st = accumulate_G(e, ad, l, f, scale, err)))
            return st;
    }
    if (e->net_full && e->net[f])
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)e->P, (int)B, 1.0, e->net_rows,
                    (int)e->P, 1.0, e->net[f], (int)e->P);
    return CS_OK;
}

/* Hessian columns (exact products restricted to a layer, or the whole net)
 * and Hutchinson diagonals for one batch: the first-order backward of the
 * mean loss is already in ad. */
static cs_status hessian_batch(engine *e, int which, cs_err *err)
{
    cs_ad *ad = &e->obj.ad[which];
    const cs_tensor *z = &e->obj.plan[which].vals[e->obj.head.logits_value];
    double inv_n = 1.0 / (double)e->ds->n;
    cs_status st;
    const cs_graph *g = e->g;
    /* H e_j for one direction; result in ad->tgrad. */
#define HVP_DIRECTION(v, layer)                                                                     \
    do {                                                                                            \
        if ((st = cs_ad_jvp(ad, (v), (layer), err)))                                                \
            return st;                                                                              \
        if (ad->tan_live[e->obj.head.logits_value])                                                 \
            cs_loss_hvp_batch(&e->obj.head, z, &ad->tan[e->obj.head.logits_value], inv_n,           \
                              cs_ad_rseed(ad), e->seedwork);                                        \
        if ((st = cs_ad_rbackward(ad, err)))                                                        \
            return st;                                                                              \
    } while (0)
    for (int l = 0; l < g->n_layers; l++) {
        layer_state *s = &e->L[l];
        if (!s->h_full)
            continue;
        for (int64_t j = 0; j < s->W; j++) {
            e->vec[s->offset + j] = 1.0;
            HVP_DIRECTION(e->vec, l);
            e->vec[s->offset + j] = 0.0;
            cs_ad_add_layer_vector(ad, l, true, 1.0, s->h_full + j * s->W);
        }
    }
    if (e->h_net) {
        for (int64_t j = 0; j < e->P; j++) {
            e->vec[j] = 1.0;
            HVP_DIRECTION(e->vec, -1);
            e->vec[j] = 0.0;
            cs_ad_add_param_vector(ad, true, 1.0, e->h_net + j * e->P);
        }
    }
    bool any_hutch = false;
    for (int l = 0; l < g->n_layers; l++)
        any_hutch = any_hutch || e->L[l].h_hutch;
    for (int k = 0; any_hutch && k < e->o->probes; k++) {
        const double *v = e->probe + (size_t)k * (size_t)e->P;
        HVP_DIRECTION(v, -1);
        memset(e->hcol, 0, sizeof(double) * (size_t)e->P);
        cs_ad_add_param_vector(ad, true, 1.0, e->hcol);
        for (int l = 0; l < g->n_layers; l++) {
            layer_state *s = &e->L[l];
            if (!s->h_hutch)
                continue;
            double tr = 0;
            for (int64_t i = 0; i < s->W; i++) {
                double x = v[s->offset + i] * e->hcol[s->offset + i];
                s->h_diag[i] += x;
                tr += x;
            }
            s->h_probe_trace[k] += tr;
        }
    }
#undef HVP_DIRECTION
    return CS_OK;
}

/* ---- results ---- */

static cs_curv_result *new_result(engine *e, int layer, cs_curv_kind c, cs_repr_kind r, int64_t dim)
{
    cs_curv_report *rep = e->rep;
    cs_curv_result *grown = realloc(rep->res, sizeof *grown * (size_t)(rep->n + 1));
    if (!grown)
        return NULL;
    rep->res = grown;
    cs_curv_result *x = &rep->res[rep->n++];
    memset(x, 0, sizeof *x);
    x->layer = layer;
    x->curv = c;
    x->repr = r;
    x->dim = dim;
    x->method = "exact";
    x->trace_stderr = NAN;
    return x;
}

/* Copy the upper triangle to the lower and scale. */
static void symmetrize(double *M, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++)
            M[j * n + i] = M[i * n + j] = M[i * n + j] * scale;
}

/* Eigen-decompose a copy of the dense matrix into res (and its top
 * eigenvector into top when non-NULL). */
static cs_status spectrum_of(const double *M, int64_t n, cs_curv_result *res, double *top, cs_err *err)
{
    double *copy = malloc(sizeof(double) * (size_t)(n * n) + 1);
    res->eig = malloc(sizeof(double) * (size_t)n + 1);
    if (!copy || !res->eig) {
        free(copy);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for an eigen-solve of order %lld", (long long)n);
    }
    memcpy(copy, M, sizeof(double) * (size_t)(n * n));
    cs_status st = cs_sym_eig(copy, n, res->eig, top, err);
    free(copy);
    if (st)
        return st;
    res->n_eig = n;
    cs_spectrum_summarize(res->eig, n, &res->sum);
    return CS_OK;
}

/* Dense approximation (kfac, unit or diag) of a layer block in parameter
 * order, for scoring against the exact block. */
static void dense_kfac(const layer_state *s, const double *A, const double *G, double *M)
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

static void dense_unit(const layer_state *s, const double *U, double *M)
{
    int64_t W = s->W, d = s->unit_d;
    memset(M, 0, sizeof(double) * (size_t)(W * W));
    for (int64_t u = 0; u < s->n_units; u++)
        for (int64_t x = 0; x < d; x++)
            for (int64_t y = 0; y < d; y++) {
                int64_t p = s->unit_idx[u * d + x], q = s->unit_idx[u * d + y];
                if (p >= 0 && q >= 0)
                    M[p * W + q] = U[u * d * d + x * d + y];
            }
}

/* The unit-wise blocks U [n_units][d][d] read off the layer's full block
 * (zero-filled U; absent slots stay zero). */
static void unit_blocks_from_full(const layer_state *s, const double *full, double *U)
{
    int64_t d = s->unit_d, W = s->W;
    for (int64_t u = 0; u < s->n_units; u++)
        for (int64_t x = 0; x < d; x++)
            for (int64_t y = 0; y < d; y++) {
                int64_t p = s->unit_idx[u * d + x], q = s->unit_idx[u * d + y];
                if (p >= 0 && q >= 0)
                    U[u * d * d + x * d + y] = full[p * W + q];
            }
}

/* Score an approximation against the exact block (both dense W x W). */
static cs_status compare(const double *approx, const double *exact, int64_t W,
                         const cs_spectrum_summary *ex, const double *ex_top, cs_curv_result *res,
                         cs_err *err)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < W * W; i++) {
        num += (approx[i] - exact[i]) * (approx[i] - exact[i]);
        den += exact[i] * exact[i];
    }
    double *copy = malloc(sizeof(double) * (size_t)(W * W) + 1), *w = malloc(sizeof(double) * (size_t)W + 1),
           *top = malloc(sizeof(double) * (size_t)W + 1);
    cs_status st = copy && w && top ? CS_OK : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    if (!st) {
        memcpy(copy, approx, sizeof(double) * (size_t)(W * W));
        st = cs_sym_eig(copy, W, w, top, err);
    }
    if (!st) {
        double dot = 0;
        for (int64_t i = 0; i < W; i++)
            dot += top[i] * ex_top[i];
        res->has_cmp = true;
        res->cmp_frob = den > 0 ? sqrt(num / den) : NAN;
        res->cmp_lmax = fabs(res->sum.lambda_max - ex->lambda_max) / fabs(ex->lambda_max);
        res->cmp_trace = fabs(res->sum.trace - ex->trace) / fabs(ex->trace);
        res->cmp_align = fabs(dot);
    }
    free(copy);
    free(w);
    free(top);
    return st;
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* All results of one layer and one curvature from its accumulators. */
static cs_status layer_results(engine *e, int l, cs_curv_kind c, cs_err *err)
{
    layer_state *s = &e->L[l];
    int64_t W = s->W;
    int f = family_of(c);
    double *full = c == CS_CURV_HESSIAN ? s->h_full : s->full[f];
    double *diag = c == CS_CURV_HESSIAN ? NULL : s->diag[f];
    cs_status st = CS_OK;
    double t0 = cs_now_seconds();
    /* The exact block's summary is copied out: results live in a growing
     * array, so pointers into it do not survive the next new_result. */
    cs_curv_result *ex = NULL;
    cs_spectrum_summary ex_sum_copy, *ex_sum = NULL;
    double *ex_top = NULL, *dense = NULL;
    if (full) {
        ex = new_result(e, l, c, CS_REPR_FULL, W);
        ex_top = malloc(sizeof(double) * (size_t)W + 1);
        if (!ex || !ex_top)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        if ((st = spectrum_of(full, W, ex, ex_top, err)))
            goto done;
        if (e->o->keep_matrices) {
            ex->matrix = malloc(sizeof(double) * (size_t)(W * W));
            if (ex->matrix)
                memcpy(ex->matrix, full, sizeof(double) * (size_t)(W * W));
        }
        ex->seconds = cs_now_seconds() - t0;
        if (!(e->o->reprs >> CS_REPR_FULL & 1))
            ex->dim = -ex->dim; /* computed only as the reference: marked for removal below */
        ex_sum_copy = ex->sum;
        ex_sum = &ex_sum_copy;
        ex = NULL;
        dense = malloc(sizeof(double) * (size_t)(W * W) + 1);
        if (!dense) {
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    /* diag */
    if (want(e, c, CS_REPR_DIAG)) {
        const double *d = diag;
        double *tmp = NULL;
        const char *method = "exact";
        if (c == CS_CURV_HESSIAN) {
            if (full) {
                tmp = malloc(sizeof(double) * (size_t)W + 1);
                for (int64_t i = 0; tmp && i < W; i++)
                    tmp[i] = full[i * W + i];
                d = tmp;
            } else if (s->h_hutch) {
                d = s->h_diag;
                method = "hutchinson";
            }
        }
        if (d) {
            cs_curv_result *r = new_result(e, l, c, CS_REPR_DIAG, W);
            if (!r || !(r->eig = malloc(sizeof(double) * (size_t)W + 1))) {
                free(tmp);
                st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
                goto done;
            }
            r->method = method;
            memcpy(r->eig, d, sizeof(double) * (size_t)W);
            if (e->o->keep_matrices && (r->matrix = malloc(sizeof(double) * (size_t)W)))
                memcpy(r->matrix, d, sizeof(double) * (size_t)W); /* the diagonal itself */
            qsort(r->eig, (size_t)W, sizeof(double), cmp_desc);
            r->n_eig = W;
            cs_spectrum_summarize(r->eig, W, &r->sum);
            if (strcmp(method, "hutchinson") == 0) {
                /* Standard error of the trace from the spread of the probes. */
                int K = e->o->probes;
                double mean = 0, var = 0;
                for (int k = 0; k < K; k++)
                    mean += s->h_probe_trace[k] / K;
                for (int k = 0; k < K; k++)
                    var += (s->h_probe_trace[k] - mean) * (s->h_probe_trace[k] - mean) / (K > 1 ? K - 1 : 1);
                r->trace_stderr = sqrt(var / K);
            }
            if (ex_sum && strcmp(method, "exact") == 0) {
                memset(dense, 0, sizeof(double) * (size_t)(W * W));
                for (int64_t i = 0; i < W; i++)
                    dense[i * W + i] = d[i];
                if ((st = compare(dense, full, W, ex_sum, ex_top, r, err))) {
                    free(tmp);
                    goto done;
                }
            }
            r->seconds = cs_now_seconds() - t0;
        }
        free(tmp);
    }
    /* unit */
    if (want(e, c, CS_REPR_UNIT) && s->unit_idx) {
        int64_t d = s->unit_d, nu = s->n_units;
        double *U = c == CS_CURV_HESSIAN ? NULL : s->unit[f];
        double *own = NULL;
        if (!U && full && (own = U = zalloc((size_t)(nu * d * d)))) /* Hessian: read off the full block */
            unit_blocks_from_full(s, full, U);
        if (U) {
            cs_curv_result *r = new_result(e, l, c, CS_REPR_UNIT, W);
            double *blk = malloc(sizeof(double) * (size_t)(d * d) + 1), *w = malloc(sizeof(double) * (size_t)d + 1);
            if (!r || !blk || !w || !(r->eig = malloc(sizeof(double) * (size_t)(nu * d) + 1))) {
                free(blk), free(w), free(own);
                st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
                goto done;
            }
            /* Pool the eigenvalues of every unit block (absent slots are
             * zero rows: they contribute zero eigenvalues, dropped). */
            int64_t k = 0;
            for (int64_t u = 0; u < nu && !st; u++) {
                const int64_t *ui = s->unit_idx + u * d;
                int64_t m = 0;
                for (int64_t x = 0; x < d; x++)
                    m += ui[x] >= 0;
                /* the block restricted to its present slots, in slot order */
                for (int64_t x = 0, i = 0; x < d; x++) {
                    if (ui[x] < 0)
                        continue;
                    for (int64_t y = 0, j = 0; y < d; y++)
                        if (ui[y] >= 0)
                            blk[i * m + j++] = U[u * d * d + x * d + y];
                    i++;
                }
                st = cs_sym_eig(blk, m, w, NULL, err);
                for (int64_t x = 0; x < m && !st; x++)
                    r->eig[k++] = w[x];
            }
            free(blk), free(w);
            if (!st) {
                qsort(r->eig, (size_t)k, sizeof(double), cmp_desc);
                r->n_eig = k;
                cs_spectrum_summarize(r->eig, k, &r->sum);
                if (ex_sum) {
                    dense_unit(s, U, dense);
                    st = compare(dense, full, W, ex_sum, ex_top, r, err);
                }
            }
            free(own);
            r->seconds = cs_now_seconds() - t0;
            if (st)
                goto done;
        }
    }
    /* kfac */
    if (want(e, c, CS_REPR_KFAC) && s->kfac_ok && s->G[f]) {
        cs_curv_result *r = new_result(e, l, c, CS_REPR_KFAC, W);
        int64_t gA = s->groups * s->dA, gG = s->groups * s->dG;
        double *wa = malloc(sizeof(double) * (size_t)gA + 1), *wg = malloc(sizeof(double) * (size_t)gG + 1);
        double *tmp = malloc(sizeof(double) * (size_t)(s->dA * s->dA + s->dG * s->dG) + 1);
        if (!r || !wa || !wg || !tmp ||
            !(r->eig = malloc(sizeof(double) * (size_t)(s->groups * s->dA * s->dG) + 1))) {
            free(wa), free(wg), free(tmp);
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
            goto done;
        }
        r->method = "kron";
        /* Eigenvalues of each group's factors; the block's are all products
         * lambda_i(G_g) lambda_j(A_g). */
        int64_t k = 0;
        for (int64_t grp = 0; grp < s->groups && !st; grp++) {
            memcpy(tmp, s->A + grp * s->dA * s->dA, sizeof(double) * (size_t)(s->dA * s->dA));
            st = cs_sym_eig(tmp, s->dA, wa + grp * s->dA, NULL, err);
            if (st)
                break;
            memcpy(tmp, s->G[f] + grp * s->dG * s->dG, sizeof(double) * (size_t)(s->dG * s->dG));
            st = cs_sym_eig(tmp, s->dG, wg + grp * s->dG, NULL, err);
            for (int64_t i = 0; i < s->dG && !st; i++)
                for (int64_t j = 0; j < s->dA; j++)
                    r->eig[k++] = wg[grp * s->dG + i] * wa[grp * s->dA + j];
        }
        free(tmp);
        if (st) {
            free(wa), free(wg);
            goto done;
        }
        qsort(r->eig, (size_t)k, sizeof(double), cmp_desc);
        qsort(wa, (size_t)gA, sizeof(double), cmp_desc);
        qsort(wg, (size_t)gG, sizeof(double), cmp_desc);
        r->n_eig = k;
        r->factor_eig[0] = wa;
        r->n_factor_eig[0] = gA;
        r->factor_eig[1] = wg;
        r->n_factor_eig[1] = gG;
        cs_spectrum_summarize(r->eig, k, &r->sum);
        if (e->o->keep_matrices) {
            size_t na = (size_t)(s->groups * s->dA * s->dA), ng = (size_t)(s->groups * s->dG * s->dG);
            r->kfac_A = malloc(sizeof(double) * na);
            r->kfac_G = malloc(sizeof(double) * ng);
            r->kfac_index = malloc(sizeof(int64_t) * 3 * (size_t)W);
            if (r->kfac_A && r->kfac_G && r->kfac_index) {
                memcpy(r->kfac_A, s->A, sizeof(double) * na);
                memcpy(r->kfac_G, s->G[f], sizeof(double) * ng);
                memcpy(r->kfac_index, s->kron, sizeof(int64_t) * 3 * (size_t)W);
                r->kfac_groups = s->groups;
                r->kfac_dA = s->dA;
                r->kfac_dG = s->dG;
            }
        }
        if (ex_sum || (e->o->keep_matrices && W <= e->o->max_full)) {
            double *M = dense ? dense : malloc(sizeof(double) * (size_t)(W * W) + 1);
            if (M) {
                dense_kfac(s, s->A, s->G[f], M);
                if (e->o->keep_matrices && (r->matrix = malloc(sizeof(double) * (size_t)(W * W))))
                    memcpy(r->matrix, M, sizeof(double) * (size_t)(W * W));
                if (ex_sum)
                    st = compare(M, full, W, ex_sum, ex_top, r, err);
                if (M != dense)
                    free(M);
            }
        }
        r->seconds = cs_now_seconds() - t0;
    }
done:
    free(ex_top);
    free(dense);
    return st;
}

static double *dup_doubles(const double *src, int64_t n)
{
    double *d = malloc(sizeof(double) * (size_t)n + 1);
    if (d)
        memcpy(d, src, sizeof(double) * (size_t)n);
    return d;
}

/* stats_only: the accumulated matrices of one layer and curvature, without
 * spectra (the fine-tuning preconditioners invert them themselves). */
static cs_status layer_stats(engine *e, int l, cs_curv_kind c, cs_err *err)
{
    layer_state *s = &e->L[l];
    int64_t W = s->W;
    int f = family_of(c);
    const double *full = c == CS_CURV_HESSIAN ? s->h_full : s->full[f];
    if (full && want(e, c, CS_REPR_FULL)) {
        cs_curv_result *r = new_result(e, l, c, CS_REPR_FULL, W);
        if (!r || !(r->matrix = dup_doubles(full, W * W)))
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    }
    if (want(e, c, CS_REPR_DIAG)) {
        const double *d = c == CS_CURV_HESSIAN ? (s->h_hutch ? s->h_diag : NULL) : s->diag[f];
        if (d || full) {
            cs_curv_result *r = new_result(e, l, c, CS_REPR_DIAG, W);
            if (!r || !(r->matrix = d ? dup_doubles(d, W) : malloc(sizeof(double) * (size_t)W + 1)))
                return cs_fail(err, CS_ERR_NOMEM, "out of memory");
            for (int64_t i = 0; !d && i < W; i++)
                r->matrix[i] = full[i * W + i];
            r->method = d && c == CS_CURV_HESSIAN ? "hutchinson" : "exact";
        }
    }
    if (want(e, c, CS_REPR_UNIT) && s->unit_idx && (c != CS_CURV_HESSIAN || full)) {
        int64_t d = s->unit_d, nu = s->n_units;
        cs_curv_result *r = new_result(e, l, c, CS_REPR_UNIT, W);
        if (!r || !(r->unit_index = malloc(sizeof(int64_t) * (size_t)(nu * d) + 1)) ||
            !(r->unit_blocks = c == CS_CURV_HESSIAN ? calloc((size_t)(nu * d * d) + 1, sizeof(double))
                                                    : dup_doubles(s->unit[f], nu * d * d)))
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        memcpy(r->unit_index, s->unit_idx, sizeof(int64_t) * (size_t)(nu * d));
        r->n_units = nu;
        r->unit_d = d;
        if (c == CS_CURV_HESSIAN)
            unit_blocks_from_full(s, full, r->unit_blocks);
    }
    if (want(e, c, CS_REPR_KFAC) && s->kfac_ok && s->G[f]) {
        cs_curv_result *r = new_result(e, l, c, CS_REPR_KFAC, W);
        if (!r)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        r->method = "kron";
        r->kfac_A = dup_doubles(s->A, s->groups * s->dA * s->dA);
        r->kfac_G = dup_doubles(s->G[f], s->groups * s->dG * s->dG);
        r->kfac_index = malloc(sizeof(int64_t) * 3 * (size_t)W + 1);
        if (!r->kfac_A || !r->kfac_G || !r->kfac_index)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        memcpy(r->kfac_index, s->kron, sizeof(int64_t) * 3 * (size_t)W);
        r->kfac_groups = s->groups;
        r->kfac_dA = s->dA;
        r->kfac_dG = s->dG;
    }
    return CS_OK;
}

/* ---- set-up, the pass, and results ---- */

cs_status cs_curv_layer_layout(const cs_graph *g, int l, bool *ok, int64_t *groups, int64_t *dG, int64_t *dA,
                               int64_t **index, cs_err *err)
{
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    engine e = {.g = g, .o = &o};
    layer_state s;
    memset(&s, 0, sizeof s);
    *index = NULL;
    cs_status st = layer_geometry(&e, l, &s, err);
    *ok = !st && s.kind != 3 && s.kfac_ok;
    if (*ok) {
        *groups = s.groups, *dG = s.dG, *dA = s.dA;
        *index = s.kron;
        s.kron = NULL;
    }
    free(s.kron), free(s.unit_idx);
    return st;
}

static void engine_free(engine *e)
{
    if (e->L)
        for (int l = 0; l < e->g->n_layers; l++) {
            layer_state *s = &e->L[l];
            free(s->kron), free(s->unit_idx), free(s->A), free(s->sh_L), free(s->sh_R), free(s->sh_G);
            free(s->a_rows);
            for (int f = 0; f < FAM_COUNT; f++)
                free(s->full[f]), free(s->diag[f]), free(s->unit[f]), free(s->G[f]), free(s->g_rows[f]);
            free(s->h_full), free(s->h_diag), free(s->h_diag_sq), free(s->h_probe_trace);
        }
    free(e->L);
    for (int f = 0; f < FAM_COUNT; f++)
        free(e->net[f]);
    free(e->h_net), free(e->rows), free(e->unit_rows), free(e->net_rows), free(e->abuf), free(e->seedwork);
    free(e->dbuf);
    free(e->hcol), free(e->probe), free(e->vec);
    cs_objective_free(&e->obj);
}

static cs_status plan_accumulators(engine *e, cs_err *err)
{
    const cs_graph *g = e->g;
    const cs_curv_opts *o = e->o;
    cs_curv_report *rep = e->rep;
    e->P = g->n_param_scalars;
    e->hessian = o->curvatures >> CS_CURV_HESSIAN & 1;
    for (int f = 0; f < FAM_COUNT; f++)
        e->fam[f] = family_wanted(e, f);
    if (o->shampoo)
        e->fam[FAM_EMP] = true; /* Shampoo's statistics come from the true-label gradients */
    bool any_full = o->reprs >> CS_REPR_FULL & 1;
    bool compare_any = !o->stats_only &&
                       (o->reprs & (1u << CS_REPR_KFAC | 1u << CS_REPR_DIAG | 1u << CS_REPR_UNIT)) != 0;
    e->net_full = any_full && e->P <= o->max_full && g->n_layers > 0 && !o->stats_only;
    int64_t B = e->obj.batch, maxW = 1;
    size_t abuf = 1;
    e->L = calloc((size_t)g->n_layers + 1, sizeof *e->L);
    if (!e->L)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    for (int l = 0; l < g->n_layers; l++) {
        layer_state *s = &e->L[l];
        cs_status st = layer_geometry(e, l, s, err);
        if (st)
            return st;
        const cs_layer *L = &g->layers[l];
        maxW = s->W > maxW ? s->W : maxW;
        bool kfac = (o->reprs >> CS_REPR_KFAC & 1) && s->kfac_ok;
        if ((o->reprs >> CS_REPR_KFAC & 1) && !s->kfac_ok && (o->curvatures & ~(1u << CS_CURV_HESSIAN)))
            note(rep, "layer %s (%s): no K-FAC representation", L->name, L->op_type);
        if ((o->reprs >> CS_REPR_UNIT & 1) && !s->unit_idx)
            note(rep, "layer %s (%s): no unit-wise representation", L->name, L->op_type);
        if (any_full && !s->small)
            note(rep, "layer %s: %lld parameters, above --max-full %lld: no full block", L->name,
                 (long long)s->W, (long long)o->max_full);
        for (int f = 0; f < FAM_COUNT; f++) {
            if (!e->fam[f])
                continue;
            if (s->small && (any_full || compare_any))
                s->full[f] = zalloc((size_t)(s->W * s->W));
            if (o->reprs >> CS_REPR_DIAG & 1)
                s->diag[f] = zalloc((size_t)s->W);
            if ((o->reprs >> CS_REPR_UNIT & 1) && s->unit_idx)
                s->unit[f] = zalloc((size_t)(s->n_units * s->unit_d * s->unit_d));
            if (kfac)
                s->G[f] = zalloc_touched((size_t)(s->groups * s->dG * s->dG));
        }
        if (kfac && (e->fam[FAM_GGN] || e->fam[FAM_MC] || e->fam[FAM_EMP]))
            s->A = zalloc_touched((size_t)(s->groups * s->dA * s->dA));
        if (o->shampoo && s->kind != 3 && s->kfac_ok) {
            s->sh_L = zalloc((size_t)(s->groups * s->dG * s->dG));
            s->sh_R = zalloc((size_t)(s->groups * s->dA * s->dA));
            s->sh_G = zalloc((size_t)(s->groups * s->dG * s->dA));
            if (!s->sh_L || !s->sh_R || !s->sh_G)
                return cs_fail(err, CS_ERR_NOMEM, "out of memory for Shampoo statistics");
        }
        if (e->hessian) {
            bool need_block = any_full || compare_any || (o->reprs >> CS_REPR_DIAG & 1) ||
                              (o->reprs >> CS_REPR_UNIT & 1);
            if (s->small && need_block)
                s->h_full = zalloc((size_t)(s->W * s->W));
            else if (o->reprs >> CS_REPR_DIAG & 1) {
                s->h_hutch = true;
                s->h_diag = zalloc((size_t)s->W);
                s->h_probe_trace = zalloc((size_t)o->probes);
            }
        }
        /* K-FAC rows: Gemm/MatMul [B*T, dA]; Conv one sample-group's
         * patches (double and float) and the output gradient. */
        if (s->kind != 3) {
            const cs_node *n = &g->nodes[L->node];
            const cs_tensor *X = &e->obj.plan[0].vals[n->inputs[0] == g->params[L->first_param].value ? n->inputs[1] : n->inputs[0]];
            int64_t out_n = cs_tensor_numel(&e->obj.plan[0].vals[L->bias_node >= 0 ? g->nodes[L->bias_node].outputs[0] : n->outputs[0]]);
            size_t need = (size_t)out_n;
            if (s->kind == 2) {
                /* A: [dA, B T] doubles + [Kp, B T] floats; G: D and its
                 * per-group copy, 2 [B, M, T]. */
                cs_conv_geom geo;
                int64_t groups;
                if (cs_conv_geometry(n, X, &e->obj.plan[0].vals[n->inputs[1]], &geo, &groups, err) == CS_OK) {
                    size_t bt = (size_t)(B * geo.out_size);
                    size_t a_need = (size_t)s->dA * bt + ((size_t)s->fan_in * bt + 1) / 2;
                    need = 2 * need > a_need ? 2 * need : a_need;
                }
            } else {
                s->positions = cs_tensor_numel(X) / (s->fan_in ? s->fan_in : 1) / (B ? B : 1);
            }
            if (s->kind != 2 && s->A) {
                int64_t rows = cs_tensor_numel(X) / (s->fan_in ? s->fan_in : 1);
                s->kfac_cap = rows > KFAC_ROWS ? rows : KFAC_ROWS;
                s->a_rows = zalloc_touched((size_t)(s->kfac_cap * s->dA));
                for (int f = 0; f < FAM_COUNT; f++)
                    if (s->G[f] && !(s->g_rows[f] = zalloc_touched((size_t)(s->kfac_cap * s->dG))))
                        return cs_fail(err, CS_ERR_NOMEM, "out of memory for K-FAC rows");
                if (!s->a_rows)
                    return cs_fail(err, CS_ERR_NOMEM, "out of memory for K-FAC rows");
            }
            abuf = need > abuf ? need : abuf;
        }
    }
    e->rows = zalloc((size_t)(B * maxW));
    size_t dbuf = 0;
    for (int l = 0; l < g->n_layers; l++) {
        const layer_state *s = &e->L[l];
        bool any_diag = false;
        for (int f = 0; f < FAM_COUNT; f++)
            any_diag = any_diag || s->diag[f];
        size_t need = (size_t)(B * s->dA + B * s->dG + s->dG * s->dA);
        if (any_diag && diag_direct_ok(s) && need > dbuf)
            dbuf = need;
    }
    if (dbuf && !(e->dbuf = zalloc(dbuf)))
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the diagonals");
    int64_t max_unit = 1;
    for (int l = 0; l < g->n_layers; l++)
        if (e->L[l].unit_idx && e->L[l].unit_d > max_unit)
            max_unit = e->L[l].unit_d;
    e->unit_rows = zalloc((size_t)(B * max_unit));
    if (e->net_full)
        for (int f = 0; f < FAM_COUNT; f++)
            if (e->fam[f])
                e->net[f] = zalloc((size_t)(e->P * e->P));
    if (e->net_full)
        e->net_rows = zalloc((size_t)(B * e->P));
    if (e->hessian && e->net_full)
        e->h_net = zalloc((size_t)(e->P * e->P));
    e->seedwork = zalloc((size_t)(e->obj.classes * e->obj.classes + 2 * e->obj.classes));
    e->vec = zalloc((size_t)e->P);
    e->hcol = zalloc((size_t)e->P);
    if (e->hessian) {
        e->probe = zalloc((size_t)o->probes * (size_t)e->P);
        for (int64_t i = 0; e->probe && i < (int64_t)o->probes * e->P; i++)
            e->probe[i] = cs_rng_sign(&e->rng);
    }
    if (!e->rows || !e->unit_rows || !e->seedwork || !e->vec || !e->hcol || (e->hessian && !e->probe))
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for curvature accumulators");
    return abuf_reserve(e, abuf, err);
}

cs_status cs_curvature_compute(const cs_graph *g, const cs_dataset *ds, const cs_curv_opts *o,
                               cs_curv_report *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    double t_start = cs_now_seconds();
    engine e = {.g = g, .ds = ds, .o = o, .rep = out};
    cs_rng_seed(&e.rng, o->seed);
    for (int c = 0; c < CS_CURV_COUNT; c++)
        for (int r = 0; r < CS_REPR_COUNT; r++) {
            const char *why;
            if ((o->curvatures >> c & 1) && (o->reprs >> r & 1) &&
                !cs_curv_repr_valid((cs_curv_kind)c, (cs_repr_kind)r, &why))
                note(out, "%s %s skipped: %s", cs_curv_name((cs_curv_kind)c), cs_repr_name((cs_repr_kind)r), why);
        }
    /* every seed of a forward reuses the Conv layers' patches */
    unsigned mode = CS_AD_GRAD | CS_AD_PATCH_CACHE | ((o->curvatures >> CS_CURV_HESSIAN & 1) ? CS_AD_HVP : 0);
    /* the engine reads each batch's plan and derivatives itself */
    /* Every statistic is a sum over samples, so the engine runs the
     * objective's micro-batches (objective.h): its captures stay in cache
     * and take a fraction of the memory; results change only by rounding
     * and by the order in which fisher_mc draws its labels. */
    int64_t batch = cs_objective_micro_batch(g, o->batch);
    cs_status st = cs_objective_init(&e.obj, g, ds, o->norm, o->loss, batch, mode | CS_OBJ_WHOLE_BATCH, err);
    if (st)
        return st;
    if (g->n_layers == 0) {
        engine_free(&e);
        return cs_fail(err, CS_ERR_UNSUPPORTED, "the model has no layers with trainable parameters");
    }
    if ((st = plan_accumulators(&e, err)))
        goto fail;

    int64_t N = ds->n;
    double inv_n = 1.0 / (double)N;
    int S = o->mc_samples > 0 ? o->mc_samples : 1;
    for (int64_t start = 0; start < N; start += e.obj.batch) {
        int which = start + e.obj.batch <= N ? 0 : 1;
        cs_plan *p = &e.obj.plan[which];
        cs_ad *ad = &e.obj.ad[which];
        if ((st = cs_dataset_fill_inputs(ds, start, o->norm, cs_plan_input(p, 0), err)) ||
            (st = cs_plan_forward(p, err)))
            goto fail;
        const cs_tensor *z = &p->vals[e.obj.head.logits_value];
        int64_t B = z->dims[0], C = e.obj.classes;
        bool a_done = false;
        for (int f = 0; f < FAM_COUNT; f++) {
            if (!e.fam[f])
                continue;
            int n_seeds = f == FAM_GGN ? (int)C : f == FAM_MC ? S : 1;
            double scale = f == FAM_MC ? 1.0 / sqrt((double)S) : 1.0;
            for (int k = 0; k < n_seeds; k++) {
                cs_loss_seed_batch(&e.obj.head,
                                   f == FAM_GGN ? CS_SEED_FACTOR_COLUMN
                                                : f == FAM_MC ? CS_SEED_SAMPLED : CS_SEED_TRUE_LABEL,
                                   k, z, ds, start, &e.rng, cs_ad_seed(ad), e.seedwork);
                if ((st = seed_pass(&e, which, f, k, scale, start, B, err)))
                    goto fail;
                if (!a_done) {
                    for (int l = 0; l < g->n_layers; l++)
                        if (e.L[l].A && (st = accumulate_A(&e, ad, l, err)))
                            goto fail;
                    a_done = true;
                }
            }
        }
        if (e.hessian) {
            cs_loss_grad_batch(&e.obj.head, z, ds, start, inv_n, cs_ad_seed(ad), e.seedwork);
            ad->param_grads = false;
            if ((st = cs_ad_backward(ad, err)) || (st = hessian_batch(&e, which, err)))
                goto fail;
        }
        if (o->progress)
            o->progress(o->progress_ctx, start + B, N);
        if (o->cancel && *o->cancel) {
            st = cs_fail(err, CS_ERR_RUNTIME, "interrupted after %lld of %lld samples",
                         (long long)(start + B), (long long)N);
            goto fail;
        }
    }

    for (int l = 0; l < g->n_layers; l++)
        kfac_flush(&e.L[l]);

    /* Normalise: captures were per-sample (unscaled) losses. */
    for (int l = 0; l < g->n_layers; l++) {
        layer_state *s = &e.L[l];
        for (int f = 0; f < FAM_COUNT; f++) {
            if (s->full[f])
                symmetrize(s->full[f], s->W, inv_n);
            for (int64_t i = 0; s->diag[f] && i < s->W; i++)
                s->diag[f][i] *= inv_n;
            for (int64_t u = 0; s->unit[f] && u < s->n_units; u++)
                symmetrize(s->unit[f] + u * s->unit_d * s->unit_d, s->unit_d, inv_n);
            for (int64_t grp = 0; s->G[f] && grp < s->groups; grp++)
                symmetrize(s->G[f] + grp * s->dG * s->dG, s->dG, inv_n);
        }
        for (int64_t grp = 0; s->A && grp < s->groups; grp++)
            symmetrize(s->A + grp * s->dA * s->dA, s->dA, s->a_count > 0 ? 1.0 / s->a_count : 0);
        if (s->h_full)
            for (int64_t i = 0; i < s->W; i++) /* average the tiny asymmetry of float32 products */
                for (int64_t j = i + 1; j < s->W; j++)
                    s->h_full[i * s->W + j] = s->h_full[j * s->W + i] =
                        0.5 * (s->h_full[i * s->W + j] + s->h_full[j * s->W + i]);
        for (int64_t i = 0; s->h_hutch && i < s->W; i++)
            s->h_diag[i] /= o->probes;
    }
    for (int f = 0; f < FAM_COUNT; f++)
        if (e.net[f])
            symmetrize(e.net[f], e.P, inv_n);
    if (o->shampoo) {
        out->shampoo = calloc((size_t)g->n_layers + 1, sizeof *out->shampoo);
        out->n_shampoo = g->n_layers;
        if (!out->shampoo) {
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int l = 0; l < g->n_layers; l++) {
            layer_state *s = &e.L[l];
            if (!s->sh_L)
                continue;
            cs_shampoo_stats *x = &out->shampoo[l];
            for (int64_t grp = 0; grp < s->groups; grp++) {
                symmetrize(s->sh_L + grp * s->dG * s->dG, s->dG, inv_n);
                symmetrize(s->sh_R + grp * s->dA * s->dA, s->dA, inv_n);
            }
            x->groups = s->groups, x->dG = s->dG, x->dA = s->dA, x->dim = s->W;
            x->L = s->sh_L, x->R = s->sh_R; /* ownership moves to the report */
            s->sh_L = s->sh_R = NULL;
            x->index = malloc(sizeof(int64_t) * 3 * (size_t)s->W);
            if (!x->index) {
                st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
                goto fail;
            }
            memcpy(x->index, s->kron, sizeof(int64_t) * 3 * (size_t)s->W);
        }
    }

    for (int c = 0; c < CS_CURV_COUNT && !st; c++) {
        if (!(o->curvatures >> c & 1))
            continue;
        for (int l = 0; l < g->n_layers && !st; l++)
            st = o->stats_only ? layer_stats(&e, l, (cs_curv_kind)c, err) : layer_results(&e, l, (cs_curv_kind)c, err);
        double *net = c == CS_CURV_HESSIAN ? e.h_net : family_of((cs_curv_kind)c) >= 0 ? e.net[family_of((cs_curv_kind)c)] : NULL;
        if (!st && net) {
            if (c == CS_CURV_HESSIAN)
                for (int64_t i = 0; i < e.P; i++)
                    for (int64_t j = i + 1; j < e.P; j++)
                        net[i * e.P + j] = net[j * e.P + i] = 0.5 * (net[i * e.P + j] + net[j * e.P + i]);
            double t0 = cs_now_seconds();
            cs_curv_result *r = new_result(&e, -1, (cs_curv_kind)c, CS_REPR_FULL, e.P);
            st = r ? spectrum_of(net, e.P, r, NULL, err) : cs_fail(err, CS_ERR_NOMEM, "out of memory");
            if (!st && o->keep_matrices && (r->matrix = malloc(sizeof(double) * (size_t)(e.P * e.P))))
                memcpy(r->matrix, net, sizeof(double) * (size_t)(e.P * e.P));
            if (r)
                r->seconds = cs_now_seconds() - t0;
        }
    }
    if (st)
        goto fail;
    /* Drop full blocks computed only as references for the comparisons. */
    int k = 0;
    for (int i = 0; i < out->n; i++) {
        if (out->res[i].dim < 0) {
            free(out->res[i].eig), free(out->res[i].matrix);
            continue;
        }
        out->res[k++] = out->res[i];
    }
    out->n = k;
    engine_free(&e);
    out->seconds = cs_now_seconds() - t_start;
    return CS_OK;
fail:
    engine_free(&e);
    cs_curv_report_free(out);
    return st;
}

void cs_curv_report_free(cs_curv_report *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->res[i].eig);
        free(r->res[i].matrix);
        free(r->res[i].factor_eig[0]);
        free(r->res[i].factor_eig[1]);
        free(r->res[i].kfac_A);
        free(r->res[i].kfac_G);
        free(r->res[i].kfac_index);
        free(r->res[i].unit_blocks);
        free(r->res[i].unit_index);
    }
    free(r->res);
    for (int l = 0; r->shampoo && l < r->n_shampoo; l++)
        free(r->shampoo[l].L), free(r->shampoo[l].R), free(r->shampoo[l].index);
    free(r->shampoo);
    memset(r, 0, sizeof *r);
}

const cs_curv_result *cs_curv_report_find(const cs_curv_report *r, cs_curv_kind c, cs_repr_kind p,
                                          int layer)
{
    for (int i = 0; i < r->n; i++)
        if (r->res[i].curv == c && r->res[i].repr == p && r->res[i].layer == layer)
            return &r->res[i];
    return NULL;
}
