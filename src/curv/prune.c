#include "curv/prune.h"
#include "interp/layer_kind.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ranked {
    double score;
    int64_t index; /* flat parameter index */
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index); /* stable: ties by position */
}

static bool prunable_layer(const cs_layer *L)
{
    return L->kind->prunable;
}

/* Weight element i (flat parameter index) as a pointer into its tensor. */
static void set_param(cs_graph *g, int64_t i, double v, double *old)
{
    for (int q = 0; q < g->n_params; q++) {
        cs_tensor *t = &g->values[g->params[q].value].init;
        int64_t off = g->params[q].offset;
        if (i >= off && i < off + cs_tensor_numel(t)) {
            if (old)
                *old = cs_tensor_get_f64(t, i - off);
            cs_tensor_set_f64(t, i - off, v);
            return;
        }
    }
}

cs_status cs_prune_check(cs_graph *g, const cs_dataset *ds, const cs_eval_opts *eo,
                         const cs_importance *imp, const double *fractions, int n_fractions,
                         cs_prune_point **out, int *n_out, cs_err *err)
{
    *out = NULL;
    *n_out = 0;
    int64_t n_w = 0;
    for (int l = 0; l < g->n_layers; l++)
        if (prunable_layer(&g->layers[l]))
            n_w += cs_tensor_numel(&g->values[g->params[g->layers[l].first_param].value].init);
    if (n_w == 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "the model has no Gemm, MatMul or Conv weights to prune");
    struct { const char *name; const double *s; } scores[] = {
        {"magnitude", imp->value}, {"taylor", imp->taylor}, {"obd", imp->obd}, {"obs", imp->obs}};
    int max_points = 1 + 4 * n_fractions;
    cs_prune_point *pts = calloc((size_t)max_points, sizeof *pts);
    ranked *rk = malloc(sizeof(ranked) * (size_t)n_w);
    double *saved = malloc(sizeof(double) * (size_t)n_w);
    if (!pts || !rk || !saved) {
        free(pts), free(rk), free(saved);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory for the pruning check");
    }
    cs_eval_result r;
    cs_status st = cs_evaluate(g, ds, eo, &r, err);
    int np = 0;
    if (!st)
        pts[np++] = (cs_prune_point){"none", 0.0, 0, r.loss, r.has_accuracy ? r.accuracy : NAN};
    for (size_t s = 0; s < sizeof scores / sizeof scores[0] && !st; s++) {
        if (!scores[s].s)
            continue;
        int64_t k = 0;
        bool usable = true;
        for (int l = 0; l < g->n_layers; l++) {
            if (!prunable_layer(&g->layers[l]))
                continue;
            const cs_param *P = &g->params[g->layers[l].first_param];
            int64_t n = cs_tensor_numel(&g->values[P->value].init);
            for (int64_t i = 0; i < n; i++, k++) {
                double v = scores[s].s[P->offset + i];
                rk[k].score = s == 0 ? fabs(v) : v;
                rk[k].index = P->offset + i;
                usable = usable && !isnan(rk[k].score);
            }
        }
        if (!usable)
            continue; /* e.g. obs of a layer without a block */
        qsort(rk, (size_t)n_w, sizeof *rk, cmp_ranked);
        for (int f = 0; f < n_fractions && !st; f++) {
            int64_t m = (int64_t)floor(fractions[f] * (double)n_w + 0.5);
            for (int64_t i = 0; i < m; i++)
                set_param(g, rk[i].index, 0.0, &saved[i]);
            st = cs_evaluate(g, ds, eo, &r, err);
            for (int64_t i = 0; i < m; i++)
                set_param(g, rk[i].index, saved[i], NULL);
            if (!st)
                pts[np++] = (cs_prune_point){scores[s].name, fractions[f], m, r.loss,
                                             r.has_accuracy ? r.accuracy : NAN};
        }
    }
    free(rk);
    free(saved);
    if (st) {
        free(pts);
        return st;
    }
    *out = pts;
    *n_out = np;
    return CS_OK;
}
