/* Loss and accuracy of a model over a dataset (`curvscope eval`). */
#ifndef CS_OBJECTIVE_EVALUATE_H
#define CS_OBJECTIVE_EVALUATE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "data/dataset.h"
#include "graph/graph.h"
#include "objective/loss.h"
#include "interp/plan.h" /* cs_plan_prepare_batch */

typedef struct cs_eval_opts {
    cs_loss_kind loss;
    int64_t batch;                        /* samples per forward pass (> 0) */
    const cs_norm *norm;
    /* Called after each batch with samples done so far; may be NULL. */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} cs_eval_opts;

typedef struct cs_eval_result {
    int64_t samples;
    int64_t classes;       /* model outputs per sample */
    double loss;           /* mean per-sample loss */
    bool has_accuracy;     /* integer labels */
    double accuracy;       /* fraction with argmax z == label */
    double seconds;        /* wall time of the forward passes */
    cs_loss_head head;
} cs_eval_result;

/* The graph must have one user-fed input; its first symbolic dimension is
 * the batch. */
cs_status cs_evaluate(const cs_graph *g, const cs_dataset *ds, const cs_eval_opts *opts,
                      cs_eval_result *out, cs_err *err) CS_MUST_CHECK;

#endif
