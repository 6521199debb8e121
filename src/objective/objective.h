/* The dataset loss L(theta) = (1/N) sum_n l(f(x_n; theta), y_n) of a model
 * on a fixed sample set, with its exact derivatives:
 *   gradient                 dL/dtheta
 *   Hessian-vector product   H v      (forward-over-reverse R-operator)
 *   GGN-vector product       G v = (1/N) sum_n J_n^T Lambda_n J_n v
 * All vectors are double, g->n_param_scalars long, in doc/design.md §2.3's parameter
 * order.  Plans and derivative buffers are made once; each product is one
 * pass over the data with no allocation.
 *
 * Micro-batches and lanes.  Each batch is cut into micro-batches of
 * `micro` samples (the model's forward values for one micro-batch take
 * about CS_OBJ_MICRO_BYTES, so a sample's whole forward and backward stays
 * in the core's cache), and `n_lanes` threads (--threads) run micro-batches
 * side by side, each lane on its own plans.  The loss is a sum over samples
 * (doc/design.md §2.11), so this changes nothing but the rounding; to keep results
 * identical for every thread count, the micro-batch size does not depend on
 * the thread count, and the micro-batches' contributions are added in
 * micro-batch order.  With CS_OBJ_WHOLE_BATCH (the curvature engine, which
 * reads the batch's plan directly), micro = batch and there is one lane:
 * plan[0] and ad[0] are the full batch's, plan[1] and ad[1] the last
 * partial batch's. */
#ifndef CS_OBJECTIVE_OBJECTIVE_H
#define CS_OBJECTIVE_OBJECTIVE_H

#include "data/dataset.h"
#include "interp/autodiff.h"
#include "objective/loss.h"
#include "interp/plan.h"

/* Objective flags, passed with the CS_AD_* mode. */
enum {
    CS_OBJ_WHOLE_BATCH = 1u << 16, /* one lane, micro = batch: plan / ad are the batch's */
};

/* Forward values per micro-batch the lanes aim at (see above). */
#define CS_OBJ_MICRO_BYTES (2u << 20)

typedef struct cs_obj_lane {
    int n_sizes;          /* distinct micro-batch sizes: plan i runs size[i] samples */
    int64_t size[3];
    cs_plan plan[3];
    cs_ad ad[3];
    double *work;         /* 2 * classes + 2 doubles for the loss rows */
    cs_status st;         /* this lane's failure, if any, and its message */
    cs_err err;
} cs_obj_lane;

typedef struct cs_objective {
    const cs_graph *g;
    const cs_dataset *ds;
    const cs_norm *norm;
    cs_loss_head head;
    int64_t batch;
    int64_t classes;
    int64_t micro;        /* samples per micro-batch */
    int n_lanes;
    cs_obj_lane *lanes;   /* [n_lanes] */
    int n_plans;          /* CS_OBJ_WHOLE_BATCH: 1, or 2 with a partial last batch; else 0 */
    cs_plan *plan;        /* CS_OBJ_WHOLE_BATCH: lanes[0].plan, else NULL */
    cs_ad *ad;
    int max_slots;        /* micro-batches per batch */
    double *slots;        /* n_lanes > 1: [max_slots, n_param_scalars] contributions */
    double *slot_loss;    /* [max_slots] */
    int64_t *slot_hits;   /* [max_slots] */
} cs_objective;

/* mode: CS_AD_* passes to plan (CS_AD_HVP for everything), optionally with
 * CS_OBJ_WHOLE_BATCH.  Lanes: the OpenMP thread count at init, at most one
 * per micro-batch of a batch.  Borrows g, ds and norm, which must outlive o
 * (base/ownership.h). */
cs_status cs_objective_init(cs_objective *o, const cs_graph *g, const cs_dataset *ds,
                            const cs_norm *norm, cs_loss_kind loss, int64_t batch,
                            unsigned mode, cs_err *err) CS_MUST_CHECK;
void cs_objective_free(cs_objective *o);

/* The bytes o holds: every lane's plans and derivative buffers (their
 * arenas' bytes handed out, all of them zeroed, so resident) and the
 * gradient slots. */
int64_t cs_objective_bytes(const cs_objective *o);

/* The micro-batch size for batches of `batch` samples of graph g (batch
 * itself where g cannot run smaller batches). */
int64_t cs_objective_micro_batch(const cs_graph *g, int64_t batch);

/* L and dL/dtheta (grad may be NULL for the loss alone). */
cs_status cs_objective_gradient(cs_objective *o, double *loss, double *grad, cs_err *err)
    CS_MUST_CHECK;

/* Loss, correct predictions and gradient of the mean loss over the single
 * batch [start, start + batch) (the last one may be shorter); grad gets
 * (1/B) sum over the batch, the training step's gradient. */
cs_status cs_objective_batch_gradient(cs_objective *o, int64_t start, double *loss, int64_t *hits,
                                      double *grad, cs_err *err) CS_MUST_CHECK;

/* The sums over samples [start, end) alone, for a batch split across
 * ranks (finetune, doc/design.md §2.12): *loss_sum the summed loss, *hits
 * the correct predictions, grad (NULL: none) scale times the summed
 * gradients; nothing is reduced here.  [start, end) is cut like the
 * batches of the dataset, so it must be one of them or a range of whole
 * ones. */
cs_status cs_objective_range_gradient(cs_objective *o, int64_t start, int64_t end, double scale,
                                      double *loss_sum, int64_t *hits, double *grad,
                                      cs_err *err) CS_MUST_CHECK;
/* Sum of the losses of samples [start, end) and their correct predictions
 * (forward passes only; any mode, 0 included). */
cs_status cs_objective_loss(cs_objective *o, int64_t start, int64_t end, double *loss_sum,
                            int64_t *hits, cs_err *err) CS_MUST_CHECK;

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
