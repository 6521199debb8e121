/* Loss heads: DESIGN.md's per-sample losses on the model's logits z.
 *
 *   ce   l = -log softmax(z)_y = logsumexp(z) - z_y        (integer labels)
 *   mse  l = 1/2 sum_c (z_c - y_c)^2, y the one-hot vector of an integer
 *        label (which must fit the output width) or real-valued targets
 *
 * The dataset loss is the mean over samples.  When the chosen graph output
 * comes straight from a Softmax or LogSoftmax over the class axis, that
 * node's input is taken as z (cs_loss_head.through names the node). */
#ifndef CS_INTERP_LOSS_H
#define CS_INTERP_LOSS_H

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

#endif
