/* EKFAC (George, Laurent, Bouthillier, Ballas & Vincent 2018): K-FAC's
 * eigenbasis Q_G (x) Q_A with the diagonal re-fitted to the curvature,
 *   s_pq = (1/N) sum_n [(Q_G^T V_n Q_A)_pq]^2
 * over the per-sample gradient matrices V_n that define the curvature
 * (for ggn/fisher the C factor columns per sample, for fisher_mc the
 * sampled labels, for fisher_emp the true label).  The direction is
 *   Q_G [(Q_G^T V Q_A) ./ (s + lambda)] Q_A^T.
 * At each refresh the factors are folded into their running averages
 * (--ema), the bases recomputed, and then the scalings estimated in the
 * new basis from a second pass over the refresh batch (they are not
 * averaged across refreshes: each refresh changes the basis).  With
 * lambda = 0, scalings at or below n * 2^-52 * max s are treated as 0. */
#include "precond/precond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "spectral/dense.h"
#include "tensor/blas.h"

typedef struct ekfac_state {
    int n_layers;
    ft_kron *k;
    double **QA, **QG, **S; /* per layer: bases [groups][d][d] (columns), scalings [groups][dG][dA] */
    double *X, *T;          /* one layer's gradient matrices */
    double *wa, *wg;        /* eigenvalues (discarded) */
    double n_rows;          /* samples seen by the scaling pass */
} ekfac_state;

static void ekfac_destroy(void *vs)
{
    ekfac_state *s = vs;
    if (!s)
        return;
    for (int l = 0; l < s->n_layers; l++) {
        ft_kron_free(&s->k[l]);
        free(s->QA[l]), free(s->QG[l]), free(s->S[l]);
    }
    free(s->k), free(s->QA), free(s->QG), free(s->S), free(s->X), free(s->T), free(s->wa), free(s->wg);
    free(s);
}

static cs_status ekfac_create(const ft_ctx *c, void **state, cs_err *err)
{
    cs_status st = ft_need_kfac_curvature(c, "ekfac", err);
    if (st)
        return st;
    ekfac_state *s = calloc(1, sizeof *s);
    int L = c->g->n_layers;
    if (s) {
        s->n_layers = L;
        s->k = calloc((size_t)L + 1, sizeof *s->k);
        s->QA = calloc((size_t)L + 1, sizeof *s->QA);
        s->QG = calloc((size_t)L + 1, sizeof *s->QG);
        s->S = calloc((size_t)L + 1, sizeof *s->S);
    }
    if (!s || !s->k || !s->QA || !s->QG || !s->S) {
        ekfac_destroy(s);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for EKFAC");
    }
    *state = s;
    return CS_OK;
}

/* The eigenbasis: T = Q_G^T X Q_A per group, and back, X = Q_G T Q_A^T
 * (tmp: dG * dA doubles). */
static void to_basis(const ft_kron *k, const double *QG, const double *QA, const double *X, double *T, double *tmp)
{
    ft_kron_sandwich(k, QG, true, X, QA, false, T, tmp);
}

static void from_basis(const ft_kron *k, const double *QG, const double *QA, const double *T, double *X, double *tmp)
{
    ft_kron_sandwich(k, QG, false, T, QA, true, X, tmp);
}

/* The scaling pass: every per-sample gradient row, rotated and squared. */
static void ekfac_rows(void *vs, int l, int64_t start, int seed, const double *rows, int64_t B)
{
    (void)start;
    ekfac_state *s = vs;
    const ft_kron *k = &s->k[l];
    if (seed == 0 && l == 0)
        s->n_rows += (double)B;
    if (!k->ok || !s->S[l])
        return;
    int64_t nv = k->groups * k->dG * k->dA;
    double *tmp = s->T + nv; /* T holds nv + dG * dA */
    for (int64_t b = 0; b < B; b++) {
        ft_kron_gather(k, rows + b * k->W, s->X);
        to_basis(k, s->QG[l], s->QA[l], s->X, s->T, tmp);
        for (int64_t i = 0; i < nv; i++)
            s->S[l][i] += s->T[i] * s->T[i];
    }
}

static cs_status ekfac_refresh(void *vs, ft_ctx *c, const cs_dataset *batch, cs_err *err)
{
    ekfac_state *s = vs;
    size_t maxv, maxd = 1;
    cs_status st = ft_kron_refresh(s->k, c, batch, &maxv, err);
    for (int l = 0; l < s->n_layers && !st; l++) {
        ft_kron *k = &s->k[l];
        if (!k->ok || c->fallback[l])
            continue;
        size_t na = (size_t)(k->groups * k->dA * k->dA), ng = (size_t)(k->groups * k->dG * k->dG);
        size_t nv = (size_t)(k->groups * k->dG * k->dA), d = (size_t)(k->dA > k->dG ? k->dA : k->dG);
        if (!s->QA[l] && (!(s->QA[l] = malloc(sizeof(double) * na)) || !(s->QG[l] = malloc(sizeof(double) * ng)) ||
                          !(s->S[l] = malloc(sizeof(double) * nv)))) {
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for EKFAC");
            break;
        }
        maxd = d > maxd ? d : maxd;
    }
    cs_curv_report rep;
    if (!st && !s->X) {
        s->X = malloc(sizeof(double) * maxv);
        s->T = malloc(sizeof(double) * 2 * maxv);
        s->wa = malloc(sizeof(double) * maxd);
        s->wg = malloc(sizeof(double) * maxd);
        if (!s->X || !s->T || !s->wa || !s->wg)
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for EKFAC");
    }
    /* The bases of the averaged factors. */
    for (int l = 0; l < s->n_layers && !st; l++) {
        const ft_kron *k = &s->k[l];
        if (c->fallback[l] || !k->ok)
            continue;
        for (int64_t grp = 0; grp < k->groups && !st; grp++)
            if (cs_sym_eigvecs(k->A + grp * k->dA * k->dA, k->dA, s->QA[l] + grp * k->dA * k->dA, s->wa, NULL) ||
                cs_sym_eigvecs(k->G + grp * k->dG * k->dG, k->dG, s->QG[l] + grp * k->dG * k->dG, s->wg, NULL))
                st = cs_fail(err, CS_ERR_RUNTIME, "eigen-solve of a K-FAC factor failed");
        memset(s->S[l], 0, sizeof(double) * (size_t)(k->groups * k->dG * k->dA));
    }
    /* The scalings in the new bases: a second pass over the batch. */
    if (!st) {
        s->n_rows = 0;
        st = ft_curvature(c, batch, 1u << CS_REPR_DIAG, ekfac_rows, s, &rep, err);
        if (!st)
            cs_curv_report_free(&rep);
    }
    for (int l = 0; l < s->n_layers && !st; l++) {
        const ft_kron *k = &s->k[l];
        for (int64_t i = 0; k->ok && !c->fallback[l] && i < k->groups * k->dG * k->dA; i++)
            s->S[l][i] /= s->n_rows > 0 ? s->n_rows : 1;
    }
    return st;
}

static cs_status ekfac_apply(void *vs, const ft_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)err;
    ekfac_state *s = vs;
    memcpy(dir, grad, sizeof(double) * (size_t)c->g->n_param_scalars);
    double lambda = c->o->damping;
    for (int l = 0; l < s->n_layers; l++) {
        const ft_kron *k = &s->k[l];
        if (c->fallback[l] || !k->ok)
            continue;
        int64_t nv = k->groups * k->dG * k->dA;
        double *tmp = s->T + nv, smax = 0;
        for (int64_t i = 0; i < nv; i++)
            smax = s->S[l][i] > smax ? s->S[l][i] : smax;
        double tol = (double)nv * 0x1p-52 * smax;
        ft_kron_gather(k, grad + k->offset, s->X);
        to_basis(k, s->QG[l], s->QA[l], s->X, s->T, tmp);
        for (int64_t i = 0; i < nv; i++)
            s->T[i] = lambda > 0 ? s->T[i] / (s->S[l][i] + lambda) : s->S[l][i] > tol ? s->T[i] / s->S[l][i] : 0;
        from_basis(k, s->QG[l], s->QA[l], s->T, s->X, tmp);
        ft_kron_scatter(k, s->X, dir + k->offset);
    }
    return CS_OK;
}

const ft_precond_def ft_pre_ekfac = {
    .name = "ekfac",
    .about = "K-FAC's eigenbasis with re-fitted diagonal scalings (George et al. 2018)",
    .default_curv = CS_CURV_FISHER_MC,
    .reads_curvature = true,
    .default_lr = 1e-3, .default_damping = 1e-2,
    .create = ekfac_create,
    .refresh = ekfac_refresh,
    .apply = ekfac_apply,
    .destroy = ekfac_destroy,
};
