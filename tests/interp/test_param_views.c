/* Folding the view chains of initializers at bind (interp/param_views.h)
 * on tests/models/tiny_views64 and views_not_folded
 * (tools/make_test_graphs.py):
 *   - the parts of in_proj.weight (Split, then Transpose), in_proj.bias
 *     (Slice) and proj.w (Reshape) become the layers' parameters, holding
 *     the source's elements where the chain puts them;
 *   - the folded graph computes what the unfolded one does;
 *   - parts changed in place are scattered back into the source
 *     (cs_graph_assemble_initializer) and written to a model file that,
 *     reloaded, holds the changed parts;
 *   - --freeze-params / --train-params name the source and act on its parts;
 *   - overlapping parts, and a source also read directly, are not folded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tap.h"
#include "../test_model.h"
#include "interp/op.h"
#include "interp/param_rule.h"
#include "interp/plan.h"
#include "onnx/writer.h"

static const double *f64(const cs_graph *g, const char *name)
{
    int v = cs_graph_find_value(g, name);
    return v >= 0 ? g->values[v].init.data : NULL;
}

static int node_named(const cs_graph *g, const char *name)
{
    for (int k = 0; k < g->n_nodes; k++)
        if (strcmp(g->nodes[k].name, name) == 0)
            return k;
    return -1;
}

/* The model loaded and its operators resolved, without the fold. */
static cs_graph *load_unfolded(const char *name)
{
    char rel[160], path[512];
    snprintf(rel, sizeof rel, "tests/models/%s.onnx", name);
    cs_err err = {0};
    cs_graph *g = NULL;
    if (!ok(cs_onnx_load_file(test_src_path(path, sizeof path, rel), &g, &err) == CS_OK,
            "%s: load without binding (%s)", name, err.msg))
        return NULL;
    for (int k = 0; k < g->n_nodes; k++)
        g->nodes[k].op = cs_op_find(g->nodes[k].op_type, g->nodes[k].domain);
    return g;
}

/* The output of g on 3 fixed samples, into out (12 values at most). */
static int forward3(const cs_graph *g, double *out, int *n_out)
{
    cs_plan p;
    cs_err err = {0};
    if (cs_plan_prepare_batch(&p, g, 3, &err))
        return -1;
    cs_tensor *x = cs_plan_input(&p, 0);
    double *d = x->data;
    for (int64_t i = 0; i < cs_tensor_numel(x); i++)
        d[i] = sin(0.7 * (double)i + 0.3);
    int rc = cs_plan_forward(&p, &err) ? -1 : 0;
    const cs_tensor *y = cs_plan_output(&p, 0);
    *n_out = (int)cs_tensor_numel(y);
    if (!rc && *n_out <= 12)
        memcpy(out, y->data, sizeof(double) * (size_t)*n_out);
    cs_plan_free(&p);
    return rc || *n_out > 12 ? -1 : 0;
}

static void check_folded(void)
{
    cs_graph *g = test_load_model("tiny_views64");
    cs_graph *raw = load_unfolded("tiny_views64");
    if (!g || !raw) {
        cs_graph_free(g), cs_graph_free(raw);
        return;
    }
    static const char *const parts[][2] = {
        {"w_qt", "in_proj.weight"}, {"w_kvt", "in_proj.weight"}, {"b_q", "in_proj.bias"},
        {"b_kv", "in_proj.bias"},   {"w_p", "proj.w"},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        int v = cs_graph_find_value(g, parts[i][0]), s = cs_graph_find_value(g, parts[i][1]);
        ok(v >= 0 && s >= 0 && g->values[v].kind == CS_VALUE_INITIALIZER && g->values[v].view_source == s &&
               g->values[s].has_views && g->values[v].param_index >= 0,
           "%s is a parameter, part of %s", parts[i][0], parts[i][1]);
    }
    ok(g->n_layers == 4 && g->n_param_scalars == 65, "4 layers, 65 parameters (got %d, %lld)", g->n_layers,
       (long long)g->n_param_scalars);
    ok(node_named(g, "split") < 0 && node_named(g, "t_q") < 0 && node_named(g, "reshape_p") < 0 &&
           node_named(g, "slice_bkv") < 0 && g->n_nodes == raw->n_nodes - 6,
       "the six view nodes are removed (%d nodes, %d before)", g->n_nodes, raw->n_nodes);

    /* the elements where the chain puts them: w_qt = W[0:2]^T, w_kvt =
     * W[2:6]^T, b_kv = b[2:6], w_p = reshape(p, [4, 2]) */
    const double *W = f64(g, "in_proj.weight"), *b = f64(g, "in_proj.bias"), *P = f64(g, "proj.w");
    const double *wq = f64(g, "w_qt"), *wkv = f64(g, "w_kvt"), *bkv = f64(g, "b_kv"), *wp = f64(g, "w_p");
    int bad = 0;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 2; c++)
            bad += wq[r * 2 + c] != W[c * 4 + r] || wp[r * 2 + c] != P[r * 2 + c];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            bad += wkv[r * 4 + c] != W[(2 + c) * 4 + r];
    for (int i = 0; i < 4; i++)
        bad += bkv[i] != b[2 + i];
    ok(bad == 0, "the parts hold the source's elements as Split/Transpose/Slice/Reshape place them (%d wrong)",
       bad);

    double y1[12], y0[12];
    int n1 = 0, n0 = 0;
    int rc1 = forward3(g, y1, &n1), rc0 = forward3(raw, y0, &n0);
    double worst = 0;
    for (int i = 0; !rc1 && !rc0 && i < n1 && n1 == n0; i++)
        worst = fmax(worst, fabs(y1[i] - y0[i]));
    ok(rc1 == 0 && rc0 == 0 && n1 == 9 && n0 == 9 && worst == 0,
       "the folded graph computes the unfolded one's output exactly (max diff %.3g)", worst);

    /* parts changed (as finetune changes them) go back into the source */
    int vq = cs_graph_find_value(g, "w_qt"), vkv = cs_graph_find_value(g, "w_kvt");
    double *mq = g->values[vq].init.data, *mkv = g->values[vkv].init.data;
    for (int i = 0; i < 8; i++)
        mq[i] = 100.0 + i;
    for (int i = 0; i < 16; i++)
        mkv[i] = 200.0 + i;
    cs_tensor whole = {0};
    cs_err err = {0};
    int s = cs_graph_find_value(g, "in_proj.weight");
    bad = cs_graph_assemble_initializer(g, s, &whole, &err) != CS_OK;
    const double *A = whole.data;
    for (int r = 0; !bad && r < 6; r++)
        for (int c = 0; c < 4; c++)
            bad += A[r * 4 + c] != (r < 2 ? 100.0 + c * 2 + r : 200.0 + c * 4 + (r - 2));
    ok(bad == 0 && whole.ndim == 2 && whole.dims[0] == 6 && whole.dims[1] == 4,
       "assemble: the changed parts are scattered back to their places in in_proj.weight [6, 4]");
    cs_tensor_free(&whole);

    char src[512], dst[] = "/tmp/test_param_views_XXXXXX";
    int fd = mkstemp(dst);
    if (fd >= 0)
        close(fd);
    test_src_path(src, sizeof src, "tests/models/tiny_views64.onnx");
    cs_graph *back = NULL;
    int wrote = fd >= 0 && cs_onnx_write_updated(src, g, dst, &err) == CS_OK &&
                cs_model_load_file(dst, &back, &err) == CS_OK;
    bad = !wrote;
    if (wrote) {
        const double *bq = f64(back, "w_qt"), *bk = f64(back, "w_kvt");
        for (int i = 0; bq && bk && i < 8; i++)
            bad += bq[i] != 100.0 + i;
        for (int i = 0; bq && bk && i < 16; i++)
            bad += bk[i] != 200.0 + i;
        bad += !bq || !bk || memcmp(f64(back, "w_p"), wp, sizeof(double) * 8) != 0;
    }
    ok(bad == 0, "the written model, reloaded and folded again, holds the changed parts (%s)", err.msg);
    cs_graph_free(back);
    unlink(dst);

    /* --freeze-params / --train-params take the source's name */
    cs_err e2 = {0};
    int rc = cs_params_choose(g, "in_proj.weight", NULL, &e2);
    int pq = g->values[vq].param_index, pkv = g->values[vkv].param_index,
        pb = g->values[cs_graph_find_value(g, "b_q")].param_index;
    ok(rc == CS_OK && pq < 0 && pkv < 0 && pb >= 0 && g->n_param_scalars == 65 - 24,
       "--freeze-params in_proj.weight freezes both its parts, not in_proj.bias's (%s)", e2.msg);
    for (int u = 0; u < g->n_values; u++)
        g->values[u].train_choice = 0;
    rc = cs_params_choose(g, NULL, "in_proj.weight", &e2);
    ok(rc == CS_OK && g->values[vq].param_index >= 0 && g->n_param_scalars == 65,
       "--train-params in_proj.weight is accepted: its parts are the parameters (%s)", e2.msg);
    cs_graph_free(g);
    cs_graph_free(raw);
}

static void check_not_folded(void)
{
    cs_graph *g = test_load_model("views_not_folded");
    if (!g)
        return;
    int w = cs_graph_find_value(g, "w"), v = cs_graph_find_value(g, "v");
    ok(w >= 0 && !g->values[w].has_views && node_named(g, "slice_a") >= 0 && node_named(g, "slice_b") >= 0 &&
           g->values[w].param_index < 0,
       "overlapping parts (rows 0:4 and 2:6 of w) are not folded, w is not a parameter");
    ok(v >= 0 && !g->values[v].has_views && node_named(g, "t_v") >= 0 && g->values[v].param_index >= 0,
       "v, read directly and through a Transpose, is not folded; the direct MatMul owns it");
    int vt = cs_graph_find_value(g, "vt");
    ok(vt >= 0 && g->values[vt].kind != CS_VALUE_INITIALIZER, "the Transpose of v is still computed");
    cs_graph_free(g);
}

int main(void)
{
    check_folded();
    check_not_folded();
    return tap_done();
}
