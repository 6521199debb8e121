/* Analyze's preconditioned steps (the registry's preconditioners, one step
 * at the analysed point) and their diagnostics against dense computation
 * from PyTorch's matrices (tests/fixtures/curv_tiny_mlp64_ce.txt): every
 * step equals -(C + lambda I)^-1 g with the inverse taken here by
 * Gauss-Jordan (full, unit, diagonal blocks; |H| for newton; the whole
 * network's empirical Fisher for smw), K-FAC's with the factors damped by
 * the pi split, (G + sqrt(l)/pi I) (x) (A + pi sqrt(l) I), and Shampoo's
 * with its roots by Jacobi rotations; the predicted decrease equals the
 * explicit quadratic form g^T D + 1/2 D^T H D; and on a quadratic loss (one
 * Gemm layer with mse) the Newton step without damping lands on the
 * minimum with rho = 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../curv/case.h"
#include "../curv/dense_ref.h"
#include "../curv/fixture.h"
#include "../precond/precond_ref.h"
#include "../tap.h"
#include "../test_util.h"
#include "objective/objective.h"
#include "onnx/loader.h"
#include "precond/diagnostics.h"

static double fn_abs(double x, double xmax, const void *arg)
{
    (void)xmax, (void)arg;
    return fabs(x);
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

/* Parameter p of layer l of tiny_mlp64 in [W | b] (rows = output units):
 * fc1 weight [5, 4] (transB = 1) + bias [5]; fc2 weight [5, 3] stored
 * [in, out] (transB = 0) + bias [3].  *unit is the row, *feat the column. */
static void mlp_cell(int l, long p, long *unit, long *feat)
{
    if (l == 0)
        *unit = p < 20 ? p / 4 : p - 20, *feat = p < 20 ? p % 4 : 4;
    else
        *unit = p < 15 ? p % 3 : p - 15, *feat = p < 15 ? p / 3 : 5;
}

/* K-FAC's damped block (G + dg I) (x) (A + da I) of layer l in parameter
 * order, from PyTorch's factors, with pi = sqrt((tr A / dA) / (tr G / dG)),
 * da = pi sqrt(lambda), dg = sqrt(lambda) / pi (Martens & Grosse 2015, 6.3). */
static void kfac_damped_block(const fx_record *A, const fx_record *G, int l, long W, double lambda, double *M)
{
    long dA = (long)A->rows, dG = (long)G->rows;
    double ta = 0, tg = 0;
    for (long i = 0; i < dA; i++)
        ta += A->v[i * dA + i];
    for (long i = 0; i < dG; i++)
        tg += G->v[i * dG + i];
    double pi = sqrt((ta / (double)dA) / (tg / (double)dG)), da = pi * sqrt(lambda), dg = sqrt(lambda) / pi;
    for (long p = 0; p < W; p++)
        for (long q = 0; q < W; q++) {
            long up, fp, uq, fq;
            mlp_cell(l, p, &up, &fp);
            mlp_cell(l, q, &uq, &fq);
            M[p * W + q] = (G->v[up * dG + uq] + (up == uq ? dg : 0)) * (A->v[fp * dA + fq] + (fp == fq ? da : 0));
        }
}

/* Shampoo.  The registry's step (the one analyze takes) reads the step's
 * gradient, as the paper does: with V the layer's gradient
 * matrix laid out by hand, L = V V^T, R = V^T V, and the step equals
 * -s (L + lambda I)^-1/4 V (R + lambda I)^-1/4 with the roots taken by
 * Jacobi rotations and s grafting it onto |V|. */
static void check_shampoo(const cs_graph *g, const cs_dataset *ds, const cs_curv_report *rep, const double *grad)
{
    double lambda = 1e-2;
    long P = (long)g->n_param_scalars;
    double *step = malloc(sizeof(double) * (size_t)P), *want = malloc(sizeof(double) * (size_t)P);
    cs_err err = {0};
    cs_status st = cs_precond_step(g, ds, NULL, CS_LOSS_CE, 5, rep, CS_PRE_SHAMPOO, lambda, grad, step, NULL, &err);
    for (int l = 0; l < 2; l++) {
        long dG = l == 0 ? 5 : 3, dA = l == 0 ? 5 : 6, off = l == 0 ? 0 : 25, W = l == 0 ? 25 : 18;
        double *V = calloc((size_t)(dG * dA), sizeof(double)), *D = malloc(sizeof(double) * (size_t)(dG * dA));
        double vn = 0;
        for (long p = 0; p < W; p++) {
            long u, f;
            mlp_cell(l, p, &u, &f);
            V[u * dA + f] = grad[off + p];
            vn += grad[off + p] * grad[off + p];
        }
        double dn = shampoo_ref(V, dG, dA, lambda, D);
        for (long p = 0; p < W; p++) {
            long u, f;
            mlp_cell(l, p, &u, &f);
            want[off + p] = -sqrt(vn / dn) * D[u * dA + f];
        }
        free(V), free(D);
    }
    double e = rel_err(step, want, P);
    ok(!st && e <= 1e-9,
       "shampoo step equals -s (L + lambda I)^-1/4 V (R + lambda I)^-1/4, L = V V^T, R = V^T V, computed densely "
       "(rel err %.2g)",
       e);
    free(step);
    free(want);
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
    cs_precond_needs(all, &o.curvatures, &o.reprs);
    o.curvatures |= 1u << CS_CURV_FISHER_EMP;
    o.reprs |= 1u << CS_REPR_DIAG;
    o.keep_matrices = true;
    o.batch = 5;
    cs_curv_report rep;
    cs_err err = {0};
    const fx_record *grad = fx_get(&fx, "grad/net"), *H = fx_get(&fx, "block/hessian/net");
    const fx_record *Femp = fx_get(&fx, "block/fisher_emp/net");
    if (!ok(grad && H && Femp && cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK, "compute (%s)", err.msg))
        return;
    long P = (long)g->n_param_scalars;
    double *step = malloc(sizeof(double) * (size_t)P), *want = malloc(sizeof(double) * (size_t)P);
    double lambda = 1e-2;
    static const struct { cs_precond_kind k; const char *block; } cases[] = {
        {CS_PRE_KFAC, "kfac_A/ggn/%d"}, {CS_PRE_FULL, "block/ggn/%d"}, {CS_PRE_NEWTON, "block/hessian/%d"},
        {CS_PRE_UNIT, "block/ggn/%d"}, {CS_PRE_DIAG, "block/ggn/%d"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bool fb[4] = {0};
        cs_status st = cs_precond_step(g, &ds, NULL, CS_LOSS_CE, 5, &rep, cases[c].k, lambda, grad->v, step, fb, &err);
        for (int l = 0; l < g->n_layers; l++) {
            const cs_layer *L = &g->layers[l];
            long off = (long)g->params[L->first_param].offset, W = (long)L->numel;
            char name[64];
            snprintf(name, sizeof name, cases[c].block, l);
            const fx_record *B = fx_get(&fx, name);
            double *M = malloc(sizeof(double) * (size_t)(W * W)), damp = lambda;
            if (cases[c].k == CS_PRE_KFAC) { /* the damping is in the factors */
                snprintf(name, sizeof name, "kfac_G/ggn/%d", l);
                kfac_damped_block(B, fx_get(&fx, name), l, W, lambda, M);
                damp = 0;
            } else {
                memcpy(M, B->v, sizeof(double) * (size_t)(W * W));
            }
            if (cases[c].k == CS_PRE_NEWTON)
                jacobi_matrix_function(M, W, fn_abs, NULL); /* saddle-free Newton: |H| */
            for (long i = 0; i < W; i++)
                for (long j = 0; j < W; j++) {
                    long ui, fi, uj, fj;
                    mlp_cell(l, i, &ui, &fi);
                    mlp_cell(l, j, &uj, &fj);
                    if ((cases[c].k == CS_PRE_DIAG && i != j) || (cases[c].k == CS_PRE_UNIT && ui != uj))
                        M[i * W + j] = 0;
                }
            dense_step(M, W, damp, grad->v + off, want + off);
            free(M);
        }
        double e = rel_err(step, want, P);
        ok(!st && e <= 1e-8 && !fb[0] && !fb[1], "%s step equals -(C + lambda I)^-1 g computed densely (rel err %.2g)",
           cs_precond_name(cases[c].k), e);
    }
    /* smw: the whole network's empirical Fisher at once (not per layer). */
    cs_status st = cs_precond_step(g, &ds, NULL, CS_LOSS_CE, 5, &rep, CS_PRE_SMW, lambda, grad->v, step, NULL, &err);
    dense_step(Femp->v, P, lambda, grad->v, want);
    double e = rel_err(step, want, P);
    ok(!st && e <= 1e-8, "smw step equals -(F_emp + lambda I)^-1 g over the network computed densely (rel err %.2g, %s)",
       e, err.msg);
    /* ekfac with the exact ggn of a single sample would be K-FAC's basis
     * with exact scalings; here: it runs and is a descent direction. */
    st = cs_precond_step(g, &ds, NULL, CS_LOSS_CE, 5, &rep, CS_PRE_EKFAC, lambda, grad->v, step, NULL, &err);
    double gd = 0;
    for (long a = 0; a < P; a++)
        gd += grad->v[a] * step[a];
    ok(!st && gd < 0, "ekfac step is a descent direction (g^T D = %.4g, %s)", gd, err.msg);
    /* adamw is an update rule, not a one-step preconditioner. */
    unsigned mask;
    ok(cs_precond_parse_list("kfac,adamw", &mask, &err) == CS_ERR_USAGE && strstr(err.msg, "adamw") &&
           strstr(err.msg, "ekfac, shampoo"),
       "--precond adamw is refused, naming the supported ones (%s)", err.msg);
    ok(cs_precond_parse_list("sgd,ekfac,smw", &mask, &err) == CS_OK &&
           mask == (1u << CS_PRE_SGD | 1u << CS_PRE_EKFAC | 1u << CS_PRE_SMW),
       "sgd,ekfac,smw parse to their table bits");
    /* Diagnostics: predicted decrease = g^T D + 1/2 D^T H D (explicit). */
    err.msg[0] = 0;
    cs_step_report sr;
    double damp[1] = {lambda};
    unsigned diag_mask = 1u << CS_PRE_KFAC | 1u << CS_PRE_SGD | 1u << CS_PRE_SHAMPOO | 1u << CS_PRE_SMW;
    if (ok(cs_step_diagnostics(g, &ds, NULL, CS_LOSS_CE, 5, &rep, diag_mask, damp, 1, &sr, &err) == CS_OK,
           "diagnostics run (%s)", err.msg)) {
        for (int i = 0; i < sr.n; i++) {
            const cs_step_result *r = &sr.res[i];
            if (r->layer != -1)
                continue;
            if (cs_precond_step(g, &ds, NULL, CS_LOSS_CE, 5, &rep, r->precond, r->precond == CS_PRE_SGD ? 0 : lambda,
                                grad->v, step, NULL, &err))
                continue;
            double dhd = 0;
            gd = 0;
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
    check_shampoo(g, &ds, &rep, grad->v);
    free(step);
    free(want);
    cs_curv_report_free(&rep);
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
               cs_step_diagnostics(g, &ds, NULL, CS_LOSS_MSE, 5, &rep, 1u << CS_PRE_NEWTON, damp, 1, &sr, &err) ==
                   CS_OK,
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
            !cs_precond_step(g, &ds, NULL, CS_LOSS_MSE, 5, &rep, CS_PRE_NEWTON, 0.0, grad, step, NULL, &err)) {
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
    check_newton_quadratic();
    return tap_done();
}
