/* store: see store.h. The run's side: keys, lookups through a pool of read connections, puts
 * into a bounded buffer that the writer thread commits in batches, and the switch that turns
 * the store off. store_admin.c holds stats and prune, store_db.c the opening of the file.
 *
 * Locks: s->mu guards the buffers, the identities and the writer's state; s->pool_mu the read
 * connections. pool_mu may be held when mu is taken (a read connection that cannot be opened
 * turns the store off), never the other way round; SQLite is never called under mu. */
#include "results/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "results/store_db.h"

/* ---- identities and keys ---- */

static const char IDENT_DOMAIN[] = "annotate stage identity 1";
static const char KEY_DOMAIN[] = "annotate request 1";

int store_ident_begin(struct hash_ctx *h)
{
    if (hash_init(h))
        return -1;
    hash_part(h, IDENT_DOMAIN, sizeof IDENT_DOMAIN - 1);
    return 0;
}

void store_ident_add(struct hash_ctx *h, const char *what, const void *p, size_t n)
{
    hash_part(h, what, strlen(what));
    hash_part(h, p, n);
}

/* Copies text into out (cap bytes): NULL as "", control characters as '?', cut at a character
 * boundary of UTF-8 so that what stats prints stays valid text. */
static void describe(char *out, size_t cap, const char *text)
{
    size_t n = text ? strlen(text) : 0;
    if (n > cap - 1) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
    out[n] = 0;
}

int store_ident_end(struct hash_ctx *h, struct store_ident *id, const char *name, const char *url,
                    const char *version)
{
    unsigned char d[HASH_BYTES];
    int rc = hash_final(h, d);
    memcpy(id->id, d, STORE_IDENT_BYTES);
    describe(id->name, sizeof id->name, name);
    describe(id->url, sizeof id->url, url);
    describe(id->version, sizeof id->version, version);
    return rc;
}

int store_key_begin(struct hash_ctx *h, const struct store_ident *id)
{
    if (hash_init(h))
        return -1;
    hash_part(h, KEY_DOMAIN, sizeof KEY_DOMAIN - 1);
    hash_update(h, id->id, STORE_IDENT_BYTES);
    return 0;
}

void store_key_bytes_begin(struct hash_ctx *h, uint64_t total)
{
    hash_update(h, "B", 1);
    hash_part_begin(h, total);
}

void store_key_bytes(struct hash_ctx *h, const void *p, size_t n)
{
    store_key_bytes_begin(h, n);
    hash_update(h, p, n);
}

void store_key_image(struct hash_ctx *h, const unsigned char digest[HASH_BYTES])
{
    hash_update(h, "I", 1);
    hash_update(h, digest, HASH_BYTES);
}

int store_key_end(struct hash_ctx *h, const struct store_ident *id, struct store_key *k)
{
    unsigned char d[HASH_BYTES];
    int rc = hash_final(h, d);
    memcpy(k->b, id->id, STORE_PREFIX_BYTES);
    memcpy(k->b + STORE_PREFIX_BYTES, d, STORE_KEY_BYTES - STORE_PREFIX_BYTES);
    return rc;
}

/* ---- the write buffer: one batch, with an index by key ---- */

struct entry {
    unsigned char key[STORE_KEY_BYTES];
    int64_t stored;
    size_t off, len; /* in the batch's bytes */
};

struct batch {
    struct entry *e;
    size_t n, cap;
    char *bytes;
    size_t used, bytes_cap;
    uint32_t *slot; /* open addressing: entry index + 1, 0 empty; nslot a power of two > 2 cap */
    size_t nslot;
    long first_ms;  /* when its first entry came (CLOCK_MONOTONIC) */
};

static long mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int batch_init(struct batch *b, size_t entries)
{
    memset(b, 0, sizeof *b);
    b->cap = entries;
    b->nslot = 1;
    while (b->nslot < 2 * entries + 1)
        b->nslot <<= 1;
    b->e = malloc(entries * sizeof *b->e);
    b->slot = calloc(b->nslot, sizeof *b->slot);
    return b->e && b->slot ? 0 : -1;
}

static void batch_free(struct batch *b)
{
    free(b->e);
    free(b->bytes);
    free(b->slot);
    memset(b, 0, sizeof *b);
}

/* Empties b, keeping its memory unless an oversized result made it grow past limit. */
static void batch_clear(struct batch *b, size_t limit)
{
    b->n = 0;
    b->used = 0;
    memset(b->slot, 0, b->nslot * sizeof *b->slot);
    if (b->bytes_cap > limit) {
        free(b->bytes);
        b->bytes = NULL;
        b->bytes_cap = 0;
    }
}

/* The slot of key: where it is, or the empty slot where it would go. Keys are hash outputs, so
 * their bytes 8.. are a good index already. */
static size_t batch_slot(const struct batch *b, const unsigned char *key)
{
    uint64_t h;
    memcpy(&h, key + STORE_PREFIX_BYTES, sizeof h);
    size_t i = (size_t)h & (b->nslot - 1);
    while (b->slot[i] && memcmp(b->e[b->slot[i] - 1].key, key, STORE_KEY_BYTES))
        i = (i + 1) & (b->nslot - 1);
    return i;
}

static const struct entry *batch_find(const struct batch *b, const unsigned char *key)
{
    if (!b->n)
        return NULL;
    uint32_t v = b->slot[batch_slot(b, key)];
    return v ? &b->e[v - 1] : NULL;
}

/* Adds an entry (the key is not in b, there is room for one). 0, or -1 when memory runs out. */
static int batch_add(struct batch *b, const unsigned char *key, const void *bytes, size_t len)
{
    if (b->used + len > b->bytes_cap) {
        size_t cap = b->bytes_cap ? b->bytes_cap : 65536;
        while (cap < b->used + len)
            cap *= 2;
        char *p = realloc(b->bytes, cap);
        if (!p)
            return -1;
        b->bytes = p;
        b->bytes_cap = cap;
    }
    struct entry *e = &b->e[b->n];
    memcpy(e->key, key, STORE_KEY_BYTES);
    e->stored = (int64_t)time(NULL);
    e->off = b->used;
    e->len = len;
    if (len)
        memcpy(b->bytes + b->used, bytes, len);
    b->used += len;
    if (b->n == 0)
        b->first_ms = mono_ms();
    b->slot[batch_slot(b, key)] = (uint32_t)++b->n;
    return 0;
}

/* ---- the store ---- */

struct reader {
    sqlite3 *db;
    sqlite3_stmt *get;
};

struct known { /* an identity put through this handle */
    struct store_ident id;
    int described; /* its stage row is committed */
};

struct store {
    char *path;
    struct store_opts o;

    pthread_mutex_t mu;
    pthread_cond_t wake;  /* the writer: work to do */
    pthread_cond_t done;  /* putters and flushers: a batch was committed (or the store turned off) */
    struct batch fill;    /* taking puts */
    struct batch commit;  /* being committed by the writer (lookups still see it) */
    int committing, closing;
    uint64_t flush_asked, flush_done;
    struct known *known;
    size_t n_known, cap_known;
    char failure[1024];
    int failure_told;

    atomic_int off;
    atomic_uint_fast64_t hits, misses, puts, committed, batches, waits, dropped, too_big, checkpoints, catch_ups,
        wal_longest;

    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    struct reader *readers; /* [o.readers]; the first n_open are open */
    int *free_list, n_free, n_open;

    sqlite3 *wdb;
    sqlite3_stmt *ins, *desc;
    pthread_t writer;
    int writer_running;
    int wal_now; /* the writer's: the WAL's length after its last commit (on_commit) */

    sqlite3 *cdb; /* the checkpointer's connection (NULL: SQLite's own checkpoints, in the writer) */
    pthread_t checkpointer;
    pthread_cond_t ckpt_wake; /* the checkpointer: a pass is due, or stop */
    pthread_cond_t ckpt_done; /* the writer: a pass ended */
    int ckpt_due, ckpt_busy, ckpt_stop; /* under mu */
};

/* Turns the store off, once, with why (every later call keeps the first reason). Wakes whoever
 * waits for the writer. */
static void go_off(struct store *s, const char *why)
{
    pthread_mutex_lock(&s->mu);
    if (!atomic_load(&s->off)) {
        snprintf(s->failure, sizeof s->failure, "cache %s: %s: going on without it", s->path, why);
        atomic_store(&s->off, 1);
    }
    pthread_cond_broadcast(&s->done);
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
}

static void go_off_db(struct store *s, sqlite3 *db, int rc, const char *what)
{
    char why[900];
    store_db_error(db, rc, what, why, sizeof why);
    go_off(s, why);
}

/* ---- lookups ---- */

static void reader_close(struct reader *r)
{
    sqlite3_finalize(r->get);
    sqlite3_close(r->db);
    r->get = NULL;
    r->db = NULL;
}

/* Opens reader slot i. 0, or -1 (the store is then off, unless another process only held a lock). */
static int reader_open(struct store *s, struct reader *r)
{
    char err[1024];
    int rc = store_db_open(s->path, STORE_DB_RUN, s->o.busy_ms, s->o.cache_kib, &r->db, err, sizeof err);
    if (rc != STORE_DB_OK) {
        go_off(s, err);
        return -1;
    }
    rc = sqlite3_prepare_v3(r->db, "SELECT result FROM answer WHERE key=?1", -1, SQLITE_PREPARE_PERSISTENT,
                            &r->get, NULL);
    if (rc != SQLITE_OK) {
        go_off_db(s, r->db, rc, "cannot be read");
        reader_close(r);
        return -1;
    }
    store_db_exec(r->db, "PRAGMA query_only=1");
    return 0;
}

/* A read connection for this thread: a free one, a new one, or the next one given back. NULL
 * when none can be opened. */
static struct reader *reader_take(struct store *s)
{
    pthread_mutex_lock(&s->pool_mu);
    while (!s->n_free && s->n_open >= s->o.readers && !atomic_load(&s->off))
        pthread_cond_wait(&s->pool_cv, &s->pool_mu);
    struct reader *r = NULL;
    if (atomic_load(&s->off))
        pthread_cond_broadcast(&s->pool_cv); /* the other waiters leave too */
    else if (s->n_free)
        r = &s->readers[s->free_list[--s->n_free]];
    else if (reader_open(s, &s->readers[s->n_open]) == 0)
        r = &s->readers[s->n_open++];
    pthread_mutex_unlock(&s->pool_mu);
    return r;
}

static void reader_give(struct store *s, struct reader *r)
{
    pthread_mutex_lock(&s->pool_mu);
    s->free_list[s->n_free++] = (int)(r - s->readers);
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}

static char *copy_bytes(const void *p, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        if (n)
            memcpy(c, p, n);
        c[n] = 0;
    }
    return c;
}

/* The key in the write buffer: 1 (and a copy), 0 not there, -1 out of memory. */
static int get_pending(struct store *s, const struct store_key *k, char **bytes, size_t *len)
{
    pthread_mutex_lock(&s->mu);
    const struct batch *b = &s->fill;
    const struct entry *e = batch_find(b, k->b);
    if (!e && s->committing)
        e = batch_find(b = &s->commit, k->b);
    if (e) {
        *bytes = copy_bytes(b->bytes + e->off, e->len);
        *len = e->len;
    }
    pthread_mutex_unlock(&s->mu);
    return e ? (*bytes ? 1 : -1) : 0;
}

/* The key in the file: 1 (and a copy), 0 not there (or out of memory, or the store is off). */
static int get_committed(struct store *s, const struct store_key *k, char **bytes, size_t *len)
{
    struct reader *r = reader_take(s);
    if (!r)
        return 0;
    int found = 0;
    sqlite3_bind_blob(r->get, 1, k->b, STORE_KEY_BYTES, SQLITE_STATIC);
    int rc = sqlite3_step(r->get);
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(r->get, 0);
        *bytes = copy_bytes(sqlite3_column_blob(r->get, 0), n);
        *len = n;
        found = *bytes != NULL;
    } else if (rc != SQLITE_DONE && !store_db_busy(rc)) {
        go_off_db(s, r->db, rc, "cannot be read");
    }
    sqlite3_reset(r->get);
    sqlite3_clear_bindings(r->get);
    reader_give(s, r);
    return found;
}

int store_get(struct store *s, const struct store_key *k, char **bytes, size_t *len)
{
    *bytes = NULL;
    *len = 0;
    if (!s || atomic_load(&s->off))
        return 0;
    int found = get_pending(s, k, bytes, len);
    if (found == 0)
        found = get_committed(s, k, bytes, len);
    if (found < 0)
        found = 0;
    atomic_fetch_add(found ? &s->hits : &s->misses, 1);
    return found;
}

/* ---- identities ---- */

/* Under mu: the known identity id, or NULL. */
static struct known *known_of(struct store *s, const struct store_ident *id)
{
    for (size_t i = s->n_known; i-- > 0;)
        if (!memcmp(s->known[i].id.id, id->id, STORE_IDENT_BYTES))
            return &s->known[i];
    return NULL;
}

int store_has_ident(struct store *s, const struct store_ident *id)
{
    if (!s || atomic_load(&s->off))
        return 0;
    pthread_mutex_lock(&s->mu);
    int put = known_of(s, id) != NULL;
    pthread_mutex_unlock(&s->mu);
    if (put)
        return 1;
    struct reader *r = reader_take(s);
    if (!r)
        return 0;
    sqlite3_stmt *st;
    int has = 0;
    if (sqlite3_prepare_v2(r->db, "SELECT ident FROM stage WHERE prefix=?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, id->id, STORE_PREFIX_BYTES, SQLITE_STATIC);
        has = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == STORE_IDENT_BYTES &&
              !memcmp(sqlite3_column_blob(st, 0), id->id, STORE_IDENT_BYTES);
        sqlite3_finalize(st);
    }
    reader_give(s, r);
    return has;
}

int store_off(struct store *s)
{
    return s && atomic_load(&s->off);
}

/* ---- puts ---- */

/* Adds id to the known identities (under mu). 0, or -1 when memory runs out. */
static int know(struct store *s, const struct store_ident *id)
{
    if (known_of(s, id))
        return 0;
    if (s->n_known == s->cap_known) {
        size_t cap = s->cap_known ? 2 * s->cap_known : 16;
        struct known *k = realloc(s->known, cap * sizeof *k);
        if (!k)
            return -1;
        s->known = k;
        s->cap_known = cap;
    }
    s->known[s->n_known].id = *id;
    s->known[s->n_known++].described = 0;
    return 0;
}

static int batch_full(const struct store *s, const struct batch *b)
{
    return b->n >= (size_t)s->o.batch_entries || (b->n && b->used >= s->o.buffer_bytes);
}

int store_put(struct store *s, const struct store_key *k, const struct store_ident *id, const void *bytes,
              size_t len)
{
    if (!s || atomic_load(&s->off))
        return 0;
    if (len > STORE_RESULT_MAX) {
        atomic_fetch_add(&s->too_big, 1);
        return 0;
    }
    pthread_mutex_lock(&s->mu);
    int waited = 0;
    while (!atomic_load(&s->off) && batch_full(s, &s->fill)) {
        waited = 1;
        pthread_cond_signal(&s->wake);
        pthread_cond_wait(&s->done, &s->mu);
    }
    int taken = 0;
    if (!atomic_load(&s->off) && !batch_find(&s->fill, k->b) && !(s->committing && batch_find(&s->commit, k->b))) {
        /* Out of memory: not stored, as if the answer had not come (it is asked again next time). */
        taken = know(s, id) == 0 && batch_add(&s->fill, k->b, bytes, len) == 0;
        /* The first entry starts the batch's clock; a full batch is due now. */
        if (taken && (s->fill.n == 1 || batch_full(s, &s->fill)))
            pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->mu);
    if (waited)
        atomic_fetch_add(&s->waits, 1);
    if (taken)
        atomic_fetch_add(&s->puts, 1);
    return taken;
}

/* ---- the checkpointer ----
 *
 * A commit appends the pages it changed to the WAL; a checkpoint copies them into the file and,
 * at synchronous=NORMAL, syncs the WAL before and the file after. SQLite's own checkpoint runs
 * inside the commit that leaves the WAL wal_pages long, so the writer would wait for those syncs
 * and copies: about half of its time at a few million entries (bench-cache-store). Here the
 * writer's commits only tell (on_commit) and the checkpointer thread copies on a connection of
 * its own (PASSIVE: it takes no lock a writer or reader waits for), while the writer goes on
 * with the next batch.
 *
 * The WAL starts over only at a transaction that begins with all of it copied. A writer that
 * never pauses (a long run against fast servers) would so make it grow without end: after a
 * commit that leaves it wal_max_pages long, the writer waits for the checkpointer's pass and
 * copies the rest itself (FULL), so that its next transaction starts it over. A run that puts
 * fewer answers than the writer can commit in its second never gets there. */

/* SQLite's WAL hook on the writer's connection, called on its thread after each commit with the
 * WAL's length in pages (it replaces SQLite's own checkpoints on that connection). */
static int on_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store *s = arg;
    (void)db;
    (void)name;
    s->wal_now = pages;
    if ((uint64_t)pages > atomic_load(&s->wal_longest))
        atomic_store(&s->wal_longest, (uint64_t)pages); /* (only this thread writes it) */
    if (pages >= s->o.wal_pages) {
        pthread_mutex_lock(&s->mu);
        s->ckpt_due = 1;
        pthread_cond_signal(&s->ckpt_wake);
        pthread_mutex_unlock(&s->mu);
    }
    return SQLITE_OK;
}

/* The writer, the WAL wal_max_pages long: waits for the checkpointer's pass, then copies what
 * is left. An error other than another process's lock turns the store off: copies that cannot
 * be made would leave the WAL to grow without end. */
static void wal_catch_up(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->ckpt_busy)
        pthread_cond_wait(&s->ckpt_done, &s->mu);
    s->ckpt_due = 0; /* this one copies it all */
    pthread_mutex_unlock(&s->mu);
    int rc = sqlite3_wal_checkpoint_v2(s->wdb, NULL, SQLITE_CHECKPOINT_FULL, NULL, NULL);
    if (rc != SQLITE_OK && !store_db_busy(rc))
        go_off_db(s, s->wdb, rc, "cannot be written");
    atomic_fetch_add(&s->catch_ups, 1);
}

/* Its errors are left to the writer's catch-up: a pass that fails is tried again after the next
 * commit, and the writer's FULL checkpoint meets the same error if it stays. */
static void *checkpointer_main(void *arg)
{
    struct store *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->ckpt_due && !s->ckpt_stop)
            pthread_cond_wait(&s->ckpt_wake, &s->mu);
        if (s->ckpt_stop)
            break;
        s->ckpt_due = 0;
        s->ckpt_busy = 1;
        pthread_mutex_unlock(&s->mu);
        sqlite3_wal_checkpoint_v2(s->cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        atomic_fetch_add(&s->checkpoints, 1);
        pthread_mutex_lock(&s->mu);
        s->ckpt_busy = 0;
        pthread_cond_broadcast(&s->ckpt_done);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The checkpointer's connection and thread, when they can be had (and are wanted): without them,
 * SQLite's own checkpoints go on in the writer's commits, after each that leaves wal_pages, as
 * before there was a checkpointer. It reads no entries: a small page cache. */
static void checkpointer_start(struct store *s)
{
    char err[1024];
    if (!s->o.no_checkpointer &&
        store_db_open(s->path, STORE_DB_RUN, s->o.busy_ms, 256, &s->cdb, err, sizeof err) == STORE_DB_OK) {
        if (pthread_create(&s->checkpointer, NULL, checkpointer_main, s) == 0) {
            sqlite3_wal_hook(s->wdb, on_commit, s); /* (in place of SQLite's own checkpoints) */
            return;
        }
        sqlite3_close(s->cdb);
        s->cdb = NULL;
    }
    sqlite3_wal_autocheckpoint(s->wdb, s->o.wal_pages);
}

static void checkpointer_stop(struct store *s)
{
    if (!s->cdb)
        return;
    pthread_mutex_lock(&s->mu);
    s->ckpt_stop = 1;
    pthread_cond_signal(&s->ckpt_wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->checkpointer, NULL);
    sqlite3_close(s->cdb);
    s->cdb = NULL;
}

/* ---- the writer ---- */

static int by_key(const void *a, const void *b, void *batch)
{
    const struct entry *e = ((const struct batch *)batch)->e;
    return memcmp(e[*(const uint32_t *)a].key, e[*(const uint32_t *)b].key, STORE_KEY_BYTES);
}

static int describe_ident(struct store *s, const struct store_ident *id)
{
    sqlite3_stmt *d = s->desc;
    sqlite3_bind_blob(d, 1, id->id, STORE_PREFIX_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(d, 2, id->id, STORE_IDENT_BYTES, SQLITE_STATIC);
    sqlite3_bind_text(d, 3, id->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(d, 4, id->url, -1, SQLITE_STATIC);
    sqlite3_bind_text(d, 5, id->version, -1, SQLITE_STATIC);
    sqlite3_bind_int64(d, 6, (sqlite3_int64)time(NULL));
    int rc = sqlite3_step(d);
    sqlite3_reset(d);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* One transaction: the identities to describe, then the entries in key order (neighbours share
 * pages). SQLITE_OK, or the error (rolled back, what SQLite said in why). *added gets the
 * entries that were new. */
static int write_batch(struct store *s, const struct batch *b, const uint32_t *order,
                       const struct store_ident *desc, size_t n_desc, uint64_t *added, char *why, size_t whylen)
{
    int rc = store_db_exec(s->wdb, "BEGIN IMMEDIATE");
    *added = 0;
    for (size_t i = 0; rc == SQLITE_OK && i < n_desc; i++)
        rc = describe_ident(s, &desc[i]);
    for (size_t i = 0; rc == SQLITE_OK && i < b->n; i++) {
        const struct entry *e = &b->e[order[i]];
        sqlite3_bind_blob(s->ins, 1, e->key, STORE_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(s->ins, 2, e->stored);
        sqlite3_bind_blob(s->ins, 3, e->len ? b->bytes + e->off : "", (int)e->len, SQLITE_STATIC);
        rc = sqlite3_step(s->ins);
        sqlite3_reset(s->ins);
        if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
            *added += (uint64_t)sqlite3_changes(s->wdb);
        }
    }
    if (rc == SQLITE_OK)
        rc = store_db_exec(s->wdb, "COMMIT");
    if (rc != SQLITE_OK) {
        store_db_error(s->wdb, rc, "cannot be written", why, whylen);
        store_db_exec(s->wdb, "ROLLBACK");
    }
    return rc;
}

/* Commits the batch the writer took, trying again while another process holds the lock (at
 * close, three times at most). 0, or -1: the store is off. */
static int commit_batch(struct store *s, const struct batch *b, uint32_t *order, const struct store_ident *desc,
                        size_t n_desc)
{
    for (size_t i = 0; i < b->n; i++)
        order[i] = (uint32_t)i;
    qsort_r(order, b->n, sizeof *order, by_key, (void *)b);
    for (int tries = 1;; tries++) {
        uint64_t added;
        char why[900];
        int rc = write_batch(s, b, order, desc, n_desc, &added, why, sizeof why);
        if (rc == SQLITE_OK) {
            atomic_fetch_add(&s->committed, added);
            atomic_fetch_add(&s->batches, 1);
            if (s->cdb && s->wal_now >= s->o.wal_max_pages)
                wal_catch_up(s);
            return 0;
        }
        if (!store_db_busy(rc)) {
            go_off(s, why);
            return -1;
        }
        pthread_mutex_lock(&s->mu);
        int closing = s->closing;
        pthread_mutex_unlock(&s->mu);
        if (closing && tries >= 3) {
            go_off(s, "cannot be written (another process kept it locked)");
            return -1;
        }
    }
}

/* Under mu: waits until the fill batch is to be committed, a flush is asked, or the store
 * closes or is off. */
static void writer_wait(struct store *s)
{
    while (!s->closing && !atomic_load(&s->off) && !batch_full(s, &s->fill) && s->flush_asked == s->flush_done) {
        if (!s->fill.n) {
            pthread_cond_wait(&s->wake, &s->mu);
            continue;
        }
        long due = s->fill.first_ms + s->o.batch_ms;
        if (mono_ms() >= due)
            return;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = due - mono_ms() + 1;
        t.tv_sec += ms / 1000;
        t.tv_nsec += (ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->wake, &s->mu, &t);
    }
}

/* Under mu: the identities whose stage rows are not committed yet, copied (NULL when none, or
 * out of memory: they are described with a later batch). */
static struct store_ident *undescribed(struct store *s, size_t *n)
{
    struct store_ident *d = NULL;
    *n = 0;
    for (size_t i = 0; i < s->n_known; i++)
        if (!s->known[i].described) {
            if (!d && !(d = malloc((s->n_known - i) * sizeof *d)))
                return NULL;
            d[(*n)++] = s->known[i].id;
        }
    return d;
}

static void mark_described(struct store *s, const struct store_ident *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < s->n_known; j++)
            if (!memcmp(s->known[j].id.id, d[i].id, STORE_IDENT_BYTES))
                s->known[j].described = 1;
}

/* Tells the owner of the store that each put of b is settled (o.settled), without mu: b is the
 * writer's while it is committing, or the store is off and nothing is added to it. */
static void tell_settled(struct store *s, const struct batch *b)
{
    if (!s->o.settled)
        return;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < b->n; i++)
        s->o.settled(s->o.settled_ud, b->e[i].key);
    pthread_mutex_lock(&s->mu);
}

/* Takes the fill batch, commits it without mu, and says so. Called and returns under mu. */
static void writer_round(struct store *s, uint32_t *order)
{
    struct batch t = s->commit;
    s->commit = s->fill;
    s->fill = t;
    s->committing = 1;
    uint64_t asked = s->flush_asked;
    size_t n_desc;
    struct store_ident *desc = undescribed(s, &n_desc);
    pthread_mutex_unlock(&s->mu);
    int rc = commit_batch(s, &s->commit, order, desc, n_desc);
    pthread_mutex_lock(&s->mu);
    if (rc == 0)
        mark_described(s, desc, n_desc);
    else
        atomic_fetch_add(&s->dropped, s->commit.n);
    tell_settled(s, &s->commit);
    free(desc);
    batch_clear(&s->commit, s->o.buffer_bytes);
    s->committing = 0;
    s->flush_done = asked;
    pthread_cond_broadcast(&s->done);
}

static void *writer_main(void *arg)
{
    struct store *s = arg;
    uint32_t *order = malloc((size_t)s->o.batch_entries * sizeof *order);
    if (!order)
        go_off(s, "out of memory");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        writer_wait(s);
        if (atomic_load(&s->off)) {
            atomic_fetch_add(&s->dropped, s->fill.n);
            tell_settled(s, &s->fill);
            batch_clear(&s->fill, 0);
            s->flush_done = s->flush_asked;
            pthread_cond_broadcast(&s->done);
            while (!s->closing)
                pthread_cond_wait(&s->wake, &s->mu);
            break;
        }
        if (s->fill.n) {
            writer_round(s, order);
            continue;
        }
        s->flush_done = s->flush_asked;
        pthread_cond_broadcast(&s->done);
        if (s->closing)
            break;
    }
    pthread_mutex_unlock(&s->mu);
    free(order);
    return NULL;
}

/* ---- open, flush, close ---- */

int store_flush(struct store *s)
{
    if (!s)
        return -1;
    pthread_mutex_lock(&s->mu);
    uint64_t mine = ++s->flush_asked;
    pthread_cond_signal(&s->wake);
    while (s->writer_running && !atomic_load(&s->off) && s->flush_done < mine)
        pthread_cond_wait(&s->done, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return atomic_load(&s->off) ? -1 : 0;
}

int store_failure(struct store *s, char *msg, size_t len)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&s->mu);
    int tell = atomic_load(&s->off) && !s->failure_told;
    if (tell) {
        s->failure_told = 1;
        snprintf(msg, len, "%s", s->failure);
    }
    pthread_mutex_unlock(&s->mu);
    return tell;
}

void store_get_counters(struct store *s, struct store_counters *c)
{
    memset(c, 0, sizeof *c);
    if (!s)
        return;
    c->hits = atomic_load(&s->hits);
    c->misses = atomic_load(&s->misses);
    c->puts = atomic_load(&s->puts);
    c->committed = atomic_load(&s->committed);
    c->batches = atomic_load(&s->batches);
    c->waits = atomic_load(&s->waits);
    c->dropped = atomic_load(&s->dropped);
    c->too_big = atomic_load(&s->too_big);
    c->checkpoints = atomic_load(&s->checkpoints);
    c->catch_ups = atomic_load(&s->catch_ups);
    c->wal_longest = atomic_load(&s->wal_longest);
    c->off = atomic_load(&s->off);
}

static void set_defaults(struct store_opts *o)
{
    if (o->batch_entries <= 0)
        o->batch_entries = 16384;
    if (o->batch_ms <= 0)
        o->batch_ms = 1000;
    if (!o->buffer_bytes)
        o->buffer_bytes = 8u << 20;
    if (o->readers <= 0)
        o->readers = 2;
    if (o->cache_kib <= 0)
        o->cache_kib = 16384;
    if (o->busy_ms <= 0)
        o->busy_ms = 10000;
    if (o->wal_pages <= 0)
        o->wal_pages = STORE_DB_CHECKPOINT;
    if (o->wal_max_pages <= 0)
        o->wal_max_pages = 16 * o->wal_pages;
}

/* Everything but the file: locks, buffers, the pool's slots. 0 or -1. */
static int store_init(struct store *s, const char *path, const struct store_opts *o)
{
    if (o)
        s->o = *o;
    set_defaults(&s->o);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->wake, &ca);
    pthread_cond_init(&s->done, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    pthread_cond_init(&s->ckpt_wake, NULL);
    pthread_cond_init(&s->ckpt_done, NULL);
    pthread_condattr_destroy(&ca);
    s->path = strdup(path);
    s->readers = calloc((size_t)s->o.readers, sizeof *s->readers);
    s->free_list = calloc((size_t)s->o.readers, sizeof *s->free_list);
    int b1 = batch_init(&s->fill, (size_t)s->o.batch_entries);
    int b2 = batch_init(&s->commit, (size_t)s->o.batch_entries);
    return s->path && s->readers && s->free_list && !b1 && !b2 ? 0 : -1;
}

static void store_free(struct store *s)
{
    checkpointer_stop(s); /* (after the writer's last commit) */
    for (int i = 0; i < s->n_open; i++)
        reader_close(&s->readers[i]);
    sqlite3_finalize(s->ins);
    sqlite3_finalize(s->desc);
    sqlite3_close(s->wdb);
    batch_free(&s->fill);
    batch_free(&s->commit);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->done);
    pthread_cond_destroy(&s->pool_cv);
    pthread_cond_destroy(&s->ckpt_wake);
    pthread_cond_destroy(&s->ckpt_done);
    free(s->readers);
    free(s->free_list);
    free(s->known);
    free(s->path);
    free(s);
}

/* The writer's connection, its statements and its thread. 0, or -1 with err. */
static int writer_start(struct store *s, char *err, size_t errlen)
{
    int rc = sqlite3_prepare_v3(s->wdb,
                                "INSERT INTO answer(key, stored, result) VALUES(?1, ?2, ?3) ON CONFLICT(key) DO NOTHING",
                                -1, SQLITE_PREPARE_PERSISTENT, &s->ins, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(s->wdb,
                                "INSERT INTO stage(prefix, ident, name, url, version, first) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
                                " ON CONFLICT(prefix) DO UPDATE SET ident=excluded.ident, name=excluded.name,"
                                " url=excluded.url, version=excluded.version",
                                -1, SQLITE_PREPARE_PERSISTENT, &s->desc, NULL);
    if (rc != SQLITE_OK) {
        store_db_error(s->wdb, rc, "cannot be used", err, errlen);
        return -1;
    }
    checkpointer_start(s);
    if (pthread_create(&s->writer, NULL, writer_main, s)) {
        snprintf(err, errlen, "cannot start its writer thread");
        return -1;
    }
    s->writer_running = 1;
    return 0;
}

struct store *store_open(const char *path, const struct store_opts *o, char *err, size_t errlen)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s || store_init(s, path, o)) {
        snprintf(err, errlen, "cache %s: out of memory", path);
        if (s)
            store_free(s);
        return NULL;
    }
    char why[1024];
    int rc = store_db_open(path, STORE_DB_RUN, s->o.busy_ms, s->o.cache_kib, &s->wdb, why, sizeof why);
    if (rc == STORE_DB_READONLY) {
        go_off(s, why);
        return s;
    }
    if (rc != STORE_DB_OK || writer_start(s, why, sizeof why)) {
        snprintf(err, errlen, "cache %s: %s", path, why);
        store_free(s);
        return NULL;
    }
    return s;
}

int store_close(struct store *s, char *msg, size_t len)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (s->writer_running)
        pthread_join(s->writer, NULL);
    int told = store_failure(s, msg, len);
    store_free(s);
    return told;
}
