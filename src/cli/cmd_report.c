/* curvscope report OUT.db [--run ID] --html REPORT.html */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/atomic_file.h"
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
    const char *html = NULL, *path = NULL;
    int run = 0;
    const cli_opt opts[] = {CLI_OPT("run", CLI_OPT_INT, &run, .max = 1 << 30),
                            CLI_OPT("html", CLI_OPT_TEXT, &html)};
    int parsed = cli_parse_args("report", argc, argv, opts, 2, NULL, cmd_report_usage, "OUT.db", &path);
    if (parsed >= 0)
        return parsed;
    if (!html)
        return cli_usage_error("report", "missing --html REPORT.html");
    cs_err err = {0};
    cs_store *db = NULL;
    cs_status st = cs_store_open_readonly(path, &db, &err);
    if (st)
        return cli_report(st, &err);
    /* Written beside the target, synced and renamed: a failed report leaves
     * no half page behind and an older report as it was. */
    cs_atomic_file af;
    st = cs_atomic_open(&af, html, &err);
    if (!st && (st = cs_report_html(db, run, af.f, &err)))
        cs_atomic_abort(&af);
    if (!st)
        st = cs_atomic_commit(&af, &err);
    cs_store_close(db);
    if (st)
        return cli_report(st, &err);
    printf("wrote %s\n", html);
    return 0;
}
