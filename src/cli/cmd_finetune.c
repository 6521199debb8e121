/* curvscope finetune MODEL.onnx --data SPEC --labels SPEC --precond NAME --out TUNED.onnx --db OUT.db */
#include "config.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/sha256.h"
#include "cli/cli.h"
#include "finetune/finetune.h"
#include "precond/precond.h"
#include "onnx/writer.h"
#include "store/store.h"

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
               "  --log-every K      a finetune_steps row every K steps (default 10)\n");
    cli_data_opts_usage(f);
    fprintf(f, "  --help             this text\n\n"
               "Shuffling is seeded: the same --seed gives the same run with --threads 1.\n");
}

static volatile int ft_cancel;
static void ft_on_signal(int sig)
{
    (void)sig;
    ft_cancel = 1;
}

typedef struct log_ctx {
    cs_store *db;
    int64_t run;
    cs_status st;
    cs_err err;
    FILE *text;            /* progress lines: stdout, or stderr under --json */
    int n_notes;
    char notes[32][300];   /* fallbacks, for --json */
} log_ctx;

static void on_step(void *vctx, int epoch, int64_t step, double loss, double acc, double lr, double s,
                    double sps)
{
    log_ctx *c = vctx;
    if (!c->st)
        c->st = cs_store_finetune_step(c->db, c->run, epoch, step, loss, acc, lr, s, sps, &c->err);
    if (isatty(2))
        fprintf(stderr, "\rfinetune: epoch %d step %lld loss %.4f", epoch, (long long)step, loss);
}

static void on_eval(void *vctx, int epoch, const char *split, double loss, double acc)
{
    log_ctx *c = vctx;
    if (!c->st)
        c->st = cs_store_finetune_eval(c->db, c->run, epoch, split, loss, acc, &c->err);
    if (isatty(2))
        fprintf(stderr, "\r\033[K");
    fprintf(c->text, "epoch %d %-5s loss %.6f accuracy %.4f\n", epoch, split, loss, acc);
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
    char key[160];
    const char *sp = strchr(text + 6, ' ');
    snprintf(key, sizeof key, "fallback.%.*s", sp ? (int)(sp - text - 6) : 100, text + 6);
    if (!c->st)
        c->st = cs_store_convention(c->db, c->run, key, text, &c->err);
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

int cmd_finetune(int argc, char **argv)
{
    static const struct option opts[] = {
        DATA_LONG_OPTS,
        {"precond", required_argument, NULL, 'p'}, {"out", required_argument, NULL, 'o'},
        {"db", required_argument, NULL, 'd'}, {"val-data", required_argument, NULL, 'v'},
        {"val-labels", required_argument, NULL, 'w'}, {"epochs", required_argument, NULL, 'e'},
        {"lr", required_argument, NULL, 'l'}, {"momentum", required_argument, NULL, 'm'},
        {"nesterov", no_argument, NULL, 'n'}, {"weight-decay", required_argument, NULL, 'W'},
        {"lr-schedule", required_argument, NULL, 'S'}, {"log-every", required_argument, NULL, 'k'},
        {"damping", required_argument, NULL, 'D'}, {"curvature", required_argument, NULL, 'C'},
        {"update-interval", required_argument, NULL, 'K'}, {"ema", required_argument, NULL, 'E'},
        {"inverse", required_argument, NULL, 'I'}, {"no-pi-damping", no_argument, NULL, 'Q'},
        {"no-graft", no_argument, NULL, 'G'}, {"max-full", required_argument, NULL, 'F'},
        {"mc-samples", required_argument, NULL, 'M'}, {"freeze", required_argument, NULL, 'Z'},
        {"bn-train", no_argument, NULL, 'B'}, {"kl-clip", required_argument, NULL, 'L'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'}, {0}};
    cli_data_opts d;
    cli_data_opts_init(&d);
    cs_finetune_opts fo;
    cs_finetune_opts_init(&fo);
    const char *out = NULL, *db_path = NULL, *val_data = NULL, *val_labels = NULL;
    bool precond_given = false, lr_given = false, damping_given = false;
    int max_full = 4096;
    int c, idx;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, &idx)) != -1) {
        switch (c) {
        case 0:
            if (cli_data_opt(&d, "finetune", opts[idx].name, optarg) < 0)
                return 2;
            break;
        case 'p': fo.precond = optarg; precond_given = true; break;
        case 'o': out = optarg; break;
        case 'd': db_path = optarg; break;
        case 'v': val_data = optarg; break;
        case 'w': val_labels = optarg; break;
        case 'e':
            if (cli_parse_int("finetune", "epochs", optarg, 100000, &fo.epochs))
                return 2;
            break;
        case 'k':
            if (cli_parse_int("finetune", "log-every", optarg, 1000000, &fo.log_every))
                return 2;
            break;
        case 'l':
            if (cli_parse_real("finetune", "lr", optarg, true, &fo.lr))
                return 2;
            lr_given = true;
            break;
        case 'D':
            if (cli_parse_real("finetune", "damping", optarg, false, &fo.damping))
                return 2;
            damping_given = true;
            break;
        case 'E':
            if (cli_parse_real("finetune", "ema", optarg, false, &fo.ema))
                return 2;
            if (fo.ema >= 1)
                return cli_usage_error("finetune", "--ema is a decay in [0, 1), got '%s'", optarg);
            break;
        case 'K':
            if (cli_parse_int("finetune", "update-interval", optarg, 1000000, &fo.update_interval))
                return 2;
            break;
        case 'F':
            if (cli_parse_int("finetune", "max-full", optarg, 1 << 20, &max_full))
                return 2;
            fo.max_full = max_full;
            break;
        case 'M':
            if (cli_parse_int("finetune", "mc-samples", optarg, 1000, &fo.mc_samples))
                return 2;
            break;
        case 'C': {
            unsigned mask = 0;
            cs_err e = {0};
            if (cs_curv_parse_list(optarg, &mask, &e) || (mask & (mask - 1)))
                return cli_usage_error("finetune", "--curvature takes one of fisher_mc, fisher_emp, fisher, ggn, hessian, got '%s'",
                                       optarg);
            for (int k = 0; k < CS_CURV_COUNT; k++)
                if (mask >> k & 1)
                    fo.curvature = k;
            break;
        }
        case 'I':
            if (strcmp(optarg, "eig") == 0)
                fo.cholesky = false;
            else if (strcmp(optarg, "cholesky") != 0)
                return cli_usage_error("finetune", "--inverse is eig or cholesky, got '%s'", optarg);
            break;
        case 'Q': fo.pi_damping = false; break;
        case 'G': fo.graft = false; break;
        case 'Z': fo.freeze = optarg; break;
        case 'B': fo.bn_train = true; break;
        case 'j': d.json = true; break;
        case 'L':
            if (cli_parse_real("finetune", "kl-clip", optarg, false, &fo.kl_clip))
                return 2;
            break;
        case 'm':
            if (cli_parse_real("finetune", "momentum", optarg, false, &fo.momentum))
                return 2;
            fo.beta1 = fo.momentum;
            break;
        case 'W':
            if (cli_parse_real("finetune", "weight-decay", optarg, false, &fo.weight_decay))
                return 2;
            break;
        case 'n': fo.nesterov = true; break;
        case 'S':
            if (strcmp(optarg, "cosine") == 0)
                fo.cosine = true;
            else if (strcmp(optarg, "constant") != 0)
                return cli_usage_error("finetune", "--lr-schedule is constant or cosine, got '%s'", optarg);
            break;
        case 'h': cmd_finetune_usage(stdout); return 0;
        default: return cli_option_error("finetune", c, argv, optind);
        }
    }
    if (optind >= argc)
        return cli_usage_error("finetune", "missing MODEL.onnx");
    if (optind + 1 < argc)
        return cli_usage_error("finetune", "unexpected argument '%s'", argv[optind + 1]);
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
    if (!out || !db_path)
        return cli_usage_error("finetune", "missing --out TUNED.onnx or --db OUT.db");
    if ((val_data == NULL) != (val_labels == NULL))
        return cli_usage_error("finetune", "--val-data and --val-labels go together");

    const char *model = argv[optind];
    cs_err err = {0};
    cs_store *db = NULL;
    cs_status st = cs_store_open(db_path, &db, &err);
    if (st)
        return cli_report(st, &err);
    int code = 0;
    cs_graph *g = cli_load_model(model, &code);
    if (!g) {
        cs_store_close(db);
        return code;
    }
    cs_dataset ds, val;
    memset(&val, 0, sizeof val);
    st = cs_dataset_load(&ds, d.data, d.labels, d.samples, &err);
    if (!st && val_data && (st = cs_dataset_load(&val, val_data, val_labels, 0, &err)))
        cs_dataset_free(&ds);
    if (st) {
        cs_graph_free(g);
        cs_store_close(db);
        return cli_report(st, &err);
    }
    char sha[CS_SHA256_HEX_CHARS + 1] = "", data_desc[1200], args[4096] = "curvscope";
    for (int i = 0; i < argc; i++)
        snprintf(args + strlen(args), sizeof args - strlen(args), " %s", argv[i]);
    snprintf(data_desc, sizeof data_desc, "%s %s", d.data, d.labels);
    st = cs_sha256_file(model, sha, &err);
    cs_run_info info = {.kind = "finetune", .model_path = model, .model_sha256 = sha, .data = data_desc,
                        .loss = cs_loss_name(d.loss), .argv = args, .n_samples = ds.n};
    int64_t run = -1;
    if (!st)
        st = cs_store_run_begin(db, &info, &run, &err);
    char buf[64];
    cs_curv_kind curv = fo.curvature >= 0 ? (cs_curv_kind)fo.curvature : pdef->default_curv;
    const char *kv[][2] = {{"precond", fo.precond}, {"lr_schedule", fo.cosine ? "cosine" : "constant"},
                           {"nesterov", fo.nesterov ? "1" : "0"},
                           {"batchnorm_mode", fo.bn_train ? "running statistics updated from batch statistics (EMA), normalised with running statistics"
                                                          : "running statistics frozen"},
                           {"master_weights", "float64"},
                           {"curvature", pdef->reads_curvature ? cs_curv_name(curv) : "none"},
                           {"inverse", fo.cholesky ? "cholesky" : "eig"},
                           {"kfac_damping", fo.pi_damping ? "pi split (Martens & Grosse 2015, 6.3)" : "sqrt(lambda) on both factors"},
                           {"shampoo_graft", fo.graft ? "sgd norm per layer" : "none"},
                           {"frozen_layers", fo.freeze ? fo.freeze : ""}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !st; i++)
        st = cs_store_convention(db, run, kv[i][0], kv[i][1], &err);
    double nums[] = {fo.lr, fo.momentum, fo.weight_decay, (double)fo.epochs, (double)d.batch, (double)d.seed,
                     fo.damping, fo.ema, (double)fo.update_interval, (double)fo.max_full, (double)fo.mc_samples,
                     fo.kl_clip};
    const char *nk[] = {"lr", "momentum", "weight_decay", "epochs", "batch", "seed",
                        "damping", "ema", "update_interval", "max_full", "mc_samples", "kl_clip"};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0] && !st; i++) {
        snprintf(buf, sizeof buf, "%.17g", nums[i]);
        st = cs_store_convention(db, run, nk[i], buf, &err);
    }
    fo.batch = d.batch;
    fo.seed = d.seed;
    fo.loss = d.loss;
    fo.norm = &d.norm;
    fo.val = val_data ? &val : NULL;
    log_ctx lc = {.db = db, .run = run, .text = d.json ? stderr : stdout};
    fo.on_step = on_step;
    fo.on_eval = on_eval;
    fo.on_note = on_note;
    fo.ctx = &lc;
    fo.cancel = &ft_cancel;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ft_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    cs_finetune_result res;
    if (!st && !(st = cs_store_begin(db, &err))) {
        st = cs_finetune(g, &ds, &fo, &res, &err);
        if (!st && lc.st) {
            st = lc.st;
            err = lc.err;
        }
        if (!st)
            st = cs_store_commit(db, &err);
    }
    if (!st)
        st = cs_onnx_write_updated(model, g, out, &err);
    if (run >= 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        cs_err e2 = {0};
        cs_status s2 = cs_store_run_end(db, run, st ? "failed" : "done", st ? NAN : res.seconds,
                                        (int64_t)ru.ru_maxrss * 1024, st ? err.msg : NULL, &e2);
        if (!st && s2) {
            st = s2;
            err = e2;
        }
    }
    if (st)
        code = cli_report(st, &err);
    else if (d.json)
        print_json(&res, &lc, fo.precond, out, db_path, run);
    else
        printf("%lld steps in %.2f s (%lld curvature refreshes, %.2f s); final train loss %.6f accuracy %.4f; "
               "wrote %s (run %lld in %s)\n",
               (long long)res.steps, res.seconds, (long long)res.refreshes, res.refresh_seconds, res.train_loss,
               res.train_accuracy, out, (long long)run, db_path);
    if (!st && val_data && !d.json)
        printf("final validation loss %.6f accuracy %.4f\n", res.val_loss, res.val_accuracy);
    cs_dataset_free(&ds);
    if (val_data)
        cs_dataset_free(&val);
    cs_graph_free(g);
    cs_store_close(db);
    return code;
}
