/* store_db: what store.c (the run's store) and store_admin.c (stats, prune) share: opening a file
 * as an answer store, its schema, and the reading of SQLite's errors. Internal to the store; the
 * schema is described in store.h. */
#ifndef ANNOTATE_STORE_DB_H
#define ANNOTATE_STORE_DB_H

#include <sqlite3.h>
#include <stddef.h>

#define STORE_APP_ID 0x414e4e4f /* "ANNO" */
/* 2: keys are BLAKE3 (common/hash.h). 1: they were SHA-256, so that none of a schema-1 store's
 * entries can be found by this annotate: a run refuses such a store (stats and prune read it). */
#define STORE_SCHEMA 2

enum store_db_open {
    STORE_DB_OK = 0,
    STORE_DB_FAIL = -1,     /* cannot be used at all: err says why (without the file's name); *db NULL */
    STORE_DB_READONLY = -2, /* exists but cannot be written: err says why; *db is NULL */
    STORE_DB_AGAIN = -3,    /* (inside store_db.c only: another process holds the new store) */
};

enum store_db_mode {
    STORE_DB_RUN,   /* the run's store: create the file (0600) and the schema when missing; the
                     * file must be writable */
    STORE_DB_WRITE, /* prune: an existing store, writable */
    STORE_DB_READ,  /* stats: an existing store, read-only is fine */
};

/* What a connection that writes runs with (store.h says why): synchronous=NORMAL (a commit is
 * atomic and durable against a crash of the process; the WAL is synced at each checkpoint, so a
 * power cut cannot tear the file's pages), a checkpoint every STORE_DB_CHECKPOINT pages of WAL
 * (a run's store makes its own instead, on a thread beside the writer: store.h), and the WAL cut
 * back to 16 MiB after one. */
#ifndef STORE_DB_CHECKPOINT
#define STORE_DB_CHECKPOINT 4096
#endif
#ifndef STORE_DB_SYNCHRONOUS /* (a build with -DSTORE_DB_SYNCHRONOUS=OFF measures what NORMAL costs) */
#define STORE_DB_SYNCHRONOUS NORMAL
#endif
#define STORE_DB_STR(x) #x
#define STORE_DB_XSTR(x) STORE_DB_STR(x)
#define STORE_DB_WRITE_PRAGMAS                                                                               \
    "PRAGMA synchronous=" STORE_DB_XSTR(STORE_DB_SYNCHRONOUS) "; PRAGMA wal_autocheckpoint="                  \
    STORE_DB_XSTR(STORE_DB_CHECKPOINT) ";"                                                                   \
    " PRAGMA journal_size_limit=16777216"

/* Opens path as a store. busy_ms: the connection's busy_timeout. cache_kib: its page cache. Sets
 * WAL (the file's mode, once) and, to write, STORE_DB_WRITE_PRAGMAS. Returns an enum
 * store_db_open. */
int store_db_open(const char *path, enum store_db_mode mode, int busy_ms, int cache_kib, sqlite3 **db,
                  char *err, size_t errlen);

/* 1 when an error code (primary or extended) means another connection holds a lock: wait and
 * try again, the store is fine. */
int store_db_busy(int rc);

/* The one integer sql gives (a PRAGMA, a count), or -1 with *rc the error; *rc is SQLITE_OK
 * otherwise. */
long long store_db_int(sqlite3 *db, const char *sql, int *rc);

/* Runs sql (statements without results). SQLITE_OK or the error code. */
int store_db_exec(sqlite3 *db, const char *sql);

/* "what: SQLite's message (the system's error when there is one)" into err. */
void store_db_error(sqlite3 *db, int rc, const char *what, char *err, size_t errlen);

/* Bytes of a file, 0 when missing. */
unsigned long long store_db_file_size(const char *path, const char *suffix);

#endif
