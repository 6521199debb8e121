/* The ONNX writer: initializers round-trip exactly, everything else is the
 * same model (nodes, opset, producer, names, statistics that were not
 * trained), and a failed write leaves nothing behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tap.h"
#include "../test_util.h"
#include "interp/model.h"
#include "onnx/loader.h"
#include "onnx/writer.h"

int main(void)
{
    char src[512], dir[] = "/tmp/cs-writer-XXXXXX", dst[600];
    test_src_path(src, sizeof src, "tests/models/cnn.onnx");
    if (!mkdtemp(dir)) {
        printf("Bail out! mkdtemp\n");
        return 1;
    }
    snprintf(dst, sizeof dst, "%s/tuned.onnx", dir);
    cs_err err = {0};
    cs_graph *g = NULL, *h = NULL;
    if (!ok(cs_model_load_file(src, &g, &err) == CS_OK, "load cnn (%s)", err.msg))
        return tap_done();
    /* Change every parameter (not the running statistics). */
    for (int q = 0; q < g->n_params; q++) {
        cs_tensor *t = &g->values[g->params[q].value].init;
        for (int64_t i = 0; i < cs_tensor_numel(t); i++)
            ((float *)t->data)[i] = ((float *)t->data)[i] * 1.5f + 0.25f * (float)(i % 7);
    }
    ok(cs_onnx_write_updated(src, g, dst, &err) == CS_OK, "write (%s)", err.msg);
    if (ok(cs_model_load_file(dst, &h, &err) == CS_OK, "reload (%s)", err.msg)) {
        ok(h->n_nodes == g->n_nodes && h->opset == g->opset && h->ir_version == g->ir_version &&
               strcmp(h->producer_name, g->producer_name) == 0 && h->n_params == g->n_params,
           "same nodes (%d), opset (%d), IR version, producer and parameters", h->n_nodes, h->opset);
        int same = 1, inits = 0;
        for (int v = 0; v < g->n_values; v++) {
            if (g->values[v].kind != CS_VALUE_INITIALIZER)
                continue;
            inits++;
            int w = cs_graph_find_value(h, g->values[v].name);
            same = same && w >= 0 && cs_tensor_same_shape(&h->values[w].init, &g->values[v].init) &&
                   memcmp(h->values[w].init.data, g->values[v].init.data, cs_tensor_bytes(&g->values[v].init)) == 0;
        }
        ok(same, "all %d initializers round-trip bit for bit (trained ones and running statistics)", inits);
        int nodes_same = 1;
        for (int k = 0; k < g->n_nodes; k++)
            nodes_same = nodes_same && strcmp(g->nodes[k].name, h->nodes[k].name) == 0 &&
                         strcmp(g->nodes[k].op_type, h->nodes[k].op_type) == 0 &&
                         g->nodes[k].n_attrs == h->nodes[k].n_attrs;
        ok(nodes_same, "nodes keep their names, types and attributes");
        cs_graph_free(h);
    }
    char bad[700];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.onnx", dir);
    cs_status st = cs_onnx_write_updated(src, g, bad, &err);
    ok(st == CS_ERR_IO && strstr(err.msg, "x.onnx"), "an unwritable destination is an I/O error naming it (%s)", err.msg);
    cs_graph_free(g);
    unlink(dst);
    rmdir(dir);
    return tap_done();
}
