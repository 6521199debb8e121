#include "base/meminfo.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The value in kB of the line "KEY: N kB" of a /proc file, in bytes; -1
 * when the file or the line is absent. */
static int64_t proc_kib_field(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    int64_t bytes = -1;
    while (fgets(line, sizeof line, f)) {
        long long kib;
        if (strncmp(line, key, klen) == 0 && line[klen] == ':' && sscanf(line + klen + 1, "%lld", &kib) == 1) {
            bytes = (int64_t)kib * 1024;
            break;
        }
    }
    fclose(f);
    return bytes;
}

int64_t cs_mem_available_bytes(void)
{
    int64_t avail = proc_kib_field("/proc/meminfo", "MemAvailable");
    if (avail >= 0)
        return avail;
#if defined(_SC_AVPHYS_PAGES) && defined(_SC_PAGESIZE)
    long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && size > 0)
        return (int64_t)pages * size;
#endif
    return -1;
}

int64_t cs_mem_peak_bytes(void)
{
    int64_t hwm = proc_kib_field("/proc/self/status", "VmHWM");
    if (hwm >= 0)
        return hwm;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return (int64_t)ru.ru_maxrss * 1024; /* Linux and the BSDs report KiB */
}

int64_t cs_mem_resident_bytes(void)
{
    return proc_kib_field("/proc/self/status", "VmRSS");
}
