/* One option parser for every command: a command lists its options as a
 * table (name, kind, where the value goes) and cli_parse_args runs
 * getopt_long over it, so a kind of option is parsed and reported the
 * same way everywhere. */
#include "config.h"

#include <assert.h>
#include <getopt.h>
#include <stdlib.h>

#include "cli/cli.h"

/* The shared data options come first and all have val 0: getopt_long then
 * reads an abbreviation they share (--s) as the first of them, as before
 * the table.  The command's options get val CMD_VAL + index, --help 'h'. */
#define CMD_VAL 256
#define MAX_LONG_OPTS 64

static const struct option data_long_opts[] = {DATA_LONG_OPTS};
#define N_DATA_OPTS ((int)(sizeof data_long_opts / sizeof data_long_opts[0]))

/* Store value into o's target; 0, or the exit code of a bad value (printed). */
static int apply(const cli_opt *o, const char *cmd, const char *value)
{
    int64_t v;
    switch (o->kind) {
    case CLI_OPT_FLAG: *(bool *)o->target = true; break;
    case CLI_OPT_OFF: *(bool *)o->target = false; break;
    case CLI_OPT_TEXT: *(const char **)o->target = value; break;
    case CLI_OPT_COUNT:
        if (cli_parse_count(cmd, o->name, value, &v))
            return 2;
        *(int64_t *)o->target = o->max > 0 && (double)v > o->max ? (int64_t)o->max : v;
        break;
    case CLI_OPT_INT:
        if (cli_parse_int(cmd, o->name, value, (int)o->max, o->target))
            return 2;
        break;
    case CLI_OPT_REAL:
    case CLI_OPT_POSITIVE:
        if (cli_parse_real(cmd, o->name, value, o->kind == CLI_OPT_POSITIVE, o->target))
            return 2;
        break;
    case CLI_OPT_LIST:
        if (o->replace)
            *o->count = 0;
        if (cli_parse_real_list(cmd, o->name, value, o->max, o->max_n, o->target, o->count))
            return 2;
        break;
    case CLI_OPT_CALL: {
        int code = o->call(o->target, cmd, value);
        if (code)
            return code;
        break;
    }
    }
    if (o->seen)
        *o->seen = true;
    return 0;
}

int cli_parse_args(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts,
                   cli_data_opts *d, void (*usage)(FILE *), const char *what, const char **arg)
{
    struct option lo[MAX_LONG_OPTS];
    int n = 0;
    for (int i = 0; d && i < N_DATA_OPTS; i++)
        lo[n++] = data_long_opts[i];
    /* The commands' tables are fixed and far below the bound. */
    assert(n + n_opts + 2 <= MAX_LONG_OPTS);
    for (int i = 0; i < n_opts; i++) {
        bool bare = opts[i].kind == CLI_OPT_FLAG || opts[i].kind == CLI_OPT_OFF;
        lo[n++] = (struct option){opts[i].name, bare ? no_argument : required_argument, NULL, CMD_VAL + i};
    }
    lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n] = (struct option){0};
    int c, idx;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", lo, &idx)) != -1) {
        if (c == 0) {
            if (cli_data_opt(d, cmd, lo[idx].name, optarg) < 0)
                return 2;
        } else if (c >= CMD_VAL && c < CMD_VAL + n_opts) {
            int code = apply(&opts[c - CMD_VAL], cmd, optarg);
            if (code)
                return code;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            return cli_option_error(cmd, c, argv, optind);
        }
    }
    if (optind >= argc)
        return cli_usage_error(cmd, "missing %s", what);
    if (optind + 1 < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
    *arg = argv[optind];
    return -1;
}
