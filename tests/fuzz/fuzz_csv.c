/* libFuzzer harness: the CSV reader (cs_read_csv), with the label column
 * chosen by the first byte: none, by index, by header name, as labels or
 * as the features without it. */
#include "fuzz_util.h"

#include "data/readers.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_tmpdir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const label_cols[] = {NULL, "0", "1", "label", "y", "-1", "99999999999"};
    unsigned mode = size ? data[0] : 0;
    const char *label_col = label_cols[(mode >> 1) % (sizeof label_cols / sizeof label_cols[0])];
    int as_labels = label_col ? (int)(mode & 1) : 0;
    const char *path = fuzz_write("in.csv", size ? data + 1 : data, size ? size - 1 : 0);
    cs_err err = {0};
    cs_tensor t;
    cs_status st = cs_read_csv(path, label_col, as_labels, &t, &err);
    fuzz_check_status("cs_read_csv", st, &err);
    if (st == CS_OK)
        cs_tensor_free(&t);
    return 0;
}
