#include "precond/precond.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spectral/dense.h"
#include "tensor/blas.h"

/* ---- the registration table ---- */

extern const ft_precond_def ft_pre_sgd, ft_pre_adamw, ft_pre_kfac, ft_pre_ekfac, ft_pre_shampoo,
    ft_pre_diag, ft_pre_unit, ft_pre_full, ft_pre_smw, ft_pre_newton;

static const ft_precond_def *const table[] = {
    &ft_pre_sgd,  &ft_pre_adamw, &ft_pre_kfac, &ft_pre_ekfac, &ft_pre_shampoo,
    &ft_pre_diag, &ft_pre_unit,  &ft_pre_full, &ft_pre_smw,   &ft_pre_newton,
};

int ft_precond_count(void)
{
    return (int)(sizeof table / sizeof table[0]);
}

const ft_precond_def *ft_precond_at(int i)
{
    return i >= 0 && i < ft_precond_count() ? table[i] : NULL;
}

const ft_precond_def *ft_precond_find(const char *name)
{
    for (int i = 0; i < ft_precond_count(); i++)
        if (strcmp(table[i]->name, name) == 0)
            return table[i];
    return NULL;
}

const char *ft_precond_names(void)
{
    static char names[256];
    if (!names[0])
        for (int i = 0; i < ft_precond_count(); i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", table[i]->name);
    return names;
}

/* ---- sgd and adamw: the direction is the gradient ---- */

static cs_status identity_apply(void *state, const ft_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)state, (void)err;
    memcpy(dir, grad, sizeof(double) * (size_t)c->g->n_param_scalars);
    return CS_OK;
}

const ft_precond_def ft_pre_sgd = {
    .name = "sgd", .about = "gradient (momentum, --nesterov)", .default_curv = CS_CURV_FISHER_MC,
    .default_lr = 1e-3, .default_damping = 0, .apply = identity_apply};
const ft_precond_def ft_pre_adamw = {
    .name = "adamw", .about = "Adam with decoupled weight decay (Loshchilov & Hutter 2019)",
    .default_curv = CS_CURV_FISHER_MC, .default_lr = 1e-3, .default_damping = 0, .apply = identity_apply};

/* ---- helpers ---- */

void ft_fallback(const ft_ctx *c, int l, const char *why)
{
    c->fallback[l] = true;
    c->why[l] = why;
}

cs_status ft_curvature(const ft_ctx *c, const cs_dataset *batch, unsigned reprs,
                       void (*on_rows)(void *ctx, int layer, int64_t start, int seed, const double *rows,
                                       int64_t B),
                       void *rows_ctx, cs_curv_report *rep, cs_err *err)
{
    cs_curv_opts co;
    cs_curv_opts_init(&co);
    co.curvatures = 1u << c->curv;
    co.reprs = reprs;
    co.max_full = c->o->max_full;
    co.mc_samples = c->o->mc_samples;
    co.seed = c->seed;
    co.batch = batch->n;
    co.loss = c->o->loss;
    co.norm = c->o->norm;
    co.keep_matrices = true;
    co.stats_only = true;
    co.on_rows = on_rows;
    co.rows_ctx = rows_ctx;
    return cs_curvature_compute(c->g, batch, &co, rep, err);
}

void ft_ema(double *S, const double *X, int64_t n, double decay, bool first)
{
    if (first) {
        memcpy(S, X, sizeof(double) * (size_t)n);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        S[i] = decay * S[i] + (1 - decay) * X[i];
}

static cs_status sym_function(const double *M, int64_t n, double (*f)(double w, double wmax, const void *arg),
                          const void *arg, double *out, cs_err *err)
{
    double *Q = malloc(sizeof(double) * (size_t)(n * n) + 1), *T = malloc(sizeof(double) * (size_t)(n * n) + 1);
    double *w = malloc(sizeof(double) * (size_t)n + 1), wmax = 0;
    cs_status st = Q && T && w ? CS_OK : cs_fail(err, CS_ERR_NOMEM, "out of memory for an eigen-solve of order %lld", (long long)n);
    int info = 0;
    if (!st && (info = cs_sym_eigvecs(M, n, Q, w, &wmax)))
        st = cs_fail(err, CS_ERR_RUNTIME, "eigen-solve of order %lld failed (LAPACK info %d)", (long long)n, info);
    if (!st) {
        /* T = Q diag(f(w)); out = T Q^T */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                T[i * n + j] = Q[i * n + j] * f(w[j], wmax, arg);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)n, 1.0, T, (int)n, Q, (int)n,
                    0.0, out, (int)n);
    }
    free(Q), free(T), free(w);
    return st;
}

typedef struct power_arg {
    double damping, power, tol; /* tol: relative cut-off of the pseudo-inverse */
    bool absolute;
} power_arg;

/* (w + damping)^power, |w| for w when absolute; at damping 0 the
 * pseudo-inverse's power (0 for |w| at or below tol * max |w|). */
static double damped_power(double w, double wmax, const void *arg)
{
    const power_arg *a = arg;
    double m = (a->absolute ? fabs(w) : w) + a->damping;
    if (a->damping == 0 && !(m > a->tol * wmax))
        return 0.0;
    return a->power == -1 ? 1.0 / m : pow(m, a->power);
}

cs_status ft_sym_damped_power(const double *M, int64_t n, double damping, double power, bool absolute, double *out,
                              cs_err *err)
{
    power_arg a = {damping, power, (double)n * 0x1p-52, absolute};
    return sym_function(M, n, damped_power, &a, out, err);
}

cs_status ft_damped_inverse(const double *M, int64_t n, double damping, bool chol, double *out, cs_err *err)
{
    if (!chol || damping == 0)
        return ft_sym_damped_power(M, n, damping, -1, false, out, err);
    if (out != M)
        memcpy(out, M, sizeof(double) * (size_t)(n * n));
    for (int64_t i = 0; i < n; i++)
        out[i * n + i] += damping;
    cs_blas_wide(n >= 512); /* as the eigen-solves (spectral/dense.c) */
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, out, (lapack_int)n);
    if (info == 0)
        info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, out, (lapack_int)n);
    cs_blas_wide(false);
    if (info > 0)
        return cs_fail(err, CS_ERR_RUNTIME,
                       "Cholesky: a damped matrix of order %lld is not positive definite (raise --damping or use --inverse eig)",
                       (long long)n);
    if (info < 0)
        return cs_fail(err, CS_ERR_RUNTIME, "Cholesky of order %lld failed (LAPACK info %d)", (long long)n, (int)info);
    for (int64_t i = 0; i < n; i++) /* dpotri fills the upper triangle */
        for (int64_t j = 0; j < i; j++)
            out[i * n + j] = out[j * n + i];
    return CS_OK;
}

/* ---- K-FAC layout and factors ---- */

cs_status ft_kron_update(ft_kron *k, const cs_curv_result *r, int64_t offset, double decay, cs_err *err)
{
    size_t na = (size_t)(r->kfac_groups * r->kfac_dA * r->kfac_dA), ng = (size_t)(r->kfac_groups * r->kfac_dG * r->kfac_dG);
    bool first = !k->ok;
    if (first) {
        k->groups = r->kfac_groups, k->dA = r->kfac_dA, k->dG = r->kfac_dG, k->W = r->dim, k->offset = offset;
        k->index = malloc(sizeof(int64_t) * 3 * (size_t)k->W + 1);
        k->A = malloc(sizeof(double) * na + 1);
        k->G = malloc(sizeof(double) * ng + 1);
        if (!k->index || !k->A || !k->G)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory for K-FAC factors");
        memcpy(k->index, r->kfac_index, sizeof(int64_t) * 3 * (size_t)k->W);
        k->ok = true;
    } else if (k->groups != r->kfac_groups || k->dA != r->kfac_dA || k->dG != r->kfac_dG) {
        return cs_fail(err, CS_ERR_RUNTIME, "K-FAC factor shapes changed between refreshes");
    }
    ft_ema(k->A, r->kfac_A, (int64_t)na, decay, first);
    ft_ema(k->G, r->kfac_G, (int64_t)ng, decay, first);
    return CS_OK;
}

cs_status ft_kron_refresh(ft_kron *k, ft_ctx *c, const cs_dataset *batch, size_t *max_v, cs_err *err)
{
    cs_curv_report rep;
    cs_status st = ft_curvature(c, batch, 1u << CS_REPR_KFAC, NULL, NULL, &rep, err);
    if (st)
        return st;
    *max_v = 1;
    for (int l = 0; l < c->g->n_layers && !st; l++) {
        const cs_curv_result *r = cs_curv_report_find(&rep, c->curv, CS_REPR_KFAC, l);
        if (!r || !r->kfac_A) {
            ft_fallback(c, l, "no K-FAC factors for this layer type");
            continue;
        }
        st = ft_kron_update(&k[l], r, c->g->params[c->g->layers[l].first_param].offset, c->o->ema, err);
        size_t nv = (size_t)(k[l].groups * k[l].dG * k[l].dA);
        *max_v = nv > *max_v ? nv : *max_v;
    }
    cs_curv_report_free(&rep);
    return st;
}

void ft_kron_gather(const ft_kron *k, const double *v, double *M)
{
    int64_t gsz = k->dG * k->dA;
    memset(M, 0, sizeof(double) * (size_t)(k->groups * gsz));
    for (int64_t p = 0; p < k->W; p++) {
        const int64_t *x = k->index + 3 * p;
        M[x[0] * gsz + x[1] * k->dA + x[2]] = v[p];
    }
}

void ft_kron_scatter(const ft_kron *k, const double *M, double *v)
{
    int64_t gsz = k->dG * k->dA;
    for (int64_t p = 0; p < k->W; p++) {
        const int64_t *x = k->index + 3 * p;
        v[p] = M[x[0] * gsz + x[1] * k->dA + x[2]];
    }
}

void ft_kron_sandwich(const ft_kron *k, const double *L, bool trans_l, const double *X, const double *R,
                      bool trans_r, double *Y, double *tmp)
{
    int dG = (int)k->dG, dA = (int)k->dA;
    for (int64_t grp = 0; grp < k->groups; grp++) {
        const double *Xg = X + grp * k->dG * k->dA;
        cblas_dgemm(CblasRowMajor, trans_l ? CblasTrans : CblasNoTrans, CblasNoTrans, dG, dA, dG, 1.0,
                    L + grp * k->dG * k->dG, dG, Xg, dA, 0.0, tmp, dA);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, trans_r ? CblasTrans : CblasNoTrans, dG, dA, dA, 1.0, tmp, dA,
                    R + grp * k->dA * k->dA, dA, 0.0, Y + grp * k->dG * k->dA, dA);
    }
}

cs_status ft_need_kfac_curvature(const ft_ctx *c, const char *name, cs_err *err)
{
    if (cs_curv_repr_valid(c->curv, CS_REPR_KFAC, NULL))
        return CS_OK;
    return cs_fail(err, CS_ERR_USAGE, "%s needs a GGN-type curvature (ggn, fisher, fisher_mc, fisher_emp), not %s",
                   name, cs_curv_name(c->curv));
}

void ft_kron_free(ft_kron *k)
{
    free(k->index), free(k->A), free(k->G);
    memset(k, 0, sizeof *k);
}

cs_status ft_kron_layout(ft_kron *k, const cs_graph *g, int l, cs_err *err)
{
    memset(k, 0, sizeof *k);
    cs_status st = cs_curv_layer_layout(g, l, &k->ok, &k->groups, &k->dG, &k->dA, &k->index, err);
    k->W = g->layers[l].numel;
    k->offset = g->params[g->layers[l].first_param].offset;
    return st;
}
