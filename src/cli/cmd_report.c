/* curvscope report OUT.db [--run ID] --html REPORT.html */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "report/report.h"

void cmd_report_usage(FILE *f)
{
    fprintf(f, "usage: curvscope report OUT.db [--run ID] --html REPORT.html\n\n"
               "One self-contained HTML page (inline SVG, no script, opens offline) with an\n"
               "analyze run's metadata, eigenvalue decay per layer, whole-network spectral\n"
               "density, lambda_max / trace / condition per layer, importance histograms and\n"
               "pruning curve, step diagnostics, and the loss and accuracy curves of every\n"
               "finetune run in the file.\n\n"
               "  --run ID           the analyze run (default: the latest that is done)\n"
               "  --html FILE        the page to write (written whole or not at all)\n"
               "  --help             this text\n");
}

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {{"run", required_argument, NULL, 'r'},
                                         {"html", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    const char *html = NULL;
    int run = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            if (cli_parse_int("report", "run", optarg, 1 << 30, &run))
                return 2;
            break;
        case 'o': html = optarg; break;
        case 'h': cmd_report_usage(stdout); return 0;
        default: return cli_option_error("report", c, argv, optind);
        }
    }
    if (optind >= argc)
        return cli_usage_error("report", "missing OUT.db");
    if (optind + 1 < argc)
        return cli_usage_error("report", "unexpected argument '%s'", argv[optind + 1]);
    if (!html)
        return cli_usage_error("report", "missing --html REPORT.html");
    cs_err err = {0};
    cs_store *db = NULL;
    cs_status st = cs_store_open_readonly(argv[optind], &db, &err);
    if (st)
        return cli_report(st, &err);
    /* Written beside the target and renamed: a failed report leaves no
     * half page behind. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", html, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        st = cs_fail(&err, CS_ERR_IO, "cannot write '%s'", html);
    if (!st)
        st = cs_report_html(db, run, f, &err);
    if (f && fclose(f) != 0 && !st)
        st = cs_fail(&err, CS_ERR_IO, "writing '%s' failed", html);
    if (!st && rename(tmp, html) != 0)
        st = cs_fail(&err, CS_ERR_IO, "cannot write '%s'", html);
    if (st && f)
        remove(tmp);
    cs_store_close(db);
    if (st)
        return cli_report(st, &err);
    printf("wrote %s\n", html);
    return 0;
}
