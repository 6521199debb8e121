/* Forward cases of the movement and generator operators (interp/ops/pad.c,
 * permute.c, generate.c), one op at a time through op_test.h, against
 * hand-worked expected values. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../tap.h"
#include "op_test.h"

/* ---- helpers ---- */

/* A tensor borrowing vals (kept alive by the caller). */
static cs_tensor tens(cs_dtype dt, int ndim, const int64_t *dims, const void *vals)
{
    cs_tensor t;
    memset(&t, 0, sizeof t);
    cs_tensor_set_shape(&t, dt, ndim, dims);
    t.data = (void *)vals;
    return t;
}

/* t has shape dims and every element (any numeric dtype) equals want. */
static int result_is(const cs_tensor *t, int ndim, const int64_t *dims, const double *want)
{
    if (t->ndim != ndim)
        return 0;
    for (int i = 0; i < ndim; i++)
        if (t->dims[i] != dims[i])
            return 0;
    for (int64_t i = 0; i < cs_tensor_numel(t); i++)
        if (!(cs_tensor_get_f64(t, i) == want[i]))
            return 0;
    return 1;
}

/* ---- Pad ---- */

/* Pad of a 1-D float tensor at opset 19 in the given mode; checks the
 * result against want (n_want elements). */
static void pad_1d(const char *mode, const double *x, int64_t n, int64_t b, int64_t e,
                   const double *want, int64_t n_want)
{
    int64_t pads[2] = {b, e}, two = 2;
    cs_tensor xt = tens(CS_DT_DOUBLE, 1, &n, x), pt = tens(CS_DT_INT64, 1, &two, pads);
    op_test t;
    cs_err err = {0};
    op_test_init(&t, "Pad", 19);
    op_test_attr_string(&t, "mode", mode);
    op_test_input(&t, &xt);
    op_test_input(&t, &pt);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, &err);
    ok(st == CS_OK && result_is(t.out[0], 1, &n_want, want), "Pad %s 1-D pads [%lld, %lld] (%s)",
       mode, (long long)b, (long long)e, err.msg);
    op_test_free(&t);
}

static void test_pad(void)
{
    cs_err err = {0};
    op_test t;
    /* numpy.pad semantics, periodic beyond one reflection */
    pad_1d("reflect", (double[]){1, 2, 3}, 3, 2, 4, (double[]){3, 2, 1, 2, 3, 2, 1, 2, 3}, 9);
    pad_1d("edge", (double[]){1, 2, 3, 4}, 4, -1, 2, (double[]){2, 3, 4, 4, 4}, 5);
    pad_1d("wrap", (double[]){1, 2, 3}, 3, 4, 1, (double[]){3, 1, 2, 3, 1, 2, 3, 1}, 8);
    pad_1d("reflect", (double[]){1, 2, 3, 4, 5}, 5, -2, 2, (double[]){3, 4, 5, 4, 3}, 5);
    pad_1d("constant", (double[]){1, 2, 3}, 3, 1, -2, (double[]){0, 1}, 2);

    /* constant 2-D with a value input, int64 data */
    int64_t x_dims[2] = {2, 2}, four = 4;
    int64_t xi[4] = {1, 2, 3, 4}, pads[4] = {1, 0, 0, 1}, value = 9;
    cs_tensor x = tens(CS_DT_INT64, 2, x_dims, xi), p = tens(CS_DT_INT64, 1, &four, pads);
    cs_tensor v = tens(CS_DT_INT64, 0, NULL, &value);
    op_test_init(&t, "Pad", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &p);
    op_test_input(&t, &v);
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, &err);
    ok(st == CS_OK && result_is(t.out[0], 2, (int64_t[]){3, 3}, (double[]){9, 9, 9, 1, 2, 9, 3, 4, 9}),
       "Pad constant int64 2-D, value input (%s)", err.msg);
    op_test_free(&t);

    /* opset 2: pads and value attributes */
    float xf[4] = {1, 2, 3, 4};
    cs_tensor x32 = tens(CS_DT_FLOAT, 2, x_dims, xf);
    op_test_init(&t, "Pad", 2);
    op_test_attr_ints(&t, "pads", 4, (int64_t[]){0, 1, 0, 0});
    op_test_attr_float(&t, "value", -1.5f);
    op_test_input(&t, &x32);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_OK && result_is(t.out[0], 2, (int64_t[]){2, 3}, (double[]){-1.5, 1, 2, -1.5, 3, 4}),
       "Pad opset 2 attributes pads and value (%s)", err.msg);
    op_test_free(&t);

    /* opset 18 axes input: pads cover the last axis only */
    int64_t two = 2, axis = -1, pads_axis[2] = {0, 2};
    cs_tensor pa = tens(CS_DT_INT64, 1, &two, pads_axis), ax = tens(CS_DT_INT64, 1, (int64_t[]){1}, &axis);
    op_test_init(&t, "Pad", 18);
    op_test_attr_string(&t, "mode", "edge");
    op_test_input(&t, &x32);
    op_test_input(&t, &pa);
    op_test_input(&t, NULL);
    op_test_input(&t, &ax);
    op_test_outputs(&t, 1);
    st = op_test_run(&t, &err);
    ok(st == CS_OK &&
           result_is(t.out[0], 2, (int64_t[]){2, 4}, (double[]){1, 2, 2, 2, 3, 4, 4, 4}),
       "Pad edge with axes [-1] (%s)", err.msg);
    op_test_free(&t);

    /* pads not known at prepare time: the output shape cannot be inferred */
    op_test_init(&t, "Pad", 13);
    op_test_input(&t, &x32);
    op_test_input_unknown(&t, &p);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "Pad: pads unknown at prepare time is refused");
    op_test_free(&t);

    /* wrong pads count, over-cropping, and wrap before opset 19 */
    op_test_init(&t, "Pad", 13);
    op_test_input(&t, &x32);
    op_test_input(&t, &pa);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Pad: 2 pads for rank 2 is an error");
    op_test_free(&t);
    int64_t crop[4] = {0, -2, 0, -1};
    cs_tensor pc = tens(CS_DT_INT64, 1, &four, crop);
    op_test_init(&t, "Pad", 13);
    op_test_input(&t, &x32);
    op_test_input(&t, &pc);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Pad: cropping more than the axis holds is an error");
    op_test_free(&t);
    op_test_init(&t, "Pad", 18);
    op_test_attr_string(&t, "mode", "wrap");
    op_test_input(&t, &x32);
    op_test_input(&t, &p);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "Pad: wrap before opset 19 is refused");
    op_test_free(&t);
}

/* ---- GatherElements, DepthToSpace, SpaceToDepth ---- */

/* Sets t up for op on input x (and indices ind when given), one output;
 * attributes follow, then op_test_run. */
static void setup_one(op_test *t, const char *op, int opset, const cs_tensor *x, const cs_tensor *ind)
{
    op_test_init(t, op, opset);
    op_test_input(t, x);
    if (ind)
        op_test_input(t, ind);
    op_test_outputs(t, 1);
}

static void test_gather_elements(void)
{
    cs_err err = {0};
    op_test t;
    int64_t d22[2] = {2, 2}, d33[2] = {3, 3}, d23[2] = {2, 3};
    double x2[4] = {1, 2, 3, 4}, x3[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    int64_t i2[4] = {0, 0, 1, 0}, i3[6] = {-1, 0, 2, 1, -3, 0}, bad[4] = {0, 2, 1, 0};
    cs_tensor x = tens(CS_DT_DOUBLE, 2, d22, x2), ind = tens(CS_DT_INT64, 2, d22, i2);
    setup_one(&t, "GatherElements", 13, &x, &ind);
    op_test_attr_int(&t, "axis", 1);
    cs_status st = op_test_run(&t, &err);
    ok(st == CS_OK && result_is(t.out[0], 2, d22, (double[]){1, 1, 4, 3}),
       "GatherElements axis=1 (%s)", err.msg);
    op_test_free(&t);

    cs_tensor xb = tens(CS_DT_DOUBLE, 2, d33, x3), indb = tens(CS_DT_INT64, 2, d23, i3);
    setup_one(&t, "GatherElements", 13, &xb, &indb);
    st = op_test_run(&t, &err);
    ok(st == CS_OK && result_is(t.out[0], 2, d23, (double[]){7, 2, 9, 4, 2, 3}),
       "GatherElements axis=0, negative indices, fewer rows than data (%s)", err.msg);
    op_test_free(&t);

    cs_tensor indc = tens(CS_DT_INT64, 2, d22, bad);
    setup_one(&t, "GatherElements", 13, &x, &indc);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "GatherElements: index 2 on an axis of 2 is an error");
    op_test_free(&t);
}

static void test_depth_space(void)
{
    cs_err err = {0};
    op_test t;
    double v[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    int64_t depth[4] = {1, 8, 1, 1}, space[4] = {1, 2, 2, 2};
    cs_tensor xd = tens(CS_DT_DOUBLE, 4, depth, v), xs = tens(CS_DT_DOUBLE, 4, space, v);
    static const char *const modes[2] = {"DCR", "CRD"};
    /* y[c, i, j] = x[(i b + j) C' + c] (DCR) or x[c b² + i b + j] (CRD) */
    static const double want[2][8] = {{0, 2, 4, 6, 1, 3, 5, 7}, {0, 1, 2, 3, 4, 5, 6, 7}};
    for (int m = 0; m < 2; m++) {
        setup_one(&t, "DepthToSpace", 13, &xd, NULL);
        op_test_attr_int(&t, "blocksize", 2);
        op_test_attr_string(&t, "mode", modes[m]);
        cs_status st = op_test_run(&t, &err);
        ok(st == CS_OK && result_is(t.out[0], 4, space, want[m]), "DepthToSpace %s (%s)", modes[m],
           err.msg);
        op_test_free(&t);
    }
    setup_one(&t, "SpaceToDepth", 13, &xs, NULL);
    op_test_attr_int(&t, "blocksize", 2);
    cs_status st = op_test_run(&t, &err);
    ok(st == CS_OK && result_is(t.out[0], 4, depth, (double[]){0, 4, 1, 5, 2, 6, 3, 7}),
       "SpaceToDepth: channel (i b + j) C + c (%s)", err.msg);
    op_test_free(&t);

    setup_one(&t, "DepthToSpace", 13, &xs, NULL);
    op_test_attr_int(&t, "blocksize", 2);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "DepthToSpace: 2 channels for blocksize 2 is an error");
    op_test_free(&t);
    setup_one(&t, "SpaceToDepth", 13, &xd, NULL);
    op_test_attr_int(&t, "blocksize", 2);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "SpaceToDepth: H = 1 for blocksize 2 is an error");
    op_test_free(&t);
}

int main(void)
{
    test_pad();
    test_gather_elements();
    test_depth_space();
    return tap_done();
}
