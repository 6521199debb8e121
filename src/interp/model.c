#include "interp/model.h"

#include <math.h>

#include "interp/layer_kind.h"
#include "interp/op.h"
#include "interp/param_views.h"
#include "onnx/loader.h"

cs_status cs_interp_bind(cs_graph *g, cs_err *err)
{
    for (int k = 0; k < g->n_nodes; k++) {
        cs_node *n = &g->nodes[k];
        const cs_op_def *op = cs_op_find(n->op_type, n->domain);
        n->op = op && n->opset >= op->min_opset ? op : NULL;
    }
    cs_status st = cs_param_views_fold(g, err);
    return st ? st : cs_layers_find(g, err);
}

static cs_status bind_loaded(cs_status st, cs_graph **out, cs_err *err)
{
    if (!st && (st = cs_interp_bind(*out, err))) {
        cs_graph_free(*out);
        *out = NULL;
    }
    return st;
}

cs_status cs_model_load_file(const char *path, cs_graph **out, cs_err *err)
{
    *out = NULL;
    return bind_loaded(cs_onnx_load_file(path, out, err), out, err);
}

cs_status cs_model_load_bytes(const uint8_t *buf, size_t len, const char *base_dir, cs_graph **out, cs_err *err)
{
    *out = NULL;
    return bind_loaded(cs_onnx_load_bytes(buf, len, base_dir, out, err), out, err);
}

cs_status cs_model_check_finite(const cs_graph *g, cs_err *err)
{
    for (int k = 0; k < g->n_values; k++) {
        const cs_value *v = &g->values[k];
        if (v->kind != CS_VALUE_INITIALIZER)
            continue;
        int64_t bad = cs_tensor_first_nonfinite(&v->init);
        if (bad < 0)
            continue;
        double x = v->init.dtype == CS_DT_FLOAT ? ((const float *)v->init.data)[bad]
                                                : ((const double *)v->init.data)[bad];
        return cs_fail(err, CS_ERR_FORMAT, "initializer '%s' holds %s at flat index %lld (of %lld): "
                       "the model's weights must be finite", v->name,
                       isnan(x) ? "NaN" : x > 0 ? "+Inf" : "-Inf", (long long)bad,
                       (long long)cs_tensor_numel(&v->init));
    }
    return CS_OK;
}
