/* Shampoo's statistics of a layer (Gupta, Koren & Singer 2018), from the
 * true-label per-sample gradients G_n in DESIGN.md's [W | b] orientation
 * (rows = output units), per group: L = (1/N) sum_n G_n G_n^T and
 * R = (1/N) sum_n G_n^T G_n.  Not a cs_repr_kind: they go to the report's
 * shampoo array (cs_shampoo_stats). */
#include <stdlib.h>
#include <string.h>

#include "curv/alloc.h"
#include "curv/repr.h"
#include "tensor/blas.h"

typedef struct shampoo_layer {
    double *L, *R;              /* [groups][dG][dG] and [groups][dA][dA]; NULL: none */
    double *G;                  /* one sample's gradient matrices [groups][dG][dA] */
} shampoo_layer;

static void shampoo_free(const cs_repr_ctx *x, void *state)
{
    shampoo_layer *s = state;
    for (int l = 0; l < x->g->n_layers; l++)
        free(s[l].L), free(s[l].R), free(s[l].G);
    free(s);
}

static cs_status shampoo_plan(const cs_repr_ctx *x, void **state, cs_err *err)
{
    if (!x->o->shampoo)
        return CS_OK;
    int nl = x->g->n_layers;
    shampoo_layer *s;
    cs_status st = cs_curv_calloc(&s, (size_t)nl, err, "the Shampoo statistics' layers");
    if (st)
        return st;
    *state = s;
    for (int l = 0; l < nl; l++) {
        const cs_kfac_layout *k = &x->lay[l];
        const char *name = x->g->layers[l].name;
        if (k->kind == CS_KFAC_NONE || !k->kfac_ok)
            continue;
        if ((st = cs_curv_zalloc(&s[l].L, (size_t)(k->groups * k->dG * k->dG), err,
                                 "the Shampoo statistic L of layer '%s'", name)) ||
            (st = cs_curv_zalloc(&s[l].R, (size_t)(k->groups * k->dA * k->dA), err,
                                 "the Shampoo statistic R of layer '%s'", name)) ||
            (st = cs_curv_zalloc(&s[l].G, (size_t)(k->groups * k->dG * k->dA), err,
                                 "the Shampoo gradient matrices of layer '%s'", name)))
            return st;
    }
    return CS_OK;
}

static cs_repr_rows shampoo_rows(const cs_repr_ctx *x, const void *state, int l, int f)
{
    (void)x;
    const shampoo_layer *s = state;
    return f == CS_FAM_EMP && s[l].L ? CS_ROWS_NEEDED : CS_ROWS_NONE;
}

/* Each sample's gradient as [dG, dA] matrices per group; L += G G^T,
 * R += G^T G. */
static void shampoo_add_rows(const cs_repr_ctx *x, void *state, int l, int f, const double *rows, int64_t B)
{
    shampoo_layer *sh = &((shampoo_layer *)state)[l];
    const cs_kfac_layout *s = &x->lay[l];
    if (f != CS_FAM_EMP || !sh->L)
        return;
    int64_t gsz = s->dG * s->dA;
    for (int64_t b = 0; b < B; b++) {
        const double *r = rows + b * s->W;
        memset(sh->G, 0, sizeof(double) * (size_t)(s->groups * gsz));
        for (int64_t p = 0; p < s->W; p++) {
            const int64_t *k = s->kron + 3 * p;
            sh->G[k[0] * gsz + k[1] * s->dA + k[2]] = r[p];
        }
        for (int64_t grp = 0; grp < s->groups; grp++) {
            const double *G = sh->G + grp * gsz;
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)s->dG, (int)s->dA, 1.0, G, (int)s->dA,
                        1.0, sh->L + grp * s->dG * s->dG, (int)s->dG);
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)s->dA, (int)s->dG, 1.0, G, (int)s->dA,
                        1.0, sh->R + grp * s->dA * s->dA, (int)s->dA);
        }
    }
}

static void shampoo_normalise(const cs_repr_ctx *x, void *state, double inv_n)
{
    shampoo_layer *sh = state;
    for (int l = 0; l < x->g->n_layers; l++) {
        const cs_kfac_layout *s = &x->lay[l];
        for (int64_t grp = 0; sh[l].L && grp < s->groups; grp++) {
            cs_repr_symmetrize(sh[l].L + grp * s->dG * s->dG, s->dG, inv_n);
            cs_repr_symmetrize(sh[l].R + grp * s->dA * s->dA, s->dA, inv_n);
        }
    }
}

/* The statistics move to the report (L NULL where a layer has none). */
static cs_status shampoo_publish(const cs_repr_ctx *x, void *state, cs_err *err)
{
    shampoo_layer *sh = state;
    cs_curv_report *rep = x->rep;
    int nl = x->g->n_layers;
    cs_status st = cs_curv_calloc(&rep->shampoo, (size_t)(nl + 1), err, "the report's Shampoo statistics");
    if (st)
        return st;
    rep->n_shampoo = nl;
    for (int l = 0; l < nl; l++) {
        const cs_kfac_layout *s = &x->lay[l];
        if (!sh[l].L)
            continue;
        cs_shampoo_stats *out = &rep->shampoo[l];
        out->groups = s->groups, out->dG = s->dG, out->dA = s->dA, out->dim = s->W;
        out->L = sh[l].L, out->R = sh[l].R; /* ownership moves to the report */
        sh[l].L = sh[l].R = NULL;
        if ((st = cs_repr_dup_index(&out->index, s->kron, 3 * s->W, "the Shampoo index", l, x, err)))
            return st;
    }
    return CS_OK;
}

const cs_repr_def cs_repr_shampoo = {
    .name = "shampoo",
    .plan = shampoo_plan,
    .free = shampoo_free,
    .rows = shampoo_rows,
    .add_rows = shampoo_add_rows,
    .normalise = shampoo_normalise,
    .publish = shampoo_publish,
};
