/* Forward of the slicing and tiling operators (interp/ops/slicing.c):
 * Slice, Split, Expand, Tile, through op_test.h, against hand-worked
 * expected values; and the refusals (unknown starts, step 0, parts that do
 * not add up, shapes that do not broadcast). */
#include <stdint.h>
#include <string.h>

#include "../onnx/model_builder.h"
#include "../tap.h"
#include "interp/plan.h"
#include "op_test.h"

/* 0, 1, 2, ... as double / int64 data for inputs. */
static double seq_d[64];
static int64_t seq_i[64];

/* A 1-D int64 tensor over vals. */
static cs_tensor ints(int n, const int64_t *vals, int64_t *dim_store)
{
    *dim_store = n;
    return op_test_view(CS_DT_INT64, 1, dim_store, vals);
}

/* Output k has shape (ndim, dims) and the values want (n of them). */
static int out_is(const op_test *t, int k, int ndim, const int64_t *dims, const double *want, int64_t n)
{
    const cs_tensor *y = t->out[k];
    if (y->ndim != ndim || cs_tensor_numel(y) != n)
        return 0;
    for (int d = 0; d < ndim; d++)
        if (y->dims[d] != dims[d])
            return 0;
    for (int64_t i = 0; i < n; i++)
        if (cs_tensor_get_f64(y, i) != want[i])
            return 0;
    return 1;
}

/* ---- Slice ---- */

typedef struct slice_case {
    const char *name;
    int ndim;
    int64_t dims[3];
    int n;                                 /* sliced axes */
    int64_t starts[3], ends[3], axes[3], steps[3];
    int has_axes, has_steps;
    int want_ndim;
    int64_t want_dims[3];
    int64_t n_want;
    double want[16];
} slice_case;

static void test_slice(void)
{
    static const slice_case cases[] = {
        {"rows 0-1, cols 1 to INT64_MAX of [3, 4]", 2, {3, 4}, 2, {0, 1}, {2, INT64_MAX}, {0}, {0}, 0, 0,
         2, {2, 3}, 6, {1, 2, 3, 5, 6, 7}},
        {"step -3 from -1 to INT64_MIN of [10]", 1, {10}, 1, {-1}, {INT64_MIN}, {0}, {-3}, 1, 1,
         1, {4}, 4, {9, 6, 3, 0}},
        {"start 20 past the end: empty", 1, {10}, 1, {20}, {30}, {0}, {1}, 1, 1, 1, {0}, 0, {0}},
        {"axis -1, end -1 of [2, 5]", 2, {2, 5}, 1, {1}, {-1}, {-1}, {0}, 1, 0,
         2, {2, 3}, 6, {1, 2, 3, 6, 7, 8}},
        {"step -1, start 10 clamps to 4, end -10 to -1", 1, {5}, 1, {10}, {-10}, {0}, {-1}, 1, 1,
         1, {5}, 5, {4, 3, 2, 1, 0}},
        {"step 2 on axis 1 of [2, 3, 4], both ends out of range", 3, {2, 3, 4}, 1, {-100}, {100}, {1}, {2}, 1, 1,
         3, {2, 2, 4}, 16, {0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 20, 21, 22, 23}},
        {"step INT64_MAX keeps the first element", 1, {10}, 1, {2}, {INT64_MAX}, {0}, {INT64_MAX}, 1, 1,
         1, {1}, 1, {2}},
        {"step INT64_MIN keeps the start element", 1, {10}, 1, {7}, {INT64_MIN}, {0}, {INT64_MIN}, 1, 1,
         1, {1}, 1, {7}},
        {"step -2 from 3 on the last axis of [2, 4]", 2, {2, 4}, 1, {3}, {INT64_MIN}, {1}, {-2}, 1, 1,
         2, {2, 2}, 4, {3, 1, 7, 5}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const slice_case *s = &cases[i];
        cs_tensor x = op_test_view(CS_DT_DOUBLE, s->ndim, s->dims, seq_d);
        int64_t d1, d2, d3, d4;
        cs_tensor st = ints(s->n, s->starts, &d1), en = ints(s->n, s->ends, &d2);
        cs_tensor ax = ints(s->n, s->axes, &d3), sp = ints(s->n, s->steps, &d4);
        op_test t;
        cs_err err = {0};
        op_test_init(&t, "Slice", 13);
        op_test_input(&t, &x);
        op_test_input(&t, &st);
        op_test_input(&t, &en);
        op_test_input(&t, s->has_axes ? &ax : NULL);
        if (s->has_steps)
            op_test_input(&t, &sp);
        op_test_outputs(&t, 1);
        int good = op_test_run(&t, &err) == CS_OK &&
                   out_is(&t, 0, s->want_ndim, s->want_dims, s->want, s->n_want);
        ok(good, "Slice %s (%s)", s->name, err.msg);
        op_test_free(&t);
    }

    /* The Shape -> Slice step of an export: int64 data, batch dim kept. */
    int64_t shape_vals[4] = {8, 3, 224, 224}, n4 = 4, n1, n1b;
    int64_t zero = 0, one = 1;
    cs_tensor shp = op_test_view(CS_DT_INT64, 1, &n4, shape_vals);
    cs_tensor st = ints(1, &zero, &n1), en = ints(1, &one, &n1b);
    op_test t;
    cs_err err = {0};
    op_test_init(&t, "Slice", 13);
    op_test_input(&t, &shp);
    op_test_input(&t, &st);
    op_test_input(&t, &en);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_OK && t.out[0]->dtype == CS_DT_INT64 && t.out[0]->dims[0] == 1 &&
           ((int64_t *)t.out[0]->data)[0] == 8,
       "Slice of an int64 shape tensor keeps its type (%s)", err.msg);
    op_test_free(&t);

    /* Opset 1: starts, ends, axes as attributes. */
    int64_t dx[2] = {3, 4}, a_starts[1] = {1}, a_ends[1] = {3}, a_axes[1] = {0};
    cs_tensor x = op_test_view(CS_DT_FLOAT, 2, dx, NULL);
    float xf[12];
    for (int i = 0; i < 12; i++)
        xf[i] = (float)i;
    x.data = xf;
    op_test_init(&t, "Slice", 1);
    op_test_attr_ints(&t, "starts", 1, a_starts);
    op_test_attr_ints(&t, "ends", 1, a_ends);
    op_test_attr_ints(&t, "axes", 1, a_axes);
    op_test_input(&t, &x);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_OK &&
           out_is(&t, 0, 2, (int64_t[]){2, 4}, (double[]){4, 5, 6, 7, 8, 9, 10, 11}, 8),
       "Slice opset 1 attributes: rows 1-2 of [3, 4] (%s)", err.msg);
    op_test_free(&t);

    /* Refusals. */
    int64_t two = 2, m1 = -1;
    cs_tensor en2 = ints(1, &two, &n1b), step0 = ints(1, &zero, &n4);
    op_test_init(&t, "Slice", 13);
    op_test_input(&t, &x);
    op_test_input_unknown(&t, &st);
    op_test_input(&t, &en2);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "Slice with starts unknown at prepare is refused (%s)",
       err.msg);
    op_test_free(&t);

    int64_t na;
    cs_tensor ax0 = ints(1, &zero, &na);
    op_test_init(&t, "Slice", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &st);
    op_test_input(&t, &en2);
    op_test_input(&t, &ax0);
    op_test_input(&t, &step0);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Slice with step 0 is refused (%s)", err.msg);
    op_test_free(&t);

    int64_t rep_axes[2] = {0, -2}, rs[2] = {0, 0}, re[2] = {1, 1}, nr1, nr2, nr3;
    cs_tensor rax = ints(2, rep_axes, &nr1), rst = ints(2, rs, &nr2), ren = ints(2, re, &nr3);
    op_test_init(&t, "Slice", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &rst);
    op_test_input(&t, &ren);
    op_test_input(&t, &rax);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Slice of axis 0 twice (0 and -2) is refused (%s)", err.msg);
    op_test_free(&t);

    cs_tensor enm = ints(1, &m1, &nr1);
    int64_t ax5 = 5;
    cs_tensor bad_axis = ints(1, &ax5, &nr2);
    op_test_init(&t, "Slice", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &st);
    op_test_input(&t, &enm);
    op_test_input(&t, &bad_axis);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Slice of axis 5 of a rank-2 input is refused (%s)", err.msg);
    op_test_free(&t);
}

/* ---- Split ---- */

static void test_split(void)
{
    op_test t;
    cs_err err = {0};
    int64_t d23[2] = {2, 3}, parts[2] = {2, 1}, np;
    cs_tensor x = op_test_view(CS_DT_DOUBLE, 2, d23, seq_d), sp = ints(2, parts, &np);
    op_test_init(&t, "Split", 13);
    op_test_attr_int(&t, "axis", 1);
    op_test_input(&t, &x);
    op_test_input(&t, &sp);
    op_test_outputs(&t, 2);
    ok(op_test_run(&t, &err) == CS_OK && out_is(&t, 0, 2, (int64_t[]){2, 2}, (double[]){0, 1, 3, 4}, 4) &&
           out_is(&t, 1, 2, (int64_t[]){2, 1}, (double[]){2, 5}, 2),
       "Split [2, 3] on axis 1 into 2 + 1 (split input) (%s)", err.msg);
    op_test_free(&t);

    int64_t d7 = 7;
    cs_tensor x7 = op_test_view(CS_DT_DOUBLE, 1, &d7, seq_d);
    op_test_init(&t, "Split", 18);
    op_test_attr_int(&t, "num_outputs", 3);
    op_test_input(&t, &x7);
    op_test_outputs(&t, 3);
    ok(op_test_run(&t, &err) == CS_OK && out_is(&t, 0, 1, (int64_t[]){3}, (double[]){0, 1, 2}, 3) &&
           out_is(&t, 1, 1, (int64_t[]){3}, (double[]){3, 4, 5}, 3) &&
           out_is(&t, 2, 1, (int64_t[]){1}, (double[]){6}, 1),
       "Split opset 18 num_outputs=3 of 7: 3, 3, 1 (%s)", err.msg);
    op_test_free(&t);

    int64_t d4 = 4, attr_split[2] = {1, 3};
    cs_tensor x4 = op_test_view(CS_DT_INT64, 1, &d4, seq_i);
    op_test_init(&t, "Split", 11);
    op_test_attr_int(&t, "axis", -1);
    op_test_attr_ints(&t, "split", 2, attr_split);
    op_test_input(&t, &x4);
    op_test_outputs(&t, 2);
    ok(op_test_run(&t, &err) == CS_OK && t.out[1]->dtype == CS_DT_INT64 &&
           out_is(&t, 0, 1, (int64_t[]){1}, (double[]){0}, 1) &&
           out_is(&t, 1, 1, (int64_t[]){3}, (double[]){1, 2, 3}, 3),
       "Split opset 11 split attribute, int64 data, axis -1 (%s)", err.msg);
    op_test_free(&t);

    int64_t d24[2] = {4, 2};
    cs_tensor x42 = op_test_view(CS_DT_DOUBLE, 2, d24, seq_d);
    op_test_init(&t, "Split", 13);
    op_test_input(&t, &x42);
    op_test_outputs(&t, 2);
    ok(op_test_run(&t, &err) == CS_OK && out_is(&t, 0, 2, (int64_t[]){2, 2}, (double[]){0, 1, 2, 3}, 4) &&
           out_is(&t, 1, 2, (int64_t[]){2, 2}, (double[]){4, 5, 6, 7}, 4),
       "Split opset 13, no split: equal parts on axis 0 (%s)", err.msg);
    op_test_free(&t);

    int64_t d5 = 5;
    cs_tensor x5 = op_test_view(CS_DT_DOUBLE, 1, &d5, seq_d);
    op_test_init(&t, "Split", 13);
    op_test_input(&t, &x5);
    op_test_outputs(&t, 2);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Split of 5 into 2 equal parts is refused (%s)", err.msg);
    op_test_free(&t);

    int64_t bad[2] = {2, 2};
    cs_tensor spb = ints(2, bad, &np);
    op_test_init(&t, "Split", 13);
    op_test_input(&t, &x5);
    op_test_input(&t, &spb);
    op_test_outputs(&t, 2);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Split with parts 2 + 2 of 5 is refused (%s)", err.msg);
    op_test_free(&t);

    /* parts whose sum overflows int64 (a fuzzer's find): refused, no
     * overflow (this test runs under UBSan in CI) */
    int64_t huge[2] = {INT64_MAX / 2 + 2, INT64_MAX / 2 + 2};
    cs_tensor sph = ints(2, huge, &np);
    op_test_init(&t, "Split", 13);
    op_test_input(&t, &x5);
    op_test_input(&t, &sph);
    op_test_outputs(&t, 2);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Split with parts of 2^62 each is refused (%s)", err.msg);
    op_test_free(&t);

    op_test_init(&t, "Split", 13);
    op_test_input(&t, &x5);
    op_test_input_unknown(&t, &spb);
    op_test_outputs(&t, 2);
    ok(op_test_run(&t, &err) == CS_ERR_UNSUPPORTED, "Split with split unknown at prepare is refused (%s)",
       err.msg);
    op_test_free(&t);
}

/* ---- Expand ---- */

static void test_expand(void)
{
    op_test t;
    cs_err err = {0};
    int64_t d31[2] = {3, 1}, shape[3] = {2, 1, 4}, ns;
    cs_tensor x = op_test_view(CS_DT_DOUBLE, 2, d31, seq_d), s = ints(3, shape, &ns);
    double want[24];
    for (int i = 0; i < 24; i++)
        want[i] = (i / 4) % 3;
    op_test_init(&t, "Expand", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &s);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_OK && out_is(&t, 0, 3, (int64_t[]){2, 3, 4}, want, 24),
       "Expand [3, 1] to [2, 1, 4]: [2, 3, 4] (%s)", err.msg);
    op_test_free(&t);

    /* A shape of lower rank, with 1s: the input's shape stays. */
    int64_t d23[2] = {2, 3}, ones[2] = {1, 1};
    cs_tensor x23 = op_test_view(CS_DT_DOUBLE, 2, d23, seq_d), s11 = ints(2, ones, &ns);
    op_test_init(&t, "Expand", 13);
    op_test_input(&t, &x23);
    op_test_input(&t, &s11);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_OK && out_is(&t, 0, 2, d23, seq_d, 6),
       "Expand [2, 3] by [1, 1] keeps it (%s)", err.msg);
    op_test_free(&t);

    /* bool mask broadcast, as causal masks are built. */
    uint8_t mask[3] = {1, 0, 1};
    int64_t d3 = 3, s23[2] = {2, 3};
    cs_tensor m = op_test_view(CS_DT_BOOL, 1, &d3, mask), sm = ints(2, s23, &ns);
    op_test_init(&t, "Expand", 13);
    op_test_input(&t, &m);
    op_test_input(&t, &sm);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_OK && t.out[0]->dtype == CS_DT_BOOL &&
           out_is(&t, 0, 2, s23, (double[]){1, 0, 1, 1, 0, 1}, 6),
       "Expand bool [3] to [2, 3] (%s)", err.msg);
    op_test_free(&t);

    int64_t s4 = 4;
    cs_tensor sbad = ints(1, &s4, &ns);
    op_test_init(&t, "Expand", 13);
    op_test_input(&t, &m);
    op_test_input(&t, &sbad);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Expand [3] to [4] is refused (%s)", err.msg);
    op_test_free(&t);
}

/* ---- Tile ---- */

static void test_tile(void)
{
    op_test t;
    cs_err err = {0};
    int64_t d22[2] = {2, 2}, reps[2] = {2, 3}, nr;
    cs_tensor x = op_test_view(CS_DT_DOUBLE, 2, d22, seq_d), r = ints(2, reps, &nr);
    double want[24] = {0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3};
    op_test_init(&t, "Tile", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &r);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_OK && out_is(&t, 0, 2, (int64_t[]){4, 6}, want, 24),
       "Tile [2, 2] by [2, 3] (%s)", err.msg);
    op_test_free(&t);

    int64_t d3 = 3, rep1 = 2;
    cs_tensor xi = op_test_view(CS_DT_INT64, 1, &d3, seq_i), r1 = ints(1, &rep1, &nr);
    op_test_init(&t, "Tile", 13);
    op_test_input(&t, &xi);
    op_test_input(&t, &r1);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_OK && t.out[0]->dtype == CS_DT_INT64 &&
           out_is(&t, 0, 1, (int64_t[]){6}, (double[]){0, 1, 2, 0, 1, 2}, 6),
       "Tile int64 [3] by 2 (%s)", err.msg);
    op_test_free(&t);

    op_test_init(&t, "Tile", 13);
    op_test_input(&t, &x);
    op_test_input(&t, &r1);
    op_test_outputs(&t, 1);
    ok(op_test_run(&t, &err) == CS_ERR_SHAPE, "Tile of rank 2 by 1 repeat is refused (%s)", err.msg);
    op_test_free(&t);
}

/* ---- folding: the Shape -> Slice -> Concat -> Reshape chain of exports ---- */

static Onnx__TensorProto *int64_init(model_builder *b, const char *name, int n, const int64_t *v)
{
    Onnx__TensorProto *t = mb_tensor(b, name, CS_DT_INT64, 1, (const int64_t[]){n});
    t->n_int64_data = (size_t)n;
    t->int64_data = mb_dup(b, v, (size_t)n * sizeof *v);
    return mb_add_init(b, t);
}

static void test_fold(void)
{
    model_builder b;
    mb_init(&b, 8, 17);
    mb_input(&b, "x", CS_DT_FLOAT, 3, (const int64_t[]){-1, 2, 3});
    int64_init(&b, "zero", 1, (const int64_t[]){0});
    int64_init(&b, "one", 1, (const int64_t[]){1});
    int64_init(&b, "minus1", 1, (const int64_t[]){-1});
    mb_node(&b, "Shape", "shape", (const char *const[]){"x", NULL}, (const char *const[]){"s", NULL});
    mb_node(&b, "Slice", "slice", (const char *const[]){"s", "zero", "one", NULL},
            (const char *const[]){"batch", NULL});
    Onnx__NodeProto *n = mb_node(&b, "Concat", "concat", (const char *const[]){"batch", "minus1", NULL},
                                 (const char *const[]){"target", NULL});
    mb_attr_int(&b, n, "axis", 0);
    mb_node(&b, "Reshape", "reshape", (const char *const[]){"x", "target", NULL},
            (const char *const[]){"y", NULL});
    mb_output(&b, "y");
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    mb_free(&b);
    if (!ok(st == CS_OK, "fold: Shape -> Slice -> Concat -> Reshape model loads (%s)", err.msg))
        return;
    cs_plan p;
    if (ok(cs_plan_prepare_batch(&p, g, 4, &err) == CS_OK, "fold: prepare at batch 4 (%s)", err.msg)) {
        ok(p.folded[1] && p.folded[2] && !p.folded[3], "fold: Slice and Concat fold at prepare, Reshape runs");
        const cs_tensor *y = cs_plan_output(&p, 0);
        ok(y->ndim == 2 && y->dims[0] == 4 && y->dims[1] == 6, "fold: the output is [4, 6]");
        cs_plan_free(&p);
    }
    cs_graph_free(g);
}

int main(void)
{
    for (int i = 0; i < 64; i++) {
        seq_d[i] = i;
        seq_i[i] = i;
    }
    test_slice();
    test_split();
    test_expand();
    test_tile();
    test_fold();
    return tap_done();
}
