/* A preconditioner comparison as rows (rows.h): comparisons,
 * comparison_methods, comparison_epochs, and each method run's
 * finetune_evals as finetune would write them. */
#include "config.h"

#include <math.h>

#include "store/rows.h"
#include "store/store_internal.h"

cs_status cs_store_comparison_begin(cs_store *s, const cs_comparison_info *info, int64_t *id, cs_err *err)
{
    const store_col c[] = {SC_TEXT(info->model_path), SC_TEXT(info->data), SC_TEXT(info->test_data),
                           SC_INT(info->epochs), SC_INT(info->batch), SC_INT((int64_t)info->seed),
                           SC_REAL(info->target_accuracy)};
    cs_status st = store_insert_row(s, ST_COMPARISON, c, 7, err, "insert into comparisons");
    *id = st ? -1 : store_last_rowid(s);
    return st;
}

cs_status cs_store_write_compare_method(cs_store *s, int64_t id, int64_t run_id, const char *method, double lr,
                                        double damping, const cs_compare_outcome *m, cs_err *err)
{
    const cs_compare_epoch *last = m->n_epochs ? &m->epochs[m->n_epochs - 1] : NULL;
    const store_col c[] = {SC_INT(id), SC_TEXT(method), SC_INT(run_id), SC_REAL(lr), SC_REAL(damping),
                           SC_REAL(m->train_seconds), SC_REAL(m->samples_per_sec),
                           SC_COUNT(m->peak_heap_bytes) /* -1: NULL */,
                           SC_REAL(last ? last->test_loss : NAN), SC_REAL(last ? last->test_accuracy : NAN),
                           SC_REAL(m->time_to_target), SC_COUNT(m->epoch_to_target)};
    cs_status st = store_insert_row(s, ST_COMPARISON_METHOD, c, 12, err,
                                    "insert %s into comparison_methods", method);
    for (int i = 0; i < m->n_epochs && !st; i++) {
        const cs_compare_epoch *e = &m->epochs[i];
        const store_col r[] = {SC_INT(id), SC_TEXT(method), SC_INT(e->epoch), SC_REAL(e->train_seconds),
                               SC_REAL(e->samples_per_sec), SC_REAL(e->train_loss), SC_REAL(e->train_accuracy),
                               SC_REAL(e->test_loss), SC_REAL(e->test_accuracy)};
        st = store_insert_row(s, ST_COMPARISON_EPOCH, r, 9, err, "insert %s epoch %d into comparison_epochs",
                              method, e->epoch);
        if (!st)
            st = cs_store_finetune_eval(s, run_id, e->epoch, "train", e->train_loss, e->train_accuracy, err);
        if (!st)
            st = cs_store_finetune_eval(s, run_id, e->epoch, "test", e->test_loss, e->test_accuracy, err);
    }
    return st;
}
