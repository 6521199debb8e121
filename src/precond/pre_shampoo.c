/* Shampoo (Gupta, Koren & Singer 2018) on each layer's gradient matrix V
 * ([W | b], rows = output units, per group):
 *   L <- decay L + (1 - decay) V V^T,  R <- decay R + (1 - decay) V^T V
 * every step (the first step sets them; --ema is the decay), and every
 * --update-interval steps the roots (L + lambda I)^-1/4 and
 * (R + lambda I)^-1/4 (eigendecomposition; with lambda = 0 the root of the
 * pseudo-inverse).  The direction is L^-1/4 V R^-1/4, grafted onto SGD's
 * step length per layer (|d| = |g|, Agarwal et al. 2020) unless
 * --no-graft.  Statistics come from the mini-batch gradient, as in the
 * paper; --curvature does not apply. */
#include "precond/precond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/blas.h"

typedef struct shampoo_state {
    int n_layers;
    ft_kron *k;               /* layout; k->G holds L, k->A holds R */
    double **Lroot, **Rroot;
    double *X, *Y, *tmp;
    bool started;
} shampoo_state;

static void shampoo_destroy(void *vs)
{
    shampoo_state *s = vs;
    if (!s)
        return;
    for (int l = 0; l < s->n_layers; l++) {
        ft_kron_free(&s->k[l]);
        free(s->Lroot[l]), free(s->Rroot[l]);
    }
    free(s->k), free(s->Lroot), free(s->Rroot), free(s->X), free(s->Y), free(s->tmp);
    free(s);
}

static cs_status shampoo_create(const ft_ctx *c, void **state, cs_err *err)
{
    shampoo_state *s = calloc(1, sizeof *s);
    int L = c->g->n_layers;
    if (s) {
        s->n_layers = L;
        s->k = calloc((size_t)L + 1, sizeof *s->k);
        s->Lroot = calloc((size_t)L + 1, sizeof *s->Lroot);
        s->Rroot = calloc((size_t)L + 1, sizeof *s->Rroot);
    }
    if (!s || !s->k || !s->Lroot || !s->Rroot) {
        shampoo_destroy(s);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for Shampoo");
    }
    cs_status st = CS_OK;
    size_t maxv = 1;
    for (int l = 0; l < L && !st; l++) {
        ft_kron *k = &s->k[l];
        if ((st = ft_kron_layout(k, c->g, l, err)))
            break;
        if (!k->ok) {
            ft_fallback(c, l, "no matrix layout for this layer type");
            continue;
        }
        size_t na = (size_t)(k->groups * k->dA * k->dA), ng = (size_t)(k->groups * k->dG * k->dG);
        size_t nv = (size_t)(k->groups * k->dG * k->dA);
        k->A = calloc(na, sizeof(double));
        k->G = calloc(ng, sizeof(double));
        s->Rroot[l] = malloc(sizeof(double) * na);
        s->Lroot[l] = malloc(sizeof(double) * ng);
        if (!k->A || !k->G || !s->Rroot[l] || !s->Lroot[l])
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for Shampoo statistics");
        maxv = nv > maxv ? nv : maxv;
    }
    if (!st && (!(s->X = malloc(sizeof(double) * maxv)) || !(s->Y = malloc(sizeof(double) * maxv)) ||
                !(s->tmp = malloc(sizeof(double) * maxv))))
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for Shampoo");
    if (st) {
        shampoo_destroy(s);
        return st;
    }
    *state = s;
    return CS_OK;
}

static void shampoo_observe(void *vs, const ft_ctx *c, const double *grad)
{
    shampoo_state *s = vs;
    double decay = s->started ? c->o->ema : 0;
    for (int l = 0; l < s->n_layers; l++) {
        ft_kron *k = &s->k[l];
        if (!k->ok || c->fallback[l])
            continue;
        ft_kron_gather(k, grad + k->offset, s->X);
        int dG = (int)k->dG, dA = (int)k->dA;
        for (int64_t grp = 0; grp < k->groups; grp++) {
            const double *V = s->X + grp * k->dG * k->dA;
            double *Lg = k->G + grp * k->dG * k->dG, *Rg = k->A + grp * k->dA * k->dA;
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, dG, dA, 1 - decay, V, dA, decay, Lg, dG);
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dA, dG, 1 - decay, V, dA, decay, Rg, dA);
            for (int i = 0; i < dG; i++) /* the lower triangle from the upper */
                for (int j = 0; j < i; j++)
                    Lg[i * dG + j] = Lg[j * dG + i];
            for (int i = 0; i < dA; i++)
                for (int j = 0; j < i; j++)
                    Rg[i * dA + j] = Rg[j * dA + i];
        }
    }
    s->started = true;
}

static cs_status shampoo_refresh(void *vs, ft_ctx *c, const cs_dataset *batch, cs_err *err)
{
    (void)batch;
    shampoo_state *s = vs;
    cs_status st = CS_OK;
    for (int l = 0; l < s->n_layers && !st; l++) {
        const ft_kron *k = &s->k[l];
        if (!k->ok || c->fallback[l])
            continue;
        for (int64_t grp = 0; grp < k->groups && !st; grp++) {
            st = ft_sym_damped_power(k->G + grp * k->dG * k->dG, k->dG, c->o->damping, -0.25, false,
                                     s->Lroot[l] + grp * k->dG * k->dG, err);
            if (!st)
                st = ft_sym_damped_power(k->A + grp * k->dA * k->dA, k->dA, c->o->damping, -0.25, false,
                                         s->Rroot[l] + grp * k->dA * k->dA, err);
        }
    }
    return st;
}

static cs_status shampoo_apply(void *vs, const ft_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)err;
    shampoo_state *s = vs;
    memcpy(dir, grad, sizeof(double) * (size_t)c->g->n_param_scalars);
    for (int l = 0; l < s->n_layers; l++) {
        const ft_kron *k = &s->k[l];
        if (!k->ok || c->fallback[l])
            continue;
        ft_kron_gather(k, grad + k->offset, s->X);
        ft_kron_sandwich(k, s->Lroot[l], false, s->X, s->Rroot[l], false, s->Y, s->tmp);
        ft_kron_scatter(k, s->Y, dir + k->offset);
        if (c->o->graft) {
            double gn = 0, dn = 0;
            for (int64_t p = 0; p < k->W; p++) {
                gn += grad[k->offset + p] * grad[k->offset + p];
                dn += dir[k->offset + p] * dir[k->offset + p];
            }
            double scale = dn > 0 ? sqrt(gn / dn) : 0;
            for (int64_t p = 0; p < k->W; p++)
                dir[k->offset + p] *= scale;
        }
    }
    return CS_OK;
}

const ft_precond_def ft_pre_shampoo = {
    .name = "shampoo",
    .about = "L^-1/4 V R^-1/4 grafted onto SGD's norm (Gupta et al. 2018)",
    .default_curv = CS_CURV_FISHER_EMP,
    .default_lr = 1e-3, .default_damping = 1e-3,
    .create = shampoo_create,
    .observe = shampoo_observe,
    .refresh = shampoo_refresh,
    .apply = shampoo_apply,
    .destroy = shampoo_destroy,
};
