#include "config.h"

#include "quant/quantize.h"

#include <math.h>
#include <stdlib.h>

#include "quant/quant.h"

void cs_quantize_result_free(cs_quantize_result *res)
{
    if (!res)
        return;
    free(res->layer), free(res->trace), free(res->trace_se), free(res->omega), free(res->delta_sq);
    free(res->chosen_bits);
    *res = (cs_quantize_result){0};
}

cs_status cs_quantize_model(cs_graph *g, const cs_dataset *ds, const cs_quantize_opts *o, cs_quantize_result *res,
                            cs_err *err)
{
    *res = (cs_quantize_result){.loss_before = NAN, .predicted = NAN, .tolerance = NAN};
    int nl = g->n_layers, n_bits = o->n_bits;
    const int *bits = o->bits;
    int64_t P = g->n_param_scalars;
    /* per parameter: the gradient, the rounding's change dW, H dW, the
     * weights as doubles; per graph layer: the traces */
    double *grad = calloc((size_t)P + 1, sizeof(double)), *delta = calloc((size_t)P + 1, sizeof(double));
    double *hd = calloc((size_t)P + 1, sizeof(double)), *w = malloc(sizeof(double) * ((size_t)P + 1));
    double *tr = calloc((size_t)nl + 1, sizeof(double)), *se = calloc((size_t)nl + 1, sizeof(double));
    int64_t *size = calloc((size_t)nl + 1, sizeof(int64_t));
    int *choice = calloc((size_t)nl + 1, sizeof(int));
    res->layer = calloc((size_t)nl + 1, sizeof(int));
    res->trace = calloc((size_t)nl + 1, sizeof(double));
    res->trace_se = calloc((size_t)nl + 1, sizeof(double));
    res->omega = calloc((size_t)(nl * n_bits) + 1, sizeof(double));
    res->delta_sq = calloc((size_t)(nl * n_bits) + 1, sizeof(double));
    res->chosen_bits = calloc((size_t)nl + 1, sizeof(int));
    cs_objective obj;
    bool obj_ok = false;
    cs_status st = grad && delta && hd && w && tr && se && size && choice && res->layer && res->trace &&
                           res->trace_se && res->omega && res->delta_sq && res->chosen_bits
                       ? CS_OK
                       : cs_fail(err, CS_ERR_NOMEM, "out of memory quantizing %lld parameters", (long long)P);
    if (!st && !(st = cs_objective_init(&obj, g, ds, o->norm, o->loss, o->batch, CS_AD_HVP, err)))
        obj_ok = true;
    if (!st)
        st = cs_objective_gradient(&obj, &res->loss_before, grad, err);
    if (!st)
        st = cs_quant_traces(&obj, o->probes, o->seed, tr, se, err);
    /* sensitivities (HAWQ-V2 eq. 4) of the quantized layers */
    int nq = 0;
    int64_t nq_weights = 0, other = P;
    for (int l = 0; l < nl && !st; l++) {
        if (!cs_quant_layer(g, l))
            continue;
        const cs_param *pw = &g->params[g->layers[l].first_param];
        const cs_tensor *t = &g->values[pw->value].init;
        int64_t n = cs_tensor_numel(t);
        for (int64_t i = 0; i < n; i++)
            w[pw->offset + i] = cs_tensor_get_f64(t, i);
        for (int k = 0; k < n_bits; k++) {
            float s = cs_quant_scale(w + pw->offset, n, bits[k]);
            double dsq = cs_quant_round(w + pw->offset, n, bits[k], s, NULL, NULL);
            res->delta_sq[(size_t)nq * n_bits + k] = dsq;
            res->omega[(size_t)nq * n_bits + k] = tr[l] / (double)n * dsq;
        }
        res->layer[nq] = l;
        res->trace[nq] = tr[l];
        res->trace_se[nq] = se[l];
        size[nq++] = n;
        nq_weights += n;
        other -= n;
    }
    res->n_layers = nq;
    /* the size: quantized weights at their widths, a float32 scale each,
     * everything else float32 */
    double fixed_bits = 32.0 * (double)(other + nq);
    double budget = o->budget_bytes > 0 ? 8.0 * (double)o->budget_bytes - fixed_bits
                    : o->budget_bits > 0 ? o->budget_bits * (double)nq_weights
                                         : 8.0 * (double)nq_weights;
    double total_omega = 0;
    if (!st)
        st = cs_quant_allocate(nq, size, bits, n_bits, res->omega, budget, choice, &total_omega, err);
    /* apply, and the prediction's first- and second-order terms */
    double first = 0, second = 0, se_term = 0, used_bits = 0;
    for (int j = 0; j < nq && !st; j++) {
        int l = res->layer[j], b = bits[choice[j]];
        const cs_param *pw = &g->params[g->layers[l].first_param];
        cs_tensor *t = &g->values[pw->value].init;
        int64_t n = size[j];
        float s = cs_quant_scale(w + pw->offset, n, b);
        double e = cs_quant_round(w + pw->offset, n, b, s, NULL, delta + pw->offset);
        for (int64_t i = 0; i < n; i++) {
            double v = delta[pw->offset + i];
            delta[pw->offset + i] = v - w[pw->offset + i];
            first += grad[pw->offset + i] * delta[pw->offset + i];
            cs_tensor_set_f64(t, i, v);
        }
        second += 0.5 * tr[l] / (double)n * e;
        se_term += 0.5 * se[l] / (double)n * e;
        used_bits += (double)(n * b);
        res->chosen_bits[j] = b;
    }
    /* the exact quadratic term dW^T H dW, for the interval */
    if (!st)
        st = cs_objective_hvp(&obj, delta, -1, hd, err);
    double exact_q = 0;
    for (int64_t i = 0; i < P && !st; i++)
        exact_q += delta[i] * hd[i];
    if (!st) {
        res->predicted = res->loss_before + first + second;
        res->tolerance = 3 * se_term + fabs(0.5 * exact_q - second) + 1e-5 * (1 + fabs(res->loss_before));
        res->size_bytes = (int64_t)ceil((used_bits + fixed_bits) / 8);
    }
    if (obj_ok)
        cs_objective_free(&obj);
    free(grad), free(delta), free(hd), free(w), free(tr), free(se), free(size), free(choice);
    return st;
}
