/* curvscope quantize MODEL.onnx --data SPEC --labels SPEC --db DB --out Q.onnx */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "interp/model.h"
#include "objective/evaluate.h"
#include "onnx/writer.h"
#include "quant/quant.h"
#include "quant/quantize.h"
#include "store/rows.h"

void cmd_quantize_usage(FILE *f)
{
    fprintf(f, "usage: curvscope quantize MODEL.onnx --data SPEC --labels SPEC --db DB --out Q.onnx [options]\n\n"
               "Hessian-aware quantization (HAWQ-V2): per-layer Hutchinson traces, sensitivities\n"
               "Tr(H)/n ||Q(W) - W||^2 per width, the exact allocation under a size budget, the\n"
               "model written with its weights rounded (symmetric, per tensor, half to even),\n"
               "its measured loss stored next to the predicted one.\n\n"
               "  --out FILE         the quantized model\n"
               "  --db FILE          hessian_traces, quant_sensitivity, quant_allocation, quant_result\n"
               "  --bits LIST        candidate widths in 2..8 (default 8,6,4)\n"
               "  --budget-bits B    average bits per quantized weight (default: the largest width)\n"
               "  --budget-bytes N   total parameter bytes instead\n"
               "  --format F         fake (float initializers holding the rounded values; default)\n"
               "  --probes N         Hutchinson probes per layer (default 20, at least 2)\n");
    cli_data_opts_usage(f);
    fprintf(f, "  --help             this text\n");
}

static int parse_format(void *fmt, const char *cmd, const char *value)
{
    if (strcmp(value, "fake") != 0)
        return cli_usage_error(cmd, "--format is fake (qdq is not implemented yet), got '%s'", value);
    *(const char **)fmt = "fake";
    return 0;
}

int cmd_quantize(int argc, char **argv)
{
    const char *out = NULL, *db_path = NULL, *model = NULL, *format = "fake";
    double bitsv[8] = {0}, budget_bits = 0;
    int n_bits = 0, probes = 20;
    int64_t budget_bytes = 0;
    cli_data_opts d;
    cli_data_opts_init(&d);
    const cli_opt opts[] = {
        CLI_OPT("out", CLI_OPT_TEXT, &out),
        CLI_OPT("db", CLI_OPT_TEXT, &db_path),
        CLI_OPT("bits", CLI_OPT_LIST, bitsv, .max = 8, .count = &n_bits, .max_n = 8, .replace = true),
        CLI_OPT("budget-bits", CLI_OPT_POSITIVE, &budget_bits),
        CLI_OPT("budget-bytes", CLI_OPT_COUNT, &budget_bytes),
        CLI_OPT("format", CLI_OPT_CALL, &format, .call = parse_format),
        CLI_OPT("probes", CLI_OPT_INT, &probes, .max = 1000000),
        CLI_OPT("json", CLI_OPT_FLAG, &d.json),
    };
    int parsed = cli_parse_args("quantize", argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &d,
                                cmd_quantize_usage, "MODEL.onnx", &model);
    if (parsed >= 0)
        return parsed;
    int bits[8] = {8, 6, 4};
    if (n_bits == 0)
        n_bits = 3;
    for (int k = 0; k < n_bits && bitsv[0] != 0; k++) {
        if (bitsv[k] != floor(bitsv[k]) || bitsv[k] < CS_QUANT_MIN_BITS)
            return cli_usage_error("quantize", "--bits takes widths 2..8, got %g", bitsv[k]);
        bits[k] = (int)bitsv[k];
    }
    if (!d.data || !d.labels)
        return cli_usage_error("quantize", "missing --data SPEC or --labels SPEC");
    if (!out || !db_path)
        return cli_usage_error("quantize", "missing --out Q.onnx or --db DB");
    if (budget_bits > 0 && budget_bytes > 0)
        return cli_usage_error("quantize", "--budget-bits and --budget-bytes exclude each other");
    if (probes < 2)
        return cli_usage_error("quantize", "--probes needs at least 2 (the standard error)");
    int code = 0;
    cli_run run;
    if ((code = cli_run_open(&run, db_path)))
        return code;
    cs_graph *g = cli_load_model_finite(model, &d, &code);
    if (!g) {
        cli_run_close(&run);
        return code;
    }
    cs_err err = {0};
    cs_dataset ds;
    cs_status st = cs_dataset_load(&ds, d.data, d.labels, d.samples, &err);
    if (st) {
        cs_graph_free(g);
        cli_run_close(&run);
        return cli_report(st, &err);
    }
    double pred = NAN, tol = NAN, loss0 = NAN, measured = NAN;
    int64_t size_bytes = 0;
    st = cli_run_begin(&run, "quantize", model, &d, ds.n, argc, argv, &err);
    if (!st && !(st = cs_store_write_graph(run.db, run.id, g, &err))) {
        const char *const kv[][2] = {
            {"quant_scheme", "symmetric per tensor, round half to even, zero point 0"},
            {"quant_prediction", "L0 + g^T dW + 1/2 sum_i Tr(H_i)/n_i ||dW_i||^2 (HAWQ-V2 isotropic block)"},
            {"quant_tolerance", "3 se of the trace term + |1/2 dW^T H dW - trace term| + 1e-5 (1 + |L0|)"},
            {"loss_reduction", "mean over samples"}};
        for (size_t i = 0; i < sizeof kv / sizeof kv[0] && !st; i++)
            st = cs_store_convention(run.db, run.id, kv[i][0], kv[i][1], &err);
    }
    cs_quantize_opts qo = {.bits = bits, .n_bits = n_bits, .budget_bits = budget_bits, .budget_bytes = budget_bytes,
                           .probes = probes, .seed = d.seed, .norm = &d.norm, .loss = d.loss, .batch = d.batch};
    cs_quantize_result qr = {0};
    if (!st && !(st = cs_quantize_model(g, &ds, &qo, &qr, &err))) {
        pred = qr.predicted, tol = qr.tolerance, loss0 = qr.loss_before, size_bytes = qr.size_bytes;
        st = cs_store_begin(run.db, &err);
        for (int j = 0; j < qr.n_layers && !st; j++)
            st = cs_store_quant_layer(run.db, run.id, qr.layer[j], qr.trace[j], qr.trace_se[j], probes, bits,
                                      qr.omega + (size_t)j * n_bits, qr.delta_sq + (size_t)j * n_bits, n_bits,
                                      qr.chosen_bits[j], &err);
    }
    cs_quantize_result_free(&qr);
    if (!st)
        st = cs_onnx_write_updated(model, g, out, &err);
    cs_graph *q = NULL;
    if (!st)
        st = cs_model_load_file(out, &q, &err);
    if (!st) {
        cs_eval_opts eo = {.loss = d.loss, .batch = d.batch, .norm = &d.norm};
        cs_eval_result r;
        if (!(st = cs_evaluate(q, &ds, &eo, &r, &err)))
            measured = r.loss;
    }
    if (q)
        cs_graph_free(q);
    if (!st && !(st = cs_store_quant_result(run.db, run.id, loss0, pred, tol, measured, size_bytes, format, &err)))
        st = cs_store_commit(run.db, &err);
    st = cli_run_end(&run, st, &err, cli_run_seconds(&run));
    if (st) {
        code = cli_report(st, &err);
    } else if (d.json) {
        printf("{\"run\": %lld, \"out\": ", (long long)run.id);
        json_string(stdout, out);
        printf(", \"format\": \"%s\", \"size_bytes\": %lld, \"loss_before\": ", format, (long long)size_bytes);
        json_number(stdout, loss0);
        printf(", \"predicted_loss\": ");
        json_number(stdout, pred);
        printf(", \"tolerance\": ");
        json_number(stdout, tol);
        printf(", \"measured_loss\": ");
        json_number(stdout, measured);
        printf("}\n");
    } else
        printf("loss %.6f -> measured %.6f, predicted %.6f +- %.3g (%s); %lld bytes; wrote %s (run %lld in %s)\n",
               loss0, measured, pred, tol, fabs(measured - pred) <= tol ? "inside" : "OUTSIDE",
               (long long)size_bytes, out, (long long)run.id, db_path);
    cs_dataset_free(&ds);
    cs_graph_free(g);
    cli_run_close(&run);
    return code;
}
