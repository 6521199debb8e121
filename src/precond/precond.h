/* The preconditioner registry: one table (precond.c) of the gradient
 * preconditioners, one file per preconditioner or family (pre_*.c), used by
 * both `curvscope finetune --precond` (finetune/finetune.c: every step) and
 * `curvscope analyze --precond` (precond/diagnostics.c: one step at the
 * analysed point).  A name means the same maths on both sides.
 *
 * Each turns a gradient g into a direction d per layer, d ~ (C + lambda I)^-1 g
 * for a curvature C; the step is -lr d (finetune, after momentum and weight
 * decay) or -d (analyze).  The names and their maths (each pre_*.c's header
 * cites the source):
 *   sgd      d = g (damping does not enter)
 *   adamw    d = g; the update rule is Adam's with decoupled weight decay
 *            (finetune.c).  analyze refuses it: it is an update rule over
 *            steps, not a preconditioner of one step.
 *   kfac     per layer G^-1 V A^-1 on the gradient matrix V of [W | b] with
 *            the damping split between the factors by pi (Martens & Grosse
 *            2015, section 6.3): (G + sqrt(l)/pi I)^-1 V (A + pi sqrt(l) I)^-1
 *            (sqrt(l) on both without pi_damping)
 *   ekfac    K-FAC's eigenbasis with the diagonal re-fitted to the per-sample
 *            gradients (George et al. 2018): Q_G [(Q_G^T V Q_A) ./ (s + l)] Q_A^T
 *   shampoo  (L + l I)^-1/4 V (R + l I)^-1/4 with L, R the running sums of
 *            V V^T and V^T V of the step's gradient matrix (Gupta, Koren &
 *            Singer 2018), grafted onto the gradient's norm per layer unless
 *            graft is off
 *   diag     g_i / (c_i + l), c the curvature's diagonal (|H_ii| for hessian)
 *   unit     (C_u + l I)^-1 g_u per unit-wise block C_u (output rows of
 *            [W | b], normalisation scale-bias pairs)
 *   full     (C + l I)^-1 g on the layer block (layers up to max_full)
 *   smw      (F + l I)^-1 g with the batch's empirical (or sampled) Fisher
 *            over all layers at once, by Sherman-Morrison-Woodbury
 *   newton   (|H| + l I)^-1 g on the Hessian's layer block, |H| = Q |w| Q^T
 *            (saddle-free Newton, Dauphin et al. 2014); also full and unit
 *            with curvature hessian
 * Where analyze and finetune differed before one registry, the choice is
 * what a user of K-FAC expects for the name: kfac is the paper's factored
 * Tikhonov damping with the pi split (section 6.3), which K-FAC optimisers
 * implement, not the exact (G (x) A + l I)^-1 that analyze used to take from
 * the factors' eigenvectors; shampoo's statistics are the step's (mini-batch)
 * gradient, as in the paper, not per-sample gradients, which at analyze's
 * single step makes L = V V^T and R = V^T V of the dataset gradient.  The
 * cut-off below replaces analyze's former 1e-12 * (max|w| + l).
 *
 * One pseudo-inverse cut-off for every name: with l = 0 an eigenvalue (or a
 * diagonal entry, an EKFAC scaling) at or below n * 2^-52 * max|w| counts as
 * 0 and its direction gets d = 0, n the order of the matrix (the number of
 * diagonal entries or scalings); torch.linalg.pinv's default, so that
 * PyTorch references agree.  With l > 0 the damped matrices are inverted
 * exactly (Cholesky, or the eigendecomposition with cholesky off).
 *
 * Life of a preconditioner (the contract each definition keeps):
 *   create    once, before the first step; may refuse the context (usage)
 *   observe   every step, with the step's gradient (may be NULL)
 *   refresh   finetune: every update_interval steps (and at the first) or
 *             every step (every_step), with the step's batch; analyze: once,
 *             with the dataset and ctx.given, the analysed curvature results.
 *             New curvature statistics, folded into the running ones by an
 *             exponential moving average (the first refresh sets them), and
 *             the new inverses (or roots); may be NULL
 *   apply     every step: d from g (both n_param_scalars long)
 *   destroy   frees the state (NULL state allowed)
 * A layer the preconditioner cannot serve gets d = g (SGD) and is marked in
 * fallback[] with the reason; frozen layers are never updated.
 * The statistics come from the curvature engine for ctx.curv; analyze reads
 * the exact form of the default curvature (ggn, the Fisher for ce and mse,
 * where the default is fisher_mc) and takes it from ctx.given, computing on
 * the dataset only what the analysis does not keep: per-sample rows
 * (ekfac's scalings, smw's rows) and the unit-wise blocks (kept as spectra
 * only).  sgd, shampoo and smw read no analysed results (reprs 0). */
#ifndef CS_PRECOND_PRECOND_H
#define CS_PRECOND_PRECOND_H

#include "curv/engine.h"
#include "objective/loss.h"

/* The table's order (precond.c asserts it). */
typedef enum cs_precond_kind {
    CS_PRE_SGD,
    CS_PRE_ADAMW,
    CS_PRE_KFAC,
    CS_PRE_EKFAC,
    CS_PRE_SHAMPOO,
    CS_PRE_DIAG,
    CS_PRE_UNIT,
    CS_PRE_FULL,
    CS_PRE_SMW,
    CS_PRE_NEWTON,
    CS_PRE_COUNT
} cs_precond_kind;

/* What the preconditioners read besides the context. */
typedef struct cs_precond_opts {
    double damping;          /* lambda */
    double ema;              /* decay of the running statistics */
    int64_t max_full;        /* largest layer block for full and newton */
    int mc_samples;          /* sampled labels per sample for fisher_mc */
    int64_t batch;           /* samples per engine pass (the micro-batch of a refresh) */
    bool cholesky;           /* damped inverses by Cholesky, else eigendecomposition */
    bool pi_damping;         /* kfac's pi split of the damping */
    bool graft;              /* shampoo grafted onto the gradient's norm per layer */
    cs_loss_kind loss;
    const cs_norm *norm;     /* borrowed; may be NULL */
} cs_precond_opts;

/* finetune's defaults: damping 1e-3, ema 0.95, max_full 4096, one sample,
 * batch 128, Cholesky, pi-damping and grafting on, ce, no norm. */
void cs_precond_opts_init(cs_precond_opts *o);

typedef struct cs_precond_ctx {
    const cs_graph *g;
    const cs_precond_opts *o;
    cs_curv_kind curv;        /* the curvature the statistics come from */
    uint64_t seed;            /* this refresh's seed (fisher_mc labels) */
    int64_t refreshes;        /* refreshes done before the current one */
    const bool *frozen;       /* [n_layers]: never updated */
    bool *fallback;           /* [n_layers]: the layer steps along g */
    const char **why;         /* [n_layers]: the reason, for the run's notes */
    const cs_curv_report *given; /* analyze: the analysed results, read instead of computed; NULL: compute */
} cs_precond_ctx;

/* A preconditioner's lifecycle (the contract above), one per pre_*.c. */
typedef struct cs_precond_ops {
    cs_status (*create)(const cs_precond_ctx *c, void **state, cs_err *err);
    void (*observe)(void *state, const cs_precond_ctx *c, const double *grad);
    cs_status (*refresh)(void *state, cs_precond_ctx *c, const cs_dataset *batch, cs_err *err);
    cs_status (*apply)(void *state, const cs_precond_ctx *c, const double *grad, double *dir, cs_err *err);
    void (*destroy)(void *state);
} cs_precond_ops;

/* A row of the table (precond.c): what the registry's users read about a
 * preconditioner, and its lifecycle. */
typedef struct cs_precond_def {
    const char *name;
    const char *about;        /* one line for --help */
    cs_curv_kind default_curv;
    unsigned reprs;           /* representations refresh reads from the engine (cs_repr_kind bits) */
    bool reads_curvature;     /* refresh runs the curvature engine (--curvature applies) */
    bool damped;              /* lambda enters the direction */
    bool adam;                /* the update rule is Adam's (finetune.c); d = g */
    bool every_step;          /* refreshes on every step's batch (--update-interval does not apply) */
    double default_lr;
    double default_damping;   /* lambda when --damping is not given */
    const cs_precond_ops *ops;
} cs_precond_def;

/* The table entry named name, or NULL. */
const cs_precond_def *cs_precond_find(const char *name);
/* The registered names, comma-separated (for messages). */
const char *cs_precond_names(void);
int cs_precond_count(void);
/* Entry i (a cs_precond_kind), or NULL. */
const cs_precond_def *cs_precond_at(int i);
/* Entry k's name, "?" out of range. */
const char *cs_precond_name(cs_precond_kind k);
/* The curvature analyze reads for def: the exact ggn for a default of
 * fisher_mc, else the default. */
cs_curv_kind cs_precond_analysis_curv(const cs_precond_def *def);

/* What def holds between steps under c (its sizes per layer, at most
 * batch samples a refresh), appended to plan as CS_MEM_PRECOND items
 * (state_bytes.c).  sgd and adamw hold nothing here (adamw's moments are
 * the optimiser's). */
struct cs_mem_plan;
cs_status cs_precond_plan(const cs_precond_def *def, const cs_precond_ctx *c, int64_t batch,
                          struct cs_mem_plan *plan, cs_err *err) CS_MUST_CHECK;

/* ---- helpers shared by the preconditioners (precond.c, kron.c) ---- */

/* The statistics of the batch for c->curv as *rep: c->given (borrowed)
 * when set, on_rows is NULL and its results of reprs keep their matrices,
 * else computed by the engine into *own
 * (reprs as cs_repr_kind bits; on_rows sees every per-sample gradient
 * row).  Free with cs_curv_report_free(own) in both cases. */
cs_status pc_curvature(const cs_precond_ctx *c, const cs_dataset *batch, unsigned reprs,
                       void (*on_rows)(void *ctx, int layer, int64_t start, int seed, const double *rows,
                                       int64_t B),
                       void *rows_ctx, cs_curv_report *own, const cs_curv_report **rep, cs_err *err) CS_MUST_CHECK;

/* S <- decay S + (1 - decay) X, or S <- X on the first update. */
void pc_ema(double *S, const double *X, int64_t n, double decay, bool first);

/* The pseudo-inverse cut-off (header): values at or below this count as 0
 * when undamped, for n values of largest magnitude vmax. */
double pc_pinv_cutoff(int64_t n, double vmax);

/* out = (M + damping I)^-1 for the symmetric n x n M (out may be M).
 * By Cholesky (dpotrf/dpotri) when chol is set and damping > 0, else by
 * eigendecomposition; with damping 0 that is the pseudo-inverse. */
cs_status pc_damped_inverse(const double *M, int64_t n, double damping, bool chol, double *out,
                            cs_err *err) CS_MUST_CHECK;

/* out = Q f(w) Q^T for M = Q diag(w) Q^T (eigendecomposition; out may be
 * M) with f(w) = (w + damping)^power, or (|w| + damping)^power when
 * absolute (saddle-free: negative curvature by its magnitude).  With
 * damping 0 it is the pseudo-inverse's power (the header's cut-off). */
cs_status pc_sym_damped_power(const double *M, int64_t n, double damping, double power, bool absolute, double *out,
                              cs_err *err) CS_MUST_CHECK;

/* A layer's K-FAC layout and running factors (doc/design.md §2.4: block G (x) A over
 * [W | b], rows = output units, per group). */
typedef struct pc_kron {
    bool ok;
    int64_t groups, dA, dG, W, offset;
    int64_t *index;           /* [W][3]: (group, unit, feature) */
    /* [W]: 1 / the number of parameters sharing the parameter's cell (a
     * recurrent layer's two biases Wb, Rb share one bias feature: the cell's
     * step is split between them, so their sum moves by it once) */
    double *share;
    double *A, *G;            /* [groups][dA][dA], [groups][dG][dG] */
} pc_kron;

/* Fold the engine's factors of r into k (allocated on first use). */
cs_status pc_kron_update(pc_kron *k, const cs_curv_result *r, int64_t offset, double decay, cs_err *err)
    CS_MUST_CHECK;
/* The batch's K-FAC factors folded into k[0 .. n_layers) (layers without
 * factors fall back). */
cs_status pc_kron_refresh(pc_kron *k, cs_precond_ctx *c, const cs_dataset *batch, cs_err *err) CS_MUST_CHECK;
/* k gets layer l's layout only (no factors); k->ok false when it has none. */
cs_status pc_kron_layout(pc_kron *k, const cs_graph *g, int l, cs_err *err) CS_MUST_CHECK;
/* The layer vector v (W values) as [groups][dG][dA] matrices, and back. */
void pc_kron_gather(const pc_kron *k, const double *v, double *M);
void pc_kron_scatter(const pc_kron *k, const double *M, double *v);
void pc_kron_free(pc_kron *k);

/* Y = op(L) X op(R) for each group's [dG, dA] matrix X, with L
 * [groups][dG][dG], R [groups][dA][dA], op transposing where asked (EKFAC's
 * changes of basis); tmp holds dG * dA doubles. */
void pc_kron_sandwich(const pc_kron *k, const double *L, bool trans_l, const double *X, const double *R,
                      bool trans_r, double *Y, double *tmp);

/* Per layer a K-FAC layout and the per-group pair a preconditioner applies
 * as L V R (kfac: the damped inverses of G and A; shampoo: the roots of its
 * statistics; ekfac: the eigenbases Q_G, Q_A), with one layer's work
 * matrices.  L[l], R[l] stay NULL until layer l is served. */
typedef struct pc_kron_set {
    int n_layers;
    pc_kron *k;               /* [n_layers] */
    double **L, **R;          /* [n_layers]: [groups][dG][dG], [groups][dA][dA] */
    double *X, *Y, *tmp;      /* max_v doubles each */
    size_t max_v;             /* the largest groups * dG * dA of a served layer */
} pc_kron_set;

cs_status pc_kron_set_init(pc_kron_set *s, int n_layers, cs_err *err) CS_MUST_CHECK;
/* L[l] and R[l] for k[l]'s shape (once); max_v grows to the layer's size. */
cs_status pc_kron_set_layer(pc_kron_set *s, int l, cs_err *err) CS_MUST_CHECK;
/* X, Y and tmp of max_v doubles (once, when the served layers are known). */
cs_status pc_kron_set_buffers(pc_kron_set *s, cs_err *err) CS_MUST_CHECK;
/* Frees what init and the others allocated (also after a failed init). */
void pc_kron_set_free(pc_kron_set *s);
/* *state = a zeroed state of size bytes whose first member is a
 * pc_kron_set, initialised for c's layers; when need_kfac names the
 * preconditioner, a curvature without a K-FAC form is refused first. */
cs_status pc_kron_state_create(const cs_precond_ctx *c, const char *need_kfac, size_t size, void **state,
                               cs_err *err) CS_MUST_CHECK;
/* Whether layer l has a layout and has not fallen back. */
bool pc_kron_set_serves(const pc_kron_set *s, const cs_precond_ctx *c, int l);
/* dir = grad, then dir = L V R on every served layer. */
void pc_kron_set_apply(const pc_kron_set *s, const cs_precond_ctx *c, const double *grad, double *dir);

/* Fail (usage) unless the context's curvature has a K-FAC form; `name` is
 * the preconditioner's. */
cs_status pc_need_kfac_curvature(const cs_precond_ctx *c, const char *name, cs_err *err) CS_MUST_CHECK;

/* Mark layer l as stepping along g, with the reason. */
void pc_fallback(const cs_precond_ctx *c, int l, const char *why);

#endif
