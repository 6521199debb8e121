#include "curv/repr.h"

#include "base/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curv/alloc.h"

const cs_repr_def *const cs_repr_table[CS_REPR_TABLE_N] = {
    &cs_repr_full, &cs_repr_diag, &cs_repr_unit, &cs_repr_kfac, &cs_repr_hessian, &cs_repr_ekfac,
};

int cs_curv_family(cs_curv_kind c)
{
    switch (c) {
    case CS_CURV_GGN:
    case CS_CURV_FISHER: return CS_FAM_GGN;
    case CS_CURV_FISHER_MC: return CS_FAM_MC;
    case CS_CURV_FISHER_EMP: return CS_FAM_EMP;
    default: return -1;
    }
}

const char *cs_curv_family_name(int f)
{
    static const char *const names[CS_FAM_COUNT] = {"ggn", "fisher_mc", "fisher_emp"};
    return f >= 0 && f < CS_FAM_COUNT ? names[f] : "hessian";
}

bool cs_repr_wanted(const cs_repr_ctx *x, cs_curv_kind c, cs_repr_kind r)
{
    return (x->o->curvatures >> c & 1) && (x->o->reprs >> r & 1) && cs_curv_repr_valid(c, r, NULL);
}

const char *cs_repr_where(const cs_repr_ctx *x, int l, char *buf, size_t size)
{
    if (l < 0)
        return "the network";
    snprintf(buf, size, "layer '%s'", x->g->layers[l].name);
    return buf;
}

cs_status cs_repr_blocks_new(const cs_repr_ctx *x, double ***blocks, const char *what, cs_err *err)
{
    return cs_curv_calloc(blocks, (size_t)(x->g->n_layers * CS_FAM_COUNT), err, "the table of %s", what);
}

cs_status cs_repr_blocks_layer(const cs_repr_ctx *x, double **blocks, int l, int64_t n, const char *what,
                               cs_err *err)
{
    for (int f = 0; f < CS_FAM_COUNT; f++) {
        cs_status st = x->fam[f] ? cs_curv_zalloc(&blocks[l * CS_FAM_COUNT + f], (size_t)n, err,
                                                  "the %s %s of layer '%s'", cs_curv_family_name(f), what,
                                                  x->g->layers[l].name)
                                 : CS_OK;
        if (st)
            return st;
    }
    return CS_OK;
}

void cs_repr_blocks_free(const cs_repr_ctx *x, double **blocks)
{
    for (int i = 0; blocks && i < x->g->n_layers * CS_FAM_COUNT; i++)
        free(blocks[i]);
    free(blocks);
}

cs_status cs_repr_new_result(const cs_repr_ctx *x, int layer, cs_curv_kind c, cs_repr_kind r, int64_t dim,
                             cs_curv_result **out, cs_err *err)
{
    cs_curv_report *rep = x->rep;
    char where[160];
    cs_status st = cs_curv_alloc((void **)&rep->res, (size_t)rep->n + 1, sizeof *rep->res, CS_ALLOC_GROW, err,
                                   "the %s %s result of %s", cs_curv_name(c), cs_repr_name(r),
                                   cs_repr_where(x, layer, where, sizeof where));
    if (st)
        return st;
    cs_curv_result *res = &rep->res[rep->n++];
    memset(res, 0, sizeof *res);
    res->layer = layer;
    res->curv = c;
    res->repr = r;
    res->dim = dim;
    res->method = "exact";
    res->trace_stderr = NAN;
    *out = res;
    return CS_OK;
}

void cs_repr_symmetrize(double *M, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++)
            M[j * n + i] = M[i * n + j] = M[i * n + j] * scale;
}

void cs_repr_average_transpose(double *M, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            M[i * n + j] = M[j * n + i] = 0.5 * (M[i * n + j] + M[j * n + i]);
}

cs_status cs_repr_spectrum(const double *M, int64_t n, cs_curv_result *res, double *top, cs_err *err)
{
    double *copy;
    cs_status st = cs_curv_malloc((void **)&copy, sizeof(double) * (size_t)(n * n), err,
                                  "an eigen-solve of order %lld", (long long)n);
    if (st)
        return st;
    if ((st = cs_curv_malloc((void **)&res->eig, sizeof(double) * (size_t)n, err,
                             "the eigenvalues of order %lld", (long long)n))) {
        free(copy);
        return st;
    }
    memcpy(copy, M, sizeof(double) * (size_t)(n * n));
    st = cs_sym_eig(copy, n, res->eig, top, err);
    free(copy);
    if (st)
        return st;
    res->n_eig = n;
    cs_spectrum_summarize(res->eig, n, &res->sum);
    return CS_OK;
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

void cs_repr_sort_desc(double *v, int64_t n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_desc);
}

void cs_repr_summarize_sorted(cs_curv_result *res, int64_t n)
{
    cs_repr_sort_desc(res->eig, n);
    res->n_eig = n;
    cs_spectrum_summarize(res->eig, n, &res->sum);
}

cs_status cs_repr_compare(const double *approx, const double *exact, int64_t W, const cs_repr_ref *ref,
                          cs_curv_result *res, cs_err *err)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < W * W; i++) {
        num += (approx[i] - exact[i]) * (approx[i] - exact[i]);
        den += exact[i] * exact[i];
    }
    double *copy = NULL, *w = NULL, *top = NULL;
    cs_status st = cs_curv_malloc((void **)&copy, sizeof(double) * (size_t)(W * W), err,
                                  "a comparison of order %lld", (long long)W);
    if (!st)
        st = cs_curv_malloc((void **)&w, sizeof(double) * (size_t)W, err, "a comparison's eigenvalues");
    if (!st)
        st = cs_curv_malloc((void **)&top, sizeof(double) * (size_t)W, err, "a comparison's eigenvector");
    if (!st) {
        memcpy(copy, approx, sizeof(double) * (size_t)(W * W));
        st = cs_sym_eig(copy, W, w, top, err);
    }
    if (!st) {
        double dot = 0;
        for (int64_t i = 0; i < W; i++)
            dot += top[i] * ref->top[i];
        res->has_cmp = true;
        res->cmp_frob = den > 0 ? sqrt(num / den) : NAN;
        res->cmp_lmax = fabs(res->sum.lambda_max - ref->sum.lambda_max) / fabs(ref->sum.lambda_max);
        res->cmp_trace = fabs(res->sum.trace - ref->sum.trace) / fabs(ref->sum.trace);
        res->cmp_align = fabs(dot);
    }
    free(copy);
    free(w);
    free(top);
    return st;
}

/* An owned copy of `bytes` bytes of src (the copies of cs_repr_dup and
 * cs_repr_dup_index). */
static cs_status dup_bytes(void **out, const void *src, size_t bytes, const char *what, int l, const cs_repr_ctx *x,
                           cs_err *err)
{
    char where[160];
    cs_status st = cs_curv_malloc(out, bytes, err, "%s of %s", what, cs_repr_where(x, l, where, sizeof where));
    if (!st)
        memcpy(*out, src, bytes);
    return st;
}

cs_status cs_repr_dup(double **out, const double *src, int64_t n, const char *what, int l, const cs_repr_ctx *x,
                      cs_err *err)
{
    return dup_bytes((void **)out, src, sizeof(double) * (size_t)n, what, l, x, err);
}

cs_status cs_repr_dup_index(int64_t **out, const int64_t *src, int64_t n, const char *what, int l,
                            const cs_repr_ctx *x, cs_err *err)
{
    return dup_bytes((void **)out, src, sizeof(int64_t) * (size_t)n, what, l, x, err);
}

cs_status cs_repr_sum_ranks(const cs_repr_ctx *x, cs_status st, double *a, int64_t n, cs_err *err)
{
    if (!a || !x->ds->sliced)
        return st;
    return cs_dist_sum_f64(st, a, n, err);
}
