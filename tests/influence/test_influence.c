/* Influence scores against dense references built here from the exact
 * GGN of the mean training loss (cs_objective_ggnvp, column by column, which
 * the objective tests check against PyTorch) and per-example gradients:
 *   - with precond "full" the scores equal g_q^T (G_l + lambda I)^-1 g_m
 *     summed over the layer blocks G_l, to 1e-8 relative;
 *   - EK-FAC's scores rank like the exact damped layer-block GGN's
 *     (Spearman > 0.95); against the whole network's exact
 *     g_q^T (G + lambda I)^-1 g_m the measured value is printed;
 *   - dot and cosine are the plain gradient products; self-influence is
 *     the diagonal of the train-on-train EK-FAC scores;
 *   - Pearson / Spearman on known series. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../curv/case.h"
#include "../curv/dense_ref.h"
#include "../tap.h"
#include "influence/influence.h"
#include "objective/objective.h"

#define LAMBDA 1e-2

/* G [P, P] of ds by P GGN-vector products. */
static int dense_ggn(const cs_graph *g, const cs_dataset *ds, double *G)
{
    int64_t P = g->n_param_scalars;
    cs_objective o;
    cs_err err = {0};
    cs_norm norm;
    cs_norm_init(&norm);
    if (!ok(cs_objective_init(&o, g, ds, &norm, CS_LOSS_CE, 64, CS_AD_HVP, &err) == CS_OK, "objective (%s)",
            err.msg))
        return -1;
    double *e = calloc((size_t)P, sizeof(double));
    int bad = 0;
    for (int64_t j = 0; j < P && !bad; j++) {
        e[j] = 1;
        bad = cs_objective_ggnvp(&o, e, -1, G + j * P, &err) != CS_OK;
        e[j] = 0;
    }
    ok(!bad, "dense GGN (%s)", err.msg);
    free(e);
    cs_objective_free(&o);
    return bad ? -1 : 0;
}

/* Per-example gradients [n, P]. */
static int example_grads(const cs_graph *g, const cs_dataset *ds, double *out)
{
    cs_objective o;
    cs_err err = {0};
    cs_norm norm;
    cs_norm_init(&norm);
    if (!ok(cs_objective_init(&o, g, ds, &norm, CS_LOSS_CE, 1, CS_AD_GRAD, &err) == CS_OK, "objective (%s)",
            err.msg))
        return -1;
    int bad = 0;
    for (int64_t i = 0; i < ds->n && !bad; i++) {
        double loss;
        int64_t hits;
        bad = cs_objective_batch_gradient(&o, i, &loss, &hits, out + i * g->n_param_scalars, &err) != CS_OK;
    }
    ok(!bad, "example gradients (%s)", err.msg);
    cs_objective_free(&o);
    return bad ? -1 : 0;
}

/* Inv = (M restricted to [lo, hi) + lambda I)^-1 placed in Inv [P, P]
 * (zero elsewhere in that block's rows). */
static int damped_block_inverse(const double *M, int64_t P, int64_t lo, int64_t hi, double lambda, double *Inv)
{
    long n = (long)(hi - lo);
    double *a = malloc(sizeof(double) * (size_t)(n * n)), *inv = malloc(sizeof(double) * (size_t)(n * n));
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++)
            a[i * n + j] = M[(lo + i) * P + lo + j] + (i == j ? lambda : 0);
    int r = gauss_jordan(a, inv, n);
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++)
            Inv[(lo + i) * P + lo + j] = inv[i * n + j];
    free(a), free(inv);
    return r;
}

/* S[q, m] = gq^T Inv gm. */
static void scores(const double *Inv, const double *gq, int64_t Q, const double *gm, int64_t N, int64_t P,
                   double *S)
{
    double *t = malloc(sizeof(double) * (size_t)P);
    for (int64_t q = 0; q < Q; q++) {
        for (int64_t i = 0; i < P; i++) {
            t[i] = 0;
            for (int64_t j = 0; j < P; j++)
                t[i] += Inv[i * P + j] * gq[q * P + j];
        }
        for (int64_t m = 0; m < N; m++) {
            double s = 0;
            for (int64_t i = 0; i < P; i++)
                s += t[i] * gm[m * P + i];
            S[q * N + m] = s;
        }
    }
    free(t);
}

static void check_model(const char *model)
{
    cs_graph *g;
    cs_dataset train, query;
    if (curv_case_load(model, "tiny_mlp64", 0, &g, &train))
        return;
    cs_graph *g2;
    if (curv_case_load(model, "tiny_mlp64", 4, &g2, &query)) {
        cs_dataset_free(&train), cs_graph_free(g);
        return;
    }
    cs_graph_free(g2);
    int64_t P = g->n_param_scalars, N = train.n, Q = query.n;
    double *G = calloc((size_t)(P * P), sizeof(double)), *Inv = calloc((size_t)(P * P), sizeof(double));
    double *gm = calloc((size_t)(N * P), sizeof(double)), *gq = calloc((size_t)(Q * P), sizeof(double));
    double *ref = calloc((size_t)(N * Q), sizeof(double)), *ref_self = calloc((size_t)(N * N), sizeof(double));
    cs_norm norm;
    cs_norm_init(&norm);
    if (dense_ggn(g, &train, G) || example_grads(g, &train, gm) || example_grads(g, &query, gq))
        goto out;

    /* Block-diagonal exact damped inverse: "full" must match it. */
    for (int l = 0; l < g->n_layers; l++) {
        int64_t lo = g->params[g->layers[l].first_param].offset;
        ok(damped_block_inverse(G, P, lo, lo + g->layers[l].numel, LAMBDA, Inv), "%s: block %d invertible", model, l);
    }
    scores(Inv, gq, Q, gm, N, P, ref);
    cs_influence_opts o;
    cs_influence_opts_init(&o);
    o.precond = "full";
    o.damping = LAMBDA;
    o.norm = &norm;
    cs_influence_result r;
    cs_err err = {0};
    if (ok(cs_influence_compute(g, &train, &query, &o, &r, &err) == CS_OK, "%s: full influence (%s)", model,
           err.msg)) {
        ok(rel_err(r.ekfac, ref, (long)(N * Q)) < 1e-8, "%s: full-block influence = exact damped blocks (%.2e)",
           model, rel_err(r.ekfac, ref, (long)(N * Q)));
        ok(r.params_used == P, "%s: every layer kept", model);
        double dmax = 0, cmax = 0;
        for (int64_t q = 0; q < Q; q++)
            for (int64_t m = 0; m < N; m++) {
                double d = 0, nq = 0, nm = 0;
                for (int64_t i = 0; i < P; i++)
                    d += gq[q * P + i] * gm[m * P + i], nq += gq[q * P + i] * gq[q * P + i],
                        nm += gm[m * P + i] * gm[m * P + i];
                dmax = fmax(dmax, fabs(r.dot[q * N + m] - d) / (fabs(d) + 1e-300 + 1e-3));
                cmax = fmax(cmax, fabs(r.cosine[q * N + m] - d / sqrt(nq * nm)));
            }
        ok(dmax < 1e-10, "%s: dot products (%.2e)", model, dmax);
        ok(cmax < 1e-10, "%s: cosines (%.2e)", model, cmax);
        /* self-influence: query = train, so the diagonal of the
         * train-on-train matrix */
        double *Inv_gm = ref_self;
        scores(Inv, gm, N, gm, N, P, Inv_gm);
        double smax = 0, sref = 0;
        for (int64_t m = 0; m < N; m++)
            smax = fmax(smax, fabs(r.self[m] - Inv_gm[m * N + m])), sref = fmax(sref, fabs(Inv_gm[m * N + m]));
        ok(smax <= 1e-8 * sref, "%s: self-influence = g_m^T (G_l + lambda I)^-1 g_m (%.2e)", model, smax / sref);
        cs_influence_result_free(&r);
    }

    /* EK-FAC against the exact damped GGN, of the layer blocks (EK-FAC's
     * own structure: what the eigenbasis and the re-fitted diagonal
     * approximate) asserted, and of the whole network (cross-layer terms
     * too) reported. */
    o.precond = "ekfac";
    o.damping = LAMBDA;
    if (ok(cs_influence_compute(g, &train, &query, &o, &r, &err) == CS_OK, "%s: EK-FAC influence (%s)", model,
           err.msg)) {
        double rho = 0;
        ok(cs_spearman(r.ekfac, ref, N * Q, &rho, &err) == CS_OK, "spearman");
        ok(rho > 0.95, "%s: EK-FAC vs exact layer-block GGN influence: Spearman %.4f > 0.95 (Pearson %.4f)", model,
           rho, cs_pearson(r.ekfac, ref, N * Q));
        memset(Inv, 0, sizeof(double) * (size_t)(P * P));
        ok(damped_block_inverse(G, P, 0, P, LAMBDA, Inv), "%s: network GGN invertible", model);
        scores(Inv, gq, Q, gm, N, P, ref);
        ok(cs_spearman(r.ekfac, ref, N * Q, &rho, &err) == CS_OK, "spearman");
        diag("%s: EK-FAC vs exact network GGN influence: Spearman %.4f, Pearson %.4f (not asserted)", model, rho,
             cs_pearson(r.ekfac, ref, N * Q));
        cs_influence_result_free(&r);
    }
out:
    free(G), free(Inv), free(gm), free(gq), free(ref), free(ref_self);
    cs_dataset_free(&train), cs_dataset_free(&query);
    cs_graph_free(g);
}

static void check_correlations(void)
{
    double x[] = {1, 2, 3, 4, 5}, y[] = {2, 4, 6, 8, 10}, z[] = {1, 4, 9, 16, 25}, t[] = {1, 1, 2, 2, 3};
    double rho;
    cs_err err = {0};
    ok(fabs(cs_pearson(x, y, 5) - 1) < 1e-15, "pearson of a line is 1");
    ok(cs_spearman(x, z, 5, &rho, &err) == CS_OK && fabs(rho - 1) < 1e-15, "spearman of a monotone map is 1");
    ok(fabs(cs_pearson(x, z, 5) - 0.9811049102515929) < 1e-12, "pearson of x and x^2");
    /* ranks of t: 1.5 1.5 3.5 3.5 5 */
    double rt[] = {1.5, 1.5, 3.5, 3.5, 5};
    ok(cs_spearman(x, t, 5, &rho, &err) == CS_OK && fabs(rho - cs_pearson(x, rt, 5)) < 1e-15, "ties at mean rank");
    ok(isnan(cs_pearson(x, x, 1)), "one value: NaN");
}

int main(void)
{
    check_correlations();
    check_model("tiny_mlp64");
    return tap_done();
}
