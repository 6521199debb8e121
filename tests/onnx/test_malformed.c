/* Robustness of the loader: truncated files, flipped bits and hand-made
 * malformed models.  Every bad model must give a non-OK status with a
 * message (naming the culprit where there is one); nothing may crash, hang
 * or allocate absurd amounts of memory.
 *
 * CS_MALFORMED_QUICK=1 runs fewer bit flips (used under valgrind).  Outside
 * valgrind and AddressSanitizer the address space is capped a little above
 * what the process already maps, so an absurd allocation fails instead of
 * quietly succeeding on an overcommitting kernel. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../tap.h"
#include "../test_util.h"
#include "graph/graph.h"
#include "interp/plan.h"
#include "model_builder.h"
#include "interp/model.h"
#include "onnx/loader.h"

#define DIMS(...) (const int64_t[]){__VA_ARGS__}
#define NAMES(...) (const char *const[]){__VA_ARGS__, NULL}

/* Headroom above the current mapping for the address-space cap. */
#define AS_HEADROOM ((rlim_t)2 << 30)

static int under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload") != NULL;
}

static int under_asan(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#else
    return 0;
#endif
#else
    return 0;
#endif
}

/* Current virtual size in bytes (VmSize), 0 if unknown. */
static unsigned long long vm_size_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

static int cap_address_space(void)
{
    if (under_valgrind() || under_asan())
        return 0;
    unsigned long long now = vm_size_bytes();
    if (!now)
        return 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0)
        return 0;
    rlim_t want = (rlim_t)now + AS_HEADROOM;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        want = rl.rlim_max;
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_AS, &rl) == 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint8_t *read_model(const char *rel, size_t *len)
{
    char path[4096];
    test_src_path(path, sizeof path, rel);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)size)) != NULL && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = buf ? (size_t)size : 0;
    return buf;
}

/* Load exactly len bytes from a buffer of that size (so valgrind and ASan
 * see any read past the end). */
static cs_status load_copy(const uint8_t *src, size_t len, cs_graph **g, cs_err *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    if (len)
        memcpy(copy, src, len);
    err->code = CS_OK;
    err->msg[0] = '\0';
    cs_status st = cs_model_load_bytes(len ? copy : NULL, len, NULL, g, err);
    free(copy);
    return st;
}

static int status_valid(cs_status st)
{
    return st > CS_OK && st < CS_STATUS_COUNT;
}

/* ---- (a) truncations ---- */

static void test_truncations(const char *rel, int n_cuts)
{
    size_t len;
    uint8_t *buf = read_model(rel, &len);
    if (!ok(buf != NULL, "read %s", rel))
        return;
    int n = 0, bad = 0;
    size_t extra[] = {0, 1, len - 1};
    for (int i = 0; i < n_cuts + 3; i++) {
        size_t cut = i < n_cuts ? (size_t)((unsigned long long)i * len / (unsigned)n_cuts)
                                : extra[i - n_cuts];
        cs_graph *g = NULL;
        cs_err err = {0};
        cs_status st = load_copy(buf, cut, &g, &err);
        n++;
        if (st != CS_ERR_FORMAT || g != NULL || !err.msg[0]) {
            if (bad++ < 5)
                diag("%s cut at %zu of %zu: status %s, message '%s'", rel, cut, len,
                     cs_status_name(st), err.msg);
            cs_graph_free(g);
        }
    }
    ok(bad == 0, "%s: all %d truncations fail as format errors with a message (%d did not)", rel,
       n, bad);
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = load_copy(buf, len, &g, &err);
    ok(st == CS_OK, "%s: the untruncated bytes load (%s)", rel, err.msg);
    cs_graph_free(g);
    free(buf);
}

/* ---- (b) bit flips ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct flip_stats {
    int loaded, load_failed, shape_failed, prepared, prepare_failed, forward_ok, forward_failed;
    int bad; /* failures without a valid status or message */
} flip_stats;

static void note_bad(flip_stats *s, const char *what, size_t bit, cs_status st, const cs_err *err)
{
    if (s->bad++ < 5)
        diag("bit %zu: %s gave status %d, message '%s'", bit, what, (int)st, err->msg);
}

/* A model that loaded after a flip: prepare for batch 2 and run on zeros. */
static void exercise(const cs_graph *g, size_t bit, flip_stats *s)
{
    cs_err err = {0};
    cs_tensor *ins = calloc((size_t)g->n_inputs + 1, sizeof *ins);
    if (!ins)
        abort();
    for (int i = 0; i < g->n_inputs; i++) {
        cs_status st = cs_graph_input_shape(g, i, 2, &ins[i], &err);
        if (st) {
            if (!status_valid(st) || !err.msg[0])
                note_bad(s, "cs_graph_input_shape", bit, st, &err);
            s->shape_failed++;
            free(ins);
            return;
        }
    }
    cs_plan p;
    err.msg[0] = '\0';
    cs_status st = cs_plan_prepare(&p, g, ins, &err);
    free(ins);
    if (st) {
        if (!status_valid(st) || !err.msg[0])
            note_bad(s, "cs_plan_prepare", bit, st, &err);
        s->prepare_failed++;
        return;
    }
    s->prepared++;
    for (int i = 0; i < g->n_inputs; i++) {
        cs_tensor *t = cs_plan_input(&p, i);
        if (t && t->data)
            memset(t->data, 0, cs_tensor_bytes(t));
    }
    err.msg[0] = '\0';
    st = cs_plan_forward(&p, &err);
    if (st == CS_OK) {
        s->forward_ok++;
    } else {
        s->forward_failed++;
        if (!status_valid(st) || !err.msg[0])
            note_bad(s, "cs_plan_forward", bit, st, &err);
    }
    cs_plan_free(&p);
}

static void test_bit_flips(const char *rel, int n_flips, uint64_t seed)
{
    size_t len;
    uint8_t *buf = read_model(rel, &len);
    if (!ok(buf != NULL, "read %s", rel))
        return;
    uint8_t *copy = malloc(len);
    if (!copy)
        abort();
    rng_state = seed;
    flip_stats s = {0};
    for (int i = 0; i < n_flips; i++) {
        size_t bit = (size_t)(rng_next() % ((uint64_t)len * 8));
        memcpy(copy, buf, len);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cs_graph *g = NULL;
        cs_err err = {0};
        cs_status st = cs_model_load_bytes(copy, len, NULL, &g, &err);
        if (st == CS_OK) {
            s.loaded++;
            exercise(g, bit, &s);
            cs_graph_free(g);
        } else {
            s.load_failed++;
            if (!status_valid(st) || !err.msg[0] || g != NULL)
                note_bad(&s, "cs_onnx_load_bytes", bit, st, &err);
        }
    }
    diag("%s: %d flips: %d loaded (%d prepared, %d ran forward, %d forward errors, "
         "%d shape errors, %d prepare errors), %d refused",
         rel, n_flips, s.loaded, s.prepared, s.forward_ok, s.forward_failed, s.shape_failed,
         s.prepare_failed, s.load_failed);
    ok(s.bad == 0 && s.loaded + s.load_failed == n_flips,
       "%s: %d single-bit flips never crash; every failure has a status and a message", rel,
       n_flips);
    free(copy);
    free(buf);
}

/* Every single-bit flip of a small model that is all structure (names,
 * shapes, attributes, a little data): the bundled models are mostly float
 * payload, where most flips land. */
static void build_small(model_builder *b);

static void test_exhaustive_flips(void)
{
    model_builder b;
    build_small(&b);
    size_t len;
    uint8_t *buf = mb_pack(&b, &len);
    mb_free(&b);
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = load_copy(buf, len, &g, &err);
    int base_ok = st == CS_OK;
    if (base_ok) {
        flip_stats s0 = {0};
        exercise(g, 0, &s0);
        base_ok = s0.forward_ok == 1;
    }
    cs_graph_free(g);
    ok(base_ok, "small model (%zu bytes) loads and runs unflipped (%s)", len, err.msg);
    uint8_t *copy = malloc(len);
    if (!copy)
        abort();
    flip_stats s = {0};
    for (size_t bit = 0; bit < len * 8; bit++) {
        memcpy(copy, buf, len);
        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        g = NULL;
        err.msg[0] = '\0';
        st = cs_model_load_bytes(copy, len, NULL, &g, &err);
        if (st == CS_OK) {
            s.loaded++;
            exercise(g, bit, &s);
            cs_graph_free(g);
        } else {
            s.load_failed++;
            if (!status_valid(st) || !err.msg[0] || g != NULL)
                note_bad(&s, "cs_onnx_load_bytes", bit, st, &err);
        }
    }
    diag("small model: %zu flips: %d loaded (%d prepared, %d ran forward, %d forward errors, "
         "%d shape errors, %d prepare errors), %d refused",
         len * 8, s.loaded, s.prepared, s.forward_ok, s.forward_failed, s.shape_failed,
         s.prepare_failed, s.load_failed);
    ok(s.bad == 0, "small model: all %zu single-bit flips handled; every failure has a message",
       len * 8);
    free(copy);
    free(buf);
}

/* ---- (c) hand-made malformed models ---- */

/* x [N, 4] -> MatMul W [4, 3] -> h -> Add b -> y: valid, the cases below
 * break one thing each. */
static void base(model_builder *b)
{
    static const float w[12] = {0}, bias[3] = {0};
    mb_init(b, 8, 17);
    mb_input(b, "x", CS_DT_FLOAT, 2, DIMS(-1, 4));
    mb_init_floats(b, "W", 2, DIMS(4, 3), 12, w);
    mb_init_floats(b, "b", 1, DIMS(3), 3, bias);
    mb_node(b, "MatMul", "mm", NAMES("x", "W"), NAMES("h"));
    mb_node(b, "Add", "add", NAMES("h", "b"), NAMES("y"));
    mb_output(b, "y");
}

/* base() plus a Constant attribute, a raw_data initializer, a Reshape
 * shape and a Gemm with attributes: more kinds of structure to flip. */
static void build_small(model_builder *b)
{
    base(b);
    static const int64_t shape[2] = {-1, 3};
    Onnx__TensorProto *t = mb_tensor(b, "shape", CS_DT_INT64, 1, DIMS(2));
    mb_set_raw(b, t, sizeof shape, shape);
    mb_add_init(b, t);
    Onnx__NodeProto *n = mb_node(b, "Constant", "const", NULL, NAMES("c"));
    static const float cv[3] = {0.5f, -1.0f, 2.0f};
    t = mb_tensor(b, "", CS_DT_FLOAT, 1, DIMS(3));
    mb_set_float_data(b, t, 3, cv);
    mb_attr_tensor(b, n, "value", t);
    mb_node(b, "Mul", "mul", NAMES("y", "c"), NAMES("m"));
    mb_node(b, "Reshape", "reshape", NAMES("m", "shape"), NAMES("r"));
    static const float w2[6] = {1, 2, 3, 4, 5, 6};
    mb_init_floats(b, "W2", 2, DIMS(2, 3), 6, w2);
    n = mb_node(b, "Gemm", "gemm", NAMES("r", "W2"), NAMES("out"));
    mb_attr_int(b, n, "transB", 1);
    b->graph.n_output = 0;
    mb_output(b, "out");
}

/* Input x of base(): its i-th dimension. */
static Onnx__TensorShapeProto__Dimension *x_dim(model_builder *b, int i)
{
    return b->inputs[0]->type->tensor_type->shape->dim[i];
}

static void c_raw_size(model_builder *b)
{
    base(b);
    Onnx__TensorProto *t = mb_tensor(b, "W_raw", CS_DT_FLOAT, 2, DIMS(2, 3));
    static const float v[5] = {0};
    mb_set_raw(b, t, sizeof v, v); /* 20 bytes, shape needs 24 */
    mb_add_init(b, t);
}

static void c_raw_size_int64(model_builder *b)
{
    base(b);
    Onnx__TensorProto *t = mb_tensor(b, "shape_raw", CS_DT_INT64, 1, DIMS(2));
    static const int64_t v[3] = {1, 2, 3};
    mb_set_raw(b, t, sizeof v, v);
    mb_add_init(b, t);
}

static void c_float_count(model_builder *b)
{
    base(b);
    static const float v[5] = {0};
    mb_init_floats(b, "W_fd", 2, DIMS(2, 3), 5, v);
}

static void c_float_count_extra(model_builder *b)
{
    base(b);
    static const float v[7] = {0};
    mb_init_floats(b, "W_more", 2, DIMS(2, 3), 7, v);
}

static void c_int64_count(model_builder *b)
{
    base(b);
    Onnx__TensorProto *t = mb_tensor(b, "i64_short", CS_DT_INT64, 1, DIMS(4));
    static const int64_t v[2] = {1, 2};
    t->n_int64_data = 2;
    t->int64_data = mb_dup(b, v, sizeof v);
    mb_add_init(b, t);
}

static void c_wrong_field(model_builder *b)
{
    base(b);
    /* int64 tensor whose values sit in float_data */
    Onnx__TensorProto *t = mb_tensor(b, "i64_in_floats", CS_DT_INT64, 1, DIMS(2));
    static const float v[2] = {1, 2};
    mb_set_float_data(b, t, 2, v);
    mb_add_init(b, t);
}

static void c_neg_dim(model_builder *b)
{
    base(b);
    static const float v[6] = {0};
    mb_init_floats(b, "W_neg", 2, DIMS(2, -3), 6, v);
}

static void c_neg_input_dim(model_builder *b)
{
    base(b);
    x_dim(b, 1)->dim_value = -5;
}

static void c_huge_dims(model_builder *b)
{
    base(b);
    static const float v[1] = {0};
    mb_init_floats(b, "W_huge", 2, DIMS((int64_t)1 << 40, (int64_t)1 << 40), 1, v);
}

static void c_huge_dims_raw(model_builder *b)
{
    base(b);
    Onnx__TensorProto *t =
        mb_tensor(b, "W_huge_raw", CS_DT_FLOAT, 2, DIMS((int64_t)1 << 40, (int64_t)1 << 40));
    static const float v[1] = {0};
    mb_set_raw(b, t, sizeof v, v);
    mb_add_init(b, t);
}

static void c_overflow_dims(model_builder *b)
{
    base(b);
    /* 2^8 per dimension over 8 dimensions: 2^64 elements wraps int64 */
    static const int64_t d[8] = {256, 256, 256, 256, 256, 256, 256, 256};
    mb_add_init(b, mb_tensor(b, "W_wrap", CS_DT_FLOAT, 8, d));
}

static void c_limit_dims_raw(model_builder *b)
{
    base(b);
    /* exactly the element limit: allowed shape, but 4 bytes of data */
    Onnx__TensorProto *t = mb_tensor(b, "W_limit", CS_DT_FLOAT, 2, DIMS(65536, 65536));
    static const float v[1] = {0};
    mb_set_raw(b, t, sizeof v, v);
    mb_add_init(b, t);
}

static void c_limit_dims_floats(model_builder *b)
{
    base(b);
    static const float v[1] = {0};
    mb_init_floats(b, "W_limit_fd", 2, DIMS(65536, 65536), 1, v);
}

static void c_huge_input_dim(model_builder *b)
{
    base(b);
    x_dim(b, 1)->dim_value = (int64_t)1 << 40;
}

static void c_rank9(model_builder *b)
{
    base(b);
    static const float v[1] = {0};
    mb_init_floats(b, "W_rank9", 9, DIMS(1, 1, 1, 1, 1, 1, 1, 1, 1), 1, v);
}

static void c_rank9_input(model_builder *b)
{
    mb_init(b, 8, 17);
    mb_input(b, "x9", CS_DT_FLOAT, 9, DIMS(-1, 1, 1, 1, 1, 1, 1, 1, 1));
    mb_node(b, "Relu", "relu", NAMES("x9"), NAMES("y"));
    mb_output(b, "y");
}

static void c_dangling(model_builder *b)
{
    base(b);
    mb_node(b, "Add", "reads_ghost", NAMES("y", "ghost"), NAMES("z"));
    mb_output(b, "z");
}

static void c_dangling_long_name(model_builder *b)
{
    base(b);
    char *name = mb_alloc(b, 5001);
    memset(name, 'g', 5000);
    mb_node(b, "Relu", "long_reader", (const char *const[]){name, NULL}, NAMES("z"));
    mb_output(b, "z");
}

static void c_cycle(model_builder *b)
{
    base(b);
    mb_node(b, "Add", "cyc_a", NAMES("y", "loop_b"), NAMES("loop_a"));
    mb_node(b, "Relu", "cyc_b", NAMES("loop_a"), NAMES("loop_b"));
    mb_output(b, "loop_b");
}

static void c_self_loop(model_builder *b)
{
    base(b);
    mb_node(b, "Add", "selfie", NAMES("y", "me"), NAMES("me"));
    mb_output(b, "me");
}

static void c_out_of_order(model_builder *b)
{
    mb_init(b, 8, 17);
    mb_input(b, "x", CS_DT_FLOAT, 2, DIMS(-1, 4));
    mb_node(b, "Relu", "second", NAMES("early"), NAMES("y"));
    mb_node(b, "Relu", "first", NAMES("x"), NAMES("early"));
    mb_output(b, "y");
}

static void c_produced_twice(model_builder *b)
{
    base(b);
    mb_node(b, "Relu", "again", NAMES("x"), NAMES("y"));
}

static void c_writes_initializer(model_builder *b)
{
    base(b);
    mb_node(b, "Relu", "clobber", NAMES("x"), NAMES("W"));
}

static void c_writes_input(model_builder *b)
{
    base(b);
    mb_node(b, "Relu", "clobber_x", NAMES("y"), NAMES("x"));
}

static void c_output_unproduced(model_builder *b)
{
    base(b);
    mb_output(b, "nowhere");
}

static void c_no_outputs(model_builder *b)
{
    base(b);
    b->graph.n_output = 0;
}

static void c_dup_initializer(model_builder *b)
{
    base(b);
    static const float v[3] = {1, 2, 3};
    mb_init_floats(b, "b", 1, DIMS(3), 3, v);
}

static void c_unnamed_initializer(model_builder *b)
{
    base(b);
    static const float v[1] = {0};
    mb_init_floats(b, "", 1, DIMS(1), 1, v);
}

static void c_attr_tensor_size(model_builder *b)
{
    base(b);
    Onnx__NodeProto *n = mb_node(b, "Constant", "bad_const", NULL, NAMES("c"));
    static const float v[2] = {1, 2};
    Onnx__TensorProto *t = mb_tensor(b, "", CS_DT_FLOAT, 1, DIMS(3));
    mb_set_float_data(b, t, 2, v);
    mb_attr_tensor(b, n, "value", t);
    mb_output(b, "c");
}

static void c_attr_tensor_missing(model_builder *b)
{
    base(b);
    Onnx__NodeProto *n = mb_node(b, "Constant", "empty_const", NULL, NAMES("c"));
    mb_attr_tensor(b, n, "value", NULL);
    mb_output(b, "c");
}

static void c_attr_tensor_huge(model_builder *b)
{
    base(b);
    Onnx__NodeProto *n = mb_node(b, "Constant", "huge_const", NULL, NAMES("c"));
    Onnx__TensorProto *t = mb_tensor(b, "", CS_DT_FLOAT, 3, DIMS(1 << 20, 1 << 20, 1 << 20));
    mb_attr_tensor(b, n, "value", t);
    mb_output(b, "c");
}

static void c_dtype_unknown(model_builder *b)
{
    base(b);
    static const float v[1] = {0};
    mb_init_floats(b, "W_dt99", 1, DIMS(1), 1, v)->data_type = 99;
}

static void c_dtype_string(model_builder *b)
{
    base(b);
    mb_add_init(b, mb_tensor(b, "W_str", CS_DT_STRING, 1, DIMS(1)));
}

static void c_dtype_zero(model_builder *b)
{
    base(b);
    static const float v[1] = {0};
    mb_init_floats(b, "W_dt0", 1, DIMS(1), 1, v)->data_type = 0;
}

static void c_dtype_negative(model_builder *b)
{
    base(b);
    static const float v[1] = {0};
    mb_init_floats(b, "W_dtneg", 1, DIMS(1), 1, v)->data_type = -3;
}

static void c_input_dtype_unknown(model_builder *b)
{
    base(b);
    b->inputs[0]->type->tensor_type->elem_type = 99;
}

static void c_input_twice(model_builder *b)
{
    base(b);
    mb_input(b, "x", CS_DT_FLOAT, 2, DIMS(-1, 4));
}

static void c_input_no_shape(model_builder *b)
{
    base(b);
    b->inputs[0]->type->tensor_type->shape = NULL;
}

static void c_input_no_type(model_builder *b)
{
    base(b);
    b->inputs[0]->type = NULL;
}

static void c_input_unnamed(model_builder *b)
{
    base(b);
    mb_input(b, "", CS_DT_FLOAT, 1, DIMS(1));
}

static void c_no_op_type(model_builder *b)
{
    base(b);
    mb_node(b, "", "typeless", NAMES("y"), NAMES("z"));
}

static void c_unimported_domain(model_builder *b)
{
    base(b);
    Onnx__NodeProto *n = mb_node(b, "Foo", "foreign", NAMES("y"), NAMES("z"));
    n->domain = (char *)"com.nowhere";
    mb_output(b, "z");
}

static void c_ir2(model_builder *b)
{
    base(b);
    b->model.ir_version = 2;
}

static void c_ir_missing(model_builder *b)
{
    base(b);
    b->model.has_ir_version = 0;
}

static void c_no_graph(model_builder *b)
{
    base(b);
    b->model.graph = NULL;
}

typedef struct bad_case {
    const char *what;
    void (*build)(model_builder *b);
    cs_status want;
    const char *mention1, *mention2; /* substrings the message must hold, or NULL */
    int at_input_shape; /* the model loads; cs_graph_input_shape of input 0 fails */
} bad_case;

static const bad_case bad_cases[] = {
    {"raw_data size does not match dims", c_raw_size, CS_ERR_FORMAT, "'W_raw'", "raw_data", 0},
    {"int64 raw_data size does not match dims", c_raw_size_int64,
     CS_ERR_FORMAT, "'shape_raw'", NULL, 0},
    {"float_data holds too few values", c_float_count, CS_ERR_FORMAT, "'W_fd'", "float_data", 0},
    {"float_data holds too many values", c_float_count_extra, CS_ERR_FORMAT, "'W_more'", NULL, 0},
    {"int64_data count mismatch", c_int64_count, CS_ERR_FORMAT, "'i64_short'", "int64_data", 0},
    {"int64 tensor with its data in float_data", c_wrong_field,
     CS_ERR_FORMAT, "'i64_in_floats'", NULL, 0},
    {"initializer with a negative dimension", c_neg_dim, CS_ERR_FORMAT, "'W_neg'", "-3", 0},
    {"graph input with a negative dimension", c_neg_input_dim, CS_ERR_FORMAT, "'x'", "-5", 0},
    {"absurd dims [2^40, 2^40] (float_data)", c_huge_dims,
     CS_ERR_NOMEM, "'W_huge'", "too large", 0},
    {"absurd dims [2^40, 2^40] (raw_data)", c_huge_dims_raw,
     CS_ERR_NOMEM, "'W_huge_raw'", "too large", 0},
    {"dims whose product wraps int64", c_overflow_dims, CS_ERR_NOMEM, "'W_wrap'", "too large", 0},
    {"dims at the element limit with 4 bytes of raw_data", c_limit_dims_raw,
     CS_ERR_FORMAT, "'W_limit'", "raw_data", 0},
    {"dims at the element limit with 1 float", c_limit_dims_floats,
     CS_ERR_FORMAT, "'W_limit_fd'", NULL, 0},
    {"graph input with dimension 2^40", c_huge_input_dim, CS_ERR_FORMAT, "'x'", NULL, 0},
    {"rank-9 initializer", c_rank9, CS_ERR_UNSUPPORTED, "'W_rank9'", "rank", 0},
    {"rank-9 graph input", c_rank9_input, CS_ERR_UNSUPPORTED, "'x9'", "rank", 0},
    {"node reads a name nothing produces", c_dangling,
     CS_ERR_FORMAT, "'ghost'", "'reads_ghost'", 0},
    {"dangling input with a 5000-character name", c_dangling_long_name,
     CS_ERR_FORMAT, "'long_reader'", "ggggg", 0},
    {"two-node cycle", c_cycle, CS_ERR_FORMAT, "cyc_", "cycle", 0},
    {"node reading its own output", c_self_loop, CS_ERR_FORMAT, "'selfie'", "'me'", 0},
    {"nodes out of topological order", c_out_of_order, CS_ERR_FORMAT, "'second'", "'early'", 0},
    {"value produced twice", c_produced_twice, CS_ERR_FORMAT, "'again'", "'y'", 0},
    {"node writes an initializer", c_writes_initializer, CS_ERR_FORMAT, "'clobber'", "'W'", 0},
    {"node writes a graph input", c_writes_input, CS_ERR_FORMAT, "'clobber_x'", "'x'", 0},
    {"graph output nobody produces", c_output_unproduced, CS_ERR_FORMAT, "'nowhere'", NULL, 0},
    {"graph without outputs", c_no_outputs, CS_ERR_FORMAT, "output", NULL, 0},
    {"duplicate initializer names", c_dup_initializer, CS_ERR_FORMAT, "'b'", "twice", 0},
    {"initializer without a name", c_unnamed_initializer, CS_ERR_FORMAT, "name", NULL, 0},
    {"attribute tensor with a bad size", c_attr_tensor_size,
     CS_ERR_FORMAT, "'bad_const'", "'value'", 0},
    {"tensor attribute without a tensor", c_attr_tensor_missing,
     CS_ERR_FORMAT, "'empty_const'", "'value'", 0},
    {"attribute tensor with absurd dims", c_attr_tensor_huge,
     CS_ERR_NOMEM, "'huge_const'", "too large", 0},
    {"unknown data_type 99", c_dtype_unknown, CS_ERR_UNSUPPORTED, "'W_dt99'", "99", 0},
    {"string data_type", c_dtype_string, CS_ERR_UNSUPPORTED, "'W_str'", NULL, 0},
    {"data_type 0 (undefined)", c_dtype_zero, CS_ERR_UNSUPPORTED, "'W_dt0'", NULL, 0},
    {"negative data_type", c_dtype_negative, CS_ERR_UNSUPPORTED, "'W_dtneg'", NULL, 0},
    {"graph input of element type 99", c_input_dtype_unknown, CS_ERR_UNSUPPORTED, "'x'", NULL, 1},
    {"graph input listed twice", c_input_twice, CS_ERR_FORMAT, "'x'", "twice", 0},
    {"graph input without a shape", c_input_no_shape, CS_ERR_UNSUPPORTED, "'x'", "shape", 1},
    {"graph input without a type", c_input_no_type, CS_ERR_UNSUPPORTED, "'x'", NULL, 1},
    {"graph input without a name", c_input_unnamed, CS_ERR_FORMAT, "name", NULL, 0},
    {"node without op_type", c_no_op_type, CS_ERR_FORMAT, "'typeless'", "op_type", 0},
    {"node in a domain the model does not import", c_unimported_domain,
     CS_ERR_FORMAT, "'foreign'", "com.nowhere", 0},
    {"IR version 2", c_ir2, CS_ERR_UNSUPPORTED, "IR version 2", NULL, 0},
    {"no IR version", c_ir_missing, CS_ERR_UNSUPPORTED, "IR version 0", NULL, 0},
    {"no graph", c_no_graph, CS_ERR_FORMAT, "graph", NULL, 0},
};

static void test_bad_cases(void)
{
    /* The base model is valid: each case fails for the one thing it breaks. */
    model_builder b;
    base(&b);
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    ok(st == CS_OK && g && g->n_layers == 1, "the unbroken base model loads (%s)", err.msg);
    cs_graph_free(g);
    mb_free(&b);

    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        c->build(&b);
        g = NULL;
        double t0 = now_s();
        st = mb_load(&b, NULL, &g, &err);
        mb_free(&b);
        int loaded = st == CS_OK && g != NULL;
        if (c->at_input_shape && loaded) {
            /* Inputs that are not runnable tensors still load (so `info`
             * can list the graph); making their shape must fail. */
            cs_tensor in;
            st = cs_graph_input_shape(g, 0, 2, &in, &err);
            cs_graph_free(g);
            g = NULL;
        }
        double dt = now_s() - t0;
        int mentions = (!c->mention1 || strstr(err.msg, c->mention1)) &&
                       (!c->mention2 || strstr(err.msg, c->mention2));
        ok(st == c->want && g == NULL && err.msg[0] && mentions && err.code == st && dt < 2.0 &&
               (loaded || !c->at_input_shape),
           "%s: %s%s (want %s) in %.3f s: %.200s", c->what,
           c->at_input_shape ? "loads, input shape gives " : "", cs_status_name(st),
           cs_status_name(c->want), dt, err.msg);
        cs_graph_free(g);
    }
}

/* Bytes that are not a model at all. */
static void test_not_a_model(void)
{
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = cs_model_load_bytes(NULL, 0, NULL, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && err.msg[0], "empty input: %s: %s", cs_status_name(st),
       err.msg);
    static const uint8_t text[] = "this is not a protobuf, it is plain text\n";
    st = load_copy(text, sizeof text - 1, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && err.msg[0], "plain text: %s: %s", cs_status_name(st),
       err.msg);
    /* A length prefix claiming 2^62 bytes for the graph field. */
    static const uint8_t big_len[] = {0x08, 0x08, 0x3a, 0x80, 0x80, 0x80, 0x80, 0x80,
                                      0x80, 0x80, 0x80, 0x40, 0x00};
    st = load_copy(big_len, sizeof big_len, &g, &err);
    ok(st == CS_ERR_FORMAT && g == NULL && err.msg[0], "a 2^62-byte length prefix: %s: %s",
       cs_status_name(st), err.msg);
    uint8_t noise[4096];
    rng_state = 12345;
    int bad = 0;
    for (int k = 0; k < 64; k++) {
        size_t n = 1 + (size_t)(rng_next() % sizeof noise);
        for (size_t i = 0; i < n; i++)
            noise[i] = (uint8_t)rng_next();
        st = load_copy(noise, n, &g, &err);
        if (st == CS_OK || !status_valid(st) || !err.msg[0])
            bad++;
        cs_graph_free(g);
    }
    ok(bad == 0, "64 buffers of random bytes are all refused with a message (%d were not)", bad);
}

/* Loads that succeed but whose shapes cannot be planned. */
static void test_huge_planned_input(void)
{
    model_builder b;
    mb_init(&b, 8, 17);
    mb_input(&b, "wide", CS_DT_FLOAT, 3, DIMS(-1, (int64_t)1 << 31, (int64_t)1 << 31));
    mb_node(&b, "Relu", "relu", NAMES("wide"), NAMES("y"));
    mb_output(&b, "y");
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    mb_free(&b);
    if (!ok(st == CS_OK, "input [N, 2^31, 2^31] loads (each dimension is allowed)"))
        return;
    cs_tensor in;
    st = cs_graph_input_shape(g, 0, 2, &in, &err);
    cs_plan p;
    double t0 = now_s();
    if (st == CS_OK)
        st = cs_plan_prepare(&p, g, &in, &err);
    double dt = now_s() - t0;
    ok(st != CS_OK && status_valid(st) && strstr(err.msg, "wide") && dt < 2.0,
       "planning it for batch 2 (2^63 elements) fails fast naming it: %s: %s",
       cs_status_name(st), err.msg);
    if (st == CS_OK)
        cs_plan_free(&p);
    cs_graph_free(g);
}

/* Found by tests/fuzz/fuzz_forward: a model of a few hundred bytes whose
 * ConstantOfShape (or Expand) makes a 64 GiB constant had the plan ask the
 * arena for all of it.  The plan's memory limit refuses it at prepare,
 * naming the value and its shape; under the limit the same graph plans. */
static void build_constant_of_shape(model_builder *b, int64_t rows, int64_t cols)
{
    mb_init(b, 8, 17);
    mb_input(b, "x", CS_DT_FLOAT, 2, DIMS(-1, 1));
    int64_t shape[2] = {rows, cols};
    Onnx__TensorProto *t = mb_tensor(b, "big_shape", CS_DT_INT64, 1, DIMS(2));
    mb_set_raw(b, t, sizeof shape, shape);
    mb_add_init(b, t);
    Onnx__NodeProto *n = mb_node(b, "ConstantOfShape", "cos", NAMES("big_shape"), NAMES("big"));
    static const float one[1] = {1.0f};
    t = mb_tensor(b, "", CS_DT_FLOAT, 1, DIMS(1));
    mb_set_float_data(b, t, 1, one);
    mb_attr_tensor(b, n, "value", t);
    mb_node(b, "Add", "add", NAMES("x", "big"), NAMES("y"));
    mb_output(b, "y");
}

static void test_plan_memory_limit(void)
{
    ok(cs_plan_memory_limit() > ((size_t)64 << 20),
       "the default plan memory limit is the machine's memory (%zu MiB)",
       cs_plan_memory_limit() >> 20);
    cs_plan_set_memory_limit((size_t)256 << 20);
    for (int big = 0; big < 2; big++) {
        model_builder b;
        build_constant_of_shape(&b, big ? 131072 : 64, big ? 131072 : 64);
        cs_graph *g = NULL;
        cs_err err = {0};
        cs_status st = mb_load(&b, NULL, &g, &err);
        mb_free(&b);
        if (!ok(st == CS_OK, "ConstantOfShape [%d, %d] model loads", big ? 131072 : 64,
                big ? 131072 : 64))
            continue;
        cs_tensor in;
        cs_plan p;
        st = cs_graph_input_shape(g, 0, 1, &in, &err);
        double t0 = now_s();
        if (st == CS_OK)
            st = cs_plan_prepare(&p, g, &in, &err);
        double dt = now_s() - t0;
        if (big)
            ok(st == CS_ERR_NOMEM && strstr(err.msg, "'big'") && strstr(err.msg, "[131072, 131072]") &&
                   strstr(err.msg, "limit") && dt < 2.0,
               "a 64 GiB ConstantOfShape over a 256 MiB plan limit is refused at prepare: %s",
               err.msg);
        else
            ok(st == CS_OK, "the same graph at [64, 64] plans under the limit (%s)",
               st ? err.msg : "ok");
        if (st == CS_OK)
            cs_plan_free(&p);
        cs_graph_free(g);
    }
    cs_plan_set_memory_limit(0);
}

/* Found by tests/fuzz/fuzz_forward: a string attribute present but empty
 * decodes with s.data NULL, and the loader passed that NULL to memcpy
 * (undefined behaviour that UBSan reports).  It must load as "". */
static void test_empty_string_attribute(void)
{
    model_builder b;
    base(&b);
    Onnx__NodeProto *n = mb_node(&b, "Relu", "relu_note", NAMES("y"), NAMES("r"));
    Onnx__AttributeProto *a = mb_attr(&b, n, "note", CS_ATTR_STRING);
    a->has_s = 1;
    a->s.len = 0;
    a->s.data = NULL;
    b.graph.n_output = 0;
    mb_output(&b, "r");
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    mb_free(&b);
    const char *s = NULL;
    if (st == CS_OK)
        for (int k = 0; k < g->n_nodes; k++)
            if (strcmp(g->nodes[k].name, "relu_note") == 0)
                s = cs_node_attr_string(&g->nodes[k], "note", "absent");
    ok(st == CS_OK && s && strcmp(s, "") == 0,
       "an empty string attribute loads as \"\" (%s%s%s)", cs_status_name(st),
       err.msg[0] ? ": " : "", err.msg);
    cs_graph_free(g);
}

/* MatMul with a weight but no outputs: odd but must not crash. */
static void test_matmul_without_output(void)
{
    model_builder b;
    base(&b);
    mb_node(&b, "MatMul", "mm_nowhere", NAMES("y", "W"), NULL);
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = mb_load(&b, NULL, &g, &err);
    mb_free(&b);
    ok(st == CS_OK ? g != NULL : (g == NULL && err.msg[0] != 0),
       "a MatMul layer with no outputs is handled (%s%s%s)", cs_status_name(st),
       err.msg[0] ? ": " : "", err.msg);
    cs_graph_free(g);
}

/* External data for a tensor at the element limit (16 GiB of floats) whose
 * data file holds 8 bytes and no length is given: the loader should see the
 * file is too short before reserving memory for the whole tensor. */
static void test_external_huge(void)
{
    if (under_valgrind()) {
        /* valgrind's calloc touches every page: were the loader to reserve
         * the 16 GiB, this case alone would take minutes.  The native run
         * (with its address-space cap) and ASan cover it. */
        skip("external data for a 16 GiB tensor: not under valgrind");
        return;
    }
    char dir[] = "/tmp/cs_test_malformed_XXXXXX";
    if (!mkdtemp(dir)) {
        skip("cannot make a temporary folder");
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/tiny.bin", dir);
    FILE *f = fopen(path, "wb");
    int wrote = f && fwrite("12345678", 1, 8, f) == 8;
    if (f)
        wrote &= fclose(f) == 0;
    if (ok(wrote, "wrote an 8-byte external data file")) {
        model_builder b;
        base(&b);
        Onnx__TensorProto *t = mb_tensor(&b, "W_ext_huge", CS_DT_FLOAT, 2, DIMS(65536, 65536));
        t->has_data_location = 1;
        t->data_location = 1;
        t->external_data = mb_alloc(&b, sizeof *t->external_data);
        Onnx__StringStringEntryProto *e = mb_alloc(&b, sizeof *e);
        onnx__string_string_entry_proto__init(e);
        e->key = (char *)"location";
        e->value = (char *)"tiny.bin";
        t->external_data[t->n_external_data++] = e;
        mb_add_init(&b, t);
        cs_graph *g = NULL;
        cs_err err = {0};
        double t0 = now_s();
        cs_status st = mb_load(&b, dir, &g, &err);
        double dt = now_s() - t0;
        mb_free(&b);
        ok(st == CS_ERR_FORMAT && g == NULL && strstr(err.msg, "W_ext_huge") && dt < 2.0,
           "external data for 2^32 floats in an 8-byte file is refused as too short, "
           "without allocating 16 GiB: %s: %s",
           cs_status_name(st), err.msg);
        cs_graph_free(g);
    }
    unlink(path);
    rmdir(dir);
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* A 2.5 MB model whose one node lists a million inputs, half of them
 * omitted ("") and half the same name: only one value exists, so loading it
 * should cost memory in proportion to the file, not a value record per
 * input slot. */
static void test_input_slot_amplification(void)
{
    if (under_valgrind() || under_asan()) {
        skip("memory use of a node with a million inputs: not under valgrind or ASan");
        return;
    }
    enum { SLOTS = 1000000 };
    model_builder b;
    base(&b);
    Onnx__NodeProto *n = mb_node(&b, "Sum", "wide_sum", NULL, NAMES("s"));
    n->input = mb_alloc(&b, sizeof *n->input * SLOTS);
    for (size_t i = 0; i < SLOTS; i++)
        n->input[i] = (char *)(i % 2 ? "x" : "");
    n->n_input = SLOTS;
    size_t len;
    uint8_t *buf = mb_pack(&b, &len);
    mb_free(&b);
    long before = peak_rss_kib();
    cs_graph *g = NULL;
    cs_err err = {0};
    cs_status st = cs_model_load_bytes(buf, len, NULL, &g, &err);
    long grew_mib = (peak_rss_kib() - before) / 1024;
    ok((st == CS_OK || (status_valid(st) && err.msg[0])) && grew_mib < 128,
       "a %zu-byte model with %d input slots of one node loads in under 128 MiB "
       "(grew %ld MiB; %s%s%s)",
       len, SLOTS, grew_mib, cs_status_name(st), err.msg[0] ? ": " : "", err.msg);
    cs_graph_free(g);
    free(buf);
}

int main(void)
{
    /* A hang fails the test instead of stalling make check. */
    alarm(under_valgrind() ? 1200 : 300);
    int capped = cap_address_space();
    if (capped)
        diag("address space capped at current size + %llu MiB",
             (unsigned long long)(AS_HEADROOM >> 20));
    int quick = atoi(test_env("CS_MALFORMED_QUICK", "0")) != 0;
    int n_flips = quick ? 100 : 500;
    int n_cuts = 200;

    test_truncations("tests/models/mlp.onnx", n_cuts);
    test_truncations("tests/models/attn.onnx", n_cuts);
    test_bit_flips("tests/models/mlp.onnx", n_flips, 0x6375727673636f70ull);
    test_bit_flips("tests/models/cnn.onnx", n_flips, 0x5eed0f0a11b17ull);
    test_exhaustive_flips();
    test_bad_cases();
    test_not_a_model();
    test_huge_planned_input();
    test_plan_memory_limit();
    test_empty_string_attribute();
    test_matmul_without_output();
    test_external_huge();
    test_input_slot_amplification();

    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0 && !under_valgrind() && !under_asan())
        ok(ru.ru_maxrss < 1024L * 1024, "peak resident memory %ld MiB stays under 1 GiB",
           ru.ru_maxrss / 1024);
    return tap_done();
}
