/* What the layer-kind files share: the capture and per-sample contract of
 * interp/autodiff.h, the row type of interp/layer_kind.h, and an element
 * reader for the float or double tensors the plan holds. */
#ifndef CS_INTERP_LAYERS_RULES_H
#define CS_INTERP_LAYERS_RULES_H

#include <math.h>

#include "interp/autodiff.h"
#include "interp/layer_kind.h"
#include "tensor/accum.h"

/* Element i of a float or double tensor. */
static inline double cs_layer_at(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

/* A normalisation row: the mean of t's d elements from base, and
 * 1 / sqrt(v + eps) with v their population variance (two passes). */
static inline void cs_layer_row_stats(const cs_tensor *t, int64_t base, int64_t d, double eps, double *mu,
                                      double *inv)
{
    double m = 0, m2 = 0;
    for (int64_t i = 0; i < d; i++)
        m += cs_layer_at(t, base + i);
    m /= (double)d;
    for (int64_t i = 0; i < d; i++)
        m2 += (cs_layer_at(t, base + i) - m) * (cs_layer_at(t, base + i) - m);
    *mu = m;
    *inv = 1.0 / sqrt(m2 / (double)d + eps);
}

/* The stride in a tensor of dims d (k axes, numpy-broadcast: right-
 * aligned) of each axis of an r-axis tensor it broadcasts to; 0 where it
 * broadcasts (extent 1 or absent). */
static inline void cs_layer_broadcast_strides(const int64_t *d, int k, int r, int64_t *stride)
{
    int64_t acc = 1;
    for (int a = r - 1; a >= 0; a--) {
        int ta = a - (r - k);
        int64_t td = ta >= 0 ? d[ta] : 1;
        stride[a] = td == 1 ? 0 : acc;
        acc *= td;
    }
}

/* out[m] = sum_t D[b, m, t], m < M: sample b's bias gradient of a layer
 * whose output gradient D is [N, M, T] (one bias per channel). */
static inline void cs_layer_channel_sums(const cs_tensor *D, int64_t b, int64_t M, int64_t T, double *out)
{
    for (int64_t m = 0; m < M; m++)
        out[m] = D->dtype == CS_DT_DOUBLE ? cs_sum_f64((const double *)D->data + (b * M + m) * T, T)
                                          : cs_sum_f32((const float *)D->data + (b * M + m) * T, T);
}

#endif
