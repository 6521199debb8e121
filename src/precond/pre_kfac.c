/* K-FAC (Martens & Grosse 2015): the layer block of the curvature is G (x) A
 * and the direction is G^-1 V A^-1 for the gradient matrix V of [W | b].
 * Factors are running averages over refreshes (--ema); at each refresh
 * the inverses are recomputed with Tikhonov damping split between the
 * factors by pi (section 6.3):
 *   (A + pi sqrt(lambda) I)^-1 and (G + sqrt(lambda) / pi I)^-1,
 *   pi = sqrt((tr A / dA) / (tr G / dG)),
 * by eigendecomposition (default) or Cholesky (--inverse cholesky).  With
 * --no-pi-damping both factors get sqrt(lambda); with lambda = 0 the
 * inverses are pseudo-inverses, so for a single sample the step is the
 * exact natural-gradient step F^+ g of a linear layer. */
#include "precond/precond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct kfac_state {
    int n_layers;
    ft_kron *k;
    double **Ainv, **Ginv;
    double *X, *Y, *tmp; /* one layer's gradient matrices */
} kfac_state;

static void kfac_destroy(void *vs)
{
    kfac_state *s = vs;
    if (!s)
        return;
    for (int l = 0; l < s->n_layers; l++) {
        ft_kron_free(&s->k[l]);
        free(s->Ainv[l]), free(s->Ginv[l]);
    }
    free(s->k), free(s->Ainv), free(s->Ginv), free(s->X), free(s->Y), free(s->tmp);
    free(s);
}

static cs_status kfac_create(const ft_ctx *c, void **state, cs_err *err)
{
    cs_status st = ft_need_kfac_curvature(c, "kfac", err);
    if (st)
        return st;
    kfac_state *s = calloc(1, sizeof *s);
    int L = c->g->n_layers;
    if (s) {
        s->n_layers = L;
        s->k = calloc((size_t)L + 1, sizeof *s->k);
        s->Ainv = calloc((size_t)L + 1, sizeof *s->Ainv);
        s->Ginv = calloc((size_t)L + 1, sizeof *s->Ginv);
    }
    if (!s || !s->k || !s->Ainv || !s->Ginv) {
        kfac_destroy(s);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for K-FAC");
    }
    *state = s;
    return CS_OK;
}

/* Damping of the two factors of one group (pi-damping, section 6.3). */
static void kfac_split_damping(const ft_kron *k, int64_t grp, double lambda, bool pi_damping, double *dA,
                               double *dG)
{
    double root = sqrt(lambda), pi = 1;
    if (pi_damping && lambda > 0) {
        double ta = 0, tg = 0;
        for (int64_t i = 0; i < k->dA; i++)
            ta += k->A[grp * k->dA * k->dA + i * k->dA + i];
        for (int64_t i = 0; i < k->dG; i++)
            tg += k->G[grp * k->dG * k->dG + i * k->dG + i];
        if (ta > 0 && tg > 0)
            pi = sqrt((ta / (double)k->dA) / (tg / (double)k->dG));
    }
    *dA = pi * root;
    *dG = root / pi;
}

static cs_status kfac_refresh(void *vs, ft_ctx *c, const cs_dataset *batch, cs_err *err)
{
    kfac_state *s = vs;
    size_t maxv;
    cs_status st = ft_kron_refresh(s->k, c, batch, &maxv, err);
    for (int l = 0; l < s->n_layers && !st; l++) {
        ft_kron *k = &s->k[l];
        if (!k->ok || c->fallback[l])
            continue;
        size_t na = (size_t)(k->groups * k->dA * k->dA), ng = (size_t)(k->groups * k->dG * k->dG);
        if (!s->Ainv[l] && (!(s->Ainv[l] = malloc(sizeof(double) * na)) || !(s->Ginv[l] = malloc(sizeof(double) * ng)))) {
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for K-FAC inverses");
            break;
        }
        for (int64_t grp = 0; grp < k->groups && !st; grp++) {
            double da, dg;
            kfac_split_damping(k, grp, c->o->damping, c->o->pi_damping, &da, &dg);
            st = ft_damped_inverse(k->A + grp * k->dA * k->dA, k->dA, da, c->o->cholesky,
                                   s->Ainv[l] + grp * k->dA * k->dA, err);
            if (!st)
                st = ft_damped_inverse(k->G + grp * k->dG * k->dG, k->dG, dg, c->o->cholesky,
                                       s->Ginv[l] + grp * k->dG * k->dG, err);
        }
    }
    if (!st && !s->X) {
        s->X = malloc(sizeof(double) * maxv);
        s->Y = malloc(sizeof(double) * maxv);
        s->tmp = malloc(sizeof(double) * maxv);
        if (!s->X || !s->Y || !s->tmp)
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for K-FAC");
    }
    return st;
}

static cs_status kfac_apply(void *vs, const ft_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)err;
    kfac_state *s = vs;
    memcpy(dir, grad, sizeof(double) * (size_t)c->g->n_param_scalars);
    for (int l = 0; l < s->n_layers; l++) {
        const ft_kron *k = &s->k[l];
        if (c->fallback[l] || !k->ok)
            continue;
        ft_kron_gather(k, grad + k->offset, s->X);
        ft_kron_sandwich(k, s->Ginv[l], false, s->X, s->Ainv[l], false, s->Y, s->tmp);
        ft_kron_scatter(k, s->Y, dir + k->offset);
    }
    return CS_OK;
}

const ft_precond_def ft_pre_kfac = {
    .name = "kfac",
    .about = "K-FAC: (G + sqrt(l)/pi I)^-1 V (A + pi sqrt(l) I)^-1 (Martens & Grosse 2015)",
    .default_curv = CS_CURV_FISHER_MC,
    .reads_curvature = true,
    .default_lr = 1e-3, .default_damping = 1e-3,
    .create = kfac_create,
    .refresh = kfac_refresh,
    .apply = kfac_apply,
    .destroy = kfac_destroy,
};
