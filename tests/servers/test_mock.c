/* Tests for the mock model server: its models (src/mock/answers.c, linked in) checked against
 * the spec in answers.h, and the server itself ($MOCK_BIN, run as a child through util_proc):
 * answers, strict validation, /stats, faults, latency, concurrency, the trusting mode, the
 * command line and a clean exit. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <CUnit/CUnit.h>
#include <curl/curl.h>

#include "check.h"
#include "common/b64.h"
#include "mock/answers.h"
#include "proc.h"
#include "util.h"

static const char *const LABELS[8] = {"cat", "dog", "car", "tree", "boat", "bird", "house", "person"};

/* Deterministic, so failures reproduce. */
static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rng(void)
{
    return xorshift64(&rng_state);
}

/* n random bytes, n in 1..max. */
static size_t random_payload(unsigned char *buf, size_t max)
{
    size_t n = 1 + (size_t)(rng() % max);
    fill_random(&rng_state, buf, n);
    return n;
}

/* ---- the models ------------------------------------------------------------------------- */

static void test_key_vectors(void)
{
    /* FNV-1a 64 reference values. */
    CU_ASSERT_EQUAL(mock_key((const unsigned char *)"", 0), 0xcbf29ce484222325ULL);
    CU_ASSERT_EQUAL(mock_key((const unsigned char *)"a", 1), 0xaf63dc4c8601ec8cULL);
    CU_ASSERT_EQUAL(mock_key((const unsigned char *)"foobar", 6), 0x85944171f73967e8ULL);
}

static void test_determinism(void)
{
    unsigned char p[600];
    for (int i = 0; i < 100; i++) {
        size_t n = random_payload(p, sizeof p);
        for (int m = 1; m <= 5; m++) {
            cJSON *a = mock_answer(m, p, n), *b = mock_answer(m, p, n);
            cJSON *c = mock_answer_key(m, mock_key(p, n), n);
            CU_ASSERT_PTR_NOT_NULL_FATAL(a);
            CU_ASSERT(cJSON_Compare(a, b, 1));
            CU_ASSERT(cJSON_Compare(a, c, 1));
            cJSON_Delete(a);
            cJSON_Delete(b);
            cJSON_Delete(c);
        }
    }
    CU_ASSERT_PTR_NULL(mock_answer(0, p, 1));
    CU_ASSERT_PTR_NULL(mock_answer(6, p, 1));
}

static void test_model01(void)
{
    int falsy[4] = {0}, truthy = 0;
    unsigned char p[300];
    for (int i = 0; i < 4000; i++) {
        size_t n = random_payload(p, sizeof p);
        uint64_t key = mock_key(p, n);
        cJSON *r = mock_answer(1, p, n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        switch (key % 16) {
        case 0: CU_ASSERT(cJSON_IsNull(r)); falsy[0] += cJSON_IsNull(r); break;
        case 1: CU_ASSERT(cJSON_IsFalse(r)); falsy[1] += cJSON_IsFalse(r); break;
        case 2:
            CU_ASSERT(cJSON_IsNumber(r) && r->valuedouble == 0);
            falsy[2] += cJSON_IsNumber(r) && r->valuedouble == 0;
            break;
        case 3:
            CU_ASSERT(cJSON_IsString(r) && !strcmp(r->valuestring, ""));
            falsy[3] += cJSON_IsString(r) && !strcmp(r->valuestring, "");
            break;
        default: {
            truthy++;
            CU_ASSERT(cJSON_IsObject(r));
            CU_ASSERT_EQUAL(cJSON_GetArraySize(r), 2);
            const cJSON *label = cJSON_GetObjectItemCaseSensitive(r, "label");
            const cJSON *score = cJSON_GetObjectItemCaseSensitive(r, "score");
            CU_ASSERT(cJSON_IsString(label) && !strcmp(label->valuestring, LABELS[(key >> 8) % 8]));
            CU_ASSERT(cJSON_IsNumber(score) && score->valuedouble == (double)((key >> 16) % 1000));
        }
        }
        cJSON_Delete(r);
    }
    for (int k = 0; k < 4; k++)
        CU_ASSERT(falsy[k] > 0);
    int nf = falsy[0] + falsy[1] + falsy[2] + falsy[3];
    CU_ASSERT(nf > 4000 / 5 && nf < 4000 * 3 / 10); /* about a quarter */
    CU_ASSERT_EQUAL(nf + truthy, 4000);
}

static void test_model02(void)
{
    int empty_arr = 0, empty_obj = 0, sizes[4] = {0};
    unsigned char p[300];
    for (int i = 0; i < 3000; i++) {
        size_t n = random_payload(p, sizeof p);
        uint64_t key = mock_key(p, n);
        cJSON *r = mock_answer(2, p, n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        uint64_t sel = (key >> 24) % 16;
        if (sel == 0) {
            CU_ASSERT(cJSON_IsArray(r) && cJSON_GetArraySize(r) == 0);
            empty_arr += cJSON_IsArray(r) && cJSON_GetArraySize(r) == 0;
        } else if (sel == 1) {
            CU_ASSERT(cJSON_IsObject(r) && cJSON_GetArraySize(r) == 0);
            empty_obj += cJSON_IsObject(r) && cJSON_GetArraySize(r) == 0;
        } else {
            int want = 1 + (int)((key >> 28) % 3);
            CU_ASSERT(cJSON_IsArray(r));
            CU_ASSERT_EQUAL(cJSON_GetArraySize(r), want);
            sizes[cJSON_GetArraySize(r) & 3]++;
            int i2 = 0;
            for (const cJSON *t = r->child; t; t = t->next, i2++) {
                char tag[6] = {'t', 'a', 'g', '_', (char)('a' + (key >> (32 + 4 * i2)) % 26), 0};
                CU_ASSERT(cJSON_IsString(t) && !strcmp(t->valuestring, tag));
            }
        }
        cJSON_Delete(r);
    }
    CU_ASSERT(empty_arr > 0);
    CU_ASSERT(empty_obj > 0);
    CU_ASSERT(sizes[1] > 0 && sizes[2] > 0 && sizes[3] > 0);
}

static void test_model03(void)
{
    unsigned char p[300];
    int regions[4] = {0};
    for (int i = 0; i < 500; i++) {
        size_t n = random_payload(p, sizeof p);
        uint64_t key = mock_key(p, n);
        cJSON *r = mock_answer(3, p, n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        char id[17];
        snprintf(id, sizeof id, "%016" PRIx64, key);
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(r, "id");
        const cJSON *jr = cJSON_GetObjectItemCaseSensitive(r, "regions");
        CU_ASSERT(cJSON_IsString(jid) && !strcmp(jid->valuestring, id));
        CU_ASSERT(cJSON_IsNumber(jr) && jr->valuedouble == (double)((key >> 20) % 4));
        CU_ASSERT_EQUAL(cJSON_GetArraySize(r), 2);
        if (cJSON_IsNumber(jr))
            regions[jr->valueint & 3]++;
        cJSON_Delete(r);
    }
    for (int k = 0; k < 4; k++)
        CU_ASSERT(regions[k] > 0);
}

/* The sub-image bytes, computed here from the spec rather than taken from answers.c. */
static void spec_sub_image(uint64_t key, int i, unsigned char *dst, size_t n)
{
    uint64_t x = key ^ (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL;
    for (size_t k = 0; k < n; k += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for (size_t j = 0; j < 8 && k + j < n; j++)
            dst[k + j] = (unsigned char)(x >> (8 * j));
    }
}

static void test_model04(void)
{
    unsigned char p[300];
    int seen[4] = {0};
    for (int it = 0; it < 600; it++) {
        size_t n = random_payload(p, sizeof p);
        uint64_t key = mock_key(p, n);
        int regions = (int)((key >> 20) % 4);
        cJSON *r = mock_answer(4, p, n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        const cJSON *jn = cJSON_GetObjectItemCaseSensitive(r, "n");
        const cJSON *subs = cJSON_GetObjectItemCaseSensitive(r, "sub-img");
        CU_ASSERT(cJSON_IsNumber(jn) && jn->valueint == regions);
        CU_ASSERT_FATAL(cJSON_IsArray(subs));
        CU_ASSERT_EQUAL(cJSON_GetArraySize(subs), regions);
        seen[cJSON_GetArraySize(subs) & 3]++;
        int i = 0;
        for (const cJSON *s = subs->child; s; s = s->next, i++) {
            const cJSON *img = cJSON_GetObjectItemCaseSensitive(s, "img");
            const cJSON *box = cJSON_GetObjectItemCaseSensitive(s, "box");
            CU_ASSERT_FATAL(cJSON_IsString(img));
            size_t want = 16 + (size_t)((key >> (8 * i)) % 200);
            unsigned char got[256], exp[256];
            size_t glen = 0;
            CU_ASSERT_EQUAL_FATAL(b64_decode(img->valuestring, strlen(img->valuestring), got, &glen), 0);
            CU_ASSERT_EQUAL(glen, want);
            spec_sub_image(key, i, exp, want);
            CU_ASSERT(glen == want && memcmp(got, exp, want) == 0);
            CU_ASSERT(cJSON_IsArray(box) && cJSON_GetArraySize(box) == 4);
            int k = 0;
            for (const cJSON *b = box ? box->child : NULL; b; b = b->next, k++)
                CU_ASSERT(cJSON_IsNumber(b) && b->valueint == i + k);
        }
        /* model_04 takes exactly model_03's answer for the same image. */
        cJSON *m3 = mock_answer(3, p, n);
        CU_ASSERT(mock_model04_accepts(p, n, m3));
        CU_ASSERT(!mock_model04_accepts(p, n, NULL));
        cJSON *null = cJSON_CreateNull();
        CU_ASSERT(!mock_model04_accepts(p, n, null));
        cJSON_Delete(null);
        cJSON_ReplaceItemInObjectCaseSensitive(m3, "regions", cJSON_CreateNumber(regions + 1));
        CU_ASSERT(!mock_model04_accepts(p, n, m3));
        cJSON_Delete(m3);
        unsigned char q[300];
        size_t qn = random_payload(q, sizeof q);
        cJSON *other = mock_answer(3, q, qn);
        if (mock_key(q, qn) != key)
            CU_ASSERT(!mock_model04_accepts(p, n, other));
        cJSON_Delete(other);
        cJSON_Delete(r);
    }
    for (int k = 0; k < 4; k++)
        CU_ASSERT(seen[k] > 0);
}

static void test_model05(void)
{
    unsigned char p[300];
    for (int i = 0; i < 300; i++) {
        size_t n = random_payload(p, sizeof p);
        uint64_t key = mock_key(p, n);
        cJSON *r = mock_answer(5, p, n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(r, "label");
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(r, "bytes");
        CU_ASSERT(cJSON_IsString(label) && !strcmp(label->valuestring, LABELS[key % 8]));
        CU_ASSERT(cJSON_IsNumber(bytes) && bytes->valuedouble == (double)n);
        cJSON_Delete(r);
    }
}

static void test_trust_key(void)
{
    char a[2001], b[2001];
    for (int i = 0; i < 2000; i++)
        a[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[rng() % 64];
    a[2000] = '\0';
    memcpy(b, a, sizeof a);
    b[1500] = b[1500] == 'A' ? 'B' : 'A';
    CU_ASSERT_EQUAL(mock_key_b64(a, 2000), mock_key_b64(b, 2000)); /* only the first 1024 count */
    b[10] = b[10] == 'A' ? 'B' : 'A';
    CU_ASSERT_NOT_EQUAL(mock_key_b64(a, 2000), mock_key_b64(b, 2000));
    CU_ASSERT_NOT_EQUAL(mock_key_b64(a, 2000), mock_key_b64(a, 1996)); /* the length counts */
    CU_ASSERT_EQUAL(mock_b64_payload_len("aGVsbG8=", 8), 5);
    CU_ASSERT_EQUAL(mock_b64_payload_len("aGk=", 4), 2);
    CU_ASSERT_EQUAL(mock_b64_payload_len("YWJj", 4), 3);
    CU_ASSERT_EQUAL(mock_b64_payload_len("", 0), 0);
}

/* ---- the server ------------------------------------------------------------------------- */

static struct mock_proc srv; /* the plain server most tests share */

static const char *url(const struct mock_proc *m, const char *path)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s%s", m->base_url, path);
    return buf;
}

static const char *model_path(int m)
{
    static char buf[16];
    snprintf(buf, sizeof buf, "/model_%02d", m);
    return buf;
}

/* [{"im_str": "<base64 of p>", "model_03": <m03>}], malloc'd. */
static char *body_for(const unsigned char *p, size_t n, const char *m03)
{
    size_t cap = b64_encoded_len(n) + strlen(m03) + 64;
    char *body = malloc(cap);
    int k = snprintf(body, cap, "[{\"im_str\": \"");
    k += (int)b64_encode(p, n, body + k);
    snprintf(body + k, cap - (size_t)k, "\", \"model_03\": %s}]", m03);
    return body;
}

/* The model_03 to send with p: its model_03 answer for model 4, null otherwise. */
static char *m03_for(int m, const unsigned char *p, size_t n)
{
    if (m != 4)
        return strdup("null");
    cJSON *a = mock_answer(3, p, n);
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

/* POSTs p to model m and checks the reply is 200 {"result": expected}; takes expected. */
static void expect_answer(const struct mock_proc *s, int m, const unsigned char *p, size_t n,
                          cJSON *expected)
{
    char *m03 = m03_for(m, p, n);
    char *body = body_for(p, n, m03);
    long status = 0;
    char *resp = NULL;
    int rc = http_post(url(s, model_path(m)), body, strlen(body), &status, &resp);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(status, 200);
    cJSON *j = cJSON_Parse(resp);
    CU_ASSERT(cJSON_IsObject(j) && cJSON_GetArraySize(j) == 1);
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(j, "result");
    CU_ASSERT(result && cJSON_Compare(result, expected, 1));
    if (!result || !cJSON_Compare(result, expected, 1))
        fprintf(stderr, "model_%02d answered %s\n", m, resp);
    cJSON_Delete(j);
    cJSON_Delete(expected);
    free(resp);
    free(body);
    free(m03);
}

static void test_server_start(void)
{
    CU_ASSERT_EQUAL_FATAL(mock_start(&srv, NULL), 0);
    CU_ASSERT(srv.port > 0);
    char want[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%d", srv.port);
    CU_ASSERT_STRING_EQUAL(srv.base_url, want);
}

static void test_server_answers(void)
{
    CU_ASSERT_FATAL(srv.pid > 0);
    static unsigned char p[5 << 20];
    for (int m = 1; m <= 5; m++) {
        for (int i = 0; i < 12; i++) {
            size_t n = random_payload(p, i < 10 ? 3000 : 60000);
            expect_answer(&srv, m, p, n, mock_answer(m, p, n));
        }
    }
    /* A 5 MiB image reaches the server in many pieces. */
    for (size_t i = 0; i < sizeof p; i++)
        p[i] = (unsigned char)(rng() >> 56);
    expect_answer(&srv, 1, p, sizeof p, mock_answer(1, p, sizeof p));
    expect_answer(&srv, 4, p, sizeof p, mock_answer(4, p, sizeof p));
}

struct bad_case {
    const char *what;
    int model;
    const char *method;       /* NULL: POST */
    const char *content_type; /* NULL: application/json */
    const char *body;         /* NULL: no body */
};

/* "hello" is aGVsbG8=; its model_03 answer is computed in the test. */
static const struct bad_case BAD[] = {
    {"not JSON", 1, NULL, NULL, "hello"},
    {"empty body", 1, NULL, NULL, ""},
    {"trailing data", 1, NULL, NULL, "[{\"im_str\": \"aGVsbG8=\", \"model_03\": null}] x"},
    {"not an array", 1, NULL, NULL, "{\"im_str\": \"aGVsbG8=\", \"model_03\": null}"},
    {"empty array", 2, NULL, NULL, "[]"},
    {"element not an object", 2, NULL, NULL, "[\"aGVsbG8=\"]"},
    {"two objects", 2, NULL, NULL,
     "[{\"im_str\": \"aGVsbG8=\", \"model_03\": null}, {\"im_str\": \"aGVsbG8=\", \"model_03\": null}]"},
    {"missing im_str", 3, NULL, NULL, "[{\"model_03\": null}]"},
    {"missing model_03", 3, NULL, NULL, "[{\"im_str\": \"aGVsbG8=\"}]"},
    {"im_str a number", 3, NULL, NULL, "[{\"im_str\": 5, \"model_03\": null}]"},
    {"im_str null", 3, NULL, NULL, "[{\"im_str\": null, \"model_03\": null}]"},
    {"extra key", 5, NULL, NULL, "[{\"im_str\": \"aGVsbG8=\", \"model_03\": null, \"x\": 1}]"},
    {"duplicate key", 5, NULL, NULL,
     "[{\"im_str\": \"aGVsbG8=\", \"im_str\": \"aGVsbG8=\", \"model_03\": null}]"},
    {"line break", 1, NULL, NULL, "[{\"im_str\": \"aGVs\\nbG8=\", \"model_03\": null}]"},
    {"trailing CRLF", 1, NULL, NULL, "[{\"im_str\": \"aGVsbG8=\\r\\n\", \"model_03\": null}]"},
    {"missing padding", 1, NULL, NULL, "[{\"im_str\": \"aGVsbG8\", \"model_03\": null}]"},
    {"bad character", 1, NULL, NULL, "[{\"im_str\": \"aGVs*G8=\", \"model_03\": null}]"},
    {"url-safe alphabet", 1, NULL, NULL, "[{\"im_str\": \"-_-_\", \"model_03\": null}]"},
    {"nonzero pad bits", 1, NULL, NULL, "[{\"im_str\": \"aGVsbG9=\", \"model_03\": null}]"},
    {"empty payload", 1, NULL, NULL, "[{\"im_str\": \"\", \"model_03\": null}]"},
    {"escaped NUL", 1, NULL, NULL, "[{\"im_str\": \"aGVsbG8=\\u0000\", \"model_03\": null}]"},
    {"model_04 with null model_03", 4, NULL, NULL, "[{\"im_str\": \"aGVsbG8=\", \"model_03\": null}]"},
    {"model_04 with a wrong model_03", 4, NULL, NULL,
     "[{\"im_str\": \"aGVsbG8=\", \"model_03\": {\"id\": \"0000000000000000\", \"regions\": 1}}]"},
    {"text/plain", 1, NULL, "text/plain", "[{\"im_str\": \"aGVsbG8=\", \"model_03\": null}]"},
    {"no Content-Type", 1, NULL, "", "[{\"im_str\": \"aGVsbG8=\", \"model_03\": null}]"},
    {"GET on a model", 2, "GET", NULL, NULL},
};
#define N_BAD (sizeof BAD / sizeof BAD[0])

static void test_server_rejects(void)
{
    CU_ASSERT_FATAL(srv.pid > 0);
    cJSON *before = mock_stats(&srv);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before);
    long per_model[6] = {0};
    for (size_t i = 0; i < N_BAD; i++) {
        const struct bad_case *c = &BAD[i];
        struct http_opts o = {.method = c->method, .content_type = c->content_type};
        long status = 0;
        char *resp = NULL;
        int rc = http_request(url(&srv, model_path(c->model)), &o, c->body,
                              c->body ? strlen(c->body) : 0, &status, &resp, NULL);
        per_model[c->model]++;
        cJSON *j = cJSON_Parse(resp);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
        int good = rc == 0 && status == 400 && cJSON_IsString(err) && err->valuestring[0];
        CU_ASSERT(good);
        if (!good)
            fprintf(stderr, "\n  %s: rc %d, status %ld, body %s\n", c->what, rc, status, resp);
        cJSON_Delete(j);
        free(resp);
    }
    /* The same image with its real model_03 is accepted by model_04. */
    unsigned char hello[] = "hello";
    expect_answer(&srv, 4, hello, 5, mock_answer(4, hello, 5));
    per_model[4]++;

    cJSON *after = mock_stats(&srv);
    CU_ASSERT_PTR_NOT_NULL_FATAL(after);
    CU_ASSERT_EQUAL(mock_stat(after, "rejected") - mock_stat(before, "rejected"), (long)N_BAD);
    CU_ASSERT_EQUAL(mock_stat(after, "ok") - mock_stat(before, "ok"), 1);
    for (int m = 1; m <= 5; m++) {
        char key[32];
        snprintf(key, sizeof key, "requests.model_%02d", m);
        CU_ASSERT_EQUAL(mock_stat(after, key) - mock_stat(before, key), per_model[m]);
    }
    cJSON_Delete(before);
    cJSON_Delete(after);
}

static void test_server_paths(void)
{
    CU_ASSERT_FATAL(srv.pid > 0);
    cJSON *before = mock_stats(&srv);
    static const struct {
        const char *method, *path;
        long status;
    } cases[] = {
        {"GET", "/nope", 404},       {"POST", "/model_06", 404}, {"POST", "/model_1", 404},
        {"POST", "/model_01/x", 404}, {"POST", "/stats", 405},    {"GET", "/stats/reset", 405},
        {"PUT", "/model_01", 501}, /* evhttp refuses methods it was not allowed itself */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_opts o = {.method = cases[i].method};
        long status = 0;
        int rc = http_request(url(&srv, cases[i].path), &o, NULL, 0, &status, NULL, NULL);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_EQUAL(status, cases[i].status);
        if (status != cases[i].status)
            fprintf(stderr, "\n  %s %s: %ld\n", cases[i].method, cases[i].path, status);
    }
    /* A query string does not change the route. */
    unsigned char p[] = "query";
    char *body = body_for(p, 5, "null");
    long status = 0;
    CU_ASSERT_EQUAL(http_post(url(&srv, "/model_01?x=1"), body, strlen(body), &status, NULL), 0);
    CU_ASSERT_EQUAL(status, 200);
    free(body);
    cJSON *after = mock_stats(&srv);
    CU_ASSERT_EQUAL(mock_stat(after, "total") - mock_stat(before, "total"), 1); /* only that one */
    cJSON_Delete(before);
    cJSON_Delete(after);
}

static void test_server_stats(void)
{
    CU_ASSERT_FATAL(srv.pid > 0);
    long status = 0;
    char *resp = NULL;
    CU_ASSERT_EQUAL(http_post(url(&srv, "/stats/reset"), "", 0, &status, &resp), 0);
    CU_ASSERT_EQUAL(status, 200);
    free(resp);
    static const int plan[] = {1, 1, 1, 2, 2, 4, 5, 5};
    unsigned char p[200];
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        size_t n = random_payload(p, sizeof p);
        expect_answer(&srv, plan[i], p, n, mock_answer(plan[i], p, n));
    }
    const char *bad = "[{\"im_str\": 1, \"model_03\": null}]";
    CU_ASSERT_EQUAL(http_post(url(&srv, "/model_03"), bad, strlen(bad), &status, NULL), 0);
    CU_ASSERT_EQUAL(status, 400);

    cJSON *s = mock_stats(&srv);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    cJSON *want = cJSON_Parse(
        "{\"requests\": {\"model_01\": 3, \"model_02\": 2, \"model_03\": 1, \"model_04\": 1, "
        "\"model_05\": 2}, \"ok\": 8, \"rejected\": 1, \"faults\": {\"error\": 0, \"429\": 0, "
        "\"reset\": 0, \"hang\": 0, \"garbage\": 0}, \"total\": 9}");
    CU_ASSERT(cJSON_Compare(s, want, 1));
    if (!cJSON_Compare(s, want, 1)) {
        char *t = cJSON_PrintUnformatted(s);
        fprintf(stderr, "\n  stats: %s\n", t);
        free(t);
    }
    cJSON_Delete(want);
    cJSON_Delete(s);
}

/* Starts a server with these options for one test; NULL-terminated. */
static int start_with(struct mock_proc *m, const char *const args[])
{
    int rc = mock_start(m, args);
    CU_ASSERT_EQUAL(rc, 0);
    return rc;
}

static char *hello_body(void)
{
    const unsigned char p[] = "hello";
    return body_for(p, 5, "null");
}

/* The end of a one-fault test: the fault's counter in /stats, then the body freed and the
 * server stopped, which must exit 0. */
static void end_fault_test(struct mock_proc *m, char *body, const char *counter, long want)
{
    cJSON *s = mock_stats(m);
    long got = mock_stat(s, counter);
    if (got != want)
        fprintf(stderr, "\n  %s: %ld, want %ld\n", counter, got, want);
    CU_ASSERT_EQUAL(got, want);
    cJSON_Delete(s);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(m), 0);
}

static void test_fault_error(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--error-rate", "1", NULL}) != 0)
        return;
    char *body = hello_body();
    long status = 0;
    char *resp = NULL;
    CU_ASSERT_EQUAL(http_post(url(&m, "/model_01"), body, strlen(body), &status, &resp), 0);
    CU_ASSERT_EQUAL(status, 500);
    free(resp);
    /* Faults are drawn before validation: an invalid request gets the fault too. */
    struct http_opts get = {.method = "GET"};
    CU_ASSERT_EQUAL(http_request(url(&m, "/model_02"), &get, NULL, 0, &status, NULL, NULL), 0);
    CU_ASSERT_EQUAL(status, 500);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(mock_stat(s, "faults.error"), 2);
    CU_ASSERT_EQUAL(mock_stat(s, "ok"), 0);
    CU_ASSERT_EQUAL(mock_stat(s, "rejected"), 0);
    CU_ASSERT_EQUAL(mock_stat(s, "requests.model_01"), 1);
    CU_ASSERT_EQUAL(mock_stat(s, "requests.model_02"), 1);
    CU_ASSERT_EQUAL(mock_stat(s, "total"), 2);
    cJSON_Delete(s);
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

static void test_fault_429(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--rate-429", "1", "--retry-after", "0", NULL}) != 0)
        return;
    char *body = hello_body();
    long status = 0;
    char *headers = NULL;
    CU_ASSERT_EQUAL(http_request(url(&m, "/model_03"), NULL, body, strlen(body), &status, NULL, &headers), 0);
    CU_ASSERT_EQUAL(status, 429);
    CU_ASSERT_PTR_NOT_NULL(strcasestr(headers, "\nRetry-After: 0\r\n"));
    free(headers);
    end_fault_test(&m, body, "faults.429", 1);
}

static void test_fault_reset(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--reset-rate", "1", NULL}) != 0)
        return;
    char *body = hello_body();
    long status = 0;
    int rc = http_post(url(&m, "/model_01"), body, strlen(body), &status, NULL);
    CU_ASSERT(rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR);
    CU_ASSERT_EQUAL(status, 0);
    end_fault_test(&m, body, "faults.reset", 1); /* it goes on serving */
}

/* Server-side sockets on port still waiting for us to close them (CLOSE_WAIT). */
static int close_wait_on(int port)
{
    int n = 0;
    const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int f = 0; f < 2; f++) {
        FILE *fp = fopen(files[f], "r");
        if (!fp)
            continue;
        char line[512];
        while (fgets(line, sizeof line, fp)) {
            char local[80];
            unsigned st;
            if (sscanf(line, " %*d: %79s %*s %x", local, &st) != 2)
                continue;
            const char *colon = strrchr(local, ':');
            if (colon && strtol(colon + 1, NULL, 16) == port && st == 0x08)
                n++;
        }
        fclose(fp);
    }
    return n;
}

static void test_fault_hang(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--hang-rate", "1", NULL}) != 0)
        return;
    char *body = hello_body();
    long status = 0;
    struct http_opts o = {.timeout_ms = 300};
    long t0 = now_ms();
    int rc = http_request(url(&m, "/model_02"), &o, body, strlen(body), &status, NULL, NULL);
    long took = now_ms() - t0;
    CU_ASSERT_EQUAL(rc, CURLE_OPERATION_TIMEDOUT);
    CU_ASSERT(took >= 250 && took < 3000);
    /* Once the client gave up, the server closes its side instead of holding the socket. */
    int waiting = 1;
    for (int i = 0; i < 100 && (waiting = close_wait_on(m.port)) > 0; i++)
        sleep_ms(10);
    CU_ASSERT_EQUAL(waiting, 0);
    /* One more left hanging while the server stops: it must still exit cleanly. */
    o.timeout_ms = 200;
    http_request(url(&m, "/model_02"), &o, body, strlen(body), &status, NULL, NULL);
    end_fault_test(&m, body, "faults.hang", 2);
}

static void test_fault_garbage(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--garbage-rate", "1", NULL}) != 0)
        return;
    char *body = hello_body();
    long status = 0;
    char *resp = NULL;
    CU_ASSERT_EQUAL(http_post(url(&m, "/model_05"), body, strlen(body), &status, &resp), 0);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT(resp && resp[0]);
    cJSON *j = cJSON_Parse(resp);
    CU_ASSERT_PTR_NULL(j);
    cJSON_Delete(j);
    free(resp);
    end_fault_test(&m, body, "faults.garbage", 1);
}

/* --reject-rate: a share of the images answered 400 every time, at every endpoint, whatever
 * the order: the same images in two rounds, and about the share asked for. */
static void test_fault_reject_images(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--reject-rate", "0.25", NULL}) != 0)
        return;
    char first[200];
    int rejected = 0;
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 200; i++) {
            int k = round ? 199 - i : i; /* the second round in the other order */
            unsigned char img[16];
            int n = snprintf((char *)img, sizeof img, "image %d", k);
            char *body = body_for(img, (size_t)n, "null");
            long status = 0;
            char *resp = NULL;
            http_post(url(&m, round ? "/model_02" : "/model_01"), body, strlen(body), &status, &resp);
            if (round == 0) {
                first[k] = status == 400 ? 'R' : status == 200 ? '.' : '?';
                rejected += status == 400;
                if (status == 400)
                    CU_ASSERT(resp && strstr(resp, "--reject-rate"));
            } else {
                CHECKF((status == 400 ? 'R' : '.') == first[k], "image %d: %ld the second time", k, status);
            }
            free(resp);
            free(body);
        }
    CHECKF(rejected >= 25 && rejected <= 75, "%d of 200 images rejected at --reject-rate 0.25", rejected);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* The statuses of 40 requests to a server at --error-rate 0.5 --seed seed, as a string. */
static void fault_sequence(const char *seed, char out[41])
{
    struct mock_proc m;
    memset(out, '?', 40);
    out[40] = '\0';
    if (start_with(&m, (const char *const[]){"--error-rate", "0.5", "--seed", seed, NULL}) != 0)
        return;
    char *body = hello_body();
    for (int i = 0; i < 40; i++) {
        long status = 0;
        http_post(url(&m, "/model_01"), body, strlen(body), &status, NULL);
        out[i] = status == 200 ? '.' : status == 500 ? 'E' : '?';
    }
    free(body);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

static void test_fault_seeded(void)
{
    char a[41], b[41], c[41];
    fault_sequence("42", a);
    fault_sequence("42", b);
    fault_sequence("43", c);
    CU_ASSERT_STRING_EQUAL(a, b);
    CU_ASSERT_STRING_NOT_EQUAL(a, c);
    CU_ASSERT(strchr(a, '.') && strchr(a, 'E') && !strchr(a, '?'));
}

static void test_latency(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--latency-ms", "50", NULL}) != 0)
        return;
    char *body = hello_body();
    for (int i = 0; i < 3; i++) {
        long status = 0;
        long t0 = now_ms();
        CU_ASSERT_EQUAL(http_post(url(&m, "/model_01"), body, strlen(body), &status, NULL), 0);
        CU_ASSERT(now_ms() - t0 >= 50);
        CU_ASSERT_EQUAL(status, 200);
    }
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
    /* The other distributions answer too (their shape is not timed here: too flaky). */
    const char *dists[] = {"uniform", "exp"};
    for (int d = 0; d < 2; d++) {
        if (start_with(&m, (const char *const[]){"--latency-ms", "5", "--latency-dist", dists[d], NULL}) != 0)
            continue;
        for (int i = 0; i < 5; i++) {
            long status = 0;
            CU_ASSERT_EQUAL(http_post(url(&m, "/model_02"), body, strlen(body), &status, NULL), 0);
            CU_ASSERT_EQUAL(status, 200);
        }
        CU_ASSERT_EQUAL(mock_stop(&m), 0);
    }
    free(body);
}

struct conc {
    CURL *easy;
    char *body;
    unsigned char payload[64];
    size_t n;
    char *resp;
    size_t resp_len;
};

static size_t conc_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct conc *c = arg;
    size_t n = size * nmemb;
    char *p = realloc(c->resp, c->resp_len + n + 1);
    if (!p)
        return 0;
    memcpy(p + c->resp_len, ptr, n);
    c->resp = p;
    c->resp_len += n;
    c->resp[c->resp_len] = '\0';
    return n;
}

/* Runs every transfer of the multi handle to completion; returns how many ended 200 with the
 * right answer, and adds the new connections they opened to *connects. */
static int run_round(CURLM *multi, struct conc *cs, int n, long *connects)
{
    for (int i = 0; i < n; i++) {
        free(cs[i].resp);
        cs[i].resp = NULL;
        cs[i].resp_len = 0;
        curl_multi_add_handle(multi, cs[i].easy);
    }
    int running = 1;
    while (running) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    int good = 0;
    for (int i = 0; i < n; i++) {
        long status = 0, nc = 0;
        curl_easy_getinfo(cs[i].easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(cs[i].easy, CURLINFO_NUM_CONNECTS, &nc);
        *connects += nc;
        curl_multi_remove_handle(multi, cs[i].easy);
        cJSON *j = cJSON_Parse(cs[i].resp);
        cJSON *want = mock_answer(1, cs[i].payload, cs[i].n);
        good += status == 200 && cJSON_Compare(cJSON_GetObjectItemCaseSensitive(j, "result"), want, 1);
        cJSON_Delete(want);
        cJSON_Delete(j);
    }
    return good;
}

static void test_concurrent(void)
{
    enum { N = 200 };
    struct mock_proc m;
    /* 200 ms each: answered one after the other they would take 40 s. */
    if (start_with(&m, (const char *const[]){"--latency-ms", "200", NULL}) != 0)
        return;
    static struct conc cs[N];
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:");
    CURLM *multi = curl_multi_init();
    for (int i = 0; i < N; i++) {
        struct conc *c = &cs[i];
        c->n = random_payload(c->payload, sizeof c->payload);
        c->body = body_for(c->payload, c->n, "null");
        c->easy = curl_easy_init();
        curl_easy_setopt(c->easy, CURLOPT_URL, url(&m, "/model_01"));
        curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, conc_write);
        curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->easy, CURLOPT_TIMEOUT, 20L);
        curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    }
    long connects1 = 0, connects2 = 0;
    long t0 = now_ms();
    int good1 = run_round(multi, cs, N, &connects1);
    long took1 = now_ms() - t0;
    t0 = now_ms();
    int good2 = run_round(multi, cs, N, &connects2);
    long took2 = now_ms() - t0;
    CU_ASSERT_EQUAL(good1, N);
    CU_ASSERT_EQUAL(good2, N);
    CU_ASSERT_EQUAL(connects1, N);  /* 200 connections at once */
    CU_ASSERT_EQUAL(connects2, 0);  /* all kept alive and reused */
    CU_ASSERT(took1 < 5000 && took2 < 5000);
    if (took1 >= 5000 || took2 >= 5000 || connects2 != 0)
        fprintf(stderr, "\n  rounds took %ld and %ld ms, %ld then %ld new connections\n", took1,
                took2, connects1, connects2);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_EQUAL(mock_stat(s, "ok"), 2 * N);
    cJSON_Delete(s);
    for (int i = 0; i < N; i++) {
        curl_easy_cleanup(cs[i].easy);
        free(cs[i].body);
        free(cs[i].resp);
        memset(&cs[i], 0, sizeof cs[i]);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(hl);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

static void test_trust_payload(void)
{
    struct mock_proc m;
    if (start_with(&m, (const char *const[]){"--trust-payload", NULL}) != 0)
        return;
    static unsigned char p[60000];
    static char text[80004];
    for (int i = 0; i < 20; i++) {
        size_t n = random_payload(p, i < 15 ? 2000 : sizeof p);
        size_t tn = b64_encode(p, n, text);
        int mdl = 1 + i % 5;
        /* model_04's model_03 is not checked in this mode: null goes through. */
        char *body = body_for(p, n, "null");
        long status = 0;
        char *resp = NULL;
        CU_ASSERT_EQUAL(http_post(url(&m, model_path(mdl)), body, strlen(body), &status, &resp), 0);
        CU_ASSERT_EQUAL(status, 200);
        cJSON *j = cJSON_Parse(resp);
        cJSON *want = mock_answer_key(mdl, mock_key_b64(text, tn), mock_b64_payload_len(text, tn));
        CU_ASSERT(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(j, "result"), want, 1));
        if (mdl == 5) /* the payload length is still right */
            CU_ASSERT_EQUAL(mock_stat(cJSON_GetObjectItemCaseSensitive(j, "result"), "bytes"), (long)n);
        cJSON_Delete(want);
        cJSON_Delete(j);
        free(resp);
        free(body);
    }
    const char *nothing = "[{\"model_03\": null}]";
    long status = 0;
    CU_ASSERT_EQUAL(http_post(url(&m, "/model_01"), nothing, strlen(nothing), &status, NULL), 0);
    CU_ASSERT_EQUAL(status, 400);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

static void test_cli(void)
{
    const char *bin = mock_bin();
    char out[4096];
    const char *help[] = {bin, "--help", NULL};
    CU_ASSERT_EQUAL(run_cmd(help, 10, out, sizeof out), 0);
    static const char *const listed[] = {"--host", "--port", "--latency-ms", "--latency-dist",
        "--seed", "--error-rate", "--rate-429", "--retry-after", "--reset-rate", "--hang-rate",
        "--garbage-rate", "--trust-payload", "benchmark"};
    for (size_t i = 0; i < sizeof listed / sizeof listed[0]; i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(out, listed[i]));

    static const char *const bad[][4] = {
        {"--bogus", NULL},
        {"--port", NULL},
        {"--port", "70000", NULL},
        {"--error-rate", "1.5", NULL},
        {"--hang-rate", "x", NULL},
        {"--latency-dist", "normal", NULL},
        {"--latency-ms", "-1", NULL},
        {"--seed", "-3", NULL},
        {"extra", NULL},
        {"--trust-payload=1", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *argv[6] = {bin, bad[i][0], bad[i][1], bad[i][2], NULL};
        int rc = run_cmd(argv, 10, out, sizeof out);
        CU_ASSERT_EQUAL(rc, 2);
        /* One line that says where to look. */
        char *nl = strchr(out, '\n');
        CU_ASSERT(nl && nl[1] == '\0' && strstr(out, "--help"));
        if (rc != 2)
            fprintf(stderr, "\n  %s: exit %d: %s\n", bad[i][0], rc, out);
    }
    if (srv.pid > 0) { /* a port in use: exit 1 and say so */
        char port[16];
        snprintf(port, sizeof port, "%d", srv.port);
        const char *argv[] = {bin, "--port", port, NULL};
        CU_ASSERT_EQUAL(run_cmd(argv, 10, out, sizeof out), 1);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, port));
    }
}

static void test_server_stop(void)
{
    CU_ASSERT_FATAL(srv.pid > 0);
    CU_ASSERT_EQUAL(mock_stop(&srv), 0); /* SIGTERM → 0, and clean under ASan/valgrind */
}

static int suite_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int suite_cleanup(void)
{
    if (srv.pid > 0)
        mock_stop(&srv);
    curl_global_cleanup();
    return 0;
}

int register_mock(void)
{
    CU_pSuite s = CU_add_suite("mock", suite_init, suite_cleanup);
    if (!s)
        return -1;
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"answers: FNV-1a key vectors", test_key_vectors},
        {"answers: deterministic, key and payload paths agree", test_determinism},
        {"answers: model_01", test_model01},
        {"answers: model_02", test_model02},
        {"answers: model_03", test_model03},
        {"answers: model_04 sub-images and model_03 check", test_model04},
        {"answers: model_05", test_model05},
        {"answers: trust-payload key", test_trust_key},
        {"server: starts on a free port", test_server_start},
        {"server: answers every model, 5 MiB body too", test_server_answers},
        {"server: rejects invalid requests with a reason", test_server_rejects},
        {"server: 404, 405, query strings", test_server_paths},
        {"server: /stats and /stats/reset", test_server_stats},
        {"faults: error", test_fault_error},
        {"faults: 429 with Retry-After", test_fault_429},
        {"faults: reset", test_fault_reset},
        {"faults: hang, and the socket is closed after", test_fault_hang},
        {"faults: garbage", test_fault_garbage},
        {"faults: --reject-rate rejects the same images every time", test_fault_reject_images},
        {"faults: repeatable with --seed", test_fault_seeded},
        {"latency: fixed, uniform, exp", test_latency},
        {"concurrency: 200 keep-alive connections", test_concurrent},
        {"trust-payload mode", test_trust_payload},
        {"command line", test_cli},
        {"server: SIGTERM exits 0", test_server_stop},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
