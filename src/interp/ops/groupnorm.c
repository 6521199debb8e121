/* InstanceNormalization and GroupNormalization: normalisation over rows of
 * contiguous elements, then a per-channel (or per-group) affine map.
 *
 * X is [N, C, spatial...].  InstanceNormalization normalises each (n, c)
 * over its spatial elements; GroupNormalization each (n, g) over the C/G
 * channels of group g and their spatial elements, with scale and bias per
 * group (opset 18) or per channel (opset 21).  For a row x of D elements,
 *   mu = mean x,  v = mean (x - mu)^2 (population),  s = 1 / sqrt(v + eps),
 *   xh = (x - mu) s,  y_i = gamma_c(i) xh_i + beta_c(i).
 * Derivative rules (Ioffe & Szegedy 2015's backward, per row), with
 * u_i = gy_i gamma_c(i) and means over the row:
 *   vjp  gx = s (u - mean u - xh mean(u xh)),
 *        ggamma_c += sum_{i in c} gy_i xh_i,  gbeta_c += sum_{i in c} gy_i
 *   jvp  txh = s (tx - mean tx - xh mean(xh tx)),
 *        ty = gamma txh + tgamma xh + tbeta
 *   rop  the derivative of the vjp along (tx, tgamma) with gy fixed:
 *        with ds = -s^2 mean(xh tx) and du_i = gy_i tgamma_c(i),
 *        gx += ds (u - mean u - xh mean(u xh))
 *              + s (du - mean du - txh mean(u xh) - xh mean(du xh + u txh)),
 *        ggamma_c += sum_{i in c} gy_i txh_i
 * Statistics and rules run in double. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "interp/op.h"

typedef struct gn_shape {
    int64_t rows;      /* N * groups */
    int64_t groups;    /* rows per sample */
    int64_t d;         /* elements per row */
    int64_t spatial;   /* elements per channel */
    int64_t n_params;  /* entries of scale and bias */
    bool per_channel;  /* the affine map is per channel (else per group) */
    double eps;
} gn_shape;

static cs_status gn_shape_of(const cs_op_call *c, gn_shape *s, cs_err *err)
{
    if (c->n_in != 3 || !c->in[0] || !c->in[1] || !c->in[2])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects X, scale and bias");
    cs_status st;
    for (int i = 0; i < 3; i++)
        if ((st = cs_op_need_float(c, i, err)) || (st = cs_op_same_dtype(c, 0, i, err)))
            return st;
    const cs_tensor *x = c->in[0];
    if (x->ndim < 2)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "X has rank %d (at least 2)", x->ndim);
    int64_t N = x->dims[0], C = x->dims[1];
    s->spatial = N > 0 && C > 0 ? cs_tensor_numel(x) / (N * C) : 0;
    s->eps = cs_node_attr_float(c->node, "epsilon", 1e-5f);
    bool group = strcmp(c->node->op_type, "GroupNormalization") == 0;
    s->groups = group ? cs_node_attr_int(c->node, "num_groups", 0) : C;
    if (s->groups < 1 || C % s->groups)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "%lld channels in %lld groups", (long long)C, (long long)s->groups);
    s->per_channel = !group || c->node->opset >= 21;
    s->n_params = s->per_channel ? C : s->groups;
    if (cs_tensor_numel(c->in[1]) != s->n_params || cs_tensor_numel(c->in[2]) != s->n_params)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "scale and bias need %lld entries, have %lld and %lld",
                          (long long)s->n_params, (long long)cs_tensor_numel(c->in[1]),
                          (long long)cs_tensor_numel(c->in[2]));
    s->rows = N * s->groups;
    s->d = C / s->groups * s->spatial;
    return CS_OK;
}

static cs_status gn_infer(cs_op_call *c, cs_err *err)
{
    gn_shape s;
    cs_status st = gn_shape_of(c, &s, err);
    if (st)
        return st;
    if (c->n_out < 1 || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "output is missing");
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, c->in[0]->ndim, c->in[0]->dims);
    /* the rules keep one row's xh, u and the tangent's txh, du in double */
    c->ad_scratch_bytes = (size_t)(4 * s.d + 1) * sizeof(double);
    c->scratch_bytes = (size_t)(s.d + 1) * sizeof(double);
    return CS_OK;
}

static double gv(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_DOUBLE ? ((const double *)t->data)[i] : ((const float *)t->data)[i];
}

static void gput(cs_tensor *t, int64_t i, double v, bool add)
{
    if (t->dtype == CS_DT_DOUBLE)
        ((double *)t->data)[i] = add ? ((double *)t->data)[i] + v : v;
    else
        ((float *)t->data)[i] = (float)(add ? ((float *)t->data)[i] + v : v);
}

/* The affine parameter index of element i of row r. */
static int64_t gn_param(const gn_shape *s, int64_t r, int64_t i)
{
    int64_t g = r % s->groups;
    return s->per_channel ? g * (s->d / s->spatial) + i / s->spatial : g;
}

/* xh of row r into xh; returns s. */
static double gn_row(const gn_shape *s, const cs_tensor *x, int64_t r, double *xh)
{
    const int64_t base = r * s->d;
    double mu = 0, v = 0;
    for (int64_t i = 0; i < s->d; i++)
        mu += gv(x, base + i);
    mu /= (double)s->d;
    for (int64_t i = 0; i < s->d; i++) {
        xh[i] = gv(x, base + i) - mu;
        v += xh[i] * xh[i];
    }
    double inv = 1 / sqrt(v / (double)s->d + s->eps);
    for (int64_t i = 0; i < s->d; i++)
        xh[i] *= inv;
    return inv;
}

static double mean_of(const double *a, const double *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m += b ? a[i] * b[i] : a[i];
    return n ? m / (double)n : 0;
}

/* txh of row r from the tangent tx (NULL: zero). */
static void gn_tangent(const gn_shape *s, const cs_tensor *tx, int64_t r, double inv, const double *xh, double *txh)
{
    const int64_t base = r * s->d;
    for (int64_t i = 0; i < s->d; i++)
        txh[i] = tx ? gv(tx, base + i) : 0;
    double mt = mean_of(txh, NULL, s->d), mxt = mean_of(xh, txh, s->d);
    for (int64_t i = 0; i < s->d; i++)
        txh[i] = inv * (txh[i] - mt - xh[i] * mxt);
}

static cs_status gn_forward(cs_op_call *c, cs_err *err)
{
    gn_shape s;
    cs_status st = gn_shape_of(c, &s, err);
    if (st)
        return st;
    double *xh = c->scratch;
    for (int64_t r = 0; r < s.rows; r++) {
        (void)gn_row(&s, c->in[0], r, xh);
        for (int64_t i = 0; i < s.d; i++) {
            int64_t p = gn_param(&s, r, i);
            gput(c->out[0], r * s.d + i, gv(c->in[1], p) * xh[i] + gv(c->in[2], p), false);
        }
    }
    return CS_OK;
}

typedef enum gn_rule { GN_VJP, GN_JVP, GN_ROP } gn_rule;

static cs_status gn_rule_run(cs_op_call *c, const cs_op_ad *a, gn_rule rule, cs_err *err)
{
    gn_shape s;
    cs_status st = gn_shape_of(c, &s, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0], *gamma = c->in[1];
    const cs_tensor *gy = rule == GN_JVP ? NULL : a->gout[0];
    double *xh = c->scratch, *u = xh + s.d, *txh = u + s.d, *du = txh + s.d;
    for (int64_t r = 0; r < s.rows; r++) {
        const int64_t base = r * s.d;
        double inv = gn_row(&s, x, r, xh);
        if (rule != GN_VJP)
            gn_tangent(&s, a->tin[0], r, inv, xh, txh);
        if (rule == GN_JVP) {
            for (int64_t i = 0; i < s.d; i++) {
                int64_t p = gn_param(&s, r, i);
                double v = gv(gamma, p) * txh[i];
                v += a->tin[1] ? gv(a->tin[1], p) * xh[i] : 0;
                v += a->tin[2] ? gv(a->tin[2], p) : 0;
                gput(a->tout[0], base + i, v, false);
            }
            continue;
        }
        for (int64_t i = 0; i < s.d; i++) {
            int64_t p = gn_param(&s, r, i);
            u[i] = gv(gy, base + i) * gv(gamma, p);
            du[i] = rule == GN_ROP && a->tin[1] ? gv(gy, base + i) * gv(a->tin[1], p) : 0;
        }
        double mu_u = mean_of(u, NULL, s.d), mux = mean_of(u, xh, s.d);
        if (rule == GN_VJP) {
            for (int64_t i = 0; i < s.d; i++) {
                int64_t p = gn_param(&s, r, i);
                double g = gv(gy, base + i);
                if (a->gin[0])
                    gput(a->gin[0], base + i, inv * (u[i] - mu_u - xh[i] * mux), true);
                if (a->gin[1])
                    gput(a->gin[1], p, g * xh[i], true);
                if (a->gin[2])
                    gput(a->gin[2], p, g, true);
            }
            continue;
        }
        /* ds = d(1/sqrt(v + eps)) = -s^3 / 2 dv with dv = (2 / s) mean(xh tx) */
        double mxt = 0;
        for (int64_t i = 0; i < s.d; i++)
            mxt += xh[i] * (a->tin[0] ? gv(a->tin[0], base + i) : 0);
        double ds = -inv * inv * mxt / (double)s.d;
        double mdu = mean_of(du, NULL, s.d), dmux = mean_of(du, xh, s.d) + mean_of(u, txh, s.d);
        for (int64_t i = 0; i < s.d; i++) {
            int64_t p = gn_param(&s, r, i);
            if (a->gin[0])
                gput(a->gin[0], base + i,
                     ds * (u[i] - mu_u - xh[i] * mux) + inv * (du[i] - mdu - txh[i] * mux - xh[i] * dmux), true);
            if (a->gin[1])
                gput(a->gin[1], p, gv(gy, base + i) * txh[i], true);
        }
    }
    return CS_OK;
}

static cs_status gn_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return a->gout[0] ? gn_rule_run(c, a, GN_VJP, err) : CS_OK;
}

static cs_status gn_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return a->tout[0] ? gn_rule_run(c, a, GN_JVP, err) : CS_OK;
}

static cs_status gn_rop(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    return a->gout[0] && (a->tin[0] || a->tin[1]) ? gn_rule_run(c, a, GN_ROP, err) : CS_OK;
}

const cs_op_def cs_op_InstanceNormalization = {.name = "InstanceNormalization", .min_opset = 6, .infer = gn_infer,
                                               .forward = gn_forward, .vjp = gn_vjp, .jvp = gn_jvp, .rop = gn_rop};
const cs_op_def cs_op_GroupNormalization = {.name = "GroupNormalization", .min_opset = 18, .infer = gn_infer,
                                            .forward = gn_forward, .vjp = gn_vjp, .jvp = gn_jvp, .rop = gn_rop};
