/* Importance scores as rows: per scalar (optionally only each layer's top
 * elements by each score), complete per-unit sums, and each layer's OBS
 * block as a convention (rows.h). */
#include "config.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "spectral/dense.h"
#include "store/rows.h"

/* One importance row per scalar (or, with top > 0, only the top `top`
 * elements of each layer by each score), and the complete per-unit sums. */
cs_status cs_store_write_importance(cs_store *db, int64_t run, const cs_graph *g, const cs_importance *imp,
                                    int64_t top, cs_err *err)
{
    cs_status st = CS_OK;
    if (!imp->n)
        return CS_OK;
    bool any_hessian = false, any_ggn = false, any_emp = false;
    for (int64_t i = 0; i < imp->n; i++) {
        any_hessian = any_hessian || !isnan(imp->diag_hessian[i]);
        any_ggn = any_ggn || !isnan(imp->diag_ggn[i]);
        any_emp = any_emp || !isnan(imp->diag_fisher_emp[i]);
    }
    const double *scores[6] = {imp->obd, imp->obs, imp->taylor, any_ggn ? imp->diag_ggn : NULL,
                               any_emp ? imp->diag_fisher_emp : NULL, any_hessian ? imp->diag_hessian : NULL};
    bool *keep = NULL;
    if (top > 0) {
        keep = calloc((size_t)imp->n + 1, sizeof(bool));
        double *tmp = malloc(sizeof(double) * (size_t)imp->n + 1);
        if (!keep || !tmp) {
            free(keep), free(tmp);
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        }
        for (int l = 0; l < g->n_layers; l++) {
            int64_t off = g->params[g->layers[l].first_param].offset, W = g->layers[l].numel;
            for (int k = 0; k < 6; k++) {
                if (!scores[k])
                    continue;
                /* the top-th largest value of this score in the layer */
                int64_t m = 0;
                for (int64_t i = 0; i < W; i++)
                    if (!isnan(scores[k][off + i]))
                        tmp[m++] = scores[k][off + i];
                if (m == 0)
                    continue;
                cs_sort_desc(tmp, m);
                double cut = tmp[(top < m ? top : m) - 1];
                int64_t taken = 0;
                for (int64_t i = 0; i < W && taken < top; i++)
                    if (scores[k][off + i] >= cut) {
                        keep[off + i] = true;
                        taken++;
                    }
            }
        }
        free(tmp);
    }
    for (int q = 0; q < g->n_params && !st; q++) {
        int64_t off = g->params[q].offset, n = cs_tensor_numel(&g->values[g->params[q].value].init);
        for (int64_t i = 0; i < n && !st;) {
            /* a run of consecutive kept elements */
            int64_t j = i;
            if (keep)
                while (j < n && keep[off + j])
                    j++;
            else
                j = n;
            if (j > i) {
                int64_t o = off + i;
                cs_importance_cols c = {.first_index = i, .value = imp->value + o,
                                        .grad = imp->grad ? imp->grad + o : NULL,
                                        .diag_ggn = any_ggn ? imp->diag_ggn + o : NULL,
                                        .diag_fisher_emp = any_emp ? imp->diag_fisher_emp + o : NULL,
                                        .diag_hessian = any_hessian ? imp->diag_hessian + o : NULL,
                                        .obd = imp->obd + o, .obs = imp->obs + o,
                                        .taylor = imp->taylor ? imp->taylor + o : NULL,
                                        .unit = imp->layer_unit + o};
                st = cs_store_importance(db, run, q, &c, j - i, err);
            }
            i = j > i ? j : i + 1;
        }
    }
    free(keep);
    /* Complete per-unit sums (unit -1: parameters without one). */
    for (int l = 0; l < g->n_layers && !st; l++) {
        int64_t off = g->params[g->layers[l].first_param].offset, W = g->layers[l].numel;
        int max_unit = -1;
        for (int64_t i = 0; i < W; i++)
            max_unit = imp->layer_unit[off + i] > max_unit ? imp->layer_unit[off + i] : max_unit;
        for (int u = -1; u <= max_unit && !st; u++) {
            double sums[6] = {0};
            int64_t n = 0;
            for (int64_t i = 0; i < W; i++) {
                if (imp->layer_unit[off + i] != u)
                    continue;
                n++;
                for (int k = 0; k < 6; k++)
                    sums[k] += scores[k] ? scores[k][off + i] : NAN;
            }
            if (n)
                st = cs_store_importance_unit(db, run, l, u, n, sums, err);
        }
    }
    for (int l = 0; l < g->n_layers && !st; l++) {
        char key[64], val[128];
        snprintf(key, sizeof key, "importance_obs_layer_%d", l);
        snprintf(val, sizeof val, "%s block, damping %.6g", imp->obs_repr[l] ? imp->obs_repr[l] : "none",
                 imp->damping[l]);
        st = cs_store_convention(db, run, key, val, err);
    }
    return st;
}
