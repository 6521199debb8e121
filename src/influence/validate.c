/* Leave-one-out and linear-datamodeling validation of influence scores
 * (validate.h; doc/design.md §2.14): the same full-batch tuning from the
 * model's weights on the whole training set, on it without one example,
 * and on random subsets, and the query losses after each. */
#include "influence/validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "finetune/finetune.h"
#include "objective/objective.h"

void cs_validate_opts_init(cs_validate_opts *o)
{
    memset(o, 0, sizeof *o);
    o->lds_fraction = 0.5;
    o->epochs = 100;
    o->lr = 0.1;
    o->loss = CS_LOSS_CE;
}

void cs_validate_result_free(cs_validate_result *r)
{
    free(r->loo_index), free(r->full_loss), free(r->loo_actual), free(r->lds_actual);
    for (int k = 0; k < r->n_methods; k++)
        free(r->methods[k].loo_predicted), free(r->methods[k].lds_predicted);
    memset(r, 0, sizeof *r);
}

/* ---- the model's parameters, kept to start every tuning from them ---- */

typedef struct weights {
    int n;
    void **bytes;
} weights;

static void weights_free(weights *w)
{
    for (int q = 0; w->bytes && q < w->n; q++)
        free(w->bytes[q]);
    free(w->bytes);
    memset(w, 0, sizeof *w);
}

static cs_status weights_save(const cs_graph *g, weights *w, cs_err *err)
{
    memset(w, 0, sizeof *w);
    if (!(w->bytes = calloc((size_t)g->n_params + 1, sizeof(void *))))
        return cs_fail(err, CS_ERR_NOMEM, "out of memory keeping the model's weights");
    w->n = g->n_params;
    for (int q = 0; q < g->n_params; q++) {
        const cs_tensor *t = &g->values[g->params[q].value].init;
        size_t n = cs_tensor_bytes(t);
        if (!(w->bytes[q] = malloc(n + 1))) {
            weights_free(w);
            return cs_fail(err, CS_ERR_NOMEM, "out of memory keeping the model's weights");
        }
        memcpy(w->bytes[q], t->data, n);
    }
    return CS_OK;
}

static void weights_restore(cs_graph *g, const weights *w)
{
    for (int q = 0; q < w->n; q++) {
        cs_tensor *t = &g->values[g->params[q].value].init;
        memcpy(t->data, w->bytes[q], cs_tensor_bytes(t));
    }
}

/* The samples idx[0..n) of src, in that order, as an owned dataset. */
static cs_status dataset_rows(const cs_dataset *src, const int64_t *idx, int64_t n, cs_dataset *dst, cs_err *err)
{
    *dst = *src;
    memset(&dst->x, 0, sizeof dst->x);
    memset(&dst->y, 0, sizeof dst->y);
    dst->n = dst->n_total = n;
    dst->first = 0;
    dst->sliced = false;
    cs_tensor_set_shape(&dst->x, src->x.dtype, src->x.ndim, src->x.dims);
    cs_tensor_set_shape(&dst->y, src->y.dtype, src->y.ndim, src->y.dims);
    dst->x.dims[0] = n;
    dst->y.dims[0] = n;
    cs_status st = cs_tensor_alloc(&dst->x, err);
    if (!st)
        st = cs_tensor_alloc(&dst->y, err);
    if (st) {
        cs_dataset_free(dst);
        return st;
    }
    size_t xs = cs_tensor_bytes(&src->x) / (size_t)src->n, ys = cs_tensor_bytes(&src->y) / (size_t)src->n;
    for (int64_t i = 0; i < n; i++) {
        memcpy((char *)dst->x.data + (size_t)i * xs, (const char *)src->x.data + (size_t)idx[i] * xs, xs);
        memcpy((char *)dst->y.data + (size_t)i * ys, (const char *)src->y.data + (size_t)idx[i] * ys, ys);
    }
    return CS_OK;
}

/* k distinct indices of [0, n), ascending: the first k of a seeded partial
 * Fisher-Yates shuffle (perm has n entries, idx k), sorted. */
static int by_index(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void draw(cs_rng *rng, int64_t n, int64_t k, int64_t *perm, int64_t *idx)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = 0; i < k; i++) {
        int64_t j = i + (int64_t)(cs_rng_u64(rng) % (uint64_t)(n - i));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    memcpy(idx, perm, sizeof(int64_t) * (size_t)k);
    qsort(idx, (size_t)k, sizeof(int64_t), by_index);
}

/* Everything one validation holds besides its result. */
typedef struct job {
    cs_graph *g;
    const cs_validate_opts *o;
    weights w;
    cs_objective qobj;   /* batch 1 over the queries */
    int64_t Q;
} job;

/* From the saved weights, the tuning of validate.h on ds; then each
 * query's loss into loss [Q]. */
static cs_status tune_and_measure(job *j, const cs_dataset *ds, double *loss, cs_err *err)
{
    const cs_validate_opts *o = j->o;
    weights_restore(j->g, &j->w);
    cs_finetune_opts fo;
    cs_finetune_opts_init(&fo);
    fo.precond = "sgd";
    fo.momentum = 0;
    fo.epochs = o->epochs;
    fo.batch = ds->n;
    fo.lr = o->lr;
    fo.weight_decay = o->weight_decay;
    fo.seed = o->seed;
    fo.loss = o->loss;
    fo.norm = o->norm;
    fo.cancel = o->cancel;
    cs_finetune_result fr;
    cs_status st = cs_finetune(j->g, ds, &fo, &fr, err);
    for (int64_t q = 0; q < j->Q && !st; q++) {
        int64_t hits;
        st = cs_objective_loss(&j->qobj, q, q + 1, &loss[q], &hits, err);
        if (!st && !isfinite(loss[q]))
            st = cs_fail(err, CS_ERR_RUNTIME, "query %lld's loss is not finite after retraining on %lld examples "
                         "(lower --validate-lr)", (long long)q, (long long)ds->n);
    }
    return st;
}

/* Mean over the Q columns of x and y [S][Q] of Pearson's and Spearman's
 * correlation along the S rows; *defined counts the columns where both
 * are defined (the means are over those, NaN when none). */
static cs_status per_query_means(const double *x, const double *y, int64_t S, int64_t Q, double *pearson,
                                 double *spearman, int64_t *defined, cs_err *err)
{
    double *col = malloc(sizeof(double) * (size_t)(2 * S + 1));
    if (!col)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the LDS correlations");
    double sp = 0, ss = 0;
    int64_t n = 0;
    cs_status st = CS_OK;
    for (int64_t q = 0; q < Q && !st; q++) {
        for (int64_t s = 0; s < S; s++)
            col[s] = x[s * Q + q], col[S + s] = y[s * Q + q];
        double p = cs_pearson(col, col + S, S), rho = NAN;
        if ((st = cs_spearman(col, col + S, S, &rho, err)))
            break;
        if (isfinite(p) && isfinite(rho))
            sp += p, ss += rho, n++;
    }
    free(col);
    *pearson = n ? sp / (double)n : NAN;
    *spearman = n ? ss / (double)n : NAN;
    *defined = n;
    return st;
}

static cs_status check_opts(const cs_dataset *train, const cs_influence_result *r, const cs_validate_opts *o,
                            int64_t *subset, cs_err *err)
{
    int64_t N = train->n;
    if (o->loo < 0 || o->lds < 0 || (!o->loo && !o->lds))
        return cs_fail(err, CS_ERR_USAGE, "validation needs --validate K > 0 or --lds S > 0");
    if (o->loo > N || (o->loo && N < 2))
        return cs_fail(err, CS_ERR_USAGE, "--validate %lld: needs 1 <= K <= the %lld training examples, and at least 2",
                       (long long)o->loo, (long long)N);
    if (o->epochs < 1 || !(o->lr > 0) || !isfinite(o->lr) || !(o->weight_decay >= 0))
        return cs_fail(err, CS_ERR_USAGE, "validation needs --validate-epochs >= 1, --validate-lr > 0 and "
                                          "--validate-wd >= 0");
    *subset = (int64_t)llround(o->lds_fraction * (double)N);
    if (o->lds && (!(o->lds_fraction > 0 && o->lds_fraction < 1) || *subset < 1 || *subset > N - 1))
        return cs_fail(err, CS_ERR_USAGE, "--lds-fraction %g of %lld training examples: needs a subset of 1 to "
                       "%lld examples (0 < fraction < 1)", o->lds_fraction, (long long)N, (long long)(N - 1));
    if (o->lds == 1)
        return cs_fail(err, CS_ERR_USAGE, "--lds needs at least 2 subsets to rank (got 1)");
    if (r->n_train != N)
        return cs_fail(err, CS_ERR_USAGE, "the scores are of %lld training examples, the data has %lld",
                       (long long)r->n_train, (long long)N);
    if (!r->ekfac && !r->dot && !r->cosine && !r->tracin)
        return cs_fail(err, CS_ERR_USAGE, "validation needs scores of at least one method");
    return CS_OK;
}

/* A method's score matrix [Q][N] by name. */
static const double *scores_of(const cs_influence_result *r, const char *name)
{
    return strcmp(name, "ekfac") == 0 ? r->ekfac
           : strcmp(name, "dot") == 0 ? r->dot
           : strcmp(name, "tracin") == 0 ? r->tracin
                                        : r->cosine;
}

static cs_status alloc_zero(void *p, size_t n, size_t size, cs_err *err)
{
    if (!(*(void **)p = calloc(n + 1, size)))
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the influence validation (%zu values)", n);
    return CS_OK;
}

cs_status cs_influence_validate(cs_graph *g, const cs_dataset *train, const cs_dataset *query,
                                const cs_influence_result *r, const cs_validate_opts *o, cs_validate_result *res,
                                cs_err *err)
{
    memset(res, 0, sizeof *res);
    int64_t subset = 0;
    cs_status st = check_opts(train, r, o, &subset, err);
    if (st)
        return st;
    int64_t N = train->n, Q = query->n, K = o->loo, S = o->lds;
    if (r->n_query != Q)
        return cs_fail(err, CS_ERR_USAGE, "the scores are of %lld queries, the query data has %lld",
                       (long long)r->n_query, (long long)Q);
    res->n_train = N, res->n_query = Q, res->n_loo = K, res->n_lds = S, res->subset_size = S ? subset : 0;
    const char *names[] = {"ekfac", "dot", "cosine", "tracin"};
    for (int k = 0; k < 4; k++)
        if (scores_of(r, names[k]))
            res->methods[res->n_methods++] = (cs_validate_method){
                .name = names[k], .loo_pearson = NAN, .loo_spearman = NAN, .lds_pearson = NAN, .lds = NAN};

    job j = {.g = g, .o = o, .Q = Q};
    int64_t *perm = NULL, *idx = NULL, *kept = NULL;
    double *loss = NULL;
    bool saved = false, qobj = false;
    if (!(st = alloc_zero(&perm, (size_t)N, sizeof(int64_t), err)) &&
        !(st = alloc_zero(&idx, (size_t)N, sizeof(int64_t), err)) &&
        !(st = alloc_zero(&kept, (size_t)N, sizeof(int64_t), err)) &&
        !(st = alloc_zero(&loss, (size_t)Q, sizeof(double), err)) &&
        !(st = alloc_zero(&res->full_loss, (size_t)Q, sizeof(double), err)) &&
        !(st = alloc_zero(&res->loo_index, (size_t)K, sizeof(int64_t), err)) &&
        !(st = alloc_zero(&res->loo_actual, (size_t)(K * Q), sizeof(double), err)))
        st = alloc_zero(&res->lds_actual, (size_t)(S * Q), sizeof(double), err);
    for (int k = 0; k < res->n_methods && !st; k++)
        if (!(st = alloc_zero(&res->methods[k].loo_predicted, (size_t)(K * Q), sizeof(double), err)))
            st = alloc_zero(&res->methods[k].lds_predicted, (size_t)(S * Q), sizeof(double), err);
    if (!st && !(st = weights_save(g, &j.w, err)))
        saved = true;
    if (!st && !(st = cs_objective_init(&j.qobj, g, query, o->norm, o->loss, 1, 0, err)))
        qobj = true;

    /* The reference: the tuning on every example. */
    if (!st)
        st = tune_and_measure(&j, train, res->full_loss, err);

    /* The draws have their own generator, apart from the tuning's shuffle. */
    cs_rng rng;
    cs_rng_seed(&rng, o->seed ^ 0x5DEECE66Dull);
    if (!st && K) {
        draw(&rng, N, K, perm, res->loo_index);
        for (int64_t a = 0; a < K && !st; a++) {
            int64_t m = res->loo_index[a], n = 0;
            for (int64_t i = 0; i < N; i++)
                if (i != m)
                    kept[n++] = i;
            cs_dataset without;
            if ((st = dataset_rows(train, kept, n, &without, err)))
                break;
            st = tune_and_measure(&j, &without, loss, err);
            cs_dataset_free(&without);
            for (int64_t q = 0; q < Q && !st; q++)
                res->loo_actual[a * Q + q] = loss[q] - res->full_loss[q];
        }
    }
    /* Predictions, per method, from its scores [Q][N]. */
    for (int k = 0; k < res->n_methods && !st; k++) {
        cs_validate_method *v = &res->methods[k];
        const double *s = scores_of(r, v->name);
        for (int64_t a = 0; a < K; a++)
            for (int64_t q = 0; q < Q; q++)
                v->loo_predicted[a * Q + q] = s[q * N + res->loo_index[a]] / (double)N;
        if (K * Q >= 2) {
            v->loo_pearson = cs_pearson(v->loo_predicted, res->loo_actual, K * Q);
            st = cs_spearman(v->loo_predicted, res->loo_actual, K * Q, &v->loo_spearman, err);
        }
    }

    /* LDS: each subset tuned alone; its prediction sums the scores of the
     * examples it leaves out. */
    for (int64_t t = 0; t < S && !st; t++) {
        draw(&rng, N, subset, perm, idx);
        cs_dataset part;
        if ((st = dataset_rows(train, idx, subset, &part, err)))
            break;
        st = tune_and_measure(&j, &part, loss, err);
        cs_dataset_free(&part);
        for (int64_t q = 0; q < Q && !st; q++)
            res->lds_actual[t * Q + q] = loss[q] - res->full_loss[q];
        /* perm[subset..N) are the examples left out */
        for (int k = 0; k < res->n_methods && !st; k++) {
            cs_validate_method *v = &res->methods[k];
            const double *s = scores_of(r, v->name);
            for (int64_t q = 0; q < Q; q++) {
                double sum = 0;
                for (int64_t i = subset; i < N; i++)
                    sum += s[q * N + perm[i]];
                v->lds_predicted[t * Q + q] = sum / (double)N;
            }
        }
    }
    for (int k = 0; k < res->n_methods && !st && S; k++) {
        cs_validate_method *v = &res->methods[k];
        st = per_query_means(v->lds_predicted, res->lds_actual, S, Q, &v->lds_pearson, &v->lds, &v->lds_queries, err);
    }

    if (saved)
        weights_restore(g, &j.w);
    weights_free(&j.w);
    if (qobj)
        cs_objective_free(&j.qobj);
    free(perm), free(idx), free(kept), free(loss);
    if (st)
        cs_validate_result_free(res);
    return st;
}
