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
 * K-FAC form (Ritter, Botev & Barber 2018, online structured Laplace): a
 * layer whose Fisher block is the Kronecker product A (x) G of its input and
 * output-gradient factors (curv/engine.h; per group for grouped layers)
 * contributes instead
 *
 *     (lambda / 2) vec(dW)^T (A (x) G) vec(dW) = (lambda / 2) tr(dW^T G dW A),
 *
 * dW = theta - theta* as the [dG, dA] matrix of the engine's (unit, feature)
 * index (bias the last feature), with gradient lambda G dW A.  Its diagonal
 * entries are then 0, so no element counts twice.
 *
 * The vectors are indexed like the graph's float64 parameter vector
 * (cs_graph params[q].offset + flat index). */
#ifndef CS_FINETUNE_EWC_H
#define CS_FINETUNE_EWC_H

#include <stdint.h>

#include "base/status.h"
#include "curv/engine.h"

/* One layer in K-FAC form. */
typedef struct cs_ewc_kfac {
    int64_t offset, numel;   /* the layer's span of the parameter vector */
    int64_t groups, dA, dG;
    double *A, *G;           /* [groups][dA][dA], [groups][dG][dG], owned */
    int64_t *index;          /* [numel][3]: (group, unit, feature), owned */
    double *work;            /* [3][dG][dA] scratch of cs_ewc_penalty, owned */
} cs_ewc_kfac;

typedef struct cs_ewc {
    int64_t n;            /* parameter scalars */
    double *fisher;       /* [n] diagonal F_i, owned */
    double *anchor;       /* [n] theta*, owned */
    double lambda;
    int n_kfac;
    cs_ewc_kfac *kfac;    /* [n_kfac], owned */
} cs_ewc;

/* Zeroed vectors of n scalars (lambda 1); free with cs_ewc_free. */
cs_status cs_ewc_alloc(cs_ewc *e, int64_t n, cs_err *err) CS_MUST_CHECK;
void cs_ewc_free(cs_ewc *e);

/* The K-FAC factors of r (a kfac result kept with keep_matrices) for the
 * layer at [offset, offset + r->dim), copied; that layer's diagonal entries
 * are set to 0. */
cs_status cs_ewc_add_kfac(cs_ewc *e, const cs_curv_result *r, int64_t offset, cs_err *err) CS_MUST_CHECK;

/* K-FAC factors of curvature curv (ggn / fisher, or fisher_emp) for every
 * layer the engine has them for, from data ds at g's current weights, which
 * must be the anchor (CS_ERR_USAGE otherwise: the factors are the
 * curvature at theta*).  *n_kfac: the layers now in K-FAC form; the others
 * keep their diagonal. */
cs_status cs_ewc_kfac_from_data(cs_ewc *e, const cs_graph *g, const cs_dataset *ds, cs_curv_kind curv,
                                int64_t batch, cs_loss_kind loss, const cs_norm *norm, int *n_kfac,
                                cs_err *err) CS_MUST_CHECK;

/* Omega(theta) over [i0, i1) (K-FAC layers that lie inside it); with grad
 * non-NULL, adds its gradient to grad[i0, i1).  Uses the K-FAC layers'
 * work arrays. */
double cs_ewc_penalty(const cs_ewc *e, const double *theta, double *grad, int64_t i0, int64_t i1);

#endif
