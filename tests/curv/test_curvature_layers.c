/* The layer kinds embedding, prelu, instancenorm, groupnorm, lstm, gru and
 * rnn, and the elementwise expand, scale, shift and shift_sub, against
 * PyTorch float64 references (tools/make_layer_curvature_fixtures.py,
 * tools/make_eparams_curvature_fixtures.py): the engine's exact GGN block,
 * its diagonal and its unit-wise blocks (read off the reference block), and
 * the K-FAC factors: for the embedding A the diagonal of the ids' counts
 * and G the output-gradient factor, for the recurrent layers A over
 * [x_t; h_{t-1}; 1] and G over the gate pre-activations, per group. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../tap.h"
#include "../test_util.h"
#include "case.h"
#include "curv/engine.h"
#include "dense_ref.h"
#include "fixture.h"
#include "interp/layer_kind.h"

static const char *const new_kinds[] = {"embedding", "prelu", "instancenorm", "groupnorm", "lstm", "gru", "rnn",
                                        "expand", "scale", "shift", "shift_sub"};
#define N_NEW (sizeof new_kinds / sizeof new_kinds[0])
static bool kind_checked[N_NEW];

static void mark(const cs_layer_kind *k)
{
    for (size_t i = 0; i < N_NEW; i++)
        if (strcmp(k->name, new_kinds[i]) == 0)
            kind_checked[i] = true;
}

static double max_abs(const double *a, long n)
{
    double m = 0;
    for (long i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

/* The unit blocks against the reference block's sub-blocks (a slot without
 * a parameter is a zero row and column). */
static double unit_err(const cs_curv_result *ru, const fx_record *blk)
{
    double e = 0;
    long W = blk->rows, d = (long)ru->unit_d;
    for (long u = 0; u < (long)ru->n_units; u++)
        for (long i = 0; i < d; i++)
            for (long j = 0; j < d; j++) {
                int64_t p = ru->unit_index[u * d + i], q = ru->unit_index[u * d + j];
                double want = p >= 0 && q >= 0 ? blk->v[p * W + q] : 0.0;
                e = fmax(e, fabs(ru->unit_blocks[(u * d + i) * d + j] - want));
            }
    return e;
}

static void check_case(const char *model, cs_loss_kind loss)
{
    const char *lname = cs_loss_name(loss);
    char fixture[96], label[160];
    snprintf(fixture, sizeof fixture, "%s_%s", model, lname);
    snprintf(label, sizeof label, "%s/%s: fixture tests/fixtures/curv_%s.txt", model, lname, fixture);
    cs_graph *g;
    cs_dataset ds;
    fx_file fx;
    if (curv_case_load_fixture(model, model, 0, fixture, label, &g, &ds, &fx))
        return;
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_GGN;
    o.reprs = 1u << CS_REPR_FULL | 1u << CS_REPR_KFAC | 1u << CS_REPR_DIAG | 1u << CS_REPR_UNIT;
    o.loss = loss;
    o.batch = 5; /* 12 = 5 + 5 + 2 */
    o.keep_matrices = true;
    cs_curv_report rep, urep;
    cs_err err = {0};
    if (!ok(cs_curvature_compute(g, &ds, &o, &rep, &err) == CS_OK, "%s/%s: compute (%s)", model, lname, err.msg))
        goto out;
    /* the unit blocks themselves are kept by a statistics-only pass */
    o.reprs = 1u << CS_REPR_UNIT;
    o.stats_only = true;
    if (!ok(cs_curvature_compute(g, &ds, &o, &urep, &err) == CS_OK, "%s/%s: unit blocks (%s)", model, lname,
            err.msg)) {
        cs_curv_report_free(&rep);
        goto out;
    }
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        char name[96];
        snprintf(name, sizeof name, "block/ggn/%d", l);
        const fx_record *blk = fx_get(&fx, name);
        if (!blk)
            continue;
        long W = blk->rows;
        const char *k = L->kind->name;
        const cs_curv_result *rf = cs_curv_report_find(&rep, CS_CURV_GGN, CS_REPR_FULL, l);
        const cs_curv_result *rd = cs_curv_report_find(&rep, CS_CURV_GGN, CS_REPR_DIAG, l);
        const cs_curv_result *ru = cs_curv_report_find(&urep, CS_CURV_GGN, CS_REPR_UNIT, l);
        const cs_curv_result *rk = cs_curv_report_find(&rep, CS_CURV_GGN, CS_REPR_KFAC, l);
        bool good = rf && rf->matrix && rf->dim == W;
        double e = good ? rel_err(rf->matrix, blk->v, W * W) : INFINITY;
        good = ok(good && e <= 1e-9, "%s/%s: ggn full block of %s (%s) matches PyTorch (rel err %.2g)", model,
                  lname, L->name, k, e);
        snprintf(name, sizeof name, "diag/ggn/%d", l);
        const fx_record *dg = fx_get(&fx, name);
        e = rd && rd->matrix && dg && dg->cols == W ? rel_err(rd->matrix, dg->v, W) : INFINITY;
        good = ok(e <= 1e-9, "%s/%s: ggn diagonal of %s (%s) matches PyTorch (rel err %.2g)", model, lname,
                  L->name, k, e) && good;
        e = ru && ru->unit_blocks && ru->unit_index ? unit_err(ru, blk) : INFINITY;
        good = ok(e <= 1e-9 * max_abs(blk->v, W * W),
                  "%s/%s: ggn unit blocks of %s (%s: %lld units of %lld) are the PyTorch block's (max err %.2g)",
                  model, lname, L->name, k, ru ? (long long)ru->n_units : -1LL, ru ? (long long)ru->unit_d : -1LL,
                  e) && good;
        snprintf(name, sizeof name, "kfacA/ggn/%d", l);
        const fx_record *fa = fx_get(&fx, name);
        snprintf(name, sizeof name, "kfacG/ggn/%d", l);
        const fx_record *fg = fx_get(&fx, name);
        if (!fa || !fg) {
            good = ok(!rk, "%s/%s: %s (%s) has no K-FAC form", model, lname, L->name, k) && good;
        } else {
            /* the groups' factors stacked: [groups dA, dA] and [groups dG, dG] */
            long V = fa->cols, D = fg->cols, groups = fa->rows / V;
            bool have = rk && rk->kfac_A && rk->kfac_G && rk->kfac_groups == groups && rk->kfac_dA == V &&
                        rk->kfac_dG == D && fg->rows == groups * D;
            double ea = have ? rel_err(rk->kfac_A, fa->v, groups * V * V) : INFINITY;
            double eg = have ? rel_err(rk->kfac_G, fg->v, groups * D * D) : INFINITY;
            if (strcmp(k, "embedding") == 0) {
                double off = 0;
                for (long i = 0; have && i < V; i++)
                    for (long j = 0; j < V; j++)
                        off = i != j ? fmax(off, fabs(rk->kfac_A[i * V + j])) : off;
                good = ok(have && off == 0 && ea <= 1e-14,
                          "%s/%s: K-FAC A of %s is the diagonal of the id counts / (N T) (rel err %.2g, off-diagonal %g)",
                          model, lname, L->name, ea, off) && good;
            } else {
                good = ok(ea <= 1e-12,
                          "%s/%s: K-FAC A of %s (%s, %ld groups of %ld) matches PyTorch's (1/(N T)) sum abar abar^T "
                          "(rel err %.2g)", model, lname, L->name, k, groups, V, ea) && good;
            }
            good = ok(eg <= 1e-9, "%s/%s: K-FAC G of %s (%ld groups of %ld) matches PyTorch's (1/N) sum J^T Lambda J "
                      "(rel err %.2g)", model, lname, L->name, groups, D, eg) && good;
        }
        if (good)
            mark(L->kind);
    }
    cs_curv_report_free(&rep);
    cs_curv_report_free(&urep);
out:
    fx_free(&fx);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    static const char *const models[] = {"tiny_embed64", "tiny_norm64", "tiny_gn21_64", "tiny_seq64",
                                         "tiny_eparams64"};
    for (int m = 0; m < (int)(sizeof models / sizeof models[0]); m++) {
        check_case(models[m], CS_LOSS_CE);
        check_case(models[m], CS_LOSS_MSE);
    }
    for (size_t i = 0; i < N_NEW; i++)
        ok(kind_checked[i], "layer kind %s: curvature checked against PyTorch on some model", new_kinds[i]);
    return tap_done();
}
