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

enum admit endpoint_admit(const struct run *run, struct ticket *t, double now, double *until, int behind)
{
    enum admit a = take_tokens(run, t, now, until);
    if (a != ADMIT_GO)
        return a;
    if (!t->slot && limit_on(run->shared, t->stage)) {
        if (behind || !limit_try_acquire(run->shared, run->holder, t->stage))
            return ADMIT_PARK;
        t->slot = 1;
    }
    replica_pick(run, t, now);
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
        return LIMIT_DROP;
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

/* A 401 from a stage whose headers come from files: read them again once for this request.
 * 1 when they changed, so that retrying at once is worth it. */
static int renew_credentials(const struct run *run, struct ticket *t, const struct attempt_report *r)
{
    if (r->cc != 0 || r->status != 401 || t->reauth || !run->p->stages[t->stage].file_headers)
        return 0;
    t->reauth = 1;
    return pipeline_refresh_headers(run->p, t->stage, t->header_gen);
}

struct endpoint_news endpoint_done(const struct run *run, struct ticket *t, const struct attempt_report *r,
                                   double now)
{
    struct endpoint_news news = {0};
    release(run, t, now, capacity_signal(r));
    replica_note(run, t, r, now);
    if ((news.reauth = renew_credentials(run, t, r)))
        return news;
    outage_note(run, t->stage, t->id, r, now);
    news.no_row = setup_note(run, t->stage, r);
    news.down = (r->kind == ANSWER_BUSY || r->kind == ANSWER_DOWN) && outage_waiting(run, t->stage, now);
    return news;
}

void endpoint_cancel(const struct run *run, struct ticket *t)
{
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
