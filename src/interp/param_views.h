/* Views of initializers folded at bind: an export without constant
 * folding feeds a weight to its layer through data-movement nodes
 * (Transpose(W) -> MatMul; attention's in_proj_weight Split into the
 * query and key-value parts, each Transposed, then MatMul), so the layer
 * reads a computed value and no layer owns the weight.
 *
 * cs_param_views_fold evaluates each such chain once, on the indices of the
 * source's elements: every value that leaves the chain (read by a node
 * that is not a view, or a graph output) becomes an initializer holding
 * its elements, with view_source / view_index saying where in the source
 * they came from (graph/graph.h), and the chain's nodes are removed.
 * The layer-kind table then finds the parts as ordinary weights; the
 * writer scatters them back into the source (cs_graph_assemble_initializer),
 * so a fine-tuned model is the original file with the source updated.
 *
 * Folded only when it is the same function: every consumer of the source
 * is a view node reading it as its data input, the other inputs of each
 * view node are known whatever the batch (initializers, or values that
 * plans for batch sizes 2 and 3 both fold to the same data: Constant
 * outputs, torch's Split boundaries computed from static shapes), no view
 * is a graph output, and the parts do not overlap (an element in two parts
 * would be two parameters of one tied weight).  Anything else is left as
 * it is (doc/design.md §2.3). */
#ifndef CS_INTERP_PARAM_VIEWS_H
#define CS_INTERP_PARAM_VIEWS_H

#include "graph/graph.h"

/* Fold every eligible chain of g (idempotent: a folded source has no
 * consumers left). */
cs_status cs_param_views_fold(cs_graph *g, cs_err *err) CS_MUST_CHECK;

#endif
