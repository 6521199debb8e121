/* Block-diagonal natural gradient: per layer, d = (C + lambda I)^-1 g on
 * blocks of the curvature C, with C the running average (--ema) of the
 * batch blocks and the inverses recomputed at each refresh.
 *   full    the layer's whole block (layers up to --max-full; larger ones
 *           step along g)
 *   unit    the unit-wise blocks: each output unit's row of [W | b], or a
 *           normalisation layer's (scale_c, bias_c) pair
 *   newton  the full layer block of the Hessian
 * For the Hessian (newton, or --curvature hessian with full or unit) the
 * rule for negative curvature is saddle-free Newton (Dauphin et al. 2014):
 * (|C| + lambda I)^-1 with |C| = Q |w| Q^T, so negative directions are
 * followed downhill instead of climbed.  Otherwise the inverse is by
 * eigendecomposition (pseudo-inverse at lambda = 0) or Cholesky
 * (--inverse cholesky).  The three share this file: they differ only in
 * which blocks they read. */
#include "precond/precond.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/blas.h"

typedef struct layer_blocks {
    int64_t n_blocks, d;
    int64_t *index;    /* [n_blocks][d]: parameter index within the layer, -1 absent */
    double *M, *inv;   /* [n_blocks][d][d] */
} layer_blocks;

typedef struct blocks_state {
    cs_repr_kind repr;
    int n_layers;
    layer_blocks *b;
    double *x, *y;     /* one block's gradient and direction */
    int64_t max_d;
    double *work;      /* block_inverse's workspace, 2 d^2 for the largest block seen */
    int64_t work_d;
} blocks_state;

static void blocks_destroy(void *vs)
{
    blocks_state *s = vs;
    if (!s)
        return;
    for (int l = 0; l < s->n_layers && s->b; l++)
        free(s->b[l].index), free(s->b[l].M), free(s->b[l].inv);
    free(s->b), free(s->x), free(s->y), free(s->work);
    free(s);
}

static cs_status blocks_create(const cs_precond_ctx *c, cs_repr_kind repr, void **state, cs_err *err)
{
    blocks_state *s = calloc(1, sizeof *s);
    if (s && !(s->b = calloc((size_t)c->g->n_layers + 1, sizeof *s->b))) {
        free(s);
        s = NULL;
    }
    if (!s)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the block preconditioner");
    s->repr = repr;
    s->n_layers = c->g->n_layers;
    for (int l = 0; l < s->n_layers; l++)
        if (repr == CS_REPR_FULL && c->g->layers[l].numel > c->o->max_full)
            pc_fallback(c, l, "block above --max-full");
    *state = s;
    return CS_OK;
}

static cs_status full_create(const cs_precond_ctx *c, void **state, cs_err *err)
{
    return blocks_create(c, CS_REPR_FULL, state, err);
}

static cs_status unit_create(const cs_precond_ctx *c, void **state, cs_err *err)
{
    return blocks_create(c, CS_REPR_UNIT, state, err);
}

/* Copies between a d x d block and its m x m restriction to the present
 * slots (idx >= 0), in slot order: gather writes dst[m x m] from
 * src[d x d], scatter the reverse.  Walking idx twice keeps the slot map
 * off the stack (no array sized by d). */
static void block_restrict(const int64_t *idx, int64_t d, int64_t m, const double *src, double *dst,
                           bool gather)
{
    for (int64_t x = 0, i = 0; x < d; x++) {
        if (idx[x] < 0)
            continue;
        for (int64_t y = 0, j = 0; y < d; y++) {
            if (idx[y] < 0)
                continue;
            if (gather)
                dst[i * m + j] = src[x * d + y];
            else
                dst[x * d + y] = src[i * m + j];
            j++;
        }
        i++;
    }
}

/* The inverse of one block restricted to its present slots (absent slots
 * stay zero); work holds 2 d^2 doubles. */
static cs_status block_inverse(const cs_precond_ctx *c, const int64_t *idx, int64_t d, const double *M, double *inv,
                               double *work, cs_err *err)
{
    int64_t m = 0;
    for (int64_t x = 0; x < d; x++)
        m += idx[x] >= 0;
    double *C = work, *Ci = work + d * d;
    block_restrict(idx, d, m, M, C, true);
    cs_status st = c->curv == CS_CURV_HESSIAN ? pc_sym_damped_power(C, m, c->o->damping, -1, true, Ci, err)
                                              : pc_damped_inverse(C, m, c->o->damping, c->o->cholesky, Ci, err);
    if (st)
        return st;
    memset(inv, 0, sizeof(double) * (size_t)(d * d));
    block_restrict(idx, d, m, Ci, inv, false);
    return CS_OK;
}

static cs_status blocks_refresh(void *vs, cs_precond_ctx *c, const cs_dataset *batch, cs_err *err)
{
    blocks_state *s = vs;
    cs_curv_report own;
    const cs_curv_report *rep;
    cs_status st = pc_curvature(c, batch, 1u << s->repr, NULL, NULL, &own, &rep, err);
    if (st)
        return st;
    for (int l = 0; l < s->n_layers && !st; l++) {
        if (c->fallback[l] || c->frozen[l])
            continue;
        const cs_curv_result *r = cs_curv_report_find(rep, c->curv, s->repr, l);
        const double *src = r ? (s->repr == CS_REPR_FULL ? r->matrix : r->unit_blocks) : NULL;
        if (!src) {
            pc_fallback(c, l, s->repr == CS_REPR_FULL ? "no full block for this layer" : "no unit-wise blocks for this layer");
            continue;
        }
        layer_blocks *b = &s->b[l];
        bool first = !b->M;
        if (first) {
            b->n_blocks = s->repr == CS_REPR_FULL ? 1 : r->n_units;
            b->d = s->repr == CS_REPR_FULL ? r->dim : r->unit_d;
            size_t n = (size_t)(b->n_blocks * b->d * b->d);
            b->index = malloc(sizeof(int64_t) * (size_t)(b->n_blocks * b->d) + 1);
            b->M = malloc(sizeof(double) * n + 1);
            b->inv = malloc(sizeof(double) * n + 1);
            if (!b->index || !b->M || !b->inv) {
                st = cs_fail(err, CS_ERR_NOMEM, "out of memory for the curvature blocks of layer %s",
                             c->g->layers[l].name);
                break;
            }
            for (int64_t i = 0; i < b->n_blocks * b->d; i++)
                b->index[i] = s->repr == CS_REPR_FULL ? i : r->unit_index[i];
            s->max_d = b->d > s->max_d ? b->d : s->max_d;
        }
        pc_ema(b->M, src, b->n_blocks * b->d * b->d, c->o->ema, first);
        if (b->d > s->work_d) { /* grows during the first refresh only */
            double *grown = realloc(s->work, sizeof(double) * (size_t)(2 * b->d * b->d) + 1);
            if (!grown) {
                st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
                break;
            }
            s->work = grown;
            s->work_d = b->d;
        }
        for (int64_t k = 0; k < b->n_blocks && !st; k++)
            st = block_inverse(c, b->index + k * b->d, b->d, b->M + k * b->d * b->d, b->inv + k * b->d * b->d,
                               s->work, err);
    }
    cs_curv_report_free(&own);
    if (!st && !s->x && (!(s->x = malloc(sizeof(double) * (size_t)s->max_d + 1)) ||
                         !(s->y = malloc(sizeof(double) * (size_t)s->max_d + 1))))
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
    return st;
}

static cs_status blocks_apply(void *vs, const cs_precond_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)err;
    blocks_state *s = vs;
    memcpy(dir, grad, sizeof(double) * (size_t)c->g->n_param_scalars);
    for (int l = 0; l < s->n_layers; l++) {
        const layer_blocks *b = &s->b[l];
        if (c->fallback[l] || !b->M)
            continue;
        int64_t off = c->g->params[c->g->layers[l].first_param].offset;
        for (int64_t k = 0; k < b->n_blocks; k++) {
            const int64_t *idx = b->index + k * b->d;
            for (int64_t x = 0; x < b->d; x++)
                s->x[x] = idx[x] >= 0 ? grad[off + idx[x]] : 0;
            cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)b->d, (int)b->d, 1.0, b->inv + k * b->d * b->d, (int)b->d,
                        s->x, 1, 0.0, s->y, 1);
            for (int64_t x = 0; x < b->d; x++)
                if (idx[x] >= 0)
                    dir[off + idx[x]] = s->y[x];
        }
    }
    return CS_OK;
}

const cs_precond_ops pc_full_ops = {
    .create = full_create, .refresh = blocks_refresh, .apply = blocks_apply, .destroy = blocks_destroy};

const cs_precond_ops pc_unit_ops = {
    .create = unit_create, .refresh = blocks_refresh, .apply = blocks_apply, .destroy = blocks_destroy};
