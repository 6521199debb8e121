/* The Laplace posterior's precision from the engine's curvature, its log
 * marginal likelihood and the prior precision that maximises it
 * (bayes/laplace.h; doc/design.md §2.13). */
#include "bayes/laplace.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "curv/alloc.h"
#include "curv/engine.h"
#include "objective/objective.h"
#include "spectral/dense.h"
#include "tensor/blas.h"

void cs_laplace_opts_init(cs_laplace_opts *o)
{
    memset(o, 0, sizeof *o);
    o->curv = CS_CURV_GGN;
    o->repr = CS_REPR_KFAC;
    o->subset = CS_LA_ALL;
    o->prior = CS_LA_PRIOR_LAYER;
    o->prior_precision = 1.0;
    o->max_full = 4096;
    o->batch = 128;
    o->mc_samples = 1;
}

const char *cs_la_subset_name(cs_la_subset s)
{
    return s == CS_LA_LAST ? "last-layer" : "all";
}

const char *cs_la_prior_name(cs_la_prior p)
{
    return p == CS_LA_PRIOR_FIXED ? "fixed" : p == CS_LA_PRIOR_SCALAR ? "scalar" : "layer";
}

void cs_laplace_free(cs_laplace *la)
{
    for (int i = 0; la->layers && i < la->n_layers; i++) {
        cs_la_layer *L = &la->layers[i];
        free(L->h), free(L->QA), free(L->QG), free(L->lA), free(L->lG), free(L->kron);
    }
    free(la->layers), free(la->theta), free(la->H), free(la->chol);
    memset(la, 0, sizeof *la);
}

/* The engine's results into the layers: diag's entries, K-FAC's factors'
 * eigen-decompositions, the dense block of the posterior's parameters;
 * every one times N (mean curvature to the sum's). */
static cs_status take_curvature(cs_laplace *la, const cs_graph *g, const cs_curv_report *rep, cs_err *err)
{
    double N = (double)la->N;
    cs_status st = CS_OK;
    if (la->repr == CS_REPR_FULL) {
        int which = la->subset == CS_LA_ALL ? -1 : la->layers[0].layer;
        const cs_curv_result *r = cs_curv_report_find(rep, la->curv, CS_REPR_FULL, which);
        if (!r || !r->matrix || r->dim != la->D)
            return cs_fail(err, CS_ERR_UNSUPPORTED, "no full %s block of %s (its layers need per-sample gradients)",
                           cs_curv_name(la->curv), which < 0 ? "the network" : g->layers[which].name);
        if ((st = cs_curv_zalloc(&la->H, (size_t)(la->D * la->D), err, "the posterior's curvature")) ||
            (st = cs_curv_zalloc(&la->chol, (size_t)(la->D * la->D), err, "the posterior's Cholesky factor")))
            return st;
        for (int64_t i = 0; i < la->D * la->D; i++)
            la->H[i] = N * r->matrix[i];
        return CS_OK;
    }
    for (int i = 0; i < la->n_layers && !st; i++) {
        cs_la_layer *L = &la->layers[i];
        const char *name = g->layers[L->layer].name;
        const cs_curv_result *r = cs_curv_report_find(rep, la->curv, la->repr, L->layer);
        if (!r || (la->repr == CS_REPR_DIAG ? !r->matrix : !r->kfac_A))
            return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s' (%s) has no %s %s representation", name,
                           g->layers[L->layer].op_type, cs_curv_name(la->curv), cs_repr_name(la->repr));
        if (la->repr == CS_REPR_DIAG) {
            if ((st = cs_curv_zalloc(&L->h, (size_t)L->W, err, "the diagonal of layer '%s'", name)))
                return st;
            for (int64_t k = 0; k < L->W; k++)
                L->h[k] = N * r->matrix[k];
            continue;
        }
        /* K-FAC: the Kronecker space must be the layer's parameters one to
         * one (not so for a recurrent layer's two biases, §2.4) for P0 =
         * δI over it to be the prior. */
        L->groups = r->kfac_groups, L->dA = r->kfac_dA, L->dG = r->kfac_dG;
        if (L->groups * L->dA * L->dG != L->W)
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "layer '%s' (%s): its K-FAC space (%lld x %lld x %lld) is not its %lld parameters one to one; "
                           "use --repr diag",
                           name, g->layers[L->layer].op_type, (long long)L->groups, (long long)L->dG,
                           (long long)L->dA, (long long)L->W);
        int64_t gA = L->groups * L->dA, gG = L->groups * L->dG;
        if ((st = cs_curv_zalloc(&L->QA, (size_t)(gA * L->dA), err, "the K-FAC basis of layer '%s'", name)) ||
            (st = cs_curv_zalloc(&L->QG, (size_t)(gG * L->dG), err, "the K-FAC basis of layer '%s'", name)) ||
            (st = cs_curv_zalloc(&L->lA, (size_t)gA, err, "the K-FAC eigenvalues of layer '%s'", name)) ||
            (st = cs_curv_zalloc(&L->lG, (size_t)gG, err, "the K-FAC eigenvalues of layer '%s'", name)) ||
            (st = cs_curv_calloc(&L->kron, (size_t)(3 * L->W), err, "the K-FAC index of layer '%s'", name)))
            return st;
        memcpy(L->kron, r->kfac_index, sizeof(int64_t) * (size_t)(3 * L->W));
        for (int64_t q = 0; q < L->groups; q++) {
            if (cs_sym_eigvecs(r->kfac_A + q * L->dA * L->dA, L->dA, L->QA + q * L->dA * L->dA, L->lA + q * L->dA,
                               NULL) ||
                cs_sym_eigvecs(r->kfac_G + q * L->dG * L->dG, L->dG, L->QG + q * L->dG * L->dG, L->lG + q * L->dG,
                               NULL))
                return cs_fail(err, CS_ERR_RUNTIME, "eigen-decomposition of a K-FAC factor of layer '%s' failed",
                               name);
            /* N goes on G: N (G ⊗ A) has eigenvalues (N μ_i) λ_j */
            for (int64_t k = 0; k < L->dG; k++)
                L->lG[q * L->dG + k] *= N;
        }
    }
    return st;
}

/* Eigenvalues of a PSD matrix computed in floating point can come out
 * slightly negative; they are the rounding of zero. */
static double psd(double e)
{
    return e > 0 ? e : 0;
}

/* The sum curvature's eigenvalues of layer i (diag, kfac: W_i values) or,
 * for full, of the whole posterior (D values), into e. */
static cs_status block_eigenvalues(const cs_laplace *la, int i, double *e, cs_err *err)
{
    if (la->repr == CS_REPR_FULL) {
        double *tmp;
        cs_status st = cs_curv_zalloc(&tmp, (size_t)(la->D * la->D), err, "a copy of the posterior's curvature");
        if (st)
            return st;
        memcpy(tmp, la->H, sizeof(double) * (size_t)(la->D * la->D));
        st = cs_sym_eig(tmp, la->D, e, NULL, err);
        free(tmp);
        return st;
    }
    const cs_la_layer *L = &la->layers[i];
    if (la->repr == CS_REPR_DIAG) {
        memcpy(e, L->h, sizeof(double) * (size_t)L->W);
        return CS_OK;
    }
    int64_t k = 0;
    for (int64_t q = 0; q < L->groups; q++)
        for (int64_t a = 0; a < L->dG; a++)
            for (int64_t b = 0; b < L->dA; b++)
                e[k++] = L->lG[q * L->dG + a] * L->lA[q * L->dA + b];
    return CS_OK;
}

/* Upper Cholesky factor of H + diag(δ) into la->chol; log det into *logdet. */
static cs_status full_cholesky(cs_laplace *la, double *logdet, cs_err *err)
{
    int64_t D = la->D;
    memcpy(la->chol, la->H, sizeof(double) * (size_t)(D * D));
    for (int i = 0; i < la->n_layers; i++) {
        const cs_la_layer *L = &la->layers[i];
        for (int64_t k = 0; k < L->W; k++)
            la->chol[(L->start + k) * D + L->start + k] += L->prior;
    }
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)D, la->chol, (lapack_int)D);
    if (info != 0)
        return cs_fail(err, CS_ERR_RUNTIME, "Cholesky of the posterior precision (order %lld) failed (LAPACK info %d)",
                       (long long)D, (int)info);
    double s = 0;
    for (int64_t k = 0; k < D; k++)
        s += log(la->chol[k * D + k]);
    *logdet = 2 * s;
    for (int64_t r = 1; r < D; r++) /* dpotrf leaves the strict lower triangle as it was */
        memset(la->chol + r * D, 0, sizeof(double) * (size_t)r);
    return CS_OK;
}

cs_status cs_laplace_evidence(cs_laplace *la, cs_err *err)
{
    double prior_term = 0, logdet0 = 0, logdet = 0;
    for (int i = 0; i < la->n_layers; i++) {
        const cs_la_layer *L = &la->layers[i];
        prior_term -= 0.5 * L->prior * L->sq_norm;
        logdet0 += (double)L->W * log(L->prior);
        if (la->repr == CS_REPR_DIAG)
            for (int64_t k = 0; k < L->W; k++)
                logdet += log(psd(L->h[k]) + L->prior);
        else if (la->repr == CS_REPR_KFAC)
            /* log det (N G ⊗ A + δI) = Σ_ij log(N μ_i λ_j + δ), the
             * eigenvalues of a Kronecker product (Laplace Redux's KronDecomposed) */
            for (int64_t q = 0; q < L->groups; q++)
                for (int64_t a = 0; a < L->dG; a++)
                    for (int64_t b = 0; b < L->dA; b++)
                        logdet += log(psd(L->lG[q * L->dG + a] * L->lA[q * L->dA + b]) + L->prior);
    }
    if (la->repr == CS_REPR_FULL) {
        cs_status st = full_cholesky(la, &logdet, err);
        if (st)
            return st;
    }
    la->prior_term = prior_term;
    la->log_det_P0 = logdet0;
    la->log_det_P = logdet;
    la->log_marglik = la->log_lik + prior_term - 0.5 * logdet + 0.5 * logdet0;
    return CS_OK;
}

/* Bounds of the prior search: ln δ in [−25, 25] (δ from 1.4e-11 to 7e10). */
#define LA_LOG_LO (-25.0)
#define LA_LOG_HI 25.0

/* The δ maximising f(δ) = −½ δ s − ½ Σ_k log(e_k + δ) + ½ n log δ over
 * the n eigenvalues e_k of one separable block (s = |θ*|² of the block).
 * With t = log δ, 2 df/dt = Σ_k e_k / (e_k + δ) − δ s: the effective
 * number of parameters γ(δ) (MacKay 1992) falls with δ and δ s rises, so
 * f is concave in t and the root of its derivative is the one maximum.
 * Bisection on the derivative's sign in t finds it to rounding in ~60
 * steps, needs no step size and cannot overshoot, which gradient ascent on
 * log δ can; MacKay's fixed point δ = γ/s is the same condition but has no
 * convergence guarantee.  Clamped to the search bounds when the maximum
 * lies outside (s = 0: no finite maximiser). */
static double best_prior(const double *e, int64_t n, double s)
{
    double lo = LA_LOG_LO, hi = LA_LOG_HI;
    for (int it = 0; it < 200 && hi - lo > 1e-13; it++) {
        double t = 0.5 * (lo + hi), d = exp(t), gamma = 0;
        for (int64_t k = 0; k < n; k++)
            gamma += psd(e[k]) / (psd(e[k]) + d);
        if (gamma - d * s > 0)
            lo = t;
        else
            hi = t;
    }
    return exp(0.5 * (lo + hi));
}

/* 2 ∂f/∂ log δ_l = W_l − δ_l tr_l(P⁻¹) − δ_l s_l for every layer of the
 * full posterior at its priors (work: D × D). */
static cs_status full_gradient(cs_laplace *la, double *work, double *grad, cs_err *err)
{
    int64_t D = la->D;
    double logdet;
    cs_status st = full_cholesky(la, &logdet, err);
    if (st)
        return st;
    memcpy(work, la->chol, sizeof(double) * (size_t)(D * D));
    lapack_int info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', (lapack_int)D, work, (lapack_int)D);
    if (info != 0)
        return cs_fail(err, CS_ERR_RUNTIME, "inverse of the posterior precision failed (LAPACK info %d)", (int)info);
    for (int i = 0; i < la->n_layers; i++) {
        const cs_la_layer *L = &la->layers[i];
        double tr = 0;
        for (int64_t k = 0; k < L->W; k++)
            tr += work[(L->start + k) * D + L->start + k];
        grad[i] = (double)L->W - L->prior * tr - L->prior * L->sq_norm;
    }
    return CS_OK;
}

/* One δ per layer over a full posterior of several layers, which does not
 * separate: coordinate ascent, each coordinate by bisection on the sign of
 * its derivative.  f is jointly concave in t = log δ: det(H + diag(e^t))
 * is a polynomial in the e^{t_l} with non-negative coefficients (sums of
 * principal minors of the PSD H), so its log is convex in t (a log-sum-exp
 * of linear functions), and the rest of f is linear or concave in t. */
static cs_status optimise_full_layers(cs_laplace *la, cs_err *err)
{
    int64_t D = la->D;
    double *work, *grad;
    cs_status st = cs_curv_zalloc(&work, (size_t)(D * D), err, "the inverse posterior precision");
    if (st)
        return st;
    if ((st = cs_curv_zalloc(&grad, (size_t)la->n_layers, err, "the prior gradient"))) {
        free(work);
        return st;
    }
    for (int sweep = 0; sweep < 100 && !st; sweep++) {
        double moved = 0;
        for (int i = 0; i < la->n_layers && !st; i++) {
            cs_la_layer *L = &la->layers[i];
            double old = log(L->prior), lo = LA_LOG_LO, hi = LA_LOG_HI;
            for (int it = 0; it < 200 && hi - lo > 1e-11 && !st; it++) {
                L->prior = exp(0.5 * (lo + hi));
                if (!(st = full_gradient(la, work, grad, err))) {
                    if (grad[i] > 0)
                        lo = 0.5 * (lo + hi);
                    else
                        hi = 0.5 * (lo + hi);
                }
            }
            L->prior = exp(0.5 * (lo + hi));
            moved = fmax(moved, fabs(log(L->prior) - old));
        }
        if (moved < 1e-10)
            break;
    }
    free(work), free(grad);
    return st;
}

/* The priors that maximise the log marginal likelihood (the mode's). */
static cs_status optimise_priors(cs_laplace *la, cs_err *err)
{
    if (la->prior_mode == CS_LA_PRIOR_FIXED)
        return CS_OK;
    if (la->repr == CS_REPR_FULL && la->prior_mode == CS_LA_PRIOR_LAYER && la->n_layers > 1)
        return optimise_full_layers(la, err);
    double *e;
    cs_status st = cs_curv_zalloc(&e, (size_t)la->D, err, "the posterior's eigenvalues");
    if (st)
        return st;
    if (la->repr == CS_REPR_FULL) {
        /* one δ over all of the full posterior: its eigenvalues say it all */
        double s = 0;
        for (int i = 0; i < la->n_layers; i++)
            s += la->layers[i].sq_norm;
        if (!(st = block_eigenvalues(la, 0, e, err))) {
            double d = best_prior(e, la->D, s);
            for (int i = 0; i < la->n_layers; i++)
                la->layers[i].prior = d;
        }
        free(e);
        return st;
    }
    /* diag and kfac separate over layers: each layer's eigenvalues at its
     * place in e, one search per layer or one over all of them */
    double s = 0;
    for (int i = 0; i < la->n_layers && !st; i++) {
        cs_la_layer *L = &la->layers[i];
        st = block_eigenvalues(la, i, e + L->start, err);
        s += L->sq_norm;
        if (!st && la->prior_mode == CS_LA_PRIOR_LAYER)
            L->prior = best_prior(e + L->start, L->W, L->sq_norm);
    }
    if (!st && la->prior_mode == CS_LA_PRIOR_SCALAR) {
        double d = best_prior(e, la->D, s);
        for (int i = 0; i < la->n_layers; i++)
            la->layers[i].prior = d;
    }
    free(e);
    return st;
}

cs_status cs_laplace_fit(const cs_graph *g, const cs_dataset *ds, const cs_laplace_opts *o, cs_laplace *la,
                         cs_err *err)
{
    memset(la, 0, sizeof *la);
    double t0 = cs_now_seconds();
    const char *why;
    if (o->repr != CS_REPR_DIAG && o->repr != CS_REPR_KFAC && o->repr != CS_REPR_FULL)
        return cs_fail(err, CS_ERR_USAGE, "the Laplace posterior takes --repr diag, kfac or full, not %s",
                       cs_repr_name(o->repr));
    if (o->curv == CS_CURV_HESSIAN)
        return cs_fail(err, CS_ERR_USAGE,
                       "the Laplace posterior needs a positive semi-definite curvature (ggn, fisher, fisher_mc, "
                       "fisher_emp), not the Hessian");
    if (!cs_curv_repr_valid(o->curv, o->repr, &why))
        return cs_fail(err, CS_ERR_USAGE, "%s %s: %s", cs_curv_name(o->curv), cs_repr_name(o->repr), why);
    if (g->n_layers == 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "the model has no layers with trainable parameters");
    if (!ds->int_labels)
        return cs_fail(err, CS_ERR_USAGE, "the Laplace posterior needs integer class labels (the ce likelihood)");
    if (o->prior == CS_LA_PRIOR_FIXED && !(o->prior_precision > 0 && isfinite(o->prior_precision)))
        return cs_fail(err, CS_ERR_USAGE, "the prior precision must be a positive number");
    la->curv = o->curv, la->repr = o->repr, la->subset = o->subset, la->prior_mode = o->prior;
    la->N = ds->n;
    int first = o->subset == CS_LA_LAST ? g->n_layers - 1 : 0;
    la->n_layers = g->n_layers - first;
    cs_status st = cs_curv_calloc(&la->layers, (size_t)la->n_layers, err, "the posterior's layers");
    if (st)
        return st;
    for (int i = 0; i < la->n_layers; i++) {
        cs_la_layer *L = &la->layers[i];
        const cs_layer *gl = &g->layers[first + i];
        L->layer = first + i;
        L->W = gl->numel;
        L->offset = g->params[gl->first_param].offset;
        L->start = la->D;
        L->prior = o->prior == CS_LA_PRIOR_FIXED ? o->prior_precision : 1.0;
        la->D += L->W;
    }
    if (o->repr == CS_REPR_FULL && la->D > o->max_full)
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "--repr full: %lld parameters in the posterior (%s) is above --max-full %lld (a %lld x %lld "
                       "matrix); use --repr kfac or diag, or --subset last-layer",
                       (long long)la->D, cs_la_subset_name(o->subset), (long long)o->max_full, (long long)la->D,
                       (long long)la->D);
    if ((st = cs_curv_zalloc(&la->theta, (size_t)la->D, err, "the posterior's mean")))
        return st;
    for (int q = 0; q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        int64_t off = g->params[q].offset;
        for (int i = 0; i < la->n_layers; i++) {
            cs_la_layer *L = &la->layers[i];
            if (off < L->offset || off >= L->offset + L->W)
                continue;
            for (int64_t k = 0; k < cs_tensor_numel(t); k++) {
                double v = cs_tensor_get_f64(t, k);
                la->theta[L->start + off - L->offset + k] = v;
                L->sq_norm += v * v;
            }
        }
    }

    /* log p(D|θ*) = −Σ_n l_n */
    cs_objective obj;
    if ((st = cs_objective_init(&obj, g, ds, o->norm, CS_LOSS_CE, o->batch, 0, err)))
        return st;
    double loss_sum = 0;
    int64_t hits = 0;
    st = cs_objective_loss(&obj, 0, ds->n, &loss_sum, &hits, err);
    la->classes = obj.classes;
    cs_objective_free(&obj);
    if (st)
        return st;
    la->log_lik = -loss_sum;

    cs_curv_opts co;
    cs_curv_opts_init(&co);
    co.curvatures = 1u << o->curv;
    co.reprs = 1u << o->repr;
    co.loss = CS_LOSS_CE;
    co.batch = o->batch;
    co.norm = o->norm;
    co.seed = o->seed;
    co.mc_samples = o->mc_samples;
    co.cancel = o->cancel;
    co.keep_matrices = true;
    /* diag and kfac need only the matrices (no spectra, no exact blocks as
     * references); full needs the whole network's block, which only the
     * full results make */
    co.stats_only = o->repr != CS_REPR_FULL;
    co.max_full = o->repr == CS_REPR_FULL ? la->D : 0;
    cs_curv_report rep;
    if ((st = cs_curvature_compute(g, ds, &co, &rep, err)))
        return st;
    st = take_curvature(la, g, &rep, err);
    cs_curv_report_free(&rep);
    if (!st)
        st = optimise_priors(la, err);
    if (!st)
        st = cs_laplace_evidence(la, err);
    la->seconds = cs_now_seconds() - t0;
    return st;
}
