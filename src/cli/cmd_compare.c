/* curvscope compare MODEL.onnx --data SPEC --labels SPEC --precond LIST --db OUT.db [options]
 *
 * Orchestration only: per preconditioner of the list, a fresh copy of the
 * model, one finetune run (its own runs row) through the comparison
 * library (finetune/compare.h) with the same seed, data order, batch and
 * epochs, and its rows under one comparison id.  The maths and the
 * measurements live in src/finetune/compare.c. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "finetune/compare.h"
#include "onnx/writer.h"
#include "precond/precond.h"
#include "store/rows.h"

#define MAX_METHODS 32

void cmd_compare_usage(FILE *f)
{
    fprintf(f, "usage: curvscope compare MODEL.onnx --data SPEC --labels SPEC --precond LIST\n"
               "                         --db OUT.db [options]\n\n"
               "Tune the same model on the same data with each preconditioner of LIST (same\n"
               "seed, data order, batch and epochs; each method its own finetune run) and\n"
               "record per method and epoch the training throughput, peak heap, test loss\n"
               "and accuracy, and the time to a target accuracy (tables comparisons,\n"
               "comparison_methods, comparison_epochs; view v_comparison).\n\n"
               "  --precond LIST     preconditioners, comma-separated (%s)\n"
               "  --db FILE          the database (created if missing)\n"
               "  --test-data SPEC, --test-labels SPEC   the test set (default: the training data)\n"
               "  --epochs E         default 1\n"
               "  --lr LIST          per-method learning rates, e.g. sgd=0.05,kfac=0.01 (default:\n"
               "                     each preconditioner's, as finetune --help lists them)\n"
               "  --target-accuracy A  test accuracy in [0, 1] whose time is recorded\n"
               "  --out-dir DIR      also write each tuned model as DIR/METHOD.onnx\n",
            cs_precond_names());
    cli_data_opts_usage(f);
    fprintf(f, "  --help             this text\n\n"
               "Every method keeps finetune's defaults otherwise (damping, momentum, update\n"
               "interval): a method's run equals 'curvscope finetune --precond METHOD' with the\n"
               "same data options and --lr, --epochs.\n");
}

typedef struct method {
    const cs_precond_def *def;
    double lr;
} method;

/* "a,b,c" into methods, each a registered name once. */
static int parse_methods(const char *text, method *m, int *n)
{
    *n = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[64];
        if (len == 0 || len >= sizeof name)
            return cli_usage_error("compare", "--precond: an empty or overlong name in '%s'", text);
        memcpy(name, p, len);
        name[len] = 0;
        const cs_precond_def *d = cs_precond_find(name);
        if (!d)
            return cli_usage_error("compare", "unknown --precond '%s' (%s)", name, cs_precond_names());
        for (int i = 0; i < *n; i++)
            if (m[i].def == d)
                return cli_usage_error("compare", "--precond names '%s' twice", name);
        if (*n == MAX_METHODS)
            return cli_usage_error("compare", "--precond: at most %d methods", MAX_METHODS);
        m[(*n)++] = (method){.def = d, .lr = d->default_lr};
        p += len;
        if (*p == ',')
            p++;
    }
    return *n ? 0 : cli_usage_error("compare", "--precond: no method in '%s'", text);
}

/* "name=value,..." onto the methods' learning rates. */
static int parse_lrs(const char *text, method *m, int n)
{
    const char *p = text;
    while (*p) {
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (!eq || (end && end < eq))
            return cli_usage_error("compare", "--lr takes name=value,..., got '%s'", text);
        char *stop;
        double v = strtod(eq + 1, &stop);
        if (stop == eq + 1 || (*stop && *stop != ',') || !(v > 0) || !isfinite(v))
            return cli_usage_error("compare", "--lr: '%.*s' is not a positive learning rate",
                                   (int)(end ? end - p : (long)strlen(p)), p);
        int k = -1;
        for (int i = 0; i < n; i++)
            if (strlen(m[i].def->name) == (size_t)(eq - p) && strncmp(m[i].def->name, p, (size_t)(eq - p)) == 0)
                k = i;
        if (k < 0)
            return cli_usage_error("compare", "--lr: '%.*s' is not one of --precond", (int)(eq - p), p);
        m[k].lr = v;
        p = *stop ? stop + 1 : stop;
    }
    return 0;
}

static bool json_out; /* --json: notes go to stderr, stdout holds one object */

static void on_note(void *ctx, const char *text)
{
    fprintf(json_out ? stderr : stdout, "note: %s: %s\n", (const char *)ctx, text);
}

/* --json: one method's object inside "methods". */
static void print_method_json(const char *name, int64_t run, double lr, const cs_compare_outcome *r, bool first)
{
    const cs_compare_epoch *e = &r->epochs[r->n_epochs - 1];
    printf("%s{\"method\": ", first ? "" : ", ");
    json_string(stdout, name);
    printf(", \"run\": %lld", (long long)run);
    const char *k[] = {"lr", "samples_per_sec", "train_seconds", "test_loss", "test_accuracy", "time_to_target"};
    const double v[] = {lr, r->samples_per_sec, r->train_seconds, e->test_loss, e->test_accuracy, r->time_to_target};
    for (int i = 0; i < 6; i++) {
        printf(", \"%s\": ", k[i]);
        json_number(stdout, v[i]);
    }
    printf(", \"peak_heap_bytes\": ");
    json_number(stdout, r->peak_heap_bytes >= 0 ? (double)r->peak_heap_bytes : NAN);
    printf("}");
}

/* One method: a fresh model, its run, its rows.  Returns the exit code. */
static int run_method(cli_run *run, const char *model, const cli_data_opts *d, const cs_dataset *train,
                      const cs_dataset *test, const method *m, int epochs, double target, int64_t cmp_id,
                      const char *out_dir, const method *first, int argc, char **argv)
{
    int code = 0;
    cs_graph *g = cli_load_model_finite(model, d, &code);
    if (!g)
        return code;
    cs_err err = {0};
    cs_finetune_opts fo;
    cs_finetune_opts_init(&fo);
    fo.precond = m->def->name;
    fo.lr = m->lr;
    fo.damping = m->def->default_damping;
    fo.epochs = epochs;
    fo.batch = d->batch;
    fo.seed = d->seed;
    fo.loss = d->loss;
    fo.norm = &d->norm;
    fo.val = test;
    fo.on_note = on_note;
    fo.ctx = (void *)m->def->name;
    fo.cancel = cli_run_cancel();
    free(run->argv); /* the previous method's copy */
    run->argv = NULL;
    cs_status st = cli_run_begin(run, "finetune", model, d, train->n, argc, argv, &err);
    if (!st)
        st = cs_store_write_finetune_conventions(run->db, run->id, &fo,
                                                 m->def->reads_curvature ? cs_curv_name(m->def->default_curv) : "none",
                                                 &err);
    if (!st) {
        char id[32];
        snprintf(id, sizeof id, "%lld", (long long)cmp_id);
        st = cs_store_convention(run->db, run->id, "comparison_id", id, &err);
    }
    cs_compare_outcome res;
    memset(&res, 0, sizeof res);
    bool trained = false;
    if (!st)
        trained = !(st = cs_compare_method(g, train, &fo, target, &res, &err));
    if (!st && !(st = cs_store_begin(run->db, &err)) &&
        !(st = cs_store_write_compare_method(run->db, cmp_id, run->id, m->def->name, fo.lr, fo.damping, &res, &err)))
        st = cs_store_commit(run->db, &err);
    if (!st && out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.onnx", out_dir, m->def->name);
        st = cs_onnx_write_updated(model, g, path, &err);
    }
    st = cli_run_end(run, st, &err, trained ? res.res.seconds : NAN);
    if (st)
        code = cli_report(st, &err);
    else if (d->json)
        print_method_json(m->def->name, run->id, fo.lr, &res, m == first);
    else {
        const cs_compare_epoch *e = &res.epochs[res.n_epochs - 1];
        printf("%-8s %10.4g %12.1f %10.2f %10.5f %9.4f ", m->def->name, fo.lr, res.samples_per_sec,
               res.peak_heap_bytes >= 0 ? (double)res.peak_heap_bytes / 1048576.0 : NAN, e->test_loss,
               e->test_accuracy);
        if (isnan(res.time_to_target))
            printf("%10s\n", "-");
        else
            printf("%10.3f\n", res.time_to_target);
    }
    cs_compare_outcome_free(&res);
    cs_graph_free(g);
    return code;
}

int cmd_compare(int argc, char **argv)
{
    const char *db_path = NULL, *precond_text = NULL, *lr_text = NULL, *test_data = NULL, *test_labels = NULL,
               *out_dir = NULL, *model = NULL;
    int epochs = 1;
    double target = NAN;
    bool target_given = false;
    cli_data_opts d;
    cli_data_opts_init(&d);
    const cli_opt opts[] = {
        CLI_OPT("precond", CLI_OPT_TEXT, &precond_text),
        CLI_OPT("db", CLI_OPT_TEXT, &db_path),
        CLI_OPT("test-data", CLI_OPT_TEXT, &test_data),
        CLI_OPT("test-labels", CLI_OPT_TEXT, &test_labels),
        CLI_OPT("epochs", CLI_OPT_INT, &epochs, .max = 100000),
        CLI_OPT("lr", CLI_OPT_TEXT, &lr_text),
        CLI_OPT("target-accuracy", CLI_OPT_REAL, &target, .seen = &target_given),
        CLI_OPT("out-dir", CLI_OPT_TEXT, &out_dir),
        CLI_OPT("json", CLI_OPT_FLAG, &d.json),
    };
    int parsed = cli_parse_args("compare", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &d,
                                cmd_compare_usage, "MODEL.onnx", &model);
    if (parsed >= 0)
        return parsed;
    method m[MAX_METHODS];
    int n = 0, code;
    json_out = d.json;
    if (!d.data || !d.labels)
        return cli_usage_error("compare", "missing --data SPEC or --labels SPEC");
    if (!precond_text)
        return cli_usage_error("compare", "missing --precond LIST (%s)", cs_precond_names());
    if ((code = parse_methods(precond_text, m, &n)) || (lr_text && (code = parse_lrs(lr_text, m, n))))
        return code;
    if (!db_path)
        return cli_usage_error("compare", "missing --db OUT.db");
    if ((test_data == NULL) != (test_labels == NULL))
        return cli_usage_error("compare", "--test-data and --test-labels go together");
    if (target_given && target > 1)
        return cli_usage_error("compare", "--target-accuracy is in [0, 1], got %g", target);

    cli_run run;
    if ((code = cli_run_open(&run, db_path)))
        return code;
    cs_err err = {0};
    cs_dataset train, test;
    memset(&test, 0, sizeof test);
    cs_status st = cs_dataset_load(&train, d.data, d.labels, d.samples, &err);
    if (!st && test_data && (st = cs_dataset_load(&test, test_data, test_labels, 0, &err)))
        cs_dataset_free(&train);
    if (st) {
        cli_run_close(&run);
        return cli_report(st, &err);
    }
    char data_desc[1200];
    snprintf(data_desc, sizeof data_desc, "%s %s", d.data, d.labels);
    char test_desc[1200];
    snprintf(test_desc, sizeof test_desc, "%s %s", test_data ? test_data : "", test_labels ? test_labels : "");
    cs_comparison_info info = {.model_path = model, .data = data_desc, .test_data = test_data ? test_desc : NULL,
                               .epochs = epochs, .batch = d.batch, .seed = d.seed, .target_accuracy = target};
    int64_t cmp_id = -1;
    if ((st = cs_store_comparison_begin(run.db, &info, &cmp_id, &err)))
        code = cli_report(st, &err);
    else if (d.json) {
        printf("{\"comparison\": %lld, \"db\": ", (long long)cmp_id);
        json_string(stdout, db_path);
        printf(", \"methods\": [");
    } else
        printf("%-8s %10s %12s %10s %10s %9s %10s\n", "method", "lr", "samples/s", "heap MiB", "test loss",
               "accuracy", "to target");
    for (int i = 0; i < n && !code; i++)
        code = run_method(&run, model, &d, &train, test_data ? &test : &train, &m[i], epochs, target, cmp_id,
                          out_dir, m, argc, argv);
    if (d.json && cmp_id >= 0)
        printf("]}\n");
    else if (!code)
        printf("comparison %lld: %d methods in %s (SELECT * FROM v_comparison WHERE comparison_id = %lld)\n",
               (long long)cmp_id, n, db_path, (long long)cmp_id);
    cs_dataset_free(&train);
    if (test_data)
        cs_dataset_free(&test);
    cli_run_close(&run);
    return code;
}
