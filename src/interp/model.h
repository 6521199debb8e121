/* A model ready to run: the loaded graph bound to the interpreter's
 * tables.
 *
 * The loader (onnx/) builds a graph that knows nothing of operators or
 * layers; binding resolves each node's operator in the op table (a node
 * whose operator is unknown, or newer than its opset allows, keeps
 * op NULL and is listed by cs_graph_unsupported) and finds the layers by
 * the layer-kind table (interp/layer_kind.h). */
#ifndef CS_INTERP_MODEL_H
#define CS_INTERP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "graph/graph.h"

/* Resolve operators, fold the view chains of initializers
 * (interp/param_views.h) and find layers (once per graph; again after a change
 * of initializers re-finds the same layers). */
cs_status cs_interp_bind(cs_graph *g, cs_err *err) CS_MUST_CHECK;

/* cs_onnx_load_file / cs_onnx_load_bytes followed by cs_interp_bind.  On
 * success *out is a new graph owned by the caller (cs_graph_free); on
 * failure *out is NULL. */
cs_status cs_model_load_file(const char *path, cs_graph **out, cs_err *err) CS_MUST_CHECK;

/* CS_ERR_FORMAT, naming the initializer and the element, when a float
 * initializer (weights, biases, running statistics, constants fed to the
 * graph) holds NaN or Inf: checked before computing with a model
 * (eval, analyze, finetune), not by the plain forward path (`run`), whose
 * models may feed Inf on purpose (doc/design.md §7). */
cs_status cs_model_check_finite(const cs_graph *g, cs_err *err) CS_MUST_CHECK;
cs_status cs_model_load_bytes(const uint8_t *buf, size_t len, const char *base_dir, cs_graph **out,
                              cs_err *err) CS_MUST_CHECK;

#endif
