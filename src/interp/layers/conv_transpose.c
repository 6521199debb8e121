/* ConvTranspose layers: weight W [C, M/G, k...] and bias B [M] (slots 1
 * and 2), G groups of Cg = C/G input and Mg = M/G output channels.
 *
 * K-FAC convention (doc/design.md §2.4), as BackPACK's K-FAC for transposed
 * convolution: the layer is the convolution it equals over the
 * stride-dilated, padded input with the flipped kernel, and K-FAC is
 * Conv's for that convolution (the expand setting: output positions
 * shared).  Units are the output channels of a group (dG = Mg); features
 * are the patches of the equivalent input, fan_in = Cg K (K = prod(k)).  A
 * feature is named by the input channel c and the tap k of W that
 * multiplies it: the flipped kernel's tap K-1-k, at output position y,
 * reads the input element x with y = x s - p + k d (zero where there is
 * none), which is tap k of W in ConvTranspose's own sum, so indexing by the
 * stored tap is the flip accounted for.  The patch matrix of one group is
 * tensor/im2col.h's cs_im2col_transposed, rows (c, k) in W's order.  So
 * W[c, j, k] of group g = c / Cg is (group g, unit j, feature (c mod Cg) K
 * + k), and B[m] is (m / Mg, m mod Mg, fan_in): the storage [C, Mg, k...]
 * puts the input channel first, unlike Conv's [M, Cg, k...], which is why
 * the index is not Conv's.  A = sum over samples and output positions of
 * the patch outer products (with the bias feature 1), G = sum of the
 * output-gradient outer products over output positions, per group. */
#include "interp/layers/rules.h"

#include "base/parallel.h"
#include "interp/window.h"
#include "tensor/accum.h"
#include "tensor/blas.h"

#include <stdlib.h>
#include <string.h>

static cs_status convt_layout(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err)
{
    const cs_node *n = &g->nodes[L->node];
    int wv = g->params[L->first_param].value;
    const cs_tensor *w = &g->values[wv].init;
    if (cs_node_input_slot(n, wv) != 1 || w->ndim < 3 || w->dims[0] < 1 || w->dims[1] < 1)
        return CS_OK;
    int64_t groups = cs_node_attr_int(n, "group", 1);
    int64_t C = w->dims[0], Mg = w->dims[1], K = cs_tensor_numel(w) / (C * Mg);
    if (groups < 1 || C % groups)
        return cs_fail(err, CS_ERR_SHAPE, "layer '%s': %lld input channels in %lld groups", L->name,
                       (long long)C, (long long)groups);
    int64_t Cg = C / groups, M = Mg * groups, nw = C * Mg * K;
    int64_t bias_numel = out->bias ? cs_tensor_numel(&g->values[g->params[L->first_param + 1].value].init) : 0;
    if (out->bias && bias_numel != M)
        return CS_OK; /* a bias that is not one per output channel: no [W | b] form */
    out->kron = malloc(sizeof(int64_t) * 3 * (size_t)out->W + 1);
    if (!out->kron)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory: %lld index entries for the layout of layer '%s'",
                       (long long)(3 * out->W), L->name);
    out->groups = groups;
    out->dG = Mg;
    out->fan_in = Cg * K;
    out->dA = out->fan_in + (out->bias ? 1 : 0);
    for (int64_t p = 0; p < out->W; p++) {
        int64_t *k = out->kron + 3 * p;
        if (p < nw) { /* W[c, j, tap] */
            int64_t c = p / (Mg * K), j = p / K % Mg, tap = p % K;
            k[0] = c / Cg;
            k[1] = j;
            k[2] = c % Cg * K + tap;
        } else { /* B[m] */
            k[0] = (p - nw) / Mg;
            k[1] = (p - nw) % Mg;
            k[2] = out->fan_in;
        }
    }
    out->kfac = CS_KFAC_PATCHES_TRANSPOSED;
    return cs_layout_units_from_kron(out, err);
}

static bool convt_geometry_of(const cs_ad *ad, const cs_layer *L, cs_conv_geom *geo, int64_t *groups)
{
    const cs_node *n = &ad->g->nodes[L->node];
    if (n->n_inputs < 2)
        return false;
    const cs_tensor *X = &ad->p->vals[n->inputs[0]], *W = &ad->p->vals[n->inputs[1]];
    return cs_conv_transpose_geometry(n, X, W, geo, groups, NULL) == CS_OK;
}

/* One thread's workspace in doubles: one group's output gradient [Mg, Ty],
 * its unfolding [Mg K, Tx] and the group's input [Cg, Tx], on cache lines
 * of its own. */
static size_t convt_thread_bytes(int64_t cg, const cs_conv_geom *geo)
{
    int64_t mg = geo->channels, tx = geo->out_size, ty = geo->in_size;
    size_t b = (size_t)(mg * ty + mg * geo->kernel_size * tx + cg * tx) * sizeof(double);
    return (b + 63) / 64 * 64;
}

static size_t convt_per_sample_bytes(const cs_ad *ad, const cs_layer *L)
{
    cs_conv_geom geo;
    int64_t groups;
    if (!convt_geometry_of(ad, L, &geo, &groups))
        return 0;
    int64_t C = ad->p->vals[ad->g->nodes[L->node].inputs[0]].dims[1];
    return convt_thread_bytes(C / groups, &geo) * (size_t)cs_omp_max_threads();
}

/* dW_n of group g [Cg, Mg K] = X_ng [Cg, Tx] times im2col(D_ng)^T
 * ([Tx, Mg K]): the operator's weight gradient (ops/conv_transpose.c) for
 * one sample, in W's storage order; db_n = sum over positions of D_n. */
static cs_status convt_per_sample(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap, double *out,
                                  int64_t width, cs_err *err)
{
    const cs_node *n = &ad->g->nodes[L->node];
    const cs_tensor *X = cap->input, *D = cap->output_grad;
    const cs_tensor *W = &ad->p->vals[n->inputs[1]];
    cs_conv_geom geo;
    int64_t groups;
    cs_status st = cs_conv_transpose_geometry(n, X, W, &geo, &groups, err);
    if (st)
        return st;
    const int64_t N = X->dims[0], C = X->dims[1], Cg = C / groups, Mg = geo.channels, M = Mg * groups;
    const int64_t tx = geo.out_size, ty = geo.in_size, kr = Mg * geo.kernel_size;
    const size_t part = convt_thread_bytes(Cg, &geo);
#pragma omp parallel if (N * kr * tx >= CS_OMP_MIN_ELEMS)
    {
        int64_t lo, hi;
        cs_omp_slice(N, &lo, &hi);
        double *dd = (double *)((char *)ad->ps_buf + part * (size_t)cs_omp_thread()); /* [Mg, Ty] */
        double *col = dd + Mg * ty;                                                    /* [Mg K, Tx] */
        double *xg = col + kr * tx;                                                    /* [Cg, Tx] */
        for (int64_t b = lo; b < hi; b++) {
            double *o = out + b * width;
            for (int64_t grp = 0; grp < groups; grp++) {
                const int64_t d0 = (b * M + grp * Mg) * ty, x0 = (b * C + grp * Cg) * tx;
                for (int64_t i = 0; i < Mg * ty; i++)
                    dd[i] = cs_layer_at(D, d0 + i);
                for (int64_t i = 0; i < Cg * tx; i++)
                    xg[i] = cs_layer_at(X, x0 + i);
                double *og = o + grp * Cg * kr;
                if (tx == 0 || kr == 0) {
                    memset(og, 0, sizeof(double) * (size_t)(Cg * kr));
                    continue;
                }
                cs_im2col_f64(&geo, dd, col, tx);
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Cg, (int)kr, (int)tx, 1.0, xg,
                            (int)tx, col, (int)tx, 0.0, og, (int)kr);
            }
            if (L->n_params > 1)
                cs_layer_channel_sums(D, b, M, ty, o + C * kr);
        }
    }
    return CS_OK;
}

static const int convt_slots[] = {1, 2, -1};

const cs_layer_kind cs_layer_conv_transpose = {
    .name = "conv_transpose",
    .op_type = "ConvTranspose",
    .param_slots = convt_slots,
    .layout = convt_layout,
    .per_sample_grads = convt_per_sample,
    .per_sample_bytes = convt_per_sample_bytes,
    .prunable = true,
    .linear_in_params = true,
};
