/* The unit-wise representation: per output unit (a row of [W | b]) or per
 * normalisation channel (scale_c, bias_c), the block (1/N) sum_n g_u g_u^T
 * of its parameters; the Hessian's are read off its exact block. */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "curv/alloc.h"
#include "curv/repr.h"
#include "spectral/dense.h"
#include "tensor/blas.h"

typedef struct unit_state {
    double **unit;              /* [n_layers][CS_FAM_COUNT]: [n_units][d][d] or NULL */
    double *unit_rows;          /* one unit's columns of the rows, [B, unit_d] */
} unit_state;

static void unit_free(const cs_repr_ctx *x, void *state)
{
    unit_state *s = state;
    cs_repr_blocks_free(x, s->unit);
    free(s->unit_rows);
    free(s);
}

static cs_status unit_plan(const cs_repr_ctx *x, void **state, cs_err *err)
{
    if (!(x->o->reprs >> CS_REPR_UNIT & 1))
        return CS_OK;
    int nl = x->g->n_layers;
    unit_state *s;
    cs_status st = cs_curv_calloc(&s, 1, err, "the unit blocks' state");
    if (st)
        return st;
    *state = s;
    if ((st = cs_repr_blocks_new(x, &s->unit, "unit blocks", err)))
        return st;
    int64_t max_unit = 1;
    for (int l = 0; l < nl; l++) {
        const cs_layer_layout *lay = &x->lay[l];
        if (!lay->unit_idx || !x->rows_ok[l])
            continue;
        max_unit = lay->unit_d > max_unit ? lay->unit_d : max_unit;
        if ((st = cs_repr_blocks_layer(x, s->unit, l, lay->n_units * lay->unit_d * lay->unit_d, "unit blocks",
                                       err)))
            return st;
    }
    return cs_curv_zalloc(&s->unit_rows, (size_t)(x->B * max_unit), err, "the unit blocks' rows");
}

static cs_repr_rows unit_rows(const cs_repr_ctx *x, const void *state, int l, int f)
{
    (void)x;
    const unit_state *s = state;
    return s->unit[l * CS_FAM_COUNT + f] ? CS_ROWS_NEEDED : CS_ROWS_NONE;
}

static void unit_add_rows(const cs_repr_ctx *x, void *state, int l, int f, const double *rows, int64_t B)
{
    unit_state *us = state;
    const cs_layer_layout *s = &x->lay[l];
    double *U = us->unit[l * CS_FAM_COUNT + f];
    if (!U)
        return;
    /* Each unit's columns gathered to [B, d], then one dsyrk (absent slots
     * stay zero columns). */
    int64_t d = s->unit_d, W = s->W;
    double *X = us->unit_rows;
    for (int64_t u = 0; u < s->n_units; u++) {
        const int64_t *idx = s->unit_idx + u * d;
        for (int64_t b = 0; b < B; b++)
            for (int64_t k = 0; k < d; k++)
                X[b * d + k] = idx[k] >= 0 ? rows[b * W + idx[k]] : 0.0;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)B, 1.0, X, (int)d, 1.0, U + u * d * d,
                    (int)d);
    }
}

static cs_status unit_reduce(const cs_repr_ctx *x, void *state, cs_err *err)
{
    unit_state *us = state;
    cs_status st = CS_OK;
    for (int l = 0; l < x->g->n_layers; l++) {
        const cs_layer_layout *s = &x->lay[l];
        for (int f = 0; f < CS_FAM_COUNT; f++)
            st = cs_repr_sum_ranks(x, st, us->unit[l * CS_FAM_COUNT + f], s->n_units * s->unit_d * s->unit_d, err);
    }
    return st;
}

static void unit_normalise(const cs_repr_ctx *x, void *state, double inv_n)
{
    unit_state *us = state;
    for (int l = 0; l < x->g->n_layers; l++) {
        const cs_layer_layout *s = &x->lay[l];
        for (int f = 0; f < CS_FAM_COUNT; f++)
            for (int64_t u = 0; us->unit[l * CS_FAM_COUNT + f] && u < s->n_units; u++)
                cs_repr_symmetrize(us->unit[l * CS_FAM_COUNT + f] + u * s->unit_d * s->unit_d, s->unit_d, inv_n);
    }
}

static void unit_sources(const cs_repr_ctx *x, const void *state, int l, cs_curv_kind c, cs_repr_sources *src)
{
    (void)x;
    const unit_state *s = state;
    int f = cs_curv_family(c);
    if (f >= 0 && l >= 0)
        src->unit = s->unit[l * CS_FAM_COUNT + f];
}

/* The unit blocks of the sources: their own, or read off the exact block
 * into a zero-filled *own (absent slots stay zero; freed by the caller). */
static cs_status blocks_of(const cs_repr_ctx *x, int l, const cs_repr_sources *src, const double **U,
                           double **own, cs_err *err)
{
    const cs_layer_layout *s = &x->lay[l];
    *own = NULL;
    *U = src->unit;
    if (*U || !src->full)
        return CS_OK;
    int64_t d = s->unit_d, W = s->W;
    cs_status st = cs_curv_zalloc(own, (size_t)(s->n_units * d * d), err, "the unit blocks of layer '%s'",
                                  x->g->layers[l].name);
    if (st)
        return st;
    for (int64_t u = 0; u < s->n_units; u++)
        for (int64_t a = 0; a < d; a++)
            for (int64_t b = 0; b < d; b++) {
                int64_t p = s->unit_idx[u * d + a], q = s->unit_idx[u * d + b];
                if (p >= 0 && q >= 0)
                    (*own)[u * d * d + a * d + b] = src->full[p * W + q];
            }
    *U = *own;
    return CS_OK;
}

/* The unit blocks as a dense [W, W] block in parameter order. */
static void dense_unit(const cs_layer_layout *s, const double *U, double *M)
{
    int64_t W = s->W, d = s->unit_d;
    memset(M, 0, sizeof(double) * (size_t)(W * W));
    for (int64_t u = 0; u < s->n_units; u++)
        for (int64_t a = 0; a < d; a++)
            for (int64_t b = 0; b < d; b++) {
                int64_t p = s->unit_idx[u * d + a], q = s->unit_idx[u * d + b];
                if (p >= 0 && q >= 0)
                    M[p * W + q] = U[u * d * d + a * d + b];
            }
}

/* Pool the eigenvalues of every unit block into r->eig (absent slots are
 * zero rows: they contribute zero eigenvalues, dropped); *k of them. */
static cs_status pooled_eigenvalues(const cs_repr_ctx *x, int l, const double *U, cs_curv_result *r, int64_t *k,
                                    cs_err *err)
{
    const cs_layer_layout *s = &x->lay[l];
    int64_t d = s->unit_d, nu = s->n_units;
    double *blk = NULL, *w = NULL;
    int64_t *map = NULL;
    cs_status st;
    if ((st = cs_curv_malloc((void **)&blk, sizeof(double) * (size_t)(d * d), err, "a unit block")) ||
        (st = cs_curv_malloc((void **)&w, sizeof(double) * (size_t)d, err, "a unit block's eigenvalues")) ||
        (st = cs_curv_malloc((void **)&map, sizeof(int64_t) * (size_t)d, err, "a unit block's slots")) ||
        (st = cs_curv_malloc((void **)&r->eig, sizeof(double) * (size_t)(nu * d), err,
                             "the unit eigenvalues of layer '%s'", x->g->layers[l].name)))
        goto done;
    *k = 0;
    for (int64_t u = 0; u < nu && !st; u++) {
        int64_t m = 0;
        for (int64_t a = 0; a < d; a++)
            if (s->unit_idx[u * d + a] >= 0)
                map[m++] = a;
        for (int64_t a = 0; a < m; a++)
            for (int64_t b = 0; b < m; b++)
                blk[a * m + b] = U[u * d * d + map[a] * d + map[b]];
        st = cs_sym_eig(blk, m, w, NULL, err);
        for (int64_t a = 0; a < m && !st; a++)
            r->eig[(*k)++] = w[a];
    }
done:
    free(blk);
    free(w);
    free(map);
    return st;
}

static cs_status unit_results(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src,
                              cs_repr_ref *ref, cs_err *err)
{
    if (l < 0 || !cs_repr_wanted(x, c, CS_REPR_UNIT) || !x->lay[l].unit_idx)
        return CS_OK;
    const double *U;
    double *own;
    cs_status st = blocks_of(x, l, src, &U, &own, err);
    if (st || !U)
        return st;
    cs_curv_result *r;
    int64_t k = 0;
    if ((st = cs_repr_new_result(x, l, c, CS_REPR_UNIT, x->lay[l].W, &r, err)) ||
        (st = pooled_eigenvalues(x, l, U, r, &k, err)))
        goto done;
    cs_repr_summarize_sorted(r, k);
    if (ref->have) {
        dense_unit(&x->lay[l], U, ref->dense);
        st = cs_repr_compare(ref->dense, src->full, x->lay[l].W, ref, r, err);
    }
    r->seconds = cs_now_seconds() - ref->t0;
done:
    free(own);
    return st;
}

static cs_status unit_stats(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src, cs_err *err)
{
    if (l < 0 || !cs_repr_wanted(x, c, CS_REPR_UNIT) || !x->lay[l].unit_idx || (!src->unit && !src->full))
        return CS_OK;
    const cs_layer_layout *s = &x->lay[l];
    int64_t d = s->unit_d, nu = s->n_units;
    cs_curv_result *r;
    cs_status st = cs_repr_new_result(x, l, c, CS_REPR_UNIT, s->W, &r, err);
    if (!st)
        st = cs_repr_dup_index(&r->unit_index, s->unit_idx, nu * d, "the unit index", l, x, err);
    if (st)
        return st;
    r->n_units = nu;
    r->unit_d = d;
    if (src->unit)
        return cs_repr_dup(&r->unit_blocks, src->unit, nu * d * d, "the unit blocks", l, x, err);
    const double *U;
    st = blocks_of(x, l, src, &U, &r->unit_blocks, err); /* read off the exact block, owned by the result */
    return st;
}

const cs_repr_def cs_repr_unit = {
    .name = "unit",
    .plan = unit_plan,
    .free = unit_free,
    .rows = unit_rows,
    .add_rows = unit_add_rows,
    .reduce = unit_reduce,
    .normalise = unit_normalise,
    .sources = unit_sources,
    .results = unit_results,
    .stats = unit_stats,
};
