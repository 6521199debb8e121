/* The gradient noise scale as rows (rows.h): one noise_scale row per layer
 * with per-sample gradients and one for the network, and the conventions
 * its numbers depend on. */
#include "config.h"

#include <stdio.h>

#include "store/rows.h"
#include "store/store_internal.h"

cs_status cs_store_write_noise(cs_store *s, int64_t run_id, const cs_curv_report *rep, cs_err *err)
{
    if (rep->n_noise == 0)
        return CS_OK;
    char groups[32];
    snprintf(groups, sizeof groups, "%d", rep->noise[0].groups);
    const char *const kv[][2] = {
        {"noise_scale_gradients", "per-sample gradients of the per-sample loss (true labels), "
                                  "the loss being the mean over samples"},
        {"noise_scale_estimator", "unbiased: tr(Sigma) = (sum |g_n|^2 - N |gbar|^2) / (N - 1), "
                                  "|G|^2 = |gbar|^2 - tr(Sigma) / N (McCandlish et al. 2018, eqs. A.2-A.3 "
                                  "with B_small = 1, B_big = N)"},
        {"noise_scale_stderr", "delta method for tr(Sigma) / |G|^2 over the (co)variances of the "
                               "estimators on noise_scale_groups contiguous groups of the data"},
        {"noise_scale_groups", groups},
    };
    cs_status st = store_put_conventions(s, run_id, kv, sizeof kv / sizeof kv[0], err);
    for (int i = 0; i < rep->n_noise && !st; i++) {
        const cs_noise_result *r = &rep->noise[i];
        if (!r->available)
            continue;
        const store_col c[] = {SC_INT(run_id), SC_COUNT(r->layer) /* -1: NULL, the network */,
                               SC_REAL(r->grad_sq_norm), SC_REAL(r->trace_cov), SC_REAL(r->b_simple),
                               SC_REAL(r->b_simple_se), SC_INT(r->n_samples), SC_INT(r->groups)};
        st = store_insert_row(s, ST_NOISE_SCALE, c, 8, err, "insert layer %d into noise_scale", r->layer);
    }
    return st;
}
