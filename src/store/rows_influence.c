/* influence's rows (rows.h): the top-k scores of each query and each
 * training example by sign, the full matrix when asked, self-influence
 * with its rank, and the conventions the scores depend on. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/rows.h"
#include "store/store_internal.h"

typedef struct scored {
    double v;
    int64_t i;
} scored;

/* Descending by value, ties by index (a stable, reproducible order). */
static int by_value_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Sort n values v[i * stride] descending into w. */
static void sort_desc(const double *v, int64_t n, int64_t stride, scored *w)
{
    for (int64_t i = 0; i < n; i++)
        w[i] = (scored){v[i * stride], i};
    qsort(w, (size_t)n, sizeof *w, by_value_desc);
}

static cs_status put_score(cs_store *s, int64_t run_id, const char *method, const char *scope, const char *dir,
                           int64_t rank, int64_t q, int64_t m, double v, cs_err *err)
{
    const store_col c[] = {SC_INT(run_id), SC_TEXT(method), SC_TEXT(scope), SC_TEXT(dir), SC_COUNT(rank),
                           SC_INT(q), SC_INT(m), SC_REAL(v)};
    return store_insert_row(s, ST_INFLUENCE_SCORE, c, 8, err, "insert %s query %lld train %lld into influence_scores",
                            method, (long long)q, (long long)m);
}

/* The top k of each sign along n values v[i * stride]: the first k of the
 * descending order as helpful, the last k reversed as harmful; index i is
 * a training example when of_query, else a query (other is the fixed one). */
static cs_status put_top(cs_store *s, int64_t run_id, const char *method, bool of_query, int64_t other,
                         const double *v, int64_t n, int64_t stride, int64_t k, scored *w, cs_err *err)
{
    sort_desc(v, n, stride, w);
    int64_t kk = k < n ? k : n;
    cs_status st = CS_OK;
    for (int64_t r = 0; r < kk && !st; r++)
        for (int sign = 0; sign < 2 && !st; sign++) {
            const scored *e = sign ? &w[n - 1 - r] : &w[r];
            int64_t q = of_query ? other : e->i, m = of_query ? e->i : other;
            st = put_score(s, run_id, method, of_query ? "query" : "train", sign ? "harmful" : "helpful", r + 1, q,
                           m, e->v, err);
        }
    return st;
}

cs_status cs_store_write_influence(cs_store *s, int64_t run_id, const cs_influence_result *r, const cs_dataset *train,
                                   int64_t top_k, bool full, cs_err *err)
{
    int64_t N = r->n_train, Q = r->n_query;
    scored *w = malloc(sizeof(scored) * (size_t)((N > Q ? N : Q) + 1));
    if (!w)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory ranking influence scores");
    const char *names[] = {"ekfac", "dot", "cosine", "tracin"};
    const double *mats[] = {r->ekfac, r->dot, r->cosine, r->tracin};
    cs_status st = CS_OK;
    for (int k = 0; k < 4 && !st; k++) {
        const double *S = mats[k];
        if (!S)
            continue;
        for (int64_t q = 0; q < Q && !st; q++)
            st = put_top(s, run_id, names[k], true, q, S + q * N, N, 1, top_k, w, err);
        for (int64_t m = 0; m < N && !st; m++)
            st = put_top(s, run_id, names[k], false, m, S + m, Q, N, top_k, w, err);
        for (int64_t q = 0; full && q < Q && !st; q++)
            for (int64_t m = 0; m < N && !st; m++)
                st = put_score(s, run_id, names[k], "full", NULL, -1, q, m, S[q * N + m], err);
    }
    /* influence_self: EK-FAC's when it was computed, else TracIn's (the
     * convention influence_self_method says which) */
    const double *self = r->self ? r->self : r->tracin_self;
    if (!st && self) {
        sort_desc(self, N, 1, w);
        for (int64_t rank = 0; rank < N && !st; rank++) {
            int64_t m = w[rank].i;
            const store_col c[] = {SC_INT(run_id), SC_INT(m),
                                   SC_COUNT(train->int_labels ? cs_dataset_label(train, m) : -1),
                                   SC_REAL(r->train_loss[m]), SC_REAL(self[m]), SC_INT(rank + 1)};
            st = store_insert_row(s, ST_INFLUENCE_SELF, c, 6, err, "insert train %lld into influence_self",
                                  (long long)m);
        }
    }
    free(w);
    return st;
}

cs_status cs_store_write_influence_conventions(cs_store *s, int64_t run_id, const cs_influence_opts *o,
                                               const cs_influence_result *r, const cs_graph *g, cs_err *err)
{
    char damping[64], used[64];
    snprintf(damping, sizeof damping, "%.17g", o->damping);
    snprintf(used, sizeof used, "%lld", (long long)r->params_used);
    const char *const kv[][2] = {
        {"influence_sign", "positive = helpful: score = g_q^T (C + lambda I)^-1 g_m = -I_up,loss (Koh & Liang "
                           "2017); removing m raises the query loss by about score / n_train"},
        {"influence_loss_scaling", "g_n: gradient of example n's own loss (sum form, not divided by N); C: "
                                   "curvature of the mean training loss (1/N) sum_n l_n"},
        {"influence_curvature", cs_curv_name(o->curv)},
        {"influence_inverse", o->precond},
        {"damping", damping},
        {"influence_params_used", used},
        {"influence_self_method", r->self ? "ekfac" : r->tracin_self ? "tracin" : "none"}};
    cs_status st = store_put_conventions(s, run_id, kv, sizeof kv / sizeof kv[0], err);
    for (int l = 0; l < g->n_layers && !st; l++)
        if (r->excluded[l]) {
            char key[200], note[400];
            snprintf(key, sizeof key, "influence_excluded.%s", g->layers[l].name);
            snprintf(note, sizeof note, "layer %s (%s) excluded from every method: %s", g->layers[l].name,
                     g->layers[l].op_type, r->why[l] ? r->why[l] : "no K-FAC form");
            st = cs_store_convention(s, run_id, key, note, err);
        }
    return st;
}
