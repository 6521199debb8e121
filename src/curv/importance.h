/* Parameter importance per scalar parameter, from the curvature results of
 * one run (keep_matrices) and the dataset gradient:
 *   value         w
 *   grad          dL/dw
 *   diag_*        the diagonal of ggn, fisher_emp, hessian (exact where the
 *                 run computed it exactly, else Hutchinson's estimate)
 *   obd           1/2 C_ii w^2 (Optimal Brain Damage, LeCun et al. 1990)
 *   obs           w^2 / (2 [(C + lambda I)^-1]_ii) (Optimal Brain Surgeon,
 *                 Hassibi & Stork 1993; WoodFisher, Singh & Alistarh 2020),
 *                 with the layer block of the chosen curvature C: the exact
 *                 full block, or its K-FAC approximation, whose damped
 *                 inverse diagonal is
 *                 sum_pq Q_G[i,p]^2 Q_A[j,q]^2 / (g_p a_q + lambda);
 *                 lambda = rel_damping * trace(C_layer) / n_layer
 *   taylor        |g w| (first-order Taylor saliency, Molchanov et al. 2017)
 * All arrays are in doc/design.md §2.3's parameter order. */
#ifndef CS_CURV_IMPORTANCE_H
#define CS_CURV_IMPORTANCE_H

#include "curv/engine.h"

typedef struct cs_importance {
    int64_t n;
    double *value, *grad, *diag_ggn, *diag_fisher_emp, *diag_hessian, *obd, *obs, *taylor;
    int *layer_unit;       /* unit (output unit / channel) of each parameter, -1 if none */
    double *damping;       /* per layer: the lambda used for obs */
    const char **obs_repr; /* per layer: "full", "kfac" or NULL (no obs) */
} cs_importance;

/* curv: the curvature of obd and obs (its diag, and its full or kfac
 * result, must be in rep).  grad: dL/dtheta (may be NULL: no grad/taylor). */
cs_status cs_importance_compute(const cs_graph *g, const cs_curv_report *rep, const double *grad,
                                cs_curv_kind curv, double rel_damping, cs_importance *out,
                                cs_err *err) CS_MUST_CHECK;
void cs_importance_free(cs_importance *imp);

#endif
