#include "config.h"

#include "tensor/blas.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* --threads: the OpenMP team of curvscope's own kernels.  OpenBLAS stays on
 * one thread, because its threads spin while those kernels run and the two
 * teams then fight over the cores (the bundled CNN's forward and backward:
 * 0.28 s with both at 2 threads, 0.22 s with BLAS at 1 and OpenMP at 2);
 * only Cholesky inverses of order 512 and more (cs_blas_wide) get the
 * whole team, outside any parallel region, while the OpenMP threads sleep
 * (their wait policy is passive: base/parallel.h). */
static int team = 1;

static void openblas_threads(int n)
{
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    openblas_set_num_threads(n);
#else
    (void)n;
#endif
}

void cs_blas_set_threads(int n)
{
    if (n <= 0)
        return;
    team = n;
    openblas_threads(1);
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

void cs_blas_wide(bool on)
{
    if (team > 1)
        openblas_threads(on ? team : 1);
}
