/* Comparisons, logic and selection, all broadcasting (numpy rules):
 * Equal, Less, LessOrEqual, Greater, GreaterOrEqual, Not, And, Or, Xor,
 * Where, Max, Min; PRelu (a selection by sign with a broadcast slope).
 *
 * Comparisons read both operands as long double, which holds every value
 * of every 8- to 64-bit integer type and of float and double exactly, so
 * int64 token ids compare exactly; NaN compares unequal and unordered, as
 * in IEEE.  Their outputs are bool: no gradient flows (CS_OP_NO_GRAD).
 *
 * Derivatives (float and double), all piecewise linear (CS_OP_LINEAR):
 *   Where(c, X, Y)   gX += sum-to-X-shape(c ? g : 0), gY likewise with !c;
 *                    ty = c ? tX : tY; the condition gets none
 *   Max, Min         the gradient goes to the input that is selected; where
 *                    k inputs tie, each gets g / k (PyTorch's maximum and
 *                    minimum split a tie in half); NaN propagates in the
 *                    forward and then every input equal to nothing gets
 *                    zero */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "interp/op.h"
#include "tensor/broadcast.h"

#define SELECT_MAX_IN 8

/* Element i of any numeric or bool tensor, exactly. */
static long double read_exact(const cs_tensor *t, int64_t i)
{
    const void *p = t->data;
    switch (t->dtype) {
    case CS_DT_FLOAT: return ((const float *)p)[i];
    case CS_DT_DOUBLE: return ((const double *)p)[i];
    case CS_DT_INT8: return ((const int8_t *)p)[i];
    case CS_DT_INT16: return ((const int16_t *)p)[i];
    case CS_DT_INT32: return ((const int32_t *)p)[i];
    case CS_DT_INT64: return ((const int64_t *)p)[i];
    case CS_DT_UINT8:
    case CS_DT_BOOL: return ((const uint8_t *)p)[i];
    case CS_DT_UINT16: return ((const uint16_t *)p)[i];
    case CS_DT_UINT32: return ((const uint32_t *)p)[i];
    case CS_DT_UINT64: return ((const uint64_t *)p)[i];
    default: return NAN;
    }
}

static bool readable(cs_dtype t)
{
    return t == CS_DT_FLOAT || t == CS_DT_DOUBLE || t == CS_DT_INT8 || t == CS_DT_INT16 || t == CS_DT_INT32 ||
           t == CS_DT_INT64 || t == CS_DT_UINT8 || t == CS_DT_UINT16 || t == CS_DT_UINT32 ||
           t == CS_DT_UINT64 || t == CS_DT_BOOL;
}

/* Offsets of n inputs walked over the output's index space, one element at
 * a time (an odometer over cs_broadcast_strides). */
typedef struct bwalk {
    int n, rank;
    int64_t dims[CS_MAX_DIMS], idx[CS_MAX_DIMS];
    int64_t strides[SELECT_MAX_IN][CS_MAX_DIMS];
    int64_t off[SELECT_MAX_IN];
} bwalk;

static void bwalk_init(bwalk *w, const cs_tensor *const *in, int n, const cs_tensor *out)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->rank = out->ndim;
    for (int d = 0; d < out->ndim; d++)
        w->dims[d] = out->dims[d];
    for (int k = 0; k < n; k++)
        if (in[k])
            cs_broadcast_strides(in[k], out, w->strides[k]);
}

static void bwalk_next(bwalk *w)
{
    for (int d = w->rank - 1; d >= 0; d--) {
        for (int k = 0; k < w->n; k++)
            w->off[k] += w->strides[k][d];
        if (++w->idx[d] < w->dims[d])
            return;
        for (int k = 0; k < w->n; k++)
            w->off[k] -= w->strides[k][d] * w->dims[d];
        w->idx[d] = 0;
    }
}

static cs_status broadcast_infer(cs_op_call *c, int first, int n, cs_dtype out_dt, cs_err *err)
{
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    const cs_tensor *in[SELECT_MAX_IN];
    for (int k = 0; k < n; k++)
        in[k] = c->in[first + k];
    char what[160];
    snprintf(what, sizeof what, "%s node '%s'", c->node->op_type, c->node->name);
    cs_status st = cs_broadcast_shapes(in, n, c->out[0], what, err);
    c->out[0]->dtype = out_dt;
    return st;
}

static cs_status need_inputs(const cs_op_call *c, int lo, int hi, cs_err *err)
{
    if (c->n_in < lo || c->n_in > hi)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects %d to %d inputs, got %d", lo, hi, c->n_in);
    for (int i = 0; i < c->n_in; i++)
        if (!c->in[i])
            return cs_op_fail(c, err, CS_ERR_FORMAT, "input %d is missing", i);
    return CS_OK;
}

/* ---- comparisons and logic ---- */

typedef enum cmp_kind { C_EQ, C_LT, C_LE, C_GT, C_GE, C_NOT, C_AND, C_OR, C_XOR } cmp_kind;

static bool cmp_logic(cmp_kind k)
{
    return k >= C_NOT;
}

static cs_status cmp_infer(cs_op_call *c, cmp_kind k, cs_err *err)
{
    int n = k == C_NOT ? 1 : 2;
    cs_status st = need_inputs(c, n, n, err);
    if (st)
        return st;
    for (int i = 0; i < n; i++) {
        cs_dtype t = c->in[i]->dtype;
        if (cmp_logic(k) ? t != CS_DT_BOOL : !readable(t))
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input %d has unsupported type %s", i, cs_dtype_name(t));
    }
    if (n == 2 && c->in[0]->dtype != c->in[1]->dtype)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "inputs have different types %s and %s",
                          cs_dtype_name(c->in[0]->dtype), cs_dtype_name(c->in[1]->dtype));
    return broadcast_infer(c, 0, n, CS_DT_BOOL, err);
}

static cs_status cmp_forward(cs_op_call *c, cmp_kind k, cs_err *err)
{
    const cs_tensor *in[2] = {c->in[0], k == C_NOT ? NULL : c->in[1]};
    uint8_t *y = c->out[0]->data;
    int64_t n = cs_tensor_numel(c->out[0]);
    bwalk w;
    bwalk_init(&w, in, k == C_NOT ? 1 : 2, c->out[0]);
    for (int64_t i = 0; i < n; i++, bwalk_next(&w)) {
        long double a = read_exact(in[0], w.off[0]), b = in[1] ? read_exact(in[1], w.off[1]) : 0;
        bool r = false;
        switch (k) {
        case C_EQ: r = a == b; break;
        case C_LT: r = a < b; break;
        case C_LE: r = a <= b; break;
        case C_GT: r = a > b; break;
        case C_GE: r = a >= b; break;
        case C_NOT: r = a == 0; break;
        case C_AND: r = a != 0 && b != 0; break;
        case C_OR: r = a != 0 || b != 0; break;
        case C_XOR: r = (a != 0) != (b != 0); break;
        }
        y[i] = r;
    }
    return CS_OK;
}

#define CMP_OP(NAME, KIND, MIN_OPSET)                                                                  \
    static cs_status NAME##_infer(cs_op_call *c, cs_err *err) { return cmp_infer(c, KIND, err); }      \
    static cs_status NAME##_forward(cs_op_call *c, cs_err *err) { return cmp_forward(c, KIND, err); }  \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = MIN_OPSET, .flags = CS_OP_NO_GRAD,    \
                                    .no_derivative = "bool output: no gradient flows",                 \
                                    .infer = NAME##_infer, .forward = NAME##_forward};

CMP_OP(Equal, C_EQ, 7)
CMP_OP(Less, C_LT, 7)
CMP_OP(LessOrEqual, C_LE, 12)
CMP_OP(Greater, C_GT, 7)
CMP_OP(GreaterOrEqual, C_GE, 12)
CMP_OP(Not, C_NOT, 1)
CMP_OP(And, C_AND, 7)
CMP_OP(Or, C_OR, 7)
CMP_OP(Xor, C_XOR, 7)

/* ---- Where ---- */

static cs_status where_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_inputs(c, 3, 3, err);
    if (st)
        return st;
    if (c->in[0]->dtype != CS_DT_BOOL)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "condition has type %s, not bool",
                          cs_dtype_name(c->in[0]->dtype));
    if (c->in[1]->dtype != c->in[2]->dtype || cs_dtype_size(c->in[1]->dtype) == 0)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "X and Y have types %s and %s", cs_dtype_name(c->in[1]->dtype),
                          cs_dtype_name(c->in[2]->dtype));
    if ((st = broadcast_infer(c, 0, 3, c->in[1]->dtype, err)))
        return st;
    /* the derivative rules mask the output gradient into one buffer */
    c->ad_scratch_bytes = cs_dtype_is_float(c->in[1]->dtype) ? cs_tensor_bytes(c->out[0]) : 0;
    return CS_OK;
}

static cs_status where_forward(cs_op_call *c, cs_err *err)
{
    const cs_tensor *in[3] = {c->in[0], c->in[1], c->in[2]};
    size_t es = cs_dtype_size(c->out[0]->dtype);
    char *y = c->out[0]->data;
    const uint8_t *cond = in[0]->data;
    int64_t n = cs_tensor_numel(c->out[0]);
    bwalk w;
    bwalk_init(&w, in, 3, c->out[0]);
    for (int64_t i = 0; i < n; i++, bwalk_next(&w)) {
        int k = cond[w.off[0]] ? 1 : 2;
        memcpy(y + (size_t)i * es, (const char *)in[k]->data + (size_t)w.off[k] * es, es);
    }
    return CS_OK;
}

/* g's share where the condition is `side` (true: X), in the output's shape. */
static void where_mask(const cs_op_call *c, const cs_tensor *g, bool side, cs_tensor *out)
{
    const cs_tensor *in[1] = {c->in[0]};
    const uint8_t *cond = c->in[0]->data;
    int64_t n = cs_tensor_numel(g);
    bwalk w;
    bwalk_init(&w, in, 1, g);
    bool dbl = g->dtype == CS_DT_DOUBLE;
    for (int64_t i = 0; i < n; i++, bwalk_next(&w)) {
        bool take = (cond[w.off[0]] != 0) == side;
        if (dbl)
            ((double *)out->data)[i] = take ? ((const double *)g->data)[i] : 0;
        else
            ((float *)out->data)[i] = take ? ((const float *)g->data)[i] : 0;
    }
}

static cs_status where_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (!a->gout[0])
        return CS_OK;
    cs_tensor masked = *a->gout[0];
    masked.data = c->scratch;
    masked.owns_data = false;
    for (int k = 1; k <= 2; k++) {
        if (!a->gin[k])
            continue;
        where_mask(c, a->gout[0], k == 1, &masked);
        cs_status st = cs_broadcast_reduce_add(a->gin[k], &masked, 1.0, err);
        if (st)
            return st;
    }
    return CS_OK;
}

static cs_status where_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_tensor *ty = a->tout[0];
    if (!ty)
        return CS_OK;
    const cs_tensor *in[3] = {c->in[0], a->tin[1], a->tin[2]};
    const uint8_t *cond = c->in[0]->data;
    int64_t n = cs_tensor_numel(ty);
    bwalk w;
    bwalk_init(&w, in, 3, ty);
    bool dbl = ty->dtype == CS_DT_DOUBLE;
    for (int64_t i = 0; i < n; i++, bwalk_next(&w)) {
        int k = cond[w.off[0]] ? 1 : 2;
        const cs_tensor *t = in[k];
        double v = !t ? 0 : dbl ? ((const double *)t->data)[w.off[k]] : ((const float *)t->data)[w.off[k]];
        if (dbl)
            ((double *)ty->data)[i] = v;
        else
            ((float *)ty->data)[i] = (float)v;
    }
    return CS_OK;
}

const cs_op_def cs_op_Where = {.name = "Where", .min_opset = 9, .flags = CS_OP_LINEAR, .infer = where_infer,
                               .forward = where_forward, .vjp = where_vjp, .jvp = where_jvp};

/* ---- Max, Min ---- */

static cs_status extremum_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_inputs(c, 1, SELECT_MAX_IN, err);
    if (st)
        return st;
    for (int i = 0; i < c->n_in; i++)
        if (!readable(c->in[i]->dtype) || c->in[i]->dtype == CS_DT_BOOL || c->in[i]->dtype != c->in[0]->dtype)
            return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "input %d has type %s (all inputs one numeric type)", i,
                              cs_dtype_name(c->in[i]->dtype));
    if ((st = broadcast_infer(c, 0, c->n_in, c->in[0]->dtype, err)))
        return st;
    c->ad_scratch_bytes = cs_dtype_is_float(c->in[0]->dtype) ? cs_tensor_bytes(c->out[0]) : 0;
    return CS_OK;
}

/* Output element i (its inputs' offsets in w) and which inputs attain it:
 * bit k of the result.  A NaN input makes the output NaN and is attained
 * by nothing. */
static unsigned extremum_at(const cs_op_call *c, bool max, const bwalk *w, int *best)
{
    int b = 0;
    long double bv = read_exact(c->in[0], w->off[0]);
    for (int k = 1; k < c->n_in; k++) {
        long double v = read_exact(c->in[k], w->off[k]);
        if (isnan(bv))
            break;
        if (isnan(v) || (max ? v > bv : v < bv))
            b = k, bv = v;
    }
    *best = b;
    if (isnan(bv))
        return 0;
    unsigned tied = 0;
    for (int k = 0; k < c->n_in; k++)
        if (read_exact(c->in[k], w->off[k]) == bv)
            tied |= 1u << k;
    return tied;
}

static cs_status extremum_forward(cs_op_call *c, bool max)
{
    size_t es = cs_dtype_size(c->out[0]->dtype);
    char *y = c->out[0]->data;
    int64_t n = cs_tensor_numel(c->out[0]);
    bwalk w;
    bwalk_init(&w, (const cs_tensor *const *)c->in, c->n_in, c->out[0]);
    for (int64_t i = 0; i < n; i++, bwalk_next(&w)) {
        int b;
        (void)extremum_at(c, max, &w, &b);
        memcpy(y + (size_t)i * es, (const char *)c->in[b]->data + (size_t)w.off[b] * es, es);
    }
    return CS_OK;
}

static double tie_share(unsigned tied, int k)
{
    return tied >> k & 1 ? 1.0 / __builtin_popcount(tied) : 0.0;
}

static cs_status extremum_vjp(cs_op_call *c, const cs_op_ad *a, bool max, cs_err *err)
{
    const cs_tensor *g = a->gout[0];
    if (!g)
        return CS_OK;
    cs_tensor share = *g;
    share.data = c->scratch;
    share.owns_data = false;
    bool dbl = g->dtype == CS_DT_DOUBLE;
    int64_t n = cs_tensor_numel(g);
    for (int k = 0; k < c->n_in; k++) {
        if (!a->gin[k])
            continue;
        bwalk w;
        bwalk_init(&w, (const cs_tensor *const *)c->in, c->n_in, g);
        for (int64_t i = 0; i < n; i++, bwalk_next(&w)) {
            int b;
            double s = tie_share(extremum_at(c, max, &w, &b), k);
            if (dbl)
                ((double *)share.data)[i] = s == 0 ? 0 : s * ((const double *)g->data)[i];
            else
                ((float *)share.data)[i] = s == 0 ? 0 : (float)(s * ((const float *)g->data)[i]);
        }
        cs_status st = cs_broadcast_reduce_add(a->gin[k], &share, 1.0, err);
        if (st)
            return st;
    }
    return CS_OK;
}

static cs_status extremum_jvp(cs_op_call *c, const cs_op_ad *a, bool max, cs_err *err)
{
    cs_tensor *ty = a->tout[0];
    if (!ty)
        return CS_OK;
    bool dbl = ty->dtype == CS_DT_DOUBLE;
    int64_t n = cs_tensor_numel(ty);
    bwalk w;
    bwalk_init(&w, (const cs_tensor *const *)c->in, c->n_in, ty);
    for (int64_t i = 0; i < n; i++, bwalk_next(&w)) {
        int b;
        unsigned tied = extremum_at(c, max, &w, &b);
        double v = 0;
        for (int k = 0; k < c->n_in; k++) {
            const cs_tensor *t = a->tin[k];
            if (t && (tied >> k & 1))
                v += tie_share(tied, k) * (dbl ? ((const double *)t->data)[w.off[k]]
                                               : (double)((const float *)t->data)[w.off[k]]);
        }
        if (dbl)
            ((double *)ty->data)[i] = v;
        else
            ((float *)ty->data)[i] = (float)v;
    }
    return CS_OK;
}

#define EXTREMUM_OP(NAME, MAX)                                                                        \
    static cs_status NAME##_forward(cs_op_call *c, cs_err *err)                                      \
    {                                                                                                 \
        (void)err;                                                                                    \
        return extremum_forward(c, MAX);                                                              \
    }                                                                                                 \
    static cs_status NAME##_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)                       \
    {                                                                                                 \
        return extremum_vjp(c, a, MAX, err);                                                          \
    }                                                                                                 \
    static cs_status NAME##_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)                       \
    {                                                                                                 \
        return extremum_jvp(c, a, MAX, err);                                                          \
    }                                                                                                 \
    const cs_op_def cs_op_##NAME = {.name = #NAME, .min_opset = 8, .flags = CS_OP_LINEAR,            \
                                    .infer = extremum_infer, .forward = NAME##_forward,               \
                                    .vjp = NAME##_vjp, .jvp = NAME##_jvp};

/* Opset 8 added broadcasting (earlier versions need equal shapes, a special
 * case of it, but also accept the legacy consumed_inputs: not read). */
EXTREMUM_OP(Max, true)
EXTREMUM_OP(Min, false)

/* ---- PRelu: y = x > 0 ? x : s x, the slope s unidirectionally broadcast
 * to x.  Negative branch at x = 0 (PyTorch's prelu backward: x > 0 passes
 * the gradient, otherwise s does; the slope's gradient is x g there):
 *   vjp  gx += (x > 0 ? 1 : s) g         gs += sum-to-s([x <= 0] x g)
 *   jvp  ty = x > 0 ? tx : s tx + ts x
 *   rop  gx += [x <= 0] ts g             gs += sum-to-s([x <= 0] tx g)
 * (bilinear on the negative side: the only second-order terms are the
 * cross terms between x and s). ---- */

static cs_status prelu_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = need_inputs(c, 2, 2, err);
    if (st || (st = cs_op_need_float(c, 0, err)) || (st = cs_op_same_dtype(c, 0, 1, err)))
        return st;
    if ((st = broadcast_infer(c, 0, 2, c->in[0]->dtype, err)))
        return st;
    if (!cs_tensor_same_shape(c->out[0], c->in[0]))
        return cs_op_fail(c, err, CS_ERR_SHAPE, "slope does not broadcast to the input's shape");
    c->ad_scratch_bytes = cs_tensor_bytes(c->out[0]);
    return CS_OK;
}

static double fval(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_DOUBLE ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

static void fset(cs_tensor *t, int64_t i, double v, bool add)
{
    if (t->dtype == CS_DT_DOUBLE)
        ((double *)t->data)[i] = add ? ((double *)t->data)[i] + v : v;
    else
        ((float *)t->data)[i] = (float)(add ? ((float *)t->data)[i] + v : v);
}

typedef enum prelu_rule { PR_FORWARD, PR_JVP, PR_VJP_X, PR_VJP_S, PR_ROP_X, PR_ROP_S } prelu_rule;

/* One walk over the output for one rule; the slope rules write their
 * per-element terms into `full` (the output's shape) for the reduction. */
static void prelu_walk(cs_op_call *c, const cs_op_ad *a, prelu_rule r, cs_tensor *full)
{
    const cs_tensor *x = c->in[0], *s = c->in[1];
    const cs_tensor *in[2] = {x, s};
    int64_t n = cs_tensor_numel(x);
    bwalk w;
    bwalk_init(&w, in, 2, x);
    for (int64_t i = 0; i < n; i++, bwalk_next(&w)) {
        double xv = fval(x, i), sv = fval(s, w.off[1]);
        bool pos = xv > 0;
        switch (r) {
        case PR_FORWARD: fset(c->out[0], i, pos ? xv : sv * xv, false); break;
        case PR_JVP: {
            double tx = a->tin[0] ? fval(a->tin[0], i) : 0, ts = a->tin[1] ? fval(a->tin[1], w.off[1]) : 0;
            fset(a->tout[0], i, pos ? tx : sv * tx + ts * xv, false);
            break;
        }
        case PR_VJP_X: fset(a->gin[0], i, (pos ? 1 : sv) * fval(a->gout[0], i), true); break;
        case PR_VJP_S: fset(full, i, pos ? 0 : xv * fval(a->gout[0], i), false); break;
        case PR_ROP_X:
            fset(a->gin[0], i, pos ? 0 : fval(a->tin[1], w.off[1]) * fval(a->gout[0], i), true);
            break;
        case PR_ROP_S: fset(full, i, pos ? 0 : fval(a->tin[0], i) * fval(a->gout[0], i), false); break;
        }
    }
}

static cs_status prelu_forward(cs_op_call *c, cs_err *err)
{
    (void)err;
    prelu_walk(c, NULL, PR_FORWARD, NULL);
    return CS_OK;
}

/* The slope's share: the terms in the output's shape, summed to s's. */
static cs_status prelu_slope(cs_op_call *c, const cs_op_ad *a, prelu_rule r, cs_err *err)
{
    cs_tensor full = *c->in[0];
    full.data = c->scratch;
    full.owns_data = false;
    prelu_walk(c, a, r, &full);
    return cs_broadcast_reduce_add(a->gin[1], &full, 1.0, err);
}

static cs_status prelu_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (!a->gout[0])
        return CS_OK;
    if (a->gin[0])
        prelu_walk(c, a, PR_VJP_X, NULL);
    return a->gin[1] ? prelu_slope(c, a, PR_VJP_S, err) : CS_OK;
}

static cs_status prelu_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    (void)err;
    if (a->tout[0])
        prelu_walk(c, a, PR_JVP, NULL);
    return CS_OK;
}

static cs_status prelu_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    if (!a->gout[0])
        return CS_OK;
    if (a->gin[0] && a->tin[1])
        prelu_walk(c, a, PR_ROP_X, NULL);
    return a->gin[1] && a->tin[0] ? prelu_slope(c, a, PR_ROP_S, err) : CS_OK;
}

/* Opset 9 made the slope unidirectionally broadcastable (7 had numpy
 * broadcasting of the same shapes in practice). */
const cs_op_def cs_op_PRelu = {.name = "PRelu", .min_opset = 7, .infer = prelu_infer, .forward = prelu_forward,
                               .vjp = prelu_vjp, .jvp = prelu_jvp, .rop = prelu_rop};
