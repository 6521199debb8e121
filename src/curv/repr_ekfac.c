/* The EK-FAC representation (George, Laurent, Bouthillier, Ballas & Vincent
 * 2018, "Fast approximate natural gradient descent in a Kronecker-factored
 * eigenbasis"): K-FAC's eigenbasis Q_G (x) Q_A per layer and group, with
 * the diagonal in that basis re-fitted to the curvature,
 *
 *   s_ij = (1/N) sum_n sum_seeds [(Q_G^T V_n Q_A)_ij]^2,
 *
 * V_n the per-sample gradient of the layer in doc/design.md §2.4's [W | b]
 * layout, over the seeds that define the curvature (the loss-Hessian
 * factor's columns for ggn / fisher, the sampled labels for fisher_mc, the
 * true label for fisher_emp).  The block is approximated by
 * (Q_G (x) Q_A) diag(s) (Q_G (x) Q_A)^T: its eigenvalues are the s_ij, its
 * trace is the exact block's trace (the basis is orthonormal and s is the
 * exact diagonal of the block in it), and it is the best approximation of
 * the block in Frobenius norm among those diagonal in K-FAC's basis.
 *
 * The basis is known only after K-FAC's factors are complete, so this
 * representation accumulates in the engine's second pass over the data
 * (cs_repr_def.pass = 1), from the K-FAC representation's normalised factors
 * (lent through cs_repr_ctx.lend), and lends its own basis and scalings as
 * sources to its results. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "curv/alloc.h"
#include "curv/repr.h"
#include "spectral/dense.h"
#include "tensor/blas.h"

typedef struct ekfac_block {
    double *QA, *QG;            /* [groups][dA][dA], [groups][dG][dG]: eigenvectors in columns */
    double *S;                  /* [groups][dG][dA]: the scalings; NULL: not accumulated */
} ekfac_block;

typedef struct ekfac_state {
    ekfac_block *b;             /* [n_layers][CS_FAM_COUNT] */
    double *V, *T, *tmp;        /* one sample's gathered group, its rotation, a GEMM temporary */
    double *w;                  /* eigenvalues of one factor (discarded) */
} ekfac_state;

static void ekfac_free(const cs_repr_ctx *x, void *state)
{
    ekfac_state *s = state;
    for (int i = 0; s->b && i < x->g->n_layers * CS_FAM_COUNT; i++)
        free(s->b[i].QA), free(s->b[i].QG), free(s->b[i].S);
    free(s->b);
    free(s->V), free(s->T), free(s->tmp), free(s->w);
    free(s);
}

static cs_status ekfac_plan(const cs_repr_ctx *x, void **state, cs_err *err)
{
    if (!(x->o->reprs >> CS_REPR_EKFAC & 1) || x->o->stats_only)
        return CS_OK;
    ekfac_state *s;
    cs_status st = cs_curv_calloc(&s, 1, err, "the EK-FAC state");
    if (st)
        return st;
    *state = s;
    int nl = x->g->n_layers;
    if ((st = cs_curv_calloc(&s->b, (size_t)(nl * CS_FAM_COUNT), err, "the EK-FAC blocks' table")))
        return st;
    int64_t maxv = 1, maxd = 1;
    for (int l = 0; l < nl; l++) {
        const cs_layer_layout *lay = &x->lay[l];
        if (lay->kfac == CS_KFAC_NONE || !x->rows_ok[l])
            continue;
        for (int f = 0; f < CS_FAM_COUNT; f++) {
            if (!x->fam[f])
                continue;
            ekfac_block *b = &s->b[l * CS_FAM_COUNT + f];
            const char *name = x->g->layers[l].name, *fam = cs_curv_family_name(f);
            if ((st = cs_curv_zalloc(&b->S, (size_t)(lay->groups * lay->dG * lay->dA), err,
                                     "the %s EK-FAC scalings of layer '%s'", fam, name)) ||
                (st = cs_curv_zalloc(&b->QA, (size_t)(lay->groups * lay->dA * lay->dA), err,
                                     "the %s EK-FAC basis of A of layer '%s'", fam, name)) ||
                (st = cs_curv_zalloc(&b->QG, (size_t)(lay->groups * lay->dG * lay->dG), err,
                                     "the %s EK-FAC basis of G of layer '%s'", fam, name)))
                return st;
        }
        maxv = lay->dG * lay->dA > maxv ? lay->dG * lay->dA : maxv;
        maxd = lay->dA > maxd ? lay->dA : maxd;
        maxd = lay->dG > maxd ? lay->dG : maxd;
    }
    if ((st = cs_curv_zalloc(&s->V, (size_t)maxv, err, "the EK-FAC gathered gradient")) ||
        (st = cs_curv_zalloc(&s->T, (size_t)maxv, err, "the EK-FAC rotated gradient")) ||
        (st = cs_curv_zalloc(&s->tmp, (size_t)maxv, err, "the EK-FAC rotation's temporary")) ||
        (st = cs_curv_zalloc(&s->w, (size_t)maxd, err, "the EK-FAC factor eigenvalues")))
        return st;
    return CS_OK;
}

/* A curvature of family f that was asked for, to borrow K-FAC's factors
 * by (ggn and fisher share theirs), or -1. */
static int curvature_of_family(const cs_repr_ctx *x, int f)
{
    for (int c = 0; c < CS_CURV_COUNT; c++)
        if ((x->o->curvatures >> c & 1) && cs_curv_family((cs_curv_kind)c) == f)
            return c;
    return -1;
}

/* Before the second pass: the eigenbases of K-FAC's normalised factors. */
static cs_status ekfac_begin_pass(const cs_repr_ctx *x, void *state, cs_err *err)
{
    ekfac_state *s = state;
    for (int l = 0; l < x->g->n_layers; l++) {
        const cs_layer_layout *lay = &x->lay[l];
        for (int f = 0; f < CS_FAM_COUNT; f++) {
            ekfac_block *b = &s->b[l * CS_FAM_COUNT + f];
            if (!b->S)
                continue;
            int c = curvature_of_family(x, f);
            cs_repr_sources src;
            memset(&src, 0, sizeof src);
            if (c >= 0)
                x->lend(x, l, (cs_curv_kind)c, &src);
            if (!src.A || !src.G)
                return cs_fail(err, CS_ERR_RUNTIME, "EK-FAC of layer '%s': no K-FAC factors of %s to take the basis from",
                               x->g->layers[l].name, cs_curv_family_name(f));
            for (int64_t grp = 0; grp < lay->groups; grp++)
                if (cs_sym_eigvecs(src.A + grp * lay->dA * lay->dA, lay->dA, b->QA + grp * lay->dA * lay->dA, s->w,
                                   NULL) ||
                    cs_sym_eigvecs(src.G + grp * lay->dG * lay->dG, lay->dG, b->QG + grp * lay->dG * lay->dG, s->w,
                                   NULL))
                    return cs_fail(err, CS_ERR_RUNTIME, "EK-FAC of layer '%s': the eigen-solve of a K-FAC factor failed",
                                   x->g->layers[l].name);
        }
    }
    return CS_OK;
}

static cs_repr_rows ekfac_rows(const cs_repr_ctx *x, const void *state, int l, int f)
{
    const ekfac_state *s = state;
    return s->b[l * CS_FAM_COUNT + f].S ? CS_ROWS_NEEDED : CS_ROWS_NONE;
}

/* s += (Q_G^T V_n Q_A).^2 per sample and group, V_n gathered through the
 * layout's (group, unit, feature) index. */
static void ekfac_add_rows(const cs_repr_ctx *x, void *state, int l, int f, const double *rows, int64_t B)
{
    ekfac_state *s = state;
    ekfac_block *b = &s->b[l * CS_FAM_COUNT + f];
    const cs_layer_layout *lay = &x->lay[l];
    int64_t dG = lay->dG, dA = lay->dA, nv = dG * dA;
    for (int64_t n = 0; n < B; n++) {
        const double *row = rows + n * lay->W;
        for (int64_t grp = 0; grp < lay->groups; grp++) {
            memset(s->V, 0, sizeof(double) * (size_t)nv);
            for (int64_t p = 0; p < lay->W; p++) {
                const int64_t *k = lay->kron + 3 * p;
                if (k[0] == grp)
                    s->V[k[1] * dA + k[2]] = row[p];
            }
            const double *QG = b->QG + grp * dG * dG, *QA = b->QA + grp * dA * dA;
            /* tmp = Q_G^T V, T = tmp Q_A */
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)dG, (int)dA, (int)dG, 1.0, QG, (int)dG, s->V,
                        (int)dA, 0.0, s->tmp, (int)dA);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)dG, (int)dA, (int)dA, 1.0, s->tmp, (int)dA, QA,
                        (int)dA, 0.0, s->T, (int)dA);
            double *S = b->S + grp * nv;
            for (int64_t i = 0; i < nv; i++)
                S[i] += s->T[i] * s->T[i];
        }
    }
}

static cs_status ekfac_reduce(const cs_repr_ctx *x, void *state, cs_err *err)
{
    ekfac_state *s = state;
    cs_status st = CS_OK;
    for (int l = 0; l < x->g->n_layers; l++)
        for (int f = 0; f < CS_FAM_COUNT; f++)
            st = cs_repr_sum_ranks(x, st, s->b[l * CS_FAM_COUNT + f].S,
                                   x->lay[l].groups * x->lay[l].dG * x->lay[l].dA, err);
    return st;
}

static void ekfac_normalise(const cs_repr_ctx *x, void *state, double inv_n)
{
    ekfac_state *s = state;
    for (int l = 0; l < x->g->n_layers; l++)
        for (int f = 0; f < CS_FAM_COUNT; f++) {
            ekfac_block *b = &s->b[l * CS_FAM_COUNT + f];
            for (int64_t i = 0; b->S && i < x->lay[l].groups * x->lay[l].dG * x->lay[l].dA; i++)
                b->S[i] *= inv_n;
        }
}

static void ekfac_sources(const cs_repr_ctx *x, const void *state, int l, cs_curv_kind c, cs_repr_sources *src)
{
    (void)x;
    const ekfac_state *s = state;
    int f = cs_curv_family(c);
    if (f >= 0 && l >= 0 && s->b[l * CS_FAM_COUNT + f].S) {
        const ekfac_block *b = &s->b[l * CS_FAM_COUNT + f];
        src->ekfac_S = b->S, src->ekfac_QA = b->QA, src->ekfac_QG = b->QG;
    }
}

/* The dense block (Q_G (x) Q_A) diag(s) (Q_G (x) Q_A)^T [W, W] in parameter
 * order, zero across groups: per group g, M_g = Z Z^T with
 * Z[p, (i, j)] = Q_G[u_p, i] Q_A[f_p, j] sqrt(s_ij) over g's parameters p. */
static cs_status ekfac_dense(const cs_repr_ctx *x, int l, const cs_repr_sources *src, double *M, cs_err *err)
{
    const cs_layer_layout *lay = &x->lay[l];
    int64_t W = lay->W, dG = lay->dG, dA = lay->dA, nv = dG * dA;
    double *Z = NULL, *C = NULL;
    int64_t *idx = NULL;
    cs_status st;
    if ((st = cs_curv_zalloc(&Z, (size_t)(W * nv), err, "the EK-FAC factor of the dense block of layer '%s'",
                             x->g->layers[l].name)) ||
        (st = cs_curv_zalloc(&C, (size_t)(W * W), err, "a group's dense EK-FAC block of layer '%s'",
                             x->g->layers[l].name)) ||
        (st = cs_curv_malloc((void **)&idx, sizeof(int64_t) * (size_t)W, err, "the EK-FAC group index")))
        goto out;
    memset(M, 0, sizeof(double) * (size_t)(W * W));
    for (int64_t grp = 0; grp < lay->groups; grp++) {
        const double *QG = src->ekfac_QG + grp * dG * dG, *QA = src->ekfac_QA + grp * dA * dA;
        const double *S = src->ekfac_S + grp * nv;
        int64_t ng = 0;
        for (int64_t p = 0; p < W; p++) {
            const int64_t *k = lay->kron + 3 * p;
            if (k[0] != grp)
                continue;
            double *z = Z + ng * nv;
            for (int64_t i = 0; i < dG; i++)
                for (int64_t j = 0; j < dA; j++)
                    z[i * dA + j] = QG[k[1] * dG + i] * QA[k[2] * dA + j] * sqrt(S[i * dA + j] > 0 ? S[i * dA + j] : 0);
            idx[ng++] = p;
        }
        if (ng == 0)
            continue;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)ng, (int)nv, 1.0, Z, (int)nv, 0.0, C, (int)ng);
        for (int64_t a = 0; a < ng; a++)
            for (int64_t b = a; b < ng; b++)
                M[idx[a] * W + idx[b]] = M[idx[b] * W + idx[a]] = C[a * ng + b];
    }
out:
    free(Z), free(C), free(idx);
    return st;
}

static cs_status ekfac_results(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src,
                               cs_repr_ref *ref, cs_err *err)
{
    if (l < 0 || !cs_repr_wanted(x, c, CS_REPR_EKFAC) || !src->ekfac_S)
        return CS_OK;
    const cs_layer_layout *lay = &x->lay[l];
    int64_t W = lay->W, nv = lay->groups * lay->dG * lay->dA;
    cs_curv_result *r;
    cs_status st = cs_repr_new_result(x, l, c, CS_REPR_EKFAC, W, &r, err);
    if (st)
        return st;
    r->method = "eigen-corrected";
    if ((st = cs_curv_malloc((void **)&r->eig, sizeof(double) * (size_t)nv, err,
                             "the EK-FAC eigenvalues of layer '%s'", x->g->layers[l].name)))
        return st;
    memcpy(r->eig, src->ekfac_S, sizeof(double) * (size_t)nv);
    cs_repr_summarize_sorted(r, nv);
    bool keep = x->o->keep_matrices;
    if (ref->have || (keep && W <= x->o->max_full)) {
        double *M = ref->dense, *own = NULL;
        if (!M && (st = cs_curv_malloc((void **)&own, sizeof(double) * (size_t)(W * W), err,
                                       "the dense EK-FAC block of layer '%s'", x->g->layers[l].name)))
            return st;
        M = M ? M : own;
        st = ekfac_dense(x, l, src, M, err);
        if (!st && keep)
            st = cs_repr_dup(&r->matrix, M, W * W, "the dense EK-FAC block", l, x, err);
        if (!st && ref->have)
            st = cs_repr_compare(M, src->full, W, ref, r, err);
        free(own);
    }
    r->seconds = cs_now_seconds() - ref->t0;
    return st;
}

const cs_repr_def cs_repr_ekfac = {
    .name = "ekfac",
    .pass = 1,
    .plan = ekfac_plan,
    .free = ekfac_free,
    .begin_pass = ekfac_begin_pass,
    .rows = ekfac_rows,
    .add_rows = ekfac_add_rows,
    .reduce = ekfac_reduce,
    .normalise = ekfac_normalise,
    .sources = ekfac_sources,
    .results = ekfac_results,
};
