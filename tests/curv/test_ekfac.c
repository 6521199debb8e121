/* The EK-FAC representation (curv/repr_ekfac.c) against its definition,
 * evaluated on PyTorch's exact blocks (tests/fixtures/curv_*.txt): with
 * Q = Q_G (x) Q_A the eigenbasis of the layer's K-FAC factors (the factors
 * themselves checked against PyTorch in test_curvature), the scalings are
 * s = diag(Q^T B Q) of the exact block B, and the block is approximated by
 * Q diag(s) Q^T.  Checked per model, loss, curvature and layer: the
 * eigenvalues (the s, sorted), the dense block, the trace (equal to B's:
 * Q is orthonormal), and that the approximation is at least as close to B
 * in Frobenius norm as K-FAC's (K-FAC is also diagonal in Q, and the
 * re-fitted diagonal is the closest such matrix: George et al. 2018). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "../test_util.h"
#include "case.h"
#include "curv/engine.h"
#include "fixture.h"
#include "spectral/dense.h"

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* Q's column (i, j) of group grp at parameter p: Q_G[u_p, i] Q_A[f_p, j],
 * zero off the group. */
static double basis_at(const cs_curv_result *rk, const double *QA, const double *QG, long p, long grp, long i,
                       long j)
{
    const int64_t *k = rk->kfac_index + 3 * p;
    long dA = (long)rk->kfac_dA, dG = (long)rk->kfac_dG;
    if (k[0] != grp)
        return 0;
    return QG[grp * dG * dG + k[1] * dG + i] * QA[grp * dA * dA + k[2] * dA + j];
}

/* B: PyTorch's exact block; F: curvscope's (checked against B in
 * test_curvature), the reference its stored comparisons use. */
static void check_layer(const char *what, const cs_curv_result *re, const cs_curv_result *rk, const fx_record *B,
                        const double *F)
{
    long W = (long)rk->dim, dA = (long)rk->kfac_dA, dG = (long)rk->kfac_dG, groups = (long)rk->kfac_groups;
    long nv = groups * dG * dA;
    double *QA = malloc(sizeof(double) * (size_t)(groups * dA * dA)), *QG = malloc(sizeof(double) * (size_t)(groups * dG * dG));
    double *w = malloc(sizeof(double) * (size_t)(dA > dG ? dA : dG));
    double *s = malloc(sizeof(double) * (size_t)nv), *col = malloc(sizeof(double) * (size_t)W);
    double *M = calloc((size_t)(W * W), sizeof(double));
    int info = 0;
    for (long grp = 0; grp < groups; grp++) {
        info |= cs_sym_eigvecs(rk->kfac_A + grp * dA * dA, dA, QA + grp * dA * dA, w, NULL);
        info |= cs_sym_eigvecs(rk->kfac_G + grp * dG * dG, dG, QG + grp * dG * dG, w, NULL);
    }
    long k = 0;
    for (long grp = 0; grp < groups; grp++)
        for (long i = 0; i < dG; i++)
            for (long j = 0; j < dA; j++, k++) {
                for (long p = 0; p < W; p++)
                    col[p] = basis_at(rk, QA, QG, p, grp, i, j);
                double v = 0;
                for (long p = 0; p < W; p++)
                    for (long q = 0; q < W; q++)
                        v += col[p] * B->v[p * W + q] * col[q];
                s[k] = v;
                for (long p = 0; p < W; p++)
                    for (long q = 0; q < W; q++)
                        M[p * W + q] += col[p] * v * col[q];
            }
    double tr = 0, smax = 0;
    for (long p = 0; p < W; p++)
        tr += B->v[p * W + p];
    qsort(s, (size_t)nv, sizeof(double), cmp_desc);
    smax = fabs(s[0]);
    ok(info == 0 && re->n_eig == nv, "%s: %ld scalings (%lld)", what, nv, (long long)re->n_eig);
    double e = 0;
    for (long i = 0; re->n_eig == nv && i < nv; i++)
        e = fmax(e, fabs(re->eig[i] - s[i]));
    ok(e <= 1e-9 * smax, "%s: the scalings are diag(Q^T B Q) of PyTorch's block (max err %.2g of %.3g)", what, e, smax);
    double em = 0, mm = 0, num_e = 0, num_k = 0, den = 0;
    for (long i = 0; re->matrix && i < W * W; i++) {
        em = fmax(em, fabs(re->matrix[i] - M[i]));
        mm = fmax(mm, fabs(M[i]));
        num_e += (re->matrix[i] - F[i]) * (re->matrix[i] - F[i]);
        num_k += (rk->matrix[i] - F[i]) * (rk->matrix[i] - F[i]);
        den += F[i] * F[i];
    }
    ok(re->matrix && em <= 1e-9 * mm, "%s: the dense block is Q diag(s) Q^T (max err %.2g of %.3g)", what, em, mm);
    ok(tap_close(re->sum.trace, tr, 1e-9, 1e-300), "%s: trace %.12g equals the exact block's %.12g", what,
       re->sum.trace, tr);
    /* where K-FAC is exact (mse's last layer: G = 2 I / C) both errors
     * are rounding, below 1e-13 of the block */
    ok(re->matrix && rk->matrix && num_e <= num_k * (1 + 1e-9) + 1e-26 * den,
       "%s: no farther from the exact block than K-FAC (rel frob %.4g <= %.4g)", what, sqrt(num_e / den),
       sqrt(num_k / den));
    ok(re->has_cmp && tap_close(re->cmp_frob, sqrt(num_e / den), 1e-8, 1e-14),
       "%s: the stored comparison's rel frob %.6g is the one measured here (%.6g)", what, re->cmp_frob,
       sqrt(num_e / den));
    free(QA), free(QG), free(w), free(s), free(col), free(M);
}

static void check_model(const char *model, cs_loss_kind loss)
{
    const char *lname = cs_loss_name(loss);
    cs_graph *g;
    cs_dataset ds;
    char fixture[96];
    snprintf(fixture, sizeof fixture, "%s_%s", model, lname);
    fx_file fx;
    if (curv_case_load_fixture(model, model, 0, fixture, "fixture", &g, &ds, &fx))
        return;
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_GGN | 1u << CS_CURV_FISHER_EMP;
    o.reprs = 1u << CS_REPR_FULL | 1u << CS_REPR_KFAC | 1u << CS_REPR_EKFAC;
    o.loss = loss;
    o.batch = 5; /* 12 = 5 + 5 + 2: the second pass sees the same micro-batches */
    o.keep_matrices = true;
    cs_curv_report rep;
    cs_err err = {0};
    if (!ok(cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK, "%s/%s: compute with ekfac (%s)", model, lname,
            err.msg))
        goto out;
    static const cs_curv_kind kinds[] = {CS_CURV_GGN, CS_CURV_FISHER_EMP};
    for (int c = 0; c < 2; c++)
        for (int l = 0; l < g->n_layers; l++) {
            const cs_curv_result *re = cs_curv_report_find(&rep, kinds[c], CS_REPR_EKFAC, l);
            const cs_curv_result *rk = cs_curv_report_find(&rep, kinds[c], CS_REPR_KFAC, l);
            char name[96], what[160];
            snprintf(name, sizeof name, "block/%s/%d", cs_curv_name(kinds[c]), l);
            snprintf(what, sizeof what, "%s/%s: %s ekfac of layer %d (%s)", model, lname, cs_curv_name(kinds[c]), l,
                     g->layers[l].op_type);
            const fx_record *B = fx_get(&fx, name);
            if (!rk) {
                ok(!re, "%s: absent like K-FAC", what);
                continue;
            }
            const cs_curv_result *rf = cs_curv_report_find(&rep, kinds[c], CS_REPR_FULL, l);
            if (ok(re && B && rf && rf->matrix && rk->kfac_A && B->rows == rk->dim,
                   "%s: present, with K-FAC's factors, the full block and PyTorch's block", what))
                check_layer(what, re, rk, B, rf->matrix);
        }
    cs_curv_report_free(&rep);
out:
    fx_free(&fx);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* The Hessian has no EK-FAC form: a note, no result. */
static void check_hessian_refused(void)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load("tiny_mlp64", "tiny_mlp64", 0, &g, &ds))
        return;
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_HESSIAN;
    o.reprs = 1u << CS_REPR_EKFAC;
    cs_curv_report rep;
    cs_err err = {0};
    if (ok(cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK, "hessian x ekfac runs (%s)", err.msg)) {
        int noted = 0;
        for (int i = 0; i < rep.n_notes; i++)
            noted |= strstr(rep.notes[i], "hessian ekfac skipped") != NULL;
        ok(noted && !cs_curv_report_find(&rep, CS_CURV_HESSIAN, CS_REPR_EKFAC, 0),
           "hessian x ekfac is skipped with a note");
        cs_curv_report_free(&rep);
    }
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    static const char *const models[] = {"tiny_mlp64", "tiny_cnn64", "tiny_attn64"};
    for (int m = 0; m < 3; m++) {
        check_model(models[m], CS_LOSS_CE);
        check_model(models[m], CS_LOSS_MSE);
    }
    check_hessian_refused();
    return tap_done();
}
