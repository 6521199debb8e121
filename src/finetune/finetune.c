#include "finetune/finetune.h"
#include "base/clock.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "interp/evaluate.h"
#include "interp/objective.h"

void cs_finetune_opts_init(cs_finetune_opts *o)
{
    memset(o, 0, sizeof *o);
    o->precond = "sgd";
    o->epochs = 1;
    o->batch = 128;
    o->lr = 0.01;
    o->momentum = 0.9;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->log_every = 10;
}

/* ---- optimisers: one table ---- */

typedef struct opt_state {
    const cs_finetune_opts *o;
    int64_t P, t;
    double *m, *v; /* momentum / first moment, second moment */
} opt_state;

/* theta -= lr * (update from g); t counts steps from 1. */
typedef void (*opt_step_fn)(opt_state *s, const double *g, double *theta, double lr);

static void sgd_step(opt_state *s, const double *g, double *theta, double lr)
{
    const cs_finetune_opts *o = s->o;
    for (int64_t i = 0; i < s->P; i++) {
        /* PyTorch's SGD: buf = mu buf + g; step = g + mu buf (Nesterov) or buf */
        s->m[i] = o->momentum * s->m[i] + g[i];
        double d = o->nesterov ? g[i] + o->momentum * s->m[i] : s->m[i];
        theta[i] -= lr * (d + o->weight_decay * theta[i]);
    }
}

static void adamw_step(opt_state *s, const double *g, double *theta, double lr)
{
    const cs_finetune_opts *o = s->o;
    double c1 = 1 - pow(o->beta1, (double)s->t), c2 = 1 - pow(o->beta2, (double)s->t);
    for (int64_t i = 0; i < s->P; i++) {
        s->m[i] = o->beta1 * s->m[i] + (1 - o->beta1) * g[i];
        s->v[i] = o->beta2 * s->v[i] + (1 - o->beta2) * g[i] * g[i];
        double mh = s->m[i] / c1, vh = s->v[i] / c2;
        theta[i] -= lr * (mh / (sqrt(vh) + o->eps) + o->weight_decay * theta[i]);
    }
}

static const struct {
    const char *name;
    opt_step_fn step;
    bool second_moment;
} optimisers[] = {
    {"sgd", sgd_step, false},
    {"adamw", adamw_step, true},
};

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

/* The shuffled copy's sample i is the source's sample perm[i]. */
static void shuffle_into(const cs_dataset *src, const int64_t *perm, cs_dataset *dst)
{
    size_t xs = cs_tensor_bytes(&src->x) / (size_t)src->n, ys = cs_tensor_bytes(&src->y) / (size_t)src->n;
    for (int64_t i = 0; i < src->n; i++) {
        memcpy((char *)dst->x.data + (size_t)i * xs, (const char *)src->x.data + (size_t)perm[i] * xs, xs);
        memcpy((char *)dst->y.data + (size_t)i * ys, (const char *)src->y.data + (size_t)perm[i] * ys, ys);
    }
}

cs_status cs_finetune(cs_graph *g, const cs_dataset *train, const cs_finetune_opts *o,
                      cs_finetune_result *res, cs_err *err)
{
    memset(res, 0, sizeof *res);
    res->val_loss = res->val_accuracy = NAN;
    int which = -1;
    for (size_t k = 0; k < sizeof optimisers / sizeof optimisers[0]; k++)
        if (strcmp(optimisers[k].name, o->precond) == 0)
            which = (int)k;
    if (which < 0)
        return cs_fail(err, CS_ERR_USAGE, "unknown preconditioner '%s' for finetune (sgd, adamw)", o->precond);
    if (o->epochs < 1 || o->batch < 1 || !(o->lr > 0))
        return cs_fail(err, CS_ERR_USAGE, "finetune needs epochs >= 1, batch >= 1 and lr > 0");
    if (!train->has_labels)
        return cs_fail(err, CS_ERR_USAGE, "finetune needs labels");
    int64_t P = g->n_param_scalars, N = train->n;
    if (P == 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "the model has no trainable parameters");

    /* The shuffled copy of the training set, allocated once. */
    cs_dataset sh = *train;
    memset(&sh.x, 0, sizeof sh.x);
    memset(&sh.y, 0, sizeof sh.y);
    cs_tensor_set_shape(&sh.x, train->x.dtype, train->x.ndim, train->x.dims);
    cs_tensor_set_shape(&sh.y, train->y.dtype, train->y.ndim, train->y.dims);
    opt_state os = {.o = o, .P = P};
    double *theta = malloc(sizeof(double) * (size_t)P + 1), *grad = malloc(sizeof(double) * (size_t)P + 1);
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)N + 1);
    os.m = calloc((size_t)P + 1, sizeof(double));
    os.v = optimisers[which].second_moment ? calloc((size_t)P + 1, sizeof(double)) : NULL;
    cs_status st = CS_OK;
    if (!theta || !grad || !perm || !os.m || (optimisers[which].second_moment && !os.v))
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory for fine-tuning");
    if (!st)
        st = cs_tensor_alloc(&sh.x, err);
    if (!st)
        st = cs_tensor_alloc(&sh.y, err);
    cs_objective obj;
    memset(&obj, 0, sizeof obj);
    if (!st)
        st = cs_objective_init(&obj, g, &sh, o->norm, o->loss, o->batch, CS_AD_GRAD, err);
    cs_rng rng;
    cs_rng_seed(&rng, o->seed);
    if (!st)
        read_params(g, theta);
    int64_t steps_per_epoch = (N + obj.batch - 1) / (obj.batch ? obj.batch : 1);
    int64_t total = steps_per_epoch * o->epochs;
    double t_start = cs_now_seconds();
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
        shuffle_into(train, perm, &sh);
        for (int64_t start = 0; start < N && !st; start += obj.batch) {
            double t0 = cs_now_seconds(), loss;
            int64_t hits, B = start + obj.batch <= N ? obj.batch : N - start;
            if ((st = cs_objective_batch_gradient(&obj, start, &loss, &hits, grad, err)))
                break;
            os.t++;
            double lr = o->cosine ? o->lr * 0.5 * (1 + cos(M_PI * (double)(os.t - 1) / (double)total)) : o->lr;
            optimisers[which].step(&os, grad, theta, lr);
            write_params(g, theta);
            res->steps = os.t;
            double dt = cs_now_seconds() - t0;
            if (o->on_step && (os.t % (o->log_every > 0 ? o->log_every : 1) == 0 || os.t == total))
                o->on_step(o->ctx, epoch, os.t, loss, train->int_labels ? (double)hits / (double)B : NAN, lr, dt,
                           dt > 0 ? (double)B / dt : 0);
            if (o->cancel && *o->cancel)
                st = cs_fail(err, CS_ERR_RUNTIME, "interrupted at step %lld", (long long)os.t);
        }
        /* End of epoch: loss and accuracy over the whole sets. */
        cs_eval_opts eo = {.loss = o->loss, .batch = o->batch, .norm = o->norm};
        cs_eval_result r;
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
    }
    res->seconds = cs_now_seconds() - t_start;
    cs_objective_free(&obj);
    cs_tensor_free(&sh.x);
    cs_tensor_free(&sh.y);
    free(theta), free(grad), free(perm), free(os.m), free(os.v);
    return st;
}
