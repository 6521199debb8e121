/* Derivative rules of the movement operators (interp/ops/pad.c,
 * permute.c): every case is checked in float64 by central finite
 * differences (fd_check.h: vjp, jvp, and the zero second-order term of
 * these CS_OP_LINEAR ops); one case per operator in float32 against the
 * same case in float64 (the float32 loops of the rules); and hand-worked
 * checks of the accumulation that edge padding and GatherElements'
 * scatter-add must do. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fd_check.h"

/* One operator case: the op_test and the inputs it borrows. */
typedef struct gcase {
    op_test t;
    cs_tensor in[OP_TEST_MAX];
    uint64_t seed;
} gcase;

static void gc_init(gcase *g, const char *op, int opset)
{
    memset(g, 0, sizeof *g);
    op_test_init(&g->t, op, opset);
    g->seed = 3;
}

static cs_tensor *gc_slot(gcase *g, cs_dtype dt, int ndim, const int64_t *dims)
{
    cs_tensor *x = &g->in[g->t.node.n_inputs];
    cs_tensor_set_shape(x, dt, ndim, dims);
    if (cs_tensor_alloc(x, NULL) != CS_OK)
        abort();
    return x;
}

/* The float type of the inputs gc_rand makes: float64 for the
 * finite-difference checks, float32 for check_f32's twin case. */
static cs_dtype case_dt = CS_DT_DOUBLE;

/* A float input of type case_dt, random in [-1, 1) and rounded to float32,
 * so the twins of check_f32 hold the same values. */
static void gc_rand(gcase *g, int ndim, const int64_t *dims)
{
    cs_tensor *x = gc_slot(g, case_dt, ndim, dims);
    for (int64_t i = 0; i < cs_tensor_numel(x); i++)
        cs_tensor_set_f64(x, i, (float)fd_rand_(&g->seed));
    op_test_input(&g->t, x);
}

/* An int64 input holding vals. */
static void gc_i64(gcase *g, int ndim, const int64_t *dims, const int64_t *vals)
{
    cs_tensor *x = gc_slot(g, CS_DT_INT64, ndim, dims);
    memcpy(x->data, vals, cs_tensor_bytes(x));
    op_test_input(&g->t, x);
}

static void gc_free(gcase *g)
{
    op_test_free(&g->t);
    for (int i = 0; i < OP_TEST_MAX; i++)
        cs_tensor_free(&g->in[i]);
}

static void gc_check(gcase *g, const char *label, unsigned mask)
{
    fd_opts o = fd_default();
    op_test_outputs(&g->t, 1);
    fd_check_op(label, &g->t, mask, &o);
    gc_free(g);
}

/* ---- Pad ---- */

/* Pad of a random [3, 4] at the opset, mode and pads given (pads input
 * from opset 11, attribute before); with_value adds a constant_value input. */
static void pad_case(const char *label, int opset, const char *mode, const int64_t *pads,
                     bool with_value)
{
    gcase g;
    gc_init(&g, "Pad", opset);
    op_test_attr_string(&g.t, "mode", mode);
    gc_rand(&g, 2, (int64_t[]){3, 4});
    if (opset >= 11)
        gc_i64(&g, 1, (int64_t[]){4}, pads);
    else
        op_test_attr_ints(&g.t, "pads", 4, pads);
    if (with_value)
        gc_rand(&g, 0, NULL);
    gc_check(&g, label, with_value ? FD_INPUTS(0, 2) : FD_INPUTS(0));
}

static void test_pad(void)
{
    pad_case("Pad constant, value input, crop and pad", 13, "constant",
             (int64_t[]){1, -1, 0, 2}, true);
    pad_case("Pad constant opset 2 attributes", 2, "constant", (int64_t[]){0, 2, 1, 0}, false);
    pad_case("Pad reflect beyond one reflection", 13, "reflect", (int64_t[]){2, 3, 4, 5}, false);
    pad_case("Pad edge with a crop", 13, "edge", (int64_t[]){-1, 2, 1, 2}, false);
    pad_case("Pad wrap", 19, "wrap", (int64_t[]){4, 1, 2, 5}, false);

    /* opset 18 axes input on a 3-D tensor */
    gcase g;
    gc_init(&g, "Pad", 18);
    op_test_attr_string(&g.t, "mode", "reflect");
    gc_rand(&g, 3, (int64_t[]){2, 3, 3});
    gc_i64(&g, 1, (int64_t[]){4}, (int64_t[]){2, 1, 0, 3});
    op_test_input(&g.t, NULL);
    gc_i64(&g, 1, (int64_t[]){2}, (int64_t[]){-1, 0});
    gc_check(&g, "Pad reflect with axes [-1, 0]", FD_INPUTS(0));
}

/* Edge padding sends every padded gradient to the edge element, and the
 * jvp with only the value's tangent is that tangent at the padded positions. */
static void test_pad_accumulates(void)
{
    cs_err err = {0};
    gcase g;
    gc_init(&g, "Pad", 13);
    op_test_attr_string(&g.t, "mode", "edge");
    gc_rand(&g, 1, (int64_t[]){3});
    gc_i64(&g, 1, (int64_t[]){2}, (int64_t[]){2, 1});
    op_test_outputs(&g.t, 1);
    cs_status st = op_test_run(&g.t, &err);
    double gy_v[6] = {1, 2, 4, 8, 16, 32}, gx_v[3] = {0, 0, 0};
    int64_t six = 6, three = 3;
    cs_tensor gy = {0}, gx = {0};
    cs_tensor_set_shape(&gy, CS_DT_DOUBLE, 1, &six);
    cs_tensor_set_shape(&gx, CS_DT_DOUBLE, 1, &three);
    gy.data = gy_v;
    gx.data = gx_v;
    cs_tensor *goutp[1] = {&gy}, *ginp[2] = {&gx, NULL};
    cs_op_ad vjp = {.gout = goutp, .gin = ginp};
    /* Y = [x0, x0, x0, x1, x2, x2] */
    ok(st == CS_OK && g.t.node.op->vjp(&g.t.call, &vjp, &err) == CS_OK && gx_v[0] == 7 &&
           gx_v[1] == 8 && gx_v[2] == 48,
       "Pad edge vjp accumulates into the edge elements (%s)", err.msg);
    gc_free(&g);

    gc_init(&g, "Pad", 13);
    gc_rand(&g, 1, (int64_t[]){2});
    gc_i64(&g, 1, (int64_t[]){2}, (int64_t[]){1, 1});
    gc_rand(&g, 0, NULL);
    op_test_outputs(&g.t, 1);
    st = op_test_run(&g.t, &err);
    double tv = 2.5, ty_v[4] = {NAN, NAN, NAN, NAN};
    int64_t four = 4;
    cs_tensor tval = {0}, ty = {0};
    cs_tensor_set_shape(&tval, CS_DT_DOUBLE, 0, NULL);
    cs_tensor_set_shape(&ty, CS_DT_DOUBLE, 1, &four);
    tval.data = &tv;
    ty.data = ty_v;
    cs_tensor *tinp[3] = {NULL, NULL, &tval}, *toutp[1] = {&ty};
    cs_op_ad jvp = {.tin = tinp, .tout = toutp};
    ok(st == CS_OK && g.t.node.op->jvp(&g.t.call, &jvp, &err) == CS_OK && ty_v[0] == 2.5 &&
           ty_v[1] == 0 && ty_v[2] == 0 && ty_v[3] == 2.5,
       "Pad constant jvp with only the value's tangent (%s)", err.msg);
    gc_free(&g);
}

/* ---- GatherElements, DepthToSpace, SpaceToDepth ---- */

static void test_permute(void)
{
    gcase g;
    /* indices repeat along the axis (2 and -1 name one entry) */
    gc_init(&g, "GatherElements", 13);
    op_test_attr_int(&g.t, "axis", 1);
    gc_rand(&g, 3, (int64_t[]){2, 3, 2});
    gc_i64(&g, 3, (int64_t[]){2, 4, 2}, (int64_t[]){2, -1, 0, 0, -3, 1, 2, 2, 1, 1, -1, 0, 0, 2, -2, -2});
    gc_check(&g, "GatherElements axis=1, repeated and negative indices", FD_INPUTS(0));
    gc_init(&g, "GatherElements", 13);
    op_test_attr_int(&g.t, "axis", -1);
    gc_rand(&g, 2, (int64_t[]){3, 4});
    gc_i64(&g, 2, (int64_t[]){2, 3}, (int64_t[]){3, 0, 3, -4, 1, 2});
    gc_check(&g, "GatherElements axis=-1, fewer rows than data", FD_INPUTS(0));

    static const char *const modes[2] = {"DCR", "CRD"};
    for (int m = 0; m < 2; m++) {
        char label[64];
        snprintf(label, sizeof label, "DepthToSpace %s blocksize 2", modes[m]);
        gc_init(&g, "DepthToSpace", 13);
        op_test_attr_int(&g.t, "blocksize", 2);
        op_test_attr_string(&g.t, "mode", modes[m]);
        gc_rand(&g, 4, (int64_t[]){2, 8, 2, 3});
        gc_check(&g, label, FD_INPUTS(0));
    }
    gc_init(&g, "SpaceToDepth", 13);
    op_test_attr_int(&g.t, "blocksize", 2);
    gc_rand(&g, 4, (int64_t[]){2, 3, 4, 6});
    gc_check(&g, "SpaceToDepth blocksize 2", FD_INPUTS(0));
}

/* GatherElements' scatter-add by hand: repeated indices accumulate. */
static void test_gather_elements_scatter(void)
{
    cs_err err = {0};
    gcase g;
    gc_init(&g, "GatherElements", 13);
    gc_rand(&g, 1, (int64_t[]){3});
    gc_i64(&g, 1, (int64_t[]){4}, (int64_t[]){2, -1, 0, 2});
    op_test_outputs(&g.t, 1);
    cs_status st = op_test_run(&g.t, &err);
    double gy_v[4] = {1, 2, 4, 8}, gx_v[3] = {0.5, 0.5, 0.5};
    int64_t four = 4, three = 3;
    cs_tensor gy = {0}, gx = {0};
    cs_tensor_set_shape(&gy, CS_DT_DOUBLE, 1, &four);
    cs_tensor_set_shape(&gx, CS_DT_DOUBLE, 1, &three);
    gy.data = gy_v;
    gx.data = gx_v;
    cs_tensor *goutp[1] = {&gy}, *ginp[2] = {&gx, NULL};
    cs_op_ad vjp = {.gout = goutp, .gin = ginp};
    ok(st == CS_OK && g.t.node.op->vjp(&g.t.call, &vjp, &err) == CS_OK && gx_v[0] == 4.5 &&
           gx_v[1] == 0.5 && gx_v[2] == 11.5,
       "GatherElements vjp adds repeated and negative indices (%s)", err.msg);
    gc_free(&g);
}

/* ---- float32 rules agree with float64 ones ---- */

/* A tensor shaped like t, of t's type, random rounded values from *seed
 * (or zeros when seed is NULL); owned. */
static cs_tensor like(const cs_tensor *t, uint64_t *seed)
{
    cs_tensor r = {0};
    cs_tensor_set_shape(&r, t->dtype, t->ndim, t->dims);
    if (cs_tensor_alloc(&r, NULL) != CS_OK)
        abort();
    for (int64_t i = 0; i < cs_tensor_numel(&r); i++)
        cs_tensor_set_f64(&r, i, seed ? (float)fd_rand_(seed) : 0.0);
    return r;
}

/* vjp into gin[] and jvp into *tout on case g (after op_test_run), with
 * gradient and tangents drawn from one seed. */
static bool run_rules(gcase *g, unsigned mask, cs_tensor *gin, cs_tensor *tout)
{
    uint64_t seed = 5;
    cs_tensor gout = like(g->t.out[0], &seed), tin[OP_TEST_MAX] = {{0}};
    cs_tensor *goutp[1] = {&gout}, *toutp[1] = {tout};
    cs_tensor *ginp[OP_TEST_MAX] = {0}, *tinp[OP_TEST_MAX] = {0};
    *tout = like(g->t.out[0], NULL);
    for (int i = 0; i < g->t.node.n_inputs; i++)
        if ((mask >> i) & 1) {
            gin[i] = like(g->t.in[i], NULL);
            tin[i] = like(g->t.in[i], &seed);
            ginp[i] = &gin[i];
            tinp[i] = &tin[i];
        }
    cs_err err = {0};
    cs_op_ad vjp = {.gout = goutp, .gin = ginp}, jvp = {.tin = tinp, .tout = toutp};
    const cs_op_def *op = g->t.node.op;
    bool good = op->vjp(&g->t.call, &vjp, &err) == CS_OK && op->jvp(&g->t.call, &jvp, &err) == CS_OK;
    cs_tensor_free(&gout);
    for (int i = 0; i < OP_TEST_MAX; i++)
        cs_tensor_free(&tin[i]);
    return good;
}

/* |a - b| <= 1e-6 (1 + |b|) element by element (these rules only move and
 * add values, so float32 is off by a few rounding steps at most). */
static bool agree(const cs_tensor *a, const cs_tensor *b)
{
    for (int64_t i = 0; i < cs_tensor_numel(b); i++) {
        double x = cs_tensor_get_f64(a, i), y = cs_tensor_get_f64(b, i);
        if (!(fabs(x - y) <= 1e-6 * (1 + fabs(y))))
            return false;
    }
    return true;
}

static void check_f32(const char *label, void (*setup)(gcase *), unsigned mask)
{
    gcase g64, g32;
    case_dt = CS_DT_DOUBLE;
    setup(&g64);
    case_dt = CS_DT_FLOAT;
    setup(&g32);
    case_dt = CS_DT_DOUBLE;
    op_test_outputs(&g64.t, 1);
    op_test_outputs(&g32.t, 1);
    cs_err err = {0};
    cs_tensor gin64[OP_TEST_MAX] = {{0}}, gin32[OP_TEST_MAX] = {{0}}, tout64 = {0}, tout32 = {0};
    bool good = op_test_run(&g64.t, &err) == CS_OK && op_test_run(&g32.t, &err) == CS_OK &&
                g32.t.out[0]->dtype == CS_DT_FLOAT && run_rules(&g64, mask, gin64, &tout64) &&
                run_rules(&g32, mask, gin32, &tout32) && agree(&tout32, &tout64);
    for (int i = 0; good && i < OP_TEST_MAX; i++)
        good = !((mask >> i) & 1) || agree(&gin32[i], &gin64[i]);
    ok(good, "%s: float32 vjp and jvp agree with float64 (%s)", label, err.msg);
    for (int i = 0; i < OP_TEST_MAX; i++) {
        cs_tensor_free(&gin64[i]);
        cs_tensor_free(&gin32[i]);
    }
    cs_tensor_free(&tout64);
    cs_tensor_free(&tout32);
    gc_free(&g64);
    gc_free(&g32);
}

static void setup_pad_value(gcase *g)
{
    gc_init(g, "Pad", 13);
    gc_rand(g, 2, (int64_t[]){3, 4});
    gc_i64(g, 1, (int64_t[]){4}, (int64_t[]){1, -1, 0, 2});
    gc_rand(g, 0, NULL);
}

static void setup_pad_reflect(gcase *g)
{
    gc_init(g, "Pad", 13);
    op_test_attr_string(&g->t, "mode", "reflect");
    gc_rand(g, 2, (int64_t[]){3, 4});
    gc_i64(g, 1, (int64_t[]){4}, (int64_t[]){2, 3, 4, 5});
}

static void setup_gather_elements(gcase *g)
{
    gc_init(g, "GatherElements", 13);
    gc_rand(g, 2, (int64_t[]){3, 2});
    gc_i64(g, 2, (int64_t[]){2, 2}, (int64_t[]){2, -1, 0, 2});
}

static void setup_d2s_crd(gcase *g)
{
    gc_init(g, "DepthToSpace", 13);
    op_test_attr_int(&g->t, "blocksize", 2);
    op_test_attr_string(&g->t, "mode", "CRD");
    gc_rand(g, 4, (int64_t[]){1, 8, 2, 3});
}

static void setup_s2d(gcase *g)
{
    gc_init(g, "SpaceToDepth", 13);
    op_test_attr_int(&g->t, "blocksize", 2);
    gc_rand(g, 4, (int64_t[]){1, 3, 4, 2});
}

static void test_f32(void)
{
    check_f32("Pad constant with value input", setup_pad_value, FD_INPUTS(0, 2));
    check_f32("Pad reflect", setup_pad_reflect, FD_INPUTS(0));
    check_f32("GatherElements", setup_gather_elements, FD_INPUTS(0));
    check_f32("DepthToSpace CRD", setup_d2s_crd, FD_INPUTS(0));
    check_f32("SpaceToDepth", setup_s2d, FD_INPUTS(0));
}

int main(void)
{
    test_f32();
    test_pad();
    test_pad_accumulates();
    test_permute();
    test_gather_elements_scatter();
    return tap_done();
}
