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

/* The state is a pc_kron_set with L = (G + dg I)^-1, R = (A + da I)^-1. */

static void kfac_destroy(void *vs)
{
    if (vs)
        pc_kron_set_free(vs);
    free(vs);
}

static cs_status kfac_create(const cs_precond_ctx *c, void **state, cs_err *err)
{
    return pc_kron_state_create(c, "kfac", sizeof(pc_kron_set), state, err);
}

/* Damping of the two factors of one group (pi-damping, section 6.3). */
static void kfac_split_damping(const pc_kron *k, int64_t grp, double lambda, bool pi_damping, double *dA,
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

static cs_status kfac_refresh(void *vs, cs_precond_ctx *c, const cs_dataset *batch, cs_err *err)
{
    pc_kron_set *s = vs;
    cs_status st = pc_kron_refresh(s->k, c, batch, err);
    for (int l = 0; l < s->n_layers && !st; l++) {
        pc_kron *k = &s->k[l];
        if (!pc_kron_set_serves(s, c, l) || (st = pc_kron_set_layer(s, l, err)))
            continue;
        for (int64_t grp = 0; grp < k->groups && !st; grp++) {
            double da, dg;
            kfac_split_damping(k, grp, c->o->damping, c->o->pi_damping, &da, &dg);
            st = pc_damped_inverse(k->A + grp * k->dA * k->dA, k->dA, da, c->o->cholesky,
                                   s->R[l] + grp * k->dA * k->dA, err);
            if (!st)
                st = pc_damped_inverse(k->G + grp * k->dG * k->dG, k->dG, dg, c->o->cholesky,
                                       s->L[l] + grp * k->dG * k->dG, err);
        }
    }
    return st ? st : pc_kron_set_buffers(s, err);
}

static cs_status kfac_apply(void *vs, const cs_precond_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)err;
    pc_kron_set_apply(vs, c, grad, dir);
    return CS_OK;
}

const cs_precond_ops pc_kfac_ops = {
    .create = kfac_create, .refresh = kfac_refresh, .apply = kfac_apply, .destroy = kfac_destroy};
