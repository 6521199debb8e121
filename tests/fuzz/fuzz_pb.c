/* libFuzzer harness: a serialized TensorProto (`pb:` data files and the
 * ONNX backend tests' input_N.pb), from memory and through cs_read_pb. */
#include "fuzz_util.h"

#include "data/readers.h"
#include "onnx/tensor_proto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_tmpdir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_err err = {0};
    cs_tensor t;
    char *name = NULL;
    cs_status st = cs_tensor_proto_decode(data, size, &t, &name, &err);
    fuzz_check_status("cs_tensor_proto_decode", st, &err);
    if (st == CS_OK) {
        cs_tensor_free(&t);
        free(name);
    }
    const char *path = fuzz_write("in.pb", data, size);
    cs_err err2 = {0};
    cs_status st2 = cs_read_pb(path, &t, &err2);
    fuzz_check_status("cs_read_pb", st2, &err2);
    if ((st == CS_OK) != (st2 == CS_OK)) {
        fprintf(stderr, "fuzz: decode from memory (%d) and from a file (%d) disagree\n", (int)st,
                (int)st2);
        abort();
    }
    if (st2 == CS_OK)
        cs_tensor_free(&t);
    return 0;
}
