/* Which initializers outside Gemm / Conv / MatMul weights are trainable
 * parameters (doc/design.md §2.3, "elementwise parameters").
 *
 * A Gemm, Conv or MatMul weight is a parameter by its place in the node.
 * An initializer read by Add, Sub, Mul or Expand may as well be a scale or
 * bias (LayerNorm decomposed at opset 13, a positional embedding, a class
 * token or an LSTM's learned h0 / c0) as a constant of the export (eps,
 * 1/sqrt(d), Gelu's 0.5, an attention mask).  The rule, in order:
 *   1. the user's choice (--train-params / --freeze-params) decides;
 *   2. it must be floating, of more than one element, every value finite;
 *   3. for Add / Sub / Mul, the other operand must depend on a graph input
 *      (else the node computes a constant), and the initializer must not
 *      widen the output: its broadcast shape fits inside the other's;
 *   4. its values must not be a mask: no |value| >= 1e4 (the finite
 *      "-inf" of an additive mask), not only 0s and 1s with both present;
 *   5. a name that is not a PyTorch parameter's (it has '/' or ':', as
 *      the exporter's own constants do: "onnx::Mul_12",
 *      "/attn/Constant_output_0") must show trained values: not all
 *      equal.  A PyTorch name may hold untrained ones (LayerNorm's weight
 *      of ones, bias of zeros). */
#ifndef CS_INTERP_PARAM_RULE_H
#define CS_INTERP_PARAM_RULE_H

#include <stdbool.h>

#include "graph/graph.h"

/* Whether initializer v, read by node k (Add, Sub, Mul or Expand), is a
 * parameter by the rule above; *why (may be NULL) names the first clause
 * that refused it, or "" when it is one. */
bool cs_param_rule_ok(const cs_graph *g, int k, int v, const char **why);

/* The user's choice: freeze and train are comma-separated initializer
 * names (either may be NULL or empty); sets each value's train_choice and
 * finds the layers again.  An unknown name, a name in both lists, or a
 * name to train that no layer kind can read as a parameter is an error
 * (then the choices of this call are undone and the layers found as
 * before it). */
cs_status cs_params_choose(cs_graph *g, const char *freeze, const char *train, cs_err *err) CS_MUST_CHECK;

#endif
