/* `pb:` data files: one serialized ONNX TensorProto, as in the ONNX backend
 * test data (input_0.pb, output_0.pb).  The decoding lives in src/onnx,
 * whose messages already name the file. */
#include "data/readers.h"

#include "onnx/tensor_proto.h"

cs_status cs_read_pb(const char *path, cs_tensor *out, cs_err *err)
{
    return cs_tensor_proto_read_file(path, out, NULL, err);
}
