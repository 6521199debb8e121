/* The preconditioner table and the numerical helpers its files share
 * (precond.h).  Adding a preconditioner: one pre_*.c exporting its
 * cs_precond_ops, one row below, one cs_precond_kind. */
#include "precond/precond.h"

#include <assert.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spectral/dense.h"
#include "tensor/blas.h"

/* ---- the registration table ---- */

/* sgd and adamw: the direction is the gradient (adamw's rule is finetune's). */
static cs_status identity_apply(void *state, const cs_precond_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)state, (void)err;
    memcpy(dir, grad, sizeof(double) * (size_t)c->g->n_param_scalars);
    return CS_OK;
}

static const cs_precond_ops identity_ops = {.apply = identity_apply};
/* pre_kfac.c, pre_ekfac.c, pre_shampoo.c, pre_diag.c, pre_blocks.c (full, unit; newton is full's on the
 * Hessian), pre_smw.c */
extern const cs_precond_ops pc_kfac_ops, pc_ekfac_ops, pc_shampoo_ops, pc_diag_ops, pc_full_ops, pc_unit_ops,
    pc_smw_ops;

/* One row per preconditioner; precond.h states each one's maths. */
static const cs_precond_def table[] = {
    [CS_PRE_SGD] = {.name = "sgd", .about = "gradient (momentum, --nesterov)", .default_curv = CS_CURV_FISHER_MC,
        .default_lr = 1e-3, .ops = &identity_ops},
    [CS_PRE_ADAMW] = {.name = "adamw", .about = "Adam with decoupled weight decay (Loshchilov & Hutter 2019)",
        .default_curv = CS_CURV_FISHER_MC, .adam = true, .default_lr = 1e-3, .ops = &identity_ops},
    [CS_PRE_KFAC] = {.name = "kfac",
        .about = "K-FAC: (G + sqrt(l)/pi I)^-1 V (A + pi sqrt(l) I)^-1 (Martens & Grosse 2015)",
        .default_curv = CS_CURV_FISHER_MC, .reprs = 1u << CS_REPR_KFAC, .reads_curvature = true, .damped = true,
        .default_lr = 1e-3, .default_damping = 1e-3, .ops = &pc_kfac_ops},
    [CS_PRE_EKFAC] = {.name = "ekfac",
        .about = "K-FAC's eigenbasis with re-fitted diagonal scalings (George et al. 2018)",
        .default_curv = CS_CURV_FISHER_MC, .reprs = 1u << CS_REPR_KFAC, .reads_curvature = true, .damped = true,
        .default_lr = 1e-3, .default_damping = 1e-2, .ops = &pc_ekfac_ops},
    [CS_PRE_SHAMPOO] = {.name = "shampoo", .about = "L^-1/4 V R^-1/4 grafted onto SGD's norm (Gupta et al. 2018)",
        .default_curv = CS_CURV_FISHER_EMP, .damped = true, .default_lr = 1e-3, .default_damping = 1e-3,
        .ops = &pc_shampoo_ops},
    [CS_PRE_DIAG] = {.name = "diag", .about = "diagonal natural gradient g / (diag(F) + l)",
        .default_curv = CS_CURV_FISHER_MC, .reprs = 1u << CS_REPR_DIAG, .reads_curvature = true, .damped = true,
        .default_lr = 1e-3, .default_damping = 1, .ops = &pc_diag_ops},
    [CS_PRE_UNIT] = {.name = "unit",
        .about = "unit-wise natural gradient (output rows of [W | b]; norm scale-bias pairs)",
        .default_curv = CS_CURV_FISHER_MC, .reprs = 1u << CS_REPR_UNIT, .reads_curvature = true, .damped = true,
        .default_lr = 1e-3, .default_damping = 0.1, .ops = &pc_unit_ops},
    [CS_PRE_FULL] = {.name = "full", .about = "layer-block natural gradient (layers up to --max-full)",
        .default_curv = CS_CURV_FISHER_MC, .reprs = 1u << CS_REPR_FULL, .reads_curvature = true, .damped = true,
        .default_lr = 1e-3, .default_damping = 0.1, .ops = &pc_full_ops},
    [CS_PRE_SMW] = {.name = "smw", .about = "empirical natural gradient on the batch by Sherman-Morrison-Woodbury",
        .default_curv = CS_CURV_FISHER_EMP, .reads_curvature = true, .damped = true, .every_step = true,
        .default_lr = 1e-3, .default_damping = 1, .ops = &pc_smw_ops},
    [CS_PRE_NEWTON] = {.name = "newton",
        .about = "damped layer-block Hessian, saddle-free (|H| + l I)^-1 (Dauphin et al. 2014)",
        .default_curv = CS_CURV_HESSIAN, .reprs = 1u << CS_REPR_FULL, .reads_curvature = true, .damped = true,
        .default_lr = 1e-3, .default_damping = 1e-2, .ops = &pc_full_ops},
};
static_assert(sizeof table / sizeof table[0] == CS_PRE_COUNT, "register every preconditioner");

void cs_precond_opts_init(cs_precond_opts *o)
{
    memset(o, 0, sizeof *o);
    o->damping = 1e-3;
    o->ema = 0.95;
    o->max_full = 4096;
    o->mc_samples = 1;
    o->batch = 128;
    o->cholesky = true;
    o->pi_damping = true;
    o->graft = true;
    o->loss = CS_LOSS_CE;
}

cs_curv_kind cs_precond_analysis_curv(const cs_precond_def *def)
{
    return def->default_curv == CS_CURV_FISHER_MC ? CS_CURV_GGN : def->default_curv;
}

int cs_precond_count(void)
{
    return (int)(sizeof table / sizeof table[0]);
}

const cs_precond_def *cs_precond_at(int i)
{
    return i >= 0 && i < cs_precond_count() ? &table[i] : NULL;
}

const char *cs_precond_name(cs_precond_kind k)
{
    return (unsigned)k < CS_PRE_COUNT ? table[k].name : "?";
}

const cs_precond_def *cs_precond_find(const char *name)
{
    for (int i = 0; i < cs_precond_count(); i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

const char *cs_precond_names(void)
{
    static char names[256];
    if (!names[0])
        for (int i = 0; i < cs_precond_count(); i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", table[i].name);
    return names;
}

/* ---- helpers ---- */

void pc_fallback(const cs_precond_ctx *c, int l, const char *why)
{
    c->fallback[l] = true;
    c->why[l] = why;
}

/* Whether the analysed results serve a refresh: no layer result of the
 * curvature and representations asked for lacks its stored matrices (the
 * analysis keeps unit-wise results as spectra only; layers without a result
 * fall back either way). */
static bool given_serves(const cs_curv_report *rep, cs_curv_kind c, unsigned reprs)
{
    for (int i = 0; i < rep->n; i++) {
        const cs_curv_result *r = &rep->res[i];
        if (r->layer < 0 || r->curv != c || !(reprs >> r->repr & 1))
            continue;
        bool kept = r->repr == CS_REPR_KFAC ? r->kfac_A != NULL
                    : r->repr == CS_REPR_UNIT ? r->unit_blocks != NULL
                                              : r->matrix != NULL;
        if (!kept)
            return false;
    }
    return true;
}

cs_status pc_curvature(const cs_precond_ctx *c, const cs_dataset *batch, unsigned reprs,
                       void (*on_rows)(void *ctx, int layer, int64_t start, int seed, const double *rows,
                                       int64_t B),
                       void *rows_ctx, cs_curv_report *own, const cs_curv_report **rep, cs_err *err)
{
    memset(own, 0, sizeof *own);
    if (c->given && !on_rows && given_serves(c->given, c->curv, reprs)) {
        *rep = c->given;
        return CS_OK;
    }
    cs_curv_opts co;
    cs_curv_opts_init(&co);
    co.curvatures = 1u << c->curv;
    co.reprs = reprs;
    co.max_full = c->o->max_full;
    co.mc_samples = c->o->mc_samples;
    co.seed = c->seed;
    /* finetune's batch is one mini-batch (batch->n <= o->batch); analyze's
     * dataset runs in micro-batches of o->batch */
    co.batch = c->o->batch > 0 && c->o->batch < batch->n ? c->o->batch : batch->n;
    co.loss = c->o->loss;
    co.norm = c->o->norm;
    co.keep_matrices = true;
    co.stats_only = true;
    co.on_rows = on_rows;
    co.rows_ctx = rows_ctx;
    *rep = own;
    return cs_curvature_compute(c->g, batch, &co, own, err);
}

void pc_ema(double *S, const double *X, int64_t n, double decay, bool first)
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

double pc_pinv_cutoff(int64_t n, double vmax)
{
    return (double)n * 0x1p-52 * vmax;
}

typedef struct power_arg {
    double damping, power;
    int64_t n;
    bool absolute;
} power_arg;

/* (w + damping)^power, |w| for w when absolute; at damping 0 the
 * pseudo-inverse's power (0 at or below the cut-off). */
static double damped_power(double w, double wmax, const void *arg)
{
    const power_arg *a = arg;
    double m = (a->absolute ? fabs(w) : w) + a->damping;
    if (a->damping == 0 && !(m > pc_pinv_cutoff(a->n, wmax)))
        return 0.0;
    return a->power == -1 ? 1.0 / m : pow(m, a->power);
}

cs_status pc_sym_damped_power(const double *M, int64_t n, double damping, double power, bool absolute, double *out,
                              cs_err *err)
{
    power_arg a = {damping, power, n, absolute};
    return sym_function(M, n, damped_power, &a, out, err);
}

cs_status pc_damped_inverse(const double *M, int64_t n, double damping, bool chol, double *out, cs_err *err)
{
    if (!chol || damping == 0)
        return pc_sym_damped_power(M, n, damping, -1, false, out, err);
    if (out != M)
        memcpy(out, M, sizeof(double) * (size_t)(n * n));
    for (int64_t i = 0; i < n; i++)
        out[i * n + i] += damping;
    /* OpenBLAS's potrf/potri split only independent blocks over its
     * threads: the result is the same for every --threads (tests/cli/
     * test_threads.sh checks it at order 785), so they get the team. */
    cs_blas_wide(n >= 512);
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

cs_status pc_need_kfac_curvature(const cs_precond_ctx *c, const char *name, cs_err *err)
{
    if (cs_curv_repr_valid(c->curv, CS_REPR_KFAC, NULL))
        return CS_OK;
    return cs_fail(err, CS_ERR_USAGE, "%s needs a GGN-type curvature (ggn, fisher, fisher_mc, fisher_emp), not %s",
                   name, cs_curv_name(c->curv));
}
