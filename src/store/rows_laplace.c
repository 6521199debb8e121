/* The Laplace tables: laplace_fits and laplace_priors (store.h). */
#include "config.h"

#include "store/store.h"
#include "store/store_internal.h"

cs_status cs_store_laplace_fit(cs_store *s, int64_t run_id, const cs_laplace_fit_row *r, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id),          SC_TEXT(r->curvature),   SC_TEXT(r->repr),
                           SC_TEXT(r->subset),      SC_TEXT(r->prior_mode),  SC_REAL(r->prior_precision),
                           SC_REAL(r->log_marglik), SC_REAL(r->log_lik),     SC_REAL(r->log_det_precision),
                           SC_REAL(r->log_det_prior), SC_INT(r->n_params),   SC_INT(r->n_samples)};
    return store_insert_row(s, ST_LAPLACE_FIT, c, 12, err, "insert the %s %s fit into laplace_fits", r->curvature,
                            r->repr);
}

cs_status cs_store_laplace_prior(cs_store *s, int64_t run_id, int64_t layer_id, double prior_precision,
                                 int64_t n_params, double sq_norm, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_INT(layer_id), SC_REAL(prior_precision), SC_INT(n_params),
                           SC_REAL(sq_norm)};
    return store_insert_row(s, ST_LAPLACE_PRIOR, c, 5, err, "insert layer %lld into laplace_priors",
                            (long long)layer_id);
}

cs_status cs_store_laplace_predictive(cs_store *s, int64_t run_id, const char *method, int64_t n_test, double nll,
                                      double accuracy, double ece, double brier, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_TEXT(method), SC_INT(n_test), SC_REAL(nll),
                           SC_REAL(accuracy), SC_REAL(ece), SC_REAL(brier)};
    return store_insert_row(s, ST_LAPLACE_PREDICTIVE, c, 7, err, "insert the %s predictive into laplace_predictive",
                            method);
}
