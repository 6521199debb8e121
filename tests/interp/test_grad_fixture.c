/* Gradients of the dataset loss for the bundled models equal PyTorch's:
 * tests/fixtures/grad_<model>.txt holds the float64 gradient of the mean ce
 * loss over the first 256 Fashion-MNIST training images (written by
 * tools/make_models.py), per ONNX initializer in doc/design.md §2.3's parameter
 * order.  curvscope runs the model in float32 as stored, so the comparison
 * is relative to each tensor's largest entry: |g - g_ref| <= 1e-4 max|g_ref|
 * element by element, which also checks the parameter order and names.
 * The float32 rounding error of a gradient entry scales with the
 * magnitudes flowing through the network, not with the entry itself: a
 * tensor whose exact gradient vanishes by symmetry (the key bias of
 * attention, which shifts every score of a query row alike and so cancels
 * in the softmax) holds only that rounding.  Each tensor's scale is
 * therefore at least 1e-3 of the largest gradient entry of the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../tap.h"
#include "../test_util.h"
#include "interp/model.h"
#include "interp/param_rule.h"
#include "objective/objective.h"
#include "onnx/loader.h"

#define SAMPLES 256

static void check(const char *name, const char *fmnist)
{
    char rel[128], model[512], fixture[512], images[600], labels[600];
    snprintf(rel, sizeof rel, "tests/models/%s.onnx", name);
    test_src_path(model, sizeof model, rel);
    snprintf(rel, sizeof rel, "tests/fixtures/grad_%s.txt", name);
    test_src_path(fixture, sizeof fixture, rel);
    snprintf(images, sizeof images, "idx:%s/train-images-idx3-ubyte.gz", fmnist);
    snprintf(labels, sizeof labels, "idx:%s/train-labels-idx1-ubyte.gz", fmnist);
    cs_err err = {0};
    cs_graph *g = NULL;
    cs_dataset ds;
    if (!ok(cs_model_load_file(model, &g, &err) == CS_OK, "%s: load (%s)", name, err.msg))
        return;
    /* The fixture predates the elementwise parameters (interp/param_rule.h):
     * the tensors it names as "not listed" (attn's pos) are frozen here, so
     * that the parameter order is the fixture's; their gradients are
     * checked by test_autodiff and the zoo test. */
    char unlisted[256] = "";
    FILE *fx = fopen(fixture, "r");
    for (char line[512]; fx && fgets(line, sizeof line, fx) && line[0] == '#';) {
        const char *at = strstr(line, "not listed: ");
        if (!at)
            continue;
        snprintf(unlisted, sizeof unlisted, "%s", at + strlen("not listed: "));
        for (char *c = unlisted; *c; c++)
            *c = *c == ' ' ? ',' : *c == '\n' ? '\0' : *c;
    }
    if (fx)
        fclose(fx);
    if (unlisted[0] && !ok(cs_params_choose(g, unlisted, NULL, &err) == CS_OK, "%s: freeze %s (%s)", name,
                           unlisted, err.msg)) {
        cs_graph_free(g);
        return;
    }
    if (!ok(cs_dataset_load(&ds, images, labels, SAMPLES, &err) == CS_OK, "%s: data (%s)", name, err.msg)) {
        cs_graph_free(g);
        return;
    }
    cs_norm norm;
    cs_norm_init(&norm);
    if (cs_norm_parse_scale(&norm, "1/255", &err) || cs_norm_parse_mean(&norm, "0.2860", &err) ||
        cs_norm_parse_std(&norm, "0.3530", &err))
        ok(0, "normalisation (%s)", err.msg);
    cs_objective o;
    double loss = 0, *grad = NULL;
    if (ok(cs_objective_init(&o, g, &ds, &norm, CS_LOSS_CE, 100, CS_AD_GRAD, &err) == CS_OK,
           "%s: objective (%s)", name, err.msg)) {
        grad = calloc((size_t)g->n_param_scalars + 1, sizeof(double));
        ok(cs_objective_gradient(&o, &loss, grad, &err) == CS_OK, "%s: gradient (%s)", name, err.msg);
        cs_objective_free(&o);
    }
    double model_scale = 0; /* largest gradient entry (ours; the fixture's agrees to 1e-4) */
    for (int64_t i = 0; grad && i < g->n_param_scalars; i++)
        model_scale = fmax(model_scale, fabs(grad[i]));
    FILE *f = fopen(fixture, "r");
    char *line = NULL;
    size_t cap = 0;
    int q = 0, seen = 0;
    while (grad && f && getline(&line, &cap, f) > 0) {
        if (line[0] == '#')
            continue;
        if (strncmp(line, "loss ", 5) == 0) {
            double want = strtod(line + 5, NULL);
            ok(tap_close(loss, want, 1e-5, 0), "%s: loss %.9g, PyTorch %.9g", name, loss, want);
            continue;
        }
        char pname[256];
        long long numel;
        if (sscanf(line, "param %255s %lld", pname, &numel) != 2)
            continue;
        seen++;
        if (getline(&line, &cap, f) <= 0)
            break;
        if (q >= g->n_params) {
            ok(0, "%s: fixture has more parameter tensors than the model (%s)", name, pname);
            continue;
        }
        const cs_param *P = &g->params[q++];
        const cs_value *v = &g->values[P->value];
        if (!ok(strcmp(v->name, pname) == 0 && numel == cs_tensor_numel(&v->init),
                "%s: parameter %d is %s with %lld values (fixture: %s, %lld)", name, q - 1, v->name,
                (long long)cs_tensor_numel(&v->init), pname, numel))
            continue;
        double *ref = malloc(sizeof(double) * (size_t)numel);
        char *s = line, *end;
        long long k = 0;
        for (; k < numel; k++, s = end) {
            ref[k] = strtod(s, &end);
            if (end == s)
                break;
        }
        double scale = 1e-3 * model_scale, worst = 0;
        for (long long i = 0; i < k; i++)
            scale = fmax(scale, fabs(ref[i]));
        for (long long i = 0; i < k; i++)
            worst = fmax(worst, fabs(grad[P->offset + i] - ref[i]));
        ok(k == numel && worst <= 1e-4 * scale, "%s: gradient of %s matches PyTorch (max err %.2g, %.1e of its scale)",
           name, pname, worst, scale > 0 ? worst / scale : 0.0);
        free(ref);
    }
    ok(f && seen == g->n_params, "%s: fixture covers all %d parameter tensors (%d)", name, g->n_params, seen);
    if (f)
        fclose(f);
    free(line);
    free(grad);
    cs_dataset_free(&ds);
    cs_graph_free(g);
}

int main(void)
{
    const char *fmnist = test_env("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist");
    char probe[600];
    struct stat sb;
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", fmnist);
    if (stat(probe, &sb) != 0) {
        printf("1..0 # SKIP Fashion-MNIST not found at %s (install dataset-fashion-mnist)\n", fmnist);
        return 0;
    }
    check("mlp", fmnist);
    check("cnn", fmnist);
    check("attn", fmnist);
    return tap_done();
}
