/* The rule for elementwise parameters (interp/param_rule.h states it) and
 * the user's override of it. */
#include "interp/param_rule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "interp/layer_kind.h"

/* Whether value w depends on a graph input: one forward sweep over the
 * nodes before its producer (the graph is in topological order). */
static bool reads_input(const cs_graph *g, int w)
{
    const cs_value *val = &g->values[w];
    if (val->kind == CS_VALUE_INPUT)
        return true;
    if (val->kind != CS_VALUE_INTERMEDIATE || val->producer < 0)
        return false;
    bool *dep = calloc((size_t)g->n_values + 1, sizeof *dep);
    if (!dep)
        return true; /* no memory to tell: let the value rule decide */
    for (int i = 0; i < g->n_values; i++)
        dep[i] = g->values[i].kind == CS_VALUE_INPUT;
    for (int k = 0; k <= val->producer; k++) {
        const cs_node *n = &g->nodes[k];
        bool any = false;
        for (int i = 0; i < n->n_inputs; i++)
            any = any || (n->inputs[i] >= 0 && dep[n->inputs[i]]);
        for (int j = 0; any && j < n->n_outputs; j++)
            if (n->outputs[j] >= 0)
                dep[n->outputs[j]] = true;
    }
    bool out = dep[w];
    free(dep);
    return out;
}

/* Whether t's shape broadcasts into o's without widening it (each of t's
 * trailing axes 1 or o's extent); o's unknown extents (-1) accept any. */
static bool fits_inside(const cs_tensor *t, const cs_tensor *o)
{
    if (o->ndim < 0)
        return true;
    if (t->ndim > o->ndim)
        return false;
    for (int a = 0; a < t->ndim; a++) {
        int64_t od = o->dims[o->ndim - t->ndim + a];
        if (t->dims[a] != 1 && od >= 0 && t->dims[a] != od)
            return false;
    }
    return true;
}

static double element(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

bool cs_param_rule_ok(const cs_graph *g, int k, int v, const char **why)
{
    const char *no = NULL;
    const cs_value *val = &g->values[v];
    const cs_tensor *t = &val->init;
    const cs_node *n = &g->nodes[k];
    int64_t numel = cs_tensor_numel(t);
    if (val->train_choice > 0)
        no = NULL;
    else if (val->train_choice < 0)
        no = "frozen by --freeze-params";
    else if (val->kind != CS_VALUE_INITIALIZER || !cs_dtype_is_float(t->dtype))
        no = "not a floating initializer";
    else if (numel <= 1)
        no = "a scalar constant";
    else if (cs_tensor_first_nonfinite(t) >= 0)
        no = "holds a non-finite value (a mask)";
    if (!no && val->train_choice == 0 && strcmp(n->op_type, "Expand") != 0) {
        int other = n->n_inputs == 2 ? n->inputs[n->inputs[0] == v ? 1 : 0] : -1;
        if (other < 0 || other == v || !reads_input(g, other))
            no = "the other operand does not depend on a graph input";
        else if (!fits_inside(t, &g->values[other].decl))
            no = "widens the other operand by broadcasting";
    }
    if (!no && val->train_choice == 0) {
        bool all_equal = true, has0 = false, has1 = false, other = false, huge = false;
        for (int64_t i = 0; i < numel; i++) {
            double x = element(t, i);
            all_equal = all_equal && x == element(t, 0);
            has0 = has0 || x == 0;
            has1 = has1 || x == 1;
            other = other || (x != 0 && x != 1);
            huge = huge || fabs(x) >= 1e4;
        }
        /* A PyTorch name (no '/', no ':') may hold untrained values (a
         * LayerNorm weight of ones); any other name must look trained. */
        bool torch_name = !strchr(val->name, '/') && !strchr(val->name, ':');
        no = huge                    ? "holds a value of magnitude 1e4 or more (an additive mask)"
             : has0 && has1 && !other ? "holds only 0 and 1 (a mask)"
             : all_equal && !torch_name ? "all its values are equal and its name is not a PyTorch parameter's"
                                        : NULL;
    }
    if (why)
        *why = no ? no : "";
    return !no;
}

/* Sets train_choice = mark for every name of the comma-separated list. */
static cs_status mark_names(cs_graph *g, const char *list, signed char mark, const char *opt, cs_err *err)
{
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[512];
        if (len == 0 || len >= sizeof name)
            return cs_fail(err, CS_ERR_USAGE, "--%s: an empty or overlong name in '%s'", opt, list);
        memcpy(name, p, len);
        name[len] = '\0';
        int v = cs_graph_find_value(g, name);
        if (v < 0 || g->values[v].kind != CS_VALUE_INITIALIZER)
            return cs_fail(err, CS_ERR_USAGE, "--%s: the model has no initializer '%s'", opt, name);
        if (g->values[v].train_choice && g->values[v].train_choice != mark)
            return cs_fail(err, CS_ERR_USAGE, "initializer '%s' is both in --freeze-params and --train-params",
                           name);
        g->values[v].train_choice = mark;
        /* an initializer folded into parts at bind (interp/param_views.h):
         * the parts are what layers read */
        for (int u = 0; g->values[v].has_views && u < g->n_values; u++)
            if (g->values[u].view_source == v)
                g->values[u].train_choice = mark;
        p = end ? end + 1 : p + len;
    }
    return CS_OK;
}

cs_status cs_params_choose(cs_graph *g, const char *freeze, const char *train, cs_err *err)
{
    /* the choices before this call, restored after a mistake */
    signed char *before = malloc((size_t)g->n_values + 1);
    if (!before)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory choosing parameters");
    for (int v = 0; v < g->n_values; v++)
        before[v] = g->values[v].train_choice;
    cs_status st = mark_names(g, freeze, -1, "freeze-params", err);
    if (!st)
        st = mark_names(g, train, +1, "train-params", err);
    if (!st)
        st = cs_layers_find(g, err);
    for (int v = 0; !st && v < g->n_values; v++)
        if (g->values[v].train_choice > 0 && g->values[v].param_index < 0 && !g->values[v].has_views)
            st = cs_fail(err, CS_ERR_USAGE,
                         "--train-params: initializer '%s' is read by no node that a layer kind can train "
                         "(Gemm, Conv, MatMul, a normalisation, Add, Sub, Mul, Expand, ...)",
                         g->values[v].name);
    if (st) {
        for (int v = 0; v < g->n_values; v++)
            g->values[v].train_choice = before[v];
        cs_err again = {0};
        if (cs_layers_find(g, &again)) /* out of memory now: that is the error to report */
            *err = again;
    }
    free(before);
    return st;
}
