/* Dataset module: IDX, npy, csv and pb readers, SPEC parsing, loading,
 * normalisation and the per-batch conversion, with their error paths.
 * Files are written at test time into a mkdtemp folder removed at the end. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/dataset.h"
#include "data/readers.h"
#include "onnx/tensor_proto.h"
#include "../tap.h"
#include "../test_util.h"

static char tmp_dir[64];

/* Path of name inside the temporary folder; four rotating buffers so a
 * call can take several paths. */
static const char *tpath(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", tmp_dir, name);
    return b;
}

static void remove_tmp_dir(void)
{
    DIR *d = opendir(tmp_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        unlink(tpath(e->d_name));
    }
    closedir(d);
    rmdir(tmp_dir);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        diag("cannot write %s", path);
        exit(1);
    }
    fclose(f);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

static void write_gz(const char *path, const void *data, size_t len)
{
    gzFile gz = gzopen(path, "wb");
    if (!gz || gzwrite(gz, data, (unsigned)len) != (int)len) {
        diag("cannot write %s", path);
        exit(1);
    }
    gzclose(gz);
}

/* An IDX image of (type, dims, host-order elements of es bytes) into buf;
 * returns its length. */
static size_t make_idx(unsigned char *buf, int type, int ndim, const uint32_t *dims,
                       const void *data, size_t es)
{
    size_t n = 1, off = 4;
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = (unsigned char)type;
    buf[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        buf[off++] = (unsigned char)(dims[i] >> 24);
        buf[off++] = (unsigned char)(dims[i] >> 16);
        buf[off++] = (unsigned char)(dims[i] >> 8);
        buf[off++] = (unsigned char)dims[i];
        n *= dims[i];
    }
    if (es == 0) /* header only */
        return off;
    const unsigned char *src = data;
    uint16_t probe = 1;
    int little = *(unsigned char *)&probe == 1;
    for (size_t i = 0; i < n; i++)
        for (size_t b = 0; b < es; b++)
            buf[off + i * es + b] = src[i * es + (little ? es - 1 - b : b)];
    return off + n * es;
}

/* A .npy file with the given version and header dict, padded as numpy does. */
static void write_npy(const char *path, int major, const char *dict, const void *data, size_t len)
{
    unsigned char buf[4096];
    size_t pre = major == 1 ? 10 : 12;
    size_t hlen = strlen(dict) + 1;
    while ((pre + hlen) % 64)
        hlen++;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)hlen;
    buf[9] = (unsigned char)(hlen >> 8);
    if (major > 1) {
        buf[10] = 0;
        buf[11] = 0;
    }
    memset(buf + pre, ' ', hlen);
    memcpy(buf + pre, dict, strlen(dict));
    buf[pre + hlen - 1] = '\n';
    memcpy(buf + pre + hlen, data, len);
    write_bytes(path, buf, pre + hlen + len);
}

static int has(const cs_err *err, const char *needle)
{
    return strstr(err->msg, needle) != NULL;
}

/* One error path: the status and up to two things the message must say. */
static void expect_err(const char *name, cs_status st, cs_status want, const cs_err *err,
                       const char *needle1, const char *needle2)
{
    ok(st == want, "%s: status %s (got %s)", name, cs_status_name(want), cs_status_name(st));
    ok(st != CS_OK && has(err, needle1) && (!needle2 || has(err, needle2)),
       "%s: message mentions '%s'%s%s: %s", name, needle1, needle2 ? " and " : "",
       needle2 ? needle2 : "", err->msg);
}

static int dims_are(const cs_tensor *t, int ndim, const int64_t *dims)
{
    if (t->ndim != ndim)
        return 0;
    for (int i = 0; i < ndim; i++)
        if (t->dims[i] != dims[i])
            return 0;
    return 1;
}

/* Every strict prefix of a valid file must fail with a message naming it
 * (and the whole file must read); run under valgrind this also checks that
 * no prefix reads out of bounds. */
static void test_prefixes(const char *label, const char *src,
                          cs_status (*reader)(const char *, cs_tensor *, cs_err *))
{
    unsigned char buf[512];
    FILE *f = fopen(src, "rb");
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    int good = len > 0;
    for (size_t cut = 0; good && cut <= len; cut++) {
        const char *path = tpath("prefix.bin");
        write_bytes(path, buf, cut);
        cs_err err = {0};
        cs_tensor t;
        cs_status st = reader(path, &t, &err);
        if (cut == len ? st != CS_OK : (st == CS_OK || !has(&err, "prefix.bin"))) {
            diag("%s prefix of %zu/%zu bytes: %s %s", label, cut, len, cs_status_name(st), err.msg);
            good = 0;
        }
        if (st == CS_OK)
            cs_tensor_free(&t);
    }
    ok(good, "%s: every one of the %zu strict prefixes fails naming the file, the whole reads",
       label, len);
}

/* ---- IDX ---- */

static void test_idx(void)
{
    cs_err err = {0};
    cs_tensor t;
    unsigned char buf[8192];

    /* uint8, plain and gzip */
    uint8_t u8[24];
    for (int i = 0; i < 24; i++)
        u8[i] = (uint8_t)(i * 11);
    uint32_t d3[3] = {2, 3, 4};
    size_t len = make_idx(buf, 0x08, 3, d3, u8, 1);
    write_bytes(tpath("u8.idx"), buf, len);
    write_gz(tpath("u8.idx.gz"), buf, len);
    const char *names[2] = {"u8.idx", "u8.idx.gz"};
    for (int g = 0; g < 2; g++) {
        cs_status st = cs_read_idx(tpath(names[g]), &t, &err);
        int64_t want_dims[3] = {2, 3, 4};
        ok(st == CS_OK && t.dtype == CS_DT_UINT8 && dims_are(&t, 3, want_dims) &&
               memcmp(t.data, u8, 24) == 0,
           "idx %s: uint8 [2, 3, 4] round-trips %s", g ? "gzip" : "plain", st ? err.msg : "");
        cs_tensor_free(&t);
    }

    /* every other element type, with negative values to catch byte order */
    int8_t i8[5] = {-128, -1, 0, 1, 127};
    int16_t i16[5] = {-32768, -2, 0, 300, 32767};
    int32_t i32[5] = {INT32_MIN, -70000, 0, 70000, INT32_MAX};
    float f32[5] = {-1.5f, 0.0f, 3.25e-5f, 1e30f, -7.0f};
    double f64[5] = {-1e300, -0.1, 0.0, 1.0 / 3.0, 6.02e23};
    struct {
        int code;
        const void *data;
        size_t es;
        cs_dtype dt;
    } cases[] = {
        {0x09, i8, 1, CS_DT_INT8},   {0x0B, i16, 2, CS_DT_INT16},  {0x0C, i32, 4, CS_DT_INT32},
        {0x0D, f32, 4, CS_DT_FLOAT}, {0x0E, f64, 8, CS_DT_DOUBLE},
    };
    uint32_t d1[1] = {5};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        len = make_idx(buf, cases[c].code, 1, d1, cases[c].data, cases[c].es);
        write_bytes(tpath("typed.idx"), buf, len);
        cs_status st = cs_read_idx(tpath("typed.idx"), &t, &err);
        ok(st == CS_OK && t.dtype == cases[c].dt && t.ndim == 1 && t.dims[0] == 5 &&
               memcmp(t.data, cases[c].data, 5 * cases[c].es) == 0,
           "idx type 0x%02X reads as %s with the right values %s", cases[c].code,
           cs_dtype_name(cases[c].dt), st ? err.msg : "");
        cs_tensor_free(&t);
    }

    /* error paths */
    len = make_idx(buf, 0x08, 3, d3, u8, 1);
    buf[0] = 0x1f; /* not two zero bytes */
    write_bytes(tpath("magic.idx"), buf, len);
    cs_status st = cs_read_idx(tpath("magic.idx"), &t, &err);
    expect_err("idx wrong magic", st, CS_ERR_FORMAT, &err, "magic.idx", "magic");

    len = make_idx(buf, 0x0A, 3, d3, u8, 1); /* 0x0A is no IDX type */
    write_bytes(tpath("type.idx"), buf, len);
    st = cs_read_idx(tpath("type.idx"), &t, &err);
    expect_err("idx unknown type code", st, CS_ERR_FORMAT, &err, "type.idx", "0x00000a03");

    len = make_idx(buf, 0x08, 3, d3, u8, 1);
    write_bytes(tpath("trunc.idx"), buf, len - 5);
    st = cs_read_idx(tpath("trunc.idx"), &t, &err);
    expect_err("idx truncated plain", st, CS_ERR_FORMAT, &err, "trunc.idx", "truncated");
    ok(has(&err, "needs 24 bytes") && has(&err, "got 19"),
       "idx truncated plain: message says expected 24 and got 19 bytes");

    write_bytes(tpath("short.idx"), buf, 6);
    st = cs_read_idx(tpath("short.idx"), &t, &err);
    expect_err("idx truncated header", st, CS_ERR_FORMAT, &err, "short.idx", "header");

    write_bytes(tpath("trail.idx"), buf, len);
    FILE *f = fopen(tpath("trail.idx"), "ab");
    fputc(7, f);
    fclose(f);
    st = cs_read_idx(tpath("trail.idx"), &t, &err);
    expect_err("idx trailing bytes", st, CS_ERR_FORMAT, &err, "trail.idx", "trailing");

    /* gzip cut in the middle of the compressed stream */
    {
        static uint8_t noisy[3000];
        uint32_t lcg = 12345;
        for (size_t i = 0; i < sizeof noisy; i++) {
            lcg = lcg * 1103515245u + 12345u;
            noisy[i] = (uint8_t)(lcg >> 23);
        }
        static unsigned char big[4000];
        uint32_t dn[3] = {3, 1000, 1};
        size_t blen = make_idx(big, 0x08, 3, dn, noisy, 1);
        static unsigned char big_plain[4000];
        size_t big_plain_len = make_idx(big_plain, 0x08, 3, dn, noisy, 1);
        write_gz(tpath("full.idx.gz"), big, blen);
        FILE *g = fopen(tpath("full.idx.gz"), "rb");
        size_t glen = fread(big, 1, sizeof big, g);
        fclose(g);
        write_bytes(tpath("cut.idx.gz"), big, glen / 2);
        st = cs_read_idx(tpath("cut.idx.gz"), &t, &err);
        expect_err("idx truncated gzip", st, CS_ERR_FORMAT, &err, "cut.idx.gz", "truncated");
        ok(has(&err, "needs 3000 bytes"),
           "idx truncated gzip: message says the 3000 bytes expected");
        big[glen - 6] ^= 0x5a; /* inside the CRC-32 of the gzip trailer */
        write_bytes(tpath("crc.idx.gz"), big, glen);
        st = cs_read_idx(tpath("crc.idx.gz"), &t, &err);
        expect_err("idx gzip with a bad checksum", st, CS_ERR_FORMAT, &err, "crc.idx.gz", "gzip");
        st = cs_read_idx(tpath("full.idx.gz"), &t, &err);
        ok(st == CS_OK && memcmp(t.data, noisy, sizeof noisy) == 0,
           "idx gzip of 3000 noisy bytes reads back whole");
        cs_tensor_free(&t);

        /* the first rows only: the rest of a gzip stream is not inflated */
        int64_t rows = 0;
        st = cs_read_idx_rows(tpath("full.idx.gz"), 1, &t, &rows, &err);
        ok(st == CS_OK && t.ndim == 3 && t.dims[0] == 1 && t.dims[1] == 1000 && rows == 3 &&
               memcmp(t.data, noisy, 1000) == 0,
           "idx rows: 1 of 3 rows kept, the file's count reported (%s)", st ? err.msg : "");
        cs_tensor_free(&t);
        st = cs_read_idx_rows(tpath("full.idx.gz"), 7, &t, &rows, &err);
        ok(st == CS_OK && t.dims[0] == 3 && rows == 3 && memcmp(t.data, noisy, 3000) == 0,
           "idx rows: asking for 7 of 3 rows gives all 3");
        cs_tensor_free(&t);
        /* cut.idx.gz holds about half of the 3000 bytes: the first row is
         * there, the third is not */
        st = cs_read_idx_rows(tpath("cut.idx.gz"), 1, &t, &rows, &err);
        ok(st == CS_OK && t.dims[0] == 1 && rows == 3 && memcmp(t.data, noisy, 1000) == 0,
           "idx rows: a stream cut after the kept row still gives that row (%s)",
           st ? err.msg : "");
        cs_tensor_free(&t);
        st = cs_read_idx_rows(tpath("cut.idx.gz"), 3, &t, &rows, &err);
        expect_err("idx rows: a stream cut inside the kept rows", st, CS_ERR_FORMAT, &err,
                   "cut.idx.gz", "truncated");
        st = cs_read_idx_rows(tpath("crc.idx.gz"), 3, &t, &rows, &err);
        expect_err("idx rows: a bad checksum when every row is kept", st, CS_ERR_FORMAT, &err,
                   "crc.idx.gz", "gzip");
        /* a plain file: its size is checked against the header even when
         * only the first row is read */
        write_bytes(tpath("plain.idx"), big_plain, big_plain_len);
        st = cs_read_idx_rows(tpath("plain.idx"), 1, &t, &rows, &err);
        ok(st == CS_OK && t.dims[0] == 1 && rows == 3 && memcmp(t.data, noisy, 1000) == 0,
           "idx rows: the first row of a plain file (%s)", st ? err.msg : "");
        cs_tensor_free(&t);
        write_bytes(tpath("plain_cut.idx"), big_plain, big_plain_len - 1);
        st = cs_read_idx_rows(tpath("plain_cut.idx"), 1, &t, &rows, &err);
        expect_err("idx rows: a plain file one byte short", st, CS_ERR_FORMAT, &err,
                   "plain_cut.idx", "truncated");
        unsigned char longer[sizeof big_plain + 1];
        memcpy(longer, big_plain, big_plain_len);
        longer[big_plain_len] = 7;
        write_bytes(tpath("plain_long.idx"), longer, big_plain_len + 1);
        st = cs_read_idx_rows(tpath("plain_long.idx"), 1, &t, &rows, &err);
        expect_err("idx rows: a plain file one byte long", st, CS_ERR_FORMAT, &err,
                   "plain_long.idx", "trailing");
    }

    /* a header claiming 2^96 elements in a 16-byte file */
    uint32_t huge[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    len = make_idx(buf, 0x08, 3, huge, u8, 0);
    write_bytes(tpath("huge.idx"), buf, len);
    st = cs_read_idx(tpath("huge.idx"), &t, &err);
    expect_err("idx absurd dims", st, CS_ERR_NOMEM, &err, "huge.idx", "too large");

    /* 64 GiB of doubles: fewer elements than CS_DATA_MAX_NUMEL, more bytes
     * than CS_DATA_MAX_BYTES, refused from the header alone */
    uint32_t large[2] = {65536, 131072};
    len = make_idx(buf, 0x0E, 2, large, f64, 0);
    write_bytes(tpath("large.idx"), buf, len);
    st = cs_read_idx(tpath("large.idx"), &t, &err);
    expect_err("idx 64 GiB header on an empty body", st, CS_ERR_NOMEM, &err, "large.idx", "too large");

    /* big but under the cap: must fail on truncation, not allocate 4 GiB */
    uint32_t big[2] = {65536, 8192};
    len = make_idx(buf, 0x0E, 2, big, f64, 0);
    write_bytes(tpath("big.idx"), buf, len);
    st = cs_read_idx(tpath("big.idx"), &t, &err);
    expect_err("idx 4 GiB header on an empty body", st, CS_ERR_FORMAT, &err, "big.idx", "got 0");

    /* Gzip bomb: a ~16 KiB stream that inflates to 16 MiB of zeros behind
     * a header claiming 16 GiB: refused by the byte limit before any data
     * is inflated or allocated. */
    {
        size_t zeros = (size_t)16 << 20;
        unsigned char *bomb = calloc(1, 8 + zeros);
        uint32_t bomb_dims[1] = {0x80000000u}; /* 2^31 doubles = 16 GiB */
        if (bomb) {
            size_t hl = make_idx(bomb, 0x0E, 1, bomb_dims, f64, 0);
            write_gz(tpath("bomb.idx.gz"), bomb, hl + zeros);
            free(bomb);
            struct stat sb = {0};
            int stat_ok = stat(tpath("bomb.idx.gz"), &sb) == 0;
            ok(stat_ok && sb.st_size > 0 && sb.st_size < (1 << 20),
               "idx gzip bomb: %lld bytes on disk", (long long)sb.st_size);
            st = cs_read_idx(tpath("bomb.idx.gz"), &t, &err);
            expect_err("idx gzip bomb claiming 16 GiB", st, CS_ERR_NOMEM, &err, "bomb.idx.gz",
                       "too large");
            ok(has(&err, "IDX header"), "idx gzip bomb: the message names the IDX header (%s)",
               err.msg);
        } else {
            skip("idx gzip bomb: out of memory building it");
        }
    }

    test_prefixes("idx plain", tpath("u8.idx"), cs_read_idx);
    test_prefixes("idx gzip", tpath("u8.idx.gz"), cs_read_idx);

    st = cs_read_idx(tpath("missing.idx"), &t, &err);
    expect_err("idx missing file", st, CS_ERR_IO, &err, "missing.idx", "cannot open");
}

/* ---- npy ---- */

static void test_npy(void)
{
    cs_err err = {0};
    cs_tensor t;
    cs_status st;

    uint8_t u8[6] = {0, 1, 2, 200, 254, 255};
    write_npy(tpath("u8.npy"), 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", u8,
              sizeof u8);
    st = cs_read_npy(tpath("u8.npy"), &t, &err);
    int64_t d23[2] = {2, 3};
    ok(st == CS_OK && t.dtype == CS_DT_UINT8 && dims_are(&t, 2, d23) && memcmp(t.data, u8, 6) == 0,
       "npy v1 |u1 [2, 3] round-trips %s", st ? err.msg : "");
    cs_tensor_free(&t);

    float f4[3] = {1.5f, -2.25f, 1e-3f};
    write_npy(tpath("f4v2.npy"), 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4,
              sizeof f4);
    st = cs_read_npy(tpath("f4v2.npy"), &t, &err);
    ok(st == CS_OK && t.dtype == CS_DT_FLOAT && t.ndim == 1 && t.dims[0] == 3 &&
           memcmp(t.data, f4, sizeof f4) == 0,
       "npy v2 <f4 [3] round-trips %s", st ? err.msg : "");
    cs_tensor_free(&t);

    double f8[4] = {1.0 / 3, -1e200, 0, 42};
    write_npy(tpath("f8v3.npy"), 3,
              "{\"descr\": \"<f8\", \"shape\": (2, 2), \"fortran_order\": False}", f8, sizeof f8);
    st = cs_read_npy(tpath("f8v3.npy"), &t, &err);
    int64_t d22[2] = {2, 2};
    ok(st == CS_OK && t.dtype == CS_DT_DOUBLE && dims_are(&t, 2, d22) &&
           memcmp(t.data, f8, sizeof f8) == 0,
       "npy v3 <f8 [2, 2] with double quotes and other key order round-trips %s",
       st ? err.msg : "");
    cs_tensor_free(&t);

    int64_t i8[4] = {-5, 0, 9, INT64_MAX};
    int32_t i4[4] = {-5, 0, 9, INT32_MIN};
    uint8_t b1[4] = {1, 0, 1, 1};
    int8_t s1[4] = {-128, -1, 0, 127};
    struct {
        const char *descr;
        const void *data;
        size_t bytes;
        cs_dtype dt;
    } cases[] = {
        {"<i8", i8, sizeof i8, CS_DT_INT64},
        {"<i4", i4, sizeof i4, CS_DT_INT32},
        {"|b1", b1, sizeof b1, CS_DT_BOOL},
        {"|i1", s1, sizeof s1, CS_DT_INT8},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dict[128];
        snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (4,), }",
                 cases[c].descr);
        write_npy(tpath("typed.npy"), 1, dict, cases[c].data, cases[c].bytes);
        st = cs_read_npy(tpath("typed.npy"), &t, &err);
        ok(st == CS_OK && t.dtype == cases[c].dt && t.ndim == 1 && t.dims[0] == 4 &&
               memcmp(t.data, cases[c].data, cases[c].bytes) == 0,
           "npy %s [4] round-trips %s", cases[c].descr, st ? err.msg : "");
        cs_tensor_free(&t);
    }

    write_npy(tpath("scalar.npy"), 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", f8,
              8);
    st = cs_read_npy(tpath("scalar.npy"), &t, &err);
    ok(st == CS_OK && t.ndim == 0 && ((double *)t.data)[0] == f8[0],
       "npy 0-d array reads as a scalar");
    cs_tensor_free(&t);

    test_prefixes("npy v1", tpath("u8.npy"), cs_read_npy);
    test_prefixes("npy v2", tpath("f4v2.npy"), cs_read_npy);

    /* error paths */
    write_npy(tpath("badhdr.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3 }",
              f4, sizeof f4);
    st = cs_read_npy(tpath("badhdr.npy"), &t, &err);
    expect_err("npy bad header", st, CS_ERR_FORMAT, &err, "badhdr.npy", "header at byte");

    write_npy(tpath("nokey.npy"), 1, "{'descr': '<f4', 'fortran_order': False}", f4, sizeof f4);
    st = cs_read_npy(tpath("nokey.npy"), &t, &err);
    expect_err("npy header without shape", st, CS_ERR_FORMAT, &err, "nokey.npy", "'shape'");

    write_npy(tpath("extra.npy"), 1,
              "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", f4, sizeof f4);
    st = cs_read_npy(tpath("extra.npy"), &t, &err);
    expect_err("npy unknown header key", st, CS_ERR_FORMAT, &err, "extra.npy", "keys");

    write_bytes(tpath("magic.npy"), "\x93NUMPX\x01\x00\x00\x00", 10);
    st = cs_read_npy(tpath("magic.npy"), &t, &err);
    expect_err("npy wrong magic", st, CS_ERR_FORMAT, &err, "magic.npy", "not a .npy");

    write_npy(tpath("fortran.npy"), 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }",
              f8, sizeof f8);
    st = cs_read_npy(tpath("fortran.npy"), &t, &err);
    expect_err("npy fortran order", st, CS_ERR_UNSUPPORTED, &err, "fortran.npy", "Fortran");

    write_npy(tpath("bigend.npy"), 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }",
              f4, sizeof f4);
    st = cs_read_npy(tpath("bigend.npy"), &t, &err);
    expect_err("npy big-endian", st, CS_ERR_UNSUPPORTED, &err, "bigend.npy", "big-endian");

    write_npy(tpath("complex.npy"), 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }",
              f8, 16);
    st = cs_read_npy(tpath("complex.npy"), &t, &err);
    expect_err("npy unsupported dtype", st, CS_ERR_UNSUPPORTED, &err, "complex.npy", "'<c8'");

    write_npy(tpath("struct.npy"), 1,
              "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", f4, sizeof f4);
    st = cs_read_npy(tpath("struct.npy"), &t, &err);
    expect_err("npy structured dtype", st, CS_ERR_UNSUPPORTED, &err, "struct.npy", "structured");

    write_npy(tpath("trunc.npy"), 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
              f8, sizeof f8 - 3);
    st = cs_read_npy(tpath("trunc.npy"), &t, &err);
    expect_err("npy truncated data", st, CS_ERR_FORMAT, &err, "trunc.npy", "truncated");
    ok(has(&err, "needs 32 bytes") && has(&err, "has 29"),
       "npy truncated data: message says 32 bytes needed, 29 present");

    write_npy(tpath("huge.npy"), 1,
              "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", f8,
              8);
    st = cs_read_npy(tpath("huge.npy"), &t, &err);
    expect_err("npy absurd shape", st, CS_ERR_NOMEM, &err, "huge.npy", "too large");

    /* 2^40 one-byte elements in a small file: over CS_DATA_MAX_BYTES,
     * refused from the header, before the size check against the file */
    write_npy(tpath("tera.npy"), 1,
              "{'descr': '|u1', 'fortran_order': False, 'shape': (1099511627776,), }", f8, 8);
    st = cs_read_npy(tpath("tera.npy"), &t, &err);
    expect_err("npy header claiming 2^40 elements", st, CS_ERR_NOMEM, &err, "tera.npy", "too large");
    /* 2^30 doubles (8 GiB) are under the element limit too, and over the
     * byte limit */
    write_npy(tpath("giga.npy"), 1,
              "{'descr': '<f8', 'fortran_order': False, 'shape': (1073741825,), }", f8, 8);
    st = cs_read_npy(tpath("giga.npy"), &t, &err);
    expect_err("npy header claiming 8 GiB", st, CS_ERR_NOMEM, &err, "giga.npy", "too large");
    /* 2^29 doubles (4 GiB) are allowed by the header, and refused as
     * truncated against the file's 8 bytes */
    write_npy(tpath("half.npy"), 1,
              "{'descr': '<f8', 'fortran_order': False, 'shape': (536870912,), }", f8, 8);
    st = cs_read_npy(tpath("half.npy"), &t, &err);
    expect_err("npy header claiming 4 GiB in 8 bytes", st, CS_ERR_FORMAT, &err, "half.npy",
               "truncated");

    /* An independent writer: numpy itself, when the system Python has it. */
    const char *py = "/usr/bin/python3";
    char cmd[1024];
    snprintf(
        cmd, sizeof cmd,
        "%s -c \"import numpy as np; a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8; "
        "np.save('%s', a); np.save('%s', np.asfortranarray(a)); "
        "f = open('%s', 'wb'); np.lib.format.write_array(f, a.astype(np.int64), version=(2, 0)); "
        "f.close()\" 2>/dev/null",
        py, tpath("np_c.npy"), tpath("np_f.npy"), tpath("np_v2.npy"));
    if (access(py, X_OK) == 0 && system(cmd) == 0) {
        int64_t d234[3] = {2, 3, 4};
        st = cs_read_npy(tpath("np_c.npy"), &t, &err);
        int good = st == CS_OK && t.dtype == CS_DT_FLOAT && dims_are(&t, 3, d234);
        for (int i = 0; good && i < 24; i++)
            good = ((float *)t.data)[i] == (float)i / 8;
        ok(good, "npy written by numpy.save reads back %s", st ? err.msg : "");
        cs_tensor_free(&t);
        st = cs_read_npy(tpath("np_v2.npy"), &t, &err);
        good = st == CS_OK && t.dtype == CS_DT_INT64 && dims_are(&t, 3, d234);
        for (int i = 0; good && i < 24; i++)
            good = ((int64_t *)t.data)[i] == i / 8;
        ok(good, "npy v2.0 written by numpy reads back %s", st ? err.msg : "");
        cs_tensor_free(&t);
        st = cs_read_npy(tpath("np_f.npy"), &t, &err);
        expect_err("npy Fortran array from numpy", st, CS_ERR_UNSUPPORTED, &err, "np_f.npy",
                   "Fortran");
    } else {
        skip("no numpy in %s: npy files from numpy itself not tested", py);
        skip("no numpy in %s", py);
        skip("no numpy in %s", py);
        skip("no numpy in %s", py);
    }
}

/* ---- csv ---- */

static void test_csv(void)
{
    cs_err err = {0};
    cs_tensor t;
    cs_status st;

    write_text(tpath("plain.csv"), "1,2,0\n3.5,-4,1\n\n5e-1,6,2\n");
    st = cs_read_csv(tpath("plain.csv"), "2", 0, &t, &err);
    int64_t d32[2] = {3, 2};
    double want_x[6] = {1, 2, 3.5, -4, 0.5, 6};
    ok(st == CS_OK && t.dtype == CS_DT_DOUBLE && dims_are(&t, 2, d32) &&
           memcmp(t.data, want_x, sizeof want_x) == 0,
       "csv without header: data is every column but label 2, float64 [3, 2] %s",
       st ? err.msg : "");
    cs_tensor_free(&t);
    st = cs_read_csv(tpath("plain.csv"), "2", 1, &t, &err);
    ok(st == CS_OK && t.dtype == CS_DT_INT64 && t.ndim == 1 && t.dims[0] == 3 &&
           ((int64_t *)t.data)[0] == 0 && ((int64_t *)t.data)[2] == 2,
       "csv integral label column reads as int64 [3] %s", st ? err.msg : "");
    cs_tensor_free(&t);
    st = cs_read_csv(tpath("plain.csv"), NULL, 0, &t, &err);
    int64_t d33[2] = {3, 3};
    ok(st == CS_OK && dims_are(&t, 2, d33) && ((double *)t.data)[8] == 2,
       "csv with no label column: all columns, float64 [3, 3]");
    cs_tensor_free(&t);

    /* header (quoted names), CRLF, padding, blank lines, real-valued label */
    write_text(tpath("head.csv"), "\"x0\", x1 ,target\r\n\r\n0.25, 1 ,0.5\r\n  \r\n2,3,-1.75\r\n");
    st = cs_read_csv(tpath("head.csv"), "target", 1, &t, &err);
    ok(st == CS_OK && t.dtype == CS_DT_DOUBLE && t.ndim == 1 && t.dims[0] == 2 &&
           ((double *)t.data)[0] == 0.5 && ((double *)t.data)[1] == -1.75,
       "csv header, label by name, non-integral label -> float64 [2] %s", st ? err.msg : "");
    cs_tensor_free(&t);
    st = cs_read_csv(tpath("head.csv"), "x0", 0, &t, &err);
    int64_t d22[2] = {2, 2};
    double want_h[4] = {1, 0.5, 3, -1.75};
    ok(st == CS_OK && dims_are(&t, 2, d22) && memcmp(t.data, want_h, sizeof want_h) == 0,
       "csv header, data without column 'x0' %s", st ? err.msg : "");
    cs_tensor_free(&t);

    /* error paths */
    write_text(tpath("ragged.csv"), "a,b,c\n1,2,3\n4,5,6\n7,8\n");
    st = cs_read_csv(tpath("ragged.csv"), NULL, 0, &t, &err);
    expect_err("csv ragged rows", st, CS_ERR_FORMAT, &err, "ragged.csv", "line 4 has 2 fields");

    write_text(tpath("nonnum.csv"), "1,2,3\n4,5,6\n7,x8,9\n");
    st = cs_read_csv(tpath("nonnum.csv"), NULL, 0, &t, &err);
    expect_err("csv non-numeric field", st, CS_ERR_FORMAT, &err, "nonnum.csv", "line 3, column 2");
    ok(has(&err, "'x8'"), "csv non-numeric field: message quotes the field");

    write_text(tpath("emptyfield.csv"), "1,,3\n");
    st = cs_read_csv(tpath("emptyfield.csv"), NULL, 0, &t, &err);
    /* An empty first-row field makes the row a header, leaving no data. */
    expect_err("csv header only", st, CS_ERR_FORMAT, &err, "emptyfield.csv", "no data rows");

    write_text(tpath("empty2.csv"), "a,b\n1,2\n3,\n");
    st = cs_read_csv(tpath("empty2.csv"), NULL, 0, &t, &err);
    expect_err("csv empty field", st, CS_ERR_FORMAT, &err, "line 3, column 2", "empty");

    st = cs_read_csv(tpath("head.csv"), "nope", 1, &t, &err);
    expect_err("csv unknown label name", st, CS_ERR_USAGE, &err, "head.csv", "'nope'");
    st = cs_read_csv(tpath("plain.csv"), "3", 1, &t, &err);
    expect_err("csv label index out of range", st, CS_ERR_USAGE, &err, "plain.csv", "3 columns");
    st = cs_read_csv(tpath("plain.csv"), "target", 1, &t, &err);
    expect_err("csv label name without header", st, CS_ERR_USAGE, &err, "plain.csv", "no header");
    write_text(tpath("empty.csv"), "\n\n");
    st = cs_read_csv(tpath("empty.csv"), NULL, 0, &t, &err);
    expect_err("csv empty file", st, CS_ERR_FORMAT, &err, "empty.csv", "no data rows");
    write_text(tpath("onecol.csv"), "1\n2\n");
    st = cs_read_csv(tpath("onecol.csv"), "0", 0, &t, &err);
    expect_err("csv data with only the label column", st, CS_ERR_FORMAT, &err, "onecol.csv",
               "no data columns");
}

/* ---- pb ---- */

static void test_pb(void)
{
    cs_err err = {0};
    cs_tensor t = {0}, back;
    int64_t d23[2] = {2, 3};
    cs_tensor_set_shape(&t, CS_DT_FLOAT, 2, d23);
    if (cs_tensor_alloc(&t, &err)) {
        ok(0, "pb: alloc");
        return;
    }
    for (int i = 0; i < 6; i++)
        ((float *)t.data)[i] = (float)i - 2.5f;
    cs_status st = cs_tensor_proto_write_file(tpath("x.pb"), &t, "x", &err);
    if (st == CS_OK)
        st = cs_read_pb(tpath("x.pb"), &back, &err);
    ok(st == CS_OK && back.dtype == CS_DT_FLOAT && dims_are(&back, 2, d23) &&
           memcmp(back.data, t.data, 6 * sizeof(float)) == 0,
       "pb float [2, 3] round-trips %s", st ? err.msg : "");
    if (st == CS_OK)
        cs_tensor_free(&back);
    cs_tensor_free(&t);

    write_text(tpath("junk.pb"), "\xff\xff\xff\xff this is not protobuf");
    st = cs_read_pb(tpath("junk.pb"), &back, &err);
    ok(st != CS_OK && has(&err, "junk.pb"), "pb garbage file fails naming the file: %s", err.msg);
}

/* ---- specs and normalisation options ---- */

static void test_spec_and_norm(void)
{
    cs_err err = {0};
    cs_tensor t;
    cs_status st;

    st = cs_data_read_spec("zip:/tmp/x", "data", &t, &err);
    expect_err("spec unknown kind", st, CS_ERR_USAGE, &err, "'zip'", "idx, npy, csv, pb");
    st = cs_data_read_spec("/tmp/x.idx", "labels", &t, &err);
    expect_err("spec without kind", st, CS_ERR_USAGE, &err, "--labels", "KIND:PATH");
    st = cs_data_read_spec("npy:", "data", &t, &err);
    expect_err("spec empty path", st, CS_ERR_USAGE, &err, "--data", "empty");

    char spec[600];
    snprintf(spec, sizeof spec, "csv:%s#label=2", tpath("plain.csv"));
    st = cs_data_read_spec(spec, "labels", &t, &err);
    ok(st == CS_OK && t.dtype == CS_DT_INT64 && t.ndim == 1 && t.dims[0] == 3,
       "spec csv:PATH#label=2 as labels gives that column %s", st ? err.msg : "");
    cs_tensor_free(&t);
    st = cs_data_read_spec(spec, "data", &t, &err);
    ok(st == CS_OK && t.ndim == 2 && t.dims[1] == 2,
       "spec csv:PATH#label=2 as data drops that column %s", st ? err.msg : "");
    cs_tensor_free(&t);
    snprintf(spec, sizeof spec, "csv:%s#sep=;", tpath("plain.csv"));
    st = cs_data_read_spec(spec, "data", &t, &err);
    expect_err("spec unknown csv option", st, CS_ERR_USAGE, &err, "#sep=;", "label=K");
    snprintf(spec, sizeof spec, "idx:%s", tpath("u8.idx.gz"));
    st = cs_data_read_spec(spec, "data", &t, &err);
    ok(st == CS_OK && t.dtype == CS_DT_UINT8 && t.dims[0] == 2, "spec idx:PATH reads IDX");
    cs_tensor_free(&t);

    cs_norm norm;
    cs_norm_init(&norm);
    ok(norm.scale == 1 && norm.n_mean == 0 && norm.n_std == 0, "norm init is identity");
    st = cs_norm_parse_scale(&norm, "1/255", &err);
    ok(st == CS_OK && norm.scale == 1.0 / 255.0, "--scale 1/255 is exactly 1.0/255.0");
    st = cs_norm_parse_scale(&norm, " 0.5 ", &err);
    ok(st == CS_OK && norm.scale == 0.5, "--scale ' 0.5 ' is 0.5");
    st = cs_norm_parse_scale(&norm, "abc", &err);
    expect_err("--scale abc", st, CS_ERR_USAGE, &err, "--scale", "'abc'");
    st = cs_norm_parse_scale(&norm, "1/0", &err);
    expect_err("--scale 1/0", st, CS_ERR_USAGE, &err, "--scale", "divides by zero");
    st = cs_norm_parse_scale(&norm, "1/", &err);
    expect_err("--scale 1/", st, CS_ERR_USAGE, &err, "--scale", "'1/'");
    st = cs_norm_parse_scale(&norm, "", &err);
    expect_err("--scale empty", st, CS_ERR_USAGE, &err, "--scale", "empty");
    st = cs_norm_parse_scale(&norm, "0.1,0.2", &err);
    expect_err("--scale list", st, CS_ERR_USAGE, &err, "--scale", "one value");
    ok(norm.scale == 0.5, "failed --scale parses leave the value alone");

    st = cs_norm_parse_mean(&norm, "0.485,0.456, 0.406", &err);
    ok(st == CS_OK && norm.n_mean == 3 && norm.mean[0] == 0.485 && norm.mean[2] == 0.406,
       "--mean with three values");
    st = cs_norm_parse_std(&norm, "0.5", &err);
    ok(st == CS_OK && norm.n_std == 1 && norm.std[0] == 0.5, "--std with one value");
    st = cs_norm_parse_std(&norm, "1/4,2", &err);
    ok(st == CS_OK && norm.n_std == 2 && norm.std[0] == 0.25 && norm.std[1] == 2,
       "--std with fractions in a list");
    st = cs_norm_parse_std(&norm, "0.2,0", &err);
    expect_err("--std zero", st, CS_ERR_USAGE, &err, "--std", "positive");
    st = cs_norm_parse_std(&norm, "-1", &err);
    expect_err("--std negative", st, CS_ERR_USAGE, &err, "--std", "positive");
    st = cs_norm_parse_mean(&norm, "0.1,,0.3", &err);
    expect_err("--mean empty item", st, CS_ERR_USAGE, &err, "--mean", "empty");
    st = cs_norm_parse_mean(&norm, "0.1,x", &err);
    expect_err("--mean non-number", st, CS_ERR_USAGE, &err, "--mean", "'x'");
    char many[400] = "";
    for (int i = 0; i <= CS_NORM_MAX_CHANNELS; i++)
        strcat(many, i ? ",1" : "1");
    st = cs_norm_parse_mean(&norm, many, &err);
    expect_err("--mean too many values", st, CS_ERR_USAGE, &err, "--mean", "more than");
}

/* ---- loading, checking, filling ---- */

static void write_idx_file(const char *path, int type, int ndim, const uint32_t *dims,
                           const void *data, size_t es)
{
    static unsigned char buf[65536];
    write_bytes(path, buf, make_idx(buf, type, ndim, dims, data, es));
}

static void test_load_and_fill(void)
{
    cs_err err = {0};
    cs_dataset ds;
    cs_status st;
    char dspec[600], lspec[600];

    /* 6 samples of [3, 2]: channels 3, 2 values each */
    uint8_t x[36];
    for (int i = 0; i < 36; i++)
        x[i] = (uint8_t)(i * 7);
    uint8_t y[6] = {3, 1, 4, 1, 5, 9};
    uint32_t dx[3] = {6, 3, 2}, dy[1] = {6}, dy5[1] = {5}, dy61[2] = {6, 1};
    write_idx_file(tpath("x.idx"), 0x08, 3, dx, x, 1);
    write_idx_file(tpath("y.idx"), 0x08, 1, dy, y, 1);
    write_idx_file(tpath("y5.idx"), 0x08, 1, dy5, y, 1);
    write_idx_file(tpath("y61.idx"), 0x08, 2, dy61, y, 1);
    snprintf(dspec, sizeof dspec, "idx:%s", tpath("x.idx"));

    snprintf(lspec, sizeof lspec, "idx:%s", tpath("y.idx"));
    st = cs_dataset_load(&ds, dspec, lspec, 0, &err);
    ok(st == CS_OK && ds.n == 6 && ds.has_labels && ds.int_labels &&
           cs_dataset_target_width(&ds) == 1 && cs_dataset_label(&ds, 5) == 9,
       "load idx data + uint8 labels: 6 samples, integer labels %s", st ? err.msg : "");
    double target;
    cs_dataset_target(&ds, 2, &target);
    ok(target == 4, "integer label as a target is itself");
    cs_dataset_free(&ds);

    st = cs_dataset_load(&ds, dspec, lspec, 4, &err);
    ok(st == CS_OK && ds.n == 4 && ds.x.dims[0] == 4 && ds.y.dims[0] == 4 &&
           cs_dataset_label(&ds, 3) == 1,
       "--samples 4 keeps the first 4 samples");
    cs_dataset_free(&ds);
    st = cs_dataset_load(&ds, dspec, lspec, 100, &err);
    ok(st == CS_OK && ds.n == 6, "--samples 100 over 6 samples uses all 6");
    cs_dataset_free(&ds);
    st = cs_dataset_load(&ds, dspec, NULL, 0, &err);
    ok(st == CS_OK && ds.n == 6 && !ds.has_labels && cs_dataset_target_width(&ds) == 0,
       "load without labels");
    cs_dataset_free(&ds);

    snprintf(lspec, sizeof lspec, "idx:%s", tpath("y61.idx"));
    st = cs_dataset_load(&ds, dspec, lspec, 0, &err);
    ok(st == CS_OK && ds.int_labels && ds.y.ndim == 1 && cs_dataset_label(&ds, 4) == 5,
       "labels [6, 1] are integer labels [6]");
    cs_dataset_free(&ds);

    snprintf(lspec, sizeof lspec, "idx:%s", tpath("y5.idx"));
    st = cs_dataset_load(&ds, dspec, lspec, 0, &err);
    expect_err("sample count mismatch", st, CS_ERR_FORMAT, &err, "6 samples", "has 5");
    ok(has(&err, "x.idx") && has(&err, "y5.idx"), "sample count mismatch names both files");
    ok(ds.x.data == NULL && ds.y.data == NULL, "failed load leaves the dataset empty");
    st = cs_dataset_load(&ds, dspec, lspec, 3, &err);
    expect_err("sample count mismatch with --samples 3", st, CS_ERR_FORMAT, &err, "6 samples",
               "has 5");

    /* real-valued targets [6, 2] from npy */
    double yr[12];
    for (int i = 0; i < 12; i++)
        yr[i] = i * 0.5 - 1;
    write_npy(tpath("yr.npy"), 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (6, 2), }", yr,
              sizeof yr);
    snprintf(lspec, sizeof lspec, "npy:%s", tpath("yr.npy"));
    st = cs_dataset_load(&ds, dspec, lspec, 0, &err);
    double row[2] = {0, 0};
    if (st == CS_OK)
        cs_dataset_target(&ds, 3, row);
    ok(st == CS_OK && !ds.int_labels && cs_dataset_target_width(&ds) == 2 && row[0] == yr[6] &&
           row[1] == yr[7],
       "float labels [6, 2] are real targets of width 2 %s", st ? err.msg : "");
    cs_dataset_free(&ds);

    /* shape checks against a model input */
    st = cs_dataset_load(&ds, dspec, NULL, 0, &err);
    if (st) {
        ok(0, "reload: %s", err.msg);
        return;
    }
    cs_norm norm;
    cs_norm_init(&norm);
    cs_tensor in = {0};
    int64_t in_ok[3] = {2, 3, 2}, in_flat[2] = {1, 6}, in_bad[4] = {1, 1, 28, 28};
    cs_tensor_set_shape(&in, CS_DT_FLOAT, 3, in_ok);
    ok(cs_dataset_check_input(&ds, &in, &norm, &err) == CS_OK,
       "samples [3, 2] fit input [N, 3, 2]");
    cs_tensor_set_shape(&in, CS_DT_FLOAT, 2, in_flat);
    ok(cs_dataset_check_input(&ds, &in, &norm, &err) == CS_OK,
       "samples [3, 2] fit input [N, 6] (same count)");
    cs_tensor_set_shape(&in, CS_DT_FLOAT, 4, in_bad);
    st = cs_dataset_check_input(&ds, &in, &norm, &err);
    expect_err("shape does not fit the model input", st, CS_ERR_SHAPE, &err,
               "sample shape [3, 2] (6 values)", "model input [N, 1, 28, 28] (784 values)");
    cs_tensor_set_shape(&in, CS_DT_INT32, 3, in_ok);
    st = cs_dataset_check_input(&ds, &in, &norm, &err);
    expect_err("int32 model input", st, CS_ERR_UNSUPPORTED, &err, "int32", "[N, 3, 2]");
    /* an int64 input takes token ids (nn.Embedding): integers copied exactly */
    cs_tensor_set_shape(&in, CS_DT_INT64, 3, in_ok);
    ok(cs_dataset_check_input(&ds, &in, &norm, &err) == CS_OK,
       "uint8 samples fit an int64 (token id) input [N, 3, 2]");
    cs_tensor ids = {0};
    cs_tensor_set_shape(&ids, CS_DT_INT64, 3, in_ok);
    int same = cs_tensor_alloc(&ids, &err) == CS_OK &&
               cs_dataset_fill_inputs(&ds, 1, &norm, &ids, &err) == CS_OK;
    for (int k = 0; same && k < 12; k++)
        same = ((const int64_t *)ids.data)[k] == (int64_t)x[6 + k];
    ok(same, "int64 input: samples 1..2 are the stored integers");
    cs_tensor_free(&ids);
    norm.scale = 0.5;
    st = cs_dataset_check_input(&ds, &in, &norm, &err);
    expect_err("int64 input with --scale", st, CS_ERR_USAGE, &err, "int64 ids", "--scale");
    norm.scale = 1.0;
    if (cs_norm_parse_mean(&norm, "1,2", &err) != CS_OK)
        diag("parse: %s", err.msg);
    cs_tensor_set_shape(&in, CS_DT_FLOAT, 3, in_ok);
    st = cs_dataset_check_input(&ds, &in, &norm, &err);
    expect_err("two means for three channels", st, CS_ERR_SHAPE, &err, "--mean has 2 values",
               "3 channels");

    /* per-channel normalisation into float32: samples 2..3 */
    cs_norm_init(&norm);
    if (cs_norm_parse_scale(&norm, "1/255", &err) ||
        cs_norm_parse_mean(&norm, "0.1,0.2,0.3", &err) ||
        cs_norm_parse_std(&norm, "0.5,0.25,2", &err))
        diag("parse: %s", err.msg);
    ok(cs_dataset_check_input(&ds, &in, &norm, &err) == CS_OK,
       "three means for three channels fit");
    cs_tensor dst = {0};
    int64_t bd[3] = {2, 3, 2};
    cs_tensor_set_shape(&dst, CS_DT_FLOAT, 3, bd);
    if (cs_tensor_alloc(&dst, &err))
        return;
    st = cs_dataset_fill_inputs(&ds, 2, &norm, &dst, &err);
    const double mean[3] = {0.1, 0.2, 0.3}, sd[3] = {0.5, 0.25, 2};
    int good = st == CS_OK;
    for (int b = 0; good && b < 2; b++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 2; i++) {
                int k = (b * 3 + c) * 2 + i;
                double want = (x[2 * 6 + k] / 255.0 - mean[c]) / sd[c];
                if (!tap_close(((float *)dst.data)[k], want, 1e-6, 1e-7)) {
                    diag("element %d: got %g want %g", k, ((float *)dst.data)[k], want);
                    good = 0;
                }
            }
    ok(good, "per-channel (x/255 - mean[c]) / std[c] into float32, samples 2..3 %s",
       st ? err.msg : "");
    st = cs_dataset_fill_inputs(&ds, 5, &norm, &dst, &err);
    ok(st != CS_OK && has(&err, "outside"), "batch past the last sample is refused: %s", err.msg);
    cs_tensor_free(&dst);

    /* one mean/std over everything, into float64, batch laid out [2, 6] */
    cs_norm_init(&norm);
    if (cs_norm_parse_mean(&norm, "10", &err) || cs_norm_parse_std(&norm, "4", &err))
        diag("parse: %s", err.msg);
    cs_tensor_set_shape(&dst, CS_DT_DOUBLE, 2, in_flat);
    dst.dims[0] = 3;
    if (cs_tensor_alloc(&dst, &err))
        return;
    st = cs_dataset_fill_inputs(&ds, 3, &norm, &dst, &err);
    good = st == CS_OK;
    for (int k = 0; good && k < 18; k++)
        good = tap_close(((double *)dst.data)[k], (x[18 + k] - 10.0) / 4.0, 1e-14, 0);
    ok(good, "scalar mean/std into float64 [3, 6], samples 3..5 %s", st ? err.msg : "");
    st = cs_dataset_fill_inputs(&ds, 0, NULL, &dst, &err);
    good = st == CS_OK;
    for (int k = 0; good && k < 18; k++)
        good = ((double *)dst.data)[k] == x[k];
    ok(good, "no normalisation copies the raw values");
    cs_tensor_free(&dst);
    cs_dataset_free(&ds);

    /* other source types: int16 IDX and float32 npy into float32 */
    int16_t s16[4] = {-300, -1, 0, 1200};
    uint32_t d41[2] = {4, 1};
    write_idx_file(tpath("s16.idx"), 0x0B, 2, d41, s16, 2);
    snprintf(dspec, sizeof dspec, "idx:%s", tpath("s16.idx"));
    st = cs_dataset_load(&ds, dspec, NULL, 0, &err);
    cs_norm_init(&norm);
    norm.scale = 0.5;
    int64_t d41i[2] = {4, 1};
    cs_tensor_set_shape(&dst, CS_DT_FLOAT, 2, d41i);
    if (st == CS_OK && cs_tensor_alloc(&dst, &err) == CS_OK)
        st = cs_dataset_fill_inputs(&ds, 0, &norm, &dst, &err);
    ok(st == CS_OK && ((float *)dst.data)[0] == -150.0f && ((float *)dst.data)[3] == 600.0f,
       "int16 samples scaled by 0.5 into float32 %s", st ? err.msg : "");
    cs_tensor_free(&dst);
    cs_dataset_free(&ds);

    float f4[4] = {0.5f, -0.25f, 8.0f, 1e-3f};
    write_npy(tpath("xf.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", f4,
              sizeof f4);
    snprintf(dspec, sizeof dspec, "npy:%s", tpath("xf.npy"));
    st = cs_dataset_load(&ds, dspec, NULL, 0, &err);
    int64_t d22[2] = {2, 2};
    cs_tensor_set_shape(&dst, CS_DT_FLOAT, 2, d22);
    if (st == CS_OK && cs_tensor_alloc(&dst, &err) == CS_OK)
        st = cs_dataset_fill_inputs(&ds, 0, NULL, &dst, &err);
    ok(st == CS_OK && memcmp(dst.data, f4, sizeof f4) == 0, "float32 samples pass through exactly");
    cs_tensor_free(&dst);
    cs_dataset_free(&ds);

    /* csv labels with one column file and data file */
    write_text(tpath("lab.csv"), "label\n1\n0\n2\n");
    write_text(tpath("dat.csv"), "0.1,0.2\n0.3,0.4\n0.5,0.6\n");
    snprintf(dspec, sizeof dspec, "csv:%s", tpath("dat.csv"));
    snprintf(lspec, sizeof lspec, "csv:%s", tpath("lab.csv"));
    st = cs_dataset_load(&ds, dspec, lspec, 0, &err);
    ok(st == CS_OK && ds.n == 3 && ds.int_labels && cs_dataset_label(&ds, 2) == 2,
       "csv data + one-column csv labels %s", st ? err.msg : "");
    cs_dataset_free(&ds);

    write_idx_file(tpath("empty.idx"), 0x08, 1, (uint32_t[]){0}, x, 1);
    snprintf(dspec, sizeof dspec, "idx:%s", tpath("empty.idx"));
    st = cs_dataset_load(&ds, dspec, NULL, 0, &err);
    expect_err("data with no samples", st, CS_ERR_FORMAT, &err, "empty.idx", "no samples");
    snprintf(dspec, sizeof dspec, "idx:%s", tpath("x.idx"));
    st = cs_dataset_load(&ds, dspec, NULL, -1, &err);
    expect_err("negative --samples", st, CS_ERR_USAGE, &err, "--samples", "-1");
}

/* ---- the real Fashion-MNIST ---- */

static void test_fashion_mnist(void)
{
    const char *dir = test_env("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist");
    char images[1024], labels[1024], probe[1024];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", dir);
    if (access(probe, R_OK) != 0) {
        skip("Fashion-MNIST not found at %s (set FASHION_MNIST_DIR)", dir);
        skip("Fashion-MNIST not found");
        skip("Fashion-MNIST not found");
        return;
    }
    snprintf(images, sizeof images, "idx:%s/train-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "idx:%s/train-labels-idx1-ubyte.gz", dir);
    cs_err err = {0};
    cs_dataset ds;
    cs_status st = cs_dataset_load(&ds, images, labels, 0, &err);
    int64_t d[3] = {60000, 28, 28};
    ok(st == CS_OK && ds.n == 60000 && ds.x.dtype == CS_DT_UINT8 && dims_are(&ds.x, 3, d) &&
           ds.int_labels,
       "Fashion-MNIST train: 60000 x 28 x 28 uint8 with integer labels %s", st ? err.msg : "");
    if (st != CS_OK) {
        skip("load failed");
        skip("load failed");
        return;
    }
    int64_t counts[10] = {0};
    int in_range = 1;
    for (int64_t i = 0; i < ds.n; i++) {
        int64_t l = cs_dataset_label(&ds, i);
        if (l < 0 || l > 9)
            in_range = 0;
        else
            counts[l]++;
    }
    int balanced = 1;
    for (int c = 0; c < 10; c++)
        balanced &= counts[c] == 6000;
    /* Fashion-MNIST's training set has 6000 images per class; sample 0 is
     * an ankle boot (class 9). */
    ok(in_range && balanced && cs_dataset_label(&ds, 0) == 9,
       "Fashion-MNIST labels are 0..9, 6000 per class, first is 9");
    const uint8_t *px = ds.x.data;
    int64_t nonzero = 0, max = 0;
    for (int64_t i = 0; i < 784; i++) {
        nonzero += px[i] != 0;
        max = px[i] > max ? px[i] : max;
    }
    ok(nonzero > 100 && max == 255, "first image has ink (%lld lit pixels, max %lld)",
       (long long)nonzero, (long long)max);
    cs_dataset_free(&ds);
}

int main(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/cs-test-data-XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        printf("Bail out! cannot make a temporary folder\n");
        return 1;
    }
    test_idx();
    test_npy();
    test_csv();
    test_pb();
    test_spec_and_norm();
    test_load_and_fill();
    test_fashion_mnist();
    remove_tmp_dir();
    return tap_done();
}
