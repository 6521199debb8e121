#include "graph/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


const cs_attr *cs_node_attr(const cs_node *n, const char *name)
{
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    return NULL;
}

int64_t cs_node_attr_int(const cs_node *n, const char *name, int64_t dflt)
{
    const cs_attr *a = cs_node_attr(n, name);
    return a && a->type == CS_ATTR_INT ? a->i : dflt;
}

float cs_node_attr_float(const cs_node *n, const char *name, float dflt)
{
    const cs_attr *a = cs_node_attr(n, name);
    if (a && a->type == CS_ATTR_FLOAT)
        return a->f;
    if (a && a->type == CS_ATTR_INT) /* some exporters write integral floats as ints */
        return (float)a->i;
    return dflt;
}

const char *cs_node_attr_string(const cs_node *n, const char *name, const char *dflt)
{
    const cs_attr *a = cs_node_attr(n, name);
    return a && a->type == CS_ATTR_STRING && a->s ? a->s : dflt;
}

const int64_t *cs_node_attr_ints(const cs_node *n, const char *name, int *count)
{
    const cs_attr *a = cs_node_attr(n, name);
    if (a && a->type == CS_ATTR_INTS) {
        *count = a->n;
        return a->ints;
    }
    *count = 0;
    return NULL;
}

const float *cs_node_attr_floats(const cs_node *n, const char *name, int *count)
{
    const cs_attr *a = cs_node_attr(n, name);
    if (a && a->type == CS_ATTR_FLOATS) {
        *count = a->n;
        return a->floats;
    }
    *count = 0;
    return NULL;
}

int cs_graph_find_value(const cs_graph *g, const char *name)
{
    for (int i = 0; i < g->n_values; i++)
        if (strcmp(g->values[i].name, name) == 0)
            return i;
    return -1;
}

/* Check the node order is topological: every input of a node is an input,
 * an initializer, or produced by an earlier node.  ONNX requires files to
 * be sorted; a file that is not (or has a cycle) is rejected rather than
 * reordered, because a cycle is a malformed graph. */
static cs_status check_topological(cs_graph *g, cs_err *err)
{
    for (int v = 0; v < g->n_values; v++)
        g->values[v].n_consumers = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        const cs_node *n = &g->nodes[k];
        for (int i = 0; i < n->n_inputs; i++) {
            int v = n->inputs[i];
            if (v < 0)
                continue;
            g->values[v].n_consumers++;
            int p = g->values[v].producer;
            if (g->values[v].kind == CS_VALUE_INTERMEDIATE && p < 0)
                return cs_fail(err, CS_ERR_FORMAT,
                               "node '%s' (%s) reads '%s', which no node, input or initializer provides",
                               n->name, n->op_type, g->values[v].name);
            if (p >= k)
                return cs_fail(err, CS_ERR_FORMAT,
                               "node '%s' (%s) reads '%s' before node '%s' produces it "
                               "(nodes are not in topological order, or the graph has a cycle)",
                               n->name, n->op_type, g->values[v].name, g->nodes[p].name);
        }
    }
    for (int k = 0; k < g->n_outputs; k++) {
        const cs_value *v = &g->values[g->outputs[k]];
        if (v->kind == CS_VALUE_INTERMEDIATE && v->producer < 0)
            return cs_fail(err, CS_ERR_FORMAT, "graph output '%s' is not produced by any node",
                           v->name);
    }
    return CS_OK;
}

cs_status cs_graph_finalize(cs_graph *g, cs_err *err)
{
    cs_status st = check_topological(g, err);
    if (st)
        return st;
    for (int k = 0; k < g->n_nodes; k++) {
        g->nodes[k].op = NULL;
        g->nodes[k].layer = -1;
    }
    g->n_layers = g->n_params = 0;
    g->n_param_scalars = 0;
    for (int v = 0; v < g->n_values; v++)
        g->values[v].param_index = -1;
    return CS_OK;
}

cs_status cs_graph_assemble_initializer(const cs_graph *g, int v, cs_tensor *out, cs_err *err)
{
    const cs_value *src = &g->values[v];
    cs_status st = cs_tensor_copy(out, &src->init, err);
    if (st || !src->has_views)
        return st;
    size_t es = cs_dtype_size(src->init.dtype);
    for (int u = 0; u < g->n_values; u++) {
        const cs_value *w = &g->values[u];
        if (w->view_source != v || w->init.dtype != src->init.dtype)
            continue;
        const int64_t *idx = w->view_index.data;
        int64_t n = cs_tensor_numel(&w->init);
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)out->data + (size_t)idx[i] * es, (const char *)w->init.data + (size_t)i * es, es);
    }
    return CS_OK;
}

int cs_graph_unsupported(const cs_graph *g, char *buf, size_t size)
{
    int count = 0;
    size_t off = 0;
    if (size)
        buf[0] = '\0';
    for (int k = 0; k < g->n_nodes; k++) {
        const cs_node *n = &g->nodes[k];
        if (n->op)
            continue;
        count++;
        if (off < size) {
            int w = snprintf(buf + off, size - off, "%s%s%s%s (node '%s', opset %d)",
                             off ? ", " : "", n->domain[0] ? n->domain : "",
                             n->domain[0] ? "." : "", n->op_type, n->name, n->opset);
            off += w > 0 ? (size_t)w : 0;
        }
    }
    return count;
}

void cs_graph_free(cs_graph *g)
{
    if (!g)
        return;
    for (int v = 0; v < g->n_values; v++) {
        cs_tensor_free(&g->values[v].init);
        cs_tensor_free(&g->values[v].view_index);
    }
    for (int k = 0; k < g->n_nodes; k++)
        for (int a = 0; a < g->nodes[k].n_attrs; a++)
            cs_tensor_free(&g->nodes[k].attrs[a].t);
    free(g->values);
    cs_arena_free(&g->arena);
    free(g);
}
