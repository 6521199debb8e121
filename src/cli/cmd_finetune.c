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
#include "onnx/writer.h"
#include "store/store.h"

void cmd_finetune_usage(FILE *f)
{
    fprintf(f, "usage: curvscope finetune MODEL.onnx --data SPEC --labels SPEC --precond NAME\n"
               "                          --out TUNED.onnx --db OUT.db [options]\n\n"
               "Train the model's layer parameters and write the result as ONNX (the same\n"
               "graph, opsets and metadata; only the trained initializers change).\n\n"
               "  --precond NAME     sgd (momentum, --nesterov) or adamw\n"
               "  --out FILE         the tuned model\n"
               "  --db FILE          progress: finetune_steps, finetune_evals\n"
               "  --val-data SPEC, --val-labels SPEC   validation set (evaluated per epoch)\n"
               "  --epochs E         default 1\n"
               "  --lr LR            default 0.01\n"
               "  --momentum M       sgd momentum, adamw beta1 (default 0.9)\n"
               "  --nesterov         Nesterov momentum (sgd)\n"
               "  --weight-decay WD  decoupled weight decay (default 0)\n"
               "  --lr-schedule S    constant or cosine (default constant)\n"
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
    printf("epoch %d %-5s loss %.6f accuracy %.4f\n", epoch, split, loss, acc);
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
        {"help", no_argument, NULL, 'h'}, {0}};
    cli_data_opts d;
    cli_data_opts_init(&d);
    cs_finetune_opts fo;
    cs_finetune_opts_init(&fo);
    const char *out = NULL, *db_path = NULL, *val_data = NULL, *val_labels = NULL;
    bool precond_given = false;
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
        return cli_usage_error("finetune", "missing --precond NAME (sgd, adamw)");
    if (strcmp(fo.precond, "sgd") != 0 && strcmp(fo.precond, "adamw") != 0)
        return cli_usage_error("finetune", "--precond %s: finetune supports sgd and adamw so far", fo.precond);
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
    const char *kv[][2] = {{"precond", fo.precond}, {"lr_schedule", fo.cosine ? "cosine" : "constant"},
                           {"nesterov", fo.nesterov ? "1" : "0"}, {"batchnorm_mode", "running statistics frozen"},
                           {"master_weights", "float64"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !st; i++)
        st = cs_store_convention(db, run, kv[i][0], kv[i][1], &err);
    double nums[] = {fo.lr, fo.momentum, fo.weight_decay, (double)fo.epochs, (double)d.batch, (double)d.seed};
    const char *nk[] = {"lr", "momentum", "weight_decay", "epochs", "batch", "seed"};
    for (int i = 0; i < 6 && !st; i++) {
        snprintf(buf, sizeof buf, "%.17g", nums[i]);
        st = cs_store_convention(db, run, nk[i], buf, &err);
    }
    fo.batch = d.batch;
    fo.seed = d.seed;
    fo.loss = d.loss;
    fo.norm = &d.norm;
    fo.val = val_data ? &val : NULL;
    log_ctx lc = {.db = db, .run = run};
    fo.on_step = on_step;
    fo.on_eval = on_eval;
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
    else
        printf("%lld steps in %.2f s; final train loss %.6f accuracy %.4f%s; wrote %s (run %lld in %s)\n",
               (long long)res.steps, res.seconds, res.train_loss, res.train_accuracy,
               val_data ? "" : "", out, (long long)run, db_path);
    if (!st && val_data)
        printf("final validation loss %.6f accuracy %.4f\n", res.val_loss, res.val_accuracy);
    cs_dataset_free(&ds);
    if (val_data)
        cs_dataset_free(&val);
    cs_graph_free(g);
    cs_store_close(db);
    return code;
}
