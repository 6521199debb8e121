/* Pruning check: how well each importance score predicts the damage of
 * removing weights.  For every score and fraction p, the p share of weights
 * with the lowest score (ranked globally over the weight tensors of Gemm,
 * MatMul and Conv layers; biases and normalisation parameters are kept) is
 * set to zero, and loss and accuracy are measured on the data; the model is
 * restored afterwards.  Scores: magnitude |w| (the usual baseline), taylor,
 * obd, obs -- those the importance result has. */
#ifndef CS_CURV_PRUNE_H
#define CS_CURV_PRUNE_H

#include "curv/importance.h"
#include "objective/evaluate.h"

typedef struct cs_prune_point {
    const char *score;   /* "none" for the unpruned model (fraction 0) */
    double fraction;
    int64_t n_pruned;
    double loss, accuracy;  /* accuracy NaN without class labels */
} cs_prune_point;

/* g's weights are changed during the check and restored before return
 * (also on error).  out: malloc'ed array of *n_out points. */
cs_status cs_prune_check(cs_graph *g, const cs_dataset *ds, const cs_eval_opts *eo,
                         const cs_importance *imp, const double *fractions, int n_fractions,
                         cs_prune_point **out, int *n_out, cs_err *err) CS_MUST_CHECK;

#endif
