/* Private to src/store: the prepared statements and the two ways every
 * insert function writes (one row, or many rows that share their leading
 * columns).  Not installed, not included outside src/store. */
#ifndef CS_STORE_STORE_INTERNAL_H
#define CS_STORE_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* One prepared statement per insert (store.c's stmt_defs holds the SQL). */
enum stmt_id {
    ST_RUN_BEGIN,
    ST_RUN_END,
    ST_CONVENTION,
    ST_LAYER,
    ST_PARAM,
    ST_CURVATURE,
    ST_SPECTRUM,
    ST_LANCZOS,
    ST_RITZ,
    ST_PRUNE,
    ST_IMP_UNIT,
    ST_EIGVEC,
    ST_DENSITY,
    ST_REPR_COMPARISON,
    ST_KFAC_FACTOR,
    ST_IMPORTANCE,
    ST_STEP_DIAG,
    ST_FINETUNE_STEP,
    ST_FINETUNE_EVAL,
    ST_NOISE_SCALE,
    ST_COMPARISON,
    ST_COMPARISON_METHOD,
    ST_COMPARISON_EPOCH,
    ST_FINETUNE_PENALTY,
    ST_HESSIAN_TRACE,
    ST_QUANT_SENS,
    ST_QUANT_ALLOC,
    ST_QUANT_RESULT,
    ST_LAPLACE_FIT,
    ST_LAPLACE_PRIOR,
    ST_LAPLACE_PREDICTIVE,
    ST_INFLUENCE_SCORE,
    ST_INFLUENCE_SELF,
    ST_INFLUENCE_VALIDATION,
    ST_INFLUENCE_LOO,
    ST_INFLUENCE_LDS,
    ST_PARAM_PART,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_COUNT
};

/* One bound value.  COL_COUNT: negative is NULL (unknown counts, and
 * layer -1, the whole network); COL_REAL: NaN is NULL; COL_TEXT: NULL is
 * NULL, the text is copied by SQLite. */
typedef enum store_col_kind { COL_INT, COL_COUNT, COL_REAL, COL_TEXT } store_col_kind;
typedef struct store_col {
    store_col_kind kind;
    int64_t i;
    double f;
    const char *t;
} store_col;

#define SC_INT(v) ((store_col){.kind = COL_INT, .i = (v)})
#define SC_COUNT(v) ((store_col){.kind = COL_COUNT, .i = (v)})
#define SC_REAL(v) ((store_col){.kind = COL_REAL, .f = (v)})
#define SC_TEXT(v) ((store_col){.kind = COL_TEXT, .t = (v)})

/* A column of many rows: value i of an array.  'f': doubles (a NULL array
 * stores NULL), 'b': ints stored as 0 / 1 (a NULL array stores 0), 'u':
 * ints where a negative value or a NULL array stores NULL. */
typedef struct store_array {
    char kind;
    const void *v;
} store_array;

/* Rows i = 0..n-1 of one statement: the fixed columns first (bound once,
 * as reset keeps bindings), then, when indexed, first + i, then the
 * arrays' element i.  A failed row is named "insert WHAT<first + i>WHERE". */
typedef struct store_rows {
    const store_col *fixed;
    int n_fixed;
    bool indexed;
    int64_t first;
    const store_array *arrays;
    int n_arrays;
    const char *what, *where;
} store_rows;

/* Insert one row of n columns; a failure is named by fmt. */
cs_status store_insert_row(cs_store *s, enum stmt_id id, const store_col *cols, int n, cs_err *err,
                           const char *fmt, ...) CS_PRINTF(6, 7) CS_MUST_CHECK;
/* Insert n rows (none for n <= 0) in a savepoint: all of them or none. */
cs_status store_insert_rows(cs_store *s, enum stmt_id id, const store_rows *rows, int64_t n,
                            cs_err *err) CS_MUST_CHECK;

/* The rowid of the last row inserted through s (an INTEGER PRIMARY KEY). */
int64_t store_last_rowid(const cs_store *s);

/* conventions rows key = kv[i][0], value = kv[i][1] for i < n, in order,
 * up to the first failure. */
cs_status store_put_conventions(cs_store *s, int64_t run_id, const char *const (*kv)[2], size_t n,
                                cs_err *err) CS_MUST_CHECK;

/* ---- shared by store.c and schema.c (sqlite3 handles) ---- */
struct sqlite3;

/* One line "cannot OP in 'PATH': sqlite's message[ (os error)][ hint]"
 * with the cs_status of SQLite's code rc. */
cs_status store_db_fail(struct sqlite3 *db, const char *path, cs_err *err, int rc, const char *fmt, ...)
    CS_PRINTF(5, 6);
/* *out = the first column of the one row of sql. */
cs_status store_query_int(struct sqlite3 *db, const char *path, const char *sql, int64_t *out, cs_err *err);
/* Run sql; a failure names `what`. */
cs_status store_exec_sql(struct sqlite3 *db, const char *path, const char *sql, const char *what, cs_err *err);
/* A curvscope database (or an empty file: *fresh), and its schema version. */
cs_status store_check_identity(struct sqlite3 *db, const char *path, int readonly, int *fresh, int64_t *version,
                               cs_err *err);
/* The schema of a new file, in one transaction. */
cs_status store_apply_schema(struct sqlite3 *db, const char *path, cs_err *err);
/* A write-lock probe of an existing file: read-only files fail here, before any work. */
cs_status store_probe_writable(struct sqlite3 *db, const char *path, cs_err *err);
/* Bring an older file to CS_STORE_SCHEMA_VERSION in one transaction. */
cs_status store_upgrade_schema(struct sqlite3 *db, const char *path, cs_err *err);

#endif
