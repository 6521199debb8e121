/* The parameter rule (interp/param_rule.h) on tests/models/tiny_eparams64
 * (tools/make_eparams_model.py): the elementwise parameters of a PyTorch
 * module become layers of the right kinds, the export's constants (a
 * one-element eps, a 0/1 mask, a -1e9 causal mask, a folded all-equal
 * constant, Constant nodes' shapes) stay constants, and --freeze-params /
 * --train-params (cs_params_choose) override the rule both ways. */
#include <string.h>

#include "../tap.h"
#include "../test_model.h"
#include "interp/layer_kind.h"
#include "interp/param_rule.h"

static int value_named(const cs_graph *g, const char *name)
{
    return cs_graph_find_value(g, name);
}

/* The kind name of the layer owning initializer name, or "" (constant). */
static const char *owner_kind(const cs_graph *g, const char *name)
{
    int v = value_named(g, name);
    if (v < 0 || g->values[v].param_index < 0)
        return "";
    return g->layers[g->params[g->values[v].param_index].layer].kind->name;
}

/* The first initializer whose name starts with prefix, or -1. */
static int first_named(const cs_graph *g, const char *prefix)
{
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].kind == CS_VALUE_INITIALIZER && strncmp(g->values[v].name, prefix, strlen(prefix)) == 0)
            return v;
    return -1;
}

int main(void)
{
    cs_graph *g = test_load_model("tiny_eparams64");
    if (!g)
        return tap_done();
    static const struct {
        const char *name, *kind;
    } want[] = {
        {"pos", "shift"}, {"cls", "expand"}, {"ln_w", "scale"}, {"ln_b", "shift"}, {"shift", "shift_sub"},
        {"head.weight", "gemm"}, {"head.bias", "gemm"},
        /* constants */
        {"eps", ""}, {"keep", ""}, {"causal", ""},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *got = owner_kind(g, want[i].name);
        ok(value_named(g, want[i].name) >= 0 && strcmp(got, want[i].kind) == 0, "initializer %s: %s (got %s)",
           want[i].name, want[i].kind[0] ? want[i].kind : "a constant", got[0] ? got : "a constant");
    }
    /* the folded 0.5 * twos: an all-equal constant under the exporter's name */
    int folded = first_named(g, "onnx::");
    ok(folded >= 0 && g->values[folded].param_index < 0, "the folded all-equal constant %s stays constant",
       folded >= 0 ? g->values[folded].name : "(none)");
    /* the values of Constant nodes (the Reshape's int64 shape, literals)
     * are never parameters: only initializers are candidates */
    int n_const = 0, const_params = 0;
    for (int v = 0; v < g->n_values; v++) {
        int k = g->values[v].producer;
        if (k >= 0 && strcmp(g->nodes[k].op_type, "Constant") == 0) {
            n_const++;
            const_params += g->values[v].param_index >= 0;
        }
    }
    ok(n_const > 0 && const_params == 0, "none of the %d Constant values is a parameter", n_const);
    ok(g->n_layers == 6 && g->n_param_scalars == 24 + 6 + 6 + 6 + 6 + 21, "6 layers, 69 scalars (got %d, %lld)",
       g->n_layers, (long long)g->n_param_scalars);

    /* the refusing clause is named */
    const char *why = NULL;
    int keep = value_named(g, "keep"), causal = value_named(g, "causal");
    int mul_node = -1, add_node = -1;
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_inputs; i++) {
            if (g->nodes[k].inputs[i] == keep)
                mul_node = k;
            if (g->nodes[k].inputs[i] == causal)
                add_node = k;
        }
    bool refused = mul_node >= 0 && !cs_param_rule_ok(g, mul_node, keep, &why);
    ok(refused && strstr(why, "0 and 1"), "keep is refused as a 0/1 mask (%s)", refused ? why : "");
    refused = add_node >= 0 && !cs_param_rule_ok(g, add_node, causal, &why);
    ok(refused && strstr(why, "1e4"), "causal is refused as an additive mask (%s)", refused ? why : "");

    /* override: freeze ln_w, train keep */
    cs_err err = {0};
    ok(cs_params_choose(g, "ln_w", "keep", &err) == CS_OK, "freeze ln_w, train keep (%s)", err.msg);
    ok(strcmp(owner_kind(g, "ln_w"), "") == 0 && strcmp(owner_kind(g, "keep"), "scale") == 0 &&
           g->n_param_scalars == 69 - 6 + 30,
       "ln_w is a constant, keep a scale layer: %lld scalars", (long long)g->n_param_scalars);
    /* mistakes are errors and leave the rule's choice */
    cs_graph_free(g);
    g = test_load_model("tiny_eparams64");
    if (!g)
        return tap_done();
    err = (cs_err){0};
    ok(cs_params_choose(g, NULL, "no_such", &err) == CS_ERR_USAGE && strstr(err.msg, "no_such"),
       "an unknown name is a usage error (%s)", err.msg);
    err = (cs_err){0};
    ok(cs_params_choose(g, "pos", "pos", &err) == CS_ERR_USAGE, "a name in both lists is an error (%s)", err.msg);
    err = (cs_err){0};
    ok(cs_params_choose(g, NULL, "causal", &err) == CS_OK && strcmp(owner_kind(g, "causal"), "shift") == 0,
       "--train-params trains even a mask the rule refuses (%s)", err.msg);
    err = (cs_err){0};
    ok(cs_params_choose(g, NULL, "onnx::Mul_none", &err) == CS_ERR_USAGE, "a second unknown name (%s)", err.msg);
    ok(g->n_layers == 7 && g->n_param_scalars == 69 + 25 && strcmp(owner_kind(g, "pos"), "shift") == 0,
       "after the errors the last good choice stands (%d layers, %lld scalars)", g->n_layers,
       (long long)g->n_param_scalars);
    cs_graph_free(g);
    return tap_done();
}
