/* Influence scores (influence.h; doc/design.md §2.14).  The curvature is
 * fitted once on the training set by a preconditioner of the registry
 * (precond/precond.h: ekfac by default, its refresh is EK-FAC's fitting and
 * its apply the damped inverse product), each query's gradient is
 * preconditioned once, and each training example's gradient, formed one
 * at a time, is dotted with all of them. */
#include "influence/influence.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "objective/objective.h"
#include "precond/precond.h"
#include "tensor/blas.h"

void cs_influence_opts_init(cs_influence_opts *o)
{
    memset(o, 0, sizeof *o);
    o->methods = CS_INF_EKFAC | CS_INF_DOT | CS_INF_COSINE;
    o->precond = "ekfac";
    o->curv = CS_CURV_GGN;
    o->damping = 1e-3;
    o->batch = 128;
    o->max_full = 4096;
    o->loss = CS_LOSS_CE;
}

void cs_influence_result_free(cs_influence_result *r)
{
    free(r->ekfac), free(r->dot), free(r->cosine), free(r->self), free(r->tracin), free(r->tracin_self);
    free(r->train_loss), free(r->query_loss), free(r->excluded), free(r->why);
    memset(r, 0, sizeof *r);
}

/* Zero the excluded layers' entries of v [P]. */
static void mask_excluded(const cs_graph *g, const bool *excluded, double *v)
{
    for (int l = 0; l < g->n_layers; l++)
        if (excluded[l] && g->layers[l].n_params > 0)
            memset(v + g->params[g->layers[l].first_param].offset, 0,
                   sizeof(double) * (size_t)g->layers[l].numel);
}

/* Example i's loss gradient into grad (P), masked; obj has batch 1. */
static cs_status example_gradient(cs_objective *obj, const bool *excluded, int64_t i, double *loss, double *grad,
                                  cs_err *err)
{
    int64_t hits;
    cs_status st = cs_objective_batch_gradient(obj, i, loss, &hits, grad, err);
    if (!st)
        mask_excluded(obj->g, excluded, grad);
    return st;
}

static cs_status alloc_doubles(double **p, int64_t n, cs_err *err, const char *what)
{
    if (!(*p = calloc((size_t)n + 1, sizeof(double))))
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for %s (%lld doubles)", what, (long long)n);
    return CS_OK;
}

/* Checkpoint k holds g's parameters: the same tensors (by name and size)
 * at the same offsets, so one flat vector indexes both. */
static cs_status check_checkpoint(const cs_graph *g, const cs_graph *ck, int k, cs_err *err)
{
    if (ck->n_params != g->n_params || ck->n_param_scalars != g->n_param_scalars)
        return cs_fail(err, CS_ERR_USAGE,
                       "checkpoint %d has %d parameter tensors (%lld scalars), the model %d (%lld): not the "
                       "same network", k + 1, ck->n_params, (long long)ck->n_param_scalars, g->n_params,
                       (long long)g->n_param_scalars);
    for (int i = 0; i < g->n_params; i++) {
        const cs_value *a = &g->values[g->params[i].value], *b = &ck->values[ck->params[i].value];
        if (strcmp(a->name, b->name) != 0 || cs_tensor_numel(&a->init) != cs_tensor_numel(&b->init) ||
            g->params[i].offset != ck->params[i].offset)
            return cs_fail(err, CS_ERR_USAGE,
                           "checkpoint %d's parameter %d is '%s' (%lld values), the model's '%s' (%lld): not "
                           "the same network", k + 1, i, b->name, (long long)cs_tensor_numel(&b->init), a->name,
                           (long long)cs_tensor_numel(&a->init));
    }
    return CS_OK;
}

/* TracInCP (Pruthi et al. 2020, eq. 3): at each checkpoint k, the query
 * gradients once (into gq, Q x P), then each training gradient streamed,
 * adding lr_k g_q^T g_m to the scores and lr_k |g_m|^2 to the
 * self-influence.  The layers excluded for the model are excluded here. */
static cs_status tracin_accumulate(const cs_graph *g, const cs_dataset *train, const cs_dataset *query,
                                   const cs_influence_opts *o, cs_influence_result *res, double *gq, double *gm,
                                   cs_err *err)
{
    int64_t P = g->n_param_scalars, N = res->n_train, Q = res->n_query;
    cs_status st = CS_OK;
    for (int k = 0; k < o->n_checkpoints && !st; k++) {
        const cs_graph *ck = o->checkpoints[k];
        double lr = o->checkpoint_lr[k], loss;
        cs_objective qobj, tobj;
        memset(&qobj, 0, sizeof qobj);
        memset(&tobj, 0, sizeof tobj);
        st = cs_objective_init(&qobj, ck, query, o->norm, o->loss, 1, CS_AD_GRAD, err);
        if (!st)
            st = cs_objective_init(&tobj, ck, train, o->norm, o->loss, 1, CS_AD_GRAD, err);
        for (int64_t q = 0; q < Q && !st; q++)
            st = example_gradient(&qobj, res->excluded, q, &loss, gq + q * P, err);
        for (int64_t m = 0; m < N && !st; m++) {
            if (o->cancel && *o->cancel) {
                st = cs_fail(err, CS_ERR_RUNTIME, "cancelled");
                break;
            }
            if ((st = example_gradient(&tobj, res->excluded, m, &loss, gm, err)))
                break;
            for (int64_t q = 0; q < Q; q++)
                res->tracin[q * N + m] += lr * cblas_ddot((int)P, gq + q * P, 1, gm, 1);
            res->tracin_self[m] += lr * cblas_ddot((int)P, gm, 1, gm, 1);
        }
        cs_objective_free(&qobj);
        cs_objective_free(&tobj);
    }
    return st;
}

cs_status cs_influence_compute(const cs_graph *g, const cs_dataset *train, const cs_dataset *query,
                               const cs_influence_opts *o, cs_influence_result *res, cs_err *err)
{
    memset(res, 0, sizeof *res);
    const cs_precond_def *def = cs_precond_find(o->precond ? o->precond : "ekfac");
    if (!def || !def->reads_curvature)
        return cs_fail(err, CS_ERR_USAGE, "influence needs a curvature preconditioner, got '%s' (%s)",
                       o->precond ? o->precond : "", cs_precond_names());
    if (!train->has_labels || !query->has_labels)
        return cs_fail(err, CS_ERR_USAGE, "influence needs labels for the training and the query data");
    if (!o->methods)
        return cs_fail(err, CS_ERR_USAGE, "influence needs at least one method");
    int64_t P = g->n_param_scalars, N = train->n, Q = query->n;
    int L = g->n_layers;
    if (P == 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "the model has no trainable parameters");
    if (N < 1 || Q < 1)
        return cs_fail(err, CS_ERR_USAGE, "influence needs at least one training and one query example");
    bool tracin = o->methods & CS_INF_TRACIN;
    if (tracin && (o->n_checkpoints < 1 || !o->checkpoints || !o->checkpoint_lr))
        return cs_fail(err, CS_ERR_USAGE, "tracin influence needs at least one checkpoint");
    for (int k = 0; tracin && k < o->n_checkpoints; k++) {
        cs_status cst = check_checkpoint(g, o->checkpoints[k], k, err);
        if (cst)
            return cst;
    }
    res->n_train = N, res->n_query = Q, res->n_layers = L;
    bool ek = o->methods & CS_INF_EKFAC;
    double *pq = NULL, *gq = NULL, *gm = NULL, *qnorm = NULL, *dir = NULL;
    void *pstate = NULL;
    cs_objective tobj, qobj;
    memset(&tobj, 0, sizeof tobj);
    memset(&qobj, 0, sizeof qobj);
    cs_status st = CS_OK;
    if (!(res->excluded = calloc((size_t)L + 1, sizeof(bool))) ||
        !(res->why = calloc((size_t)L + 1, sizeof(char *))))
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for the influence layer table");
    if (!st && ek)
        st = alloc_doubles(&res->ekfac, N * Q, err, "the EK-FAC influence scores");
    if (!st && ek)
        st = alloc_doubles(&res->self, N, err, "the self-influence scores");
    if (!st && (o->methods & CS_INF_DOT))
        st = alloc_doubles(&res->dot, N * Q, err, "the gradient dot products");
    if (!st && (o->methods & CS_INF_COSINE))
        st = alloc_doubles(&res->cosine, N * Q, err, "the gradient cosines");
    if (!st && tracin)
        st = alloc_doubles(&res->tracin, N * Q, err, "the TracIn scores");
    if (!st && tracin)
        st = alloc_doubles(&res->tracin_self, N, err, "the TracIn self-influence scores");
    if (!st)
        st = alloc_doubles(&res->train_loss, N, err, "the training losses");
    if (!st)
        st = alloc_doubles(&res->query_loss, Q, err, "the query losses");
    if (!st)
        st = alloc_doubles(&gq, Q * P, err, "the query gradients");
    if (!st && ek)
        st = alloc_doubles(&pq, Q * P, err, "the preconditioned query gradients");
    if (!st)
        st = alloc_doubles(&gm, P, err, "a training gradient");
    if (!st)
        st = alloc_doubles(&dir, P, err, "a preconditioned training gradient");
    if (!st)
        st = alloc_doubles(&qnorm, Q, err, "the query gradient norms");

    /* The curvature of the mean training loss, fitted once. */
    cs_precond_opts po;
    cs_precond_opts_init(&po);
    po.damping = o->damping;
    po.ema = 0;
    po.max_full = o->max_full;
    po.batch = o->batch;
    po.loss = o->loss;
    po.norm = o->norm;
    bool *frozen = NULL, *fallback = res->excluded;
    if (!st && !(frozen = calloc((size_t)L + 1, sizeof(bool))))
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for the influence layer table");
    cs_precond_ctx ctx = {.g = g, .o = &po, .curv = o->curv, .seed = o->seed, .frozen = frozen,
                          .fallback = fallback, .why = res->why};
    if (!st && ek && def->ops->create)
        st = def->ops->create(&ctx, &pstate, err);
    if (!st && ek && def->ops->refresh)
        st = def->ops->refresh(pstate, &ctx, train, err);
    for (int l = 0; l < L && !st; l++)
        if (!res->excluded[l])
            res->params_used += g->layers[l].numel;

    /* Per-example gradients: objectives of one sample per batch. */
    if (!st)
        st = cs_objective_init(&qobj, g, query, o->norm, o->loss, 1, CS_AD_GRAD, err);
    if (!st)
        st = cs_objective_init(&tobj, g, train, o->norm, o->loss, 1, CS_AD_GRAD, err);
    for (int64_t q = 0; q < Q && !st; q++) {
        double *v = gq + q * P;
        if ((st = example_gradient(&qobj, res->excluded, q, &res->query_loss[q], v, err)))
            break;
        qnorm[q] = cblas_dnrm2((int)P, v, 1);
        if (ek) {
            if ((st = def->ops->apply(pstate, &ctx, v, pq + q * P, err)))
                break;
            mask_excluded(g, res->excluded, pq + q * P);
        }
    }
    for (int64_t m = 0; m < N && !st; m++) {
        if (o->cancel && *o->cancel) {
            st = cs_fail(err, CS_ERR_RUNTIME, "cancelled");
            break;
        }
        if ((st = example_gradient(&tobj, res->excluded, m, &res->train_loss[m], gm, err)))
            break;
        double mnorm = cblas_dnrm2((int)P, gm, 1);
        for (int64_t q = 0; q < Q; q++) {
            double d = cblas_ddot((int)P, gq + q * P, 1, gm, 1);
            if (res->dot)
                res->dot[q * N + m] = d;
            if (res->cosine)
                res->cosine[q * N + m] = qnorm[q] > 0 && mnorm > 0 ? d / (qnorm[q] * mnorm) : 0;
            if (ek)
                res->ekfac[q * N + m] = cblas_ddot((int)P, pq + q * P, 1, gm, 1);
        }
        if (ek) {
            if ((st = def->ops->apply(pstate, &ctx, gm, dir, err)))
                break;
            mask_excluded(g, res->excluded, dir);
            res->self[m] = cblas_ddot((int)P, gm, 1, dir, 1);
        }
    }
    cs_objective_free(&qobj);
    cs_objective_free(&tobj);
    if (!st && tracin)
        st = tracin_accumulate(g, train, query, o, res, gq, gm, err);
    if (pstate)
        def->ops->destroy(pstate);
    free(pq), free(gq), free(gm), free(qnorm), free(dir), free(frozen);
    if (st)
        cs_influence_result_free(res);
    return st;
}

double cs_pearson(const double *x, const double *y, int64_t n)
{
    if (n < 2)
        return NAN;
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int64_t i = 0; i < n; i++)
        mx += x[i], my += y[i];
    mx /= (double)n, my /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        double a = x[i] - mx, b = y[i] - my;
        sxy += a * b, sxx += a * a, syy += b * b;
    }
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}

typedef struct ranked {
    double v;
    int64_t i;
} ranked;

static int by_value(const void *a, const void *b)
{
    double u = ((const ranked *)a)->v, v = ((const ranked *)b)->v;
    return u < v ? -1 : u > v;
}

/* r[i] = the rank of x[i] (1-based), ties at their mean rank; work holds n. */
static void ranks(const double *x, int64_t n, ranked *work, double *r)
{
    for (int64_t i = 0; i < n; i++)
        work[i] = (ranked){x[i], i};
    qsort(work, (size_t)n, sizeof *work, by_value);
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j + 1 < n && work[j + 1].v == work[i].v)
            j++;
        for (int64_t k = i; k <= j; k++)
            r[work[k].i] = 0.5 * (double)(i + j) + 1;
        i = j + 1;
    }
}

cs_status cs_spearman(const double *x, const double *y, int64_t n, double *rho, cs_err *err)
{
    double *rx = malloc(sizeof(double) * (size_t)(2 * n + 1));
    ranked *idx = malloc(sizeof(ranked) * (size_t)(n + 1));
    if (!rx || !idx) {
        free(rx), free(idx);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory ranking %lld values", (long long)n);
    }
    ranks(x, n, idx, rx);
    ranks(y, n, idx, rx + n);
    *rho = cs_pearson(rx, rx + n, n);
    free(rx), free(idx);
    return CS_OK;
}
