/* File readers behind cs_data_read_spec (one per format file). Each reads
 * the whole file into an owned tensor whose first dimension is samples. */
#ifndef CS_DATA_READERS_H
#define CS_DATA_READERS_H

#include "base/status.h"
#include "tensor/tensor.h"

/* Most elements one data file may hold (16 Gi): generous for real datasets,
 * and a bound on what a corrupt header can make us allocate. */
#define CS_DATA_MAX_NUMEL ((int64_t)1 << 34)
/* Most bytes one data file may decode to (8 GiB): what a header (or a
 * gzip stream, whose deflate data can expand a thousandfold) may make a
 * reader allocate.  cs_data_max_numel turns it into elements of dt. */
#define CS_DATA_MAX_BYTES ((int64_t)8 << 30)

static inline int64_t cs_data_max_numel(cs_dtype dt)
{
    int64_t es = (int64_t)cs_dtype_size(dt);
    return es && CS_DATA_MAX_BYTES / es < CS_DATA_MAX_NUMEL ? CS_DATA_MAX_BYTES / es : CS_DATA_MAX_NUMEL;
}

cs_status cs_read_idx(const char *path, cs_tensor *out, cs_err *err) CS_MUST_CHECK;
/* The first max_rows rows only (0: all); the rest of a gzip stream is not
 * inflated (nor its trailer checked), a plain file's size is still checked;
 * *file_rows (may be NULL) gets the file's count. */
cs_status cs_read_idx_rows(const char *path, int64_t max_rows, cs_tensor *out, int64_t *file_rows,
                           cs_err *err) CS_MUST_CHECK;
cs_status cs_read_npy(const char *path, cs_tensor *out, cs_err *err) CS_MUST_CHECK;
/* label_col: column index or header name, NULL for none; as_labels selects
 * that column only, else every column except it. */
cs_status cs_read_csv(const char *path, const char *label_col, int as_labels, cs_tensor *out,
                      cs_err *err) CS_MUST_CHECK;
cs_status cs_read_pb(const char *path, cs_tensor *out, cs_err *err) CS_MUST_CHECK;

/* Write a float64 array as a .npy file (version 1.0, C order). */
cs_status cs_write_npy_f64(const char *path, const double *data, int ndim, const int64_t *dims,
                           cs_err *err) CS_MUST_CHECK;

#endif
