/* Tests of src/sources/s3 against servers nobody here wrote, started by the tests:
 *
 *   - s3rver (npm, tests/servers/s3rver.js) holding the objects, behind tests/servers/s3sig.py
 *     --upstream, which checks each request's SigV4 signature with botocore before it forwards
 *     it (s3rver itself does not check V4 signatures): listing in pages of 2 and 3 with odd key
 *     names, prefixes, start-after, GetObject byte for byte, NoSuchKey, NoSuchBucket, a wrong
 *     secret (SignatureDoesNotMatch), a wrong access key, 503 SlowDown storms, a refused
 *     connection, requests under curl-multi, and a store that lists out of order;
 *   - s3sig.py --synthetic: a bucket of 20,000 made-up keys answered as AWS does, with
 *     encoding-type=url (keys with spaces, '+', '%', quotes, non-ASCII and dot segments come back
 *     encoded and must be decoded), a session token, another region than the client's;
 *   - negative controls with plain libcurl, to show the checker sees what libcurl 7.88 gets
 *     wrong by itself (no x-amz-content-sha256, an unsorted or non-canonical query).
 *
 * Servers bind 127.0.0.1 on a free port and print "listening on" (listener_start waits for it);
 * each suite stops the servers it started, by PID. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <CUnit/CUnit.h>
#include <curl/curl.h>

#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "pyserver.h"
#include "sources/s3.h"
#include "tree.h"
#include "util.h"

#define KEY "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN "IQoJb3JpZ2luX2VjEXAMPLETOKENc2Vzc2lvbg=="
#define SYNTH_N 20000
#define SYNTH_REGION "eu-west-1"

static struct mock_proc s3rver, proxy, synth;
static char datadir[512];

/* The objects put into s3rver's bucket "photos": key and body. */
static const char *const odd_keys[] = {
    "a b.jpg", "c+d.jpg", "e%f.jpg", "g,h\"i'.jpg", "日本/ü.jpg", "plain.jpg", "z~tilde (1).jpg", "dir/one.png",
    "dir/two three.png", "q?mark=1&x.jpg", "café/naïve.jpg", "semi;colon[1]*.jpg", "at@sign$!.jpg", "empty.jpg",
    "bin/random.bin",
};
#define N_ODD (sizeof odd_keys / sizeof odd_keys[0])
static unsigned char random_body[100 * 1024];

/* The body of odd_keys[i]. */
static void body_of(size_t i, const char **p, size_t *n)
{
    static char text[N_ODD][128];
    if (!strcmp(odd_keys[i], "bin/random.bin")) {
        *p = (const char *)random_body, *n = sizeof random_body;
    } else if (!strcmp(odd_keys[i], "empty.jpg")) {
        *p = "", *n = 0;
    } else {
        *n = (size_t)snprintf(text[i], sizeof text[i], "the bytes of %s", odd_keys[i]);
        *p = text[i];
    }
}

static const char *script(const char *name)
{
    static char buf[4][1024];
    static int turn;
    char *b = buf[turn++ % 4];
    snprintf(b, sizeof buf[0], "tests/servers/%s", name);
    if (access(b, R_OK) == 0)
        return b;
    snprintf(b, sizeof buf[0], "%s", __FILE__);
    char *slash = strrchr(b, '/');
    snprintf(slash ? slash + 1 : b, sizeof buf[0] - (size_t)(slash ? slash + 1 - b : 0), "%s", name);
    return b;
}

static const char *node_modules(void)
{
    const char *m = getenv("S3RVER_NODE_MODULES");
    return m && *m ? m : "build/node/node_modules";
}

/* ---- starting and stopping ---- */

static void stop_all(void)
{
    mock_stop(&proxy);
    mock_stop(&s3rver);
    mock_stop(&synth);
    if (datadir[0]) {
        tree_rm(datadir);
        datadir[0] = '\0';
    }
}

/* PUT straight into s3rver (it takes unsigned requests), the key encoded as the client does. */
static int put_object(const char *bucket, const char *key, const char *body, size_t len)
{
    char url[1024], enc[3 * 256 + 1];
    s3_encode(key, strlen(key), 1, enc);
    snprintf(url, sizeof url, "%s/%s/%s", s3rver.base_url, bucket, enc);
    struct http_opts o = {.method = "PUT", .content_type = "application/octet-stream"};
    long status = 0;
    int rc = http_request(url, &o, body, len, &status, NULL, NULL);
    if (rc != 0 || status != 200)
        fprintf(stderr, "test_s3servers: PUT %s: curl %d, HTTP %ld\n", url, rc, status);
    return rc == 0 && status == 200 ? 0 : -1;
}

/* s3rver with buckets photos (the odd keys), quirk (keys s3rver lists out of order), behind the
 * checking proxy. 1 when running. */
static int s3rver_up(void)
{
    static int registered;
    if (proxy.pid)
        return 1;
    if (!registered++)
        atexit(stop_all);
    if (make_tmpdir(datadir, sizeof datadir, "s3rver") != 0)
        return 0;
    /* s3rver 3.7.1 makes continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider */
    const char *argv[] = {"node", "--openssl-legacy-provider", script("s3rver.js"), node_modules(), datadir,
                          "photos", "quirk", NULL};
    if (listener_start(&s3rver, argv, 0) != 0) {
        fprintf(stderr, "test_s3servers: s3rver did not start (is it installed in %s? make s3rver)\n",
                node_modules());
        return 0;
    }
    uint64_t rng = 0xabcdef12345ull;
    fill_random(&rng, random_body, sizeof random_body);
    for (size_t i = 0; i < N_ODD; i++) {
        const char *b;
        size_t n;
        body_of(i, &b, &n);
        if (put_object("photos", odd_keys[i], b, n) != 0)
            return 0;
    }
    if (put_object("quirk", "x/a.jpg", "1", 1) != 0 || put_object("quirk", "x-b.jpg", "2", 1) != 0)
        return 0;
    const char *pargv[] = {pyserver_python(), script("s3sig.py"), "--key", KEY, "--secret", SECRET, "--upstream",
                           s3rver.base_url, NULL};
    if (listener_start(&proxy, pargv, 0) != 0) {
        fprintf(stderr, "test_s3servers: tests/servers/s3sig.py did not start (python3-botocore?)\n");
        return 0;
    }
    return 1;
}

static int synth_up(void)
{
    static int registered;
    if (synth.pid)
        return 1;
    if (!registered++)
        atexit(stop_all);
    char n[16];
    snprintf(n, sizeof n, "%d", SYNTH_N);
    const char *argv[] = {pyserver_python(), script("s3sig.py"), "--key", KEY, "--secret", SECRET, "--token", TOKEN,
                          "--region", SYNTH_REGION, "--synthetic", n, NULL};
    if (listener_start(&synth, argv, 0) != 0) {
        fprintf(stderr, "test_s3servers: tests/servers/s3sig.py --synthetic did not start\n");
        return 0;
    }
    return 1;
}

static int suite_cleanup(void)
{
    stop_all();
    return 0;
}

/* ---- clients ---- */

struct vars {
    const char *kv[20];
};

static const char *vars_get(void *arg, const char *name)
{
    const struct vars *v = arg;
    for (int i = 0; v->kv[i]; i += 2)
        if (!strcmp(v->kv[i], name))
            return v->kv[i + 1];
    return NULL;
}

static struct s3_client *client(const char *endpoint, const char *bucket, const char *key, const char *secret,
                                const char *token, const char *region)
{
    struct vars v = {{"AWS_ACCESS_KEY_ID", key, "AWS_SECRET_ACCESS_KEY", secret, "AWS_ENDPOINT_URL", endpoint,
                      "AWS_REGION", region, "HOME", "/nonexistent", "AWS_SESSION_TOKEN", token, NULL}};
    if (!token)
        v.kv[10] = NULL;
    char err[400];
    struct s3_config *cfg = s3_config_load(vars_get, &v, err, sizeof err);
    struct s3_client *c = cfg ? s3_client_new(cfg, bucket, err, sizeof err) : NULL;
    if (!c)
        fprintf(stderr, "test_s3servers: client: %s\n", err);
    s3_config_free(cfg);
    return c;
}

static struct s3_client *proxy_client(const char *bucket, const char *secret)
{
    return client(proxy.base_url, bucket, KEY, secret, NULL, "us-east-1");
}

static struct s3_client *synth_client(const char *token, const char *region)
{
    return client(synth.base_url, "synth", KEY, SECRET, token, region);
}

/* A body nobody reads. */
static size_t sink(char *p, size_t s, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return s * n;
}

/* One blocking GetObject. */
static struct s3_result get(const struct s3_client *c, const char *key, struct s3_buf *b)
{
    struct s3_result res;
    memset(&res, 0, sizeof res);
    struct s3_req r = {0};
    char err[200];
    CURL *h = curl_easy_init();
    if (s3_get_prepare(&r, c, h, key, strlen(key), b, err, sizeof err) != 0) {
        res.outcome = S3_FAILED;
        snprintf(res.message, sizeof res.message, "prepare: %s", err);
    } else {
        s3_req_finish(&r, h, curl_easy_perform(h), &res);
    }
    s3_req_free(&r);
    curl_easy_cleanup(h);
    return res;
}

static long stat_of(const struct mock_proc *m, const char *dotted)
{
    char url[160];
    snprintf(url, sizeof url, "%s/__stats", m->base_url);
    long status = 0, v = -1;
    char *body = NULL;
    if (http_request(url, NULL, NULL, 0, &status, &body, NULL) == 0 && status == 200) {
        cJSON *j = cJSON_Parse(body);
        v = mock_stat(j, dotted);
        cJSON_Delete(j);
    }
    free(body);
    return v;
}

static void slowdown(const struct mock_proc *m, int n)
{
    char url[160];
    snprintf(url, sizeof url, "%s/__fault?slowdown=%d", m->base_url, n);
    long status = 0;
    http_post(url, "", 0, &status, NULL);
    CHECKF(status == 200, "setting the SlowDown fault: HTTP %ld", status);
}

/* ---- listing from s3rver ---- */

/* Lists everything of c (retrying S3_RETRY up to retries times), checking each key against
 * want[] (sorted) and counting pages. Returns the number of problems. */
static int list_check(const struct s3_client *c, const struct s3_list_opts *o, char **want, size_t nwant,
                      uint64_t want_pages, int retries)
{
    char err[300];
    struct s3_lister *l = s3_lister_new(c, o, err, sizeof err);
    if (!l) {
        CHECKF(0, "lister: %s", err);
        return 1;
    }
    const struct s3_page *p;
    struct s3_result res;
    size_t got = 0;
    int rc, bad = 0, retried = 0;
    while ((rc = s3_lister_next(l, &p, &res)) != 0) {
        if (rc < 0 && res.outcome == S3_RETRY && retried++ < retries)
            continue;
        if (rc < 0) {
            CHECKF(0, "listing: %s: %s", s3_outcome_name(res.outcome), res.message);
            bad++;
            break;
        }
        for (size_t i = 0; i < p->n; i++, got++) {
            int same = got < nwant && strlen(want[got]) == p->obj[i].key_len &&
                       !memcmp(want[got], p->obj[i].key, p->obj[i].key_len);
            if (!same && bad++ < 5)
                CHECKF(0, "key %zu: got %s, want %s", got, printable(p->obj[i].key, p->obj[i].key_len),
                       got < nwant ? want[got] : "(none)");
        }
    }
    CHECKF(got == nwant && s3_lister_objects(l) == nwant, "%zu keys listed, want %zu", got, nwant);
    CHECKF(want_pages == 0 || s3_lister_pages(l) == want_pages, "%llu pages, want %llu",
           (unsigned long long)s3_lister_pages(l), (unsigned long long)want_pages);
    s3_lister_free(l);
    return bad + (got != nwant);
}

/* The odd keys beginning with prefix, in S3's order (bytes), after start_after. */
static char **want_keys(const char *prefix, const char *after, size_t *n)
{
    char **v = calloc(N_ODD, sizeof *v);
    *n = 0;
    for (size_t i = 0; i < N_ODD; i++)
        if (!strncmp(odd_keys[i], prefix, strlen(prefix)) && (!after || strcmp(odd_keys[i], after) > 0))
            v[(*n)++] = strdup(odd_keys[i]);
    qsort(v, *n, sizeof *v, cmp_strp);
    return v;
}

static void test_list_pages(void)
{
    if (!s3rver_up()) {
        CU_FAIL("s3rver and the checking proxy did not start");
        return;
    }
    size_t n;
    char **want = want_keys("", NULL, &n);
    long verified = stat_of(&proxy, "verified");
    for (int max = 2; max <= 3; max++) {
        struct s3_list_opts o = {.max_keys = max};
        struct s3_client *c = proxy_client("photos", SECRET);
        CHECKF(list_check(c, &o, want, n, (n + (size_t)max - 1) / (size_t)max, 0) == 0, "pages of %d", max);
        s3_client_free(c);
    }
    /* every page was a request that botocore's signature check accepted */
    long pages = (long)((n + 1) / 2 + (n + 2) / 3);
    CHECKF(stat_of(&proxy, "verified") - verified == pages, "verified %ld requests, want %ld",
           stat_of(&proxy, "verified") - verified, pages);
    free_strs(want, n);
}

static void test_list_prefix_and_resume(void)
{
    if (!s3rver_up()) {
        CU_FAIL("s3rver and the checking proxy did not start");
        return;
    }
    static const struct {
        const char *prefix, *after;
    } t[] = {{"dir/", NULL}, {"日本/", NULL}, {"café/", NULL}, {"", "dir/one.png"}, {"", "c+d.jpg"},
             {"nothing/", NULL}, {"", "zz"}};
    struct s3_client *c = proxy_client("photos", SECRET);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        size_t n;
        char **want = want_keys(t[i].prefix, t[i].after, &n);
        struct s3_list_opts o = {.prefix = t[i].prefix, .start_after = t[i].after, .max_keys = 2};
        CHECKF(list_check(c, &o, want, n, n ? (n + 1) / 2 : 1, 0) == 0, "prefix \"%s\", start after \"%s\"",
               t[i].prefix, t[i].after ? t[i].after : "");
        free_strs(want, n);
    }
    s3_client_free(c);
}

/* s3rver walks its folders in name order, so "x/a.jpg" comes before "x-b.jpg" though '-' sorts
 * before '/': the lister must refuse such a listing rather than go on. */
static void test_list_out_of_order(void)
{
    if (!s3rver_up()) {
        CU_FAIL("s3rver and the checking proxy did not start");
        return;
    }
    struct s3_client *c = proxy_client("quirk", SECRET);
    char err[200];
    struct s3_lister *l = s3_lister_new(c, NULL, err, sizeof err);
    const struct s3_page *p;
    struct s3_result res;
    int rc = s3_lister_next(l, &p, &res);
    CHECKF(rc == -1 && res.outcome == S3_FAILED && strstr(res.message, "not in key order"), "rc %d: %s %s", rc,
           s3_outcome_name(res.outcome), res.message);
    s3_lister_free(l);
    s3_client_free(c);
}

/* ---- objects from s3rver ---- */

static void test_get_objects(void)
{
    if (!s3rver_up()) {
        CU_FAIL("s3rver and the checking proxy did not start");
        return;
    }
    struct s3_client *c = proxy_client("photos", SECRET);
    struct s3_buf b = {.limit = 1024 * 1024};
    for (size_t i = 0; i < N_ODD; i++) {
        const char *body;
        size_t n;
        body_of(i, &body, &n);
        struct s3_result r = get(c, odd_keys[i], &b);
        CHECKF(r.outcome == S3_OK && r.status == 200 && b.len == n && (n == 0 || !memcmp(b.data, body, n)),
               "%s: %s %ld, %zu bytes (want %zu): %s", odd_keys[i], s3_outcome_name(r.outcome), r.status, b.len, n,
               r.message);
    }
    /* Content-Length sized the buffer once */
    CU_ASSERT(b.cap >= sizeof random_body);
    /* over the caller's limit: refused, a failed row */
    b.limit = 1000;
    struct s3_result r = get(c, "bin/random.bin", &b);
    CHECKF(r.outcome == S3_FAILED && strstr(r.message, "larger than 1000 bytes") && b.len <= 1000, "%s: %s",
           s3_outcome_name(r.outcome), r.message);
    free(b.data);
    s3_client_free(c);
}

static void test_get_missing(void)
{
    if (!s3rver_up()) {
        CU_FAIL("s3rver and the checking proxy did not start");
        return;
    }
    struct s3_client *c = proxy_client("photos", SECRET);
    struct s3_buf b = {.limit = 1024};
    struct s3_result r = get(c, "deleted since the listing.jpg", &b);
    CHECKF(r.outcome == S3_MISSING && r.status == 404 && !strcmp(r.code, "NoSuchKey") && strstr(r.message, "NoSuchKey")
               && b.len == 0,
           "%s %ld %s: %s", s3_outcome_name(r.outcome), r.status, r.code, r.message);
    s3_client_free(c);
    /* a missing bucket: a set-up error, for a GetObject and for the listing */
    c = proxy_client("no-such-bucket", SECRET);
    r = get(c, "a.jpg", &b);
    CHECKF(r.outcome == S3_SETUP && !strcmp(r.code, "NoSuchBucket"), "GET: %s %s: %s", s3_outcome_name(r.outcome),
           r.code, r.message);
    char err[200];
    struct s3_lister *l = s3_lister_new(c, NULL, err, sizeof err);
    const struct s3_page *p;
    int rc = s3_lister_next(l, &p, &r);
    CHECKF(rc == -1 && r.outcome == S3_SETUP && !strcmp(r.code, "NoSuchBucket") && strstr(r.message, "NoSuchBucket"),
           "list: rc %d %s %s: %s", rc, s3_outcome_name(r.outcome), r.code, r.message);
    s3_lister_free(l);
    s3_client_free(c);
    free(b.data);
}

/* A wrong secret, a wrong access key: set-up errors naming S3's Code, never the secret. */
static void test_wrong_credentials(void)
{
    if (!s3rver_up()) {
        CU_FAIL("s3rver and the checking proxy did not start");
        return;
    }
    static const char wrong[] = "WRONGsecretWRONGsecretWRONGsecret0123456";
    long rejected = stat_of(&proxy, "rejected.SignatureDoesNotMatch");
    struct s3_client *c = proxy_client("photos", wrong);
    struct s3_buf b = {.limit = 1024};
    struct s3_result r = get(c, "plain.jpg", &b);
    CHECKF(r.outcome == S3_SETUP && r.status == 403 && !strcmp(r.code, "SignatureDoesNotMatch") &&
               strstr(r.message, "SignatureDoesNotMatch") && !strstr(r.message, wrong) && !strstr(r.message, SECRET) &&
               b.len == 0,
           "GET: %s %ld %s: %s", s3_outcome_name(r.outcome), r.status, r.code, r.message);
    char err[200];
    struct s3_lister *l = s3_lister_new(c, NULL, err, sizeof err);
    const struct s3_page *p;
    int rc = s3_lister_next(l, &p, &r);
    CHECKF(rc == -1 && r.outcome == S3_SETUP && !strcmp(r.code, "SignatureDoesNotMatch") && !strstr(r.message, wrong),
           "list: rc %d %s: %s", rc, s3_outcome_name(r.outcome), r.message);
    s3_lister_free(l);
    s3_client_free(c);
    CHECKF(stat_of(&proxy, "rejected.SignatureDoesNotMatch") - (rejected < 0 ? 0 : rejected) == 2,
           "the checker rejected %ld requests", stat_of(&proxy, "rejected.SignatureDoesNotMatch"));
    c = client(proxy.base_url, "photos", "AKIAOTHERKEY00000000", SECRET, NULL, "us-east-1");
    r = get(c, "plain.jpg", &b);
    CHECKF(r.outcome == S3_SETUP && !strcmp(r.code, "InvalidAccessKeyId"), "other key: %s %s: %s",
           s3_outcome_name(r.outcome), r.code, r.message);
    s3_client_free(c);
    free(b.data);
}

static void test_slowdown_and_faults(void)
{
    if (!s3rver_up()) {
        CU_FAIL("s3rver and the checking proxy did not start");
        return;
    }
    struct s3_client *c = proxy_client("photos", SECRET);
    struct s3_buf b = {.limit = 1024};
    slowdown(&proxy, 3);
    for (int i = 0; i < 3; i++) {
        struct s3_result r = get(c, "plain.jpg", &b);
        CHECKF(r.outcome == S3_RETRY && r.status == 503 && !strcmp(r.code, "SlowDown"), "try %d: %s %ld %s", i,
               s3_outcome_name(r.outcome), r.status, r.message);
    }
    struct s3_result r = get(c, "plain.jpg", &b);
    CHECKF(r.outcome == S3_OK && b.len == strlen("the bytes of plain.jpg"), "after the storm: %s", r.message);
    /* a storm in the middle of a listing: the same page is asked again; nothing lost or doubled */
    size_t n;
    char **want = want_keys("", NULL, &n);
    slowdown(&proxy, 4);
    struct s3_list_opts o = {.max_keys = 3};
    CHECKF(list_check(c, &o, want, n, (n + 2) / 3, 4) == 0, "listing through 4 SlowDowns");
    free_strs(want, n);
    s3_client_free(c);
    /* a refused connection: retry */
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", e2e_closed_port());
    c = client(ep, "photos", KEY, SECRET, NULL, "us-east-1");
    r = get(c, "plain.jpg", &b);
    CHECKF(r.outcome == S3_RETRY && r.status == 0 && strstr(r.message, "S3: "), "refused: %s: %s",
           s3_outcome_name(r.outcome), r.message);
    s3_client_free(c);
    free(b.data);
}

/* Runs the multi handle until every transfer ended, finishing each as it ends (its index in
 * CURLOPT_PRIVATE) and checking its body. Returns how many ended. */
static int run_multi(CURLM *m, struct s3_req *r, struct s3_buf *b)
{
    int running = 1, done = 0;
    long deadline = now_ms() + tmo(20) * 1000L;
    while ((running || done < (int)N_ODD) && now_ms() < deadline) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            CURLcode cc = msg->data.result;
            void *priv = NULL;
            curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
            size_t i = (size_t)(uintptr_t)priv;
            curl_multi_remove_handle(m, e);
            struct s3_result res;
            s3_req_finish(&r[i], e, cc, &res);
            const char *body;
            size_t n;
            body_of(i, &body, &n);
            CHECKF(res.outcome == S3_OK && b[i].len == n && (n == 0 || !memcmp(b[i].data, body, n)), "%s: %s",
                   odd_keys[i], res.message);
            done++;
        }
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    return done;
}

/* The requests on handles a curl-multi loop drives; and a finished handle keeps no credentials. */
static void test_multi_and_reset(void)
{
    if (!s3rver_up()) {
        CU_FAIL("s3rver and the checking proxy did not start");
        return;
    }
    struct s3_client *c = proxy_client("photos", SECRET);
    CURLM *m = curl_multi_init();
    CURL *h[N_ODD];
    struct s3_req r[N_ODD];
    struct s3_buf b[N_ODD];
    memset(r, 0, sizeof r);
    memset(b, 0, sizeof b);
    char err[200];
    for (size_t i = 0; i < N_ODD; i++) {
        h[i] = curl_easy_init();
        b[i].limit = 1024 * 1024;
        CU_ASSERT_FATAL(s3_get_prepare(&r[i], c, h[i], odd_keys[i], strlen(odd_keys[i]), &b[i], err, sizeof err) == 0);
        curl_easy_setopt(h[i], CURLOPT_PRIVATE, (void *)(uintptr_t)i); /* after prepare: the caller's own */
        curl_multi_add_handle(m, h[i]);
    }
    int done = run_multi(m, r, b);
    CHECKF(done == (int)N_ODD, "%d of %zu transfers ended", done, N_ODD);
    /* h[0] was reset by s3_req_finish: the same handle, pointed at the bucket again, is now an
     * anonymous request, which the checker refuses */
    char url[256];
    snprintf(url, sizeof url, "%s/photos/plain.jpg", proxy.base_url);
    curl_easy_setopt(h[0], CURLOPT_URL, url);
    curl_easy_setopt(h[0], CURLOPT_WRITEFUNCTION, sink);
    long status = 0;
    CURLcode cc = curl_easy_perform(h[0]);
    curl_easy_getinfo(h[0], CURLINFO_RESPONSE_CODE, &status);
    CHECKF(cc == CURLE_OK && status == 403, "after s3_req_finish: curl %d, HTTP %ld (want 403: no signature)",
           (int)cc, status);
    for (size_t i = 0; i < N_ODD; i++) {
        s3_req_free(&r[i]);
        free(b[i].data);
        curl_easy_cleanup(h[i]);
    }
    curl_multi_cleanup(m);
    s3_client_free(c);
}

/* ---- the synthetic bucket: what AWS sends ---- */

static void synth_key(size_t i, char *out, size_t cap)
{
    static const char *const suffix[] = {".jpg", " space.jpg", "+plus%pct.jpg", ",comma\"quote'.jpg",
                                         " é ü 日本.jpg", "/./dot/../seg.jpg"};
    snprintf(out, cap, "syn/%08zu%s", i, suffix[i % 6]);
}

/* Lists the synthetic bucket from first (through a start key or a prefix), checking each key,
 * with a storm of three SlowDowns after page 3. Returns the number of keys seen; *bytes5 (may be
 * NULL) gets the lister's bytes after page 5 (after the storm), *bytes_end at the end. */
static size_t synth_list(const struct s3_client *c, const struct s3_list_opts *o, size_t first, size_t *bytes5,
                         size_t *bytes_end)
{
    char err[200], want[128];
    struct s3_lister *l = s3_lister_new(c, o, err, sizeof err);
    const struct s3_page *p;
    struct s3_result res;
    size_t i = first, bad = 0;
    int rc, retries = 0;
    while ((rc = s3_lister_next(l, &p, &res)) != 0) {
        if (rc < 0 && res.outcome == S3_RETRY && retries++ < 10)
            continue;
        if (rc < 0) {
            CHECKF(0, "listing: %s", res.message);
            break;
        }
        for (size_t k = 0; k < p->n; k++, i++) {
            synth_key(i, want, sizeof want);
            if ((strlen(want) != p->obj[k].key_len || memcmp(want, p->obj[k].key, p->obj[k].key_len) ||
                 p->obj[k].size != (int64_t)strlen(want)) && bad++ < 5)
                CHECKF(0, "key %zu: %s, want %s", i, printable(p->obj[k].key, p->obj[k].key_len), want);
        }
        if (s3_lister_pages(l) == 5 && bytes5)
            *bytes5 = s3_lister_bytes(l);
        if (s3_lister_pages(l) == 3)
            slowdown(&synth, 3);
    }
    if (bytes_end)
        *bytes_end = s3_lister_bytes(l);
    CHECKF(retries == 3 || s3_lister_pages(l) <= 3, "%d SlowDowns retried, want 3", retries);
    s3_lister_free(l);
    return i - first;
}

static void test_synth_list_all(void)
{
    if (!synth_up()) {
        CU_FAIL("tests/servers/s3sig.py --synthetic did not start");
        return;
    }
    struct s3_client *c = synth_client(TOKEN, SYNTH_REGION);
    struct s3_list_opts o = {.max_keys = 1000};
    size_t b5 = 0, bend = 0;
    size_t n = synth_list(c, &o, 0, &b5, &bend);
    CHECKF(n == SYNTH_N, "%zu keys, want %d", n, SYNTH_N);
    /* memory is that of one page (and one error answer), whatever the bucket holds */
    CHECKF(b5 > 0 && bend <= b5 + 64 && bend < 1024 * 1024, "lister bytes after page 5: %zu, at the end: %zu", b5,
           bend);
    s3_client_free(c);
}

static void test_synth_prefix_resume(void)
{
    if (!synth_up()) {
        CU_FAIL("tests/servers/s3sig.py --synthetic did not start");
        return;
    }
    struct s3_client *c = synth_client(TOKEN, SYNTH_REGION);
    struct s3_list_opts o = {.prefix = "syn/000123", .max_keys = 7};
    CHECKF(synth_list(c, &o, 12300, NULL, NULL) == 100, "prefix syn/000123");
    char after[128];
    synth_key(4567, after, sizeof after);
    struct s3_list_opts r = {.start_after = after, .max_keys = 500};
    CHECKF(synth_list(c, &r, 4568, NULL, NULL) == SYNTH_N - 4568, "start after %s", after);
    /* odd keys by GetObject: the body is the key */
    struct s3_buf b = {.limit = 4096};
    for (size_t i = 0; i < 12; i++) {
        char k[128];
        synth_key(i * 1001, k, sizeof k);
        struct s3_result res = get(c, k, &b);
        CHECKF(res.outcome == S3_OK && b.len == strlen(k) && !memcmp(b.data, k, b.len), "%s: %s", k, res.message);
    }
    free(b.data);
    s3_client_free(c);
}

static void test_synth_token_region(void)
{
    if (!synth_up()) {
        CU_FAIL("tests/servers/s3sig.py --synthetic did not start");
        return;
    }
    struct s3_buf b = {.limit = 4096};
    struct s3_client *c = synth_client(NULL, SYNTH_REGION);
    struct s3_result r = get(c, "syn/00000000.jpg", &b);
    CHECKF(r.outcome == S3_SETUP && !strcmp(r.code, "InvalidToken"), "no token: %s %s: %s", s3_outcome_name(r.outcome),
           r.code, r.message);
    s3_client_free(c);
    c = synth_client(TOKEN, "us-east-1");
    r = get(c, "syn/00000000.jpg", &b);
    CHECKF(r.outcome == S3_SETUP && !strcmp(r.code, "AuthorizationHeaderMalformed") &&
               !strcmp(r.region, SYNTH_REGION) && strstr(r.message, "AWS_REGION=" SYNTH_REGION) &&
               !strstr(r.message, TOKEN),
           "other region: %s %s [%s]: %s", s3_outcome_name(r.outcome), r.code, r.region, r.message);
    s3_client_free(c);
    free(b.data);
}

/* ---- the checker's negative controls, with plain libcurl ---- */

/* A listing request signed by libcurl alone, with or without x-amz-content-sha256, its query as
 * given. Returns the HTTP status. */
static long raw_signed(const char *query, int with_sha)
{
    CURL *h = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "%s/photos?%s", proxy.base_url, query);
    struct curl_slist *hl = with_sha ? curl_slist_append(NULL, "x-amz-content-sha256: "
                                                               "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                                     : NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
    curl_easy_setopt(h, CURLOPT_USERNAME, KEY);
    curl_easy_setopt(h, CURLOPT_PASSWORD, SECRET);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return status;
}

static void test_checker_controls(void)
{
    if (!s3rver_up()) {
        CU_FAIL("s3rver and the checking proxy did not start");
        return;
    }
    long before = stat_of(&proxy, "verified");
    CHECKF(raw_signed("list-type=2&max-keys=1", 1) == 200, "sorted, canonical, with the payload hash: accepted");
    CHECKF(raw_signed("list-type=2&max-keys=1", 0) == 400, "no x-amz-content-sha256: InvalidRequest");
    CHECKF(raw_signed("max-keys=1&list-type=2", 1) == 403, "an unsorted query: SignatureDoesNotMatch");
    CHECKF(raw_signed("list-type=2&prefix=dir/", 1) == 403, "a '/' not encoded in a value: SignatureDoesNotMatch");
    CHECKF(raw_signed("list-type=2&prefix=dir%2F", 1) == 200, "the same value encoded: accepted");
    CHECKF(stat_of(&proxy, "verified") - before == 2, "verified %ld", stat_of(&proxy, "verified") - before);
}

/* ---- one client shared by threads ---- */

struct worker {
    const struct s3_client *c;
    int first, ok;
};

static void *fetch_some(void *arg)
{
    struct worker *w = arg;
    struct s3_buf b = {.limit = 4096};
    CURL *h = curl_easy_init();
    struct s3_req r = {0};
    char err[200], k[128];
    for (int i = 0; i < 25; i++) {
        synth_key((size_t)(w->first + i * 7), k, sizeof k);
        struct s3_result res;
        if (s3_get_prepare(&r, w->c, h, k, strlen(k), &b, err, sizeof err) != 0)
            continue;
        s3_req_finish(&r, h, curl_easy_perform(h), &res);
        w->ok += res.outcome == S3_OK && b.len == strlen(k) && !memcmp(b.data, k, b.len);
    }
    s3_req_free(&r);
    curl_easy_cleanup(h);
    free(b.data);
    return NULL;
}

static void test_concurrent_gets(void)
{
    if (!synth_up()) {
        CU_FAIL("tests/servers/s3sig.py --synthetic did not start");
        return;
    }
    struct s3_client *c = synth_client(TOKEN, SYNTH_REGION);
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){c, i * 1000, 0};
        pthread_create(&t[i], NULL, fetch_some, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECKF(w[i].ok == 25, "thread %d: %d of 25 objects right", i, w[i].ok);
    }
    s3_client_free(c);
}

int register_s3_servers(void)
{
    CU_pSuite a = CU_add_suite("s3 s3rver", NULL, suite_cleanup);
    CU_pSuite b = CU_add_suite("s3 synthetic", NULL, suite_cleanup);
    CU_pSuite t = CU_add_suite("s3 concurrent", NULL, suite_cleanup);
    if (!a || !b || !t)
        return -1;
    if (!CU_add_test(a, "pages of 2 and 3, odd keys, signatures checked", test_list_pages) ||
        !CU_add_test(a, "prefixes and start-after", test_list_prefix_and_resume) ||
        !CU_add_test(a, "a store listing out of order is refused", test_list_out_of_order) ||
        !CU_add_test(a, "GetObject byte for byte, and the size limit", test_get_objects) ||
        !CU_add_test(a, "NoSuchKey, NoSuchBucket", test_get_missing) ||
        !CU_add_test(a, "wrong secret, wrong access key", test_wrong_credentials) ||
        !CU_add_test(a, "SlowDown storms, a refused connection", test_slowdown_and_faults) ||
        !CU_add_test(a, "under curl-multi; a finished handle keeps no credentials", test_multi_and_reset) ||
        !CU_add_test(a, "the checker catches libcurl 7.88's own signing", test_checker_controls) ||
        !CU_add_test(b, "20,000 url-encoded keys in pages of 1000, flat memory", test_synth_list_all) ||
        !CU_add_test(b, "prefix, start-after, GetObject of odd keys", test_synth_prefix_resume) ||
        !CU_add_test(b, "session token, another region", test_synth_token_region) ||
        !CU_add_test(t, "threads sharing one client", test_concurrent_gets))
        return -1;
    return 0;
}
