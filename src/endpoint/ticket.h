/* ticket: the endpoint's vocabulary (endpoint.h), shared by the endpoint's parts (replicas,
 * breakers) and the chain: what one attempt's end says, and a request's standing with its
 * stage's endpoint. */
#ifndef ANNOTATE_TICKET_H
#define ANNOTATE_TICKET_H

#include <stdint.h>

/* What one attempt's end says, as the chain read it (chain_read_answer): one kind per answer,
 * which retries, breakers, replicas and limits all read. */
enum answer_kind {
    ANSWER_OK = 0,    /* the stage's result came */
    ANSWER_RETRY = 1, /* worth another attempt, and says nothing of the server's health or
                       * capacity: a garbled answer, "retry_if", 408, 501, 505, a name that did
                       * not resolve, an HTTP/2 stream error */
    ANSWER_BUSY = 2,  /* over capacity: 429, 503, a timeout */
    ANSWER_DOWN = 3,  /* no service: refused, reset, no answer, 500, 502, 504 */
    ANSWER_SETUP = 4, /* final, and says the stage is not set up for us whatever the image: 401,
                       * 403, 404, 405, Google's API_KEY_INVALID, a certificate that does not
                       * verify */
    ANSWER_FINAL = 5  /* final for this image: another 4xx, an "error" the answer names, an answer
                       * over --max-answer-bytes, a local error */
};

/* 1 for the kinds another attempt may mend (RETRY, BUSY, DOWN). */
static inline int answer_retryable(enum answer_kind k)
{
    return k == ANSWER_RETRY || k == ANSWER_BUSY || k == ANSWER_DOWN;
}

/* How one attempt ended. */
struct attempt_report {
    enum answer_kind kind;
    int cc;          /* curl's code: 0 (CURLE_OK) when an HTTP answer came */
    long status;     /* the HTTP status, 0 when no answer came */
    const char *why; /* the chain's reason (never a header value), for a set-up error's message */
};

/* A request's standing with its stage's endpoint. The chain makes it with the request
 * (ticket_init); admit, done and cancel keep it. A batch has one ticket for all its members. */
struct ticket {
    int stage;
    uint64_t id;          /* which request: the outage breaker counts distinct requests */
    uint64_t rng;         /* ties between replicas */
    unsigned char tokens; /* rate tokens taken for this attempt: 0, 1 (the stage's), 2 (both) */
    unsigned char slot;   /* holds a slot of its stage's concurrency */
    unsigned char on_replica; /* counted as outstanding at replica */
    unsigned char on_wire;    /* counted among its stage's attempts on the wire */
    unsigned char reauth; /* a 401 has made the stage's header files be read again for it */
    unsigned char cred_wait; /* a 401 came with those files unchanged: the next attempt waits for
                              * them to change (see endpoint_admit) */
    unsigned char setup_counted; /* its set-up answer has been counted by the set-up breaker */
    int replica;          /* the stage's URL this attempt goes to (0 without replicas) */
    int failed_replica;   /* the one the last attempt failed on (replicas.h), or -1: a retry
                           * goes elsewhere when it can */
    unsigned header_gen;  /* the generation of the stage's headers the attempt was sent with */
    double t_sent;        /* when the admitted attempt went */
};

static inline void ticket_init(struct ticket *t, int stage, uint64_t id, uint64_t rng)
{
    *t = (struct ticket){.stage = stage, .id = id, .rng = rng, .failed_replica = -1};
}

#endif
