/* BatchNormalization (inference).
 *
 * Per channel c (axis 1), with the stored running statistics (doc/design.md §2.9:
 * inference semantics):
 *     Y = scale[c] * (X - mean[c]) / sqrt(var[c] + epsilon) + B[c]
 * computed as Y = a[c] X + b[c], a = scale / sqrt(var + eps), b = B - mean a,
 * with a and b in double.  Training mode (batch statistics, updated running
 * statistics) is not supported and is refused with CS_ERR_UNSUPPORTED: in
 * opset 6 when is_test = 0, in opsets 7 to 13 when the optional statistics
 * outputs are requested, from opset 14 when training_mode = 1.  Opsets 7
 * and 8's spatial = 0 (statistics per element) is refused too.  Parameters may
 * have any float type (opset 15 lets them differ from X).
 *
 * vjp, jvp and rop rules (not CS_OP_LINEAR: Y multiplies scale by the
 * normalised X); the formulas stand above the rules. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"
#include "tensor/accum.h"

/* ---- BatchNormalization ---- */

static cs_status bn_infer(cs_op_call *c, cs_err *err)
{
    const cs_node *node = c->node;
    if (c->n_in != 5)
        return cs_op_fail(c, err, CS_ERR_FORMAT,
                          "expects 5 inputs (X, scale, B, mean, var), got %d", c->n_in);
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output Y is missing");
    for (int i = 0; i < 5; i++) {
        cs_status st = cs_op_need_float(c, i, err);
        if (st)
            return st;
    }
    bool extra_outputs = false;
    for (int k = 1; k < c->n_out; k++)
        extra_outputs = extra_outputs || c->out[k] != NULL;
    if (node->opset < 7 && cs_node_attr_int(node, "is_test", 0) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "is_test = 0 asks for training mode (batch statistics); curvscope "
                          "runs BatchNormalization with its running statistics only");
    if (cs_node_attr_int(node, "training_mode", 0) != 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "training_mode = 1 (batch statistics) is not supported; curvscope "
                          "runs BatchNormalization with its running statistics only");
    if (extra_outputs)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "the running / saved statistics outputs belong to training mode, "
                          "which is not supported");
    if (cs_node_attr_int(node, "spatial", 1) == 0)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "spatial = 0 (statistics per element) is not supported");

    const cs_tensor *x = c->in[0];
    char bx[96], bp[96];
    if (x->ndim < 2)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "X has shape %s; [N, C, ...] expected",
                          cs_shape_str(x, bx, sizeof bx));
    static const char *const names[] = {"X", "scale", "B", "input_mean", "input_var"};
    for (int i = 1; i < 5; i++) {
        const cs_tensor *p = c->in[i];
        if (p->ndim != 1 || p->dims[0] != x->dims[1])
            return cs_op_fail(c, err, CS_ERR_SHAPE, "%s has shape %s; X of shape %s needs [%lld]",
                              names[i], cs_shape_str(p, bp, sizeof bp),
                              cs_shape_str(x, bx, sizeof bx), (long long)x->dims[1]);
    }
    cs_tensor_set_shape(c->out[0], x->dtype, x->ndim, x->dims);
    c->scratch_bytes = 2 * (size_t)x->dims[1] * sizeof(double);
    return CS_OK;
}

/* x, y [N, C, S] (S = spatial size); a, b [C]. */
#define DEFINE_BN(T, SUF)                                                                       \
    static void bn_##SUF(int64_t n, int64_t n_chan, int64_t s, const double *a,                 \
                         const double *b, const T *x, T *y)                                     \
    {                                                                                           \
        for (int64_t i = 0; i < n; i++)                                                         \
            for (int64_t ch = 0; ch < n_chan; ch++) {                                           \
                const T *xp = x + (i * n_chan + ch) * s;                                        \
                T *yp = y + (i * n_chan + ch) * s;                                              \
                const double ac = a[ch], bc = b[ch];                                            \
                for (int64_t j = 0; j < s; j++)                                                 \
                    yp[j] = (T)(ac * xp[j] + bc);                                               \
            }                                                                                   \
    }

DEFINE_BN(float, f32)
DEFINE_BN(double, f64)

static cs_status bn_forward(cs_op_call *c, cs_err *err)
{
    (void)err; /* validated by bn_infer; nothing can fail here */
    const cs_tensor *x = c->in[0], *scale = c->in[1], *bias = c->in[2], *mean = c->in[3],
                    *var = c->in[4];
    double eps = cs_node_attr_float(c->node, "epsilon", 1e-5f);
    int64_t n_chan = x->dims[1];
    double *a = c->scratch;   /* [C] */
    double *b = a + n_chan;   /* [C] */
    for (int64_t ch = 0; ch < n_chan; ch++) {
        a[ch] = cs_tensor_get_f64(scale, ch) / sqrt(cs_tensor_get_f64(var, ch) + eps);
        b[ch] = cs_tensor_get_f64(bias, ch) - cs_tensor_get_f64(mean, ch) * a[ch];
    }
    int64_t n = x->dims[0], numel = cs_tensor_numel(x);
    int64_t s = n * n_chan > 0 ? numel / (n * n_chan) : 0;
    /* Samples are independent: split them over threads. */
#pragma omp parallel if (numel >= CS_OMP_MIN_ELEMS)
    {
        int64_t lo, hi;
        cs_omp_slice(n, &lo, &hi);
        size_t off = (size_t)(lo * n_chan * s);
        if (x->dtype == CS_DT_FLOAT)
            bn_f32(hi - lo, n_chan, s, a, b, (const float *)x->data + off, (float *)c->out[0]->data + off);
        else
            bn_f64(hi - lo, n_chan, s, a, b, (const double *)x->data + off, (double *)c->out[0]->data + off);
    }
    return CS_OK;
}

/* Derivative rules of inference-mode BatchNormalization.  Per channel, with
 * u = X - mean, r = (var + eps)^(-1/2), a = scale r,
 *     Y = scale r u + B,   phi = <G, Y> for the incoming gradient G.
 * First derivatives (sums over samples and spatial positions of the
 * channel; Sg = sum G, Sgu = sum G u):
 *     dphi/dX = a G,  dphi/dscale = r Sgu,  dphi/dB = Sg,
 *     dphi/dmean = -a Sg,  dphi/dvar = scale r' Sgu,   r' = dr/dvar = -r^3/2.
 * The statistics are inputs like the others here: their gradients cost two
 * more scalars per channel, so they are computed rather than refused (the
 * engine passes NULL for them; then they cost nothing).
 * Second derivatives (the R-op; r'' = 3 r^5 / 4; X X, scale scale,
 * mean mean and everything with B vanish):
 *     d2/dX dscale = r G,  d2/dX dvar = scale r' G,
 *     d2/dscale dmean = -r Sg,  d2/dscale dvar = r' Sgu,
 *     d2/dmean dvar = -scale r' Sg,  d2/dvar dvar = scale r'' Sgu. */

/* Per-channel scalars of the rules. */
typedef struct bn_chan {
    double r, a, mu, scale;
} bn_chan;

static bn_chan bn_chan_at(const cs_op_call *c, int64_t ch, double eps)
{
    bn_chan k;
    k.r = 1.0 / sqrt(cs_tensor_get_f64(c->in[4], ch) + eps);
    k.scale = cs_tensor_get_f64(c->in[1], ch);
    k.a = k.scale * k.r;
    k.mu = cs_tensor_get_f64(c->in[3], ch);
    return k;
}

static double bn_get(const cs_tensor *t, int64_t ch)
{
    return t ? cs_tensor_get_f64(t, ch) : 0.0;
}

static void bn_add(cs_tensor *t, int64_t ch, double v)
{
    if (t)
        cs_tensor_set_f64(t, ch, cs_tensor_get_f64(t, ch) + v);
}

/* One channel ch of g, x, tx, gx [N, C, S]: when sums, sums[0] += sum g,
 * sums[1] += sum g x, sums[2] += sum g tx (when tx); gx += k g (when gx). */
#define DEFINE_BN_CHANNEL(T, SUF)                                                               \
    static void bn_channel_##SUF(int64_t n, int64_t n_chan, int64_t s, int64_t ch,              \
                                 const T *g, const T *x, const T *tx, T *gx, double k,          \
                                 double *sums)                                                  \
    {                                                                                           \
        double sg = 0, sgx = 0, sgt = 0;                                                        \
        for (int64_t i = 0; i < n; i++) {                                                       \
            int64_t off = (i * n_chan + ch) * s;                                                \
            const T *gp = g + off, *xp = x + off;                                               \
            if (sums) {                                                                         \
                sg += cs_sum_##SUF(gp, s);                                                      \
                sgx += cs_dot_##SUF(gp, xp, s);                                                 \
            }                                                                                   \
            if (sums && tx)                                                                     \
                sgt += cs_dot_##SUF(gp, tx + off, s);                                           \
            if (gx)                                                                             \
                for (int64_t j = 0; j < s; j++)                                                 \
                    gx[off + j] += (T)(k * gp[j]);                                              \
        }                                                                                       \
        if (sums) {                                                                             \
            sums[0] += sg;                                                                      \
            sums[1] += sgx;                                                                     \
            sums[2] += sgt;                                                                     \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    /* ty = a tx + cu (x - mu) + c0 on channel ch (tx may be NULL: zero). */                    \
    static void bn_tangent_##SUF(int64_t n, int64_t n_chan, int64_t s, int64_t ch, double a,    \
                                 double cu, double mu, double c0, const T *x, const T *tx,      \
                                 T *ty)                                                         \
    {                                                                                           \
        double c1 = c0 - cu * mu;                                                               \
        for (int64_t i = 0; i < n; i++) {                                                       \
            int64_t off = (i * n_chan + ch) * s;                                                \
            const T *xp = x + off;                                                              \
            T *yp = ty + off;                                                                   \
            if (tx)                                                                             \
                for (int64_t j = 0; j < s; j++)                                                 \
                    yp[j] = (T)(a * tx[off + j] + cu * xp[j] + c1);                             \
            else                                                                                \
                for (int64_t j = 0; j < s; j++)                                                 \
                    yp[j] = (T)(cu * xp[j] + c1);                                               \
        }                                                                                       \
    }

DEFINE_BN_CHANNEL(float, f32)
DEFINE_BN_CHANNEL(double, f64)

/* Shape of the data loops: X [N, C, S]. */
static void bn_dims(const cs_tensor *x, int64_t *n, int64_t *n_chan, int64_t *s)
{
    *n = x->dims[0];
    *n_chan = x->dims[1];
    int64_t numel = cs_tensor_numel(x);
    *s = *n * *n_chan > 0 ? numel / (*n * *n_chan) : 0;
}

static void bn_channel(const cs_tensor *x, int64_t ch, const cs_tensor *g, const cs_tensor *tx,
                       cs_tensor *gx, double k, double *sums)
{
    int64_t n, n_chan, s;
    bn_dims(x, &n, &n_chan, &s);
    if (x->dtype == CS_DT_FLOAT)
        bn_channel_f32(n, n_chan, s, ch, g->data, x->data, tx ? tx->data : NULL,
                       gx ? gx->data : NULL, k, sums);
    else
        bn_channel_f64(n, n_chan, s, ch, g->data, x->data, tx ? tx->data : NULL,
                       gx ? gx->data : NULL, k, sums);
}

static cs_status bn_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_status st = cs_op_check_ad(c, a->gin, a->gout, err);
    if (st || !a->gout[0])
        return st;
    const cs_tensor *x = c->in[0], *g = a->gout[0];
    double eps = cs_node_attr_float(c->node, "epsilon", 1e-5f);
    bool need_sums = a->gin[1] || a->gin[2] || a->gin[3] || a->gin[4];
    /* Channels touch disjoint slices: split over threads, same result. */
#pragma omp parallel for schedule(static) if (cs_tensor_numel(x) >= CS_OMP_MIN_ELEMS)
    for (int64_t ch = 0; ch < x->dims[1]; ch++) {
        bn_chan k = bn_chan_at(c, ch, eps);
        double sums[3] = {0, 0, 0}; /* sum G, sum G X */
        bn_channel(x, ch, g, NULL, a->gin[0], k.a, need_sums ? sums : NULL);
        double sgu = sums[1] - k.mu * sums[0]; /* sum G (X - mean) */
        bn_add(a->gin[1], ch, k.r * sgu);
        bn_add(a->gin[2], ch, sums[0]);
        bn_add(a->gin[3], ch, -k.a * sums[0]);
        bn_add(a->gin[4], ch, -0.5 * k.scale * k.r * k.r * k.r * sgu);
    }
    return CS_OK;
}

/* tY = a tX + (r tscale + scale r' tvar) u + tB - a tmean, the first-order
 * expansion of Y in every input. */
static cs_status bn_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_status st = cs_op_check_ad(c, a->tin, a->tout, err);
    if (st || !a->tout[0])
        return st;
    const cs_tensor *x = c->in[0], *tx = a->tin[0];
    cs_tensor *ty = a->tout[0];
    double eps = cs_node_attr_float(c->node, "epsilon", 1e-5f);
    int64_t n, n_chan, s;
    bn_dims(x, &n, &n_chan, &s);
#pragma omp parallel for schedule(static) if (cs_tensor_numel(x) >= CS_OMP_MIN_ELEMS)
    for (int64_t ch = 0; ch < n_chan; ch++) {
        bn_chan k = bn_chan_at(c, ch, eps);
        double cu = k.r * bn_get(a->tin[1], ch) -
                    0.5 * k.scale * k.r * k.r * k.r * bn_get(a->tin[4], ch);
        double c0 = bn_get(a->tin[2], ch) - k.a * bn_get(a->tin[3], ch);
        if (x->dtype == CS_DT_FLOAT)
            bn_tangent_f32(n, n_chan, s, ch, k.a, cu, k.mu, c0, x->data, tx ? tx->data : NULL,
                           ty->data);
        else
            bn_tangent_f64(n, n_chan, s, ch, k.a, cu, k.mu, c0, x->data, tx ? tx->data : NULL,
                           ty->data);
    }
    return CS_OK;
}

/* The second-order term, from the second derivatives listed above. */
static cs_status bn_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_status st = cs_op_check_ad(c, a->gin, a->gout, err);
    if (!st)
        st = cs_op_check_ad(c, a->tin, NULL, err);
    if (st || !a->gout[0])
        return st;
    const cs_tensor *x = c->in[0], *g = a->gout[0], *tx = a->tin[0];
    double eps = cs_node_attr_float(c->node, "epsilon", 1e-5f);
    bool need_sums = a->gin[1] || a->gin[3] || a->gin[4];
    for (int64_t ch = 0; ch < x->dims[1]; ch++) {
        bn_chan k = bn_chan_at(c, ch, eps);
        double t_scale = bn_get(a->tin[1], ch), t_mean = bn_get(a->tin[3], ch);
        double t_var = bn_get(a->tin[4], ch);
        double r1 = -0.5 * k.r * k.r * k.r;           /* r' */
        double r2 = 0.75 * k.r * k.r * k.r * k.r * k.r; /* r'' */
        /* gX += (r tscale + scale r' tvar) G */
        double cu = k.r * t_scale + k.scale * r1 * t_var;
        cs_tensor *gx = cu != 0 ? a->gin[0] : NULL;
        if (!gx && !need_sums)
            continue;
        double sums[3] = {0, 0, 0}; /* sum G, sum G X, sum G tX */
        bn_channel(x, ch, g, tx, gx, cu, need_sums ? sums : NULL);
        double sg = sums[0], sgu = sums[1] - k.mu * sums[0], sgt = sums[2];
        bn_add(a->gin[1], ch, k.r * sgt - k.r * sg * t_mean + r1 * sgu * t_var);
        bn_add(a->gin[3], ch, -k.r * sg * t_scale - k.scale * r1 * sg * t_var);
        bn_add(a->gin[4], ch, k.scale * r1 * sgt + r1 * sgu * t_scale -
                                  k.scale * r1 * sg * t_mean + k.scale * r2 * sgu * t_var);
    }
    return CS_OK;
}

const cs_op_def cs_op_BatchNormalization = {
    .name = "BatchNormalization",
    .min_opset = 6,
    .infer = bn_infer,
    .forward = bn_forward,
    .vjp = bn_vjp,
    .jvp = bn_jvp,
    .rop = bn_rop,
};
