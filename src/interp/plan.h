/* Execution plan: concrete shapes and buffers for one input configuration.
 *
 * cs_plan_prepare runs every operator's infer in topological order for the
 * given input shapes, folds what is known at prepare time (initializers,
 * Constant outputs, Shape of known-rank values and everything computed only
 * from those, unless it reads a trainable parameter), and allocates one
 * buffer per remaining value from the plan's arena.  cs_plan_forward then
 * evaluates the unfolded nodes with no allocation.  One plan is made per
 * batch size; the Shape -> Gather -> Concat -> Reshape chains of PyTorch
 * exports are folded here and cost nothing per batch. */
#ifndef CS_INTERP_PLAN_H
#define CS_INTERP_PLAN_H

#include <stdbool.h>

#include "base/arena.h"
#include "graph/graph.h"
#include "interp/op.h"

typedef struct cs_plan {
    const cs_graph *g;
    cs_arena arena;
    cs_tensor *vals;      /* one per graph value: shape and data */
    bool *known;          /* value's data visible to infer at prepare time */
    bool *is_const;       /* value independent of the inputs and parameters */
    bool *folded;         /* node evaluated at prepare, skipped by forward */
    cs_tensor **argv;     /* per node: in pointers then out pointers (into vals) */
    size_t *argv_off;     /* node k's pointers start at argv + argv_off[k] */
    void *scratch;        /* shared workspace, max over nodes */
    size_t scratch_bytes;
    size_t *node_scratch; /* workspace each node asked for */
    size_t *node_ad_scratch; /* workspace of each node's derivative rules */
    int64_t batch;        /* batch size the plan was made for (0 if none) */
    uint64_t forward_count; /* forwards started: what is derived from the values keys on it */
} cs_plan;

/* Shape of graph input i with symbolic dimensions: the first symbolic
 * dimension becomes batch; any other symbolic dimension is an error (the
 * message names it). */
cs_status cs_graph_input_shape(const cs_graph *g, int i, int64_t batch, cs_tensor *out,
                               cs_err *err) CS_MUST_CHECK;

/* Prepare for the given graph inputs (g->n_inputs tensors, shape and dtype).
 * An input given with data != NULL has that data copied into its buffer and
 * shown to the operators' infer (so a Reshape fed by a graph input can know
 * its shape); the plan is then valid only for that input's value.  Inputs are
 * never folded into constants.  The plan borrows g, which must outlive it. */
cs_status cs_plan_prepare(cs_plan *p, const cs_graph *g, const cs_tensor *inputs,
                          cs_err *err) CS_MUST_CHECK;

/* Prepare for a graph whose only input gets `batch` samples (its first
 * symbolic dimension); an input with no symbolic batch dimension is
 * unsupported. */
cs_status cs_plan_prepare_batch(cs_plan *p, const cs_graph *g, int64_t batch, cs_err *err)
    CS_MUST_CHECK;

/* Buffer of graph input i: write the batch here before cs_plan_forward. */
cs_tensor *cs_plan_input(cs_plan *p, int i);
/* Value of graph output k after cs_plan_forward. */
const cs_tensor *cs_plan_output(const cs_plan *p, int k);

cs_status cs_plan_forward(cs_plan *p, cs_err *err) CS_MUST_CHECK;

/* The most bytes one plan may hold (values, folded constants, workspace):
 * cs_plan_prepare fails with CS_ERR_NOMEM, naming the value, rather than
 * pass it.  Process-wide; 0 (the default) means the machine's physical
 * memory.  Set it before preparing plans, not while other threads do. */
void cs_plan_set_memory_limit(size_t bytes);
size_t cs_plan_memory_limit(void);

/* The operator call of node k on the plan's buffers (scratch unset). */
cs_op_call cs_plan_call(const cs_plan *p, int k);

void cs_plan_free(cs_plan *p);

#endif
