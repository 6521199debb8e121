/* The gradient noise scale (McCandlish et al. 2018, "An Empirical Model of
 * Large-Batch Training", §2.2 and App. A.1), per layer and for the whole
 * network, from the per-sample gradients g_n of the loss (the empirical
 * Fisher's seeds, doc/design.md §2.2) that the curvature engine forms.
 *
 * With N samples, gbar = (1/N) sum g_n and Q = sum |g_n|^2:
 *   tr(Sigma) = (Q - N |gbar|^2) / (N - 1)          unbiased, >= 0
 *   |G|^2     = |gbar|^2 - tr(Sigma) / N            unbiased
 *   B_simple  = tr(Sigma) / |G|^2
 * |gbar|^2 alone overstates |G|^2 by tr(Sigma)/N; the correction is the
 * paper's eqs. A.2 / A.3 with B_small = 1 (the per-sample norms) and
 * B_big = N (the mean), which reduce to the two lines above.
 * Standard error: the N samples (in data order) are split into K
 * contiguous groups, both estimators are formed per group, and the delta
 * method for a ratio is applied to the groups' spread (variances and
 * covariance over groups divided by K, the variance of the full-data
 * estimates):
 *   se^2 = B^2 (V_S / S^2 + V_G / G^2 - 2 C_SG / (S G)).
 * The whole network sums S and |G|^2 over the layers that have per-sample
 * gradients (both are sums over parameters). */
#ifndef CS_CURV_NOISE_H
#define CS_CURV_NOISE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "graph/graph.h"

typedef struct cs_noise_result {
    int layer;              /* -1: the whole network (the layers that have rows) */
    bool available;         /* false: no per-sample gradients, every value NaN */
    double grad_sq_norm;    /* |G|^2, unbiased */
    double trace_cov;       /* tr(Sigma), unbiased per-sample covariance */
    double b_simple;        /* tr(Sigma) / |G|^2; NaN when |G|^2 <= 0 */
    double b_simple_se;     /* delta-method standard error over groups; NaN with K < 2 */
    int64_t n_samples;
    int groups;             /* K */
} cs_noise_result;

typedef struct cs_noise_acc cs_noise_acc;

/* Accumulators for n_samples samples in `groups` groups (fewer when there
 * are under 2 samples per group) for the layers with has_rows[l]; K per
 * layer sums of numel doubles.  Owned by the caller, freed with
 * cs_noise_acc_free. */
cs_status cs_noise_acc_new(const cs_graph *g, const bool *has_rows, int64_t n_samples, int groups,
                           cs_noise_acc **out, cs_err *err) CS_MUST_CHECK;

/* Add the per-sample gradients rows [B, numel] of layer l for samples
 * start .. start + B - 1 (unscaled: row b is d l_{start+b} / d theta_l). */
void cs_noise_acc_add(cs_noise_acc *a, int layer, int64_t start, const double *rows, int64_t B);

/* n_layers + 1 results (layers in order, then the network) into *res,
 * owned by the caller (free()). */
cs_status cs_noise_acc_results(const cs_noise_acc *a, cs_noise_result **res, int *n, cs_err *err) CS_MUST_CHECK;

void cs_noise_acc_free(cs_noise_acc *a);

#endif
