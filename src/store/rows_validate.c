/* influence --validate / --lds rows (rows.h): the correlations per method
 * and kind, the (predicted, actual) pairs they are computed from, and how
 * the retrainings tuned. */
#include "config.h"

#include <math.h>
#include <stdio.h>

#include "store/rows.h"
#include "store/store_internal.h"

static cs_status put_summary(cs_store *s, int64_t run_id, const char *kind, const cs_validate_method *v,
                             int64_t n_examples, int64_t n_queries, int64_t subset_size, const cs_validate_opts *o,
                             double pearson, double spearman, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_TEXT(kind), SC_TEXT(v->name), SC_INT(n_examples), SC_INT(n_queries),
                           SC_INT(subset_size), SC_INT(o->epochs), SC_REAL(o->lr), SC_REAL(pearson),
                           SC_REAL(spearman)};
    return store_insert_row(s, ST_INFLUENCE_VALIDATION, c, 10, err, "insert the %s %s row into influence_validation",
                            kind, v->name);
}

cs_status cs_store_write_influence_validation(cs_store *s, int64_t run_id, const cs_validate_opts *o,
                                              const cs_validate_result *r, cs_err *err)
{
    char tuning[300];
    snprintf(tuning, sizeof tuning, "from the model's weights, full-batch gradient descent (sgd, momentum 0, "
             "batch = the examples tuned on), %d steps, lr %.17g, weight decay %.17g, seed %llu",
             o->epochs, o->lr, o->weight_decay, (unsigned long long)o->seed);
    cs_status st = cs_store_convention(s, run_id, "influence_validation_tuning", tuning, err);
    int64_t Q = r->n_query;
    for (int k = 0; k < r->n_methods && !st; k++) {
        const cs_validate_method *v = &r->methods[k];
        if (r->n_loo) {
            st = put_summary(s, run_id, "loo", v, r->n_loo, Q, r->n_train - 1, o, v->loo_pearson, v->loo_spearman,
                             err);
            for (int64_t a = 0; a < r->n_loo && !st; a++)
                for (int64_t q = 0; q < Q && !st; q++) {
                    const store_col c[] = {SC_INT(run_id), SC_TEXT(v->name), SC_INT(r->loo_index[a]), SC_INT(q),
                                           SC_REAL(v->loo_predicted[a * Q + q]), SC_REAL(r->loo_actual[a * Q + q])};
                    st = store_insert_row(s, ST_INFLUENCE_LOO, c, 6, err,
                                          "insert %s train %lld query %lld into influence_loo", v->name,
                                          (long long)r->loo_index[a], (long long)q);
                }
        }
        if (r->n_lds && !st) {
            st = put_summary(s, run_id, "lds", v, r->n_lds, v->lds_queries, r->subset_size, o, v->lds_pearson, v->lds,
                             err);
            for (int64_t t = 0; t < r->n_lds && !st; t++)
                for (int64_t q = 0; q < Q && !st; q++) {
                    const store_col c[] = {SC_INT(run_id), SC_TEXT(v->name), SC_INT(t), SC_INT(q),
                                           SC_REAL(v->lds_predicted[t * Q + q]), SC_REAL(r->lds_actual[t * Q + q])};
                    st = store_insert_row(s, ST_INFLUENCE_LDS, c, 6, err,
                                          "insert %s subset %lld query %lld into influence_lds", v->name,
                                          (long long)t, (long long)q);
                }
        }
    }
    return st;
}
