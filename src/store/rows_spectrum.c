/* Whole-network and large-layer matrix-free spectra as rows (rows.h). */
#include "config.h"

#include <math.h>

#include "store/rows.h"

/* Whole-network matrix-free results: Lanczos (top / bottom eigenvalues
 * and all Ritz values per repeat with residuals, the tridiagonals), SLQ
 * (density, tridiagonals, trace from its moments), Hutchinson, power. */
cs_status cs_store_write_spectra(cs_store *db, int64_t run, const cs_graph *g, const cs_net_spectrum *spec,
                                 int n, int topk, const cs_curv_report *rep, cs_err *err)
{
    cs_status st = CS_OK;
    for (int i = 0; i < n && !st; i++) {
        const cs_net_spectrum *s = &spec[i];
        const char *cn = cs_curv_name(s->curv);
        const cs_lanczos_result *L = &s->lanczos[0];
        int m = L->steps, top = topk < m / 2 ? topk : m / 2, bottom = topk < m - top ? topk : m - top;
        if (top < 1 && m > 0)
            top = 1;
        double lmin = m ? L->ritz[m - 1] : NAN;
        cs_curv_row row = {.layer_id = s->layer, .curvature = cn, .repr = "full", .method = "lanczos",
                           .dim = s->dim, .trace = NAN, .trace_stderr = NAN, .frobenius = NAN,
                           .lambda_max = m ? L->ritz[0] : NAN, .lambda_min = lmin,
                           .condition = lmin > 0 ? L->ritz[0] / lmin : NAN, .effective_rank = NAN,
                           .seconds = s->seconds_lanczos};
        st = cs_store_curvature(db, run, &row, err);
        if (!st)
            st = cs_store_spectrum(db, run, s->layer, cn, "full", "lanczos", 0, L->ritz, top, err);
        if (!st && bottom > 0)
            st = cs_store_spectrum(db, run, s->layer, cn, "full", "lanczos", s->dim - bottom, L->ritz + (m - bottom),
                                   bottom, err);
        for (int r = 0; r < s->repeats && !st; r++) {
            const cs_lanczos_result *R = &s->lanczos[r];
            st = cs_store_ritz(db, run, s->layer, cn, r, R->ritz, R->residual, s->converged[r], R->steps, err);
            if (!st)
                st = cs_store_lanczos_coefficients(db, run, s->layer, cn, "lanczos", r, 0, R->alpha, R->beta,
                                                   R->steps, err);
        }
        if (s->slq.probes > 0 && !st) {
            double lo = INFINITY, hi = -INFINITY;
            for (int p = 0; p < s->slq.probes; p++)
                for (int k = 0; k < s->slq.n_steps[p]; k++) {
                    lo = fmin(lo, s->slq.nodes[p * s->slq.steps + k]);
                    hi = fmax(hi, s->slq.nodes[p * s->slq.steps + k]);
                }
            cs_curv_row srow = {.layer_id = s->layer, .curvature = cn, .repr = "full", .method = "slq",
                                .dim = s->dim, .trace = s->slq_mean * (double)s->dim,
                                .trace_stderr = s->slq_mean_stderr * (double)s->dim,
                                .frobenius = sqrt(fmax(0, s->slq_mean_sq) * (double)s->dim),
                                .lambda_max = hi, .lambda_min = lo, .condition = NAN,
                                .effective_rank = s->slq_effective_rank, .seconds = s->seconds_slq};
            st = cs_store_curvature(db, run, &srow, err);
            for (int p = 0; p < s->slq.probes && !st; p++)
                st = cs_store_lanczos_coefficients(db, run, s->layer, cn, "slq", 0, p, s->slq.alpha + p * s->slq.steps,
                                                   s->slq.beta + p * s->slq.steps, s->slq.n_steps[p], err);
            if (!st)
                st = cs_store_density(db, run, s->layer, cn, s->edges, s->edges + 1, s->density, s->bins, err);
            cs_curv_row hrow = {.layer_id = s->layer, .curvature = cn, .repr = "full", .method = "hutchinson",
                                .dim = s->dim, .trace = s->hutch_trace, .trace_stderr = s->hutch_stderr,
                                .frobenius = NAN, .lambda_max = NAN, .lambda_min = NAN, .condition = NAN,
                                .effective_rank = NAN, .seconds = s->seconds_hutch};
            if (!st)
                st = cs_store_curvature(db, run, &hrow, err);
        }
        /* Ritz vectors, element by element (whole network: every tensor;
         * a layer block: its tensors). */
        for (int v = 0; v < L->n_vectors && !st; v++) {
            const double *vec = L->vectors + (size_t)v * (size_t)s->dim;
            int64_t base = s->layer < 0 ? 0 : g->params[g->layers[s->layer].first_param].offset;
            for (int q = 0; q < g->n_params && !st; q++) {
                if (s->layer >= 0 && g->params[q].layer != s->layer)
                    continue;
                int64_t nq = cs_tensor_numel(&g->values[g->params[q].value].init);
                st = cs_store_eigenvector(db, run, s->layer, cn, v, q, 0, vec + (g->params[q].offset - base), nq, err);
            }
        }
        /* Against the exact whole-network block when the run has it: how
         * far the matrix-free estimates are (repr 'lanczos' rows). */
        const cs_curv_result *ex = s->layer < 0 ? cs_curv_report_find(rep, s->curv, CS_REPR_FULL, -1) : NULL;
        if (!ex && s->layer < 0 && s->curv == CS_CURV_FISHER)
            ex = cs_curv_report_find(rep, CS_CURV_GGN, CS_REPR_FULL, -1);
        if (ex && !st && m > 0)
            st = cs_store_repr_comparison(db, run, -1, cn, "lanczos", "full", NAN,
                                          fabs(L->ritz[0] - ex->sum.lambda_max) / fabs(ex->sum.lambda_max),
                                          s->slq.probes > 0
                                              ? fabs(s->slq_mean * (double)s->dim - ex->sum.trace) / fabs(ex->sum.trace)
                                              : NAN,
                                          NAN, err);
        if (s->power_iters > 0 && !st) {
            cs_curv_row prow = {.layer_id = s->layer, .curvature = cn, .repr = "full", .method = "power",
                                .dim = s->dim, .trace = NAN, .trace_stderr = NAN, .frobenius = NAN,
                                .lambda_max = s->power_lambda, .lambda_min = NAN, .condition = NAN,
                                .effective_rank = NAN, .seconds = s->seconds_power};
            st = cs_store_curvature(db, run, &prow, err);
        }
    }
    return st;
}
