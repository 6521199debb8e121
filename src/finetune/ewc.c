#include "finetune/ewc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/blas.h"

cs_status cs_ewc_alloc(cs_ewc *e, int64_t n, cs_err *err)
{
    memset(e, 0, sizeof *e);
    e->n = n;
    e->lambda = 1;
    e->fisher = calloc((size_t)n + 1, sizeof(double));
    e->anchor = calloc((size_t)n + 1, sizeof(double));
    if (!e->fisher || !e->anchor) {
        cs_ewc_free(e);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the EWC penalty of %lld parameters", (long long)n);
    }
    return CS_OK;
}

static void kfac_free(cs_ewc_kfac *k)
{
    free(k->A), free(k->G), free(k->index), free(k->work);
}

void cs_ewc_free(cs_ewc *e)
{
    for (int l = 0; l < e->n_kfac; l++)
        kfac_free(&e->kfac[l]);
    free(e->kfac);
    free(e->fisher);
    free(e->anchor);
    e->fisher = e->anchor = NULL;
    e->kfac = NULL;
    e->n_kfac = 0;
    e->n = 0;
}

cs_status cs_ewc_add_kfac(cs_ewc *e, const cs_curv_result *r, int64_t offset, cs_err *err)
{
    if (!r->kfac_A || !r->kfac_G || !r->kfac_index || offset < 0 || offset + r->dim > e->n)
        return cs_fail(err, CS_ERR_RUNTIME, "EWC: a K-FAC result without its factors or outside the parameters");
    cs_ewc_kfac *grown = realloc(e->kfac, sizeof *grown * (size_t)(e->n_kfac + 1));
    if (!grown)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the EWC K-FAC layers");
    e->kfac = grown;
    cs_ewc_kfac k = {.offset = offset, .numel = r->dim, .groups = r->kfac_groups, .dA = r->kfac_dA,
                     .dG = r->kfac_dG};
    size_t nA = (size_t)(k.groups * k.dA * k.dA), nG = (size_t)(k.groups * k.dG * k.dG);
    k.A = malloc(sizeof(double) * nA + 1);
    k.G = malloc(sizeof(double) * nG + 1);
    k.index = malloc(sizeof(int64_t) * 3 * (size_t)k.numel + 1);
    k.work = malloc(sizeof(double) * 3 * (size_t)(k.dG * k.dA) + 1);
    if (!k.A || !k.G || !k.index || !k.work) {
        kfac_free(&k);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the EWC K-FAC factors");
    }
    memcpy(k.A, r->kfac_A, sizeof(double) * nA);
    memcpy(k.G, r->kfac_G, sizeof(double) * nG);
    memcpy(k.index, r->kfac_index, sizeof(int64_t) * 3 * (size_t)k.numel);
    for (int64_t p = 0; p < k.numel; p++)
        e->fisher[offset + p] = 0; /* the Kronecker block holds this layer now */
    e->kfac[e->n_kfac++] = k;
    return CS_OK;
}

cs_status cs_ewc_kfac_from_data(cs_ewc *e, const cs_graph *g, const cs_dataset *ds, cs_curv_kind curv,
                                int64_t batch, cs_loss_kind loss, const cs_norm *norm, int *n_kfac,
                                cs_err *err)
{
    *n_kfac = 0;
    /* The factors are the curvature at theta*: the weights must be it. */
    for (int q = 0; q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        for (int64_t i = 0; i < cs_tensor_numel(t); i++) {
            double w;
            cs_convert(&w, CS_DT_DOUBLE, (const char *)t->data + i * (int64_t)cs_dtype_size(t->dtype), t->dtype, 1);
            double a = e->anchor[g->params[q].offset + i];
            if (fabs(w - a) > 1e-6 * (1 + fabs(a)))
                return cs_fail(err, CS_ERR_USAGE,
                               "--ewc-repr kfac: the model's weights are not the analyzed ones (%s[%lld] is %g, "
                               "%g there): the factors are computed at theta*, so tune the analyzed model",
                               g->values[g->params[q].value].name, (long long)i, w, a);
        }
    }
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = 1u << curv;
    o.reprs = 1u << CS_REPR_KFAC;
    o.stats_only = true;
    o.batch = batch;
    o.loss = loss;
    o.norm = norm;
    cs_curv_report rep;
    cs_status st = cs_curvature_compute(g, ds, &o, &rep, err);
    if (st)
        return st;
    for (int l = 0; l < g->n_layers && !st; l++) {
        const cs_curv_result *r = cs_curv_report_find(&rep, curv, CS_REPR_KFAC, l);
        if (r && r->kfac_A && !(st = cs_ewc_add_kfac(e, r, g->params[g->layers[l].first_param].offset, err)))
            (*n_kfac)++;
    }
    cs_curv_report_free(&rep);
    return st;
}

/* Ritter et al. 2018: (lambda / 2) tr(dW^T G dW A) per group, gradient
 * lambda G dW A (A and G symmetric). */
static double kfac_penalty(const cs_ewc *e, const cs_ewc_kfac *k, const double *theta, double *grad)
{
    int64_t dA = k->dA, dG = k->dG;
    double *dW = k->work, *GdW = dW + dG * dA, *GdWA = GdW + dG * dA, sum = 0;
    for (int64_t grp = 0; grp < k->groups; grp++) {
        memset(dW, 0, sizeof(double) * (size_t)(dG * dA));
        for (int64_t p = 0; p < k->numel; p++) {
            const int64_t *ix = k->index + 3 * p;
            if (ix[0] == grp)
                dW[ix[1] * dA + ix[2]] = theta[k->offset + p] - e->anchor[k->offset + p];
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)dG, (int)dA, (int)dG, 1.0,
                    k->G + grp * dG * dG, (int)dG, dW, (int)dA, 0.0, GdW, (int)dA);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)dG, (int)dA, (int)dA, 1.0, GdW, (int)dA,
                    k->A + grp * dA * dA, (int)dA, 0.0, GdWA, (int)dA);
        /* tr(dW^T (G dW A)) = sum_ij dW_ij (G dW A)_ij */
        for (int64_t i = 0; i < dG * dA; i++)
            sum += dW[i] * GdWA[i];
        if (grad)
            for (int64_t p = 0; p < k->numel; p++) {
                const int64_t *ix = k->index + 3 * p;
                if (ix[0] == grp)
                    grad[k->offset + p] += e->lambda * GdWA[ix[1] * dA + ix[2]];
            }
    }
    /* A and G are positive semi-definite, so the exact form is >= 0; rounding
     * near their null spaces may give -epsilon */
    return 0.5 * e->lambda * fmax(sum, 0);
}

double cs_ewc_penalty(const cs_ewc *e, const double *theta, double *grad, int64_t i0, int64_t i1)
{
    /* Kirkpatrick et al. 2017, eq. 3: (lambda / 2) sum_i F_i (theta_i - theta*_i)^2 */
    double sum = 0;
    for (int64_t i = i0; i < i1; i++) {
        double d = theta[i] - e->anchor[i], fd = e->fisher[i] * d;
        sum += fd * d;
        if (grad)
            grad[i] += e->lambda * fd;
    }
    double total = 0.5 * e->lambda * sum;
    for (int l = 0; l < e->n_kfac; l++)
        if (e->kfac[l].offset >= i0 && e->kfac[l].offset + e->kfac[l].numel <= i1)
            total += kfac_penalty(e, &e->kfac[l], theta, grad);
    return total;
}
