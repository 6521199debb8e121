/* The life of a stored run, shared by analyze and finetune: the database
 * opened first (a bad --db fails before any work), the runs row begun
 * with the model's hash and the command line, SIGINT / SIGTERM turned into
 * a cancel the computation polls, and the row ended done or failed with
 * the time and peak memory. */
#include "config.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/dist.h"
#include "base/meminfo.h"
#include "base/sha256.h"
#include "cli/cli.h"

static volatile sig_atomic_t interrupted;
static volatile int cancel_flag;

static void on_signal(int sig)
{
    interrupted = sig;
    cancel_flag = 1;
}

const volatile int *cli_run_cancel(void)
{
    return &cancel_flag;
}

/* "curvscope ARG ARG ...", owned by the caller. */
static char *join_argv(int argc, char **argv)
{
    size_t len = 16;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    strcpy(s, "curvscope");
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

int cli_run_open(cli_run *r, const char *db_path)
{
    memset(r, 0, sizeof *r);
    r->id = -1;
    cs_err err = {0};
    /* Rank 0 alone writes the database (doc/design.md §2.12); the other
     * ranks run the same inserts into a private in-memory one, so the
     * commands need no rank test of their own and touch no file. */
    if (cs_dist_rank() > 0)
        db_path = ":memory:";
    cs_status st = cs_store_open(db_path, &r->db, &err);
    return st ? cli_report(st, &err) : 0;
}

cs_status cli_run_begin(cli_run *r, const char *kind, const char *model, const cli_data_opts *d,
                        int64_t n_samples, int argc, char **argv, cs_err *err)
{
    char sha[CS_SHA256_HEX_CHARS + 1] = "", data_desc[1200];
    r->argv = join_argv(argc, argv);
    snprintf(data_desc, sizeof data_desc, "%s %s", d->data, d->labels);
    cs_status st = cs_sha256_file(model, sha, err);
    cs_run_info info = {.kind = kind, .model_path = model, .model_sha256 = sha, .data = data_desc,
                        .loss = cs_loss_name(d->loss), .argv = r->argv, .n_samples = n_samples};
    r->t0 = cs_now_seconds();
    if (!st)
        st = cs_store_run_begin(r->db, &info, &r->id, err);
    if (!st) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    return st;
}

double cli_run_seconds(const cli_run *r)
{
    return cs_now_seconds() - r->t0;
}

cs_status cli_run_end(cli_run *r, cs_status st, cs_err *err, double seconds)
{
    if (r->id < 0)
        return st;
    cs_err err2 = {0};
    char why[CS_ERR_MSG_MAX + 64];
    if (interrupted)
        snprintf(why, sizeof why, "interrupted by signal %d: %s", (int)interrupted, err->msg);
    else
        snprintf(why, sizeof why, "%s", err->msg);
    cs_status st2 = cs_store_run_end(r->db, r->id, st ? "failed" : "done", seconds, cs_mem_peak_bytes(),
                                     st ? why : NULL, &err2);
    if (!st && st2) {
        st = st2;
        *err = err2;
    }
    return st;
}

void cli_run_close(cli_run *r)
{
    free(r->argv);
    cs_store_close(r->db);
    memset(r, 0, sizeof *r);
}
