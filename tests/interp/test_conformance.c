/* ONNX backend conformance: every case of Debian's libonnx-testdata (node,
 * pytorch-converted, pytorch-operator, simple) whose operators are all
 * supported is run through cs_run_model -- the code path of `curvscope run`
 * -- and every output is compared with the expected one (float: rtol 1e-4,
 * atol 1e-5; integers and bools exactly).
 *
 * Skips, each with its reason on the TAP line:
 *   - a case using an operator curvscope does not implement;
 *     (an operator older than the opset its kernel implements counts as
 *     not implemented: cs_op_def.min_opset);
 *   - a case whose model or data uses an element type or attribute the
 *     supported operator rejects as unsupported (for example string or
 *     float16 tensors).  These are listed in the summary so they stay
 *     visible. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../tap.h"
#include "../test_util.h"
#include "coverage.h"
#include "interp/run.h"
#include "interp/model.h"
#include "interp/op.h"
#include "onnx/loader.h"
#include "onnx/tensor_proto.h"

static int n_pass, n_fail, n_skip_op, n_skip_feature;

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted subdirectory names of dir (malloc'ed array of malloc'ed names). */
static char **list_dirs(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    *count = 0;
    if (!d)
        return NULL;
    char **names = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, sizeof *names * (size_t)cap);
        }
        names[(*count)++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)*count, sizeof *names, name_cmp);
    return names;
}

static void free_names(char **names, int count)
{
    for (int i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* Compare got with want; describe the first difference in why. */
static int outputs_match(const cs_tensor *got, const cs_tensor *want, char *why, size_t size)
{
    char a[96], b[96];
    if (got->dtype != want->dtype) {
        snprintf(why, size, "type %s, expected %s", cs_dtype_name(got->dtype), cs_dtype_name(want->dtype));
        return 0;
    }
    if (!cs_tensor_same_shape(got, want)) {
        /* A scalar and a one-element 1-d tensor are not the same shape. */
        snprintf(why, size, "shape %s, expected %s", cs_shape_str(got, a, sizeof a),
                 cs_shape_str(want, b, sizeof b));
        return 0;
    }
    int64_t n = cs_tensor_numel(want);
    bool is_float = cs_dtype_is_float(want->dtype) || want->dtype == CS_DT_FLOAT16;
    for (int64_t i = 0; i < n; i++) {
        if (is_float) {
            double x = cs_tensor_get_f64(got, i), y = cs_tensor_get_f64(want, i);
            if (!tap_close(x, y, 1e-4, 1e-5)) {
                snprintf(why, size, "element %lld is %.9g, expected %.9g", (long long)i, x, y);
                return 0;
            }
        } else if (cs_tensor_get_i64(got, i) != cs_tensor_get_i64(want, i)) {
            snprintf(why, size, "element %lld is %lld, expected %lld", (long long)i,
                     (long long)cs_tensor_get_i64(got, i), (long long)cs_tensor_get_i64(want, i));
            return 0;
        }
    }
    return 1;
}

/* Read dir/<prefix>_<k>.pb for k = 0.. into tensors; returns the count. */
static int read_pbs(const char *dir, const char *prefix, cs_tensor *out, int max, cs_err *err,
                    cs_status *st)
{
    int k = 0;
    *st = CS_OK;
    for (; k < max; k++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s_%d.pb", dir, prefix, k);
        struct stat sb;
        if (stat(path, &sb) != 0)
            break;
        if ((*st = cs_tensor_proto_read_file(path, &out[k], NULL, err)))
            break;
    }
    return k;
}

#define MAX_IO 32

static void run_case(const char *suite, const char *dir, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, name);
    cs_err err = {0};
    cs_graph *g = NULL;
    cs_status st = cs_model_load_file(path, &g, &err);
    if (st == CS_ERR_UNSUPPORTED) {
        skip("%s/%s: %s", suite, name, err.msg);
        n_skip_feature++;
        return;
    }
    if (st) {
        ok(0, "%s/%s: load: %s", suite, name, err.msg);
        n_fail++;
        return;
    }
    char unsupported[256];
    if (cs_graph_unsupported(g, unsupported, sizeof unsupported)) {
        skip("%s/%s: unsupported operator %s", suite, name, unsupported);
        n_skip_op++;
        cs_graph_free(g);
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        int n = pass ? g->n_outputs : g->n_inputs;
        const int *idx = pass ? g->outputs : g->inputs;
        for (int i = 0; i < n; i++) {
            const cs_value *v = &g->values[idx[i]];
            if (cs_dtype_size(v->decl.dtype) == 0) {
                skip("%s/%s: %s '%s' is not a tensor of a supported type (%s)", suite, name,
                     pass ? "output" : "input", v->name, cs_dtype_name(v->decl.dtype));
                n_skip_feature++;
                cs_graph_free(g);
                return;
            }
        }
    }
    int sets = 0, passed = 1, skipped = 0;
    char why[512] = "";
    for (;; sets++) {
        char set_dir[PATH_MAX];
        struct stat sb;
        snprintf(set_dir, sizeof set_dir, "%s/%s/test_data_set_%d", dir, name, sets);
        if (stat(set_dir, &sb) != 0)
            break;
        cs_tensor in[MAX_IO] = {0}, want[MAX_IO] = {0}, got[MAX_IO] = {0};
        int n_in = read_pbs(set_dir, "input", in, MAX_IO, &err, &st);
        int n_want = st ? 0 : read_pbs(set_dir, "output", want, MAX_IO, &err, &st);
        if (st == CS_ERR_UNSUPPORTED) {
            snprintf(why, sizeof why, "test data: %s", err.msg);
            skipped = 1;
        } else if (st) {
            snprintf(why, sizeof why, "test data: %s", err.msg);
            passed = 0;
        } else if (n_in != g->n_inputs || n_want != g->n_outputs) {
            snprintf(why, sizeof why, "test data has %d inputs / %d outputs, model %d / %d", n_in,
                     n_want, g->n_inputs, g->n_outputs);
            passed = 0;
        } else if ((st = cs_run_model(g, in, got, &err)) != CS_OK) {
            snprintf(why, sizeof why, "%s", err.msg);
            if (st == CS_ERR_UNSUPPORTED)
                skipped = 1;
            else
                passed = 0;
        } else {
            for (int k = 0; k < n_want && passed; k++) {
                char diff[400];
                if (!outputs_match(&got[k], &want[k], diff, sizeof diff)) {
                    snprintf(why, sizeof why, "data set %d output %d (%s): %s", sets, k,
                             g->values[g->outputs[k]].name, diff);
                    passed = 0;
                }
            }
            for (int k = 0; k < g->n_outputs; k++)
                cs_tensor_free(&got[k]);
        }
        for (int k = 0; k < MAX_IO; k++) {
            cs_tensor_free(&in[k]);
            cs_tensor_free(&want[k]);
        }
        if (!passed || skipped)
            break;
    }
    if (!passed) {
        ok(0, "%s/%s: %s", suite, name, why);
        n_fail++;
    } else if (skipped) {
        skip("%s/%s: %s", suite, name, why);
        n_skip_feature++;
    } else if (sets == 0) {
        ok(0, "%s/%s: no test data sets", suite, name);
        n_fail++;
    } else {
        ok(1, "%s/%s", suite, name);
        n_pass++;
        /* every operator of a passing backend test computed ONNX's reference
         * outputs: its forward is checked (the op-table contract) */
        for (int k = 0; k < g->n_nodes; k++)
            if (g->nodes[k].op)
                cover_note("forward", g->nodes[k].op->name);
    }
    cs_graph_free(g);
}

int main(int argc, char **argv)
{
    const char *root = test_env("ONNX_TESTDATA_DIR", "/usr/share/libonnx-testdata/data");
    static const char *const suites[] = {"node", "pytorch-converted", "pytorch-operator", "simple"};
    const char *only = argc > 1 ? argv[1] : NULL; /* optional name filter (substring) */
    struct stat sb;
    if (stat(root, &sb) != 0) {
        printf("1..0 # SKIP ONNX backend test data not found at %s (install libonnx-testdata)\n", root);
        return 0;
    }
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", root, suites[s]);
        int count;
        char **names = list_dirs(dir, &count);
        for (int i = 0; i < count; i++)
            if (!only || strstr(names[i], only))
                run_case(suites[s], dir, names[i]);
        free_names(names, count);
    }
    diag("conformance: %d passed, %d failed, skipped: %d unsupported operator, "
         "%d unsupported type or attribute",
         n_pass, n_fail, n_skip_op, n_skip_feature);
    return tap_done();
}
