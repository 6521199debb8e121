/* The representation interface of the curvature engine.
 *
 * The engine (engine.c) runs the pass over the data: per batch one forward,
 * then one backward per seed of each GGN-type family (objective/loss.h), and
 * for the Hessian its Hessian-vector products.  What it accumulates and
 * what it reports is the business of the representations below, one file
 * each (repr_full.c, repr_diag.c, repr_unit.c, repr_kfac.c, repr_ekfac.c, and
 * the Hessian's products in repr_hessian.c), collected in cs_repr_table.  Adding a representation is
 * one file and one row of the table.
 *
 * A representation splits in two halves that meet in cs_repr_sources:
 * accumulation (plan .. normalise) fills its own state, and per (layer,
 * curvature) `sources` lends the accumulated matrices to every
 * representation's `results`; so the Hessian's exact block feeds the diag
 * and unit results, and every layer's exact block is the reference the
 * approximations are scored against.  Accumulators are float64 and their
 * size does not depend on N. */
#ifndef CS_CURV_REPR_H
#define CS_CURV_REPR_H

#include <stdbool.h>
#include <stdint.h>

#include "base/rng.h"
#include "curv/engine.h"
#include "curv/kfac.h"
#include "objective/objective.h"

/* The GGN-type curvatures computed from captures, one family per kind of
 * seed; fisher shares ggn's accumulators (they are one matrix for ce and
 * mse, DESIGN.md). */
enum { CS_FAM_GGN, CS_FAM_MC, CS_FAM_EMP, CS_FAM_COUNT };

/* The family of c, or -1 (the Hessian). */
int cs_curv_family(cs_curv_kind c);
/* The family's name in messages ("ggn", "fisher_mc", "fisher_emp"). */
const char *cs_curv_family_name(int f);

/* What the engine shares with the representations; they borrow it. */
struct cs_repr_sources;

typedef struct cs_repr_ctx {
    const cs_graph *g;
    const cs_dataset *ds;
    const cs_curv_opts *o;
    cs_objective *obj;          /* whole-batch plans and derivatives */
    const cs_layer_layout *lay;  /* [n_layers] */
    /* [n_layers]: the layer's per-sample gradient rows can be formed
     * (cs_ad_per_sample_ok); representations that need rows plan nothing
     * for a layer without them */
    const bool *rows_ok;
    bool fam[CS_FAM_COUNT];     /* families accumulated */
    bool compare_any;           /* approximations are scored against the exact blocks */
    bool net_full;              /* the whole network's block (P <= max_full, full requested) */
    int64_t P;                  /* parameters of the network */
    int64_t B;                  /* samples of a (micro-)batch, at most */
    cs_rng *rng;
    double *seedwork;           /* the loss seeds' work rows */
    cs_curv_report *rep;        /* results are appended here */
    /* Every representation's normalised sources of (l, c) so far: for a
     * second-pass representation's begin_pass (EK-FAC's basis comes from
     * K-FAC's factors). */
    void (*lend)(const struct cs_repr_ctx *x, int l, cs_curv_kind c, struct cs_repr_sources *src);
    const void *engine;         /* lend's own context */
} cs_repr_ctx;

/* Layer l's block is computed in full (up to max_full). */
static inline bool cs_repr_small(const cs_repr_ctx *x, int l)
{
    return x->lay[l].W <= x->o->max_full;
}

/* (c, r) is requested and valid. */
bool cs_repr_wanted(const cs_repr_ctx *x, cs_curv_kind c, cs_repr_kind r);

/* The accumulated matrices of one layer (or the network, layer -1) and one
 * curvature, normalised, lent by the representations' `sources` to every
 * `results` / `stats`.  NULL: not accumulated. */
typedef struct cs_repr_sources {
    const double *full;         /* [W, W], the exact block */
    const double *diag;         /* [W] */
    const char *diag_method;    /* "exact" or "hutchinson" */
    const double *probe_trace;  /* hutchinson: each probe's trace estimate, [o->probes] */
    const double *unit;         /* [n_units][unit_d][unit_d] */
    const double *A, *G;        /* K-FAC factors, [groups][dA][dA] and [groups][dG][dG] */
    /* EK-FAC: the bases of A and G (eigenvectors in columns, per group) and
     * the scalings [groups][dG][dA] */
    const double *ekfac_QA, *ekfac_QG, *ekfac_S;
} cs_repr_sources;

/* The exact block as the reference of one layer's results: filled by the
 * full representation's results (which run first), read by the others'
 * comparisons, freed by the engine. */
typedef struct cs_repr_ref {
    bool have;
    cs_spectrum_summary sum;
    double *top;                /* [W] top eigenvector */
    double *dense;              /* [W, W] scratch for the approximations' dense forms */
    double t0;                  /* start of the layer's results (their seconds count from it) */
} cs_repr_ref;

/* How a representation uses the per-sample gradient rows of a layer. */
typedef enum cs_repr_rows {
    CS_ROWS_NONE,               /* not at all */
    CS_ROWS_NEEDED,             /* the engine must form them */
    CS_ROWS_AVOIDABLE           /* used if formed; otherwise add_capture works from the captures */
} cs_repr_rows;

/* One representation.  Contract of each hook (NULL: nothing to do):
 *   pass       the pass over the data it accumulates in: 0, or 1 for one
 *              that needs the first pass's results first (EK-FAC); the
 *              engine runs the second pass only when such a representation
 *              has state, and calls the accumulation hooks below (rows ..
 *              publish) only in the representation's own pass.
 *   begin_pass before its pass (pass 1): read the first pass's normalised
 *              sources through x->lend.
 *   plan       allocate the accumulators the options ask for, every one
 *              checked (curv/alloc.h); *state NULL: nothing to accumulate
 *              in this run, and no hook up to `sources` is called.  A
 *              failure leaves what it allocated in *state for `free`.
 *   free       release the state (also after a failed plan).
 *   rows       whether layer l's family-f seeds need per-sample rows.
 *   add_rows   accumulate one seed's per-sample rows [B, W] of layer l
 *              (already scaled: the curvature is (1/N) sum rows^T rows).
 *   add_capture accumulate from layer l's captures of one family-f seed
 *              (output gradients scaled by `scale`); rows_formed says
 *              whether add_rows saw this seed's rows.
 *   seed_done  after every layer of one seed (whole-network sums).
 *   add_input  once per batch after its first backward: statistics of the
 *              layer inputs (K-FAC's A).
 *   add_batch  once per batch after the seeds: own passes (the Hessian's
 *              products), batch starting at sample `start`.
 *   reduce     after the pass, the samples sliced across ranks (doc/design.md
 *              §2.12): every accumulated sum summed over the ranks
 *              (cs_repr_sum_ranks), in the same order on every rank.
 *   normalise  after the pass: sums into means, symmetric matrices.
 *   publish    after normalising: layer-wide statistics into the report.
 *   sources    lend layer l's (-1: the network's) normalised matrices of
 *              curvature c.
 *   results    (called for every representation, with or without state:
 *              they read only the sources)
 *              append the representation's results for (l, c): spectra,
 *              summaries, the comparison against ref, dense matrices with
 *              keep_matrices; l = -1 for the whole network.
 *   stats      stats_only: append the matrices alone. */
typedef struct cs_repr_def {
    const char *name;
    int pass;
    cs_status (*begin_pass)(const cs_repr_ctx *x, void *state, cs_err *err);
    cs_status (*plan)(const cs_repr_ctx *x, void **state, cs_err *err);
    void (*free)(const cs_repr_ctx *x, void *state);
    cs_repr_rows (*rows)(const cs_repr_ctx *x, const void *state, int l, int f);
    void (*add_rows)(const cs_repr_ctx *x, void *state, int l, int f, const double *rows, int64_t B);
    cs_status (*add_capture)(const cs_repr_ctx *x, void *state, cs_ad *ad, int l, int f, double scale,
                             bool rows_formed, cs_err *err);
    void (*seed_done)(const cs_repr_ctx *x, void *state, int f, int64_t B);
    cs_status (*add_input)(const cs_repr_ctx *x, void *state, cs_ad *ad, int l, cs_err *err);
    cs_status (*add_batch)(const cs_repr_ctx *x, void *state, int which, int64_t start, cs_err *err);
    cs_status (*reduce)(const cs_repr_ctx *x, void *state, cs_err *err);
    void (*normalise)(const cs_repr_ctx *x, void *state, double inv_n);
    cs_status (*publish)(const cs_repr_ctx *x, void *state, cs_err *err);
    void (*sources)(const cs_repr_ctx *x, const void *state, int l, cs_curv_kind c, cs_repr_sources *src);
    cs_status (*results)(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src,
                         cs_repr_ref *ref, cs_err *err);
    cs_status (*stats)(const cs_repr_ctx *x, int l, cs_curv_kind c, const cs_repr_sources *src, cs_err *err);
} cs_repr_def;

extern const cs_repr_def cs_repr_full, cs_repr_diag, cs_repr_unit, cs_repr_kfac, cs_repr_hessian, cs_repr_ekfac;

/* Every representation, in the order their results appear in the report
 * (full, diag, unit, kfac per layer and curvature). */
#define CS_REPR_TABLE_N 6
extern const cs_repr_def *const cs_repr_table[CS_REPR_TABLE_N];

/* ---- helpers shared by the representations' results ---- */

/* A zeroed result appended to the report ("exact", no stderr); NOMEM names
 * it.  Pointers into the report do not survive the next call. */
cs_status cs_repr_new_result(const cs_repr_ctx *x, int layer, cs_curv_kind c, cs_repr_kind r, int64_t dim,
                             cs_curv_result **out, cs_err *err) CS_MUST_CHECK;

/* Copy the upper triangle of M [n, n] to the lower, scaled. */
void cs_repr_symmetrize(double *M, int64_t n, double scale);

/* Average M [n, n] with its transpose (the tiny asymmetry of float32
 * products). */
void cs_repr_average_transpose(double *M, int64_t n);

/* The eigenvalues of a copy of M [n, n] into res (eig, n_eig, sum), its top
 * eigenvector into top when non-NULL. */
cs_status cs_repr_spectrum(const double *M, int64_t n, cs_curv_result *res, double *top,
                           cs_err *err) CS_MUST_CHECK;

/* Sort v [n] descending. */
void cs_repr_sort_desc(double *v, int64_t n);

/* Sort res->eig (n values, descending) and summarise them. */
void cs_repr_summarize_sorted(cs_curv_result *res, int64_t n);

/* Score a dense approximation [W, W] against the exact block. */
cs_status cs_repr_compare(const double *approx, const double *exact, int64_t W, const cs_repr_ref *ref,
                          cs_curv_result *res, cs_err *err) CS_MUST_CHECK;

/* An owned copy of n doubles / int64s (NOMEM names `what` of layer l). */
cs_status cs_repr_dup(double **out, const double *src, int64_t n, const char *what, int l, const cs_repr_ctx *x,
                      cs_err *err) CS_MUST_CHECK;
cs_status cs_repr_dup_index(int64_t **out, const int64_t *src, int64_t n, const char *what, int l,
                            const cs_repr_ctx *x, cs_err *err) CS_MUST_CHECK;

/* Where a result belongs, for messages: "layer 'fc1'" (written into buf)
 * or "the network" for l = -1. */
const char *cs_repr_where(const cs_repr_ctx *x, int l, char *buf, size_t size);

/* A representation's per (layer, family) matrices: n_layers * CS_FAM_COUNT
 * pointers, NULL where nothing is accumulated.  cs_repr_blocks_layer
 * allocates layer l's n zeroed doubles for each wanted family (NOMEM names
 * "the <family> <what> of layer '<name>'"); cs_repr_blocks_free frees the
 * table and every block. */
cs_status cs_repr_blocks_new(const cs_repr_ctx *x, double ***blocks, const char *what, cs_err *err) CS_MUST_CHECK;
cs_status cs_repr_blocks_layer(const cs_repr_ctx *x, double **blocks, int l, int64_t n, const char *what,
                               cs_err *err) CS_MUST_CHECK;
void cs_repr_blocks_free(const cs_repr_ctx *x, double **blocks);

/* reduce's step: a[0..n) summed over the ranks when the samples are
 * sliced across them (a NULL: nothing, on every rank alike); st is the
 * status so far, agreed first (base/dist.h). */
cs_status cs_repr_sum_ranks(const cs_repr_ctx *x, cs_status st, double *a, int64_t n, cs_err *err) CS_MUST_CHECK;

#endif
