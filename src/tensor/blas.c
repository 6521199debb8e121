#include "config.h"

#include "tensor/blas.h"

void cs_blas_set_threads(int n)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    if (n > 0)
        openblas_set_num_threads(n);
#else
    (void)n;
#endif
}
