/* Elastic weight consolidation (finetune/ewc.h):
 *  - the penalty's gradient equals central finite differences of its value,
 *    in double;
 *  - the K-FAC form (lambda/2) tr(dW^T G dW A) equals the quadratic form of
 *    the explicit Kronecker product A (x) G, over two groups, with its
 *    gradient checked by central differences;
 *  - cs_finetune adds it: one full-batch SGD step without momentum moves
 *    theta by -lr (grad L + lambda F (theta - theta*)), and on_penalty gets
 *    the penalty at the step's parameters;
 *  - on Fashion-MNIST (when installed), tuning the bundled mlp on classes
 *    5-9 only forgets classes 0-4 less with EWC (empirical Fisher of the
 *    old classes, the anchor the bundled weights) than without, everything
 *    else equal. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../curv/case.h"
#include "../tap.h"
#include "base/rng.h"
#include "finetune/ewc.h"
#include "finetune/finetune.h"
#include "objective/evaluate.h"
#include "objective/objective.h"

/* The largest relative difference between grad - base (the penalty's
 * gradient on top of base) and central differences of the penalty, h 1e-5. */
static double fd_worst(const cs_ewc *e, double *theta, const double *grad, double base)
{
    double worst = 0, h = 1e-5;
    for (int64_t i = 0; i < e->n; i++) {
        double keep = theta[i];
        theta[i] = keep + h;
        double up = cs_ewc_penalty(e, theta, NULL, 0, e->n);
        theta[i] = keep - h;
        double down = cs_ewc_penalty(e, theta, NULL, 0, e->n);
        theta[i] = keep;
        double fd = (up - down) / (2 * h), d = fabs(grad[i] - base - fd) / (1 + fabs(fd));
        if (d > worst)
            worst = d;
    }
    return worst;
}

static void check_fd(void)
{
    enum { n = 24 };
    cs_ewc e;
    cs_err err = {0};
    if (!ok(cs_ewc_alloc(&e, n, &err) == CS_OK, "alloc (%s)", err.msg))
        return;
    e.lambda = 3.5;
    cs_rng rng;
    cs_rng_seed(&rng, 11);
    double theta[n], grad[n];
    for (int i = 0; i < n; i++) {
        e.fisher[i] = cs_rng_uniform(&rng) * 2;
        e.anchor[i] = cs_rng_uniform(&rng) - 0.5;
        theta[i] = cs_rng_uniform(&rng) - 0.5;
        grad[i] = 0.25; /* the penalty's gradient is added to what is there */
    }
    double value = cs_ewc_penalty(&e, theta, grad, 0, n), worst;
    double want = 0;
    for (int i = 0; i < n; i++)
        want += 0.5 * e.lambda * e.fisher[i] * (theta[i] - e.anchor[i]) * (theta[i] - e.anchor[i]);
    ok(fabs(value - want) <= 1e-14 * (1 + want), "penalty value %.15g == %.15g", value, want);
    worst = fd_worst(&e, theta, grad, 0.25);
    ok(worst < 1e-8, "penalty gradient == central differences (worst relative %.2e)", worst);
    /* A range [i0, i1) touches nothing else. */
    memset(grad, 0, sizeof grad);
    double part = cs_ewc_penalty(&e, theta, grad, 5, 9);
    int outside = 0;
    for (int i = 0; i < n; i++)
        outside += (i < 5 || i >= 9) && grad[i] != 0;
    ok(outside == 0 && part > 0 && part < value, "a range [5, 9) only: %.6g of %.6g", part, value);
    cs_ewc_free(&e);
}

/* A random symmetric positive definite n x n matrix B B^T + 0.1 I. */
static void spd(cs_rng *rng, int n, double *out)
{
    double b[16];
    for (int i = 0; i < n * n; i++)
        b[i] = cs_rng_uniform(rng) - 0.5;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = i == j ? 0.1 : 0;
            for (int c = 0; c < n; c++)
                s += b[i * n + c] * b[j * n + c];
            out[i * n + j] = s;
        }
}

static void check_kfac(void)
{
    /* A layer of 2 groups, dG = 2 units and dA = 3 features (the last the
     * bias), parameters stored out of (unit, feature) order, at offset 2 of
     * a vector of 16 with diagonal entries elsewhere. */
    enum { groups = 2, dG = 2, dA = 3, numel = groups * dG * dA, n = numel + 4, off = 2 };
    cs_rng rng;
    cs_rng_seed(&rng, 21);
    double A[groups * dA * dA], G[groups * dG * dG];
    int64_t index[numel * 3];
    for (int g = 0; g < groups; g++) {
        spd(&rng, dA, A + g * dA * dA);
        spd(&rng, dG, G + g * dG * dG);
    }
    for (int p = 0; p < numel; p++) {
        int q = (p * 7) % numel; /* 7 is prime to 12: a permutation */
        index[3 * p] = q / (dG * dA);
        index[3 * p + 1] = q / dA % dG;
        index[3 * p + 2] = q % dA;
    }
    cs_curv_result r = {.dim = numel, .kfac_groups = groups, .kfac_dA = dA, .kfac_dG = dG, .kfac_A = A,
                        .kfac_G = G, .kfac_index = index};
    cs_ewc e;
    cs_err err = {0};
    if (!ok(cs_ewc_alloc(&e, n, &err) == CS_OK, "alloc (%s)", err.msg))
        return;
    e.lambda = 0.7;
    double theta[n], grad[n];
    for (int i = 0; i < n; i++) {
        e.fisher[i] = cs_rng_uniform(&rng);
        e.anchor[i] = cs_rng_uniform(&rng) - 0.5;
        theta[i] = cs_rng_uniform(&rng) - 0.5;
        grad[i] = 0;
    }
    if (!ok(cs_ewc_add_kfac(&e, &r, off, &err) == CS_OK, "add a K-FAC layer (%s)", err.msg))
        return;
    int zeroed = 1;
    for (int p = 0; p < numel; p++)
        zeroed &= e.fisher[off + p] == 0;
    ok(zeroed, "the K-FAC layer's diagonal entries are 0");
    double got = cs_ewc_penalty(&e, theta, grad, 0, n);
    /* Explicit: vec column-major, vec(dW)[j dG + i] = dW[i][j], F = A (x) G
     * with F[(j,i),(j',i')] = A[j][j'] G[i][i'], one block per group. */
    double want = 0;
    for (int g = 0; g < groups; g++) {
        double v[dG * dA] = {0}, F[dG * dA][dG * dA];
        for (int p = 0; p < numel; p++)
            if (index[3 * p] == g)
                v[index[3 * p + 2] * dG + index[3 * p + 1]] = theta[off + p] - e.anchor[off + p];
        for (int j = 0; j < dA; j++)
            for (int i = 0; i < dG; i++)
                for (int j2 = 0; j2 < dA; j2++)
                    for (int i2 = 0; i2 < dG; i2++)
                        F[j * dG + i][j2 * dG + i2] = A[g * dA * dA + j * dA + j2] * G[g * dG * dG + i * dG + i2];
        for (int a = 0; a < dG * dA; a++)
            for (int b = 0; b < dG * dA; b++)
                want += 0.5 * e.lambda * v[a] * F[a][b] * v[b];
    }
    for (int i = 0; i < n; i++)
        if (i < off || i >= off + numel)
            want += 0.5 * e.lambda * e.fisher[i] * (theta[i] - e.anchor[i]) * (theta[i] - e.anchor[i]);
    ok(fabs(got - want) <= 1e-13 * (1 + fabs(want)), "K-FAC penalty %.15g == explicit Kronecker %.15g", got, want);
    double worst = fd_worst(&e, theta, grad, 0);
    ok(worst < 1e-8, "K-FAC penalty gradient == central differences (worst relative %.2e)", worst);
    cs_ewc_free(&e);
}

typedef struct step_log {
    int n_pen;
    double penalty;
} step_log;

static void on_penalty(void *ctx, int epoch, int64_t step, double penalty)
{
    (void)epoch, (void)step;
    step_log *l = ctx;
    l->n_pen++;
    l->penalty = penalty;
}

static void read_theta(const cs_graph *g, double *theta)
{
    for (int q = 0; q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        cs_convert(theta + g->params[q].offset, CS_DT_DOUBLE, t->data, t->dtype, cs_tensor_numel(t));
    }
}

static void check_step(void)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load("tiny_mlp64", "tiny_mlp64", 32, &g, &ds))
        return;
    int64_t P = g->n_param_scalars;
    cs_err err = {0};
    cs_ewc e;
    double *theta0 = malloc(sizeof(double) * (size_t)P), *theta1 = malloc(sizeof(double) * (size_t)P);
    double *grad = malloc(sizeof(double) * (size_t)P);
    if (!ok(theta0 && theta1 && grad && cs_ewc_alloc(&e, P, &err) == CS_OK, "alloc (%s)", err.msg))
        return;
    read_theta(g, theta0);
    cs_rng rng;
    cs_rng_seed(&rng, 5);
    e.lambda = 2;
    double want_pen = 0;
    for (int64_t i = 0; i < P; i++) {
        e.fisher[i] = cs_rng_uniform(&rng);
        e.anchor[i] = theta0[i] + 0.1 * (cs_rng_uniform(&rng) - 0.5);
        want_pen += 0.5 * e.lambda * e.fisher[i] * (theta0[i] - e.anchor[i]) * (theta0[i] - e.anchor[i]);
    }
    cs_norm norm;
    cs_norm_init(&norm);
    cs_objective obj;
    double loss;
    int64_t hits;
    int rc = cs_objective_init(&obj, g, &ds, &norm, CS_LOSS_CE, ds.n, CS_AD_GRAD, &err);
    if (!rc)
        rc = cs_objective_batch_gradient(&obj, 0, &loss, &hits, grad, &err);
    if (!rc)
        cs_objective_free(&obj);
    ok(rc == CS_OK, "full-batch gradient (%s)", err.msg);
    cs_finetune_opts o;
    cs_finetune_opts_init(&o);
    step_log log = {0};
    o.precond = "sgd";
    o.momentum = 0;
    o.lr = 0.05;
    o.batch = ds.n; /* one step over the whole set: the shuffle does not change the mean gradient */
    o.loss = CS_LOSS_CE;
    o.norm = &norm;
    o.ewc = &e;
    o.on_penalty = on_penalty;
    o.ctx = &log;
    cs_finetune_result res;
    rc = cs_finetune(g, &ds, &o, &res, &err);
    ok(rc == CS_OK && res.steps == 1, "one EWC step (%s)", err.msg);
    read_theta(g, theta1);
    double worst = 0;
    for (int64_t i = 0; i < P; i++) {
        double want = theta0[i] - o.lr * (grad[i] + e.lambda * e.fisher[i] * (theta0[i] - e.anchor[i]));
        double d = fabs(theta1[i] - want) / (1e-3 + fabs(want - theta0[i]));
        if (d > worst)
            worst = d;
    }
    /* the tiny models keep float weights: the step is rounded to float */
    ok(worst < 1e-3, "theta1 = theta0 - lr (grad + lambda F (theta0 - theta*)) (worst %.2e of the step)", worst);
    ok(log.n_pen == 1 && fabs(log.penalty - want_pen) <= 1e-12 * want_pen, "on_penalty %.12g == %.12g",
       log.penalty, want_pen);
    cs_ewc_free(&e);
    free(theta0), free(theta1), free(grad);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* The samples of src whose integer label is in [lo, hi], at most max. */
static int filter_classes(const cs_dataset *src, int lo, int hi, int64_t max, cs_dataset *dst)
{
    size_t xs = cs_tensor_bytes(&src->x) / (size_t)src->n, ys = cs_tensor_bytes(&src->y) / (size_t)src->n;
    int64_t *keep = malloc(sizeof(int64_t) * (size_t)src->n), m = 0;
    if (!keep)
        return -1;
    for (int64_t i = 0; i < src->n && m < max; i++) {
        int64_t y;
        cs_convert(&y, CS_DT_INT64, (const char *)src->y.data + (size_t)i * ys, src->y.dtype, 1);
        if (y >= lo && y <= hi)
            keep[m++] = i;
    }
    *dst = *src;
    memset(&dst->x, 0, sizeof dst->x);
    memset(&dst->y, 0, sizeof dst->y);
    int64_t xd[CS_MAX_DIMS], yd[CS_MAX_DIMS];
    memcpy(xd, src->x.dims, sizeof(int64_t) * (size_t)src->x.ndim);
    memcpy(yd, src->y.dims, sizeof(int64_t) * (size_t)src->y.ndim);
    xd[0] = yd[0] = dst->n = m;
    cs_tensor_set_shape(&dst->x, src->x.dtype, src->x.ndim, xd);
    cs_tensor_set_shape(&dst->y, src->y.dtype, src->y.ndim, yd);
    cs_err err = {0};
    if (cs_tensor_alloc(&dst->x, &err) || cs_tensor_alloc(&dst->y, &err)) {
        cs_dataset_free(dst);
        free(keep);
        return -1;
    }
    for (int64_t j = 0; j < m; j++) {
        memcpy((char *)dst->x.data + (size_t)j * xs, (const char *)src->x.data + (size_t)keep[j] * xs, xs);
        memcpy((char *)dst->y.data + (size_t)j * ys, (const char *)src->y.data + (size_t)keep[j] * ys, ys);
    }
    free(keep);
    return 0;
}

/* Tune the mlp on the new classes (ewc NULL: plain) and return the old
 * classes' loss and accuracy after tuning. */
static int tune(const cs_dataset *new_ds, const cs_dataset *old_eval, const cs_norm *norm, const cs_ewc *ewc,
                double *old_loss, double *old_acc, double *new_loss)
{
    cs_graph *g = test_load_model("mlp");
    if (!g)
        return -1;
    cs_finetune_opts o;
    cs_finetune_opts_init(&o);
    o.precond = "sgd";
    o.lr = 0.01;
    o.momentum = 0.9;
    o.epochs = 2;
    o.batch = 64;
    o.seed = 1;
    o.loss = CS_LOSS_CE;
    o.norm = norm;
    o.old = old_eval;
    o.ewc = ewc;
    cs_finetune_result res;
    cs_err err = {0};
    int rc = cs_finetune(g, new_ds, &o, &res, &err);
    ok(rc == CS_OK, "tune on classes 5-9 %s EWC (%s)", ewc ? "with" : "without", err.msg);
    *old_loss = res.old_loss;
    *old_acc = res.old_accuracy;
    *new_loss = res.train_loss;
    cs_graph_free(g);
    return rc ? -1 : 0;
}

static void check_forgetting(const char *fmnist)
{
    char images[600], labels[600];
    snprintf(images, sizeof images, "idx:%s/train-images-idx3-ubyte.gz", fmnist);
    snprintf(labels, sizeof labels, "idx:%s/train-labels-idx1-ubyte.gz", fmnist);
    cs_dataset all, new_ds, old_ds, old_eval, all_test;
    cs_err err = {0};
    if (!ok(cs_dataset_load(&all, images, labels, 6000, &err) == CS_OK, "Fashion-MNIST train (%s)", err.msg))
        return;
    snprintf(images, sizeof images, "idx:%s/t10k-images-idx3-ubyte.gz", fmnist);
    snprintf(labels, sizeof labels, "idx:%s/t10k-labels-idx1-ubyte.gz", fmnist);
    if (!ok(cs_dataset_load(&all_test, images, labels, 2000, &err) == CS_OK, "Fashion-MNIST t10k (%s)", err.msg))
        return;
    /* old task: classes 0-4, new task: classes 5-9 */
    if (!ok(filter_classes(&all, 5, 9, 2000, &new_ds) == 0 && filter_classes(&all, 0, 4, 1000, &old_ds) == 0 &&
                filter_classes(&all_test, 0, 4, 1000, &old_eval) == 0,
            "class split"))
        return;
    cs_norm norm;
    cs_norm_init(&norm);
    norm.scale = 1.0 / 255;
    norm.n_mean = norm.n_std = 1;
    norm.mean[0] = 0.2860;
    norm.std[0] = 0.3530;
    cs_graph *g = test_load_model("mlp");
    if (!g)
        return;
    /* The empirical Fisher diagonal of the old classes, per-sample gradients
     * squared and averaged (the mean convention of finetune --ewc), and
     * the bundled weights as theta*. */
    cs_ewc e;
    int64_t P = g->n_param_scalars;
    double *gs = malloc(sizeof(double) * (size_t)P);
    cs_objective obj;
    int rc = gs ? cs_ewc_alloc(&e, P, &err) : CS_ERR_NOMEM;
    if (!rc)
        rc = cs_objective_init(&obj, g, &old_ds, &norm, CS_LOSS_CE, 1, CS_AD_GRAD, &err);
    for (int64_t i = 0; i < old_ds.n && !rc; i++) {
        double loss;
        int64_t hits;
        if ((rc = cs_objective_batch_gradient(&obj, i, &loss, &hits, gs, &err)))
            break;
        for (int64_t k = 0; k < P; k++)
            e.fisher[k] += gs[k] * gs[k] / (double)old_ds.n;
    }
    if (!rc)
        cs_objective_free(&obj);
    ok(rc == CS_OK, "empirical Fisher of classes 0-4 over %lld samples (%s)", (long long)old_ds.n, err.msg);
    read_theta(g, e.anchor);
    cs_graph_free(g);
    e.lambda = test_env("EWC_LAMBDA", NULL) ? atof(test_env("EWC_LAMBDA", NULL)) : 10;
    double pl, pa, pn, el, ea, en;
    if (!rc && !tune(&new_ds, &old_eval, &norm, NULL, &pl, &pa, &pn) &&
        !tune(&new_ds, &old_eval, &norm, &e, &el, &ea, &en)) {
        diag("old classes 0-4 (t10k) after tuning on 5-9: plain loss %.4f accuracy %.4f, EWC (lambda %g) loss "
             "%.4f accuracy %.4f; new-task train loss plain %.4f EWC %.4f",
             pl, pa, e.lambda, el, ea, pn, en);
        /* measured (lambda 10): plain 7.2610 / 0.1820, EWC 2.2705 / 0.2840 */
        ok(isfinite(el) && el < pl, "old-task loss with EWC %.4f < plain %.4f", el, pl);
        ok(ea > pa, "old-task accuracy with EWC %.4f > plain %.4f", ea, pa);
    }
    cs_ewc_free(&e);
    free(gs);
    cs_dataset_free(&all);
    cs_dataset_free(&all_test);
    cs_dataset_free(&new_ds);
    cs_dataset_free(&old_ds);
    cs_dataset_free(&old_eval);
}

int main(void)
{
    check_fd();
    check_kfac();
    check_step();
    const char *fmnist = test_env("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist");
    char probe[600];
    struct stat sb;
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", fmnist);
    if (stat(probe, &sb) == 0)
        check_forgetting(fmnist);
    else
        skip("Fashion-MNIST not found at %s: EWC forgets less than plain tuning", fmnist);
    return tap_done();
}
