/* curvscope eval MODEL.onnx --data SPEC --labels SPEC [options] */
#include <string.h>

#include <math.h>
#include <stdlib.h>

#include "base/dist.h"
#include "cli/cli.h"
#include "data/readers.h"
#include "objective/evaluate.h"
#include "objective/objective.h"

void cmd_eval_usage(FILE *f)
{
    fprintf(f, "usage: curvscope eval MODEL.onnx --data SPEC --labels SPEC [options]\n\n"
               "Mean loss (doc/design.md §2.1's definition) and accuracy over a dataset.\n\n");
    cli_data_opts_usage(f);
    fprintf(f, "  --grad             also the gradient of the dataset loss: its L2 norm per\n"
               "                     parameter tensor (ONNX initializer)\n"
               "  --grad-out FILE    write the whole flat gradient as a float64 .npy, in\n"
               "                     parameter order (implies --grad)\n"
               "  --help             this text\n\n"
               "JSON keys: model, loss_kind, loss, accuracy (null without integer labels),\n"
               "samples, classes, seconds, samples_per_sec, logits; with --grad also\n"
               "grad_norms (initializer name -> L2 norm) and grad_norm (whole vector).\n");
}


static double norm2(const double *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i] * x[i];
    return sqrt(s);
}

/* Gradient of the mean loss over the whole dataset (a second pass). */
/* The gradient's norm per initializer of the file: parameter q's, or, for
 * the parts of one initializer folded at bind (interp/param_views.h), that
 * initializer's over all its parts, on its first part.  false: q is a later
 * part, already counted. */
static bool initializer_grad_norm(const cs_graph *g, const double *grad, int q, const char **name,
                                  double *norm)
{
    const cs_value *v = &g->values[g->params[q].value];
    *name = v->name;
    if (v->view_source < 0) {
        *norm = norm2(grad + g->params[q].offset, cs_tensor_numel(&v->init));
        return true;
    }
    double ss = 0;
    for (int r = 0; r < g->n_params; r++) {
        const cs_value *w = &g->values[g->params[r].value];
        if (w->view_source != v->view_source)
            continue;
        if (r < q)
            return false;
        double n = norm2(grad + g->params[r].offset, cs_tensor_numel(&w->init));
        ss += n * n;
    }
    *name = g->values[v->view_source].name;
    *norm = sqrt(ss);
    return true;
}

static cs_status eval_gradient(const cs_graph *g, const cs_dataset *ds, const cli_data_opts *o,
                               double **out, cs_err *err)
{
    if (g->n_param_scalars == 0)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "the model has no trainable parameters");
    cs_objective obj;
    cs_status st = cs_objective_init(&obj, g, ds, &o->norm, o->loss, o->batch, CS_AD_GRAD, err);
    if (st)
        return st;
    double *grad = calloc((size_t)g->n_param_scalars, sizeof(double));
    if (!grad)
        st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
    else
        st = cs_objective_gradient(&obj, NULL, grad, err);
    cs_objective_free(&obj);
    if (st) {
        free(grad);
        return st;
    }
    *out = grad;
    return CS_OK;
}

int cmd_eval(int argc, char **argv)
{
    cli_data_opts o;
    cli_data_opts_init(&o);
    bool want_grad = false;
    const char *grad_out = NULL, *model = NULL;
    const cli_opt opts[] = {CLI_OPT("json", CLI_OPT_FLAG, &o.json),
                            CLI_OPT("grad", CLI_OPT_FLAG, &want_grad),
                            CLI_OPT("grad-out", CLI_OPT_TEXT, &grad_out, .seen = &want_grad)};
    int parsed = cli_parse_args("eval", argc, argv, opts, 3, &o, cmd_eval_usage, "MODEL.onnx", &model);
    if (parsed >= 0)
        return parsed;
    int code = 0;
    if (!o.data)
        return cli_usage_error("eval", "missing --data SPEC");
    if (!o.labels)
        return cli_usage_error("eval", "missing --labels SPEC (the loss needs them)");

    cs_graph *g = cli_load_model_finite(model, &o, &code);
    if (!g)
        return code;
    cs_err err = {0};
    cs_dataset ds;
    cs_status st = cli_load_dataset(&ds, &o, &err);
    if (st) {
        cs_graph_free(g);
        return cli_report(st, &err);
    }
    cs_eval_opts eo = {.loss = o.loss, .batch = o.batch, .norm = &o.norm,
                       .progress = cli_progress, .progress_ctx = "eval"};
    cs_eval_result r;
    double *grad = NULL;
    st = cs_evaluate(g, &ds, &eo, &r, &err);
    if (!st && want_grad)
        st = eval_gradient(g, &ds, &o, &grad, &err);
    if (!st && grad_out && cs_dist_rank() == 0) { /* rank 0 alone writes */
        int64_t dims[1] = {g->n_param_scalars};
        st = cs_write_npy_f64(grad_out, grad, 1, dims, &err);
    }
    if (st) {
        code = cli_report(st, &err);
    } else if (o.json) {
        printf("{\"model\": ");
        json_string(stdout, model);
        printf(", \"loss_kind\": \"%s\", \"loss\": %.17g, \"accuracy\": ", cs_loss_name(o.loss), r.loss);
        if (r.has_accuracy)
            printf("%.17g", r.accuracy);
        else
            printf("null");
        printf(", \"samples\": %lld, \"classes\": %lld, \"seconds\": %.6f, \"samples_per_sec\": %.1f, "
               "\"logits\": ",
               (long long)r.samples, (long long)r.classes, r.seconds,
               r.seconds > 0 ? (double)r.samples / r.seconds : 0.0);
        json_string(stdout, g->values[r.head.logits_value].name);
        if (grad) {
            printf(", \"grad_norm\": %.17g, \"grad_norms\": {", norm2(grad, g->n_param_scalars));
            for (int q = 0, first = 1; q < g->n_params; q++) {
                const char *name;
                double nq;
                if (!initializer_grad_norm(g, grad, q, &name, &nq))
                    continue;
                printf("%s", first ? "" : ", ");
                json_string(stdout, name);
                printf(": %.17g", nq);
                first = 0;
            }
            printf("}");
        }
        printf("}\n");
    } else {
        if (r.head.through)
            printf("logits     input of %s node '%s'\n", r.head.through_op, r.head.through);
        printf("samples    %lld\n", (long long)r.samples);
        printf("loss       %.6f (%s, mean over samples)\n", r.loss, cs_loss_name(o.loss));
        if (r.has_accuracy)
            printf("accuracy   %.4f\n", r.accuracy);
        printf("speed      %.0f samples/s (%.3f s)\n",
               r.seconds > 0 ? (double)r.samples / r.seconds : 0.0, r.seconds);
        if (grad) {
            printf("gradient   L2 norm %.6g over %lld parameters\n", norm2(grad, g->n_param_scalars),
                   (long long)g->n_param_scalars);
            for (int q = 0; q < g->n_params; q++) {
                const char *name;
                double nq;
                if (initializer_grad_norm(g, grad, q, &name, &nq))
                    printf("  %-40s %12.6g\n", name, nq);
            }
            if (grad_out)
                printf("gradient written to %s (float64, %lld values, parameter order)\n", grad_out,
                       (long long)g->n_param_scalars);
        }
    }
    free(grad);
    cs_dataset_free(&ds);
    cs_graph_free(g);
    return code;
}
