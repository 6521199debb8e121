/* Fine-tuning preconditioners against dense reference computations on the
 * tiny models: each direction d from the preconditioner equals the one
 * built here from explicit matrices (Gauss-Jordan inverses, Jacobi roots),
 * the curvature blocks taken from the engine's exact results (which the
 * curvature tests check against PyTorch).  Also: K-FAC with one sample and
 * no damping is the exact natural-gradient step, the running averages and
 * update intervals behave as documented, frozen layers stay put and
 * --bn-train updates the running statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../curv/case.h"
#include "../curv/dense_ref.h"
#include "../precond/precond_ref.h"
#include "../tap.h"
#include "base/rng.h"
#include "finetune/finetune.h"
#include "objective/objective.h"
#include "precond/precond.h"

/* A preconditioner with its context, for driving it by hand. */
typedef struct harness {
    const cs_precond_def *def;
    cs_precond_opts o;
    cs_norm norm;
    cs_precond_ctx c;
    bool frozen[8], fallback[8];
    const char *why[8];
    void *state;
} harness;

static int harness_open(harness *h, const cs_graph *g, const char *name, cs_curv_kind curv, double damping)
{
    memset(h, 0, sizeof *h);
    h->def = cs_precond_find(name);
    cs_precond_opts_init(&h->o);
    cs_norm_init(&h->norm);
    h->o.norm = &h->norm;
    h->o.loss = CS_LOSS_CE;
    h->o.damping = damping;
    h->o.batch = 64;
    h->o.max_full = 4096;
    h->c = (cs_precond_ctx){.g = g, .o = &h->o, .curv = curv, .seed = 7, .frozen = h->frozen,
                            .fallback = h->fallback, .why = h->why};
    cs_err err = {0};
    if (!ok(h->def != NULL, "%s registered", name))
        return -1;
    if (!ok(h->def->ops->create(&h->c, &h->state, &err) == CS_OK, "%s: create (%s)", name, err.msg))
        return -1;
    return 0;
}

static int harness_step(harness *h, const cs_dataset *batch, const double *grad, double *dir)
{
    cs_err err = {0};
    if (h->def->ops->observe)
        h->def->ops->observe(h->state, &h->c, grad);
    if (!ok(h->def->ops->refresh(h->state, &h->c, batch, &err) == CS_OK, "%s: refresh (%s)", h->def->name, err.msg))
        return -1;
    h->c.refreshes++;
    if (!ok(h->def->ops->apply(h->state, &h->c, grad, dir, &err) == CS_OK, "%s: apply (%s)", h->def->name, err.msg))
        return -1;
    return 0;
}

static void harness_close(harness *h)
{
    if (h->def && h->def->ops->destroy)
        h->def->ops->destroy(h->state);
}

/* The engine's exact results (full blocks, K-FAC factors, whole network). */
static int reference(const cs_graph *g, const cs_dataset *ds, cs_curv_kind curv, cs_curv_report *rep)
{
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    cs_norm norm;
    cs_norm_init(&norm);
    o.norm = &norm;
    o.curvatures = 1u << curv;
    o.reprs = 1u << CS_REPR_FULL | (curv == CS_CURV_HESSIAN ? 0 : 1u << CS_REPR_KFAC);
    o.keep_matrices = true;
    o.batch = ds->n;
    o.seed = 7;
    cs_err err = {0};
    return ok(cs_curvature_compute(g, ds, &o, rep, &err) == CS_OK, "reference curvature (%s)", err.msg) ? 0 : -1;
}

static void random_vector(double *v, int64_t n, uint64_t seed)
{
    cs_rng r;
    cs_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        v[i] = cs_rng_normal(&r);
}

/* x = (M + lambda I)^-1 g over the index set idx (n entries) of a W x W M. */
static void dense_solve_subset(const double *M, long W, const long *idx, long n, double lambda, const double *g,
                               double *x)
{
    double *a = malloc(sizeof(double) * (size_t)(n * n)), *inv = malloc(sizeof(double) * (size_t)(n * n));
    for (long i = 0; i < n; i++)
        for (long j = 0; j < n; j++)
            a[i * n + j] = M[idx[i] * W + idx[j]] + (i == j ? lambda : 0);
    gauss_jordan(a, inv, n);
    for (long i = 0; i < n; i++) {
        x[idx[i]] = 0;
        for (long j = 0; j < n; j++)
            x[idx[i]] += inv[i * n + j] * g[idx[j]];
    }
    free(a);
    free(inv);
}

static double fn_abs_damped(double x, double xmax, const void *arg)
{
    (void)xmax;
    return 1.0 / (fabs(x) + *(const double *)arg);
}

static double fn_pinv(double x, double xmax, const void *arg)
{
    (void)arg;
    return x > 1e-12 * xmax ? 1.0 / x : 0.0;
}

/* Expected K-FAC direction of one layer: the dense (G + dg I) (x) (A + da I)
 * in parameter order (from the factors and index of r), solved. */
static void kfac_dense_dir(const cs_curv_result *r, double lambda, bool pi_split, const double *g, double *x)
{
    long W = (long)r->dim, dA = (long)r->kfac_dA, dG = (long)r->kfac_dG;
    double *M = calloc((size_t)(W * W), sizeof(double));
    long *all = malloc(sizeof(long) * (size_t)W);
    for (long grp = 0; grp < r->kfac_groups; grp++) {
        const double *A = r->kfac_A + grp * dA * dA, *G = r->kfac_G + grp * dG * dG;
        double ta = 0, tg = 0;
        for (long i = 0; i < dA; i++)
            ta += A[i * dA + i];
        for (long i = 0; i < dG; i++)
            tg += G[i * dG + i];
        double pi = pi_split ? sqrt((ta / dA) / (tg / dG)) : 1, da = pi * sqrt(lambda), dg = sqrt(lambda) / pi;
        for (long p = 0; p < W; p++)
            for (long q = 0; q < W; q++) {
                const int64_t *kp = r->kfac_index + 3 * p, *kq = r->kfac_index + 3 * q;
                if (kp[0] != grp || kq[0] != grp)
                    continue;
                M[p * W + q] = (G[kp[1] * dG + kq[1]] + (kp[1] == kq[1] ? dg : 0)) *
                               (A[kp[2] * dA + kq[2]] + (kp[2] == kq[2] ? da : 0));
            }
    }
    for (long i = 0; i < W; i++)
        all[i] = i;
    dense_solve_subset(M, W, all, W, 0, g, x);
    free(M);
    free(all);
}

static int64_t layer_offset(const cs_graph *g, int l)
{
    return g->params[g->layers[l].first_param].offset;
}

/* diag, full, unit, kfac (pi and plain; Cholesky and eig), newton, smw and
 * ekfac against the dense references on one model. */
static void check_model(const char *model, const char *data, int64_t n)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load(model, data, n, &g, &ds))
        return;
    int64_t P = g->n_param_scalars;
    double *grad = malloc(sizeof(double) * (size_t)P), *dir = malloc(sizeof(double) * (size_t)P);
    double *want = malloc(sizeof(double) * (size_t)P);
    random_vector(grad, P, 11);
    const double lambda = 0.3;
    cs_curv_report ref;
    harness h;
    if (reference(g, &ds, CS_CURV_GGN, &ref) == 0) {
        /* diag */
        if (!harness_open(&h, g, "diag", CS_CURV_GGN, lambda) && !harness_step(&h, &ds, grad, dir)) {
            for (int l = 0; l < g->n_layers; l++) {
                const cs_curv_result *r = cs_curv_report_find(&ref, CS_CURV_GGN, CS_REPR_FULL, l);
                int64_t off = layer_offset(g, l);
                for (int64_t i = 0; i < r->dim; i++)
                    want[off + i] = grad[off + i] / (r->matrix[i * r->dim + i] + lambda);
            }
            ok(rel_err(dir, want, P) < 1e-10, "%s diag: g / (diag(F) + lambda) (rel err %.2g)", model,
               rel_err(dir, want, P));
        }
        harness_close(&h);
        /* full, and unit from the units of the reference block */
        const char *blocks[] = {"full", "unit"};
        for (int b = 0; b < 2; b++) {
            if (harness_open(&h, g, blocks[b], CS_CURV_GGN, lambda) || harness_step(&h, &ds, grad, dir)) {
                harness_close(&h);
                continue;
            }
            for (int l = 0; l < g->n_layers; l++) {
                const cs_curv_result *r = cs_curv_report_find(&ref, CS_CURV_GGN, CS_REPR_FULL, l);
                const cs_curv_result *k = cs_curv_report_find(&ref, CS_CURV_GGN, CS_REPR_KFAC, l);
                long W = (long)r->dim, *idx = malloc(sizeof(long) * (size_t)W), m;
                int64_t off = layer_offset(g, l);
                if (b == 0 || !k) {
                    /* full; or a normalisation layer's (scale_c, bias_c) pairs */
                    long C = W / 2;
                    for (long u = 0; u < (b == 0 ? 1 : C); u++) {
                        m = 0;
                        if (b == 0)
                            for (long i = 0; i < W; i++)
                                idx[m++] = i;
                        else
                            idx[m++] = u, idx[m++] = C + u;
                        dense_solve_subset(r->matrix, W, idx, m, lambda, grad + off, want + off);
                    }
                } else {
                    /* output units: parameters sharing (group, unit) */
                    for (long u = 0; u < k->kfac_groups * k->kfac_dG; u++) {
                        m = 0;
                        for (long p = 0; p < W; p++)
                            if (k->kfac_index[3 * p] * k->kfac_dG + k->kfac_index[3 * p + 1] == u)
                                idx[m++] = p;
                        dense_solve_subset(r->matrix, W, idx, m, lambda, grad + off, want + off);
                    }
                }
                free(idx);
            }
            ok(rel_err(dir, want, P) < 1e-9, "%s %s: (F_block + lambda I)^-1 g (rel err %.2g)", model, blocks[b],
               rel_err(dir, want, P));
            harness_close(&h);
        }
        /* kfac: pi split and plain, Cholesky and eigendecomposition */
        for (int variant = 0; variant < 3; variant++) {
            if (harness_open(&h, g, "kfac", CS_CURV_GGN, lambda))
                continue;
            h.o.pi_damping = variant != 1;
            h.o.cholesky = variant != 2;
            if (!harness_step(&h, &ds, grad, dir)) {
                memcpy(want, grad, sizeof(double) * (size_t)P);
                int fallbacks = 0;
                for (int l = 0; l < g->n_layers; l++) {
                    const cs_curv_result *k = cs_curv_report_find(&ref, CS_CURV_GGN, CS_REPR_KFAC, l);
                    if (k)
                        kfac_dense_dir(k, lambda, variant != 1, grad + layer_offset(g, l), want + layer_offset(g, l));
                    else
                        fallbacks += h.fallback[l] && h.why[l];
                    if (k && h.fallback[l])
                        fallbacks = -100;
                }
                const char *vname[] = {"pi split, Cholesky", "plain split", "pi split, eig"};
                ok(rel_err(dir, want, P) < 1e-9, "%s kfac (%s): dense (G + dg I) (x) (A + da I) solve (rel err %.2g)",
                   model, vname[variant], rel_err(dir, want, P));
                if (variant == 0)
                    ok(fallbacks == (strcmp(model, "tiny_cnn64") == 0 ? 1 : 0),
                       "%s kfac: exactly the layers without factors fall back to the gradient, with a reason", model);
            }
            harness_close(&h);
        }
        /* ekfac: the K-FAC factors' eigenbases (Jacobi here), scalings
         * diag(Q^T F Q) of the exact block */
        if (!harness_open(&h, g, "ekfac", CS_CURV_GGN, lambda) && !harness_step(&h, &ds, grad, dir)) {
            memcpy(want, grad, sizeof(double) * (size_t)P);
            for (int l = 0; l < g->n_layers; l++) {
                const cs_curv_result *k = cs_curv_report_find(&ref, CS_CURV_GGN, CS_REPR_KFAC, l);
                const cs_curv_result *r = cs_curv_report_find(&ref, CS_CURV_GGN, CS_REPR_FULL, l);
                if (!k)
                    continue;
                long W = (long)k->dim, dA = (long)k->kfac_dA, dG = (long)k->kfac_dG;
                double *QA = malloc(sizeof(double) * (size_t)(dA * dA * k->kfac_groups));
                double *QG = malloc(sizeof(double) * (size_t)(dG * dG * k->kfac_groups));
                double *tmp = malloc(sizeof(double) * (size_t)(dA * dA + dG * dG)), w[64];
                for (long grp = 0; grp < k->kfac_groups; grp++) {
                    memcpy(tmp, k->kfac_A + grp * dA * dA, sizeof(double) * (size_t)(dA * dA));
                    jacobi_eigen(tmp, dA, QA + grp * dA * dA, w);
                    memcpy(tmp, k->kfac_G + grp * dG * dG, sizeof(double) * (size_t)(dG * dG));
                    jacobi_eigen(tmp, dG, QG + grp * dG * dG, w);
                }
                /* The dense basis Q (W x W): column (grp, i, j) = q_G,i (x) q_A,j
                 * laid out in parameter order. */
                double *Q = calloc((size_t)(W * W), sizeof(double));
                /* basis columns are indexed like the parameters */
                for (long c = 0; c < W; c++) {
                    const int64_t *kc = k->kfac_index + 3 * c;
                    for (long p = 0; p < W; p++) {
                        const int64_t *kp = k->kfac_index + 3 * p;
                        if (kp[0] == kc[0])
                            Q[p * W + c] = QG[kc[0] * dG * dG + kp[1] * dG + kc[1]] * QA[kc[0] * dA * dA + kp[2] * dA + kc[2]];
                    }
                }
                const double *gl = grad + layer_offset(g, l);
                double *out = want + layer_offset(g, l);
                for (long c = 0; c < W; c++) {
                    double s = 0, proj = 0; /* s = q_c^T F q_c, proj = q_c^T g */
                    for (long p = 0; p < W; p++) {
                        double fq = 0;
                        for (long q = 0; q < W; q++)
                            fq += r->matrix[p * W + q] * Q[q * W + c];
                        s += Q[p * W + c] * fq;
                        proj += Q[p * W + c] * gl[p];
                    }
                    tmp[0] = proj / (s + lambda);
                    for (long p = 0; p < W; p++)
                        out[p] = (c == 0 ? 0 : out[p]) + Q[p * W + c] * tmp[0];
                }
                free(QA), free(QG), free(tmp), free(Q);
            }
            ok(rel_err(dir, want, P) < 1e-8, "%s ekfac: Q [(Q^T g) / (diag(Q^T F Q) + lambda)] (rel err %.2g)", model,
               rel_err(dir, want, P));
        }
        harness_close(&h);
        cs_curv_report_free(&ref);
    }
    /* newton: saddle-free (|H| + lambda I)^-1 g per layer block */
    if (reference(g, &ds, CS_CURV_HESSIAN, &ref) == 0) {
        if (!harness_open(&h, g, "newton", CS_CURV_HESSIAN, lambda) && !harness_step(&h, &ds, grad, dir)) {
            for (int l = 0; l < g->n_layers; l++) {
                const cs_curv_result *r = cs_curv_report_find(&ref, CS_CURV_HESSIAN, CS_REPR_FULL, l);
                long W = (long)r->dim;
                double *M = malloc(sizeof(double) * (size_t)(W * W));
                memcpy(M, r->matrix, sizeof(double) * (size_t)(W * W));
                jacobi_matrix_function(M, W, fn_abs_damped, &lambda);
                int64_t off = layer_offset(g, l);
                for (long i = 0; i < W; i++) {
                    want[off + i] = 0;
                    for (long j = 0; j < W; j++)
                        want[off + i] += M[i * W + j] * grad[off + j];
                }
                free(M);
            }
            ok(rel_err(dir, want, P) < 1e-8, "%s newton: (|H| + lambda I)^-1 g, |H| by Jacobi (rel err %.2g)", model,
               rel_err(dir, want, P));
        }
        harness_close(&h);
        cs_curv_report_free(&ref);
    }
    /* smw: (F_emp + lambda I)^-1 g over the whole network */
    if (reference(g, &ds, CS_CURV_FISHER_EMP, &ref) == 0) {
        const cs_curv_result *net = cs_curv_report_find(&ref, CS_CURV_FISHER_EMP, CS_REPR_FULL, -1);
        if (ok(net && net->matrix, "%s: whole-network empirical Fisher", model) &&
            !harness_open(&h, g, "smw", CS_CURV_FISHER_EMP, lambda) && !harness_step(&h, &ds, grad, dir)) {
            long *all = malloc(sizeof(long) * (size_t)P);
            for (long i = 0; i < P; i++)
                all[i] = i;
            dense_solve_subset(net->matrix, P, all, P, lambda, grad, want);
            ok(rel_err(dir, want, P) < 1e-8, "%s smw: Sherman-Morrison-Woodbury = dense (F + lambda I)^-1 g (rel err %.2g)",
               model, rel_err(dir, want, P));
            free(all);
        }
        harness_close(&h);
        cs_curv_report_free(&ref);
    }
    free(grad), free(dir), free(want);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* Shampoo after one observed gradient: L = V V^T, R = V^T V, the direction
 * (L + lambda I)^-1/4 V (R + lambda I)^-1/4, grafted onto |g| per layer. */
static void check_shampoo(void)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load("tiny_mlp64", "tiny_mlp64", 16, &g, &ds))
        return;
    int64_t P = g->n_param_scalars;
    double *grad = malloc(sizeof(double) * (size_t)P), *dir = malloc(sizeof(double) * (size_t)P);
    double *want = malloc(sizeof(double) * (size_t)P);
    random_vector(grad, P, 5);
    double lambda = 0.05;
    for (int graft = 0; graft < 2; graft++) {
        harness h;
        if (harness_open(&h, g, "shampoo", CS_CURV_FISHER_EMP, lambda))
            continue;
        h.o.graft = graft;
        if (!harness_step(&h, &ds, grad, dir)) {
            for (int l = 0; l < g->n_layers; l++) {
                pc_kron k;
                cs_err err = {0};
                if (pc_kron_layout(&k, g, l, &err) || !k.ok)
                    continue;
                long dG = (long)k.dG, dA = (long)k.dA, W = (long)k.W;
                double *V = calloc((size_t)(dG * dA), sizeof(double)), *D = malloc(sizeof(double) * (size_t)(dG * dA));
                const double *gl = grad + k.offset;
                for (long p = 0; p < W; p++)
                    V[k.index[3 * p + 1] * dA + k.index[3 * p + 2]] = gl[p];
                double nd = shampoo_ref(V, dG, dA, lambda, D), ng = 0;
                for (long p = 0; p < W; p++)
                    ng += gl[p] * gl[p];
                for (long p = 0; p < W; p++)
                    want[k.offset + p] = D[k.index[3 * p + 1] * dA + k.index[3 * p + 2]] * (graft ? sqrt(ng / nd) : 1);
                free(V), free(D);
                pc_kron_free(&k);
            }
            ok(rel_err(dir, want, P) < 1e-9, "shampoo (%s): L^-1/4 V R^-1/4 by Jacobi (rel err %.2g)",
               graft ? "grafted" : "raw", rel_err(dir, want, P));
        }
        harness_close(&h);
    }
    free(grad), free(dir), free(want);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* K-FAC with one sample and no damping is the exact natural-gradient step
 * F^+ g of a single linear layer (the GGN of one sample is G (x) A). */
static void check_kfac_exact_ng(void)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load("tiny_linear64", "tiny_mlp64", 1, &g, &ds))
        return;
    int64_t P = g->n_param_scalars;
    double *grad = malloc(sizeof(double) * (size_t)P), *dir = malloc(sizeof(double) * (size_t)P);
    double *want = calloc((size_t)P, sizeof(double));
    random_vector(grad, P, 3);
    cs_curv_report ref;
    harness h;
    if (reference(g, &ds, CS_CURV_GGN, &ref) == 0 && !harness_open(&h, g, "kfac", CS_CURV_GGN, 0)) {
        const cs_curv_result *r = cs_curv_report_find(&ref, CS_CURV_GGN, CS_REPR_FULL, 0);
        double *Fp = malloc(sizeof(double) * (size_t)(P * P));
        memcpy(Fp, r->matrix, sizeof(double) * (size_t)(P * P));
        jacobi_matrix_function(Fp, P, fn_pinv, NULL);
        for (long i = 0; i < P; i++)
            for (long j = 0; j < P; j++)
                want[i] += Fp[i * P + j] * grad[j];
        /* g in the range of F: the step is then the solution of F d = g */
        if (!harness_step(&h, &ds, grad, dir))
            ok(rel_err(dir, want, P) < 1e-7, "kfac, one sample, lambda 0: F^+ g of the exact Fisher (rel err %.2g)",
               rel_err(dir, want, P));
        free(Fp);
        harness_close(&h);
        cs_curv_report_free(&ref);
    }
    free(grad), free(dir), free(want);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

/* Running averages: after refreshes on batches 1 and 2 with --ema 0.5 the
 * statistics are 0.5 C1 + 0.5 C2 (the first refresh sets them). */
static void check_ema(void)
{
    cs_graph *g;
    cs_dataset all;
    if (curv_case_load("tiny_mlp64", "tiny_mlp64", 0, &g, &all))
        return;
    int64_t P = g->n_param_scalars, half = all.n / 2;
    cs_dataset b1 = all, b2 = all;
    b1.n = half, b1.x.dims[0] = half, b1.y.dims[0] = half;
    b2.n = half, b2.x.dims[0] = half, b2.y.dims[0] = half;
    b2.x.data = (char *)all.x.data + cs_tensor_bytes(&all.x) / (size_t)all.n * (size_t)half;
    b2.y.data = (char *)all.y.data + cs_tensor_bytes(&all.y) / (size_t)all.n * (size_t)half;
    double *grad = malloc(sizeof(double) * (size_t)P), *dir = malloc(sizeof(double) * (size_t)P);
    double *want = malloc(sizeof(double) * (size_t)P);
    random_vector(grad, P, 9);
    const double lambda = 0.2;
    cs_curv_report r1, r2;
    if (reference(g, &b1, CS_CURV_GGN, &r1) == 0 && reference(g, &b2, CS_CURV_GGN, &r2) == 0) {
        const char *names[] = {"diag", "full", "kfac"};
        for (int k = 0; k < 3; k++) {
            harness h;
            if (harness_open(&h, g, names[k], CS_CURV_GGN, lambda))
                continue;
            h.o.ema = 0.5;
            if (harness_step(&h, &b1, grad, dir) || harness_step(&h, &b2, grad, dir)) {
                harness_close(&h);
                continue;
            }
            for (int l = 0; l < g->n_layers; l++) {
                int64_t off = layer_offset(g, l);
                const cs_curv_result *f1 = cs_curv_report_find(&r1, CS_CURV_GGN, k == 2 ? CS_REPR_KFAC : CS_REPR_FULL, l);
                const cs_curv_result *f2 = cs_curv_report_find(&r2, CS_CURV_GGN, k == 2 ? CS_REPR_KFAC : CS_REPR_FULL, l);
                long W = (long)f1->dim;
                if (k == 2) {
                    cs_curv_result avg = *f1;
                    long na = (long)(f1->kfac_groups * f1->kfac_dA * f1->kfac_dA);
                    long ng = (long)(f1->kfac_groups * f1->kfac_dG * f1->kfac_dG);
                    avg.kfac_A = malloc(sizeof(double) * (size_t)na);
                    avg.kfac_G = malloc(sizeof(double) * (size_t)ng);
                    for (long i = 0; i < na; i++)
                        avg.kfac_A[i] = 0.5 * f1->kfac_A[i] + 0.5 * f2->kfac_A[i];
                    for (long i = 0; i < ng; i++)
                        avg.kfac_G[i] = 0.5 * f1->kfac_G[i] + 0.5 * f2->kfac_G[i];
                    kfac_dense_dir(&avg, lambda, true, grad + off, want + off);
                    free(avg.kfac_A), free(avg.kfac_G);
                    continue;
                }
                double *M = malloc(sizeof(double) * (size_t)(W * W));
                long *all_idx = malloc(sizeof(long) * (size_t)W);
                for (long i = 0; i < W * W; i++)
                    M[i] = 0.5 * f1->matrix[i] + 0.5 * f2->matrix[i];
                for (long i = 0; i < W; i++) {
                    all_idx[i] = i;
                    if (k == 0)
                        want[off + i] = grad[off + i] / (M[i * W + i] + lambda);
                }
                if (k == 1)
                    dense_solve_subset(M, W, all_idx, W, lambda, grad + off, want + off);
                free(M), free(all_idx);
            }
            ok(rel_err(dir, want, P) < 1e-9, "%s --ema 0.5: the direction of 0.5 C1 + 0.5 C2 (rel err %.2g)", names[k],
               rel_err(dir, want, P));
            harness_close(&h);
        }
        cs_curv_report_free(&r1);
        cs_curv_report_free(&r2);
    }
    free(grad), free(dir), free(want);
    cs_dataset_free(&all);
    cs_graph_free(g);
}

static double read_scalar(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_DOUBLE ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

/* Update intervals, frozen layers and --bn-train through cs_finetune. */
static void check_training_semantics(void)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load("tiny_cnn64", "tiny_cnn64", 40, &g, &ds))
        return;
    cs_norm norm;
    cs_norm_init(&norm);
    cs_finetune_opts o;
    cs_finetune_opts_init(&o);
    o.norm = &norm;
    o.batch = 1; /* one step per sample */
    o.lr = 1e-3;
    o.curvature = CS_CURV_GGN;
    cs_finetune_result res;
    cs_err err = {0};
    /* Refreshes at steps 1, K + 1, 2K + 1, ...; smw every step; sgd never. */
    int64_t N = ds.n;
    struct {
        const char *precond;
        int interval;
        int64_t refreshes;
    } cases[] = {{"kfac", 3, (N + 2) / 3}, {"diag", 1, N}, {"smw", 5, N}, {"shampoo", 4, (N + 3) / 4}, {"sgd", 3, 0}};
    ok(N >= 8, "%lld samples: enough steps to tell the intervals apart", (long long)N);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        o.precond = cases[i].precond;
        o.update_interval = cases[i].interval;
        o.curvature = strcmp(o.precond, "smw") == 0 ? CS_CURV_FISHER_EMP : CS_CURV_GGN;
        if (ok(cs_finetune(g, &ds, &o, &res, &err) == CS_OK, "%s: finetune runs (%s)", o.precond, err.msg))
            ok(res.steps == N && res.refreshes == cases[i].refreshes,
               "%s --update-interval %d: %lld refreshes in %lld steps (want %lld)", o.precond, cases[i].interval,
               (long long)res.refreshes, (long long)res.steps, (long long)cases[i].refreshes);
    }

    /* --freeze conv: the conv parameters do not move, the others do. */
    int64_t P = g->n_param_scalars;
    double *before = malloc(sizeof(double) * (size_t)P), *after = malloc(sizeof(double) * (size_t)P);
    for (int q = 0; q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        for (int64_t i = 0; i < cs_tensor_numel(t); i++)
            before[g->params[q].offset + i] = read_scalar(t, i);
    }
    o.precond = "kfac";
    o.update_interval = 2;
    o.curvature = CS_CURV_GGN;
    o.weight_decay = 0.1;
    o.freeze = "conv";
    if (ok(cs_finetune(g, &ds, &o, &res, &err) == CS_OK, "--freeze conv: runs (%s)", err.msg)) {
        for (int q = 0; q < g->n_params; q++) {
            const cs_tensor *t = &g->values[g->params[q].value].init;
            for (int64_t i = 0; i < cs_tensor_numel(t); i++)
                after[g->params[q].offset + i] = read_scalar(t, i);
        }
        int64_t conv_n = g->layers[0].numel, moved_conv = 0, moved_rest = 0;
        for (int64_t i = 0; i < P; i++) {
            bool moved = after[i] != before[i];
            if (i < conv_n)
                moved_conv += moved;
            else
                moved_rest += moved;
        }
        ok(moved_conv == 0 && moved_rest > (P - conv_n) / 2 && res.n_frozen == 1,
           "--freeze conv: %lld of %lld conv parameters moved, %lld of %lld others", (long long)moved_conv,
           (long long)conv_n, (long long)moved_rest, (long long)(P - conv_n));
    }
    o.freeze = "conv,nosuchlayer";
    ok(cs_finetune(g, &ds, &o, &res, &err) == CS_ERR_USAGE && strstr(err.msg, "nosuchlayer"),
       "--freeze with an unknown layer: usage error naming it (%s)", err.msg);
    o.freeze = "conv,bn,fc";
    ok(cs_finetune(g, &ds, &o, &res, &err) == CS_ERR_USAGE, "--freeze of every layer: usage error (%s)", err.msg);

    /* --bn-train, one step with conv frozen: the BN input is conv(x) of the
     * batch, so the running statistics must become
     * m r + (1 - m) (batch mean, unbiased batch variance). */
    int bn = -1;
    for (int k = 0; k < g->n_nodes; k++)
        if (strcmp(g->nodes[k].op_type, "BatchNormalization") == 0)
            bn = k;
    cs_dataset one = ds;
    one.n = 4, one.x.dims[0] = 4, one.y.dims[0] = 4;
    o.batch = 4;
    cs_objective obj;
    double loss, *gbuf = malloc(sizeof(double) * (size_t)P);
    int64_t hits;
    err.msg[0] = 0;
    if (ok(bn >= 0, "tiny_cnn64 has a BatchNormalization") &&
        ok(cs_objective_init(&obj, g, &one, &norm, CS_LOSS_CE, 4, CS_AD_GRAD | CS_OBJ_WHOLE_BATCH, &err) == CS_OK &&
               cs_objective_batch_gradient(&obj, 0, &loss, &hits, gbuf, &err) == CS_OK,
           "forward of the batch (%s)", err.msg)) {
        const cs_node *n = &g->nodes[bn];
        const cs_tensor *X = &obj.plan[0].vals[n->inputs[0]];
        cs_tensor *mean = &g->values[n->inputs[3]].init, *var = &g->values[n->inputs[4]].init;
        int64_t C = X->dims[1], S = cs_tensor_numel(X) / (4 * C);
        double m = cs_node_attr_float(n, "momentum", 0.9f), want_mean[16], want_var[16];
        for (int64_t c = 0; c < C && c < 16; c++) {
            double s = 0, s2 = 0, cnt = (double)(4 * S);
            for (int64_t b = 0; b < 4; b++)
                for (int64_t i = 0; i < S; i++)
                    s += read_scalar(X, (b * C + c) * S + i);
            double mu = s / cnt;
            for (int64_t b = 0; b < 4; b++)
                for (int64_t i = 0; i < S; i++) {
                    double d = read_scalar(X, (b * C + c) * S + i) - mu;
                    s2 += d * d;
                }
            want_mean[c] = m * read_scalar(mean, c) + (1 - m) * mu;
            want_var[c] = m * read_scalar(var, c) + (1 - m) * s2 / (cnt - 1);
        }
        cs_objective_free(&obj);
        o.freeze = "conv";
        o.bn_train = true;
        o.epochs = 1;
        if (ok(cs_finetune(g, &one, &o, &res, &err) == CS_OK, "--bn-train: runs (%s)", err.msg)) {
            double e = 0;
            for (int64_t c = 0; c < C && c < 16; c++)
                e = fmax(e, fmax(fabs(read_scalar(mean, c) - want_mean[c]), fabs(read_scalar(var, c) - want_var[c])) /
                                (fabs(want_var[c]) + 1e-3));
            ok(e < 1e-5, "--bn-train: running mean and variance follow the batch statistics (rel err %.2g)", e);
        }
    }
    free(gbuf), free(before), free(after);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    check_model("tiny_mlp64", "tiny_mlp64", 48);
    check_model("tiny_cnn64", "tiny_cnn64", 24);
    check_shampoo();
    check_kfac_exact_ng();
    check_ema();
    check_training_semantics();
    return tap_done();
}
