/* One Hessian-aware quantization of a model (HAWQ-V2, Dong et al. 2020;
 * the quantizer and sensitivities of quant/quant.h): traces, sensitivities,
 * the allocation under a size budget, the weights rounded in place, and the
 * predicted loss of the rounded model with the half-width of its interval.
 *
 * Prediction (second-order Taylor with HAWQ-V2's isotropic blocks):
 *   L(W + dW) ~ L0 + g^T dW + 1/2 sum_i Tr(H_i)/n_i ||dW_i||^2.
 * Tolerance: 3 standard errors of the trace term, plus the isotropic
 * proxy's distance from the exact quadratic term 1/2 dW^T H dW (one
 * Hessian-vector product), plus 1e-5 (1 + |L0|) for float32 evaluation.
 * It does not bound the third- and higher-order terms: a rounding large
 * enough for them to matter can fall outside (cmd_quantize says so). */
#ifndef CS_QUANT_QUANTIZE_H
#define CS_QUANT_QUANTIZE_H

#include <stdint.h>

#include "base/status.h"
#include "data/dataset.h"
#include "graph/graph.h"
#include "objective/loss.h"
#include "objective/objective.h"

typedef struct cs_quantize_opts {
    const int *bits;          /* candidate widths, n_bits of them */
    int n_bits;
    double budget_bits;       /* average bits per quantized weight; 0: not set */
    int64_t budget_bytes;     /* total parameter bytes; 0: not set (neither: the widest) */
    int probes;               /* Hutchinson probes per layer, >= 2 */
    uint64_t seed;
    const cs_norm *norm;      /* borrowed; may be NULL */
    cs_loss_kind loss;
    int64_t batch;
} cs_quantize_opts;

typedef struct cs_quantize_result {
    int n_layers;             /* quantized layers */
    int *layer;               /* [n_layers]: their graph layer indices */
    double *trace, *trace_se; /* [n_layers]: Hutchinson trace of the weight block, its se */
    double *omega;            /* [n_layers * n_bits]: sensitivity per width */
    double *delta_sq;         /* [n_layers * n_bits]: ||Q_b(W) - W||^2 per width */
    int *chosen_bits;         /* [n_layers]: the width allocated */
    double loss_before, predicted, tolerance;
    int64_t size_bytes;       /* quantized weights at their widths, a float32 scale each, the rest float32 */
} cs_quantize_result;

/* Quantize g's weights in place on the data ds; res is initialised here and
 * freed with cs_quantize_result_free (also after a failure). */
cs_status cs_quantize_model(cs_graph *g, const cs_dataset *ds, const cs_quantize_opts *o, cs_quantize_result *res,
                            cs_err *err) CS_MUST_CHECK;
void cs_quantize_result_free(cs_quantize_result *res);

#endif
