/* An allocation failure anywhere in the curvature engine is an error, never
 * a dropped result: with the test hook of curv/alloc.h, the n-th checked
 * allocation fails for n = 1, 2, ... until the computation gets through;
 * every failing n returns CS_ERR_NOMEM with an "out of memory: ..."
 * message and an empty report (leaks are caught where the suite runs under
 * valgrind or ASan), and the run that gets through has every result of an
 * unhooked run. */
#include <string.h>

#include "case.h"
#include "curv/alloc.h"
#include "curv/engine.h"

/* Whether two reports hold the same results (kind, layer, dimension and
 * trace). */
static bool same_results(const cs_curv_report *a, const cs_curv_report *b)
{
    if (a->n != b->n || a->n_noise != b->n_noise)
        return false;
    for (int i = 0; i < a->n; i++) {
        const cs_curv_result *x = &a->res[i], *y = &b->res[i];
        if (x->layer != y->layer || x->curv != y->curv || x->repr != y->repr || x->dim != y->dim ||
            x->n_eig != y->n_eig || memcmp(&x->sum, &y->sum, sizeof x->sum) != 0 ||
            (x->matrix == NULL) != (y->matrix == NULL) || (x->kfac_A == NULL) != (y->kfac_A == NULL) ||
            (x->unit_blocks == NULL) != (y->unit_blocks == NULL))
            return false;
    }
    return true;
}

static void check_failures(const char *model, const char *label, const cs_curv_opts *o)
{
    cs_graph *g;
    cs_dataset ds;
    if (curv_case_load(model, model, 6, &g, &ds))
        return;
    cs_curv_report ref;
    cs_err err = {0};
    if (!ok(cs_curvature_compute(g, &ds, o, &ref, &err) == CS_OK, "%s %s: reference run (%s)", model, label,
            err.msg))
        goto out;
    int failed = 0, wrong = 0, not_empty = 0;
    char first_wrong[300] = "", last_msg[300] = "";
    long n;
    for (n = 1; n < 100000; n++) {
        cs_curv_report rep;
        cs_err e = {0};
        cs_curv_alloc_fail_after(n);
        cs_status st = cs_curvature_compute(g, &ds, o, &rep, &e);
        bool fired = !cs_curv_alloc_fail_pending();
        cs_curv_alloc_fail_after(0);
        if (!fired) {
            ok(st == CS_OK && same_results(&rep, &ref), "%s %s: with no allocation failing, every result (%d)",
               model, label, rep.n);
            if (st == CS_OK)
                cs_curv_report_free(&rep);
            break;
        }
        failed++;
        snprintf(last_msg, sizeof last_msg, "%s", e.msg);
        if (st != CS_ERR_NOMEM || strncmp(e.msg, "out of memory: ", 15) != 0) {
            if (!wrong++)
                snprintf(first_wrong, sizeof first_wrong, "allocation %ld: status %d (%s)", n, (int)st, e.msg);
            if (st == CS_OK)
                cs_curv_report_free(&rep);
        }
        if (st != CS_OK && (rep.n != 0 || rep.res))
            not_empty++;
    }
    ok(failed > 0 && wrong == 0, "%s %s: each of %d failing allocations is CS_ERR_NOMEM with a message (the last: %s)%s%s",
       model, label, failed, last_msg, wrong ? "; first wrong: " : "", first_wrong);
    ok(not_empty == 0, "%s %s: a failed computation leaves an empty report", model, label);
    cs_curv_report_free(&ref);
out:
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    cs_curv_opts o;
    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_HESSIAN | 1u << CS_CURV_GGN | 1u << CS_CURV_FISHER_MC | 1u << CS_CURV_FISHER_EMP;
    o.reprs = 1u << CS_REPR_FULL | 1u << CS_REPR_KFAC | 1u << CS_REPR_DIAG | 1u << CS_REPR_UNIT;
    o.batch = 5;
    o.probes = 2;
    o.keep_matrices = true;
    check_failures("tiny_mlp64", "every curvature and representation", &o);
    check_failures("tiny_cnn64", "every curvature and representation", &o);

    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_HESSIAN | 1u << CS_CURV_GGN | 1u << CS_CURV_FISHER_EMP;
    o.reprs = 1u << CS_REPR_KFAC | 1u << CS_REPR_DIAG | 1u << CS_REPR_UNIT;
    o.max_full = 10; /* Hutchinson diagonals, no full blocks */
    o.probes = 2;
    o.batch = 5;
    check_failures("tiny_attn64", "Hutchinson and approximations", &o);

    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_FISHER_EMP | 1u << CS_CURV_HESSIAN;
    o.reprs = 1u << CS_REPR_FULL | 1u << CS_REPR_KFAC | 1u << CS_REPR_DIAG | 1u << CS_REPR_UNIT;
    o.stats_only = true;
    o.keep_matrices = true;
    o.batch = 5;
    check_failures("tiny_cnn64", "statistics only", &o);

    cs_curv_opts_init(&o);
    o.curvatures = 1u << CS_CURV_GGN;
    o.reprs = 1u << CS_REPR_KFAC;
    o.noise_scale = true;
    o.batch = 5;
    check_failures("tiny_cnn64", "noise scale", &o);
    return tap_done();
}
