/* Preconditioned steps and their diagnostics against dense computation from
 * PyTorch's matrices (tests/fixtures/curv_tiny_mlp64_ce.txt): every step
 * equals -(C + lambda I)^-1 g with the inverse taken here by Gauss-Jordan
 * (K-FAC, full, unit blocks; |H| for newton), the predicted decrease equals
 * the explicit quadratic form g^T D + 1/2 D^T H D; and on a quadratic loss
 * (one Gemm layer with mse) the Newton step without damping lands on the
 * minimum with rho = 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "../test_util.h"
#include "curv/steps.h"
#include "case.h"
#include "dense_ref.h"
#include "fixture.h"
#include "objective/objective.h"
#include "onnx/loader.h"

static double fn_abs(double x, double xmax, const void *arg)
{
    (void)xmax, (void)arg;
    return fabs(x);
}

/* (x + damping)^-1/4, damping in *arg */
static double fn_inv_fourth(double x, double xmax, const void *arg)
{
    (void)xmax;
    return pow(x + *(const double *)arg, -0.25);
}

/* x = -(M + lambda I)^-1 g, dense. */
static void dense_step(const double *M, long W, double lambda, const double *g, double *x)
{
    double *a = malloc(sizeof(double) * (size_t)(W * W)), *inv = malloc(sizeof(double) * (size_t)(W * W));
    memcpy(a, M, sizeof(double) * (size_t)(W * W));
    for (long i = 0; i < W; i++)
        a[i * W + i] += lambda;
    gauss_jordan(a, inv, W);
    for (long i = 0; i < W; i++) {
        x[i] = 0;
        for (long j = 0; j < W; j++)
            x[i] -= inv[i * W + j] * g[j];
    }
    free(a);
    free(inv);
}

static void check_against_dense(void)
{
    cs_graph *g;
    cs_dataset ds;
    fx_file fx;
    if (curv_case_load_fixture("tiny_mlp64", "tiny_mlp64", 0, "tiny_mlp64_ce", "fixture", &g, &ds, &fx))
        return;
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    unsigned all = (1u << CS_PRE_COUNT) - 1;
    o.curvatures = 0;
    o.reprs = 0;
    cs_precond_needs(all, &o.curvatures, &o.reprs, &o.shampoo);
    o.reprs |= 1u << CS_REPR_DIAG;
    o.keep_matrices = true;
    o.batch = 5;
    cs_curv_report rep;
    cs_err err = {0};
    const fx_record *grad = fx_get(&fx, "grad/net"), *H = fx_get(&fx, "block/hessian/net");
    if (!ok(grad && H && cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK, "compute (%s)", err.msg))
        return;
    long P = (long)g->n_param_scalars;
    double *step = malloc(sizeof(double) * (size_t)P), *want = malloc(sizeof(double) * (size_t)P);
    double lambda = 1e-2;
    static const struct { cs_precond_kind k; const char *block; } cases[] = {
        {CS_PRE_KFAC, "kfac/ggn/%d"}, {CS_PRE_FULL, "block/ggn/%d"}, {CS_PRE_NEWTON, "block/hessian/%d"},
        {CS_PRE_UNIT, "block/ggn/%d"}, {CS_PRE_DIAG, "block/ggn/%d"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bool fb[4] = {0};
        cs_status st = cs_precond_step(g, &rep, cases[c].k, lambda, grad->v, step, fb, &err);
        for (int l = 0; l < g->n_layers; l++) {
            const cs_layer *L = &g->layers[l];
            long off = (long)g->params[L->first_param].offset, W = (long)L->numel;
            char name[64];
            snprintf(name, sizeof name, cases[c].block, l);
            const fx_record *B = fx_get(&fx, name);
            double *M = malloc(sizeof(double) * (size_t)(W * W));
            memcpy(M, B->v, sizeof(double) * (size_t)(W * W));
            if (cases[c].k == CS_PRE_NEWTON)
                jacobi_matrix_function(M, W, fn_abs, NULL); /* saddle-free Newton: |H| */
            if (cases[c].k == CS_PRE_DIAG)
                for (long i = 0; i < W; i++)
                    for (long j = 0; j < W; j++)
                        if (i != j)
                            M[i * W + j] = 0;
            if (cases[c].k == CS_PRE_UNIT) /* units: rows of [W | b] (Gemm with transB = 1: l 0; transB = 0: l 1) */
                for (long i = 0; i < W; i++)
                    for (long j = 0; j < W; j++) {
                        long ui, uj;
                        if (l == 0) /* fc1: weight [5, 4] + bias [5] */
                            ui = i < 20 ? i / 4 : i - 20, uj = j < 20 ? j / 4 : j - 20;
                        else /* fc2: weight [5, 3] stored [in, out] + bias [3] */
                            ui = i < 15 ? i % 3 : i - 15, uj = j < 15 ? j % 3 : j - 15;
                        if (ui != uj)
                            M[i * W + j] = 0;
                    }
            dense_step(M, W, lambda, grad->v + off, want + off);
            free(M);
        }
        double e = rel_err(step, want, P);
        ok(!st && e <= 1e-8 && !fb[0] && !fb[1], "%s step equals -(C + lambda I)^-1 g computed densely (rel err %.2g)",
           cs_precond_name(cases[c].k), e);
    }
    /* Diagnostics: predicted decrease = g^T D + 1/2 D^T H D (explicit). */
    cs_step_report sr;
    double damp[1] = {lambda};
    if (ok(cs_step_diagnostics(g, &ds, NULL, CS_LOSS_CE, 5, &rep, 1u << CS_PRE_KFAC | 1u << CS_PRE_SGD, damp, 1, &sr,
                               &err) == CS_OK,
           "diagnostics run (%s)", err.msg)) {
        for (int i = 0; i < sr.n; i++) {
            const cs_step_result *r = &sr.res[i];
            if (r->layer != -1)
                continue;
            if (cs_precond_step(g, &rep, r->precond, r->precond == CS_PRE_SGD ? 0 : lambda, grad->v, step, NULL, &err))
                continue;
            double gd = 0, dhd = 0;
            for (long a = 0; a < P; a++) {
                gd += grad->v[a] * step[a];
                for (long b = 0; b < P; b++)
                    dhd += step[a] * H->v[a * P + b] * step[b];
            }
            double want_pred = gd + 0.5 * dhd;
            ok(fabs(r->predicted - want_pred) <= 1e-9 * fabs(want_pred),
               "%s: predicted decrease %.10g equals g^T D + D^T H D / 2 = %.10g", cs_precond_name(r->precond),
               r->predicted, want_pred);
            ok(fabs(r->rho - r->actual / r->predicted) < 1e-12 && r->best_lr > 0 && r->best_change <= r->actual + 1e-15,
               "%s: rho = actual / predicted (%.4g), best step %.4g changes the loss by %.4g",
               cs_precond_name(r->precond), r->rho, r->best_lr, r->best_change);
            if (r->precond == CS_PRE_SGD)
                ok(fabs(r->cosine - 1) < 1e-12, "sgd: the step is -g (cosine %.15g)", r->cosine);
        }
        cs_step_report_free(&sr);
    }
    free(step);
    free(want);
    cs_curv_report_free(&rep);
    fx_free(&fx);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* Shampoo: the statistics' traces equal the empirical Fisher block's trace
 * (sum_n |G_n|_F^2 / N), and the step equals -(L + lambda I)^-1/4 G
 * (R + lambda I)^-1/4 with the roots taken here by Jacobi rotations and G
 * laid out by hand from the gradient. */
static void check_shampoo(void)
{
    cs_graph *g;
    cs_dataset ds;
    fx_file fx;
    if (curv_case_load_fixture("tiny_mlp64", "tiny_mlp64", 0, "tiny_mlp64_ce", "shampoo: fixture", &g, &ds, &fx))
        return;
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_FISHER_EMP;
    o.reprs = 1u << CS_REPR_DIAG;
    o.shampoo = true;
    o.batch = 5;
    cs_curv_report rep;
    cs_err err = {0};
    const fx_record *grad = fx_get(&fx, "grad/net");
    if (ok(cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK && rep.shampoo, "shampoo: statistics (%s)", err.msg)) {
        for (int l = 0; l < 2; l++) {
            const cs_shampoo_stats *x = &rep.shampoo[l];
            char name[64];
            snprintf(name, sizeof name, "block/fisher_emp/%d", l);
            const fx_record *F = fx_get(&fx, name);
            double trL = 0, trR = 0, trF = 0;
            for (long i = 0; i < x->dG; i++)
                trL += x->L[i * x->dG + i];
            for (long i = 0; i < x->dA; i++)
                trR += x->R[i * x->dA + i];
            for (long i = 0; i < F->rows; i++)
                trF += F->v[i * F->rows + i];
            ok(fabs(trL - trF) <= 1e-12 * trF && fabs(trR - trF) <= 1e-12 * trF,
               "shampoo: tr L = tr R = tr of the empirical Fisher block of layer %d (%.10g, %.10g, %.10g)", l, trL,
               trR, trF);
        }
        double lambda = 1e-2;
        long P = (long)g->n_param_scalars;
        double *step = malloc(sizeof(double) * (size_t)P), *want = malloc(sizeof(double) * (size_t)P);
        cs_status st = cs_precond_step(g, &rep, CS_PRE_SHAMPOO, lambda, grad->v, step, NULL, &err);
        for (int l = 0; l < 2; l++) {
            const cs_shampoo_stats *x = &rep.shampoo[l];
            long dG = (long)x->dG, dA = (long)x->dA, off = l == 0 ? 0 : 25;
            double *G = calloc((size_t)(dG * dA), sizeof(double)), *L = malloc(sizeof(double) * (size_t)(dG * dG));
            double *R = malloc(sizeof(double) * (size_t)(dA * dA)), *T = calloc((size_t)(dG * dA), sizeof(double));
            /* fc1: weight [5, 4] (transB = 1) + bias [5]; fc2: weight [5, 3]
             * stored [in, out] (transB = 0) + bias [3]: [W | b] by hand. */
            for (long o2 = 0; o2 < dG; o2++) {
                for (long j = 0; j < dA - 1; j++)
                    G[o2 * dA + j] = l == 0 ? grad->v[off + o2 * 4 + j] : grad->v[off + j * 3 + o2];
                G[o2 * dA + dA - 1] = grad->v[off + (l == 0 ? 20 : 15) + o2];
            }
            memcpy(L, x->L, sizeof(double) * (size_t)(dG * dG));
            memcpy(R, x->R, sizeof(double) * (size_t)(dA * dA));
            jacobi_matrix_function(L, dG, fn_inv_fourth, &lambda);
            jacobi_matrix_function(R, dA, fn_inv_fourth, &lambda);
            for (long a = 0; a < dG; a++)
                for (long b = 0; b < dA; b++) {
                    double v = 0;
                    for (long c = 0; c < dG; c++)
                        for (long d = 0; d < dA; d++)
                            v += L[a * dG + c] * G[c * dA + d] * R[d * dA + b];
                    T[a * dA + b] = -v;
                }
            for (long o2 = 0; o2 < dG; o2++) {
                for (long j = 0; j < dA - 1; j++)
                    want[l == 0 ? off + o2 * 4 + j : off + j * 3 + o2] = T[o2 * dA + j];
                want[off + (l == 0 ? 20 : 15) + o2] = T[o2 * dA + dA - 1];
            }
            free(G), free(L), free(R), free(T);
        }
        double e = rel_err(step, want, P);
        ok(!st && e <= 1e-9, "shampoo step equals -(L + lambda I)^-1/4 G (R + lambda I)^-1/4 computed densely (rel err %.2g)",
           e);
        free(step);
        free(want);
        cs_curv_report_free(&rep);
    }
    fx_free(&fx);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* A quadratic loss: one Gemm layer with mse.  The undamped Newton step
 * reaches the minimum (zero gradient) and the quadratic model is exact. */
static void check_newton_quadratic(void)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load("tiny_linear64", "tiny_mlp64", 0, &g, &ds))
        return;
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_HESSIAN;
    o.reprs = 1u << CS_REPR_FULL;
    o.keep_matrices = true;
    o.loss = CS_LOSS_MSE;
    o.batch = 5;
    cs_curv_report rep;
    cs_err err = {0};
    cs_step_report sr;
    double damp[1] = {0.0};
    if (ok(cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK &&
               cs_step_diagnostics(g, &ds, NULL, CS_LOSS_MSE, 5, &rep, 1u << CS_PRE_NEWTON, damp, 1, &sr, &err) == CS_OK,
           "quadratic: diagnostics (%s)", err.msg)) {
        const cs_step_result *r = &sr.res[0];
        ok(r->layer == -1 && fabs(r->rho - 1) < 1e-9, "quadratic: newton rho = %.12f", r->rho);
        ok(fabs(r->actual - r->predicted) <= 1e-12 * fabs(r->predicted),
           "quadratic: actual change %.12g equals the predicted %.12g", r->actual, r->predicted);
        /* At theta + D the gradient vanishes. */
        int64_t P = g->n_param_scalars;
        double *grad = calloc((size_t)P, sizeof(double)), *step = calloc((size_t)P, sizeof(double)), L;
        cs_objective obj;
        if (!cs_objective_init(&obj, g, &ds, NULL, CS_LOSS_MSE, 5, CS_AD_GRAD, &err) &&
            !cs_objective_gradient(&obj, &L, grad, &err) &&
            !cs_precond_step(g, &rep, CS_PRE_NEWTON, 0.0, grad, step, NULL, &err)) {
            double gmax0 = 0, gmax = 0;
            for (int64_t i = 0; i < P; i++)
                gmax0 = fmax(gmax0, fabs(grad[i]));
            for (int q = 0; q < g->n_params; q++) {
                cs_tensor *t = &g->values[g->params[q].value].init;
                for (int64_t i = 0; i < cs_tensor_numel(t); i++)
                    ((double *)t->data)[i] += step[g->params[q].offset + i];
            }
            if (!cs_objective_gradient(&obj, &L, grad, &err))
                for (int64_t i = 0; i < P; i++)
                    gmax = fmax(gmax, fabs(grad[i]));
            ok(gmax <= 1e-12 * gmax0, "quadratic: the gradient after the Newton step is %.2g (before %.2g)", gmax, gmax0);
            cs_objective_free(&obj);
        }
        free(grad);
        free(step);
        cs_step_report_free(&sr);
        cs_curv_report_free(&rep);
    }
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    check_against_dense();
    check_shampoo();
    check_newton_quadratic();
    return tap_done();
}
