/* Embedding layers: a Gather whose data input (slot 0) is a trainable
 * table E [V, D], indexed along axis 0 by integer ids (nn.Embedding's
 * export): y[..., :] = E[id, :] for every id of the index tensor.
 *
 * As a linear map y_t = E^T onehot(id_t), E is a weight stored [in, out]
 * (V inputs, D outputs), so the K-FAC block is G (x) A with rows = the D
 * embedding dimensions and features = the V ids (doc/design.md §2.4, the
 * MatMul orientation).  Its A is formed from the ids' counts, never from
 * one-hot rows: A = (1/(N T)) diag(c), c_v the number of positions of the
 * batch holding id v, exactly diagonal since distinct one-hot vectors are
 * orthogonal (CS_KFAC_ONEHOT); G is the D x D factor of the output
 * gradients, as for a MatMul over positions.
 *
 * Units (the unit-wise representation): one per token row E[v, :], D
 * slots each.  Rows of different ids interact only through samples that
 * hold both (K-FAC says not at all), so a token row's D x D block is where
 * the curvature lives; a unit per embedding dimension would be a V x V
 * block, and V * D * D doubles is far less than D * V * V for a
 * vocabulary. */
#include "interp/layers/rules.h"

#include <stdlib.h>
#include <string.h>

/* The table as a parameter, V rows of D, indexed along axis 0: the only
 * Gather with a layout and per-sample gradients. */
static bool embedding_table(const cs_graph *g, const cs_layer *L, int64_t *V, int64_t *D)
{
    const cs_node *n = &g->nodes[L->node];
    int wv = g->params[L->first_param].value;
    const cs_tensor *w = &g->values[wv].init;
    if (cs_node_input_slot(n, wv) != 0 || w->ndim != 2 || cs_node_attr_int(n, "axis", 0) != 0)
        return false;
    *V = w->dims[0];
    *D = w->dims[1];
    return true;
}

static cs_status embedding_layout(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err)
{
    int64_t V, D;
    if (!embedding_table(g, L, &V, &D))
        return CS_OK;
    out->kron = malloc(sizeof(int64_t) * (size_t)(3 * out->W + 1));
    out->unit_idx = malloc(sizeof(int64_t) * (size_t)(out->W + 1));
    if (!out->kron || !out->unit_idx)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory: %lld index entries for the layout of layer '%s'",
                       (long long)(4 * out->W), L->name);
    /* E[v, d] is parameter v D + d: (group 0, unit d, feature v); unit-wise
     * it is slot d of token row v. */
    for (int64_t p = 0; p < out->W; p++) {
        out->kron[3 * p] = 0;
        out->kron[3 * p + 1] = p % D;
        out->kron[3 * p + 2] = p / D;
        out->unit_idx[p] = p;
    }
    out->groups = 1;
    out->dG = D;
    out->fan_in = V;
    out->dA = V;
    out->kfac = CS_KFAC_ONEHOT;
    out->n_units = V;
    out->unit_d = D;
    return CS_OK;
}

/* Sample n's gradient is the scatter-add of its output-gradient rows into
 * the rows of its ids: dE_n[id_t, :] += dy_n[t, :] (a negative id counts
 * from the end, as Gather reads it). */
static cs_status embedding_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                                      int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_tensor *ids = cap->input, *Dy = cap->output_grad;
    int64_t V, D;
    if (!embedding_table(g, L, &V, &D))
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "layer '%s': per-sample gradients need a 2-D table gathered along axis 0", L->name);
    int in = (int)(cap->input - ad->p->vals);
    if (g->values[in].kind == CS_VALUE_INITIALIZER || ids->ndim < 1 ||
        (ids->dtype != CS_DT_INT64 && ids->dtype != CS_DT_INT32))
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "layer '%s': per-sample gradients need integer ids with the batch as first axis", L->name);
    int64_t N = ids->dims[0], T = N > 0 ? cs_tensor_numel(ids) / N : 0;
    if (cs_tensor_numel(Dy) != N * T * D)
        return cs_fail(err, CS_ERR_SHAPE, "layer '%s': output gradient of %lld values for %lld ids of %lld",
                       L->name, (long long)cs_tensor_numel(Dy), (long long)(N * T), (long long)D);
    for (int64_t b = 0; b < N; b++) {
        double *o = out + b * width;
        memset(o, 0, sizeof(double) * (size_t)(V * D));
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t;
            int64_t id = ids->dtype == CS_DT_INT64 ? ((const int64_t *)ids->data)[i] : ((const int32_t *)ids->data)[i];
            id = id < 0 ? id + V : id;
            if (id < 0 || id >= V)
                return cs_fail(err, CS_ERR_RUNTIME, "layer '%s': id %lld outside the table's %lld rows", L->name,
                               (long long)id, (long long)V);
            for (int64_t d = 0; d < D; d++)
                o[id * D + d] += cs_layer_at(Dy, i * D + d);
        }
    }
    return CS_OK;
}

static const int embedding_slots[] = {0, -1};

const cs_layer_kind cs_layer_embedding = {
    .name = "embedding",
    .op_type = "Gather",
    .param_slots = embedding_slots,
    .layout = embedding_layout,
    .per_sample_grads = embedding_per_sample,
    .prunable = true,
    .linear_in_params = true,
};
