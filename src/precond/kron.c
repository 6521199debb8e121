/* K-FAC's layout of a layer and its running factors, shared by kfac, ekfac
 * and shampoo (precond.h). */
#include "precond/precond.h"

#include <stdlib.h>
#include <string.h>

#include "interp/layer_kind.h"
#include "tensor/blas.h"

/* ---- K-FAC layout and factors ---- */

/* k->share from k->index (see pc_kron). */
static cs_status kron_shares(pc_kron *k, cs_err *err)
{
    int64_t cells = k->groups * k->dG * k->dA;
    double *count = calloc((size_t)cells + 1, sizeof(double));
    k->share = malloc(sizeof(double) * (size_t)k->W + 1);
    if (!count || !k->share) {
        free(count);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the K-FAC index of %lld parameters", (long long)k->W);
    }
    for (int64_t p = 0; p < k->W; p++) {
        const int64_t *x = k->index + 3 * p;
        count[(x[0] * k->dG + x[1]) * k->dA + x[2]] += 1;
    }
    for (int64_t p = 0; p < k->W; p++) {
        const int64_t *x = k->index + 3 * p;
        k->share[p] = 1.0 / count[(x[0] * k->dG + x[1]) * k->dA + x[2]];
    }
    free(count);
    return CS_OK;
}

cs_status pc_kron_update(pc_kron *k, const cs_curv_result *r, int64_t offset, double decay, cs_err *err)
{
    size_t na = (size_t)(r->kfac_groups * r->kfac_dA * r->kfac_dA), ng = (size_t)(r->kfac_groups * r->kfac_dG * r->kfac_dG);
    bool first = !k->ok;
    if (first) {
        k->groups = r->kfac_groups, k->dA = r->kfac_dA, k->dG = r->kfac_dG, k->W = r->dim, k->offset = offset;
        k->index = malloc(sizeof(int64_t) * 3 * (size_t)k->W + 1);
        k->A = malloc(sizeof(double) * na + 1);
        k->G = malloc(sizeof(double) * ng + 1);
        if (!k->index || !k->A || !k->G)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory for K-FAC factors");
        memcpy(k->index, r->kfac_index, sizeof(int64_t) * 3 * (size_t)k->W);
        cs_status st = kron_shares(k, err);
        if (st)
            return st;
        k->ok = true;
    } else if (k->groups != r->kfac_groups || k->dA != r->kfac_dA || k->dG != r->kfac_dG) {
        return cs_fail(err, CS_ERR_RUNTIME, "K-FAC factor shapes changed between refreshes");
    }
    pc_ema(k->A, r->kfac_A, (int64_t)na, decay, first);
    pc_ema(k->G, r->kfac_G, (int64_t)ng, decay, first);
    return CS_OK;
}

cs_status pc_kron_refresh(pc_kron *k, cs_precond_ctx *c, const cs_dataset *batch, cs_err *err)
{
    cs_curv_report own;
    const cs_curv_report *rep;
    cs_status st = pc_curvature(c, batch, 1u << CS_REPR_KFAC, NULL, NULL, &own, &rep, err);
    if (st)
        return st;
    for (int l = 0; l < c->g->n_layers && !st; l++) {
        const cs_curv_result *r = cs_curv_report_find(rep, c->curv, CS_REPR_KFAC, l);
        if (!r || !r->kfac_A) {
            pc_fallback(c, l, "no K-FAC factors for this layer type");
            continue;
        }
        st = pc_kron_update(&k[l], r, c->g->params[c->g->layers[l].first_param].offset, c->o->ema, err);
    }
    cs_curv_report_free(&own);
    return st;
}

void pc_kron_gather(const pc_kron *k, const double *v, double *M)
{
    int64_t gsz = k->dG * k->dA;
    memset(M, 0, sizeof(double) * (size_t)(k->groups * gsz));
    for (int64_t p = 0; p < k->W; p++) {
        const int64_t *x = k->index + 3 * p;
        M[x[0] * gsz + x[1] * k->dA + x[2]] = v[p];
    }
}

void pc_kron_scatter(const pc_kron *k, const double *M, double *v)
{
    int64_t gsz = k->dG * k->dA;
    for (int64_t p = 0; p < k->W; p++) {
        const int64_t *x = k->index + 3 * p;
        v[p] = M[x[0] * gsz + x[1] * k->dA + x[2]] * k->share[p];
    }
}

void pc_kron_sandwich(const pc_kron *k, const double *L, bool trans_l, const double *X, const double *R,
                      bool trans_r, double *Y, double *tmp)
{
    int dG = (int)k->dG, dA = (int)k->dA;
    for (int64_t grp = 0; grp < k->groups; grp++) {
        const double *Xg = X + grp * k->dG * k->dA;
        cblas_dgemm(CblasRowMajor, trans_l ? CblasTrans : CblasNoTrans, CblasNoTrans, dG, dA, dG, 1.0,
                    L + grp * k->dG * k->dG, dG, Xg, dA, 0.0, tmp, dA);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, trans_r ? CblasTrans : CblasNoTrans, dG, dA, dA, 1.0, tmp, dA,
                    R + grp * k->dA * k->dA, dA, 0.0, Y + grp * k->dG * k->dA, dA);
    }
}

void pc_kron_free(pc_kron *k)
{
    free(k->index), free(k->share), free(k->A), free(k->G);
    memset(k, 0, sizeof *k);
}

cs_status pc_kron_layout(pc_kron *k, const cs_graph *g, int l, cs_err *err)
{
    memset(k, 0, sizeof *k);
    cs_layer_layout lay;
    cs_status st = cs_layer_layout_make(g, l, &lay, err);
    k->ok = !st && lay.kfac != CS_KFAC_NONE;
    if (k->ok) {
        k->groups = lay.groups, k->dG = lay.dG, k->dA = lay.dA;
        k->index = lay.kron; /* kept: the pair's (group, unit, feature) index */
        lay.kron = NULL;
    }
    cs_layer_layout_free(&lay);
    k->W = g->layers[l].numel;
    k->offset = g->params[g->layers[l].first_param].offset;
    if (!st && k->ok)
        st = kron_shares(k, err);
    return st;
}

/* ---- a layer set of Kronecker pairs ---- */

cs_status pc_kron_set_init(pc_kron_set *s, int n_layers, cs_err *err)
{
    memset(s, 0, sizeof *s);
    s->n_layers = n_layers;
    s->k = calloc((size_t)n_layers + 1, sizeof *s->k);
    s->L = calloc((size_t)n_layers + 1, sizeof *s->L);
    s->R = calloc((size_t)n_layers + 1, sizeof *s->R);
    s->max_v = 1;
    if (!s->k || !s->L || !s->R)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for %d layers' Kronecker factors", n_layers);
    return CS_OK;
}

cs_status pc_kron_set_layer(pc_kron_set *s, int l, cs_err *err)
{
    const pc_kron *k = &s->k[l];
    size_t nl = (size_t)(k->groups * k->dG * k->dG), nr = (size_t)(k->groups * k->dA * k->dA);
    size_t nv = (size_t)(k->groups * k->dG * k->dA);
    s->max_v = nv > s->max_v ? nv : s->max_v;
    if (!s->L[l] && (!(s->L[l] = malloc(sizeof(double) * nl)) || !(s->R[l] = malloc(sizeof(double) * nr))))
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the Kronecker factors of layer %d (%zu + %zu doubles)",
                       l, nl, nr);
    return CS_OK;
}

cs_status pc_kron_set_buffers(pc_kron_set *s, cs_err *err)
{
    if (s->X)
        return CS_OK;
    s->X = malloc(sizeof(double) * s->max_v);
    s->Y = malloc(sizeof(double) * s->max_v);
    s->tmp = malloc(sizeof(double) * s->max_v);
    if (!s->X || !s->Y || !s->tmp)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for 3 x %zu doubles of layer matrices", s->max_v);
    return CS_OK;
}

void pc_kron_set_free(pc_kron_set *s)
{
    for (int l = 0; l < s->n_layers; l++) {
        if (s->k)
            pc_kron_free(&s->k[l]);
        if (s->L)
            free(s->L[l]);
        if (s->R)
            free(s->R[l]);
    }
    free(s->k), free(s->L), free(s->R), free(s->X), free(s->Y), free(s->tmp);
    memset(s, 0, sizeof *s);
}

cs_status pc_kron_state_create(const cs_precond_ctx *c, const char *need_kfac, size_t size, void **state,
                               cs_err *err)
{
    cs_status st = need_kfac ? pc_need_kfac_curvature(c, need_kfac, err) : CS_OK;
    if (st)
        return st;
    pc_kron_set *s = calloc(1, size);
    if (!s)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for a preconditioner's state (%zu bytes)", size);
    if ((st = pc_kron_set_init(s, c->g->n_layers, err))) {
        pc_kron_set_free(s);
        free(s);
        return st;
    }
    *state = s;
    return CS_OK;
}

bool pc_kron_set_serves(const pc_kron_set *s, const cs_precond_ctx *c, int l)
{
    return s->k[l].ok && !c->fallback[l];
}

void pc_kron_set_apply(const pc_kron_set *s, const cs_precond_ctx *c, const double *grad, double *dir)
{
    memcpy(dir, grad, sizeof(double) * (size_t)c->g->n_param_scalars);
    for (int l = 0; l < s->n_layers; l++) {
        const pc_kron *k = &s->k[l];
        if (!pc_kron_set_serves(s, c, l))
            continue;
        pc_kron_gather(k, grad + k->offset, s->X);
        pc_kron_sandwich(k, s->L[l], false, s->X, s->R[l], false, s->Y, s->tmp);
        pc_kron_scatter(k, s->Y, dir + k->offset);
    }
}
