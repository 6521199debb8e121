/* The K-FAC module: the accumulation of a layer's factors and the dense
 * expansion G (x) A, over the layout its layer kind makes
 * (cs_layer_layout_make, interp/layer_kind.h).
 *
 * doc/design.md §2.4: the block of a layer is G (x) A over [W | b], rows = output
 * units, per group (Conv groups); a MatMul weight is the transpose of its
 * stored (in, out) tensor; Conv features are (c_in, kh, kw).  The factors
 * follow Martens & Grosse 2015, for Conv and sequence positions the expand
 * convention of Grosse & Martens 2016 / Eschenhagen et al. 2023:
 * A = (1/(N T)) sum abar abar^T, G = (1/N) sum_n sum_t E[delta delta^T].
 * Used by the engine's kfac representation, its Shampoo statistics and
 * diagonals; the preconditioners (precond/kron.c) read the same layout. */
#ifndef CS_CURV_KFAC_H
#define CS_CURV_KFAC_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "graph/graph.h"
#include "interp/layer_kind.h"
#include "tensor/tensor.h"

/* The layer's A comes from patches (of its input, or of a ConvTranspose's
 * equivalent convolution input). */
static inline bool cs_kfac_patches(const cs_layer_layout *s)
{
    return s->kfac == CS_KFAC_PATCHES || s->kfac == CS_KFAC_PATCHES_TRANSPOSED;
}

struct cs_ad;

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
#define CS_KFAC_ROW_BUFFER 512

/* Allocates F's factor and, when cap > 0, its row buffer; `what` names the
 * factor in an out-of-memory message. */
cs_status cs_kfac_factor_init(cs_kfac_factor *F, int64_t groups, int64_t d, int64_t cap, const char *what,
                              cs_err *err) CS_MUST_CHECK;
/* The buffered rows into the factor. */
void cs_kfac_factor_flush(cs_kfac_factor *F);
void cs_kfac_factor_free(cs_kfac_factor *F);

/* Scratch doubles the Conv gathers of layer l need for B samples, or a
 * recurrent layer's rows (0 for other kinds); X and w are the layer's
 * input and weight in the plan. */
cs_status cs_kfac_work_size(const cs_layer_layout *s, const cs_node *n, const cs_tensor *X, const cs_tensor *w,
                            int64_t out_numel, int64_t B, size_t *need, cs_err *err) CS_MUST_CHECK;

/* A += sum abar abar^T over the batch's samples and positions of the
 * layer input X ([B, ...]); *count += the rows added (B T).  n and w are
 * the layer's node and weight (Conv geometry); work holds
 * cs_kfac_work_size doubles. */
cs_status cs_kfac_add_A(const cs_layer_layout *s, const cs_node *n, const cs_tensor *X, const cs_tensor *w,
                        double *work, cs_kfac_factor *A, double *count, cs_err *err) CS_MUST_CHECK;

/* G += scale^2 sum delta delta^T from the layer's output gradient D. */
void cs_kfac_add_G(const cs_layer_layout *s, const cs_tensor *D, double scale, double *work, cs_kfac_factor *G);

/* CS_KFAC_SEQUENCE (a recurrent layer, whose rows the op computes inside):
 * grads false, A += sum abar abar^T over the rows the layer kind's
 * kfac_rows yields from ad's last forward, *count += rows per group;
 * grads true, G += scale^2 sum delta delta^T from its last backward
 * (count unused).  work holds cs_kfac_work_size doubles. */
cs_status cs_kfac_add_sequence(const struct cs_ad *ad, int l, const cs_layer_layout *s, bool grads, double scale,
                               double *work, cs_kfac_factor *F, double *count, cs_err *err) CS_MUST_CHECK;

/* The dense block G (x) A [W, W] in parameter order, zero across groups. */
void cs_kfac_expand(const cs_layer_layout *s, const double *A, const double *G, double *M);

/* Element i of a float or double tensor, as a double. */
static inline double cs_kfac_at(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

#endif
