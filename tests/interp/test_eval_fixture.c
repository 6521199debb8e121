/* `curvscope eval` against PyTorch: the bundled models' loss, accuracy and
 * logits on the first 1000 Fashion-MNIST test images equal the values
 * tools/make_models.py computed with PyTorch (tests/fixtures/eval_*.txt,
 * logits_*.txt). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../tap.h"
#include "../test_util.h"
#include "objective/evaluate.h"
#include "interp/plan.h"
#include "interp/model.h"
#include "onnx/loader.h"

/* Value of "key VALUE" in a fixture file; NAN when absent. */
static double fixture_value(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NAN;
    char line[512];
    double v = NAN;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ' ')
            v = strtod(line + n + 1, NULL);
    fclose(f);
    return v;
}

static const double rtol_loss = 1e-4;

static void check_model(const char *name, const char *fmnist)
{
    char model[512], fixture[512], logits_path[512], images[512], labels[512];
    char rel[128];
    snprintf(rel, sizeof rel, "tests/models/%s.onnx", name);
    test_src_path(model, sizeof model, rel);
    snprintf(rel, sizeof rel, "tests/fixtures/eval_%s.txt", name);
    test_src_path(fixture, sizeof fixture, rel);
    snprintf(rel, sizeof rel, "tests/fixtures/logits_%s.txt", name);
    test_src_path(logits_path, sizeof logits_path, rel);
    snprintf(images, sizeof images, "idx:%s/t10k-images-idx3-ubyte.gz", fmnist);
    snprintf(labels, sizeof labels, "idx:%s/t10k-labels-idx1-ubyte.gz", fmnist);

    cs_err err = {0};
    cs_graph *g = NULL;
    if (!ok(cs_model_load_file(model, &g, &err) == CS_OK, "%s: load (%s)", name, err.msg))
        return;
    int64_t samples = (int64_t)fixture_value(fixture, "samples");
    cs_dataset ds;
    if (!ok(cs_dataset_load(&ds, images, labels, samples, &err) == CS_OK, "%s: dataset (%s)", name,
            err.msg)) {
        cs_graph_free(g);
        return;
    }
    cs_norm norm;
    cs_norm_init(&norm);
    if (cs_norm_parse_scale(&norm, "1/255", &err) || cs_norm_parse_mean(&norm, "0.2860", &err) ||
        cs_norm_parse_std(&norm, "0.3530", &err))
        ok(0, "%s: normalisation (%s)", name, err.msg);

    static const struct { cs_loss_kind kind; const char *key; } losses[] = {
        {CS_LOSS_CE, "loss_ce"}, {CS_LOSS_MSE, "loss_mse"}};
    for (size_t l = 0; l < 2; l++) {
        /* Batch 64 does not divide 1000: the tail plan is exercised too. */
        cs_eval_opts o = {.loss = losses[l].kind, .batch = 64, .norm = &norm};
        cs_eval_result r;
        double want = fixture_value(fixture, losses[l].key);
        if (!ok(cs_evaluate(g, &ds, &o, &r, &err) == CS_OK, "%s: evaluate %s (%s)", name,
                losses[l].key, err.msg))
            continue;
        ok(r.samples == samples, "%s: %lld samples", name, (long long)r.samples);
        ok(tap_close(r.loss, want, rtol_loss, 0), "%s: %s %.10g, PyTorch %.10g", name,
           losses[l].key, r.loss, want);
        /* Accuracy: the reference argmax is taken in float64, ours in
         * float32; a sample whose two top logits are within float32
         * rounding may flip, so one sample of slack is allowed. */
        double acc = fixture_value(fixture, "accuracy");
        ok(r.has_accuracy && fabs(r.accuracy - acc) <= 1.0 / (double)samples + 1e-12,
           "%s: accuracy %.4f, PyTorch %.4f", name, r.accuracy, acc);
    }

    /* Logits of the first 8 images, float32 both sides. */
    cs_plan p;
    if (ok(cs_plan_prepare_batch(&p, g, 8, &err) == CS_OK, "%s: plan for 8 (%s)", name, err.msg)) {
        cs_status st = cs_dataset_fill_inputs(&ds, 0, &norm, cs_plan_input(&p, 0), &err);
        if (!st)
            st = cs_plan_forward(&p, &err);
        FILE *f = fopen(logits_path, "r");
        int bad = st != CS_OK || !f, count = 0;
        const cs_tensor *z = cs_plan_output(&p, 0);
        char line[4096];
        double worst = 0;
        while (!bad && f && fgets(line, sizeof line, f)) {
            if (line[0] == '#')
                continue;
            char *s = line, *end;
            for (;;) {
                double want = strtod(s, &end);
                if (end == s)
                    break;
                s = end;
                if (count >= cs_tensor_numel(z)) {
                    bad = 1;
                    break;
                }
                double got = ((const float *)z->data)[count++];
                if (fabs(got - want) > worst)
                    worst = fabs(got - want);
                if (!tap_close(got, want, 1e-4, 1e-4))
                    bad = 1;
            }
        }
        if (f)
            fclose(f);
        ok(!bad && count == cs_tensor_numel(z), "%s: %d logits match PyTorch float32 (max |diff| %.2g)",
           name, count, worst);
        cs_plan_free(&p);
    }
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    const char *fmnist = test_env("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist");
    struct stat sb;
    char probe[600];
    snprintf(probe, sizeof probe, "%s/t10k-images-idx3-ubyte.gz", fmnist);
    if (stat(probe, &sb) != 0) {
        printf("1..0 # SKIP Fashion-MNIST not found at %s (install dataset-fashion-mnist)\n", fmnist);
        return 0;
    }
    check_model("mlp", fmnist);
    check_model("cnn", fmnist);
    check_model("attn", fmnist);
    return tap_done();
}
