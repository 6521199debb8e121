/* Automatic differentiation over a prepared plan.
 *
 * Reverse mode (vector-Jacobian products), forward mode (Jacobian-vector
 * products) and the R-operator of the reverse pass (Pearlmutter 1994), which
 * together give exact Hessian-vector products: with tangents t = R{x} from a
 * forward-mode pass seeded by the parameter direction v, the gradient's
 * directional derivative R{g} flows backward as
 *     R{gin} = vjp(R{gout}) + rop(R{in}, gout),
 * seeded at the logits with R{dl/dz} = Lambda_z (J v), Lambda_z the loss
 * Hessian; R{g} at the parameters is H v.
 *
 * Only the values that lie on a path between a parameter (or, on request, a
 * graph input) and the seed value get gradient buffers; only values that
 * depend on parameters get tangent buffers.  All buffers are planned once,
 * in cs_ad_init, from the plan's shapes: the passes never allocate. */
#ifndef CS_INTERP_AUTODIFF_H
#define CS_INTERP_AUTODIFF_H

#include <stdbool.h>
#include <stdint.h>

#include "base/arena.h"
#include "interp/plan.h"

enum {
    CS_AD_GRAD = 1u << 0,        /* reverse mode */
    CS_AD_TANGENT = 1u << 1,     /* forward mode */
    CS_AD_HVP = 1u << 2,         /* R-backward (implies both above) */
    CS_AD_INPUT_GRAD = 1u << 3,  /* also gradients w.r.t. the graph inputs */
    /* Keep each Conv layer's patch matrices for cs_ad_per_sample_grads
     * from one forward to the next (every seed of a forward reuses them),
     * up to CS_AD_PATCH_BYTES in all. */
    CS_AD_PATCH_CACHE = 1u << 4,
};

#define CS_AD_PATCH_BYTES ((size_t)64 << 20)

typedef struct cs_ad {
    cs_plan *p;               /* borrowed */
    const cs_graph *g;
    unsigned mode;
    int seed_value;           /* value whose gradient seeds the backward (the logits) */
    bool *need_grad;          /* per value */
    bool *need_tan;           /* per value: depends on a parameter */
    bool *tan_live;           /* per value, per jvp pass: tangent not known to be zero */
    bool *node_bwd;           /* per node: runs in the backward pass */
    cs_tensor *grad;          /* per value: gradient buffer (data NULL if none) */
    cs_tensor *tan;           /* per value: tangent buffer */
    cs_tensor *tgrad;         /* per value: R{gradient} buffer */
    bool param_grads;         /* backward fills parameter gradients (else captures only) */
    void *scratch;            /* workspace of the rules, max over nodes */
    size_t scratch_bytes;
    void *ps_buf;             /* workspace of cs_ad_per_sample_grads, max over layers */
    size_t ps_bytes;
    /* Per layer: the axis of its input that holds the samples (0 for
     * [N, ...]; 1 for the [T, N, E] of sequence-first attention), or -1
     * when no single axis does (rows of samples and positions flattened
     * together, [T * N, E]) or the plan has no batch. */
    int *batch_axis;
    double **patches;         /* CS_AD_PATCH_CACHE: per layer, Conv patches [N, groups, K, T] or NULL */
    uint64_t *patches_at;     /* per layer: the plan's forward_count they were made at */
    cs_arena arena;
} cs_ad;

/* Plan the passes for p (whose forward must be run before each backward).
 * seed_value: value index of the logits.  mode: CS_AD_* flags. */
cs_status cs_ad_init(cs_ad *ad, cs_plan *p, int seed_value, unsigned mode, cs_err *err)
    CS_MUST_CHECK;
void cs_ad_free(cs_ad *ad);

/* The seed buffer: write dLoss/dz (shape of the seed value) here before
 * cs_ad_backward. */
cs_tensor *cs_ad_seed(cs_ad *ad);

/* Reverse pass from the seed.  Afterwards ad->grad[v] holds dLoss/dv for
 * every value with need_grad, the parameters' ones too when
 * ad->param_grads is true (the default).  Every gradient buffer is reset
 * first. */
cs_status cs_ad_backward(cs_ad *ad, cs_err *err) CS_MUST_CHECK;

/* Forward-mode pass: tangents of every parameter-dependent value for the
 * parameter direction v (double, g->n_param_scalars entries in doc/design.md §2.3's
 * parameter order).  Parameters of layers whose v block is zero are skipped
 * cheaply when `layer` is >= 0 (v is then read only for that layer, and
 * only nodes downstream of it run). */
cs_status cs_ad_jvp(cs_ad *ad, const double *v, int layer, cs_err *err) CS_MUST_CHECK;

/* Forward-mode pass from one value: the caller has written the tangent
 * into ad->tan[value] (which must exist: the value depends on a
 * parameter); every value downstream of it gets its tangent, no other is
 * live.  With cs_ad_rbackward after it, ad->tgrad[value] is the loss
 * Hessian with respect to that value times the tangent. */
cs_status cs_ad_jvp_from_value(cs_ad *ad, int value, cs_err *err) CS_MUST_CHECK;

/* The R-backward: after cs_ad_backward and cs_ad_jvp at the same point,
 * with R{dLoss/dz} written into cs_ad_rseed(ad), fills ad->tgrad.  At the
 * parameters, tgrad is the Hessian-vector product of the loss whose
 * gradient seeded the backward. */
cs_tensor *cs_ad_rseed(cs_ad *ad);
cs_status cs_ad_rbackward(cs_ad *ad, cs_err *err) CS_MUST_CHECK;

/* Add (scale times) the parameter gradients (ad->grad or, with r = true,
 * ad->tgrad) into the flat double vector out, in parameter order. */
void cs_ad_add_param_vector(const cs_ad *ad, bool r, double scale, double *out);

/* Add (scale times) layer l's block of the parameter gradients (r: of
 * ad->tgrad) into out[0 .. layer numel). */
void cs_ad_add_layer_vector(const cs_ad *ad, int layer, bool r, double scale, double *out);

/* ---- per-layer captures (ASDL's extensions, BackPACK's quantities) ---- */

/* What one forward + backward leaves for a layer: its input activations and
 * the gradient at its output, per sample (and per shared position). */
typedef struct cs_layer_capture {
    int layer;
    const cs_tensor *input;       /* a: Gemm [N, in] (as stored: transA honoured
                                     by the consumer), MatMul [N, ..., in],
                                     Conv / BN [N, C, ...], LN [N, ..., D] */
    const cs_tensor *output;      /* s: the layer's output (after the fused Add) */
    const cs_tensor *output_grad; /* dLoss/ds, same shape as output */
    int output_value;             /* the value index of output */
    int batch_axis;               /* cs_ad.batch_axis of the layer: 0 unless the kind
                                     declares samples_any_axis */
} cs_layer_capture;

cs_status cs_ad_capture(const cs_ad *ad, int layer, cs_layer_capture *cap, cs_err *err)
    CS_MUST_CHECK;

/* Per-sample gradients of one layer's parameters from its capture, without
 * a per-sample backward: out is [N, layer numel] (double, row n = the
 * gradient contribution of sample n in parameter order).  The backward's
 * seed must carry each sample's own dl_n/dz (scaled as wished). */
cs_status cs_ad_per_sample_grads(const cs_ad *ad, int layer, double *out, cs_err *err)
    CS_MUST_CHECK;

/* The same with output_grad (shape and type of the layer's output) in
 * place of dLoss/ds: J_n^T g_n per sample, J_n the Jacobian of the layer's
 * output with respect to its parameters (the rule is linear in the output
 * gradient).  NULL: the backward's own gradient.  Only for kinds with
 * linear_in_params. */
cs_status cs_ad_per_sample_grads_with(const cs_ad *ad, int layer, const cs_tensor *output_grad,
                                      double *out, cs_err *err) CS_MUST_CHECK;

/* Whether cs_ad_per_sample_grads can form layer's rows: its kind has a
 * rule, and the layer's input holds the samples on an axis the rule reads
 * (cs_ad.batch_axis, cs_layer_kind.samples_any_axis). */
bool cs_ad_per_sample_ok(const cs_ad *ad, int layer);


#endif
