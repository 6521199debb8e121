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
    pc_kron_set ks;           /* k->G holds L, k->A holds R; ks.L, ks.R their roots */
    bool started;
} shampoo_state;

static void shampoo_destroy(void *vs)
{
    shampoo_state *s = vs;
    if (s)
        pc_kron_set_free(&s->ks);
    free(s);
}

static cs_status shampoo_create(const cs_precond_ctx *c, void **state, cs_err *err)
{
    cs_status st = pc_kron_state_create(c, NULL, sizeof(shampoo_state), state, err);
    if (st)
        return st;
    shampoo_state *s = *state;
    for (int l = 0; l < c->g->n_layers && !st; l++) {
        pc_kron *k = &s->ks.k[l];
        if ((st = pc_kron_layout(k, c->g, l, err)))
            break;
        if (!k->ok) {
            pc_fallback(c, l, "no matrix layout for this layer type");
            continue;
        }
        k->A = calloc((size_t)(k->groups * k->dA * k->dA), sizeof(double));
        k->G = calloc((size_t)(k->groups * k->dG * k->dG), sizeof(double));
        if (!k->A || !k->G)
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for Shampoo statistics");
        else
            st = pc_kron_set_layer(&s->ks, l, err);
    }
    if (!st)
        st = pc_kron_set_buffers(&s->ks, err);
    if (st) {
        shampoo_destroy(s);
        *state = NULL;
    }
    return st;
}

static void shampoo_observe(void *vs, const cs_precond_ctx *c, const double *grad)
{
    shampoo_state *s = vs;
    double decay = s->started ? c->o->ema : 0;
    for (int l = 0; l < s->ks.n_layers; l++) {
        pc_kron *k = &s->ks.k[l];
        if (!pc_kron_set_serves(&s->ks, c, l))
            continue;
        pc_kron_gather(k, grad + k->offset, s->ks.X);
        int dG = (int)k->dG, dA = (int)k->dA;
        for (int64_t grp = 0; grp < k->groups; grp++) {
            const double *V = s->ks.X + grp * k->dG * k->dA;
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

static cs_status shampoo_refresh(void *vs, cs_precond_ctx *c, const cs_dataset *batch, cs_err *err)
{
    (void)batch;
    pc_kron_set *s = &((shampoo_state *)vs)->ks;
    cs_status st = CS_OK;
    for (int l = 0; l < s->n_layers && !st; l++) {
        const pc_kron *k = &s->k[l];
        if (!pc_kron_set_serves(s, c, l))
            continue;
        for (int64_t grp = 0; grp < k->groups && !st; grp++) {
            st = pc_sym_damped_power(k->G + grp * k->dG * k->dG, k->dG, c->o->damping, -0.25, false,
                                     s->L[l] + grp * k->dG * k->dG, err);
            if (!st)
                st = pc_sym_damped_power(k->A + grp * k->dA * k->dA, k->dA, c->o->damping, -0.25, false,
                                         s->R[l] + grp * k->dA * k->dA, err);
        }
    }
    return st;
}

static cs_status shampoo_apply(void *vs, const cs_precond_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)err;
    const pc_kron_set *s = &((shampoo_state *)vs)->ks;
    pc_kron_set_apply(s, c, grad, dir);
    for (int l = 0; l < s->n_layers && c->o->graft; l++) {
        const pc_kron *k = &s->k[l];
        if (!pc_kron_set_serves(s, c, l))
            continue;
        double gn = 0, dn = 0;
        for (int64_t p = 0; p < k->W; p++) {
            gn += grad[k->offset + p] * grad[k->offset + p];
            dn += dir[k->offset + p] * dir[k->offset + p];
        }
        double scale = dn > 0 ? sqrt(gn / dn) : 0;
        for (int64_t p = 0; p < k->W; p++)
            dir[k->offset + p] *= scale;
    }
    return CS_OK;
}

const cs_precond_ops pc_shampoo_ops = {
    .create = shampoo_create, .observe = shampoo_observe, .refresh = shampoo_refresh, .apply = shampoo_apply,
    .destroy = shampoo_destroy};
