/* Suites "store serial" and "store concurrent": the answer store of --cache (src/results/store.c,
 * store_db.c, store_admin.c). Results come back byte for byte; puts are committed in batches by
 * count and by age and at close; a lookup sees its own process's puts at once; two handles and
 * two processes share one file without losing a write; a read-only file or folder and a full
 * disk turn the store off with one message, never failing a caller; a kill -9 in the middle of
 * batches leaves a file that passes PRAGMA integrity_check with every committed entry; the file
 * is made 0600; prune by age, by stage and by a keep list, and stats. The concurrent suite (make
 * tsan) has threads putting and looking up at once.
 *
 * Root can write any file, so the read-only cases run in a child that became nobody. The full
 * disk is a 1 MB tmpfs mounted in a child's own mount namespace (unseen by the rest of the
 * machine), or, where mounting is not allowed, a file size limit (RLIMIT_FSIZE). */
#include "results/store.h"
#include "results/store_db.h"
#include "results/cache_cmd.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "tree.h"
#include "util.h"

#define NOBODY 65534 /* Debian's nobody and nogroup */

/* ---- helpers ---- */

static void ident_of(const char *name, const char *url, const char *version, struct store_ident *id)
{
    struct hash_ctx h;
    CU_ASSERT_EQUAL_FATAL(store_ident_begin(&h), 0);
    store_ident_add(&h, "url", url, strlen(url));
    store_ident_add(&h, "version", version, strlen(version));
    CU_ASSERT_EQUAL(store_ident_end(&h, id, name, url, version), 0);
}

static void key_of(const struct store_ident *id, uint64_t i, struct store_key *k)
{
    struct hash_ctx h;
    CU_ASSERT_EQUAL_FATAL(store_key_begin(&h, id), 0);
    store_key_bytes(&h, &i, sizeof i);
    CU_ASSERT_EQUAL(store_key_end(&h, id, k), 0);
}

/* Entry i's result: 1 to 300 bytes of every value, NUL included, a function of i alone. */
static size_t result_of(uint64_t i, unsigned char *buf)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ull + 1;
    size_t n = 1 + (size_t)(i % 300);
    for (size_t j = 0; j < n; j++)
        buf[j] = (unsigned char)(xorshift64(&x) >> 56);
    return n;
}

static void put_i(struct store *s, const struct store_ident *id, uint64_t i)
{
    unsigned char r[300];
    struct store_key k;
    key_of(id, i, &k);
    store_put(s, &k, id, r, result_of(i, r));
}

/* 1 found with the right bytes, 0 missing, -1 found with other bytes. */
static int has_i(struct store *s, const struct store_ident *id, uint64_t i)
{
    unsigned char want[300];
    size_t wn = result_of(i, want), n;
    struct store_key k;
    char *b;
    key_of(id, i, &k);
    if (!store_get(s, &k, &b, &n))
        return 0;
    int same = n == wn && !memcmp(b, want, n) && b[n] == 0;
    free(b);
    return same ? 1 : -1;
}

static char tmp[256];

static const char *path_in(const char *name)
{
    static char p[4][512];
    static int at;
    at = (at + 1) % 4;
    snprintf(p[at], sizeof p[at], "%s/%s", tmp, name);
    return p[at];
}

static int suite_init(void)
{
    return make_tmpdir(tmp, sizeof tmp, "store");
}

static int suite_clean(void)
{
    return tree_rm(tmp);
}

/* The file's entries, counted by another connection (what another process sees); -1 on error. */
static long long raw_count(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM answer", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

/* Runs sql on the file; 0 or -1. */
static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

/* PRAGMA integrity_check's first line into out. */
static void integrity(const char *path, char *out, size_t len)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    snprintf(out, len, "(cannot run integrity_check)");
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

static void remove_store(const char *path)
{
    char p[600];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

/* Waits (bounded by tmo) until the file holds n entries; returns what it holds. */
static long long wait_count(const char *path, long long n)
{
    long deadline = now_ms() + 1000L * tmo(10);
    long long got;
    while ((got = raw_count(path)) != n && now_ms() < deadline)
        sleep_ms(5);
    return got;
}

/* fn(arg) in a child process: its exit status (128 + the signal), -2 when it outlived
 * timeout_ms (then killed), -1 when it could not start. */
static int run_child(int (*fn)(void *), void *arg, long timeout_ms)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(fn(arg));
    int rc = wait_for(pid, timeout_ms);
    if (rc == -2) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return rc;
}

/* ---- put and get ---- */

static void test_put_get(void)
{
    const char *path = path_in("basic.db");
    char err[1024];
    struct store_ident a, b;
    ident_of("model_01", "http://h/model_01", "", &a);
    ident_of("model_02", "http://h/model_02", "", &b);
    struct store *s = store_open(path, NULL, err, sizeof err);
    CHECKF(s != NULL, "store_open: %s", err);
    if (!s)
        return;
    for (uint64_t i = 0; i < 500; i++)
        put_i(s, &a, i);
    /* Before any commit: the puts are seen by lookups of this process. */
    int bad = 0;
    for (uint64_t i = 0; i < 500; i++)
        bad += has_i(s, &a, i) != 1;
    CHECKF(bad == 0, "%d of 500 entries not found (or wrong) before the commit", bad);
    CU_ASSERT_EQUAL(has_i(s, &b, 1), 0); /* same content, another identity: a miss */
    CU_ASSERT_EQUAL(has_i(s, &a, 500), 0);
    /* The empty result, and 5 MB of every byte value. */
    struct store_key ke, kl;
    key_of(&b, 1000, &ke);
    key_of(&b, 1001, &kl);
    size_t big = 5u << 20;
    unsigned char *large = malloc(big);
    CU_ASSERT_PTR_NOT_NULL_FATAL(large);
    for (size_t i = 0; i < big; i++)
        large[i] = (unsigned char)(i * 7 + i / 256);
    store_put(s, &ke, &b, "", 0);
    store_put(s, &kl, &b, large, big);
    /* A second put of a key keeps the first result. */
    store_put(s, &kl, &b, "other", 5);
    CU_ASSERT_EQUAL(store_flush(s), 0);
    CU_ASSERT_EQUAL(raw_count(path), 502);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);

    s = store_open(path, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    bad = 0;
    for (uint64_t i = 0; i < 500; i++)
        bad += has_i(s, &a, i) != 1;
    CHECKF(bad == 0, "%d of 500 entries not found (or wrong) after reopening", bad);
    char *got;
    size_t n;
    CU_ASSERT(store_get(s, &ke, &got, &n) == 1 && n == 0 && got && got[0] == 0);
    free(got);
    CU_ASSERT(store_get(s, &kl, &got, &n) == 1 && n == big && !memcmp(got, large, big));
    free(got);
    struct store_counters c;
    store_get_counters(s, &c);
    CU_ASSERT(c.hits == 502 && c.misses == 0 && c.off == 0);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    free(large);
    remove_store(path);
}

/* Identities and keys: what is hashed decides, the description does not; pieces are framed and
 * the image's digest is typed. */
static void test_keys(void)
{
    struct store_ident a, a2, b;
    ident_of("model_01", "http://h/m", "", &a);
    ident_of("renamed", "http://h/m", "", &a2);
    ident_of("model_01", "http://h/m", "2", &b);
    CU_ASSERT(!memcmp(a.id, a2.id, STORE_IDENT_BYTES));
    CU_ASSERT(memcmp(a.id, b.id, STORE_IDENT_BYTES) != 0);
    CU_ASSERT_STRING_EQUAL(a2.name, "renamed");
    struct hash_ctx h;
    struct store_key k1, k2, k3, k4;
    store_key_begin(&h, &a);
    store_key_bytes(&h, "ab", 2);
    store_key_bytes(&h, "c", 1);
    store_key_end(&h, &a, &k1);
    store_key_begin(&h, &a);
    store_key_bytes(&h, "a", 1);
    store_key_bytes(&h, "bc", 2);
    store_key_end(&h, &a, &k2);
    CU_ASSERT(memcmp(k1.b, k2.b, STORE_KEY_BYTES) != 0);
    CU_ASSERT(!memcmp(k1.b, a.id, STORE_PREFIX_BYTES)); /* the identity's prefix */
    unsigned char digest[HASH_BYTES];
    memset(digest, 0x42, sizeof digest);
    store_key_begin(&h, &a);
    store_key_image(&h, digest);
    store_key_end(&h, &a, &k3);
    store_key_begin(&h, &a);
    store_key_bytes(&h, digest, sizeof digest);
    store_key_end(&h, &a, &k4);
    CU_ASSERT(memcmp(k3.b, k4.b, STORE_KEY_BYTES) != 0);
    /* a large piece fed in parts is the piece */
    store_key_begin(&h, &a);
    store_key_bytes_begin(&h, 3);
    hash_update(&h, "a", 1);
    hash_update(&h, "bc", 2);
    store_key_end(&h, &a, &k4);
    store_key_begin(&h, &a);
    store_key_bytes(&h, "abc", 3);
    store_key_end(&h, &a, &k3);
    CU_ASSERT(!memcmp(k3.b, k4.b, STORE_KEY_BYTES));
    /* the description is printable text, cut at a character */
    struct store_ident d;
    char url[1000];
    memset(url, 'u', sizeof url);
    memcpy(url + STORE_URL_MAX - 2, "\xc3\xa9", 2); /* é across the cut */
    url[sizeof url - 1] = 0;
    store_ident_begin(&h);
    store_ident_end(&h, &d, "a\tb\nc", url, NULL);
    CU_ASSERT_STRING_EQUAL(d.name, "a?b?c");
    CU_ASSERT_EQUAL(strlen(d.url), STORE_URL_MAX - 2);
    CU_ASSERT_STRING_EQUAL(d.version, "");
}

/* ---- batches ---- */

static void test_batches(void)
{
    const char *path = path_in("batch.db");
    char err[1024];
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    /* By count: batches of 10, no timer to speak of. */
    struct store_opts o = {.batch_entries = 10, .batch_ms = 600000};
    struct store *s = store_open(path, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (uint64_t i = 0; i < 25; i++)
        put_i(s, &a, i);
    CU_ASSERT_EQUAL(wait_count(path, 20), 20);
    sleep_ms(50);
    CU_ASSERT_EQUAL(raw_count(path), 20); /* 5 wait for their batch */
    CU_ASSERT_EQUAL(has_i(s, &a, 24), 1);
    struct store_counters c;
    store_get_counters(s, &c);
    CU_ASSERT(c.puts == 25 && c.committed == 20 && c.batches == 2);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0); /* commits the rest */
    CU_ASSERT_EQUAL(raw_count(path), 25);
    /* By age: 3 puts, committed by the timer alone. */
    o.batch_entries = 1000;
    o.batch_ms = 100;
    s = store_open(path, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    sleep_ms(50); /* the writer idle, waiting for work: the first put must start the batch's clock */
    long t0 = now_ms();
    for (uint64_t i = 100; i < 103; i++)
        put_i(s, &a, i);
    CU_ASSERT_EQUAL(wait_count(path, 28), 28);
    CHECKF(now_ms() - t0 >= 90, "committed after %ld ms, before the batch's 100 ms", now_ms() - t0);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    /* A batch of bytes: a small buffer fills before the count. */
    o.batch_ms = 600000;
    o.buffer_bytes = 1000;
    s = store_open(path, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (uint64_t i = 200; i < 260; i++)
        put_i(s, &a, i); /* 60 results of 200 to 259 bytes: about 15 batches */
    store_get_counters(s, &c);
    CHECKF(c.batches >= 10, "%llu batches for 14 KB of results in batches of 1000 bytes", (unsigned long long)c.batches);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    CU_ASSERT_EQUAL(raw_count(path), 88);
    remove_store(path);
}

/* The closed store at path: integrity_check ok, and entries 0 .. n - 1 of a there, each exactly
 * once and byte for byte. */
static void check_intact(const char *path, const struct store_ident *a, uint64_t n)
{
    char ic[256], err[1024];
    integrity(path, ic, sizeof ic);
    CHECKF(!strcmp(ic, "ok"), "integrity_check: %s", ic);
    CU_ASSERT_EQUAL(raw_count(path), (long long)n);
    struct store *s = store_open(path, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    uint64_t lost = 0;
    for (uint64_t i = 0; i < n; i++)
        lost += has_i(s, a, i) != 1;
    CHECKF(lost == 0, "%llu of %llu entries lost or wrong", (unsigned long long)lost, (unsigned long long)n);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
}

/* 6,000 puts in commits of 100 into a new store at file with o (its wal_pages 8): the WAL's file
 * is at most max_pages long after them; closed, the store is intact (check_intact). The
 * counters as they were after the last commit. */
static void fill_in_commits(const char *file, const struct store_opts *o, unsigned long long max_pages,
                            struct store_counters *c)
{
    const char *path = path_in(file);
    char err[1024];
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    struct store *s = store_open(path, o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (uint64_t i = 0; i < 6000; i++)
        put_i(s, &a, i);
    CU_ASSERT_EQUAL(store_flush(s), 0);
    store_get_counters(s, c);
    /* Its file (under journal_size_limit's 16 MiB, so never cut) keeps its largest length. */
    unsigned long long wal = store_db_file_size(path, "-wal");
    CHECKF(wal > 0 && wal <= max_pages * (4096ull + 24) + 32, "%s: the WAL's file is %llu bytes", file, wal);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    check_intact(path, &a, 6000);
    remove_store(path);
}

/* The checkpointer copies the WAL into the file beside the writer; a writer that never pauses
 * waits for it at wal_max_pages, so the WAL stays bounded; every entry is there, the file ok. */
static void test_checkpoints(void)
{
    /* A commit of 100 entries changes more than 16 pages once the file has a few hundred: the
     * writer catches up after each one. The WAL never holds more than a commit's pages (100
     * entries of at most 300 bytes: a few hundred) past wal_max_pages. */
    struct store_opts o = {.batch_entries = 100, .batch_ms = 600000, .wal_pages = 8, .wal_max_pages = 16};
    struct store_counters c;
    fill_in_commits("ckpt.db", &o, 16 + 400, &c);
    /* (Whether the checkpointer's own pass ran is left to the machine: each commit here passes
     * wal_max_pages, and a writer that catches up before the checkpointer is scheduled copies
     * the WAL itself and takes its turn, as it does on a busy machine.) */
    CHECKF(c.catch_ups >= c.batches / 2, "the writer caught up after %llu of %llu commits",
           (unsigned long long)c.catch_ups, (unsigned long long)c.batches);
    CHECKF(c.wal_longest >= 16 && c.wal_longest <= 16 + 400, "the WAL was %llu pages long at most",
           (unsigned long long)c.wal_longest);
}

/* Without the checkpointer (what a store falls back to when its connection or thread cannot be
 * had): SQLite's own checkpoints in the writer's commits keep the WAL to about a commit's pages
 * past wal_pages (each commit that leaves 8 pages is copied, and the next starts the WAL over;
 * 60 commits without checkpoints would leave thousands), and nothing is lost. */
static void test_no_checkpointer(void)
{
    struct store_opts o = {.batch_entries = 100, .batch_ms = 600000, .wal_pages = 8, .no_checkpointer = 1};
    struct store_counters c;
    fill_in_commits("nockpt.db", &o, 8 + 400, &c);
    CHECKF(c.checkpoints == 0 && c.catch_ups == 0 && c.batches >= 60,
           "%llu checkpointer passes and %llu catch-ups in %llu commits, without a checkpointer",
           (unsigned long long)c.checkpoints, (unsigned long long)c.catch_ups, (unsigned long long)c.batches);
}

/* Two handles in one process, then two processes, on one file at once: nothing lost. */
static void test_two_handles(void)
{
    const char *path = path_in("two.db");
    char err[1024];
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    struct store_opts o = {.batch_entries = 50};
    struct store *s1 = store_open(path, &o, err, sizeof err), *s2 = store_open(path, &o, err, sizeof err);
    CU_ASSERT_FATAL(s1 && s2);
    for (uint64_t i = 0; i < 2000; i++)
        put_i(i % 2 ? s1 : s2, &a, i);
    CU_ASSERT(store_flush(s1) == 0 && store_flush(s2) == 0);
    int bad = 0;
    for (uint64_t i = 0; i < 2000; i++)
        bad += has_i(i % 2 ? s2 : s1, &a, i) != 1; /* each sees the other's */
    CHECKF(bad == 0, "%d of 2000 entries not seen through the other handle", bad);
    CU_ASSERT(store_close(s1, err, sizeof err) == 0 && store_close(s2, err, sizeof err) == 0);
    CU_ASSERT_EQUAL(raw_count(path), 2000);
    remove_store(path);
}

struct writer_arg {
    const char *path;
    uint64_t from, n;
};

static int writer_child(void *arg)
{
    struct writer_arg *w = arg;
    char err[1024];
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    struct store_opts o = {.batch_entries = 100, .batch_ms = 20};
    struct store *s = store_open(w->path, &o, err, sizeof err);
    if (!s) {
        fprintf(stderr, "writer child: %s\n", err);
        return 1;
    }
    for (uint64_t i = w->from; i < w->from + w->n; i++)
        put_i(s, &a, i);
    for (uint64_t i = 0; i < 500; i++) /* the same 500 in both */
        put_i(s, &a, 1000000 + i);
    struct store_counters c;
    store_get_counters(s, &c);
    int told = store_close(s, err, sizeof err);
    if (told || c.off)
        fprintf(stderr, "writer child: %s\n", err);
    return told || c.off ? 2 : 0;
}

static void test_two_processes(void)
{
    const char *path = path_in("procs.db");
    struct writer_arg w1 = {path, 0, 6000}, w2 = {path, 6000, 6000};
    char err[1024];
    /* The file exists first, so that the three processes open the same store; this one opens
     * its handle after the forks (SQLite's state never crosses a fork). */
    struct store *s = store_open(path, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    fflush(NULL);
    pid_t p1 = fork();
    if (p1 == 0)
        _exit(writer_child(&w1));
    pid_t p2 = fork();
    if (p2 == 0)
        _exit(writer_child(&w2));
    CU_ASSERT_FATAL(p1 > 0 && p2 > 0);
    s = store_open(path, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    /* This process reads while they write. */
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    int wrong = 0;
    for (int round = 0; round < 20; round++)
        for (uint64_t i = 0; i < 12000; i += 97)
            wrong += has_i(s, &a, i) < 0;
    int r1 = wait_for(p1, 1000L * tmo(60)), r2 = wait_for(p2, 1000L * tmo(60));
    CHECKF(r1 == 0 && r2 == 0, "writer children: exit %d and %d", r1, r2);
    CU_ASSERT_EQUAL(wrong, 0);
    int bad = 0;
    for (uint64_t i = 0; i < 12000; i++)
        bad += has_i(s, &a, i) != 1;
    for (uint64_t i = 0; i < 500; i++)
        bad += has_i(s, &a, 1000000 + i) != 1;
    CHECKF(bad == 0, "%d of 12,500 entries lost with two writing processes", bad);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    CU_ASSERT_EQUAL(raw_count(path), 12500);
    char ic[256];
    integrity(path, ic, sizeof ic);
    CU_ASSERT_STRING_EQUAL(ic, "ok");
    remove_store(path);
}

/* Processes that open one new store at the same moment (two runs started together) all get it:
 * the one that makes its schema holds it for a moment, and the others wait and read it. */
static int opener_child(void *arg)
{
    char err[1024];
    struct store *s = store_open(arg, NULL, err, sizeof err);
    if (!s) {
        fprintf(stderr, "opener child: %s\n", err);
        return 2;
    }
    return store_close(s, err, sizeof err) ? 3 : 0;
}

static void test_new_store_at_once(void)
{
    for (int round = 0; round < 20; round++) {
        const char *path = path_in("at-once.db");
        remove_store(path);
        fflush(NULL);
        int go[2];
        CU_ASSERT_FATAL(pipe(go) == 0);
        pid_t pid[6];
        for (int k = 0; k < 6; k++)
            if ((pid[k] = fork()) == 0) {
                char c;
                close(go[1]);
                if (read(go[0], &c, 1) < 0) /* released together, when the parent closes its end */
                    _exit(4);
                _exit(opener_child((void *)path));
            }
        close(go[0]);
        close(go[1]);
        int bad = 0;
        for (int k = 0; k < 6; k++)
            bad += pid[k] < 0 || wait_for(pid[k], 1000L * tmo(30)) != 0;
        CHECKF(bad == 0, "round %d: %d of 6 processes could not open the new store", round, bad);
        char ic[256];
        integrity(path, ic, sizeof ic);
        CU_ASSERT_STRING_EQUAL(ic, "ok");
        remove_store(path);
    }
}

/* ---- the file: mode, what is not a store ---- */

static void test_file_mode(void)
{
    const char *path = path_in("mode.db");
    char err[1024], side[600];
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    mode_t old = umask(0); /* SQLite alone would make 0644 */
    struct store *s = store_open(path, NULL, err, sizeof err);
    umask(old);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    put_i(s, &a, 1);
    CU_ASSERT_EQUAL(store_flush(s), 0);
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        struct stat st;
        snprintf(side, sizeof side, "%s%s", path, sfx[i]);
        CHECKF(stat(side, &st) == 0 && (st.st_mode & 0777) == 0600, "%s: mode %o, want 600", side,
               (unsigned)(st.st_mode & 0777));
    }
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    remove_store(path);
}

static void expect_refused(const char *path, const char *want)
{
    char err[1024] = "";
    struct store *s = store_open(path, NULL, err, sizeof err);
    CHECKF(s == NULL && strstr(err, want) && strstr(err, path), "store_open(%s): %s, want an error with \"%s\"", path,
           s ? "opened" : err, want);
    if (s)
        store_close(s, err, sizeof err);
}

static void test_not_a_store(void)
{
    expect_refused(tmp, "is a folder");
    expect_refused(path_in("no/such/folder/x.db"), "cannot create it: No such file or directory");
    const char *text = path_in("text.db");
    static const char words[] = "this is not a database, just some text, longer than SQLite's header of 100 "
                                "bytes, so that it is read as one";
    CU_ASSERT_FATAL(write_file(text, words, sizeof words - 1) == 0);
    expect_refused(text, "not an SQLite database");
    const char *other = path_in("other.db");
    CU_ASSERT_EQUAL_FATAL(raw_exec(other, "CREATE TABLE t(x)"), -1); /* raw_exec does not create */
    sqlite3 *db;
    CU_ASSERT_FATAL(sqlite3_open(other, &db) == SQLITE_OK);
    CU_ASSERT(sqlite3_exec(db, "CREATE TABLE photos(x)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    expect_refused(other, "an SQLite database of another program");
    const char *newer = path_in("newer.db");
    char err[1024];
    struct store *s = store_open(newer, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    store_close(s, err, sizeof err);
    CU_ASSERT_EQUAL(raw_exec(newer, "PRAGMA user_version=99"), 0);
    expect_refused(newer, "newer annotate");
    /* A store of schema 1 (SHA-256 keys): a run refuses it, since none of its answers could be
     * found; stats reads it and says so. */
    const char *older = path_in("older.db");
    s = store_open(older, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    put_i(s, &a, 1);
    store_close(s, err, sizeof err);
    struct store_summary sum;
    CU_ASSERT_EQUAL_FATAL(store_stats(older, &sum, err, sizeof err), 0);
    CU_ASSERT_EQUAL(sum.old_keys, 0);
    store_summary_free(&sum);
    CU_ASSERT_EQUAL(raw_exec(older, "PRAGMA user_version=1"), 0);
    expect_refused(older, "earlier annotate, whose keys were SHA-256");
    CU_ASSERT_EQUAL_FATAL(store_stats(older, &sum, err, sizeof err), 0);
    CU_ASSERT_EQUAL(sum.old_keys, 1);
    CU_ASSERT_EQUAL(sum.entries, 1);
    store_summary_free(&sum);
    /* stats and prune never create a file */
    CU_ASSERT_EQUAL(store_stats(path_in("missing.db"), &sum, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "No such file") != NULL);
    CU_ASSERT_EQUAL(access(path_in("missing.db"), F_OK), -1);
    unlink(text);
    remove_store(other);
    remove_store(newer);
    remove_store(older);
}

/* ---- read-only, full: the store turns off ---- */

/* What a child saw, sent back through a pipe. */
struct off_report {
    int step;          /* 0: as expected; else the step that was not */
    int way;           /* the full disk: 1 tmpfs, 2 RLIMIT_FSIZE */
    char msg[1100];    /* store_failure's message, or what went wrong */
    long long committed, count;
    char integrity[64];
};

static int report_fd = -1;

static int send_report(struct off_report *r)
{
    return write(report_fd, r, sizeof *r) == (ssize_t)sizeof *r ? 0 : 1;
}

static int become_nobody(void)
{
    return geteuid() == 0 && (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY)) ? -1 : 0;
}

/* After the store turned off: one message, then none; lookups miss, puts do nothing, no caller
 * fails. Returns 0 or the step that was not so. */
static int check_off(struct store *s, struct off_report *r, int step)
{
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    struct store_counters c;
    store_get_counters(s, &c);
    if (!c.off)
        return step;
    if (store_failure(s, r->msg, sizeof r->msg) != 1)
        return step + 1;
    char again[1100];
    if (store_failure(s, again, sizeof again) != 0)
        return step + 2;
    put_i(s, &a, 7);
    if (has_i(s, &a, 7) != 0 || has_i(s, &a, 1) != 0 || store_flush(s) != -1)
        return step + 3;
    return store_close(s, again, sizeof again) == 0 ? 0 : step + 4;
}

static int ro_child(void *dir)
{
    struct off_report r = {0};
    char file[600], folder[600], err[1024];
    snprintf(file, sizeof file, "%s/rofile/store.db", (char *)dir);
    snprintf(folder, sizeof folder, "%s/rofolder/store.db", (char *)dir);
    if (become_nobody())
        r.step = 1;
    struct store *s = r.step ? NULL : store_open(file, NULL, err, sizeof err);
    if (!r.step && !s) {
        r.step = 2;
        snprintf(r.msg, sizeof r.msg, "%s", err);
    }
    if (s && (r.step = check_off(s, &r, 10)) == 0 && !strstr(r.msg, "read-only"))
        r.step = 3;
    if (!r.step) {
        char first[1100];
        snprintf(first, sizeof first, "%s", r.msg);
        s = store_open(folder, NULL, err, sizeof err);
        if (!s) {
            r.step = 4;
            snprintf(r.msg, sizeof r.msg, "%s", err);
        } else if ((r.step = check_off(s, &r, 20)) == 0 && !strstr(r.msg, "folder read-only"))
            r.step = 5;
        if (!r.step) { /* both messages back, one line each */
            char both[1100];
            snprintf(both, sizeof both, "%.540s\n%.540s", first, r.msg);
            snprintf(r.msg, sizeof r.msg, "%s", both);
        }
    }
    if (!r.step) {
        snprintf(folder, sizeof folder, "%s/rofolder/new.db", (char *)dir);
        s = store_open(folder, NULL, err, sizeof err);
        if (s || !strstr(err, "cannot create it: Permission denied"))
            r.step = 6;
    }
    return send_report(&r);
}

/* A read-only file (in a folder nobody may write), and a writable file in a read-only folder
 * (its -wal and -shm cannot be made), opened by nobody. */
static void test_read_only(void)
{
    char dir[64] = "/tmp/annotate-store-ro-XXXXXX", p[600], err[1024];
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL && chmod(dir, 0755) == 0);
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    const char *sub[] = {"rofile", "rofolder"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, sub[i]);
        CU_ASSERT_FATAL(mkdir(p, 0755) == 0);
        snprintf(p, sizeof p, "%s/%s/store.db", dir, sub[i]);
        struct store *s = store_open(p, NULL, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        put_i(s, &a, 1);
        CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    }
    /* rofile: root's file, mode 0644, in nobody's folder. rofolder: nobody's file, 0600, in
     * root's folder. */
    snprintf(p, sizeof p, "%s/rofile", dir);
    CU_ASSERT(chown(p, NOBODY, NOBODY) == 0);
    snprintf(p, sizeof p, "%s/rofile/store.db", dir);
    CU_ASSERT(chmod(p, 0644) == 0);
    snprintf(p, sizeof p, "%s/rofolder/store.db", dir);
    CU_ASSERT(chown(p, NOBODY, NOBODY) == 0);
    int fds[2];
    CU_ASSERT_FATAL(pipe(fds) == 0);
    report_fd = fds[1];
    int rc = run_child(ro_child, dir, 1000L * tmo(20));
    close(fds[1]);
    struct off_report r;
    ssize_t got = read(fds[0], &r, sizeof r);
    close(fds[0]);
    CHECKF(rc == 0 && got == (ssize_t)sizeof r, "the child did not report (exit %d)", rc);
    if (got == (ssize_t)sizeof r) {
        CHECKF(r.step != 1, "cannot become nobody (uid %d) to test a read-only store", NOBODY);
        CHECKF(r.step == 0, "as nobody, step %d was not as expected: %s", r.step, r.msg);
        if (r.step == 0) /* what a user would read */
            printf("\n    read-only messages:\n%s\n", r.msg);
    }
    CU_ASSERT(tree_rm(dir) == 0);
}

static int full_child(void *dir)
{
    struct off_report r = {0};
    char path[600], err[1024];
    snprintf(path, sizeof path, "%s/store.db", (char *)dir);
    if (unshare(CLONE_NEWNS) == 0 && mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0 &&
        mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700") == 0) {
        r.way = 1;
    } else {
        struct rlimit rl = {512 * 1024, 512 * 1024};
        signal(SIGXFSZ, SIG_IGN); /* past the limit a write fails with EFBIG instead */
        r.way = setrlimit(RLIMIT_FSIZE, &rl) == 0 ? 2 : 0;
    }
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    struct store_opts o = {.batch_entries = 20};
    struct store *s = store_open(path, &o, err, sizeof err);
    if (!r.way || !s) {
        r.step = 1;
        snprintf(r.msg, sizeof r.msg, "%s", s ? "no way to fill a disk" : err);
        return send_report(&r);
    }
    unsigned char big[8192];
    memset(big, 'x', sizeof big);
    struct store_counters c = {0};
    for (uint64_t i = 0; i < 1000 && !c.off; i++) { /* 8 MB into 1 MB (or 512 KB) */
        struct store_key k;
        key_of(&a, i, &k);
        store_put(s, &k, &a, big, sizeof big);
        if (i % 20 == 19)
            store_flush(s);
        store_get_counters(s, &c);
    }
    r.committed = (long long)c.committed;
    r.step = check_off(s, &r, 10);
    if (!r.step && !strstr(r.msg, "cannot be written"))
        r.step = 2;
    r.count = raw_count(path);
    integrity(path, r.integrity, sizeof r.integrity);
    return send_report(&r);
}

static void test_full_disk(void)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/full", tmp);
    CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
    int fds[2];
    CU_ASSERT_FATAL(pipe(fds) == 0);
    report_fd = fds[1];
    int rc = run_child(full_child, dir, 1000L * tmo(30));
    close(fds[1]);
    struct off_report r;
    ssize_t got = read(fds[0], &r, sizeof r);
    close(fds[0]);
    CHECKF(rc == 0 && got == (ssize_t)sizeof r, "the child did not report (exit %d)", rc);
    if (got == (ssize_t)sizeof r) {
        CHECKF(r.step == 0, "full disk (%s): step %d was not as expected: %s", r.way == 1 ? "tmpfs" : "RLIMIT_FSIZE",
               r.step, r.msg);
        CHECKF(r.committed > 0 && r.count == r.committed, "%lld entries committed before the disk was full, %lld in "
               "the file", r.committed, r.count);
        CHECKF(!strcmp(r.integrity, "ok"), "integrity_check after the full disk: %s", r.integrity);
        if (r.step == 0)
            printf("\n    full disk (%s): %s\n", r.way == 1 ? "1 MB tmpfs" : "RLIMIT_FSIZE", r.msg);
    }
    tree_rm(dir);
}

/* ---- kill -9 ---- */

struct killed_arg {
    const char *path;
    uint64_t from;
    int fd; /* where the child writes how far its commits reached */
};

/* Puts from `from` on, forever; every 200 puts commits and says so (entries below the number
 * sent are committed). */
static int killed_child(void *arg)
{
    struct killed_arg *k = arg;
    char err[1024];
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    /* (the WAL copied into the file after nearly every commit, by either thread: kills land in
     * checkpoints too) */
    struct store_opts o = {.batch_entries = 50, .batch_ms = 5, .wal_pages = 16, .wal_max_pages = 64};
    struct store *s = store_open(k->path, &o, err, sizeof err);
    if (!s)
        return 1;
    for (uint64_t i = k->from;; i++) {
        put_i(s, &a, i);
        if ((i + 1 - k->from) % 200 == 0) {
            if (store_flush(s))
                return 2;
            uint64_t done = i + 1;
            if (write(k->fd, &done, sizeof done) != (ssize_t)sizeof done)
                return 3;
        }
    }
}

/* Reads the child's reports until one reaches want (or the deadline); returns the last. */
static uint64_t read_reports(int fd, uint64_t want, long deadline)
{
    uint64_t last = 0, v;
    while (last < want && now_ms() < deadline) {
        ssize_t n = read(fd, &v, sizeof v);
        if (n == (ssize_t)sizeof v)
            last = v;
        else if (n <= 0)
            break;
    }
    return last;
}

static void test_kill_9(void)
{
    const char *path = path_in("killed.db");
    uint64_t from[4], last[4];
    for (int round = 0; round < 4; round++) {
        from[round] = round ? last[round - 1] + 20000 : 0; /* fresh keys (a result is a function of i) */
        int fds[2];
        CU_ASSERT_FATAL(pipe(fds) == 0);
        struct killed_arg k = {path, from[round], fds[1]};
        fflush(NULL);
        pid_t pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            _exit(killed_child(&k));
        }
        close(fds[1]);
        last[round] = read_reports(fds[0], from[round] + 1000 + 400 * (uint64_t)round, now_ms() + 1000L * tmo(30));
        sleep_ms(round * 3); /* somewhere in a later batch */
        kill(pid, SIGKILL);
        int rc = wait_for(pid, 1000L * tmo(10));
        uint64_t v;
        while (read(fds[0], &v, sizeof v) == (ssize_t)sizeof v) /* reports sent before the kill */
            last[round] = v;
        close(fds[0]);
        CHECKF(rc == 128 + SIGKILL && last[round] > from[round], "round %d: the writer ended with %d, committed up to "
               "%llu", round, rc, (unsigned long long)last[round]);
        char ic[256];
        integrity(path, ic, sizeof ic);
        CHECKF(!strcmp(ic, "ok"), "round %d: integrity_check after kill -9: %s", round, ic);
        char err[1024];
        struct store *s = store_open(path, NULL, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        struct store_ident a;
        ident_of("m", "http://h/m", "", &a);
        int lost = 0, wrong = 0;
        for (int r = 0; r <= round; r++) /* every round's committed entries, this one's and before */
            for (uint64_t i = from[r]; i < last[r]; i++)
                lost += has_i(s, &a, i) != 1;
        for (uint64_t i = last[round]; i < last[round] + 20000; i++) /* uncommitted: there or not, never wrong */
            wrong += has_i(s, &a, i) < 0;
        CHECKF(lost == 0 && wrong == 0, "round %d: %d committed entries lost, %d wrong", round, lost, wrong);
        CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    }
    remove_store(path);
}

/* ---- stats and prune ---- */

static struct store_ident A, B, C; /* model_01, model_02, model_01 version 2 */

static void fill_abc(const char *path)
{
    char err[1024];
    ident_of("model_01", "http://h/model_01", "", &A);
    ident_of("model_02", "http://h/model_02", "", &B);
    ident_of("model_01", "http://h/model_01", "2", &C);
    struct store *s = store_open(path, NULL, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (uint64_t i = 0; i < 100; i++)
        put_i(s, &A, i);
    for (uint64_t i = 100; i < 150; i++)
        put_i(s, &B, i);
    for (uint64_t i = 150; i < 160; i++)
        put_i(s, &C, i);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
}

/* Makes the entries of id look put `days` days ago. */
static void age(const char *path, const struct store_ident *id, int days)
{
    char sql[300], hex[2 * STORE_PREFIX_BYTES + 1];
    hash_hex(id->id, STORE_PREFIX_BYTES, hex);
    snprintf(sql, sizeof sql, "UPDATE answer SET stored = stored - %d WHERE substr(key, 1, 8) = x'%s'", days * 86400,
             hex);
    CU_ASSERT_EQUAL(raw_exec(path, sql), 0);
}

static uint64_t bytes_of(uint64_t from, uint64_t to)
{
    unsigned char r[300];
    uint64_t n = 0;
    for (uint64_t i = from; i < to; i++)
        n += result_of(i, r);
    return n;
}

static const struct store_stage_stats *find_stage(const struct store_summary *sum, const struct store_ident *id)
{
    for (int i = 0; i < sum->n; i++)
        if (!memcmp(sum->stages[i].ident.id, id->id, STORE_IDENT_BYTES))
            return &sum->stages[i];
    return NULL;
}

static void test_stats(void)
{
    const char *path = path_in("stats.db");
    char err[1024];
    time_t t0 = time(NULL);
    fill_abc(path);
    age(path, &A, 40);
    struct store_summary sum;
    CU_ASSERT_EQUAL_FATAL(store_stats(path, &sum, err, sizeof err), 0);
    CU_ASSERT_EQUAL(sum.n, 3);
    CU_ASSERT_EQUAL(sum.entries, 160);
    CU_ASSERT_EQUAL(sum.result_bytes, bytes_of(0, 160));
    CU_ASSERT(sum.file_bytes > 0);
    const struct store_stage_stats *a = find_stage(&sum, &A), *b = find_stage(&sum, &B), *c = find_stage(&sum, &C);
    CU_ASSERT_FATAL(a && b && c);
    CU_ASSERT(a->entries == 100 && a->result_bytes == bytes_of(0, 100));
    CU_ASSERT(b->entries == 50 && b->result_bytes == bytes_of(100, 150));
    CU_ASSERT(c->entries == 10 && c->result_bytes == bytes_of(150, 160));
    CU_ASSERT_STRING_EQUAL(c->ident.name, "model_01");
    CU_ASSERT_STRING_EQUAL(c->ident.url, "http://h/model_01");
    CU_ASSERT_STRING_EQUAL(c->ident.version, "2");
    CU_ASSERT(b->oldest >= t0 && b->newest <= time(NULL) + 1 && b->oldest <= b->newest);
    CU_ASSERT(a->newest <= t0 - 40 * 86400 + 5);
    /* by name, then URL: model_01 (twice), model_02 */
    CU_ASSERT_STRING_EQUAL(sum.stages[2].ident.name, "model_02");
    store_summary_free(&sum);
    remove_store(path);
}

static int prune(const char *path, const struct store_prune *p, struct store_pruned *out, char *err)
{
    return store_prune(path, p, out, err, 1024);
}

static void test_prune(void)
{
    const char *path = path_in("prune.db");
    char err[1024];
    struct store_pruned out;
    struct store_summary sum;
    fill_abc(path);
    age(path, &A, 40);
    age(path, &B, 10);
    /* No filter at all is refused by the command, not here: it would walk everything. By age: */
    struct store_prune p = {.older_than = 30 * 86400};
    CU_ASSERT_EQUAL(prune(path, &p, &out, err), 0);
    CU_ASSERT(out.entries == 100 && out.result_bytes == bytes_of(0, 100) && out.identities == 1);
    CU_ASSERT_EQUAL(store_stats(path, &sum, err, sizeof err), 0);
    CU_ASSERT(sum.n == 2 && sum.entries == 60 && !find_stage(&sum, &A));
    store_summary_free(&sum);
    /* By stage name; a name that matches nothing is an error. */
    const char *names[] = {"model_02"}, *nope[] = {"nope"};
    p = (struct store_prune){.stages = names, .n_stages = 1};
    CU_ASSERT_EQUAL(prune(path, &p, &out, err), 0);
    CU_ASSERT(out.entries == 50 && out.identities == 1);
    p.stages = nope;
    CU_ASSERT_EQUAL(prune(path, &p, &out, err), -1);
    CHECKF(strstr(err, "no stage identity is named \"nope\"") != NULL, "%s", err);
    /* By an identity's hash (a prefix, in capitals too). */
    char hex[2 * STORE_IDENT_BYTES + 1];
    hash_hex(C.id, STORE_IDENT_BYTES, hex);
    hex[10] = 0;
    for (char *h = hex; *h; h++)
        if (*h >= 'a')
            *h = (char)(*h - 'a' + 'A');
    const char *byhash[] = {hex};
    p.stages = byhash;
    CU_ASSERT_EQUAL(prune(path, &p, &out, err), 0);
    CU_ASSERT(out.entries == 10 && out.identities == 1);
    CU_ASSERT_EQUAL(raw_count(path), 0);
    remove_store(path);

    /* Filters together: model_01's entries older than 30 days (A, not C; not B). */
    fill_abc(path);
    age(path, &A, 40);
    age(path, &B, 40);
    const char *m1[] = {"model_01"};
    p = (struct store_prune){.older_than = 30 * 86400, .stages = m1, .n_stages = 1};
    CU_ASSERT_EQUAL(prune(path, &p, &out, err), 0);
    CU_ASSERT(out.entries == 100 && out.identities == 1);
    CU_ASSERT_EQUAL(raw_count(path), 60);
    remove_store(path);

    /* A keep list: what no pipeline given uses goes; then VACUUM gives the room back. */
    fill_abc(path);
    unsigned char keep[1][STORE_IDENT_BYTES];
    memcpy(keep[0], B.id, STORE_IDENT_BYTES);
    p = (struct store_prune){.keep_given = 1, .keep = (const unsigned char(*)[STORE_IDENT_BYTES])keep, .n_keep = 1,
                             .vacuum = 1};
    CU_ASSERT_EQUAL(prune(path, &p, &out, err), 0);
    CU_ASSERT(out.entries == 110 && out.identities == 2);
    CU_ASSERT(out.file_after <= out.file_before);
    CU_ASSERT_EQUAL(store_stats(path, &sum, err, sizeof err), 0);
    CU_ASSERT(sum.n == 1 && sum.entries == 50 && find_stage(&sum, &B));
    store_summary_free(&sum);
    /* An empty keep list keeps nothing. */
    p = (struct store_prune){.keep_given = 1};
    CU_ASSERT_EQUAL(prune(path, &p, &out, err), 0);
    CU_ASSERT(out.entries == 50 && raw_count(path) == 0);
    char ic[256];
    integrity(path, ic, sizeof ic);
    CU_ASSERT_STRING_EQUAL(ic, "ok");
    remove_store(path);
}

/* ---- annotate cache stats|prune ---- */

/* The run's pipeline function (memo_pipeline_idents, suite "memo") stands in as: a.json uses
 * model_01 (A), bad.json is broken. */
static int fake_idents(void *ud, const char *path, const char *server, struct store_ident **ids, int *n, char *err,
                       size_t errlen)
{
    (void)ud;
    (void)server;
    if (strstr(path, "bad")) {
        snprintf(err, errlen, "stage 2 (x): unknown key \"urll\"");
        return -1;
    }
    *ids = malloc(sizeof **ids);
    if (!*ids)
        return -1;
    **ids = A;
    *n = 1;
    return 0;
}

/* Runs `annotate cache ARGS...` (NULL-terminated); its exit status, output and errors. */
static int cache(char *out, char *err, const char *const *args)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = "cache";
    for (; *args && argc < 15; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    char *o = NULL, *e = NULL;
    size_t ol, el;
    FILE *fo = open_memstream(&o, &ol), *fe = open_memstream(&e, &el);
    struct cache_hooks h = {fake_idents, NULL};
    int rc = cache_run(argc, argv, &h, fo, fe);
    fclose(fo);
    fclose(fe);
    snprintf(out, 4096, "%s", o);
    snprintf(err, 4096, "%s", e);
    free(o);
    free(e);
    return rc;
}

static void test_command(void)
{
    const char *path = path_in("cmd.db");
    char out[4096], err[4096], hexa[2 * STORE_IDENT_BYTES + 1];
    fill_abc(path);
    age(path, &B, 40);
    hash_hex(A.id, STORE_IDENT_BYTES, hexa);
    hexa[16] = 0;
    CU_ASSERT_EQUAL(cache(out, err, (const char *[]){"stats", path, NULL}), 0);
    CHECKF(strstr(out, "160 entries") && strstr(out, hexa) && strstr(out, "model_02") &&
           strstr(out, "http://h/model_01") && strstr(out, "       100  "), "stats printed:\n%s", out);
    /* usage errors: exit 2, named */
    struct {
        const char *args[6], *want;
    } bad[] = {
        {{NULL}, "usage: annotate cache"},
        {{"list", path, NULL}, "unknown command list"},
        {{"stats", NULL}, "give the store's FILE"},
        {{"stats", path, "more", NULL}, "takes one FILE"},
        {{"prune", path, NULL}, "say what to drop"},
        {{"prune", path, "--older-than", "30", NULL}, "--older-than 30: give a whole number and a unit"},
        {{"prune", path, "--older-than", NULL}, "--older-than needs a value"},
        {{"prune", path, "--stage", "nope", NULL}, "no stage identity is named \"nope\""},
        {{"prune", path, "--keep-pipelines", NULL}, "needs one pipeline file"},
        {{"prune", path, "--keep-pipelines", "bad.json", NULL}, "bad.json: stage 2 (x): unknown key"},
        {{"prune", path, "--frobnicate", NULL}, "unknown option --frobnicate"},
        {{"stats", "/nonexistent/cache.db", NULL}, "cache /nonexistent/cache.db: No such file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = cache(out, err, bad[i].args);
        CHECKF(rc == 2 && strstr(err, bad[i].want), "case %zu: exit %d, stderr: %s", i, rc, err);
    }
    CU_ASSERT_EQUAL(raw_count(path), 160); /* none of that dropped anything */
    CU_ASSERT_EQUAL(cache(out, err, (const char *[]){"--help", NULL}), 0);
    CU_ASSERT(strstr(out, "--keep-pipelines") != NULL);
    /* prune: by age, then what a.json does not use (keeps A), with --vacuum */
    CU_ASSERT_EQUAL(cache(out, err, (const char *[]){"prune", path, "--older-than", "30d", NULL}), 0);
    CHECKF(strstr(out, "dropped 50 entries") && strstr(out, "1 stage identities"), "prune printed: %s", out);
    CU_ASSERT_EQUAL(cache(out, err, (const char *[]){"prune", path, "--keep-pipelines", "a.json", "--vacuum", NULL}),
                    0);
    CHECKF(strstr(out, "dropped 10 entries"), "prune printed: %s", out);
    CU_ASSERT_EQUAL(raw_count(path), 100);
    CU_ASSERT_EQUAL(cache(out, err, (const char *[]){"prune", path, "--stage", hexa, NULL}), 0);
    CU_ASSERT_EQUAL(raw_count(path), 0);
    remove_store(path);
    CU_ASSERT(cache_parse_age("90m") == 5400 && cache_parse_age("2w") == 14 * 86400 && cache_parse_age("3600s") == 3600);
    CU_ASSERT(cache_parse_age("0d") == -1 && cache_parse_age("-1d") == -1 && cache_parse_age("1y") == -1 &&
              cache_parse_age("d") == -1 && cache_parse_age("1dd") == -1 && cache_parse_age("999999w") == -1);
}

/* ---- threads ---- */

struct worker {
    struct store *s;
    const struct store_ident *id;
    uint64_t from;
    int bad; /* this thread's own count (CUnit's asserts are not for threads) */
};

static void *put_and_get(void *arg)
{
    struct worker *w = arg;
    uint64_t x = w->from + 1;
    for (uint64_t i = w->from; i < w->from + 3000; i++) {
        put_i(w->s, w->id, i);
        if (has_i(w->s, w->id, i) != 1) /* its own put, seen at once */
            w->bad++;
        uint64_t other = xorshift64(&x) % 12000; /* any thread's: absent or right */
        if (has_i(w->s, w->id, other) < 0)
            w->bad++;
    }
    return NULL;
}

static void test_threads(void)
{
    const char *path = path_in("threads.db");
    char err[1024];
    struct store_ident a;
    ident_of("m", "http://h/m", "", &a);
    /* Small batches and buffers, few readers: the writer swaps often, puts wait, lookups wait
     * for a connection; a short WAL: the checkpointer runs beside them, and the writer waits for
     * it. */
    struct store_opts o = {.batch_entries = 100, .batch_ms = 10, .buffer_bytes = 8000, .readers = 2,
                           .wal_pages = 8, .wal_max_pages = 32};
    struct store *s = store_open(path, &o, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){s, &a, (uint64_t)i * 3000, 0};
        CU_ASSERT_FATAL(pthread_create(&t[i], NULL, put_and_get, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECKF(w[i].bad == 0, "thread %d: %d lookups wrong", i, w[i].bad);
    }
    struct store_counters c;
    store_get_counters(s, &c);
    CU_ASSERT(c.puts == 12000 && c.off == 0);
    CU_ASSERT_EQUAL(store_close(s, err, sizeof err), 0);
    CU_ASSERT_EQUAL(raw_count(path), 12000);
    char ic[256];
    integrity(path, ic, sizeof ic);
    CHECKF(!strcmp(ic, "ok"), "integrity_check: %s", ic);
    remove_store(path);
}

int register_store(void)
{
    CU_pSuite s = CU_add_suite("store serial", suite_init, suite_clean);
    if (!s || !CU_add_test(s, "put and get byte for byte, misses, first put wins", test_put_get) ||
        !CU_add_test(s, "identities and keys", test_keys) ||
        !CU_add_test(s, "batches by count, by age, by bytes, and at close", test_batches) ||
        !CU_add_test(s, "the checkpointer beside the writer; the WAL bounded", test_checkpoints) ||
        !CU_add_test(s, "without the checkpointer: SQLite's checkpoints, the WAL bounded", test_no_checkpointer) ||
        !CU_add_test(s, "two handles on one file", test_two_handles) ||
        !CU_add_test(s, "two writing processes and a reader on one file", test_two_processes) ||
        !CU_add_test(s, "processes opening one new store at once all get it", test_new_store_at_once) ||
        !CU_add_test(s, "the file is made 0600, with its -wal and -shm", test_file_mode) ||
        !CU_add_test(s, "what is not a store is refused at open", test_not_a_store) ||
        !CU_add_test(s, "a read-only file or folder: off, told once", test_read_only) ||
        !CU_add_test(s, "a full disk: off, told once, the file intact", test_full_disk) ||
        !CU_add_test(s, "kill -9 mid-batch: integrity ok, committed entries there", test_kill_9) ||
        !CU_add_test(s, "stats per identity", test_stats) ||
        !CU_add_test(s, "prune by age, stage, hash, keep list; vacuum", test_prune) ||
        !CU_add_test(s, "annotate cache stats|prune: output, usage errors", test_command))
        return -1;
    CU_pSuite c = CU_add_suite("store concurrent", suite_init, suite_clean);
    if (!c || !CU_add_test(c, "four threads put and look up at once", test_threads))
        return -1;
    return 0;
}
