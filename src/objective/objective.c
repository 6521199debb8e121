#include "objective/objective.h"

#include <stdlib.h>
#include <string.h>

#include "base/dist.h"
#include "base/parallel.h"

/* Slots hold one micro-batch's contribution each so that lanes can run in
 * any order and the sum still goes in micro-batch order; above this size
 * (large models) there is one lane and the kernels split their own loops. */
#define CS_OBJ_SLOT_BYTES ((size_t)64 << 20)

/* Bytes of the values a forward computes per sample: from a one-sample
 * plan, the input and the outputs of the nodes not folded at prepare. */
static cs_status forward_bytes_per_sample(const cs_graph *g, size_t *bytes, cs_err *err)
{
    cs_plan p;
    memset(&p, 0, sizeof p);
    cs_status st = cs_plan_prepare_batch(&p, g, 1, err);
    if (st)
        return st;
    size_t sum = cs_tensor_bytes(cs_plan_input(&p, 0));
    for (int k = 0; k < g->n_nodes; k++)
        for (int j = 0; !p.folded[k] && j < g->nodes[k].n_outputs; j++)
            if (g->nodes[k].outputs[j] >= 0)
                sum += cs_tensor_bytes(&p.vals[g->nodes[k].outputs[j]]);
    cs_plan_free(&p);
    *bytes = sum > 0 ? sum : 1;
    return CS_OK;
}

/* The micro-batch size: CS_OBJ_MICRO_BYTES of forward values, at most
 * half the batch (so two cores always have work), at least one sample.
 * It must not depend on the thread count (see objective.h). */
static int64_t micro_batch_size(int64_t batch, size_t bytes_per_sample)
{
    int64_t m = (int64_t)(CS_OBJ_MICRO_BYTES / bytes_per_sample);
    int64_t half = (batch + 1) / 2;
    if (m > half)
        m = half;
    return m < 1 ? 1 : m;
}

int64_t cs_objective_micro_batch(const cs_graph *g, int64_t batch)
{
    size_t per_sample;
    cs_err probe;
    /* A graph that cannot run one sample (a batch dimension fixed
     * somewhere inside) keeps whole batches. */
    if (batch <= 1 || forward_bytes_per_sample(g, &per_sample, &probe) != CS_OK)
        return batch;
    return micro_batch_size(batch, per_sample);
}

/* The lane's plan index for micro-batches of `rows` samples. */
static int lane_plan(const cs_obj_lane *ln, int64_t rows)
{
    for (int i = 0; i < ln->n_sizes; i++)
        if (ln->size[i] == rows)
            return i;
    return -1;
}

static void lane_add_size(cs_obj_lane *ln, int64_t rows)
{
    if (rows > 0 && lane_plan(ln, rows) < 0)
        ln->size[ln->n_sizes++] = rows;
}

static cs_status lane_init(cs_objective *o, cs_obj_lane *ln, unsigned ad_mode, bool check_input,
                           cs_err *err)
{
    /* Sizes: full micro-batches, the rest of a full batch, the rest of
     * the last partial batch. */
    int64_t N = o->ds->n, last = N % o->batch;
    lane_add_size(ln, o->micro);
    lane_add_size(ln, o->batch % o->micro);
    lane_add_size(ln, last % o->micro);
    for (int i = 0; i < ln->n_sizes; i++) {
        cs_status st = cs_plan_prepare_batch(&ln->plan[i], o->g, ln->size[i], err);
        if (st)
            return st;
        if (check_input && i == 0 &&
            (st = cs_dataset_check_input(o->ds, cs_plan_input(&ln->plan[0], 0), o->norm, err)))
            return st;
        const cs_tensor *z = &ln->plan[i].vals[o->head.logits_value];
        if (!cs_dtype_is_float(z->dtype) || z->ndim < 1 || z->dims[0] != ln->size[i]) {
            char s[96];
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "output '%s' has shape %s; the loss needs [batch, classes]",
                           o->g->values[o->head.logits_value].name, cs_shape_str(z, s, sizeof s));
        }
        o->classes = cs_tensor_numel(z) / ln->size[i];
        if ((st = cs_ad_init(&ln->ad[i], &ln->plan[i], o->head.logits_value, ad_mode, err)))
            return st;
    }
    ln->work = malloc(sizeof(double) * (size_t)(2 * o->classes + 2));
    if (!ln->work)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    return CS_OK;
}

static void lane_free(cs_obj_lane *ln)
{
    for (int i = 0; i < 3; i++) {
        if (ln->ad[i].p)
            cs_ad_free(&ln->ad[i]);
        if (ln->plan[i].g)
            cs_plan_free(&ln->plan[i]);
    }
    free(ln->work);
}

cs_status cs_objective_init(cs_objective *o, const cs_graph *g, const cs_dataset *ds,
                            const cs_norm *norm, cs_loss_kind loss, int64_t batch,
                            unsigned mode, cs_err *err)
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
    unsigned ad_mode = mode & ~(unsigned)CS_OBJ_WHOLE_BATCH;
    o->batch = batch < ds->n ? batch : ds->n;
    o->micro = mode & CS_OBJ_WHOLE_BATCH ? o->batch : cs_objective_micro_batch(g, o->batch);
    o->max_slots = (int)((o->batch + o->micro - 1) / o->micro);
    int threads = cs_omp_max_threads();
    o->n_lanes = threads < o->max_slots ? threads : o->max_slots;
    size_t P = (size_t)g->n_param_scalars;
    if (o->n_lanes > 1 && (size_t)o->max_slots * P * sizeof(double) > CS_OBJ_SLOT_BYTES)
        o->n_lanes = 1;
    o->lanes = calloc((size_t)o->n_lanes, sizeof *o->lanes);
    if (!o->lanes) {
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = 0; l < o->n_lanes; l++)
        if ((st = lane_init(o, &o->lanes[l], ad_mode, l == 0, err)))
            goto fail;
    if ((st = cs_loss_check_labels(&o->head, ds, o->classes, err)))
        goto fail;
    if (o->n_lanes > 1) {
        o->slots = malloc((size_t)o->max_slots * P * sizeof(double) + 1);
        o->slot_loss = malloc(sizeof(double) * (size_t)o->max_slots);
        o->slot_hits = malloc(sizeof(int64_t) * (size_t)o->max_slots);
        if (!o->slots || !o->slot_loss || !o->slot_hits) {
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory for %d gradient slots", o->max_slots);
            goto fail;
        }
    }
    if (mode & CS_OBJ_WHOLE_BATCH) {
        o->n_plans = o->lanes[0].n_sizes;
        o->plan = o->lanes[0].plan;
        o->ad = o->lanes[0].ad;
    }
    return CS_OK;
fail:
    cs_objective_free(o);
    return st;
}

void cs_objective_free(cs_objective *o)
{
    for (int l = 0; o->lanes && l < o->n_lanes; l++)
        lane_free(&o->lanes[l]);
    free(o->lanes);
    free(o->slots);
    free(o->slot_loss);
    free(o->slot_hits);
    memset(o, 0, sizeof *o);
}

int64_t cs_objective_bytes(const cs_objective *o)
{
    size_t bytes = 0;
    for (int l = 0; o->lanes && l < o->n_lanes; l++) {
        const cs_obj_lane *ln = &o->lanes[l];
        for (int i = 0; i < 3; i++)
            bytes += ln->plan[i].arena.used_bytes + ln->ad[i].arena.used_bytes;
        bytes += sizeof(double) * (size_t)(2 * o->classes + 2);
    }
    if (o->slots)
        bytes += (size_t)o->max_slots * ((size_t)o->g->n_param_scalars + 2) * sizeof(double);
    return (int64_t)bytes;
}

/* What one pass computes per micro-batch. */
typedef enum {
    OBJ_LOSS,   /* loss and hits only */
    OBJ_GRAD,   /* scale * sum of the samples' gradients */
    OBJ_HVP,    /* scale * sum of the samples' Hessian-vector products */
    OBJ_GGNVP,  /* ... GGN-vector products */
    OBJ_EMPFVP, /* ... empirical Fisher-vector products */
} obj_kind;

typedef struct obj_task {
    obj_kind kind;
    const double *v; /* the vector of the products */
    int layer;       /* v's block, or -1 */
    double scale;
} obj_task;

/* Samples [start, start + rows) on lane ln: *loss gets the sum of their
 * losses, *hits the correct predictions, and out (zeroed by the caller,
 * n_param_scalars long, NULL for OBJ_LOSS) has the task's product added. */
static cs_status micro_run(cs_objective *o, cs_obj_lane *ln, int64_t start, int64_t rows,
                           const obj_task *t, double *out, double *loss, int64_t *hits,
                           cs_err *err)
{
    int i = lane_plan(ln, rows);
    if (i < 0)
        return cs_fail(err, CS_ERR_RUNTIME, "no plan for a micro-batch of %lld samples",
                       (long long)rows);
    cs_plan *p = &ln->plan[i];
    cs_ad *ad = &ln->ad[i];
    cs_status st = cs_dataset_fill_inputs(o->ds, start, o->norm, cs_plan_input(p, 0), err);
    if (!st)
        st = cs_plan_forward(p, err);
    if (st)
        return st;
    const int zv = o->head.logits_value;
    const cs_tensor *z = &p->vals[zv];
    *loss = cs_loss_batch_sum(&o->head, z, o->ds, start, hits);
    switch (t->kind) {
    case OBJ_LOSS:
        return CS_OK;
    case OBJ_GRAD:
        ad->param_grads = true;
        cs_loss_grad_batch(&o->head, z, o->ds, start, t->scale, cs_ad_seed(ad), ln->work);
        if ((st = cs_ad_backward(ad, err)))
            return st;
        cs_ad_add_param_vector(ad, false, 1.0, out);
        return CS_OK;
    case OBJ_HVP:
        /* First-order gradients of every intermediate (parameters' own are
         * not needed here), then tangents, then R{gradient}. */
        ad->param_grads = false;
        cs_loss_grad_batch(&o->head, z, o->ds, start, t->scale, cs_ad_seed(ad), ln->work);
        if ((st = cs_ad_backward(ad, err)) || (st = cs_ad_jvp(ad, t->v, t->layer, err)))
            return st;
        if (ad->tan_live[zv])
            cs_loss_hvp_batch(&o->head, z, &ad->tan[zv], t->scale, cs_ad_rseed(ad), ln->work);
        if ((st = cs_ad_rbackward(ad, err)))
            return st;
        cs_ad_add_param_vector(ad, true, 1.0, out);
        return CS_OK;
    case OBJ_GGNVP:
        /* J v by forward mode, Lambda (J v) at the logits, J^T by reverse. */
        if ((st = cs_ad_jvp(ad, t->v, t->layer, err)))
            return st;
        if (ad->tan_live[zv])
            cs_loss_hvp_batch(&o->head, z, &ad->tan[zv], t->scale, cs_ad_seed(ad), ln->work);
        else
            memset(cs_ad_seed(ad)->data, 0, cs_tensor_bytes(cs_ad_seed(ad)));
        ad->param_grads = true;
        if ((st = cs_ad_backward(ad, err)))
            return st;
        cs_ad_add_param_vector(ad, false, 1.0, out);
        return CS_OK;
    case OBJ_EMPFVP: {
        if ((st = cs_ad_jvp(ad, t->v, t->layer, err)))
            return st;
        cs_tensor *seed = cs_ad_seed(ad);
        cs_loss_grad_batch(&o->head, z, o->ds, start, 1.0, seed, ln->work); /* dl_n/dz */
        const cs_tensor *tz = &ad->tan[zv];
        bool live = ad->tan_live[zv];
        int64_t C = o->classes;
        bool dbl = seed->dtype == CS_DT_DOUBLE;
        for (int64_t b = 0; b < rows; b++) {
            /* seed row b becomes scale (g_b^T v) dl_b/dz */
            double c = 0;
            for (int64_t k = 0; live && k < C; k++)
                c += (dbl ? ((double *)seed->data)[b * C + k] : ((float *)seed->data)[b * C + k]) *
                     (dbl ? ((double *)tz->data)[b * C + k] : ((float *)tz->data)[b * C + k]);
            for (int64_t k = 0; k < C; k++) {
                if (dbl)
                    ((double *)seed->data)[b * C + k] *= t->scale * c;
                else
                    ((float *)seed->data)[b * C + k] =
                        (float)(((float *)seed->data)[b * C + k] * t->scale * c);
            }
        }
        ad->param_grads = true;
        if ((st = cs_ad_backward(ad, err)))
            return st;
        cs_ad_add_param_vector(ad, false, 1.0, out);
        return CS_OK;
    }
    }
    return cs_fail(err, CS_ERR_RUNTIME, "unknown objective task");
}

/* Micro-batch j of the batch [b0, b1): its first sample in *start, its
 * size returned. */
static int64_t micro_span(const cs_objective *o, int64_t b0, int64_t b1, int j, int64_t *start)
{
    *start = b0 + j * o->micro;
    return b1 - *start < o->micro ? b1 - *start : o->micro;
}

/* Samples [first, end), a batch at a time, each batch as micro-batches:
 * out (zeroed here unless NULL) gets the sum of the task's products,
 * *loss the summed loss, *hits the correct predictions.  With one lane the
 * micro-batches run in order and add straight into out; with several they
 * run side by side into slots, added afterwards in the same order, which
 * gives the same sums (each micro-batch's float contribution is exact in
 * its double slot). */
static cs_status run_range(cs_objective *o, int64_t first, int64_t end, const obj_task *t,
                           double *out, double *loss, int64_t *hits, cs_err *err)
{
    const size_t P = (size_t)o->g->n_param_scalars;
    if (out)
        memset(out, 0, sizeof(double) * P);
    double loss_sum = 0;
    int64_t hit_sum = 0;
    for (int64_t b0 = first; b0 < end; b0 += o->batch) {
        const int64_t b1 = b0 + o->batch < end ? b0 + o->batch : end;
        const int k = (int)((b1 - b0 + o->micro - 1) / o->micro);
        if (o->n_lanes == 1 || k == 1) {
            for (int j = 0; j < k; j++) {
                double l;
                int64_t h, s, rows = micro_span(o, b0, b1, j, &s);
                cs_status st = micro_run(o, &o->lanes[0], s, rows, t, out, &l, &h, err);
                if (st)
                    return st;
                loss_sum += l;
                hit_sum += h;
            }
            continue;
        }
        const int lanes = k < o->n_lanes ? k : o->n_lanes;
#pragma omp parallel num_threads(lanes)
        {
            cs_obj_lane *ln = &o->lanes[cs_omp_thread()];
            ln->st = CS_OK;
            /* micro-batch j on lane j mod lanes: a thread's kernels then
             * run on one thread (nested regions stay inactive) */
            for (int j = cs_omp_thread(); j < k && !ln->st; j += lanes) {
                int64_t s, rows = micro_span(o, b0, b1, j, &s);
                double *slot = out ? o->slots + (size_t)j * P : NULL;
                if (slot)
                    memset(slot, 0, sizeof(double) * P);
                ln->st = micro_run(o, ln, s, rows, t, slot, &o->slot_loss[j], &o->slot_hits[j],
                                   &ln->err);
            }
        }
        for (int l = 0; l < lanes; l++)
            if (o->lanes[l].st) {
                *err = o->lanes[l].err;
                return o->lanes[l].st;
            }
        for (int j = 0; j < k; j++) {
            loss_sum += o->slot_loss[j];
            hit_sum += o->slot_hits[j];
            if (out) {
                const double *slot = o->slots + (size_t)j * P;
                for (size_t q = 0; q < P; q++)
                    out[q] += slot[q];
            }
        }
    }
    if (loss)
        *loss = loss_sum;
    if (hits)
        *hits = hit_sum;
    return CS_OK;
}

/* The whole-dataset passes below: with the samples sliced across ranks
 * (doc/design.md §2.12) each rank sums its own slice scaled by 1/N of
 * the whole dataset, then the ranks' sums are added (cs_dist), which is
 * the single-process sum up to the order of the additions.  The status
 * goes into the same reduction so that a failure on one rank fails all. */
static cs_status reduce_sums(const cs_objective *o, cs_status st, double *out, double *loss,
                             cs_err *err)
{
    if (!o->ds->sliced)
        return st;
    if (out)
        st = cs_dist_sum_f64(st, out, o->g->n_param_scalars, err);
    if (loss)
        st = cs_dist_sum_f64(st, loss, 1, err);
    return cs_dist_agree(st, err);
}

cs_status cs_objective_gradient(cs_objective *o, double *loss, double *grad, cs_err *err)
{
    double inv_n = 1.0 / (double)cs_dataset_total(o->ds), sum = 0;
    obj_task t = {.kind = grad ? OBJ_GRAD : OBJ_LOSS, .layer = -1, .scale = inv_n};
    cs_status st = run_range(o, 0, o->ds->n, &t, grad, &sum, NULL, err);
    st = reduce_sums(o, st, grad, &sum, err);
    if (!st && loss)
        *loss = sum * inv_n;
    return st;
}

cs_status cs_objective_loss(cs_objective *o, int64_t start, int64_t end, double *loss_sum,
                            int64_t *hits, cs_err *err)
{
    if (start < 0 || end > o->ds->n || start > end)
        return cs_fail(err, CS_ERR_RUNTIME, "samples %lld..%lld are outside the %lld loaded",
                       (long long)start, (long long)end, (long long)o->ds->n);
    obj_task t = {.kind = OBJ_LOSS, .layer = -1};
    return run_range(o, start, end, &t, NULL, loss_sum, hits, err);
}

/* One product over the whole dataset (all ranks' slices). */
static cs_status whole_product(cs_objective *o, obj_kind kind, const double *v, int layer,
                               double *out, cs_err *err)
{
    obj_task t = {.kind = kind, .v = v, .layer = layer,
                  .scale = 1.0 / (double)cs_dataset_total(o->ds)};
    return reduce_sums(o, run_range(o, 0, o->ds->n, &t, out, NULL, NULL, err), out, NULL, err);
}

cs_status cs_objective_hvp(cs_objective *o, const double *v, int layer, double *hv, cs_err *err)
{
    return whole_product(o, OBJ_HVP, v, layer, hv, err);
}

cs_status cs_objective_ggnvp(cs_objective *o, const double *v, int layer, double *gv, cs_err *err)
{
    return whole_product(o, OBJ_GGNVP, v, layer, gv, err);
}

cs_status cs_objective_empfvp(cs_objective *o, const double *v, int layer, double *fv, cs_err *err)
{
    return whole_product(o, OBJ_EMPFVP, v, layer, fv, err);
}

cs_status cs_objective_range_gradient(cs_objective *o, int64_t start, int64_t end, double scale,
                                      double *loss_sum, int64_t *hits, double *grad, cs_err *err)
{
    if (start < 0 || end > o->ds->n || start > end)
        return cs_fail(err, CS_ERR_RUNTIME, "samples %lld..%lld are outside the %lld loaded",
                       (long long)start, (long long)end, (long long)o->ds->n);
    obj_task t = {.kind = grad ? OBJ_GRAD : OBJ_LOSS, .layer = -1, .scale = scale};
    return run_range(o, start, end, &t, grad, loss_sum, hits, err);
}

cs_status cs_objective_batch_gradient(cs_objective *o, int64_t start, double *loss, int64_t *hits,
                                      double *grad, cs_err *err)
{
    int64_t end = start + o->batch < o->ds->n ? start + o->batch : o->ds->n;
    if (start < 0 || start >= end)
        return cs_fail(err, CS_ERR_RUNTIME, "batch start %lld is outside the %lld samples",
                       (long long)start, (long long)o->ds->n);
    double B = (double)(end - start), sum;
    obj_task t = {.kind = OBJ_GRAD, .layer = -1, .scale = 1.0 / B};
    cs_status st = run_range(o, start, end, &t, grad, &sum, hits, err);
    if (!st)
        *loss = sum / B;
    return st;
}
