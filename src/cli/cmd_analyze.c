/* curvscope analyze MODEL.onnx --data SPEC --labels SPEC --db OUT.db [options]
 *
 * Orchestration only: open the database (so a bad --db fails before any
 * work), load model and data, record the run as 'running', compute, store
 * the results in one transaction, mark the run 'done' -- or 'failed' with
 * the error, also on SIGINT / SIGTERM. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/meminfo.h"
#include "cli/cli.h"
#include "curv/engine.h"
#include "curv/mem_plan.h"
#include "curv/importance.h"
#include "curv/prune.h"
#include "objective/objective.h"
#include "precond/diagnostics.h"
#include "curv/spectrum.h"
#include "spectral/dense.h"
#include "store/rows.h"

void cmd_analyze_usage(FILE *f)
{
    fprintf(f, "usage: curvscope analyze MODEL.onnx --data SPEC --labels SPEC --db OUT.db [options]\n\n"
               "Per-layer curvature (Hessian, GGN, Fisher) in several representations, their\n"
               "spectra, and how well each approximation matches the exact block, stored in\n"
               "an SQLite database (several runs accumulate in one file).\n\n"
               "  --db FILE          the database (created if missing)\n"
               "  --curvature LIST   hessian, ggn, fisher, fisher_mc, fisher_emp (default ggn,fisher_emp)\n"
               "  --repr LIST        full, kfac, ekfac, diag, unit (default full,kfac,diag; full only\n"
               "                     for blocks up to --max-full parameters)\n"
               "  --max-full P       largest block (and whole network) computed exactly (4096)\n"
               "  --topk K           eigenvalues stored per K-FAC / unit result (default 50;\n"
               "                     full blocks store all)\n"
               "  --mc-samples S     sampled labels per input for fisher_mc (default 1)\n"
               "  --probes K         Hutchinson probes for Hessian diagonals estimated (20),\n"
               "                     and SLQ / Hutchinson probes of --spectrum (10)\n"
               "  --hessian-diag M   Hessian diagonals of layers above --max-full: auto (exact\n"
               "                     where the layer's output has at most --max-full elements\n"
               "                     per sample, else Hutchinson), exact, hutchinson\n"
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
               "  --precond LIST     step diagnostics for sgd, kfac, ekfac, shampoo, diag, unit,\n"
               "                     full, smw, newton (finetune's preconditioners):\n"
               "                     the step -(C + lambda I)^-1 g per layer, its predicted and\n"
               "                     actual decrease, rho, best step size (step_diagnostics)\n"
               "  --damping LIST     lambda values for --precond (default 1e-3,1e-2,1e-1)\n"
               "  --noise-scale      gradient noise scale B_simple = tr(Sigma) / |G|^2 per layer\n"
               "                     and network with its standard error (McCandlish et al. 2018;\n"
               "                     from the per-sample gradients; results in noise_scale)\n"
               "  --noise-groups K   groups of the data for its standard error (default 10)\n"
               "  --plan             print the memory and passes the run needs, per layer and in\n"
               "                     total, and exit (no --db needed, nothing written)\n"
               "  --max-memory SIZE  refuse a run whose estimate is above SIZE (6G, 512M, bytes;\n"
               "                     default: the available memory)\n");
    cli_data_opts_usage(f);
    fprintf(f, "  --help             this text\n\n"
               "A combination that makes no sense (hessian with kfac) is skipped with a note\n"
               "when it comes from lists, and is an error when asked for alone.\n");
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

/* The noise scale per layer and for the network. */
static void print_noise(const cs_graph *g, const cs_curv_report *rep)
{
    if (rep->n_noise == 0)
        return;
    printf("%-28s %12s %12s %12s %12s\n", "layer", "|G|^2", "tr(Sigma)", "B_simple", "stderr");
    for (int i = 0; i < rep->n_noise; i++) {
        const cs_noise_result *r = &rep->noise[i];
        if (r->available)
            printf("%-28.28s %12.5g %12.5g %12.5g %12.3g\n", r->layer < 0 ? "(network)" : g->layers[r->layer].name,
                   r->grad_sq_norm, r->trace_cov, r->b_simple, r->b_simple_se);
    }
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

static int parse_hessian_diag(void *method, const char *cmd, const char *value)
{
    static const char *const names[] = {[CS_HDIAG_AUTO] = "auto", [CS_HDIAG_EXACT] = "exact",
                                        [CS_HDIAG_HUTCHINSON] = "hutchinson"};
    for (int i = 0; i < 3; i++)
        if (strcmp(value, names[i]) == 0) {
            *(int *)method = i;
            return 0;
        }
    return cli_usage_error(cmd, "--hessian-diag '%s': give auto, exact or hutchinson", value);
}

static int parse_precond(void *mask, const char *cmd, const char *value)
{
    cs_err err = {0};
    if (cs_precond_parse_list(value, mask, &err))
        return cli_usage_error(cmd, "%s", err.msg);
    return 0;
}

static int parse_memory(void *target, const char *cmd, const char *value)
{
    return cli_parse_memory(target, cmd, value);
}

/* The whole run's plan: the process, model and data held throughout, then
 * one phase per step of the run (each frees what it held before the
 * next): the curvature engine, the matrix-free spectra; and the passes of
 * the importance, pruning and step diagnostics. */
static cs_status plan_analysis(const cs_graph *g, const cs_dataset *ds, const cli_data_opts *d,
                               const cs_curv_opts *o, const cs_spectrum_opts *so, bool importance, int n_fractions,
                               unsigned precond_mask, int n_dampings, cs_mem_plan *plan, cs_err *err)
{
    cs_status st = cs_mem_plan_add_process(plan, g, ds, cs_mem_resident_bytes(), err);
    plan->phase = 1;
    if (!st)
        st = cs_curvature_plan(g, ds, o, plan, err);
    plan->phase = 2;
    if (!st && so->curvatures)
        st = cs_spectrum_plan(g, ds, so, plan, err);
    plan->phase = 3;
    if (!st && importance)
        st = cs_mem_plan_add_passes(plan, 1, err, "importance: the dataset gradient");
    if (!st && n_fractions)
        st = cs_mem_plan_add_passes(plan, 1 + 4 * (int64_t)n_fractions, err,
                                    "pruning check: an evaluation, then one per score (at most 4) and fraction");
    if (!st && precond_mask)
        st = cs_mem_plan_add_passes(plan, 1 + (int64_t)__builtin_popcount(precond_mask) * n_dampings, err,
                                    "step diagnostics: the gradient, then a loss per preconditioner and damping");
    (void)d;
    return st;
}

int cmd_analyze(int argc, char **argv)
{
    cli_data_opts d;
    cli_data_opts_init(&d);
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    const char *db_path = NULL, *curv_text = NULL, *repr_text = NULL, *spec_text = NULL, *model = NULL;
    int64_t topk = 50;
    cs_spectrum_opts so;
    cs_spectrum_opts_init(&so);
    bool probes_given = false, importance = false;
    const char *imp_text = "ggn";
    double fractions[32], dampings[32] = {1e-3, 1e-2, 1e-1};
    int n_fractions = 0, n_dampings = 3;
    unsigned precond_mask = 0;
    double imp_damping = 1e-3;
    int64_t imp_top = 0, max_memory = 0;
    bool plan_only = false;
    const cli_opt opts[] = {
        CLI_OPT("db", CLI_OPT_TEXT, &db_path),
        CLI_OPT("curvature", CLI_OPT_TEXT, &curv_text),
        CLI_OPT("repr", CLI_OPT_TEXT, &repr_text),
        CLI_OPT("max-full", CLI_OPT_COUNT, &o.max_full),
        CLI_OPT("topk", CLI_OPT_COUNT, &topk),
        CLI_OPT("mc-samples", CLI_OPT_INT, &o.mc_samples, .max = 1000000),
        CLI_OPT("probes", CLI_OPT_INT, &o.probes, .max = 100000, .seen = &probes_given),
        CLI_OPT("hessian-diag", CLI_OPT_CALL, &o.hessian_diag, .call = parse_hessian_diag),
        CLI_OPT("json", CLI_OPT_FLAG, &d.json),
        CLI_OPT("spectrum", CLI_OPT_TEXT, &spec_text),
        CLI_OPT("lanczos-steps", CLI_OPT_INT, &so.steps, .max = 100000),
        CLI_OPT("bins", CLI_OPT_INT, &so.bins, .max = 1000000),
        CLI_OPT("sigma", CLI_OPT_POSITIVE, &so.sigma_frac),
        CLI_OPT("repeats", CLI_OPT_INT, &so.repeats, .max = 1000),
        CLI_OPT("power", CLI_OPT_FLAG, &so.power),
        CLI_OPT("eigenvectors", CLI_OPT_INT, &so.eigenvectors, .max = 1000),
        /* every importance option implies --importance */
        CLI_OPT("importance", CLI_OPT_FLAG, &importance),
        CLI_OPT("importance-curvature", CLI_OPT_TEXT, &imp_text, .seen = &importance),
        CLI_OPT("importance-damping", CLI_OPT_POSITIVE, &imp_damping, .seen = &importance),
        CLI_OPT("prune-check", CLI_OPT_LIST, fractions, .max = 1.0, .count = &n_fractions, .max_n = 32,
                .seen = &importance),
        CLI_OPT("importance-top", CLI_OPT_COUNT, &imp_top, .seen = &importance),
        CLI_OPT("precond", CLI_OPT_CALL, &precond_mask, .call = parse_precond),
        /* the last --damping wins */
        CLI_OPT("damping", CLI_OPT_LIST, dampings, .max = HUGE_VAL, .count = &n_dampings, .max_n = 32,
                .replace = true),
        CLI_OPT("noise-scale", CLI_OPT_FLAG, &o.noise_scale),
        CLI_OPT("noise-groups", CLI_OPT_INT, &o.noise_groups, .max = 100000, .seen = &o.noise_scale),
        CLI_OPT("plan", CLI_OPT_FLAG, &plan_only),
        CLI_OPT("max-memory", CLI_OPT_CALL, &max_memory, .call = parse_memory),
    };
    int parsed = cli_parse_args("analyze", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &d,
                              cmd_analyze_usage, "MODEL.onnx", &model);
    if (parsed >= 0)
        return parsed;
    int code = 0;
    cs_err err = {0};
    if (!db_path && !plan_only)
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
    so.probes = probes_given ? o.probes : 10;
    if (precond_mask) {
        cs_precond_needs(precond_mask, &o.curvatures, &o.reprs);
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
    o.cancel = cli_run_cancel();
    so.loss = d.loss;
    so.batch = d.batch;
    so.seed = d.seed;
    so.norm = &d.norm;
    so.topk = (int)(topk < 1000000 ? topk : 1000000);
    so.progress = cli_progress;
    so.progress_ctx = "spectrum";
    so.cancel = cli_run_cancel();
    so.layer_min_dim = o.max_full + 1; /* layers too large for an exact block */


    cli_run run;
    memset(&run, 0, sizeof run);
    run.id = -1;
    if (!plan_only && (code = cli_run_open(&run, db_path)))
        return code;
    cs_graph *g = cli_load_model_finite(model, &d, &code);
    if (!g) {
        cli_run_close(&run);
        return code;
    }
    cs_dataset ds;
    cs_status st = cli_load_dataset(&ds, &d, &err);
    if (st) {
        cs_graph_free(g);
        cli_run_close(&run);
        return cli_report(st, &err);
    }
    /* The plan before the work: printed, refused above the limit. */
    cs_mem_plan plan;
    cs_mem_plan_init(&plan);
    int64_t limit = max_memory ? max_memory : cli_memory_default();
    st = plan_analysis(g, &ds, &d, &o, &so, importance, n_fractions, precond_mask, n_dampings, &plan, &err);
    if (!st) {
        cli_plan_print(d.json ? stderr : stdout, &plan, g, limit);
        code = cli_plan_refuse(&plan, limit, "analyze");
    }
    if (st || code || plan_only) {
        if (st)
            code = cli_report(st, &err);
        cs_mem_plan_free(&plan);
        cs_dataset_free(&ds);
        cs_graph_free(g);
        cli_run_close(&run);
        return code;
    }
    st = cli_run_begin(&run, "analyze", model, &d, cs_dataset_total(&ds), argc, argv, &err);
    if (!st)
        st = cs_store_write_analyze_setup(run.db, run.id, g, d.loss, &o, &so, &err);
    if (!st)
        st = cli_plan_store(run.db, run.id, &plan, &err);
    cs_mem_plan_free(&plan);
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
    cs_analysis_rows rows = {.g = g, .rep = &rep, .topk = topk, .spec = spec, .n_spec = n_spec,
                             .spec_topk = so.topk, .imp = &imp, .imp_top = imp_top, .pts = pts,
                             .n_pts = n_pts, .steps = &steps};
    if (!st)
        st = cs_store_write_analysis(run.db, run.id, &rows, &err);
    st = cli_run_end(&run, st, &err, cli_run_seconds(&run));
    if (st)
        code = cli_report(st, &err);
    else if (d.json)
        print_json(g, &rep, o.curvatures, &steps, pts, n_pts, spec, n_spec, db_path, run.id);
    else {
        print_steps(&steps);
        print_pruning(pts, n_pts);
        print_spectra(g, spec, n_spec);
        print_noise(g, &rep);
        print_summary(g, &rep, o.curvatures, db_path, run.id);
    }
    cs_spectrum_free(spec, n_spec);
    cs_importance_free(&imp);
    cs_step_report_free(&steps);
    free(pts);
    cs_curv_report_free(&rep);
    cs_dataset_free(&ds);
    cs_graph_free(g);
    cli_run_close(&run);
    return code;
}
