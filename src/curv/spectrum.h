/* Whole-network spectra without forming the matrix: Lanczos top / bottom
 * eigenvalues (full reorthogonalisation, Ritz residuals as the convergence
 * evidence, repeated with other seeds for the spread), stochastic Lanczos
 * quadrature for the spectral density (Ghorbani, Krishnan & Xiao 2019),
 * Hutchinson's trace, and optionally power iteration as PyHessian does it.
 * The operators are the exact Hessian-, GGN- and empirical-Fisher-vector
 * products of objective/objective.h over one fixed sample set. */
#ifndef CS_CURV_SPECTRUM_H
#define CS_CURV_SPECTRUM_H

#include <stdbool.h>
#include <stdint.h>

#include "curv/curv.h"
#include "data/dataset.h"
#include "graph/graph.h"
#include "objective/loss.h"
#include "spectral/lanczos.h"

typedef struct cs_spectrum_opts {
    unsigned curvatures;  /* mask: hessian, ggn (also answers fisher), fisher_emp */
    int steps;            /* Lanczos steps, for top/bottom and per SLQ probe (default 40) */
    int topk;             /* top and bottom eigenvalues reported (default 5) */
    int probes;           /* SLQ and Hutchinson probes (default 10) */
    int bins;             /* density bins (default 100) */
    double sigma_frac;    /* Gaussian broadening: sigma = sigma_frac * (spread of the nodes) (0.01) */
    int repeats;          /* Lanczos runs with other seeds (default 1) */
    bool power;           /* also power iteration (PyHessian's method) */
    int power_iters;      /* at most (default 100), relative tolerance 1e-4 */
    double conv_rtol;     /* a Ritz value is converged when residual <= conv_rtol * max|theta| (1e-3) */
    uint64_t seed;
    int64_t batch;
    cs_loss_kind loss;
    const cs_norm *norm;
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
    const volatile int *cancel;
    /* Also each single layer with at least this many parameters (a layer too
     * large for an exact block): the operator restricted to its block.
     * 0: the whole network only. */
    int64_t layer_min_dim;
    int eigenvectors;     /* top Ritz vectors to form (first repeat), 0: none */
} cs_spectrum_opts;

void cs_spectrum_opts_init(cs_spectrum_opts *o);

typedef struct cs_net_spectrum {
    cs_curv_kind curv;
    int layer;                    /* -1: the whole network, else the layer's block */
    int64_t dim;                  /* parameters */
    int repeats;
    cs_lanczos_result *lanczos;   /* [repeats] */
    int **converged;              /* [repeats][steps] */
    cs_slq_result slq;
    double sigma, *edges, *density; /* bins + 1 edges, bins values */
    int bins;
    double slq_mean, slq_mean_sq, slq_mean_stderr, neg_fraction;
    double slq_effective_rank;    /* exp(spectral entropy) of the positive part, from the quadrature */
    double hutch_trace, hutch_stderr;
    double power_lambda;
    int power_iters;
    double seconds_lanczos, seconds_slq, seconds_hutch, seconds_power;
} cs_net_spectrum;

/* out receives, per requested curvature (in cs_curv_kind order), the whole
 * network and then every layer of at least layer_min_dim parameters. */
cs_status cs_spectrum_compute(const cs_graph *g, const cs_dataset *ds, const cs_spectrum_opts *o,
                              cs_net_spectrum **out, int *n_out, cs_err *err) CS_MUST_CHECK;
void cs_spectrum_free(cs_net_spectrum *s, int n);

/* What cs_spectrum_compute(g, ds, o) will hold and how many passes over
 * the data it makes, appended to plan (curv/mem_plan.h): the objective's
 * plans (prepared for real), the largest Lanczos basis (steps vectors of
 * the operator's dimension, full reorthogonalisation) with its Ritz
 * vectors; one pass per product. */
struct cs_mem_plan;
cs_status cs_spectrum_plan(const cs_graph *g, const cs_dataset *ds, const cs_spectrum_opts *o,
                           struct cs_mem_plan *plan, cs_err *err) CS_MUST_CHECK;

#endif
