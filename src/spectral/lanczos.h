/* Matrix-free spectral methods for a symmetric operator given only through
 * products y = A v: Lanczos with full reorthogonalisation (extreme
 * eigenvalues, Ritz vectors and residuals), power iteration (for comparison
 * with PyHessian), stochastic Lanczos quadrature (spectral density) and
 * Hutchinson's trace and diagonal estimators.
 *
 * Every routine is seeded: the same seed gives the same bits.  Work buffers
 * are allocated once per call; the operator is the only thing called inside
 * the loops. */
#ifndef CS_SPECTRAL_LANCZOS_H
#define CS_SPECTRAL_LANCZOS_H

#include <stdint.h>

#include "base/status.h"

/* y = A v for a symmetric operator A of order n (the Hessian / GGN / Fisher
 * over a dataset: each call is a pass over the data).  v and y (n values
 * each) never overlap; v is borrowed and must be left unchanged. */
typedef cs_status (*cs_matvec_fn)(void *ctx, const double *v, double *y, cs_err *err);

/* ------------------------------------------------------------ probes */

/* Random probe vectors.  Probe p of a run seeded with `seed` is drawn from
 * its own xoshiro stream, seeded by a hash of (seed, p), so probe p is the
 * same whatever the number of probes, and cs_slq and cs_hutchinson given
 * the same seed and kind use the same vectors (cs_slq scales them to unit
 * length). */
typedef enum cs_probe_kind {
    CS_PROBE_RADEMACHER = 0, /* entries +-1 */
    CS_PROBE_GAUSSIAN,       /* entries N(0, 1) */
    CS_PROBE_KIND_COUNT
} cs_probe_kind;

/* Probe vector p (n values, not normalised) into v. */
void cs_probe_vector(uint64_t seed, int64_t p, cs_probe_kind kind, int64_t n, double *v);

/* ------------------------------------------------------------ Lanczos */

typedef struct cs_lanczos_result {
    int steps;          /* steps performed (< requested on an invariant subspace: beta ~ 0) */
    double *alpha;      /* [steps] diagonal of T */
    double *beta;       /* [steps] off-diagonal: beta[i] couples steps i and i+1; beta[steps-1] is the residual norm of the last step */
    double *ritz;       /* [steps] Ritz values, descending */
    double *residual;   /* [steps] residual norm ||A y - theta y|| of each Ritz pair = |beta_m * s_{m,i}| */
    double *vectors;    /* NULL, or [n_vectors][n] Ritz vectors of the largest Ritz values (unit norm) */
    int n_vectors;
    double *basis;      /* NULL, or [steps][n] the Lanczos vectors q_0.. (opts.keep_basis) */
    int64_t n;          /* operator order */
} cs_lanczos_result;

/* Less common knobs of cs_lanczos_ex; {0} is not the default: start from
 * CS_LANCZOS_OPTS_DEFAULT. */
typedef struct cs_lanczos_opts {
    int steps;          /* requested steps (capped at n) */
    int want_vectors;   /* how many Ritz vectors of the largest Ritz values to form */
    int want_bottom;    /* how many of the smallest Ritz values' vectors to form too:
                           they follow the top ones in `vectors`, smallest first */
    int reorth_passes;  /* classical Gram-Schmidt passes against all previous
                           vectors per step: 2 (the default) keeps the basis
                           orthogonal to working precision; 0 is plain
                           Lanczos, kept for tests that show the difference */
    int keep_basis;     /* hand the basis to the result (result.basis) */
    double stop_rtol;   /* stop when beta <= stop_rtol * max |alpha| seen (1e-12) */
} cs_lanczos_opts;

#define CS_LANCZOS_OPTS_DEFAULT                                                                    \
    ((cs_lanczos_opts){.steps = 0, .want_vectors = 0, .want_bottom = 0, .reorth_passes = 2,       \
                       .keep_basis = 0, .stop_rtol = 1e-12})

/* Lanczos with full reorthogonalisation (twice, classical Gram-Schmidt
 * against all previous vectors) from `start` (borrowed, n values; NULL: a
 * seeded Gaussian vector, cs_probe_vector(seed, 0, CS_PROBE_GAUSSIAN)),
 * `steps` steps (capped at n).  want_vectors: how many top Ritz vectors to
 * form (0 for none; capped at the steps performed).  Stops early, without
 * error, when beta falls below 1e-12 times the largest |alpha| seen
 * (invariant subspace).  out is owned by the caller after success (free with
 * cs_lanczos_result_free); on failure it holds nothing to free.
 * Memory: steps * n doubles for the basis, plus n_vectors * n. */
cs_status cs_lanczos(cs_matvec_fn A, void *ctx, int64_t n, const double *start, uint64_t seed,
                     int steps, int want_vectors, cs_lanczos_result *out, cs_err *err) CS_MUST_CHECK;
cs_status cs_lanczos_ex(cs_matvec_fn A, void *ctx, int64_t n, const double *start, uint64_t seed,
                        const cs_lanczos_opts *opts, cs_lanczos_result *out,
                        cs_err *err) CS_MUST_CHECK;
void cs_lanczos_result_free(cs_lanczos_result *r);

/* ------------------------------------------------------------ power iteration */

/* Power iteration for the eigenvalue of largest magnitude (as PyHessian
 * does it, for comparison): lambda_k = v_k^T A v_k with v_{k+1} = A v_k /
 * ||A v_k||, from a seeded Gaussian v_0; stops when |lambda_k -
 * lambda_{k-1}| <= tol |lambda_k| or after max_iters; reports iterations
 * done (operator products).  vec (n values) may be NULL; else it gets the
 * unit vector v_k whose Rayleigh quotient is lambda. */
cs_status cs_power_iteration(cs_matvec_fn A, void *ctx, int64_t n, uint64_t seed, int max_iters,
                             double tol, double *lambda, double *vec, int *iters,
                             cs_err *err) CS_MUST_CHECK;

/* ------------------------------------------------------------ SLQ */

/* Stochastic Lanczos quadrature: `probes` runs of `steps` Lanczos steps from
 * Rademacher vectors normalised to unit length (seeded, probe p uses a stream
 * derived from seed and p).  Keeps per probe the tridiagonal coefficients
 * and the Gauss quadrature nodes (Ritz values) and weights (squared first
 * components of T's eigenvectors), so densities can be recomputed later. */
typedef struct cs_slq_result {
    int probes, steps;   /* steps per probe may be fewer on early stop: see n_steps */
    int *n_steps;        /* [probes] */
    double *alpha, *beta;   /* [probes][steps] (unused tail zero) */
    double *nodes, *weights; /* [probes][steps], nodes descending (unused tail zero) */
    int64_t n;           /* operator order */
} cs_slq_result;

cs_status cs_slq(cs_matvec_fn A, void *ctx, int64_t n, int probes, int steps, uint64_t seed,
                 cs_slq_result *out, cs_err *err) CS_MUST_CHECK;
/* As cs_slq with a choice of probe distribution (normalised to unit length). */
cs_status cs_slq_ex(cs_matvec_fn A, void *ctx, int64_t n, int probes, int steps, uint64_t seed,
                    cs_probe_kind kind, cs_slq_result *out, cs_err *err) CS_MUST_CHECK;
void cs_slq_result_free(cs_slq_result *r);

/* Spectral density on `bins` equal bins over [lo, hi] with Gaussian
 * broadening of standard deviation sigma: density[b] = mean over probes of
 * sum_i w_i * (probability mass of N(theta_i, sigma^2) in bin b) / bin width,
 * so that sum_b density[b] * width = 1 when [lo, hi] covers the spread
 * (exact per-bin integrals with erf, not point samples).  edges gets
 * bins+1 values.  sigma <= 0 gives the plain histogram of the nodes (bins
 * closed on the left, the last also on the right).  Needs bins >= 1 and
 * hi > lo; otherwise density is all NaN. */
void cs_slq_density(const cs_slq_result *r, double lo, double hi, int bins, double sigma,
                    double *edges, double *density);

/* Moments from the quadrature: estimates of tr(A)/n and tr(A^2)/n
 * (sum_i w_i theta_i, sum_i w_i theta_i^2, averaged over probes), and the
 * estimated fraction of negative eigenvalues (sum of w_i over theta_i < 0). */
void cs_slq_moments(const cs_slq_result *r, double *mean, double *mean_sq, double *neg_fraction);

/* The same three numbers for probe p alone (their spread across probes
 * gives the standard errors of cs_slq_moments). */
void cs_slq_probe_moments(const cs_slq_result *r, int p, double *mean, double *mean_sq,
                          double *neg_fraction);

/* ------------------------------------------------------------ Hutchinson */

/* Hutchinson's trace estimator with Rademacher probes: trace = mean of
 * v^T A v, stderr = sample standard deviation / sqrt(probes) (NaN for one
 * probe); with diag non-NULL also the diagonal estimate mean of v .* (A v)
 * (n values). */
cs_status cs_hutchinson(cs_matvec_fn A, void *ctx, int64_t n, int probes, uint64_t seed,
                        double *trace, double *stderr_out, double *diag, cs_err *err) CS_MUST_CHECK;

#endif
