/* Validating influence scores by retraining (doc/design.md §2.14).
 *
 * Every retraining is the same tuning from the model's own weights:
 * full-batch gradient descent (cs_finetune with precond sgd, momentum 0,
 * batch = the training set, `epochs` steps of learning rate `lr` and
 * decoupled weight decay `weight_decay`, the same seed), so that two runs
 * differ only in the examples they see.  theta_full is the tuning on the
 * whole training set; L_q(theta) is query q's own loss.
 *
 * Leave-one-out (loo > 0): K training examples drawn uniformly without
 * replacement (seeded); for each m the tuning on the data without m.
 *   actual(m, q)    = L_q(theta_-m) - L_q(theta_full)
 *   predicted(m, q) = s(m, q) / N       (influence.h: removing m raises
 *                                        q's loss by about s / N)
 * and Pearson's and Spearman's correlation over all K x Q pairs.
 *
 * Linear datamodeling score (Park et al. 2023, TRAK; lds > 0): S subsets
 * of round(fraction N) examples drawn uniformly without replacement; for
 * each subset T the tuning on T alone.
 *   actual(T, q)    = L_q(theta_T) - L_q(theta_full)
 *   predicted(T, q) = sum_{m not in T} s(m, q) / N   (the linear datamodel:
 *                     the group of removed examples, each counted once)
 * LDS = the mean over queries of Spearman(predicted, actual) over the S
 * subsets (queries whose correlation is undefined are left out and not
 * counted).  The 1/N and the sign of the prediction make both correlations
 * positive when the scores are right; any positive scale leaves them as
 * they are, so dot and cosine are validated the same way.
 *
 * The model's weights are restored when this returns (success or not). */
#ifndef CS_INFLUENCE_VALIDATE_H
#define CS_INFLUENCE_VALIDATE_H

#include <stdint.h>

#include "data/dataset.h"
#include "graph/graph.h"
#include "influence/influence.h"
#include "objective/loss.h"

typedef struct cs_validate_opts {
    int64_t loo;             /* K examples left out; 0: no leave-one-out */
    int64_t lds;             /* S subsets; 0: no LDS */
    double lds_fraction;     /* training examples per subset / N (default 0.5) */
    int epochs;              /* full-batch steps of each tuning (default 100) */
    double lr;               /* default 0.1 */
    double weight_decay;     /* decoupled, as finetune's --weight-decay (default 0) */
    uint64_t seed;           /* the draws of examples and subsets, and the tuning's */
    cs_loss_kind loss;
    const cs_norm *norm;     /* borrowed; may be NULL */
    const volatile int *cancel;
} cs_validate_opts;

void cs_validate_opts_init(cs_validate_opts *o);

/* One method's predictions and correlations. */
typedef struct cs_validate_method {
    const char *name;             /* "ekfac", "dot", "cosine" (static) */
    double *loo_predicted;        /* [n_loo][n_query], NULL without leave-one-out */
    double loo_pearson, loo_spearman;
    double *lds_predicted;        /* [n_lds][n_query], NULL without LDS */
    double lds_pearson, lds;      /* means over queries of Pearson / Spearman */
    int64_t lds_queries;          /* queries whose correlations are defined */
} cs_validate_method;

typedef struct cs_validate_result {
    int64_t n_train, n_query, n_loo, n_lds, subset_size;
    int64_t *loo_index;           /* [n_loo] the examples left out, ascending */
    double *full_loss;            /* [n_query] L_q(theta_full) */
    double *loo_actual;           /* [n_loo][n_query] */
    double *lds_actual;           /* [n_lds][n_query] */
    int n_methods;
    cs_validate_method methods[4];
} cs_validate_result;

/* Retrains g (in place; its weights are restored) as above and compares
 * with the scores of r, which cs_influence_compute gave for the same g,
 * train and query.  res is initialised here; free with
 * cs_validate_result_free. */
cs_status cs_influence_validate(cs_graph *g, const cs_dataset *train, const cs_dataset *query,
                                const cs_influence_result *r, const cs_validate_opts *o, cs_validate_result *res,
                                cs_err *err) CS_MUST_CHECK;
void cs_validate_result_free(cs_validate_result *res);

#endif
