/* s3: images read from an S3 bucket, or from an S3-compatible store (MinIO, Ceph, Cloudflare R2,
 * GCS through its S3 interface): where the configuration and credentials come from, the bucket's
 * listing (ListObjectsV2) page after page, and one object (GetObject) on an easy handle the caller
 * gives, so that a fetch runs under curl-multi as well as in a blocking worker.
 *
 * What callers may rely on:
 *
 *  - Configuration is read as the AWS CLI and SDKs read it (s3_config_load): the environment's
 *    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN first, else the profile
 *    (AWS_PROFILE, else "default") of the shared credentials file (AWS_SHARED_CREDENTIALS_FILE,
 *    else ~/.aws/credentials), else the same profile in the config file (AWS_CONFIG_FILE, else
 *    ~/.aws/config, where it is the section "[profile NAME]", "[default]" for the default one).
 *    The region: AWS_REGION, AWS_DEFAULT_REGION, the profile's "region", else us-east-1. The
 *    endpoint: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's "endpoint_url", none of them
 *    when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true. A variable set to "" counts as unset, as
 *    in the SDKs. A half pair of keys, an AWS_PROFILE that no file has, a profile that needs
 *    what this module does not do (role_arn, sso_session, credential_process: single sign-on and
 *    assumed roles), no credentials at all, a malformed region or endpoint: each is an error
 *    whose message names the variable, file or profile (a configuration mistake: exit 2).
 *
 *  - No secret is ever written: no message, description or result of this module holds the
 *    secret key or the session token, whatever fails; the access key ID appears only as its
 *    last four characters, as `aws configure list` shows it. Memory of this module that held a
 *    secret (the files' text, the copies, the request's token header) is wiped before it is
 *    freed. libcurl keeps copies of its own (CURLOPT_PASSWORD, the header lines it sends) which
 *    it frees without wiping; nothing here can reach them.
 *
 *  - Addressing: with an endpoint, path style, ENDPOINT/BUCKET/KEY (what S3-compatible stores
 *    expect); on AWS, virtual-hosted style, https://BUCKET.s3.REGION.amazonaws.com/KEY, or path
 *    style on https://s3.REGION.amazonaws.com when the bucket's name cannot be a host name
 *    (dots, capitals, underscores), as the SDKs do. A key is percent-encoded as S3 expects in a
 *    URL and in the signature: every byte but A-Z a-z 0-9 - . _ ~ as %XX (upper-case hex), each
 *    '/' kept, so that spaces, commas, '+', '%', quotes and non-ASCII keys work. Dot segments
 *    ("a/../b") are sent as they are (CURLOPT_PATH_AS_IS), never resolved.
 *
 *  - Signing is libcurl's CURLOPT_AWS_SIGV4 ("aws:amz:REGION:s3", CURLOPT_USERNAME and
 *    CURLOPT_PASSWORD), made right for libcurl 7.88, which signs the query string as it is in
 *    the URL and signs x-amz-content-sha256 only when the request carries it: every request
 *    carries "x-amz-content-sha256: <SHA-256 of the empty body>" (so libcurl signs it and uses
 *    it as the payload hash), "x-amz-security-token" when there is a session token (signed
 *    too), and a query already in SigV4's canonical form (parameters sorted by name, each name
 *    and value percent-encoded as above, '/' included). Nothing else is put in
 *    CURLOPT_HTTPHEADER, since libcurl signs every line of it.
 *
 *  - Requests on the caller's handle (s3_get_prepare, s3_lister_prepare) begin with
 *    curl_easy_reset: everything a previous use set is gone, the connection cache stays. The
 *    caller may add options afterwards (CURLOPT_PRIVATE, timeouts, CURLOPT_SHARE, CA settings).
 *    s3_req_finish reads the outcome and resets the handle again, so no credential stays on it
 *    for a later request to another server. Under curl-multi, remove the handle from the multi
 *    handle before s3_req_finish.
 *
 *  - Ends are classified (s3_classify) into what the run does with them:
 *      S3_OK       2xx: the bytes are in the caller's buffer;
 *      S3_MISSING  404 NoSuchKey (deleted since the listing): the image's row fails;
 *      S3_RETRY    503 SlowDown, 500 InternalError, throttling codes, 5xx, 429, 408, and
 *                  network faults (refused, reset, timeouts): retry with backoff, and wait an
 *                  outage out as for model servers;
 *      S3_SETUP    403 AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId, ExpiredToken,
 *                  RequestTimeTooSkewed, 404 NoSuchBucket, a wrong region (301 PermanentRedirect,
 *                  400 AuthorizationHeaderMalformed), TLS set-up faults: the run exits 2 naming
 *                  S3's error Code (s3_result.code, also in the message);
 *      S3_FAILED   anything else that is final for this object (an archived object's
 *                  InvalidObjectState, an object larger than the caller's limit, a 4xx without
 *                  a known Code): the image's row fails with the message.
 *    The message (s3_result.message) is one printable line, S3's Code and Message when it sent
 *    them (its text cut and made printable), and the HTTP status; with a region hint when S3
 *    named the bucket's region.
 *
 *  - Listing is streamed a page at a time (s3_lister_next): keys in S3's order (UTF-8 bytes),
 *    each page up to max_keys objects, the page's storage reused for the next one, so memory is
 *    that of the largest page whatever the bucket holds (s3_lister_bytes says how much). A
 *    listing asks for encoding-type=url and decodes keys when, and only when, the answer says
 *    <EncodingType>url</EncodingType> (as botocore does: '+' is a space, %XX a byte); a store
 *    that ignores the parameter sends keys as they are. After S3_RETRY the same page is asked
 *    again by the next call; the listing goes on from the last page it returned.
 *
 *  - A page's XML is read by libxml2's xmlTextReader (s3_page_parse), never by string search:
 *    ListBucketResult's IsTruncated, NextContinuationToken, EncodingType and each Contents' Key
 *    and Size; or an <Error> document's Code, Message and Region. A DOCTYPE, a key that is
 *    empty, longer than S3_KEY_MAX bytes after decoding, holding a NUL or a bad %-escape, a Size
 *    that is not a plain decimal number, a truncated page without a continuation token: each
 *    is a malformed answer with a reason, never a partial page. No network access, no external
 *    entity, nothing printed on stderr.
 *
 *  - Threads: a config and a client are read-only after creation and may be shared; a request
 *    (struct s3_req), a lister and a page belong to one thread at a time. Create the first
 *    config or client before starting threads (it initialises libxml2).
 */
#ifndef ANNOTATE_S3_H
#define ANNOTATE_S3_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>

#define S3_KEY_MAX 1024                      /* S3's own limit on a key, in bytes */
#define S3_LIST_MAX_BYTES (16u * 1024 * 1024) /* a listing page larger than this is refused */
#define S3_ERROR_BODY_MAX (64 * 1024)        /* the part of an error answer that is read */
#define S3_DEFAULT_REGION "us-east-1"

/* ---- s3:// URLs and key encoding ---- */

/* s3://BUCKET or s3://BUCKET/PREFIX. */
struct s3_location {
    char *bucket; /* owned */
    char *prefix; /* owned; "" for the whole bucket; taken as written (no %-decoding) */
};

/* Parses url. The bucket: 3 to 63 characters of a-z A-Z 0-9 . - _ beginning and ending with a
 * letter or digit; the prefix: at most S3_KEY_MAX bytes of valid UTF-8 without control
 * characters. Returns 0, or -1 with a message naming url in err ("s3://: no bucket name"). */
int s3_url_parse(const char *url, struct s3_location *out, char *err, size_t errlen);
void s3_location_free(struct s3_location *l);

/* The bytes s[0..n) percent-encoded as S3 expects (see above), '/' kept when keep_slash, into
 * out (room for 3 * n + 1 bytes), NUL-terminated. Returns the length written. */
size_t s3_encode(const char *s, size_t n, int keep_slash, char *out);

/* Decodes %XX escapes of s[0..n) (and '+' as a space when plus_is_space) into out (room for n +
 * 1 bytes), NUL-terminated, length in *outlen. Returns 0, or -1 on a '%' not followed by two hex
 * digits. */
int s3_decode(const char *s, size_t n, int plus_is_space, char *out, size_t *outlen);

/* ---- configuration and credentials ---- */

struct s3_config;

/* Where a variable is read: get(arg, name) returns its value or NULL. NULL for get: getenv. */
typedef const char *(*s3_getenv_fn)(void *arg, const char *name);

/* Reads the configuration as described above (HOME locates ~/.aws). Returns NULL with a message
 * in err on any error (it never holds a secret). */
struct s3_config *s3_config_load(s3_getenv_fn get, void *arg, char *err, size_t errlen);

/* Wipes the secrets and frees. NULL is a no-op. */
void s3_config_free(struct s3_config *c);

const char *s3_config_region(const struct s3_config *c);
/* The endpoint without a trailing '/', or NULL on AWS. */
const char *s3_config_endpoint(const struct s3_config *c);
/* 1 when a session token is set. */
int s3_config_has_token(const struct s3_config *c);

/* One line for messages: where the credentials came from, the access key ID's last four
 * characters, the region and its source, the endpoint ("credentials from profile "x" in
 * /home/u/.aws/credentials (access key ****MPLE), region eu-west-1 (AWS_REGION), endpoint
 * http://127.0.0.1:9000"). Never a secret. */
void s3_config_describe(const struct s3_config *c, char *buf, size_t len);

/* ---- the client: one bucket ---- */

struct s3_client;

/* A client of bucket with cfg's credentials, region and endpoint (copied: cfg may be freed
 * afterwards). NULL with a message in err when the bucket cannot be addressed or memory runs
 * out. */
struct s3_client *s3_client_new(const struct s3_config *cfg, const char *bucket, char *err, size_t errlen);
void s3_client_free(struct s3_client *c); /* wipes; NULL is a no-op */

/* "s3://BUCKET/KEY" (for rows) of key[0..keylen), malloc'd; NULL when out of memory. */
char *s3_client_row_path(const struct s3_client *c, const char *key, size_t keylen);

/* The URL a GetObject of key[0..keylen) is sent to, malloc'd; NULL when out of memory. */
char *s3_client_object_url(const struct s3_client *c, const char *key, size_t keylen);

/* ---- one request on a caller's handle ---- */

/* Where a 2xx answer goes: the caller's, grown up to limit bytes (0: no limit). An answer larger
 * than limit ends the transfer (S3_FAILED, "larger than ... bytes"), before its first byte when
 * the server sends Content-Length, which then also sizes the buffer once. data is NUL-terminated
 * (one byte past len). Free data with free(). */
struct s3_buf {
    char *data;
    size_t len, cap;
    size_t limit;
};

/* Room in b for need bytes in all (grown by doubling, never past limit + 1): 0, or -1 when out
 * of memory. */
int s3_buf_room(struct s3_buf *b, size_t need);

/* Appends n bytes and keeps data NUL-terminated: 0; 1 when they would take b past its limit
 * (nothing appended); -1 when out of memory. */
int s3_buf_append(struct s3_buf *b, const void *p, size_t n);

/* A 2xx body of length bytes is about to come into b (length -1: the response did not say): 1
 * when it would take b past its limit (nothing changed), -1 when no room for it can be had,
 * else 0, b sized for it once. */
int s3_buf_expect(struct s3_buf *b, long long length);

/* For a header callback, which libcurl gives every line of every response of a transfer (a 1xx's
 * and a redirect's as well as the last one's): 1 at the blank line that ends a response's
 * headers, with that response's status and Content-Length (-1 when it gave none) read through
 * libcurl (CURLINFO_RESPONSE_CODE, curl_easy_header); 0 for any other line, nothing set. */
int s3_headers_done(CURL *h, const char *line, size_t n, long *status, long long *length);

enum s3_outcome { S3_OK, S3_MISSING, S3_RETRY, S3_SETUP, S3_FAILED };

struct s3_result {
    enum s3_outcome outcome;
    long status;      /* the HTTP status; 0 when none came */
    char code[64];    /* S3's error Code, "" when none */
    char region[64];  /* the bucket's region when the answer named it (x-amz-bucket-region or
                         <Region>), else "" */
    char message[320];/* one printable line; never a secret */
};

/* One request's state, between its prepare and its finish. Zero it before its first use;
 * s3_req_free frees what it holds (a finished request may be prepared again). */
struct s3_req {
    struct curl_slist *headers; /* x-amz-content-sha256, x-amz-security-token: wiped when freed */
    char *url;
    struct s3_buf *dst;         /* where a 2xx body goes */
    struct s3_buf err;          /* an error answer's first S3_ERROR_BODY_MAX bytes */
    CURL *easy;                 /* the handle it was prepared on */
    long status;                /* the last response's status, once its headers have come */
    int too_large;              /* the body went over dst->limit */
    int no_memory;
    char bucket_region[64];     /* x-amz-bucket-region */
    char errbuf[CURL_ERROR_SIZE];
};

/* Puts a GetObject of key[0..keylen) on h (reset first, see above), the body going to dst
 * (emptied first; its data is kept for reuse). Returns 0, or -1 with a message in err (out of
 * memory, or a key that is empty or longer than S3_KEY_MAX). */
int s3_get_prepare(struct s3_req *r, const struct s3_client *c, CURL *h, const char *key, size_t keylen,
                   struct s3_buf *dst, char *err, size_t errlen);

/* Puts a HeadObject of key[0..keylen) on h, as s3_get_prepare does a GetObject: no body is
 * read; s3_req_finish's outcome says whether the object is there (S3_OK, S3_MISSING). */
int s3_head_prepare(struct s3_req *r, const struct s3_client *c, CURL *h, const char *key, size_t keylen, char *err,
                    size_t errlen);

/* How the transfer on h ended (cc from curl_easy_perform or the multi's message): fills *res
 * and resets h. */
void s3_req_finish(struct s3_req *r, CURL *h, CURLcode cc, struct s3_result *res);

/* Frees what r holds (wiping the token header); r may then be reused or dropped. */
void s3_req_free(struct s3_req *r);

/* The classification alone (see above): cc the transfer's code, status the HTTP status, code
 * S3's error Code ("" or NULL when none). */
enum s3_outcome s3_classify(CURLcode cc, long status, const char *code);

/* "ok", "missing", "retry", "setup", "failed". */
const char *s3_outcome_name(enum s3_outcome o);

/* ---- a ListObjectsV2 page ---- */

struct s3_object {
    const char *key; /* decoded, NUL-terminated; valid until the page is parsed again or freed */
    size_t key_len;
    int64_t size;
};

/* One page, as read. Zero it before its first use; its storage is reused by the next parse. */
struct s3_page {
    struct s3_object *obj;
    size_t n;
    int truncated;      /* IsTruncated: more pages follow */
    char *next_token;   /* NextContinuationToken, NULL when none */
    int is_error;       /* the document was an <Error>: see code and message */
    char code[64];
    char message[256];
    char region[64];
    /* storage */
    char *arena;
    size_t arena_len, arena_cap, obj_cap;
    size_t next_token_cap;
};

/* Reads the len bytes of one ListObjectsV2 answer (or of an S3 <Error> document) into p.
 * Returns 0 for a page (p->obj, p->n, p->truncated, p->next_token), 1 for an <Error> document
 * (p->code, p->message, p->region), -1 for anything else with the reason in err. */
int s3_page_parse(struct s3_page *p, const char *xml, size_t len, char *err, size_t errlen);
void s3_page_free(struct s3_page *p);

/* ---- the listing ---- */

struct s3_lister;

struct s3_list_opts {
    const char *prefix;      /* NULL or "": the whole bucket */
    const char *start_after; /* NULL: from the beginning; a key: only the keys after it (a resume) */
    int max_keys;            /* objects a page, 1 to 1000; 0: 1000 */
};

/* A listing of c's bucket. Returns NULL with a message in err (out of memory, a bad option). */
struct s3_lister *s3_lister_new(const struct s3_client *c, const struct s3_list_opts *o, char *err, size_t errlen);

/* The next page, with the lister's own handle, blocking. Returns 1 and sets *page (valid until
 * the next call), 0 when the listing has ended (no more pages), or -1 with *res saying why
 * (S3_RETRY: call again, the same page is asked again). */
int s3_lister_next(struct s3_lister *l, const struct s3_page **page, struct s3_result *res);

/* The same in two halves, on a caller's handle (curl-multi): put the next page's request on h
 * (0, or -1 with a message in err; 1 when the listing has ended and nothing was put), then after
 * the transfer read it (same returns as s3_lister_next; h is reset). */
int s3_lister_prepare(struct s3_lister *l, CURL *h, char *err, size_t errlen);
int s3_lister_finish(struct s3_lister *l, CURL *h, CURLcode cc, const struct s3_page **page, struct s3_result *res);

/* Pages and objects returned so far. */
uint64_t s3_lister_pages(const struct s3_lister *l);
uint64_t s3_lister_objects(const struct s3_lister *l);

/* Bytes the lister holds now (its buffers' capacities): flat after the first pages. */
size_t s3_lister_bytes(const struct s3_lister *l);

void s3_lister_free(struct s3_lister *l); /* NULL is a no-op */

#endif
