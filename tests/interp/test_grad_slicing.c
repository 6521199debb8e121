/* Derivative rules of the slicing and tiling operators (interp/ops/slicing.c).
 *
 * Each case runs fd_check (central differences in float64: vjp, jvp and the
 * zero second-order term of these CS_OP_LINEAR ops) with respect to the
 * data input; the integer inputs (starts, split, shape, repeats) carry no
 * gradient.  Each case also runs in float32, whose vjp and jvp must equal
 * the float64 rules' on the same values (the float loops of the kernels),
 * with the vjp adding into its output and absent gradients / tangents
 * (NULL) contributing nothing. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fd_check.h"

#define MAXI 5

typedef struct ints_spec {
    int n; /* -1: input absent */
    int64_t v[4];
} ints_spec;

typedef struct gcase {
    const char *label;
    const char *op;
    int opset;
    int ndim;
    int64_t dims[4];
    int n_ints;        /* integer inputs after the data */
    ints_spec ints[MAXI - 1];
    const char *attr;  /* one int attribute (axis / num_outputs), or NULL */
    int64_t attr_val;
    const char *attr_list; /* one ints attribute (opset-1 Slice, opset-11 Split), or NULL */
    int n_list;
    int64_t list[4];
    const char *attr_list2;
    int64_t list2[4];
    int n_out;
} gcase;

#define I(N, ...) {.n = N, .v = {__VA_ARGS__}}
#define NONE {.n = -1}

static const gcase cases[] = {
    {"Slice [3, 4, 5] two axes, step -2 on the last", "Slice", 13, 3, {3, 4, 5}, 4,
     {I(2, 1, -1), I(2, INT64_MAX, -6), I(2, 1, 2), I(2, 1, -2)}, NULL, 0, NULL, 0, {0}, NULL, {0}, 1},
    {"Slice [4, 6] rows 1..3, default axes and steps", "Slice", 13, 2, {4, 6}, 2,
     {I(1, 1), I(1, 3)}, NULL, 0, NULL, 0, {0}, NULL, {0}, 1},
    {"Slice opset 1 attributes", "Slice", 1, 2, {4, 6}, 0, {{0}}, NULL, 0, "starts", 1, {2}, "ends", {100}, 1},
    {"Split [2, 6] into 1 + 3 + 2 on axis 1", "Split", 13, 2, {2, 6}, 1, {I(3, 1, 3, 2)}, "axis", 1,
     NULL, 0, {0}, NULL, {0}, 3},
    {"Split opset 18 num_outputs=2 of [5, 2]", "Split", 18, 2, {5, 2}, 0, {{0}}, "num_outputs", 2,
     NULL, 0, {0}, NULL, {0}, 2},
    {"Split opset 11 split attribute", "Split", 11, 1, {7}, 0, {{0}}, NULL, 0, "split", 2, {4, 3}, NULL, {0},
     2},
    {"Expand [3, 1] to [2, 3, 4]", "Expand", 13, 2, {3, 1}, 1, {I(3, 2, 1, 4)}, NULL, 0, NULL, 0, {0},
     NULL, {0}, 1},
    {"Expand [1, 4] to [3, 4]", "Expand", 13, 2, {1, 4}, 1, {I(2, 3, 1)}, NULL, 0, NULL, 0, {0}, NULL, {0},
     1},
    {"Tile [2, 3] by [2, 2]", "Tile", 13, 2, {2, 3}, 1, {I(2, 2, 2)}, NULL, 0, NULL, 0, {0}, NULL, {0}, 1},
    {"Tile [2, 1, 3] by [1, 3, 2]", "Tile", 13, 3, {2, 1, 3}, 1, {I(3, 1, 3, 2)}, NULL, 0, NULL, 0, {0},
     NULL, {0}, 1},
};

/* Tensors of one built case (owned), borrowed by t. */
typedef struct built {
    op_test t;
    cs_tensor x, iv[MAXI - 1];
} built;

static void build(built *b, const gcase *g, cs_dtype dt)
{
    memset(b, 0, sizeof *b);
    op_test_init(&b->t, g->op, g->opset);
    if (g->attr)
        op_test_attr_int(&b->t, g->attr, g->attr_val);
    if (g->attr_list)
        op_test_attr_ints(&b->t, g->attr_list, g->n_list, g->list);
    if (g->attr_list2)
        op_test_attr_ints(&b->t, g->attr_list2, g->n_list, g->list2);
    cs_tensor_set_shape(&b->x, dt, g->ndim, g->dims);
    if (cs_tensor_alloc(&b->x, NULL) != CS_OK)
        abort();
    uint64_t seed = 99;
    for (int64_t i = 0; i < cs_tensor_numel(&b->x); i++)
        cs_tensor_set_f64(&b->x, i, fd_rand_(&seed));
    op_test_input(&b->t, &b->x);
    for (int k = 0; k < g->n_ints; k++) {
        if (g->ints[k].n < 0) {
            op_test_input(&b->t, NULL);
            continue;
        }
        int64_t n = g->ints[k].n;
        cs_tensor_set_shape(&b->iv[k], CS_DT_INT64, 1, &n);
        if (cs_tensor_alloc(&b->iv[k], NULL) != CS_OK)
            abort();
        memcpy(b->iv[k].data, g->ints[k].v, (size_t)n * sizeof(int64_t));
        op_test_input(&b->t, &b->iv[k]);
    }
    op_test_outputs(&b->t, g->n_out);
}

static void built_free(built *b)
{
    op_test_free(&b->t);
    cs_tensor_free(&b->x);
    for (int k = 0; k < MAXI - 1; k++)
        cs_tensor_free(&b->iv[k]);
}

static cs_tensor owned(const cs_tensor *like, cs_dtype dt)
{
    cs_tensor r = {0};
    cs_tensor_set_shape(&r, dt, like->ndim, like->dims);
    if (cs_tensor_alloc(&r, NULL) != CS_OK)
        abort();
    return r;
}

/* vjp (gin starting at 1, gradient on every output but the last when
 * there are several, so a NULL gout is met) and jvp of b, results as
 * doubles in gin / tout[k]. */
static int run_rules(built *b, double *gin, double tout[][64], cs_err *err)
{
    op_test *t = &b->t;
    cs_dtype dt = b->x.dtype;
    int n_out = t->node.n_outputs;
    cs_tensor gout[OP_TEST_MAX] = {0}, to[OP_TEST_MAX] = {0};
    cs_tensor *goutp[OP_TEST_MAX] = {0}, *ginp[OP_TEST_MAX] = {0}, *tinp[OP_TEST_MAX] = {0};
    cs_tensor *toutp[OP_TEST_MAX] = {0};
    uint64_t seed = 5;
    for (int k = 0; k < n_out; k++) {
        gout[k] = owned(t->out[k], dt);
        to[k] = owned(t->out[k], dt);
        for (int64_t j = 0; j < cs_tensor_numel(&gout[k]); j++) {
            cs_tensor_set_f64(&gout[k], j, fd_rand_(&seed));
            cs_tensor_set_f64(&to[k], j, NAN);
        }
        goutp[k] = n_out > 1 && k == n_out - 1 ? NULL : &gout[k];
        toutp[k] = &to[k];
    }
    cs_tensor g = owned(&b->x, dt), tn = owned(&b->x, dt);
    for (int64_t j = 0; j < cs_tensor_numel(&g); j++) {
        cs_tensor_set_f64(&g, j, 1.0);
        cs_tensor_set_f64(&tn, j, fd_rand_(&seed));
    }
    ginp[0] = &g;
    tinp[0] = &tn;
    cs_op_ad a = {.gout = goutp, .gin = ginp, .tin = tinp, .tout = toutp};
    cs_status st = t->node.op->vjp(&t->call, &a, err);
    if (st == CS_OK)
        st = t->node.op->jvp(&t->call, &a, err);
    for (int64_t j = 0; j < cs_tensor_numel(&g); j++)
        gin[j] = cs_tensor_get_f64(&g, j);
    for (int k = 0; k < n_out; k++) {
        for (int64_t j = 0; j < cs_tensor_numel(&to[k]) && j < 64; j++)
            tout[k][j] = cs_tensor_get_f64(&to[k], j);
        cs_tensor_free(&gout[k]);
        cs_tensor_free(&to[k]);
    }
    cs_tensor_free(&g);
    cs_tensor_free(&tn);
    return st == CS_OK;
}

/* float32 rules against float64 rules on the same float-rounded values;
 * the float64 run also checks the vjp's "+=" (gin started at 1) and that
 * a NULL tangent gives a zero jvp. */
static void run_float32(const gcase *g)
{
    built b32, b64;
    build(&b32, g, CS_DT_FLOAT);
    build(&b64, g, CS_DT_DOUBLE);
    for (int64_t j = 0; j < cs_tensor_numel(&b64.x); j++) /* the same values both ways */
        cs_tensor_set_f64(&b64.x, j, cs_tensor_get_f64(&b32.x, j));
    cs_err err = {0};
    double gin32[256], gin64[256], tout32[4][64], tout64[4][64];
    int good = op_test_run(&b32.t, &err) == CS_OK && op_test_run(&b64.t, &err) == CS_OK &&
               run_rules(&b32, gin32, tout32, &err) && run_rules(&b64, gin64, tout64, &err);
    int64_t n = cs_tensor_numel(&b64.x);
    double worst = 0;
    for (int64_t j = 0; good && j < n; j++)
        worst = fmax(worst, fabs(gin32[j] - gin64[j]));
    for (int k = 0; good && k < g->n_out; k++)
        for (int64_t j = 0; j < cs_tensor_numel(b64.t.out[k]) && j < 64; j++)
            worst = fmax(worst, isnan(tout32[k][j]) ? INFINITY : fabs(tout32[k][j] - tout64[k][j]));
    ok(good && worst < 1e-5, "%s: float32 vjp and jvp equal the float64 rules (max diff %.2g) %s", g->label,
       worst, err.msg);

    /* A NULL tangent: every output tangent is written, with zeros. */
    cs_tensor to[OP_TEST_MAX] = {0};
    cs_tensor *toutp[OP_TEST_MAX] = {0}, *tinp[OP_TEST_MAX] = {0};
    for (int k = 0; k < g->n_out; k++) {
        to[k] = owned(b64.t.out[k], CS_DT_DOUBLE);
        for (int64_t j = 0; j < cs_tensor_numel(&to[k]); j++)
            ((double *)to[k].data)[j] = NAN;
        toutp[k] = &to[k];
    }
    cs_op_ad a = {.tin = tinp, .tout = toutp};
    good = good && b64.t.node.op->jvp(&b64.t.call, &a, &err) == CS_OK;
    for (int k = 0; k < g->n_out; k++) {
        for (int64_t j = 0; j < cs_tensor_numel(&to[k]); j++)
            good = good && ((double *)to[k].data)[j] == 0.0;
        cs_tensor_free(&to[k]);
    }
    ok(good, "%s: jvp without a tangent writes zeros", g->label);
    built_free(&b32);
    built_free(&b64);
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        built b;
        build(&b, &cases[i], CS_DT_DOUBLE);
        fd_opts o = fd_default();
        fd_check_op(cases[i].label, &b.t, FD_INPUTS(0), &o);
        built_free(&b);
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_float32(&cases[i]);
    static const char *const linear[] = {"Slice", "Split", "Expand", "Tile"};
    int good = 1;
    for (size_t i = 0; i < sizeof linear / sizeof linear[0]; i++) {
        const cs_op_def *d = cs_op_find(linear[i], "");
        good &= d && (d->flags & CS_OP_LINEAR) && !d->rop && d->vjp && d->jvp && !d->no_derivative;
    }
    ok(good, "Slice, Split, Expand, Tile: CS_OP_LINEAR with vjp and jvp, no rop");
    return tap_done();
}
