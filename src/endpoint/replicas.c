/* replicas: see replicas.h. */
#include "endpoint/replicas.h"

#include "common/rng.h"
#include "endpoint/shared.h"
#include "pipeline/pipeline.h"

static struct shared_replica *replicas_of(const struct run *run, int s, int *n)
{
    const struct stage *st = &run->p->stages[s];
    *n = st->n_urls;
    return st->n_urls < 2 ? NULL : &run->shared->replica[st->replica_base];
}

void replica_pick(const struct run *run, struct ticket *t, double now)
{
    int n;
    struct shared_replica *r = replicas_of(run, t->stage, &n);
    if (!r)
        return;
    int64_t ms = (int64_t)(now * 1000);
    int best = -1, best_out = 0, soonest = 0;
    int start = (int)(rng_next(&t->rng) % (uint64_t)n); /* ties: a random one */
    for (int pass = 0; pass < 2 && best < 0; pass++)
        for (int j = 0; j < n; j++) {
            int k = (start + j) % n;
            if (atomic_load(&r[k].ejected_until_ms) > ms)
                continue;
            if (pass == 0 && k == t->failed_replica)
                continue; /* a retry goes elsewhere when it can */
            int out = atomic_load(&r[k].outstanding);
            if (best < 0 || out < best_out) {
                best = k;
                best_out = out;
            }
        }
    if (best < 0) /* every one ejected: the one back first */
        for (int k = 1; k < n; k++)
            if (atomic_load(&r[k].ejected_until_ms) < atomic_load(&r[soonest].ejected_until_ms))
                soonest = k;
    t->replica = best >= 0 ? best : soonest;
    t->on_replica = 1;
    atomic_fetch_add(&r[t->replica].outstanding, 1);
}

void replica_forget(const struct run *run, struct ticket *t)
{
    int n;
    struct shared_replica *r = replicas_of(run, t->stage, &n);
    if (r && t->on_replica)
        atomic_fetch_sub(&r[t->replica].outstanding, 1);
    t->on_replica = 0;
}

/* Ejects replica k of all (n of them) after its failures in a row, unless it is the last one
 * in rotation or is out already. */
static void eject(struct shared_replica *all, int n, int k, double now)
{
    struct shared_replica *r = &all[k];
    int64_t ms = (int64_t)(now * 1000);
    int in_rotation = 0;
    for (int j = 0; j < n; j++)
        in_rotation += atomic_load(&all[j].ejected_until_ms) <= ms;
    if (in_rotation <= 1 || atomic_load(&r->ejected_until_ms) > ms)
        return; /* the last one in rotation stays; an ejected one is not ejected twice */
    int e = atomic_fetch_add(&r->ejections, 1) + 1;
    long secs = (long)REPLICA_EJECT_BASE_S * e;
    atomic_store(&r->ejected_until_ms, ms + 1000 * (secs > REPLICA_EJECT_MAX_S ? REPLICA_EJECT_MAX_S : secs));
    atomic_fetch_add(&r->ejected_total, 1);
    atomic_store(&r->fails_in_row, REPLICA_EJECT_AFTER - 1); /* back in: one more failure ejects it again */
}

/* An answer that says its replica is wrong, not the image (replicas.h). */
static int replica_fault(const struct attempt_report *r)
{
    if (r->kind == ANSWER_BUSY || r->kind == ANSWER_DOWN)
        return 1;
    if (r->kind == ANSWER_RETRY)
        return r->cc == 0 && r->status >= 200 && r->status <= 299; /* garbled */
    return r->kind == ANSWER_SETUP && (r->cc != 0 || r->status == 404 || r->status == 405);
}

void replica_note(const struct run *run, struct ticket *t, const struct attempt_report *rep, double now)
{
    int n;
    struct shared_replica *all = replicas_of(run, t->stage, &n);
    if (!all)
        return;
    struct shared_replica *r = &all[t->replica];
    replica_forget(run, t);
    atomic_fetch_add(&r->attempts, 1);
    hist_add(&r->latency_us, (uint64_t)((now - t->t_sent) * 1e6));
    int fault = replica_fault(rep);
    t->failed_replica = fault ? t->replica : -1;
    if (rep->kind == ANSWER_OK) {
        atomic_store(&r->fails_in_row, 0);
        atomic_store(&r->ejections, 0);
        atomic_store(&r->setup_bad, 0);
        return;
    }
    atomic_fetch_add(&r->errors, 1);
    if (fault && rep->kind == ANSWER_SETUP)
        atomic_store(&r->setup_bad, 1);
    if (fault && atomic_fetch_add(&r->fails_in_row, 1) + 1 >= REPLICA_EJECT_AFTER)
        eject(all, n, t->replica, now);
}

int replica_elsewhere(const struct run *run, const struct ticket *t, const struct attempt_report *rep, double now)
{
    int n;
    struct shared_replica *all = replicas_of(run, t->stage, &n);
    if (!all || !replica_fault(rep))
        return 0;
    int64_t ms = (int64_t)(now * 1000);
    for (int k = 0; k < n; k++)
        if (k != t->replica && !atomic_load(&all[k].setup_bad) && atomic_load(&all[k].ejected_until_ms) <= ms)
            return 1;
    return 0;
}
