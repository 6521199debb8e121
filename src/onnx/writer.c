#include "onnx/writer.h"

#include "base/atomic_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/loader.h"
#include "onnx/onnx_internal.h"

/* Replace tp's contents by t: raw little-endian bytes, no typed fields, no
 * external location.  The new raw buffer is owned by *keep (freed by the
 * caller after packing). */
static cs_status replace_tensor(Onnx__TensorProto *tp, const cs_tensor *t, uint8_t **keep, cs_err *err)
{
    if (tp->data_type != (int32_t)t->dtype || tp->n_dims != (size_t)t->ndim)
        return cs_fail(err, CS_ERR_RUNTIME, "initializer '%s' changed type or rank", tp->name ? tp->name : "");
    size_t bytes = cs_tensor_bytes(t);
    uint8_t *raw = malloc(bytes ? bytes : 1);
    if (!raw)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory writing '%s'", tp->name ? tp->name : "");
    memcpy(raw, t->data, bytes); /* host is little-endian, as ONNX's raw_data */
    /* Drop the old storage; protobuf-c frees the unpacked message's own
     * buffers, so only the pointers are cleared here. */
    tp->n_float_data = tp->n_int32_data = tp->n_int64_data = tp->n_double_data = tp->n_uint64_data = 0;
    tp->n_string_data = 0;
    tp->n_external_data = 0;
    tp->has_data_location = 0;
    tp->data_location = 0;
    tp->has_raw_data = 1;
    tp->raw_data.data = raw;
    tp->raw_data.len = bytes;
    *keep = raw;
    return CS_OK;
}

cs_status cs_onnx_write_updated(const char *src_path, const cs_graph *g, const char *dst_path, cs_err *err)
{
    uint8_t *buf;
    size_t len;
    cs_status st = cs_read_file(src_path, CS_ONNX_MAX_FILE_BYTES, &buf, &len, err);
    if (st)
        return st;
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
    free(buf);
    if (!m || !m->graph) {
        if (m)
            onnx__model_proto__free_unpacked(m, NULL);
        return cs_fail(err, CS_ERR_FORMAT, "%s: cannot decode the model again", src_path);
    }
    Onnx__GraphProto *gp = m->graph;
    /* Remember each replaced tensor's original fields to restore them
     * before protobuf-c frees the message (it frees what it allocated). */
    size_t n = gp->n_initializer;
    uint8_t **raws = calloc(n + 1, sizeof *raws);
    Onnx__TensorProto *saved = calloc(n + 1, sizeof *saved);
    if (!raws || !saved) {
        free(raws), free(saved);
        onnx__model_proto__free_unpacked(m, NULL);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && !st; i++) {
        Onnx__TensorProto *tp = gp->initializer[i];
        int v = tp->name ? cs_graph_find_value(g, tp->name) : -1;
        if (v < 0 || g->values[v].kind != CS_VALUE_INITIALIZER)
            continue;
        saved[i] = *tp;
        if (g->values[v].has_views) {
            /* a source of views folded at bind: its elements live in them */
            cs_tensor whole = {0};
            st = cs_graph_assemble_initializer(g, v, &whole, err);
            if (!st)
                st = replace_tensor(tp, &whole, &raws[i], err);
            cs_tensor_free(&whole);
        } else {
            st = replace_tensor(tp, &g->values[v].init, &raws[i], err);
        }
    }
    uint8_t *out = NULL;
    size_t size = 0;
    if (!st) {
        size = onnx__model_proto__get_packed_size(m);
        out = malloc(size ? size : 1);
        if (!out)
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory packing the model");
        else
            onnx__model_proto__pack(m, out);
    }
    for (size_t i = 0; i < n; i++)
        if (raws[i]) {
            *gp->initializer[i] = saved[i];
            free(raws[i]);
        }
    free(raws);
    free(saved);
    onnx__model_proto__free_unpacked(m, NULL);
    if (st)
        return st;
    /* Temporary file, fsync, rename: a failed or killed write never leaves a
     * half-written model under the destination name. */
    st = cs_write_file_atomic(dst_path, out, size, err);
    free(out);
    return st;
}
