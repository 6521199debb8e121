/* Weight samples of the Laplace posterior N(θ*, P⁻¹) (bayes/laplace.h):
 * θ_s = θ* + T z, z standard normal, for a T with T Tᵀ = P⁻¹ in the
 * posterior's representation, as Laplace Redux's "nn" predictive samples
 * them (Daxberger et al. 2021, their posterior samples per Hessian
 * structure). */
#include "bayes/laplace.h"

#include <lapacke.h>
#include <math.h>
#include <string.h>

int64_t cs_laplace_transform_work(const cs_laplace *la)
{
    int64_t w = 0;
    for (int i = 0; la->repr == CS_REPR_KFAC && i < la->n_layers; i++)
        w = 2 * la->layers[i].dG * la->layers[i].dA > w ? 2 * la->layers[i].dG * la->layers[i].dA : w;
    return w;
}

/* K-FAC, one group of layer L: P_q = QΛQᵀ with Q = Q_G ⊗ Q_A and Λ the
 * products N μ_u λ_f + δ, so T = Q Λ^{-1/2} (after the fixed permutation
 * that reads z's entries by the parameters' (unit, feature) slots):
 * Z_s = Λ^{-1/2} z as a dG × dA matrix, then V = Q_G Z_s Q_Aᵀ, and V's
 * (unit, feature) entry is that parameter's. */
static void kfac_group(const cs_la_layer *L, int64_t q, const double *z, double *out, double *work)
{
    int64_t dG = L->dG, dA = L->dA, blk = dG * dA;
    double *Zs = work, *Y = work + blk;
    const double *QA = L->QA + q * dA * dA, *QG = L->QG + q * dG * dG;
    const double *lA = L->lA + q * dA, *lG = L->lG + q * dG;
    for (int64_t k = 0; k < L->W; k++) {
        const int64_t *ix = L->kron + 3 * k;
        if (ix[0] != q)
            continue;
        /* the rounding of a PSD factor's zero eigenvalues counts as zero, as in the evidence */
        Zs[ix[1] * dA + ix[2]] = z[L->start + k] / sqrt(fmax(lG[ix[1]] * lA[ix[2]], 0) + L->prior);
    }
    /* Y = Z_s Q_Aᵀ, then V = Q_G Y (into Zs, read no more) */
    for (int64_t u = 0; u < dG; u++)
        for (int64_t f = 0; f < dA; f++) {
            double s = 0;
            for (int64_t e = 0; e < dA; e++)
                s += Zs[u * dA + e] * QA[f * dA + e];
            Y[u * dA + f] = s;
        }
    for (int64_t u = 0; u < dG; u++)
        for (int64_t f = 0; f < dA; f++) {
            double s = 0;
            for (int64_t e = 0; e < dG; e++)
                s += QG[u * dG + e] * Y[e * dA + f];
            Zs[u * dA + f] = s;
        }
    for (int64_t k = 0; k < L->W; k++) {
        const int64_t *ix = L->kron + 3 * k;
        if (ix[0] == q)
            out[L->start + k] = Zs[ix[1] * dA + ix[2]];
    }
}

cs_status cs_laplace_transform(const cs_laplace *la, const double *z, double *out, double *work, cs_err *err)
{
    int64_t D = la->D;
    if (la->repr == CS_REPR_FULL) {
        /* P = UᵀU (la->chol): T = U⁻¹, whose T Tᵀ = (UᵀU)⁻¹; one triangular solve U x = z */
        memcpy(out, z, sizeof(double) * (size_t)D);
        lapack_int info =
            LAPACKE_dtrtrs(LAPACK_ROW_MAJOR, 'U', 'N', 'N', (lapack_int)D, 1, la->chol, (lapack_int)D, out, 1);
        if (info != 0)
            return cs_fail(err, CS_ERR_RUNTIME, "triangular solve with the posterior's factor failed (info %d)",
                           (int)info);
        return CS_OK;
    }
    for (int i = 0; i < la->n_layers; i++) {
        const cs_la_layer *L = &la->layers[i];
        if (la->repr == CS_REPR_DIAG)
            for (int64_t k = 0; k < L->W; k++)
                out[L->start + k] = z[L->start + k] / sqrt(fmax(L->h[k], 0) + L->prior);
        else
            for (int64_t q = 0; q < L->groups; q++)
                kfac_group(L, q, z, out, work);
    }
    return CS_OK;
}

cs_status cs_laplace_sample(const cs_laplace *la, cs_rng *rng, double *theta, double *z, double *work, cs_err *err)
{
    for (int64_t k = 0; k < la->D; k++)
        z[k] = cs_rng_normal(rng);
    cs_status st = cs_laplace_transform(la, z, theta, work, err);
    for (int64_t k = 0; !st && k < la->D; k++)
        theta[k] += la->theta[k];
    return st;
}
