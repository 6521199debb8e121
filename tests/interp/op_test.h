/* Run one operator on hand-made tensors, for the operator unit tests.
 *
 *   op_test t;
 *   op_test_init(&t, "Conv", 17);
 *   op_test_attr_ints(&t, "pads", 4, (int64_t[]){1, 1, 1, 1});
 *   op_test_input(&t, &x);  op_test_input(&t, &w);  op_test_input(&t, NULL);
 *   op_test_outputs(&t, 1);
 *   cs_status st = op_test_run(&t, &err);   // infer + forward
 *   ... t.out[0] holds the result (owned by t) ...
 *   op_test_free(&t);
 *
 * Inputs are borrowed; they are presented to infer with their data (as
 * known values), like the prepare pass does for constants.  Pass
 * known = false through op_test_input_unknown to hide data from infer.
 * A successful run notes "forward" for the operator (coverage.h). */
#ifndef CS_TESTS_OP_TEST_H
#define CS_TESTS_OP_TEST_H

#include <stdlib.h>
#include <string.h>

#include "coverage.h"
#include "interp/op.h"

#define OP_TEST_MAX 16

/* A tensor header over borrowed vals (not owned: nothing to free). */
static inline cs_tensor op_test_view(cs_dtype dt, int ndim, const int64_t *dims, const void *vals)
{
    cs_tensor t;
    memset(&t, 0, sizeof t);
    cs_tensor_set_shape(&t, dt, ndim, dims);
    t.data = (void *)vals;
    return t;
}

typedef struct op_test {
    cs_node node;
    cs_attr attrs[OP_TEST_MAX];
    int in_idx[OP_TEST_MAX];
    int out_idx[OP_TEST_MAX];
    cs_tensor in_view[OP_TEST_MAX]; /* what infer sees */
    cs_tensor *in[OP_TEST_MAX];
    const cs_tensor *in_src[OP_TEST_MAX];
    cs_tensor out_t[OP_TEST_MAX];
    cs_tensor *out[OP_TEST_MAX];
    void *scratch;
    cs_op_call call; /* as prepared by op_test_run (scratch holds the larger of both needs) */
} op_test;

static inline void op_test_init(op_test *t, const char *op_type, int opset)
{
    memset(t, 0, sizeof *t);
    t->node.name = "test_node";
    t->node.op_type = op_type;
    t->node.domain = "";
    t->node.opset = opset;
    t->node.inputs = t->in_idx;
    t->node.outputs = t->out_idx;
    t->node.attrs = t->attrs;
    t->node.op = cs_op_find(op_type, "");
    t->node.layer = -1;
}

static inline cs_attr *op_test_attr_(op_test *t, const char *name, cs_attr_type type)
{
    cs_attr *a = &t->attrs[t->node.n_attrs++];
    a->name = name;
    a->type = type;
    return a;
}
static inline void op_test_attr_int(op_test *t, const char *name, int64_t v)
{
    op_test_attr_(t, name, CS_ATTR_INT)->i = v;
}
static inline void op_test_attr_float(op_test *t, const char *name, float v)
{
    op_test_attr_(t, name, CS_ATTR_FLOAT)->f = v;
}
static inline void op_test_attr_string(op_test *t, const char *name, const char *v)
{
    op_test_attr_(t, name, CS_ATTR_STRING)->s = v;
}
/* The list is borrowed: keep it alive until op_test_free. */
static inline void op_test_attr_ints(op_test *t, const char *name, int n, const int64_t *v)
{
    cs_attr *a = op_test_attr_(t, name, CS_ATTR_INTS);
    a->n = n;
    a->ints = v;
}
static inline void op_test_attr_floats(op_test *t, const char *name, int n, const float *v)
{
    cs_attr *a = op_test_attr_(t, name, CS_ATTR_FLOATS);
    a->n = n;
    a->floats = v;
}
static inline void op_test_attr_tensor(op_test *t, const char *name, const cs_tensor *v)
{
    op_test_attr_(t, name, CS_ATTR_TENSOR)->t = *v;
}

/* x may be NULL for an omitted optional input. */
static inline void op_test_input_known(op_test *t, const cs_tensor *x, int known)
{
    int i = t->node.n_inputs++;
    t->in_idx[i] = x ? i : -1;
    t->in_src[i] = x;
    if (x) {
        t->in_view[i] = *x;
        t->in_view[i].owns_data = false;
        if (!known)
            t->in_view[i].data = NULL;
        t->in[i] = &t->in_view[i];
    } else {
        t->in[i] = NULL;
    }
}
static inline void op_test_input(op_test *t, const cs_tensor *x)
{
    op_test_input_known(t, x, 1);
}
static inline void op_test_input_unknown(op_test *t, const cs_tensor *x)
{
    op_test_input_known(t, x, 0);
}

static inline void op_test_outputs(op_test *t, int n)
{
    t->node.n_outputs = n;
    for (int k = 0; k < n; k++) {
        t->out_idx[k] = k;
        t->out[k] = &t->out_t[k];
    }
}

/* infer, allocate outputs and scratch, forward. */
static inline cs_status op_test_run(op_test *t, cs_err *err)
{
    if (!t->node.op)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "operator %s is not registered", t->node.op_type);
    cs_op_call c = {.node = &t->node, .n_in = t->node.n_inputs, .in = t->in,
                    .n_out = t->node.n_outputs, .out = t->out};
    cs_status st = t->node.op->infer(&c, err);
    if (st)
        return st;
    for (int i = 0; i < t->node.n_inputs; i++)
        if (t->in[i])
            t->in[i]->data = t->in_src[i]->data;
    for (int k = 0; k < t->node.n_outputs; k++) {
        if (!t->out[k])
            continue;
        if (t->out[k]->owns_data) { /* a second run on the same op_test */
            cs_tensor keep = *t->out[k];
            free(keep.data);
            t->out[k]->owns_data = false;
        }
        st = cs_tensor_alloc(t->out[k], err);
        if (st)
            return st;
    }
    size_t need = c.scratch_bytes > c.ad_scratch_bytes ? c.scratch_bytes : c.ad_scratch_bytes;
    free(t->scratch);
    t->scratch = malloc(need ? need : 1);
    c.scratch = t->scratch;
    t->call = c;
    st = t->node.op->forward(&c, err);
    if (st == CS_OK)
        cover_note("forward", t->node.op->name);
    return st;
}

/* Forward again on the same (possibly modified) input data. */
static inline cs_status op_test_forward(op_test *t, cs_err *err)
{
    return t->node.op->forward(&t->call, err);
}

static inline void op_test_free(op_test *t)
{
    for (int k = 0; k < t->node.n_outputs; k++)
        cs_tensor_free(&t->out_t[k]);
    free(t->scratch);
    t->scratch = NULL;
}

#endif
