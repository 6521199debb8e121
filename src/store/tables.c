/* One insert function per result table (store.h states their contract):
 * each checks what SQLite cannot (layer ids, rank order, array presence)
 * and hands its columns to store_insert_row or store_insert_rows. */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#include "store/store_internal.h"

static const char *or_null(const char *s)
{
    return s ? s : "(null)";
}

static cs_status check_layer(cs_store *s, int64_t layer_id, const char *table, cs_err *err)
{
    if (layer_id < -1)
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot insert into %s in '%s': layer_id %lld (must be >= 0, or -1 for "
                       "the whole network)", table, cs_store_path(s), (long long)layer_id);
    return CS_OK;
}

/* A multi-row call's layer, and its n rows' arrays (present when
 * arrays_given): else "cannot insert into TABLE in PATH: N MISSING". */
static cs_status check_rows(cs_store *s, const char *table, int64_t layer_id, int64_t n, bool arrays_given,
                            const char *missing, cs_err *err)
{
    cs_status r = check_layer(s, layer_id, table, err);
    if (r == CS_OK && (n < 0 || (n > 0 && !arrays_given)))
        r = cs_fail(err, CS_ERR_RUNTIME, "cannot insert into %s in '%s': %lld %s", table, cs_store_path(s),
                    (long long)n, missing);
    return r;
}

/* A spectrum must be rank-ordered (k = 0 largest) and finite-or-infinite,
 * never NaN, so that k means the same thing in every row. */
static cs_status check_spectrum(cs_store *s, const char *table, const double *values, int64_t n,
                                cs_err *err)
{
    const char *path = cs_store_path(s);
    if (n < 0 || (n > 0 && !values))
        return cs_fail(err, CS_ERR_RUNTIME, "cannot insert into %s in '%s': %lld values at %p",
                       table, path, (long long)n, (const void *)values);
    for (int64_t k = 0; k < n; k++) {
        if (isnan(values[k]))
            return cs_fail(err, CS_ERR_RUNTIME, "cannot insert into %s in '%s': value %lld is NaN",
                           table, path, (long long)k);
        if (k > 0 && values[k] > values[k - 1])
            return cs_fail(err, CS_ERR_RUNTIME,
                           "cannot insert into %s in '%s': values not in descending order at "
                           "k = %lld (%g after %g)", table, path, (long long)k, values[k],
                           values[k - 1]);
    }
    return CS_OK;
}

/* -------------------------------------------------------- single rows */

cs_status cs_store_convention(cs_store *s, int64_t run_id, const char *key, const char *value,
                              cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_TEXT(key), SC_TEXT(value)};
    return store_insert_row(s, ST_CONVENTION, c, 3, err, "insert '%s' into conventions", or_null(key));
}

cs_status cs_store_layer(cs_store *s, int64_t run_id, int64_t layer_id, const char *name,
                         const char *op_type, int64_t n_params, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_INT(layer_id), SC_TEXT(name), SC_TEXT(op_type),
                           SC_INT(n_params)};
    return store_insert_row(s, ST_LAYER, c, 5, err, "insert layer %lld into layers", (long long)layer_id);
}

cs_status cs_store_param(cs_store *s, int64_t run_id, int64_t param_id, int64_t layer_id,
                         const char *name, const char *shape, int64_t numel, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_INT(param_id), SC_INT(layer_id),
                           SC_TEXT(name), SC_TEXT(shape), SC_INT(numel)};
    return store_insert_row(s, ST_PARAM, c, 6, err, "insert parameter %lld into params",
                            (long long)param_id);
}

cs_status cs_store_param_part(cs_store *s, int64_t run_id, int64_t param_id, const char *source,
                              const char *source_shape, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_INT(param_id), SC_TEXT(source), SC_TEXT(source_shape)};
    return store_insert_row(s, ST_PARAM_PART, c, 4, err, "insert parameter %lld into param_parts",
                            (long long)param_id);
}

cs_status cs_store_curvature(cs_store *s, int64_t run_id, const cs_curv_row *row, cs_err *err)
{
    cs_status r = check_layer(s, row->layer_id, "curvature", err);
    if (r != CS_OK)
        return r;
    const store_col c[] = {SC_INT(run_id), SC_COUNT(row->layer_id), SC_TEXT(row->curvature),
                           SC_TEXT(row->repr), SC_TEXT(row->method), SC_COUNT(row->dim),
                           SC_REAL(row->trace), SC_REAL(row->trace_stderr), SC_REAL(row->frobenius),
                           SC_REAL(row->lambda_max), SC_REAL(row->lambda_min), SC_REAL(row->condition),
                           SC_REAL(row->effective_rank), SC_REAL(row->seconds)};
    return store_insert_row(s, ST_CURVATURE, c, 14, err, "insert %s/%s of layer %lld into curvature",
                            or_null(row->curvature), or_null(row->repr), (long long)row->layer_id);
}

cs_status cs_store_repr_comparison(cs_store *s, int64_t run_id, int64_t layer_id,
                                   const char *curvature, const char *repr,
                                   const char *reference_repr, double rel_frobenius_error,
                                   double rel_lambda_max_error, double rel_trace_error,
                                   double top_eigvec_alignment, cs_err *err)
{
    cs_status r = check_layer(s, layer_id, "repr_comparison", err);
    if (r != CS_OK)
        return r;
    const store_col c[] = {SC_INT(run_id), SC_COUNT(layer_id), SC_TEXT(curvature), SC_TEXT(repr),
                           SC_TEXT(reference_repr), SC_REAL(rel_frobenius_error),
                           SC_REAL(rel_lambda_max_error), SC_REAL(rel_trace_error),
                           SC_REAL(top_eigvec_alignment)};
    return store_insert_row(s, ST_REPR_COMPARISON, c, 9, err, "insert layer %lld into repr_comparison",
                            (long long)layer_id);
}

cs_status cs_store_step_diag(cs_store *s, int64_t run_id, const cs_step_diag_row *row,
                             cs_err *err)
{
    cs_status r = check_layer(s, row->layer_id, "step_diagnostics", err);
    if (r != CS_OK)
        return r;
    const store_col c[] = {SC_INT(run_id), SC_TEXT(row->precond), SC_REAL(row->damping),
                           SC_COUNT(row->layer_id), SC_REAL(row->grad_norm), SC_REAL(row->step_norm),
                           SC_REAL(row->cosine), SC_REAL(row->predicted_decrease),
                           SC_REAL(row->actual_decrease), SC_REAL(row->rho), SC_REAL(row->best_lr),
                           SC_REAL(row->has_best_change ? row->best_change : NAN)};
    return store_insert_row(s, ST_STEP_DIAG, c, 12, err, "insert into step_diagnostics");
}

cs_status cs_store_finetune_step(cs_store *s, int64_t run_id, int64_t epoch, int64_t step,
                                 double loss, double accuracy, double lr, double seconds,
                                 double samples_per_sec, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_INT(epoch), SC_INT(step), SC_REAL(loss),
                           SC_REAL(accuracy), SC_REAL(lr), SC_REAL(seconds), SC_REAL(samples_per_sec)};
    return store_insert_row(s, ST_FINETUNE_STEP, c, 8, err, "insert step %lld into finetune_steps",
                            (long long)step);
}

cs_status cs_store_finetune_eval(cs_store *s, int64_t run_id, int64_t epoch, const char *split,
                                 double loss, double accuracy, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_INT(epoch), SC_TEXT(split), SC_REAL(loss),
                           SC_REAL(accuracy)};
    return store_insert_row(s, ST_FINETUNE_EVAL, c, 5, err, "insert epoch %lld into finetune_evals",
                            (long long)epoch);
}

cs_status cs_store_importance_unit(cs_store *s, int64_t run_id, int64_t layer_id, int64_t unit,
                                   int64_t n, const double sums[6], cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_INT(layer_id), SC_COUNT(unit) /* -1: NULL */, SC_INT(n),
                           SC_REAL(sums[0]), SC_REAL(sums[1]), SC_REAL(sums[2]), SC_REAL(sums[3]),
                           SC_REAL(sums[4]), SC_REAL(sums[5])};
    return store_insert_row(s, ST_IMP_UNIT, c, 10, err, "insert unit %lld of layer %lld into importance_units",
                            (long long)unit, (long long)layer_id);
}

cs_status cs_store_pruning_point(cs_store *s, int64_t run_id, const char *score, double fraction,
                                 int64_t n_pruned, double loss, double accuracy, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_TEXT(score), SC_REAL(fraction), SC_INT(n_pruned),
                           SC_REAL(loss), SC_REAL(accuracy)};
    return store_insert_row(s, ST_PRUNE, c, 6, err, "insert %s at %g into pruning_curve", or_null(score),
                            fraction);
}

/* ----------------------------------------------------------- many rows */

cs_status cs_store_spectrum(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                           const char *repr, const char *method, int64_t first_k,
                           const double *values, int64_t n, cs_err *err)
{
    cs_status r = check_layer(s, layer_id, "eigenvalues", err);
    if (r == CS_OK)
        r = check_spectrum(s, "eigenvalues", values, n, err);
    if (r == CS_OK && first_k < 0)
        r = cs_fail(err, CS_ERR_RUNTIME, "cannot insert into eigenvalues in '%s': first k %lld",
                    cs_store_path(s), (long long)first_k);
    if (r != CS_OK)
        return r;
    const char *m = method ? method : "exact";
    char what[200], where[64];
    snprintf(what, sizeof what, "%s/%s/%s eigenvalue ", or_null(curvature), or_null(repr), m);
    snprintf(where, sizeof where, " of layer %lld into eigenvalues", (long long)layer_id);
    const store_col fixed[] = {SC_INT(run_id), SC_COUNT(layer_id), SC_TEXT(curvature), SC_TEXT(repr),
                               SC_TEXT(m)};
    const store_array cols[] = {{'f', values}};
    const store_rows rows = {fixed, 5, true, first_k, cols, 1, what, where};
    return store_insert_rows(s, ST_SPECTRUM, &rows, n, err);
}

/* The exact spectrum is method 'exact' from rank 0 (the schema's default). */
cs_status cs_store_eigenvalues(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                               const char *repr, const double *values, int64_t n, cs_err *err)
{
    return cs_store_spectrum(s, run_id, layer_id, curvature, repr, "exact", 0, values, n, err);
}

cs_status cs_store_lanczos_coefficients(cs_store *s, int64_t run_id, int64_t layer_id,
                                        const char *curvature, const char *method, int64_t repeat,
                                        int64_t probe, const double *alpha, const double *beta,
                                        int64_t n, cs_err *err)
{
    cs_status r = check_rows(s, "lanczos_coefficients", layer_id, n, alpha && beta,
                             "steps without coefficients", err);
    if (r != CS_OK)
        return r;
    char where[80];
    snprintf(where, sizeof where, " of probe %lld into lanczos_coefficients", (long long)probe);
    const store_col fixed[] = {SC_INT(run_id), SC_COUNT(layer_id), SC_TEXT(curvature), SC_TEXT(method),
                               SC_INT(repeat), SC_INT(probe)};
    const store_array cols[] = {{'f', alpha}, {'f', beta}};
    const store_rows rows = {fixed, 6, true, 0, cols, 2, "step ", where};
    return store_insert_rows(s, ST_LANCZOS, &rows, n, err);
}

cs_status cs_store_ritz(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                        int64_t repeat, const double *values, const double *residuals,
                        const int *converged, int64_t n, cs_err *err)
{
    cs_status r = check_layer(s, layer_id, "ritz_values", err);
    if (r == CS_OK)
        r = check_spectrum(s, "ritz_values", values, n, err);
    if (r != CS_OK)
        return r;
    const store_col fixed[] = {SC_INT(run_id), SC_COUNT(layer_id), SC_TEXT(curvature), SC_INT(repeat)};
    const store_array cols[] = {{'f', values}, {'f', residuals}, {'b', converged}};
    const store_rows rows = {fixed, 4, true, 0, cols, 3, "Ritz value ", " into ritz_values"};
    return store_insert_rows(s, ST_RITZ, &rows, n, err);
}

cs_status cs_store_eigenvector(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                               int64_t k, int64_t param_id, int64_t first_index, const double *values,
                               int64_t n, cs_err *err)
{
    char where[80];
    snprintf(where, sizeof where, " of eigenvector %lld into eigenvectors", (long long)k);
    const store_col fixed[] = {SC_INT(run_id), SC_COUNT(layer_id), SC_TEXT(curvature), SC_INT(k),
                               SC_INT(param_id)};
    const store_array cols[] = {{'f', values}};
    const store_rows rows = {fixed, 5, true, first_index, cols, 1, "element ", where};
    return store_insert_rows(s, ST_EIGVEC, &rows, n, err);
}

cs_status cs_store_kfac_factor(cs_store *s, int64_t run_id, int64_t layer_id,
                               const char *curvature, char factor, const double *eigenvalues,
                               int64_t n, cs_err *err)
{
    if (factor != 'A' && factor != 'G')
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot insert into kfac_factors in '%s': factor '%c' (expected A or G)",
                       cs_store_path(s), factor ? factor : '?');
    if (layer_id < 0)
        return cs_fail(err, CS_ERR_RUNTIME,
                       "cannot insert into kfac_factors in '%s': layer_id %lld (K-FAC factors "
                       "belong to a layer)", cs_store_path(s), (long long)layer_id);
    cs_status r = check_spectrum(s, "kfac_factors", eigenvalues, n, err);
    if (r != CS_OK)
        return r;
    char fac[2] = {factor, '\0'}, what[32], where[64];
    snprintf(what, sizeof what, "factor %c value ", factor);
    snprintf(where, sizeof where, " of layer %lld into kfac_factors", (long long)layer_id);
    const store_col fixed[] = {SC_INT(run_id), SC_INT(layer_id), SC_TEXT(curvature), SC_TEXT(fac)};
    const store_array cols[] = {{'f', eigenvalues}};
    const store_rows rows = {fixed, 4, true, 0, cols, 1, what, where};
    return store_insert_rows(s, ST_KFAC_FACTOR, &rows, n, err);
}

cs_status cs_store_density(cs_store *s, int64_t run_id, int64_t layer_id, const char *curvature,
                           const double *lo, const double *hi, const double *density, int64_t n,
                           cs_err *err)
{
    cs_status r = check_rows(s, "density", layer_id, n, lo && hi && density,
                             "bins without lo, hi and density arrays", err);
    if (r != CS_OK)
        return r;
    char where[64];
    snprintf(where, sizeof where, " of layer %lld into density", (long long)layer_id);
    const store_col fixed[] = {SC_INT(run_id), SC_COUNT(layer_id), SC_TEXT(curvature)};
    const store_array cols[] = {{'f', lo}, {'f', hi}, {'f', density}};
    const store_rows rows = {fixed, 3, false, 0, cols, 3, "bin ", where};
    return store_insert_rows(s, ST_DENSITY, &rows, n, err);
}

cs_status cs_store_importance(cs_store *s, int64_t run_id, int64_t param_id,
                              const cs_importance_cols *cols, int64_t n, cs_err *err)
{
    if (n < 0 || cols->first_index < 0)
        return cs_fail(err, CS_ERR_RUNTIME, "cannot insert into importance in '%s': %lld rows "
                       "from index %lld", cs_store_path(s), (long long)n, (long long)cols->first_index);
    char where[64];
    snprintf(where, sizeof where, " of parameter %lld into importance", (long long)param_id);
    const store_col fixed[] = {SC_INT(run_id), SC_INT(param_id)};
    const store_array arrays[] = {{'f', cols->value}, {'f', cols->grad}, {'f', cols->diag_ggn},
                                  {'f', cols->diag_fisher_emp}, {'f', cols->diag_hessian},
                                  {'f', cols->obd}, {'f', cols->obs}, {'f', cols->taylor},
                                  {'u', cols->unit}};
    const store_rows rows = {fixed, 2, true, cols->first_index, arrays, 9, "index ", where};
    return store_insert_rows(s, ST_IMPORTANCE, &rows, n, err);
}
