/* Result rows: the library's result structs written to the store's tables.
 * The store sits above curv/, spectral/ and finetune/: it reads their
 * results, and none of them knows the store.
 *
 * Conventions of store.h hold (run_id names a runs row, NaN is NULL, a
 * failure names the table); every function here borrows its arguments.
 * The cs_store_write_* functions of one analyze run go in the order of
 * cs_store_write_analysis: the model first (the rows name its layers and
 * parameters), then the results. */
#ifndef CS_STORE_ROWS_H
#define CS_STORE_ROWS_H

#include <stdint.h>

#include "curv/engine.h"
#include "curv/importance.h"
#include "curv/prune.h"
#include "curv/spectrum.h"
#include "precond/diagnostics.h"
#include "finetune/compare.h"
#include "finetune/finetune.h"
#include "graph/graph.h"
#include "influence/influence.h"
#include "influence/validate.h"
#include "objective/loss.h"
#include "store/store.h"

/* layers and params rows of graph g. */
cs_status cs_store_write_graph(cs_store *s, int64_t run_id, const cs_graph *g, cs_err *err) CS_MUST_CHECK;

/* The conventions rows of an analyze run: what the numbers mean (loss,
 * averaging, K-FAC layout, tolerances) and the options behind them, with
 * the spectrum's when so->curvatures is set. */
cs_status cs_store_write_analyze_conventions(cs_store *s, int64_t run_id, cs_loss_kind loss,
                                             const cs_curv_opts *o, const cs_spectrum_opts *so,
                                             cs_err *err) CS_MUST_CHECK;

/* The model and the conventions in one transaction (must be called outside
 * one): the rows the results name. */
cs_status cs_store_write_analyze_setup(cs_store *s, int64_t run_id, const cs_graph *g, cs_loss_kind loss,
                                       const cs_curv_opts *o, const cs_spectrum_opts *so,
                                       cs_err *err) CS_MUST_CHECK;

/* Per result: a curvature row, its spectrum (full blocks whole, K-FAC and
 * unit the top topk, diagonals none), K-FAC factor spectra and the
 * comparison with the exact block. */
cs_status cs_store_write_curvature(cs_store *s, int64_t run_id, const cs_curv_report *rep, int64_t topk,
                                   cs_err *err) CS_MUST_CHECK;

/* n matrix-free spectra: Lanczos (summary row, top and bottom topk
 * eigenvalues, Ritz values and tridiagonals per repeat), SLQ (summary,
 * tridiagonals, density), Hutchinson, Ritz vectors, the comparison with
 * rep's exact whole-network block, power iteration. */
cs_status cs_store_write_spectra(cs_store *s, int64_t run_id, const cs_graph *g, const cs_net_spectrum *spec,
                                 int n, int topk, const cs_curv_report *rep, cs_err *err) CS_MUST_CHECK;

/* importance rows (every scalar, or with top > 0 only the top elements of
 * each layer by each score), the complete importance_units sums, and one
 * convention per layer naming its OBS block and damping.  Nothing when
 * imp->n is 0. */
cs_status cs_store_write_importance(cs_store *s, int64_t run_id, const cs_graph *g, const cs_importance *imp,
                                    int64_t top, cs_err *err) CS_MUST_CHECK;

cs_status cs_store_write_pruning(cs_store *s, int64_t run_id, const cs_prune_point *pts, int n,
                                 cs_err *err) CS_MUST_CHECK;

/* step_diagnostics rows, one per preconditioner, damping and layer. */
cs_status cs_store_write_steps(cs_store *s, int64_t run_id, const cs_step_report *steps,
                               cs_err *err) CS_MUST_CHECK;

/* noise_scale rows of rep->noise (layers with per-sample gradients, then
 * the network as layer NULL) and the conventions of its estimators;
 * nothing when rep->n_noise is 0. */
cs_status cs_store_write_noise(cs_store *s, int64_t run_id, const cs_curv_report *rep, cs_err *err) CS_MUST_CHECK;

/* A comparisons row (curvscope compare): what every method shares;
 * target NaN: none.  *id is the new comparison's id. */
typedef struct cs_comparison_info {
    const char *model_path, *data, *test_data;
    int epochs;
    int64_t batch;
    uint64_t seed;
    double target_accuracy;
} cs_comparison_info;
cs_status cs_store_comparison_begin(cs_store *s, const cs_comparison_info *info, int64_t *id,
                                    cs_err *err) CS_MUST_CHECK;

/* One method of comparison id, trained in run run_id: its
 * comparison_methods row and one comparison_epochs and two finetune_evals
 * rows (train, test) per epoch. */
cs_status cs_store_write_compare_method(cs_store *s, int64_t id, int64_t run_id, const char *method, double lr,
                                        double damping, const cs_compare_outcome *m, cs_err *err) CS_MUST_CHECK;

/* Everything one analyze run computed (each part may be empty). */
typedef struct cs_analysis_rows {
    const cs_graph *g;
    const cs_curv_report *rep;
    int64_t topk;                 /* eigenvalues per K-FAC / unit result */
    const cs_net_spectrum *spec;
    int n_spec;
    int spec_topk;                /* Lanczos eigenvalues kept at each end */
    const cs_importance *imp;
    int64_t imp_top;              /* 0: every scalar */
    const cs_prune_point *pts;
    int n_pts;
    const cs_step_report *steps;
} cs_analysis_rows;

/* All of a's rows in one transaction (must be called outside one): the
 * run's results are stored whole or not at all. */
cs_status cs_store_write_analysis(cs_store *s, int64_t run_id, const cs_analysis_rows *a,
                                  cs_err *err) CS_MUST_CHECK;

/* The conventions rows of a finetune run: its options and what they mean.
 * curvature: the curvature the preconditioner reads, "none" for none;
 * fo->batch and fo->seed must be set. */
cs_status cs_store_write_finetune_conventions(cs_store *s, int64_t run_id, const cs_finetune_opts *fo,
                                              const char *curvature, cs_err *err) CS_MUST_CHECK;

/* finetune --ewc RUN (rows_ewc.c): the Fisher diagonal of analyze run
 * ewc_run (its importance column diag_ggn for curvature ggn or fisher, the
 * same matrix for ce and mse, or diag_fisher_emp) and its weights
 * (importance.value) as the anchor theta*, into e (allocated here, lambda 1;
 * free with cs_ewc_free).  CS_ERR_USAGE, naming the run, when the run is
 * missing, not a finished analyze run, analyzed a model whose parameter
 * names or shapes differ from g's, or stored no complete importance rows of
 * that column. */
cs_status cs_store_read_ewc(cs_store *s, int64_t ewc_run, const cs_graph *g, const char *curvature, cs_ewc *e,
                            cs_err *err) CS_MUST_CHECK;
/* The ewc_* conventions of a finetune run with --ewc: repr "diag" or
 * "kfac" (n_kfac layers in K-FAC form). */
cs_status cs_store_write_ewc_conventions(cs_store *s, int64_t run_id, int64_t ewc_run, const char *curvature,
                                         const char *repr, int n_kfac, double lambda, cs_err *err) CS_MUST_CHECK;

/* A layer that fell back to sgd: note is "layer NAME ...", kept as the
 * convention fallback.NAME. */
cs_status cs_store_write_fallback(cs_store *s, int64_t run_id, const char *note, cs_err *err) CS_MUST_CHECK;

/* quantize: one quantized layer's hessian_traces row, its quant_sensitivity
 * rows (omega[k], delta_sq[k] at bits[k]) and its quant_allocation row. */
cs_status cs_store_quant_layer(cs_store *s, int64_t run_id, int64_t layer, double trace, double se, int probes,
                               const int *bits, const double *omega, const double *delta_sq, int n_bits,
                               int chosen_bits, cs_err *err) CS_MUST_CHECK;
/* quantize: the quant_result row. */
cs_status cs_store_quant_result(cs_store *s, int64_t run_id, double loss_before, double predicted,
                                double tolerance, double measured, int64_t size_bytes, const char *format,
                                cs_err *err) CS_MUST_CHECK;
/* influence_scores rows: per method the top_k training examples of each
 * query and the top_k queries of each training example, of each sign, and
 * with full every pair; influence_self rows with their ranks (labels from
 * train).  The caller holds the transaction. */
cs_status cs_store_write_influence(cs_store *s, int64_t run_id, const cs_influence_result *r, const cs_dataset *train,
                                   int64_t top_k, bool full, cs_err *err) CS_MUST_CHECK;
/* The conventions influence's scores depend on: sign, loss scaling,
 * curvature, inverse, damping, and each excluded layer with its reason. */
cs_status cs_store_write_influence_conventions(cs_store *s, int64_t run_id, const cs_influence_opts *o,
                                               const cs_influence_result *r, const cs_graph *g,
                                               cs_err *err) CS_MUST_CHECK;
/* influence --validate / --lds: per method an influence_validation row of
 * each kind done, its influence_loo and influence_lds rows, and the
 * convention influence_validation_tuning (how every retraining tuned).
 * The caller holds the transaction. */
cs_status cs_store_write_influence_validation(cs_store *s, int64_t run_id, const cs_validate_opts *o,
                                              const cs_validate_result *r, cs_err *err) CS_MUST_CHECK;

#endif
