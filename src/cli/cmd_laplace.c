/* curvscope laplace MODEL.onnx --data SPEC --labels SPEC --db OUT.db [options]
 *
 * Orchestration only (the maths is bayes/laplace.c): open the database,
 * load model and data, record the run, fit the Laplace posterior, store the
 * fit, its priors and its conventions in one transaction, end the run. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bayes/laplace.h"
#include "cli/cli.h"
#include "store/rows.h"

void cmd_laplace_usage(FILE *f)
{
    fprintf(f, "usage: curvscope laplace MODEL.onnx --data SPEC --labels SPEC --db OUT.db [options]\n\n"
               "Laplace approximation around the model's weights (ce likelihood summed over the\n"
               "samples, Gaussian prior): log marginal likelihood, prior precision maximising\n"
               "it, stored in laplace_fits and laplace_priors.\n\n"
               "  --db FILE            the database (created if missing)\n"
               "  --curvature C        ggn, fisher, fisher_mc or fisher_emp (default ggn)\n"
               "  --repr R             diag, kfac or full (default kfac); full is the exact\n"
               "                       dense matrix over the posterior's parameters\n"
               "  --subset S           all or last-layer (default all)\n"
               "  --prior-precision D  a fixed prior precision for every layer (default: optimised)\n"
               "  --optimize-prior M   scalar (one value) or layer (one per layer, the default)\n"
               "  --max-full P         largest posterior for --repr full (default 4096)\n"
               "  --mc-samples S       sampled labels per input for fisher_mc (default 1)\n"
               "  --test-data SPEC     a test set: NLL, accuracy, ECE (15 bins) and Brier score of\n"
               "  --test-labels SPEC   each predictive, into laplace_predictive\n"
               "  --predictive LIST    of map, glm_probit, glm_mc (the linearised model, probit or\n"
               "                       Monte Carlo), nn_mc (the network at sampled weights), all\n"
               "                       (default map,glm_probit,glm_mc)\n"
               "  --mc-predictive S    Monte Carlo draws per test input for glm_mc, and weight\n"
               "                       samples for nn_mc (default 100, seeded)\n");
    cli_data_opts_usage(f);
    fprintf(f, "  --help               this text\n");
}

/* The fit's rows and conventions. */
static cs_status store_fit(cs_store *db, int64_t run, const cs_graph *g, const cs_laplace *la,
                           const cs_la_metrics *pred, unsigned methods, int64_t n_test, cs_err *err)
{
    cs_status st = cs_store_begin(db, err);
    if (st)
        return st;
    const char *const kv[][2] = {
        {"laplace_likelihood", "ce, summed over the samples: log p(D|theta) = -sum_n l_n"},
        {"laplace_curvature_scaling", "posterior precision P = N * C + diag(prior), C the engine's mean over the N "
                                      "samples (doc/design.md §2.2)"},
        {"laplace_evidence", "log p(D|theta*) - 1/2 theta*^T P0 theta* - 1/2 log det P + 1/2 log det P0 "
                             "(MacKay 1992; Immer et al. 2021)"},
        {"laplace_prior_search", "bisection on the sign of d log ml / d log delta, delta in [exp(-25), exp(25)]"},
        {"laplace_kfac_logdet", "sum_ij log(N mu_i lambda_j + delta) over the factors' eigenvalues"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !st; i++)
        st = cs_store_convention(db, run, kv[i][0], kv[i][1], err);
    if (!st)
        st = cs_store_write_graph(db, run, g, err);
    cs_laplace_fit_row row = {.curvature = cs_curv_name(la->curv), .repr = cs_repr_name(la->repr),
                              .subset = cs_la_subset_name(la->subset), .prior_mode = cs_la_prior_name(la->prior_mode),
                              .prior_precision = la->prior_mode == CS_LA_PRIOR_LAYER ? NAN : la->layers[0].prior,
                              .log_marglik = la->log_marglik, .log_lik = la->log_lik,
                              .log_det_precision = la->log_det_P, .log_det_prior = la->log_det_P0,
                              .n_params = la->D, .n_samples = la->N};
    if (!st)
        st = cs_store_laplace_fit(db, run, &row, err);
    for (int i = 0; i < la->n_layers && !st; i++)
        st = cs_store_laplace_prior(db, run, la->layers[i].layer, la->layers[i].prior, la->layers[i].W,
                                    la->layers[i].sq_norm, err);
    for (int m = 0; pred && m < CS_LA_METHOD_COUNT && !st; m++)
        if (methods & 1u << m)
            st = cs_store_laplace_predictive(db, run, cs_la_method_name((cs_la_method)m), n_test, pred[m].nll,
                                         pred[m].accuracy, pred[m].ece, pred[m].brier, err);
    if (!st)
        return cs_store_commit(db, err);
    cs_store_rollback(db);
    return st;
}

int cmd_laplace(int argc, char **argv)
{
    cli_data_opts d;
    cli_data_opts_init(&d);
    cs_laplace_opts o;
    cs_laplace_opts_init(&o);
    const char *model = NULL, *db_path = NULL, *curv = "ggn", *repr = "kfac", *subset = "all", *mode = "layer";
    const char *test_data = NULL, *test_labels = NULL, *predictive = "map,glm_probit,glm_mc";
    int mc_pred = 100;
    bool fixed = false, mode_given = false;
    const cli_opt opts[] = {
        CLI_OPT("db", CLI_OPT_TEXT, &db_path),
        CLI_OPT("curvature", CLI_OPT_TEXT, &curv),
        CLI_OPT("repr", CLI_OPT_TEXT, &repr),
        CLI_OPT("subset", CLI_OPT_TEXT, &subset),
        CLI_OPT("prior-precision", CLI_OPT_POSITIVE, &o.prior_precision, .seen = &fixed),
        CLI_OPT("optimize-prior", CLI_OPT_TEXT, &mode, .seen = &mode_given),
        CLI_OPT("max-full", CLI_OPT_COUNT, &o.max_full),
        CLI_OPT("mc-samples", CLI_OPT_INT, &o.mc_samples, .max = 1000000),
        CLI_OPT("test-data", CLI_OPT_TEXT, &test_data),
        CLI_OPT("test-labels", CLI_OPT_TEXT, &test_labels),
        CLI_OPT("predictive", CLI_OPT_TEXT, &predictive),
        CLI_OPT("mc-predictive", CLI_OPT_INT, &mc_pred, .max = 1000000),
        CLI_OPT("json", CLI_OPT_FLAG, &d.json),
    };
    int parsed = cli_parse_args("laplace", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &d,
                                cmd_laplace_usage, "MODEL.onnx", &model);
    if (parsed >= 0)
        return parsed;
    cs_err err = {0};
    if (!db_path)
        return cli_usage_error("laplace", "missing --db OUT.db");
    if (!d.data || !d.labels)
        return cli_usage_error("laplace", "missing --data SPEC or --labels SPEC");
    if (!test_data != !test_labels)
        return cli_usage_error("laplace", "--test-data and --test-labels go together");
    unsigned methods = 0;
    if (cs_la_method_parse_list(predictive, &methods, &err))
        return cli_usage_error("laplace", "--predictive: %s", err.msg);
    if (d.loss != CS_LOSS_CE)
        return cli_usage_error("laplace", "--loss %s: the Laplace likelihood is the ce loss's", cs_loss_name(d.loss));
    unsigned cmask = 0, rmask = 0;
    if (cs_curv_parse_list(curv, &cmask, &err) || __builtin_popcount(cmask) != 1)
        return cli_usage_error("laplace", "--curvature needs one curvature (%s)", err.msg[0] ? err.msg : curv);
    if (cs_repr_parse_list(repr, &rmask, &err) || __builtin_popcount(rmask) != 1)
        return cli_usage_error("laplace", "--repr needs one of diag, kfac, full (%s)", err.msg[0] ? err.msg : repr);
    o.curv = (cs_curv_kind)__builtin_ctz(cmask);
    o.repr = (cs_repr_kind)__builtin_ctz(rmask);
    if (o.curv == CS_CURV_HESSIAN)
        return cli_usage_error("laplace", "--curvature hessian: the posterior needs a positive semi-definite "
                                          "curvature (ggn, fisher, fisher_mc, fisher_emp)");
    if (o.repr != CS_REPR_DIAG && o.repr != CS_REPR_KFAC && o.repr != CS_REPR_FULL)
        return cli_usage_error("laplace", "--repr %s: the posterior takes diag, kfac or full", repr);
    if (strcmp(subset, "all") == 0)
        o.subset = CS_LA_ALL;
    else if (strcmp(subset, "last-layer") == 0)
        o.subset = CS_LA_LAST;
    else
        return cli_usage_error("laplace", "--subset %s: expected all or last-layer", subset);
    if (fixed && mode_given)
        return cli_usage_error("laplace", "--prior-precision fixes the prior; --optimize-prior chooses it: not both");
    if (fixed)
        o.prior = CS_LA_PRIOR_FIXED;
    else if (strcmp(mode, "scalar") == 0)
        o.prior = CS_LA_PRIOR_SCALAR;
    else if (strcmp(mode, "layer") == 0)
        o.prior = CS_LA_PRIOR_LAYER;
    else
        return cli_usage_error("laplace", "--optimize-prior %s: expected scalar or layer", mode);
    o.batch = d.batch;
    o.seed = d.seed;
    o.norm = &d.norm;
    o.cancel = cli_run_cancel();

    int code = 0;
    cli_run run;
    if ((code = cli_run_open(&run, db_path)))
        return code;
    cs_graph *g = cli_load_model_finite(model, &d, &code);
    if (!g) {
        cli_run_close(&run);
        return code;
    }
    cs_dataset ds;
    cs_status st = cs_dataset_load(&ds, d.data, d.labels, d.samples, &err);
    if (st) {
        cs_graph_free(g);
        cli_run_close(&run);
        return cli_report(st, &err);
    }
    cs_dataset ts;
    memset(&ts, 0, sizeof ts);
    if (test_data && (st = cs_dataset_load(&ts, test_data, test_labels, 0, &err))) {
        cs_dataset_free(&ds);
        cs_graph_free(g);
        cli_run_close(&run);
        return cli_report(st, &err);
    }
    cs_laplace la;
    memset(&la, 0, sizeof la);
    cs_la_metrics pred[CS_LA_METHOD_COUNT];
    st = cli_run_begin(&run, "laplace", model, &d, ds.n, argc, argv, &err);
    if (!st)
        st = cs_laplace_fit(g, &ds, &o, &la, &err);
    if (!st && test_data)
        st = cs_laplace_predict(g, &ts, &la, &d.norm, d.batch, methods, mc_pred, d.seed, pred, &err);
    if (!st)
        st = store_fit(run.db, run.id, g, &la, test_data ? pred : NULL, methods, ts.n, &err);
    st = cli_run_end(&run, st, &err, cli_run_seconds(&run));
    if (st) {
        code = cli_report(st, &err);
    } else if (d.json) {
        printf("{\"run\": %lld, \"curvature\": \"%s\", \"repr\": \"%s\", \"subset\": \"%s\", \"prior_mode\": \"%s\", "
               "\"log_marglik\": %.17g, \"log_lik\": %.17g, \"n_params\": %lld, \"priors\": {",
               (long long)run.id, cs_curv_name(la.curv), cs_repr_name(la.repr), cs_la_subset_name(la.subset),
               cs_la_prior_name(la.prior_mode), la.log_marglik, la.log_lik, (long long)la.D);
        for (int i = 0; i < la.n_layers; i++) {
            printf("%s", i ? ", " : "");
            json_string(stdout, g->layers[la.layers[i].layer].name);
            printf(": %.17g", la.layers[i].prior);
        }
        printf("}}\n");
    } else {
        printf("laplace    %s %s over %s (%lld parameters, %lld samples)\n", cs_curv_name(la.curv),
               cs_repr_name(la.repr), cs_la_subset_name(la.subset), (long long)la.D, (long long)la.N);
        printf("log p(D|theta*)  %.6f\nlog marginal likelihood  %.6f (prior %s)\n", la.log_lik, la.log_marglik,
               cs_la_prior_name(la.prior_mode));
        for (int i = 0; i < la.n_layers; i++)
            printf("  prior precision %-24s %.6g\n", g->layers[la.layers[i].layer].name, la.layers[i].prior);
        if (test_data) {
            printf("%-12s %10s %9s %8s %8s   (%lld test samples)\n", "predictive", "nll", "accuracy", "ece", "brier",
                   (long long)ts.n);
            for (int m = 0; m < CS_LA_METHOD_COUNT; m++)
                if (methods & 1u << m)
                    printf("%-12s %10.5f %9.4f %8.4f %8.4f\n", cs_la_method_name((cs_la_method)m), pred[m].nll,
                           pred[m].accuracy, pred[m].ece, pred[m].brier);
        }
        printf("stored as run %lld in %s\n", (long long)run.id, db_path);
    }
    cs_laplace_free(&la);
    if (test_data)
        cs_dataset_free(&ts);
    cs_dataset_free(&ds);
    cs_graph_free(g);
    cli_run_close(&run);
    return code;
}
