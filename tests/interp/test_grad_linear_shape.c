/* Derivative rules of Gemm, MatMul and the shape / data-movement operators.
 *
 * Every case is built by a setup function parameterised by the float type of
 * its inputs, and checked three ways:
 *   1. fd_check.h in float64: vjp, jvp and rop (or linearity) against
 *      central finite differences;
 *   2. NULL gradients / tangents give the same results as explicit zero
 *      tensors (jvp outputs are pre-filled with NaN, so a rule that skips
 *      writing an output is caught);
 *   3. the same case in float32 runs the rules (sgemm paths, float loops)
 *      and agrees with the float64 rules to ~1e-5 relative.
 * Cast between float types cannot go through fd_check (its output is not
 * float64 both ways) and is checked against exact expected values. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fd_check.h"

/* ---- cases ---- */

typedef struct gcase {
    op_test t;
    cs_tensor in[OP_TEST_MAX]; /* owned inputs, borrowed by t */
    cs_tensor attr_value;      /* Constant's value attribute (owned) */
    cs_dtype dt;               /* type of the float inputs */
    int p[3];                  /* case parameters, read by the setup function */
    uint64_t seed;             /* input values: the same for both float types */
} gcase;

typedef void (*setup_fn)(gcase *g);

static void gc_begin(gcase *g, const char *op, int opset)
{
    op_test_init(&g->t, op, opset);
    g->seed = 42;
}

static cs_tensor *gc_new_(gcase *g, cs_dtype dt, int ndim, const int64_t *dims)
{
    cs_tensor *x = &g->in[g->t.node.n_inputs];
    memset(x, 0, sizeof *x);
    cs_tensor_set_shape(x, dt, ndim, dims);
    if (cs_tensor_alloc(x, NULL) != CS_OK)
        abort();
    return x;
}

/* A float input of the case's type, random in [-1, 1). */
static void gc_float(gcase *g, int ndim, const int64_t *dims)
{
    cs_tensor *x = gc_new_(g, g->dt, ndim, dims);
    for (int64_t i = 0; i < cs_tensor_numel(x); i++)
        cs_tensor_set_f64(x, i, fd_rand_(&g->seed));
    op_test_input(&g->t, x);
}

static void gc_ints(gcase *g, int ndim, const int64_t *dims, const int64_t *vals)
{
    cs_tensor *x = gc_new_(g, CS_DT_INT64, ndim, dims);
    memcpy(x->data, vals, cs_tensor_bytes(x));
    op_test_input(&g->t, x);
}

static void gc_bool(gcase *g, int value)
{
    cs_tensor *x = gc_new_(g, CS_DT_BOOL, 0, NULL);
    *(uint8_t *)x->data = (uint8_t)value;
    op_test_input(&g->t, x);
}

static void gc_free(gcase *g)
{
    op_test_free(&g->t);
    for (int i = 0; i < OP_TEST_MAX; i++)
        cs_tensor_free(&g->in[i]);
    cs_tensor_free(&g->attr_value);
}

static void gc_build(gcase *g, setup_fn setup, cs_dtype dt, const int *p)
{
    memset(g, 0, sizeof *g);
    g->dt = dt;
    memcpy(g->p, p, sizeof g->p);
    setup(g);
}

/* ---- running the rules outside fd_check ---- */

typedef struct rule_run {
    cs_tensor gout[OP_TEST_MAX], tin[OP_TEST_MAX];
    cs_tensor gin[OP_TEST_MAX], tout[OP_TEST_MAX], rop[OP_TEST_MAX];
    bool have_rop;
} rule_run;

static bool is_float(const cs_tensor *t)
{
    return t && cs_dtype_is_float(t->dtype);
}

static cs_tensor owned_like(const cs_tensor *t, double fill)
{
    cs_tensor r = {0};
    cs_tensor_set_shape(&r, t->dtype, t->ndim, t->dims);
    if (cs_tensor_alloc(&r, NULL) != CS_OK)
        abort();
    for (int64_t i = 0; i < cs_tensor_numel(&r); i++)
        cs_tensor_set_f64(&r, i, fill);
    return r;
}

/* Runs vjp, jvp and rop once on g (after op_test_run).  Gradients are given
 * for the outputs in gout_mask and tangents for the inputs of in_mask that
 * are also in tin_mask; the others are NULL, or explicit zero tensors when
 * zeros is set.  Random values follow one sequence whatever the masks, so
 * runs with different masks and float types see the same numbers. */
static bool run_rules(gcase *g, unsigned in_mask, unsigned tin_mask, unsigned gout_mask, bool zeros,
                      rule_run *r)
{
    op_test *t = &g->t;
    const cs_op_def *op = t->node.op;
    uint64_t seed = 7;
    cs_tensor *goutp[OP_TEST_MAX] = {0}, *ginp[OP_TEST_MAX] = {0}, *tinp[OP_TEST_MAX] = {0};
    cs_tensor *toutp[OP_TEST_MAX] = {0}, *ropp[OP_TEST_MAX] = {0};
    memset(r, 0, sizeof *r);
    for (int k = 0; k < t->node.n_outputs; k++) {
        if (!is_float(t->out[k]))
            continue;
        r->gout[k] = owned_like(t->out[k], 0.0);
        for (int64_t j = 0; j < cs_tensor_numel(&r->gout[k]); j++) {
            double v = fd_rand_(&seed);
            cs_tensor_set_f64(&r->gout[k], j, (gout_mask >> k) & 1 ? v : 0.0);
        }
        if ((gout_mask >> k) & 1 || zeros)
            goutp[k] = &r->gout[k];
        r->tout[k] = owned_like(t->out[k], NAN); /* the jvp must write every element */
        toutp[k] = &r->tout[k];
    }
    for (int i = 0; i < t->node.n_inputs; i++) {
        if (!((in_mask >> i) & 1) || !is_float(t->in[i]))
            continue;
        r->gin[i] = owned_like(t->in[i], 0.5);
        r->rop[i] = owned_like(t->in[i], 0.25);
        ginp[i] = &r->gin[i];
        ropp[i] = &r->rop[i];
        r->tin[i] = owned_like(t->in[i], 0.0);
        for (int64_t j = 0; j < cs_tensor_numel(&r->tin[i]); j++) {
            double v = fd_rand_(&seed);
            cs_tensor_set_f64(&r->tin[i], j, (tin_mask >> i) & 1 ? v : 0.0);
        }
        if ((tin_mask >> i) & 1 || zeros)
            tinp[i] = &r->tin[i];
    }
    cs_err err = {0};
    cs_op_ad vjp = {.gout = goutp, .gin = ginp};
    cs_op_ad jvp = {.tin = tinp, .tout = toutp};
    cs_op_ad rop = {.gout = goutp, .gin = ropp, .tin = tinp};
    bool good = op->vjp(&t->call, &vjp, &err) == CS_OK && op->jvp(&t->call, &jvp, &err) == CS_OK;
    r->have_rop = op->rop != NULL;
    if (good && op->rop)
        good = op->rop(&t->call, &rop, &err) == CS_OK;
    if (!good)
        diag("rule failed: %s", err.msg);
    return good;
}

static void rule_run_free(rule_run *r)
{
    for (int i = 0; i < OP_TEST_MAX; i++) {
        cs_tensor_free(&r->gout[i]);
        cs_tensor_free(&r->tin[i]);
        cs_tensor_free(&r->gin[i]);
        cs_tensor_free(&r->tout[i]);
        cs_tensor_free(&r->rop[i]);
    }
}

/* Every element of a within atol + rtol * max|b| of b (NaN never matches). */
static bool tensors_agree(const cs_tensor *a, const cs_tensor *b, double rtol, double atol,
                          double *worst)
{
    if (!a->data != !b->data)
        return false;
    if (!a->data)
        return true;
    int64_t n = cs_tensor_numel(b);
    if (cs_tensor_numel(a) != n)
        return false;
    double scale = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(cs_tensor_get_f64(b, i)));
    bool good = true;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(cs_tensor_get_f64(a, i) - cs_tensor_get_f64(b, i));
        if (!(e <= atol + rtol * scale))
            good = false;
        if (!isnan(e))
            *worst = fmax(*worst, e);
    }
    return good;
}

static bool runs_agree(const rule_run *a, const rule_run *b, double rtol, double atol, double *worst)
{
    bool good = true;
    *worst = 0;
    for (int i = 0; i < OP_TEST_MAX; i++) {
        good &= tensors_agree(&a->gin[i], &b->gin[i], rtol, atol, worst);
        good &= tensors_agree(&a->tout[i], &b->tout[i], rtol, atol, worst);
        if (a->have_rop)
            good &= tensors_agree(&a->rop[i], &b->rop[i], rtol, atol, worst);
    }
    return good;
}

static unsigned lowest_bit(unsigned m)
{
    return m & (~m + 1);
}

/* NULL gradients and tangents act as zeros (two patterns: only the first
 * differentiable input / first output given, and no tangent at all). */
static void check_nulls(const char *label, gcase *g, unsigned mask)
{
    static const char *const what[2] = {"first tangent and gradient only", "no tangents"};
    for (int pattern = 0; pattern < 2; pattern++) {
        unsigned tin_mask = pattern == 0 ? lowest_bit(mask) : 0;
        rule_run with_null, with_zero;
        bool ran = run_rules(g, mask, tin_mask, 1u, false, &with_null);
        ran &= run_rules(g, mask, tin_mask, 1u, true, &with_zero);
        double worst = 0;
        ok(ran && runs_agree(&with_null, &with_zero, 0, 0, &worst),
           "%s: NULL gradients / tangents act as zeros (%s)", label, what[pattern]);
        rule_run_free(&with_null);
        rule_run_free(&with_zero);
    }
}

/* The case in float32 agrees with the case in float64. */
static void check_f32(const char *label, setup_fn setup, const int *p, unsigned mask)
{
    gcase g64, g32;
    gc_build(&g64, setup, CS_DT_DOUBLE, p);
    gc_build(&g32, setup, CS_DT_FLOAT, p);
    cs_err err = {0};
    bool ran = op_test_run(&g64.t, &err) == CS_OK && op_test_run(&g32.t, &err) == CS_OK;
    bool float_out = ran && g32.t.out[0]->dtype == CS_DT_FLOAT;
    rule_run r64, r32;
    ran = ran && run_rules(&g64, mask, ~0u, ~0u, false, &r64);
    ran = ran && run_rules(&g32, mask, ~0u, ~0u, false, &r32);
    double worst = 0;
    /* Compared before ok() so the message shows this comparison's worst. */
    bool agree = ran && runs_agree(&r32, &r64, 1e-5, 1e-7, &worst);
    ok(agree, "%s: float32 rules agree with float64 (max diff %.2g%s)", label, worst,
       float_out ? "" : ", non-float32 output");
    if (ran) {
        rule_run_free(&r64);
        rule_run_free(&r32);
    }
    gc_free(&g64);
    gc_free(&g32);
}

/* All three checks of one case. */
static void check_case(const char *label, setup_fn setup, int p0, int p1, int p2, unsigned mask)
{
    int p[3] = {p0, p1, p2};
    gcase g;
    gc_build(&g, setup, CS_DT_DOUBLE, p);
    fd_opts o = fd_default();
    fd_check_op(label, &g.t, mask, &o);
    /* fd_check_op prepared the call (op_test_run) and left the outputs at
     * the unperturbed inputs; running again would allocate outputs anew. */
    cs_err err = {0};
    if (g.t.call.node && op_test_forward(&g.t, &err) == CS_OK)
        check_nulls(label, &g, mask);
    gc_free(&g);
    check_f32(label, setup, p, mask);
}

/* ---- Gemm ---- */

enum { GM = 3, GK = 4, GN = 5 };

/* p[0] = transA, p[1] = transB, p[2] = C shape (0 omitted, 1 scalar, 2 [N],
 * 3 [1, N], 4 [M, 1], 5 [M, N], 6 [1]). */
static void setup_gemm(gcase *g)
{
    gc_begin(g, "Gemm", 13);
    op_test_attr_float(&g->t, "alpha", 0.7f);
    op_test_attr_float(&g->t, "beta", -1.3f);
    op_test_attr_int(&g->t, "transA", g->p[0]);
    op_test_attr_int(&g->t, "transB", g->p[1]);
    int64_t ad[2] = {g->p[0] ? GK : GM, g->p[0] ? GM : GK};
    int64_t bd[2] = {g->p[1] ? GN : GK, g->p[1] ? GK : GN};
    gc_float(g, 2, ad);
    gc_float(g, 2, bd);
    static const int64_t c_dims[7][2] = {{0, 0}, {0, 0}, {GN, 0}, {1, GN}, {GM, 1}, {GM, GN}, {1, 0}};
    static const int c_rank[7] = {0, 0, 1, 2, 2, 2, 1};
    if (g->p[2])
        gc_float(g, c_rank[g->p[2]], c_dims[g->p[2]]);
    op_test_outputs(&g->t, 1);
}

/* Defaults (alpha = beta = 1, no transposes) and a one-column output. */
static void setup_gemm_defaults(gcase *g)
{
    gc_begin(g, "Gemm", 11);
    gc_float(g, 2, (int64_t[]){4, 3});
    gc_float(g, 2, (int64_t[]){3, 1});
    gc_float(g, 1, (int64_t[]){1});
    op_test_outputs(&g->t, 1);
}

static void test_gemm(void)
{
    static const char *const c_names[7] = {"omitted", "scalar", "[N]", "[1, N]", "[M, 1]", "[M, N]",
                                           "[1]"};
    char label[128];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            snprintf(label, sizeof label, "Gemm transA=%d transB=%d C [M, N]", ta, tb);
            check_case(label, setup_gemm, ta, tb, 5, FD_INPUTS(0, 1, 2));
        }
    for (int cs = 0; cs < 7; cs++) {
        if (cs == 5)
            continue;
        /* Vary the transposes with the C shape so each shape meets another layout. */
        int ta = cs & 1, tb = (cs >> 1) & 1;
        snprintf(label, sizeof label, "Gemm transA=%d transB=%d C %s", ta, tb, c_names[cs]);
        check_case(label, setup_gemm, ta, tb, cs, cs ? FD_INPUTS(0, 1, 2) : FD_INPUTS(0, 1));
    }
    check_case("Gemm default alpha/beta, N = 1", setup_gemm_defaults, 0, 0, 0, FD_INPUTS(0, 1, 2));
}

/* ---- MatMul ---- */

/* Operand shapes by case number p[0]. */
typedef struct mm_case {
    const char *name;
    int ra, rb;
    int64_t a[4], b[4];
} mm_case;

static const mm_case mm_cases[] = {
    {"1-D x 2-D", 1, 2, {4}, {4, 3}},
    {"2-D x 1-D", 2, 1, {3, 4}, {4}},
    {"1-D x 1-D", 1, 1, {4}, {4}},
    {"2-D x 2-D", 2, 2, {3, 4}, {4, 5}},
    {"3-D x 2-D (shared weight, one GEMM)", 3, 2, {2, 3, 4}, {4, 5}},
    {"3-D x 1-D", 3, 1, {2, 3, 4}, {4}},
    {"broadcast 4-D x 3-D", 4, 3, {2, 1, 3, 4}, {3, 4, 5}},
    {"2-D x 3-D (A broadcast)", 2, 3, {3, 4}, {2, 4, 5}},
    {"1-D x 3-D", 1, 3, {4}, {2, 4, 5}},
    {"3-D x 3-D, both broadcast", 3, 3, {1, 3, 4}, {2, 4, 2}},
};

static void setup_matmul(gcase *g)
{
    const mm_case *m = &mm_cases[g->p[0]];
    gc_begin(g, "MatMul", 13);
    gc_float(g, m->ra, m->a);
    gc_float(g, m->rb, m->b);
    op_test_outputs(&g->t, 1);
}

static void test_matmul(void)
{
    char label[128];
    for (int i = 0; i < (int)(sizeof mm_cases / sizeof mm_cases[0]); i++) {
        snprintf(label, sizeof label, "MatMul %s", mm_cases[i].name);
        check_case(label, setup_matmul, i, 0, 0, FD_INPUTS(0, 1));
    }
}

/* ---- shape operators ---- */

static void setup_flatten(gcase *g)
{
    gc_begin(g, "Flatten", 13);
    op_test_attr_int(&g->t, "axis", g->p[0]);
    gc_float(g, 3, (int64_t[]){2, 3, 4});
    op_test_outputs(&g->t, 1);
}

static void setup_reshape(gcase *g)
{
    gc_begin(g, "Reshape", 14);
    gc_float(g, 3, (int64_t[]){2, 3, 4});
    if (g->p[0] == 0)
        gc_ints(g, 1, (int64_t[]){2}, (int64_t[]){0, -1}); /* [2, 12] */
    else
        gc_ints(g, 1, (int64_t[]){3}, (int64_t[]){-1, 2, 0}); /* [3, 2, 4] */
    op_test_outputs(&g->t, 1);
}

static void setup_transpose(gcase *g)
{
    static const int64_t perm3[3] = {1, 2, 0}, perm4[4] = {0, 3, 1, 2};
    gc_begin(g, "Transpose", 13);
    if (g->p[0] == 0) {
        op_test_attr_ints(&g->t, "perm", 3, perm3);
        gc_float(g, 3, (int64_t[]){2, 3, 4});
    } else if (g->p[0] == 1) {
        op_test_attr_ints(&g->t, "perm", 4, perm4);
        gc_float(g, 4, (int64_t[]){2, 3, 2, 4});
    } else { /* no perm: reversed axes */
        gc_float(g, 3, (int64_t[]){2, 3, 4});
    }
    op_test_outputs(&g->t, 1);
}

static void setup_concat(gcase *g)
{
    gc_begin(g, "Concat", 13);
    op_test_attr_int(&g->t, "axis", g->p[0]);
    if (g->p[0] == -2 || g->p[0] == 1) {
        gc_float(g, 3, (int64_t[]){2, 1, 3});
        gc_float(g, 3, (int64_t[]){2, 2, 3});
        gc_float(g, 3, (int64_t[]){2, 3, 3});
    } else { /* axis 0 */
        gc_float(g, 2, (int64_t[]){1, 3});
        gc_float(g, 2, (int64_t[]){2, 3});
        gc_float(g, 2, (int64_t[]){3, 3});
    }
    op_test_outputs(&g->t, 1);
}

/* p[0] = axis; indices repeat (3 and -1, 0 and -4 name the same entry). */
static void setup_gather(gcase *g)
{
    gc_begin(g, "Gather", 13);
    op_test_attr_int(&g->t, "axis", g->p[0]);
    gc_float(g, 3, (int64_t[]){4, 4, 3});
    if (g->p[0] == -1) /* axis of size 3 */
        gc_ints(g, 1, (int64_t[]){4}, (int64_t[]){2, -1, 0, -3});
    else
        gc_ints(g, 2, (int64_t[]){2, 3}, (int64_t[]){3, -1, 0, 3, 1, -4});
    op_test_outputs(&g->t, 1);
}

/* p[0] = opset (11: axes attribute, 13: axes input). */
static void setup_unsqueeze(gcase *g)
{
    static const int64_t axes[2] = {0, -1};
    gc_begin(g, "Unsqueeze", g->p[0]);
    gc_float(g, 2, (int64_t[]){2, 3});
    if (g->p[0] >= 13)
        gc_ints(g, 1, (int64_t[]){2}, axes);
    else
        op_test_attr_ints(&g->t, "axes", 2, axes);
    op_test_outputs(&g->t, 1);
}

/* p[0] = opset; p[1] = 1 to give no axes (squeeze every 1). */
static void setup_squeeze(gcase *g)
{
    static const int64_t axes[2] = {0, -1};
    gc_begin(g, "Squeeze", g->p[0]);
    gc_float(g, 4, (int64_t[]){1, 2, 3, 1});
    if (!g->p[1]) {
        if (g->p[0] >= 13)
            gc_ints(g, 1, (int64_t[]){2}, axes);
        else
            op_test_attr_ints(&g->t, "axes", 2, axes);
    }
    op_test_outputs(&g->t, 1);
}

static void setup_identity(gcase *g)
{
    gc_begin(g, "Identity", 16);
    gc_float(g, 2, (int64_t[]){3, 2});
    op_test_outputs(&g->t, 1);
}

/* p[0] = opset: 12 has ratio / training_mode inputs and a bool mask; 7 a
 * mask of the data type (a float output that must get a zero tangent). */
static void setup_dropout(gcase *g)
{
    gc_begin(g, "Dropout", g->p[0]);
    gc_float(g, 2, (int64_t[]){3, 4});
    if (g->p[0] >= 12) {
        gc_float(g, 0, NULL); /* ratio: irrelevant at inference */
        gc_bool(g, 0);
    }
    op_test_outputs(&g->t, 2);
}

static void setup_constant(gcase *g)
{
    gc_begin(g, "Constant", 13);
    int64_t dims[2] = {2, 3};
    cs_tensor_set_shape(&g->attr_value, g->dt, 2, dims);
    if (cs_tensor_alloc(&g->attr_value, NULL) != CS_OK)
        abort();
    for (int64_t i = 0; i < 6; i++)
        cs_tensor_set_f64(&g->attr_value, i, (double)i - 2.5);
    op_test_attr_tensor(&g->t, "value", &g->attr_value);
    op_test_outputs(&g->t, 1);
}

/* Cast of the case's float type to float64 (p[0] = 0) or to its own type. */
static void setup_cast(gcase *g)
{
    gc_begin(g, "Cast", 13);
    op_test_attr_int(&g->t, "to", g->p[0] == 0 ? CS_DT_DOUBLE : g->dt);
    gc_float(g, 2, (int64_t[]){2, 3});
    op_test_outputs(&g->t, 1);
}

static void test_shape_ops(void)
{
    check_case("Flatten axis=-1", setup_flatten, -1, 0, 0, FD_INPUTS(0));
    check_case("Flatten axis=0", setup_flatten, 0, 0, 0, FD_INPUTS(0));
    check_case("Reshape [2, 3, 4] -> [0, -1]", setup_reshape, 0, 0, 0, FD_INPUTS(0));
    check_case("Reshape [2, 3, 4] -> [-1, 2, 0]", setup_reshape, 1, 0, 0, FD_INPUTS(0));
    check_case("Transpose perm [1, 2, 0]", setup_transpose, 0, 0, 0, FD_INPUTS(0));
    check_case("Transpose 4-D perm [0, 3, 1, 2]", setup_transpose, 1, 0, 0, FD_INPUTS(0));
    check_case("Transpose default perm", setup_transpose, 2, 0, 0, FD_INPUTS(0));
    check_case("Concat 3 inputs axis=-2", setup_concat, -2, 0, 0, FD_INPUTS(0, 1, 2));
    check_case("Concat 3 inputs axis=0", setup_concat, 0, 0, 0, FD_INPUTS(0, 1, 2));
    check_case("Gather axis=1, repeated and negative indices", setup_gather, 1, 0, 0, FD_INPUTS(0));
    check_case("Gather axis=0, repeated and negative indices", setup_gather, 0, 0, 0, FD_INPUTS(0));
    check_case("Gather axis=-1, 1-D indices", setup_gather, -1, 0, 0, FD_INPUTS(0));
    check_case("Unsqueeze opset 11 axes [0, -1]", setup_unsqueeze, 11, 0, 0, FD_INPUTS(0));
    check_case("Unsqueeze opset 13 axes input [0, -1]", setup_unsqueeze, 13, 0, 0, FD_INPUTS(0));
    check_case("Squeeze opset 11 axes [0, -1]", setup_squeeze, 11, 0, 0, FD_INPUTS(0));
    check_case("Squeeze opset 13 axes input [0, -1]", setup_squeeze, 13, 0, 0, FD_INPUTS(0));
    check_case("Squeeze opset 13 without axes", setup_squeeze, 13, 1, 0, FD_INPUTS(0));
    check_case("Identity", setup_identity, 0, 0, 0, FD_INPUTS(0));
    check_case("Dropout opset 12 with bool mask output", setup_dropout, 12, 0, 0, FD_INPUTS(0, 1));
    check_case("Dropout opset 7 with float mask output", setup_dropout, 7, 0, 0, FD_INPUTS(0));
    check_case("Constant", setup_constant, 0, 0, 0, 0);
    /* In float64 this is a float64 -> float64 Cast; check_f32 then runs the
     * float32 -> float64 rules against it. */
    check_case("Cast to float64", setup_cast, 0, 0, 0, FD_INPUTS(0));
    check_case("Cast to the same float type", setup_cast, 1, 0, 0, FD_INPUTS(0));
}

/* ---- flags, and the Cast rules that fd_check cannot reach ---- */

static void test_flags(void)
{
    static const char *const linear[] = {"Flatten", "Reshape", "Transpose", "Concat", "Gather",
                                         "Unsqueeze", "Squeeze", "Identity", "Dropout", "Cast",
                                         "Constant"};
    for (size_t i = 0; i < sizeof linear / sizeof linear[0]; i++) {
        const cs_op_def *op = cs_op_find(linear[i], "");
        ok(op && (op->flags & CS_OP_LINEAR) && !op->rop && op->vjp && op->jvp,
           "%s: CS_OP_LINEAR with vjp and jvp, no rop", linear[i]);
    }
    const cs_op_def *shape = cs_op_find("Shape", "");
    ok(shape && (shape->flags & CS_OP_NO_GRAD) && (shape->flags & CS_OP_SHAPE_ONLY) && !shape->vjp &&
           !shape->jvp && !shape->rop,
       "Shape: CS_OP_NO_GRAD, no rules");
    const char *bilinear[2] = {"Gemm", "MatMul"};
    for (int i = 0; i < 2; i++) {
        const cs_op_def *op = cs_op_find(bilinear[i], "");
        ok(op && !(op->flags & (CS_OP_LINEAR | CS_OP_NO_GRAD)) && op->vjp && op->jvp && op->rop,
           "%s: bilinear, has vjp, jvp and rop", bilinear[i]);
    }
}

/* One Cast from a tensor of type from to type to, values x; returns the
 * op_test after forward (caller frees). */
static cs_status cast_run(op_test *t, cs_tensor *x, cs_dtype to)
{
    cs_err err = {0};
    op_test_init(t, "Cast", 13);
    op_test_attr_int(t, "to", to);
    op_test_input(t, x);
    op_test_outputs(t, 1);
    return op_test_run(t, &err);
}

static cs_tensor make(cs_dtype dt, int64_t n, const double *vals)
{
    cs_tensor r = {0};
    cs_tensor_set_shape(&r, dt, 1, &n);
    if (cs_tensor_alloc(&r, NULL) != CS_OK)
        abort();
    for (int64_t i = 0; i < n; i++)
        cs_tensor_set_f64(&r, i, vals[i]);
    return r;
}

static bool values_equal(const cs_tensor *t, const double *want, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!(cs_tensor_get_f64(t, i) == want[i]))
            return false;
    return true;
}

static void test_cast_rules(void)
{
    /* Values exact in float32, so every conversion is exact. */
    const double xv[4] = {1.5, -2.25, 0.125, 3.0}, gv[4] = {0.5, -1.0, 2.0, -0.75};
    const double tv[4] = {-0.5, 4.0, 1.25, -8.0};
    const double gin_want[4] = {1.0, -0.5, 2.5, -0.25}; /* 0.5 + gv */
    cs_dtype pairs[2][2] = {{CS_DT_FLOAT, CS_DT_DOUBLE}, {CS_DT_DOUBLE, CS_DT_FLOAT}};
    cs_err err = {0};
    for (int p = 0; p < 2; p++) {
        cs_dtype from = pairs[p][0], to = pairs[p][1];
        cs_tensor x = make(from, 4, xv);
        op_test t;
        cs_status st = cast_run(&t, &x, to);
        cs_tensor gy = make(to, 4, gv), gx = make(from, 4, (double[]){0.5, 0.5, 0.5, 0.5});
        cs_tensor tx = make(from, 4, tv), ty = make(to, 4, (double[]){NAN, NAN, NAN, NAN});
        cs_tensor *goutp[1] = {&gy}, *ginp[1] = {&gx}, *tinp[1] = {&tx}, *toutp[1] = {&ty};
        cs_op_ad vjp = {.gout = goutp, .gin = ginp}, jvp = {.tin = tinp, .tout = toutp};
        const cs_op_def *op = t.node.op;
        ok(st == CS_OK && op->vjp(&t.call, &vjp, &err) == CS_OK && values_equal(&gx, gin_want, 4),
           "Cast %s -> %s: vjp adds the converted gradient", cs_dtype_name(from), cs_dtype_name(to));
        ok(st == CS_OK && op->jvp(&t.call, &jvp, &err) == CS_OK && values_equal(&ty, tv, 4),
           "Cast %s -> %s: jvp converts the tangent", cs_dtype_name(from), cs_dtype_name(to));
        op_test_free(&t);
        cs_tensor_free(&x);
        cs_tensor_free(&gy);
        cs_tensor_free(&gx);
        cs_tensor_free(&tx);
        cs_tensor_free(&ty);
    }

    /* int64 -> float64: the output does not move (zero tangent). */
    cs_tensor xi = make(CS_DT_INT64, 4, (double[]){1, 2, 3, 4});
    op_test t;
    cs_status st = cast_run(&t, &xi, CS_DT_DOUBLE);
    cs_tensor ty = make(CS_DT_DOUBLE, 4, (double[]){NAN, NAN, NAN, NAN});
    cs_tensor *no_tin[1] = {NULL}, *toutp[1] = {&ty};
    cs_op_ad jvp = {.tin = no_tin, .tout = toutp};
    ok(st == CS_OK && t.node.op->jvp(&t.call, &jvp, &err) == CS_OK &&
           values_equal(&ty, (double[]){0, 0, 0, 0}, 4),
       "Cast int64 -> double: jvp writes a zero tangent");
    op_test_free(&t);
    cs_tensor_free(&xi);
    cs_tensor_free(&ty);

    /* float64 -> int64: no gradient reaches the input, even if one is offered. */
    cs_tensor xd = make(CS_DT_DOUBLE, 4, xv);
    st = cast_run(&t, &xd, CS_DT_INT64);
    cs_tensor gy = make(CS_DT_INT64, 4, (double[]){1, 1, 1, 1});
    cs_tensor gx = make(CS_DT_DOUBLE, 4, (double[]){0.5, 0.5, 0.5, 0.5});
    cs_tensor *goutp[1] = {&gy}, *ginp[1] = {&gx};
    cs_op_ad vjp = {.gout = goutp, .gin = ginp};
    ok(st == CS_OK && t.node.op->vjp(&t.call, &vjp, &err) == CS_OK &&
           values_equal(&gx, (double[]){0.5, 0.5, 0.5, 0.5}, 4),
       "Cast double -> int64: vjp leaves the input gradient alone");
    op_test_free(&t);
    cs_tensor_free(&xd);
    cs_tensor_free(&gy);
    cs_tensor_free(&gx);
}

/* Gather's scatter-add by hand: repeated indices accumulate. */
static void test_gather_scatter(void)
{
    cs_tensor x = make(CS_DT_DOUBLE, 3, (double[]){10, 20, 30});
    cs_tensor ind = {0};
    int64_t n = 4;
    cs_tensor_set_shape(&ind, CS_DT_INT64, 1, &n);
    if (cs_tensor_alloc(&ind, NULL) != CS_OK)
        abort();
    memcpy(ind.data, (int64_t[]){2, -1, 0, 2}, sizeof(int64_t) * 4);
    op_test t;
    cs_err err = {0};
    op_test_init(&t, "Gather", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &ind);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, &err);
    cs_tensor gy = make(CS_DT_DOUBLE, 4, (double[]){1, 2, 4, 8});
    cs_tensor gx = make(CS_DT_DOUBLE, 3, (double[]){0, 0, 0});
    cs_tensor *goutp[1] = {&gy}, *ginp[2] = {&gx, NULL};
    cs_op_ad vjp = {.gout = goutp, .gin = ginp};
    /* index 2 appears three times (2, -1, 2): 1 + 2 + 8; index 0 once: 4. */
    ok(st == CS_OK && t.node.op->vjp(&t.call, &vjp, &err) == CS_OK &&
           values_equal(&gx, (double[]){4, 0, 11}, 3),
       "Gather vjp scatter-adds repeated and negative indices");
    op_test_free(&t);
    cs_tensor_free(&x);
    cs_tensor_free(&ind);
    cs_tensor_free(&gy);
    cs_tensor_free(&gx);
}

int main(void)
{
    test_flags();
    test_gemm();
    test_matmul();
    test_shape_ops();
    test_cast_rules();
    test_gather_scatter();
    return tap_done();
}
