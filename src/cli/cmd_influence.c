/* curvscope influence MODEL.onnx --data SPEC --labels SPEC --query-data SPEC
 * --query-labels SPEC --db OUT.db: which training examples helped or hurt
 * each query (influence/influence.h has the maths). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "curv/curv.h"
#include "influence/influence.h"
#include "influence/validate.h"
#include "precond/precond.h"
#include "store/rows.h"

/* The most checkpoints --checkpoints takes. */
#define CKPT_MAX 64

void cmd_influence_usage(FILE *f)
{
    fprintf(f, "usage: curvscope influence MODEL.onnx --data SPEC --labels SPEC --query-data SPEC\n"
               "                           --query-labels SPEC --db OUT.db [options]\n\n"
               "Influence of each training example on each query's loss; positive = helpful\n"
               "(training on the example lowered the query's loss).\n\n"
               "  --query-data SPEC, --query-labels SPEC   the queries\n"
               "  --query-samples N  the first N queries only (default all; memory grows with\n"
               "                     N times the parameter count)\n"
               "  --db FILE          influence_scores, influence_self, v_mislabel_candidates\n"
               "  --method LIST      of ekfac, dot, cosine, tracin (default the first three; ekfac also\n"
               "                     gives self-influence)\n"
               "  --damping L        lambda added to the curvature (default 0.001)\n"
               "  --curvature C      ggn (default; the Fisher for ce), fisher, fisher_mc,\n"
               "                     fisher_emp\n"
               "  --inverse NAME     ekfac (default) or full: the exact damped layer blocks\n"
               "                     (layers up to --max-full parameters)\n"
               "  --max-full N       largest layer block for --inverse full (default 4096)\n"
               "  --top-k K          stored scores per query and per training example and\n"
               "                     sign (default 10)\n"
               "  --full-matrix      also every (query, training example) pair\n"
               "  --checkpoints LIST for tracin: ONNX files of the same network saved during\n"
               "                     training (MODEL itself counts only when listed)\n"
               "  --checkpoint-lr L  the learning rate at each checkpoint: one value for all,\n"
               "                     or one per checkpoint (default 1)\n"
               "  --validate K       leave-one-out check of the scores: retrain without each of K\n"
               "                     random training examples; influence_loo, influence_validation\n"
               "  --lds S            linear datamodeling score over S random subsets\n"
               "  --lds-fraction A   training examples per subset / all (default 0.5)\n"
               "  --validate-epochs E  full-batch gradient steps of each retraining (default 100)\n"
               "  --validate-lr LR   their learning rate (default 0.1)\n"
               "  --validate-wd WD   their decoupled weight decay (default 0)\n");
    cli_data_opts_usage(f);
    fprintf(f, "  --help             this text\n");
}

/* --method: a comma-separated subset of ekfac, dot, cosine, tracin (the
 * bits CS_INF_* in this order). */
static int parse_methods(void *methods, const char *cmd, const char *value)
{
    static const char *const names[] = {"ekfac", "dot", "cosine", "tracin"};
    unsigned m = 0;
    const char *p = value;
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (strlen(names[i]) == n && strncmp(p, names[i], n) == 0)
                found = i;
        if (found < 0)
            return cli_usage_error(cmd, "--method takes ekfac, dot, cosine, tracin (comma-separated), got '%s'",
                                   value);
        m |= 1u << found;
        p += n + (p[n] == ',');
    }
    if (!m)
        return cli_usage_error(cmd, "--method needs at least one of ekfac, dot, cosine, tracin");
    *(unsigned *)methods = m;
    return 0;
}

static int parse_curvature(void *curvature, const char *cmd, const char *value)
{
    unsigned mask = 0;
    cs_err e = {0};
    if (cs_curv_parse_list(value, &mask, &e) || (mask & (mask - 1)) || (mask >> CS_CURV_HESSIAN & 1))
        return cli_usage_error(cmd, "--curvature takes one of ggn, fisher, fisher_mc, fisher_emp, got '%s'", value);
    for (int k = 0; k < CS_CURV_COUNT; k++)
        if (mask >> k & 1)
            *(cs_curv_kind *)curvature = (cs_curv_kind)k;
    return 0;
}

static int parse_inverse(void *precond, const char *cmd, const char *value)
{
    if (strcmp(value, "ekfac") && strcmp(value, "full"))
        return cli_usage_error(cmd, "--inverse is ekfac or full, got '%s'", value);
    *(const char **)precond = value;
    return 0;
}

int cmd_influence(int argc, char **argv)
{
    const char *db_path = NULL, *qdata = NULL, *qlabels = NULL, *model = NULL;
    int64_t top_k = 10, qsamples = 0;
    bool full = false;
    const char *checkpoints = NULL;
    double ck_lr[CKPT_MAX];
    int n_ck_lr = 0;
    cs_influence_opts io;
    cs_influence_opts_init(&io);
    cli_data_opts d;
    cli_data_opts_init(&d);
    cs_validate_opts vo;
    cs_validate_opts_init(&vo);
    const cli_opt opts[] = {
        CLI_OPT("query-data", CLI_OPT_TEXT, &qdata),
        CLI_OPT("query-labels", CLI_OPT_TEXT, &qlabels),
        CLI_OPT("query-samples", CLI_OPT_COUNT, &qsamples),
        CLI_OPT("db", CLI_OPT_TEXT, &db_path),
        CLI_OPT("method", CLI_OPT_CALL, &io.methods, .call = parse_methods),
        CLI_OPT("damping", CLI_OPT_REAL, &io.damping),
        CLI_OPT("curvature", CLI_OPT_CALL, &io.curv, .call = parse_curvature),
        CLI_OPT("inverse", CLI_OPT_CALL, &io.precond, .call = parse_inverse),
        CLI_OPT("max-full", CLI_OPT_COUNT, &io.max_full, .max = 1 << 20),
        CLI_OPT("top-k", CLI_OPT_COUNT, &top_k, .max = 1 << 20),
        CLI_OPT("full-matrix", CLI_OPT_FLAG, &full),
        CLI_OPT("checkpoints", CLI_OPT_TEXT, &checkpoints),
        CLI_OPT("checkpoint-lr", CLI_OPT_LIST, ck_lr, .max = 1e30, .count = &n_ck_lr, .max_n = CKPT_MAX,
                .replace = true),
        CLI_OPT("json", CLI_OPT_FLAG, &d.json),
        CLI_OPT("validate", CLI_OPT_COUNT, &vo.loo, .max = 1 << 20),
        CLI_OPT("lds", CLI_OPT_COUNT, &vo.lds, .max = 1 << 20),
        CLI_OPT("lds-fraction", CLI_OPT_POSITIVE, &vo.lds_fraction),
        CLI_OPT("validate-epochs", CLI_OPT_INT, &vo.epochs, .max = 1 << 20),
        CLI_OPT("validate-lr", CLI_OPT_POSITIVE, &vo.lr),
        CLI_OPT("validate-wd", CLI_OPT_REAL, &vo.weight_decay),
    };
    int parsed = cli_parse_args("influence", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &d,
                                cmd_influence_usage, "MODEL.onnx", &model);
    if (parsed >= 0)
        return parsed;
    if (!d.data || !d.labels)
        return cli_usage_error("influence", "missing --data SPEC or --labels SPEC");
    if (!qdata || !qlabels)
        return cli_usage_error("influence", "missing --query-data SPEC or --query-labels SPEC");
    if (!db_path)
        return cli_usage_error("influence", "missing --db OUT.db");
    if ((io.methods & CS_INF_EKFAC) && !(io.damping > 0) && strcmp(io.precond, "ekfac") == 0)
        return cli_usage_error("influence", "--damping must be > 0 for ekfac influence");
    /* TracIn's checkpoints: a comma-separated list of paths */
    char *ck_text = NULL;
    const char *ck_path[CKPT_MAX];
    int n_ck = 0;
    if (!!(io.methods & CS_INF_TRACIN) != !!checkpoints)
        return cli_usage_error("influence", checkpoints ? "--checkpoints is for --method tracin"
                                                        : "--method tracin needs --checkpoints A.onnx,B.onnx,...");
    if (checkpoints) {
        if (!(ck_text = strdup(checkpoints))) {
            cs_err nomem = {0};
            return cli_report(cs_fail(&nomem, CS_ERR_NOMEM, "out of memory"), &nomem);
        }
        for (char *save = NULL, *t = strtok_r(ck_text, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (n_ck == CKPT_MAX) {
                free(ck_text);
                return cli_usage_error("influence", "--checkpoints takes at most %d files", CKPT_MAX);
            }
            ck_path[n_ck++] = t;
        }
        if (n_ck == 0 || (n_ck_lr != 0 && n_ck_lr != 1 && n_ck_lr != n_ck)) {
            free(ck_text);
            return n_ck == 0 ? cli_usage_error("influence", "--checkpoints names no file")
                             : cli_usage_error("influence", "--checkpoint-lr has %d values for %d checkpoints "
                                               "(give one, or one per checkpoint)", n_ck_lr, n_ck);
        }
        for (int k = 0; k < n_ck; k++)
            ck_lr[k] = n_ck_lr == 0 ? 1.0 : ck_lr[n_ck_lr == 1 ? 0 : k];
    }
    int code = 0;
    cli_run run;
    if ((code = cli_run_open(&run, db_path)))
        return code;
    cs_err err = {0};
    cs_graph *g = cli_load_model_finite(model, &d, &code);
    cs_graph *ck_graph[CKPT_MAX] = {0};
    for (int k = 0; g && k < n_ck; k++)
        if (!(ck_graph[k] = cli_load_model_finite(ck_path[k], &d, &code))) {
            for (int j = 0; j < k; j++)
                cs_graph_free(ck_graph[j]);
            cs_graph_free(g);
            g = NULL;
        }
    if (!g) {
        free(ck_text);
        cli_run_close(&run);
        return code;
    }
    io.checkpoints = (const cs_graph *const *)ck_graph;
    io.checkpoint_lr = ck_lr;
    io.n_checkpoints = n_ck;
    cs_dataset train, query;
    memset(&query, 0, sizeof query);
    cs_status st = cs_dataset_load(&train, d.data, d.labels, d.samples, &err);
    if (!st && (st = cs_dataset_load(&query, qdata, qlabels, qsamples, &err)))
        cs_dataset_free(&train);
    if (st) {
        for (int k = 0; k < n_ck; k++)
            cs_graph_free(ck_graph[k]);
        free(ck_text);
        cs_graph_free(g);
        cli_run_close(&run);
        return cli_report(st, &err);
    }
    io.batch = d.batch;
    io.seed = d.seed;
    io.loss = d.loss;
    io.norm = &d.norm;
    io.cancel = cli_run_cancel();
    cs_influence_result res;
    memset(&res, 0, sizeof res);
    st = cli_run_begin(&run, "influence", model, &d, train.n, argc, argv, &err);
    if (!st)
        st = cs_influence_compute(g, &train, &query, &io, &res, &err);
    bool validate = vo.loo || vo.lds;
    cs_validate_result vr;
    memset(&vr, 0, sizeof vr);
    vo.seed = d.seed, vo.loss = d.loss, vo.norm = &d.norm, vo.cancel = io.cancel;
    if (!st && validate)
        st = cs_influence_validate(g, &train, &query, &res, &vo, &vr, &err);
    if (!st && !(st = cs_store_begin(run.db, &err))) {
        for (int k = 0; k < n_ck && !st; k++) {
            /* the checkpoints and their learning rates, in order */
            char key[64], lr[64];
            snprintf(key, sizeof key, "tracin_checkpoint.%d", k + 1);
            if (!(st = cs_store_convention(run.db, run.id, key, ck_path[k], &err))) {
                snprintf(key, sizeof key, "tracin_lr.%d", k + 1);
                snprintf(lr, sizeof lr, "%.17g", ck_lr[k]);
                st = cs_store_convention(run.db, run.id, key, lr, &err);
            }
        }
        if (!st && !(st = cs_store_write_influence_conventions(run.db, run.id, &io, &res, g, &err)) &&
            !(st = cs_store_write_influence(run.db, run.id, &res, &train, top_k, full, &err)) &&
            !(validate && (st = cs_store_write_influence_validation(run.db, run.id, &vo, &vr, &err))))
            st = cs_store_commit(run.db, &err);
        else
            cs_store_rollback(run.db);
    }
    for (int l = 0; !st && l < g->n_layers; l++)
        if (res.excluded[l])
            printf("note: layer %s (%s) excluded from every method: %s\n", g->layers[l].name,
                   g->layers[l].op_type, res.why[l] ? res.why[l] : "no K-FAC form");
    for (int k = 0; !st && !d.json && k < vr.n_methods; k++) {
        const cs_validate_method *v = &vr.methods[k];
        if (vr.n_loo)
            printf("leave-one-out %s: Pearson %.4f Spearman %.4f over %lld examples x %lld queries\n", v->name,
                   v->loo_pearson, v->loo_spearman, (long long)vr.n_loo, (long long)vr.n_query);
        if (vr.n_lds)
            printf("LDS %s: %.4f (mean Spearman over %lld queries, %lld subsets of %lld)\n", v->name, v->lds,
                   (long long)v->lds_queries, (long long)vr.n_lds, (long long)vr.subset_size);
    }
    double secs = cli_run_seconds(&run);
    st = cli_run_end(&run, st, &err, st ? NAN : secs);
    if (st)
        code = cli_report(st, &err);
    else if (d.json) {
        printf("{\"run\": %lld, \"db\": ", (long long)run.id);
        json_string(stdout, db_path);
        printf(", \"n_train\": %lld, \"n_query\": %lld, \"params_used\": %lld, \"seconds\": ",
               (long long)res.n_train, (long long)res.n_query, (long long)res.params_used);
        json_number(stdout, secs);
        printf("}\n");
    } else
        printf("influence of %lld training examples on %lld queries over %lld of %lld parameters in %.2f s "
               "(run %lld in %s)\n",
               (long long)res.n_train, (long long)res.n_query, (long long)res.params_used,
               (long long)g->n_param_scalars, secs, (long long)run.id, db_path);
    cs_influence_result_free(&res);
    cs_validate_result_free(&vr);
    cs_dataset_free(&train);
    cs_dataset_free(&query);
    for (int k = 0; k < n_ck; k++)
        cs_graph_free(ck_graph[k]);
    free(ck_text);
    cs_graph_free(g);
    cli_run_close(&run);
    return code;
}
