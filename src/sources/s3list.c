/* s3list: ListObjectsV2, page after page (see s3.h). The lister keeps the next page's
 * continuation token, one page's bytes and its parsed form, all reused from one page to the
 * next, and the last key it returned, to check that the store lists in S3's order (each key
 * after the one before, as bytes): a store that did not would break resuming with start-after,
 * and could list an object twice. */
#include "sources/s3.h"
#include "sources/s3int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct s3_lister {
    const struct s3_client *c;
    char *prefix;      /* encoded for the query; NULL for none */
    char *start_after; /* encoded; sent until the first page came */
    int max_keys;
    char *token;       /* the continuation token of the next page (as S3 sent it); NULL first */
    int done;
    struct s3_buf body;
    struct s3_page page;
    struct s3_req req;
    CURL *own;         /* s3_lister_next's handle */
    char last[S3_KEY_MAX + 1]; /* the last key returned, or start_after */
    size_t last_len;
    int have_last;
    uint64_t pages, objects;
};

/* s encoded as a query value (every byte but the unreserved ones as %XX, '/' too). */
static char *query_value(const char *s)
{
    size_t n = strlen(s);
    char *v = malloc(3 * n + 1);
    if (v)
        s3_encode(s, n, 0, v);
    return v;
}

struct s3_lister *s3_lister_new(const struct s3_client *c, const struct s3_list_opts *o, char *err, size_t errlen)
{
    const char *prefix = o && o->prefix && *o->prefix ? o->prefix : NULL;
    const char *after = o && o->start_after && *o->start_after ? o->start_after : NULL;
    int max_keys = o && o->max_keys ? o->max_keys : 1000;
    if (max_keys < 1 || max_keys > 1000 || (prefix && strlen(prefix) > S3_KEY_MAX) ||
        (after && strlen(after) > S3_KEY_MAX)) {
        snprintf(err, errlen, "a listing takes 1 to 1000 keys a page, and a prefix and a start key of at most %d "
                 "bytes", S3_KEY_MAX);
        return NULL;
    }
    struct s3_lister *l = calloc(1, sizeof *l);
    if (l) {
        l->c = c;
        l->max_keys = max_keys;
        l->prefix = prefix ? query_value(prefix) : NULL;
        l->start_after = after ? query_value(after) : NULL;
        l->body.limit = S3_LIST_MAX_BYTES;
    }
    if (!l || (prefix && !l->prefix) || (after && !l->start_after)) {
        s3_lister_free(l);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (after) { /* keys must come after it */
        l->last_len = strlen(after);
        memcpy(l->last, after, l->last_len);
        l->have_last = 1;
    }
    return l;
}

/* The next page's URL, its query in SigV4's canonical form: parameters sorted by name, names and
 * values encoded. libcurl 7.88 signs the query as it stands in the URL. */
static char *page_url(const struct s3_lister *l)
{
    char *tok = l->token ? query_value(l->token) : NULL;
    if (l->token && !tok)
        return NULL;
    char *u = NULL;
    if (asprintf(&u, "%s%s?%s%s%sencoding-type=url&list-type=2&max-keys=%d%s%s%s%s", l->c->base,
                 l->c->virtual_host ? "/" : "", tok ? "continuation-token=" : "", tok ? tok : "", tok ? "&" : "",
                 l->max_keys, l->prefix ? "&prefix=" : "", l->prefix ? l->prefix : "",
                 l->start_after && !l->token ? "&start-after=" : "", l->start_after && !l->token ? l->start_after : "")
        < 0)
        u = NULL;
    free(tok);
    return u;
}

int s3_lister_prepare(struct s3_lister *l, CURL *h, char *err, size_t errlen)
{
    if (l->done)
        return 1;
    return s3_req_start(&l->req, l->c, h, page_url(l), &l->body, err, errlen);
}

/* S3's order: bytes compared as unsigned, a key before the longer keys it begins. */
static int keycmp(const char *a, size_t an, const char *b, size_t bn)
{
    int cmp = memcmp(a, b, an < bn ? an : bn);
    return cmp ? cmp : an < bn ? -1 : an > bn;
}

/* The page's keys in order, each after the one before (and after start_after). 0 or -1. */
static int check_order(struct s3_lister *l, struct s3_result *res)
{
    for (size_t i = 0; i < l->page.n; i++) {
        const struct s3_object *o = &l->page.obj[i];
        if (l->have_last && keycmp(o->key, o->key_len, l->last, l->last_len) <= 0) {
            res->outcome = S3_FAILED;
            snprintf(res->message, sizeof res->message,
                     "S3: the listing is not in key order (page %llu, object %zu): the store cannot be listed safely",
                     (unsigned long long)l->pages + 1, i + 1);
            return -1;
        }
        memcpy(l->last, o->key, o->key_len);
        l->last_len = o->key_len;
        l->have_last = 1;
    }
    return 0;
}

/* The page is read: the next one's token, or the end. 0, or -1 with res filled. */
static int advance(struct s3_lister *l, struct s3_result *res)
{
    if (!l->page.truncated) {
        l->done = 1;
        return 0;
    }
    if (l->token && !strcmp(l->token, l->page.next_token)) {
        res->outcome = S3_FAILED;
        snprintf(res->message, sizeof res->message, "S3: the store sent the same continuation token twice");
        return -1;
    }
    char *t = strdup(l->page.next_token);
    if (!t) {
        res->outcome = S3_FAILED;
        snprintf(res->message, sizeof res->message, "S3: out of memory");
        return -1;
    }
    free(l->token);
    l->token = t;
    return 0;
}

int s3_lister_finish(struct s3_lister *l, CURL *h, CURLcode cc, const struct s3_page **page, struct s3_result *res)
{
    *page = NULL;
    s3_req_finish(&l->req, h, cc, res);
    if (res->outcome != S3_OK)
        return -1;
    char why[200];
    int rc = s3_page_parse(&l->page, l->body.data ? l->body.data : "", l->body.len, why, sizeof why);
    if (rc == 1) { /* an error document under a 2xx status */
        snprintf(res->code, sizeof res->code, "%s", l->page.code);
        res->outcome = s3_classify(CURLE_OK, 500, res->code);
        snprintf(res->message, sizeof res->message, "S3 %.60s: %.200s (in an HTTP %ld answer)", l->page.code,
                 l->page.message, res->status);
        return -1;
    }
    if (rc < 0) {
        res->outcome = S3_FAILED;
        snprintf(res->message, sizeof res->message, "S3: the listing's answer cannot be read: %.200s", why);
        return -1;
    }
    if (check_order(l, res) != 0 || advance(l, res) != 0)
        return -1;
    l->pages++;
    l->objects += l->page.n;
    *page = &l->page;
    return 1;
}

int s3_lister_next(struct s3_lister *l, const struct s3_page **page, struct s3_result *res)
{
    *page = NULL;
    memset(res, 0, sizeof *res);
    if (l->done)
        return 0;
    if (!l->own && !(l->own = curl_easy_init())) {
        res->outcome = S3_FAILED;
        snprintf(res->message, sizeof res->message, "S3: cannot make a curl handle");
        return -1;
    }
    char err[200];
    if (s3_lister_prepare(l, l->own, err, sizeof err) != 0) {
        res->outcome = S3_FAILED;
        snprintf(res->message, sizeof res->message, "S3: %s", err);
        return -1;
    }
    CURLcode cc = curl_easy_perform(l->own);
    return s3_lister_finish(l, l->own, cc, page, res);
}

uint64_t s3_lister_pages(const struct s3_lister *l)
{
    return l->pages;
}

uint64_t s3_lister_objects(const struct s3_lister *l)
{
    return l->objects;
}

size_t s3_lister_bytes(const struct s3_lister *l)
{
    return sizeof *l + l->body.cap + l->page.arena_cap + l->page.obj_cap * sizeof(struct s3_object) +
           l->page.next_token_cap + (l->token ? strlen(l->token) + 1 : 0) + l->req.err.cap +
           (l->req.url ? strlen(l->req.url) + 1 : 0);
}

void s3_lister_free(struct s3_lister *l)
{
    if (!l)
        return;
    free(l->prefix);
    free(l->start_after);
    free(l->token);
    free(l->body.data);
    s3_page_free(&l->page);
    s3_req_free(&l->req);
    if (l->own)
        curl_easy_cleanup(l->own);
    free(l);
}
