/* The result database.  See store.h for the contract and schemas/store.sql
 * for the tables.
 *
 * Statements are prepared once per store, on first use, and reset after
 * every row, so writing a spectrum costs one sqlite3_step per eigenvalue.
 * Functions that write several rows wrap them in a savepoint: they nest in
 * the caller's transaction, make the call all-or-nothing, and batch the
 * rows into one commit when there is no outer transaction. */
#include "config.h"

#include "store/store.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

/* How long a writer waits for another connection's lock before giving up. */
#define STORE_BUSY_TIMEOUT_MS 10000

enum stmt_id {
    ST_RUN_BEGIN,
    ST_RUN_END,
    ST_CONVENTION,
    ST_LAYER,
    ST_PARAM,
    ST_CURVATURE,
    ST_EIGENVALUE,
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
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_COUNT
};

/* table: named in error messages; sql: the statement. */
static const struct {
    const char *table;
    const char *sql;
} stmt_defs[] = {
    [ST_RUN_BEGIN] = {"runs",
        "INSERT INTO runs (kind, model_path, model_sha256, data, n_samples, loss, argv, "
        "version, status, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', "
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"},
    [ST_RUN_END] = {"runs",
        "UPDATE runs SET status = ?2, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), "
        "seconds = ?3, peak_rss_bytes = ?4, error = ?5 WHERE id = ?1"},
    [ST_CONVENTION] = {"conventions",
        "INSERT INTO conventions (run_id, key, value) VALUES (?1, ?2, ?3)"},
    [ST_LAYER] = {"layers",
        "INSERT INTO layers (run_id, layer_id, name, op_type, n_params) "
        "VALUES (?1, ?2, ?3, ?4, ?5)"},
    [ST_PARAM] = {"params",
        "INSERT INTO params (run_id, param_id, layer_id, name, shape, numel) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    [ST_CURVATURE] = {"curvature",
        "INSERT INTO curvature (run_id, layer_id, curvature, repr, method, dim, trace, "
        "trace_stderr, frobenius, lambda_max, lambda_min, condition, effective_rank, seconds) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"},
    [ST_EIGENVALUE] = {"eigenvalues",
        "INSERT INTO eigenvalues (run_id, layer_id, curvature, repr, k, value) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    [ST_SPECTRUM] = {"eigenvalues",
        "INSERT INTO eigenvalues (run_id, layer_id, curvature, repr, method, k, value) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
    [ST_LANCZOS] = {"lanczos_coefficients",
        "INSERT INTO lanczos_coefficients (run_id, layer_id, curvature, method, repeat, probe, "
        "step, alpha, beta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
    [ST_RITZ] = {"ritz_values",
        "INSERT INTO ritz_values (run_id, layer_id, curvature, repeat, k, value, residual, "
        "converged) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
    [ST_PRUNE] = {"pruning_curve",
        "INSERT INTO pruning_curve (run_id, score, fraction, n_pruned, loss, accuracy) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    [ST_IMP_UNIT] = {"importance_units",
        "INSERT INTO importance_units (run_id, layer_id, unit, n, obd_sum, obs_sum, taylor_sum, "
        "diag_ggn_sum, diag_fisher_emp_sum, diag_hessian_sum) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"},
    [ST_EIGVEC] = {"eigenvectors",
        "INSERT INTO eigenvectors (run_id, layer_id, curvature, k, param_id, flat_index, value) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
    [ST_DENSITY] = {"density",
        "INSERT INTO density (run_id, layer_id, curvature, lo, hi, density) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    [ST_REPR_COMPARISON] = {"repr_comparison",
        "INSERT INTO repr_comparison (run_id, layer_id, curvature, repr, reference_repr, "
        "rel_frobenius_error, rel_lambda_max_error, rel_trace_error, top_eigvec_alignment) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
    [ST_KFAC_FACTOR] = {"kfac_factors",
        "INSERT INTO kfac_factors (run_id, layer_id, curvature, factor, k, value) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    [ST_IMPORTANCE] = {"importance",
        "INSERT INTO importance (run_id, param_id, flat_index, value, grad, diag_ggn, "
        "diag_fisher_emp, diag_hessian, obd, obs, taylor, unit) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"},
    [ST_STEP_DIAG] = {"step_diagnostics",
        "INSERT INTO step_diagnostics (run_id, precond, damping, layer_id, grad_norm, "
        "step_norm, cosine, predicted_decrease, actual_decrease, rho, best_lr, best_change) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"},
    [ST_FINETUNE_STEP] = {"finetune_steps",
        "INSERT INTO finetune_steps (run_id, epoch, step, loss, accuracy, lr, seconds, "
        "samples_per_sec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
    [ST_FINETUNE_EVAL] = {"finetune_evals",
        "INSERT INTO finetune_evals (run_id, epoch, split, loss, accuracy) "
        "VALUES (?1, ?2, ?3, ?4, ?5)"},
    [ST_SAVEPOINT] = {NULL, "SAVEPOINT cs_rows"},
    [ST_RELEASE] = {NULL, "RELEASE cs_rows"},
    [ST_ROLLBACK_TO] = {NULL, "ROLLBACK TO cs_rows"},
};
static_assert(sizeof stmt_defs / sizeof stmt_defs[0] == ST_COUNT,
              "stmt_defs must define every statement");

struct cs_store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[ST_COUNT]; /* prepared on first use */
};

/* ------------------------------------------------------------- errors */

static cs_status status_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return CS_ERR_NOMEM;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_FORMAT:
        return CS_ERR_FORMAT;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_FULL:
    case SQLITE_PERM:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_PROTOCOL:
    case SQLITE_AUTH:
        return CS_ERR_IO;
    default:
        return CS_ERR_RUNTIME;
    }
}

/* One line: "cannot OP in 'PATH': sqlite's message[ (os error)][ hint]".
 * The operating system's errno is added for I/O failures, where SQLite's
 * own text ("unable to open database file") does not say why. */
static cs_status db_fail(sqlite3 *db, const char *path, cs_err *err, int rc, const char *fmt, ...)
    CS_PRINTF(5, 6);
static cs_status db_fail(sqlite3 *db, const char *path, cs_err *err, int rc, const char *fmt, ...)
{
    char op[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op, sizeof op, fmt, ap);
    va_end(ap);
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    char os[160] = "";
    int sys = db ? sqlite3_system_errno(db) : 0;
    cs_status code = status_of(rc);
    if (code == CS_ERR_IO && sys != 0)
        snprintf(os, sizeof os, " (%s)", strerror(sys));
    const char *hint = "";
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        hint = " (store the run, and the layer or parameter the row names, first)";
    else if ((rc & 0xff) == SQLITE_READONLY)
        hint = " (the file and its directory must be writable: SQLite keeps its journal beside "
               "the file)";
    return cs_fail(err, code, "cannot %s in '%s': %s%s%s", op, path, msg, os, hint);
}

static cs_status store_fail(cs_store *s, cs_err *err, int rc, const char *fmt, ...) CS_PRINTF(4, 5);
static cs_status store_fail(cs_store *s, cs_err *err, int rc, const char *fmt, ...)
{
    char op[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op, sizeof op, fmt, ap);
    va_end(ap);
    return db_fail(s->db, s->path, err, rc, "%s", op);
}

/* ---------------------------------------------------------- statements */

static cs_status stmt_get(cs_store *s, enum stmt_id id, sqlite3_stmt **out, cs_err *err)
{
    if (!s->stmt[id]) {
        int rc = sqlite3_prepare_v3(s->db, stmt_defs[id].sql, -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            s->stmt[id] = NULL;
            return store_fail(s, err, rc, "prepare the statement for %s",
                              stmt_defs[id].table ? stmt_defs[id].table : stmt_defs[id].sql);
        }
    }
    *out = s->stmt[id];
    return CS_OK;
}

/* Binding collects the first failure, so a row's binds read as a list and
 * are checked once. */
typedef struct binder {
    sqlite3_stmt *st;
    int rc;
} binder;

static void bind_i64(binder *b, int i, int64_t v)
{
    if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_int64(b->st, i, v);
}

/* Negative means "unknown" for counts and sizes. */
static void bind_count(binder *b, int i, int64_t v)
{
    if (b->rc == SQLITE_OK)
        b->rc = v < 0 ? sqlite3_bind_null(b->st, i) : sqlite3_bind_int64(b->st, i, v);
}

/* Layer -1 is the whole network, NULL in the tables. */
static void bind_layer(binder *b, int i, int64_t layer_id)
{
    bind_count(b, i, layer_id);
}

static void bind_f64(binder *b, int i, double v)
{
    if (b->rc == SQLITE_OK)
        b->rc = isnan(v) ? sqlite3_bind_null(b->st, i) : sqlite3_bind_double(b->st, i, v);
}

/* Transient: SQLite copies the text, so no binding outlives the caller's
 * string even though reset keeps bindings. */
static void bind_text(binder *b, int i, const char *v)
{
    if (b->rc == SQLITE_OK)
        b->rc = v ? sqlite3_bind_text(b->st, i, v, -1, SQLITE_TRANSIENT)
                  : sqlite3_bind_null(b->st, i);
}

static cs_status bind_check(cs_store *s, const binder *b, enum stmt_id id, cs_err *err)
{
    if (b->rc == SQLITE_OK)
        return CS_OK;
    return store_fail(s, err, b->rc, "bind values for %s", stmt_defs[id].table);
}

/* Step a prepared write to completion and reset it for the next row. */
static cs_status stmt_exec(cs_store *s, sqlite3_stmt *st, cs_err *err, const char *fmt, ...)
    CS_PRINTF(4, 5);
static cs_status stmt_exec(cs_store *s, sqlite3_stmt *st, cs_err *err, const char *fmt, ...)
{
    int rc = sqlite3_step(st);
    cs_status r = CS_OK;
    if (rc != SQLITE_DONE) {
        char op[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(op, sizeof op, fmt, ap);
        va_end(ap);
        /* The message is read before reset, which may replace it. */
        r = store_fail(s, err, sqlite3_extended_errcode(s->db), "%s", op);
    }
    sqlite3_reset(st);
    return r;
}

static cs_status check_layer(cs_store *s, int64_t layer_id, const char *table, cs_err *err)
{
    if (layer_id < -1)
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot insert into %s in '%s': layer_id %lld (must be >= 0, or -1 for "
                       "the whole network)", table, s->path, (long long)layer_id);
    return CS_OK;
}

/* ---------------------------------------------------- multi-row calls */

static cs_status rows_begin(cs_store *s, const char *table, cs_err *err)
{
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_SAVEPOINT, &st, err);
    if (r == CS_OK)
        r = stmt_exec(s, st, err, "start writing %s", table);
    return r;
}

/* Keep the call's rows when r is CS_OK (committing them when no outer
 * transaction is open), undo them otherwise.  Returns the final status. */
static cs_status rows_end(cs_store *s, cs_status r, const char *table, cs_err *err)
{
    sqlite3_stmt *st = NULL;
    if (r == CS_OK) {
        r = stmt_get(s, ST_RELEASE, &st, err);
        if (r == CS_OK)
            r = stmt_exec(s, st, err, "commit rows of %s", table);
        if (r == CS_OK)
            return CS_OK;
    }
    /* Errors below are ignored: after I/O errors SQLite may already have
     * rolled the whole transaction back, taking the savepoint with it. */
    if (stmt_get(s, ST_ROLLBACK_TO, &st, NULL) == CS_OK) {
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    if (stmt_get(s, ST_RELEASE, &st, NULL) == CS_OK) {
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    return r;
}

/* -------------------------------------------------------------- opening */

static cs_status query_int(sqlite3 *db, const char *path, const char *sql, int64_t *out,
                           cs_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK) {
        rc = sqlite3_extended_errcode(db);
        cs_status r;
        if ((rc & 0xff) == SQLITE_NOTADB)
            r = cs_fail(err, CS_ERR_FORMAT, "'%s' is not an SQLite database", path);
        else
            r = db_fail(db, path, err, rc, "open the database");
        sqlite3_finalize(st);
        return r;
    }
    sqlite3_finalize(st);
    return CS_OK;
}

static cs_status exec_sql(sqlite3 *db, const char *path, const char *sql, const char *what,
                          cs_err *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return CS_OK;
    rc = sqlite3_extended_errcode(db);
    cs_status r = db_fail(db, path, err, rc, "%s", what);
    sqlite3_free(msg);
    return r;
}

/* A new database: the schema, then its version and application id, in one
 * transaction, so a file either has all of it or stays empty. */
static cs_status apply_schema(sqlite3 *db, const char *path, cs_err *err)
{
    cs_status r = exec_sql(db, path, "BEGIN IMMEDIATE", "create the schema", err);
    if (r != CS_OK)
        return r;
    char pragmas[128];
    snprintf(pragmas, sizeof pragmas, "PRAGMA application_id = %d; PRAGMA user_version = %d",
             CS_STORE_APPLICATION_ID, CS_STORE_SCHEMA_VERSION);
    r = exec_sql(db, path, cs_store_schema_sql, "create the schema", err);
    if (r == CS_OK)
        r = exec_sql(db, path, pragmas, "set the schema version", err);
    if (r == CS_OK)
        r = exec_sql(db, path, "COMMIT", "create the schema", err);
    if (r != CS_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* sqlite3_open only opens the file; whether the file and its directory
 * (for the journal) can be written shows at the first write.  So write for
 * real: take the write lock, change page 1, and roll back. */
static cs_status probe_writable(sqlite3 *db, const char *path, cs_err *err)
{
    if (sqlite3_db_readonly(db, "main") == 1)
        return cs_fail(err, CS_ERR_IO, "cannot write to '%s': the file is read-only", path);
    char sql[96];
    snprintf(sql, sizeof sql, "BEGIN IMMEDIATE; PRAGMA user_version = %d",
             CS_STORE_SCHEMA_VERSION);
    cs_status r = exec_sql(db, path, sql, "write", err);
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* Identify the file and decide: create the schema (*fresh), use it, or
 * refuse.  Only reads, so a refused file is left as it was. */
static cs_status check_identity(sqlite3 *db, const char *path, int readonly, int *fresh,
                                cs_err *err)
{
    int64_t n_objects = 0, app_id = 0, version = 0;
    cs_status r = query_int(db, path, "SELECT count(*) FROM sqlite_master", &n_objects, err);
    if (r == CS_OK)
        r = query_int(db, path, "PRAGMA application_id", &app_id, err);
    if (r == CS_OK)
        r = query_int(db, path, "PRAGMA user_version", &version, err);
    if (r != CS_OK)
        return r;
    *fresh = 0;
    if (n_objects == 0 && app_id == 0 && version == 0) {
        if (readonly)
            return cs_fail(err, CS_ERR_FORMAT, "'%s' is an empty database, not a curvscope one",
                           path);
        *fresh = 1;
        return CS_OK;
    }
    if (app_id != CS_STORE_APPLICATION_ID) {
        if (app_id != 0)
            return cs_fail(err, CS_ERR_FORMAT,
                           "'%s' is an SQLite database of another application (application_id "
                           "0x%08llx), not a curvscope database",
                           path, (unsigned long long)(uint32_t)app_id);
        return cs_fail(err, CS_ERR_FORMAT,
                       "'%s' is an SQLite database but not a curvscope one (it has %lld schema "
                       "objects and no curvscope mark); give a new file or a curvscope database",
                       path, (long long)n_objects);
    }
    if (version > CS_STORE_SCHEMA_VERSION)
        return cs_fail(err, CS_ERR_FORMAT,
                       "'%s' has schema version %lld, newer than the version %d this curvscope "
                       "(%s) knows: use a newer curvscope, or another database file",
                       path, (long long)version, CS_STORE_SCHEMA_VERSION, PACKAGE_VERSION);
    /* Upgrades from older versions go here when a version 2 exists: each
     * step in one transaction that ends by raising user_version. */
    if (version < CS_STORE_SCHEMA_VERSION)
        return cs_fail(err, CS_ERR_FORMAT,
                       "'%s' has schema version %lld, older than the version %d this curvscope "
                       "writes, and no upgrade from it is known: use a new database file",
                       path, (long long)version, CS_STORE_SCHEMA_VERSION);
    return CS_OK;
}

/* Remove a database this open created, with SQLite's side files, so a
 * failed open leaves no debris. */
static void remove_created(const char *path)
{
    static const char *const suffixes[] = {"", "-journal", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char p[4096];
        if ((size_t)snprintf(p, sizeof p, "%s%s", path, suffixes[i]) < sizeof p)
            unlink(p);
    }
}

static cs_status store_open(const char *path, int readonly, cs_store **out, cs_err *err)
{
    *out = NULL;
    if (!path || !*path)
        return cs_fail(err, CS_ERR_IO, "no database path given");
    int memory = strcmp(path, ":memory:") == 0;
    int existed = 1;
    if (!memory) {
        struct stat sb;
        if (stat(path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode))
                return cs_fail(err, CS_ERR_IO, "cannot use '%s' as a database: it is a directory",
                               path);
            if (!S_ISREG(sb.st_mode))
                return cs_fail(err, CS_ERR_IO,
                               "cannot use '%s' as a database: it is not a regular file", path);
        } else if (errno == ENOENT) {
            if (readonly)
                return cs_fail(err, CS_ERR_IO, "cannot open database '%s': no such file", path);
            existed = 0;
        } else {
            return cs_fail(err, CS_ERR_IO, "cannot open database '%s': %s", path,
                           strerror(errno));
        }
    }

    cs_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory opening '%s'", path);
    }
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    cs_status r = CS_OK;
    if (rc != SQLITE_OK) {
        if (!s->db)
            r = cs_fail(err, CS_ERR_NOMEM, "out of memory opening '%s'", path);
        else
            r = db_fail(s->db, path, err, sqlite3_extended_errcode(s->db),
                        existed ? "open the database" : "create the database");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);

    int fresh = 0;
    r = check_identity(s->db, path, readonly, &fresh, err);
    if (r != CS_OK)
        goto fail;
    if (readonly) {
        *out = s;
        return CS_OK;
    }

    r = exec_sql(s->db, path, "PRAGMA foreign_keys = ON", "enable foreign keys", err);
    if (r != CS_OK)
        goto fail;
    /* WAL lets users query the file while a run writes to it, and keeps an
     * interrupted transaction out of the database file itself.  Where the
     * file system has no shared memory (some network mounts) WAL cannot
     * work and the rollback journal serves; an unwritable location then
     * fails the write probe below with its own message. */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) != SQLITE_OK)
        sqlite3_exec(s->db, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
    /* FULL: a committed run row or result batch survives a power cut, at
     * the cost of one sync per commit; runs commit rarely. */
    r = exec_sql(s->db, path, "PRAGMA synchronous = FULL", "set the sync mode", err);
    if (r == CS_OK)
        r = fresh ? apply_schema(s->db, path, err) : probe_writable(s->db, path, err);
    if (r != CS_OK)
        goto fail;
    *out = s;
    return CS_OK;

fail:
    sqlite3_close(s->db);
    if (!existed && !memory)
        remove_created(path);
    free(s->path);
    free(s);
    return r;
}

cs_status cs_store_open(const char *path, cs_store **out, cs_err *err)
{
    return store_open(path, 0, out, err);
}

cs_status cs_store_open_readonly(const char *path, cs_store **out, cs_err *err)
{
    return store_open(path, 1, out, err);
}

void cs_store_close(cs_store *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    if (s->db && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

const char *cs_store_path(const cs_store *s)
{
    return s->path;
}

/* --------------------------------------------------------- transactions */

int cs_store_in_transaction(const cs_store *s)
{
    return !sqlite3_get_autocommit(s->db);
}

cs_status cs_store_begin(cs_store *s, cs_err *err)
{
    if (cs_store_in_transaction(s))
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot begin a transaction in '%s': one is already open", s->path);
    return exec_sql(s->db, s->path, "BEGIN IMMEDIATE", "begin a transaction", err);
}

cs_status cs_store_commit(cs_store *s, cs_err *err)
{
    if (!cs_store_in_transaction(s))
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot commit in '%s': no transaction is open (it may have been rolled "
                       "back after an earlier error)", s->path);
    return exec_sql(s->db, s->path, "COMMIT", "commit", err);
}

void cs_store_rollback(cs_store *s)
{
    if (s && cs_store_in_transaction(s))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ----------------------------------------------------------------- runs */

cs_status cs_store_run_begin(cs_store *s, const cs_run_info *info, int64_t *run_id, cs_err *err)
{
    *run_id = -1;
    if (!info->kind || (strcmp(info->kind, "analyze") != 0 && strcmp(info->kind, "finetune") != 0))
        return cs_fail(err, CS_ERR_RUNTIME, "cannot begin a run in '%s': kind '%s' (expected "
                       "analyze or finetune)", s->path, info->kind ? info->kind : "(null)");
    if (cs_store_in_transaction(s))
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot begin a run in '%s' inside an open transaction: the run row must "
                       "be committed at once", s->path);
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_RUN_BEGIN, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_text(&b, 1, info->kind);
    bind_text(&b, 2, info->model_path);
    bind_text(&b, 3, info->model_sha256);
    bind_text(&b, 4, info->data);
    bind_count(&b, 5, info->n_samples);
    bind_text(&b, 6, info->loss);
    bind_text(&b, 7, info->argv);
    bind_text(&b, 8, info->version ? info->version : PACKAGE_VERSION);
    if ((r = bind_check(s, &b, ST_RUN_BEGIN, err)) != CS_OK ||
        (r = stmt_exec(s, st, err, "insert into runs")) != CS_OK)
        return r;
    *run_id = sqlite3_last_insert_rowid(s->db);
    return CS_OK;
}

cs_status cs_store_run_end(cs_store *s, int64_t run_id, const char *status, double seconds,
                           int64_t peak_rss_bytes, const char *error, cs_err *err)
{
    int failed = status && strcmp(status, "failed") == 0;
    if (!status || (!failed && strcmp(status, "done") != 0))
        return cs_fail(err, CS_ERR_RUNTIME, "cannot end run %lld in '%s': status '%s' (expected "
                       "done or failed)", (long long)run_id, s->path, status ? status : "(null)");
    if (cs_store_in_transaction(s)) {
        if (!failed)
            return cs_fail(err, CS_ERR_RUNTIME,
                           "cannot mark run %lld done in '%s' while a transaction is open: "
                           "commit the results first", (long long)run_id, s->path);
        cs_store_rollback(s);
    }
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_RUN_END, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_text(&b, 2, status);
    bind_f64(&b, 3, seconds);
    bind_count(&b, 4, peak_rss_bytes);
    bind_text(&b, 5, error);
    if ((r = bind_check(s, &b, ST_RUN_END, err)) != CS_OK ||
        (r = stmt_exec(s, st, err, "update run %lld in runs", (long long)run_id)) != CS_OK)
        return r;
    if (sqlite3_changes(s->db) != 1)
        return cs_fail(err, CS_ERR_RUNTIME, "cannot end run %lld in '%s': no such run",
                       (long long)run_id, s->path);
    return CS_OK;
}

/* -------------------------------------------------------- single rows */

cs_status cs_store_convention(cs_store *s, int64_t run_id, const char *key, const char *value,
                              cs_err *err)
{
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_CONVENTION, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_text(&b, 2, key);
    bind_text(&b, 3, value);
    if ((r = bind_check(s, &b, ST_CONVENTION, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert '%s' into conventions", key ? key : "(null)");
}

cs_status cs_store_layer(cs_store *s, int64_t run_id, int64_t layer_id, const char *name,
                         const char *op_type, int64_t n_params, cs_err *err)
{
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_LAYER, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_i64(&b, 2, layer_id);
    bind_text(&b, 3, name);
    bind_text(&b, 4, op_type);
    bind_i64(&b, 5, n_params);
    if ((r = bind_check(s, &b, ST_LAYER, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert layer %lld into layers", (long long)layer_id);
}

cs_status cs_store_param(cs_store *s, int64_t run_id, int64_t param_id, int64_t layer_id,
                         const char *name, const char *shape, int64_t numel, cs_err *err)
{
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_PARAM, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_i64(&b, 2, param_id);
    bind_i64(&b, 3, layer_id);
    bind_text(&b, 4, name);
    bind_text(&b, 5, shape);
    bind_i64(&b, 6, numel);
    if ((r = bind_check(s, &b, ST_PARAM, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert parameter %lld into params", (long long)param_id);
}

cs_status cs_store_curvature(cs_store *s, int64_t run_id, const cs_curv_row *row, cs_err *err)
{
    cs_status r = check_layer(s, row->layer_id, "curvature", err);
    sqlite3_stmt *st = NULL;
    if (r != CS_OK || (r = stmt_get(s, ST_CURVATURE, &st, err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_layer(&b, 2, row->layer_id);
    bind_text(&b, 3, row->curvature);
    bind_text(&b, 4, row->repr);
    bind_text(&b, 5, row->method);
    bind_count(&b, 6, row->dim);
    bind_f64(&b, 7, row->trace);
    bind_f64(&b, 8, row->trace_stderr);
    bind_f64(&b, 9, row->frobenius);
    bind_f64(&b, 10, row->lambda_max);
    bind_f64(&b, 11, row->lambda_min);
    bind_f64(&b, 12, row->condition);
    bind_f64(&b, 13, row->effective_rank);
    bind_f64(&b, 14, row->seconds);
    if ((r = bind_check(s, &b, ST_CURVATURE, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert %s/%s of layer %lld into curvature",
                     row->curvature ? row->curvature : "(null)", row->repr ? row->repr : "(null)",
                     (long long)row->layer_id);
}

cs_status cs_store_repr_comparison(cs_store *s, int64_t run_id, int64_t layer_id,
                                   const char *curvature, const char *repr,
                                   const char *reference_repr, double rel_frobenius_error,
                                   double rel_lambda_max_error, double rel_trace_error,
                                   double top_eigvec_alignment, cs_err *err)
{
    cs_status r = check_layer(s, layer_id, "repr_comparison", err);
    sqlite3_stmt *st = NULL;
    if (r != CS_OK || (r = stmt_get(s, ST_REPR_COMPARISON, &st, err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_layer(&b, 2, layer_id);
    bind_text(&b, 3, curvature);
    bind_text(&b, 4, repr);
    bind_text(&b, 5, reference_repr);
    bind_f64(&b, 6, rel_frobenius_error);
    bind_f64(&b, 7, rel_lambda_max_error);
    bind_f64(&b, 8, rel_trace_error);
    bind_f64(&b, 9, top_eigvec_alignment);
    if ((r = bind_check(s, &b, ST_REPR_COMPARISON, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert layer %lld into repr_comparison", (long long)layer_id);
}

cs_status cs_store_step_diag(cs_store *s, int64_t run_id, const cs_step_diag_row *row,
                             cs_err *err)
{
    cs_status r = check_layer(s, row->layer_id, "step_diagnostics", err);
    sqlite3_stmt *st = NULL;
    if (r != CS_OK || (r = stmt_get(s, ST_STEP_DIAG, &st, err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_text(&b, 2, row->precond);
    bind_f64(&b, 3, row->damping);
    bind_layer(&b, 4, row->layer_id);
    bind_f64(&b, 5, row->grad_norm);
    bind_f64(&b, 6, row->step_norm);
    bind_f64(&b, 7, row->cosine);
    bind_f64(&b, 8, row->predicted_decrease);
    bind_f64(&b, 9, row->actual_decrease);
    bind_f64(&b, 10, row->rho);
    bind_f64(&b, 11, row->best_lr);
    bind_f64(&b, 12, row->has_best_change ? row->best_change : NAN);
    if ((r = bind_check(s, &b, ST_STEP_DIAG, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert into step_diagnostics");
}

cs_status cs_store_finetune_step(cs_store *s, int64_t run_id, int64_t epoch, int64_t step,
                                 double loss, double accuracy, double lr, double seconds,
                                 double samples_per_sec, cs_err *err)
{
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_FINETUNE_STEP, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_i64(&b, 2, epoch);
    bind_i64(&b, 3, step);
    bind_f64(&b, 4, loss);
    bind_f64(&b, 5, accuracy);
    bind_f64(&b, 6, lr);
    bind_f64(&b, 7, seconds);
    bind_f64(&b, 8, samples_per_sec);
    if ((r = bind_check(s, &b, ST_FINETUNE_STEP, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert step %lld into finetune_steps", (long long)step);
}

cs_status cs_store_finetune_eval(cs_store *s, int64_t run_id, int64_t epoch, const char *split,
                                 double loss, double accuracy, cs_err *err)
{
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_FINETUNE_EVAL, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_i64(&b, 2, epoch);
    bind_text(&b, 3, split);
    bind_f64(&b, 4, loss);
    bind_f64(&b, 5, accuracy);
    if ((r = bind_check(s, &b, ST_FINETUNE_EVAL, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert epoch %lld into finetune_evals", (long long)epoch);
}

/* ----------------------------------------------------------- many rows */

/* A spectrum must be rank-ordered (k = 0 largest) and finite-or-infinite,
 * never NaN, so that k means the same thing in every row. */
static cs_status check_spectrum(cs_store *s, const char *table, const double *values, int64_t n,
                                cs_err *err)
{
    if (n < 0 || (n > 0 && !values))
        return cs_fail(err, CS_ERR_RUNTIME, "cannot insert into %s in '%s': %lld values at %p",
                       table, s->path, (long long)n, (const void *)values);
    for (int64_t k = 0; k < n; k++) {
        if (isnan(values[k]))
            return cs_fail(err, CS_ERR_RUNTIME, "cannot insert into %s in '%s': value %lld is NaN",
                           table, s->path, (long long)k);
        if (k > 0 && values[k] > values[k - 1])
            return cs_fail(err, CS_ERR_RUNTIME,
                           "cannot insert into %s in '%s': values not in descending order at "
                           "k = %lld (%g after %g)", table, s->path, (long long)k, values[k],
                           values[k - 1]);
    }
    return CS_OK;
}

cs_status cs_store_eigenvalues(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                               const char *repr, const double *values, int64_t n, cs_err *err)
{
    cs_status r = check_layer(s, layer_id, "eigenvalues", err);
    if (r == CS_OK)
        r = check_spectrum(s, "eigenvalues", values, n, err);
    sqlite3_stmt *st = NULL;
    if (r != CS_OK || n == 0 || (r = stmt_get(s, ST_EIGENVALUE, &st, err)) != CS_OK)
        return r;
    if ((r = rows_begin(s, "eigenvalues", err)) != CS_OK)
        return r;
    /* The fixed columns are bound once: reset keeps bindings. */
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_layer(&b, 2, layer_id);
    bind_text(&b, 3, curvature);
    bind_text(&b, 4, repr);
    r = bind_check(s, &b, ST_EIGENVALUE, err);
    for (int64_t k = 0; k < n && r == CS_OK; k++) {
        bind_i64(&b, 5, k);
        bind_f64(&b, 6, values[k]);
        if ((r = bind_check(s, &b, ST_EIGENVALUE, err)) == CS_OK)
            r = stmt_exec(s, st, err, "insert %s/%s eigenvalue %lld of layer %lld into eigenvalues",
                          curvature ? curvature : "(null)", repr ? repr : "(null)", (long long)k,
                          (long long)layer_id);
    }
    return rows_end(s, r, "eigenvalues", err);
}

cs_status cs_store_spectrum(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                           const char *repr, const char *method, int64_t first_k,
                           const double *values, int64_t n, cs_err *err)
{
    cs_status r = check_layer(s, layer_id, "eigenvalues", err);
    if (r == CS_OK)
        r = check_spectrum(s, "eigenvalues", values, n, err);
    if (r == CS_OK && first_k < 0)
        r = cs_fail(err, CS_ERR_RUNTIME, "cannot insert into eigenvalues in '%s': first k %lld",
                    s->path, (long long)first_k);
    sqlite3_stmt *st = NULL;
    if (r != CS_OK || n == 0 || (r = stmt_get(s, ST_SPECTRUM, &st, err)) != CS_OK)
        return r;
    if ((r = rows_begin(s, "eigenvalues", err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_layer(&b, 2, layer_id);
    bind_text(&b, 3, curvature);
    bind_text(&b, 4, repr);
    bind_text(&b, 5, method ? method : "exact");
    r = bind_check(s, &b, ST_SPECTRUM, err);
    for (int64_t k = 0; k < n && r == CS_OK; k++) {
        bind_i64(&b, 6, first_k + k);
        bind_f64(&b, 7, values[k]);
        if ((r = bind_check(s, &b, ST_SPECTRUM, err)) == CS_OK)
            r = stmt_exec(s, st, err, "insert %s/%s/%s eigenvalue %lld of layer %lld into eigenvalues",
                          curvature ? curvature : "(null)", repr ? repr : "(null)",
                          method ? method : "exact", (long long)(first_k + k), (long long)layer_id);
    }
    return rows_end(s, r, "eigenvalues", err);
}

cs_status cs_store_lanczos_coefficients(cs_store *s, int64_t run_id, int64_t layer_id,
                                        const char *curvature, const char *method, int64_t repeat,
                                        int64_t probe, const double *alpha, const double *beta,
                                        int64_t n, cs_err *err)
{
    cs_status r = check_layer(s, layer_id, "lanczos_coefficients", err);
    if (r == CS_OK && (n < 0 || (n > 0 && (!alpha || !beta))))
        r = cs_fail(err, CS_ERR_RUNTIME, "cannot insert into lanczos_coefficients in '%s': %lld "
                    "steps without coefficients", s->path, (long long)n);
    sqlite3_stmt *st = NULL;
    if (r != CS_OK || n == 0 || (r = stmt_get(s, ST_LANCZOS, &st, err)) != CS_OK)
        return r;
    if ((r = rows_begin(s, "lanczos_coefficients", err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_layer(&b, 2, layer_id);
    bind_text(&b, 3, curvature);
    bind_text(&b, 4, method);
    bind_i64(&b, 5, repeat);
    bind_i64(&b, 6, probe);
    r = bind_check(s, &b, ST_LANCZOS, err);
    for (int64_t k = 0; k < n && r == CS_OK; k++) {
        bind_i64(&b, 7, k);
        bind_f64(&b, 8, alpha[k]);
        bind_f64(&b, 9, beta[k]);
        if ((r = bind_check(s, &b, ST_LANCZOS, err)) == CS_OK)
            r = stmt_exec(s, st, err, "insert step %lld of probe %lld into lanczos_coefficients",
                          (long long)k, (long long)probe);
    }
    return rows_end(s, r, "lanczos_coefficients", err);
}

cs_status cs_store_ritz(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                        int64_t repeat, const double *values, const double *residuals,
                        const int *converged, int64_t n, cs_err *err)
{
    cs_status r = check_layer(s, layer_id, "ritz_values", err);
    if (r == CS_OK)
        r = check_spectrum(s, "ritz_values", values, n, err);
    sqlite3_stmt *st = NULL;
    if (r != CS_OK || n == 0 || (r = stmt_get(s, ST_RITZ, &st, err)) != CS_OK)
        return r;
    if ((r = rows_begin(s, "ritz_values", err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_layer(&b, 2, layer_id);
    bind_text(&b, 3, curvature);
    bind_i64(&b, 4, repeat);
    r = bind_check(s, &b, ST_RITZ, err);
    for (int64_t k = 0; k < n && r == CS_OK; k++) {
        bind_i64(&b, 5, k);
        bind_f64(&b, 6, values[k]);
        bind_f64(&b, 7, residuals ? residuals[k] : NAN);
        bind_i64(&b, 8, converged ? (converged[k] != 0) : 0);
        if ((r = bind_check(s, &b, ST_RITZ, err)) == CS_OK)
            r = stmt_exec(s, st, err, "insert Ritz value %lld into ritz_values", (long long)k);
    }
    return rows_end(s, r, "ritz_values", err);
}

cs_status cs_store_importance_unit(cs_store *s, int64_t run_id, int64_t layer_id, int64_t unit,
                                   int64_t n, const double sums[6], cs_err *err)
{
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_IMP_UNIT, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_i64(&b, 2, layer_id);
    bind_layer(&b, 3, unit); /* -1: NULL */
    bind_i64(&b, 4, n);
    for (int k = 0; k < 6; k++)
        bind_f64(&b, 5 + k, sums[k]);
    if ((r = bind_check(s, &b, ST_IMP_UNIT, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert unit %lld of layer %lld into importance_units", (long long)unit,
                     (long long)layer_id);
}

cs_status cs_store_eigenvector(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                               int64_t k, int64_t param_id, int64_t first_index, const double *values,
                               int64_t n, cs_err *err)
{
    sqlite3_stmt *st = NULL;
    cs_status r;
    if (n <= 0 || (r = stmt_get(s, ST_EIGVEC, &st, err)) != CS_OK)
        return n <= 0 ? CS_OK : r;
    if ((r = rows_begin(s, "eigenvectors", err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_layer(&b, 2, layer_id);
    bind_text(&b, 3, curvature);
    bind_i64(&b, 4, k);
    bind_i64(&b, 5, param_id);
    r = bind_check(s, &b, ST_EIGVEC, err);
    for (int64_t i = 0; i < n && r == CS_OK; i++) {
        bind_i64(&b, 6, first_index + i);
        bind_f64(&b, 7, values[i]);
        if ((r = bind_check(s, &b, ST_EIGVEC, err)) == CS_OK)
            r = stmt_exec(s, st, err, "insert element %lld of eigenvector %lld into eigenvectors",
                          (long long)(first_index + i), (long long)k);
    }
    return rows_end(s, r, "eigenvectors", err);
}

cs_status cs_store_pruning_point(cs_store *s, int64_t run_id, const char *score, double fraction,
                                 int64_t n_pruned, double loss, double accuracy, cs_err *err)
{
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, ST_PRUNE, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_text(&b, 2, score);
    bind_f64(&b, 3, fraction);
    bind_i64(&b, 4, n_pruned);
    bind_f64(&b, 5, loss);
    bind_f64(&b, 6, accuracy);
    if ((r = bind_check(s, &b, ST_PRUNE, err)) != CS_OK)
        return r;
    return stmt_exec(s, st, err, "insert %s at %g into pruning_curve", score ? score : "(null)", fraction);
}

cs_status cs_store_kfac_factor(cs_store *s, int64_t run_id, int64_t layer_id,
                               const char *curvature, char factor, const double *eigenvalues,
                               int64_t n, cs_err *err)
{
    if (factor != 'A' && factor != 'G')
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot insert into kfac_factors in '%s': factor '%c' (expected A or G)",
                       s->path, factor ? factor : '?');
    if (layer_id < 0)
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot insert into kfac_factors in '%s': layer_id %lld (K-FAC factors "
                       "belong to a layer)", s->path, (long long)layer_id);
    cs_status r = check_spectrum(s, "kfac_factors", eigenvalues, n, err);
    sqlite3_stmt *st = NULL;
    if (r != CS_OK || n == 0 || (r = stmt_get(s, ST_KFAC_FACTOR, &st, err)) != CS_OK)
        return r;
    if ((r = rows_begin(s, "kfac_factors", err)) != CS_OK)
        return r;
    char fac[2] = {factor, '\0'};
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_i64(&b, 2, layer_id);
    bind_text(&b, 3, curvature);
    bind_text(&b, 4, fac);
    r = bind_check(s, &b, ST_KFAC_FACTOR, err);
    for (int64_t k = 0; k < n && r == CS_OK; k++) {
        bind_i64(&b, 5, k);
        bind_f64(&b, 6, eigenvalues[k]);
        if ((r = bind_check(s, &b, ST_KFAC_FACTOR, err)) == CS_OK)
            r = stmt_exec(s, st, err, "insert factor %c value %lld of layer %lld into kfac_factors",
                          factor, (long long)k, (long long)layer_id);
    }
    return rows_end(s, r, "kfac_factors", err);
}

cs_status cs_store_density(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                           const double *lo, const double *hi, const double *density, int64_t n,
                           cs_err *err)
{
    cs_status r = check_layer(s, layer_id, "density", err);
    if (r == CS_OK && (n < 0 || (n > 0 && (!lo || !hi || !density))))
        r = cs_fail(err, CS_ERR_RUNTIME, "cannot insert into density in '%s': %lld bins without "
                    "lo, hi and density arrays", s->path, (long long)n);
    sqlite3_stmt *st = NULL;
    if (r != CS_OK || n == 0 || (r = stmt_get(s, ST_DENSITY, &st, err)) != CS_OK)
        return r;
    if ((r = rows_begin(s, "density", err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_layer(&b, 2, layer_id);
    bind_text(&b, 3, curvature);
    r = bind_check(s, &b, ST_DENSITY, err);
    for (int64_t i = 0; i < n && r == CS_OK; i++) {
        bind_f64(&b, 4, lo[i]);
        bind_f64(&b, 5, hi[i]);
        bind_f64(&b, 6, density[i]);
        if ((r = bind_check(s, &b, ST_DENSITY, err)) == CS_OK)
            r = stmt_exec(s, st, err, "insert bin %lld of layer %lld into density", (long long)i,
                          (long long)layer_id);
    }
    return rows_end(s, r, "density", err);
}

static double col_at(const double *col, int64_t i)
{
    return col ? col[i] : NAN;
}

cs_status cs_store_importance(cs_store *s, int64_t run_id, int64_t param_id,
                              const cs_importance_cols *cols, int64_t n, cs_err *err)
{
    if (n < 0 || cols->first_index < 0)
        return cs_fail(err, CS_ERR_RUNTIME, "cannot insert into importance in '%s': %lld rows "
                       "from index %lld", s->path, (long long)n, (long long)cols->first_index);
    sqlite3_stmt *st = NULL;
    cs_status r;
    if (n == 0 || (r = stmt_get(s, ST_IMPORTANCE, &st, err)) != CS_OK)
        return n == 0 ? CS_OK : r;
    if ((r = rows_begin(s, "importance", err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK};
    bind_i64(&b, 1, run_id);
    bind_i64(&b, 2, param_id);
    r = bind_check(s, &b, ST_IMPORTANCE, err);
    for (int64_t i = 0; i < n && r == CS_OK; i++) {
        bind_i64(&b, 3, cols->first_index + i);
        bind_f64(&b, 4, col_at(cols->value, i));
        bind_f64(&b, 5, col_at(cols->grad, i));
        bind_f64(&b, 6, col_at(cols->diag_ggn, i));
        bind_f64(&b, 7, col_at(cols->diag_fisher_emp, i));
        bind_f64(&b, 8, col_at(cols->diag_hessian, i));
        bind_f64(&b, 9, col_at(cols->obd, i));
        bind_f64(&b, 10, col_at(cols->obs, i));
        bind_f64(&b, 11, col_at(cols->taylor, i));
        if (cols->unit && cols->unit[i] >= 0)
            bind_i64(&b, 12, cols->unit[i]);
        else if (b.rc == SQLITE_OK)
            b.rc = sqlite3_bind_null(st, 12);
        if ((r = bind_check(s, &b, ST_IMPORTANCE, err)) == CS_OK)
            r = stmt_exec(s, st, err, "insert index %lld of parameter %lld into importance",
                          (long long)(cols->first_index + i), (long long)param_id);
    }
    return rows_end(s, r, "importance", err);
}

/* ------------------------------------------------------------------ SQL */

cs_status cs_store_exec(cs_store *s, const char *sql, int (*cb)(void *, int, char **, char **),
                        void *ctx, cs_err *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, cb, ctx, &msg);
    if (rc == SQLITE_OK)
        return CS_OK;
    cs_status r;
    if (rc == SQLITE_ABORT && cb)
        r = cs_fail(err, CS_ERR_RUNTIME, "query on '%s' stopped by its callback", s->path);
    else
        r = store_fail(s, err, sqlite3_extended_errcode(s->db), "run SQL");
    sqlite3_free(msg);
    return r;
}
