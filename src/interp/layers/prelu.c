/* PRelu layers: the slope s (slot 1) as the parameter, unidirectionally
 * broadcast to X ([C, 1, 1] or [1] as nn.PReLU exports it).  No Kronecker
 * form; unit-wise, each slope entry (a channel) is a unit of one. */
#include "interp/layers/rules.h"

#include <string.h>

/* y = x > 0 ? x : s x, so dy/ds = [x <= 0] x (the kink's convention of
 * interp/ops/select.c); sample n's ds_j is the sum of [x <= 0] x dy over
 * its elements that read slope entry j. */
static cs_status prelu_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                                  int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_tensor *X = cap->input, *Dy = cap->output_grad;
    const cs_tensor *s = &g->values[g->params[L->first_param].value].init;
    int r = X->ndim, k = s->ndim;
    if (r < 1 || k > r || (k == r && s->dims[0] != 1) || cs_tensor_numel(Dy) != cs_tensor_numel(X))
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "layer '%s': per-sample gradients of a slope that varies over the batch axis", L->name);
    /* stride of each axis of X in the slope (0 where broadcast) */
    int64_t stride[CS_MAX_DIMS];
    cs_layer_broadcast_strides(s->dims, k, r, stride);
    int64_t N = X->dims[0], per = N > 0 ? cs_tensor_numel(X) / N : 0, S = cs_tensor_numel(s);
    for (int64_t b = 0; b < N; b++) {
        double *o = out + b * width;
        memset(o, 0, sizeof(double) * (size_t)S);
        for (int64_t e = 0; e < per; e++) {
            int64_t i = b * per + e;
            double xv = cs_layer_at(X, i);
            if (xv > 0)
                continue;
            int64_t j = 0, rest = e;
            for (int a = r - 1; a >= 1; a--) {
                j += rest % X->dims[a] * stride[a];
                rest /= X->dims[a];
            }
            o[j] += xv * cs_layer_at(Dy, i);
        }
    }
    return CS_OK;
}

static const int prelu_slots[] = {1, -1};

const cs_layer_kind cs_layer_prelu = {
    .name = "prelu",
    .op_type = "PRelu",
    .param_slots = prelu_slots,
    .layout = cs_layout_channel_pairs, /* unit-wise: one slope per unit */
    .per_sample_grads = prelu_per_sample,
    .linear_in_params = true,
};
