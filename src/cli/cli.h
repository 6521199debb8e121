/* Command-line front end: parsing and orchestration only.  Each subcommand
 * lives in its own cmd_*.c and is listed in the table in main.c. */
#ifndef CS_CLI_CLI_H
#define CS_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/status.h"
#include "data/dataset.h"
#include "graph/graph.h"
#include "objective/loss.h"
#include "store/store.h"

typedef struct cs_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* returns the process exit code */
    void (*usage)(FILE *f);
    bool parallel; /* runs on every MPI rank (doc/design.md §2.12); else on rank 0 alone */
} cs_cmd;

/* Each command: its run (the process exit code) and its help text. */
int cmd_info(int argc, char **argv), cmd_eval(int argc, char **argv), cmd_run(int argc, char **argv),
    cmd_analyze(int argc, char **argv), cmd_finetune(int argc, char **argv),
    cmd_report(int argc, char **argv), cmd_compare(int argc, char **argv), cmd_quantize(int argc, char **argv),
    cmd_laplace(int argc, char **argv), cmd_influence(int argc, char **argv);
void cmd_info_usage(FILE *f), cmd_eval_usage(FILE *f), cmd_run_usage(FILE *f), cmd_analyze_usage(FILE *f),
    cmd_finetune_usage(FILE *f), cmd_report_usage(FILE *f), cmd_compare_usage(FILE *f), cmd_quantize_usage(FILE *f),
    cmd_laplace_usage(FILE *f), cmd_influence_usage(FILE *f);

/* Print "curvscope: error: MSG" on stderr and return the exit code for st. */
int cli_report(cs_status st, const cs_err *err);
/* Print a usage error and return 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) CS_PRINTF(2, 3);

/* Usage error for getopt_long's ':' (missing value) or '?' return, run
 * with an option string starting with ':'. */
int cli_option_error(const char *cmd, int c, char **argv, int optind_now);

/* ---- options shared by the commands that read a dataset (args.c) ---- */
typedef struct cli_data_opts {
    const char *data;
    const char *labels;
    cs_norm norm;
    int64_t samples; /* 0 = all */
    int64_t batch;
    uint64_t seed;
    int threads;
    cs_loss_kind loss;
    bool json;
    const char *freeze_params; /* initializer names kept constant, comma-separated */
    const char *train_params;  /* initializer names trained against the rule */
} cli_data_opts;

/* The getopt_long entries of the shared data options (val 0: the caller
 * hands opts[idx].name to cli_data_opt). */
#define DATA_LONG_OPTS                                                                    \
    {"data", required_argument, NULL, 0}, {"labels", required_argument, NULL, 0},        \
    {"scale", required_argument, NULL, 0}, {"mean", required_argument, NULL, 0},         \
    {"std", required_argument, NULL, 0}, {"samples", required_argument, NULL, 0},        \
    {"batch", required_argument, NULL, 0}, {"seed", required_argument, NULL, 0},         \
    {"threads", required_argument, NULL, 0}, {"loss", required_argument, NULL, 0},       \
    {"freeze-params", required_argument, NULL, 0}, {"train-params", required_argument, NULL, 0}

void cli_data_opts_init(cli_data_opts *o);
/* Handle one of the shared options (long name without "--"); returns 1 if
 * it was one, 0 if not, -1 (error printed) if its value is bad. */
int cli_data_opt(cli_data_opts *o, const char *cmd, const char *name, const char *value);
/* cs_dataset_load of the shared options, then under mpirun this rank's
 * contiguous slice of the samples (doc/design.md §2.12). */
cs_status cli_load_dataset(cs_dataset *ds, const cli_data_opts *o, cs_err *err) CS_MUST_CHECK;
/* Help text lines for the shared options. */
void cli_data_opts_usage(FILE *f);
/* Parse a positive integer option value. */
int cli_parse_count(const char *cmd, const char *name, const char *value, int64_t *out);
/* The same into an int, capped at max. */
int cli_parse_int(const char *cmd, const char *name, const char *value, int max, int *out);
/* Parse a finite number >= 0 (> 0 when positive). */
int cli_parse_real(const char *cmd, const char *name, const char *value, bool positive, double *out);
/* Append comma-separated numbers in [0, hi] to vals[*n..], at most max_n in all. */
int cli_parse_real_list(const char *cmd, const char *name, const char *value, double hi, int max_n,
                        double *vals, int *n);

/* ---- table-driven options (options.c) ---- */
typedef enum cli_opt_kind {
    CLI_OPT_FLAG,     /* no value: bool target set */
    CLI_OPT_OFF,      /* no value: bool target cleared */
    CLI_OPT_TEXT,     /* const char * target: the value, borrowed from argv */
    CLI_OPT_COUNT,    /* int64_t target: a positive integer, capped at max when max > 0 */
    CLI_OPT_INT,      /* int target: a positive integer, capped at max */
    CLI_OPT_REAL,     /* double target: a finite number >= 0 */
    CLI_OPT_POSITIVE, /* double target: a finite number > 0 */
    CLI_OPT_LIST,     /* double target[max_n]: comma-separated numbers in [0, max], appended at
                       * *count (a repeat replaces the list when replace) */
    CLI_OPT_CALL,     /* call(target, cmd, value): 0, or the exit code of a bad value (printed) */
} cli_opt_kind;

/* One row of a command's option table; the target is borrowed and written
 * each time the option is given (the last one wins). */
typedef struct cli_opt {
    const char *name;  /* long name without "--" */
    cli_opt_kind kind;
    void *target;
    bool *seen;        /* set when the option is given; NULL ok */
    double max;
    int *count;        /* CLI_OPT_LIST */
    int max_n;         /* CLI_OPT_LIST */
    bool replace;      /* CLI_OPT_LIST */
    int (*call)(void *target, const char *cmd, const char *value);
} cli_opt;

/* A row: CLI_OPT("name", CLI_OPT_INT, &x, .max = 1000, .seen = &given). */
#define CLI_OPT(opt_name, opt_kind, opt_target, ...) \
    {.name = (opt_name), .kind = (opt_kind), .target = (opt_target), __VA_ARGS__}

/* Parse argv: the rows opts[0..n_opts), the shared data options into d
 * (NULL: the command has none) and --help (usage on stdout).  The command
 * takes one positional argument, named what when it is missing; *arg
 * points at it.  Returns -1 to go on, or the exit code to return: 0 after
 * --help, 2 after a usage error (printed). */
int cli_parse_args(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts,
                   cli_data_opts *d, void (*usage)(FILE *), const char *what, const char **arg);

/* ---- the plan before the work (plan_print.c, curv/mem_plan.h) ---- */
struct cs_mem_plan;
/* CLI_OPT_CALL parser of --max-memory SIZE into an int64_t. */
int cli_parse_memory(void *target, const char *cmd, const char *value);
/* The default limit: available memory plus what the process holds (the
 * plan counts it); -1 when unknown. */
int64_t cli_memory_default(void);
/* The plan's table on f (rank 0 only), layers in g's order (NULL: as the
 * items came). */
void cli_plan_print(FILE *f, const struct cs_mem_plan *p, const cs_graph *g, int64_t limit);
/* 0 when the plan fits in limit (or limit <= 0: unknown); else one line on
 * stderr naming the estimate, the limit, the biggest item and the option
 * that shrinks it, and 2. */
int cli_plan_refuse(const struct cs_mem_plan *p, int64_t limit, const char *cmd);
/* The estimate as the run's conventions plan_bytes and plan_passes, beside
 * runs.peak_rss_bytes (the measured peak). */
cs_status cli_plan_store(cs_store *db, int64_t run_id, const struct cs_mem_plan *p, cs_err *err) CS_MUST_CHECK;

/* ---- the life of a stored run (run_life.c), analyze and finetune ---- */
typedef struct cli_run {
    cs_store *db;    /* owned */
    int64_t id;      /* the runs row; -1 until begun */
    double t0;       /* cs_now_seconds() when the run began */
    char *argv;      /* the command line as stored, owned */
} cli_run;

/* Open or create the database at db_path (a new file gets the schema), so
 * a bad --db fails before any work.  0, or the exit code (error printed). */
int cli_run_open(cli_run *r, const char *db_path);
/* Hash the model, insert the runs row (status 'running', committed at once)
 * with the command line, data, loss and n_samples, and from then on catch
 * SIGINT and SIGTERM: they raise the flag cli_run_cancel points at, which
 * the computation polls, and the run ends failed. */
cs_status cli_run_begin(cli_run *r, const char *kind, const char *model, const cli_data_opts *d,
                        int64_t n_samples, int argc, char **argv, cs_err *err) CS_MUST_CHECK;
/* The cancel flag the signals raise (pass it as the options' cancel). */
const volatile int *cli_run_cancel(void);
/* Seconds since the run began. */
double cli_run_seconds(const cli_run *r);
/* A begun run ends 'done' when st is CS_OK, else 'failed' with err's
 * message (naming the signal when one came), with seconds (NaN: NULL) and
 * the peak RSS.  Returns st, or the failure to end a done run (then in
 * *err). */
cs_status cli_run_end(cli_run *r, cs_status st, cs_err *err, double seconds) CS_MUST_CHECK;
/* Frees the command line and closes the database. */
void cli_run_close(cli_run *r);

/* Load a model, printing the error; returns NULL on failure (*code set). */
cs_graph *cli_load_model(const char *path, int *code);
/* cli_load_model, then apply o's --freeze-params / --train-params and
 * refuse NaN or Inf initializers (eval, analyze, finetune). */
cs_graph *cli_load_model_finite(const char *path, const cli_data_opts *o, int *code);
/* The user's parameter choice (cs_params_choose) for the model at path:
 * 0, or the exit code (error printed). */
int cli_choose_params(cs_graph *g, const char *path, const char *freeze, const char *train);

/* Progress line on stderr, only when stderr is a terminal. */
void cli_progress(void *ctx, int64_t done, int64_t total);

/* ---- JSON output (json.c) ---- */
void json_string(FILE *f, const char *s);
void json_shape(FILE *f, const cs_tensor *t);
void json_number(FILE *f, double v);

#endif
