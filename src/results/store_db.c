/* store_db: see store_db.h. */
#include "results/store_db.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char SCHEMA[] =
    "BEGIN IMMEDIATE;"
    "CREATE TABLE IF NOT EXISTS answer(key BLOB PRIMARY KEY NOT NULL, stored INTEGER NOT NULL,"
    " result BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS stage(prefix BLOB PRIMARY KEY NOT NULL, ident BLOB NOT NULL,"
    " name TEXT NOT NULL, url TEXT NOT NULL, version TEXT NOT NULL, first INTEGER NOT NULL) WITHOUT ROWID;"
    "PRAGMA application_id=1095650895;" /* STORE_APP_ID */
    "PRAGMA user_version=2;"            /* STORE_SCHEMA */
    "COMMIT;";

int store_db_busy(int rc)
{
    return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
}

int store_db_exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

void store_db_error(sqlite3 *db, int rc, const char *what, char *err, size_t errlen)
{
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    int sys = db ? sqlite3_system_errno(db) : 0;
    if (sys && !strstr(msg, strerror(sys)))
        snprintf(err, errlen, "%s: %s (%s)", what, msg, strerror(sys));
    else
        snprintf(err, errlen, "%s: %s", what, msg);
}

unsigned long long store_db_file_size(const char *path, const char *suffix)
{
    char name[4200];
    struct stat st;
    if ((size_t)snprintf(name, sizeof name, "%s%s", path, suffix) >= sizeof name || stat(name, &st))
        return 0;
    return (unsigned long long)st.st_size;
}

/* The file itself: an existing regular file, or (STORE_DB_RUN) a new one made 0600 here, since
 * SQLite would make it 0644. *existed says which. */
static int make_file(const char *path, enum store_db_mode mode, int *existed, char *err, size_t errlen)
{
    struct stat st;
    *existed = 1;
    if (stat(path, &st) == 0) {
        if (S_ISREG(st.st_mode))
            return STORE_DB_OK;
        snprintf(err, errlen, "%s", S_ISDIR(st.st_mode) ? "is a folder, not a cache file" : "is not a regular file");
        return STORE_DB_FAIL;
    }
    if (errno != ENOENT || mode != STORE_DB_RUN) {
        snprintf(err, errlen, "%s", strerror(errno));
        return STORE_DB_FAIL;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) /* another process made it just now */
        return STORE_DB_OK;
    if (fd < 0) {
        snprintf(err, errlen, "cannot create it: %s", strerror(errno));
        return STORE_DB_FAIL;
    }
    close(fd);
    *existed = 0;
    return STORE_DB_OK;
}

long long store_db_int(sqlite3 *db, const char *sql, int *rc)
{
    sqlite3_stmt *st;
    long long v = -1;
    *rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (*rc != SQLITE_OK)
        return -1;
    *rc = sqlite3_step(st);
    if (*rc == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
        *rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return v;
}

/* Reads the header and decides what the file is; makes the schema of a fresh STORE_DB_RUN store. */
/* A store made just now: WAL mode and the schema. Another process may be doing the same at the
 * same time (two runs started on one new store): a lock it holds is STORE_DB_AGAIN, and the
 * caller looks again once it may be done. */
static int create_schema(sqlite3 *db, char *err, size_t errlen)
{
    int rc = store_db_exec(db, "PRAGMA journal_mode=WAL");
    if (rc == SQLITE_OK)
        rc = store_db_exec(db, SCHEMA);
    if (rc == SQLITE_OK)
        return STORE_DB_OK;
    store_db_error(db, rc, "cannot be written", err, errlen); /* before a ROLLBACK replaces the reason */
    if (!sqlite3_get_autocommit(db))
        store_db_exec(db, "ROLLBACK");
    return store_db_busy(rc) ? STORE_DB_AGAIN : STORE_DB_READONLY;
}

static int check_schema(sqlite3 *db, enum store_db_mode mode, char *err, size_t errlen)
{
    int rc;
    /* One read transaction: the three figures are of one moment, not of before and after another
     * process's making of the schema. */
    store_db_exec(db, "BEGIN");
    long long app = store_db_int(db, "PRAGMA application_id", &rc);
    if (rc != SQLITE_OK) {
        int prim = rc & 0xff;
        if (prim == SQLITE_NOTADB)
            snprintf(err, errlen, "is not an annotate cache (not an SQLite database)");
        else
            store_db_error(db, rc, prim == SQLITE_READONLY || prim == SQLITE_CANTOPEN
                                       ? "cannot be used (is its folder read-only? the store needs its -wal and "
                                         "-shm files beside it)"
                                       : "cannot be read",
                           err, errlen);
        if (!sqlite3_get_autocommit(db)) /* (after the reason is taken: a ROLLBACK replaces it) */
            store_db_exec(db, "ROLLBACK");
        return prim == SQLITE_NOTADB ? STORE_DB_FAIL : STORE_DB_READONLY;
    }
    long long tables = store_db_int(db, "SELECT count(*) FROM sqlite_schema", &rc);
    long long version = store_db_int(db, "PRAGMA user_version", &rc);
    store_db_exec(db, "COMMIT");
    if (app == 0 && tables == 0 && mode == STORE_DB_RUN)
        return create_schema(db, err, errlen);
    if (app != STORE_APP_ID) {
        snprintf(err, errlen, "is not an annotate cache (%s)",
                 tables == 0 ? "an empty database" : "an SQLite database of another program");
        return STORE_DB_FAIL;
    }
    if (version > STORE_SCHEMA) {
        snprintf(err, errlen, "was made by a newer annotate (schema %lld; this one reads %d)", version,
                 STORE_SCHEMA);
        return STORE_DB_FAIL;
    }
    if (version < STORE_SCHEMA && mode == STORE_DB_RUN) {
        snprintf(err, errlen,
                 "was made by an earlier annotate, whose keys were SHA-256: this one's are BLAKE3, and can find "
                 "none of its answers. Give --cache another file, or delete this one");
        return STORE_DB_FAIL;
    }
    return STORE_DB_OK;
}

/* An existing store must be in WAL mode (a copy made with another tool may not be) and, unless
 * only read, writable. */
static int check_writable(sqlite3 *db, enum store_db_mode mode, char *err, size_t errlen)
{
    if (mode == STORE_DB_READ)
        return STORE_DB_OK;
    if (sqlite3_db_readonly(db, "main") == 1) {
        snprintf(err, errlen, "cannot be written (the file is read-only)");
        return STORE_DB_READONLY;
    }
    sqlite3_stmt *st;
    int wal = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK) {
        wal = sqlite3_step(st) == SQLITE_ROW && !sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
    }
    if (!wal) {
        snprintf(err, errlen, "cannot be written (cannot switch it to WAL mode: %s)", sqlite3_errmsg(db));
        return STORE_DB_READONLY;
    }
    return STORE_DB_OK;
}

int store_db_open(const char *path, enum store_db_mode mode, int busy_ms, int cache_kib, sqlite3 **db,
                  char *err, size_t errlen)
{
    int existed, rc = make_file(path, mode, &existed, err, errlen);
    *db = NULL;
    if (rc != STORE_DB_OK)
        return rc;
    int flags = (mode == STORE_DB_READ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
    sqlite3 *d = NULL;
    if ((rc = sqlite3_open_v2(path, &d, flags, NULL)) != SQLITE_OK) {
        store_db_error(d, rc, "cannot be opened", err, errlen);
        sqlite3_close(d);
        return existed ? STORE_DB_READONLY : STORE_DB_FAIL;
    }
    sqlite3_extended_result_codes(d, 1);
    sqlite3_busy_timeout(d, busy_ms);
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA cache_size=-%d", cache_kib > 0 ? cache_kib : 2048);
    store_db_exec(d, pragma);
    /* Another process making the same new store holds it for a moment: wait for it, within the
     * busy timeout, then read what it made. */
    for (int waited = 0; (rc = check_schema(d, mode, err, errlen)) == STORE_DB_AGAIN && waited < busy_ms; waited += 10)
        usleep(10000);
    if (rc == STORE_DB_AGAIN)
        rc = STORE_DB_READONLY;
    if (rc == STORE_DB_OK)
        rc = check_writable(d, mode, err, errlen);
    if (rc == STORE_DB_OK && mode != STORE_DB_READ)
        store_db_exec(d, STORE_DB_WRITE_PRAGMAS);
    if (rc != STORE_DB_OK) {
        sqlite3_close(d);
        if (!existed) { /* made just now and unusable: as if it could not be created */
            unlink(path);
            rc = STORE_DB_FAIL;
        }
        return rc;
    }
    *db = d;
    return STORE_DB_OK;
}
