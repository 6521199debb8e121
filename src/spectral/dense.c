#include "spectral/dense.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/blas.h"

cs_status cs_sym_eig(double *A, int64_t n, double *w, double *top_vec, cs_err *err)
{
    if (n <= 0)
        return CS_OK;
    if (n > INT32_MAX)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "matrix of order %lld is too large", (long long)n);
    /* dsyevd returns ascending eigenvalues; eigenvectors in A's columns.
     * It runs on the calling thread only: its tridiagonal reduction splits
     * sums over OpenBLAS's threads, so with more of them the last bits
     * depended on --threads (the CNN's fc GGN K-FAC top eigenvalue,
     * ...616 with 1 thread, ...602 with 2), against doc/design.md §2.11. */
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, top_vec ? 'V' : 'N', 'U', (lapack_int)n, A,
                                     (lapack_int)n, w);
    if (info != 0)
        return cs_fail(err, CS_ERR_RUNTIME, "eigen-solve of order %lld failed (LAPACK info %d)",
                       (long long)n, (int)info);
    if (top_vec)
        for (int64_t i = 0; i < n; i++)
            top_vec[i] = A[i * n + (n - 1)];
    for (int64_t i = 0, j = n - 1; i < j; i++, j--) {
        double t = w[i];
        w[i] = w[j];
        w[j] = t;
    }
    return CS_OK;
}

int64_t cs_sym_eig_work_bytes(int64_t n, int vectors)
{
    if (n <= 0)
        return 0;
    int64_t lwork = vectors ? 1 + 6 * n + 2 * n * n : 2 * n + 1, liwork = vectors ? 3 + 5 * n : 1;
    int64_t query = 2 * n + 32 * n;
    if (query > lwork)
        lwork = query;
    return (int64_t)sizeof(double) * (n * n + lwork) + (int64_t)sizeof(lapack_int) * liwork;
}

int cs_sym_eigvecs(const double *M, int64_t n, double *Q, double *w, double *wmax)
{
    memcpy(Q, M, sizeof(double) * (size_t)(n * n));
    /* one thread, as in cs_sym_eig */
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)n, Q, (lapack_int)n, w);
    if (wmax) {
        *wmax = 0;
        for (int64_t i = 0; !info && i < n; i++)
            *wmax = fmax(*wmax, fabs(w[i]));
    }
    return (int)info;
}

void cs_spectrum_summarize(const double *w, int64_t n, cs_spectrum_summary *s)
{
    memset(s, 0, sizeof *s);
    if (n <= 0) {
        s->lambda_max = s->lambda_min = s->condition = s->effective_rank = NAN;
        return;
    }
    double amax = 0, sum_pos = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        s->trace += w[i];
        sq += w[i] * w[i];
        amax = fmax(amax, fabs(w[i]));
    }
    s->frobenius = sqrt(sq);
    s->lambda_max = w[0];
    s->lambda_min = w[n - 1];
    double tol = (double)n * DBL_EPSILON * amax;
    double smallest_pos = NAN;
    for (int64_t i = 0; i < n; i++)
        if (w[i] > tol) {
            sum_pos += w[i];
            smallest_pos = w[i]; /* descending: the last one above tol */
        }
    s->condition = isnan(smallest_pos) || w[0] <= tol ? NAN : w[0] / smallest_pos;
    if (sum_pos > 0) {
        double h = 0;
        for (int64_t i = 0; i < n; i++)
            if (w[i] > tol) {
                double p = w[i] / sum_pos;
                h -= p * log(p);
            }
        s->effective_rank = exp(h);
    } else {
        s->effective_rank = 0;
    }
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

void cs_sort_desc(double *v, int64_t n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_desc);
}
