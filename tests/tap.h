/* Minimal TAP producer for curvscope's tests (automake's TAP driver reads it).
 *
 * A test program prints one "ok N - name" / "not ok N - name" line per check
 * and the plan "1..N" at the end (tap_done), then exits 0: failures are
 * carried by the "not ok" lines, so automake counts each once. */
#ifndef CS_TESTS_TAP_H
#define CS_TESTS_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_count_;
static int tap_failed_;

static inline void tap_vreport(int pass, const char *fmt, va_list ap)
{
    tap_count_++;
    if (!pass)
        tap_failed_++;
    printf("%sok %d - ", pass ? "" : "not ", tap_count_);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
}

/* ok(cond, "name %d", ...): one check. Returns cond. */
static inline int ok(int pass, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int ok(int pass, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_vreport(pass, fmt, ap);
    va_end(ap);
    return pass;
}

/* skip("reason %s", ...): one skipped check. */
static inline void skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void skip(const char *fmt, ...)
{
    va_list ap;
    tap_count_++;
    printf("ok %d # SKIP ", tap_count_);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* diag("..."): a comment line (shown in the test log). */
static inline void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void diag(const char *fmt, ...)
{
    va_list ap;
    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* Closeness as numpy.isclose: |a - b| <= atol + rtol * |b|; NaN equals NaN. */
static inline int tap_close(double a, double b, double rtol, double atol)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b))
        return a == b;
    return fabs(a - b) <= atol + rtol * fabs(b);
}

/* Print the plan and exit 0 (failures are in the "not ok" lines). */
static inline int tap_done(void)
{
    printf("1..%d\n", tap_count_);
    fflush(stdout);
    return 0;
}

#endif
