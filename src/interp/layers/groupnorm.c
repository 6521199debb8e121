/* InstanceNormalization and GroupNormalization layers: scale and bias
 * (slots 1 and 2).  One file for both kinds: InstanceNormalization is the
 * group normalisation with one group per channel, so the two rows share
 * the per-sample rule.  The normalisation uses each sample's own
 * statistics (interp/ops/groupnorm.c), so samples stay independent.
 * Unit-wise like BatchNormalization: (scale_c, bias_c) pairs, per channel,
 * or per group for GroupNormalization's opset-18 parameters ([num_groups]);
 * no Kronecker form; not prunable. */
#include "interp/layers/rules.h"

#include <string.h>

/* Per row (sample n, group g) of d = C/G * spatial elements,
 * xh = (x - mu) / sqrt(v + eps) with the population variance v;
 * dscale_n[k] = sum xh dy and dbias_n[k] = sum dy over the row's elements
 * whose channel (or group) is parameter k. */
static cs_status gn_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                               int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    const cs_tensor *X = cap->input, *Dy = cap->output_grad;
    bool group = strcmp(n->op_type, "GroupNormalization") == 0;
    if (X->ndim < 2 || cs_tensor_numel(Dy) != cs_tensor_numel(X))
        return cs_fail(err, CS_ERR_SHAPE, "layer '%s': X of rank %d", L->name, X->ndim);
    int64_t N = X->dims[0], C = X->dims[1], G = group ? cs_node_attr_int(n, "num_groups", 0) : C;
    if (G < 1 || C % G)
        return cs_fail(err, CS_ERR_SHAPE, "layer '%s': %lld channels in %lld groups", L->name, (long long)C,
                       (long long)G);
    int64_t S = cs_tensor_numel(X) / (N * C), d = C / G * S;
    bool per_channel = !group || n->opset >= 21;
    int64_t K = per_channel ? C : G;
    double eps = cs_node_attr_float(n, "epsilon", 1e-5f);
    for (int q = 0; q < L->n_params; q++) {
        int v = g->params[L->first_param + q].value;
        int s = cs_node_input_slot(n, v);
        int64_t col0 = g->params[L->first_param + q].offset - g->params[L->first_param].offset;
        if ((s != 1 && s != 2) || cs_tensor_numel(&g->values[v].init) != K)
            return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s': parameter slot %d of %lld entries (%lld expected)",
                           L->name, s, (long long)cs_tensor_numel(&g->values[v].init), (long long)K);
        for (int64_t b = 0; b < N; b++) {
            double *o = out + b * width + col0;
            memset(o, 0, sizeof(double) * (size_t)K);
            for (int64_t r = 0; r < G; r++) {
                int64_t base = (b * G + r) * d;
                double mu, inv;
                cs_layer_row_stats(X, base, d, eps, &mu, &inv);
                for (int64_t i = 0; i < d; i++) {
                    int64_t k = per_channel ? r * (C / G) + i / S : r;
                    double dy = cs_layer_at(Dy, base + i);
                    o[k] += s == 1 ? (cs_layer_at(X, base + i) - mu) * inv * dy : dy;
                }
            }
        }
    }
    return CS_OK;
}

static const int gn_slots[] = {1, 2, -1};

const cs_layer_kind cs_layer_instancenorm = {
    .name = "instancenorm",
    .op_type = "InstanceNormalization",
    .param_slots = gn_slots,
    .layout = cs_layout_channel_pairs, /* unit-wise: (scale_c, bias_c) pairs */
    .per_sample_grads = gn_per_sample,
    .linear_in_params = true,
};

const cs_layer_kind cs_layer_groupnorm = {
    .name = "groupnorm",
    .op_type = "GroupNormalization",
    .param_slots = gn_slots,
    .layout = cs_layout_channel_pairs, /* unit-wise: (scale_k, bias_k) pairs per channel or group */
    .per_sample_grads = gn_per_sample,
    .linear_in_params = true,
};
