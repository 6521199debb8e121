/* src/store and src/base/sha256: the result database and the model hash.
 *
 * Files live in a mkdtemp directory under /tmp, removed at the end.  Reads
 * that check what was stored go through a separate sqlite3 connection, so
 * they do not trust the store's own code. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../tap.h"
#include "../test_util.h"
#include "base/sha256.h"
#include "base/status.h"
#include "store/rows.h"
#include "store/store.h"

static char tmpdir[64];

static const char *tmp_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
    return buf;
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    int good = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && good;
}

/* Whole file into a malloc'd buffer (NULL when unreadable). */
static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    *n = len;
    return buf;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* First column of the first row of sql on a fresh connection to path, as
 * text ("NULL" for NULL, "" for no row, "ERROR: ..." on failure). */
static const char *q(const char *path, const char *sql)
{
    static char out[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    out[0] = '\0';
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(out, sizeof out, "ERROR: %s", db ? sqlite3_errmsg(db) : "open");
    } else {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(out, sizeof out, "%s", t ? (const char *)t : "NULL");
        } else if (rc != SQLITE_DONE) {
            snprintf(out, sizeof out, "ERROR: %s", sqlite3_errmsg(db));
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static long long qi(const char *path, const char *sql)
{
    const char *t = q(path, sql);
    if (!*t || strncmp(t, "ERROR", 5) == 0 || strcmp(t, "NULL") == 0) {
        diag("query '%s' gave '%s'", sql, t);
        return -999999;
    }
    return atoll(t);
}

static double qd(const char *path, const char *sql)
{
    const char *t = q(path, sql);
    if (!*t || strncmp(t, "ERROR", 5) == 0 || strcmp(t, "NULL") == 0)
        return NAN;
    return atof(t);
}

/* Run a statement on a fresh read-write connection (to set up files). */
static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK;
}

/* cs_store_exec callback: the first column of the first row. */
typedef struct first_cell {
    int rows;
    char text[256];
} first_cell;

static int first_cell_cb(void *ctx, int ncol, char **vals, char **names)
{
    first_cell *c = ctx;
    if (c->rows++ == 0)
        snprintf(c->text, sizeof c->text, "%s", ncol > 0 && vals[0] ? vals[0] : "NULL");
    return 0;
}

static const char *store_q(cs_store *s, const char *sql, int *rows)
{
    static first_cell c;
    cs_err err;
    memset(&c, 0, sizeof c);
    if (cs_store_exec(s, sql, first_cell_cb, &c, &err) != CS_OK)
        snprintf(c.text, sizeof c.text, "ERROR: %s", err.msg);
    if (rows)
        *rows = c.rows;
    return c.text;
}

static int contains(const char *hay, const char *needle)
{
    return hay && needle && strstr(hay, needle) != NULL;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* ------------------------------------------------------------- sha256 */

static void hex_of(const void *data, size_t n, char hex[65])
{
    cs_sha256 c;
    unsigned char d[CS_SHA256_DIGEST_BYTES];
    cs_sha256_init(&c);
    cs_sha256_update(&c, data, n);
    cs_sha256_final(&c, d);
    cs_sha256_hex(d, hex);
}

static void test_sha256(void)
{
    /* FIPS 180-4 examples (NIST "SHA256.pdf" / FIPS 180-2 appendix B). */
    static const struct {
        const char *msg, *hex, *what;
    } vec[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "'abc'"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "empty"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", "448-bit"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
         "klmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1", "896-bit"},
    };
    char hex[65];
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        hex_of(vec[i].msg, strlen(vec[i].msg), hex);
        ok(strcmp(hex, vec[i].hex) == 0, "sha256 of the %s vector (got %s)", vec[i].what, hex);
    }

    /* One million 'a', fed in uneven pieces across block boundaries. */
    cs_sha256 c;
    unsigned char d[CS_SHA256_DIGEST_BYTES];
    char as[1024];
    memset(as, 'a', sizeof as);
    cs_sha256_init(&c);
    size_t left = 1000000, piece = 1;
    while (left) {
        size_t n = piece < left ? piece : left;
        cs_sha256_update(&c, as, n);
        left -= n;
        piece = piece % 997 + 13;
    }
    cs_sha256_final(&c, d);
    cs_sha256_hex(d, hex);
    ok(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
       "sha256 of one million 'a' in uneven pieces (got %s)", hex);

    /* Every split of the 448-bit message (55/56/64 bytes straddle padding). */
    const char *m = vec[2].msg;
    size_t mn = strlen(m);
    int all = 1;
    for (size_t cut = 0; cut <= mn; cut++) {
        cs_sha256_init(&c);
        cs_sha256_update(&c, m, cut);
        cs_sha256_update(&c, m + cut, mn - cut);
        cs_sha256_final(&c, d);
        cs_sha256_hex(d, hex);
        all &= strcmp(hex, vec[2].hex) == 0;
    }
    ok(all, "sha256 is the same for every split of the input into two updates");

    /* Lengths 0..130 hashed whole and byte by byte agree (padding edges). */
    unsigned char buf[130];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    all = 1;
    for (size_t n = 0; n <= sizeof buf; n++) {
        char h1[65], h2[65];
        hex_of(buf, n, h1);
        cs_sha256_init(&c);
        for (size_t i = 0; i < n; i++)
            cs_sha256_update(&c, buf + i, 1);
        cs_sha256_final(&c, d);
        cs_sha256_hex(d, h2);
        all &= strcmp(h1, h2) == 0;
    }
    ok(all, "sha256 of lengths 0..130 whole equals byte by byte");

    /* A file, against the system's sha256sum. */
    char path[256];
    tmp_path(path, sizeof path, "hash me.bin");
    size_t fn = 200003;
    unsigned char *fb = malloc(fn);
    uint32_t x = 12345;
    for (size_t i = 0; i < fn; i++) {
        x = x * 1664525u + 1013904223u;
        fb[i] = (unsigned char)(x >> 24);
    }
    int wrote = fb && write_file(path, fb, fn);
    free(fb);
    ok(wrote, "wrote a %zu-byte file to hash", fn);
    cs_err err;
    char fhex[65];
    cs_status st = cs_sha256_file(path, fhex, &err);
    ok(st == CS_OK && strlen(fhex) == 64, "cs_sha256_file hashes a file");
    char cmd[512], line[256] = "";
    snprintf(cmd, sizeof cmd, "sha256sum '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    int have = p && fgets(line, sizeof line, p) != NULL;
    if (p)
        pclose(p);
    if (have && strlen(line) >= 64)
        ok(strncmp(line, fhex, 64) == 0, "cs_sha256_file agrees with sha256sum (%.64s)", line);
    else
        skip("sha256sum is not available");

    st = cs_sha256_file(tmpdir, fhex, &err);
    ok(st == CS_ERR_IO && contains(err.msg, tmpdir), "hashing a directory is an I/O error naming it: %s",
       err.msg);
    tmp_path(path, sizeof path, "absent.onnx");
    st = cs_sha256_file(path, fhex, &err);
    ok(st == CS_ERR_IO && contains(err.msg, path), "hashing a missing file is an I/O error naming it: %s",
       err.msg);
}

/* ------------------------------------------------------ store: schema */

static void test_schema_text(void)
{
    char path[1024];
    size_t n = 0;
    unsigned char *text = read_all(test_src_path(path, sizeof path, "schemas/store.sql"), &n);
    if (!text) {
        skip("schemas/store.sql not found from top_srcdir");
        return;
    }
    ok(strlen(cs_store_schema_sql) == n && memcmp(text, cs_store_schema_sql, n) == 0,
       "the compiled-in schema is schemas/store.sql byte for byte (%zu bytes)", n);
    free(text);
}

static cs_run_info run_info(const char *model)
{
    cs_run_info info = {
        .kind = "analyze",
        .model_path = model,
        .model_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        .data = "idx:train-images idx:train-labels",
        .loss = "ce",
        .argv = "curvscope analyze m.onnx",
        .version = NULL,
        .n_samples = 64,
    };
    return info;
}

static void test_new_database(const char *path)
{
    cs_store *s = NULL;
    cs_err err;
    cs_status st = cs_store_open(path, &s, &err);
    if (!ok(st == CS_OK && s, "open creates a new database (%s)", st ? err.msg : "ok"))
        return;
    ok(qi(path, "PRAGMA user_version") == CS_STORE_SCHEMA_VERSION,
       "user_version is the schema version %d", CS_STORE_SCHEMA_VERSION);
    ok(qi(path, "PRAGMA application_id") == CS_STORE_APPLICATION_ID,
       "application_id marks a curvscope database");
    ok(strcmp(q(path, "PRAGMA journal_mode"), "wal") == 0, "the journal is WAL (got %s)",
       q(path, "PRAGMA journal_mode"));
    ok(strcmp(store_q(s, "PRAGMA foreign_keys", NULL), "1") == 0,
       "foreign keys are on in the store's connection");
    static const char *const tables[] = {
        "runs", "layers", "params", "curvature", "eigenvalues", "density", "importance",
        "step_diagnostics", "finetune_steps", "finetune_evals", "conventions", "repr_comparison",
        "kfac_factors", "param_parts",
    };
    int all = 1;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'",
                 tables[i]);
        if (qi(path, sql) != 1) {
            diag("table %s missing", tables[i]);
            all = 0;
        }
    }
    ok(all, "all %zu tables exist", sizeof tables / sizeof tables[0]);
    ok(qi(path, "SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name IN ("
                "'v_layer_curvature', 'v_layers_by_lambda_max', 'v_network_summary', "
                "'v_latest_run', 'v_repr_error')") == 5,
       "the five views exist");
    /* The core column names of doc/design.md §4, so users' queries keep working. */
    ok(strncmp(q(path, "SELECT id, kind, model_path, model_sha256, data, n_samples, loss, argv, "
                       "version, status, started_at, finished_at, seconds, peak_rss_bytes, error "
                       "FROM runs"), "ERROR", 5) != 0 &&
           strncmp(q(path, "SELECT run_id, layer_id, curvature, repr, method, dim, trace, "
                           "trace_stderr, frobenius, lambda_max, lambda_min, condition, "
                           "effective_rank, seconds FROM curvature"), "ERROR", 5) != 0 &&
           strncmp(q(path, "SELECT run_id, param_id, flat_index, value, grad, diag_ggn, "
                           "diag_fisher_emp, diag_hessian, obd, obs, taylor FROM importance"),
                   "ERROR", 5) != 0 &&
           strncmp(q(path, "SELECT run_id, precond, damping, layer_id, grad_norm, step_norm, "
                           "cosine, predicted_decrease, actual_decrease, rho, best_lr FROM "
                           "step_diagnostics"), "ERROR", 5) != 0,
       "the core columns of runs, curvature, importance and step_diagnostics exist");
    ok(strcmp(cs_store_path(s), path) == 0, "cs_store_path gives the path back");
    cs_store_close(s);
}

/* ---------------------------------------------- store: writing results */

static double lam_l0[] = {5.0, 2.0, 1.0, 0.5, 0.0};
static double lam_net[] = {7.5, 5.0, 2.0, 1.0, 1.0, 0.25, -0.125};

/* Writes the first run (done) and checks every insert function. */
static int64_t write_first_run(const char *path)
{
    cs_store *s = NULL;
    cs_err err;
    if (!ok(cs_store_open(path, &s, &err) == CS_OK, "reopen the new database"))
        return -1;
    cs_run_info info = run_info("models/mlp.onnx");
    int64_t rid = -1;
    cs_status st = cs_store_run_begin(s, &info, &rid, &err);
    ok(st == CS_OK && rid > 0, "run_begin gives a run id (%lld)", (long long)rid);
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT status || '|' || kind || '|' || version || '|' || n_samples "
             "FROM runs WHERE id = %lld", (long long)rid);
    char want[128];
    snprintf(want, sizeof want, "running|analyze|%s|64", PACKAGE_VERSION);
    ok(strcmp(q(path, sql), want) == 0, "the run row is committed at once as running (%s)",
       q(path, sql));
    snprintf(sql, sizeof sql, "SELECT started_at FROM runs WHERE id = %lld", (long long)rid);
    const char *t = q(path, sql);
    ok(strlen(t) == 24 && t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z',
       "started_at is UTC ISO 8601 (%s)", t);

    ok(cs_store_begin(s, &err) == CS_OK && cs_store_in_transaction(s), "begin a batch");
    st = cs_store_convention(s, rid, "loss_reduction", "mean", &err);
    if (st == CS_OK)
        st = cs_store_convention(s, rid, "kfac", "expand; G (x) A over [W | b]", &err);
    ok(st == CS_OK, "conventions insert (%s)", st ? err.msg : "ok");
    st = cs_store_layer(s, rid, 0, "fc1", "Gemm", 20, &err);
    if (st == CS_OK)
        st = cs_store_layer(s, rid, 1, "fc2", "Gemm", 12, &err);
    ok(st == CS_OK, "layers insert (%s)", st ? err.msg : "ok");
    st = cs_store_param(s, rid, 0, 0, "fc1.weight", "[4, 4]", 16, &err);
    if (st == CS_OK)
        st = cs_store_param(s, rid, 1, 0, "fc1.bias", "[4]", 4, &err);
    if (st == CS_OK)
        st = cs_store_param(s, rid, 2, 1, "fc2.weight", "[3, 4]", 12, &err);
    ok(st == CS_OK, "params insert (%s)", st ? err.msg : "ok");

    cs_curv_row row = {.layer_id = 0, .curvature = "ggn", .repr = "full", .method = "exact",
                       .dim = 20, .trace = 8.5, .trace_stderr = NAN, .frobenius = 5.5,
                       .lambda_max = 5.0, .lambda_min = 0.0, .condition = 10.0,
                       .effective_rank = 2.5, .seconds = 0.01};
    st = cs_store_curvature(s, rid, &row, &err);
    cs_curv_row row1 = row;
    row1.layer_id = 1;
    row1.dim = 12;
    row1.lambda_max = 9.0;
    row1.trace = 10.0;
    if (st == CS_OK)
        st = cs_store_curvature(s, rid, &row1, &err);
    cs_curv_row kf = row;
    kf.repr = "kfac";
    kf.method = "kron";
    kf.lambda_max = 4.5;
    if (st == CS_OK)
        st = cs_store_curvature(s, rid, &kf, &err);
    cs_curv_row net = {.layer_id = -1, .curvature = "ggn", .repr = "full", .method = "exact",
                       .dim = 32, .trace = 15.75, .trace_stderr = NAN, .frobenius = NAN,
                       .lambda_max = 7.5, .lambda_min = -0.125, .condition = NAN,
                       .effective_rank = NAN, .seconds = NAN};
    if (st == CS_OK)
        st = cs_store_curvature(s, rid, &net, &err);
    ok(st == CS_OK, "curvature rows insert: two layers, a kfac row and the whole network (%s)",
       st ? err.msg : "ok");

    st = cs_store_eigenvalues(s, rid, 0, "ggn", "full", lam_l0, 5, &err);
    if (st == CS_OK)
        st = cs_store_eigenvalues(s, rid, -1, "ggn", "full", lam_net, 7, &err);
    ok(st == CS_OK, "eigenvalues insert for a layer and the whole network (%s)",
       st ? err.msg : "ok");
    double lo[] = {-1, 0, 1}, hi[] = {0, 1, 2}, dens[] = {0.25, 0.5, 0.25};
    st = cs_store_density(s, rid, -1, "ggn", lo, hi, dens, 3, &err);
    ok(st == CS_OK, "density bins insert (%s)", st ? err.msg : "ok");
    st = cs_store_repr_comparison(s, rid, 0, "ggn", "kfac", "full", 0.1, 0.1, 0.05, 0.99, &err);
    if (st == CS_OK)
        st = cs_store_repr_comparison(s, rid, -1, "ggn", "diag", "full", 0.5, NAN, 0.0, NAN, &err);
    ok(st == CS_OK, "repr_comparison rows insert (%s)", st ? err.msg : "ok");
    double fa[] = {3.0, 1.5, 1.0, 1.0, 0.5}, fg[] = {1.5, 0.25, 0.0, 0.0};
    st = cs_store_kfac_factor(s, rid, 0, "ggn", 'A', fa, 5, &err);
    if (st == CS_OK)
        st = cs_store_kfac_factor(s, rid, 0, "ggn", 'G', fg, 4, &err);
    ok(st == CS_OK, "kfac_factors insert for A and G (%s)", st ? err.msg : "ok");
    double val[16], grad[16];
    for (int i = 0; i < 16; i++) {
        val[i] = 0.1 * i;
        grad[i] = i % 3 ? -0.01 * i : NAN;
    }
    cs_importance_cols cols = {.first_index = 0, .value = val, .grad = grad};
    st = cs_store_importance(s, rid, 0, &cols, 16, &err);
    ok(st == CS_OK, "importance rows insert (%s)", st ? err.msg : "ok");
    cs_step_diag_row sd = {.precond = "kfac", .damping = 1e-3, .layer_id = -1, .grad_norm = 1.0,
                           .step_norm = 2.0, .cosine = 0.9, .predicted_decrease = 0.1,
                           .actual_decrease = 0.08, .rho = 0.8, .best_lr = NAN};
    st = cs_store_step_diag(s, rid, &sd, &err);
    ok(st == CS_OK, "step_diagnostics row inserts (%s)", st ? err.msg : "ok");

    /* Failures inside the batch: each is one clear error, the batch and its
     * earlier rows survive. */
    double bad[] = {1.0, 2.0};
    st = cs_store_eigenvalues(s, rid, 1, "ggn", "full", bad, 2, &err);
    ok(st != CS_OK && contains(err.msg, "descending") && contains(err.msg, "eigenvalues"),
       "ascending eigenvalues are refused: %s", err.msg);
    double nanv[] = {1.0, NAN};
    st = cs_store_eigenvalues(s, rid, 1, "ggn", "full", nanv, 2, &err);
    ok(st != CS_OK && contains(err.msg, "NaN"), "a NaN eigenvalue is refused: %s", err.msg);
    st = cs_store_curvature(s, rid, &row, &err);
    ok(st != CS_OK && contains(err.msg, "curvature") && contains(err.msg, "UNIQUE") &&
           contains(err.msg, path),
       "a duplicate curvature row names the table, the constraint and the file: %s", err.msg);
    st = cs_store_curvature(s, rid, &net, &err);
    ok(st != CS_OK && contains(err.msg, "UNIQUE"),
       "a duplicate whole-network curvature row is refused too: %s", err.msg);
    cs_curv_row ghost = row;
    ghost.layer_id = 7;
    st = cs_store_curvature(s, rid, &ghost, &err);
    ok(st != CS_OK && contains(err.msg, "FOREIGN KEY"),
       "a curvature row for an unknown layer is refused: %s", err.msg);
    ghost.layer_id = -2;
    st = cs_store_curvature(s, rid, &ghost, &err);
    ok(st != CS_OK && contains(err.msg, "layer_id -2"), "layer_id -2 is refused: %s", err.msg);
    st = cs_store_kfac_factor(s, rid, 0, "ggn", 'X', fa, 5, &err);
    ok(st != CS_OK && contains(err.msg, "factor"), "factor 'X' is refused: %s", err.msg);
    st = cs_store_kfac_factor(s, rid, -1, "ggn", 'A', fa, 5, &err);
    ok(st != CS_OK, "K-FAC factors of the whole network are refused: %s", err.msg);
    /* A multi-row call that fails part-way keeps none of its rows, inside
     * a transaction (the transaction stays open) and outside one. */
    double v20[20] = {0};
    cs_importance_cols tail = {.first_index = 16, .value = v20};
    st = cs_store_importance(s, rid, 1, &tail, 4, &err);
    ok(st == CS_OK, "importance rows 16..19 of param 1 (%s)", st ? err.msg : "ok");
    cs_importance_cols from12 = {.first_index = 12, .value = v20};
    st = cs_store_importance(s, rid, 0, &from12, 8, &err);
    ok(st != CS_OK && contains(err.msg, "index 12") && contains(err.msg, "importance"),
       "an importance call clashing at its first row names the index: %s", err.msg);
    st = cs_store_importance(s, rid, 1, &from12, 8, &err);
    ok(st != CS_OK && contains(err.msg, "index 16"),
       "an importance call clashing part-way fails at index 16: %s", err.msg);
    ok(cs_store_in_transaction(s), "the batch is still open after the failed calls");
    st = cs_store_commit(s, &err);
    ok(st == CS_OK, "commit the batch (%s)", st ? err.msg : "ok");
    ok(!cs_store_in_transaction(s), "commit ends the transaction");

    snprintf(sql, sizeof sql, "SELECT count(*) || '/' || min(flat_index) FROM importance WHERE "
             "run_id = %lld AND param_id = 1", (long long)rid);
    ok(strcmp(q(path, sql), "4/16") == 0,
       "the call that failed part-way left none of its rows 12..15 (%s)", q(path, sql));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM importance WHERE run_id = %lld AND param_id = 0",
             (long long)rid);
    ok(qi(path, sql) == 16, "param 0 has exactly its 16 rows");
    st = cs_store_importance(s, rid, 1, &from12, 8, &err);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM importance WHERE run_id = %lld AND param_id = 1",
             (long long)rid);
    ok(st != CS_OK && qi(path, sql) == 4 && !cs_store_in_transaction(s),
       "outside a transaction too, a call failing part-way leaves no rows");

    st = cs_store_run_end(s, rid, "done", 1.25, 123456789, NULL, &err);
    ok(st == CS_OK, "run_end done (%s)", st ? err.msg : "ok");
    cs_store_close(s);

    /* Read back through a separate connection. */
    snprintf(sql, sizeof sql, "SELECT status || '|' || seconds || '|' || peak_rss_bytes || '|' || "
             "(finished_at IS NOT NULL) || '|' || (error IS NULL) FROM runs WHERE id = %lld",
             (long long)rid);
    ok(strcmp(q(path, sql), "done|1.25|123456789|1|1") == 0, "the run is done with its numbers (%s)",
       q(path, sql));
    ok(strcmp(q(path, "SELECT group_concat(key || '=' || value, ';') FROM "
                      "(SELECT * FROM conventions ORDER BY key)"),
              "kfac=expand; G (x) A over [W | b];loss_reduction=mean") == 0,
       "conventions read back");
    ok(strcmp(q(path, "SELECT group_concat(layer_id || name || op_type || n_params, ',') FROM "
                      "(SELECT * FROM layers ORDER BY layer_id)"),
              "0fc1Gemm20,1fc2Gemm12") == 0,
       "layers read back");
    ok(strcmp(q(path, "SELECT group_concat(param_id || ':' || layer_id || ':' || name || ':' || "
                      "shape || ':' || numel, ',') FROM (SELECT * FROM params ORDER BY param_id)"),
              "0:0:fc1.weight:[4, 4]:16,1:0:fc1.bias:[4]:4,2:1:fc2.weight:[3, 4]:12") == 0,
       "params read back (%s)", q(path, "SELECT group_concat(name) FROM params"));
    ok(qi(path, "SELECT count(*) FROM curvature WHERE layer_id IS NULL") == 1 &&
           qi(path, "SELECT count(*) FROM curvature WHERE layer_id = -1") == 0,
       "layer_id -1 is stored as NULL");
    ok(strcmp(q(path, "SELECT (frobenius IS NULL) || (condition IS NULL) || (effective_rank IS NULL)"
                      " || (seconds IS NULL) || (trace_stderr IS NULL) || (trace IS NULL) FROM "
                      "curvature WHERE layer_id IS NULL"), "111110") == 0,
       "NaN numbers are stored as NULL, finite ones kept");
    ok(qd(path, "SELECT lambda_min FROM curvature WHERE layer_id IS NULL") == -0.125 &&
           qd(path, "SELECT trace FROM curvature WHERE layer_id = 0 AND repr = 'full'") == 8.5 &&
           qi(path, "SELECT dim FROM curvature WHERE layer_id = 1") == 12,
       "curvature numbers read back exactly");
    ok(strcmp(q(path, "SELECT group_concat(k || '=' || value, ',') FROM (SELECT * FROM eigenvalues "
                      "WHERE layer_id = 0 ORDER BY k)"),
              "0=5.0,1=2.0,2=1.0,3=0.5,4=0.0") == 0,
       "layer eigenvalues read back rank-ordered from k = 0 (%s)",
       q(path, "SELECT group_concat(value) FROM eigenvalues WHERE layer_id = 0"));
    ok(qi(path, "SELECT count(*) FROM eigenvalues WHERE layer_id IS NULL") == 7 &&
           qd(path, "SELECT value FROM eigenvalues WHERE layer_id IS NULL AND k = 6") == -0.125,
       "whole-network eigenvalues stored with layer_id NULL");
    ok(qi(path, "SELECT count(*) FROM eigenvalues WHERE layer_id = 1") == 0,
       "refused spectra left no rows");
    ok(strcmp(q(path, "SELECT group_concat(lo || ':' || hi || ':' || density, ',') FROM "
                      "(SELECT * FROM density ORDER BY lo)"),
              "-1.0:0.0:0.25,0.0:1.0:0.5,1.0:2.0:0.25") == 0 &&
           qi(path, "SELECT count(*) FROM density WHERE layer_id IS NULL") == 3,
       "density bins read back");
    ok(strcmp(q(path, "SELECT rel_frobenius_error || '|' || (rel_lambda_max_error IS NULL) || '|' ||"
                      " (top_eigvec_alignment IS NULL) FROM repr_comparison WHERE layer_id IS NULL"),
              "0.5|1|1") == 0 &&
           qd(path, "SELECT top_eigvec_alignment FROM repr_comparison WHERE layer_id = 0") == 0.99,
       "repr_comparison rows read back with NULLs for NaN");
    ok(strcmp(q(path, "SELECT group_concat(factor || k || '=' || value, ',') FROM (SELECT * FROM "
                      "kfac_factors ORDER BY factor, k)"),
              "A0=3.0,A1=1.5,A2=1.0,A3=1.0,A4=0.5,G0=1.5,G1=0.25,G2=0.0,G3=0.0") == 0,
       "kfac_factors read back");
    ok(qi(path, "SELECT count(*) FROM importance WHERE param_id = 0 AND grad IS NULL") == 6 &&
           qi(path, "SELECT count(*) FROM importance WHERE param_id = 0 AND diag_ggn IS NULL") == 16 &&
           qd(path, "SELECT value FROM importance WHERE param_id = 0 AND flat_index = 5") == 0.5,
       "importance rows: NULL columns, NaN as NULL, values by flat index");
    ok(strcmp(q(path, "SELECT precond || '|' || damping || '|' || (layer_id IS NULL) || '|' || rho "
                      "|| '|' || (best_lr IS NULL) FROM step_diagnostics"), "kfac|0.001|1|0.8|1") == 0,
       "step_diagnostics row read back (%s)", q(path, "SELECT rho FROM step_diagnostics"));
    return rid;
}

/* A second run in the same file: a finetune run, and a failed analyze. */
static void write_more_runs(const char *path, int64_t first)
{
    cs_store *s = NULL;
    cs_err err;
    if (!ok(cs_store_open(path, &s, &err) == CS_OK, "reopen the database a third time"))
        return;
    cs_run_info info = run_info("models/mlp.onnx");
    info.kind = "finetune";
    int64_t ft = -1;
    cs_status st = cs_store_run_begin(s, &info, &ft, &err);
    ok(st == CS_OK && ft > first, "a second run gets a new id (%lld after %lld)", (long long)ft,
       (long long)first);
    st = cs_store_begin(s, &err);
    if (st == CS_OK)
        st = cs_store_finetune_step(s, ft, 0, 0, 2.3, 0.1, 1e-3, 0.5, 128.0, &err);
    if (st == CS_OK)
        st = cs_store_finetune_step(s, ft, 0, 1, 2.1, NAN, 1e-3, 0.5, 128.0, &err);
    if (st == CS_OK)
        st = cs_store_finetune_eval(s, ft, 0, "test", 2.0, 0.3, &err);
    if (st == CS_OK)
        st = cs_store_commit(s, &err);
    ok(st == CS_OK, "finetune steps and evals insert (%s)", st ? err.msg : "ok");
    st = cs_store_run_end(s, ft, "done", 3.0, -1, NULL, &err);
    ok(st == CS_OK, "the finetune run ends done (%s)", st ? err.msg : "ok");

    /* A run that fails while a batch is open: the batch goes, the row says
     * failed with the message. */
    info = run_info("models/mlp.onnx");
    int64_t bad = -1;
    st = cs_store_run_begin(s, &info, &bad, &err);
    ok(st == CS_OK, "a third run begins");
    ok(cs_store_begin(s, &err) == CS_OK, "begin its batch");
    ok(cs_store_begin(s, &err) != CS_OK && contains(err.msg, "already open"),
       "a nested begin is refused: %s", err.msg);
    int64_t scratch;
    st = cs_store_run_begin(s, &info, &scratch, &err);
    ok(st != CS_OK && contains(err.msg, "transaction"),
       "run_begin inside a transaction is refused: %s", err.msg);
    st = cs_store_layer(s, bad, 0, "fc1", "Gemm", 20, &err);
    ok(st == CS_OK, "a layer row in the open batch");
    st = cs_store_run_end(s, bad, "done", 1.0, -1, NULL, &err);
    ok(st != CS_OK && contains(err.msg, "commit"),
       "marking a run done with a batch open is refused: %s", err.msg);
    st = cs_store_run_end(s, bad, "failed", 0.5, 1000, "out of memory in layer fc1", &err);
    ok(st == CS_OK && !cs_store_in_transaction(s), "run_end failed rolls the batch back (%s)",
       st ? err.msg : "ok");
    st = cs_store_run_end(s, 424242, "done", 1.0, -1, NULL, &err);
    ok(st != CS_OK && contains(err.msg, "424242"), "ending an unknown run is an error: %s", err.msg);
    st = cs_store_run_end(s, bad, "finished", 1.0, -1, NULL, &err);
    ok(st != CS_OK && contains(err.msg, "finished"), "an unknown status is refused: %s", err.msg);
    info.kind = "train";
    st = cs_store_run_begin(s, &info, &scratch, &err);
    ok(st != CS_OK && contains(err.msg, "train"), "an unknown run kind is refused: %s", err.msg);

    /* Explicit rollback leaves no rows; commit keeps them. */
    ok(cs_store_begin(s, &err) == CS_OK, "begin a batch to roll back");
    st = cs_store_layer(s, bad, 5, "tmp", "Conv", 9, &err);
    double ev[300];
    for (int i = 0; i < 300; i++)
        ev[i] = 300 - i;
    cs_curv_row r = {.layer_id = 5, .curvature = "hessian", .repr = "full", .method = "exact",
                     .dim = 9, .trace = 1, .trace_stderr = NAN, .frobenius = 1, .lambda_max = 1,
                     .lambda_min = 0, .condition = NAN, .effective_rank = 1, .seconds = 0};
    if (st == CS_OK)
        st = cs_store_curvature(s, bad, &r, &err);
    if (st == CS_OK)
        st = cs_store_eigenvalues(s, bad, 5, "hessian", "full", ev, 300, &err);
    ok(st == CS_OK, "rows written inside the batch (%s)", st ? err.msg : "ok");
    cs_store_rollback(s);
    ok(!cs_store_in_transaction(s), "rollback ends the transaction");
    cs_store_close(s);

    char sql[256];
    snprintf(sql, sizeof sql, "SELECT (SELECT count(*) FROM layers WHERE run_id = %lld) + "
             "(SELECT count(*) FROM curvature WHERE run_id = %lld) + "
             "(SELECT count(*) FROM eigenvalues WHERE run_id = %lld)",
             (long long)bad, (long long)bad, (long long)bad);
    ok(qi(path, sql) == 0, "rolled-back and failed batches left no rows");
    snprintf(sql, sizeof sql, "SELECT status || '|' || error || '|' || peak_rss_bytes FROM runs "
             "WHERE id = %lld", (long long)bad);
    ok(strcmp(q(path, sql), "failed|out of memory in layer fc1|1000") == 0,
       "the failed run keeps its status and message (%s)", q(path, sql));
    ok(qi(path, "SELECT count(*) FROM runs") == 3, "three runs in one file");
    snprintf(sql, sizeof sql, "SELECT count(*) FROM curvature WHERE run_id = %lld", (long long)first);
    ok(qi(path, sql) == 4, "the first run's results are intact after the later runs");
    ok(strcmp(q(path, "SELECT group_concat(step || ':' || loss || ':' || (accuracy IS NULL), ',') "
                      "FROM (SELECT * FROM finetune_steps ORDER BY step)"),
              "0:2.3:0,1:2.1:1") == 0 &&
           strcmp(q(path, "SELECT split || loss || accuracy FROM finetune_evals"), "test2.00.3") == 0,
       "finetune steps and evals read back");
    snprintf(sql, sizeof sql, "SELECT peak_rss_bytes IS NULL FROM runs WHERE id = %lld", (long long)ft);
    ok(qi(path, sql) == 1, "a negative peak_rss_bytes is stored as NULL");
}

static void test_views(const char *path, int64_t first)
{
    ok(strcmp(q(path, "SELECT group_concat(layer || ':' || coalesce(op_type, '-') || ':' || repr, ',')"
                      " FROM (SELECT * FROM v_layer_curvature ORDER BY coalesce(layer_id, -1), repr)"),
              "(network):-:full,fc1:Gemm:full,fc1:Gemm:kfac,fc2:Gemm:full") == 0,
       "v_layer_curvature joins layer names (%s)",
       q(path, "SELECT group_concat(layer) FROM v_layer_curvature"));
    ok(strcmp(q(path, "SELECT group_concat(rank || layer || lambda_max, ',') FROM "
                      "v_layers_by_lambda_max WHERE curvature = 'ggn' AND repr = 'full'"),
              "1fc29.0,2fc15.0") == 0,
       "v_layers_by_lambda_max ranks the sharpest layer first (%s)",
       q(path, "SELECT group_concat(rank || layer, ',') FROM v_layers_by_lambda_max"));
    ok(strcmp(q(path, "SELECT lambda_max || '|' || n_layers || '|' || sum_layer_trace || '|' || "
                      "max_layer_lambda_max FROM v_network_summary WHERE curvature = 'ggn' AND "
                      "repr = 'full'"),
              "7.5|2|18.5|9.0") == 0,
       "v_network_summary has the whole-network row and the layer aggregates (%s)",
       q(path, "SELECT lambda_max || '|' || n_layers FROM v_network_summary"));
    ok(qi(path, "SELECT count(*) FROM v_network_summary WHERE repr = 'kfac' AND lambda_max IS NULL "
                "AND n_layers = 1") == 1,
       "v_network_summary lists a repr without a whole-network row");
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT run_id FROM v_latest_run WHERE kind = 'analyze'");
    ok(qi(path, sql) == first && qi(path, "SELECT count(*) FROM v_latest_run") == 2,
       "v_latest_run gives the newest done run per model and kind (failed runs ignored)");
    ok(strcmp(q(path, "SELECT group_concat(layer || ':' || repr || ':' || rel_frobenius_error, ',') "
                      "FROM (SELECT * FROM v_repr_error ORDER BY coalesce(layer_id, -1))"),
              "(network):diag:0.5,fc1:kfac:0.1") == 0,
       "v_repr_error has the comparisons with layer names");
    ok(strcmp(q(path, "PRAGMA integrity_check"), "ok") == 0 &&
           strcmp(q(path, "PRAGMA foreign_key_check"), "") == 0,
       "integrity and foreign-key checks pass");
}

/* Deleting a run takes its results with it (foreign keys cascade). */
static void test_cascade(const char *path)
{
    cs_store *s = NULL;
    cs_err err;
    if (!ok(cs_store_open(path, &s, &err) == CS_OK, "open for the cascade check"))
        return;
    cs_run_info info = run_info("models/other.onnx");
    int64_t rid;
    cs_status st = cs_store_run_begin(s, &info, &rid, &err);
    if (st == CS_OK)
        st = cs_store_layer(s, rid, 0, "conv", "Conv", 10, &err);
    if (st == CS_OK)
        st = cs_store_param(s, rid, 0, 0, "conv.w", "[10]", 10, &err);
    double e[] = {2, 1};
    if (st == CS_OK)
        st = cs_store_eigenvalues(s, rid, 0, "ggn", "full", e, 2, &err);
    if (st == CS_OK)
        st = cs_store_kfac_factor(s, rid, 0, "ggn", 'A', e, 2, &err);
    cs_importance_cols c = {.first_index = 0, .value = e};
    if (st == CS_OK)
        st = cs_store_importance(s, rid, 0, &c, 2, &err);
    ok(st == CS_OK, "rows of a run to delete (%s)", st ? err.msg : "ok");
    char sql[512];
    snprintf(sql, sizeof sql, "DELETE FROM runs WHERE id = %lld", (long long)rid);
    st = cs_store_exec(s, sql, NULL, NULL, &err);
    ok(st == CS_OK, "delete the run (%s)", st ? err.msg : "ok");
    snprintf(sql, sizeof sql, "SELECT (SELECT count(*) FROM layers WHERE run_id = %lld) + "
             "(SELECT count(*) FROM params WHERE run_id = %lld) + "
             "(SELECT count(*) FROM eigenvalues WHERE run_id = %lld) + "
             "(SELECT count(*) FROM kfac_factors WHERE run_id = %lld) + "
             "(SELECT count(*) FROM importance WHERE run_id = %lld)",
             (long long)rid, (long long)rid, (long long)rid, (long long)rid, (long long)rid);
    const char *left = store_q(s, sql, NULL);
    ok(strcmp(left, "0") == 0, "deleting a run deletes its results (%s rows left)", left);

    int rows = 0;
    const char *t = store_q(s, "SELECT name FROM layers ORDER BY layer_id", &rows);
    ok(rows == 2 && strcmp(t, "fc1") == 0, "cs_store_exec passes rows to the callback (%d rows)",
       rows);
    st = cs_store_exec(s, "SELEKT 1", NULL, NULL, &err);
    ok(st != CS_OK && contains(err.msg, path) && contains(err.msg, "syntax"),
       "bad SQL is an error naming the file: %s", err.msg);
    cs_store_close(s);
}

/* ------------------------------------------------- store: bad locations */

static void test_bad_paths(void)
{
    cs_store *s = NULL;
    cs_err err;
    char path[256];

    /* A text file: refused and untouched. */
    tmp_path(path, sizeof path, "notes.txt");
    const char *text = "these are my notes, not a database\n";
    write_file(path, text, strlen(text));
    cs_status st = cs_store_open(path, &s, &err);
    ok(st == CS_ERR_FORMAT && !s && contains(err.msg, path) && contains(err.msg, "not an SQLite"),
       "a text file is a format error naming it: %s", err.msg);
    size_t n = 0;
    unsigned char *back = read_all(path, &n);
    ok(back && n == strlen(text) && memcmp(back, text, n) == 0, "the text file is unchanged");
    free(back);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", path);
    ok(!exists(side), "no WAL file was left beside it");

    /* Another application's SQLite database: refused and untouched. */
    tmp_path(path, sizeof path, "other.sqlite");
    ok(raw_exec(path, "CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('ada')"),
       "made another application's database");
    unsigned char *before = read_all(path, &n);
    size_t n2 = 0;
    st = cs_store_open(path, &s, &err);
    ok(st == CS_ERR_FORMAT && contains(err.msg, path) && contains(err.msg, "not a curvscope"),
       "another application's database is refused: %s", err.msg);
    back = read_all(path, &n2);
    ok(before && back && n == n2 && memcmp(before, back, n) == 0 &&
           strcmp(q(path, "PRAGMA journal_mode"), "delete") == 0,
       "... and left byte for byte as it was");
    free(before);
    free(back);
    tmp_path(path, sizeof path, "app.sqlite");
    ok(raw_exec(path, "PRAGMA application_id = 1234; CREATE TABLE t (x)"), "made a database with "
       "another application_id");
    st = cs_store_open(path, &s, &err);
    ok(st == CS_ERR_FORMAT && contains(err.msg, "another application"),
       "a foreign application_id is refused: %s", err.msg);

    /* A directory. */
    st = cs_store_open(tmpdir, &s, &err);
    ok(st == CS_ERR_IO && contains(err.msg, tmpdir) && contains(err.msg, "directory"),
       "a directory is an I/O error naming it: %s", err.msg);

    /* A file in a directory that does not exist: nothing is created. */
    tmp_path(path, sizeof path, "no/such/dir/out.db");
    st = cs_store_open(path, &s, &err);
    ok(st == CS_ERR_IO && contains(err.msg, path), "a missing directory is an I/O error: %s",
       err.msg);
    tmp_path(path, sizeof path, "no");
    ok(!exists(path), "... and no directory was created");

    /* Where nobody may create files, root included. */
    st = cs_store_open("/proc/curvscope-test.db", &s, &err);
    ok(st == CS_ERR_IO && contains(err.msg, "/proc/curvscope-test.db"),
       "a path under /proc is an I/O error: %s", err.msg);

    /* A read-only database file. */
    tmp_path(path, sizeof path, "readonly.db");
    st = cs_store_open(path, &s, &err);
    cs_store_close(s);
    s = NULL;
    ok(st == CS_OK && chmod(path, 0444) == 0, "made a database and set it read-only");
    if (geteuid() == 0) {
        skip("read-only file: running as root, where file permissions do not stop writes");
    } else {
        st = cs_store_open(path, &s, &err);
        ok(st == CS_ERR_IO && contains(err.msg, path), "a read-only database is an I/O error: %s",
           err.msg);
        cs_store_close(s);
        s = NULL;
    }
    chmod(path, 0644);

    /* A writable database in a directory where the journal cannot be made. */
    char rodir[256], rodb[300];
    tmp_path(rodir, sizeof rodir, "rodir");
    snprintf(rodb, sizeof rodb, "%s/in.db", rodir);
    st = mkdir(rodir, 0755) == 0 ? cs_store_open(rodb, &s, &err) : CS_ERR_IO;
    cs_store_close(s);
    s = NULL;
    ok(st == CS_OK && chmod(rodir, 0555) == 0, "made a database in a directory, then locked it");
    if (geteuid() == 0) {
        skip("read-only directory: running as root, where permissions do not stop writes");
    } else {
        st = cs_store_open(rodb, &s, &err);
        ok(st == CS_ERR_IO && contains(err.msg, rodb),
           "a database whose directory is read-only is an I/O error: %s", err.msg);
        cs_store_close(s);
        s = NULL;
    }
    chmod(rodir, 0755);

    /* Opened read-only on purpose: reads work, writes are refused. */
    st = cs_store_open_readonly(path, &s, &err);
    ok(st == CS_OK, "open_readonly opens a curvscope database (%s)", st ? err.msg : "ok");
    if (st == CS_OK) {
        cs_run_info info = run_info("m.onnx");
        int64_t rid;
        st = cs_store_run_begin(s, &info, &rid, &err);
        ok(st == CS_ERR_IO && contains(err.msg, "runs"), "writes through a read-only store fail: %s",
           err.msg);
        ok(strcmp(store_q(s, "SELECT count(*) FROM runs", NULL), "0") == 0,
           "reads through a read-only store work");
        cs_store_close(s);
        s = NULL;
    } else {
        skip("read-only store did not open");
        skip("read-only store did not open");
    }
    tmp_path(path, sizeof path, "absent.db");
    st = cs_store_open_readonly(path, &s, &err);
    ok(st == CS_ERR_IO && !exists(path), "open_readonly of a missing file fails and creates nothing: %s",
       err.msg);

    /* Schema versions this build does not know. */
    tmp_path(path, sizeof path, "future.db");
    st = cs_store_open(path, &s, &err);
    cs_store_close(s);
    s = NULL;
    ok(st == CS_OK && raw_exec(path, "PRAGMA user_version = 999"), "made a version-999 database");
    st = cs_store_open(path, &s, &err);
    ok(st == CS_ERR_FORMAT && contains(err.msg, "999") && contains(err.msg, "newer") &&
           contains(err.msg, path),
       "a newer schema version is a clear error: %s", err.msg);
    ok(qi(path, "PRAGMA user_version") == 999, "... and the file keeps its version");
    ok(raw_exec(path, "PRAGMA user_version = 0"), "set the version to 0");
    st = cs_store_open(path, &s, &err);
    ok(st == CS_ERR_FORMAT && contains(err.msg, "older"), "an older schema version is refused "
       "clearly: %s", err.msg);

    /* An empty existing file becomes a database; ":memory:" works. */
    tmp_path(path, sizeof path, "empty.db");
    write_file(path, "", 0);
    st = cs_store_open(path, &s, &err);
    ok(st == CS_OK && qi(path, "PRAGMA user_version") == CS_STORE_SCHEMA_VERSION,
       "an empty file gets the schema (%s)", st ? err.msg : "ok");
    cs_store_close(s);
    s = NULL;
    st = cs_store_open(":memory:", &s, &err);
    char version_text[16];
    snprintf(version_text, sizeof version_text, "%d", CS_STORE_SCHEMA_VERSION);
    ok(st == CS_OK && strcmp(store_q(s, "PRAGMA user_version", NULL), version_text) == 0,
       "an in-memory store works (%s)", st ? err.msg : "ok");
    cs_store_close(s);
    st = cs_store_open("", &s, &err);
    ok(st == CS_ERR_IO, "an empty path is refused: %s", err.msg);
}

/* ------------------------------------------- store: schema upgrades */

/* The schema objects of a database, one "type name" per line, sorted, the
 * tables whose CHECK a version widened with their statements (an upgrade
 * rewrites them). */
static char *schema_objects(const char *path)
{
    static char buf[1 << 15];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t used = 0;
    buf[0] = '\0';
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT type || ' ' || name || ' ' || CASE WHEN name IN ('runs', 'laplace_predictive', "
                           "'influence_scores') THEN sql ELSE '' END "
                           "FROM sqlite_master ORDER BY 1", -1, &st,
                           NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW && used + 256 < sizeof buf)
            used += (size_t)snprintf(buf + used, sizeof buf - used, "%s\n",
                                     (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
}

/* The sections cut at the "-- @version N" markers add up to the whole
 * schema, and a database written by every older version is brought to the
 * current one on a writing open (read-only, it is read as it is). */
static void test_schema_upgrade(void)
{
    size_t total = 0;
    int whole = 1;
    for (int v = 1; v <= CS_STORE_SCHEMA_VERSION; v++) {
        char *section = cs_store_schema_section(v);
        whole = whole && section && strncmp(cs_store_schema_sql + total, section, strlen(section)) == 0;
        total += section ? strlen(section) : 0;
        free(section);
    }
    ok(whole && total == strlen(cs_store_schema_sql),
       "the sections of versions 1..%d are the whole schema in order", CS_STORE_SCHEMA_VERSION);

    char fresh[256];
    tmp_path(fresh, sizeof fresh, "fresh-schema.db");
    cs_store *s = NULL;
    cs_err err;
    cs_status st = cs_store_open(fresh, &s, &err);
    cs_store_close(s);
    s = NULL;
    char *want = strdup(schema_objects(fresh));
    ok(st == CS_OK && want && *want, "a new database has the schema");
    for (int old = 1; old < CS_STORE_SCHEMA_VERSION; old++) {
        char path[256], name[64];
        snprintf(name, sizeof name, "version-%d.db", old);
        tmp_path(path, sizeof path, name);
        /* The CHECKs later versions widened, as the old version wrote
         * them: the wide list cut back to its first `keep` bytes. */
        static const struct {
            int version, section;
            const char *wide;
            size_t keep;
        } narrowings[] = {
            {2, 1, "'analyze', 'finetune', 'quantize', 'laplace', 'influence'", sizeof "'analyze', 'finetune'" - 1},
            {3, 2, "'map', 'glm_probit', 'glm_mc', 'nn_mc'", sizeof "'map', 'glm_probit', 'glm_mc'" - 1},
            {3, 2, "'ekfac', 'dot', 'cosine', 'tracin'", sizeof "'ekfac', 'dot', 'cosine'" - 1},
        };
        int made = 1;
        for (int v = 1; v <= old; v++) {
            char *section = cs_store_schema_section(v);
            for (size_t i = 0; section && i < sizeof narrowings / sizeof narrowings[0]; i++) {
                if (narrowings[i].section != v || narrowings[i].version <= old)
                    continue;
                char *list = strstr(section, narrowings[i].wide);
                made = made && list;
                if (list)
                    memmove(list + narrowings[i].keep, list + strlen(narrowings[i].wide),
                            strlen(list + strlen(narrowings[i].wide)) + 1);
            }
            made = made && section && raw_exec(path, section);
            free(section);
        }
        ok(old != 1 || qi(path, "SELECT instr(sql, 'quantize') FROM sqlite_master WHERE name = 'runs'") == 0,
           "the version-1 database's runs.kind takes only analyze and finetune");
        ok(old != 2 || qi(path, "SELECT instr(sql, 'tracin') FROM sqlite_master WHERE name = 'influence_scores'") == 0,
           "the version-2 database's influence_scores.method does not take tracin");
        char pragmas[128];
        snprintf(pragmas, sizeof pragmas, "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 CS_STORE_APPLICATION_ID, old);
        ok(made && raw_exec(path, pragmas), "made a version-%d database", old);
        st = cs_store_open_readonly(path, &s, &err);
        cs_store_close(s);
        s = NULL;
        ok(st == CS_OK && qi(path, "PRAGMA user_version") == old,
           "read-only, the version-%d database opens as it is (%s)", old, st ? err.msg : "ok");
        st = cs_store_open(path, &s, &err);
        cs_store_close(s);
        s = NULL;
        ok(st == CS_OK && qi(path, "PRAGMA user_version") == CS_STORE_SCHEMA_VERSION &&
               want && strcmp(schema_objects(path), want) == 0,
           "opened for writing, the version-%d database is upgraded to the schema of a new one (%s)",
           old, st ? err.msg : "ok");
        ok(raw_exec(path, "INSERT INTO runs (kind, model_path, version, status, started_at) "
                    "VALUES ('influence', 'm.onnx', '0', 'running', '2026-12-03')") &&
               qi(path, "SELECT count(*) FROM runs WHERE kind = 'influence'") == 1 &&
               strcmp(q(path, "PRAGMA integrity_check"), "ok") == 0,
           "the upgraded version-%d database takes the newer run kinds and passes integrity_check", old);
        ok(raw_exec(path, "INSERT INTO laplace_predictive VALUES "
                    "((SELECT max(id) FROM runs), 'nn_mc', 10, 0.5, 0.9, 0.05, 0.2)") &&
               qi(path, "SELECT count(*) FROM laplace_predictive WHERE method = 'nn_mc'") == 1 &&
               strcmp(q(path, "PRAGMA integrity_check"), "ok") == 0,
           "the upgraded version-%d database takes the version-3 method names", old);
    }
    free(want);
}

/* ------------------------------------------- store: an interrupted run */

enum { KILL_LAYERS = 200, KILL_EIGS = 250 };

/* The child: begin a run, write a large batch, die before committing. */
static void killed_child(const char *path, int fd) __attribute__((noreturn));
static void killed_child(const char *path, int fd)
{
    cs_store *s;
    cs_err err;
    if (cs_store_open(path, &s, &err) != CS_OK)
        _exit(10);
    cs_run_info info = run_info("models/killed.onnx");
    int64_t rid;
    if (cs_store_run_begin(s, &info, &rid, &err) != CS_OK)
        _exit(11);
    if (write(fd, &rid, sizeof rid) != (ssize_t)sizeof rid)
        _exit(12);
    /* A tiny page cache makes SQLite spill uncommitted pages to the WAL
     * mid-transaction, so recovery has real uncommitted frames to ignore. */
    if (cs_store_exec(s, "PRAGMA cache_size = 8", NULL, NULL, &err) != CS_OK ||
        cs_store_begin(s, &err) != CS_OK)
        _exit(13);
    static double ev[KILL_EIGS];
    for (int i = 0; i < KILL_EIGS; i++)
        ev[i] = KILL_EIGS - i;
    for (int l = 0; l < KILL_LAYERS; l++) {
        cs_curv_row r = {.layer_id = l, .curvature = "ggn", .repr = "full", .method = "exact",
                         .dim = KILL_EIGS, .trace = 1, .trace_stderr = NAN, .frobenius = 1,
                         .lambda_max = KILL_EIGS, .lambda_min = 1, .condition = KILL_EIGS,
                         .effective_rank = 3, .seconds = 0};
        if (cs_store_layer(s, rid, l, "layer", "Gemm", KILL_EIGS, &err) != CS_OK ||
            cs_store_curvature(s, rid, &r, &err) != CS_OK ||
            cs_store_eigenvalues(s, rid, l, "ggn", "full", ev, KILL_EIGS, &err) != CS_OK)
            _exit(14);
    }
    raise(SIGKILL);
    _exit(15);
}

static void test_interrupted_run(const char *path, int64_t first)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM curvature WHERE run_id = %lld", (long long)first);
    long long first_rows = qi(path, sql);
    long long runs_before = qi(path, "SELECT count(*) FROM runs");
    int fds[2];
    if (!ok(pipe(fds) == 0, "pipe for the child's run id"))
        return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        killed_child(path, fds[1]);
    }
    close(fds[1]);
    int64_t rid = -1;
    ssize_t got = pid > 0 ? read(fds[0], &rid, sizeof rid) : -1;
    close(fds[0]);
    int wst = 0;
    if (pid > 0)
        waitpid(pid, &wst, 0);
    ok(pid > 0 && WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL,
       "the child died by SIGKILL mid-transaction (status 0x%x)", wst);
    ok(got == (ssize_t)sizeof rid && rid > 0, "the child reported its run id %lld", (long long)rid);
    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat sb;
    if (stat(wal, &sb) == 0)
        diag("WAL left by the killed writer: %lld bytes", (long long)sb.st_size);

    cs_store *s = NULL;
    cs_err err;
    cs_status st = cs_store_open(path, &s, &err);
    ok(st == CS_OK, "the file opens after the kill (%s)", st ? err.msg : "ok");
    if (st != CS_OK)
        return;
    ok(strcmp(store_q(s, "PRAGMA integrity_check", NULL), "ok") == 0, "integrity_check is ok");
    snprintf(sql, sizeof sql, "SELECT status FROM runs WHERE id = %lld", (long long)rid);
    ok(strcmp(store_q(s, sql, NULL), "running") == 0, "the killed run's row is there, 'running'");
    ok(atoll(store_q(s, "SELECT count(*) FROM runs", NULL)) == runs_before + 1,
       "no other run row changed in number");
    snprintf(sql, sizeof sql, "SELECT (SELECT count(*) FROM layers WHERE run_id = %lld) + "
             "(SELECT count(*) FROM curvature WHERE run_id = %lld) + "
             "(SELECT count(*) FROM eigenvalues WHERE run_id = %lld)",
             (long long)rid, (long long)rid, (long long)rid);
    ok(strcmp(store_q(s, sql, NULL), "0") == 0, "none of its uncommitted rows exist");
    snprintf(sql, sizeof sql, "SELECT count(*) FROM curvature WHERE run_id = %lld", (long long)first);
    ok(atoll(store_q(s, sql, NULL)) == first_rows && first_rows == 4,
       "the earlier completed run is intact (%lld curvature rows)", first_rows);
    snprintf(sql, sizeof sql, "SELECT status FROM runs WHERE id = %lld", (long long)first);
    ok(strcmp(store_q(s, sql, NULL), "done") == 0, "... and still done");
    /* The killed writer's lock died with it: a new run can write. */
    cs_run_info info = run_info("models/after.onnx");
    int64_t next;
    st = cs_store_run_begin(s, &info, &next, &err);
    if (st == CS_OK)
        st = cs_store_run_end(s, next, "done", 0.1, -1, NULL, &err);
    ok(st == CS_OK && next > rid, "a later run writes normally (%s)", st ? err.msg : "ok");
    cs_store_close(s);
}

/* Many rows in one transaction: timed for the log, not asserted. */
static void test_bulk(void)
{
    char path[256];
    tmp_path(path, sizeof path, "bulk.db");
    cs_store *s = NULL;
    cs_err err;
    if (!ok(cs_store_open(path, &s, &err) == CS_OK, "open a database for a bulk insert"))
        return;
    enum { N = 100000 };
    double *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++)
        v[i] = N - i;
    cs_run_info info = run_info("m.onnx");
    int64_t rid;
    cs_status st = cs_store_run_begin(s, &info, &rid, &err);
    if (st == CS_OK)
        st = cs_store_layer(s, rid, 0, "big", "Gemm", N, &err);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (st == CS_OK)
        st = cs_store_begin(s, &err);
    if (st == CS_OK)
        st = cs_store_eigenvalues(s, rid, 0, "ggn", "full", v, N, &err);
    if (st == CS_OK)
        st = cs_store_commit(s, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ok(st == CS_OK && strcmp(store_q(s, "SELECT count(*) FROM eigenvalues", NULL), "100000") == 0,
       "100000 eigenvalues in one transaction (%s)", st ? err.msg : "ok");
    diag("100000 eigenvalues stored in %.3f s (%.0f rows/s)", secs, N / secs);
    free(v);
    cs_store_close(s);
}

/* store/rows.h: result structs to rows, one transaction per batch. */
static void test_result_rows(void)
{
    cs_store *s = NULL;
    cs_err err;
    if (!ok(cs_store_open(":memory:", &s, &err) == CS_OK, "open a database for result rows"))
        return;
    cs_run_info info = run_info("m.onnx");
    int64_t rid;
    cs_status st = cs_store_run_begin(s, &info, &rid, &err);
    cs_finetune_opts fo;
    cs_finetune_opts_init(&fo);
    fo.precond = "kfac";
    fo.lr = 0.1;
    if (st == CS_OK)
        st = cs_store_write_finetune_conventions(s, rid, &fo, "ggn", &err);
    if (st == CS_OK)
        st = cs_store_write_fallback(s, rid, "layer bn (BatchNormalization): steps along the gradient", &err);
    ok(st == CS_OK, "finetune conventions and a fallback (%s)", st ? err.msg : "ok");
    ok(strcmp(store_q(s, "SELECT count(*) FROM conventions", NULL), "23") == 0,
       "22 finetune conventions and one fallback");
    ok(strcmp(store_q(s, "SELECT value FROM conventions WHERE key = 'lr'", NULL), "0.10000000000000001") == 0,
       "numbers keep all their digits");
    ok(strcmp(store_q(s, "SELECT value FROM conventions WHERE key = 'curvature'", NULL), "ggn") == 0,
       "the curvature convention is the one given");
    ok(contains(store_q(s, "SELECT value FROM conventions WHERE key = 'fallback.bn'", NULL), "steps along"),
       "a fallback is kept under fallback.LAYER");

    /* A batch with pruning points and a whole-network step row. */
    cs_curv_report rep;
    memset(&rep, 0, sizeof rep);
    cs_importance imp;
    memset(&imp, 0, sizeof imp);
    cs_prune_point pts[] = {{"none", 0, 0, 1.5, 0.5}, {"obd", 0.5, 10, 2.0, NAN}};
    cs_step_result res[] = {{.damping = 0.1, .layer = -1, .grad_norm = 1, .step_norm = 2, .cosine = 0.5,
                             .predicted = -1, .actual = -0.5, .rho = 0.5, .best_lr = 1, .best_change = -0.75}};
    cs_step_report steps = {.n = 1, .res = res};
    cs_analysis_rows rows = {.rep = &rep, .imp = &imp, .pts = pts, .n_pts = 2, .steps = &steps};
    st = cs_store_write_analysis(s, rid, &rows, &err);
    ok(st == CS_OK && !cs_store_in_transaction(s), "an analysis batch is written and committed (%s)",
       st ? err.msg : "ok");
    ok(strcmp(store_q(s, "SELECT count(*) FROM pruning_curve", NULL), "2") == 0 &&
           strcmp(store_q(s, "SELECT count(*) FROM pruning_curve WHERE accuracy IS NULL", NULL), "1") == 0,
       "pruning points, NaN accuracy as NULL");
    ok(strcmp(store_q(s, "SELECT best_change FROM step_diagnostics WHERE layer_id IS NULL", NULL), "-0.75") == 0,
       "the step row, whole network as NULL");
    res[0].best_change = INFINITY; /* no step length lowered the loss */
    res[0].damping = 0.2;
    cs_analysis_rows rows2 = {.rep = &rep, .imp = &imp, .steps = &steps};
    st = cs_store_write_analysis(s, rid, &rows2, &err);
    ok(st == CS_OK, "a batch with a step that found no better length (%s)", st ? err.msg : "ok");
    ok(strcmp(store_q(s, "SELECT count(*) FROM step_diagnostics WHERE damping = 0.2 AND best_change IS NULL", NULL),
              "1") == 0, "an infinite best_change (no better step found) is stored as NULL");
    res[0].damping = 0.1;
    res[0].best_change = -0.75;

    /* An overflow (Inf) is refused, naming the table and the column; an
     * unreachable best step (best_change Inf) is stored as NULL instead. */
    cs_curv_row inf_row = {.layer_id = -1, .curvature = "hessian", .repr = "full", .method = "exact",
                           .dim = 3, .trace = 1, .trace_stderr = NAN, .frobenius = 1,
                           .lambda_max = INFINITY, .lambda_min = 0, .condition = NAN,
                           .effective_rank = NAN, .seconds = 0};
    st = cs_store_curvature(s, rid, &inf_row, &err);
    ok(st == CS_ERR_RUNTIME && contains(err.msg, "curvature") && contains(err.msg, "lambda_max is infinite"),
       "an infinite curvature value is refused, naming the column: %s", err.msg);
    double inf_vals[] = {INFINITY, 1.0};
    st = cs_store_spectrum(s, rid, -1, "hessian", "full", "exact", 0, inf_vals, 2, &err);
    ok(st == CS_ERR_RUNTIME && contains(err.msg, "eigenvalues") && contains(err.msg, "value is infinite"),
       "an infinite eigenvalue is refused: %s", err.msg);
    ok(strcmp(store_q(s, "SELECT count(*) FROM curvature WHERE curvature = 'hessian'", NULL), "0") == 0 &&
           strcmp(store_q(s, "SELECT count(*) FROM eigenvalues WHERE curvature = 'hessian'", NULL), "0") == 0,
       "the refused rows are not stored");

    /* A bad row fails the whole batch (the transaction stays open for the
     * caller to end the run failed, which rolls it back): nothing stays. */
    pts[0].fraction = pts[1].fraction = 0.25;
    res[0].layer = -2;
    st = cs_store_write_analysis(s, rid, &rows, &err);
    ok(st != CS_OK && contains(err.msg, "step_diagnostics"), "a bad step row fails the batch (%s)", err.msg);
    if (st != CS_OK)
        st = cs_store_run_end(s, rid, "failed", NAN, -1, err.msg, &err);
    ok(st == CS_OK && !cs_store_in_transaction(s), "the run ends failed (%s)", st ? err.msg : "ok");
    ok(strcmp(store_q(s, "SELECT count(*) FROM pruning_curve", NULL), "2") == 0,
       "the failed batch left no rows");
    cs_store_close(s);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cs-store-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    test_sha256();
    test_schema_text();
    test_schema_upgrade();

    char db[256];
    tmp_path(db, sizeof db, "results.db");
    test_new_database(db);
    int64_t first = write_first_run(db);
    write_more_runs(db, first);
    test_views(db, first);
    test_cascade(db);
    test_interrupted_run(db, first);
    test_bad_paths();
    test_bulk();
    test_result_rows();

    rm_tree(tmpdir);
    return tap_done();
}
