/* The result database (SQLite): open with schema version checks, runs,
 * transactions, and one insert function per result table.
 *
 * Schema: schemas/store.sql, compiled into the binary (cs_store_schema_sql).
 * Conventions of every insert function: run_id names a row of `runs`;
 * layer_id -1 means the whole network and is stored as NULL; NaN doubles
 * are stored as NULL; strings are borrowed (copied by SQLite).  A function
 * that writes several rows writes all or none of them.  Without an explicit
 * transaction (cs_store_begin) each call commits on its own, which is slow
 * for many small calls: wrap a batch of results in begin / commit.
 *
 * Errors name the operation, the table and SQLite's message; the database
 * stays usable after a failed insert (the failed call's rows are gone, an
 * open transaction stays open).
 *
 * store/rows.h writes the library's result structs (curvature reports,
 * spectra, importance, steps, finetune options) through these functions. */
#ifndef CS_STORE_STORE_H
#define CS_STORE_STORE_H

#include <stdint.h>

#include "base/status.h"

/* PRAGMA user_version of the schema this build writes. */
#define CS_STORE_SCHEMA_VERSION 4
/* PRAGMA application_id marking a curvscope database ("Curv" in ASCII). */
#define CS_STORE_APPLICATION_ID 0x43757276

/* The text of schemas/store.sql (generated at build time). */
extern const char cs_store_schema_sql[];
/* The statements schema version `version` added to the one before (version
 * 1: the first schema), cut from cs_store_schema_sql at its "-- @version N"
 * marker lines; a new string the caller frees, NULL when out of memory. */
char *cs_store_schema_section(int version);

typedef struct cs_store cs_store;

/* Open or create the database at path.  A new (absent or empty) file gets
 * the schema, its version and application id; an existing one must be a
 * curvscope database of a version this build reads.  Foreign keys are on,
 * the journal is WAL where the file system allows it (rollback journal
 * otherwise) and a busy timeout waits for other writers.  Every failure is
 * found here, before any analysis runs, and names path: CS_ERR_IO for a
 * directory or a location that cannot be created or written, CS_ERR_FORMAT
 * for a file that is not SQLite, another application's database, or a
 * schema version this build cannot use.  Such files are left untouched.
 * ":memory:" opens a private in-memory database.  *out is owned by the
 * caller and freed with cs_store_close. */
cs_status cs_store_open(const char *path, cs_store **out, cs_err *err) CS_MUST_CHECK;

/* Open an existing curvscope database for reading only (for reports): the
 * same checks, nothing is written.  Insert functions then fail with
 * CS_ERR_IO. */
cs_status cs_store_open_readonly(const char *path, cs_store **out, cs_err *err) CS_MUST_CHECK;

/* Rolls back a transaction left open, then closes.  NULL is ignored. */
void cs_store_close(cs_store *s);

/* The path given to open (borrowed from the store). */
const char *cs_store_path(const cs_store *s);

typedef struct cs_run_info {
    const char *kind;          /* "analyze" | "finetune" */
    const char *model_path;    /* required */
    const char *model_sha256;  /* 64 hex digits, or NULL */
    const char *data, *loss, *argv; /* NULL ok */
    const char *version;       /* NULL: this build's PACKAGE_VERSION */
    int64_t n_samples;         /* < 0: unknown (NULL) */
} cs_run_info;

/* Insert a runs row with status 'running' and started_at now (UTC,
 * ISO 8601 with milliseconds) and commit it at once, so an interrupted
 * run stays visible.  Must be called outside a transaction. */
cs_status cs_store_run_begin(cs_store *s, const cs_run_info *info, int64_t *run_id,
                             cs_err *err) CS_MUST_CHECK;

/* Set status ('done' | 'failed'), finished_at now, seconds (NaN: NULL),
 * peak_rss_bytes (< 0: NULL) and error (NULL ok), and commit.  With a
 * transaction still open, 'failed' first rolls it back (a failed run keeps
 * no half-written batch); 'done' is refused (commit the batch first). */
cs_status cs_store_run_end(cs_store *s, int64_t run_id, const char *status, double seconds,
                           int64_t peak_rss_bytes, const char *error, cs_err *err) CS_MUST_CHECK;

/* Explicit transactions for result batches.  begin takes the write lock at
 * once (BEGIN IMMEDIATE), so a competing writer shows up here and not in
 * the middle of a batch; transactions do not nest. */
cs_status cs_store_begin(cs_store *s, cs_err *err) CS_MUST_CHECK;
cs_status cs_store_commit(cs_store *s, cs_err *err) CS_MUST_CHECK;
/* Undo the open transaction, if any. */
void cs_store_rollback(cs_store *s);
/* 1 while an explicit transaction is open. */
int cs_store_in_transaction(const cs_store *s);

cs_status cs_store_convention(cs_store *s, int64_t run_id, const char *key, const char *value,
                              cs_err *err) CS_MUST_CHECK;
cs_status cs_store_layer(cs_store *s, int64_t run_id, int64_t layer_id, const char *name,
                         const char *op_type, int64_t n_params, cs_err *err) CS_MUST_CHECK;
/* The layer must be stored first (foreign key). */
cs_status cs_store_param(cs_store *s, int64_t run_id, int64_t param_id, int64_t layer_id,
                         const char *name, const char *shape, int64_t numel,
                         cs_err *err) CS_MUST_CHECK;
/* Parameter param_id (stored first) is a part of the file's initializer
 * source, of shape source_shape (table param_parts). */
cs_status cs_store_param_part(cs_store *s, int64_t run_id, int64_t param_id, const char *source,
                              const char *source_shape, cs_err *err) CS_MUST_CHECK;

typedef struct cs_curv_row {
    int64_t layer_id;          /* -1 for the whole network (stored as NULL) */
    const char *curvature, *repr, *method;
    int64_t dim;               /* < 0: NULL */
    double trace, trace_stderr, frobenius, lambda_max, lambda_min, condition, effective_rank,
        seconds;               /* NAN -> NULL */
} cs_curv_row;

/* Rows naming a layer need that layer stored first (foreign key), here and
 * in the functions below. */
cs_status cs_store_curvature(cs_store *s, int64_t run_id, const cs_curv_row *row,
                             cs_err *err) CS_MUST_CHECK;

/* values[0..n) in descending order (checked), stored with k = 0..n-1; no NaN. */
/* Eigenvalues with the method that produced them (exact, kron, lanczos,
 * ...) and the rank of the first one (k = first_k, first_k + 1, ...):
 * values[0..n) descending.  cs_store_eigenvalues is this with method
 * "exact" and first_k 0. */
cs_status cs_store_spectrum(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                           const char *repr, const char *method, int64_t first_k,
                           const double *values, int64_t n, cs_err *err) CS_MUST_CHECK;
/* One Lanczos run's tridiagonal coefficients (method "lanczos" or "slq"). */
cs_status cs_store_lanczos_coefficients(cs_store *s, int64_t run_id, int64_t layer_id,
                                        const char *curvature, const char *method, int64_t repeat,
                                        int64_t probe, const double *alpha, const double *beta,
                                        int64_t n, cs_err *err) CS_MUST_CHECK;
/* Ritz values (descending) with residual norms and convergence flags. */
cs_status cs_store_ritz(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                        int64_t repeat, const double *values, const double *residuals,
                        const int *converged, int64_t n, cs_err *err) CS_MUST_CHECK;
/* Sums of obd, obs, taylor, diag_ggn, diag_fisher_emp, diag_hessian over
 * the n parameters of one unit (unit -1: NULL, the parameters without one);
 * NaN sums are stored as NULL. */
cs_status cs_store_importance_unit(cs_store *s, int64_t run_id, int64_t layer_id, int64_t unit,
                                   int64_t n, const double sums[6], cs_err *err) CS_MUST_CHECK;
/* n elements of eigenvector k of parameter tensor param_id, from flat
 * index first_index. */
cs_status cs_store_eigenvector(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                               int64_t k, int64_t param_id, int64_t first_index, const double *values,
                               int64_t n, cs_err *err) CS_MUST_CHECK;
/* One point of the pruning check (accuracy NaN: NULL). */
cs_status cs_store_pruning_point(cs_store *s, int64_t run_id, const char *score, double fraction,
                                 int64_t n_pruned, double loss, double accuracy, cs_err *err) CS_MUST_CHECK;
cs_status cs_store_eigenvalues(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                               const char *repr, const double *values, int64_t n,
                               cs_err *err) CS_MUST_CHECK;

/* n histogram bins [lo[i], hi[i]) with their density. */
cs_status cs_store_density(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                           const double *lo, const double *hi, const double *density, int64_t n,
                           cs_err *err) CS_MUST_CHECK;

cs_status cs_store_repr_comparison(cs_store *s, int64_t run_id, int64_t layer_id,
                                   const char *curvature, const char *repr,
                                   const char *reference_repr, double rel_frobenius_error,
                                   double rel_lambda_max_error, double rel_trace_error,
                                   double top_eigvec_alignment, cs_err *err) CS_MUST_CHECK;

/* factor 'A' or 'G'; eigenvalues[0..n) descending (checked), k = 0 largest.
 * layer_id must name a layer. */
cs_status cs_store_kfac_factor(cs_store *s, int64_t run_id, int64_t layer_id,
                               const char *curvature, char factor, const double *eigenvalues,
                               int64_t n, cs_err *err) CS_MUST_CHECK;

/* Columns of importance rows for n consecutive scalars of one parameter
 * tensor, flat indices first_index .. first_index + n - 1.  Each array has n
 * entries or is NULL (the column is NULL). */
typedef struct cs_importance_cols {
    int64_t first_index;
    const double *value, *grad, *diag_ggn, *diag_fisher_emp, *diag_hessian, *obd, *obs, *taylor;
    const int *unit;  /* output unit / channel of each scalar; NULL or < 0: NULL */
} cs_importance_cols;
/* The parameter must be stored first (foreign key). */
cs_status cs_store_importance(cs_store *s, int64_t run_id, int64_t param_id,
                              const cs_importance_cols *cols, int64_t n, cs_err *err) CS_MUST_CHECK;

typedef struct cs_step_diag_row {
    const char *precond;
    double damping;            /* NAN -> NULL, as all doubles here */
    int64_t layer_id;          /* -1: the whole step (NULL) */
    double grad_norm, step_norm, cosine, predicted_decrease, actual_decrease, rho, best_lr;
    int has_best_change;       /* best_change stored only when set */
    double best_change;        /* L(theta + best_lr Delta) - L(theta) */
} cs_step_diag_row;
cs_status cs_store_step_diag(cs_store *s, int64_t run_id, const cs_step_diag_row *row,
                             cs_err *err) CS_MUST_CHECK;

cs_status cs_store_finetune_step(cs_store *s, int64_t run_id, int64_t epoch, int64_t step,
                                 double loss, double accuracy, double lr, double seconds,
                                 double samples_per_sec, cs_err *err) CS_MUST_CHECK;
cs_status cs_store_finetune_eval(cs_store *s, int64_t run_id, int64_t epoch, const char *split,
                                 double loss, double accuracy, cs_err *err) CS_MUST_CHECK;

/* One finetune_penalty row (rows_ewc.c). */
cs_status cs_store_finetune_penalty(cs_store *s, int64_t run_id, int64_t epoch, int64_t step, double penalty,
                                    cs_err *err) CS_MUST_CHECK;
/* One Laplace fit (laplace_fits, rows_laplace.c): the posterior's curvature,
 * representation, subset ('all' | 'last-layer'), prior mode ('fixed' |
 * 'scalar' | 'layer') and, for one prior over every layer, its value (NaN:
 * NULL, per layer), with the log marginal likelihood and its parts. */
typedef struct cs_laplace_fit_row {
    const char *curvature, *repr, *subset, *prior_mode;
    double prior_precision, log_marglik, log_lik, log_det_precision, log_det_prior;
    int64_t n_params, n_samples;
} cs_laplace_fit_row;
cs_status cs_store_laplace_fit(cs_store *s, int64_t run_id, const cs_laplace_fit_row *row, cs_err *err) CS_MUST_CHECK;
/* One layer's prior precision in the posterior (laplace_priors); the layer
 * must be stored first. */
cs_status cs_store_laplace_prior(cs_store *s, int64_t run_id, int64_t layer_id, double prior_precision,
                                 int64_t n_params, double sq_norm, cs_err *err) CS_MUST_CHECK;

/* One predictive's metrics on the test set (laplace_predictive). */
cs_status cs_store_laplace_predictive(cs_store *s, int64_t run_id, const char *method, int64_t n_test, double nll,
                                      double accuracy, double ece, double brier, cs_err *err) CS_MUST_CHECK;

/* Run arbitrary SQL (tests, README examples); callback may be NULL and
 * follows sqlite3_exec (return non-zero to stop, which is an error). */
cs_status cs_store_exec(cs_store *s, const char *sql, int (*cb)(void *, int, char **, char **),
                        void *ctx, cs_err *err) CS_MUST_CHECK;

#endif
