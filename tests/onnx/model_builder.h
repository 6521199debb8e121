/* Hand-made ONNX models for the loader tests.
 *
 * A model_builder fills protobuf-c structs (Onnx__ModelProto and friends)
 * that mb_pack serialises, so a test can state exactly which bytes the
 * loader sees, malformed ones included.  Everything a builder allocates is
 * recorded and released by mb_free; strings may point to literals (packing
 * only reads them). */
#ifndef CS_TESTS_MODEL_BUILDER_H
#define CS_TESTS_MODEL_BUILDER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "interp/model.h"
#include "onnx/loader.h"
#include "onnx/onnx.pb-c.h"

#define MB_MAX 32

typedef struct model_builder {
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto *opsets[4];
    Onnx__NodeProto *nodes[MB_MAX];
    Onnx__TensorProto *inits[MB_MAX];
    Onnx__ValueInfoProto *inputs[MB_MAX];
    Onnx__ValueInfoProto *outputs[MB_MAX];
    void **allocs;
    size_t n_allocs, cap_allocs;
} model_builder;

/* Zeroed memory owned by the builder; aborts the test on failure (a test
 * helper, not library code). */
static inline void *mb_alloc(model_builder *b, size_t bytes)
{
    if (b->n_allocs == b->cap_allocs) {
        b->cap_allocs = b->cap_allocs ? 2 * b->cap_allocs : 64;
        b->allocs = realloc(b->allocs, b->cap_allocs * sizeof *b->allocs);
        if (!b->allocs)
            abort();
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p)
        abort();
    b->allocs[b->n_allocs++] = p;
    return p;
}

static inline void *mb_dup(model_builder *b, const void *src, size_t bytes)
{
    void *p = mb_alloc(b, bytes);
    if (bytes)
        memcpy(p, src, bytes);
    return p;
}

/* A model with an empty graph, ir_version ir, importing the default domain
 * at opset (no import when opset < 0). */
static inline void mb_init(model_builder *b, int64_t ir, int64_t opset)
{
    memset(b, 0, sizeof *b);
    onnx__model_proto__init(&b->model);
    onnx__graph_proto__init(&b->graph);
    b->model.has_ir_version = 1;
    b->model.ir_version = ir;
    b->model.producer_name = (char *)"curvscope-test";
    b->model.graph = &b->graph;
    b->model.opset_import = b->opsets;
    b->graph.name = (char *)"test_graph";
    b->graph.node = b->nodes;
    b->graph.initializer = b->inits;
    b->graph.input = b->inputs;
    b->graph.output = b->outputs;
    if (opset >= 0) {
        Onnx__OperatorSetIdProto *o = mb_alloc(b, sizeof *o);
        onnx__operator_set_id_proto__init(o);
        o->domain = (char *)"";
        o->has_version = 1;
        o->version = opset;
        b->opsets[b->model.n_opset_import++] = o;
    }
}

static inline void mb_import(model_builder *b, const char *domain, int64_t version)
{
    Onnx__OperatorSetIdProto *o = mb_alloc(b, sizeof *o);
    onnx__operator_set_id_proto__init(o);
    o->domain = (char *)domain;
    o->has_version = 1;
    o->version = version;
    b->opsets[b->model.n_opset_import++] = o;
}

/* A TensorProto with name, type and dims but no data (not yet added). */
static inline Onnx__TensorProto *mb_tensor(model_builder *b, const char *name, int dtype, int ndim,
                                           const int64_t *dims)
{
    Onnx__TensorProto *t = mb_alloc(b, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = (char *)name;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->n_dims = (size_t)ndim;
    t->dims = mb_dup(b, dims, sizeof(int64_t) * (size_t)ndim);
    return t;
}

static inline void mb_set_float_data(model_builder *b, Onnx__TensorProto *t, size_t n,
                                     const float *v)
{
    t->n_float_data = n;
    t->float_data = mb_dup(b, v, n * sizeof *v);
}

static inline void mb_set_raw(model_builder *b, Onnx__TensorProto *t, size_t bytes, const void *v)
{
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = mb_dup(b, v, bytes);
}

static inline Onnx__TensorProto *mb_add_init(model_builder *b, Onnx__TensorProto *t)
{
    b->inits[b->graph.n_initializer++] = t;
    return t;
}

/* A float initializer stored in float_data. */
static inline Onnx__TensorProto *mb_init_floats(model_builder *b, const char *name, int ndim,
                                                const int64_t *dims, size_t n, const float *v)
{
    Onnx__TensorProto *t = mb_tensor(b, name, 1, ndim, dims);
    mb_set_float_data(b, t, n, v);
    return mb_add_init(b, t);
}

/* A tensor-typed ValueInfoProto; dims < 0 become symbolic ("N", "M", ...);
 * ndim < 0 leaves the shape out. */
static inline Onnx__ValueInfoProto *mb_value_info(model_builder *b, const char *name, int elem_type,
                                                  int ndim, const int64_t *dims)
{
    static char *const sym[] = {"N", "M", "K", "L", "P", "Q", "R", "S", "T", "U"};
    Onnx__ValueInfoProto *vi = mb_alloc(b, sizeof *vi);
    onnx__value_info_proto__init(vi);
    vi->name = (char *)name;
    Onnx__TypeProto *tp = mb_alloc(b, sizeof *tp);
    onnx__type_proto__init(tp);
    Onnx__TypeProto__Tensor *tt = mb_alloc(b, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = elem_type;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->type = tp;
    if (ndim < 0)
        return vi;
    Onnx__TensorShapeProto *sp = mb_alloc(b, sizeof *sp);
    onnx__tensor_shape_proto__init(sp);
    sp->n_dim = (size_t)ndim;
    sp->dim = mb_alloc(b, sizeof *sp->dim * (size_t)(ndim + 1));
    int n_sym = 0;
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = mb_alloc(b, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] >= 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = sym[n_sym++ % 10];
        }
        sp->dim[i] = d;
    }
    tt->shape = sp;
    return vi;
}

static inline Onnx__ValueInfoProto *mb_input(model_builder *b, const char *name, int elem_type,
                                             int ndim, const int64_t *dims)
{
    Onnx__ValueInfoProto *vi = mb_value_info(b, name, elem_type, ndim, dims);
    b->inputs[b->graph.n_input++] = vi;
    return vi;
}

/* A float graph output without a declared shape. */
static inline Onnx__ValueInfoProto *mb_output(model_builder *b, const char *name)
{
    Onnx__ValueInfoProto *vi = mb_value_info(b, name, 1, -1, NULL);
    b->outputs[b->graph.n_output++] = vi;
    return vi;
}

static inline char **mb_names(model_builder *b, const char *const *names, size_t *count)
{
    size_t n = 0;
    while (names && names[n])
        n++;
    char **out = mb_alloc(b, sizeof *out * (n + 1));
    for (size_t i = 0; i < n; i++)
        out[i] = (char *)names[i];
    *count = n;
    return out;
}

/* A node; ins / outs are NULL-terminated name lists ("" = omitted input);
 * name may be NULL for an unnamed node. */
static inline Onnx__NodeProto *mb_node(model_builder *b, const char *op_type, const char *name,
                                       const char *const *ins, const char *const *outs)
{
    Onnx__NodeProto *n = mb_alloc(b, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = (char *)op_type;
    n->name = (char *)name;
    n->input = mb_names(b, ins, &n->n_input);
    n->output = mb_names(b, outs, &n->n_output);
    n->attribute = mb_alloc(b, sizeof *n->attribute * MB_MAX);
    b->nodes[b->graph.n_node++] = n;
    return n;
}

static inline Onnx__AttributeProto *mb_attr(model_builder *b, Onnx__NodeProto *n, const char *name,
                                            int type)
{
    Onnx__AttributeProto *a = mb_alloc(b, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static inline void mb_attr_int(model_builder *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = mb_attr(b, n, name, CS_ATTR_INT);
    a->has_i = 1;
    a->i = v;
}

static inline void mb_attr_tensor(model_builder *b, Onnx__NodeProto *n, const char *name,
                                  Onnx__TensorProto *t)
{
    Onnx__AttributeProto *a = mb_attr(b, n, name, CS_ATTR_TENSOR);
    a->t = t;
}

/* Serialise into a malloc'ed buffer (caller frees). */
static inline uint8_t *mb_pack(model_builder *b, size_t *len)
{
    size_t n = onnx__model_proto__get_packed_size(&b->model);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    *len = onnx__model_proto__pack(&b->model, buf);
    return buf;
}

/* Pack and load from memory; base_dir as for cs_onnx_load_bytes. */
static inline cs_status mb_load(model_builder *b, const char *base_dir, cs_graph **g, cs_err *err)
{
    size_t len;
    uint8_t *buf = mb_pack(b, &len);
    err->code = CS_OK;
    err->msg[0] = '\0';
    cs_status st = cs_model_load_bytes(buf, len, base_dir, g, err);
    free(buf);
    return st;
}

static inline void mb_free(model_builder *b)
{
    for (size_t i = 0; i < b->n_allocs; i++)
        free(b->allocs[i]);
    free(b->allocs);
    b->allocs = NULL;
    b->n_allocs = b->cap_allocs = 0;
}

#endif
