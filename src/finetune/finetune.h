/* Fine-tuning: mini-batch training of doc/design.md §2.3's layer parameters with a
 * gradient preconditioner, on a seeded shuffle of the data.  The model keeps
 * its file's float type; the optimiser keeps float64 master copies of the
 * parameters and its state.  BatchNormalization keeps its running
 * statistics (inference semantics), Dropout stays identity.
 *
 * The preconditioner (precond/precond.h, one registry shared with analyze's
 * step diagnostics) turns each step's gradient into a direction d; the
 * update is then SGD's with momentum mu (PyTorch's form: buf = mu buf + d;
 * theta -= lr (buf + wd theta), or Nesterov's d + mu buf) and decoupled
 * weight decay, except for adamw
 * (Adam with decoupled weight decay, Loshchilov & Hutter 2019), whose
 * direction is the gradient itself.
 *
 * KL clipping (Ba, Grosse & Martens 2017, as in ACKTR): a direction d from
 * a curvature C (C d = g) changes the model's output distribution by about
 * (lr^2 / 2) d^T C d = (lr^2 / 2) d^T g in KL; d is scaled by
 * min(1, sqrt(kappa / (lr^2 |d^T g|))) so that one step cannot move it by
 * more than kappa.  It keeps damped natural-gradient steps from exploding
 * along directions the mini-batch curvature has not seen.  Shampoo (grafted
 * onto SGD's norm), sgd and adamw are not clipped.
 *
 * --bn-train: the running statistics of every BatchNormalization are
 * updated after each step from the batch statistics of its input,
 * running = momentum running + (1 - momentum) batch (the node's momentum
 * attribute, default 0.9; the variance unbiased, as PyTorch keeps it).
 * The normalisation itself keeps using the running statistics, so the
 * loss stays a sum over independent samples, which every curvature here
 * assumes; a model trained with batch statistics is therefore tuned in its
 * inference form. */
#ifndef CS_FINETUNE_FINETUNE_H
#define CS_FINETUNE_FINETUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"
#include "finetune/ewc.h"
#include "graph/graph.h"
#include "objective/loss.h"

typedef struct cs_finetune_opts {
    const char *precond;     /* a name of precond/precond.h's table */
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
    /* The old task's data (may be NULL): evaluated before the first step
     * (split "old_start", epoch 0) and after every epoch (split "old"), so
     * forgetting is the difference. */
    const cs_dataset *old;
    /* Elastic weight consolidation (finetune/ewc.h; may be NULL): its
     * penalty joins the objective and its gradient, and on_penalty gets its
     * value at the parameters of each logged step (the same steps as
     * on_step). */
    const cs_ewc *ewc;
    void (*on_penalty)(void *ctx, int epoch, int64_t step, double penalty);
    void (*on_step)(void *ctx, int epoch, int64_t step, double loss, double accuracy, double lr,
                    double seconds, double samples_per_sec);
    void (*on_eval)(void *ctx, int epoch, const char *split, double loss, double accuracy);
    void *ctx;
    const volatile int *cancel;
    /* Curvature preconditioners */
    double damping;          /* lambda (default 1e-3) */
    double ema;              /* decay of the running curvature statistics (default 0.95) */
    int update_interval;     /* statistics and inverses every K steps (default 10) */
    int curvature;           /* a cs_curv_kind, or -1 for the preconditioner's default */
    int64_t max_full;        /* largest layer block for full and newton (default 4096) */
    int mc_samples;          /* sampled labels per sample for fisher_mc (default 1) */
    bool cholesky;           /* inverses by Cholesky (default) instead of eigendecomposition;
                                eigendecomposition always at damping 0 (pseudo-inverse) */
    bool pi_damping;         /* K-FAC's pi split of the damping (default on) */
    bool graft;              /* Shampoo grafted onto SGD's per-layer norm (default on) */
    bool bn_train;           /* update BatchNormalization running statistics */
    double kl_clip;          /* kappa of the KL clip on curvature directions (0: off; default 1e-3) */
    const char *freeze;      /* comma-separated layer names to keep fixed, or NULL */
    /* One line per layer that steps along the gradient, with the reason. */
    void (*on_note)(void *ctx, const char *text);
} cs_finetune_opts;

void cs_finetune_opts_init(cs_finetune_opts *o);

typedef struct cs_finetune_result {
    int64_t steps;
    double train_loss, train_accuracy;   /* after the last epoch, over the whole training set */
    double val_loss, val_accuracy;       /* NaN without validation data */
    double old_loss, old_accuracy;       /* the old task after the last epoch; NaN without it */
    double seconds;
    int64_t refreshes;                   /* curvature refreshes (statistics + inverses) */
    double refresh_seconds;              /* time spent in them */
    int n_frozen;                        /* layers kept fixed */
} cs_finetune_result;

/* What cs_finetune(g, train, o) will hold and the passes it makes,
 * appended to plan (curv/mem_plan.h): the shuffled copy of the data, the
 * optimiser's vectors, the step's plans (prepared for real), the
 * preconditioner's state (cs_precond_plan) as phase 0, held throughout;
 * a refresh's curvature engine on one batch (cs_curvature_plan) as phase
 * 1; one pass per epoch, and the refreshes. */
struct cs_mem_plan;
cs_status cs_finetune_plan(const cs_graph *g, const cs_dataset *train, const cs_finetune_opts *o,
                           struct cs_mem_plan *plan, cs_err *err) CS_MUST_CHECK;

/* Trains g's parameters in place. */
cs_status cs_finetune(cs_graph *g, const cs_dataset *train, const cs_finetune_opts *o,
                      cs_finetune_result *res, cs_err *err) CS_MUST_CHECK;

#endif
