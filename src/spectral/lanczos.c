#include "spectral/lanczos.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "tensor/blas.h"

/* ------------------------------------------------------------ probes */

/* splitmix64's output function (Steele, Lea & Flood 2014): a bijective
 * mixer, so distinct (seed, p) pairs give unrelated stream seeds.  Seeding
 * probe p with seed + p would not do: cs_rng_seed walks splitmix64 from its
 * argument, so nearby seeds give overlapping states. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cs_probe_vector(uint64_t seed, int64_t p, cs_probe_kind kind, int64_t n, double *v)
{
    cs_rng r;
    cs_rng_seed(&r, mix64(seed ^ mix64((uint64_t)p + 0x632be59bd9b4e019ull)));
    if (kind == CS_PROBE_GAUSSIAN)
        for (int64_t i = 0; i < n; i++)
            v[i] = cs_rng_normal(&r);
    else
        for (int64_t i = 0; i < n; i++)
            v[i] = cs_rng_sign(&r);
}

/* BLAS takes int lengths: every vector and every basis block passed to it
 * has n entries per row and at most `steps` rows. */
static cs_status check_order(int64_t n, const char *what, cs_err *err)
{
    if (n <= 0)
        return cs_fail(err, CS_ERR_USAGE, "%s: operator order %lld is not positive", what,
                       (long long)n);
    if (n > INT_MAX)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "%s: operator order %lld exceeds %d", what,
                       (long long)n, INT_MAX);
    return CS_OK;
}

/* Scale v (n values) to unit length; 0 when it has no finite nonzero norm. */
static int normalise(double *v, int n)
{
    double nv = cblas_dnrm2(n, v, 1);
    if (!(nv > 0) || !isfinite(nv))
        return 0;
    cblas_dscal(n, 1.0 / nv, v, 1);
    return 1;
}

/* ------------------------------------------------------------ Lanczos */

/* Work space of one Lanczos run, allocated once per call and reused across
 * SLQ probes. */
typedef struct lanczos_ws {
    int m, n;
    double *Q;     /* [m][n] Lanczos vectors, row j = q_j */
    double *w;     /* [n] the next residual vector */
    double *h;     /* [m] Gram-Schmidt coefficients */
    double *d, *e; /* [m] copies of alpha, beta for the tridiagonal solve */
    double *z;     /* [m][m] eigenvectors of T, column-major: z[i + m*c] */
    double *work;  /* [2m] dstev work */
} lanczos_ws;

static void ws_free(lanczos_ws *ws)
{
    free(ws->Q);
    free(ws->w);
    free(ws->h);
    free(ws->d);
    free(ws->e);
    free(ws->z);
    free(ws->work);
    memset(ws, 0, sizeof *ws);
}

static cs_status ws_alloc(lanczos_ws *ws, int m, int n, cs_err *err)
{
    memset(ws, 0, sizeof *ws);
    ws->m = m;
    ws->n = n;
    ws->Q = malloc((size_t)m * (size_t)n * sizeof *ws->Q);
    ws->w = malloc((size_t)n * sizeof *ws->w);
    ws->h = malloc((size_t)m * sizeof *ws->h);
    ws->d = malloc((size_t)m * sizeof *ws->d);
    ws->e = malloc((size_t)m * sizeof *ws->e);
    ws->z = malloc((size_t)m * (size_t)m * sizeof *ws->z);
    ws->work = malloc((size_t)(2 * m) * sizeof *ws->work);
    if (!ws->Q || !ws->w || !ws->h || !ws->d || !ws->e || !ws->z || !ws->work) {
        ws_free(ws);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for a Lanczos basis of %d x %d", m, n);
    }
    return CS_OK;
}

/* m steps of the symmetric Lanczos recurrence (Golub & Van Loan, Matrix
 * Computations, 4th ed., Alg. 10.1.1) from the unit vector in ws->Q row 0:
 *
 *   w = A q_j - beta_{j-1} q_{j-1},  alpha_j = q_j^T w,  w -= alpha_j q_j,
 *   beta_j = ||w||,  q_{j+1} = w / beta_j.
 *
 * In floating point the q_j lose orthogonality as soon as a Ritz pair
 * converges (Paige 1971; Golub & Van Loan sec. 10.3.1), which produces
 * spurious copies of converged eigenvalues.  Full reorthogonalisation
 * (sec. 10.3.2) removes it: after the recurrence, w is projected off all of
 * q_0..q_j by classical Gram-Schmidt, twice ("twice is enough": Parlett, The
 * Symmetric Eigenvalue Problem, sec. 6.9; Giraud et al. 2005), each pass two
 * BLAS-2 products with the basis.  The component along q_j removed by those
 * passes is the rounding error of alpha_j and is added back to it, as
 * Arnoldi with reorthogonalisation would.
 *
 * Stops after the step whose beta is <= stop_rtol * max |alpha|: w then lies
 * (to working precision) in span(q_0..q_j), an invariant subspace, and the
 * Ritz values are eigenvalues.  beta[done-1] is kept: it is the residual
 * norm that scales every Ritz residual. */
static cs_status lanczos_run(cs_matvec_fn A, void *ctx, lanczos_ws *ws, int m, int passes,
                             double stop_rtol, double *alpha, double *beta, int *done,
                             cs_err *err)
{
    const int n = ws->n;
    double *Q = ws->Q, *w = ws->w, *h = ws->h;
    double amax = 0;
    *done = 0;
    for (int j = 0; j < m; j++) {
        const double *qj = Q + (size_t)j * (size_t)n;
        cs_status st = A(ctx, qj, w, err);
        if (st) {
            cs_err_prefix(err, "Lanczos step %d", j + 1);
            return st;
        }
        if (j > 0)
            cblas_daxpy(n, -beta[j - 1], Q + (size_t)(j - 1) * (size_t)n, 1, w, 1);
        double a = cblas_ddot(n, qj, 1, w, 1);
        cblas_daxpy(n, -a, qj, 1, w, 1);
        for (int pass = 0; pass < passes; pass++) {
            /* h = Q_j w  ([j+1]);  w -= Q_j^T h  ([n]) */
            cblas_dgemv(CblasRowMajor, CblasNoTrans, j + 1, n, 1.0, Q, n, w, 1, 0.0, h, 1);
            cblas_dgemv(CblasRowMajor, CblasTrans, j + 1, n, -1.0, Q, n, h, 1, 1.0, w, 1);
            a += h[j];
        }
        double b = cblas_dnrm2(n, w, 1);
        if (!isfinite(a) || !isfinite(b))
            return cs_fail(err, CS_ERR_RUNTIME,
                           "Lanczos step %d: the operator returned non-finite values", j + 1);
        alpha[j] = a;
        beta[j] = b;
        amax = fmax(amax, fabs(a));
        *done = j + 1;
        if (b <= stop_rtol * amax)
            break;
        if (j + 1 < m) {
            double *qn = Q + (size_t)(j + 1) * (size_t)n;
            for (int i = 0; i < n; i++)
                qn[i] = w[i] / b;
        }
    }
    return CS_OK;
}

/* Eigen-decomposition T = S diag(theta) S^T of the k x k tridiagonal
 * (alpha, beta[0..k-2]) into ws->d (ascending) and ws->z (columns of S). */
static cs_status tridiag_eig(lanczos_ws *ws, const double *alpha, const double *beta, int k,
                             cs_err *err)
{
    memcpy(ws->d, alpha, (size_t)k * sizeof *ws->d);
    if (k > 1)
        memcpy(ws->e, beta, (size_t)(k - 1) * sizeof *ws->e);
    lapack_int info =
        LAPACKE_dstev_work(LAPACK_COL_MAJOR, 'V', k, ws->d, ws->e, ws->z, k, ws->work);
    if (info != 0)
        return cs_fail(err, CS_ERR_RUNTIME,
                       "tridiagonal eigen-solve of order %d failed (LAPACK info %d)", k, (int)info);
    return CS_OK;
}

void cs_lanczos_result_free(cs_lanczos_result *r)
{
    if (!r)
        return;
    free(r->alpha);
    free(r->beta);
    free(r->ritz);
    free(r->residual);
    free(r->vectors);
    free(r->basis);
    memset(r, 0, sizeof *r);
}

cs_status cs_lanczos_ex(cs_matvec_fn A, void *ctx, int64_t n64, const double *start, uint64_t seed,
                        const cs_lanczos_opts *opts, cs_lanczos_result *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    cs_status st = check_order(n64, "Lanczos", err);
    if (st)
        return st;
    if (opts->steps < 1)
        return cs_fail(err, CS_ERR_USAGE, "Lanczos: %d steps requested", opts->steps);
    if (opts->want_vectors < 0 || opts->want_bottom < 0 || opts->reorth_passes < 0)
        return cs_fail(err, CS_ERR_USAGE, "Lanczos: negative option");
    const int n = (int)n64;
    const int m = opts->steps < n ? opts->steps : n;
    int top = opts->want_vectors < m ? opts->want_vectors : m;
    int bottom = opts->want_bottom < m - top ? opts->want_bottom : m - top;

    lanczos_ws ws;
    st = ws_alloc(&ws, m, n, err);
    if (st)
        return st;
    cs_lanczos_result r = {.n = n64};
    r.alpha = calloc((size_t)m, sizeof *r.alpha);
    r.beta = calloc((size_t)m, sizeof *r.beta);
    r.ritz = calloc((size_t)m, sizeof *r.ritz);
    r.residual = calloc((size_t)m, sizeof *r.residual);
    if (top + bottom > 0)
        r.vectors = malloc((size_t)(top + bottom) * (size_t)n * sizeof *r.vectors);
    if (!r.alpha || !r.beta || !r.ritz || !r.residual || (top + bottom > 0 && !r.vectors)) {
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for Lanczos results");
        goto fail;
    }

    if (start)
        memcpy(ws.Q, start, (size_t)n * sizeof *ws.Q);
    else
        cs_probe_vector(seed, 0, CS_PROBE_GAUSSIAN, n, ws.Q);
    if (!normalise(ws.Q, n)) {
        st = cs_fail(err, CS_ERR_USAGE, "Lanczos: the start vector is zero or not finite");
        goto fail;
    }
    st = lanczos_run(A, ctx, &ws, m, opts->reorth_passes, opts->stop_rtol, r.alpha, r.beta,
                     &r.steps, err);
    if (st)
        goto fail;
    const int k = r.steps;
    st = tridiag_eig(&ws, r.alpha, r.beta, k, err);
    if (st)
        goto fail;

    /* Ritz pair i: theta_i with y_i = Q_k s_i.  Its residual is
     * A y_i - theta_i y_i = beta_k (e_k^T s_i) q_{k+1} (Golub & Van Loan
     * eq. 10.1.8; Parlett sec. 13.2), so ||.|| = |beta_k s_{k,i}| without
     * another operator product; by Kahan-Parlett (Parlett Thm. 11.5.1) some
     * eigenvalue of A lies within that distance of theta_i.  With full
     * reorthogonalisation the identity holds to working precision. */
    for (int i = 0; i < k; i++) {
        int c = k - 1 - i; /* dstev's order is ascending */
        r.ritz[i] = ws.d[c];
        r.residual[i] = fabs(r.beta[k - 1] * ws.z[(size_t)(k - 1) + (size_t)k * (size_t)c]);
    }
    if (top > k)
        top = k;
    if (bottom > k - top)
        bottom = k - top;
    for (int v = 0; v < top + bottom; v++) {
        int c = v < top ? k - 1 - v : v - top; /* top: descending; bottom: ascending */
        /* y = Q_k^T s  ([n] = [k][n]^T [k]) */
        cblas_dgemv(CblasRowMajor, CblasTrans, k, n, 1.0, ws.Q, n, ws.z + (size_t)k * (size_t)c,
                    1, 0.0, r.vectors + (size_t)v * (size_t)n, 1);
    }
    r.n_vectors = top + bottom;
    if (opts->keep_basis) {
        r.basis = ws.Q; /* rows k..m-1 are unused */
        ws.Q = NULL;
    }
    ws_free(&ws);
    *out = r;
    return CS_OK;

fail:
    ws_free(&ws);
    cs_lanczos_result_free(&r);
    return st;
}

cs_status cs_lanczos(cs_matvec_fn A, void *ctx, int64_t n, const double *start, uint64_t seed,
                     int steps, int want_vectors, cs_lanczos_result *out, cs_err *err)
{
    cs_lanczos_opts o = CS_LANCZOS_OPTS_DEFAULT;
    o.steps = steps;
    o.want_vectors = want_vectors;
    return cs_lanczos_ex(A, ctx, n, start, seed, &o, out, err);
}

/* ------------------------------------------------------------ power iteration */

/* The power method (Golub & Van Loan sec. 8.2.1) with PyHessian's Rayleigh
 * quotient and relative-change stop, for comparison runs only: it converges
 * like (|lambda_2| / |lambda_1|)^k and needs far more products than Lanczos
 * for the same accuracy. */
cs_status cs_power_iteration(cs_matvec_fn A, void *ctx, int64_t n64, uint64_t seed, int max_iters,
                             double tol, double *lambda, double *vec, int *iters, cs_err *err)
{
    cs_status st = check_order(n64, "power iteration", err);
    if (st)
        return st;
    if (max_iters < 1)
        return cs_fail(err, CS_ERR_USAGE, "power iteration: %d iterations requested", max_iters);
    const int n = (int)n64;
    double *v = malloc((size_t)n * sizeof *v), *y = malloc((size_t)n * sizeof *y);
    if (!v || !y) {
        free(v);
        free(y);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for power iteration of order %d", n);
    }
    cs_probe_vector(seed, 0, CS_PROBE_GAUSSIAN, n, v);
    normalise(v, n); /* a Gaussian vector is nonzero with probability 1 */
    double lam = 0, prev = 0;
    int k = 0;
    for (k = 1; k <= max_iters; k++) {
        st = A(ctx, v, y, err);
        if (st) {
            cs_err_prefix(err, "power iteration %d", k);
            goto out;
        }
        lam = cblas_ddot(n, v, 1, y, 1);
        double ny = cblas_dnrm2(n, y, 1);
        if (!isfinite(lam) || !isfinite(ny)) {
            st = cs_fail(err, CS_ERR_RUNTIME,
                         "power iteration %d: the operator returned non-finite values", k);
            goto out;
        }
        if ((k > 1 && fabs(lam - prev) <= tol * fabs(lam)) || ny == 0 || k == max_iters)
            break; /* ny == 0: v is in the null space and A v gives no new direction */
        for (int i = 0; i < n; i++)
            v[i] = y[i] / ny;
        prev = lam;
    }
    *lambda = lam;
    if (iters)
        *iters = k;
    if (vec)
        memcpy(vec, v, (size_t)n * sizeof *vec);
out:
    free(v);
    free(y);
    return st;
}

/* ------------------------------------------------------------ SLQ */

void cs_slq_result_free(cs_slq_result *r)
{
    if (!r)
        return;
    free(r->n_steps);
    free(r->alpha);
    free(r->beta);
    free(r->nodes);
    free(r->weights);
    memset(r, 0, sizeof *r);
}

/* Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017, "Fast estimation
 * of tr(f(A)) via stochastic Lanczos quadrature", sec. 3; applied to network
 * Hessians by Ghorbani, Krishnan & Xiao 2019, sec. 2-3).  For a unit probe
 * v, m Lanczos steps from v give T_m = S diag(theta) S^T, and
 *
 *   v^T f(A) v  ~=  sum_i tau_i f(theta_i),   tau_i = (e_1^T s_i)^2,
 *
 * the m-point Gauss quadrature of the spectral measure mu_v = sum_j
 * (u_j^T v)^2 delta(lambda_j), exact for polynomials of degree <= 2m-1
 * (Golub & Meurant, Matrices, Moments and Quadrature, ch. 6).  Over random
 * v with E[v v^T] = I/n, E[mu_v] is the spectral density of A, so
 * averaging the quadratures over probes estimates it.  Full
 * reorthogonalisation keeps spurious Ritz copies out of the nodes
 * (Ghorbani et al. do the same). */
cs_status cs_slq_ex(cs_matvec_fn A, void *ctx, int64_t n64, int probes, int steps, uint64_t seed,
                    cs_probe_kind kind, cs_slq_result *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    cs_status st = check_order(n64, "SLQ", err);
    if (st)
        return st;
    if (probes < 1 || steps < 1)
        return cs_fail(err, CS_ERR_USAGE, "SLQ: %d probes of %d steps requested", probes, steps);
    if ((unsigned)kind >= CS_PROBE_KIND_COUNT)
        return cs_fail(err, CS_ERR_USAGE, "SLQ: unknown probe kind %d", (int)kind);
    const int n = (int)n64;
    const int m = steps < n ? steps : n;
    const size_t total = (size_t)probes * (size_t)m;

    lanczos_ws ws;
    st = ws_alloc(&ws, m, n, err);
    if (st)
        return st;
    cs_slq_result r = {.probes = probes, .steps = m, .n = n64};
    r.n_steps = calloc((size_t)probes, sizeof *r.n_steps);
    r.alpha = calloc(total, sizeof *r.alpha);
    r.beta = calloc(total, sizeof *r.beta);
    r.nodes = calloc(total, sizeof *r.nodes);
    r.weights = calloc(total, sizeof *r.weights);
    if (!r.n_steps || !r.alpha || !r.beta || !r.nodes || !r.weights) {
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for SLQ results (%d x %d)", probes, m);
        goto fail;
    }
    for (int p = 0; p < probes; p++) {
        double *al = r.alpha + (size_t)p * (size_t)m, *be = r.beta + (size_t)p * (size_t)m;
        cs_probe_vector(seed, p, kind, n, ws.Q);
        if (!normalise(ws.Q, n)) {
            st = cs_fail(err, CS_ERR_RUNTIME, "SLQ probe %d is zero", p);
            goto fail;
        }
        int k = 0;
        st = lanczos_run(A, ctx, &ws, m, 2, 1e-12, al, be, &k, err);
        if (!st)
            st = tridiag_eig(&ws, al, be, k, err);
        if (st) {
            cs_err_prefix(err, "SLQ probe %d", p);
            goto fail;
        }
        r.n_steps[p] = k;
        double *nodes = r.nodes + (size_t)p * (size_t)m, *wts = r.weights + (size_t)p * (size_t)m;
        for (int i = 0; i < k; i++) {
            int c = k - 1 - i;
            double s0 = ws.z[(size_t)k * (size_t)c];
            nodes[i] = ws.d[c];
            wts[i] = s0 * s0;
        }
    }
    ws_free(&ws);
    *out = r;
    return CS_OK;

fail:
    ws_free(&ws);
    cs_slq_result_free(&r);
    return st;
}

cs_status cs_slq(cs_matvec_fn A, void *ctx, int64_t n, int probes, int steps, uint64_t seed,
                 cs_slq_result *out, cs_err *err)
{
    return cs_slq_ex(A, ctx, n, probes, steps, seed, CS_PROBE_RADEMACHER, out, err);
}

/* Standard normal lower and upper tail probabilities, each from erfc so
 * that a bin far in a tail keeps its relative accuracy (densities are
 * usually plotted on a log scale, where 1 - Phi computed as a difference of
 * numbers near 1 would show as a floor of rounding noise). */
static double phi_lower(double x)
{
    return 0.5 * erfc(-x / M_SQRT2);
}

static double phi_upper(double x)
{
    return 0.5 * erfc(x / M_SQRT2);
}

/* Mass of N(0, 1) in [a, b], a <= b. */
static double normal_mass(double a, double b)
{
    if (b <= 0)
        return phi_lower(b) - phi_lower(a);
    if (a >= 0)
        return phi_upper(a) - phi_upper(b);
    return 1.0 - phi_lower(a) - phi_upper(b);
}

/* Density smoothing as in Ghorbani et al. 2019, eq. (3) (a Gaussian kernel
 * on every quadrature node), but integrated over each bin rather than
 * sampled at its centre, so the bins sum to the mass in [lo, hi] whatever
 * the ratio of sigma to the bin width. */
void cs_slq_density(const cs_slq_result *r, double lo, double hi, int bins, double sigma,
                    double *edges, double *density)
{
    if (bins < 1)
        return;
    for (int b = 0; b <= bins; b++)
        edges[b] = b == bins ? hi : lo + (hi - lo) * ((double)b / bins);
    if (!(hi > lo) || r->probes < 1) {
        for (int b = 0; b < bins; b++)
            density[b] = NAN;
        return;
    }
    const double width = (hi - lo) / bins;
    for (int b = 0; b < bins; b++)
        density[b] = 0;
    for (int p = 0; p < r->probes; p++) {
        const double *nodes = r->nodes + (size_t)p * (size_t)r->steps;
        const double *wts = r->weights + (size_t)p * (size_t)r->steps;
        for (int i = 0; i < r->n_steps[p]; i++) {
            double t = nodes[i], wi = wts[i];
            if (!(sigma > 0)) {
                if (t < lo || t > hi)
                    continue;
                int b = (int)((t - lo) / width);
                density[b < bins ? b : bins - 1] += wi;
                continue;
            }
            double za = (edges[0] - t) / sigma;
            for (int b = 0; b < bins; b++) {
                double zb = (edges[b + 1] - t) / sigma;
                density[b] += wi * normal_mass(za, zb);
                za = zb;
            }
        }
    }
    for (int b = 0; b < bins; b++)
        density[b] /= (double)r->probes * width;
}

void cs_slq_probe_moments(const cs_slq_result *r, int p, double *mean, double *mean_sq,
                          double *neg_fraction)
{
    const double *nodes = r->nodes + (size_t)p * (size_t)r->steps;
    const double *wts = r->weights + (size_t)p * (size_t)r->steps;
    double m1 = 0, m2 = 0, neg = 0;
    for (int i = 0; i < r->n_steps[p]; i++) {
        m1 += wts[i] * nodes[i];
        m2 += wts[i] * nodes[i] * nodes[i];
        if (nodes[i] < 0)
            neg += wts[i];
    }
    if (mean)
        *mean = m1;
    if (mean_sq)
        *mean_sq = m2;
    if (neg_fraction)
        *neg_fraction = neg;
}

/* With sum_i tau_i = ||v||^2 = 1, sum tau_i theta_i = e_1^T T e_1 = v^T A v
 * and sum tau_i theta_i^2 = e_1^T T^2 e_1 = ||A v||^2 (Gauss quadrature is
 * exact for these low degrees), so the first two moments are Hutchinson
 * estimates of tr(A)/n and tr(A^2)/n (Hutchinson 1990; Avron & Toledo 2011). */
void cs_slq_moments(const cs_slq_result *r, double *mean, double *mean_sq, double *neg_fraction)
{
    double s1 = 0, s2 = 0, sn = 0;
    for (int p = 0; p < r->probes; p++) {
        double m1, m2, neg;
        cs_slq_probe_moments(r, p, &m1, &m2, &neg);
        s1 += m1;
        s2 += m2;
        sn += neg;
    }
    double P = r->probes > 0 ? (double)r->probes : NAN;
    if (mean)
        *mean = s1 / P;
    if (mean_sq)
        *mean_sq = s2 / P;
    if (neg_fraction)
        *neg_fraction = sn / P;
}

/* ------------------------------------------------------------ Hutchinson */

/* Hutchinson 1990: for v with independent +-1 entries E[v^T A v] = tr(A),
 * with variance 2 sum_{i != j} A_ij^2, the smallest among estimators of
 * this form (Avron & Toledo 2011, "Randomized algorithms for estimating the
 * trace of an implicit symmetric positive semi-definite matrix", sec. 3-4).
 * E[v .* (A v)] = diag(A) likewise (Bekas, Kokiopoulou & Saad 2007), with
 * variance sum_{j != i} A_ij^2 per entry.  The sample variance is
 * accumulated by Welford's update, which does not cancel when the spread is
 * small next to the trace. */
cs_status cs_hutchinson(cs_matvec_fn A, void *ctx, int64_t n64, int probes, uint64_t seed,
                        double *trace, double *stderr_out, double *diag, cs_err *err)
{
    cs_status st = check_order(n64, "Hutchinson", err);
    if (st)
        return st;
    if (probes < 1)
        return cs_fail(err, CS_ERR_USAGE, "Hutchinson: %d probes requested", probes);
    const int n = (int)n64;
    double *v = malloc((size_t)n * sizeof *v), *y = malloc((size_t)n * sizeof *y);
    if (!v || !y) {
        free(v);
        free(y);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for Hutchinson probes of order %d", n);
    }
    if (diag)
        memset(diag, 0, (size_t)n * sizeof *diag);
    double mean = 0, m2 = 0;
    for (int p = 0; p < probes; p++) {
        cs_probe_vector(seed, p, CS_PROBE_RADEMACHER, n, v);
        st = A(ctx, v, y, err);
        if (st) {
            cs_err_prefix(err, "Hutchinson probe %d", p);
            goto out;
        }
        double s = cblas_ddot(n, v, 1, y, 1);
        if (!isfinite(s)) {
            st = cs_fail(err, CS_ERR_RUNTIME,
                         "Hutchinson probe %d: the operator returned non-finite values", p);
            goto out;
        }
        double delta = s - mean;
        mean += delta / (p + 1);
        m2 += delta * (s - mean);
        if (diag)
            for (int i = 0; i < n; i++)
                diag[i] += v[i] * y[i];
    }
    if (diag)
        for (int i = 0; i < n; i++)
            diag[i] /= probes;
    *trace = mean;
    if (stderr_out)
        *stderr_out = probes > 1 ? sqrt(m2 / (probes - 1) / probes) : NAN;
out:
    free(v);
    free(y);
    return st;
}
