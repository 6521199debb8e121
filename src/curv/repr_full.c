/* The full representation: each layer's exact block (1/N) sum_n g_n g_n^T
 * from the per-sample gradients of every seed (one dsyrk per seed), and
 * the whole network's block when it has at most max_full parameters.  A
 * layer's block is also accumulated, without being reported, when an
 * approximation is scored against it. */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "curv/alloc.h"
#include "curv/repr.h"
#include "tensor/blas.h"

typedef struct full_state {
    double **blk;               /* [n_layers][CS_FAM_COUNT]: [W, W] or NULL */
    double *net[CS_FAM_COUNT];  /* [P, P] or NULL */
    double *net_rows;           /* one seed's rows of every layer, [B, P] */
} full_state;

static void full_free(const cs_repr_ctx *x, void *state)
{
    full_state *s = state;
    cs_repr_blocks_free(x, s->blk);
    for (int f = 0; f < CS_FAM_COUNT; f++)
        free(s->net[f]);
    free(s->net_rows);
    free(s);
}

static cs_status full_plan(const cs_repr_ctx *x, void **state, cs_err *err)
{
    const cs_curv_opts *o = x->o;
    bool any_full = o->reprs >> CS_REPR_FULL & 1;
    if (!any_full && !x->compare_any)
        return CS_OK;
    full_state *s;
    cs_status st = cs_curv_calloc(&s, 1, err, "the full blocks' state");
    if (st)
        return st;
    *state = s;
    int nl = x->g->n_layers;
    if ((st = cs_repr_blocks_new(x, &s->blk, "full blocks", err)))
        return st;
    for (int l = 0; l < nl; l++)
        if (cs_repr_small(x, l) && x->rows_ok[l] && (st = cs_repr_blocks_layer(x, s->blk, l, x->lay[l].W * x->lay[l].W,
                                                               "full block", err)))
            return st;
    if (x->net_full) {
        for (int f = 0; f < CS_FAM_COUNT; f++)
            if (x->fam[f] && (st = cs_curv_zalloc(&s->net[f], (size_t)(x->P * x->P), err,
                                                  "the %s block of the whole network", cs_curv_family_name(f))))
                return st;
        if ((st = cs_curv_zalloc(&s->net_rows, (size_t)(x->B * x->P), err,
                                 "the whole network's per-sample gradients")))
            return st;
    }
    return CS_OK;
}

static cs_repr_rows full_rows(const cs_repr_ctx *x, const void *state, int l, int f)
{
    (void)x;
    const full_state *s = state;
    return s->blk[l * CS_FAM_COUNT + f] || s->net[f] ? CS_ROWS_NEEDED : CS_ROWS_NONE;
}

static void full_add_rows(const cs_repr_ctx *x, void *state, int l, int f, const double *rows, int64_t B)
{
    full_state *s = state;
    int64_t W = x->lay[l].W;
    double *blk = s->blk[l * CS_FAM_COUNT + f];
    if (blk)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)W, (int)B, 1.0, rows, (int)W, 1.0, blk, (int)W);
    if (s->net[f])
        for (int64_t b = 0; b < B; b++)
            memcpy(s->net_rows + b * x->P + x->g->params[x->g->layers[l].first_param].offset, rows + b * W, sizeof(double) * (size_t)W);
}

static void full_seed_done(const cs_repr_ctx *x, void *state, int f, int64_t B)
{
    full_state *s = state;
    if (s->net[f])
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)x->P, (int)B, 1.0, s->net_rows, (int)x->P, 1.0,
                    s->net[f], (int)x->P);
}

static cs_status full_reduce(const cs_repr_ctx *x, void *state, cs_err *err)
{
    full_state *s = state;
    cs_status st = CS_OK;
    for (int l = 0; l < x->g->n_layers; l++)
        for (int f = 0; f < CS_FAM_COUNT; f++)
            st = cs_repr_sum_ranks(x, st, s->blk[l * CS_FAM_COUNT + f], x->lay[l].W * x->lay[l].W, err);
    for (int f = 0; f < CS_FAM_COUNT; f++)
        st = cs_repr_sum_ranks(x, st, s->net[f], x->P * x->P, err);
    return st;
}

static void full_normalise(const cs_repr_ctx *x, void *state, double inv_n)
{
    full_state *s = state;
    for (int l = 0; l < x->g->n_layers; l++)
        for (int f = 0; f < CS_FAM_COUNT; f++)
            if (s->blk[l * CS_FAM_COUNT + f])
                cs_repr_symmetrize(s->blk[l * CS_FAM_COUNT + f], x->lay[l].W, inv_n);
    for (int f = 0; f < CS_FAM_COUNT; f++)
        if (s->net[f])
            cs_repr_symmetrize(s->net[f], x->P, inv_n);
}

static void full_sources(const cs_repr_ctx *x, const void *state, int l, cs_curv_kind c, cs_repr_sources *src)
{
    (void)x;
    const full_state *s = state;
    int f = cs_curv_family(c);
    if (f >= 0)
        src->full = l < 0 ? s->net[f] : s->blk[l * CS_FAM_COUNT + f];
}

/* The spectrum of a block into a new result, with a copy of the matrix
 * under keep_matrices. */
static cs_status exact_result(const cs_repr_ctx *x, int l, cs_curv_kind c, const double *M, int64_t n,
                              double *top, cs_curv_result **out, cs_err *err)
{
    cs_curv_result *r = NULL;
    cs_status st = cs_repr_new_result(x, l, c, CS_REPR_FULL, n, &r, err);
    if (!st)
        st = cs_repr_spectrum(M, n, r, top, err);
    if (!st && x->o->keep_matrices)
        st = cs_repr_dup(&r->matrix, M, n * n, "a copy of the full block", l, x, err);
    *out = r;
    return st;
}

static cs_status full_results(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src,
                              cs_repr_ref *ref, cs_err *err)
{
    const double *full = src->full;
    if (!full)
        return CS_OK;
    cs_curv_result *r = NULL;
    cs_status st;
    if (l < 0) {
        double t0 = cs_now_seconds();
        st = exact_result(x, -1, c, full, x->P, NULL, &r, err);
        if (r)
            r->seconds = cs_now_seconds() - t0;
        return st;
    }
    int64_t W = x->lay[l].W;
    if ((st = cs_curv_malloc((void **)&ref->top, sizeof(double) * (size_t)W, err,
                             "the top eigenvector of layer '%s'", x->g->layers[l].name)))
        return st;
    if ((st = exact_result(x, l, c, full, W, ref->top, &r, err)))
        return st;
    r->seconds = cs_now_seconds() - ref->t0;
    if (!(x->o->reprs >> CS_REPR_FULL & 1))
        r->dim = -r->dim; /* computed only as the reference: the engine drops it */
    /* The summary is copied out: results live in a growing array, so
     * pointers into it do not survive the next new result. */
    ref->sum = r->sum;
    ref->have = true;
    return cs_curv_malloc((void **)&ref->dense, sizeof(double) * (size_t)(W * W), err,
                          "a dense approximation of layer '%s'", x->g->layers[l].name);
}

static cs_status full_stats(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src, cs_err *err)
{
    if (!src->full || !cs_repr_wanted(x, c, CS_REPR_FULL))
        return CS_OK;
    int64_t W = x->lay[l].W;
    cs_curv_result *r;
    cs_status st = cs_repr_new_result(x, l, c, CS_REPR_FULL, W, &r, err);
    return st ? st : cs_repr_dup(&r->matrix, src->full, W * W, "the full block", l, x, err);
}

const cs_repr_def cs_repr_full = {
    .name = "full",
    .plan = full_plan,
    .free = full_free,
    .rows = full_rows,
    .add_rows = full_add_rows,
    .seed_done = full_seed_done,
    .reduce = full_reduce,
    .normalise = full_normalise,
    .sources = full_sources,
    .results = full_results,
    .stats = full_stats,
};
