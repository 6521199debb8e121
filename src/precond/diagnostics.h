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
 * The preconditioners are the registry's (precond/precond.h, the same
 * maths as finetune's): each is created, observes the dataset gradient g,
 * is refreshed once on the dataset with the analysed curvature results
 * (ctx.given: the exact ggn, the Fisher for ce and mse, where finetune's
 * default is fisher_mc; the Hessian for newton) and applied to g with the
 * given damping; the step is Delta = -d.  Every name but adamw is analysed
 * (adamw is an update rule over steps; --precond adamw is a usage error
 * naming the supported ones).  sgd ignores the damping; shampoo observes
 * the one gradient g (L = V V^T, R = V^T V) and is grafted onto |g| per
 * layer; ekfac's scalings and smw's rows take a pass over the dataset.
 * A layer a preconditioner cannot serve falls back to sgd for that layer;
 * the fallbacks are reported with the reason. */
#ifndef CS_PRECOND_DIAGNOSTICS_H
#define CS_PRECOND_DIAGNOSTICS_H

#include "precond/precond.h"

/* The comma-separated names into a mask of 1 << cs_precond_kind (usage
 * error for an unknown name or adamw, naming the supported ones). */
cs_status cs_precond_parse_list(const char *text, unsigned *mask, cs_err *err) CS_MUST_CHECK;

/* The curvature results the preconditioners of mask read (to request from
 * the engine with keep_matrices). */
void cs_precond_needs(unsigned mask, unsigned *curvatures, unsigned *reprs);

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
 * Delta out; both g->n_param_scalars long), from the analysed results rep
 * and, where the preconditioner needs per-sample rows, a pass over ds
 * (norm, loss, batch as the analysis'); used_sgd[l] is set for layers that
 * fell back to sgd (may be NULL). */
cs_status cs_precond_step(const cs_graph *g, const cs_dataset *ds, const cs_norm *norm, cs_loss_kind loss,
                          int64_t batch, const cs_curv_report *rep, cs_precond_kind k, double damping,
                          const double *grad, double *step, bool *used_sgd, cs_err *err) CS_MUST_CHECK;

#endif
