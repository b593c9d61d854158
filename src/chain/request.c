/* request: a request's life, from the endpoint's admission to its end (see chain.h): an attempt
 * begins, ends, is retried or settles the request. */
#include "chain/chain_int.h"

#include "common/rng.h"
#include "endpoint/shared.h"

#include <math.h>
#include <stdlib.h>

int chain_max_attempts(const struct run *run, int stage)
{
    int r = run->p->stages[stage].retries;
    return 1 + (r >= 0 ? r : run->cfg->retries);
}

size_t chain_answer_cap(const struct run *run, const struct chain_req *req)
{
    long cap = run->cfg->max_answer_bytes;
    size_t one = cap > 0 ? (size_t)cap : (size_t)64 << 20; /* (the option's default) */
    return one * (size_t)(req && req->n_members > 1 ? req->n_members : 1);
}

size_t chain_answer_room(const struct run *run)
{
    size_t one = chain_answer_cap(run, NULL);
    int most = 1;
    for (int s = 0; s < run->p->n; s++)
        if (run->p->stages[s].batch_size > most)
            most = run->p->stages[s].batch_size;
    return one * (size_t)most;
}

long chain_backoff_ms(const struct config *cfg, int attempt, long retry_after_s, uint64_t *rng)
{
    /* The ceiling doubles until --backoff-max-ms, however many retries it takes (2^60 x any
     * --backoff-ms is past every cap). */
    double cap = ldexp((double)cfg->backoff_ms, attempt > 61 ? 60 : attempt < 1 ? 0 : attempt - 1);
    if (cap > (double)cfg->backoff_max_ms)
        cap = (double)cfg->backoff_max_ms;
    long d = cap >= 1 ? (long)(rng_next(rng) % ((uint64_t)cap + 1)) : 0;
    /* Retry-After is honoured up to max(--backoff-max-ms, 60 s): a server asking for days must
     * not park an image (or a worker) for days. */
    long ra_cap = cfg->backoff_max_ms > 60000 ? cfg->backoff_max_ms : 60000;
    if (retry_after_s >= 0) {
        long ra = retry_after_s > ra_cap / 1000 ? ra_cap : retry_after_s * 1000;
        if (ra > d)
            d = ra;
    }
    return d;
}

void chain_abandon(const struct run *run, struct chain_req *req, const char *why)
{
    endpoint_cancel(run, &req->tk);
    req->retryable = 1; /* not the image's fault */
    if (req->n_members)
        batch_fail_all(run, req, why, 0);
    else
        chain_settle(run, req, NULL, why);
}

/* 1 when every image of req has failed. */
static int all_failed(const struct chain_req *req)
{
    if (!req->n_members)
        return req->it->status == ITEM_FAILED;
    for (int i = 0; i < req->n_members; i++)
        if (req->members[i]->it->status != ITEM_FAILED)
            return 0;
    return 1;
}

int chain_req_moot(const struct run *run, const struct chain_req *req)
{
    return all_failed(req) || run_stop_state(run) == RUN_ABORT;
}

void chain_no_row(struct chain_req *req)
{
    if (!req->n_members)
        req->it->no_row = 1;
    for (int i = 0; i < req->n_members; i++)
        req->members[i]->it->no_row = 1;
}

/* A single request that need not be sent: its item has failed, or the run is being torn down.
 * Settles it and returns 1. */
static int settle_unsent(const struct run *run, struct chain_req *req)
{
    if (req->it->status == ITEM_FAILED) {
        /* A sibling failed: the item's row says so; the rest need not be sent. */
        chain_settle(run, req, NULL, "not sent: an earlier request of this image failed");
        return 1;
    }
    if (run_stop_state(run) == RUN_ABORT) {
        req->it->no_row = 1; /* not the image's fault: no row, --resume runs it */
        chain_settle(run, req, NULL, "not sent: the run was stopped");
        return 1;
    }
    return 0;
}

enum chain_go chain_attempt_begin(const struct run *run, struct chain_req *req, double now)
{
    if (req->n_members && batch_begin(run, req)) {
        endpoint_cancel(run, &req->tk);
        chain_req_free(req); /* every member has been settled */
        return CHAIN_SETTLED;
    }
    if (!req->n_members && settle_unsent(run, req))
        return CHAIN_SETTLED;
    if (!req->t_first)
        req->t_first = now;
    req->t_attempt = now;
    req->attempts++;
    req->sends = 0;
    req->sent = 0;
    if (req->n_members) {
        atomic_fetch_add_explicit(&run->shared->stage[req->stage].batch_sends, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&run->shared->stage[req->stage].batch_items, (uint64_t)req->n_members,
                                  memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&run->shared->in_flight, 1, memory_order_relaxed);
    return CHAIN_SEND;
}

/* ---- the end of an attempt, in steps ---- */

/* How an attempt ended, as the chain read it. */
struct reading {
    enum answer_kind kind;
    cJSON *result;                        /* ANSWER_OK: the result (a batch's: the list) */
    cJSON *column;                        /* ANSWER_OK: the stage's "column", or NULL */
    long retry_after_s;                   /* the answer's wait, header or "retry_after"; -1: none */
    struct span el[CHAIN_BATCH_ITEMS];    /* a batch's result, one element per member */
    struct span cel[CHAIN_BATCH_ITEMS];   /* ... and its column */
    char err[512];
};

/* The attempt is off the wire: libcurl re-sends a request by itself when a reused connection
 * turns out dead; such re-sends are counted, so the attempts match what servers saw. */
static void off_the_wire(const struct run *run, struct chain_req *req, double now)
{
    atomic_fetch_sub_explicit(&run->shared->in_flight, 1, memory_order_relaxed);
    if (req->sends > 1)
        req->attempts += req->sends - 1;
    req->sends = 0;
    req->t_end = now;
}

/* The answer's garbled after all (its column, a batch's count): no result. */
static void garbled(struct reading *rd, enum answer_kind kind)
{
    cJSON_Delete(rd->result);
    cJSON_Delete(rd->column);
    rd->result = rd->column = NULL;
    rd->kind = kind;
}

/* An ok answer's "column": a column that cannot be read is a garbled answer, as a result that
 * cannot be (one that ran past its budget: the pipeline's fault, final). */
static void read_column(const struct stage *st, const struct chain_answer *a, struct reading *rd)
{
    char why[300], ex[96];
    int c = chain_parse_column(st, a->body ? a->body : "", a->len, &rd->column, why, sizeof why);
    if (c == 0)
        return;
    chain_excerpt(a->body ? a->body : "", a->len, ex, sizeof ex);
    snprintf(rd->err, sizeof rd->err, "%s%s%s", why, c == EXPR_OVER_BUDGET ? "" : ": ", c == EXPR_OVER_BUDGET ? "" : ex);
    garbled(rd, c == EXPR_OVER_BUDGET ? ANSWER_FINAL : ANSWER_RETRY);
}

/* Reads the answer once (chain_read_answer, and the stage's column); a batch's result (and
 * column) must have one element per member, else it is a server fault, retried. */
static void read_attempt(const struct run *run, const struct chain_req *req, const struct chain_answer *a,
                         struct reading *rd)
{
    long body_ra;
    const struct stage *st = &run->p->stages[req->stage];
    rd->column = NULL;
    rd->kind = chain_read_answer(st, a, &rd->result, &body_ra, rd->err, sizeof rd->err);
    rd->retry_after_s = body_ra > a->retry_after_s ? body_ra : a->retry_after_s;
    if (rd->kind == ANSWER_OK)
        read_column(st, a, rd);
    if (rd->kind == ANSWER_OK && req->n_members &&
        (batch_split(req, rd->result, rd->el, rd->err, sizeof rd->err) ||
         (rd->column && batch_split(req, rd->column, rd->cel, rd->err, sizeof rd->err))))
        garbled(rd, ANSWER_RETRY);
}

/* The request's result: each member of a batch gets its element. */
static void finish_ok(const struct run *run, struct chain_req *req, struct reading *rd)
{
    if (req->n_members) {
        batch_done(run, req, rd->el, rd->column ? rd->cel : NULL);
        cJSON_Delete(rd->result);
        cJSON_Delete(rd->column);
    } else {
        req->column = rd->column;
        chain_settle(run, req, rd->result, NULL);
    }
}

/* 1 when a failed attempt is to be tried again: a retryable kind, or a set-up answer that is not
 * the image's fault (from a replica while another may answer; one the set-up breaker has yet to
 * judge), within the stage's attempts (beyond them while the stage's server is down, or while
 * the set-up breaker judges), while the run goes on and some image of the request still
 * matters. An "auto" stage's 429 or 503 is flow control: the adaptive limit went past the
 * server's capacity, which is not the image's fault, so up to CHAIN_BUSY_FREE of them are not
 * charged to its retries. */
static int worth_retrying(const struct run *run, struct chain_req *req, const struct reading *rd,
                          const struct chain_answer *a, const struct endpoint_news *news)
{
    if (!answer_retryable(rd->kind) && !news->elsewhere && !news->no_row)
        return 0;
    if (rd->kind == ANSWER_BUSY && a->cc == CURLE_OK && endpoint_adaptive(run, req->stage) &&
        req->busy < CHAIN_BUSY_FREE)
        req->busy++;
    return (req->attempts - req->busy - req->in_batch < chain_max_attempts(run, req->stage) || news->down ||
            news->no_row) &&
           run_stop_state(run) != RUN_ABORT && !all_failed(req);
}

int chain_load_shaped(enum answer_kind kind, const struct chain_answer *a)
{
    if (kind == ANSWER_BUSY || kind == ANSWER_DOWN)
        return 1;
    return kind == ANSWER_RETRY && (a->cc != CURLE_OK || a->status == 408 || a->no_room);
}

/* The request failed for good. A batch of several images is split (each member goes again
 * alone, so that one bad image does not fail the others) unless the failure is the stage's as
 * a whole: a set-up error, its server down, or the run torn down. */
static void finish_failed(const struct run *run, struct chain_req *req, const struct reading *rd,
                          const struct chain_answer *a, const struct endpoint_news *news, double now)
{
    int stopped = run_stop_state(run) == RUN_ABORT;
    if ((answer_retryable(rd->kind) || news->no_row) && stopped)
        chain_no_row(req); /* it would have been retried, or the set-up is wrong: not the image's fault */
    int the_stage = news->no_row || endpoint_down_for(run, req->stage, now) > 0;
    req->retryable = chain_load_shaped(rd->kind, a); /* what a later run may mend: the one rule */
    if (req->n_members > 1 && !the_stage && !stopped) {
        batch_split_up(req);
        return;
    }
    if (req->n_members)
        batch_fail_all(run, req, rd->err, 0);
    else
        chain_settle(run, req, NULL, rd->err);
}

enum chain_step chain_attempt_end(const struct run *run, struct chain_req *req, const struct chain_answer *a,
                                  double now, double *retry_at)
{
    off_the_wire(run, req, now);
    struct reading rd;
    read_attempt(run, req, a, &rd);
    struct attempt_report rep = {rd.kind, (int)a->cc, a->cc == CURLE_OK ? a->status : 0, rd.err};
    struct endpoint_news news = endpoint_done(run, &req->tk, &rep, now);
    if (news.reauth) { /* a token renewed in its file since the request went: at once, again */
        garbled(&rd, ANSWER_RETRY);
        *retry_at = now;
        return CHAIN_RETRY;
    }
    if (rd.kind == ANSWER_OK) {
        finish_ok(run, req, &rd);
        return CHAIN_DONE;
    }
    if (worth_retrying(run, req, &rd, a, &news)) {
        *retry_at = now + (double)chain_backoff_ms(run->cfg, req->attempts, rd.retry_after_s, &req->rng) / 1e3;
        return CHAIN_RETRY;
    }
    finish_failed(run, req, &rd, a, &news, now);
    return CHAIN_FAIL;
}
