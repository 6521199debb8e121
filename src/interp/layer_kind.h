/* The layer-kind table: what curvscope knows about each kind of layer.
 *
 * A layer (doc/design.md §2.3) is a node that owns trainable initializers.
 * Each kind is one cs_layer_kind row, defined in its own file under
 * interp/layers/ and listed in interp/layer_table.c; the layers of a graph
 * are found once, after loading (cs_layers_find), and every cs_layer points
 * at its row.  Nothing else compares op_type strings to tell layers apart:
 * the curvature engine, the importance scores, pruning and the
 * preconditioners read the row (or the layout it makes).
 *
 * The contract of a row:
 *   op_type          the ONNX operator of the layer's node (default domain)
 *   param_slots      node inputs that may hold trainable initializers, in
 *                    parameter order; -1 ends the list
 *   one_operand      the node is a layer only when exactly one of those
 *                    slots holds one (MatMul of an activation and a weight)
 *   fuse_bias_add    a following Add of a trainable initializer, when it is
 *                    the only consumer of the node's output, is the layer's
 *                    bias (its last parameter)
 *   layout           fills the layer's K-FAC and unit-wise layout (below);
 *                    a kind without a Kronecker form leaves kfac NONE
 *   per_sample_grads out [N, numel] (double): row n = sample n's gradient of
 *                    the layer's parameters, from the capture (the layer's
 *                    input and output gradient) of one backward whose seed
 *                    carries each sample's own dl_n/dz
 *   per_sample_bytes workspace per_sample_grads needs (ad->ps_buf), or NULL
 *   kfac_rows        CS_KFAC_SEQUENCE only: the rows whose outer products
 *                    sum to the factors (below), or NULL
 *   patch_bytes      bytes of the forward-time patch cache of the layer
 *                    (CS_AD_PATCH_CACHE), or NULL when it keeps none
 *   samples_any_axis per_sample_grads handles inputs whose samples are on
 *                    an axis other than 0 ([T, N, E] of sequence-first
 *                    attention), read from the capture's batch_axis
 *   prunable         magnitude / saliency pruning may zero its weights
 *                    (normalisation scales and biases are not pruned)
 *   param_ok         whether initializer value v, read by node k, is a
 *                    parameter of this kind (NULL: every float initializer
 *                    is; the elementwise kinds apply interp/param_rule.h)
 *   samples_on_output the samples' axis is read off the node's output, not
 *                    its input (Expand's input is a shape)
 *
 * Adding a kind: write interp/layers/KIND.c defining its row, add it to
 * the table in interp/layer_table.c (and the file to Makefile.am). */
#ifndef CS_INTERP_LAYER_KIND_H
#define CS_INTERP_LAYER_KIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph/graph.h"

struct cs_ad;
struct cs_layer_capture;

/* How K-FAC's input factor A is formed for a layer. */
typedef enum cs_kfac_input {
    CS_KFAC_NONE,     /* no Kronecker form (normalisation layers) */
    CS_KFAC_ROWS,     /* a linear map of the input's rows: [N * T, fan_in] */
    CS_KFAC_PATCHES,  /* a convolution: the input's patches (im2col) */
    /* a ConvTranspose: the patches of the convolution it equals, over the
     * stride-dilated, padded input (cs_im2col_transposed) */
    CS_KFAC_PATCHES_TRANSPOSED,
    CS_KFAC_ONEHOT,   /* an embedding: integer ids, A the diagonal of their counts */
    CS_KFAC_SEQUENCE, /* a recurrence: per time step, the rows the kind's kfac_rows yields */
} cs_kfac_input;

/* A layer's K-FAC and unit-wise layout (doc/design.md §2.4): the block is
 * G (x) A over [W | b] with rows = output units, per group; a MatMul weight
 * is the transpose of its stored (in, out) tensor; Conv features are
 * (c_in, kh, kw).  Ownership: kron and unit_idx belong to the layout and
 * are freed by cs_layer_layout_free. */
typedef struct cs_layer_layout {
    int64_t W;            /* the layer's trainable scalars */
    cs_kfac_input kfac;   /* NONE: groups .. kron are unset */
    int64_t groups, dG, fan_in, dA; /* per group; dA = fan_in + bias */
    bool bias;            /* the layer has a second parameter tensor */
    int64_t *kron;        /* [W][3]: (group, unit, feature) of each parameter */
    /* Unit-wise blocks: n_units blocks of unit_d slots, each slot the
     * parameter's index within the layer, -1 where absent; unit_idx NULL
     * when the kind has no unit-wise form. */
    int64_t n_units, unit_d;
    int64_t *unit_idx;    /* [n_units][unit_d] */
} cs_layer_layout;

typedef struct cs_layer_kind {
    const char *name;     /* "gemm", "matmul", "conv", ... */
    const char *op_type;
    const int *param_slots;
    bool one_operand;
    bool fuse_bias_add;
    cs_status (*layout)(const cs_graph *g, const cs_layer *L, cs_layer_layout *out, cs_err *err);
    cs_status (*per_sample_grads)(const struct cs_ad *ad, const cs_layer *L,
                                  const struct cs_layer_capture *cap, double *out, int64_t width,
                                  cs_err *err);
    size_t (*per_sample_bytes)(const struct cs_ad *ad, const cs_layer *L);
    /* The K-FAC rows of every group, from the last forward (grads false:
     * abar rows, out [groups][rows][dA]) or from the last backward (grads
     * true: the output-side delta rows, out [groups][rows][dG]); *rows is
     * the count per group (the same for every group: N T).  out holds
     * groups * N T * max(dA, dG) doubles; the rule may use ad->ps_buf. */
    cs_status (*kfac_rows)(const struct cs_ad *ad, const cs_layer *L, const struct cs_layer_layout *s, bool grads,
                           double *out, int64_t *rows, cs_err *err);
    size_t (*patch_bytes)(const struct cs_ad *ad, const cs_layer *L);
    /* per_sample_grads reads the samples on any axis of the input but the
     * last (cs_layer_capture.batch_axis); other kinds get axis 0 only, and
     * a layer whose input holds its samples elsewhere has no per-sample
     * gradients (an error naming it, not a wrong answer) */
    bool samples_any_axis;
    bool prunable;
    /* The layer's output s is linear in its parameters (so the loss
     * Hessian of its block is J^T H_s J exactly) and per_sample_grads
     * reads the output's gradient from the capture only: the exact Hessian
     * diagonal of repr_hessian.c applies.  False for recurrent layers. */
    bool linear_in_params;
    bool (*param_ok)(const cs_graph *g, int k, int v);
    bool samples_on_output;
} cs_layer_kind;

/* The kind whose node is op_type (default domain), or NULL. */
const cs_layer_kind *cs_layer_kind_find(const char *op_type);
int cs_layer_kind_count(void);
const cs_layer_kind *cs_layer_kind_at(int i);

/* Finds the graph's layers by the table and fills g->layers / g->params
 * (doc/design.md §2.3, with the parameter order).  Called once after loading,
 * by cs_interp_bind. */
cs_status cs_layers_find(cs_graph *g, cs_err *err) CS_MUST_CHECK;

/* Layer l's layout, from its kind (out is owned by the caller: free with
 * cs_layer_layout_free, also after a failure). */
cs_status cs_layer_layout_make(const cs_graph *g, int l, cs_layer_layout *out, cs_err *err) CS_MUST_CHECK;
void cs_layer_layout_free(cs_layer_layout *x);

/* ---- building blocks the kinds' layout rules share (layer_table.c) ---- */

/* Which input slot of node n holds value v, or -1. */
int cs_node_input_slot(const cs_node *n, int v);

/* A dense linear map with dG outputs and fan_in inputs whose weight is
 * stored [dG, fan_in] (out_major) or [fan_in, dG], and an optional bias of
 * bias_numel entries (dG, or 1 for a broadcast scalar: then no K-FAC form
 * but still a layout of one group).  Units are the output rows of [W | b]. */
cs_status cs_layout_linear(const cs_layer *L, int64_t dG, int64_t fan_in, bool out_major, int64_t bias_numel,
                           cs_layer_layout *out, cs_err *err) CS_MUST_CHECK;

/* Per-channel (scale_c, bias_c) unit pairs of a normalisation layer with
 * C scales (a single slot per unit without a matching bias). */
cs_status cs_layout_channel_pairs(const cs_graph *g, const cs_layer *L, cs_layer_layout *out,
                                  cs_err *err) CS_MUST_CHECK;

/* Unit lists read off kron: unit (group, unit) holds the features of its
 * output row of [W | b]. */
cs_status cs_layout_units_from_kron(cs_layer_layout *out, cs_err *err) CS_MUST_CHECK;

#endif
