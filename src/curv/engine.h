/* The curvature engine: one pass over the data that feeds every requested
 * (curvature, representation) pair of every layer.
 *
 * Per batch the model runs forward once.  The GGN-type curvatures come from
 * per-layer captures under three kinds of seeds (objective/loss.h): the C
 * columns of the loss-Hessian factor (ggn; fisher is the same matrix for
 * ce and mse, doc/design.md §2.2), S sampled labels (fisher_mc) and the true label
 * (fisher_emp), each one backward over the shared forward.  From a capture,
 * per-sample gradients give the full block (dsyrk), its diagonal and the
 * unit-wise blocks; the layer input and output gradient give the K-FAC
 * factors (Martens & Grosse 2015; for Conv and sequence positions the
 * expand convention of Grosse & Martens 2016 / Eschenhagen et al. 2023:
 * A = (1/(N T)) sum abar abar^T, G = (1/N) sum_n sum_t E[delta delta^T]).
 * The Hessian comes from exact Hessian-vector products (forward-over-
 * reverse) restricted to the layer: its columns for blocks up to max_full,
 * Hutchinson's estimator (Rademacher probes) for larger diagonals.
 * Accumulators are float64 and their size does not depend on N. */
#ifndef CS_CURV_ENGINE_H
#define CS_CURV_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "curv/curv.h"
#include "curv/noise.h"
#include "data/dataset.h"
#include "graph/graph.h"
#include "objective/loss.h"
#include "spectral/dense.h"

enum { CS_HDIAG_AUTO, CS_HDIAG_EXACT, CS_HDIAG_HUTCHINSON };

typedef struct cs_curv_opts {
    unsigned curvatures;   /* mask of 1 << cs_curv_kind */
    unsigned reprs;        /* mask of 1 << cs_repr_kind */
    int64_t max_full;      /* largest block computed in full (also the whole net) */
    int mc_samples;        /* S for fisher_mc */
    int probes;            /* Hutchinson probes for Hessian diagonals estimated */
    /* Hessian diagonals of layers above max_full: CS_HDIAG_AUTO exact
     * (from the Hessian at the layer's output, repr_hessian.c) where the
     * layer's kind allows and its output has at most max_full elements per
     * sample, else Hutchinson; CS_HDIAG_EXACT exact wherever the kind
     * allows; CS_HDIAG_HUTCHINSON always probes. */
    int hessian_diag;
    uint64_t seed;
    int64_t batch;
    cs_loss_kind loss;
    const cs_norm *norm;
    bool keep_matrices;    /* keep dense matrices in the results (tests) */
    /* Statistics only (fine-tuning): results carry the accumulated matrices
     * (implies keep_matrices) but no spectra, summaries, comparisons or
     * whole-network blocks. */
    bool stats_only;
    /* Called with every seed's per-sample gradients of every layer, already
     * scaled so that the curvature is (1/N) sum over all calls of
     * sum_b rows_b rows_b^T: rows is [B, W] in the layer's parameter order,
     * start the batch's first sample, seed the seed's index within its
     * family (0 .. C-1 for ggn/fisher, 0 .. S-1 for fisher_mc, 0 for
     * fisher_emp).  Makes the engine form per-sample gradients for every
     * layer. */
    void (*on_rows)(void *ctx, int layer, int64_t start, int seed, const double *rows, int64_t B);
    void *rows_ctx;
    /* The gradient noise scale (curv/noise.h) from the true-label seeds'
     * per-sample gradients, in groups of the data for its standard error
     * (noise_groups, default 10); runs the fisher_emp seeds when no
     * curvature asked for them, feeding nothing else. */
    bool noise_scale;
    int noise_groups;
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
    /* Checked between batches: when it points to a non-zero value the
     * computation stops with CS_ERR_RUNTIME ("interrupted"). */
    const volatile int *cancel;
} cs_curv_opts;

void cs_curv_opts_init(cs_curv_opts *o);

typedef struct cs_curv_result {
    int layer;                  /* -1: the whole network */
    cs_curv_kind curv;
    cs_repr_kind repr;
    const char *method;         /* exact, kron, hutchinson */
    int64_t dim;
    cs_spectrum_summary sum;
    double trace_stderr;        /* NAN for exact values */
    double *eig;                /* descending; n_eig values (all of them) */
    int64_t n_eig;
    double *factor_eig[2];      /* kfac: eigenvalues of A and G (pooled over groups) */
    int64_t n_factor_eig[2];
    double *matrix;             /* keep_matrices: dense dim x dim in parameter order
                                   (diag: the dim diagonal entries in parameter order) */
    /* kfac with keep_matrices: the factors per group ([groups][dA][dA] and
     * [groups][dG][dG]) and each parameter's (group, unit, feature). */
    int64_t kfac_groups, kfac_dA, kfac_dG;
    double *kfac_A, *kfac_G;
    int64_t *kfac_index;        /* [dim][3] */
    /* unit with keep_matrices: n_units blocks of unit_d x unit_d and each
     * block slot's parameter index within the layer (-1 where absent). */
    int64_t n_units, unit_d;
    double *unit_blocks;
    int64_t *unit_index;
    double seconds;
    bool has_cmp;               /* scored against the exact full block */
    double cmp_frob, cmp_lmax, cmp_trace, cmp_align;
} cs_curv_result;

typedef struct cs_curv_report {
    int n;
    cs_curv_result *res;
    int n_notes;
    char notes[64][200];        /* skipped combinations, fallbacks */
    cs_noise_result *noise;     /* noise_scale: n_noise = n_layers + 1 results, else NULL */
    int n_noise;
    double seconds;
} cs_curv_report;

cs_status cs_curvature_compute(const cs_graph *g, const cs_dataset *ds, const cs_curv_opts *o,
                               cs_curv_report *out, cs_err *err) CS_MUST_CHECK;
void cs_curv_report_free(cs_curv_report *r);

/* What cs_curvature_compute(g, ds, o) will hold, appended to plan
 * (curv/mem_plan.h), without computing: the interpreter's plans for the
 * batch (prepared for real, as the computation prepares them), every
 * accumulator the representations would allocate (their own planning
 * code, in tally mode), the largest eigen-solve of the results and the
 * results kept until they are stored; and the passes over the data. */
struct cs_mem_plan;
cs_status cs_curvature_plan(const cs_graph *g, const cs_dataset *ds, const cs_curv_opts *o,
                            struct cs_mem_plan *plan, cs_err *err) CS_MUST_CHECK;

/* The result for (curv, repr, layer), or NULL. */
const cs_curv_result *cs_curv_report_find(const cs_curv_report *r, cs_curv_kind c, cs_repr_kind p,
                                          int layer);

#endif
