/* Elastic weight consolidation (Kirkpatrick et al. 2017, eq. 3): fine-tuning
 * on a new task adds
 *
 *     Omega(theta) = (lambda / 2) sum_i F_i (theta_i - theta*_i)^2
 *
 * to the objective, theta* the weights of the model analyzed on the old task
 * and F the diagonal of its Fisher there.  The gradient gains
 * lambda F_i (theta_i - theta*_i).
 *
 * Scaling: F is the curvature analyze stores, a mean over its N samples
 * (doc/design.md §2.2), and the tuned loss is a mean over the new task's
 * samples, so lambda = 1 weighs the old task's quadratic model as much as
 * one new-task mean loss (Kirkpatrick's lambda, with F averaged instead of
 * summed over the old data).  finetune stores this as the convention
 * ewc_scaling.
 *
 * The vectors are indexed like the graph's float64 parameter vector
 * (cs_graph params[q].offset + flat index). */
#ifndef CS_FINETUNE_EWC_H
#define CS_FINETUNE_EWC_H

#include <stdint.h>

#include "base/status.h"

typedef struct cs_ewc {
    int64_t n;            /* parameter scalars */
    double *fisher;       /* [n] diagonal F_i, owned */
    double *anchor;       /* [n] theta*, owned */
    double lambda;
} cs_ewc;

/* Zeroed vectors of n scalars (lambda 1); free with cs_ewc_free. */
cs_status cs_ewc_alloc(cs_ewc *e, int64_t n, cs_err *err) CS_MUST_CHECK;
void cs_ewc_free(cs_ewc *e);

/* Omega(theta) over [i0, i1); with grad non-NULL, adds its gradient
 * lambda F_i (theta_i - theta*_i) to grad[i0, i1). */
double cs_ewc_penalty(const cs_ewc *e, const double *theta, double *grad, int64_t i0, int64_t i1);

#endif
