/* src/spectral/lanczos: Lanczos with full reorthogonalisation, power
 * iteration, stochastic Lanczos quadrature and Hutchinson's estimators, on
 * explicit symmetric matrices A = Q diag(lambda) Q^T with known spectra
 * (Q orthogonal from Gram-Schmidt of a seeded Gaussian matrix), the product
 * being one dgemv.  Statistical checks use fixed seeds and state their
 * tolerances in standard errors. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "base/rng.h"
#include "spectral/dense.h"
#include "spectral/lanczos.h"
#include "tensor/blas.h"

/* ---------------------------------------------------------------- matrices */

typedef struct mat {
    int n;
    double *a;      /* [n][n] row-major, exactly symmetric */
    double *lambda; /* [n] true eigenvalues, descending */
    double *q;      /* [n][n] row k = unit eigenvector of lambda[k] */
    int calls;      /* products done */
} mat;

static cs_status matvec(void *ctx, const double *v, double *y, cs_err *err)
{
    mat *m = ctx;
    m->calls++;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, m->n, m->n, 1.0, m->a, m->n, v, 1, 0.0, y, 1);
    return CS_OK;
}

/* Rows of q: an orthonormal basis from modified Gram-Schmidt, applied twice,
 * of the rows of a seeded Gaussian matrix. */
static void random_orthogonal(int n, uint64_t seed, double *q)
{
    cs_rng r;
    cs_rng_seed(&r, seed);
    for (long i = 0; i < (long)n * n; i++)
        q[i] = cs_rng_normal(&r);
    for (int k = 0; k < n; k++) {
        double *qk = q + (long)k * n;
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < k; j++) {
                double *qj = q + (long)j * n;
                cblas_daxpy(n, -cblas_ddot(n, qj, 1, qk, 1), qj, 1, qk, 1);
            }
        cblas_dscal(n, 1.0 / cblas_dnrm2(n, qk, 1), qk, 1);
    }
}

/* A = sum_k lambda_k q_k q_k^T with lambda sorted descending (copied). */
static mat make_mat(int n, const double *lambda, uint64_t seed)
{
    mat m = {.n = n};
    m.a = malloc(sizeof(double) * n * n);
    m.q = malloc(sizeof(double) * n * n);
    m.lambda = malloc(sizeof(double) * n);
    double *b = malloc(sizeof(double) * n * n);
    memcpy(m.lambda, lambda, sizeof(double) * n);
    cs_sort_desc(m.lambda, n);
    random_orthogonal(n, seed, m.q);
    for (int k = 0; k < n; k++)
        for (int j = 0; j < n; j++)
            b[(long)k * n + j] = m.lambda[k] * m.q[(long)k * n + j];
    /* A = Q^T (diag(lambda) Q)   [n][n] */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, n, 1.0, m.q, n, b, n, 0.0, m.a, n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) {
            double s = 0.5 * (m.a[(long)i * n + j] + m.a[(long)j * n + i]);
            m.a[(long)i * n + j] = m.a[(long)j * n + i] = s;
        }
    free(b);
    return m;
}

static void free_mat(mat *m)
{
    free(m->a);
    free(m->q);
    free(m->lambda);
}

static double amax_of(const double *v, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m = fmax(m, fabs(v[i]));
    return m;
}

/* The spectrum used by most checks (n = 200): an isolated top eigenvalue
 * with a close neighbour (10, 9.9: a cluster), gaps down to 6, a bulk of
 * 185 in [-1, 2], and below a cluster -3.8, -3.9 between gapped ones. */
static void spectrum_a(int n, double *lambda)
{
    static const double top[] = {10.0, 9.9, 9.0, 7.0, 6.0};
    static const double bottom[] = {-3.0, -3.8, -3.9, -4.2, -5.0};
    int bulk = n - 10;
    for (int i = 0; i < 5; i++) {
        lambda[i] = top[i];
        lambda[n - 5 + i] = bottom[i];
    }
    for (int i = 0; i < bulk; i++)
        lambda[5 + i] = 2.0 - 3.0 * i / (bulk - 1);
}

/* ||A y - theta y|| computed with one more product. */
static double direct_residual(mat *m, const double *y, double theta, double *tmp)
{
    cs_err err = {0};
    if (matvec(m, y, tmp, &err))
        return NAN;
    cblas_daxpy(m->n, -theta, y, 1, tmp, 1);
    return cblas_dnrm2(m->n, tmp, 1);
}

/* max |V V^T - I| over the k rows of V (k x n). */
static double ortho_error(const double *v, int k, int n)
{
    double e = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j <= i; j++) {
            double d = cblas_ddot(n, v + (long)i * n, 1, v + (long)j * n, 1);
            e = fmax(e, fabs(d - (i == j)));
        }
    return e;
}

/* ---------------------------------------------------------------- Lanczos */

static void test_lanczos_extremes(void)
{
    enum { N = 200, STEPS = 100 };
    double lam[N];
    spectrum_a(N, lam);
    mat m = make_mat(N, lam, 11);
    const double amax = amax_of(m.lambda, N);

    /* The reference: dsyevd on the same matrix. */
    double *copy = malloc(sizeof(double) * N * N), w[N];
    memcpy(copy, m.a, sizeof(double) * N * N);
    cs_err err = {0};
    cs_status st = cs_sym_eig(copy, N, w, NULL, &err);
    ok(st == CS_OK, "cs_sym_eig of the test matrix (%s)", err.msg);
    free(copy);
    ok(fabs(w[0] - m.lambda[0]) <= 1e-12 * amax && fabs(w[N - 1] - m.lambda[N - 1]) <= 1e-12 * amax,
       "the test matrix has the spectrum it was built with (dsyevd: %.15g .. %.15g)", w[0], w[N - 1]);

    cs_lanczos_opts o = CS_LANCZOS_OPTS_DEFAULT;
    o.steps = STEPS;
    o.want_vectors = 5;
    o.want_bottom = 5;
    cs_lanczos_result r;
    m.calls = 0;
    st = cs_lanczos_ex(matvec, &m, N, NULL, 42, &o, &r, &err);
    if (!ok(st == CS_OK, "Lanczos, %d steps on order %d (%s)", STEPS, N, err.msg)) {
        free_mat(&m);
        return;
    }
    ok(r.steps == STEPS && m.calls == STEPS, "%d steps performed with %d products (got %d, %d)",
       STEPS, STEPS, r.steps, m.calls);

    double e_true = 0, e_eig = 0;
    for (int i = 0; i < 5; i++) {
        int b = r.steps - 1 - i;
        e_true = fmax(e_true, fabs(r.ritz[i] - m.lambda[i]));
        e_true = fmax(e_true, fabs(r.ritz[b] - m.lambda[N - 1 - i]));
        e_eig = fmax(e_eig, fabs(r.ritz[i] - w[i]));
        e_eig = fmax(e_eig, fabs(r.ritz[b] - w[N - 1 - i]));
    }
    diag("top-5 Ritz: %.12g %.12g %.12g %.12g %.12g", r.ritz[0], r.ritz[1], r.ritz[2], r.ritz[3],
         r.ritz[4]);
    ok(e_true <= 1e-6 * amax, "top-5 and bottom-5 Ritz values match the true eigenvalues "
       "(max error %.3g, limit %.3g)", e_true, 1e-6 * amax);
    ok(e_eig <= 1e-6 * amax, "top-5 and bottom-5 Ritz values match dsyevd (max error %.3g)", e_eig);

    int desc = 1;
    for (int i = 1; i < r.steps; i++)
        desc &= r.ritz[i] <= r.ritz[i - 1];
    ok(desc, "Ritz values are in descending order");

    /* Convergence evidence: each of those Ritz values is within its residual
     * of a true eigenvalue (Kahan-Parlett), and the residuals are small. */
    int within = 1;
    double rmax = 0;
    for (int i = 0; i < 10; i++) {
        int k = i < 5 ? i : r.steps - 10 + i;
        double best = INFINITY;
        for (int j = 0; j < N; j++)
            best = fmin(best, fabs(r.ritz[k] - m.lambda[j]));
        within &= best <= r.residual[k] + 1e-12 * amax;
        rmax = fmax(rmax, r.residual[k]);
    }
    ok(within, "every top/bottom Ritz value lies within its residual of an eigenvalue");
    ok(rmax <= 1e-3 * amax, "top/bottom residuals are small (max %.3g)", rmax);

    /* Vectors: top 5 descending then bottom 5 ascending; unit, orthogonal,
     * and their reported residuals equal the directly computed ones. */
    ok(r.n_vectors == 10 && r.vectors, "10 Ritz vectors formed (got %d)", r.n_vectors);
    double tmp[N], res_err = 0;
    for (int v = 0; v < r.n_vectors; v++) {
        int k = v < 5 ? v : r.steps - 1 - (v - 5);
        double d = direct_residual(&m, r.vectors + (long)v * N, r.ritz[k], tmp);
        res_err = fmax(res_err, fabs(d - r.residual[k]) / (1e-8 * r.residual[k] + 1e-12 * amax));
    }
    ok(res_err <= 1, "converged pairs: reported residuals match ||A y - theta y|| "
       "(worst error / (1e-8 rel + 1e-12 abs) = %.3g)", res_err);
    double oe = ortho_error(r.vectors, r.n_vectors, N);
    ok(oe < 1e-10, "Ritz vectors are unit-norm and orthogonal (max |Y Y^T - I| = %.3g)", oe);
    double align = 0;
    for (int v = 0; v < 5; v++)
        align = fmax(align, 1 - fabs(cblas_ddot(N, r.vectors + (long)v * N, 1, m.q + (long)v * N, 1)));
    ok(align < 1e-8, "top Ritz vectors are the true eigenvectors (max 1 - |cos| = %.3g)", align);
    cs_lanczos_result_free(&r);

    /* Few steps: nothing has converged, so the residual formula is tested
     * at sizes well above rounding. */
    o.steps = 20;
    o.want_vectors = 20;
    o.want_bottom = 0;
    st = cs_lanczos_ex(matvec, &m, N, NULL, 43, &o, &r, &err);
    ok(st == CS_OK && r.n_vectors == 20, "Lanczos, 20 steps with all 20 Ritz vectors (%s)", err.msg);
    if (st == CS_OK) {
        double worst = 0, rmin = INFINITY, rbig = 0;
        for (int k = 0; k < r.steps; k++) {
            double d = direct_residual(&m, r.vectors + (long)k * N, r.ritz[k], tmp);
            worst = fmax(worst, fabs(d - r.residual[k]) / (1e-8 * r.residual[k] + 1e-12 * amax));
            rmin = fmin(rmin, r.residual[k]);
            rbig = fmax(rbig, r.residual[k]);
        }
        ok(worst <= 1 && rbig > 0.1,
           "20 steps: |beta_m s_mi| = ||A y - theta y|| for residuals from %.3g to %.3g "
           "(worst error / (1e-8 rel + 1e-12 abs) = %.3g)", rmin, rbig, worst);
        cs_lanczos_result_free(&r);
    }
    free_mat(&m);
}

static void test_lanczos_orthogonality(void)
{
    enum { N = 200, STEPS = 150 };
    double lam[N];
    spectrum_a(N, lam);
    mat m = make_mat(N, lam, 12);
    cs_lanczos_opts o = CS_LANCZOS_OPTS_DEFAULT;
    o.steps = STEPS;
    o.keep_basis = 1;
    cs_lanczos_result r;
    cs_err err = {0};
    cs_status st = cs_lanczos_ex(matvec, &m, N, NULL, 7, &o, &r, &err);
    ok(st == CS_OK && r.basis && r.steps == STEPS, "Lanczos %d steps keeping the basis (%s)",
       STEPS, err.msg);
    if (st == CS_OK) {
        double e = ortho_error(r.basis, r.steps, N);
        ok(e < 1e-10, "full reorthogonalisation: max |Q^T Q - I| over %d steps = %.3g < 1e-10",
           r.steps, e);
        /* Q^T A Q = T: the basis and the coefficients belong together. */
        double *aq = malloc(sizeof(double) * N), te = 0;
        for (int j = 0; j < r.steps; j++) {
            cblas_dgemv(CblasRowMajor, CblasNoTrans, N, N, 1.0, m.a, N, r.basis + (long)j * N, 1,
                        0.0, aq, 1);
            for (int i = 0; i < r.steps; i++) {
                double t = cblas_ddot(N, r.basis + (long)i * N, 1, aq, 1);
                double want = i == j ? r.alpha[i] : i == j + 1 || j == i + 1 ? r.beta[i < j ? i : j] : 0;
                te = fmax(te, fabs(t - want));
            }
        }
        free(aq);
        ok(te < 1e-10 * amax_of(m.lambda, N), "Q^T A Q equals the tridiagonal T (max error %.3g)",
           te);
        cs_lanczos_result_free(&r);
    }

    /* Plain Lanczos on the same run loses orthogonality once the top pair
     * converges (Paige): the check above is able to fail. */
    o.reorth_passes = 0;
    st = cs_lanczos_ex(matvec, &m, N, NULL, 7, &o, &r, &err);
    if (st == CS_OK) {
        double e = ortho_error(r.basis, r.steps, N);
        int ghosts = 0;
        for (int i = 0; i < r.steps; i++)
            ghosts += fabs(r.ritz[i] - 10.0) < 1e-6;
        ok(e > 1e-3 && ghosts > 1,
           "without reorthogonalisation the basis is not orthogonal (%.3g) and lambda = 10 "
           "appears %d times",
           e, ghosts);
        cs_lanczos_result_free(&r);
    } else {
        ok(0, "plain Lanczos ran (%s)", err.msg);
    }
    free_mat(&m);
}

static void test_lanczos_early_stop(void)
{
    enum { N = 60 };
    double lam[N];
    for (int i = 0; i < N; i++)
        lam[i] = i < 20 ? 3.0 : i < 45 ? 1.0 : -2.0;
    mat m = make_mat(N, lam, 13);
    cs_lanczos_result r;
    cs_err err = {0};
    m.calls = 0;
    cs_status st = cs_lanczos(matvec, &m, N, NULL, 5, 30, 3, &r, &err);
    ok(st == CS_OK, "Lanczos on a matrix with 3 distinct eigenvalues (%s)", err.msg);
    if (st != CS_OK) {
        free_mat(&m);
        return;
    }
    ok((r.steps == 3 || r.steps == 4) && m.calls == r.steps,
       "stops early on the invariant subspace: %d steps of 30 (%d products)", r.steps, m.calls);
    ok(r.beta[r.steps - 1] <= 1e-12 * 3.0, "the last beta is at rounding level (%.3g)",
       r.beta[r.steps - 1]);
    static const double want[3] = {3.0, 1.0, -2.0};
    int found[3] = {0}, all_exact = 1;
    for (int i = 0; i < r.steps; i++) {
        int hit = 0;
        for (int k = 0; k < 3; k++)
            if (fabs(r.ritz[i] - want[k]) < 1e-10) {
                found[k] = 1;
                hit = 1;
            }
        all_exact &= hit;
    }
    ok(all_exact && found[0] && found[1] && found[2],
       "Ritz values are exactly 3, 1, -2 (%.15g %.15g %.15g)", r.ritz[0], r.ritz[1],
       r.ritz[r.steps - 1]);
    ok(amax_of(r.residual, r.steps) < 1e-10, "all residuals vanish (max %.3g)",
       amax_of(r.residual, r.steps));
    ok(r.n_vectors == 3, "3 Ritz vectors formed (got %d)", r.n_vectors);
    cs_lanczos_result_free(&r);

    /* From an eigenvector: one step, the eigenvalue. */
    st = cs_lanczos(matvec, &m, N, m.q + 30L * N, 5, 10, 1, &r, &err);
    ok(st == CS_OK && r.steps == 1 && fabs(r.ritz[0] - 1.0) < 1e-12,
       "started on an eigenvector: 1 step and its eigenvalue (%d, %.15g)", r.steps,
       st == CS_OK ? r.ritz[0] : NAN);
    if (st == CS_OK)
        cs_lanczos_result_free(&r);

    free_mat(&m);
}

static void test_lanczos_cap_and_zero(void)
{
    enum { N = 8 };
    double lam[N] = {4, 3, 2, 1, 0.5, -1, -2, -3};
    mat m = make_mat(N, lam, 14);
    cs_lanczos_result r;
    cs_err err = {0};
    cs_status st = cs_lanczos(matvec, &m, N, NULL, 1, 50, 0, &r, &err);
    int good = st == CS_OK && r.steps <= N;
    double e = 0;
    if (good && r.steps == N)
        for (int i = 0; i < N; i++)
            e = fmax(e, fabs(r.ritz[i] - m.lambda[i]));
    ok(good && r.steps == N && e < 1e-12,
       "50 steps on order 8 are capped at 8 and give the whole spectrum (%d, err %.3g)",
       good ? r.steps : -1, e);
    if (st == CS_OK)
        cs_lanczos_result_free(&r);

    /* The zero operator: one step, theta = 0, no division by zero. */
    memset(m.a, 0, sizeof(double) * N * N);
    st = cs_lanczos(matvec, &m, N, NULL, 1, 5, 1, &r, &err);
    ok(st == CS_OK && r.steps == 1 && r.ritz[0] == 0 && r.residual[0] == 0,
       "the zero operator stops after one step with theta 0");
    if (st == CS_OK)
        cs_lanczos_result_free(&r);
    free_mat(&m);
}

static void test_lanczos_determinism(void)
{
    enum { N = 120 };
    double lam[N];
    spectrum_a(N, lam);
    mat m = make_mat(N, lam, 15);
    cs_lanczos_result a, b, c;
    cs_err err = {0};
    cs_status s1 = cs_lanczos(matvec, &m, N, NULL, 99, 40, 3, &a, &err);
    cs_status s2 = cs_lanczos(matvec, &m, N, NULL, 99, 40, 3, &b, &err);
    cs_status s3 = cs_lanczos(matvec, &m, N, NULL, 100, 40, 3, &c, &err);
    if (!ok(s1 == CS_OK && s2 == CS_OK && s3 == CS_OK, "three Lanczos runs (%s)", err.msg))
        goto out;
    int same = a.steps == b.steps && !memcmp(a.alpha, b.alpha, sizeof(double) * a.steps) &&
               !memcmp(a.beta, b.beta, sizeof(double) * a.steps) &&
               !memcmp(a.ritz, b.ritz, sizeof(double) * a.steps) &&
               !memcmp(a.residual, b.residual, sizeof(double) * a.steps) &&
               !memcmp(a.vectors, b.vectors, sizeof(double) * 3 * N);
    ok(same, "same seed, same bits (alpha, beta, Ritz values, residuals, vectors)");
    ok(memcmp(a.alpha, c.alpha, sizeof(double) * a.steps) != 0,
       "another seed gives another start vector and other coefficients");
out:
    if (s1 == CS_OK)
        cs_lanczos_result_free(&a);
    if (s2 == CS_OK)
        cs_lanczos_result_free(&b);
    if (s3 == CS_OK)
        cs_lanczos_result_free(&c);
    free_mat(&m);
}

/* ---------------------------------------------------------------- errors */

typedef struct failing {
    mat *m;
    int fail_at; /* product number that fails */
    int nan_at;  /* product number that returns NaN */
    int calls;
} failing;

static cs_status failing_matvec(void *ctx, const double *v, double *y, cs_err *err)
{
    failing *f = ctx;
    f->calls++;
    if (f->calls == f->fail_at)
        return cs_fail(err, CS_ERR_IO, "data file vanished");
    cs_status st = matvec(f->m, v, y, err);
    if (f->calls == f->nan_at)
        y[0] = NAN;
    return st;
}

static void test_errors(void)
{
    enum { N = 30 };
    double lam[N];
    for (int i = 0; i < N; i++)
        lam[i] = i;
    mat m = make_mat(N, lam, 16);
    cs_lanczos_result r;
    cs_slq_result s;
    cs_err err = {0};
    double zero[N] = {0}, t, se;

    ok(cs_lanczos(matvec, &m, N, NULL, 1, 0, 0, &r, &err) == CS_ERR_USAGE, "0 steps: usage (%s)",
       err.msg);
    ok(cs_lanczos(matvec, &m, 0, NULL, 1, 5, 0, &r, &err) == CS_ERR_USAGE, "order 0: usage (%s)",
       err.msg);
    ok(cs_lanczos(matvec, &m, N, zero, 1, 5, 0, &r, &err) == CS_ERR_USAGE,
       "zero start vector: usage (%s)", err.msg);
    ok(cs_slq(matvec, &m, N, 0, 5, 1, &s, &err) == CS_ERR_USAGE, "0 probes: usage (%s)", err.msg);
    ok(cs_hutchinson(matvec, &m, N, 0, 1, &t, &se, NULL, &err) == CS_ERR_USAGE,
       "Hutchinson with 0 probes: usage (%s)", err.msg);
    int it;
    ok(cs_power_iteration(matvec, &m, N, 1, 0, 1e-6, &t, NULL, &it, &err) == CS_ERR_USAGE,
       "power iteration with 0 iterations: usage (%s)", err.msg);

    failing f = {.m = &m, .fail_at = 4};
    cs_status st = cs_lanczos(failing_matvec, &f, N, NULL, 1, 10, 2, &r, &err);
    ok(st == CS_ERR_IO && strstr(err.msg, "Lanczos step 4") && strstr(err.msg, "vanished") &&
           r.alpha == NULL,
       "a failing product stops Lanczos with its status and says where (%s)", err.msg);
    f = (failing){.m = &m, .fail_at = 13};
    st = cs_slq(failing_matvec, &f, N, 3, 5, 1, &s, &err);
    ok(st == CS_ERR_IO && strstr(err.msg, "SLQ probe 2") && s.nodes == NULL,
       "a failing product stops SLQ in probe 2 (%s)", err.msg);
    f = (failing){.m = &m, .nan_at = 3};
    st = cs_lanczos(failing_matvec, &f, N, NULL, 1, 10, 0, &r, &err);
    ok(st == CS_ERR_RUNTIME && strstr(err.msg, "non-finite"), "NaN from the operator: runtime (%s)",
       err.msg);
    f = (failing){.m = &m, .nan_at = 2};
    st = cs_hutchinson(failing_matvec, &f, N, 5, 1, &t, &se, NULL, &err);
    ok(st == CS_ERR_RUNTIME, "NaN in Hutchinson: runtime (%s)", err.msg);
    f = (failing){.m = &m, .fail_at = 2};
    st = cs_power_iteration(failing_matvec, &f, N, 1, 50, 1e-9, &t, NULL, &it, &err);
    ok(st == CS_ERR_IO && strstr(err.msg, "power iteration 2"), "a failing product in power "
       "iteration (%s)", err.msg);
    free_mat(&m);
}

/* ---------------------------------------------------------------- power */

static void test_power(void)
{
    enum { N = 80 };
    double lam[N], vec[N], tmp[N], lambda;
    int iters;
    cs_err err = {0};

    /* Largest magnitude positive: 10, next |-6| (ratio 0.6). */
    for (int i = 0; i < N; i++)
        lam[i] = -6.0 + 11.0 * i / (N - 2);
    lam[N - 1] = 10.0;
    mat m = make_mat(N, lam, 21);
    cs_status st = cs_power_iteration(matvec, &m, N, 3, 5000, 1e-12, &lambda, vec, &iters, &err);
    ok(st == CS_OK && fabs(lambda - 10.0) <= 1e-9 * 10 && iters < 5000,
       "power iteration finds lambda = 10 (%.15g after %d iterations)", lambda, iters);
    double res = direct_residual(&m, vec, lambda, tmp);
    ok(fabs(cblas_dnrm2(N, vec, 1) - 1) < 1e-12 && res < 1e-4,
       "its vector is a unit eigenvector (||A v - lambda v|| = %.3g)", res);
    free_mat(&m);

    /* Largest magnitude negative: -12, next 8 (ratio 2/3). */
    for (int i = 0; i < N; i++)
        lam[i] = -5.0 + 13.0 * i / (N - 2);
    lam[N - 1] = -12.0;
    m = make_mat(N, lam, 22);
    st = cs_power_iteration(matvec, &m, N, 3, 5000, 1e-12, &lambda, vec, &iters, &err);
    ok(st == CS_OK && fabs(lambda + 12.0) <= 1e-9 * 12 && iters < 5000,
       "power iteration finds the negative lambda = -12 (%.15g after %d iterations)", lambda,
       iters);
    res = direct_residual(&m, vec, lambda, tmp);
    ok(res < 1e-4, "its vector is an eigenvector of -12 (residual %.3g)", res);

    m.calls = 0;
    st = cs_power_iteration(matvec, &m, N, 3, 4, 1e-12, &lambda, NULL, &iters, &err);
    ok(st == CS_OK && iters == 4 && m.calls == 4,
       "max_iters bounds the products (4 iterations, %d products, lambda %.6g)", m.calls, lambda);
    double l2;
    int it2;
    st = cs_power_iteration(matvec, &m, N, 3, 4, 1e-12, &l2, NULL, &it2, &err);
    ok(st == CS_OK && l2 == lambda && it2 == iters, "power iteration is deterministic");
    free_mat(&m);
}

/* ---------------------------------------------------------------- SLQ */

static double tr_sq_over_n(const mat *m)
{
    double s = 0;
    for (int i = 0; i < m->n; i++)
        s += m->lambda[i] * m->lambda[i];
    return s / m->n;
}

static void test_slq(void)
{
    enum { N = 150, PROBES = 200, STEPS = 30 };
    /* 45 negative eigenvalues in [-4, -0.5], 105 positive in [0.5, 12]: a gap
     * around zero, so the quadrature of the sign function is well resolved. */
    double lam[N];
    for (int i = 0; i < 105; i++)
        lam[i] = 0.5 + 11.5 * i / 104.0;
    for (int i = 0; i < 45; i++)
        lam[105 + i] = -0.5 - 3.5 * i / 44.0;
    mat m = make_mat(N, lam, 31);
    double tr = 0;
    for (int i = 0; i < N; i++)
        tr += m.lambda[i];
    const double true_mean = tr / N, true_msq = tr_sq_over_n(&m), true_neg = 45.0 / N;
    const double amax = amax_of(m.lambda, N);

    cs_slq_result r;
    cs_err err = {0};
    m.calls = 0;
    cs_status st = cs_slq(matvec, &m, N, PROBES, STEPS, 2024, &r, &err);
    if (!ok(st == CS_OK, "SLQ, %d probes x %d steps (%s)", PROBES, STEPS, err.msg)) {
        free_mat(&m);
        return;
    }
    int all_full = 1;
    for (int p = 0; p < PROBES; p++)
        all_full &= r.n_steps[p] == STEPS;
    ok(r.probes == PROBES && r.steps == STEPS && r.n == N && all_full &&
           m.calls == PROBES * STEPS,
       "shape of the result: %d x %d, every probe ran %d steps (%d products)", r.probes, r.steps,
       STEPS, m.calls);

    /* Per probe: weights sum to 1, and the quadrature moments are exactly
     * the Rayleigh quotients of the probe (Gauss quadrature is exact for
     * degree <= 2m - 1). */
    double v[N], av[N], wsum_err = 0, m1_err = 0, m2_err = 0;
    double s1 = 0, s1sq = 0, s2 = 0, s2sq = 0, sn = 0, snsq = 0;
    for (int p = 0; p < PROBES; p++) {
        double ws = 0, pm1, pm2, pn;
        for (int i = 0; i < r.n_steps[p]; i++)
            ws += r.weights[(long)p * r.steps + i];
        wsum_err = fmax(wsum_err, fabs(ws - 1));
        cs_slq_probe_moments(&r, p, &pm1, &pm2, &pn);
        cs_probe_vector(2024, p, CS_PROBE_RADEMACHER, N, v);
        matvec(&m, v, av, &err);
        double vv = cblas_ddot(N, v, 1, v, 1);
        m1_err = fmax(m1_err, fabs(pm1 - cblas_ddot(N, v, 1, av, 1) / vv));
        m2_err = fmax(m2_err, fabs(pm2 - cblas_ddot(N, av, 1, av, 1) / vv));
        s1 += pm1;
        s1sq += pm1 * pm1;
        s2 += pm2;
        s2sq += pm2 * pm2;
        sn += pn;
        snsq += pn * pn;
    }
    ok(wsum_err < 1e-12, "quadrature weights sum to 1 for every probe (max error %.3g)", wsum_err);
    ok(m1_err < 1e-12 * amax, "per probe sum w theta = v^T A v / v^T v (max error %.3g)", m1_err);
    ok(m2_err < 1e-12 * amax * amax, "per probe sum w theta^2 = ||A v||^2 / v^T v (max error %.3g)",
       m2_err);

    double mean, msq, neg;
    cs_slq_moments(&r, &mean, &msq, &neg);
    double P = PROBES;
    double se1 = sqrt((s1sq - s1 * s1 / P) / (P - 1) / P);
    double se2 = sqrt((s2sq - s2 * s2 / P) / (P - 1) / P);
    double sen = sqrt(fmax(0, (snsq - sn * sn / P) / (P - 1) / P));
    ok(fabs(mean - s1 / P) < 1e-12 * amax && fabs(msq - s2 / P) < 1e-12 * amax * amax &&
           fabs(neg - sn / P) < 1e-12,
       "cs_slq_moments averages the per-probe moments");
    ok(fabs(mean - true_mean) <= 4 * se1, "mean %.6g within 4 standard errors (%.3g) of tr(A)/n %.6g",
       mean, se1, true_mean);
    ok(fabs(msq - true_msq) <= 4 * se2,
       "mean square %.6g within 4 standard errors (%.3g) of tr(A^2)/n %.6g", msq, se2, true_msq);
    /* The negative fraction carries the sampling error (4 standard errors
     * across probes) plus the quadrature's error for a step function, which
     * with the gap [-0.5, 0.5] and 30 nodes is below 0.01. */
    ok(fabs(neg - true_neg) <= 4 * sen + 0.01,
       "negative fraction %.4f close to the true %.4f (limit 4 x %.3g + 0.01)", neg, true_neg, sen);

    /* Density: integrates to 1 over the nodes' range +- 5 sigma. */
    double lo = INFINITY, hi = -INFINITY;
    for (int p = 0; p < PROBES; p++)
        for (int i = 0; i < r.n_steps[p]; i++) {
            lo = fmin(lo, r.nodes[(long)p * r.steps + i]);
            hi = fmax(hi, r.nodes[(long)p * r.steps + i]);
        }
    enum { BINS = 400 };
    const double sigma = 0.05;
    double edges[BINS + 1], dens[BINS];
    cs_slq_density(&r, lo - 5 * sigma, hi + 5 * sigma, BINS, sigma, edges, dens);
    double width = (hi - lo + 10 * sigma) / BINS, integral = 0, neg_mass = 0, dmin = INFINITY;
    for (int b = 0; b < BINS; b++) {
        integral += dens[b] * width;
        dmin = fmin(dmin, dens[b]);
        if (edges[b + 1] <= 0)
            neg_mass += dens[b] * width;
    }
    ok(fabs(integral - 1) < 1e-6, "density integrates to 1 over the nodes +- 5 sigma (%.12f)",
       integral);
    ok(dmin >= 0, "density is nonnegative (min %.3g)", dmin);
    ok(edges[0] == lo - 5 * sigma && edges[BINS] == hi + 5 * sigma &&
           fabs(edges[1] - edges[0] - width) < 1e-12,
       "edges: %d + 1 equal steps from lo to hi", BINS);
    ok(fabs(neg_mass - neg) < 0.01, "density mass below 0 (%.4f) agrees with neg_fraction (%.4f)",
       neg_mass, neg);

    /* A range that cuts the spectrum does not integrate to 1: the check
     * above can fail. */
    cs_slq_density(&r, 0, hi + 5 * sigma, BINS, sigma, edges, dens);
    integral = 0;
    for (int b = 0; b < BINS; b++)
        integral += dens[b] * (hi + 5 * sigma) / BINS;
    ok(fabs(integral - (1 - neg)) < 0.01, "over [0, hi] the mass is 1 - neg_fraction (%.4f)",
       integral);

    /* sigma = 0: the histogram of the nodes, mass exactly 1. */
    cs_slq_density(&r, lo, hi, 50, 0, edges, dens);
    integral = 0;
    for (int b = 0; b < 50; b++)
        integral += dens[b] * (hi - lo) / 50;
    ok(fabs(integral - 1) < 1e-12, "sigma 0 gives the histogram of the nodes, mass %.15f", integral);
    cs_slq_density(&r, 1, 1, 4, sigma, edges, dens);
    ok(isnan(dens[0]) && isnan(dens[3]), "an empty range gives NaN densities");

    /* Broadening is integrated per bin: with bins much wider than sigma a
     * single node at a bin's centre puts all its weight in that bin. */
    {
        int one_steps = 1;
        double one_alpha = 0.5, one_beta = 0, one_node = 0.5, one_w = 1;
        cs_slq_result one = {.probes = 1, .steps = 1, .n_steps = &one_steps, .alpha = &one_alpha,
                             .beta = &one_beta, .nodes = &one_node, .weights = &one_w, .n = 1};
        double e4[5], d4[4];
        cs_slq_density(&one, -1, 3, 4, 0.01, e4, d4);
        ok(fabs(d4[1] - 1) < 1e-15 && d4[0] < 1e-15 && d4[2] < 1e-15,
           "a node with sigma << bin width fills its own bin (%.17g)", d4[1]);
        cs_slq_density(&one, 0.5 + 3 * 0.01, 0.5 + 4 * 0.01, 1, 0.01, e4, d4);
        double want = (0.5 * erfc(3 / M_SQRT2) - 0.5 * erfc(4 / M_SQRT2)) / 0.01;
        ok(fabs(d4[0] - want) < 1e-12 * want,
           "a tail bin keeps its relative accuracy (%.12g vs %.12g)", d4[0], want);
    }

    /* Determinism, and Gaussian probes. */
    cs_slq_result r2;
    st = cs_slq(matvec, &m, N, PROBES, STEPS, 2024, &r2, &err);
    size_t tot = sizeof(double) * PROBES * STEPS;
    ok(st == CS_OK && !memcmp(r.alpha, r2.alpha, tot) && !memcmp(r.beta, r2.beta, tot) &&
           !memcmp(r.nodes, r2.nodes, tot) && !memcmp(r.weights, r2.weights, tot),
       "SLQ: same seed, same bits");
    if (st == CS_OK)
        cs_slq_result_free(&r2);

    /* Probe p is the same whatever the number of probes. */
    st = cs_slq(matvec, &m, N, 3, STEPS, 2024, &r2, &err);
    ok(st == CS_OK && !memcmp(r.alpha, r2.alpha, sizeof(double) * 3 * STEPS),
       "the first 3 of 200 probes equal a 3-probe run");
    if (st == CS_OK)
        cs_slq_result_free(&r2);

    st = cs_slq_ex(matvec, &m, N, PROBES, STEPS, 77, CS_PROBE_GAUSSIAN, &r2, &err);
    if (ok(st == CS_OK, "SLQ with Gaussian probes (%s)", err.msg)) {
        double g1 = 0, g1sq = 0;
        for (int p = 0; p < PROBES; p++) {
            double pm;
            cs_slq_probe_moments(&r2, p, &pm, NULL, NULL);
            g1 += pm;
            g1sq += pm * pm;
        }
        double gse = sqrt((g1sq - g1 * g1 / P) / (P - 1) / P);
        ok(fabs(g1 / P - true_mean) <= 4 * gse,
           "Gaussian probes: mean %.6g within 4 standard errors (%.3g) of tr(A)/n", g1 / P, gse);
        cs_slq_result_free(&r2);
    }

    /* Hutchinson with the same seed uses the same sign vectors: its trace
     * is n times the SLQ mean. */
    double t, se;
    st = cs_hutchinson(matvec, &m, N, PROBES, 2024, &t, &se, NULL, &err);
    ok(st == CS_OK && fabs(t - N * mean) < 1e-10 * fabs(t),
       "Hutchinson trace %.10g = n x SLQ mean %.10g with the same seed", t, N * mean);

    cs_slq_result_free(&r);
    free_mat(&m);
}

static void test_slq_early_stop(void)
{
    enum { N = 40 };
    double lam[N];
    for (int i = 0; i < N; i++)
        lam[i] = i % 2 ? 2.0 : -1.0;
    mat m = make_mat(N, lam, 32);
    cs_slq_result r;
    cs_err err = {0};
    cs_status st = cs_slq(matvec, &m, N, 5, 10, 3, &r, &err);
    if (ok(st == CS_OK, "SLQ on a matrix with eigenvalues 2 and -1 (%s)", err.msg)) {
        int good = 1;
        for (int p = 0; p < 5; p++) {
            good &= r.n_steps[p] == 2 || r.n_steps[p] == 3;
            for (int i = r.n_steps[p]; i < r.steps; i++)
                good &= r.alpha[p * r.steps + i] == 0 && r.nodes[p * r.steps + i] == 0 &&
                        r.weights[p * r.steps + i] == 0;
        }
        ok(good, "every probe stops after 2 (or 3) steps, the unused tail is zero");
        int exact = 1;
        for (int p = 0; p < 5; p++)
            for (int i = 0; i < r.n_steps[p]; i++) {
                double t = r.nodes[p * r.steps + i];
                exact &= fabs(t - 2) < 1e-10 || fabs(t + 1) < 1e-10;
            }
        ok(exact, "its nodes are exactly the eigenvalues 2 and -1");
        cs_slq_result_free(&r);
    }
    free_mat(&m);
}

/* ---------------------------------------------------------------- Hutchinson */

static void test_hutchinson(void)
{
    enum { N = 60 };
    cs_err err = {0};
    double t, se, d[N];

    /* Diagonal: v^T D v = tr D for every sign vector. */
    mat dm = {.n = N};
    dm.a = calloc(N * N, sizeof(double));
    double trd = 0;
    for (int i = 0; i < N; i++) {
        dm.a[i * N + i] = sin(1.0 + i) * 3;
        trd += dm.a[i * N + i];
    }
    cs_status st = cs_hutchinson(matvec, &dm, N, 7, 5, &t, &se, d, &err);
    double de = 0;
    for (int i = 0; i < N; i++)
        de = fmax(de, fabs(d[i] - dm.a[i * N + i]));
    ok(st == CS_OK && fabs(t - trd) < 1e-12 * N && se < 1e-12 && de < 1e-15,
       "diagonal matrix: trace exact (%.15g vs %.15g), stderr %.3g, diagonal exact (%.3g)", t,
       trd, se, de);
    free(dm.a);

    double lam[N];
    for (int i = 0; i < N; i++)
        lam[i] = -2.0 + 5.0 * i / (N - 1);
    mat m = make_mat(N, lam, 41);
    double tr = 0, offsq = 0;
    for (int i = 0; i < N; i++) {
        tr += m.a[i * N + i];
        for (int j = 0; j < N; j++)
            if (j != i)
                offsq += m.a[i * N + j] * m.a[i * N + j];
    }
    /* Across seeds: within 4 standard errors, and the standard error is
     * calibrated against the exact sqrt(2 sum_{i != j} A_ij^2 / P) (within
     * 30% for 100 probes), so "within 4 stderr" means what it says. */
    enum { P = 100 };
    const double exact_se = sqrt(2 * offsq / P);
    for (uint64_t seed = 1; seed <= 5; seed++) {
        st = cs_hutchinson(matvec, &m, N, P, seed, &t, &se, NULL, &err);
        ok(st == CS_OK && fabs(t - tr) <= 4 * se && fabs(se / exact_se - 1) < 0.3,
           "seed %d: trace %.5g vs %.5g, stderr %.3g (exact %.3g)", (int)seed, t, tr, se,
           exact_se);
    }
    double t1, se1;
    st = cs_hutchinson(matvec, &m, N, 1, 1, &t1, &se1, NULL, &err);
    ok(st == CS_OK && isnan(se1), "one probe: stderr is NaN");
    double ta, tb;
    st = cs_hutchinson(matvec, &m, N, 20, 9, &ta, &se, NULL, &err);
    cs_status st2 = cs_hutchinson(matvec, &m, N, 20, 9, &tb, &se, NULL, &err);
    ok(st == CS_OK && st2 == CS_OK && ta == tb, "Hutchinson: same seed, same bits");

    /* Diagonal estimate: entry i has variance sum_{j != i} A_ij^2 / P, so
     * the standardised errors z_i have mean square ~1 (allowed 0.5-1.6 over
     * 60 entries) and none beyond 5; the RMS error falls ~4x from 125 to
     * 2000 probes (allowed >= 2.5x). */
    double rms[2];
    static const int probes[2] = {125, 2000};
    for (int k = 0; k < 2; k++) {
        st = cs_hutchinson(matvec, &m, N, probes[k], 123, &t, &se, d, &err);
        double zsq = 0, zmax = 0, esq = 0;
        for (int i = 0; i < N; i++) {
            double off = 0;
            for (int j = 0; j < N; j++)
                if (j != i)
                    off += m.a[i * N + j] * m.a[i * N + j];
            double e = d[i] - m.a[i * N + i], z = e / sqrt(off / probes[k]);
            zsq += z * z;
            zmax = fmax(zmax, fabs(z));
            esq += e * e;
        }
        rms[k] = sqrt(esq / N);
        ok(st == CS_OK && zsq / N > 0.5 && zsq / N < 1.6 && zmax < 5,
           "diagonal estimate, %d probes: mean z^2 %.3f, max |z| %.2f, RMS error %.3g", probes[k],
           zsq / N, zmax, rms[k]);
    }
    ok(rms[0] / rms[1] > 2.5, "diagonal estimate converges like 1/sqrt(P) (RMS ratio %.2f, "
       "expected 4)", rms[0] / rms[1]);
    free_mat(&m);
}

/* ---------------------------------------------------------------- probes */

static void test_probes(void)
{
    double a[64], b[64], c[64];
    cs_probe_vector(5, 3, CS_PROBE_RADEMACHER, 64, a);
    cs_probe_vector(5, 3, CS_PROBE_RADEMACHER, 64, b);
    cs_probe_vector(5, 4, CS_PROBE_RADEMACHER, 64, c);
    int signs = 1, sum = 0;
    for (int i = 0; i < 64; i++) {
        signs &= a[i] == 1 || a[i] == -1;
        sum += a[i] > 0;
    }
    ok(signs && sum > 16 && sum < 48, "Rademacher probes are +-1 and balanced (%d of 64 positive)",
       sum);
    ok(!memcmp(a, b, sizeof a) && memcmp(a, c, sizeof a),
       "probe (seed, p) is reproducible and differs from probe p + 1");
    cs_probe_vector(6, 3, CS_PROBE_RADEMACHER, 64, c);
    ok(memcmp(a, c, sizeof a) != 0, "another seed gives another probe");
}

int main(void)
{
    test_probes();
    test_lanczos_extremes();
    test_lanczos_orthogonality();
    test_lanczos_early_stop();
    test_lanczos_cap_and_zero();
    test_lanczos_determinism();
    test_errors();
    test_power();
    test_slq();
    test_slq_early_stop();
    test_hutchinson();
    return tap_done();
}
