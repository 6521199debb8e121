/* Folding the view chains of initializers (interp/param_views.h). */
#include "interp/param_views.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "interp/op.h"
#include "interp/plan.h"

/* Operators that only move or select elements of their first input, the
 * others being shapes, axes or sizes. */
static bool is_view_op(const char *op_type)
{
    static const char *const views[] = {"Transpose", "Slice",     "Split",    "Reshape",
                                        "Squeeze",   "Unsqueeze", "Identity", "Flatten"};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        if (strcmp(op_type, views[i]) == 0)
            return true;
    return false;
}

/* What the inputs other than the data input read: initializers, and the
 * values a plan knows at prepare time (Constant outputs and what exports
 * compute from them and from static shapes, as torch's Split boundaries
 * from Shape), the same for two batch sizes so that the view does not
 * depend on the batch.  The plans are made only when some initializer
 * could be a source. */
typedef struct known_values {
    cs_plan p2, p3;
    bool have_plans;
} known_values;

/* Value v's data when it is known whatever the batch; NULL otherwise. */
static const cs_tensor *known_value(const cs_graph *g, const known_values *kv, int v)
{
    const cs_value *x = &g->values[v];
    if (x->kind == CS_VALUE_INITIALIZER && x->init.data)
        return &x->init;
    if (!kv->have_plans || !kv->p2.known[v] || !kv->p3.known[v])
        return NULL;
    const cs_tensor *a = &kv->p2.vals[v], *b = &kv->p3.vals[v];
    if (!a->data || !b->data || a->dtype != b->dtype || a->ndim != b->ndim ||
        memcmp(a->dims, b->dims, sizeof a->dims[0] * (size_t)a->ndim) != 0 ||
        memcmp(a->data, b->data, cs_tensor_bytes(a)) != 0)
        return NULL;
    return a;
}

/* Runs node nd on args (inputs then outputs) into freshly allocated
 * outputs; false when it cannot. */
static bool run_node(const cs_node *nd, cs_tensor **args)
{
    cs_err err = {0};
    cs_op_call call = {.node = nd, .n_in = nd->n_inputs, .in = args, .n_out = nd->n_outputs,
                       .out = args + nd->n_inputs};
    if (nd->op->infer(&call, &err))
        return false;
    for (int o = 0; o < nd->n_outputs; o++)
        if (call.out[o] && cs_tensor_alloc(call.out[o], &err))
            return false;
    call.scratch = malloc(call.scratch_bytes ? call.scratch_bytes : 1);
    bool ran = call.scratch && nd->op->forward(&call, &err) == CS_OK;
    free(call.scratch);
    return ran;
}

/* Node k moves the elements of value v (its data input); with kv, also
 * nothing else it reads is computed per batch. */
static bool is_view_node_of(const cs_graph *g, const known_values *kv, int k, int v)
{
    const cs_node *n = &g->nodes[k];
    if (n->domain[0] || !n->op || !is_view_op(n->op_type) || n->n_inputs < 1 || n->inputs[0] != v)
        return false;
    for (int i = 1; i < n->n_inputs; i++)
        if (n->inputs[i] == v || (kv && n->inputs[i] >= 0 && !known_value(g, kv, n->inputs[i])))
            return false;
    return true;
}

/* Who reads each value: CSR over the nodes' inputs. */
typedef struct consumers {
    int *start; /* [n_values + 1] */
    int *node;  /* [total inputs] */
} consumers;

static int consumers_make(const cs_graph *g, consumers *c)
{
    c->start = calloc((size_t)g->n_values + 2, sizeof *c->start);
    int total = 0;
    for (int k = 0; k < g->n_nodes; k++)
        total += g->nodes[k].n_inputs;
    c->node = malloc(sizeof *c->node * (size_t)(total + 1));
    if (!c->start || !c->node)
        return -1;
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_inputs; i++)
            if (g->nodes[k].inputs[i] >= 0)
                c->start[g->nodes[k].inputs[i] + 1]++;
    for (int v = 0; v < g->n_values; v++)
        c->start[v + 1] += c->start[v];
    int *fill = calloc((size_t)g->n_values + 1, sizeof *fill);
    if (!fill)
        return -1;
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_inputs; i++) {
            int v = g->nodes[k].inputs[i];
            if (v >= 0)
                c->node[c->start[v] + fill[v]++] = k;
        }
    free(fill);
    return 0;
}

static void consumers_free(consumers *c)
{
    free(c->start), free(c->node);
}

/* One source's chain: its nodes (graph order), the values that leave it,
 * and each value's element indices in the source. */
typedef struct chain {
    bool *in_chain;   /* [n_nodes] */
    int *nodes, n_nodes;
    int *terminals, n_terminals;
    int *stack;
    cs_tensor *idx;   /* [n_values]: int64 indices of the chain's values */
    const bool *dead; /* [n_nodes]: nodes of chains folded before */
} chain;

static void chain_clear(const cs_graph *g, int s, chain *ch)
{
    cs_tensor_free(&ch->idx[s]);
    for (int i = 0; i < ch->n_nodes; i++) {
        const cs_node *nd = &g->nodes[ch->nodes[i]];
        ch->in_chain[ch->nodes[i]] = false;
        for (int o = 0; o < nd->n_outputs; o++)
            if (nd->outputs[o] >= 0)
                cs_tensor_free(&ch->idx[nd->outputs[o]]);
    }
    ch->n_nodes = ch->n_terminals = 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The chain from source s; false when s is not eligible. */
static bool chain_find(const cs_graph *g, const known_values *kv, const consumers *c, int s, chain *ch)
{
    int top = 0;
    ch->stack[top++] = s;
    while (top > 0) {
        int x = ch->stack[--top];
        int first = c->start[x], end = c->start[x + 1];
        bool all_views = true;
        for (int j = first; j < end && all_views; j++)
            all_views = ch->dead[c->node[j]] || is_view_node_of(g, kv, c->node[j], x);
        if (g->values[x].is_output || !all_views) {
            if (x == s || g->values[x].is_output)
                return false; /* the source read as it is, or a view that is a graph output */
            ch->terminals[ch->n_terminals++] = x;
            continue;
        }
        for (int j = first; j < end; j++) {
            int k = c->node[j];
            if (ch->in_chain[k] || ch->dead[k])
                continue;
            ch->in_chain[k] = true;
            ch->nodes[ch->n_nodes++] = k;
            for (int o = 0; o < g->nodes[k].n_outputs; o++)
                if (g->nodes[k].outputs[o] >= 0)
                    ch->stack[top++] = g->nodes[k].outputs[o];
        }
    }
    qsort(ch->nodes, (size_t)ch->n_nodes, sizeof *ch->nodes, cmp_int);
    return ch->n_nodes > 0 && ch->n_terminals > 0;
}

/* Runs the chain's nodes on the source's element indices.  false (and
 * nothing folded) when a node cannot run on them: the plan will then
 * report whatever is wrong with it. */
static bool chain_indices(const cs_graph *g, const known_values *kv, int s, chain *ch)
{
    const cs_value *src = &g->values[s];
    cs_tensor *iota = &ch->idx[s];
    cs_err err = {0};
    cs_tensor_set_shape(iota, CS_DT_INT64, src->init.ndim, src->init.dims);
    if (cs_tensor_alloc(iota, &err))
        return false;
    int64_t n = cs_tensor_numel(iota);
    for (int64_t i = 0; i < n; i++)
        ((int64_t *)iota->data)[i] = i;
    for (int i = 0; i < ch->n_nodes; i++) {
        const cs_node *nd = &g->nodes[ch->nodes[i]];
        cs_tensor *args[64];
        if (nd->n_inputs + nd->n_outputs > 64)
            return false;
        args[0] = &ch->idx[nd->inputs[0]];
        for (int a = 1; a < nd->n_inputs; a++)
            args[a] = nd->inputs[a] >= 0 ? (cs_tensor *)known_value(g, kv, nd->inputs[a]) : NULL;
        for (int o = 0; o < nd->n_outputs; o++)
            args[nd->n_inputs + o] = nd->outputs[o] >= 0 ? &ch->idx[nd->outputs[o]] : NULL;
        if (!run_node(nd, args))
            return false;
        for (int o = 0; o < nd->n_outputs; o++)
            if (args[nd->n_inputs + o] && args[nd->n_inputs + o]->dtype != CS_DT_INT64)
                return false;
    }
    /* the parts must not overlap: one element, one parameter */
    unsigned char *seen = calloc((size_t)n + 1, 1);
    bool disjoint = seen != NULL;
    for (int t = 0; disjoint && t < ch->n_terminals; t++) {
        const cs_tensor *ix = &ch->idx[ch->terminals[t]];
        const int64_t *p = ix->data;
        int64_t m = cs_tensor_numel(ix);
        for (int64_t i = 0; disjoint && i < m; i++) {
            disjoint = p[i] >= 0 && p[i] < n && !seen[p[i]];
            if (disjoint)
                seen[p[i]] = 1;
        }
    }
    free(seen);
    return disjoint;
}

/* The terminals become initializers; the chain's nodes are marked dead. */
static cs_status chain_apply(cs_graph *g, int s, chain *ch, bool *dead, cs_err *err)
{
    cs_value *src = &g->values[s];
    size_t es = cs_dtype_size(src->init.dtype);
    for (int t = 0; t < ch->n_terminals; t++) {
        cs_value *v = &g->values[ch->terminals[t]];
        cs_tensor *ix = &ch->idx[ch->terminals[t]];
        cs_tensor data = {0};
        cs_tensor_set_shape(&data, src->init.dtype, ix->ndim, ix->dims);
        cs_status st = cs_tensor_alloc(&data, err);
        if (st)
            return st;
        const int64_t *p = ix->data;
        int64_t m = cs_tensor_numel(ix);
        for (int64_t i = 0; i < m; i++)
            memcpy((char *)data.data + (size_t)i * es, (const char *)src->init.data + (size_t)p[i] * es, es);
        v->kind = CS_VALUE_INITIALIZER;
        v->producer = -1;
        v->init = data;
        v->view_source = s;
        v->view_index = *ix; /* moved */
        memset(ix, 0, sizeof *ix);
        cs_tensor_set_shape(&v->decl, src->init.dtype, data.ndim, data.dims);
        v->train_choice = src->train_choice;
    }
    for (int i = 0; i < ch->n_nodes; i++) {
        const cs_node *nd = &g->nodes[ch->nodes[i]];
        dead[ch->nodes[i]] = true;
        for (int a = 0; a < nd->n_inputs; a++)
            if (nd->inputs[a] >= 0)
                g->values[nd->inputs[a]].n_consumers--;
    }
    src->has_views = true;
    return CS_OK;
}

/* Drops the dead nodes, keeping the order; producers renumbered. */
static void remove_dead(cs_graph *g, const bool *dead)
{
    int *to = malloc(sizeof *to * (size_t)(g->n_nodes + 1));
    int kept = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        if (to)
            to[k] = dead[k] ? -1 : kept;
        if (!dead[k])
            g->nodes[kept++] = g->nodes[k];
    }
    g->n_nodes = kept;
    for (int v = 0; v < g->n_values; v++) {
        int p = g->values[v].producer;
        if (p >= 0)
            g->values[v].producer = to ? to[p] : -1;
    }
    free(to);
}

/* Initializer s could start a chain: float, not folded before, and read
 * only by view nodes (their other inputs not yet checked). */
static bool is_candidate(const cs_graph *g, const consumers *c, int s)
{
    const cs_value *v = &g->values[s];
    if (v->kind != CS_VALUE_INITIALIZER || !cs_dtype_is_float(v->init.dtype) || !v->init.data ||
        v->view_source >= 0 || v->has_views || v->is_output || c->start[s] == c->start[s + 1])
        return false;
    for (int j = c->start[s]; j < c->start[s + 1]; j++)
        if (!is_view_node_of(g, NULL, c->node[j], s))
            return false;
    return true;
}

cs_status cs_param_views_fold(cs_graph *g, cs_err *err)
{
    consumers c = {0};
    chain ch = {0};
    bool *dead = calloc((size_t)g->n_nodes + 1, sizeof *dead);
    ch.in_chain = calloc((size_t)g->n_nodes + 1, sizeof *ch.in_chain);
    ch.nodes = malloc(sizeof *ch.nodes * (size_t)(g->n_nodes + 1));
    ch.terminals = malloc(sizeof *ch.terminals * (size_t)(g->n_values + 1));
    ch.stack = malloc(sizeof *ch.stack * (size_t)(g->n_values + 1));
    ch.idx = calloc((size_t)g->n_values + 1, sizeof *ch.idx);
    ch.dead = dead;
    cs_status st = CS_OK;
    if (!dead || !ch.in_chain || !ch.nodes || !ch.terminals || !ch.stack || !ch.idx ||
        consumers_make(g, &c))
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory folding the views of initializers");
    int folded = 0, candidates = 0;
    for (int s = 0; !st && s < g->n_values; s++)
        candidates += is_candidate(g, &c, s);
    known_values kv = {.have_plans = false};
    if (candidates) {
        cs_err ignored = {0};
        /* a graph the plans cannot prepare is left as it is: whatever stops
         * them is reported when the model is run */
        if (cs_plan_prepare_batch(&kv.p2, g, 2, &ignored) == CS_OK) {
            if (cs_plan_prepare_batch(&kv.p3, g, 3, &ignored) == CS_OK)
                kv.have_plans = true;
            else
                cs_plan_free(&kv.p2);
        }
    }
    for (int s = 0; !st && candidates && s < g->n_values; s++) {
        if (!is_candidate(g, &c, s))
            continue;
        if (chain_find(g, &kv, &c, s, &ch) && chain_indices(g, &kv, s, &ch)) {
            st = chain_apply(g, s, &ch, dead, err);
            folded += !st;
        }
        chain_clear(g, s, &ch);
    }
    if (kv.have_plans)
        cs_plan_free(&kv.p2), cs_plan_free(&kv.p3);
    if (!st && folded)
        remove_dead(g, dead);
    free(dead);
    free(ch.in_chain), free(ch.nodes), free(ch.terminals), free(ch.stack);
    if (ch.idx)
        for (int v = 0; v < g->n_values; v++)
            cs_tensor_free(&ch.idx[v]);
    free(ch.idx);
    consumers_free(&c);
    return st;
}
