/* batch: a stage's "batch" (see chain.h): the batcher that gathers requests of different images
 * into one, and what a batch's begin, answer, split and failure do to its members. */
#include "chain/chain_int.h"

#include "common/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* A member leaving its batch takes the batch's attempts and times as its own. */
static void absorb(struct chain_req *m, const struct chain_req *b)
{
    m->attempts += b->attempts;
    if (!m->t_first)
        m->t_first = b->t_first;
    if (b->t_end > 0)
        m->t_end = b->t_end;
}

/* Settles every member of batch b with why, leaving it empty. */
static void fail_members(const struct run *run, struct chain_req *b, const char *why, int no_row)
{
    for (int i = 0; i < b->n_members; i++) {
        struct chain_req *m = b->members[i];
        absorb(m, b);
        m->retryable = b->retryable;
        if (no_row)
            m->it->no_row = 1;
        chain_settle(run, m, NULL, why);
    }
    b->n_members = 0;
}

void batch_fail_all(const struct run *run, struct chain_req *b, const char *why, int no_row)
{
    fail_members(run, b, why, no_row);
    chain_req_free(b);
}

static struct chain_req *batch_new(int stage, int cap)
{
    struct chain_req *b = calloc(1, sizeof *b);
    if (b && !(b->members = calloc((size_t)cap, sizeof *b->members))) {
        free(b);
        b = NULL;
    }
    if (b)
        b->stage = stage;
    return b;
}

static void batch_push(struct chain_req *b, struct chain_req *m)
{
    if (!b->n_members) {
        b->it = m->it; /* the first member's: what a driver's per-request bookkeeping reads */
        b->rng = m->rng ^ 0xB5AD4ECEDA1CE2A9ull;
        ticket_init(&b->tk, b->stage, m->tk.id, m->tk.rng ^ 0xB5AD4ECEDA1CE2A9ull);
        b->tk.failed_replica = m->tk.failed_replica; /* a split member's retry goes elsewhere */
    }
    m->next = NULL;
    b->members[b->n_members++] = m;
}

struct chain_batcher {
    const struct run *run;
    struct chain_req *open[PIPELINE_MAX_STAGES]; /* per stage: the batch gathering, or NULL */
    double since[PIPELINE_MAX_STAGES];            /* when its first member came */
};

struct chain_batcher *chain_batcher_new(const struct run *run)
{
    struct chain_batcher *b = calloc(1, sizeof *b);
    if (b)
        b->run = run;
    return b;
}

void chain_batcher_free(struct chain_batcher *b)
{
    if (!b)
        return;
    for (int s = 0; s < PIPELINE_MAX_STAGES; s++)
        chain_req_free(b->open[s]);
    free(b);
}

int chain_batched(const struct run *run, const struct chain_req *req)
{
    return !req->n_members && run->p->stages[req->stage].batch_size > 0;
}

struct chain_req *chain_batch_one(const struct run *run, struct chain_req *req)
{
    struct chain_req *b = batch_new(req->stage, 1);
    if (!b) {
        /* Sent as it is, it is settled at once: the image fails with this. */
        item_fail(req->it, "%s: out of memory for a batch", run->p->stages[req->stage].name);
        return req;
    }
    batch_push(b, req);
    return b;
}

struct chain_req *chain_batch_add(struct chain_batcher *bt, struct chain_req *req, double now)
{
    const struct stage *st = &bt->run->p->stages[req->stage];
    int s = req->stage;
    if (req->alone || st->batch_size == 1)
        return chain_batch_one(bt->run, req);
    if (!bt->open[s]) {
        if (!(bt->open[s] = batch_new(s, st->batch_size))) {
            item_fail(req->it, "%s: out of memory for a batch", st->name);
            return req;
        }
        bt->since[s] = now;
    }
    batch_push(bt->open[s], req);
    if (bt->open[s]->n_members < st->batch_size)
        return NULL;
    struct chain_req *full = bt->open[s];
    bt->open[s] = NULL;
    return full;
}

struct chain_req *chain_batch_due(struct chain_batcher *bt, double now, int flush)
{
    for (int s = 0; s < bt->run->p->n; s++)
        if (bt->open[s] && (flush || now >= bt->since[s] + (double)bt->run->p->stages[s].batch_wait_ms / 1e3)) {
            struct chain_req *b = bt->open[s];
            bt->open[s] = NULL;
            return b;
        }
    return NULL;
}

double chain_batch_deadline(const struct chain_batcher *bt)
{
    double t = -1;
    for (int s = 0; s < bt->run->p->n; s++)
        if (bt->open[s]) {
            double due = bt->since[s] + (double)bt->run->p->stages[s].batch_wait_ms / 1e3;
            if (t < 0 || due < t)
                t = due;
        }
    return t;
}

int chain_req_items(const struct chain_req *req, struct item **out)
{
    if (!req->n_members) {
        out[0] = req->it;
        return 1;
    }
    int n = 0;
    for (int i = 0; i < req->n_members && n < CHAIN_BATCH_ITEMS; i++) {
        struct item *it = req->members[i]->it;
        int seen = 0;
        for (int k = n - 1; k >= 0 && !seen; k--)
            seen = out[k] == it;
        if (!seen)
            out[n++] = it;
    }
    return n;
}

int batch_begin(const struct run *run, struct chain_req *b)
{
    const struct stage *st = &run->p->stages[b->stage];
    int stop = run_stop_state(run) == RUN_ABORT;
    int kept = 0, changed = 0;
    for (int i = 0; i < b->n_members; i++) {
        struct chain_req *m = b->members[i];
        if (m->it->status == ITEM_FAILED || stop) {
            /* as chain_attempt_begin settles one request: a failed image keeps its row */
            absorb(m, b);
            if (m->it->status != ITEM_FAILED)
                m->it->no_row = 1; /* stopped: not the image's fault, --resume runs it */
            chain_settle(run, m, NULL, m->it->status == ITEM_FAILED ? "not sent: an earlier request of this image failed"
                                                              : "not sent: the run was stopped");
            changed = 1;
        } else {
            b->members[kept++] = m;
        }
    }
    b->n_members = kept;
    if (!kept)
        return 1;
    b->it = b->members[0]->it;
    if (changed || !b->body.n) {
        const struct filled *items[CHAIN_BATCH_ITEMS];
        for (int i = 0; i < kept; i++)
            items[i] = &b->members[i]->body;
        filled_free(&b->body);
        if (batch_fill(&st->body.outer, items, kept, &b->body)) {
            fail_members(run, b, "out of memory for the batch's body", 0);
            return 1;
        }
    }
    return 0;
}

static int take_element(void *arg, const char *v, size_t n)
{
    struct span *e = arg;
    if (e[0].count >= e[0].cap)
        return 1;
    e[e[0].count].p = v;
    e[e[0].count++].n = n;
    return 0;
}

/* A batch's result (the list): one element per member into el, or -1 with why. */
int batch_split(const struct chain_req *b, const cJSON *result, struct span *el, char *err, size_t errlen)
{
    const char *t = result->valuestring;
    el[0].count = 0;
    el[0].cap = b->n_members;
    int n = json_elements(t, strlen(t), NULL, NULL);
    if (n < 0) {
        char ex[96];
        chain_excerpt(t, strlen(t), ex, sizeof ex);
        snprintf(err, errlen, "the batch's result is not a list (one result per item): %s", ex);
        return -1;
    }
    if (n != b->n_members) {
        snprintf(err, errlen, "the answer has %d result%s for a batch of %d", n, n == 1 ? "" : "s", b->n_members);
        return -1;
    }
    json_elements(t, strlen(t), take_element, el);
    return 0;
}

/* An element's text as a Raw value; NULL when out of memory. */
static cJSON *raw_of(struct span e)
{
    char *t = strndup(e.p, e.n);
    cJSON *v = t ? cJSON_CreateRaw(t) : NULL;
    free(t);
    return v;
}

/* A batch's answer: each member gets its element, or fails with its element's "error". */
void batch_done(const struct run *run, struct chain_req *b, const struct span *el, const struct span *cel)
{
    const struct stage *st = &run->p->stages[b->stage];
    for (int i = 0; i < b->n_members; i++) {
        struct chain_req *m = b->members[i];
        absorb(m, b);
        char *v = NULL, why[300], msg[340];
        int r = st->error.text ? chain_eval_first(&st->error, el[i].p, el[i].n, &v, why, sizeof why) : 0;
        if (r > 0 || r == EXPR_OVER_BUDGET) {
            if (r > 0)
                chain_message_of(v, msg, sizeof msg);
            else
                snprintf(msg, sizeof msg, "\"error\" failed: %s", why);
            free(v);
            chain_settle(run, m, NULL, msg);
            continue;
        }
        size_t cap = chain_answer_cap(run, m);
        if (el[i].n > cap) { /* the batch's transfer may hold more; each image's element may not */
            snprintf(msg, sizeof msg, "the answer's element for this image is larger than --max-answer-bytes (%zu bytes)",
                     cap);
            chain_settle(run, m, NULL, msg);
            continue;
        }
        cJSON *res = raw_of(el[i]);
        if (res && cel && !(m->column = raw_of(cel[i]))) {
            cJSON_Delete(res);
            res = NULL;
        }
        chain_settle(run, m, res, res ? NULL : "out of memory for the answer");
    }
    b->n_members = 0;
    chain_req_free(b);
}

/* A batch that failed for good: each member goes again alone (to its item's requeue, which
 * chain_next gives out), so that one bad image does not fail the others. What it spent in
 * batches is not charged to the retries it has alone. */
void batch_split_up(struct chain_req *b)
{
    for (int i = 0; i < b->n_members; i++) {
        struct chain_req *m = b->members[i];
        absorb(m, b);
        m->alone = 1;
        m->in_batch = m->attempts;
        m->tk.failed_replica = b->tk.failed_replica;
        m->next = m->it->requeue;
        m->it->requeue = m;
    }
    b->n_members = 0;
    chain_req_free(b);
}
