/* Opening a database file: its identity (a curvscope database, its schema
 * version), the schema of a new file, and the upgrade of an older one
 * (doc/design.md §4).  Private to src/store; store.c's store_open calls
 * these in order. */
#include "config.h"

#include "store/store_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

cs_status store_query_int(sqlite3 *db, const char *path, const char *sql, int64_t *out,
                           cs_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK) {
        rc = sqlite3_extended_errcode(db);
        cs_status r;
        if ((rc & 0xff) == SQLITE_NOTADB)
            r = cs_fail(err, CS_ERR_FORMAT, "'%s' is not an SQLite database", path);
        else
            r = store_db_fail(db, path, err, rc, "open the database");
        sqlite3_finalize(st);
        return r;
    }
    sqlite3_finalize(st);
    return CS_OK;
}

cs_status store_exec_sql(sqlite3 *db, const char *path, const char *sql, const char *what,
                          cs_err *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return CS_OK;
    rc = sqlite3_extended_errcode(db);
    cs_status r = store_db_fail(db, path, err, rc, "%s", what);
    sqlite3_free(msg);
    return r;
}

/* A new database: the schema, then its version and application id, in one
 * transaction, so a file either has all of it or stays empty.  Two
 * processes may both find the new file empty; the write lock taken
 * here orders them, and the second, finding the schema there once it holds
 * the lock, checks it like any existing database instead of creating it
 * again. */
cs_status store_apply_schema(sqlite3 *db, const char *path, cs_err *err)
{
    cs_status r = store_exec_sql(db, path, "BEGIN IMMEDIATE", "create the schema", err);
    if (r != CS_OK)
        return r;
    int fresh = 0;
    int64_t version = 0;
    r = store_check_identity(db, path, 0, &fresh, &version, err);
    if (r != CS_OK || !fresh) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return r;
    }
    char pragmas[128];
    snprintf(pragmas, sizeof pragmas, "PRAGMA application_id = %d; PRAGMA user_version = %d",
             CS_STORE_APPLICATION_ID, CS_STORE_SCHEMA_VERSION);
    r = store_exec_sql(db, path, cs_store_schema_sql, "create the schema", err);
    if (r == CS_OK)
        r = store_exec_sql(db, path, pragmas, "set the schema version", err);
    if (r == CS_OK)
        r = store_exec_sql(db, path, "COMMIT", "create the schema", err);
    if (r != CS_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* sqlite3_open only opens the file; whether the file and its directory
 * (for the journal) can be written shows at the first write.  So write for
 * real: take the write lock, change page 1, and roll back. */
cs_status store_probe_writable(sqlite3 *db, const char *path, cs_err *err)
{
    if (sqlite3_db_readonly(db, "main") == 1)
        return cs_fail(err, CS_ERR_IO, "cannot write to '%s': the file is read-only", path);
    char sql[96];
    snprintf(sql, sizeof sql, "BEGIN IMMEDIATE; PRAGMA user_version = %d",
             CS_STORE_SCHEMA_VERSION);
    cs_status r = store_exec_sql(db, path, sql, "write", err);
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}

/* Identify the file and decide: create the schema (*fresh), use it, or
 * refuse.  Only reads, so a refused file is left as it was. */
cs_status store_check_identity(sqlite3 *db, const char *path, int readonly, int *fresh,
                                int64_t *version_out, cs_err *err)
{
    int64_t n_objects = 0, app_id = 0, version = 0;
    cs_status r = store_query_int(db, path, "SELECT count(*) FROM sqlite_master", &n_objects, err);
    if (r == CS_OK)
        r = store_query_int(db, path, "PRAGMA application_id", &app_id, err);
    if (r == CS_OK)
        r = store_query_int(db, path, "PRAGMA user_version", &version, err);
    if (r != CS_OK)
        return r;
    *version_out = version;
    *fresh = 0;
    if (n_objects == 0 && app_id == 0 && version == 0) {
        if (readonly)
            return cs_fail(err, CS_ERR_FORMAT, "'%s' is an empty database, not a curvscope one",
                           path);
        *fresh = 1;
        return CS_OK;
    }
    if (app_id != CS_STORE_APPLICATION_ID) {
        if (app_id != 0)
            return cs_fail(err, CS_ERR_FORMAT,
                           "'%s' is an SQLite database of another application (application_id "
                           "0x%08llx), not a curvscope database",
                           path, (unsigned long long)(uint32_t)app_id);
        return cs_fail(err, CS_ERR_FORMAT,
                       "'%s' is an SQLite database but not a curvscope one (it has %lld schema "
                       "objects and no curvscope mark); give a new file or a curvscope database",
                       path, (long long)n_objects);
    }
    if (version > CS_STORE_SCHEMA_VERSION)
        return cs_fail(err, CS_ERR_FORMAT,
                       "'%s' has schema version %lld, newer than the version %d this curvscope "
                       "(%s) knows: use a newer curvscope, or another database file",
                       path, (long long)version, CS_STORE_SCHEMA_VERSION, PACKAGE_VERSION);
    /* Older versions are upgraded by store_open (store_upgrade_schema) when the
     * file is opened for writing; read-only, an older file is read as it
     * is: every version only adds tables and views, so what it has means
     * what it meant. */
    if (version < 1)
        return cs_fail(err, CS_ERR_FORMAT,
                       "'%s' has schema version %lld, older than any this curvscope knows: use "
                       "a new database file", path, (long long)version);
    return CS_OK;
}

/* The part of schemas/store.sql that version `version` added: version 1 is
 * everything before the first "-- @version 2" line, version N the lines
 * from its marker to the next.  The returned copy is the caller's to free;
 * NULL when out of memory. */
char *cs_store_schema_section(int version)
{
    const char *text = cs_store_schema_sql;
    const char *begin = text, *end = NULL;
    char mark[32];
    if (version > 1) {
        snprintf(mark, sizeof mark, "\n-- @version %d\n", version);
        begin = strstr(text, mark);
        begin = begin ? begin + 1 : text + strlen(text);
    }
    snprintf(mark, sizeof mark, "\n-- @version %d\n", version + 1);
    end = strstr(begin, mark);
    end = end ? end + 1 : text + strlen(text);
    return strndup(begin, (size_t)(end - begin));
}

/* Tables whose CHECK a version widened in place: version 2 runs.kind,
 * version 3 laplace_predictive.method and influence_scores.method.  A CHECK
 * constraint does not change how rows are stored, so the upgrade writes the
 * current CREATE TABLE statement over the old one in sqlite_master (the
 * procedure of SQLite's ALTER TABLE documentation for such changes:
 * writable_schema, then a new schema_version so every connection reloads
 * it), inside the upgrade's transaction. */
static const struct {
    int version;
    const char *table;
} widened_tables[] = {
    {2, "runs"},
    {3, "laplace_predictive"},
    {3, "influence_scores"},
};

static cs_status widen_table(sqlite3 *db, const char *path, const char *table, cs_err *err)
{
    char head[96];
    snprintf(head, sizeof head, "CREATE TABLE %s (", table);
    const char *begin = strstr(cs_store_schema_sql, head);
    const char *end = begin ? strstr(begin, "\n);") : NULL;
    if (!begin || !end)
        return cs_fail(err, CS_ERR_RUNTIME, "upgrading '%s': no %s table in the built-in schema", path, table);
    int64_t schema_version = 0;
    cs_status r = store_query_int(db, path, "PRAGMA schema_version", &schema_version, err);
    if (r != CS_OK)
        return r;
    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 0, (int *)NULL);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_exec(db, "PRAGMA writable_schema = ON", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "UPDATE sqlite_master SET sql = ?1 WHERE type = 'table' AND name = ?2", -1,
                                &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, begin, (int)(end + 2 - begin), SQLITE_TRANSIENT);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, table, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA schema_version = %lld", (long long)schema_version + 1);
        rc = sqlite3_exec(db, pragma, NULL, NULL, NULL);
    }
    sqlite3_exec(db, "PRAGMA writable_schema = OFF", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return store_db_fail(db, path, err, rc, "upgrade the %s table", table);
    return CS_OK;
}

/* Bring an older database to CS_STORE_SCHEMA_VERSION: the sections of the
 * versions it lacks, in one write transaction that ends by raising
 * user_version, so an interrupted upgrade leaves the old version whole.
 * The version is read again under the lock: another process may have
 * upgraded the file since store_check_identity looked. */
cs_status store_upgrade_schema(sqlite3 *db, const char *path, cs_err *err)
{
    cs_status r = store_exec_sql(db, path, "BEGIN IMMEDIATE", "upgrade the schema", err);
    int64_t version = CS_STORE_SCHEMA_VERSION;
    if (r == CS_OK)
        r = store_query_int(db, path, "PRAGMA user_version", &version, err);
    for (int v = (int)version + 1; r == CS_OK && v <= CS_STORE_SCHEMA_VERSION; v++) {
        char *section = cs_store_schema_section(v);
        if (!section) {
            r = cs_fail(err, CS_ERR_NOMEM, "out of memory upgrading '%s'", path);
            break;
        }
        char what[64];
        snprintf(what, sizeof what, "upgrade the schema to version %d", v);
        r = store_exec_sql(db, path, section, what, err);
        free(section);
        for (size_t i = 0; r == CS_OK && i < sizeof widened_tables / sizeof widened_tables[0]; i++)
            if (widened_tables[i].version == v)
                r = widen_table(db, path, widened_tables[i].table, err);
    }
    if (r == CS_OK && version < CS_STORE_SCHEMA_VERSION) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", CS_STORE_SCHEMA_VERSION);
        r = store_exec_sql(db, path, pragma, "set the schema version", err);
    }
    if (r == CS_OK)
        r = store_exec_sql(db, path, "COMMIT", "upgrade the schema", err);
    if (r != CS_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return r;
}
