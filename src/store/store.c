/* The result database.  See store.h for the contract and schemas/store.sql
 * for the tables.
 *
 * Statements are prepared once per store, on first use, and reset after
 * every row, so writing a spectrum costs one sqlite3_step per eigenvalue.
 * Functions that write several rows wrap them in a savepoint: they nest in
 * the caller's transaction, make the call all-or-nothing, and batch the
 * rows into one commit when there is no outer transaction. */
#include "config.h"

#include "store/store_internal.h"

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
    [ST_NOISE_SCALE] = {"noise_scale",
        "INSERT INTO noise_scale (run_id, layer_id, grad_sq_norm, trace_cov, b_simple, b_simple_se, "
        "n_samples, groups) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
    [ST_COMPARISON] = {"comparisons",
        "INSERT INTO comparisons (model_path, data, test_data, epochs, batch, seed, target_accuracy, "
        "started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"},
    [ST_COMPARISON_METHOD] = {"comparison_methods",
        "INSERT INTO comparison_methods (comparison_id, method, run_id, lr, damping, train_seconds, "
        "samples_per_sec, peak_heap_bytes, final_test_loss, final_test_accuracy, time_to_target, "
        "epoch_to_target) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"},
    [ST_COMPARISON_EPOCH] = {"comparison_epochs",
        "INSERT INTO comparison_epochs (comparison_id, method, epoch, train_seconds, samples_per_sec, "
        "train_loss, train_accuracy, test_loss, test_accuracy) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
    [ST_FINETUNE_PENALTY] = {"finetune_penalty",
        "INSERT INTO finetune_penalty (run_id, epoch, step, penalty) VALUES (?1, ?2, ?3, ?4)"},
    [ST_HESSIAN_TRACE] = {"hessian_traces",
        "INSERT INTO hessian_traces (run_id, layer_id, trace, se, n_probes) VALUES (?1, ?2, ?3, ?4, ?5)"},
    [ST_QUANT_SENS] = {"quant_sensitivity",
        "INSERT INTO quant_sensitivity (run_id, layer_id, bits, omega, delta_norm_sq) "
        "VALUES (?1, ?2, ?3, ?4, ?5)"},
    [ST_QUANT_ALLOC] = {"quant_allocation",
        "INSERT INTO quant_allocation (run_id, layer_id, bits) VALUES (?1, ?2, ?3)"},
    [ST_QUANT_RESULT] = {"quant_result",
        "INSERT INTO quant_result (run_id, loss_before, predicted_loss, tolerance, measured_loss, "
        "size_bytes, format) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
    [ST_LAPLACE_FIT] = {"laplace_fits",
        "INSERT INTO laplace_fits (run_id, curvature, repr, subset, prior_mode, prior_precision, "
        "log_marglik, log_lik, log_det_precision, log_det_prior, n_params, n_samples) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"},
    [ST_LAPLACE_PRIOR] = {"laplace_priors",
        "INSERT INTO laplace_priors (run_id, layer_id, prior_precision, n_params, sq_norm) "
        "VALUES (?1, ?2, ?3, ?4, ?5)"},
    [ST_LAPLACE_PREDICTIVE] = {"laplace_predictive",
        "INSERT INTO laplace_predictive (run_id, method, n_test, nll, accuracy, ece, brier) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
    [ST_INFLUENCE_SCORE] = {"influence_scores",
        "INSERT INTO influence_scores (run_id, method, scope, direction, rank, query_index, "
        "train_index, score) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"},
    [ST_INFLUENCE_SELF] = {"influence_self",
        "INSERT INTO influence_self (run_id, train_index, label, loss, self_influence, rank) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    [ST_INFLUENCE_VALIDATION] = {"influence_validation",
        "INSERT INTO influence_validation (run_id, kind, method, n_examples, n_queries, subset_size, epochs, "
        "lr, pearson, spearman) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"},
    [ST_INFLUENCE_LOO] = {"influence_loo", "INSERT INTO influence_loo (run_id, method, train_index, "
        "query_index, predicted, actual) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    [ST_INFLUENCE_LDS] = {"influence_lds", "INSERT INTO influence_lds (run_id, method, subset, query_index, "
        "predicted, actual) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    [ST_PARAM_PART] = {"param_parts", "INSERT INTO param_parts (run_id, param_id, source, source_shape) "
        "VALUES (?1, ?2, ?3, ?4)"},
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
cs_status store_db_fail(sqlite3 *db, const char *path, cs_err *err, int rc, const char *fmt, ...)
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
    else if ((rc & 0xff) == SQLITE_BUSY)
        hint = " (another process held the write lock longer than the busy timeout: wait for "
               "its run to end, or give another --db)";
    else if ((rc & 0xff) == SQLITE_FULL)
        hint = " (the disk or the file size limit is full: nothing of this write was kept)";
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
    return store_db_fail(s->db, s->path, err, rc, "%s", op);
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
    int inf_col;   /* the first parameter bound to +-Inf, 0 if none */
} binder;

static void bind_null(binder *b, int i)
{
    if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_null(b->st, i);
}

static void bind_i64(binder *b, int i, int64_t v)
{
    if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_int64(b->st, i, v);
}

/* NaN is "not computed" and stored as NULL (doc/design.md §4); an infinite
 * value is an overflow in the computation and is refused, failing the
 * call, so that no run is stored with a number that is not one (§7). */
static void bind_f64(binder *b, int i, double v)
{
    if (isinf(v)) {
        if (b->rc == SQLITE_OK) {
            b->rc = SQLITE_RANGE;
            b->inf_col = i;
        }
    } else if (isnan(v))
        bind_null(b, i);
    else if (b->rc == SQLITE_OK)
        b->rc = sqlite3_bind_double(b->st, i, v);
}

/* Transient: SQLite copies the text, so no binding outlives the caller's
 * string even though reset keeps bindings. */
static void bind_col(binder *b, int i, const store_col *c)
{
    switch (c->kind) {
    case COL_INT: bind_i64(b, i, c->i); break;
    case COL_COUNT: /* negative: unknown, or layer -1 (the whole network) */
        if (c->i < 0)
            bind_null(b, i);
        else
            bind_i64(b, i, c->i);
        break;
    case COL_REAL: bind_f64(b, i, c->f); break;
    case COL_TEXT:
        if (!c->t)
            bind_null(b, i);
        else if (b->rc == SQLITE_OK)
            b->rc = sqlite3_bind_text(b->st, i, c->t, -1, SQLITE_TRANSIENT);
        break;
    }
}

static void bind_array(binder *b, int i, const store_array *a, int64_t k)
{
    if (a->kind == 'f') {
        bind_f64(b, i, a->v ? ((const double *)a->v)[k] : NAN);
    } else if (a->kind == 'b') {
        bind_i64(b, i, a->v ? (((const int *)a->v)[k] != 0) : 0);
    } else {
        int u = a->v ? ((const int *)a->v)[k] : -1;
        if (u < 0)
            bind_null(b, i);
        else
            bind_i64(b, i, u);
    }
}

/* The name of column i (1-based) of an INSERT's column list. */
static void insert_column(enum stmt_id id, int i, char *buf, size_t size)
{
    const char *p = strchr(stmt_defs[id].sql, '(');
    for (int k = 1; p && k < i; k++)
        p = strchr(p + 1, ',');
    size_t n = 0;
    if (p) {
        p += strspn(p + 1, " ") + 1;
        n = strcspn(p, ",)");
    }
    snprintf(buf, size, "%.*s", (int)n, p ? p : "?");
}

static cs_status bind_check(cs_store *s, const binder *b, enum stmt_id id, cs_err *err)
{
    if (b->rc == SQLITE_OK)
        return CS_OK;
    if (b->inf_col) {
        char col[64];
        insert_column(id, b->inf_col, col, sizeof col);
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot insert into %s in '%s': %s is infinite (an overflow in the "
                       "computation); the run's results are not stored", stmt_defs[id].table,
                       s->path, col);
    }
    return store_fail(s, err, b->rc, "bind values for %s", stmt_defs[id].table);
}

/* Step a prepared write to completion and reset it for the next row. */
static cs_status stmt_vexec(cs_store *s, sqlite3_stmt *st, cs_err *err, const char *fmt, va_list ap)
    CS_PRINTF(4, 0);
static cs_status stmt_vexec(cs_store *s, sqlite3_stmt *st, cs_err *err, const char *fmt, va_list ap)
{
    int rc = sqlite3_step(st);
    cs_status r = CS_OK;
    if (rc != SQLITE_DONE) {
        char op[256];
        vsnprintf(op, sizeof op, fmt, ap);
        /* The message is read before reset, which may replace it. */
        r = store_fail(s, err, sqlite3_extended_errcode(s->db), "%s", op);
    }
    sqlite3_reset(st);
    return r;
}

static cs_status stmt_exec(cs_store *s, sqlite3_stmt *st, cs_err *err, const char *fmt, ...)
    CS_PRINTF(4, 5);
static cs_status stmt_exec(cs_store *s, sqlite3_stmt *st, cs_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cs_status r = stmt_vexec(s, st, err, fmt, ap);
    va_end(ap);
    return r;
}

cs_status store_insert_row(cs_store *s, enum stmt_id id, const store_col *cols, int n, cs_err *err,
                           const char *fmt, ...)
{
    sqlite3_stmt *st = NULL;
    cs_status r = stmt_get(s, id, &st, err);
    if (r != CS_OK)
        return r;
    binder b = {st, SQLITE_OK, 0};
    for (int i = 0; i < n; i++)
        bind_col(&b, i + 1, &cols[i]);
    if ((r = bind_check(s, &b, id, err)) != CS_OK)
        return r;
    va_list ap;
    va_start(ap, fmt);
    r = stmt_vexec(s, st, err, fmt, ap);
    va_end(ap);
    return r;
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

cs_status store_insert_rows(cs_store *s, enum stmt_id id, const store_rows *rows, int64_t n,
                            cs_err *err)
{
    const char *table = stmt_defs[id].table;
    sqlite3_stmt *st = NULL;
    cs_status r;
    if (n <= 0 || (r = stmt_get(s, id, &st, err)) != CS_OK)
        return n <= 0 ? CS_OK : r;
    if ((r = rows_begin(s, table, err)) != CS_OK)
        return r;
    binder b = {st, SQLITE_OK, 0};
    for (int c = 0; c < rows->n_fixed; c++)
        bind_col(&b, c + 1, &rows->fixed[c]);
    r = bind_check(s, &b, id, err);
    int next = rows->n_fixed + 1 + (rows->indexed ? 1 : 0);
    for (int64_t k = 0; k < n && r == CS_OK; k++) {
        if (rows->indexed)
            bind_i64(&b, rows->n_fixed + 1, rows->first + k);
        for (int c = 0; c < rows->n_arrays; c++)
            bind_array(&b, next + c, &rows->arrays[c], k);
        if ((r = bind_check(s, &b, id, err)) == CS_OK)
            r = stmt_exec(s, st, err, "insert %s%lld%s", rows->what, (long long)(rows->first + k),
                          rows->where);
    }
    return rows_end(s, r, table, err);
}

/* -------------------------------------------------------------- opening */

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
            /* SQLite's own message for this case names the wrong errno. */
            char dir[4096];
            const char *slash = strrchr(path, '/');
            snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + 1 : 1,
                     slash ? path : ".");
            if (access(dir, W_OK | X_OK) != 0 && (errno == EACCES || errno == EROFS))
                return cs_fail(err, CS_ERR_IO, "cannot create the database '%s': its folder is "
                               "not writable (%s)", path, strerror(errno));
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
            r = store_db_fail(s->db, path, err, sqlite3_extended_errcode(s->db),
                        existed ? "open the database" : "create the database");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);

    int fresh = 0;
    int64_t version = 0;
    r = store_check_identity(s->db, path, readonly, &fresh, &version, err);
    if (r != CS_OK)
        goto fail;
    if (readonly) {
        *out = s;
        return CS_OK;
    }

    r = store_exec_sql(s->db, path, "PRAGMA foreign_keys = ON", "enable foreign keys", err);
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
    r = store_exec_sql(s->db, path, "PRAGMA synchronous = FULL", "set the sync mode", err);
    if (r == CS_OK)
        r = fresh ? store_apply_schema(s->db, path, err) : store_probe_writable(s->db, path, err);
    if (r == CS_OK && !fresh && version < CS_STORE_SCHEMA_VERSION)
        r = store_upgrade_schema(s->db, path, err);
    if (r != CS_OK)
        goto fail;
    *out = s;
    return CS_OK;

fail:;
    /* Only a file still without schema is ours to remove: another process
     * may have created the database meanwhile (see store_apply_schema). */
    int64_t n_objects = -1;
    cs_err ignored = {0};
    if (!existed && !memory && s->db &&
        store_query_int(s->db, path, "SELECT count(*) FROM sqlite_master", &n_objects, &ignored) != CS_OK)
        n_objects = -1;
    sqlite3_close(s->db);
    struct stat sb;
    if (!existed && !memory &&
        (n_objects == 0 || !s->db || (stat(path, &sb) == 0 && sb.st_size == 0)))
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
    return store_exec_sql(s->db, s->path, "BEGIN IMMEDIATE", "begin a transaction", err);
}

cs_status cs_store_commit(cs_store *s, cs_err *err)
{
    if (!cs_store_in_transaction(s))
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot commit in '%s': no transaction is open (it may have been rolled "
                       "back after an earlier error)", s->path);
    return store_exec_sql(s->db, s->path, "COMMIT", "commit", err);
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
    /* the kinds runs.kind's CHECK allows (schemas/store.sql) */
    /* The kinds are the list of runs.kind's CHECK in the built-in schema,
     * so the two cannot drift apart: "'analyze', 'finetune', ...". */
    const char *table = strstr(cs_store_schema_sql, "CREATE TABLE runs (");
    const char *list = table ? strstr(table, "CHECK (kind IN (") : NULL;
    const char *list_end = list ? strstr(list, "))") : NULL;
    char quoted[64];
    int nq = info->kind ? snprintf(quoted, sizeof quoted, "'%s'", info->kind) : -1;
    const char *hit = nq > 0 && (size_t)nq < sizeof quoted && list ? strstr(list, quoted) : NULL;
    if (!hit || !list_end || hit > list_end) {
        int len = list && list_end ? (int)(list_end - list - 16) : 0;
        return cs_fail(err, CS_ERR_RUNTIME, "cannot begin a run in '%s': kind '%s' (expected one of %.*s)", s->path,
                       info->kind ? info->kind : "(null)", len, list ? list + 16 : "");
    }
    if (cs_store_in_transaction(s))
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot begin a run in '%s' inside an open transaction: the run row must "
                       "be committed at once", s->path);
    const store_col cols[] = {SC_TEXT(info->kind), SC_TEXT(info->model_path),
                              SC_TEXT(info->model_sha256), SC_TEXT(info->data),
                              SC_COUNT(info->n_samples), SC_TEXT(info->loss), SC_TEXT(info->argv),
                              SC_TEXT(info->version ? info->version : PACKAGE_VERSION)};
    cs_status r = store_insert_row(s, ST_RUN_BEGIN, cols, 8, err, "insert into runs");
    if (r == CS_OK)
        *run_id = sqlite3_last_insert_rowid(s->db);
    return r;
}

int64_t store_last_rowid(const cs_store *s)
{
    return sqlite3_last_insert_rowid(s->db);
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
    const store_col cols[] = {SC_INT(run_id), SC_TEXT(status), SC_REAL(seconds),
                              SC_COUNT(peak_rss_bytes), SC_TEXT(error)};
    cs_status r = store_insert_row(s, ST_RUN_END, cols, 5, err, "update run %lld in runs",
                                   (long long)run_id);
    if (r != CS_OK)
        return r;
    if (sqlite3_changes(s->db) != 1)
        return cs_fail(err, CS_ERR_RUNTIME, "cannot end run %lld in '%s': no such run",
                       (long long)run_id, s->path);
    return CS_OK;
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
