#include "interp/autodiff.h"
#include "tensor/accum.h"

#include <math.h>
#include <string.h>

#include "base/parallel.h"
#include "interp/ops/conv_im2col.h"
#include "tensor/blas.h"

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

cs_status cs_ad_capture(const cs_ad *ad, int layer, cs_layer_capture *cap, cs_err *err)
{
    const cs_graph *g = ad->g;
    if (layer < 0 || layer >= g->n_layers)
        return cs_fail(err, CS_ERR_RUNTIME, "no layer %d", layer);
    const cs_layer *L = &g->layers[layer];
    const cs_node *n = &g->nodes[L->node];
    int in = n->inputs[0];
    if (strcmp(L->op_type, "MatMul") == 0 && is_param(g, in))
        in = n->inputs[1];
    int out = L->bias_node >= 0 ? g->nodes[L->bias_node].outputs[0] : n->outputs[0];
    memset(cap, 0, sizeof *cap);
    cap->layer = layer;
    cap->input = &ad->p->vals[in];
    cap->output = &ad->p->vals[out];
    cap->output_grad = &ad->grad[out];
    if (!ad->grad[out].data)
        return cs_fail(err, CS_ERR_RUNTIME, "layer '%s' has no output gradient (no backward planned)",
                       L->name);
    return CS_OK;
}

/* Bytes cs_ad_per_sample_grads needs at most, over the layers: Conv keeps
 * one group's patches (double, and float when the model is float) and its
 * output gradient rows, once per thread (it splits the samples over
 * threads); MatMul a [K, M] float product. */
static size_t conv_thread_bytes(const cs_tensor *W, const cs_conv_geom *geo, int64_t groups)
{
    size_t KT = (size_t)(cs_conv_patch_rows(geo) * geo->out_size);
    size_t b = KT * (sizeof(double) + sizeof(float)) + (size_t)(W->dims[0] / groups * geo->out_size) * sizeof(double);
    return (b + 63) / 64 * 64; /* each thread's part on its own cache lines */
}

/* The patch cache: every Conv layer's patches in double, while the total
 * stays within CS_AD_PATCH_BYTES (a layer past it recomputes them). */
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
        const cs_node *n = &g->nodes[L->node];
        ad->patches_at[l] = UINT64_MAX;
        if (strcmp(L->op_type, "Conv") != 0 || n->n_inputs < 2)
            continue;
        cs_conv_geom geo;
        int64_t groups;
        const cs_tensor *X = &ad->p->vals[n->inputs[0]], *W = &ad->p->vals[n->inputs[1]];
        if (cs_conv_geometry(n, X, W, &geo, &groups, NULL) != CS_OK)
            continue;
        size_t bytes = (size_t)(X->dims[0] * groups * cs_conv_patch_rows(&geo) * geo.out_size) * sizeof(double);
        if (total + bytes > CS_AD_PATCH_BYTES)
            continue;
        if (!(ad->patches[l] = cs_arena_alloc(&ad->arena, bytes)))
            return cs_fail(err, CS_ERR_NOMEM, "out of memory for the patch cache");
        total += bytes;
    }
    return CS_OK;
}

static size_t per_sample_workspace(const cs_ad *ad)
{
    const cs_graph *g = ad->g;
    size_t most = 64;
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        const cs_node *n = &g->nodes[L->node];
        size_t need = 0;
        if (strcmp(L->op_type, "Conv") == 0 && n->n_inputs >= 2) {
            cs_conv_geom geo;
            int64_t groups;
            const cs_tensor *X = &ad->p->vals[n->inputs[0]], *W = &ad->p->vals[n->inputs[1]];
            if (cs_conv_geometry(n, X, W, &geo, &groups, NULL) != CS_OK)
                continue;
            need = conv_thread_bytes(W, &geo, groups) * (size_t)cs_omp_max_threads();
        } else if (strcmp(L->op_type, "MatMul") == 0) {
            const cs_tensor *W = &g->values[g->params[L->first_param].value].init;
            need = (size_t)cs_tensor_numel(W) * sizeof(float);
        }
        if (need > most)
            most = need;
    }
    return most;
}

/* Element i of a float or double tensor. */
static inline double at(const cs_tensor *t, int64_t i)
{
    return t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

/* Which input slot of node n holds parameter value v. */
static int slot_of(const cs_node *n, int v)
{
    for (int i = 0; i < n->n_inputs; i++)
        if (n->inputs[i] == v)
            return i;
    return -1;
}

/* Gemm: Y = alpha op(A) op(B) + beta C.  Sample n is row n of op(A) and of Y:
 * dB = alpha a_n d_n^T (or its transpose for transB), dC = beta d_n summed to
 * C's shape. */
static cs_status per_sample_gemm(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap,
                                 double *out, int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    double alpha = cs_node_attr_float(n, "alpha", 1.0f), beta = cs_node_attr_float(n, "beta", 1.0f);
    bool trans_a = cs_node_attr_int(n, "transA", 0), trans_b = cs_node_attr_int(n, "transB", 0);
    const cs_tensor *A = cap->input, *D = cap->output_grad;
    int64_t N = D->dims[0], M_out = D->dims[1], K = trans_a ? A->dims[0] : A->dims[1];
    for (int q = 0; q < L->n_params; q++) {
        int v = g->params[L->first_param + q].value;
        int64_t col0 = g->params[L->first_param + q].offset - g->params[L->first_param].offset;
        const cs_tensor *P = &g->values[v].init;
        int s = slot_of(n, v);
        if (s == 1) {
            for (int64_t b = 0; b < N; b++) {
                double *o = out + b * width + col0;
                for (int64_t k = 0; k < K; k++) {
                    double a = alpha * at(A, trans_a ? k * N + b : b * K + k);
                    for (int64_t m = 0; m < M_out; m++) {
                        double d = at(D, b * M_out + m);
                        o[trans_b ? m * K + k : k * M_out + m] = a * d;
                    }
                }
            }
        } else if (s == 2) {
            int64_t pn = cs_tensor_numel(P);
            if (pn != M_out && pn != 1)
                return cs_fail(err, CS_ERR_UNSUPPORTED,
                               "layer '%s': per-sample gradients of a bias of shape other than [N] or scalar",
                               L->name);
            for (int64_t b = 0; b < N; b++) {
                double *o = out + b * width + col0;
                if (pn == 1) {
                    double s1 = 0;
                    for (int64_t m = 0; m < M_out; m++)
                        s1 += at(D, b * M_out + m);
                    o[0] = beta * s1;
                } else {
                    for (int64_t m = 0; m < M_out; m++)
                        o[m] = beta * at(D, b * M_out + m);
                }
            }
        } else {
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "layer '%s': per-sample gradients of Gemm input %d are not supported", L->name, s);
        }
    }
    return CS_OK;
}

/* MatMul (+ bias) with weight W [K, M] as the second operand, input
 * [N, T..., K]: sample n's gradient is A_n^T D_n summed over its T positions
 * (one small GEMM per sample), the bias's is the column sum of D_n. */
static cs_status per_sample_matmul(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap,
                                   double *out, int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    int wv = g->params[L->first_param].value;
    if (slot_of(n, wv) != 1 || g->values[wv].init.ndim != 2)
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "layer '%s': per-sample gradients need the weight as MatMul's 2-D second operand",
                       L->name);
    const cs_tensor *A = cap->input, *D = cap->output_grad;
    int64_t N = A->dims[0], K = A->dims[A->ndim - 1], M = D->dims[D->ndim - 1];
    int64_t T = cs_tensor_numel(A) / (N * K);
    if (A->ndim < 2 || cs_tensor_numel(D) != N * T * M)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s': unexpected shapes for per-sample gradients",
                       L->name);
    for (int64_t b = 0; b < N; b++) {
        double *o = out + b * width;
        if (A->dtype == CS_DT_DOUBLE) {
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)M, (int)T, 1.0,
                        (const double *)A->data + b * T * K, (int)K,
                        (const double *)D->data + b * T * M, (int)M, 0.0, o, (int)M);
        } else {
            float *w = ad->ps_buf; /* [K, M] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)M, (int)T, 1.0f,
                        (const float *)A->data + b * T * K, (int)K,
                        (const float *)D->data + b * T * M, (int)M, 0.0f, w, (int)M);
            for (int64_t i = 0; i < K * M; i++)
                o[i] = w[i];
        }
        if (L->n_params > 1) {
            double *ob = o + K * M;
            memset(ob, 0, sizeof(double) * (size_t)M);
            for (int64_t t = 0; t < T; t++)
                for (int64_t m = 0; m < M; m++)
                    ob[m] += at(D, (b * T + t) * M + m);
        }
    }
    return CS_OK;
}

/* Conv: dW_n = D_n (per group, [M/G, T]) times the patches of sample n
 * ([T, C/G * k]); db_n = sum over positions of D_n. */
static cs_status per_sample_conv(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap,
                                 double *out, int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    const cs_tensor *X = cap->input, *D = cap->output_grad;
    const cs_tensor *W = &ad->p->vals[n->inputs[1]];
    cs_conv_geom geo;
    int64_t groups;
    cs_status st = cs_conv_geometry(n, X, W, &geo, &groups, err);
    if (st)
        return st;
    int64_t N = X->dims[0], C = X->dims[1], M = W->dims[0], T = geo.out_size;
    int64_t Kp = cs_conv_patch_rows(&geo), Mg = M / groups;
    bool dbl = X->dtype == CS_DT_DOUBLE;
    size_t es = cs_dtype_size(X->dtype);
    /* Samples are independent: split over threads, each with its own part
     * of the workspace (per_sample_workspace) for one group's patch matrix
     * in the double the result needs, or the patch cache's, filled by the
     * first seed after a forward and read by the others. */
    size_t part = conv_thread_bytes(W, &geo, groups);
    const int li = (int)(L - g->layers);
    double *cache = ad->patches ? ad->patches[li] : NULL;
    const bool cached = cache && ad->patches_at[li] == ad->p->forward_count;
#pragma omp parallel if (N * Kp * T >= CS_OMP_MIN_ELEMS)
    {
        int64_t lo, hi;
        cs_omp_slice(N, &lo, &hi);
        double *buf = (double *)((char *)ad->ps_buf + part * (size_t)cs_omp_thread());
        double *dd = buf + Kp * T;
        float *colf = (float *)(dd + Mg * T);
        for (int64_t b = lo; b < hi; b++) {
            double *o = out + b * width;
            for (int64_t grp = 0; grp < groups; grp++) {
                const char *xg = (const char *)X->data + (size_t)((b * C + grp * (C / groups)) * geo.in_size) * es;
                double *col = cache ? cache + (b * groups + grp) * Kp * T : buf;
                if (cached) {
                    /* made by an earlier seed of this forward */
                } else if (dbl) {
                    cs_im2col_f64(&geo, (const double *)xg, col, T);
                } else {
                    cs_im2col_f32(&geo, (const float *)xg, colf, T);
                    for (int64_t i = 0; i < Kp * T; i++)
                        col[i] = colf[i];
                }
                const int64_t d0 = (b * M + grp * Mg) * T;
                if (dbl)
                    memcpy(dd, (const double *)D->data + d0, sizeof(double) * (size_t)(Mg * T));
                else
                    for (int64_t m = 0; m < Mg * T; m++)
                        dd[m] = ((const float *)D->data)[d0 + m];
                /* [Mg, Kp] = [Mg, T] x [T, Kp] */
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Mg, (int)Kp, (int)T, 1.0, dd,
                            (int)T, col, (int)T, 0.0, o + grp * Mg * Kp, (int)Kp);
            }
            if (L->n_params > 1) {
                double *ob = o + M * Kp;
                for (int64_t m = 0; m < M; m++)
                    ob[m] = dbl ? cs_sum_f64((const double *)D->data + (b * M + m) * T, T)
                                : cs_sum_f32((const float *)D->data + (b * M + m) * T, T);
            }
        }
    }
    if (cache)
        ad->patches_at[li] = ad->p->forward_count;
    return CS_OK;
}

/* BatchNormalization (running statistics): y = scale * xhat + B with
 * xhat = (x - mean) / sqrt(var + eps); per channel c,
 * dscale_n[c] = sum_pos xhat * d, dB_n[c] = sum_pos d. */
static cs_status per_sample_bn(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap,
                               double *out, int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    const cs_tensor *X = cap->input, *D = cap->output_grad;
    const cs_tensor *mean = &ad->p->vals[n->inputs[3]], *var = &ad->p->vals[n->inputs[4]];
    double eps = cs_node_attr_float(n, "epsilon", 1e-5f);
    int64_t N = X->dims[0], C = X->dims[1], S = cs_tensor_numel(X) / (N * C);
    for (int q = 0; q < L->n_params; q++) {
        int s = slot_of(n, g->params[L->first_param + q].value);
        int64_t col0 = g->params[L->first_param + q].offset - g->params[L->first_param].offset;
        if (s != 1 && s != 2)
            return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s': unexpected parameter slot %d", L->name, s);
        bool f32 = X->dtype == CS_DT_FLOAT;
        for (int64_t b = 0; b < N; b++)
            for (int64_t c = 0; c < C; c++) {
                /* dScale = sum (x - mean) / sqrt(var + eps) d, dB = sum d */
                double mu = at(mean, c), inv = 1.0 / sqrt(at(var, c) + eps), acc;
                int64_t e = (b * C + c) * S;
                if (f32)
                    acc = s == 1 ? inv * cs_dot_centered_f32((const float *)X->data + e,
                                                             (const float *)D->data + e, mu, S)
                                 : cs_sum_f32((const float *)D->data + e, S);
                else
                    acc = s == 1 ? inv * cs_dot_centered_f64((const double *)X->data + e,
                                                             (const double *)D->data + e, mu, S)
                                 : cs_sum_f64((const double *)D->data + e, S);
                out[b * width + col0 + c] = acc;
            }
    }
    return CS_OK;
}

/* LayerNormalization over the trailing axes from `axis`: per row,
 * xhat = (x - mean) / sqrt(var + eps); dScale_n = sum over the sample's rows
 * of xhat * d, dB_n = sum of d (Scale and B of the normalised shape). */
static cs_status per_sample_ln(const cs_ad *ad, const cs_layer *L, const cs_layer_capture *cap,
                               double *out, int64_t width, cs_err *err)
{
    const cs_graph *g = ad->g;
    const cs_node *n = &g->nodes[L->node];
    const cs_tensor *X = cap->input, *D = cap->output_grad;
    int64_t axis = cs_node_attr_int(n, "axis", -1);
    if (axis < 0)
        axis += X->ndim;
    double eps = cs_node_attr_float(n, "epsilon", 1e-5f);
    int64_t N = X->dims[0], Dn = 1;
    for (int a = (int)axis; a < X->ndim; a++)
        Dn *= X->dims[a];
    if (axis < 1)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s': normalising over the batch axis", L->name);
    int64_t rows = cs_tensor_numel(X) / (N * Dn);
    for (int q = 0; q < L->n_params; q++) {
        int s = slot_of(n, g->params[L->first_param + q].value);
        int64_t col0 = g->params[L->first_param + q].offset - g->params[L->first_param].offset;
        if (cs_tensor_numel(&g->values[g->params[L->first_param + q].value].init) != Dn)
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "layer '%s': per-sample gradients of a broadcast LayerNormalization scale",
                           L->name);
        for (int64_t b = 0; b < N; b++) {
            double *o = out + b * width + col0;
            memset(o, 0, sizeof(double) * (size_t)Dn);
            for (int64_t r = 0; r < rows; r++) {
                int64_t base = (b * rows + r) * Dn;
                double mu = 0, m2 = 0;
                for (int64_t i = 0; i < Dn; i++)
                    mu += at(X, base + i);
                mu /= (double)Dn;
                for (int64_t i = 0; i < Dn; i++)
                    m2 += (at(X, base + i) - mu) * (at(X, base + i) - mu);
                double inv = 1.0 / sqrt(m2 / (double)Dn + eps);
                for (int64_t i = 0; i < Dn; i++)
                    o[i] += s == 1 ? (at(X, base + i) - mu) * inv * at(D, base + i) : at(D, base + i);
            }
        }
    }
    return CS_OK;
}

cs_status cs_ad_per_sample_grads(const cs_ad *ad, int layer, double *out, cs_err *err)
{
    cs_layer_capture cap;
    cs_status st = cs_ad_capture(ad, layer, &cap, err);
    if (st)
        return st;
    const cs_layer *L = &ad->g->layers[layer];
    int64_t width = L->numel;
    const char *op = L->op_type;
    if (strcmp(op, "Gemm") == 0)
        return per_sample_gemm(ad, L, &cap, out, width, err);
    if (strcmp(op, "MatMul") == 0)
        return per_sample_matmul(ad, L, &cap, out, width, err);
    if (strcmp(op, "Conv") == 0)
        return per_sample_conv(ad, L, &cap, out, width, err);
    if (strcmp(op, "BatchNormalization") == 0)
        return per_sample_bn(ad, L, &cap, out, width, err);
    if (strcmp(op, "LayerNormalization") == 0)
        return per_sample_ln(ad, L, &cap, out, width, err);
    return cs_fail(err, CS_ERR_UNSUPPORTED, "layer '%s' (%s): no per-sample gradient rule", L->name, op);
}
