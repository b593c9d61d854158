/* Suites "queue" and "queue concurrent": the bounded queue (src/flow/queue.c).
 *
 * "queue" is single-threaded: order, wrap-around, try_pop states, producer counting, the notify
 * eventfd. "queue concurrent" runs threads against it (make tsan picks it by name): capacity 1
 * handoff, 8 producers x 8 consumers moving 200k items each seen exactly once, close while
 * producers are blocked on a full queue and while consumers are blocked on an empty one, and an
 * event-driven consumer that sleeps in poll() on the notify fd.
 *
 * Threads never call CUnit (it is not thread-safe): they record into atomics and the test thread
 * asserts after joining. Items are small integers cast to pointers, never NULL. */
#include "flow/queue.h"
#include "common/prepstat.h"

#include <CUnit/CUnit.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define P(i) ((void *)(uintptr_t)(i))
#define U(p) ((uintptr_t)(p))

/* 1 when fd is readable right now. */
static int readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

/* Reads (and so resets) the eventfd counter; 0 when it was not set. */
static uint64_t drain_fd(int fd)
{
    uint64_t v = 0;
    if (read(fd, &v, sizeof v) != (ssize_t)sizeof v)
        return 0;
    return v;
}

/* ---- single-threaded ---- */

static void test_fifo_order(void)
{
    queue *q = queue_new(8, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    for (uintptr_t i = 1; i <= 8; i++)
        CU_ASSERT_EQUAL(queue_push(q, P(i)), 0);
    CU_ASSERT_EQUAL(queue_len(q), 8);
    for (uintptr_t i = 1; i <= 8; i++)
        CU_ASSERT_EQUAL(U(queue_pop(q)), i);
    CU_ASSERT_EQUAL(queue_len(q), 0);
    /* Wrap the ring many times with a varying fill level. */
    uintptr_t next_in = 1, next_out = 1;
    int bad = 0;
    for (int round = 0; round < 1000; round++) {
        int k = 1 + round % 4; /* at most 4 queued before: never blocks */
        for (int j = 0; j < k; j++)
            bad |= queue_push(q, P(next_in++)) != 0;
        int m = 1 + (round * 7) % k;
        for (int j = 0; j < m; j++)
            bad |= U(queue_pop(q)) != next_out++;
        while (queue_len(q) > 4)
            bad |= U(queue_pop(q)) != next_out++;
    }
    while (queue_len(q))
        bad |= U(queue_pop(q)) != next_out++;
    CU_ASSERT_FALSE(bad);
    CU_ASSERT_EQUAL(next_in, next_out);
    queue_free(q);
    queue_free(NULL);
}

static void test_try_pop_states(void)
{
    queue *q = queue_new(2, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    void *out = P(99);
    CU_ASSERT_EQUAL(queue_try_pop(q, &out), 0); /* empty, open */
    CU_ASSERT_EQUAL(U(out), 99);                /* untouched */
    CU_ASSERT_EQUAL(queue_push(q, P(1)), 0);
    CU_ASSERT_EQUAL(queue_push(q, P(2)), 0);
    CU_ASSERT_EQUAL(queue_try_pop(q, &out), 1);
    CU_ASSERT_EQUAL(U(out), 1);
    queue_close(q);
    CU_ASSERT_EQUAL(queue_push(q, P(3)), -1); /* closed: not taken */
    CU_ASSERT_EQUAL(queue_len(q), 1);
    CU_ASSERT_EQUAL(queue_try_pop(q, &out), 1); /* closed but not drained */
    CU_ASSERT_EQUAL(U(out), 2);
    out = P(99);
    CU_ASSERT_EQUAL(queue_try_pop(q, &out), -1); /* closed and drained */
    CU_ASSERT_EQUAL(U(out), 99);
    CU_ASSERT_PTR_NULL(queue_pop(q)); /* does not block */
    CU_ASSERT_EQUAL(queue_try_pop(q, &out), -1);
    queue_free(q);
}

static void test_producer_counting(void)
{
    queue *q = queue_new(4, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    void *out;
    CU_ASSERT_EQUAL(queue_push(q, P(1)), 0);
    queue_producer_done(q);
    CU_ASSERT_EQUAL(queue_push(q, P(2)), 0); /* 2 producers left: still open */
    queue_producer_done(q);
    CU_ASSERT_EQUAL(queue_push(q, P(3)), 0); /* 1 left */
    CU_ASSERT_EQUAL(U(queue_pop(q)), 1);
    CU_ASSERT_EQUAL(U(queue_pop(q)), 2);
    CU_ASSERT_EQUAL(U(queue_pop(q)), 3);
    CU_ASSERT_EQUAL(queue_try_pop(q, &out), 0); /* empty but open */
    queue_producer_done(q);                     /* the third: closes */
    CU_ASSERT_EQUAL(queue_try_pop(q, &out), -1);
    CU_ASSERT_EQUAL(queue_push(q, P(4)), -1);
    CU_ASSERT_PTR_NULL(queue_pop(q));
    queue_producer_done(q); /* one too many: harmless */
    CU_ASSERT_EQUAL(queue_try_pop(q, &out), -1);
    queue_free(q);

    /* producers <= 0 means one. */
    q = queue_new(1, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT_EQUAL(queue_push(q, P(7)), 0);
    queue_producer_done(q);
    CU_ASSERT_EQUAL(U(queue_pop(q)), 7); /* drains after close */
    CU_ASSERT_PTR_NULL(queue_pop(q));
    queue_free(q);
}

static void test_close_drains(void)
{
    queue *q = queue_new(3, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT_EQUAL(queue_push(q, P(1)), 0);
    CU_ASSERT_EQUAL(queue_push(q, P(2)), 0);
    queue_close(q);
    queue_close(q); /* twice: harmless */
    CU_ASSERT_EQUAL(queue_push(q, P(3)), -1);
    CU_ASSERT_EQUAL(U(queue_pop(q)), 1);
    CU_ASSERT_EQUAL(U(queue_pop(q)), 2);
    CU_ASSERT_PTR_NULL(queue_pop(q));
    CU_ASSERT_PTR_NULL(queue_pop(q));
    queue_free(q);
}

static void test_notify_fd(void)
{
    queue *q = queue_new(4, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    int fd = queue_notify_fd(q);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(queue_notify_fd(q), fd); /* created once */
    CU_ASSERT_FALSE(readable(fd));           /* nothing yet */

    CU_ASSERT_EQUAL(queue_push(q, P(1)), 0);
    CU_ASSERT_TRUE(readable(fd)); /* push wakes */
    CU_ASSERT(drain_fd(fd) >= 1);
    CU_ASSERT_FALSE(readable(fd));
    CU_ASSERT_EQUAL(queue_push(q, P(2)), 0);
    CU_ASSERT_EQUAL(queue_push(q, P(3)), 0);
    CU_ASSERT_EQUAL(drain_fd(fd), 2); /* one per push */
    CU_ASSERT_EQUAL(U(queue_pop(q)), 1);
    CU_ASSERT_FALSE(readable(fd)); /* a pop does not signal */
    queue_close(q);
    CU_ASSERT_TRUE(readable(fd)); /* close wakes */
    drain_fd(fd);
    queue_free(q);

    /* Asked for after items were queued: readable at once, so a late consumer cannot miss them. */
    q = queue_new(4, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT_EQUAL(queue_push(q, P(1)), 0);
    fd = queue_notify_fd(q);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_TRUE(readable(fd));
    queue_free(q);

    /* Asked for after close: readable at once. */
    q = queue_new(4, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    queue_producer_done(q);
    queue_producer_done(q);
    fd = queue_notify_fd(q);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_TRUE(readable(fd));
    queue_free(q);

    /* Closing by producer count signals too. */
    q = queue_new(4, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    fd = queue_notify_fd(q);
    queue_producer_done(q);
    CU_ASSERT_FALSE(readable(fd));
    queue_producer_done(q);
    CU_ASSERT_TRUE(readable(fd));
    queue_free(q);
}

static void test_cap_zero_is_one(void)
{
    queue *q = queue_new(0, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT_EQUAL(queue_push(q, P(5)), 0);
    CU_ASSERT_EQUAL(queue_len(q), 1);
    CU_ASSERT_EQUAL(U(queue_pop(q)), 5);
    queue_free(q);
}

/* ---- concurrent ---- */

enum { HANDOFF_N = 20000 };

struct handoff {
    queue *q;
    _Atomic int order_bad;
    _Atomic size_t max_len;
    _Atomic uintptr_t last;
};

static void *handoff_producer(void *arg)
{
    struct handoff *h = arg;
    for (uintptr_t i = 1; i <= HANDOFF_N; i++) {
        if (queue_push(h->q, P(i)))
            atomic_store(&h->order_bad, 1);
        size_t n = queue_len(h->q);
        if (n > atomic_load(&h->max_len))
            atomic_store(&h->max_len, n);
    }
    queue_producer_done(h->q);
    return NULL;
}

static void *handoff_consumer(void *arg)
{
    struct handoff *h = arg;
    uintptr_t want = 1;
    void *p;
    while ((p = queue_pop(h->q))) {
        if (U(p) != want)
            atomic_store(&h->order_bad, 1);
        want++;
    }
    atomic_store(&h->last, want - 1);
    return NULL;
}

static void test_capacity_one_handoff(void)
{
    struct handoff h = {.q = queue_new(1, 1)};
    CU_ASSERT_PTR_NOT_NULL_FATAL(h.q);
    pthread_t a, b;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&b, NULL, handoff_consumer, &h), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&a, NULL, handoff_producer, &h), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CU_ASSERT_FALSE(atomic_load(&h.order_bad));
    CU_ASSERT(atomic_load(&h.max_len) <= 1);
    CU_ASSERT_EQUAL(atomic_load(&h.last), HANDOFF_N);
    CU_ASSERT_EQUAL(queue_len(h.q), 0);
    queue_free(h.q);
}

enum { MANY_P = 8, MANY_C = 8, MANY_N = 200000, PER_P = MANY_N / MANY_P };

struct many {
    queue *q;
    int id;
    _Atomic unsigned char *seen; /* [MANY_N + 1] */
    _Atomic int push_failed;
    uint64_t sum, count; /* per consumer, read after join */
};

static void *many_producer(void *arg)
{
    struct many *m = arg;
    uintptr_t base = (uintptr_t)m->id * PER_P;
    for (uintptr_t k = 1; k <= PER_P; k++)
        if (queue_push(m->q, P(base + k)))
            atomic_store(&m->push_failed, 1);
    queue_producer_done(m->q);
    return NULL;
}

static void *many_consumer(void *arg)
{
    struct many *m = arg;
    void *p;
    while ((p = queue_pop(m->q))) {
        uintptr_t v = U(p);
        if (v >= 1 && v <= MANY_N)
            atomic_fetch_add_explicit(&m->seen[v], 1, memory_order_relaxed);
        m->sum += v;
        m->count++;
    }
    return NULL;
}

static void test_many_to_many(void)
{
    queue *q = queue_new(64, MANY_P);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    _Atomic unsigned char *seen = calloc(MANY_N + 1, sizeof *seen);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seen);
    struct many prod[MANY_P], cons[MANY_C];
    pthread_t tp[MANY_P], tc[MANY_C];
    struct prepstat ps = {0}; /* the starved time counted too: under ThreadSanitizer (make tsan) */
    queue_watch_starved(q, &ps);
    for (int i = 0; i < MANY_C; i++) {
        cons[i] = (struct many){.q = q, .id = i, .seen = seen};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&tc[i], NULL, many_consumer, &cons[i]), 0);
    }
    for (int i = 0; i < MANY_P; i++) {
        prod[i] = (struct many){.q = q, .id = i, .seen = seen};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&tp[i], NULL, many_producer, &prod[i]), 0);
    }
    for (int i = 0; i < MANY_P; i++)
        pthread_join(tp[i], NULL);
    for (int i = 0; i < MANY_C; i++)
        pthread_join(tc[i], NULL);

    uint64_t sum = 0, count = 0;
    for (int i = 0; i < MANY_C; i++) {
        sum += cons[i].sum;
        count += cons[i].count;
    }
    for (int i = 0; i < MANY_P; i++)
        CU_ASSERT_FALSE(atomic_load(&prod[i].push_failed));
    CU_ASSERT_EQUAL(count, MANY_N);
    CU_ASSERT_EQUAL(sum, (uint64_t)MANY_N * (MANY_N + 1) / 2);
    size_t dup = 0, lost = 0;
    for (size_t v = 1; v <= MANY_N; v++) {
        unsigned char s = atomic_load(&seen[v]);
        dup += s > 1;
        lost += s == 0;
    }
    CU_ASSERT_EQUAL(dup, 0);
    CU_ASSERT_EQUAL(lost, 0);
    CU_ASSERT_EQUAL(queue_len(q), 0);
    CU_ASSERT_EQUAL(atomic_load(&ps.starved_since_us), 0); /* closed: no stretch left open */
    free(seen);
    queue_free(q);
}

struct blocked {
    queue *q;
    uintptr_t value;
    _Atomic int started, returned;
    int rc;   /* producer: push's result */
    void *got; /* consumer: pop's result */
};

static void *blocked_producer(void *arg)
{
    struct blocked *b = arg;
    atomic_store(&b->started, 1);
    b->rc = queue_push(b->q, P(b->value));
    atomic_store(&b->returned, 1);
    return NULL;
}

static void *blocked_consumer(void *arg)
{
    struct blocked *b = arg;
    atomic_store(&b->started, 1);
    b->got = queue_pop(b->q);
    atomic_store(&b->returned, 1);
    return NULL;
}

/* Starts n threads running fn on q (producer i pushes 100 + i; a consumer's got is P(1) until its
 * pop returns) and waits until each has started, and a little more so that they reach their wait
 * (one that has not yet still sees the close and fails). Returns how many have returned already,
 * when every one should block. */
static int start_blocked(queue *q, struct blocked *b, pthread_t *t, int n, void *(*fn)(void *))
{
    for (int i = 0; i < n; i++) {
        b[i] = (struct blocked){.q = q, .value = 100 + (uintptr_t)i, .got = P(1)};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, fn, &b[i]), 0);
    }
    for (int i = 0; i < n; i++)
        while (!atomic_load(&b[i].started))
            sleep_ms(1);
    sleep_ms(50);
    int early = 0;
    for (int i = 0; i < n; i++)
        early += atomic_load(&b[i].returned);
    return early;
}

static void test_close_wakes_blocked_producers(void)
{
    enum { CAP = 3, NP = 4 };
    queue *q = queue_new(CAP, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    for (uintptr_t i = 1; i <= CAP; i++)
        CU_ASSERT_EQUAL(queue_push(q, P(i)), 0);
    struct blocked b[NP];
    pthread_t t[NP];
    CU_ASSERT_EQUAL(start_blocked(q, b, t, NP, blocked_producer), 0); /* the queue is full: all blocked */
    queue_close(q);
    for (int i = 0; i < NP; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT_EQUAL(b[i].rc, -1);
    }
    /* What was queued before the close is still there, in order; nothing else was taken. */
    CU_ASSERT_EQUAL(queue_len(q), CAP);
    for (uintptr_t i = 1; i <= CAP; i++)
        CU_ASSERT_EQUAL(U(queue_pop(q)), i);
    CU_ASSERT_PTR_NULL(queue_pop(q));
    queue_free(q);
}

static void test_close_wakes_blocked_consumers(void)
{
    enum { NC = 4 };
    queue *q = queue_new(4, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    struct blocked b[NC];
    pthread_t t[NC];
    CU_ASSERT_EQUAL(start_blocked(q, b, t, NC, blocked_consumer), 0); /* empty and open: all blocked */
    queue_close(q);
    for (int i = 0; i < NC; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT_PTR_NULL(b[i].got);
    }
    CU_ASSERT_EQUAL(queue_push(q, P(1)), -1);
    queue_free(q);
}

/* Blocked consumers wake by the last queue_producer_done too, and get the items first. */
static void test_producer_done_wakes_consumers(void)
{
    enum { NC = 3 };
    queue *q = queue_new(4, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    struct blocked b[NC];
    pthread_t t[NC];
    CU_ASSERT_EQUAL(start_blocked(q, b, t, NC, blocked_consumer), 0);
    CU_ASSERT_EQUAL(queue_push(q, P(42)), 0);
    queue_producer_done(q);
    queue_producer_done(q);
    int got42 = 0, gotnull = 0;
    for (int i = 0; i < NC; i++) {
        pthread_join(t[i], NULL);
        got42 += U(b[i].got) == 42;
        gotnull += b[i].got == NULL;
    }
    CU_ASSERT_EQUAL(got42, 1);
    CU_ASSERT_EQUAL(gotnull, NC - 1);
    queue_free(q);
}

/* An event-driven consumer: poll the notify fd, reset it, drain with try_pop. No wakeup may be
 * lost (a lost one shows as a poll timeout). */
enum { EV_P = 4, EV_PER = 5000 };

struct ev {
    queue *q;
    int id;
};

static void *ev_producer(void *arg)
{
    struct ev *e = arg;
    for (uintptr_t k = 1; k <= EV_PER; k++) {
        queue_push(e->q, P((uintptr_t)e->id * EV_PER + k));
        if (k % 1000 == 0)
            sleep_ms(1); /* let the consumer go idle sometimes */
    }
    queue_producer_done(e->q);
    return NULL;
}

static void test_event_consumer(void)
{
    queue *q = queue_new(16, EV_P);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    int fd = queue_notify_fd(q);
    CU_ASSERT_FATAL(fd >= 0);
    struct ev e[EV_P];
    pthread_t t[EV_P];
    for (int i = 0; i < EV_P; i++) {
        e[i] = (struct ev){q, i};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, ev_producer, &e[i]), 0);
    }
    uint64_t count = 0, sum = 0;
    int timeouts = 0, done = 0;
    while (!done) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, 5000);
        if (r == 0) {
            timeouts++;
            break;
        }
        drain_fd(fd);
        void *p;
        int s;
        while ((s = queue_try_pop(q, &p)) == 1) {
            count++;
            sum += U(p);
        }
        done = s == -1;
    }
    for (int i = 0; i < EV_P; i++)
        pthread_join(t[i], NULL);
    CU_ASSERT_EQUAL(timeouts, 0);
    CU_ASSERT_EQUAL(count, (uint64_t)EV_P * EV_PER);
    uint64_t n = (uint64_t)EV_P * EV_PER;
    CU_ASSERT_EQUAL(sum, n * (n + 1) / 2);
    queue_free(q);
}

static void nap_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* queue_watch_starved: a consumer that finds the queue empty is starved until the next push;
 * nothing counts while an item waits, nor after the close. Lower bounds only (a busy machine
 * only makes stretches longer); the upper ones are stretches that must be exactly 0. */
static void test_starved_time(void)
{
    queue *q = queue_new(4, 1);
    struct prepstat ps = {0};
    queue_watch_starved(q, &ps);
    void *x;
    CU_ASSERT_EQUAL(queue_try_pop(q, &x), 0); /* empty: starved from now */
    nap_ms(30);
    struct prep_sample mid;
    prepstat_sample(&ps, &mid); /* the stretch under way counts in a sample */
    CU_ASSERT(mid.starved_us >= 30000);
    CU_ASSERT_EQUAL(atomic_load(&ps.starved_us), 0);
    CU_ASSERT_EQUAL(queue_push(q, (void *)1), 0); /* an item came: the stretch ends */
    uint64_t one = atomic_load(&ps.starved_us);
    CU_ASSERT(one >= 30000);
    CU_ASSERT_EQUAL(atomic_load(&ps.starved_since_us), 0);
    nap_ms(20); /* an item waits: nobody is starved */
    CU_ASSERT_EQUAL(queue_try_pop(q, &x), 1);
    CU_ASSERT_EQUAL(queue_push(q, (void *)2), 0);
    CU_ASSERT_PTR_EQUAL(queue_pop(q), (void *)2);
    CU_ASSERT_EQUAL(atomic_load(&ps.starved_us), one);
    CU_ASSERT_EQUAL(queue_try_pop(q, &x), 0); /* empty again, then closed: the stretch ends there */
    nap_ms(10);
    queue_close(q);
    uint64_t two = atomic_load(&ps.starved_us);
    CU_ASSERT(two >= one + 10000);
    nap_ms(10);
    CU_ASSERT_EQUAL(queue_try_pop(q, &x), -1); /* closed: not starved, nothing more comes */
    CU_ASSERT_PTR_NULL(queue_pop(q));
    struct prep_sample end;
    prepstat_sample(&ps, &end);
    CU_ASSERT_EQUAL(end.starved_us, two);
    queue_free(q);
}

/* The rule (prepstat.h): both shares over one half, each over its own count of loaders or
 * query sides; shares capped at 1. */
static void test_prep_rule(void)
{
    struct prepstat ps = {0};
    atomic_store(&ps.threads, 2);
    atomic_store(&ps.lanes, 1);
    struct prep_sample a = {.t_us = 1000000}, b = {.t_us = 11000000};
    struct prep_verdict v;
    b.prep_us = 15000000; /* 15 s of 2 x 10 s: 75% busy */
    b.starved_us = 6000000; /* 60% starved */
    prepstat_judge(&ps, &a, &b, &v);
    CU_ASSERT(v.window_s > 9.99 && v.window_s < 10.01);
    CU_ASSERT(v.busy > 0.74 && v.busy < 0.76 && v.starved > 0.59 && v.starved < 0.61);
    CU_ASSERT_TRUE(v.bottleneck);
    b.starved_us = 4000000; /* the servers were mostly busy: a slow server */
    prepstat_judge(&ps, &a, &b, &v);
    CU_ASSERT_FALSE(v.bottleneck);
    b.starved_us = 9000000;
    b.prep_us = 8000000; /* 40% busy: the loaders were not mostly preparing */
    prepstat_judge(&ps, &a, &b, &v);
    CU_ASSERT_FALSE(v.bottleneck);
    atomic_store(&ps.threads, 1); /* the same 8 s of one loader: 80% */
    prepstat_judge(&ps, &a, &b, &v);
    CU_ASSERT_TRUE(v.bottleneck);
    atomic_store(&ps.lanes, 4); /* starved time summed over 4 workers: 22.5% */
    prepstat_judge(&ps, &a, &b, &v);
    CU_ASSERT(v.starved > 0.22 && v.starved < 0.23);
    CU_ASSERT_FALSE(v.bottleneck);
    b.prep_us = 50000000; /* more than the window (rounding, a window cut short): capped */
    prepstat_judge(&ps, &a, &b, &v);
    CU_ASSERT_DOUBLE_EQUAL(v.busy, 1.0, 1e-9);
    prepstat_judge(&ps, &b, &b, &v); /* no window: nothing to say */
    CU_ASSERT_FALSE(v.bottleneck);
}

int register_queue(void)
{
    CU_pSuite s = CU_add_suite("queue", NULL, NULL);
    if (!s)
        return -1;
    if (!CU_add_test(s, "FIFO order, ring wrap-around", test_fifo_order) ||
        !CU_add_test(s, "try_pop: empty/open, item, closed/drained", test_try_pop_states) ||
        !CU_add_test(s, "producer counting closes after the last", test_producer_counting) ||
        !CU_add_test(s, "close: pushes fail, pops drain then NULL", test_close_drains) ||
        !CU_add_test(s, "notify fd: readable on push and on close", test_notify_fd) ||
        !CU_add_test(s, "capacity 0 is taken as 1", test_cap_zero_is_one) ||
        !CU_add_test(s, "starved time: from an empty pop to the next push or the close", test_starved_time) ||
        !CU_add_test(s, "prepstat's rule: both shares over one half", test_prep_rule))
        return -1;
    CU_pSuite c = CU_add_suite("queue concurrent", NULL, NULL);
    if (!c)
        return -1;
    if (!CU_add_test(c, "capacity 1: producer/consumer handoff in order", test_capacity_one_handoff) ||
        !CU_add_test(c, "8 producers x 8 consumers, 200k items each once", test_many_to_many) ||
        !CU_add_test(c, "close wakes producers blocked on a full queue", test_close_wakes_blocked_producers) ||
        !CU_add_test(c, "close wakes consumers blocked on an empty queue", test_close_wakes_blocked_consumers) ||
        !CU_add_test(c, "last producer_done wakes blocked consumers", test_producer_done_wakes_consumers) ||
        !CU_add_test(c, "event-driven consumer on the notify fd loses no wakeup", test_event_consumer))
        return -1;
    return 0;
}
