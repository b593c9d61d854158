/* s3req: the client of one bucket, a signed GET on a caller's easy handle, and how it ended
 * (see s3.h). */
#include "sources/s3.h"
#include "sources/s3int.h"
#include "version.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/parser.h>

/* ---- the client ---- */

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* Where the bucket is: ENDPOINT/BUCKET with an endpoint; else AWS's virtual-hosted host when the
 * name can be a host name, path style on the regional host otherwise. */
static char *bucket_base(const struct s3_config *cfg, const char *bucket, int *virtual_host)
{
    const char *dom = !strncmp(cfg->region, "cn-", 3) ? "amazonaws.com.cn" : "amazonaws.com";
    *virtual_host = !cfg->endpoint && s3_bucket_is_dns(bucket);
    if (cfg->endpoint)
        return dup_printf("%s/%s", cfg->endpoint, bucket);
    if (*virtual_host)
        return dup_printf("https://%s.s3.%s.%s", bucket, cfg->region, dom);
    return dup_printf("https://s3.%s.%s/%s", cfg->region, dom, bucket);
}

struct s3_client *s3_client_new(const struct s3_config *cfg, const char *bucket, char *err, size_t errlen)
{
    xmlInitParser();
    if (!s3_bucket_name_ok(bucket, strlen(bucket))) {
        char shown[80];
        s3_printable(shown, sizeof shown, bucket, strlen(bucket));
        snprintf(err, errlen, "\"%s\" is not a bucket name", shown);
        return NULL;
    }
    struct s3_client *c = calloc(1, sizeof *c);
    if (c) {
        c->bucket = strdup(bucket);
        c->base = bucket_base(cfg, bucket, &c->virtual_host);
        c->sigv4 = dup_printf("aws:amz:%s:s3", cfg->region);
        c->key_id = strdup(cfg->key_id);
        c->secret = strdup(cfg->secret);
        c->token_header = cfg->token ? dup_printf("x-amz-security-token: %s", cfg->token) : NULL;
    }
    if (!c || !c->bucket || !c->base || !c->sigv4 || !c->key_id || !c->secret || (cfg->token && !c->token_header)) {
        s3_client_free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return c;
}

void s3_client_free(struct s3_client *c)
{
    if (!c)
        return;
    free(c->bucket);
    free(c->base);
    free(c->sigv4);
    s3_wipe_free(c->key_id);
    s3_wipe_free(c->secret);
    s3_wipe_free(c->token_header);
    free(c);
}

char *s3_client_row_path(const struct s3_client *c, const char *key, size_t keylen)
{
    return dup_printf("s3://%s/%.*s", c->bucket, (int)keylen, key);
}

char *s3_client_object_url(const struct s3_client *c, const char *key, size_t keylen)
{
    size_t blen = strlen(c->base);
    char *u = malloc(blen + 1 + 3 * keylen + 1);
    if (!u)
        return NULL;
    memcpy(u, c->base, blen);
    u[blen] = '/';
    s3_encode(key, keylen, 1, u + blen + 1);
    return u;
}

/* ---- the transfer's callbacks ---- */

int s3_buf_room(struct s3_buf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < need)
        cap *= 2;
    if (b->limit && cap > b->limit + 1)
        cap = b->limit + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int s3_buf_append(struct s3_buf *b, const void *p, size_t n)
{
    if (b->limit && b->len + n > b->limit)
        return 1;
    if (s3_buf_room(b, b->len + n + 1) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int s3_buf_expect(struct s3_buf *b, long long length)
{
    if (length < 0)
        return 0;
    if (b->limit && (unsigned long long)length > b->limit)
        return 1;
    return (unsigned long long)length < SIZE_MAX && s3_buf_room(b, (size_t)length + 1) == 0 ? 0 : -1;
}

int s3_headers_done(CURL *h, const char *line, size_t n, long *status, long long *length)
{
    if (!(n == 1 && line[0] == '\n') && !(n == 2 && line[0] == '\r' && line[1] == '\n'))
        return 0;
    *status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    struct curl_header *cl;
    char *end;
    *length = -1;
    if (curl_easy_header(h, "Content-Length", 0, CURLH_HEADER, -1, &cl) == CURLHE_OK) {
        errno = 0;
        long long v = strtoll(cl->value, &end, 10);
        if (end != cl->value && !errno && v >= 0)
            *length = v;
    }
    return 1;
}

/* A header line: at the end of each response's headers, its status, the bucket's region, and the
 * body's length: with a limit, an object over it is refused before its first byte, and the
 * buffer is sized once for one within it. */
static size_t on_header(char *line, size_t size, size_t nmemb, void *arg)
{
    struct s3_req *r = arg;
    size_t n = size * nmemb;
    long long length;
    if (!s3_headers_done(r->easy, line, n, &r->status, &length))
        return n;
    struct curl_header *region;
    if (curl_easy_header(r->easy, "x-amz-bucket-region", 0, CURLH_HEADER, -1, &region) == CURLHE_OK)
        s3_printable(r->bucket_region, sizeof r->bucket_region, region->value, strlen(region->value));
    int room = r->status / 100 == 2 && r->dst && r->dst->limit ? s3_buf_expect(r->dst, length) : 0;
    if (room) {
        *(room > 0 ? &r->too_large : &r->no_memory) = 1;
        return 0;
    }
    return n;
}

/* The body: a 2xx one into the caller's buffer, up to its limit; any other (S3's error
 * document) into r->err, its first S3_ERROR_BODY_MAX bytes. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct s3_req *r = arg;
    size_t n = size * nmemb;
    struct s3_buf *b = r->status / 100 == 2 && r->dst ? r->dst : &r->err;
    if (b == &r->err && b->len + n > S3_ERROR_BODY_MAX)
        n = b->len < S3_ERROR_BODY_MAX ? S3_ERROR_BODY_MAX - b->len : 0;
    int rc = s3_buf_append(b, p, n);
    if (rc) {
        *(rc > 0 ? &r->too_large : &r->no_memory) = 1;
        return 0;
    }
    return size * nmemb;
}

/* ---- a request ---- */

static void wipe_slist(struct curl_slist *l)
{
    for (struct curl_slist *c = l; c; c = c->next)
        explicit_bzero(c->data, strlen(c->data));
    curl_slist_free_all(l);
}

void s3_req_free(struct s3_req *r)
{
    wipe_slist(r->headers);
    r->headers = NULL;
    free(r->url);
    r->url = NULL;
    free(r->err.data);
    memset(&r->err, 0, sizeof r->err);
}

int s3_req_start(struct s3_req *r, const struct s3_client *c, CURL *h, char *url, struct s3_buf *dst, char *err,
                 size_t errlen)
{
    wipe_slist(r->headers);
    free(r->url);
    r->url = url;
    r->dst = dst;
    r->headers = curl_slist_append(NULL, "x-amz-content-sha256: " S3_EMPTY_SHA256);
    struct curl_slist *more = r->headers && c->token_header ? curl_slist_append(r->headers, c->token_header) : r->headers;
    if (!url || !more) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->headers = more;
    r->err.len = 0;
    r->status = 0;
    r->too_large = r->no_memory = 0;
    r->bucket_region[0] = r->errbuf[0] = '\0';
    if (dst)
        dst->len = 0;
    r->easy = h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "annotate/" ANNOTATE_VERSION);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->sigv4);
    curl_easy_setopt(h, CURLOPT_USERNAME, c->key_id);
    curl_easy_setopt(h, CURLOPT_PASSWORD, c->secret);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->errbuf);
    return 0;
}

int s3_get_prepare(struct s3_req *r, const struct s3_client *c, CURL *h, const char *key, size_t keylen,
                   struct s3_buf *dst, char *err, size_t errlen)
{
    if (keylen == 0 || keylen > S3_KEY_MAX || memchr(key, '\0', keylen)) {
        snprintf(err, errlen, "an object key must be 1 to %d bytes, without NUL", S3_KEY_MAX);
        return -1;
    }
    return s3_req_start(r, c, h, s3_client_object_url(c, key, keylen), dst, err, errlen);
}

int s3_head_prepare(struct s3_req *r, const struct s3_client *c, CURL *h, const char *key, size_t keylen, char *err,
                    size_t errlen)
{
    if (s3_get_prepare(r, c, h, key, keylen, NULL, err, errlen))
        return -1;
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L); /* libcurl signs it as the HEAD it is */
    return 0;
}

/* ---- how it ended ---- */

static int in_list(const char *code, const char *const *list)
{
    for (int i = 0; code && list[i]; i++)
        if (!strcmp(code, list[i]))
            return 1;
    return 0;
}

/* What the caller set up wrongly, or what the transfer cannot survive. */
static enum s3_outcome classify_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_LOGIN_DENIED:
    case CURLE_AUTH_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
        return S3_SETUP;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        return S3_FAILED;
    default:
        return S3_RETRY; /* refused, reset, timed out, cut short, name not resolved (yet) */
    }
}

enum s3_outcome s3_classify(CURLcode cc, long status, const char *code)
{
    static const char *const setup[] = {
        "AccessDenied", "AllAccessDisabled", "SignatureDoesNotMatch", "InvalidAccessKeyId", "NoSuchBucket",
        "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "RequestTimeTooSkewed",
        "AuthorizationHeaderMalformed", "PermanentRedirect", "InvalidBucketName", "AccountProblem",
        "InvalidSecurity", "NotSignedUp", "MissingSecurityHeader", "InvalidRequest", "InvalidArgument",
        "AuthorizationQueryParametersError", "InvalidPayer", NULL};
    static const char *const retry[] = {
        "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException",
        "ThrottledException", "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
        "BandwidthLimitExceeded", "RequestThrottled", "PriorRequestNotComplete", "OperationAborted", NULL};
    if (cc != CURLE_OK)
        return classify_curl(cc);
    if (status >= 200 && status <= 299)
        return S3_OK;
    if (in_list(code, setup))
        return S3_SETUP;
    if (in_list(code, retry))
        return S3_RETRY;
    if (code && !strcmp(code, "NoSuchKey"))
        return S3_MISSING;
    if (code && *code && strcmp(code, "(none)"))
        return status >= 500 ? S3_RETRY : S3_FAILED; /* InvalidObjectState, InvalidRange, ... */
    if (status == 0 || status == 408 || status == 429 || status >= 500)
        return S3_RETRY;
    if (status == 404)
        return S3_MISSING;
    if (status == 401 || status == 403 || (status >= 300 && status <= 399))
        return S3_SETUP;
    return S3_FAILED;
}

const char *s3_outcome_name(enum s3_outcome o)
{
    static const char *const names[] = {"ok", "missing", "retry", "setup", "failed"};
    return o <= S3_FAILED ? names[o] : "?";
}

/* The message of an answer that is not 2xx: S3's Code and Message from its error document. */
static void answer_message(struct s3_req *r, struct s3_result *res)
{
    struct s3_page pg = {0};
    char perr[160];
    if (r->err.len && s3_page_parse(&pg, r->err.data, r->err.len, perr, sizeof perr) == 1) {
        snprintf(res->code, sizeof res->code, "%s", strcmp(pg.code, "(none)") ? pg.code : "");
        snprintf(res->region, sizeof res->region, "%s", pg.region);
    }
    if (!res->region[0])
        snprintf(res->region, sizeof res->region, "%s", r->bucket_region);
    res->outcome = s3_classify(CURLE_OK, res->status, res->code);
    if (res->code[0])
        snprintf(res->message, sizeof res->message, "S3 %.63s: %.200s (HTTP %ld)", res->code,
                 pg.message[0] ? pg.message : "no message", res->status);
    else
        snprintf(res->message, sizeof res->message, "S3 answered HTTP %ld without an error code", res->status);
    s3_page_free(&pg);
    if (res->outcome == S3_SETUP && res->region[0]) {
        size_t n = strlen(res->message);
        snprintf(res->message + n, sizeof res->message - n, "; the bucket is in region %s (set AWS_REGION=%s)",
                 res->region, res->region);
    }
}

void s3_req_finish(struct s3_req *r, CURL *h, CURLcode cc, struct s3_result *res)
{
    memset(res, 0, sizeof *res);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &res->status);
    if (r->too_large) {
        res->outcome = S3_FAILED;
        snprintf(res->message, sizeof res->message, "S3: the object is larger than %zu bytes", r->dst->limit);
    } else if (r->no_memory) {
        res->outcome = S3_FAILED;
        snprintf(res->message, sizeof res->message, "S3: out of memory for the answer");
    } else if (cc != CURLE_OK) {
        res->outcome = s3_classify(cc, res->status, NULL);
        char why[CURL_ERROR_SIZE];
        s3_printable(why, sizeof why, r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc),
                     strlen(r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc)));
        snprintf(res->message, sizeof res->message, "S3: %s", why);
    } else if (res->status / 100 == 2) {
        res->outcome = S3_OK;
    } else {
        answer_message(r, res);
    }
    curl_easy_reset(h);
}
