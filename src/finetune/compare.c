/* One method of a preconditioner comparison (finetune/compare.h). */
#include "config.h"

#include "finetune/compare.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_MALLINFO2
#include <malloc.h>
#endif

typedef struct watch {
    const cs_finetune_opts *o;
    cs_compare_outcome *out;
    int64_t n_train;
    double epoch_seconds;      /* this epoch's steps so far */
    int64_t heap0;             /* heap in use at the start */
    double bad_loss;           /* the first loss that was not finite, or 0 */
    int bad_epoch;
    int64_t bad_step;
} watch;

/* Heap bytes in use, -1 when it cannot be read. */
static int64_t heap_in_use(void)
{
#ifdef HAVE_MALLINFO2
    struct mallinfo2 m = mallinfo2();
    return (int64_t)(m.uordblks + m.hblkhd);
#else
    return -1;
#endif
}

static void sample_heap(watch *w)
{
    int64_t h = heap_in_use();
    if (h >= 0 && w->heap0 >= 0 && h - w->heap0 > w->out->peak_heap_bytes)
        w->out->peak_heap_bytes = h - w->heap0;
}

static void on_step(void *ctx, int epoch, int64_t step, double loss, double accuracy, double lr, double seconds,
                    double samples_per_sec)
{
    (void)epoch, (void)accuracy, (void)lr, (void)samples_per_sec;
    watch *w = ctx;
    w->epoch_seconds += seconds;
    if (!isfinite(loss) && w->bad_loss == 0)
        w->bad_loss = loss, w->bad_epoch = epoch, w->bad_step = step;
    sample_heap(w);
}

static void on_eval(void *ctx, int epoch, const char *split, double loss, double accuracy)
{
    watch *w = ctx;
    cs_compare_outcome *out = w->out;
    cs_compare_epoch *e = &out->epochs[epoch];
    if (strcmp(split, "train") == 0) {
        /* "train" comes first at each epoch's end: close its timing */
        double before = epoch > 0 ? out->epochs[epoch - 1].train_seconds : 0;
        e->epoch = epoch;
        e->train_seconds = before + w->epoch_seconds;
        e->samples_per_sec = w->epoch_seconds > 0 ? (double)w->n_train / w->epoch_seconds : NAN;
        e->train_loss = loss, e->train_accuracy = accuracy;
        w->epoch_seconds = 0;
        out->n_epochs = epoch + 1;
    } else {
        e->test_loss = loss, e->test_accuracy = accuracy;
    }
    sample_heap(w);
}

static void on_note(void *ctx, const char *text)
{
    const watch *w = ctx;
    if (w->o->on_note)
        w->o->on_note(w->o->ctx, text);
}

cs_status cs_compare_method(cs_graph *g, const cs_dataset *train, const cs_finetune_opts *o, double target,
                            cs_compare_outcome *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    out->time_to_target = NAN;
    out->epoch_to_target = -1;
    out->peak_heap_bytes = heap_in_use() >= 0 ? 0 : -1;
    if (o->epochs < 1 || !o->val)
        return cs_fail(err, CS_ERR_USAGE, "a comparison needs at least one epoch and a test set");
    out->epochs = calloc((size_t)o->epochs, sizeof *out->epochs);
    if (!out->epochs)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for %d epochs' rows", o->epochs);
    for (int i = 0; i < o->epochs; i++) {
        cs_compare_epoch *e = &out->epochs[i];
        e->train_loss = e->train_accuracy = e->test_loss = e->test_accuracy = NAN;
    }
    watch w = {.o = o, .out = out, .n_train = train->n, .heap0 = heap_in_use()};
    cs_finetune_opts fo = *o;
    fo.on_step = on_step;
    fo.on_eval = on_eval;
    fo.on_note = on_note;
    fo.ctx = &w;
    fo.log_every = 1; /* every step's time; the training itself does not change */
    cs_status st = cs_finetune(g, train, &fo, &out->res, err);
    if (!st && w.bad_loss != 0)
        st = cs_fail(err, CS_ERR_RUNTIME, "%s diverged: the loss at epoch %d step %lld is %s (lower its --lr)",
                     o->precond, w.bad_epoch, (long long)w.bad_step, isnan(w.bad_loss) ? "NaN" : "infinite");
    if (st) {
        cs_compare_outcome_free(out);
        return st;
    }
    out->train_seconds = out->n_epochs ? out->epochs[out->n_epochs - 1].train_seconds : 0;
    out->samples_per_sec =
        out->train_seconds > 0 ? (double)train->n * out->n_epochs / out->train_seconds : NAN;
    for (int i = 0; i < out->n_epochs && isfinite(target); i++)
        if (out->epochs[i].test_accuracy >= target) {
            out->time_to_target = out->epochs[i].train_seconds;
            out->epoch_to_target = i;
            break;
        }
    return CS_OK;
}

void cs_compare_outcome_free(cs_compare_outcome *out)
{
    free(out->epochs);
    memset(out, 0, sizeof *out);
}
