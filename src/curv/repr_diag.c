/* The diagonal representation: diag (1/N) sum_n g_n g_n^T, from the
 * per-sample gradients, or for single-position linear layers straight from
 * the captures; the Hessian's diagonal comes from its exact block or its
 * Hutchinson estimate (repr_hessian.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/parallel.h"
#include "curv/alloc.h"
#include "curv/repr.h"
#include "tensor/blas.h"

typedef struct diag_state {
    double **diag;              /* [n_layers][CS_FAM_COUNT]: [W] or NULL */
    int64_t *positions;         /* [n_layers]: Gemm / MatMul rows of the input per sample (T) */
    double *dbuf;               /* direct diagonals: squared inputs, squared gradients, product */
} diag_state;

/* A Gemm / MatMul layer whose samples have one position each (B rows per
 * capture): a sample's gradient is the outer product delta abar^T, so its
 * squares are delta^2 (abar^2)^T and the diagonal's sum over the batch is
 * one GEMM, (delta^2)^T (abar^2), with no per-sample gradient formed (the
 * way BackPACK's DiagGGN treats linear layers).  Layers with weight sharing
 * (Conv, MatMul over positions) square sums over positions and keep the
 * per-sample rows. */
static bool diag_direct_ok(const cs_layer_layout *s, int64_t positions)
{
    return s->kfac == CS_KFAC_ROWS && s->groups == 1 &&
           positions == 1;
}

static void diag_free(const cs_repr_ctx *x, void *state)
{
    diag_state *s = state;
    cs_repr_blocks_free(x, s->diag);
    free(s->positions);
    free(s->dbuf);
    free(s);
}

static cs_status diag_plan(const cs_repr_ctx *x, void **state, cs_err *err)
{
    if (!(x->o->reprs >> CS_REPR_DIAG & 1))
        return CS_OK;
    const cs_graph *g = x->g;
    int nl = g->n_layers;
    diag_state *s;
    cs_status st = cs_curv_calloc(&s, 1, err, "the diagonals' state");
    if (st)
        return st;
    *state = s;
    if ((st = cs_repr_blocks_new(x, &s->diag, "diagonals", err)))
        return st;
    if ((st = cs_curv_malloc((void **)&s->positions, sizeof *s->positions * (size_t)nl, err,
                             "the diagonals' positions")))
        return st;
    size_t dbuf = 0;
    int64_t B = x->B;
    bool any = false;
    for (int f = 0; f < CS_FAM_COUNT; f++)
        any |= x->fam[f];
    for (int l = 0; l < nl; l++) {
        const cs_layer_layout *lay = &x->lay[l];
        s->positions[l] = 0;
        if (lay->kfac == CS_KFAC_ROWS) {
            const cs_tensor *X = &x->obj->plan[0].vals[cs_kfac_input_value(g, l)];
            s->positions[l] = cs_tensor_numel(X) / (lay->fan_in ? lay->fan_in : 1) / (B ? B : 1);
        }
        /* without per-sample rows only the direct form is left */
        if ((x->rows_ok[l] || diag_direct_ok(lay, s->positions[l])) &&
            (st = cs_repr_blocks_layer(x, s->diag, l, lay->W, "diagonal", err)))
            return st;
        size_t need = (size_t)(B * lay->dA + B * lay->dG + lay->dG * lay->dA);
        if (any && diag_direct_ok(lay, s->positions[l]) && need > dbuf)
            dbuf = need;
    }
    if (dbuf && (st = cs_curv_zalloc(&s->dbuf, dbuf, err, "the direct diagonals' rows")))
        return st;
    return CS_OK;
}

static cs_repr_rows diag_rows(const cs_repr_ctx *x, const void *state, int l, int f)
{
    const diag_state *s = state;
    if (!s->diag[l * CS_FAM_COUNT + f])
        return CS_ROWS_NONE;
    return diag_direct_ok(&x->lay[l], s->positions[l]) ? CS_ROWS_AVOIDABLE : CS_ROWS_NEEDED;
}

static void diag_add_rows(const cs_repr_ctx *x, void *state, int l, int f, const double *rows, int64_t B)
{
    diag_state *s = state;
    double *d = s->diag[l * CS_FAM_COUNT + f];
    int64_t W = x->lay[l].W;
    if (!d)
        return;
    /* Parameters are independent: each thread sums its slice over the
     * samples in order. */
#pragma omp parallel if (B * W >= CS_OMP_MIN_ELEMS)
    {
        int64_t lo, hi;
        cs_omp_slice(W, &lo, &hi);
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = lo; i < hi; i++)
                d[i] += rows[b * W + i] * rows[b * W + i];
    }
}

/* The direct diagonal of one seed (see diag_direct_ok). */
static cs_status diag_add_capture(const cs_repr_ctx *x, void *state, cs_ad *ad, int l, int f, double scale,
                                  bool rows_formed, cs_err *err)
{
    diag_state *ds = state;
    const cs_layer_layout *s = &x->lay[l];
    double *diag = ds->diag[l * CS_FAM_COUNT + f];
    if (!diag || rows_formed || !diag_direct_ok(s, ds->positions[l]))
        return CS_OK;
    cs_layer_capture cap;
    cs_status st = cs_ad_capture(ad, l, &cap, err);
    if (st)
        return st;
    const cs_tensor *X = cap.input, *D = cap.output_grad;
    int64_t B = D->dims[0];
    double *a2 = ds->dbuf, *d2 = a2 + B * s->dA, *M = d2 + B * s->dG;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < s->fan_in; j++) {
            double v = cs_kfac_at(X, b * s->fan_in + j);
            a2[b * s->dA + j] = v * v;
        }
        if (s->bias)
            a2[b * s->dA + s->fan_in] = 1.0;
        for (int64_t i = 0; i < s->dG; i++) {
            double v = scale * cs_kfac_at(D, b * s->dG + i);
            d2[b * s->dG + i] = v * v;
        }
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)s->dG, (int)s->dA, (int)B, 1.0, d2,
                (int)s->dG, a2, (int)s->dA, 0.0, M, (int)s->dA);
    for (int64_t p = 0; p < s->W; p++) {
        const int64_t *k = s->kron + 3 * p; /* (group, unit, feature) */
        diag[p] += M[k[1] * s->dA + k[2]];
    }
    return CS_OK;
}

static cs_status diag_reduce(const cs_repr_ctx *x, void *state, cs_err *err)
{
    diag_state *s = state;
    cs_status st = CS_OK;
    for (int l = 0; l < x->g->n_layers; l++)
        for (int f = 0; f < CS_FAM_COUNT; f++)
            st = cs_repr_sum_ranks(x, st, s->diag[l * CS_FAM_COUNT + f], x->lay[l].W, err);
    return st;
}

static void diag_normalise(const cs_repr_ctx *x, void *state, double inv_n)
{
    diag_state *s = state;
    for (int l = 0; l < x->g->n_layers; l++)
        for (int f = 0; f < CS_FAM_COUNT; f++) {
            double *d = s->diag[l * CS_FAM_COUNT + f];
            for (int64_t i = 0; d && i < x->lay[l].W; i++)
                d[i] *= inv_n;
        }
}

static void diag_sources(const cs_repr_ctx *x, const void *state, int l, cs_curv_kind c, cs_repr_sources *src)
{
    (void)x;
    const diag_state *s = state;
    int f = cs_curv_family(c);
    if (f >= 0 && l >= 0) {
        src->diag = s->diag[l * CS_FAM_COUNT + f];
        src->diag_method = "exact";
    }
}

/* The diagonal of the sources: their own, or read off the exact block
 * into *own (freed by the caller). */
static cs_status diagonal_of(const cs_repr_ctx *x, int l, const cs_repr_sources *src, const double **d,
                             double **own, cs_err *err)
{
    *own = NULL;
    *d = src->diag;
    if (*d || !src->full)
        return CS_OK;
    int64_t W = x->lay[l].W;
    cs_status st = cs_curv_malloc((void **)own, sizeof(double) * (size_t)W, err,
                                  "the diagonal of layer '%s'", x->g->layers[l].name);
    for (int64_t i = 0; !st && i < W; i++)
        (*own)[i] = src->full[i * W + i];
    *d = *own;
    return st;
}

static bool is_hutchinson(const cs_repr_sources *src)
{
    return src->diag && src->diag_method && strcmp(src->diag_method, "hutchinson") == 0;
}

static cs_status diag_results(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src,
                              cs_repr_ref *ref, cs_err *err)
{
    if (l < 0 || !cs_repr_wanted(x, c, CS_REPR_DIAG))
        return CS_OK;
    int64_t W = x->lay[l].W;
    const double *d;
    double *own;
    cs_status st = diagonal_of(x, l, src, &d, &own, err);
    if (st || !d)
        return st;
    bool hutch = is_hutchinson(src);
    cs_curv_result *r;
    if ((st = cs_repr_new_result(x, l, c, CS_REPR_DIAG, W, &r, err)) ||
        (st = cs_repr_dup(&r->eig, d, W, "the diagonal's values", l, x, err)))
        goto done;
    r->method = hutch ? "hutchinson" : "exact";
    if (x->o->keep_matrices && (st = cs_repr_dup(&r->matrix, d, W, "a copy of the diagonal", l, x, err)))
        goto done; /* the diagonal itself */
    cs_repr_summarize_sorted(r, W);
    if (hutch) {
        /* Standard error of the trace from the spread of the probes. */
        int K = x->o->probes;
        double mean = 0, var = 0;
        for (int k = 0; k < K; k++)
            mean += src->probe_trace[k] / K;
        for (int k = 0; k < K; k++)
            var += (src->probe_trace[k] - mean) * (src->probe_trace[k] - mean) / (K > 1 ? K - 1 : 1);
        r->trace_stderr = sqrt(var / K);
    }
    if (ref->have && !hutch) {
        memset(ref->dense, 0, sizeof(double) * (size_t)(W * W));
        for (int64_t i = 0; i < W; i++)
            ref->dense[i * W + i] = d[i];
        if ((st = cs_repr_compare(ref->dense, src->full, W, ref, r, err)))
            goto done;
    }
    r->seconds = cs_now_seconds() - ref->t0;
done:
    free(own);
    return st;
}

static cs_status diag_stats(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src, cs_err *err)
{
    if (l < 0 || !cs_repr_wanted(x, c, CS_REPR_DIAG))
        return CS_OK;
    const double *d;
    double *own;
    cs_status st = diagonal_of(x, l, src, &d, &own, err);
    if (st || !d)
        return st;
    cs_curv_result *r;
    if (!(st = cs_repr_new_result(x, l, c, CS_REPR_DIAG, x->lay[l].W, &r, err))) {
        r->method = is_hutchinson(src) ? "hutchinson" : "exact";
        if (own) {
            r->matrix = own; /* ownership moves to the result */
            own = NULL;
        } else {
            st = cs_repr_dup(&r->matrix, d, x->lay[l].W, "the diagonal", l, x, err);
        }
    }
    free(own);
    return st;
}

const cs_repr_def cs_repr_diag = {
    .name = "diag",
    .plan = diag_plan,
    .free = diag_free,
    .rows = diag_rows,
    .add_rows = diag_add_rows,
    .add_capture = diag_add_capture,
    .reduce = diag_reduce,
    .normalise = diag_normalise,
    .sources = diag_sources,
    .results = diag_results,
    .stats = diag_stats,
};
