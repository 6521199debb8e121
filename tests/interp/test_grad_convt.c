/* ConvTranspose: the forward against its definition summed term by term,
 * in float64 and float32, and the derivative rules by central finite
 * differences in float64 (fd_check.h: vjp, jvp and the R-op's
 * second-order term), over groups, strides, pads, dilations,
 * output_padding, output_shape, auto_pad and bias, in 1-D to 3-D.  The
 * ONNX backend node tests (test_conformance) check the forward too.  Also
 * tensor/im2col.h's transposed unfolding (K-FAC's patches) in both
 * precisions against its definition. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fd_check.h"
#include "tensor/im2col.h"

static uint64_t rng = 11;

/* An owned tensor of dtype dt and shape dims, uniform in [-1, 1). */
static cs_tensor mk(cs_dtype dt, int ndim, const int64_t *dims)
{
    cs_tensor t = {0};
    cs_tensor_set_shape(&t, dt, ndim, dims);
    if (cs_tensor_alloc(&t, NULL) != CS_OK)
        abort();
    for (int64_t i = 0; i < cs_tensor_numel(&t); i++)
        cs_tensor_set_f64(&t, i, fd_rand_(&rng));
    return t;
}

/* A copy of t converted to dtype dt (owned). */
static cs_tensor convert(const cs_tensor *t, cs_dtype dt)
{
    cs_tensor r = {0};
    cs_tensor_set_shape(&r, dt, t->ndim, t->dims);
    if (cs_tensor_alloc(&r, NULL) != CS_OK)
        abort();
    for (int64_t i = 0; i < cs_tensor_numel(t); i++)
        cs_tensor_set_f64(&r, i, cs_tensor_get_f64(t, i));
    return r;
}

typedef struct convt_cfg {
    const char *label;
    int nd;
    int64_t n, c, m, group; /* m: output channels (W is [c, m / group, k...]) */
    int64_t in[3], k[3];
    const int64_t *strides, *pads, *dil, *opad, *oshape; /* NULL: attribute absent */
    const char *auto_pad;
    bool bias;
} convt_cfg;

static void set_attrs(op_test *t, const convt_cfg *cc)
{
    int nd = cc->nd;
    if (cc->group != 1)
        op_test_attr_int(t, "group", cc->group);
    if (cc->strides)
        op_test_attr_ints(t, "strides", nd, cc->strides);
    if (cc->pads)
        op_test_attr_ints(t, "pads", 2 * nd, cc->pads);
    if (cc->dil)
        op_test_attr_ints(t, "dilations", nd, cc->dil);
    if (cc->opad)
        op_test_attr_ints(t, "output_padding", nd, cc->opad);
    if (cc->oshape)
        op_test_attr_ints(t, "output_shape", nd, cc->oshape);
    if (cc->auto_pad)
        op_test_attr_string(t, "auto_pad", cc->auto_pad);
}

/* The definition, term by term (naive):
 *   Y[n, g Mg + j, y] = B + sum_{c in group g} sum_k W[c, j, k] X[n, c, x]
 * over (x, k) with y_i = x_i s_i - p_i + k_i d_i on every axis, with the
 * output extents of explicit pads (no output_shape, no auto_pad). */
static bool naive_matches(const convt_cfg *cc, const cs_tensor *x, const cs_tensor *w,
                          const cs_tensor *b, const cs_tensor *y, double tol, double *worst)
{
    int nd = cc->nd;
    int64_t s[3] = {1, 1, 1}, d[3] = {1, 1, 1}, p[3] = {0}, ye[3] = {1, 1, 1};
    int64_t xe[3] = {1, 1, 1}, ke[3] = {1, 1, 1};
    for (int i = 0; i < nd; i++) {
        int j = 3 - nd + i;
        s[j] = cc->strides ? cc->strides[i] : 1;
        d[j] = cc->dil ? cc->dil[i] : 1;
        p[j] = cc->pads ? cc->pads[i] : 0;
        xe[j] = cc->in[i];
        ke[j] = cc->k[i];
        int64_t pe = cc->pads ? cc->pads[nd + i] : 0, op = cc->opad ? cc->opad[i] : 0;
        ye[j] = s[j] * (xe[j] - 1) + op + (ke[j] - 1) * d[j] + 1 - p[j] - pe;
        if (y->dims[2 + i] != ye[j])
            return false;
    }
    int64_t mg = cc->m / cc->group, cg = cc->c / cc->group;
    int64_t ty = ye[0] * ye[1] * ye[2], tx = xe[0] * xe[1] * xe[2], kk = ke[0] * ke[1] * ke[2];
    *worst = 0;
    for (int64_t n = 0; n < cc->n; n++)
        for (int64_t m = 0; m < cc->m; m++)
            for (int64_t q = 0; q < ty; q++) {
                int64_t yi[3] = {q / (ye[1] * ye[2]), q / ye[2] % ye[1], q % ye[2]};
                int64_t grp = m / mg, j = m % mg;
                double sum = b ? cs_tensor_get_f64(b, m) : 0;
                for (int64_t c = grp * cg; c < (grp + 1) * cg; c++)
                    for (int64_t r = 0; r < tx; r++) {
                        int64_t xi[3] = {r / (xe[1] * xe[2]), r / xe[2] % xe[1], r % xe[2]};
                        for (int64_t t = 0; t < kk; t++) {
                            int64_t ki[3] = {t / (ke[1] * ke[2]), t / ke[2] % ke[1], t % ke[2]};
                            bool hit = true;
                            for (int a = 0; a < 3; a++)
                                hit = hit && xi[a] * s[a] - p[a] + ki[a] * d[a] == yi[a];
                            if (hit)
                                sum += cs_tensor_get_f64(w, (c * mg + j) * kk + t) *
                                       cs_tensor_get_f64(x, (n * cc->c + c) * tx + r);
                        }
                    }
                double e = fabs(cs_tensor_get_f64(y, (n * cc->m + m) * ty + q) - sum);
                *worst = fmax(*worst, e);
            }
    return *worst <= tol;
}

static void convt_case(const convt_cfg *cc)
{
    int nd = cc->nd;
    int64_t xd[5] = {cc->n, cc->c}, wd[5] = {cc->c, cc->m / cc->group}, bd[1] = {cc->m};
    for (int i = 0; i < nd; i++) {
        xd[2 + i] = cc->in[i];
        wd[2 + i] = cc->k[i];
    }
    cs_tensor x = mk(CS_DT_DOUBLE, 2 + nd, xd), w = mk(CS_DT_DOUBLE, 2 + nd, wd);
    cs_tensor b = mk(CS_DT_DOUBLE, 1, bd);
    cs_err err = {0};

    /* forward in both precisions against the definition (explicit pads only:
     * the output_shape / auto_pad extents are the backend node tests') */
    for (int prec = 0; prec < 2 && !cc->oshape && !cc->auto_pad; prec++) {
        cs_dtype dt = prec ? CS_DT_FLOAT : CS_DT_DOUBLE;
        cs_tensor xc = convert(&x, dt), wc = convert(&w, dt), bc = convert(&b, dt);
        op_test t;
        op_test_init(&t, "ConvTranspose", 17);
        op_test_input(&t, &xc);
        op_test_input(&t, &wc);
        if (cc->bias)
            op_test_input(&t, &bc);
        set_attrs(&t, cc);
        op_test_outputs(&t, 1);
        double worst = 0;
        cs_status st = op_test_run(&t, &err);
        bool same = st == CS_OK && naive_matches(cc, &x, &w, cc->bias ? &b : NULL, t.out[0],
                                                 prec ? 1e-5 : 1e-12, &worst);
        ok(same, "%s: %s forward equals the definition (worst %.2g) %s", cc->label,
           prec ? "float32" : "float64", worst, st ? err.msg : "");
        op_test_free(&t);
        cs_tensor_free(&xc);
        cs_tensor_free(&wc);
        cs_tensor_free(&bc);
    }

    op_test t;
    op_test_init(&t, "ConvTranspose", 17);
    op_test_input(&t, &x);
    op_test_input(&t, &w);
    if (cc->bias)
        op_test_input(&t, &b);
    set_attrs(&t, cc);
    op_test_outputs(&t, 1);
    fd_opts o = fd_default();
    fd_check_op(cc->label, &t, cc->bias ? FD_INPUTS(0, 1, 2) : FD_INPUTS(0, 1), &o);
    op_test_free(&t);
    cs_tensor_free(&x);
    cs_tensor_free(&w);
    cs_tensor_free(&b);
}

static void test_cases(void)
{
    static const int64_t s2[] = {2}, s22[] = {2, 2}, s32[] = {3, 2}, s121[] = {1, 2, 1};
    static const int64_t p12[] = {1, 2}, p1[] = {1, 1, 1, 1}, pasym[] = {0, 1, 2, 0};
    static const int64_t d2[] = {2}, d21[] = {2, 1}, d112[] = {1, 1, 2};
    static const int64_t op1[] = {1}, op11[] = {1, 1}, op10[] = {1, 0}, op010[] = {0, 1, 0};
    static const int64_t p3d[] = {1, 0, 0, 0, 1, 1}, osh[] = {10, 8};
    const convt_cfg cases[] = {
        {"ConvTranspose 2-D, bias", 2, 2, 3, 2, 1, {4, 3}, {3, 3}, NULL, NULL, NULL, NULL, NULL,
         NULL, true},
        {"ConvTranspose 2-D strides 2, pads 1, output_padding 1x1, bias", 2, 2, 2, 3, 1, {3, 4},
         {3, 3}, s22, p1, NULL, op11, NULL, NULL, true},
        {"ConvTranspose 2-D group 2, dilations 2x1, no bias", 2, 2, 4, 6, 2, {3, 3}, {3, 2},
         NULL, NULL, d21, NULL, NULL, NULL, false},
        {"ConvTranspose 2-D group 2, strides 3x2, asymmetric pads, output_padding 1x0, bias", 2,
         1, 4, 2, 2, {3, 3}, {3, 3}, s32, pasym, NULL, op10, NULL, NULL, true},
        {"ConvTranspose 2-D depthwise (group = C = M), strides 2", 2, 2, 3, 3, 3, {3, 3}, {2, 2},
         s22, NULL, NULL, NULL, NULL, NULL, true},
        {"ConvTranspose 1-D strides 2, pads 1/2, dilation 2, output_padding 1, bias", 1, 3, 2,
         3, 1, {5}, {3}, s2, p12, d2, op1, NULL, NULL, true},
        {"ConvTranspose 3-D strides 1x2x1, pads, dilations 1x1x2, output_padding, group 2", 3,
         1, 2, 4, 2, {2, 3, 2}, {2, 2, 2}, s121, p3d, d112, op010, NULL, NULL, true},
        {"ConvTranspose 2-D output_shape 10x8 (padded at the end), strides 3x2", 2, 1, 1, 2, 1,
         {3, 3}, {3, 3}, s32, NULL, NULL, NULL, osh, NULL, true},
        {"ConvTranspose 2-D auto_pad SAME_UPPER, strides 2", 2, 2, 2, 2, 1, {3, 3}, {3, 3}, s22,
         NULL, NULL, NULL, NULL, "SAME_UPPER", false},
        {"ConvTranspose 2-D auto_pad SAME_LOWER, strides 2", 2, 2, 2, 2, 1, {3, 3}, {4, 3}, s22,
         NULL, NULL, NULL, NULL, "SAME_LOWER", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        convt_case(&cases[i]);
}

/* Run ConvTranspose on X [xd] (rank nd), W [wd] (rank nw), and B [bd] when
 * nb > 0; the status. */
static cs_status run_shapes(int nd, const int64_t *xd, int nw, const int64_t *wd, int nb,
                            const int64_t *bd, int64_t group, cs_err *err)
{
    cs_tensor x = mk(CS_DT_DOUBLE, nd, xd), w = mk(CS_DT_DOUBLE, nw, wd), b = {0};
    if (nb)
        b = mk(CS_DT_DOUBLE, 1, bd);
    op_test t;
    op_test_init(&t, "ConvTranspose", 17);
    op_test_input(&t, &x);
    op_test_input(&t, &w);
    if (nb)
        op_test_input(&t, &b);
    if (group != 1)
        op_test_attr_int(&t, "group", group);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, err);
    op_test_free(&t);
    cs_tensor_free(&x);
    cs_tensor_free(&w);
    cs_tensor_free(&b);
    return st;
}

static void test_errors(void)
{
    cs_err err = {0};
    ok(run_shapes(4, (int64_t[]){1, 3, 4, 4}, 4, (int64_t[]){2, 2, 3, 3}, 0, NULL, 1, &err) ==
           CS_ERR_SHAPE,
       "ConvTranspose: X with 3 channels, W [2, ...] -> shape error");
    ok(run_shapes(4, (int64_t[]){1, 3, 4, 4}, 4, (int64_t[]){3, 2, 3, 3}, 0, NULL, 2, &err) ==
           CS_ERR_SHAPE,
       "ConvTranspose: 3 channels do not split into 2 groups -> shape error");
    ok(run_shapes(4, (int64_t[]){1, 2, 4, 4}, 4, (int64_t[]){2, 2, 3, 3}, 1, (int64_t[]){3}, 1,
                  &err) == CS_ERR_SHAPE,
       "ConvTranspose: bias of 3 for 2 output channels -> shape error");
    ok(run_shapes(4, (int64_t[]){1, 2, 4, 4}, 3, (int64_t[]){2, 2, 3}, 0, NULL, 1, &err) ==
           CS_ERR_SHAPE,
       "ConvTranspose: W of rank 3 for X of rank 4 -> shape error");
    ok(run_shapes(6, (int64_t[]){1, 1, 2, 2, 2, 2}, 6, (int64_t[]){1, 1, 1, 1, 1, 1}, 0, NULL, 1,
                  &err) == CS_ERR_UNSUPPORTED,
       "ConvTranspose: 4 spatial axes -> unsupported");

    /* pads larger than the output */
    cs_tensor x = mk(CS_DT_DOUBLE, 3, (int64_t[]){1, 1, 2});
    cs_tensor w = mk(CS_DT_DOUBLE, 3, (int64_t[]){1, 1, 2});
    op_test t;
    op_test_init(&t, "ConvTranspose", 17);
    op_test_input(&t, &x);
    op_test_input(&t, &w);
    op_test_attr_ints(&t, "pads", 2, (int64_t[]){2, 2});
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "ConvTranspose: pads 2 + 2 on an extent of 3 -> shape error");
    op_test_free(&t);
    cs_tensor_free(&x);
    cs_tensor_free(&w);
}

/* cs_im2col_transposed (the patches K-FAC unfolds a ConvTranspose layer's
 * input into) against its definition, in float64 and float32: 2-D,
 * 2 channels, kernel 3x2, strides 2x1, begin pads 1/0, dilations 1x2 on a
 * 2x3 input (output 5x4, as tests/models/tiny_convt64). */
static void test_transposed_patches(void)
{
    cs_conv_geom g = {.spatial_rank = 2, .channels = 2};
    const int64_t in[3] = {1, 5, 4}, out[3] = {1, 2, 3}, k[3] = {1, 3, 2}, s[3] = {1, 2, 1};
    const int64_t d[3] = {1, 1, 2}, pb[3] = {0, 1, 0};
    for (int i = 0; i < 3; i++) {
        g.in[i] = in[i], g.out[i] = out[i], g.kernel[i] = k[i], g.stride[i] = s[i];
        g.dilation[i] = d[i], g.pad_begin[i] = pb[i];
    }
    g.in_size = 20, g.out_size = 6, g.kernel_size = 6;
    enum { ROWS = 12, TY = 20, LD = 23 }; /* a wider leading dimension than T */
    double x[12], col[ROWS * LD];
    float xf[12], colf[ROWS * LD];
    for (int i = 0; i < 12; i++)
        xf[i] = (float)(x[i] = fd_rand_(&rng));
    for (int i = 0; i < ROWS * LD; i++)
        col[i] = colf[i] = 7; /* every entry of a row must be written */
    cs_im2col_transposed_f64(&g, x, col, LD);
    cs_im2col_transposed_f32(&g, xf, colf, LD);
    double worst = 0, worst_f = 0;
    for (int r = 0; r < ROWS; r++)
        for (int t = 0; t < TY; t++) {
            int c = r / 6, kh = r % 6 / 2, kw = r % 2, yh = t / 4, yw = t % 4;
            int nh = yh + 1 - kh, nw = yw - 2 * kw; /* y = x s - p + k d */
            double want = nh >= 0 && nw >= 0 && nh % 2 == 0 && nh / 2 < 2 && nw < 3 ? x[c * 6 + nh / 2 * 3 + nw] : 0;
            worst = fmax(worst, fabs(col[r * LD + t] - want));
            worst_f = fmax(worst_f, fabs(colf[r * LD + t] - (float)want));
        }
    ok(worst == 0, "cs_im2col_transposed_f64 equals the scatter definition (max err %.2g)", worst);
    ok(worst_f == 0, "cs_im2col_transposed_f32 equals it too (max err %.2g)", worst_f);
}

static void test_flags(void)
{
    const cs_op_def *op = cs_op_find("ConvTranspose", "");
    ok(op && op->vjp && op->jvp && op->rop && !(op->flags & (CS_OP_LINEAR | CS_OP_NO_GRAD)),
       "ConvTranspose: vjp, jvp and rop (bilinear in X and W), not flagged linear");
}

int main(void)
{
    test_flags();
    test_cases();
    test_errors();
    test_transposed_patches();
    return tap_done();
}
