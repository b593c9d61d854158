/* fetch: an image's bytes from an S3 object (GetObject with the run's client of its bucket) or an
 * http(s) URL (a plain GET), for the load stage (load.h). A fetch is attempts on an easy handle
 * the caller owns: fetch_prepare puts an attempt on it, the caller runs the transfer
 * (curl_easy_perform in a blocking worker, or under curl-multi), and fetch_finish says what its
 * end means. So the blocking load job (fetch_blocking) and the curl-multi loader make the same
 * decisions, in one place.
 *
 * What callers may rely on:
 *
 *  - The item's path says where: "s3://BUCKET/KEY" (the key as it is, not %-decoded) for
 *    ITEM_S3, the URL for ITEM_HTTP. At most --max-image-bytes are taken (a larger object fails
 *    the image, before its first byte when the server sends Content-Length); --timeout-ms and
 *    --connect-timeout-ms bound each attempt.
 *
 *  - What an end means, as for a model server's answer (chain.h): the bytes (DONE); a fault that
 *    passes (S3's 503 SlowDown and other throttling, 5xx, 429, 408, a refused or reset
 *    connection, a timeout) is retried after the run's backoff (--backoff-ms, doubling up to
 *    --backoff-max-ms, full jitter, at least Retry-After), up to --retries; and beyond them for as
 *    long as the store counts as down (OUTAGE_FETCHES such faults in a row, with no success in
 *    between) and --outage-timeout has not run out: an outage costs time, not rows. An object
 *    that is not there (S3 NoSuchKey, HTTP 404 or 410: deleted since it was listed) or that is
 *    refused for itself fails its image, with S3's Code and Message or the HTTP status.
 *
 *  - A set-up error stops the run (exit 2, the message in the shared page's fatal_msg, naming
 *    S3's Code): credentials S3 refuses whatever the object (InvalidAccessKeyId,
 *    SignatureDoesNotMatch, ExpiredToken, InvalidToken, RequestTimeTooSkewed), at once; other
 *    set-up refusals (AccessDenied, NoSuchBucket, a wrong region) when SETUP_FETCHES of them
 *    come before any fetch from S3 succeeded. Those images get no row (--resume runs them once
 *    the set-up is mended); after a success, such a refusal is about its object and fails it.
 *    An s3:// image in a run whose S3 configuration could not be read stops it the same way.
 *
 *  - http(s) image URLs get no header and no TLS setting of the model servers unless
 *    --image-auth is given (sources.h); S3 requests carry only their signature. A redirect is
 *    followed (at most 5, http and https only); libcurl sends no custom Authorization to
 *    another host. AWS_CA_BUNDLE, as the AWS CLI reads it, verifies S3 endpoints.
 *
 *  - No message holds a secret (s3.h). */
#ifndef ANNOTATE_FETCH_H
#define ANNOTATE_FETCH_H

#include <stddef.h>
#include <curl/curl.h>

#include "flow/item.h"
#include "run.h"
#include "sources/s3.h"

#define OUTAGE_FETCHES 3
#define SETUP_FETCHES 3

/* One worker's fetch state: zero it before its first use; fetch_free at the end. */
struct fetch {
    struct s3_req s3;     /* an S3 attempt's request */
    struct s3_buf buf;    /* the body of an attempt: the image's bytes */
    char errbuf[CURL_ERROR_SIZE];
    CURL *easy;           /* the handle an http attempt was prepared on */
    long status;          /* an http attempt's status, once its headers have come */
    int too_large, no_memory;
    int attempts;         /* of the item being fetched */
    uint64_t rng;         /* backoff jitter */
};

enum fetch_step { FETCH_DONE, FETCH_RETRY, FETCH_FAIL };

/* A new item's fetch begins (its attempts count from 0). */
void fetch_begin(struct fetch *f, const struct item *it);

/* Puts the item's next attempt on h. 0, or -1 when it cannot be made: the item is failed (a bad
 * s3:// path), or has no row and the run stops (S3 not configured). */
int fetch_prepare(struct fetch *f, const struct run *run, struct item *it, CURL *h);

/* How the attempt on h ended (cc: curl_easy_perform's code, or the multi's message), at time now:
 * DONE (the bytes: fetch_take), RETRY at *retry_at, or FAIL (the item is failed, or has no row
 * when the run stops). h is reset (curl_easy_reset): nothing of the attempt stays on it. Under
 * curl-multi, remove h from the multi handle first. */
enum fetch_step fetch_finish(struct fetch *f, const struct run *run, struct item *it, CURL *h, CURLcode cc,
                             double now, double *retry_at);

/* The bytes of a DONE fetch (malloc'd, *len of them; the caller frees); the buffer starts afresh. */
unsigned char *fetch_take(struct fetch *f, size_t *len);

/* A whole fetch in the calling thread: attempts on h, sleeping between them (saying it is alive
 * about every second), until DONE or FAIL. The bytes, or NULL with the item failed (or without a
 * row: a stopping run, a set-up error). */
unsigned char *fetch_blocking(struct fetch *f, const struct run *run, struct item *it, CURL *h, size_t *len);

void fetch_free(struct fetch *f);

#endif
