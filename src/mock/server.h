/* server: the mock model server's event loops (libevent evhttp), keep-alive, thousands of
 * connections; one loop by default, or one per thread on the same port (SO_REUSEPORT).
 *
 * POST /model_01 .. /model_05 answer {"result": mock_answer(...)}, or a list of results for a
 * batch; the seven dialect endpoints (dialects.h) answer as the servers they imitate; GET /stats
 * and POST /stats/reset expose and zero the counters. Injected latency is a
 * libevent timer per request, never a sleep; injected faults are drawn from a seeded PRNG so
 * that a run can be repeated. An endpoint may have a capacity (K requests served at once, the
 * others waiting in a FIFO that may be bounded: see gate.h), shared by all the threads. The
 * option parsing lives in main.c; this module takes a filled config. */
#ifndef ANNOTATE_MOCK_SERVER_H
#define ANNOTATE_MOCK_SERVER_H

#include <stddef.h>
#include <stdint.h>

enum mock_latency_dist {
    MOCK_LAT_FIXED = 0,
    MOCK_LAT_UNIFORM, /* uniform on [0, 2 * latency_ms] */
    MOCK_LAT_EXP,     /* exponential with mean latency_ms */
};

/* The faults, in the order a request's single draw is tested against their rates: when the
 * rates add up to more than 1, the earlier ones win. */
enum mock_fault {
    MOCK_FAULT_ERROR = 0, /* 500 */
    MOCK_FAULT_429,       /* 429 with Retry-After */
    MOCK_FAULT_RESET,     /* connection closed (RST), no answer */
    MOCK_FAULT_HANG,      /* never answered */
    MOCK_FAULT_GARBAGE,   /* 200 with a body that is not JSON */
    MOCK_N_FAULTS,
};

#define MOCK_N_MODELS 5

/* What one model endpoint is like. A request's service time is latency_ms + slowdown_ms x the
 * seconds since the server's first request (drawn as latency_dist says) + per_item_ms x the
 * images it holds. */
struct mock_endpoint {
    double latency_ms;       /* 0: answer at once */
    double slowdown_ms;      /* a server that slows with time, not with load; 0 by default */
    double per_item_ms;      /* 0 by default */
    int capacity;            /* requests served at once; 0: no limit (the default) */
    int queue_max;           /* requests that may wait for a slot; -1: no bound (the default) */
    int batch_max;           /* images per request; 0: no limit. Default 1, or 0 with batch */
    int batch;               /* a batch endpoint: always answers a list, one-image requests too */
};

struct mock_config {
    const char *host;        /* default "127.0.0.1"; borrowed for the server's life */
    int port;                /* 0 picks a free port */
    int threads;             /* event loops, each on its own thread; default 1 */
    struct mock_endpoint ep[MOCK_N_MODELS]; /* model_01 .. model_05 */
    enum mock_latency_dist latency_dist;
    uint64_t seed;
    double rate[MOCK_N_FAULTS]; /* fractions 0..1, indexed by enum mock_fault */
    int retry_after;         /* seconds, the Retry-After of 429s and of 503s (queue full) */
    int trust_payload;       /* benchmark mode: scan for im_str, do not parse nor decode */
    double reject_rate;      /* fraction of images answered 400 on every request that carries them
                              * (drawn from the image's key, not per request): a corrupt file */
    /* The dialect endpoints (dialects.h): their service time, and the token the OpenAI and
     * Google Vision endpoints require: token, or token_file's content re-read on every
     * request (one trailing newline removed); neither: any token, as long as there is one. */
    double dialect_latency_ms, dialect_slowdown_ms;
    const char *token;       /* borrowed for the server's life */
    const char *token_file;  /* borrowed for the server's life */
};

/* The defaults documented in --help. */
void mock_config_default(struct mock_config *cfg);

typedef struct mock_server mock_server;

/* Binds the listening socket and sets everything up; NULL with a message in err on failure.
 * SIGINT and SIGTERM are taken over (they stop mock_server_run); SIGPIPE is ignored. */
mock_server *mock_server_new(const struct mock_config *cfg, char *err, size_t errlen);

/* The port actually bound (the free port picked when cfg->port was 0). */
int mock_server_port(const mock_server *s);

/* Serves until SIGINT or SIGTERM, on the calling thread and cfg->threads - 1 more; 0, or -1
 * with a message in err. */
int mock_server_run(mock_server *s, char *err, size_t errlen);

/* Closes every connection (hung and delayed requests included) and frees it all;
 * NULL is a no-op. */
void mock_server_free(mock_server *s);

#endif
