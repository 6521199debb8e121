/* libFuzzer harness: the IDX reader (cs_read_idx, cs_read_idx_rows).
 *
 * The first byte picks the mode: bit 0 set gzip-compresses the rest before
 * writing it (so the fuzzer reaches the data checks behind a valid gzip
 * stream, not only zlib's CRC errors); bit 1 reads only the first rows.
 * With bit 0 clear the bytes are written as they are, and may themselves
 * be a gzip file (the seeds include some). */
#include "fuzz_util.h"

#include <zlib.h>

#include "data/readers.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_tmpdir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned mode = data[0];
    data++, size--;
    const char *path;
    if (mode & 1) {
        path = fuzz_write("in.idx.gz", (const uint8_t *)"", 0);
        gzFile gz = gzopen(path, "wb");
        if (!gz || (size && gzwrite(gz, data, (unsigned)size) != (int)size) || gzclose(gz) != Z_OK) {
            fprintf(stderr, "fuzz: cannot write the gzip input\n");
            abort();
        }
    } else {
        path = fuzz_write("in.idx", data, size);
    }
    cs_err err = {0};
    cs_tensor t;
    int64_t rows = -1;
    cs_status st = (mode & 2) ? cs_read_idx_rows(path, 1 + (mode >> 2), &t, &rows, &err)
                              : cs_read_idx(path, &t, &err);
    fuzz_check_status("cs_read_idx", st, &err);
    if (st == CS_OK)
        cs_tensor_free(&t);
    return 0;
}
