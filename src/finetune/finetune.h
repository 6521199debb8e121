/* Fine-tuning: mini-batch training of DESIGN.md's layer parameters with a
 * gradient preconditioner, on a seeded shuffle of the data.  The model keeps
 * its file's float type; the optimiser keeps float64 master copies of the
 * parameters and its state.  BatchNormalization keeps its running
 * statistics (inference semantics), Dropout stays identity.
 *
 * Optimisers (one table in finetune.c; more come with the next issue):
 *   sgd     momentum mu, Nesterov optional, decoupled weight decay
 *   adamw   Adam with decoupled weight decay (Loshchilov & Hutter 2019) */
#ifndef CS_FINETUNE_FINETUNE_H
#define CS_FINETUNE_FINETUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"
#include "graph/graph.h"
#include "interp/loss.h"

typedef struct cs_finetune_opts {
    const char *precond;     /* "sgd" | "adamw" */
    int epochs;
    int64_t batch;
    double lr, momentum, weight_decay;
    bool nesterov;
    double beta1, beta2, eps; /* adamw */
    bool cosine;             /* cosine learning-rate schedule to 0 over all steps */
    uint64_t seed;
    cs_loss_kind loss;
    const cs_norm *norm;
    int log_every;           /* on_step every k-th step (and the last) */
    const cs_dataset *val;   /* may be NULL */
    void (*on_step)(void *ctx, int epoch, int64_t step, double loss, double accuracy, double lr,
                    double seconds, double samples_per_sec);
    void (*on_eval)(void *ctx, int epoch, const char *split, double loss, double accuracy);
    void *ctx;
    const volatile int *cancel;
} cs_finetune_opts;

void cs_finetune_opts_init(cs_finetune_opts *o);

typedef struct cs_finetune_result {
    int64_t steps;
    double train_loss, train_accuracy;   /* after the last epoch, over the whole training set */
    double val_loss, val_accuracy;       /* NaN without validation data */
    double seconds;
} cs_finetune_result;

/* Trains g's parameters in place. */
cs_status cs_finetune(cs_graph *g, const cs_dataset *train, const cs_finetune_opts *o,
                      cs_finetune_result *res, cs_err *err) CS_MUST_CHECK;

#endif
