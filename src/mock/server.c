/* server: the mock model server's event loop (see server.h).
 *
 * One libevent base, one evhttp. A request is answered in its callback unless it is delayed
 * (--latency-ms: a timer) or hung (--hang-rate: never answered). Those two keep the request
 * past the callback, and libevent frees a request when its connection goes, so each parked
 * request has a `struct pending` registered as its connection's close callback: whichever
 * comes first, the timer or the close, unhooks the other. evhttp reads nothing more from a
 * connection while a request waits for its answer, so a client that gives up on a hung request
 * would go unnoticed; the hang watches the socket itself and frees the connection when the
 * client closes it.
 *
 * The hot path reuses what it can: one reply evbuffer (evhttp_send_reply moves its contents
 * out), a body buffer for bodies that arrive in several chunks, a decode buffer and a print
 * buffer, and a free list of `struct pending`. */
#include "mock/server.h"

#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h> /* struct event inside struct pending: no allocation per park */
#include <event2/http.h>
#include <event2/listener.h>

#include "mock/answers.h"
#include "mock/request.h"

#define MAX_BODY ((ev_ssize_t)256 << 20)
#define BACKLOG 4096         /* a benchmark opens its connections all at once; 128 drops SYNs */
#define OUT_PREALLOC 16384   /* the largest answer (model_04, 3 sub-images) is about 1.1 KB */
#define N_MODELS 5

struct pending {
    struct event ev;                /* the latency timer, or the hang's watch on the socket */
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    mock_server *srv;
    int model;
    int fault;                      /* enum mock_fault, or -1 */
    struct pending *prev, *next;    /* in srv->live; next alone in srv->spare */
};

struct counters {
    uint64_t requests[N_MODELS];
    uint64_t ok, rejected;
    uint64_t faults[MOCK_N_FAULTS];
};

struct mock_server {
    struct mock_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct event *sig[2];
    int port;
    int any_fault;
    uint64_t fault_rng, latency_rng; /* two streams: latency settings do not shift the faults */
    struct evbuffer *reply;
    struct mock_buf body, scratch, out;
    struct pending *live, *spare;
    struct counters c;
};

void mock_config_default(struct mock_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->latency_dist = MOCK_LAT_FIXED;
    cfg->seed = 1;
    cfg->retry_after = 1;
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
static int draw_fault(mock_server *s)
{
    if (!s->any_fault)
        return -1;
    double u = next_unit(&s->fault_rng), acc = 0;
    for (int f = 0; f < MOCK_N_FAULTS; f++) {
        acc += s->cfg.rate[f];
        if (u < acc)
            return f;
    }
    return -1;
}

static long draw_latency_us(mock_server *s)
{
    double ms = s->cfg.latency_ms;
    if (ms <= 0)
        return 0;
    if (s->cfg.latency_dist == MOCK_LAT_UNIFORM)
        ms *= 2 * next_unit(&s->latency_rng);
    else if (s->cfg.latency_dist == MOCK_LAT_EXP)
        ms *= -log1p(-next_unit(&s->latency_rng));
    return (long)(ms * 1000 + 0.5);
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

static void send_error(mock_server *s, struct evhttp_request *req, int code, const char *phrase,
                       const char *why)
{
    evbuffer_add(s->reply, "{\"error\": ", 10);
    add_json_string(s->reply, why);
    evbuffer_add(s->reply, "}", 1);
    evhttp_send_reply(req, code, phrase, s->reply);
}

static void reject(mock_server *s, struct evhttp_request *req, const char *why)
{
    s->c.rejected++;
    send_error(s, req, 400, "Bad Request", why);
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

static void send_stats(mock_server *s, struct evhttp_request *req)
{
    const struct counters *c = &s->c;
    uint64_t total = 0;
    for (int i = 0; i < N_MODELS; i++)
        total += c->requests[i];
    evbuffer_add_printf(s->reply,
        "{\"requests\": {\"model_01\": %" PRIu64 ", \"model_02\": %" PRIu64 ", \"model_03\": %" PRIu64
        ", \"model_04\": %" PRIu64 ", \"model_05\": %" PRIu64 "}, \"ok\": %" PRIu64
        ", \"rejected\": %" PRIu64 ", \"faults\": {\"error\": %" PRIu64 ", \"429\": %" PRIu64
        ", \"reset\": %" PRIu64 ", \"hang\": %" PRIu64 ", \"garbage\": %" PRIu64 "}, \"total\": %"
        PRIu64 "}",
        c->requests[0], c->requests[1], c->requests[2], c->requests[3], c->requests[4], c->ok,
        c->rejected, c->faults[MOCK_FAULT_ERROR], c->faults[MOCK_FAULT_429],
        c->faults[MOCK_FAULT_RESET], c->faults[MOCK_FAULT_HANG], c->faults[MOCK_FAULT_GARBAGE],
        total);
    evhttp_send_reply(req, 200, "OK", s->reply);
}

/* The body as one contiguous block: in place when evhttp holds it in one chunk (the usual
 * case once it is read), else copied into the reused body buffer. NULL when out of memory. */
static const char *body_of(mock_server *s, struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    if (*len == 0)
        return "";
    if (evbuffer_get_contiguous_space(in) >= *len)
        return (const char *)evbuffer_pullup(in, (ev_ssize_t)*len);
    if (mock_buf_reserve(&s->body, *len) != 0)
        return NULL;
    evbuffer_copyout(in, s->body.p, *len);
    return (const char *)s->body.p;
}

static void answer(mock_server *s, struct evhttp_request *req, int m)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        reject(s, req, "method must be POST");
        return;
    }
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!mock_request_is_json(ct)) {
        reject(s, req, "Content-Type must be application/json");
        return;
    }
    size_t len;
    const char *body = body_of(s, req, &len);
    if (!body) {
        send_error(s, req, 500, "Internal Server Error", "out of memory reading the body");
        return;
    }
    struct mock_payload pl;
    const char *why = s->cfg.trust_payload ? mock_request_trusted(body, len, &pl)
                                           : mock_request_check(m, body, len, &s->scratch, &pl);
    if (why) {
        reject(s, req, why);
        return;
    }
    cJSON *a = mock_answer_key(m, pl.key, pl.len);
    char *printed = NULL;
    const char *text = NULL;
    if (a && cJSON_PrintPreallocated(a, (char *)s->out.p, (int)s->out.cap, 0))
        text = (const char *)s->out.p;
    else if (a)
        text = printed = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    if (!text) {
        send_error(s, req, 500, "Internal Server Error", "out of memory building the answer");
        return;
    }
    s->c.ok++;
    evbuffer_add(s->reply, "{\"result\": ", 11);
    evbuffer_add(s->reply, text, strlen(text));
    evbuffer_add(s->reply, "}", 1);
    free(printed);
    evhttp_send_reply(req, 200, "OK", s->reply);
}

/* What the request gets once its latency, if any, has passed. */
static void serve(mock_server *s, struct evhttp_request *req, int m, int fault)
{
    char retry[24];
    switch (fault) {
    case MOCK_FAULT_ERROR:
        send_error(s, req, 500, "Internal Server Error", "injected fault: error");
        break;
    case MOCK_FAULT_429:
        snprintf(retry, sizeof retry, "%d", s->cfg.retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", retry);
        send_error(s, req, 429, "Too Many Requests", "injected fault: rate limited");
        break;
    case MOCK_FAULT_RESET:
        reset_connection(req);
        break;
    case MOCK_FAULT_GARBAGE:
        evbuffer_add_printf(s->reply, "<html>injected fault: garbage {\"result\": ");
        evhttp_send_reply(req, 200, "OK", s->reply);
        break;
    default:
        answer(s, req, m);
    }
}

/* ---- parked requests ---------------------------------------------------------------------- */

static void on_close(struct evhttp_connection *evcon, void *arg);

static struct pending *park(mock_server *s, struct evhttp_request *req, int m, int fault)
{
    struct pending *p = s->spare;
    if (p)
        s->spare = p->next;
    else if (!(p = calloc(1, sizeof *p)))
        return NULL;
    p->req = req;
    p->evcon = evhttp_request_get_connection(req);
    p->srv = s;
    p->model = m;
    p->fault = fault;
    p->prev = NULL;
    p->next = s->live;
    if (s->live)
        s->live->prev = p;
    s->live = p;
    evhttp_connection_set_closecb(p->evcon, on_close, p);
    return p;
}

static void unpark(struct pending *p)
{
    mock_server *s = p->srv;
    if (event_initialized(&p->ev))
        event_del(&p->ev);
    evhttp_connection_set_closecb(p->evcon, NULL, NULL);
    if (p->prev)
        p->prev->next = p->next;
    else
        s->live = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = s->spare;
    s->spare = p;
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    unpark(arg); /* libevent frees the request itself */
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct pending *p = arg;
    mock_server *s = p->srv;
    struct evhttp_request *req = p->req;
    int m = p->model, fault = p->fault;
    unpark(p);
    serve(s, req, m, fault);
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

static void hang(mock_server *s, struct evhttp_request *req, int m)
{
    struct pending *p = park(s, req, m, MOCK_FAULT_HANG);
    if (!p)
        return; /* out of memory: still never answered, freed when the server stops */
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(p->evcon));
    if (fd < 0 || event_assign(&p->ev, s->base, fd, EV_READ, on_hang_readable, p) != 0
        || event_add(&p->ev, NULL) != 0)
        unpark(p);
}

static void delay(mock_server *s, struct evhttp_request *req, int m, int fault, long us)
{
    struct pending *p = park(s, req, m, fault);
    struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
    if (p && evtimer_assign(&p->ev, s->base, on_delay, p) == 0 && evtimer_add(&p->ev, &tv) == 0)
        return;
    if (p)
        unpark(p);
    serve(s, req, m, fault); /* could not wait: answer now rather than never */
}

/* ---- routing ------------------------------------------------------------------------------ */

/* "/model_0N" → N (1..5); anything else → 0. */
static int model_of(const char *path, size_t n)
{
    if (n != 9 || memcmp(path, "/model_0", 8) != 0 || path[8] < '1' || path[8] > '5')
        return 0;
    return path[8] - '0';
}

static void on_request(struct evhttp_request *req, void *arg)
{
    mock_server *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    size_t n = strcspn(uri, "?#");
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int m = model_of(uri, n);
    if (m == 0) {
        if (n == 6 && !memcmp(uri, "/stats", 6) && cmd == EVHTTP_REQ_GET) {
            send_stats(s, req);
        } else if (n == 12 && !memcmp(uri, "/stats/reset", 12) && cmd == EVHTTP_REQ_POST) {
            memset(&s->c, 0, sizeof s->c);
            evbuffer_add(s->reply, "{\"reset\": true}", 15);
            evhttp_send_reply(req, 200, "OK", s->reply);
        } else if ((n == 6 && !memcmp(uri, "/stats", 6)) || (n == 12 && !memcmp(uri, "/stats/reset", 12))) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", n == 6 ? "GET" : "POST");
            send_error(s, req, 405, "Method Not Allowed",
                       n == 6 ? "use GET /stats" : "use POST /stats/reset");
        } else {
            send_error(s, req, 404, "Not Found",
                       "unknown path; the models are POST /model_01 .. /model_05");
        }
        return;
    }
    s->c.requests[m - 1]++;
    int fault = draw_fault(s);
    if (fault >= 0)
        s->c.faults[fault]++;
    if (fault == MOCK_FAULT_HANG) {
        hang(s, req, m);
        return;
    }
    long us = draw_latency_us(s);
    if (us > 0)
        delay(s, req, m, fault, us);
    else
        serve(s, req, m, fault);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what;
    mock_server *s = arg;
    event_base_loopbreak(s->base);
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

static int bind_listener(mock_server *s, char *err, size_t errlen)
{
    char port[8];
    snprintf(port, sizeof port, "%d", s->cfg.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(s->cfg.host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve host '%s': %s", s->cfg.host, gai_strerror(rc));
        return -1;
    }
    struct evconnlistener *lev = evconnlistener_new_bind(
        s->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        BACKLOG, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (!lev) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", s->cfg.host, s->cfg.port,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        return -1;
    }
    if (!evhttp_bind_listener(s->http, lev)) {
        evconnlistener_free(lev);
        snprintf(err, errlen, "cannot serve HTTP on %s:%d", s->cfg.host, s->cfg.port);
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

mock_server *mock_server_new(const struct mock_config *cfg, char *err, size_t errlen)
{
    mock_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->fault_rng = cfg->seed;
    s->latency_rng = cfg->seed ^ 0x6C8E9CF570932BD5ULL;
    for (int f = 0; f < MOCK_N_FAULTS; f++)
        s->any_fault |= cfg->rate[f] > 0;
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    /* PRECISE_TIMER: injected latency fires on time (timerfd), not rounded up to the next
     * millisecond of epoll_wait, which would add ~1 ms to every answer under load. */
    struct event_config *ec = event_config_new();
    if (ec)
        event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    s->base = ec ? event_base_new_with_config(ec) : NULL;
    if (ec)
        event_config_free(ec);
    if (!s->base)
        s->base = event_base_new();
    if (!s->base || !(s->http = evhttp_new(s->base))
        || !(s->reply = evbuffer_new()) || mock_buf_reserve(&s->out, OUT_PREALLOC) != 0) {
        snprintf(err, errlen, "cannot set up the event loop (out of memory?)");
        goto fail;
    }
    evhttp_set_max_body_size(s->http, MAX_BODY);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_default_content_type(s->http, "application/json");
    evhttp_set_gencb(s->http, on_request, s);
    if (bind_listener(s, err, errlen) != 0)
        goto fail;
    const int sigs[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        if (!(s->sig[i] = evsignal_new(s->base, sigs[i], on_signal, s)) || event_add(s->sig[i], NULL) != 0) {
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

int mock_server_run(mock_server *s, char *err, size_t errlen)
{
    if (event_base_dispatch(s->base) < 0) {
        snprintf(err, errlen, "event loop failed");
        return -1;
    }
    return 0;
}

void mock_server_free(mock_server *s)
{
    if (!s)
        return;
    /* Frees every connection; each parked request's close callback unparks it. */
    if (s->http)
        evhttp_free(s->http);
    /* None expected; their connections are gone, so only the events are left to drop. */
    for (struct pending *p = s->live, *next; p; p = next) {
        next = p->next;
        if (event_initialized(&p->ev))
            event_del(&p->ev);
        free(p);
    }
    for (struct pending *p = s->spare, *next; p; p = next) {
        next = p->next;
        free(p);
    }
    for (int i = 0; i < 2; i++)
        if (s->sig[i])
            event_free(s->sig[i]);
    if (s->reply)
        evbuffer_free(s->reply);
    mock_buf_release(&s->body);
    mock_buf_release(&s->scratch);
    mock_buf_release(&s->out);
    if (s->base)
        event_base_free(s->base);
    free(s);
}
