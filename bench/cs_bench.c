/* The curvscope side of the benchmark against PyTorch (bench/torch_bench.py
 * is the other; tools/bench runs both, alternating, and reports medians and
 * ratios).  One case per process, so that the driver can read the process's
 * peak memory:
 *
 *   cs_bench CASE MODEL [--n N] [--batch B] [--threads T] [--seed S] [--root DIR]
 *
 * prints one JSON line {"case", "model", "n", "batch", "threads", "seconds",
 * "check"}: seconds covers the case's computation only (not loading the
 * model or the data), check a number the PyTorch side computes too.  The
 * cases and their semantics are documented in bench/README.md.  `gemm`
 * (MODEL ignored) measures OpenBLAS's sgemm and dgemm rates instead. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/parallel.h"
#include "base/rng.h"
#include "curv/engine.h"
#include "finetune/finetune.h"
#include "objective/objective.h"
#include "interp/model.h"
#include "tensor/blas.h"

typedef struct bench {
    const char *name, *model;
    int64_t n, batch;
    int threads;
    uint64_t seed;
    cs_graph *g;
    cs_dataset ds;
    cs_norm norm;
} bench;

static int fail(const cs_err *err)
{
    fprintf(stderr, "cs_bench: %s\n", err->msg);
    return 1;
}

/* One batch's gradient, untimed: page in the code and the buffers.  The
 * first double-precision BLAS calls of a thread cost milliseconds (OpenBLAS
 * sets up its buffers), and curvscope's factors are double where PyTorch's
 * warm-up batch already covers every routine its cases call, so every
 * thread also runs one small dsyrk and dgemm. */
static cs_status warm_up(bench *b, cs_err *err)
{
#pragma omp parallel
    {
        double x[64 * 64], c[64 * 64];
        for (int i = 0; i < 64 * 64; i++)
            x[i] = (double)(i % 7), c[i] = 0;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, 64, 64, 1.0, x, 64, 1.0, c, 64);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, 64, 64, 64, 1.0, x, 64, x, 64, 1.0, c, 64);
    }
    cs_objective o;
    double loss, *grad = malloc(sizeof(double) * (size_t)b->g->n_param_scalars + 1);
    int64_t hits;
    cs_status st = grad ? cs_objective_init(&o, b->g, &b->ds, &b->norm, CS_LOSS_CE, b->batch, CS_AD_GRAD, err)
                        : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    if (!st) {
        st = cs_objective_batch_gradient(&o, 0, &loss, &hits, grad, err);
        cs_objective_free(&o);
    }
    free(grad);
    return st;
}

static cs_status case_fwdbwd(bench *b, double *check, cs_err *err)
{
    cs_objective o;
    double *grad = malloc(sizeof(double) * (size_t)b->g->n_param_scalars + 1), sum = 0;
    cs_status st = grad ? cs_objective_init(&o, b->g, &b->ds, &b->norm, CS_LOSS_CE, b->batch, CS_AD_GRAD, err)
                        : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    for (int64_t start = 0; !st && start < b->ds.n; start += o.batch) {
        double loss;
        int64_t hits, B = start + o.batch <= b->ds.n ? o.batch : b->ds.n - start;
        st = cs_objective_batch_gradient(&o, start, &loss, &hits, grad, err);
        sum += loss * (double)B;
    }
    if (grad && !st)
        cs_objective_free(&o);
    free(grad);
    *check = sum / (double)b->ds.n;
    return st;
}

/* K-FAC factors (sum of their traces) or diagonals (their sum). */
static cs_status case_curvature(bench *b, cs_curv_kind curv, cs_repr_kind repr, double *check, cs_err *err)
{
    cs_curv_opts co;
    cs_curv_opts_init(&co);
    co.curvatures = 1u << curv;
    co.reprs = 1u << repr;
    co.batch = b->batch;
    co.norm = &b->norm;
    co.seed = b->seed;
    co.stats_only = true;
    co.keep_matrices = true;
    cs_curv_report rep;
    cs_status st = cs_curvature_compute(b->g, &b->ds, &co, &rep, err);
    if (st)
        return st;
    double sum = 0;
    for (int i = 0; i < rep.n; i++) {
        const cs_curv_result *r = &rep.res[i];
        if (repr == CS_REPR_DIAG)
            for (int64_t p = 0; r->matrix && p < r->dim; p++)
                sum += r->matrix[p];
        for (int64_t grp = 0; r->kfac_A && grp < r->kfac_groups; grp++) {
            for (int64_t k = 0; k < r->kfac_dA; k++)
                sum += r->kfac_A[grp * r->kfac_dA * r->kfac_dA + k * r->kfac_dA + k];
            for (int64_t k = 0; k < r->kfac_dG; k++)
                sum += r->kfac_G[grp * r->kfac_dG * r->kfac_dG + k * r->kfac_dG + k];
        }
    }
    cs_curv_report_free(&rep);
    *check = sum;
    return CS_OK;
}

/* 20 power iterations of exact Hessian-vector products over the data. */
static cs_status case_power(bench *b, double *check, cs_err *err)
{
    int64_t P = b->g->n_param_scalars;
    double *v = malloc(sizeof(double) * (size_t)P + 1), *hv = malloc(sizeof(double) * (size_t)P + 1), lambda = 0;
    cs_objective o;
    cs_status st = v && hv ? cs_objective_init(&o, b->g, &b->ds, &b->norm, CS_LOSS_CE, b->batch, CS_AD_HVP, err)
                           : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    if (!st) {
        cs_rng rng;
        cs_rng_seed(&rng, b->seed);
        double nv = 0;
        for (int64_t i = 0; i < P; i++)
            v[i] = cs_rng_normal(&rng), nv += v[i] * v[i];
        for (int64_t i = 0; i < P; i++)
            v[i] /= sqrt(nv);
        for (int it = 0; it < 20 && !st; it++) {
            if ((st = cs_objective_hvp(&o, v, -1, hv, err)))
                break;
            double dot = 0, nh = 0;
            for (int64_t i = 0; i < P; i++)
                dot += v[i] * hv[i], nh += hv[i] * hv[i];
            lambda = dot;
            for (int64_t i = 0; i < P; i++)
                v[i] = hv[i] / sqrt(nh);
        }
        cs_objective_free(&o);
    }
    free(v), free(hv);
    *check = lambda;
    return st;
}

/* One epoch of fine-tuning (lr 1e-3, momentum 0.9), then the training loss. */
static cs_status case_epoch(bench *b, const char *precond, double *check, cs_err *err)
{
    cs_finetune_opts fo;
    cs_finetune_opts_init(&fo);
    fo.precond = precond;
    fo.lr = 1e-3;
    fo.batch = b->batch;
    fo.seed = b->seed;
    fo.norm = &b->norm;
    fo.loss = CS_LOSS_CE;
    fo.update_interval = 10;
    cs_finetune_result res;
    cs_status st = cs_finetune(b->g, &b->ds, &fo, &res, err);
    *check = res.train_loss;
    return st;
}

/* OpenBLAS's rate on square products of order 1024 (best of 5), in GFLOP/s. */
static void case_gemm(void)
{
    const int n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    double *x = malloc(sizeof(double) * n * n), *y = malloc(sizeof(double) * n * n), *z = malloc(sizeof(double) * n * n);
    for (int i = 0; i < n * n; i++)
        a[i] = b[i] = (float)(i % 7) * 0.1f, x[i] = y[i] = (double)(i % 5) * 0.1;
    double best_s = 1e30, best_d = 1e30;
    cs_blas_wide(true); /* the machine's rate: every thread */
    for (int r = 0; r < 5; r++) {
        double t0 = cs_now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t1 = cs_now_seconds();
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, x, n, y, n, 0.0, z, n);
        double t2 = cs_now_seconds();
        best_s = fmin(best_s, t1 - t0);
        best_d = fmin(best_d, t2 - t1);
    }
    cs_blas_wide(false);
    double flops = 2.0 * n * n * (double)n;
    printf("{\"case\": \"gemm\", \"sgemm_gflops\": %.3f, \"dgemm_gflops\": %.3f, \"order\": %d}\n", flops / best_s / 1e9,
           flops / best_d / 1e9, n);
    free(a), free(b), free(c), free(x), free(y), free(z);
}

int main(int argc, char **argv)
{
    cs_threads_startup(argv); /* curvscope's wait policy, as its main sets it */
    if (argc < 3) {
        fprintf(stderr, "usage: cs_bench CASE MODEL [--n N] [--batch B] [--threads T] [--seed S] [--root DIR]\n");
        return 2;
    }
    bench b = {.name = argv[1], .model = argv[2], .n = 2048, .batch = 128, .threads = 2, .seed = 0};
    const char *root = ".";
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0)
            b.n = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            b.batch = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            b.threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seed") == 0)
            b.seed = (uint64_t)atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--root") == 0)
            root = argv[i + 1];
        else {
            fprintf(stderr, "cs_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    cs_blas_set_threads(b.threads);
    if (strcmp(b.name, "gemm") == 0) {
        case_gemm();
        return 0;
    }
    cs_err err = {0};
    char path[1024], img[1024], lab[1024];
    const char *fm = getenv("FASHION_MNIST_DIR") ? getenv("FASHION_MNIST_DIR") : "/usr/share/datasets/fashion-mnist";
    snprintf(path, sizeof path, "%s/tests/models/%s.onnx", root, b.model);
    snprintf(img, sizeof img, "idx:%s/train-images-idx3-ubyte.gz", fm);
    snprintf(lab, sizeof lab, "idx:%s/train-labels-idx1-ubyte.gz", fm);
    cs_norm_init(&b.norm);
    if (cs_model_load_file(path, &b.g, &err) || cs_dataset_load(&b.ds, img, lab, b.n, &err) ||
        cs_norm_parse_scale(&b.norm, "1/255", &err) || cs_norm_parse_mean(&b.norm, "0.2860", &err) ||
        cs_norm_parse_std(&b.norm, "0.3530", &err) || warm_up(&b, &err))
        return fail(&err);
    double check = NAN, t0 = cs_now_seconds();
    cs_status st;
    if (strcmp(b.name, "fwdbwd") == 0)
        st = case_fwdbwd(&b, &check, &err);
    else if (strcmp(b.name, "kfac_emp") == 0)
        st = case_curvature(&b, CS_CURV_FISHER_EMP, CS_REPR_KFAC, &check, &err);
    else if (strcmp(b.name, "kfac_mc") == 0)
        st = case_curvature(&b, CS_CURV_FISHER_MC, CS_REPR_KFAC, &check, &err);
    else if (strcmp(b.name, "diag_ggn") == 0)
        st = case_curvature(&b, CS_CURV_GGN, CS_REPR_DIAG, &check, &err);
    else if (strcmp(b.name, "diag_emp") == 0)
        st = case_curvature(&b, CS_CURV_FISHER_EMP, CS_REPR_DIAG, &check, &err);
    else if (strcmp(b.name, "power") == 0)
        st = case_power(&b, &check, &err);
    else if (strcmp(b.name, "sgd_epoch") == 0)
        st = case_epoch(&b, "sgd", &check, &err);
    else if (strcmp(b.name, "kfac_epoch") == 0)
        st = case_epoch(&b, "kfac", &check, &err);
    else
        st = cs_fail(&err, CS_ERR_USAGE, "unknown case '%s'", b.name);
    double seconds = cs_now_seconds() - t0;
    if (st)
        return fail(&err);
    printf("{\"case\": \"%s\", \"model\": \"%s\", \"n\": %lld, \"batch\": %lld, \"threads\": %d, \"seconds\": %.6f, "
           "\"check\": %.10g}\n",
           b.name, b.model, (long long)b.ds.n, (long long)b.batch, b.threads, seconds, check);
    cs_dataset_free(&b.ds);
    cs_graph_free(b.g);
    return 0;
}
