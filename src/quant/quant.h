/* Hessian-aware quantization (HAWQ-V2, Dong et al. 2020).
 *
 * What is quantized: the weight tensor (the first parameter) of every layer
 * pruning acts on (cs_layer_kind.prunable: Gemm, MatMul, Conv, ...); biases
 * and normalisation scales stay float.  Quantizer: symmetric, per tensor,
 * uniform, round half to even (ONNX QuantizeLinear's rounding):
 *   qmax = 2^(b-1) - 1,  s = float32(max|W| / qmax)  (s = 1 when W = 0),
 *   q = clamp(nearbyint(W / s), -qmax, qmax),  Q(W) = float32(s q).
 * Sensitivity (HAWQ-V2 eq. 4): Omega_i(b) = Tr(H_i) / n_i * ||Q_b(W_i) - W_i||^2
 * with Tr(H_i) the trace of the Hessian block of the layer's weights (bias
 * excluded), estimated by Hutchinson's method with Rademacher probes
 * restricted to that block (Hutchinson 1989; Avron & Toledo 2011). */
#ifndef CS_QUANT_QUANT_H
#define CS_QUANT_QUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "data/dataset.h"
#include "graph/graph.h"
#include "objective/objective.h"

#define CS_QUANT_MAX_BITS 8
#define CS_QUANT_MIN_BITS 2

/* True when layer l's weight is quantized (see above). */
bool cs_quant_layer(const cs_graph *g, int l);

/* The scale of Q_bits for n values x (double copies of the tensor). */
float cs_quant_scale(const double *x, int64_t n, int bits);
/* q[i] = clamp(nearbyint(x[i] / s), -qmax, qmax) and y[i] = float32(s q[i])
 * (either may be NULL); returns ||y - x||^2. */
double cs_quant_round(const double *x, int64_t n, int bits, float s, int8_t *q, double *y);

/* Per-layer Hutchinson traces of the weights' Hessian blocks.  Layers not
 * quantized get NaN.  trace, se: [g->n_layers].  Probe k of layer l is
 * cs_probe_vector(seed + l, k, Rademacher) over the weight's n_l entries. */
cs_status cs_quant_traces(cs_objective *obj, int probes, uint64_t seed, double *trace, double *se,
                          cs_err *err) CS_MUST_CHECK;

/* Bit allocation: choose b_l in bits[0..n_bits) for each of n layers to
 * minimise sum_l omega[l * n_bits + k] subject to sum_l size[l] * b_l <=
 * budget (bits).  Exact: dynamic programming over the Pareto frontier of
 * (size, omega) pairs, layer by layer (HAWQ-V2 §3.3's Pareto-frontier
 * selection), dropping dominated pairs.  choice[l] gets the index k.
 * CS_ERR_USAGE when even the smallest widths exceed the budget. */
cs_status cs_quant_allocate(int n, const int64_t *size, const int *bits, int n_bits, const double *omega,
                            double budget, int *choice, double *total_omega, cs_err *err) CS_MUST_CHECK;

#endif
