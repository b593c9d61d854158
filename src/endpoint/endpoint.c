/* endpoint: see endpoint.h. The order of an admission: the stage's rate token, the run's, a slot
 * of the stage's concurrency, then the replica. */
#include "endpoint/endpoint.h"

#include "endpoint/breakers.h"
#include "endpoint/limit.h"
#include "endpoint/ratelimit.h"
#include "endpoint/replicas.h"
#include "endpoint/shared.h"
#include "pipeline/pipeline.h"

/* The rate tokens of an attempt: WAIT with *until while one is not valid yet. */
static enum admit take_tokens(const struct run *run, struct ticket *t, double now, double *until)
{
    if (!run->rl || t->tokens >= 2)
        return ADMIT_GO;
    double wait = 0;
    if (t->tokens == 0) {
        wait = ratelimit_take_stage(run->rl, t->stage);
        t->tokens = 1;
    }
    if (wait <= 0) {
        wait = ratelimit_take(run->rl);
        t->tokens = 2;
    }
    if (wait > 0) {
        *until = now + wait; /* the token is ours; it just is not valid yet */
        return ADMIT_WAIT;
    }
    return ADMIT_GO;
}

/* A request whose 401 came with the stage's header files unchanged waits for them to change,
 * re-read every ENDPOINT_CRED_POLL_MS, while the stage's wait runs (endpoint.h). 1 when the
 * attempt may go, 0 with *until when it waits. */
static int credentials_ready(const struct run *run, struct ticket *t, double now, double *until)
{
    if (!t->cred_wait)
        return 1;
    int64_t since = atomic_load(&run->shared->stage[t->stage].unauth_since_ms);
    if (since && now * 1000 - (double)since < ENDPOINT_CRED_WAIT_MS &&
        !pipeline_refresh_headers(run->p, t->stage, t->header_gen)) {
        *until = now + ENDPOINT_CRED_POLL_MS / 1e3;
        return 0;
    }
    t->cred_wait = 0; /* they changed, the stage has answered since, or the wait is over */
    return 1;
}

/* The attempt goes on the wire, or comes off it: counted per stage, so that the outage breaker
 * knows a request that was alone. Off: 1 when it was the stage's only attempt on the wire. */
static void wire_on(const struct run *run, struct ticket *t)
{
    if (!t->on_wire) {
        t->on_wire = 1;
        atomic_fetch_add(&run->shared->stage[t->stage].on_wire, 1);
    }
}

static int wire_off(const struct run *run, struct ticket *t)
{
    if (!t->on_wire)
        return 0;
    t->on_wire = 0;
    return atomic_fetch_sub(&run->shared->stage[t->stage].on_wire, 1) == 1;
}

enum admit endpoint_admit(const struct run *run, struct ticket *t, double now, double *until, int behind)
{
    if (!credentials_ready(run, t, now, until))
        return ADMIT_WAIT;
    enum admit a = take_tokens(run, t, now, until);
    if (a != ADMIT_GO)
        return a;
    if (!t->slot && limit_on(run->shared, t->stage)) {
        if (behind || !limit_try_acquire(run->shared, run->holder, t->stage))
            return ADMIT_PARK;
        t->slot = 1;
    }
    replica_pick(run, t, now);
    wire_on(run, t);
    t->t_sent = now;
    return ADMIT_GO;
}

int endpoint_park(const struct run *run, struct ticket *t)
{
    if (t->slot || !limit_on(run->shared, t->stage))
        return 1;
    t->slot = (unsigned char)limit_wait(run->shared, run->holder, t->stage, 1.0);
    return t->slot;
}

/* What the attempt's end says of the endpoint's capacity: a drop when it was over it, a latency
 * sample when an answer came, nothing otherwise. */
static enum limit_signal capacity_signal(const struct attempt_report *r)
{
    if (r->kind == ANSWER_BUSY)
        return r->cc == CURLE_OPERATION_TIMEDOUT ? LIMIT_TIMEOUT : LIMIT_DROP;
    if (r->kind == ANSWER_DOWN || r->cc != 0)
        return LIMIT_IGNORE;
    return LIMIT_OK;
}

/* Gives back the ticket's slot and tokens; the next attempt takes its own. */
static void release(const struct run *run, struct ticket *t, double now, enum limit_signal sig)
{
    if (t->slot)
        limit_release(run->shared, run->holder, t->stage, t->t_sent, now, sig);
    t->slot = 0;
    t->tokens = 0;
}

/* A 401 from a stage whose headers come from files: read them again (endpoint.h). 1 when the
 * request is worth another attempt at once: they changed, or, for a stage that was answering,
 * they may yet (the attempt then waits for them in endpoint_admit), within the stage's wait.
 * A good answer ends the stage's wait. */
static int renew_credentials(const struct run *run, struct ticket *t, const struct attempt_report *r, double now)
{
    struct shared_stage *d = &run->shared->stage[t->stage];
    if (r->kind == ANSWER_OK && atomic_load_explicit(&d->unauth_since_ms, memory_order_relaxed))
        atomic_store(&d->unauth_since_ms, 0);
    if (r->cc != 0 || r->status != 401 || !run->p->stages[t->stage].file_headers)
        return 0;
    if (!atomic_load(&d->answered)) { /* a set-up error, unless the files say otherwise now */
        if (t->reauth)
            return 0;
        t->reauth = 1;
        return pipeline_refresh_headers(run->p, t->stage, t->header_gen);
    }
    int64_t ms = (int64_t)(now * 1000) | 1, since = 0;
    if (atomic_compare_exchange_strong(&d->unauth_since_ms, &since, ms))
        since = ms; /* the stage's first 401 since it last answered well */
    if (ms - since >= ENDPOINT_CRED_WAIT_MS)
        return 0; /* waited long enough: the 401 stands */
    if (!pipeline_refresh_headers(run->p, t->stage, t->header_gen))
        t->cred_wait = 1; /* the files lag the server's rotation: wait for them */
    return 1;
}

struct endpoint_news endpoint_done(const struct run *run, struct ticket *t, const struct attempt_report *r,
                                   double now)
{
    struct endpoint_news news = {0};
    int alone = wire_off(run, t);
    release(run, t, now, capacity_signal(r));
    replica_note(run, t, r, now);
    if ((news.reauth = renew_credentials(run, t, r, now)))
        return news;
    outage_note(run, t->stage, t->id, r, alone, now);
    if (r->kind == ANSWER_SETUP && replica_elsewhere(run, t, r, now))
        news.elsewhere = 1; /* that replica's fault, not the stage's: no set-up error */
    else
        news.no_row = setup_note(run, t, r, alone);
    news.down = (r->kind == ANSWER_BUSY || r->kind == ANSWER_DOWN) && outage_waiting(run, t->stage, now);
    return news;
}

void endpoint_cancel(const struct run *run, struct ticket *t)
{
    wire_off(run, t);
    if (t->slot)
        limit_release(run->shared, run->holder, t->stage, t->t_sent, t->t_sent, LIMIT_IGNORE);
    t->slot = 0;
    t->tokens = 0;
    replica_forget(run, t);
}

int endpoint_adaptive(const struct run *run, int s)
{
    return run->shared->lim[s].mode == LIMIT_AUTO;
}

int endpoint_limit(const struct run *run, int s)
{
    return limit_on(run->shared, s) ? atomic_load_explicit(&run->shared->lim[s].limit, memory_order_relaxed) : -1;
}

double endpoint_down_for(const struct run *run, int s, double now)
{
    int64_t since = atomic_load(&run->shared->stage[s].down_since_ms);
    return since ? now - (double)since / 1000 : 0;
}
