#include "interp/autodiff.h"

#include <math.h>
#include <string.h>

#include "interp/layer_kind.h"

static bool is_float_value(const cs_plan *p, int v)
{
    return v >= 0 && cs_dtype_is_float(p->vals[v].dtype);
}

static bool is_param(const cs_graph *g, int v)
{
    return v >= 0 && g->values[v].param_index >= 0;
}

/* A buffer shaped like value v of the plan, from the ad arena. */
static cs_status alloc_like(cs_ad *ad, int v, cs_tensor *t, cs_err *err)
{
    const cs_tensor *x = &ad->p->vals[v];
    cs_tensor_set_shape(t, x->dtype, x->ndim, x->dims);
    t->data = cs_arena_alloc(&ad->arena, cs_tensor_bytes(t));
    t->owns_data = false;
    if (!t->data)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the gradient of '%s'",
                       ad->g->values[v].name);
    return CS_OK;
}

static void zero(cs_tensor *t)
{
    if (t->data)
        memset(t->data, 0, cs_tensor_bytes(t));
}

/* Values depending on a source (parameters, and graph inputs on request). */
static void mark_from_sources(cs_ad *ad, bool inputs, bool *from)
{
    const cs_graph *g = ad->g;
    for (int v = 0; v < g->n_values; v++)
        from[v] = is_param(g, v) && is_float_value(ad->p, v);
    if (inputs)
        for (int i = 0; i < g->n_inputs; i++)
            from[g->inputs[i]] = is_float_value(ad->p, g->inputs[i]);
    for (int k = 0; k < g->n_nodes; k++) {
        if (ad->p->folded[k])
            continue;
        const cs_node *n = &g->nodes[k];
        bool any = false;
        for (int i = 0; i < n->n_inputs; i++)
            any = any || (n->inputs[i] >= 0 && from[n->inputs[i]]);
        if (!any || (n->op->flags & CS_OP_NO_GRAD))
            continue;
        for (int j = 0; j < n->n_outputs; j++)
            if (is_float_value(ad->p, n->outputs[j]))
                from[n->outputs[j]] = true;
    }
}

static size_t per_sample_workspace(const cs_ad *ad);
static cs_status plan_patch_cache(cs_ad *ad, cs_err *err);

static int layer_input_value(const cs_graph *g, const cs_layer *L);

/* Which axis of each layer's input holds the samples: the one whose extent
 * follows the batch size, found by preparing the graph a second time, for
 * another batch size, and comparing the shapes (shapes only: the probe
 * plan is never run, and is made for at most 3 samples). */
static cs_status find_batch_axes(cs_ad *ad, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_plan *p = ad->p;
    ad->batch_axis = cs_arena_alloc(&ad->arena, sizeof(int) * (size_t)(g->n_layers + 1));
    if (!ad->batch_axis)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the layers' batch axes");
    for (int l = 0; l < g->n_layers; l++)
        ad->batch_axis[l] = p->batch > 0 ? -1 : 0;
    if (p->batch <= 0 || g->n_layers == 0)
        return CS_OK;
    int64_t B = p->batch, b2 = B == 2 ? 3 : 2;
    cs_plan probe;
    cs_status st = cs_plan_prepare_batch(&probe, g, b2, err);
    if (st)
        return st;
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        int v = L->kind->samples_on_output ? g->nodes[L->node].outputs[0] : layer_input_value(g, L);
        const cs_tensor *a = &p->vals[v], *b = &probe.vals[v];
        int axis = -1;
        for (int d = 0; a->ndim == b->ndim && d < a->ndim; d++)
            if (a->dims[d] == B && b->dims[d] == b2)
                axis = axis < 0 ? d : -2; /* two axes follow the batch: none is its own */
        ad->batch_axis[l] = axis < 0 ? -1 : axis;
    }
    cs_plan_free(&probe);
    return CS_OK;
}

cs_status cs_ad_init(cs_ad *ad, cs_plan *p, int seed_value, unsigned mode, cs_err *err)
{
    memset(ad, 0, sizeof *ad);
    const cs_graph *g = p->g;
    ad->p = p;
    ad->g = g;
    if (mode & CS_AD_HVP)
        mode |= CS_AD_GRAD | CS_AD_TANGENT;
    ad->mode = mode;
    ad->seed_value = seed_value;
    ad->param_grads = true;
    cs_arena_init(&ad->arena, 0);
    size_t nv = (size_t)g->n_values + 1, nn = (size_t)g->n_nodes + 1;
    ad->need_grad = cs_arena_alloc(&ad->arena, nv * sizeof(bool));
    ad->need_tan = cs_arena_alloc(&ad->arena, nv * sizeof(bool));
    ad->tan_live = cs_arena_alloc(&ad->arena, nv * sizeof(bool));
    ad->node_bwd = cs_arena_alloc(&ad->arena, nn * sizeof(bool));
    ad->grad = cs_arena_alloc(&ad->arena, nv * sizeof(cs_tensor));
    ad->tan = cs_arena_alloc(&ad->arena, nv * sizeof(cs_tensor));
    ad->tgrad = cs_arena_alloc(&ad->arena, nv * sizeof(cs_tensor));
    bool *reach = cs_arena_alloc(&ad->arena, nv * sizeof(bool));
    if (!ad->need_grad || !ad->need_tan || !ad->tan_live || !ad->node_bwd || !ad->grad ||
        !ad->tan || !ad->tgrad || !reach) {
        cs_ad_free(ad);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory planning derivatives");
    }
    cs_status st = CS_OK;

    /* Values on a path to the seed. */
    reach[seed_value] = true;
    for (int k = g->n_nodes - 1; k >= 0; k--) {
        if (p->folded[k])
            continue;
        const cs_node *n = &g->nodes[k];
        bool any = false;
        for (int j = 0; j < n->n_outputs; j++)
            any = any || (n->outputs[j] >= 0 && reach[n->outputs[j]]);
        if (!any || (n->op->flags & CS_OP_NO_GRAD))
            continue;
        for (int i = 0; i < n->n_inputs; i++)
            if (is_float_value(p, n->inputs[i]))
                reach[n->inputs[i]] = true;
    }
    if (mode & CS_AD_GRAD) {
        mark_from_sources(ad, mode & CS_AD_INPUT_GRAD, ad->need_grad);
        for (int v = 0; v < g->n_values; v++)
            ad->need_grad[v] = ad->need_grad[v] && reach[v];
        if (!ad->need_grad[seed_value]) {
            cs_ad_free(ad);
            return cs_fail(err, CS_ERR_UNSUPPORTED, "'%s' does not depend on any parameter",
                           g->values[seed_value].name);
        }
    }
    if (mode & CS_AD_TANGENT)
        mark_from_sources(ad, false, ad->need_tan);

    size_t scratch = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        if (p->folded[k])
            continue;
        const cs_node *n = &g->nodes[k];
        bool out_g = false, in_g = false, in_t = false;
        for (int j = 0; j < n->n_outputs; j++)
            out_g = out_g || (n->outputs[j] >= 0 && ad->need_grad[n->outputs[j]]);
        for (int i = 0; i < n->n_inputs; i++) {
            in_g = in_g || (n->inputs[i] >= 0 && ad->need_grad[n->inputs[i]]);
            in_t = in_t || (n->inputs[i] >= 0 && ad->need_tan[n->inputs[i]]);
        }
        ad->node_bwd[k] = out_g && in_g;
        const char *missing = NULL;
        if (ad->node_bwd[k] && !n->op->vjp)
            missing = "gradient (vjp)";
        else if (in_t && !n->op->jvp && !(n->op->flags & CS_OP_NO_GRAD))
            missing = "forward-mode (jvp)";
        else if ((mode & CS_AD_HVP) && ad->node_bwd[k] && !n->op->rop &&
                 !(n->op->flags & CS_OP_LINEAR))
            missing = "second-order (rop)";
        if (missing) {
            cs_ad_free(ad);
            return cs_fail(err, CS_ERR_UNSUPPORTED, "operator %s (node '%s') has no %s rule",
                           n->op_type, n->name, missing);
        }
        if ((ad->node_bwd[k] || in_t) && p->node_ad_scratch[k] > scratch)
            scratch = p->node_ad_scratch[k];
    }
    for (int v = 0; v < g->n_values && !st; v++) {
        if (ad->need_grad[v])
            st = alloc_like(ad, v, &ad->grad[v], err);
        if (!st && (mode & CS_AD_HVP) && ad->need_grad[v])
            st = alloc_like(ad, v, &ad->tgrad[v], err);
        if (!st && ad->need_tan[v])
            st = alloc_like(ad, v, &ad->tan[v], err);
    }
    ad->scratch_bytes = scratch;
    ad->scratch = st ? NULL : cs_arena_alloc(&ad->arena, scratch);
    if (!st && !ad->scratch)
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for %zu bytes of workspace", scratch);
    if (!st && (mode & CS_AD_GRAD)) {
        ad->ps_bytes = per_sample_workspace(ad);
        ad->ps_buf = cs_arena_alloc(&ad->arena, ad->ps_bytes);
        if (!ad->ps_buf)
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for per-sample gradient workspace");
    }
    if (!st && (mode & CS_AD_GRAD))
        st = find_batch_axes(ad, err);
    if (!st && (mode & CS_AD_GRAD) && (mode & CS_AD_PATCH_CACHE))
        st = plan_patch_cache(ad, err);
    if (st)
        cs_ad_free(ad);
    return st;
}

void cs_ad_free(cs_ad *ad)
{
    cs_arena_free(&ad->arena);
    memset(ad, 0, sizeof *ad);
}

cs_tensor *cs_ad_seed(cs_ad *ad)
{
    return &ad->grad[ad->seed_value];
}

cs_tensor *cs_ad_rseed(cs_ad *ad)
{
    return &ad->tgrad[ad->seed_value];
}

/* Largest input / output count, for the argument arrays below. */
#define AD_MAX_ARGS 64

static cs_status too_many_args(const cs_node *n, cs_err *err)
{
    return cs_fail(err, CS_ERR_UNSUPPORTED, "node '%s' has more than %d inputs or outputs", n->name,
                   AD_MAX_ARGS);
}

/* One reverse sweep over `bufs` (grad or tgrad), seeded by the caller.
 * With `second`, also the rop terms with gradients `first` and tangents. */
static cs_status sweep_backward(cs_ad *ad, cs_tensor *bufs, const cs_tensor *first, bool params,
                                cs_err *err)
{
    const cs_graph *g = ad->g;
    for (int v = 0; v < g->n_values; v++)
        if (ad->need_grad[v] && v != ad->seed_value)
            zero(&bufs[v]);
    cs_tensor *gout[AD_MAX_ARGS], *gin[AD_MAX_ARGS], *fout[AD_MAX_ARGS], *tin[AD_MAX_ARGS];
    for (int k = g->n_nodes - 1; k >= 0; k--) {
        if (!ad->node_bwd[k])
            continue;
        const cs_node *n = &g->nodes[k];
        if (n->n_inputs > AD_MAX_ARGS || n->n_outputs > AD_MAX_ARGS)
            return too_many_args(n, err);
        bool any_in = false, any_tan = false;
        for (int i = 0; i < n->n_inputs; i++) {
            int v = n->inputs[i];
            bool want = v >= 0 && ad->need_grad[v] && (params || !is_param(g, v));
            gin[i] = want ? &bufs[v] : NULL;
            any_in = any_in || want;
            tin[i] = first && v >= 0 && ad->tan_live[v] ? &ad->tan[v] : NULL;
            any_tan = any_tan || tin[i];
        }
        if (!any_in)
            continue;
        for (int j = 0; j < n->n_outputs; j++) {
            int v = n->outputs[j];
            gout[j] = v >= 0 && ad->need_grad[v] ? &bufs[v] : NULL;
            fout[j] = v >= 0 && ad->need_grad[v] && first ? (cs_tensor *)&first[v] : NULL;
        }
        cs_op_call c = cs_plan_call(ad->p, k);
        c.scratch = ad->scratch;
        cs_op_ad a = {.gout = gout, .gin = gin};
        cs_status st = n->op->vjp(&c, &a, err);
        if (!st && first && any_tan && n->op->rop) {
            cs_op_ad r = {.gout = fout, .gin = gin, .tin = tin};
            st = n->op->rop(&c, &r, err);
        }
        if (st)
            return st;
    }
    return CS_OK;
}

cs_status cs_ad_backward(cs_ad *ad, cs_err *err)
{
    if (!(ad->mode & CS_AD_GRAD))
        return cs_fail(err, CS_ERR_RUNTIME, "derivatives were planned without reverse mode");
    return sweep_backward(ad, ad->grad, NULL, ad->param_grads, err);
}

cs_status cs_ad_rbackward(cs_ad *ad, cs_err *err)
{
    if (!(ad->mode & CS_AD_HVP))
        return cs_fail(err, CS_ERR_RUNTIME, "derivatives were planned without the R-backward");
    if (!ad->tan_live[ad->seed_value])
        zero(&ad->tgrad[ad->seed_value]); /* the direction does not reach the output */
    return sweep_backward(ad, ad->tgrad, ad->grad, true, err);
}

static cs_status jvp_propagate(cs_ad *ad, cs_err *err);

cs_status cs_ad_jvp(cs_ad *ad, const double *v, int layer, cs_err *err)
{
    const cs_graph *g = ad->g;
    if (!(ad->mode & CS_AD_TANGENT))
        return cs_fail(err, CS_ERR_RUNTIME, "derivatives were planned without forward mode");
    memset(ad->tan_live, 0, sizeof(bool) * (size_t)g->n_values);
    for (int q = 0; q < g->n_params; q++) {
        const cs_param *P = &g->params[q];
        if (layer >= 0 && P->layer != layer)
            continue;
        cs_tensor *t = &ad->tan[P->value];
        if (!t->data)
            continue; /* the parameter does not reach any output */
        cs_convert(t->data, t->dtype, v + P->offset, CS_DT_DOUBLE, cs_tensor_numel(t));
        ad->tan_live[P->value] = true;
    }
    return jvp_propagate(ad, err);
}

cs_status cs_ad_jvp_from_value(cs_ad *ad, int value, cs_err *err)
{
    const cs_graph *g = ad->g;
    if (!(ad->mode & CS_AD_TANGENT))
        return cs_fail(err, CS_ERR_RUNTIME, "derivatives were planned without forward mode");
    if (value < 0 || value >= g->n_values || !ad->tan[value].data)
        return cs_fail(err, CS_ERR_RUNTIME, "value %d has no tangent buffer (it does not depend on a "
                       "parameter)", value);
    memset(ad->tan_live, 0, sizeof(bool) * (size_t)g->n_values);
    ad->tan_live[value] = true;
    return jvp_propagate(ad, err);
}

/* The forward-mode sweep from the values marked in tan_live: every node
 * with a live input, in order. */
static cs_status jvp_propagate(cs_ad *ad, cs_err *err)
{
    const cs_graph *g = ad->g;
    cs_tensor *tin[AD_MAX_ARGS], *tout[AD_MAX_ARGS];
    for (int k = 0; k < g->n_nodes; k++) {
        if (ad->p->folded[k])
            continue;
        const cs_node *n = &g->nodes[k];
        if (n->n_inputs > AD_MAX_ARGS || n->n_outputs > AD_MAX_ARGS)
            return too_many_args(n, err);
        bool live = false;
        for (int i = 0; i < n->n_inputs; i++) {
            int x = n->inputs[i];
            tin[i] = x >= 0 && ad->tan_live[x] ? &ad->tan[x] : NULL;
            live = live || tin[i];
        }
        if (!live || (n->op->flags & CS_OP_NO_GRAD))
            continue;
        for (int j = 0; j < n->n_outputs; j++) {
            int y = n->outputs[j];
            tout[j] = y >= 0 && ad->need_tan[y] ? &ad->tan[y] : NULL;
        }
        cs_op_call c = cs_plan_call(ad->p, k);
        c.scratch = ad->scratch;
        cs_op_ad a = {.tin = tin, .tout = tout};
        cs_status st = n->op->jvp(&c, &a, err);
        if (st)
            return st;
        for (int j = 0; j < n->n_outputs; j++)
            if (tout[j])
                ad->tan_live[n->outputs[j]] = true;
    }
    return CS_OK;
}

static void add_params(const cs_ad *ad, int first, int count, int64_t base, bool r, double scale,
                       double *out);

void cs_ad_add_param_vector(const cs_ad *ad, bool r, double scale, double *out)
{
    add_params(ad, 0, ad->g->n_params, 0, r, scale, out);
}

void cs_ad_add_layer_vector(const cs_ad *ad, int layer, bool r, double scale, double *out)
{
    const cs_layer *L = &ad->g->layers[layer];
    add_params(ad, L->first_param, L->n_params, ad->g->params[L->first_param].offset, r, scale, out);
}

/* Parameters first .. first+count-1, written at out[offset - base]. */
static void add_params(const cs_ad *ad, int first, int count, int64_t base, bool r, double scale,
                       double *out)
{
    const cs_graph *g = ad->g;
    for (int q = first; q < first + count; q++) {
        const cs_param *P = &g->params[q];
        const cs_tensor *t = r ? &ad->tgrad[P->value] : &ad->grad[P->value];
        if (!t->data)
            continue;
        int64_t n = cs_tensor_numel(t);
        double *o = out + (P->offset - base);
        if (t->dtype == CS_DT_FLOAT)
            for (int64_t i = 0; i < n; i++)
                o[i] += scale * ((const float *)t->data)[i];
        else
            for (int64_t i = 0; i < n; i++)
                o[i] += scale * ((const double *)t->data)[i];
    }
}

/* ---- captures ---- */

/* The layer's input: the node's first input that is not a parameter
 * (Gemm's A, MatMul's activation operand, Conv's X, a norm's X). */
static int layer_input_value(const cs_graph *g, const cs_layer *L)
{
    const cs_node *n = &g->nodes[L->node];
    for (int i = 0; i < n->n_inputs; i++)
        if (n->inputs[i] >= 0 && !is_param(g, n->inputs[i]))
            return n->inputs[i];
    return n->inputs[0];
}

cs_status cs_ad_capture(const cs_ad *ad, int layer, cs_layer_capture *cap, cs_err *err)
{
    const cs_graph *g = ad->g;
    if (layer < 0 || layer >= g->n_layers)
        return cs_fail(err, CS_ERR_RUNTIME, "no layer %d", layer);
    const cs_layer *L = &g->layers[layer];
    const cs_node *n = &g->nodes[L->node];
    int in = layer_input_value(g, L);
    int out = L->bias_node >= 0 ? g->nodes[L->bias_node].outputs[0] : n->outputs[0];
    /* A node whose first output is unused downstream (a recurrent layer
     * read through Y_h only): its first output that has a gradient. */
    for (int j = 1; L->bias_node < 0 && (out < 0 || !ad->grad[out].data) && j < n->n_outputs; j++)
        if (n->outputs[j] >= 0 && ad->grad[n->outputs[j]].data)
            out = n->outputs[j];
    if (out < 0)
        return cs_fail(err, CS_ERR_RUNTIME, "layer '%s' has no output gradient (no backward planned)", L->name);
    memset(cap, 0, sizeof *cap);
    cap->layer = layer;
    cap->input = &ad->p->vals[in];
    cap->output = &ad->p->vals[out];
    cap->output_grad = &ad->grad[out];
    cap->output_value = out;
    cap->batch_axis = ad->batch_axis ? ad->batch_axis[layer] : 0;
    if (!ad->grad[out].data)
        return cs_fail(err, CS_ERR_RUNTIME, "layer '%s' has no output gradient (no backward planned)",
                       L->name);
    return CS_OK;
}

/* The patch cache: every layer's forward-time patches (the kinds that keep
 * them), while the total stays within CS_AD_PATCH_BYTES (a layer past it
 * recomputes them). */
static cs_status plan_patch_cache(cs_ad *ad, cs_err *err)
{
    const cs_graph *g = ad->g;
    size_t nl = (size_t)g->n_layers + 1, total = 0;
    ad->patches = cs_arena_alloc(&ad->arena, nl * sizeof(double *));
    ad->patches_at = cs_arena_alloc(&ad->arena, nl * sizeof(uint64_t));
    if (!ad->patches || !ad->patches_at)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the patch cache");
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        ad->patches_at[l] = UINT64_MAX;
        size_t bytes = L->kind->patch_bytes ? L->kind->patch_bytes(ad, L) : 0;
        if (!bytes || total + bytes > CS_AD_PATCH_BYTES)
            continue;
        if (!(ad->patches[l] = cs_arena_alloc(&ad->arena, bytes)))
            return cs_fail(err, CS_ERR_NOMEM, "out of memory for the patch cache (%zu bytes, layer '%s')", bytes,
                           L->name);
        total += bytes;
    }
    return CS_OK;
}

/* Bytes cs_ad_per_sample_grads needs at most, over the layers. */
static size_t per_sample_workspace(const cs_ad *ad)
{
    const cs_graph *g = ad->g;
    size_t most = 64;
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        size_t need = L->kind->per_sample_bytes ? L->kind->per_sample_bytes(ad, L) : 0;
        if (need > most)
            most = need;
    }
    return most;
}

cs_status cs_ad_per_sample_grads(const cs_ad *ad, int layer, double *out, cs_err *err)
{
    return cs_ad_per_sample_grads_with(ad, layer, NULL, out, err);
}

cs_status cs_ad_per_sample_grads_with(const cs_ad *ad, int layer, const cs_tensor *output_grad,
                                      double *out, cs_err *err)
{
    cs_layer_capture cap;
    cs_status st = cs_ad_capture(ad, layer, &cap, err);
    if (st)
        return st;
    if (output_grad) {
        if (!ad->g->layers[layer].kind->linear_in_params)
            return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s' (%s): its per-sample rule reads more "
                           "than its output's gradient", ad->g->layers[layer].name,
                           ad->g->layers[layer].op_type);
        if (cs_tensor_numel(output_grad) != cs_tensor_numel(cap.output_grad) ||
            output_grad->dtype != cap.output_grad->dtype)
            return cs_fail(err, CS_ERR_RUNTIME, "layer '%s': the output gradient given does not have "
                           "the output's shape and type", ad->g->layers[layer].name);
        cap.output_grad = output_grad;
    }
    const cs_layer *L = &ad->g->layers[layer];
    if (!L->kind->per_sample_grads)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s' (%s): no per-sample gradient rule", L->name,
                       L->op_type);
    if (!cs_ad_per_sample_ok(ad, layer))
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "layer '%s' (%s): its input holds the samples %s; per-sample gradients of this kind "
                       "need them on axis 0",
                       L->name, L->op_type, cap.batch_axis < 0 ? "on no single axis" : "on axis 1 or later");
    return L->kind->per_sample_grads(ad, L, &cap, out, L->numel, err);
}

bool cs_ad_per_sample_ok(const cs_ad *ad, int layer)
{
    const cs_layer *L = &ad->g->layers[layer];
    int axis = ad->batch_axis ? ad->batch_axis[layer] : 0;
    return L->kind->per_sample_grads && (axis == 0 || (axis > 0 && L->kind->samples_any_axis));
}
