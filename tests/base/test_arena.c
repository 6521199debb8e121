/* src/base: the arena allocator and the status / error-message helpers. */
#include <stdint.h>
#include <string.h>

#include "../tap.h"
#include "base/arena.h"
#include "base/status.h"

static int aligned64(const void *p)
{
    return p && ((uintptr_t)p % 64) == 0;
}

static int all_bytes(const void *p, unsigned char v, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v)
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- arena */

static void test_arena_basic(void)
{
    cs_arena a;
    cs_arena_init(&a, 0);
    ok(a.chunk_bytes == (size_t)1 << 20, "chunk_bytes 0 picks the 1 MiB default (got %zu)",
       a.chunk_bytes);
    ok(a.head == NULL && a.used_bytes == 0, "a new arena holds no chunk and has used nothing");
    cs_arena_free(&a);

    cs_arena_init(&a, 1024);
    ok(a.chunk_bytes == 1024, "chunk_bytes is kept as given");

    /* Odd sizes: every pointer is 64-aligned and the blocks do not overlap. */
    static const size_t sizes[] = {1, 3, 7, 63, 64, 65, 100, 127, 129, 200, 33, 5};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    unsigned char *p[NS];
    int all_aligned = 1, all_zero = 1;
    size_t requested = 0;
    for (int i = 0; i < NS; i++) {
        p[i] = cs_arena_alloc(&a, sizes[i]);
        requested += sizes[i];
        all_aligned &= aligned64(p[i]);
        if (p[i]) {
            all_zero &= all_bytes(p[i], 0, sizes[i]);
            memset(p[i], 0x40 + i, sizes[i]); /* fill each block with its own byte */
        }
    }
    ok(all_aligned, "%d allocations of odd sizes are all non-NULL and 64-byte aligned", NS);
    ok(all_zero, "fresh allocations are zeroed");
    int intact = 1;
    for (int i = 0; i < NS; i++)
        intact &= p[i] && all_bytes(p[i], (unsigned char)(0x40 + i), sizes[i]);
    ok(intact, "writing each block to its full size leaves every other block intact");
    ok(a.used_bytes >= requested, "used_bytes %zu counts at least the %zu bytes asked for",
       a.used_bytes, requested);
    ok(a.used_bytes % 64 == 0, "used_bytes is a whole number of 64-byte units (%zu)",
       a.used_bytes);

    /* Zero-byte requests still give a usable, distinct pointer (NULL means failure). */
    void *z1 = cs_arena_alloc(&a, 0), *z2 = cs_arena_alloc(&a, 0);
    ok(aligned64(z1) && aligned64(z2) && z1 != z2,
       "a zero-byte allocation returns a distinct aligned pointer, not NULL");

    /* Larger than the chunk: a chunk of its own. */
    size_t used_before = a.used_bytes;
    unsigned char *big = cs_arena_alloc(&a, 5000);
    ok(aligned64(big), "an allocation of 5000 bytes with 1024-byte chunks succeeds, aligned");
    ok(big && all_bytes(big, 0, 5000), "the oversized allocation is zeroed over all 5000 bytes");
    if (big)
        memset(big, 0x7e, 5000);
    intact = 1;
    for (int i = 0; i < NS; i++)
        intact &= p[i] && all_bytes(p[i], (unsigned char)(0x40 + i), sizes[i]);
    ok(intact, "filling the oversized block does not touch the earlier blocks");
    ok(a.used_bytes - used_before >= 5000, "used_bytes grows by at least 5000 (%zu)",
       a.used_bytes - used_before);
    /* Small allocations keep working after the oversized one. */
    unsigned char *after = cs_arena_alloc(&a, 16);
    ok(aligned64(after) && all_bytes(after, 0, 16) && big && all_bytes(big, 0x7e, 5000),
       "a small allocation after the oversized one is fresh and leaves it intact");

    /* An absurd size fails cleanly. */
    ok(cs_arena_alloc(&a, SIZE_MAX) == NULL, "allocating SIZE_MAX bytes returns NULL");
    ok(cs_arena_alloc(&a, SIZE_MAX - 10) == NULL, "allocating SIZE_MAX - 10 bytes returns NULL");
    void *still = cs_arena_alloc(&a, 8);
    ok(aligned64(still), "the arena still works after a failed allocation");

    cs_arena_free(&a);
    ok(a.head == NULL && a.used_bytes == 0, "cs_arena_free leaves no chunk and nothing used");
    /* It can be initialised and used again. */
    cs_arena_init(&a, 256);
    char *again = cs_arena_alloc(&a, 100);
    ok(aligned64(again), "an arena can be initialised again after cs_arena_free");
    cs_arena_free(&a);
}

static void test_arena_reset(void)
{
    /* 16 blocks of 128 bytes fill exactly two 1024-byte chunks, so after the
     * reset the same requests must land on exactly the same slots. */
    enum { N = 16, SZ = 128 };
    cs_arena a;
    cs_arena_init(&a, 1024);
    void *first[N];
    int ok_all = 1;
    for (int i = 0; i < N; i++) {
        first[i] = cs_arena_alloc(&a, SZ);
        ok_all &= first[i] != NULL;
        if (first[i])
            memset(first[i], 0xa5, SZ);
    }
    ok(ok_all, "%d allocations of %d bytes over two 1024-byte chunks succeed", N, SZ);
    ok(a.used_bytes == (size_t)N * SZ, "used_bytes before reset is %d (got %zu)", N * SZ,
       a.used_bytes);

    cs_arena_reset(&a);
    ok(a.used_bytes == 0, "cs_arena_reset sets used_bytes to 0");
    ok(a.head != NULL, "cs_arena_reset keeps the chunks");

    /* The same requests again must come out of the kept chunks: every pointer
     * is one handed out before the reset (no new memory), none twice. */
    void *second[N];
    int reused = 1, zeroed = 1, distinct = 1;
    for (int i = 0; i < N; i++) {
        second[i] = cs_arena_alloc(&a, SZ);
        int found = 0;
        for (int j = 0; j < N; j++)
            found |= second[i] == first[j];
        reused &= found;
        zeroed &= second[i] && all_bytes(second[i], 0, SZ);
        for (int j = 0; j < i; j++)
            distinct &= second[i] != second[j];
    }
    ok(reused, "after reset the same %d allocations reuse the earlier pointers", N);
    ok(distinct, "after reset no pointer is handed out twice");
    ok(zeroed, "memory reused after reset is zeroed again (it held 0xa5)");
    ok(a.used_bytes == (size_t)N * SZ, "used_bytes counts again after reset (%zu)", a.used_bytes);

    /* An oversized block is kept too: only its chunk has room for the same
     * large request after a reset. */
    cs_arena_reset(&a);
    void *big = cs_arena_alloc(&a, 4000);
    cs_arena_reset(&a);
    void *big2 = cs_arena_alloc(&a, 4000);
    ok(big && big2 == big, "a 4000-byte request after reset reuses the oversized chunk");
    cs_arena_free(&a);
}

static void test_arena_strdup(void)
{
    cs_arena a;
    cs_arena_init(&a, 128);
    const char *src = "fc1.weight";
    char *d = cs_arena_strdup(&a, src);
    ok(d && strcmp(d, src) == 0, "cs_arena_strdup copies the string");
    ok(d && d != src, "the copy is a different buffer");
    ok(aligned64(d), "the copy is 64-byte aligned arena memory");
    char *e = cs_arena_strdup(&a, "");
    ok(e && e[0] == '\0' && e != d, "an empty string duplicates to an empty string");
    char longs[600];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    char *l = cs_arena_strdup(&a, longs);
    ok(l && strlen(l) == sizeof longs - 1 && strcmp(l, longs) == 0,
       "a 599-character string (longer than the 128-byte chunk) is copied whole");
    ok(d && strcmp(d, src) == 0, "the first copy is unchanged by later ones");
    cs_arena_free(&a);
}

/* ---------------------------------------------------------------- status */

/* An error with guard bytes behind it, to see writes past msg. */
struct guarded_err {
    cs_err e;
    unsigned char guard[64];
};

static void test_fail(void)
{
    cs_err err;
    memset(&err, 0, sizeof err);
    cs_status st = cs_fail(&err, CS_ERR_FORMAT, "bad %s at byte %d (%.2f)", "tag", 17, 0.5);
    ok(st == CS_ERR_FORMAT, "cs_fail returns the code it was given");
    ok(err.code == CS_ERR_FORMAT, "cs_fail stores the code");
    ok(strcmp(err.msg, "bad tag at byte 17 (0.50)") == 0, "cs_fail formats the message: '%s'",
       err.msg);
    ok(cs_fail(NULL, CS_ERR_IO, "nobody reads %d", 1) == CS_ERR_IO,
       "cs_fail with a NULL err still returns the code");

    cs_status st2 = cs_err_prefix(&err, "model %s", "m.onnx");
    ok(st2 == CS_ERR_FORMAT, "cs_err_prefix returns the stored code");
    ok(strcmp(err.msg, "model m.onnx: bad tag at byte 17 (0.50)") == 0,
       "cs_err_prefix writes 'context: message': '%s'", err.msg);
    (void)cs_err_prefix(&err, "outer");
    ok(strcmp(err.msg, "outer: model m.onnx: bad tag at byte 17 (0.50)") == 0,
       "prefixes nest outermost first");
    ok(cs_err_prefix(NULL, "x") != CS_OK, "cs_err_prefix on a NULL err returns an error code");

    cs_err_clear(&err);
    ok(err.code == CS_OK && err.msg[0] == '\0', "cs_err_clear resets code and message");
    cs_err_clear(NULL); /* must not crash */
    ok(1, "cs_err_clear(NULL) is harmless");
}

static void test_truncation(void)
{
    char longs[3 * CS_ERR_MSG_MAX];
    memset(longs, 'm', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';

    struct guarded_err g;
    memset(&g, 0, sizeof g);
    memset(g.guard, 0xcd, sizeof g.guard);
    (void)cs_fail(&g.e, CS_ERR_RUNTIME, "%s", longs);
    ok(strlen(g.e.msg) == CS_ERR_MSG_MAX - 1,
       "a %zu-character message is cut to CS_ERR_MSG_MAX - 1 = %d characters",
       sizeof longs - 1, CS_ERR_MSG_MAX - 1);
    ok(all_bytes(g.guard, 0xcd, sizeof g.guard), "cs_fail writes nothing past msg");
    ok(g.e.msg[0] == 'm' && g.e.msg[CS_ERR_MSG_MAX - 2] == 'm',
       "the kept part is the start of the message");

    /* Prefix on a full message: the prefix survives, the tail is cut. */
    (void)cs_err_prefix(&g.e, "ctx");
    ok(strlen(g.e.msg) == CS_ERR_MSG_MAX - 1, "prefixing a full message keeps it at %d characters",
       CS_ERR_MSG_MAX - 1);
    ok(strncmp(g.e.msg, "ctx: mmm", 8) == 0, "the prefix comes first after truncation");
    ok(all_bytes(g.guard, 0xcd, sizeof g.guard), "cs_err_prefix writes nothing past msg");
    ok(g.e.code == CS_ERR_RUNTIME, "cs_err_prefix keeps the code");

    /* A prefix longer than the whole buffer. */
    (void)cs_fail(&g.e, CS_ERR_IO, "short");
    (void)cs_err_prefix(&g.e, "%s", longs);
    ok(strlen(g.e.msg) == CS_ERR_MSG_MAX - 1 && g.e.msg[0] == 'm',
       "a prefix longer than CS_ERR_MSG_MAX fills the buffer and is cut");
    ok(all_bytes(g.guard, 0xcd, sizeof g.guard), "an oversized prefix writes nothing past msg");

    /* Exactly CS_ERR_MSG_MAX - 1 characters fit without loss. */
    char fit[CS_ERR_MSG_MAX];
    memset(fit, 'f', sizeof fit - 1);
    fit[sizeof fit - 1] = '\0';
    (void)cs_fail(&g.e, CS_ERR_IO, "%s", fit);
    ok(strcmp(g.e.msg, fit) == 0, "a message of exactly CS_ERR_MSG_MAX - 1 characters is kept whole");
}

static void test_status_codes(void)
{
    static const struct {
        cs_status s;
        const char *name;
        int exit_code;
    } want[] = {
        {CS_OK, "ok", 0},
        {CS_ERR_IO, "io", 2},
        {CS_ERR_FORMAT, "format", 2},
        {CS_ERR_UNSUPPORTED, "unsupported", 2},
        {CS_ERR_SHAPE, "shape", 2},
        {CS_ERR_USAGE, "usage", 2},
        {CS_ERR_NOMEM, "nomem", 1},
        {CS_ERR_RUNTIME, "runtime", 1},
    };
    enum { NW = sizeof want / sizeof want[0] };
    ok((int)NW == (int)CS_STATUS_COUNT, "the test covers all %d status codes", (int)CS_STATUS_COUNT);
    ok(CS_OK == 0, "CS_OK is 0");
    for (int i = 0; i < NW; i++) {
        const char *n = cs_status_name(want[i].s);
        ok(n && strcmp(n, want[i].name) == 0, "cs_status_name(%d) is '%s' (got '%s')",
           (int)want[i].s, want[i].name, n ? n : "(null)");
        ok(cs_status_exit_code(want[i].s) == want[i].exit_code, "exit code of %s is %d (got %d)",
           want[i].name, want[i].exit_code, cs_status_exit_code(want[i].s));
    }
    int distinct = 1;
    for (int i = 0; i < NW; i++)
        for (int j = 0; j < i; j++)
            distinct &= strcmp(cs_status_name(want[i].s), cs_status_name(want[j].s)) != 0;
    ok(distinct, "status names are distinct");
    const char *bad = cs_status_name(CS_STATUS_COUNT);
    const char *neg = cs_status_name((cs_status)-1);
    int clash = 0;
    for (int i = 0; i < NW; i++)
        clash |= (bad && strcmp(bad, want[i].name) == 0) || (neg && strcmp(neg, want[i].name) == 0);
    ok(bad && neg && !clash, "out-of-range codes get a name that is none of the real ones ('%s')",
       bad ? bad : "(null)");
    ok(cs_status_exit_code(CS_STATUS_COUNT) != 0, "an out-of-range code does not map to exit 0");
}

static void test_mul_overflow(void)
{
    long long r = 0;
    ok(cs_mul_overflow_i64(3, 7, &r) == 0 && r == 21, "3 * 7 = 21 without overflow");
    ok(cs_mul_overflow_i64(1LL << 31, 1LL << 31, &r) == 0 && r == 1LL << 62,
       "2^31 * 2^31 = 2^62 fits");
    ok(cs_mul_overflow_i64(1LL << 32, 1LL << 31, &r) != 0, "2^32 * 2^31 overflows");
    ok(cs_mul_overflow_i64(INT64_MAX, 2, &r) != 0, "INT64_MAX * 2 overflows");
    ok(cs_mul_overflow_i64(-1, INT64_MIN, &r) != 0, "-1 * INT64_MIN overflows");
    ok(cs_mul_overflow_i64(0, INT64_MAX, &r) == 0 && r == 0, "0 * INT64_MAX = 0");
}

int main(void)
{
    test_arena_basic();
    test_arena_reset();
    test_arena_strdup();
    test_fail();
    test_truncation();
    test_status_codes();
    test_mul_overflow();
    return tap_done();
}
