/* Elementwise parameters (doc/design.md §2.3): an initializer p that the
 * rule of interp/param_rule.h accepts, read by
 *   Mul     y = x * p        (a scale: decomposed LayerNorm's weight)
 *   Add     y = x + p        (a bias: LayerNorm's bias, pos_embedding)
 *   Sub     y = x - p or p - x
 *   Expand  y = expand(p)    (ViT's class_token, an LSTM's learned h0 / c0)
 * with p broadcast (numpy rules) to y.
 *
 * Sample n's gradient sums, over the elements of y that belong to sample n,
 * each element's dL/dy times dy/dp at the entry of p that it reads:
 *   dp_n[j] = sum_{i in n, j(i) = j} c(i) dy[i],
 * c = x[i] for Mul (x broadcast to y as well), +1 for Add and Expand,
 * -1 / +1 for Sub with p second / first.  The samples lie on the output's
 * batch axis (samples_on_output), which p must not vary along.
 *
 * No Kronecker form: the layer is y = diag(x) p (or p itself) broadcast,
 * a linear map with A = 1 in the sense of K-FAC, so K-FAC's block of an
 * elementwise parameter is its GGN / Fisher block as it is; curvscope, as
 * for the normalisation layers, stores it as the diagonal and full block
 * (kfac NONE).  Unit-wise, each entry of p is a unit of one. */
#include "interp/layers/rules.h"

#include <string.h>

#include "interp/param_rule.h"

static cs_status elementwise_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap,
                                        double *out, int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    int pv = g->params[L->first_param].value;
    const cs_tensor *p = &g->values[pv].init, *Dy = cap->output_grad;
    const cs_tensor *x = NULL; /* Mul's other operand */
    double sign = 1;
    if (strcmp(n->op_type, "Mul") == 0)
        x = &ad->p->vals[n->inputs[n->inputs[0] == pv ? 1 : 0]];
    else if (strcmp(n->op_type, "Sub") == 0 && n->inputs[1] == pv)
        sign = -1;
    int r = Dy->ndim, b = cap->batch_axis;
    if (b < 0 || b >= r || p->ndim > r || (x && x->ndim > r))
        return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s': its output holds the samples on no single axis",
                       L->name);
    int64_t ps[CS_MAX_DIMS], xs[CS_MAX_DIMS];
    cs_layer_broadcast_strides(p->dims, p->ndim, r, ps);
    if (x)
        cs_layer_broadcast_strides(x->dims, x->ndim, r, xs);
    if (ps[b] != 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "layer '%s': per-sample gradients of a parameter that varies over the samples' axis",
                       L->name);
    int64_t N = Dy->dims[b], P = cs_tensor_numel(p), total = cs_tensor_numel(Dy);
    for (int64_t s = 0; s < N; s++)
        memset(out + s * width, 0, sizeof(double) * (size_t)P);
    for (int64_t i = 0; i < total; i++) {
        int64_t rest = i, j = 0, xi = 0, s = 0;
        for (int a = r - 1; a >= 0; a--) {
            int64_t c = rest % Dy->dims[a];
            rest /= Dy->dims[a];
            j += c * ps[a];
            if (x)
                xi += c * xs[a];
            if (a == b)
                s = c;
        }
        out[s * width + j] += (x ? cs_layer_at(x, xi) : sign) * cs_layer_at(Dy, i);
    }
    return CS_OK;
}

static bool elementwise_param_ok(const cs_graph *g, int k, int v)
{
    return cs_param_rule_ok(g, k, v, NULL);
}

static const int both_slots[] = {0, 1, -1};
static const int first_slot[] = {0, -1};

#define ELEMENTWISE_KIND(kind_name, op, slots)                                                       \
    {                                                                                                \
        .name = kind_name, .op_type = op, .param_slots = slots, .one_operand = true,                 \
        .layout = cs_layout_channel_pairs, .per_sample_grads = elementwise_per_sample,               \
        .samples_any_axis = true, .param_ok = elementwise_param_ok, .samples_on_output = true,       \
        .linear_in_params = true,                                                                    \
    }

const cs_layer_kind cs_layer_scale = ELEMENTWISE_KIND("scale", "Mul", both_slots);
const cs_layer_kind cs_layer_shift = ELEMENTWISE_KIND("shift", "Add", both_slots);
const cs_layer_kind cs_layer_shift_sub = ELEMENTWISE_KIND("shift_sub", "Sub", both_slots);
const cs_layer_kind cs_layer_expand = ELEMENTWISE_KIND("expand", "Expand", first_slot);
