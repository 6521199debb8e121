/* curvscope finetune MODEL.onnx --data SPEC --labels SPEC --precond NAME --out TUNED.onnx --db OUT.db */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/dist.h"
#include "cli/cli.h"
#include "curv/mem_plan.h"
#include "base/meminfo.h"
#include "finetune/finetune.h"
#include "precond/precond.h"
#include "onnx/writer.h"
#include "store/rows.h"

void cmd_finetune_usage(FILE *f)
{
    fprintf(f, "usage: curvscope finetune MODEL.onnx --data SPEC --labels SPEC --precond NAME\n"
               "                          --out TUNED.onnx --db OUT.db [options]\n\n"
               "Train the model's layer parameters and write the result as ONNX (the same\n"
               "graph, opsets and metadata; only the trained initializers change).\n\n"
               "  --precond NAME     the preconditioner:\n");
    for (int i = 0; i < cs_precond_count(); i++) {
        const cs_precond_def *d = cs_precond_at(i);
        fprintf(f, "                       %-8s %s\n", d->name, d->about);
        if (d->reads_curvature || d->ops->observe)
            fprintf(f, "                                default --damping %g\n", d->default_damping);
    }
    fprintf(f, "  --out FILE         the tuned model\n"
               "  --db FILE          progress: finetune_steps, finetune_evals\n"
               "  --val-data SPEC, --val-labels SPEC   validation set (evaluated per epoch)\n"
               "  --epochs E         default 1\n"
               "  --lr LR            default 0.001\n"
               "  --momentum M       momentum on the preconditioned direction, adamw beta1\n"
               "                     (default 0.9)\n"
               "  --nesterov         Nesterov momentum\n"
               "  --weight-decay WD  decoupled weight decay (default 0)\n"
               "  --lr-schedule S    constant or cosine (default constant)\n"
               "  --damping L        lambda added to the curvature (default: the preconditioner's,\n"
               "                     above; 0 gives pseudo-inverses)\n"
               "  --curvature C      fisher_mc, fisher_emp, fisher, ggn or hessian (default:\n"
               "                     fisher_mc; hessian for newton; fisher_emp for smw)\n"
               "  --update-interval K  curvature statistics and inverses every K steps\n"
               "                     (default 10; smw uses every step's batch)\n"
               "  --ema D            running average of the statistics, S <- D S + (1 - D) S_new\n"
               "                     (default 0.95; 0 keeps only the latest)\n"
               "  --inverse M        cholesky (default) or eig; eig (pseudo-inverse) at damping 0\n"
               "  --no-pi-damping    kfac: sqrt(lambda) on both factors instead of pi's split\n"
               "  --no-graft         shampoo: the raw direction, not SGD's norm per layer\n"
               "  --max-full N       largest layer block for full and newton (default 4096)\n"
               "  --mc-samples S     sampled labels per sample for fisher_mc (default 1)\n"
               "  --freeze L1,L2     layers (by name, as curvscope info lists them) kept fixed\n"
               "  --kl-clip K        scale curvature directions so lr^2 |d^T g| <= K\n"
               "                     (Ba et al. 2017; default 0.001, 0 turns it off)\n"
               "  --bn-train         update BatchNormalization running statistics from batches\n"
               "  --log-every K      a finetune_steps row every K steps (default 10)\n"
               "  --old-data SPEC, --old-labels SPEC   the old task's data: finetune_evals rows\n"
               "                     'old_start' (before tuning) and 'old' (each epoch)\n"
               "  --ewc RUN          elastic weight consolidation: add (lambda/2) sum F_i (theta_i -\n"
               "                     theta*_i)^2 with F the Fisher diagonal and theta* the weights of\n"
               "                     analyze run RUN in --db (one that stored importance rows)\n"
               "  --ewc-lambda L     lambda (default 1; F and the loss are both sample means)\n"
               "  --ewc-curvature C  ggn (= fisher for ce and mse; default) or fisher_emp\n"
               "  --ewc-repr R       diag (default: the stored diagonal) or kfac: Kronecker factors\n"
               "                     of each layer computed on --old-data at theta* (Ritter et al.\n"
               "                     2018); needs the analyzed model itself\n"
               "  --plan             print the memory and passes the run needs and exit (no --out\n"
               "                     or --db needed, nothing written)\n"
               "  --max-memory SIZE  refuse a run whose estimate is above SIZE (6G, 512M, bytes;\n"
               "                     default: the available memory)\n");
    cli_data_opts_usage(f);
    fprintf(f, "  --help             this text\n\n"
               "Shuffling is seeded: the same --seed gives the same run with --threads 1.\n");
}

/* A progress row, kept in memory until the run ends: the rows are written
 * in one transaction at the end, as analyze writes its results, because a
 * transaction held through the whole training would hold the database's
 * write lock as long and block every other writer (doc/design.md §4). */
typedef struct log_row {
    char kind;             /* 's' finetune_steps, 'e' finetune_evals, 'n' a fallback note,
                              'p' finetune_penalty (loss holds the penalty) */
    int epoch;
    int64_t step;
    double loss, acc, lr, seconds, sps;
    char split[16];        /* 'e': "train", "val", "old_start" or "old"; 'p': none */
    char *note;            /* 'n': owned */
} log_row;

typedef struct log_ctx {
    cs_store *db;
    int64_t run;
    cs_status st;
    cs_err err;
    log_row *rows;         /* owned, n_rows of cap_rows used */
    size_t n_rows, cap_rows;
    FILE *text;            /* progress lines: stdout, or stderr under --json */
    int n_notes;
    char notes[32][300];   /* fallbacks, for --json */
} log_ctx;

/* A new zeroed row at the end of c->rows, or NULL with c->st set. */
static log_row *log_push(log_ctx *c, char kind)
{
    if (c->st)
        return NULL;
    if (c->n_rows == c->cap_rows) {
        size_t cap = c->cap_rows ? 2 * c->cap_rows : 256;
        log_row *r = realloc(c->rows, cap * sizeof *r);
        if (!r) {
            c->st = cs_fail(&c->err, CS_ERR_NOMEM, "out of memory keeping %zu progress rows",
                            c->n_rows);
            return NULL;
        }
        c->rows = r;
        c->cap_rows = cap;
    }
    log_row *r = &c->rows[c->n_rows++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    return r;
}

/* Write the kept rows; the caller holds the transaction. */
static cs_status log_flush(log_ctx *c, cs_err *err)
{
    cs_status st = CS_OK;
    for (size_t i = 0; i < c->n_rows && !st; i++) {
        const log_row *r = &c->rows[i];
        if (r->kind == 's')
            st = cs_store_finetune_step(c->db, c->run, r->epoch, r->step, r->loss, r->acc, r->lr,
                                        r->seconds, r->sps, err);
        else if (r->kind == 'p')
            st = cs_store_finetune_penalty(c->db, c->run, r->epoch, r->step, r->loss, err);
        else if (r->kind == 'e')
            st = cs_store_finetune_eval(c->db, c->run, r->epoch, r->split, r->loss, r->acc, err);
        else
            st = cs_store_write_fallback(c->db, c->run, r->note, err);
    }
    return st;
}

static void log_free(log_ctx *c)
{
    for (size_t i = 0; i < c->n_rows; i++)
        free(c->rows[i].note);
    free(c->rows);
    c->rows = NULL;
    c->n_rows = c->cap_rows = 0;
}

static void on_step(void *vctx, int epoch, int64_t step, double loss, double acc, double lr, double s,
                    double sps)
{
    log_ctx *c = vctx;
    /* A loss that is not a number is a diverged run: an error, not a row of
     * NULLs (doc/design.md §7). */
    if (!c->st && !isfinite(loss))
        c->st = cs_fail(&c->err, CS_ERR_RUNTIME,
                        "the training diverged: the loss at epoch %d step %lld is %s (lower --lr, "
                        "or raise --damping)", epoch, (long long)step, isnan(loss) ? "NaN" : "infinite");
    log_row *r = log_push(c, 's');
    if (r)
        *r = (log_row){.kind = 's', .epoch = epoch, .step = step, .loss = loss, .acc = acc, .lr = lr,
                       .seconds = s, .sps = sps};
    if (isatty(2))
        fprintf(stderr, "\rfinetune: epoch %d step %lld loss %.4f", epoch, (long long)step, loss);
}

static void on_eval(void *vctx, int epoch, const char *split, double loss, double acc)
{
    log_ctx *c = vctx;
    log_row *r = log_push(c, 'e');
    if (r) {
        *r = (log_row){.kind = 'e', .epoch = epoch, .loss = loss, .acc = acc};
        snprintf(r->split, sizeof r->split, "%s", split);
    }
    if (isatty(2))
        fprintf(stderr, "\r\033[K");
    fprintf(c->text, "epoch %d %-5s loss %.6f accuracy %.4f\n", epoch, split, loss, acc);
}

static void on_penalty(void *vctx, int epoch, int64_t step, double penalty)
{
    log_row *r = log_push(vctx, 'p');
    if (r)
        *r = (log_row){.kind = 'p', .epoch = epoch, .step = step, .loss = penalty};
}

/* A layer that falls back to sgd: said on the terminal and kept with the run. */
static void on_note(void *vctx, const char *text)
{
    log_ctx *c = vctx;
    if (isatty(2))
        fprintf(stderr, "\r\033[K");
    fprintf(c->text, "note: %s\n", text);
    if (c->n_notes < 32)
        snprintf(c->notes[c->n_notes++], sizeof c->notes[0], "%s", text);
    log_row *r = log_push(c, 'n');
    if (r && !(r->note = strdup(text))) {
        c->n_rows--;
        c->st = cs_fail(&c->err, CS_ERR_NOMEM, "out of memory keeping a note");
    }
}

/* --json: the run's outcome as one object (no validation: nulls). */
static void print_json(const cs_finetune_result *r, const log_ctx *lc, const char *precond, const char *out,
                       const char *db, int64_t run)
{
    printf("{\"run\": %lld, \"db\": ", (long long)run);
    json_string(stdout, db);
    printf(", \"out\": ");
    json_string(stdout, out);
    printf(", \"precond\": ");
    json_string(stdout, precond);
    printf(", \"steps\": %lld, \"refreshes\": %lld", (long long)r->steps, (long long)r->refreshes);
    const char *k[] = {"seconds", "refresh_seconds", "train_loss", "train_accuracy", "val_loss", "val_accuracy"};
    const double v[] = {r->seconds, r->refresh_seconds, r->train_loss, r->train_accuracy, r->val_loss,
                        r->val_accuracy};
    for (int i = 0; i < 6; i++) {
        printf(", \"%s\": ", k[i]);
        json_number(stdout, v[i]);
    }
    printf(", \"fallbacks\": [");
    for (int i = 0; i < lc->n_notes; i++) {
        printf("%s", i ? ", " : "");
        json_string(stdout, lc->notes[i]);
    }
    printf("]}\n");
}

/* Values with their own words in the error. */
static int parse_ema(void *ema, const char *cmd, const char *value)
{
    if (cli_parse_real(cmd, "ema", value, false, ema))
        return 2;
    if (*(double *)ema >= 1)
        return cli_usage_error(cmd, "--ema is a decay in [0, 1), got '%s'", value);
    return 0;
}

static int parse_curvature(void *curvature, const char *cmd, const char *value)
{
    unsigned mask = 0;
    cs_err e = {0};
    if (cs_curv_parse_list(value, &mask, &e) || (mask & (mask - 1)))
        return cli_usage_error(cmd, "--curvature takes one of fisher_mc, fisher_emp, fisher, ggn, hessian, got '%s'",
                               value);
    for (int k = 0; k < CS_CURV_COUNT; k++)
        if (mask >> k & 1)
            *(int *)curvature = k;
    return 0;
}

/* One of two words: *on is set for yes, cleared for no. */
static int parse_choice(bool *on, const char *cmd, const char *option, const char *yes, const char *no,
                        const char *value)
{
    if (strcmp(value, yes) == 0)
        *on = true;
    else if (strcmp(value, no) == 0)
        *on = false;
    else
        return cli_usage_error(cmd, "--%s is %s or %s, got '%s'", option, no, yes, value);
    return 0;
}

static int parse_inverse(void *cholesky, const char *cmd, const char *value)
{
    return parse_choice(cholesky, cmd, "inverse", "cholesky", "eig", value);
}

static int parse_schedule(void *cosine, const char *cmd, const char *value)
{
    return parse_choice(cosine, cmd, "lr-schedule", "cosine", "constant", value);
}

int cmd_finetune(int argc, char **argv)
{
    const char *out = NULL, *db_path = NULL, *val_data = NULL, *val_labels = NULL, *model = NULL;
    const char *old_data = NULL, *old_labels = NULL, *ewc_curvature = "ggn", *ewc_repr = "diag";
    int64_t ewc_run = -1;
    double ewc_lambda = 1;
    bool ewc_given = false;
    bool plan_only = false;
    int64_t max_memory = 0;
    bool precond_given = false, lr_given = false, damping_given = false, momentum_given = false;
    cs_finetune_opts fo;
    cs_finetune_opts_init(&fo);
    cli_data_opts d;
    cli_data_opts_init(&d);
    const cli_opt opts[] = {
        CLI_OPT("precond", CLI_OPT_TEXT, &fo.precond, .seen = &precond_given),
        CLI_OPT("out", CLI_OPT_TEXT, &out),
        CLI_OPT("db", CLI_OPT_TEXT, &db_path),
        CLI_OPT("val-data", CLI_OPT_TEXT, &val_data),
        CLI_OPT("val-labels", CLI_OPT_TEXT, &val_labels),
        CLI_OPT("epochs", CLI_OPT_INT, &fo.epochs, .max = 100000),
        CLI_OPT("lr", CLI_OPT_POSITIVE, &fo.lr, .seen = &lr_given),
        CLI_OPT("momentum", CLI_OPT_REAL, &fo.momentum, .seen = &momentum_given),
        CLI_OPT("nesterov", CLI_OPT_FLAG, &fo.nesterov),
        CLI_OPT("weight-decay", CLI_OPT_REAL, &fo.weight_decay),
        CLI_OPT("lr-schedule", CLI_OPT_CALL, &fo.cosine, .call = parse_schedule),
        CLI_OPT("log-every", CLI_OPT_INT, &fo.log_every, .max = 1000000),
        CLI_OPT("damping", CLI_OPT_REAL, &fo.damping, .seen = &damping_given),
        CLI_OPT("curvature", CLI_OPT_CALL, &fo.curvature, .call = parse_curvature),
        CLI_OPT("update-interval", CLI_OPT_INT, &fo.update_interval, .max = 1000000),
        CLI_OPT("ema", CLI_OPT_CALL, &fo.ema, .call = parse_ema),
        CLI_OPT("inverse", CLI_OPT_CALL, &fo.cholesky, .call = parse_inverse),
        CLI_OPT("no-pi-damping", CLI_OPT_OFF, &fo.pi_damping),
        CLI_OPT("no-graft", CLI_OPT_OFF, &fo.graft),
        CLI_OPT("max-full", CLI_OPT_COUNT, &fo.max_full, .max = 1 << 20),
        CLI_OPT("mc-samples", CLI_OPT_INT, &fo.mc_samples, .max = 1000),
        CLI_OPT("freeze", CLI_OPT_TEXT, &fo.freeze),
        CLI_OPT("bn-train", CLI_OPT_FLAG, &fo.bn_train),
        CLI_OPT("kl-clip", CLI_OPT_REAL, &fo.kl_clip),
        CLI_OPT("old-data", CLI_OPT_TEXT, &old_data),
        CLI_OPT("old-labels", CLI_OPT_TEXT, &old_labels),
        CLI_OPT("ewc", CLI_OPT_COUNT, &ewc_run, .seen = &ewc_given),
        CLI_OPT("ewc-lambda", CLI_OPT_REAL, &ewc_lambda),
        CLI_OPT("ewc-curvature", CLI_OPT_TEXT, &ewc_curvature),
        CLI_OPT("ewc-repr", CLI_OPT_TEXT, &ewc_repr),
        CLI_OPT("json", CLI_OPT_FLAG, &d.json),
        CLI_OPT("plan", CLI_OPT_FLAG, &plan_only),
        CLI_OPT("max-memory", CLI_OPT_CALL, &max_memory, .call = cli_parse_memory),
    };
    int parsed = cli_parse_args("finetune", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &d,
                              cmd_finetune_usage, "MODEL.onnx", &model);
    if (parsed >= 0)
        return parsed;
    int code = 0;
    if (momentum_given)
        fo.beta1 = fo.momentum; /* adamw's beta1 follows --momentum */
    if (!d.data || !d.labels)
        return cli_usage_error("finetune", "missing --data SPEC or --labels SPEC");
    if (!precond_given)
        return cli_usage_error("finetune", "missing --precond NAME (%s)", cs_precond_names());
    const cs_precond_def *pdef = cs_precond_find(fo.precond);
    if (!pdef)
        return cli_usage_error("finetune", "unknown --precond '%s' (%s)", fo.precond, cs_precond_names());
    if (!lr_given)
        fo.lr = pdef->default_lr;
    if (!damping_given)
        fo.damping = pdef->default_damping;
    if ((!out || !db_path) && !plan_only)
        return cli_usage_error("finetune", "missing --out TUNED.onnx or --db OUT.db");
    if ((val_data == NULL) != (val_labels == NULL))
        return cli_usage_error("finetune", "--val-data and --val-labels go together");
    if ((old_data == NULL) != (old_labels == NULL))
        return cli_usage_error("finetune", "--old-data and --old-labels go together");
    bool ewc_kfac = strcmp(ewc_repr, "kfac") == 0;
    if (!ewc_kfac && strcmp(ewc_repr, "diag") != 0)
        return cli_usage_error("finetune", "--ewc-repr is diag or kfac, got '%s'", ewc_repr);
    if (ewc_kfac && (!ewc_given || !old_data))
        return cli_usage_error("finetune", "--ewc-repr kfac needs --ewc RUN and the old task's --old-data, "
                               "on which the factors are computed");
    if (!(ewc_lambda >= 0))
        return cli_usage_error("finetune", "--ewc-lambda must be >= 0");

    cli_run run;
    memset(&run, 0, sizeof run);
    run.id = -1;
    /* --plan reads a database only for --ewc's run */
    if ((!plan_only || (ewc_given && db_path)) && (code = cli_run_open(&run, db_path)))
        return code;
    if (plan_only && ewc_given && !db_path)
        return cli_usage_error("finetune", "--ewc RUN reads --db OUT.db");
    cs_err err = {0};
    cs_graph *g = cli_load_model_finite(model, &d, &code);
    if (!g) {
        cli_run_close(&run);
        return code;
    }
    cs_dataset ds, val, old;
    memset(&val, 0, sizeof val);
    memset(&old, 0, sizeof old);
    cs_ewc ewc;
    memset(&ewc, 0, sizeof ewc);
    /* --ewc is read before this run begins: a wrong RUN leaves no run */
    cs_status st = ewc_given ? cs_store_read_ewc(run.db, ewc_run, g, ewc_curvature, &ewc, &err) : CS_OK;
    ewc.lambda = ewc_lambda;
    if (!st && !(st = cs_dataset_load(&ds, d.data, d.labels, d.samples, &err))) {
        if (val_data && (st = cs_dataset_load(&val, val_data, val_labels, 0, &err)))
            cs_dataset_free(&ds);
        else if (old_data && (st = cs_dataset_load(&old, old_data, old_labels, 0, &err))) {
            cs_dataset_free(&ds);
            if (val_data)
                cs_dataset_free(&val);
        }
    }
    int n_kfac = 0;
    if (!st && ewc_kfac) {
        /* kfac_factors keeps the factors' eigenvalues only: the factors
         * themselves are recomputed on the old data at theta* */
        cs_curv_kind kc = strcmp(ewc_curvature, "fisher_emp") == 0 ? CS_CURV_FISHER_EMP : CS_CURV_GGN;
        if ((st = cs_ewc_kfac_from_data(&ewc, g, &old, kc, d.batch, d.loss, &d.norm, &n_kfac, &err))) {
            cs_dataset_free(&ds);
            cs_dataset_free(&old);
            if (val_data)
                cs_dataset_free(&val);
        }
    }
    if (st) {
        cs_ewc_free(&ewc);
        cs_graph_free(g);
        cli_run_close(&run);
        return cli_report(st, &err);
    }
    fo.batch = d.batch;
    fo.seed = d.seed;
    fo.loss = d.loss;
    fo.norm = &d.norm;
    fo.val = val_data ? &val : NULL;
    fo.old = old_data ? &old : NULL;
    fo.ewc = ewc_given ? &ewc : NULL;
    /* The plan before the work: printed, refused above the limit. */
    cs_mem_plan plan;
    cs_mem_plan_init(&plan);
    int64_t limit = max_memory ? max_memory : cli_memory_default();
    st = cs_mem_plan_add_process(&plan, g, &ds, cs_mem_resident_bytes(), &err);
    if (!st)
        st = cs_finetune_plan(g, &ds, &fo, &plan, &err);
    if (!st) {
        cli_plan_print(d.json ? stderr : stdout, &plan, g, limit);
        code = cli_plan_refuse(&plan, limit, "finetune");
    }
    if (st || code || plan_only) {
        if (st)
            code = cli_report(st, &err);
        cs_mem_plan_free(&plan);
        cs_dataset_free(&ds);
        if (val_data)
            cs_dataset_free(&val);
        if (old_data)
            cs_dataset_free(&old);
        cs_ewc_free(&ewc);
        cs_graph_free(g);
        cli_run_close(&run);
        return code;
    }
    st = cli_run_begin(&run, "finetune", model, &d, ds.n, argc, argv, &err);
    if (!st)
        st = cli_plan_store(run.db, run.id, &plan, &err);
    cs_mem_plan_free(&plan);
    cs_curv_kind curv = fo.curvature >= 0 ? (cs_curv_kind)fo.curvature : pdef->default_curv;
    if (!st)
        st = cs_store_write_finetune_conventions(run.db, run.id, &fo,
                                                 pdef->reads_curvature ? cs_curv_name(curv) : "none", &err);
    if (!st && ewc_given)
        st = cs_store_write_ewc_conventions(run.db, run.id, ewc_run, ewc_curvature, ewc_kfac ? "kfac" : "diag",
                                            n_kfac, ewc_lambda, &err);
    log_ctx lc = {.db = run.db, .run = run.id, .text = d.json ? stderr : stdout};
    fo.on_step = on_step;
    fo.on_eval = on_eval;
    fo.on_note = on_note;
    fo.on_penalty = on_penalty;
    fo.ctx = &lc;
    fo.cancel = cli_run_cancel();
    cs_finetune_result res;
    if (!st) {
        st = cs_finetune(g, &ds, &fo, &res, &err);
        if (!st && lc.st) {
            st = lc.st;
            err = lc.err;
        }
    }
    if (!st && !(st = cs_store_begin(run.db, &err)) && !(st = log_flush(&lc, &err)))
        st = cs_store_commit(run.db, &err);
    log_free(&lc);
    /* Every rank holds the same weights; rank 0 alone writes them
     * (doc/design.md §2.12). */
    if (!st && cs_dist_rank() == 0)
        st = cs_onnx_write_updated(model, g, out, &err);
    st = cli_run_end(&run, st, &err, st ? NAN : res.seconds);
    if (st)
        code = cli_report(st, &err);
    else if (d.json)
        print_json(&res, &lc, fo.precond, out, db_path, run.id);
    else
        printf("%lld steps in %.2f s (%lld curvature refreshes, %.2f s); final train loss %.6f accuracy %.4f; "
               "wrote %s (run %lld in %s)\n",
               (long long)res.steps, res.seconds, (long long)res.refreshes, res.refresh_seconds, res.train_loss,
               res.train_accuracy, out, (long long)run.id, db_path);
    if (!st && val_data && !d.json)
        printf("final validation loss %.6f accuracy %.4f\n", res.val_loss, res.val_accuracy);
    cs_dataset_free(&ds);
    if (val_data)
        cs_dataset_free(&val);
    if (old_data)
        cs_dataset_free(&old);
    cs_ewc_free(&ewc);
    cs_graph_free(g);
    cli_run_close(&run);
    return code;
}
