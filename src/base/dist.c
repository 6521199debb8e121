/* cs_dist: see dist.h.  The only file that includes <mpi.h>. */
#include "config.h"

#include "base/dist.h"

#include <stdlib.h>
#include <string.h>

#ifdef HAVE_MPI
#include <limits.h>
#include <mpi.h>
#endif

static int dist_rank = 0, dist_size = 1, dist_local = 1;
#ifdef HAVE_MPI
static int dist_started;         /* cs_dist_init called MPI_Init */
#endif
static cs_status dist_failed;    /* the sticky agreed failure (dist.h) */
static cs_err dist_failed_err;

void cs_dist_slice(int64_t n, int rank, int size, int64_t *lo, int64_t *hi)
{
    int64_t q = n / size, r = n % size;
    *lo = rank * q + (rank < r ? rank : r);
    *hi = *lo + q + (rank < r ? 1 : 0);
}

int cs_dist_rank(void)
{
    return dist_rank;
}

int cs_dist_size(void)
{
    return dist_size;
}

int cs_dist_local_size(void)
{
    return dist_local;
}

#ifdef HAVE_MPI
/* Launched by mpirun (Open MPI) or a PMI / PMIx launcher (MPICH's hydra,
 * Slurm).  A plain start stays one rank without touching MPI: a singleton
 * MPI_Init would start Open MPI's runtime for every test's command. */
static int launched_by_mpi(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}
#endif

cs_status cs_dist_init(int *argc, char ***argv, cs_err *err)
{
#ifdef HAVE_MPI
    if (!launched_by_mpi())
        return CS_OK;
    if (MPI_Init(argc, argv) != MPI_SUCCESS)
        return cs_fail(err, CS_ERR_RUNTIME, "MPI_Init failed");
    dist_started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &dist_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &dist_size);
    /* The ranks sharing this machine's memory: its cores are divided
     * among them (--threads' default). */
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_size(node, &dist_local);
        MPI_Comm_free(&node);
    }
    return CS_OK;
#else
    (void)argc;
    (void)argv;
    (void)err;
    return CS_OK;
#endif
}

void cs_dist_finalize(void)
{
#ifdef HAVE_MPI
    if (dist_started)
        MPI_Finalize();
    dist_started = 0;
#endif
}

cs_status cs_dist_agree(cs_status st, cs_err *err)
{
    if (dist_failed) {
        if (err)
            *err = dist_failed_err;
        return dist_failed;
    }
    if (dist_size == 1)
        return st;
#ifdef HAVE_MPI
    /* The lowest failing rank (size when none) ... */
    int mine = st ? dist_rank : dist_size, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == dist_size)
        return CS_OK;
    /* ... sends its status and message to all. */
    cs_err e = {0};
    if (first == dist_rank) {
        if (err)
            e = *err;
        e.code = st;
    }
    MPI_Bcast(&e, (int)sizeof e, MPI_BYTE, first, MPI_COMM_WORLD);
    e.msg[CS_ERR_MSG_MAX - 1] = '\0';
    dist_failed = e.code > CS_OK && e.code < CS_STATUS_COUNT ? e.code : CS_ERR_RUNTIME;
    dist_failed_err = e;
    if (err)
        *err = e;
    return dist_failed;
#else
    return st;
#endif
}

#ifdef HAVE_MPI
/* In-place sum of n elements of type t, in pieces MPI's int count can
 * hold. */
static void sum_in_place(void *x, int64_t n, size_t elem, MPI_Datatype t)
{
    const int64_t piece = INT_MAX / 2;
    for (int64_t at = 0; at < n; at += piece) {
        int64_t k = n - at < piece ? n - at : piece;
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + (size_t)at * elem, (int)k, t, MPI_SUM,
                      MPI_COMM_WORLD);
    }
}
#endif

#ifdef HAVE_MPI
#define DIST_SUM(x, n, type) sum_in_place((x), (n), sizeof *(x), (type))
#else
#define DIST_SUM(x, n, type) ((void)(x), (void)(n))
#endif

cs_status cs_dist_sum_f64(cs_status st, double *x, int64_t n, cs_err *err)
{
    if ((st = cs_dist_agree(st, err)) || dist_size == 1)
        return st;
    DIST_SUM(x, n, MPI_DOUBLE);
    return CS_OK;
}

cs_status cs_dist_sum_f32(cs_status st, float *x, int64_t n, cs_err *err)
{
    if ((st = cs_dist_agree(st, err)) || dist_size == 1)
        return st;
    DIST_SUM(x, n, MPI_FLOAT);
    return CS_OK;
}

cs_status cs_dist_sum_i64(cs_status st, int64_t *x, int64_t n, cs_err *err)
{
    if ((st = cs_dist_agree(st, err)) || dist_size == 1)
        return st;
    DIST_SUM(x, n, MPI_INT64_T);
    return CS_OK;
}

cs_status cs_dist_bcast(cs_status st, void *buf, size_t bytes, int root, cs_err *err)
{
    if ((st = cs_dist_agree(st, err)) || dist_size == 1)
        return st;
#ifdef HAVE_MPI
    const size_t piece = INT_MAX / 2;
    for (size_t at = 0; at < bytes; at += piece) {
        size_t k = bytes - at < piece ? bytes - at : piece;
        MPI_Bcast((char *)buf + at, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
    }
#else
    (void)buf;
    (void)bytes;
    (void)root;
#endif
    return CS_OK;
}

cs_status cs_dist_barrier(cs_status st, cs_err *err)
{
    if ((st = cs_dist_agree(st, err)) || dist_size == 1)
        return st;
#ifdef HAVE_MPI
    MPI_Barrier(MPI_COMM_WORLD);
#endif
    return CS_OK;
}
