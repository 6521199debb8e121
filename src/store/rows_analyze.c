/* analyze's result rows: the model's layers and parameters, the
 * conventions behind the numbers, per-layer curvature results, step
 * diagnostics and the pruning curve (rows.h states the contract). */
#include "config.h"

#include <math.h>

#include <stdarg.h>
#include <stdio.h>

#include "store/rows.h"
#include "store/store_internal.h"

cs_status store_put_conventions(cs_store *s, int64_t run_id, const char *const (*kv)[2], size_t n,
                                cs_err *err)
{
    cs_status st = CS_OK;
    for (size_t i = 0; i < n && !st; i++)
        st = cs_store_convention(s, run_id, kv[i][0], kv[i][1], err);
    return st;
}

/* One convention whose value is a number formatted by fmt, unless st
 * already failed. */
static cs_status put_number(cs_store *s, int64_t run_id, cs_status st, const char *key, cs_err *err,
                            const char *fmt, ...) CS_PRINTF(6, 7);
static cs_status put_number(cs_store *s, int64_t run_id, cs_status st, const char *key, cs_err *err,
                            const char *fmt, ...)
{
    if (st)
        return st;
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return cs_store_convention(s, run_id, key, buf, err);
}

/* Provenance rows: the conventions behind the numbers of this run. */
cs_status cs_store_write_analyze_conventions(cs_store *s, int64_t run_id, cs_loss_kind loss,
                                             const cs_curv_opts *o, const cs_spectrum_opts *so,
                                             cs_err *err)
{
    const char *const kv[][2] = {
        {"loss", cs_loss_name(loss)},
        {"loss_reduction", "mean over samples"},
        {"curvature_average", "(1/N) sum over samples, for every curvature"},
        {"kfac_convention", "expand: A = (1/(N T)) sum abar abar^T, G = (1/N) sum_n sum_t E[delta delta^T]"},
        {"kfac_factor_order", "G (x) A over [W | b], rows = output units; MatMul W = stored weight transposed"},
        {"kfac_bias", "augmented: abar = [a; 1]"},
        {"kfac_conv_groups", "per group: blockdiag_g(G_g (x) A_g)"},
        {"fisher", "exact via the loss-Hessian factor (equals ggn for ce and mse)"},
        {"batchnorm_mode", "inference: running statistics"},
        {"accumulation_dtype", "float64"},
        {"model_dtype", "as stored (float32 for float32 models)"},
        {"condition", "lambda_max / smallest eigenvalue above n * 2^-52 * max|lambda|"},
        {"effective_rank", "exp(spectral entropy) of the eigenvalues above that tolerance"},
    };
    cs_status st = store_put_conventions(s, run_id, kv, sizeof kv / sizeof kv[0], err);
    st = put_number(s, run_id, st, "mc_samples", err, "%d", o->mc_samples);
    st = put_number(s, run_id, st, "seed", err, "%llu", (unsigned long long)o->seed);
    st = put_number(s, run_id, st, "max_full", err, "%lld", (long long)o->max_full);
    st = put_number(s, run_id, st, "hutchinson_probes", err, "%d", o->probes);
    if (!so->curvatures || st)
        return st;
    const char *const skv[][2] = {
        {"spectrum_operator", "exact products over the analysed samples: H v (R-operator), "
                              "G v = J^T Lambda J v, F_emp v = (1/N) sum g_n g_n^T v"},
        {"lanczos", "full reorthogonalisation (two classical Gram-Schmidt passes), seeded Gaussian start"},
        {"ritz_converged", "residual ||A y - theta y|| <= 1e-3 * max |theta|"},
        {"slq_probes", "Rademacher, unit-normalised"},
        {"slq_grid", "bins equal bins over [min node - 5 sigma, max node + 5 sigma]"},
        {"slq_broadening", "Gaussian, sigma = fraction * (max node - min node); per-bin exact integrals"},
    };
    st = store_put_conventions(s, run_id, skv, sizeof skv / sizeof skv[0], err);
    st = put_number(s, run_id, st, "lanczos_steps", err, "%d", so->steps);
    st = put_number(s, run_id, st, "spectrum_probes", err, "%d", so->probes);
    st = put_number(s, run_id, st, "density_bins", err, "%d", so->bins);
    st = put_number(s, run_id, st, "density_sigma_fraction", err, "%g", so->sigma_frac);
    st = put_number(s, run_id, st, "lanczos_repeats", err, "%d", so->repeats);
    return st;
}

cs_status cs_store_write_graph(cs_store *db, int64_t run, const cs_graph *g, cs_err *err)
{
    cs_status st = CS_OK;
    for (int l = 0; l < g->n_layers && !st; l++)
        st = cs_store_layer(db, run, l, g->layers[l].name,
                            g->layers[l].bias_node >= 0 ? "MatMul+Add" : g->layers[l].op_type,
                            g->layers[l].numel, err);
    for (int q = 0; q < g->n_params && !st; q++) {
        const cs_value *v = &g->values[g->params[q].value];
        char shape[128];
        cs_shape_str(&v->init, shape, sizeof shape);
        st = cs_store_param(db, run, q, g->params[q].layer, v->name, shape, cs_tensor_numel(&v->init), err);
        if (!st && v->view_source >= 0) { /* a part of one initializer of the file */
            const cs_value *src = &g->values[v->view_source];
            cs_shape_str(&src->init, shape, sizeof shape);
            st = cs_store_param_part(db, run, q, src->name, shape, err);
        }
    }
    return st;
}

cs_status cs_store_write_curvature(cs_store *db, int64_t run, const cs_curv_report *rep, int64_t topk,
                                   cs_err *err)
{
    cs_status st = CS_OK;
    for (int i = 0; i < rep->n && !st; i++) {
        const cs_curv_result *r = &rep->res[i];
        const char *cn = cs_curv_name(r->curv), *rn = cs_repr_name(r->repr);
        cs_curv_row row = {.layer_id = r->layer, .curvature = cn, .repr = rn, .method = r->method,
                           .dim = r->dim, .trace = r->sum.trace, .trace_stderr = r->trace_stderr,
                           .frobenius = r->sum.frobenius, .lambda_max = r->sum.lambda_max,
                           .lambda_min = r->sum.lambda_min, .condition = r->sum.condition,
                           .effective_rank = r->sum.effective_rank, .seconds = r->seconds};
        st = cs_store_curvature(db, run, &row, err);
        /* Spectra: full blocks whole, K-FAC and unit the top K, diagonals
         * only as summaries (their entries are the importance scores). */
        int64_t n = r->repr == CS_REPR_FULL ? r->n_eig : r->repr == CS_REPR_DIAG ? 0
                    : (r->n_eig < topk ? r->n_eig : topk);
        if (!st && n > 0)
            st = cs_store_spectrum(db, run, r->layer, cn, rn, r->method, 0, r->eig, n, err);
        for (int f = 0; f < 2 && !st; f++)
            if (r->factor_eig[f])
                st = cs_store_kfac_factor(db, run, r->layer, cn, f ? 'G' : 'A', r->factor_eig[f],
                                          r->n_factor_eig[f], err);
        if (!st && r->has_cmp)
            st = cs_store_repr_comparison(db, run, r->layer, cn, rn, "full", r->cmp_frob, r->cmp_lmax,
                                          r->cmp_trace, r->cmp_align, err);
    }
    return st;
}

cs_status cs_store_write_analyze_setup(cs_store *s, int64_t run_id, const cs_graph *g, cs_loss_kind loss,
                                       const cs_curv_opts *o, const cs_spectrum_opts *so, cs_err *err)
{
    cs_status st;
    if (!(st = cs_store_begin(s, err)) && !(st = cs_store_write_graph(s, run_id, g, err)) &&
        !(st = cs_store_write_analyze_conventions(s, run_id, loss, o, so, err)))
        st = cs_store_commit(s, err);
    return st;
}

cs_status cs_store_write_pruning(cs_store *s, int64_t run_id, const cs_prune_point *pts, int n, cs_err *err)
{
    cs_status st = CS_OK;
    for (int i = 0; i < n && !st; i++)
        st = cs_store_pruning_point(s, run_id, pts[i].score, pts[i].fraction, pts[i].n_pruned, pts[i].loss,
                                    pts[i].accuracy, err);
    return st;
}

cs_status cs_store_write_steps(cs_store *s, int64_t run_id, const cs_step_report *steps, cs_err *err)
{
    cs_status st = CS_OK;
    for (int i = 0; i < steps->n && !st; i++) {
        const cs_step_result *r = &steps->res[i];
        cs_step_diag_row row = {.precond = cs_precond_name(r->precond), .damping = r->damping,
                                .layer_id = r->layer, .grad_norm = r->grad_norm, .step_norm = r->step_norm,
                                .cosine = r->cosine, .predicted_decrease = r->predicted,
                                .actual_decrease = r->actual, .rho = r->rho, .best_lr = r->best_lr,
                                .has_best_change = isfinite(r->best_change), .best_change = r->best_change};
        st = cs_store_step_diag(s, run_id, &row, err);
    }
    return st;
}

cs_status cs_store_write_analysis(cs_store *s, int64_t run_id, const cs_analysis_rows *a, cs_err *err)
{
    cs_status st = cs_store_begin(s, err);
    if (!st)
        st = cs_store_write_curvature(s, run_id, a->rep, a->topk, err);
    if (!st)
        st = cs_store_write_spectra(s, run_id, a->g, a->spec, a->n_spec, a->spec_topk, a->rep, err);
    if (!st)
        st = cs_store_write_importance(s, run_id, a->g, a->imp, a->imp_top, err);
    if (!st)
        st = cs_store_write_pruning(s, run_id, a->pts, a->n_pts, err);
    if (!st)
        st = cs_store_write_steps(s, run_id, a->steps, err);
    if (!st)
        st = cs_store_write_noise(s, run_id, a->rep, err);
    if (!st)
        st = cs_store_commit(s, err);
    return st;
}
