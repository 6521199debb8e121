#include "interp/plan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* Largest intermediate tensor a plan will allocate (elements). */
#define PLAN_MAX_ELEMS ((int64_t)1 << 34)

cs_status cs_graph_input_shape(const cs_graph *g, int i, int64_t batch, cs_tensor *out,
                               cs_err *err)
{
    const cs_value *v = &g->values[g->inputs[i]];
    if (cs_dtype_size(v->decl.dtype) == 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "input '%s' is not a tensor of a supported element type (%s)",
                       v->name, cs_dtype_name(v->decl.dtype));
    if (v->decl.ndim < 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "input '%s' has no declared shape", v->name);
    *out = v->decl;
    out->data = NULL;
    out->owns_data = false;
    bool batch_used = false;
    for (int d = 0; d < out->ndim; d++) {
        if (out->dims[d] >= 0)
            continue;
        if (batch_used)
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "input '%s' has more than one symbolic dimension (dimension %d); "
                           "only the batch dimension may be symbolic", v->name, d);
        out->dims[d] = batch;
        batch_used = true;
    }
    return CS_OK;
}

/* Offsets of each node's argument pointers in p->argv. */
static size_t *argv_offsets(cs_plan *p)
{
    size_t *off = cs_arena_alloc(&p->arena, sizeof *off * (size_t)(p->g->n_nodes + 1));
    if (!off)
        return NULL;
    size_t o = 0;
    for (int k = 0; k < p->g->n_nodes; k++) {
        off[k] = o;
        o += (size_t)(p->g->nodes[k].n_inputs + p->g->nodes[k].n_outputs);
    }
    off[p->g->n_nodes] = o;
    return off;
}

/* Bytes one plan may hold (0: the machine's physical memory, found once).
 * A model of a few hundred bytes can ask for a 64 GiB intermediate
 * (ConstantOfShape, Expand, Tile with a constant shape): the limit makes
 * that a clear error at prepare time instead of an allocation that either
 * fails deep in the arena or, on an overcommitting kernel, succeeds and
 * is killed when its pages are touched. */
static size_t plan_limit_bytes;

void cs_plan_set_memory_limit(size_t bytes)
{
    plan_limit_bytes = bytes;
}

size_t cs_plan_memory_limit(void)
{
    if (plan_limit_bytes)
        return plan_limit_bytes;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0 || (unsigned long)pages > SIZE_MAX / (unsigned long)page)
        return SIZE_MAX;
    return (size_t)pages * (size_t)page;
}

/* Refuse `bytes` more for `what` when the plan would pass its limit. */
static cs_status plan_budget(const cs_plan *p, size_t bytes, const char *what, const cs_tensor *t,
                             cs_err *err)
{
    size_t limit = cs_plan_memory_limit(), used = p->arena.used_bytes;
    if (bytes <= limit && used <= limit - bytes)
        return CS_OK;
    char shape[96] = "";
    if (t)
        cs_shape_str(t, shape, sizeof shape);
    return cs_fail(err, CS_ERR_NOMEM,
                   "%s%s%s needs %zu bytes, with the %zu already planned over the plan's memory "
                   "limit of %zu bytes",
                   what, t ? " " : "", shape, bytes, used, limit);
}

static cs_status alloc_value(cs_plan *p, int v, cs_err *err)
{
    cs_tensor *t = &p->vals[v];
    char what[300];
    snprintf(what, sizeof what, "value '%s'", p->g->values[v].name);
    cs_status st = plan_budget(p, cs_tensor_bytes(t), what, t, err);
    if (st)
        return st;
    t->data = cs_arena_alloc(&p->arena, cs_tensor_bytes(t));
    if (!t->data)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for '%s' (%zu bytes)", p->g->values[v].name,
                       cs_tensor_bytes(t));
    return CS_OK;
}

cs_status cs_plan_prepare(cs_plan *p, const cs_graph *g, const cs_tensor *inputs, cs_err *err)
{
    memset(p, 0, sizeof *p);
    p->g = g;
    cs_arena_init(&p->arena, 0);
    size_t nv = (size_t)g->n_values + 1, nn = (size_t)g->n_nodes + 1;
    p->vals = cs_arena_alloc(&p->arena, sizeof *p->vals * nv);
    p->known = cs_arena_alloc(&p->arena, sizeof *p->known * nv);
    p->is_const = cs_arena_alloc(&p->arena, sizeof *p->is_const * nv);
    p->folded = cs_arena_alloc(&p->arena, sizeof *p->folded * nn);
    p->node_scratch = cs_arena_alloc(&p->arena, sizeof *p->node_scratch * nn);
    p->node_ad_scratch = cs_arena_alloc(&p->arena, sizeof *p->node_ad_scratch * nn);
    size_t *off = p->vals && p->known && p->is_const && p->folded && p->node_scratch &&
                          p->node_ad_scratch
                      ? argv_offsets(p) : NULL;
    p->argv_off = off;
    p->argv = off ? cs_arena_alloc(&p->arena, sizeof *p->argv * (off[g->n_nodes] + 1)) : NULL;
    if (!p->argv) {
        cs_plan_free(p);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory preparing the graph");
    }
    cs_status st = CS_OK;

    for (int v = 0; v < g->n_values; v++) {
        const cs_value *val = &g->values[v];
        if (val->kind == CS_VALUE_INITIALIZER) {
            p->vals[v] = val->init;
            p->vals[v].owns_data = false;
            p->known[v] = true;
            p->is_const[v] = val->param_index < 0;
        }
    }
    for (int i = 0; i < g->n_inputs; i++) {
        int v = g->inputs[i];
        const cs_tensor *in = &inputs[i];
        const cs_value *val = &g->values[v];
        if (cs_dtype_size(val->decl.dtype) == 0) {
            st = cs_fail(err, CS_ERR_UNSUPPORTED, "input '%s' is not a tensor of a supported element type (%s)",
                         val->name, cs_dtype_name(val->decl.dtype));
            goto fail;
        }
        if (in->dtype != val->decl.dtype) {
            st = cs_fail(err, CS_ERR_SHAPE, "input '%s' is %s, the model declares %s", val->name,
                         cs_dtype_name(in->dtype), cs_dtype_name(val->decl.dtype));
            goto fail;
        }
        if (val->decl.ndim >= 0 && in->ndim != val->decl.ndim) {
            st = cs_fail(err, CS_ERR_SHAPE, "input '%s' has rank %d, the model declares %d",
                         val->name, in->ndim, val->decl.ndim);
            goto fail;
        }
        for (int d = 0; d < val->decl.ndim; d++)
            if (val->decl.dims[d] >= 0 && val->decl.dims[d] != in->dims[d]) {
                char a[96], b[96];
                st = cs_fail(err, CS_ERR_SHAPE, "input '%s' has shape %s, the model declares %s",
                             val->name, cs_shape_str(in, a, sizeof a),
                             cs_shape_str(&val->decl, b, sizeof b));
                goto fail;
            }
        if ((st = cs_shape_check(in->ndim, in->dims, in->dtype, PLAN_MAX_ELEMS, val->name, err)))
            goto fail;
        cs_tensor_set_shape(&p->vals[v], in->dtype, in->ndim, in->dims);
        /* Buffers of values not known at prepare time are made in pass 2,
         * so infer sees data == NULL for them. */
        if (in->data) {
            if ((st = alloc_value(p, v, err)))
                goto fail;
            memcpy(p->vals[v].data, in->data, cs_tensor_bytes(in));
            p->known[v] = true;
        }
    }

    /* Pass 1: infer every node in order; fold nodes whose inputs are all
     * constant (or that only read shapes), so per-batch work skips them. */
    for (int k = 0; k < g->n_nodes; k++) {
        const cs_node *n = &g->nodes[k];
        if (!n->op) {
            st = cs_fail(err, CS_ERR_UNSUPPORTED, "operator %s%s%s (node '%s', opset %d) is not supported",
                         n->domain[0] ? n->domain : "", n->domain[0] ? "." : "", n->op_type, n->name,
                         n->opset);
            goto fail;
        }
        cs_tensor **args = p->argv + off[k];
        bool all_const = true;
        for (int i = 0; i < n->n_inputs; i++) {
            int v = n->inputs[i];
            if (v < 0) {
                args[i] = NULL;
                continue;
            }
            args[i] = &p->vals[v];
            all_const = all_const && p->is_const[v];
        }
        for (int j = 0; j < n->n_outputs; j++)
            args[n->n_inputs + j] = n->outputs[j] >= 0 ? &p->vals[n->outputs[j]] : NULL;

        cs_op_call c = {.node = n, .n_in = n->n_inputs, .in = args, .n_out = n->n_outputs,
                        .out = args + n->n_inputs};
        if ((st = n->op->infer(&c, err)))
            goto fail;
        p->node_scratch[k] = c.scratch_bytes;
        p->node_ad_scratch[k] = c.ad_scratch_bytes;
        for (int j = 0; j < n->n_outputs; j++) {
            int v = n->outputs[j];
            if (v < 0)
                continue;
            cs_tensor *t = &p->vals[v];
            if (cs_dtype_size(t->dtype) == 0) {
                st = cs_fail(err, CS_ERR_RUNTIME, "%s node '%s': output %d has no type", n->op_type,
                             n->name, j);
                goto fail;
            }
            if ((st = cs_shape_check(t->ndim, t->dims, t->dtype, PLAN_MAX_ELEMS, g->values[v].name, err)))
                goto fail;
        }
        bool fold = (n->op->flags & CS_OP_SHAPE_ONLY) ||
                    (all_const && !(n->op->flags & CS_OP_NO_FOLD));
        if (!fold)
            continue;
        for (int j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0 && (st = alloc_value(p, n->outputs[j], err)))
                goto fail;
        char what[300];
        snprintf(what, sizeof what, "workspace of node '%s'", n->name);
        if ((st = plan_budget(p, c.scratch_bytes, what, NULL, err)))
            goto fail;
        c.scratch = cs_arena_alloc(&p->arena, c.scratch_bytes);
        if (!c.scratch) {
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory folding node '%s'", n->name);
            goto fail;
        }
        if ((st = n->op->forward(&c, err)))
            goto fail;
        p->folded[k] = true;
        for (int j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0)
                p->known[n->outputs[j]] = p->is_const[n->outputs[j]] = true;
    }

    /* Pass 2: buffers for the fed inputs and everything computed per batch,
     * and one shared workspace sized for the hungriest node. */
    for (int i = 0; i < g->n_inputs; i++)
        if (!p->vals[g->inputs[i]].data && (st = alloc_value(p, g->inputs[i], err)))
            goto fail;
    for (int k = 0; k < g->n_nodes; k++) {
        if (p->folded[k])
            continue;
        const cs_node *n = &g->nodes[k];
        for (int j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] >= 0 && (st = alloc_value(p, n->outputs[j], err)))
                goto fail;
        if (p->node_scratch[k] > p->scratch_bytes)
            p->scratch_bytes = p->node_scratch[k];
    }
    if ((st = plan_budget(p, p->scratch_bytes, "the shared workspace", NULL, err)))
        goto fail;
    p->scratch = cs_arena_alloc(&p->arena, p->scratch_bytes);
    if (!p->scratch) {
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for %zu bytes of workspace", p->scratch_bytes);
        goto fail;
    }
    p->batch = g->n_inputs > 0 && inputs[0].ndim > 0 ? inputs[0].dims[0] : 0;
    return CS_OK;
fail:
    cs_plan_free(p);
    return st;
}

cs_tensor *cs_plan_input(cs_plan *p, int i)
{
    return &p->vals[p->g->inputs[i]];
}

const cs_tensor *cs_plan_output(const cs_plan *p, int k)
{
    return &p->vals[p->g->outputs[k]];
}

cs_op_call cs_plan_call(const cs_plan *p, int k)
{
    const cs_node *n = &p->g->nodes[k];
    cs_tensor **args = p->argv + p->argv_off[k];
    cs_op_call c = {.node = n, .n_in = n->n_inputs, .in = args, .n_out = n->n_outputs,
                    .out = args + n->n_inputs, .scratch_bytes = p->node_scratch[k],
                    .ad_scratch_bytes = p->node_ad_scratch[k]};
    return c;
}

cs_status cs_plan_forward(cs_plan *p, cs_err *err)
{
    p->forward_count++;
    for (int k = 0; k < p->g->n_nodes; k++) {
        if (p->folded[k])
            continue;
        cs_op_call c = cs_plan_call(p, k);
        c.scratch = p->scratch;
        cs_status st = c.node->op->forward(&c, err);
        if (st)
            return st;
    }
    return CS_OK;
}

void cs_plan_free(cs_plan *p)
{
    cs_arena_free(&p->arena);
    memset(p, 0, sizeof *p);
}

cs_status cs_plan_prepare_batch(cs_plan *p, const cs_graph *g, int64_t batch, cs_err *err)
{
    if (g->n_inputs != 1)
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "the model has %d inputs; curvscope feeds datasets to models with exactly one",
                       g->n_inputs);
    cs_tensor shape;
    cs_status st = cs_graph_input_shape(g, 0, batch, &shape, err);
    if (st)
        return st;
    if (shape.ndim == 0 || shape.dims[0] != batch)
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "input '%s' has no batch dimension: its first dimension is not symbolic",
                       g->values[g->inputs[0]].name);
    return cs_plan_prepare(p, g, &shape, err);
}
