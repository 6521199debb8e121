/* Datasets: SPEC parsing, loading data and labels, and the per-batch
 * conversion x' = (x * scale - mean[c]) / std[c] into model input buffers. */
#include "data/dataset.h"

#include "base/dist.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/readers.h"

/* ---- normalisation options ---- */

void cs_norm_init(cs_norm *norm)
{
    memset(norm, 0, sizeof *norm);
    norm->scale = 1.0;
}

/* One number or fraction ("0.5", "1/255", " 2 ") from text[0..len). */
static cs_status parse_value(const char *opt, const char *text, size_t len, double *out,
                             cs_err *err)
{
    char buf[64];
    while (len > 0 && (*text == ' ' || *text == '\t')) {
        text++;
        len--;
    }
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    if (len == 0)
        return cs_fail(err, CS_ERR_USAGE,
                       "%s: empty value (expected a number such as 0.5 or 1/255)", opt);
    if (len >= sizeof buf)
        return cs_fail(err, CS_ERR_USAGE, "%s: value '%.*s...' is too long", opt, 20, text);
    memcpy(buf, text, len);
    buf[len] = '\0';

    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    double parts[2] = {0, 1};
    const char *part_text[2] = {buf, slash ? slash + 1 : NULL};
    for (int i = 0; i < (slash ? 2 : 1); i++) {
        char *end;
        errno = 0;
        parts[i] = strtod(part_text[i], &end);
        if (end == part_text[i] || *end != '\0' || !isfinite(parts[i]) || errno == ERANGE) {
            if (slash)
                *slash = '/';
            return cs_fail(err, CS_ERR_USAGE,
                           "%s: '%s' is not a finite number or fraction (such as 0.5 or 1/255)",
                           opt, buf);
        }
    }
    if (parts[1] == 0) {
        *slash = '/';
        return cs_fail(err, CS_ERR_USAGE, "%s: '%s' divides by zero", opt, buf);
    }
    *out = parts[0] / parts[1];
    return CS_OK;
}

/* Comma-separated values into vals (at most CS_NORM_MAX_CHANNELS). */
static cs_status parse_list(const char *opt, const char *text, double *vals, int *count,
                            cs_err *err)
{
    int n = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (n == CS_NORM_MAX_CHANNELS)
            return cs_fail(err, CS_ERR_USAGE, "%s: more than %d values", opt, CS_NORM_MAX_CHANNELS);
        cs_status st = parse_value(opt, p, len, &vals[n], err);
        if (st)
            return st;
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    *count = n;
    return CS_OK;
}

cs_status cs_norm_parse_scale(cs_norm *norm, const char *text, cs_err *err)
{
    if (strchr(text, ','))
        return cs_fail(err, CS_ERR_USAGE, "--scale: '%s' must be one value, not a list", text);
    return parse_value("--scale", text, strlen(text), &norm->scale, err);
}

cs_status cs_norm_parse_mean(cs_norm *norm, const char *text, cs_err *err)
{
    double vals[CS_NORM_MAX_CHANNELS];
    int n = 0;
    cs_status st = parse_list("--mean", text, vals, &n, err);
    if (st)
        return st;
    memcpy(norm->mean, vals, (size_t)n * sizeof vals[0]);
    norm->n_mean = n;
    return CS_OK;
}

cs_status cs_norm_parse_std(cs_norm *norm, const char *text, cs_err *err)
{
    double vals[CS_NORM_MAX_CHANNELS];
    int n = 0;
    cs_status st = parse_list("--std", text, vals, &n, err);
    if (st)
        return st;
    for (int i = 0; i < n; i++)
        /* A negative std only flips signs, which is never what was meant. */
        if (!(vals[i] > 0))
            return cs_fail(err, CS_ERR_USAGE, "--std %s: every value must be positive (item %d is %g)",
                           text, i + 1, vals[i]);
    memcpy(norm->std, vals, (size_t)n * sizeof vals[0]);
    norm->n_std = n;
    return CS_OK;
}

/* ---- reading specs ---- */

/* cs_data_read_spec keeping the first max_rows rows (0: all) where the
 * format allows reading fewer (idx); *file_rows gets the file's count. */
static cs_status read_spec_rows(const char *spec, const char *role, int64_t max_rows,
                                cs_tensor *out, int64_t *file_rows, cs_err *err)
{
    static const char kinds[] = "idx, npy, csv, pb";
    memset(out, 0, sizeof *out);
    if (file_rows)
        *file_rows = -1;
    const char *colon = strchr(spec, ':');
    if (!colon || colon == spec)
        return cs_fail(err, CS_ERR_USAGE, "--%s '%s': expected KIND:PATH with KIND one of %s", role,
                       spec, kinds);
    size_t kind_len = (size_t)(colon - spec);
    const char *path = colon + 1;
    if (!*path)
        return cs_fail(err, CS_ERR_USAGE, "--%s '%s': the path after '%.*s:' is empty", role, spec,
                       (int)kind_len, spec);
#define KIND_IS(k) (kind_len == sizeof(k) - 1 && memcmp(spec, k, kind_len) == 0)
    if (KIND_IS("idx"))
        return cs_read_idx_rows(path, max_rows, out, file_rows, err);
    if (KIND_IS("npy"))
        return cs_read_npy(path, out, err);
    if (KIND_IS("pb"))
        return cs_read_pb(path, out, err);
    if (KIND_IS("csv")) {
        /* csv:PATH#label=K: options follow the last '#'. */
        const char *hash = strrchr(path, '#');
        const char *label = NULL;
        char *path_only = NULL;
        if (hash) {
            const char *opt = hash + 1;
            if (strncmp(opt, "label=", 6) != 0)
                return cs_fail(err, CS_ERR_USAGE,
                               "--%s '%s': unknown csv option '#%s' (the only one is #label=K)",
                               role, spec, opt);
            label = opt + 6;
            if (!*label)
                return cs_fail(err, CS_ERR_USAGE,
                               "--%s '%s': #label= needs a column index or header name", role,
                               spec);
            path_only = strndup(path, (size_t)(hash - path));
            if (!path_only)
                return cs_fail(err, CS_ERR_NOMEM, "out of memory");
        }
        int as_labels = strcmp(role, "labels") == 0;
        cs_status st = cs_read_csv(path_only ? path_only : path, label, as_labels, out, err);
        free(path_only);
        return st;
    }
#undef KIND_IS
    return cs_fail(err, CS_ERR_USAGE, "--%s '%s': unknown kind '%.*s' (expected one of %s)", role,
                   spec, (int)kind_len, spec, kinds);
}

cs_status cs_data_read_spec(const char *spec, const char *role, cs_tensor *out, cs_err *err)
{
    return read_spec_rows(spec, role, 0, out, NULL, err);
}

/* ---- loading ---- */

static const char *spec_path(const char *spec)
{
    const char *colon = strchr(spec, ':');
    return colon ? colon + 1 : spec;
}

/* Keep the first n samples of t, giving the rest of the memory back. */
static void keep_samples(cs_tensor *t, int64_t n)
{
    if (t->ndim == 0 || t->dims[0] <= n)
        return;
    t->dims[0] = n;
    size_t bytes = cs_tensor_bytes(t);
    if (t->owns_data) {
        void *shrunk = realloc(t->data, bytes ? bytes : 1);
        if (shrunk) /* on failure the larger block still works */
            t->data = shrunk;
    }
}

static bool dtype_is_integer(cs_dtype dt)
{
    switch (dt) {
    case CS_DT_UINT8:
    case CS_DT_INT8:
    case CS_DT_UINT16:
    case CS_DT_INT16:
    case CS_DT_INT32:
    case CS_DT_INT64:
    case CS_DT_UINT32:
    case CS_DT_UINT64:
    case CS_DT_BOOL: return true;
    default: return false;
    }
}

/* A NaN or infinite input or target would turn every loss, gradient and
 * curvature it touches into NaN without saying where: refused at load,
 * naming the file, the sample and its element (doc/design.md §7). */
static cs_status check_finite(const cs_tensor *t, const char *role, const char *spec, cs_err *err)
{
    int64_t bad = cs_tensor_first_nonfinite(t);
    if (bad < 0)
        return CS_OK;
    int64_t per = t->dims[0] > 0 ? cs_tensor_numel(t) / t->dims[0] : 1;
    double v = t->dtype == CS_DT_FLOAT ? ((const float *)t->data)[bad] : ((const double *)t->data)[bad];
    return cs_fail(err, CS_ERR_FORMAT, "--%s %s: sample %lld holds %s at element %lld (of %lld); "
                   "curvscope needs finite values", role, spec_path(spec), (long long)(bad / per),
                   isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", (long long)(bad % per), (long long)per);
}

cs_status cs_dataset_load(cs_dataset *ds, const char *data_spec, const char *labels_spec,
                          int64_t max_samples, cs_err *err)
{
    memset(ds, 0, sizeof *ds);
    if (!data_spec)
        return cs_fail(err, CS_ERR_USAGE, "no --data given");
    if (max_samples < 0)
        return cs_fail(err, CS_ERR_USAGE, "--samples %lld: must be 0 (all) or positive",
                       (long long)max_samples);
    snprintf(ds->source, sizeof ds->source, "%s", data_spec);
    /* Formats that can stop early (idx) keep only the samples asked for;
     * the counts below are the files' own. */
    int64_t x_rows, y_rows;
    cs_status st = read_spec_rows(data_spec, "data", max_samples, &ds->x, &x_rows, err);
    if (st)
        return st;
    if (ds->x.ndim == 0) {
        st = cs_fail(err, CS_ERR_SHAPE,
                     "--data %s: holds a scalar; its first dimension must count samples",
                     spec_path(data_spec));
        goto fail;
    }
    if (ds->x.dims[0] == 0) {
        st = cs_fail(err, CS_ERR_FORMAT, "--data %s: holds no samples", spec_path(data_spec));
        goto fail;
    }
    int64_t n = x_rows >= 0 ? x_rows : ds->x.dims[0];

    if (labels_spec) {
        if ((st = read_spec_rows(labels_spec, "labels", max_samples, &ds->y, &y_rows, err)))
            goto fail;
        if (ds->y.ndim == 0) { /* one label for a one-sample set */
            ds->y.ndim = 1;
            ds->y.dims[0] = 1;
        }
        if (y_rows < 0)
            y_rows = ds->y.dims[0];
        if (y_rows != n) {
            st = cs_fail(err, CS_ERR_FORMAT,
                         "sample count mismatch: --data %s has %lld samples, --labels %s has %lld",
                         spec_path(data_spec), (long long)n, spec_path(labels_spec),
                         (long long)y_rows);
            goto fail;
        }
        ds->has_labels = true;
        bool one_per_sample = ds->y.ndim == 1 || (ds->y.ndim == 2 && ds->y.dims[1] == 1);
        if (one_per_sample && dtype_is_integer(ds->y.dtype)) {
            ds->int_labels = true;
            ds->y.ndim = 1;
        }
    }

    if (max_samples > 0 && max_samples < n) {
        n = max_samples;
        keep_samples(&ds->x, n);
        if (ds->has_labels)
            keep_samples(&ds->y, n);
    }
    ds->n = n;
    ds->n_total = n;
    if ((st = check_finite(&ds->x, "data", data_spec, err)) ||
        (ds->has_labels && (st = check_finite(&ds->y, "labels", labels_spec, err))))
        goto fail;
    return CS_OK;

fail:
    cs_dataset_free(ds);
    return st;
}

/* Elements per sample: the product of dims[1..]. */
static int64_t per_sample(const cs_tensor *t)
{
    int64_t n = 1;
    for (int i = 1; i < t->ndim; i++)
        n *= t->dims[i];
    return n;
}

/* "[d1, d2, ...]" of dims[1..] (a sample), or "[N, d1, ...]" (a batch). */
static void sample_shape_str(const cs_tensor *t, bool with_batch, char *buf, size_t size)
{
    size_t off = (size_t)snprintf(buf, size, "[%s", with_batch && t->ndim > 0 ? "N" : "");
    for (int i = 1; i < t->ndim && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%lld", (with_batch || i > 1) ? ", " : "",
                                (long long)t->dims[i]);
    if (off < size)
        snprintf(buf + off, size - off, "]");
}

/* Integer data into an int64 input (token ids): exact copies; the norm was
 * refused by cs_dataset_check_input.  UINT64 ids above INT64_MAX wrap, as
 * no vocabulary reaches them. */
#define COPY_IDS(SRC_T)                                                                            \
    do {                                                                                           \
        const SRC_T *src_ = (const SRC_T *)ds->x.data + start * per;                               \
        int64_t *dst_ = (int64_t *)dst->data;                                                      \
        for (int64_t i_ = 0; i_ < batch * per; i_++)                                               \
            dst_[i_] = (int64_t)src_[i_];                                                          \
    } while (0)

static cs_status fill_ids(const cs_dataset *ds, int64_t start, int64_t batch, int64_t per,
                          cs_tensor *dst, cs_err *err)
{
    switch (ds->x.dtype) {
    case CS_DT_UINT8: COPY_IDS(uint8_t); break;
    case CS_DT_INT8: COPY_IDS(int8_t); break;
    case CS_DT_UINT16: COPY_IDS(uint16_t); break;
    case CS_DT_INT16: COPY_IDS(int16_t); break;
    case CS_DT_INT32: COPY_IDS(int32_t); break;
    case CS_DT_UINT32: COPY_IDS(uint32_t); break;
    case CS_DT_INT64: COPY_IDS(int64_t); break;
    case CS_DT_UINT64: COPY_IDS(uint64_t); break;
    default:
        return cs_fail(err, CS_ERR_UNSUPPORTED, "data element type %s cannot feed int64 ids",
                       cs_dtype_name(ds->x.dtype));
    }
    return CS_OK;
}

cs_status cs_dataset_check_input(const cs_dataset *ds, const cs_tensor *input, const cs_norm *norm,
                                 cs_err *err)
{
    char data_shape[160], model_shape[160];
    sample_shape_str(&ds->x, false, data_shape, sizeof data_shape);
    sample_shape_str(input, true, model_shape, sizeof model_shape);
    if (input->dtype == CS_DT_INT64) {
        /* Token ids (an nn.Embedding's input): copied exactly, so integer
         * data only and no normalisation. */
        if (!dtype_is_integer(ds->x.dtype))
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "model input %s takes int64 ids; --data %s holds %s (integers needed)",
                           model_shape, ds->source, cs_dtype_name(ds->x.dtype));
        if (norm && (norm->scale != 1.0 || norm->n_mean || norm->n_std))
            return cs_fail(err, CS_ERR_USAGE,
                           "model input %s takes int64 ids: --scale, --mean and --std do not apply",
                           model_shape);
    } else if (!cs_dtype_is_float(input->dtype)) {
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "model input %s has element type %s; data can only feed float, double or "
                       "int64 (token id) inputs",
                       model_shape, cs_dtype_name(input->dtype));
    }
    if (input->ndim == 0)
        return cs_fail(err, CS_ERR_SHAPE, "model input is a scalar; it needs a batch dimension");
    for (int i = 1; i < input->ndim; i++)
        if (input->dims[i] <= 0)
            return cs_fail(err, CS_ERR_SHAPE,
                           "model input %s has an unknown size in dimension %d; only the batch "
                           "dimension may vary",
                           model_shape, i);
    int64_t have = per_sample(&ds->x), need = per_sample(input);
    if (have != need)
        return cs_fail(
            err, CS_ERR_SHAPE,
            "--data %s: sample shape %s (%lld values) does not fit model input %s (%lld values)",
            ds->source, data_shape, (long long)have, model_shape, (long long)need);
    if (norm) {
        int counts[2] = {norm->n_mean, norm->n_std};
        const char *opts[2] = {"--mean", "--std"};
        for (int k = 0; k < 2; k++) {
            if (counts[k] <= 1)
                continue;
            int64_t channels = input->ndim >= 2 ? input->dims[1] : 0;
            if (counts[k] != channels)
                return cs_fail(
                    err, CS_ERR_SHAPE,
                    "%s has %d values but model input %s has %lld channels (dimension 1)", opts[k],
                    counts[k], model_shape, (long long)channels);
        }
    }
    return CS_OK;
}

/* ---- per-batch conversion ---- */

/* dst[i] = src[i] * mul[c] + add[c] over B samples of C channels of `inner`
 * values each, for one source and one destination element type. */
#define FILL_LOOP(SRC_T, DST_T, LOAD)                                                              \
    do {                                                                                           \
        const SRC_T *src_ = (const SRC_T *)ds->x.data + start * per;                               \
        DST_T *dst_ = (DST_T *)dst->data;                                                          \
        for (int64_t b_ = 0; b_ < batch; b_++)                                                     \
            for (int64_t c_ = 0; c_ < channels; c_++) {                                            \
                const double m_ = mul[c_], a_ = add[c_];                                           \
                const SRC_T *s_ = src_ + (b_ * channels + c_) * inner;                             \
                DST_T *d_ = dst_ + (b_ * channels + c_) * inner;                                   \
                for (int64_t i_ = 0; i_ < inner; i_++)                                             \
                    d_[i_] = (DST_T)((double)LOAD(s_[i_]) * m_ + a_);                              \
            }                                                                                      \
    } while (0)

#define LOAD_PLAIN(v) (v)
#define LOAD_BOOL(v) ((v) != 0)
#define LOAD_HALF(v) cs_half_to_float(v)

#define FILL_FOR_SOURCE(DST_T)                                                                     \
    switch (ds->x.dtype) {                                                                         \
    case CS_DT_UINT8: FILL_LOOP(uint8_t, DST_T, LOAD_PLAIN); break;                                \
    case CS_DT_INT8: FILL_LOOP(int8_t, DST_T, LOAD_PLAIN); break;                                  \
    case CS_DT_UINT16: FILL_LOOP(uint16_t, DST_T, LOAD_PLAIN); break;                              \
    case CS_DT_INT16: FILL_LOOP(int16_t, DST_T, LOAD_PLAIN); break;                                \
    case CS_DT_INT32: FILL_LOOP(int32_t, DST_T, LOAD_PLAIN); break;                                \
    case CS_DT_UINT32: FILL_LOOP(uint32_t, DST_T, LOAD_PLAIN); break;                              \
    case CS_DT_INT64: FILL_LOOP(int64_t, DST_T, LOAD_PLAIN); break;                                \
    case CS_DT_UINT64: FILL_LOOP(uint64_t, DST_T, LOAD_PLAIN); break;                              \
    case CS_DT_BOOL: FILL_LOOP(uint8_t, DST_T, LOAD_BOOL); break;                                  \
    case CS_DT_FLOAT16: FILL_LOOP(uint16_t, DST_T, LOAD_HALF); break;                              \
    case CS_DT_FLOAT: FILL_LOOP(float, DST_T, LOAD_PLAIN); break;                                  \
    case CS_DT_DOUBLE: FILL_LOOP(double, DST_T, LOAD_PLAIN); break;                                \
    default:                                                                                       \
        return cs_fail(err, CS_ERR_UNSUPPORTED, "data element type %s cannot be converted",        \
                       cs_dtype_name(ds->x.dtype));                                                \
    }

cs_status cs_dataset_fill_inputs(const cs_dataset *ds, int64_t start, const cs_norm *norm,
                                 cs_tensor *dst, cs_err *err)
{
    if (dst->ndim == 0 || !dst->data)
        return cs_fail(err, CS_ERR_RUNTIME, "input buffer has no batch dimension or no data");
    int64_t batch = dst->dims[0];
    if (start < 0 || batch < 0 || start > ds->n - batch)
        return cs_fail(err, CS_ERR_RUNTIME, "samples %lld..%lld are outside the %lld loaded",
                       (long long)start, (long long)(start + batch), (long long)ds->n);
    int64_t per = per_sample(&ds->x);
    if (per_sample(dst) != per) {
        char data_shape[160], model_shape[160];
        sample_shape_str(&ds->x, false, data_shape, sizeof data_shape);
        sample_shape_str(dst, true, model_shape, sizeof model_shape);
        return cs_fail(
            err, CS_ERR_SHAPE,
            "data sample shape %s (%lld values) does not fit model input %s (%lld values)",
            data_shape, (long long)per, model_shape, (long long)per_sample(dst));
    }

    if (dst->dtype == CS_DT_INT64)
        return fill_ids(ds, start, batch, per, dst, err);

    /* (x * scale - mean) / std as x * mul + add, per channel. */
    cs_norm identity;
    if (!norm) {
        cs_norm_init(&identity);
        norm = &identity;
    }
    int64_t channels = 1;
    if (norm->n_mean > 1 || norm->n_std > 1) {
        channels = dst->ndim >= 2 ? dst->dims[1] : 0;
        if ((norm->n_mean > 1 && norm->n_mean != channels) ||
            (norm->n_std > 1 && norm->n_std != channels) || channels > CS_NORM_MAX_CHANNELS)
            return cs_fail(err, CS_ERR_SHAPE,
                           "--mean/--std have %d/%d values but the model input has %lld channels",
                           norm->n_mean, norm->n_std, (long long)channels);
    }
    int64_t inner = per / channels;
    double mul[CS_NORM_MAX_CHANNELS], add[CS_NORM_MAX_CHANNELS];
    for (int64_t c = 0; c < channels; c++) {
        double mean = norm->n_mean == 0 ? 0.0 : norm->mean[norm->n_mean > 1 ? c : 0];
        double std = norm->n_std == 0 ? 1.0 : norm->std[norm->n_std > 1 ? c : 0];
        mul[c] = norm->scale / std;
        add[c] = -mean / std;
    }

    if (dst->dtype == CS_DT_FLOAT) {
        FILL_FOR_SOURCE(float);
    } else if (dst->dtype == CS_DT_DOUBLE) {
        FILL_FOR_SOURCE(double);
    } else {
        return cs_fail(err, CS_ERR_UNSUPPORTED,
                       "model input element type %s cannot take data (float or double only)",
                       cs_dtype_name(dst->dtype));
    }
    return CS_OK;
}

/* ---- labels ---- */

int64_t cs_dataset_label(const cs_dataset *ds, int64_t i)
{
    return cs_tensor_get_i64(&ds->y, i);
}

int64_t cs_dataset_target_width(const cs_dataset *ds)
{
    if (!ds->has_labels)
        return 0;
    if (ds->int_labels)
        return 1;
    return per_sample(&ds->y);
}

void cs_dataset_target(const cs_dataset *ds, int64_t i, double *out)
{
    int64_t k = cs_dataset_target_width(ds);
    for (int64_t j = 0; j < k; j++)
        out[j] = cs_tensor_get_f64(&ds->y, i * k + j);
}

/* Samples [lo, hi) of t moved to its front, the rest dropped. */
static void keep_sample_range(cs_tensor *t, int64_t lo, int64_t hi)
{
    if (t->ndim == 0 || t->dims[0] == 0)
        return;
    size_t row = cs_tensor_bytes(t) / (size_t)t->dims[0];
    memmove(t->data, (char *)t->data + (size_t)lo * row, (size_t)(hi - lo) * row);
    keep_samples(t, hi - lo);
}

cs_status cs_dataset_keep_rank_slice(cs_dataset *ds, int rank, int size, cs_err *err)
{
    if (size <= 1)
        return CS_OK;
    if (ds->n < size)
        return cs_fail(err, CS_ERR_USAGE, "%lld samples cannot be split across %d ranks (mpirun -np)",
                       (long long)ds->n, size);
    int64_t lo, hi;
    cs_dist_slice(ds->n, rank, size, &lo, &hi);
    keep_sample_range(&ds->x, lo, hi);
    if (ds->has_labels)
        keep_sample_range(&ds->y, lo, hi);
    ds->sliced = true;
    ds->first = lo;
    ds->n_total = ds->n;
    ds->n = hi - lo;
    return CS_OK;
}

void cs_dataset_free(cs_dataset *ds)
{
    cs_tensor_free(&ds->x);
    cs_tensor_free(&ds->y);
    memset(ds, 0, sizeof *ds);
}
