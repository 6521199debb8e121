/* Elastic weight consolidation in the database: reading an analyze run's
 * Fisher diagonal and weights for finetune --ewc, and the finetune_penalty
 * rows and ewc_* conventions of the tuning run (rows.h, store.h). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/rows.h"
#include "store/store_internal.h"

cs_status cs_store_finetune_penalty(cs_store *s, int64_t run_id, int64_t epoch, int64_t step, double penalty,
                                    cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_INT(epoch), SC_INT(step), SC_REAL(penalty)};
    return store_insert_row(s, ST_FINETUNE_PENALTY, c, 4, err, "insert step %lld into finetune_penalty",
                            (long long)step);
}

/* ---- reading run ewc_run ---- */

typedef struct ewc_read {
    const cs_graph *g;
    cs_ewc *e;
    int64_t run;
    const char *column;
    /* runs row */
    int found;
    char kind[16], status[16];
    /* params rows: the first mismatch, in words */
    int n_params;
    char mismatch[400];
    /* importance rows */
    int64_t n_rows, n_null;
    char *seen;        /* [P]: scalar i had a row */
    int bad_index;     /* a row outside the model's parameters */
} ewc_read;

static int read_run(void *ctx, int n, char **v, char **names)
{
    (void)n, (void)names;
    ewc_read *r = ctx;
    r->found = 1;
    snprintf(r->kind, sizeof r->kind, "%s", v[0] ? v[0] : "");
    snprintf(r->status, sizeof r->status, "%s", v[1] ? v[1] : "");
    return 0;
}

static int read_param(void *ctx, int n, char **v, char **names)
{
    (void)n, (void)names;
    ewc_read *r = ctx;
    int q = r->n_params++;
    if (r->mismatch[0])
        return 0;
    if (q >= r->g->n_params) {
        snprintf(r->mismatch, sizeof r->mismatch, "it has a parameter %d '%s' the model lacks", q, v[0]);
        return 0;
    }
    const cs_value *val = &r->g->values[r->g->params[q].value];
    char shape[128];
    cs_shape_str(&val->init, shape, sizeof shape);
    if (strcmp(v[0], val->name) != 0 || strcmp(v[1], shape) != 0)
        snprintf(r->mismatch, sizeof r->mismatch, "its parameter %d is '%s' %s, the model's '%s' %s", q, v[0],
                 v[1], val->name, shape);
    return 0;
}

static int read_importance(void *ctx, int n, char **v, char **names)
{
    (void)n, (void)names;
    ewc_read *r = ctx;
    long q = strtol(v[0], NULL, 10);
    long long k = strtoll(v[1], NULL, 10);
    if (q < 0 || q >= r->g->n_params || k < 0 || k >= cs_tensor_numel(&r->g->values[r->g->params[q].value].init)) {
        r->bad_index = 1;
        return 0;
    }
    int64_t i = r->g->params[q].offset + k;
    r->n_rows += !r->seen[i];
    r->seen[i] = 1;
    if (!v[2] || !v[3]) {
        r->n_null++;
        return 0;
    }
    /* %!.17g (below): every digit of the stored double */
    r->e->anchor[i] = strtod(v[2], NULL);
    r->e->fisher[i] = strtod(v[3], NULL);
    return 0;
}

cs_status cs_store_read_ewc(cs_store *s, int64_t ewc_run, const cs_graph *g, const char *curvature, cs_ewc *e,
                            cs_err *err)
{
    const char *column = strcmp(curvature, "fisher_emp") == 0 ? "diag_fisher_emp"
                         : strcmp(curvature, "ggn") == 0 || strcmp(curvature, "fisher") == 0 ? "diag_ggn"
                                                                                              : NULL;
    if (!column)
        return cs_fail(err, CS_ERR_USAGE, "--ewc-curvature is ggn, fisher or fisher_emp, got '%s'", curvature);
    ewc_read r = {.g = g, .e = e, .run = ewc_run, .column = column};
    char sql[400];
    snprintf(sql, sizeof sql, "SELECT kind, status FROM runs WHERE id = %lld", (long long)ewc_run);
    cs_status st = cs_store_exec(s, sql, read_run, &r, err);
    if (st)
        return st;
    if (!r.found)
        return cs_fail(err, CS_ERR_USAGE, "--ewc: there is no run %lld in '%s'", (long long)ewc_run,
                       cs_store_path(s));
    if (strcmp(r.kind, "analyze") != 0)
        return cs_fail(err, CS_ERR_USAGE, "--ewc: run %lld in '%s' is a %s run, not an analyze run",
                       (long long)ewc_run, cs_store_path(s), r.kind);
    if (strcmp(r.status, "done") != 0)
        return cs_fail(err, CS_ERR_USAGE, "--ewc: analyze run %lld in '%s' did not finish (status %s)",
                       (long long)ewc_run, cs_store_path(s), r.status);
    snprintf(sql, sizeof sql, "SELECT name, shape FROM params WHERE run_id = %lld ORDER BY param_id",
             (long long)ewc_run);
    if ((st = cs_store_exec(s, sql, read_param, &r, err)))
        return st;
    if (!r.mismatch[0] && r.n_params != g->n_params)
        snprintf(r.mismatch, sizeof r.mismatch, "it has %d parameter tensors, the model %d", r.n_params,
                 g->n_params);
    if (r.mismatch[0])
        return cs_fail(err, CS_ERR_USAGE, "--ewc: the model is not the one of analyze run %lld: %s",
                       (long long)ewc_run, r.mismatch);
    if ((st = cs_ewc_alloc(e, g->n_param_scalars, err)))
        return st;
    r.seen = calloc((size_t)g->n_param_scalars + 1, 1);
    if (!r.seen) {
        cs_ewc_free(e);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory reading run %lld's Fisher", (long long)ewc_run);
    }
    snprintf(sql, sizeof sql,
             "SELECT param_id, flat_index, printf('%%!.17g', value), printf('%%!.17g', %s) FROM importance "
             "WHERE run_id = %lld", column, (long long)ewc_run);
    st = cs_store_exec(s, sql, read_importance, &r, err);
    free(r.seen);
    if (!st && r.n_rows == 0)
        st = cs_fail(err, CS_ERR_USAGE, "--ewc: analyze run %lld stored no importance rows (analyze with "
                     "--importance)", (long long)ewc_run);
    else if (!st && (r.bad_index || r.n_rows != g->n_param_scalars))
        st = cs_fail(err, CS_ERR_USAGE, "--ewc: analyze run %lld stored importance for %lld of the model's %lld "
                     "parameters (analyze with --importance, without --importance-top)", (long long)ewc_run,
                     (long long)r.n_rows, (long long)g->n_param_scalars);
    else if (!st && r.n_null)
        st = cs_fail(err, CS_ERR_USAGE, "--ewc: analyze run %lld has no %s for %lld parameters (analyze with "
                     "--importance and --curvature including %s)", (long long)ewc_run, column,
                     (long long)r.n_null, strcmp(column, "diag_ggn") == 0 ? "ggn" : "fisher_emp");
    for (int64_t i = 0; !st && i < e->n; i++)
        if (!isfinite(e->fisher[i]) || e->fisher[i] < 0 || !isfinite(e->anchor[i]))
            st = cs_fail(err, CS_ERR_FORMAT, "--ewc: analyze run %lld has a Fisher diagonal %g or weight %g that "
                         "is negative or not finite", (long long)ewc_run, e->fisher[i], e->anchor[i]);
    if (st)
        cs_ewc_free(e);
    return st;
}

cs_status cs_store_write_ewc_conventions(cs_store *s, int64_t run_id, int64_t ewc_run, const char *curvature,
                                         const char *repr, int n_kfac, double lambda, cs_err *err)
{
    char run[32], lam[64], form[300];
    snprintf(run, sizeof run, "%lld", (long long)ewc_run);
    snprintf(lam, sizeof lam, "%.17g", lambda);
    if (strcmp(repr, "kfac") == 0)
        snprintf(form, sizeof form, "kfac: (lambda/2) tr(dW^T G dW A) for %d layers (Ritter et al. 2018), factors "
                 "on the old data at theta*; the other layers diag", n_kfac);
    else
        snprintf(form, sizeof form, "diag: (lambda/2) sum_i F_i (theta_i - theta*_i)^2 (Kirkpatrick et al. 2017, "
                 "eq. 3)");
    const char *const kv[][2] = {
        {"ewc_run", run},
        {"ewc_lambda", lam},
        {"ewc_curvature", curvature},
        {"ewc_form", form},
        {"ewc_anchor", "theta* = importance.value of the ewc_run (the weights analyzed)"},
        {"ewc_scaling", "F is the mean over the analyzed run's samples, the loss the mean over the batch: "
                        "objective = mean loss + penalty"}};
    return store_put_conventions(s, run_id, kv, sizeof kv / sizeof kv[0], err);
}
