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

/* One time step of one sequence as K-FAC's expand setting sees it
 * (doc/design.md §2.4): x_t [I]; h_prev = h_{t-1} [H], the vector R
 * multiplies (GRU with linear_before_reset 0: its h block multiplies
 * rh_prev = r_t h_{t-1} [H] instead; rh_prev NULL otherwise); gpre [G H]
 * = dl / d(pre-activation) of each gate row, the pre-activation being
 * W x + R h + Wb + Rb before any peephole term (LSTM) or nonlinearity.
 * The pointers are valid during the call only. */
typedef struct cs_rnn_step {
    int dir;
    int64_t b, t;
    const double *x, *h_prev, *rh_prev, *gpre;
} cs_rnn_step;

typedef void (*cs_rnn_step_fn)(void *ctx, const cs_rnn_step *s);

/* Batch element b's backward through time as cs_rnn_sample_vjp (gout NULL:
 * zero output gradients, the forward's values still go out), calling fn at
 * every step of every direction; no gradient is written. */
cs_status cs_rnn_sample_steps(const cs_node *node, cs_tensor *const *in, int n_in, cs_tensor *const *gout,
                              int n_out, int64_t b, cs_rnn_step_fn fn, void *ctx, void *scratch,
                              cs_err *err) CS_MUST_CHECK;

#endif
