/* Checked allocations of the curvature engine and its representations.
 *
 * Every buffer the engine plans goes through these, so that "not
 * requested" (a NULL the planner chose) and "allocation failed" (a
 * CS_ERR_NOMEM error) never meet: a failed allocation is an error whose
 * message names what was asked for and its size, e.g.
 * "out of memory: 12.3 MiB for the ggn full block of layer 'fc1'". */
#ifndef CS_CURV_ALLOC_H
#define CS_CURV_ALLOC_H

#include <stddef.h>

#include "base/status.h"

/* *out = malloc(bytes) (at least one byte), or CS_ERR_NOMEM naming `what`
 * (printf format).  The caller owns *out and frees it with free(). */
cs_status cs_curv_malloc(void **out, size_t bytes, cs_err *err, const char *what, ...) CS_PRINTF(4, 5)
    CS_MUST_CHECK;

/* *p = realloc(*p, bytes); on failure *p is left as it was. */
cs_status cs_curv_realloc(void **p, size_t bytes, cs_err *err, const char *what, ...) CS_PRINTF(4, 5)
    CS_MUST_CHECK;

/* n zeroed doubles (at least one). */
cs_status cs_curv_zalloc(double **out, size_t n, cs_err *err, const char *what, ...) CS_PRINTF(4, 5)
    CS_MUST_CHECK;

/* cs_curv_zalloc with its pages touched here, for the K-FAC factors and row
 * buffers: calloc maps large blocks lazily, and first touches from the
 * threads of factor_syrk at once contend in the kernel's page-fault path
 * (a fresh 785 x 785 factor: 19 ms with 2 threads, 2 ms touched first on
 * this project's machine). */
cs_status cs_curv_zalloc_touched(double **out, size_t n, cs_err *err, const char *what, ...) CS_PRINTF(4, 5)
    CS_MUST_CHECK;

/* Test hook, off by default: the n-th checked allocation from now fails
 * (once); 0 turns the hook off.  cs_curv_alloc_fail_pending says whether
 * the armed failure has not fired yet.  Not thread-safe: the engine only
 * allocates on the calling thread. */
void cs_curv_alloc_fail_after(long n);
int cs_curv_alloc_fail_pending(void);

#endif
