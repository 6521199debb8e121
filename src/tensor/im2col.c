/* im2col and col2im for 1-D to 3-D sliding windows (tensor/im2col.h). */
#include "tensor/im2col.h"

#include <string.h>

/* ---- im2col / col2im ---- */

/* Output indices o in [lo, hi) whose input index o*s + off lies in [0, n_in). */
static void valid_range(int64_t off, int64_t s, int64_t n_in, int64_t n_out, int64_t *lo,
                        int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : cs_ceil_div(-off, s);
    int64_t b = n_in - 1 - off < 0 ? 0 : (n_in - 1 - off) / s + 1;
    if (b > n_out)
        b = n_out;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

/* 2-D (one leading axis of extent 1), stride 1, dilation 1, and an output
 * plane the size of the input plane ("same" padding): see cs_im2col. */
static bool im2col_same_2d(const cs_conv_geom *g)
{
    return g->in[0] == 1 && g->out[0] == 1 && g->kernel[0] == 1 && g->stride[1] == 1 &&
           g->stride[2] == 1 && g->dilation[1] == 1 && g->dilation[2] == 1 &&
           g->out[1] == g->in[1] && g->out[2] == g->in[2] && g->pad_begin[1] >= 0 &&
           g->pad_begin[2] >= 0;
}

/* Both directions walk the patch matrix row by row: row (c, a, b, e) and,
 * along it, output positions (o0, o1, o2); the innermost axis is a strided
 * run of one input row, bounded by valid_range so the loop has no tests. */
#define DEFINE_IM2COL(T, SUF)                                                                    \
    void cs_im2col_##SUF(const cs_conv_geom *g, const T *x, T *col, int64_t ldcol)              \
    {                                                                                            \
        const int64_t i1n = g->in[1], i2n = g->in[2];                                            \
        const int64_t o0n = g->out[0], o1n = g->out[1], o2n = g->out[2];                         \
        const int64_t s0 = g->stride[0], s1 = g->stride[1], s2 = g->stride[2];                   \
        if (im2col_same_2d(g)) {                                                                 \
            /* Output plane = input plane: patch row (c, a, b) is the plane   \
             * shifted by off = (a - p1) W + (b - p2), one flat copy; the     \
             * columns the shift wraps across a row edge are then zeroed.    \
             * The 3x3 "same" convolutions of CNNs take this path. */          \
            const int64_t n = o1n * o2n;                                                         \
            int64_t row = 0;                                                                     \
            for (int64_t ch = 0; ch < g->channels; ch++)                                         \
                for (int64_t a = 0; a < g->kernel[1]; a++)                                       \
                    for (int64_t b = 0; b < g->kernel[2]; b++, row++) {                          \
                        T *dst = col + row * ldcol;                                              \
                        const T *xc = x + ch * g->in_size;                                       \
                        const int64_t dc = b - g->pad_begin[2];                                  \
                        const int64_t off = (a - g->pad_begin[1]) * i2n + dc;                    \
                        int64_t lo = off < 0 ? -off : 0, hi = off > 0 ? n - off : n;             \
                        lo = lo > n ? n : lo;                                                    \
                        hi = hi < lo ? lo : hi;                                                  \
                        for (int64_t q = 0; q < lo; q++)                                         \
                            dst[q] = 0;                                                          \
                        memcpy(dst + lo, xc + lo + off, sizeof(T) * (size_t)(hi - lo));          \
                        for (int64_t q = hi; q < n; q++)                                         \
                            dst[q] = 0;                                                          \
                        for (int64_t o1 = 0; dc != 0 && o1 < o1n; o1++) {                        \
                            T *r = dst + o1 * o2n;                                               \
                            if (dc < 0)                                                          \
                                for (int64_t o2 = 0; o2 < -dc && o2 < o2n; o2++)                 \
                                    r[o2] = 0;                                                   \
                            else                                                                 \
                                for (int64_t o2 = o2n > dc ? o2n - dc : 0; o2 < o2n; o2++)       \
                                    r[o2] = 0;                                                   \
                        }                                                                        \
                    }                                                                            \
            return;                                                                              \
        }                                                                                        \
        int64_t row = 0;                                                                         \
        for (int64_t ch = 0; ch < g->channels; ch++) {                                           \
            const T *xc = x + ch * g->in_size; /* [in0, in1, in2] */                             \
            for (int64_t a = 0; a < g->kernel[0]; a++)                                           \
                for (int64_t b = 0; b < g->kernel[1]; b++)                                       \
                    for (int64_t e = 0; e < g->kernel[2]; e++, row++) {                          \
                        T *dst = col + row * ldcol; /* [out0, out1, out2] */                     \
                        int64_t off0 = a * g->dilation[0] - g->pad_begin[0];                     \
                        int64_t off1 = b * g->dilation[1] - g->pad_begin[1];                     \
                        int64_t off2 = e * g->dilation[2] - g->pad_begin[2];                     \
                        int64_t lo, hi;                                                          \
                        valid_range(off2, s2, i2n, o2n, &lo, &hi);                               \
                        for (int64_t o0 = 0; o0 < o0n; o0++) {                                   \
                            int64_t i0 = o0 * s0 + off0;                                         \
                            for (int64_t o1 = 0; o1 < o1n; o1++) {                               \
                                int64_t i1 = o1 * s1 + off1;                                     \
                                T *d = dst + (o0 * o1n + o1) * o2n;                              \
                                if (i0 < 0 || i0 >= g->in[0] || i1 < 0 || i1 >= i1n) {          \
                                    for (int64_t o2 = 0; o2 < o2n; o2++)                         \
                                        d[o2] = 0;                                               \
                                    continue;                                                    \
                                }                                                                \
                                const T *xr = xc + (i0 * i1n + i1) * i2n;                        \
                                /* Rows are short (7 to 56): loops and fixed-size copies     \
                                 * beat memset / memcpy calls (measured). */                     \
                                for (int64_t o2 = 0; o2 < lo; o2++)                              \
                                    d[o2] = 0;                                                   \
                                if (s2 == 1 && hi > lo) {                                        \
                                    const T *xs = xr + off2 + lo;                                \
                                    T *ds = d + lo;                                              \
                                    int64_t len = hi - lo, j = 0;                                \
                                    /* fixed-size memcpy: inlined as vector moves */             \
                                    for (; j + 8 <= len; j += 8)                                 \
                                        memcpy(ds + j, xs + j, 8 * sizeof(T));                   \
                                    for (; j < len; j++)                                         \
                                        ds[j] = xs[j];                                           \
                                } else {                                                         \
                                    for (int64_t o2 = lo; o2 < hi; o2++)                         \
                                        d[o2] = xr[o2 * s2 + off2];                              \
                                }                                                                \
                                for (int64_t o2 = hi; o2 < o2n; o2++)                            \
                                    d[o2] = 0;                                                   \
                            }                                                                    \
                        }                                                                        \
                    }                                                                            \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    void cs_col2im_##SUF(const cs_conv_geom *g, const T *col, int64_t ldcol, T *x)              \
    {                                                                                            \
        const int64_t i1n = g->in[1], i2n = g->in[2];                                            \
        const int64_t o0n = g->out[0], o1n = g->out[1], o2n = g->out[2];                         \
        const int64_t s0 = g->stride[0], s1 = g->stride[1], s2 = g->stride[2];                   \
        if (im2col_same_2d(g)) {                                                                 \
            /* The transpose of cs_im2col's shifted copy: a row with no      \
             * column shift adds back in one flat run; otherwise each output  \
             * row adds its o2n - |dc| columns that stay inside the input. */ \
            const int64_t n = o1n * o2n;                                                         \
            int64_t row = 0;                                                                     \
            for (int64_t ch = 0; ch < g->channels; ch++)                                         \
                for (int64_t a = 0; a < g->kernel[1]; a++)                                       \
                    for (int64_t b = 0; b < g->kernel[2]; b++, row++) {                          \
                        const T *src = col + row * ldcol;                                        \
                        T *xc = x + ch * g->in_size;                                             \
                        const int64_t dr = a - g->pad_begin[1], dc = b - g->pad_begin[2];        \
                        if (dc == 0) {                                                           \
                            const int64_t off = dr * i2n;                                        \
                            int64_t lo = off < 0 ? -off : 0, hi = off > 0 ? n - off : n;         \
                            for (int64_t q = lo; q < hi; q++)                                    \
                                xc[q + off] += src[q];                                           \
                            continue;                                                            \
                        }                                                                        \
                        const int64_t c0 = dc < 0 ? -dc : 0, c1 = dc > 0 ? o2n - dc : o2n;        \
                        for (int64_t o1 = 0; o1 < o1n && c0 < c1; o1++) {                        \
                            const int64_t i1 = o1 + dr;                                          \
                            if (i1 < 0 || i1 >= i1n)                                             \
                                continue;                                                        \
                            T *xr = xc + i1 * i2n + dc;                                          \
                            const T *sr = src + o1 * o2n;                                        \
                            for (int64_t o2 = c0; o2 < c1; o2++)                                 \
                                xr[o2] += sr[o2];                                                \
                        }                                                                        \
                    }                                                                            \
            return;                                                                              \
        }                                                                                        \
        int64_t row = 0;                                                                         \
        for (int64_t ch = 0; ch < g->channels; ch++) {                                           \
            T *xc = x + ch * g->in_size;                                                         \
            for (int64_t a = 0; a < g->kernel[0]; a++)                                           \
                for (int64_t b = 0; b < g->kernel[1]; b++)                                       \
                    for (int64_t e = 0; e < g->kernel[2]; e++, row++) {                          \
                        const T *src = col + row * ldcol;                                        \
                        int64_t off0 = a * g->dilation[0] - g->pad_begin[0];                     \
                        int64_t off1 = b * g->dilation[1] - g->pad_begin[1];                     \
                        int64_t off2 = e * g->dilation[2] - g->pad_begin[2];                     \
                        int64_t lo, hi;                                                          \
                        valid_range(off2, s2, i2n, o2n, &lo, &hi);                               \
                        for (int64_t o0 = 0; o0 < o0n; o0++) {                                   \
                            int64_t i0 = o0 * s0 + off0;                                         \
                            if (i0 < 0 || i0 >= g->in[0])                                        \
                                continue;                                                        \
                            for (int64_t o1 = 0; o1 < o1n; o1++) {                               \
                                int64_t i1 = o1 * s1 + off1;                                     \
                                if (i1 < 0 || i1 >= i1n)                                         \
                                    continue;                                                    \
                                const T *s = src + (o0 * o1n + o1) * o2n;                        \
                                T *xr = xc + (i0 * i1n + i1) * i2n;                              \
                                for (int64_t o2 = lo; o2 < hi; o2++)                             \
                                    xr[o2 * s2 + off2] += s[o2];                                 \
                            }                                                                    \
                        }                                                                        \
                    }                                                                            \
        }                                                                                        \
    }

DEFINE_IM2COL(float, f32)
DEFINE_IM2COL(double, f64)

/* Each patch row (c, tap) is one input channel scattered onto the output
 * grid at o*s - p + tap*d: rows are written whole (zeros first), so no
 * entry depends on what col held. */
#define DEFINE_IM2COL_TRANSPOSED(T, SUF)                                                         \
    void cs_im2col_transposed_##SUF(const cs_conv_geom *g, const T *x, T *col, int64_t ldcol)   \
    {                                                                                            \
        const int64_t i1n = g->in[1], i2n = g->in[2];                                            \
        const int64_t o0n = g->out[0], o1n = g->out[1], o2n = g->out[2];                         \
        const int64_t s2 = g->stride[2];                                                         \
        int64_t row = 0;                                                                         \
        for (int64_t ch = 0; ch < g->channels; ch++) {                                           \
            const T *xc = x + ch * g->out_size; /* [out0, out1, out2] */                         \
            for (int64_t a = 0; a < g->kernel[0]; a++)                                           \
                for (int64_t b = 0; b < g->kernel[1]; b++)                                       \
                    for (int64_t e = 0; e < g->kernel[2]; e++, row++) {                          \
                        T *dst = col + row * ldcol; /* [in0, in1, in2] */                        \
                        for (int64_t q = 0; q < g->in_size; q++)                                 \
                            dst[q] = 0;                                                          \
                        int64_t off0 = a * g->dilation[0] - g->pad_begin[0];                     \
                        int64_t off1 = b * g->dilation[1] - g->pad_begin[1];                     \
                        int64_t off2 = e * g->dilation[2] - g->pad_begin[2];                     \
                        int64_t lo, hi;                                                          \
                        valid_range(off2, s2, i2n, o2n, &lo, &hi);                               \
                        for (int64_t o0 = 0; o0 < o0n; o0++) {                                   \
                            int64_t i0 = o0 * g->stride[0] + off0;                               \
                            if (i0 < 0 || i0 >= g->in[0])                                        \
                                continue;                                                        \
                            for (int64_t o1 = 0; o1 < o1n; o1++) {                               \
                                int64_t i1 = o1 * g->stride[1] + off1;                           \
                                if (i1 < 0 || i1 >= i1n)                                         \
                                    continue;                                                    \
                                const T *xr = xc + (o0 * o1n + o1) * o2n;                        \
                                T *d = dst + (i0 * i1n + i1) * i2n;                              \
                                for (int64_t o2 = lo; o2 < hi; o2++)                             \
                                    d[o2 * s2 + off2] = xr[o2];                                  \
                            }                                                                    \
                        }                                                                        \
                    }                                                                            \
        }                                                                                        \
    }

DEFINE_IM2COL_TRANSPOSED(float, f32)
DEFINE_IM2COL_TRANSPOSED(double, f64)
