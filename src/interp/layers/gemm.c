/* Gemm layers: Y = alpha op(A) op(B) + beta C with the weight B and the
 * bias C as parameters (slots 1 and 2). */
#include "interp/layers/rules.h"

/* K-FAC layout: B is stored [out, in] with transB, else [in, out]; a Gemm
 * that transposes its activation (transA) has no Kronecker form. */
static cs_status gemm_layout(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err)
{
    const cs_node *n = &g->nodes[L->node];
    int wv = g->params[L->first_param].value;
    const cs_tensor *w = &g->values[wv].init;
    if (cs_node_attr_int(n, "transA", 0) || cs_node_input_slot(n, wv) != 1 || w->ndim != 2)
        return CS_OK;
    bool tb = cs_node_attr_int(n, "transB", 0);
    int64_t bias_numel = out->bias ? cs_tensor_numel(&g->values[g->params[L->first_param + 1].value].init) : 0;
    return cs_layout_linear(L, tb ? w->dims[0] : w->dims[1], tb ? w->dims[1] : w->dims[0], tb, bias_numel, out,
                            err);
}

/* Sample n is row n of op(A) and of Y: dB = alpha a_n d_n^T (or its
 * transpose for transB), dC = beta d_n summed to C's shape. */
static cs_status gemm_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                                 int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    double alpha = cs_node_attr_float(n, "alpha", 1.0f), beta = cs_node_attr_float(n, "beta", 1.0f);
    bool trans_a = cs_node_attr_int(n, "transA", 0), trans_b = cs_node_attr_int(n, "transB", 0);
    const cs_tensor *A = cap->input, *D = cap->output_grad;
    int64_t N = D->dims[0], M_out = D->dims[1], K = trans_a ? A->dims[0] : A->dims[1];
    for (int q = 0; q < L->n_params; q++) {
        int v = g->params[L->first_param + q].value;
        int64_t col0 = g->params[L->first_param + q].offset - g->params[L->first_param].offset;
        const cs_tensor *P = &g->values[v].init;
        int s = cs_node_input_slot(n, v);
        if (s == 1) {
            for (int64_t b = 0; b < N; b++) {
                double *o = out + b * width + col0;
                for (int64_t k = 0; k < K; k++) {
                    double a = alpha * cs_layer_at(A, trans_a ? k * N + b : b * K + k);
                    for (int64_t m = 0; m < M_out; m++) {
                        double d = cs_layer_at(D, b * M_out + m);
                        o[trans_b ? m * K + k : k * M_out + m] = a * d;
                    }
                }
            }
        } else if (s == 2) {
            int64_t pn = cs_tensor_numel(P);
            if (pn != M_out && pn != 1)
                return cs_fail(err, CS_ERR_UNSUPPORTED,
                               "layer '%s': per-sample gradients of a bias of shape other than [N] or scalar",
                               L->name);
            for (int64_t b = 0; b < N; b++) {
                double *o = out + b * width + col0;
                if (pn == 1) {
                    double s1 = 0;
                    for (int64_t m = 0; m < M_out; m++)
                        s1 += cs_layer_at(D, b * M_out + m);
                    o[0] = beta * s1;
                } else {
                    for (int64_t m = 0; m < M_out; m++)
                        o[m] = beta * cs_layer_at(D, b * M_out + m);
                }
            }
        } else {
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "layer '%s': per-sample gradients of Gemm input %d are not supported", L->name, s);
        }
    }
    return CS_OK;
}

static const int gemm_slots[] = {1, 2, -1};

const cs_layer_kind cs_layer_gemm = {
    .name = "gemm",
    .op_type = "Gemm",
    .param_slots = gemm_slots,
    .layout = gemm_layout,
    .per_sample_grads = gemm_per_sample,
    .prunable = true,
    .linear_in_params = true,
};
