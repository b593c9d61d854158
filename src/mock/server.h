/* server: the mock model server's event loop (libevent evhttp), one thread, keep-alive,
 * thousands of connections.
 *
 * POST /model_01 .. /model_05 answer {"result": mock_answer(...)}; GET /stats and
 * POST /stats/reset expose and zero the counters. Injected latency is a libevent timer per
 * request, never a sleep; injected faults are drawn from a seeded PRNG so that a run can be
 * repeated. The option parsing lives in main.c; this module takes a filled config. */
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

struct mock_config {
    const char *host;        /* default "127.0.0.1"; borrowed for the server's life */
    int port;                /* 0 picks a free port */
    double latency_ms;       /* 0: answer at once */
    enum mock_latency_dist latency_dist;
    uint64_t seed;
    double rate[MOCK_N_FAULTS]; /* fractions 0..1, indexed by enum mock_fault */
    int retry_after;         /* seconds, the 429's Retry-After value */
    int trust_payload;       /* benchmark mode: scan for im_str, do not parse nor decode */
};

/* The defaults documented in --help. */
void mock_config_default(struct mock_config *cfg);

typedef struct mock_server mock_server;

/* Binds the listening socket and sets everything up; NULL with a message in err on failure.
 * SIGINT and SIGTERM are taken over (they stop mock_server_run); SIGPIPE is ignored. */
mock_server *mock_server_new(const struct mock_config *cfg, char *err, size_t errlen);

/* The port actually bound (the free port picked when cfg->port was 0). */
int mock_server_port(const mock_server *s);

/* Serves until SIGINT or SIGTERM; 0, or -1 with a message in err. */
int mock_server_run(mock_server *s, char *err, size_t errlen);

/* Closes every connection (hung and delayed requests included) and frees it all;
 * NULL is a no-op. */
void mock_server_free(mock_server *s);

#endif
