/* What the machine and this process use of memory, from Linux's /proc
 * (with portable fallbacks): the default of a memory limit and the peak
 * a run reports. */
#ifndef CS_BASE_MEMINFO_H
#define CS_BASE_MEMINFO_H

#include <stdint.h>

/* Memory a new allocation can get without swapping: MemAvailable of
 * /proc/meminfo (the kernel's estimate, page cache it can drop included);
 * free physical pages (sysconf) where that file is absent; -1 when
 * neither is known. */
int64_t cs_mem_available_bytes(void);

/* The most resident memory this process has held so far (VmHWM of
 * /proc/self/status; getrusage's ru_maxrss where that is absent); -1 when
 * unknown. */
int64_t cs_mem_peak_bytes(void);

/* Resident memory now (VmRSS); -1 when unknown. */
int64_t cs_mem_resident_bytes(void);

#endif
