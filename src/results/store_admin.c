/* store_admin: store_stats and store_prune (store.h), for `annotate cache stats|prune`. Both
 * walk the answers of one identity as a range of the primary key: the keys that start with its 8
 * bytes. Every entry has its identity's stage row: a put writes the row in the entry's
 * transaction or an earlier one, and prune drops a row only once its range is empty. */
#include "results/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "results/store_db.h"

#define PRUNE_CHUNK 10000

/* The stage rows, by name then URL, into *out (malloc'd, zeroed counts). 0, or -1 with err. */
static int load_stages(sqlite3 *db, struct store_stage_stats **out, int *n, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    *out = NULL;
    *n = 0;
    int rc = sqlite3_prepare_v2(db, "SELECT ident, name, url, version FROM stage ORDER BY name, url, ident", -1,
                                &st, NULL);
    int cap = 0;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(st)) != SQLITE_ROW)
            break;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            struct store_stage_stats *p = realloc(*out, (size_t)cap * sizeof *p);
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = p;
        }
        struct store_stage_stats *s = &(*out)[(*n)++];
        memset(s, 0, sizeof *s);
        int len = sqlite3_column_bytes(st, 0);
        memcpy(s->ident.id, sqlite3_column_blob(st, 0), len < STORE_IDENT_BYTES ? (size_t)len : STORE_IDENT_BYTES);
        snprintf(s->ident.name, sizeof s->ident.name, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(s->ident.url, sizeof s->ident.url, "%s", (const char *)sqlite3_column_text(st, 2));
        snprintf(s->ident.version, sizeof s->ident.version, "%s", (const char *)sqlite3_column_text(st, 3));
    }
    if (rc == SQLITE_DONE)
        rc = SQLITE_OK;
    if (rc != SQLITE_OK)
        store_db_error(db, rc, "cannot be read", err, errlen);
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : -1;
}

/* The key range of an identity's answers: [lo, hi] with both ends 24 bytes. */
static void key_range(const unsigned char *ident, unsigned char lo[STORE_KEY_BYTES], unsigned char hi[STORE_KEY_BYTES])
{
    memset(lo, 0, STORE_KEY_BYTES);
    memset(hi, 0xff, STORE_KEY_BYTES);
    memcpy(lo, ident, STORE_PREFIX_BYTES);
    memcpy(hi, ident, STORE_PREFIX_BYTES);
}

/* Counts one identity's entries. SQLite's length() of a blob reads no overflow page. */
static int count_stage(sqlite3_stmt *st, struct store_stage_stats *s)
{
    unsigned char lo[STORE_KEY_BYTES], hi[STORE_KEY_BYTES];
    key_range(s->ident.id, lo, hi);
    sqlite3_bind_blob(st, 1, lo, STORE_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, hi, STORE_KEY_BYTES, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        s->entries = (uint64_t)sqlite3_column_int64(st, 0);
        s->result_bytes = (uint64_t)sqlite3_column_int64(st, 1);
        s->oldest = sqlite3_column_int64(st, 2);
        s->newest = sqlite3_column_int64(st, 3);
        rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    return rc;
}

int store_stats(const char *path, struct store_summary *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    sqlite3 *db;
    char why[1024] = "";
    if (store_db_open(path, STORE_DB_READ, 10000, 16384, &db, why, sizeof why) != STORE_DB_OK) {
        snprintf(err, errlen, "cache %s: %s", path, why);
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int rc = load_stages(db, &out->stages, &out->n, why, sizeof why) ? SQLITE_ERROR : SQLITE_OK;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "SELECT count(*), coalesce(sum(length(result)), 0), coalesce(min(stored), 0),"
                                    " coalesce(max(stored), 0) FROM answer WHERE key >= ?1 AND key <= ?2",
                                -1, &st, NULL);
    for (int i = 0; rc == SQLITE_OK && i < out->n; i++) {
        rc = count_stage(st, &out->stages[i]);
        out->entries += out->stages[i].entries;
        out->result_bytes += out->stages[i].result_bytes;
    }
    if (rc != SQLITE_OK && why[0] == 0)
        store_db_error(db, rc, "cannot be read", why, sizeof why);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) {
        int vrc;
        long long version = store_db_int(db, "PRAGMA user_version", &vrc);
        out->old_keys = vrc == SQLITE_OK && version < STORE_SCHEMA;
    }
    sqlite3_close(db);
    out->file_bytes = store_db_file_size(path, "");
    out->wal_bytes = store_db_file_size(path, "-wal");
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cache %s: %s", path, why);
        store_summary_free(out);
        return -1;
    }
    return 0;
}

void store_summary_free(struct store_summary *sum)
{
    free(sum->stages);
    sum->stages = NULL;
    sum->n = 0;
}

/* ---- prune ---- */

/* 1 when arg names identity s: its name, or 6 to 32 hex digits its hash starts with. */
static int stage_matches(const char *arg, const struct store_ident *s)
{
    if (!strcmp(arg, s->name))
        return 1;
    size_t n = strlen(arg);
    if (n < 6 || n > 2 * STORE_IDENT_BYTES)
        return 0;
    char hex[2 * STORE_IDENT_BYTES + 1];
    hash_hex(s->id, STORE_IDENT_BYTES, hex);
    for (size_t i = 0; i < n; i++) {
        char c = arg[i] >= 'A' && arg[i] <= 'F' ? (char)(arg[i] - 'A' + 'a') : arg[i];
        if (c != hex[i])
            return 0;
    }
    return 1;
}

/* Which identities prune walks: sel[i] set for those that pass the stage and keep filters. 0, or
 * -1 with err when a --stage matches none. */
static int select_stages(const struct store_prune *p, const struct store_stage_stats *st, int n, char *sel,
                         char *err, size_t errlen)
{
    for (int i = 0; i < n; i++)
        sel[i] = 1;
    for (int a = 0; a < p->n_stages; a++) {
        int any = 0;
        for (int i = 0; i < n; i++)
            any |= stage_matches(p->stages[a], &st[i].ident);
        if (!any) {
            snprintf(err, errlen, "no stage identity is named \"%s\" or has a hash that starts so (annotate cache "
                                  "stats lists them)", p->stages[a]);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        int named = p->n_stages == 0;
        for (int a = 0; a < p->n_stages && !named; a++)
            named = stage_matches(p->stages[a], &st[i].ident);
        int kept = 0;
        for (int k = 0; p->keep_given && k < p->n_keep && !kept; k++)
            kept = !memcmp(p->keep[k], st[i].ident.id, STORE_IDENT_BYTES);
        sel[i] = named && !kept;
    }
    return 0;
}

/* Drops the entries of one identity put before cutoff, PRUNE_CHUNK to a transaction. SQLITE_OK
 * or the error. */
static int prune_stage(sqlite3_stmt *del, const struct store_ident *id, int64_t cutoff,
                       struct store_pruned *out)
{
    unsigned char lo[STORE_KEY_BYTES], hi[STORE_KEY_BYTES];
    key_range(id->id, lo, hi);
    for (;;) {
        sqlite3_bind_blob(del, 1, lo, STORE_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(del, 2, hi, STORE_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(del, 3, cutoff);
        sqlite3_bind_int(del, 4, PRUNE_CHUNK);
        int rc, rows = 0;
        while ((rc = sqlite3_step(del)) == SQLITE_ROW) {
            out->result_bytes += (uint64_t)sqlite3_column_int64(del, 0);
            rows++;
        }
        sqlite3_reset(del);
        if (rc != SQLITE_DONE)
            return rc;
        out->entries += (uint64_t)rows;
        if (rows < PRUNE_CHUNK)
            return SQLITE_OK;
    }
}

/* Drops the stage rows of the walked identities that have no entry left. */
static int drop_empty_stages(sqlite3 *db, const struct store_stage_stats *st, int n, const char *sel,
                             struct store_pruned *out)
{
    sqlite3_stmt *any, *drop;
    int rc = sqlite3_prepare_v2(db, "SELECT 1 FROM answer WHERE key >= ?1 AND key <= ?2 LIMIT 1", -1, &any, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_prepare_v2(db, "DELETE FROM stage WHERE prefix = ?1", -1, &drop, NULL);
    for (int i = 0; rc == SQLITE_OK && i < n; i++) {
        if (!sel[i])
            continue;
        unsigned char lo[STORE_KEY_BYTES], hi[STORE_KEY_BYTES];
        key_range(st[i].ident.id, lo, hi);
        sqlite3_bind_blob(any, 1, lo, STORE_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(any, 2, hi, STORE_KEY_BYTES, SQLITE_STATIC);
        rc = sqlite3_step(any);
        sqlite3_reset(any);
        if (rc == SQLITE_DONE) { /* empty: its description goes too */
            sqlite3_bind_blob(drop, 1, st[i].ident.id, STORE_PREFIX_BYTES, SQLITE_STATIC);
            rc = sqlite3_step(drop);
            sqlite3_reset(drop);
            out->identities += sqlite3_changes(db) > 0;
        }
        rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
    }
    sqlite3_finalize(any);
    sqlite3_finalize(drop);
    return rc;
}

/* The deletions, then the emptied stage rows, then VACUUM when asked. SQLITE_OK or the error. */
static int prune_run(sqlite3 *db, const struct store_prune *p, const struct store_stage_stats *st, int n,
                     const char *sel, struct store_pruned *out)
{
    int64_t cutoff = p->older_than > 0 ? (int64_t)time(NULL) - p->older_than : INT64_MAX;
    sqlite3_stmt *del;
    int rc = sqlite3_prepare_v2(db, "DELETE FROM answer WHERE key IN (SELECT key FROM answer WHERE key >= ?1 AND"
                                    " key <= ?2 AND stored < ?3 LIMIT ?4) RETURNING length(result)",
                                -1, &del, NULL);
    for (int i = 0; rc == SQLITE_OK && i < n; i++)
        if (sel[i])
            rc = prune_stage(del, &st[i].ident, cutoff, out);
    sqlite3_finalize(del);
    if (rc == SQLITE_OK)
        rc = drop_empty_stages(db, st, n, sel, out);
    if (rc == SQLITE_OK && p->vacuum)
        rc = store_db_exec(db, "VACUUM");
    if (rc == SQLITE_OK)
        store_db_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    return rc;
}

int store_prune(const char *path, const struct store_prune *p, struct store_pruned *out, char *err,
                size_t errlen)
{
    memset(out, 0, sizeof *out);
    sqlite3 *db;
    char why[1024] = "";
    int rc = store_db_open(path, STORE_DB_WRITE, 60000, 16384, &db, why, sizeof why);
    if (rc != STORE_DB_OK) {
        snprintf(err, errlen, "cache %s: %s", path, why);
        return -1;
    }
    out->file_before = store_db_file_size(path, "") + store_db_file_size(path, "-wal");
    struct store_stage_stats *st;
    int n;
    char *sel = NULL;
    rc = load_stages(db, &st, &n, why, sizeof why);
    if (rc == 0 && !(sel = malloc((size_t)n + 1))) {
        snprintf(why, sizeof why, "out of memory");
        rc = -1;
    }
    if (rc == 0)
        rc = select_stages(p, st, n, sel, why, sizeof why);
    if (rc == 0 && (rc = prune_run(db, p, st, n, sel, out)) != SQLITE_OK)
        store_db_error(db, rc, "cannot be written", why, sizeof why);
    sqlite3_close(db);
    free(st);
    free(sel);
    out->file_after = store_db_file_size(path, "") + store_db_file_size(path, "-wal");
    if (rc != 0) {
        snprintf(err, errlen, "cache %s: %s", path, why);
        return -1;
    }
    return 0;
}
