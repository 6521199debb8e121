/* Derivative rules of the pointwise operators (act.c, elementwise.c,
 * softmax.c, reduce.c) and the broadcast-gradient helper.
 *
 * Every case runs fd_check (central differences in float64: vjp, jvp, and
 * rop or the zero second-order term of a CS_OP_LINEAR op) on inputs drawn
 * away from kinks and singularities.  One case per operator also runs in
 * float32 and must agree with the float64 rules on the same (float-rounded)
 * values; that pass also checks that jvp overwrites its output, that vjp
 * and rop add into theirs, and that absent gradients / tangents (NULL) give
 * no contribution. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fd_check.h"
#include "tensor/broadcast.h"

#define MAXIN 8

/* One input of a case. */
typedef struct in_spec {
    int present;       /* 0: omitted optional input */
    int ndim;
    int64_t dims[6];
    double lo, hi;     /* values uniform in [lo, hi); lo == hi: a constant */
    int n_avoid;       /* values within 0.05 of avoid[] are drawn again (kinks) */
    double avoid[2];
    cs_dtype fixed_dt; /* 0: the float type under test; else integer, from ivals */
    int64_t ivals[4];
} in_spec;

typedef struct attr_spec {
    const char *name; /* NULL ends the list */
    char kind;        /* 'i' int, 'f' float, 'I' ints, 's' string */
    int64_t i;
    const char *s;
    float f;
    int n;
    int64_t ints[4];
} attr_spec;

typedef struct gcase {
    const char *label;
    const char *op;
    int opset;
    int n_in;
    in_spec in[MAXIN];
    attr_spec attr[4];
    unsigned mask; /* differentiable inputs checked */
    int smoke;     /* also the float32 comparison */
} gcase;

#define S0 .ndim = 0
#define S1(a) .ndim = 1, .dims = {a}
#define S2(a, b) .ndim = 2, .dims = {a, b}
#define S3(a, b, c) .ndim = 3, .dims = {a, b, c}
#define S4(a, b, c, d) .ndim = 4, .dims = {a, b, c, d}
#define IN(SHAPE, LO, HI) {.present = 1, SHAPE, .lo = LO, .hi = HI}
#define IN_AWAY(SHAPE, LO, HI, ...)                                                 \
    {.present = 1, SHAPE, .lo = LO, .hi = HI,                                      \
     .n_avoid = sizeof((double[]){__VA_ARGS__}) / sizeof(double), .avoid = {__VA_ARGS__}}
#define CONST(SHAPE, V) {.present = 1, SHAPE, .lo = V, .hi = V}
#define INTS(N, ...) {.present = 1, S1(N), .fixed_dt = CS_DT_INT64, .ivals = {__VA_ARGS__}}
#define BOOLS(N, ...) {.present = 1, S1(N), .fixed_dt = CS_DT_BOOL, .ivals = {__VA_ARGS__}}
#define AXES INTS
#define ABSENT {.present = 0}
#define AI(NAME, V) {.name = NAME, .kind = 'i', .i = V}
#define AF(NAME, V) {.name = NAME, .kind = 'f', .f = V}
#define AS(NAME, V) {.name = NAME, .kind = 's', .s = V}
#define AIS(NAME, N, ...) {.name = NAME, .kind = 'I', .n = N, .ints = {__VA_ARGS__}}

#define M0 1u
#define M1 2u
#define M01 3u

/* ------------------------------------------------------------------ cases */

static const gcase cases[] = {
    /* ---- unary activations ---- */
    {"Relu [2,3,4]", "Relu", 14, 1, {IN_AWAY(S3(2, 3, 4), -1, 1, 0)}, {{0}}, M0, 1},
    {"Relu scalar", "Relu", 14, 1, {IN_AWAY(S0, 0.2, 1, 0)}, {{0}}, M0, 0},
    {"LeakyRelu default alpha", "LeakyRelu", 16, 1, {IN_AWAY(S2(5, 6), -1, 1, 0)}, {{0}}, M0, 1},
    {"LeakyRelu alpha=0.2", "LeakyRelu", 16, 1, {IN_AWAY(S1(17), -1, 1, 0)},
     {AF("alpha", 0.2f)}, M0, 0},
    {"Sigmoid", "Sigmoid", 13, 1, {IN(S3(2, 3, 5), -4, 4)}, {{0}}, M0, 1},
    {"Sigmoid large |x|", "Sigmoid", 13, 1, {IN(S1(9), -12, 12)}, {{0}}, M0, 0},
    {"Tanh", "Tanh", 13, 1, {IN(S3(2, 3, 5), -3, 3)}, {{0}}, M0, 1},
    {"Erf", "Erf", 13, 1, {IN(S2(4, 6), -2, 2)}, {{0}}, M0, 1},
    {"Exp", "Exp", 13, 1, {IN(S2(4, 6), -2, 2)}, {{0}}, M0, 1},
    {"Log", "Log", 13, 1, {IN(S2(4, 6), 0.2, 3)}, {{0}}, M0, 1},
    {"Sqrt", "Sqrt", 13, 1, {IN(S2(4, 6), 0.2, 3)}, {{0}}, M0, 1},
    {"Neg", "Neg", 13, 1, {IN(S3(2, 2, 3), -2, 2)}, {{0}}, M0, 1},
    /* pointwise.c */
    {"Abs", "Abs", 13, 1, {IN_AWAY(S2(3, 5), -2, 2, 0)}, {{0}}, M0, 1},
    {"Reciprocal", "Reciprocal", 13, 1, {IN_AWAY(S2(3, 4), -2, 2, 0, 0.04)}, {{0}}, M0, 1},
    {"Floor (zero derivative)", "Floor", 13, 1, {IN(S2(3, 4), 0.1, 0.9)}, {{0}}, M0, 1},
    {"Ceil (zero derivative)", "Ceil", 13, 1, {IN(S2(3, 4), -1.9, -1.1)}, {{0}}, M0, 0},
    {"Round (zero derivative)", "Round", 11, 1, {IN(S1(9), 2.1, 2.4)}, {{0}}, M0, 0},
    {"Sign (zero derivative)", "Sign", 13, 1, {IN_AWAY(S1(9), -1, 1, 0)}, {{0}}, M0, 0},
    {"Sin", "Sin", 7, 1, {IN(S2(3, 4), -3, 3)}, {{0}}, M0, 1},
    {"Cos", "Cos", 7, 1, {IN(S2(3, 4), -3, 3)}, {{0}}, M0, 0},
    {"Sinh", "Sinh", 9, 1, {IN(S2(3, 4), -2, 2)}, {{0}}, M0, 0},
    {"Cosh", "Cosh", 9, 1, {IN(S2(3, 4), -2, 2)}, {{0}}, M0, 0},
    {"Softplus", "Softplus", 1, 1, {IN(S2(3, 4), -6, 6)}, {{0}}, M0, 1},
    {"Softsign", "Softsign", 1, 1, {IN_AWAY(S2(3, 4), -3, 3, 0)}, {{0}}, M0, 0},
    {"Elu default alpha", "Elu", 6, 1, {IN_AWAY(S2(3, 5), -2, 2, 0)}, {{0}}, M0, 1},
    {"Elu alpha=0.3", "Elu", 6, 1, {IN_AWAY(S1(11), -2, 2, 0)}, {AF("alpha", 0.3f)}, M0, 0},
    {"Celu alpha=2", "Celu", 12, 1, {IN_AWAY(S1(11), -3, 3, 0)}, {AF("alpha", 2.0f)}, M0, 0},
    {"Selu", "Selu", 6, 1, {IN_AWAY(S2(3, 5), -2, 2, 0)}, {{0}}, M0, 1},
    {"ThresholdedRelu", "ThresholdedRelu", 10, 1, {IN_AWAY(S1(11), -1, 3, 1)}, {{0}}, M0, 0},
    {"HardSigmoid default", "HardSigmoid", 6, 1, {IN_AWAY(S2(3, 5), -4, 4, -2.5, 2.5)}, {{0}}, M0, 1},
    {"HardSigmoid alpha=0.5 beta=0.25", "HardSigmoid", 6, 1, {IN_AWAY(S1(11), -2, 2, -0.5, 1.5)},
     {AF("alpha", 0.5f), AF("beta", 0.25f)}, M0, 0},
    {"HardSwish", "HardSwish", 14, 1, {IN_AWAY(S2(3, 5), -4.5, 4.5, -3, 3)}, {{0}}, M0, 1},
    {"Mish", "Mish", 18, 1, {IN(S2(3, 5), -4, 4)}, {{0}}, M0, 1},
    {"Gelu (erf)", "Gelu", 20, 1, {IN(S2(3, 5), -3, 3)}, {{0}}, M0, 1},
    {"Gelu (tanh)", "Gelu", 20, 1, {IN(S2(3, 5), -3, 3)}, {AS("approximate", "tanh")}, M0, 0},
    /* select.c: piecewise linear selections (random inputs do not tie) */
    {"Where broadcast", "Where", 16, 3, {BOOLS(4, 1, 0, 0, 1), IN(S2(3, 4), -2, 2), IN(S2(3, 1), -2, 2)},
     {{0}}, 6u, 1},
    {"Max of two, broadcast", "Max", 13, 2, {IN(S2(3, 4), -1, 1), IN(S1(4), -1, 1)}, {{0}}, M01, 1},
    {"Max of three", "Max", 13, 3, {IN(S1(6), -1, 1), IN(S1(6), -1, 1), IN(S0, -0.2, 0.2)}, {{0}}, 7u, 0},
    {"Min of two, broadcast", "Min", 13, 2, {IN(S2(2, 5), -1, 1), IN(S2(2, 1), -1, 1)}, {{0}}, M01, 1},
    {"PRelu per-channel slope", "PRelu", 16, 2, {IN_AWAY(S3(2, 3, 4), -2, 2, 0), IN(S2(3, 1), 0.05, 0.5)},
     {{0}}, M01, 1},
    {"PRelu scalar slope", "PRelu", 16, 2, {IN_AWAY(S2(3, 4), -2, 2, 0), IN(S1(1), -0.5, 0.5)}, {{0}}, M01, 0},
    /* scan_mask.c (linear) */
    {"CumSum axis 1", "CumSum", 14, 2, {IN(S3(2, 4, 3), -2, 2), INTS(1, 1)}, {{0}}, M0, 1},
    {"CumSum exclusive reverse axis -1", "CumSum", 14, 2, {IN(S2(3, 5), -2, 2), INTS(1, -1)},
     {AI("exclusive", 1), AI("reverse", 1)}, M0, 0},
    {"Trilu upper k=1", "Trilu", 14, 2, {IN(S3(2, 3, 4), -2, 2), INTS(1, 1)}, {{0}}, M0, 1},
    {"Trilu lower", "Trilu", 14, 1, {IN(S2(4, 4), -2, 2)}, {AI("upper", 0)}, M0, 0},
    /* einsum.c (multilinear) */
    {"Einsum batch matmul", "Einsum", 12, 2, {IN(S3(2, 3, 4), -1, 1), IN(S3(2, 4, 2), -1, 1)},
     {AS("equation", "bij,bjk->bik")}, M01, 1},
    {"Einsum ellipsis broadcast", "Einsum", 12, 2, {IN(S3(2, 3, 4), -1, 1), IN(S2(4, 2), -1, 1)},
     {AS("equation", "...ij,jk->...ik")}, M01, 0},
    {"Einsum diagonal, implicit output", "Einsum", 12, 1, {IN(S2(4, 4), -1, 1)}, {AS("equation", "ii")}, M0, 0},
    {"Einsum three operands", "Einsum", 12, 3, {IN(S2(3, 4), -1, 1), IN(S1(4), -1, 1), IN(S1(3), -1, 1)},
     {AS("equation", "ij,j,i->")}, 7u, 0},
    /* resize.c (linear in X) */
    {"Resize linear x2", "Resize", 13, 3, {IN(S3(2, 3, 4), -1, 1), ABSENT, CONST(S1(3), 2)},
     {AS("mode", "linear")}, M0, 1},
    {"Resize cubic align_corners", "Resize", 13, 3, {IN(S3(1, 3, 4), -1, 1), ABSENT, CONST(S1(3), 1.5)},
     {AS("mode", "cubic"), AS("coordinate_transformation_mode", "align_corners")}, M0, 0},
    {"Resize nearest to sizes", "Resize", 13, 4, {IN(S3(2, 3, 4), -1, 1), ABSENT, ABSENT, INTS(3, 3, 2, 7)},
     {{0}}, M0, 0},
    {"Upsample-9 linear", "Upsample", 9, 2, {IN(S3(2, 3, 4), -1, 1), CONST(S1(3), 2)}, {AS("mode", "linear")},
     M0, 0},
    /* recurrent.c: X [T, B, I], W [D, G H, I], R [D, G H, H], B [D, 2 G H], (lens), h0, (c0, P) */
    {"RNN", "RNN", 14, 4, {IN(S3(3, 2, 2), -1, 1), IN(S3(1, 3, 2), -0.8, 0.8), IN(S3(1, 3, 3), -0.6, 0.6),
      IN(S2(1, 6), -0.5, 0.5)}, {AI("hidden_size", 3)}, 15u, 1},
    {"RNN bidirectional, initial state", "RNN", 14, 6, {IN(S3(3, 2, 2), -1, 1), IN(S3(2, 2, 2), -0.8, 0.8),
      IN(S3(2, 2, 2), -0.6, 0.6), IN(S2(2, 4), -0.5, 0.5), ABSENT, IN(S3(2, 2, 2), -0.5, 0.5)},
     {AI("hidden_size", 2), AS("direction", "bidirectional")}, 47u, 0},
    {"GRU", "GRU", 14, 4, {IN(S3(3, 2, 2), -1, 1), IN(S3(1, 6, 2), -0.8, 0.8), IN(S3(1, 6, 2), -0.6, 0.6),
      IN(S2(1, 12), -0.5, 0.5)}, {AI("hidden_size", 2)}, 15u, 1},
    {"GRU linear_before_reset, reverse, h0", "GRU", 14, 6, {IN(S3(3, 2, 2), -1, 1), IN(S3(1, 6, 2), -0.8, 0.8),
      IN(S3(1, 6, 2), -0.6, 0.6), IN(S2(1, 12), -0.5, 0.5), ABSENT, IN(S3(1, 2, 2), -0.5, 0.5)},
     {AI("hidden_size", 2), AI("linear_before_reset", 1), AS("direction", "reverse")}, 47u, 0},
    {"LSTM", "LSTM", 14, 4, {IN(S3(3, 2, 2), -1, 1), IN(S3(1, 8, 2), -0.8, 0.8), IN(S3(1, 8, 2), -0.6, 0.6),
      IN(S2(1, 16), -0.5, 0.5)}, {AI("hidden_size", 2)}, 15u, 1},
    {"LSTM peepholes, states, batch-first", "LSTM", 14, 8, {IN(S3(2, 3, 2), -1, 1), IN(S3(1, 8, 2), -0.8, 0.8),
      IN(S3(1, 8, 2), -0.6, 0.6), IN(S2(1, 16), -0.5, 0.5), ABSENT, IN(S3(2, 1, 2), -0.5, 0.5),
      IN(S3(2, 1, 2), -0.5, 0.5), IN(S2(1, 6), -0.5, 0.5)}, {AI("hidden_size", 2), AI("layout", 1)}, 239u, 0},
    /* groupnorm.c */
    {"InstanceNormalization", "InstanceNormalization", 6, 3,
     {IN(S4(2, 3, 2, 3), -2, 2), IN(S1(3), 0.5, 1.5), IN(S1(3), -1, 1)}, {{0}}, 7u, 1},
    {"GroupNormalization-18 per group", "GroupNormalization", 18, 3,
     {IN(S3(2, 4, 3), -2, 2), IN(S1(2), 0.5, 1.5), IN(S1(2), -1, 1)}, {AI("num_groups", 2)}, 7u, 1},
    {"GroupNormalization-21 per channel", "GroupNormalization", 21, 3,
     {IN(S3(2, 4, 3), -2, 2), IN(S1(4), 0.5, 1.5), IN(S1(4), -1, 1)}, {AI("num_groups", 2)}, 7u, 0},
    {"Clip opset 6 attrs min/max", "Clip", 6, 1, {IN_AWAY(S2(6, 7), -1, 1, -0.5, 0.5)},
     {AF("min", -0.5f), AF("max", 0.5f)}, M0, 1},
    {"Clip opset 6 max only", "Clip", 6, 1, {IN_AWAY(S1(20), -1, 1, 0.25)}, {AF("max", 0.25f)},
     M0, 0},
    {"Clip opset 11 no bounds", "Clip", 11, 1, {IN(S2(3, 4), -3, 3)}, {{0}}, M0, 0},
    {"Clip opset 13 min and max inputs", "Clip", 13, 3,
     {IN_AWAY(S3(2, 3, 4), -1, 1, -0.3, 0.4), CONST(S0, -0.3), CONST(S0, 0.4)}, {{0}}, M0, 1},
    {"Clip opset 13 min only", "Clip", 13, 2, {IN_AWAY(S2(5, 5), -1, 1, -0.2), CONST(S0, -0.2)},
     {{0}}, M0, 0},
    {"Clip opset 13 max only (min omitted)", "Clip", 13, 3,
     {IN_AWAY(S2(5, 5), -1, 1, 0.1), ABSENT, CONST(S0, 0.1)}, {{0}}, M0, 0},

    /* ---- broadcasting binary arithmetic ---- */
    {"Add same shape", "Add", 14, 2,
     {IN(S3(2, 3, 4), -2, 2), IN(S3(2, 3, 4), -2, 2)}, {{0}}, M01, 1},
    {"Add bias [4] + [2,3,4]", "Add", 14, 2,
     {IN(S3(2, 3, 4), -2, 2), IN(S1(4), -2, 2)}, {{0}}, M01, 0},
    {"Add both broadcast [2,1,4] + [3,1]", "Add", 14, 2,
     {IN(S3(2, 1, 4), -2, 2), IN(S2(3, 1), -2, 2)}, {{0}}, M01, 0},
    {"Add channel [3,1,1] + [2,3,4,5]", "Add", 14, 2,
     {IN(S3(3, 1, 1), -2, 2), IN(S4(2, 3, 4, 5), -2, 2)}, {{0}}, M01, 1},
    {"Add scalar + [2,3]", "Add", 14, 2, {IN(S0, -2, 2), IN(S2(2, 3), -2, 2)}, {{0}}, M01, 0},
    {"Add bias, only input 1", "Add", 14, 2, {IN(S2(5, 3), -2, 2), IN(S1(3), -2, 2)}, {{0}}, M1, 0},
    {"Sub same shape", "Sub", 14, 2, {IN(S2(3, 4), -2, 2), IN(S2(3, 4), -2, 2)}, {{0}}, M01, 1},
    {"Sub [2,3,4] - [4]", "Sub", 14, 2, {IN(S3(2, 3, 4), -2, 2), IN(S1(4), -2, 2)}, {{0}}, M01, 0},
    {"Sub both broadcast [3,1] - [2,1,4]", "Sub", 14, 2,
     {IN(S2(3, 1), -2, 2), IN(S3(2, 1, 4), -2, 2)}, {{0}}, M01, 1},
    {"Sub [1] - [4,1,3], only input 1", "Sub", 14, 2, {IN(S1(1), -2, 2), IN(S3(4, 1, 3), -2, 2)},
     {{0}}, M1, 0},
    {"Mul same shape", "Mul", 14, 2,
     {IN(S3(2, 3, 4), -2, 2), IN(S3(2, 3, 4), -2, 2)}, {{0}}, M01, 1},
    {"Mul [2,3,4] * [4]", "Mul", 14, 2, {IN(S3(2, 3, 4), -2, 2), IN(S1(4), -2, 2)}, {{0}}, M01, 0},
    {"Mul both broadcast [2,1,4] * [3,1]", "Mul", 14, 2,
     {IN(S3(2, 1, 4), -2, 2), IN(S2(3, 1), -2, 2)}, {{0}}, M01, 1},
    {"Mul channel [2,3,4,5] * [3,1,1]", "Mul", 14, 2,
     {IN(S4(2, 3, 4, 5), -2, 2), IN(S3(3, 1, 1), -2, 2)}, {{0}}, M01, 0},
    {"Mul scalar * [6], only input 0", "Mul", 14, 2,
     {IN(S0, -2, 2), IN(S1(6), -2, 2)}, {{0}}, M0, 0},
    {"Mul [6] * scalar, only input 1", "Mul", 14, 2,
     {IN(S1(6), -2, 2), IN(S0, -2, 2)}, {{0}}, M1, 0},
    {"Div same shape", "Div", 14, 2,
     {IN(S3(2, 3, 4), -2, 2), IN(S3(2, 3, 4), 0.5, 2)}, {{0}}, M01, 1},
    {"Div [2,3,4] / [4]", "Div", 14, 2, {IN(S3(2, 3, 4), -2, 2), IN(S1(4), 0.5, 2)}, {{0}}, M01, 1},
    {"Div both broadcast [3,1] / [2,1,4]", "Div", 14, 2,
     {IN(S2(3, 1), -2, 2), IN(S3(2, 1, 4), -2, -0.5)}, {{0}}, M01, 0},
    {"Div scalar / [2,3], only input 1", "Div", 14, 2, {IN(S0, -2, 2), IN(S2(2, 3), 0.5, 2)},
     {{0}}, M1, 0},
    {"Pow same shape", "Pow", 15, 2,
     {IN(S3(2, 3, 4), 0.3, 2), IN(S3(2, 3, 4), -1.5, 2.5)}, {{0}}, M01, 1},
    {"Pow [2,3,4] ^ [4]", "Pow", 15, 2,
     {IN(S3(2, 3, 4), 0.3, 2), IN(S1(4), -1.5, 2.5)}, {{0}}, M01, 1},
    {"Pow both broadcast [2,1,4] ^ [3,1]", "Pow", 15, 2,
     {IN(S3(2, 1, 4), 0.3, 2), IN(S2(3, 1), -1.5, 2.5)}, {{0}}, M01, 0},
    {"Pow scalar ^ [5]", "Pow", 15, 2, {IN(S0, 0.3, 2), IN(S1(5), -1.5, 2.5)}, {{0}}, M01, 0},
    {"Pow negative base ^ int64 [2]", "Pow", 15, 2,
     {IN_AWAY(S2(3, 4), -2, 2, 0), INTS(4, 2, 3, 1, 0)}, {{0}}, M0, 0},
    {"Pow x ^ 2.0 (float exponent), negative base, only input 0", "Pow", 15, 2,
     {IN_AWAY(S2(3, 4), -2, 2, 0), CONST(S0, 2.0)}, {{0}}, M0, 0},

    /* ---- Softmax / LogSoftmax ---- */
    {"Softmax-13 axis -1 [3,5]", "Softmax", 13, 1, {IN(S2(3, 5), -2, 2)}, {{0}}, M0, 1},
    {"Softmax-13 axis 1 [2,3,4]", "Softmax", 13, 1,
     {IN(S3(2, 3, 4), -2, 2)}, {AI("axis", 1)}, M0, 1},
    {"Softmax-13 axis 0 [4,3]", "Softmax", 13, 1, {IN(S2(4, 3), -2, 2)}, {AI("axis", 0)}, M0, 0},
    {"Softmax-11 default axis [2,3,4] (flattened)", "Softmax", 11, 1, {IN(S3(2, 3, 4), -2, 2)},
     {{0}}, M0, 1},
    {"Softmax-11 axis 2 [2,3,4]", "Softmax", 11, 1,
     {IN(S3(2, 3, 4), -2, 2)}, {AI("axis", 2)}, M0, 0},
    {"Softmax-11 axis 0 [3,4]", "Softmax", 11, 1, {IN(S2(3, 4), -2, 2)}, {AI("axis", 0)}, M0, 0},
    {"LogSoftmax-13 axis -1 [3,5]", "LogSoftmax", 13, 1, {IN(S2(3, 5), -2, 2)}, {{0}}, M0, 1},
    {"LogSoftmax-13 axis 1 [2,3,4]", "LogSoftmax", 13, 1, {IN(S3(2, 3, 4), -2, 2)}, {AI("axis", 1)},
     M0, 1},
    {"LogSoftmax-13 axis -3 [2,3,4]", "LogSoftmax", 13, 1,
     {IN(S3(2, 3, 4), -2, 2)}, {AI("axis", -3)},
     M0, 0},
    {"LogSoftmax-11 default axis [2,3,4] (flattened)", "LogSoftmax", 11, 1,
     {IN(S3(2, 3, 4), -2, 2)}, {{0}}, M0, 0},
    {"LogSoftmax-11 axis 0 [3,4]", "LogSoftmax", 11, 1,
     {IN(S2(3, 4), -2, 2)}, {AI("axis", 0)}, M0, 0},

    /* ---- reductions ---- */
    {"ReduceSum-13 axes [1] keepdims 1", "ReduceSum", 13, 2, {IN(S3(2, 3, 4), -2, 2), AXES(1, 1)},
     {{0}}, M0, 1},
    {"ReduceSum-13 axes [0,2] keepdims 0", "ReduceSum", 13, 2,
     {IN(S3(2, 3, 4), -2, 2), AXES(2, 0, 2)}, {AI("keepdims", 0)}, M0, 0},
    {"ReduceSum-13 axes [-1] keepdims 0", "ReduceSum", 13, 2, {IN(S3(2, 3, 4), -2, 2), AXES(1, -1)},
     {AI("keepdims", 0)}, M0, 0},
    {"ReduceSum-13 no axes (all)", "ReduceSum", 13, 1, {IN(S3(2, 3, 4), -2, 2)}, {{0}}, M0, 0},
    {"ReduceSum-13 noop_with_empty_axes", "ReduceSum", 13, 1, {IN(S2(3, 4), -2, 2)},
     {AI("noop_with_empty_axes", 1)}, M0, 0},
    {"ReduceSum-11 attr axes [0,1] keepdims 1", "ReduceSum", 11, 1, {IN(S3(2, 3, 4), -2, 2)},
     {AIS("axes", 2, 0, 1)}, M0, 0},
    {"ReduceMean-13 attr axes [1] keepdims 0", "ReduceMean", 13, 1, {IN(S3(2, 3, 4), -2, 2)},
     {AIS("axes", 1, 1), AI("keepdims", 0)}, M0, 1},
    {"ReduceMean-13 attr axes [0,2] keepdims 1", "ReduceMean", 13, 1, {IN(S3(2, 3, 4), -2, 2)},
     {AIS("axes", 2, 0, 2)}, M0, 0},
    {"ReduceMean-13 all axes keepdims 0", "ReduceMean", 13, 1, {IN(S2(5, 4), -2, 2)},
     {AI("keepdims", 0)}, M0, 0},
    {"ReduceMean-18 axes input [2,3] of [2,3,4,5]", "ReduceMean", 18, 2,
     {IN(S4(2, 3, 4, 5), -2, 2), AXES(2, 2, 3)}, {{0}}, M0, 1},
    {"ReduceMean-18 axes input [0] keepdims 0", "ReduceMean", 18, 2,
     {IN(S3(4, 3, 2), -2, 2), AXES(1, 0)}, {AI("keepdims", 0)}, M0, 0},
    /* nonlinear reductions (random inputs do not tie) */
    {"ReduceMax-13 attr axes [1]", "ReduceMax", 13, 1, {IN(S3(2, 3, 4), -2, 2)}, {AIS("axes", 1, 1)}, M0, 1},
    {"ReduceMax-18 axes input [0,2] keepdims 0", "ReduceMax", 18, 2, {IN(S3(2, 3, 4), -2, 2), AXES(2, 0, 2)},
     {AI("keepdims", 0)}, M0, 0},
    {"ReduceMin-13 all axes", "ReduceMin", 13, 1, {IN(S2(3, 4), -2, 2)}, {{0}}, M0, 0},
    {"ReduceL1-13 axes [-1]", "ReduceL1", 13, 1, {IN_AWAY(S3(2, 3, 4), -2, 2, 0)}, {AIS("axes", 1, -1)}, M0, 1},
    {"ReduceL2-13 axes [0]", "ReduceL2", 13, 1, {IN(S3(2, 3, 4), -2, 2)}, {AIS("axes", 1, 0)}, M0, 1},
    {"ReduceSumSquare-18 axes [1,2]", "ReduceSumSquare", 18, 2, {IN(S3(2, 3, 4), -2, 2), AXES(2, 1, 2)},
     {{0}}, M0, 1},
    {"ReduceProd-13 axes [1]", "ReduceProd", 13, 1, {IN(S3(2, 4, 3), 0.5, 1.5)}, {AIS("axes", 1, 1)}, M0, 1},
    {"ReduceProd-13 with signs", "ReduceProd", 13, 1, {IN_AWAY(S2(3, 4), -1.5, 1.5, 0)}, {AIS("axes", 1, 1)},
     M0, 0},
    {"ReduceLogSum-13 axes [1]", "ReduceLogSum", 13, 1, {IN(S2(3, 5), 0.5, 2)}, {AIS("axes", 1, 1)}, M0, 1},
    {"ReduceLogSumExp-13 axes [1] keepdims 0", "ReduceLogSumExp", 13, 1, {IN(S3(2, 5, 3), -3, 3)},
     {AIS("axes", 1, 1), AI("keepdims", 0)}, M0, 1},
    {"GlobalMaxPool", "GlobalMaxPool", 1, 1, {IN(S4(2, 3, 2, 3), -2, 2)}, {{0}}, M0, 1},
};

/* ------------------------------------------------------------- building */

static double urand(uint64_t *s)
{
    return (fd_rand_(s) + 1) * 0.5; /* [0, 1) */
}

static double draw(const in_spec *in, uint64_t *s)
{
    for (;;) {
        double v = in->lo + (in->hi - in->lo) * urand(s);
        int near = 0;
        for (int k = 0; k < in->n_avoid; k++)
            near |= fabs(v - in->avoid[k]) < 0.05;
        if (!near)
            return v;
    }
}

/* The tensors of one case in one float type (owned). */
typedef struct built {
    cs_tensor in[MAXIN];
    op_test t;
} built;

/* Inputs in type dt (float values rounded to float when round_f32, so that
 * float and double builds see the same numbers), then infer + forward. */
static cs_status build(built *b, const gcase *gc, cs_dtype dt, int round_f32, cs_err *err)
{
    memset(b, 0, sizeof *b);
    uint64_t seed = 12345;
    for (const char *p = gc->label; *p; p++)
        seed = seed * 31 + (unsigned char)*p;
    op_test_init(&b->t, gc->op, gc->opset);
    for (int i = 0; i < gc->n_in; i++) {
        const in_spec *in = &gc->in[i];
        if (!in->present) {
            op_test_input(&b->t, NULL);
            continue;
        }
        cs_dtype idt = in->fixed_dt ? in->fixed_dt : dt;
        cs_tensor_set_shape(&b->in[i], idt, in->ndim, in->dims);
        cs_status st = cs_tensor_alloc(&b->in[i], err);
        if (st)
            return st;
        for (int64_t j = 0; j < cs_tensor_numel(&b->in[i]); j++) {
            double v = in->fixed_dt ? (double)in->ivals[j] : draw(in, &seed);
            if (round_f32)
                v = (float)v;
            cs_tensor_set_f64(&b->in[i], j, v);
        }
        op_test_input(&b->t, &b->in[i]);
    }
    for (const attr_spec *a = gc->attr; a->name; a++) {
        if (a->kind == 'i')
            op_test_attr_int(&b->t, a->name, a->i);
        else if (a->kind == 'f')
            op_test_attr_float(&b->t, a->name, a->f);
        else if (a->kind == 's')
            op_test_attr_string(&b->t, a->name, a->s);
        else
            op_test_attr_ints(&b->t, a->name, a->n, a->ints);
    }
    op_test_outputs(&b->t, 1);
    return op_test_run(&b->t, err);
}

static void unbuild(built *b)
{
    op_test_free(&b->t);
    for (int i = 0; i < MAXIN; i++)
        cs_tensor_free(&b->in[i]);
}

/* ----------------------------------------------------- float64 fd checks */

static void run_fd(const gcase *gc)
{
    built b;
    cs_err err = {0};
    if (!ok(build(&b, gc, CS_DT_DOUBLE, 0, &err) == CS_OK, "%s: builds (%s)", gc->label, err.msg)) {
        unbuild(&b);
        return;
    }
    fd_opts o = fd_default();
    fd_check_op(gc->label, &b.t, gc->mask, &o);
    unbuild(&b);
}

/* ---------------------------------------------- float32 against float64 */

/* An owned tensor of type dt shaped like t, filled with v. */
static cs_tensor like(const cs_tensor *t, cs_dtype dt, double v)
{
    cs_tensor r = {0};
    cs_tensor_set_shape(&r, dt, t->ndim, t->dims);
    if (cs_tensor_alloc(&r, NULL) != CS_OK)
        abort();
    for (int64_t j = 0; j < cs_tensor_numel(&r); j++)
        cs_tensor_set_f64(&r, j, v);
    return r;
}

/* max |f - d| <= 1e-5 max |d| + 1e-6 */
static int agree(const cs_tensor *f, const cs_tensor *d, double *rel)
{
    double scale = 0, worst = 0;
    int64_t n = cs_tensor_numel(d);
    for (int64_t j = 0; j < n; j++)
        scale = fmax(scale, fabs(cs_tensor_get_f64(d, j)));
    int good = 1;
    for (int64_t j = 0; j < n; j++) {
        double e = fabs(cs_tensor_get_f64(f, j) - cs_tensor_get_f64(d, j));
        if (!(e <= 1e-5 * scale + 1e-6))
            good = 0;
        worst = isnan(e) || isnan(worst) ? NAN : fmax(worst, e);
    }
    *rel = scale > 0 ? worst / scale : worst;
    return good;
}

static int all_equal(const cs_tensor *t, double v)
{
    for (int64_t j = 0; j < cs_tensor_numel(t); j++)
        if (cs_tensor_get_f64(t, j) != v)
            return 0;
    return 1;
}

/* The rules of one type on one build: gin / rop outputs start at 0.25 (the
 * rules add), tout at NaN (jvp must overwrite). */
typedef struct smoke_res {
    cs_tensor gin[MAXIN], tout, rop[MAXIN];
    cs_status st_vjp, st_jvp, st_rop;
} smoke_res;

static void smoke_rules(built *b, const gcase *gc, cs_dtype dt, const double *gout_v,
                        const double *const *tin_v, smoke_res *r)
{
    const cs_op_def *op = b->t.node.op;
    cs_err err = {0};
    cs_tensor gout = like(b->t.out[0], dt, 0), tin[MAXIN] = {{0}};
    for (int64_t j = 0; j < cs_tensor_numel(&gout); j++)
        cs_tensor_set_f64(&gout, j, gout_v[j]);
    cs_tensor *goutp[1] = {&gout}, *toutp[1], *ginp[MAXIN] = {0}, *tinp[MAXIN] = {0};
    cs_tensor *ropp[MAXIN] = {0};
    memset(r, 0, sizeof *r);
    for (int i = 0; i < gc->n_in; i++) {
        if (!((gc->mask >> i) & 1))
            continue;
        r->gin[i] = like(b->t.in[i], dt, 0.25);
        r->rop[i] = like(b->t.in[i], dt, 0.25);
        tin[i] = like(b->t.in[i], dt, 0);
        for (int64_t j = 0; j < cs_tensor_numel(&tin[i]); j++)
            cs_tensor_set_f64(&tin[i], j, tin_v[i][j]);
        ginp[i] = &r->gin[i];
        ropp[i] = &r->rop[i];
        tinp[i] = &tin[i];
    }
    r->tout = like(b->t.out[0], dt, NAN);
    toutp[0] = &r->tout;
    cs_op_ad a = {.gout = goutp, .gin = ginp};
    r->st_vjp = op->vjp(&b->t.call, &a, &err);
    cs_op_ad j = {.tin = tinp, .tout = toutp};
    r->st_jvp = op->jvp(&b->t.call, &j, &err);
    if (op->rop) {
        cs_op_ad ro = {.gout = goutp, .gin = ropp, .tin = tinp};
        r->st_rop = op->rop(&b->t.call, &ro, &err);
    }
    cs_tensor_free(&gout);
    for (int i = 0; i < MAXIN; i++)
        cs_tensor_free(&tin[i]);
}

static void smoke_free(smoke_res *r)
{
    cs_tensor_free(&r->tout);
    for (int i = 0; i < MAXIN; i++) {
        cs_tensor_free(&r->gin[i]);
        cs_tensor_free(&r->rop[i]);
    }
}

/* Absent gradients and tangents: vjp / rop with gout NULL leave gin alone;
 * jvp with every tangent NULL writes zeros. */
static void check_nulls(built *b, const gcase *gc)
{
    const cs_op_def *op = b->t.node.op;
    cs_err err = {0};
    cs_tensor gin[MAXIN] = {{0}}, tin[MAXIN] = {{0}};
    cs_tensor *ginp[MAXIN] = {0}, *tinp[MAXIN] = {0}, *goutp[1] = {NULL}, *tnull[MAXIN] = {0};
    for (int i = 0; i < gc->n_in; i++)
        if ((gc->mask >> i) & 1) {
            gin[i] = like(b->t.in[i], CS_DT_DOUBLE, 0.25);
            tin[i] = like(b->t.in[i], CS_DT_DOUBLE, 1.0);
            ginp[i] = &gin[i];
            tinp[i] = &tin[i];
        }
    cs_tensor tout = like(b->t.out[0], CS_DT_DOUBLE, NAN);
    cs_tensor *toutp[1] = {&tout};
    cs_op_ad a = {.gout = goutp, .gin = ginp, .tin = tinp};
    int good = op->vjp(&b->t.call, &a, &err) == CS_OK;
    if (op->rop)
        good &= op->rop(&b->t.call, &a, &err) == CS_OK;
    for (int i = 0; i < gc->n_in; i++)
        if (ginp[i])
            good &= all_equal(&gin[i], 0.25);
    ok(good, "%s: vjp%s with no output gradient add nothing", gc->label, op->rop ? " and rop" : "");
    cs_op_ad j = {.tin = tnull, .tout = toutp};
    ok(op->jvp(&b->t.call, &j, &err) == CS_OK && all_equal(&tout, 0),
       "%s: jvp with no input tangent gives zeros", gc->label);
    cs_tensor_free(&tout);
    for (int i = 0; i < MAXIN; i++) {
        cs_tensor_free(&gin[i]);
        cs_tensor_free(&tin[i]);
    }
}

static void run_smoke(const gcase *gc)
{
    built bf, bd;
    cs_err err = {0};
    cs_status sf = build(&bf, gc, CS_DT_FLOAT, 1, &err);
    cs_status sd = build(&bd, gc, CS_DT_DOUBLE, 1, &err);
    if (!ok(sf == CS_OK && sd == CS_OK, "%s float32: builds (%s)", gc->label, err.msg))
        goto done;
    const cs_op_def *op = bd.t.node.op;
    if (!ok(op->vjp && op->jvp, "%s float32: has rules", gc->label))
        goto done;
    /* shared random gout and tangents, rounded to float */
    uint64_t seed = 99;
    int64_t no = cs_tensor_numel(bd.t.out[0]);
    double *gout_v = malloc(sizeof(double) * (size_t)(no + 1));
    for (int64_t j = 0; j < no; j++)
        gout_v[j] = (float)fd_rand_(&seed);
    double *tin_v[MAXIN] = {0};
    for (int i = 0; i < gc->n_in; i++)
        if ((gc->mask >> i) & 1) {
            int64_t ni = cs_tensor_numel(bd.t.in[i]);
            tin_v[i] = malloc(sizeof(double) * (size_t)(ni + 1));
            for (int64_t j = 0; j < ni; j++)
                tin_v[i][j] = (float)fd_rand_(&seed);
        }
    smoke_res rf, rd;
    smoke_rules(&bf, gc, CS_DT_FLOAT, gout_v, (const double *const *)tin_v, &rf);
    smoke_rules(&bd, gc, CS_DT_DOUBLE, gout_v, (const double *const *)tin_v, &rd);
    ok(rf.st_vjp == CS_OK && rf.st_jvp == CS_OK && rf.st_rop == CS_OK,
       "%s float32: vjp, jvp%s run", gc->label, op->rop ? ", rop" : "");
    double rel, worst = 0;
    int good = 1;
    for (int i = 0; i < gc->n_in; i++)
        if (tin_v[i]) {
            good &= agree(&rf.gin[i], &rd.gin[i], &rel);
            worst = fmax(worst, rel);
        }
    ok(good, "%s float32: vjp agrees with float64 (rel err %.2g)", gc->label, worst);
    ok(agree(&rf.tout, &rd.tout, &rel), "%s float32: jvp agrees with float64 (rel err %.2g)",
       gc->label, rel);
    if (op->rop) {
        good = 1;
        worst = 0;
        for (int i = 0; i < gc->n_in; i++)
            if (tin_v[i]) {
                good &= agree(&rf.rop[i], &rd.rop[i], &rel);
                worst = fmax(worst, rel);
            }
        ok(good, "%s float32: rop agrees with float64 (rel err %.2g)", gc->label, worst);
    }
    smoke_free(&rf);
    smoke_free(&rd);
    free(gout_v);
    for (int i = 0; i < MAXIN; i++)
        free(tin_v[i]);
    check_nulls(&bd, gc);
done:
    unbuild(&bf);
    unbuild(&bd);
}

/* ------------------------------------------------------ specific checks */

/* cs_broadcast_reduce_add against a per-element reference. */
static void test_reduce_add(void)
{
    static const struct {
        int nd, ng;
        int64_t dd[4], gd[4];
    } shapes[] = {
        {2, 3, {3, 1}, {2, 3, 4}},        {1, 3, {4}, {2, 3, 4}},
        {3, 4, {3, 1, 1}, {2, 3, 4, 5}},  {0, 2, {0}, {3, 5}},
        {3, 3, {2, 3, 4}, {2, 3, 4}},     {3, 3, {1, 3, 1}, {2, 3, 4}},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int dti = 0; dti < 2; dti++) {
            cs_dtype dt = dti ? CS_DT_DOUBLE : CS_DT_FLOAT;
            cs_tensor dst = {0}, g = {0};
            cs_tensor_set_shape(&dst, dt, shapes[s].nd, shapes[s].dd);
            cs_tensor_set_shape(&g, dt, shapes[s].ng, shapes[s].gd);
            if (cs_tensor_alloc(&dst, NULL) || cs_tensor_alloc(&g, NULL))
                abort();
            uint64_t seed = 7 + s;
            int64_t ng = cs_tensor_numel(&g), nd = cs_tensor_numel(&dst);
            for (int64_t j = 0; j < ng; j++)
                cs_tensor_set_f64(&g, j, (float)fd_rand_(&seed));
            for (int64_t j = 0; j < nd; j++)
                cs_tensor_set_f64(&dst, j, 1.0);
            double *ref = calloc((size_t)nd + 1, sizeof(double));
            int lead = shapes[s].ng - shapes[s].nd;
            for (int64_t j = 0; j < ng; j++) {
                int64_t rem = j, flat = 0, mul = 1;
                for (int d = shapes[s].ng - 1; d >= 0; d--) {
                    int64_t idx = rem % shapes[s].gd[d];
                    rem /= shapes[s].gd[d];
                    int dd = d - lead;
                    if (dd >= 0) {
                        flat += (shapes[s].dd[dd] == 1 ? 0 : idx) * mul;
                        mul *= shapes[s].dd[dd];
                    }
                }
                ref[flat] += cs_tensor_get_f64(&g, j);
            }
            cs_err err = {0};
            cs_status st = cs_broadcast_reduce_add(&dst, &g, -2.0, &err);
            int good = st == CS_OK;
            for (int64_t j = 0; j < nd && good; j++)
                good = tap_close(cs_tensor_get_f64(&dst, j), 1.0 - 2.0 * ref[j], 1e-5, 1e-5);
            char a[64], b[64];
            ok(good, "reduce_add %s: %s += -2 * sum of %s", cs_dtype_name(dt),
               cs_shape_str(&dst, a, sizeof a), cs_shape_str(&g, b, sizeof b));
            free(ref);
            cs_tensor_free(&dst);
            cs_tensor_free(&g);
        }
    }
    cs_tensor dst = {0}, g = {0}, gi = {0};
    cs_tensor_set_shape(&dst, CS_DT_FLOAT, 1, (int64_t[]){3});
    cs_tensor_set_shape(&g, CS_DT_FLOAT, 2, (int64_t[]){2, 4});
    cs_tensor_set_shape(&gi, CS_DT_INT64, 2, (int64_t[]){2, 3});
    cs_err err = {0};
    ok(cs_broadcast_reduce_add(&dst, &g, 1, &err) == CS_ERR_SHAPE && strstr(err.msg, "[2, 4]"),
       "reduce_add: [2, 4] is not a broadcast of [3] (%s)", err.msg);
    ok(cs_broadcast_reduce_add(&dst, &gi, 1, &err) == CS_ERR_UNSUPPORTED,
       "reduce_add: int64 gradient refused (%s)", err.msg);
}

/* Pow at and below a zero base: the choices stated in elementwise.c. */
static void test_pow_edges(void)
{
    double av[4] = {0, -2, 0, 2}, bv[4] = {2, 2, 0, 0};
    cs_tensor a = {0}, b = {0};
    cs_tensor_set_shape(&a, CS_DT_DOUBLE, 1, (int64_t[]){4});
    cs_tensor_set_shape(&b, CS_DT_DOUBLE, 1, (int64_t[]){4});
    a.data = av;
    b.data = bv;
    op_test t;
    op_test_init(&t, "Pow", 15);
    op_test_input(&t, &a);
    op_test_input(&t, &b);
    op_test_outputs(&t, 1);
    cs_err err = {0};
    if (!ok(op_test_run(&t, &err) == CS_OK, "Pow edges: runs (%s)", err.msg)) {
        op_test_free(&t);
        return;
    }
    double g[4] = {1, 1, 1, 1}, ga[4] = {0}, gb[4] = {0};
    cs_tensor gt = a, gat = a, gbt = b;
    gt.data = g;
    gat.data = ga;
    gbt.data = gb;
    cs_tensor *goutp[1] = {&gt}, *ginp[2] = {&gat, &gbt};
    cs_op_ad ad = {.gout = goutp, .gin = ginp};
    ok(t.node.op->vjp(&t.call, &ad, &err) == CS_OK, "Pow edges: vjp runs");
    ok(ga[0] == 0 && gb[0] == 0, "Pow 0^2: d/da = 0, d/db = 0 (limit from a > 0), got %g, %g",
       ga[0], gb[0]);
    ok(ga[1] == -4 && gb[1] == 0, "Pow (-2)^2: d/da = -4, d/db = 0 by convention, got %g, %g",
       ga[1], gb[1]);
    ok(ga[2] == 0 && gb[2] == 0, "Pow 0^0: d/da = 0 (b == 0), d/db = 0, got %g, %g", ga[2], gb[2]);
    ok(fabs(gb[3] - log(2.0)) < 1e-15 && ga[3] == 0, "Pow 2^0: d/db = log 2, d/da = 0, got %g, %g",
       gb[3], ga[3]);
    op_test_free(&t);
}

/* doc/design.md §2.8's conventions at kinks (PyTorch's), which finite differences
 * cannot see: Relu'(0) = 0, LeakyRelu'(0) = alpha, Clip passes the
 * gradient at its bounds. */
static void kink_vjp(const char *op, int opset, const double *xv, int n, const double *lo,
                     const double *hi, float alpha, double *gx)
{
    cs_tensor x = {0}, l = {0}, h = {0}, gy, g;
    cs_tensor_set_shape(&x, CS_DT_DOUBLE, 1, (int64_t[]){n});
    x.data = (void *)xv;
    cs_tensor_set_shape(&l, CS_DT_DOUBLE, 0, NULL);
    cs_tensor_set_shape(&h, CS_DT_DOUBLE, 0, NULL);
    l.data = (void *)lo;
    h.data = (void *)hi;
    double ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    gy = x;
    gy.data = ones;
    g = x;
    g.data = gx;
    op_test t;
    op_test_init(&t, op, opset);
    op_test_input(&t, &x);
    if (lo || hi) {
        op_test_input(&t, lo ? &l : NULL);
        op_test_input(&t, hi ? &h : NULL);
    }
    if (alpha != 0)
        op_test_attr_float(&t, "alpha", alpha);
    op_test_outputs(&t, 1);
    cs_err err = {0};
    for (int i = 0; i < n; i++)
        gx[i] = 0;
    cs_tensor *goutp[1] = {&gy}, *ginp[3] = {&g, NULL, NULL};
    cs_op_ad ad = {.gout = goutp, .gin = ginp};
    if (op_test_run(&t, &err) != CS_OK || t.node.op->vjp(&t.call, &ad, &err) != CS_OK)
        for (int i = 0; i < n; i++)
            gx[i] = NAN;
    op_test_free(&t);
}

static void test_kinks(void)
{
    double x[4] = {-1, 0, 1, -0.0}, g[4];
    kink_vjp("Relu", 14, x, 4, NULL, NULL, 0, g);
    ok(g[0] == 0 && g[1] == 0 && g[2] == 1 && g[3] == 0, "Relu'(0) = 0: got %g %g %g %g", g[0],
       g[1], g[2], g[3]);
    kink_vjp("LeakyRelu", 16, x, 4, NULL, NULL, 0.25f, g);
    ok(g[0] == 0.25 && g[1] == 0.25 && g[2] == 1 && g[3] == 0.25,
       "LeakyRelu'(0) = alpha: got %g %g %g %g", g[0], g[1], g[2], g[3]);
    double xc[5] = {-0.5, 0.5, -0.6, 0.6, 0}, lo = -0.5, hi = 0.5;
    double gc[5];
    kink_vjp("Clip", 13, xc, 5, &lo, &hi, 0, gc);
    ok(gc[0] == 1 && gc[1] == 1 && gc[2] == 0 && gc[3] == 0 && gc[4] == 1,
       "Clip passes the gradient at its bounds: got %g %g %g %g %g", gc[0], gc[1], gc[2], gc[3],
       gc[4]);
    double lo2 = 0.5, hi2 = -0.5; /* lo > hi: output is hi everywhere */
    kink_vjp("Clip", 13, xc, 5, &lo2, &hi2, 0, gc);
    ok(gc[0] == 0 && gc[1] == 0 && gc[2] == 0 && gc[3] == 0 && gc[4] == 0,
       "Clip with min > max (constant output): zero gradient");
    kink_vjp("Abs", 13, x, 4, NULL, NULL, 0, g);
    ok(g[0] == -1 && g[1] == 0 && g[2] == 1 && g[3] == 0, "Abs'(0) = 0: got %g %g %g %g", g[0], g[1], g[2], g[3]);
    kink_vjp("Elu", 6, x, 4, NULL, NULL, 0.25f, g);
    ok(fabs(g[0] - 0.25 * exp(-1.0)) < 1e-15 && g[1] == 0.25 && g[2] == 1 && g[3] == 0.25,
       "Elu'(0) = alpha (the negative branch, as PyTorch): got %g %g %g %g", g[0], g[1], g[2], g[3]);
    double xh[4] = {-3, 3, -3.5, 3.5};
    kink_vjp("HardSwish", 14, xh, 4, NULL, NULL, 0, g);
    ok(g[0] == -0.5 && g[1] == 1.5 && g[2] == 0 && g[3] == 1,
       "HardSwish' at -3 and 3 from the inner branch (PyTorch): got %g %g %g %g", g[0], g[1], g[2], g[3]);
    double xs[4] = {-2.5, 2.5, 0, 1};
    kink_vjp("HardSigmoid", 6, xs, 4, NULL, NULL, 0, g);
    ok(g[0] == 0 && g[1] == 0 && fabs(g[2] - 0.2) < 1e-7 && fabs(g[3] - 0.2) < 1e-7,
       "HardSigmoid' is alpha strictly inside (0, 1): got %g %g %g %g", g[0], g[1], g[2], g[3]);
    double xf[4] = {-1, 0, 2, 0.5};
    kink_vjp("Floor", 13, xf, 4, NULL, NULL, 0, g);
    ok(g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0, "Floor' = 0, also at integers");
    double xm[3] = {0.5, 1, 0}, tie = 0.5;
    kink_vjp("Max", 13, xm, 3, &tie, &tie, 0, g);
    ok(fabs(g[0] - 1.0 / 3) < 1e-15 && g[1] == 1 && g[2] == 0,
       "Max splits the gradient over tied inputs (three-way tie: 1/3): got %g %g %g", g[0], g[1], g[2]);
    double xr[3] = {1, 1, 0};
    kink_vjp("ReduceMax", 13, xr, 3, NULL, NULL, 0, g);
    ok(g[0] == 0.5 && g[1] == 0.5 && g[2] == 0, "ReduceMax shares a tie evenly (as torch.amax): got %g %g %g",
       g[0], g[1], g[2]);
}

/* Rules of integer-typed uses are refused, and a mixed-type exponent's
 * gradient is refused rather than computed in the wrong type. */
static void test_refusals(void)
{
    int64_t iv[3] = {1, 2, 3}, ig[3] = {0}, igout[3] = {1, 1, 1};
    cs_tensor x = {0}, gx, gy;
    cs_tensor_set_shape(&x, CS_DT_INT64, 1, (int64_t[]){3});
    x.data = iv;
    gx = x;
    gx.data = ig;
    gy = x;
    gy.data = igout;
    op_test t;
    op_test_init(&t, "Add", 14);
    op_test_input(&t, &x);
    op_test_input(&t, &x);
    op_test_outputs(&t, 1);
    cs_err err = {0};
    cs_status st = op_test_run(&t, &err);
    cs_tensor *goutp[1] = {&gy}, *ginp[2] = {&gx, NULL};
    cs_op_ad ad = {.gout = goutp, .gin = ginp};
    ok(st == CS_OK && t.node.op->vjp(&t.call, &ad, &err) == CS_ERR_UNSUPPORTED,
       "Add int64: vjp refused (%s)", err.msg);
    op_test_free(&t);

    float fa[2] = {1.5f, 2.5f}, fg[2] = {1, 1}, fga[2] = {0};
    double db[2] = {2, 3}, dgb[2] = {0};
    cs_tensor a = {0}, b = {0};
    cs_tensor_set_shape(&a, CS_DT_FLOAT, 1, (int64_t[]){2});
    cs_tensor_set_shape(&b, CS_DT_DOUBLE, 1, (int64_t[]){2});
    a.data = fa;
    b.data = db;
    op_test_init(&t, "Pow", 15);
    op_test_input(&t, &a);
    op_test_input(&t, &b);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    cs_tensor ga = a, gb = b, gz = a;
    ga.data = fga;
    gb.data = dgb;
    gz.data = fg;
    cs_tensor *gzp[1] = {&gz}, *gboth[2] = {&ga, &gb}, *gonly_a[2] = {&ga, NULL};
    cs_op_ad both = {.gout = gzp, .gin = gboth}, only_a = {.gout = gzp, .gin = gonly_a};
    ok(st == CS_OK && t.node.op->vjp(&t.call, &both, &err) == CS_ERR_UNSUPPORTED,
       "Pow float ^ double: exponent gradient refused (%s)", err.msg);
    fga[0] = fga[1] = 0;
    ok(t.node.op->vjp(&t.call, &only_a, &err) == CS_OK && fabsf(fga[0] - 2 * 1.5f) < 1e-6f &&
           fabsf(fga[1] - 3 * 2.5f * 2.5f) < 1e-5f,
       "Pow float ^ double: base gradient b a^(b-1) = %g, %g", fga[0], fga[1]);
    op_test_free(&t);
}

/* The flags say which ops are linear; a wrong flag would let a missing
 * second-order term pass silently. */
static void test_flags(void)
{
    static const char *const linear[] = {"Relu", "LeakyRelu", "Neg", "Clip", "Add", "Sub",
                                         "ReduceSum", "ReduceMean", "Abs", "Floor", "Ceil", "Round",
                                         "Sign", "ThresholdedRelu", "HardSigmoid", "Where", "Max", "Min",
                                         "ReduceMax", "ReduceMin", "ReduceL1", "CumSum", "Trilu", "Resize",
                                         "Upsample", "GlobalMaxPool"};
    static const char *const curved[] = {"Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt",
                                         "Mul", "Div", "Pow", "Softmax", "LogSoftmax", "Reciprocal",
                                         "Sin", "Cos", "Sinh", "Cosh", "Softplus", "Softsign", "Elu",
                                         "Celu", "Selu", "HardSwish", "Mish", "Gelu", "PRelu", "ReduceL2",
                                         "ReduceSumSquare", "ReduceProd", "ReduceLogSum", "ReduceLogSumExp",
                                         "Einsum", "InstanceNormalization", "GroupNormalization", "RNN", "GRU",
                                         "LSTM"};
    int good = 1;
    for (size_t i = 0; i < sizeof linear / sizeof linear[0]; i++) {
        const cs_op_def *d = cs_op_find(linear[i], "");
        good &= d && (d->flags & CS_OP_LINEAR) && !d->rop && d->vjp && d->jvp;
    }
    ok(good, "linear and piecewise-linear ops: CS_OP_LINEAR, vjp, jvp, no rop");
    good = 1;
    for (size_t i = 0; i < sizeof curved / sizeof curved[0]; i++) {
        const cs_op_def *d = cs_op_find(curved[i], "");
        good &= d && !(d->flags & CS_OP_LINEAR) && d->rop && d->vjp && d->jvp;
    }
    ok(good, "curved ops: vjp, jvp and rop, not flagged linear");
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_fd(&cases[i]);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (cases[i].smoke)
            run_smoke(&cases[i]);
    test_reduce_add();
    test_pow_edges();
    test_kinks();
    test_refusals();
    test_flags();
    return tap_done();
}
