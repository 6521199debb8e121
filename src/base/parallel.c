#include "config.h"

#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/parallel.h"

int cs_cores_available(void)
{
    /* The affinity mask, not the machine's count: under taskset, cgroups'
     * cpusets or a batch scheduler the process may use fewer cores than
     * the machine has, and more threads than those only time-share them. */
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (int)online : 1;
    }
    return n > CS_MAX_THREADS ? CS_MAX_THREADS : n;
}

void cs_threads_startup(char **argv)
{
    /* libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, in a
     * constructor that runs before main, so a setenv in main comes too
     * late (checked: a PASSIVE set there still spins).  Unless the user
     * chose, the process runs itself again with the policy of
     * doc/design.md §2.11 in its environment; the variable set before the
     * exec keeps the second start from doing it again, and a failed exec
     * just carries on with libgomp's default. */
#ifdef _OPENMP
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || cs_cores_available() < 2)
        return;
    if (setenv("OMP_WAIT_POLICY", CS_OMP_WAIT_POLICY, 0) == 0)
        execv("/proc/self/exe", argv);
#else
    (void)argv;
#endif
}
