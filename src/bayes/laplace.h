/* The Laplace approximation around trained weights θ* (MacKay 1992;
 * Immer, Bauer, Fortuin, Rätsch & Khan 2021; Daxberger, Kristiadi, Immer,
 * Eschenhagen, Bauer & Hennig 2021, "Laplace Redux"), from the curvature
 * the engine computes (curv/engine.h), and its log marginal likelihood.
 *
 * Conventions (doc/design.md §2.13):
 *   - the likelihood is the model's ce loss summed over the N samples:
 *     log p(D|θ) = −Σ_n l_n; the engine's curvature is the MEAN over samples
 *     (§2.2), so the posterior precision is P = N·C + P0 with C the engine's
 *     matrix;
 *   - the prior is N(0, P0⁻¹), P0 = diag(δ_l) over the parameters of layer l
 *     (one δ for every layer, or one per layer);
 *   - log p(D) ≈ log p(D|θ*) − ½ θ*ᵀ P0 θ* − ½ log det P + ½ log det P0
 *     (the (2π) terms cancel);
 *   - the posterior covers every layer (subset all) or the last layer in
 *     parameter order (subset last), the other weights fixed at θ*. */
#ifndef CS_BAYES_LAPLACE_H
#define CS_BAYES_LAPLACE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/rng.h"
#include "curv/curv.h"
#include "data/dataset.h"
#include "graph/graph.h"

typedef enum cs_la_subset { CS_LA_ALL, CS_LA_LAST } cs_la_subset;

/* How the prior precision is chosen. */
typedef enum cs_la_prior {
    CS_LA_PRIOR_FIXED,  /* the given value for every layer */
    CS_LA_PRIOR_SCALAR, /* one value maximising the log marginal likelihood */
    CS_LA_PRIOR_LAYER,  /* one value per layer, likewise */
} cs_la_prior;

typedef struct cs_laplace_opts {
    cs_curv_kind curv;       /* ggn, fisher, fisher_mc or fisher_emp */
    cs_repr_kind repr;       /* CS_REPR_DIAG, CS_REPR_KFAC or CS_REPR_FULL */
    cs_la_subset subset;
    cs_la_prior prior;
    double prior_precision;  /* FIXED: δ; otherwise unused */
    int64_t max_full;        /* repr full: the most parameters of the posterior */
    int64_t batch;
    int mc_samples;          /* fisher_mc */
    uint64_t seed;
    const cs_norm *norm;
    const volatile int *cancel;
} cs_laplace_opts;

void cs_laplace_opts_init(cs_laplace_opts *o);

/* One layer of the posterior. */
typedef struct cs_la_layer {
    int layer;               /* index into g->layers */
    int64_t W;               /* its parameters */
    int64_t offset;          /* its first parameter in the graph's flat vector */
    int64_t start;           /* its first parameter in the posterior's vector */
    double prior;            /* δ_l */
    double sq_norm;          /* |θ*_l|² */
    /* diag: the sum curvature's diagonal N·c_i [W] */
    double *h;
    /* kfac: per group the eigenvectors (columns) and eigenvalues of A and G;
     * each parameter's (group, unit, feature) */
    int64_t groups, dA, dG;
    double *QA, *QG;         /* [groups][dA][dA], [groups][dG][dG] */
    double *lA, *lG;         /* [groups][dA], [groups][dG] */
    int64_t *kron;           /* [W][3] */
} cs_la_layer;

typedef struct cs_laplace {
    cs_curv_kind curv;
    cs_repr_kind repr;
    cs_la_subset subset;
    cs_la_prior prior_mode;
    int n_layers;
    cs_la_layer *layers;     /* [n_layers] */
    int64_t D;               /* parameters of the posterior */
    int64_t N;               /* training samples */
    int64_t classes;
    double log_lik;          /* log p(D|θ*) = −Σ_n l_n */
    double *theta;           /* θ* [D] */
    double *H;               /* full: the sum curvature N·C [D, D] */
    double *chol;            /* full: upper Cholesky factor of P at the priors, row-major [D, D] */
    /* at the priors */
    double log_marglik, log_det_P, log_det_P0, prior_term; /* prior_term = −½ θ*ᵀ P0 θ* */
    double seconds;
} cs_laplace;

/* Curvature, log-likelihood and (optimised) priors of the posterior around
 * the graph's weights on ds (ce loss, integer labels).  *la is owned by the
 * caller (cs_laplace_free, also after a failure). */
cs_status cs_laplace_fit(const cs_graph *g, const cs_dataset *ds, const cs_laplace_opts *o, cs_laplace *la,
                         cs_err *err) CS_MUST_CHECK;

/* Log marginal likelihood and its parts at the priors now in la->layers[].prior
 * (full: refreshes la->chol). */
cs_status cs_laplace_evidence(cs_laplace *la, cs_err *err) CS_MUST_CHECK;

void cs_laplace_free(cs_laplace *la);

const char *cs_la_subset_name(cs_la_subset s);
const char *cs_la_prior_name(cs_la_prior p);

/* ---- weight samples (laplace_sample.c) ---- */

/* out = T z [D] for the T with T Tᵀ = P⁻¹ at the priors now in la (full:
 * la->chol, as cs_laplace_evidence left it): diag, 1/√(N c_i + δ) entrywise;
 * K-FAC, per group (Q_G ⊗ Q_A) (N μ_u λ_f + δ)^{-1/2} over the factors'
 * eigendecompositions; full, U⁻¹ for P = UᵀU.  work: cs_laplace_transform_work
 * doubles. */
int64_t cs_laplace_transform_work(const cs_laplace *la);
cs_status cs_laplace_transform(const cs_laplace *la, const double *z, double *out, double *work,
                               cs_err *err) CS_MUST_CHECK;
/* One draw θ = θ* + T z from the posterior into theta [D] (z [D]: the normals drawn). */
cs_status cs_laplace_sample(const cs_laplace *la, cs_rng *rng, double *theta, double *z, double *work,
                            cs_err *err) CS_MUST_CHECK;

/* ---- predictives on a test set (laplace_predict.c) ---- */

typedef enum cs_la_method {
    CS_LA_MAP,        /* softmax of the MAP logits */
    CS_LA_GLM_PROBIT, /* linearised model, probit approximation */
    CS_LA_GLM_MC,     /* linearised model, Monte Carlo over its logits' Gaussian */
    CS_LA_NN_MC,      /* the network itself at weights sampled from the posterior */
    CS_LA_METHOD_COUNT
} cs_la_method;

const char *cs_la_method_name(cs_la_method m);

/* Test NLL (mean over samples), accuracy, ECE over 15 equal-width bins of
 * the top-class confidence, Brier score (mean over samples of Σ_c (p_c − y_c)²). */
typedef struct cs_la_metrics {
    double nll, accuracy, ece, brier;
} cs_la_metrics;

/* Parses a comma-separated list of method names (cs_la_method_name, or
 * "all") into a mask of 1u << method. */
cs_status cs_la_method_parse_list(const char *list, unsigned *mask, cs_err *err) CS_MUST_CHECK;

/* The metrics of the methods in mask (1u << cs_la_method) on ts (integer
 * labels) for the fitted la into out[method] (the others untouched);
 * mc_samples draws per test input for CS_LA_GLM_MC, and weight samples for
 * CS_LA_NN_MC (the mean of their softmax probabilities), both seeded.
 * CS_LA_NN_MC writes each sample into the posterior's parameters of g, and
 * θ* back at the end (also after a failure): g is otherwise unchanged. */
cs_status cs_laplace_predict(cs_graph *g, const cs_dataset *ts, const cs_laplace *la, const cs_norm *norm,
                             int64_t batch, unsigned mask, int mc_samples, uint64_t seed,
                             cs_la_metrics out[CS_LA_METHOD_COUNT], cs_err *err) CS_MUST_CHECK;
#endif
