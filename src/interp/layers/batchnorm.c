/* BatchNormalization layers: scale and B (slots 1 and 2); the running
 * mean and variance are statistics, not parameters (doc/design.md §2.3),
 * and the layer normalises with them (inference semantics, §2.9). */
#include "interp/layers/rules.h"

#include <math.h>

#include "tensor/accum.h"

/* y = scale * xhat + B with xhat = (x - mean) / sqrt(var + eps); per
 * channel c, dscale_n[c] = sum_pos xhat * d, dB_n[c] = sum_pos d. */
static cs_status bn_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                               int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    const cs_tensor *X = cap->input, *D = cap->output_grad;
    const cs_tensor *mean = &ad->p->vals[n->inputs[3]], *var = &ad->p->vals[n->inputs[4]];
    double eps = cs_node_attr_float(n, "epsilon", 1e-5f);
    int64_t N = X->dims[0], C = X->dims[1], S = cs_tensor_numel(X) / (N * C);
    for (int q = 0; q < L->n_params; q++) {
        int s = cs_node_input_slot(n, g->params[L->first_param + q].value);
        int64_t col0 = g->params[L->first_param + q].offset - g->params[L->first_param].offset;
        if (s != 1 && s != 2)
            return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s': unexpected parameter slot %d", L->name, s);
        bool f32 = X->dtype == CS_DT_FLOAT;
        for (int64_t b = 0; b < N; b++)
            for (int64_t c = 0; c < C; c++) {
                /* dScale = sum (x - mean) / sqrt(var + eps) d, dB = sum d */
                double mu = cs_layer_at(mean, c), inv = 1.0 / sqrt(cs_layer_at(var, c) + eps), acc;
                int64_t e = (b * C + c) * S;
                if (f32)
                    acc = s == 1 ? inv * cs_dot_centered_f32((const float *)X->data + e,
                                                             (const float *)D->data + e, mu, S)
                                 : cs_sum_f32((const float *)D->data + e, S);
                else
                    acc = s == 1 ? inv * cs_dot_centered_f64((const double *)X->data + e,
                                                             (const double *)D->data + e, mu, S)
                                 : cs_sum_f64((const double *)D->data + e, S);
                out[b * width + col0 + c] = acc;
            }
    }
    return CS_OK;
}

static const int bn_slots[] = {1, 2, -1};

const cs_layer_kind cs_layer_batchnorm = {
    .name = "batchnorm",
    .op_type = "BatchNormalization",
    .param_slots = bn_slots,
    .layout = cs_layout_channel_pairs, /* unit-wise: (scale_c, bias_c) pairs */
    .per_sample_grads = bn_per_sample,
    .linear_in_params = true,
};
