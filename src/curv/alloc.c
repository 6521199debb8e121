#include "curv/alloc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static long fail_countdown; /* 0: off */
static void (*tally_record)(void *ctx, const char *what, size_t bytes);
static void *tally_ctx;

void cs_curv_alloc_tally(void (*record)(void *ctx, const char *what, size_t bytes), void *ctx)
{
    tally_record = record;
    tally_ctx = record ? ctx : NULL;
}

int cs_curv_alloc_tallying(void)
{
    return tally_record != NULL;
}

void cs_curv_alloc_fail_after(long n)
{
    fail_countdown = n > 0 ? n : 0;
}

int cs_curv_alloc_fail_pending(void)
{
    return fail_countdown > 0;
}

cs_status cs_curv_alloc(void **out, size_t count, size_t size, cs_alloc_mode mode, cs_err *err,
                        const char *what, ...)
{
    bool overflow = size && count > SIZE_MAX / size;
    size_t bytes = overflow ? SIZE_MAX : count * size;
    bool hooked = fail_countdown > 0 && --fail_countdown == 0;
    void *p = NULL;
    if (tally_record) {
        char name[160];
        va_list ap;
        va_start(ap, what);
        vsnprintf(name, sizeof name, what, ap);
        va_end(ap);
        tally_record(tally_ctx, name, bytes);
        if (bytes > CS_CURV_TALLY_REAL) {
            if (mode == CS_ALLOC_GROW)
                free(*out);
            *out = NULL;
            if (!(*out = malloc(1)))
                return cs_fail(err, CS_ERR_NOMEM, "out of memory for a planned buffer's stand-in");
            return CS_OK;
        }
        if (mode == CS_ALLOC_TOUCHED)
            mode = CS_ALLOC_ZERO; /* nothing of the plan's is timed */
    }
    if (!overflow && !hooked) {
        switch (mode) {
        case CS_ALLOC_RAW: p = malloc(bytes ? bytes : 1); break;
        case CS_ALLOC_ZERO:
        case CS_ALLOC_TOUCHED: p = calloc(bytes ? count : 1, bytes ? size : 1); break;
        case CS_ALLOC_GROW: p = realloc(*out, bytes ? bytes : 1); break;
        }
    }
    if (p) {
        for (size_t i = 0; mode == CS_ALLOC_TOUCHED && i < bytes; i += 4096)
            ((volatile char *)p)[i] = 0;
        *out = p;
        return CS_OK;
    }
    if (mode != CS_ALLOC_GROW)
        *out = NULL;
    char name[160];
    va_list ap;
    va_start(ap, what);
    vsnprintf(name, sizeof name, what, ap);
    va_end(ap);
    double kib = (double)bytes / 1024.0;
    if (kib < 1024.0)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory: %.1f KiB for %s", kib, name);
    return cs_fail(err, CS_ERR_NOMEM, "out of memory: %.1f MiB for %s", kib / 1024.0, name);
}
