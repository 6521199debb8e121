/* The one table of layer kinds (interp/layer_kind.h states a row's
 * contract), the search for layers that uses it, and the layout building
 * blocks the kinds share.
 *
 * Parameter order (doc/design.md §2.3): layers in the order of their first
 * node, inside a layer the node's initializer inputs in input order, then
 * a fused bias.  An initializer already owned by an earlier layer (weight
 * tying) is not counted twice. */
#include "interp/layer_kind.h"

#include <stdlib.h>
#include <string.h>

/* interp/layers/gemm.c, matmul.c, conv.c, batchnorm.c, layernorm.c, embedding.c, prelu.c,
 * groupnorm.c, recurrent.c, elementwise.c */
extern const cs_layer_kind cs_layer_gemm, cs_layer_matmul, cs_layer_conv, cs_layer_batchnorm,
    cs_layer_layernorm;
extern const cs_layer_kind cs_layer_embedding, cs_layer_prelu, cs_layer_instancenorm, cs_layer_groupnorm;
extern const cs_layer_kind cs_layer_conv_transpose; /* interp/layers/conv_transpose.c */
extern const cs_layer_kind cs_layer_rnn, cs_layer_gru, cs_layer_lstm;
extern const cs_layer_kind cs_layer_scale, cs_layer_shift, cs_layer_shift_sub, cs_layer_expand;

static const cs_layer_kind *const layer_table[] = {
    &cs_layer_gemm, &cs_layer_matmul, &cs_layer_conv, &cs_layer_batchnorm, &cs_layer_layernorm,
    &cs_layer_embedding, &cs_layer_prelu, &cs_layer_instancenorm, &cs_layer_groupnorm,
    &cs_layer_conv_transpose,
    &cs_layer_rnn, &cs_layer_gru, &cs_layer_lstm,
    &cs_layer_scale, &cs_layer_shift, &cs_layer_shift_sub, &cs_layer_expand,
};

const cs_layer_kind *cs_layer_kind_find(const char *op_type)
{
    for (size_t i = 0; i < sizeof layer_table / sizeof layer_table[0]; i++)
        if (strcmp(layer_table[i]->op_type, op_type) == 0)
            return layer_table[i];
    return NULL;
}

int cs_layer_kind_count(void)
{
    return (int)(sizeof layer_table / sizeof layer_table[0]);
}

const cs_layer_kind *cs_layer_kind_at(int i)
{
    return i >= 0 && i < cs_layer_kind_count() ? layer_table[i] : NULL;
}

/* ---- finding layers ---- */

static bool is_trainable_init(const cs_graph *g, int v)
{
    return v >= 0 && g->values[v].kind == CS_VALUE_INITIALIZER &&
           cs_dtype_is_float(g->values[v].init.dtype) && g->values[v].param_index < 0 &&
           g->values[v].train_choice >= 0;
}

/* The Add node that follows node k as its bias (its output's only
 * consumer, adding a trainable initializer), or -1. */
static int fused_bias_node(const cs_graph *g, int k, int *bias_value)
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
            if (strcmp(n->op_type, "Add") != 0 || n->domain[0] || n->n_inputs != 2)
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

cs_status cs_layers_find(cs_graph *g, cs_err *err)
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
    for (int k = 0; k < g->n_nodes; k++)
        g->nodes[k].layer = -1;

    for (int k = 0; k < g->n_nodes; k++) {
        cs_node *n = &g->nodes[k];
        if (n->domain[0] || n->layer >= 0)
            continue;
        const cs_layer_kind *kind = cs_layer_kind_find(n->op_type);
        if (!kind)
            continue;
        int found[8];
        int n_found = 0;
        for (int s = 0; kind->param_slots[s] >= 0 && n_found < 7; s++) {
            int i = kind->param_slots[s];
            if (i < n->n_inputs && is_trainable_init(g, n->inputs[i]) &&
                (!kind->param_ok || kind->param_ok(g, k, n->inputs[i])))
                found[n_found++] = n->inputs[i];
        }
        if (n_found == 0 || (kind->one_operand && n_found != 1))
            continue;
        int bias_node = -1;
        if (kind->fuse_bias_add) {
            int bias_value = -1;
            bias_node = fused_bias_node(g, k, &bias_value);
            if (bias_node >= 0)
                found[n_found++] = bias_value;
        }
        int li = g->n_layers++;
        cs_layer *L = &g->layers[li];
        L->name = n->name;
        L->op_type = n->op_type;
        L->kind = kind;
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

/* ---- layouts ---- */

cs_status cs_layer_layout_make(const cs_graph *g, int l, cs_layer_layout *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    if (l < 0 || l >= g->n_layers)
        return cs_fail(err, CS_ERR_RUNTIME, "no layer %d", l);
    const cs_layer *L = &g->layers[l];
    out->W = L->numel;
    out->bias = L->n_params > 1;
    out->kfac = CS_KFAC_NONE;
    return L->kind && L->kind->layout ? L->kind->layout(g, L, out, err) : CS_OK;
}

void cs_layer_layout_free(cs_layer_layout *x)
{
    free(x->kron);
    free(x->unit_idx);
    x->kron = x->unit_idx = NULL;
}

int cs_node_input_slot(const cs_node *n, int v)
{
    for (int i = 0; i < n->n_inputs; i++)
        if (n->inputs[i] == v)
            return i;
    return -1;
}

static int64_t *index_alloc(int64_t n, const cs_layer *L, cs_err *err)
{
    int64_t *p = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (!p)
        cs_fail(err, CS_ERR_NOMEM, "out of memory: %lld index entries for the layout of layer '%s'",
                (long long)n, L->name);
    return p;
}

cs_status cs_layout_linear(const cs_layer *L, int64_t dG, int64_t fan_in, bool out_major, int64_t bias_numel,
                           cs_layer_layout *out, cs_err *err)
{
    /* A bias that is not one per output (a broadcast scalar) has no place
     * in [W | b]: such a layer has no Kronecker form. */
    if (out->bias && bias_numel != dG)
        return CS_OK;
    int64_t W = out->W;
    if (!(out->kron = index_alloc(3 * W, L, err)))
        return CS_ERR_NOMEM;
    for (int64_t p = 0; p < W; p++) {
        int64_t *k = out->kron + 3 * p;
        k[0] = 0;
        if (p < dG * fan_in) {
            k[1] = out_major ? p / fan_in : p % dG;
            k[2] = out_major ? p % fan_in : p / dG;
        } else {
            k[1] = p - dG * fan_in;
            k[2] = fan_in;
        }
    }
    out->groups = 1;
    out->dG = dG;
    out->fan_in = fan_in;
    out->dA = fan_in + (out->bias ? 1 : 0);
    out->kfac = CS_KFAC_ROWS;
    return cs_layout_units_from_kron(out, err);
}

cs_status cs_layout_units_from_kron(cs_layer_layout *out, cs_err *err)
{
    out->n_units = out->groups * out->dG;
    out->unit_d = out->dA;
    out->unit_idx = malloc(sizeof(int64_t) * (size_t)(out->n_units * out->unit_d + 1));
    if (!out->unit_idx)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory: %lld unit-wise slots",
                       (long long)(out->n_units * out->unit_d));
    for (int64_t i = 0; i < out->n_units * out->unit_d; i++)
        out->unit_idx[i] = -1;
    for (int64_t p = 0; p < out->W; p++) {
        const int64_t *k = out->kron + 3 * p;
        out->unit_idx[(k[0] * out->dG + k[1]) * out->unit_d + k[2]] = p;
    }
    return CS_OK;
}

cs_status cs_layout_channel_pairs(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err)
{
    int64_t C = cs_tensor_numel(&g->values[g->params[L->first_param].value].init);
    int64_t bias_numel =
        out->bias ? cs_tensor_numel(&g->values[g->params[L->first_param + 1].value].init) : 0;
    bool paired = out->bias && bias_numel == C;
    out->n_units = C;
    out->unit_d = paired ? 2 : 1;
    if (!(out->unit_idx = index_alloc(out->n_units * out->unit_d, L, err)))
        return CS_ERR_NOMEM;
    for (int64_t c = 0; c < C; c++) {
        out->unit_idx[c * out->unit_d] = c;
        if (paired)
            out->unit_idx[c * out->unit_d + 1] = C + c;
    }
    return CS_OK;
}
