/* Broadcasting binary operators: Add, Sub, Mul, Div, Pow.
 *
 * Semantics are ONNX's from opset 7 on: numpy multidirectional broadcasting
 * (the legacy `broadcast`/`axis` attributes of opsets 1-6 are not handled).
 * Add/Sub/Mul/Div take two inputs of one type: float, double, or any 8- to
 * 64-bit integer.  Choices at the edges:
 *   - integer Add/Sub/Mul wrap around modulo 2^bits (numpy's behaviour) and
 *     are computed in uint64 so signed overflow is never undefined;
 *   - integer Div truncates toward zero (C division; numpy true division
 *     followed by a cast, as the ONNX reference does, gives the same), and
 *     INT_MIN / -1 wraps to INT_MIN; a zero divisor is an error
 *     (CS_ERR_RUNTIME) rather than a trap;
 *   - Pow's output has the base's type.  A float/double base with a
 *     same-typed exponent runs the direct kernel; another exponent type is
 *     first converted to the base type.  An int32/int64 base goes through
 *     double (exact while results stay below 2^53) and is truncated back.
 *
 * Kernels: every output is walked as a sequence of contiguous runs along the
 * innermost dimension after merging dimensions that are contiguous in both
 * inputs, so equal shapes are one run, a bias [C] added to [N, C] is N runs of
 * C, and a per-channel [C, 1, 1] on [N, C, H, W] is N*C runs of H*W against a
 * scalar.  Only the outer index bookkeeping is per run, never per element. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "interp/op.h"
#include "tensor/broadcast.h"

typedef enum binary_kind { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_POW, BIN_COUNT } binary_kind;

/* out[i] = a[i * sa] OP b[i * sb] for i < n; sa and sb are 0 or 1. */
typedef void (*binary_kernel)(int64_t n, const void *a_, int64_t sa, const void *b_, int64_t sb,
                              void *out_);

/* EXPR reads the two operands as `a` and `b`.  Separate loops for each
 * stride pattern let the compiler vectorise the common ones. */
#define DEFINE_KERNEL(NAME, T, EXPR)                                                   \
    static void NAME(int64_t n, const void *a_, int64_t sa, const void *b_, int64_t sb, \
                     void *out_)                                                       \
    {                                                                                  \
        const T *pa = a_, *pb = b_;                                                    \
        T *po = out_;                                                                  \
        if (sa && sb) {                                                                \
            for (int64_t i = 0; i < n; i++) {                                          \
                const T a = pa[i], b = pb[i];                                          \
                po[i] = (T)(EXPR);                                                     \
            }                                                                          \
        } else if (sa) {                                                               \
            const T b = pb[0];                                                         \
            for (int64_t i = 0; i < n; i++) {                                          \
                const T a = pa[i];                                                     \
                po[i] = (T)(EXPR);                                                     \
            }                                                                          \
        } else if (sb) {                                                               \
            const T a = pa[0];                                                         \
            for (int64_t i = 0; i < n; i++) {                                          \
                const T b = pb[i];                                                     \
                po[i] = (T)(EXPR);                                                     \
            }                                                                          \
        } else {                                                                       \
            const T a = pa[0], b = pb[0];                                              \
            const T v = (T)(EXPR);                                                     \
            for (int64_t i = 0; i < n; i++)                                            \
                po[i] = v;                                                             \
        }                                                                              \
    }

/* (dtype, C type, suffix) of each supported element type. */
#define FLOAT_TYPES(X) X(CS_DT_FLOAT, float, f32) X(CS_DT_DOUBLE, double, f64)
#define SIGNED_TYPES(X)                                                              \
    X(CS_DT_INT8, int8_t, i8) X(CS_DT_INT16, int16_t, i16) X(CS_DT_INT32, int32_t, i32) \
    X(CS_DT_INT64, int64_t, i64)
#define UNSIGNED_TYPES(X)                                                                \
    X(CS_DT_UINT8, uint8_t, u8) X(CS_DT_UINT16, uint16_t, u16) X(CS_DT_UINT32, uint32_t, u32) \
    X(CS_DT_UINT64, uint64_t, u64)

#define DEF_FLOAT(DT, T, S)                       \
    DEFINE_KERNEL(add_##S, T, a + b)              \
    DEFINE_KERNEL(sub_##S, T, a - b)              \
    DEFINE_KERNEL(mul_##S, T, a * b)              \
    DEFINE_KERNEL(div_##S, T, a / b)
/* Modular arithmetic in uint64: the conversion back keeps the low bits. */
#define DEF_INT(DT, T, S)                                     \
    DEFINE_KERNEL(add_##S, T, (uint64_t)a + (uint64_t)b)      \
    DEFINE_KERNEL(sub_##S, T, (uint64_t)a - (uint64_t)b)      \
    DEFINE_KERNEL(mul_##S, T, (uint64_t)a * (uint64_t)b)
/* b != 0 is checked before the kernel runs; -1 is special-cased because
 * INT_MIN / -1 overflows (and traps on x86). */
#define DEF_SDIV(DT, T, S) DEFINE_KERNEL(div_##S, T, b == -1 ? 0 - (uint64_t)a : (uint64_t)(a / b))
#define DEF_UDIV(DT, T, S) DEFINE_KERNEL(div_##S, T, a / b)

FLOAT_TYPES(DEF_FLOAT)
SIGNED_TYPES(DEF_INT)
SIGNED_TYPES(DEF_SDIV)
UNSIGNED_TYPES(DEF_INT)
UNSIGNED_TYPES(DEF_UDIV)
DEFINE_KERNEL(pow_f32, float, powf(a, b))
DEFINE_KERNEL(pow_f64, double, pow(a, b))

#define ROW_FLOAT(DT, T, S) [DT] = {add_##S, sub_##S, mul_##S, div_##S, pow_##S},
#define ROW_INT(DT, T, S) [DT] = {add_##S, sub_##S, mul_##S, div_##S, NULL},

/* kernels[dtype][kind], NULL where the pair is not supported directly. */
static const binary_kernel kernels[CS_DT_COUNT_][BIN_COUNT] = {
    FLOAT_TYPES(ROW_FLOAT) SIGNED_TYPES(ROW_INT) UNSIGNED_TYPES(ROW_INT)};

/* Runs kernel over the broadcast of a (data pa) and b (data pb) into out;
 * all three hold elements of esz bytes.  The shapes come from the tensors,
 * the data from the pointers, so Pow can feed converted copies. */
static void binary_apply(binary_kernel kernel, size_t esz, const cs_tensor *a, const void *pa,
                         const cs_tensor *b, const void *pb, cs_tensor *out)
{
    int64_t full_sa[CS_MAX_DIMS], full_sb[CS_MAX_DIMS];
    cs_broadcast_strides(a, out, full_sa);
    cs_broadcast_strides(b, out, full_sb);

    /* Drop size-1 dimensions and merge a dimension into the previous one
     * when both inputs step through the pair contiguously (or not at all). */
    int64_t dims[CS_MAX_DIMS], sa[CS_MAX_DIMS], sb[CS_MAX_DIMS];
    int rank = 0;
    for (int d = 0; d < out->ndim; d++) {
        int64_t size = out->dims[d];
        if (size == 0)
            return;
        if (size == 1)
            continue;
        if (rank > 0 && sa[rank - 1] == full_sa[d] * size && sb[rank - 1] == full_sb[d] * size) {
            dims[rank - 1] *= size;
            sa[rank - 1] = full_sa[d];
            sb[rank - 1] = full_sb[d];
        } else {
            dims[rank] = size;
            sa[rank] = full_sa[d];
            sb[rank] = full_sb[d];
            rank++;
        }
    }
    if (rank == 0) { /* one element */
        dims[0] = 1;
        sa[0] = sb[0] = 0;
        rank = 1;
    }

    /* Innermost strides are 0 or 1: a non-broadcast innermost dimension of a
     * contiguous tensor has unit stride. */
    int64_t inner = dims[rank - 1];
    int64_t inner_sa = sa[rank - 1], inner_sb = sb[rank - 1];
    int64_t outer = cs_tensor_numel(out) / inner;
    const char *ca = pa, *cb = pb;
    char *co = out->data;
    int64_t idx[CS_MAX_DIMS] = {0};
    int64_t off_a = 0, off_b = 0;
    for (int64_t o = 0; o < outer; o++) {
        kernel(inner, ca + (size_t)off_a * esz, inner_sa, cb + (size_t)off_b * esz, inner_sb,
               co + (size_t)(o * inner) * esz);
        /* odometer over dims[0 .. rank-2] */
        for (int d = rank - 2; d >= 0; d--) {
            off_a += sa[d];
            off_b += sb[d];
            if (++idx[d] < dims[d])
                break;
            off_a -= sa[d] * dims[d];
            off_b -= sb[d] * dims[d];
            idx[d] = 0;
        }
    }
}

static bool is_int_type(cs_dtype t)
{
    return t != CS_DT_BOOL && t != CS_DT_FLOAT16 && !cs_dtype_is_float(t) &&
           cs_dtype_size(t) > 0;
}

/* Pow needs scratch when its types differ from the direct kernel's:
 * an exponent of another type is converted to the base type (float base),
 * or everything goes through double (integer base). */
static size_t pow_scratch_bytes(const cs_tensor *base, const cs_tensor *expo, const cs_tensor *out)
{
    if (cs_dtype_is_float(base->dtype))
        return base->dtype == expo->dtype
                   ? 0
                   : (size_t)cs_tensor_numel(expo) * cs_dtype_size(base->dtype);
    return (size_t)(cs_tensor_numel(base) + cs_tensor_numel(expo) + cs_tensor_numel(out)) *
           sizeof(double);
}

static cs_status binary_infer(cs_op_call *c, binary_kind kind, cs_err *err)
{
    if (c->n_in != 2 || !c->in[0] || !c->in[1])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 2 inputs, got %d", c->n_in);
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    const cs_tensor *a = c->in[0], *b = c->in[1];
    if (kind == BIN_POW) {
        if (!cs_dtype_is_float(a->dtype) && a->dtype != CS_DT_INT32 && a->dtype != CS_DT_INT64)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "base has type %s (float, double, int32 or int64 expected)",
                              cs_dtype_name(a->dtype));
        if (!cs_dtype_is_float(b->dtype) && !is_int_type(b->dtype))
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "exponent has unsupported type %s",
                              cs_dtype_name(b->dtype));
    } else {
        cs_status st = cs_op_same_dtype(c, 0, 1, err);
        if (st)
            return st;
        if ((unsigned)a->dtype >= CS_DT_COUNT_ || !kernels[a->dtype][kind])
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "type %s is not supported",
                              cs_dtype_name(a->dtype));
    }
    char what[160];
    snprintf(what, sizeof what, "%s node '%s'", c->node->op_type, c->node->name);
    const cs_tensor *pair[2] = {a, b};
    cs_tensor *out = c->out[0];
    cs_status st = cs_broadcast_shapes(pair, 2, out, what, err);
    if (st)
        return st;
    out->dtype = a->dtype;
    c->scratch_bytes = kind == BIN_POW ? pow_scratch_bytes(a, b, out) : 0;
    return CS_OK;
}

/* A zero divisor anywhere in an integer Div is an error, checked up front so
 * the kernel's loops stay branch-free. */
static cs_status check_int_divisor(const cs_op_call *c, const cs_tensor *b, cs_err *err)
{
    size_t esz = cs_dtype_size(b->dtype);
    int64_t n = cs_tensor_numel(b);
    static const char zero[8];
    for (int64_t i = 0; i < n; i++)
        if (memcmp((const char *)b->data + (size_t)i * esz, zero, esz) == 0)
            return cs_op_fail(c, err, CS_ERR_RUNTIME, "integer division by zero (divisor element %lld)",
                              (long long)i);
    return CS_OK;
}

static cs_status binary_forward(cs_op_call *c, binary_kind kind, cs_err *err)
{
    const cs_tensor *a = c->in[0], *b = c->in[1];
    cs_tensor *out = c->out[0];
    size_t esz = cs_dtype_size(a->dtype);
    if (kind == BIN_DIV && !cs_dtype_is_float(a->dtype)) {
        cs_status st = check_int_divisor(c, b, err);
        if (st)
            return st;
    }
    if (kind != BIN_POW || (cs_dtype_is_float(a->dtype) && a->dtype == b->dtype)) {
        binary_apply(kernels[a->dtype][kind], esz, a, a->data, b, b->data, out);
        return CS_OK;
    }
    if (cs_dtype_is_float(a->dtype)) {
        /* float base, exponent of another type: convert the exponent */
        void *expo = c->scratch; /* numel(b) elements of a's type */
        cs_convert(expo, a->dtype, b->data, b->dtype, cs_tensor_numel(b));
        binary_apply(kernels[a->dtype][BIN_POW], esz, a, a->data, b, expo, out);
        return CS_OK;
    }
    /* integer base: compute in double, truncate back to the base type */
    double *base = c->scratch;                  /* numel(a) */
    double *expo = base + cs_tensor_numel(a);   /* numel(b) */
    double *res = expo + cs_tensor_numel(b);    /* numel(out) */
    cs_convert(base, CS_DT_DOUBLE, a->data, a->dtype, cs_tensor_numel(a));
    cs_convert(expo, CS_DT_DOUBLE, b->data, b->dtype, cs_tensor_numel(b));
    cs_tensor res_t = *out;
    res_t.dtype = CS_DT_DOUBLE;
    res_t.data = res;
    binary_apply(pow_f64, sizeof(double), a, base, b, expo, &res_t);
    cs_convert(out->data, out->dtype, res, CS_DT_DOUBLE, cs_tensor_numel(out));
    return CS_OK;
}

#define BINARY_OP(NAME, KIND)                                                   \
    static cs_status NAME##_infer(cs_op_call *c, cs_err *err)                   \
    {                                                                           \
        return binary_infer(c, KIND, err);                                      \
    }                                                                           \
    static cs_status NAME##_forward(cs_op_call *c, cs_err *err)                 \
    {                                                                           \
        return binary_forward(c, KIND, err);                                    \
    }                                                                           \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = 7, .infer = NAME##_infer, \
                                    .forward = NAME##_forward};

BINARY_OP(Add, BIN_ADD)
BINARY_OP(Sub, BIN_SUB)
BINARY_OP(Mul, BIN_MUL)
BINARY_OP(Div, BIN_DIV)
BINARY_OP(Pow, BIN_POW)
