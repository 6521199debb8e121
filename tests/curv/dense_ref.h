/* Dense reference computations for the curvature tests, written here
 * independently of LAPACK: Gauss-Jordan inversion. */
#ifndef CS_TESTS_CURV_DENSE_REF_H
#define CS_TESTS_CURV_DENSE_REF_H

#include <math.h>

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

#endif
