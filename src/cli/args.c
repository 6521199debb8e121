#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/dist.h"
#include "base/parallel.h"
#include "cli/cli.h"
#include "interp/model.h"
#include "interp/param_rule.h"
#include "onnx/loader.h"
#include "tensor/blas.h"

int cli_report(cs_status st, const cs_err *err)
{
    /* Under mpirun every rank agrees on the failure (the first failing
     * rank's message, base/dist.h) and rank 0 alone prints it. */
    cs_err agreed = err ? *err : (cs_err){0};
    st = cs_dist_agree(st ? st : CS_ERR_RUNTIME, &agreed);
    if (cs_dist_rank() == 0)
        fprintf(stderr, "curvscope: error: %s\n", agreed.msg[0] ? agreed.msg : cs_status_name(st));
    return cs_status_exit_code(st);
}

cs_status cli_load_dataset(cs_dataset *ds, const cli_data_opts *o, cs_err *err)
{
    cs_status st = cs_dataset_load(ds, o->data, o->labels, o->samples, err);
    if (!st && (st = cs_dataset_keep_rank_slice(ds, cs_dist_rank(), cs_dist_size(), err)))
        cs_dataset_free(ds);
    return st;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    if (cs_dist_rank() > 0) /* every rank sees the same command line */
        return 2;
    fprintf(stderr, "curvscope %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'curvscope %s --help')\n", cmd);
    return 2;
}

int cli_option_error(const char *cmd, int c, char **argv, int optind_now)
{
    const char *arg = argv[optind_now - 1];
    if (c == ':')
        return cli_usage_error(cmd, "option '%s' needs a value", arg);
    if (strncmp(arg, "--", 2) == 0 && strchr(arg, '='))
        return cli_usage_error(cmd, "option '%s' does not take a value", arg);
    return cli_usage_error(cmd, "unknown option '%s'", arg);
}

void cli_data_opts_init(cli_data_opts *o)
{
    memset(o, 0, sizeof *o);
    cs_norm_init(&o->norm);
    o->batch = 128;
    o->threads = 0;
    o->loss = CS_LOSS_CE;
}

int cli_parse_count(const char *cmd, const char *name, const char *value, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v <= 0) {
        cli_usage_error(cmd, "--%s needs a positive integer, got '%s'", name, value);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_int(const char *cmd, const char *name, const char *value, int max, int *out)
{
    int64_t v;
    if (cli_parse_count(cmd, name, value, &v))
        return -1;
    *out = (int)(v > max ? max : v);
    return 0;
}

/* A finite number that is at least lo, and above lo when open_lo. */
static bool real_in_range(double v, double lo, bool open_lo, double hi)
{
    return isfinite(v) && (open_lo ? v > lo : v >= lo) && v <= hi;
}

static const char *real_range_words(bool positive)
{
    return positive ? "a positive number" : "a non-negative number";
}

int cli_parse_real(const char *cmd, const char *name, const char *value, bool positive, double *out)
{
    char *end;
    double v = strtod(value, &end);
    if (end == value || *end || !real_in_range(v, 0, positive, HUGE_VAL)) {
        cli_usage_error(cmd, "--%s needs %s, got '%s'", name, real_range_words(positive), value);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_real_list(const char *cmd, const char *name, const char *value, double hi, int max_n,
                        double *vals, int *n)
{
    const char *p = value;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end && *end != ',') || !real_in_range(v, 0, false, hi) || *n == max_n) {
            if (hi < HUGE_VAL)
                cli_usage_error(cmd, "--%s needs at most %d comma-separated numbers in [0, %g], got '%s'",
                                name, max_n, hi, value);
            else
                cli_usage_error(cmd, "--%s needs at most %d comma-separated non-negative numbers, got '%s'",
                                name, max_n, value);
            return -1;
        }
        vals[(*n)++] = v;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int cli_data_opt(cli_data_opts *o, const char *cmd, const char *name, const char *value)
{
    cs_err err = {0};
    cs_status st = CS_OK;
    int64_t n;
    if (strcmp(name, "data") == 0)
        o->data = value;
    else if (strcmp(name, "labels") == 0)
        o->labels = value;
    else if (strcmp(name, "scale") == 0)
        st = cs_norm_parse_scale(&o->norm, value, &err);
    else if (strcmp(name, "mean") == 0)
        st = cs_norm_parse_mean(&o->norm, value, &err);
    else if (strcmp(name, "std") == 0)
        st = cs_norm_parse_std(&o->norm, value, &err);
    else if (strcmp(name, "samples") == 0) {
        if (cli_parse_count(cmd, name, value, &o->samples))
            return -1;
    } else if (strcmp(name, "batch") == 0) {
        if (cli_parse_count(cmd, name, value, &o->batch))
            return -1;
    } else if (strcmp(name, "threads") == 0) {
        if (cli_parse_count(cmd, name, value, &n))
            return -1;
        o->threads = (int)(n > CS_MAX_THREADS ? CS_MAX_THREADS : n);
        cs_blas_set_threads(o->threads);
    } else if (strcmp(name, "seed") == 0) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || end == value || *end) {
            cli_usage_error(cmd, "--seed needs a non-negative integer, got '%s'", value);
            return -1;
        }
        o->seed = v;
    } else if (strcmp(name, "loss") == 0)
        st = cs_loss_parse(value, &o->loss, &err);
    else if (strcmp(name, "freeze-params") == 0)
        o->freeze_params = value;
    else if (strcmp(name, "train-params") == 0)
        o->train_params = value;
    else
        return 0;
    if (st) {
        cli_usage_error(cmd, "%s", err.msg);
        return -1;
    }
    return 1;
}

void cli_data_opts_usage(FILE *f)
{
    fprintf(f,
            "  --data SPEC        inputs: idx:PATH, npy:PATH, csv:PATH[#label=K], pb:PATH\n"
            "  --labels SPEC      labels, same forms (integer classes or real targets)\n"
            "  --scale S          multiply raw values by S (a fraction like 1/255 is fine)\n"
            "  --mean M           subtract M after scaling (one value, or one per channel: a,b,c)\n"
            "  --std D            then divide by D (one value or one per channel)\n"
            "  --samples N        use the first N samples (default: all)\n"
            "  --batch B          samples per batch (default 128; passes run in micro-batches)\n"
            "  --loss ce|mse      loss on the first graph output (default ce)\n"
            "  --freeze-params N1,N2  initializers kept constant although the parameter\n"
            "                     rule would train them (names as `info` lists them)\n"
            "  --train-params N1,N2   initializers trained although the rule keeps them\n"
            "                     constant (read by Add, Sub, Mul, Expand, ...)\n"
            "  --seed S           random seed (default 0)\n"
            "  --threads T        threads: micro-batches side by side (default: the cores this\n"
            "                     process may use; results do not depend on T; BLAS gets all T\n"
            "                     only in large solves)\n"
            "  --json             print one JSON object instead of text\n");
}

cs_graph *cli_load_model(const char *path, int *code)
{
    cs_err err = {0};
    cs_graph *g = NULL;
    cs_status st = cs_model_load_file(path, &g, &err);
    if (st) {
        *code = cli_report(st, &err);
        return NULL;
    }
    return g;
}

int cli_choose_params(cs_graph *g, const char *path, const char *freeze, const char *train)
{
    if ((!freeze || !*freeze) && (!train || !*train))
        return 0;
    cs_err err = {0};
    cs_status st = cs_params_choose(g, freeze, train, &err);
    if (!st)
        return 0;
    (void)cs_err_prefix(&err, "%s", path);
    return cli_report(st, &err);
}

cs_graph *cli_load_model_finite(const char *path, const cli_data_opts *o, int *code)
{
    cs_graph *g = cli_load_model(path, code);
    if (g && (*code = cli_choose_params(g, path, o->freeze_params, o->train_params))) {
        cs_graph_free(g);
        return NULL;
    }
    cs_err err = {0};
    cs_status st = g ? cs_model_check_finite(g, &err) : CS_OK;
    if (st) {
        (void)cs_err_prefix(&err, "%s", path);
        *code = cli_report(st, &err);
        cs_graph_free(g);
        return NULL;
    }
    return g;
}

void cli_progress(void *ctx, int64_t done, int64_t total)
{
    const char *what = ctx ? ctx : "samples";
    if (!isatty(STDERR_FILENO) || cs_dist_rank() > 0) /* one progress line: rank 0's slice */
        return;
    fprintf(stderr, "\r%s: %" PRId64 " / %" PRId64 " (%.0f%%)", what, done, total,
            total ? 100.0 * (double)done / (double)total : 100.0);
    if (done >= total)
        fprintf(stderr, "\r\033[K");
    fflush(stderr);
}
