#include "interp/evaluate.h"
#include "base/clock.h"

#include <string.h>
#include <time.h>

#include "interp/plan.h"

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

/* Run samples [start, start + plan batch) and add their loss and hits. */
static cs_status eval_batch(cs_plan *p, const cs_dataset *ds, const cs_eval_opts *o,
                            const cs_loss_head *h, int64_t start, double *loss_sum,
                            int64_t *hits, cs_err *err)
{
    cs_status st = cs_dataset_fill_inputs(ds, start, o->norm, cs_plan_input(p, 0), err);
    if (st || (st = cs_plan_forward(p, err)))
        return st;
    int64_t batch_hits;
    *loss_sum += cs_loss_batch_sum(h, &p->vals[h->logits_value], ds, start, &batch_hits);
    *hits += batch_hits;
    return CS_OK;
}

cs_status cs_evaluate(const cs_graph *g, const cs_dataset *ds, const cs_eval_opts *o,
                      cs_eval_result *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    if (o->batch <= 0)
        return cs_fail(err, CS_ERR_USAGE, "batch size must be positive");
    if (ds->n == 0)
        return cs_fail(err, CS_ERR_FORMAT, "the dataset has no samples");
    cs_status st = cs_loss_head_init(&out->head, g, o->loss, err);
    if (st)
        return st;
    int64_t B = o->batch < ds->n ? o->batch : ds->n;
    cs_plan full, tail;
    memset(&tail, 0, sizeof tail);
    if ((st = cs_plan_prepare_batch(&full, g, B, err)))
        return st;
    if ((st = cs_dataset_check_input(ds, cs_plan_input(&full, 0), o->norm, err)))
        goto done;
    const cs_tensor *z = &full.vals[out->head.logits_value];
    if (!cs_dtype_is_float(z->dtype) || z->ndim < 1 || z->dims[0] != B) {
        char s[96];
        st = cs_fail(err, CS_ERR_UNSUPPORTED, "output '%s' has shape %s; the loss needs [batch, classes]",
                     g->values[out->head.logits_value].name, cs_shape_str(z, s, sizeof s));
        goto done;
    }
    out->classes = cs_tensor_numel(z) / B;
    if ((st = cs_loss_check_labels(&out->head, ds, out->classes, err)))
        goto done;
    int64_t rest = ds->n % B;
    if (rest && (st = cs_plan_prepare_batch(&tail, g, rest, err)))
        goto done;

    double t0 = cs_now_seconds(), loss_sum = 0;
    int64_t hits = 0, start = 0;
    for (; start + B <= ds->n; start += B) {
        if ((st = eval_batch(&full, ds, o, &out->head, start, &loss_sum, &hits, err)))
            goto done;
        if (o->progress)
            o->progress(o->progress_ctx, start + B, ds->n);
    }
    if (rest) {
        if ((st = eval_batch(&tail, ds, o, &out->head, start, &loss_sum, &hits, err)))
            goto done;
        if (o->progress)
            o->progress(o->progress_ctx, ds->n, ds->n);
    }
    out->seconds = cs_now_seconds() - t0;
    out->samples = ds->n;
    out->loss = loss_sum / (double)ds->n;
    out->has_accuracy = ds->int_labels;
    out->accuracy = ds->int_labels ? (double)hits / (double)ds->n : 0;
done:
    cs_plan_free(&full);
    if (tail.g)
        cs_plan_free(&tail);
    return st;
}
