/* curvscope: the command table and dispatch. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "base/parallel.h"
#include "cli/cli.h"
#include "tensor/blas.h"

static const cs_cmd commands[] = {
    {"info", "graph, layers, parameter counts, unsupported operators", cmd_info, cmd_info_usage},
    {"eval", "loss and accuracy over a dataset", cmd_eval, cmd_eval_usage},
    {"run", "run the model on given inputs, write outputs as TensorProto files", cmd_run,
     cmd_run_usage},
    {"analyze", "per-layer curvature, spectra and approximation quality into SQLite", cmd_analyze,
     cmd_analyze_usage},
    {"finetune", "train with a preconditioner, write the result as ONNX", cmd_finetune,
     cmd_finetune_usage},
    {"influence", "which training examples helped or hurt each query (EK-FAC, gradient similarity)",
     cmd_influence, cmd_influence_usage},
    {"report", "an HTML page with the figures of a database", cmd_report, cmd_report_usage},
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

int main(int argc, char **argv)
{
    cs_threads_startup(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("curvscope %s\n", PACKAGE_VERSION);
        return 0;
    }
    /* As many OpenMP threads as the process has cores unless --threads
     * says otherwise, BLAS on one inside them (tensor/blas.c); results do
     * not depend on the count (doc/design.md §2.11). */
    cs_blas_set_threads(cs_cores_available());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "curvscope: unknown command '%s' (see 'curvscope --help')\n", name);
    return 2;
}
