/* ONNX model loading: file bytes -> protobuf-c decode -> cs_graph.
 *
 * The decoded protobuf message lives only inside the loader: everything is
 * converted to curvscope's own graph and tensor types before returning. */
#ifndef CS_ONNX_LOADER_H
#define CS_ONNX_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "graph/graph.h"

/* Largest model file and largest single tensor curvscope accepts. */
#define CS_ONNX_MAX_FILE_BYTES ((size_t)4 << 30)
#define CS_ONNX_MAX_TENSOR_ELEMS ((int64_t)1 << 32)

/* Load a model file (external data files are resolved next to it).
 * On success *out is a new graph owned by the caller (cs_graph_free). */
cs_status cs_onnx_load_file(const char *path, cs_graph **out, cs_err *err) CS_MUST_CHECK;

/* Load from memory; base_dir locates external data (NULL: external data is
 * an error). */
cs_status cs_onnx_load_bytes(const uint8_t *buf, size_t len, const char *base_dir,
                             cs_graph **out, cs_err *err) CS_MUST_CHECK;

#endif
