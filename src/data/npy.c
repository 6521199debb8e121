/* NumPy .npy reader (format versions 1.0, 2.0 and 3.0).
 *
 * Layout: "\x93NUMPY", major, minor, header length (uint16 LE in 1.x,
 * uint32 LE in 2.x and 3.x), then an ASCII (3.x: UTF-8) Python dict literal
 * such as {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a newline, then the raw elements. */
#include "data/readers.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/atomic_file.h"

/* numpy itself refuses headers over 10 000 bytes unless told otherwise;
 * a megabyte is far beyond anything a plain array needs. */
#define NPY_MAX_HEADER ((size_t)1 << 20)

typedef struct npy_header {
    char descr[32];
    int have_descr, have_order, have_shape;
    int fortran;
    int ndim; /* may exceed CS_MAX_DIMS: then rejected */
    int64_t dims[CS_MAX_DIMS];
} npy_header;

typedef struct npy_parser {
    const char *path;
    const char *text, *p, *end;
    size_t base; /* file offset of text[0], for messages */
    cs_err *err;
} npy_parser;

static cs_status npy_bad(npy_parser *ps, const char *expected)
{
    return cs_fail(ps->err, CS_ERR_FORMAT, "%s: bad .npy header at byte %zu: expected %s", ps->path,
                   ps->base + (size_t)(ps->p - ps->text), expected);
}

static void npy_skip_ws(npy_parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* Consume c (after spaces) if present. */
static int npy_accept(npy_parser *ps, char c)
{
    npy_skip_ws(ps);
    if (ps->p < ps->end && *ps->p == c) {
        ps->p++;
        return 1;
    }
    return 0;
}

static int npy_accept_word(npy_parser *ps, const char *word)
{
    npy_skip_ws(ps);
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, word, n) == 0) {
        ps->p += n;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes (keys and dtype strings never
 * need them). */
static cs_status npy_string(npy_parser *ps, char *buf, size_t size)
{
    npy_skip_ws(ps);
    if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"'))
        return npy_bad(ps, "a quoted string");
    char q = *ps->p++;
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != q) {
        if (*ps->p == '\\' || n + 1 >= size)
            return npy_bad(ps, "a short string without escapes");
        buf[n++] = *ps->p++;
    }
    if (ps->p >= ps->end)
        return npy_bad(ps, "a closing quote");
    ps->p++;
    buf[n] = '\0';
    return CS_OK;
}

static cs_status npy_shape(npy_parser *ps, npy_header *h)
{
    if (!npy_accept(ps, '('))
        return npy_bad(ps, "'(' starting the shape tuple");
    h->ndim = 0;
    for (;;) {
        if (npy_accept(ps, ')'))
            break;
        npy_skip_ws(ps);
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
            return npy_bad(ps, "a non-negative integer dimension");
        int64_t v = 0;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
            if (v > (INT64_MAX - 9) / 10)
                return npy_bad(ps, "a dimension that fits in 64 bits");
            v = v * 10 + (*ps->p++ - '0');
        }
        if (ps->p < ps->end && (*ps->p == 'L' || *ps->p == 'l'))
            ps->p++; /* Python 2 long suffix, written by old numpy */
        if (h->ndim < CS_MAX_DIMS)
            h->dims[h->ndim] = v;
        h->ndim++;
        if (npy_accept(ps, ')'))
            break;
        if (!npy_accept(ps, ','))
            return npy_bad(ps, "',' or ')' in the shape tuple");
    }
    return CS_OK;
}

static cs_status npy_parse_header(npy_parser *ps, npy_header *h)
{
    cs_status st;
    memset(h, 0, sizeof *h);
    if (!npy_accept(ps, '{'))
        return npy_bad(ps, "'{' starting the header dict");
    for (;;) {
        if (npy_accept(ps, '}'))
            break;
        char key[32];
        const char *key_at = ps->p;
        if ((st = npy_string(ps, key, sizeof key)))
            return st;
        if (!npy_accept(ps, ':'))
            return npy_bad(ps, "':' after a key");
        if (strcmp(key, "descr") == 0) {
            npy_skip_ws(ps);
            if (ps->p < ps->end && *ps->p == '[')
                return cs_fail(ps->err, CS_ERR_UNSUPPORTED,
                               "%s: structured dtype (a 'descr' list at byte %zu) is not supported",
                               ps->path, ps->base + (size_t)(ps->p - ps->text));
            if ((st = npy_string(ps, h->descr, sizeof h->descr)))
                return st;
            h->have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (npy_accept_word(ps, "True"))
                h->fortran = 1;
            else if (npy_accept_word(ps, "False"))
                h->fortran = 0;
            else
                return npy_bad(ps, "True or False for 'fortran_order'");
            h->have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            if ((st = npy_shape(ps, h)))
                return st;
            h->have_shape = 1;
        } else {
            ps->p = key_at;
            return npy_bad(ps, "one of the keys 'descr', 'fortran_order', 'shape'");
        }
        if (npy_accept(ps, '}'))
            break;
        if (!npy_accept(ps, ','))
            return npy_bad(ps, "',' or '}' in the header dict");
    }
    npy_skip_ws(ps);
    if (ps->p != ps->end)
        return npy_bad(ps, "only padding after the header dict");
    if (!h->have_descr || !h->have_order || !h->have_shape)
        return cs_fail(ps->err, CS_ERR_FORMAT, "%s: .npy header lacks %s", ps->path,
                       !h->have_descr   ? "'descr'"
                       : !h->have_order ? "'fortran_order'"
                                        : "'shape'");
    return CS_OK;
}

static int host_is_little(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* Map a descr such as "<f4" to a dtype; *swap says whether the file's byte
 * order differs from this machine's. */
static cs_status npy_dtype(const char *path, const char *descr, cs_dtype *dt, int *swap,
                           cs_err *err)
{
    static const struct {
        const char *code;
        cs_dtype dt;
    } codes[] = {
        {"b1", CS_DT_BOOL},  {"u1", CS_DT_UINT8},   {"i1", CS_DT_INT8},  {"u2", CS_DT_UINT16},
        {"i2", CS_DT_INT16}, {"u4", CS_DT_UINT32},  {"i4", CS_DT_INT32}, {"u8", CS_DT_UINT64},
        {"i8", CS_DT_INT64}, {"f2", CS_DT_FLOAT16}, {"f4", CS_DT_FLOAT}, {"f8", CS_DT_DOUBLE},
    };
    char order = descr[0];
    const char *code = descr;
    if (order == '<' || order == '>' || order == '|' || order == '=')
        code++;
    else
        order = '=';
    *dt = CS_DT_UNDEFINED;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i].code) == 0)
            *dt = codes[i].dt;
    if (*dt == CS_DT_UNDEFINED)
        return cs_fail(
            err, CS_ERR_UNSUPPORTED,
            "%s: .npy dtype '%s' is not supported (use uint8, int8, int16, int32, int64, "
            "float16, float32, float64 or bool)",
            path, descr);
    int little = host_is_little();
    *swap = 0;
    if (cs_dtype_size(*dt) > 1) {
        if (order == '>')
            return cs_fail(err, CS_ERR_UNSUPPORTED,
                           "%s: big-endian .npy dtype '%s' is not supported; save it little-endian "
                           "(arr.astype(arr.dtype.newbyteorder('<')))",
                           path, descr);
        *swap = order == '<' && !little;
    }
    return CS_OK;
}

static void swap_elements(unsigned char *data, size_t n, size_t es)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char *e = data + i * es;
        for (size_t a = 0, b = es - 1; a < b; a++, b--) {
            unsigned char t = e[a];
            e[a] = e[b];
            e[b] = t;
        }
    }
}

cs_status cs_read_npy(const char *path, cs_tensor *out, cs_err *err)
{
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return cs_fail(err, CS_ERR_IO, "cannot open '%s': %s", path, strerror(errno));

    cs_status st = CS_OK;
    char *header = NULL;
    unsigned char *data = NULL;
    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, f);
    if (ferror(f)) {
        st = cs_fail(err, CS_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        goto done;
    }
    if (got < 8 || memcmp(pre, magic, sizeof magic) != 0) {
        st = cs_fail(err, CS_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic at byte 0)",
                     path);
        goto done;
    }
    int major = pre[6], minor = pre[7];
    size_t len_bytes = major == 1 ? 2 : 4;
    if (major < 1 || major > 3) {
        st = cs_fail(err, CS_ERR_UNSUPPORTED,
                     "%s: .npy format version %d.%d is not supported (1.0, 2.0, 3.0 are)", path,
                     major, minor);
        goto done;
    }
    if (len_bytes == 4)
        got += fread(pre + 10, 1, 2, f);
    if (got < 8 + len_bytes) {
        st = cs_fail(err, CS_ERR_FORMAT, "%s: truncated .npy preamble (%zu bytes)", path, got);
        goto done;
    }
    size_t header_len = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (len_bytes == 4)
        header_len |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    size_t header_at = 8 + len_bytes;
    if (header_len > NPY_MAX_HEADER) {
        st = cs_fail(err, CS_ERR_FORMAT,
                     "%s: .npy header length %zu (at byte 8) is over the limit of %zu", path,
                     header_len, NPY_MAX_HEADER);
        goto done;
    }
    header = malloc(header_len + 1);
    if (!header) {
        st = cs_fail(err, CS_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    got = fread(header, 1, header_len, f);
    if (got < header_len) {
        st = cs_fail(err, CS_ERR_FORMAT,
                     "%s: truncated .npy header: %zu bytes from byte %zu, file has %zu", path,
                     header_len, header_at, got);
        goto done;
    }
    header[header_len] = '\0';

    npy_header h;
    npy_parser ps = {path, header, header, header + header_len, header_at, err};
    if ((st = npy_parse_header(&ps, &h)))
        goto done;
    cs_dtype dt;
    int swap;
    if ((st = npy_dtype(path, h.descr, &dt, &swap, err)))
        goto done;
    char what[64 + 4096];
    snprintf(what, sizeof what, "%s: .npy shape", path);
    if ((st = cs_shape_check(h.ndim, h.dims, dt, cs_data_max_numel(dt), what, err)))
        goto done;
    if (h.fortran && h.ndim > 1) {
        /* 0-d and 1-d arrays have the same layout either way. */
        st = cs_fail(err, CS_ERR_UNSUPPORTED,
                     "%s: .npy array is in Fortran (column-major) order; save it with "
                     "numpy.ascontiguousarray first",
                     path);
        goto done;
    }
    cs_tensor_set_shape(out, dt, h.ndim, h.dims);
    size_t want = cs_tensor_bytes(out);
    size_t data_at = header_at + header_len;
    char shape[128];
    cs_shape_str(out, shape, sizeof shape);

    /* Check the size before allocating, so a lying header costs nothing. */
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode)) {
        size_t have = (size_t)sb.st_size > data_at ? (size_t)sb.st_size - data_at : 0;
        if (have < want) {
            st = cs_fail(err, CS_ERR_FORMAT,
                         "%s: truncated .npy data: shape %s of '%s' needs %zu bytes from byte %zu, "
                         "file has %zu",
                         path, shape, h.descr, want, data_at, have);
            goto done;
        }
        if (have > want) {
            st = cs_fail(err, CS_ERR_FORMAT,
                         "%s: %zu trailing bytes after byte %zu, where the .npy shape %s ends",
                         path, have - want, data_at + want, shape);
            goto done;
        }
    }
    data = malloc(want ? want : 1);
    if (!data) {
        st = cs_fail(err, CS_ERR_NOMEM, "%s: out of memory for %zu bytes", path, want);
        goto done;
    }
    got = fread(data, 1, want, f);
    if (got < want) {
        st = cs_fail(
            err, ferror(f) ? CS_ERR_IO : CS_ERR_FORMAT,
            "%s: truncated .npy data: shape %s of '%s' needs %zu bytes from byte %zu, got %zu",
            path, shape, h.descr, want, data_at, got);
        goto done;
    }
    if (swap)
        swap_elements(data, want / cs_dtype_size(dt), cs_dtype_size(dt));
    out->data = data;
    out->owns_data = true;
    data = NULL;

done:
    free(data);
    free(header);
    fclose(f);
    if (st)
        memset(out, 0, sizeof *out);
    return st;
}

/* ---- writing ---- */

cs_status cs_write_npy_f64(const char *path, const double *data, int ndim, const int64_t *dims,
                           cs_err *err)
{
    /* Version 1.0 header: magic, version, little-endian header length, then
     * the dict padded with spaces so that data starts at a multiple of 64. */
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': (");
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%lld,%s", (long long)dims[i],
                        i + 1 < ndim ? " " : "");
        numel *= dims[i];
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    size_t total = 10 + (size_t)len + 1;
    size_t pad = (64 - total % 64) % 64;
    cs_atomic_file af;
    cs_status st = cs_atomic_open(&af, path, err);
    if (st != CS_OK)
        return st;
    FILE *f = af.f;
    uint16_t hlen = (uint16_t)((size_t)len + pad + 1);
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                              (unsigned char)(hlen >> 8)};
    int bad = fwrite(head, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)len, f) != (size_t)len;
    for (size_t i = 0; i < pad && !bad; i++)
        bad = fputc(' ', f) == EOF;
    bad = bad || fputc('\n', f) == EOF;
    bad = bad || fwrite(data, sizeof(double), (size_t)numel, f) != (size_t)numel; /* host is little-endian */
    if (bad) {
        st = cs_fail(err, CS_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        cs_atomic_abort(&af);
        return st;
    }
    return cs_atomic_commit(&af, err);
}
