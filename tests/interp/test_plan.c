/* The execution plan: folding at prepare time, batch handling, input checks. */
#include <math.h>
#include <string.h>

#include "../tap.h"
#include "../test_util.h"
#include "objective/evaluate.h"
#include "interp/plan.h"
#include "interp/run.h"
#include "interp/model.h"
#include "onnx/loader.h"

static cs_graph *load(const char *rel)
{
    char path[512];
    cs_err err = {0};
    cs_graph *g = NULL;
    test_src_path(path, sizeof path, rel);
    if (!ok(cs_model_load_file(path, &g, &err) == CS_OK, "load %s (%s)", rel, err.msg))
        return NULL;
    return g;
}

static int node_index(const cs_graph *g, const char *name)
{
    for (int k = 0; k < g->n_nodes; k++)
        if (strcmp(g->nodes[k].name, name) == 0)
            return k;
    return -1;
}

/* Fill the plan's input with a deterministic pattern depending on the
 * sample index only, so different batch sizes see the same samples. */
static void fill_pattern(cs_tensor *x)
{
    int64_t per = cs_tensor_numel(x) / x->dims[0];
    float *d = x->data;
    for (int64_t n = 0; n < x->dims[0]; n++)
        for (int64_t i = 0; i < per; i++)
            d[n * per + i] = (float)sin(0.37 * (double)(n * per + i) + 0.1 * (double)n);
}

static void test_shape_chain(void)
{
    cs_graph *g = load("tests/models/shape_chain.onnx");
    if (!g)
        return;
    cs_err err = {0};
    cs_plan p;
    if (!ok(cs_plan_prepare_batch(&p, g, 6, &err) == CS_OK, "shape_chain: prepare (%s)", err.msg)) {
        cs_graph_free(g);
        return;
    }
    static const char *const chain[] = {"shape", "gather", "unsqueeze", "concat"};
    for (int i = 0; i < 4; i++) {
        int k = node_index(g, chain[i]);
        ok(k >= 0 && p.folded[k], "shape_chain: %s is folded at prepare", chain[i]);
    }
    ok(!p.folded[node_index(g, "reshape")], "shape_chain: reshape of the input runs per batch");
    ok(!p.folded[node_index(g, "fc")], "shape_chain: the Gemm layer runs per batch");
    int concat_out = g->nodes[node_index(g, "concat")].outputs[0];
    const cs_tensor *shape = &p.vals[concat_out];
    ok(shape->ndim == 1 && shape->dims[0] == 2 && ((int64_t *)shape->data)[0] == 6 &&
           ((int64_t *)shape->data)[1] == -1,
       "shape_chain: folded shape is [6, -1]");
    const cs_tensor *y = cs_plan_output(&p, 0);
    ok(y->ndim == 2 && y->dims[0] == 6 && y->dims[1] == 5, "shape_chain: output is [6, 5]");

    /* Per-sample results do not depend on the batch size. */
    fill_pattern(cs_plan_input(&p, 0));
    ok(cs_plan_forward(&p, &err) == CS_OK, "shape_chain: forward (%s)", err.msg);
    float first[30];
    memcpy(first, y->data, sizeof first);
    ok(cs_plan_forward(&p, &err) == CS_OK && memcmp(first, y->data, sizeof first) == 0,
       "shape_chain: a second forward gives identical outputs");

    cs_plan one;
    if (ok(cs_plan_prepare_batch(&one, g, 1, &err) == CS_OK, "shape_chain: prepare batch 1 (%s)", err.msg)) {
        const cs_tensor *x6 = cs_plan_input(&p, 0);
        memcpy(cs_plan_input(&one, 0)->data, x6->data, 12 * sizeof(float)); /* sample 0 */
        int good = cs_plan_forward(&one, &err) == CS_OK;
        const float *y1 = cs_plan_output(&one, 0)->data;
        for (int j = 0; j < 5 && good; j++)
            good = tap_close(y1[j], first[j], 1e-6, 1e-6);
        ok(good, "shape_chain: sample 0 gives the same output at batch 1 and batch 6");
        cs_plan_free(&one);
    }
    cs_plan_free(&p);

    /* Input checks. */
    cs_tensor bad;
    int64_t dims3[3] = {2, 4, 3}, dims_wrong[3] = {2, 3, 4};
    cs_tensor_set_shape(&bad, CS_DT_DOUBLE, 3, dims3);
    bad.data = NULL;
    ok(cs_plan_prepare(&p, g, &bad, &err) == CS_ERR_SHAPE && strstr(err.msg, "'x'"),
       "shape_chain: a double input for a float model is refused (%s)", err.msg);
    cs_tensor_set_shape(&bad, CS_DT_FLOAT, 3, dims_wrong);
    ok(cs_plan_prepare(&p, g, &bad, &err) == CS_ERR_SHAPE && strstr(err.msg, "[N, 4, 3]") &&
           strstr(err.msg, "'x'"),
       "shape_chain: a wrongly shaped input is refused (%s)", err.msg);
    cs_tensor_set_shape(&bad, CS_DT_FLOAT, 2, dims3);
    ok(cs_plan_prepare(&p, g, &bad, &err) == CS_ERR_SHAPE, "shape_chain: a wrong rank is refused (%s)",
       err.msg);
    cs_tensor s;
    ok(cs_graph_input_shape(g, 0, 9, &s, &err) == CS_OK && s.ndim == 3 && s.dims[0] == 9 &&
           s.dims[1] == 4 && s.dims[2] == 3,
       "shape_chain: the symbolic batch dimension resolves to 9");
    cs_graph_free(g);
}

static void test_unsupported(void)
{
    const char *root = test_env("ONNX_TESTDATA_DIR", "/usr/share/libonnx-testdata/data");
    char path[600];
    snprintf(path, sizeof path, "%s/node/test_abs/model.onnx", root);
    cs_err err = {0};
    cs_graph *g = NULL;
    if (cs_model_load_file(path, &g, &err) != CS_OK) {
        skip("ONNX test data not found at %s", root);
        return;
    }
    if (g->nodes[0].op) {
        skip("Abs is supported now: pick another unsupported operator for this test");
        cs_graph_free(g);
        return;
    }
    cs_tensor x;
    cs_tensor_set_shape(&x, CS_DT_FLOAT, 3, (int64_t[]){3, 4, 5});
    x.data = NULL;
    cs_plan p;
    ok(cs_plan_prepare(&p, g, &x, &err) == CS_ERR_UNSUPPORTED && strstr(err.msg, "Abs"),
       "an unsupported operator is named when preparing (%s)", err.msg);
    char buf[256];
    ok(cs_graph_unsupported(g, buf, sizeof buf) == 1 && strstr(buf, "Abs"),
       "cs_graph_unsupported lists it (%s)", buf);
    cs_graph_free(g);
}

int main(void)
{
    test_shape_chain();
    test_unsupported();
    return tap_done();
}
