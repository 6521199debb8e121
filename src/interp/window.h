/* Sliding-window geometry of Conv and the pooling operators, read from a
 * node's attributes (strides, pads, dilations, auto_pad, group,
 * kernel_shape) into the tensor layer's cs_conv_geom, which im2col / col2im
 * (tensor/im2col.h) walk.  Public: the curvature code unfolds Conv inputs
 * with the same geometry the forward uses. */
#ifndef CS_INTERP_WINDOW_H
#define CS_INTERP_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

#include "interp/op.h"
#include "tensor/im2col.h"

/* Fill g from the node's strides, pads, dilations and auto_pad attributes,
 * the spatial input extents in[0..rank) and kernel extents kernel[0..rank)
 * (rank 1..3); ceil_mode is pooling's attribute (false for Conv).
 * Output extents follow the ONNX Conv / pooling formulas:
 *   NOTSET:     out = floor_or_ceil((in + pb + pe - ((k-1)d+1)) / s) + 1
 *               (with ceil_mode, a last window starting in the end padding
 *               is dropped, as PyTorch and onnxruntime do);
 *   VALID:      no padding, out = floor((in - ((k-1)d+1)) / s) + 1;
 *   SAME_UPPER/SAME_LOWER: out = ceil(in / s), total padding
 *               max(0, (out-1)s + (k-1)d+1 - in) split evenly, the odd one
 *               at the end (UPPER) or at the beginning (LOWER).
 * Sets channels = 1; the caller sets it.  Fails with CS_ERR_FORMAT on bad
 * attribute lengths or values, CS_ERR_SHAPE when the window does not fit. */
cs_status cs_window_geom(const cs_op_call *c, int rank, const int64_t *in, const int64_t *kernel,
                         bool ceil_mode, cs_conv_geom *g, cs_err *err) CS_MUST_CHECK;

/* Geometry of a Conv node for input x [N, C, *spatial] and weight
 * w [M, C/group, *kernel]: validates shapes and attributes (as Conv's infer
 * does) and sets channels = C / group, so that cs_im2col of one group's
 * channels gives that group's patches.  *group receives the group count. */
cs_status cs_conv_geometry(const cs_node *node, const cs_tensor *x, const cs_tensor *w,
                           cs_conv_geom *g, int64_t *group, cs_err *err) CS_MUST_CHECK;

/* Geometry of a ConvTranspose node for input x [N, C, *spatial] and weight
 * w [C, M/group, *kernel]: the geometry of the Conv whose input gradient
 * the node is, so in[] are the node's output extents (Y) and out[] its
 * input's (X), with the node's strides, dilations and begin pads; channels
 * = M/group (one group's output channels, what col2im writes).  Output
 * extents follow ONNX ConvTranspose:
 *   full = s (in - 1) + output_padding + (k - 1) d + 1;
 *   NOTSET / VALID:  out = full - pads_begin - pads_end (VALID: no pads);
 *   output_shape or SAME_UPPER / SAME_LOWER: out = output_shape, or in * s,
 *       total padding full - out split with the odd one at the end (UPPER)
 *       or the beginning; an out above full is padded at the end (the
 *       positions no kernel tap reaches, like output_padding).
 * Validates shapes and attributes; *group receives the group count. */
cs_status cs_conv_transpose_geometry(const cs_node *node, const cs_tensor *x, const cs_tensor *w,
                                     cs_conv_geom *g, int64_t *group, cs_err *err) CS_MUST_CHECK;

/* Conv and ConvTranspose: 2 or 3 inputs (X, W, optional B) and one output,
 * X and W float of one dtype. */
cs_status cs_conv_check_operands(const cs_op_call *c, cs_err *err) CS_MUST_CHECK;
/* B (input 2), when present: X's dtype, shape [m]. */
cs_status cs_conv_check_bias(const cs_op_call *c, int64_t m, cs_err *err) CS_MUST_CHECK;

#endif
