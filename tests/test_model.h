/* Loading a bundled test model, tests/models/NAME.onnx, with one check. */
#ifndef CS_TESTS_TEST_MODEL_H
#define CS_TESTS_TEST_MODEL_H

#include <stdio.h>

#include "interp/model.h"
#include "onnx/loader.h"
#include "tap.h"
#include "test_util.h"

/* The graph, or NULL after a failed check "NAME: load (why)". */
static inline cs_graph *test_load_model(const char *name)
{
    char rel[160], path[512];
    snprintf(rel, sizeof rel, "tests/models/%s.onnx", name);
    cs_err err = {0};
    cs_graph *g = NULL;
    if (!ok(cs_model_load_file(test_src_path(path, sizeof path, rel), &g, &err) == CS_OK, "%s: load (%s)", name,
            err.msg))
        return NULL;
    return g;
}

#endif
