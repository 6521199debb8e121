/* MatMul layers: an activation times one initializer operand, with a
 * following Add of an initializer fused in as the bias (attention
 * projections, exported nn.Linear without Gemm). */
#include "interp/layers/rules.h"

#include <string.h>

#include "tensor/blas.h"

/* K-FAC layout: the weight is stored [in, out] as the second operand; the
 * block's rows are its columns (doc/design.md §2.4).  A weight as the first
 * operand has no Kronecker form here. */
static cs_status matmul_layout(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err)
{
    const cs_node *n = &g->nodes[L->node];
    int wv = g->params[L->first_param].value;
    const cs_tensor *w = &g->values[wv].init;
    if (cs_node_input_slot(n, wv) != 1 || w->ndim != 2)
        return CS_OK;
    int64_t bias_numel = out->bias ? cs_tensor_numel(&g->values[g->params[L->first_param + 1].value].init) : 0;
    return cs_layout_linear(L, w->dims[1], w->dims[0], false, bias_numel, out, err);
}

/* Weight W [K, M] as the second operand, input [..., K] whose rows hold
 * the samples on axis a (capture.batch_axis): viewed as [outer, N, inner]
 * rows (outer = the extents before a, inner = those after it up to K), so
 * [N, T, K] is outer 1, inner T and sequence-first [T, N, K] outer T,
 * inner 1.  Sample n's gradient is sum over its rows A_r^T D_r (one small
 * GEMM per contiguous run of inner rows), the bias's the sum of its D rows. */
static cs_status matmul_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                                   int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    int wv = g->params[L->first_param].value;
    if (cs_node_input_slot(n, wv) != 1 || g->values[wv].init.ndim != 2)
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "layer '%s': per-sample gradients need the weight as MatMul's 2-D second operand",
                       L->name);
    const cs_tensor *A = cap->input, *D = cap->output_grad;
    int a = cap->batch_axis;
    if (A->ndim < 2 || a < 0 || a >= A->ndim - 1)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s': unexpected shapes for per-sample gradients",
                       L->name);
    int64_t N = A->dims[a], K = A->dims[A->ndim - 1], M = D->dims[D->ndim - 1], outer = 1, inner = 1;
    for (int d = 0; d < a; d++)
        outer *= A->dims[d];
    for (int d = a + 1; d < A->ndim - 1; d++)
        inner *= A->dims[d];
    if (cs_tensor_numel(D) != outer * N * inner * M)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s': unexpected shapes for per-sample gradients",
                       L->name);
    for (int64_t b = 0; b < N; b++) {
        double *o = out + b * width;
        for (int64_t q = 0; q < outer; q++) {
            int64_t r0 = (q * N + b) * inner; /* first row of this run */
            if (A->dtype == CS_DT_DOUBLE) {
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)M, (int)inner, 1.0,
                            (const double *)A->data + r0 * K, (int)K, (const double *)D->data + r0 * M, (int)M,
                            q ? 1.0 : 0.0, o, (int)M);
            } else {
                float *w = ad->ps_buf; /* [K, M] */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)M, (int)inner, 1.0f,
                            (const float *)A->data + r0 * K, (int)K, (const float *)D->data + r0 * M, (int)M,
                            0.0f, w, (int)M);
                for (int64_t i = 0; i < K * M; i++)
                    o[i] = q ? o[i] + w[i] : w[i];
            }
        }
        if (L->n_params > 1) {
            double *ob = o + K * M;
            memset(ob, 0, sizeof(double) * (size_t)M);
            for (int64_t q = 0; q < outer; q++)
                for (int64_t t = 0; t < inner; t++)
                    for (int64_t m = 0; m < M; m++)
                        ob[m] += cs_layer_at(D, ((q * N + b) * inner + t) * M + m);
        }
    }
    return CS_OK;
}

/* A float product [K, M] per sample. */
static size_t matmul_per_sample_bytes(const cs_ad *ad, const cs_layer *L)
{
    const cs_tensor *W = &ad->g->values[ad->g->params[L->first_param].value].init;
    return (size_t)cs_tensor_numel(W) * sizeof(float);
}

static const int matmul_slots[] = {0, 1, -1};

const cs_layer_kind cs_layer_matmul = {
    .name = "matmul",
    .op_type = "MatMul",
    .param_slots = matmul_slots,
    .one_operand = true,
    .fuse_bias_add = true,
    .layout = matmul_layout,
    .per_sample_grads = matmul_per_sample,
    .per_sample_bytes = matmul_per_sample_bytes,
    .samples_any_axis = true,
    .prunable = true,
    .linear_in_params = true,
};
