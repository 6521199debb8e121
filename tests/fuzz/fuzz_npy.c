/* libFuzzer harness: the .npy reader (cs_read_npy). */
#include "fuzz_util.h"

#include "data/readers.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_tmpdir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("in.npy", data, size);
    cs_err err = {0};
    cs_tensor t;
    cs_status st = cs_read_npy(path, &t, &err);
    fuzz_check_status("cs_read_npy", st, &err);
    if (st == CS_OK)
        cs_tensor_free(&t);
    return 0;
}
