/* Unary pointwise functions with closed-form first and second derivatives:
 * Abs, Reciprocal, Floor, Ceil, Round, Sign, Sin, Cos, Sinh, Cosh,
 * Softplus, Softsign, Elu, Celu, Selu, ThresholdedRelu, HardSigmoid,
 * HardSwish, Mish, Gelu.
 *
 * Each is one entry of pw_eval, which gives f, f' or f'' at x in double
 * (float tensors are widened per element and the result rounded once, so
 * the float forward is the correctly rounded double result up to one
 * rounding).  The rules are then the same for every function:
 *   vjp  gx += f'(x) gy      jvp  ty = f'(x) tx      rop  gx += f''(x) tx gy
 *
 *   Abs           f' = sign(x)                   (Abs'(0) = 0, PyTorch)
 *   Reciprocal    f' = -1/x^2                    f'' = 2/x^3
 *   Floor, Ceil, Round, Sign    f' = 0: the derivative is zero wherever it
 *                 exists, and taken as zero at the jumps (PyTorch)
 *   Sin, Cos, Sinh, Cosh        the usual ones
 *   Softplus      log(1 + e^x), f' = s(x), f'' = s (1 - s), s the logistic
 *   Softsign      x / (1 + |x|), f' = 1/(1+|x|)^2, f'' = -2 sign(x)/(1+|x|)^3
 *   Elu (alpha)   x > 0 ? x : alpha (e^x - 1); at 0 the negative branch's
 *                 derivative alpha, as PyTorch's elu_backward
 *   Celu (alpha)  max(0, x) + min(0, alpha (e^(x/alpha) - 1))
 *   Selu (alpha, gamma)  gamma Elu_alpha(x)
 *   ThresholdedRelu (alpha)  x > alpha ? x : 0
 *   HardSigmoid (alpha, beta)  max(0, min(1, alpha x + beta)); f' = alpha
 *                 strictly inside (0, 1), as PyTorch's hardsigmoid_backward
 *   HardSwish     x HardSigmoid_{1/6, 1/2}(x): f' = x/3 + 1/2 on (-3, 3), 0
 *                 below, 1 above; f'' = 1/3 inside (PyTorch: x <= 3 inner)
 *   Mish          x tanh(softplus(x)) (Misra 2019): with t = tanh(sp(x)),
 *                 s = logistic(x): f' = t + x (1 - t^2) s,
 *                 f'' = (1 - t^2) s (2 + x (1 - s - 2 t s))
 *   Gelu          approximate "none": x Phi(x), f' = Phi + x phi,
 *                 f'' = phi (2 - x^2); "tanh": 0.5 x (1 + tanh u),
 *                 u = sqrt(2/pi) (x + 0.044715 x^3) (Hendrycks & Gimpel 2016)
 * The piecewise functions whose second derivative is zero almost everywhere
 * (Abs, the rounding functions, ThresholdedRelu, HardSigmoid) are flagged
 * CS_OP_LINEAR and have no rop. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"

typedef enum pw_kind {
    PW_ABS, PW_RECIPROCAL, PW_FLOOR, PW_CEIL, PW_ROUND, PW_SIGN, PW_SIN, PW_COS, PW_SINH, PW_COSH,
    PW_SOFTPLUS, PW_SOFTSIGN, PW_ELU, PW_CELU, PW_SELU, PW_THRESHOLDED_RELU, PW_HARD_SIGMOID,
    PW_HARD_SWISH, PW_MISH, PW_GELU, PW_GELU_TANH
} pw_kind;

/* The attributes a function reads, with ONNX's defaults. */
typedef struct pw_params {
    double alpha, beta, gamma;
} pw_params;

static double logistic(double x)
{
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

static double softplus(double x)
{
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

static double sign_of(double x)
{
    return x > 0 ? 1.0 : x < 0 ? -1.0 : x; /* keeps NaN and the zero's sign */
}

#define SQRT_2_OVER_PI 0.79788456080286535588 /* sqrt(2/pi) */
#define INV_SQRT_2PI 0.39894228040143267794   /* 1/sqrt(2 pi) */
#define GELU_C 0.044715

/* The order-th derivative (0, 1 or 2) of function k at x. */
static double pw_eval(pw_kind k, const pw_params *p, double x, int order)
{
    switch (k) {
    case PW_ABS: return order == 0 ? fabs(x) : order == 1 ? sign_of(x) : 0;
    case PW_RECIPROCAL: return order == 0 ? 1 / x : order == 1 ? -1 / (x * x) : 2 / (x * x * x);
    case PW_FLOOR: return order == 0 ? floor(x) : 0;
    case PW_CEIL: return order == 0 ? ceil(x) : 0;
    case PW_ROUND: return order == 0 ? nearbyint(x) : 0; /* halves to even (default rounding mode) */
    case PW_SIGN: return order == 0 ? sign_of(x) : 0;
    case PW_SIN: return order == 0 ? sin(x) : order == 1 ? cos(x) : -sin(x);
    case PW_COS: return order == 0 ? cos(x) : order == 1 ? -sin(x) : -cos(x);
    case PW_SINH: return order == 1 ? cosh(x) : sinh(x);
    case PW_COSH: return order == 1 ? sinh(x) : cosh(x);
    case PW_SOFTPLUS: {
        if (order == 0)
            return softplus(x);
        double s = logistic(x);
        return order == 1 ? s : s * (1 - s);
    }
    case PW_SOFTSIGN: {
        double d = 1 + fabs(x);
        return order == 0 ? x / d : order == 1 ? 1 / (d * d) : -2 * sign_of(x) / (d * d * d);
    }
    case PW_ELU:
    case PW_SELU: {
        double g = k == PW_SELU ? p->gamma : 1.0;
        if (x > 0)
            return order == 0 ? g * x : order == 1 ? g : 0;
        double e = exp(x);
        return g * p->alpha * (order == 0 ? e - 1 : e);
    }
    case PW_CELU: {
        if (x > 0)
            return order == 0 ? x : order == 1 ? 1 : 0;
        double e = exp(x / p->alpha);
        return order == 0 ? p->alpha * (e - 1) : order == 1 ? e : e / p->alpha;
    }
    case PW_THRESHOLDED_RELU: return x > p->alpha ? (order == 0 ? x : order == 1 ? 1 : 0) : 0;
    case PW_HARD_SIGMOID: {
        double u = p->alpha * x + p->beta;
        if (order == 0)
            return fmax(0.0, fmin(1.0, u));
        return order == 1 && u > 0 && u < 1 ? p->alpha : 0;
    }
    case PW_HARD_SWISH:
        if (x < -3)
            return 0;
        if (x > 3)
            return order == 0 ? x : order == 1 ? 1 : 0;
        return order == 0 ? x * (x / 6 + 0.5) : order == 1 ? x / 3 + 0.5 : 1.0 / 3;
    case PW_MISH: {
        double t = tanh(softplus(x));
        if (order == 0)
            return x * t;
        double s = logistic(x), q = 1 - t * t;
        return order == 1 ? t + x * q * s : q * s * (2 + x * (1 - s - 2 * t * s));
    }
    case PW_GELU: {
        double phi = INV_SQRT_2PI * exp(-0.5 * x * x), Phi = 0.5 * erfc(-x / M_SQRT2);
        return order == 0 ? x * Phi : order == 1 ? Phi + x * phi : phi * (2 - x * x);
    }
    case PW_GELU_TANH: {
        double u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x), t = tanh(u), q = 1 - t * t;
        double du = SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x), ddu = SQRT_2_OVER_PI * 6 * GELU_C * x;
        return order == 0 ? 0.5 * x * (1 + t) : order == 1 ? 0.5 * (1 + t) + 0.5 * x * q * du
                                                           : q * (du + 0.5 * x * (ddu - 2 * t * du * du));
    }
    }
    return NAN;
}

/* The function a node computes: Gelu's approximate attribute picks one of
 * two, and the attributes fill the parameters. */
static cs_status pw_of_node(const cs_op_call *c, pw_kind k, pw_kind *out, pw_params *p, cs_err *err)
{
    const cs_node *n = c->node;
    *out = k;
    p->alpha = cs_node_attr_float(n, "alpha", k == PW_SELU ? 1.67326319217681884765625f
                                              : k == PW_HARD_SIGMOID ? 0.2f : 1.0f);
    p->beta = cs_node_attr_float(n, "beta", 0.5f);
    p->gamma = cs_node_attr_float(n, "gamma", 1.05070102214813232421875f);
    if (k == PW_CELU && p->alpha == 0)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "alpha must not be 0");
    if (k == PW_GELU) {
        const char *a = cs_node_attr_string(n, "approximate", "none");
        if (strcmp(a, "tanh") == 0)
            *out = PW_GELU_TANH;
        else if (strcmp(a, "none") != 0)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "approximate '%s' (expected none or tanh)", a);
    }
    return CS_OK;
}

static cs_status pw_infer(cs_op_call *c, pw_kind k, cs_err *err)
{
    if (c->n_in != 1 || !c->in[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 input, got %d", c->n_in);
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    cs_status st = cs_op_need_float(c, 0, err);
    if (st)
        return st;
    pw_kind kk;
    pw_params p;
    if ((st = pw_of_node(c, k, &kk, &p, err)))
        return st;
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, c->in[0]->ndim, c->in[0]->dims);
    return CS_OK;
}

/* d[i] = f^(order)(x[i]), times s[i] (and g[i]) when given, added to d[i]
 * when add is set. */
#define DEFINE_PW_LOOP(T, S)                                                                        \
    static void pw_loop_##S(pw_kind k, const pw_params *p, int order, int64_t n, const T *x,        \
                            const T *s, const T *g, bool add, T *d)                                  \
    {                                                                                               \
        for (int64_t i = 0; i < n; i++) {                                                           \
            double v = pw_eval(k, p, (double)x[i], order);                                          \
            if (s && v != 0)                                                                        \
                v *= (double)s[i] * (g ? (double)g[i] : 1.0);                                       \
            d[i] = add ? (T)((double)d[i] + v) : (T)v;                                              \
        }                                                                                           \
    }
DEFINE_PW_LOOP(float, f32)
DEFINE_PW_LOOP(double, f64)

static void pw_apply(pw_kind k, const pw_params *p, int order, const cs_tensor *x, const cs_tensor *s,
                     const cs_tensor *g, bool add, cs_tensor *d)
{
    int64_t n = cs_tensor_numel(x);
#pragma omp parallel if (n >= CS_OMP_MIN_ELEMS)
    {
        int64_t lo, hi;
        cs_omp_slice(n, &lo, &hi);
        if (x->dtype == CS_DT_FLOAT)
            pw_loop_f32(k, p, order, hi - lo, (const float *)x->data + lo, s ? (const float *)s->data + lo : NULL,
                        g ? (const float *)g->data + lo : NULL, add, (float *)d->data + lo);
        else
            pw_loop_f64(k, p, order, hi - lo, (const double *)x->data + lo,
                        s ? (const double *)s->data + lo : NULL, g ? (const double *)g->data + lo : NULL, add,
                        (double *)d->data + lo);
    }
}

static cs_status pw_forward(cs_op_call *c, pw_kind k, cs_err *err)
{
    pw_kind kk;
    pw_params p;
    cs_status st = pw_of_node(c, k, &kk, &p, err);
    if (!st)
        pw_apply(kk, &p, 0, c->in[0], NULL, NULL, false, c->out[0]);
    return st;
}

/* A zero derivative times an infinite or NaN incoming value contributes
 * nothing (the loop skips the product), as the selecting rules of act.c do. */
static cs_status pw_vjp(cs_op_call *c, const cs_op_ad *a, pw_kind k, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0])
        return CS_OK;
    pw_kind kk;
    pw_params p;
    cs_status st = pw_of_node(c, k, &kk, &p, err);
    if (!st)
        pw_apply(kk, &p, 1, c->in[0], a->gout[0], NULL, true, a->gin[0]);
    return st;
}

static cs_status pw_jvp(cs_op_call *c, const cs_op_ad *a, pw_kind k, cs_err *err)
{
    if (cs_op_jvp_done_early(a, 0))
        return CS_OK;
    cs_tensor *ty = a->tout[0];
    pw_kind kk;
    pw_params p;
    cs_status st = pw_of_node(c, k, &kk, &p, err);
    if (!st)
        pw_apply(kk, &p, 1, c->in[0], a->tin[0], NULL, false, ty);
    return st;
}

static cs_status pw_rop(cs_op_call *c, const cs_op_ad *a, pw_kind k, cs_err *err)
{
    if (!a->gin[0] || !a->gout[0] || !a->tin[0])
        return CS_OK;
    pw_kind kk;
    pw_params p;
    cs_status st = pw_of_node(c, k, &kk, &p, err);
    if (!st)
        pw_apply(kk, &p, 2, c->in[0], a->tin[0], a->gout[0], true, a->gin[0]);
    return st;
}

#define PW_COMMON(NAME, KIND)                                                                       \
    static cs_status NAME##_infer(cs_op_call *c, cs_err *err) { return pw_infer(c, KIND, err); }    \
    static cs_status NAME##_forward(cs_op_call *c, cs_err *err) { return pw_forward(c, KIND, err); } \
    static cs_status NAME##_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)                      \
    {                                                                                               \
        return pw_vjp(c, a, KIND, err);                                                             \
    }                                                                                               \
    static cs_status NAME##_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)                      \
    {                                                                                               \
        return pw_jvp(c, a, KIND, err);                                                             \
    }
#define PW_OP(NAME, KIND, MIN_OPSET)                                                                \
    PW_COMMON(NAME, KIND)                                                                           \
    static cs_status NAME##_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)                      \
    {                                                                                               \
        return pw_rop(c, a, KIND, err);                                                             \
    }                                                                                               \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = MIN_OPSET, .infer = NAME##_infer,   \
                                    .forward = NAME##_forward, .vjp = NAME##_vjp, .jvp = NAME##_jvp, \
                                    .rop = NAME##_rop};
#define PW_LINEAR_OP(NAME, KIND, MIN_OPSET)                                                         \
    PW_COMMON(NAME, KIND)                                                                           \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = MIN_OPSET, .flags = CS_OP_LINEAR,   \
                                    .infer = NAME##_infer, .forward = NAME##_forward,               \
                                    .vjp = NAME##_vjp, .jvp = NAME##_jvp};

/* Earlier opsets differ only in the legacy `consumed_inputs` hint, or add
 * types curvscope does not run (integers, bfloat16). */
PW_LINEAR_OP(Abs, PW_ABS, 6)
PW_OP(Reciprocal, PW_RECIPROCAL, 6)
PW_LINEAR_OP(Floor, PW_FLOOR, 6)
PW_LINEAR_OP(Ceil, PW_CEIL, 6)
PW_LINEAR_OP(Round, PW_ROUND, 11)
PW_LINEAR_OP(Sign, PW_SIGN, 9)
PW_OP(Sin, PW_SIN, 7)
PW_OP(Cos, PW_COS, 7)
PW_OP(Sinh, PW_SINH, 9)
PW_OP(Cosh, PW_COSH, 9)
PW_OP(Softplus, PW_SOFTPLUS, 1)
PW_OP(Softsign, PW_SOFTSIGN, 1)
PW_OP(Elu, PW_ELU, 6)
PW_OP(Celu, PW_CELU, 12)
PW_OP(Selu, PW_SELU, 6)
PW_LINEAR_OP(ThresholdedRelu, PW_THRESHOLDED_RELU, 10)
PW_LINEAR_OP(HardSigmoid, PW_HARD_SIGMOID, 6)
PW_OP(HardSwish, PW_HARD_SWISH, 14)
PW_OP(Mish, PW_MISH, 18)
PW_OP(Gelu, PW_GELU, 20)
