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
    pc_kron_set ks;         /* ks.L = Q_G, ks.R = Q_A per layer (bases in columns) */
    double **S;             /* per layer: scalings [groups][dG][dA] */
    double *wa, *wg;        /* eigenvalues (discarded) */
    double n_rows;          /* samples seen by the scaling pass */
} ekfac_state;

static void ekfac_destroy(void *vs)
{
    ekfac_state *s = vs;
    if (!s)
        return;
    for (int l = 0; l < s->ks.n_layers && s->S; l++)
        free(s->S[l]);
    pc_kron_set_free(&s->ks);
    free(s->S), free(s->wa), free(s->wg);
    free(s);
}

static cs_status ekfac_create(const cs_precond_ctx *c, void **state, cs_err *err)
{
    cs_status st = pc_kron_state_create(c, "ekfac", sizeof(ekfac_state), state, err);
    ekfac_state *s = st ? NULL : *state;
    if (!st && !(s->S = calloc((size_t)c->g->n_layers + 1, sizeof *s->S))) {
        ekfac_destroy(s);
        *state = NULL;
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for EKFAC");
    }
    return st;
}

/* The eigenbasis: T = Q_G^T X Q_A per group, and back, X = Q_G T Q_A^T
 * (tmp: dG * dA doubles). */
static void to_basis(const pc_kron *k, const double *QG, const double *QA, const double *X, double *T, double *tmp)
{
    pc_kron_sandwich(k, QG, true, X, QA, false, T, tmp);
}

static void from_basis(const pc_kron *k, const double *QG, const double *QA, const double *T, double *X, double *tmp)
{
    pc_kron_sandwich(k, QG, false, T, QA, true, X, tmp);
}

/* The scaling pass: every per-sample gradient row, rotated and squared. */
static void ekfac_rows(void *vs, int l, int64_t start, int seed, const double *rows, int64_t B)
{
    (void)start;
    ekfac_state *s = vs;
    pc_kron_set *ks = &s->ks;
    const pc_kron *k = &ks->k[l];
    if (seed == 0 && l == 0)
        s->n_rows += (double)B;
    if (!k->ok || !s->S[l])
        return;
    int64_t nv = k->groups * k->dG * k->dA;
    for (int64_t b = 0; b < B; b++) {
        pc_kron_gather(k, rows + b * k->W, ks->X);
        to_basis(k, ks->L[l], ks->R[l], ks->X, ks->Y, ks->tmp);
        for (int64_t i = 0; i < nv; i++)
            s->S[l][i] += ks->Y[i] * ks->Y[i];
    }
}

static cs_status ekfac_refresh(void *vs, cs_precond_ctx *c, const cs_dataset *batch, cs_err *err)
{
    ekfac_state *s = vs;
    pc_kron_set *ks = &s->ks;
    size_t maxd = 1;
    cs_status st = pc_kron_refresh(ks->k, c, batch, err);
    for (int l = 0; l < ks->n_layers && !st; l++) {
        pc_kron *k = &ks->k[l];
        if (!pc_kron_set_serves(ks, c, l) || (st = pc_kron_set_layer(ks, l, err)))
            continue;
        size_t nv = (size_t)(k->groups * k->dG * k->dA), d = (size_t)(k->dA > k->dG ? k->dA : k->dG);
        if (!s->S[l] && !(s->S[l] = malloc(sizeof(double) * nv)))
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for EKFAC");
        maxd = d > maxd ? d : maxd;
    }
    if (!st)
        st = pc_kron_set_buffers(ks, err);
    if (!st && !s->wa && (!(s->wa = malloc(sizeof(double) * maxd)) || !(s->wg = malloc(sizeof(double) * maxd))))
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for EKFAC");
    /* The bases of the averaged factors. */
    for (int l = 0; l < ks->n_layers && !st; l++) {
        const pc_kron *k = &ks->k[l];
        if (!pc_kron_set_serves(ks, c, l))
            continue;
        for (int64_t grp = 0; grp < k->groups && !st; grp++)
            if (cs_sym_eigvecs(k->A + grp * k->dA * k->dA, k->dA, ks->R[l] + grp * k->dA * k->dA, s->wa, NULL) ||
                cs_sym_eigvecs(k->G + grp * k->dG * k->dG, k->dG, ks->L[l] + grp * k->dG * k->dG, s->wg, NULL))
                st = cs_fail(err, CS_ERR_RUNTIME, "eigen-solve of a K-FAC factor failed");
        memset(s->S[l], 0, sizeof(double) * (size_t)(k->groups * k->dG * k->dA));
    }
    /* The scalings in the new bases: a second pass over the batch. */
    cs_curv_report own;
    const cs_curv_report *rep;
    if (!st) {
        s->n_rows = 0;
        st = pc_curvature(c, batch, 1u << CS_REPR_DIAG, ekfac_rows, s, &own, &rep, err);
        if (!st)
            cs_curv_report_free(&own);
    }
    for (int l = 0; l < ks->n_layers && !st; l++) {
        const pc_kron *k = &ks->k[l];
        for (int64_t i = 0; pc_kron_set_serves(ks, c, l) && i < k->groups * k->dG * k->dA; i++)
            s->S[l][i] /= s->n_rows > 0 ? s->n_rows : 1;
    }
    return st;
}

static cs_status ekfac_apply(void *vs, const cs_precond_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)err;
    ekfac_state *s = vs;
    const pc_kron_set *ks = &s->ks;
    memcpy(dir, grad, sizeof(double) * (size_t)c->g->n_param_scalars);
    double lambda = c->o->damping;
    for (int l = 0; l < ks->n_layers; l++) {
        const pc_kron *k = &ks->k[l];
        if (!pc_kron_set_serves(ks, c, l))
            continue;
        int64_t nv = k->groups * k->dG * k->dA;
        double smax = 0, *T = ks->Y;
        for (int64_t i = 0; i < nv; i++)
            smax = s->S[l][i] > smax ? s->S[l][i] : smax;
        double tol = pc_pinv_cutoff(nv, smax);
        pc_kron_gather(k, grad + k->offset, ks->X);
        to_basis(k, ks->L[l], ks->R[l], ks->X, T, ks->tmp);
        for (int64_t i = 0; i < nv; i++)
            T[i] = lambda > 0 ? T[i] / (s->S[l][i] + lambda) : s->S[l][i] > tol ? T[i] / s->S[l][i] : 0;
        from_basis(k, ks->L[l], ks->R[l], T, ks->X, ks->tmp);
        pc_kron_scatter(k, ks->X, dir + k->offset);
    }
    return CS_OK;
}

const cs_precond_ops pc_ekfac_ops = {
    .create = ekfac_create, .refresh = ekfac_refresh, .apply = ekfac_apply, .destroy = ekfac_destroy};
