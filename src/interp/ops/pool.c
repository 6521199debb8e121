/* MaxPool, AveragePool, GlobalAveragePool over 1 to 3 spatial axes.
 *
 * Windows use the geometry Conv uses (interp/window.h: cs_window_geom), with
 * ceil_mode.  Each (sample, channel) plane is pooled on its own; per output
 * position the taps that fall inside the input are found per axis in closed
 * form (tap_range), so the window loops carry no bounds tests.
 *
 * MaxPool (opset 1 to 22 semantics; Indices from 8, ceil_mode and dilations
 * from 10, int8/uint8 from 12):
 *   Y[n, c, o] = max over taps k inside the input of X[n, c, o*s - p + k*d].
 *   Padding never wins (it acts as -inf).  Ties go to the first maximal tap
 *   in row-major window order (strict >), the element PyTorch's backward
 *   sends the gradient to (doc/design.md §2.8); a NaN tap wins and stays, so NaN
 *   propagates as in PyTorch.  Indices (int64) flatten the input position:
 *   storage_order 0 is row-major over [N, C, D1, ..., Dd]; storage_order 1 is
 *   (n*C + c) * prod(D) + column-major offset over (D1, ..., Dd), i.e.
 *   i1 + i2*D1 + i3*D1*D2.  A window with no tap inside the input (only
 *   possible with padding >= window extent) gives the type's lowest value
 *   and index -1: a backward must skip it.
 *
 * AveragePool (opsets 1 to 22; dilations, from opset 19, are honoured):
 *   Y = sum of the taps inside the input / divisor, where the divisor counts
 *   taps inside the input (count_include_pad = 0) or inside the padded input
 *   [-pad_begin, in + pad_end) (count_include_pad = 1: padding counts, the
 *   overhang that ceil_mode adds does not, as in PyTorch and onnxruntime).
 *   A window with divisor 0 gives 0.  Sums accumulate in double.
 *
 * GlobalAveragePool: mean over every axis after the first two.
 *
 * Derivatives.  AveragePool and GlobalAveragePool are linear in X, MaxPool
 * piecewise linear (a routing of X's elements), so all three are
 * CS_OP_LINEAR: the vjp is the transposed map, the jvp the map itself on the
 * tangent, and the R-op has no second-order term.  Gradients flow through
 * float X only; MaxPool's int8/uint8 X and its Indices output carry none. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "interp/window.h"

/* Taps k in [lo, hi) of a window starting at input index start (stride d
 * between taps, n_k taps) that fall inside [0, n_in). */
static void tap_range(int64_t start, int64_t d, int64_t n_k, int64_t n_in, int64_t *lo,
                      int64_t *hi)
{
    int64_t a = start >= 0 ? 0 : (-start + d - 1) / d;
    int64_t b = n_in - start <= 0 ? 0 : (n_in - start + d - 1) / d;
    if (b > n_k)
        b = n_k;
    if (a > b)
        a = b;
    *lo = a;
    *hi = b;
}

/* Checks X [N, C, *spatial] and reads kernel_shape and the window
 * attributes; *out_dims receives Y's shape. */
static cs_status pool_geometry(const cs_op_call *c, cs_conv_geom *g, int64_t *out_dims,
                               cs_err *err)
{
    const cs_tensor *x = c->in[0];
    char bx[96];
    if (x->ndim < 3 || x->ndim > 2 + CS_CONV_AXES)
        return cs_op_fail(c, err, x->ndim < 3 ? CS_ERR_SHAPE : CS_ERR_UNSUPPORTED,
                          "X has shape %s; [N, C, D1 (, D2 (, D3))] expected",
                          cs_shape_str(x, bx, sizeof bx));
    int rank = x->ndim - 2, n_ks;
    const int64_t *ks = cs_node_attr_ints(c->node, "kernel_shape", &n_ks);
    if (!ks)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "kernel_shape attribute is missing");
    if (n_ks != rank)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "kernel_shape has %d values for %d spatial axes",
                          n_ks, rank);
    bool ceil_mode = cs_node_attr_int(c->node, "ceil_mode", 0) != 0;
    cs_status st = cs_window_geom(c, rank, x->dims + 2, ks, ceil_mode, g, err);
    if (st)
        return st;
    out_dims[0] = x->dims[0];
    out_dims[1] = x->dims[1];
    for (int i = 0; i < rank; i++)
        out_dims[2 + i] = g->out[CS_CONV_AXES - rank + i];
    return CS_OK;
}

static cs_status pool_check_io(const cs_op_call *c, int max_out, cs_err *err)
{
    if (c->n_in != 1 || !c->in[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects 1 input, got %d", c->n_in);
    if (c->n_out < 1 || c->n_out > max_out || !c->out[0])
        return cs_op_fail(c, err, CS_ERR_FORMAT, "expects %s output%s",
                          max_out == 1 ? "1" : "1 or 2", max_out == 1 ? "" : "s");
    return CS_OK;
}

/* A gradient or tangent of X (gx) or Y (gy), either may be NULL, must be
 * typed and shaped like its value: a mismatch is an engine bug, reported
 * rather than written past. */
static cs_status pool_check_ad(const cs_op_call *c, const cs_tensor *gx, const cs_tensor *gy,
                               cs_err *err)
{
    if (gx && (gx->dtype != c->in[0]->dtype || !cs_tensor_same_shape(gx, c->in[0]) || !gx->data))
        return cs_op_fail(c, err, CS_ERR_SHAPE,
                          "derivative of X does not match X's type and shape");
    if (gy && (gy->dtype != c->out[0]->dtype || !cs_tensor_same_shape(gy, c->out[0]) || !gy->data))
        return cs_op_fail(c, err, CS_ERR_SHAPE,
                          "derivative of Y does not match Y's type and shape");
    if ((gx || gy) && !cs_dtype_is_float(c->in[0]->dtype))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "no derivative through integer X of type %s",
                          cs_dtype_name(c->in[0]->dtype));
    return CS_OK;
}

/* The window geometry for a derivative rule, after checking the
 * derivatives it is given (pool_check_ad). */
static cs_status pool_ad_geometry(const cs_op_call *c, const cs_tensor *gx, const cs_tensor *gy,
                                  cs_conv_geom *g, cs_err *err)
{
    int64_t dims[2 + CS_CONV_AXES];
    cs_status st = pool_geometry(c, g, dims, err);
    return st ? st : pool_check_ad(c, gx, gy, err);
}

/* A zero tangent (jvp with tX = NULL). */
static cs_status pool_zero(cs_tensor *t)
{
    memset(t->data, 0, cs_tensor_bytes(t));
    return CS_OK;
}

/* ---- MaxPool ---- */

static bool maxpool_dtype_ok(cs_dtype t)
{
    return t == CS_DT_FLOAT || t == CS_DT_DOUBLE || t == CS_DT_UINT8 || t == CS_DT_INT8;
}

static cs_status maxpool_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = pool_check_io(c, 2, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0];
    if (!maxpool_dtype_ok(x->dtype))
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED,
                          "X has type %s (float, double, int8 or uint8 expected)",
                          cs_dtype_name(x->dtype));
    int64_t order = cs_node_attr_int(c->node, "storage_order", 0);
    if (order != 0 && order != 1)
        return cs_op_fail(c, err, CS_ERR_FORMAT, "storage_order is %lld (0 or 1 expected)",
                          (long long)order);
    cs_conv_geom g;
    int64_t dims[2 + CS_CONV_AXES];
    st = pool_geometry(c, &g, dims, err);
    if (st)
        return st;
    cs_tensor_set_shape(c->out[0], x->dtype, x->ndim, dims);
    if (c->n_out > 1 && c->out[1])
        cs_tensor_set_shape(c->out[1], CS_DT_INT64, x->ndim, dims);
    /* The rules recompute one plane's argmax offsets at a time, one plane
     * buffer per thread. */
    c->ad_scratch_bytes = (size_t)g.out_size * sizeof(int64_t) * (size_t)cs_omp_max_threads();
    return CS_OK;
}

/* The usual 2-D pooling window: 2x2, stride 2, every window inside the
 * input (no padding, no dilation).  Windows then tile the input without
 * overlap, which the fast paths below rely on. */
static bool maxpool_is_2x2(const cs_conv_geom *g)
{
    bool inside = true;
    for (int d = 0; d < 3; d++)
        inside = inside && g->pad_begin[d] == 0 && g->dilation[d] == 1 &&
                 (g->out[d] - 1) * g->stride[d] + g->kernel[d] <= g->in[d];
    return inside && g->kernel[0] == 1 && g->out[0] == 1 && g->kernel[1] == 2 &&
           g->kernel[2] == 2 && g->stride[1] == 2 && g->stride[2] == 2;
}

/* Tap v replaces the running best: strictly greater (the first maximum
 * wins), or NaN over a number (NaN propagates and stays).  Written as
 * "best is a number and v is not <= best" so that the fast loops below
 * vectorize (compares and masks, no branches). */
#define MAXPOOL_WINS(v, best) ((best) == (best) && !((v) <= (best)))
/* Tap v equals the window's maximum m, NaN matching NaN. */
#define MAXPOOL_IS(v, m) (((v) == (m)) | (((v) != (v)) & ((m) != (m))))

/* One output row of 2x2 pooling from input rows x0, x1 (y only), and its
 * routings: row loops with restrict arguments, so that they vectorize. */
#define DEFINE_MAXPOOL_2X2_ROW(T, SUF)                                                          \
    static void maxpool_2x2_row_##SUF(int64_t o2n, const T *restrict x0,                       \
                                      const T *restrict x1, T *restrict y)                      \
    {                                                                                           \
        for (int64_t o2 = 0; o2 < o2n; o2++) {                                                  \
            T a = x0[2 * o2], b = x0[2 * o2 + 1], c = x1[2 * o2], d = x1[2 * o2 + 1];           \
            T best = MAXPOOL_WINS(b, a) ? b : a;                                                \
            best = MAXPOOL_WINS(c, best) ? c : best;                                            \
            y[o2] = MAXPOOL_WINS(d, best) ? d : best;                                           \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    /* g0, g1 += J^T gy: the gradient passes down the taps until one is the \
     * window's maximum m. */                                               \
    static void maxpool_2x2_row_vjp_##SUF(int64_t o2n, const T *restrict x0,                   \
                                          const T *restrict x1, const T *restrict y,            \
                                          const T *restrict gy, T *restrict g0,                 \
                                          T *restrict g1)                                       \
    {                                                                                           \
        for (int64_t o2 = 0; o2 < o2n; o2++) {                                                  \
            /* all loads, then all stores: the vectorizer wants this shape */                   \
            const T m = y[o2], a = x0[2 * o2], b = x0[2 * o2 + 1], c = x1[2 * o2];              \
            int ea = MAXPOOL_IS(a, m), eb = MAXPOOL_IS(b, m), ec = MAXPOOL_IS(c, m);            \
            T v = gy[o2];                                                                       \
            const T va = ea ? v : (T)0;                                                         \
            v = ea ? (T)0 : v;                                                                  \
            const T vb = eb ? v : (T)0;                                                         \
            v = eb ? (T)0 : v;                                                                  \
            const T vc = ec ? v : (T)0;                                                         \
            v = ec ? (T)0 : v;                                                                  \
            g0[2 * o2] += va;                                                                   \
            g0[2 * o2 + 1] += vb;                                                               \
            g1[2 * o2] += vc;                                                                   \
            g1[2 * o2 + 1] += v;                                                                \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    /* ty = J (t0, t1): the tangent of the first tap equal to m. */                             \
    static void maxpool_2x2_row_jvp_##SUF(int64_t o2n, const T *restrict x0,                   \
                                          const T *restrict x1, const T *restrict y,            \
                                          const T *restrict t0, const T *restrict t1,           \
                                          T *restrict ty)                                       \
    {                                                                                           \
        for (int64_t o2 = 0; o2 < o2n; o2++) {                                                  \
            const T m = y[o2], a = x0[2 * o2], b = x0[2 * o2 + 1], c = x1[2 * o2];              \
            int ea = MAXPOOL_IS(a, m), eb = MAXPOOL_IS(b, m), ec = MAXPOOL_IS(c, m);            \
            const T ta = t0[2 * o2], tb = t0[2 * o2 + 1], tc = t1[2 * o2], td = t1[2 * o2 + 1];  \
            ty[o2] = ea ? ta : eb ? tb : ec ? tc : td;                                          \
        }                                                                                       \
    }                                                                                           \
                                                                                                \
    /* 2x2 pooling of planes without Indices. */                                                \
    static void maxpool_2x2_##SUF(const cs_conv_geom *g, int64_t planes, const T *x, T *y)     \
    {                                                                                           \
        const int64_t i2n = g->in[2], o1n = g->out[1], o2n = g->out[2];                         \
        for (int64_t pl = 0; pl < planes; pl++)                                                 \
            for (int64_t o1 = 0; o1 < o1n; o1++) {                                              \
                const T *x0 = x + pl * g->in_size + 2 * o1 * i2n;                               \
                maxpool_2x2_row_##SUF(o2n, x0, x0 + i2n, y + pl * g->out_size + o1 * o2n);      \
            }                                                                                   \
    }                                                                                           \
                                                                                                \
    /* The routing of 2x2 pooling, read off the forward's own Y rather than \
     * recomputed: the forward chose the first tap equal to the window's   \
     * maximum (a later equal tap never replaces it; an earlier one would   \
     * have been chosen).  gx += J^T gy (gy, gx given) or ty = J tx (tx, ty \
     * given); windows do not overlap, so each input gets at most one term. */ \
    static void maxpool_2x2_route_##SUF(const cs_conv_geom *g, int64_t planes, const T *x,     \
                                        const T *y, const T *gy, T *gx, const T *tx, T *ty)     \
    {                                                                                           \
        const int64_t i2n = g->in[2], o1n = g->out[1], o2n = g->out[2];                         \
        for (int64_t pl = 0; pl < planes; pl++)                                                 \
            for (int64_t o1 = 0; o1 < o1n; o1++) {                                              \
                const int64_t r = pl * g->in_size + 2 * o1 * i2n;                               \
                const int64_t q = pl * g->out_size + o1 * o2n;                                  \
                if (gx)                                                                         \
                    maxpool_2x2_row_vjp_##SUF(o2n, x + r, x + r + i2n, y + q, gy + q, gx + r,   \
                                              gx + r + i2n);                                    \
                else                                                                            \
                    maxpool_2x2_row_jvp_##SUF(o2n, x + r, x + r + i2n, y + q, tx + r,           \
                                              tx + r + i2n, ty + q);                            \
            }                                                                                   \
    }

DEFINE_MAXPOOL_2X2_ROW(float, f32)
DEFINE_MAXPOOL_2X2_ROW(double, f64)

/* x [planes, in], y [planes, out] or NULL, idx [planes, out] or NULL;
 * planes = N*C, so plane pl starts at flat input index pl * in_size.  With
 * one plane and row-major order, idx is the argmax's offset inside the
 * plane: what the derivative rules route through. */
#define DEFINE_MAXPOOL(T, SUF, LOWEST)                                                          \
    static void maxpool_##SUF(const cs_conv_geom *g, int64_t planes, bool col_major,           \
                              const T *x, T *y, int64_t *idx)                                   \
    {                                                                                           \
        const int64_t i1n = g->in[1], i2n = g->in[2];                                           \
        /* Windows entirely inside the input (no padding, no dilation) need \
         * no per-window clipping. */                                       \
        bool inside = true;                                                                     \
        for (int d = 0; d < 3; d++)                                                             \
            inside = inside && g->pad_begin[d] == 0 && g->dilation[d] == 1 &&                   \
                     (g->out[d] - 1) * g->stride[d] + g->kernel[d] <= g->in[d];                 \
        if (inside && !col_major) {                                                             \
            const int64_t k0 = g->kernel[0], k1 = g->kernel[1], k2 = g->kernel[2];              \
            for (int64_t pl = 0; pl < planes; pl++) {                                           \
                const T *xp = x + pl * g->in_size;                                              \
                int64_t q = pl * g->out_size;                                                   \
                for (int64_t o0 = 0; o0 < g->out[0]; o0++)                                      \
                    for (int64_t o1 = 0; o1 < g->out[1]; o1++)                                  \
                        for (int64_t o2 = 0; o2 < g->out[2]; o2++, q++) {                       \
                            int64_t s0 = o0 * g->stride[0], s1 = o1 * g->stride[1];             \
                            int64_t s2 = o2 * g->stride[2];                                     \
                            int64_t bo = (s0 * i1n + s1) * i2n + s2;                            \
                            T best = xp[bo];                                                    \
                            for (int64_t a = 0; a < k0; a++)                                    \
                                for (int64_t b = 0; b < k1; b++) {                              \
                                    int64_t row = ((s0 + a) * i1n + s1 + b) * i2n + s2;         \
                                    for (int64_t e = 0; e < k2; e++) {                          \
                                        T v = xp[row + e];                                      \
                                        /* strict >: first maximum wins; NaN wins */            \
                                        if (MAXPOOL_WINS(v, best)) {                            \
                                            best = v;                                           \
                                            bo = row + e;                                       \
                                        }                                                       \
                                    }                                                           \
                                }                                                               \
                            if (y)                                                              \
                                y[q] = best;                                                    \
                            if (idx)                                                            \
                                idx[q] = pl * g->in_size + bo;                                  \
                        }                                                                       \
            }                                                                                   \
            return;                                                                             \
        }                                                                                       \
        for (int64_t pl = 0; pl < planes; pl++) {                                               \
            const T *xp = x + pl * g->in_size;                                                  \
            T *yp = y ? y + pl * g->out_size : NULL;                                            \
            int64_t *ip = idx ? idx + pl * g->out_size : NULL;                                  \
            int64_t q = 0; /* flat output position */                                           \
            for (int64_t o0 = 0; o0 < g->out[0]; o0++) {                                        \
                int64_t st0 = o0 * g->stride[0] - g->pad_begin[0], lo0, hi0;                    \
                tap_range(st0, g->dilation[0], g->kernel[0], g->in[0], &lo0, &hi0);             \
                for (int64_t o1 = 0; o1 < g->out[1]; o1++) {                                    \
                    int64_t st1 = o1 * g->stride[1] - g->pad_begin[1], lo1, hi1;                \
                    tap_range(st1, g->dilation[1], g->kernel[1], i1n, &lo1, &hi1);              \
                    for (int64_t o2 = 0; o2 < g->out[2]; o2++, q++) {                           \
                        int64_t st2 = o2 * g->stride[2] - g->pad_begin[2], lo2, hi2;            \
                        tap_range(st2, g->dilation[2], g->kernel[2], i2n, &lo2, &hi2);          \
                        T best = LOWEST;                                                        \
                        int64_t bi0 = -1, bi1 = 0, bi2 = 0;                                     \
                        for (int64_t a = lo0; a < hi0; a++) {                                   \
                            int64_t i0 = st0 + a * g->dilation[0];                              \
                            for (int64_t b = lo1; b < hi1; b++) {                               \
                                int64_t i1 = st1 + b * g->dilation[1];                          \
                                const T *xr = xp + (i0 * i1n + i1) * i2n;                       \
                                for (int64_t e = lo2; e < hi2; e++) {                           \
                                    int64_t i2 = st2 + e * g->dilation[2];                      \
                                    T v = xr[i2];                                               \
                                    /* strict >: first maximum wins; v != v: NaN wins */        \
                                    if (bi0 < 0 || v > best || (v != v && best == best)) {      \
                                        best = v;                                               \
                                        bi0 = i0;                                               \
                                        bi1 = i1;                                               \
                                        bi2 = i2;                                               \
                                    }                                                           \
                                }                                                               \
                            }                                                                   \
                        }                                                                       \
                        if (yp)                                                                 \
                            yp[q] = best;                                                       \
                        if (ip) {                                                               \
                            int64_t off = col_major ? bi0 + (bi1 + bi2 * i1n) * g->in[0]        \
                                                    : (bi0 * i1n + bi1) * i2n + bi2;            \
                            ip[q] = bi0 < 0 ? -1 : pl * g->in_size + off;                       \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

DEFINE_MAXPOOL(float, f32, -INFINITY)
DEFINE_MAXPOOL(double, f64, -INFINITY)
DEFINE_MAXPOOL(uint8_t, u8, 0)
DEFINE_MAXPOOL(int8_t, i8, INT8_MIN)

static cs_status maxpool_forward(cs_op_call *c, cs_err *err)
{
    cs_conv_geom g;
    int64_t dims[2 + CS_CONV_AXES];
    cs_status st = pool_geometry(c, &g, dims, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0];
    /* Column-major over the model's spatial axes: the axes that
     * normalisation adds in front have extent 1 and index 0, so the
     * column-major offset over all three normalised axes is the same. */
    bool col_major = cs_node_attr_int(c->node, "storage_order", 0) == 1;
    int64_t planes = x->dims[0] * x->dims[1];
    int64_t *idx = c->n_out > 1 && c->out[1] ? c->out[1]->data : NULL;
    void *y = c->out[0]->data;
    if ((x->dtype == CS_DT_FLOAT || x->dtype == CS_DT_DOUBLE) && !idx) {
        /* Planes are independent: split them over threads (Indices hold
         * flat offsets across planes, so that case stays on one). */
        bool fast = maxpool_is_2x2(&g);
        bool f32 = x->dtype == CS_DT_FLOAT;
#pragma omp parallel if (cs_tensor_numel(x) >= CS_OMP_MIN_ELEMS)
        {
            int64_t lo, hi;
            cs_omp_slice(planes, &lo, &hi);
            if (fast && f32)
                maxpool_2x2_f32(&g, hi - lo, (const float *)x->data + lo * g.in_size,
                                (float *)y + lo * g.out_size);
            else if (fast)
                maxpool_2x2_f64(&g, hi - lo, (const double *)x->data + lo * g.in_size,
                                (double *)y + lo * g.out_size);
            else if (f32)
                maxpool_f32(&g, hi - lo, col_major, (const float *)x->data + lo * g.in_size,
                            (float *)y + lo * g.out_size, NULL);
            else
                maxpool_f64(&g, hi - lo, col_major, (const double *)x->data + lo * g.in_size,
                            (double *)y + lo * g.out_size, NULL);
        }
        return CS_OK;
    }
    switch (x->dtype) {
    case CS_DT_FLOAT: maxpool_f32(&g, planes, col_major, x->data, y, idx); break;
    case CS_DT_DOUBLE: maxpool_f64(&g, planes, col_major, x->data, y, idx); break;
    case CS_DT_UINT8: maxpool_u8(&g, planes, col_major, x->data, y, idx); break;
    case CS_DT_INT8: maxpool_i8(&g, planes, col_major, x->data, y, idx); break;
    default:
        return cs_op_fail(c, err, CS_ERR_UNSUPPORTED, "X has type %s", cs_dtype_name(x->dtype));
    }
    return CS_OK;
}

/* MaxPool's derivative is a routing: Y[q] = X[arg q], so J_X^T gY adds
 * gY[q] into X[arg q] and J tX reads tX[arg q], with arg the forward's own
 * choice (the first maximum: doc/design.md §2.8's kink convention) recomputed per
 * plane into scratch [out_size] rather than read from Indices, which the
 * graph may not ask for.  A window with no tap in the input (arg -1) routes
 * nothing and has a zero tangent.  The routing is locally constant in X, so
 * the op is CS_OP_LINEAR (piecewise linear) with no R-op term. */
#define DEFINE_MAXPOOL_AD(T, SUF)                                                               \
    static void maxpool_route_##SUF(const cs_conv_geom *g, int64_t planes, const T *x,         \
                                    const T *y, int64_t *arg_all, const T *gy, T *gx,           \
                                    const T *tx, T *ty)                                         \
    {                                                                                           \
        /* planes are independent: split over threads, each with its own \
         * argmax buffer */                                                \
        _Pragma("omp parallel if (planes * g->in_size >= CS_OMP_MIN_ELEMS)")                    \
        {                                                                                       \
        int64_t lo, hi;                                                                         \
        cs_omp_slice(planes, &lo, &hi);                                                         \
        int64_t *arg = arg_all + (int64_t)cs_omp_thread() * g->out_size;                        \
        if (y) /* 2x2 windows: the forward's Y tells the argmax */                              \
            maxpool_2x2_route_##SUF(g, hi - lo, x + lo * g->in_size, y + lo * g->out_size,       \
                                    gx ? gy + lo * g->out_size : NULL,                          \
                                    gx ? gx + lo * g->in_size : NULL,                           \
                                    gx ? NULL : tx + lo * g->in_size,                           \
                                    gx ? NULL : ty + lo * g->out_size);                         \
        for (int64_t pl = lo; pl < hi && !y; pl++) {                                            \
            maxpool_##SUF(g, 1, false, x + pl * g->in_size, NULL, arg);                         \
            if (gx) {                                                                           \
                const T *gyp = gy + pl * g->out_size;                                           \
                T *gxp = gx + pl * g->in_size;                                                  \
                for (int64_t q = 0; q < g->out_size; q++)                                       \
                    if (arg[q] >= 0)                                                            \
                        gxp[arg[q]] += gyp[q];                                                  \
            } else {                                                                            \
                const T *txp = tx + pl * g->in_size;                                            \
                T *typ = ty + pl * g->out_size;                                                 \
                for (int64_t q = 0; q < g->out_size; q++)                                       \
                    typ[q] = arg[q] >= 0 ? txp[arg[q]] : (T)0;                                  \
            }                                                                                   \
        }                                                                                       \
        }                                                                                       \
    }

DEFINE_MAXPOOL_AD(float, f32)
DEFINE_MAXPOOL_AD(double, f64)

/* The forward's Y when the 2x2 routing can read the argmax off it, else
 * NULL (the rules then recompute it). */
static const void *maxpool_route_y(const cs_op_call *c, const cs_conv_geom *g)
{
    bool col_major = cs_node_attr_int(c->node, "storage_order", 0) == 1;
    return !col_major && maxpool_is_2x2(g) && c->out[0] ? c->out[0]->data : NULL;
}

static cs_status maxpool_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_conv_geom g;
    cs_status st = pool_ad_geometry(c, a->gin[0], a->gout[0], &g, err);
    if (st || !a->gin[0] || !a->gout[0])
        return st;
    const cs_tensor *x = c->in[0];
    int64_t planes = x->dims[0] * x->dims[1];
    if (x->dtype == CS_DT_FLOAT)
        maxpool_route_f32(&g, planes, x->data, maxpool_route_y(c, &g), c->scratch,
                          a->gout[0]->data, a->gin[0]->data, NULL, NULL);
    else
        maxpool_route_f64(&g, planes, x->data, maxpool_route_y(c, &g), c->scratch,
                          a->gout[0]->data, a->gin[0]->data, NULL, NULL);
    return CS_OK;
}

/* Only Y has a tangent; Indices is an integer output and gets none. */
static cs_status maxpool_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_conv_geom g;
    cs_status st = pool_ad_geometry(c, a->tin[0], a->tout[0], &g, err);
    if (st || !a->tout[0])
        return st;
    if (!a->tin[0])
        return pool_zero(a->tout[0]);
    const cs_tensor *x = c->in[0];
    int64_t planes = x->dims[0] * x->dims[1];
    if (x->dtype == CS_DT_FLOAT)
        maxpool_route_f32(&g, planes, x->data, maxpool_route_y(c, &g), c->scratch, NULL, NULL,
                          a->tin[0]->data, a->tout[0]->data);
    else
        maxpool_route_f64(&g, planes, x->data, maxpool_route_y(c, &g), c->scratch, NULL, NULL,
                          a->tin[0]->data, a->tout[0]->data);
    return CS_OK;
}

const cs_op_def cs_op_MaxPool = {
    .name = "MaxPool",
    .min_opset = 1,
    .flags = CS_OP_LINEAR,
    .infer = maxpool_infer,
    .forward = maxpool_forward,
    .vjp = maxpool_vjp,
    .jvp = maxpool_jvp,
};

/* ---- AveragePool ---- */

static cs_status avgpool_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = pool_check_io(c, 1, err);
    if (!st)
        st = cs_op_need_float(c, 0, err);
    if (st)
        return st;
    cs_conv_geom g;
    int64_t dims[2 + CS_CONV_AXES];
    st = pool_geometry(c, &g, dims, err);
    if (st)
        return st;
    cs_tensor_set_shape(c->out[0], c->in[0]->dtype, c->in[0]->ndim, dims);
    return CS_OK;
}

/* Forward (y != NULL): y [planes, out] = pool(x [planes, in]).
 * Adjoint (y == NULL): gx [planes, in] += pool^T(gy [planes, out]), each
 * output's gradient spread over the same taps with the same divisor.  One
 * kernel for both, so the transpose walks exactly the forward's windows. */
#define DEFINE_AVGPOOL(T, SUF)                                                                  \
    static void avgpool_##SUF(const cs_conv_geom *g, int64_t planes, bool include_pad,         \
                              const T *x, T *y, const T *gy, T *gx)                             \
    {                                                                                           \
        const int64_t i1n = g->in[1], i2n = g->in[2];                                           \
        for (int64_t pl = 0; pl < planes; pl++) {                                               \
            const T *xp = y ? x + pl * g->in_size : NULL;                                       \
            T *yp = y ? y + pl * g->out_size : NULL;                                            \
            const T *gyp = y ? NULL : gy + pl * g->out_size;                                    \
            T *gxp = y ? NULL : gx + pl * g->in_size;                                           \
            int64_t q = 0;                                                                      \
            for (int64_t o0 = 0; o0 < g->out[0]; o0++) {                                        \
                int64_t st0 = o0 * g->stride[0] - g->pad_begin[0], lo0, hi0, plo0, phi0;        \
                tap_range(st0, g->dilation[0], g->kernel[0], g->in[0], &lo0, &hi0);             \
                /* taps inside the padded input: shift the origin by pad_begin */               \
                tap_range(st0 + g->pad_begin[0], g->dilation[0], g->kernel[0],                  \
                          g->in[0] + g->pad_begin[0] + g->pad_end[0], &plo0, &phi0);            \
                for (int64_t o1 = 0; o1 < g->out[1]; o1++) {                                    \
                    int64_t st1 = o1 * g->stride[1] - g->pad_begin[1], lo1, hi1, plo1, phi1;    \
                    tap_range(st1, g->dilation[1], g->kernel[1], i1n, &lo1, &hi1);              \
                    tap_range(st1 + g->pad_begin[1], g->dilation[1], g->kernel[1],              \
                              i1n + g->pad_begin[1] + g->pad_end[1], &plo1, &phi1);             \
                    for (int64_t o2 = 0; o2 < g->out[2]; o2++, q++) {                           \
                        int64_t st2 = o2 * g->stride[2] - g->pad_begin[2], lo2, hi2, plo2, phi2; \
                        tap_range(st2, g->dilation[2], g->kernel[2], i2n, &lo2, &hi2);          \
                        tap_range(st2 + g->pad_begin[2], g->dilation[2], g->kernel[2],          \
                                  i2n + g->pad_begin[2] + g->pad_end[2], &plo2, &phi2);         \
                        int64_t count = include_pad                                             \
                                            ? (phi0 - plo0) * (phi1 - plo1) * (phi2 - plo2)     \
                                            : (hi0 - lo0) * (hi1 - lo1) * (hi2 - lo2);          \
                        if (!yp) { /* adjoint: dY[q]/dX[tap] = 1 / count */                     \
                            if (count == 0)                                                     \
                                continue;                                                       \
                            T share = (T)(gyp[q] / (double)count);                              \
                            for (int64_t a = lo0; a < hi0; a++) {                               \
                                int64_t i0 = st0 + a * g->dilation[0];                          \
                                for (int64_t b = lo1; b < hi1; b++) {                           \
                                    int64_t i1 = st1 + b * g->dilation[1];                      \
                                    T *gr = gxp + (i0 * i1n + i1) * i2n;                        \
                                    for (int64_t e = lo2; e < hi2; e++)                         \
                                        gr[st2 + e * g->dilation[2]] += share;                  \
                                }                                                               \
                            }                                                                   \
                            continue;                                                           \
                        }                                                                       \
                        double sum = 0;                                                         \
                        for (int64_t a = lo0; a < hi0; a++) {                                   \
                            int64_t i0 = st0 + a * g->dilation[0];                              \
                            for (int64_t b = lo1; b < hi1; b++) {                               \
                                int64_t i1 = st1 + b * g->dilation[1];                          \
                                const T *xr = xp + (i0 * i1n + i1) * i2n;                       \
                                for (int64_t e = lo2; e < hi2; e++)                             \
                                    sum += xr[st2 + e * g->dilation[2]];                        \
                            }                                                                   \
                        }                                                                       \
                        yp[q] = count > 0 ? (T)(sum / (double)count) : (T)0;                    \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

DEFINE_AVGPOOL(float, f32)
DEFINE_AVGPOOL(double, f64)

static cs_status avgpool_forward(cs_op_call *c, cs_err *err)
{
    cs_conv_geom g;
    int64_t dims[2 + CS_CONV_AXES];
    cs_status st = pool_geometry(c, &g, dims, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0];
    bool include_pad = cs_node_attr_int(c->node, "count_include_pad", 0) != 0;
    int64_t planes = x->dims[0] * x->dims[1];
    if (x->dtype == CS_DT_FLOAT)
        avgpool_f32(&g, planes, include_pad, x->data, c->out[0]->data, NULL, NULL);
    else
        avgpool_f64(&g, planes, include_pad, x->data, c->out[0]->data, NULL, NULL);
    return CS_OK;
}

/* AveragePool is linear: gX += P^T gY with the forward's windows and
 * divisors; tY = P tX is the forward on the tangent. */
static cs_status avgpool_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_conv_geom g;
    cs_status st = pool_ad_geometry(c, a->gin[0], a->gout[0], &g, err);
    if (st || !a->gin[0] || !a->gout[0])
        return st;
    const cs_tensor *x = c->in[0];
    bool include_pad = cs_node_attr_int(c->node, "count_include_pad", 0) != 0;
    int64_t planes = x->dims[0] * x->dims[1];
    if (x->dtype == CS_DT_FLOAT)
        avgpool_f32(&g, planes, include_pad, NULL, NULL, a->gout[0]->data, a->gin[0]->data);
    else
        avgpool_f64(&g, planes, include_pad, NULL, NULL, a->gout[0]->data, a->gin[0]->data);
    return CS_OK;
}

static cs_status avgpool_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_conv_geom g;
    cs_status st = pool_ad_geometry(c, a->tin[0], a->tout[0], &g, err);
    if (st || !a->tout[0])
        return st;
    if (!a->tin[0])
        return pool_zero(a->tout[0]);
    const cs_tensor *x = c->in[0];
    bool include_pad = cs_node_attr_int(c->node, "count_include_pad", 0) != 0;
    int64_t planes = x->dims[0] * x->dims[1];
    if (x->dtype == CS_DT_FLOAT)
        avgpool_f32(&g, planes, include_pad, a->tin[0]->data, a->tout[0]->data, NULL, NULL);
    else
        avgpool_f64(&g, planes, include_pad, a->tin[0]->data, a->tout[0]->data, NULL, NULL);
    return CS_OK;
}

const cs_op_def cs_op_AveragePool = {
    .name = "AveragePool",
    .min_opset = 1,
    .flags = CS_OP_LINEAR,
    .infer = avgpool_infer,
    .forward = avgpool_forward,
    .vjp = avgpool_vjp,
    .jvp = avgpool_jvp,
};

/* ---- GlobalAveragePool ---- */

static cs_status gap_infer(cs_op_call *c, cs_err *err)
{
    cs_status st = pool_check_io(c, 1, err);
    if (!st)
        st = cs_op_need_float(c, 0, err);
    if (st)
        return st;
    const cs_tensor *x = c->in[0];
    char bx[96];
    if (x->ndim < 3)
        return cs_op_fail(c, err, CS_ERR_SHAPE, "X has shape %s; [N, C, D1, ...] expected",
                          cs_shape_str(x, bx, sizeof bx));
    int64_t dims[CS_MAX_DIMS];
    dims[0] = x->dims[0];
    dims[1] = x->dims[1];
    for (int i = 2; i < x->ndim; i++)
        dims[i] = 1;
    cs_tensor_set_shape(c->out[0], x->dtype, x->ndim, dims);
    return CS_OK;
}

#define DEFINE_GAP(T, SUF)                                                                      \
    static void gap_##SUF(int64_t planes, int64_t plane_size, const T *x, T *y)                 \
    {                                                                                           \
        for (int64_t pl = 0; pl < planes; pl++) {                                               \
            const T *xp = x + pl * plane_size;                                                  \
            double sum = 0;                                                                     \
            for (int64_t i = 0; i < plane_size; i++)                                            \
                sum += xp[i];                                                                   \
            y[pl] = plane_size > 0 ? (T)(sum / (double)plane_size) : (T)0;                      \
        }                                                                                       \
    }

DEFINE_GAP(float, f32)
DEFINE_GAP(double, f64)

static cs_status gap_forward(cs_op_call *c, cs_err *err)
{
    (void)err; /* validated by gap_infer; nothing can fail here */
    const cs_tensor *x = c->in[0];
    int64_t planes = x->dims[0] * x->dims[1];
    int64_t plane_size = planes > 0 ? cs_tensor_numel(x) / planes : 0;
    if (x->dtype == CS_DT_FLOAT)
        gap_f32(planes, plane_size, x->data, c->out[0]->data);
    else
        gap_f64(planes, plane_size, x->data, c->out[0]->data);
    return CS_OK;
}

/* Linear: gX[n, c, :] += gY[n, c] / prod(spatial); tY is the forward on tX. */
#define DEFINE_GAP_VJP(T, SUF)                                                                  \
    static void gap_vjp_##SUF(int64_t planes, int64_t plane_size, const T *gy, T *gx)           \
    {                                                                                           \
        for (int64_t pl = 0; pl < planes; pl++) {                                               \
            T share = (T)(gy[pl] / (double)plane_size);                                         \
            T *gxp = gx + pl * plane_size;                                                      \
            for (int64_t i = 0; i < plane_size; i++)                                            \
                gxp[i] += share;                                                                \
        }                                                                                       \
    }

DEFINE_GAP_VJP(float, f32)
DEFINE_GAP_VJP(double, f64)

static cs_status gap_vjp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_status st = pool_check_ad(c, a->gin[0], a->gout[0], err);
    if (st || !a->gin[0] || !a->gout[0])
        return st;
    const cs_tensor *x = c->in[0];
    int64_t planes = x->dims[0] * x->dims[1];
    int64_t plane_size = planes > 0 ? cs_tensor_numel(x) / planes : 0;
    if (plane_size == 0)
        return CS_OK;
    if (x->dtype == CS_DT_FLOAT)
        gap_vjp_f32(planes, plane_size, a->gout[0]->data, a->gin[0]->data);
    else
        gap_vjp_f64(planes, plane_size, a->gout[0]->data, a->gin[0]->data);
    return CS_OK;
}

static cs_status gap_jvp(cs_op_call *c, const cs_op_ad *a, cs_err *err)
{
    cs_status st = pool_check_ad(c, a->tin[0], a->tout[0], err);
    if (st || !a->tout[0])
        return st;
    if (!a->tin[0])
        return pool_zero(a->tout[0]);
    const cs_tensor *x = c->in[0];
    int64_t planes = x->dims[0] * x->dims[1];
    int64_t plane_size = planes > 0 ? cs_tensor_numel(x) / planes : 0;
    if (x->dtype == CS_DT_FLOAT)
        gap_f32(planes, plane_size, a->tin[0]->data, a->tout[0]->data);
    else
        gap_f64(planes, plane_size, a->tin[0]->data, a->tout[0]->data);
    return CS_OK;
}

const cs_op_def cs_op_GlobalAveragePool = {
    .name = "GlobalAveragePool",
    .min_opset = 1,
    .flags = CS_OP_LINEAR,
    .infer = gap_infer,
    .forward = gap_forward,
    .vjp = gap_vjp,
    .jvp = gap_jvp,
};
