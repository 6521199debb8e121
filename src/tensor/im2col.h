/* Sliding-window geometry and im2col / col2im, shared by Conv, the pooling
 * operators and the curvature code.  The geometry is filled from a node's
 * attributes by interp/window.h; this layer knows only extents and strides.
 *
 * doc/design.md §2.4's K-FAC convention for Conv reuses exactly the patches the
 * forward multiplies by the weight: one patch per output position, features
 * in the weight's order (c_in, k_1, ..., k_d), zero padding included.  So the
 * unfolding lives here, once, and the forward and K-FAC cannot disagree.
 *
 * Every geometry is normalised to three spatial axes: a 1-D or 2-D problem is
 * given leading axes of extent 1 (kernel 1, stride 1, dilation 1, no padding),
 * which changes no index arithmetic, so one kernel serves every rank. */
#ifndef CS_TENSOR_IM2COL_H
#define CS_TENSOR_IM2COL_H

#include <stdbool.h>
#include <stdint.h>

#define CS_CONV_AXES 3 /* spatial axes after normalisation (and the most supported) */

typedef struct cs_conv_geom {
    int spatial_rank;                 /* spatial axes in the model: 1, 2 or 3 */
    int64_t channels;                 /* channels unfolded (per group for grouped Conv) */
    int64_t in[CS_CONV_AXES];         /* input extents */
    int64_t out[CS_CONV_AXES];        /* output extents */
    int64_t kernel[CS_CONV_AXES];
    int64_t stride[CS_CONV_AXES];
    int64_t dilation[CS_CONV_AXES];
    int64_t pad_begin[CS_CONV_AXES];  /* padding before the first input element */
    int64_t pad_end[CS_CONV_AXES];    /* padding after the last (pooling's divisor needs it) */
    int64_t in_size;                  /* prod(in): elements of one input channel */
    int64_t out_size;                 /* prod(out): T, output positions per sample */
    int64_t kernel_size;              /* prod(kernel): taps per channel */
} cs_conv_geom;

/* ceil(a / b) for a >= 0, b > 0. */
static inline int64_t cs_ceil_div(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

/* Patch matrix rows: channels * kernel_size (K); columns: out_size (T). */
static inline int64_t cs_conv_patch_rows(const cs_conv_geom *g)
{
    return g->channels * g->kernel_size;
}

/* Unfold one sample: x is [channels, in...] (contiguous), col is the
 * K x T matrix, row-major with leading dimension ldcol >= T:
 *   col[((c*k1 + a)*k2 + b)*k3 + e, (o1*out2 + o2)*out3 + o3]
 *     = x[c, o1*s1 - p1 + a*d1, o2*s2 - p2 + b*d2, o3*s3 - p3 + e*d3]
 * and 0 where the index falls in the padding.  A wider ldcol lets several
 * samples sit side by side in one matrix (columns n*T .. n*T+T-1). */
void cs_im2col_f32(const cs_conv_geom *g, const float *x, float *col, int64_t ldcol);
void cs_im2col_f64(const cs_conv_geom *g, const double *x, double *col, int64_t ldcol);

/* The adjoint of im2col: x[...] += every col entry that im2col would have
 * read from it (padding entries are dropped).  x is not cleared first. */
void cs_col2im_f32(const cs_conv_geom *g, const float *col, int64_t ldcol, float *x);
void cs_col2im_f64(const cs_conv_geom *g, const double *col, int64_t ldcol, double *x);

/* The unfolding of a transposed convolution (ConvTranspose's patches).
 * With g the geometry of the Conv whose input gradient the ConvTranspose
 * is (ConvTranspose's output = g's input, its input x = g's output),
 * col is K x prod(in), row-major with leading dimension ldcol:
 *   col[((c*k1 + a)*k2 + b)*k3 + e, (i1*in2 + i2)*in3 + i3] = x[c, o1, o2, o3]
 *       where i_j = o_j*s_j - p_j + tap_j*d_j (tap = a, b, e),
 *   0 where no o satisfies it (the zeros a stride inserts, the padding).
 * ConvTranspose's output is then W^T col per group, so these are the
 * features its weight multiplies; x is [channels, out...]. */
void cs_im2col_transposed_f32(const cs_conv_geom *g, const float *x, float *col, int64_t ldcol);
void cs_im2col_transposed_f64(const cs_conv_geom *g, const double *x, double *col, int64_t ldcol);

#endif
