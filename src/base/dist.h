/* Data parallelism across processes (doc/design.md §2.12): the one seam
 * between curvscope and MPI.  Library code calls cs_dist_* and never MPI;
 * built without MPI (configure --without-mpi, or none found) or started
 * without mpirun, there is one rank, every reduction is a no-op and the
 * agreements just return the local status.
 *
 * Errors: every collective here first agrees on a status across the
 * ranks (the first failing rank's status and message win, broadcast to
 * all), and only then moves data.  A rank that failed calls the next
 * collective with its failure, so all ranks learn of it at the same
 * point and return it; from then on the failure is sticky: every later
 * collective returns it at once without communicating, so ranks that
 * have stopped at different places never wait on each other. */
#ifndef CS_BASE_DIST_H
#define CS_BASE_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

/* Start MPI when the process was started by mpirun (Open MPI's or a PMI
 * launcher's environment variables are set), else stay one rank.  Call
 * once, first thing in main after cs_threads_startup (its exec must come
 * before MPI starts). */
cs_status cs_dist_init(int *argc, char ***argv, cs_err *err) CS_MUST_CHECK;
/* End MPI if cs_dist_init started it. */
void cs_dist_finalize(void);

int cs_dist_rank(void);       /* 0 .. size-1; 0 without MPI */
int cs_dist_size(void);       /* ranks in the job; 1 without MPI */
int cs_dist_local_size(void); /* ranks on this machine (a shared-memory split); 1 without MPI */

/* Rank `rank`'s contiguous slice [*lo, *hi) of n samples: the first
 * n % size ranks take one more, in rank order, so the concatenation of
 * the slices is 0 .. n-1, the single-process order. */
void cs_dist_slice(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* Agree on st across the ranks: CS_OK when every rank passed CS_OK, else
 * the first failing rank's status, with its message in *err on every
 * rank. */
cs_status cs_dist_agree(cs_status st, cs_err *err) CS_MUST_CHECK;

/* After agreeing on st (above): x[0..n) becomes the sum over the ranks of
 * their x, the same on all ranks (a failure leaves x as it was). */
cs_status cs_dist_sum_f64(cs_status st, double *x, int64_t n, cs_err *err) CS_MUST_CHECK;
cs_status cs_dist_sum_f32(cs_status st, float *x, int64_t n, cs_err *err) CS_MUST_CHECK;
cs_status cs_dist_sum_i64(cs_status st, int64_t *x, int64_t n, cs_err *err) CS_MUST_CHECK;
/* After agreeing on st: bytes of buf from rank root to all ranks. */
cs_status cs_dist_bcast(cs_status st, void *buf, size_t bytes, int root, cs_err *err) CS_MUST_CHECK;
/* After agreeing on st: wait for every rank. */
cs_status cs_dist_barrier(cs_status st, cs_err *err) CS_MUST_CHECK;

#endif
