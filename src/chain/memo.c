/* memo: see memo.h (what a question is, where the lookups live) and chain.h (what the drivers
 * call). In steps: identities and keys; the registry of questions on the wire; a request's look
 * up and its settling; opening and closing. */
#include "chain/memo.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "chain/chain_int.h"
#include "endpoint/shared.h"
#include "options.h"

_Static_assert(STORE_KEY_BYTES == sizeof((struct memo_ticket *)0)->key, "a ticket holds a store key");
_Static_assert(STORE_KEY_BYTES == SHARED_MEMO_KEY, "the registry holds store keys");

enum { MEMO_NEW = 0, MEMO_ASKED, MEMO_ANSWERED };

#define MEMO_MAX_WATCH 256 /* event loops (--loops) */

struct memo {
    const struct pipeline *p;
    struct store *store;
    struct shared_page *sh;
    struct shared_memo *reg;
    struct store_ident *ids; /* [p->n] */
    unsigned char *have_id;  /* [p->n]: ids[s] could be computed */
    int32_t pid;
    int worker;              /* a worker process: its answers are kept claimed until committed */
    pthread_mutex_t watch_mu;
    int watch[MEMO_MAX_WATCH], n_watch;
};

/* ---- identities ---- */

/* A template, segment by segment: its kind, where it is written, and a fixed text's bytes. A
 * reference to a stage is only a reference: what it puts in the body is in the request's key. */
static void ident_tmpl(struct hash_ctx *h, const char *what, const struct tmpl *t)
{
    char n[24];
    snprintf(n, sizeof n, "%d", t->n);
    store_ident_add(h, what, n, strlen(n));
    for (int i = 0; i < t->n; i++) {
        const struct tseg *g = &t->seg[i];
        unsigned char kc[2] = {(unsigned char)g->kind, (unsigned char)g->ctx};
        store_ident_add(h, "seg", kc, 2);
        if (g->kind == T_TEXT)
            store_ident_add(h, "text", g->text, g->len);
    }
}

static void ident_body(struct hash_ctx *h, const struct body *b)
{
    unsigned char k = (unsigned char)b->kind;
    store_ident_add(h, "body", &k, 1);
    if (b->kind != BODY_FORM)
        ident_tmpl(h, "template", &b->t);
    for (int i = 0; i < b->n_parts; i++) {
        store_ident_add(h, "part", b->parts[i].name, strlen(b->parts[i].name));
        if (b->parts[i].file)
            store_ident_add(h, "file", "", 0);
        else
            ident_tmpl(h, "value", &b->parts[i].value);
    }
    if (b->batch)
        ident_tmpl(h, "batch", &b->outer);
}

static void ident_text(struct hash_ctx *h, const char *what, const char *text)
{
    if (text)
        store_ident_add(h, what, text, strlen(text));
}

int memo_ident(const struct pipeline *p, int s, struct store_ident *id)
{
    const struct stage *st = &p->stages[s];
    struct hash_ctx h;
    if (!st->full_url || store_ident_begin(&h))
        return -1;
    ident_text(&h, "url", st->full_url);
    ident_body(&h, &st->body);
    ident_text(&h, "input", st->input == INPUT_EACH ? "each" : "image");
    ident_text(&h, "array", st->each_array);
    ident_text(&h, "field", st->each_field);
    ident_text(&h, "items", st->items.text);
    ident_text(&h, "crop", st->crop ? st->crop_expr.text : NULL);
    ident_text(&h, "result", st->result.text);
    ident_text(&h, "column", st->column.text); /* (none: the identities before "column" existed) */
    ident_text(&h, "error", st->error.text);
    ident_text(&h, "version", st->version);
    return store_ident_end(&h, id, st->name, st->shown_url, st->version);
}

int memo_pipeline_idents(void *ud, const char *path, const char *server, struct store_ident **ids, int *n,
                         char *err, size_t errlen)
{
    (void)ud;
    struct config dflt;
    config_defaults(&dflt, NULL);
    struct pipeline *p = NULL;
    *ids = NULL;
    *n = 0;
    if (pipeline_load(path, &p, err, errlen) || pipeline_resolve_urls(p, server ? server : dflt.server, err, errlen)) {
        pipeline_free(p);
        return -1;
    }
    if (!(*ids = calloc((size_t)p->n + 1, sizeof **ids))) {
        snprintf(err, errlen, "out of memory");
        pipeline_free(p);
        return -1;
    }
    for (int s = 0; s < p->n; s++)
        if (memo_ident(p, s, &(*ids)[*n]) == 0)
            ++*n;
    pipeline_free(p);
    return 0;
}

/* ---- a request's key ---- */

/* The pieces of a filled template: the image's base64 or bytes as the file's digest, every other
 * piece as its bytes. 0, or -1 when the image is sent but has no digest. */
static int key_filled(struct hash_ctx *h, const struct filled *f, const struct item *it)
{
    for (int i = 0; i < f->n; i++) {
        const struct piece *pc = &f->pc[i];
        int image = (it->b64 && pc->p == it->b64 && pc->n == it->b64_len) ||
                    (it->raw && pc->p == (const char *)it->raw && pc->n == it->raw_len);
        if (image && !it->has_digest)
            return -1;
        if (image)
            store_key_image(h, it->digest);
        else
            store_key_bytes(h, pc->p, pc->n);
    }
    return 0;
}

static void key_text(struct hash_ctx *h, const char *text)
{
    store_key_bytes(h, text, strlen(text));
}

/* req's key (memo.h: what a question is). 0, or -1: the request is not cacheable. */
static int req_key(const struct memo *m, const struct chain_req *req, struct store_key *k)
{
    const struct stage *st = &m->p->stages[req->stage];
    const struct item *it = req->it;
    struct hash_ctx h;
    if (!m->have_id[req->stage] || store_key_begin(&h, &m->ids[req->stage]))
        return -1;
    int bad = 0;
    if (st->body.kind == BODY_FORM) {
        const char *slash = strrchr(it->path, '/');
        for (int i = 0; i < req->n_parts && i < st->body.n_parts && !bad; i++) {
            key_text(&h, st->body.parts[i].name);
            if (st->body.parts[i].file) { /* sent with the file's name and type (http.c) */
                key_text(&h, slash ? slash + 1 : it->path);
                key_text(&h, req->mime ? req->mime : "");
            }
            bad = key_filled(&h, &req->parts[i], it);
        }
    } else {
        bad = key_filled(&h, &req->body, it);
        if (st->type_of_image) /* the Content-Type it is sent with */
            key_text(&h, req->mime ? req->mime : "application/octet-stream");
    }
    if (bad) {
        hash_discard(&h);
        return -1;
    }
    return store_key_end(&h, &m->ids[req->stage], k);
}

/* ---- the registry of questions on the wire ---- */

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
    /* Not FUTEX_PRIVATE: the word is in memory shared with worker processes. */
    return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

/* Wakes every waiter: blocking ones on the futex, this process's event loops through their
 * descriptors. */
static void wake_all(struct memo *m)
{
    atomic_fetch_add(&m->reg->gen, 1);
    futex(&m->reg->gen, FUTEX_WAKE, INT_MAX, NULL);
    pthread_mutex_lock(&m->watch_mu);
    for (int i = 0; i < m->n_watch; i++) {
        uint64_t one = 1;
        ssize_t w = write(m->watch[i], &one, sizeof one);
        (void)w;
    }
    pthread_mutex_unlock(&m->watch_mu);
}

/* Takes the table's lock. One left by a process that died mid-change may have left the table
 * half-changed: it is wiped (every claim dropped, every waiter looks again: questions asked twice
 * at worst). Returns 1 when it was. */
static int reg_lock(struct shared_memo *r)
{
    if (pthread_mutex_lock(&r->mu) != EOWNERDEAD)
        return 0;
    memset(r->slot, 0, sizeof r->slot);
    r->used = 0;
    pthread_mutex_consistent(&r->mu);
    return 1;
}

static size_t home_of(const unsigned char *key)
{
    uint64_t h;
    memcpy(&h, key + STORE_PREFIX_BYTES, sizeof h);
    return (size_t)h & (SHARED_MEMO_SLOTS - 1);
}

/* Under the lock: the slot holding key, or the free slot where it would go. */
static size_t reg_find(const struct shared_memo *r, const unsigned char *key)
{
    size_t i = home_of(key);
    while (r->slot[i].pid && memcmp(r->slot[i].key, key, SHARED_MEMO_KEY))
        i = (i + 1) & (SHARED_MEMO_SLOTS - 1);
    return i;
}

/* Under the lock: empties slot i, moving up the entries after it that probed past it (linear
 * probing's deletion without tombstones). */
static void reg_remove(struct shared_memo *r, size_t i)
{
    const size_t mask = SHARED_MEMO_SLOTS - 1;
    for (size_t j = (i + 1) & mask; r->slot[j].pid; j = (j + 1) & mask) {
        size_t k = home_of(r->slot[j].key);
        /* j's entry may fill the hole at i unless its home lies cyclically in (i, j]. */
        if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
            r->slot[i] = r->slot[j];
            i = j;
        }
    }
    memset(&r->slot[i], 0, sizeof r->slot[i]);
    r->used--;
}

enum claim {
    CLAIMED, /* this request asks it */
    HELD,    /* another request asks it (or has, and its process has yet to commit the answer) */
    HERE,    /* answered in this process: its store holds it */
    NO_ROOM  /* the registry is full: asked without a claim */
};

/* Claims t's question for this request, or counts it as a waiter of the claim already there. */
static enum claim claim(struct memo *m, struct memo_ticket *t)
{
    struct shared_memo *r = m->reg;
    int wiped = reg_lock(r);
    size_t i = reg_find(r, t->key);
    struct shared_memo_slot *sl = &r->slot[i];
    enum claim c = NO_ROOM;
    if (sl->pid && sl->done && sl->pid == m->pid) {
        c = HERE;
    } else if (sl->pid) {
        if (sl->waiters < UINT16_MAX)
            sl->waiters++;
        sl->remote |= sl->pid != m->pid;
        t->gen = atomic_load(&r->gen); /* a give-back after this changes it: no wake-up is lost */
        c = HELD;
    } else if (r->used < SHARED_MEMO_SLOTS / 4 * 3) {
        memcpy(sl->key, t->key, SHARED_MEMO_KEY);
        sl->pid = m->pid;
        if (++r->serial == 0) /* 0 is no claim */
            r->serial = 1;
        sl->serial = t->serial = r->serial;
        sl->waiters = 0;
        sl->remote = 0;
        r->used++;
        t->m = m;
        c = CLAIMED;
    }
    pthread_mutex_unlock(&r->mu);
    if (wiped)
        wake_all(m);
    return c;
}

/* Gives t's claim back, and wakes its waiters if it had any. */
static void unclaim(struct memo *m, struct memo_ticket *t)
{
    struct shared_memo *r = m->reg;
    int wiped = reg_lock(r);
    size_t i = reg_find(r, t->key);
    int waiters = 0;
    if (r->slot[i].pid == m->pid && r->slot[i].serial == t->serial) {
        waiters = r->slot[i].waiters;
        reg_remove(r, i);
    }
    pthread_mutex_unlock(&r->mu);
    t->m = NULL;
    t->serial = 0;
    if (waiters || wiped)
        wake_all(m);
}

/* A worker process's answer is about to be put: its claim stays, marked done, until its store
 * has committed the answer (committed below), so that another process's copy waits for it rather
 * than miss it in the file. Marked before the put reaches the writer: marked after, a commit in
 * between would find it not done and leave it there for ever, and every copy would wait on it.
 * Returns the claim's waiters (*remote: one is in another process); the ticket keeps its claim,
 * for unclaim should the put not be taken. */
static int mark_done(struct memo *m, struct memo_ticket *t, int *remote)
{
    struct shared_memo *r = m->reg;
    int wiped = reg_lock(r), waiters = 0;
    size_t i = reg_find(r, t->key);
    if (r->slot[i].pid == m->pid && r->slot[i].serial == t->serial) {
        r->slot[i].done = 1;
        waiters = r->slot[i].waiters;
        *remote = waiters > 0 && r->slot[i].remote;
    }
    pthread_mutex_unlock(&r->mu);
    if (wiped)
        wake_all(m);
    return waiters;
}

/* The store's writer: a put is committed (or dropped, the store being off). A done claim on its
 * key goes, and its waiters look again. */
static void committed(void *ud, const unsigned char *key)
{
    struct memo *m = ud;
    struct shared_memo *r = m->reg;
    int wiped = reg_lock(r), waiters = 0;
    size_t i = reg_find(r, key);
    if (r->slot[i].pid == m->pid && r->slot[i].done) {
        waiters = r->slot[i].waiters;
        reg_remove(r, i);
    }
    pthread_mutex_unlock(&r->mu);
    if (waiters || wiped)
        wake_all(m);
}

/* A claim on key by a process that no longer exists (a worker that crashed or was killed) is
 * taken off, and its waiters woken. */
static void drop_if_orphaned(struct memo *m, const unsigned char *key)
{
    struct shared_memo *r = m->reg;
    int wiped = reg_lock(r), gone = 0;
    size_t i = reg_find(r, key);
    pid_t pid = r->slot[i].pid;
    if (pid && pid != m->pid && kill(pid, 0) != 0 && errno == ESRCH) {
        reg_remove(r, i);
        gone = 1;
    }
    pthread_mutex_unlock(&r->mu);
    if (gone || wiped)
        wake_all(m);
}

static void registry_init(struct shared_memo *r)
{
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&r->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    r->ready = 1;
}

/* ---- the keys this run has put (shared.h: a Bloom filter in the shared page) ---- */

/* Four bits of the 2^26, from the key's hash bytes (which are uniform already), all in one block
 * of 512 bits, a cache line: a put and a look each touch one line of the 8 MiB, not four. */
static void put_bits(const unsigned char *key, uint64_t bit[4])
{
    uint64_t a, b;
    memcpy(&a, key + STORE_PREFIX_BYTES, sizeof a);
    memcpy(&b, key + STORE_PREFIX_BYTES + 8, sizeof b);
    uint64_t block = (a & ((uint64_t)SHARED_MEMO_PUT_WORDS / 8 - 1)) * 512;
    for (int i = 0; i < 4; i++)
        bit[i] = block + (b >> (9 * i) & 511);
}

static void put_mark(struct memo *m, const unsigned char *key)
{
    uint64_t bit[4];
    put_bits(key, bit);
    for (int i = 0; i < 4; i++)
        atomic_fetch_or_explicit(&m->reg->put[bit[i] / 64], 1ull << (bit[i] % 64), memory_order_relaxed);
}

/* 0 when this run has surely not put key; 1 when it may have. */
static int put_maybe(const struct memo *m, const unsigned char *key)
{
    uint64_t bit[4];
    put_bits(key, bit);
    for (int i = 0; i < 4; i++)
        if (!(atomic_load_explicit(&m->reg->put[bit[i] / 64], memory_order_relaxed) >> (bit[i] % 64) & 1))
            return 0;
    return 1;
}

/* ---- telling the store's failure ---- */

/* Once per run, whichever process sees it first; on its own line even under a progress line. */
static void tell(struct memo *m, const char *msg)
{
    if (atomic_exchange(&m->reg->told, 1))
        return;
    fprintf(stderr, "%sannotate: %s\n", isatty(STDERR_FILENO) ? "\r\033[K" : "", msg);
    fflush(stderr);
}

static void check_off(struct memo *m)
{
    char msg[1200];
    if (store_off(m->store) && store_failure(m->store, msg, sizeof msg))
        tell(m, msg);
}

/* ---- a request ---- */

static void count(const struct memo *m, int stage, int hit)
{
    atomic_fetch_add_explicit(hit ? &m->sh->stage[stage].memo_hits : &m->sh->stage[stage].memo_misses, 1,
                              memory_order_relaxed);
}

/* Element i of the stored pair [RESULT, COLUMN] (text checked) as Raw; NULL when out of memory. */
static cJSON *pair_part(const char *text, size_t len, long i)
{
    struct json_path path = {.step = {{NULL, 0, i}}, .n = 1};
    const char *v;
    size_t vl;
    if (json_find(text, len, &path, &v, &vl))
        return NULL;
    char *t = strndup(v, vl);
    cJSON *r = t ? cJSON_CreateRaw(t) : NULL;
    free(t);
    return r;
}

/* What the store holds for a request (memo_settled): the result's text, or, for a stage with a
 * "column", the pair [RESULT, COLUMN] (so that a hit's cell is what the answer's was); NULL and no
 * column when it is not there (or not such a pair). */
static cJSON *stored_result(const struct stage *st, const char *bytes, size_t len, cJSON **column)
{
    *column = NULL;
    if (!st->column.text)
        return cJSON_CreateRaw(bytes); /* a result is JSON text: no NUL inside */
    if (json_check(bytes, len, NULL, 0))
        return NULL;
    cJSON *res = pair_part(bytes, len, 0);
    if (res && !(*column = pair_part(bytes, len, 1))) {
        cJSON_Delete(res);
        return NULL;
    }
    return res;
}

/* Settles req with the stored result. 1, or 0 when it cannot be had (a miss, out of memory). */
static int answer_from_store(const struct run *run, struct memo *m, struct chain_req *req)
{
    char *bytes;
    size_t len;
    int got = store_get(m->store, (const struct store_key *)req->memo.key, &bytes, &len);
    check_off(m);
    cJSON *column = NULL, *res = got ? stored_result(&run->p->stages[req->stage], bytes, len, &column) : NULL;
    free(bytes);
    if (!res)
        return 0;
    cJSON_Delete(req->column);
    req->column = column;
    if (req->memo.m)
        unclaim(m, &req->memo); /* its waiters look again, and find it */
    req->memo.state = MEMO_ANSWERED;
    count(m, req->stage, 1);
    chain_settle(run, req, res, NULL);
    return 1;
}

enum chain_memo chain_memo_look(const struct run *run, struct chain_req *req)
{
    struct memo *m = run->memo;
    struct memo_ticket *t = &req->memo;
    if (!m || req->n_members || req->cut || t->state != MEMO_NEW)
        return CHAIN_ASK; /* (a batch's members were looked up; a crop stage's cut is no request) */
    if (!t->keyed) {
        if (req_key(m, req, (struct store_key *)t->key)) {
            t->state = MEMO_ASKED; /* not cacheable: asked, and never put */
            count(m, req->stage, 0);
            return CHAIN_ASK;
        }
        t->keyed = 1;
    }
    enum claim c = claim(m, t);
    if (c == HELD) {
        t->waited = 1;
        return CHAIN_TWIN;
    }
    if (c == HERE)
        t->waited = 1; /* found in this process's store, whatever the stage's flag */
    /* A stage whose identity the store did not hold when the run started can only hit on this
     * run's own puts: the store is not asked for the others (they cost nothing then). */
    if ((t->waited || atomic_load(&m->sh->stage[req->stage].memo_look) || put_maybe(m, t->key)) &&
        answer_from_store(run, m, req))
        return CHAIN_ANSWERED;
    t->state = MEMO_ASKED;
    count(m, req->stage, 0);
    return CHAIN_ASK;
}

/* A value's JSON text, malloc'd (a Raw value's own bytes); NULL when out of memory. */
static char *text_of(const cJSON *v)
{
    return cJSON_IsRaw(v) ? strdup(v->valuestring) : cJSON_PrintUnformatted(v);
}

/* What is stored for an ok answer: its result's text, or [RESULT,COLUMN] when the stage has a
 * column (stored_result reads it back). malloc'd; NULL when out of memory. */
static char *stored_text(const cJSON *result, const cJSON *column)
{
    char *r = text_of(result);
    if (!r || !column)
        return r;
    char *c = text_of(column), *pair = NULL;
    if (c && asprintf(&pair, "[%s,%s]", r, c) < 0)
        pair = NULL;
    free(r);
    free(c);
    return pair;
}

void memo_settled(const struct run *run, struct chain_req *req, const cJSON *result)
{
    struct memo *m = run->memo;
    struct memo_ticket *t = &req->memo;
    if (!m || t->state != MEMO_ASKED)
        return;
    char *put = result && t->keyed ? stored_text(result, req->column) : NULL;
    int remote = 0, waiters = 0, taken = 0;
    if (put && t->m && m->worker)
        waiters = mark_done(m, t, &remote); /* before the put: see mark_done */
    if (put)
        taken = store_put(m->store, (const struct store_key *)t->key, &m->ids[req->stage], put, strlen(put));
    if (put)
        check_off(m);
    free(put);
    if (taken)
        put_mark(m, t->key);
    if (!t->m)
        return;
    if (!taken || !m->worker) {
        unclaim(m, t); /* this process's own lookups find the put in the store's buffer */
        return;
    }
    t->m = NULL; /* the claim is the commit's to take off now */
    t->serial = 0;
    if (waiters > 0 && remote)
        store_flush(m->store); /* another process's twin waits for the commit: now */
}

void memo_release(struct chain_req *req)
{
    if (req->memo.m)
        unclaim(req->memo.m, &req->memo);
}

void chain_memo_wait(const struct run *run, const struct chain_req *req, double max_s)
{
    struct memo *m = run->memo;
    if (!m)
        return;
    struct timespec ts = {(time_t)max_s, (long)((max_s - (double)(time_t)max_s) * 1e9)};
    futex(&m->reg->gen, FUTEX_WAIT, req->memo.gen, &ts);
    if (atomic_load(&m->reg->gen) == req->memo.gen)
        drop_if_orphaned(m, req->memo.key);
}

int chain_memo_changed(const struct run *run, uint32_t *seen)
{
    if (!run->memo)
        return 0;
    uint32_t g = atomic_load(&run->memo->reg->gen);
    int changed = g != *seen;
    *seen = g;
    return changed;
}

void chain_memo_watch(const struct run *run, int fd, int on)
{
    struct memo *m = run->memo;
    if (!m || fd < 0)
        return;
    pthread_mutex_lock(&m->watch_mu);
    if (on && m->n_watch < MEMO_MAX_WATCH) {
        m->watch[m->n_watch++] = fd;
    } else if (!on) {
        for (int i = 0; i < m->n_watch; i++)
            if (m->watch[i] == fd)
                m->watch[i--] = m->watch[--m->n_watch];
    }
    pthread_mutex_unlock(&m->watch_mu);
}

/* ---- opening and closing ---- */

/* A worker process's store: one reader, and a share of the parent's page cache (each process
 * that opens a store has caches of its own); commits every 100 ms, so that another worker finds
 * an answer soon. */
static struct store_opts opts_for(const struct run *run, int worker, void *ud)
{
    struct store_opts o = {0};
    if (worker) {
        o.settled = committed;
        o.settled_ud = ud;
        int w = run->cfg->workers > 0 ? run->cfg->workers : 1;
        o.readers = 1;
        o.cache_kib = 49152 / w < 2048 ? 2048 : 49152 / w > 16384 ? 16384 : 49152 / w;
        o.batch_ms = 100;
    }
    return o;
}

/* The stages' identities, and whether the store holds answers of each (the lookups' flag). */
static int set_idents(struct memo *m)
{
    int n = m->p->n;
    m->ids = calloc((size_t)n + 1, sizeof *m->ids);
    m->have_id = calloc((size_t)n + 1, 1);
    if (!m->ids || !m->have_id)
        return -1;
    for (int s = 0; s < n && s < SHARED_MAX_STAGES; s++) {
        m->have_id[s] = memo_ident(m->p, s, &m->ids[s]) == 0;
        if (m->have_id[s] && store_has_ident(m->store, &m->ids[s]))
            atomic_store(&m->sh->stage[s].memo_look, 1);
    }
    return 0;
}

struct memo *memo_open(const struct run *run, int worker, char *err, size_t errlen)
{
    err[0] = 0;
    if (!run->cfg->cache)
        return NULL;
    struct memo *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "cache %s: out of memory", run->cfg->cache);
        return NULL;
    }
    m->p = run->p;
    m->sh = run->shared;
    m->reg = &run->shared->memo;
    m->pid = (int32_t)getpid();
    pthread_mutex_init(&m->watch_mu, NULL);
    if (!m->reg->ready) /* the parent's page, or a worker's own when no memfd could be had */
        registry_init(m->reg);
    m->worker = worker;
    struct store_opts o = opts_for(run, worker, m);
    if (!(m->store = store_open(run->cfg->cache, &o, err, errlen)) || set_idents(m)) {
        if (!err[0])
            snprintf(err, errlen, "cache %s: out of memory", run->cfg->cache);
        memo_close(m);
        return NULL;
    }
    check_off(m); /* read-only: told now, before the first image */
    return m;
}

void memo_close(struct memo *m)
{
    if (!m)
        return;
    char msg[1200];
    if (store_close(m->store, msg, sizeof msg))
        tell(m, msg);
    pthread_mutex_destroy(&m->watch_mu);
    free(m->ids);
    free(m->have_id);
    free(m);
}
