#include "curv/spectrum.h"

#include "curv/mem_plan.h"
#include "base/clock.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "objective/objective.h"

void cs_spectrum_opts_init(cs_spectrum_opts *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 40;
    o->topk = 5;
    o->probes = 10;
    o->bins = 100;
    o->sigma_frac = 0.01;
    o->repeats = 1;
    o->power_iters = 100;
    o->conv_rtol = 1e-3;
    o->batch = 128;
}

typedef struct product_ctx {
    cs_objective *obj;
    cs_curv_kind kind;
    const cs_spectrum_opts *o;
    int64_t calls, expected;
    int layer;                /* -1: whole network; else the block of this layer */
    int64_t offset, dim;      /* the block's place in the parameter vector */
    double *full_v, *full_y;  /* whole-vector buffers for a layer block */
} product_ctx;

/* y = A v over the whole sample set: one pass over the data.  For a layer
 * block, v is embedded in the whole parameter vector (zero elsewhere, so
 * only nodes downstream of the layer carry tangents) and the block's part
 * of the product is read back. */
static cs_status product(void *vctx, const double *v, double *y, cs_err *err)
{
    product_ctx *c = vctx;
    if (c->o->cancel && *c->o->cancel)
        return cs_fail(err, CS_ERR_RUNTIME, "interrupted");
    const double *vin = v;
    double *yout = y;
    if (c->layer >= 0) {
        memcpy(c->full_v + c->offset, v, sizeof(double) * (size_t)c->dim);
        vin = c->full_v;
        yout = c->full_y;
    }
    cs_status st = c->kind == CS_CURV_HESSIAN  ? cs_objective_hvp(c->obj, vin, c->layer, yout, err)
                   : c->kind == CS_CURV_FISHER_EMP ? cs_objective_empfvp(c->obj, vin, c->layer, yout, err)
                                                   : cs_objective_ggnvp(c->obj, vin, c->layer, yout, err);
    if (!st && c->layer >= 0)
        memcpy(y, c->full_y + c->offset, sizeof(double) * (size_t)c->dim);
    c->calls++;
    if (!st && c->o->progress)
        c->o->progress(c->o->progress_ctx, c->calls < c->expected ? c->calls : c->expected, c->expected);
    return st;
}

static cs_status spectra_of(product_ctx *pctx, int64_t P, const cs_spectrum_opts *o, cs_net_spectrum *s,
                            cs_err *err);

static cs_status one_curvature(cs_objective *obj, cs_curv_kind kind, int layer, const cs_spectrum_opts *o,
                               cs_net_spectrum *s, cs_err *err)
{
    const cs_graph *g = obj->g;
    int64_t P = layer < 0 ? g->n_param_scalars : g->layers[layer].numel;
    s->curv = kind;
    s->layer = layer;
    s->dim = P;
    s->repeats = o->repeats;
    product_ctx ctx = {.obj = obj, .kind = kind, .o = o, .layer = layer,
                       .expected = (int64_t)o->repeats * o->steps + (int64_t)o->probes * o->steps +
                                   o->probes + (o->power ? o->power_iters : 0)};
    if (layer >= 0) {
        ctx.offset = g->params[g->layers[layer].first_param].offset;
        ctx.dim = P;
        ctx.full_v = calloc((size_t)g->n_param_scalars + 1, sizeof(double));
        ctx.full_y = calloc((size_t)g->n_param_scalars + 1, sizeof(double));
        if (!ctx.full_v || !ctx.full_y) {
            free(ctx.full_v), free(ctx.full_y);
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        }
    }
    cs_status st = spectra_of(&ctx, P, o, s, err);
    free(ctx.full_v);
    free(ctx.full_y);
    return st;
}

static cs_status spectra_of(product_ctx *pctx, int64_t P, const cs_spectrum_opts *o, cs_net_spectrum *s,
                            cs_err *err)
{
    s->lanczos = calloc((size_t)o->repeats, sizeof *s->lanczos);
    s->converged = calloc((size_t)o->repeats, sizeof *s->converged);
    if (!s->lanczos || !s->converged)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    cs_status st = CS_OK;
    double t0 = cs_now_seconds();
    for (int r = 0; r < o->repeats && !st; r++) {
        /* Each repeat starts from another seeded Gaussian vector. */
        /* Stop at an invariant subspace: beta below 1e-9 of the largest |alpha|
         * is rounding noise of the products (float64 models), not a direction. */
        cs_lanczos_opts lo = {.steps = o->steps, .reorth_passes = 2, .stop_rtol = 1e-9,
                              .want_vectors = r == 0 ? o->eigenvectors : 0};
        st = cs_lanczos_ex(product, pctx, P, NULL, o->seed + 1000003u * (uint64_t)(r + 1), &lo,
                           &s->lanczos[r], err);
        if (st)
            break;
        cs_lanczos_result *L = &s->lanczos[r];
        s->converged[r] = calloc((size_t)L->steps + 1, sizeof(int));
        if (!s->converged[r])
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        double amax = 0;
        for (int i = 0; i < L->steps; i++)
            amax = fmax(amax, fabs(L->ritz[i]));
        for (int i = 0; i < L->steps; i++)
            s->converged[r][i] = L->residual[i] <= o->conv_rtol * amax;
    }
    s->seconds_lanczos = cs_now_seconds() - t0;
    if (st)
        return st;
    t0 = cs_now_seconds();
    if (o->probes > 0 && (st = cs_slq_ex(product, pctx, P, o->probes, o->steps, o->seed + 17,
                                         CS_PROBE_RADEMACHER, &s->slq, err)))
        return st;
    s->seconds_slq = cs_now_seconds() - t0;
    if (o->probes > 0) {
        cs_slq_moments(&s->slq, &s->slq_mean, &s->slq_mean_sq, &s->neg_fraction);
        /* Spread of the per-probe estimates of tr(A)/n. */
        double m = 0, m2 = 0;
        for (int p = 0; p < o->probes; p++) {
            double pm, pm2, pn;
            cs_slq_probe_moments(&s->slq, p, &pm, &pm2, &pn);
            m += pm;
            m2 += pm * pm;
        }
        m /= o->probes;
        s->slq_mean_stderr = o->probes > 1 ? sqrt(fmax(0, m2 / o->probes - m * m) * o->probes / (o->probes - 1) / o->probes) : NAN;
        /* Density grid: the nodes' range widened by 5 sigma on each side. */
        double lo = INFINITY, hi = -INFINITY;
        for (int p = 0; p < o->probes; p++)
            for (int i = 0; i < s->slq.n_steps[p]; i++) {
                lo = fmin(lo, s->slq.nodes[p * s->slq.steps + i]);
                hi = fmax(hi, s->slq.nodes[p * s->slq.steps + i]);
            }
        double spread = hi - lo > 0 ? hi - lo : fmax(fabs(hi), 1.0);
        s->sigma = o->sigma_frac * spread;
        s->bins = o->bins;
        s->edges = malloc(sizeof(double) * (size_t)(o->bins + 1));
        s->density = malloc(sizeof(double) * (size_t)o->bins);
        if (!s->edges || !s->density)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        cs_slq_density(&s->slq, lo - 5 * s->sigma, hi + 5 * s->sigma, o->bins, s->sigma, s->edges, s->density);
        /* Effective rank exp(-sum p log p), p = lambda / T over the positive
         * eigenvalues: with T = tr(A+) and S = tr(A+ log A+), both
         * estimated by the quadrature, it is exp(log T - S / T). */
        double T = 0, S = 0, tol = 1e-12 * fmax(fabs(hi), fabs(lo));
        for (int p = 0; p < o->probes; p++)
            for (int i = 0; i < s->slq.n_steps[p]; i++) {
                double th = s->slq.nodes[p * s->slq.steps + i], w = s->slq.weights[p * s->slq.steps + i];
                if (th > tol) {
                    T += w * th;
                    S += w * th * log(th);
                }
            }
        /* tr f(A) ~ n * mean over probes of sum_i w_i f(theta_i) */
        T *= (double)P / o->probes;
        S *= (double)P / o->probes;
        s->slq_effective_rank = T > 0 ? exp(log(T) - S / T) : NAN;
    }
    t0 = cs_now_seconds();
    if (o->probes > 0 && (st = cs_hutchinson(product, pctx, P, o->probes, o->seed + 29, &s->hutch_trace,
                                             &s->hutch_stderr, NULL, err)))
        return st;
    s->seconds_hutch = cs_now_seconds() - t0;
    t0 = cs_now_seconds();
    if (o->power && (st = cs_power_iteration(product, pctx, P, o->seed + 31, o->power_iters, 1e-4,
                                             &s->power_lambda, NULL, &s->power_iters, err)))
        return st;
    s->seconds_power = cs_now_seconds() - t0;
    return CS_OK;
}

cs_status cs_spectrum_compute(const cs_graph *g, const cs_dataset *ds, const cs_spectrum_opts *o,
                              cs_net_spectrum **out, int *n_out, cs_err *err)
{
    *out = NULL;
    *n_out = 0;
    static const cs_curv_kind supported[] = {CS_CURV_HESSIAN, CS_CURV_GGN, CS_CURV_FISHER,
                                             CS_CURV_FISHER_EMP};
    for (int c = 0; c < CS_CURV_COUNT; c++) {
        bool ok = false;
        for (size_t k = 0; k < sizeof supported / sizeof supported[0]; k++)
            ok = ok || (int)supported[k] == c;
        if ((o->curvatures >> c & 1) && !ok)
            return cs_fail(err, CS_ERR_USAGE, "--spectrum %s: matrix-free spectra are for hessian, ggn, "
                           "fisher and fisher_emp", cs_curv_name((cs_curv_kind)c));
    }
    if (o->steps < 2 || o->repeats < 1 || o->bins < 1 || o->probes < 0)
        return cs_fail(err, CS_ERR_USAGE, "spectrum options out of range (steps >= 2, repeats >= 1)");
    cs_objective obj;
    cs_status st = cs_objective_init(&obj, g, ds, o->norm, o->loss, o->batch, CS_AD_HVP, err);
    if (st)
        return st;
    int big = 0;
    for (int l = 0; o->layer_min_dim > 0 && l < g->n_layers; l++)
        big += g->layers[l].numel >= o->layer_min_dim;
    int n = __builtin_popcount(o->curvatures) * (1 + big);
    cs_net_spectrum *res = calloc((size_t)n + 1, sizeof *res);
    if (!res) {
        cs_objective_free(&obj);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    }
    int k = 0;
    for (int c = 0; c < CS_CURV_COUNT && !st; c++) {
        if (!(o->curvatures >> c & 1))
            continue;
        st = one_curvature(&obj, (cs_curv_kind)c, -1, o, &res[k++], err);
        for (int l = 0; l < g->n_layers && !st && o->layer_min_dim > 0; l++)
            if (g->layers[l].numel >= o->layer_min_dim)
                st = one_curvature(&obj, (cs_curv_kind)c, l, o, &res[k++], err);
    }
    cs_objective_free(&obj);
    if (st) {
        cs_spectrum_free(res, k);
        return st;
    }
    *out = res;
    *n_out = n;
    return CS_OK;
}

void cs_spectrum_free(cs_net_spectrum *s, int n)
{
    if (!s)
        return;
    for (int i = 0; i < n; i++) {
        for (int r = 0; s[i].lanczos && r < s[i].repeats; r++) {
            cs_lanczos_result_free(&s[i].lanczos[r]);
            if (s[i].converged)
                free(s[i].converged[r]);
        }
        free(s[i].lanczos);
        free(s[i].converged);
        cs_slq_result_free(&s[i].slq);
        free(s[i].edges);
        free(s[i].density);
    }
    free(s);
}

cs_status cs_spectrum_plan(const cs_graph *g, const cs_dataset *ds, const cs_spectrum_opts *o, cs_mem_plan *plan,
                           cs_err *err)
{
    if (!o->curvatures)
        return CS_OK;
    cs_objective obj;
    cs_status st = cs_objective_init(&obj, g, ds, o->norm, o->loss, o->batch, CS_AD_HVP, err);
    if (st)
        return st;
    st = cs_mem_plan_add(plan, CS_MEM_INTERP, "", cs_objective_bytes(&obj), err,
                         "the spectra's plans and derivative buffers for batches of %lld", (long long)obj.batch);
    cs_objective_free(&obj);
    /* the whole network's operator is the largest; a layer's block also
     * keeps two full-length vectors to embed its products */
    int64_t P = g->n_param_scalars, m = o->steps < P ? o->steps : P;
    int64_t vec = o->eigenvectors < m ? o->eigenvectors : m;
    int64_t lanczos = (int64_t)sizeof(double) * ((m + vec + 2) * P + m * m + 6 * m);
    if (!st)
        st = cs_mem_plan_add(plan, CS_MEM_LANCZOS, "", lanczos, err,
                             "the Lanczos basis of the whole network: %lld vectors of %lld", (long long)(m + vec),
                             (long long)P);
    int64_t per_target = (int64_t)o->repeats * o->steps + (int64_t)o->probes * o->steps + o->probes +
                         (o->power ? o->power_iters : 0);
    for (int c = 0; c < CS_CURV_COUNT && !st; c++) {
        if (!(o->curvatures >> c & 1))
            continue;
        int targets = 1;
        for (int l = 0; o->layer_min_dim > 0 && l < g->n_layers; l++)
            targets += g->layers[l].numel >= o->layer_min_dim;
        st = cs_mem_plan_add_passes(plan, per_target * targets, err,
                                    "%s spectra: %lld products of %d operator%s (Lanczos, SLQ, Hutchinson%s)",
                                    cs_curv_name((cs_curv_kind)c), (long long)per_target, targets,
                                    targets == 1 ? "" : "s", o->power ? ", power" : "");
    }
    return st;
}
