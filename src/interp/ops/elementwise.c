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
 * Derivative rules (float and double; integer uses have none).  For
 * z = f(a, b) with local derivatives f_a, f_b, f_aa, f_ab, f_bb at each
 * output element, and sum_bc summing over the dimensions along which an
 * input was broadcast:
 *   vjp  ga += sum_bc gz f_a                  gb += sum_bc gz f_b
 *   jvp  tz  = f_a ta + f_b tb
 *   rop  ga += sum_bc gz (f_aa ta + f_ab tb)  gb += sum_bc gz (f_ab ta + f_bb tb)
 * with
 *   Add  f_a = 1, f_b = 1 (linear: no rop)    Sub  f_a = 1, f_b = -1 (linear)
 *   Mul  f_a = b, f_b = a, f_ab = 1
 *   Div  f_a = 1/b, f_b = -a/b^2 = -z/b, f_ab = -1/b^2, f_bb = 2a/b^3 = 2z/b^2
 *   Pow  f_a = b a^(b-1), f_aa = b (b-1) a^(b-2),
 *        f_b = z log a, f_ab = a^(b-1) (1 + b log a), f_bb = z (log a)^2.
 * Pow's choices where these formulas break down:
 *   - f_a = 0 where b == 0 and f_aa = 0 where b is 0 or 1 (a^0 = 1 and a^1 = a
 *     are constant / linear even at a = 0, where b a^(b-1) would be 0 * inf;
 *     PyTorch makes the same choice for f_a);
 *   - the exponent terms f_b, f_ab, f_bb are defined for a > 0 only and are
 *     taken as 0 where a <= 0.  At a = 0 with b > 0 this is the limit from
 *     a > 0 (z log a -> 0) and PyTorch's value; for a < 0, a^b is real only
 *     at integer b, so no derivative in b exists, and 0 (PyTorch gives NaN)
 *     keeps one negative base from turning a whole gradient into NaN;
 *   - an exponent of another type than the base (int64, or double with a
 *     float base) is converted like the forward does and gets no gradient:
 *     an integer one never has one, and asking for a mixed float / double
 *     one is an error (CS_ERR_UNSUPPORTED).
 * Broadcast gradients are summed run by run over the forward's merged
 * runs (cs_bcast), so a bias gradient is a contiguous add or a run sum.
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
#define DEFINE_KERNEL(NAME, T, EXPR)                                                    \
    static void NAME(int64_t n, const void *a_, int64_t sa, const void *b_, int64_t sb, \
                     void *out_)                                                        \
    {                                                                                   \
        const T *pa = a_, *pb = b_;                                                     \
        T *po = out_;                                                                   \
        if (sa && sb) {                                                                 \
            for (int64_t i = 0; i < n; i++) {                                           \
                const T a = pa[i], b = pb[i];                                           \
                po[i] = (T)(EXPR);                                                      \
            }                                                                           \
        } else if (sa) {                                                                \
            const T b = pb[0];                                                          \
            for (int64_t i = 0; i < n; i++) {                                           \
                const T a = pa[i];                                                      \
                po[i] = (T)(EXPR);                                                      \
            }                                                                           \
        } else if (sb) {                                                                \
            const T a = pa[0];                                                          \
            for (int64_t i = 0; i < n; i++) {                                           \
                const T b = pb[i];                                                      \
                po[i] = (T)(EXPR);                                                      \
            }                                                                           \
        } else {                                                                        \
            const T a = pa[0], b = pb[0];                                               \
            const T v = (T)(EXPR);                                                      \
            for (int64_t i = 0; i < n; i++)                                             \
                po[i] = v;                                                              \
        }                                                                               \
    }

/* (dtype, C type, suffix) of each supported element type. */
#define FLOAT_TYPES(X) X(CS_DT_FLOAT, float, f32) X(CS_DT_DOUBLE, double, f64)
#define SIGNED_TYPES(X)                                                                 \
    X(CS_DT_INT8, int8_t, i8) X(CS_DT_INT16, int16_t, i16) X(CS_DT_INT32, int32_t, i32) \
    X(CS_DT_INT64, int64_t, i64)
#define UNSIGNED_TYPES(X)                                                                     \
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
    const cs_tensor *ab[2] = {a, b};
    cs_bcast bc;
    cs_bcast_init(&bc, ab, 2, out);
    cs_bcast_pos pos;
    cs_bcast_start(&bc, &pos);
    const char *ca = pa, *cb = pb;
    char *co = out->data;
    for (int64_t o = 0; o < bc.n_runs; o++) {
        kernel(bc.run, ca + (size_t)pos.off[0] * esz, bc.run_stride[0],
               cb + (size_t)pos.off[1] * esz, bc.run_stride[1], co + (size_t)(o * bc.run) * esz);
        cs_bcast_next(&bc, &pos);
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
    /* the rules of a float Pow reconvert a foreign-typed exponent */
    c->ad_scratch_bytes = kind == BIN_POW && cs_dtype_is_float(a->dtype) ? c->scratch_bytes : 0;
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

/* ---- derivative rules (formulas at the top of the file) ---- */

/* One run of n output elements.  dst, g and z point at the run's start in
 * their tensors; a and ta advance by sa, b and tb by sb (0 or 1).  Whether
 * dst is a-, b- or z-shaped (its stride) is fixed by the kernel. */
typedef void (*ad_kernel)(int64_t n, void *dst, const void *g, const void *a, int64_t sa,
                          const void *b, int64_t sb, const void *z, const void *ta,
                          const void *tb);

/* Operands of element i inside a kernel body; SA_ and SB_ are the compile-
 * time strides of the branch being compiled (see DEFINE_AD_KERNEL). */
#define A_ (pa[i * SA_])
#define B_ (pb[i * SB_])
#define Z_ (pz[i])
#define G_ (pg[i])
#define TA_ (pta[i * SA_])
#define TB_ (ptb[i * SB_])

/* dst (contiguous, z-shaped) = VALUE */
#define AD_SET(T, SD, VALUE)                   \
    for (int64_t i = 0; i < n; i++)            \
        pd[i] = (T)(VALUE);
/* dst (stride SD) += VALUE; a broadcast dst (SD == 0) gets the run's sum,
 * accumulated in double in four partial sums (a single chain would wait on
 * each add's latency). */
#define AD_ADD(T, SD, VALUE)                                      \
    if (SD) {                                                     \
        for (int64_t i = 0; i < n; i++)                           \
            pd[i] += (T)(VALUE);                                  \
    } else {                                                      \
        double acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;            \
        int64_t i4 = 0;                                           \
        for (; i4 + 4 <= n; i4 += 4) {                            \
            { const int64_t i = i4;     acc0 += (VALUE); }        \
            { const int64_t i = i4 + 1; acc1 += (VALUE); }        \
            { const int64_t i = i4 + 2; acc2 += (VALUE); }        \
            { const int64_t i = i4 + 3; acc3 += (VALUE); }        \
        }                                                         \
        for (int64_t i = i4; i < n; i++)                          \
            acc0 += (VALUE);                                      \
        pd[0] += (T)((acc0 + acc1) + (acc2 + acc3));              \
    }

/* One loop per stride pattern, as in the forward kernels, so that the
 * strides are constants the compiler folds and the loops vectorise.  SD
 * names the destination's stride: SA_, SB_ or 1. */
#define DEFINE_AD_KERNEL(NAME, T, MODE, SD, VALUE)                                        \
    static void NAME(int64_t n, void *dst_, const void *g_, const void *a_, int64_t sa,   \
                     const void *b_, int64_t sb, const void *z_, const void *ta_,         \
                     const void *tb_)                                                     \
    {                                                                                     \
        T *restrict pd = dst_;                                                            \
        const T *pg = g_, *pa = a_, *pb = b_, *pz = z_, *pta = ta_, *ptb = tb_;           \
        (void)pg, (void)pa, (void)pb, (void)pz, (void)pta, (void)ptb;                     \
        if (sa && sb) {                                                                   \
            enum { SA_ = 1, SB_ = 1 };                                                    \
            MODE(T, SD, VALUE)                                                            \
        } else if (sa) {                                                                  \
            enum { SA_ = 1, SB_ = 0 };                                                    \
            MODE(T, SD, VALUE)                                                            \
        } else if (sb) {                                                                  \
            enum { SA_ = 0, SB_ = 1 };                                                    \
            MODE(T, SD, VALUE)                                                            \
        } else {                                                                          \
            enum { SA_ = 0, SB_ = 0 };                                                    \
            MODE(T, SD, VALUE)                                                            \
        }                                                                                 \
    }

/* Pow's local derivatives, in double for both types (Pow is not on a hot
 * path); the choices at b == 0 / 1 and a <= 0 are explained at the top. */
static double pow_da(double a, double b)
{
    return b == 0 ? 0 : b * pow(a, b - 1);
}
static double pow_db(double a, double z)
{
    return a > 0 ? z * log(a) : 0;
}
static double pow_daa(double a, double b)
{
    return b == 0 || b == 1 ? 0 : b * (b - 1) * pow(a, b - 2);
}
static double pow_dab(double a, double b)
{
    return a > 0 ? pow(a, b - 1) * (1 + b * log(a)) : 0;
}
static double pow_dbb(double a, double z)
{
    double l = a > 0 ? log(a) : 0;
    return z * l * l;
}

/* Forward-mode kernels of an op with first derivatives FA, FB: both
 * tangents, only ta, only tb. */
#define DEFINE_JVP(OP, T, S, FA, FB)                                                 \
    DEFINE_AD_KERNEL(OP##_jvp_ab_##S, T, AD_SET, 1, (FA) * TA_ + (FB) * TB_)         \
    DEFINE_AD_KERNEL(OP##_jvp_a_##S, T, AD_SET, 1, (FA) * TA_)                       \
    DEFINE_AD_KERNEL(OP##_jvp_b_##S, T, AD_SET, 1, (FB) * TB_)
/* vjp kernels (Add and Sub use cs_broadcast_reduce_add instead). */
#define DEFINE_VJP(OP, T, S, FA, FB)                                                 \
    DEFINE_AD_KERNEL(OP##_vjp_a_##S, T, AD_ADD, SA_, G_ * (FA))                      \
    DEFINE_AD_KERNEL(OP##_vjp_b_##S, T, AD_ADD, SB_, G_ * (FB))

#define DEF_AD(DT, T, S)                                                                  \
    DEFINE_JVP(add, T, S, 1, 1)                                                           \
    DEFINE_JVP(sub, T, S, 1, -1)                                                          \
    DEFINE_JVP(mul, T, S, B_, A_)                                                         \
    DEFINE_VJP(mul, T, S, B_, A_)                                                         \
    DEFINE_AD_KERNEL(mul_rop_ab_##S, T, AD_ADD, SA_, G_ * TB_)                            \
    DEFINE_AD_KERNEL(mul_rop_ba_##S, T, AD_ADD, SB_, G_ * TA_)                            \
    DEFINE_JVP(div, T, S, 1 / B_, -Z_ / B_)                                               \
    DEFINE_VJP(div, T, S, 1 / B_, -Z_ / B_)                                               \
    DEFINE_AD_KERNEL(div_rop_ab_##S, T, AD_ADD, SA_, -G_ * TB_ / (B_ * B_))               \
    DEFINE_AD_KERNEL(div_rop_ba_##S, T, AD_ADD, SB_, -G_ * TA_ / (B_ * B_))               \
    DEFINE_AD_KERNEL(div_rop_bb_##S, T, AD_ADD, SB_, 2 * G_ * Z_ * TB_ / (B_ * B_))       \
    DEFINE_JVP(pow, T, S, pow_da(A_, B_), pow_db(A_, Z_))                                 \
    DEFINE_VJP(pow, T, S, pow_da(A_, B_), pow_db(A_, Z_))                                 \
    DEFINE_AD_KERNEL(pow_rop_aa_##S, T, AD_ADD, SA_, G_ * pow_daa(A_, B_) * TA_)          \
    DEFINE_AD_KERNEL(pow_rop_ab_##S, T, AD_ADD, SA_, G_ * pow_dab(A_, B_) * TB_)          \
    DEFINE_AD_KERNEL(pow_rop_ba_##S, T, AD_ADD, SB_, G_ * pow_dab(A_, B_) * TA_)          \
    DEFINE_AD_KERNEL(pow_rop_bb_##S, T, AD_ADD, SB_, G_ * pow_dbb(A_, Z_) * TB_)
FLOAT_TYPES(DEF_AD)

typedef struct binary_rules {
    ad_kernel vjp[2];     /* per input; NULL: gin += vjp_sign * sum_bc gz */
    double vjp_sign[2];
    ad_kernel jvp_ab, jvp[2];
    ad_kernel rop[2][2];  /* [gradient of input][tangent of input]; NULL where f_.. == 0 */
} binary_rules;

#define RULES(DT, T, S)                                                             \
    {                                                                               \
        [BIN_ADD] = {{NULL, NULL}, {1, 1}, add_jvp_ab_##S,                          \
                     {add_jvp_a_##S, add_jvp_b_##S}, {{NULL, NULL}, {NULL, NULL}}}, \
        [BIN_SUB] = {{NULL, NULL}, {1, -1}, sub_jvp_ab_##S,                         \
                     {sub_jvp_a_##S, sub_jvp_b_##S}, {{NULL, NULL}, {NULL, NULL}}}, \
        [BIN_MUL] = {{mul_vjp_a_##S, mul_vjp_b_##S}, {0, 0}, mul_jvp_ab_##S,        \
                     {mul_jvp_a_##S, mul_jvp_b_##S},                                \
                     {{NULL, mul_rop_ab_##S}, {mul_rop_ba_##S, NULL}}},             \
        [BIN_DIV] = {{div_vjp_a_##S, div_vjp_b_##S}, {0, 0}, div_jvp_ab_##S,        \
                     {div_jvp_a_##S, div_jvp_b_##S},                                \
                     {{NULL, div_rop_ab_##S}, {div_rop_ba_##S, div_rop_bb_##S}}},   \
        [BIN_POW] = {{pow_vjp_a_##S, pow_vjp_b_##S}, {0, 0}, pow_jvp_ab_##S,        \
                     {pow_jvp_a_##S, pow_jvp_b_##S},                                \
                     {{pow_rop_aa_##S, pow_rop_ab_##S},                             \
                      {pow_rop_ba_##S, pow_rop_bb_##S}}},                           \
    },
/* [0]: float, [1]: double */
static const binary_rules binary_rule_table[2][BIN_COUNT] = {FLOAT_TYPES(RULES)};

/* Everything a rule call needs: the walk over the broadcast, the data of
 * the forward (b possibly a converted copy in scratch), and which inputs
 * take part. */
typedef struct binary_ad {
    const binary_rules *r;
    cs_bcast bc;
    size_t esz;
    const void *a, *b, *z;
    bool b_diff; /* input b carries gradients / tangents */
} binary_ad;

static cs_status binary_ad_prepare(cs_op_call *c, binary_kind kind, bool want_b, binary_ad *x,
                                   cs_err *err)
{
    const cs_tensor *a = c->in[0], *b = c->in[1];
    if (!cs_dtype_is_float(a->dtype))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "no derivative rules for type %s",
                          cs_dtype_name(a->dtype));
    x->r = &binary_rule_table[a->dtype == CS_DT_DOUBLE][kind];
    const cs_tensor *ab[2] = {a, b};
    cs_bcast_init(&x->bc, ab, 2, c->out[0]);
    x->esz = cs_dtype_size(a->dtype);
    x->a = a->data;
    x->b = b->data;
    x->z = c->out[0]->data;
    x->b_diff = cs_dtype_is_float(b->dtype);
    if (b->dtype != a->dtype) { /* only Pow gets here: infer checked the others */
        if (want_b && x->b_diff)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                              "no derivative for an exponent of type %s with a base of type %s",
                              cs_dtype_name(b->dtype), cs_dtype_name(a->dtype));
        x->b_diff = false;
        cs_convert(c->scratch, a->dtype, b->data, b->dtype, cs_tensor_numel(b));
        x->b = c->scratch;
    }
    return CS_OK;
}

typedef enum ad_at { AT_A, AT_B, AT_Z } ad_at;

/* Runs kernel k over every run; dst is a-, b- or z-shaped as `at` says;
 * g, ta, tb may be NULL when k does not read them. */
static void binary_ad_walk(const binary_ad *x, ad_kernel k, void *dst, ad_at at, const void *g,
                           const void *ta, const void *tb)
{
    const cs_bcast *bc = &x->bc;
    cs_bcast_pos pos;
    cs_bcast_start(bc, &pos);
    for (int64_t o = 0; o < bc->n_runs; o++) {
        size_t oa = (size_t)pos.off[0] * x->esz, ob = (size_t)pos.off[1] * x->esz;
        size_t oz = (size_t)(o * bc->run) * x->esz;
        char *d = (char *)dst + (at == AT_A ? oa : at == AT_B ? ob : oz);
        k(bc->run, d, g ? (const char *)g + oz : NULL, (const char *)x->a + oa,
          bc->run_stride[0], (const char *)x->b + ob, bc->run_stride[1],
          (const char *)x->z + oz, ta ? (const char *)ta + oa : NULL,
          tb ? (const char *)tb + ob : NULL);
        cs_bcast_next(bc, &pos);
    }
}

static cs_status binary_vjp(cs_op_call *c, const cs_op_ad *ad, binary_kind kind, cs_err *err)
{
    const cs_tensor *gz = ad->gout[0];
    cs_tensor *gin[2] = {ad->gin[0], ad->gin[1]};
    if (!gz || (!gin[0] && !gin[1]))
        return CS_OK;
    binary_ad x;
    cs_status st = binary_ad_prepare(c, kind, gin[1] != NULL, &x, err);
    if (st)
        return st;
    if (!x.b_diff)
        gin[1] = NULL;
    for (int i = 0; i < 2; i++) {
        if (!gin[i])
            continue;
        if (x.r->vjp[i]) {
            binary_ad_walk(&x, x.r->vjp[i], gin[i]->data, i == 0 ? AT_A : AT_B, gz->data, NULL,
                           NULL);
        } else {
            st = cs_broadcast_reduce_add(gin[i], gz, x.r->vjp_sign[i], err);
            if (st) {
                cs_err_prefix(err, "%s node '%s'", c->node->op_type, c->node->name);
                return st;
            }
        }
    }
    return CS_OK;
}

static cs_status binary_jvp(cs_op_call *c, const cs_op_ad *ad, binary_kind kind, cs_err *err)
{
    cs_tensor *tz = ad->tout[0];
    if (!tz)
        return CS_OK;
    const cs_tensor *ta = ad->tin[0], *tb = ad->tin[1];
    binary_ad x;
    cs_status st = binary_ad_prepare(c, kind, tb != NULL, &x, err);
    if (st)
        return st;
    if (!x.b_diff)
        tb = NULL;
    if (!ta && !tb) {
        memset(tz->data, 0, cs_tensor_bytes(tz));
        return CS_OK;
    }
    ad_kernel k = ta && tb ? x.r->jvp_ab : x.r->jvp[ta ? 0 : 1];
    binary_ad_walk(&x, k, tz->data, AT_Z, NULL, ta ? ta->data : NULL, tb ? tb->data : NULL);
    return CS_OK;
}

static cs_status binary_rop(cs_op_call *c, const cs_op_ad *ad, binary_kind kind, cs_err *err)
{
    const cs_tensor *gz = ad->gout[0];
    cs_tensor *gin[2] = {ad->gin[0], ad->gin[1]};
    const cs_tensor *tin[2] = {ad->tin[0], ad->tin[1]};
    if (!gz || (!gin[0] && !gin[1]) || (!tin[0] && !tin[1]))
        return CS_OK;
    binary_ad x;
    cs_status st = binary_ad_prepare(c, kind, gin[1] || tin[1], &x, err);
    if (st)
        return st;
    if (!x.b_diff)
        gin[1] = NULL, tin[1] = NULL;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            if (gin[i] && tin[j] && x.r->rop[i][j])
                binary_ad_walk(&x, x.r->rop[i][j], gin[i]->data, i == 0 ? AT_A : AT_B, gz->data,
                               j == 0 ? tin[0]->data : NULL, j == 1 ? tin[1]->data : NULL);
    return CS_OK;
}

/* FLAGS and ROP: Add and Sub are linear (no second-order term). */
#define BINARY_OP(NAME, KIND, FLAGS, ROP)                                             \
    static cs_status NAME##_infer(cs_op_call *c, cs_err *err)                         \
    {                                                                                 \
        return binary_infer(c, KIND, err);                                            \
    }                                                                                 \
    static cs_status NAME##_forward(cs_op_call *c, cs_err *err)                       \
    {                                                                                 \
        return binary_forward(c, KIND, err);                                          \
    }                                                                                 \
    static cs_status NAME##_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)        \
    {                                                                                 \
        return binary_vjp(c, a, KIND, err);                                           \
    }                                                                                 \
    static cs_status NAME##_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)        \
    {                                                                                 \
        return binary_jvp(c, a, KIND, err);                                           \
    }                                                                                 \
    ROP(NAME, KIND)                                                                   \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = 7, .flags = FLAGS,    \
                                    .infer = NAME##_infer, .forward = NAME##_forward, \
                                    .vjp = NAME##_vjp, .jvp = NAME##_jvp,             \
                                    .rop = ROP##_FN(NAME)};

#define WITH_ROP(NAME, KIND)                                                    \
    static cs_status NAME##_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)  \
    {                                                                           \
        return binary_rop(c, a, KIND, err);                                     \
    }
#define WITH_ROP_FN(NAME) NAME##_rop
#define NO_ROP(NAME, KIND)
#define NO_ROP_FN(NAME) NULL

BINARY_OP(Add, BIN_ADD, CS_OP_LINEAR, NO_ROP)
BINARY_OP(Sub, BIN_SUB, CS_OP_LINEAR, NO_ROP)
BINARY_OP(Mul, BIN_MUL, 0, WITH_ROP)
BINARY_OP(Div, BIN_DIV, 0, WITH_ROP)
BINARY_OP(Pow, BIN_POW, 0, WITH_ROP)
