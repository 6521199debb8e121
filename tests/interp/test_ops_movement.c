/* Forward cases of the movement and generator operators (interp/ops/pad.c,
 * permute.c, generate.c), one op at a time through op_test.h, against
 * hand-worked expected values; and a small graph in which Shape ->
 * ConstantOfShape, Range and Size fold at prepare time. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../tap.h"
#include "../onnx/model_builder.h"
#include "interp/plan.h"
#include "op_test.h"

/* ---- helpers ---- */

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
    cs_tensor xt = op_test_view(CS_DT_DOUBLE, 1, &n, x), pt = op_test_view(CS_DT_INT64, 1, &two, pads);
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
    cs_tensor x = op_test_view(CS_DT_INT64, 2, x_dims, xi), p = op_test_view(CS_DT_INT64, 1, &four, pads);
    cs_tensor v = op_test_view(CS_DT_INT64, 0, NULL, &value);
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
    cs_tensor x32 = op_test_view(CS_DT_FLOAT, 2, x_dims, xf);
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
    cs_tensor pa = op_test_view(CS_DT_INT64, 1, &two, pads_axis), ax = op_test_view(CS_DT_INT64, 1, (int64_t[]){1}, &axis);
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
    cs_tensor pc = op_test_view(CS_DT_INT64, 1, &four, crop);
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
    cs_tensor x = op_test_view(CS_DT_DOUBLE, 2, d22, x2), ind = op_test_view(CS_DT_INT64, 2, d22, i2);
    setup_one(&t, "GatherElements", 13, &x, &ind);
    op_test_attr_int(&t, "axis", 1);
    cs_status st = op_test_run(&t, &err);
    ok(st == CS_OK && result_is(t.out[0], 2, d22, (double[]){1, 1, 4, 3}),
       "GatherElements axis=1 (%s)", err.msg);
    op_test_free(&t);

    cs_tensor xb = op_test_view(CS_DT_DOUBLE, 2, d33, x3), indb = op_test_view(CS_DT_INT64, 2, d23, i3);
    setup_one(&t, "GatherElements", 13, &xb, &indb);
    st = op_test_run(&t, &err);
    ok(st == CS_OK && result_is(t.out[0], 2, d23, (double[]){7, 2, 9, 4, 2, 3}),
       "GatherElements axis=0, negative indices, fewer rows than data (%s)", err.msg);
    op_test_free(&t);

    cs_tensor indc = op_test_view(CS_DT_INT64, 2, d22, bad);
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
    cs_tensor xd = op_test_view(CS_DT_DOUBLE, 4, depth, v), xs = op_test_view(CS_DT_DOUBLE, 4, space, v);
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

/* ---- ConstantOfShape, Range, Size ---- */

static void test_constant_of_shape(void)
{
    cs_err err = {0};
    op_test t;
    int64_t two = 2, zero = 0, shape[2] = {2, 3}, neg[2] = {2, -1}, seven = 7;
    cs_tensor s = op_test_view(CS_DT_INT64, 1, &two, shape), value = op_test_view(CS_DT_INT64, 1, (int64_t[]){1}, &seven);
    setup_one(&t, "ConstantOfShape", 9, &s, NULL);
    op_test_attr_tensor(&t, "value", &value);
    cs_status st = op_test_run(&t, &err);
    ok(st == CS_OK && t.out[0]->dtype == CS_DT_INT64 &&
           result_is(t.out[0], 2, shape, (double[]){7, 7, 7, 7, 7, 7}),
       "ConstantOfShape int64 value 7 (%s)", err.msg);
    op_test_free(&t);

    setup_one(&t, "ConstantOfShape", 9, &s, NULL);
    st = op_test_run(&t, &err);
    ok(st == CS_OK && t.out[0]->dtype == CS_DT_FLOAT &&
           result_is(t.out[0], 2, shape, (double[]){0, 0, 0, 0, 0, 0}),
       "ConstantOfShape default: float zeros (%s)", err.msg);
    op_test_free(&t);

    cs_tensor empty = op_test_view(CS_DT_INT64, 1, &zero, NULL);
    setup_one(&t, "ConstantOfShape", 9, &empty, NULL);
    op_test_attr_tensor(&t, "value", &value);
    st = op_test_run(&t, &err);
    ok(st == CS_OK && result_is(t.out[0], 0, NULL, (double[]){7}), "ConstantOfShape of [] is a scalar (%s)",
       err.msg);
    op_test_free(&t);

    cs_tensor sn = op_test_view(CS_DT_INT64, 1, &two, neg);
    setup_one(&t, "ConstantOfShape", 9, &sn, NULL);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "ConstantOfShape: a negative dimension is an error");
    op_test_free(&t);
    op_test_init(&t, "ConstantOfShape", 9);
    op_test_input_unknown(&t, &s);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED,
       "ConstantOfShape: a shape unknown at prepare time is refused");
    op_test_free(&t);
}

/* Range over three scalars of type dt holding start, limit, delta. */
static cs_status range_run(op_test *t, cs_dtype dt, const double *sld, void *buf, int known, cs_err *err)
{
    size_t es = cs_dtype_size(dt);
    static cs_tensor in[3]; /* borrowed by t until the next call */
    op_test_init(t, "Range", 11);
    for (int i = 0; i < 3; i++) {
        cs_convert((char *)buf + i * es, dt, &sld[i], CS_DT_DOUBLE, 1);
        in[i] = op_test_view(dt, 0, NULL, (char *)buf + i * es);
        op_test_input_known(t, &in[i], known);
    }
    op_test_outputs(t, 1);
    return op_test_run(t, err);
}

static void test_range(void)
{
    cs_err err = {0};
    op_test t;
    int64_t buf[3];
    static const struct {
        cs_dtype dt;
        double sld[3];
        int64_t n;
        double want[5];
    } cases[] = {
        {CS_DT_INT64, {10, 4, -3}, 2, {10, 7}},
        {CS_DT_INT32, {0, 5, 2}, 3, {0, 2, 4}},
        {CS_DT_INT16, {-2, 3, 1}, 5, {-2, -1, 0, 1, 2}},
        {CS_DT_FLOAT, {1, 2, 0.25}, 4, {1, 1.25, 1.5, 1.75}},
        {CS_DT_DOUBLE, {0, 1, 0.5}, 2, {0, 0.5}},
        {CS_DT_INT64, {5, 1, 1}, 0, {0}},
        {CS_DT_DOUBLE, {5, 1, 1}, 0, {0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cs_status st = range_run(&t, cases[k].dt, cases[k].sld, buf, 1, &err);
        ok(st == CS_OK && t.out[0]->dtype == cases[k].dt &&
               result_is(t.out[0], 1, &cases[k].n, cases[k].want),
           "Range %s (%g, %g, %g): %lld elements (%s)", cs_dtype_name(cases[k].dt), cases[k].sld[0],
           cases[k].sld[1], cases[k].sld[2], (long long)cases[k].n, err.msg);
        op_test_free(&t);
    }
    ok(range_run(&t, CS_DT_INT64, (double[]){0, 4, 0}, buf, 1, &err) == CS_ERR_SHAPE,
       "Range: delta 0 is an error");
    op_test_free(&t);
    ok(range_run(&t, CS_DT_FLOAT, (double[]){0, 4, 0}, buf, 1, &err) == CS_ERR_SHAPE,
       "Range: float delta 0 is an error");
    op_test_free(&t);
    ok(range_run(&t, CS_DT_INT64, (double[]){0, 4, 1}, buf, 0, &err) == CS_ERR_UNSUPPORTED,
       "Range: inputs unknown at prepare time are refused");
    op_test_free(&t);
}

static void test_size(void)
{
    cs_err err = {0};
    op_test t;
    int64_t dims[3] = {2, 3, 4};
    cs_tensor x = op_test_view(CS_DT_FLOAT, 3, dims, NULL);
    op_test_init(&t, "Size", 13);
    op_test_input_unknown(&t, &x); /* only the shape is read */
    op_test_outputs(&t, 1);
    cs_status st = op_test_run(&t, &err);
    ok(st == CS_OK && t.out[0]->dtype == CS_DT_INT64 && result_is(t.out[0], 0, NULL, (double[]){24}),
       "Size of [2, 3, 4] is the int64 scalar 24 (%s)", err.msg);
    op_test_free(&t);
}

/* y = x + ConstantOfShape(Shape(x), 1) + Cast(Range(0, Shape(x)[1], 1)) +
 * Cast(Size(x)), x [N, 3]: the generators fold at prepare and the Adds
 * read their data. */
static void test_generators_fold(void)
{
    model_builder b;
    mb_init(&b, 8, 13);
    mb_input(&b, "x", 1, 2, (int64_t[]){-1, 3});
    int64_t zero = 0, one = 1;
    float onef = 1;
    mb_set_raw(&b, mb_add_init(&b, mb_tensor(&b, "zero", 7, 0, NULL)), 8, &zero);
    mb_set_raw(&b, mb_add_init(&b, mb_tensor(&b, "one", 7, 0, NULL)), 8, &one);
    Onnx__TensorProto *value = mb_tensor(&b, "value", 1, 1, (int64_t[]){1});
    mb_set_raw(&b, value, 4, &onef);
    mb_node(&b, "Shape", "shape", (const char *[]){"x", NULL}, (const char *[]){"s", NULL});
    Onnx__NodeProto *cos = mb_node(&b, "ConstantOfShape", "cos", (const char *[]){"s", NULL},
                                   (const char *[]){"ones", NULL});
    mb_attr_tensor(&b, cos, "value", value);
    mb_node(&b, "Gather", "gather", (const char *[]){"s", "one", NULL}, (const char *[]){"cols", NULL});
    mb_node(&b, "Range", "range", (const char *[]){"zero", "cols", "one", NULL},
            (const char *[]){"pos", NULL});
    mb_node(&b, "Size", "size", (const char *[]){"x", NULL}, (const char *[]){"n", NULL});
    Onnx__NodeProto *c1 = mb_node(&b, "Cast", "cast_pos", (const char *[]){"pos", NULL},
                                  (const char *[]){"posf", NULL});
    mb_attr_int(&b, c1, "to", 1);
    Onnx__NodeProto *c2 = mb_node(&b, "Cast", "cast_n", (const char *[]){"n", NULL},
                                  (const char *[]){"nf", NULL});
    mb_attr_int(&b, c2, "to", 1);
    mb_node(&b, "Add", "add1", (const char *[]){"x", "ones", NULL}, (const char *[]){"y1", NULL});
    mb_node(&b, "Add", "add2", (const char *[]){"y1", "posf", NULL}, (const char *[]){"y2", NULL});
    mb_node(&b, "Add", "add3", (const char *[]){"y2", "nf", NULL}, (const char *[]){"y", NULL});
    mb_output(&b, "y");
    cs_err err = {0};
    cs_graph *g = NULL;
    cs_status st = mb_load(&b, NULL, &g, &err);
    mb_free(&b);
    if (!ok(st == CS_OK, "generator graph loads (%s)", err.msg))
        return;
    cs_plan p;
    if (ok(cs_plan_prepare_batch(&p, g, 2, &err) == CS_OK, "generator graph: prepare batch 2 (%s)",
           err.msg)) {
        static const char *const folded[] = {"shape", "cos", "gather", "range", "size", "cast_pos"};
        for (int i = 0; i < 6; i++) {
            int k = 0;
            while (k < g->n_nodes && strcmp(g->nodes[k].name, folded[i]) != 0)
                k++;
            ok(k < g->n_nodes && p.folded[k], "generator graph: %s is folded at prepare", folded[i]);
        }
        float *x = cs_plan_input(&p, 0)->data;
        for (int i = 0; i < 6; i++)
            x[i] = (float)(0.5 * i);
        st = cs_plan_forward(&p, &err);
        const cs_tensor *y = cs_plan_output(&p, 0);
        int good = st == CS_OK && y->ndim == 2 && y->dims[0] == 2 && y->dims[1] == 3;
        for (int i = 0; good && i < 6; i++) /* x + 1 + column + numel */
            good = ((const float *)y->data)[i] == (float)(0.5 * i + 1 + i % 3 + 6);
        ok(good, "generator graph: y = x + 1 + column + 6 (%s)", err.msg);
        cs_plan_free(&p);
    }
    cs_graph_free(g);
}

int main(void)
{
    test_pad();
    test_gather_elements();
    test_depth_space();
    test_constant_of_shape();
    test_range();
    test_size();
    test_generators_fold();
    return tap_done();
}
