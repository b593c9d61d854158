/* Tests for the mock model server's capacity, batches and threads ($MOCK_BIN as a child
 * through util_proc): K slots and a FIFO, the queue bound (503 + Retry-After at once), the cost
 * a + b x images, batch answers equal to single answers, --batch-max, per-endpoint settings,
 * the command line, and --threads with /stats summed over the loops.
 *
 * Two suites: "mock capacity", and "mock threads concurrent", which make tsan runs against the
 * ThreadSanitizer build of the mock. The machine is shared and noisy: times are checked from
 * below (a timer never fires early) and by order, with wide margins above; the counts in
 * /stats carry the rest. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <CUnit/CUnit.h>
#include <curl/curl.h>

#include "common/b64.h"
#include "check.h"
#include "mock/answers.h"
#include "proc.h"
#include "util.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

struct image {
    unsigned char p[200];
    size_t n;
};

static void random_image(struct image *im)
{
    im->n = 1 + (size_t)(rng() % sizeof im->p);
    for (size_t i = 0; i < im->n; i++)
        im->p[i] = (unsigned char)(rng() >> 56);
}

/* The model_03 to send with an image: its model_03 answer for model 4, null otherwise. */
static char *m03_for(int m, const struct image *im)
{
    if (m != 4)
        return strdup("null");
    cJSON *a = mock_answer(3, im->p, im->n);
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

/* [{"im_str": ..., "model_03": ...}, ...] for n images, malloc'd. */
static char *batch_body(int m, const struct image *ims, int n)
{
    size_t cap = 16;
    for (int i = 0; i < n; i++)
        cap += b64_encoded_len(ims[i].n) + 1200;
    char *body = malloc(cap);
    size_t k = 0;
    body[k++] = '[';
    for (int i = 0; i < n; i++) {
        char *m03 = m03_for(m, &ims[i]);
        k += (size_t)snprintf(body + k, cap - k, "%s{\"im_str\": \"", i ? ", " : "");
        k += b64_encode(ims[i].p, ims[i].n, body + k);
        k += (size_t)snprintf(body + k, cap - k, "\", \"model_03\": %s}", m03);
        free(m03);
    }
    snprintf(body + k, cap - k, "]");
    return body;
}

static char *hello_body(void)
{
    return strdup("[{\"im_str\": \"aGVsbG8=\", \"model_03\": null}]");
}

/* Under MOCK_WRAP (valgrind) the mock is many times slower: keep the lower bounds on times,
 * which a timer never breaks, and stretch the upper ones. */
static long slack(long ms)
{
    const char *w = getenv("MOCK_WRAP");
    return w && *w ? ms * 20 : ms;
}

static const char *url(const struct mock_proc *m, const char *path)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s%s", m->base_url, path);
    return buf;
}

static int start_with(struct mock_proc *m, const char *const args[])
{
    int rc = mock_start(m, args);
    CU_ASSERT_EQUAL(rc, 0);
    return rc;
}

/* An endpoint's figure in /stats: ep_stat(s, "model_03", "peak_in_service"). */
static long ep_stat(const cJSON *stats, const char *model, const char *field)
{
    char key[96];
    snprintf(key, sizeof key, "endpoints.%s.%s", model, field);
    return mock_stat(stats, key);
}

/* One transfer of a parallel round. */
struct xfer {
    char url[256];
    const char *body;       /* borrowed */
    long timeout_ms;        /* 0: 10 s */
    /* results */
    long status;
    long ms;                /* total time of the transfer */
    int rc;                 /* CURLcode */
    char *resp, *headers;   /* malloc'd, freed by xfer_free */
    size_t resp_len, headers_len;
};

static size_t grow(char **buf, size_t *len, const char *ptr, size_t n)
{
    char *p = realloc(*buf, *len + n + 1);
    if (!p)
        return 0;
    memcpy(p + *len, ptr, n);
    *buf = p;
    *len += n;
    p[*len] = '\0';
    return n;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    return grow(&x->resp, &x->resp_len, ptr, size * nmemb);
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    return grow(&x->headers, &x->headers_len, ptr, size * nmemb);
}

/* Runs the n transfers at once, each on a connection of its own. */
static void run_parallel(struct xfer *xs, int n)
{
    CURLM *multi = curl_multi_init();
    CURL **easy = calloc((size_t)n, sizeof *easy);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    for (int i = 0; i < n; i++) {
        struct xfer *x = &xs[i];
        CURL *e = easy[i] = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, x->url);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms ? x->timeout_ms : 10000L);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(e, CURLOPT_PRIVATE, x);
        curl_multi_add_handle(multi, e);
    }
    int running = 1;
    while (running) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct xfer *x;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            x->rc = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &x->status);
            curl_off_t us = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_TOTAL_TIME_T, &us);
            x->ms = (long)(us / 1000);
        }
        if (running)
            curl_multi_poll(multi, NULL, 0, 50, NULL);
    }
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    free(easy);
    curl_slist_free_all(hl);
    curl_multi_cleanup(multi);
}

static void xfer_free(struct xfer *xs, int n)
{
    for (int i = 0; i < n; i++) {
        free(xs[i].resp);
        free(xs[i].headers);
        xs[i].resp = xs[i].headers = NULL;
        xs[i].resp_len = xs[i].headers_len = 0;
        xs[i].status = xs[i].ms = 0;
        xs[i].rc = 0;
    }
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* 1 when the answer body is {"result": want}. */
static int result_is(const char *resp, const cJSON *want)
{
    cJSON *j = cJSON_Parse(resp);
    int ok = cJSON_IsObject(j) && cJSON_GetArraySize(j) == 1
             && cJSON_Compare(cJSON_GetObjectItemCaseSensitive(j, "result"), want, 1);
    cJSON_Delete(j);
    return ok;
}

/* The list of the answers model m gives to each image alone. */
static cJSON *expected_list(int m, const struct image *ims, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, mock_answer(m, ims[i].p, ims[i].n));
    return a;
}

/* ok + rejected + faults + queue_full = total, once nothing is in flight. */
static void check_books(const cJSON *s)
{
    long sum = mock_stat(s, "ok") + mock_stat(s, "rejected") + mock_stat(s, "queue_full");
    static const char *const f[] = {"error", "429", "reset", "hang", "garbage"};
    for (int i = 0; i < 5; i++) {
        char key[32];
        snprintf(key, sizeof key, "faults.%s", f[i]);
        sum += mock_stat(s, key);
    }
    CHECKF(sum == mock_stat(s, "total"), "ok+rejected+faults+queue_full %ld, total %ld", sum,
           mock_stat(s, "total"));
}

/* ---- capacity --------------------------------------------------------------------------- */

/* K = 2, 50 ms: of 4 requests sent at once, two are served at once and two wait for them. */
static void test_capacity_fifo(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--capacity", "2", "--latency-ms", "50", NULL}) != 0)
        return;
    char *body = hello_body();
    struct xfer xs[4];
    memset(xs, 0, sizeof xs);
    for (int i = 0; i < 4; i++) {
        snprintf(xs[i].url, sizeof xs[i].url, "%s", url(&m, "/model_02"));
        xs[i].body = body;
    }
    run_parallel(xs, 4);
    long t[4];
    for (int i = 0; i < 4; i++) {
        CHECKF(xs[i].rc == 0 && xs[i].status == 200, "transfer %d: rc %d status %ld", i, xs[i].rc,
               xs[i].status);
        t[i] = xs[i].ms;
    }
    qsort(t, 4, sizeof t[0], cmp_long);
    /* A timer never fires early: the first two take 50 ms or more, the last two 100 or more. */
    CHECKF(t[0] >= 49 && t[1] >= 49, "first two took %ld and %ld ms", t[0], t[1]);
    CHECKF(t[2] >= 99 && t[3] >= 99, "last two took %ld and %ld ms", t[2], t[3]);
    CHECKF(t[3] < slack(3000), "the last took %ld ms", t[3]);
    CHECKF(t[1] + 25 <= t[2] || slack(1) > 1, "no gap between the pairs: %ld %ld %ld %ld ms", t[0], t[1], t[2], t[3]);
    cJSON *s = mock_stats(&m);
    CHECKF(ep_stat(s, "model_02", "capacity") == 2, "capacity %ld", ep_stat(s, "model_02", "capacity"));
    CHECKF(ep_stat(s, "model_02", "peak_in_service") == 2, "peak in service %ld",
           ep_stat(s, "model_02", "peak_in_service"));
    CHECKF(ep_stat(s, "model_02", "peak_queued") == 2, "peak queued %ld",
           ep_stat(s, "model_02", "peak_queued"));
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "in_service"), 0);
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "queued"), 0);
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "queue_full"), 0);
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "ok"), 4);
    CU_ASSERT_EQUAL(mock_stat(s, "ok"), 4);
    check_books(s);
    /* /stats/reset restarts the peaks from what is in flight now: nothing. */
    long status = 0;
    CU_ASSERT_EQUAL(http_post(url(&m, "/stats/reset"), "", 0, &status, NULL), 0);
    cJSON_Delete(s);
    s = mock_stats(&m);
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "peak_in_service"), 0);
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "peak_queued"), 0);
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "ok"), 0);
    cJSON_Delete(s);
    xfer_free(xs, 4);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* K = 1, Q = 1: of 4 requests at once, one is served, one waits, two are turned away at once
 * with 503 and Retry-After. */
static void test_queue_bound(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--capacity", "1", "--queue-max", "1", "--latency-ms",
                                             "400", "--retry-after", "7", NULL}) != 0)
        return;
    char *body = hello_body();
    struct xfer xs[4];
    memset(xs, 0, sizeof xs);
    for (int i = 0; i < 4; i++) {
        snprintf(xs[i].url, sizeof xs[i].url, "%s", url(&m, "/model_05"));
        xs[i].body = body;
    }
    run_parallel(xs, 4);
    int ok = 0, full = 0;
    for (int i = 0; i < 4; i++) {
        if (xs[i].status == 200) {
            ok++;
            CHECKF(xs[i].ms >= 399, "a served request took %ld ms", xs[i].ms);
        } else if (xs[i].status == 503) {
            full++;
            CHECKF(xs[i].ms < slack(300), "a 503 took %ld ms: it should come at once", xs[i].ms);
            CHECKF(xs[i].headers && strcasestr(xs[i].headers, "\nRetry-After: 7\r\n"),
                   "503 headers: %s", xs[i].headers ? xs[i].headers : "(none)");
            cJSON *j = cJSON_Parse(xs[i].resp);
            const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
            CHECKF(cJSON_IsString(err) && strstr(err->valuestring, "queue"), "503 body: %s",
                   xs[i].resp);
            cJSON_Delete(j);
        }
    }
    CU_ASSERT_EQUAL(ok, 2);
    CU_ASSERT_EQUAL(full, 2);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(ep_stat(s, "model_05", "queue_full"), 2);
    CU_ASSERT_EQUAL(mock_stat(s, "queue_full"), 2);
    CU_ASSERT_EQUAL(ep_stat(s, "model_05", "peak_in_service"), 1);
    CU_ASSERT_EQUAL(ep_stat(s, "model_05", "peak_queued"), 1);
    CU_ASSERT_EQUAL(mock_stat(s, "requests.model_05"), 4);
    CU_ASSERT_EQUAL(mock_stat(s, "ok"), 2);
    check_books(s);
    cJSON_Delete(s);
    xfer_free(xs, 4);

    /* --queue-max 0: no waiting at all, busy means 503. */
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
    if (start_with(&m, (const char *const[]){"--capacity", "1", "--queue-max", "0", "--latency-ms",
                                             "300", NULL}) != 0) {
        free(body);
        return;
    }
    memset(xs, 0, sizeof xs);
    for (int i = 0; i < 3; i++) {
        snprintf(xs[i].url, sizeof xs[i].url, "%s", url(&m, "/model_01"));
        xs[i].body = body;
    }
    run_parallel(xs, 3);
    ok = full = 0;
    for (int i = 0; i < 3; i++) {
        ok += xs[i].status == 200;
        full += xs[i].status == 503;
    }
    CU_ASSERT_EQUAL(ok, 1);
    CU_ASSERT_EQUAL(full, 2);
    xfer_free(xs, 3);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* A client that gives up while waiting leaves the queue; the next one is served in its turn. */
static void test_queue_cancel(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--capacity", "1", "--latency-ms", "300", NULL}) != 0)
        return;
    char *body = hello_body();
    struct xfer xs[3];
    memset(xs, 0, sizeof xs);
    for (int i = 0; i < 3; i++) {
        snprintf(xs[i].url, sizeof xs[i].url, "%s", url(&m, "/model_03"));
        xs[i].body = body;
        xs[i].timeout_ms = i == 0 ? 0 : 100; /* the two waiting ones give up */
    }
    run_parallel(xs, 3);
    int ok = 0, gave_up = 0;
    for (int i = 0; i < 3; i++) {
        ok += xs[i].status == 200;
        gave_up += xs[i].rc == CURLE_OPERATION_TIMEDOUT;
    }
    CU_ASSERT_EQUAL(ok, 1);
    CU_ASSERT_EQUAL(gave_up, 2);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(ep_stat(s, "model_03", "queued"), 0);
    CU_ASSERT_EQUAL(ep_stat(s, "model_03", "in_service"), 0);
    CU_ASSERT_EQUAL(ep_stat(s, "model_03", "peak_queued"), 2);
    cJSON_Delete(s);
    /* The slot is free: one more is served in one service time, not three. */
    long status = 0, t0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
    CU_ASSERT_EQUAL(http_post(url(&m, "/model_03"), body, strlen(body), &status, NULL), 0);
    CU_ASSERT_EQUAL(status, 200);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long took = ts.tv_sec * 1000L + ts.tv_nsec / 1000000 - t0;
    CHECKF(took >= 299 && took < slack(850), "took %ld ms", took);
    xfer_free(xs, 3);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* ---- batches ---------------------------------------------------------------------------- */

static void post(const struct mock_proc *m, int model, const char *body, long *status, char **resp)
{
    char path[16];
    snprintf(path, sizeof path, "/model_%02d", model);
    *status = 0;
    *resp = NULL;
    CU_ASSERT_EQUAL(http_post(url(m, path), body, strlen(body), status, resp), 0);
}

static const char *error_of(const char *resp, char *buf, size_t len)
{
    cJSON *j = cJSON_Parse(resp);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    snprintf(buf, len, "%s", cJSON_IsString(e) ? e->valuestring : "");
    cJSON_Delete(j);
    return buf;
}

/* A batch of 3 answers the three single answers, in order, on every model. */
static void test_batch_answers(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--batch-max", "4", NULL}) != 0)
        return;
    struct image ims[3];
    for (int model = 1; model <= 5; model++) {
        for (int i = 0; i < 3; i++)
            random_image(&ims[i]);
        char *body = batch_body(model, ims, 3);
        long status;
        char *resp;
        post(&m, model, body, &status, &resp);
        CU_ASSERT_EQUAL(status, 200);
        cJSON *want = expected_list(model, ims, 3);
        CHECKF(result_is(resp, want), "model_%02d answered %s", model, resp);
        cJSON_Delete(want);
        free(resp);
        free(body);
        /* One image alone still gets {"result": r}: this is not a batch endpoint. */
        body = batch_body(model, ims, 1);
        post(&m, model, body, &status, &resp);
        CU_ASSERT_EQUAL(status, 200);
        cJSON *one = mock_answer(model, ims[0].p, ims[0].n);
        CHECKF(result_is(resp, one), "model_%02d answered %s", model, resp);
        cJSON_Delete(one);
        free(resp);
        free(body);
    }
    /* model_04 checks model_03 per element and says which one is wrong. */
    for (int i = 0; i < 3; i++)
        random_image(&ims[i]);
    char *body = batch_body(4, ims, 3);
    char *second = strstr(strstr(body, "}, {") + 1, "\"model_03\": {\"id\":\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(second);
    second += strlen("\"model_03\": {\"id\":\"");
    *second = *second == '0' ? '1' : '0';
    long status;
    char *resp;
    char why[256];
    post(&m, 4, body, &status, &resp);
    CU_ASSERT_EQUAL(status, 400);
    CHECKF(strstr(error_of(resp, why, sizeof why), "element 2 of 3"), "reason: %s", why);
    free(resp);
    free(body);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(ep_stat(s, "model_03", "ok"), 2);
    CU_ASSERT_EQUAL(ep_stat(s, "model_03", "items"), 4);
    CU_ASSERT_EQUAL(ep_stat(s, "model_04", "items"), 4);
    CU_ASSERT_EQUAL(ep_stat(s, "model_01", "batch_max"), 4);
    CU_ASSERT_EQUAL(mock_stat(s, "ok"), 10);
    CU_ASSERT_EQUAL(mock_stat(s, "rejected"), 1);
    check_books(s);
    cJSON_Delete(s);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* --batch: a list always, one image too; the default --batch-max there is no limit. */
static void test_batch_endpoint(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--batch", "model_03", NULL}) != 0)
        return;
    static struct image ims[40];
    for (int i = 0; i < 40; i++)
        random_image(&ims[i]);
    long status;
    char *resp;
    char *body = batch_body(3, ims, 1);
    post(&m, 3, body, &status, &resp);
    CU_ASSERT_EQUAL(status, 200);
    cJSON *want = expected_list(3, ims, 1);
    CHECKF(result_is(resp, want), "answered %s", resp);
    cJSON_Delete(want);
    free(resp);
    free(body);
    body = batch_body(3, ims, 40);
    post(&m, 3, body, &status, &resp);
    CU_ASSERT_EQUAL(status, 200);
    want = expected_list(3, ims, 40);
    CU_ASSERT(result_is(resp, want));
    cJSON_Delete(want);
    free(resp);
    free(body);
    /* The other endpoints are as they were: one image, {"result": r}, two refused. */
    body = batch_body(2, ims, 1);
    post(&m, 2, body, &status, &resp);
    cJSON *one = mock_answer(2, ims[0].p, ims[0].n);
    CU_ASSERT(status == 200 && result_is(resp, one));
    cJSON_Delete(one);
    free(resp);
    free(body);
    body = batch_body(2, ims, 2);
    post(&m, 2, body, &status, &resp);
    CU_ASSERT_EQUAL(status, 400);
    free(resp);
    free(body);
    cJSON *s = mock_stats(&m);
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "endpoints"), "model_03"),
        "batch")));
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "endpoints"), "model_03"),
        "batch_max")));
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "batch_max"), 1);
    CU_ASSERT_EQUAL(ep_stat(s, "model_03", "items"), 41);
    cJSON_Delete(s);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* Above --batch-max: 400 with a reason that names the limit; at it: served. */
static void test_batch_max(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--batch", "all", "--batch-max", "model_01=4", NULL}) != 0)
        return;
    struct image ims[5];
    for (int i = 0; i < 5; i++)
        random_image(&ims[i]);
    long status;
    char *resp;
    char why[256];
    char *body = batch_body(1, ims, 5);
    post(&m, 1, body, &status, &resp);
    CU_ASSERT_EQUAL(status, 400);
    CHECKF(strstr(error_of(resp, why, sizeof why), "--batch-max") && strstr(why, "5")
           && strstr(why, "4"), "reason: %s", why);
    free(resp);
    post(&m, 2, body, &status, &resp); /* model_02 has no limit */
    CU_ASSERT_EQUAL(status, 200);
    free(resp);
    free(body);
    body = batch_body(1, ims, 4);
    post(&m, 1, body, &status, &resp);
    CU_ASSERT_EQUAL(status, 200);
    cJSON *want = expected_list(1, ims, 4);
    CU_ASSERT(result_is(resp, want));
    cJSON_Delete(want);
    free(resp);
    free(body);
    /* An empty list is still refused. */
    post(&m, 1, "[]", &status, &resp);
    CU_ASSERT_EQUAL(status, 400);
    free(resp);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(mock_stat(s, "rejected"), 2);
    CU_ASSERT_EQUAL(mock_stat(s, "ok"), 2);
    cJSON_Delete(s);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);

    /* Without options a second image is refused as it always was. */
    if (start_with(&m, NULL) != 0)
        return;
    body = batch_body(1, ims, 2);
    post(&m, 1, body, &status, &resp);
    CU_ASSERT_EQUAL(status, 400);
    CHECKF(strstr(error_of(resp, why, sizeof why), "more than one object"), "reason: %s", why);
    free(resp);
    free(body);
    s = mock_stats(&m);
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(s, "endpoints")); /* /stats as before */
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(s, "queue_full"));
    cJSON_Delete(s);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* Trusting mode counts the "im_str" strings of a batch. */
static void test_batch_trusted(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--trust-payload", "--batch-max", "3", NULL}) != 0)
        return;
    struct image ims[4];
    for (int i = 0; i < 4; i++)
        random_image(&ims[i]);
    char *body = batch_body(5, ims, 3);
    long status;
    char *resp;
    post(&m, 5, body, &status, &resp);
    CU_ASSERT_EQUAL(status, 200);
    cJSON *want = cJSON_CreateArray();
    for (int i = 0; i < 3; i++) {
        char text[300];
        size_t tn = b64_encode(ims[i].p, ims[i].n, text);
        cJSON_AddItemToArray(want, mock_answer_key(5, mock_key_b64(text, tn), mock_b64_payload_len(text, tn)));
    }
    CHECKF(result_is(resp, want), "answered %s", resp);
    cJSON_Delete(want);
    free(resp);
    free(body);
    body = batch_body(5, ims, 4);
    post(&m, 5, body, &status, &resp);
    CU_ASSERT_EQUAL(status, 400);
    free(resp);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* ---- cost and per-endpoint settings ----------------------------------------------------- */

static long timed_post(const struct mock_proc *m, int model, const char *body, long *status)
{
    struct timespec a, b;
    char path[16];
    snprintf(path, sizeof path, "/model_%02d", model);
    clock_gettime(CLOCK_MONOTONIC, &a);
    CU_ASSERT_EQUAL(http_post(url(m, path), body, strlen(body), status, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a.tv_sec) * 1000L + (b.tv_nsec - a.tv_nsec) / 1000000;
}

/* a + b x N, per endpoint; a name beats all whatever the order. */
static void test_cost_per_endpoint(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--latency-ms", "model_02=30", "--latency-ms", "200",
                                             "--per-item-ms", "model_02=40", "--batch-max", "8",
                                             "--capacity", "model_04=3,model_05=1", "--capacity", "2",
                                             "--queue-max", "model_05=5", NULL}) != 0)
        return;
    struct image ims[4];
    for (int i = 0; i < 4; i++)
        random_image(&ims[i]);
    long status;
    char *one = batch_body(2, ims, 1), *four = batch_body(2, ims, 4);
    long t1 = timed_post(&m, 2, one, &status);
    CU_ASSERT_EQUAL(status, 200);
    long t4 = timed_post(&m, 2, four, &status);
    CU_ASSERT_EQUAL(status, 200);
    CHECKF(t1 >= 69 && t1 < slack(180), "30 + 40 x 1 ms took %ld ms", t1);  /* below model_01's 200 */
    CHECKF(t4 >= 189 && t4 < slack(1500), "30 + 40 x 4 ms took %ld ms", t4);
    /* A rejected request costs as one image. */
    const char *bad = "[{\"im_str\": 5, \"model_03\": null}]";
    long tb = timed_post(&m, 2, bad, &status);
    CU_ASSERT_EQUAL(status, 400);
    CHECKF(tb >= 69 && tb < slack(180), "a rejected request took %ld ms", tb);
    free(one);
    free(four);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(ep_stat(s, "model_01", "latency_ms"), 200);
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "latency_ms"), 30);
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "per_item_ms"), 40);
    CU_ASSERT_EQUAL(ep_stat(s, "model_03", "per_item_ms"), 0);
    CU_ASSERT_EQUAL(ep_stat(s, "model_01", "capacity"), 2);
    CU_ASSERT_EQUAL(ep_stat(s, "model_04", "capacity"), 3);
    CU_ASSERT_EQUAL(ep_stat(s, "model_05", "capacity"), 1);
    CU_ASSERT_EQUAL(ep_stat(s, "model_05", "queue_max"), 5);
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "endpoints"), "model_04"),
        "queue_max")));
    CU_ASSERT_EQUAL(ep_stat(s, "model_02", "items"), 5);
    cJSON_Delete(s);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* A batch takes one slot: with K = 1, two batches of 3 at 20 + 30 x 3 ms take two service
 * times, not six. */
static void test_batch_one_slot(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--capacity", "1", "--latency-ms", "20", "--per-item-ms",
                                             "30", "--batch", "model_01", NULL}) != 0)
        return;
    struct image ims[3];
    for (int i = 0; i < 3; i++)
        random_image(&ims[i]);
    char *body = batch_body(1, ims, 3);
    struct xfer xs[2];
    memset(xs, 0, sizeof xs);
    for (int i = 0; i < 2; i++) {
        snprintf(xs[i].url, sizeof xs[i].url, "%s", url(&m, "/model_01"));
        xs[i].body = body;
    }
    run_parallel(xs, 2);
    long t[2] = {xs[0].ms, xs[1].ms};
    qsort(t, 2, sizeof t[0], cmp_long);
    CU_ASSERT(xs[0].status == 200 && xs[1].status == 200);
    CHECKF(t[0] >= 109 && t[1] >= 219 && t[1] < slack(3000), "took %ld and %ld ms", t[0], t[1]);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(ep_stat(s, "model_01", "peak_in_service"), 1);
    CU_ASSERT_EQUAL(ep_stat(s, "model_01", "items"), 6);
    cJSON_Delete(s);
    xfer_free(xs, 2);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* Faults still apply with a capacity and are counted once; a 503 is never also a fault. */
static void test_capacity_faults(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--capacity", "1", "--queue-max", "2", "--latency-ms",
                                             "30", "--error-rate", "0.5", "--seed", "3", NULL}) != 0)
        return;
    char *body = hello_body();
    enum { N = 12 };
    struct xfer xs[N];
    memset(xs, 0, sizeof xs);
    for (int i = 0; i < N; i++) {
        snprintf(xs[i].url, sizeof xs[i].url, "%s", url(&m, "/model_01"));
        xs[i].body = body;
    }
    run_parallel(xs, N);
    int by[600] = {0};
    for (int i = 0; i < N; i++)
        if (xs[i].status > 0 && xs[i].status < 600)
            by[xs[i].status]++;
    CHECKF(by[200] + by[500] + by[503] == N, "200: %d, 500: %d, 503: %d", by[200], by[500], by[503]);
    CU_ASSERT(by[503] >= 1);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(mock_stat(s, "queue_full"), by[503]);
    CU_ASSERT_EQUAL(mock_stat(s, "faults.error"), by[500]);
    CU_ASSERT_EQUAL(ep_stat(s, "model_01", "peak_in_service"), 1);
    CU_ASSERT(ep_stat(s, "model_01", "peak_queued") <= 2);
    check_books(s);
    cJSON_Delete(s);
    xfer_free(xs, N);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* --slowdown-ms: a server that slows with time, not with load. With 1000 ms more per second
 * since the first request, a request sent at least 300 ms after the first one was answered
 * takes at least 300 ms (a lower bound: a busy machine only makes it longer), one at a time. */
static void test_slowdown(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--slowdown-ms", "model_01=1000", NULL}) != 0)
        return;
    char *body = hello_body();
    struct xfer xs[2];
    memset(xs, 0, sizeof xs);
    for (int i = 0; i < 2; i++) {
        snprintf(xs[i].url, sizeof xs[i].url, "%s", url(&m, "/model_01"));
        xs[i].body = body;
    }
    run_parallel(&xs[0], 1);
    long first_done = now_ms();
    sleep_ms(300);
    long sent = now_ms();
    run_parallel(&xs[1], 1);
    CU_ASSERT(xs[0].status == 200 && xs[1].status == 200);
    CHECKF(xs[1].ms >= sent - first_done - 5, "sent %ld ms after the first answer, answered in %ld ms",
           sent - first_done, xs[1].ms);
    xfer_free(xs, 2);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

static void test_cli(void)
{
    const char *bin = getenv("MOCK_BIN");
    if (!bin || !*bin)
        bin = "build/mock-model-server";
    char out[8192];
    const char *help[] = {bin, "--help", NULL};
    CU_ASSERT_EQUAL(run_cmd(help, 10, out, sizeof out), 0);
    static const char *const listed[] = {"--capacity", "--queue-max", "--per-item-ms", "--slowdown-ms", "--batch",
                                         "--batch-max", "--threads", "model_03=", "503"};
    for (size_t i = 0; i < sizeof listed / sizeof listed[0]; i++)
        CHECKF(strstr(out, listed[i]), "--help does not mention %s", listed[i]);
    static const char *const bad[][3] = {
        {"--capacity", "0"},          {"--capacity", "x"},           {"--capacity", "model_9=2"},
        {"--capacity", "model_03="},  {"--capacity", ","},           {"--queue-max", "-1"},
        {"--batch-max", "0"},         {"--batch", "nope"},           {"--batch", "model_01,"},
        {"--threads", "0"},           {"--threads", "65"},           {"--per-item-ms", "-2"},
        {"--latency-ms", "model_01=x"}, {"--per-item-ms", "unlimited"}, {"--capacity", "=3"},
        {"--slowdown-ms", "-1"},      {"--slowdown-ms", "model_01=x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *argv[] = {bin, bad[i][0], bad[i][1], NULL};
        int rc = run_cmd(argv, 10, out, sizeof out);
        char *nl = strchr(out, '\n');
        CHECKF(rc == 2 && nl && nl[1] == '\0' && strstr(out, "--help"), "%s %s: exit %d: %s",
               bad[i][0], bad[i][1], rc, out);
    }
    /* Good ones start (and the port in use says so, as before). */
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--capacity", "unlimited", "--queue-max", "unlimited",
                                             "--batch-max", "all=unlimited", "--threads", "3",
                                             "--batch", "model_01,model_02", NULL}) != 0)
        return;
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s, "threads")), 3);
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s, "endpoints"), "model_05"),
        "capacity")));
    cJSON_Delete(s);
    char port[16];
    snprintf(port, sizeof port, "%d", m.port);
    const char *again[] = {bin, "--port", port, NULL};
    CU_ASSERT_EQUAL(run_cmd(again, 10, out, sizeof out), 1);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* ---- threads ---------------------------------------------------------------------------- */

/* 40 connections on 2 loops: right answers, and /stats counts each loop's share and sums them,
 * whichever loop answers it. */
static void test_threads_sum(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--threads", "2", "--latency-ms", "model_02=5", NULL}) != 0)
        return;
    enum { N = 40 };
    static struct image ims[N];
    static char *bodies[N];
    struct xfer xs[N];
    memset(xs, 0, sizeof xs);
    for (int i = 0; i < N; i++) {
        random_image(&ims[i]);
        int model = 1 + i % 5;
        bodies[i] = batch_body(model, &ims[i], 1);
        snprintf(xs[i].url, sizeof xs[i].url, "%s/model_%02d", m.base_url, model);
        xs[i].body = bodies[i];
    }
    for (int round = 0; round < 2; round++) {
        run_parallel(xs, N);
        int good = 0;
        for (int i = 0; i < N; i++) {
            cJSON *want = mock_answer(1 + i % 5, ims[i].p, ims[i].n);
            int ok = xs[i].status == 200 && result_is(xs[i].resp, want);
            CHECKF(ok, "round %d, transfer %d (model_%02d): rc %d, status %ld, %s", round, i,
                   1 + i % 5, xs[i].rc, xs[i].status, xs[i].resp ? xs[i].resp : "(no body)");
            good += ok;
            cJSON_Delete(want);
        }
        CU_ASSERT_EQUAL(good, N);
        xfer_free(xs, N);
    }
    /* Ask several times: each GET may land on either loop, and all must agree. */
    for (int k = 0; k < 6; k++) {
        cJSON *s = mock_stats(&m);
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(s, "threads");
        CU_ASSERT_FATAL(cJSON_IsArray(th) && cJSON_GetArraySize(th) == 2);
        long a = (long)cJSON_GetArrayItem(th, 0)->valuedouble;
        long b = (long)cJSON_GetArrayItem(th, 1)->valuedouble;
        CHECKF(a > 0 && b > 0, "one loop served nothing: %ld and %ld", a, b);
        CU_ASSERT_EQUAL(a + b, 2 * N);
        CU_ASSERT_EQUAL(mock_stat(s, "total"), 2 * N);
        CU_ASSERT_EQUAL(mock_stat(s, "ok"), 2 * N);
        CU_ASSERT_EQUAL(mock_stat(s, "requests.model_03"), 2 * N / 5);
        CU_ASSERT_EQUAL(ep_stat(s, "model_04", "ok"), 2 * N / 5);
        check_books(s);
        cJSON_Delete(s);
    }
    long status = 0;
    CU_ASSERT_EQUAL(http_post(url(&m, "/stats/reset"), "", 0, &status, NULL), 0);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(mock_stat(s, "total"), 0);
    cJSON_Delete(s);
    for (int i = 0; i < N; i++)
        free(bodies[i]);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* Capacity is per process: 2 slots for both loops, the queue shared, the slot handed across. */
static void test_threads_capacity(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--threads", "2", "--capacity", "2", "--latency-ms",
                                             "30", NULL}) != 0)
        return;
    enum { N = 16 };
    char *body = hello_body();
    struct xfer xs[N];
    memset(xs, 0, sizeof xs);
    for (int i = 0; i < N; i++) {
        snprintf(xs[i].url, sizeof xs[i].url, "%s", url(&m, "/model_01"));
        xs[i].body = body;
    }
    run_parallel(xs, N);
    long worst = 0;
    int good = 0;
    for (int i = 0; i < N; i++) {
        good += xs[i].status == 200;
        worst = xs[i].ms > worst ? xs[i].ms : worst;
    }
    CU_ASSERT_EQUAL(good, N);
    /* 16 requests, 2 at a time, 30 ms each: the last waits 8 service times. */
    CHECKF(worst >= 239 && worst < slack(5000), "the last took %ld ms", worst);
    cJSON *s = mock_stats(&m);
    CHECKF(ep_stat(s, "model_01", "peak_in_service") == 2, "peak in service %ld",
           ep_stat(s, "model_01", "peak_in_service"));
    CU_ASSERT(ep_stat(s, "model_01", "peak_queued") >= 1);
    CU_ASSERT_EQUAL(ep_stat(s, "model_01", "in_service"), 0);
    CU_ASSERT_EQUAL(ep_stat(s, "model_01", "queued"), 0);
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(s, "threads");
    CHECKF(cJSON_GetArrayItem(th, 0)->valuedouble > 0 && cJSON_GetArrayItem(th, 1)->valuedouble > 0,
           "one loop served nothing");
    check_books(s);
    cJSON_Delete(s);
    xfer_free(xs, N);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0); /* a clean stop of both loops */
}

static int suite_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int suite_cleanup(void)
{
    curl_global_cleanup();
    return 0;
}

struct named_test {
    const char *name;
    void (*fn)(void);
};

static int add_suite(const char *name, const struct named_test *tests, size_t n)
{
    CU_pSuite s = CU_add_suite(name, suite_init, suite_cleanup);
    if (!s)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}

int register_mock_capacity(void)
{
    static const struct named_test capacity[] = {
        {"capacity 2: two served at once, two wait their turn", test_capacity_fifo},
        {"queue bound: 503 with Retry-After at once", test_queue_bound},
        {"a client that gives up leaves the queue", test_queue_cancel},
        {"batch of 3 = three single answers, model_04 per element", test_batch_answers},
        {"--batch: always a list, no limit by default", test_batch_endpoint},
        {"--batch-max refuses bigger batches with a reason", test_batch_max},
        {"batches in --trust-payload mode", test_batch_trusted},
        {"cost a + b x images, per-endpoint settings", test_cost_per_endpoint},
        {"a batch takes one slot", test_batch_one_slot},
        {"faults with a capacity: counted once", test_capacity_faults},
        {"--slowdown-ms: slower with time, one request at a time", test_slowdown},
        {"command line", test_cli},
    };
    static const struct named_test threads[] = {
        {"--threads 2: right answers, /stats summed", test_threads_sum},
        {"--threads 2 --capacity 2: one gate for both loops", test_threads_capacity},
    };
    if (add_suite("mock capacity", capacity, sizeof capacity / sizeof capacity[0]) != 0)
        return -1;
    return add_suite("mock threads concurrent", threads, sizeof threads / sizeof threads[0]);
}
