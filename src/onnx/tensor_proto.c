/* TensorProto <-> cs_tensor.
 *
 * ONNX stores tensor contents in one of several places: raw_data
 * (little-endian bytes), a typed repeated field (float_data, int32_data for
 * every type of 32 bits or fewer, int64_data, double_data, uint64_data for
 * uint32/uint64), or an external file.  Every path checks the element count
 * against the shape before copying.  A model's float16 and bfloat16
 * tensors are widened to float32 on the way in (cs_tensor_from_proto's
 * widen): curvscope computes in float32 / float64 only. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/atomic_file.h"
#include "onnx/loader.h"
#include "onnx/onnx_internal.h"
#include "onnx/tensor_proto.h"

cs_status cs_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len,
                       cs_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cs_fail(err, CS_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return cs_fail(err, CS_ERR_IO, "cannot read '%s': not a regular file", path);
    }
    if ((unsigned long long)sb.st_size > max_bytes) {
        fclose(f);
        return cs_fail(err, CS_ERR_FORMAT, "'%s' is %lld bytes, over the limit of %zu", path,
                       (long long)sb.st_size, max_bytes);
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *data = malloc(size + 1);
    if (!data) {
        fclose(f);
        return cs_fail(err, CS_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    size_t got = fread(data, 1, size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != size) {
        free(data);
        return cs_fail(err, CS_ERR_IO, "cannot read '%s': short read", path);
    }
    *buf = data;
    *len = size;
    return CS_OK;
}

/* External data: {location, offset, length} relative to the model's folder.
 * Paths that leave the folder are refused: absolute ones, any with '..',
 * and any that a symbolic link leads outside.  The file's size is checked
 * against offset + the shape's bytes before anything is allocated. */
static cs_status read_external(const Onnx__TensorProto *tp, const char *base_dir,
                               const char *what, cs_tensor *out, cs_err *err)
{
    const char *location = NULL;
    long long offset = 0, length = -1;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[i];
        if (!e->key || !e->value)
            continue;
        char *end;
        if (strcmp(e->key, "location") == 0)
            location = e->value;
        else if (strcmp(e->key, "offset") == 0 || strcmp(e->key, "length") == 0) {
            errno = 0;
            long long v = strtoll(e->value, &end, 10);
            if (errno || *end || v < 0)
                return cs_fail(err, CS_ERR_FORMAT, "%s: external data %s '%s' is not a count", what,
                               e->key, e->value);
            if (e->key[0] == 'o')
                offset = v;
            else
                length = v;
        }
    }
    if (!location || !*location)
        return cs_fail(err, CS_ERR_FORMAT, "%s: external data without a location", what);
    if (!base_dir)
        return cs_fail(err, CS_ERR_FORMAT, "%s: external data is not allowed here", what);
    if (location[0] == '/' || strstr(location, "..") != NULL)
        return cs_fail(err, CS_ERR_FORMAT,
                       "%s: external data location '%s' leaves the model's folder", what, location);
    size_t need = cs_tensor_bytes(out);
    if (length >= 0 && (unsigned long long)length != need)
        return cs_fail(err, CS_ERR_FORMAT, "%s: external data length %lld, shape needs %zu bytes",
                       what, length, need);
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", base_dir, location) >= (int)sizeof path)
        return cs_fail(err, CS_ERR_FORMAT, "%s: external data path is too long", what);
    /* The location's text stays inside the folder; a symbolic link on the
     * way may still lead out of it, so the resolved path must lie under
     * the resolved folder too. */
    char real_base[PATH_MAX], real_path[PATH_MAX];
    if (!realpath(base_dir, real_base))
        return cs_fail(err, CS_ERR_IO, "%s: cannot resolve the model's folder '%s': %s", what,
                       base_dir, strerror(errno));
    if (!realpath(path, real_path))
        return cs_fail(err, CS_ERR_IO, "%s: cannot open external data '%s': %s", what, path,
                       strerror(errno));
    size_t base_len = strlen(real_base);
    if (strncmp(real_path, real_base, base_len) != 0 ||
        (real_path[base_len] != '/' && !(base_len == 1 && real_base[0] == '/')))
        return cs_fail(err, CS_ERR_FORMAT,
                       "%s: external data location '%s' resolves to '%s', outside the model's "
                       "folder (a symbolic link?)",
                       what, location, real_path);
    FILE *f = fopen(real_path, "rb");
    if (!f)
        return cs_fail(err, CS_ERR_IO, "%s: cannot open external data '%s': %s", what, path,
                       strerror(errno));
    /* Check the file holds the bytes before allocating for them. */
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) ||
        (unsigned long long)sb.st_size < (unsigned long long)offset + need) {
        fclose(f);
        return cs_fail(err, CS_ERR_FORMAT,
                       "%s: external data '%s' is shorter than offset %lld + %zu bytes", what, path,
                       offset, need);
    }
    cs_status st = cs_tensor_alloc(out, err);
    if (st == CS_OK && (fseek(f, (long)offset, SEEK_SET) != 0 || fread(out->data, 1, need, f) != need))
        st = cs_fail(err, CS_ERR_FORMAT, "%s: external data '%s' is shorter than offset %lld + %zu bytes",
                     what, path, offset, need);
    fclose(f);
    if (st)
        cs_tensor_free(out);
    return st;
}

static cs_status count_mismatch(const char *what, const char *field, size_t have, int64_t need,
                                cs_err *err)
{
    return cs_fail(err, CS_ERR_FORMAT, "%s: %s holds %zu values, shape needs %lld", what, field,
                   have, (long long)need);
}

/* TensorProto.DataType BFLOAT16: no cs_dtype, read only to be widened. */
enum { ONNX_BFLOAT16 = 16 };

/* Replace t's 16-bit patterns (float16, or bfloat16 when brain) by their
 * float32 values.  Both widenings are exact: every half and every bfloat16
 * is a float32, subnormal halves included (cs_half_to_float scales them
 * by 2^-24); infinities stay infinite and NaN stays NaN with its payload
 * moved into the top of the float32 mantissa.  A bfloat16 is the top 16
 * bits of a float32, so its widening is the shift by 16. */
static cs_status widen_16bit(cs_tensor *t, bool brain, cs_err *err)
{
    cs_tensor wide = {0};
    cs_tensor_set_shape(&wide, CS_DT_FLOAT, t->ndim, t->dims);
    cs_status st = cs_tensor_alloc(&wide, err);
    if (st) {
        cs_tensor_free(t);
        return st;
    }
    const uint16_t *h = t->data;
    float *f = wide.data;
    for (int64_t i = 0; i < cs_tensor_numel(t); i++) {
        if (brain) {
            uint32_t bits = (uint32_t)h[i] << 16;
            memcpy(&f[i], &bits, sizeof bits);
        } else {
            f[i] = cs_half_to_float(h[i]);
        }
    }
    cs_tensor_free(t);
    *t = wide;
    return CS_OK;
}

cs_status cs_tensor_from_proto(const Onnx__TensorProto *tp, const char *base_dir,
                               const char *what, bool widen, cs_tensor *out, cs_err *err)
{
    memset(out, 0, sizeof *out);
    if (tp->n_dims > CS_MAX_DIMS)
        return cs_fail(err, CS_ERR_UNSUPPORTED, "%s: rank %zu is above %d", what, tp->n_dims,
                       CS_MAX_DIMS);
    /* A widened 16-bit float is decoded as its bit patterns (uint16, which
     * every storage path below reads as float16 would be) and converted
     * at the end. */
    bool half = widen && (tp->data_type == CS_DT_FLOAT16 || tp->data_type == ONNX_BFLOAT16);
    cs_dtype dt = half ? CS_DT_UINT16 : (cs_dtype)tp->data_type;
    if (!half && (tp->data_type <= 0 || tp->data_type >= CS_DT_COUNT_ || cs_dtype_size(dt) == 0))
        return cs_fail(err, CS_ERR_UNSUPPORTED, "%s: element type %d (%s) is not supported", what,
                       tp->data_type, tp->data_type == ONNX_BFLOAT16 ? "bfloat16" : cs_dtype_name(tp->data_type));
    int64_t dims[CS_MAX_DIMS];
    for (size_t i = 0; i < tp->n_dims; i++)
        dims[i] = tp->dims[i];
    cs_status st = cs_shape_check((int)tp->n_dims, dims, dt, CS_ONNX_MAX_TENSOR_ELEMS, what, err);
    if (st)
        return st;
    cs_tensor_set_shape(out, dt, (int)tp->n_dims, dims);
    int64_t numel = cs_tensor_numel(out);
    size_t es = cs_dtype_size(dt);

    if (tp->has_data_location && tp->data_location == 1) {
        st = read_external(tp, base_dir, what, out, err);
        return st || !half ? st : widen_16bit(out, tp->data_type == ONNX_BFLOAT16, err);
    }

    if (tp->has_raw_data) {
        if (tp->raw_data.len != (size_t)numel * es)
            return cs_fail(err, CS_ERR_FORMAT, "%s: raw_data has %zu bytes, its shape needs %lld",
                           what, tp->raw_data.len, (long long)numel * (long long)es);
        st = cs_tensor_alloc(out, err);
        if (st == CS_OK && numel)
            memcpy(out->data, tp->raw_data.data, tp->raw_data.len); /* host is little-endian */
        return st || !half ? st : widen_16bit(out, tp->data_type == ONNX_BFLOAT16, err);
    }

    const void *src = NULL;
    cs_dtype src_dt = dt;
    size_t have = 0;
    const char *field = NULL;
    switch (dt) {
    case CS_DT_FLOAT:
        src = tp->float_data, have = tp->n_float_data, field = "float_data", src_dt = CS_DT_FLOAT;
        break;
    case CS_DT_DOUBLE:
        src = tp->double_data, have = tp->n_double_data, field = "double_data", src_dt = CS_DT_DOUBLE;
        break;
    case CS_DT_INT64:
        src = tp->int64_data, have = tp->n_int64_data, field = "int64_data", src_dt = CS_DT_INT64;
        break;
    case CS_DT_UINT32:
    case CS_DT_UINT64:
        src = tp->uint64_data, have = tp->n_uint64_data, field = "uint64_data", src_dt = CS_DT_UINT64;
        break;
    case CS_DT_FLOAT16: /* the 16 bits of each half sit in an int32 */
    case CS_DT_INT32:
    case CS_DT_INT16:
    case CS_DT_INT8:
    case CS_DT_UINT16:
    case CS_DT_UINT8:
    case CS_DT_BOOL:
        src = tp->int32_data, have = tp->n_int32_data, field = "int32_data", src_dt = CS_DT_INT32;
        break;
    default:
        return cs_fail(err, CS_ERR_UNSUPPORTED, "%s: element type %s is not supported", what,
                       cs_dtype_name(dt));
    }
    if (have != (size_t)numel)
        return count_mismatch(what, field, have, numel, err);
    st = cs_tensor_alloc(out, err);
    if (st)
        return st;
    if (dt == CS_DT_FLOAT16 || half) { /* the low 16 bits of each int32 are the pattern */
        uint16_t *h = out->data;
        for (int64_t i = 0; i < numel; i++)
            h[i] = (uint16_t)tp->int32_data[i];
    } else if (numel > 0) {
        cs_convert(out->data, dt, src, src_dt, numel);
    }
    return half ? widen_16bit(out, tp->data_type == ONNX_BFLOAT16, err) : CS_OK;
}

cs_status cs_tensor_proto_decode(const uint8_t *buf, size_t len, cs_tensor *out, char **name,
                                 cs_err *err)
{
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
    if (!tp)
        return cs_fail(err, CS_ERR_FORMAT, "not a valid TensorProto (protobuf decode failed)");
    cs_status st = cs_tensor_from_proto(tp, NULL, tp->name && *tp->name ? tp->name : "tensor",
                                        false, out, err);
    if (st == CS_OK && name) {
        *name = strdup(tp->name ? tp->name : "");
        if (!*name) {
            cs_tensor_free(out);
            st = cs_fail(err, CS_ERR_NOMEM, "out of memory");
        }
    }
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return st;
}

cs_status cs_tensor_proto_read_file(const char *path, cs_tensor *out, char **name, cs_err *err)
{
    uint8_t *buf;
    size_t len;
    cs_status st = cs_read_file(path, CS_ONNX_MAX_FILE_BYTES, &buf, &len, err);
    if (st)
        return st;
    st = cs_tensor_proto_decode(buf, len, out, name, err);
    free(buf);
    if (st)
        cs_err_prefix(err, "%s", path);
    return st;
}

cs_status cs_tensor_proto_write_file(const char *path, const cs_tensor *t, const char *name,
                                     cs_err *err)
{
    Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
    int64_t dims[CS_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++)
        dims[i] = t->dims[i];
    tp.n_dims = (size_t)t->ndim;
    tp.dims = dims;
    tp.has_data_type = 1;
    tp.data_type = (int32_t)t->dtype;
    tp.name = (char *)(name ? name : "");
    tp.has_raw_data = 1;
    tp.raw_data.len = cs_tensor_bytes(t);
    tp.raw_data.data = t->data;
    size_t size = onnx__tensor_proto__get_packed_size(&tp);
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return cs_fail(err, CS_ERR_NOMEM, "out of memory writing '%s'", path);
    onnx__tensor_proto__pack(&tp, buf);
    cs_status st = cs_write_file_atomic(path, buf, size, err);
    free(buf);
    return st;
}
