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

/* Puts one attempt of req on handle h: URL, body (streamed from req, never copied whole),
 * headers, timeouts, TLS settings; the answer goes into resp (emptied), errors into errbuf
 * (CURL_ERROR_SIZE). CURLOPT_PRIVATE is set to req. */
void http_prepare(CURL *h, const struct run *run, struct chain_req *req, struct http_buf *resp,
                  char *errbuf);

/* Attempts allowed for a stage's requests: 1 + retries (the stage's override or --retries). */
int http_max_attempts(const struct run *run, int stage);

/* Backoff before retry number `attempt` (1 = first retry): exponential with full jitter, capped
 * by --backoff-max-ms, and at least the server's Retry-After (seconds; < 0 if none). */
long http_backoff_ms(const struct config *cfg, int attempt, long retry_after_s, uint64_t *rng);

/* Seconds the server asked us to wait (Retry-After), or -1. */
long http_retry_after(CURL *h);

/* The blocking driver: one per worker (thread or process). */
struct http_worker;
struct http_worker *http_worker_new(const struct run *run);
/* Runs the whole chain for one item, a request at a time, with retries. */
void http_worker_query(struct http_worker *w, struct item *it);
void http_worker_free(struct http_worker *w);

uint64_t rng_next(uint64_t *s);

#endif
