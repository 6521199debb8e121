#include "curv/steps.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objective/objective.h"
#include "spectral/dense.h"
#include "tensor/blas.h"

/* The one table of preconditioners: name and the curvature results it
 * reads (curvature mask, representation mask). */
static const struct {
    const char *name;
    unsigned curvatures, reprs;
} preconds[] = {
    [CS_PRE_SGD] = {"sgd", 0, 0},
    [CS_PRE_DIAG] = {"diag", 1u << CS_CURV_GGN, 1u << CS_REPR_DIAG},
    [CS_PRE_KFAC] = {"kfac", 1u << CS_CURV_GGN, 1u << CS_REPR_KFAC},
    [CS_PRE_UNIT] = {"unit", 1u << CS_CURV_GGN, 1u << CS_REPR_FULL | 1u << CS_REPR_KFAC},
    [CS_PRE_FULL] = {"full", 1u << CS_CURV_GGN, 1u << CS_REPR_FULL},
    [CS_PRE_NEWTON] = {"newton", 1u << CS_CURV_HESSIAN, 1u << CS_REPR_FULL},
    [CS_PRE_SHAMPOO] = {"shampoo", 0, 0},
};
static_assert(sizeof preconds / sizeof preconds[0] == CS_PRE_COUNT, "register every preconditioner");

const char *cs_precond_name(cs_precond_kind k)
{
    return (unsigned)k < CS_PRE_COUNT ? preconds[k].name : "?";
}

cs_status cs_precond_parse_list(const char *text, unsigned *mask, cs_err *err)
{
    *mask = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int found = -1;
        for (int k = 0; k < CS_PRE_COUNT; k++)
            if (strlen(preconds[k].name) == len && strncmp(preconds[k].name, p, len) == 0)
                found = k;
        if (found < 0)
            return cs_fail(err, CS_ERR_USAGE,
                           "unknown preconditioner '%.*s' (expected sgd, diag, kfac, unit, full, newton, shampoo)",
                           (int)len, p);
        *mask |= 1u << found;
        p = end ? end + 1 : p + len;
    }
    if (!*mask)
        return cs_fail(err, CS_ERR_USAGE, "empty preconditioner list");
    return CS_OK;
}

void cs_precond_needs(unsigned mask, unsigned *curvatures, unsigned *reprs, bool *shampoo)
{
    *shampoo = *shampoo || (mask >> CS_PRE_SHAMPOO & 1);
    for (int k = 0; k < CS_PRE_COUNT; k++)
        if (mask >> k & 1) {
            *curvatures |= preconds[k].curvatures;
            *reprs |= preconds[k].reprs;
        }
}

/* The Fisher's result: 'fisher' when the run has it, else 'ggn' (the same
 * matrix for ce and mse). */
static const cs_curv_result *fisher_result(const cs_curv_report *rep, cs_repr_kind r, int l)
{
    const cs_curv_result *x = cs_curv_report_find(rep, CS_CURV_FISHER, r, l);
    return x ? x : cs_curv_report_find(rep, CS_CURV_GGN, r, l);
}

/* x = -f(M + lambda I)^+ g for a symmetric W x W block, through its
 * eigendecomposition M = Q diag(w) Q^T; with absval, |w| replaces w.
 * Directions whose damped eigenvalue vanishes are left out (pseudo-inverse). */
static cs_status eig_solve(const double *M, int64_t W, double lambda, bool absval, const double *g,
                           double *x, cs_err *err)
{
    double *Q = malloc(sizeof(double) * (size_t)(W * W) + 1), *w = malloc(sizeof(double) * (size_t)W + 1);
    double *c = malloc(sizeof(double) * (size_t)W + 1);
    if (!Q || !w || !c) {
        free(Q), free(w), free(c);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    }
    double wmax;
    lapack_int info = cs_sym_eigvecs(M, W, Q, w, &wmax);
    if (!info) {
        cblas_dgemv(CblasRowMajor, CblasTrans, (int)W, (int)W, 1.0, Q, (int)W, g, 1, 0.0, c, 1); /* Q^T g */
        for (int64_t i = 0; i < W; i++) {
            double d = (absval ? fabs(w[i]) : w[i]) + lambda;
            c[i] = fabs(d) > 1e-12 * (wmax + lambda) ? -c[i] / d : 0.0;
        }
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)W, (int)W, 1.0, Q, (int)W, c, 1, 0.0, x, 1);
    }
    free(Q), free(w), free(c);
    if (info)
        return cs_fail(err, CS_ERR_RUNTIME, "eigen-solve of a layer block failed (LAPACK info %d)", (int)info);
    return CS_OK;
}

/* K-FAC: x = -(G (x) A + lambda I)^+ g per group, with g arranged as the
 * [dG, dA] matrix V of [W | b] (DESIGN.md's orientation):
 * X = Q_G [(Q_G^T V Q_A) ./ (g_p a_q + lambda)] Q_A^T. */
static cs_status kfac_solve(const cs_curv_result *r, double lambda, const double *g, double *x, cs_err *err)
{
    int64_t dA = r->kfac_dA, dG = r->kfac_dG;
    size_t na = (size_t)(dA * dA), ng = (size_t)(dG * dG), nv = (size_t)(dG * dA);
    double *qa = malloc(sizeof(double) * na + 1), *qg = malloc(sizeof(double) * ng + 1);
    double *wa = malloc(sizeof(double) * (size_t)dA + 1), *wg = malloc(sizeof(double) * (size_t)dG + 1);
    double *V = malloc(sizeof(double) * nv * (size_t)r->kfac_groups + 1), *T = malloc(sizeof(double) * nv + 1);
    double *U = malloc(sizeof(double) * nv + 1);
    cs_status st = qa && qg && wa && wg && V && T && U ? CS_OK : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    if (!st) {
        memset(V, 0, sizeof(double) * nv * (size_t)r->kfac_groups);
        for (int64_t p = 0; p < r->dim; p++) {
            const int64_t *k = r->kfac_index + 3 * p;
            V[k[0] * nv + k[1] * dA + k[2]] = g[p];
        }
    }
    for (int64_t grp = 0; grp < r->kfac_groups && !st; grp++) {
        double amax, gmax;
        if (cs_sym_eigvecs(r->kfac_A + grp * (int64_t)na, dA, qa, wa, &amax) ||
            cs_sym_eigvecs(r->kfac_G + grp * (int64_t)ng, dG, qg, wg, &gmax)) {
            st = cs_fail(err, CS_ERR_RUNTIME, "eigen-solve of a K-FAC factor failed");
            break;
        }
        double *Vg = V + grp * (int64_t)nv, big = gmax * amax; /* max |g_p a_q| */
        /* T = Q_G^T V; U = T Q_A */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)dG, (int)dA, (int)dG, 1.0, qg, (int)dG, Vg,
                    (int)dA, 0.0, T, (int)dA);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)dG, (int)dA, (int)dA, 1.0, T, (int)dA, qa,
                    (int)dA, 0.0, U, (int)dA);
        for (int64_t p = 0; p < dG; p++)
            for (int64_t q = 0; q < dA; q++) {
                double d = wg[p] * wa[q] + lambda;
                U[p * dA + q] = fabs(d) > 1e-12 * (big + lambda) ? -U[p * dA + q] / d : 0.0;
            }
        /* X = Q_G U Q_A^T */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)dG, (int)dA, (int)dG, 1.0, qg, (int)dG, U,
                    (int)dA, 0.0, T, (int)dA);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)dG, (int)dA, (int)dA, 1.0, T, (int)dA, qa,
                    (int)dA, 0.0, Vg, (int)dA);
    }
    if (!st)
        for (int64_t p = 0; p < r->dim; p++) {
            const int64_t *k = r->kfac_index + 3 * p;
            x[p] = V[k[0] * nv + k[1] * dA + k[2]];
        }
    free(qa), free(qg), free(wa), free(wg), free(V), free(T), free(U);
    return st;
}

/* Unit-wise: each unit's sub-block of the full Fisher block, solved alone.
 * Units come from the K-FAC index (rows of [W | b]) or, for normalisation
 * layers, pair scale_c with bias_c. */
static cs_status unit_solve(const cs_graph *g, int l, const cs_curv_result *full, const cs_curv_result *kf,
                            double lambda, const double *grad, double *x, cs_err *err)
{
    const cs_layer *L = &g->layers[l];
    int64_t W = L->numel;
    int64_t *unit = malloc(sizeof(int64_t) * (size_t)W + 1), *idx = malloc(sizeof(int64_t) * (size_t)W + 1);
    double *M = malloc(sizeof(double) * (size_t)(W * W) + 1), *gs = malloc(sizeof(double) * (size_t)W + 1);
    double *xs = malloc(sizeof(double) * (size_t)W + 1);
    cs_status st = unit && idx && M && gs && xs ? CS_OK : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    int64_t n_units = 0;
    if (!st) {
        if (kf && kf->kfac_index) {
            for (int64_t p = 0; p < W; p++)
                unit[p] = kf->kfac_index[3 * p] * kf->kfac_dG + kf->kfac_index[3 * p + 1];
            n_units = kf->kfac_groups * kf->kfac_dG;
        } else {
            int64_t C = cs_tensor_numel(&g->values[g->params[L->first_param].value].init);
            for (int64_t p = 0; p < W; p++)
                unit[p] = p % C;
            n_units = C;
        }
    }
    for (int64_t u = 0; u < n_units && !st; u++) {
        int64_t m = 0;
        for (int64_t p = 0; p < W; p++)
            if (unit[p] == u)
                idx[m++] = p;
        for (int64_t a = 0; a < m; a++) {
            gs[a] = grad[idx[a]];
            for (int64_t b = 0; b < m; b++)
                M[a * m + b] = full->matrix[idx[a] * W + idx[b]];
        }
        if (m && !(st = eig_solve(M, m, lambda, false, gs, xs, err)))
            for (int64_t a = 0; a < m; a++)
                x[idx[a]] = xs[a];
    }
    free(unit), free(idx), free(M), free(gs), free(xs);
    return st;
}

/* (M + lambda I)^(-1/4) of a symmetric positive semi-definite n x n
 * matrix into out, by its eigendecomposition; directions whose damped
 * eigenvalue vanishes get 0 (pseudo-inverse root). */
static cs_status inv_fourth_root(const double *M, int64_t n, double lambda, double *out, cs_err *err)
{
    double *Q = malloc(sizeof(double) * (size_t)(n * n) + 1), *w = malloc(sizeof(double) * (size_t)n + 1);
    if (!Q || !w) {
        free(Q), free(w);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    }
    double wmax;
    lapack_int info = cs_sym_eigvecs(M, n, Q, w, &wmax);
    if (!info) {
        /* Q d^(-1/4) Q^T = (Q d^(-1/8)) (Q d^(-1/8))^T: scale Q's columns,
         * then one dsyrk for the upper triangle and a mirror. */
        for (int64_t i = 0; i < n; i++) {
            double d = w[i] + lambda;
            w[i] = d > 1e-12 * (wmax + lambda) ? pow(d, -0.125) : 0.0;
        }
        for (int64_t a = 0; a < n; a++)
            for (int64_t i = 0; i < n; i++)
                Q[a * n + i] *= w[i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, (int)n, 1.0, Q, (int)n, 0.0, out, (int)n);
        for (int64_t a = 0; a < n; a++)
            for (int64_t b = 0; b < a; b++)
                out[a * n + b] = out[b * n + a];
    }
    free(Q), free(w);
    if (info)
        return cs_fail(err, CS_ERR_RUNTIME, "eigen-solve of a Shampoo statistic failed (LAPACK info %d)", (int)info);
    return CS_OK;
}

/* Shampoo: X = -(L + lambda I)^-1/4 G (R + lambda I)^-1/4 per group. */
static cs_status shampoo_solve(const cs_shampoo_stats *x, double lambda, const double *g, double *out, cs_err *err)
{
    int64_t dG = x->dG, dA = x->dA, gsz = dG * dA;
    double *G = calloc((size_t)(x->groups * gsz) + 1, sizeof(double));
    double *Lr = malloc(sizeof(double) * (size_t)(dG * dG) + 1), *Rr = malloc(sizeof(double) * (size_t)(dA * dA) + 1);
    double *T = malloc(sizeof(double) * (size_t)gsz + 1);
    cs_status st = G && Lr && Rr && T ? CS_OK : cs_fail(err, CS_ERR_NOMEM, "out of memory");
    for (int64_t p = 0; !st && p < x->dim; p++) {
        const int64_t *k = x->index + 3 * p;
        G[k[0] * gsz + k[1] * dA + k[2]] = g[p];
    }
    for (int64_t grp = 0; grp < x->groups && !st; grp++) {
        if ((st = inv_fourth_root(x->L + grp * dG * dG, dG, lambda, Lr, err)) ||
            (st = inv_fourth_root(x->R + grp * dA * dA, dA, lambda, Rr, err)))
            break;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)dG, (int)dA, (int)dG, 1.0, Lr, (int)dG,
                    G + grp * gsz, (int)dA, 0.0, T, (int)dA);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)dG, (int)dA, (int)dA, -1.0, T, (int)dA, Rr,
                    (int)dA, 0.0, G + grp * gsz, (int)dA);
    }
    for (int64_t p = 0; !st && p < x->dim; p++) {
        const int64_t *k = x->index + 3 * p;
        out[p] = G[k[0] * gsz + k[1] * dA + k[2]];
    }
    free(G), free(Lr), free(Rr), free(T);
    return st;
}

cs_status cs_precond_step(const cs_graph *g, const cs_curv_report *rep, cs_precond_kind k,
                          double damping, const double *grad, double *step, bool *used_sgd,
                          cs_err *err)
{
    cs_status st = CS_OK;
    for (int l = 0; l < g->n_layers && !st; l++) {
        const cs_layer *L = &g->layers[l];
        int64_t off = g->params[L->first_param].offset, W = L->numel;
        const double *gl = grad + off;
        double *xl = step + off;
        bool done = false;
        const cs_curv_result *r;
        switch (k) {
        case CS_PRE_SGD:
            break;
        case CS_PRE_DIAG:
            if ((r = fisher_result(rep, CS_REPR_DIAG, l)) && r->matrix) {
                for (int64_t i = 0; i < W; i++)
                    xl[i] = r->matrix[i] + damping > 0 ? -gl[i] / (r->matrix[i] + damping) : 0.0;
                done = true;
            }
            break;
        case CS_PRE_KFAC:
            if ((r = fisher_result(rep, CS_REPR_KFAC, l)) && r->kfac_A)
                done = !(st = kfac_solve(r, damping, gl, xl, err));
            break;
        case CS_PRE_UNIT:
            if ((r = fisher_result(rep, CS_REPR_FULL, l)) && r->matrix)
                done = !(st = unit_solve(g, l, r, fisher_result(rep, CS_REPR_KFAC, l), damping, gl, xl, err));
            break;
        case CS_PRE_FULL:
            if ((r = fisher_result(rep, CS_REPR_FULL, l)) && r->matrix)
                done = !(st = eig_solve(r->matrix, W, damping, false, gl, xl, err));
            break;
        case CS_PRE_SHAMPOO:
            if (rep->shampoo && l < rep->n_shampoo && rep->shampoo[l].L)
                done = !(st = shampoo_solve(&rep->shampoo[l], damping, gl, xl, err));
            break;
        case CS_PRE_NEWTON:
            if ((r = cs_curv_report_find(rep, CS_CURV_HESSIAN, CS_REPR_FULL, l)) && r->matrix)
                done = !(st = eig_solve(r->matrix, W, damping, true, gl, xl, err));
            break;
        default:
            break;
        }
        if (!done)
            for (int64_t i = 0; i < W; i++)
                xl[i] = -gl[i];
        if (used_sgd)
            used_sgd[l] = !done && k != CS_PRE_SGD;
    }
    return st;
}

/* ---- diagnostics ---- */

/* theta = theta0 + alpha * d over the parameters [from, to) (flat indices). */
static void move_params(cs_graph *g, const double *theta0, const double *d, double alpha, int64_t from,
                        int64_t to)
{
    for (int q = 0; q < g->n_params; q++) {
        cs_tensor *t = &g->values[g->params[q].value].init;
        int64_t off = g->params[q].offset, n = cs_tensor_numel(t);
        for (int64_t i = 0; i < n; i++) {
            int64_t j = off + i;
            double v = theta0[j] + (j >= from && j < to ? alpha * d[j] : 0.0);
            if (t->dtype == CS_DT_DOUBLE)
                ((double *)t->data)[i] = v;
            else
                ((float *)t->data)[i] = (float)v;
        }
    }
}

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Step sizes of the line search: 2^-8 .. 2^2. */
#define LR_LO (-8)
#define LR_HI 2

static cs_status diagnose(cs_objective *obj, cs_graph *g, const double *theta0, const double *grad,
                          double L0, const double *step, int layer, double *hv, cs_step_result *res,
                          cs_err *err)
{
    int64_t P = g->n_param_scalars, from = 0, to = P;
    if (layer >= 0) {
        from = g->params[g->layers[layer].first_param].offset;
        to = from + g->layers[layer].numel;
    }
    /* The step restricted to [from, to), as a full vector for the product. */
    double *d = calloc((size_t)P + 1, sizeof(double));
    if (!d)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    memcpy(d + from, step + from, sizeof(double) * (size_t)(to - from));
    cs_status st = cs_objective_hvp(obj, d, layer, hv, err);
    double gg = dot(grad + from, grad + from, to - from), dd = dot(d + from, d + from, to - from);
    double gd = dot(grad + from, d + from, to - from);
    res->layer = layer;
    res->grad_norm = sqrt(gg);
    res->step_norm = sqrt(dd);
    res->cosine = gg > 0 && dd > 0 ? -gd / sqrt(gg * dd) : NAN;
    res->predicted = st ? NAN : gd + 0.5 * dot(d + from, hv + from, to - from);
    double L;
    res->best_lr = NAN;
    res->best_change = INFINITY;
    for (int e = LR_LO; e <= LR_HI && !st; e++) {
        double alpha = ldexp(1.0, e);
        move_params(g, theta0, d, alpha, from, to);
        st = cs_objective_gradient(obj, &L, NULL, err);
        if (!st && L - L0 < res->best_change) {
            res->best_change = L - L0;
            res->best_lr = alpha;
        }
        if (!st && e == 0)
            res->actual = L - L0;
    }
    move_params(g, theta0, d, 0.0, 0, P);
    res->rho = res->predicted != 0 ? res->actual / res->predicted : NAN;
    free(d);
    return st;
}

cs_status cs_step_diagnostics(cs_graph *g, const cs_dataset *ds, const cs_norm *norm,
                              cs_loss_kind loss, int64_t batch, const cs_curv_report *rep,
                              unsigned mask, const double *dampings, int n_dampings,
                              cs_step_report *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    int64_t P = g->n_param_scalars;
    cs_objective obj;
    cs_status st = cs_objective_init(&obj, g, ds, norm, loss, batch, CS_AD_HVP, err);
    if (st)
        return st;
    double *theta0 = malloc(sizeof(double) * (size_t)P + 1), *grad = malloc(sizeof(double) * (size_t)P + 1);
    double *step = malloc(sizeof(double) * (size_t)P + 1), *hv = malloc(sizeof(double) * (size_t)P + 1);
    bool *fallback = calloc((size_t)g->n_layers + 1, sizeof(bool));
    int cap = (g->n_layers + 1) * CS_PRE_COUNT * (n_dampings > 0 ? n_dampings : 1);
    out->res = calloc((size_t)cap + 1, sizeof *out->res);
    double L0 = 0;
    if (!theta0 || !grad || !step || !hv || !fallback || !out->res)
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for step diagnostics");
    for (int q = 0; !st && q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        cs_convert(theta0 + g->params[q].offset, CS_DT_DOUBLE, t->data, t->dtype, cs_tensor_numel(t));
    }
    if (!st)
        st = cs_objective_gradient(&obj, &L0, grad, err);
    for (int k = 0; k < CS_PRE_COUNT && !st; k++) {
        if (!(mask >> k & 1))
            continue;
        int nd = k == CS_PRE_SGD ? 1 : n_dampings; /* sgd ignores damping */
        for (int di = 0; di < nd && !st; di++) {
            double lambda = k == CS_PRE_SGD ? NAN : dampings[di];
            st = cs_precond_step(g, rep, (cs_precond_kind)k, k == CS_PRE_SGD ? 0.0 : lambda, grad, step, fallback, err);
            for (int l = 0; l < g->n_layers && !st && di == 0; l++)
                if (fallback[l] && out->n_notes < 32)
                    snprintf(out->notes[out->n_notes++], sizeof out->notes[0],
                             "%s: layer %s falls back to sgd (no block computed)", preconds[k].name,
                             g->layers[l].name);
            for (int l = -1; l < g->n_layers && !st; l++) {
                cs_step_result *r = &out->res[out->n++];
                r->precond = (cs_precond_kind)k;
                r->damping = lambda;
                st = diagnose(&obj, g, theta0, grad, L0, step, l, hv, r, err);
            }
        }
    }
    free(theta0), free(grad), free(step), free(hv), free(fallback);
    cs_objective_free(&obj);
    if (st)
        cs_step_report_free(out);
    return st;
}

void cs_step_report_free(cs_step_report *r)
{
    free(r->res);
    memset(r, 0, sizeof *r);
}
