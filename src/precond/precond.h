/* Fine-tuning preconditioners: each turns the mini-batch gradient g into a
 * direction d per layer; the update rule (finetune.c) then applies SGD's
 * momentum and decoupled weight decay to d (adamw has its own rule and
 * d = g).  One table registers them (precond.c); each lives in its own
 * file (pre_*.c).
 *
 * Life of a preconditioner in a run:
 *   create    once, before the first step
 *   observe   every step, with the step's gradient (Shampoo's statistics)
 *   refresh   every --update-interval steps (and at the first step), with
 *             the step's batch: new curvature statistics, folded into the
 *             running ones by an exponential moving average, and the new
 *             inverses (or roots) computed from them
 *   apply     every step: d from g
 * A layer the preconditioner cannot serve gets d = g (SGD) and is listed
 * in fallback[] with the reason; frozen layers are never updated. */
#ifndef CS_PRECOND_PRECOND_H
#define CS_PRECOND_PRECOND_H

#include "curv/engine.h"
#include "finetune/finetune.h"

typedef struct ft_ctx {
    const cs_graph *g;
    const cs_finetune_opts *o;
    cs_curv_kind curv;        /* the curvature the statistics come from */
    uint64_t seed;            /* this refresh's seed (fisher_mc labels) */
    int64_t refreshes;        /* refreshes done before the current one */
    const bool *frozen;       /* [n_layers]: never updated */
    bool *fallback;           /* [n_layers]: the layer steps along g */
    const char **why;         /* [n_layers]: the reason, for the run's notes */
} ft_ctx;

typedef struct ft_precond_def {
    const char *name;
    const char *about;        /* one line for --help */
    cs_curv_kind default_curv;
    bool reads_curvature;     /* refresh runs the curvature engine (--curvature applies) */
    double default_lr;
    double default_damping;   /* lambda when --damping is not given */
    bool every_step;          /* refreshes on every step's batch (--update-interval does not apply) */
    cs_status (*create)(const ft_ctx *c, void **state, cs_err *err);
    void (*observe)(void *state, const ft_ctx *c, const double *grad);
    cs_status (*refresh)(void *state, ft_ctx *c, const cs_dataset *batch, cs_err *err);
    cs_status (*apply)(void *state, const ft_ctx *c, const double *grad, double *dir, cs_err *err);
    void (*destroy)(void *state);
} ft_precond_def;

/* The table entry named name, or NULL. */
const ft_precond_def *ft_precond_find(const char *name);
/* The registered names, comma-separated (for messages). */
const char *ft_precond_names(void);
int ft_precond_count(void);
const ft_precond_def *ft_precond_at(int i);

/* ---- helpers shared by the preconditioners (precond.c) ---- */

/* The engine's statistics of the batch for c->curv: reprs as cs_repr_kind
 * bits; on_rows (may be NULL) sees every per-sample gradient row. */
cs_status ft_curvature(const ft_ctx *c, const cs_dataset *batch, unsigned reprs,
                       void (*on_rows)(void *ctx, int layer, int64_t start, int seed, const double *rows,
                                       int64_t B),
                       void *rows_ctx, cs_curv_report *rep, cs_err *err) CS_MUST_CHECK;

/* S <- decay S + (1 - decay) X, or S <- X on the first update. */
void ft_ema(double *S, const double *X, int64_t n, double decay, bool first);

/* out = (M + damping I)^-1 for the symmetric n x n M (out may be M).
 * By Cholesky (dpotrf/dpotri) when chol is set and damping > 0, else by
 * eigendecomposition; with damping 0 that is the Moore-Penrose
 * pseudo-inverse (eigenvalues at or below n * 2^-52 * max|w| dropped). */
cs_status ft_damped_inverse(const double *M, int64_t n, double damping, bool chol, double *out,
                            cs_err *err) CS_MUST_CHECK;

/* out = Q f(w) Q^T for M = Q diag(w) Q^T (eigendecomposition; out may be
 * M) with f(w) = (w + damping)^power, or (|w| + damping)^power when
 * absolute (saddle-free: negative curvature by its magnitude).  With
 * damping 0 it is the pseudo-inverse's power: eigenvalues at or below
 * n * 2^-52 * max|w| map to 0. */
cs_status ft_sym_damped_power(const double *M, int64_t n, double damping, double power, bool absolute, double *out,
                              cs_err *err) CS_MUST_CHECK;

/* A layer's K-FAC layout and running factors (DESIGN.md: block G (x) A over
 * [W | b], rows = output units, per group). */
typedef struct ft_kron {
    bool ok;
    int64_t groups, dA, dG, W, offset;
    int64_t *index;           /* [W][3]: (group, unit, feature) */
    double *A, *G;            /* [groups][dA][dA], [groups][dG][dG] */
} ft_kron;

/* Fold the engine's factors of r into k (allocated on first use). */
cs_status ft_kron_update(ft_kron *k, const cs_curv_result *r, int64_t offset, double decay, cs_err *err)
    CS_MUST_CHECK;
/* The batch's K-FAC factors folded into k[0 .. n_layers) (layers without
 * factors fall back); *max_v gets the largest groups * dG * dA. */
cs_status ft_kron_refresh(ft_kron *k, ft_ctx *c, const cs_dataset *batch, size_t *max_v, cs_err *err)
    CS_MUST_CHECK;
/* k gets layer l's layout only (no factors); k->ok false when it has none. */
cs_status ft_kron_layout(ft_kron *k, const cs_graph *g, int l, cs_err *err) CS_MUST_CHECK;
/* The layer vector v (W values) as [groups][dG][dA] matrices, and back. */
void ft_kron_gather(const ft_kron *k, const double *v, double *M);
void ft_kron_scatter(const ft_kron *k, const double *M, double *v);
void ft_kron_free(ft_kron *k);

/* Y = op(L) X op(R) for each group's [dG, dA] matrix X, with L
 * [groups][dG][dG], R [groups][dA][dA], op transposing where asked (EKFAC's
 * changes of basis); tmp holds dG * dA doubles. */
void ft_kron_sandwich(const ft_kron *k, const double *L, bool trans_l, const double *X, const double *R,
                      bool trans_r, double *Y, double *tmp);

/* Fail (usage) unless the context's curvature has a K-FAC form; `name` is
 * the preconditioner's. */
cs_status ft_need_kfac_curvature(const ft_ctx *c, const char *name, cs_err *err) CS_MUST_CHECK;

/* Mark layer l as stepping along g, with the reason. */
void ft_fallback(const ft_ctx *c, int l, const char *why);

#endif
