/* fetch: see fetch.h. */
#include "sources/fetch.h"
#include "version.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chain/chain.h"
#include "common/rng.h"
#include "endpoint/shared.h"
#include "sources/sources.h"

/* ---- what a store's answers say about it (sources.h's fetch_health) ---- */

static void health_ok(struct fetch_health *h)
{
    if (!atomic_load_explicit(&h->answered, memory_order_relaxed))
        atomic_store(&h->answered, 1);
    if (atomic_load_explicit(&h->fails_in_row, memory_order_relaxed))
        atomic_store(&h->fails_in_row, 0);
    if (atomic_load_explicit(&h->down_since_ms, memory_order_relaxed))
        atomic_store(&h->down_since_ms, 0);
}

/* A fault of the passing kind; 1 while the store counts as down within --outage-timeout. */
static int health_fault(struct fetch_health *h, const struct config *cfg, double now)
{
    int64_t now_ms = (int64_t)(now * 1000), zero = 0;
    if (atomic_fetch_add(&h->fails_in_row, 1) + 1 >= OUTAGE_FETCHES)
        atomic_compare_exchange_strong(&h->down_since_ms, &zero, now_ms ? now_ms : 1);
    int64_t since = atomic_load(&h->down_since_ms);
    return since && cfg->outage_timeout_s > 0 && now_ms - since < cfg->outage_timeout_s * 1000;
}

/* Records why the run must stop (the first reason wins) and stops it. */
static void stop_run(const struct run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void stop_run(const struct run *run, const char *fmt, ...)
{
    struct shared_page *sh = run->shared;
    int expect = 0;
    if (atomic_compare_exchange_strong(&sh->fatal_claim, &expect, 1)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sh->fatal_msg, sizeof sh->fatal_msg, fmt, ap);
        va_end(ap);
        atomic_store(&sh->fatal, 1);
    }
    run_abort(run);
}

/* ---- the item's location ---- */

/* "s3://BUCKET/KEY": the bucket and the key (not empty). 0, or -1. */
static int split_s3(const struct item *it, const char **bucket, size_t *blen, const char **key, size_t *klen)
{
    if (it->path_len < 5 || memcmp(it->path, "s3://", 5))
        return -1;
    const char *b = it->path + 5, *end = it->path + it->path_len;
    const char *slash = memchr(b, '/', (size_t)(end - b));
    if (!slash || slash == b || slash + 1 == end)
        return -1;
    *bucket = b;
    *blen = (size_t)(slash - b);
    *key = slash + 1;
    *klen = (size_t)(end - slash - 1);
    return 0;
}

/* ---- an http(s) image URL ---- */

/* At the end of each response's headers: its status, and a 2xx body's length: one over
 * --max-image-bytes is refused before its first byte, and the buffer is sized once for one
 * within it. */
static size_t on_http_header(char *line, size_t size, size_t nmemb, void *arg)
{
    struct fetch *f = arg;
    size_t n = size * nmemb;
    long long length;
    if (!s3_headers_done(f->easy, line, n, &f->status, &length) || f->status / 100 != 2)
        return n;
    int room = s3_buf_expect(&f->buf, length);
    if (room) {
        *(room > 0 ? &f->too_large : &f->no_memory) = 1;
        return 0;
    }
    return n;
}

static size_t on_http_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct fetch *f = arg;
    struct s3_buf *b = &f->buf;
    size_t n = size * nmemb;
    if (f->status / 100 != 2)
        return n; /* an error page: its status says enough */
    int rc = s3_buf_append(b, p, n);
    if (rc) {
        *(rc > 0 ? &f->too_large : &f->no_memory) = 1;
        return 0;
    }
    return n;
}

static void prepare_http(struct fetch *f, const struct run *run, const struct item *it, CURL *h)
{
    const struct config *cfg = run->cfg;
    f->easy = h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, it->path);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "annotate/" ANNOTATE_VERSION);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_http_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_http_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, f->errbuf);
    if (cfg->image_auth) { /* only when asked: a model server's token must not go to an image host */
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, run->sources->image_headers);
        if (cfg->cacert)
            curl_easy_setopt(h, CURLOPT_CAINFO, cfg->cacert);
        if (cfg->insecure) {
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
            curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
        }
    }
}

/* What an http attempt's end means, with its message. */
static enum s3_outcome classify_http(struct fetch *f, CURL *h, CURLcode cc, char *msg, size_t len)
{
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &f->status);
    if (f->too_large || f->no_memory) {
        snprintf(msg, len, f->too_large ? "image URL: the image is larger than --max-image-bytes (%zu bytes): not sent"
                                        : "image URL: out of memory for the image (%zu bytes at most)", f->buf.limit);
        return S3_FAILED;
    }
    if (cc != CURLE_OK) {
        snprintf(msg, len, "image URL: %s", f->errbuf[0] ? f->errbuf : curl_easy_strerror(cc));
        switch (cc) {
        case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR: case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2: case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR:
            return S3_RETRY;
        default:
            return S3_FAILED; /* a malformed URL, a certificate that does not verify, ... */
        }
    }
    snprintf(msg, len, "image URL: HTTP %ld", f->status);
    if (f->status / 100 == 2)
        return S3_OK;
    if (f->status == 404 || f->status == 410)
        return S3_MISSING;
    if (f->status == 408 || f->status == 429 || f->status >= 500)
        return S3_RETRY;
    return S3_FAILED;
}

/* ---- an attempt ---- */

void fetch_begin(struct fetch *f, const struct item *it)
{
    f->attempts = 0;
    f->rng ^= it->seq * 0x9E3779B97F4A7C15ull + 1;
}

/* The S3 attempt on h. 0, or -1 with the item failed or stopped. */
static int prepare_s3(struct fetch *f, const struct run *run, struct item *it, CURL *h)
{
    const char *bucket, *key;
    size_t blen, klen;
    char err[512];
    int setup;
    if (split_s3(it, &bucket, &blen, &key, &klen)) {
        item_fail(it, "not an S3 object's URL (s3://BUCKET/KEY)");
        return -1;
    }
    const struct s3_client *c = sources_client(run->sources, bucket, blen, &setup, err, sizeof err);
    if (!c && setup) {
        it->no_row = 1;
        item_fail(it, "%s", err);
        stop_run(run, "%.*s: %s. Nothing was written for the s3:// images; after the fix, run again with --resume",
                 (int)(it->path_len > 200 ? 200 : it->path_len), it->path, err);
        return -1;
    }
    if (!c || s3_get_prepare(&f->s3, c, h, key, klen, &f->buf, err, sizeof err)) {
        item_fail(it, "S3: %s", err);
        return -1;
    }
    const char *ca = getenv("AWS_CA_BUNDLE");
    if (ca && *ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    return 0;
}

int fetch_prepare(struct fetch *f, const struct run *run, struct item *it, CURL *h)
{
    const struct config *cfg = run->cfg;
    f->buf.len = 0;
    f->buf.limit = (size_t)cfg->max_image_bytes;
    f->status = 0;
    f->too_large = f->no_memory = 0;
    f->errbuf[0] = 0;
    f->attempts++;
    if (it->kind == ITEM_S3) {
        if (prepare_s3(f, run, it, h))
            return -1;
    } else {
        prepare_http(f, run, it, h);
    }
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, cfg->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    return 0;
}

/* S3's credentials are wrong whatever the object: no image can be read. */
static int credentials_refused(const char *code)
{
    static const char *const codes[] = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                                        "InvalidToken", "TokenRefreshRequired", "RequestTimeTooSkewed", NULL};
    for (int i = 0; codes[i]; i++)
        if (!strcmp(code, codes[i]))
            return 1;
    return 0;
}

/* A set-up refusal (fetch.h): the run stops, or the object fails. */
static enum fetch_step setup_refused(const struct run *run, struct item *it, struct fetch_health *h,
                                     const struct s3_result *res)
{
    if (!credentials_refused(res->code) && atomic_load(&h->answered)) {
        item_fail(it, "%s", res->message);
        return FETCH_FAIL;
    }
    it->no_row = 1; /* not the image's fault: --resume runs it */
    item_fail(it, "%s", res->message);
    if (credentials_refused(res->code) || atomic_fetch_add(&h->setup_fails, 1) + 1 >= SETUP_FETCHES)
        stop_run(run, "S3 refused GetObject of %.200s with %s: check the credentials and their permissions "
                      "(s3:GetObject), the bucket and the region. Nothing was written for those images; after the "
                      "fix, run again with --resume", it->path, res->message);
    return FETCH_FAIL;
}

enum fetch_step fetch_finish(struct fetch *f, const struct run *run, struct item *it, CURL *h, CURLcode cc,
                             double now, double *retry_at)
{
    struct s3_result res;
    struct fetch_health *health = &run->sources->health[it->kind == ITEM_S3 ? HEALTH_S3 : HEALTH_HTTP];
    curl_off_t ra = -1;
    if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra <= 0)
        ra = -1;
    if (it->kind == ITEM_S3) {
        s3_req_finish(&f->s3, h, cc, &res);
    } else {
        memset(&res, 0, sizeof res);
        res.outcome = classify_http(f, h, cc, res.message, sizeof res.message);
        curl_easy_reset(h);
    }
    switch (res.outcome) {
    case S3_OK:
        health_ok(health);
        return FETCH_DONE;
    case S3_SETUP:
        return setup_refused(run, it, health, &res);
    case S3_RETRY:
        if (health_fault(health, run->cfg, now) || f->attempts <= run->cfg->retries) {
            *retry_at = now + (double)chain_backoff_ms(run->cfg, f->attempts, (long)ra, &f->rng) / 1e3;
            return FETCH_RETRY;
        }
        item_fail(it, "%s (after %d attempts)", res.message, f->attempts);
        return FETCH_FAIL;
    case S3_MISSING:
        health_ok(health); /* the store answered */
        if (it->size_known) /* it was listed */
            item_fail(it, "%s: deleted since it was listed", res.message);
        else
            item_fail(it, "%s: not found", res.message);
        return FETCH_FAIL;
    default:
        item_fail(it, "%s", res.message);
        return FETCH_FAIL;
    }
}

unsigned char *fetch_take(struct fetch *f, size_t *len)
{
    unsigned char *d = (unsigned char *)f->buf.data;
    *len = f->buf.len;
    if (!d && (d = malloc(1)))
        *len = 0;
    f->buf.data = NULL;
    f->buf.len = f->buf.cap = 0;
    return d;
}

/* Sleeps until t, saying it is alive about every second; 0, or -1 once the run is torn down. */
static int wait_until(const struct run *run, double t)
{
    for (double left; (left = t - now_s()) > 0;) {
        if (run_stop_state(run) == RUN_ABORT)
            return -1;
        if (run->alive)
            run->alive(run);
        double s = left > 1 ? 1 : left;
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
    }
    return 0;
}

unsigned char *fetch_blocking(struct fetch *f, const struct run *run, struct item *it, CURL *h, size_t *len)
{
    fetch_begin(f, it);
    for (;;) {
        if (run->alive)
            run->alive(run);
        if (fetch_prepare(f, run, it, h))
            return NULL;
        CURLcode cc = curl_easy_perform(h);
        double at;
        switch (fetch_finish(f, run, it, h, cc, now_s(), &at)) {
        case FETCH_DONE:
            return fetch_take(f, len);
        case FETCH_FAIL:
            return NULL;
        case FETCH_RETRY:
            if (wait_until(run, at) == 0)
                break;
            it->no_row = 1; /* not the image's fault: --resume runs it */
            item_fail(it, "not loaded: the run was stopped");
            return NULL;
        }
    }
}

void fetch_free(struct fetch *f)
{
    s3_req_free(&f->s3);
    free(f->buf.data);
    memset(&f->buf, 0, sizeof f->buf);
}
