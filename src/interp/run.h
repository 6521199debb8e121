/* Run a model once on given inputs: the path behind `curvscope run` and the
 * ONNX backend conformance test. */
#ifndef CS_INTERP_RUN_H
#define CS_INTERP_RUN_H

#include "base/status.h"
#include "graph/graph.h"
#include "tensor/tensor.h"

/* inputs: g->n_inputs tensors with data, in graph input order.  On success
 * outputs[0 .. g->n_outputs) are owned copies (cs_tensor_free each). */
cs_status cs_run_model(const cs_graph *g, const cs_tensor *inputs, cs_tensor *outputs,
                       cs_err *err) CS_MUST_CHECK;

#endif
