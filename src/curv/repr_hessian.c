/* The Hessian's accumulators: exact Hessian-vector products (forward-over-
 * reverse) restricted to a layer give its block column by column when it
 * has at most max_full parameters (and the whole network's block when the
 * network does); larger diagonals come from Hutchinson's estimator with
 * Rademacher probes, diag H ~ (1/K) sum_k v_k * H v_k.  A source only: the full, diag and unit representations
 * report what it lends them. */
#include <stdlib.h>
#include <string.h>

#include "curv/alloc.h"
#include "curv/repr.h"

typedef struct hessian_layer {
    double *full;               /* [W, W] or NULL */
    bool hutch;                 /* diagonal by Hutchinson's estimator */
    double *diag;               /* hutch: [W] */
    double *probe_trace;        /* hutch: [probes] per-probe trace estimates (stderr) */
} hessian_layer;

typedef struct hessian_state {
    hessian_layer *L;           /* [n_layers] */
    bool any_hutch;
    double *net;                /* [P, P] or NULL */
    double *vec;                /* unit vector (P) */
    double *hcol;               /* one product H v (P) */
    double *probe;              /* [probes][P] Rademacher vectors */
} hessian_state;

static void hessian_free(const cs_repr_ctx *x, void *state)
{
    hessian_state *s = state;
    for (int l = 0; s->L && l < x->g->n_layers; l++)
        free(s->L[l].full), free(s->L[l].diag), free(s->L[l].probe_trace);
    free(s->L);
    free(s->net), free(s->vec), free(s->hcol), free(s->probe);
    free(s);
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
    bool need_block = (o->reprs >> CS_REPR_FULL & 1) || x->compare_any || diag || (o->reprs >> CS_REPR_UNIT & 1);
    for (int l = 0; l < nl; l++) {
        hessian_layer *h = &s->L[l];
        int64_t W = x->lay[l].W;
        const char *name = x->g->layers[l].name;
        if (cs_repr_small(x, l) && need_block) {
            st = cs_curv_zalloc(&h->full, (size_t)(W * W), err, "the hessian full block of layer '%s'", name);
        } else if (diag) {
            h->hutch = s->any_hutch = true;
            if (!(st = cs_curv_zalloc(&h->diag, (size_t)W, err, "the hessian diagonal of layer '%s'", name)))
                st = cs_curv_zalloc(&h->probe_trace, (size_t)o->probes, err, "the probe traces of layer '%s'", name);
        }
        if (st)
            return st;
    }
    if (x->net_full &&
        (st = cs_curv_zalloc(&s->net, (size_t)(x->P * x->P), err, "the hessian block of the whole network")))
        return st;
    if ((st = cs_curv_zalloc(&s->vec, (size_t)x->P, err, "the Hessian's direction")) ||
        (st = cs_curv_zalloc(&s->hcol, (size_t)x->P, err, "a Hessian column")) ||
        (st = cs_curv_zalloc(&s->probe, (size_t)o->probes * (size_t)x->P, err, "the Hutchinson probes")))
        return st;
    /* drawn before the pass, so the labels fisher_mc samples come after them */
    for (int64_t i = 0; i < (int64_t)o->probes * x->P; i++)
        s->probe[i] = cs_rng_sign(x->rng);
    return CS_OK;
}

/* H v for one direction v (restricted to `layer`, -1: the network) into
 * ad->tgrad; the first-order backward of the mean loss is already in ad. */
static cs_status hvp_direction(const cs_repr_ctx *x, cs_ad *ad, const cs_tensor *z, const double *v, int layer,
                               cs_err *err)
{
    const cs_loss_head *head = &x->obj->head;
    cs_status st = cs_ad_jvp(ad, v, layer, err);
    if (st)
        return st;
    if (ad->tan_live[head->logits_value])
        cs_loss_hvp_batch(head, z, &ad->tan[head->logits_value], 1.0 / (double)cs_dataset_total(x->ds), cs_ad_rseed(ad),
                          x->seedwork);
    return cs_ad_rbackward(ad, err);
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
            if (!h->hutch)
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
        for (int64_t i = 0; h->hutch && i < x->lay[l].W; i++)
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
    if (s->L[l].hutch) {
        src->diag = s->L[l].diag;
        src->diag_method = "hutchinson";
        src->probe_trace = s->L[l].probe_trace;
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
