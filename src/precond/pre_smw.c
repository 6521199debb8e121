/* Empirical natural gradient on the mini-batch by Sherman-Morrison-Woodbury
 * (the "SMW-NG" of Ren & Goldfarb 2019 and ASDL): with U the [m, P] matrix
 * of the batch's per-sample gradient rows (m = B for fisher_emp, B S for
 * fisher_mc) and F = (1/B) U^T U over all trainable layers at once,
 *   (F + lambda I)^-1 g = (g - U^T (lambda B I + U U^T)^-1 U g) / lambda,
 * an m x m solve (Cholesky) instead of a P x P one.  It refreshes on every
 * step's batch (the Fisher of that batch; --update-interval and --ema do
 * not apply) and needs lambda > 0.  Frozen layers' columns are left out. */
#include "precond/precond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/blas.h"

typedef struct smw_state {
    int64_t P, m_max, m, B;
    double *U;   /* [m_max][P] */
    double *K;   /* [m_max][m_max]: Cholesky factor of lambda B I + U U^T */
    double *y;   /* m_max */
    const cs_precond_ctx *c;
} smw_state;

static void smw_destroy(void *vs)
{
    smw_state *s = vs;
    if (s)
        free(s->U), free(s->K), free(s->y);
    free(s);
}

/* Room for the rows of B samples (B S with S sampled labels): finetune's
 * mini-batches, sized at create; analyze's dataset, grown at its refresh. */
static cs_status smw_reserve(smw_state *s, const cs_precond_ctx *c, int64_t B, cs_err *err)
{
    int64_t S = c->curv == CS_CURV_FISHER_MC ? (c->o->mc_samples > 0 ? c->o->mc_samples : 1) : 1;
    if (B * S <= s->m_max)
        return CS_OK;
    free(s->U), free(s->K), free(s->y);
    s->m_max = B * S;
    /* Zeroed once: every refresh rewrites the trained layers' columns of
     * its rows, and frozen layers' columns stay zero. */
    s->U = calloc((size_t)(s->m_max * s->P) + 1, sizeof(double));
    s->K = malloc(sizeof(double) * (size_t)(s->m_max * s->m_max) + 1);
    s->y = malloc(sizeof(double) * (size_t)s->m_max + 1);
    if (!s->U || !s->K || !s->y)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for smw's per-sample gradients (%lld rows of %lld)",
                       (long long)s->m_max, (long long)s->P);
    return CS_OK;
}

static cs_status smw_create(const cs_precond_ctx *c, void **state, cs_err *err)
{
    if (c->curv != CS_CURV_FISHER_EMP && c->curv != CS_CURV_FISHER_MC)
        return cs_fail(err, CS_ERR_USAGE, "smw works with --curvature fisher_emp or fisher_mc, not %s",
                       cs_curv_name(c->curv));
    if (!(c->o->damping > 0))
        return cs_fail(err, CS_ERR_USAGE, "smw needs --damping > 0");
    smw_state *s = calloc(1, sizeof *s);
    if (!s)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for smw");
    s->P = c->g->n_param_scalars;
    cs_status st = smw_reserve(s, c, c->o->batch, err);
    if (st)
        smw_destroy(s);
    else
        *state = s;
    return st;
}

/* Rows of seed k, sample b go to row k B + b; the scale 1/sqrt(S) of the
 * Monte-Carlo seeds is already in them. */
static void smw_rows(void *vs, int l, int64_t start, int seed, const double *rows, int64_t B)
{
    smw_state *s = vs;
    const cs_graph *g = s->c->g;
    if (l == 0 && start == 0 && (int64_t)(seed + 1) * s->B > s->m)
        s->m = (int64_t)(seed + 1) * s->B;
    if (s->c->frozen[l])
        return;
    int64_t off = g->params[g->layers[l].first_param].offset, W = g->layers[l].numel;
    for (int64_t b = 0; b < B; b++) {
        int64_t row = (int64_t)seed * s->B + start + b;
        if (row < s->m_max)
            memcpy(s->U + row * s->P + off, rows + b * W, sizeof(double) * (size_t)W);
    }
}

static cs_status smw_refresh(void *vs, cs_precond_ctx *c, const cs_dataset *batch, cs_err *err)
{
    smw_state *s = vs;
    /* Its matrix is made of the per-sample gradient rows themselves,
     * which stay on the rank that owns the sample. */
    if (batch->sliced)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "smw cannot run with the samples split across ranks "
                                                "(mpirun): run it in one process");
    s->c = c;
    s->B = batch->n;
    s->m = 0;
    cs_curv_report own;
    const cs_curv_report *rep;
    cs_status st = smw_reserve(s, c, batch->n, err);
    if (!st)
        st = pc_curvature(c, batch, 1u << CS_REPR_DIAG, smw_rows, s, &own, &rep, err);
    if (st)
        return st;
    cs_curv_report_free(&own);
    int m = (int)(s->m < s->m_max ? s->m : s->m_max);
    /* K = U U^T + lambda B I, then its Cholesky factor. */
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, m, (int)s->P, 1.0, s->U, (int)s->P, 0.0, s->K, m);
    for (int i = 0; i < m; i++)
        s->K[i * m + i] += c->o->damping * (double)s->B;
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', m, s->K, m);
    if (info)
        return cs_fail(err, CS_ERR_RUNTIME, "smw: Cholesky of the %d x %d batch system failed (LAPACK info %d)", m, m,
                       (int)info);
    s->m = m;
    return CS_OK;
}

static cs_status smw_apply(void *vs, const cs_precond_ctx *c, const double *grad, double *dir, cs_err *err)
{
    smw_state *s = vs;
    int m = (int)s->m, P = (int)s->P;
    /* y = U g; K z = y; d = (g - U^T z) / lambda */
    cblas_dgemv(CblasRowMajor, CblasNoTrans, m, P, 1.0, s->U, P, grad, 1, 0.0, s->y, 1);
    lapack_int info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'U', m, 1, s->K, m, s->y, 1);
    if (info)
        return cs_fail(err, CS_ERR_RUNTIME, "smw: solve failed (LAPACK info %d)", (int)info);
    memcpy(dir, grad, sizeof(double) * (size_t)P);
    cblas_dgemv(CblasRowMajor, CblasTrans, m, P, -1.0, s->U, P, s->y, 1, 1.0, dir, 1);
    for (int64_t i = 0; i < s->P; i++)
        dir[i] /= c->o->damping;
    return CS_OK;
}

const cs_precond_ops pc_smw_ops = {
    .create = smw_create, .refresh = smw_refresh, .apply = smw_apply, .destroy = smw_destroy};
