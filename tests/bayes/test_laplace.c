/* The Laplace log marginal likelihood and optimised prior precisions of
 * tiny_mlp64 against tools/laplace_reference.py's float64 PyTorch values
 * (tests/fixtures/laplace_tiny_mlp64.txt): diag, kfac and full, every layer
 * or the last, a fixed prior, one optimised prior and one per layer, each to
 * 1e-4 relative (the largest error is printed as a TAP note). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../curv/case.h"
#include "../tap.h"
#include "bayes/laplace.h"

static double worst;

static void close_to(double got, double want, const char *what)
{
    double rel = fabs(got - want) / fmax(fabs(want), 1e-300);
    worst = fmax(worst, rel);
    ok(rel <= 1e-4, "%s: %.12g vs reference %.12g (rel %.2g)", what, got, want, rel);
}

static void check(const cs_graph *g, const cs_dataset *ds, const fx_file *fx, cs_repr_kind repr,
                  cs_la_subset subset, cs_la_prior prior)
{
    const char *rname = cs_repr_name(repr), *sname = subset == CS_LA_ALL ? "all" : "last";
    const char *pname = prior == CS_LA_PRIOR_FIXED ? "fixed" : prior == CS_LA_PRIOR_SCALAR ? "scalar" : "layer";
    char key[96];
    snprintf(key, sizeof key, "%s_%s_%s", rname, sname, pname);
    const fx_record *rec = fx_get(fx, key);
    if (!ok(rec != NULL, "%s: in the fixture", key))
        return;
    cs_laplace_opts o;
    cs_laplace_opts_init(&o);
    o.repr = repr, o.subset = subset, o.prior = prior, o.prior_precision = 0.5, o.batch = 5;
    cs_laplace la;
    cs_err err = {0};
    cs_status st = cs_laplace_fit(g, ds, &o, &la, &err);
    if (ok(st == CS_OK, "%s: fit (%s)", key, err.msg)) {
        close_to(la.log_marglik, rec->v[0], key);
        for (long i = 1; i < rec->cols && i - 1 < la.n_layers; i++) {
            char what[128];
            snprintf(what, sizeof what, "%s: prior of posterior layer %ld", key, i - 1);
            close_to(la.layers[i - 1].prior, rec->v[i], what);
        }
        if (prior == CS_LA_PRIOR_SCALAR)
            for (int i = 1; i < la.n_layers; i++)
                ok(la.layers[i].prior == la.layers[0].prior, "%s: one prior for every layer", key);
    }
    cs_laplace_free(&la);
}

int main(void)
{
    cs_graph *g;
    cs_dataset ds;
    fx_file fx;
    char path[512];
    if (curv_case_load("tiny_mlp64", "tiny_mlp64", 0, &g, &ds) == 0 &&
        ok(fx_load(&fx, test_src_path(path, sizeof path, "tests/fixtures/laplace_tiny_mlp64.txt")) == 0,
           "fixture tests/fixtures/laplace_tiny_mlp64.txt")) {
        const fx_record *ll = fx_get(&fx, "loglik");
        cs_laplace_opts o;
        cs_laplace_opts_init(&o);
        o.repr = CS_REPR_DIAG;
        cs_laplace la;
        cs_err err = {0};
        if (ok(ll && cs_laplace_fit(g, &ds, &o, &la, &err) == CS_OK, "log-likelihood fit (%s)", err.msg))
            close_to(la.log_lik, ll->v[0], "log p(D|theta*) = -sum of the ce losses");
        cs_laplace_free(&la);
        const cs_repr_kind reprs[] = {CS_REPR_DIAG, CS_REPR_KFAC, CS_REPR_FULL};
        for (int r = 0; r < 3; r++)
            for (int s = 0; s < 2; s++)
                for (int p = 0; p < 3; p++)
                    check(g, &ds, &fx, reprs[r], (cs_la_subset)s, (cs_la_prior)p);

        /* full above the size limit is refused, naming it */
        o.repr = CS_REPR_FULL;
        o.max_full = 10;
        cs_status st = cs_laplace_fit(g, &ds, &o, &la, &err);
        ok(st == CS_ERR_UNSUPPORTED && strstr(err.msg, "--max-full"), "full above --max-full refused (%s)", err.msg);
        cs_laplace_free(&la);
        o.repr = CS_REPR_FULL;
        o.max_full = 4096;
        o.curv = CS_CURV_HESSIAN;
        st = cs_laplace_fit(g, &ds, &o, &la, &err);
        ok(st == CS_ERR_USAGE, "the Hessian refused (%s)", err.msg);
        cs_laplace_free(&la);
        diag("largest relative error against the reference: %.3g", worst);
        fx_free(&fx);
        cs_dataset_free(&ds);
        cs_graph_free(g);
    }
    return tap_done();
}
