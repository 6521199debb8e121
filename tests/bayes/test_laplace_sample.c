/* The Laplace posterior's weight samples and the network predictive nn_mc
 * (bayes/laplace_sample.c, laplace_predict.c):
 *   - the sampling transform T of hand-built posteriors (two K-FAC layers
 *     with two groups and a shuffled (group, unit, feature) index, a
 *     diagonal one with a slightly negative entry, a dense one) satisfies
 *     T Tᵀ = P⁻¹ against the dense inverse of P built from the factors
 *     themselves, to 1e-10 relative;
 *   - on tiny_mlp64's fitted posteriors (diag, kfac, full) the sample
 *     covariance and mean of 20000 draws match P⁻¹ and θ* within 5 Monte
 *     Carlo standard errors, every entry;
 *   - with a prior precision of 1e14 the posterior collapses and nn_mc's
 *     metrics equal the MAP model's to 1e-6, every layer or the last;
 *     with the optimised prior they differ (the samples do reach the
 *     forward), the same seed repeats them exactly, and the graph's
 *     weights are θ* again afterwards. */
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../curv/case.h"
#include "../tap.h"
#include "bayes/laplace.h"
#include "spectral/dense.h"

/* P⁻¹ of a dense SPD P [n, n] into inv (full, symmetric); 0 on success. */
static int dense_inverse(const double *P, int64_t n, double *inv)
{
    memcpy(inv, P, sizeof(double) * (size_t)(n * n));
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, inv, (lapack_int)n) ||
        LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, inv, (lapack_int)n))
        return -1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++)
            inv[i * n + j] = inv[j * n + i];
    return 0;
}

/* T [D, D] column by column, T e_j. */
static int dense_transform(const cs_laplace *la, double *T)
{
    int64_t D = la->D;
    double *e = calloc((size_t)D, sizeof *e), *col = calloc((size_t)D, sizeof *col);
    int64_t wn = cs_laplace_transform_work(la);
    double *work = calloc((size_t)(wn > 1 ? wn : 1), sizeof *work);
    cs_err err = {0};
    int rc = 0;
    for (int64_t j = 0; j < D && !rc; j++) {
        e[j] = 1;
        rc = cs_laplace_transform(la, e, col, work, &err) != CS_OK;
        e[j] = 0;
        for (int64_t i = 0; i < D; i++)
            T[i * D + j] = col[i];
    }
    free(e), free(col), free(work);
    return rc;
}

/* max |T Tᵀ − P⁻¹| / max |P⁻¹| */
static double transform_error(const cs_laplace *la, const double *P)
{
    int64_t D = la->D;
    double *T = calloc((size_t)(D * D), sizeof *T), *inv = calloc((size_t)(D * D), sizeof *inv);
    double worst = INFINITY;
    if (dense_transform(la, T) == 0 && dense_inverse(P, D, inv) == 0) {
        double err = 0, scale = 0;
        for (int64_t i = 0; i < D; i++)
            for (int64_t j = 0; j < D; j++) {
                double s = 0;
                for (int64_t k = 0; k < D; k++)
                    s += T[i * D + k] * T[j * D + k];
                err = fmax(err, fabs(s - inv[i * D + j]));
                scale = fmax(scale, fabs(inv[i * D + j]));
            }
        worst = err / scale;
    }
    free(T), free(inv);
    return worst;
}

/* A random SPD matrix B Bᵀ + 0.1 I [n, n]. */
static void random_spd(cs_rng *rng, int64_t n, double *M)
{
    double *B = calloc((size_t)(n * n), sizeof *B);
    for (int64_t i = 0; i < n * n; i++)
        B[i] = cs_rng_normal(rng);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = i == j ? 0.1 : 0;
            for (int64_t k = 0; k < n; k++)
                s += B[i * n + k] * B[j * n + k];
            M[i * n + j] = s;
        }
    free(B);
}

/* Hand-built K-FAC posterior: layer sizes (groups, dG, dA), N = 7, each
 * layer's factors random SPD, each parameter's (group, unit, feature) a
 * shuffle; P dense from the factors A, G (not their eigendecompositions). */
static void kfac_case(void)
{
    const int64_t shape[2][3] = {{2, 3, 4}, {1, 2, 5}};
    const double N = 7, prior[2] = {0.3, 2.5};
    cs_rng rng;
    cs_rng_seed(&rng, 11);
    cs_laplace la;
    memset(&la, 0, sizeof la);
    la.repr = CS_REPR_KFAC;
    la.n_layers = 2;
    la.layers = calloc(2, sizeof *la.layers);
    for (int i = 0; i < 2; i++)
        la.D += shape[i][0] * shape[i][1] * shape[i][2];
    double *P = calloc((size_t)(la.D * la.D), sizeof *P);
    int64_t start = 0;
    for (int i = 0; i < 2; i++) {
        cs_la_layer *L = &la.layers[i];
        L->groups = shape[i][0], L->dG = shape[i][1], L->dA = shape[i][2];
        L->W = L->groups * L->dG * L->dA, L->start = start, L->prior = prior[i];
        start += L->W;
        int64_t dA = L->dA, dG = L->dG;
        double *A = calloc((size_t)(L->groups * dA * dA), sizeof *A);
        double *G = calloc((size_t)(L->groups * dG * dG), sizeof *G);
        L->QA = calloc((size_t)(L->groups * dA * dA), sizeof *L->QA);
        L->QG = calloc((size_t)(L->groups * dG * dG), sizeof *L->QG);
        L->lA = calloc((size_t)(L->groups * dA), sizeof *L->lA);
        L->lG = calloc((size_t)(L->groups * dG), sizeof *L->lG);
        L->kron = calloc((size_t)(3 * L->W), sizeof *L->kron);
        for (int64_t q = 0; q < L->groups; q++) {
            random_spd(&rng, dA, A + q * dA * dA);
            random_spd(&rng, dG, G + q * dG * dG);
            ok(cs_sym_eigvecs(A + q * dA * dA, dA, L->QA + q * dA * dA, L->lA + q * dA, NULL) == 0 &&
                   cs_sym_eigvecs(G + q * dG * dG, dG, L->QG + q * dG * dG, L->lG + q * dG, NULL) == 0,
               "kfac layer %d group %lld: factors' eigendecompositions", i, (long long)q);
            for (int64_t k = 0; k < dG; k++)
                L->lG[q * dG + k] *= N;
        }
        /* parameter k gets slot perm[k] of the (group, unit, feature) grid */
        int64_t *perm = malloc(sizeof *perm * (size_t)L->W);
        for (int64_t k = 0; k < L->W; k++)
            perm[k] = k;
        for (int64_t k = L->W - 1; k > 0; k--) {
            int64_t j = (int64_t)(cs_rng_uniform(&rng) * (double)(k + 1)), t = perm[k];
            perm[k] = perm[j], perm[j] = t;
        }
        for (int64_t k = 0; k < L->W; k++) {
            L->kron[3 * k] = perm[k] / (dG * dA);
            L->kron[3 * k + 1] = perm[k] / dA % dG;
            L->kron[3 * k + 2] = perm[k] % dA;
        }
        for (int64_t a = 0; a < L->W; a++)
            for (int64_t b = 0; b < L->W; b++) {
                const int64_t *x = L->kron + 3 * a, *y = L->kron + 3 * b;
                const double *Gq = G + x[0] * dG * dG, *Aq = A + x[0] * dA * dA;
                double v = x[0] != y[0] ? 0 : N * Gq[x[1] * dG + y[1]] * Aq[x[2] * dA + y[2]];
                P[(L->start + a) * la.D + L->start + b] = v + (a == b ? L->prior : 0);
            }
        free(perm), free(A), free(G);
    }
    double e = transform_error(&la, P);
    ok(e <= 1e-10, "kfac (two layers, groups 2 and 1, shuffled index): T T^T = (N G (x) A + delta I)^-1, rel err %.3g",
       e);
    free(P);
    cs_laplace_free(&la);
}

/* Hand-built diagonal and dense posteriors. */
static void diag_full_case(void)
{
    cs_rng rng;
    cs_rng_seed(&rng, 12);
    const int64_t D = 9;
    cs_laplace la;
    memset(&la, 0, sizeof la);
    la.repr = CS_REPR_DIAG, la.n_layers = 2, la.D = D;
    la.layers = calloc(2, sizeof *la.layers);
    la.layers[0] = (cs_la_layer){.W = 4, .start = 0, .prior = 0.7};
    la.layers[1] = (cs_la_layer){.W = 5, .start = 4, .prior = 3.0};
    double *P = calloc((size_t)(D * D), sizeof *P);
    for (int i = 0; i < 2; i++) {
        cs_la_layer *L = &la.layers[i];
        L->h = calloc((size_t)L->W, sizeof *L->h);
        for (int64_t k = 0; k < L->W; k++) {
            /* a rounding-negative entry counts as zero curvature */
            L->h[k] = k == 1 ? -1e-14 : 5 * cs_rng_uniform(&rng);
            P[(L->start + k) * D + L->start + k] = fmax(L->h[k], 0) + L->prior;
        }
    }
    double e = transform_error(&la, P);
    ok(e <= 1e-10, "diag: T T^T = diag(1 / (h + delta)), rel err %.3g", e);
    cs_laplace_free(&la);

    memset(&la, 0, sizeof la);
    la.repr = CS_REPR_FULL, la.n_layers = 2, la.D = D;
    la.layers = calloc(2, sizeof *la.layers);
    la.layers[0] = (cs_la_layer){.W = 4, .start = 0, .prior = 0.7};
    la.layers[1] = (cs_la_layer){.W = 5, .start = 4, .prior = 3.0};
    la.H = calloc((size_t)(D * D), sizeof *la.H);
    la.chol = calloc((size_t)(D * D), sizeof *la.chol);
    random_spd(&rng, D, la.H);
    memcpy(P, la.H, sizeof(double) * (size_t)(D * D));
    for (int i = 0; i < 2; i++)
        for (int64_t k = 0; k < la.layers[i].W; k++)
            P[(la.layers[i].start + k) * D + la.layers[i].start + k] += la.layers[i].prior;
    cs_err err = {0};
    if (ok(cs_laplace_evidence(&la, &err) == CS_OK, "full: the posterior's Cholesky factor (%s)", err.msg)) {
        e = transform_error(&la, P);
        ok(e <= 1e-10, "full: T T^T = (H + diag(delta))^-1, rel err %.3g", e);
    }
    free(P);
    cs_laplace_free(&la);
}

/* The dense P of a fitted posterior (kfac from its factors' eigendecompositions). */
static void dense_precision(const cs_laplace *la, double *P)
{
    int64_t D = la->D;
    memset(P, 0, sizeof(double) * (size_t)(D * D));
    if (la->repr == CS_REPR_FULL)
        memcpy(P, la->H, sizeof(double) * (size_t)(D * D));
    for (int i = 0; i < la->n_layers; i++) {
        const cs_la_layer *L = &la->layers[i];
        for (int64_t a = 0; a < L->W; a++) {
            P[(L->start + a) * D + L->start + a] += L->prior + (la->repr == CS_REPR_DIAG ? fmax(L->h[a], 0) : 0);
            for (int64_t b = 0; la->repr == CS_REPR_KFAC && b < L->W; b++) {
                const int64_t *x = L->kron + 3 * a, *y = L->kron + 3 * b;
                if (x[0] != y[0])
                    continue;
                int64_t q = x[0], dA = L->dA, dG = L->dG;
                const double *QG = L->QG + q * dG * dG, *QA = L->QA + q * dA * dA;
                double ga = 0, aa = 0;
                for (int64_t e = 0; e < dG; e++)
                    ga += QG[x[1] * dG + e] * fmax(L->lG[q * dG + e], 0) * QG[y[1] * dG + e];
                for (int64_t e = 0; e < dA; e++)
                    aa += QA[x[2] * dA + e] * fmax(L->lA[q * dA + e], 0) * QA[y[2] * dA + e];
                P[(L->start + a) * D + L->start + b] += ga * aa;
            }
        }
    }
}

/* 20000 draws of a fitted posterior: every entry of the sample covariance
 * (about the known mean θ*) within 5 standard errors of P⁻¹, the standard
 * error of a Gaussian product's mean √((Σ_ii Σ_jj + Σ_ij²) / S), and every
 * entry of the sample mean within 5 √(Σ_ii / S) of θ*. */
static void covariance_case(const cs_graph *g, const cs_dataset *ds, cs_repr_kind repr)
{
    const char *name = cs_repr_name(repr);
    cs_laplace_opts o;
    cs_laplace_opts_init(&o);
    o.repr = repr, o.batch = 5;
    cs_laplace la;
    cs_err err = {0};
    if (!ok(cs_laplace_fit(g, ds, &o, &la, &err) == CS_OK, "%s: fit (%s)", name, err.msg)) {
        cs_laplace_free(&la);
        return;
    }
    const int S = 20000;
    int64_t D = la.D, wn = cs_laplace_transform_work(&la);
    double *P = calloc((size_t)(D * D), sizeof *P), *inv = calloc((size_t)(D * D), sizeof *inv);
    double *cov = calloc((size_t)(D * D), sizeof *cov), *mean = calloc((size_t)D, sizeof *mean);
    double *theta = calloc((size_t)D, sizeof *theta), *z = calloc((size_t)D, sizeof *z);
    double *work = calloc((size_t)(wn > 1 ? wn : 1), sizeof *work);
    dense_precision(&la, P);
    cs_rng rng;
    cs_rng_seed(&rng, 5);
    cs_status st = dense_inverse(P, D, inv) ? CS_ERR_RUNTIME : CS_OK;
    for (int s = 0; s < S && !st; s++) {
        st = cs_laplace_sample(&la, &rng, theta, z, work, &err);
        for (int64_t i = 0; i < D; i++) {
            double di = theta[i] - la.theta[i];
            mean[i] += di / S;
            for (int64_t j = 0; j <= i; j++)
                cov[i * D + j] += di * (theta[j] - la.theta[j]) / S;
        }
    }
    if (ok(st == CS_OK, "%s: %d draws (%s)", name, S, err.msg)) {
        int64_t bad = 0, bad_mean = 0;
        double worst = 0;
        for (int64_t i = 0; i < D; i++) {
            bad_mean += fabs(mean[i]) > 5 * sqrt(inv[i * D + i] / S);
            for (int64_t j = 0; j <= i; j++) {
                double sij = inv[i * D + j];
                double se = sqrt((inv[i * D + i] * inv[j * D + j] + sij * sij) / S);
                double zs = fabs(cov[i * D + j] - sij) / se;
                worst = fmax(worst, zs);
                bad += zs > 5;
            }
        }
        ok(bad == 0, "%s: sample covariance of %d draws = P^-1 within 5 standard errors, all %lld entries (%lld "
                     "outside; largest %.2f SE)",
           name, S, (long long)(D * (D + 1) / 2), (long long)bad, worst);
        ok(bad_mean == 0, "%s: sample mean = theta* within 5 standard errors (%lld of %lld outside)", name,
           (long long)bad_mean, (long long)D);
    }
    free(P), free(inv), free(cov), free(mean), free(theta), free(z), free(work);
    cs_laplace_free(&la);
}

/* Whether g's posterior parameters are exactly la->theta. */
static int weights_are_map(const cs_graph *g, const cs_laplace *la)
{
    for (int q = 0; q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        int64_t off = g->params[q].offset;
        for (int i = 0; i < la->n_layers; i++) {
            const cs_la_layer *L = &la->layers[i];
            for (int64_t k = 0; off >= L->offset && off < L->offset + L->W && k < cs_tensor_numel(t); k++)
                if (cs_tensor_get_f64(t, k) != la->theta[L->start + off - L->offset + k])
                    return 0;
        }
    }
    return 1;
}

static void predictive_case(cs_graph *g, const cs_dataset *ds, cs_repr_kind repr, cs_la_subset subset)
{
    char name[64];
    snprintf(name, sizeof name, "%s %s", cs_repr_name(repr), cs_la_subset_name(subset));
    cs_laplace_opts o;
    cs_laplace_opts_init(&o);
    o.repr = repr, o.subset = subset, o.batch = 5;
    unsigned mask = 1u << CS_LA_MAP | 1u << CS_LA_NN_MC;
    cs_la_metrics m[CS_LA_METHOD_COUNT], again[CS_LA_METHOD_COUNT], other[CS_LA_METHOD_COUNT];
    cs_laplace la;
    cs_err err = {0};
    /* collapsed: a prior precision of 1e14 leaves θ* ± 1e-7 */
    o.prior = CS_LA_PRIOR_FIXED, o.prior_precision = 1e14;
    if (ok(cs_laplace_fit(g, ds, &o, &la, &err) == CS_OK &&
               cs_laplace_predict(g, ds, &la, NULL, 5, mask, 20, 3, m, &err) == CS_OK,
           "%s, prior 1e14: nn_mc (%s)", name, err.msg)) {
        const cs_la_metrics *nn = &m[CS_LA_NN_MC], *map = &m[CS_LA_MAP];
        double d = fmax(fmax(fabs(nn->nll - map->nll), fabs(nn->brier - map->brier)),
                        fmax(fabs(nn->ece - map->ece), fabs(nn->accuracy - map->accuracy)));
        ok(d <= 1e-6, "%s, prior 1e14: nn_mc = map (nll %.9f vs %.9f, largest metric difference %.2g)", name,
           m[CS_LA_NN_MC].nll, m[CS_LA_MAP].nll, d);
    }
    cs_laplace_free(&la);
    /* the optimised prior */
    o.prior = CS_LA_PRIOR_LAYER;
    if (ok(cs_laplace_fit(g, ds, &o, &la, &err) == CS_OK &&
               cs_laplace_predict(g, ds, &la, NULL, 5, mask, 20, 3, m, &err) == CS_OK &&
               cs_laplace_predict(g, ds, &la, NULL, 4, mask, 20, 3, again, &err) == CS_OK &&
               cs_laplace_predict(g, ds, &la, NULL, 5, mask, 20, 4, other, &err) == CS_OK,
           "%s, optimised prior: nn_mc (%s)", name, err.msg)) {
        ok(fabs(m[CS_LA_NN_MC].nll - m[CS_LA_MAP].nll) > 1e-3, "%s: nn_mc nll %.6f differs from map's %.6f", name,
           m[CS_LA_NN_MC].nll, m[CS_LA_MAP].nll);
        ok(fabs(again[CS_LA_NN_MC].nll - m[CS_LA_NN_MC].nll) <= 1e-12 * m[CS_LA_NN_MC].nll,
           "%s: the same seed repeats nn_mc at another batch size (%.15g vs %.15g)", name, again[CS_LA_NN_MC].nll,
           m[CS_LA_NN_MC].nll);
        ok(other[CS_LA_NN_MC].nll != m[CS_LA_NN_MC].nll, "%s: another seed, other samples (%.9f vs %.9f)", name,
           other[CS_LA_NN_MC].nll, m[CS_LA_NN_MC].nll);
        ok(weights_are_map(g, &la), "%s: the graph's weights are theta* again", name);
    }
    cs_laplace_free(&la);
}

int main(void)
{
    kfac_case();
    diag_full_case();
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load("tiny_mlp64", "tiny_mlp64", 0, &g, &ds) == 0) {
        const cs_repr_kind reprs[] = {CS_REPR_DIAG, CS_REPR_KFAC, CS_REPR_FULL};
        for (int r = 0; r < 3; r++)
            covariance_case(g, &ds, reprs[r]);
        for (int r = 0; r < 3; r++)
            for (int s = 0; s < 2; s++)
                predictive_case(g, &ds, reprs[r], (cs_la_subset)s);
        cs_dataset_free(&ds);
        cs_graph_free(g);
    }
    return tap_done();
}
