/* Loader tests: the bundled models (inputs, layers, parameter order) and
 * hand-made models for each way ONNX stores tensor data, external data,
 * input/initializer overlap, node naming, foreign domains, MatMul+Add
 * fusion and symbolic batch dimensions. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tap.h"
#include "../test_util.h"
#include "graph/graph.h"
#include "interp/layer_kind.h"
#include "interp/plan.h"
#include "model_builder.h"
#include "interp/model.h"
#include "onnx/loader.h"

static cs_graph *load_model(const char *rel)
{
    char path[4096];
    cs_err err = {0};
    cs_graph *g = NULL;
    test_src_path(path, sizeof path, rel);
    cs_status st = cs_model_load_file(path, &g, &err);
    if (!ok(st == CS_OK && g != NULL, "load %s", rel)) {
        diag("status %s: %s", cs_status_name(st), err.msg);
        return NULL;
    }
    return g;
}

static const char *value_name(const cs_graph *g, int v)
{
    return v >= 0 && v < g->n_values ? g->values[v].name : "(none)";
}

/* The single user input is 'input', float, [-1, 1, 28, 28]. */
static void check_mnist_input(const cs_graph *g, const char *model)
{
    int good = g->n_inputs == 1;
    const cs_value *in = good ? &g->values[g->inputs[0]] : NULL;
    ok(good && strcmp(in->name, "input") == 0, "%s: one user input named 'input'", model);
    ok(in && in->kind == CS_VALUE_INPUT && in->decl.dtype == CS_DT_FLOAT,
       "%s: input is a float graph input", model);
    ok(in && in->decl.ndim == 4 && in->decl.dims[0] == -1 && in->decl.dims[1] == 1 &&
           in->decl.dims[2] == 28 && in->decl.dims[3] == 28,
       "%s: input shape is [batch(-1), 1, 28, 28]", model);
    ok(g->n_outputs == 1 && strcmp(value_name(g, g->outputs[0]), "output") == 0 &&
           g->values[g->outputs[0]].is_output,
       "%s: one graph output named 'output'", model);
    char buf[512];
    int n_unsup = cs_graph_unsupported(g, buf, sizeof buf);
    ok(n_unsup == 0, "%s: every operator is supported", model);
    if (n_unsup)
        diag("unsupported: %s", buf);
}

/* doc/design.md §2.3's parameter order: layers in the order of their first node,
 * parameters inside a layer contiguous, offsets cumulative, total = sum. */
static void check_param_layout(const cs_graph *g, const char *model)
{
    int64_t off = 0, layer_sum = 0;
    int order_ok = 1, offsets_ok = 1, backrefs_ok = 1, layer_ok = 1;
    for (int p = 0; p < g->n_params; p++) {
        const cs_param *P = &g->params[p];
        if (P->offset != off)
            offsets_ok = 0;
        if (P->value < 0 || P->value >= g->n_values || g->values[P->value].param_index != p ||
            g->values[P->value].kind != CS_VALUE_INITIALIZER)
            backrefs_ok = 0;
        else
            off += cs_tensor_numel(&g->values[P->value].init);
        if (P->layer < 0 || P->layer >= g->n_layers)
            layer_ok = 0;
    }
    int first_node = -1, next_param = 0;
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        if (L->node <= first_node || L->first_param != next_param)
            order_ok = 0;
        first_node = L->node;
        next_param = L->first_param + L->n_params;
        int64_t numel = 0;
        for (int p = L->first_param; p < L->first_param + L->n_params && p < g->n_params; p++) {
            if (g->params[p].layer != l)
                layer_ok = 0;
            numel += cs_tensor_numel(&g->values[g->params[p].value].init);
        }
        if (numel != L->numel || g->nodes[L->node].layer != l)
            layer_ok = 0;
        layer_sum += L->numel;
    }
    ok(order_ok && next_param == g->n_params,
       "%s: layers in node order, their parameters contiguous and complete", model);
    ok(offsets_ok, "%s: parameter offsets are cumulative", model);
    ok(backrefs_ok, "%s: every parameter is an initializer pointing back to it", model);
    ok(layer_ok, "%s: layer numel and node/param back-references agree", model);
    ok(off == g->n_param_scalars && layer_sum == g->n_param_scalars,
       "%s: n_param_scalars %lld equals the sum over parameters (%lld) and layers (%lld)", model,
       (long long)g->n_param_scalars, (long long)off, (long long)layer_sum);
}

/* Parameter names in order equal want (NULL-terminated). */
static void check_param_names(const cs_graph *g, const char *model, const char *const *want)
{
    int n = 0, same = 1;
    for (; want[n]; n++)
        if (n >= g->n_params || strcmp(value_name(g, g->params[n].value), want[n]) != 0) {
            if (same)
                diag("parameter %d: got '%s', want '%s'", n,
                     n < g->n_params ? value_name(g, g->params[n].value) : "(none)", want[n]);
            same = 0;
        }
    ok(same && n == g->n_params, "%s: the %d parameters in doc/design.md §2.3 order", model, n);
}

static void test_mlp(void)
{
    cs_graph *g = load_model("tests/models/mlp.onnx");
    if (!g)
        return;
    ok(g->opset == 13, "mlp: opset %d is 13", g->opset);
    ok(g->ir_version == 7, "mlp: IR version %lld is 7", (long long)g->ir_version);
    check_mnist_input(g, "mlp");
    int gemms = g->n_layers == 3;
    for (int l = 0; gemms && l < 3; l++)
        gemms = strcmp(g->layers[l].op_type, "Gemm") == 0 && g->layers[l].n_params == 2 &&
                g->layers[l].bias_node == -1;
    ok(gemms, "mlp: 3 Gemm layers with weight and bias (found %d layers)", g->n_layers);
    ok(g->n_layers == 3 && strcmp(g->layers[0].name, "/fc1/Gemm") == 0 &&
           strcmp(g->layers[2].name, "/fc3/Gemm") == 0,
       "mlp: layers carry their node names");
    static const char *const names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                        "fc3.weight", "fc3.bias", NULL};
    check_param_names(g, "mlp", names);
    check_param_layout(g, "mlp");
    ok(g->n_param_scalars == 64 * 784 + 64 + 32 * 64 + 32 + 10 * 32 + 10,
       "mlp: %lld trainable scalars", (long long)g->n_param_scalars);
    ok(g->n_params == 6 && g->params[1].offset == 64 * 784 && g->params[2].offset == 64 * 784 + 64,
       "mlp: fc1.bias at offset 50176, fc2.weight at 50240");
    int w = cs_graph_find_value(g, "fc1.weight");
    ok(w >= 0 && g->values[w].init.ndim == 2 && g->values[w].init.dims[0] == 64 &&
           g->values[w].init.dims[1] == 784 && g->values[w].init.data != NULL,
       "mlp: fc1.weight is [64, 784] with data");
    cs_graph_free(g);
}

static void test_cnn(void)
{
    cs_graph *g = load_model("tests/models/cnn.onnx");
    if (!g)
        return;
    ok(g->opset == 13, "cnn: opset %d is 13", g->opset);
    check_mnist_input(g, "cnn");
    static const char *const ops[] = {"Conv", "BatchNormalization", "Conv", "BatchNormalization",
                                      "Gemm"};
    int same = g->n_layers == 5;
    for (int l = 0; same && l < 5; l++)
        same = strcmp(g->layers[l].op_type, ops[l]) == 0 && g->layers[l].n_params == 2;
    ok(same, "cnn: layers Conv, BN, Conv, BN, Gemm, two parameters each (found %d)", g->n_layers);
    static const char *const names[] = {"conv1.weight", "conv1.bias", "bn1.weight",  "bn1.bias",
                                        "conv2.weight", "conv2.bias", "bn2.weight",  "bn2.bias",
                                        "fc.weight",    "fc.bias",    NULL};
    check_param_names(g, "cnn", names);
    check_param_layout(g, "cnn");
    static const char *const stats[] = {"bn1.running_mean", "bn1.running_var", "bn2.running_mean",
                                        "bn2.running_var"};
    int not_params = 1;
    for (int i = 0; i < 4; i++) {
        int v = cs_graph_find_value(g, stats[i]);
        if (v < 0 || g->values[v].param_index != -1 || g->values[v].kind != CS_VALUE_INITIALIZER ||
            !g->values[v].init.data)
            not_params = 0;
    }
    ok(not_params, "cnn: BN running mean / var are initializers but not parameters");
    ok(g->n_param_scalars == 72 + 8 + 8 + 8 + 1152 + 16 + 16 + 16 + 7840 + 10,
       "cnn: %lld trainable scalars", (long long)g->n_param_scalars);
    cs_graph_free(g);
}

static void test_attn(void)
{
    cs_graph *g = load_model("tests/models/attn.onnx");
    if (!g)
        return;
    ok(g->opset == 17, "attn: opset %d is 17", g->opset);
    check_mnist_input(g, "attn");
    /* embed, pos (an elementwise shift: interp/param_rule.h), ln1, q, k, v,
     * proj, ln2, mlp_in, mlp_out, ln_f, head */
    static const char *const ops[] = {"MatMul", "Add", "LayerNormalization", "MatMul", "MatMul",
                                      "MatMul", "MatMul", "LayerNormalization", "MatMul",
                                      "MatMul", "LayerNormalization", "Gemm"};
    static const char *const prefix[] = {"/embed/", "/Add", "/ln1/", "/q/", "/k/", "/v/", "/proj/",
                                         "/ln2/", "/mlp_in/", "/mlp_out/", "/ln_f/", "/head/"};
    int same = g->n_layers == 12;
    int fused = same;
    for (int l = 0; same && l < 12; l++) {
        const cs_layer *L = &g->layers[l];
        same = strcmp(L->op_type, ops[l]) == 0 &&
               strncmp(L->name, prefix[l], strlen(prefix[l])) == 0;
        if (strcmp(ops[l], "MatMul") == 0) {
            int bn = L->bias_node;
            if (bn < 0 || bn >= g->n_nodes || strcmp(g->nodes[bn].op_type, "Add") != 0 ||
                g->nodes[bn].layer != l || L->n_params != 2 ||
                strncmp(g->nodes[bn].name, prefix[l], strlen(prefix[l])) != 0)
                fused = 0;
        } else if (L->bias_node != -1) {
            fused = 0;
        }
    }
    ok(same, "attn: 12 layers: MatMul+Add x7, the pos Add, LayerNormalization x3, final Gemm (found %d)",
       g->n_layers);
    ok(fused, "attn: every MatMul layer fuses its bias Add (bias_node >= 0, two parameters)");
    ok(g->n_layers == 12 && strcmp(g->layers[11].op_type, "Gemm") == 0 &&
           g->layers[11].node == g->n_nodes - 1,
       "attn: the last layer is the final Gemm node");
    /* Inside a fused layer the weight comes first even though the Add
     * lists the bias as its first input. */
    ok(g->n_params >= 2 && strcmp(value_name(g, g->params[0].value), "onnx::MatMul_69") == 0 &&
           strcmp(value_name(g, g->params[1].value), "embed.bias") == 0,
       "attn: embed layer's parameters are weight then bias");
    int pos = cs_graph_find_value(g, "pos");
    ok(pos >= 0 && g->values[pos].param_index >= 0 &&
           strcmp(g->layers[g->params[g->values[pos].param_index].layer].kind->name, "shift") == 0,
       "attn: 'pos' (added by a plain Add) is the parameter of a shift layer");
    int qk = -1;
    for (int k = 0; k < g->n_nodes; k++)
        if (strcmp(g->nodes[k].name, "/MatMul") == 0)
            qk = k;
    ok(qk >= 0 && g->nodes[qk].layer == -1, "attn: MatMul of two activations is not a layer");
    check_param_layout(g, "attn");
    ok(g->n_param_scalars == 28 * 32 + 32 + 28 * 32 + 2 * 32 + 4 * (32 * 32 + 32) + 2 * 32 + 32 * 64 + 64 +
                                 64 * 32 + 32 + 2 * 32 + 10 * 32 + 10,
       "attn: %lld trainable scalars", (long long)g->n_param_scalars);
    cs_graph_free(g);
}

/* ---- hand-made models ---- */

#define DIMS(...) (const int64_t[]){__VA_ARGS__}
#define NAMES(...) (const char *const[]){__VA_ARGS__, NULL}

/* input x [N, 2] -> Relu -> y: the smallest valid graph to hang tensors on. */
static void base_model(model_builder *b)
{
    mb_init(b, 8, 17);
    mb_input(b, "x", CS_DT_FLOAT, 2, DIMS(-1, 2));
    mb_node(b, "Relu", "relu", NAMES("x"), NAMES("y"));
    mb_output(b, "y");
}

static const cs_tensor *init_of(const cs_graph *g, const char *name)
{
    int v = cs_graph_find_value(g, name);
    return v >= 0 && g->values[v].kind == CS_VALUE_INITIALIZER ? &g->values[v].init : NULL;
}

static int shape_is(const cs_tensor *t, int dtype, int ndim, const int64_t *dims)
{
    if (!t || (int)t->dtype != dtype || t->ndim != ndim || !t->data)
        return 0;
    for (int i = 0; i < ndim; i++)
        if (t->dims[i] != dims[i])
            return 0;
    return 1;
}

static void test_storage_fields(void)
{
    model_builder b;
    base_model(&b);
    static const float fv[] = {1.5f, -2.0f, 0.25f, 3e-8f, -0.0f, 65504.0f};
    mb_init_floats(&b, "f_float_data", 2, DIMS(2, 3), 6, fv);

    static const float rv[] = {7.0f, -1.0f / 3.0f, 1e30f};
    Onnx__TensorProto *t = mb_tensor(&b, "f_raw", CS_DT_FLOAT, 1, DIMS(3));
    mb_set_raw(&b, t, sizeof rv, rv);
    mb_add_init(&b, t);

    static const int64_t i64raw[] = {-9, (int64_t)1 << 50};
    t = mb_tensor(&b, "i64_raw", CS_DT_INT64, 1, DIMS(2));
    mb_set_raw(&b, t, sizeof i64raw, i64raw);
    mb_add_init(&b, t);

    static const int64_t iv[] = {-5, (int64_t)1 << 40, INT64_MIN};
    t = mb_tensor(&b, "i64_data", CS_DT_INT64, 1, DIMS(3));
    t->n_int64_data = 3;
    t->int64_data = mb_dup(&b, iv, sizeof iv);
    mb_add_init(&b, t);

    static const int32_t i32v[] = {-7, 0, 123456, INT32_MIN};
    t = mb_tensor(&b, "i32_data", CS_DT_INT32, 2, DIMS(2, 2));
    t->n_int32_data = 4;
    t->int32_data = mb_dup(&b, i32v, sizeof i32v);
    mb_add_init(&b, t);

    static const int32_t i8v[] = {-3, 127};
    t = mb_tensor(&b, "i8_data", CS_DT_INT8, 1, DIMS(2));
    t->n_int32_data = 2;
    t->int32_data = mb_dup(&b, i8v, sizeof i8v);
    mb_add_init(&b, t);

    static const int32_t u8v[] = {200, 1};
    t = mb_tensor(&b, "u8_data", CS_DT_UINT8, 1, DIMS(2));
    t->n_int32_data = 2;
    t->int32_data = mb_dup(&b, u8v, sizeof u8v);
    mb_add_init(&b, t);

    static const int32_t hv[] = {0x3C00, 0xC000}; /* 1.0, -2.0 as IEEE halves */
    t = mb_tensor(&b, "f16_data", CS_DT_FLOAT16, 1, DIMS(2));
    t->n_int32_data = 2;
    t->int32_data = mb_dup(&b, hv, sizeof hv);
    mb_add_init(&b, t);

    /* 1, 2^-24 (smallest subnormal), 2^-14 - 2^-24 (largest subnormal),
     * 65504 (largest finite), -0, +inf, -inf, NaN */
    static const uint16_t hraw[] = {0x3C00, 0x0001, 0x03FF, 0x7BFF, 0x8000, 0x7C00, 0xFC00, 0x7E00};
    t = mb_tensor(&b, "f16_raw", CS_DT_FLOAT16, 1, DIMS(8));
    mb_set_raw(&b, t, sizeof hraw, hraw);
    mb_add_init(&b, t);

    /* bfloat16 (TensorProto type 16): 1, -2, +inf, 2^-133 (a float32 subnormal) */
    static const uint16_t braw[] = {0x3F80, 0xC000, 0x7F80, 0x0001};
    t = mb_tensor(&b, "bf16_raw", 16, 1, DIMS(4));
    mb_set_raw(&b, t, sizeof braw, braw);
    mb_add_init(&b, t);
    static const int32_t bv[] = {0x3F80, 0x4049}; /* 1, 3.140625 */
    t = mb_tensor(&b, "bf16_data", 16, 1, DIMS(2));
    t->n_int32_data = 2;
    t->int32_data = mb_dup(&b, bv, sizeof bv);
    mb_add_init(&b, t);

    static const double dv[] = {0.1, -1e300, 4.0};
    t = mb_tensor(&b, "f64_data", CS_DT_DOUBLE, 2, DIMS(3, 1));
    t->n_double_data = 3;
    t->double_data = mb_dup(&b, dv, sizeof dv);
    mb_add_init(&b, t);

    static const uint64_t uv[] = {4000000000u};
    t = mb_tensor(&b, "u32_data", CS_DT_UINT32, 1, DIMS(1));
    t->n_uint64_data = 1;
    t->uint64_data = mb_dup(&b, uv, sizeof uv);
    mb_add_init(&b, t);

    static const float sv[] = {3.25f};
    mb_init_floats(&b, "scalar", 0, NULL, 1, sv);
    mb_init_floats(&b, "empty", 2, DIMS(0, 4), 0, NULL);

    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    if (!ok(st == CS_OK, "tensor storage model loads")) {
        diag("%s: %s", cs_status_name(st), err.msg);
        mb_free(&b);
        return;
    }

    const cs_tensor *x = init_of(g, "f_float_data");
    ok(shape_is(x, CS_DT_FLOAT, 2, DIMS(2, 3)) && memcmp(x->data, fv, sizeof fv) == 0,
       "float_data decodes to the same 6 floats, shape [2, 3]");
    x = init_of(g, "f_raw");
    ok(shape_is(x, CS_DT_FLOAT, 1, DIMS(3)) && memcmp(x->data, rv, sizeof rv) == 0,
       "raw_data float decodes bit-exactly");
    x = init_of(g, "i64_raw");
    ok(shape_is(x, CS_DT_INT64, 1, DIMS(2)) && memcmp(x->data, i64raw, sizeof i64raw) == 0,
       "raw_data int64 decodes bit-exactly");
    x = init_of(g, "i64_data");
    ok(shape_is(x, CS_DT_INT64, 1, DIMS(3)) && memcmp(x->data, iv, sizeof iv) == 0,
       "int64_data decodes (incl. 2^40 and INT64_MIN)");
    x = init_of(g, "i32_data");
    ok(shape_is(x, CS_DT_INT32, 2, DIMS(2, 2)) && memcmp(x->data, i32v, sizeof i32v) == 0,
       "int32_data decodes into int32");
    x = init_of(g, "i8_data");
    ok(shape_is(x, CS_DT_INT8, 1, DIMS(2)) && ((const int8_t *)x->data)[0] == -3 &&
           ((const int8_t *)x->data)[1] == 127,
       "int32_data decodes into int8");
    x = init_of(g, "u8_data");
    ok(shape_is(x, CS_DT_UINT8, 1, DIMS(2)) && ((const uint8_t *)x->data)[0] == 200 &&
           ((const uint8_t *)x->data)[1] == 1,
       "int32_data decodes into uint8");
    x = init_of(g, "f16_data");
    ok(shape_is(x, CS_DT_FLOAT, 1, DIMS(2)) && ((const float *)x->data)[0] == 1.0f &&
           ((const float *)x->data)[1] == -2.0f,
       "float16 in int32_data (0x3C00, 0xC000) widens to float32 1, -2");
    x = init_of(g, "f16_raw");
    const float *h = x ? x->data : NULL;
    ok(shape_is(x, CS_DT_FLOAT, 1, DIMS(8)) && h[0] == 1.0f && h[1] == ldexpf(1.0f, -24) &&
           h[2] == ldexpf(1023.0f, -24) && h[3] == 65504.0f && h[4] == 0.0f && signbit(h[4]) &&
           isinf(h[5]) && h[5] > 0 && isinf(h[6]) && h[6] < 0 && isnan(h[7]),
       "float16 raw_data widens exactly: 1, 2^-24, 1023 * 2^-24, 65504, -0, inf, -inf, nan");
    x = init_of(g, "bf16_raw");
    h = x ? x->data : NULL;
    ok(shape_is(x, CS_DT_FLOAT, 1, DIMS(4)) && h[0] == 1.0f && h[1] == -2.0f && isinf(h[2]) &&
           h[2] > 0 && h[3] == ldexpf(1.0f, -133),
       "bfloat16 raw_data widens to the float32 with those top 16 bits: 1, -2, inf, 2^-133");
    x = init_of(g, "bf16_data");
    ok(shape_is(x, CS_DT_FLOAT, 1, DIMS(2)) && ((const float *)x->data)[0] == 1.0f &&
           ((const float *)x->data)[1] == 3.140625f,
       "bfloat16 in int32_data (0x3F80, 0x4049) widens to 1, 3.140625");
    x = init_of(g, "f64_data");
    ok(shape_is(x, CS_DT_DOUBLE, 2, DIMS(3, 1)) && memcmp(x->data, dv, sizeof dv) == 0,
       "double_data decodes bit-exactly");
    x = init_of(g, "u32_data");
    ok(shape_is(x, CS_DT_UINT32, 1, DIMS(1)) && ((const uint32_t *)x->data)[0] == 4000000000u,
       "uint64_data decodes into uint32");
    x = init_of(g, "scalar");
    ok(shape_is(x, CS_DT_FLOAT, 0, NULL) && ((const float *)x->data)[0] == 3.25f,
       "a rank-0 initializer is a scalar");
    x = init_of(g, "empty");
    ok(x && x->ndim == 2 && x->dims[0] == 0 && x->dims[1] == 4 && cs_tensor_numel(x) == 0,
       "an initializer with a zero dimension loads empty");
    int v = cs_graph_find_value(g, "f_float_data");
    ok(v >= 0 && g->values[v].decl.ndim == 2 && g->values[v].decl.dims[1] == 3 &&
           g->values[v].decl.data == NULL,
       "an initializer's declared shape is its tensor's, without data");
    ok(g->n_params == 0 && g->n_layers == 0, "initializers no layer reads are not parameters");
    cs_graph_free(g);
    mb_free(&b);
}

/* ---- external data ---- */

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    size_t put = fwrite(data, 1, n, f);
    return (fclose(f) == 0) & (put == n);
}

static void set_external(model_builder *b, Onnx__TensorProto *t, const char *location,
                         const char *offset, const char *length)
{
    const char *keys[] = {"location", "offset", "length"};
    const char *vals[] = {location, offset, length};
    t->has_data_location = 1;
    t->data_location = 1;
    t->external_data = mb_alloc(b, sizeof *t->external_data * 3);
    for (int i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        Onnx__StringStringEntryProto *e = mb_alloc(b, sizeof *e);
        onnx__string_string_entry_proto__init(e);
        e->key = (char *)keys[i];
        e->value = (char *)vals[i];
        t->external_data[t->n_external_data++] = e;
    }
}

/* One model whose only extra initializer 'W' [2, 2] is external. */
static cs_status load_external(const char *dir, const char *location, const char *offset,
                               const char *length, cs_graph **g, cs_err *err)
{
    model_builder b;
    base_model(&b);
    Onnx__TensorProto *t = mb_add_init(&b, mb_tensor(&b, "W", CS_DT_FLOAT, 2, DIMS(2, 2)));
    set_external(&b, t, location, offset, length);
    cs_status st = mb_load(&b, dir, g, err);
    mb_free(&b);
    return st;
}

static void test_external_data(void)
{
    char dir[] = "/tmp/cs_test_loader_XXXXXX";
    if (!mkdtemp(dir)) {
        skip("external data: cannot make a temporary folder");
        return;
    }
    char data_path[256], model_path[256], sub[256], sub_data[300];
    snprintf(data_path, sizeof data_path, "%s/weights.bin", dir);
    snprintf(model_path, sizeof model_path, "%s/model.onnx", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(sub_data, sizeof sub_data, "%s/sub/w2.bin", dir);

    /* 16 bytes of filler, then W (4 floats), then V (2 floats). */
    uint8_t blob[16 + 24];
    memset(blob, 0xAB, 16);
    static const float wv[] = {1.0f, -2.0f, 3.5f, 1e-3f};
    static const float vv[] = {42.0f, -0.5f};
    memcpy(blob + 16, wv, sizeof wv);
    memcpy(blob + 32, vv, sizeof vv);
    int wrote = write_file(data_path, blob, sizeof blob);
    int made_sub = mkdir(sub, 0700) == 0;
    wrote = wrote && made_sub && write_file(sub_data, vv, sizeof vv);
    ok(wrote, "external data: wrote data files under %s", dir);

    /* A model file next to the data: W at offset 16 with its length, V at
     * offset 32 without a length, U in a subfolder without offset. */
    model_builder b;
    base_model(&b);
    Onnx__TensorProto *t = mb_add_init(&b, mb_tensor(&b, "W", CS_DT_FLOAT, 2, DIMS(2, 2)));
    set_external(&b, t, "weights.bin", "16", "16");
    t = mb_add_init(&b, mb_tensor(&b, "V", CS_DT_FLOAT, 1, DIMS(2)));
    set_external(&b, t, "weights.bin", "32", NULL);
    t = mb_add_init(&b, mb_tensor(&b, "U", CS_DT_FLOAT, 1, DIMS(2)));
    set_external(&b, t, "sub/w2.bin", NULL, NULL);
    size_t len;
    uint8_t *buf = mb_pack(&b, &len);
    int wrote_model = write_file(model_path, buf, len);
    free(buf);
    mb_free(&b);

    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = wrote_model ? cs_model_load_file(model_path, &g, &err) : CS_ERR_IO;
    if (ok(st == CS_OK, "external data: model with location/offset/length loads from a file")) {
        const cs_tensor *w = init_of(g, "W"), *v = init_of(g, "V"), *u = init_of(g, "U");
        ok(shape_is(w, CS_DT_FLOAT, 2, DIMS(2, 2)) && memcmp(w->data, wv, sizeof wv) == 0,
           "external data: W read from offset 16");
        ok(shape_is(v, CS_DT_FLOAT, 1, DIMS(2)) && memcmp(v->data, vv, sizeof vv) == 0,
           "external data: V read from offset 32 without a length");
        ok(shape_is(u, CS_DT_FLOAT, 1, DIMS(2)) && memcmp(u->data, vv, sizeof vv) == 0,
           "external data: a location in a subfolder is allowed");
        cs_graph_free(g);
    } else {
        diag("%s: %s", cs_status_name(st), err.msg);
    }

    /* Loading the same bytes from memory with the folder as base_dir. */
    st = load_external(dir, "weights.bin", "16", "16", &g, &err);
    ok(st == CS_OK && shape_is(init_of(g, "W"), CS_DT_FLOAT, 2, DIMS(2, 2)) &&
           memcmp(init_of(g, "W")->data, wv, sizeof wv) == 0,
       "external data: cs_onnx_load_bytes resolves against base_dir");
    cs_graph_free(g);

    st = load_external(dir, "../weights.bin", NULL, NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "../weights.bin") &&
           strstr(err.msg, "'W'"),
       "external data: a location with '..' is refused, naming it and the tensor (%s)", err.msg);
    st = load_external(dir, "sub/../weights.bin", NULL, NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL,
       "external data: '..' in the middle of a location is refused");
    st = load_external(dir, data_path, NULL, NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, data_path),
       "external data: an absolute location is refused (%s)", err.msg);
    st = load_external(NULL, "weights.bin", "16", "16", &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && err.msg[0],
       "external data: refused when loading from memory without a base folder (%s)", err.msg);
    st = load_external(dir, "missing.bin", NULL, NULL, &g, &err);
    ok(st == CS_ERR_IO && g == NULL && strstr(err.msg, "missing.bin"),
       "external data: a missing data file is an I/O error naming it (%s)", err.msg);
    st = load_external(dir, "weights.bin", "0", "12", &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "'W'"),
       "external data: a length that does not match the shape is refused (%s)", err.msg);
    st = load_external(dir, "weights.bin", "32", NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "shorter"),
       "external data: a file too short for offset + size is refused (%s)", err.msg);
    st = load_external(dir, "weights.bin", "-4", NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL, "external data: a negative offset is refused (%s)",
       err.msg);
    st = load_external(dir, "weights.bin", "16x", NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL, "external data: a non-numeric offset is refused (%s)",
       err.msg);
    st = load_external(dir, NULL, "16", "16", &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "location"),
       "external data: no location is refused (%s)", err.msg);

    st = load_external(dir, "/etc/passwd", NULL, NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "/etc/passwd") &&
           strstr(err.msg, "leaves"),
       "external data: '/etc/passwd' is refused (%s)", err.msg);
    st = load_external(dir, "weights.bin", "1000000", NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "shorter") && strstr(err.msg, "1000000"),
       "external data: an offset past the end of the file is refused (%s)", err.msg);
    st = load_external(dir, "weights.bin", "9223372036854775807", NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "'W'"),
       "external data: offset 2^63-1 is refused without overflow (%s)", err.msg);

    /* Symbolic links inside the folder: one to a file outside it, one to a
     * folder outside it, one to a file inside it (allowed). */
    char out_link[300], dir_link[300], in_link[300], outside[300];
    snprintf(outside, sizeof outside, "%s.outside", dir);
    snprintf(out_link, sizeof out_link, "%s/out.bin", dir);
    snprintf(dir_link, sizeof dir_link, "%s/up", dir);
    snprintf(in_link, sizeof in_link, "%s/in.bin", dir);
    int links = write_file(outside, blob, sizeof blob) && symlink(outside, out_link) == 0 &&
                symlink("/tmp", dir_link) == 0 && symlink("weights.bin", in_link) == 0;
    if (ok(links, "external data: made symbolic links in %s", dir)) {
        st = load_external(dir, "out.bin", "16", "16", &g, &err);
        ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "out.bin") &&
               strstr(err.msg, "outside") && strstr(err.msg, "'W'"),
           "external data: a symbolic link to a file outside the folder is refused (%s)", err.msg);
        char via_dir[300];
        snprintf(via_dir, sizeof via_dir, "up/%s", strrchr(outside, '/') + 1);
        st = load_external(dir, via_dir, "16", "16", &g, &err);
        ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "outside"),
           "external data: a path through a linked folder outside is refused (%s)", err.msg);
        st = load_external(dir, "in.bin", "16", "16", &g, &err);
        ok(st == CS_OK && memcmp(init_of(g, "W")->data, wv, sizeof wv) == 0,
           "external data: a symbolic link to a file inside the folder is followed (%s)",
           st ? err.msg : "");
        cs_graph_free(g);
    }
    unlink(out_link);
    unlink(dir_link);
    unlink(in_link);
    unlink(outside);

    unlink(sub_data);
    rmdir(sub);
    unlink(data_path);
    unlink(model_path);
    ok(rmdir(dir) == 0, "external data: temporary folder removed");
}

/* ---- graph structure ---- */

static void test_input_initializer_overlap(void)
{
    model_builder b;
    mb_init(&b, 3, 9);
    mb_input(&b, "W", CS_DT_FLOAT, 2, DIMS(3, 2)); /* IR < 4 style: weights listed as inputs */
    mb_input(&b, "x", CS_DT_FLOAT, 2, DIMS(-1, 3));
    mb_input(&b, "b", CS_DT_FLOAT, 1, DIMS(2));
    static const float w[6] = {1, 2, 3, 4, 5, 6}, bias[2] = {0.5f, -0.5f};
    mb_init_floats(&b, "W", 2, DIMS(3, 2), 6, w);
    mb_init_floats(&b, "b", 1, DIMS(2), 2, bias);
    mb_node(&b, "MatMul", "mm", NAMES("x", "W"), NAMES("h"));
    mb_node(&b, "Add", "add", NAMES("h", "b"), NAMES("y"));
    mb_output(&b, "y");
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    if (ok(st == CS_OK, "inputs that are also initializers: model loads (%s)", err.msg)) {
        ok(g->n_inputs == 1 && strcmp(value_name(g, g->inputs[0]), "x") == 0,
           "inputs that are also initializers are not user inputs (n_inputs %d)", g->n_inputs);
        int v = cs_graph_find_value(g, "W");
        ok(v >= 0 && g->values[v].kind == CS_VALUE_INITIALIZER && g->values[v].init.data,
           "'W' listed as input stays an initializer with its data");
        ok(g->n_layers == 1 && g->layers[0].bias_node == 1 && g->n_params == 2 &&
               strcmp(value_name(g, g->params[1].value), "b") == 0,
           "its MatMul+Add is one layer with weight and bias");
        cs_graph_free(g);
    }
    mb_free(&b);
}

static void test_node_names(void)
{
    model_builder b;
    mb_init(&b, 8, 17);
    mb_input(&b, "x", CS_DT_FLOAT, 2, DIMS(-1, 4));
    mb_node(&b, "Relu", "first", NAMES("x"), NAMES("a"));
    mb_node(&b, "Relu", NULL, NAMES("a"), NAMES("c"));
    mb_node(&b, "Sigmoid", "", NAMES("c"), NAMES("d"));
    mb_output(&b, "d");
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    if (ok(st == CS_OK && g->n_nodes == 3, "unnamed nodes: model loads (%s)", err.msg)) {
        ok(strcmp(g->nodes[0].name, "first") == 0, "a named node keeps its name");
        ok(strcmp(g->nodes[1].name, "Relu_1") == 0, "a node without a name is '<op>_<k>': '%s'",
           g->nodes[1].name);
        ok(strcmp(g->nodes[2].name, "Sigmoid_2") == 0, "an empty name counts as none: '%s'",
           g->nodes[2].name);
        cs_graph_free(g);
    }
    mb_free(&b);
}

static void test_foreign_domain(void)
{
    model_builder b;
    mb_init(&b, 8, -1);
    mb_import(&b, "com.example", 1);
    mb_input(&b, "x", CS_DT_FLOAT, 2, DIMS(-1, 4));
    Onnx__NodeProto *n = mb_node(&b, "Frobnicate", "frob", NAMES("x"), NAMES("y"));
    n->domain = (char *)"com.example";
    mb_output(&b, "y");
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    if (ok(st == CS_OK, "a model importing only a non-default domain loads (%s)", err.msg)) {
        ok(g->opset == 0, "its default opset is 0 (got %d)", g->opset);
        ok(g->n_nodes == 1 && g->nodes[0].op == NULL && g->nodes[0].opset == 1 &&
               strcmp(g->nodes[0].domain, "com.example") == 0,
           "its node keeps domain and opset and is unsupported");
        char buf[256];
        int count = cs_graph_unsupported(g, buf, sizeof buf);
        ok(count == 1 && strstr(buf, "com.example.Frobnicate") && strstr(buf, "frob"),
           "cs_graph_unsupported names it: %s", buf);
        cs_graph_free(g);
    }
    mb_free(&b);

    /* The same model with a default-domain node: that domain is not imported. */
    mb_init(&b, 8, -1);
    mb_import(&b, "com.example", 1);
    mb_input(&b, "x", CS_DT_FLOAT, 2, DIMS(-1, 4));
    mb_node(&b, "Relu", "plain_relu", NAMES("x"), NAMES("y"));
    mb_output(&b, "y");
    st = mb_load(&b, NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "plain_relu"),
       "a default-domain node in a model that does not import it is refused (%s)", err.msg);
    mb_free(&b);
}

/* x [N, 4] -> MatMul W [4, 3] -> h -> Add b -> y; extra consumers of h
 * as asked. */
static cs_status fusion_model(int relu_consumer, int h_is_output, int bias_first, cs_graph **g,
                              cs_err *err)
{
    model_builder b;
    mb_init(&b, 8, 17);
    mb_input(&b, "x", CS_DT_FLOAT, 2, DIMS(-1, 4));
    static const float w[12] = {0}, bias[3] = {1, 2, 3};
    mb_init_floats(&b, "W", 2, DIMS(4, 3), 12, w);
    mb_init_floats(&b, "b", 1, DIMS(3), 3, bias);
    mb_node(&b, "MatMul", "mm", NAMES("x", "W"), NAMES("h"));
    if (bias_first)
        mb_node(&b, "Add", "add", NAMES("b", "h"), NAMES("y"));
    else
        mb_node(&b, "Add", "add", NAMES("h", "b"), NAMES("y"));
    mb_output(&b, "y");
    if (relu_consumer) {
        mb_node(&b, "Relu", "relu", NAMES("h"), NAMES("z"));
        mb_output(&b, "z");
    }
    if (h_is_output)
        mb_output(&b, "h");
    cs_status st = mb_load(&b, NULL, g, err);
    mb_free(&b);
    return st;
}

static void test_fusion(void)
{
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = fusion_model(0, 0, 0, &g, &err);
    if (ok(st == CS_OK, "fusion: MatMul+Add model loads (%s)", err.msg)) {
        ok(g->n_layers == 1 && g->layers[0].bias_node == 1 && g->nodes[1].layer == 0 &&
               g->layers[0].n_params == 2 && g->layers[0].numel == 15,
           "fusion: MatMul with a single Add consumer of an initializer fuses it");
        ok(g->n_params == 2 && strcmp(value_name(g, g->params[0].value), "W") == 0 &&
               strcmp(value_name(g, g->params[1].value), "b") == 0 && g->params[1].offset == 12,
           "fusion: parameters W (offset 0) then b (offset 12)");
        cs_graph_free(g);
    }
    st = fusion_model(0, 0, 1, &g, &err);
    if (ok(st == CS_OK, "fusion: Add(b, h) model loads")) {
        ok(g->n_layers == 1 && g->layers[0].bias_node == 1 && g->n_params == 2 &&
               strcmp(value_name(g, g->params[1].value), "b") == 0,
           "fusion: the bias may be the Add's first input");
        cs_graph_free(g);
    }
    st = fusion_model(1, 0, 0, &g, &err);
    if (ok(st == CS_OK, "fusion: MatMul with two consumers loads (%s)", err.msg)) {
        int h = cs_graph_find_value(g, "h"), b = cs_graph_find_value(g, "b");
        ok(h >= 0 && g->values[h].n_consumers == 2, "fusion: 'h' has two consumers");
        ok(g->n_layers == 2 && g->layers[0].bias_node == -1 && g->layers[0].n_params == 1 &&
               g->nodes[1].layer == 1,
           "fusion: no fusion when the MatMul output has two consumers");
        ok(b >= 0 && g->values[b].param_index == 1 && g->n_params == 2 && g->n_param_scalars == 15 &&
               strcmp(g->layers[1].kind->name, "shift") == 0,
           "fusion: the unfused bias is a layer of its own (an elementwise shift)");
        cs_graph_free(g);
    }
    st = fusion_model(0, 1, 0, &g, &err);
    if (ok(st == CS_OK, "fusion: MatMul output that is also a graph output loads")) {
        ok(g->n_layers == 2 && g->layers[0].bias_node == -1 && g->layers[0].n_params == 1 &&
               strcmp(g->layers[1].kind->name, "shift") == 0,
           "fusion: no fusion when the MatMul output is a graph output (the bias is a shift layer)");
        cs_graph_free(g);
    }
}

static void test_symbolic_shapes(void)
{
    model_builder b;
    mb_init(&b, 8, 17);
    mb_input(&b, "x", CS_DT_FLOAT, 3, DIMS(-1, 3, 5));
    mb_input(&b, "fixed", CS_DT_FLOAT, 2, DIMS(2, 2));
    mb_input(&b, "two_sym", CS_DT_FLOAT, 3, DIMS(-1, 4, -1));
    mb_node(&b, "Relu", "r1", NAMES("x"), NAMES("y"));
    mb_node(&b, "Relu", "r2", NAMES("fixed"), NAMES("z"));
    mb_node(&b, "Relu", "r3", NAMES("two_sym"), NAMES("w"));
    mb_output(&b, "y");
    mb_output(&b, "z");
    mb_output(&b, "w");
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    mb_free(&b);
    if (!ok(st == CS_OK && g->n_inputs == 3, "symbolic shapes: model loads (%s)", err.msg))
        return;
    cs_tensor t;
    st = cs_graph_input_shape(g, 0, 7, &t, &err);
    ok(st == CS_OK && t.ndim == 3 && t.dims[0] == 7 && t.dims[1] == 3 && t.dims[2] == 5 &&
           t.dtype == CS_DT_FLOAT && t.data == NULL,
       "symbolic batch resolves: [N, 3, 5] with batch 7 is [7, 3, 5]");
    ok(g->values[g->inputs[0]].decl.dims[0] == -1, "resolving does not change the declared shape");
    st = cs_graph_input_shape(g, 1, 7, &t, &err);
    ok(st == CS_OK && t.ndim == 2 && t.dims[0] == 2 && t.dims[1] == 2,
       "a fully fixed input shape is unchanged");
    err.msg[0] = '\0';
    st = cs_graph_input_shape(g, 2, 7, &t, &err);
    ok(st != CS_OK && strstr(err.msg, "two_sym") && strstr(err.msg, "symbolic"),
       "two symbolic dimensions are an error naming the input (%s: %s)", cs_status_name(st),
       err.msg);
    cs_graph_free(g);
}

/* A Constant's float16 value is widened like an initializer, so a float
 * model with half constants (mixed-precision exports) runs in float32. */
static void test_half_constant(void)
{
    model_builder b;
    mb_init(&b, 8, 17);
    mb_input(&b, "x", CS_DT_FLOAT, 2, DIMS(-1, 3));
    Onnx__NodeProto *n = mb_node(&b, "Constant", "const", NULL, NAMES("c"));
    static const uint16_t hv[3] = {0x3C00, 0x4000, 0x0001}; /* 1, 2, 2^-24 */
    Onnx__TensorProto *t = mb_tensor(&b, "", CS_DT_FLOAT16, 1, DIMS(3));
    mb_set_raw(&b, t, sizeof hv, hv);
    mb_attr_tensor(&b, n, "value", t);
    mb_node(&b, "Add", "add", NAMES("x", "c"), NAMES("y"));
    mb_output(&b, "y");
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    mb_free(&b);
    if (!ok(st == CS_OK, "half constant: model loads (%s)", err.msg))
        return;
    const cs_attr *ta = cs_node_attr(&g->nodes[0], "value");
    ok(ta && shape_is(&ta->t, CS_DT_FLOAT, 1, DIMS(3)) && ((const float *)ta->t.data)[2] == ldexpf(1.0f, -24),
       "half constant: the value attribute is float32 [1, 2, 2^-24]");
    cs_plan p;
    if (ok(cs_plan_prepare_batch(&p, g, 1, &err) == CS_OK, "half constant: prepare (%s)", err.msg)) {
        float *x = cs_plan_input(&p, 0)->data;
        x[0] = 0.5f, x[1] = -2.0f, x[2] = 0.0f;
        const float *y = cs_plan_output(&p, 0)->data;
        ok(cs_plan_forward(&p, &err) == CS_OK && y[0] == 1.5f && y[1] == 0.0f && y[2] == ldexpf(1.0f, -24),
           "half constant: x + c runs in float32 (%s)", err.msg);
        cs_plan_free(&p);
    }
    cs_graph_free(g);
}

static void test_attributes(void)
{
    model_builder b;
    mb_init(&b, 8, 17);
    mb_input(&b, "x", CS_DT_FLOAT, 2, DIMS(-1, 3));
    Onnx__NodeProto *n = mb_node(&b, "Constant", "const", NULL, NAMES("c"));
    static const float cv[3] = {1, 2, 3};
    Onnx__TensorProto *t = mb_tensor(&b, "", CS_DT_FLOAT, 1, DIMS(3));
    mb_set_float_data(&b, t, 3, cv);
    mb_attr_tensor(&b, n, "value", t);
    n = mb_node(&b, "Add", "add", NAMES("x", "c"), NAMES("y"));
    mb_attr_int(&b, n, "some_int", -12);
    Onnx__AttributeProto *a = mb_attr(&b, n, "some_ints", CS_ATTR_INTS);
    static const int64_t iv[] = {4, 5, 6};
    a->n_ints = 3;
    a->ints = mb_dup(&b, iv, sizeof iv);
    a = mb_attr(&b, n, "some_float", CS_ATTR_FLOAT);
    a->has_f = 1;
    a->f = 0.75f;
    a = mb_attr(&b, n, "some_string", CS_ATTR_STRING);
    a->has_s = 1;
    a->s.len = 3;
    a->s.data = mb_dup(&b, "abc", 3);
    a = mb_attr(&b, n, "untyped_floats", 0); /* IR 1 style: type inferred */
    a->has_type = 0;
    static const float fv[] = {0.5f, 1.5f};
    a->n_floats = 2;
    a->floats = mb_dup(&b, fv, sizeof fv);
    mb_output(&b, "y");
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    mb_free(&b);
    if (!ok(st == CS_OK && g->n_nodes == 2, "attributes: model loads (%s)", err.msg))
        return;
    const cs_attr *ta = cs_node_attr(&g->nodes[0], "value");
    ok(ta && ta->type == CS_ATTR_TENSOR && shape_is(&ta->t, CS_DT_FLOAT, 1, DIMS(3)) &&
           memcmp(ta->t.data, cv, sizeof cv) == 0,
       "a tensor attribute decodes to its tensor");
    const cs_node *an = &g->nodes[1];
    int count = 0;
    const int64_t *ints = cs_node_attr_ints(an, "some_ints", &count);
    ok(cs_node_attr_int(an, "some_int", 0) == -12, "an int attribute reads back");
    ok(ints && count == 3 && ints[0] == 4 && ints[2] == 6, "an ints attribute reads back");
    ok(cs_node_attr_float(an, "some_float", 0) == 0.75f, "a float attribute reads back");
    ok(strcmp(cs_node_attr_string(an, "some_string", ""), "abc") == 0,
       "a string attribute reads back NUL-terminated");
    const float *floats = cs_node_attr_floats(an, "untyped_floats", &count);
    ok(floats && count == 2 && floats[1] == 1.5f,
       "an untyped floats attribute is inferred as floats");
    ok(cs_node_attr(an, "absent") == NULL && cs_node_attr_int(an, "absent", 99) == 99,
       "an absent attribute gives the default");
    cs_graph_free(g);
}

static void test_load_file_errors(void)
{
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = cs_model_load_file("/nonexistent/curvscope/model.onnx", &g, &err);
    ok(st == CS_ERR_IO && g == NULL && strstr(err.msg, "/nonexistent/curvscope/model.onnx"),
       "a missing model file is an I/O error naming the path (%s)", err.msg);
    char path[4096];
    test_src_path(path, sizeof path, "tests/models");
    st = cs_model_load_file(path, &g, &err);
    ok(st != CS_OK && g == NULL && err.msg[0], "a folder is not a model (%s: %s)",
       cs_status_name(st), err.msg);
}

int main(void)
{
    test_mlp();
    test_cnn();
    test_attn();
    test_storage_fields();
    test_external_data();
    test_input_initializer_overlap();
    test_node_names();
    test_foreign_domain();
    test_fusion();
    test_symbolic_shapes();
    test_attributes();
    test_half_constant();
    test_load_file_errors();
    return tap_done();
}
