/* What the recurrent layer kind (interp/layers/recurrent.c) needs from the
 * RNN / GRU / LSTM operators (interp/ops/recurrent.c): the op's own
 * backward through time run on one batch element, so that per-sample
 * gradients are the op's vjp and the recurrence is written once.
 * Private to interp/ (tests/base/test_layering.sh). */
#ifndef CS_INTERP_OPS_RECURRENT_H
#define CS_INTERP_OPS_RECURRENT_H

#include <stddef.h>
#include <stdint.h>

#include "graph/graph.h"

/* Workspace cs_rnn_sample_vjp needs for node's inputs in[0 .. n_in) (the
 * values of the node's inputs, NULL where absent), or 0 when the node is
 * not one the operator runs. */
size_t cs_rnn_sample_scratch_bytes(const cs_node *node, cs_tensor *const *in, int n_in);

/* Batch element b alone: gin[k] += the gradient of input k (k < 8; gin[k]
 * NULL to skip, of the input's shape, float or double) from the output
 * gradients gout[0 .. n_out) (NULL for zero), all directions, at the
 * inputs in.  gin[0], gin[5] and gin[6] (X and the initial states) get
 * only element b's entries; W, R, B and P get its whole contribution.
 * scratch holds cs_rnn_sample_scratch_bytes. */
cs_status cs_rnn_sample_vjp(const cs_node *node, cs_tensor *const *in, int n_in, cs_tensor *const *gout, int n_out,
                            int64_t b, cs_tensor *const *gin, void *scratch, cs_err *err) CS_MUST_CHECK;

#endif
