/* Training-data influence: how much each training example m helped each
 * query q (doc/design.md §2.14).
 *
 *   ekfac     s(m, q) = g_q^T (C + lambda I)^-1 g_m with C the EK-FAC
 *             approximation of the curvature (Grosse et al. 2023, eq. 3 and
 *             section 3.2: K-FAC's eigenbases Q_G (x) Q_A and the diagonal
 *             re-fitted to the per-sample gradients, as kronfluence fits
 *             it); the fitting and the product are precond/pre_ekfac.c's.
 *             Any preconditioner of precond/precond.h may stand in ("full":
 *             the exact damped layer blocks, which the tests compare with).
 *   dot       g_q^T g_m (gradient similarity)
 *   cosine    g_q^T g_m / (|g_q| |g_m|)
 *   tracin    sum_k lr_k g_q(theta_k)^T g_m(theta_k) over checkpoints theta_k
 *             (Pruthi et al. 2020, TracInCP eq. 3), and its self-influence
 *             sum_k lr_k |g_m(theta_k)|^2
 *   self      s(m, m) = g_m^T (C + lambda I)^-1 g_m
 * g_n is the gradient of example n's own loss l_n (not divided by N); C is
 * the curvature of the mean loss (1/N) sum_n l_n.
 *
 * Sign: positive = helpful.  s is minus Koh & Liang's (2017) I_up,loss:
 * removing m from the mean loss moves the parameters by about
 * (1/N) (C + lambda I)^-1 g_m, so the query's loss rises by about s / N;
 * a positive s means training on m lowered the query's loss.
 *
 * Layers the preconditioner does not serve (no K-FAC form or no per-sample
 * gradients) are excluded from every method, each with its reason, so that
 * all scores are over the same parameters.
 *
 * Memory: the preconditioned query gradients are formed once
 * (n_query x P doubles); the training gradients are streamed one example at
 * a time, and the scores kept are n_query x n_train per method. */
#ifndef CS_INFLUENCE_INFLUENCE_H
#define CS_INFLUENCE_INFLUENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "curv/engine.h"
#include "data/dataset.h"
#include "graph/graph.h"
#include "objective/loss.h"

enum { CS_INF_EKFAC = 1u << 0, CS_INF_DOT = 1u << 1, CS_INF_COSINE = 1u << 2, CS_INF_TRACIN = 1u << 3 };

typedef struct cs_influence_opts {
    unsigned methods;       /* CS_INF_* bits */
    const char *precond;    /* the inverse-curvature product, default "ekfac" */
    cs_curv_kind curv;      /* default ggn (the Fisher for ce) */
    double damping;         /* lambda, default 1e-3 */
    int64_t batch;          /* samples per curvature pass, default 128 */
    int64_t max_full;       /* largest block for precond "full", default 4096 */
    cs_loss_kind loss;
    const cs_norm *norm;    /* borrowed; may be NULL */
    uint64_t seed;
    const volatile int *cancel;   /* polled between examples; may be NULL */
    /* TracIn's checkpoints (borrowed): graphs with the model's parameters
     * (same initializers, shapes and order), and the learning rate of each. */
    const cs_graph *const *checkpoints;
    const double *checkpoint_lr;
    int n_checkpoints;
} cs_influence_opts;

void cs_influence_opts_init(cs_influence_opts *o);

typedef struct cs_influence_result {
    int64_t n_train, n_query, n_layers;
    double *ekfac, *dot, *cosine;   /* [n_query][n_train] each, NULL when not asked */
    double *self;                   /* [n_train] with ekfac, else NULL */
    double *tracin;                 /* [n_query][n_train] with tracin, else NULL */
    double *tracin_self;            /* [n_train] with tracin, else NULL */
    double *train_loss;             /* [n_train] each example's loss */
    double *query_loss;             /* [n_query] */
    bool *excluded;                 /* [n_layers] */
    const char **why;               /* [n_layers]: the reason (static strings) */
    int64_t params_used;            /* parameters of the layers kept */
} cs_influence_result;

/* The scores of every training example on every query.  Borrows g, train
 * and query; res is initialised here; free with cs_influence_result_free.
 * A checkpoint whose parameters differ from g's (names, sizes, order) is
 * CS_ERR_USAGE naming the checkpoint's index and the first difference. */
cs_status cs_influence_compute(const cs_graph *g, const cs_dataset *train, const cs_dataset *query,
                               const cs_influence_opts *o, cs_influence_result *res, cs_err *err) CS_MUST_CHECK;
void cs_influence_result_free(cs_influence_result *res);

/* Pearson's and Spearman's correlation of x and y [n] (Spearman: Pearson of
 * the ranks, ties at their mean rank); NaN for n < 2 or a constant series. */
double cs_pearson(const double *x, const double *y, int64_t n);
cs_status cs_spearman(const double *x, const double *y, int64_t n, double *rho, cs_err *err) CS_MUST_CHECK;

#endif
