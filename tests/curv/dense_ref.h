/* Dense reference computations for the curvature tests, written here
 * independently of LAPACK: Gauss-Jordan inversion, cyclic Jacobi
 * eigen-solves, and the relative error the tests compare with. */
#ifndef CS_TESTS_CURV_DENSE_REF_H
#define CS_TESTS_CURV_DENSE_REF_H

#include <math.h>
#include <stdlib.h>

/* max |a_i - b_i| / max |b_i| (the absolute error when b is zero). */
static inline double rel_err(const double *a, const double *b, long n)
{
    double e = 0, s = 0;
    for (long i = 0; i < n; i++)
        e = fmax(e, fabs(a[i] - b[i])), s = fmax(s, fabs(b[i]));
    return s > 0 ? e / s : e;
}

/* Inverse of the n x n matrix a (overwritten) into inv, with partial
 * pivoting; returns 0 when singular. */
static inline int gauss_jordan(double *a, double *inv, long n)
{
    for (long i = 0; i < n * n; i++)
        inv[i] = 0;
    for (long i = 0; i < n; i++)
        inv[i * n + i] = 1;
    for (long c = 0; c < n; c++) {
        long p = c;
        for (long r = c + 1; r < n; r++)
            if (fabs(a[r * n + c]) > fabs(a[p * n + c]))
                p = r;
        if (a[p * n + c] == 0)
            return 0;
        for (long k = 0; k < n; k++) {
            double t = a[c * n + k];
            a[c * n + k] = a[p * n + k];
            a[p * n + k] = t;
            t = inv[c * n + k];
            inv[c * n + k] = inv[p * n + k];
            inv[p * n + k] = t;
        }
        double d = a[c * n + c];
        for (long k = 0; k < n; k++) {
            a[c * n + k] /= d;
            inv[c * n + k] /= d;
        }
        for (long r = 0; r < n; r++) {
            if (r == c)
                continue;
            double f = a[r * n + c];
            for (long k = 0; k < n; k++) {
                a[r * n + k] -= f * a[c * n + k];
                inv[r * n + k] -= f * inv[c * n + k];
            }
        }
    }
    return 1;
}

/* Eigen-decomposition of the symmetric n x n A (destroyed) by cyclic Jacobi
 * rotations: Q (n x n) gets the eigenvectors in its columns, w the
 * eigenvalues (unsorted). */
static inline void jacobi_eigen(double *A, long n, double *Q, double *w)
{
    for (long i = 0; i < n * n; i++)
        Q[i] = 0;
    for (long i = 0; i < n; i++)
        Q[i * n + i] = 1;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (long p = 0; p < n; p++) {
            diag += A[p * n + p] * A[p * n + p];
            for (long q = p + 1; q < n; q++)
                off += A[p * n + q] * A[p * n + q];
        }
        if (off <= 1e-32 * diag || off < 1e-300)
            break;
        for (long p = 0; p < n; p++)
            for (long q = p + 1; q < n; q++) {
                if (fabs(A[p * n + q]) < 1e-300)
                    continue;
                double th = (A[q * n + q] - A[p * n + p]) / (2 * A[p * n + q]);
                double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1)), c = 1 / sqrt(t * t + 1), sn = t * c;
                for (long k = 0; k < n; k++) { /* A = J^T A J */
                    double akp = A[k * n + p], akq = A[k * n + q];
                    A[k * n + p] = c * akp - sn * akq, A[k * n + q] = sn * akp + c * akq;
                }
                for (long k = 0; k < n; k++) {
                    double apk = A[p * n + k], aqk = A[q * n + k];
                    A[p * n + k] = c * apk - sn * aqk, A[q * n + k] = sn * apk + c * aqk;
                }
                for (long k = 0; k < n; k++) {
                    double qkp = Q[k * n + p], qkq = Q[k * n + q];
                    Q[k * n + p] = c * qkp - sn * qkq, Q[k * n + q] = sn * qkp + c * qkq;
                }
            }
    }
    for (long i = 0; i < n; i++)
        w[i] = A[i * n + i];
}

/* M = Q f(L) Q^T for the symmetric M (in place); f gets each eigenvalue,
 * the largest |eigenvalue| and arg. */
static inline void jacobi_matrix_function(double *M, long n, double (*fn)(double x, double xmax, const void *arg),
                                          const void *arg)
{
    double *Q = malloc(sizeof(double) * (size_t)(n * n)), *w = malloc(sizeof(double) * (size_t)n), wmax = 0;
    jacobi_eigen(M, n, Q, w);
    for (long i = 0; i < n; i++)
        wmax = fmax(wmax, fabs(w[i]));
    for (long i = 0; i < n; i++)
        w[i] = fn(w[i], wmax, arg);
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++) {
            double v = 0;
            for (long k = 0; k < n; k++)
                v += Q[i * n + k] * w[k] * Q[j * n + k];
            M[i * n + j] = v;
        }
    free(Q);
    free(w);
}

#endif
