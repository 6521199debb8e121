#include "curv/importance.h"
#include "interp/layer_kind.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "spectral/dense.h"
#include "tensor/blas.h"

void cs_importance_free(cs_importance *imp)
{
    free(imp->value), free(imp->grad), free(imp->diag_ggn), free(imp->diag_fisher_emp);
    free(imp->diag_hessian), free(imp->obd), free(imp->obs), free(imp->taylor);
    free(imp->layer_unit), free(imp->damping), free(imp->obs_repr);
    memset(imp, 0, sizeof *imp);
}

/* Copy the diagonal of curvature c for every layer into out (NaN where the
 * run did not compute it); returns whether any layer had one. */
static bool gather_diag(const cs_graph *g, const cs_curv_report *rep, cs_curv_kind c, double *out)
{
    bool any = false;
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        int64_t off = g->params[L->first_param].offset;
        const cs_curv_result *r = cs_curv_report_find(rep, c, CS_REPR_DIAG, l);
        for (int64_t i = 0; i < L->numel; i++)
            out[off + i] = r && r->matrix ? r->matrix[i] : NAN;
        any = any || (r && r->matrix);
    }
    return any;
}

/* diag((M + lambda I)^-1) of a symmetric positive semi-definite block by
 * Cholesky (dpotrf / dpotri). */
static cs_status full_inverse_diag(const double *M, int64_t W, double lambda, double *out, cs_err *err)
{
    double *A = malloc(sizeof(double) * (size_t)(W * W) + 1);
    if (!A)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    memcpy(A, M, sizeof(double) * (size_t)(W * W));
    for (int64_t i = 0; i < W; i++)
        A[i * W + i] += lambda;
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)W, A, (lapack_int)W);
    if (!info)
        info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', (lapack_int)W, A, (lapack_int)W);
    if (!info)
        for (int64_t i = 0; i < W; i++)
            out[i] = A[i * W + i];
    free(A);
    if (info)
        return cs_fail(err, CS_ERR_RUNTIME, "damped block is not positive definite (LAPACK info %d)", (int)info);
    return CS_OK;
}

/* diag((G (x) A + lambda I)^-1) per group from the factors' eigenvectors:
 * entry (i, j) = sum_pq Q_G[i,p]^2 Q_A[j,q]^2 / (g_p a_q + lambda). */
static cs_status kfac_inverse_diag(const cs_curv_result *r, double lambda, double *out, cs_err *err)
{
    int64_t dA = r->kfac_dA, dG = r->kfac_dG, G = r->kfac_groups;
    double *qa = malloc(sizeof(double) * (size_t)(dA * dA) + 1), *qg = malloc(sizeof(double) * (size_t)(dG * dG) + 1);
    double *wa = malloc(sizeof(double) * (size_t)dA + 1), *wg = malloc(sizeof(double) * (size_t)dG + 1);
    double *K = malloc(sizeof(double) * (size_t)(dG * dA) + 1), *T = malloc(sizeof(double) * (size_t)(dG * dA) + 1);
    double *D = malloc(sizeof(double) * (size_t)(G * dG * dA) + 1);
    cs_status st = qa && qg && wa && wg && K && T && D ? CS_OK : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    for (int64_t grp = 0; grp < G && !st; grp++) {
        if (cs_sym_eigvecs(r->kfac_A + grp * dA * dA, dA, qa, wa, NULL) ||
            cs_sym_eigvecs(r->kfac_G + grp * dG * dG, dG, qg, wg, NULL)) {
            st = cs_fail(err, CS_ERR_RUNTIME, "eigen-solve of a K-FAC factor failed");
            break;
        }
        for (int64_t i = 0; i < dA * dA; i++)
            qa[i] *= qa[i];
        for (int64_t i = 0; i < dG * dG; i++)
            qg[i] *= qg[i];
        for (int64_t p = 0; p < dG; p++)
            for (int64_t q = 0; q < dA; q++)
                K[p * dA + q] = 1.0 / (fmax(wg[p], 0) * fmax(wa[q], 0) + lambda);
        /* T = (Q_G o Q_G) K, D = T (Q_A o Q_A)^T */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)dG, (int)dA, (int)dG, 1.0, qg, (int)dG, K,
                    (int)dA, 0.0, T, (int)dA);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)dG, (int)dA, (int)dA, 1.0, T, (int)dA, qa,
                    (int)dA, 0.0, D + grp * dG * dA, (int)dA);
    }
    for (int64_t p = 0; !st && p < r->dim; p++) {
        const int64_t *k = r->kfac_index + 3 * p;
        out[p] = D[(k[0] * dG + k[1]) * dA + k[2]];
    }
    free(qa), free(qg), free(wa), free(wg), free(K), free(T), free(D);
    return st;
}

cs_status cs_importance_compute(const cs_graph *g, const cs_curv_report *rep, const double *grad,
                                cs_curv_kind curv, double rel_damping, cs_importance *out,
                                cs_err *err)
{
    memset(out, 0, sizeof *out);
    int64_t P = g->n_param_scalars;
    out->n = P;
    size_t bytes = sizeof(double) * (size_t)P + 1;
    out->value = malloc(bytes);
    out->diag_ggn = malloc(bytes);
    out->diag_fisher_emp = malloc(bytes);
    out->diag_hessian = malloc(bytes);
    out->obd = malloc(bytes);
    out->obs = malloc(bytes);
    out->layer_unit = malloc(sizeof(int) * (size_t)P + 1);
    out->damping = calloc((size_t)g->n_layers + 1, sizeof(double));
    out->obs_repr = calloc((size_t)g->n_layers + 1, sizeof(char *));
    if (grad) {
        out->grad = malloc(bytes);
        out->taylor = malloc(bytes);
    }
    if (!out->value || !out->diag_ggn || !out->diag_fisher_emp || !out->diag_hessian || !out->obd ||
        !out->obs || !out->layer_unit || !out->damping || !out->obs_repr || (grad && (!out->grad || !out->taylor))) {
        cs_importance_free(out);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for importance scores");
    }
    for (int q = 0; q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        cs_convert(out->value + g->params[q].offset, CS_DT_DOUBLE, t->data, t->dtype, cs_tensor_numel(t));
    }
    /* fisher shares ggn's diagonal when only one of the two was asked for */
    if (!gather_diag(g, rep, CS_CURV_GGN, out->diag_ggn))
        gather_diag(g, rep, CS_CURV_FISHER, out->diag_ggn);
    gather_diag(g, rep, CS_CURV_FISHER_EMP, out->diag_fisher_emp);
    gather_diag(g, rep, CS_CURV_HESSIAN, out->diag_hessian);
    double *chosen = malloc(bytes);
    if (!chosen) {
        cs_importance_free(out);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    }
    gather_diag(g, rep, curv, chosen);
    cs_status st = CS_OK;
    for (int64_t i = 0; i < P; i++) {
        double w = out->value[i];
        out->obd[i] = 0.5 * chosen[i] * w * w;
        out->obs[i] = NAN;
        out->layer_unit[i] = -1;
        if (grad) {
            out->grad[i] = grad[i];
            out->taylor[i] = fabs(grad[i] * w);
        }
    }
    free(chosen);
    for (int l = 0; l < g->n_layers && !st; l++) {
        const cs_layer *L = &g->layers[l];
        int64_t off = g->params[L->first_param].offset, W = L->numel;
        const cs_curv_result *rf = cs_curv_report_find(rep, curv, CS_REPR_FULL, l);
        const cs_curv_result *rk = cs_curv_report_find(rep, curv, CS_REPR_KFAC, l);
        const cs_curv_result *src = rf && rf->matrix ? rf : rk && rk->kfac_A ? rk : NULL;
        if (rk && rk->kfac_index) {
            for (int64_t p = 0; p < W; p++)
                out->layer_unit[off + p] = (int)(rk->kfac_index[3 * p] * rk->kfac_dG + rk->kfac_index[3 * p + 1]);
        } else {
            /* Kinds without a Kronecker form take their units from the
             * layer-kind table's unit-wise layout (a norm's (scale_c, bias_c)). */
            cs_layer_layout lay;
            st = cs_layer_layout_make(g, l, &lay, err);
            for (int64_t u = 0; !st && lay.kfac == CS_KFAC_NONE && lay.unit_idx && u < lay.n_units; u++)
                for (int64_t x = 0; x < lay.unit_d; x++)
                    if (lay.unit_idx[u * lay.unit_d + x] >= 0)
                        out->layer_unit[off + lay.unit_idx[u * lay.unit_d + x]] = (int)u;
            cs_layer_layout_free(&lay);
            if (st)
                break;
        }
        if (!src)
            continue;
        double lambda = rel_damping * src->sum.trace / (double)W;
        if (!(lambda > 0))
            lambda = rel_damping;
        double *inv = malloc(sizeof(double) * (size_t)W + 1);
        if (!inv) {
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
            break;
        }
        st = src == rf ? full_inverse_diag(rf->matrix, W, lambda, inv, err) : kfac_inverse_diag(rk, lambda, inv, err);
        for (int64_t p = 0; p < W && !st; p++) {
            double w = out->value[off + p];
            out->obs[off + p] = w * w / (2.0 * inv[p]);
        }
        free(inv);
        if (st)
            cs_err_prefix(err, "obs of layer '%s'", L->name);
        out->damping[l] = lambda;
        out->obs_repr[l] = src == rf ? "full" : "kfac";
    }
    if (st)
        cs_importance_free(out);
    return st;
}
