/* Preconditioned-step diagnostics: what a second-order step would do at
 * the analysed point.  For each preconditioner C and damping lambda the
 * step is Delta = -(C + lambda I)^-1 g per layer block, and per layer and for
 * the whole network the diagnostics are: |g|, |Delta|, the cosine between
 * -g and Delta, the decrease predicted by the exact quadratic model
 * g^T Delta + 1/2 Delta^T H Delta (H Delta by a Hessian-vector product), the
 * actual change L(theta + Delta) - L(theta) on the same samples, their ratio
 * rho, and the best step size alpha of L(theta + alpha Delta) on the grid
 * 2^-8 .. 2^2.
 *
 * Preconditioners (one table in steps.c):
 *   sgd      C = 0: Delta = -g (damping ignored)
 *   diag     diagonal of the Fisher (= GGN for ce and mse)
 *   kfac     the K-FAC block G (x) A: (G (x) A + lambda I)^-1 exactly, from the
 *            factors' eigenvectors (not the pi-damped factor inverse)
 *   unit     the unit-wise blocks of the Fisher (read off the full block)
 *   full     the Fisher layer block (layers up to --max-full)
 *   newton   the Hessian layer block with its eigenvalues replaced by their
 *            absolute values, (|H| + lambda I)^-1 (saddle-free Newton,
 *            Dauphin et al. 2014): negative curvature is followed downhill
 *            instead of being climbed
 *   shampoo  -(L + lambda I)^-1/4 G (R + lambda I)^-1/4 on the layer's
 *            gradient matrix G ([W | b], rows = output units), with L, R
 *            Shampoo's statistics from the per-sample gradients (Gupta,
 *            Koren & Singer 2018; one step, so the statistics are the
 *            dataset's, not an accumulation over iterations)
 * A layer a preconditioner cannot serve (no block computed) falls back to
 * sgd for that layer; the fallbacks are reported. */
#ifndef CS_PRECOND_DIAGNOSTICS_H
#define CS_PRECOND_DIAGNOSTICS_H

#include "curv/engine.h"

typedef enum cs_precond_kind {
    CS_PRE_SGD,
    CS_PRE_DIAG,
    CS_PRE_KFAC,
    CS_PRE_UNIT,
    CS_PRE_FULL,
    CS_PRE_NEWTON,
    CS_PRE_SHAMPOO,
    CS_PRE_COUNT
} cs_precond_kind;

const char *cs_precond_name(cs_precond_kind k);
cs_status cs_precond_parse_list(const char *text, unsigned *mask, cs_err *err) CS_MUST_CHECK;

/* The curvature results each preconditioner reads (to request from the
 * engine with keep_matrices), and whether Shampoo's statistics are needed. */
void cs_precond_needs(unsigned preconds, unsigned *curvatures, unsigned *reprs, bool *shampoo);

typedef struct cs_step_result {
    cs_precond_kind precond;
    double damping;
    int layer;              /* -1: the whole network */
    double grad_norm, step_norm, cosine, predicted, actual, rho, best_lr, best_change;
} cs_step_result;

typedef struct cs_step_report {
    int n;
    cs_step_result *res;
    int n_notes;
    char notes[32][160];
} cs_step_report;

/* g's parameters are moved during the evaluations and restored before
 * return.  rep: the curvature run's results (keep_matrices). */
cs_status cs_step_diagnostics(cs_graph *g, const cs_dataset *ds, const cs_norm *norm,
                              cs_loss_kind loss, int64_t batch, const cs_curv_report *rep,
                              unsigned preconds, const double *dampings, int n_dampings,
                              cs_step_report *out, cs_err *err) CS_MUST_CHECK;
void cs_step_report_free(cs_step_report *r);

/* The step of one preconditioner and damping (the dataset gradient g in,
 * Delta out; both g->n_param_scalars long); used_sgd[l] is set for layers
 * that fell back to sgd (may be NULL). */
cs_status cs_precond_step(const cs_graph *g, const cs_curv_report *rep, cs_precond_kind k,
                          double damping, const double *grad, double *step, bool *used_sgd,
                          cs_err *err) CS_MUST_CHECK;

#endif
