/* Gemm, MatMul and the shape / data-movement operators, one op at a time
 * through op_test.h.  Linear algebra is checked against naive loops written
 * here; shape operators against hand-worked expected values. */
#include <stdint.h>
#include <string.h>

#include "../tap.h"
#include "op_test.h"

/* ---- helpers ---- */

static uint32_t rng_state = 12345u;

/* Uniform in [-1, 1), from a fixed linear congruential sequence. */
static double rnd(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (double)(rng_state >> 8) / (double)(1u << 24) * 2.0 - 1.0;
}

static void fill(double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = rnd();
}

static int shape_is(const cs_tensor *t, int ndim, const int64_t *dims)
{
    if (t->ndim != ndim)
        return 0;
    for (int i = 0; i < ndim; i++)
        if (t->dims[i] != dims[i])
            return 0;
    return 1;
}

/* Every element of t (any numeric dtype) equals want within tol. */
static int values_are(const cs_tensor *t, const double *want, int64_t n, double tol)
{
    if (cs_tensor_numel(t) != n)
        return 0;
    for (int64_t i = 0; i < n; i++)
        if (!tap_close(cs_tensor_get_f64(t, i), want[i], tol, tol))
            return 0;
    return 1;
}

static int i64_are(const cs_tensor *t, const int64_t *want, int64_t n)
{
    if (cs_tensor_numel(t) != n)
        return 0;
    for (int64_t i = 0; i < n; i++)
        if (cs_tensor_get_i64(t, i) != want[i])
            return 0;
    return 1;
}

/* Store doubles into a buffer of dtype dt (float or double). */
static void store(void *dst, cs_dtype dt, const double *src, int64_t n)
{
    cs_convert(dst, dt, src, CS_DT_DOUBLE, n);
}

/* ---- Gemm ---- */

enum { GM = 3, GK = 4, GN = 5 };

typedef struct bias_case {
    const char *name;
    int present;
    int ndim;
    int64_t dims[2];
} bias_case;

static const bias_case bias_cases[] = {
    {"omitted", 0, 0, {0, 0}},   {"scalar", 1, 0, {0, 0}},   {"[N]", 1, 1, {GN, 0}},
    {"[1, N]", 1, 2, {1, GN}},   {"[M, 1]", 1, 2, {GM, 1}},  {"[M, N]", 1, 2, {GM, GN}},
};

static void test_gemm_case(cs_dtype dt, int trans_a, int trans_b, const bias_case *bc)
{
    double a[GM * GK], b[GK * GN], bias[GM * GN];
    fill(a, GM * GK);
    fill(b, GK * GN);
    fill(bias, GM * GN);
    double alpha = 0.75, beta = -1.25;

    /* Reference: Y[i, j] = alpha * sum_p op(A)[i, p] op(B)[p, j] + beta * C~[i, j]. */
    double want[GM * GN];
    int64_t c_cols = bc->ndim >= 1 ? bc->dims[bc->ndim - 1] : 1;
    int64_t c_rows = bc->ndim == 2 ? bc->dims[0] : 1;
    for (int i = 0; i < GM; i++)
        for (int j = 0; j < GN; j++) {
            double s = 0;
            for (int p = 0; p < GK; p++) {
                double av = trans_a ? a[p * GM + i] : a[i * GK + p];
                double bv = trans_b ? b[j * GK + p] : b[p * GN + j];
                s += av * bv;
            }
            double cv = 0;
            if (bc->present)
                cv = bias[(c_rows == 1 ? 0 : i) * c_cols + (c_cols == 1 ? 0 : j)];
            want[i * GN + j] = alpha * s + beta * cv;
        }

    double abuf[GM * GK], bbuf[GK * GN], cbuf[GM * GN];
    store(abuf, dt, a, GM * GK);
    store(bbuf, dt, b, GK * GN);
    store(cbuf, dt, bias, GM * GN);
    int64_t adims[2] = {trans_a ? GK : GM, trans_a ? GM : GK};
    int64_t bdims[2] = {trans_b ? GN : GK, trans_b ? GK : GN};
    cs_tensor ta = op_test_view(dt, 2, adims, abuf), tb = op_test_view(dt, 2, bdims, bbuf);
    cs_tensor tc = op_test_view(dt, bc->ndim, bc->dims, cbuf);

    op_test t;
    op_test_init(&t, "Gemm", 13);
    op_test_attr_float(&t, "alpha", (float)alpha);
    op_test_attr_float(&t, "beta", (float)beta);
    op_test_attr_int(&t, "transA", trans_a);
    op_test_attr_int(&t, "transB", trans_b);
    op_test_input(&t, &ta);
    op_test_input(&t, &tb);
    if (bc->present)
        op_test_input(&t, &tc);
    op_test_outputs(&t, 1);
    cs_err err = {0};
    cs_status st = op_test_run(&t, &err);
    int64_t ydims[2] = {GM, GN};
    double tol = dt == CS_DT_FLOAT ? 1e-5 : 1e-12;
    ok(st == CS_OK && t.out[0]->dtype == dt && shape_is(t.out[0], 2, ydims) &&
           values_are(t.out[0], want, GM * GN, tol),
       "Gemm %s transA=%d transB=%d C %s", cs_dtype_name(dt), trans_a, trans_b, bc->name);
    if (st)
        diag("%s", err.msg);
    op_test_free(&t);
}

static void test_gemm(void)
{
    cs_dtype dts[2] = {CS_DT_FLOAT, CS_DT_DOUBLE};
    for (int d = 0; d < 2; d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (size_t k = 0; k < sizeof bias_cases / sizeof bias_cases[0]; k++)
                    test_gemm_case(dts[d], ta, tb, &bias_cases[k]);

    /* Defaults: alpha = beta = 1, no transposes. */
    float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c[2] = {10, 20};
    int64_t d22[2] = {2, 2}, d2[1] = {2};
    cs_tensor ta = op_test_view(CS_DT_FLOAT, 2, d22, a), tb = op_test_view(CS_DT_FLOAT, 2, d22, b);
    cs_tensor tc = op_test_view(CS_DT_FLOAT, 1, d2, c);
    op_test t;
    op_test_init(&t, "Gemm", 13);
    op_test_input(&t, &ta);
    op_test_input(&t, &tb);
    op_test_input(&t, &tc);
    op_test_outputs(&t, 1);
    cs_err err = {0};
    double want[4] = {19 + 10, 22 + 20, 43 + 10, 50 + 20};
    ok(op_test_run(&t, &err) == CS_OK && values_are(t.out[0], want, 4, 0),
       "Gemm default attributes");
    op_test_free(&t);

    /* Inner dimensions that differ: [2, 2] x [3, 2]. */
    int64_t d32[2] = {3, 2};
    float b3[6] = {0};
    cs_tensor tb3 = op_test_view(CS_DT_FLOAT, 2, d32, b3);
    op_test_init(&t, "Gemm", 13);
    op_test_input(&t, &ta);
    op_test_input(&t, &tb3);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Gemm inner-dimension mismatch is CS_ERR_SHAPE");
    op_test_free(&t);

    /* A C that does not broadcast to [2, 2]. */
    float c3[3] = {0};
    int64_t d3[1] = {3};
    cs_tensor tc3 = op_test_view(CS_DT_FLOAT, 1, d3, c3);
    op_test_init(&t, "Gemm", 13);
    op_test_input(&t, &ta);
    op_test_input(&t, &tb);
    op_test_input(&t, &tc3);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Gemm C of shape [3] for [2, 2] is CS_ERR_SHAPE");
    op_test_free(&t);

    /* Integer Gemm is not handled. */
    int64_t ia[4] = {1, 2, 3, 4};
    cs_tensor tia = op_test_view(CS_DT_INT64, 2, d22, ia);
    op_test_init(&t, "Gemm", 13);
    op_test_input(&t, &tia);
    op_test_input(&t, &tia);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "Gemm on int64 is unsupported");
    op_test_free(&t);
}

/* ---- MatMul ---- */

/* Naive numpy.matmul for operands of rank >= 1, written independently of
 * the kernel: promote 1-D operands, broadcast batch dims, loop. */
static void naive_matmul(const double *a, int ra, const int64_t *da, const double *b, int rb,
                         const int64_t *db, double *y)
{
    int64_t ad[CS_MAX_DIMS + 1], bd[CS_MAX_DIMS + 1];
    int na = ra, nb = rb;
    memcpy(ad, da, sizeof(int64_t) * (size_t)ra);
    memcpy(bd, db, sizeof(int64_t) * (size_t)rb);
    if (na == 1) { /* [K] -> [1, K] */
        ad[1] = ad[0];
        ad[0] = 1;
        na = 2;
    }
    if (nb == 1) { /* [K] -> [K, 1] */
        bd[1] = 1;
        nb = 2;
    }
    int64_t m = ad[na - 2], k = ad[na - 1], n = bd[nb - 1];
    int r = (na > nb ? na : nb) - 2;
    int64_t batch[CS_MAX_DIMS], total = 1;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - (na - 2)), ib = i - (r - (nb - 2));
        int64_t x = ia >= 0 ? ad[ia] : 1, z = ib >= 0 ? bd[ib] : 1;
        batch[i] = x > z ? x : z;
        total *= batch[i];
    }
    for (int64_t t = 0; t < total; t++) {
        /* Decompose t into a batch index, map it into A and B. */
        int64_t rem = t, ia_flat = 0, ib_flat = 0, sa = 1, sb = 1;
        for (int i = r - 1; i >= 0; i--) {
            int64_t idx = rem % batch[i];
            rem /= batch[i];
            int ia = i - (r - (na - 2)), ib = i - (r - (nb - 2));
            if (ia >= 0) {
                ia_flat += (ad[ia] == 1 ? 0 : idx) * sa;
                sa *= ad[ia];
            }
            if (ib >= 0) {
                ib_flat += (bd[ib] == 1 ? 0 : idx) * sb;
                sb *= bd[ib];
            }
        }
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++)
                    s += a[ia_flat * m * k + i * k + p] * b[ib_flat * k * n + p * n + j];
                y[t * m * n + i * n + j] = s;
            }
    }
}

static void test_matmul_case(const char *name, cs_dtype dt, int ra, const int64_t *da, int rb,
                             const int64_t *db, int ry, const int64_t *dy)
{
    enum { MAXN = 512 };
    double a[MAXN], b[MAXN], want[MAXN], abuf[MAXN] = {0}, bbuf[MAXN] = {0};
    cs_tensor ta = op_test_view(dt, ra, da, abuf), tb = op_test_view(dt, rb, db, bbuf);
    int64_t na = cs_tensor_numel(&ta), nb = cs_tensor_numel(&tb);
    fill(a, na);
    fill(b, nb);
    store(abuf, dt, a, na);
    store(bbuf, dt, b, nb);
    naive_matmul(a, ra, da, b, rb, db, want);

    op_test t;
    op_test_init(&t, "MatMul", 13);
    op_test_input(&t, &ta);
    op_test_input(&t, &tb);
    op_test_outputs(&t, 1);
    cs_err err = {0};
    cs_status st = op_test_run(&t, &err);
    int64_t ny = 1;
    for (int i = 0; i < ry; i++)
        ny *= dy[i];
    double tol = dt == CS_DT_FLOAT ? 1e-5 : 1e-12;
    ok(st == CS_OK && shape_is(t.out[0], ry, dy) && values_are(t.out[0], want, ny, tol),
       "MatMul %s %s", name, cs_dtype_name(dt));
    if (st)
        diag("%s", err.msg);
    op_test_free(&t);
}

static void test_matmul(void)
{
    cs_dtype dts[2] = {CS_DT_FLOAT, CS_DT_DOUBLE};
    for (int d = 0; d < 2; d++) {
        cs_dtype dt = dts[d];
        test_matmul_case("[4] x [4, 3]", dt, 1, (int64_t[]){4}, 2, (int64_t[]){4, 3}, 1,
                         (int64_t[]){3});
        test_matmul_case("[3, 4] x [4]", dt, 2, (int64_t[]){3, 4}, 1, (int64_t[]){4}, 1,
                         (int64_t[]){3});
        test_matmul_case("[4] x [4]", dt, 1, (int64_t[]){4}, 1, (int64_t[]){4}, 0, NULL);
        test_matmul_case("[3, 4] x [4, 5]", dt, 2, (int64_t[]){3, 4}, 2, (int64_t[]){4, 5}, 2,
                         (int64_t[]){3, 5});
        test_matmul_case("[2, 3, 4] x [4, 5]", dt, 3, (int64_t[]){2, 3, 4}, 2, (int64_t[]){4, 5}, 3,
                         (int64_t[]){2, 3, 5});
        test_matmul_case("[2, 3, 4] x [4]", dt, 3, (int64_t[]){2, 3, 4}, 1, (int64_t[]){4}, 2,
                         (int64_t[]){2, 3});
        test_matmul_case("[4] x [2, 4, 3]", dt, 1, (int64_t[]){4}, 3, (int64_t[]){2, 4, 3}, 2,
                         (int64_t[]){2, 3});
        test_matmul_case("[3, 4] x [2, 4, 5]", dt, 2, (int64_t[]){3, 4}, 3, (int64_t[]){2, 4, 5}, 3,
                         (int64_t[]){2, 3, 5});
        test_matmul_case("[2, 3, 4] x [2, 4, 5]", dt, 3, (int64_t[]){2, 3, 4}, 3,
                         (int64_t[]){2, 4, 5}, 3, (int64_t[]){2, 3, 5});
        test_matmul_case("[2, 1, 3, 4] x [3, 4, 2]", dt, 4, (int64_t[]){2, 1, 3, 4}, 3,
                         (int64_t[]){3, 4, 2}, 4, (int64_t[]){2, 3, 3, 2});
        test_matmul_case("[1, 3, 2, 4] x [2, 1, 4, 3]", dt, 4, (int64_t[]){1, 3, 2, 4}, 4,
                         (int64_t[]){2, 1, 4, 3}, 4, (int64_t[]){2, 3, 2, 3});
    }

    cs_err err = {0};
    op_test t;
    double z[12] = {0};
    int64_t d34[2] = {3, 4}, d54[2] = {5, 4};
    cs_tensor a = op_test_view(CS_DT_DOUBLE, 2, d34, z), b = op_test_view(CS_DT_DOUBLE, 2, d54, z);
    op_test_init(&t, "MatMul", 13);
    op_test_input(&t, &a);
    op_test_input(&t, &b);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "MatMul [3, 4] x [5, 4] is CS_ERR_SHAPE");
    op_test_free(&t);

    int64_t d234[3] = {2, 3, 4}, d342[3] = {3, 4, 2};
    double z24[24] = {0};
    cs_tensor a3 = op_test_view(CS_DT_DOUBLE, 3, d234, z24), b3 = op_test_view(CS_DT_DOUBLE, 3, d342, z24);
    op_test_init(&t, "MatMul", 13);
    op_test_input(&t, &a3);
    op_test_input(&t, &b3);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "MatMul batch dims 2 vs 3 is CS_ERR_SHAPE");
    op_test_free(&t);

    int64_t ia[12] = {0};
    cs_tensor ai = op_test_view(CS_DT_INT64, 2, d34, ia), bi = op_test_view(CS_DT_INT64, 2, (int64_t[]){4, 3}, ia);
    op_test_init(&t, "MatMul", 13);
    op_test_input(&t, &ai);
    op_test_input(&t, &bi);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "MatMul on int64 is unsupported");
    op_test_free(&t);
}

/* ---- shape operators ---- */

static double seq_d[120];
static float seq_f[120];

/* Runs t (one output expected unless n_out says otherwise) and reports
 * failure details. */
static cs_status run(op_test *t, int n_out, cs_err *err)
{
    op_test_outputs(t, n_out);
    cs_status st = op_test_run(t, err);
    if (st)
        diag("%s: %s", t->node.op_type, err->msg);
    return st;
}

static void test_flatten(void)
{
    int64_t dx[4] = {2, 3, 4, 5};
    cs_tensor x = op_test_view(CS_DT_FLOAT, 4, dx, seq_f);
    struct {
        int has_axis;
        int64_t axis;
        int64_t want[2];
    } cases[] = {{0, 0, {2, 60}}, {1, 0, {1, 120}}, {1, 2, {6, 20}}, {1, 4, {120, 1}},
                 {1, -1, {24, 5}}, {1, -4, {1, 120}}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Flatten", 13);
        if (cases[i].has_axis)
            op_test_attr_int(&t, "axis", cases[i].axis);
        op_test_input(&t, &x);
        int good = run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 2, cases[i].want) &&
                   memcmp(t.out[0]->data, seq_f, sizeof seq_f) == 0;
        ok(good, "Flatten axis %s%lld -> [%lld, %lld]", cases[i].has_axis ? "" : "default ",
           (long long)(cases[i].has_axis ? cases[i].axis : 1), (long long)cases[i].want[0],
           (long long)cases[i].want[1]);
        op_test_free(&t);
    }
    op_test t;
    cs_err err = {0};
    op_test_init(&t, "Flatten", 13);
    op_test_attr_int(&t, "axis", 5);
    op_test_input(&t, &x);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Flatten axis 5 on rank 4 is CS_ERR_SHAPE");
    op_test_free(&t);
}

static void test_reshape(void)
{
    int64_t dx[3] = {2, 3, 4};
    cs_tensor x = op_test_view(CS_DT_DOUBLE, 3, dx, seq_d);
    struct {
        const char *name;
        int n;
        int64_t shape[4];
        int allowzero;
        int want_n;
        int64_t want[4];
    } cases[] = {
        {"[4, 2, 3]", 3, {4, 2, 3}, 0, 3, {4, 2, 3}},
        {"[0, -1]", 2, {0, -1}, 0, 2, {2, 12}},
        {"[-1, 0, 2]", 3, {-1, 0, 2}, 0, 3, {4, 3, 2}},
        {"[2, 0, 4, 1]", 4, {2, 0, 4, 1}, 0, 4, {2, 3, 4, 1}},
        {"[24]", 1, {24}, 0, 1, {24}},
        {"[-1]", 1, {-1}, 0, 1, {24}},
        {"[6, -1] allowzero", 2, {6, -1}, 1, 2, {6, 4}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ns = cases[i].n;
        cs_tensor s = op_test_view(CS_DT_INT64, 1, &ns, cases[i].shape);
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Reshape", 14);
        if (cases[i].allowzero)
            op_test_attr_int(&t, "allowzero", 1);
        op_test_input(&t, &x);
        op_test_input(&t, &s);
        int good = run(&t, 1, &err) == CS_OK && shape_is(t.out[0], cases[i].want_n, cases[i].want) &&
                   memcmp(t.out[0]->data, seq_d, 24 * sizeof(double)) == 0;
        ok(good, "Reshape [2, 3, 4] by %s", cases[i].name);
        op_test_free(&t);
    }

    /* allowzero = 1 keeps a literal 0: [0, 3, 4] -> [3, 4, 0]. */
    int64_t dz[3] = {0, 3, 4}, shape0[3] = {3, 4, 0}, ns3 = 3, want0[3] = {3, 4, 0};
    cs_tensor xz = op_test_view(CS_DT_FLOAT, 3, dz, seq_f), s0 = op_test_view(CS_DT_INT64, 1, &ns3, shape0);
    op_test t;
    cs_err err = {0};
    op_test_init(&t, "Reshape", 14);
    op_test_attr_int(&t, "allowzero", 1);
    op_test_input(&t, &xz);
    op_test_input(&t, &s0);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 3, want0), "Reshape allowzero keeps 0");
    op_test_free(&t);

    /* Without allowzero the same 0 copies the input's dim 2 (4): 48 != 0. */
    op_test_init(&t, "Reshape", 14);
    op_test_input(&t, &xz);
    op_test_input(&t, &s0);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Reshape [0, 3, 4] by [3, 4, 0] without allowzero fails");
    op_test_free(&t);

    int64_t bad[2] = {5, 5}, n2 = 2;
    cs_tensor sb = op_test_view(CS_DT_INT64, 1, &n2, bad);
    op_test_init(&t, "Reshape", 14);
    op_test_input(&t, &x);
    op_test_input(&t, &sb);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Reshape 24 elements to [5, 5] is CS_ERR_SHAPE");
    op_test_free(&t);

    int64_t two_neg[2] = {-1, -1};
    cs_tensor sn = op_test_view(CS_DT_INT64, 1, &n2, two_neg);
    op_test_init(&t, "Reshape", 14);
    op_test_input(&t, &x);
    op_test_input(&t, &sn);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Reshape with two -1 is CS_ERR_SHAPE");
    op_test_free(&t);

    int64_t good_shape[2] = {6, 4};
    cs_tensor su = op_test_view(CS_DT_INT64, 1, &n2, good_shape);
    op_test_init(&t, "Reshape", 14);
    op_test_input(&t, &x);
    op_test_input_unknown(&t, &su);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED && strstr(err.msg, "constant"),
       "Reshape with shape unknown at infer is CS_ERR_UNSUPPORTED");
    op_test_free(&t);
}

static void test_transpose(void)
{
    int64_t dx[3] = {2, 3, 4};
    cs_tensor x = op_test_view(CS_DT_FLOAT, 3, dx, seq_f);
    int64_t perms[3][3] = {{2, 1, 0}, {1, 2, 0}, {0, 2, 1}};
    for (int p = -1; p < 3; p++) {
        int64_t perm[3] = {2, 1, 0};
        if (p >= 0)
            memcpy(perm, perms[p], sizeof perm);
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Transpose", 13);
        if (p >= 0)
            op_test_attr_ints(&t, "perm", 3, perm);
        op_test_input(&t, &x);
        int good = run(&t, 1, &err) == CS_OK;
        int64_t want_dims[3] = {dx[perm[0]], dx[perm[1]], dx[perm[2]]};
        good = good && shape_is(t.out[0], 3, want_dims);
        /* y[i0, i1, i2] = x[j] with j[perm[k]] = i_k. */
        const float *y = good ? t.out[0]->data : NULL;
        for (int64_t i0 = 0; good && i0 < want_dims[0]; i0++)
            for (int64_t i1 = 0; i1 < want_dims[1]; i1++)
                for (int64_t i2 = 0; i2 < want_dims[2]; i2++) {
                    int64_t j[3];
                    j[perm[0]] = i0;
                    j[perm[1]] = i1;
                    j[perm[2]] = i2;
                    float want = seq_f[(j[0] * 3 + j[1]) * 4 + j[2]];
                    if (y[(i0 * want_dims[1] + i1) * want_dims[2] + i2] != want)
                        good = 0;
                }
        ok(good, "Transpose perm %s[%lld, %lld, %lld]", p < 0 ? "default " : "",
           (long long)perm[0], (long long)perm[1], (long long)perm[2]);
        op_test_free(&t);
    }

    /* int64 data moves by element size too. */
    int64_t v[6] = {1, 2, 3, 4, 5, 6}, d23[2] = {2, 3}, want[6] = {1, 4, 2, 5, 3, 6}, d32[2] = {3, 2};
    cs_tensor xi = op_test_view(CS_DT_INT64, 2, d23, v);
    op_test t;
    cs_err err = {0};
    op_test_init(&t, "Transpose", 13);
    op_test_input(&t, &xi);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 2, d32) && i64_are(t.out[0], want, 6),
       "Transpose int64 [2, 3]");
    op_test_free(&t);

    int64_t badperm[3] = {0, 0, 1};
    op_test_init(&t, "Transpose", 13);
    op_test_attr_ints(&t, "perm", 3, badperm);
    op_test_input(&t, &x);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Transpose perm [0, 0, 1] is CS_ERR_SHAPE");
    op_test_free(&t);
}

static void test_concat(void)
{
    /* Three int64 inputs [2, 1], [2, 2], [2, 3] along axis -1. */
    int64_t a[2] = {1, 2}, b[4] = {3, 4, 5, 6}, c[6] = {7, 8, 9, 10, 11, 12};
    int64_t da[2] = {2, 1}, db[2] = {2, 2}, dc[2] = {2, 3}, dy[2] = {2, 6};
    cs_tensor ta = op_test_view(CS_DT_INT64, 2, da, a), tb = op_test_view(CS_DT_INT64, 2, db, b);
    cs_tensor tc = op_test_view(CS_DT_INT64, 2, dc, c);
    int64_t want[12] = {1, 3, 4, 7, 8, 9, 2, 5, 6, 10, 11, 12};
    op_test t;
    cs_err err = {0};
    op_test_init(&t, "Concat", 13);
    op_test_attr_int(&t, "axis", -1);
    op_test_input(&t, &ta);
    op_test_input(&t, &tb);
    op_test_input(&t, &tc);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 2, dy) && i64_are(t.out[0], want, 12),
       "Concat int64 axis -1 of three inputs");
    op_test_free(&t);

    /* float [1, 2] and [2, 2] along axis 0. */
    float f1[2] = {1, 2}, f2[4] = {3, 4, 5, 6};
    int64_t d12[2] = {1, 2}, d22[2] = {2, 2}, d32[2] = {3, 2};
    cs_tensor t1 = op_test_view(CS_DT_FLOAT, 2, d12, f1), t2 = op_test_view(CS_DT_FLOAT, 2, d22, f2);
    double wantf[6] = {1, 2, 3, 4, 5, 6};
    op_test_init(&t, "Concat", 13);
    op_test_attr_int(&t, "axis", 0);
    op_test_input(&t, &t1);
    op_test_input(&t, &t2);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 2, d32) && values_are(t.out[0], wantf, 6, 0),
       "Concat float axis 0");
    op_test_free(&t);

    op_test_init(&t, "Concat", 13);
    op_test_attr_int(&t, "axis", 1);
    op_test_input(&t, &t1);
    op_test_input(&t, &t2);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Concat [1, 2] and [2, 2] on axis 1 is CS_ERR_SHAPE");
    op_test_free(&t);
}

static void test_gather(void)
{
    /* data [3, 4] = 0..11 */
    int64_t d34[2] = {3, 4};
    cs_tensor x = op_test_view(CS_DT_DOUBLE, 2, d34, seq_d);
    {
        int64_t ind[3] = {-1, 0, 2}, di[1] = {3}, dy[2] = {3, 4};
        cs_tensor ti = op_test_view(CS_DT_INT64, 1, di, ind);
        double want[12] = {8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11};
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Gather", 13);
        op_test_input(&t, &x);
        op_test_input(&t, &ti);
        ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 2, dy) && values_are(t.out[0], want, 12, 0),
           "Gather axis 0 with a negative index");
        op_test_free(&t);
    }
    {
        int32_t ind[4] = {3, -4, 1, 1};
        int64_t di[2] = {2, 2}, dy[3] = {3, 2, 2};
        cs_tensor ti = op_test_view(CS_DT_INT32, 2, di, ind);
        double want[12] = {3, 0, 1, 1, 7, 4, 5, 5, 11, 8, 9, 9};
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Gather", 13);
        op_test_attr_int(&t, "axis", 1);
        op_test_input(&t, &x);
        op_test_input(&t, &ti);
        ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 3, dy) && values_are(t.out[0], want, 12, 0),
           "Gather axis 1 with int32 [2, 2] indices");
        op_test_free(&t);
    }
    {
        /* Scalar index on axis -1 removes the axis; bool data. */
        uint8_t bools[6] = {1, 0, 0, 1, 1, 1};
        int64_t d23[2] = {2, 3}, idx = 1, dy[1] = {2};
        cs_tensor xb = op_test_view(CS_DT_BOOL, 2, d23, bools), ti = op_test_view(CS_DT_INT64, 0, NULL, &idx);
        int64_t want[2] = {0, 1};
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Gather", 13);
        op_test_attr_int(&t, "axis", -1);
        op_test_input(&t, &xb);
        op_test_input(&t, &ti);
        ok(run(&t, 1, &err) == CS_OK && t.out[0]->dtype == CS_DT_BOOL && shape_is(t.out[0], 1, dy) &&
               i64_are(t.out[0], want, 2),
           "Gather bool data, scalar index, axis -1");
        op_test_free(&t);
    }
    {
        int64_t ind[2] = {0, 3}, di[1] = {2};
        cs_tensor ti = op_test_view(CS_DT_INT64, 1, di, ind);
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Gather", 13);
        op_test_input(&t, &x);
        op_test_input(&t, &ti);
        op_test_outputs(&t, 1);
        cs_status st = op_test_run(&t, &err);
        ok(st != CS_OK && strstr(err.msg, "out of range"), "Gather index 3 on axis of size 3 fails");
        op_test_free(&t);
    }
}

static void test_unsqueeze_squeeze(void)
{
    int64_t dx[2] = {3, 4};
    cs_tensor x = op_test_view(CS_DT_FLOAT, 2, dx, seq_f);
    int64_t axes[2] = {0, -1}, n_axes = 2, want[4] = {1, 3, 4, 1};
    cs_tensor taxes = op_test_view(CS_DT_INT64, 1, &n_axes, axes);
    op_test t;
    cs_err err = {0};

    op_test_init(&t, "Unsqueeze", 11);
    op_test_attr_ints(&t, "axes", 2, axes);
    op_test_input(&t, &x);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 4, want) &&
           memcmp(t.out[0]->data, seq_f, 12 * sizeof(float)) == 0,
       "Unsqueeze opset 11 axes attribute [0, -1]");
    op_test_free(&t);

    op_test_init(&t, "Unsqueeze", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &taxes);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 4, want), "Unsqueeze opset 13 axes input [0, -1]");
    op_test_free(&t);

    int64_t mid[2] = {2, 1}, want_mid[4] = {3, 1, 1, 4};
    cs_tensor tmid = op_test_view(CS_DT_INT64, 1, &n_axes, mid);
    op_test_init(&t, "Unsqueeze", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &tmid);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 4, want_mid), "Unsqueeze unsorted axes [2, 1]");
    op_test_free(&t);

    op_test_init(&t, "Unsqueeze", 13);
    op_test_input(&t, &x);
    op_test_input_unknown(&t, &taxes);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "Unsqueeze with axes unknown at infer is unsupported");
    op_test_free(&t);

    /* Squeeze [1, 3, 1, 4]. */
    int64_t dy[4] = {1, 3, 1, 4};
    cs_tensor y = op_test_view(CS_DT_FLOAT, 4, dy, seq_f);
    int64_t sq_axes[1] = {-2}, n1 = 1, want_sq[3] = {1, 3, 4}, want_all[2] = {3, 4};
    cs_tensor tsq = op_test_view(CS_DT_INT64, 1, &n1, sq_axes);

    op_test_init(&t, "Squeeze", 11);
    op_test_attr_ints(&t, "axes", 1, sq_axes);
    op_test_input(&t, &y);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 3, want_sq), "Squeeze opset 11 axes attribute [-2]");
    op_test_free(&t);

    op_test_init(&t, "Squeeze", 13);
    op_test_input(&t, &y);
    op_test_input(&t, &tsq);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 3, want_sq) &&
           memcmp(t.out[0]->data, seq_f, 12 * sizeof(float)) == 0,
       "Squeeze opset 13 axes input [-2]");
    op_test_free(&t);

    op_test_init(&t, "Squeeze", 11);
    op_test_input(&t, &y);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 2, want_all), "Squeeze opset 11 without axes");
    op_test_free(&t);

    op_test_init(&t, "Squeeze", 13);
    op_test_input(&t, &y);
    ok(run(&t, 1, &err) == CS_OK && shape_is(t.out[0], 2, want_all), "Squeeze opset 13 without axes");
    op_test_free(&t);

    int64_t not_one[1] = {1};
    cs_tensor tno = op_test_view(CS_DT_INT64, 1, &n1, not_one);
    op_test_init(&t, "Squeeze", 13);
    op_test_input(&t, &y);
    op_test_input(&t, &tno);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Squeeze of a dimension of size 3 is CS_ERR_SHAPE");
    op_test_free(&t);
}

static void test_shape(void)
{
    int64_t dx[3] = {3, 4, 5};
    cs_tensor x = op_test_view(CS_DT_FLOAT, 3, dx, seq_f);
    struct {
        const char *name;
        int has_start, has_end;
        int64_t start, end;
        int n;
        int64_t want[3];
    } cases[] = {
        {"default", 0, 0, 0, 0, 3, {3, 4, 5}},  {"start 1", 1, 0, 1, 0, 2, {4, 5}},
        {"end -1", 0, 1, 0, -1, 2, {3, 4}},     {"start -1", 1, 0, -1, 0, 1, {5}},
        {"start 1 end 2", 1, 1, 1, 2, 1, {4}}, {"start -10 end 10", 1, 1, -10, 10, 3, {3, 4, 5}},
        {"start 2 end 1", 1, 1, 2, 1, 0, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Shape", 15);
        if (cases[i].has_start)
            op_test_attr_int(&t, "start", cases[i].start);
        if (cases[i].has_end)
            op_test_attr_int(&t, "end", cases[i].end);
        op_test_input_unknown(&t, &x); /* needs no data */
        int64_t n = cases[i].n;
        ok(run(&t, 1, &err) == CS_OK && t.out[0]->dtype == CS_DT_INT64 && shape_is(t.out[0], 1, &n) &&
               i64_are(t.out[0], cases[i].want, n),
           "Shape %s", cases[i].name);
        op_test_free(&t);
    }
    ok((cs_op_find("Shape", "")->flags & CS_OP_SHAPE_ONLY) != 0, "Shape is flagged shape-only");
}

static void test_constant(void)
{
    op_test t;
    cs_err err = {0};
    double vals[6] = {1.5, -2, 3, 4, 5, 6};
    int64_t d23[2] = {2, 3};
    cs_tensor v = op_test_view(CS_DT_DOUBLE, 2, d23, vals);
    op_test_init(&t, "Constant", 13);
    op_test_attr_tensor(&t, "value", &v);
    ok(run(&t, 1, &err) == CS_OK && t.out[0]->dtype == CS_DT_DOUBLE && shape_is(t.out[0], 2, d23) &&
           values_are(t.out[0], vals, 6, 0) && t.out[0]->data != v.data,
       "Constant value tensor is copied");
    op_test_free(&t);

    op_test_init(&t, "Constant", 13);
    op_test_attr_float(&t, "value_float", 2.5f);
    double want_f = 2.5;
    ok(run(&t, 1, &err) == CS_OK && t.out[0]->dtype == CS_DT_FLOAT && t.out[0]->ndim == 0 &&
           values_are(t.out[0], &want_f, 1, 0),
       "Constant value_float");
    op_test_free(&t);

    float fl[3] = {1, 2, 3};
    int64_t n3 = 3;
    double want_fl[3] = {1, 2, 3};
    op_test_init(&t, "Constant", 13);
    op_test_attr_floats(&t, "value_floats", 3, fl);
    ok(run(&t, 1, &err) == CS_OK && t.out[0]->dtype == CS_DT_FLOAT && shape_is(t.out[0], 1, &n3) &&
           values_are(t.out[0], want_fl, 3, 0),
       "Constant value_floats");
    op_test_free(&t);

    int64_t want_i = -7;
    op_test_init(&t, "Constant", 13);
    op_test_attr_int(&t, "value_int", -7);
    ok(run(&t, 1, &err) == CS_OK && t.out[0]->dtype == CS_DT_INT64 && t.out[0]->ndim == 0 &&
           i64_are(t.out[0], &want_i, 1),
       "Constant value_int");
    op_test_free(&t);

    int64_t ints[3] = {4, -1, 9};
    op_test_init(&t, "Constant", 13);
    op_test_attr_ints(&t, "value_ints", 3, ints);
    ok(run(&t, 1, &err) == CS_OK && t.out[0]->dtype == CS_DT_INT64 && shape_is(t.out[0], 1, &n3) &&
           i64_are(t.out[0], ints, 3),
       "Constant value_ints");
    op_test_free(&t);

    op_test_init(&t, "Constant", 13);
    op_test_attr_string(&t, "value_string", "hello");
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "Constant value_string is unsupported");
    op_test_free(&t);
}

static void test_identity_dropout(void)
{
    int64_t v[4] = {5, -6, 7, 1LL << 40}, d4[1] = {4};
    cs_tensor x = op_test_view(CS_DT_INT64, 1, d4, v);
    op_test t;
    cs_err err = {0};
    op_test_init(&t, "Identity", 16);
    op_test_input(&t, &x);
    ok(run(&t, 1, &err) == CS_OK && t.out[0]->dtype == CS_DT_INT64 && i64_are(t.out[0], v, 4),
       "Identity int64");
    op_test_free(&t);

    int64_t dxf[2] = {3, 4};
    cs_tensor xf = op_test_view(CS_DT_FLOAT, 2, dxf, seq_f);
    op_test_init(&t, "Dropout", 13);
    op_test_input(&t, &xf);
    int good = run(&t, 2, &err) == CS_OK && t.out[0]->dtype == CS_DT_FLOAT &&
               shape_is(t.out[0], 2, dxf) && memcmp(t.out[0]->data, seq_f, 12 * sizeof(float)) == 0 &&
               t.out[1]->dtype == CS_DT_BOOL && shape_is(t.out[1], 2, dxf);
    for (int i = 0; good && i < 12; i++)
        good = ((const uint8_t *)t.out[1]->data)[i] == 1;
    ok(good, "Dropout opset 13: identity and an all-true bool mask");
    op_test_free(&t);

    float ratio = 0.5f;
    uint8_t train_false = 0, train_true = 1;
    cs_tensor tr = op_test_view(CS_DT_FLOAT, 0, NULL, &ratio);
    cs_tensor tf = op_test_view(CS_DT_BOOL, 0, NULL, &train_false), tt = op_test_view(CS_DT_BOOL, 0, NULL, &train_true);
    op_test_init(&t, "Dropout", 13);
    op_test_input(&t, &xf);
    op_test_input(&t, &tr);
    op_test_input(&t, &tf);
    ok(run(&t, 1, &err) == CS_OK && memcmp(t.out[0]->data, seq_f, 12 * sizeof(float)) == 0,
       "Dropout with ratio 0.5 and training_mode false is identity");
    op_test_free(&t);

    op_test_init(&t, "Dropout", 13);
    op_test_input(&t, &xf);
    op_test_input(&t, &tr);
    op_test_input(&t, &tt);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "Dropout with training_mode true is unsupported");
    op_test_free(&t);

    op_test_init(&t, "Dropout", 13);
    op_test_input(&t, &xf);
    op_test_input(&t, &tr);
    op_test_input_unknown(&t, &tt);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED,
       "Dropout with training_mode true known only at forward is unsupported");
    op_test_free(&t);

    /* Before opset 10 the mask has the data type. */
    op_test_init(&t, "Dropout", 7);
    op_test_attr_float(&t, "ratio", 0.3f);
    op_test_input(&t, &xf);
    double ones[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    ok(run(&t, 2, &err) == CS_OK && t.out[1]->dtype == CS_DT_FLOAT && values_are(t.out[1], ones, 12, 0),
       "Dropout opset 7 mask is float ones");
    op_test_free(&t);
}

static void test_cast(void)
{
    struct {
        cs_dtype from, to;
        double in[4];
        double want[4];
    } cases[] = {
        {CS_DT_FLOAT, CS_DT_INT64, {1.75, -2.5, 0, 300}, {1, -2, 0, 300}},
        {CS_DT_INT64, CS_DT_DOUBLE, {-3, 7, 0, 123456789}, {-3, 7, 0, 123456789}},
        {CS_DT_DOUBLE, CS_DT_FLOAT, {0.1, -2.5, 1e10, 3}, {(float)0.1, -2.5, 1e10, 3}},
        {CS_DT_DOUBLE, CS_DT_UINT8, {0, 1.9, 200, 255}, {0, 1, 200, 255}},
        {CS_DT_UINT8, CS_DT_FLOAT, {0, 7, 128, 255}, {0, 7, 128, 255}},
        {CS_DT_FLOAT, CS_DT_BOOL, {0, 0.5, -1, 0}, {0, 1, 1, 0}},
        {CS_DT_FLOAT, CS_DT_FLOAT16, {1, 0.5, -2, 65504}, {1, 0.5, -2, 65504}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t buf[4];
        store(buf, cases[i].from, cases[i].in, 4);
        int64_t d4 = 4;
        cs_tensor x = op_test_view(cases[i].from, 1, &d4, buf);
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Cast", 13);
        op_test_attr_int(&t, "to", cases[i].to);
        op_test_input(&t, &x);
        ok(run(&t, 1, &err) == CS_OK && t.out[0]->dtype == cases[i].to && shape_is(t.out[0], 1, &d4) &&
               values_are(t.out[0], cases[i].want, 4, 0),
           "Cast %s -> %s", cs_dtype_name(cases[i].from), cs_dtype_name(cases[i].to));
        op_test_free(&t);
    }
    float f[1] = {1};
    int64_t d1 = 1;
    cs_tensor x = op_test_view(CS_DT_FLOAT, 1, &d1, f);
    int64_t bad_to[2] = {CS_DT_STRING, 16 /* bfloat16 */};
    for (int i = 0; i < 2; i++) {
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Cast", 13);
        op_test_attr_int(&t, "to", bad_to[i]);
        op_test_input(&t, &x);
        op_test_outputs(&t, 1);
        ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "Cast to type %lld is unsupported",
           (long long)bad_to[i]);
        op_test_free(&t);
    }
}

int main(void)
{
    for (int i = 0; i < 120; i++) {
        seq_d[i] = i;
        seq_f[i] = (float)i;
    }
    test_gemm();
    test_matmul();
    test_flatten();
    test_reshape();
    test_transpose();
    test_concat();
    test_gather();
    test_unsqueeze_squeeze();
    test_shape();
    test_constant();
    test_identity_dropout();
    test_cast();
    return tap_done();
}
