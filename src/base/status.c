#include "base/status.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
    [CS_OK] = "ok",
    [CS_ERR_IO] = "io",
    [CS_ERR_FORMAT] = "format",
    [CS_ERR_UNSUPPORTED] = "unsupported",
    [CS_ERR_SHAPE] = "shape",
    [CS_ERR_USAGE] = "usage",
    [CS_ERR_NOMEM] = "nomem",
    [CS_ERR_RUNTIME] = "runtime",
};
static_assert(sizeof status_names / sizeof status_names[0] == CS_STATUS_COUNT,
              "status_names must name every cs_status");

cs_status cs_fail(cs_err *err, cs_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

cs_status cs_err_prefix(cs_err *err, const char *fmt, ...)
{
    if (!err)
        return CS_ERR_RUNTIME;
    char prefix[CS_ERR_MSG_MAX];
    char joined[2 * CS_ERR_MSG_MAX + 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(joined, sizeof joined, "%s: %s", prefix, err->msg);
    memcpy(err->msg, joined, sizeof err->msg - 1);
    err->msg[sizeof err->msg - 1] = '\0';
    return err->code;
}

void cs_err_clear(cs_err *err)
{
    if (err) {
        err->code = CS_OK;
        err->msg[0] = '\0';
    }
}

const char *cs_status_name(cs_status s)
{
    if ((unsigned)s >= CS_STATUS_COUNT)
        return "unknown";
    return status_names[s];
}

int cs_status_exit_code(cs_status s)
{
    switch (s) {
    case CS_OK:
        return 0;
    case CS_ERR_IO:
    case CS_ERR_FORMAT:
    case CS_ERR_UNSUPPORTED:
    case CS_ERR_SHAPE:
    case CS_ERR_USAGE:
        return 2;
    default:
        return 1;
    }
}

int cs_mul_overflow_i64(long long a, long long b, long long *out)
{
    return __builtin_mul_overflow(a, b, out);
}
