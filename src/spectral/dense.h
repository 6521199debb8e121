/* Dense symmetric eigen-solves and spectrum summaries. */
#ifndef CS_SPECTRAL_DENSE_H
#define CS_SPECTRAL_DENSE_H

#include <stdint.h>

#include "base/status.h"

/* Eigenvalues of the symmetric n x n matrix A (row-major, both triangles
 * valid) in descending order into w (n values), by LAPACKE dsyevd.  A is
 * destroyed; with top_vec non-NULL the eigenvector of the largest
 * eigenvalue (unit norm) is written there. */
cs_status cs_sym_eig(double *A, int64_t n, double *w, double *top_vec, cs_err *err) CS_MUST_CHECK;

/* The memory cs_sym_eig (and cs_sym_eigvecs) take beyond A and w for an
 * n x n block: LAPACKE's row-major wrapper transposes A into a copy of its
 * own (n^2 doubles), and dsyevd's workspace is lwork = 1 + 6n + 2n^2
 * doubles and liwork = 3 + 5n integers with eigenvectors, 2n + 1 and 1
 * without (LAPACK's dsyevd documentation; the query asks at least
 * 2n + n nb for the tridiagonal reduction, nb its block size, taken as 32).
 * For the memory plan (curv/mem_plan.h). */
int64_t cs_sym_eig_work_bytes(int64_t n, int vectors);

/* M = Q diag(w) Q^T for the symmetric n x n M (row-major, kept), by
 * LAPACKE dsyevd: Q (n x n) gets the eigenvectors in its columns, w the
 * eigenvalues in ascending order, and *wmax (unless wmax is NULL) max |w_i|,
 * the scale for a relative cut-off of vanishing directions.  Returns
 * LAPACK's info (0 on success). */
int cs_sym_eigvecs(const double *M, int64_t n, double *Q, double *w, double *wmax);

/* Summary numbers of a spectrum given in descending order:
 *   trace       sum of eigenvalues
 *   frobenius   sqrt(sum lambda^2) (the matrix's Frobenius norm)
 *   lambda_max, lambda_min
 *   condition   lambda_max / the smallest eigenvalue above the numerical
 *               zero tol = n * 2^-52 * max|lambda| (NaN when none is
 *               positive); eigenvalues at or below tol are treated as 0
 *   effective_rank  exp(-sum p_i log p_i) with p_i = lambda_i / sum of
 *               the eigenvalues above tol (Roy & Vetterli 2007), over those
 *               eigenvalues only. */
typedef struct cs_spectrum_summary {
    double trace, frobenius, lambda_max, lambda_min, condition, effective_rank;
} cs_spectrum_summary;

void cs_spectrum_summarize(const double *w, int64_t n, cs_spectrum_summary *s);

/* Sort n doubles in descending order. */
void cs_sort_desc(double *v, int64_t n);

#endif
