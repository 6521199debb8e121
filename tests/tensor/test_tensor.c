/* src/tensor/tensor.c: dtypes, shapes, shape checks, conversions, float16. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../tap.h"
#include "tensor/accum.h"
#include "tensor/tensor.h"

/* ------------------------------------------------------------ helpers */

/* The test's own element access, independent of cs_convert. */
static double elem_get(const void *buf, cs_dtype dt, int i)
{
    switch (dt) {
    case CS_DT_FLOAT: return ((const float *)buf)[i];
    case CS_DT_DOUBLE: return ((const double *)buf)[i];
    case CS_DT_UINT8: return ((const uint8_t *)buf)[i];
    case CS_DT_INT8: return ((const int8_t *)buf)[i];
    case CS_DT_UINT16: return ((const uint16_t *)buf)[i];
    case CS_DT_INT16: return ((const int16_t *)buf)[i];
    case CS_DT_INT32: return ((const int32_t *)buf)[i];
    case CS_DT_INT64: return (double)((const int64_t *)buf)[i];
    case CS_DT_UINT32: return ((const uint32_t *)buf)[i];
    case CS_DT_UINT64: return (double)((const uint64_t *)buf)[i];
    case CS_DT_BOOL: return ((const uint8_t *)buf)[i];
    case CS_DT_FLOAT16: {
        /* decode by the IEEE formula, not by cs_half_to_float */
        uint16_t h = ((const uint16_t *)buf)[i];
        int e = (h >> 10) & 31, m = h & 1023;
        double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
        return (h & 0x8000) ? -v : v;
    }
    default: return NAN;
    }
}

/* Store a value that the type holds exactly. */
static void elem_put(void *buf, cs_dtype dt, int i, double v)
{
    switch (dt) {
    case CS_DT_FLOAT: ((float *)buf)[i] = (float)v; break;
    case CS_DT_DOUBLE: ((double *)buf)[i] = v; break;
    case CS_DT_UINT8: ((uint8_t *)buf)[i] = (uint8_t)v; break;
    case CS_DT_INT8: ((int8_t *)buf)[i] = (int8_t)v; break;
    case CS_DT_UINT16: ((uint16_t *)buf)[i] = (uint16_t)v; break;
    case CS_DT_INT16: ((int16_t *)buf)[i] = (int16_t)v; break;
    case CS_DT_INT32: ((int32_t *)buf)[i] = (int32_t)v; break;
    case CS_DT_INT64: ((int64_t *)buf)[i] = (int64_t)v; break;
    case CS_DT_UINT32: ((uint32_t *)buf)[i] = (uint32_t)v; break;
    case CS_DT_UINT64: ((uint64_t *)buf)[i] = (uint64_t)v; break;
    case CS_DT_BOOL: ((uint8_t *)buf)[i] = v != 0; break;
    case CS_DT_FLOAT16: {
        /* only small integers are stored this way: exact in half */
        int s = v < 0;
        double a = fabs(v);
        uint16_t h = 0;
        if (a != 0) {
            int e;
            double f = frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
            h = (uint16_t)(((e + 14) << 10) | ((int)(f * 2048) - 1024));
        }
        ((uint16_t *)buf)[i] = (uint16_t)(h | (s ? 0x8000 : 0));
        break;
    }
    default: break;
    }
}

static const cs_dtype numeric[] = {
    CS_DT_FLOAT, CS_DT_UINT8,  CS_DT_INT8,    CS_DT_UINT16, CS_DT_INT16,  CS_DT_INT32,
    CS_DT_INT64, CS_DT_BOOL,   CS_DT_FLOAT16, CS_DT_DOUBLE, CS_DT_UINT32, CS_DT_UINT64,
};
enum { N_NUMERIC = sizeof numeric / sizeof numeric[0] };

static int half_is_nan(uint16_t h)
{
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}

/* ------------------------------------------------------------ dtypes */

static void test_dtypes(void)
{
    static const struct {
        cs_dtype t;
        const char *name;
        size_t size;
    } want[] = {
        {CS_DT_UNDEFINED, "undefined", 0}, {CS_DT_FLOAT, "float", 4},
        {CS_DT_UINT8, "uint8", 1},         {CS_DT_INT8, "int8", 1},
        {CS_DT_UINT16, "uint16", 2},       {CS_DT_INT16, "int16", 2},
        {CS_DT_INT32, "int32", 4},         {CS_DT_INT64, "int64", 8},
        {CS_DT_STRING, "string", 0},       {CS_DT_BOOL, "bool", 1},
        {CS_DT_FLOAT16, "float16", 2},     {CS_DT_DOUBLE, "double", 8},
        {CS_DT_UINT32, "uint32", 4},       {CS_DT_UINT64, "uint64", 8},
    };
    enum { NW = sizeof want / sizeof want[0] };
    ok(NW == (int)CS_DT_COUNT_, "the table covers all %d dtypes", (int)CS_DT_COUNT_);
    for (int i = 0; i < NW; i++) {
        ok(cs_dtype_size(want[i].t) == want[i].size, "cs_dtype_size(%s) = %zu (got %zu)",
           want[i].name, want[i].size, cs_dtype_size(want[i].t));
        const char *n = cs_dtype_name((int)want[i].t);
        ok(n && strcmp(n, want[i].name) == 0, "cs_dtype_name(%d) = '%s' (got '%s')",
           (int)want[i].t, want[i].name, n ? n : "(null)");
    }
    ok(strcmp(cs_dtype_name(-1), "?") == 0 && strcmp(cs_dtype_name(CS_DT_COUNT_), "?") == 0 &&
           strcmp(cs_dtype_name(1000), "?") == 0,
       "cs_dtype_name of -1, COUNT and 1000 is '?'");
    ok(cs_dtype_size(CS_DT_COUNT_) == 0 && cs_dtype_size((cs_dtype)200) == 0,
       "cs_dtype_size of unknown numbers is 0");
    ok(cs_dtype_is_float(CS_DT_FLOAT) && cs_dtype_is_float(CS_DT_DOUBLE),
       "float and double are float types");
    int others = 0;
    for (int i = 0; i < NW; i++)
        if (want[i].t != CS_DT_FLOAT && want[i].t != CS_DT_DOUBLE)
            others |= cs_dtype_is_float(want[i].t);
    ok(!others, "no other dtype (float16 included) counts as float32/float64");
}

/* ------------------------------------------------------------ shapes */

static void test_numel_bytes(void)
{
    cs_tensor t;
    memset(&t, 0, sizeof t);
    int64_t d3[] = {2, 3, 4};
    cs_tensor_set_shape(&t, CS_DT_FLOAT, 3, d3);
    ok(t.dtype == CS_DT_FLOAT && t.ndim == 3 && t.dims[0] == 2 && t.dims[2] == 4,
       "cs_tensor_set_shape stores dtype, rank and dims");
    ok(cs_tensor_numel(&t) == 24, "numel of [2, 3, 4] is 24");
    ok(cs_tensor_bytes(&t) == 96, "bytes of float [2, 3, 4] is 96");
    cs_tensor_set_shape(&t, CS_DT_DOUBLE, 0, NULL);
    ok(cs_tensor_numel(&t) == 1 && cs_tensor_bytes(&t) == 8, "a double scalar has 1 element, 8 bytes");
    int64_t dz[] = {3, 0, 5};
    cs_tensor_set_shape(&t, CS_DT_INT64, 3, dz);
    ok(cs_tensor_numel(&t) == 0 && cs_tensor_bytes(&t) == 0, "a [3, 0, 5] tensor is empty");
    int64_t d8[CS_MAX_DIMS];
    for (int i = 0; i < CS_MAX_DIMS; i++)
        d8[i] = 2;
    cs_tensor_set_shape(&t, CS_DT_UINT16, CS_MAX_DIMS, d8);
    ok(cs_tensor_numel(&t) == 256 && cs_tensor_bytes(&t) == 512,
       "rank CS_MAX_DIMS=%d of 2s: 256 elements, 512 bytes of uint16", CS_MAX_DIMS);

    cs_tensor a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int64_t da[] = {2, 3}, db[] = {3, 2}, dc[] = {2, 3, 1};
    cs_tensor_set_shape(&a, CS_DT_FLOAT, 2, da);
    cs_tensor_set_shape(&b, CS_DT_INT8, 2, da);
    ok(cs_tensor_same_shape(&a, &b), "same shape ignores dtype");
    cs_tensor_set_shape(&b, CS_DT_FLOAT, 2, db);
    ok(!cs_tensor_same_shape(&a, &b), "[2, 3] and [3, 2] differ");
    cs_tensor_set_shape(&b, CS_DT_FLOAT, 3, dc);
    ok(!cs_tensor_same_shape(&a, &b), "[2, 3] and [2, 3, 1] differ");
}

static void test_shape_check(void)
{
    cs_err err;
    const int64_t big = INT64_MAX;
    int64_t ok3[] = {2, 3, 4};
    memset(&err, 0, sizeof err);
    ok(cs_shape_check(3, ok3, CS_DT_FLOAT, big, "w", &err) == CS_OK, "[2, 3, 4] float passes");
    int64_t one[] = {0};
    ok(cs_shape_check(0, one, CS_DT_FLOAT, big, "s", &err) == CS_OK, "a scalar passes");
    int64_t zero[] = {0, 1000};
    ok(cs_shape_check(2, zero, CS_DT_INT64, big, "z", &err) == CS_OK, "an empty [0, 1000] passes");

    int64_t neg[] = {2, -3, 4};
    cs_status st = cs_shape_check(3, neg, CS_DT_FLOAT, big, "fc1.weight", &err);
    ok(st != CS_OK, "a negative dimension fails (%s)", cs_status_name(st));
    ok(st == CS_ERR_FORMAT, "a negative dimension is a format error");
    ok(strstr(err.msg, "fc1.weight") != NULL, "the message names what was checked: '%s'", err.msg);
    ok(strstr(err.msg, "-3") != NULL, "the message shows the negative dimension");

    int64_t neg_first[] = {-1};
    ok(cs_shape_check(1, neg_first, CS_DT_UINT8, big, "x", &err) != CS_OK, "[-1] fails");

    int64_t ovf[] = {1LL << 32, 1LL << 32};
    st = cs_shape_check(2, ovf, CS_DT_UINT8, big, "huge", &err);
    ok(st != CS_OK, "[2^32, 2^32] overflows int64 and fails (%s)", cs_status_name(st));
    ok(strstr(err.msg, "huge") != NULL, "the overflow message names the tensor: '%s'", err.msg);
    int64_t ovf2[] = {3, INT64_MAX / 2};
    ok(cs_shape_check(2, ovf2, CS_DT_UINT8, big, "x", &err) != CS_OK,
       "[3, INT64_MAX/2] overflows and fails");
    int64_t ovf3[] = {2, 2, 2, 2, 2, 2, 2, 1LL << 57};
    ok(cs_shape_check(8, ovf3, CS_DT_UINT8, big, "x", &err) != CS_OK,
       "2^7 * 2^57 = 2^64 over eight dims overflows and fails");
    int64_t edge[] = {1LL << 31, (1LL << 31) - 1};
#if SIZE_MAX > 0xffffffffu
    ok(cs_shape_check(2, edge, CS_DT_UINT8, big, "x", &err) == CS_OK,
       "[2^31, 2^31 - 1] uint8 (just under 2^62 elements) passes with no element limit");
#else
    (void)edge;
    skip("size_t is narrower than 64 bits");
#endif
    int64_t bytes_ovf[] = {1LL << 62};
    st = cs_shape_check(1, bytes_ovf, CS_DT_DOUBLE, big, "x", &err);
    ok(st != CS_OK, "2^62 doubles (2^65 bytes) do not fit in size_t and fail");

    int64_t d9[CS_MAX_DIMS + 1];
    for (int i = 0; i <= CS_MAX_DIMS; i++)
        d9[i] = 1;
    st = cs_shape_check(CS_MAX_DIMS + 1, d9, CS_DT_FLOAT, big, "deep", &err);
    ok(st != CS_OK, "rank CS_MAX_DIMS + 1 = %d fails (%s)", CS_MAX_DIMS + 1, cs_status_name(st));
    ok(strstr(err.msg, "deep") != NULL, "the rank message names the tensor: '%s'", err.msg);
    ok(cs_shape_check(CS_MAX_DIMS, d9, CS_DT_FLOAT, big, "x", &err) == CS_OK,
       "rank CS_MAX_DIMS passes");
    ok(cs_shape_check(-1, d9, CS_DT_FLOAT, big, "x", &err) != CS_OK, "rank -1 fails");

    int64_t m[] = {10, 10};
    ok(cs_shape_check(2, m, CS_DT_FLOAT, 100, "x", &err) == CS_OK,
       "100 elements pass with max_numel 100");
    ok(cs_shape_check(2, m, CS_DT_FLOAT, 99, "limit", &err) != CS_OK,
       "100 elements fail with max_numel 99");
    ok(strstr(err.msg, "limit") != NULL, "the max_numel message names the tensor: '%s'", err.msg);
    int64_t m1[] = {100};
    ok(cs_shape_check(1, m1, CS_DT_FLOAT, 99, "x", &err) != CS_OK,
       "a single dimension over max_numel fails");
    ok(cs_shape_check(1, m1, CS_DT_STRING, big, "x", &err) != CS_OK,
       "a string tensor fails (no element size)");
    ok(cs_shape_check(1, m1, CS_DT_UNDEFINED, big, "x", &err) != CS_OK,
       "an undefined element type fails");
    ok(cs_shape_check(3, neg, CS_DT_FLOAT, big, "x", NULL) != CS_OK,
       "a NULL err is allowed and the status still says failure");
}

/* ------------------------------------------------------------ conversions */

static void test_convert_all_pairs(void)
{
    /* Values every type (bool aside) holds exactly. */
    static const double common[] = {0, 1, 2, 7, 100, 127};
    enum { NC = sizeof common / sizeof common[0] };
    int bad_pairs = 0, pairs = 0;
    for (int s = 0; s < N_NUMERIC; s++) {
        for (int d = 0; d < N_NUMERIC; d++) {
            cs_dtype ts = numeric[s], td = numeric[d];
            unsigned char src[NC * 8], dst[NC * 8 + 8];
            memset(src, 0, sizeof src);
            memset(dst, 0xee, sizeof dst);
            int n = (ts == CS_DT_BOOL || td == CS_DT_BOOL) ? 2 : NC; /* bool: 0 and 1 */
            for (int i = 0; i < n; i++)
                elem_put(src, ts, i, common[i]);
            cs_convert(dst, td, src, ts, n);
            int good = 1;
            for (int i = 0; i < n; i++)
                good &= elem_get(dst, td, i) == common[i];
            /* nothing written past n elements */
            size_t end = (size_t)n * cs_dtype_size(td);
            for (size_t b = end; b < end + 8; b++)
                good &= dst[b] == 0xee;
            pairs++;
            if (!good) {
                bad_pairs++;
                diag("convert %s -> %s is wrong", cs_dtype_name(ts), cs_dtype_name(td));
            }
        }
    }
    ok(bad_pairs == 0, "all %d (src, dst) pairs of numeric types convert exact values exactly",
       pairs);
}

static void test_convert_edges(void)
{
    /* Floats outside the int64 range saturate (found by fuzz_onnx: Pow of
     * int64 constants gave 1.8e19, and its conversion was undefined);
     * NaN and infinities give 0; in-range values truncate toward zero. */
    const double far[7] = {1.8446744073709552e19, -1e30, 9223372036854775808.0, NAN, INFINITY,
                           -9223372036854775808.0, -2.75};
    int64_t sat[7];
    cs_convert(sat, CS_DT_INT64, far, CS_DT_DOUBLE, 7);
    ok(sat[0] == INT64_MAX && sat[1] == INT64_MIN && sat[2] == INT64_MAX && sat[3] == 0 &&
           sat[4] == 0 && sat[5] == INT64_MIN && sat[6] == -2,
       "double 1.8e19, -1e30, 2^63, NaN, inf, -2^63, -2.75 -> int64 saturates: %lld %lld %lld "
       "%lld %lld %lld %lld",
       (long long)sat[0], (long long)sat[1], (long long)sat[2], (long long)sat[3],
       (long long)sat[4], (long long)sat[5], (long long)sat[6]);
    const float farf = 1e20f;
    int64_t satf;
    cs_convert(&satf, CS_DT_INT64, &farf, CS_DT_FLOAT, 1);
    ok(satf == INT64_MAX, "float 1e20 -> int64 saturates to 2^63-1");

    /* Negative integers into unsigned types wrap like a C conversion. */
    int32_t m1 = -1;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    cs_convert(&u8, CS_DT_UINT8, &m1, CS_DT_INT32, 1);
    cs_convert(&u16, CS_DT_UINT16, &m1, CS_DT_INT32, 1);
    cs_convert(&u32, CS_DT_UINT32, &m1, CS_DT_INT32, 1);
    cs_convert(&u64, CS_DT_UINT64, &m1, CS_DT_INT32, 1);
    ok(u8 == 255 && u16 == 65535 && u32 == UINT32_MAX && u64 == UINT64_MAX,
       "int32 -1 -> uint8/16/32/64 gives 255, 65535, 2^32-1, 2^64-1");
    int8_t i8m = -128;
    cs_convert(&u8, CS_DT_UINT8, &i8m, CS_DT_INT8, 1);
    ok(u8 == 128, "int8 -128 -> uint8 gives 128");
    int64_t minv = INT64_MIN;
    cs_convert(&u64, CS_DT_UINT64, &minv, CS_DT_INT64, 1);
    ok(u64 == (uint64_t)1 << 63, "int64 min -> uint64 gives 2^63");
    /* Unsigned values above the signed range. */
    uint8_t u8hi = 200;
    int8_t i8;
    cs_convert(&i8, CS_DT_INT8, &u8hi, CS_DT_UINT8, 1);
    ok(i8 == -56, "uint8 200 -> int8 wraps to -56");
    uint32_t u32max = UINT32_MAX;
    int64_t i64;
    double dd;
    cs_convert(&i64, CS_DT_INT64, &u32max, CS_DT_UINT32, 1);
    cs_convert(&dd, CS_DT_DOUBLE, &u32max, CS_DT_UINT32, 1);
    ok(i64 == 4294967295LL && dd == 4294967295.0, "uint32 max -> int64 and double is exact");
    uint64_t p53 = (uint64_t)1 << 53;
    cs_convert(&dd, CS_DT_DOUBLE, &p53, CS_DT_UINT64, 1);
    ok(dd == 9007199254740992.0, "uint64 2^53 -> double is exact");
    int64_t wide = 0x100000005LL;
    int32_t i32;
    cs_convert(&i32, CS_DT_INT32, &wide, CS_DT_INT64, 1);
    ok(i32 == 5, "int64 2^32 + 5 -> int32 keeps the low bits (5)");
    int64_t big = -4611686018427387904LL; /* -2^62 */
    cs_convert(&dd, CS_DT_DOUBLE, &big, CS_DT_INT64, 1);
    ok(dd == -4611686018427387904.0, "int64 -2^62 -> double is exact");

    /* Float to integer truncates toward zero. */
    static const float fv[] = {2.9f, -2.9f, 0.5f, -0.5f, 127.99f, -128.5f, 1e-30f, -0.0f};
    static const int64_t fz[] = {2, -2, 0, 0, 127, -128, 0, 0};
    enum { NF = sizeof fv / sizeof fv[0] };
    int8_t o8[NF];
    int16_t o16[NF];
    int32_t o32[NF];
    int64_t o64[NF];
    cs_convert(o8, CS_DT_INT8, fv, CS_DT_FLOAT, NF);
    cs_convert(o16, CS_DT_INT16, fv, CS_DT_FLOAT, NF);
    cs_convert(o32, CS_DT_INT32, fv, CS_DT_FLOAT, NF);
    cs_convert(o64, CS_DT_INT64, fv, CS_DT_FLOAT, NF);
    int trunc_ok = 1;
    for (int i = 0; i < NF; i++)
        trunc_ok &= o8[i] == fz[i] && o16[i] == fz[i] && o32[i] == fz[i] && o64[i] == fz[i];
    ok(trunc_ok, "float -> int8/16/32/64 truncates toward zero (2.9->2, -2.9->-2, 127.99->127, ...)");
    double dbig[] = {1e10, -1e10, 9.99999e9};
    int64_t obig[3];
    cs_convert(obig, CS_DT_INT64, dbig, CS_DT_DOUBLE, 3);
    ok(obig[0] == 10000000000LL && obig[1] == -10000000000LL && obig[2] == 9999990000LL,
       "double 1e10 and -1e10 -> int64 exactly");
    uint16_t h25 = 0x4100; /* 2.5 */
    uint16_t hm25 = 0xc100; /* -2.5 */
    int32_t h_i;
    cs_convert(&h_i, CS_DT_INT32, &h25, CS_DT_FLOAT16, 1);
    ok(h_i == 2, "float16 2.5 -> int32 gives 2");
    cs_convert(&h_i, CS_DT_INT32, &hm25, CS_DT_FLOAT16, 1);
    ok(h_i == -2, "float16 -2.5 -> int32 gives -2");
    float fu = 200.7f;
    cs_convert(&u8, CS_DT_UINT8, &fu, CS_DT_FLOAT, 1);
    ok(u8 == 200, "float 200.7 -> uint8 gives 200");
    /* Non-finite floats into integers give 0: no undefined cast. */
    float nf[] = {NAN, INFINITY, -INFINITY};
    int32_t ni[3] = {7, 7, 7};
    cs_convert(ni, CS_DT_INT32, nf, CS_DT_FLOAT, 3);
    ok(ni[0] == 0 && ni[1] == 0 && ni[2] == 0, "nan, inf, -inf -> int32 give 0");

    /* Bool: any non-zero is true, also fractions; a bool byte of 2 reads as true. */
    static const int32_t iv[] = {0, 1, -1, 5, 256};
    uint8_t bo[5];
    cs_convert(bo, CS_DT_BOOL, iv, CS_DT_INT32, 5);
    ok(bo[0] == 0 && bo[1] == 1 && bo[2] == 1 && bo[3] == 1 && bo[4] == 1,
       "int32 0, 1, -1, 5, 256 -> bool gives 0, 1, 1, 1, 1 (256 does not wrap to 0)");
    static const float bf[] = {0.0f, 0.1f, -0.0f, -3.5f, NAN};
    cs_convert(bo, CS_DT_BOOL, bf, CS_DT_FLOAT, 5);
    ok(bo[0] == 0 && bo[1] == 1 && bo[2] == 0 && bo[3] == 1 && bo[4] == 1,
       "float 0, 0.1, -0, -3.5, nan -> bool gives 0, 1, 0, 1, 1 (0.1 is not truncated)");
    double bd = 1e-300;
    cs_convert(bo, CS_DT_BOOL, &bd, CS_DT_DOUBLE, 1);
    ok(bo[0] == 1, "double 1e-300 -> bool is true");
    uint16_t hsub = 0x0001; /* smallest subnormal half */
    cs_convert(bo, CS_DT_BOOL, &hsub, CS_DT_FLOAT16, 1);
    ok(bo[0] == 1, "float16 2^-24 -> bool is true");
    uint8_t bsrc[] = {0, 1, 2, 255};
    float bout[4];
    int64_t bout64[4];
    cs_convert(bout, CS_DT_FLOAT, bsrc, CS_DT_BOOL, 4);
    cs_convert(bout64, CS_DT_INT64, bsrc, CS_DT_BOOL, 4);
    ok(bout[0] == 0 && bout[1] == 1 && bout[2] == 1 && bout[3] == 1,
       "bool bytes 0, 1, 2, 255 -> float give 0, 1, 1, 1");
    ok(bout64[0] == 0 && bout64[1] == 1 && bout64[2] == 1 && bout64[3] == 1,
       "bool bytes 0, 1, 2, 255 -> int64 give 0, 1, 1, 1");

    /* Float narrowing and half through cs_convert. */
    double d01 = 0.1;
    float f01;
    cs_convert(&f01, CS_DT_FLOAT, &d01, CS_DT_DOUBLE, 1);
    ok(f01 == 0.1f, "double 0.1 -> float rounds to the nearest float");
    double dh[] = {65504.0, 1e6, -1e6, 1.0, -0.0};
    uint16_t hh[5];
    cs_convert(hh, CS_DT_FLOAT16, dh, CS_DT_DOUBLE, 5);
    ok(hh[0] == 0x7bff && hh[1] == 0x7c00 && hh[2] == 0xfc00 && hh[3] == 0x3c00 && hh[4] == 0x8000,
       "double 65504, 1e6, -1e6, 1, -0 -> float16 gives 7bff, 7c00, fc00, 3c00, 8000");
    int32_t ih[] = {2049, 4096, -3};
    cs_convert(hh, CS_DT_FLOAT16, ih, CS_DT_INT32, 3);
    ok(hh[0] == 0x6800 && hh[1] == 0x6c00 && hh[2] == 0xc200,
       "int32 2049 -> float16 rounds to 2048 (even); 4096 and -3 are exact");
    uint16_t hs[] = {0x3c00, 0xfc00, 0x7e00, 0x0001};
    double hd[4];
    cs_convert(hd, CS_DT_DOUBLE, hs, CS_DT_FLOAT16, 4);
    ok(hd[0] == 1.0 && isinf(hd[1]) && hd[1] < 0 && isnan(hd[2]) && hd[3] == ldexp(1, -24),
       "float16 1, -inf, nan, 2^-24 -> double");
    /* Same type: a plain copy. */
    int64_t same_src[] = {INT64_MIN, -1, INT64_MAX}, same_dst[3];
    cs_convert(same_dst, CS_DT_INT64, same_src, CS_DT_INT64, 3);
    ok(memcmp(same_src, same_dst, sizeof same_src) == 0, "int64 -> int64 copies all bits");
    uint64_t huge_u = UINT64_MAX, huge_dst;
    cs_convert(&huge_dst, CS_DT_UINT64, &huge_u, CS_DT_UINT64, 1);
    ok(huge_dst == UINT64_MAX, "uint64 max -> uint64 is unchanged");
}

/* ------------------------------------------------------------ float16 */

static void test_half(void)
{
    /* Decoding every half against the formula (sign, exponent, mantissa). */
    int bad_decode = 0, bad_round = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = cs_half_to_float((uint16_t)h);
        double want = elem_get(&(uint16_t){(uint16_t)h}, CS_DT_FLOAT16, 0);
        int good = isnan(want) ? isnan(f) : ((double)f == want && !signbit(f) == !(h & 0x8000));
        if (!good && bad_decode++ < 5)
            diag("half %04x decodes to %a, expected %a", h, (double)f, want);
        uint16_t back = cs_float_to_half(f);
        int rt = half_is_nan((uint16_t)h) ? half_is_nan(back) && (back & 0x8000) == (h & 0x8000)
                                          : back == h;
        if (!rt && bad_round++ < 5)
            diag("half %04x -> float -> half gives %04x", h, back);
    }
    ok(bad_decode == 0, "all 65536 halves decode to sign * 2^e * 1.m (subnormals, inf, nan)");
    ok(bad_round == 0, "every half round-trips through float (nan stays nan with its sign)");

    ok(cs_half_to_float(0x0001) == ldexpf(1, -24), "0x0001 is 2^-24");
    ok(cs_half_to_float(0x03ff) == 1023 * ldexpf(1, -24), "0x03ff is the largest subnormal");
    ok(cs_half_to_float(0x0400) == ldexpf(1, -14), "0x0400 is 2^-14, the smallest normal");
    ok(cs_half_to_float(0x7bff) == 65504.0f, "0x7bff is 65504");
    ok(cs_half_to_float(0x3c00) == 1.0f && cs_half_to_float(0xc000) == -2.0f, "1 and -2");
    ok(isinf(cs_half_to_float(0x7c00)) && cs_half_to_float(0xfc00) < 0 &&
           isinf(cs_half_to_float(0xfc00)),
       "0x7c00 is inf, 0xfc00 is -inf");
    ok(cs_half_to_float(0x8000) == 0 && signbit(cs_half_to_float(0x8000)), "0x8000 is -0");

    /* float -> half at chosen points. */
    ok(cs_float_to_half(65504.0f) == 0x7bff, "65504 -> 0x7bff");
    ok(cs_float_to_half(65519.996f) == 0x7bff, "65519.996 (below the midpoint to 65536) -> 0x7bff");
    ok(cs_float_to_half(65520.0f) == 0x7c00, "65520 (midpoint, ties to even) -> inf");
    ok(cs_float_to_half(1e5f) == 0x7c00 && cs_float_to_half(-1e5f) == 0xfc00,
       "+-1e5 overflow to +-inf");
    ok(cs_float_to_half(FLT_MAX) == 0x7c00, "FLT_MAX -> inf");
    ok(cs_float_to_half(INFINITY) == 0x7c00 && cs_float_to_half(-INFINITY) == 0xfc00, "+-inf kept");
    uint16_t hn = cs_float_to_half(NAN);
    ok(half_is_nan(hn), "nan -> a half nan (%04x)", hn);
    ok(half_is_nan(cs_float_to_half(-NAN)) && (cs_float_to_half(-NAN) & 0x8000),
       "-nan keeps its sign");
    float nan_small_payload;
    uint32_t nb = 0x7f800001u; /* payload only in bits that a half drops */
    memcpy(&nan_small_payload, &nb, sizeof nb);
    ok(half_is_nan(cs_float_to_half(nan_small_payload)),
       "a nan whose payload lies in the dropped bits stays nan, not inf");
    ok(cs_float_to_half(0.0f) == 0x0000 && cs_float_to_half(-0.0f) == 0x8000, "+0 and -0 kept");

    /* Round to nearest, ties to even. */
    ok(cs_float_to_half(1.0f + ldexpf(1, -11)) == 0x3c00, "1 + 2^-11 (tie) -> 1 (even)");
    ok(cs_float_to_half(1.0f + 3 * ldexpf(1, -11)) == 0x3c02, "1 + 3*2^-11 (tie) -> 0x3c02 (even)");
    ok(cs_float_to_half(1.0f + ldexpf(1, -11) + ldexpf(1, -20)) == 0x3c01,
       "just above the tie rounds up to 0x3c01");
    ok(cs_float_to_half(2047.5f) == 0x6800 && cs_float_to_half(2047.0f) == 0x67ff,
       "2047 is exact (0x67ff); 2047.5 (tie) -> 2048 (0x6800)");
    ok(cs_float_to_half(-(1.0f + 3 * ldexpf(1, -11))) == 0xbc02, "ties to even for negatives");
    ok(cs_float_to_half(0.1f) == 0x2e66, "0.1 -> 0x2e66");
    ok(cs_float_to_half(1.0f / 3.0f) == 0x3555, "1/3 -> 0x3555");

    /* Subnormal results. */
    ok(cs_float_to_half(ldexpf(1, -24)) == 0x0001, "2^-24 -> 0x0001");
    ok(cs_float_to_half(-ldexpf(1, -24)) == 0x8001, "-2^-24 -> 0x8001");
    ok(cs_float_to_half(ldexpf(1, -25)) == 0x0000, "2^-25 (tie between 0 and 2^-24) -> 0");
    ok(cs_float_to_half(ldexpf(1, -25) * 1.0001f) == 0x0001, "just above 2^-25 -> 0x0001");
    ok(cs_float_to_half(ldexpf(3, -25)) == 0x0002, "1.5 * 2^-24 (tie) -> 0x0002 (even)");
    ok(cs_float_to_half(ldexpf(5, -25)) == 0x0002, "2.5 * 2^-24 (tie) -> 0x0002 (even)");
    ok(cs_float_to_half(ldexpf(1, -26)) == 0x0000, "2^-26 underflows to 0");
    ok(cs_float_to_half(-ldexpf(1, -26)) == 0x8000, "-2^-26 underflows to -0");
    ok(cs_float_to_half(1e-30f) == 0x0000 && cs_float_to_half(FLT_TRUE_MIN) == 0x0000,
       "tiny floats (1e-30, the smallest float subnormal) -> 0");
    ok(cs_float_to_half(ldexpf(2047, -25)) == 0x0400,
       "1023.5 * 2^-24 (tie between largest subnormal and smallest normal) -> 0x0400");
    ok(cs_float_to_half(1023 * ldexpf(1, -24)) == 0x03ff, "largest subnormal is exact");
    ok(cs_float_to_half(ldexpf(1, -14)) == 0x0400, "2^-14 -> 0x0400");

    /* Every midpoint between neighbouring finite halves, and the floats
     * just either side of it. */
    int bad_mid = 0;
    for (uint16_t h = 0; h < 0x7bff; h++) {
        float lo = cs_half_to_float(h), hi = cs_half_to_float((uint16_t)(h + 1));
        float mid = lo + (hi - lo) / 2; /* exact: needs one more bit than a half */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : h;
        uint16_t r_mid = cs_float_to_half(mid);
        uint16_t r_below = cs_float_to_half(nextafterf(mid, 0));
        uint16_t r_above = cs_float_to_half(nextafterf(mid, INFINITY));
        uint16_t r_neg = cs_float_to_half(-mid);
        if (r_mid != even || r_below != h || r_above != h + 1 || r_neg != (even | 0x8000)) {
            if (bad_mid++ < 5)
                diag("midpoint of %04x/%04x: got %04x, below %04x, above %04x, neg %04x", h,
                     h + 1, r_mid, r_below, r_above, r_neg);
        }
    }
    ok(bad_mid == 0, "all %d midpoints between finite halves round to even, and their "
                     "neighbours to the nearer half", 0x7bff);
    /* Between the largest half and the would-be 65536. */
    float top_mid = 65520.0f;
    ok(cs_float_to_half(nextafterf(top_mid, 0)) == 0x7bff &&
           cs_float_to_half(nextafterf(top_mid, INFINITY)) == 0x7c00,
       "just below 65520 -> 65504; just above -> inf");
}

/* ------------------------------------------------------------ tensors */

static void test_copy_free(void)
{
    cs_err err;
    memset(&err, 0, sizeof err);
    float data[6] = {1, 2, 3, 4, 5, 6};
    cs_tensor src;
    memset(&src, 0, sizeof src);
    int64_t d[] = {2, 3};
    cs_tensor_set_shape(&src, CS_DT_FLOAT, 2, d);
    src.data = data;
    src.owns_data = false;

    cs_tensor dst;
    memset(&dst, 0, sizeof dst);
    cs_status st = cs_tensor_copy(&dst, &src, &err);
    ok(st == CS_OK, "cs_tensor_copy succeeds");
    ok(dst.dtype == CS_DT_FLOAT && cs_tensor_same_shape(&dst, &src), "the copy has dtype and shape");
    ok(dst.data && dst.data != src.data && dst.owns_data, "the copy owns a new buffer");
    ok(dst.data && memcmp(dst.data, data, sizeof data) == 0, "the copy holds the same values");
    data[0] = 99;
    ok(dst.data && ((float *)dst.data)[0] == 1, "changing the source leaves the copy alone");
    ok(cs_tensor_get_f64(&dst, 5) == 6.0 && cs_tensor_get_i64(&dst, 4) == 5,
       "cs_tensor_get_f64 / get_i64 read elements");
    cs_tensor_set_f64(&dst, 1, -2.75);
    ok(((float *)dst.data)[1] == -2.75f, "cs_tensor_set_f64 writes an element");
    cs_tensor_free(&dst);
    ok(dst.data == NULL && dst.ndim == 0 && !dst.owns_data && dst.dtype == CS_DT_UNDEFINED,
       "cs_tensor_free resets the tensor to empty");
    cs_tensor_free(&dst); /* freeing an empty tensor again is harmless */
    ok(1, "freeing an emptied tensor again is harmless");

    /* Freeing a borrowed tensor does not free the buffer it points to. */
    cs_tensor_free(&src);
    ok(src.data == NULL && data[1] == 2 && data[5] == 6,
       "cs_tensor_free on a borrowing tensor clears it and leaves the buffer alone");

    /* Copy of a tensor without data: zeroed owned buffer. */
    cs_tensor nod, nodc;
    memset(&nod, 0, sizeof nod);
    memset(&nodc, 0, sizeof nodc);
    int64_t d4[] = {4};
    cs_tensor_set_shape(&nod, CS_DT_INT64, 1, d4);
    st = cs_tensor_copy(&nodc, &nod, &err);
    int64_t zeros[4] = {0};
    ok(st == CS_OK && nodc.data && memcmp(nodc.data, zeros, sizeof zeros) == 0,
       "copying a tensor without data gives a zeroed owned buffer");
    cs_tensor_free(&nodc);

    /* Scalars and empty tensors. */
    double sv = 3.25;
    cs_tensor sc, scc;
    memset(&sc, 0, sizeof sc);
    memset(&scc, 0, sizeof scc);
    cs_tensor_set_shape(&sc, CS_DT_DOUBLE, 0, NULL);
    sc.data = &sv;
    st = cs_tensor_copy(&scc, &sc, &err);
    ok(st == CS_OK && scc.ndim == 0 && scc.data && *(double *)scc.data == 3.25,
       "a scalar copies with rank 0 and its value");
    cs_tensor_free(&scc);
    int64_t de[] = {0, 3};
    cs_tensor em, emc;
    memset(&em, 0, sizeof em);
    memset(&emc, 0, sizeof emc);
    cs_tensor_set_shape(&em, CS_DT_FLOAT, 2, de);
    st = cs_tensor_copy(&emc, &em, &err);
    ok(st == CS_OK && emc.dims[0] == 0 && emc.dims[1] == 3 && emc.owns_data,
       "an empty [0, 3] tensor copies");
    cs_tensor_free(&emc);

    cs_tensor al;
    memset(&al, 0, sizeof al);
    int64_t da[] = {3, 5};
    cs_tensor_set_shape(&al, CS_DT_UINT16, 2, da);
    st = cs_tensor_alloc(&al, &err);
    int zero = st == CS_OK && al.data && al.owns_data;
    for (int i = 0; zero && i < 15; i++)
        zero &= ((uint16_t *)al.data)[i] == 0;
    ok(zero, "cs_tensor_alloc gives owned zeroed memory");
    cs_tensor_free(&al);
}

static void test_shape_str(void)
{
    cs_tensor t;
    memset(&t, 0, sizeof t);
    char buf[64];
    int64_t d[] = {2, 3, 4};
    cs_tensor_set_shape(&t, CS_DT_FLOAT, 3, d);
    ok(strcmp(cs_shape_str(&t, buf, sizeof buf), "[2, 3, 4]") == 0, "shape_str [2, 3, 4]: '%s'",
       buf);
    ok(cs_shape_str(&t, buf, sizeof buf) == buf, "cs_shape_str returns its buffer");
    cs_tensor_set_shape(&t, CS_DT_FLOAT, 0, NULL);
    ok(strcmp(cs_shape_str(&t, buf, sizeof buf), "[]") == 0, "a scalar is '[]'");
    int64_t d1[] = {0};
    cs_tensor_set_shape(&t, CS_DT_FLOAT, 1, d1);
    ok(strcmp(cs_shape_str(&t, buf, sizeof buf), "[0]") == 0, "[0]");
    int64_t dl[] = {INT64_MAX, 1};
    cs_tensor_set_shape(&t, CS_DT_FLOAT, 2, dl);
    ok(strcmp(cs_shape_str(&t, buf, sizeof buf), "[9223372036854775807, 1]") == 0,
       "large dimensions print in full");

    /* Small buffers: NUL-terminated prefix, nothing written past size. */
    int64_t d3[] = {100, 200, 300};
    cs_tensor_set_shape(&t, CS_DT_FLOAT, 3, d3);
    const char *full = "[100, 200, 300]";
    int bad = 0;
    for (size_t size = 1; size <= 20; size++) {
        char small[32];
        memset(small, '#', sizeof small);
        cs_shape_str(&t, small, size);
        size_t len = strnlen(small, size);
        int good = len < size && strncmp(small, full, len) == 0 &&
                   len == (size - 1 < strlen(full) ? size - 1 : strlen(full));
        for (size_t b = size; b < sizeof small; b++)
            good &= small[b] == '#';
        if (!good && bad++ < 3)
            diag("shape_str into %zu bytes gave '%.*s'", size, (int)size, small);
    }
    ok(bad == 0, "into buffers of 1..20 bytes: the longest prefix that fits, terminated, no overflow");
}

/* ----------------------------------------------------------- reductions */

/* cs_sum / cs_dot against long double sums: within the stated bound (float
 * lanes add at most 8 terms before the double sum, so 16 float ulps of the
 * magnitude covers them), exact on integers, and independent of where the
 * array lies. */
static void test_accum(void)
{
    static const int64_t lens[] = {0, 1, 7, 15, 16, 17, 127, 128, 129, 300, 1000, 4097};
    enum { NL = sizeof lens / sizeof lens[0], MAXN = 4097 };
    static float xf[MAXN + 1], yf[MAXN + 1];
    static double xd[MAXN + 1], yd[MAXN + 1];
    uint64_t s = 12345;
    for (int i = 0; i <= MAXN; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) / 9007199254740992.0 * 2 - 1; /* [-1, 1) */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double w = (double)(s >> 11) / 9007199254740992.0 * 2 - 1;
        xf[i] = (float)(u * 1e3), yf[i] = (float)w;
        xd[i] = u * 1e3, yd[i] = w;
    }
    int bad_f = 0, bad_d = 0;
    for (int l = 0; l < NL; l++) {
        int64_t n = lens[l];
        long double rs = 0, rd = 0, as = 0, ad = 0, rsd = 0, rdd = 0, asd = 0, add = 0;
        for (int64_t i = 0; i < n; i++) {
            rs += xf[i], as += fabsl((long double)xf[i]);
            rd += (long double)xf[i] * yf[i], ad += fabsl((long double)xf[i] * yf[i]);
            rsd += xd[i], asd += fabsl((long double)xd[i]);
            rdd += (long double)xd[i] * yd[i], add += fabsl((long double)xd[i] * yd[i]);
        }
        bad_f += fabsl(cs_sum_f32(xf, n) - rs) > 16 * FLT_EPSILON * as;
        bad_f += fabsl(cs_dot_f32(xf, yf, n) - rd) > 16 * FLT_EPSILON * ad;
        bad_d += fabsl(cs_sum_f64(xd, n) - rsd) > 16 * DBL_EPSILON * asd;
        bad_d += fabsl(cs_dot_f64(xd, yd, n) - rdd) > 16 * DBL_EPSILON * add;
    }
    ok(bad_f == 0, "cs_sum_f32 and cs_dot_f32 agree with long double within 16 float ulps of the "
                   "magnitude (%d of %d off)", bad_f, 2 * NL);
    ok(bad_d == 0, "cs_sum_f64 and cs_dot_f64 agree with long double within 16 double ulps (%d of "
                   "%d off)", bad_d, 2 * NL);

    static float ints[1000];
    for (int i = 0; i < 1000; i++)
        ints[i] = (float)(i + 1);
    ok(cs_sum_f32(ints, 1000) == 500500.0 && cs_dot_f32(ints, ints, 100) == 338350.0,
       "integer sums are exact (%.1f, %.1f)", cs_sum_f32(ints, 1000), cs_dot_f32(ints, ints, 100));

    /* the same values one element further on: the same bits */
    static float shifted[MAXN + 1];
    memcpy(shifted + 1, xf, sizeof(float) * 1000);
    ok(cs_sum_f32(shifted + 1, 1000) == cs_sum_f32(xf, 1000) &&
           cs_dot_f32(shifted + 1, yf, 1000) == cs_dot_f32(xf, yf, 1000),
       "results do not depend on the array's alignment");
}

int main(void)
{
    test_dtypes();
    test_numel_bytes();
    test_shape_check();
    test_convert_all_pairs();
    test_convert_edges();
    test_half();
    test_copy_free();
    test_shape_str();
    test_accum();
    return tap_done();
}
