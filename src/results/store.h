/* store: the answer store of --cache FILE. A stage's result for an ok answer, kept on disk under
 * a key made of what was asked, so that the same question is never sent twice: not for a copy
 * of an image under another name, not for a stage added to a finished run, not for the files a
 * folder kept when some of them changed.
 *
 * The file is an SQLite database (libsqlite3) in WAL mode, created 0600; anyone can open it with
 * the sqlite3 shell. Its schema (application_id 0x414e4e4f "ANNO", user_version 1):
 *
 *   answer(key BLOB PRIMARY KEY,   24 bytes: the identity's first 8 bytes, then 16 bytes of the
 *                                  request's content hash (store_key_end)
 *          stored INTEGER,         when it was put: Unix seconds
 *          result BLOB)            the result's bytes, exactly as put
 *          WITHOUT ROWID           the key is the row's only copy of itself
 *   stage(prefix BLOB PRIMARY KEY, the identity's first 8 bytes: its answers are the keys that
 *                                  start with them, a range of the primary key
 *         ident BLOB,              the identity's 16 bytes
 *         name, url, version TEXT, what stats shows: never a secret (see below)
 *         first INTEGER)           when the identity was first stored
 *         WITHOUT ROWID
 *
 * Bytes per entry beyond the result: the key (24), the time (4), the record and cell headers
 * (5 to 7) and the B-tree's free space (pages filled in random key order are about 70% full):
 * measured 51 at 10 million entries of 64-byte results (make bench-cache-store: a 1.15 GB
 * file). 1 million images through a five-stage chain of 200-byte results take about 1.3 GB.
 *
 * ---- Keys: identity and content ----
 *
 * A stage's identity is what decides its answer: the resolved URL (a list of replicas counts as
 * one: hash the first), the body or form template, the seed body's fields, "input", the
 * "result" and "error" expressions, and the stage's "version". Headers (tokens change),
 * timeouts, retries, limits and the batch size are not part of it, so a token never reaches the
 * store, not even hashed. Build it once per stage at start:
 *
 *     struct hash_ctx h;
 *     store_ident_begin(&h);
 *     store_ident_add(&h, "url", s->full_url, strlen(s->full_url));
 *     store_ident_add(&h, "body", <the body template's text>, len);
 *     ...                                   (any fixed set of names, in a fixed order)
 *     store_ident_end(&h, &ident, s->name, s->shown_url, version);
 *
 * The name, URL and version given to store_ident_end are the description stats shows; they are
 * stored as text, so the URL must be the shown one (${VAR} unexpanded), never one with a token
 * expanded into it. (A resolved URL that carries a token is only hashed: the hash does not give it
 * back.) A stage's name is not part of its identity: renaming a stage keeps its answers.
 *
 * A request's key is its identity and the bytes that would be sent, piece by piece as the body is
 * compiled (fixed text, earlier results as filled in, each part of a form with its name):
 *
 *     store_key_begin(&h, &ident);
 *     store_key_bytes(&h, piece, len);      (each piece, in order: framed, so pieces never run
 *                                            into each other)
 *     store_key_image(&h, image_digest);    (the image: see below)
 *     store_key_end(&h, &ident, &key);
 *
 * The image goes in as its digest, hash_bytes(file bytes), computed once when the image is
 * loaded and used in every stage's key: the same question as its base64 (the base64 is a
 * function of the bytes) at a quarter of the cost per stage, and one hash of 40 KB per image
 * however many stages send it. A stage that sends an element of an earlier result (input each)
 * hashes that element with store_key_bytes.
 *
 * Strength: the key holds 8 bytes of identity and 128 bits of a content hash that also covers
 * the identity's 16 bytes: two different questions share a key only with a BLAKE3 collision on
 * 128 bits (2^64 work for a crafted pair; 10^-21 by chance at a billion entries).
 *
 * ---- The store at run time ----
 *
 * Thread-safe: any number of threads (the threads strategy's workers, curl-multi loops) call
 * store_get and store_put at once. Worker processes each open the store themselves (after their
 * fork or exec: a handle never crosses a fork).
 *
 * Lookups use a pool of read connections, each with its statement prepared once: a lookup takes
 * a free connection (or opens one, up to opts.readers, or waits for one), runs it and gives it
 * back. Not one shared connection, whose mutex would serialise every lookup; not one per thread,
 * which would multiply the page cache by the threads strategy's workers (up to 4096). Two
 * connections served 56,000 (a load average of 6 to 10 from others) to 160,000 lookups/s at 10
 * million entries on the project's shared two-core machine, 9 us of CPU each: more than what a
 * fully cached re-run of 5,000 images/s through five stages asks. WAL lets the readers run while
 * the writer commits, in this process and in others.
 *
 * Puts are buffered and committed by the store's own writer thread, in one transaction per
 * batch: at most opts.batch_entries entries or opts.batch_ms milliseconds uncommitted. A kill -9
 * loses at most what was not committed (those questions are asked again) and never corrupts the
 * file: SQLite's WAL commits are atomic against the death of a process. The store runs with
 * synchronous=NORMAL (store_db.h): the WAL is synced before each checkpoint copies it into the
 * file and the file after, so that an operating-system crash or a power cut cannot tear a page
 * either: a cache that could hand back a changed value would break annotate's first promise.
 * What it costs, against synchronous=OFF (no syncs at all), measured with make bench-cache-store
 * at 3 million entries on the project's shared two-core machine: 24.4 against 17.7 us of CPU per
 * insert (the syncs' writes of the pages that random keys dirty); the inserts' wall-clock rate
 * follows the disk and the machine's load (27,000 against 43,000 a second in one pair of runs,
 * the other way round in another).
 *
 * Checkpoints (copying the WAL into the file, with those syncs) are made by a thread of their
 * own, on a connection of its own, once a commit leaves opts.wal_pages (4096) pages in the WAL:
 * the writer goes on with its next batch meanwhile (store.c, "the checkpointer"). A WAL starts
 * over only at a transaction that begins with all of it copied, which a writer that never pauses
 * never does: at opts.wal_max_pages (16 x 4096, 256 MiB at 4 KiB pages) the writer waits for the
 * copy and makes the rest itself (so the WAL holds at most that and one commit's pages: 342 MiB
 * at 10 million entries). Measured with make bench-cache-store at 10 million entries on the
 * shared machine, the builds in turns: 32,560 and 32,397 inserts/s against 24,041 and 24,785 with
 * SQLite's own checkpoints in the writer's commits; alone, 43,700 with synchronous=OFF and no
 * checkpointer, and 41,100 with a bound of 64 x 4096 pages (the WAL then reached 1.1 GB): the
 * bound stayed at 256 MiB, the disk a store may take for a while beyond its file. A run that puts fewer answers a second than
 * the writer commits (every run against model servers) never reaches it: its WAL starts over
 * after each pass. Without the checkpointer's connection or thread (they could not be had),
 * SQLite's own checkpoints go on in the writer's commits, as they did.
 * A store that meets an error (damage made by something else, a disk that fails) turns itself
 * off (below). A lookup sees its own process's puts at once, committed or not.
 *
 * Memory is bounded: each connection's page cache is opts.cache_kib (PRAGMA cache_size), and the
 * write buffer holds at most two batches (the one being committed and the one filling) of at
 * most batch_entries entries and buffer_bytes bytes of results each (the result that fills a
 * batch may go past it, once); a put that finds both full
 * waits for the writer (at the store's insert rate: 30,000-34,000 a second at 10 million
 * entries on the shared machine, more than most model servers answer). A result
 * larger than STORE_RESULT_MAX is not stored. With the defaults: (2 readers + the writer) x 16 MiB
 * + the checkpointer's 256 KiB + 2 x 8 MiB of results + 2 x 1 MiB of entries and their index =
 * 66.25 MiB at most, per process that opens the store.
 *
 * Why batches of 16,384: random keys dirty pages all over the B-tree, and a commit writes each
 * dirty page once however many entries it took. A first run puts a few thousand answers a second
 * into a small file, so the batch is cut by batch_ms (a second) and holds them all; at 1,000 a
 * batch it was cut six times a second, each rewriting most of the file's leaves. Measured with
 * bench-store over 43,000 entries (a first run of 10,000 images of the seed chain), CPU per
 * insert, three runs each: 6.4-8.4 us at 1,000, 3.7-6.2 us at 4,096, 2.9-3.7 us at 16,384.
 *
 * Two processes share one store: WAL lets them read at once; their writers take turns
 * (busy_timeout). Nothing is lost: a batch that meets a lock held past the timeout is tried again.
 *
 * A store that cannot be written (a full disk, a read-only file or folder, an I/O error, a file
 * damaged by something else) turns itself off the first time it meets that: store_failure gives
 * one message, once, to print; from then on store_get misses and store_put does nothing. No
 * caller ever fails because of the store. */
#ifndef ANNOTATE_STORE_H
#define ANNOTATE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "common/hash.h"

#define STORE_IDENT_BYTES 16
#define STORE_PREFIX_BYTES 8
#define STORE_KEY_BYTES 24
#define STORE_NAME_MAX 128    /* description fields, NUL included; longer text is cut */
#define STORE_URL_MAX 512
#define STORE_VERSION_MAX 128
#define STORE_RESULT_MAX (64u << 20)

struct store_ident {
    unsigned char id[STORE_IDENT_BYTES];
    char name[STORE_NAME_MAX];
    char url[STORE_URL_MAX];
    char version[STORE_VERSION_MAX];
};

struct store_key {
    unsigned char b[STORE_KEY_BYTES];
};

/* ---- identities and keys (no store needed; one hash context each, see hash.h) ---- */

/* hash_init and the identity's domain: 0, or -1 when memory runs out. */
int store_ident_begin(struct hash_ctx *h);
/* One thing that decides the answer: its name (a short constant) and its bytes. A thing left out
 * differs from a thing given empty. */
void store_ident_add(struct hash_ctx *h, const char *what, const void *p, size_t n);
/* Finishes id: the hash, and the description (NULLs as "", control characters as '?', cut at
 * the sizes above). 0, or -1 (h's hash failed: do without the store for this stage). */
int store_ident_end(struct hash_ctx *h, struct store_ident *id, const char *name, const char *url,
                    const char *version);

/* hash_init, the key's domain and id: 0 or -1. */
int store_key_begin(struct hash_ctx *h, const struct store_ident *id);
/* A piece of the request, framed. */
void store_key_bytes(struct hash_ctx *h, const void *p, size_t n);
/* The frame of a piece of total bytes fed by the caller with hash_update (a large piece in
 * several calls). */
void store_key_bytes_begin(struct hash_ctx *h, uint64_t total);
/* The image, as the digest of its bytes (typed: never equal to a piece of bytes). */
void store_key_image(struct hash_ctx *h, const unsigned char digest[HASH_BYTES]);
/* 0, or -1 (the hash failed: no lookup, no put). */
int store_key_end(struct hash_ctx *h, const struct store_ident *id, struct store_key *k);

/* ---- the store ---- */

struct store_opts {
    int batch_entries;   /* commit after this many puts (0: 16384) */
    int batch_ms;        /* or once the oldest uncommitted put is this old (0: 1000) */
    size_t buffer_bytes; /* result bytes in one batch at most (0: 8 MiB) */
    int readers;         /* read connections at most (0: 2) */
    int cache_kib;       /* page cache of each connection, KiB (0: 16384: the B-tree's inner pages
                          * of 10 million entries fit, so a lookup reads one page) */
    int busy_ms;         /* how long to wait for another process's lock (0: 10000) */
    int wal_pages;       /* the checkpointer copies the WAL into the file after a commit leaves
                          * it this many pages long (0: STORE_DB_CHECKPOINT, 4096) */
    int wal_max_pages;   /* and the writer waits for it to catch up at this many (0: 16 x
                          * wal_pages: 256 MiB of WAL at 4 KiB pages) */
    int no_checkpointer; /* 1: no checkpointer; SQLite's own checkpoints in the writer's commits,
                          * after each that leaves wal_pages (what a store falls back to when the
                          * checkpointer's connection or thread cannot be had) */
    /* Told once for each put taken, by the writer's thread, when the put is settled: committed
     * (other processes can read it now), or dropped because the store turned off. NULL: nobody
     * listens. It must not call the store. */
    void (*settled)(void *ud, const unsigned char key[STORE_KEY_BYTES]);
    void *settled_ud;
};

struct store_counters {
    uint64_t hits, misses;  /* store_get's answers */
    uint64_t puts;          /* store_put calls taken (a key already waiting is not taken again) */
    uint64_t committed;     /* new entries committed (a key already in the file is not new) */
    uint64_t batches;       /* transactions committed */
    uint64_t waits;         /* puts that waited for the writer */
    uint64_t dropped;       /* puts never committed because the store turned off */
    uint64_t too_big;       /* results over STORE_RESULT_MAX, not stored */
    uint64_t checkpoints;   /* the checkpointer's passes */
    uint64_t catch_ups;     /* commits after which the writer waited for the WAL to be copied */
    uint64_t wal_longest;   /* the WAL's length after a commit, at most, in pages */
    int off;
};

struct store;

/* Opens (creating it 0600 when missing) the store at path; o may be NULL for the defaults. NULL
 * with err when the file cannot be used at all: missing and cannot be created (no such folder,
 * a read-only folder), a folder, not an SQLite database, a database of another program, a store
 * of a newer annotate. A store that exists but cannot be written is opened off: store_failure
 * says why. */
struct store *store_open(const char *path, const struct store_opts *o, char *err, size_t errlen);

/* Looks key up. 1 and *bytes (malloc'd, with a NUL after its *len bytes; the caller frees it):
 * the stored result, byte for byte. 0: a miss (also when the store is off, or memory ran out). */
int store_get(struct store *s, const struct store_key *k, char **bytes, size_t *len);

/* Stores the result for key (its bytes are copied); id says whose it is (its description is
 * written once per store handle). A key already stored keeps its first result. s may be NULL.
 * Returns 1 when the put was taken (opts.settled will be told of it), 0 when not: the store is
 * off, the result is too large, the key is waiting to be committed already, memory ran out. */
int store_put(struct store *s, const struct store_key *k, const struct store_ident *id, const void *bytes,
              size_t len);

/* 1 when the file held answers of identity id when this handle first asked (its stage row: a
 * row goes with the first commit of the identity's answers and only with its last entry), or
 * this handle has put one since; 0 otherwise, and when the store is off. A caller may skip the
 * lookups of an identity that has none: they cannot hit, unless another process puts some
 * meanwhile (then they only cost a question asked again, never a wrong answer). */
int store_has_ident(struct store *s, const struct store_ident *id);

/* 1 once the store has turned itself off (cheap: one atomic load); s may be NULL (0). */
int store_off(struct store *s);

/* Commits everything put so far and waits for it. 0, or -1 when the store is (or turned) off. */
int store_flush(struct store *s);

/* When the store turned itself off, the first call copies why into msg ("cache FILE: cannot be
 * written (...): going on without it") and returns 1; every other call returns 0. */
int store_failure(struct store *s, char *msg, size_t len);

void store_get_counters(struct store *s, struct store_counters *c);

/* Commits what is left, closes and frees; no other call may be running. Returns what
 * store_failure would: 1 and the message when the store turned off (the last commit included)
 * and that was not told yet, else 0. s may be NULL. */
int store_close(struct store *s, char *msg, size_t len);

/* ---- maintenance (annotate cache stats|prune); these open the file themselves ---- */

struct store_stage_stats {
    struct store_ident ident;
    uint64_t entries, result_bytes;
    int64_t oldest, newest; /* Unix seconds of its entries' puts; 0 when it has none */
};

struct store_summary {
    uint64_t entries, result_bytes;
    uint64_t file_bytes, wal_bytes; /* the database file and its -wal */
    struct store_stage_stats *stages; /* by name, then URL */
    int n;
    int old_keys; /* 1: made by an earlier annotate, whose keys were SHA-256 (a run refuses it) */
};

/* Entries and bytes per identity. 0, or -1 with err (a missing file is not created). */
int store_stats(const char *path, struct store_summary *out, char *err, size_t errlen);
void store_summary_free(struct store_summary *sum);

/* Which entries prune drops: those that pass every filter given (at least one must be). */
struct store_prune {
    int64_t older_than;            /* > 0: put more than this many seconds ago */
    const char *const *stages;     /* the identities named so, or whose hex hash starts so (6 to
                                    * 32 digits); each must match one at least */
    int n_stages;
    int keep_given;                /* 1: those of identities not in keep[] */
    const unsigned char (*keep)[STORE_IDENT_BYTES];
    int n_keep;
    int vacuum;                    /* then VACUUM, giving the room back to the file system */
};

struct store_pruned {
    uint64_t entries, result_bytes; /* dropped */
    int identities;                 /* identities left without entries, and so dropped too */
    uint64_t file_before, file_after;
};

/* Drops entries in transactions of at most 10,000 (a run sharing the store waits for each, not
 * for the whole prune). 0, or -1 with err (nothing matched a --stage, the file cannot be
 * written, ...). */
int store_prune(const char *path, const struct store_prune *p, struct store_pruned *out, char *err,
                size_t errlen);

#endif
