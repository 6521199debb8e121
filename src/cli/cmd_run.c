/* curvscope run MODEL.onnx --input NAME=SPEC ... --out DIR */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "interp/run.h"
#include "onnx/tensor_proto.h"

void cmd_run_usage(FILE *f)
{
    fprintf(f, "usage: curvscope run MODEL.onnx --input NAME=SPEC [--input ...] --out DIR\n\n"
               "Run the model once on the given inputs and write every graph output k as\n"
               "DIR/output_k.pb (an ONNX TensorProto), to check an export against another\n"
               "runtime.  SPEC is pb:PATH, npy:PATH, idx:PATH or csv:PATH; the array is\n"
               "converted to the input's declared element type and used with its own shape.\n"
               "With a single graph input, NAME= may be left out.\n\n"
               "  --input NAME=SPEC  value of graph input NAME\n"
               "  --out DIR          folder for the outputs (created if missing)\n"
               "  --threads T        threads (see curvscope eval --help)\n"
               "  --help             this text\n");
}

#define MAX_INPUTS 64

typedef struct run_inputs {
    const char *specs[MAX_INPUTS];
    int n;
} run_inputs;

static int add_input(void *inputs, const char *cmd, const char *value)
{
    run_inputs *in = inputs;
    if (in->n == MAX_INPUTS)
        return cli_usage_error(cmd, "too many --input options");
    in->specs[in->n++] = value;
    return 0;
}

/* --threads, as the commands that read data have it. */
static int set_threads(void *dopts, const char *cmd, const char *value)
{
    return cli_data_opt(dopts, cmd, "threads", value) < 0 ? 2 : 0;
}

int cmd_run(int argc, char **argv)
{
    run_inputs in = {.n = 0};
    const char *out_dir = NULL, *model = NULL;
    cli_data_opts dopts;
    cli_data_opts_init(&dopts);
    const cli_opt opts[] = {CLI_OPT("input", CLI_OPT_CALL, &in, .call = add_input),
                            CLI_OPT("out", CLI_OPT_TEXT, &out_dir),
                            CLI_OPT("threads", CLI_OPT_CALL, &dopts, .call = set_threads)};
    int parsed = cli_parse_args("run", argc, argv, opts, 3, NULL, cmd_run_usage, "MODEL.onnx", &model);
    if (parsed >= 0)
        return parsed;
    int code = 0;
    if (!out_dir)
        return cli_usage_error("run", "missing --out DIR");

    cs_graph *g = cli_load_model(model, &code);
    if (!g)
        return code;
    cs_err err = {0};
    cs_status st = CS_OK;
    cs_tensor *inputs = calloc((size_t)g->n_inputs + 1, sizeof *inputs);
    cs_tensor *outputs = calloc((size_t)g->n_outputs + 1, sizeof *outputs);
    if (!inputs || !outputs) {
        st = cs_fail(&err, CS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int s = 0; s < in.n && !st; s++) {
        const char *eq = strchr(in.specs[s], '=');
        const char *colon = strchr(in.specs[s], ':');
        int i = -1;
        const char *spec = in.specs[s];
        if (eq && (!colon || eq < colon)) {
            char name[512];
            snprintf(name, sizeof name, "%.*s", (int)(eq - in.specs[s]), in.specs[s]);
            for (int k = 0; k < g->n_inputs; k++)
                if (strcmp(g->values[g->inputs[k]].name, name) == 0)
                    i = k;
            if (i < 0) {
                st = cs_fail(&err, CS_ERR_USAGE, "the model has no input named '%s'", name);
                break;
            }
            spec = eq + 1;
        } else if (g->n_inputs == 1) {
            i = 0;
        } else {
            st = cs_fail(&err, CS_ERR_USAGE, "--input '%s' must say NAME=SPEC: the model has %d inputs",
                         in.specs[s], g->n_inputs);
            break;
        }
        if (inputs[i].data) {
            st = cs_fail(&err, CS_ERR_USAGE, "input '%s' is given twice", g->values[g->inputs[i]].name);
            break;
        }
        cs_tensor raw = {0};
        if ((st = cs_data_read_spec(spec, "data", &raw, &err)))
            break;
        cs_dtype want = g->values[g->inputs[i]].decl.dtype;
        if (raw.dtype == want) {
            inputs[i] = raw;
        } else {
            cs_tensor_set_shape(&inputs[i], want, raw.ndim, raw.dims);
            if ((st = cs_tensor_alloc(&inputs[i], &err)) == CS_OK)
                cs_convert(inputs[i].data, want, raw.data, raw.dtype, cs_tensor_numel(&raw));
            cs_tensor_free(&raw);
        }
    }
    for (int i = 0; i < g->n_inputs && !st; i++)
        if (!inputs[i].data)
            st = cs_fail(&err, CS_ERR_USAGE, "no value for input '%s' (--input %s=SPEC)",
                         g->values[g->inputs[i]].name, g->values[g->inputs[i]].name);
    if (!st)
        st = cs_run_model(g, inputs, outputs, &err);
    if (!st && mkdir(out_dir, 0777) != 0 && errno != EEXIST)
        st = cs_fail(&err, CS_ERR_IO, "cannot create '%s': %s", out_dir, strerror(errno));
    for (int k = 0; k < g->n_outputs && !st; k++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/output_%d.pb", out_dir, k);
        st = cs_tensor_proto_write_file(path, &outputs[k], g->values[g->outputs[k]].name, &err);
        if (!st)
            printf("%s -> %s\n", g->values[g->outputs[k]].name, path);
    }
done:
    if (st)
        code = cli_report(st, &err);
    for (int i = 0; inputs && i < g->n_inputs; i++)
        cs_tensor_free(&inputs[i]);
    for (int k = 0; outputs && k < g->n_outputs; k++)
        cs_tensor_free(&outputs[k]);
    free(inputs);
    free(outputs);
    cs_graph_free(g);
    return code;
}
