#include "report/report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "report/svg.h"

/* ---- query results as a table of strings ---- */

typedef struct table {
    int ncol;
    int64_t n, cap;
    char **cell;     /* n x ncol, NULL for SQL NULL */
    bool nomem;
} table;

static int table_row(void *ctx, int ncol, char **vals, char **names)
{
    (void)names;
    table *t = ctx;
    if (t->n == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 64;
        char **grown = realloc(t->cell, sizeof(char *) * (size_t)(cap * ncol));
        if (!grown) {
            t->nomem = true;
            return 1;
        }
        t->cell = grown;
        t->cap = cap;
    }
    t->ncol = ncol;
    for (int c = 0; c < ncol; c++) {
        char *v = vals[c] ? strdup(vals[c]) : NULL;
        if (vals[c] && !v)
            t->nomem = true;
        t->cell[t->n * ncol + c] = v;
    }
    t->n++;
    return t->nomem;
}

static void table_free(table *t)
{
    for (int64_t i = 0; i < t->n * t->ncol; i++)
        free(t->cell[i]);
    free(t->cell);
    memset(t, 0, sizeof *t);
}

/* Run the printf-formatted query into t (emptied first). */
static cs_status query(cs_store *db, table *t, cs_err *err, const char *fmt, ...)
{
    table_free(t);
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    cs_status st = cs_store_exec(db, sql, table_row, t, err);
    if (t->nomem)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory reading the database");
    return st;
}

/* Whether the file has the table or view: a file of an older schema
 * version, opened read-only, is read as it is (doc/design.md §4), and the
 * sections of newer tables are left out. */
static bool has_table(cs_store *db, table *t, const char *name)
{
    cs_err ignored;
    return query(db, t, &ignored, "SELECT 1 FROM sqlite_master WHERE name = '%s'", name) == CS_OK && t->n > 0;
}

static const char *str(const table *t, int64_t r, int c)
{
    return t->cell[r * t->ncol + c];
}

static double num(const table *t, int64_t r, int c)
{
    const char *s = str(t, r, c);
    return s ? strtod(s, NULL) : NAN;
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* ---- the page ---- */

static void section(FILE *f, const char *id, const char *title, const char *intro)
{
    fprintf(f, "<section id=\"%s\">\n<h2>", id);
    svg_escape(f, title);
    fprintf(f, "</h2>\n");
    if (intro) {
        fprintf(f, "<p>");
        svg_escape(f, intro);
        fprintf(f, "</p>\n");
    }
}

static void missing(FILE *f, const char *what)
{
    fprintf(f, "<p class=\"missing\">");
    svg_escape(f, what);
    fprintf(f, "</p>\n");
}

static cs_status run_metadata(cs_store *db, int64_t run, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-run", "Run", NULL);
    cs_status st = query(db, t, err,
                         "SELECT id, kind, status, model_path, model_sha256, data, n_samples, loss, version, "
                         "started_at, finished_at, seconds, peak_rss_bytes / 1048576.0, argv FROM runs WHERE id = %lld",
                         (long long)run);
    if (st || t->n == 0)
        return st;
    static const char *const names[] = {"run",     "kind",     "status",      "model",   "model sha256",
                                        "data",    "samples",  "loss",        "version", "started (UTC)",
                                        "finished (UTC)", "seconds", "peak memory (MiB)", "command"};
    fprintf(f, "<table id=\"tbl-run\">\n");
    for (int c = 0; c < 14 && c < t->ncol; c++) {
        fprintf(f, "<tr><th>%s</th><td>", names[c]);
        svg_escape(f, str(t, 0, c) ? str(t, 0, c) : "");
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n<h3>Conventions</h3>\n<table id=\"tbl-conventions\">\n");
    if ((st = query(db, t, err, "SELECT key, value FROM conventions WHERE run_id = %lld ORDER BY key", (long long)run)))
        return st;
    for (int64_t r = 0; r < t->n; r++) {
        fprintf(f, "<tr><th>");
        svg_escape(f, str(t, r, 0));
        fprintf(f, "</th><td>");
        svg_escape(f, str(t, r, 1) ? str(t, r, 1) : "");
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n</section>\n");
    return CS_OK;
}

/* Series from consecutive rows that share the label columns [0, nlab):
 * x from column xc (or the row's rank within the series when xc < 0), y
 * from column yc.  Fills s (at most max) and the x, y buffers (t->n each);
 * names point into names (nlab labels joined by " "). */
static int series_from(const table *t, int nlab, int xc, int yc, svg_series *s, int max, double *x, double *y,
                       char (*names)[80])
{
    int ns = 0;
    for (int64_t r = 0; r < t->n; r++) {
        bool start = r == 0;
        for (int c = 0; c < nlab && !start; c++)
            start = !same(str(t, r, c), str(t, r - 1, c));
        if (start) {
            if (ns == max)
                break;
            names[ns][0] = 0;
            for (int c = 0; c < nlab; c++)
                snprintf(names[ns] + strlen(names[ns]), 80 - strlen(names[ns]), "%s%s", c ? " " : "",
                         str(t, r, c) ? str(t, r, c) : "-");
            s[ns] = (svg_series){.name = names[ns], .x = x + r, .y = y + r, .n = 0};
            ns++;
        }
        x[r] = xc >= 0 ? num(t, r, xc) : (double)(s[ns - 1].n + 1);
        y[r] = num(t, r, yc);
        s[ns - 1].n++;
    }
    return ns;
}

enum { MAX_SERIES = 24 };

/* One line plot, in a <figure>, of the series of t (as series_from reads
 * them); caption may be NULL. */
static cs_status plot_table(FILE *f, const table *t, int nlab, int xc, int yc, const char *id, const svg_axes *ax,
                            bool markers, const char *caption, cs_err *err)
{
    double *x = malloc(sizeof(double) * (size_t)t->n + 1), *y = malloc(sizeof(double) * (size_t)t->n + 1);
    if (!x || !y) {
        free(x), free(y);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    }
    svg_series s[MAX_SERIES];
    char names[MAX_SERIES][80];
    int ns = series_from(t, nlab, xc, yc, s, MAX_SERIES, x, y, names);
    fprintf(f, "<figure>\n");
    svg_line_plot(f, id, ax, s, ns, markers);
    if (caption) {
        fprintf(f, "<figcaption>");
        svg_escape(f, caption);
        fprintf(f, "</figcaption>\n");
    }
    fprintf(f, "</figure>\n");
    free(x), free(y);
    return CS_OK;
}

static cs_status eigen_decay(cs_store *db, int64_t run, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-eigen", "Eigenvalue decay per layer",
            "Stored eigenvalues of each curvature and representation, largest first (full blocks: all of them; "
            "K-FAC and unit-wise: the top --topk). Log scale: negative eigenvalues (the Hessian's) are drawn "
            "by their magnitude as their own series; zeros are left out and counted under each figure.");
    table layers = {0};
    cs_status st = query(db, &layers, err, "SELECT layer_id, name, op_type, n_params FROM layers WHERE run_id = %lld "
                                           "ORDER BY layer_id", (long long)run);
    for (int64_t l = 0; !st && l < layers.n; l++) {
        if ((st = query(db, t, err,
                        "SELECT curvature, repr || CASE WHEN value < 0 THEN ' negative, |value|' ELSE '' END, "
                        "abs(value) FROM eigenvalues WHERE run_id = %lld AND layer_id = %s "
                        "ORDER BY curvature, repr, value < 0, abs(value) DESC", (long long)run, str(&layers, l, 0))))
            break;
        char title[200], id[64];
        snprintf(title, sizeof title, "Layer %s: %s (%s, %s parameters)", str(&layers, l, 0), str(&layers, l, 1),
                 str(&layers, l, 2), str(&layers, l, 3));
        snprintf(id, sizeof id, "fig-eigdecay-%s", str(&layers, l, 0));
        if (t->n == 0) {
            fprintf(f, "<h3>");
            svg_escape(f, title);
            fprintf(f, "</h3>\n");
            missing(f, "No eigenvalues stored for this layer.");
            continue;
        }
        int64_t zero = 0;
        for (int64_t r = 0; r < t->n; r++)
            zero += !(num(t, r, 2) > 0);
        char caption[96];
        snprintf(caption, sizeof caption, "%lld zero eigenvalue(s) not shown.", (long long)zero);
        svg_axes ax = {.title = title, .xlabel = "rank k", .ylabel = "eigenvalue", .logx = true, .logy = true};
        st = plot_table(f, t, 2, -1, 2, id, &ax, false, caption, err);
    }
    table_free(&layers);
    fprintf(f, "</section>\n");
    return st;
}

static cs_status density(cs_store *db, int64_t run, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-density", "Spectral density of the whole network",
            "Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017), Gaussian-broadened; per unit eigenvalue, "
            "integrating to 1.");
    cs_status st = query(db, t, err,
                         "SELECT curvature, (lo + hi) / 2, density FROM density WHERE run_id = %lld AND layer_id IS NULL "
                         "ORDER BY curvature, lo", (long long)run);
    if (!st && t->n == 0)
        missing(f, "No whole-network density in this run (analyze --spectrum hessian,ggn computes one).");
    if (!st && t->n > 0) {
        svg_axes ax = {.title = "Spectral density", .xlabel = "eigenvalue", .ylabel = "density"};
        st = plot_table(f, t, 1, 1, 2, "fig-density", &ax, false, NULL, err);
    }
    fprintf(f, "</section>\n");
    return st;
}

/* lambda_max, trace and condition per layer: one bar per curvature, from
 * the most exact representation stored (full, else kfac, else diag). */
static cs_status layer_bars(cs_store *db, int64_t run, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-layers", "Curvature per layer",
            "One bar per curvature, from the most exact representation stored for the layer (full, else K-FAC, "
            "else diagonal); log scale.");
    table layers = {0};
    cs_status st = query(db, &layers, err, "SELECT layer_id, name FROM layers WHERE run_id = %lld ORDER BY layer_id",
                         (long long)run);
    if (!st)
        st = query(db, t, err,
                   "SELECT c.curvature, c.layer_id, c.lambda_max, c.trace, c.condition FROM curvature c "
                   "WHERE c.run_id = %lld AND c.layer_id IS NOT NULL AND c.repr = ("
                   " SELECT d.repr FROM curvature d WHERE d.run_id = c.run_id AND d.layer_id = c.layer_id"
                   " AND d.curvature = c.curvature ORDER BY CASE d.repr WHEN 'full' THEN 0 WHEN 'kfac' THEN 1"
                   " WHEN 'diag' THEN 2 ELSE 3 END LIMIT 1) ORDER BY c.curvature, c.layer_id",
                   (long long)run);
    if (!st && (t->n == 0 || layers.n == 0))
        missing(f, "No per-layer curvature in this run.");
    if (!st && t->n > 0 && layers.n > 0) {
        int nl = (int)layers.n;
        const char **cats = malloc(sizeof(char *) * (size_t)nl);
        double *vals = malloc(sizeof(double) * (size_t)(3 * MAX_SERIES * nl));
        if (!cats || !vals)
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
        for (int l = 0; !st && l < nl; l++)
            cats[l] = str(&layers, l, 1);
        svg_series s[3][MAX_SERIES];
        char names[MAX_SERIES][80];
        int ns = 0;
        for (int64_t r = 0; !st && r < t->n; r++) {
            if (r == 0 || !same(str(t, r, 0), str(t, r - 1, 0))) {
                if (ns == MAX_SERIES)
                    break;
                snprintf(names[ns], 80, "%s", str(t, r, 0));
                for (int m = 0; m < 3; m++) {
                    double *v = vals + (m * MAX_SERIES + ns) * nl;
                    for (int l = 0; l < nl; l++)
                        v[l] = NAN;
                    s[m][ns] = (svg_series){.name = names[ns], .y = v, .n = nl};
                }
                ns++;
            }
            int64_t layer = (int64_t)num(t, r, 1);
            for (int l = 0; l < nl; l++)
                if ((int64_t)num(&layers, l, 0) == layer)
                    for (int m = 0; m < 3; m++)
                        vals[(m * MAX_SERIES + ns - 1) * nl + l] = num(t, r, 2 + m);
        }
        static const char *const ids[] = {"fig-lambda-max", "fig-trace", "fig-condition"};
        static const char *const titles[] = {"Largest eigenvalue per layer", "Trace per layer",
                                             "Condition number per layer"};
        static const char *const ylabels[] = {"lambda_max", "trace", "lambda_max / smallest positive"};
        for (int m = 0; !st && m < 3; m++) {
            svg_axes ax = {.title = titles[m], .xlabel = "layer", .ylabel = ylabels[m], .logy = true};
            fprintf(f, "<figure>\n");
            svg_bar_plot(f, ids[m], &ax, cats, nl, s[m], ns);
            fprintf(f, "</figure>\n");
        }
        free(cats), free(vals);
    }
    table_free(&layers);
    fprintf(f, "</section>\n");
    return st;
}

static cs_status importance(cs_store *db, int64_t run, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-importance", "Parameter importance",
            "Histograms of the per-parameter scores (OBD, OBS, Taylor and the curvature diagonals; log-spaced bins "
            "of |score|), and the pruning check: the loss and accuracy after zeroing the lowest-scoring fraction of "
            "the weights by each score.");
    static const char *const scores[] = {"obd", "obs", "taylor", "diag_ggn", "diag_fisher_emp", "diag_hessian", "grad"};
    enum { BINS = 40 };
    double centers[7][BINS], counts[7][BINS];
    svg_series s[7];
    int ns = 0;
    cs_status st = CS_OK;
    for (int k = 0; k < 7 && !st; k++) {
        if ((st = query(db, t, err, "SELECT abs(%s) FROM importance WHERE run_id = %lld AND %s IS NOT NULL "
                                    "AND %s != 0", scores[k], (long long)run, scores[k], scores[k])))
            break;
        if (t->n == 0)
            continue;
        /* bins in log10 |score| */
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t r = 0; r < t->n; r++) {
            double v = log10(num(t, r, 0));
            if (isfinite(v))
                lo = fmin(lo, v), hi = fmax(hi, v);
        }
        if (!(hi >= lo))
            continue;
        double w = hi > lo ? (hi - lo) / BINS : 1;
        for (int b = 0; b < BINS; b++)
            centers[ns][b] = pow(10, lo + (b + 0.5) * w), counts[ns][b] = 0;
        for (int64_t r = 0; r < t->n; r++) {
            double v = log10(num(t, r, 0));
            if (!isfinite(v))
                continue;
            int b = (int)((v - lo) / w);
            counts[ns][b < 0 ? 0 : b >= BINS ? BINS - 1 : b] += 1;
        }
        s[ns] = (svg_series){.name = scores[k], .x = centers[ns], .y = counts[ns], .n = BINS};
        ns++;
    }
    if (st)
        return st;
    if (ns == 0)
        missing(f, "No importance scores in this run (analyze --importance computes them).");
    else {
        svg_axes ax = {.title = "Importance scores", .xlabel = "|score|", .ylabel = "parameters per bin",
                       .logx = true, .logy = true};
        fprintf(f, "<figure>\n");
        svg_line_plot(f, "fig-importance-hist", &ax, s, ns, false);
        fprintf(f, "</figure>\n");
    }
    if ((st = query(db, t, err, "SELECT score, fraction, loss, accuracy FROM pruning_curve WHERE run_id = %lld "
                                "ORDER BY score, fraction", (long long)run)))
        return st;
    if (t->n == 0)
        missing(f, "No pruning check in this run (analyze --prune-check 0.1,0.3,0.5 runs one).");
    for (int m = 0; m < 2 && t->n > 0 && !st; m++) {
        svg_axes ax = {.title = m ? "Pruning: accuracy" : "Pruning: loss", .xlabel = "fraction of weights zeroed",
                       .ylabel = m ? "accuracy" : "mean loss"};
        st = plot_table(f, t, 1, 1, 2 + m, m ? "fig-pruning-acc" : "fig-pruning-loss", &ax, true, NULL, err);
    }
    if (st)
        return st;
    fprintf(f, "</section>\n");
    return CS_OK;
}

static cs_status steps(cs_store *db, int64_t run, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-steps", "Preconditioned steps",
            "Whole-network step of each preconditioner and damping at the analysed point: the loss change at the "
            "best step size on 2^-8 .. 2^2 (lowest highlighted), rho = actual / predicted decrease at unit step, "
            "and the cosine between -g and the step.");
    cs_status st = query(db, t, err,
                         "SELECT precond, damping, best_change, best_lr, rho, predicted_decrease, actual_decrease, "
                         "cosine, step_norm FROM step_diagnostics WHERE run_id = %lld AND layer_id IS NULL "
                         "ORDER BY best_change", (long long)run);
    if (st)
        return st;
    if (t->n == 0)
        missing(f, "No step diagnostics in this run (analyze --precond sgd,kfac,... computes them).");
    else {
        fprintf(f, "<table id=\"tbl-steps\">\n<tr><th>preconditioner</th><th>damping</th><th>best loss change</th>"
                   "<th>best step size</th><th>rho</th><th>predicted</th><th>actual</th><th>cosine</th>"
                   "<th>|step|</th></tr>\n");
        for (int64_t r = 0; r < t->n; r++) {
            fprintf(f, "<tr%s><td>", r == 0 ? " class=\"best\"" : "");
            svg_escape(f, str(t, r, 0));
            fprintf(f, "</td>");
            for (int c = 1; c < 9; c++)
                fprintf(f, "<td>%.4g</td>", num(t, r, c));
            fprintf(f, "</tr>\n");
        }
        fprintf(f, "</table>\n");
    }
    fprintf(f, "</section>\n");
    return CS_OK;
}

/* The latest quantize run: HAWQ-V2 sensitivity per layer against the width,
 * and the predicted and measured loss of the written model. */
static cs_status quantize_run(cs_store *db, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-quantize", "Quantization sensitivity",
            "The latest quantize run: Omega = Tr(H)/n ||Q(W) - W||^2 per layer and width (log scale).");
    cs_status st = query(db, t, err,
                         "SELECT l.name, s.bits, s.omega FROM quant_sensitivity s JOIN layers l "
                         "ON l.run_id = s.run_id AND l.layer_id = s.layer_id WHERE s.run_id = (SELECT max(id) "
                         "FROM runs WHERE kind = 'quantize' AND status = 'done') ORDER BY l.layer_id, s.bits");
    if (!st && t->n == 0)
        missing(f, "No finished quantize run in this file.");
    if (!st && t->n > 0) {
        table r = {0};
        char caption[256] = "";
        st = query(db, &r, err, "SELECT predicted_loss, tolerance, measured_loss, size_bytes FROM quant_result "
                                "WHERE run_id = (SELECT max(id) FROM runs WHERE kind = 'quantize' AND status = 'done')");
        if (!st && r.n > 0)
            snprintf(caption, sizeof caption, "Predicted loss %.6g +- %.3g, measured %.6g, %.0f bytes.", num(&r, 0, 0),
                     num(&r, 0, 1), num(&r, 0, 2), num(&r, 0, 3));
        table_free(&r);
        svg_axes ax = {.title = "Sensitivity per width", .xlabel = "bits", .ylabel = "omega", .logy = true};
        if (!st)
            st = plot_table(f, t, 1, 1, 2, "fig-quant-omega", &ax, true, caption[0] ? caption : NULL, err);
    }
    fprintf(f, "</section>\n");
    return st;
}

static cs_status finetune_runs(cs_store *db, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-finetune", "Fine-tuning runs in this file",
            "Every finetune run: the batch loss and accuracy per logged step, and the last evaluation of each.");
    cs_status st = query(db, t, err,
                         "SELECT r.id || ' ' || coalesce(c.value, '?'), s.step, s.loss, s.accuracy FROM runs r "
                         "LEFT JOIN conventions c ON c.run_id = r.id AND c.key = 'precond' "
                         "JOIN finetune_steps s ON s.run_id = r.id WHERE r.kind = 'finetune' ORDER BY r.id, s.step");
    if (st)
        return st;
    if (t->n == 0) {
        missing(f, "No finetune runs in this file.");
        fprintf(f, "</section>\n");
        return CS_OK;
    }
    for (int m = 0; m < 2 && !st; m++) {
        svg_axes ax = {.title = m ? "Fine-tuning: batch accuracy" : "Fine-tuning: batch loss", .xlabel = "step",
                       .ylabel = m ? "accuracy" : "mean loss", .logy = m == 0};
        st = plot_table(f, t, 1, 1, 2 + m, m ? "fig-finetune-acc" : "fig-finetune-loss", &ax, false, NULL, err);
    }
    if (st)
        return st;
    if ((st = query(db, t, err,
                    "SELECT r.id, coalesce(c.value, '?'), e.split, e.epoch, e.loss, e.accuracy, r.seconds, "
                    "r.peak_rss_bytes / 1048576.0 FROM runs r LEFT JOIN conventions c ON c.run_id = r.id AND "
                    "c.key = 'precond' JOIN finetune_evals e ON e.run_id = r.id AND e.epoch = (SELECT max(epoch) "
                    "FROM finetune_evals WHERE run_id = r.id) WHERE r.kind = 'finetune' ORDER BY e.split, e.loss")))
        return st;
    fprintf(f, "<table id=\"tbl-finetune\">\n<tr><th>run</th><th>preconditioner</th><th>split</th><th>epoch</th>"
               "<th>loss</th><th>accuracy</th><th>seconds</th><th>peak MiB</th></tr>\n");
    for (int64_t r = 0; r < t->n; r++) {
        fprintf(f, "<tr><td>%s</td><td>", str(t, r, 0));
        svg_escape(f, str(t, r, 1));
        fprintf(f, "</td><td>");
        svg_escape(f, str(t, r, 2));
        fprintf(f, "</td><td>%s</td><td>%.4f</td><td>%.4f</td><td>%.1f</td><td>%.0f</td></tr>\n", str(t, r, 3),
                num(t, r, 4), num(t, r, 5), num(t, r, 6), num(t, r, 7));
    }
    fprintf(f, "</table>\n</section>\n");
    return CS_OK;
}

/* The gradient noise scale of the run (analyze --noise-scale): B_simple
 * per layer and for the network as bars, and the table. */
static cs_status noise_scale(cs_store *db, int64_t run, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-noise", "Gradient noise scale",
            "B_simple = tr(Sigma) / |G|^2 per layer and for the network (McCandlish et al. 2018), from the "
            "per-sample gradients, with its delta-method standard error; log scale.");
    cs_status st = query(db, t, err,
                         "SELECT coalesce(l.name, '(network)'), n.b_simple, n.b_simple_se, n.grad_sq_norm, "
                         "n.trace_cov FROM noise_scale n LEFT JOIN layers l ON l.run_id = n.run_id AND "
                         "l.layer_id = n.layer_id WHERE n.run_id = %lld ORDER BY n.layer_id IS NULL, n.layer_id",
                         (long long)run);
    if (st)
        return st;
    if (t->n == 0) {
        missing(f, "No noise scale in this run (analyze --noise-scale computes it).");
        fprintf(f, "</section>\n");
        return CS_OK;
    }
    int nc = (int)t->n;
    const char **cats = malloc(sizeof(char *) * (size_t)nc);
    double *vals = malloc(sizeof(double) * (size_t)nc);
    if (!cats || !vals) {
        free(cats), free(vals);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    }
    for (int r = 0; r < nc; r++)
        cats[r] = str(t, r, 0), vals[r] = num(t, r, 1);
    svg_series sr = {.name = "B_simple", .y = vals, .n = nc};
    svg_axes ax = {.title = "Gradient noise scale per layer", .xlabel = "layer", .ylabel = "B_simple", .logy = true};
    fprintf(f, "<figure>\n");
    svg_bar_plot(f, "fig-noise", &ax, cats, nc, &sr, 1);
    fprintf(f, "</figure>\n<table id=\"tbl-noise\">\n<tr><th>layer</th><th>B_simple</th><th>standard error</th>"
               "<th>|G|^2</th><th>tr(Sigma)</th></tr>\n");
    for (int r = 0; r < nc; r++) {
        fprintf(f, "<tr><td>");
        svg_escape(f, cats[r]);
        fprintf(f, "</td>");
        for (int c = 1; c < 5; c++)
            fprintf(f, str(t, r, c) ? "<td>%.4g</td>" : "<td>-</td>", num(t, r, c));
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n</section>\n");
    free(cats), free(vals);
    return CS_OK;
}

/* The latest comparison (curvscope compare): test accuracy against the
 * training time per method, and the v_comparison table. */
static cs_status comparison(cs_store *db, FILE *f, table *t, cs_err *err)
{
    section(f, "sec-compare", "Preconditioner comparison",
            "The latest curvscope compare: each method's test accuracy at the end of each epoch against its "
            "cumulative training-loop time (same model, data order, seed and epochs), then throughput, peak "
            "heap and time to the target accuracy.");
    cs_status st = query(db, t, err,
                         "SELECT method, train_seconds, test_accuracy FROM comparison_epochs WHERE comparison_id = "
                         "(SELECT max(id) FROM comparisons) ORDER BY method, epoch");
    if (st)
        return st;
    if (t->n == 0) {
        missing(f, "No comparison in this file (curvscope compare runs one).");
        fprintf(f, "</section>\n");
        return CS_OK;
    }
    svg_axes ax = {.title = "Test accuracy against training time", .xlabel = "training seconds",
                   .ylabel = "test accuracy"};
    if ((st = plot_table(f, t, 1, 1, 2, "fig-compare", &ax, true, NULL, err)) ||
        (st = query(db, t, err,
                    "SELECT method, lr, samples_per_sec, peak_heap_mib, final_test_loss, final_test_accuracy, "
                    "time_to_target FROM v_comparison WHERE comparison_id = (SELECT max(id) FROM comparisons)")))
        return st;
    fprintf(f, "<table id=\"tbl-compare\">\n<tr><th>method</th><th>lr</th><th>samples/s</th><th>peak heap MiB</th>"
               "<th>test loss</th><th>test accuracy</th><th>time to target (s)</th></tr>\n");
    for (int64_t r = 0; r < t->n; r++) {
        fprintf(f, "<tr><td>");
        svg_escape(f, str(t, r, 0));
        fprintf(f, "</td>");
        for (int c = 1; c < 7; c++)
            fprintf(f, str(t, r, c) ? "<td>%.4g</td>" : "<td>-</td>", num(t, r, c));
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n</section>\n");
    return CS_OK;
}

/* Continual tuning (finetune --old-data): the old task's and the new task's
 * loss per epoch for each run, with and without EWC. */
static cs_status forgetting(cs_store *db, FILE *f, table *t, cs_err *err)
{
    cs_status st = query(db, t, err,
                         "SELECT e.run_id || ' ' || coalesce('ewc lambda ' || c.value, 'plain') || ' ' || "
                         "CASE e.split WHEN 'old' THEN 'old task' ELSE 'new task' END, e.epoch + 1, e.loss "
                         "FROM finetune_evals e LEFT JOIN conventions c ON c.run_id = e.run_id AND "
                         "c.key = 'ewc_lambda' WHERE e.split IN ('old', 'train') AND e.run_id IN "
                         "(SELECT run_id FROM finetune_evals WHERE split = 'old') ORDER BY e.run_id, e.split, e.epoch");
    if (st || t->n == 0)
        return st;
    section(f, "sec-forgetting", "Forgetting",
            "Runs with --old-data: the old task's loss (finetune_evals split old) and the new task's training "
            "loss after each epoch, with and without the EWC penalty (v_forgetting has the numbers).");
    svg_axes ax = {.title = "Old-task and new-task loss per epoch", .xlabel = "epoch", .ylabel = "mean loss",
                   .logy = true};
    if (!(st = plot_table(f, t, 1, 1, 2, "fig-forgetting", &ax, true, NULL, err)))
        fprintf(f, "</section>\n");
    return st;
}

/* Laplace runs (curvscope laplace): every fit's log marginal likelihood in
 * a table, and the latest run with predictives as NLL and ECE bars, one
 * per method.  Left out when the file has no fit. */
static cs_status laplace_runs(cs_store *db, FILE *f, table *t, cs_err *err)
{
    cs_status st = query(db, t, err,
                         "SELECT l.run_id, l.curvature, l.repr, l.subset, l.prior_mode, l.prior_precision, "
                         "l.log_marglik, l.log_lik, l.n_params, l.n_samples FROM laplace_fits l JOIN runs r "
                         "ON r.id = l.run_id WHERE r.status = 'done' ORDER BY l.run_id");
    if (st || t->n == 0)
        return st;
    section(f, "sec-laplace", "Laplace posterior",
            "Each curvscope laplace fit: the log marginal likelihood log p(D|theta*) - 1/2 theta*^T P0 theta* - "
            "1/2 log det P + 1/2 log det P0 at its prior precision (one per layer when blank), then the test-set "
            "predictives of the latest run that has them: MAP, the linearised model (probit, Monte Carlo) and the "
            "network at sampled weights.");
    fprintf(f, "<table id=\"tbl-laplace\">\n<tr><th>run</th><th>curvature</th><th>repr</th><th>subset</th>"
               "<th>prior</th><th>prior precision</th><th>log marginal likelihood</th><th>log p(D|theta*)</th>"
               "<th>parameters</th><th>samples</th></tr>\n");
    for (int64_t r = 0; r < t->n; r++) {
        fprintf(f, "<tr><td>%s</td>", str(t, r, 0));
        for (int c = 1; c < 5; c++) {
            fprintf(f, "<td>");
            svg_escape(f, str(t, r, c));
            fprintf(f, "</td>");
        }
        fprintf(f, str(t, r, 5) ? "<td>%.4g</td>" : "<td>-</td>", num(t, r, 5));
        fprintf(f, "<td>%.6g</td><td>%.6g</td><td>%s</td><td>%s</td></tr>\n", num(t, r, 6), num(t, r, 7),
                str(t, r, 8), str(t, r, 9));
    }
    fprintf(f, "</table>\n");
    if ((st = query(db, t, err,
                    "SELECT method, nll, ece, run_id, n_test FROM laplace_predictive WHERE run_id = (SELECT "
                    "max(p.run_id) FROM laplace_predictive p JOIN runs r ON r.id = p.run_id WHERE r.status = "
                    "'done') ORDER BY CASE method WHEN 'map' THEN 0 WHEN 'glm_probit' THEN 1 WHEN 'glm_mc' THEN 2 "
                    "ELSE 3 END")))
        return st;
    if (t->n == 0) {
        missing(f, "No predictives stored (curvscope laplace --test-data computes them).");
        fprintf(f, "</section>\n");
        return CS_OK;
    }
    int nm = (int)t->n;
    const char *cats[8];
    double vals[2][8];
    nm = nm > 8 ? 8 : nm;
    for (int r = 0; r < nm; r++)
        cats[r] = str(t, r, 0), vals[0][r] = num(t, r, 1), vals[1][r] = num(t, r, 2);
    char title[2][96];
    snprintf(title[0], sizeof title[0], "Test NLL per predictive (run %s, %s samples)", str(t, 0, 3), str(t, 0, 4));
    snprintf(title[1], sizeof title[1], "Test ECE per predictive (run %s, 15 bins)", str(t, 0, 3));
    static const char *const ids[] = {"fig-laplace-nll", "fig-laplace-ece"}, *const ylabels[] = {"mean NLL", "ECE"};
    for (int m = 0; m < 2; m++) {
        svg_series sr = {.name = ylabels[m], .y = vals[m], .n = nm};
        svg_axes ax = {.title = title[m], .xlabel = "predictive", .ylabel = ylabels[m]};
        fprintf(f, "<figure>\n");
        svg_bar_plot(f, ids[m], &ax, cats, nm, &sr, 1);
        fprintf(f, "</figure>\n");
    }
    fprintf(f, "</section>\n");
    return CS_OK;
}

cs_status cs_report_html(cs_store *db, int64_t run, FILE *f, cs_err *err)
{
    table t = {0};
    cs_status st = CS_OK;
    if (run <= 0) {
        if ((st = query(db, &t, err, "SELECT max(id) FROM runs WHERE kind = 'analyze' AND status = 'done'")))
            return st;
        run = t.n > 0 && str(&t, 0, 0) ? (int64_t)num(&t, 0, 0) : -1;
    } else {
        if ((st = query(db, &t, err, "SELECT kind FROM runs WHERE id = %lld", (long long)run)))
            return st;
        if (t.n == 0) {
            table_free(&t);
            return cs_fail(err, CS_ERR_USAGE, "no run %lld in the database", (long long)run);
        }
    }
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<title>curvscope report</title>\n<style>\n"
               "body { font-family: sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }\n"
               "h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 2em; }\n"
               "table { border-collapse: collapse; margin: 1em 0; }\n"
               "th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px; }\n"
               "tr.best td { background: #d8f5d0; font-weight: bold; }\n"
               "figure { margin: 1em 0; } figcaption { font-size: 12px; color: #555; }\n"
               ".missing { color: #777; font-style: italic; }\n</style>\n</head>\n<body>\n<h1>curvscope report</h1>\n");
    if (run > 0) {
        st = run_metadata(db, run, f, &t, err);
        if (!st)
            st = eigen_decay(db, run, f, &t, err);
        if (!st)
            st = density(db, run, f, &t, err);
        if (!st)
            st = layer_bars(db, run, f, &t, err);
        if (!st)
            st = importance(db, run, f, &t, err);
        if (!st)
            st = steps(db, run, f, &t, err);
        if (!st && has_table(db, &t, "noise_scale"))
            st = noise_scale(db, run, f, &t, err);
    } else {
        missing(f, "No finished analyze run in this file.");
    }
    if (!st)
        st = finetune_runs(db, f, &t, err);
    if (!st && has_table(db, &t, "comparisons"))
        st = comparison(db, f, &t, err);
    if (!st && has_table(db, &t, "v_forgetting"))
        st = forgetting(db, f, &t, err);
    if (!st && has_table(db, &t, "quant_result"))
        st = quantize_run(db, f, &t, err);
    if (!st && has_table(db, &t, "laplace_predictive"))
        st = laplace_runs(db, f, &t, err);
    fprintf(f, "</body>\n</html>\n");
    table_free(&t);
    if (!st && ferror(f))
        st = cs_fail(err, CS_ERR_IO, "writing the report failed");
    return st;
}
