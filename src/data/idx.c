/* MNIST IDX reader.
 *
 * Layout: bytes 0-1 zero, byte 2 the element type, byte 3 the rank, then one
 * big-endian uint32 per dimension, then the elements, big-endian, row-major.
 * The file may be gzip-compressed: gzread passes plain files through
 * unchanged, so one code path reads both. */
#include "data/readers.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* Largest first read; the buffer then doubles only as data actually
 * arrives, so a header that claims terabytes in a tiny file costs nothing. */
#define IDX_FIRST_CHUNK ((size_t)1 << 20)

static cs_dtype idx_dtype(unsigned code)
{
    switch (code) {
    case 0x08: return CS_DT_UINT8;
    case 0x09: return CS_DT_INT8;
    case 0x0B: return CS_DT_INT16;
    case 0x0C: return CS_DT_INT32;
    case 0x0D: return CS_DT_FLOAT;
    case 0x0E: return CS_DT_DOUBLE;
    default: return CS_DT_UNDEFINED;
    }
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* IDX stores elements big-endian; swap each es-byte element in place when
 * this machine is little-endian. */
static void idx_to_host(unsigned char *data, size_t n, size_t es)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    (void)data;
    (void)n;
    (void)es;
#else
    if (es == 1)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char *e = data + i * es;
        for (size_t a = 0, b = es - 1; a < b; a++, b--) {
            unsigned char t = e[a];
            e[a] = e[b];
            e[b] = t;
        }
    }
#endif
}

/* gzread takes an unsigned length; read `want` bytes in pieces that fit.
 * Returns the bytes read; *zerr gets zlib's error code (Z_OK when the data
 * simply ended). */
static size_t gz_read_some(gzFile gz, unsigned char *dst, size_t want, int *zerr)
{
    size_t got = 0;
    *zerr = Z_OK;
    while (got < want) {
        size_t piece = want - got;
        if (piece > ((size_t)1 << 30))
            piece = (size_t)1 << 30;
        int r = gzread(gz, dst + got, (unsigned)piece);
        if (r < 0) {
            gzerror(gz, zerr);
            break;
        }
        if (r == 0) {
            /* A cut-off gzip stream ends with Z_BUF_ERROR set. */
            gzerror(gz, zerr);
            break;
        }
        got += (size_t)r;
    }
    return got;
}

/* zlib's message for the last error, without the path it starts with. */
static const char *zlib_message(gzFile gz, const char *path)
{
    int code;
    const char *m = gzerror(gz, &code);
    size_t n = strlen(path);
    if (m && strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ')
        m += n + 2;
    return m && *m ? m : "zlib error";
}

/* After a short read: an I/O error or a corrupt gzip stream (bad deflate
 * data, bad checksum) is reported as such; Z_OK and Z_BUF_ERROR (the data
 * simply ended) are left to the caller's truncation message. */
static cs_status gz_failure(gzFile gz, int zerr, const char *path, size_t offset, cs_err *err)
{
    if (zerr == Z_OK || zerr == Z_BUF_ERROR)
        return CS_OK;
    if (zerr == Z_ERRNO)
        return cs_fail(err, CS_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    return cs_fail(err, CS_ERR_FORMAT, "%s: corrupt gzip stream (%s) after %zu decompressed bytes",
                   path, zlib_message(gz, path), offset);
}

cs_status cs_read_idx(const char *path, cs_tensor *out, cs_err *err)
{
    return cs_read_idx_rows(path, 0, out, NULL, err);
}

cs_status cs_read_idx_rows(const char *path, int64_t max_rows, cs_tensor *out, int64_t *file_rows,
                           cs_err *err)
{
    memset(out, 0, sizeof *out);
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return cs_fail(err, CS_ERR_IO, "cannot open '%s': %s", path,
                       errno ? strerror(errno) : "gzopen failed");

    cs_status st = CS_OK;
    unsigned char *data = NULL;
    unsigned char head[4 + 4 * CS_MAX_DIMS];
    int zerr;
    size_t got = gz_read_some(gz, head, 4, &zerr);
    if ((st = gz_failure(gz, zerr, path, got, err)))
        goto done;
    if (got < 4) {
        st = cs_fail(err, CS_ERR_FORMAT, "%s: not an IDX file: only %zu bytes, the header needs 4",
                     path, got);
        goto done;
    }
    unsigned magic = be32(head);
    cs_dtype dt = idx_dtype(head[2]);
    int ndim = head[3];
    if (head[0] != 0 || head[1] != 0 || dt == CS_DT_UNDEFINED || ndim == 0) {
        st = cs_fail(err, CS_ERR_FORMAT,
                     "%s: not an IDX file: magic 0x%08x at byte 0 (expected 0x0000TTNN, type TT in "
                     "08 09 0B 0C 0D 0E, rank NN >= 1)",
                     path, magic);
        goto done;
    }
    if (ndim > CS_MAX_DIMS) {
        st = cs_fail(err, CS_ERR_UNSUPPORTED, "%s: IDX rank %d is above the supported %d", path,
                     ndim, CS_MAX_DIMS);
        goto done;
    }
    size_t head_len = 4 + 4 * (size_t)ndim;
    got = gz_read_some(gz, head + 4, head_len - 4, &zerr);
    if ((st = gz_failure(gz, zerr, path, 4 + got, err)))
        goto done;
    if (got < head_len - 4) {
        st = cs_fail(err, CS_ERR_FORMAT,
                     "%s: truncated IDX header: %d dimensions need %zu bytes, file has %zu", path,
                     ndim, head_len, 4 + got);
        goto done;
    }
    int64_t dims[CS_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        dims[i] = be32(head + 4 + 4 * (size_t)i);
    char what[64 + 4096];
    snprintf(what, sizeof what, "%s: IDX header", path);
    st = cs_shape_check(ndim, dims, dt, cs_data_max_numel(dt), what, err);
    if (st)
        goto done;

    cs_tensor_set_shape(out, dt, ndim, dims);
    size_t es = cs_dtype_size(dt);
    size_t want = cs_tensor_bytes(out); /* the whole data part */
    if (file_rows)
        *file_rows = ndim > 0 ? dims[0] : 1;
    /* Only the first max_rows rows are kept, and read: see below. */
    if (max_rows > 0 && ndim > 0 && max_rows < dims[0])
        out->dims[0] = max_rows;
    size_t keep = cs_tensor_bytes(out);
    size_t cap = keep < IDX_FIRST_CHUNK ? keep : IDX_FIRST_CHUNK;
    data = malloc(cap ? cap : 1);
    if (!data) {
        st = cs_fail(err, CS_ERR_NOMEM, "%s: out of memory for %zu bytes", path, cap);
        goto done;
    }
    size_t have = 0;
    for (;;) {
        size_t n = gz_read_some(gz, data + have, cap - have, &zerr);
        have += n;
        if (have < cap || have == keep)
            break;
        size_t next = cap > keep / 2 ? keep : cap * 2;
        unsigned char *grown = realloc(data, next);
        if (!grown) {
            st = cs_fail(err, CS_ERR_NOMEM, "%s: out of memory for %zu bytes", path, next);
            goto done;
        }
        data = grown;
        cap = next;
    }
    if ((st = gz_failure(gz, zerr, path, head_len + have, err)))
        goto done;
    /* Rows past max_rows are not read.  A plain file's size is still
     * checked against its header (stat costs nothing); a gzip stream is
     * not inflated past the kept rows, so damage after them (a cut-off
     * file, a wrong CRC-32 in the trailer) is not seen by this read: it
     * cannot change a value read.  Inflating 60,000 Fashion-MNIST images
     * to use 1,000 was most of a small run's time (bench/results.md). */
    if (have == keep && keep < want) {
        if (gzdirect(gz)) {
            struct stat sb;
            if (stat(path, &sb) != 0) {
                st = cs_fail(err, CS_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
                goto done;
            }
            if ((uint64_t)sb.st_size < head_len + want) {
                st = cs_fail(err, CS_ERR_FORMAT,
                             "%s: truncated IDX data: shape needs %zu bytes after the %zu-byte "
                             "header, the file has %llu", path, want, head_len,
                             (unsigned long long)sb.st_size - head_len);
                goto done;
            }
            if ((uint64_t)sb.st_size > head_len + want) {
                st = cs_fail(err, CS_ERR_FORMAT,
                             "%s: trailing bytes after offset %zu, where the IDX shape ends", path,
                             head_len + want);
                goto done;
            }
        }
        goto convert;
    }
    if (have < want) {
        st = cs_fail(
            err, CS_ERR_FORMAT,
            "%s: truncated IDX data: shape needs %zu bytes after the %zu-byte header, got %zu%s",
            path, want, head_len, have, zerr == Z_BUF_ERROR ? " (gzip stream cut off)" : "");
        goto done;
    }
    /* Reading on to the end also makes zlib check the gzip trailer (CRC
     * and length), so a cut or corrupt stream is not taken as whole. */
    unsigned char extra;
    if (gz_read_some(gz, &extra, 1, &zerr) != 0) {
        st = cs_fail(err, CS_ERR_FORMAT,
                     "%s: trailing bytes after offset %zu, where the IDX shape ends", path,
                     head_len + want);
        goto done;
    }
    if ((st = gz_failure(gz, zerr, path, head_len + want, err)))
        goto done;
    if (zerr == Z_BUF_ERROR) {
        st =
            cs_fail(err, CS_ERR_FORMAT,
                    "%s: gzip stream is cut off after all %zu data bytes (no trailer)", path, want);
        goto done;
    }
convert:
    idx_to_host(data, keep / (es ? es : 1), es);
    out->data = data;
    out->owns_data = true;
    data = NULL;

done:
    free(data);
    gzclose(gz);
    if (st)
        memset(out, 0, sizeof *out);
    return st;
}
