/* Wall-clock seconds from a monotonic clock, for timings stored with results. */
#ifndef CS_BASE_CLOCK_H
#define CS_BASE_CLOCK_H

#include <time.h>

static inline double cs_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
