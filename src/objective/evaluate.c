#include "objective/evaluate.h"
#include "base/clock.h"
#include "base/dist.h"

#include <string.h>
#include <time.h>

#include "objective/objective.h"

cs_status cs_evaluate(const cs_graph *g, const cs_dataset *ds, const cs_eval_opts *o,
                      cs_eval_result *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    if (o->batch <= 0)
        return cs_fail(err, CS_ERR_USAGE, "batch size must be positive");
    /* Forward passes only: the objective's micro-batches and lanes, with
     * no derivative buffers. */
    cs_objective obj;
    cs_status st = cs_objective_init(&obj, g, ds, o->norm, o->loss, o->batch, 0, err);
    if (st)
        return st;
    out->head = obj.head;
    out->classes = obj.classes;
    double t0 = cs_now_seconds(), loss_sum = 0;
    int64_t hits = 0;
    for (int64_t start = 0; start < ds->n && !st; start += obj.batch) {
        int64_t end = start + obj.batch < ds->n ? start + obj.batch : ds->n, h;
        double l;
        st = cs_objective_loss(&obj, start, end, &l, &h, err);
        loss_sum += l;
        hits += h;
        if (!st && o->progress)
            o->progress(o->progress_ctx, end, ds->n);
    }
    /* Sliced across ranks (doc/design.md §2.12): the loss sums and hit
     * counts of the slices are added (hits stay exact in a double). */
    double sums[2] = {loss_sum, (double)hits};
    if (ds->sliced)
        st = cs_dist_sum_f64(st, sums, 2, err);
    if (!st) {
        const int64_t N = cs_dataset_total(ds);
        out->seconds = cs_now_seconds() - t0;
        out->samples = N;
        out->loss = sums[0] / (double)N;
        out->has_accuracy = ds->int_labels;
        out->accuracy = ds->int_labels ? sums[1] / (double)N : 0;
    }
    cs_objective_free(&obj);
    return st;
}
