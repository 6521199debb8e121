#include "finetune/finetune.h"

#include "base/dist.h"
#include "base/clock.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "curv/mem_plan.h"
#include "objective/evaluate.h"
#include "objective/objective.h"
#include "precond/precond.h"

void cs_finetune_opts_init(cs_finetune_opts *o)
{
    *o = (cs_finetune_opts){.precond = "sgd", .epochs = 1, .batch = 128, .lr = 0.01, .momentum = 0.9,
                            .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .log_every = 10, .damping = 1e-3,
                            .ema = 0.95, .update_interval = 10, .curvature = -1, .max_full = 4096,
                            .mc_samples = 1, .pi_damping = true, .graft = true, .kl_clip = 1e-3,
                            .cholesky = true};
}

/* ---- update rules ---- */

typedef struct opt_state {
    const cs_finetune_opts *o;
    int64_t P, t;
    double *m, *v; /* momentum / first moment, second moment */
} opt_state;

/* theta[i0, i1) -= lr * (update from the direction g); t counts steps from 1. */
typedef void (*opt_step_fn)(opt_state *s, const double *g, double *theta, double lr, int64_t i0, int64_t i1);

static void sgd_step(opt_state *s, const double *g, double *theta, double lr, int64_t i0, int64_t i1)
{
    const cs_finetune_opts *o = s->o;
    for (int64_t i = i0; i < i1; i++) {
        /* PyTorch's SGD: buf = mu buf + g; step = g + mu buf (Nesterov) or buf */
        s->m[i] = o->momentum * s->m[i] + g[i];
        double d = o->nesterov ? g[i] + o->momentum * s->m[i] : s->m[i];
        theta[i] -= lr * (d + o->weight_decay * theta[i]);
    }
}

static void adamw_step(opt_state *s, const double *g, double *theta, double lr, int64_t i0, int64_t i1)
{
    const cs_finetune_opts *o = s->o;
    double c1 = 1 - pow(o->beta1, (double)s->t), c2 = 1 - pow(o->beta2, (double)s->t);
    for (int64_t i = i0; i < i1; i++) {
        s->m[i] = o->beta1 * s->m[i] + (1 - o->beta1) * g[i];
        s->v[i] = o->beta2 * s->v[i] + (1 - o->beta2) * g[i] * g[i];
        double mh = s->m[i] / c1, vh = s->v[i] / c2;
        theta[i] -= lr * (mh / (sqrt(vh) + o->eps) + o->weight_decay * theta[i]);
    }
}


/* ---- parameters as one float64 vector ---- */

static void read_params(const cs_graph *g, double *theta)
{
    for (int q = 0; q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        cs_convert(theta + g->params[q].offset, CS_DT_DOUBLE, t->data, t->dtype, cs_tensor_numel(t));
    }
}

static void write_params(cs_graph *g, const double *theta)
{
    for (int q = 0; q < g->n_params; q++) {
        cs_tensor *t = &g->values[g->params[q].value].init;
        cs_convert(t->data, t->dtype, theta + g->params[q].offset, CS_DT_DOUBLE, cs_tensor_numel(t));
    }
}

/* Data parallelism (doc/design.md §2.12): every rank holds the whole
 * training set and the same weights, and step k's mini-batch, samples
 * [k B, k B + b_k) of the shuffled order, is split across the ranks, each
 * taking its contiguous slice (cs_dist_slice) of it.  A rank's own copy
 * holds its slices of every batch one after the other: batch k's slice
 * starts at k * (its slice of a full batch).  One rank: the whole
 * shuffled set. */
typedef struct rank_part {
    int64_t B, N;        /* global batch and sample count */
    int64_t full_part;   /* this rank's samples of a full batch */
    int64_t n_local;     /* this rank's samples in all */
} rank_part;

static rank_part rank_part_of(int64_t N, int64_t B)
{
    rank_part r = {.B = B, .N = N};
    int64_t lo, hi, lo2, hi2;
    cs_dist_slice(B, cs_dist_rank(), cs_dist_size(), &lo, &hi);
    cs_dist_slice(N % B, cs_dist_rank(), cs_dist_size(), &lo2, &hi2);
    r.full_part = hi - lo;
    r.n_local = N / B * r.full_part + (hi2 - lo2);
    return r;
}

/* Batch k's samples in the global order and this rank's slice of them:
 * global [*g0, *g0 + *bg), its slice global *g0 + *lo.., locally at
 * *local, *part samples. */
static void rank_batch(const rank_part *r, int64_t k, int64_t *g0, int64_t *bg, int64_t *lo, int64_t *local,
                       int64_t *part)
{
    *g0 = k * r->B;
    *bg = r->N - *g0 < r->B ? r->N - *g0 : r->B;
    int64_t hi;
    cs_dist_slice(*bg, cs_dist_rank(), cs_dist_size(), lo, &hi);
    *local = k * r->full_part;
    *part = hi - *lo;
}

/* This rank's copy (above): local sample i is the source's sample
 * perm[global index of i]. */
static void shuffle_into(const cs_dataset *src, const int64_t *perm, const rank_part *r, cs_dataset *dst)
{
    size_t xs = cs_tensor_bytes(&src->x) / (size_t)src->n, ys = cs_tensor_bytes(&src->y) / (size_t)src->n;
    for (int64_t k = 0; k * r->B < r->N; k++) {
        int64_t g0, bg, lo, local, part;
        rank_batch(r, k, &g0, &bg, &lo, &local, &part);
        for (int64_t i = 0; i < part; i++) {
            int64_t from = perm[g0 + lo + i], to = local + i;
            memcpy((char *)dst->x.data + (size_t)to * xs, (const char *)src->x.data + (size_t)from * xs, xs);
            memcpy((char *)dst->y.data + (size_t)to * ys, (const char *)src->y.data + (size_t)from * ys, ys);
        }
    }
}

/* frozen[l] for the layers named in the comma-separated list. */
static cs_status parse_freeze(const cs_graph *g, const char *list, bool *frozen, int *n_frozen, cs_err *err)
{
    *n_frozen = 0;
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int found = -1;
        for (int l = 0; l < g->n_layers && found < 0; l++)
            if (strlen(g->layers[l].name) == len && strncmp(g->layers[l].name, p, len) == 0)
                found = l;
        if (found < 0)
            return cs_fail(err, CS_ERR_USAGE, "--freeze: no layer named '%.*s' (curvscope info lists the layers)",
                           (int)len, p);
        if (!frozen[found])
            (*n_frozen)++;
        frozen[found] = true;
        p = e ? e + 1 : p + len;
    }
    return CS_OK;
}

/* --bn-train: fold the batch statistics of every BatchNormalization input
 * (in the plan that ran the step's forward) into its running statistics. */
static cs_status bn_update_running(cs_graph *g, const cs_plan *p, cs_err *err)
{
    for (int k = 0; k < g->n_nodes; k++) {
        const cs_node *n = &g->nodes[k];
        if (strcmp(n->op_type, "BatchNormalization") != 0)
            continue;
        if (n->n_inputs < 5 || g->values[n->inputs[3]].kind != CS_VALUE_INITIALIZER ||
            g->values[n->inputs[4]].kind != CS_VALUE_INITIALIZER)
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "--bn-train: node '%s' has running statistics that are not initializers", n->name);
        const cs_tensor *X = &p->vals[n->inputs[0]];
        cs_tensor *mean = &g->values[n->inputs[3]].init, *var = &g->values[n->inputs[4]].init;
        int64_t C = X->ndim >= 2 ? X->dims[1] : 1, Nb = X->dims[0], S = cs_tensor_numel(X) / (Nb * (C ? C : 1));
        if (cs_tensor_numel(mean) != C || cs_tensor_numel(var) != C)
            return cs_fail(err, CS_ERR_SHAPE, "--bn-train: node '%s' has %lld channels but %lld running means",
                           n->name, (long long)C, (long long)cs_tensor_numel(mean));
        double momentum = cs_node_attr_float(n, "momentum", 0.9f), cnt = (double)(Nb * S);
        for (int64_t c = 0; c < C; c++) {
            double sum = 0, sq = 0;
            for (int64_t b = 0; b < Nb; b++)
                for (int64_t i = 0; i < S; i++) {
                    int64_t at = (b * C + c) * S + i;
                    double x = X->dtype == CS_DT_DOUBLE ? ((const double *)X->data)[at] : ((const float *)X->data)[at];
                    sum += x;
                    sq += x * x;
                }
            double mu = sum / cnt, v = cnt > 1 ? (sq - cnt * mu * mu) / (cnt - 1) : 0;
            if (v < 0)
                v = 0;
            double rm, rv;
            cs_convert(&rm, CS_DT_DOUBLE, (const char *)mean->data + c * cs_dtype_size(mean->dtype), mean->dtype, 1);
            cs_convert(&rv, CS_DT_DOUBLE, (const char *)var->data + c * cs_dtype_size(var->dtype), var->dtype, 1);
            rm = momentum * rm + (1 - momentum) * mu;
            rv = momentum * rv + (1 - momentum) * v;
            cs_convert((char *)mean->data + c * cs_dtype_size(mean->dtype), mean->dtype, &rm, CS_DT_DOUBLE, 1);
            cs_convert((char *)var->data + c * cs_dtype_size(var->dtype), var->dtype, &rv, CS_DT_DOUBLE, 1);
        }
    }
    return CS_OK;
}

/* KL clipping (finetune.h): d *= min(1, sqrt(kappa / (lr^2 |d^T g|))) over
 * the trained layers. */
static void kl_clip(const cs_graph *g, const bool *frozen, const double *grad, double *dir, double lr,
                    double kappa)
{
    double dg = 0;
    for (int l = 0; l < g->n_layers; l++) {
        if (frozen[l])
            continue;
        int64_t off = g->params[g->layers[l].first_param].offset;
        for (int64_t i = 0; i < g->layers[l].numel; i++)
            dg += dir[off + i] * grad[off + i];
    }
    double q = lr * lr * fabs(dg);
    if (q > kappa) {
        double nu = sqrt(kappa / q);
        for (int64_t i = 0; i < g->n_param_scalars; i++)
            dir[i] *= nu;
    }
}

/* Samples [start, start + B) of ds as a dataset that borrows its arrays. */
static cs_dataset batch_view(const cs_dataset *ds, int64_t start, int64_t B)
{
    cs_dataset v = *ds;
    size_t xs = cs_tensor_bytes(&ds->x) / (size_t)ds->n, ys = cs_tensor_bytes(&ds->y) / (size_t)ds->n;
    v.sliced = false;
    v.first = 0;
    v.n_total = B;
    v.n = B;
    v.x.dims[0] = B;
    v.x.data = (char *)ds->x.data + (size_t)start * xs;
    v.x.owns_data = false;
    if (ds->y.ndim > 0) {
        v.y.dims[0] = B;
        v.y.data = (char *)ds->y.data + (size_t)start * ys;
        v.y.owns_data = false;
    }
    return v;
}

cs_status cs_finetune(cs_graph *g, const cs_dataset *train, const cs_finetune_opts *o,
                      cs_finetune_result *res, cs_err *err)
{
    memset(res, 0, sizeof *res);
    res->val_loss = res->val_accuracy = res->old_loss = res->old_accuracy = NAN;
    const cs_precond_def *def = cs_precond_find(o->precond);
    if (!def)
        return cs_fail(err, CS_ERR_USAGE, "unknown preconditioner '%s' for finetune (%s)", o->precond,
                       cs_precond_names());
    if (o->epochs < 1 || o->batch < 1 || !(o->lr > 0))
        return cs_fail(err, CS_ERR_USAGE, "finetune needs epochs >= 1, batch >= 1 and lr > 0");
    if (o->update_interval < 1 || !(o->ema >= 0 && o->ema < 1) || !(o->damping >= 0))
        return cs_fail(err, CS_ERR_USAGE, "finetune needs --update-interval >= 1, 0 <= --ema < 1 and --damping >= 0");
    if (!train->has_labels)
        return cs_fail(err, CS_ERR_USAGE, "finetune needs labels");
    int64_t P = g->n_param_scalars, N = train->n;
    if (P == 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "the model has no trainable parameters");
    bool adam = def->adam;
    opt_step_fn update = adam ? adamw_step : sgd_step;
    const int ranks = cs_dist_size();
    if (ranks > 1 && o->bn_train)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "--bn-train needs the whole batch in one process: "
                                                "run it without mpirun");
    /* Every rank needs a part of every batch (the last one included). */
    if (ranks > 1 && (o->batch < ranks || (N % o->batch != 0 && N % o->batch < ranks)))
        return cs_fail(err, CS_ERR_USAGE, "with %d ranks every batch needs at least %d samples: --batch %lld "
                       "over %lld samples leaves a last batch of %lld", ranks, ranks, (long long)o->batch,
                       (long long)N, (long long)(N % o->batch));
    const int64_t B_step = o->batch < N ? o->batch : N;
    const rank_part rp = rank_part_of(N, B_step);

    /* The shuffled copy of the training set, allocated once. */
    cs_dataset sh = *train;
    memset(&sh.x, 0, sizeof sh.x);
    memset(&sh.y, 0, sizeof sh.y);
    sh.n = rp.n_local;
    cs_tensor_set_shape(&sh.x, train->x.dtype, train->x.ndim, train->x.dims);
    cs_tensor_set_shape(&sh.y, train->y.dtype, train->y.ndim, train->y.dims);
    sh.x.dims[0] = rp.n_local;
    if (sh.y.ndim > 0)
        sh.y.dims[0] = rp.n_local;
    opt_state os = {.o = o, .P = P};
    int L = g->n_layers;
    double *theta = malloc(sizeof(double) * (size_t)P + 1), *grad = malloc(sizeof(double) * (size_t)P + 1);
    double *dir = malloc(sizeof(double) * (size_t)P + 1);
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)N + 1);
    bool *frozen = calloc((size_t)L + 1, sizeof(bool)), *fallback = calloc((size_t)L + 1, sizeof(bool));
    bool *told = calloc((size_t)L + 1, sizeof(bool));
    const char **why = calloc((size_t)L + 1, sizeof(char *));
    os.m = calloc((size_t)P + 1, sizeof(double));
    os.v = adam ? calloc((size_t)P + 1, sizeof(double)) : NULL;
    cs_status st = CS_OK;
    if (!theta || !grad || !dir || !perm || !frozen || !fallback || !told || !why || !os.m || (adam && !os.v))
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for fine-tuning");
    if (!st)
        st = parse_freeze(g, o->freeze, frozen, &res->n_frozen, err);
    if (!st && res->n_frozen == L)
        st = cs_fail(err, CS_ERR_USAGE, "--freeze leaves no layer to train");
    if (!st)
        st = cs_tensor_alloc(&sh.x, err);
    if (!st)
        st = cs_tensor_alloc(&sh.y, err);
    cs_objective obj;
    memset(&obj, 0, sizeof obj);
    if (!st)
        /* --bn-train reads the batch's BatchNormalization inputs from the
         * batch's plan, so the batch stays whole */
        st = cs_objective_init(&obj, g, &sh, o->norm, o->loss, rp.full_part,
                               CS_AD_GRAD | (o->bn_train ? CS_OBJ_WHOLE_BATCH : 0), err);
    /* The preconditioner's options: finetune's, under the registry's names. */
    cs_precond_opts po = {.damping = o->damping, .ema = o->ema, .max_full = o->max_full,
                          .mc_samples = o->mc_samples, .batch = o->batch, .cholesky = o->cholesky,
                          .pi_damping = o->pi_damping, .graft = o->graft, .loss = o->loss, .norm = o->norm};
    cs_precond_ctx ctx = {.g = g, .o = &po, .curv = o->curvature >= 0 ? (cs_curv_kind)o->curvature : def->default_curv,
                  .frozen = frozen, .fallback = fallback, .why = why};
    void *pstate = NULL;
    if (!st && def->ops->create)
        st = def->ops->create(&ctx, &pstate, err);
    cs_rng rng;
    cs_rng_seed(&rng, o->seed);
    if (!st)
        read_params(g, theta);
    int64_t steps_per_epoch = (N + B_step - 1) / B_step;
    int64_t total = steps_per_epoch * o->epochs;
    double t_start = cs_now_seconds();
    cs_eval_opts eo = {.loss = o->loss, .batch = o->batch, .norm = o->norm};
    cs_eval_result r;
    if (!st && o->ewc && o->ewc->n != P)
        st = cs_fail(err, CS_ERR_SHAPE, "the EWC penalty has %lld parameters, the model %lld",
                     (long long)o->ewc->n, (long long)P);
    /* The old task before tuning: what forgetting is measured from. */
    if (!st && o->old && !(st = cs_evaluate(g, o->old, &eo, &r, err)) && o->on_eval)
        o->on_eval(o->ctx, 0, "old_start", r.loss, r.has_accuracy ? r.accuracy : NAN);
    for (int epoch = 0; epoch < o->epochs && !st; epoch++) {
        /* Fisher-Yates with the seeded generator: the same seed gives the
         * same order, hence the same run with one thread. */
        for (int64_t i = 0; i < N; i++)
            perm[i] = i;
        for (int64_t i = N - 1; i > 0; i--) {
            int64_t j = (int64_t)(cs_rng_u64(&rng) % (uint64_t)(i + 1));
            int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        shuffle_into(train, perm, &rp, &sh);
        for (int64_t k = 0; k < steps_per_epoch && !st; k++) {
            double t0 = cs_now_seconds(), loss;
            int64_t g0, B, lo, start, part;
            rank_batch(&rp, k, &g0, &B, &lo, &start, &part);
            /* The gradient of the batch's mean loss: this rank's share,
             * then the sum over the ranks (with the loss and the hits). */
            double sums[2] = {0, 0};
            int64_t hits = 0;
            st = cs_objective_range_gradient(&obj, start, start + part, 1.0 / (double)B, &sums[0], &hits, grad,
                                             err);
            sums[1] = (double)hits;
            if (ranks > 1) {
                st = cs_dist_sum_f64(st, grad, P, err);
                st = cs_dist_sum_f64(st, sums, 2, err);
            }
            if (st)
                break;
            loss = sums[0] / (double)B;
            hits = (int64_t)sums[1];
            /* EWC: the penalty at the same parameters as the batch loss */
            double penalty = o->ewc ? cs_ewc_penalty(o->ewc, theta, grad, 0, P) : NAN;
            if (o->bn_train && (st = bn_update_running(g, &obj.plan[B == obj.batch ? 0 : 1], err)))
                break;
            if (def->ops->observe)
                def->ops->observe(pstate, &ctx, grad);
            if (def->ops->refresh && (def->every_step || os.t % o->update_interval == 0)) {
                double tr = cs_now_seconds();
                cs_dataset view = batch_view(&sh, start, part);
                /* the preconditioner's statistics are summed over the
                 * ranks' parts of the batch (cs_curvature_compute) */
                view.sliced = ranks > 1;
                view.first = g0 + lo;
                view.n_total = B;
                /* A distinct, reproducible seed per refresh for sampled labels. */
                ctx.seed = o->seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(os.t + 1));
                if ((st = def->ops->refresh(pstate, &ctx, &view, err)))
                    break;
                ctx.refreshes = ++res->refreshes;
                res->refresh_seconds += cs_now_seconds() - tr;
                for (int l = 0; l < L; l++)
                    if (fallback[l] && !told[l] && !frozen[l] && o->on_note) {
                        char line[300];
                        snprintf(line, sizeof line, "layer %s (%s): steps along the gradient (sgd): %s",
                                 g->layers[l].name, g->layers[l].op_type, why[l] ? why[l] : "not supported");
                        o->on_note(o->ctx, line);
                        told[l] = true;
                    }
            }
            if ((st = def->ops->apply(pstate, &ctx, grad, dir, err)))
                break;
            os.t++;
            double lr = o->cosine ? o->lr * 0.5 * (1 + cos(M_PI * (double)(os.t - 1) / (double)total)) : o->lr;
            if (def->reads_curvature && o->kl_clip > 0)
                kl_clip(g, frozen, grad, dir, lr, o->kl_clip);
            for (int l = 0; l < L; l++) {
                if (frozen[l])
                    continue;
                int64_t off = g->params[g->layers[l].first_param].offset;
                update(&os, dir, theta, lr, off, off + g->layers[l].numel);
            }
            write_params(g, theta);
            res->steps = os.t;
            double dt = cs_now_seconds() - t0;
            if (o->on_step && (os.t % (o->log_every > 0 ? o->log_every : 1) == 0 || os.t == total))
                o->on_step(o->ctx, epoch, os.t, loss, train->int_labels ? (double)hits / (double)B : NAN, lr, dt,
                           dt > 0 ? (double)B / dt : 0);
            if (o->ewc && o->on_penalty && (os.t % (o->log_every > 0 ? o->log_every : 1) == 0 || os.t == total))
                o->on_penalty(o->ctx, epoch, os.t, penalty);
            if (o->cancel && *o->cancel)
                st = cs_fail(err, CS_ERR_RUNTIME, "interrupted at step %lld", (long long)os.t);
        }
        /* End of epoch: loss and accuracy over the whole sets. */
        if (!st && !(st = cs_evaluate(g, train, &eo, &r, err))) {
            res->train_loss = r.loss;
            res->train_accuracy = r.has_accuracy ? r.accuracy : NAN;
            if (o->on_eval)
                o->on_eval(o->ctx, epoch, "train", r.loss, res->train_accuracy);
        }
        if (!st && o->val && !(st = cs_evaluate(g, o->val, &eo, &r, err))) {
            res->val_loss = r.loss;
            res->val_accuracy = r.has_accuracy ? r.accuracy : NAN;
            if (o->on_eval)
                o->on_eval(o->ctx, epoch, "val", r.loss, res->val_accuracy);
        }
        if (!st && o->old && !(st = cs_evaluate(g, o->old, &eo, &r, err))) {
            res->old_loss = r.loss;
            res->old_accuracy = r.has_accuracy ? r.accuracy : NAN;
            if (o->on_eval)
                o->on_eval(o->ctx, epoch, "old", r.loss, res->old_accuracy);
        }
    }
    res->seconds = cs_now_seconds() - t_start;
    if (def->ops->destroy)
        def->ops->destroy(pstate);
    cs_objective_free(&obj);
    cs_tensor_free(&sh.x);
    cs_tensor_free(&sh.y);
    free(theta), free(grad), free(dir), free(perm), free(os.m), free(os.v);
    free(frozen), free(fallback), free(told), free(why);
    return st;
}

cs_status cs_finetune_plan(const cs_graph *g, const cs_dataset *train, const cs_finetune_opts *o, cs_mem_plan *plan,
                           cs_err *err)
{
    const cs_precond_def *def = cs_precond_find(o->precond);
    if (!def)
        return cs_fail(err, CS_ERR_USAGE, "unknown preconditioner '%s' for finetune (%s)", o->precond,
                       cs_precond_names());
    if (o->epochs < 1 || o->batch < 1 || o->update_interval < 1)
        return cs_fail(err, CS_ERR_USAGE, "finetune needs epochs >= 1, batch >= 1 and --update-interval >= 1");
    int64_t P = g->n_param_scalars, N = train->n, B = o->batch < N ? o->batch : N;
    const rank_part rp = rank_part_of(N, B);
    int64_t vectors = 4 + (def->adam ? 1 : 0); /* theta, grad, dir, momentum (m), adam's v */
    int saved = plan->phase;
    plan->phase = 0;
    cs_status st = cs_mem_plan_add(plan, CS_MEM_DATA, "", cs_mem_dataset_bytes(train) / (N ? N : 1) * rp.n_local,
                                   err, "the shuffled copy of the training data");
    if (!st)
        st = cs_mem_plan_add(plan, CS_MEM_RESULTS, "", (int64_t)sizeof(double) * vectors * P, err,
                             "the optimiser's %lld vectors of %lld parameters", (long long)vectors, (long long)P);
    cs_objective obj;
    if (!st && !(st = cs_objective_init(&obj, g, train, o->norm, o->loss, rp.full_part,
                                        CS_AD_GRAD | (o->bn_train ? CS_OBJ_WHOLE_BATCH : 0), err))) {
        st = cs_mem_plan_add(plan, CS_MEM_INTERP, "", cs_objective_bytes(&obj), err,
                             "the steps' plans and derivative buffers for batches of %lld", (long long)rp.full_part);
        cs_objective_free(&obj);
    }
    cs_precond_opts po = {.damping = o->damping, .ema = o->ema, .max_full = o->max_full,
                          .mc_samples = o->mc_samples, .batch = o->batch, .cholesky = o->cholesky,
                          .pi_damping = o->pi_damping, .graft = o->graft, .loss = o->loss, .norm = o->norm};
    cs_curv_kind curv = o->curvature >= 0 ? (cs_curv_kind)o->curvature : def->default_curv;
    cs_precond_ctx ctx = {.g = g, .o = &po, .curv = curv};
    if (!st)
        st = cs_precond_plan(def, &ctx, B, plan, err);
    int64_t steps = (N + B - 1) / B * o->epochs;
    int64_t refreshes = !def->ops->refresh ? 0 : def->every_step ? steps : (steps + o->update_interval - 1) / o->update_interval;
    plan->phase = 1;
    if (!st && def->reads_curvature && refreshes) {
        /* a refresh runs the engine as pc_curvature does, on one batch */
        cs_dataset view = batch_view(train, 0, B);
        cs_curv_opts co;
        cs_curv_opts_init(&co);
        co.curvatures = 1u << curv;
        co.reprs = def->reprs;
        co.max_full = o->max_full;
        co.mc_samples = o->mc_samples;
        co.batch = B;
        co.loss = o->loss;
        co.norm = o->norm;
        co.keep_matrices = co.stats_only = true;
        /* its passes are over one batch, counted as the refreshes below */
        int n_passes = plan->n_passes;
        int64_t total = plan->total_passes;
        st = cs_curvature_plan(g, &view, &co, plan, err);
        plan->n_passes = n_passes;
        plan->total_passes = total;
    }
    plan->phase = saved;
    if (!st)
        st = cs_mem_plan_add_passes(plan, o->epochs, err, "training: %lld steps of %lld samples", (long long)steps,
                                    (long long)B);
    if (!st && refreshes)
        st = cs_mem_plan_add_passes(plan, (refreshes * B + N - 1) / N, err,
                                    "%s refreshes: %lld, each on one batch", def->name, (long long)refreshes);
    if (!st && o->val)
        st = cs_mem_plan_add_passes(plan, o->epochs, err, "validation: one evaluation per epoch");
    return st;
}
