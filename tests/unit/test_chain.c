/* Suite "chain": the chain's state machine (src/chain/chain.c), driven by hand, no network.
 *
 * A tiny driver in this file plays the HTTP side: it takes what chain_next asks for, answers each
 * request with what the mock server would answer (mock_answer on the decoded im_str of the body
 * it assembled with chain_req_read), and ends each attempt with chain_attempt_end, until chain_finished. Hundreds of
 * random payloads then check the seed's rules against a prediction made independently from the
 * mock's models. Other tests complete requests with hand-made results (falsy values, failures,
 * malformed model_04 answers, strings that need JSON escaping) and check chain_outcome's
 * classification and chain_truthy. */
#include "chain/chain.h"
#include "endpoint/shared.h"

#include <CUnit/CUnit.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "mock/answers.h"

#include "check.h"
#include "util.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull; /* fixed: a failure reproduces */
static uint64_t rng(void)
{
    return xorshift64(&rng_state);
}

static struct pipeline *P;

static int suite_init(void)
{
    return pipeline_default(&P) ? -1 : 0;
}

static int suite_clean(void)
{
    pipeline_free(P);
    P = NULL;
    return 0;
}

/* A pending item carrying payload as its base64. */
static struct item *make_item(const unsigned char *payload, size_t len)
{
    static uint64_t seq;
    struct item *it = item_new("dir/img.jpg", 11, 4, P->n, seq++);
    if (!it)
        return NULL;
    it->b64 = malloc(b64_encoded_len(len) + 1);
    it->b64_len = b64_encode(payload, len, it->b64);
    return it;
}

/* The whole body, read chunk bytes at a time from the start; *len gets its length. */
static char *read_body(struct chain_req *r, size_t chunk, size_t *len)
{
    r->sent = 0;
    size_t cap = chain_req_body_len(r) + 1, n = 0;
    char *buf = malloc(cap + chunk);
    size_t got;
    while ((got = chain_req_read(r, buf + n, chunk)) > 0) {
        n += got;
        if (n > cap) /* more than the announced length: stop */
            break;
    }
    buf[n] = 0;
    *len = n;
    r->sent = 0;
    return buf;
}

/* Parses the body; returns the single object of [{...}] (and *root to free), or NULL. */
static cJSON *body_object(struct chain_req *r, cJSON **root)
{
    size_t len;
    char *body = read_body(r, 4096, &len);
    *root = cJSON_ParseWithLength(body, len);
    free(body);
    if (!cJSON_IsArray(*root) || cJSON_GetArraySize(*root) != 1 || !cJSON_IsObject((*root)->child))
        return NULL;
    return (*root)->child;
}

static int model_of(const struct chain_req *r)
{
    return atoi(P->stages[r->stage].name + 6); /* "model_0N" */
}

/* The run the chain is driven in: the seed pipeline (or whatever P is), no retries unless a
 * test asks, no backoff. */
static struct config CFG;
static struct shared_page SHARED;
static struct run RUN;
static atomic_int RUN_STOP;

static const struct run *R(void)
{
    RUN.cfg = &CFG;
    RUN.stop = &RUN_STOP;
    RUN.p = P;
    RUN.shared = &SHARED;
    return &RUN;
}

/* chain_next, and every request it returns begun at once, as the curl-multi driver does. */
static struct chain_req *next(struct item *it)
{
    struct chain_req *list = chain_next(R(), it);
    if (it->status != ITEM_FAILED)
        for (struct chain_req *r = list; r; r = r->next)
            CU_ASSERT_EQUAL(chain_attempt_begin(R(), r, 1.0), CHAIN_SEND);
    return list;
}

/* Ends r as a driver would after `attempts` attempts: the earlier ones answered 503, the last
 * one with result (owned, taken) or with err ("HTTP N: body", or a curl message). */
static void done(struct chain_req *r, cJSON *result, const char *err, int attempts)
{
    CFG.retries = attempts - 1;
    CFG.backoff_ms = CFG.backoff_max_ms = 0;
    char *text = NULL;
    if (result) {
        char *j = cJSON_PrintUnformatted(result);
        text = malloc(strlen(j) + 16);
        sprintf(text, "{\"result\":%s}", j);
        free(j);
        cJSON_Delete(result);
    }
    if (r->attempts == 0 && chain_attempt_begin(R(), r, 1.0) == CHAIN_SETTLED) {
        free(text);
        return;
    }
    for (int k = 1;; k++) {
        struct chain_answer a = {.cc = CURLE_OK, .status = 503, .body = "busy", .len = 4, .retry_after_s = -1};
        long status;
        int off = 0;
        if (k >= attempts && text) {
            a.status = 200;
            a.body = text;
            a.len = strlen(text);
        } else if (k >= attempts && sscanf(err, "HTTP %ld: %n", &status, &off) == 1 && off > 0) {
            a.status = status;
            a.body = err + off;
            a.len = strlen(err + off);
        } else if (k >= attempts) {
            a.cc = CURLE_COULDNT_CONNECT;
            a.curl_err = err;
        }
        double at;
        if (chain_attempt_end(R(), r, &a, 2.0, &at) != CHAIN_RETRY ||
            chain_attempt_begin(R(), r, 3.0) == CHAIN_SETTLED)
            break;
    }
    free(text);
}

/* 1 when a and b are the same JSON text once printed compactly (results are kept as the text
 * the server sent, printed as they are). */
static int same_json(const cJSON *a, const cJSON *b)
{
    char *x = a ? cJSON_PrintUnformatted(a) : NULL, *y = b ? cJSON_PrintUnformatted(b) : NULL;
    int same = x && y && !strcmp(x, y);
    free(x);
    free(y);
    return same;
}

/* A result as a tree (caller deletes). */
static cJSON *tree(const cJSON *r)
{
    char *t = r ? cJSON_PrintUnformatted(r) : NULL;
    cJSON *v = t ? cJSON_Parse(t) : NULL;
    free(t);
    return v;
}

static int list_len(const struct chain_req *r)
{
    int n = 0;
    for (; r; r = r->next)
        n++;
    return n;
}

static void free_list(struct chain_req *r)
{
    while (r) {
        struct chain_req *next = r->next;
        chain_req_free(r);
        r = next;
    }
}

/* ---- the seed's rules on random payloads ---- */

struct coverage {
    int falsy01, falsy02, both_truthy, regions[4], reqs;
};

/* What the chain must end with, predicted from the mock's models alone. */
static void predict(const unsigned char *pl, size_t len, cJSON *want[5])
{
    memset(want, 0, 5 * sizeof *want);
    want[0] = mock_answer(1, pl, len);
    want[1] = mock_answer(2, pl, len);
    if (!chain_truthy(want[0]) || !chain_truthy(want[1]))
        return;
    want[2] = mock_answer(3, pl, len);
    want[3] = mock_answer(4, pl, len);
    want[4] = cJSON_CreateArray();
    const cJSON *subs = cJSON_GetObjectItemCaseSensitive(want[3], "sub-img");
    for (const cJSON *e = subs ? subs->child : NULL; e; e = e->next) {
        const char *img = cJSON_GetObjectItemCaseSensitive(e, "img")->valuestring;
        size_t n = strlen(img), sl;
        unsigned char *sub = malloc(b64_decoded_max(n) + 1);
        b64_decode(img, n, sub, &sl);
        cJSON_AddItemToArray(want[4], mock_answer(5, sub, sl));
        free(sub);
    }
}

/* Runs one payload through the chain; returns the number of failed checks. */
static int run_payload(const unsigned char *pl, size_t len, struct coverage *cov)
{
    int bad = 0;
#define EXPECT(cond, ...)                                                                         \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            bad++;                                                                                \
            CHECKF(0, __VA_ARGS__);                                                               \
        }                                                                                         \
    } while (0)
    cJSON *want[5];
    predict(pl, len, want);
    int truthy = want[2] != NULL;
    int regions = truthy ? cJSON_GetArraySize(want[4]) : -1;
    cov->falsy01 += !chain_truthy(want[0]);
    cov->falsy02 += chain_truthy(want[0]) && !chain_truthy(want[1]);
    cov->both_truthy += truthy;
    if (truthy)
        cov->regions[regions]++;

    struct item *it = make_item(pl, len);
    int round = 0, total = 0;
    while (!chain_finished(it) && round < 10) {
        struct chain_req *reqs = next(it);
        if (!reqs) {
            EXPECT(chain_finished(it), "len %zu round %d: nothing to send but not finished", len, round);
            break;
        }
        EXPECT(next(it) == NULL, "round %d: a second chain_next asks again", round);
        int n = list_len(reqs);
        total += n;
        /* Which stages, in which order. */
        switch (round) {
        case 0:
            EXPECT(n == 2 && reqs->stage == 0 && reqs->next->stage == 1,
                   "round 0 must send model_01 and model_02 together (%d requests)", n);
            break;
        case 1:
            EXPECT(truthy && n == 1 && reqs->stage == 2, "round 1 must be model_03 alone (truthy %d, n %d)", truthy, n);
            break;
        case 2:
            EXPECT(n == 1 && reqs->stage == 3, "round 2 must be model_04 alone");
            break;
        case 3: {
            int i = 0, ok = 1;
            for (struct chain_req *r = reqs; r; r = r->next, i++)
                ok &= r->stage == 4 && r->index == i;
            EXPECT(ok && n == regions, "round 3 must be %d model_05 requests in order, got %d", regions, n);
            break;
        }
        default:
            EXPECT(0, "round %d: too many rounds", round);
        }
        /* Answer them, the last first (completion order must not matter). */
        struct chain_req *arr[16];
        int k = 0;
        for (struct chain_req *r = reqs; r && k < 16; r = r->next)
            arr[k++] = r;
        for (int j = k - 1; j >= 0; j--) {
            struct chain_req *r = arr[j];
            cJSON *root;
            cJSON *o = body_object(r, &root);
            EXPECT(o != NULL, "stage %d: the body is not [{...}]", r->stage);
            const cJSON *im = o ? cJSON_GetObjectItemCaseSensitive(o, "im_str") : NULL;
            EXPECT(cJSON_IsString(im), "stage %d: no im_str", r->stage);
            const cJSON *m3 = o ? cJSON_GetObjectItemCaseSensitive(o, "model_03") : NULL;
            EXPECT(m3 != NULL, "stage %d: no model_03 field", r->stage);
            int m = model_of(r);
            cJSON *answer = NULL;
            if (m == 5) {
                size_t n5 = im ? strlen(im->valuestring) : 0, sl = 0;
                unsigned char *sub = malloc(b64_decoded_max(n5) + 1);
                EXPECT(im && b64_decode(im->valuestring, n5, sub, &sl) == 0, "model_05: im_str is not base64");
                cJSON *m4 = tree(it->results[3]);
                const cJSON *subs = cJSON_GetObjectItemCaseSensitive(m4, "sub-img");
                const cJSON *e = cJSON_GetArrayItem(subs, r->index);
                EXPECT(e && im && !strcmp(cJSON_GetObjectItemCaseSensitive(e, "img")->valuestring, im->valuestring),
                       "model_05[%d] is not sent sub-img[%d].img", r->index, r->index);
                EXPECT(cJSON_IsNull(m3), "model_05: model_03 must be null");
                cJSON_Delete(m4);
                answer = mock_answer(5, sub, sl);
                free(sub);
            } else {
                EXPECT(im && im->valuestring && strlen(im->valuestring) == it->b64_len &&
                           !memcmp(im->valuestring, it->b64, it->b64_len),
                       "model_%02d: im_str is not the image's base64", m);
                if (m == 4) {
                    EXPECT(m3 && same_json(m3, it->results[2]), "model_04 must be sent model_03's result");
                    EXPECT(mock_model04_accepts(pl, len, m3), "the mock would refuse this model_04 request");
                } else {
                    EXPECT(cJSON_IsNull(m3), "model_%02d: model_03 must be null", m);
                }
                answer = mock_answer(m, pl, len);
            }
            cJSON_Delete(root);
            done(r, answer, NULL, 1);
        }
        round++;
    }
    EXPECT(chain_finished(it), "len %zu: not finished after %d rounds", len, round);
    EXPECT(it->status == ITEM_OK, "len %zu: status %d (%s)", len, it->status, it->error ? it->error : "");
    EXPECT(it->error == NULL, "ok item with an error");
    EXPECT(it->in_flight == 0, "requests still in flight");
    EXPECT(it->requests == (uint32_t)total && it->attempts == (uint32_t)total, "requests %u attempts %u, sent %d",
           it->requests, it->attempts, total);
    for (int s = 0; s < 5; s++) {
        int same = want[s] ? it->results[s] && same_json(want[s], it->results[s]) : it->results[s] == NULL;
        if (!same) {
            char *a = want[s] ? cJSON_PrintUnformatted(want[s]) : NULL;
            char *b = it->results[s] ? cJSON_PrintUnformatted(it->results[s]) : NULL;
            EXPECT(0, "len %zu, model_%02d: got %s, want %s", len, s + 1, b ? b : "NULL", a ? a : "NULL");
            free(a);
            free(b);
        }
        unsigned char st = it->state[s];
        EXPECT(want[s] ? st == ST_DONE : st == ST_SKIPPED, "model_%02d: state %d", s + 1, st);
    }
    cov->reqs += total;
    for (int s = 0; s < 5; s++)
        cJSON_Delete(want[s]);
    item_free(it);
    return bad;
#undef EXPECT
}

static void test_random_payloads(void)
{
    struct coverage cov = {0};
    int bad = 0;
    unsigned char buf[3000];
    for (int i = 0; i < 600 && bad < 20; i++) {
        size_t len = i == 0 ? 0 : (size_t)(rng() % sizeof buf);
        fill_random(&rng_state, buf, len);
        bad += run_payload(buf, len, &cov);
    }
    /* The sample covers every branch of the seed's rules. */
    CHECKF(cov.falsy01 > 0 && cov.falsy02 > 0 && cov.both_truthy > 0, "coverage: falsy01 %d falsy02 %d truthy %d",
           cov.falsy01, cov.falsy02, cov.both_truthy);
    for (int r = 0; r < 4; r++)
        CHECKF(cov.regions[r] > 0, "no payload with %d regions", r);
}

/* ---- bodies ---- */

static void check_body_chunks(struct chain_req *r, const char *want_im, size_t want_im_len, const cJSON *want_m3)
{
    size_t l1, l7, l4k;
    char *b1 = read_body(r, 1, &l1), *b7 = read_body(r, 7, &l7), *b4k = read_body(r, 4096, &l4k);
    size_t blen = chain_req_body_len(r);
    CHECKF(l1 == blen && l7 == blen && l4k == blen, "lengths %zu %zu %zu, announced %zu", l1, l7, l4k, blen);
    CU_ASSERT(l1 == l7 && !memcmp(b1, b7, l1));
    CU_ASSERT(l1 == l4k && !memcmp(b1, b4k, l1));
    CU_ASSERT(strncmp(b1, CHAIN_BODY_HEAD, CHAIN_BODY_HEAD_LEN) == 0);
    /* At the end, reads return 0. */
    char x[8];
    r->sent = blen;
    CU_ASSERT_EQUAL(chain_req_read(r, x, sizeof x), 0);
    r->sent = 0;
    cJSON *root = cJSON_ParseWithLength(b1, l1);
    CHECKF(cJSON_IsArray(root) && cJSON_GetArraySize(root) == 1, "not [{...}]: %.200s", b1);
    const cJSON *o = root ? root->child : NULL;
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(o, "im_str");
    const cJSON *m3 = cJSON_GetObjectItemCaseSensitive(o, "model_03");
    CU_ASSERT(cJSON_GetArraySize(o) == 2);
    CU_ASSERT(cJSON_IsString(im) && strlen(im->valuestring) == want_im_len &&
              !memcmp(im->valuestring, want_im, want_im_len));
    CU_ASSERT(m3 && same_json(m3, want_m3));
    cJSON_Delete(root);
    free(b1);
    free(b7);
    free(b4k);
}

static void test_req_read_chunks(void)
{
    size_t sizes[] = {0, 1, 2, 3, 5000, 100000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t len = sizes[k];
        unsigned char *pl = malloc(len + 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(pl);
        fill_random(&rng_state, pl, len);
        struct item *it = make_item(pl, len);
        struct chain_req *reqs = next(it);
        CU_ASSERT_EQUAL_FATAL(list_len(reqs), 2);
        cJSON *null = cJSON_CreateNull();
        check_body_chunks(reqs, it->b64, it->b64_len, null);
        check_body_chunks(reqs->next, it->b64, it->b64_len, null);
        cJSON_Delete(null);
        /* On to model_04 with a model_03 result that has every kind of JSON in it. */
        struct chain_req *n = reqs->next;
        done(reqs, cJSON_Parse("{\"label\":\"cat\"}"), NULL, 1);
        done(n, cJSON_Parse("[\"tag_a\"]"), NULL, 1);
        reqs = next(it);
        CU_ASSERT_FATAL(list_len(reqs) == 1 && reqs->stage == 2);
        cJSON *m3 = cJSON_Parse("{\"id\":\"00ff\\\"q\\\\\",\"regions\":2,\"x\":[null,true,false,1.5,{}],\"u\":\"\\u00e9\"}");
        CU_ASSERT_PTR_NOT_NULL_FATAL(m3);
        done(reqs, cJSON_Duplicate(m3, 1), NULL, 1);
        reqs = next(it);
        CU_ASSERT_FATAL(list_len(reqs) == 1 && reqs->stage == 3);
        check_body_chunks(reqs, it->b64, it->b64_len, m3);
        cJSON_Delete(m3);
        free_list(reqs);
        item_free(it);
        free(pl);
    }
}

/* chain_req_whole: a body in place around the image's base64 (the loader's slack, item.h) is the
 * same bytes chain_req_read gives; a sibling on the wire with the same head and tail shares it,
 * one with another tail does not get it (and what is in place is left as it was). */
static int whole_is(struct chain_req *r, const char *whole)
{
    size_t len;
    char *body = read_body(r, 4096, &len);
    int same = whole && len == chain_req_body_len(r) && !memcmp(body, whole, len);
    free(body);
    return same;
}

static void test_req_whole(void)
{
    enum { SLACK = 1024 };
    size_t len = 3000;
    unsigned char *pl = malloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pl);
    fill_random(&rng_state, pl, len);
    struct item *it = make_item(pl, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(it);
    struct chain_req *reqs = next(it);
    CU_ASSERT_PTR_NULL(chain_req_whole(reqs)); /* no slack: no whole body */
    free_list(reqs);
    item_free(it);

    it = make_item(pl, len);
    char *block = malloc(SLACK + it->b64_len + 1 + SLACK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(block);
    memcpy(block + SLACK, it->b64, it->b64_len);
    free(it->b64);
    it->b64 = block + SLACK;
    it->b64_slack = SLACK;
    reqs = next(it);
    CU_ASSERT_EQUAL_FATAL(list_len(reqs), 2);
    const char *w1 = chain_req_whole(reqs), *w2 = chain_req_whole(reqs->next);
    CU_ASSERT(whole_is(reqs, w1));
    CU_ASSERT(w1 == w2 && whole_is(reqs->next, w2)); /* the same text around it: shared */
    CU_ASSERT_EQUAL(it->slack_users, 2);
    chain_req_whole_done(it);
    chain_req_whole_done(it);
    struct chain_req *n = reqs->next;
    done(reqs, cJSON_Parse("{\"label\":\"cat\"}"), NULL, 1);
    done(n, cJSON_Parse("[\"tag_a\"]"), NULL, 1);
    reqs = next(it);
    CU_ASSERT_FATAL(list_len(reqs) == 1 && reqs->stage == 2);
    const char *w3 = chain_req_whole(reqs); /* model_03: the seed's tail again */
    CU_ASSERT(whole_is(reqs, w3));
    size_t l3 = chain_req_body_len(reqs);
    done(reqs, cJSON_Parse("{\"id\":\"00ff\",\"regions\":2}"), NULL, 1);
    reqs = next(it);
    CU_ASSERT_FATAL(list_len(reqs) == 1 && reqs->stage == 3);
    /* model_03's request still on the wire (its use not done): model_04's other tail must not
     * be written over it. */
    char *before = malloc(l3);
    memcpy(before, w3, l3);
    CU_ASSERT_PTR_NULL(chain_req_whole(reqs));
    CU_ASSERT(memcmp(before, w3, l3) == 0);
    free(before);
    chain_req_whole_done(it); /* model_03's attempt is over: now model_04 gets it */
    const char *w4 = chain_req_whole(reqs);
    CU_ASSERT(whole_is(reqs, w4));
    chain_req_whole_done(it);
    CU_ASSERT_EQUAL(it->slack_users, 0);
    free_list(reqs);
    item_free(it);
    free(pl);
}

/* ---- truthiness and outcomes ---- */

static void test_truthy(void)
{
    static const char *falsy[] = {"null", "false", "0", "0.0", "-0", "\"\"", "[]", "{}"};
    static const char *truthy[] = {"1", "-1", "0.5", "\"a\"", "\"0\"", "\" \"", "[0]", "[null]", "{\"a\":0}", "true"};
    for (size_t i = 0; i < sizeof falsy / sizeof falsy[0]; i++) {
        cJSON *v = cJSON_Parse(falsy[i]);
        CHECKF(v && !chain_truthy(v), "%s must be falsy", falsy[i]);
        cJSON_Delete(v);
    }
    for (size_t i = 0; i < sizeof truthy / sizeof truthy[0]; i++) {
        cJSON *v = cJSON_Parse(truthy[i]);
        CHECKF(v && chain_truthy(v), "%s must be truthy", truthy[i]);
        cJSON_Delete(v);
    }
    CU_ASSERT_FALSE(chain_truthy(NULL));
    /* Results are kept as the raw bytes the server sent: the same answers, and white space. */
    static const char *raw_falsy[] = {"null", "false", "0", "0.0", "-0", "\"\"", "[]", "{}", "[ ]", " {\n\t} ",
                                      "0e5", "1e-400"};
    static const char *raw_truthy[] = {"1", "-1", "0.5", "\"a\"", "\"0\"", "\" \"", "[0]", "[null]", "{\"a\":0}",
                                       "true", " [ 0 ]", "1e999", "\"\\u0000\""};
    for (size_t i = 0; i < sizeof raw_falsy / sizeof raw_falsy[0]; i++) {
        cJSON *v = cJSON_CreateRaw(raw_falsy[i]);
        CHECKF(v && !chain_truthy(v), "raw %s must be falsy", raw_falsy[i]);
        cJSON_Delete(v);
    }
    for (size_t i = 0; i < sizeof raw_truthy / sizeof raw_truthy[0]; i++) {
        cJSON *v = cJSON_CreateRaw(raw_truthy[i]);
        CHECKF(v && chain_truthy(v), "raw %s must be truthy", raw_truthy[i]);
        cJSON_Delete(v);
    }
}

static void test_outcome(void)
{
    static const struct {
        CURLcode cc;
        long status;
        const char *body;
        enum answer_kind want;
        const char *err_has;
    } cases[] = {
        /* one kind per answer: what retries, breakers, replicas and limits all read */
        {CURLE_COULDNT_CONNECT, 0, "", ANSWER_DOWN, ""},
        {CURLE_OPERATION_TIMEDOUT, 0, "", ANSWER_BUSY, ""},
        {CURLE_GOT_NOTHING, 0, "", ANSWER_DOWN, ""},
        {CURLE_RECV_ERROR, 0, "", ANSWER_DOWN, ""},
        {CURLE_SEND_ERROR, 0, "", ANSWER_DOWN, ""},
        {CURLE_PARTIAL_FILE, 0, "", ANSWER_DOWN, ""},
        {CURLE_COULDNT_RESOLVE_HOST, 0, "", ANSWER_RETRY, ""},
        {CURLE_PEER_FAILED_VERIFICATION, 0, "", ANSWER_SETUP, ""},
        {CURLE_WRITE_ERROR, 0, "", ANSWER_FINAL, ""},
        {CURLE_URL_MALFORMAT, 0, "", ANSWER_FINAL, ""},
        {CURLE_OK, 500, "internal", ANSWER_DOWN, "500"},
        {CURLE_OK, 502, "bad gateway", ANSWER_DOWN, "502"},
        {CURLE_OK, 504, "", ANSWER_DOWN, "504"},
        {CURLE_OK, 501, "", ANSWER_RETRY, "501"},
        {CURLE_OK, 408, "", ANSWER_RETRY, "408"},
        {CURLE_OK, 503, "", ANSWER_BUSY, "503"},
        {CURLE_OK, 429, "slow down", ANSWER_BUSY, "429"},
        {CURLE_OK, 400, "{\"error\":\"bad im_str\"}", ANSWER_FINAL, "400"},
        {CURLE_OK, 422, "", ANSWER_FINAL, "422"},
        {CURLE_OK, 400, "{\"error\":{\"details\":[{\"reason\":\"API_KEY_INVALID\"}]}}", ANSWER_SETUP, "400"},
        {CURLE_OK, 401, "", ANSWER_SETUP, "401"},
        {CURLE_OK, 403, "", ANSWER_SETUP, "403"},
        {CURLE_OK, 404, "not found", ANSWER_SETUP, "404"},
        {CURLE_OK, 405, "", ANSWER_SETUP, "405"},
        {CURLE_OK, 200, "not json", ANSWER_RETRY, "JSON"},
        {CURLE_OK, 200, "", ANSWER_RETRY, "JSON"},
        {CURLE_OK, 200, "[1]", ANSWER_RETRY, "object"},
        {CURLE_OK, 200, "{\"x\":1}", ANSWER_RETRY, "no \"result\""},
        {CURLE_OK, 200, "{\"result\":1}", ANSWER_OK, NULL},
        {CURLE_OK, 200, "{\"result\":null}", ANSWER_OK, NULL},
        {CURLE_OK, 201, "{\"result\":{\"a\":[1,2]},\"extra\":true}", ANSWER_OK, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *res = (cJSON *)1;
        char err[256] = "";
        enum answer_kind o = chain_outcome(&(struct chain_answer){cases[i].cc, cases[i].status, cases[i].body, strlen(cases[i].body), NULL, -1, NULL, 0},
                                             &res, err, sizeof err);
        CHECKF(o == cases[i].want, "case %zu (curl %d, HTTP %ld, %s): kind %d, want %d", i, (int)cases[i].cc,
               cases[i].status, cases[i].body, (int)o, (int)cases[i].want);
        if (o == ANSWER_OK) {
            CHECKF(res != NULL, "case %zu: no result", i);
            if (i == sizeof cases / sizeof cases[0] - 3)
                CU_ASSERT(cJSON_IsRaw(res) && !strcmp(res->valuestring, "1"));
            if (i == sizeof cases / sizeof cases[0] - 2)
                CU_ASSERT(cJSON_IsRaw(res) && !strcmp(res->valuestring, "null"));
            if (i == sizeof cases / sizeof cases[0] - 1) {
                cJSON *w = cJSON_Parse("{\"a\":[1,2]}");
                CU_ASSERT(same_json(res, w));
                cJSON_Delete(w);
            }
            cJSON_Delete(res);
        } else {
            CHECKF(res == NULL, "case %zu: a result on failure", i);
            CHECKF(err[0] != 0, "case %zu: no reason", i);
            CHECKF(strstr(err, cases[i].err_has) != NULL, "case %zu: '%s' lacks '%s'", i, err, cases[i].err_has);
        }
    }
    /* A redirect names where it points. */
    cJSON *r3;
    char e3[512] = "";
    CU_ASSERT_EQUAL(chain_outcome(&(struct chain_answer){CURLE_OK, 301, "moved", 5, NULL, -1, "http://h/v2/model_01", 0},
                                  &r3, e3, sizeof e3), ANSWER_FINAL);
    CHECKF(strstr(e3, "HTTP 301") && strstr(e3, "http://h/v2/model_01"), "redirect: %s", e3);
    /* curl's error buffer is preferred when given. */
    cJSON *res;
    char err[256] = "";
    CU_ASSERT_EQUAL(chain_outcome(&(struct chain_answer){CURLE_COULDNT_CONNECT, 0, NULL, 0, "Failed to connect to 127.0.0.1 port 9", -1, NULL, 0},
                                  &res, err, sizeof err), ANSWER_DOWN);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "port 9"));
    /* An answer that found no room within --max-memory: retried, and nothing the server did
     * (not a write error's final failure, not a timeout's "busy"). */
    CU_ASSERT_EQUAL(chain_outcome(&(struct chain_answer){CURLE_WRITE_ERROR, 200, NULL, 0, "no room for the answer", -1, NULL, 1},
                                  &res, err, sizeof err), ANSWER_RETRY);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "no room"));
    /* A non-printable body is not copied raw into the message. */
    const char body[] = "\x01\x02\nboom\r\x7f";
    CU_ASSERT_EQUAL(chain_outcome(&(struct chain_answer){CURLE_OK, 500, body, sizeof body - 1, NULL, -1, NULL, 0}, &res, err, sizeof err), ANSWER_DOWN);
    CHECKF(!strchr(err, '\n') && !strchr(err, '\r') && !strchr(err, 1), "control bytes in '%s'", err);
    /* A huge body is cut. */
    char *huge = malloc(100000);
    memset(huge, 'x', 100000);
    CU_ASSERT_EQUAL(chain_outcome(&(struct chain_answer){CURLE_OK, 500, huge, 100000, NULL, -1, NULL, 0}, &res, err, sizeof err), ANSWER_DOWN);
    CU_ASSERT(strlen(err) < 200);
    free(huge);
}

/* Results are the exact bytes of the value the server sent; answers that are not strict JSON are
 * garbled (retried), with a reason. */
static void test_result_fidelity(void)
{
    static const struct {
        const char *body, *want;
    } ok[] = {
        {"{\"result\": 1234567890123456789}", "1234567890123456789"},
        {"{\"result\":1e999}", "1e999"},
        {"{\"result\":1e-400}", "1e-400"},
        {"{\"result\":-0.0}", "-0.0"},
        {"{\"result\":\"a\\u0000b\"}", "\"a\\u0000b\""},
        {"{\"result\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\""},
        {" {\"x\":[{\"result\":0}], \"result\" : { \"a\" : [ 1 , 2.50 ] } } \n", "{ \"a\" : [ 1 , 2.50 ] }"},
        {"{\"result\":1,\"result\":2}", "2"}, /* the last one, as jq has it */
        {"{\"res\\u0075lt\":true}", "true"},  /* an escaped key is the same key */
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        cJSON *res = NULL;
        char err[256] = "";
        int rc = chain_parse_answer(ok[i].body, strlen(ok[i].body), &res, err, sizeof err);
        CHECKF(rc == 0 && cJSON_IsRaw(res) && !strcmp(res->valuestring, ok[i].want), "case %zu: rc %d (%s), got %s",
               i, rc, err, res && cJSON_IsRaw(res) ? res->valuestring : "(none)");
        char *printed = res ? cJSON_PrintUnformatted(res) : NULL; /* what the CSV and result_of get */
        CHECKF(printed && !strcmp(printed, ok[i].want), "case %zu: printed as %s", i, printed ? printed : "(null)");
        free(printed);
        cJSON_Delete(res);
    }
    char deep[2200];
    size_t d = 0;
    d += (size_t)sprintf(deep, "{\"result\":");
    for (int k = 0; k < 600; k++)
        deep[d++] = '[';
    for (int k = 0; k < 600; k++)
        deep[d++] = ']';
    deep[d++] = '}';
    deep[d] = 0;
    static const struct {
        const char *body, *why;
    } bad[] = {
        {"{\"result\":\"\xff\"}", "UTF-8"},
        {"{\"result\":\"\xc0\xaf\"}", "UTF-8"},       /* overlong */
        {"{\"result\":\"\xed\xa0\x80\"}", "UTF-8"},  /* a surrogate in UTF-8 */
        {"{\"result\":1} trailing", "after the JSON value"},
        {"{\"result\":01}", "JSON"},
        {"{\"result\":NaN}", "JSON"},
        {"{\"result\":\"tab\there\"}", "control character"},
        {"{\"result\":[1,]}", "JSON"},
        {"{\"resul\":1}", "no \"result\""},
        {"[{\"result\":1}]", "not a JSON object"},
    };
    for (size_t i = 0; i <= sizeof bad / sizeof *bad; i++) {
        const char *body = i < sizeof bad / sizeof *bad ? bad[i].body : deep;
        const char *why = i < sizeof bad / sizeof *bad ? bad[i].why : "nested too deep";
        cJSON *res = (cJSON *)1;
        char err[256] = "";
        enum answer_kind o = chain_outcome(&(struct chain_answer){CURLE_OK, 200, body, strlen(body), NULL, -1, NULL, 0},
                                             &res, err, sizeof err);
        CHECKF(o == ANSWER_RETRY && res == NULL && strstr(err, why), "bad case %zu: kind %d, '%s' lacks '%s'", i,
               (int)o, err, why);
    }
}

/* ---- driving by hand ---- */

/* An item with model_01..03 done (truthy), its model_04 request returned. */
static struct item *item_at_model04(struct chain_req **r04)
{
    static const unsigned char pl[] = "abc";
    struct item *it = make_item(pl, 3);
    struct chain_req *r = next(it);
    struct chain_req *n = r->next;
    done(r, cJSON_CreateTrue(), NULL, 1);
    done(n, cJSON_Parse("[\"t\"]"), NULL, 1);
    r = next(it);
    done(r, cJSON_Parse("{\"id\":\"x\",\"regions\":2}"), NULL, 1);
    *r04 = next(it);
    return it;
}

static void test_falsy_skips(void)
{
    static const char *falsy[] = {"null", "false", "0", "\"\"", "[]", "{}"};
    for (int which = 0; which < 2; which++) {
        for (size_t i = 0; i < sizeof falsy / sizeof falsy[0]; i++) {
            static const unsigned char pl[] = "xyz";
            struct item *it = make_item(pl, 3);
            struct chain_req *r = next(it);
            CU_ASSERT_FATAL(list_len(r) == 2);
            struct chain_req *n = r->next;
            done(r, which == 0 ? cJSON_Parse(falsy[i]) : cJSON_Parse("{\"label\":\"cat\"}"), NULL, 1);
            CU_ASSERT_FALSE(chain_finished(it)); /* model_02 still out */
            CU_ASSERT_PTR_NULL(next(it));
            done(n, which == 1 ? cJSON_Parse(falsy[i]) : cJSON_Parse("[\"tag_a\"]"), NULL, 1);
            CU_ASSERT_PTR_NULL(next(it)); /* everything else is skipped */
            CHECKF(chain_finished(it) && it->status == ITEM_OK, "model_%02d = %s: finished %d status %d", which + 1,
                   falsy[i], chain_finished(it), it->status);
            CU_ASSERT_PTR_NOT_NULL(it->results[0]);
            CU_ASSERT_PTR_NOT_NULL(it->results[1]);
            for (int s = 2; s < 5; s++) {
                CU_ASSERT_PTR_NULL(it->results[s]);
                CU_ASSERT_EQUAL(it->state[s], ST_SKIPPED);
            }
            CU_ASSERT_PTR_NULL(it->error);
            item_free(it);
        }
    }
}

static void test_model04_failure(void)
{
    struct chain_req *r;
    struct item *it = item_at_model04(&r);
    CU_ASSERT_FATAL(list_len(r) == 1 && r->stage == 3);
    CU_ASSERT_FALSE(chain_finished(it));
    done(r, NULL, "HTTP 503: overloaded", 3);
    CU_ASSERT_PTR_NULL(next(it)); /* model_05 needs model_04: skipped; the row is settled, failed */
    CU_ASSERT_EQUAL(it->status, ITEM_FAILED);
    CU_ASSERT_EQUAL(it->state[3], ST_FAILED);
    CU_ASSERT_EQUAL(it->state[4], ST_SKIPPED);
    CU_ASSERT_FALSE(it->fail_final); /* a 503 after its retries: a later run may mend it */
    CU_ASSERT_PTR_NOT_NULL(it->results[0]); /* the cells of the stages that answered stay */
    CHECKF(it->error && strstr(it->error, "model_04") && strstr(it->error, "3 attempts") &&
               strstr(it->error, "HTTP 503: overloaded"),
           "error: %s", it->error ? it->error : "(null)");
    CU_ASSERT_TRUE(chain_finished(it));
    CU_ASSERT_PTR_NULL(next(it));
    CU_ASSERT_PTR_NULL(it->results[3]);
    CU_ASSERT_PTR_NULL(it->results[4]);
    CU_ASSERT_EQUAL(it->attempts, 3 + 3);
    CU_ASSERT_EQUAL(it->requests, 4);
    item_free(it);

    /* One attempt: "attempt", singular. */
    it = item_at_model04(&r);
    done(r, NULL, "HTTP 400: bad", 1);
    CU_ASSERT_PTR_NULL(next(it));
    CU_ASSERT_TRUE(it->fail_final); /* a 400 on the image itself: final */
    CHECKF(it->error && strstr(it->error, "model_04") && strstr(it->error, "1 attempt") &&
               !strstr(it->error, "1 attempts"),
           "error: %s", it->error ? it->error : "(null)");
    item_free(it);
}

/* A failure while another request of the item is in flight: the other request goes on and its
 * cell is kept; the row is failed once every stage is settled. */
static void test_failure_with_requests_in_flight(void)
{
    static const unsigned char pl[] = "abc";
    struct item *it = make_item(pl, 3);
    struct chain_req *r = next(it);
    struct chain_req *n = r->next;
    done(r, NULL, "Failed to connect", 4);
    CU_ASSERT_EQUAL(it->status, ITEM_PENDING); /* model_02 is still out, and still counts */
    CU_ASSERT_FALSE(chain_finished(it));
    CU_ASSERT_PTR_NULL(next(it));
    done(n, cJSON_Parse("[\"tag_a\"]"), NULL, 1);
    CU_ASSERT_PTR_NULL(next(it)); /* model_03 needs model_01: skipped, and the rest with it */
    CU_ASSERT_TRUE(chain_finished(it));
    CU_ASSERT_EQUAL(it->status, ITEM_FAILED);
    CHECKF(it->error && !strncmp(it->error, "model_01: Failed to connect", 27) && strstr(it->error, "4 attempts"),
           "error: %s", it->error ? it->error : "(null)");
    CU_ASSERT_PTR_NOT_NULL(it->results[1]); /* model_02's cell is kept */
    CU_ASSERT_EQUAL(it->state[2], ST_SKIPPED);
    item_free(it);

    /* model_05: elements 2 then 1 of 3 fail; the item is finished when all three are back, and
     * the reason is element 1's, the lowest index, whichever came first. */
    it = item_at_model04(&r);
    done(r, cJSON_Parse("{\"n\":3,\"sub-img\":[{\"img\":\"QUJD\"},{\"img\":\"REVG\"},{\"img\":\"R0hJ\"}]}"), NULL, 1);
    r = next(it);
    CU_ASSERT_FATAL(list_len(r) == 3);
    struct chain_req *r1 = r->next, *r2 = r1->next;
    CU_ASSERT(r->index == 0 && r1->index == 1 && r2->index == 2);
    done(r2, NULL, "HTTP 500: y", 1);
    CU_ASSERT_FALSE(chain_finished(it));
    done(r1, NULL, "HTTP 500: x", 2);
    CU_ASSERT_FALSE(chain_finished(it));
    done(r, cJSON_Parse("{\"label\":\"cat\"}"), NULL, 1);
    CU_ASSERT_PTR_NULL(next(it));
    CU_ASSERT_TRUE(chain_finished(it));
    CU_ASSERT_EQUAL(it->status, ITEM_FAILED);
    CHECKF(it->error && strstr(it->error, "model_05[1]: HTTP 500: x (after 2 attempts)") && !strstr(it->error, "y"),
           "the lowest element's failure is named: %s", it->error ? it->error : "(null)");
    CU_ASSERT_PTR_NULL(it->results[4]); /* a failed stage has no cell */
    CU_ASSERT_PTR_NOT_NULL(it->results[3]);
    item_free(it);
}

static void test_bad_model04_answers(void)
{
    static const struct {
        const char *answer;
        const char *has[3];
    } cases[] = {
        {"{\"n\":1}", {"model_05", "model_04", "sub-img"}},
        {"{\"n\":1,\"sub-img\":\"nope\"}", {"model_05", "model_04", "sub-img"}},
        {"[1,2]", {"model_05", "model_04", "sub-img"}},
        {"{\"sub-img\":[{\"img\":\"QUJD\"},{\"box\":[1,2,3,4]}]}", {"model_05", "model_04", "img"}},
        {"{\"sub-img\":[{\"img\":5}]}", {"model_05", "model_04", "img"}},
        {"{\"sub-img\":[\"QUJD\"]}", {"model_05", "model_04", "img"}},
        {"{\"sub-img\":[{\"img\":null}]}", {"model_05", "model_04", "img"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct chain_req *r;
        struct item *it = item_at_model04(&r);
        CU_ASSERT_FATAL(list_len(r) == 1);
        done(r, cJSON_Parse(cases[i].answer), NULL, 1);
        struct chain_req *more = next(it);
        CHECKF(more == NULL, "case %zu: requests for a bad answer", i);
        free_list(more);
        CHECKF(it->status == ITEM_FAILED, "case %zu (%s): status %d", i, cases[i].answer, it->status);
        for (int k = 0; k < 3; k++)
            CHECKF(it->error && strstr(it->error, cases[i].has[k]), "case %zu: '%s' lacks '%s'", i,
                   it->error ? it->error : "(null)", cases[i].has[k]);
        CU_ASSERT_TRUE(chain_finished(it));
        CU_ASSERT_EQUAL(it->in_flight, 0);
        item_free(it);
    }
    /* An empty array: model_05 has nothing to do, and the item is ok with []. */
    struct chain_req *r;
    struct item *it = item_at_model04(&r);
    done(r, cJSON_Parse("{\"n\":0,\"sub-img\":[]}"), NULL, 1);
    CU_ASSERT_PTR_NULL(next(it));
    CU_ASSERT_TRUE(chain_finished(it));
    CU_ASSERT_EQUAL(it->status, ITEM_OK);
    CU_ASSERT(cJSON_IsArray(it->results[4]) && cJSON_GetArraySize(it->results[4]) == 0);
    item_free(it);
}

static void test_element_escaping(void)
{
    static const char *strs[] = {
        "a\"b", "back\\slash", "new\nline", "tab\there", "\x01\x1f ctl", "all: \" \\ \n \r \t \b \f",
        "caf\xc3\xa9 \xe6\x97\xa5", "</script>", "",
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        struct chain_req *r;
        struct item *it = item_at_model04(&r);
        cJSON *ans = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(ans, "sub-img");
        cJSON *el = cJSON_CreateObject();
        cJSON_AddStringToObject(el, "img", strs[i]);
        cJSON_AddItemToArray(arr, el);
        el = cJSON_CreateObject();
        cJSON_AddStringToObject(el, "img", "plain");
        cJSON_AddItemToArray(arr, el);
        done(r, ans, NULL, 1);
        r = next(it);
        CU_ASSERT_FATAL(list_len(r) == 2);
        size_t len;
        char *body = read_body(r, 7, &len);
        CHECKF(len == chain_req_body_len(r), "case %zu: length %zu, announced %zu", i, len, chain_req_body_len(r));
        cJSON *root = cJSON_ParseWithLength(body, len);
        const cJSON *im = root && root->child ? cJSON_GetObjectItemCaseSensitive(root->child, "im_str") : NULL;
        CHECKF(cJSON_IsString(im) && !strcmp(im->valuestring, strs[i]), "case %zu: body %s does not carry the string",
               i, body);
        CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root ? root->child : NULL, "model_03")));
        cJSON_Delete(root);
        free(body);
        body = read_body(r->next, 4096, &len);
        CU_ASSERT(strstr(body, "\"im_str\":\"plain\"") != NULL);
        free(body);
        struct chain_req *n = r->next;
        done(r, cJSON_CreateNumber(1), NULL, 1);
        done(n, cJSON_CreateNumber(2), NULL, 1);
        CU_ASSERT_PTR_NULL(next(it));
        CU_ASSERT(chain_finished(it) && it->status == ITEM_OK);
        cJSON *want = cJSON_Parse("[1,2]");
        CU_ASSERT(same_json(it->results[4], want));
        cJSON_Delete(want);
        item_free(it);
    }
}

static void test_no_payload(void)
{
    struct item *it = item_new("x.jpg", 5, 0, P->n, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(it);
    struct chain_req *r = next(it);
    free_list(r);
    CU_ASSERT_EQUAL(it->status, ITEM_FAILED);
    CU_ASSERT(it->error && strstr(it->error, "model_01"));
    CU_ASSERT_EQUAL(it->in_flight, 0);
    CU_ASSERT_TRUE(chain_finished(it));
    item_free(it);
}

/* ---- a pipeline other than the seed's ---- */

static const char CUSTOM[] =
    "{\"stages\": ["
    " {\"name\": \"a\", \"url\": \"/a\"},"
    " {\"name\": \"b\", \"url\": \"/b\", \"when\": [\"a\"]},"
    " {\"name\": \"c\", \"url\": \"/c\", \"fields\": {\"k\": [1, \"two\"]}},"
    " {\"name\": \"d\", \"url\": \"/d\", \"input\": {\"each\": \"a\", \"array\": \"items\", \"field\": \"s\"},"
    "  \"fields\": {\"prev\": {\"result_of\": \"b\"}}},"
    " {\"name\": \"e\", \"url\": \"/e\", \"when\": [\"d\"], \"fields\": {\"all\": {\"result_of\": \"d\"}}}"
    "]}";

/* The stages of a request list, as a string like "ac" or "dd". */
static void stages_of(const struct pipeline *p, const struct chain_req *r, char *out)
{
    int n = 0;
    for (; r && n < 15; r = r->next)
        out[n++] = p->stages[r->stage].name[0];
    out[n] = 0;
}

/* The value of key in the body of r, printed compactly (caller frees), or NULL. */
static char *body_field(struct chain_req *r, const char *key)
{
    cJSON *root;
    cJSON *o = body_object(r, &root);
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(root);
    return s;
}

static void test_custom_pipeline(void)
{
    struct pipeline *q;
    char err[256], got[16];
    CU_ASSERT_EQUAL_FATAL(pipeline_parse(CUSTOM, strlen(CUSTOM), "custom", &q, err, sizeof err), 0);
    struct pipeline *saved = P;
    P = q; /* make_item sizes items by P */

    /* Everything runs. */
    struct item *it = make_item((const unsigned char *)"img", 3);
    struct chain_req *r = next(it);
    stages_of(q, r, got);
    CHECKF(!strcmp(got, "ac"), "round 0: %s, want a and c (c depends on nothing)", got);
    char *k = body_field(r->next, "k");
    CU_ASSERT(k && !strcmp(k, "[1,\"two\"]"));
    free(k);
    struct chain_req *c = r->next;
    done(r, cJSON_Parse("{\"items\":[{\"s\":\"x\"},{\"s\":\"y\"},{\"s\":\"z\"}]}"), NULL, 1);
    r = next(it);
    stages_of(q, r, got);
    CHECKF(!strcmp(got, "b"), "round 1: %s, want b (c is still out, and d needs b)", got);
    done(r, cJSON_Parse("{\"v\":5}"), NULL, 1);
    r = next(it);
    stages_of(q, r, got);
    CHECKF(!strcmp(got, "ddd"), "round 2: %s, want d three times", got);
    struct chain_req *d[3] = {r, r ? r->next : NULL, r && r->next ? r->next->next : NULL};
    CU_ASSERT_FATAL(d[0] && d[1] && d[2]);
    for (int i = 0; i < 3; i++) {
        char *prev = body_field(d[i], "prev"), *im = body_field(d[i], "im_str");
        char want_im[8];
        snprintf(want_im, sizeof want_im, "\"%c\"", "xyz"[i]);
        CU_ASSERT(prev && !strcmp(prev, "{\"v\":5}"));
        CU_ASSERT(im && !strcmp(im, want_im));
        CU_ASSERT_EQUAL(d[i]->index, i);
        free(prev);
        free(im);
    }
    done(d[2], cJSON_CreateString("r2"), NULL, 1);
    done(d[0], cJSON_CreateString("r0"), NULL, 1);
    CU_ASSERT_PTR_NULL(next(it)); /* d[1] is still out: e must wait */
    done(d[1], cJSON_CreateString("r1"), NULL, 1);
    r = next(it);
    stages_of(q, r, got);
    CHECKF(!strcmp(got, "e"), "round 3: %s, want e", got);
    char *all = body_field(r, "all");
    CHECKF(all && !strcmp(all, "[\"r0\",\"r1\",\"r2\"]"), "e is sent %s", all ? all : "(null)");
    free(all);
    done(r, cJSON_CreateTrue(), NULL, 1);
    CU_ASSERT_PTR_NULL(next(it));
    CU_ASSERT_FALSE(chain_finished(it)); /* c has not answered */
    CU_ASSERT_EQUAL(it->status, ITEM_PENDING);
    done(c, cJSON_CreateNumber(3), NULL, 1);
    CU_ASSERT_PTR_NULL(next(it));
    CU_ASSERT(chain_finished(it) && it->status == ITEM_OK);
    item_free(it);

    /* a falsy: b skipped, so d (which sends b's result) and e are skipped; c still runs. */
    it = make_item((const unsigned char *)"img", 3);
    r = next(it);
    c = r->next;
    done(r, cJSON_Parse("{}"), NULL, 1);
    CU_ASSERT_PTR_NULL(next(it));
    CU_ASSERT_FALSE(chain_finished(it));
    done(c, cJSON_CreateNumber(3), NULL, 1);
    CU_ASSERT_PTR_NULL(next(it));
    CU_ASSERT(chain_finished(it) && it->status == ITEM_OK);
    for (int s = 1; s < 5; s += s == 1 ? 2 : 1)
        CHECKF(it->state[s] == ST_SKIPPED && it->results[s] == NULL, "stage %s: state %d", q->stages[s].name,
               it->state[s]);
    item_free(it);

    /* An empty array: d has nothing to do and is [] (falsy), so e is skipped. */
    it = make_item((const unsigned char *)"img", 3);
    r = next(it);
    c = r->next;
    done(r, cJSON_Parse("{\"items\":[]}"), NULL, 1);
    done(c, cJSON_CreateNumber(3), NULL, 1);
    r = next(it);
    stages_of(q, r, got);
    CU_ASSERT_STRING_EQUAL(got, "b");
    done(r, cJSON_CreateNumber(1), NULL, 1);
    CU_ASSERT_PTR_NULL(next(it));
    CU_ASSERT(chain_finished(it) && it->status == ITEM_OK);
    CU_ASSERT(cJSON_IsArray(it->results[3]) && cJSON_GetArraySize(it->results[3]) == 0);
    CU_ASSERT_EQUAL(it->state[4], ST_SKIPPED);
    item_free(it);

    P = saved;
    pipeline_free(q);
}

/* A jq "when" or "items" that never ends is stopped at its CPU-time budget (expr.h): the image
 * fails, the reason naming the stage, which expression and its text. */
static void test_runaway_when_items(void)
{
    static const char *const pipelines[] = {
        "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"},"
        " {\"name\": \"b\", \"url\": \"/b\", \"when\": \"if .a.loop then until(false; .) else true end\"}]}",
        "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"},"
        " {\"name\": \"b\", \"url\": \"/b\", \"input\": {\"each\": \"a\", \"items\": \"if .loop then until(false; .) else .l[] end\"}}]}",
    };
    static const char *const want[] = {
        "b: \"when\": jq: if .a.loop then until(false; .) else true end ran past its CPU-time budget",
        "b: \"items\" on a's result: jq: if .loop then until(false; .) else .l[] end ran past its CPU-time budget",
    };
    struct pipeline *saved = P;
    for (int k = 0; k < 2; k++) {
        struct pipeline *q;
        char err[256];
        CU_ASSERT_EQUAL_FATAL(pipeline_parse(pipelines[k], strlen(pipelines[k]), "runaway", &q, err, sizeof err), 0);
        P = q;
        struct item *it = make_item((const unsigned char *)"img", 3);
        done(next(it), cJSON_Parse("{\"loop\": true, \"l\": [\"QQ==\"]}"), NULL, 1);
        CU_ASSERT_PTR_NULL(next(it));
        CHECKF(chain_finished(it) && it->status == ITEM_FAILED && it->error && strstr(it->error, want[k]),
               "pipeline %d: status %d, error %s", k, it->status, it->error ? it->error : "(none)");
        item_free(it);
        P = saved;
        pipeline_free(q);
    }
}

/* chain_load_shaped: which final failures say load (bench counts them against a point) and
 * which say the image itself (a corrupt file's 400: counted apart). */
static void test_load_shaped(void)
{
    static const struct {
        CURLcode cc;
        long status;
        const char *body;
        int load;
    } cases[] = {
        {CURLE_OPERATION_TIMEDOUT, 0, "", 1}, {CURLE_COULDNT_CONNECT, 0, "", 1}, {CURLE_RECV_ERROR, 0, "", 1},
        {CURLE_OK, 429, "", 1}, {CURLE_OK, 503, "", 1}, {CURLE_OK, 500, "", 1}, {CURLE_OK, 502, "", 1},
        {CURLE_OK, 408, "", 1}, {CURLE_OK, 400, "{\"error\":\"not an image\"}", 0}, {CURLE_OK, 413, "", 0},
        {CURLE_OK, 415, "", 0}, {CURLE_OK, 422, "", 0}, {CURLE_OK, 200, "<html>garbage", 0},
        {CURLE_OK, 200, "{\"x\":1}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct chain_answer a = {cases[i].cc, cases[i].status, cases[i].body, strlen(cases[i].body), NULL, -1, NULL, 0};
        cJSON *res = NULL;
        char err[256] = "";
        enum answer_kind k = chain_outcome(&a, &res, err, sizeof err);
        cJSON_Delete(res);
        CHECKF(chain_load_shaped(k, &a) == cases[i].load, "case %zu (curl %d, HTTP %ld): kind %d, load %d, want %d", i,
               (int)cases[i].cc, cases[i].status, (int)k, chain_load_shaped(k, &a), cases[i].load);
    }
    /* An answer cut short for want of room within --max-memory: the client's load, not the image. */
    struct chain_answer nr = {CURLE_OK, 200, "{\"x\":", 5, NULL, -1, NULL, 1};
    cJSON *res = NULL;
    char err[256] = "";
    enum answer_kind k = chain_outcome(&nr, &res, err, sizeof err);
    cJSON_Delete(res);
    CHECKF(k == ANSWER_RETRY && chain_load_shaped(k, &nr) == 1, "no room: kind %d (%s)", (int)k, err);
}

/* An "error" expression yielding an empty message still fails the answer, and the failure says
 * why (found by fuzz_expr: {"responses":[{"error":{"code":3,"message":""}}]}). */
static void test_empty_error_message(void)
{
    static const char P[] = "{\"stages\": [{\"name\": \"w\", \"url\": \"/w\", \"result\": \".\", "
                            "\"error\": \".responses[0].error.message\"}]}";
    struct pipeline *q = NULL;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(pipeline_parse(P, strlen(P), "empty", &q, err, sizeof err), 0);
    static const char body[] = "{\"responses\":[{\"error\":{\"code\":3,\"message\":\"\"}}]}";
    static const long statuses[] = {200, 400};
    for (int k = 0; k < 2; k++) {
        struct chain_answer a = {CURLE_OK, statuses[k], body, strlen(body), NULL, -1, NULL, 0};
        cJSON *res = NULL;
        long ra;
        err[0] = 0;
        enum answer_kind o = chain_read_answer(&q->stages[0], &a, &res, &ra, err, sizeof err);
        CHECKF(o != ANSWER_OK && !res && err[0], "HTTP %ld: kind %d, reason \"%s\"", statuses[k], (int)o, err);
        cJSON_Delete(res);
    }
    pipeline_free(q);
}

int register_chain(void)
{
    CU_pSuite s = CU_add_suite("chain", suite_init, suite_clean);
    if (!s)
        return -1;
    if (!CU_add_test(s, "600 random payloads follow the seed's rules (mock answers)", test_random_payloads) ||
        !CU_add_test(s, "chain_req_read in 1, 7, 4096-byte chunks: same valid body", test_req_read_chunks) ||
        !CU_add_test(s, "chain_req_whole: the body in place around the base64, shared only when the same", test_req_whole) ||
        !CU_add_test(s, "chain_truthy", test_truthy) ||
        !CU_add_test(s, "chain_outcome classification", test_outcome) ||
        !CU_add_test(s, "chain_load_shaped: timeouts, 429, 503, 5xx, resets say load; 400, 413, 415, 422 and "
                        "garbage say the image", test_load_shaped) ||
        !CU_add_test(s, "an \"error\" that yields an empty message: failed, and says why", test_empty_error_message) ||
        !CU_add_test(s, "results are the exact bytes sent; answers that are not strict JSON are garbled",
                     test_result_fidelity) ||
        !CU_add_test(s, "falsy model_01 or model_02: the rest skipped, ok", test_falsy_skips) ||
        !CU_add_test(s, "model_04 failure fails the item, names stage and attempts", test_model04_failure) ||
        !CU_add_test(s, "failure with requests in flight: finished when all are back",
                     test_failure_with_requests_in_flight) ||
        !CU_add_test(s, "malformed model_04 answers fail the item, naming both", test_bad_model04_answers) ||
        !CU_add_test(s, "element strings needing JSON escaping give valid bodies", test_element_escaping) ||
        !CU_add_test(s, "an item with no payload fails", test_no_payload) ||
        !CU_add_test(s, "a custom pipeline: independent stages, each, result_of an each", test_custom_pipeline) ||
        !CU_add_test(s, "a runaway jq \"when\" or \"items\" fails its image, named", test_runaway_when_items))
        return -1;
    return 0;
}
