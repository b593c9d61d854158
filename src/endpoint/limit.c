/* limit: see limit.h. */
#include "endpoint/limit.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "endpoint/shared.h"

/* ---- the adaptive limit ---- */

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void window_reset(struct limit_algo *a, double now)
{
    a->w_start = now;
    a->w_n = a->w_answers = 0;
    a->w_sum = a->w_sq = 0;
    a->w_max_inflight = 0;
}

void limit_algo_init(struct limit_algo *a, int initial, int lo, int hi, double now)
{
    memset(a, 0, sizeof *a);
    a->lo = lo < 1 ? 1 : lo;
    a->hi = hi < a->lo ? a->lo : hi;
    a->limit = clampd(initial, a->lo, a->hi);
    a->slow_start = 1;
    a->step = 1;
    a->last_decrease = -1e300;
    a->next_probe = now + LIMIT_PROBE_FIRST_S;
    window_reset(a, now);
}

int limit_algo_get(const struct limit_algo *a)
{
    return (int)a->limit;
}

int limit_algo_held(const struct limit_algo *a)
{
    return a->probing ? (int)a->saved_limit : (int)a->limit;
}

/* A drop (429, 503, a timeout): the limit times LIMIT_BACKOFF, once per round trip: a drop of a
 * request sent before the last decrease was caused by the limit already cut. A probe ends. */
static void on_drop(struct limit_algo *a, double now, double t_sent)
{
    a->drops++;
    if (t_sent < a->last_decrease)
        return;
    if (a->probing) {
        a->probing = 0;
        a->limit = a->saved_limit;
        a->next_probe = now + LIMIT_PROBE_S;
    }
    a->checking = 0; /* a drop says the server is over its capacity: the decrease stands */
    a->limit = clampd(a->limit * LIMIT_BACKOFF, a->lo, a->hi);
    a->slow_start = 0;
    a->step = 1;
    a->last_decrease = now;
    window_reset(a, now);
}

/* Adds a latency sample to the window. Returns the window's mean RTT once it is long enough to be
 * trusted, else 0: at least the limit's worth of answers (LIMIT_MIN_SAMPLES at least), and enough
 * that its mean is within about LIMIT_MEAN_ERROR of the true one (its standard error is
 * cv / sqrt(n)): a server whose times vary needs longer windows, or the noise reads as queues. */
static double add_sample(struct limit_algo *a, double now, double t_sent, int inflight)
{
    double rtt = now - t_sent;
    if (rtt < 1e-6)
        rtt = 1e-6;
    a->w_n++;
    a->w_sum += rtt;
    a->w_sq += rtt * rtt;
    if (inflight > a->w_max_inflight)
        a->w_max_inflight = inflight;
    int need = (int)a->limit > LIMIT_MIN_SAMPLES ? (int)a->limit : LIMIT_MIN_SAMPLES;
    if (a->w_n < need)
        return 0;
    double mean = a->w_sum / a->w_n;
    double var = a->w_sq / a->w_n - mean * mean, cv = var > 0 ? sqrt(var) / mean : 0;
    double n_cv = cv * cv / (LIMIT_MEAN_ERROR * LIMIT_MEAN_ERROR);
    return a->w_n < (n_cv < LIMIT_MAX_SAMPLES ? n_cv : LIMIT_MAX_SAMPLES) ? 0 : mean;
}

/* The probe's window: the no-load RTT afresh, and the limit back where it was. The next probe is
 * far enough away that probing costs little (a probe that took long, because the server's times
 * vary, comes less often). */
static void end_probe(struct limit_algo *a, double now, double mean)
{
    double took = now - a->probe_start;
    a->probing = 0;
    a->rtt_noload = mean;
    a->t_noload = now;
    a->drift = 0;
    a->limit = a->saved_limit;
    a->next_probe = now + (20 * took > LIMIT_PROBE_S ? 20 * took : LIMIT_PROBE_S);
    window_reset(a, now);
}

/* The server's answers per second since the window began (those sent before it too); 0: too
 * soon to say. */
static double window_rate(const struct limit_algo *a, double now)
{
    return now > a->w_start ? a->w_answers / (now - a->w_start) : 0;
}

/* Room at the server: the limit grows. Only a stage that used its whole limit learns that a
 * higher one works (as TCP grows only a window it fills, RFC 7661): one that the stages before it
 * starve keeps the limit it has, so a burst later cannot find it inflated. */
static void grow(struct limit_algo *a)
{
    if (a->checking == 1)
        a->checking = 0; /* the decreases so far found room: nothing to check */
    if (a->w_max_inflight < (int)a->limit)
        return;
    if (a->slow_start) {
        a->limit *= 2;
    } else {
        a->limit += a->step;
        double cap = a->limit / 8 > 1 ? a->limit / 8 : 1;
        a->step = a->step * 2 > cap ? cap : a->step * 2;
    }
}

/* Requests queue at the server: the limit moves towards the one that leaves alpha of them
 * queued. The first decrease of a run of them is remembered (checking 1); once they bind (the
 * limit is at most LIMIT_CHECK_SHARE of what was in flight then), the first window sent once in
 * flight has come down to the lower limit checks them (checking 2, then 3; end_check). While in
 * flight comes down, answers sent before say nothing and are not measured. */
static void shrink(struct limit_algo *a, double now, double mean, double ratio, double alpha)
{
    if (!a->checking) {
        a->checking = 1;
        a->check_t = now;
        a->check_mean = mean;
        a->check_rate = window_rate(a, now);
        a->check_limit = a->limit;
        a->check_step = a->step;
        a->check_used = a->w_max_inflight < a->limit ? a->w_max_inflight : a->limit;
    }
    a->slow_start = 0;
    a->step = 1;
    double target = a->limit * (ratio < 0.5 ? 0.5 : ratio) + alpha;
    a->limit = clampd(0.5 * a->limit + 0.5 * target, a->lo, a->hi);
    if (a->checking == 1 && (int)a->limit <= LIMIT_CHECK_SHARE * a->check_used) {
        a->checking = 2;
        a->check_start = 1e300; /* set once in flight has come down to the limit */
    }
}

/* The no-load RTT now: the lowest window mean since the last probe, plus its drift. */
static double noload_now(const struct limit_algo *a, double now)
{
    return a->rtt_noload + a->drift * (now - a->t_noload);
}

/* 1 when a window of this mean RTT shows more requests queued at the server than the small
 * queue aimed at (limit.h), else 0. */
static int window_queued(const struct limit_algo *a, double mean, double noload)
{
    double queue = a->limit * (1 - noload / mean);
    /* Within the tolerance no queue is counted (limit.h); not once the RTT is known to rise by
     * itself, since the no-load RTT is then an estimate that a tolerance would let climb. */
    int tolerated = !a->undone && mean < LIMIT_TOLERANCE * noload;
    return !(queue < 1 + a->limit / 20 || mean - noload < LIMIT_QUEUE_MIN_S || tolerated);
}

/* A window's mean against the no-load RTT: the requests queued at the server, and the limit
 * moved towards a small queue (see limit.h). */
static void follow_latency(struct limit_algo *a, double now, double mean)
{
    double noload = noload_now(a, now);
    if (!(a->rtt_noload > 0) || mean < noload) {
        a->rtt_noload = noload = mean;
        a->t_noload = now;
    }
    if (window_queued(a, mean, noload))
        shrink(a, now, mean, noload / mean, 1 + a->limit / 20);
    else
        grow(a);
    a->limit = clampd(a->limit, a->lo, a->hi);
}

/* The window after decreases that bound, against the one that began them. By Little's law a
 * window's answers per second (X) times its mean RTT is what it had in flight on average (N).
 * A queue's X stays when N comes down (the server was serving all it could); a server with room
 * serves fewer with fewer in flight: X falls with N. When X fell by more than half of N's fall,
 * the RTT rose with time (a server that slows down, a busier host), not with load: the decreases
 * are undone and this window's mean is the no-load RTT from now on. When N did not come down
 * (the stage did not use the limits), nothing is learnt. Returns 1 when they were undone. */
static int end_check(struct limit_algo *a, double now, double mean)
{
    a->checking = 0;
    double x1 = a->check_rate, x2 = window_rate(a, now);
    if (!(x1 > 0) || !(x2 > 0))
        return 0;
    double rel_n = x2 * mean / (x1 * a->check_mean), rel_x = x2 / x1;
    if (rel_n > LIMIT_CHECK_SHARE)
        return 0;
    if (rel_x >= 0.5 * (1 + rel_n)) {
        a->drift = 0; /* a queue: the RTT does not rise by itself */
        return 0;
    }
    double drift = now > a->check_t ? (mean - a->check_mean) / (now - a->check_t) : 0;
    a->drift = drift > 0 ? drift : 0;
    a->rtt_noload = mean;
    a->t_noload = now;
    a->limit = a->check_limit;
    a->step = a->check_step;
    a->undone++;
    return 1;
}

/* Every LIMIT_PROBE_S, the limit is halved for one window to measure the no-load RTT afresh. */
static void maybe_probe(struct limit_algo *a, double now)
{
    if (now < a->next_probe)
        return;
    if (a->limit < 2) {
        a->next_probe = now + LIMIT_PROBE_S;
        return;
    }
    a->probing = 1; /* 2 once in flight has come down to the probe's limit */
    a->checking = 0;
    a->probe_start = now;
    a->saved_limit = a->limit;
    a->limit = clampd(floor(a->limit / 2), a->lo, a->hi);
}

/* A timeout is a drop when the stage's last window showed a queue, or none was measured yet
 * (limit.h). */
static int timeout_is_drop(const struct limit_algo *a, double now)
{
    return !(a->rtt_noload > 0) || !(a->rtt_last > 0) || window_queued(a, a->rtt_last, noload_now(a, now));
}

int limit_algo_sample(struct limit_algo *a, double now, double t_sent, int inflight, enum limit_signal sig)
{
    if (sig == LIMIT_TIMEOUT)
        sig = timeout_is_drop(a, now) ? LIMIT_DROP : LIMIT_IGNORE;
    if (sig == LIMIT_IGNORE)
        return limit_algo_get(a);
    if (a->probing == 1 && inflight <= (int)a->limit) {
        /* In flight has come down to the probe's limit: what is sent from now on is measured. */
        a->probing = 2;
        a->probe_start = now;
        window_reset(a, now);
    }
    if (a->probing && t_sent < a->probe_start)
        return limit_algo_get(a); /* sent before the probe: it says nothing about the halved limit */
    if (sig == LIMIT_DROP) {
        on_drop(a, now, t_sent);
        return limit_algo_get(a);
    }
    a->w_answers++;
    if (a->checking == 2 && inflight <= (int)a->limit) {
        /* In flight has come down to the lower limit: what is sent from now on is measured. */
        a->checking = 3;
        a->check_start = now;
        window_reset(a, now);
    }
    if (a->checking >= 2 && t_sent < a->check_start)
        return limit_algo_get(a); /* sent before: it says nothing about the lower limit */
    double mean = add_sample(a, now, t_sent, inflight);
    if (mean <= 0)
        return limit_algo_get(a);
    a->rtt_last = mean;
    if (a->probing) {
        end_probe(a, now, mean);
        return limit_algo_get(a);
    }
    if (a->checking == 3 && end_check(a, now, mean)) {
        window_reset(a, now);
        return limit_algo_get(a);
    }
    follow_latency(a, now, mean);
    maybe_probe(a, now);
    window_reset(a, now);
    return limit_algo_get(a);
}

/* ---- the total of --concurrency auto (limit.h) ---- */

static void total_window(struct limit_total *t, double now)
{
    t->w_start = now;
    t->w_first = t->w_last = 0;
    t->w_answers = t->w_full = t->w_tops = 0;
}

void limit_total_init(struct limit_total *t, int initial, int lo, int hi, double now)
{
    memset(t, 0, sizeof *t);
    t->lo = lo < 1 ? 1 : lo;
    t->hi = hi < t->lo ? t->lo : hi;
    t->total = initial < t->lo ? t->lo : initial > t->hi ? t->hi : initial;
    t->ramp = 1;
    t->hold_up = t->hold_down = LIMIT_TOTAL_HOLD_S;
    total_window(t, now);
}

void limit_total_filled(struct limit_total *t, int full)
{
    t->w_tops++;
    t->w_full += full != 0;
}

static double hold_next(double *hold)
{
    double h = *hold;
    *hold = h * 2 < LIMIT_TOTAL_HOLD_MAX_S ? h * 2 : LIMIT_TOTAL_HOLD_MAX_S;
    return h;
}

/* A try up: kept when the rate rose by LIMIT_TOTAL_GAIN of the total's rise. Not kept, the
 * total goes back and the next try up waits; one that gained nothing at all says the loop is
 * saturated, and a try down follows (unless one failed lately). Returns 1 when decided: a try
 * that did not fill its total yet (the stages' limits grow into it) gets more windows. */
static int judge_up(struct limit_total *t, double now, double rate, int full)
{
    double rise = (double)t->total / t->from - 1;
    if (rate >= t->rate * (1 + LIMIT_TOTAL_GAIN * rise)) {
        t->rate = rate;
        t->ups++;
        t->hold_up = LIMIT_TOTAL_HOLD_S;
        return 1;
    }
    if (!full && rate > t->rate * (1 + LIMIT_TOTAL_FLAT) && ++t->extended < LIMIT_TOTAL_TRY_WINDOWS)
        return 0;
    t->ramp = 0;
    t->total = t->from;
    t->next_up = now + hold_next(&t->hold_up);
    t->down_due = rate < t->rate * (1 + LIMIT_TOTAL_FLAT) && now >= t->next_down;
    t->rate = 0; /* measured afresh */
    return 1;
}

/* A try down: kept when the rate stayed within LIMIT_TOTAL_KEEP (fewer in flight did as well),
 * then tried again; else the total goes back, and the next try down waits. */
static void judge_down(struct limit_total *t, double now, double rate, int full)
{
    if (full && rate >= t->rate * LIMIT_TOTAL_KEEP) {
        t->rate = rate;
        t->downs++;
        t->hold_down = LIMIT_TOTAL_HOLD_S;
        return;
    }
    t->total = t->from;
    t->down_due = 0;
    t->next_down = now + hold_next(&t->hold_down);
    t->rate = 0;
}

/* The next window: a try when the total's rate is known, else a measure of it. */
static void total_next(struct limit_total *t, double now)
{
    t->phase = TOTAL_MEASURE;
    t->extended = 0;
    if (t->rate > 0 && t->down_due && t->total > t->lo) {
        t->phase = TOTAL_TRY_DOWN;
        t->from = t->total;
        t->total = (int)(t->total * LIMIT_TOTAL_DOWN);
    } else if (t->rate > 0 && now >= t->next_up && t->total < t->hi) {
        t->phase = TOTAL_TRY_UP;
        t->from = t->total;
        t->total = (int)(t->total * (t->ramp ? LIMIT_TOTAL_RAMP : LIMIT_TOTAL_UP) + 0.5);
    }
    t->total = t->total < t->lo ? t->lo : t->total > t->hi ? t->hi : t->total;
    total_window(t, now);
}

int limit_total_sample(struct limit_total *t, double now, double t_sent)
{
    if (t_sent < t->w_start)
        return t->total; /* sent under the total before: says nothing of this one */
    if (!t->w_answers)
        t->w_first = now;
    t->w_last = now;
    t->w_answers++;
    if (t->w_answers < LIMIT_TOTAL_MIN_ANSWERS || now - t->w_start < LIMIT_TOTAL_WINDOW_S || t->w_last <= t->w_first)
        return t->total;
    double rate = (double)(t->w_answers - 1) / (t->w_last - t->w_first);
    int full = t->w_tops > 0 && 2 * t->w_full >= t->w_tops;
    if (t->phase == TOTAL_TRY_UP) {
        if (!judge_up(t, now, rate, full)) {
            total_window(t, now); /* the same try, a window more */
            return t->total;
        }
    } else if (t->phase == TOTAL_TRY_DOWN) {
        judge_down(t, now, rate, full);
    } else if (full) {
        t->rate = rate; /* a window that did not fill the total says nothing of it */
    }
    total_next(t, now);
    return t->total;
}

/* ---- the run's table ---- */

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
    /* Not FUTEX_PRIVATE: the word is in memory shared with worker processes. */
    return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

static void lock(struct limit_stage *l)
{
    if (pthread_mutex_lock(&l->mu) == EOWNERDEAD)
        pthread_mutex_consistent(&l->mu); /* a worker died holding it: the numbers are still numbers */
}

/* Under the lock. */
static void record(struct limit_stage *l, double t, int limit)
{
    struct limit_change c = {(float)t, limit};
    if (l->changes < LIMIT_HIST_HEAD)
        l->head[l->changes] = c;
    else
        l->tail[(l->changes - LIMIT_HIST_HEAD) % LIMIT_HIST_TAIL] = c;
    l->changes++;
}

int limit_setup(struct shared_page *sh, const struct config *cfg, double now, char *err, size_t errlen)
{
    const struct pipeline *p = cfg->pipeline;
    sh->t0 = now;
    int total = cfg->query == STRAT_CURL_MULTI ? cfg->concurrency : cfg->query == STRAT_SERIAL ? 1 : cfg->workers;
    for (int s = 0; s < p->n && s < SHARED_MAX_STAGES; s++) {
        const struct stage *st = &p->stages[s];
        struct limit_stage *l = &sh->lim[s];
        int mode = st->concurrency > 0 ? LIMIT_FIXED
                   : st->concurrency == STAGE_CONCURRENCY_AUTO || (st->concurrency == 0 && cfg->concurrency_auto)
                       ? LIMIT_AUTO
                       : LIMIT_NONE;
        if (mode == LIMIT_AUTO && total <= 1)
            mode = LIMIT_NONE; /* one request at a time (serial, one worker): nothing to adapt */
        memset(l, 0, sizeof *l);
        if (mode == LIMIT_NONE)
            continue;
        pthread_mutexattr_t ma;
        int rc = pthread_mutexattr_init(&ma);
        if (!rc)
            rc = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
        if (!rc)
            rc = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
        if (!rc)
            rc = pthread_mutex_init(&l->mu, &ma);
        pthread_mutexattr_destroy(&ma);
        if (rc) {
            snprintf(err, errlen, "cannot set up stage %s's concurrency limit: %s", st->name, strerror(rc));
            limit_teardown(sh, s);
            return -1;
        }
        l->mode = mode;
        int limit = st->concurrency;
        if (mode == LIMIT_AUTO) {
            limit_algo_init(&l->algo, LIMIT_AUTO_INITIAL, 1, total, now);
            limit = limit_algo_get(&l->algo);
        }
        atomic_store(&l->limit, limit);
        record(l, 0, limit);
    }
    return 0;
}

void limit_teardown(struct shared_page *sh, int n_stages)
{
    for (int s = 0; s < n_stages && s < SHARED_MAX_STAGES; s++)
        if (sh->lim[s].mode != LIMIT_NONE) {
            pthread_mutex_destroy(&sh->lim[s].mu);
            sh->lim[s].mode = LIMIT_NONE;
        }
}

int limit_on(const struct shared_page *sh, int s)
{
    return sh->lim[s].mode != LIMIT_NONE;
}

int limit_try_acquire(struct shared_page *sh, int holder, int s)
{
    struct limit_stage *l = &sh->lim[s];
    if (l->mode == LIMIT_NONE)
        return 1;
    /* A worker process says which slot it holds before it has it: if it dies in between, its
     * parent gives back one slot too many (one more request may then go), never one too few
     * (which, under a limit of 1, would stop the stage for good). */
    _Atomic int *held = holder ? &sh->holders[holder - 1].stage : NULL;
    if (held)
        atomic_store(held, s + 1);
    int cur = atomic_load(&l->in_flight);
    while (cur < atomic_load(&l->limit)) {
        if (atomic_compare_exchange_weak(&l->in_flight, &cur, cur + 1)) {
            int peak = atomic_load(&l->peak);
            while (cur + 1 > peak && !atomic_compare_exchange_weak(&l->peak, &peak, cur + 1))
                ;
            return 1;
        }
    }
    if (held)
        atomic_store(held, 0);
    return 0;
}

int limit_wait(struct shared_page *sh, int holder, int s, double max_s)
{
    struct limit_stage *l = &sh->lim[s];
    if (l->mode == LIMIT_NONE)
        return 1;
    atomic_fetch_add(&l->waiters, 1);
    uint32_t gen = atomic_load(&l->gen);
    int got = limit_try_acquire(sh, holder, s);
    if (!got) {
        /* A release after our load of gen changes it, and the futex then returns at once. */
        struct timespec ts = {(time_t)max_s, (long)((max_s - (double)(time_t)max_s) * 1e9)};
        futex(&l->gen, FUTEX_WAIT, gen, &ts);
        got = limit_try_acquire(sh, holder, s);
    }
    atomic_fetch_sub(&l->waiters, 1);
    return got;
}

static void wake(struct limit_stage *l, int all)
{
    atomic_fetch_add(&l->gen, 1);
    if (atomic_load(&l->waiters) > 0)
        futex(&l->gen, FUTEX_WAKE, all ? INT_MAX : 1, NULL);
}

int limit_release(struct shared_page *sh, int holder, int s, double t_sent, double now, enum limit_signal sig)
{
    struct limit_stage *l = &sh->lim[s];
    if (l->mode == LIMIT_NONE)
        return 0;
    int changed = 0;
    if (l->mode == LIMIT_AUTO) {
        int inflight = atomic_load(&l->in_flight);
        lock(l);
        int before = atomic_load(&l->limit), held = limit_algo_held(&l->algo);
        int after = limit_algo_sample(&l->algo, now, t_sent, inflight, sig);
        if (after != before) {
            atomic_store(&l->limit, after);
            changed = 1;
        }
        if (limit_algo_held(&l->algo) != held)
            record(l, now - sh->t0, limit_algo_held(&l->algo));
        pthread_mutex_unlock(&l->mu);
    }
    /* Given back before the holder entry is cleared: see limit_try_acquire. */
    atomic_fetch_sub(&l->in_flight, 1);
    if (holder)
        atomic_store(&sh->holders[holder - 1].stage, 0);
    wake(l, changed);
    return changed;
}

int limit_holder_register(struct shared_page *sh, int pid)
{
    for (int h = 0; h < LIMIT_MAX_HOLDERS; h++) {
        int free_ = 0;
        if (atomic_compare_exchange_strong(&sh->holders[h].pid, &free_, pid)) {
            atomic_store(&sh->holders[h].stage, 0);
            return h + 1;
        }
    }
    return 0;
}

void limit_holder_reap(struct shared_page *sh, int pid)
{
    for (int h = 0; h < LIMIT_MAX_HOLDERS; h++) {
        if (atomic_load(&sh->holders[h].pid) != pid)
            continue;
        int s = atomic_exchange(&sh->holders[h].stage, 0) - 1;
        if (s >= 0 && s < SHARED_MAX_STAGES && sh->lim[s].mode != LIMIT_NONE) {
            atomic_fetch_sub(&sh->lim[s].in_flight, 1);
            wake(&sh->lim[s], 0);
        }
        atomic_store(&sh->holders[h].pid, 0);
    }
}

void limit_read(struct shared_page *sh, int s, struct limit_view *v)
{
    memset(v, 0, sizeof *v);
    struct limit_stage *l = &sh->lim[s];
    v->mode = l->mode;
    if (l->mode == LIMIT_NONE)
        return;
    lock(l);
    v->limit = l->mode == LIMIT_AUTO ? limit_algo_held(&l->algo) : atomic_load(&l->limit);
    v->peak = atomic_load(&l->peak);
    if (l->mode == LIMIT_AUTO) {
        v->lo = (int)l->algo.lo;
        v->hi = (int)l->algo.hi;
        v->rtt_noload_ms = l->algo.rtt_noload * 1e3;
        v->drops = l->algo.drops;
        v->undone = l->algo.undone;
    } else {
        v->lo = v->hi = v->limit;
    }
    v->changes = l->changes;
    uint64_t nh = l->changes < LIMIT_HIST_HEAD ? l->changes : LIMIT_HIST_HEAD;
    for (uint64_t i = 0; i < nh; i++)
        v->hist[v->n_hist++] = l->head[i];
    if (l->changes > LIMIT_HIST_HEAD) {
        uint64_t m = l->changes - LIMIT_HIST_HEAD;
        uint64_t count = m < LIMIT_HIST_TAIL ? m : LIMIT_HIST_TAIL;
        uint64_t start = m > LIMIT_HIST_TAIL ? m % LIMIT_HIST_TAIL : 0;
        for (uint64_t k = 0; k < count; k++)
            v->hist[v->n_hist++] = l->tail[(start + k) % LIMIT_HIST_TAIL];
    }
    pthread_mutex_unlock(&l->mu);
}
