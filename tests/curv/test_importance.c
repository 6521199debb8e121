/* Importance scores against direct computation from PyTorch's matrices
 * (tests/fixtures/curv_*): the diagonals, OBD = 1/2 C_ii w^2, Taylor |g w|,
 * and OBS = w^2 / (2 [(C + lambda I)^-1]_ii) with the inverse taken here by
 * Gauss-Jordan elimination, for the exact block and for the K-FAC block. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tap.h"
#include "../test_util.h"
#include "curv/importance.h"
#include "curv/prune.h"
#include "dense_ref.h"
#include "fixture.h"
#include "interp/model.h"
#include "onnx/loader.h"

/* OBS of one layer block M (W x W) with damping rel * tr(M) / W. */
static void obs_reference(const double *M, long W, const double *w, double rel, double *out)
{
    double *a = malloc(sizeof(double) * (size_t)(W * W)), *inv = malloc(sizeof(double) * (size_t)(W * W));
    double tr = 0;
    for (long i = 0; i < W; i++)
        tr += M[i * W + i];
    memcpy(a, M, sizeof(double) * (size_t)(W * W));
    for (long i = 0; i < W; i++)
        a[i * W + i] += rel * tr / W;
    if (!gauss_jordan(a, inv, W))
        for (long i = 0; i < W; i++)
            out[i] = NAN;
    else
        for (long i = 0; i < W; i++)
            out[i] = w[i] * w[i] / (2 * inv[i * W + i]);
    free(a);
    free(inv);
}

static void check(const char *model, int64_t max_full)
{
    char rel[160], path[512], x[600], y[600];
    cs_err err = {0};
    cs_graph *g = NULL;
    cs_dataset ds;
    snprintf(rel, sizeof rel, "tests/models/%s.onnx", model);
    if (!ok(cs_model_load_file(test_src_path(path, sizeof path, rel), &g, &err) == CS_OK, "%s: load", model))
        return;
    snprintf(rel, sizeof rel, "tests/fixtures/curv_%s_x.npy", model);
    snprintf(x, sizeof x, "npy:%s", test_src_path(path, sizeof path, rel));
    snprintf(rel, sizeof rel, "tests/fixtures/curv_%s_y.npy", model);
    snprintf(y, sizeof y, "npy:%s", test_src_path(path, sizeof path, rel));
    snprintf(rel, sizeof rel, "tests/fixtures/curv_%s_ce.txt", model);
    fx_file fx;
    if (cs_dataset_load(&ds, x, y, 0, &err) || fx_load(&fx, test_src_path(path, sizeof path, rel))) {
        ok(0, "%s: data and fixture (%s)", model, err.msg);
        cs_graph_free(g);
        return;
    }
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_HESSIAN | 1u << CS_CURV_GGN | 1u << CS_CURV_FISHER_EMP;
    o.reprs = 1u << CS_REPR_FULL | 1u << CS_REPR_KFAC | 1u << CS_REPR_DIAG;
    o.max_full = max_full;
    o.keep_matrices = true;
    o.batch = 5;
    cs_curv_report rep;
    const fx_record *gr = fx_get(&fx, "grad/net");
    if (!ok(gr && cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK, "%s: curvature (%s)", model, err.msg))
        goto out;
    cs_importance imp;
    double relc = 1e-3;
    if (!ok(cs_importance_compute(g, &rep, gr->v, CS_CURV_GGN, relc, &imp, &err) == CS_OK,
            "%s: importance (%s)", model, err.msg)) {
        cs_curv_report_free(&rep);
        goto out;
    }
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        long W = (long)L->numel, off = (long)g->params[L->first_param].offset;
        char name[96];
        double *d = malloc(sizeof(double) * (size_t)W), *want = malloc(sizeof(double) * (size_t)W);
        static const char *const kinds[] = {"ggn", "fisher_emp", "hessian"};
        double *cols[] = {imp.diag_ggn, imp.diag_fisher_emp, imp.diag_hessian};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "block/%s/%d", kinds[k], l);
            const fx_record *b = fx_get(&fx, name);
            for (long i = 0; b && i < W; i++)
                d[i] = b->v[i * W + i];
            double e = b ? rel_err(cols[k] + off, d, W) : NAN;
            /* The Hessian diagonal above max_full is Hutchinson's estimate:
             * checked by its own tests, not to 1e-10 here. */
            if (k < 2 || W <= max_full)
                ok(e <= 1e-10, "%s: diag_%s of layer %d equals the block's diagonal (rel err %.2g)", model,
                   kinds[k], l, e);
        }
        snprintf(name, sizeof name, "block/ggn/%d", l);
        const fx_record *bg = fx_get(&fx, name);
        for (long i = 0; i < W; i++)
            want[i] = 0.5 * bg->v[i * W + i] * imp.value[off + i] * imp.value[off + i];
        ok(rel_err(imp.obd + off, want, W) <= 1e-10, "%s: obd of layer %d is 1/2 G_ii w^2", model, l);
        for (long i = 0; i < W; i++)
            want[i] = fabs(gr->v[off + i] * imp.value[off + i]);
        ok(rel_err(imp.taylor + off, want, W) <= 1e-10, "%s: taylor of layer %d is |g w|", model, l);
        /* OBS: exact block when it fits, else the K-FAC block. */
        snprintf(name, sizeof name, W <= max_full ? "block/ggn/%d" : "kfac/ggn/%d", l);
        const fx_record *ref = fx_get(&fx, name);
        if (ref) {
            obs_reference(ref->v, W, imp.value + off, relc, want);
            double e = rel_err(imp.obs + off, want, W);
            ok(imp.obs_repr[l] && strcmp(imp.obs_repr[l], W <= max_full ? "full" : "kfac") == 0 && e <= 1e-7,
               "%s: obs of layer %d (%s, %s block) matches explicit inversion (rel err %.2g)", model, l,
               L->op_type, imp.obs_repr[l] ? imp.obs_repr[l] : "none", e);
        } else {
            ok(imp.obs_repr[l] == NULL, "%s: layer %d (%s) has no obs without a full or K-FAC block", model, l,
               L->op_type);
        }
        /* Units: weight row o of [W | b] and its bias share unit o; a
         * BatchNorm channel's scale and bias share theirs. */
        int units_ok = 1;
        if (strcmp(L->op_type, "Gemm") == 0 && W == 3 * 17) { /* tiny_cnn64 fc: [3, 16] + [3] */
            for (long i = 0; i < 48; i++)
                units_ok = units_ok && imp.layer_unit[off + i] == i / 16;
            for (long i = 0; i < 3; i++)
                units_ok = units_ok && imp.layer_unit[off + 48 + i] == i;
            ok(units_ok, "%s: units of the Gemm layer %d follow the rows of [W | b]", model, l);
        }
        if (strcmp(L->op_type, "BatchNormalization") == 0) {
            for (long i = 0; i < W; i++)
                units_ok = units_ok && imp.layer_unit[off + i] == i % (W / 2);
            ok(units_ok, "%s: units of the BatchNormalization layer %d are its channels", model, l);
        }
        free(d);
        free(want);
    }
    cs_importance_free(&imp);
    cs_curv_report_free(&rep);
out:
    fx_free(&fx);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* The pruning check zeroes exactly the lowest-scoring weights, measures
 * what cs_evaluate measures with them zeroed, and restores the model. */
static void check_prune(void)
{
    char path[512];
    cs_err err = {0};
    cs_graph *g = NULL;
    cs_dataset ds;
    if (cs_model_load_file(test_src_path(path, sizeof path, "tests/models/tiny_mlp64.onnx"), &g, &err)) {
        ok(0, "prune: load (%s)", err.msg);
        return;
    }
    char x[600], y[600];
    snprintf(x, sizeof x, "npy:%s", test_src_path(path, sizeof path, "tests/fixtures/curv_tiny_mlp64_x.npy"));
    snprintf(y, sizeof y, "npy:%s", test_src_path(path, sizeof path, "tests/fixtures/curv_tiny_mlp64_y.npy"));
    if (cs_dataset_load(&ds, x, y, 0, &err)) {
        ok(0, "prune: data (%s)", err.msg);
        cs_graph_free(g);
        return;
    }
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.reprs |= 1u << CS_REPR_DIAG;
    o.keep_matrices = true;
    cs_curv_report rep;
    cs_importance imp;
    double *grad = calloc((size_t)g->n_param_scalars, sizeof(double));
    if (!ok(cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK &&
                cs_importance_compute(g, &rep, grad, CS_CURV_GGN, 1e-3, &imp, &err) == CS_OK,
            "prune: importance (%s)", err.msg)) {
        free(grad);
        cs_dataset_free(&ds);
        cs_graph_free(g);
        return;
    }
    double *before = malloc(sizeof(double) * (size_t)g->n_param_scalars);
    memcpy(before, imp.value, sizeof(double) * (size_t)g->n_param_scalars);
    cs_eval_opts eo = {.loss = CS_LOSS_CE, .batch = 5};
    double fr[1] = {0.25};
    cs_prune_point *pts = NULL;
    int n = 0;
    ok(cs_prune_check(g, &ds, &eo, &imp, fr, 1, &pts, &n, &err) == CS_OK && n >= 3, "prune: check runs (%s)", err.msg);
    /* Weights of the two Gemm layers: 20 + 15 = 35; a quarter is 9. */
    int restored = 1;
    for (int q = 0; q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        for (int64_t i = 0; i < cs_tensor_numel(t); i++)
            restored = restored && ((const double *)t->data)[i] == before[g->params[q].offset + i];
    }
    ok(restored, "prune: the model's parameters are restored afterwards");
    const cs_prune_point *mag = NULL;
    for (int i = 0; i < n; i++)
        if (strcmp(pts[i].score, "magnitude") == 0)
            mag = &pts[i];
    ok(mag && mag->n_pruned == 9, "prune: 25%% of 35 weights is 9 (%lld)", mag ? (long long)mag->n_pruned : -1LL);
    /* Zero the 9 smallest |w| of the weight tensors by hand and evaluate. */
    double *w1 = g->values[g->params[0].value].init.data, *w2 = g->values[g->params[2].value].init.data;
    double *ptr[35];
    for (int i = 0; i < 20; i++)
        ptr[i] = &w1[i];
    for (int i = 0; i < 15; i++)
        ptr[20 + i] = &w2[i];
    double keep[9];
    double *chosen[9];
    for (int k = 0; k < 9; k++) {
        int best = -1;
        for (int i = 0; i < 35; i++) {
            int used = 0;
            for (int j = 0; j < k; j++)
                used |= chosen[j] == ptr[i];
            if (!used && (best < 0 || fabs(*ptr[i]) < fabs(*ptr[best])))
                best = i;
        }
        chosen[k] = ptr[best];
        keep[k] = *ptr[best];
        *ptr[best] = 0;
    }
    cs_eval_result r;
    cs_status st = cs_evaluate(g, &ds, &eo, &r, &err);
    for (int k = 0; k < 9; k++)
        *chosen[k] = keep[k];
    ok(!st && mag && r.loss == mag->loss, "prune: magnitude 25%% loss %.10g equals zeroing the 9 smallest by hand (%.10g)",
       mag ? mag->loss : NAN, r.loss);
    free(pts);
    free(before);
    free(grad);
    cs_importance_free(&imp);
    cs_curv_report_free(&rep);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    check_prune();
    check("tiny_mlp64", 4096);
    check("tiny_cnn64", 4096);
    check("tiny_attn64", 4096);
    /* Blocks above max_full: OBS through the K-FAC inverse diagonal. */
    check("tiny_mlp64", 10);
    check("tiny_cnn64", 10);
    return tap_done();
}
