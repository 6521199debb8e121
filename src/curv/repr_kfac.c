/* The K-FAC representation: per layer and group the factors A (layer
 * inputs, shared by the families) and G (output gradients, per family),
 * the block approximated by G (x) A (curv/kfac.h; Martens & Grosse 2015,
 * Grosse & Martens 2016, Eschenhagen et al. 2023). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "curv/alloc.h"
#include "curv/repr.h"
#include "spectral/dense.h"

typedef struct kfac_layer {
    cs_kfac_factor A;           /* M NULL: no K-FAC for this layer */
    cs_kfac_factor G[CS_FAM_COUNT];
    double a_count;             /* rows summed into A */
} kfac_layer;

typedef struct kfac_state {
    kfac_layer *L;              /* [n_layers] */
    double *work;               /* Conv patches and gathered gradients */
} kfac_state;

static void kfac_free(const cs_repr_ctx *x, void *state)
{
    kfac_state *s = state;
    for (int l = 0; s->L && l < x->g->n_layers; l++) {
        cs_kfac_factor_free(&s->L[l].A);
        for (int f = 0; f < CS_FAM_COUNT; f++)
            cs_kfac_factor_free(&s->L[l].G[f]);
    }
    free(s->L);
    free(s->work);
    free(s);
}

/* One layer's factors: G per family, A once; Gemm / MatMul rows buffered,
 * Conv scratch sized into *work. */
static cs_status plan_layer(const cs_repr_ctx *x, kfac_layer *k, int l, size_t *work, cs_err *err)
{
    const cs_graph *g = x->g;
    const cs_layer_layout *s = &x->lay[l];
    const cs_layer *L = &g->layers[l];
    const cs_node *n = &g->nodes[L->node];
    const cs_tensor *X = &x->obj->plan[0].vals[cs_kfac_input_value(g, l)];
    int64_t cap = 0;
    if (s->kfac == CS_KFAC_ROWS || s->kfac == CS_KFAC_ONEHOT) {
        /* an embedding's input holds one id per row */
        int64_t rows = s->kfac == CS_KFAC_ONEHOT ? cs_tensor_numel(X) : cs_tensor_numel(X) / (s->fan_in ? s->fan_in : 1);
        cap = rows > CS_KFAC_ROW_BUFFER ? rows : CS_KFAC_ROW_BUFFER;
    }
    char what[200];
    cs_status st;
    for (int f = 0; f < CS_FAM_COUNT; f++) {
        if (!x->fam[f])
            continue;
        snprintf(what, sizeof what, "the %s K-FAC factor G of layer '%s'", cs_curv_family_name(f), L->name);
        if ((st = cs_kfac_factor_init(&k->G[f], s->groups, s->dG, cap, what, err)))
            return st;
    }
    snprintf(what, sizeof what, "the K-FAC factor A of layer '%s'", L->name);
    /* an embedding's A is summed from the ids' counts, with no rows */
    if ((st = cs_kfac_factor_init(&k->A, s->groups, s->dA, s->kfac == CS_KFAC_ONEHOT ? 0 : cap, what, err)))
        return st;
    int ov = L->bias_node >= 0 ? g->nodes[L->bias_node].outputs[0] : n->outputs[0];
    int64_t out_n = ov >= 0 ? cs_tensor_numel(&x->obj->plan[0].vals[ov]) : 0; /* a recurrent Y may be omitted */
    size_t need;
    if ((st = cs_kfac_work_size(s, n, X, &x->obj->plan[0].vals[n->inputs[1]], out_n, x->B, &need, err)))
        return st;
    *work = need > *work ? need : *work;
    return CS_OK;
}

static cs_status kfac_plan(const cs_repr_ctx *x, void **state, cs_err *err)
{
    bool any_fam = x->fam[CS_FAM_GGN] || x->fam[CS_FAM_MC] || x->fam[CS_FAM_EMP];
    /* EK-FAC takes its basis from these factors */
    if (!(x->o->reprs & (1u << CS_REPR_KFAC | 1u << CS_REPR_EKFAC)) || !any_fam)
        return CS_OK;
    int nl = x->g->n_layers;
    kfac_state *s;
    cs_status st = cs_curv_calloc(&s, 1, err, "the K-FAC state");
    if (st)
        return st;
    *state = s;
    if ((st = cs_curv_calloc(&s->L, (size_t)nl, err, "the K-FAC layers")))
        return st;
    size_t work = 1;
    for (int l = 0; l < nl; l++)
        if (x->lay[l].kfac != CS_KFAC_NONE && (st = plan_layer(x, &s->L[l], l, &work, err)))
            return st;
    return cs_curv_zalloc(&s->work, work, err, "the K-FAC gather rows");
}

static cs_status kfac_add_input(const cs_repr_ctx *x, void *state, cs_ad *ad, int l, cs_err *err)
{
    kfac_layer *k = &((kfac_state *)state)->L[l];
    if (!k->A.M)
        return CS_OK;
    cs_layer_capture cap;
    cs_status st = cs_ad_capture(ad, l, &cap, err);
    if (st)
        return st;
    const cs_node *n = &x->g->nodes[x->g->layers[l].node];
    if (x->lay[l].kfac == CS_KFAC_SEQUENCE)
        return cs_kfac_add_sequence(ad, l, &x->lay[l], false, 1.0, ((kfac_state *)state)->work, &k->A, &k->a_count,
                                    err);
    return cs_kfac_add_A(&x->lay[l], n, cap.input, &ad->p->vals[n->inputs[1]], ((kfac_state *)state)->work,
                         &k->A, &k->a_count, err);
}

static cs_status kfac_add_capture(const cs_repr_ctx *x, void *state, cs_ad *ad, int l, int f, double scale,
                                  bool rows_formed, cs_err *err)
{
    (void)rows_formed;
    kfac_layer *k = &((kfac_state *)state)->L[l];
    if (!k->G[f].M)
        return CS_OK;
    cs_layer_capture cap;
    cs_status st = cs_ad_capture(ad, l, &cap, err);
    if (st)
        return st;
    if (x->lay[l].kfac == CS_KFAC_SEQUENCE)
        return cs_kfac_add_sequence(ad, l, &x->lay[l], true, scale, ((kfac_state *)state)->work, &k->G[f], NULL, err);
    cs_kfac_add_G(&x->lay[l], cap.output_grad, scale, ((kfac_state *)state)->work, &k->G[f]);
    return CS_OK;
}

/* Each group's summed triangles into the symmetric factor, scaled. */
static void finish_factor(cs_kfac_factor *F, double scale)
{
    for (int64_t grp = 0; F->M && grp < F->groups; grp++)
        cs_repr_symmetrize(F->M + grp * F->d * F->d, F->d, scale);
}

/* The factors are sums of rows (A: of a_count input rows, G: of the
 * samples' gradient rows) until normalised, so the ranks' sums add. */
static cs_status kfac_reduce(const cs_repr_ctx *x, void *state, cs_err *err)
{
    kfac_state *s = state;
    cs_status st = CS_OK;
    for (int l = 0; l < x->g->n_layers; l++) {
        kfac_layer *k = &s->L[l];
        cs_kfac_factor_flush(&k->A);
        st = cs_repr_sum_ranks(x, st, k->A.M, k->A.groups * k->A.d * k->A.d, err);
        st = cs_repr_sum_ranks(x, st, &k->a_count, 1, err);
        for (int f = 0; f < CS_FAM_COUNT; f++) {
            cs_kfac_factor_flush(&k->G[f]);
            st = cs_repr_sum_ranks(x, st, k->G[f].M, k->G[f].groups * k->G[f].d * k->G[f].d, err);
        }
    }
    return st;
}

static void kfac_normalise(const cs_repr_ctx *x, void *state, double inv_n)
{
    kfac_state *s = state;
    for (int l = 0; l < x->g->n_layers; l++) {
        kfac_layer *k = &s->L[l];
        cs_kfac_factor_flush(&k->A);
        for (int f = 0; f < CS_FAM_COUNT; f++) {
            cs_kfac_factor_flush(&k->G[f]);
            finish_factor(&k->G[f], inv_n);
        }
        finish_factor(&k->A, k->a_count > 0 ? 1.0 / k->a_count : 0);
    }
}

static void kfac_sources(const cs_repr_ctx *x, const void *state, int l, cs_curv_kind c, cs_repr_sources *src)
{
    (void)x;
    const kfac_state *s = state;
    int f = cs_curv_family(c);
    if (f >= 0 && l >= 0 && s->L[l].G[f].M) {
        src->A = s->L[l].A.M;
        src->G = s->L[l].G[f].M;
    }
}

/* The factors and the parameters' (group, unit, feature) into r. */
static cs_status keep_factors(const cs_repr_ctx *x, int l, const cs_repr_sources *src, cs_curv_result *r,
                              cs_err *err)
{
    const cs_layer_layout *s = &x->lay[l];
    cs_status st;
    if ((st = cs_repr_dup(&r->kfac_A, src->A, s->groups * s->dA * s->dA, "the K-FAC factor A", l, x, err)) ||
        (st = cs_repr_dup(&r->kfac_G, src->G, s->groups * s->dG * s->dG, "the K-FAC factor G", l, x, err)) ||
        (st = cs_repr_dup_index(&r->kfac_index, s->kron, 3 * s->W, "the K-FAC index", l, x, err)))
        return st;
    r->kfac_groups = s->groups;
    r->kfac_dA = s->dA;
    r->kfac_dG = s->dG;
    return CS_OK;
}

/* Eigenvalues of each group's factors into r->factor_eig (A, G; pooled and
 * sorted); the block's are all products lambda_i(G_g) lambda_j(A_g). */
static cs_status kron_eigenvalues(const cs_repr_ctx *x, int l, const cs_repr_sources *src, cs_curv_result *r,
                                  cs_err *err)
{
    const cs_layer_layout *s = &x->lay[l];
    int64_t gA = s->groups * s->dA, gG = s->groups * s->dG;
    double *wa, *wg, *tmp = NULL;
    cs_status st;
    if ((st = cs_curv_malloc((void **)&r->factor_eig[0], sizeof(double) * (size_t)gA, err,
                             "the eigenvalues of A of layer '%s'", x->g->layers[l].name)) ||
        (st = cs_curv_malloc((void **)&r->factor_eig[1], sizeof(double) * (size_t)gG, err,
                             "the eigenvalues of G of layer '%s'", x->g->layers[l].name)) ||
        (st = cs_curv_malloc((void **)&tmp, sizeof(double) * (size_t)(s->dA * s->dA + s->dG * s->dG), err,
                             "a K-FAC factor's eigen-solve")) ||
        (st = cs_curv_malloc((void **)&r->eig, sizeof(double) * (size_t)(s->groups * s->dA * s->dG), err,
                             "the K-FAC eigenvalues of layer '%s'", x->g->layers[l].name))) {
        free(tmp);
        return st;
    }
    wa = r->factor_eig[0];
    wg = r->factor_eig[1];
    int64_t k = 0;
    for (int64_t grp = 0; grp < s->groups && !st; grp++) {
        memcpy(tmp, src->A + grp * s->dA * s->dA, sizeof(double) * (size_t)(s->dA * s->dA));
        st = cs_sym_eig(tmp, s->dA, wa + grp * s->dA, NULL, err);
        if (st)
            break;
        memcpy(tmp, src->G + grp * s->dG * s->dG, sizeof(double) * (size_t)(s->dG * s->dG));
        st = cs_sym_eig(tmp, s->dG, wg + grp * s->dG, NULL, err);
        for (int64_t i = 0; i < s->dG && !st; i++)
            for (int64_t j = 0; j < s->dA; j++)
                r->eig[k++] = wg[grp * s->dG + i] * wa[grp * s->dA + j];
    }
    free(tmp);
    if (st)
        return st;
    cs_repr_summarize_sorted(r, k);
    /* the factors' own spectra, sorted the same way */
    cs_repr_sort_desc(wa, gA);
    cs_repr_sort_desc(wg, gG);
    r->n_factor_eig[0] = gA;
    r->n_factor_eig[1] = gG;
    return CS_OK;
}

static cs_status kfac_results(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src,
                              cs_repr_ref *ref, cs_err *err)
{
    if (l < 0 || !cs_repr_wanted(x, c, CS_REPR_KFAC) || x->lay[l].kfac == CS_KFAC_NONE || !src->G)
        return CS_OK;
    const cs_layer_layout *s = &x->lay[l];
    int64_t W = s->W;
    cs_curv_result *r;
    cs_status st = cs_repr_new_result(x, l, c, CS_REPR_KFAC, W, &r, err);
    if (st)
        return st;
    r->method = "kron";
    if ((st = kron_eigenvalues(x, l, src, r, err)))
        return st;
    bool keep = x->o->keep_matrices;
    if (keep && (st = keep_factors(x, l, src, r, err)))
        return st;
    if (ref->have || (keep && W <= x->o->max_full)) {
        double *M = ref->dense, *own = NULL;
        if (!M && (st = cs_curv_malloc((void **)&own, sizeof(double) * (size_t)(W * W), err,
                                       "the dense K-FAC block of layer '%s'", x->g->layers[l].name)))
            return st;
        M = M ? M : own;
        cs_kfac_expand(s, src->A, src->G, M);
        if (keep)
            st = cs_repr_dup(&r->matrix, M, W * W, "the dense K-FAC block", l, x, err);
        if (!st && ref->have)
            st = cs_repr_compare(M, src->full, W, ref, r, err);
        free(own);
    }
    r->seconds = cs_now_seconds() - ref->t0;
    return st;
}

static cs_status kfac_stats(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src, cs_err *err)
{
    if (l < 0 || !cs_repr_wanted(x, c, CS_REPR_KFAC) || x->lay[l].kfac == CS_KFAC_NONE || !src->G)
        return CS_OK;
    cs_curv_result *r;
    cs_status st = cs_repr_new_result(x, l, c, CS_REPR_KFAC, x->lay[l].W, &r, err);
    if (st)
        return st;
    r->method = "kron";
    return keep_factors(x, l, src, r, err);
}

const cs_repr_def cs_repr_kfac = {
    .name = "kfac",
    .plan = kfac_plan,
    .free = kfac_free,
    .add_capture = kfac_add_capture,
    .add_input = kfac_add_input,
    .reduce = kfac_reduce,
    .normalise = kfac_normalise,
    .sources = kfac_sources,
    .results = kfac_results,
    .stats = kfac_stats,
};
