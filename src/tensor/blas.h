/* OpenBLAS (CBLAS) and LAPACKE, in one include.  Dense work goes here:
 * sgemm/dgemm for Gemm, MatMul and Conv (im2col), syrk for Gram matrices,
 * syevd/potrf for eigen-solves and inverses. */
#ifndef CS_TENSOR_BLAS_H
#define CS_TENSOR_BLAS_H

#include <stdbool.h>

#include <cblas.h>
#include <lapacke.h>

/* --threads n: n OpenMP threads for curvscope's kernels, one BLAS thread
 * (blas.c says why); 0 keeps the defaults. */
void cs_blas_set_threads(int n);
/* Around one large dense operation outside the kernels' parallel loops
 * whose result does not depend on BLAS's thread count (a Cholesky inverse
 * of order >= 512): BLAS gets the whole team, then one thread again. */
void cs_blas_wide(bool on);

#endif
