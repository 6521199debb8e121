#include "interp/objective.h"

#include <stdlib.h>
#include <string.h>

#include "interp/evaluate.h"

cs_status cs_objective_init(cs_objective *o, const cs_graph *g, const cs_dataset *ds,
                            const cs_norm *norm, cs_loss_kind loss, int64_t batch,
                            unsigned ad_mode, cs_err *err)
{
    memset(o, 0, sizeof *o);
    o->g = g;
    o->ds = ds;
    o->norm = norm;
    if (batch <= 0)
        return cs_fail(err, CS_ERR_USAGE, "batch size must be positive");
    if (ds->n == 0)
        return cs_fail(err, CS_ERR_FORMAT, "the dataset has no samples");
    cs_status st = cs_loss_head_init(&o->head, g, loss, err);
    if (st)
        return st;
    o->batch = batch < ds->n ? batch : ds->n;
    int64_t sizes[2] = {o->batch, ds->n % o->batch};
    o->n_plans = sizes[1] ? 2 : 1;
    for (int i = 0; i < o->n_plans; i++) {
        if ((st = cs_plan_prepare_batch(&o->plan[i], g, sizes[i], err)))
            goto fail;
        if (i == 0 && (st = cs_dataset_check_input(ds, cs_plan_input(&o->plan[0], 0), norm, err)))
            goto fail;
        const cs_tensor *z = &o->plan[i].vals[o->head.logits_value];
        if (!cs_dtype_is_float(z->dtype) || z->ndim < 1 || z->dims[0] != sizes[i]) {
            char s[96];
            st = cs_fail(err, CS_ERR_UNSUPPORTED, "output '%s' has shape %s; the loss needs [batch, classes]",
                         g->values[o->head.logits_value].name, cs_shape_str(z, s, sizeof s));
            goto fail;
        }
        o->classes = cs_tensor_numel(z) / sizes[i];
        if ((st = cs_ad_init(&o->ad[i], &o->plan[i], o->head.logits_value, ad_mode, err)))
            goto fail;
    }
    if ((st = cs_loss_check_labels(&o->head, ds, o->classes, err)))
        goto fail;
    o->work = malloc(sizeof(double) * (size_t)(2 * o->classes + 2));
    if (!o->work) {
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    return CS_OK;
fail:
    cs_objective_free(o);
    return st;
}

void cs_objective_free(cs_objective *o)
{
    for (int i = 0; i < 2; i++) {
        if (o->ad[i].p)
            cs_ad_free(&o->ad[i]);
        if (o->plan[i].g)
            cs_plan_free(&o->plan[i]);
    }
    free(o->work);
    memset(o, 0, sizeof *o);
}

/* Run the forward of the batch starting at `start`; returns which plan. */
static cs_status forward_batch(cs_objective *o, int64_t start, int *which, cs_err *err)
{
    int i = start + o->batch <= o->ds->n ? 0 : 1;
    *which = i;
    cs_status st = cs_dataset_fill_inputs(o->ds, start, o->norm, cs_plan_input(&o->plan[i], 0), err);
    return st ? st : cs_plan_forward(&o->plan[i], err);
}

static const cs_tensor *logits(cs_objective *o, int i)
{
    return &o->plan[i].vals[o->head.logits_value];
}

cs_status cs_objective_gradient(cs_objective *o, double *loss, double *grad, cs_err *err)
{
    int64_t N = o->ds->n;
    double inv_n = 1.0 / (double)N, sum = 0;
    if (grad)
        memset(grad, 0, sizeof(double) * (size_t)o->g->n_param_scalars);
    for (int64_t start = 0; start < N; start += o->batch) {
        int i;
        cs_status st = forward_batch(o, start, &i, err);
        if (st)
            return st;
        const cs_tensor *z = logits(o, i);
        sum += cs_loss_batch_sum(&o->head, z, o->ds, start, NULL);
        if (!grad)
            continue;
        cs_ad *ad = &o->ad[i];
        ad->param_grads = true;
        cs_loss_grad_batch(&o->head, z, o->ds, start, inv_n, cs_ad_seed(ad), o->work);
        if ((st = cs_ad_backward(ad, err)))
            return st;
        cs_ad_add_param_vector(ad, false, 1.0, grad);
    }
    if (loss)
        *loss = sum * inv_n;
    return CS_OK;
}

cs_status cs_objective_hvp(cs_objective *o, const double *v, int layer, double *hv, cs_err *err)
{
    int64_t N = o->ds->n;
    double inv_n = 1.0 / (double)N;
    memset(hv, 0, sizeof(double) * (size_t)o->g->n_param_scalars);
    for (int64_t start = 0; start < N; start += o->batch) {
        int i;
        cs_status st = forward_batch(o, start, &i, err);
        if (st)
            return st;
        cs_ad *ad = &o->ad[i];
        const cs_tensor *z = logits(o, i);
        /* First-order gradients of every intermediate (parameters' own are
         * not needed here), then tangents, then R{gradient}. */
        ad->param_grads = false;
        cs_loss_grad_batch(&o->head, z, o->ds, start, inv_n, cs_ad_seed(ad), o->work);
        if ((st = cs_ad_backward(ad, err)) || (st = cs_ad_jvp(ad, v, layer, err)))
            return st;
        if (ad->tan_live[o->head.logits_value])
            cs_loss_hvp_batch(&o->head, z, &ad->tan[o->head.logits_value], inv_n, cs_ad_rseed(ad),
                              o->work);
        if ((st = cs_ad_rbackward(ad, err)))
            return st;
        cs_ad_add_param_vector(ad, true, 1.0, hv);
    }
    return CS_OK;
}

cs_status cs_objective_ggnvp(cs_objective *o, const double *v, int layer, double *gv, cs_err *err)
{
    int64_t N = o->ds->n;
    double inv_n = 1.0 / (double)N;
    memset(gv, 0, sizeof(double) * (size_t)o->g->n_param_scalars);
    for (int64_t start = 0; start < N; start += o->batch) {
        int i;
        cs_status st = forward_batch(o, start, &i, err);
        if (st)
            return st;
        cs_ad *ad = &o->ad[i];
        const cs_tensor *z = logits(o, i);
        /* J v by forward mode, Lambda (J v) at the logits, J^T by reverse. */
        if ((st = cs_ad_jvp(ad, v, layer, err)))
            return st;
        if (ad->tan_live[o->head.logits_value])
            cs_loss_hvp_batch(&o->head, z, &ad->tan[o->head.logits_value], inv_n, cs_ad_seed(ad),
                              o->work);
        else
            memset(cs_ad_seed(ad)->data, 0, cs_tensor_bytes(cs_ad_seed(ad)));
        ad->param_grads = true;
        if ((st = cs_ad_backward(ad, err)))
            return st;
        cs_ad_add_param_vector(ad, false, 1.0, gv);
    }
    return CS_OK;
}

cs_status cs_objective_empfvp(cs_objective *o, const double *v, int layer, double *fv, cs_err *err)
{
    int64_t N = o->ds->n;
    double inv_n = 1.0 / (double)N;
    memset(fv, 0, sizeof(double) * (size_t)o->g->n_param_scalars);
    for (int64_t start = 0; start < N; start += o->batch) {
        int i;
        cs_status st = forward_batch(o, start, &i, err);
        if (st)
            return st;
        cs_ad *ad = &o->ad[i];
        const cs_tensor *z = logits(o, i);
        if ((st = cs_ad_jvp(ad, v, layer, err)))
            return st;
        cs_tensor *seed = cs_ad_seed(ad);
        cs_loss_grad_batch(&o->head, z, o->ds, start, 1.0, seed, o->work); /* dl_n/dz */
        const cs_tensor *tz = &ad->tan[o->head.logits_value];
        bool live = ad->tan_live[o->head.logits_value];
        int64_t B = z->dims[0], C = o->classes;
        bool dbl = seed->dtype == CS_DT_DOUBLE;
        for (int64_t b = 0; b < B; b++) {
            double c = 0;
            for (int64_t k = 0; live && k < C; k++)
                c += (dbl ? ((double *)seed->data)[b * C + k] : ((float *)seed->data)[b * C + k]) *
                     (dbl ? ((double *)tz->data)[b * C + k] : ((float *)tz->data)[b * C + k]);
            for (int64_t k = 0; k < C; k++) {
                if (dbl)
                    ((double *)seed->data)[b * C + k] *= inv_n * c;
                else
                    ((float *)seed->data)[b * C + k] = (float)(((float *)seed->data)[b * C + k] * inv_n * c);
            }
        }
        ad->param_grads = true;
        if ((st = cs_ad_backward(ad, err)))
            return st;
        cs_ad_add_param_vector(ad, false, 1.0, fv);
    }
    return CS_OK;
}

cs_status cs_objective_batch_gradient(cs_objective *o, int64_t start, double *loss, int64_t *hits,
                                      double *grad, cs_err *err)
{
    int i;
    cs_status st = forward_batch(o, start, &i, err);
    if (st)
        return st;
    const cs_tensor *z = logits(o, i);
    int64_t B = z->dims[0];
    *loss = cs_loss_batch_sum(&o->head, z, o->ds, start, hits) / (double)B;
    cs_ad *ad = &o->ad[i];
    ad->param_grads = true;
    cs_loss_grad_batch(&o->head, z, o->ds, start, 1.0 / (double)B, cs_ad_seed(ad), o->work);
    if ((st = cs_ad_backward(ad, err)))
        return st;
    memset(grad, 0, sizeof(double) * (size_t)o->g->n_param_scalars);
    cs_ad_add_param_vector(ad, false, 1.0, grad);
    return CS_OK;
}
