/* Shared between the files of src/onnx only: protobuf-c types do not leave
 * this directory. */
#ifndef CS_ONNX_INTERNAL_H
#define CS_ONNX_INTERNAL_H

#include <stdbool.h>

#include "base/status.h"
#include "onnx/onnx.pb-c.h"
#include "tensor/tensor.h"

/* Convert a decoded TensorProto into an owned tensor, checking that the
 * stored data matches the shape.  base_dir locates external data (NULL
 * forbids it).  what names the tensor in error messages.  With widen,
 * float16 and bfloat16 tensors become float32 (exactly: the model's
 * initializers and Constant values, which curvscope computes with in
 * float32); without it, float16 stays float16 (test data compared as
 * stored) and bfloat16 is refused. */
cs_status cs_tensor_from_proto(const Onnx__TensorProto *tp, const char *base_dir,
                               const char *what, bool widen, cs_tensor *out,
                               cs_err *err) CS_MUST_CHECK;

/* Read a whole file into a malloc'ed buffer (at most max_bytes). */
cs_status cs_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len,
                       cs_err *err) CS_MUST_CHECK;

#endif
