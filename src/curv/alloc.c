#include "curv/alloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static long fail_countdown; /* 0: off */

void cs_curv_alloc_fail_after(long n)
{
    fail_countdown = n > 0 ? n : 0;
}

int cs_curv_alloc_fail_pending(void)
{
    return fail_countdown > 0;
}

/* Whether the test hook makes this allocation fail. */
static int hook_fails(void)
{
    return fail_countdown > 0 && --fail_countdown == 0;
}

static cs_status nomem(cs_err *err, size_t bytes, const char *what, va_list ap)
{
    char name[160];
    vsnprintf(name, sizeof name, what, ap);
    double kib = (double)bytes / 1024.0;
    if (kib < 1024.0)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory: %.1f KiB for %s", kib, name);
    return cs_fail(err, CS_ERR_NOMEM, "out of memory: %.1f MiB for %s", kib / 1024.0, name);
}

cs_status cs_curv_malloc(void **out, size_t bytes, cs_err *err, const char *what, ...)
{
    *out = hook_fails() ? NULL : malloc(bytes ? bytes : 1);
    if (*out)
        return CS_OK;
    va_list ap;
    va_start(ap, what);
    cs_status st = nomem(err, bytes, what, ap);
    va_end(ap);
    return st;
}

cs_status cs_curv_realloc(void **p, size_t bytes, cs_err *err, const char *what, ...)
{
    void *grown = hook_fails() ? NULL : realloc(*p, bytes ? bytes : 1);
    if (grown) {
        *p = grown;
        return CS_OK;
    }
    va_list ap;
    va_start(ap, what);
    cs_status st = nomem(err, bytes, what, ap);
    va_end(ap);
    return st;
}

/* calloc of n doubles, the size checked for overflow. */
static double *zeroed(size_t n)
{
    if (n > SIZE_MAX / sizeof(double) || hook_fails())
        return NULL;
    return calloc(n ? n : 1, sizeof(double));
}

cs_status cs_curv_zalloc(double **out, size_t n, cs_err *err, const char *what, ...)
{
    if ((*out = zeroed(n)))
        return CS_OK;
    va_list ap;
    va_start(ap, what);
    cs_status st = nomem(err, n * sizeof(double), what, ap);
    va_end(ap);
    return st;
}

cs_status cs_curv_zalloc_touched(double **out, size_t n, cs_err *err, const char *what, ...)
{
    if ((*out = zeroed(n))) {
        for (size_t i = 0; i < n; i += 4096 / sizeof(double))
            ((volatile double *)*out)[i] = 0;
        return CS_OK;
    }
    va_list ap;
    va_start(ap, what);
    cs_status st = nomem(err, n * sizeof(double), what, ap);
    va_end(ap);
    return st;
}
