/* Derivative rules of the spatial operators: Conv, MaxPool, AveragePool,
 * GlobalAveragePool, BatchNormalization, LayerNormalization.
 *
 * Every configuration is checked in float64 by central finite differences
 * (fd_check.h: vjp, jvp, and the R-op's second-order term, or its absence
 * for ops flagged CS_OP_LINEAR), then run again in float32 from the same
 * point (inputs rounded to float first) to see that the float32 rules agree
 * with the float64 ones, and once with every tangent zero to see that the
 * jvp writes (not adds) its outputs. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fd_check.h"

/* ---- helpers ---- */

static uint64_t rng = 7;

/* Uniform in [lo, hi). */
static double rnd(double lo, double hi)
{
    return lo + (hi - lo) * (fd_rand_(&rng) + 1) * 0.5;
}

/* An owned tensor of dtype dt and shape dims, filled from [lo, hi). */
static cs_tensor mk(cs_dtype dt, int ndim, const int64_t *dims, double lo, double hi)
{
    cs_tensor t = {0};
    cs_tensor_set_shape(&t, dt, ndim, dims);
    if (cs_tensor_alloc(&t, NULL) != CS_OK)
        abort();
    for (int64_t i = 0; i < cs_tensor_numel(&t); i++)
        cs_tensor_set_f64(&t, i, rnd(lo, hi));
    return t;
}

static cs_tensor mkd(int ndim, const int64_t *dims)
{
    return mk(CS_DT_DOUBLE, ndim, dims, -1, 1);
}

/* Distinct values for MaxPool: a random permutation of 0 .. n-1, so every
 * window's maximum is unique and at least 1 above the runner-up, far beyond
 * the finite-difference steps (no argmax can switch). */
static cs_tensor mk_distinct(int ndim, const int64_t *dims)
{
    cs_tensor t = mkd(ndim, dims);
    double *v = t.data;
    int64_t n = cs_tensor_numel(&t);
    for (int64_t i = 0; i < n; i++)
        v[i] = (double)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rnd(0, (double)(i + 1));
        if (j > i)
            j = i;
        double s = v[i];
        v[i] = v[j];
        v[j] = s;
    }
    return t;
}

/* One operator under test with its inputs (kept alive for op_test). */
typedef struct gcase {
    op_test t;
    cs_tensor in[OP_TEST_MAX];
    int n_in;
} gcase;

static void gc_init(gcase *g, const char *op, int opset)
{
    memset(g, 0, sizeof *g);
    op_test_init(&g->t, op, opset);
}

/* Adds input x (owned by g from now on); absent: an omitted optional input. */
static void gc_in(gcase *g, cs_tensor x, bool absent)
{
    int i = g->n_in++;
    g->in[i] = x;
    op_test_input(&g->t, absent ? NULL : &g->in[i]);
}

static void gc_free(gcase *g)
{
    op_test_free(&g->t);
    for (int i = 0; i < g->n_in; i++)
        cs_tensor_free(&g->in[i]);
}

/* ---- float32 against float64, and the jvp's write semantics ---- */

/* The rules' results on one op_test for gradients / tangents drawn from a
 * fixed seed (values rounded to float, so both precisions get the same). */
typedef struct ad_out {
    cs_tensor gin[OP_TEST_MAX], tout[OP_TEST_MAX], rop[OP_TEST_MAX];
    cs_status st[3];
} ad_out;

static cs_tensor like(const cs_tensor *v)
{
    cs_tensor r = {0};
    cs_tensor_set_shape(&r, v->dtype, v->ndim, v->dims);
    if (cs_tensor_alloc(&r, NULL) != CS_OK)
        abort();
    return r;
}

static void fill_seq(cs_tensor *t, uint64_t *seed)
{
    for (int64_t j = 0; j < cs_tensor_numel(t); j++)
        cs_tensor_set_f64(t, j, (double)(float)fd_rand_(seed));
}

static void ad_apply(op_test *t, unsigned mask, ad_out *o)
{
    const cs_op_def *op = t->node.op;
    cs_tensor gout[OP_TEST_MAX] = {{0}}, tin[OP_TEST_MAX] = {{0}};
    cs_tensor *goutp[OP_TEST_MAX] = {0}, *tinp[OP_TEST_MAX] = {0}, *ginp[OP_TEST_MAX] = {0};
    cs_tensor *toutp[OP_TEST_MAX] = {0}, *ropp[OP_TEST_MAX] = {0};
    uint64_t seed = 99;
    memset(o, 0, sizeof *o);
    for (int k = 0; k < t->node.n_outputs; k++)
        if (t->out[k] && cs_dtype_is_float(t->out[k]->dtype)) {
            gout[k] = like(t->out[k]);
            fill_seq(&gout[k], &seed);
            goutp[k] = &gout[k];
            o->tout[k] = like(t->out[k]);
            toutp[k] = &o->tout[k];
        }
    for (int i = 0; i < t->node.n_inputs; i++)
        if ((mask >> i) & 1 && t->in[i]) {
            tin[i] = like(t->in[i]);
            fill_seq(&tin[i], &seed);
            tinp[i] = &tin[i];
            o->gin[i] = like(t->in[i]);
            ginp[i] = &o->gin[i];
            o->rop[i] = like(t->in[i]);
            ropp[i] = &o->rop[i];
        }
    cs_err err = {0};
    cs_op_ad a = {.gout = goutp, .gin = ginp};
    o->st[0] = op->vjp(&t->call, &a, &err);
    cs_op_ad b = {.tin = tinp, .tout = toutp};
    o->st[1] = op->jvp(&t->call, &b, &err);
    cs_op_ad r = {.gout = goutp, .gin = ropp, .tin = tinp};
    o->st[2] = op->rop ? op->rop(&t->call, &r, &err) : CS_OK;
    for (int k = 0; k < OP_TEST_MAX; k++) {
        cs_tensor_free(&gout[k]);
        cs_tensor_free(&tin[k]);
    }
}

static void ad_free(ad_out *o)
{
    for (int k = 0; k < OP_TEST_MAX; k++) {
        cs_tensor_free(&o->gin[k]);
        cs_tensor_free(&o->tout[k]);
        cs_tensor_free(&o->rop[k]);
    }
}

/* max |a - b| <= rtol * max |b| over every tensor of the set (b float64);
 * the worst relative error goes to *rel. */
static bool agree(const cs_tensor *a, const cs_tensor *b, double rtol, double *rel)
{
    bool good = true;
    *rel = 0;
    for (int k = 0; k < OP_TEST_MAX; k++) {
        if (!b[k].data)
            continue;
        double scale = 0, worst = 0;
        for (int64_t j = 0; j < cs_tensor_numel(&b[k]); j++) {
            scale = fmax(scale, fabs(cs_tensor_get_f64(&b[k], j)));
            double e = fabs(cs_tensor_get_f64(&a[k], j) - cs_tensor_get_f64(&b[k], j));
            worst = isnan(e) ? INFINITY : fmax(worst, e);
        }
        double r = worst / fmax(scale, 1e-300);
        *rel = fmax(*rel, r);
        good = good && worst <= rtol * scale;
    }
    return good;
}

/* The same op on float32 copies of t64's inputs (t64 has been run). */
static void f32_agree(const char *label, op_test *t64, unsigned mask)
{
    cs_err err = {0};
    /* Round the float64 point to float so that both runs see one point. */
    for (int i = 0; i < t64->node.n_inputs; i++)
        if (t64->in[i] && t64->in[i]->dtype == CS_DT_DOUBLE) {
            double *v = (double *)t64->in_src[i]->data;
            for (int64_t j = 0; j < cs_tensor_numel(t64->in[i]); j++)
                v[j] = (double)(float)v[j];
        }
    if (!ok(op_test_forward(t64, &err) == CS_OK, "%s: float64 forward at the rounded point", label))
        return;

    op_test t32 = *t64;
    t32.node.inputs = t32.in_idx;
    t32.node.outputs = t32.out_idx;
    t32.node.attrs = t32.attrs;
    t32.scratch = NULL;
    memset(t32.out_t, 0, sizeof t32.out_t);
    cs_tensor conv[OP_TEST_MAX] = {{0}};
    for (int i = 0; i < t32.node.n_inputs; i++) {
        if (!t64->in[i])
            continue;
        const cs_tensor *src = t64->in_src[i];
        cs_tensor_set_shape(&conv[i], src->dtype == CS_DT_DOUBLE ? CS_DT_FLOAT : src->dtype,
                            src->ndim, src->dims);
        if (cs_tensor_alloc(&conv[i], NULL) != CS_OK)
            abort();
        cs_convert(conv[i].data, conv[i].dtype, src->data, src->dtype, cs_tensor_numel(src));
        t32.in_src[i] = &conv[i];
        t32.in_view[i] = conv[i];
        t32.in_view[i].owns_data = false;
        t32.in[i] = &t32.in_view[i];
    }
    for (int k = 0; k < t32.node.n_outputs; k++)
        t32.out[k] = t64->out[k] ? &t32.out_t[k] : NULL;
    if (ok(op_test_run(&t32, &err) == CS_OK, "%s: float32 forward (%s)", label, err.msg)) {
        ad_out o32, o64;
        ad_apply(&t32, mask, &o32);
        ad_apply(t64, mask, &o64);
        static const char *const rule[3] = {"vjp", "jvp", "rop"};
        const cs_tensor *res32[3] = {o32.gin, o32.tout, o32.rop};
        const cs_tensor *res64[3] = {o64.gin, o64.tout, o64.rop};
        for (int r = 0; r < 3; r++) {
            if (r == 2 && !t64->node.op->rop)
                continue;
            double rel;
            bool same = o32.st[r] == CS_OK && o64.st[r] == CS_OK &&
                        agree(res32[r], res64[r], 1e-5, &rel);
            ok(same, "%s: float32 %s agrees with float64 (max rel err %.2g)", label, rule[r],
               same ? rel : NAN);
        }
        ad_free(&o32);
        ad_free(&o64);
    }
    op_test_free(&t32);
    for (int i = 0; i < OP_TEST_MAX; i++)
        cs_tensor_free(&conv[i]);
}

/* jvp writes its outputs, never adds to them: with every tangent zero
 * (NULL) it must leave zeros over stale contents, and with tangents on the
 * inputs in mask it must give the same result over stale contents as over
 * zeros (fd_check hands it zeroed outputs, which would hide a +=). */
static void jvp_writes(const char *label, op_test *t, unsigned mask)
{
    cs_tensor tout[2][OP_TEST_MAX] = {{{0}}}, tin[OP_TEST_MAX] = {{0}};
    cs_tensor *toutp[2][OP_TEST_MAX] = {{0}}, *tinp[OP_TEST_MAX] = {0};
    cs_tensor *none[OP_TEST_MAX] = {0};
    uint64_t seed = 5;
    for (int i = 0; i < t->node.n_inputs; i++)
        if ((mask >> i) & 1 && t->in[i]) {
            tin[i] = like(t->in[i]);
            fill_seq(&tin[i], &seed);
            tinp[i] = &tin[i];
        }
    for (int v = 0; v < 2; v++)
        for (int k = 0; k < t->node.n_outputs; k++)
            if (t->out[k] && cs_dtype_is_float(t->out[k]->dtype)) {
                tout[v][k] = like(t->out[k]);
                toutp[v][k] = &tout[v][k];
            }
    cs_err err = {0};
    const cs_op_def *op = t->node.op;
    bool zero = true, same = true;
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < OP_TEST_MAX; k++) /* stale contents in tout[0] */
            for (int64_t j = 0; tout[0][k].data && j < cs_tensor_numel(&tout[0][k]); j++) {
                cs_tensor_set_f64(&tout[0][k], j, 7.0);
                cs_tensor_set_f64(&tout[1][k], j, 0.0);
            }
        for (int v = 0; v < (pass ? 2 : 1); v++) {
            cs_op_ad a = {.tin = pass ? tinp : none, .tout = toutp[v]};
            if (op->jvp(&t->call, &a, &err) != CS_OK)
                zero = same = false;
        }
        for (int k = 0; k < OP_TEST_MAX; k++)
            for (int64_t j = 0; tout[0][k].data && j < cs_tensor_numel(&tout[0][k]); j++) {
                double x = cs_tensor_get_f64(&tout[0][k], j);
                if (pass)
                    same = same && x == cs_tensor_get_f64(&tout[1][k], j);
                else
                    zero = zero && x == 0.0;
            }
    }
    ok(zero, "%s: jvp with zero tangents writes zeros", label);
    ok(same, "%s: jvp overwrites stale outputs", label);
    for (int k = 0; k < OP_TEST_MAX; k++) {
        cs_tensor_free(&tout[0][k]);
        cs_tensor_free(&tout[1][k]);
        cs_tensor_free(&tin[k]);
    }
}

/* The whole battery on one configuration, then frees it. */
static void check_case(const char *label, gcase *g, unsigned mask, const fd_opts *o)
{
    fd_opts def = fd_default();
    fd_check_op(label, &g->t, mask, o ? o : &def);
    jvp_writes(label, &g->t, mask);
    f32_agree(label, &g->t, mask);
    gc_free(g);
}

/* ---- Conv ---- */

typedef struct conv_cfg {
    const char *label;
    int nd;
    int64_t n, c, m, group;
    int64_t in[3], k[3];
    const int64_t *strides, *pads, *dil; /* NULL: attribute absent */
    const char *auto_pad;
    bool bias;
} conv_cfg;

static void conv_case(const conv_cfg *cc)
{
    gcase g;
    gc_init(&g, "Conv", 17);
    int nd = cc->nd;
    int64_t xd[5] = {cc->n, cc->c}, wd[5] = {cc->m, cc->c / cc->group}, bd[1] = {cc->m};
    for (int i = 0; i < nd; i++) {
        xd[2 + i] = cc->in[i];
        wd[2 + i] = cc->k[i];
    }
    gc_in(&g, mkd(2 + nd, xd), false);
    gc_in(&g, mkd(2 + nd, wd), false);
    if (cc->bias)
        gc_in(&g, mkd(1, bd), false);
    if (cc->group != 1)
        op_test_attr_int(&g.t, "group", cc->group);
    if (cc->strides)
        op_test_attr_ints(&g.t, "strides", nd, cc->strides);
    if (cc->pads)
        op_test_attr_ints(&g.t, "pads", 2 * nd, cc->pads);
    if (cc->dil)
        op_test_attr_ints(&g.t, "dilations", nd, cc->dil);
    if (cc->auto_pad)
        op_test_attr_string(&g.t, "auto_pad", cc->auto_pad);
    op_test_outputs(&g.t, 1);
    check_case(cc->label, &g, cc->bias ? FD_INPUTS(0, 1, 2) : FD_INPUTS(0, 1), NULL);
}

static void test_conv(void)
{
    static const int64_t p1[] = {1, 1, 1, 1}, pasym[] = {0, 1, 2, 0}, s21[] = {2, 1};
    static const int64_t d21[] = {2, 1}, s22[] = {2, 2}, s2[] = {2}, p12[] = {1, 2};
    static const int64_t d2[] = {2}, p3d[] = {1, 0, 1, 0, 1, 1}, s121[] = {1, 2, 1};
    static const int64_t d112[] = {1, 1, 2};
    const conv_cfg cases[] = {
        /* T = 42 < 1024 and N = 2: the batched-column path */
        {"Conv 2-D pads 1, bias (batched columns)", 2, 2, 3, 4, 1, {7, 6}, {3, 3}, NULL, p1,
         NULL, NULL, true},
        /* N = 1: the per-sample path */
        {"Conv 2-D strides 2x1, asymmetric pads, no bias (per sample)", 2, 1, 3, 4, 1, {7, 6},
         {3, 2}, s21, pasym, NULL, NULL, false},
        {"Conv 2-D group 2, dilations 2x1, bias", 2, 2, 4, 6, 2, {6, 6}, {3, 3}, NULL, NULL, d21,
         NULL, true},
        {"Conv 2-D depthwise (group = C = M), pads 1", 2, 2, 3, 3, 3, {5, 5}, {3, 3}, NULL, p1,
         NULL, NULL, true},
        {"Conv 2-D depthwise multiplier 2, per sample", 2, 1, 2, 4, 2, {5, 4}, {3, 3}, s21, p1,
         NULL, NULL, false},
        /* kernel 4, stride 2 on 7: total padding 3, split unevenly */
        {"Conv 2-D auto_pad SAME_UPPER, strides 2", 2, 2, 2, 3, 1, {7, 7}, {4, 4}, s22, NULL,
         NULL, "SAME_UPPER", true},
        {"Conv 2-D auto_pad SAME_LOWER, strides 2", 2, 2, 2, 3, 1, {7, 7}, {4, 4}, s22, NULL,
         NULL, "SAME_LOWER", true},
        {"Conv 2-D auto_pad VALID", 2, 2, 2, 3, 1, {6, 5}, {3, 2}, NULL, NULL, NULL, "VALID",
         false},
        {"Conv 1-D strides 2, pads 1/2, dilation 2", 1, 3, 2, 3, 1, {9}, {3}, s2, p12, d2, NULL,
         true},
        {"Conv 1-D per sample, group 2", 1, 1, 4, 2, 2, {8}, {3}, NULL, NULL, NULL, NULL, true},
        {"Conv 3-D pads, strides 1x2x1, bias", 3, 2, 2, 3, 1, {4, 5, 3}, {2, 3, 2}, s121, p3d,
         NULL, NULL, true},
        {"Conv 3-D dilations 1x1x2, group 2, per sample", 3, 1, 2, 2, 2, {3, 4, 5}, {2, 2, 2},
         NULL, NULL, d112, NULL, false},
        /* 1x1, stride 1, no padding: GEMMs straight on X */
        {"Conv 1x1 fast path, bias", 2, 2, 4, 3, 1, {5, 5}, {1, 1}, NULL, NULL, NULL, NULL,
         true},
        {"Conv 1x1 fast path, group 2", 2, 3, 4, 4, 2, {3, 3}, {1, 1}, NULL, NULL, NULL, NULL,
         false},
        /* 1x1 with stride 2 is not the fast path */
        {"Conv 1x1 strides 2 (im2col path)", 2, 2, 3, 2, 1, {5, 5}, {1, 1}, s22, NULL, NULL,
         NULL, true},
        /* T = 400: chunks of 3 samples and a last chunk of 1 */
        {"Conv 2-D T = 400, N = 4 (partial last chunk)", 2, 4, 2, 2, 1, {20, 20}, {3, 3}, NULL,
         p1, NULL, NULL, true},
        /* T = 1056 >= 1024 with N = 2: per-sample GEMMs over a batch */
        {"Conv 2-D T = 1056, N = 2 (per-sample path)", 2, 2, 1, 2, 1, {32, 33}, {3, 3}, NULL,
         p1, NULL, NULL, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        conv_case(&cases[i]);
}

/* ---- pooling ---- */

typedef struct pool_cfg {
    const char *label;
    const char *op;
    int opset;
    int nd;
    int64_t n, c, in[3], k[3];
    const int64_t *strides, *pads, *dil;
    int ceil_mode, include_pad;
    int n_out; /* MaxPool: 2 asks for Indices */
} pool_cfg;

static void pool_case(const pool_cfg *pc)
{
    gcase g;
    gc_init(&g, pc->op, pc->opset);
    int nd = pc->nd;
    int64_t xd[5] = {pc->n, pc->c};
    for (int i = 0; i < nd; i++)
        xd[2 + i] = pc->in[i];
    bool is_max = strcmp(pc->op, "MaxPool") == 0;
    gc_in(&g, is_max ? mk_distinct(2 + nd, xd) : mkd(2 + nd, xd), false);
    op_test_attr_ints(&g.t, "kernel_shape", nd, pc->k);
    if (pc->strides)
        op_test_attr_ints(&g.t, "strides", nd, pc->strides);
    if (pc->pads)
        op_test_attr_ints(&g.t, "pads", 2 * nd, pc->pads);
    if (pc->dil)
        op_test_attr_ints(&g.t, "dilations", nd, pc->dil);
    if (pc->ceil_mode)
        op_test_attr_int(&g.t, "ceil_mode", 1);
    if (pc->include_pad)
        op_test_attr_int(&g.t, "count_include_pad", 1);
    op_test_outputs(&g.t, pc->n_out ? pc->n_out : 1);
    check_case(pc->label, &g, FD_INPUTS(0), NULL);
}

static void test_pool(void)
{
    static const int64_t s22[] = {2, 2}, p1[] = {1, 1, 1, 1}, d22[] = {2, 2};
    static const int64_t pasym[] = {1, 0, 0, 1}, s2[] = {2}, s3[] = {3}, p11[] = {1, 1};
    static const int64_t p21[] = {2, 1}, d2[] = {2};
    const pool_cfg cases[] = {
        {"MaxPool 2-D 2x2 stride 2", "MaxPool", 12, 2, 2, 2, {6, 6}, {2, 2}, s22, NULL, NULL, 0,
         0, 0},
        {"MaxPool 2-D 3x3 stride 2, pads 1, ceil_mode", "MaxPool", 12, 2, 1, 2, {7, 8}, {3, 3},
         s22, p1, NULL, 1, 0, 0},
        {"MaxPool 2-D dilations 2, asymmetric pads, Indices", "MaxPool", 12, 2, 2, 1, {7, 7},
         {2, 2}, NULL, pasym, d22, 0, 0, 2},
        {"MaxPool 1-D 3 stride 2, pads 1", "MaxPool", 12, 1, 2, 3, {10}, {3}, s2, p11, NULL, 0,
         0, 0},
        {"MaxPool 1-D dilation 2, ceil_mode, overlapping", "MaxPool", 12, 1, 1, 2, {11}, {3},
         s2, NULL, d2, 1, 0, 0},
        {"AveragePool 2-D 3x3 stride 2, pads 1", "AveragePool", 19, 2, 2, 2, {7, 6}, {3, 3}, s22,
         p1, NULL, 0, 0, 0},
        {"AveragePool 2-D count_include_pad", "AveragePool", 19, 2, 2, 2, {7, 6}, {3, 3}, s22,
         p1, NULL, 0, 1, 0},
        {"AveragePool 2-D ceil_mode, count_include_pad, asymmetric pads", "AveragePool", 19, 2,
         1, 2, {6, 7}, {3, 2}, s22, pasym, NULL, 1, 1, 0},
        {"AveragePool 2-D ceil_mode, count_include_pad 0", "AveragePool", 19, 2, 1, 2, {6, 7},
         {3, 3}, s22, p1, NULL, 1, 0, 0},
        {"AveragePool 2-D dilations 2", "AveragePool", 19, 2, 1, 2, {7, 7}, {2, 2}, NULL, NULL,
         d22, 0, 0, 0},
        {"AveragePool 1-D 4 stride 3, pads 2/1, ceil_mode", "AveragePool", 19, 1, 2, 2, {9},
         {4}, s3, p21, NULL, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        pool_case(&cases[i]);

    static const int64_t gap_dims[3][5] = {{2, 3, 4, 5}, {2, 2, 6}, {1, 2, 2, 3, 2}};
    static const int gap_nd[3] = {4, 3, 5};
    static const char *const gap_label[3] = {"GlobalAveragePool 2-D", "GlobalAveragePool 1-D",
                                             "GlobalAveragePool 3-D"};
    for (int i = 0; i < 3; i++) {
        gcase g;
        gc_init(&g, "GlobalAveragePool", 1);
        gc_in(&g, mkd(gap_nd[i], gap_dims[i]), false);
        op_test_outputs(&g.t, 1);
        check_case(gap_label[i], &g, FD_INPUTS(0), NULL);
    }
}

/* A window entirely in the padding (index -1) routes nothing, by hand:
 * X = [1, 3, 2], kernel 2, pads 2 before: windows {pad, pad}, {pad, x0},
 * {x0, x1}, {x1, x2} give Y = [-inf, 1, 3, 3]. */
static void test_maxpool_empty_window(void)
{
    gcase g;
    gc_init(&g, "MaxPool", 12);
    static const int64_t k2[] = {2}, p20[] = {2, 0};
    int64_t xd[3] = {1, 1, 3};
    cs_tensor x = mkd(3, xd);
    double *xv = x.data;
    xv[0] = 1, xv[1] = 3, xv[2] = 2;
    gc_in(&g, x, false);
    op_test_attr_ints(&g.t, "kernel_shape", 1, k2);
    op_test_attr_ints(&g.t, "pads", 2, p20);
    op_test_outputs(&g.t, 1);
    cs_err err = {0};
    if (!ok(op_test_run(&g.t, &err) == CS_OK, "MaxPool empty window: forward (%s)", err.msg)) {
        gc_free(&g);
        return;
    }
    cs_tensor gy = like(g.t.out[0]), gx = like(g.t.in[0]), tx = like(g.t.in[0]);
    cs_tensor ty = like(g.t.out[0]);
    double *gyv = gy.data, *txv = tx.data;
    gyv[0] = 10, gyv[1] = 1, gyv[2] = 2, gyv[3] = 3;
    txv[0] = 5, txv[1] = 6, txv[2] = 7;
    cs_tensor *gout[1] = {&gy}, *gin[1] = {&gx}, *tin[1] = {&tx}, *tout[1] = {&ty};
    cs_op_ad a = {.gout = gout, .gin = gin};
    cs_op_ad b = {.tin = tin, .tout = tout};
    bool ran = g.t.node.op->vjp(&g.t.call, &a, &err) == CS_OK &&
               g.t.node.op->jvp(&g.t.call, &b, &err) == CS_OK;
    const double *gxv = gx.data, *tyv = ty.data;
    ok(ran && gxv[0] == 1 && gxv[1] == 5 && gxv[2] == 0,
       "MaxPool empty window: vjp skips it (gX = [%g, %g, %g], want [1, 5, 0])", gxv[0], gxv[1],
       gxv[2]);
    ok(ran && tyv[0] == 0 && tyv[1] == 5 && tyv[2] == 6 && tyv[3] == 6,
       "MaxPool empty window: jvp gives 0 there (tY = [%g, %g, %g, %g], want [0, 5, 6, 6])",
       tyv[0], tyv[1], tyv[2], tyv[3]);
    cs_tensor_free(&gy);
    cs_tensor_free(&gx);
    cs_tensor_free(&tx);
    cs_tensor_free(&ty);
    gc_free(&g);
}

/* Ties: the gradient goes to the first maximal element in row-major window
 * order (doc/design.md §2.8).  One 2x2 window of equal values. */
static void test_maxpool_tie(void)
{
    gcase g;
    gc_init(&g, "MaxPool", 12);
    static const int64_t k22[] = {2, 2};
    int64_t xd[4] = {1, 1, 2, 2};
    cs_tensor x = mkd(4, xd);
    for (int j = 0; j < 4; j++)
        ((double *)x.data)[j] = j == 0 ? 0.5 : 2.0; /* taps 1, 2, 3 tie */
    gc_in(&g, x, false);
    op_test_attr_ints(&g.t, "kernel_shape", 2, k22);
    op_test_outputs(&g.t, 1);
    cs_err err = {0};
    if (!ok(op_test_run(&g.t, &err) == CS_OK, "MaxPool tie: forward (%s)", err.msg)) {
        gc_free(&g);
        return;
    }
    cs_tensor gy = like(g.t.out[0]), gx = like(g.t.in[0]);
    ((double *)gy.data)[0] = 4;
    cs_tensor *gout[1] = {&gy}, *gin[1] = {&gx};
    cs_op_ad a = {.gout = gout, .gin = gin};
    bool ran = g.t.node.op->vjp(&g.t.call, &a, &err) == CS_OK;
    const double *v = gx.data;
    ok(ran && v[0] == 0 && v[1] == 4 && v[2] == 0 && v[3] == 0,
       "MaxPool tie: gradient to the first maximum ([%g, %g, %g, %g])", v[0], v[1], v[2], v[3]);
    cs_tensor_free(&gy);
    cs_tensor_free(&gx);
    gc_free(&g);
}

/* The 2x2 / stride 2 routing reads the argmax off the forward's Y; the
 * general path (taken with storage_order 1, whose Y is the same) recomputes
 * it.  Both must pick the same tap on inputs full of ties, NaN and signed
 * zeros, with an odd width (a column no window covers), in both
 * precisions: Y, gX and tY are compared bit for bit (NaN with NaN). */
static bool same_bits(const cs_tensor *a, const cs_tensor *b)
{
    for (int64_t i = 0; i < cs_tensor_numel(a); i++) {
        double x = cs_tensor_get_f64(a, i), y = cs_tensor_get_f64(b, i);
        if (!(x == y && signbit(x) == signbit(y)) && !(isnan(x) && isnan(y)))
            return false;
    }
    return true;
}

static void test_maxpool_2x2_route(cs_dtype dt)
{
    static const int64_t k22[] = {2, 2}, s22[] = {2, 2};
    static const double pick[] = {-1, 0, -0.0, 1, 2, NAN};
    const char *tn = dt == CS_DT_FLOAT ? "float" : "double";
    int64_t xd[4] = {2, 3, 6, 7};
    cs_tensor x = mk(dt, 4, xd, -1, 1);
    for (int64_t i = 0; i < cs_tensor_numel(&x); i++)
        cs_tensor_set_f64(&x, i, pick[(int)rnd(0, 6) % 6]);
    cs_tensor ys[2], gxs[2], tys[2];
    cs_tensor gy = {0}, tx = {0};
    bool ran = true;
    for (int order = 0; order < 2; order++) {
        gcase g;
        gc_init(&g, "MaxPool", 12);
        cs_tensor xc = like(&x);
        memcpy(xc.data, x.data, cs_tensor_bytes(&x));
        gc_in(&g, xc, false);
        op_test_attr_ints(&g.t, "kernel_shape", 2, k22);
        op_test_attr_ints(&g.t, "strides", 2, s22);
        op_test_attr_int(&g.t, "storage_order", order);
        op_test_outputs(&g.t, 1);
        cs_err err = {0};
        ran = ran && op_test_run(&g.t, &err) == CS_OK;
        if (!gy.data && ran) {
            gy = mk(dt, g.t.out[0]->ndim, g.t.out[0]->dims, -1, 1);
            tx = mk(dt, 4, xd, -1, 1);
        }
        ys[order] = like(g.t.out[0]);
        gxs[order] = like(g.t.in[0]);
        tys[order] = like(g.t.out[0]);
        memset(gxs[order].data, 0, cs_tensor_bytes(&gxs[order]));
        if (ran) {
            memcpy(ys[order].data, g.t.out[0]->data, cs_tensor_bytes(&ys[order]));
            cs_tensor *gout[1] = {&gy}, *gin[1] = {&gxs[order]}, *tin[1] = {&tx},
                      *tout[1] = {&tys[order]};
            cs_op_ad a = {.gout = gout, .gin = gin}, b = {.tin = tin, .tout = tout};
            ran = g.t.node.op->vjp(&g.t.call, &a, &err) == CS_OK &&
                  g.t.node.op->jvp(&g.t.call, &b, &err) == CS_OK;
        }
        gc_free(&g);
    }
    ok(ran && same_bits(&ys[0], &ys[1]), "MaxPool 2x2 fast path (%s): Y equals the general path's",
       tn);
    ok(ran && same_bits(&gxs[0], &gxs[1]),
       "MaxPool 2x2 fast path (%s): vjp routes ties, NaN and signed zeros as the general path", tn);
    ok(ran && same_bits(&tys[0], &tys[1]),
       "MaxPool 2x2 fast path (%s): jvp picks the same taps as the general path", tn);
    for (int order = 0; order < 2; order++) {
        cs_tensor_free(&ys[order]);
        cs_tensor_free(&gxs[order]);
        cs_tensor_free(&tys[order]);
    }
    cs_tensor_free(&gy);
    cs_tensor_free(&tx);
    cs_tensor_free(&x);
}

/* ---- BatchNormalization ---- */

static void bn_case(const char *label, int ndim, const int64_t *xd, double eps, unsigned mask)
{
    gcase g;
    gc_init(&g, "BatchNormalization", 15);
    int64_t cd[1] = {xd[1]};
    gc_in(&g, mkd(ndim, xd), false);
    gc_in(&g, mk(CS_DT_DOUBLE, 1, cd, 0.5, 1.5), false);  /* scale */
    gc_in(&g, mkd(1, cd), false);                         /* B */
    gc_in(&g, mk(CS_DT_DOUBLE, 1, cd, -0.5, 0.5), false); /* mean */
    gc_in(&g, mk(CS_DT_DOUBLE, 1, cd, 0.3, 1.5), false);  /* var */
    if (eps > 0)
        op_test_attr_float(&g.t, "epsilon", (float)eps);
    op_test_outputs(&g.t, 1);
    check_case(label, &g, mask, NULL);
}

static void test_batchnorm(void)
{
    bn_case("BatchNormalization 2-D, X scale B", 4, (int64_t[]){2, 3, 4, 5}, 0,
            FD_INPUTS(0, 1, 2));
    bn_case("BatchNormalization [N, C], all five inputs", 2, (int64_t[]){3, 4}, 0,
            FD_INPUTS(0, 1, 2, 3, 4));
    bn_case("BatchNormalization 3-D, epsilon 1e-2, all five inputs", 5,
            (int64_t[]){2, 2, 3, 2, 2}, 1e-2, FD_INPUTS(0, 1, 2, 3, 4));
    bn_case("BatchNormalization 1-D, scale and statistics only", 3, (int64_t[]){2, 3, 4}, 0,
            FD_INPUTS(1, 3, 4));
}

/* Opset 15 lets the parameters' type differ from X's: float32 scale, B,
 * mean, var with a float64 X give the rules of the all-float64 op (the
 * parameters' gradients in float32). */
static void test_batchnorm_mixed(void)
{
    gcase g[2];
    int64_t xd[4] = {2, 3, 2, 2}, cd[1] = {3};
    cs_tensor x = mkd(4, xd);
    cs_tensor p[4] = {mk(CS_DT_FLOAT, 1, cd, 0.5, 1.5), mk(CS_DT_FLOAT, 1, cd, -1, 1),
                      mk(CS_DT_FLOAT, 1, cd, -0.5, 0.5), mk(CS_DT_FLOAT, 1, cd, 0.3, 1.5)};
    cs_err err = {0};
    bool ran = true;
    for (int v = 0; v < 2; v++) {
        gc_init(&g[v], "BatchNormalization", 15);
        cs_tensor xc = {0};
        if (cs_tensor_copy(&xc, &x, NULL) != CS_OK)
            abort();
        gc_in(&g[v], xc, false);
        for (int i = 0; i < 4; i++) {
            cs_tensor pc = {0};
            cs_tensor_set_shape(&pc, v ? CS_DT_DOUBLE : CS_DT_FLOAT, 1, cd);
            if (cs_tensor_alloc(&pc, NULL) != CS_OK)
                abort();
            cs_convert(pc.data, pc.dtype, p[i].data, CS_DT_FLOAT, 3);
            gc_in(&g[v], pc, false);
        }
        op_test_outputs(&g[v].t, 1);
        ran = ran && op_test_run(&g[v].t, &err) == CS_OK;
    }
    if (ok(ran, "BatchNormalization float32 parameters, float64 X: forward (%s)", err.msg)) {
        ad_out o[2];
        for (int v = 0; v < 2; v++)
            ad_apply(&g[v].t, FD_INPUTS(0, 1, 2, 3, 4), &o[v]);
        static const char *const rule[3] = {"vjp", "jvp", "rop"};
        const cs_tensor *res[2][3] = {{o[0].gin, o[0].tout, o[0].rop},
                                      {o[1].gin, o[1].tout, o[1].rop}};
        for (int r = 0; r < 3; r++) {
            double rel;
            bool same = o[0].st[r] == CS_OK && o[1].st[r] == CS_OK &&
                        agree(res[0][r], res[1][r], 1e-6, &rel);
            ok(same, "BatchNormalization float32 parameters, float64 X: %s as all-float64 "
               "(max rel err %.2g)", rule[r], same ? rel : NAN);
        }
        ad_free(&o[0]);
        ad_free(&o[1]);
    }
    for (int v = 0; v < 2; v++)
        gc_free(&g[v]);
    cs_tensor_free(&x);
    for (int i = 0; i < 4; i++)
        cs_tensor_free(&p[i]);
}

/* ---- LayerNormalization ---- */

static void ln_case(const char *label, int ndim, const int64_t *xd, int64_t axis, int s_nd,
                    const int64_t *sd, int b_nd, const int64_t *bd, int n_out, int stash)
{
    gcase g;
    gc_init(&g, "LayerNormalization", 17);
    gc_in(&g, mkd(ndim, xd), false);
    gc_in(&g, mk(CS_DT_DOUBLE, s_nd, sd, 0.5, 1.5), false);
    if (bd)
        gc_in(&g, mkd(b_nd, bd), false);
    op_test_attr_int(&g.t, "axis", axis);
    if (stash)
        op_test_attr_int(&g.t, "stash_type", stash);
    op_test_outputs(&g.t, n_out);
    check_case(label, &g, bd ? FD_INPUTS(0, 1, 2) : FD_INPUTS(0, 1), NULL);
}

static void test_layernorm(void)
{
    ln_case("LayerNormalization axis -1", 3, (int64_t[]){3, 4, 5}, -1, 1, (int64_t[]){5}, 1,
            (int64_t[]){5}, 1, 0);
    ln_case("LayerNormalization axis 1, Scale and B [3, 4]", 3, (int64_t[]){2, 3, 4}, 1, 2,
            (int64_t[]){3, 4}, 2, (int64_t[]){3, 4}, 1, 0);
    ln_case("LayerNormalization axis 1, Scale [4] and B [1, 4] broadcast", 3,
            (int64_t[]){2, 3, 4}, 1, 1, (int64_t[]){4}, 2, (int64_t[]){1, 4}, 1, 0);
    ln_case("LayerNormalization axis 0 (one row), Scale [3, 1]", 3, (int64_t[]){2, 3, 2}, 0, 2,
            (int64_t[]){3, 1}, 1, (int64_t[]){2}, 1, 0);
    ln_case("LayerNormalization axis -2, no B, Mean and InvStdDev (double)", 4,
            (int64_t[]){2, 2, 3, 4}, -2, 2, (int64_t[]){3, 4}, 0, NULL, 3, CS_DT_DOUBLE);
    ln_case("LayerNormalization axis -1, Mean and InvStdDev, B", 2, (int64_t[]){4, 6}, -1, 1,
            (int64_t[]){6}, 1, (int64_t[]){6}, 3, CS_DT_DOUBLE);
    /* float Mean / InvStdDev of a double X: no gradient flows through them
     * in the finite differences (fd_check uses float64 outputs only) */
    ln_case("LayerNormalization axis -1, float statistics outputs", 2, (int64_t[]){3, 5}, -1, 1,
            (int64_t[]){5}, 1, (int64_t[]){5}, 3, 0);
}

/* ---- registration ---- */

static void test_flags(void)
{
    static const char *const linear[] = {"MaxPool", "AveragePool", "GlobalAveragePool"};
    static const char *const second[] = {"Conv", "BatchNormalization", "LayerNormalization"};
    for (int i = 0; i < 3; i++) {
        const cs_op_def *op = cs_op_find(linear[i], "");
        ok(op && op->vjp && op->jvp && !op->rop && (op->flags & CS_OP_LINEAR),
           "%s: vjp and jvp, flagged linear, no rop", linear[i]);
        op = cs_op_find(second[i], "");
        ok(op && op->vjp && op->jvp && op->rop && !(op->flags & (CS_OP_LINEAR | CS_OP_NO_GRAD)),
           "%s: vjp, jvp and rop, not flagged linear", second[i]);
    }
}

int main(void)
{
    test_flags();
    test_conv();
    test_pool();
    test_maxpool_empty_window();
    test_maxpool_tie();
    test_maxpool_2x2_route(CS_DT_FLOAT);
    test_maxpool_2x2_route(CS_DT_DOUBLE);
    test_batchnorm();
    test_batchnorm_mixed();
    test_layernorm();
    return tap_done();
}
