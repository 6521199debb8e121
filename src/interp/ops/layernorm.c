/* LayerNormalization (opset 17).
 *
 * With rows = X.shape[:axis] and the normalised shape X.shape[axis:] of D
 * elements,
 *     mu = mean(x_row), sigma2 = mean((x_row - mu)^2) (population variance),
 *     Y = (x - mu) / sqrt(sigma2 + epsilon) * Scale + B,
 * Scale and B broadcast (numpy rules, trailing-aligned) to the normalised
 * shape.  Optional outputs Mean = mu and InvStdDev = 1/sqrt(sigma2 + eps) have
 * shape X.shape[:axis] + [1] * (rank - axis) and the type named by stash_type
 * (float by default, also for a double X, as the ONNX spec's shape inference
 * says).  The statistics are computed in double whatever stash_type says,
 * which is at least as accurate as the float computation it asks for.
 *
 * vjp, jvp and rop rules (not CS_OP_LINEAR: Y multiplies Scale by the
 * normalised X and divides by a statistic of X); the formulas stand above
 * the rules. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"
#include "tensor/accum.h"

/* ---- LayerNormalization ---- */

/* Split of X at the normalised axis. */
typedef struct ln_shape {
    int axis;
    int64_t rows;     /* prod(X.shape[:axis]) */
    int64_t d;        /* prod(X.shape[axis:]) */
    cs_dtype stash;   /* dtype of Mean and InvStdDev */
} ln_shape;

/* Fails unless p broadcasts (trailing-aligned, dims 1 or equal) to
 * X.shape[axis:]. */
static cs_status ln_check_param(const cs_op_call *c, int i, const char *name, int axis,
                                cs_err *err)
{
    const cs_tensor *x = c->in[0], *p = c->in[i];
    cs_status st = cs_op_need_float(c, i, err);
    if (!st)
        st = cs_op_same_dtype(c, 0, i, err);
    if (st)
        return st;
    int nr = x->ndim - axis;
    bool fits = p->ndim <= nr;
    for (int k = 0; fits && k < p->ndim; k++) {
        int64_t pd = p->dims[p->ndim - 1 - k], xd = x->dims[x->ndim - 1 - k];
        fits = pd == 1 || pd == xd;
    }
    if (!fits) {
        char bx[96], bp[96];
        return cs_op_fail(c, err, CS_ERR_SHAPE,
                          "%s of shape %s does not broadcast to X.shape[%d:] of X %s", name,
                          cs_shape_str(p, bp, sizeof bp), axis, cs_shape_str(x, bx, sizeof bx));
    }
    return CS_OK;
}

static cs_status ln_shape_of(const cs_op_call *c, ln_shape *s, cs_err *err)
{
    if (c->n_in < 2 || c->n_in > 3)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 2 or 3 inputs, got %d", c->n_in);
    if (c->n_out < 1 || c->n_out > 3 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 to 3 outputs with Y present");
    cs_status st = cs_op_need_float(c, 0, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0];
    if (x->ndim < 1)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "X is a scalar");
    st = cs_op_axis(c, cs_node_attr_int(c->node, "axis", -1), x->ndim, &s->axis, err);
    if (st)
        return st;
    st = ln_check_param(c, 1, "Scale", s->axis, err);
    if (!st && c->n_in > 2 && c->in[2])
        st = ln_check_param(c, 2, "B", s->axis, err);
    if (st)
        return st;
    int64_t stash = cs_node_attr_int(c->node, "stash_type", CS_DT_FLOAT);
    if (stash != CS_DT_FLOAT && stash != CS_DT_DOUBLE)
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "stash_type %s (float or double expected)",
                          cs_dtype_name((int)stash));
    s->stash = (cs_dtype)stash;
    s->rows = 1;
    s->d = 1;
    for (int k = 0; k < x->ndim; k++) {
        if (k < s->axis)
            s->rows *= x->dims[k];
        else
            s->d *= x->dims[k];
    }
    return CS_OK;
}

static cs_status ln_infer(cs_op_call *c, cs_err *err)
{
    ln_shape s;
    cs_status st = ln_shape_of(c, &s, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0];
    cs_tensor_set_shape(c->out[0], x->dtype, x->ndim, x->dims);
    int64_t dims[CS_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++)
        dims[k] = k < s.axis ? x->dims[k] : 1;
    for (int k = 1; k < c->n_out; k++)
        if (c->out[k])
            cs_tensor_set_shape(c->out[k], s.stash, x->ndim, dims);
    /* Scale and B expanded to the normalised shape [2, D], then the
     * statistics [2, rows], all double. */
    c->scratch_bytes = 2 * (size_t)(s.d + s.rows) * sizeof(double);
    /* The rules: three [D] double vectors (expanded Scale and tangents, or
     * the accumulated parameter gradients); row statistics are recomputed. */
    c->ad_scratch_bytes = 3 * (size_t)s.d * sizeof(double);
    return CS_OK;
}

/* Broadcasting between a parameter of p's shape and the normalised shape
 * X.shape[axis:] (D elements), walking the normalised index like an
 * odometer.  Expand (src = p): buf[j] = p at flat index j.  Fold (dst of
 * p's shape): dst += the sum of buf over the broadcast axes, the adjoint of
 * expand, which parameter gradients need. */
static void ln_bcast(const cs_tensor *x, int axis, const cs_tensor *p, const cs_tensor *src,
                     cs_tensor *dst, double *buf, int64_t d)
{
    if (cs_tensor_numel(p) == d) { /* same shape up to leading ones */
        for (int64_t j = 0; j < d; j++)
            if (src)
                buf[j] = cs_tensor_get_f64(src, j);
            else
                cs_tensor_set_f64(dst, j, cs_tensor_get_f64(dst, j) + buf[j]);
        return;
    }
    int nr = x->ndim - axis;
    int64_t pstride[CS_MAX_DIMS], idx[CS_MAX_DIMS];
    /* Stride of p along each normalised axis; 0 where p broadcasts. */
    int64_t acc = 1;
    for (int k = nr - 1; k >= 0; k--) {
        int pk = p->ndim - (nr - k); /* p's axis aligned with normalised axis k */
        int64_t extent = pk >= 0 ? p->dims[pk] : 1;
        pstride[k] = extent == 1 ? 0 : acc;
        acc *= extent;
        idx[k] = 0;
    }
    int64_t off = 0;
    for (int64_t j = 0; j < d; j++) {
        if (src)
            buf[j] = cs_tensor_get_f64(src, off);
        else
            cs_tensor_set_f64(dst, off, cs_tensor_get_f64(dst, off) + buf[j]);
        for (int k = nr - 1; k >= 0; k--) { /* advance the odometer */
            off += pstride[k];
            if (++idx[k] < x->dims[axis + k])
                break;
            off -= pstride[k] * idx[k];
            idx[k] = 0;
        }
    }
}

/* dst[j] = p broadcast to X.shape[axis:] at flat index j, or fill when p is
 * NULL. */
static void ln_expand(const cs_tensor *x, int axis, const cs_tensor *p, double fill, double *dst,
                      int64_t d)
{
    if (!p) {
        for (int64_t j = 0; j < d; j++)
            dst[j] = fill;
        return;
    }
    ln_bcast(x, axis, p, p, NULL, dst, d);
}

/* Mean and 1/sqrt(population variance + eps) of one row of d elements,
 * two-pass; the forward and the rules share it, so the rules differentiate
 * exactly what the forward computed. */
#define DEFINE_LN_STATS(T, SUF)                                                                 \
    static void ln_stats_##SUF(const T *xr, int64_t d, double eps, double *mu_out,              \
                               double *inv_out)                                                 \
    {                                                                                           \
        double sum = 0, sq = 0;                                                                 \
        for (int64_t j = 0; j < d; j++)                                                         \
            sum += xr[j];                                                                       \
        double mu = sum / (double)d;                                                            \
        for (int64_t j = 0; j < d; j++) {                                                       \
            double dev = xr[j] - mu;                                                            \
            sq += dev * dev;                                                                    \
        }                                                                                       \
        *mu_out = mu;                                                                           \
        *inv_out = 1.0 / sqrt(sq / (double)d + eps);                                            \
    }

DEFINE_LN_STATS(float, f32)
DEFINE_LN_STATS(double, f64)

/* x, y [rows, d]; scale, bias [d]; mean, inv_std [rows]. */
#define DEFINE_LN(T, SUF)                                                                       \
    static void ln_##SUF(int64_t rows, int64_t d, double eps, const T *x, const double *scale,  \
                         const double *bias, T *y, double *mean, double *inv_std)               \
    {                                                                                           \
        for (int64_t r = 0; r < rows; r++) {                                                    \
            const T *xr = x + r * d;                                                            \
            T *yr = y + r * d;                                                                  \
            double mu, inv;                                                                     \
            ln_stats_##SUF(xr, d, eps, &mu, &inv);                                              \
            for (int64_t j = 0; j < d; j++)                                                     \
                yr[j] = (T)((xr[j] - mu) * inv * scale[j] + bias[j]);                           \
            mean[r] = mu;                                                                       \
            inv_std[r] = inv;                                                                   \
        }                                                                                       \
    }

DEFINE_LN(float, f32)
DEFINE_LN(double, f64)

static cs_status ln_forward(cs_op_call *c, cs_err *err)
{
    ln_shape s;
    cs_status st = ln_shape_of(c, &s, err);
    if (st)
        return st;
    if (s.rows == 0 || s.d == 0)
        return CS_OK;
    const cs_tensor *x = c->in[0];
    const cs_tensor *bias = c->n_in > 2 ? c->in[2] : NULL;
    double *scale_d = c->scratch; /* [D] */
    double *bias_d = scale_d + s.d; /* [D] */
    ln_expand(x, s.axis, c->in[1], 1.0, scale_d, s.d);
    ln_expand(x, s.axis, bias, 0.0, bias_d, s.d);
    double *mean = bias_d + s.d;    /* [rows] */
    double *inv_std = mean + s.rows; /* [rows] */
    double eps = cs_node_attr_float(c->node, "epsilon", 1e-5f);
    if (x->dtype == CS_DT_FLOAT)
        ln_f32(s.rows, s.d, eps, x->data, scale_d, bias_d, c->out[0]->data, mean, inv_std);
    else
        ln_f64(s.rows, s.d, eps, x->data, scale_d, bias_d, c->out[0]->data, mean, inv_std);
    if (c->n_out > 1 && c->out[1])
        cs_convert(c->out[1]->data, c->out[1]->dtype, mean, CS_DT_DOUBLE, s.rows);
    if (c->n_out > 2 && c->out[2])
        cs_convert(c->out[2]->data, c->out[2]->dtype, inv_std, CS_DT_DOUBLE, s.rows);
    return CS_OK;
}

/* Derivative rules of LayerNormalization.  Per row of D elements, with
 * xh = (x - mu) r the normalised row, r = InvStdDev, s and b the expanded
 * Scale and B, and the incoming gradients G (of Y), gm (of Mean), gr (of
 * InvStdDev; both supported: each costs one scalar per row):
 *   vjp  g = G s,  gx = r (g - mean(g) - xh mean(g xh)) + gm / D - gr r^2 xh / D,
 *        gs = sum over rows of G xh,  gb = sum over rows of G  (then folded
 *        over Scale / B's broadcast axes);
 *   jvp  txh = r (tx - mean(tx) - xh m1),  m1 = mean(xh tx),
 *        tY = s txh + xh ts + tb,  tMean = mean(tx),  tInvStdDev = -r^2 m1.
 * The R-op differentiates the vjp along (tx, ts) with G, gm, gr fixed
 * (Pearlmutter 1994); with h = G ts and the vjp's J^T(g) = r (g - mean(g)
 * - xh mean(g xh)):
 *   gx += J^T(h)                                          (Scale tangent)
 *       - r m1 J^T(g) - r (txh mean(g xh) + xh mean(g txh)) (dr = -r^2 m1, dxh = txh)
 *       - gr r^2 / D (txh - 2 r m1 xh)                     (InvStdDev's curvature)
 *   gs += sum over rows of G txh;  B and Mean enter linearly: no terms. */

typedef struct ln_ad {
    int64_t rows, d;
    double eps;
    const double *scale;      /* [D] expanded Scale */
    const double *t_scale;    /* [D] expanded tangent of Scale, or NULL */
    const double *t_bias;     /* [D] expanded tangent of B, or NULL */
    double *acc_scale;        /* [D] gradient of the expanded Scale, or NULL */
    double *acc_bias;         /* [D] gradient of the expanded B, or NULL */
    const cs_tensor *g_mean;  /* gradient of Mean [rows], or NULL */
    const cs_tensor *g_inv;   /* gradient of InvStdDev [rows], or NULL */
    cs_tensor *t_mean;        /* tangent of Mean, or NULL */
    cs_tensor *t_inv;         /* tangent of InvStdDev, or NULL */
} ln_ad;

/* x, g, gx, tx, ty [rows, D]; any of g, gx, tx, ty may be NULL. */
#define DEFINE_LN_AD(T, SUF)                                                                    \
    static void ln_vjp_##SUF(const ln_ad *p, const T *x, const T *g, T *gx)                     \
    {                                                                                           \
        const int64_t d = p->d;                                                                 \
        const double *sc = p->scale;                                                            \
        for (int64_t r = 0; r < p->rows; r++) {                                                 \
            const T *xr = x + r * d;                                                            \
            const T *gr = g ? g + r * d : NULL;                                                 \
            double gm = p->g_mean ? cs_tensor_get_f64(p->g_mean, r) : 0;                        \
            double gi = p->g_inv ? cs_tensor_get_f64(p->g_inv, r) : 0;                          \
            double mu, inv, sg = 0, sgx = 0;                                                    \
            ln_stats_##SUF(xr, d, p->eps, &mu, &inv);                                           \
            if (gr)                                                                             \
                for (int64_t j = 0; j < d; j++) {                                               \
                    double xh = (xr[j] - mu) * inv, gj = gr[j] * sc[j];                         \
                    sg += gj;                                                                   \
                    sgx += gj * xh;                                                             \
                    if (p->acc_scale)                                                           \
                        p->acc_scale[j] += gr[j] * xh;                                          \
                    if (p->acc_bias)                                                            \
                        p->acc_bias[j] += gr[j];                                                \
                }                                                                               \
            if (!gx)                                                                            \
                continue;                                                                       \
            T *gxr = gx + r * d;                                                                \
            /* gx = r g - cx xh + c0 */                                                         \
            double cx = inv * sgx / (double)d + gi * inv * inv / (double)d;                     \
            double c0 = gm / (double)d - inv * sg / (double)d;                                  \
            if (gr)                                                                             \
                for (int64_t j = 0; j < d; j++)                                                 \
                    gxr[j] += (T)(inv * gr[j] * sc[j] - cx * (xr[j] - mu) * inv + c0);          \
            else                                                                                \
                for (int64_t j = 0; j < d; j++)                                                 \
                    gxr[j] += (T)(-cx * (xr[j] - mu) * inv + c0);                               \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    static void ln_jvp_##SUF(const ln_ad *p, const T *x, const T *tx, T *ty)                    \
    {                                                                                           \
        const int64_t d = p->d;                                                                 \
        for (int64_t r = 0; r < p->rows; r++) {                                                 \
            const T *xr = x + r * d;                                                            \
            const T *txr = tx ? tx + r * d : NULL;                                              \
            double mu, inv, tmu = 0, m1 = 0;                                                    \
            ln_stats_##SUF(xr, d, p->eps, &mu, &inv);                                           \
            if (txr) {                                                                          \
                for (int64_t j = 0; j < d; j++) {                                               \
                    tmu += txr[j];                                                              \
                    m1 += (xr[j] - mu) * inv * txr[j];                                          \
                }                                                                               \
                tmu /= (double)d;                                                               \
                m1 /= (double)d;                                                                \
            }                                                                                   \
            if (ty) {                                                                           \
                T *tyr = ty + r * d;                                                            \
                for (int64_t j = 0; j < d; j++) {                                               \
                    double xh = (xr[j] - mu) * inv;                                             \
                    double v = txr ? p->scale[j] * inv * (txr[j] - tmu - xh * m1) : 0;          \
                    if (p->t_scale)                                                             \
                        v += xh * p->t_scale[j];                                                \
                    if (p->t_bias)                                                              \
                        v += p->t_bias[j];                                                      \
                    tyr[j] = (T)v;                                                              \
                }                                                                               \
            }                                                                                   \
            if (p->t_mean)                                                                      \
                cs_tensor_set_f64(p->t_mean, r, tmu);                                           \
            if (p->t_inv)                                                                       \
                cs_tensor_set_f64(p->t_inv, r, -inv * inv * m1);                                \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    static void ln_rop_##SUF(const ln_ad *p, const T *x, const T *g, const T *tx, T *gx)        \
    {                                                                                           \
        const int64_t d = p->d;                                                                 \
        const double *sc = p->scale, *ts = p->t_scale;                                          \
        const double dd = (double)d;                                                            \
        for (int64_t r = 0; r < p->rows; r++) {                                                 \
            const T *xr = x + r * d;                                                            \
            const T *gr = g ? g + r * d : NULL;                                                 \
            const T *txr = tx ? tx + r * d : NULL;                                              \
            double gi = p->g_inv ? cs_tensor_get_f64(p->g_inv, r) : 0;                          \
            double mu, inv;                                                                     \
            ln_stats_##SUF(xr, d, p->eps, &mu, &inv);                                           \
            /* row means: g = G s, h = G ts */                                                  \
            double sg = 0, sgx = 0, sgt = 0, sh = 0, shx = 0, tmu = 0, m1 = 0;                  \
            for (int64_t j = 0; j < d; j++) {                                                   \
                double xh = (xr[j] - mu) * inv;                                                 \
                double gj = gr ? gr[j] * sc[j] : 0, hj = gr && ts ? gr[j] * ts[j] : 0;          \
                double tj = txr ? txr[j] : 0;                                                   \
                sg += gj;                                                                       \
                sgx += gj * xh;                                                                 \
                sgt += gj * tj;                                                                 \
                sh += hj;                                                                       \
                shx += hj * xh;                                                                 \
                tmu += tj;                                                                      \
                m1 += xh * tj;                                                                  \
            }                                                                                   \
            sg /= dd, sgx /= dd, sgt /= dd, sh /= dd, shx /= dd, tmu /= dd, m1 /= dd;           \
            double sgth = inv * (sgt - tmu * sg - m1 * sgx); /* mean(g txh) */                  \
            T *gxr = gx ? gx + r * d : NULL;                                                    \
            for (int64_t j = 0; j < d; j++) {                                                   \
                double xh = (xr[j] - mu) * inv;                                                 \
                double gj = gr ? gr[j] * sc[j] : 0, hj = gr && ts ? gr[j] * ts[j] : 0;          \
                double txh = txr ? inv * (txr[j] - tmu - xh * m1) : 0;                          \
                if (gxr) {                                                                      \
                    double v = inv * (hj - sh - xh * shx);                                      \
                    v -= inv * m1 * inv * (gj - sg - xh * sgx);                                 \
                    v -= inv * (txh * sgx + xh * sgth);                                         \
                    v -= gi * inv * inv / dd * (txh - 2 * inv * m1 * xh);                       \
                    gxr[j] += (T)v;                                                             \
                }                                                                               \
                if (p->acc_scale && gr)                                                         \
                    p->acc_scale[j] += gr[j] * txh;                                             \
            }                                                                                   \
        }                                                                                       \
    }

DEFINE_LN_AD(float, f32)
DEFINE_LN_AD(double, f64)

/* Common set-up of the rules: shape, checks, expanded Scale in scratch[0:D]. */
static cs_status ln_ad_setup(cs_op_call *c, cs_tensor *const *in_side, cs_tensor *const *out_side,
                             ln_shape *s, ln_ad *p, cs_err *err)
{
    cs_status st = ln_shape_of(c, s, err);
    if (!st)
        st = cs_op_check_ad(c, in_side, out_side, err);
    if (st)
        return st;
    memset(p, 0, sizeof *p);
    p->rows = s->rows;
    p->d = s->d;
    p->eps = cs_node_attr_float(c->node, "epsilon", 1e-5f);
    double *buf = c->scratch; /* [3, D] */
    if (s->d > 0)
        ln_expand(c->in[0], s->axis, c->in[1], 1.0, buf, s->d);
    p->scale = buf;
    return CS_OK;
}

static cs_tensor *ln_at(cs_tensor *const *v, const cs_op_call *c, int i, bool input)
{
    return i < (input ? c->n_in : c->n_out) ? v[i] : NULL;
}

static cs_status ln_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    ln_shape s;
    ln_ad p;
    cs_status st = ln_ad_setup(c, a->gin, a->gout, &s, &p, err);
    if (st || s.rows == 0 || s.d == 0)
        return st;
    cs_tensor *g_scale = a->gin[1], *g_bias = ln_at(a->gin, c, 2, true);
    const cs_tensor *g = a->gout[0];
    p.g_mean = ln_at(a->gout, c, 1, false);
    p.g_inv = ln_at(a->gout, c, 2, false);
    if (!g && !p.g_mean && !p.g_inv)
        return CS_OK;
    double *buf = c->scratch;
    if (g_scale && g) {
        p.acc_scale = buf + s.d;
        memset(p.acc_scale, 0, (size_t)s.d * sizeof(double));
    }
    if (g_bias && g) {
        p.acc_bias = buf + 2 * s.d;
        memset(p.acc_bias, 0, (size_t)s.d * sizeof(double));
    }
    const cs_tensor *x = c->in[0];
    void *gx = a->gin[0] ? a->gin[0]->data : NULL;
    if (x->dtype == CS_DT_FLOAT)
        ln_vjp_f32(&p, x->data, g ? g->data : NULL, gx);
    else
        ln_vjp_f64(&p, x->data, g ? g->data : NULL, gx);
    if (p.acc_scale)
        ln_bcast(x, s.axis, c->in[1], NULL, g_scale, p.acc_scale, s.d);
    if (p.acc_bias)
        ln_bcast(x, s.axis, c->in[2], NULL, g_bias, p.acc_bias, s.d);
    return CS_OK;
}

static cs_status ln_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    ln_shape s;
    ln_ad p;
    cs_status st = ln_ad_setup(c, a->tin, a->tout, &s, &p, err);
    if (st || s.rows == 0 || s.d == 0)
        return st;
    const cs_tensor *tx = a->tin[0], *t_scale = a->tin[1], *t_bias = ln_at(a->tin, c, 2, true);
    double *buf = c->scratch;
    if (t_scale) {
        ln_expand(c->in[0], s.axis, t_scale, 0.0, buf + s.d, s.d);
        p.t_scale = buf + s.d;
    }
    if (t_bias) {
        ln_expand(c->in[0], s.axis, t_bias, 0.0, buf + 2 * s.d, s.d);
        p.t_bias = buf + 2 * s.d;
    }
    p.t_mean = ln_at(a->tout, c, 1, false);
    p.t_inv = ln_at(a->tout, c, 2, false);
    const cs_tensor *x = c->in[0];
    void *ty = a->tout[0] ? a->tout[0]->data : NULL;
    if (x->dtype == CS_DT_FLOAT)
        ln_jvp_f32(&p, x->data, tx ? tx->data : NULL, ty);
    else
        ln_jvp_f64(&p, x->data, tx ? tx->data : NULL, ty);
    return CS_OK;
}

static cs_status ln_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    ln_shape s;
    ln_ad p;
    cs_status st = ln_ad_setup(c, a->gin, a->gout, &s, &p, err);
    if (!st)
        st = cs_op_check_ad(c, a->tin, NULL, err);
    if (st || s.rows == 0 || s.d == 0)
        return st;
    const cs_tensor *g = a->gout[0], *tx = a->tin[0], *t_scale = a->tin[1];
    p.g_inv = ln_at(a->gout, c, 2, false);
    /* Terms pair G with (tx, ts) and gr with tx only. */
    if (!(g && (tx || t_scale)) && !(p.g_inv && tx))
        return CS_OK;
    double *buf = c->scratch;
    if (t_scale) {
        ln_expand(c->in[0], s.axis, t_scale, 0.0, buf + s.d, s.d);
        p.t_scale = buf + s.d;
    }
    cs_tensor *g_scale = a->gin[1];
    if (g_scale && g && tx) {
        p.acc_scale = buf + 2 * s.d;
        memset(p.acc_scale, 0, (size_t)s.d * sizeof(double));
    }
    const cs_tensor *x = c->in[0];
    void *gx = a->gin[0] ? a->gin[0]->data : NULL;
    if (x->dtype == CS_DT_FLOAT)
        ln_rop_f32(&p, x->data, g ? g->data : NULL, tx ? tx->data : NULL, gx);
    else
        ln_rop_f64(&p, x->data, g ? g->data : NULL, tx ? tx->data : NULL, gx);
    if (p.acc_scale)
        ln_bcast(x, s.axis, c->in[1], NULL, g_scale, p.acc_scale, s.d);
    return CS_OK;
}

const cs_op_def cs_op_LayerNormalization = {
    .name = "LayerNormalization",
    .min_opset = 17,
    .infer = ln_infer,
    .forward = ln_forward,
    .vjp = ln_vjp,
    .jvp = ln_jvp,
    .rop = ln_rop,
};
