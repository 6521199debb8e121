/* Dense tensors: element type, shape, contiguous row-major data.
 *
 * curvscope keeps every tensor contiguous in row-major order (no strides):
 * operators that permute axes (Transpose) write a new buffer.  That keeps
 * every kernel a plain loop or one BLAS call, which is what the hot paths
 * want anyway.  cs_dtype uses ONNX's TensorProto.DataType numbers so values
 * from files need no mapping. */
#ifndef CS_TENSOR_TENSOR_H
#define CS_TENSOR_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define CS_MAX_DIMS 8

typedef enum cs_dtype {
    CS_DT_UNDEFINED = 0,
    CS_DT_FLOAT = 1,
    CS_DT_UINT8 = 2,
    CS_DT_INT8 = 3,
    CS_DT_UINT16 = 4,
    CS_DT_INT16 = 5,
    CS_DT_INT32 = 6,
    CS_DT_INT64 = 7,
    CS_DT_STRING = 8, /* not supported as data */
    CS_DT_BOOL = 9,
    CS_DT_FLOAT16 = 10,
    CS_DT_DOUBLE = 11,
    CS_DT_UINT32 = 12,
    CS_DT_UINT64 = 13,
    CS_DT_COUNT_ = 14
} cs_dtype;

typedef struct cs_tensor {
    cs_dtype dtype;
    int ndim;                   /* 0 for a scalar */
    int64_t dims[CS_MAX_DIMS];
    void *data;                 /* numel * elem size bytes, or NULL */
    bool owns_data;             /* data was malloc'ed for this tensor (base/ownership.h) */
} cs_tensor;

/* Bytes per element; 0 for types that cannot be held (string, undefined). */
size_t cs_dtype_size(cs_dtype t);
/* "float", "int64", ...; "?" for unknown numbers. */
const char *cs_dtype_name(int t);
bool cs_dtype_is_float(cs_dtype t);    /* float32 or float64 */

int64_t cs_tensor_numel(const cs_tensor *t);
/* Flat index of the first NaN or infinite element of a float32 / float64
 * tensor; -1 when every element is finite or the type has no such values. */
int64_t cs_tensor_first_nonfinite(const cs_tensor *t);
size_t cs_tensor_bytes(const cs_tensor *t);

/* Sets dtype and shape, no data.  n may be 0 (scalar). */
void cs_tensor_set_shape(cs_tensor *t, cs_dtype dt, int n, const int64_t *dims);
bool cs_tensor_same_shape(const cs_tensor *a, const cs_tensor *b);

/* Checks that numel of (n, dims) is non-negative and at most max_numel, and
 * that the byte size fits in size_t.  Used on every shape read from a file. */
cs_status cs_shape_check(int n, const int64_t *dims, cs_dtype dt, int64_t max_numel,
                         const char *what, cs_err *err) CS_MUST_CHECK;

/* Allocate owned, zeroed data for the current shape (malloc). */
cs_status cs_tensor_alloc(cs_tensor *t, cs_err *err) CS_MUST_CHECK;
/* Deep copy into an owned tensor. */
cs_status cs_tensor_copy(cs_tensor *dst, const cs_tensor *src, cs_err *err) CS_MUST_CHECK;
/* Free owned data and reset the tensor to empty. */
void cs_tensor_free(cs_tensor *t);

/* Element i as double / store double into element i (any numeric dtype). */
double cs_tensor_get_f64(const cs_tensor *t, int64_t i);
void cs_tensor_set_f64(cs_tensor *t, int64_t i, double v);
/* Element i of an integer tensor as int64 (also works for float types). */
int64_t cs_tensor_get_i64(const cs_tensor *t, int64_t i);

/* Convert n elements between numeric types (saturation is not attempted;
 * float->int truncates toward zero like a C cast). */
void cs_convert(void *dst, cs_dtype dt_dst, const void *src, cs_dtype dt_src, int64_t n);

/* "[2, 3, 4]" into buf; a negative (symbolic) dimension prints as N. */
const char *cs_shape_str(const cs_tensor *t, char *buf, size_t size);

/* float16 <-> float32 (IEEE 754 half). */
float cs_half_to_float(uint16_t h);
uint16_t cs_float_to_half(float f);

#endif
