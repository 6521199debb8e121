/* libFuzzer harness: ONNX model bytes -> graph (cs_model_load_bytes: decode,
 * graph building, binding to the op and layer tables), then the plan for a
 * batch of 1 (every operator's shape inference, constant folding, buffer
 * sizes).  Built twice: fuzz_onnx stops there, fuzz_forward (FUZZ_FORWARD)
 * also runs one forward pass when the inputs are small.
 *
 * External data resolves against a private folder holding one 4 KiB file,
 * data.bin, so locations, offsets and lengths are exercised too. */
#include "fuzz_util.h"

#include "graph/graph.h"
#include "interp/model.h"
#include "interp/plan.h"

/* Inputs larger than this (elements, each) are not run: the harness looks
 * for bugs, not for slow big convolutions. */
#define FUZZ_MAX_INPUT_ELEMS ((int64_t)1 << 16)
/* Nor are plans whose buffers exceed this many bytes in all. */
#define FUZZ_MAX_PLAN_BYTES ((size_t)64 << 20)

/* The plan's own memory limit, well under the fuzzer's -rss_limit_mb:
 * a model asking for more must get CS_ERR_NOMEM, not an allocation. */
#define FUZZ_PLAN_LIMIT_BYTES ((size_t)256 << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cs_plan_set_memory_limit(FUZZ_PLAN_LIMIT_BYTES);
    uint8_t block[4096];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (uint8_t)(i * 37u + 11u);
    fuzz_write("data.bin", block, sizeof block);
    return 0;
}

/* Fill an input with small values a model can take: zero-ish floats and
 * index 0 for integers (valid for Gather, Embedding, one-hot targets). */
static void fill_input(cs_tensor *t)
{
    memset(t->data, 0, cs_tensor_bytes(t));
    int64_t n = cs_tensor_numel(t);
    if (t->dtype == CS_DT_FLOAT) {
        float *f = t->data;
        for (int64_t i = 0; i < n; i++)
            f[i] = (float)(i % 7) * 0.25f - 0.75f;
    } else if (t->dtype == CS_DT_DOUBLE) {
        double *d = t->data;
        for (int64_t i = 0; i < n; i++)
            d[i] = (double)(i % 5) * 0.5 - 1.0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_err err = {0};
    cs_graph *g = NULL;
    cs_status st = cs_model_load_bytes(data, size, fuzz_tmpdir(), &g, &err);
    fuzz_check_status("cs_model_load_bytes", st, &err);
    if (st)
        return 0;
    cs_tensor *ins = calloc((size_t)g->n_inputs + 1, sizeof *ins);
    if (!ins)
        abort();
    int small = 1;
    for (int i = 0; i < g->n_inputs && st == CS_OK; i++) {
        st = cs_graph_input_shape(g, i, 1, &ins[i], &err);
        fuzz_check_status("cs_graph_input_shape", st, &err);
        if (st == CS_OK) {
            int64_t n = 1;
            for (int d = 0; d < ins[i].ndim; d++)
                n = ins[i].dims[d] > FUZZ_MAX_INPUT_ELEMS ? FUZZ_MAX_INPUT_ELEMS + 1 : n * ins[i].dims[d];
            small = small && n <= FUZZ_MAX_INPUT_ELEMS;
        }
    }
    if (st == CS_OK && small) {
        cs_plan p;
        st = cs_plan_prepare(&p, g, ins, &err);
        fuzz_check_status("cs_plan_prepare", st, &err);
#ifdef FUZZ_FORWARD
        if (st == CS_OK && p.arena.used_bytes <= FUZZ_MAX_PLAN_BYTES) {
            for (int i = 0; i < g->n_inputs; i++) {
                cs_tensor *t = cs_plan_input(&p, i);
                if (t && t->data)
                    fill_input(t);
            }
            st = cs_plan_forward(&p, &err);
            fuzz_check_status("cs_plan_forward", st, &err);
            st = CS_OK;
        }
#else
        (void)fill_input;
#endif
        if (st == CS_OK)
            cs_plan_free(&p);
    }
    free(ins);
    cs_graph_free(g);
    return 0;
}
