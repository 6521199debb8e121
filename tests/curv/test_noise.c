/* The gradient noise scale (curv/noise.h) against a float64 reference
 * formed here from explicit per-sample gradients: each sample's gradient
 * by an ordinary backward over a batch of one (cs_objective_batch_gradient,
 * checked by central differences in tests/objective), then the two-pass
 * mean and covariance trace, the unbiased |G|^2, and the groups' delta-
 * method standard error written out independently of src/curv/noise.c.
 * Both of the engine's paths are checked: the fisher_emp seeds shared with
 * a curvature that uses them, and run for the noise scale alone. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "case.h"
#include "curv/engine.h"
#include "objective/objective.h"

/* Reference (|G|^2, tr Sigma) of gradients g[n * P + off .. + W) for
 * n in [a, b). */
static void ref_estimate(const double *g, int64_t P, int64_t off, int64_t W, int64_t a, int64_t b, double *G2,
                         double *S)
{
    long double sq = 0, dev = 0;
    int64_t n = b - a;
    for (int64_t i = 0; i < W; i++) {
        long double m = 0;
        for (int64_t s = a; s < b; s++)
            m += g[s * P + off + i];
        m /= n;
        sq += m * m;
        for (int64_t s = a; s < b; s++)
            dev += (g[s * P + off + i] - m) * (g[s * P + off + i] - m);
    }
    *S = (double)(dev / (n - 1));
    *G2 = (double)(sq - dev / (n - 1) / n);
}

static double rel(double a, double b)
{
    return fabs(a - b) / fmax(fabs(b), 1e-300);
}

static void check_model(const char *model, unsigned curvatures, unsigned reprs, const char *label, int K)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load(model, model, 0, &g, &ds))
        return;
    cs_err err = {0};
    cs_norm norm;
    cs_norm_init(&norm);
    int64_t N = ds.n, P = g->n_param_scalars;
    double *grads = calloc((size_t)(N * P), sizeof(double));
    cs_objective obj;
    bool ready = grads && cs_objective_init(&obj, g, &ds, &norm, CS_LOSS_CE, 1, CS_AD_GRAD, &err) == CS_OK;
    for (int64_t n = 0; ready && n < N; n++) {
        double loss;
        int64_t hits;
        ready = cs_objective_batch_gradient(&obj, n, &loss, &hits, grads + n * P, &err) == CS_OK;
    }
    if (grads && ready)
        cs_objective_free(&obj);
    if (!ok(ready, "%s: explicit per-sample gradients (%s)", model, err.msg))
        goto out;

    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = curvatures;
    o.reprs = reprs;
    o.batch = 5; /* micro-batches that do not divide N */
    o.norm = &norm;
    o.noise_scale = true;
    o.noise_groups = K;
    cs_curv_report rep;
    if (!ok(cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK, "%s %s: compute (%s)", model, label, err.msg))
        goto out;
    ok(rep.n_noise == g->n_layers + 1, "%s %s: one result per layer and the network (%d)", model, label, rep.n_noise);
    double worst = 0, worst_se = 0, net_G = 0, net_S = 0;
    double *Gk = calloc((size_t)(K * (g->n_layers + 1)), sizeof(double));
    double *Sk = calloc((size_t)(K * (g->n_layers + 1)), sizeof(double));
    bool all = true;
    for (int i = 0; i < rep.n_noise && i <= g->n_layers; i++) {
        const cs_noise_result *r = &rep.noise[i];
        int l = i < g->n_layers ? i : -1;
        double G2, S, se;
        if (l >= 0) {
            const cs_layer *L = &g->layers[l];
            int64_t off = g->params[L->first_param].offset;
            ref_estimate(grads, P, off, L->numel, 0, N, &G2, &S);
            for (int k = 0; k < K; k++) {
                ref_estimate(grads, P, off, L->numel, N * k / K, N * (k + 1) / K, &Gk[i * K + k], &Sk[i * K + k]);
                Gk[g->n_layers * K + k] += Gk[i * K + k];
                Sk[g->n_layers * K + k] += Sk[i * K + k];
            }
            net_G += G2, net_S += S;
        } else {
            G2 = net_G, S = net_S;
        }
        /* delta method over the K groups, written from the formula */
        const double *gk = Gk + i * K, *sk = Sk + i * K;
        double mg = 0, ms = 0, vg = 0, vs = 0, c = 0;
        for (int k = 0; k < K; k++)
            mg += gk[k] / K, ms += sk[k] / K;
        for (int k = 0; k < K; k++) {
            vg += (gk[k] - mg) * (gk[k] - mg) / ((K - 1.0) * K);
            vs += (sk[k] - ms) * (sk[k] - ms) / ((K - 1.0) * K);
            c += (gk[k] - mg) * (sk[k] - ms) / ((K - 1.0) * K);
        }
        double B = S / G2;
        se = fabs(B) * sqrt(vs / (S * S) + vg / (G2 * G2) - 2 * c / (S * G2));
        all = all && r->available && r->layer == l && r->n_samples == N && r->groups == K;
        double e = fmax(rel(r->grad_sq_norm, G2), fmax(rel(r->trace_cov, S), G2 > 0 ? rel(r->b_simple, B) : 0));
        if (!(G2 > 0))
            e = fmax(e, isnan(r->b_simple) ? 0 : 1);
        worst = fmax(worst, e);
        worst_se = fmax(worst_se, G2 > 0 ? rel(r->b_simple_se, se) : 0);
    }
    free(Gk), free(Sk);
    ok(all, "%s %s: every layer available, %lld samples in %d groups", model, label, (long long)N, K);
    /* the model is float32, the sums float64: only summation order differs */
    ok(worst < 1e-6, "%s %s: |G|^2, tr(Sigma), B_simple equal the reference (worst relative %.2g)", model, label,
       worst);
    ok(worst_se < 1e-6, "%s %s: the standard error equals the reference (worst relative %.2g)", model, label,
       worst_se);
    cs_curv_report_free(&rep);
out:
    free(grads);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    const unsigned emp = 1u << CS_CURV_FISHER_EMP, ggn = 1u << CS_CURV_GGN;
    const unsigned diag = 1u << CS_REPR_DIAG, kfac = 1u << CS_REPR_KFAC;
    check_model("tiny_mlp64", emp, diag, "with fisher_emp diag", 4);
    check_model("tiny_mlp64", ggn, kfac, "noise seeds alone", 4);
    check_model("tiny_cnn64", ggn | emp, diag | kfac, "with ggn and fisher_emp", 3);
    check_model("tiny_attn64", ggn, diag, "noise seeds alone", 6);

    /* Under 4 samples there is one group, whose spread gives no
     * standard error. */
    cs_graph *g;
    cs_dataset ds;
    if (!curv_case_load("tiny_mlp64", "tiny_mlp64", 3, &g, &ds)) {
        cs_curv_opts o;
        cs_curv_opts_init(&o);
        o.noise_scale = true;
        cs_curv_report rep;
        cs_err err = {0};
        if (ok(cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK, "3 samples: compute (%s)", err.msg)) {
            const cs_noise_result *net = &rep.noise[rep.n_noise - 1];
            ok(net->groups == 1 && isnan(net->b_simple_se) && net->trace_cov >= 0,
               "3 samples: one group, standard error NaN (%d, %g)", net->groups, net->b_simple_se);
            cs_curv_report_free(&rep);
        }
        cs_dataset_free(&ds);
        cs_graph_free(g);
    }
    return tap_done();
}
