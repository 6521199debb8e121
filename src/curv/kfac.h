/* The K-FAC module: a layer's Kronecker layout, the accumulation of its
 * factors, and the dense expansion G (x) A.
 *
 * DESIGN.md: the block of a layer is G (x) A over [W | b], rows = output
 * units, per group (Conv groups); a MatMul weight is the transpose of its
 * stored (in, out) tensor; Conv features are (c_in, kh, kw).  The factors
 * follow Martens & Grosse 2015, for Conv and sequence positions the expand
 * convention of Grosse & Martens 2016 / Eschenhagen et al. 2023:
 * A = (1/(N T)) sum abar abar^T, G = (1/N) sum_n sum_t E[delta delta^T].
 * Used by the engine's kfac representation, its Shampoo statistics and
 * diagonals, and through cs_curv_layer_layout by the step diagnostics and
 * fine-tuning. */
#ifndef CS_CURV_KFAC_H
#define CS_CURV_KFAC_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "graph/graph.h"
#include "tensor/tensor.h"

typedef enum cs_kfac_kind {
    CS_KFAC_GEMM,
    CS_KFAC_MATMUL,
    CS_KFAC_CONV,
    CS_KFAC_NONE /* normalisation layers: no K-FAC layout */
} cs_kfac_kind;

/* One layer's layout.  Owns kron and unit_idx (cs_kfac_layout_free). */
typedef struct cs_kfac_layout {
    int64_t W, offset;       /* parameters, and the first one's index in the network */
    cs_kfac_kind kind;
    bool kfac_ok;            /* the layout is a Kronecker product (bias matches the units) */
    int64_t groups, dG, dA, fan_in; /* per group; dA = fan_in + bias */
    bool bias;
    bool transposed;         /* CONV of a ConvTranspose: patches by cs_im2col_transposed */
    int64_t *kron;           /* [W][3]: each parameter's (group, unit, feature); NULL for NONE */
    /* unit blocks: n_units of unit_d parameters each (output unit rows of
     * [W | b], or a normalisation layer's (scale_c, bias_c) pairs) */
    int64_t n_units, unit_d;
    int64_t *unit_idx;       /* [n_units][unit_d], -1 where absent; NULL without unit blocks */
} cs_kfac_layout;

/* Layer l's layout into *s (filled from zero; on failure the caller still
 * frees it with cs_kfac_layout_free). */
cs_status cs_kfac_layer_geometry(const cs_graph *g, int l, cs_kfac_layout *s, cs_err *err) CS_MUST_CHECK;
void cs_kfac_layout_free(cs_kfac_layout *s);

/* The Kronecker layout of layer l as its layer-kind row states it
 * (interp/layer_kind.h, read in kfac_row.c: the two headers' names
 * collide): *ok false when the row gives none; else the per-group sizes and
 * the [W][3] index, owned by the caller (free). */
cs_status cs_kfac_row_layout(const cs_graph *g, int l, bool *ok, int64_t *groups, int64_t *dG, int64_t *fan_in,
                             int64_t **kron, cs_err *err) CS_MUST_CHECK;

/* Layer l's input value (the operand of its node that is not the weight). */
int cs_kfac_input_value(const cs_graph *g, int l);

/* The upper triangle of C [n, n] += X^T X, X [k, n] row-major, the result
 * independent of the thread count. */
void cs_kfac_factor_syrk(double *C, int64_t n, int64_t k, const double *X);

/* One factor being summed: groups upper triangles of [d, d], and for Gemm /
 * MatMul the rows waiting for one syrk.  Owns M and rows. */
typedef struct cs_kfac_factor {
    int64_t groups, d;
    double *M;               /* [groups][d][d] */
    double *rows;            /* [cap, d], NULL for Conv */
    int64_t cap, n;
} cs_kfac_factor;

/* Rows a Gemm / MatMul factor buffers at least. */
#define CS_KFAC_ROWS 512

/* Allocates F's factor and, when cap > 0, its row buffer; `what` names the
 * factor in an out-of-memory message. */
cs_status cs_kfac_factor_init(cs_kfac_factor *F, int64_t groups, int64_t d, int64_t cap, const char *what,
                              cs_err *err) CS_MUST_CHECK;
/* The buffered rows into the factor. */
void cs_kfac_factor_flush(cs_kfac_factor *F);
void cs_kfac_factor_free(cs_kfac_factor *F);

/* Scratch doubles the Conv gathers of layer l need for B samples (0 for
 * other kinds); X and w are the layer's input and weight in the plan. */
cs_status cs_kfac_work_size(const cs_kfac_layout *s, const cs_node *n, const cs_tensor *X, const cs_tensor *w,
                            int64_t out_numel, int64_t B, size_t *need, cs_err *err) CS_MUST_CHECK;

/* A += sum abar abar^T over the batch's samples and positions of the
 * layer input X ([B, ...]); *count += the rows added (B T).  n and w are
 * the layer's node and weight (Conv geometry); work holds
 * cs_kfac_work_size doubles. */
cs_status cs_kfac_add_A(const cs_kfac_layout *s, const cs_node *n, const cs_tensor *X, const cs_tensor *w,
                        double *work, cs_kfac_factor *A, double *count, cs_err *err) CS_MUST_CHECK;

/* G += scale^2 sum delta delta^T from the layer's output gradient D. */
void cs_kfac_add_G(const cs_kfac_layout *s, const cs_tensor *D, double scale, double *work, cs_kfac_factor *G);

/* The dense block G (x) A [W, W] in parameter order, zero across groups. */
void cs_kfac_expand(const cs_kfac_layout *s, const double *A, const double *G, double *M);

/* Element i of a float or double tensor, as a double. */
static inline double cs_kfac_at(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

#endif
