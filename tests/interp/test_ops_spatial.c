/* Spatial operators: Conv, MaxPool, AveragePool, GlobalAveragePool,
 * BatchNormalization, LayerNormalization, and the im2col shared with K-FAC.
 *
 * Each operator runs through op_test.h (infer + forward) on random inputs
 * and is compared with a direct evaluation of its definition written here:
 * nested loops over output positions and window taps in n dimensions, with
 * the padding tested per tap, so the reference shares no index arithmetic
 * with the kernels (which normalise to three axes and clip tap ranges). */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../tap.h"
#include "interp/window.h"
#include "op_test.h"

/* ---- helpers ---- */

static uint32_t rng_state = 12345u;

/* Deterministic values in [lo, hi). */
static double rnd(double lo, double hi)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return lo + (hi - lo) * ((rng_state >> 8) / 16777216.0);
}

/* An owned tensor of the given shape; filled with rnd(-1, 1) when random. */
static cs_tensor make(cs_dtype dt, int ndim, const int64_t *dims, bool random)
{
    cs_tensor t;
    cs_err err;
    memset(&t, 0, sizeof t);
    cs_tensor_set_shape(&t, dt, ndim, dims);
    if (cs_tensor_alloc(&t, &err)) {
        diag("allocation failed: %s", err.msg);
        exit(1);
    }
    if (random)
        for (int64_t i = 0; i < cs_tensor_numel(&t); i++)
            cs_tensor_set_f64(&t, i, rnd(-1, 1));
    return t;
}

static int64_t prod(int n, const int64_t *v)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        p *= v[i];
    return p;
}

/* Advance a multi-index idx over extents ext (n axes, last fastest);
 * returns false after the last one. */
static bool next_index(int n, const int64_t *ext, int64_t *idx)
{
    for (int i = n - 1; i >= 0; i--) {
        if (++idx[i] < ext[i])
            return true;
        idx[i] = 0;
    }
    return false;
}

/* Compare got (a tensor) with want (doubles); one ok line for the shape and
 * one for the values. */
static void check_values(const char *name, const cs_tensor *got, int ndim, const int64_t *dims,
                         const double *want, double rtol, double atol)
{
    bool shape_ok = got->ndim == ndim;
    for (int i = 0; shape_ok && i < ndim; i++)
        shape_ok = got->dims[i] == dims[i];
    char b1[96], b2[96];
    cs_tensor ref;
    memset(&ref, 0, sizeof ref);
    cs_tensor_set_shape(&ref, CS_DT_DOUBLE, ndim, dims);
    if (!ok(shape_ok, "%s: shape", name)) {
        diag("got %s, want %s", cs_shape_str(got, b1, sizeof b1),
             cs_shape_str(&ref, b2, sizeof b2));
        skip("%s: values (shape differs)", name);
        return;
    }
    int64_t n = prod(ndim, dims), bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (!tap_close(cs_tensor_get_f64(got, i), want[i], rtol, atol)) {
            if (first < 0)
                first = i;
            bad++;
        }
    if (!ok(bad == 0, "%s: values", name))
        diag("%lld of %lld differ; first at %lld: got %.9g, want %.9g", (long long)bad,
             (long long)n, (long long)first, cs_tensor_get_f64(got, first), want[first]);
}

static double tol_r(cs_dtype dt)
{
    return dt == CS_DT_FLOAT ? 1e-4 : 1e-11;
}

static double tol_a(cs_dtype dt)
{
    return dt == CS_DT_FLOAT ? 1e-5 : 1e-12;
}

/* ---- Conv ---- */

typedef struct conv_case {
    const char *name;
    cs_dtype dt;
    int nd;                 /* spatial axes */
    int64_t n, c, m, group;
    int64_t in[3], k[3], s[3], d[3];
    int64_t pb[3], pe[3];   /* explicit pads (ignored with auto_pad) */
    bool bias;
    const char *auto_pad;   /* NULL: pads attribute */
    bool kernel_shape;      /* also pass kernel_shape */
} conv_case;

/* Padding the ONNX spec derives for SAME_UPPER / SAME_LOWER / VALID. */
static void auto_pads(const conv_case *cc, int64_t *pb, int64_t *pe)
{
    for (int i = 0; i < cc->nd; i++) {
        if (strcmp(cc->auto_pad, "VALID") == 0) {
            pb[i] = pe[i] = 0;
            continue;
        }
        int64_t out = (cc->in[i] + cc->s[i] - 1) / cc->s[i];
        int64_t total = (out - 1) * cc->s[i] + (cc->k[i] - 1) * cc->d[i] + 1 - cc->in[i];
        if (total < 0)
            total = 0;
        int64_t small = total / 2, big = total - small;
        bool upper = strcmp(cc->auto_pad, "SAME_UPPER") == 0;
        pb[i] = upper ? small : big;
        pe[i] = upper ? big : small;
    }
}

/* Direct convolution by its definition, in double. y is [N, M, out...]. */
static void conv_reference(const conv_case *cc, const int64_t *pb, const int64_t *out,
                           const cs_tensor *x, const cs_tensor *w, const cs_tensor *b, double *y)
{
    int nd = cc->nd;
    int64_t cg = cc->c / cc->group, mg = cc->m / cc->group;
    int64_t in_sz = prod(nd, cc->in), out_sz = prod(nd, out), k_sz = prod(nd, cc->k);
    for (int64_t n = 0; n < cc->n; n++)
        for (int64_t m = 0; m < cc->m; m++) {
            int64_t o[3] = {0, 0, 0};
            for (int64_t q = 0; q < out_sz; q++, next_index(nd, out, o)) {
                double acc = b ? cs_tensor_get_f64(b, m) : 0;
                for (int64_t ci = 0; ci < cg; ci++) {
                    int64_t cin = (m / mg) * cg + ci;
                    int64_t k[3] = {0, 0, 0};
                    for (int64_t t = 0; t < k_sz; t++, next_index(nd, cc->k, k)) {
                        int64_t xoff = 0, woff = 0;
                        bool inside = true;
                        for (int a = 0; a < nd; a++) {
                            int64_t i = o[a] * cc->s[a] - pb[a] + k[a] * cc->d[a];
                            inside = inside && i >= 0 && i < cc->in[a];
                            xoff = xoff * cc->in[a] + i;
                            woff = woff * cc->k[a] + k[a];
                        }
                        if (!inside)
                            continue;
                        acc += cs_tensor_get_f64(x, (n * cc->c + cin) * in_sz + xoff) *
                               cs_tensor_get_f64(w, (m * cg + ci) * k_sz + woff);
                    }
                }
                y[(n * cc->m + m) * out_sz + q] = acc;
            }
        }
}

static void run_conv_case(const conv_case *cc)
{
    int nd = cc->nd;
    int64_t xd[5] = {cc->n, cc->c}, wd[5] = {cc->m, cc->c / cc->group}, bd[1] = {cc->m};
    for (int i = 0; i < nd; i++) {
        xd[2 + i] = cc->in[i];
        wd[2 + i] = cc->k[i];
    }
    cs_tensor x = make(cc->dt, 2 + nd, xd, true);
    cs_tensor w = make(cc->dt, 2 + nd, wd, true);
    cs_tensor b = make(cc->dt, 1, bd, true);

    int64_t pads[6], pb[3], pe[3], out[3], yd[5] = {cc->n, cc->m};
    if (cc->auto_pad) {
        auto_pads(cc, pb, pe);
    } else {
        memcpy(pb, cc->pb, sizeof pb);
        memcpy(pe, cc->pe, sizeof pe);
    }
    for (int i = 0; i < nd; i++) {
        pads[i] = cc->pb[i];
        pads[nd + i] = cc->pe[i];
        out[i] = (cc->in[i] + pb[i] + pe[i] - (cc->k[i] - 1) * cc->d[i] - 1) / cc->s[i] + 1;
        yd[2 + i] = out[i];
    }
    int64_t y_n = prod(2 + nd, yd);
    double *want = malloc((size_t)y_n * sizeof *want);
    conv_reference(cc, pb, out, &x, &w, cc->bias ? &b : NULL, want);

    op_test t;
    op_test_init(&t, "Conv", 17);
    op_test_attr_ints(&t, "strides", nd, cc->s);
    op_test_attr_ints(&t, "dilations", nd, cc->d);
    op_test_attr_int(&t, "group", cc->group);
    if (cc->auto_pad)
        op_test_attr_string(&t, "auto_pad", cc->auto_pad);
    else
        op_test_attr_ints(&t, "pads", 2 * nd, pads);
    if (cc->kernel_shape)
        op_test_attr_ints(&t, "kernel_shape", nd, cc->k);
    op_test_input(&t, &x);
    op_test_input(&t, &w);
    if (cc->bias)
        op_test_input(&t, &b);
    op_test_outputs(&t, 1);
    cs_err err;
    cs_status st = op_test_run(&t, &err);
    if (ok(st == CS_OK, "Conv %s: runs", cc->name))
        check_values(cc->name, t.out[0], 2 + nd, yd, want, tol_r(cc->dt), 10 * tol_a(cc->dt));
    else
        diag("%s", err.msg);
    op_test_free(&t);
    free(want);
    cs_tensor_free(&x);
    cs_tensor_free(&w);
    cs_tensor_free(&b);
}

static const conv_case conv_cases[] = {
    {"2-D 3x3 pad 1, bias, float", CS_DT_FLOAT, 2, 2, 3, 4, 1, {7, 6}, {3, 3}, {1, 1}, {1, 1},
     {1, 1}, {1, 1}, true, NULL, true},
    {"2-D groups 2, dilation, stride, asymmetric pads, double", CS_DT_DOUBLE, 2, 2, 4, 6, 2,
     {9, 8}, {3, 2}, {2, 1}, {2, 1}, {1, 0}, {2, 1}, false, NULL, false},
    {"2-D depthwise multiplier 2, float", CS_DT_FLOAT, 2, 3, 4, 8, 4, {6, 6}, {3, 3}, {1, 1},
     {1, 1}, {1, 1}, {1, 1}, true, NULL, true},
    {"2-D depthwise stride 2, double", CS_DT_DOUBLE, 2, 2, 5, 5, 5, {7, 9}, {3, 3}, {2, 2},
     {1, 1}, {0, 1}, {1, 0}, true, NULL, false},
    {"1-D stride 2, dilation 3, pads (2, 1), float", CS_DT_FLOAT, 1, 2, 3, 2, 1, {11}, {3},
     {2}, {3}, {2}, {1}, true, NULL, true},
    {"1-D groups 3, double", CS_DT_DOUBLE, 1, 3, 6, 3, 3, {10}, {4}, {1}, {1}, {0}, {3}, false,
     NULL, false},
    {"3-D stride, dilation, asymmetric pads, bias, double", CS_DT_DOUBLE, 3, 2, 2, 3, 1,
     {5, 4, 6}, {2, 3, 2}, {2, 1, 2}, {1, 2, 1}, {1, 0, 1}, {0, 1, 1}, true, NULL, true},
    {"3-D groups 3, float", CS_DT_FLOAT, 3, 2, 6, 3, 3, {4, 5, 3}, {3, 2, 2}, {1, 1, 1},
     {1, 1, 1}, {1, 1, 0}, {1, 0, 1}, true, NULL, false},
    {"2-D SAME_UPPER even kernel stride (2, 3), float", CS_DT_FLOAT, 2, 2, 3, 4, 1, {7, 8},
     {4, 3}, {2, 3}, {1, 1}, {0}, {0}, true, "SAME_UPPER", false},
    {"2-D SAME_LOWER even kernel stride (2, 3), double", CS_DT_DOUBLE, 2, 2, 3, 4, 1, {7, 8},
     {4, 3}, {2, 3}, {1, 1}, {0}, {0}, true, "SAME_LOWER", false},
    {"1-D SAME_LOWER dilation 2, float", CS_DT_FLOAT, 1, 2, 2, 3, 1, {9}, {2}, {1}, {2}, {0},
     {0}, false, "SAME_LOWER", false},
    {"3-D SAME_UPPER, double", CS_DT_DOUBLE, 3, 1, 2, 2, 1, {5, 4, 3}, {2, 2, 3}, {2, 1, 2},
     {1, 1, 1}, {0}, {0}, true, "SAME_UPPER", false},
    {"2-D VALID stride 2, float", CS_DT_FLOAT, 2, 2, 3, 2, 1, {8, 7}, {3, 3}, {2, 2}, {1, 1},
     {0}, {0}, true, "VALID", false},
    /* T = 25 and 36: several samples per GEMM, the last chunk partial */
    {"2-D batch 40 of 5x5 (samples side by side), float", CS_DT_FLOAT, 2, 40, 3, 4, 1, {5, 5},
     {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, true, NULL, false},
    {"2-D batch 37 of 6x6, groups 2, double", CS_DT_DOUBLE, 2, 37, 4, 6, 2, {6, 6}, {3, 3},
     {1, 1}, {1, 1}, {1, 0}, {0, 1}, true, NULL, false},
    /* T = 1600: one GEMM per sample */
    {"2-D 40x40 (one sample per GEMM), float", CS_DT_FLOAT, 2, 2, 3, 5, 1, {40, 40}, {3, 3},
     {1, 1}, {1, 1}, {1, 1}, {1, 1}, true, NULL, false},
    {"2-D 1x1 stride 1 (X is the patch matrix), groups 2, double", CS_DT_DOUBLE, 2, 3, 6, 4,
     2, {9, 9}, {1, 1}, {1, 1}, {1, 1}, {0, 0}, {0, 0}, true, NULL, false},
    {"2-D 1x1 on 40x40 batch 2, float", CS_DT_FLOAT, 2, 2, 5, 3, 1, {40, 40}, {1, 1}, {1, 1},
     {1, 1}, {0, 0}, {0, 0}, false, NULL, false},
    {"2-D 1x1 stride 2 with padding, float", CS_DT_FLOAT, 2, 2, 3, 4, 1, {7, 6}, {1, 1},
     {2, 2}, {1, 1}, {1, 0}, {0, 1}, true, NULL, false},
};

/* Run Conv on X [xd], W [wd] with optional attributes; returns the status. */
static cs_status conv_try(int xn, const int64_t *xd, cs_dtype xdt, int wn, const int64_t *wd,
                          cs_dtype wdt, const int64_t *bd, int64_t group, const char *attr_name,
                          int attr_n, const int64_t *attr_v, cs_err *err)
{
    cs_tensor x = make(xdt, xn, xd, true), w = make(wdt, wn, wd, true), b;
    memset(&b, 0, sizeof b);
    if (bd)
        b = make(xdt, 1, bd, true);
    op_test t;
    op_test_init(&t, "Conv", 17);
    op_test_attr_int(&t, "group", group);
    if (attr_name)
        op_test_attr_ints(&t, attr_name, attr_n, attr_v);
    op_test_input(&t, &x);
    op_test_input(&t, &w);
    if (bd)
        op_test_input(&t, &b);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, err);
    op_test_free(&t);
    cs_tensor_free(&x);
    cs_tensor_free(&w);
    if (bd)
        cs_tensor_free(&b);
    return st;
}

static void test_conv_errors(void)
{
    cs_err err;
    cs_status st;
    int64_t x4[4] = {1, 3, 5, 5};
    st = conv_try(4, x4, CS_DT_FLOAT, 4, (int64_t[]){2, 4, 3, 3}, CS_DT_FLOAT, NULL, 1, NULL, 0,
                  NULL, &err);
    ok(st == CS_ERR_SHAPE, "Conv: X with 3 channels, W expecting 4 -> shape error");
    diag("message: %s", err.msg);
    st = conv_try(4, x4, CS_DT_FLOAT, 4, (int64_t[]){2, 1, 3, 3}, CS_DT_FLOAT, NULL, 2, NULL, 0,
                  NULL, &err);
    ok(st == CS_ERR_SHAPE, "Conv: 3 channels do not split into 2 groups -> shape error");
    int64_t x6[4] = {1, 4, 5, 5};
    st = conv_try(4, x6, CS_DT_FLOAT, 4, (int64_t[]){3, 2, 3, 3}, CS_DT_FLOAT, NULL, 2, NULL, 0,
                  NULL, &err);
    ok(st == CS_ERR_SHAPE, "Conv: 3 output channels, group 2 -> shape error");
    st = conv_try(4, x4, CS_DT_FLOAT, 4, (int64_t[]){2, 3, 3, 3}, CS_DT_FLOAT, (int64_t[]){3},
                  1, NULL, 0, NULL, &err);
    ok(st == CS_ERR_SHAPE, "Conv: bias of 3 for 2 output channels -> shape error");
    st = conv_try(4, x4, CS_DT_FLOAT, 4, (int64_t[]){2, 3, 3, 3}, CS_DT_FLOAT, NULL, 1,
                  "kernel_shape", 2, (int64_t[]){3, 2}, &err);
    ok(st == CS_ERR_SHAPE, "Conv: kernel_shape differing from W -> shape error");
    st = conv_try(4, x4, CS_DT_FLOAT, 4, (int64_t[]){2, 3, 3, 3}, CS_DT_FLOAT, NULL, 1, "pads",
                  2, (int64_t[]){1, 1}, &err);
    ok(st == CS_ERR_FORMAT, "Conv: 2 pads for 2 spatial axes -> format error");
    st = conv_try(4, x4, CS_DT_FLOAT, 4, (int64_t[]){2, 3, 3, 3}, CS_DT_FLOAT, NULL, 1,
                  "strides", 2, (int64_t[]){0, 1}, &err);
    ok(st == CS_ERR_FORMAT, "Conv: stride 0 -> format error");
    st = conv_try(4, x4, CS_DT_FLOAT, 4, (int64_t[]){2, 3, 7, 3}, CS_DT_FLOAT, NULL, 1, NULL, 0,
                  NULL, &err);
    ok(st == CS_ERR_SHAPE, "Conv: kernel larger than the input -> shape error");
    st = conv_try(2, (int64_t[]){1, 3}, CS_DT_FLOAT, 2, (int64_t[]){2, 3}, CS_DT_FLOAT, NULL, 1,
                  NULL, 0, NULL, &err);
    ok(st == CS_ERR_SHAPE, "Conv: X of rank 2 -> shape error");
    st = conv_try(6, (int64_t[]){1, 1, 2, 2, 2, 2}, CS_DT_FLOAT, 6, (int64_t[]){1, 1, 1, 1, 1, 1},
                  CS_DT_FLOAT, NULL, 1, NULL, 0, NULL, &err);
    ok(st == CS_ERR_UNSUPPORTED, "Conv: 4 spatial axes -> unsupported");
    st = conv_try(4, x4, CS_DT_FLOAT, 4, (int64_t[]){2, 3, 3, 3}, CS_DT_DOUBLE, NULL, 1, NULL, 0,
                  NULL, &err);
    ok(st == CS_ERR_SHAPE, "Conv: float X with double W -> shape error");
    st = conv_try(4, x4, CS_DT_INT32, 4, (int64_t[]){2, 3, 3, 3}, CS_DT_INT32, NULL, 1, NULL, 0,
                  NULL, &err);
    ok(st == CS_ERR_UNSUPPORTED, "Conv: int32 X -> unsupported");

    cs_tensor x = make(CS_DT_FLOAT, 4, x4, true);
    cs_tensor w = make(CS_DT_FLOAT, 4, (int64_t[]){2, 3, 3, 3}, true);
    op_test t;
    op_test_init(&t, "Conv", 17);
    op_test_attr_string(&t, "auto_pad", "SAME");
    op_test_input(&t, &x);
    op_test_input(&t, &w);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_FORMAT, "Conv: auto_pad 'SAME' -> format error");
    op_test_free(&t);
    cs_tensor_free(&x);
    cs_tensor_free(&w);
}

/* ---- im2col (the K-FAC patches) ---- */

static void test_im2col(void)
{
    /* X [2, 4, 6, 5], W [6, 2, 3, 2], group 2: patches of group 1 of sample 1. */
    int64_t xd[4] = {2, 4, 6, 5}, wd[4] = {6, 2, 3, 2};
    int64_t strides[2] = {2, 1}, dil[2] = {1, 2}, pads[4] = {1, 0, 1, 2};
    cs_tensor x = make(CS_DT_DOUBLE, 4, xd, true), w = make(CS_DT_DOUBLE, 4, wd, true);
    op_test t;
    op_test_init(&t, "Conv", 17);
    op_test_attr_int(&t, "group", 2);
    op_test_attr_ints(&t, "strides", 2, strides);
    op_test_attr_ints(&t, "dilations", 2, dil);
    op_test_attr_ints(&t, "pads", 4, pads);
    cs_conv_geom g;
    int64_t group = 0;
    cs_err err;
    cs_status st = cs_conv_geometry(&t.node, &x, &w, &g, &group, &err);
    ok(st == CS_OK && group == 2 && g.channels == 2, "cs_conv_geometry: group 2, 2 channels");
    /* out = floor((6 + 2 - 3) / 2) + 1 = 3, floor((5 + 2 - 3) / 1) + 1 = 5 */
    ok(g.out_size == 15 && g.kernel_size == 6 && cs_conv_patch_rows(&g) == 12,
       "cs_conv_geometry: T = 15, prod(kernel) = 6, K = 12");
    if (st)
        diag("%s", err.msg);

    int64_t k_rows = cs_conv_patch_rows(&g), n_pos = g.out_size, ld = n_pos + 3;
    double *col = calloc((size_t)(k_rows * ld), sizeof *col);
    const double *xs = (const double *)x.data + (1 * 4 + 2) * 30; /* sample 1, channel 2 */
    cs_im2col_f64(&g, xs, col, ld);
    /* The definition: row (c, kh, kw), column (oh, ow). */
    int bad = 0;
    for (int64_t c = 0; c < 2; c++)
        for (int64_t kh = 0; kh < 3; kh++)
            for (int64_t kw = 0; kw < 2; kw++)
                for (int64_t oh = 0; oh < 3; oh++)
                    for (int64_t ow = 0; ow < 5; ow++) {
                        int64_t ih = oh * 2 - 1 + kh, iw = ow - 0 + kw * 2;
                        double v = ih >= 0 && ih < 6 && iw >= 0 && iw < 5
                                       ? xs[(c * 6 + ih) * 5 + iw]
                                       : 0.0;
                        bad += col[((c * 3 + kh) * 2 + kw) * ld + oh * 5 + ow] != v;
                    }
    ok(bad == 0, "im2col: rows (c, kh, kw), columns (oh, ow), zero padding (%d wrong)", bad);

    /* The "same"-size, stride-1 path (one shifted copy per patch row, the
     * wrapped columns zeroed) against the definition: 3x3 with pads 1, 5x5
     * with asymmetric pads (1 before, 3 after), 1x3 with pads 0/2, in both
     * precisions; the columns are padded (ld > T). */
    {
        static const int64_t kh_[3] = {3, 5, 1}, kw_[3] = {3, 5, 3};
        static const int64_t pads_[3][4] = {{1, 1, 1, 1}, {1, 1, 3, 3}, {0, 0, 0, 2}};
        int bad_same = 0, fast = 0;
        for (int k = 0; k < 3; k++) {
            int64_t xs4[4] = {1, 2, 6, 7}, ws4[4] = {1, 2, kh_[k], kw_[k]};
            cs_tensor xq = make(CS_DT_DOUBLE, 4, xs4, true), wq = make(CS_DT_DOUBLE, 4, ws4, true);
            op_test tq;
            op_test_init(&tq, "Conv", 17);
            op_test_attr_ints(&tq, "pads", 4, pads_[k]);
            cs_conv_geom gq;
            int64_t gr;
            if (cs_conv_geometry(&tq.node, &xq, &wq, &gq, &gr, &err) != CS_OK) {
                bad_same++;
            } else {
                fast += gq.out[1] == 6 && gq.out[2] == 7;
                int64_t K = cs_conv_patch_rows(&gq), T = gq.out_size, L = T + 5;
                double *cd = calloc((size_t)(K * L), sizeof *cd);
                float *cf = calloc((size_t)(K * L), sizeof *cf), *xf1 = malloc(sizeof(float) * 84);
                for (int i = 0; i < 84; i++)
                    xf1[i] = (float)((double *)xq.data)[i];
                cs_im2col_f64(&gq, xq.data, cd, L);
                cs_im2col_f32(&gq, xf1, cf, L);
                for (int64_t c = 0; c < 2; c++)
                    for (int64_t a = 0; a < kh_[k]; a++)
                        for (int64_t b = 0; b < kw_[k]; b++)
                            for (int64_t oh = 0; oh < 6; oh++)
                                for (int64_t ow = 0; ow < 7; ow++) {
                                    int64_t ih = oh - pads_[k][0] + a, iw = ow - pads_[k][1] + b;
                                    double v = ih >= 0 && ih < 6 && iw >= 0 && iw < 7
                                                   ? ((double *)xq.data)[(c * 6 + ih) * 7 + iw]
                                                   : 0.0;
                                    int64_t at_ = ((c * kh_[k] + a) * kw_[k] + b) * L + oh * 7 + ow;
                                    bad_same += cd[at_] != v || cf[at_] != (float)v;
                                }
                /* col2im on this path: the adjoint, <im2col(x), r> = <x, col2im(r)> */
                double *rr = malloc(sizeof(double) * (size_t)(K * L)), *bk = calloc(84, sizeof(double));
                double lhs_s = 0, rhs_s = 0;
                for (int64_t i = 0; i < K * L; i++)
                    rr[i] = (i % L) < T ? rnd(-1, 1) : 0;
                cs_col2im_f64(&gq, rr, L, bk);
                for (int64_t i = 0; i < K * L; i++)
                    lhs_s += cd[i] * rr[i];
                for (int i = 0; i < 84; i++)
                    rhs_s += ((double *)xq.data)[i] * bk[i];
                bad_same += !tap_close(lhs_s, rhs_s, 1e-12, 1e-12) || lhs_s == 0;
                free(rr), free(bk);
                free(cd), free(cf), free(xf1);
            }
            op_test_free(&tq);
            cs_tensor_free(&xq);
            cs_tensor_free(&wq);
        }
        ok(fast == 3 && bad_same == 0,
           "im2col, same-size stride-1 path: every element as the definition, col2im its adjoint "
           "(%d wrong)", bad_same);
    }

    /* Adjoint: <im2col(x), r> = <x, col2im(r)>, on a 3-D geometry. */
    int64_t x3[5] = {1, 2, 5, 4, 6}, w3[5] = {1, 2, 2, 3, 2};
    int64_t s3[3] = {2, 1, 2}, d3[3] = {1, 2, 1}, p3[6] = {1, 0, 1, 0, 1, 1};
    cs_tensor xx = make(CS_DT_DOUBLE, 5, x3, true), ww = make(CS_DT_DOUBLE, 5, w3, true);
    op_test t3;
    op_test_init(&t3, "Conv", 17);
    op_test_attr_ints(&t3, "strides", 3, s3);
    op_test_attr_ints(&t3, "dilations", 3, d3);
    op_test_attr_ints(&t3, "pads", 6, p3);
    cs_conv_geom g3;
    st = cs_conv_geometry(&t3.node, &xx, &ww, &g3, &group, &err);
    ok(st == CS_OK, "cs_conv_geometry: 3-D");
    int64_t kk = cs_conv_patch_rows(&g3), tt = g3.out_size, nx = 2 * g3.in_size;
    double *c3 = malloc((size_t)(kk * tt) * sizeof *c3), *r = malloc((size_t)(kk * tt) * sizeof *r);
    double *back = calloc((size_t)nx, sizeof *back);
    float *c3f = malloc((size_t)(kk * tt) * sizeof *c3f);
    float *rf = malloc((size_t)(kk * tt) * sizeof *rf);
    float *xf = malloc((size_t)nx * sizeof *xf), *backf = calloc((size_t)nx, sizeof *backf);
    for (int64_t i = 0; i < kk * tt; i++) {
        r[i] = rnd(-1, 1);
        rf[i] = (float)r[i];
    }
    for (int64_t i = 0; i < nx; i++)
        xf[i] = (float)((double *)xx.data)[i];
    cs_im2col_f64(&g3, xx.data, c3, tt);
    cs_col2im_f64(&g3, r, tt, back);
    cs_im2col_f32(&g3, xf, c3f, tt);
    cs_col2im_f32(&g3, rf, tt, backf);
    double lhs = 0, rhs = 0, lhsf = 0, rhsf = 0;
    for (int64_t i = 0; i < kk * tt; i++) {
        lhs += c3[i] * r[i];
        lhsf += (double)c3f[i] * rf[i];
    }
    for (int64_t i = 0; i < nx; i++) {
        rhs += ((double *)xx.data)[i] * back[i];
        rhsf += (double)xf[i] * backf[i];
    }
    ok(tap_close(lhs, rhs, 1e-12, 1e-12),
       "col2im is the adjoint of im2col (double): %.15g vs %.15g", lhs, rhs);
    ok(tap_close(lhsf, rhsf, 1e-5, 1e-5), "col2im is the adjoint of im2col (float): %.8g vs %.8g",
       lhsf, rhsf);
    ok(lhs != 0, "adjoint test is not trivially zero");
    free(c3);
    free(r);
    free(back);
    free(c3f);
    free(rf);
    free(xf);
    free(backf);
    free(col);
    cs_tensor_free(&xx);
    cs_tensor_free(&ww);
    cs_tensor_free(&x);
    cs_tensor_free(&w);
}

/* ---- pooling ---- */

typedef struct pool_case {
    const char *name;
    const char *op;         /* "MaxPool" / "AveragePool" */
    cs_dtype dt;
    int nd;
    int64_t n, c;
    int64_t in[3], k[3], s[3], d[3];
    int64_t pb[3], pe[3];
    const char *auto_pad;   /* NULL: pads attribute */
    int ceil_mode;
    int count_include_pad;  /* AveragePool */
    int storage_order;      /* MaxPool; -1 = no Indices output */
    int opset;
} pool_case;

/* Output extents per the ONNX pooling formula, with explicit pads. */
static int64_t pool_out(int64_t in, int64_t pb, int64_t pe, int64_t k, int64_t s, int64_t d,
                        int ceil_mode)
{
    int64_t span = in + pb + pe - (k - 1) * d - 1;
    if (!ceil_mode)
        return span / s + 1;
    int64_t out = (span + s - 1) / s + 1;
    if ((out - 1) * s >= in + pb) /* last window would start in the padding */
        out--;
    return out;
}

/* Direct pooling; idx receives flat Indices (MaxPool) when non-NULL. */
static void pool_reference(const pool_case *pc, const int64_t *pb, const int64_t *pe,
                           const int64_t *out, const cs_tensor *x, double *y, double *idx)
{
    int nd = pc->nd;
    bool is_max = strcmp(pc->op, "MaxPool") == 0;
    int64_t in_sz = prod(nd, pc->in), out_sz = prod(nd, out), k_sz = prod(nd, pc->k);
    for (int64_t plane = 0; plane < pc->n * pc->c; plane++) {
        int64_t o[3] = {0, 0, 0};
        for (int64_t q = 0; q < out_sz; q++, next_index(nd, out, o)) {
            double best = 0, sum = 0;
            int64_t best_i = -1, valid = 0, padded = 0;
            int64_t k[3] = {0, 0, 0};
            /* taps in row-major window order */
            for (int64_t t = 0; t < k_sz; t++, next_index(nd, pc->k, k)) {
                bool inside = true, in_padded = true;
                int64_t rm = 0, cm = 0, cm_stride = 1;
                for (int a = 0; a < nd; a++) {
                    int64_t i = o[a] * pc->s[a] - pb[a] + k[a] * pc->d[a];
                    inside = inside && i >= 0 && i < pc->in[a];
                    in_padded = in_padded && i >= -pb[a] && i < pc->in[a] + pe[a];
                    rm = rm * pc->in[a] + i;
                    cm += i * cm_stride;
                    cm_stride *= pc->in[a];
                }
                padded += in_padded;
                if (!inside)
                    continue;
                double v = cs_tensor_get_f64(x, plane * in_sz + rm);
                sum += v;
                valid++;
                if (best_i < 0 || v > best) {
                    best = v;
                    best_i = plane * in_sz + (pc->storage_order == 1 ? cm : rm);
                }
            }
            if (is_max) {
                y[plane * out_sz + q] = best;
                if (idx)
                    idx[plane * out_sz + q] = (double)best_i;
            } else {
                int64_t div = pc->count_include_pad ? padded : valid;
                y[plane * out_sz + q] = sum / (double)div;
            }
        }
    }
}

static void run_pool_case(const pool_case *pc, const cs_tensor *given_x)
{
    int nd = pc->nd;
    int64_t xd[5] = {pc->n, pc->c}, yd[5] = {pc->n, pc->c};
    for (int i = 0; i < nd; i++)
        xd[2 + i] = pc->in[i];
    cs_tensor x = given_x ? *given_x : make(pc->dt, 2 + nd, xd, true);
    bool is_max = strcmp(pc->op, "MaxPool") == 0;
    int64_t pads[6], pb[3], pe[3], out[3];
    for (int i = 0; i < nd; i++) {
        pads[i] = pb[i] = pc->pb[i];
        pads[nd + i] = pe[i] = pc->pe[i];
        if (pc->auto_pad) { /* SAME_UPPER / SAME_LOWER */
            int64_t o = (pc->in[i] + pc->s[i] - 1) / pc->s[i];
            int64_t total = (o - 1) * pc->s[i] + (pc->k[i] - 1) * pc->d[i] + 1 - pc->in[i];
            total = total < 0 ? 0 : total;
            bool upper = strcmp(pc->auto_pad, "SAME_UPPER") == 0;
            pb[i] = upper ? total / 2 : total - total / 2;
            pe[i] = total - pb[i];
            out[i] = o;
        } else {
            out[i] = pool_out(pc->in[i], pb[i], pe[i], pc->k[i], pc->s[i], pc->d[i], pc->ceil_mode);
        }
        yd[2 + i] = out[i];
    }
    int64_t y_n = prod(2 + nd, yd);
    double *want = malloc((size_t)y_n * sizeof *want);
    double *want_idx = malloc((size_t)y_n * sizeof *want_idx);
    pool_reference(pc, pb, pe, out, &x, want, want_idx);

    op_test t;
    op_test_init(&t, pc->op, pc->opset);
    op_test_attr_ints(&t, "kernel_shape", nd, pc->k);
    op_test_attr_ints(&t, "strides", nd, pc->s);
    if (pc->d[0] != 1 || (nd > 1 && pc->d[1] != 1) || (nd > 2 && pc->d[2] != 1))
        op_test_attr_ints(&t, "dilations", nd, pc->d);
    if (pc->auto_pad)
        op_test_attr_string(&t, "auto_pad", pc->auto_pad);
    else
        op_test_attr_ints(&t, "pads", 2 * nd, pads);
    if (pc->ceil_mode)
        op_test_attr_int(&t, "ceil_mode", 1);
    if (!is_max)
        op_test_attr_int(&t, "count_include_pad", pc->count_include_pad);
    if (is_max && pc->storage_order >= 0)
        op_test_attr_int(&t, "storage_order", pc->storage_order);
    op_test_input(&t, &x);
    op_test_outputs(&t, is_max && pc->storage_order >= 0 ? 2 : 1);
    cs_err err;
    cs_status st = op_test_run(&t, &err);
    char name[160];
    snprintf(name, sizeof name, "%s %s", pc->op, pc->name);
    if (ok(st == CS_OK, "%s: runs", name)) {
        check_values(name, t.out[0], 2 + nd, yd, want, tol_r(pc->dt), tol_a(pc->dt));
        if (is_max && pc->storage_order >= 0) {
            char iname[200];
            snprintf(iname, sizeof iname, "%s Indices", name);
            ok(t.out[1]->dtype == CS_DT_INT64, "%s: int64", iname);
            check_values(iname, t.out[1], 2 + nd, yd, want_idx, 0, 0);
        }
    } else {
        diag("%s", err.msg);
    }
    op_test_free(&t);
    free(want);
    free(want_idx);
    if (!given_x)
        cs_tensor_free(&x);
}

static const pool_case pool_cases[] = {
    {"2-D k3 s2 pads 1 ceil_mode, Indices row-major, float", "MaxPool", CS_DT_FLOAT, 2, 2, 3,
     {7, 8}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}, NULL, 1, 0, 0, 12},
    {"2-D k3 s2 asymmetric pads ceil_mode, Indices column-major, double", "MaxPool",
     CS_DT_DOUBLE, 2, 2, 2, {8, 7}, {3, 2}, {2, 2}, {1, 1}, {0, 1}, {1, 0}, NULL, 1, 0, 1, 12},
    {"1-D dilation 2 pads 2, Indices, float", "MaxPool", CS_DT_FLOAT, 1, 2, 3, {12}, {3}, {1},
     {2}, {2}, {1}, NULL, 0, 0, 0, 12},
    {"2-D dilations (2, 3) stride 2, double", "MaxPool", CS_DT_DOUBLE, 2, 1, 2, {9, 10}, {2, 3},
     {2, 2}, {2, 3}, {1, 2}, {0, 1}, NULL, 0, 0, -1, 12},
    {"3-D k2 s2 pads, Indices column-major, double", "MaxPool", CS_DT_DOUBLE, 3, 2, 2,
     {5, 4, 6}, {2, 2, 3}, {2, 2, 2}, {1, 1, 1}, {1, 0, 1}, {0, 1, 1}, NULL, 0, 0, 1, 12},
    {"3-D ceil_mode, Indices row-major, float", "MaxPool", CS_DT_FLOAT, 3, 1, 2, {5, 6, 5},
     {3, 2, 2}, {2, 2, 2}, {1, 1, 1}, {0, 0, 1}, {0, 0, 0}, NULL, 1, 0, 0, 12},
    {"2-D SAME_UPPER k2, float", "MaxPool", CS_DT_FLOAT, 2, 1, 3, {7, 6}, {2, 3}, {2, 1},
     {1, 1}, {0}, {0}, "SAME_UPPER", 0, 0, 0, 12},
    {"2-D SAME_LOWER k2, double", "MaxPool", CS_DT_DOUBLE, 2, 1, 3, {7, 6}, {2, 3}, {2, 1},
     {1, 1}, {0}, {0}, "SAME_LOWER", 0, 0, 0, 12},
    {"2-D k3 s2 pads 1 count_include_pad 0 ceil_mode, float", "AveragePool", CS_DT_FLOAT, 2, 2,
     3, {6, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}, NULL, 1, 0, -1, 11},
    {"2-D k3 s2 pads 1 count_include_pad 1 ceil_mode, float", "AveragePool", CS_DT_FLOAT, 2, 2,
     3, {6, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}, NULL, 1, 1, -1, 11},
    {"2-D asymmetric pads count_include_pad 1, double", "AveragePool", CS_DT_DOUBLE, 2, 1, 2,
     {5, 6}, {2, 3}, {1, 2}, {1, 1}, {1, 0}, {0, 2}, NULL, 0, 1, -1, 11},
    {"1-D pads count_include_pad 0, double", "AveragePool", CS_DT_DOUBLE, 1, 2, 2, {9}, {4},
     {3}, {1}, {2}, {1}, NULL, 0, 0, -1, 11},
    {"3-D pads, float", "AveragePool", CS_DT_FLOAT, 3, 2, 2, {4, 5, 6}, {2, 3, 2}, {2, 1, 2},
     {1, 1, 1}, {1, 1, 0}, {0, 1, 1}, NULL, 0, 0, -1, 11},
    {"3-D ceil_mode count_include_pad 1, double", "AveragePool", CS_DT_DOUBLE, 3, 1, 2,
     {5, 4, 5}, {2, 2, 3}, {2, 3, 2}, {1, 1, 1}, {1, 0, 0}, {0, 1, 1}, NULL, 1, 1, -1, 11},
    {"2-D SAME_LOWER, double", "AveragePool", CS_DT_DOUBLE, 2, 1, 2, {5, 6}, {2, 3}, {2, 2},
     {1, 1}, {0}, {0}, "SAME_LOWER", 0, 0, -1, 11},
    {"2-D SAME_UPPER count_include_pad 1, float", "AveragePool", CS_DT_FLOAT, 2, 1, 2, {5, 6},
     {2, 3}, {2, 2}, {1, 1}, {0}, {0}, "SAME_UPPER", 0, 1, -1, 11},
    /* ceil_mode would add a window at 6 that starts in the end padding: dropped, 2 outputs */
    {"1-D ceil_mode drops a window in the padding, float", "MaxPool", CS_DT_FLOAT, 1, 1, 2, {5},
     {2}, {3}, {1}, {1}, {1}, NULL, 1, 0, 0, 12},
    {"1-D ceil_mode drops a window in the padding, count_include_pad 1, double", "AveragePool",
     CS_DT_DOUBLE, 1, 1, 2, {5}, {2}, {3}, {1}, {1}, {1}, NULL, 1, 1, -1, 11},
    {"2-D dilations (opset 19), float", "AveragePool", CS_DT_FLOAT, 2, 1, 2, {8, 9}, {2, 3},
     {1, 2}, {3, 2}, {1, 1}, {1, 0}, NULL, 0, 0, -1, 19},
};

/* Ties go to the first maximal tap in row-major window order. */
static void test_maxpool_ties(void)
{
    /* One 3x4 plane: the window at (0, 0) holds 5 at (0, 1) and (1, 0),
     * the window at (0, 1) holds 5 at (0, 1) and (1, 2). */
    double v[12] = {1, 5, 2, 0, 5, 3, 5, 1, 4, 4, 4, 4};
    int64_t xd[4] = {1, 1, 3, 4};
    cs_tensor x = make(CS_DT_FLOAT, 4, xd, false);
    for (int i = 0; i < 12; i++)
        cs_tensor_set_f64(&x, i, v[i]);
    pool_case pc = {"ties, 2-D k2 s1", "MaxPool", CS_DT_FLOAT, 2, 1, 1, {3, 4}, {2, 2}, {1, 1},
                    {1, 1}, {0, 0}, {0, 0}, NULL, 0, 0, 0, 12};
    run_pool_case(&pc, &x);

    op_test t;
    int64_t ks[2] = {2, 2}, st1[2] = {1, 1};
    op_test_init(&t, "MaxPool", 12);
    op_test_attr_ints(&t, "kernel_shape", 2, ks);
    op_test_attr_ints(&t, "strides", 2, st1);
    op_test_input(&t, &x);
    op_test_outputs(&t, 2);
    cs_err err;
    if (ok(op_test_run(&t, &err) == CS_OK, "MaxPool ties: runs")) {
        const int64_t *idx = t.out[1]->data;
        /* windows: (0,0) -> index 1; (0,1) -> 1; (1,2) holds 5 at (1,2)=6 and 4s -> 6 */
        ok(idx[0] == 1 && idx[1] == 1 && idx[5] == 6,
           "MaxPool ties: first maximum in row-major window order (%lld, %lld, %lld)",
           (long long)idx[0], (long long)idx[1], (long long)idx[5]);
    }
    op_test_free(&t);

    /* A constant plane with padding: every window picks its first valid tap. */
    int64_t cd[4] = {1, 1, 4, 4};
    cs_tensor cx = make(CS_DT_DOUBLE, 4, cd, false);
    for (int i = 0; i < 16; i++)
        cs_tensor_set_f64(&cx, i, 2.5);
    pool_case pc2 = {"ties, constant plane, k3 s1 pads 1", "MaxPool", CS_DT_DOUBLE, 2, 1, 1,
                     {4, 4}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, NULL, 0, 0, 0, 12};
    run_pool_case(&pc2, &cx);
    cs_tensor_free(&cx);
    cs_tensor_free(&x);
}

static void test_maxpool_uint8(void)
{
    int64_t xd[4] = {1, 2, 5, 5};
    cs_tensor x = make(CS_DT_UINT8, 4, xd, false);
    for (int64_t i = 0; i < 50; i++)
        ((uint8_t *)x.data)[i] = (uint8_t)((i * 37 + 11) % 251);
    pool_case pc = {"uint8 k3 s2 pads 1", "MaxPool", CS_DT_UINT8, 2, 1, 2, {5, 5}, {3, 3},
                    {2, 2}, {1, 1}, {1, 1}, {1, 1}, NULL, 0, 0, 0, 12};
    run_pool_case(&pc, &x);
    cs_tensor_free(&x);
}

static void test_global_average_pool(void)
{
    int64_t shapes[2][5] = {{2, 3, 4, 5, 0}, {2, 2, 3, 2, 2}};
    int ranks[2] = {4, 5};
    cs_dtype dts[2] = {CS_DT_FLOAT, CS_DT_DOUBLE};
    for (int c = 0; c < 2; c++) {
        cs_tensor x = make(dts[c], ranks[c], shapes[c], true);
        int64_t planes = shapes[c][0] * shapes[c][1], sz = cs_tensor_numel(&x) / planes;
        double want[8];
        int64_t yd[5] = {shapes[c][0], shapes[c][1], 1, 1, 1};
        for (int64_t p = 0; p < planes; p++) {
            double s = 0;
            for (int64_t i = 0; i < sz; i++)
                s += cs_tensor_get_f64(&x, p * sz + i);
            want[p] = s / (double)sz;
        }
        op_test t;
        op_test_init(&t, "GlobalAveragePool", 13);
        op_test_input(&t, &x);
        op_test_outputs(&t, 1);
        cs_err err;
        char name[64];
        snprintf(name, sizeof name, "GlobalAveragePool rank %d %s", ranks[c],
                 cs_dtype_name(dts[c]));
        if (ok(op_test_run(&t, &err) == CS_OK, "%s: runs", name))
            check_values(name, t.out[0], ranks[c], yd, want, tol_r(dts[c]), tol_a(dts[c]));
        op_test_free(&t);
        cs_tensor_free(&x);
    }
}

static cs_status pool_try(const char *op, cs_dtype dt, int ndim, const int64_t *xd,
                          const char *attr, int n, const int64_t *v, cs_err *err)
{
    cs_tensor x = make(dt, ndim, xd, false);
    op_test t;
    op_test_init(&t, op, 12);
    if (attr)
        op_test_attr_ints(&t, attr, n, v);
    op_test_input(&t, &x);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, err);
    op_test_free(&t);
    cs_tensor_free(&x);
    return st;
}

static void test_pool_errors(void)
{
    cs_err err;
    int64_t xd[4] = {1, 1, 4, 4}, k2[2] = {2, 2};
    ok(pool_try("MaxPool", CS_DT_FLOAT, 4, xd, NULL, 0, NULL, &err) == CS_ERR_FORMAT,
       "MaxPool without kernel_shape -> format error");
    ok(pool_try("AveragePool", CS_DT_FLOAT, 4, xd, "kernel_shape", 1, k2, &err) == CS_ERR_FORMAT,
       "AveragePool with 1 kernel value for 2 axes -> format error");
    ok(pool_try("MaxPool", CS_DT_INT32, 4, xd, "kernel_shape", 2, k2, &err) == CS_ERR_UNSUPPORTED,
       "MaxPool on int32 -> unsupported");
    ok(pool_try("AveragePool", CS_DT_UINT8, 4, xd, "kernel_shape", 2, k2, &err) ==
           CS_ERR_UNSUPPORTED,
       "AveragePool on uint8 -> unsupported");
    ok(pool_try("MaxPool", CS_DT_FLOAT, 2, xd, "kernel_shape", 2, k2, &err) == CS_ERR_SHAPE,
       "MaxPool on rank 2 -> shape error");
    int64_t k5[2] = {5, 5};
    ok(pool_try("MaxPool", CS_DT_FLOAT, 4, xd, "kernel_shape", 2, k5, &err) == CS_ERR_SHAPE,
       "MaxPool window larger than the input -> shape error");
    ok(pool_try("GlobalAveragePool", CS_DT_FLOAT, 2, xd, NULL, 0, NULL, &err) == CS_ERR_SHAPE,
       "GlobalAveragePool on rank 2 -> shape error");
}

/* ---- BatchNormalization ---- */

static void test_batchnorm(void)
{
    struct {
        cs_dtype dt, pdt;
        int ndim;
        int64_t dims[4];
        float eps;
        int opset;
    } cases[] = {
        {CS_DT_FLOAT, CS_DT_FLOAT, 4, {2, 3, 4, 5}, 1e-3f, 15},
        {CS_DT_DOUBLE, CS_DT_DOUBLE, 2, {4, 3}, 0, 9},
        {CS_DT_DOUBLE, CS_DT_DOUBLE, 3, {2, 4, 3}, 1e-2f, 6},
        {CS_DT_FLOAT, CS_DT_DOUBLE, 3, {3, 2, 5}, 1e-5f, 15},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t ch = cases[k].dims[1], cd[1] = {ch};
        cs_tensor x = make(cases[k].dt, cases[k].ndim, cases[k].dims, true);
        cs_tensor sc = make(cases[k].pdt, 1, cd, true), b = make(cases[k].pdt, 1, cd, true);
        cs_tensor mean = make(cases[k].pdt, 1, cd, true), var = make(cases[k].pdt, 1, cd, false);
        for (int64_t c = 0; c < ch; c++)
            cs_tensor_set_f64(&var, c, 0.2 + rnd(0, 2));
        double eps = cases[k].eps ? cases[k].eps : 1e-5f;
        int64_t n = cs_tensor_numel(&x), s = n / (cases[k].dims[0] * ch);
        double *want = malloc((size_t)n * sizeof *want);
        for (int64_t i = 0; i < n; i++) {
            int64_t c = (i / s) % ch;
            want[i] = cs_tensor_get_f64(&sc, c) *
                          (cs_tensor_get_f64(&x, i) - cs_tensor_get_f64(&mean, c)) /
                          sqrt(cs_tensor_get_f64(&var, c) + eps) +
                      cs_tensor_get_f64(&b, c);
        }
        op_test t;
        op_test_init(&t, "BatchNormalization", cases[k].opset);
        if (cases[k].eps)
            op_test_attr_float(&t, "epsilon", cases[k].eps);
        if (cases[k].opset < 7)
            op_test_attr_int(&t, "is_test", 1);
        op_test_input(&t, &x);
        op_test_input(&t, &sc);
        op_test_input(&t, &b);
        op_test_input(&t, &mean);
        op_test_input(&t, &var);
        op_test_outputs(&t, 1);
        cs_err err;
        char name[96];
        snprintf(name, sizeof name, "BatchNormalization opset %d rank %d %s", cases[k].opset,
                 cases[k].ndim, cs_dtype_name(cases[k].dt));
        if (ok(op_test_run(&t, &err) == CS_OK, "%s: runs", name))
            check_values(name, t.out[0], cases[k].ndim, cases[k].dims, want, tol_r(cases[k].dt),
                         tol_a(cases[k].dt));
        else
            diag("%s", err.msg);
        op_test_free(&t);
        free(want);
        cs_tensor_free(&x);
        cs_tensor_free(&sc);
        cs_tensor_free(&b);
        cs_tensor_free(&mean);
        cs_tensor_free(&var);
    }
}

/* One BatchNormalization call on X [2, 3, 4] that is expected to fail. */
static cs_status bn_try(int opset, const char *attr, int64_t value, int n_out, int64_t scale_len,
                        cs_err *err)
{
    int64_t xd[3] = {2, 3, 4}, cd[1] = {3}, sd[1] = {scale_len};
    cs_tensor x = make(CS_DT_FLOAT, 3, xd, true), sc = make(CS_DT_FLOAT, 1, sd, true);
    cs_tensor b = make(CS_DT_FLOAT, 1, cd, true), m = make(CS_DT_FLOAT, 1, cd, true);
    cs_tensor v = make(CS_DT_FLOAT, 1, cd, false);
    op_test t;
    op_test_init(&t, "BatchNormalization", opset);
    if (attr)
        op_test_attr_int(&t, attr, value);
    op_test_input(&t, &x);
    op_test_input(&t, &sc);
    op_test_input(&t, &b);
    op_test_input(&t, &m);
    op_test_input(&t, &v);
    op_test_outputs(&t, n_out);
    cs_status st = op_test_run(&t, err);
    op_test_free(&t);
    cs_tensor_free(&x);
    cs_tensor_free(&sc);
    cs_tensor_free(&b);
    cs_tensor_free(&m);
    cs_tensor_free(&v);
    return st;
}

static void test_batchnorm_errors(void)
{
    cs_err err;
    ok(bn_try(15, "training_mode", 1, 3, 3, &err) == CS_ERR_UNSUPPORTED,
       "BatchNormalization training_mode = 1 -> unsupported");
    diag("message: %s", err.msg);
    ok(bn_try(9, NULL, 0, 5, 3, &err) == CS_ERR_UNSUPPORTED,
       "BatchNormalization opset 9 with statistics outputs -> unsupported");
    ok(bn_try(6, NULL, 0, 1, 3, &err) == CS_ERR_UNSUPPORTED,
       "BatchNormalization opset 6 without is_test -> unsupported");
    ok(bn_try(7, "spatial", 0, 1, 3, &err) == CS_ERR_UNSUPPORTED,
       "BatchNormalization spatial = 0 -> unsupported");
    ok(bn_try(15, NULL, 0, 1, 4, &err) == CS_ERR_SHAPE,
       "BatchNormalization scale of 4 for 3 channels -> shape error");
}

/* ---- LayerNormalization ---- */

typedef struct ln_case {
    const char *name;
    cs_dtype dt;
    int ndim;
    int64_t dims[4];
    int64_t axis;
    int sc_ndim;
    int64_t sc_dims[4];
    int b_ndim;             /* 0: no B */
    int64_t b_dims[4];
    int n_out;
    int64_t stash;          /* 0: default */
    float eps;              /* 0: default */
} ln_case;

static void run_ln_case(const ln_case *lc)
{
    cs_tensor x = make(lc->dt, lc->ndim, lc->dims, true);
    cs_tensor sc = make(lc->dt, lc->sc_ndim, lc->sc_dims, true);
    cs_tensor b;
    memset(&b, 0, sizeof b);
    if (lc->b_ndim)
        b = make(lc->dt, lc->b_ndim, lc->b_dims, true);
    int axis = (int)(lc->axis < 0 ? lc->axis + lc->ndim : lc->axis);
    int64_t rows = prod(axis, lc->dims), d = prod(lc->ndim - axis, lc->dims + axis);
    double eps = lc->eps ? lc->eps : 1e-5f;
    double *want = malloc((size_t)(rows * d) * sizeof *want);
    double *want_mean = malloc((size_t)rows * sizeof *want_mean);
    double *want_inv = malloc((size_t)rows * sizeof *want_inv);
    for (int64_t r = 0; r < rows; r++) {
        double mu = 0, var = 0;
        for (int64_t j = 0; j < d; j++)
            mu += cs_tensor_get_f64(&x, r * d + j);
        mu /= (double)d;
        for (int64_t j = 0; j < d; j++) {
            double e = cs_tensor_get_f64(&x, r * d + j) - mu;
            var += e * e;
        }
        var /= (double)d;
        want_mean[r] = mu;
        want_inv[r] = 1 / sqrt(var + eps);
        int64_t idx[4] = {0, 0, 0, 0};
        const int64_t *nshape = lc->dims + axis;
        int nr = lc->ndim - axis;
        for (int64_t j = 0; j < d; j++, next_index(nr, nshape, idx)) {
            /* numpy broadcasting of Scale / B against the normalised shape */
            int64_t si = 0, bi = 0;
            for (int a = 0; a < lc->sc_ndim; a++) {
                int64_t e = lc->sc_dims[a];
                si = si * e + (e == 1 ? 0 : idx[nr - lc->sc_ndim + a]);
            }
            for (int a = 0; a < lc->b_ndim; a++) {
                int64_t e = lc->b_dims[a];
                bi = bi * e + (e == 1 ? 0 : idx[nr - lc->b_ndim + a]);
            }
            want[r * d + j] = (cs_tensor_get_f64(&x, r * d + j) - mu) * want_inv[r] *
                                  cs_tensor_get_f64(&sc, si) +
                              (lc->b_ndim ? cs_tensor_get_f64(&b, bi) : 0);
        }
    }
    op_test t;
    op_test_init(&t, "LayerNormalization", 17);
    op_test_attr_int(&t, "axis", lc->axis);
    if (lc->eps)
        op_test_attr_float(&t, "epsilon", lc->eps);
    if (lc->stash)
        op_test_attr_int(&t, "stash_type", lc->stash);
    op_test_input(&t, &x);
    op_test_input(&t, &sc);
    if (lc->b_ndim)
        op_test_input(&t, &b);
    op_test_outputs(&t, lc->n_out);
    cs_err err;
    char name[160];
    snprintf(name, sizeof name, "LayerNormalization %s", lc->name);
    if (ok(op_test_run(&t, &err) == CS_OK, "%s: runs", name)) {
        check_values(name, t.out[0], lc->ndim, lc->dims, want, tol_r(lc->dt), tol_a(lc->dt));
        int64_t sd[4];
        for (int a = 0; a < lc->ndim; a++)
            sd[a] = a < axis ? lc->dims[a] : 1;
        cs_dtype stash = lc->stash ? (cs_dtype)lc->stash : CS_DT_FLOAT;
        char sname[200];
        if (lc->n_out > 1) {
            snprintf(sname, sizeof sname, "%s Mean", name);
            ok(t.out[1]->dtype == stash, "%s: type %s", sname, cs_dtype_name(stash));
            check_values(sname, t.out[1], lc->ndim, sd, want_mean, tol_r(stash), tol_a(stash));
        }
        if (lc->n_out > 2) {
            snprintf(sname, sizeof sname, "%s InvStdDev", name);
            check_values(sname, t.out[2], lc->ndim, sd, want_inv, tol_r(stash), tol_a(stash));
        }
    } else {
        diag("%s", err.msg);
    }
    op_test_free(&t);
    free(want);
    free(want_mean);
    free(want_inv);
    cs_tensor_free(&x);
    cs_tensor_free(&sc);
    if (lc->b_ndim)
        cs_tensor_free(&b);
}

static const ln_case ln_cases[] = {
    {"axis -1 with Mean and InvStdDev, float", CS_DT_FLOAT, 3, {2, 3, 4}, -1, 1, {4}, 1, {4}, 3,
     0, 0},
    {"axis 1 without B, double", CS_DT_DOUBLE, 4, {2, 3, 4, 5}, 1, 3, {3, 4, 5}, 0, {0}, 1, 0,
     0.1f},
    {"axis 2, broadcast Scale [4, 1] and B [5], double, stash double", CS_DT_DOUBLE, 4,
     {2, 3, 4, 5}, 2, 2, {4, 1}, 1, {5}, 3, CS_DT_DOUBLE, 0},
    {"axis 0, float", CS_DT_FLOAT, 2, {3, 4}, 0, 2, {3, 4}, 2, {3, 4}, 2, 0, 0},
    {"axis -2, Scale [1, 6], double input with float statistics", CS_DT_DOUBLE, 3, {3, 2, 6},
     -2, 2, {1, 6}, 2, {2, 6}, 3, 0, 1e-3f},
};

static void test_layernorm_errors(void)
{
    int64_t xd[3] = {2, 3, 4}, sd[1] = {3};
    cs_tensor x = make(CS_DT_FLOAT, 3, xd, true), sc = make(CS_DT_FLOAT, 1, sd, true);
    cs_err err;
    op_test t;
    op_test_init(&t, "LayerNormalization", 17);
    op_test_input(&t, &x);
    op_test_input(&t, &sc);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE,
       "LayerNormalization Scale [3] for [.., 4] -> shape error");
    op_test_free(&t);
    op_test_init(&t, "LayerNormalization", 17);
    op_test_attr_int(&t, "axis", 3);
    op_test_input(&t, &x);
    op_test_input(&t, &sc);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE,
       "LayerNormalization axis 3 of rank 3 -> shape error");
    op_test_free(&t);
    cs_tensor_free(&x);
    cs_tensor_free(&sc);
}

int main(void)
{
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        run_conv_case(&conv_cases[i]);
    test_conv_errors();
    test_im2col();
    for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++)
        run_pool_case(&pool_cases[i], NULL);
    test_maxpool_ties();
    test_maxpool_uint8();
    test_global_average_pool();
    test_pool_errors();
    test_batchnorm();
    test_batchnorm_errors();
    for (size_t i = 0; i < sizeof ln_cases / sizeof ln_cases[0]; i++)
        run_ln_case(&ln_cases[i]);
    test_layernorm_errors();
    return tap_done();
}
