/* Diagonal natural gradient: d_i = g_i / (c_i + lambda) with c the running
 * average (--ema) of the curvature's diagonal (the Fisher's by default;
 * with --curvature hessian the absolute values |H_ii|, exact for layers up
 * to --max-full and Hutchinson's estimate above, so that negative
 * curvature is not climbed).  With lambda = 0, entries at or below
 * P * 2^-52 * max c give d_i = 0. */
#include "precond/precond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct diag_state {
    double *c;
    bool started;
} diag_state;

static void diag_destroy(void *vs)
{
    diag_state *s = vs;
    if (s)
        free(s->c);
    free(s);
}

static cs_status diag_create(const cs_precond_ctx *c, void **state, cs_err *err)
{
    diag_state *s = calloc(1, sizeof *s);
    if (!s || !(s->c = calloc((size_t)c->g->n_param_scalars + 1, sizeof(double)))) {
        free(s);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the diagonal preconditioner");
    }
    *state = s;
    return CS_OK;
}

static cs_status diag_refresh(void *vs, cs_precond_ctx *c, const cs_dataset *batch, cs_err *err)
{
    diag_state *s = vs;
    cs_curv_report own;
    const cs_curv_report *rep;
    cs_status st = pc_curvature(c, batch, 1u << CS_REPR_DIAG, NULL, NULL, &own, &rep, err);
    if (st)
        return st;
    for (int l = 0; l < c->g->n_layers; l++) {
        const cs_curv_result *r = cs_curv_report_find(rep, c->curv, CS_REPR_DIAG, l);
        if (!r || !r->matrix) {
            pc_fallback(c, l, "no diagonal for this layer");
            continue;
        }
        double *dst = s->c + c->g->params[c->g->layers[l].first_param].offset;
        for (int64_t i = 0; i < r->dim; i++) {
            double x = c->curv == CS_CURV_HESSIAN ? fabs(r->matrix[i]) : r->matrix[i];
            dst[i] = s->started ? c->o->ema * dst[i] + (1 - c->o->ema) * x : x;
        }
    }
    s->started = true;
    cs_curv_report_free(&own);
    return CS_OK;
}

static cs_status diag_apply(void *vs, const cs_precond_ctx *c, const double *grad, double *dir, cs_err *err)
{
    (void)err;
    diag_state *s = vs;
    int64_t P = c->g->n_param_scalars;
    double lambda = c->o->damping, cmax = 0;
    for (int64_t i = 0; i < P; i++)
        cmax = s->c[i] > cmax ? s->c[i] : cmax;
    double tol = pc_pinv_cutoff(P, cmax);
    for (int64_t i = 0; i < P; i++)
        dir[i] = lambda > 0 ? grad[i] / (s->c[i] + lambda) : s->c[i] > tol ? grad[i] / s->c[i] : 0;
    for (int l = 0; l < c->g->n_layers; l++)
        if (c->fallback[l]) {
            int64_t o = c->g->params[c->g->layers[l].first_param].offset;
            memcpy(dir + o, grad + o, sizeof(double) * (size_t)c->g->layers[l].numel);
        }
    return CS_OK;
}

const cs_precond_ops pc_diag_ops = {
    .create = diag_create, .refresh = diag_refresh, .apply = diag_apply, .destroy = diag_destroy};
