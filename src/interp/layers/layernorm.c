/* LayerNormalization layers: Scale and B (slots 1 and 2) of the
 * normalised shape, the trailing axes from `axis`. */
#include "interp/layers/rules.h"

#include <math.h>
#include <string.h>

/* Per row, xhat = (x - mean) / sqrt(var + eps); dScale_n = sum over the
 * sample's rows of xhat * d, dB_n = sum of d. */
static cs_status ln_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                               int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    const cs_tensor *X = cap->input, *D = cap->output_grad;
    int64_t axis = cs_node_attr_int(n, "axis", -1);
    if (axis < 0)
        axis += X->ndim;
    double eps = cs_node_attr_float(n, "epsilon", 1e-5f);
    int64_t N = X->dims[0], Dn = 1;
    for (int a = (int)axis; a < X->ndim; a++)
        Dn *= X->dims[a];
    if (axis < 1)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s': normalising over the batch axis", L->name);
    int64_t rows = cs_tensor_numel(X) / (N * Dn);
    for (int q = 0; q < L->n_params; q++) {
        int s = cs_node_input_slot(n, g->params[L->first_param + q].value);
        int64_t col0 = g->params[L->first_param + q].offset - g->params[L->first_param].offset;
        if (cs_tensor_numel(&g->values[g->params[L->first_param + q].value].init) != Dn)
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "layer '%s': per-sample gradients of a broadcast LayerNormalization scale",
                           L->name);
        for (int64_t b = 0; b < N; b++) {
            double *o = out + b * width + col0;
            memset(o, 0, sizeof(double) * (size_t)Dn);
            for (int64_t r = 0; r < rows; r++) {
                int64_t base = (b * rows + r) * Dn;
                double mu, inv;
                cs_layer_row_stats(X, base, Dn, eps, &mu, &inv);
                for (int64_t i = 0; i < Dn; i++)
                    o[i] += s == 1 ? (cs_layer_at(X, base + i) - mu) * inv * cs_layer_at(D, base + i)
                                   : cs_layer_at(D, base + i);
            }
        }
    }
    return CS_OK;
}

static const int ln_slots[] = {1, 2, -1};

const cs_layer_kind cs_layer_layernorm = {
    .name = "layernorm",
    .op_type = "LayerNormalization",
    .param_slots = ln_slots,
    .layout = cs_layout_channel_pairs, /* unit-wise: (scale_c, bias_c) pairs */
    .per_sample_grads = ln_per_sample,
    .linear_in_params = true,
};
