/* One method of a preconditioner comparison (`curvscope compare`, as the
 * ASDL paper's table: Osawa et al. 2023): cs_finetune with the given
 * options, timed and evaluated per epoch.  Every method of a comparison
 * gets the same options but precond, lr and damping, so the seed, data
 * order, batch and epochs match; a method's run is then exactly the plain
 * finetune run with those options (the callbacks change nothing).
 *
 * What is measured:
 *   train_seconds  the training loop's time, summed over steps (forward,
 *                  backward, curvature refreshes, update), without the
 *                  end-of-epoch evaluations; cumulative per epoch.
 *   samples_per_sec  samples stepped over / train_seconds.
 *   peak_heap_bytes  the largest rise of the heap in use (glibc's
 *                  mallinfo2: arena plus mmapped blocks) above its level at
 *                  the method's start, sampled after every step and
 *                  evaluation: the method's own working memory, where the
 *                  process peak RSS only grows; -1 where mallinfo2 is not
 *                  available.
 *   time_to_target   train_seconds at the end of the first epoch whose test
 *                  accuracy reaches the target (epoch granularity); NaN if
 *                  none does. */
#ifndef CS_FINETUNE_COMPARE_H
#define CS_FINETUNE_COMPARE_H

#include <stdint.h>

#include "finetune/finetune.h"

typedef struct cs_compare_epoch {
    int epoch;
    double train_seconds;      /* cumulative, to the end of this epoch */
    double samples_per_sec;    /* of this epoch's steps */
    double train_loss, train_accuracy;
    double test_loss, test_accuracy;
} cs_compare_epoch;

typedef struct cs_compare_outcome {
    int n_epochs;
    cs_compare_epoch *epochs;  /* [n_epochs], owned */
    double train_seconds, samples_per_sec;
    int64_t peak_heap_bytes;   /* -1: not measured */
    double time_to_target;     /* NaN: not reached (or no target) */
    int epoch_to_target;       /* -1: not reached */
    cs_finetune_result res;
} cs_compare_outcome;

/* Train g in place with o (o->val is the test set; o's callbacks other
 * than on_note are replaced, on_note gets o->ctx) and fill *out, freed
 * with cs_compare_outcome_free.  target: test accuracy in [0, 1], or NaN
 * for none.  A loss that is not finite is an error (a diverged method). */
cs_status cs_compare_method(cs_graph *g, const cs_dataset *train, const cs_finetune_opts *o, double target,
                            cs_compare_outcome *out, cs_err *err) CS_MUST_CHECK;

void cs_compare_outcome_free(cs_compare_outcome *out);

#endif
