/* exec_multi: the curl-multi strategy. One thread, one event loop: curl_multi_socket_action
 * driven by epoll, so the work per event does not grow with the number of transfers in flight.
 *
 * The loop keeps at most --concurrency requests inside libcurl; more ready requests wait on our
 * own list (libcurl never queues them), and new images are taken from the input queue only when
 * that list is empty, so the number of images in flight stays near the concurrency. An image's
 * independent requests (model_01 with model_02, all its model_05s) are started together. Before
 * each attempt the endpoint admits it (endpoint.h): retries and rate-limit waits sit in a timer
 * heap (timers.h); a request whose stage has no free slot of its "concurrency" waits on its
 * stage's list, holding no request slot, and the stage's next free slot goes to the first in that
 * list (in arrival order). A request of a stage with "batch" goes to the loop's
 * batcher first (chain.h), and what leaves it is a batch, scheduled as one request: full, or
 * after its stage's max_wait_ms (a timer like the others), or at once on a stop (Ctrl-C) or
 * when the input is done. Each attempt begins and ends through the same
 * chain_attempt_begin / chain_attempt_end as the blocking driver: this file only decides when.
 * Easy handles are pooled and reused. */
#include "drivers/backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chain/chain.h"
#include "common/timers.h"
#include "drivers/cutter.h"
#include "drivers/http.h"
#include "endpoint/endpoint.h"
#include "endpoint/limit.h"
#include "endpoint/shared.h"

struct group;

struct multi {
    struct group *g;
    const struct run *run;
    queue *in, *out;
    pthread_t tid;
    CURLM *m;
    int epfd, qfd;
    int cap, in_curl;
    int room;                       /* requests it may have in curl now: cap, or what tot allows */
    struct limit_total *tot;        /* --concurrency auto: the total, following throughput */
    double curl_deadline;           /* < 0: none */
    struct chain_req *ready, *ready_tail;
    struct timers timers;           /* retries and rate-limit waits, until due */
    struct http_slot **pool;
    int n_pool;
    long items;                     /* images taken and not yet passed on */
    int input_done;
    /* Requests waiting for a slot of their stage (limit.h), per stage, in arrival order. */
    struct chain_req *wait_head[SHARED_MAX_STAGES], *wait_tail[SHARED_MAX_STAGES];
    _Atomic int n_wait[SHARED_MAX_STAGES]; /* read by the other loops */
    uint64_t wait_mask;             /* stages with a request waiting */
    int wait_rr;                    /* the stage served first next time, for fairness */
    int wake_fd;                    /* eventfd: another loop freed a slot one of ours waits for */
    struct chain_batcher *batcher;  /* requests of batch stages, gathering */
    struct cutter *cutter;          /* crop stages' cuts, run off the loop (a pipeline with crops) */
    struct chain_req *twins;        /* requests whose question another request is asking (--cache) */
    uint32_t memo_seen;             /* the answer store's registry generation they were looked at */
    struct http_slot *paused;       /* transfers paused for room within --max-memory (http.h) */
    double paused_at;               /* when they were last unpaused */
    unsigned char *fds;             /* each socket's epoll registration (on_socket) */
    int n_fds;
};

/* --loops event loops share the input and output queues; each has its own multi handle,
 * epoll set and share of --concurrency. The last loop to finish closes the output. */
struct group {
    struct exec base;
    int n;                          /* loops made; the running ones look at all of them */
    int started;                    /* of them, those whose thread started (the first ones) */
    struct multi **loops;
    atomic_int running;
};

/* ---- the ready list ---- */

static void ready_push_front(struct multi *x, struct chain_req *list)
{
    /* New requests of an image already in flight go first: finishing images beats starting them. */
    if (!list)
        return;
    struct chain_req *last = list;
    while (last->next)
        last = last->next;
    last->next = x->ready;
    if (!x->ready)
        x->ready_tail = last;
    x->ready = list;
}

static void ready_push_back(struct multi *x, struct chain_req *r)
{
    r->next = NULL;
    if (x->ready_tail)
        x->ready_tail->next = r;
    else
        x->ready = r;
    x->ready_tail = r;
}

static struct chain_req *ready_pop(struct multi *x)
{
    struct chain_req *r = x->ready;
    if (r) {
        x->ready = r->next;
        if (!x->ready)
            x->ready_tail = NULL;
        r->next = NULL;
    }
    return r;
}

/* ---- the stages' waiting lists ---- */

static void wait_push(struct multi *x, struct chain_req *r)
{
    int s = r->stage;
    r->next = NULL;
    if (x->wait_tail[s])
        x->wait_tail[s]->next = r;
    else
        x->wait_head[s] = r;
    x->wait_tail[s] = r;
    /* Sequentially consistent, with the slot counts: a loop that frees a slot after our last
     * try then sees that we wait (tell_others), and no wake-up is lost. */
    atomic_fetch_add(&x->n_wait[s], 1);
    x->wait_mask |= 1ull << s;
}

static struct chain_req *wait_pop(struct multi *x, int s)
{
    struct chain_req *r = x->wait_head[s];
    if (!(x->wait_head[s] = r->next)) {
        x->wait_tail[s] = NULL;
        x->wait_mask &= ~(1ull << s);
    }
    r->next = NULL;
    atomic_fetch_sub(&x->n_wait[s], 1);
    return r;
}

/* A request that will not be sent, whatever its stage's slots: its image has failed, or the
 * run is being torn down. chain_attempt_begin settles it without a slot. */
static int settling(const struct multi *x, const struct chain_req *r)
{
    return chain_req_moot(x->run, r);
}

/* ---- curl callbacks ---- */

/* What each socket is registered with in epoll (x->fds, by descriptor): SOCK_REG and the events,
 * SOCK_IDLE once libcurl has let go of it. libcurl removes a connection's socket when its transfer
 * ends and adds it again when the next request takes the connection from its cache, usually
 * with the same interest: the socket stays in epoll meanwhile, and that costs no epoll_ctl. An
 * event on an idle socket (the server closed it) takes it out; libcurl finds the connection dead
 * when it next looks. libcurl closes its sockets through on_close, which forgets them. */
#define SOCK_REG 0x80u
#define SOCK_IDLE 0x40u

static unsigned char *sock_state(struct multi *x, curl_socket_t s)
{
    if (s < 0)
        return NULL;
    if (s >= x->n_fds) {
        int n = x->n_fds ? x->n_fds : 1024;
        while (n <= s)
            n *= 2;
        unsigned char *f = realloc(x->fds, (size_t)n);
        if (!f)
            return NULL;
        memset(f + x->n_fds, 0, (size_t)(n - x->n_fds));
        x->fds = f;
        x->n_fds = n;
    }
    return &x->fds[s];
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)e;
    (void)socketp;
    struct multi *x = userp;
    unsigned char *st = sock_state(x, s);
    if (what == CURL_POLL_REMOVE) {
        if (st && (*st & SOCK_REG))
            *st |= SOCK_IDLE; /* kept in epoll */
        else
            epoll_ctl(x->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.data.fd = s;
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (st && (*st & ~SOCK_IDLE) == (SOCK_REG | ev.events)) {
        *st = (unsigned char)(SOCK_REG | ev.events); /* taken again as it was: nothing to do */
        return 0;
    } else if (st && (*st & SOCK_REG)) {
        epoll_ctl(x->epfd, EPOLL_CTL_MOD, s, &ev);
    } else if (epoll_ctl(x->epfd, EPOLL_CTL_ADD, s, &ev) && errno == EEXIST) {
        epoll_ctl(x->epfd, EPOLL_CTL_MOD, s, &ev); /* no state (out of memory): registered before */
    }
    if (st)
        *st = (unsigned char)(SOCK_REG | ev.events);
    return 0;
}

/* An event on a socket libcurl has let go of: out of epoll with it. 1 when it was one. */
static int idle_event(struct multi *x, int fd)
{
    if (fd >= x->n_fds || !(x->fds[fd] & SOCK_IDLE))
        return 0;
    epoll_ctl(x->epfd, EPOLL_CTL_DEL, fd, NULL);
    x->fds[fd] = 0;
    return 1;
}

static curl_socket_t on_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)clientp;
    (void)purpose;
    /* Close-on-exec: worker processes are started by fork and exec while connections are open. */
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static int on_close(void *clientp, curl_socket_t s)
{
    struct multi *x = clientp;
    if (s >= 0 && s < x->n_fds) {
        if (x->fds[s] & SOCK_REG)
            epoll_ctl(x->epfd, EPOLL_CTL_DEL, s, NULL); /* a copy held across a fork would keep it */
        x->fds[s] = 0;
    }
    return close(s);
}

static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    struct multi *x = userp;
    x->curl_deadline = timeout_ms < 0 ? -1 : now_s() + (double)timeout_ms / 1e3;
    return 0;
}

/* ---- requests ---- */

static struct http_slot *handle_get(struct multi *x)
{
    if (x->n_pool)
        return x->pool[--x->n_pool];
    struct http_slot *h = calloc(1, sizeof *h);
    if (!h || http_slot_init(h)) {
        free(h);
        return NULL;
    }
    curl_easy_setopt(h->h, CURLOPT_OPENSOCKETFUNCTION, on_open);
    curl_easy_setopt(h->h, CURLOPT_CLOSESOCKETFUNCTION, on_close);
    curl_easy_setopt(h->h, CURLOPT_CLOSESOCKETDATA, x);
    h->pause_list = &x->paused; /* an answer without room pauses (http.h) */
    return h;
}

static void handle_put(struct multi *x, struct http_slot *h)
{
    x->pool[x->n_pool++] = h; /* the pool holds at most cap handles: one per request in curl */
}

static void item_settled(struct multi *x, struct item *it)
{
    x->items--;
    if (queue_push(x->out, it))
        item_free(it);
}

/* A request of it has been settled by the chain: queue whatever comes next. */
static void follow_up(struct multi *x, struct item *it)
{
    ready_push_front(x, chain_next(x->run, it));
    if (chain_finished(it))
        item_settled(x, it);
}

/* The same for each item of a request (a batch has several), taken before the chain call. */
static void follow_all(struct multi *x, struct item **its, int n)
{
    for (int i = 0; i < n; i++)
        follow_up(x, its[i]);
}

/* Sends r, which the endpoint has admitted (or which is settling: the chain settles it). */
static void send_req(struct multi *x, struct chain_req *r)
{
    struct item *its[CHAIN_BATCH_ITEMS];
    int n_its = chain_req_items(r, its);
    struct http_slot *h = handle_get(x);
    if (!h) {
        chain_abandon(x->run, r, "out of memory for a curl handle");
        follow_all(x, its, n_its);
        return;
    }
    if (chain_attempt_begin(x->run, r, now_s()) == CHAIN_SETTLED) {
        handle_put(x, h);
        follow_all(x, its, n_its);
        return;
    }
    if (r->n_members) {
        follow_all(x, its, n_its); /* a batch may have let go of members whose images failed */
        n_its = chain_req_items(r, its); /* those followed up may be gone: only the kept ones now */
    }
    r->driver = h;
    http_prepare(h, x->run, r);
    CURLMcode mc = curl_multi_add_handle(x->m, h->h);
    if (mc != CURLM_OK) {
        if (h->whole) { /* the body in place was never sent: let the image's slack go */
            chain_req_whole_done(h->whole);
            h->whole = NULL;
        }
        handle_put(x, h);
        r->driver = NULL;
        struct chain_answer a = {.cc = CURLE_FAILED_INIT, .curl_err = curl_multi_strerror(mc), .retry_after_s = -1};
        double at;
        chain_attempt_end(x->run, r, &a, now_s(), &at); /* a local error: final */
        follow_all(x, its, n_its);
        return;
    }
    x->in_curl++;
}

static void start(struct multi *x, struct chain_req *r);

/* The answer store first (chain.h): 1 when r is to be sent; 0 when it was answered (its item is
 * followed up) or waits for its twin's answer (on the twins list). */
static int not_answered(struct multi *x, struct chain_req *r)
{
    if (r->n_members || settling(x, r))
        return 1;
    struct item *it = r->it;
    switch (chain_memo_look(x->run, r)) {
    case CHAIN_ASK:
        return 1;
    case CHAIN_ANSWERED:
        follow_up(x, it);
        return 0;
    case CHAIN_TWIN:
        r->next = x->twins;
        x->twins = r;
        return 0;
    }
    return 1;
}

/* Twins look again once a question others waited for was given back (or, stop, to be settled). */
static void twins_again(struct multi *x, int stop)
{
    if (!x->twins || (!stop && !chain_memo_changed(x->run, &x->memo_seen)))
        return;
    struct chain_req *list = x->twins;
    x->twins = NULL;
    while (list) {
        struct chain_req *r = list;
        list = r->next;
        r->next = NULL;
        start(x, r);
    }
}

/* Sends r now, or parks it until the endpoint admits it: in the timer heap until its rate-limit
 * tokens are valid, or on its stage's list until a slot is free, behind the requests already
 * waiting there, never ahead of them. */
static void start(struct multi *x, struct chain_req *r)
{
    if (r->cut) { /* CPU work: cut by the cutter's threads, and its requests taken back (top_up) */
        cutter_put(x->cutter, r);
        return;
    }
    if (!not_answered(x, r))
        return;
    if (chain_batched(x->run, r) && !(r = chain_batch_add(x->batcher, r, now_s())))
        return; /* gathering: its batch goes when full or due (top_up) */
    if (settling(x, r)) {
        send_req(x, r); /* settles it */
        return;
    }
    for (;;) {
        double until;
        switch (endpoint_admit(x->run, &r->tk, now_s(), &until, x->wait_head[r->stage] != NULL)) {
        case ADMIT_GO:
            send_req(x, r);
            return;
        case ADMIT_PARK:
            wait_push(x, r);
            return;
        case ADMIT_WAIT:
            if (timers_push(&x->timers, until, r) == 0)
                return;
            break; /* no room to park it: go on rather than lose it (the token is taken) */
        }
    }
}

/* A slot of stage s came free here: a loop that has requests waiting for one is told. */
static void tell_others(struct multi *x, int s)
{
    struct group *g = x->g;
    for (int i = 0; g->n > 1 && i < g->n; i++) {
        struct multi *o = g->loops[i];
        if (o != x && atomic_load(&o->n_wait[s]) > 0) {
            uint64_t one = 1;
            ssize_t w = write(o->wake_fd, &one, sizeof one);
            (void)w;
        }
    }
}

/* The first waiting request (stages taken in turn) that can have a slot now, with it; requests
 * that are settling on the way are settled. NULL when none. */
static struct chain_req *next_waiting(struct multi *x)
{
    int n = x->run->p->n;
    for (int k = 0; k < n && x->wait_mask; k++) {
        int s = (x->wait_rr + k) % n;
        while (x->wait_head[s]) {
            if (settling(x, x->wait_head[s])) {
                send_req(x, wait_pop(x, s)); /* settles it */
                continue;
            }
            double until;
            if (endpoint_admit(x->run, &x->wait_head[s]->tk, now_s(), &until, 0) != ADMIT_GO)
                break; /* (its tokens are held: only a slot can be missing) */
            x->wait_rr = (s + 1) % n;
            return wait_pop(x, s);
        }
    }
    return NULL;
}

/* The loop's total went from was to x->room: the run's sum of them, and its most, for the summary. */
static void tell_total(const struct multi *x, int was)
{
    struct shared_page *sh = x->run->shared;
    if (!sh)
        return;
    int sum = atomic_fetch_add(&sh->total_now, x->room - was) + x->room - was;
    int peak = atomic_load(&sh->total_peak);
    while (sum > peak && !atomic_compare_exchange_weak(&sh->total_peak, &peak, sum))
        ;
}

/* --concurrency auto: a request's end is a sample of the loop's total (limit.h); the connections
 * libcurl keeps follow it, so that a total tried and given up leaves no idle ones behind. */
static void follow_total(struct multi *x, double now, double t_sent)
{
    int was = x->room;
    x->room = limit_total_sample(x->tot, now, t_sent);
    if (x->room != was) {
        curl_multi_setopt(x->m, CURLMOPT_MAXCONNECTS, (long)x->room + 8);
        tell_total(x, was);
    }
}

static void on_done(struct multi *x, CURL *e, CURLcode cc)
{
    struct chain_req *r;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
    struct http_slot *h = r->driver;
    struct item *its[CHAIN_BATCH_ITEMS];
    int n_its = chain_req_items(r, its);
    int s = r->stage;
    struct chain_answer a;
    http_answer(h, cc, &a);
    curl_multi_remove_handle(x->m, e);
    double at, now = now_s();
    if (x->tot)
        follow_total(x, now, r->t_attempt);
    x->in_curl--;
    enum chain_step step = chain_attempt_end(x->run, r, &a, now, &at); /* the slot is back */
    http_answer_release(h);
    handle_put(x, h); /* after the chain has read the answer out of it */
    if (endpoint_limit(x->run, s) >= 0)
        tell_others(x, s);
    if (step == CHAIN_RETRY) {
        r->driver = NULL;
        if (timers_push(&x->timers, at, r) == 0)
            return;
        chain_abandon(x->run, r, "out of memory for a retry");
    }
    follow_all(x, its, n_its);
}

static void drain_messages(struct multi *x)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(x->m, &left)))
        if (msg->msg == CURLMSG_DONE)
            on_done(x, msg->easy_handle, msg->data.result);
}

/* The requests this loop can have in flight: its share of --concurrency, or less when the
 * stages' limits (limit.h) add up to less (with --concurrency auto the total is large, and the
 * images taken must follow what the endpoints take, not it). */
static long images_cap(const struct multi *x)
{
    const struct run *run = x->run;
    long sum = 0, most = 1; /* a batch stage's request carries up to its batch size of images */
    for (int s = 0; s < run->p->n; s++)
        if (run->p->stages[s].batch_size > most)
            most = run->p->stages[s].batch_size;
    long bound = x->room * most;
    for (int s = 0; s < run->p->n && sum < bound * x->g->n; s++) {
        const struct stage *st = &run->p->stages[s];
        int lim = endpoint_limit(run, s);
        sum += (lim >= 0 ? lim : x->cap * (long)x->g->n) * (st->batch_size > 0 ? st->batch_size : 1);
    }
    sum /= x->g->n;
    return sum < 1 ? 1 : sum < bound ? sum : bound;
}

/* The run is being torn down: parked requests and gathering batches are not worth waiting for;
 * they are settled now. */
static void settle_parked(struct multi *x, double now)
{
    twins_again(x, 1);
    while (x->timers.n)
        start(x, timers_pop(&x->timers, NULL));
    for (int s = 0; x->wait_mask && s < SHARED_MAX_STAGES; s++)
        while (x->wait_head[s])
            send_req(x, wait_pop(x, s));
    for (struct chain_req *b; (b = chain_batch_due(x->batcher, now, 1));)
        send_req(x, b);
}

/* Takes the next image from the input and queues its first requests. Returns 1 when it took
 * one, 0 when it cannot take one now (the input is done or empty, the run is stopping, or the
 * images in flight are at their cap). */
static int take_image(struct multi *x)
{
    if (run_stop_state(x->run) == RUN_ABORT)
        x->input_done = 1; /* the run is being torn down: take nothing more */
    if (x->input_done)
        return 0;
    if (exec_stopping(x->run)) {
        /* Stopping: what was never sent gets no row (--resume runs it); empty the queue so that
         * its producer can finish. */
        void *q;
        int got;
        while ((got = queue_try_pop(x->in, &q)) > 0)
            exec_let_go(x->run, q);
        if (got < 0)
            x->input_done = 1;
        return 0;
    }
    /* Images in flight are bounded too, not only requests in curl: requests parked in the timer
     * heap (backoff, Retry-After, --max-rps) would otherwise let the loop take every image of
     * the folder. */
    if (x->items >= 2L * images_cap(x))
        return 0;
    void *p;
    int got = queue_try_pop(x->in, &p);
    if (got < 0)
        x->input_done = 1;
    if (got <= 0)
        return 0;
    struct item *it = p;
    x->items++;
    struct chain_req *reqs = chain_next(x->run, it);
    if (!reqs && chain_finished(it))
        item_settled(x, it); /* failed at load, or nothing to send */
    while (reqs) {
        struct chain_req *n = reqs->next;
        ready_push_back(x, reqs);
        reqs = n;
    }
    return 1;
}

/* Starts the gathering batches that are due: full, or their oldest item has waited its stage's
 * max_wait_ms; on a stop, or once the input is done, every one, since no image will come to
 * fill them. */
static void send_due_batches(struct multi *x, double now)
{
    int flush = x->input_done || exec_stopping(x->run);
    for (struct chain_req *b; x->in_curl < x->room && (b = chain_batch_due(x->batcher, now, flush));)
        start(x, b);
}

/* Starts requests and takes images until the cap is reached or nothing is ready. */
static void top_up(struct multi *x)
{
    double now = now_s();
    for (struct chain_req *c; x->cutter && (c = cutter_take(x->cutter));) {
        struct item *it = c->it;
        ready_push_front(x, chain_cut_done(x->run, c));
        follow_up(x, it);
    }
    if (run_stop_state(x->run) == RUN_ABORT)
        settle_parked(x, now);
    twins_again(x, 0);
    while (x->timers.n && timers_next(&x->timers) <= now && x->in_curl < x->room)
        start(x, timers_pop(&x->timers, NULL));
    send_due_batches(x, now);
    while (x->in_curl < x->room) {
        struct chain_req *r = next_waiting(x); /* those that waited for a slot go first */
        if (r)
            send_req(x, r);
        else if ((r = ready_pop(x)))
            start(x, r);
        else if (!take_image(x))
            break;
    }
    if (x->tot)
        limit_total_filled(x->tot, x->in_curl >= x->room);
    send_due_batches(x, now); /* what just gathered, when the input has just ended */
}

/* How often answers paused for room within --max-memory are tried again. */
#define PAUSED_POLL_S 0.02

static void *loop(void *arg)
{
    struct multi *x = arg;
    struct epoll_event evs[256];
    int running;
    if (x->tot)
        tell_total(x, 0); /* a loop whose thread never started counts in no total */
    for (;;) {
        top_up(x);
        if (x->input_done && x->items == 0)
            break;
        double now = now_s(), wake = -1;
        if (x->curl_deadline >= 0)
            wake = x->curl_deadline;
        /* Parked requests and gathering batches can only go into a free slot: with none, an
         * answer is what to wait for (waking for them would spin). */
        if (x->in_curl < x->room) {
            if (x->timers.n && (wake < 0 || timers_next(&x->timers) < wake))
                wake = timers_next(&x->timers);
            double due = chain_batch_deadline(x->batcher);
            if (due >= 0 && (wake < 0 || due < wake))
                wake = due;
        }
        if (x->paused && (wake < 0 || x->paused_at + PAUSED_POLL_S < wake))
            wake = x->paused_at + PAUSED_POLL_S; /* gives back in other processes wake no loop */
        double ms = wake < 0 ? 1000 : (wake - now) * 1e3 + 0.999;
        int timeout = ms > 1000 ? 1000 : ms < 0 ? 0 : (int)ms; /* clamp before converting */
        int n = epoll_wait(x->epfd, evs, 256, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* Cannot happen with a valid epoll fd; if it does, the images held here must not
             * vanish: stop the run (exit 2) rather than drop them. */
            fprintf(stderr, "annotate: the curl-multi event loop failed: %s; stopping\n", strerror(errno));
            run_abort(x->run); /* the runner turns this into exit 2 */
            break;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == x->qfd || evs[i].data.fd == x->wake_fd) {
                uint64_t v;
                ssize_t rr = read(evs[i].data.fd, &v, sizeof v);
                (void)rr;
                continue;
            }
            if (idle_event(x, evs[i].data.fd))
                continue;
            int flags = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(x->m, evs[i].data.fd, flags, &running);
            drain_messages(x); /* finish (and follow up) each answer at once, not after the batch */
        }
        if (x->curl_deadline >= 0 && now_s() >= x->curl_deadline) {
            x->curl_deadline = -1;
            curl_multi_socket_action(x->m, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        drain_messages(x);
        if (x->paused && now_s() >= x->paused_at + PAUSED_POLL_S) {
            x->paused_at = now_s();
            http_resume_paused(&x->paused);
            drain_messages(x);
        }
    }
    if (x->tot && x->run->shared) {
        atomic_fetch_add(&x->run->shared->total_ups, x->tot->ups);
        atomic_fetch_add(&x->run->shared->total_downs, x->tot->downs);
    }
    if (atomic_fetch_sub(&x->g->running, 1) == 1)
        queue_producer_done(x->out);
    return NULL;
}

static void loop_free(struct multi *x)
{
    if (!x)
        return;
    for (int i = 0; i < x->n_pool; i++) {
        http_slot_free(x->pool[i]);
        free(x->pool[i]);
    }
    cutter_free(x->cutter);
    chain_memo_watch(x->run, x->wake_fd, 0);
    chain_batcher_free(x->batcher);
    curl_multi_cleanup(x->m);
    if (x->epfd >= 0)
        close(x->epfd);
    if (x->wake_fd >= 0)
        close(x->wake_fd);
    free(x->fds);
    free(x->tot);
    free(x->pool);
    timers_free(&x->timers);
    free(x);
}

static void join(struct exec *base)
{
    struct group *g = (struct group *)base;
    /* Every loop is joined before any is freed: one still running may look at the others
     * (tell_others). */
    for (int i = 0; i < g->started; i++)
        pthread_join(g->loops[i]->tid, NULL);
    for (int i = 0; i < g->n; i++)
        loop_free(g->loops[i]);
    free(g->loops);
    free(g);
}

static struct multi *loop_new(struct group *g, const struct run *run, queue *in, queue *out, int cap,
                              int n_loops, char *err, size_t errlen)
{
    struct multi *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->g = g;
    x->run = run;
    x->in = in;
    x->out = out;
    x->cap = x->room = cap;
    x->curl_deadline = -1;
    x->wake_fd = -1;
    x->pool = calloc((size_t)x->cap + 1, sizeof *x->pool);
    x->epfd = epoll_create1(EPOLL_CLOEXEC);
    x->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    x->qfd = queue_add_notify_fd(in);
    x->m = curl_multi_init();
    x->batcher = chain_batcher_new(run);
    if (x->wake_fd >= 0 && pipeline_crops(run->p))
        x->cutter = cutter_new(run, config_load_workers(run->cfg), x->wake_fd);
    if (run->cfg->concurrency_auto && (x->tot = malloc(sizeof *x->tot))) {
        /* This loop's share of the total's start and floor (its cap is its share of the top). */
        limit_total_init(x->tot, LIMIT_TOTAL_INITIAL / n_loops, LIMIT_TOTAL_LO / n_loops, cap, now_s());
        x->room = x->tot->total;
    }
    if (x->epfd < 0 || x->wake_fd < 0 || x->qfd < 0 || !x->m || !x->pool || !x->batcher ||
        (run->cfg->concurrency_auto && !x->tot) || (pipeline_crops(run->p) && !x->cutter)) {
        snprintf(err, errlen, "cannot set up the curl-multi event loop: %s", strerror(errno));
        loop_free(x);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = x->qfd};
    epoll_ctl(x->epfd, EPOLL_CTL_ADD, x->qfd, &ev);
    struct epoll_event wev = {.events = EPOLLIN, .data.fd = x->wake_fd};
    epoll_ctl(x->epfd, EPOLL_CTL_ADD, x->wake_fd, &wev);
    chain_memo_watch(run, x->wake_fd, 1); /* a twin's answer came in another loop */
    curl_multi_setopt(x->m, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(x->m, CURLMOPT_SOCKETDATA, x);
    curl_multi_setopt(x->m, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(x->m, CURLMOPT_TIMERDATA, x);
    /* Keep a connection for every request slot, so connections are reused, not re-made. */
    curl_multi_setopt(x->m, CURLMOPT_MAXCONNECTS, (long)x->cap + 8);
    return x;
}

struct exec *exec_multi_start(const struct run *run, queue *in, queue *out, char *err, size_t errlen)
{
    int n = run->cfg->loops > 0 ? run->cfg->loops : 1;
    if (n > run->cfg->concurrency)
        n = run->cfg->concurrency; /* every loop gets at least one request slot */
    struct group *g = calloc(1, sizeof *g);
    g->base.join = join;
    g->loops = calloc((size_t)n, sizeof *g->loops);
    for (int i = 0; i < n; i++) {
        int cap = run->cfg->concurrency / n + (i < run->cfg->concurrency % n);
        if (!(g->loops[i] = loop_new(g, run, in, out, cap, n, err, errlen))) {
            for (int j = 0; j < i; j++)
                loop_free(g->loops[j]);
            free(g->loops);
            free(g);
            return NULL;
        }
    }
    g->n = n;
    atomic_store(&g->running, n);
    for (int i = 0; i < n; i++, g->started++) {
        int rc = pthread_create(&g->loops[i]->tid, NULL, loop, g->loops[i]);
        if (rc) {
            /* The loops already running carry the work; this one and later ones never start.
             * They stay in g->loops, idle, until join frees them: the running ones look at them
             * (tell_others). */
            fprintf(stderr, "annotate: started %d of %d event loops (%s); going on with those\n", i, n,
                    strerror(rc));
            if (i == 0) {
                snprintf(err, errlen, "cannot start the event loop thread: %s", strerror(rc));
                for (int j = 0; j < n; j++)
                    loop_free(g->loops[j]);
                free(g->loops);
                free(g);
                return NULL;
            }
            if (atomic_fetch_sub(&g->running, n - i) == n - i)
                queue_producer_done(out);
            break;
        }
    }
    return &g->base;
}
