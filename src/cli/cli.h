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

typedef struct cs_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* returns the process exit code */
    void (*usage)(FILE *f);
} cs_cmd;

int cmd_info(int argc, char **argv);
void cmd_info_usage(FILE *f);
int cmd_eval(int argc, char **argv);
void cmd_eval_usage(FILE *f);
int cmd_run(int argc, char **argv);
void cmd_run_usage(FILE *f);
int cmd_analyze(int argc, char **argv);
void cmd_analyze_usage(FILE *f);
int cmd_finetune(int argc, char **argv);
void cmd_finetune_usage(FILE *f);
int cmd_report(int argc, char **argv);
void cmd_report_usage(FILE *f);

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
} cli_data_opts;

/* The getopt_long entries of the shared data options (val 0: the caller
 * hands opts[idx].name to cli_data_opt). */
#define DATA_LONG_OPTS                                                                    \
    {"data", required_argument, NULL, 0}, {"labels", required_argument, NULL, 0},        \
    {"scale", required_argument, NULL, 0}, {"mean", required_argument, NULL, 0},         \
    {"std", required_argument, NULL, 0}, {"samples", required_argument, NULL, 0},        \
    {"batch", required_argument, NULL, 0}, {"seed", required_argument, NULL, 0},         \
    {"threads", required_argument, NULL, 0}, {"loss", required_argument, NULL, 0}

void cli_data_opts_init(cli_data_opts *o);
/* Handle one of the shared options (long name without "--"); returns 1 if
 * it was one, 0 if not, -1 (error printed) if its value is bad. */
int cli_data_opt(cli_data_opts *o, const char *cmd, const char *name, const char *value);
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

/* Load a model, printing the error; returns NULL on failure (*code set). */
cs_graph *cli_load_model(const char *path, int *code);

/* Progress line on stderr, only when stderr is a terminal. */
void cli_progress(void *ctx, int64_t done, int64_t total);

/* ---- JSON output (json.c) ---- */
void json_string(FILE *f, const char *s);
void json_shape(FILE *f, const cs_tensor *t);
void json_number(FILE *f, double v);

#endif
