/* server: the mock model server's event loops (see server.h).
 *
 * One worker per thread, each with its own libevent base, its own evhttp and its own listening
 * socket on the shared port (SO_REUSEPORT when there is more than one: the kernel spreads the
 * connections). A worker shares nothing with the others but three things: its counters, which
 * it alone adds to (relaxed atomics, summed by whichever worker answers GET /stats), the gates
 * of the endpoints that have a capacity, and its inbox. Worker 0 runs on the caller's thread
 * and holds the signal events; with one thread the server is what it always was.
 *
 * A request is answered in its callback unless it waits: for its service time (--latency-ms,
 * --per-item-ms: a timer), for a slot (--capacity: queued in the endpoint's gate), or for ever
 * (--hang-rate). A waiting request keeps a `struct pending`, registered as its connection's
 * close callback, since libevent frees a request when its connection goes: whichever comes
 * first, the answer or the close, unhooks the other. A request that waits is checked and its
 * answer built when it arrives, so the cost of a batch (a + b x images) is known before it is
 * served, and what is left to do at the end is to send the prepared bytes.
 *
 * Capacity is per process, as on a GPU server: the gate (gate.c) holds K slots and a FIFO for
 * all the threads. When a request's service ends, its slot goes to the head of the queue; if
 * that request belongs to another worker, it goes into that worker's inbox and the worker is
 * woken through its eventfd, and it arms the timer for what is left of the service time. A
 * request whose client leaves while it waits leaves the queue; one that holds a slot keeps it
 * until its service time is over, as a GPU finishes a batch nobody waits for any more.
 *
 * evhttp reads nothing more from a connection while a request waits for its answer, so a
 * client that gives up on a hung request would go unnoticed; the hang watches the socket itself
 * and frees the connection when the client closes it.
 *
 * The hot path reuses what it can, per worker: one reply evbuffer (evhttp_send_reply moves its
 * contents out), a body buffer for bodies that arrive in several chunks, a decode buffer, a
 * print buffer, the batch array, and a free list of `struct pending` with their answer
 * buffers. */
#include "mock/server.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h> /* struct event inside struct pending: no allocation per park */
#include <event2/http.h>
#include <event2/listener.h>

#include "mock/answers.h"
#include "mock/dialects.h"
#include "mock/gate.h"
#include "mock/request.h"

#define MAX_BODY ((ev_ssize_t)256 << 20)
#define BACKLOG 4096         /* a benchmark opens its connections all at once; 128 drops SYNs */
#define OUT_PREALLOC 16384   /* the largest answer (model_04, 3 sub-images) is about 1.1 KB */
#define N_MODELS MOCK_N_MODELS
#define MAX_THREADS 64

typedef struct worker worker;

enum park_kind {
    PARK_DELAY,  /* its service time, no capacity: a timer */
    PARK_GATED,  /* in the endpoint's gate: waiting for a slot, or served (a timer) */
    PARK_HANG,   /* never answered: a watch on the socket */
    PARK_DIALECT, /* a dialect endpoint's service time: a timer, no capacity, no busy count */
};

/* What a prepared answer counts as once it is sent. */
enum outcome {
    OUT_OK,       /* 200: ok, and the endpoint's ok and items */
    OUT_REJECTED, /* 400 */
    OUT_ERROR,    /* 500 out of memory: counted nowhere, as before */
};

struct pending {
    struct event ev;                /* the service timer, or the hang's watch on the socket */
    struct gate_job job;            /* PARK_GATED */
    struct evhttp_request *req;     /* NULL once the client went away while holding a slot */
    struct evhttp_connection *evcon;
    worker *w;                      /* the owner: only its thread touches what is below */
    int model;                      /* 1..5; for PARK_DIALECT the dialect */
    int fault;                      /* enum mock_fault, or -1 */
    int kind;                       /* enum park_kind */
    /* the prepared answer, when fault is -1 */
    struct evbuffer *body;          /* kept across reuse */
    int code;
    const char *phrase;
    enum outcome outcome;
    size_t items;
    long cost_us;                   /* the service time */
    int64_t handed_us;              /* when another worker handed it a slot (inbox) */
    struct pending *inbox_next;     /* in the owner's inbox, under its inbox_mu */
    struct pending *prev, *next;    /* in w->live; next alone in w->spare */
};

/* One worker's counters. Only it adds to them; any worker reads and zeroes them. */
struct counters {
    _Atomic uint64_t requests[N_MODELS];
    _Atomic uint64_t ok, rejected;
    _Atomic uint64_t faults[MOCK_N_FAULTS];
    _Atomic uint64_t ep_ok[N_MODELS], ep_items[N_MODELS];
    /* the dialect endpoints, apart from the seed's: they count in none of the above */
    _Atomic uint64_t d_requests[MOCK_N_DIALECTS], d_ok[MOCK_N_DIALECTS];
    _Atomic uint64_t d_rejected[MOCK_N_DIALECTS], d_faults[MOCK_N_DIALECTS];
};

struct worker {
    mock_server *srv;
    int index;
    struct event_base *base;
    struct evhttp *http;
    int wake_fd;                    /* eventfd: the inbox has requests, or the server stops */
    struct event *wake;
    pthread_t thread;
    int started;
    uint64_t fault_rng, latency_rng; /* two streams: latency settings do not shift the faults */
    struct evbuffer *reply;
    struct mock_buf body, scratch, out;
    struct mock_batch batch;
    char why[MOCK_WHY_MAX];
    struct pending *live, *spare;
    pthread_mutex_t inbox_mu;
    int inbox_ready;                /* inbox_mu initialised */
    struct pending *inbox, *inbox_tail;
    struct counters c;
};

/* How busy an endpoint without a capacity is, across the workers. */
struct busy {
    _Atomic int now, peak;
};

struct mock_server {
    struct mock_config cfg;
    int port;
    int any_fault;
    int extended;                   /* /stats shows the capacity, batch and thread figures */
    int nworkers;
    worker **w;
    struct gate gates[N_MODELS];
    struct gate *gate[N_MODELS];    /* NULL: no capacity */
    struct busy busy[N_MODELS];
    struct event *sig[2];           /* on worker 0 */
    atomic_int stop;
    atomic_int loop_failed;
    _Atomic int64_t t_first_us;     /* the first request's time (--slowdown-ms); 0: none yet */
};

void mock_config_default(struct mock_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->threads = 1;
    for (int m = 0; m < N_MODELS; m++) {
        cfg->ep[m].queue_max = -1;
        cfg->ep[m].batch_max = 1;
    }
    cfg->latency_dist = MOCK_LAT_FIXED;
    cfg->seed = 1;
    cfg->retry_after = 1;
}

#define BUMP(x, n) atomic_fetch_add_explicit(&(x), (n), memory_order_relaxed)
#define READ(x) atomic_load_explicit(&(x), memory_order_relaxed)

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* splitmix64: tiny, fast, and good enough to draw faults and latencies from. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double next_unit(uint64_t *s) /* [0, 1) */
{
    return (double)(next_u64(s) >> 11) * 0x1p-53;
}

/* One draw per request, tested against the cumulated rates in enum order. */
static int draw_fault(worker *w)
{
    const mock_server *s = w->srv;
    if (!s->any_fault)
        return -1;
    double u = next_unit(&w->fault_rng), acc = 0;
    for (int f = 0; f < MOCK_N_FAULTS; f++) {
        acc += s->cfg.rate[f];
        if (u < acc)
            return f;
    }
    return -1;
}

static long draw_latency_us(worker *w, double ms)
{
    if (ms <= 0)
        return 0;
    enum mock_latency_dist d = w->srv->cfg.latency_dist;
    if (d == MOCK_LAT_UNIFORM)
        ms *= 2 * next_unit(&w->latency_rng);
    else if (d == MOCK_LAT_EXP)
        ms *= -log1p(-next_unit(&w->latency_rng));
    return (long)(ms * 1000 + 0.5);
}

/* A request's mean service time: ms, plus slow ms per second since the server's first request
 * (a server that slows with time, whatever its load). */
static double service_ms(mock_server *s, double ms, double slow)
{
    if (slow <= 0)
        return ms;
    int64_t now = now_us(), first = 0;
    if (!atomic_compare_exchange_strong(&s->t_first_us, &first, now))
        return ms + slow * (double)(now - first) / 1e6;
    return ms;
}

static void busy_enter(struct busy *b)
{
    int now = atomic_fetch_add_explicit(&b->now, 1, memory_order_relaxed) + 1;
    int peak = atomic_load_explicit(&b->peak, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(&b->peak, &peak, now,
                                                                memory_order_relaxed,
                                                                memory_order_relaxed))
        ;
}

static void busy_leave(struct busy *b)
{
    atomic_fetch_sub_explicit(&b->now, 1, memory_order_relaxed);
}

/* ---- replies ------------------------------------------------------------------------------ */

/* Reasons are our own strings, but some quote key names: escape what JSON needs. */
static void add_json_string(struct evbuffer *b, const char *str)
{
    evbuffer_add(b, "\"", 1);
    for (const char *p = str; *p;) {
        size_t n = strcspn(p, "\"\\");
        evbuffer_add(b, p, n);
        p += n;
        if (*p) {
            char esc[2] = {'\\', *p++};
            evbuffer_add(b, esc, 2);
        }
    }
    evbuffer_add(b, "\"", 1);
}

static void error_body(struct evbuffer *b, const char *why)
{
    evbuffer_add(b, "{\"error\": ", 10);
    add_json_string(b, why);
    evbuffer_add(b, "}", 1);
}

static void send_error(worker *w, struct evhttp_request *req, int code, const char *phrase,
                       const char *why)
{
    error_body(w->reply, why);
    evhttp_send_reply(req, code, phrase, w->reply);
}

/* RST rather than FIN: a reset is what a crashed or overloaded server looks like. */
static void reset_connection(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    evhttp_connection_free(evcon); /* frees req too */
}

static void add_retry_after(worker *w, struct evhttp_request *req)
{
    char retry[24];
    snprintf(retry, sizeof retry, "%d", w->srv->cfg.retry_after);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", retry);
}

/* ---- /stats ------------------------------------------------------------------------------- */

static uint64_t sum(mock_server *s, size_t offset)
{
    uint64_t t = 0;
    for (int i = 0; i < s->nworkers; i++)
        t += READ(*(_Atomic uint64_t *)((char *)&s->w[i]->c + offset));
    return t;
}

#define SUM(field) sum(s, offsetof(struct counters, field))

static void add_limit(struct evbuffer *b, const char *key, int v, int none)
{
    if (v == none)
        evbuffer_add_printf(b, ", \"%s\": null", key);
    else
        evbuffer_add_printf(b, ", \"%s\": %d", key, v);
}

/* The figures that come with --capacity, --queue-max, --per-item-ms, --batch, --batch-max or
 * --threads; their absence keeps /stats exactly what it was before them. */
static uint64_t add_extended(mock_server *s, struct evbuffer *b)
{
    uint64_t refused = 0;
    evbuffer_add(b, ", \"endpoints\": {", 16);
    for (int m = 0; m < N_MODELS; m++) {
        const struct mock_endpoint *ep = &s->cfg.ep[m];
        struct gate_stats g = {.capacity = 0, .queue_max = -1};
        if (s->gate[m]) {
            gate_read(s->gate[m], &g, 0);
        } else {
            g.in_service = atomic_load(&s->busy[m].now);
            g.peak_in_service = atomic_load(&s->busy[m].peak);
        }
        refused += g.refused;
        evbuffer_add_printf(b, "%s\"model_%02d\": {\"latency_ms\": %g, \"per_item_ms\": %g",
                            m ? ", " : "", m + 1, ep->latency_ms, ep->per_item_ms);
        add_limit(b, "capacity", s->gate[m] ? g.capacity : 0, 0);
        add_limit(b, "queue_max", s->gate[m] ? g.queue_max : -1, -1);
        add_limit(b, "batch_max", ep->batch_max, 0);
        evbuffer_add_printf(b, ", \"batch\": %s, \"in_service\": %d, \"queued\": %d, "
            "\"peak_in_service\": %d, \"peak_queued\": %d, \"queue_full\": %" PRIu64
            ", \"ok\": %" PRIu64 ", \"items\": %" PRIu64 "}",
            ep->batch ? "true" : "false", g.in_service, g.waiting, g.peak_in_service,
            g.peak_waiting, g.refused, SUM(ep_ok[m]), SUM(ep_items[m]));
    }
    evbuffer_add_printf(b, "}, \"queue_full\": %" PRIu64 ", \"threads\": [", refused);
    for (int i = 0; i < s->nworkers; i++) {
        uint64_t t = 0;
        for (int m = 0; m < N_MODELS; m++)
            t += READ(s->w[i]->c.requests[m]);
        evbuffer_add_printf(b, "%s%" PRIu64, i ? ", " : "", t);
    }
    evbuffer_add(b, "]", 1);
    return refused;
}

/* The dialect endpoints' counters, once one of them has had a request (so that the seed's
 * /stats stays exactly what it was): "dialects": {"kserve-v2": {"requests", "ok",
 * "rejected", "faults"}, ...}. */
static void add_dialects(mock_server *s, struct evbuffer *b)
{
    uint64_t any = 0;
    for (int d = 0; d < MOCK_N_DIALECTS; d++)
        any += SUM(d_requests[d]);
    if (!any)
        return;
    evbuffer_add(b, ", \"dialects\": {", 15);
    for (int d = 0; d < MOCK_N_DIALECTS; d++)
        evbuffer_add_printf(b, "%s\"%s\": {\"requests\": %" PRIu64 ", \"ok\": %" PRIu64
                            ", \"rejected\": %" PRIu64 ", \"faults\": %" PRIu64 "}", d ? ", " : "",
                            mock_dialect_name(d), SUM(d_requests[d]), SUM(d_ok[d]), SUM(d_rejected[d]),
                            SUM(d_faults[d]));
    evbuffer_add(b, "}", 1);
}

static void send_stats(worker *w, struct evhttp_request *req)
{
    mock_server *s = w->srv;
    uint64_t req_m[N_MODELS], total = 0;
    for (int i = 0; i < N_MODELS; i++)
        total += req_m[i] = SUM(requests[i]);
    evbuffer_add_printf(w->reply,
        "{\"requests\": {\"model_01\": %" PRIu64 ", \"model_02\": %" PRIu64 ", \"model_03\": %" PRIu64
        ", \"model_04\": %" PRIu64 ", \"model_05\": %" PRIu64 "}, \"ok\": %" PRIu64
        ", \"rejected\": %" PRIu64 ", \"faults\": {\"error\": %" PRIu64 ", \"429\": %" PRIu64
        ", \"reset\": %" PRIu64 ", \"hang\": %" PRIu64 ", \"garbage\": %" PRIu64 "}",
        req_m[0], req_m[1], req_m[2], req_m[3], req_m[4], SUM(ok), SUM(rejected),
        SUM(faults[MOCK_FAULT_ERROR]), SUM(faults[MOCK_FAULT_429]), SUM(faults[MOCK_FAULT_RESET]),
        SUM(faults[MOCK_FAULT_HANG]), SUM(faults[MOCK_FAULT_GARBAGE]));
    if (s->extended)
        add_extended(s, w->reply);
    add_dialects(s, w->reply);
    evbuffer_add_printf(w->reply, ", \"total\": %" PRIu64 "}", total);
    evhttp_send_reply(req, 200, "OK", w->reply);
}

static void reset_stats(mock_server *s)
{
    for (int i = 0; i < s->nworkers; i++) {
        struct counters *c = &s->w[i]->c;
        _Atomic uint64_t *all = (_Atomic uint64_t *)c;
        for (size_t k = 0; k < sizeof *c / sizeof *all; k++)
            atomic_store_explicit(&all[k], 0, memory_order_relaxed);
    }
    for (int m = 0; m < N_MODELS; m++) {
        struct gate_stats g;
        if (s->gate[m])
            gate_read(s->gate[m], &g, 1);
        atomic_store(&s->busy[m].peak, atomic_load(&s->busy[m].now));
    }
}

/* ---- answers ------------------------------------------------------------------------------ */

/* The body as one contiguous block: in place when evhttp holds it in one chunk (the usual
 * case once it is read), else copied into the reused body buffer. NULL when out of memory. */
static const char *body_of(worker *w, struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    if (*len == 0)
        return "";
    if (evbuffer_get_contiguous_space(in) >= *len)
        return (const char *)evbuffer_pullup(in, (ev_ssize_t)*len);
    if (mock_buf_reserve(&w->body, *len) != 0)
        return NULL;
    evbuffer_copyout(in, w->body.p, *len);
    return (const char *)w->body.p;
}

/* One result, printed onto dst; 0 or -1 when memory runs out. */
static int add_result(worker *w, struct evbuffer *dst, int m, const struct mock_payload *pl)
{
    cJSON *a = mock_answer_key(m, pl->key, pl->len);
    char *printed = NULL;
    const char *text = NULL;
    if (a && cJSON_PrintPreallocated(a, (char *)w->out.p, (int)w->out.cap, 0))
        text = (const char *)w->out.p;
    else if (a)
        text = printed = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    if (!text)
        return -1;
    evbuffer_add(dst, text, strlen(text));
    free(printed);
    return 0;
}

struct prepared {
    int code;
    const char *phrase;
    enum outcome outcome;
    size_t items;
};

static struct prepared rejected(struct evbuffer *dst, const char *why)
{
    error_body(dst, why);
    return (struct prepared){400, "Bad Request", OUT_REJECTED, 0};
}

static struct prepared oom(struct evbuffer *dst, const char *why)
{
    evbuffer_drain(dst, evbuffer_get_length(dst));
    error_body(dst, why);
    return (struct prepared){500, "Internal Server Error", OUT_ERROR, 0};
}

/* 1 when --reject-rate picks the image of key: the same images at every request, whatever the
 * order or the load (a splitmix64 of the key and the seed, compared with the rate). */
static int rejected_image(const struct mock_config *cfg, uint64_t key)
{
    if (cfg->reject_rate <= 0)
        return 0;
    uint64_t z = key ^ (cfg->seed * 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53 < cfg->reject_rate;
}

/* Checks the request to model m and writes the answer's body onto dst (empty on entry). */
static struct prepared prepare(worker *w, struct evhttp_request *req, int m, struct evbuffer *dst)
{
    const struct mock_endpoint *ep = &w->srv->cfg.ep[m - 1];
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
        return rejected(dst, "method must be POST");
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!mock_request_is_json(ct))
        return rejected(dst, "Content-Type must be application/json");
    size_t len;
    const char *body = body_of(w, req, &len);
    if (!body)
        return oom(dst, "out of memory reading the body");
    size_t max = (size_t)ep->batch_max;
    int rc = w->srv->cfg.trust_payload
                 ? mock_request_trusted(body, len, max, &w->batch, w->why)
                 : mock_request_check(m, body, len, max, &w->scratch, &w->batch, w->why);
    if (rc != 0)
        return rejected(dst, w->why);
    for (size_t i = 0; i < w->batch.n; i++)
        if (rejected_image(&w->srv->cfg, w->batch.item[i].key))
            return rejected(dst, "not an image this model can read (injected: --reject-rate)");
    int list = ep->batch || w->batch.n > 1;
    evbuffer_add(dst, list ? "{\"result\": [" : "{\"result\": ", list ? 12 : 11);
    for (size_t i = 0; i < w->batch.n; i++) {
        if (i)
            evbuffer_add(dst, ", ", 2);
        if (add_result(w, dst, m, &w->batch.item[i]) != 0)
            return oom(dst, "out of memory building the answer");
    }
    evbuffer_add(dst, list ? "]}" : "}", list ? 2 : 1);
    return (struct prepared){200, "OK", OUT_OK, w->batch.n};
}

static void send_prepared(worker *w, struct evhttp_request *req, int m, struct prepared pr,
                          struct evbuffer *body)
{
    if (pr.outcome == OUT_OK) {
        BUMP(w->c.ok, 1);
        BUMP(w->c.ep_ok[m - 1], 1);
        BUMP(w->c.ep_items[m - 1], pr.items);
    } else if (pr.outcome == OUT_REJECTED) {
        BUMP(w->c.rejected, 1);
    }
    evhttp_send_reply(req, pr.code, pr.phrase, body);
}

/* What a faulted request gets once its service time, if any, has passed. */
static void send_fault(worker *w, struct evhttp_request *req, int fault)
{
    switch (fault) {
    case MOCK_FAULT_ERROR:
        send_error(w, req, 500, "Internal Server Error", "injected fault: error");
        break;
    case MOCK_FAULT_429:
        add_retry_after(w, req);
        send_error(w, req, 429, "Too Many Requests", "injected fault: rate limited");
        break;
    case MOCK_FAULT_RESET:
        reset_connection(req);
        break;
    case MOCK_FAULT_GARBAGE:
        evbuffer_add_printf(w->reply, "<html>injected fault: garbage {\"result\": ");
        evhttp_send_reply(req, 200, "OK", w->reply);
        break;
    }
}

/* Answers at once, as the mock did before capacities: nothing waits. */
static void serve_now(worker *w, struct evhttp_request *req, int m, int fault)
{
    if (fault >= 0) {
        send_fault(w, req, fault);
        return;
    }
    struct prepared pr = prepare(w, req, m, w->reply);
    send_prepared(w, req, m, pr, w->reply);
}

/* ---- parked requests ---------------------------------------------------------------------- */

static void on_close(struct evhttp_connection *evcon, void *arg);

static struct pending *park(worker *w, struct evhttp_request *req, int m, int fault, int kind)
{
    struct pending *p = w->spare;
    if (p) {
        w->spare = p->next;
    } else if (!(p = calloc(1, sizeof *p))) {
        return NULL;
    }
    if (kind != PARK_HANG && !p->body && !(p->body = evbuffer_new())) {
        p->next = w->spare;
        w->spare = p;
        return NULL;
    }
    p->req = req;
    p->evcon = evhttp_request_get_connection(req);
    p->w = w;
    p->model = m;
    p->fault = fault;
    p->kind = kind;
    p->items = 1;
    p->outcome = OUT_ERROR;
    p->prev = NULL;
    p->next = w->live;
    if (w->live)
        w->live->prev = p;
    w->live = p;
    evhttp_connection_set_closecb(p->evcon, on_close, p);
    return p;
}

/* Back to the free list; on the owner's thread. */
static void unpark(struct pending *p)
{
    worker *w = p->w;
    if (event_initialized(&p->ev))
        event_del(&p->ev);
    if (p->evcon)
        evhttp_connection_set_closecb(p->evcon, NULL, NULL);
    p->req = NULL;
    p->evcon = NULL;
    if (p->body)
        evbuffer_drain(p->body, evbuffer_get_length(p->body));
    if (p->prev)
        p->prev->next = p->next;
    else
        w->live = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = w->spare;
    w->spare = p;
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct pending *p = arg;
    mock_server *s = p->w->srv;
    if (p->kind == PARK_GATED && !gate_cancel(s->gate[p->model - 1], &p->job)) {
        /* It holds a slot: the slot stays busy until its service time is over. */
        p->req = NULL;
        p->evcon = NULL;
        return;
    }
    if (p->kind == PARK_DELAY)
        busy_leave(&s->busy[p->model - 1]);
    unpark(p); /* libevent frees the request itself */
}

static void on_served(evutil_socket_t fd, short what, void *arg);

/* Starts p's service timer on its owner's base, for us microseconds. */
static void arm(struct pending *p, long us)
{
    struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
    if (event_initialized(&p->ev))
        event_del(&p->ev); /* the watch of its wait in the queue */
    if (evtimer_assign(&p->ev, p->w->base, on_served, p) != 0)
        return; /* cannot happen with a valid base; the request stays parked till shutdown */
    if (evtimer_add(&p->ev, &tv) != 0)
        event_active(&p->ev, EV_TIMEOUT, 1);
}

static void wake(worker *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->wake_fd, &one, sizeof one); /* fails only when the count would overflow */
    (void)r;
}

/* p was just given a slot by a request that ended on worker cur. */
static void start_service(worker *cur, struct pending *p)
{
    worker *owner = p->w;
    if (owner == cur) {
        arm(p, p->cost_us);
        return;
    }
    p->handed_us = now_us();
    pthread_mutex_lock(&owner->inbox_mu);
    p->inbox_next = NULL;
    if (owner->inbox_tail)
        owner->inbox_tail->inbox_next = p;
    else
        owner->inbox = p;
    owner->inbox_tail = p;
    pthread_mutex_unlock(&owner->inbox_mu);
    wake(owner);
}

/* p's service time is over (PARK_DELAY, PARK_GATED): answer, pass the slot on. */
static void send_dialect(worker *w, struct evhttp_request *req, int d, int code, enum outcome oc,
                         struct evbuffer *body);

static void on_served(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct pending *p = arg;
    worker *w = p->w;
    mock_server *s = w->srv;
    struct evhttp_request *req = p->req;
    if (p->evcon)
        evhttp_connection_set_closecb(p->evcon, NULL, NULL);
    p->req = NULL;
    p->evcon = NULL;
    if (p->kind == PARK_DIALECT) {
        if (req && p->fault == MOCK_FAULT_RESET)
            reset_connection(req);
        else if (req)
            send_dialect(w, req, p->model, p->code, p->outcome, p->body);
        unpark(p);
        return;
    }
    if (req && p->fault >= 0)
        send_fault(w, req, p->fault);
    else if (req)
        send_prepared(w, req, p->model,
                      (struct prepared){p->code, p->phrase, p->outcome, p->items}, p->body);
    if (p->kind == PARK_GATED) {
        struct gate_job *next = gate_leave(s->gate[p->model - 1], &p->job);
        if (next)
            start_service(w, (struct pending *)((char *)next - offsetof(struct pending, job)));
    } else {
        busy_leave(&s->busy[p->model - 1]);
    }
    unpark(p);
}

/* The eventfd: requests handed a slot by other workers, or the server stops. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
    pthread_mutex_lock(&w->inbox_mu);
    struct pending *p = w->inbox;
    w->inbox = w->inbox_tail = NULL;
    pthread_mutex_unlock(&w->inbox_mu);
    int64_t now = now_us();
    for (struct pending *next; p; p = next) {
        next = p->inbox_next;
        long left = p->cost_us - (long)(now - p->handed_us);
        arm(p, left > 0 ? left : 0);
    }
    if (atomic_load(&w->srv->stop))
        event_base_loopbreak(w->base);
}

/* The socket of a request waiting in a queue turned readable. The client closed it (EOF or
 * an error): free the connection, and on_close takes the request out of the queue (or, if it
 * was just handed a slot, lets the slot run out). Or it sent its next request early: stop
 * watching, it is answered in its turn. */
static void on_wait_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct pending *p = arg;
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (p->evcon && (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)))
        evhttp_connection_free(p->evcon);
}

/* While p waits for a slot, evhttp does not read its connection: watch the socket, as a hang
 * does, to notice a client that gives up. Nothing is lost when this fails: the request is
 * served in its turn and the answer goes nowhere. */
static void watch_wait(worker *w, struct pending *p)
{
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(p->evcon));
    if (fd >= 0 && event_assign(&p->ev, w->base, fd, EV_READ, on_wait_readable, p) == 0)
        event_add(&p->ev, NULL);
}

/* The socket of a hung request turned readable: the client closed it (or sent more, which it
 * will never get an answer to either). Either way the connection is done. */
static void on_hang_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct pending *p = arg;
    struct evhttp_connection *evcon = p->evcon;
    unpark(p);
    evhttp_connection_free(evcon);
}

static void hang(worker *w, struct evhttp_request *req, int m)
{
    struct pending *p = park(w, req, m, MOCK_FAULT_HANG, PARK_HANG);
    if (!p)
        return; /* out of memory: still never answered, freed when the server stops */
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(p->evcon));
    if (fd < 0 || event_assign(&p->ev, w->base, fd, EV_READ, on_hang_readable, p) != 0
        || event_add(&p->ev, NULL) != 0)
        unpark(p);
}

/* Checks the request and prepares its answer into p, and works out its service time. */
static void prepare_parked(worker *w, struct pending *p, long latency_us)
{
    const struct mock_endpoint *ep = &w->srv->cfg.ep[p->model - 1];
    if (p->fault < 0) {
        struct prepared pr = prepare(w, p->req, p->model, p->body);
        p->code = pr.code;
        p->phrase = pr.phrase;
        p->outcome = pr.outcome;
        p->items = pr.items;
    }
    /* A batch costs a + b x its images; anything not answered 200 costs as one image. */
    size_t items = p->fault < 0 && p->outcome == OUT_OK ? p->items : 1;
    p->cost_us = latency_us + (long)(ep->per_item_ms * 1000 * (double)items + 0.5);
}

/* A model request that is neither hung nor answered at once. */
static void serve_later(worker *w, struct evhttp_request *req, int m, int fault, long latency_us)
{
    mock_server *s = w->srv;
    struct gate *g = s->gate[m - 1];
    struct pending *p = park(w, req, m, fault, g ? PARK_GATED : PARK_DELAY);
    if (!p) { /* could not wait: answer now rather than never */
        if (fault >= 0)
            BUMP(w->c.faults[fault], 1);
        serve_now(w, req, m, fault);
        return;
    }
    if (!g) {
        if (fault >= 0)
            BUMP(w->c.faults[fault], 1);
        busy_enter(&s->busy[m - 1]);
        prepare_parked(w, p, latency_us);
        arm(p, p->cost_us);
        return;
    }
    /* The queue is checked first, before the request is: shedding load must be cheap. */
    enum gate_verdict v = gate_enter(g, &p->job);
    if (v == GATE_FULL) {
        unpark(p);
        char why[160];
        snprintf(why, sizeof why, "queue full: model_%02d serves %d at once and %d already wait "
                 "(--queue-max)", m, s->cfg.ep[m - 1].capacity, s->cfg.ep[m - 1].queue_max);
        add_retry_after(w, req);
        send_error(w, req, 503, "Service Unavailable", why);
        return;
    }
    if (fault >= 0)
        BUMP(w->c.faults[fault], 1);
    /* Nobody starts a waiting request before this callback returns: a slot handed to it by
     * another worker goes through this worker's inbox. */
    prepare_parked(w, p, latency_us);
    if (v == GATE_SERVE)
        arm(p, p->cost_us);
    else
        watch_wait(w, p);
}

/* ---- routing ------------------------------------------------------------------------------ */

/* "/model_0N" → N (1..5); anything else → 0. */
static int model_of(const char *path, size_t n)
{
    if (n != 9 || memcmp(path, "/model_0", 8) != 0 || path[8] < '1' || path[8] > '5')
        return 0;
    return path[8] - '0';
}

static void on_other(worker *w, struct evhttp_request *req, const char *uri, size_t n)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (n == 6 && !memcmp(uri, "/stats", 6) && cmd == EVHTTP_REQ_GET) {
        send_stats(w, req);
    } else if (n == 12 && !memcmp(uri, "/stats/reset", 12) && cmd == EVHTTP_REQ_POST) {
        reset_stats(w->srv);
        evbuffer_add(w->reply, "{\"reset\": true}", 15);
        evhttp_send_reply(req, 200, "OK", w->reply);
    } else if ((n == 6 && !memcmp(uri, "/stats", 6)) || (n == 12 && !memcmp(uri, "/stats/reset", 12))) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", n == 6 ? "GET" : "POST");
        send_error(w, req, 405, "Method Not Allowed",
                   n == 6 ? "use GET /stats" : "use POST /stats/reset");
    } else {
        send_error(w, req, 404, "Not Found",
                   "unknown path; the models are POST /model_01 .. /model_05");
    }
}

/* ---- dialects ----------------------------------------------------------------------------- */

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

#define TOKEN_MAX 4096

/* Checks a dialect request and writes its answer's body onto dst, its headers onto req; the
 * status and what it counts as into *code and *oc. The answer is built at once, as a model
 * endpoint's is, and sent after the service time. */
static void prepare_dialect(worker *w, struct evhttp_request *req, int d, const char *uri, size_t n,
                            int fault, struct evbuffer *dst, int *code, enum outcome *oc)
{
    const mock_server *s = w->srv;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *outh = evhttp_request_get_output_headers(req);
    char token[TOKEN_MAX];
    size_t len = 0;
    const char *body = body_of(w, req, &len);
    struct mock_dreq rq = {
        .dialect = d,
        .method = method_name(evhttp_request_get_command(req)),
        .path = uri,
        .path_len = n,
        .query = uri[n] == '?' ? uri + n + 1 : NULL,
        .content_type = evhttp_find_header(in, "Content-Type"),
        .authorization = evhttp_find_header(in, "Authorization"),
        .goog_api_key = evhttp_find_header(in, "X-Goog-Api-Key"),
        .body = (const unsigned char *)body,
        .len = len,
        .token = s->cfg.token,
        .fault = fault,
        .retry_after = s->cfg.retry_after,
    };
    if (rq.query)
        rq.query_len = strcspn(rq.query, "#");
    /* Re-read on every request, so that a test can rotate it while a client runs. */
    if (s->cfg.token_file) {
        rq.token = token;
        rq.token_unreadable = mock_token_read(s->cfg.token_file, token, sizeof token) != 0;
    }
    struct mock_dans ans;
    if (!body || mock_dialect_serve(&rq, &ans) != 0) {
        error_body(dst, "out of memory");
        *code = 500;
        *oc = OUT_ERROR;
        return;
    }
    evhttp_add_header(outh, "Content-Type", ans.content_type);
    if (ans.retry_after >= 0) {
        char ra[24];
        snprintf(ra, sizeof ra, "%d", ans.retry_after);
        evhttp_add_header(outh, "Retry-After", ra);
    }
    evbuffer_add(dst, ans.body, ans.len);
    free(ans.body);
    *code = ans.status;
    *oc = ans.outcome == MOCK_D_OK ? OUT_OK : ans.outcome == MOCK_D_REJECTED ? OUT_REJECTED : OUT_ERROR;
}

static void send_dialect(worker *w, struct evhttp_request *req, int d, int code, enum outcome oc,
                         struct evbuffer *body)
{
    if (oc == OUT_OK)
        BUMP(w->c.d_ok[d], 1);
    else if (oc == OUT_REJECTED)
        BUMP(w->c.d_rejected[d], 1);
    evhttp_send_reply(req, code, mock_http_phrase(code), body);
}

/* A request on a dialect's path. Faults are drawn as for the models, and latency is
 * --latency-ms's value for all endpoints; capacities and batches are the seed's only. */
static void on_dialect(worker *w, struct evhttp_request *req, int d, const char *uri, size_t n)
{
    mock_server *s = w->srv;
    BUMP(w->c.d_requests[d], 1);
    int fault = draw_fault(w);
    if (fault >= 0)
        BUMP(w->c.d_faults[d], 1);
    if (fault == MOCK_FAULT_HANG) {
        hang(w, req, 0); /* a hung request needs no model */
        return;
    }
    long us = draw_latency_us(w, service_ms(s, s->cfg.dialect_latency_ms, s->cfg.dialect_slowdown_ms));
    struct pending *p = us > 0 ? park(w, req, d, fault, PARK_DIALECT) : NULL;
    if (fault == MOCK_FAULT_RESET && !p) {
        reset_connection(req);
        return;
    }
    int code = 500;
    enum outcome oc = OUT_ERROR;
    struct evbuffer *dst = p ? p->body : w->reply;
    if (fault != MOCK_FAULT_RESET)
        prepare_dialect(w, req, d, uri, n, fault, dst, &code, &oc);
    if (!p) {
        send_dialect(w, req, d, code, oc, dst);
        return;
    }
    p->code = code;
    p->outcome = oc;
    arm(p, us);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    worker *w = arg;
    mock_server *s = w->srv;
    const char *uri = evhttp_request_get_uri(req);
    size_t n = strcspn(uri, "?#");
    int m = model_of(uri, n);
    int d = m ? -1 : mock_dialect_route(uri, n);
    if (d >= 0) {
        on_dialect(w, req, d, uri, n);
        return;
    }
    if (m == 0) {
        on_other(w, req, uri, n);
        return;
    }
    BUMP(w->c.requests[m - 1], 1);
    int fault = draw_fault(w);
    if (fault == MOCK_FAULT_HANG) {
        BUMP(w->c.faults[fault], 1);
        hang(w, req, m);
        return;
    }
    const struct mock_endpoint *ep = &s->cfg.ep[m - 1];
    long us = draw_latency_us(w, service_ms(s, ep->latency_ms, ep->slowdown_ms));
    if (us > 0 || ep->per_item_ms > 0 || s->gate[m - 1]) {
        serve_later(w, req, m, fault, us);
        return;
    }
    if (fault >= 0)
        BUMP(w->c.faults[fault], 1);
    if (s->extended)
        busy_enter(&s->busy[m - 1]);
    serve_now(w, req, m, fault);
    if (s->extended)
        busy_leave(&s->busy[m - 1]);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what;
    mock_server *s = arg;
    event_base_loopbreak(s->w[0]->base);
}

/* ---- life --------------------------------------------------------------------------------- */

/* Thousands of connections need thousands of descriptors; the soft limit is often 1024. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            rl.rlim_cur = 1 << 20; /* a hard limit of "unlimited" is refused above nr_open */
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
}

/* Binds w's listening socket on port (0: a free one, which is then s->port). */
static int bind_listener(worker *w, int port, char *err, size_t errlen)
{
    mock_server *s = w->srv;
    char ports[8];
    snprintf(ports, sizeof ports, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(s->cfg.host, ports, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve host '%s': %s", s->cfg.host, gai_strerror(rc));
        return -1;
    }
    /* SO_REUSEPORT only with several loops: alone, a second server on the port must fail. */
    unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    if (s->nworkers > 1)
        flags |= LEV_OPT_REUSEABLE_PORT;
    struct evconnlistener *lev = evconnlistener_new_bind(w->base, NULL, NULL, flags, BACKLOG,
                                                         ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!lev) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", s->cfg.host, port,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return -1;
    }
    if (!evhttp_bind_listener(w->http, lev)) {
        evconnlistener_free(lev);
        snprintf(err, errlen, "cannot serve HTTP on %s:%d", s->cfg.host, port);
        return -1;
    }
    /* Accepted sockets inherit TCP_NODELAY from the listener on Linux: answers go out at once
     * instead of waiting on Nagle for the client's delayed ACK. */
    int one = 1;
    setsockopt(evconnlistener_get_fd(lev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(err, errlen, "getsockname: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return -1;
    }
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static struct event_base *new_base(void)
{
    /* PRECISE_TIMER: injected latency fires on time (timerfd), not rounded up to the next
     * millisecond of epoll_wait, which would add ~1 ms to every answer under load. NOLOCK: a
     * base is only ever touched by its own thread; other threads reach it through its eventfd. */
    struct event_base *base = NULL;
    struct event_config *ec = event_config_new();
    if (ec) {
        event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER | EVENT_BASE_FLAG_NOLOCK);
        base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    return base ? base : event_base_new();
}

static worker *worker_new(mock_server *s, int index, char *err, size_t errlen)
{
    worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->srv = s;
    w->index = index;
    w->wake_fd = -1;
    /* Worker 0 draws exactly the streams the single-loop server always drew. */
    uint64_t seed = s->cfg.seed + (uint64_t)index * 0xD1B54A32D192ED03ULL;
    w->fault_rng = seed;
    w->latency_rng = seed ^ 0x6C8E9CF570932BD5ULL;
    if (pthread_mutex_init(&w->inbox_mu, NULL) != 0) {
        free(w);
        snprintf(err, errlen, "cannot make a mutex");
        return NULL;
    }
    w->inbox_ready = 1;
    if (!(w->base = new_base()) || !(w->http = evhttp_new(w->base))
        || !(w->reply = evbuffer_new()) || mock_buf_reserve(&w->out, OUT_PREALLOC) != 0
        || (w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0
        || !(w->wake = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w))
        || event_add(w->wake, NULL) != 0) {
        snprintf(err, errlen, "cannot set up the event loop (out of memory?)");
        return w; /* half built: the caller frees it with the server */
    }
    evhttp_set_max_body_size(w->http, MAX_BODY);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_default_content_type(w->http, "application/json");
    evhttp_set_gencb(w->http, on_request, w);
    err[0] = '\0';
    return w;
}

/* Everything but the pending requests, which go once every worker's connections are gone. */
static void worker_free_http(worker *w)
{
    if (w->http)
        evhttp_free(w->http); /* frees every connection; their close callbacks unpark */
    w->http = NULL;
}

static void worker_free(worker *w)
{
    if (!w)
        return;
    for (struct pending *p = w->live, *next; p; p = next) {
        next = p->next;
        if (event_initialized(&p->ev))
            event_del(&p->ev);
        if (p->body)
            evbuffer_free(p->body);
        free(p);
    }
    for (struct pending *p = w->spare, *next; p; p = next) {
        next = p->next;
        if (p->body)
            evbuffer_free(p->body);
        free(p);
    }
    if (w->wake)
        event_free(w->wake);
    if (w->wake_fd >= 0)
        close(w->wake_fd);
    if (w->reply)
        evbuffer_free(w->reply);
    mock_buf_release(&w->body);
    mock_buf_release(&w->scratch);
    mock_buf_release(&w->out);
    mock_batch_release(&w->batch);
    if (w->base)
        event_base_free(w->base);
    if (w->inbox_ready)
        pthread_mutex_destroy(&w->inbox_mu);
    free(w);
}

static int wants_extended(const struct mock_config *cfg)
{
    if (cfg->threads > 1)
        return 1;
    for (int m = 0; m < N_MODELS; m++) {
        const struct mock_endpoint *ep = &cfg->ep[m];
        if (ep->capacity > 0 || ep->queue_max >= 0 || ep->per_item_ms > 0 || ep->batch
            || ep->batch_max != 1)
            return 1;
    }
    return 0;
}

mock_server *mock_server_new(const struct mock_config *cfg, char *err, size_t errlen)
{
    mock_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->nworkers = cfg->threads < 1 ? 1 : cfg->threads > MAX_THREADS ? MAX_THREADS : cfg->threads;
    s->extended = wants_extended(cfg);
    for (int f = 0; f < MOCK_N_FAULTS; f++)
        s->any_fault |= cfg->rate[f] > 0;
    for (int m = 0; m < N_MODELS; m++) {
        if (cfg->ep[m].capacity <= 0)
            continue;
        if (gate_init(&s->gates[m], cfg->ep[m].capacity, cfg->ep[m].queue_max) != 0) {
            snprintf(err, errlen, "cannot make a mutex");
            goto fail;
        }
        s->gate[m] = &s->gates[m];
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    if (!(s->w = calloc((size_t)s->nworkers, sizeof *s->w))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (int i = 0; i < s->nworkers; i++) {
        err[0] = '\0';
        s->w[i] = worker_new(s, i, err, errlen);
        if (!s->w[i] || err[0])
            goto fail;
        if (bind_listener(s->w[i], i == 0 ? cfg->port : s->port, err, errlen) != 0)
            goto fail;
    }
    const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        if (!(s->sig[i] = evsignal_new(s->w[0]->base, sigs[i], on_signal, s))
            || event_add(s->sig[i], NULL) != 0) {
            snprintf(err, errlen, "cannot catch signal %d", sigs[i]);
            goto fail;
        }
    }
    return s;
fail:
    mock_server_free(s);
    return NULL;
}

int mock_server_port(const mock_server *s)
{
    return s->port;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    if (event_base_dispatch(w->base) < 0)
        atomic_store(&w->srv->loop_failed, 1);
    return NULL;
}

int mock_server_run(mock_server *s, char *err, size_t errlen)
{
    /* The other loops never see SIGINT nor SIGTERM: worker 0's signal events catch them. */
    int said = 0; /* a message is in err already */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 1; i < s->nworkers; i++) {
        if (pthread_create(&s->w[i]->thread, NULL, worker_main, s->w[i]) != 0) {
            snprintf(err, errlen, "cannot start thread %d of %d", i + 1, s->nworkers);
            said = 1;
            atomic_store(&s->loop_failed, 1);
            break;
        }
        s->w[i]->started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    int rc = 0;
    if (!atomic_load(&s->loop_failed) && event_base_dispatch(s->w[0]->base) < 0)
        rc = -1;
    atomic_store(&s->stop, 1);
    for (int i = 1; i < s->nworkers; i++) {
        if (!s->w[i]->started)
            continue;
        wake(s->w[i]);
        pthread_join(s->w[i]->thread, NULL);
        s->w[i]->started = 0;
    }
    if (rc != 0 || atomic_load(&s->loop_failed)) {
        if (!said)
            snprintf(err, errlen, "event loop failed");
        return -1;
    }
    return 0;
}

void mock_server_free(mock_server *s)
{
    if (!s)
        return;
    for (int i = 0; i < 2; i++)
        if (s->sig[i])
            event_free(s->sig[i]);
    /* Every connection of every worker first: their close callbacks take waiting requests out
     * of the gates, which are shared. */
    for (int i = 0; s->w && i < s->nworkers; i++)
        if (s->w[i])
            worker_free_http(s->w[i]);
    for (int i = 0; s->w && i < s->nworkers; i++)
        worker_free(s->w[i]);
    free(s->w);
    for (int m = 0; m < N_MODELS; m++)
        if (s->gate[m])
            gate_destroy(s->gate[m]);
    free(s);
}
