/* ONNX model file -> cs_graph.
 *
 * protobuf-c decodes the bytes (it rejects malformed wire data without
 * reading out of bounds); this file then checks what the wire format cannot:
 * names that resolve, tensors whose data matches their shape, shapes of sane
 * size, single assignment of every value.  Node order and cycles are checked
 * by cs_graph_finalize. */
#include <libgen.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/loader.h"
#include "onnx/onnx_internal.h"

/* ---- name -> value index, open addressing ---- */

typedef struct name_map {
    const char **keys;
    int *vals;
    size_t cap; /* power of two */
} name_map;

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int map_get(const name_map *m, const char *key)
{
    if (m->cap == 0)
        return -1;
    for (size_t i = hash_name(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i])
            return -1;
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    }
}

static void map_insert(name_map *m, const char *key, int val)
{
    size_t i = hash_name(key) & (m->cap - 1);
    while (m->keys[i])
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = key;
    m->vals[i] = val;
}

/* Insert key (not present); the table doubles to stay at most half full.
 * Returns 0, or -1 when memory runs out. */
static int map_put(name_map *m, const char *key, int val, size_t count)
{
    if (2 * (count + 1) > m->cap) {
        name_map bigger = {.cap = m->cap ? 2 * m->cap : 64};
        bigger.keys = calloc(bigger.cap, sizeof *bigger.keys);
        bigger.vals = calloc(bigger.cap, sizeof *bigger.vals);
        if (!bigger.keys || !bigger.vals) {
            free(bigger.keys);
            free(bigger.vals);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i])
                map_insert(&bigger, m->keys[i], m->vals[i]);
        free(m->keys);
        free(m->vals);
        *m = bigger;
    }
    map_insert(m, key, val);
    return 0;
}

/* ---- building ---- */

typedef struct builder {
    cs_graph *g;
    name_map map;
    int cap_values;
    const char *base_dir;
    cs_err *err;
} builder;

/* A new value; the array grows as names appear, so memory follows the
 * number of distinct names, not the (attacker-chosen) number of slots. */
static int add_value(builder *b, const char *name, cs_value_kind kind)
{
    cs_graph *g = b->g;
    if (g->n_values == b->cap_values) {
        int cap = b->cap_values ? 2 * b->cap_values : 64;
        cs_value *grown = realloc(g->values, sizeof *grown * (size_t)cap);
        if (!grown)
            return -1;
        g->values = grown;
        b->cap_values = cap;
    }
    int v = g->n_values;
    cs_value *val = &g->values[v];
    memset(val, 0, sizeof *val);
    val->name = cs_arena_strdup(&g->arena, name);
    val->kind = kind;
    val->producer = -1;
    val->param_index = -1;
    val->view_source = -1;
    val->decl.ndim = -1;
    if (!val->name || map_put(&b->map, val->name, v, (size_t)v) != 0)
        return -1;
    g->n_values++;
    return v;
}

/* Declared type and shape from a ValueInfoProto (symbolic dims -> -1). */
static cs_status read_value_info(builder *b, const Onnx__ValueInfoProto *vi, cs_value *val)
{
    const Onnx__TypeProto *tp = vi->type;
    /* Sequences, maps and optionals load as "no type" so that `info` can
     * still list the graph; running such a graph is refused at prepare. */
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
        val->decl.dtype = CS_DT_UNDEFINED;
        val->decl.ndim = -1;
        return CS_OK;
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    val->decl.dtype = (cs_dtype)tt->elem_type;
    if (!tt->shape) {
        val->decl.ndim = -1;
        return CS_OK;
    }
    if (tt->shape->n_dim > CS_MAX_DIMS)
        return cs_fail(b->err, CS_ERR_UNSUPPORTED, "'%s': rank %zu is above %d", val->name,
                       tt->shape->n_dim, CS_MAX_DIMS);
    val->decl.ndim = (int)tt->shape->n_dim;
    for (size_t i = 0; i < tt->shape->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (d->dim_value < 0 || d->dim_value > CS_ONNX_MAX_TENSOR_ELEMS)
                return cs_fail(b->err, CS_ERR_FORMAT, "'%s': dimension %zu is %lld", val->name, i,
                               (long long)d->dim_value);
            val->decl.dims[i] = d->dim_value;
        } else {
            val->decl.dims[i] = -1;
        }
    }
    return CS_OK;
}

static cs_status convert_attr(builder *b, const cs_node *n, const Onnx__AttributeProto *ap,
                              cs_attr *a)
{
    cs_graph *g = b->g;
    memset(a, 0, sizeof *a);
    a->name = cs_arena_strdup(&g->arena, ap->name ? ap->name : "");
    if (!a->name)
        return cs_fail(b->err, CS_ERR_NOMEM, "out of memory");
    a->type = ap->has_type ? (cs_attr_type)ap->type : CS_ATTR_UNDEFINED;
    /* IR version 1 files may omit the type: infer it from the filled field. */
    if (a->type == CS_ATTR_UNDEFINED) {
        if (ap->n_floats) a->type = CS_ATTR_FLOATS;
        else if (ap->n_ints) a->type = CS_ATTR_INTS;
        else if (ap->n_strings) a->type = CS_ATTR_STRINGS;
        else if (ap->t) a->type = CS_ATTR_TENSOR;
        else if (ap->has_s) a->type = CS_ATTR_STRING;
        else if (ap->has_f) a->type = CS_ATTR_FLOAT;
        else if (ap->has_i) a->type = CS_ATTR_INT;
    }
    a->f = ap->f;
    a->i = ap->i;
    if (ap->has_s) {
        char *s = cs_arena_alloc(&g->arena, ap->s.len + 1);
        if (!s)
            return cs_fail(b->err, CS_ERR_NOMEM, "out of memory");
        if (ap->s.len) /* an empty bytes field decodes with data NULL */
            memcpy(s, ap->s.data, ap->s.len);
        a->s = s;
    }
    if (a->type == CS_ATTR_FLOATS || a->type == CS_ATTR_INTS) {
        if (ap->n_floats > INT32_MAX || ap->n_ints > INT32_MAX)
            return cs_fail(b->err, CS_ERR_FORMAT, "node '%s': attribute '%s' is too long", n->name, a->name);
        a->n = (int)(a->type == CS_ATTR_FLOATS ? ap->n_floats : ap->n_ints);
        size_t bytes = (size_t)a->n * (a->type == CS_ATTR_FLOATS ? sizeof(float) : sizeof(int64_t));
        void *copy = cs_arena_alloc(&g->arena, bytes);
        if (!copy)
            return cs_fail(b->err, CS_ERR_NOMEM, "out of memory");
        if (bytes)
            memcpy(copy, a->type == CS_ATTR_FLOATS ? (void *)ap->floats : (void *)ap->ints, bytes);
        if (a->type == CS_ATTR_FLOATS)
            a->floats = copy;
        else
            a->ints = copy;
    }
    if (a->type == CS_ATTR_TENSOR) {
        if (!ap->t)
            return cs_fail(b->err, CS_ERR_FORMAT, "node '%s': tensor attribute '%s' has no tensor",
                           n->name, a->name);
        char what[256];
        snprintf(what, sizeof what, "node '%s' attribute '%s'", n->name, a->name);
        return cs_tensor_from_proto(ap->t, b->base_dir, what, true, &a->t, b->err);
    }
    return CS_OK;
}

static int default_opset(const Onnx__ModelProto *m)
{
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (!o->domain || !o->domain[0] || strcmp(o->domain, "ai.onnx") == 0)
            return (int)o->version;
    }
    return -1;
}

static int domain_opset(const Onnx__ModelProto *m, const char *domain)
{
    if (!domain[0] || strcmp(domain, "ai.onnx") == 0)
        return default_opset(m);
    for (size_t i = 0; i < m->n_opset_import; i++)
        if (m->opset_import[i]->domain && strcmp(m->opset_import[i]->domain, domain) == 0)
            return (int)m->opset_import[i]->version;
    return -1;
}

static cs_status build_graph(builder *b, const Onnx__ModelProto *m)
{
    cs_graph *g = b->g;
    const Onnx__GraphProto *gp = m->graph;
    cs_err *err = b->err;

    g->ir_version = m->ir_version;
    /* A model may import only other domains; its default-domain nodes (if
     * any) are then refused one by one below. */
    g->opset = default_opset(m);
    if (g->opset < 0)
        g->opset = 0;
    g->producer_name = cs_arena_strdup(&g->arena, m->producer_name ? m->producer_name : "");
    g->producer_version = cs_arena_strdup(&g->arena, m->producer_version ? m->producer_version : "");
    g->graph_name = cs_arena_strdup(&g->arena, gp->name ? gp->name : "");

    /* Counts of slots are bounded by the file size (each takes bytes on the
     * wire); values are added as distinct names appear. */
    size_t slots = gp->n_input + gp->n_initializer + gp->n_output;
    for (size_t k = 0; k < gp->n_node; k++)
        slots += gp->node[k]->n_input + gp->node[k]->n_output;
    if (slots > (size_t)INT32_MAX / 4 || gp->n_node > (size_t)INT32_MAX / 4)
        return cs_fail(err, CS_ERR_FORMAT, "graph is too large");
    g->nodes = cs_arena_alloc(&g->arena, sizeof *g->nodes * (gp->n_node + 1));
    g->inputs = cs_arena_alloc(&g->arena, sizeof *g->inputs * (gp->n_input + 1));
    g->outputs = cs_arena_alloc(&g->arena, sizeof *g->outputs * (gp->n_output + 1));
    if (!g->nodes || !g->inputs || !g->outputs)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory loading the graph");

    /* Initializers first: a graph input of the same name is then not user-fed. */
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        const char *name = tp->name ? tp->name : "";
        if (!name[0])
            return cs_fail(err, CS_ERR_FORMAT, "initializer %zu has no name", i);
        if (map_get(&b->map, name) >= 0)
            return cs_fail(err, CS_ERR_FORMAT, "initializer '%s' is defined twice", name);
        int v = add_value(b, name, CS_VALUE_INITIALIZER);
        if (v < 0)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        char what[300];
        snprintf(what, sizeof what, "initializer '%s'", name);
        cs_status st = cs_tensor_from_proto(tp, b->base_dir, what, true, &g->values[v].init, err);
        if (st)
            return st;
        g->values[v].decl = g->values[v].init;
        g->values[v].decl.data = NULL;
        g->values[v].decl.owns_data = false;
    }
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        const char *name = vi->name ? vi->name : "";
        if (!name[0])
            return cs_fail(err, CS_ERR_FORMAT, "graph input %zu has no name", i);
        int v = map_get(&b->map, name);
        if (v >= 0) {
            if (g->values[v].kind != CS_VALUE_INITIALIZER)
                return cs_fail(err, CS_ERR_FORMAT, "graph input '%s' is listed twice", name);
            continue; /* an initializer also listed as input (IR < 4 style) */
        }
        v = add_value(b, name, CS_VALUE_INPUT);
        if (v < 0)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        cs_status st = read_value_info(b, vi, &g->values[v]);
        if (st)
            return st;
        g->inputs[g->n_inputs++] = v;
    }

    for (size_t k = 0; k < gp->n_node; k++) {
        const Onnx__NodeProto *np = gp->node[k];
        cs_node *n = &g->nodes[g->n_nodes];
        memset(n, 0, sizeof *n);
        n->layer = -1;
        n->op_type = cs_arena_strdup(&g->arena, np->op_type ? np->op_type : "");
        n->domain = cs_arena_strdup(&g->arena, np->domain ? np->domain : "");
        if (np->name && np->name[0]) {
            n->name = cs_arena_strdup(&g->arena, np->name);
        } else {
            char buf[128];
            snprintf(buf, sizeof buf, "%.100s_%zu", n->op_type ? n->op_type : "node", k);
            n->name = cs_arena_strdup(&g->arena, buf);
        }
        if (!n->op_type || !n->domain || !n->name)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        if (!n->op_type[0])
            return cs_fail(err, CS_ERR_FORMAT, "node %zu ('%s') has no op_type", k, n->name);
        n->opset = domain_opset(m, n->domain);
        if (n->opset < 0)
            return cs_fail(err, CS_ERR_FORMAT, "node '%s' uses domain '%s', which the model does not import",
                           n->name, n->domain);
        n->n_inputs = (int)np->n_input;
        n->n_outputs = (int)np->n_output;
        n->inputs = cs_arena_alloc(&g->arena, sizeof(int) * (np->n_input + 1));
        n->outputs = cs_arena_alloc(&g->arena, sizeof(int) * (np->n_output + 1));
        n->n_attrs = (int)np->n_attribute;
        n->attrs = cs_arena_alloc(&g->arena, sizeof(cs_attr) * (np->n_attribute + 1));
        if (!n->inputs || !n->outputs || !n->attrs)
            return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        g->n_nodes++;
        for (size_t i = 0; i < np->n_input; i++) {
            const char *name = np->input[i] ? np->input[i] : "";
            int v = -1;
            if (name[0]) {
                v = map_get(&b->map, name);
                /* Unknown yet: either produced later (order error, caught in
                 * finalize) or never (dangling, caught there too). */
                if (v < 0 && (v = add_value(b, name, CS_VALUE_INTERMEDIATE)) < 0)
                    return cs_fail(err, CS_ERR_NOMEM, "out of memory");
            }
            n->inputs[i] = v;
        }
        for (size_t i = 0; i < np->n_output; i++) {
            const char *name = np->output[i] ? np->output[i] : "";
            int v = -1;
            if (name[0]) {
                v = map_get(&b->map, name);
                if (v >= 0 && (g->values[v].kind != CS_VALUE_INTERMEDIATE || g->values[v].producer >= 0))
                    return cs_fail(err, CS_ERR_FORMAT, "node '%s' writes '%s', which is already defined",
                                   n->name, name);
                if (v < 0 && (v = add_value(b, name, CS_VALUE_INTERMEDIATE)) < 0)
                    return cs_fail(err, CS_ERR_NOMEM, "out of memory");
                g->values[v].producer = g->n_nodes - 1;
            }
            n->outputs[i] = v;
        }
        for (size_t i = 0; i < np->n_attribute; i++) {
            cs_status st = convert_attr(b, n, np->attribute[i], &n->attrs[i]);
            if (st)
                return st;
        }
    }

    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        const char *name = vi->name ? vi->name : "";
        int v = map_get(&b->map, name);
        if (v < 0)
            return cs_fail(err, CS_ERR_FORMAT, "graph output '%s' is not produced by any node", name);
        cs_value *val = &g->values[v];
        if (val->kind == CS_VALUE_INTERMEDIATE && val->decl.ndim < 0 && vi->type) {
            cs_status st = read_value_info(b, vi, val);
            if (st)
                return st;
        }
        val->is_output = true;
        g->outputs[g->n_outputs++] = v;
    }
    if (g->n_outputs == 0)
        return cs_fail(err, CS_ERR_FORMAT, "graph has no outputs");
    return cs_graph_finalize(g, err);
}

cs_status cs_onnx_load_bytes(const uint8_t *buf, size_t len, const char *base_dir,
                             cs_graph **out, cs_err *err)
{
    *out = NULL;
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    if (!m)
        return cs_fail(err, CS_ERR_FORMAT, "not an ONNX model (protobuf decode failed: truncated or corrupt)");
    if (!m->graph) {
        onnx__model_proto__free_unpacked(m, NULL);
        return cs_fail(err, CS_ERR_FORMAT, "ONNX model has no graph");
    }
    if (m->ir_version < 3) {
        long long ir = (long long)m->ir_version;
        onnx__model_proto__free_unpacked(m, NULL);
        return cs_fail(err, CS_ERR_UNSUPPORTED, "ONNX IR version %lld is older than 3", ir);
    }
    cs_graph *g = calloc(1, sizeof *g);
    if (!g) {
        onnx__model_proto__free_unpacked(m, NULL);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    }
    cs_arena_init(&g->arena, 0);
    builder b = {.g = g, .base_dir = base_dir, .err = err};
    cs_status st = build_graph(&b, m);
    free(b.map.keys);
    free(b.map.vals);
    onnx__model_proto__free_unpacked(m, NULL);
    if (st) {
        cs_graph_free(g);
        return st;
    }
    *out = g;
    return CS_OK;
}

cs_status cs_onnx_load_file(const char *path, cs_graph **out, cs_err *err)
{
    uint8_t *buf;
    size_t len;
    *out = NULL;
    cs_status st = cs_read_file(path, CS_ONNX_MAX_FILE_BYTES, &buf, &len, err);
    if (st)
        return st;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    st = cs_onnx_load_bytes(buf, len, dirname(dir), out, err);
    free(buf);
    if (st)
        cs_err_prefix(err, "%s", path);
    return st;
}
