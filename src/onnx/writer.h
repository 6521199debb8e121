/* Writing a model back: the original file with its initializers replaced
 * by the graph's current values (fine-tuned parameters, and running
 * statistics when they were trained).  Everything else -- nodes, opsets,
 * metadata, doc strings, fields curvscope does not declare -- is kept as
 * decoded, so the output is the same model with new weights. */
#ifndef CS_ONNX_WRITER_H
#define CS_ONNX_WRITER_H

#include "base/status.h"
#include "graph/graph.h"

/* Read src_path again, replace every initializer that g holds (by name) with
 * g's tensor, stored inline as raw_data (external data is written inline),
 * and write the result to dst_path. */
cs_status cs_onnx_write_updated(const char *src_path, const cs_graph *g, const char *dst_path,
                                cs_err *err) CS_MUST_CHECK;

#endif
