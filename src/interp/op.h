/* Operator definitions: one cs_op_def per ONNX operator, registered in the
 * single table of interp/op_table.c.  Each family file in interp/ops/ holds
 * the forward rule and (with the autodiff work) the vjp / jvp rules of its
 * operators side by side.
 *
 * Phases (prepare -> compute): the plan calls infer once per input shape
 * configuration to fix output dtypes and shapes and the scratch size; then
 * forward runs once per batch on preallocated buffers.  Kernels never
 * allocate. */
#ifndef CS_INTERP_OP_H
#define CS_INTERP_OP_H

#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"
#include "graph/graph.h"
#include "tensor/tensor.h"

#include "base/parallel.h"

/* One invocation of an operator on concrete tensors.
 *
 * in[i] is NULL for an omitted optional input (n_in == node->n_inputs);
 * out[k] is NULL for an omitted optional output.  During infer, inputs carry
 * dtype and shape, and data only when the value is known at prepare time
 * (initializers, constants, folded values); an operator that needs an input's
 * contents to know its output shape (Reshape's shape, for instance) returns
 * CS_ERR_UNSUPPORTED when that data is NULL.  infer sets dtype, ndim and dims
 * of every non-NULL output and, if the kernel needs workspace, scratch_bytes.
 * During forward, every output has data of the inferred shape (contents
 * undefined) and scratch points to at least scratch_bytes bytes (contents
 * undefined). */
typedef struct cs_op_call {
    const cs_node *node;
    int n_in;
    cs_tensor **in;
    int n_out;
    cs_tensor **out;
    void *scratch;
    size_t scratch_bytes;    /* infer: forward workspace */
    size_t ad_scratch_bytes; /* infer: workspace of vjp / jvp / rop (0: none) */
} cs_op_call;

/* Arguments of the derivative rules.  All tensors have the shape and dtype
 * of the value they belong to (gradient and tangent of a float value are of
 * the same float type).  During vjp / jvp / rop, c->in and c->out hold the
 * values of the last forward, and c->scratch has ad_scratch_bytes.
 *
 *   vjp  for each i with gin[i] != NULL:   gin[i] += J_i^T gout
 *   jvp  for each k with tout[k] != NULL:  tout[k] = sum_i J_ki tin[i]
 *   rop  for each i with gin[i] != NULL:   gin[i] += sum_j (d/dx_j (J_i^T gout)) tin[j]
 *
 * where J_ki = d out_k / d in_i at the forward point, gout[k] is NULL for a
 * zero gradient and tin[i] NULL for a zero tangent.  rop is the part of
 * Pearlmutter's R{backward} (Pearlmutter 1994, "Fast exact multiplication by
 * the Hessian") that the vjp rule alone misses: the exact R-op of the vjp is
 * vjp(R{gout}) + rop(R{in}, gout), which the Hessian-vector product uses.
 * Gradients flow only through float inputs and outputs; rules ignore (and
 * receive NULL for) integer ones. */
typedef struct cs_op_ad {
    cs_tensor **gout; /* [n_out] */
    cs_tensor **gin;  /* [n_in] */
    cs_tensor **tin;  /* [n_in] */
    cs_tensor **tout; /* [n_out] */
} cs_op_ad;

enum {
    /* Outputs depend on input shapes only (Shape): always folded at prepare. */
    CS_OP_SHAPE_ONLY = 1u << 0,
    /* Never fold at prepare even with known inputs. */
    CS_OP_NO_FOLD = 1u << 1,
    /* The second-order term of the R-op is zero: the op is jointly linear
     * in its float inputs (Add, Transpose, ReduceSum, ...) or piecewise
     * linear (Relu, MaxPool, Clip: zero almost everywhere), so rop is NULL
     * by design, not missing. */
    CS_OP_LINEAR = 1u << 2,
    /* No gradient flows through the op at all (Shape: integer output). */
    CS_OP_NO_GRAD = 1u << 3,
};

typedef struct cs_op_def {
    const char *name;      /* ONNX op_type */
    int min_opset;         /* oldest default-domain opset whose semantics forward implements */
    unsigned flags;
    cs_status (*infer)(cs_op_call *c, cs_err *err);
    cs_status (*forward)(cs_op_call *c, cs_err *err);
    /* Derivative rules (see cs_op_ad); NULL where the op has none. */
    cs_status (*vjp)(cs_op_call *c, const cs_op_ad *a, cs_err *err);
    cs_status (*jvp)(cs_op_call *c, const cs_op_ad *a, cs_err *err);
    cs_status (*rop)(cs_op_call *c, const cs_op_ad *a, cs_err *err);
    /* Why the op has no derivative to check, stated in its row (Shape:
     * integer output; Constant: no inputs).  NULL for every other op: its
     * vjp, jvp and rop (or CS_OP_LINEAR's zero second-order term) must be
     * checked by finite differences, which tests/interp/test_op_contract
     * enforces for every row of the table. */
    const char *no_derivative;
} cs_op_def;

/* Definition for an op_type in the default domain, or NULL. */
const cs_op_def *cs_op_find(const char *op_type, const char *domain);

/* The registered operators, for listings. */
int cs_op_count(void);
const cs_op_def *cs_op_at(int i);

/* Helpers shared by operator files. */

/* Normalise a possibly negative axis against rank; error names the node. */
cs_status cs_op_axis(const cs_op_call *c, int64_t axis, int rank, int *out, cs_err *err)
    CS_MUST_CHECK;
/* Fail unless input i is present and of a float type (float32 / float64). */
cs_status cs_op_need_float(const cs_op_call *c, int i, cs_err *err) CS_MUST_CHECK;
/* Fail unless inputs i and j have the same dtype. */
cs_status cs_op_same_dtype(const cs_op_call *c, int i, int j, cs_err *err) CS_MUST_CHECK;
/* Gradients and tangents given to a rule must be typed and shaped like their
 * values (a mismatch is an engine bug, reported rather than written past):
 * checks in_side[0..n_in) against c->in and out_side[0..n_out) against
 * c->out, skipping NULL entries and NULL arrays. */
cs_status cs_op_check_ad(const cs_op_call *c, cs_tensor *const *in_side, cs_tensor *const *out_side,
                         cs_err *err) CS_MUST_CHECK;
/* The common start of a jvp whose output tangent is tout[0] and whose only
 * differentiable input is in: true when the rule has nothing left to do,
 * because tout[0] is not asked for, or tin[in] is a zero tangent (then
 * tout[0] is zeroed here). */
bool cs_op_jvp_done_early(const cs_op_ad *a, int in);

/* cs_fail with the node's op type and name in front of the message. */
cs_status cs_op_fail(const cs_op_call *c, cs_err *err, cs_status code, const char *fmt, ...)
    CS_PRINTF(4, 5);

#endif
