/* curvscope analyze MODEL.onnx --data SPEC --labels SPEC --db OUT.db [options]
 *
 * Orchestration only: open the database (so a bad --db fails before any
 * work), load model and data, record the run as 'running', compute, store
 * the results in one transaction, mark the run 'done' -- or 'failed' with
 * the error, also on SIGINT / SIGTERM. */
#include "config.h"
#include "base/clock.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/sha256.h"
#include "cli/cli.h"
#include "curv/engine.h"
#include "curv/importance.h"
#include "curv/prune.h"
#include "curv/steps.h"
#include "objective/objective.h"
#include "curv/spectrum.h"
#include "spectral/dense.h"
#include "store/store.h"

void cmd_analyze_usage(FILE *f)
{
    fprintf(f, "usage: curvscope analyze MODEL.onnx --data SPEC --labels SPEC --db OUT.db [options]\n\n"
               "Per-layer curvature (Hessian, GGN, Fisher) in several representations, their\n"
               "spectra, and how well each approximation matches the exact block, stored in\n"
               "an SQLite database (several runs accumulate in one file).\n\n"
               "  --db FILE          the database (created if missing)\n"
               "  --curvature LIST   hessian, ggn, fisher, fisher_mc, fisher_emp (default ggn,fisher_emp)\n"
               "  --repr LIST        full, kfac, diag, unit (default full,kfac,diag; full only\n"
               "                     for blocks up to --max-full parameters)\n"
               "  --max-full P       largest block (and whole network) computed exactly (4096)\n"
               "  --topk K           eigenvalues stored per K-FAC / unit result (default 50;\n"
               "                     full blocks store all)\n"
               "  --mc-samples S     sampled labels per input for fisher_mc (default 1)\n"
               "  --probes K         Hutchinson probes for Hessian diagonals above --max-full (20),\n"
               "                     and SLQ / Hutchinson probes of --spectrum (10)\n"
               "  --spectrum LIST    whole-network spectra without forming the matrix, for\n"
               "                     hessian, ggn, fisher, fisher_emp: Lanczos top / bottom\n"
               "                     eigenvalues (--topk of each, at most half the steps), SLQ\n"
               "                     density, Hutchinson trace (default: none)\n"
               "  --lanczos-steps M  Lanczos steps, also per SLQ probe (default 40)\n"
               "  --bins B           density bins (default 100)\n"
               "  --sigma F          density broadening as a fraction of the spectral spread (0.01)\n"
               "  --repeats R        Lanczos runs with other seeds, for the spread (default 1)\n"
               "  --power            also the top eigenvalue by power iteration (as PyHessian)\n"
               "  --eigenvectors K   store the top K Lanczos eigenvectors per element (eigenvectors)\n"
               "  --importance       per-parameter scores in `importance`: value, gradient, the\n"
               "                     diagonals computed, OBD, OBS, Taylor (a gradient pass more)\n"
               "  --importance-curvature C  curvature of OBD and OBS (default ggn)\n"
               "  --importance-damping R    OBS damping: R * trace(block) / block size (1e-3)\n"
               "  --importance-top K store only the top K elements of each layer by each score\n"
               "                     (the per-unit and per-layer aggregates stay complete)\n"
               "  --prune-check LIST zero the lowest-scoring fractions (e.g. 0.1,0.3,0.5) of the\n"
               "                     Gemm/MatMul/Conv weights by each score and re-evaluate\n"
               "                     (implies --importance; results in pruning_curve)\n"
               "  --precond LIST     step diagnostics for sgd, diag, kfac, unit, full, newton,\n"
               "                     shampoo:\n"
               "                     the step -(C + lambda I)^-1 g per layer, its predicted and\n"
               "                     actual decrease, rho, best step size (step_diagnostics)\n"
               "  --damping LIST     lambda values for --precond (default 1e-3,1e-2,1e-1)\n");
    cli_data_opts_usage(f);
    fprintf(f, "  --help             this text\n\n"
               "A combination that makes no sense (hessian with kfac) is skipped with a note\n"
               "when it comes from lists, and is an error when asked for alone.\n");
}

static volatile sig_atomic_t interrupted;
static volatile int cancel_flag;

static void on_signal(int sig)
{
    interrupted = sig;
    cancel_flag = 1;
}

static int64_t peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return (int64_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

static char *join_argv(int argc, char **argv)
{
    size_t len = 16;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    strcpy(s, "curvscope");
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

/* Provenance rows: the conventions behind the numbers of this run. */
static cs_status store_conventions(cs_store *db, int64_t run, const cli_data_opts *d,
                                   const cs_curv_opts *o, const cs_spectrum_opts *so, cs_err *err)
{
    char buf[64];
    const char *kv[][2] = {
        {"loss", cs_loss_name(d->loss)},
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
    cs_status st = CS_OK;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !st; i++)
        st = cs_store_convention(db, run, kv[i][0], kv[i][1], err);
    snprintf(buf, sizeof buf, "%d", o->mc_samples);
    if (!st)
        st = cs_store_convention(db, run, "mc_samples", buf, err);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)o->seed);
    if (!st)
        st = cs_store_convention(db, run, "seed", buf, err);
    snprintf(buf, sizeof buf, "%lld", (long long)o->max_full);
    if (!st)
        st = cs_store_convention(db, run, "max_full", buf, err);
    snprintf(buf, sizeof buf, "%d", o->probes);
    if (!st)
        st = cs_store_convention(db, run, "hutchinson_probes", buf, err);
    if (so->curvatures) {
        const char *skv[][2] = {
            {"spectrum_operator", "exact products over the analysed samples: H v (R-operator), "
                                  "G v = J^T Lambda J v, F_emp v = (1/N) sum g_n g_n^T v"},
            {"lanczos", "full reorthogonalisation (two classical Gram-Schmidt passes), seeded Gaussian start"},
            {"ritz_converged", "residual ||A y - theta y|| <= 1e-3 * max |theta|"},
            {"slq_probes", "Rademacher, unit-normalised"},
            {"slq_grid", "bins equal bins over [min node - 5 sigma, max node + 5 sigma]"},
            {"slq_broadening", "Gaussian, sigma = fraction * (max node - min node); per-bin exact integrals"},
        };
        for (size_t i = 0; i < sizeof skv / sizeof skv[0] && !st; i++)
            st = cs_store_convention(db, run, skv[i][0], skv[i][1], err);
        snprintf(buf, sizeof buf, "%d", so->steps);
        if (!st)
            st = cs_store_convention(db, run, "lanczos_steps", buf, err);
        snprintf(buf, sizeof buf, "%d", so->probes);
        if (!st)
            st = cs_store_convention(db, run, "spectrum_probes", buf, err);
        snprintf(buf, sizeof buf, "%d", so->bins);
        if (!st)
            st = cs_store_convention(db, run, "density_bins", buf, err);
        snprintf(buf, sizeof buf, "%g", so->sigma_frac);
        if (!st)
            st = cs_store_convention(db, run, "density_sigma_fraction", buf, err);
        snprintf(buf, sizeof buf, "%d", so->repeats);
        if (!st)
            st = cs_store_convention(db, run, "lanczos_repeats", buf, err);
    }
    return st;
}

static cs_status store_graph(cs_store *db, int64_t run, const cs_graph *g, cs_err *err)
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
    }
    return st;
}

static cs_status store_results(cs_store *db, int64_t run, const cs_curv_report *rep, int64_t topk,
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

/* Whole-network matrix-free results: Lanczos (top / bottom eigenvalues
 * and all Ritz values per repeat with residuals, the tridiagonals), SLQ
 * (density, tridiagonals, trace from its moments), Hutchinson, power. */
static cs_status store_spectra(cs_store *db, int64_t run, const cs_graph *g, const cs_net_spectrum *spec,
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

/* Importance needs the dataset gradient: one more pass. */
static cs_status compute_importance(const cs_graph *g, const cs_dataset *ds, const cli_data_opts *d,
                                    const cs_curv_report *rep, cs_curv_kind c, double damping,
                                    cs_importance *imp, cs_err *err)
{
    cs_objective obj;
    cs_status st = cs_objective_init(&obj, g, ds, &d->norm, d->loss, d->batch, CS_AD_GRAD, err);
    if (st)
        return st;
    double *grad = calloc((size_t)g->n_param_scalars + 1, sizeof(double));
    st = grad ? cs_objective_gradient(&obj, NULL, grad, err) : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    cs_objective_free(&obj);
    if (!st)
        st = cs_importance_compute(g, rep, grad, c, damping, imp, err);
    free(grad);
    return st;
}

/* One importance row per scalar (or, with top > 0, only the top `top`
 * elements of each layer by each score), and the complete per-unit sums. */
static cs_status store_importance(cs_store *db, int64_t run, const cs_graph *g, const cs_importance *imp,
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

/* Whole-network rows, and the preconditioner with the largest actual
 * decrease at its best damping. */
static void print_steps(const cs_step_report *r)
{
    if (r->n == 0)
        return;
    printf("%-8s %9s %10s %10s %12s %12s %8s %8s %12s\n", "precond", "damping", "|g|", "|step|", "predicted",
           "actual", "rho", "best lr", "best change");
    const cs_step_result *best = NULL;
    for (int i = 0; i < r->n; i++) {
        const cs_step_result *x = &r->res[i];
        if (x->layer != -1)
            continue;
        printf("%-8s %9.3g %10.4g %10.4g %12.5g %12.5g %8.3f %8.4g %12.5g\n", cs_precond_name(x->precond),
               x->damping, x->grad_norm, x->step_norm, x->predicted, x->actual, x->rho, x->best_lr, x->best_change);
        if (!best || x->actual < best->actual)
            best = x;
    }
    for (int i = 0; i < r->n_notes; i++)
        printf("note: %s\n", r->notes[i]);
    if (best)
        printf("steps: %s (damping %.3g) gives the largest actual decrease, %.5g\n", cs_precond_name(best->precond),
               best->damping, best->actual);
}

/* The curve, and which score kept the loss lowest on average. */
static void print_pruning(const cs_prune_point *p, int n)
{
    if (n == 0)
        return;
    printf("%-10s %8s %10s %10s %9s\n", "pruned by", "fraction", "weights", "loss", "accuracy");
    const char *best = NULL;
    double best_mean = INFINITY;
    for (int i = 0; i < n; i++) {
        printf("%-10s %8.3f %10lld %10.5g %9.4f\n", p[i].score, p[i].fraction, (long long)p[i].n_pruned,
               p[i].loss, p[i].accuracy);
        if (i == 0 || (i > 1 && strcmp(p[i].score, p[i - 1].score) == 0))
            continue;
        double sum = 0;
        int m = 0;
        for (int j = i; j < n && strcmp(p[j].score, p[i].score) == 0; j++, m++)
            sum += p[j].loss;
        if (m && sum / m < best_mean) {
            best_mean = sum / m;
            best = p[i].score;
        }
    }
    if (best)
        printf("pruning: %s predicts damage best (lowest mean loss over the fractions, %.5g)\n", best, best_mean);
}

static void print_spectra(const cs_graph *g, const cs_net_spectrum *spec, int n)
{
    for (int i = 0; i < n; i++) {
        const cs_net_spectrum *s = &spec[i];
        const cs_lanczos_result *L = &s->lanczos[0];
        int m = L->steps, conv = 0;
        for (int k = 0; k < m; k++)
            conv += s->converged[0][k];
        printf("%s %-10s lanczos: top %.6g (residual %.2g), bottom %.6g (residual %.2g), "
               "%d of %d Ritz values converged\n",
               s->layer < 0 ? "network" : g->layers[s->layer].name, cs_curv_name(s->curv), m ? L->ritz[0] : NAN, m ? L->residual[0] : NAN,
               m ? L->ritz[m - 1] : NAN, m ? L->residual[m - 1] : NAN, conv, m);
        if (s->slq.probes > 0)
            printf("%s %-10s trace: hutchinson %.6g +- %.2g, slq %.6g +- %.2g; negative share %.3f\n",
                   s->layer < 0 ? "network" : g->layers[s->layer].name, cs_curv_name(s->curv), s->hutch_trace, s->hutch_stderr, s->slq_mean * (double)s->dim,
                   s->slq_mean_stderr * (double)s->dim, s->neg_fraction);
        if (s->power_iters > 0)
            printf("%s %-10s power iteration: %.6g after %d products\n",
                   s->layer < 0 ? "network" : g->layers[s->layer].name,
                   cs_curv_name(s->curv),
                   s->power_lambda, s->power_iters);
    }
}

/* --json: the same summary as one object (numbers that are not finite as
 * null): run, db, seconds, results, layers (per layer and curvature the
 * most exact representation's lambda_max, trace, condition; layer null for
 * the whole network), steps (whole-network rows), pruning, spectra, notes. */
static void print_json(const cs_graph *g, const cs_curv_report *rep, unsigned curvs, const cs_step_report *steps,
                       const cs_prune_point *pts, int n_pts, const cs_net_spectrum *spec, int n_spec,
                       const char *db, int64_t run)
{
    static const cs_repr_kind pref[] = {CS_REPR_FULL, CS_REPR_KFAC, CS_REPR_UNIT, CS_REPR_DIAG};
    printf("{\"run\": %lld, \"db\": ", (long long)run);
    json_string(stdout, db);
    printf(", \"seconds\": ");
    json_number(stdout, rep->seconds);
    printf(", \"results\": %d, \"layers\": [", rep->n);
    bool first = true;
    for (int l = -1; l < g->n_layers; l++)
        for (int c = 0; c < CS_CURV_COUNT; c++) {
            const cs_curv_result *r = NULL;
            for (size_t k = 0; k < 4 && !r && (curvs >> c & 1); k++)
                r = cs_curv_report_find(rep, (cs_curv_kind)c, pref[k], l);
            if (!r)
                continue;
            printf("%s{\"layer\": ", first ? "" : ", ");
            first = false;
            if (l < 0)
                printf("null");
            else
                json_string(stdout, g->layers[l].name);
            printf(", \"curvature\": \"%s\", \"repr\": \"%s\", \"lambda_max\": ", cs_curv_name(r->curv),
                   cs_repr_name(r->repr));
            json_number(stdout, r->sum.lambda_max);
            printf(", \"trace\": ");
            json_number(stdout, r->sum.trace);
            printf(", \"condition\": ");
            json_number(stdout, r->sum.condition);
            printf("}");
        }
    printf("], \"steps\": [");
    first = true;
    for (int i = 0; i < steps->n; i++) {
        const cs_step_result *x = &steps->res[i];
        if (x->layer != -1)
            continue;
        printf("%s{\"precond\": \"%s\", \"damping\": ", first ? "" : ", ", cs_precond_name(x->precond));
        first = false;
        const double v[] = {x->damping, x->predicted, x->actual, x->rho, x->best_lr, x->best_change};
        const char *k[] = {NULL, "predicted", "actual", "rho", "best_lr", "best_change"};
        json_number(stdout, v[0]);
        for (int j = 1; j < 6; j++) {
            printf(", \"%s\": ", k[j]);
            json_number(stdout, v[j]);
        }
        printf("}");
    }
    printf("], \"pruning\": [");
    for (int i = 0; i < n_pts; i++) {
        printf("%s{\"score\": ", i ? ", " : "");
        json_string(stdout, pts[i].score);
        printf(", \"fraction\": ");
        json_number(stdout, pts[i].fraction);
        printf(", \"loss\": ");
        json_number(stdout, pts[i].loss);
        printf(", \"accuracy\": ");
        json_number(stdout, pts[i].accuracy);
        printf("}");
    }
    printf("], \"spectra\": [");
    for (int i = 0; i < n_spec; i++) {
        const cs_net_spectrum *x = &spec[i];
        const cs_lanczos_result *L = &x->lanczos[0];
        printf("%s{\"layer\": ", i ? ", " : "");
        if (x->layer < 0)
            printf("null");
        else
            json_string(stdout, g->layers[x->layer].name);
        printf(", \"curvature\": \"%s\", \"top\": ", cs_curv_name(x->curv));
        json_number(stdout, L->steps ? L->ritz[0] : NAN);
        printf(", \"bottom\": ");
        json_number(stdout, L->steps ? L->ritz[L->steps - 1] : NAN);
        printf(", \"hutchinson_trace\": ");
        json_number(stdout, x->slq.probes > 0 ? x->hutch_trace : NAN);
        printf("}");
    }
    printf("], \"notes\": [");
    for (int i = 0; i < rep->n_notes; i++) {
        printf("%s", i ? ", " : "");
        json_string(stdout, rep->notes[i]);
    }
    for (int i = 0; i < steps->n_notes; i++) {
        printf("%s", i || rep->n_notes ? ", " : "");
        json_string(stdout, steps->notes[i]);
    }
    printf("]}\n");
}

/* Per layer: lambda_max, trace, condition for each curvature, from the
 * most exact representation computed. */
static void print_summary(const cs_graph *g, const cs_curv_report *rep, unsigned curvs, const char *db,
                          int64_t run)
{
    static const cs_repr_kind pref[] = {CS_REPR_FULL, CS_REPR_KFAC, CS_REPR_UNIT, CS_REPR_DIAG};
    printf("%-28s %-11s %-5s %12s %12s %12s\n", "layer", "curvature", "repr", "lambda_max", "trace",
           "condition");
    for (int l = -1; l < g->n_layers; l++)
        for (int c = 0; c < CS_CURV_COUNT; c++) {
            if (!(curvs >> c & 1))
                continue;
            const cs_curv_result *r = NULL;
            for (size_t k = 0; k < 4 && !r; k++)
                r = cs_curv_report_find(rep, (cs_curv_kind)c, pref[k], l);
            if (!r)
                continue;
            printf("%-28.28s %-11s %-5s %12.5g %12.5g %12.5g\n", l < 0 ? "(network)" : g->layers[l].name,
                   cs_curv_name(r->curv), cs_repr_name(r->repr), r->sum.lambda_max, r->sum.trace,
                   r->sum.condition);
        }
    for (int i = 0; i < rep->n_notes; i++)
        printf("note: %s\n", rep->notes[i]);
    printf("%d results in %s (run %lld), %.2f s\n", rep->n, db, (long long)run, rep->seconds);
}

int cmd_analyze(int argc, char **argv)
{
    static const struct option opts[] = {
        DATA_LONG_OPTS,
        {"db", required_argument, NULL, 'd'}, {"curvature", required_argument, NULL, 'c'},
        {"repr", required_argument, NULL, 'r'}, {"max-full", required_argument, NULL, 'm'},
        {"topk", required_argument, NULL, 'k'}, {"mc-samples", required_argument, NULL, 's'},
        {"probes", required_argument, NULL, 'p'}, {"json", no_argument, NULL, 'j'},
        {"spectrum", required_argument, NULL, 'S'}, {"lanczos-steps", required_argument, NULL, 'L'},
        {"bins", required_argument, NULL, 'B'}, {"sigma", required_argument, NULL, 'g'},
        {"repeats", required_argument, NULL, 'R'}, {"power", no_argument, NULL, 'P'},
        {"eigenvectors", required_argument, NULL, 'V'},
        {"importance", no_argument, NULL, 'I'}, {"importance-curvature", required_argument, NULL, 'C'},
        {"importance-damping", required_argument, NULL, 'D'},
        {"prune-check", required_argument, NULL, 'X'}, {"importance-top", required_argument, NULL, 'T'},
        {"precond", required_argument, NULL, 'Q'}, {"damping", required_argument, NULL, 'Z'},
        {"help", no_argument, NULL, 'h'}, {0}};
    cli_data_opts d;
    cli_data_opts_init(&d);
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    const char *db_path = NULL, *curv_text = NULL, *repr_text = NULL, *spec_text = NULL;
    int64_t topk = 50;
    cs_spectrum_opts so;
    cs_spectrum_opts_init(&so);
    bool probes_given = false, importance = false;
    const char *imp_text = "ggn";
    double fractions[32], dampings[32] = {1e-3, 1e-2, 1e-1};
    int n_fractions = 0, n_dampings = 3;
    unsigned precond_mask = 0;
    double imp_damping = 1e-3;
    int64_t imp_top = 0;
    int c, idx;
    cs_err err = {0};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, &idx)) != -1) {
        switch (c) {
        case 0:
            if (cli_data_opt(&d, "analyze", opts[idx].name, optarg) < 0)
                return 2;
            break;
        case 'd': db_path = optarg; break;
        case 'c': curv_text = optarg; break;
        case 'r': repr_text = optarg; break;
        case 'm':
            if (cli_parse_count("analyze", "max-full", optarg, &o.max_full))
                return 2;
            break;
        case 'k':
            if (cli_parse_count("analyze", "topk", optarg, &topk))
                return 2;
            break;
        case 's':
            if (cli_parse_int("analyze", "mc-samples", optarg, 1000000, &o.mc_samples))
                return 2;
            break;
        case 'p':
            if (cli_parse_int("analyze", "probes", optarg, 100000, &o.probes))
                return 2;
            so.probes = o.probes;
            probes_given = true;
            break;
        case 'S': spec_text = optarg; break;
        case 'L':
            if (cli_parse_int("analyze", "lanczos-steps", optarg, 100000, &so.steps))
                return 2;
            break;
        case 'B':
            if (cli_parse_int("analyze", "bins", optarg, 1000000, &so.bins))
                return 2;
            break;
        case 'R':
            if (cli_parse_int("analyze", "repeats", optarg, 1000, &so.repeats))
                return 2;
            break;
        case 'g':
            if (cli_parse_real("analyze", "sigma", optarg, true, &so.sigma_frac))
                return 2;
            break;
        case 'P': so.power = true; break;
        case 'V':
            if (cli_parse_int("analyze", "eigenvectors", optarg, 1000, &so.eigenvectors))
                return 2;
            break;
        case 'I': importance = true; break;
        case 'T':
            if (cli_parse_count("analyze", "importance-top", optarg, &imp_top))
                return 2;
            importance = true;
            break;
        case 'Q':
            if (cs_precond_parse_list(optarg, &precond_mask, &err))
                return cli_usage_error("analyze", "%s", err.msg);
            break;
        case 'Z':
            n_dampings = 0; /* the last --damping wins */
            if (cli_parse_real_list("analyze", "damping", optarg, HUGE_VAL, 32, dampings, &n_dampings))
                return 2;
            break;
        case 'X':
            if (cli_parse_real_list("analyze", "prune-check", optarg, 1.0, 32, fractions, &n_fractions))
                return 2;
            importance = true;
            break;
        case 'C': imp_text = optarg; importance = true; break;
        case 'D':
            if (cli_parse_real("analyze", "importance-damping", optarg, true, &imp_damping))
                return 2;
            importance = true;
            break;
        case 'j': d.json = true; break;
        case 'h': cmd_analyze_usage(stdout); return 0;
        default: return cli_option_error("analyze", c, argv, optind);
        }
    }
    if (optind >= argc)
        return cli_usage_error("analyze", "missing MODEL.onnx");
    if (optind + 1 < argc)
        return cli_usage_error("analyze", "unexpected argument '%s'", argv[optind + 1]);
    if (!db_path)
        return cli_usage_error("analyze", "missing --db OUT.db");
    if (!d.data || !d.labels)
        return cli_usage_error("analyze", "missing --data SPEC or --labels SPEC");
    if (curv_text && cs_curv_parse_list(curv_text, &o.curvatures, &err))
        return cli_usage_error("analyze", "%s", err.msg);
    if (repr_text && cs_repr_parse_list(repr_text, &o.reprs, &err))
        return cli_usage_error("analyze", "%s", err.msg);
    if (spec_text && cs_curv_parse_list(spec_text, &so.curvatures, &err))
        return cli_usage_error("analyze", "%s", err.msg);
    if (so.curvatures & (1u << CS_CURV_FISHER_MC))
        return cli_usage_error("analyze", "--spectrum fisher_mc: matrix-free spectra are for hessian, "
                               "ggn, fisher and fisher_emp");
    if (so.steps < 2)
        return cli_usage_error("analyze", "--lanczos-steps must be at least 2");
    if (!probes_given)
        so.probes = 10;
    if (precond_mask) {
        cs_precond_needs(precond_mask, &o.curvatures, &o.reprs, &o.shampoo);
        o.keep_matrices = true;
    }
    unsigned imp_mask = 0;
    if (importance) {
        if (cs_curv_parse_list(imp_text, &imp_mask, &err) || __builtin_popcount(imp_mask) != 1)
            return cli_usage_error("analyze", "--importance-curvature needs one curvature (%s)",
                                   err.msg[0] ? err.msg : imp_text);
        /* The scores need the chosen curvature's diagonal and a block
         * (full, or K-FAC above --max-full) for OBS. */
        o.curvatures |= imp_mask;
        o.reprs |= 1u << CS_REPR_DIAG | 1u << CS_REPR_FULL;
        if (!(imp_mask & (1u << CS_CURV_HESSIAN)))
            o.reprs |= 1u << CS_REPR_KFAC;
        o.keep_matrices = true;
    }
    /* A single invalid combination asked for alone is an error. */
    if (__builtin_popcount(o.curvatures) == 1 && __builtin_popcount(o.reprs) == 1) {
        const char *why;
        if (!cs_curv_repr_valid((cs_curv_kind)__builtin_ctz(o.curvatures),
                                (cs_repr_kind)__builtin_ctz(o.reprs), &why))
            return cli_usage_error("analyze", "--curvature %s --repr %s: %s",
                                   cs_curv_name((cs_curv_kind)__builtin_ctz(o.curvatures)),
                                   cs_repr_name((cs_repr_kind)__builtin_ctz(o.reprs)), why);
    }
    o.loss = d.loss;
    o.batch = d.batch;
    o.seed = d.seed;
    o.norm = &d.norm;
    o.progress = cli_progress;
    o.progress_ctx = "analyze";
    o.cancel = &cancel_flag;
    so.loss = d.loss;
    so.batch = d.batch;
    so.seed = d.seed;
    so.norm = &d.norm;
    so.topk = (int)(topk < 1000000 ? topk : 1000000);
    so.progress = cli_progress;
    so.progress_ctx = "spectrum";
    so.cancel = &cancel_flag;
    so.layer_min_dim = o.max_full + 1; /* layers too large for an exact block */

    const char *model = argv[optind];
    cs_store *db = NULL;
    cs_status st = cs_store_open(db_path, &db, &err);
    if (st)
        return cli_report(st, &err);
    int code = 0;
    cs_graph *g = cli_load_model(model, &code);
    if (!g) {
        cs_store_close(db);
        return code;
    }
    cs_dataset ds;
    if ((st = cs_dataset_load(&ds, d.data, d.labels, d.samples, &err))) {
        cs_graph_free(g);
        cs_store_close(db);
        return cli_report(st, &err);
    }
    char sha[CS_SHA256_HEX_CHARS + 1] = "";
    char *args = join_argv(argc, argv);
    char data_desc[1200];
    snprintf(data_desc, sizeof data_desc, "%s %s", d.data, d.labels);
    st = cs_sha256_file(model, sha, &err);
    cs_run_info info = {.kind = "analyze", .model_path = model, .model_sha256 = sha, .data = data_desc,
                        .loss = cs_loss_name(d.loss), .argv = args, .n_samples = ds.n};
    int64_t run = -1;
    double t0 = cs_now_seconds();
    if (!st)
        st = cs_store_run_begin(db, &info, &run, &err);
    if (!st) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        if (!(st = cs_store_begin(db, &err)) && !(st = store_graph(db, run, g, &err)) &&
            !(st = store_conventions(db, run, &d, &o, &so, &err)))
            st = cs_store_commit(db, &err);
    }
    cs_curv_report rep;
    memset(&rep, 0, sizeof rep);
    if (!st)
        st = cs_curvature_compute(g, &ds, &o, &rep, &err);
    cs_importance imp;
    memset(&imp, 0, sizeof imp);
    if (!st && importance)
        st = compute_importance(g, &ds, &d, &rep, (cs_curv_kind)__builtin_ctz(imp_mask), imp_damping, &imp, &err);
    cs_prune_point *pts = NULL;
    int n_pts = 0;
    if (!st && n_fractions) {
        cs_eval_opts eo = {.loss = d.loss, .batch = d.batch, .norm = &d.norm};
        st = cs_prune_check(g, &ds, &eo, &imp, fractions, n_fractions, &pts, &n_pts, &err);
    }
    cs_step_report steps;
    memset(&steps, 0, sizeof steps);
    if (!st && precond_mask)
        st = cs_step_diagnostics(g, &ds, &d.norm, d.loss, d.batch, &rep, precond_mask, dampings, n_dampings,
                                 &steps, &err);
    cs_net_spectrum *spec = NULL;
    int n_spec = 0;
    if (!st && so.curvatures)
        st = cs_spectrum_compute(g, &ds, &so, &spec, &n_spec, &err);
    if (!st && !(st = cs_store_begin(db, &err)) && !(st = store_results(db, run, &rep, topk, &err)) &&
        !(st = store_spectra(db, run, g, spec, n_spec, so.topk, &rep, &err)) &&
        !(st = store_importance(db, run, g, &imp, imp_top, &err)))
        for (int i = 0; i < n_pts && !st; i++)
            st = cs_store_pruning_point(db, run, pts[i].score, pts[i].fraction, pts[i].n_pruned,
                                        pts[i].loss, pts[i].accuracy, &err);
    for (int i = 0; i < steps.n && !st && cs_store_in_transaction(db); i++) {
        const cs_step_result *r = &steps.res[i];
        cs_step_diag_row row = {.precond = cs_precond_name(r->precond), .damping = r->damping,
                                .layer_id = r->layer, .grad_norm = r->grad_norm, .step_norm = r->step_norm,
                                .cosine = r->cosine, .predicted_decrease = r->predicted,
                                .actual_decrease = r->actual, .rho = r->rho, .best_lr = r->best_lr,
                                .has_best_change = 1, .best_change = r->best_change};
        st = cs_store_step_diag(db, run, &row, &err);
    }
    if (!st && cs_store_in_transaction(db))
        st = cs_store_commit(db, &err);
    if (run >= 0) {
        cs_err err2 = {0};
        char why[CS_ERR_MSG_MAX + 64];
        if (interrupted)
            snprintf(why, sizeof why, "interrupted by signal %d: %s", (int)interrupted, err.msg);
        else
            snprintf(why, sizeof why, "%s", err.msg);
        cs_status st2 = cs_store_run_end(db, run, st ? "failed" : "done", cs_now_seconds() - t0,
                                         peak_rss_bytes(), st ? why : NULL, &err2);
        if (!st && st2) {
            st = st2;
            err = err2;
        }
    }
    if (st)
        code = cli_report(st, &err);
    else if (d.json)
        print_json(g, &rep, o.curvatures, &steps, pts, n_pts, spec, n_spec, db_path, run);
    else {
        print_steps(&steps);
        print_pruning(pts, n_pts);
        print_spectra(g, spec, n_spec);
        print_summary(g, &rep, o.curvatures, db_path, run);
    }
    cs_spectrum_free(spec, n_spec);
    cs_importance_free(&imp);
    cs_step_report_free(&steps);
    free(pts);
    cs_curv_report_free(&rep);
    free(args);
    cs_dataset_free(&ds);
    cs_graph_free(g);
    cs_store_close(db);
    return code;
}
