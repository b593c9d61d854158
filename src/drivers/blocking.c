/* blocking: see blocking.h. */
#include "drivers/blocking.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "chain/chain.h"
#include "drivers/http.h"
#include "endpoint/endpoint.h"

struct blocking {
    const struct run *run;
    struct http_slot slot;
};

struct blocking *blocking_new(const struct run *run)
{
    struct blocking *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->run = run;
    if (http_slot_init(&w->slot)) {
        free(w);
        return NULL;
    }
    return w;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* Sleeps until t, saying it is alive about every second. */
static void sleep_until(const struct run *run, double t)
{
    for (double left; (left = t - now_s()) > 0;) {
        if (run->alive)
            run->alive(run);
        sleep_s(left > 1 ? 1 : left);
    }
}

/* Waits until the endpoint admits req's attempt. Returns 0 when the request no longer matters
 * (its image failed, the run is being torn down): the chain then settles it. */
static int admitted(const struct run *run, struct chain_req *req)
{
    for (;;) {
        if (run->alive)
            run->alive(run);
        if (chain_req_moot(run, req))
            return 0;
        double until;
        switch (endpoint_admit(run, &req->tk, now_s(), &until, 0)) {
        case ADMIT_GO:
            return 1;
        case ADMIT_WAIT:
            sleep_until(run, until);
            break;
        case ADMIT_PARK:
            endpoint_park(run, &req->tk);
            break;
        }
    }
}

/* One attempt on the wire, and what the chain makes of its end. */
static enum chain_step attempt(struct blocking *w, struct chain_req *req, double *retry_at)
{
    http_prepare(&w->slot, w->run, req);
    CURLcode cc = curl_easy_perform(w->slot.h);
    struct chain_answer a;
    http_answer(&w->slot, cc, &a);
    enum chain_step step = chain_attempt_end(w->run, req, &a, now_s(), retry_at);
    http_answer_release(&w->slot);
    return step;
}

/* One request, with its retries, until the chain settles it. */
static void perform(struct blocking *w, struct chain_req *req)
{
    const struct run *run = w->run;
    for (;;) {
        admitted(run, req); /* (a request that no longer matters is settled below) */
        if (chain_attempt_begin(run, req, now_s()) == CHAIN_SETTLED)
            return;
        double at;
        if (attempt(w, req, &at) != CHAIN_RETRY)
            return;
        sleep_until(run, at);
    }
}

/* Asks the answer store first (chain.h): 1 when req is to be sent, 0 when it was answered from
 * the store. A twin (its question on the wire for another worker) waits for that answer, saying
 * it is alive; a request that no longer matters goes on, to be settled by the chain. */
static int not_answered(const struct run *run, struct chain_req *req)
{
    for (;;) {
        switch (chain_memo_look(run, req)) {
        case CHAIN_ASK:
            return 1;
        case CHAIN_ANSWERED:
            return 0;
        case CHAIN_TWIN:
            if (chain_req_moot(run, req))
                return 1;
            if (run->alive)
                run->alive(run);
            chain_memo_wait(run, req, 1.0);
            break;
        }
    }
}

void blocking_query(struct blocking *w, struct item *it)
{
    if (!w) {
        item_fail(it, "cannot create a curl handle (out of memory?)");
        return;
    }
    struct chain_req *reqs;
    while ((reqs = chain_next(w->run, it))) {
        while (reqs) {
            struct chain_req *r = reqs;
            reqs = r->next;
            if (r->cut) { /* a crop stage's boxes, cut here: its requests go next */
                chain_cut_run(w->run, r);
                struct chain_req *crops = chain_cut_done(w->run, r), *last = crops;
                while (last && last->next)
                    last = last->next;
                if (last) {
                    last->next = reqs;
                    reqs = crops;
                }
                continue;
            }
            if (!not_answered(w->run, r))
                continue;
            /* A batch stage's request goes as a batch of one: this worker waits for its own
             * image, so there are no others to gather (see chain.h). */
            perform(w, chain_batched(w->run, r) ? chain_batch_one(w->run, r) : r);
        }
    }
}

void blocking_free(struct blocking *w)
{
    if (!w)
        return;
    http_slot_free(&w->slot);
    free(w);
}
