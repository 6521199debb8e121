/* curvscope info MODEL.onnx [--json] | curvscope info --ops */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "interp/layer_kind.h"
#include "interp/op.h"
#include "interp/param_rule.h"
#include "objective/loss.h"

void cmd_info_usage(FILE *f)
{
    fprintf(f, "usage: curvscope info MODEL.onnx [--json]\n"
               "       curvscope info --ops\n\n"
               "Show the model's opsets, inputs and outputs, its layers (the nodes that own\n"
               "trainable parameters) with parameter tensors and counts, and any operator\n"
               "curvscope does not support.\n\n"
               "  --json    one JSON object: model, ir_version, opset, producer, nodes,\n"
               "            inputs, outputs, params, layers, constants, unsupported,\n"
               "            loss_logits\n"
               "  --freeze-params N1,N2  initializers kept constant (see the parameter rule)\n"
               "  --train-params N1,N2   initializers trained against the rule\n"
               "  --ops     (no model) the supported operators, one a line: name, the\n"
               "            oldest opset implemented, the derivative rules (vjp jvp rop;\n"
               "            'linear' where the R-op's second-order term is zero; 'none'\n"
               "            for an op with no float derivative)\n"
               "  --help    this text\n");
}

static void print_shape(FILE *f, const cs_tensor *t)
{
    if (t->ndim < 0) {
        fputs("(unknown shape)", f);
        return;
    }
    fputc('[', f);
    for (int i = 0; i < t->ndim; i++)
        t->dims[i] < 0 ? fprintf(f, "%sN", i ? ", " : "")
                       : fprintf(f, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
    fputc(']', f);
}

/* Whether input i of node k is an initializer of more than one element
 * that a layer kind with a parameter rule (Add, Sub, Mul, Expand) reads but
 * the rule keeps constant; *why the clause that refused it
 * (interp/param_rule.h). */
static bool kept_constant(const cs_graph *g, int k, int i, const char **why)
{
    const cs_node *n = &g->nodes[k];
    const cs_layer_kind *kind = n->domain[0] ? NULL : cs_layer_kind_find(n->op_type);
    int v = n->inputs[i];
    return kind && kind->param_ok && v >= 0 && g->values[v].kind == CS_VALUE_INITIALIZER &&
           g->values[v].param_index < 0 && cs_tensor_numel(&g->values[v].init) > 1 &&
           !cs_param_rule_ok(g, k, v, why);
}

static void print_kept_constant(const cs_graph *g)
{
    bool first = true;
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_inputs; i++) {
            const char *why = NULL;
            if (!kept_constant(g, k, i, &why))
                continue;
            if (first)
                printf("\nconstants  initializers kept constant by the parameter rule (--train-params to train)\n");
            first = false;
            const cs_value *v = &g->values[g->nodes[k].inputs[i]];
            printf("  %-28s ", v->name);
            print_shape(stdout, &v->init);
            printf("  %s '%s': %s\n", g->nodes[k].op_type, g->nodes[k].name, why);
        }
}

static void print_text(const cs_graph *g, const char *path, const cs_loss_head *head)
{
    printf("model      %s\n", path);
    printf("format     ONNX IR %lld, opset %d, producer %s %s\n", (long long)g->ir_version, g->opset,
           g->producer_name[0] ? g->producer_name : "(none)", g->producer_version);
    printf("nodes      %d\n", g->n_nodes);
    for (int i = 0; i < g->n_inputs; i++) {
        const cs_value *v = &g->values[g->inputs[i]];
        printf("input      %s  %s ", v->name, cs_dtype_name(v->decl.dtype));
        print_shape(stdout, &v->decl);
        printf("\n");
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const cs_value *v = &g->values[g->outputs[i]];
        printf("output     %s  %s ", v->name, cs_dtype_name(v->decl.dtype));
        print_shape(stdout, &v->decl);
        printf("\n");
    }
    if (head && head->through)
        printf("logits     input of %s node '%s' (the loss is taken on it)\n", head->through_op,
               head->through);
    printf("\nlayers     %d, parameters %lld\n", g->n_layers, (long long)g->n_param_scalars);
    printf("  %-3s %-28s %-20s %10s  %s\n", "#", "node", "op", "params", "tensors");
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        printf("  %-3d %-28s %-20s %10lld  ", l, L->name,
               L->bias_node >= 0 ? "MatMul+Add" : L->op_type, (long long)L->numel);
        for (int p = 0; p < L->n_params; p++) {
            const cs_value *v = &g->values[g->params[L->first_param + p].value];
            printf("%s%s ", p ? ", " : "", v->name);
            print_shape(stdout, &v->init);
            if (v->view_source >= 0) /* folded at bind: interp/param_views.h */
                printf(" (part of %s)", g->values[v->view_source].name);
        }
        printf("\n");
    }
    print_kept_constant(g);
    char buf[2048];
    int n = cs_graph_unsupported(g, buf, sizeof buf);
    printf("\nunsupported operators: %s\n", n ? buf : "none");
}

static void print_json(const cs_graph *g, const char *path, const cs_loss_head *head)
{
    printf("{\"model\": ");
    json_string(stdout, path);
    printf(", \"ir_version\": %lld, \"opset\": %d, \"producer\": ", (long long)g->ir_version, g->opset);
    json_string(stdout, g->producer_name);
    printf(", \"nodes\": %d, \"inputs\": [", g->n_nodes);
    for (int pass = 0; pass < 2; pass++) {
        int n = pass ? g->n_outputs : g->n_inputs;
        const int *idx = pass ? g->outputs : g->inputs;
        if (pass)
            printf("], \"outputs\": [");
        for (int i = 0; i < n; i++) {
            const cs_value *v = &g->values[idx[i]];
            printf("%s{\"name\": ", i ? ", " : "");
            json_string(stdout, v->name);
            printf(", \"dtype\": \"%s\", \"shape\": ", cs_dtype_name(v->decl.dtype));
            if (v->decl.ndim < 0)
                printf("null");
            else
                json_shape(stdout, &v->decl);
            printf("}");
        }
    }
    printf("], \"params\": %lld, \"layers\": [", (long long)g->n_param_scalars);
    for (int l = 0; l < g->n_layers; l++) {
        const cs_layer *L = &g->layers[l];
        printf("%s{\"name\": ", l ? ", " : "");
        json_string(stdout, L->name);
        printf(", \"op_type\": ");
        json_string(stdout, L->op_type);
        printf(", \"fused_add\": %s, \"n_params\": %lld, \"tensors\": [",
               L->bias_node >= 0 ? "true" : "false", (long long)L->numel);
        for (int p = 0; p < L->n_params; p++) {
            const cs_value *v = &g->values[g->params[L->first_param + p].value];
            printf("%s{\"name\": ", p ? ", " : "");
            json_string(stdout, v->name);
            printf(", \"shape\": ");
            json_shape(stdout, &v->init);
            printf(", \"numel\": %lld", (long long)cs_tensor_numel(&v->init));
            if (v->view_source >= 0) {
                printf(", \"part_of\": ");
                json_string(stdout, g->values[v->view_source].name);
            }
            printf("}");
        }
        printf("]}");
    }
    printf("], \"constants\": [");
    bool first_const = true;
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_inputs; i++) {
            const char *why = NULL;
            if (!kept_constant(g, k, i, &why))
                continue;
            printf("%s{\"name\": ", first_const ? "" : ", ");
            json_string(stdout, g->values[g->nodes[k].inputs[i]].name);
            printf(", \"node\": ");
            json_string(stdout, g->nodes[k].name);
            printf(", \"why\": ");
            json_string(stdout, why);
            printf("}");
            first_const = false;
        }
    printf("], \"unsupported\": [");
    int first = 1;
    for (int k = 0; k < g->n_nodes; k++) {
        const cs_node *n = &g->nodes[k];
        if (n->op)
            continue;
        printf("%s{\"node\": ", first ? "" : ", ");
        json_string(stdout, n->name);
        printf(", \"op_type\": ");
        json_string(stdout, n->op_type);
        printf(", \"domain\": ");
        json_string(stdout, n->domain);
        printf("}");
        first = 0;
    }
    printf("], \"loss_logits\": ");
    if (head && head->through) {
        printf("{\"value\": ");
        json_string(stdout, g->values[head->logits_value].name);
        printf(", \"skipped_node\": ");
        json_string(stdout, head->through);
        printf("}");
    } else {
        printf("null");
    }
    printf("}\n");
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const cs_op_def *const *)a)->name, (*(const cs_op_def *const *)b)->name);
}

/* The op table, sorted by name: the README's operator list is this output
 * (tools/readme_ops regenerates it, tests/cli/test_readme_ops.sh compares). */
static int print_ops(void)
{
    int n = cs_op_count();
    const cs_op_def **ops = malloc((size_t)n * sizeof *ops);
    if (!ops) {
        fprintf(stderr, "curvscope: error: out of memory listing %d operators\n", n);
        return 1;
    }
    for (int i = 0; i < n; i++)
        ops[i] = cs_op_at(i);
    qsort(ops, (size_t)n, sizeof *ops, by_name);
    for (int i = 0; i < n; i++) {
        const cs_op_def *op = ops[i];
        printf("%-24s %3d  ", op->name, op->min_opset);
        if (op->no_derivative)
            printf("none\n");
        else
            printf("%s%s%s\n", op->vjp ? "vjp " : "", op->jvp ? "jvp " : "",
                   op->rop ? "rop" : (op->flags & CS_OP_LINEAR) ? "linear" : "");
    }
    free(ops);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--ops") == 0)
        return print_ops();
    bool json = false, ops = false;
    const char *model = NULL;
    const char *freeze = NULL, *train = NULL;
    const cli_opt opts[] = {CLI_OPT("json", CLI_OPT_FLAG, &json), CLI_OPT("ops", CLI_OPT_FLAG, &ops),
                            CLI_OPT("freeze-params", CLI_OPT_TEXT, &freeze),
                            CLI_OPT("train-params", CLI_OPT_TEXT, &train)};
    int parsed = cli_parse_args("info", argc, argv, opts, 4, NULL, cmd_info_usage, "MODEL.onnx", &model);
    if (parsed >= 0)
        return parsed;
    if (ops)
        return cli_usage_error("info", "--ops lists the operator table and takes no model");
    int code = 0;
    cs_graph *g = cli_load_model(model, &code);
    if (!g)
        return code;
    if ((code = cli_choose_params(g, model, freeze, train))) {
        cs_graph_free(g);
        return code;
    }
    cs_loss_head head;
    cs_err err = {0};
    bool have_head = g->n_outputs > 0 && cs_loss_head_init(&head, g, CS_LOSS_CE, &err) == CS_OK;
    if (json)
        print_json(g, model, have_head ? &head : NULL);
    else
        print_text(g, model, have_head ? &head : NULL);
    cs_graph_free(g);
    return 0;
}
