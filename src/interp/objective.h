/* The dataset loss L(theta) = (1/N) sum_n l(f(x_n; theta), y_n) of a model
 * on a fixed sample set, with its exact derivatives:
 *   gradient                 dL/dtheta
 *   Hessian-vector product   H v      (forward-over-reverse R-operator)
 *   GGN-vector product       G v = (1/N) sum_n J_n^T Lambda_n J_n v
 * All vectors are double, g->n_param_scalars long, in DESIGN.md's parameter
 * order.  Plans and derivative buffers are made once (one for the batch
 * size, one for the last partial batch); each product is one pass over the
 * data with no allocation. */
#ifndef CS_INTERP_OBJECTIVE_H
#define CS_INTERP_OBJECTIVE_H

#include "data/dataset.h"
#include "interp/autodiff.h"
#include "interp/loss.h"
#include "interp/plan.h"

typedef struct cs_objective {
    const cs_graph *g;
    const cs_dataset *ds;
    const cs_norm *norm;
    cs_loss_head head;
    int64_t batch;
    int64_t classes;
    int n_plans;          /* 1, or 2 with a partial last batch */
    cs_plan plan[2];
    cs_ad ad[2];
    double *work;         /* 2 * classes doubles for the loss rows */
} cs_objective;

/* ad_mode: CS_AD_* passes to plan (CS_AD_HVP for everything).  Borrows g,
 * ds and norm. */
cs_status cs_objective_init(cs_objective *o, const cs_graph *g, const cs_dataset *ds,
                            const cs_norm *norm, cs_loss_kind loss, int64_t batch,
                            unsigned ad_mode, cs_err *err) CS_MUST_CHECK;
void cs_objective_free(cs_objective *o);

/* L and dL/dtheta (grad may be NULL for the loss alone). */
cs_status cs_objective_gradient(cs_objective *o, double *loss, double *grad, cs_err *err)
    CS_MUST_CHECK;

/* Loss, correct predictions and gradient of the mean loss over the single
 * batch [start, start + batch) (the last one may be shorter); grad gets
 * (1/B) sum over the batch, the training step's gradient. */
cs_status cs_objective_batch_gradient(cs_objective *o, int64_t start, double *loss, int64_t *hits,
                                      double *grad, cs_err *err) CS_MUST_CHECK;

/* hv = H v.  layer >= 0 says v is zero outside that layer's block (only
 * nodes downstream of it carry tangents); hv is still the full product. */
cs_status cs_objective_hvp(cs_objective *o, const double *v, int layer, double *hv,
                           cs_err *err) CS_MUST_CHECK;

/* fv = F v with F = (1/N) sum_n g_n g_n^T the empirical Fisher: per batch
 * one forward-mode pass gives g_n^T v = (dl_n/dz)^T (J_n v), then one
 * backward seeded with (1/N) (g_n^T v) dl_n/dz sums the g_n -- no
 * per-sample gradient is ever formed. */
cs_status cs_objective_empfvp(cs_objective *o, const double *v, int layer, double *fv,
                              cs_err *err) CS_MUST_CHECK;

/* gv = G v (generalised Gauss-Newton), same conventions. */
cs_status cs_objective_ggnvp(cs_objective *o, const double *v, int layer, double *gv,
                             cs_err *err) CS_MUST_CHECK;

#endif
