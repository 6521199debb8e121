/* OpenMP helpers for kernels whose elements are independent: they split a
 * loop into one contiguous slice per thread, so results do not depend on
 * the thread count (--threads).  Without OpenMP everything runs on one
 * thread. */
#ifndef CS_BASE_PARALLEL_H
#define CS_BASE_PARALLEL_H

#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Below this many elements a kernel stays on one thread: starting the
 * OpenMP team costs more than it saves. */
#define CS_OMP_MIN_ELEMS 32768

static inline int cs_omp_thread(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Threads a parallel region may get (per-thread scratch is sized by it). */
static inline int cs_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* The calling thread's contiguous slice [*lo, *hi) of [0, n): all of it
 * outside a parallel region. */
static inline void cs_omp_slice(int64_t n, int64_t *lo, int64_t *hi)
{
#ifdef _OPENMP
    int64_t t = omp_get_thread_num(), k = omp_get_num_threads();
    *lo = n * t / k;
    *hi = n * (t + 1) / k;
#else
    *lo = 0;
    *hi = n;
#endif
}

#endif
