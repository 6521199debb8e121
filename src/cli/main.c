/* curvscope: the command table and dispatch. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "base/dist.h"
#include "base/parallel.h"
#include "cli/cli.h"
#include "tensor/blas.h"

static const cs_cmd commands[] = {
    {"info", "graph, layers, parameter counts, unsupported operators", cmd_info, cmd_info_usage, false},
    {"eval", "loss and accuracy over a dataset", cmd_eval, cmd_eval_usage, true},
    {"run", "run the model on given inputs, write outputs as TensorProto files", cmd_run,
     cmd_run_usage, false},
    {"analyze", "per-layer curvature, spectra and approximation quality into SQLite", cmd_analyze,
     cmd_analyze_usage, true},
    {"finetune", "train with a preconditioner, write the result as ONNX", cmd_finetune,
     cmd_finetune_usage, true},
    {"compare", "tune with each of a list of preconditioners, compare speed and accuracy", cmd_compare,
     cmd_compare_usage, false},
    {"quantize", "Hessian-aware bit widths, write the quantized model as ONNX", cmd_quantize,
     cmd_quantize_usage, false},
    {"laplace", "Laplace posterior: log marginal likelihood, prior precision into SQLite", cmd_laplace,
     cmd_laplace_usage, false},
    {"influence", "which training examples helped or hurt each query (EK-FAC, gradient similarity)",
     cmd_influence, cmd_influence_usage, false},
    {"report", "an HTML page with the figures of a database", cmd_report, cmd_report_usage, false},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: curvscope COMMAND [OPTIONS]\n\n"
               "Curvature analysis of ONNX models.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'curvscope COMMAND --help' describes a command's options.\n"
               "Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input.\n");
}

/* Under mpirun a failure on any rank ends every rank with the same exit
 * code, printed once (cli_report agrees on it, base/dist.h); a rank that
 * finished without error learns of another's here. */
static int dist_exit(int code)
{
    if (cs_dist_size() > 1) {
        cs_err err = {0};
        cs_status st = cs_dist_agree(code ? CS_ERR_RUNTIME : CS_OK, &err);
        if (st && code == 0)
            code = cli_report(st, &err);
    }
    cs_dist_finalize();
    return code;
}

int main(int argc, char **argv)
{
    cs_threads_startup(argv);
    cs_err derr = {0};
    if (cs_dist_init(&argc, &argv, &derr)) {
        fprintf(stderr, "curvscope: error: %s\n", derr.msg);
        return 1;
    }
    /* Rank 0 alone prints results (doc/design.md §2.12): the others'
     * standard output is discarded, their errors come through rank 0. */
    if (cs_dist_rank() > 0 && !freopen("/dev/null", "w", stdout))
        return dist_exit(1);
    if (argc < 2) {
        usage(stderr);
        return dist_exit(2);
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return dist_exit(0);
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("curvscope %s\n", PACKAGE_VERSION);
        return dist_exit(0);
    }
    /* As many OpenMP threads as the process has cores unless --threads
     * says otherwise, BLAS on one inside them (tensor/blas.c); results do
     * not depend on the count (doc/design.md §2.11). */
    /* With several ranks on one machine (mpirun -np P) the cores are
     * shared out among them so they do not oversubscribe. */
    int threads = cs_cores_available() / cs_dist_local_size();
    cs_blas_set_threads(threads > 0 ? threads : 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0) {
            /* info, run and report have nothing to share out: rank 0
             * runs them and the others only wait for its status. */
            if (!commands[i].parallel && cs_dist_rank() > 0)
                return dist_exit(0);
            return dist_exit(commands[i].run(argc - 1, argv + 1));
        }
    fprintf(stderr, "curvscope: unknown command '%s' (see 'curvscope --help')\n", name);
    return dist_exit(2);
}
