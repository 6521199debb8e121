/* ONNX TensorProto <-> cs_tensor, for initializers and for `pb:` files (the
 * ONNX backend test data format).  Protobuf types stay inside src/onnx. */
#ifndef CS_ONNX_TENSOR_PROTO_H
#define CS_ONNX_TENSOR_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "tensor/tensor.h"

/* Decode a serialized TensorProto.  *out gets owned data (cs_tensor_free).
 * If name is non-NULL, *name receives a malloc'ed copy of the tensor's name
 * (possibly empty).  External data is not allowed here. */
cs_status cs_tensor_proto_decode(const uint8_t *buf, size_t len, cs_tensor *out, char **name,
                                 cs_err *err) CS_MUST_CHECK;

/* Read a .pb file holding one TensorProto. */
cs_status cs_tensor_proto_read_file(const char *path, cs_tensor *out, char **name,
                                    cs_err *err) CS_MUST_CHECK;

/* Write t as a TensorProto (raw_data, little-endian) to path. */
cs_status cs_tensor_proto_write_file(const char *path, const cs_tensor *t, const char *name,
                                     cs_err *err) CS_MUST_CHECK;

#endif
