#include "precond/diagnostics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objective/objective.h"

/* The names analyze accepts: the registry's but adamw (diagnostics.h). */
static bool analysed(const cs_precond_def *def)
{
    return !def->adam;
}

cs_status cs_precond_parse_list(const char *text, unsigned *mask, cs_err *err)
{
    *mask = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int found = -1;
        for (int k = 0; k < CS_PRE_COUNT; k++) {
            const cs_precond_def *def = cs_precond_at(k);
            if (analysed(def) && strlen(def->name) == len && strncmp(def->name, p, len) == 0)
                found = k;
        }
        if (found < 0) {
            char names[256] = "";
            for (int k = 0; k < CS_PRE_COUNT; k++)
                if (analysed(cs_precond_at(k)))
                    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "",
                             cs_precond_at(k)->name);
            return cs_fail(err, CS_ERR_USAGE, "unknown preconditioner '%.*s' for step diagnostics (expected %s)",
                           (int)len, p, names);
        }
        *mask |= 1u << found;
        p = end ? end + 1 : p + len;
    }
    if (!*mask)
        return cs_fail(err, CS_ERR_USAGE, "empty preconditioner list");
    return CS_OK;
}

void cs_precond_needs(unsigned mask, unsigned *curvatures, unsigned *reprs)
{
    for (int k = 0; k < CS_PRE_COUNT; k++) {
        const cs_precond_def *def = cs_precond_at(k);
        if (mask >> k & 1 && def->reprs) {
            *curvatures |= 1u << cs_precond_analysis_curv(def);
            *reprs |= def->reprs;
        }
    }
}

cs_status cs_precond_step(const cs_graph *g, const cs_dataset *ds, const cs_norm *norm, cs_loss_kind loss,
                          int64_t batch, const cs_curv_report *rep, cs_precond_kind k, double damping,
                          const double *grad, double *step, bool *used_sgd, cs_err *err)
{
    const cs_precond_def *def = cs_precond_at(k);
    if (!def || !analysed(def))
        return cs_fail(err, CS_ERR_USAGE, "no step diagnostics for preconditioner %d", (int)k);
    int L = g->n_layers;
    int64_t P = g->n_param_scalars;
    /* finetune's options, with the analysis' damping, loss and micro-batch;
     * every block the analysis computed is used (its --max-full already
     * bounds them). */
    cs_precond_opts po;
    cs_precond_opts_init(&po);
    po.damping = damping;
    po.loss = loss;
    po.norm = norm;
    po.batch = batch;
    po.max_full = INT64_MAX;
    bool *frozen = calloc((size_t)L + 1, sizeof(bool)), *fallback = calloc((size_t)L + 1, sizeof(bool));
    const char **why = calloc((size_t)L + 1, sizeof(char *));
    cs_precond_ctx c = {.g = g, .o = &po, .curv = cs_precond_analysis_curv(def), .frozen = frozen,
                        .fallback = fallback, .why = why, .given = rep};
    void *state = NULL;
    cs_status st = frozen && fallback && why ? CS_OK : cs_fail(err, CS_ERR_NOMEM, "out of memory for a step");
    if (!st && def->ops->create)
        st = def->ops->create(&c, &state, err);
    if (!st && def->ops->observe)
        def->ops->observe(state, &c, grad);
    if (!st && def->ops->refresh)
        st = def->ops->refresh(state, &c, ds, err);
    if (!st)
        st = def->ops->apply(state, &c, grad, step, err);
    for (int64_t i = 0; !st && i < P; i++)
        step[i] = -step[i];
    for (int l = 0; !st && used_sgd && l < L; l++)
        used_sgd[l] = fallback[l];
    if (def->ops->destroy)
        def->ops->destroy(state);
    free(frozen), free(fallback), free(why);
    return st;
}

/* ---- diagnostics ---- */

/* theta = theta0 + alpha * d over the parameters [from, to) (flat indices). */
static void move_params(cs_graph *g, const double *theta0, const double *d, double alpha, int64_t from,
                        int64_t to)
{
    for (int q = 0; q < g->n_params; q++) {
        cs_tensor *t = &g->values[g->params[q].value].init;
        int64_t off = g->params[q].offset, n = cs_tensor_numel(t);
        for (int64_t i = 0; i < n; i++) {
            int64_t j = off + i;
            double v = theta0[j] + (j >= from && j < to ? alpha * d[j] : 0.0);
            if (t->dtype == CS_DT_DOUBLE)
                ((double *)t->data)[i] = v;
            else
                ((float *)t->data)[i] = (float)v;
        }
    }
}

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Step sizes of the line search: 2^-8 .. 2^2. */
#define LR_LO (-8)
#define LR_HI 2

static cs_status diagnose(cs_objective *obj, cs_graph *g, const double *theta0, const double *grad,
                          double L0, const double *step, int layer, double *hv, cs_step_result *res,
                          cs_err *err)
{
    int64_t P = g->n_param_scalars, from = 0, to = P;
    if (layer >= 0) {
        from = g->params[g->layers[layer].first_param].offset;
        to = from + g->layers[layer].numel;
    }
    /* The step restricted to [from, to), as a full vector for the product. */
    double *d = calloc((size_t)P + 1, sizeof(double));
    if (!d)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    memcpy(d + from, step + from, sizeof(double) * (size_t)(to - from));
    cs_status st = cs_objective_hvp(obj, d, layer, hv, err);
    double gg = dot(grad + from, grad + from, to - from), dd = dot(d + from, d + from, to - from);
    double gd = dot(grad + from, d + from, to - from);
    res->layer = layer;
    res->grad_norm = sqrt(gg);
    res->step_norm = sqrt(dd);
    res->cosine = gg > 0 && dd > 0 ? -gd / sqrt(gg * dd) : NAN;
    res->predicted = st ? NAN : gd + 0.5 * dot(d + from, hv + from, to - from);
    double L;
    res->best_lr = NAN;
    res->best_change = INFINITY;
    for (int e = LR_LO; e <= LR_HI && !st; e++) {
        double alpha = ldexp(1.0, e);
        move_params(g, theta0, d, alpha, from, to);
        st = cs_objective_gradient(obj, &L, NULL, err);
        if (!st && L - L0 < res->best_change) {
            res->best_change = L - L0;
            res->best_lr = alpha;
        }
        if (!st && e == 0)
            res->actual = L - L0;
    }
    move_params(g, theta0, d, 0.0, 0, P);
    res->rho = res->predicted != 0 ? res->actual / res->predicted : NAN;
    free(d);
    return st;
}

cs_status cs_step_diagnostics(cs_graph *g, const cs_dataset *ds, const cs_norm *norm,
                              cs_loss_kind loss, int64_t batch, const cs_curv_report *rep,
                              unsigned mask, const double *dampings, int n_dampings,
                              cs_step_report *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    int64_t P = g->n_param_scalars;
    cs_objective obj;
    cs_status st = cs_objective_init(&obj, g, ds, norm, loss, batch, CS_AD_HVP, err);
    if (st)
        return st;
    double *theta0 = malloc(sizeof(double) * (size_t)P + 1), *grad = malloc(sizeof(double) * (size_t)P + 1);
    double *step = malloc(sizeof(double) * (size_t)P + 1), *hv = malloc(sizeof(double) * (size_t)P + 1);
    bool *fallback = calloc((size_t)g->n_layers + 1, sizeof(bool));
    int cap = (g->n_layers + 1) * CS_PRE_COUNT * (n_dampings > 0 ? n_dampings : 1);
    out->res = calloc((size_t)cap + 1, sizeof *out->res);
    double L0 = 0;
    if (!theta0 || !grad || !step || !hv || !fallback || !out->res)
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for step diagnostics");
    for (int q = 0; !st && q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        cs_convert(theta0 + g->params[q].offset, CS_DT_DOUBLE, t->data, t->dtype, cs_tensor_numel(t));
    }
    if (!st)
        st = cs_objective_gradient(&obj, &L0, grad, err);
    for (int k = 0; k < CS_PRE_COUNT && !st; k++) {
        const cs_precond_def *def = cs_precond_at(k);
        if (!(mask >> k & 1))
            continue;
        int nd = def->damped ? n_dampings : 1; /* sgd ignores damping */
        for (int di = 0; di < nd && !st; di++) {
            double lambda = def->damped ? dampings[di] : NAN;
            st = cs_precond_step(g, ds, norm, loss, batch, rep, (cs_precond_kind)k, def->damped ? lambda : 0.0,
                                 grad, step, fallback, err);
            for (int l = 0; l < g->n_layers && !st && di == 0; l++)
                if (fallback[l] && out->n_notes < 32)
                    snprintf(out->notes[out->n_notes++], sizeof out->notes[0],
                             "%s: layer %s falls back to sgd (no block computed)", def->name, g->layers[l].name);
            for (int l = -1; l < g->n_layers && !st; l++) {
                cs_step_result *r = &out->res[out->n++];
                r->precond = (cs_precond_kind)k;
                r->damping = lambda;
                st = diagnose(&obj, g, theta0, grad, L0, step, l, hv, r, err);
            }
        }
    }
    free(theta0), free(grad), free(step), free(hv), free(fallback);
    cs_objective_free(&obj);
    if (st)
        cs_step_report_free(out);
    return st;
}

void cs_step_report_free(cs_step_report *r)
{
    free(r->res);
    memset(r, 0, sizeof *r);
}
