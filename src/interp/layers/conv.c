/* Conv layers: weight W [M, C/G, k...] and bias B [M] (slots 1 and 2).
 * K-FAC treats the output positions as shared (the expand setting,
 * doc/design.md §2.4): A from the input's patches, features (c_in, kh, kw)
 * as in the weight, per group of channels. */
#include "interp/layers/rules.h"

#include "base/parallel.h"
#include "interp/window.h"
#include "tensor/accum.h"
#include "tensor/blas.h"

#include <stdlib.h>
#include <string.h>

static cs_status conv_layout(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err)
{
    const cs_node *n = &g->nodes[L->node];
    int wv = g->params[L->first_param].value;
    const cs_tensor *w = &g->values[wv].init;
    if (cs_node_input_slot(n, wv) != 1 || w->ndim < 1 || w->dims[0] < 1)
        return CS_OK;
    int64_t groups = cs_node_attr_int(n, "group", 1);
    int64_t M = w->dims[0], Kp = cs_tensor_numel(w) / M;
    if (groups < 1 || M % groups)
        return cs_fail(err, CS_ERR_SHAPE, "layer '%s': %lld output channels in %lld groups", L->name,
                       (long long)M, (long long)groups);
    int64_t bias_numel = out->bias ? cs_tensor_numel(&g->values[g->params[L->first_param + 1].value].init) : 0;
    if (out->bias && bias_numel != M)
        return CS_OK; /* a bias that is not one per output channel: no [W | b] form */
    out->kron = malloc(sizeof(int64_t) * 3 * (size_t)out->W + 1);
    if (!out->kron)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory: %lld index entries for the layout of layer '%s'",
                       (long long)(3 * out->W), L->name);
    out->groups = groups;
    out->dG = M / groups;
    out->fan_in = Kp;
    out->dA = Kp + (out->bias ? 1 : 0);
    for (int64_t p = 0; p < out->W; p++) {
        int64_t *k = out->kron + 3 * p;
        int64_t unit = p < M * Kp ? p / Kp : p - M * Kp;
        k[0] = unit / out->dG;
        k[1] = unit % out->dG;
        k[2] = p < M * Kp ? p % Kp : Kp;
    }
    out->kfac = CS_KFAC_PATCHES;
    return cs_layout_units_from_kron(out, err);
}

static bool conv_geometry_of(const cs_ad *ad, const cs_layer *L, cs_conv_geom *geo, int64_t *groups)
{
    const cs_node *n = &ad->g->nodes[L->node];
    if (n->n_inputs < 2)
        return false;
    const cs_tensor *X = &ad->p->vals[n->inputs[0]], *W = &ad->p->vals[n->inputs[1]];
    return cs_conv_geometry(n, X, W, geo, groups, NULL) == CS_OK;
}

/* One thread's workspace: one group's patches (double, and float when the
 * model is float) and its output gradient rows, on cache lines of its own. */
static size_t conv_thread_bytes(const cs_tensor *W, const cs_conv_geom *geo, int64_t groups)
{
    size_t KT = (size_t)(cs_conv_patch_rows(geo) * geo->out_size);
    size_t b = KT * (sizeof(double) + sizeof(float)) + (size_t)(W->dims[0] / groups * geo->out_size) * sizeof(double);
    return (b + 63) / 64 * 64;
}

/* The samples are split over threads, each with its own part. */
static size_t conv_per_sample_bytes(const cs_ad *ad, const cs_layer *L)
{
    cs_conv_geom geo;
    int64_t groups;
    if (!conv_geometry_of(ad, L, &geo, &groups))
        return 0;
    const cs_tensor *W = &ad->p->vals[ad->g->nodes[L->node].inputs[1]];
    return conv_thread_bytes(W, &geo, groups) * (size_t)cs_omp_max_threads();
}

/* Every sample's patches in double, [N, groups, K, T]. */
static size_t conv_patch_bytes(const cs_ad *ad, const cs_layer *L)
{
    cs_conv_geom geo;
    int64_t groups;
    if (!conv_geometry_of(ad, L, &geo, &groups))
        return 0;
    const cs_tensor *X = &ad->p->vals[ad->g->nodes[L->node].inputs[0]];
    return (size_t)(X->dims[0] * groups * cs_conv_patch_rows(&geo) * geo.out_size) * sizeof(double);
}

/* dW_n = D_n (per group, [M/G, T]) times the patches of sample n
 * ([T, C/G * k]); db_n = sum over positions of D_n. */
static cs_status conv_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                                 int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    const cs_tensor *X = cap->input, *D = cap->output_grad;
    const cs_tensor *W = &ad->p->vals[n->inputs[1]];
    cs_conv_geom geo;
    int64_t groups;
    cs_status st = cs_conv_geometry(n, X, W, &geo, &groups, err);
    if (st)
        return st;
    int64_t N = X->dims[0], C = X->dims[1], M = W->dims[0], T = geo.out_size;
    int64_t Kp = cs_conv_patch_rows(&geo), Mg = M / groups;
    bool dbl = X->dtype == CS_DT_DOUBLE;
    size_t es = cs_dtype_size(X->dtype);
    /* Samples are independent: split over threads, each with its own part
     * of the workspace (conv_per_sample_bytes) for one group's patch matrix
     * in the double the result needs, or the patch cache's, filled by the
     * first seed after a forward and read by the others. */
    size_t part = conv_thread_bytes(W, &geo, groups);
    const int li = (int)(L - g->layers);
    double *cache = ad->patches ? ad->patches[li] : NULL;
    const bool cached = cache && ad->patches_at[li] == ad->p->forward_count;
#pragma omp parallel if (N * Kp * T >= CS_OMP_MIN_ELEMS)
    {
        int64_t lo, hi;
        cs_omp_slice(N, &lo, &hi);
        double *buf = (double *)((char *)ad->ps_buf + part * (size_t)cs_omp_thread());
        double *dd = buf + Kp * T;
        float *colf = (float *)(dd + Mg * T);
        for (int64_t b = lo; b < hi; b++) {
            double *o = out + b * width;
            for (int64_t grp = 0; grp < groups; grp++) {
                const char *xg = (const char *)X->data + (size_t)((b * C + grp * (C / groups)) * geo.in_size) * es;
                double *col = cache ? cache + (b * groups + grp) * Kp * T : buf;
                if (cached) {
                    /* made by an earlier seed of this forward */
                } else if (dbl) {
                    cs_im2col_f64(&geo, (const double *)xg, col, T);
                } else {
                    cs_im2col_f32(&geo, (const float *)xg, colf, T);
                    for (int64_t i = 0; i < Kp * T; i++)
                        col[i] = colf[i];
                }
                const int64_t d0 = (b * M + grp * Mg) * T;
                if (dbl)
                    memcpy(dd, (const double *)D->data + d0, sizeof(double) * (size_t)(Mg * T));
                else
                    for (int64_t m = 0; m < Mg * T; m++)
                        dd[m] = ((const float *)D->data)[d0 + m];
                /* [Mg, Kp] = [Mg, T] x [T, Kp] */
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Mg, (int)Kp, (int)T, 1.0, dd,
                            (int)T, col, (int)T, 0.0, o + grp * Mg * Kp, (int)Kp);
            }
            if (L->n_params > 1)
                cs_layer_channel_sums(D, b, M, T, o + M * Kp);
        }
    }
    if (cache)
        ad->patches_at[li] = ad->p->forward_count;
    return CS_OK;
}

static const int conv_slots[] = {1, 2, -1};

const cs_layer_kind cs_layer_conv = {
    .name = "conv",
    .op_type = "Conv",
    .param_slots = conv_slots,
    .layout = conv_layout,
    .per_sample_grads = conv_per_sample,
    .per_sample_bytes = conv_per_sample_bytes,
    .patch_bytes = conv_patch_bytes,
    .prunable = true,
    .linear_in_params = true,
};
