#include "tensor/tensor.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [CS_DT_UNDEFINED] = {"undefined", 0}, [CS_DT_FLOAT] = {"float", 4},
    [CS_DT_UINT8] = {"uint8", 1},         [CS_DT_INT8] = {"int8", 1},
    [CS_DT_UINT16] = {"uint16", 2},       [CS_DT_INT16] = {"int16", 2},
    [CS_DT_INT32] = {"int32", 4},         [CS_DT_INT64] = {"int64", 8},
    [CS_DT_STRING] = {"string", 0},       [CS_DT_BOOL] = {"bool", 1},
    [CS_DT_FLOAT16] = {"float16", 2},     [CS_DT_DOUBLE] = {"double", 8},
    [CS_DT_UINT32] = {"uint32", 4},       [CS_DT_UINT64] = {"uint64", 8},
};
static_assert(sizeof dtype_info / sizeof dtype_info[0] == CS_DT_COUNT_,
              "dtype_info must cover every cs_dtype");

size_t cs_dtype_size(cs_dtype t)
{
    return (unsigned)t < CS_DT_COUNT_ ? dtype_info[t].size : 0;
}

const char *cs_dtype_name(int t)
{
    return (unsigned)t < CS_DT_COUNT_ ? dtype_info[t].name : "?";
}

bool cs_dtype_is_float(cs_dtype t)
{
    return t == CS_DT_FLOAT || t == CS_DT_DOUBLE;
}

int64_t cs_tensor_numel(const cs_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->dims[i];
    return n;
}

size_t cs_tensor_bytes(const cs_tensor *t)
{
    return (size_t)cs_tensor_numel(t) * cs_dtype_size(t->dtype);
}

void cs_tensor_set_shape(cs_tensor *t, cs_dtype dt, int n, const int64_t *dims)
{
    assert(n >= 0 && n <= CS_MAX_DIMS);
    t->dtype = dt;
    t->ndim = n;
    for (int i = 0; i < n; i++)
        t->dims[i] = dims[i];
}

bool cs_tensor_same_shape(const cs_tensor *a, const cs_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

cs_status cs_shape_check(int n, const int64_t *dims, cs_dtype dt, int64_t max_numel,
                         const char *what, cs_err *err)
{
    if (n < 0 || n > CS_MAX_DIMS)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "%s: rank %d is outside 0..%d", what, n,
                       CS_MAX_DIMS);
    long long numel = 1;
    for (int i = 0; i < n; i++) {
        if (dims[i] < 0)
            return cs_fail(err, CS_ERR_FORMAT, "%s: negative dimension %lld", what,
                           (long long)dims[i]);
        if (cs_mul_overflow_i64(numel, dims[i], &numel) || numel > max_numel)
            return cs_fail(err, CS_ERR_NOMEM, "%s: %d-d shape is too large (over %lld elements)",
                           what, n, (long long)max_numel);
    }
    size_t es = cs_dtype_size(dt);
    if (es == 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "%s: element type %s is not supported", what,
                       cs_dtype_name(dt));
    if ((unsigned long long)numel > SIZE_MAX / es)
        return cs_fail(err, CS_ERR_NOMEM, "%s: shape is too large", what);
    return CS_OK;
}

cs_status cs_tensor_alloc(cs_tensor *t, cs_err *err)
{
    size_t bytes = cs_tensor_bytes(t);
    t->data = calloc(bytes ? bytes : 1, 1);
    if (!t->data)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    t->owns_data = true;
    return CS_OK;
}

cs_status cs_tensor_copy(cs_tensor *dst, const cs_tensor *src, cs_err *err)
{
    cs_tensor_set_shape(dst, src->dtype, src->ndim, src->dims);
    cs_status st = cs_tensor_alloc(dst, err);
    if (st)
        return st;
    if (src->data)
        memcpy(dst->data, src->data, cs_tensor_bytes(src));
    return CS_OK;
}

void cs_tensor_free(cs_tensor *t)
{
    if (t->owns_data)
        free(t->data);
    memset(t, 0, sizeof *t);
}

double cs_tensor_get_f64(const cs_tensor *t, int64_t i)
{
    double v;
    cs_convert(&v, CS_DT_DOUBLE, (const char *)t->data + (size_t)i * cs_dtype_size(t->dtype),
               t->dtype, 1);
    return v;
}

void cs_tensor_set_f64(cs_tensor *t, int64_t i, double v)
{
    cs_convert((char *)t->data + (size_t)i * cs_dtype_size(t->dtype), t->dtype, &v,
               CS_DT_DOUBLE, 1);
}

int64_t cs_tensor_get_i64(const cs_tensor *t, int64_t i)
{
    int64_t v;
    cs_convert(&v, CS_DT_INT64, (const char *)t->data + (size_t)i * cs_dtype_size(t->dtype),
               t->dtype, 1);
    return v;
}

float cs_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    int exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    float f;
    if (exp == 0) {
        f = ldexpf((float)mant, -24); /* subnormal or zero */
        return sign ? -f : f;
    }
    uint32_t bits;
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);
    else
        bits = sign | ((uint32_t)(exp - 15 + 127) << 23) | (mant << 13);
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t cs_float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0);
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return sign | 0x7c00;
    if (absx < 0x38800000u) { /* below smallest normal half: subnormal */
        float a;
        memcpy(&a, &absx, sizeof a);
        return sign | (uint16_t)lrintf(a * 16777216.0f); /* a / 2^-24 */
    }
    /* Round to nearest even on the 13 dropped mantissa bits. */
    uint32_t r = absx - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t lsb = (r >> 13) & 1;
    r += 0xfff + lsb;
    return sign | (uint16_t)(r >> 13);
}

/* Generic conversion: every source type goes through double or int64, which
 * represent every value of the supported types except uint64 above 2^63. */
/* A float to an integer: truncation toward zero, saturated at the int64
 * range (a finite double outside it, such as Pow's 1.8e19 from int64
 * operands, has no int64 value and converting it is undefined behaviour;
 * found by tests/fuzz/fuzz_onnx), and 0 for NaN and infinities as
 * before.  2^63 is exact in double, so the bounds compare exactly. */
static int64_t double_to_int64(double d)
{
    if (!isfinite(d))
        return 0;
    if (d >= 9223372036854775808.0)
        return INT64_MAX;
    if (d < -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)d;
}

void cs_convert(void *dst, cs_dtype dt_dst, const void *src, cs_dtype dt_src, int64_t n)
{
    if (dt_dst == dt_src) {
        memcpy(dst, src, (size_t)n * cs_dtype_size(dt_src));
        return;
    }
    /* The float <-> double pair is the hot one (parameters, tangents):
     * a plain loop, not the element-wise switch below. */
    if (dt_dst == CS_DT_FLOAT && dt_src == CS_DT_DOUBLE) {
        for (int64_t i = 0; i < n; i++)
            ((float *)dst)[i] = (float)((const double *)src)[i];
        return;
    }
    if (dt_dst == CS_DT_DOUBLE && dt_src == CS_DT_FLOAT) {
        for (int64_t i = 0; i < n; i++)
            ((double *)dst)[i] = ((const float *)src)[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        double d = 0;
        int64_t k = 0;
        bool is_int = true;
        switch (dt_src) {
        case CS_DT_FLOAT: d = ((const float *)src)[i]; is_int = false; break;
        case CS_DT_DOUBLE: d = ((const double *)src)[i]; is_int = false; break;
        case CS_DT_FLOAT16: d = cs_half_to_float(((const uint16_t *)src)[i]); is_int = false; break;
        case CS_DT_UINT8: k = ((const uint8_t *)src)[i]; break;
        case CS_DT_INT8: k = ((const int8_t *)src)[i]; break;
        case CS_DT_UINT16: k = ((const uint16_t *)src)[i]; break;
        case CS_DT_INT16: k = ((const int16_t *)src)[i]; break;
        case CS_DT_INT32: k = ((const int32_t *)src)[i]; break;
        case CS_DT_INT64: k = ((const int64_t *)src)[i]; break;
        case CS_DT_UINT32: k = ((const uint32_t *)src)[i]; break;
        case CS_DT_UINT64: k = (int64_t)((const uint64_t *)src)[i]; break;
        case CS_DT_BOOL: k = ((const uint8_t *)src)[i] != 0; break;
        default: break;
        }
        if (is_int)
            d = (double)k;
        else if (dt_dst != CS_DT_BOOL)
            k = double_to_int64(d);
        switch (dt_dst) {
        case CS_DT_FLOAT: ((float *)dst)[i] = (float)d; break;
        case CS_DT_DOUBLE: ((double *)dst)[i] = d; break;
        case CS_DT_FLOAT16: ((uint16_t *)dst)[i] = cs_float_to_half((float)d); break;
        case CS_DT_UINT8: ((uint8_t *)dst)[i] = (uint8_t)k; break;
        case CS_DT_INT8: ((int8_t *)dst)[i] = (int8_t)k; break;
        case CS_DT_UINT16: ((uint16_t *)dst)[i] = (uint16_t)k; break;
        case CS_DT_INT16: ((int16_t *)dst)[i] = (int16_t)k; break;
        case CS_DT_INT32: ((int32_t *)dst)[i] = (int32_t)k; break;
        case CS_DT_INT64: ((int64_t *)dst)[i] = k; break;
        case CS_DT_UINT32: ((uint32_t *)dst)[i] = (uint32_t)k; break;
        case CS_DT_UINT64: ((uint64_t *)dst)[i] = (uint64_t)k; break;
        case CS_DT_BOOL: ((uint8_t *)dst)[i] = is_int ? k != 0 : d != 0; break;
        default: break;
        }
    }
}

const char *cs_shape_str(const cs_tensor *t, char *buf, size_t size)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, size - off, "[");
    for (int i = 0; i < t->ndim && off < size; i++) {
        if (t->dims[i] < 0) /* a symbolic dimension of a declared shape */
            off += (size_t)snprintf(buf + off, size - off, i ? ", N" : "N");
        else
            off += (size_t)snprintf(buf + off, size - off, i ? ", %lld" : "%lld",
                                    (long long)t->dims[i]);
    }
    if (off < size)
        snprintf(buf + off, size - off, "]");
    return buf;
}

int64_t cs_tensor_first_nonfinite(const cs_tensor *t)
{
    int64_t n = cs_tensor_numel(t);
    if (!t->data || n <= 0)
        return -1;
    if (t->dtype == CS_DT_FLOAT) {
        const float *v = t->data;
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(v[i]))
                return i;
    } else if (t->dtype == CS_DT_DOUBLE) {
        const double *v = t->data;
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(v[i]))
                return i;
    }
    return -1;
}
