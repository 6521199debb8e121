/* Checked allocations of the curvature engine and its representations.
 *
 * Every buffer the engine plans goes through cs_curv_alloc, so that "not
 * requested" (a NULL the planner chose) and "allocation failed" (a
 * CS_ERR_NOMEM error) never meet: a failed allocation is an error whose
 * message names what was asked for and its size, e.g.
 * "out of memory: 12.3 MiB for the ggn full block of layer 'fc1'". */
#ifndef CS_CURV_ALLOC_H
#define CS_CURV_ALLOC_H

#include <stddef.h>

#include "base/status.h"

typedef enum cs_alloc_mode {
    CS_ALLOC_RAW,     /* malloc: contents undefined */
    CS_ALLOC_ZERO,    /* calloc */
    /* calloc with its pages touched here, for the K-FAC factors and row
     * buffers: calloc maps large blocks lazily, and first touches from the
     * threads of factor_syrk at once contend in the kernel's page-fault
     * path (a fresh 785 x 785 factor: 19 ms with 2 threads, 2 ms touched
     * first on this project's machine). */
    CS_ALLOC_TOUCHED,
    CS_ALLOC_GROW     /* realloc of *out; on failure *out is left as it was */
} cs_alloc_mode;

/* *out = count elements of size bytes (at least one byte), or CS_ERR_NOMEM
 * naming `what` (printf format) and the size.  The caller owns *out and
 * frees it with free(). */
cs_status cs_curv_alloc(void **out, size_t count, size_t size, cs_alloc_mode mode, cs_err *err,
                        const char *what, ...) CS_PRINTF(6, 7) CS_MUST_CHECK;

/* The common forms: bytes of raw memory, n zeroed doubles (touched or
 * not), count zeroed elements. */
#define cs_curv_malloc(out, bytes, err, ...) cs_curv_alloc((void **)(out), (bytes), 1, CS_ALLOC_RAW, (err), __VA_ARGS__)
#define cs_curv_zalloc(out, n, err, ...) \
    cs_curv_alloc((void **)(out), (n), sizeof(double), CS_ALLOC_ZERO, (err), __VA_ARGS__)
#define cs_curv_zalloc_touched(out, n, err, ...) \
    cs_curv_alloc((void **)(out), (n), sizeof(double), CS_ALLOC_TOUCHED, (err), __VA_ARGS__)
#define cs_curv_calloc(out, count, err, ...) \
    cs_curv_alloc((void **)(out), (count), sizeof **(out), CS_ALLOC_ZERO, (err), __VA_ARGS__)

/* Test hook, off by default: the n-th checked allocation from now fails
 * (once); 0 turns the hook off.  cs_curv_alloc_fail_pending says whether
 * the armed failure has not fired yet.  Not thread-safe: the engine only
 * allocates on the calling thread. */
void cs_curv_alloc_fail_after(long n);
int cs_curv_alloc_fail_pending(void);

/* Tally mode, for the memory plan (curv/mem_plan.h): while a recorder is
 * set, every checked allocation calls record(ctx, what, bytes) with its
 * formatted name and size instead of failing for want of memory.  What is
 * small (up to CS_CURV_TALLY_REAL bytes: the tables of structs and
 * pointers the plan hooks fill in) is allocated for real; a larger buffer
 * gets a 1-byte stand-in that the caller frees as usual and must not
 * write: plan hooks leave their accumulators as calloc made them, or skip
 * what they would write when cs_curv_alloc_tallying() says so.  record
 * NULL turns tally mode off.  Not thread-safe, like the failure hook. */
#define CS_CURV_TALLY_REAL ((size_t)1 << 20)
void cs_curv_alloc_tally(void (*record)(void *ctx, const char *what, size_t bytes), void *ctx);
int cs_curv_alloc_tallying(void);

#endif
