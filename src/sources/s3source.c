/* s3source: the source of `annotate s3://BUCKET/PREFIX` (flow/source.h): the bucket's listing
 * (ListObjectsV2, s3.h), page after page, one entry per key with an image extension. The first
 * page is asked for when the source opens, so that a set-up S3 refuses exits 2 before any
 * model request; the others when the last page's keys are given out, so that memory stays that
 * of one page and the first images are sent while the listing goes on. A page S3 answers with a
 * passing fault is asked again after a backoff, as a fetch is (fetch.h), and for as long as the
 * outage is within --outage-timeout; a page that still cannot be had ends the listing early
 * (source_incomplete). */
#include "flow/source.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chain/chain.h"
#include "flow/item.h"
#include "select.h"
#include "sources/s3.h"
#include "sources/sources.h"

struct s3src {
    struct source base;
    const struct config *cfg;
    const struct s3_client *c;
    struct s3_location loc;
    struct s3_lister *l;
    CURL *h;                   /* the listing's and HEADs' handle */
    const struct s3_page *page;
    size_t next;               /* the page's next object */
    char *path;                /* "s3://BUCKET/" then the key */
    size_t head_len, path_cap;
    char *under;               /* "s3://BUCKET/PREFIX": every row's path begins so */
    char url[160];             /* the source's name in messages */
    int failed;
    char why[640];
    uint64_t rng;
};

/* Sleeps s seconds, by steps of 100 ms; 0, or -1 once the run is stopping. */
static int pause_s(const struct s3src *s, double secs)
{
    for (double end = now_s() + secs, left; (left = end - now_s()) > 0;) {
        if (s->base.stop && atomic_load(s->base.stop))
            return -1;
        double t = left > 0.1 ? 0.1 : left;
        struct timespec ts = {0, (long)(t * 1e9)};
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
    }
    return 0;
}

/* One transfer on the source's handle, with the run's timeouts and AWS_CA_BUNDLE. */
static CURLcode perform(struct s3src *s)
{
    curl_easy_setopt(s->h, CURLOPT_TIMEOUT_MS, s->cfg->timeout_ms);
    curl_easy_setopt(s->h, CURLOPT_CONNECTTIMEOUT_MS, s->cfg->connect_timeout_ms);
    const char *ca = getenv("AWS_CA_BUNDLE");
    if (ca && *ca)
        curl_easy_setopt(s->h, CURLOPT_CAINFO, ca);
    return curl_easy_perform(s->h);
}

/* The next page: 1, 0 at the end, -1 with s->why (and *setup when S3 refused the set-up). */
static int next_page(struct s3src *s, int *setup)
{
    double down_since = 0;
    *setup = 0;
    for (int attempt = 1;; attempt++) {
        char err[256];
        struct s3_result res;
        int rc = s3_lister_prepare(s->l, s->h, err, sizeof err);
        if (rc == 1)
            return 0;
        if (rc < 0) {
            snprintf(s->why, sizeof s->why, "cannot list %s: %s", s->url, err);
            return -1;
        }
        rc = s3_lister_finish(s->l, s->h, perform(s), &s->page, &res);
        if (rc >= 0)
            return rc;
        double now = now_s();
        if (res.outcome == S3_RETRY && !down_since)
            down_since = now;
        int waiting = res.outcome == S3_RETRY &&
                      (attempt <= s->cfg->retries ||
                       (s->cfg->outage_timeout_s > 0 && now - down_since < (double)s->cfg->outage_timeout_s));
        if (!waiting || pause_s(s, (double)chain_backoff_ms(s->cfg, attempt, -1, &s->rng) / 1e3)) {
            *setup = res.outcome == S3_SETUP;
            snprintf(s->why, sizeof s->why, "cannot list %s (page %llu): %s%s", s->url,
                     (unsigned long long)s3_lister_pages(s->l) + 1, res.message,
                     res.outcome == S3_RETRY ? " (the store did not answer within --retries and --outage-timeout)" : "");
            return -1;
        }
    }
}

/* "s3://BUCKET/" + key into s->path. 0, or -1 when out of memory. */
static int set_path(struct s3src *s, const char *key, size_t len)
{
    if (s->head_len + len + 1 > s->path_cap) {
        size_t cap = (s->head_len + len + 1) * 2;
        char *p = realloc(s->path, cap);
        if (!p)
            return -1;
        s->path = p;
        s->path_cap = cap;
    }
    memcpy(s->path + s->head_len, key, len);
    s->path[s->head_len + len] = 0;
    return 0;
}

/* A key that names an image: not a folder marker, with an image extension. */
static int key_is_image(const struct config *cfg, const char *key, size_t len)
{
    if (!len || key[len - 1] == '/')
        return 0;
    const char *slash = memrchr(key, '/', len);
    const char *name = slash ? slash + 1 : key;
    return scan_name_is_image(&cfg->scan, name, len - (size_t)(name - key));
}

static int s3src_next(struct source *b, struct source_entry *out)
{
    struct s3src *s = (struct s3src *)b;
    for (;;) {
        if (s->failed)
            return 0;
        if (!s->page || s->next == s->page->n) {
            int setup, got = next_page(s, &setup);
            if (got <= 0) {
                s->failed = got < 0 && !(s->base.stop && atomic_load(s->base.stop));
                s->page = NULL;
                return 0;
            }
            s->next = 0;
            continue;
        }
        const struct s3_object *o = &s->page->obj[s->next++];
        if (!key_is_image(s->cfg, o->key, o->key_len))
            continue;
        if (set_path(s, o->key, o->key_len)) {
            snprintf(s->why, sizeof s->why, "out of memory listing %s", s->url);
            s->failed = 1;
            return 0;
        }
        memset(out, 0, sizeof *out);
        out->e.path = s->path;
        out->e.path_len = s->head_len + o->key_len;
        out->e.rel = s->path + s->head_len; /* --shard hashes the key */
        out->e.rel_len = o->key_len;
        out->kind = ITEM_S3;
        out->size_known = o->size >= 0;
        out->size = o->size >= 0 ? (uint64_t)o->size : 0;
        return 1;
    }
}

/* --retry-failed: a failed row's object is dropped to be redone only when the listing will give
 * it again: under the prefix, in the shard, an image's key, and there (a HEAD: an object deleted
 * since is not listed, and its row must stay). */
static int s3src_finds(struct source *b, const char *path, size_t len)
{
    struct s3src *s = (struct s3src *)b;
    size_t ul = strlen(s->under);
    if (len <= ul || memcmp(path, s->under, ul) || memchr(path, 0, len))
        return 0;
    const char *key = path + s->head_len;
    size_t klen = len - s->head_len;
    if (!key_is_image(s->cfg, key, klen) || !selection_in_shard(s->cfg, key, klen))
        return 0;
    struct s3_req req = {0};
    struct s3_result res = {.outcome = S3_RETRY};
    char err[200];
    for (int attempt = 1; res.outcome == S3_RETRY && attempt <= 1 + s->cfg->retries; attempt++) {
        if (attempt > 1 && pause_s(s, (double)chain_backoff_ms(s->cfg, attempt - 1, -1, &s->rng) / 1e3))
            break;
        if (s3_head_prepare(&req, s->c, s->h, key, klen, err, sizeof err))
            break;
        s3_req_finish(&req, s->h, perform(s), &res);
    }
    s3_req_free(&req);
    return res.outcome == S3_OK;
}

static int s3src_incomplete(const struct source *b, char *why, size_t len)
{
    const struct s3src *s = (const struct s3src *)b;
    if (s->failed)
        snprintf(why, len, "%s", s->why);
    return s->failed;
}

static uint64_t s3src_warnings(const struct source *s, const char **last)
{
    (void)s;
    *last = NULL;
    return 0;
}

static void s3src_close(struct source *b)
{
    struct s3src *s = (struct s3src *)b;
    s3_lister_free(s->l);
    if (s->h)
        curl_easy_cleanup(s->h);
    s3_location_free(&s->loc);
    free(s->path);
    free(s->under);
    free(s);
}

/* The client, the lister and the first page. 0, or -1 with err (exit 2). */
static int start_listing(struct s3src *s, struct sources *src, int counting, char *err, size_t errlen)
{
    int setup;
    if (!src || !(s->c = sources_client(src, s->loc.bucket, strlen(s->loc.bucket), &setup, err, errlen)))
        return -1;
    struct s3_list_opts o = {.prefix = s->loc.prefix, .max_keys = s->cfg->s3_max_keys};
    if (!(s->l = s3_lister_new(s->c, &o, err, errlen)) || !(s->h = curl_easy_init())) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (counting)
        return 0;
    int got = next_page(s, &setup);
    if (got < 0) {
        snprintf(err, errlen, "%s%s", s->why,
                 setup ? ". Check the credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...), AWS_REGION, "
                         "AWS_ENDPOINT_URL and the bucket's name"
                       : "");
        return -1;
    }
    return 0;
}

struct source *source_s3(const struct config *cfg, struct sources *src, int counting, char *err, size_t errlen)
{
    struct s3src *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    s->rng = (uint64_t)(uintptr_t)s ^ 0x5eed;
    snprintf(s->url, sizeof s->url, "%.150s", cfg->dir);
    s->base = (struct source){s3src_next, s3src_finds, s3src_incomplete, s3src_warnings, s3src_close, NULL, s->url, NULL};
    if (s3_url_parse(cfg->dir, &s->loc, err, errlen)) {
        free(s);
        return NULL;
    }
    s->head_len = 5 + strlen(s->loc.bucket) + 1;
    if (asprintf(&s->under, "s3://%s/%s", s->loc.bucket, s->loc.prefix) < 0) {
        s->under = NULL;
        snprintf(err, errlen, "out of memory");
    } else if (start_listing(s, src, counting, err, errlen) == 0) {
        if (set_path(s, "", 0) == 0) {
            memcpy(s->path, s->under, s->head_len);
            s->base.rows_under = s->under;
            return &s->base;
        }
        snprintf(err, errlen, "out of memory");
    }
    s3src_close(&s->base);
    return NULL;
}
