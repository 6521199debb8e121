/* The curvscope graph: what an ONNX model is after loading.
 *
 * Values (named tensors) and nodes, with nodes in topological order and every
 * node input/output resolved to a value index.  Nothing here refers to
 * protobuf types: src/onnx converts a decoded model into this right after
 * loading.  Shapes here are the declared ones (symbolic dimensions are -1);
 * concrete shapes for a given batch are the plan's business (interp/plan.h).
 *
 * Ownership: a cs_graph owns every string, attribute and initializer tensor
 * reachable from it (strings and node arrays in g->arena, the values array
 * malloc'ed, tensor data owned by the tensors); free all with cs_graph_free. */
#ifndef CS_GRAPH_GRAPH_H
#define CS_GRAPH_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/status.h"
#include "tensor/tensor.h"

struct cs_op_def;
struct cs_layer_kind;

typedef enum cs_value_kind {
    CS_VALUE_INPUT,        /* graph input fed by the user */
    CS_VALUE_INITIALIZER,  /* initializer (weights, constants); data in value->init */
    CS_VALUE_CONSTANT,     /* output of a Constant node; data in value->init */
    CS_VALUE_INTERMEDIATE  /* produced by a node */
} cs_value_kind;

typedef struct cs_value {
    const char *name;
    cs_value_kind kind;
    cs_tensor decl;       /* declared dtype and shape (dims -1 = symbolic); ndim -1 unknown */
    cs_tensor init;       /* data for initializers and constants, else empty */
    int producer;         /* node index, -1 for inputs/initializers */
    int n_consumers;      /* how many node inputs read this value */
    int param_index;      /* index into g->params when trainable, else -1 */
    /* The user's choice for an initializer (cs_params_choose): +1 train,
     * -1 freeze, 0 the rule of interp/param_rule.h decides. */
    signed char train_choice;
    bool is_output;       /* a graph output */
    /* A view of another initializer, folded at bind (interp/param_views.h):
     * view_source is that initializer (-1: none) and view_index (int64,
     * this value's shape) the flat index in it of each element, so that a
     * written-back model gets the source's elements from the views.
     * has_views: this initializer is such a source. */
    int view_source;
    cs_tensor view_index;
    bool has_views;
} cs_value;

typedef enum cs_attr_type {
    CS_ATTR_UNDEFINED = 0,
    CS_ATTR_FLOAT = 1,
    CS_ATTR_INT = 2,
    CS_ATTR_STRING = 3,
    CS_ATTR_TENSOR = 4,
    CS_ATTR_GRAPH = 5,
    CS_ATTR_FLOATS = 6,
    CS_ATTR_INTS = 7,
    CS_ATTR_STRINGS = 8,
    CS_ATTR_TENSORS = 9,
    CS_ATTR_GRAPHS = 10
} cs_attr_type;

typedef struct cs_attr {
    const char *name;
    cs_attr_type type;
    float f;
    int64_t i;
    const char *s;        /* NUL-terminated copy of the bytes */
    int n;                /* element count of floats / ints */
    const float *floats;
    const int64_t *ints;
    cs_tensor t;          /* CS_ATTR_TENSOR: owned by the graph */
} cs_attr;

typedef struct cs_node {
    const char *name;     /* node name, or "<op_type>_<index>" when the file has none */
    const char *op_type;
    const char *domain;   /* "" for the default ONNX domain */
    int opset;            /* opset version of the node's domain */
    int n_inputs;
    int *inputs;          /* value indices; -1 for an omitted optional input */
    int n_outputs;
    int *outputs;         /* value indices; -1 for an omitted optional output */
    int n_attrs;
    cs_attr *attrs;
    const struct cs_op_def *op; /* NULL when the operator is not supported */
    int layer;            /* index into g->layers, or -1 */
} cs_node;

/* A layer in doc/design.md §2.3's sense: a node owning trainable initializers. */
typedef struct cs_layer {
    const char *name;     /* ONNX node name of the layer's first node */
    const char *op_type;  /* "Gemm", "MatMul", "Conv", "BatchNormalization", ... */
    const struct cs_layer_kind *kind; /* its row of the layer-kind table (interp/layer_kind.h) */
    int node;             /* the node that owns the weight */
    int bias_node;        /* MatMul+Add fusion: the Add node, else -1 */
    int first_param;      /* index into g->params */
    int n_params;         /* parameter tensors of this layer (weight, bias) */
    int64_t numel;        /* trainable scalars */
} cs_layer;

/* A trainable parameter tensor, in doc/design.md §2.3's parameter order. */
typedef struct cs_param {
    int value;            /* value index (an initializer) */
    int layer;
    int64_t offset;       /* offset of this tensor in the flat parameter vector */
} cs_param;

typedef struct cs_graph {
    cs_arena arena;
    int64_t ir_version;
    int opset;            /* default-domain opset */
    const char *producer_name;
    const char *producer_version;
    const char *graph_name;

    int n_values;
    cs_value *values;
    int n_nodes;
    cs_node *nodes;       /* topological order */
    int n_inputs;         /* user-fed inputs only (initializers excluded) */
    int *inputs;
    int n_outputs;
    int *outputs;

    int n_layers;
    cs_layer *layers;
    int n_params;
    cs_param *params;
    int64_t n_param_scalars;
} cs_graph;

/* Attribute lookup by name; NULL when absent. */
const cs_attr *cs_node_attr(const cs_node *n, const char *name);
int64_t cs_node_attr_int(const cs_node *n, const char *name, int64_t dflt);
float cs_node_attr_float(const cs_node *n, const char *name, float dflt);
const char *cs_node_attr_string(const cs_node *n, const char *name, const char *dflt);
/* Returns the list (and its length in *count) or NULL with *count = 0. */
const int64_t *cs_node_attr_ints(const cs_node *n, const char *name, int *count);
const float *cs_node_attr_floats(const cs_node *n, const char *name, int *count);

/* Initializer v's data with the elements of its views (cs_value.view_source)
 * scattered back, into out (a new tensor the caller frees); a plain copy when
 * v has no views. */
cs_status cs_graph_assemble_initializer(const cs_graph *g, int v, cs_tensor *out, cs_err *err) CS_MUST_CHECK;

/* Index of the value named name, or -1. */
int cs_graph_find_value(const cs_graph *g, const char *name);

/* Checks topological order and that every output is produced; leaves
 * every node's op unresolved (NULL) and no layers.  Called by the loader
 * once nodes and values are in place.  Resolving operators and finding
 * layers is the interpreter's (cs_interp_bind, interp/model.h), so this
 * directory knows nothing of the operator or layer-kind tables. */
cs_status cs_graph_finalize(cs_graph *g, cs_err *err) CS_MUST_CHECK;

/* Count of nodes whose operator is not supported; names them in buf. */
int cs_graph_unsupported(const cs_graph *g, char *buf, size_t size);

void cs_graph_free(cs_graph *g);

#endif
