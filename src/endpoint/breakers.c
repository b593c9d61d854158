/* breakers: see breakers.h. */
#include "endpoint/breakers.h"

#include <stdio.h>

#include "endpoint/shared.h"
#include "pipeline/pipeline.h"

/* 1 when a failure says no server is there to answer (breakers.h), not that one answered. */
static int no_service(const struct attempt_report *r)
{
    if (r->kind != ANSWER_BUSY && r->kind != ANSWER_DOWN)
        return 0;
    return r->cc != 0 || r->status == 429 || r->status == 502 || r->status == 503 || r->status == 504;
}

void outage_note(const struct run *run, int s, uint64_t id, const struct attempt_report *r, int alone, double now)
{
    struct shared_stage *d = &run->shared->stage[s];
    if (!no_service(r)) {
        /* An answer of the server's own, a 500 included: it is up. (No answer of another kind,
         * a name that did not resolve say, says nothing either way.) */
        if (r->cc == 0 && atomic_load_explicit(&d->fails_in_row, memory_order_relaxed)) {
            atomic_store(&d->fails_in_row, 0);
            atomic_store(&d->fail_reqs, 0);
            atomic_store(&d->lone_fails, 0);
            atomic_store(&d->last_fail_req, 0);
            atomic_store(&d->down_since_ms, 0);
        }
        return;
    }
    int n = atomic_fetch_add(&d->fails_in_row, 1) + 1;
    int k = atomic_exchange(&d->last_fail_req, id) != id ? atomic_fetch_add(&d->fail_reqs, 1) + 1
                                                        : atomic_load(&d->fail_reqs);
    int lone = alone ? atomic_fetch_add(&d->lone_fails, 1) + 1 : atomic_load(&d->lone_fails);
    int64_t zero = 0;
    if (n >= OUTAGE_ATTEMPTS && (k >= OUTAGE_REQUESTS || lone >= OUTAGE_ATTEMPTS))
        atomic_compare_exchange_strong(&d->down_since_ms, &zero, (int64_t)(now * 1000) | 1);
}

int outage_waiting(const struct run *run, int s, double now)
{
    int64_t since = atomic_load(&run->shared->stage[s].down_since_ms);
    return since && run->cfg->outage_timeout_s > 0 && now * 1000 - (double)since < run->cfg->outage_timeout_s * 1000.0;
}

/* Records why the run must stop (the first reason wins) and stops it. */
static void stop_on_setup_error(const struct run *run, int s, const struct attempt_report *r)
{
    struct shared_page *sh = run->shared;
    const struct stage *st = &run->p->stages[s];
    int expect = 0;
    if (atomic_compare_exchange_strong(&sh->fatal_claim, &expect, 1)) {
        const char *hint = r->cc != 0 ? "check --cacert (or the server's certificate), or --insecure"
                           : r->status == 401 || r->status == 403 || r->status == 400
                               ? "check the stage's credentials (its headers, e.g. Authorization, or its key)"
                           : r->status == 404 ? "check the stage's url (and --server, which relative urls join)"
                                              : "check the stage's url: the server refuses this method there";
        snprintf(sh->fatal_msg, sizeof sh->fatal_msg,
                 "%s: the server at %s answered %d requests in a row with %s: %s. Nothing was written for "
                 "those images; after the fix, run again with --resume",
                 st->name, st->shown_url ? st->shown_url : st->url, SETUP_FAILS, r->why, hint);
        atomic_store(&sh->fatal, 1);
    }
    run_abort(run);
}

int setup_note(const struct run *run, struct ticket *t, const struct attempt_report *r, int alone)
{
    struct shared_stage *d = &run->shared->stage[t->stage];
    if (r->kind != ANSWER_SETUP) {
        if ((r->cc == 0 || r->kind == ANSWER_OK) && !atomic_load_explicit(&d->answered, memory_order_relaxed))
            atomic_store(&d->answered, 1);
        return 0;
    }
    if (atomic_load(&d->answered))
        return 0; /* it has answered as a server set up for us: this one is about the image */
    if (!alone && t->setup_counted)
        return 1; /* counted once: the others on the wire will say whether the stage is wrong */
    t->setup_counted = 1;
    if (atomic_fetch_add(&d->setup_fails, 1) + 1 >= SETUP_FAILS)
        stop_on_setup_error(run, t->stage, r);
    return 1;
}
