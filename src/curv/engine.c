/* The curvature engine: the pass over the data and the orchestration of the
 * representations (curv/repr.h). */
#include "curv/engine.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/dist.h"
#include "base/rng.h"
#include "curv/alloc.h"
#include "curv/mem_plan.h"
#include "curv/repr.h"
#include "objective/objective.h"

void cs_curv_opts_init(cs_curv_opts *o)
{
    memset(o, 0, sizeof *o);
    o->curvatures = 1u << CS_CURV_GGN | 1u << CS_CURV_FISHER_EMP;
    o->reprs = 1u << CS_REPR_KFAC | 1u << CS_REPR_DIAG | 1u << CS_REPR_FULL;
    o->max_full = 4096;
    o->mc_samples = 1;
    o->probes = 20;
    o->batch = 128;
    o->noise_groups = 10;
    o->loss = CS_LOSS_CE;
}

typedef struct engine {
    cs_repr_ctx x;              /* lent to the representations */
    cs_objective obj;
    cs_layer_layout *lay;        /* [n_layers] */
    bool *rows_ok;              /* [n_layers] */
    void *state[CS_REPR_TABLE_N]; /* each representation's accumulators, NULL: nothing to do */
    double *rows;               /* per-sample gradients [B, W] */
    double *seedwork;           /* loss rows */
    cs_noise_acc *noise;        /* noise_scale's sums, NULL when not asked */
    cs_rng rng;
    int pass;                   /* the pass over the data now running (cs_repr_def.pass) */
} engine;

/* Representation i accumulates in the pass now running. */
static bool active(const engine *e, int i)
{
    return e->state[i] && cs_repr_table[i]->pass == e->pass;
}

/* Every representation's sources of layer l (-1: the network) and
 * curvature c. */
static void gather_sources(const engine *e, int l, cs_curv_kind c, cs_repr_sources *src)
{
    memset(src, 0, sizeof *src);
    for (int i = 0; i < CS_REPR_TABLE_N; i++)
        if (e->state[i] && cs_repr_table[i]->sources)
            cs_repr_table[i]->sources(&e->x, e->state[i], l, c, src);
}

static void lend_sources(const cs_repr_ctx *x, int l, cs_curv_kind c, cs_repr_sources *src)
{
    gather_sources(x->engine, l, c, src);
}

static void note(cs_curv_report *r, const char *fmt, ...) CS_PRINTF(2, 3);
static void note(cs_curv_report *r, const char *fmt, ...)
{
    if (r->n_notes >= 64)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->notes[r->n_notes++], sizeof r->notes[0], fmt, ap);
    va_end(ap);
}

static bool family_wanted(const cs_curv_opts *o, int f)
{
    for (int c = 0; c < CS_CURV_COUNT; c++)
        if (cs_curv_family((cs_curv_kind)c) == f && (o->curvatures >> c & 1))
            return true;
    return false;
}

static void engine_free(engine *e)
{
    for (int i = 0; i < CS_REPR_TABLE_N; i++)
        if (e->state[i])
            cs_repr_table[i]->free(&e->x, e->state[i]);
    for (int l = 0; e->lay && l < e->x.g->n_layers; l++)
        cs_layer_layout_free(&e->lay[l]);
    free(e->lay);
    free(e->rows_ok);
    free(e->rows), free(e->seedwork);
    cs_noise_acc_free(e->noise);
    cs_objective_free(&e->obj);
}

/* The layers' layouts, what cannot be computed as notes, the pass's own
 * buffers, then every representation's accumulators. */
static cs_status plan_accumulators(engine *e, cs_err *err)
{
    cs_repr_ctx *x = &e->x;
    const cs_graph *g = x->g;
    const cs_curv_opts *o = x->o;
    x->obj = &e->obj;
    x->rng = &e->rng;
    x->P = g->n_param_scalars;
    x->B = e->obj.batch;
    for (int f = 0; f < CS_FAM_COUNT; f++)
        x->fam[f] = family_wanted(o, f);
    bool any_full = o->reprs >> CS_REPR_FULL & 1;
    x->compare_any = !o->stats_only &&
                     (o->reprs & (1u << CS_REPR_KFAC | 1u << CS_REPR_EKFAC | 1u << CS_REPR_DIAG | 1u << CS_REPR_UNIT)) != 0;
    x->net_full = any_full && x->P <= o->max_full && g->n_layers > 0 && !o->stats_only;
    cs_status st = cs_curv_calloc(&e->lay, (size_t)(g->n_layers + 1), err, "the layers' layouts");
    if (!st)
        st = cs_curv_calloc(&e->rows_ok, (size_t)(g->n_layers + 1), err, "the layers' row flags");
    if (st)
        return st;
    x->lay = e->lay;
    x->rows_ok = e->rows_ok;
    bool all_rows = true;
    for (int l = 0; l < g->n_layers; l++) {
        e->rows_ok[l] = true;
        for (int i = 0; i < e->obj.n_plans; i++)
            e->rows_ok[l] = e->rows_ok[l] && cs_ad_per_sample_ok(&e->obj.ad[i], l);
        all_rows = all_rows && e->rows_ok[l];
        if (!e->rows_ok[l] && (o->reprs & (1u << CS_REPR_FULL | 1u << CS_REPR_DIAG | 1u << CS_REPR_UNIT |
                                           1u << CS_REPR_EKFAC)))
            note(x->rep, "layer %s (%s): samples not on one axis of its input: no full, unit, ekfac or "
                         "per-sample diag",
                 g->layers[l].name, g->layers[l].op_type);
    }
    x->net_full = x->net_full && all_rows;
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer_layout *s = &e->lay[l];
        const cs_layer *L = &g->layers[l];
        if ((st = cs_layer_layout_make(g, l, &e->lay[l], err)))
            return st;
        if ((o->reprs >> CS_REPR_KFAC & 1) && s->kfac == CS_KFAC_NONE && (o->curvatures & ~(1u << CS_CURV_HESSIAN)))
            note(x->rep, "layer %s (%s): no K-FAC representation", L->name, L->op_type);
        if ((o->reprs >> CS_REPR_EKFAC & 1) && s->kfac == CS_KFAC_NONE && (o->curvatures & ~(1u << CS_CURV_HESSIAN)))
            note(x->rep, "layer %s (%s): no EK-FAC representation", L->name, L->op_type);
        if ((o->reprs >> CS_REPR_UNIT & 1) && !s->unit_idx)
            note(x->rep, "layer %s (%s): no unit-wise representation", L->name, L->op_type);
        if (any_full && !cs_repr_small(x, l))
            note(x->rep, "layer %s: %lld parameters, above --max-full %lld: no full block", L->name,
                 (long long)s->W, (long long)o->max_full);
    }
    if ((st = cs_curv_zalloc(&e->seedwork, (size_t)(e->obj.classes * e->obj.classes + 2 * e->obj.classes), err,
                             "the loss seeds' rows")))
        return st;
    x->seedwork = e->seedwork;
    if (o->noise_scale) {
        for (int l = 0; l < g->n_layers; l++)
            if (!e->rows_ok[l])
                note(x->rep, "layer %s (%s): samples not on one axis of its input: no noise scale", g->layers[l].name,
                     g->layers[l].op_type);
        if ((st = cs_noise_acc_new(g, e->rows_ok, x->ds->n, o->noise_groups, &e->noise, err)))
            return st;
    }
    for (int i = 0; i < CS_REPR_TABLE_N; i++)
        if ((st = cs_repr_table[i]->plan(x, &e->state[i], err)))
            return st;
    /* The rows buffer is [B, W] of the widest layer whose rows some seed
     * forms (seed_pass's rule), not of the widest layer: with direct
     * diagonals and K-FAC no rows are formed, and a [B, W] buffer of a
     * 100M-parameter MLP's widest layer would be gigabytes never touched. */
    int64_t rowsW = 0;
    for (int l = 0; l < g->n_layers; l++) {
        bool form = o->on_rows || (e->noise && e->rows_ok[l]);
        for (int f = 0; f < CS_FAM_COUNT && !form; f++)
            for (int i = 0; i < CS_REPR_TABLE_N && !form; i++)
                form = x->fam[f] && e->state[i] && cs_repr_table[i]->rows &&
                       cs_repr_table[i]->rows(x, e->state[i], l, f) == CS_ROWS_NEEDED;
        if (form && e->lay[l].W > rowsW)
            rowsW = e->lay[l].W;
    }
    if (rowsW > 0 && (st = cs_curv_zalloc(&e->rows, (size_t)(x->B * rowsW), err, "the per-sample gradients")))
        return st;
    return CS_OK;
}

/* One seed's backward and everything its captures feed: layer by layer,
 * the per-sample rows when a representation (or on_rows) needs them, then
 * the captures. */
static cs_status seed_pass(engine *e, int which, int f, int seed, double scale, int64_t start, int64_t B,
                           cs_err *err)
{
    const cs_repr_ctx *x = &e->x;
    const cs_curv_opts *o = x->o;
    cs_ad *ad = &e->obj.ad[which];
    ad->param_grads = false;
    cs_status st = cs_ad_backward(ad, err);
    if (st)
        return st;
    /* a family run only for the noise scale feeds no representation */
    bool reprs_on = x->fam[f];
    for (int l = 0; l < x->g->n_layers; l++) {
        cs_repr_rows use[CS_REPR_TABLE_N];
        bool on_rows = o->on_rows && e->pass == 0 && reprs_on;
        bool noise = e->noise && f == CS_FAM_EMP && e->pass == 0 && e->rows_ok[l];
        bool form = on_rows || noise;
        for (int i = 0; i < CS_REPR_TABLE_N; i++) {
            use[i] = reprs_on && active(e, i) && cs_repr_table[i]->rows ? cs_repr_table[i]->rows(x, e->state[i], l, f)
                                                                        : CS_ROWS_NONE;
            form = form || use[i] == CS_ROWS_NEEDED;
        }
        if (form) {
            int64_t W = x->lay[l].W;
            if ((st = cs_ad_per_sample_grads(ad, l, e->rows, err)))
                return st;
            if (scale != 1.0)
                for (int64_t i = 0; i < B * W; i++)
                    e->rows[i] *= scale;
            for (int i = 0; i < CS_REPR_TABLE_N; i++)
                if (use[i] != CS_ROWS_NONE)
                    cs_repr_table[i]->add_rows(x, e->state[i], l, f, e->rows, B);
            if (on_rows)
                o->on_rows(o->rows_ctx, l, start, seed, e->rows, B);
            if (noise) /* scale is 1 for the true-label seed: rows are d l_n / d theta */
                cs_noise_acc_add(e->noise, l, start, e->rows, B);
        }
        for (int i = 0; i < CS_REPR_TABLE_N; i++)
            if (reprs_on && active(e, i) && cs_repr_table[i]->add_capture &&
                (st = cs_repr_table[i]->add_capture(x, e->state[i], ad, l, f, scale, form, err)))
                return st;
    }
    for (int i = 0; i < CS_REPR_TABLE_N; i++)
        if (reprs_on && active(e, i) && cs_repr_table[i]->seed_done)
            cs_repr_table[i]->seed_done(x, e->state[i], f, B);
    return CS_OK;
}

/* One batch: forward, the seeds of every family, the representations' own
 * passes. */
static cs_status batch_pass(engine *e, int64_t start, int64_t *done, cs_err *err)
{
    const cs_repr_ctx *x = &e->x;
    const cs_curv_opts *o = x->o;
    int64_t N = x->ds->n;
    int S = o->mc_samples > 0 ? o->mc_samples : 1;
    int which = start + e->obj.batch <= N ? 0 : 1;
    cs_plan *p = &e->obj.plan[which];
    cs_ad *ad = &e->obj.ad[which];
    cs_status st;
    if ((st = cs_dataset_fill_inputs(x->ds, start, o->norm, cs_plan_input(p, 0), err)) ||
        (st = cs_plan_forward(p, err)))
        return st;
    const cs_tensor *z = &p->vals[e->obj.head.logits_value];
    int64_t B = z->dims[0], C = e->obj.classes;
    bool inputs_done = false;
    for (int f = 0; f < CS_FAM_COUNT; f++) {
        bool noise_only = !x->fam[f] && f == CS_FAM_EMP && e->noise && e->pass == 0;
        if (!x->fam[f] && !noise_only)
            continue;
        int n_seeds = f == CS_FAM_GGN ? (int)C : f == CS_FAM_MC ? S : 1;
        double scale = f == CS_FAM_MC ? 1.0 / sqrt((double)S) : 1.0;
        for (int k = 0; k < n_seeds; k++) {
            cs_loss_seed_batch(&e->obj.head,
                               f == CS_FAM_GGN ? CS_SEED_FACTOR_COLUMN
                                               : f == CS_FAM_MC ? CS_SEED_SAMPLED : CS_SEED_TRUE_LABEL,
                               k, z, x->ds, start, &e->rng, cs_ad_seed(ad), e->seedwork);
            if ((st = seed_pass(e, which, f, k, scale, start, B, err)))
                return st;
            for (int l = 0; !inputs_done && !noise_only && l < x->g->n_layers; l++)
                for (int i = 0; i < CS_REPR_TABLE_N; i++)
                    if (active(e, i) && cs_repr_table[i]->add_input &&
                        (st = cs_repr_table[i]->add_input(x, e->state[i], ad, l, err)))
                        return st;
            inputs_done = inputs_done || !noise_only;
        }
    }
    for (int i = 0; i < CS_REPR_TABLE_N; i++)
        if (active(e, i) && cs_repr_table[i]->add_batch &&
            (st = cs_repr_table[i]->add_batch(x, e->state[i], which, start, err)))
            return st;
    *done = start + B;
    return CS_OK;
}

/* Every representation's results (or stats_only matrices) of layer l (-1:
 * the network) and curvature c, from the sources they all lend. */
static cs_status results_of(engine *e, int l, cs_curv_kind c, cs_err *err)
{
    const cs_repr_ctx *x = &e->x;
    cs_repr_sources src;
    gather_sources(e, l, c, &src);
    cs_repr_ref ref;
    memset(&ref, 0, sizeof ref);
    ref.t0 = cs_now_seconds();
    cs_status st = CS_OK;
    for (int i = 0; i < CS_REPR_TABLE_N && !st; i++) {
        const cs_repr_def *d = cs_repr_table[i];
        if (x->o->stats_only ? !d->stats : !d->results)
            continue;
        st = x->o->stats_only ? d->stats(x, l, c, &src, err) : d->results(x, l, c, &src, &ref, err);
    }
    free(ref.top);
    free(ref.dense);
    return st;
}

/* The engine up to its accumulators: notes of the skipped combinations,
 * the objective's plans for the (micro-)batch.  On failure nothing is
 * left to free. */
static cs_status engine_start(engine *e, const cs_graph *g, const cs_dataset *ds, const cs_curv_opts *o,
                              cs_curv_report *out, cs_err *err)
{
    memset(e, 0, sizeof *e);
    e->x.g = g, e->x.ds = ds, e->x.o = o, e->x.rep = out;
    e->x.lend = lend_sources, e->x.engine = e;
    cs_rng_seed(&e->rng, o->seed);
    for (int c = 0; c < CS_CURV_COUNT; c++)
        for (int r = 0; r < CS_REPR_COUNT; r++) {
            const char *why;
            if ((o->curvatures >> c & 1) && (o->reprs >> r & 1) &&
                !cs_curv_repr_valid((cs_curv_kind)c, (cs_repr_kind)r, &why))
                note(out, "%s %s skipped: %s", cs_curv_name((cs_curv_kind)c), cs_repr_name((cs_repr_kind)r), why);
        }
    /* every seed of a forward reuses the Conv layers' patches */
    unsigned mode = CS_AD_GRAD | CS_AD_PATCH_CACHE | ((o->curvatures >> CS_CURV_HESSIAN & 1) ? CS_AD_HVP : 0);
    /* the engine reads each batch's plan and derivatives itself */
    /* Every statistic is a sum over samples, so the engine runs the
     * objective's micro-batches (objective.h): its captures stay in cache
     * and take a fraction of the memory; results change only by rounding
     * and by the order in which fisher_mc draws its labels. */
    int64_t batch = cs_objective_micro_batch(g, o->batch);
    cs_status st = cs_objective_init(&e->obj, g, ds, o->norm, o->loss, batch, mode | CS_OBJ_WHOLE_BATCH, err);
    if (st)
        return st;
    if (g->n_layers == 0) {
        engine_free(e);
        return cs_fail(err, CS_ERR_UNSUPPORTED, "the model has no layers with trainable parameters");
    }
    return CS_OK;
}

cs_status cs_curvature_compute(const cs_graph *g, const cs_dataset *ds, const cs_curv_opts *o,
                               cs_curv_report *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    double t_start = cs_now_seconds();
    engine e;
    cs_status st = engine_start(&e, g, ds, o, out, err);
    if (st)
        return st;
    if ((st = plan_accumulators(&e, err)))
        goto fail;

    /* Pass 0 for every representation, pass 1 for those that build on
     * pass 0's results (EK-FAC's scalings in K-FAC's basis). */
    int64_t N = ds->n;
    for (e.pass = 0; e.pass < 2; e.pass++) {
        bool any = e.pass == 0 && e.noise;
        for (int i = 0; i < CS_REPR_TABLE_N; i++)
            any = any || active(&e, i);
        if (!any)
            continue;
        for (int i = 0; i < CS_REPR_TABLE_N; i++)
            if (active(&e, i) && cs_repr_table[i]->begin_pass &&
                (st = cs_repr_table[i]->begin_pass(&e.x, e.state[i], err)))
                goto fail;
        for (int64_t start = 0, done = 0; start < N; start += e.obj.batch) {
            if ((st = batch_pass(&e, start, &done, err)))
                goto fail;
            if (o->progress)
                o->progress(o->progress_ctx, done, N);
            if (o->cancel && *o->cancel) {
                st = cs_fail(err, CS_ERR_RUNTIME, "interrupted after %lld of %lld samples", (long long)done,
                             (long long)N);
                goto fail;
            }
        }
        /* The ranks' slices (doc/design.md §2.12): every sum is added
         * over the ranks before the means, with the status agreed so a
         * failure on one rank fails all. */
        for (int i = 0; i < CS_REPR_TABLE_N && ds->sliced; i++)
            if (active(&e, i) && cs_repr_table[i]->reduce)
                st = cs_repr_table[i]->reduce(&e.x, e.state[i], err);
        if (ds->sliced && (st = cs_dist_agree(st, err)))
            goto fail;
        /* Normalise: captures were per-sample (unscaled) losses. */
        double inv_n = 1.0 / (double)cs_dataset_total(ds);
        for (int i = 0; i < CS_REPR_TABLE_N; i++)
            if (active(&e, i) && cs_repr_table[i]->normalise)
                cs_repr_table[i]->normalise(&e.x, e.state[i], inv_n);
        for (int i = 0; i < CS_REPR_TABLE_N; i++)
            if (active(&e, i) && cs_repr_table[i]->publish &&
                (st = cs_repr_table[i]->publish(&e.x, e.state[i], err)))
                goto fail;
    }

    for (int c = 0; c < CS_CURV_COUNT && !st; c++) {
        if (!(o->curvatures >> c & 1))
            continue;
        for (int l = 0; l < g->n_layers && !st; l++)
            st = results_of(&e, l, (cs_curv_kind)c, err);
        if (!st && !o->stats_only)
            st = results_of(&e, -1, (cs_curv_kind)c, err);
    }
    if (!st && e.noise)
        st = cs_noise_acc_results(e.noise, &out->noise, &out->n_noise, err);
    if (st)
        goto fail;
    /* Drop full blocks computed only as references for the comparisons. */
    int k = 0;
    for (int i = 0; i < out->n; i++) {
        if (out->res[i].dim < 0) {
            free(out->res[i].eig), free(out->res[i].matrix);
            continue;
        }
        out->res[k++] = out->res[i];
    }
    out->n = k;
    engine_free(&e);
    out->seconds = cs_now_seconds() - t_start;
    return CS_OK;
fail:
    engine_free(&e);
    cs_curv_report_free(out);
    return st;
}

void cs_curv_report_free(cs_curv_report *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->res[i].eig);
        free(r->res[i].matrix);
        free(r->res[i].factor_eig[0]);
        free(r->res[i].factor_eig[1]);
        free(r->res[i].kfac_A);
        free(r->res[i].kfac_G);
        free(r->res[i].kfac_index);
        free(r->res[i].unit_blocks);
        free(r->res[i].unit_index);
    }
    free(r->res);
    free(r->noise);
    memset(r, 0, sizeof *r);
}

const cs_curv_result *cs_curv_report_find(const cs_curv_report *r, cs_curv_kind c, cs_repr_kind p,
                                          int layer)
{
    for (int i = 0; i < r->n; i++)
        if (r->res[i].curv == c && r->res[i].repr == p && r->res[i].layer == layer)
            return &r->res[i];
    return NULL;
}

/* ---- the memory plan (curv/mem_plan.h) ---- */

static void tally_item(void *ctx, const char *what, size_t bytes)
{
    cs_mem_plan *p = ctx;
    cs_err ignored;
    if (cs_mem_plan_add(p, cs_mem_source_of(what), NULL, (int64_t)bytes, &ignored, "%s", what))
        p->failed = 1;
}

/* Doubles the results of layer l (-1: the network) keep until they are
 * stored: each valid (curvature, representation) pair's eigenvalues, and
 * with keep_matrices its matrices (the sizes of the representations'
 * results and stats hooks). */
static int64_t results_doubles(const engine *e, int l)
{
    const cs_repr_ctx *x = &e->x;
    const cs_curv_opts *o = x->o;
    int64_t total = 0;
    bool keep = o->keep_matrices || o->stats_only, eig = !o->stats_only;
    for (int c = 0; c < CS_CURV_COUNT; c++) {
        if (!(o->curvatures >> c & 1))
            continue;
        if (l < 0) {
            if (x->net_full && (o->reprs >> CS_REPR_FULL & 1))
                total += eig ? x->P : 0;
            continue;
        }
        const cs_layer_layout *s = &x->lay[l];
        for (int r = 0; r < CS_REPR_COUNT; r++) {
            if (!cs_repr_wanted(x, (cs_curv_kind)c, (cs_repr_kind)r))
                continue;
            int64_t W = s->W, kron = s->kfac != CS_KFAC_NONE ? s->groups * s->dA * s->dG : 0;
            switch ((cs_repr_kind)r) {
            case CS_REPR_FULL:
                if (cs_repr_small(x, l) && x->rows_ok[l])
                    total += (eig ? W : 0) + (keep ? W * W : 0);
                break;
            case CS_REPR_DIAG: total += (eig ? W : 0) + (keep ? W : 0); break;
            case CS_REPR_KFAC:
                if (kron)
                    total += (eig ? kron + s->groups * (s->dA + s->dG) : 0) +
                             (keep ? s->groups * (s->dA * s->dA + s->dG * s->dG) + 3 * W : 0);
                break;
            case CS_REPR_EKFAC:
                if (kron && x->rows_ok[l])
                    total += eig ? kron : 0;
                break;
            case CS_REPR_UNIT:
                if (s->unit_idx && x->rows_ok[l])
                    total += (eig ? s->n_units * s->unit_d : 0) +
                             (keep ? s->n_units * s->unit_d * (s->unit_d + 1) : 0);
                break;
            default: break;
            }
        }
    }
    return total;
}

cs_status cs_curvature_plan(const cs_graph *g, const cs_dataset *ds, const cs_curv_opts *o, cs_mem_plan *plan,
                            cs_err *err)
{
    cs_curv_report notes;
    memset(&notes, 0, sizeof notes);
    engine e;
    cs_status st = engine_start(&e, g, ds, o, &notes, err);
    if (st)
        return st;
    st = cs_mem_plan_add(plan, CS_MEM_INTERP, "", cs_objective_bytes(&e.obj), err,
                         "the interpreter's plans and derivative buffers for batches of %lld",
                         (long long)e.obj.batch);
    if (!st) {
        cs_curv_alloc_tally(tally_item, plan);
        st = plan_accumulators(&e, err);
        cs_curv_alloc_tally(NULL, NULL);
    }
    if (!st && plan->failed)
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for the memory plan");
    const cs_repr_ctx *x = &e.x;
    /* The layouts are made by the layer kinds (interp/), outside the
     * tallied allocations, and held for the whole computation: 24 bytes a
     * parameter for the (group, unit, feature) index, 8 more for the
     * unit-wise slots (3.2 GB of a 100M-parameter MLP, more than its
     * diagonal). */
    for (int l = 0; !st && l < g->n_layers; l++) {
        const cs_layer_layout *s = &e.lay[l];
        int64_t b = (int64_t)sizeof(int64_t) * ((s->kron ? 3 * s->W : 0) + (s->unit_idx ? s->n_units * s->unit_d : 0));
        if (b)
            st = cs_mem_plan_add(plan, CS_MEM_LAYOUT, NULL, b, err, "the parameter index of layer '%s' (K-FAC and "
                                 "unit-wise layout)", g->layers[l].name);
    }
    /* The results run layer by layer: the largest dense eigen-solve (a
     * copy of the block, LAPACK's memory, the top eigenvector) with, when
     * approximations are scored, the dense approximation beside it. */
    bool blocks = !o->stats_only && ((o->reprs >> CS_REPR_FULL & 1) || x->compare_any);
    /* Scoring a dense approximation (K-FAC, EK-FAC, unit-wise) holds it
     * beside the eigen-solve of its copy; a diagonal one deflates at once
     * in dsyevd's divide and conquer, which then leaves its workspace
     * untouched (measured: tools/plan_accuracy.sh), so its solve is no
     * larger than the exact block's own. */
    bool dense_cmp = x->compare_any && (o->reprs & (1u << CS_REPR_KFAC | 1u << CS_REPR_EKFAC | 1u << CS_REPR_UNIT));
    int64_t eig_bytes = 0;
    int eig_layer = -2;
    for (int l = -1; !st && blocks && l < g->n_layers; l++) {
        int64_t n = l < 0 ? (x->net_full ? x->P : 0) : (cs_repr_small(x, l) && x->rows_ok[l] ? x->lay[l].W : 0);
        if (n == 0)
            continue;
        int64_t b = (int64_t)sizeof(double) * (n * n + 2 * n) + cs_sym_eig_work_bytes(n, l >= 0) +
                    (l >= 0 && dense_cmp ? (int64_t)sizeof(double) * n * n : 0);
        if (b > eig_bytes)
            eig_bytes = b, eig_layer = l;
    }
    if (!st && eig_bytes) {
        if (eig_layer < 0)
            st = cs_mem_plan_add(plan, CS_MEM_EIGEN, "", eig_bytes, err,
                                 "the largest eigen-solve of the results: the whole network's block");
        else
            st = cs_mem_plan_add(plan, CS_MEM_EIGEN, NULL, eig_bytes, err,
                                 "the largest eigen-solve of the results: the block of layer '%s'",
                                 g->layers[eig_layer].name);
    }
    /* analyze's results stay until the run stores them, past this phase;
     * statistics (stats_only) go with the report their caller frees */
    int phase = plan->phase;
    plan->phase = o->stats_only ? phase : 0;
    for (int l = -1; !st && l < g->n_layers; l++) {
        int64_t d = results_doubles(&e, l);
        if (d == 0)
            continue;
        if (l < 0)
            st = cs_mem_plan_add(plan, CS_MEM_RESULTS, "", d * (int64_t)sizeof(double), err,
                                 "the whole network's results until stored");
        else
            st = cs_mem_plan_add(plan, CS_MEM_RESULTS, NULL, d * (int64_t)sizeof(double), err,
                                 "the results of layer '%s' until stored", g->layers[l].name);
    }
    plan->phase = phase;
    /* Passes: one for every representation of pass 0 (and the noise
     * scale), one more for a second-pass representation (EK-FAC). */
    int per_batch = 0;
    for (int f = 0; f < CS_FAM_COUNT; f++)
        if (x->fam[f] || (f == CS_FAM_EMP && e.noise))
            per_batch += f == CS_FAM_GGN ? (int)e.obj.classes : f == CS_FAM_MC ? (o->mc_samples > 0 ? o->mc_samples : 1) : 1;
    for (int pass = 0; pass < 2 && !st; pass++) {
        bool any = pass == 0 && e.noise;
        for (int i = 0; i < CS_REPR_TABLE_N; i++)
            any = any || (e.state[i] && cs_repr_table[i]->pass == pass);
        if (!any)
            continue;
        if (pass == 0)
            st = cs_mem_plan_add_passes(plan, 1, err,
                                        "curvature accumulators: %d backward%s per batch%s", per_batch,
                                        per_batch == 1 ? "" : "s",
                                        (o->curvatures >> CS_CURV_HESSIAN & 1) ? ", and the Hessian's products" : "");
        else
            st = cs_mem_plan_add_passes(plan, 1, err, "EK-FAC's scalings in K-FAC's basis");
    }
    engine_free(&e);
    cs_curv_report_free(&notes);
    return st;
}
