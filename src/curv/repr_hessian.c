/* The Hessian's accumulators: exact Hessian-vector products (forward-over-
 * reverse) restricted to a layer give its block column by column when it
 * has at most max_full parameters (and the whole network's block when the
 * network does).  Larger layers get their exact diagonal from the Hessian
 * with respect to the layer's output s (below), or, where that does not
 * apply or is not wanted, Hutchinson's estimator with Rademacher probes,
 * diag H ~ (1/K) sum_k v_k * H v_k.  A source only: the full, diag and
 * unit representations report what it lends them.
 *
 * The exact diagonal of a large layer.  When s is linear in the layer's
 * parameters w (Gemm, Conv, norms' scale-bias, ...: linear_in_params),
 * the block is H_w = sum_n J_n^T H_s,n J_n with no second-order term of
 * the layer itself, and H_s is block diagonal over the samples.  With e_c
 * the c-th unit direction of one sample's s (the same c in every sample),
 *     diag H_w = sum_n sum_c (J_n^T e_c) * (J_n^T H_s,n e_c),
 * and H_s,n e_c for all n at once is one forward-mode pass from s and one
 * R-backward (cs_ad_jvp_from_value), so the cost is the output width per
 * sample, d_s passes, not W.  Both factors are per-sample gradients of the
 * layer with e_c and H_s e_c in place of dLoss/ds.  For a dense layer (one
 * position per sample) J_n^T g = g abar_n^T, and the sum collapses to
 * diag H_w[k, j] = sum_n H_s,n[k, k] abar_n,j^2: the d_s passes only read
 * H_s's diagonal, one GEMM per batch does the rest.  This is the exact
 * diagonal that BackPACK's DiagHessian forms (Dangel et al. 2020, by
 * propagating the loss Hessian's factors with each nonlinearity's residual
 * term); here the residuals are already in the R-backward, so every
 * operator with an R-op is covered, not only elementwise activations. */
#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "curv/alloc.h"
#include "curv/repr.h"
#include "tensor/blas.h"

typedef enum {
    HDIAG_NONE,
    HDIAG_HUTCH,                /* Hutchinson's estimator */
    HDIAG_DENSE,                /* exact, dense layer: d_s passes and a GEMM */
    HDIAG_ROWS,                 /* exact, any linear_in_params layer: per-sample rows */
} hdiag_method;

typedef struct hessian_layer {
    double *full;               /* [W, W] or NULL */
    hdiag_method method;        /* how the diagonal is formed when full is NULL */
    double *diag;               /* not full: [W] */
    double *probe_trace;        /* hutch: [probes] per-probe trace estimates (stderr) */
    int out_value;              /* exact: the value s */
    int64_t width;              /* exact: d_s, elements of s per sample */
} hessian_layer;

typedef struct hessian_state {
    hessian_layer *L;           /* [n_layers] */
    bool any_hutch;
    double *net;                /* [P, P] or NULL */
    double *vec;                /* unit vector (P) */
    double *hcol;               /* one product H v (P) */
    double *probe;              /* [probes][P] Rademacher vectors */
    double *hs;                 /* exact: diag H_s per sample [B, d_s] (dense) */
    double *rows_e, *rows_h;    /* exact: per-sample rows of e_c and H_s e_c [B, W] */
    double *a2;                 /* dense: squared inputs [B, dA], then the product [dG, dA] */
} hessian_state;

static void hessian_free(const cs_repr_ctx *x, void *state)
{
    hessian_state *s = state;
    for (int l = 0; s->L && l < x->g->n_layers; l++)
        free(s->L[l].full), free(s->L[l].diag), free(s->L[l].probe_trace);
    free(s->L);
    free(s->net), free(s->vec), free(s->hcol), free(s->probe);
    free(s->hs), free(s->rows_e), free(s->rows_h), free(s->a2);
    free(s);
}

/* The exact diagonal's method for layer l, HDIAG_HUTCH where it does not
 * apply: a linear_in_params kind with per-sample rows, the samples on axis
 * 0, and at most max_full passes (d_s) unless --hessian-diag exact. */
static hdiag_method exact_method(const cs_repr_ctx *x, int l, hessian_layer *h)
{
    const cs_curv_opts *o = x->o;
    const cs_graph *g = x->g;
    cs_ad *ad = &x->obj->ad[0];
    if (o->hessian_diag == CS_HDIAG_HUTCHINSON || !g->layers[l].kind->linear_in_params || !x->rows_ok[l] ||
        (ad->batch_axis && ad->batch_axis[l] != 0) || x->B <= 0)
        return HDIAG_HUTCH;
    cs_layer_capture cap;
    cs_err ignored;
    if (cs_ad_capture(ad, l, &cap, &ignored) != CS_OK || !ad->tan[cap.output_value].data ||
        !ad->tgrad[cap.output_value].data || cap.output->ndim < 1 || cap.output->dims[0] <= 0)
        return HDIAG_HUTCH;
    h->out_value = cap.output_value;
    h->width = cs_tensor_numel(cap.output) / cap.output->dims[0];
    if (o->hessian_diag != CS_HDIAG_EXACT && h->width > o->max_full)
        return HDIAG_HUTCH;
    const cs_layer_layout *lay = &x->lay[l];
    bool dense = lay->kfac == CS_KFAC_ROWS && lay->groups == 1 && lay->dG == h->width &&
                 cs_tensor_numel(cap.input) == cap.output->dims[0] * lay->fan_in;
    return dense ? HDIAG_DENSE : HDIAG_ROWS;
}

static cs_status hessian_plan(const cs_repr_ctx *x, void **state, cs_err *err)
{
    const cs_curv_opts *o = x->o;
    if (!(o->curvatures >> CS_CURV_HESSIAN & 1))
        return CS_OK;
    int nl = x->g->n_layers;
    hessian_state *s;
    cs_status st = cs_curv_calloc(&s, 1, err, "the Hessian's state");
    if (st)
        return st;
    *state = s;
    if ((st = cs_curv_calloc(&s->L, (size_t)nl, err, "the Hessian's layers")))
        return st;
    bool diag = o->reprs >> CS_REPR_DIAG & 1;
    bool need_block = (o->reprs >> CS_REPR_FULL & 1) || x->compare_any || (o->reprs >> CS_REPR_UNIT & 1);
    size_t hs = 0, rows = 0, a2 = 0;
    for (int l = 0; l < nl; l++) {
        hessian_layer *h = &s->L[l];
        const cs_layer_layout *lay = &x->lay[l];
        int64_t W = lay->W;
        const char *name = x->g->layers[l].name;
        /* A diagonal alone comes from the output's Hessian (d_s passes)
         * when that is cheaper than the block's W columns. */
        hdiag_method exact = diag && !(cs_repr_small(x, l) && need_block) ? exact_method(x, l, h) : HDIAG_HUTCH;
        bool by_output = exact != HDIAG_HUTCH && (!cs_repr_small(x, l) || h->width < W);
        if (cs_repr_small(x, l) && (need_block || (diag && !by_output))) {
            st = cs_curv_zalloc(&h->full, (size_t)(W * W), err, "the hessian full block of layer '%s'", name);
        } else if (diag) {
            h->method = exact;
            st = cs_curv_zalloc(&h->diag, (size_t)W, err, "the hessian diagonal of layer '%s'", name);
            if (!st && h->method == HDIAG_HUTCH) {
                s->any_hutch = true;
                st = cs_curv_zalloc(&h->probe_trace, (size_t)o->probes, err, "the probe traces of layer '%s'", name);
            }
            if (h->method == HDIAG_DENSE) {
                size_t need_hs = (size_t)(x->B * h->width), need_a2 = (size_t)(x->B * lay->dA + lay->dG * lay->dA);
                hs = need_hs > hs ? need_hs : hs;
                a2 = need_a2 > a2 ? need_a2 : a2;
            }
            if (h->method == HDIAG_ROWS && (size_t)(x->B * W) > rows)
                rows = (size_t)(x->B * W);
        }
        if (st)
            return st;
    }
    if ((hs && (st = cs_curv_zalloc(&s->hs, hs, err, "the output Hessians' diagonals"))) ||
        (a2 && (st = cs_curv_zalloc(&s->a2, a2, err, "the squared inputs"))) ||
        (rows && (st = cs_curv_zalloc(&s->rows_e, rows, err, "the unit directions' rows"))) ||
        (rows && (st = cs_curv_zalloc(&s->rows_h, rows, err, "the output Hessian columns' rows"))))
        return st;
    if (x->net_full &&
        (st = cs_curv_zalloc(&s->net, (size_t)(x->P * x->P), err, "the hessian block of the whole network")))
        return st;
    if ((st = cs_curv_zalloc(&s->vec, (size_t)x->P, err, "the Hessian's direction")) ||
        (st = cs_curv_zalloc(&s->hcol, (size_t)x->P, err, "a Hessian column")) ||
        (st = cs_curv_zalloc(&s->probe, (size_t)o->probes * (size_t)x->P, err, "the Hutchinson probes")))
        return st;
    /* drawn before the pass, so the labels fisher_mc samples come after
     * them; a memory plan only sizes the probes (curv/alloc.h) */
    for (int64_t i = 0; !cs_curv_alloc_tallying() && i < (int64_t)o->probes * x->P; i++)
        s->probe[i] = cs_rng_sign(x->rng);
    return CS_OK;
}

/* After a forward-mode pass: the R-backward seeded with the mean loss's
 * Hessian times the logits' tangent. */
static cs_status loss_rbackward(const cs_repr_ctx *x, cs_ad *ad, const cs_tensor *z, cs_err *err)
{
    const cs_loss_head *head = &x->obj->head;
    if (ad->tan_live[head->logits_value])
        cs_loss_hvp_batch(head, z, &ad->tan[head->logits_value], 1.0 / (double)cs_dataset_total(x->ds), cs_ad_rseed(ad),
                          x->seedwork);
    return cs_ad_rbackward(ad, err);
}

/* H v for one direction v (restricted to `layer`, -1: the network) into
 * ad->tgrad; the first-order backward of the mean loss is already in ad. */
static cs_status hvp_direction(const cs_repr_ctx *x, cs_ad *ad, const cs_tensor *z, const double *v, int layer,
                               cs_err *err)
{
    cs_status st = cs_ad_jvp(ad, v, layer, err);
    return st ? st : loss_rbackward(x, ad, z, err);
}

/* t = e_c in every sample of s ([B, d_s] in the plan's type). */
static void set_unit_direction(cs_tensor *t, int64_t width, int64_t c, int64_t B)
{
    memset(t->data, 0, cs_tensor_bytes(t));
    for (int64_t b = 0; b < B; b++) {
        if (t->dtype == CS_DT_FLOAT)
            ((float *)t->data)[b * width + c] = 1.0f;
        else
            ((double *)t->data)[b * width + c] = 1.0;
    }
}

static double value_at(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

/* Layer l's exact diagonal for one batch (see the top): d_s passes, each
 * H_s e_c for every sample at once. */
static cs_status exact_diag_batch(const cs_repr_ctx *x, hessian_state *s, cs_ad *ad, const cs_tensor *z, int l,
                                  cs_err *err)
{
    hessian_layer *h = &s->L[l];
    const cs_layer_layout *lay = &x->lay[l];
    cs_tensor *t = &ad->tan[h->out_value];
    const cs_tensor *r = &ad->tgrad[h->out_value];
    int64_t B = t->dims[0], W = lay->W, d = h->width;
    cs_status st = CS_OK;
    for (int64_t c = 0; c < d && !st; c++) {
        set_unit_direction(t, d, c, B);
        if ((st = cs_ad_jvp_from_value(ad, h->out_value, err)) || (st = loss_rbackward(x, ad, z, err)))
            break;
        if (h->method == HDIAG_DENSE) {
            for (int64_t b = 0; b < B; b++)
                s->hs[b * d + c] = value_at(r, b * d + c);
            continue;
        }
        if ((st = cs_ad_per_sample_grads_with(ad, l, t, s->rows_e, err)) ||
            (st = cs_ad_per_sample_grads_with(ad, l, r, s->rows_h, err)))
            break;
        double *diag = h->diag;
        const double *e = s->rows_e, *hr = s->rows_h;
#pragma omp parallel if (B * W >= CS_OMP_MIN_ELEMS)
        {
            int64_t lo, hi;
            cs_omp_slice(W, &lo, &hi);
            for (int64_t b = 0; b < B; b++)
                for (int64_t i = lo; i < hi; i++)
                    diag[i] += e[b * W + i] * hr[b * W + i];
        }
    }
    if (st || h->method != HDIAG_DENSE)
        return st;
    /* diag H_w[k, j] = sum_b H_s,b[k, k] abar_b,j^2: one GEMM, then the
     * layout's (group, unit, feature) map to parameter order */
    cs_layer_capture cap;
    if ((st = cs_ad_capture(ad, l, &cap, err)))
        return st;
    double *a2 = s->a2, *M = a2 + B * lay->dA;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < lay->fan_in; j++) {
            double v = cs_kfac_at(cap.input, b * lay->fan_in + j);
            a2[b * lay->dA + j] = v * v;
        }
        if (lay->bias)
            a2[b * lay->dA + lay->fan_in] = 1.0;
    }
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)lay->dG, (int)lay->dA, (int)B, 1.0, s->hs, (int)d,
                a2, (int)lay->dA, 0.0, M, (int)lay->dA);
    for (int64_t p = 0; p < W; p++) {
        const int64_t *k = lay->kron + 3 * p;
        h->diag[p] += M[k[1] * lay->dA + k[2]];
    }
    return CS_OK;
}

/* Hessian columns (exact products restricted to a layer, or the whole net)
 * and Hutchinson diagonals for one batch. */
static cs_status hessian_add_batch(const cs_repr_ctx *x, void *state, int which, int64_t start, cs_err *err)
{
    hessian_state *s = state;
    cs_ad *ad = &x->obj->ad[which];
    const cs_tensor *z = &x->obj->plan[which].vals[x->obj->head.logits_value];
    cs_loss_grad_batch(&x->obj->head, z, x->ds, start, 1.0 / (double)cs_dataset_total(x->ds), cs_ad_seed(ad), x->seedwork);
    ad->param_grads = false;
    cs_status st = cs_ad_backward(ad, err);
    if (st)
        return st;
    const cs_graph *g = x->g;
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer_layout *lay = &x->lay[l];
        int64_t off = g->params[g->layers[l].first_param].offset;
        for (int64_t j = 0; s->L[l].full && j < lay->W; j++) {
            s->vec[off + j] = 1.0;
            st = hvp_direction(x, ad, z, s->vec, l, err);
            s->vec[off + j] = 0.0;
            if (st)
                return st;
            cs_ad_add_layer_vector(ad, l, true, 1.0, s->L[l].full + j * lay->W);
        }
    }
    for (int l = 0; l < g->n_layers; l++)
        if ((s->L[l].method == HDIAG_DENSE || s->L[l].method == HDIAG_ROWS) &&
            (st = exact_diag_batch(x, s, ad, z, l, err)))
            return st;
    for (int64_t j = 0; s->net && j < x->P; j++) {
        s->vec[j] = 1.0;
        st = hvp_direction(x, ad, z, s->vec, -1, err);
        s->vec[j] = 0.0;
        if (st)
            return st;
        cs_ad_add_param_vector(ad, true, 1.0, s->net + j * x->P);
    }
    for (int k = 0; s->any_hutch && k < x->o->probes; k++) {
        const double *v = s->probe + (size_t)k * (size_t)x->P;
        if ((st = hvp_direction(x, ad, z, v, -1, err)))
            return st;
        memset(s->hcol, 0, sizeof(double) * (size_t)x->P);
        cs_ad_add_param_vector(ad, true, 1.0, s->hcol);
        for (int l = 0; l < g->n_layers; l++) {
            hessian_layer *h = &s->L[l];
            const cs_layer_layout *lay = &x->lay[l];
            int64_t off = g->params[g->layers[l].first_param].offset;
            if (h->method != HDIAG_HUTCH)
                continue;
            double tr = 0;
            for (int64_t i = 0; i < lay->W; i++) {
                double p = v[off + i] * s->hcol[off + i];
                h->diag[i] += p;
                tr += p;
            }
            h->probe_trace[k] += tr;
        }
    }
    return CS_OK;
}

static cs_status hessian_reduce(const cs_repr_ctx *x, void *state, cs_err *err)
{
    hessian_state *s = state;
    cs_status st = CS_OK;
    for (int l = 0; l < x->g->n_layers; l++) {
        hessian_layer *h = &s->L[l];
        st = cs_repr_sum_ranks(x, st, h->full, x->lay[l].W * x->lay[l].W, err);
        st = cs_repr_sum_ranks(x, st, h->diag, x->lay[l].W, err);
        st = cs_repr_sum_ranks(x, st, h->probe_trace, x->o->probes, err);
    }
    return cs_repr_sum_ranks(x, st, s->net, x->P * x->P, err);
}

static void hessian_normalise(const cs_repr_ctx *x, void *state, double inv_n)
{
    (void)inv_n; /* the products are of the mean loss already */
    hessian_state *s = state;
    for (int l = 0; l < x->g->n_layers; l++) {
        hessian_layer *h = &s->L[l];
        if (h->full)
            cs_repr_average_transpose(h->full, x->lay[l].W);
        for (int64_t i = 0; h->method == HDIAG_HUTCH && i < x->lay[l].W; i++)
            h->diag[i] /= x->o->probes;
    }
    if (s->net)
        cs_repr_average_transpose(s->net, x->P);
}

static void hessian_sources(const cs_repr_ctx *x, const void *state, int l, cs_curv_kind c, cs_repr_sources *src)
{
    (void)x;
    const hessian_state *s = state;
    if (c != CS_CURV_HESSIAN)
        return;
    if (l < 0) {
        src->full = s->net;
        return;
    }
    src->full = s->L[l].full;
    if (s->L[l].method == HDIAG_HUTCH) {
        src->diag = s->L[l].diag;
        src->diag_method = "hutchinson";
        src->probe_trace = s->L[l].probe_trace;
    } else if (s->L[l].method != HDIAG_NONE) {
        src->diag = s->L[l].diag;
        src->diag_method = "exact";
    }
}

const cs_repr_def cs_repr_hessian = {
    .name = "hessian",
    .plan = hessian_plan,
    .free = hessian_free,
    .add_batch = hessian_add_batch,
    .reduce = hessian_reduce,
    .normalise = hessian_normalise,
    .sources = hessian_sources,
};
