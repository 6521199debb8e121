/* DESIGN.md's layers: nodes that own trainable initializers.
 *
 *   Gemm                 B (weight), C (bias)
 *   MatMul (+ Add)       the initializer operand (weight); a following Add of
 *                        an initializer is fused in as the bias when the
 *                        MatMul result feeds only that Add
 *   Conv                 W, B
 *   BatchNormalization   scale, B   (running mean / var are statistics)
 *   LayerNormalization   Scale, B
 *
 * Parameter order: layers in the order of their first node, inside a layer
 * the node's initializer inputs in input order, then the fused bias.  An
 * initializer already owned by an earlier layer (weight tying) is not
 * counted twice. */
#include <string.h>

#include "graph/graph.h"

/* Which inputs of op_type may hold parameters; -1 terminates. */
static const int *param_slots(const char *op_type)
{
    static const int slots_1_2[] = {1, 2, -1};
    static const int slots_matmul[] = {0, 1, -1};
    if (strcmp(op_type, "Gemm") == 0 || strcmp(op_type, "Conv") == 0 ||
        strcmp(op_type, "BatchNormalization") == 0 || strcmp(op_type, "LayerNormalization") == 0)
        return slots_1_2;
    if (strcmp(op_type, "MatMul") == 0)
        return slots_matmul;
    return NULL;
}

static bool is_trainable_init(const cs_graph *g, int v)
{
    return v >= 0 && g->values[v].kind == CS_VALUE_INITIALIZER &&
           cs_dtype_is_float(g->values[v].init.dtype) && g->values[v].param_index < 0;
}

/* The Add node fused into MatMul node k as its bias, or -1. */
static int matmul_bias_node(const cs_graph *g, int k, int *bias_value)
{
    const cs_node *mm = &g->nodes[k];
    if (mm->n_outputs < 1)
        return -1;
    int out = mm->outputs[0];
    if (out < 0 || g->values[out].n_consumers != 1 || g->values[out].is_output)
        return -1;
    for (int j = k + 1; j < g->n_nodes; j++) {
        const cs_node *n = &g->nodes[j];
        for (int i = 0; i < n->n_inputs; i++) {
            if (n->inputs[i] != out)
                continue;
            if (strcmp(n->op_type, "Add") != 0 || n->n_inputs != 2)
                return -1;
            int other = n->inputs[1 - i];
            if (!is_trainable_init(g, other))
                return -1;
            *bias_value = other;
            return j;
        }
    }
    return -1;
}

cs_status cs_graph_find_layers(cs_graph *g, cs_err *err)
{
    /* At most one layer per node and one parameter per node input. */
    int max_params = 0;
    for (int k = 0; k < g->n_nodes; k++)
        max_params += g->nodes[k].n_inputs;
    g->layers = cs_arena_alloc(&g->arena, sizeof *g->layers * (size_t)(g->n_nodes + 1));
    g->params = cs_arena_alloc(&g->arena, sizeof *g->params * (size_t)(max_params + 1));
    if (!g->layers || !g->params)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory listing layers");
    g->n_layers = 0;
    g->n_params = 0;
    g->n_param_scalars = 0;
    for (int v = 0; v < g->n_values; v++)
        g->values[v].param_index = -1;

    for (int k = 0; k < g->n_nodes; k++) {
        cs_node *n = &g->nodes[k];
        if (n->domain[0] || n->layer >= 0)
            continue;
        const int *slots = param_slots(n->op_type);
        if (!slots)
            continue;
        int found[4];
        int n_found = 0;
        for (int s = 0; slots[s] >= 0; s++) {
            int i = slots[s];
            if (i < n->n_inputs && is_trainable_init(g, n->inputs[i]))
                found[n_found++] = n->inputs[i];
        }
        /* MatMul: a layer only with exactly one initializer operand. */
        bool matmul = strcmp(n->op_type, "MatMul") == 0;
        if (n_found == 0 || (matmul && n_found != 1))
            continue;
        int bias_node = -1;
        if (matmul) {
            int bias_value = -1;
            bias_node = matmul_bias_node(g, k, &bias_value);
            if (bias_node >= 0)
                found[n_found++] = bias_value;
        }
        int li = g->n_layers++;
        cs_layer *L = &g->layers[li];
        L->name = n->name;
        L->op_type = n->op_type;
        L->node = k;
        L->bias_node = bias_node;
        L->first_param = g->n_params;
        L->n_params = n_found;
        L->numel = 0;
        n->layer = li;
        if (bias_node >= 0)
            g->nodes[bias_node].layer = li;
        for (int p = 0; p < n_found; p++) {
            cs_value *val = &g->values[found[p]];
            cs_param *P = &g->params[g->n_params];
            P->value = found[p];
            P->layer = li;
            P->offset = g->n_param_scalars;
            val->param_index = g->n_params++;
            int64_t numel = cs_tensor_numel(&val->init);
            L->numel += numel;
            g->n_param_scalars += numel;
        }
    }
    return CS_OK;
}
