/* Dense references shared by the preconditioner tests (finetune's and
 * analyze's, one registry): built from explicit matrices with the Jacobi
 * rotations of tests/curv/dense_ref.h, independent of LAPACK. */
#ifndef CS_TESTS_PRECOND_REF_H
#define CS_TESTS_PRECOND_REF_H

#include <math.h>
#include <stdlib.h>

#include "../curv/dense_ref.h"

/* (x + damping)^-1/4, damping in *arg */
static inline double ref_inv_fourth(double x, double xmax, const void *arg)
{
    (void)xmax;
    return pow(x + *(const double *)arg, -0.25);
}

/* Shampoo after one observed gradient matrix V [dG, dA]: L = V V^T,
 * R = V^T V and D = (L + lambda I)^-1/4 V (R + lambda I)^-1/4 (Gupta, Koren
 * & Singer 2018).  Returns |D|_F^2 (for grafting). */
static inline double shampoo_ref(const double *V, long dG, long dA, double lambda, double *D)
{
    double *L = calloc((size_t)(dG * dG), sizeof(double)), *R = calloc((size_t)(dA * dA), sizeof(double));
    for (long i = 0; i < dG; i++)
        for (long j = 0; j < dG; j++)
            for (long t = 0; t < dA; t++)
                L[i * dG + j] += V[i * dA + t] * V[j * dA + t];
    for (long i = 0; i < dA; i++)
        for (long j = 0; j < dA; j++)
            for (long t = 0; t < dG; t++)
                R[i * dA + j] += V[t * dA + i] * V[t * dA + j];
    jacobi_matrix_function(L, dG, ref_inv_fourth, &lambda);
    jacobi_matrix_function(R, dA, ref_inv_fourth, &lambda);
    double nd = 0;
    for (long a = 0; a < dG; a++)
        for (long b = 0; b < dA; b++) {
            double v = 0;
            for (long c = 0; c < dG; c++)
                for (long d = 0; d < dA; d++)
                    v += L[a * dG + c] * V[c * dA + d] * R[d * dA + b];
            D[a * dA + b] = v;
            nd += v * v;
        }
    free(L), free(R);
    return nd;
}

#endif
