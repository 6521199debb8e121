/* Loading a bundled test model with the curvature fixtures' data set. */
#ifndef CS_TESTS_CURV_CASE_H
#define CS_TESTS_CURV_CASE_H

#include <stdint.h>
#include <stdio.h>

#include "../tap.h"
#include "../test_model.h"
#include "../test_util.h"
#include "data/dataset.h"
#include "graph/graph.h"
#include "fixture.h"
#include "onnx/loader.h"

/* tests/models/MODEL.onnx into *g and the first `samples` (0: all) rows of
 * tests/fixtures/curv_DATA_MODEL_{x,y}.npy into *ds, one check for each;
 * returns 0, or -1 with nothing left to free. */
static inline int curv_case_load(const char *model, const char *data_model, int64_t samples, cs_graph **g,
                                 cs_dataset *ds)
{
    char rel[160], path[512], x[600], y[600];
    cs_err err = {0};
    if (!(*g = test_load_model(model)))
        return -1;
    snprintf(rel, sizeof rel, "tests/fixtures/curv_%s_x.npy", data_model);
    snprintf(x, sizeof x, "npy:%s", test_src_path(path, sizeof path, rel));
    snprintf(rel, sizeof rel, "tests/fixtures/curv_%s_y.npy", data_model);
    snprintf(y, sizeof y, "npy:%s", test_src_path(path, sizeof path, rel));
    if (!ok(cs_dataset_load(ds, x, y, samples, &err) == CS_OK, "%s: data (%s)", model, err.msg)) {
        cs_graph_free(*g);
        return -1;
    }
    return 0;
}

/* curv_case_load, then the curvature fixture tests/fixtures/curv_FIXTURE.txt
 * into *fx; a missing fixture fails one check named `label`.  Returns 0, or
 * -1 with nothing left to free. */
static inline int curv_case_load_fixture(const char *model, const char *data_model, int64_t samples,
                                         const char *fixture, const char *label, cs_graph **g, cs_dataset *ds,
                                         fx_file *fx)
{
    if (curv_case_load(model, data_model, samples, g, ds))
        return -1;
    char rel[160], path[512];
    snprintf(rel, sizeof rel, "tests/fixtures/curv_%s.txt", fixture);
    if (fx_load(fx, test_src_path(path, sizeof path, rel))) {
        ok(0, "%s", label);
        cs_dataset_free(ds);
        cs_graph_free(*g);
        return -1;
    }
    return 0;
}

#endif
