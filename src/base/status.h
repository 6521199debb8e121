/* Status codes and error messages.
 *
 * Every fallible function returns a cs_status (CS_OK == 0) and, on failure,
 * fills the caller's cs_err with one line saying what went wrong and where.
 * Library code never prints and never exits; src/cli turns the status into a
 * message on stderr and an exit code (cs_status_exit_code).
 *
 * Who owns what a function takes and returns follows the one rule of
 * base/ownership.h (borrows / consumes / owned, freed with the type's
 * x_free), included here so that every header that reports errors has it
 * in view. */
#ifndef CS_BASE_STATUS_H
#define CS_BASE_STATUS_H

#include <stddef.h>

#include "base/ownership.h"

#if defined(__GNUC__)
#define CS_MUST_CHECK __attribute__((warn_unused_result))
#define CS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CS_MUST_CHECK
#define CS_PRINTF(f, a)
#endif

typedef enum cs_status {
    CS_OK = 0,
    CS_ERR_IO,          /* a file could not be opened, read or written */
    CS_ERR_FORMAT,      /* malformed input: ONNX, data file, arguments */
    CS_ERR_UNSUPPORTED, /* valid input that curvscope does not handle */
    CS_ERR_SHAPE,       /* shapes or types that do not fit together */
    CS_ERR_USAGE,       /* bad command line */
    CS_ERR_NOMEM,       /* allocation failed or a size is absurd */
    CS_ERR_RUNTIME,     /* anything else that went wrong while computing */
    CS_STATUS_COUNT
} cs_status;

#define CS_ERR_MSG_MAX 512

typedef struct cs_err {
    cs_status code;
    char msg[CS_ERR_MSG_MAX];
} cs_err;

/* Record an error in err (may be NULL) and return code, so a failing path
 * reads `return cs_fail(err, CS_ERR_FORMAT, "...", ...);`. */
cs_status cs_fail(cs_err *err, cs_status code, const char *fmt, ...) CS_PRINTF(3, 4);

/* Prefix the message already in err with "context: " (for adding where). */
cs_status cs_err_prefix(cs_err *err, const char *fmt, ...) CS_PRINTF(2, 3);

void cs_err_clear(cs_err *err);

/* Short stable name of a status ("format", "io", ...). */
const char *cs_status_name(cs_status s);

/* Process exit code for a status: 0 ok, 2 bad input or usage, 1 otherwise. */
int cs_status_exit_code(cs_status s);

/* Checked size arithmetic: return 0 and store the result, or 1 on overflow. */
int cs_mul_overflow_i64(long long a, long long b, long long *out);

#endif
