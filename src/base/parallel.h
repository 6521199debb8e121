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

/* The most threads --threads gives (more are cut to this). */
#define CS_MAX_THREADS 256

/* The cores this process may run on (its affinity mask, sched_getaffinity;
 * the online count where that fails), at most CS_MAX_THREADS: the default
 * of --threads. */
int cs_cores_available(void);

/* The OpenMP wait policy curvscope runs with unless OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT is set (doc/design.md §2.11 has the measurements). */
#define CS_OMP_WAIT_POLICY "PASSIVE"

/* First thing in main(), before any OpenMP call: where neither variable is
 * set and more than one core is available, sets OMP_WAIT_POLICY to
 * CS_OMP_WAIT_POLICY and execs the program again (/proc/self/exe, same
 * argv), because libgomp has read its environment before main runs.
 * Returns when nothing needs doing or the exec failed.  Under gdb or
 * valgrind the exec leaves the tool behind: set OMP_WAIT_POLICY there. */
void cs_threads_startup(char **argv);

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
