/* OpenBLAS (CBLAS) and LAPACKE, in one include.  Dense work goes here:
 * sgemm/dgemm for Gemm, MatMul and Conv (im2col), syrk for Gram matrices,
 * syevd/potrf for eigen-solves and inverses. */
#ifndef CS_TENSOR_BLAS_H
#define CS_TENSOR_BLAS_H

#include <cblas.h>
#include <lapacke.h>

/* Threads used by BLAS (0 keeps the library default). */
void cs_blas_set_threads(int n);

#endif
