/* Unary elementwise operators: Relu, LeakyRelu, Sigmoid, Tanh, Erf, Exp, Log,
 * Sqrt, Neg, Clip.
 *
 * Every op takes float and double; Relu and Neg also take signed integers
 * (int8..int64, as Relu-14 and Neg-6 allow) and Clip takes every 8- to 64-bit
 * integer type.  Forward follows ONNX exactly; the choices at kinks that
 * matter for derivatives are doc/design.md §2.8's and belong to the backward rules.
 * Notes on forward:
 *   - Relu is `x < 0 ? 0 : x`, so NaN propagates (numpy max, torch.relu);
 *   - LeakyRelu's alpha defaults to 0.01;
 *   - Sigmoid uses e = exp(-|x|), giving 1/(1+e) for x >= 0 and e/(1+e)
 *     otherwise, so neither branch overflows;
 *   - integer Neg wraps (-INT_MIN == INT_MIN) instead of being undefined;
 *   - Clip is min(max(x, lo), hi): when lo > hi every value becomes hi,
 *     which is what later ONNX specs state; NaN passes through.  Before
 *     opset 11 the bounds are the `min` / `max` attributes; from 11 on they
 *     are optional scalar inputs (omitted or empty-named = unbounded).
 *
 * Derivative rules (float and double; integer uses have none), from f' and
 * f'' per element, x the input and y = f(x) the output of the forward:
 *   vjp  gx += f'(x) gy      jvp  ty = f'(x) tx      rop  gx += f''(x) tx gy
 *   Relu       f' = [x > 0]                 piecewise linear (Relu'(0) = 0)
 *   LeakyRelu  f' = x > 0 ? 1 : alpha       piecewise linear (LeakyRelu'(0) = alpha)
 *   Sigmoid    f' = y (1 - y)               f'' = y (1 - y) (1 - 2y)
 *   Tanh       f' = 1 - y^2                 f'' = -2 y (1 - y^2)
 *   Erf        f' = 2/sqrt(pi) exp(-x^2)    f'' = -2 x f'
 *   Exp        f' = y                       f'' = y
 *   Log        f' = 1/x                     f'' = -1/x^2
 *   Sqrt       f' = 1/(2y)                  f'' = -1/(4 x y)  (= -x^(-3/2) / 4)
 *   Neg        f' = -1                      linear
 *   Clip       f' = [lo <= x <= hi]         piecewise linear
 * Conventions at kinks are doc/design.md §2.8's (PyTorch's): Relu'(0) = 0,
 * LeakyRelu'(0) = alpha, Clip passes the gradient where lo <= x <= hi,
 * bounds included (with lo > hi, where the output is hi everywhere, no x
 * passes).  The piecewise-linear rules select rather than multiply, so a
 * blocked element gets exactly 0 even when gy is inf or NaN, as in PyTorch;
 * a NaN input passes nothing.  Log and Sqrt give inf at x = 0 like PyTorch.
 * Clip's min / max inputs (opset 11 on) get no gradient and their tangents
 * are ignored: bounds are constants in the models curvscope reads; a rule
 * treats them as such. */
#include <stdbool.h>
#include <string.h>
#include <tgmath.h>

#include "interp/op.h"

typedef enum unary_kind {
    U_RELU, U_LEAKY_RELU, U_SIGMOID, U_TANH, U_ERF, U_EXP, U_LOG, U_SQRT, U_NEG
} unary_kind;

/* One kernel per float type; the switch sits outside the loops. tgmath.h
 * picks expf/exp etc. from T. */
#define DEFINE_UNARY_FLOAT(T, S)                                                   \
    static void unary_##S(unary_kind kind, int64_t n, const T *x, T *y, T alpha)   \
    {                                                                              \
        switch (kind) {                                                            \
        case U_RELU:                                                               \
            for (int64_t i = 0; i < n; i++)                                        \
                y[i] = x[i] < 0 ? (T)0 : x[i];                                     \
            break;                                                                 \
        case U_LEAKY_RELU:                                                         \
            for (int64_t i = 0; i < n; i++)                                        \
                y[i] = x[i] < 0 ? alpha * x[i] : x[i];                             \
            break;                                                                 \
        case U_SIGMOID:                                                            \
            for (int64_t i = 0; i < n; i++) {                                      \
                T e = exp(-fabs(x[i]));                                            \
                y[i] = x[i] >= 0 ? 1 / (1 + e) : e / (1 + e);                      \
            }                                                                      \
            break;                                                                 \
        case U_TANH:                                                               \
            for (int64_t i = 0; i < n; i++)                                        \
                y[i] = tanh(x[i]);                                                 \
            break;                                                                 \
        case U_ERF:                                                                \
            for (int64_t i = 0; i < n; i++)                                        \
                y[i] = erf(x[i]);                                                  \
            break;                                                                 \
        case U_EXP:                                                                \
            for (int64_t i = 0; i < n; i++)                                        \
                y[i] = exp(x[i]);                                                  \
            break;                                                                 \
        case U_LOG:                                                                \
            for (int64_t i = 0; i < n; i++)                                        \
                y[i] = log(x[i]);                                                  \
            break;                                                                 \
        case U_SQRT:                                                               \
            for (int64_t i = 0; i < n; i++)                                        \
                y[i] = sqrt(x[i]);                                                 \
            break;                                                                 \
        case U_NEG:                                                                \
            for (int64_t i = 0; i < n; i++)                                        \
                y[i] = -x[i];                                                      \
            break;                                                                 \
        }                                                                          \
    }
DEFINE_UNARY_FLOAT(float, f32)
DEFINE_UNARY_FLOAT(double, f64)

/* Relu and Neg on signed integers; negation in uint64 so it wraps. */
#define DEFINE_UNARY_INT(T, S)                                               \
    static void unary_##S(unary_kind kind, int64_t n, const T *x, T *y)      \
    {                                                                        \
        if (kind == U_RELU)                                                  \
            for (int64_t i = 0; i < n; i++)                                  \
                y[i] = x[i] < 0 ? 0 : x[i];                                  \
        else                                                                 \
            for (int64_t i = 0; i < n; i++)                                  \
                y[i] = (T)(0 - (uint64_t)x[i]);                              \
    }
DEFINE_UNARY_INT(int8_t, i8)
DEFINE_UNARY_INT(int16_t, i16)
DEFINE_UNARY_INT(int32_t, i32)
DEFINE_UNARY_INT(int64_t, i64)

static bool unary_int_ok(unary_kind kind)
{
    return kind == U_RELU || kind == U_NEG;
}

static bool is_signed_int(cs_dtype t)
{
    return t == CS_DT_INT8 || t == CS_DT_INT16 || t == CS_DT_INT32 || t == CS_DT_INT64;
}

static cs_status unary_infer(cs_op_call *c, unary_kind kind, cs_err *err)
{
    if (c->n_in != 1 || !c->in[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 input, got %d", c->n_in);
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    cs_dtype dt = c->in[0]->dtype;
    if (!cs_dtype_is_float(dt) && !(unary_int_ok(kind) && is_signed_int(dt)))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s",
                          cs_dtype_name(dt));
    cs_tensor_set_shape(c->out[0], dt, c->in[0]->ndim, c->in[0]->dims);
    return CS_OK;
}

static cs_status unary_forward(cs_op_call *c, unary_kind kind, cs_err *err)
{
    const cs_tensor *x = c->in[0];
    cs_tensor *y = c->out[0];
    int64_t n = cs_tensor_numel(x);
    float alpha = kind == U_LEAKY_RELU ? cs_node_attr_float(c->node, "alpha", 0.01f) : 0.0f;
    switch (x->dtype) {
    case CS_DT_FLOAT:
#pragma omp parallel if (n >= CS_OMP_MIN_ELEMS)
    {
        int64_t lo, hi;
        cs_omp_slice(n, &lo, &hi);
        unary_f32(kind, hi - lo, (const float *)x->data + lo, (float *)y->data + lo, alpha);
    }
        break;
    case CS_DT_DOUBLE:
#pragma omp parallel if (n >= CS_OMP_MIN_ELEMS)
    {
        int64_t lo, hi;
        cs_omp_slice(n, &lo, &hi);
        unary_f64(kind, hi - lo, (const double *)x->data + lo, (double *)y->data + lo, (double)alpha);
    }
        break;
    case CS_DT_INT8: unary_i8(kind, n, x->data, y->data); break;
    case CS_DT_INT16: unary_i16(kind, n, x->data, y->data); break;
    case CS_DT_INT32: unary_i32(kind, n, x->data, y->data); break;
    case CS_DT_INT64: unary_i64(kind, n, x->data, y->data); break;
    default:
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s",
                          cs_dtype_name(x->dtype));
    }
    return CS_OK;
}

/* ---- derivative rules of the unary ops (formulas at the top) ---- */

typedef enum ad_mode { AD_VJP, AD_JVP, AD_ROP } ad_mode;

#define TWO_OVER_SQRT_PI 1.12837916709551257390 /* 2/sqrt(pi), d erf / dx at 0 */

/* f'(x) for the smooth ops, from x, y = f(x); `elem` is the element type */
#define SMOOTH_D1(X)                               \
    X(U_SIGMOID, y * (1 - y))                      \
    X(U_TANH, 1 - y * y)                           \
    X(U_ERF, (elem)TWO_OVER_SQRT_PI * exp(-x * x)) \
    X(U_EXP, y)                                    \
    X(U_LOG, 1 / x)                                \
    X(U_SQRT, (elem)0.5 / y)
/* f''(x) for the same ops */
#define SMOOTH_D2(X)                                          \
    X(U_SIGMOID, y * (1 - y) * (1 - 2 * y))                   \
    X(U_TANH, -2 * y * (1 - y * y))                           \
    X(U_ERF, -2 * x * ((elem)TWO_OVER_SQRT_PI * exp(-x * x))) \
    X(U_EXP, y)                                               \
    X(U_LOG, -1 / (x * x))                                    \
    X(U_SQRT, (elem)-0.25 / (x * y))

/* Bodies of the three rules: d += D * s (vjp: d = gx, s = gy; rop: s = tx * gy)
 * or d = D * s (jvp: d = ty, s = tx). */
#define VJP_CASE(KIND, D)                    \
    case KIND:                               \
        for (int64_t i = 0; i < n; i++) {    \
            const elem x = px[i], y = py[i]; \
            (void)x, (void)y;                \
            pd[i] += (elem)(D) * ps[i];      \
        }                                    \
        break;
#define JVP_CASE(KIND, D)                    \
    case KIND:                               \
        for (int64_t i = 0; i < n; i++) {    \
            const elem x = px[i], y = py[i]; \
            (void)x, (void)y;                \
            pd[i] = (elem)(D) * ps[i];       \
        }                                    \
        break;
#define ROP_CASE(KIND, D)                       \
    case KIND:                                  \
        for (int64_t i = 0; i < n; i++) {       \
            const elem x = px[i], y = py[i];    \
            (void)x, (void)y;                   \
            pd[i] += (elem)(D) * ps[i] * pg[i]; \
        }                                       \
        break;

/* x, y: forward input / output; s: gy (vjp) or tx (jvp, rop); g: gy (rop
 * only); d: gx or ty.  The switch sits outside the loops. */
#define DEFINE_UNARY_AD(T, S)                                                       \
    static void unary_ad_##S(unary_kind kind, ad_mode mode, int64_t n, const T *px, \
                             const T *py, const T *ps, const T *pg, T *restrict pd, \
                             T alpha)                                               \
    {                                                                               \
        typedef T elem; /* for the case macros */                                   \
        if (mode == AD_VJP) {                                                       \
            switch (kind) {                                                         \
            case U_RELU:                                                            \
                for (int64_t i = 0; i < n; i++) { /* both loads unconditional: \
                                                       the loop if-converts */      \
                    const T s = ps[i];                                              \
                    pd[i] += px[i] > 0 ? s : (T)0;                                  \
                }                                                                   \
                break;                                                              \
            case U_LEAKY_RELU:                                                      \
                for (int64_t i = 0; i < n; i++) {                                   \
                    const T s = ps[i];                                              \
                    pd[i] += px[i] > 0 ? s : alpha * s;                             \
                }                                                                   \
                break;                                                              \
            case U_NEG:                                                             \
                for (int64_t i = 0; i < n; i++)                                     \
                    pd[i] -= ps[i];                                                 \
                break;                                                              \
                SMOOTH_D1(VJP_CASE)                                                 \
            }                                                                       \
        } else if (mode == AD_JVP) {                                                \
            switch (kind) {                                                         \
            case U_RELU:                                                            \
                for (int64_t i = 0; i < n; i++) {                                   \
                    const T s = ps[i];                                              \
                    pd[i] = px[i] > 0 ? s : (T)0;                                   \
                }                                                                   \
                break;                                                              \
            case U_LEAKY_RELU:                                                      \
                for (int64_t i = 0; i < n; i++) {                                   \
                    const T s = ps[i];                                              \
                    pd[i] = px[i] > 0 ? s : alpha * s;                              \
                }                                                                   \
                break;                                                              \
            case U_NEG:                                                             \
                for (int64_t i = 0; i < n; i++)                                     \
                    pd[i] = -ps[i];                                                 \
                break;                                                              \
                SMOOTH_D1(JVP_CASE)                                                 \
            }                                                                       \
        } else {                                                                    \
            switch (kind) {                                                         \
            case U_RELU:                                                            \
            case U_LEAKY_RELU:                                                      \
            case U_NEG:                                                             \
                break; /* piecewise linear: flagged, never called */                \
                SMOOTH_D2(ROP_CASE)                                                 \
            }                                                                       \
        }                                                                           \
    }
DEFINE_UNARY_AD(float, f32)
DEFINE_UNARY_AD(double, f64)

/* Shared by the three rules: d (gx or ty) from s (gy or tx) and g. */
static cs_status unary_ad(cs_op_call *c, unary_kind kind, ad_mode mode, cs_tensor *d,
                          const cs_tensor *s, const cs_tensor *g, cs_err *err)
{
    const cs_tensor *x = c->in[0];
    int64_t n = cs_tensor_numel(x);
    float alpha = kind == U_LEAKY_RELU ? cs_node_attr_float(c->node, "alpha", 0.01f) : 0.0f;
    if (x->dtype == CS_DT_FLOAT) {
#pragma omp parallel if (n >= CS_OMP_MIN_ELEMS)
        {
            int64_t lo, hi;
            cs_omp_slice(n, &lo, &hi);
            unary_ad_f32(kind, mode, hi - lo, (const float *)x->data + lo, (const float *)c->out[0]->data + lo,
                         (const float *)s->data + lo, g ? (const float *)g->data + lo : NULL,
                         (float *)d->data + lo, alpha);
        }
    } else if (x->dtype == CS_DT_DOUBLE) {
#pragma omp parallel if (n >= CS_OMP_MIN_ELEMS)
        {
            int64_t lo, hi;
            cs_omp_slice(n, &lo, &hi);
            unary_ad_f64(kind, mode, hi - lo, (const double *)x->data + lo, (const double *)c->out[0]->data + lo,
                         (const double *)s->data + lo, g ? (const double *)g->data + lo : NULL,
                         (double *)d->data + lo, (double)alpha);
        }
    } else
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "no derivative rules for type %s",
                          cs_dtype_name(x->dtype));
    return CS_OK;
}

static cs_status unary_vjp(cs_op_call *c, const cs_op_ad *a, unary_kind kind, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0])
        return CS_OK;
    return unary_ad(c, kind, AD_VJP, a->gin[0], a->gout[0], NULL, err);
}

static cs_status unary_jvp(cs_op_call *c, const cs_op_ad *a, unary_kind kind, cs_err *err)
{
    if (cs_op_jvp_done_early(a, 0))
        return CS_OK;
    cs_tensor *ty = a->tout[0];
    return unary_ad(c, kind, AD_JVP, ty, a->tin[0], NULL, err);
}

static cs_status unary_rop(cs_op_call *c, const cs_op_ad *a, unary_kind kind, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0] || !a->tin[0])
        return CS_OK;
    return unary_ad(c, kind, AD_ROP, a->gin[0], a->tin[0], a->gout[0], err);
}

#define UNARY_COMMON(NAME, KIND)                                                          \
    static cs_status NAME##_infer(cs_op_call *c, cs_err *err)                             \
    {                                                                                     \
        return unary_infer(c, KIND, err);                                                 \
    }                                                                                     \
    static cs_status NAME##_forward(cs_op_call *c, cs_err *err)                           \
    {                                                                                     \
        return unary_forward(c, KIND, err);                                               \
    }                                                                                     \
    static cs_status NAME##_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)            \
    {                                                                                     \
        return unary_vjp(c, a, KIND, err);                                                \
    }                                                                                     \
    static cs_status NAME##_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)            \
    {                                                                                     \
        return unary_jvp(c, a, KIND, err);                                                \
    }

/* Smooth ops: all three rules. */
#define UNARY_OP(NAME, KIND, MIN_OPSET)                                                   \
    UNARY_COMMON(NAME, KIND)                                                              \
    static cs_status NAME##_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)            \
    {                                                                                     \
        return unary_rop(c, a, KIND, err);                                                \
    }                                                                                     \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = MIN_OPSET,                \
                                    .infer = NAME##_infer, .forward = NAME##_forward,     \
                                    .vjp = NAME##_vjp, .jvp = NAME##_jvp, .rop = NAME##_rop};
/* (Piecewise) linear ops: second derivative zero almost everywhere. */
#define UNARY_LINEAR_OP(NAME, KIND, MIN_OPSET)                                            \
    UNARY_COMMON(NAME, KIND)                                                              \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = MIN_OPSET,                \
                                    .flags = CS_OP_LINEAR, .infer = NAME##_infer,         \
                                    .forward = NAME##_forward, .vjp = NAME##_vjp,         \
                                    .jvp = NAME##_jvp};

/* Opset 1 versions differ only in the legacy `consumed_inputs` hint. */
UNARY_LINEAR_OP(Relu, U_RELU, 1)
UNARY_LINEAR_OP(LeakyRelu, U_LEAKY_RELU, 1)
UNARY_OP(Sigmoid, U_SIGMOID, 1)
UNARY_OP(Tanh, U_TANH, 1)
UNARY_OP(Erf, U_ERF, 9)
UNARY_OP(Exp, U_EXP, 1)
UNARY_OP(Log, U_LOG, 1)
UNARY_OP(Sqrt, U_SQRT, 1)
UNARY_LINEAR_OP(Neg, U_NEG, 1)

/* ---- Clip ---- */

/* lo / hi point to one element of type T, or are NULL for "unbounded". */
#define DEFINE_CLIP(DT, T, S)                                                   \
    static void clip_##S(int64_t n, const void *x_, void *y_, const void *lo_,  \
                         const void *hi_)                                       \
    {                                                                           \
        const T *x = x_;                                                        \
        T *y = y_;                                                              \
        const T lo = lo_ ? *(const T *)lo_ : 0, hi = hi_ ? *(const T *)hi_ : 0; \
        if (lo_ && hi_) {                                                       \
            for (int64_t i = 0; i < n; i++) {                                   \
                T v = x[i] < lo ? lo : x[i];                                    \
                y[i] = v > hi ? hi : v;                                         \
            }                                                                   \
        } else if (lo_) {                                                       \
            for (int64_t i = 0; i < n; i++)                                     \
                y[i] = x[i] < lo ? lo : x[i];                                   \
        } else if (hi_) {                                                       \
            for (int64_t i = 0; i < n; i++)                                     \
                y[i] = x[i] > hi ? hi : x[i];                                   \
        } else if (y != x) {                                                    \
            memcpy(y, x, (size_t)n * sizeof *x);                                \
        }                                                                       \
    }

#define CLIP_TYPES(X)                                                                      \
    X(CS_DT_FLOAT, float, f32) X(CS_DT_DOUBLE, double, f64) X(CS_DT_INT8, int8_t, i8)      \
    X(CS_DT_INT16, int16_t, i16) X(CS_DT_INT32, int32_t, i32) X(CS_DT_INT64, int64_t, i64) \
    X(CS_DT_UINT8, uint8_t, u8) X(CS_DT_UINT16, uint16_t, u16)                             \
    X(CS_DT_UINT32, uint32_t, u32) X(CS_DT_UINT64, uint64_t, u64)
CLIP_TYPES(DEFINE_CLIP)

typedef void (*clip_kernel)(int64_t n, const void *x, void *y, const void *lo, const void *hi);
#define CLIP_ROW(DT, T, S) [DT] = clip_##S,
static const clip_kernel clip_kernels[CS_DT_COUNT_] = {CLIP_TYPES(CLIP_ROW)};

/* Bound input i (1 = min, 2 = max) when given, else NULL. */
static const cs_tensor *clip_bound(const cs_op_call *c, int i)
{
    return i < c->n_in ? c->in[i] : NULL;
}

static cs_status clip_infer(cs_op_call *c, cs_err *err)
{
    if (c->n_in < 1 || !c->in[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "input is missing");
    if (c->n_in > (c->node->opset < 11 ? 1 : 3))
        return cs_op_fail(c, err, CS_ERR_FORMAT, "too many inputs (%d)", c->n_in);
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    cs_dtype dt = c->in[0]->dtype;
    if ((unsigned)dt >= CS_DT_COUNT_ || !clip_kernels[dt] ||
        (c->node->opset < 11 && !cs_dtype_is_float(dt)))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input has unsupported type %s",
                          cs_dtype_name(dt));
    for (int i = 1; i <= 2; i++) {
        const cs_tensor *b = clip_bound(c, i);
        if (!b)
            continue;
        if (b->dtype != dt)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "bound %s has type %s, input has %s",
                              i == 1 ? "min" : "max", cs_dtype_name(b->dtype), cs_dtype_name(dt));
        if (cs_tensor_numel(b) != 1)
            return cs_op_fail(c, err, CS_ERR_SHAPE, "bound %s must be a scalar (has %lld elements)",
                              i == 1 ? "min" : "max", (long long)cs_tensor_numel(b));
    }
    cs_tensor_set_shape(c->out[0], dt, c->in[0]->ndim, c->in[0]->dims);
    return CS_OK;
}

static cs_status clip_forward(cs_op_call *c, cs_err *err)
{
    const cs_tensor *x = c->in[0];
    const void *lo = NULL, *hi = NULL;
    union { float f; double d; } lo_v, hi_v;
    if (c->node->opset < 11) {
        /* attributes; absent means unbounded (the spec's defaults are the
         * type's lowest / largest values, which act the same) */
        const cs_attr *amin = cs_node_attr(c->node, "min"), *amax = cs_node_attr(c->node, "max");
        if (x->dtype == CS_DT_FLOAT) {
            lo_v.f = amin ? amin->f : 0;
            hi_v.f = amax ? amax->f : 0;
        } else {
            lo_v.d = amin ? amin->f : 0;
            hi_v.d = amax ? amax->f : 0;
        }
        lo = amin ? (const void *)&lo_v : NULL;
        hi = amax ? (const void *)&hi_v : NULL;
    } else {
        const cs_tensor *bmin = clip_bound(c, 1), *bmax = clip_bound(c, 2);
        lo = bmin ? bmin->data : NULL;
        hi = bmax ? bmax->data : NULL;
    }
    (void)err;
    clip_kernels[x->dtype](cs_tensor_numel(x), x->data, c->out[0]->data, lo, hi);
    return CS_OK;
}

/* The bounds of a float Clip as doubles (exact for float and double),
 * -inf / +inf where absent, so that the pass-through mask is one test. */
static void clip_bounds(const cs_op_call *c, double *lo, double *hi)
{
    *lo = -INFINITY;
    *hi = INFINITY;
    if (c->node->opset < 11) {
        const cs_attr *amin = cs_node_attr(c->node, "min"), *amax = cs_node_attr(c->node, "max");
        if (amin)
            *lo = amin->f;
        if (amax)
            *hi = amax->f;
        return;
    }
    const cs_tensor *bmin = clip_bound(c, 1), *bmax = clip_bound(c, 2);
    if (bmin)
        *lo = cs_tensor_get_f64(bmin, 0);
    if (bmax)
        *hi = cs_tensor_get_f64(bmax, 0);
}

/* Pass-through where lo <= x <= hi (bounds included, doc/design.md §2.8): vjp
 * d += mask ? s : 0, jvp d = mask ? s : 0. */
#define DEFINE_CLIP_AD(T, S)                                                       \
    static void clip_ad_##S(bool accumulate, int64_t n, const T *x, const T *s,    \
                            T *restrict d, T lo, T hi)                             \
    {                                                                              \
        if (accumulate)                                                            \
            for (int64_t i = 0; i < n; i++)                                        \
                d[i] += lo <= x[i] && x[i] <= hi ? s[i] : 0;                       \
        else                                                                       \
            for (int64_t i = 0; i < n; i++)                                        \
                d[i] = lo <= x[i] && x[i] <= hi ? s[i] : 0;                        \
    }
DEFINE_CLIP_AD(float, f32)
DEFINE_CLIP_AD(double, f64)

static cs_status clip_ad(cs_op_call *c, bool accumulate, cs_tensor *d, const cs_tensor *s,
                         cs_err *err)
{
    const cs_tensor *x = c->in[0];
    double lo, hi;
    clip_bounds(c, &lo, &hi);
    int64_t n = cs_tensor_numel(x);
    if (x->dtype == CS_DT_FLOAT)
        clip_ad_f32(accumulate, n, x->data, s->data, d->data, (float)lo, (float)hi);
    else if (x->dtype == CS_DT_DOUBLE)
        clip_ad_f64(accumulate, n, x->data, s->data, d->data, lo, hi);
    else
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "no derivative rules for type %s",
                          cs_dtype_name(x->dtype));
    return CS_OK;
}

/* Only the input x gets a gradient; gin[1], gin[2] (the bounds) are left
 * untouched (see the top of the file). */
static cs_status clip_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0])
        return CS_OK;
    return clip_ad(c, true, a->gin[0], a->gout[0], err);
}

/* The bounds' tangents (tin[1], tin[2]) are ignored. */
static cs_status clip_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (cs_op_jvp_done_early(a, 0))
        return CS_OK;
    cs_tensor *ty = a->tout[0];
    return clip_ad(c, false, ty, a->tin[0], err);
}

const cs_op_def cs_op_Clip = {.name = "Clip", .min_opset = 1, .flags = CS_OP_LINEAR,
                              .infer = clip_infer, .forward = clip_forward, .vjp = clip_vjp,
                              .jvp = clip_jvp};
