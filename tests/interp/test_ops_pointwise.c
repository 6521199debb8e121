/* Pointwise operators: broadcasting, unary activations, broadcasting binary
 * arithmetic, Softmax/LogSoftmax and ReduceSum/ReduceMean, each checked
 * against values computed here independently (libm in double, per-element
 * index arithmetic for broadcasting and reductions). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../tap.h"
#include "op_test.h"
#include "tensor/broadcast.h"

/* A tensor view of borrowed data. */
static cs_tensor mk(cs_dtype dt, int ndim, const int64_t *dims, void *data)
{
    cs_tensor t;
    memset(&t, 0, sizeof t);
    cs_tensor_set_shape(&t, dt, ndim, dims);
    t.data = data;
    return t;
}

/* Deterministic values in [lo, hi). */
static double rnd(uint32_t *state, double lo, double hi)
{
    *state = *state * 1664525u + 1013904223u;
    return lo + (hi - lo) * ((*state >> 8) / 16777216.0);
}

static void fill(double *v, int64_t n, uint32_t seed, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = rnd(&seed, lo, hi);
}

static int64_t numel_of(int ndim, const int64_t *dims)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= dims[i];
    return n;
}

static const char *shape_s(int ndim, const int64_t *dims, char *buf, size_t size)
{
    cs_tensor t = mk(CS_DT_FLOAT, ndim, dims, NULL);
    return cs_shape_str(&t, buf, size);
}

/* Flat index into an input of shape (in_nd, in_dims) for the output
 * multi-index idx (out_nd entries), by numpy's rule, computed per element. */
static int64_t bcast_index(const int64_t *idx, int out_nd, int in_nd, const int64_t *in_dims)
{
    int64_t flat = 0;
    for (int d = 0; d < in_nd; d++) {
        int od = d + out_nd - in_nd;
        int64_t i = in_dims[d] == 1 ? 0 : idx[od];
        flat = flat * in_dims[d] + i;
    }
    return flat;
}

static void unravel(int64_t flat, int nd, const int64_t *dims, int64_t *idx)
{
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = flat % dims[d];
        flat /= dims[d];
    }
}

/* ---------------------------------------------------------------- broadcast */

static void test_broadcast(void)
{
    cs_err err;
    cs_tensor a = mk(CS_DT_FLOAT, 3, (int64_t[]){3, 4, 5}, NULL);
    cs_tensor b = mk(CS_DT_FLOAT, 1, (int64_t[]){5}, NULL);
    cs_tensor out;
    memset(&out, 0, sizeof out);
    const cs_tensor *ab[2] = {&a, &b};
    cs_status st = cs_broadcast_shapes(ab, 2, &out, "t", &err);
    ok(st == CS_OK && out.ndim == 3 && out.dims[0] == 3 && out.dims[1] == 4 && out.dims[2] == 5,
       "broadcast [3,4,5] with [5] -> [3,4,5]");

    cs_tensor c = mk(CS_DT_FLOAT, 3, (int64_t[]){2, 1, 4}, NULL);
    cs_tensor d = mk(CS_DT_FLOAT, 2, (int64_t[]){3, 1}, NULL);
    const cs_tensor *cd[2] = {&c, &d};
    st = cs_broadcast_shapes(cd, 2, &out, "t", &err);
    ok(st == CS_OK && out.ndim == 3 && out.dims[0] == 2 && out.dims[1] == 3 && out.dims[2] == 4,
       "broadcast both sides [2,1,4] with [3,1] -> [2,3,4]");
    int64_t strides[CS_MAX_DIMS];
    cs_broadcast_strides(&c, &out, strides);
    ok(strides[0] == 4 && strides[1] == 0 && strides[2] == 1, "strides of [2,1,4] in [2,3,4]");
    cs_broadcast_strides(&d, &out, strides);
    ok(strides[0] == 0 && strides[1] == 1 && strides[2] == 0, "strides of [3,1] in [2,3,4]");

    cs_tensor s = mk(CS_DT_FLOAT, 0, NULL, NULL);
    cs_tensor e = mk(CS_DT_FLOAT, 4, (int64_t[]){1, 1, 3, 1}, NULL);
    const cs_tensor *three[3] = {&s, &e, &c};
    st = cs_broadcast_shapes(three, 3, &out, "t", &err);
    ok(st == CS_OK && out.ndim == 4 && out.dims[0] == 1 && out.dims[1] == 2 && out.dims[2] == 3 &&
           out.dims[3] == 4,
       "broadcast of three shapes [], [1,1,3,1], [2,1,4] -> [1,2,3,4]");

    cs_tensor z = mk(CS_DT_FLOAT, 2, (int64_t[]){0, 3}, NULL);
    cs_tensor one = mk(CS_DT_FLOAT, 2, (int64_t[]){1, 3}, NULL);
    const cs_tensor *zo[2] = {&z, &one};
    st = cs_broadcast_shapes(zo, 2, &out, "t", &err);
    ok(st == CS_OK && out.ndim == 2 && out.dims[0] == 0 && out.dims[1] == 3,
       "size 0 broadcasts against 1");

    cs_tensor f = mk(CS_DT_FLOAT, 1, (int64_t[]){4}, NULL);
    cs_tensor g = mk(CS_DT_FLOAT, 2, (int64_t[]){2, 3}, NULL);
    const cs_tensor *fg[2] = {&f, &g};
    st = cs_broadcast_shapes(fg, 2, &out, "node X", &err);
    ok(st == CS_ERR_SHAPE && strstr(err.msg, "node X") && strstr(err.msg, "[4]") &&
           strstr(err.msg, "[2, 3]"),
       "incompatible [4] and [2,3]: shape error naming both (%s)", err.msg);
}

/* ------------------------------------------------------------------ binary */

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW } bin_op;
static const char *const bin_names[] = {"Add", "Sub", "Mul", "Div", "Pow"};

static double bin_ref(bin_op op, double a, double b)
{
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return a / b;
    case OP_POW: return pow(a, b);
    }
    return NAN;
}

/* Runs a float or double binary op on random inputs of the two shapes and
 * compares every element with the per-element broadcast reference. */
static void check_binary(bin_op op, cs_dtype dt, int na, const int64_t *da, int nb,
                         const int64_t *db)
{
    int64_t an = numel_of(na, da), bn = numel_of(nb, db);
    double *av = malloc(sizeof(double) * (size_t)an), *bv = malloc(sizeof(double) * (size_t)bn);
    fill(av, an, 7u + (uint32_t)an, op == OP_POW ? 0.1 : -3.0, 3.0);
    fill(bv, bn, 11u + (uint32_t)bn, op == OP_POW ? -2.0 : 0.5, 2.5);
    size_t esz = cs_dtype_size(dt);
    void *ab = malloc(esz * (size_t)an), *bb = malloc(esz * (size_t)bn);
    cs_convert(ab, dt, av, CS_DT_DOUBLE, an);
    cs_convert(bb, dt, bv, CS_DT_DOUBLE, bn);
    cs_tensor a = mk(dt, na, da, ab), b = mk(dt, nb, db, bb);
    op_test t;
    op_test_init(&t, bin_names[op], 14);
    op_test_input(&t, &a);
    op_test_input(&t, &b);
    op_test_outputs(&t, 1);
    cs_err err;
    cs_status st = op_test_run(&t, &err);
    char sa[64], sb[64];
    shape_s(na, da, sa, sizeof sa);
    shape_s(nb, db, sb, sizeof sb);
    if (!ok(st == CS_OK, "%s %s %s %s runs", bin_names[op], cs_dtype_name(dt), sa, sb)) {
        diag("%s", err.msg);
    } else {
        const cs_tensor *y = t.out[0];
        int nd = na > nb ? na : nb;
        int shape_ok = y->ndim == nd && y->dtype == dt;
        for (int d = 0; shape_ok && d < nd; d++) {
            int64_t ea = d - (nd - na) >= 0 ? da[d - (nd - na)] : 1;
            int64_t eb = d - (nd - nb) >= 0 ? db[d - (nd - nb)] : 1;
            shape_ok = y->dims[d] == (ea == 1 ? eb : ea);
        }
        ok(shape_ok, "%s %s %s: output shape", bin_names[op], sa, sb);
        int64_t bad = -1, yn = cs_tensor_numel(y);
        double tol = dt == CS_DT_FLOAT ? 1e-5 : 1e-13;
        for (int64_t i = 0; shape_ok && i < yn && bad < 0; i++) {
            int64_t idx[CS_MAX_DIMS];
            unravel(i, nd, y->dims, idx);
            /* the reference sees the values as stored (rounded to dt) */
            double x0 = cs_tensor_get_f64(&a, bcast_index(idx, nd, na, da));
            double x1 = cs_tensor_get_f64(&b, bcast_index(idx, nd, nb, db));
            if (!tap_close(cs_tensor_get_f64(y, i), bin_ref(op, x0, x1), tol, tol))
                bad = i;
        }
        ok(shape_ok && bad < 0, "%s %s %s %s: values match reference%s", bin_names[op],
           cs_dtype_name(dt), sa, sb, bad >= 0 ? " (mismatch)" : "");
    }
    op_test_free(&t);
    free(av);
    free(bv);
    free(ab);
    free(bb);
}

static void test_binary_float(void)
{
    static const struct {
        int na;
        int64_t da[4];
        int nb;
        int64_t db[4];
    } cases[] = {
        {3, {2, 3, 4}, 3, {2, 3, 4}},    /* equal shapes */
        {2, {5, 6}, 1, {6}},             /* bias over [N, C] */
        {1, {6}, 2, {5, 6}},             /* bias on the left */
        {3, {2, 3, 4}, 0, {0}},          /* scalar right */
        {0, {0}, 2, {3, 4}},             /* scalar left */
        {4, {2, 3, 4, 5}, 3, {3, 1, 1}}, /* per-channel over [N, C, H, W] */
        {3, {2, 1, 4}, 2, {3, 1}},       /* both sides, different ranks */
        {4, {1, 3, 1, 5}, 4, {2, 1, 4, 1}}, /* both sides, alternating */
        {2, {3, 1}, 2, {1, 1}},          /* size-1 everywhere */
    };
    for (int op = OP_ADD; op <= OP_POW; op++)
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
            check_binary((bin_op)op, op % 2 ? CS_DT_DOUBLE : CS_DT_FLOAT, cases[k].na,
                         cases[k].da, cases[k].nb, cases[k].db);
    /* the other float type for a couple of shapes */
    check_binary(OP_ADD, CS_DT_DOUBLE, 4, (int64_t[]){2, 3, 4, 5}, 3, (int64_t[]){3, 1, 1});
    check_binary(OP_SUB, CS_DT_FLOAT, 3, (int64_t[]){2, 1, 4}, 2, (int64_t[]){3, 1});
    check_binary(OP_DIV, CS_DT_FLOAT, 2, (int64_t[]){5, 6}, 1, (int64_t[]){6});
    check_binary(OP_POW, CS_DT_DOUBLE, 2, (int64_t[]){5, 6}, 0, NULL);
}

/* Runs op on two given tensors; returns the status, output in t (caller frees). */
static cs_status run2(op_test *t, const char *op, int opset, const cs_tensor *a,
                      const cs_tensor *b, cs_err *err)
{
    op_test_init(t, op, opset);
    op_test_input(t, a);
    op_test_input(t, b);
    op_test_outputs(t, 1);
    return op_test_run(t, err);
}

static void test_binary_int(void)
{
    cs_err err;
    op_test t;
    int64_t d4[] = {4};

    /* integer Div truncates toward zero (numpy divide then cast, C division) */
    int32_t xi[] = {-7, 7, INT32_MIN, 9}, yi[] = {2, -2, -1, 3};
    cs_tensor a = mk(CS_DT_INT32, 1, d4, xi), b = mk(CS_DT_INT32, 1, d4, yi);
    cs_status st = run2(&t, "Div", 14, &a, &b, &err);
    const int32_t *q = t.out[0]->data;
    ok(st == CS_OK && t.out[0]->dtype == CS_DT_INT32 && q[0] == -3 && q[1] == -3 &&
           q[2] == INT32_MIN && q[3] == 3,
       "int32 Div truncates toward zero, INT_MIN / -1 wraps");
    op_test_free(&t);

    int32_t zero_div[] = {1, 0, 1, 1};
    cs_tensor bz = mk(CS_DT_INT32, 1, d4, zero_div);
    st = run2(&t, "Div", 14, &a, &bz, &err);
    ok(st == CS_ERR_RUNTIME && strstr(err.msg, "zero"), "int32 Div by zero is an error (%s)",
       err.msg);
    op_test_free(&t);

    /* uint8 wraps like numpy */
    uint8_t u0[] = {200, 3, 0, 255}, u1[] = {100, 5, 1, 255};
    cs_tensor ua = mk(CS_DT_UINT8, 1, d4, u0), ub = mk(CS_DT_UINT8, 1, d4, u1);
    st = run2(&t, "Add", 14, &ua, &ub, &err);
    const uint8_t *us = t.out[0]->data;
    ok(st == CS_OK && us[0] == 44 && us[1] == 8 && us[2] == 1 && us[3] == 254,
       "uint8 Add wraps modulo 256");
    op_test_free(&t);
    st = run2(&t, "Sub", 14, &ua, &ub, &err);
    us = t.out[0]->data;
    ok(st == CS_OK && us[0] == 100 && us[1] == 254 && us[2] == 255 && us[3] == 0,
       "uint8 Sub wraps modulo 256");
    op_test_free(&t);
    st = run2(&t, "Mul", 14, &ua, &ub, &err);
    us = t.out[0]->data;
    ok(st == CS_OK && us[0] == (uint8_t)(200 * 100) && us[1] == 15 && us[2] == 0 &&
           us[3] == (uint8_t)(255 * 255),
       "uint8 Mul wraps modulo 256");
    op_test_free(&t);

    /* int64 Mul with a broadcast scalar */
    int64_t l0[] = {3, -4, 1LL << 40, 0}, ls = -5;
    cs_tensor la = mk(CS_DT_INT64, 1, d4, l0), lb = mk(CS_DT_INT64, 0, NULL, &ls);
    st = run2(&t, "Mul", 14, &la, &lb, &err);
    const int64_t *lm = t.out[0]->data;
    ok(st == CS_OK && t.out[0]->ndim == 1 && lm[0] == -15 && lm[1] == 20 &&
           lm[2] == -5 * (1LL << 40) && lm[3] == 0,
       "int64 Mul by a scalar");
    op_test_free(&t);

    /* int16 Sub broadcast [2,1] - [3] */
    int16_t s0[] = {10, -10}, s1[] = {1, 2, 3};
    cs_tensor sa = mk(CS_DT_INT16, 2, (int64_t[]){2, 1}, s0);
    cs_tensor sb = mk(CS_DT_INT16, 1, (int64_t[]){3}, s1);
    st = run2(&t, "Sub", 14, &sa, &sb, &err);
    const int16_t *sd = t.out[0]->data;
    ok(st == CS_OK && t.out[0]->dims[0] == 2 && t.out[0]->dims[1] == 3 && sd[0] == 9 &&
           sd[2] == 7 && sd[3] == -11 && sd[5] == -13,
       "int16 Sub broadcasts [2,1] - [3]");
    op_test_free(&t);
}

static void test_pow_types(void)
{
    cs_err err;
    op_test t;
    int64_t d3[] = {3};
    float fb[] = {1.5f, 2.0f, -3.0f};
    int64_t le[] = {2, -1, 3};
    cs_tensor a = mk(CS_DT_FLOAT, 1, d3, fb), b = mk(CS_DT_INT64, 1, d3, le);
    cs_status st = run2(&t, "Pow", 15, &a, &b, &err);
    const float *pf = t.out[0]->data;
    ok(st == CS_OK && t.out[0]->dtype == CS_DT_FLOAT && pf[0] == 2.25f && pf[1] == 0.5f &&
           pf[2] == -27.0f,
       "Pow float ^ int64 keeps float");
    op_test_free(&t);

    int32_t ib[] = {1, 2, 3};
    float fe[] = {4, 5, 6};
    cs_tensor ia = mk(CS_DT_INT32, 1, d3, ib), fe_t = mk(CS_DT_FLOAT, 1, d3, fe);
    st = run2(&t, "Pow", 15, &ia, &fe_t, &err);
    const int32_t *pi = t.out[0]->data;
    ok(st == CS_OK && t.out[0]->dtype == CS_DT_INT32 && pi[0] == 1 && pi[1] == 32 &&
           pi[2] == 729,
       "Pow int32 ^ float32 gives int32");
    op_test_free(&t);

    int64_t lb[] = {2, 3, -2}, lx[] = {10, 3, 2};
    cs_tensor la = mk(CS_DT_INT64, 1, d3, lb), lxe = mk(CS_DT_INT64, 1, d3, lx);
    st = run2(&t, "Pow", 15, &la, &lxe, &err);
    const int64_t *pl = t.out[0]->data;
    ok(st == CS_OK && pl[0] == 1024 && pl[1] == 27 && pl[2] == 4, "Pow int64 ^ int64");
    op_test_free(&t);

    double db[] = {4.0, 9.0, 2.0}, half = 0.5;
    cs_tensor da = mk(CS_DT_DOUBLE, 1, d3, db), dh = mk(CS_DT_DOUBLE, 0, NULL, &half);
    st = run2(&t, "Pow", 15, &da, &dh, &err);
    const double *pd = t.out[0]->data;
    ok(st == CS_OK && pd[0] == 2.0 && pd[1] == 3.0 && fabs(pd[2] - sqrt(2.0)) < 1e-15,
       "Pow double ^ scalar 0.5");
    op_test_free(&t);

    uint8_t bools[] = {1, 0, 1};
    cs_tensor bt = mk(CS_DT_BOOL, 1, d3, bools);
    st = run2(&t, "Pow", 15, &a, &bt, &err);
    ok(st != CS_OK, "Pow with a bool exponent is rejected (%s)", err.msg);
    op_test_free(&t);
}

static void test_binary_errors(void)
{
    cs_err err;
    op_test t;
    float f[6] = {0};
    double d[6] = {0};
    cs_tensor a = mk(CS_DT_FLOAT, 2, (int64_t[]){2, 3}, f);
    cs_tensor b = mk(CS_DT_FLOAT, 1, (int64_t[]){2}, f);
    cs_status st = run2(&t, "Add", 14, &a, &b, &err);
    ok(st == CS_ERR_SHAPE && strstr(err.msg, "test_node"),
       "Add [2,3] + [2] is a shape error naming the node (%s)", err.msg);
    op_test_free(&t);

    cs_tensor c = mk(CS_DT_FLOAT, 3, (int64_t[]){2, 1, 3}, f);
    cs_tensor e = mk(CS_DT_FLOAT, 2, (int64_t[]){4, 2}, f);
    st = run2(&t, "Mul", 14, &c, &e, &err);
    ok(st == CS_ERR_SHAPE, "Mul [2,1,3] * [4,2] is a shape error");
    op_test_free(&t);

    cs_tensor dd = mk(CS_DT_DOUBLE, 2, (int64_t[]){2, 3}, d);
    st = run2(&t, "Sub", 14, &a, &dd, &err);
    ok(st != CS_OK && st == err.code, "Sub float - double is an error (%s)", err.msg);
    op_test_free(&t);

    uint8_t bb[6] = {0};
    cs_tensor ba = mk(CS_DT_BOOL, 2, (int64_t[]){2, 3}, bb);
    st = run2(&t, "Add", 14, &ba, &ba, &err);
    ok(st == CS_ERR_UNSUPPORTED, "Add on bool is unsupported (%s)", err.msg);
    op_test_free(&t);

    op_test_init(&t, "Div", 14);
    op_test_input(&t, &a);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_FORMAT, "Div with one input is a format error");
    op_test_free(&t);
}

/* ------------------------------------------------------------------- unary */

static double sigmoid_ref(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

typedef double (*ref_fn)(double);
static double relu_ref(double x) { return x > 0 ? x : 0; }
static double neg_ref(double x) { return -x; }

static void check_unary_at(const char *op, int opset, ref_fn ref, cs_dtype dt, const double *xs, int n,
                           double tol)
{
    size_t esz = cs_dtype_size(dt);
    void *buf = malloc(esz * (size_t)n);
    cs_convert(buf, dt, xs, CS_DT_DOUBLE, n);
    int64_t dims[] = {n};
    cs_tensor x = mk(dt, 1, dims, buf);
    op_test t;
    op_test_init(&t, op, opset);
    op_test_input(&t, &x);
    op_test_outputs(&t, 1);
    cs_err err;
    cs_status st = op_test_run(&t, &err);
    int bad = -1;
    for (int i = 0; st == CS_OK && i < n && bad < 0; i++) {
        double want = ref(cs_tensor_get_f64(&x, i));
        if (!tap_close(cs_tensor_get_f64(t.out[0], i), want, tol, tol * 1e-3))
            bad = i;
    }
    ok(st == CS_OK && t.out[0]->dtype == dt && bad < 0, "%s %s matches libm%s", op,
       cs_dtype_name(dt), bad >= 0 ? " (mismatch)" : "");
    if (bad >= 0)
        diag("x = %g: got %.9g want %.9g", xs[bad], cs_tensor_get_f64(t.out[0], bad),
             ref(cs_tensor_get_f64(&x, bad)));
    op_test_free(&t);
    free(buf);
}

static void check_unary(const char *op, ref_fn ref, cs_dtype dt, const double *xs, int n, double tol)
{
    check_unary_at(op, 13, ref, dt, xs, n, tol);
}

/* Mish and Gelu have no backend node test in the shipped test data: their
 * plain textbook formulas, evaluated the naive way. */
static double mish_ref(double x)
{
    return x * tanh(log(1.0 + exp(x)));
}

static double gelu_ref(double x)
{
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

/* GroupNormalization (no backend node test either) against its
 * definition: mean and population variance over each group's channels and
 * positions, then the per-group (opset 18) affine map. */
static void test_group_norm(void)
{
    enum { N = 2, C = 4, S = 3, G = 2 };
    double xv[N * C * S], sc[G] = {1.5, -0.5}, bi[G] = {0.25, 2.0}, want[N * C * S];
    for (int i = 0; i < N * C * S; i++)
        xv[i] = sin(0.7 * i) * (1 + i % 5);
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const int base = (n * C + g * (C / G)) * S, cnt = C / G * S;
            double mu = 0, var = 0;
            for (int i = 0; i < cnt; i++)
                mu += xv[base + i] / cnt;
            for (int i = 0; i < cnt; i++)
                var += (xv[base + i] - mu) * (xv[base + i] - mu) / cnt;
            for (int i = 0; i < cnt; i++)
                want[base + i] = sc[g] * (xv[base + i] - mu) / sqrt(var + (double)1e-5f) + bi[g]; /* epsilon is a float attribute */
        }
    cs_tensor x = mk(CS_DT_DOUBLE, 3, (int64_t[]){N, C, S}, xv), s = mk(CS_DT_DOUBLE, 1, (int64_t[]){G}, sc),
              b = mk(CS_DT_DOUBLE, 1, (int64_t[]){G}, bi);
    op_test t;
    op_test_init(&t, "GroupNormalization", 18);
    op_test_input(&t, &x);
    op_test_input(&t, &s);
    op_test_input(&t, &b);
    op_test_attr_int(&t, "num_groups", G);
    op_test_outputs(&t, 1);
    cs_err err;
    cs_status st = op_test_run(&t, &err);
    double worst = 0;
    for (int i = 0; st == CS_OK && i < N * C * S; i++)
        worst = fmax(worst, fabs(cs_tensor_get_f64(t.out[0], i) - want[i]));
    ok(st == CS_OK && worst < 1e-13, "GroupNormalization-18 matches its definition (max err %.2g) (%s)", worst,
       st ? err.msg : "");
    op_test_free(&t);
}

static void test_unary(void)
{
    static const double xs[] = {-5.5, -2.0, -1.0, -0.25, 0.0, 0.125, 0.5, 1.0, 3.0, 7.5};
    static const double pos[] = {1e-6, 0.01, 0.5, 1.0, 2.0, 10.0, 1234.5};
    const int nx = sizeof xs / sizeof xs[0], np_ = sizeof pos / sizeof pos[0];
    for (int k = 0; k < 2; k++) {
        cs_dtype dt = k ? CS_DT_DOUBLE : CS_DT_FLOAT;
        double tol = k ? 1e-14 : 2e-6;
        check_unary("Relu", relu_ref, dt, xs, nx, tol);
        check_unary("Sigmoid", sigmoid_ref, dt, xs, nx, tol);
        check_unary("Tanh", tanh, dt, xs, nx, tol);
        check_unary("Erf", erf, dt, xs, nx, tol);
        check_unary("Exp", exp, dt, xs, nx, tol);
        check_unary("Neg", neg_ref, dt, xs, nx, tol);
        check_unary("Log", log, dt, pos, np_, tol);
        check_unary("Sqrt", sqrt, dt, pos, np_, tol);
        check_unary_at("Mish", 18, mish_ref, dt, xs, nx, k ? 1e-13 : tol);
        check_unary_at("Gelu", 20, gelu_ref, dt, xs, nx, k ? 1e-13 : tol);
    }
    /* integer Relu / Neg */
    int32_t iv[] = {-3, 0, 5, INT32_MIN};
    cs_tensor xi = mk(CS_DT_INT32, 1, (int64_t[]){4}, iv);
    op_test t;
    cs_err err;
    op_test_init(&t, "Relu", 14);
    op_test_input(&t, &xi);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, &err);
    const int32_t *r = t.out[0]->data;
    ok(st == CS_OK && r[0] == 0 && r[1] == 0 && r[2] == 5 && r[3] == 0, "Relu on int32");
    op_test_free(&t);
    op_test_init(&t, "Neg", 13);
    op_test_input(&t, &xi);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    r = t.out[0]->data;
    ok(st == CS_OK && r[0] == 3 && r[1] == 0 && r[2] == -5 && r[3] == INT32_MIN,
       "Neg on int32 (INT_MIN wraps)");
    op_test_free(&t);

    /* Sigmoid far in the tails: no overflow, no NaN */
    float tails[] = {-1000.0f, -100.0f, 100.0f, 1000.0f};
    cs_tensor xt = mk(CS_DT_FLOAT, 1, (int64_t[]){4}, tails);
    op_test_init(&t, "Sigmoid", 13);
    op_test_input(&t, &xt);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    const float *sg = t.out[0]->data;
    ok(st == CS_OK && sg[0] == 0.0f && sg[1] >= 0.0f && sg[1] < 1e-40f && sg[2] == 1.0f &&
           sg[3] == 1.0f,
       "Sigmoid is stable at +-100 and +-1000");
    op_test_free(&t);

    /* LeakyRelu: default alpha 0.01 and an explicit one */
    float lx[] = {-2.0f, 0.0f, 3.0f};
    cs_tensor xl = mk(CS_DT_FLOAT, 1, (int64_t[]){3}, lx);
    op_test_init(&t, "LeakyRelu", 16);
    op_test_input(&t, &xl);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    const float *lr = t.out[0]->data;
    ok(st == CS_OK && lr[0] == -2.0f * 0.01f && lr[1] == 0.0f && lr[2] == 3.0f,
       "LeakyRelu default alpha 0.01");
    op_test_free(&t);
    double ldx[] = {-2.0, 0.5};
    cs_tensor xld = mk(CS_DT_DOUBLE, 1, (int64_t[]){2}, ldx);
    op_test_init(&t, "LeakyRelu", 16);
    op_test_attr_float(&t, "alpha", 0.25f);
    op_test_input(&t, &xld);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    const double *lrd = t.out[0]->data;
    ok(st == CS_OK && lrd[0] == -0.5 && lrd[1] == 0.5, "LeakyRelu double, alpha 0.25");
    op_test_free(&t);

    /* wrong types */
    op_test_init(&t, "Sigmoid", 13);
    op_test_input(&t, &xi);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_UNSUPPORTED, "Sigmoid on int32 is unsupported (%s)", err.msg);
    op_test_free(&t);
    uint8_t ub[] = {1, 2};
    cs_tensor xu = mk(CS_DT_UINT8, 1, (int64_t[]){2}, ub);
    op_test_init(&t, "Relu", 14);
    op_test_input(&t, &xu);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_UNSUPPORTED, "Relu on uint8 is unsupported");
    op_test_free(&t);
    op_test_init(&t, "Exp", 13);
    op_test_input(&t, &xl);
    op_test_input(&t, &xl);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_FORMAT, "Exp with two inputs is a format error");
    op_test_free(&t);
}

/* -------------------------------------------------------------------- Clip */

static void test_clip(void)
{
    cs_err err;
    op_test t;
    float x[] = {-3.0f, -1.0f, 0.0f, 2.0f, 6.0f, NAN};
    cs_tensor xt = mk(CS_DT_FLOAT, 2, (int64_t[]){2, 3}, x);
    float lo = -1.5f, hi = 2.5f;
    cs_tensor lot = mk(CS_DT_FLOAT, 0, NULL, &lo), hit = mk(CS_DT_FLOAT, 0, NULL, &hi);
    static const float want_both[] = {-1.5f, -1.0f, 0.0f, 2.0f, 2.5f};
    static const float want_lo[] = {-1.5f, -1.0f, 0.0f, 2.0f, 6.0f};
    static const float want_hi[] = {-3.0f, -1.0f, 0.0f, 2.0f, 2.5f};
    struct {
        const char *name;
        const cs_tensor *lo, *hi;
        int n_in;
        const float *want;
    } cases[] = {
        {"min and max inputs", &lot, &hit, 3, want_both},
        {"min only (max omitted)", &lot, NULL, 2, want_lo},
        {"max only (min NULL)", NULL, &hit, 3, want_hi},
        {"both omitted", NULL, NULL, 3, x},
        {"no bound inputs at all", NULL, NULL, 1, x},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        op_test_init(&t, "Clip", 13);
        op_test_input(&t, &xt);
        if (cases[k].n_in > 1)
            op_test_input(&t, cases[k].lo);
        if (cases[k].n_in > 2)
            op_test_input(&t, cases[k].hi);
        op_test_outputs(&t, 1);
        cs_status st = op_test_run(&t, &err);
        const float *y = t.out[0]->data;
        int good = st == CS_OK && t.out[0]->ndim == 2 && isnan(y[5]);
        for (int i = 0; good && i < 5; i++)
            good = y[i] == cases[k].want[i];
        ok(good, "Clip-13 %s", cases[k].name);
        op_test_free(&t);
    }

    /* opset 6: attributes */
    double xd[] = {-3.0, 0.5, 9.0};
    cs_tensor xdt = mk(CS_DT_DOUBLE, 1, (int64_t[]){3}, xd);
    op_test_init(&t, "Clip", 6);
    op_test_attr_float(&t, "min", -1.0f);
    op_test_attr_float(&t, "max", 1.0f);
    op_test_input(&t, &xdt);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, &err);
    const double *yd = t.out[0]->data;
    ok(st == CS_OK && yd[0] == -1.0 && yd[1] == 0.5 && yd[2] == 1.0,
       "Clip-6 min/max attributes on double");
    op_test_free(&t);
    op_test_init(&t, "Clip", 6);
    op_test_attr_float(&t, "max", 0.0f);
    op_test_input(&t, &xdt);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    yd = t.out[0]->data;
    ok(st == CS_OK && yd[0] == -3.0 && yd[1] == 0.0 && yd[2] == 0.0,
       "Clip-6 max attribute only (min defaults to -inf)");
    op_test_free(&t);

    /* min > max: everything becomes max */
    float lo2 = 3.0f, hi2 = 1.0f;
    cs_tensor lo2t = mk(CS_DT_FLOAT, 0, NULL, &lo2), hi2t = mk(CS_DT_FLOAT, 0, NULL, &hi2);
    op_test_init(&t, "Clip", 13);
    op_test_input(&t, &xt);
    op_test_input(&t, &lo2t);
    op_test_input(&t, &hi2t);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    const float *yf = t.out[0]->data;
    ok(st == CS_OK && yf[0] == 1.0f && yf[2] == 1.0f && yf[4] == 1.0f, "Clip min > max gives max");
    op_test_free(&t);

    /* int8 */
    int8_t xi[] = {-128, -5, 0, 5, 127};
    int8_t imax = 4;
    cs_tensor xit = mk(CS_DT_INT8, 1, (int64_t[]){5}, xi), imt = mk(CS_DT_INT8, 0, NULL, &imax);
    op_test_init(&t, "Clip", 13);
    op_test_input(&t, &xit);
    op_test_input(&t, NULL);
    op_test_input(&t, &imt);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    const int8_t *yi = t.out[0]->data;
    ok(st == CS_OK && yi[0] == -128 && yi[1] == -5 && yi[3] == 4 && yi[4] == 4,
       "Clip int8 with max only");
    op_test_free(&t);

    /* errors: bound of another type, non-scalar bound */
    double dlo = 0;
    cs_tensor dlot = mk(CS_DT_DOUBLE, 0, NULL, &dlo);
    op_test_init(&t, "Clip", 13);
    op_test_input(&t, &xt);
    op_test_input(&t, &dlot);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_SHAPE, "Clip with a double min on float input is an error (%s)", err.msg);
    op_test_free(&t);
    op_test_init(&t, "Clip", 13);
    op_test_input(&t, &xt);
    op_test_input(&t, &xt);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_SHAPE, "Clip with a non-scalar min is an error");
    op_test_free(&t);
}

/* ----------------------------------------------------------------- softmax */

/* Softmax of x ([outer, n, inner] view) by the textbook formula in double. */
static void softmax_ref(const double *x, double *y, int64_t outer, int64_t n, int64_t inner,
                        int log_out)
{
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++)
                s += exp(x[(o * n + k) * inner + j]);
            for (int64_t k = 0; k < n; k++) {
                double v = x[(o * n + k) * inner + j];
                y[(o * n + k) * inner + j] = log_out ? v - log(s) : exp(v) / s;
            }
        }
}

static void check_softmax(const char *op, int opset, int has_axis, int64_t axis, cs_dtype dt,
                          int64_t outer, int64_t n, int64_t inner, const char *what)
{
    int64_t dims[] = {2, 3, 4};
    double xv[24], want[24];
    fill(xv, 24, 5u, -4.0, 4.0);
    softmax_ref(xv, want, outer, n, inner, op[0] == 'L');
    size_t esz = cs_dtype_size(dt);
    void *xb = malloc(esz * 24);
    cs_convert(xb, dt, xv, CS_DT_DOUBLE, 24);
    cs_tensor x = mk(dt, 3, dims, xb);
    op_test t;
    op_test_init(&t, op, opset);
    if (has_axis)
        op_test_attr_int(&t, "axis", axis);
    op_test_input(&t, &x);
    op_test_outputs(&t, 1);
    cs_err err;
    cs_status st = op_test_run(&t, &err);
    int good = st == CS_OK && cs_tensor_same_shape(t.out[0], &x) && t.out[0]->dtype == dt;
    double tol = dt == CS_DT_FLOAT ? 1e-6 : 1e-14;
    for (int i = 0; good && i < 24; i++)
        good = tap_close(cs_tensor_get_f64(t.out[0], i), want[i], tol, tol);
    ok(good, "%s-%d %s %s", op, opset, cs_dtype_name(dt), what);
    if (st)
        diag("%s", err.msg);
    op_test_free(&t);
    free(xb);
}

static void test_softmax(void)
{
    static const char *const ops[] = {"Softmax", "LogSoftmax"};
    for (int k = 0; k < 2; k++) {
        const char *op = ops[k];
        cs_dtype dt = k ? CS_DT_DOUBLE : CS_DT_FLOAT;
        /* opset 11: coerce to 2-D at axis, normalise the whole trailing block */
        check_softmax(op, 11, 0, 0, dt, 2, 12, 1, "default axis 1 normalises over 3*4");
        check_softmax(op, 11, 1, 0, dt, 1, 24, 1, "axis 0 normalises over everything");
        check_softmax(op, 11, 1, 2, dt, 6, 4, 1, "axis 2");
        check_softmax(op, 11, 1, -2, dt, 2, 12, 1, "axis -2");
        /* opset 13: along the axis only */
        check_softmax(op, 13, 0, 0, dt, 6, 4, 1, "default axis -1");
        check_softmax(op, 13, 1, 1, dt, 2, 3, 4, "axis 1 only");
        check_softmax(op, 13, 1, 0, dt, 1, 2, 12, "axis 0 only");
        check_softmax(op, 13, 1, -2, dt, 2, 3, 4, "axis -2 only");
    }
    check_softmax("LogSoftmax", 13, 1, 1, CS_DT_FLOAT, 2, 3, 4, "axis 1 only");
    check_softmax("Softmax", 13, 1, 1, CS_DT_DOUBLE, 2, 3, 4, "axis 1 only");

    /* large logits: the naive formula overflows, the stable one does not */
    float big[] = {1000.0f, 1001.0f, 1002.0f, 1003.0f};
    cs_tensor xb = mk(CS_DT_FLOAT, 2, (int64_t[]){1, 4}, big);
    op_test t;
    cs_err err;
    double z = 1 + exp(-1.0) + exp(-2.0) + exp(-3.0);
    op_test_init(&t, "Softmax", 13);
    op_test_input(&t, &xb);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, &err);
    const float *ys = t.out[0]->data;
    ok(st == CS_OK && tap_close(ys[3], 1 / z, 1e-6, 0) && tap_close(ys[0], exp(-3.0) / z, 1e-5, 0),
       "Softmax of logits near 1000 is finite and right");
    op_test_free(&t);
    op_test_init(&t, "LogSoftmax", 13);
    op_test_input(&t, &xb);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ys = t.out[0]->data;
    ok(st == CS_OK && tap_close(ys[3], -log(z), 1e-5, 1e-6) &&
           tap_close(ys[0], -3 - log(z), 1e-6, 1e-6),
       "LogSoftmax of logits near 1000 is finite and right");
    op_test_free(&t);

    /* errors */
    op_test_init(&t, "Softmax", 13);
    op_test_attr_int(&t, "axis", 2);
    op_test_input(&t, &xb);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_SHAPE, "Softmax axis 2 on rank 2 is a shape error (%s)", err.msg);
    op_test_free(&t);
    int32_t iv[4] = {0};
    cs_tensor xi = mk(CS_DT_INT32, 2, (int64_t[]){1, 4}, iv);
    op_test_init(&t, "LogSoftmax", 13);
    op_test_input(&t, &xi);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_UNSUPPORTED, "LogSoftmax on int32 is unsupported");
    op_test_free(&t);
}

/* ------------------------------------------------------------------ reduce */

/* Sum / mean of x [2, 3, 4] (double values) over a mask of axes, by
 * visiting every input element; y laid out with kept dims in order. */
static void reduce_ref(const double *x, const int64_t *dims, const int *mask, int mean, double *y,
                       int64_t *yn)
{
    int64_t kept[3], nk = 0, count = 1;
    for (int d = 0; d < 3; d++) {
        if (mask[d])
            count *= dims[d];
        else
            kept[nk++] = dims[d];
    }
    *yn = numel_of((int)nk, kept);
    for (int64_t i = 0; i < *yn; i++)
        y[i] = 0;
    for (int64_t i = 0; i < 24; i++) {
        int64_t idx[3], o = 0;
        unravel(i, 3, dims, idx);
        for (int d = 0; d < 3; d++)
            if (!mask[d])
                o = o * dims[d] + idx[d];
        y[o] += x[i];
    }
    if (mean)
        for (int64_t i = 0; i < *yn; i++)
            y[i] /= (double)count;
}

/* axes: attribute (opset < as_input_opset) or input tensor. */
static void check_reduce(const char *op, int opset, cs_dtype dt, int n_axes, const int64_t *axes,
                         int keepdims, const int *mask, const char *what)
{
    int64_t dims[] = {2, 3, 4};
    double xv[24], want[24];
    fill(xv, 24, 9u, -2.0, 5.0);
    if (dt == CS_DT_INT64)
        for (int i = 0; i < 24; i++)
            xv[i] = floor(xv[i] * 10);
    int mean = strcmp(op, "ReduceMean") == 0;
    int64_t yn;
    reduce_ref(xv, dims, mask, mean, want, &yn);
    size_t esz = cs_dtype_size(dt);
    void *xb = malloc(esz * 24);
    cs_convert(xb, dt, xv, CS_DT_DOUBLE, 24);
    cs_tensor x = mk(dt, 3, dims, xb);
    int axes_input = opset >= (mean ? 18 : 13);
    int64_t no_axes[1];
    cs_tensor at = mk(CS_DT_INT64, 1, (int64_t[]){n_axes}, (void *)(axes ? axes : no_axes));
    op_test t;
    op_test_init(&t, op, opset);
    if (keepdims >= 0)
        op_test_attr_int(&t, "keepdims", keepdims);
    if (!axes_input && n_axes > 0)
        op_test_attr_ints(&t, "axes", n_axes, axes);
    op_test_input(&t, &x);
    if (axes_input && n_axes >= 0)
        op_test_input(&t, &at);
    op_test_outputs(&t, 1);
    cs_err err;
    cs_status st = op_test_run(&t, &err);
    int good = st == CS_OK && t.out[0]->dtype == dt;
    if (good) {
        const cs_tensor *y = t.out[0];
        int nd = 0;
        for (int d = 0; d < 3; d++) {
            if (!mask[d])
                good = good && y->dims[nd++] == dims[d];
            else if (keepdims != 0)
                good = good && y->dims[nd++] == 1;
        }
        good = good && y->ndim == nd && cs_tensor_numel(y) == yn;
        double tol = dt == CS_DT_FLOAT ? 1e-6 : 1e-13;
        for (int64_t i = 0; good && i < yn; i++) {
            double w = dt == CS_DT_INT64 ? trunc(want[i]) : want[i];
            good = tap_close(cs_tensor_get_f64(y, i), w, tol, tol);
        }
    } else if (st) {
        diag("%s", err.msg);
    }
    ok(good, "%s-%d %s %s", op, opset, cs_dtype_name(dt), what);
    op_test_free(&t);
    free(xb);
}

static void test_reduce(void)
{
    static const int m_all[] = {1, 1, 1}, m_1[] = {0, 1, 0}, m_02[] = {1, 0, 1},
                     m_2[] = {0, 0, 1}, m_0[] = {1, 0, 0}, m_01[] = {1, 1, 0};
    for (int k = 0; k < 2; k++) {
        cs_dtype dt = k ? CS_DT_DOUBLE : CS_DT_FLOAT;
        check_reduce("ReduceMean", 13, dt, 1, (int64_t[]){1}, 1, m_1, "axes [1] keepdims 1");
        check_reduce("ReduceMean", 13, dt, 1, (int64_t[]){1}, 0, m_1, "axes [1] keepdims 0");
        check_reduce("ReduceMean", 13, dt, 1, (int64_t[]){-2}, -1, m_1,
                     "axes [-2], keepdims default");
        check_reduce("ReduceMean", 13, dt, 0, NULL, 1, m_all, "no axes = all");
        check_reduce("ReduceMean", 13, dt, 0, NULL, 0, m_all, "all axes keepdims 0 -> scalar");
        check_reduce("ReduceMean", 13, dt, 2, (int64_t[]){2, 0}, 0, m_02, "axes [2, 0]");
        check_reduce("ReduceMean", 13, dt, 1, (int64_t[]){-1}, 1, m_2, "axes [-1]");
        check_reduce("ReduceSum", 11, dt, 2, (int64_t[]){0, 1}, 1, m_01, "attribute axes [0, 1]");
        check_reduce("ReduceSum", 13, dt, 1, (int64_t[]){1}, 0, m_1, "axes input [1] keepdims 0");
        check_reduce("ReduceSum", 13, dt, 1, (int64_t[]){0}, 1, m_0, "axes input [0]");
        check_reduce("ReduceSum", 13, dt, 0, NULL, 1, m_all, "empty axes input = all");
        check_reduce("ReduceSum", 13, dt, -1, NULL, 1, m_all, "omitted axes input = all");
        check_reduce("ReduceMean", 18, dt, 2, (int64_t[]){-1, 0}, 0, m_02, "axes input [-1, 0]");
    }
    check_reduce("ReduceSum", 13, CS_DT_INT64, 1, (int64_t[]){2}, 0, m_2, "int64 axes [2]");
    check_reduce("ReduceMean", 13, CS_DT_INT64, 1, (int64_t[]){1}, 1, m_1,
                 "int64 mean truncates");

    cs_err err;
    op_test t;
    double xv[6] = {1, 2, 3, 4, 5, 6};
    cs_tensor x = mk(CS_DT_DOUBLE, 2, (int64_t[]){2, 3}, xv);

    /* noop_with_empty_axes */
    int64_t none[1];
    cs_tensor empty_axes = mk(CS_DT_INT64, 1, (int64_t[]){0}, none);
    op_test_init(&t, "ReduceSum", 13);
    op_test_attr_int(&t, "noop_with_empty_axes", 1);
    op_test_input(&t, &x);
    op_test_input(&t, &empty_axes);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, &err);
    ok(st == CS_OK && cs_tensor_same_shape(t.out[0], &x) &&
           memcmp(t.out[0]->data, xv, sizeof xv) == 0,
       "ReduceSum noop_with_empty_axes with empty axes is identity");
    op_test_free(&t);

    /* axes input not known at prepare */
    int64_t ax1 = 1;
    cs_tensor axt = mk(CS_DT_INT64, 1, (int64_t[]){1}, &ax1);
    op_test_init(&t, "ReduceSum", 13);
    op_test_input(&t, &x);
    op_test_input_unknown(&t, &axt);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_UNSUPPORTED, "ReduceSum with a runtime axes input is unsupported (%s)",
       err.msg);
    op_test_free(&t);

    /* bad axes */
    op_test_init(&t, "ReduceMean", 13);
    op_test_attr_ints(&t, "axes", 1, (int64_t[]){2});
    op_test_input(&t, &x);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_SHAPE, "ReduceMean axis 2 on rank 2 is a shape error");
    op_test_free(&t);
    static const int64_t rep[] = {1, -1};
    op_test_init(&t, "ReduceMean", 13);
    op_test_attr_ints(&t, "axes", 2, rep);
    op_test_input(&t, &x);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st != CS_OK && strstr(err.msg, "repeated"), "ReduceMean repeated axis is an error (%s)",
       err.msg);
    op_test_free(&t);
    uint8_t bv[6] = {0};
    cs_tensor xbool = mk(CS_DT_BOOL, 2, (int64_t[]){2, 3}, bv);
    op_test_init(&t, "ReduceSum", 11);
    op_test_input(&t, &xbool);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_ERR_UNSUPPORTED, "ReduceSum on bool is unsupported");
    op_test_free(&t);
}

int main(void)
{
    test_group_norm();
    test_broadcast();
    test_binary_float();
    test_binary_int();
    test_pow_types();
    test_binary_errors();
    test_unary();
    test_clip();
    test_softmax();
    test_reduce();
    return tap_done();
}
