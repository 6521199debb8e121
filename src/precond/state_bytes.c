/* What each preconditioner holds between steps, for the memory plan
 * (curv/mem_plan.h): the sizes its pre_*.c allocates at create and at its
 * first refresh, per layer.  Kept beside the registry so that a new
 * preconditioner's row comes with its size. */
#include "precond/precond.h"

#include "curv/mem_plan.h"
#include "interp/layer_kind.h"

/* Doubles of layer l's state under preconditioner k (lay: its layout). */
static int64_t layer_doubles(cs_precond_kind k, const cs_precond_ctx *c, const cs_layer_layout *lay)
{
    int64_t W = lay->W, kron = lay->kfac != CS_KFAC_NONE;
    int64_t gA = kron ? lay->groups * lay->dA * lay->dA : 0, gG = kron ? lay->groups * lay->dG * lay->dG : 0;
    int64_t v = kron ? lay->groups * lay->dA * lay->dG : 0;
    switch (k) {
    /* kron.c: the factors A, G, their inverses (or roots) L, R, the
     * (group, unit, feature) index and the bias share */
    case CS_PRE_KFAC:
    case CS_PRE_SHAMPOO: return kron ? 2 * (gA + gG) + 4 * W + 3 * v : 0;
    case CS_PRE_EKFAC: return kron ? 2 * (gA + gG) + 4 * W + 4 * v : 0; /* and the scalings S */
    case CS_PRE_UNIT: /* pre_blocks.c: each block, its inverse and the index */
        return lay->unit_idx ? lay->n_units * lay->unit_d * (2 * lay->unit_d + 1) : 0;
    case CS_PRE_FULL:
    case CS_PRE_NEWTON: return W <= c->o->max_full ? W * (2 * W + 1) : 0;
    default: return 0;
    }
}

cs_status cs_precond_plan(const cs_precond_def *def, const cs_precond_ctx *c, int64_t batch, cs_mem_plan *plan,
                          cs_err *err)
{
    cs_precond_kind k = CS_PRE_COUNT;
    for (int i = 0; i < cs_precond_count(); i++)
        if (cs_precond_at(i) == def)
            k = (cs_precond_kind)i;
    const cs_graph *g = c->g;
    int64_t P = g->n_param_scalars;
    cs_status st = CS_OK;
    if (k == CS_PRE_DIAG)
        return cs_mem_plan_add(plan, CS_MEM_PRECOND, "", (int64_t)sizeof(double) * P, err,
                               "diag's running diagonal");
    if (k == CS_PRE_SMW) {
        /* pre_smw.c: one row per sample (and sampled label) of the batch */
        int64_t m = batch * (c->curv == CS_CURV_FISHER_MC ? (c->o->mc_samples > 0 ? c->o->mc_samples : 1) : 1);
        return cs_mem_plan_add(plan, CS_MEM_PRECOND, "", (int64_t)sizeof(double) * (m * P + m * m + m), err,
                               "smw's per-sample gradients: %lld rows of %lld", (long long)m, (long long)P);
    }
    int64_t maxv = 0;
    for (int l = 0; l < g->n_layers && !st; l++) {
        cs_layer_layout lay;
        if ((st = cs_layer_layout_make(g, l, &lay, err))) {
            cs_layer_layout_free(&lay);
            break;
        }
        int64_t d = layer_doubles(k, c, &lay);
        int64_t v = lay.kfac != CS_KFAC_NONE ? lay.groups * lay.dA * lay.dG : 0;
        maxv = v > maxv ? v : maxv;
        cs_layer_layout_free(&lay);
        if (d)
            st = cs_mem_plan_add(plan, CS_MEM_PRECOND, NULL, (int64_t)sizeof(double) * d, err,
                                 "%s's state of layer '%s'", def->name, g->layers[l].name);
    }
    /* kron.c's three layer-matrix buffers */
    if (!st && (k == CS_PRE_KFAC || k == CS_PRE_EKFAC || k == CS_PRE_SHAMPOO) && maxv)
        st = cs_mem_plan_add(plan, CS_MEM_PRECOND, "", (int64_t)sizeof(double) * 3 * maxv, err,
                             "%s's layer-matrix buffers", def->name);
    return st;
}
