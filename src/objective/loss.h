/* Loss heads: doc/design.md §2.1's per-sample losses on the model's logits z.
 *
 *   ce   l = -log softmax(z)_y = logsumexp(z) - z_y        (integer labels)
 *   mse  l = 1/2 sum_c (z_c - y_c)^2, y the one-hot vector of an integer
 *        label (which must fit the output width) or real-valued targets
 *
 * The dataset loss is the mean over samples.  When the chosen graph output
 * comes straight from a Softmax or LogSoftmax over the class axis, that
 * node's input is taken as z (cs_loss_head.through names the node). */
#ifndef CS_OBJECTIVE_LOSS_H
#define CS_OBJECTIVE_LOSS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "data/dataset.h"
#include "graph/graph.h"

typedef enum cs_loss_kind { CS_LOSS_CE, CS_LOSS_MSE, CS_LOSS_COUNT } cs_loss_kind;

typedef struct cs_loss_head {
    cs_loss_kind kind;
    int output;          /* graph output index the loss reads */
    int logits_value;    /* value index of z */
    const char *through; /* name of the Softmax/LogSoftmax node skipped, or NULL */
    const char *through_op;
} cs_loss_head;

/* "ce" / "mse" -> kind; CS_ERR_USAGE for anything else. */
cs_status cs_loss_parse(const char *name, cs_loss_kind *out, cs_err *err) CS_MUST_CHECK;
const char *cs_loss_name(cs_loss_kind k);

/* Choose the logits of graph output 0. */
cs_status cs_loss_head_init(cs_loss_head *h, const cs_graph *g, cs_loss_kind kind,
                            cs_err *err) CS_MUST_CHECK;

/* Check that the dataset's labels suit the loss for `classes` outputs
 * (ce: integer labels in [0, classes); mse: integer labels in range, or real
 * targets of width classes). */
cs_status cs_loss_check_labels(const cs_loss_head *h, const cs_dataset *ds, int64_t classes,
                               cs_err *err) CS_MUST_CHECK;

/* Loss of one sample with logits z[0..C) (float or double per is_double),
 * dataset sample index i for its label.  If grad is non-NULL it receives
 * dl/dz (C values). */
double cs_loss_sample(const cs_loss_head *h, const void *z, bool is_double, int64_t C,
                      const cs_dataset *ds, int64_t i, double *grad);

/* Sum of the per-sample losses of a batch with logits z [B, C] starting at
 * dataset sample `start`, and (integer labels) how many argmax z == label;
 * hits may be NULL. */
double cs_loss_batch_sum(const cs_loss_head *h, const cs_tensor *z, const cs_dataset *ds,
                         int64_t start, int64_t *hits);

/* ---- batched seeds for the derivative passes ----
 * z is the logits tensor [B, C] of a batch that starts at dataset sample
 * `start`; out has z's shape and dtype; work holds 2 C doubles. */

/* out_n = scale * dl_n/dz_n (the gradient seed). */
void cs_loss_grad_batch(const cs_loss_head *h, const cs_tensor *z, const cs_dataset *ds,
                        int64_t start, double scale, cs_tensor *out, double *work);

/* out_n = scale * Lambda_n tz_n with Lambda_n = d^2 l_n / dz^2 (the
 * R-operator's seed for Hessian- and GGN-vector products):
 * ce: Lambda = diag(p) - p p^T, p = softmax(z); mse: Lambda = I. */
void cs_loss_hvp_batch(const cs_loss_head *h, const cs_tensor *z, const cs_tensor *tz,
                       double scale, cs_tensor *out, double *work);

/* Symmetric factor of the loss Hessian at one logit row z[0..C):
 * Lambda = S S^T with S row-major [C, C] (column c is backpropagated as one
 * "sample" by the exact Fisher / GGN).  ce: S[:, c] = sqrt(p_c) (e_c - p)
 * (Martens 2014, "New insights and perspectives on the natural gradient
 * method", sec. 9.2); mse: S = I. */
void cs_loss_hessian_factor(const cs_loss_head *h, const double *z, int64_t C, double *S,
                            double *work);

/* Gradient dl/dz at z[0..C) for a target drawn from the model's predictive
 * distribution (Monte-Carlo Fisher): ce draws y ~ softmax(z) and gives
 * softmax(z) - e_y; mse draws y ~ N(z, I) and gives z - y = -eps.  grad
 * has C entries. */
struct cs_rng;

/* The three kinds of per-sample seeds that per-layer captures are taken
 * with (ASDL's fisher_emp / fisher_mc / fisher_exact): */
typedef enum cs_seed_kind {
    CS_SEED_TRUE_LABEL,    /* dl(z_n, y_n)/dz: empirical Fisher */
    CS_SEED_SAMPLED,       /* dl(z_n, y~p(y|x_n))/dz, one fresh draw: Monte-Carlo Fisher */
    CS_SEED_FACTOR_COLUMN  /* column `column` of S_n, Lambda_n = S_n S_n^T: exact Fisher / GGN */
} cs_seed_kind;

/* Fill out (z's shape and dtype) with each sample's seed of the given kind,
 * unscaled.  work holds C * C + 2 C doubles. */
void cs_loss_seed_batch(const cs_loss_head *h, cs_seed_kind kind, int64_t column,
                        const cs_tensor *z, const cs_dataset *ds, int64_t start,
                        struct cs_rng *rng, cs_tensor *out, double *work);

void cs_loss_sampled_grad(const cs_loss_head *h, const double *z, int64_t C, struct cs_rng *rng,
                          double *grad);

#endif
