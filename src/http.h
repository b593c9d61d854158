/* http: the curl glue both drivers share (how a request is put on a handle, how its answer is
 * collected, how long to back off), and the blocking driver used by the serial, threads and
 * processes strategies: one reused easy handle per worker, so connections stay open. */
#ifndef ANNOTATE_HTTP_H
#define ANNOTATE_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include "chain.h"
#include "run.h"

struct http_buf {
    char *data;
    size_t len, cap;
};

/* A reusable easy handle with its buffers: one per blocking worker, one per request slot of the
 * curl-multi loop. Reusing it keeps its connection and its buffers. */
struct http_slot {
    CURL *h;
    struct http_buf resp;  /* the answer */
    struct http_buf body;  /* small bodies, assembled (see http_prepare) */
    char errbuf[CURL_ERROR_SIZE];
};

int http_slot_init(struct http_slot *s);
void http_slot_free(struct http_slot *s);

/* Puts one attempt of req on the slot's handle: URL, body, headers, timeouts, TLS settings; the
 * answer goes into slot->resp (emptied), errors into slot->errbuf. CURLOPT_PRIVATE is set to req.
 * A body up to HTTP_SMALL_BODY bytes is assembled in slot->body and handed to curl whole, so that
 * headers and body leave in one send(); a larger one is streamed from the image's base64 by a
 * read callback, never copied into a body first. */
#define HTTP_SMALL_BODY (60 * 1024)
void http_prepare(struct http_slot *slot, const struct run *run, struct chain_req *req);

/* Attempts allowed for a stage's requests: 1 + retries (the stage's override or --retries). */
int http_max_attempts(const struct run *run, int stage);

/* Backoff before retry number `attempt` (1 = first retry): exponential with full jitter, capped
 * by --backoff-max-ms, and at least the server's Retry-After (seconds; < 0 if none), which is
 * itself capped at max(--backoff-max-ms, 60 s). */
long http_backoff_ms(const struct config *cfg, int attempt, long retry_after_s, uint64_t *rng);

/* libcurl re-sends a request by itself when a reused connection turns out dead; this adds such
 * re-sends of the attempt just finished to req->attempts, so the count matches what servers saw. */
void http_count_resends(struct chain_req *req);

/* Seconds the server asked us to wait (Retry-After), or -1. */
long http_retry_after(CURL *h);

/* The blocking driver: one per worker (thread or process). */
struct http_worker;
struct http_worker *http_worker_new(const struct run *run);
/* Runs the whole chain for one item, a request at a time, with retries. w may be NULL (its
 * creation failed): the item then fails with that reason. */
void http_worker_query(struct http_worker *w, struct item *it);
void http_worker_free(struct http_worker *w);

uint64_t rng_next(uint64_t *s);

#endif
