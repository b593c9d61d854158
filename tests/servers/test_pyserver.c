/* Tests of the independent dialect server (tests/servers/dialects.py, through util_pyserver):
 * for each example pipeline (examples/NAME.json) one correct request, built from the example's
 * own url, headers and body template, whose answer must be exactly the predicted bytes and whose
 * "result" expression (run with libjq 1.6, as annotate will) must give pyserver_expected's
 * cell; and one bad request per dialect, which must get that server's documented error status
 * and a body the example's "error" expression reads a message from. Plus the predictor's own
 * pieces (CRC-32 vectors, the image test) and the server without --token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <jq.h>

#include "common/b64.h"
#include "proc.h"
#include "pyserver.h"
#include "util.h"

#define TOKEN "pyserver-test-token"

static struct pyserver srv; /* started with --token TOKEN by the first test that needs it */
static unsigned char png[256];
static size_t png_len;
static char *png_b64;

/* The running server, started on first use; NULL (and a failed assertion) when it cannot be. */
static const struct pyserver *server(void)
{
    static int tried;
    if (!srv.pid && !tried) {
        tried = 1;
        if (pyserver_start(TOKEN, &srv) != 0)
            fprintf(stderr, "test_pyserver: the dialect server did not start (%s %s)\n", pyserver_python(),
                    pyserver_script());
    }
    return srv.pid ? &srv : NULL;
}

static int suite_init(void)
{
    /* A 5 x 4 greyscale PNG: a tiny real image, so every dialect's image check passes. */
    unsigned char rows[4 * 6];
    for (int y = 0; y < 4; y++) {
        rows[y * 6] = 0;
        for (int x = 0; x < 5; x++)
            rows[y * 6 + 1 + x] = (unsigned char)(40 * x + 7 * y);
    }
    png_len = png_gray8(png, 5, 4, rows, NULL, 0);
    if (png_len == 0 || png_len > sizeof png)
        return -1;
    png_b64 = malloc(b64_encoded_len(png_len) + 1);
    if (!png_b64)
        return -1;
    b64_encode(png, png_len, png_b64);
    return 0;
}

static int suite_cleanup(void)
{
    pyserver_stop(&srv);
    free(png_b64);
    png_b64 = NULL;
    return 0;
}

/* ---- text helpers ---- */

/* s with every occurrence of each from[i] replaced by to[i] (n pairs); malloc'd. */
static char *replace_all(const char *s, const char *const *from, const char *const *to, int n)
{
    size_t cap = strlen(s) + 1, len = 0;
    for (int i = 0; i < n; i++)
        cap += strlen(to[i]) * 8; /* grown below when not enough */
    char *out = malloc(cap);
    while (out && *s) {
        int hit = -1;
        for (int i = 0; i < n && hit < 0; i++)
            if (!strncmp(s, from[i], strlen(from[i])))
                hit = i;
        const char *piece = hit >= 0 ? to[hit] : s;
        size_t k = hit >= 0 ? strlen(to[hit]) : 1;
        if (len + k + 1 > cap) {
            cap = (len + k + 1) * 2;
            char *p = realloc(out, cap);
            if (!p) {
                free(out);
                return NULL;
            }
            out = p;
        }
        memcpy(out + len, piece, k);
        len += k;
        s += hit >= 0 ? strlen(from[hit]) : 1;
    }
    if (out)
        out[len] = '\0';
    return out;
}

/* The first output of the jq program on the JSON text, compact (jv_dump_string flags 0, as
 * jq -c prints it), malloc'd; NULL when the program fails or gives nothing ("<error: ...>" in
 * *why, which may be NULL). */
static char *jq_first(const char *prog, const char *json, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    jq_state *jq = jq_init();
    if (!jq)
        return NULL;
    char *res = NULL;
    if (!jq_compile(jq, prog)) {
        if (why)
            snprintf(why, whylen, "does not compile");
        jq_teardown(&jq);
        return NULL;
    }
    jv in = jv_parse(json);
    if (!jv_is_valid(in)) {
        if (why)
            snprintf(why, whylen, "answer is not JSON");
        jv_free(in);
        jq_teardown(&jq);
        return NULL;
    }
    jq_start(jq, in, 0);
    jv out = jq_next(jq);
    if (jv_is_valid(out)) {
        jv s = jv_dump_string(out, 0);
        res = strdup(jv_string_value(s));
        jv_free(s);
    } else {
        if (why && jv_invalid_has_msg(jv_copy(out))) {
            jv msg = jv_invalid_get_msg(out);
            jv d = jv_get_kind(msg) == JV_KIND_STRING ? msg : jv_dump_string(msg, 0);
            snprintf(why, whylen, "%s", jv_string_value(d));
            jv_free(d);
        } else {
            jv_free(out);
        }
    }
    jq_teardown(&jq);
    return res;
}

/* ---- requests ---- */

struct call {
    const char *path;       /* joined to the server's base URL */
    const char *ctype;      /* Content-Type; NULL with a form */
    const char *auth;       /* an Authorization value, or NULL */
    const char *body;       /* the body (NULL with a form) */
    size_t len;
    const char *form_field; /* non-NULL: multipart/form-data with one file part of this name */
    const unsigned char *file;
    size_t file_len;
};

struct reply {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char ctype[128];
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct reply *r = arg;
    size_t n = size * nmemb;
    char *b = realloc(r->body, r->len + n + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, n);
    r->body = b;
    r->len += n;
    b[r->len] = '\0';
    return n;
}

/* POSTs the call; 0 and *r filled (free r->body), or a CURLcode. */
static int send_call(const struct call *c, struct reply *r)
{
    memset(r, 0, sizeof *r);
    const struct pyserver *s = server();
    if (!s)
        return CURLE_COULDNT_CONNECT;
    char url[2048], h[512];
    snprintf(url, sizeof url, "%s%s", s->base_url, c->path);
    CURL *e = curl_easy_init();
    if (!e)
        return CURLE_FAILED_INIT;
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    if (c->ctype) {
        snprintf(h, sizeof h, "Content-Type: %s", c->ctype);
        hl = curl_slist_append(hl, h);
    }
    if (c->auth) {
        snprintf(h, sizeof h, "Authorization: %s", c->auth);
        hl = curl_slist_append(hl, h);
    }
    curl_mime *mime = NULL;
    if (c->form_field) {
        mime = curl_mime_init(e);
        curl_mimepart *part = curl_mime_addpart(mime);
        curl_mime_name(part, c->form_field);
        curl_mime_filename(part, "tiny.png");
        curl_mime_type(part, "image/png");
        curl_mime_data(part, (const char *)c->file, c->file_len);
        curl_easy_setopt(e, CURLOPT_MIMEPOST, mime);
    } else {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->len);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    if (curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        snprintf(r->ctype, sizeof r->ctype, "%s", ct);
    curl_easy_cleanup(e);
    curl_mime_free(mime);
    curl_slist_free_all(hl);
    if (!r->body)
        r->body = calloc(1, 1);
    if (rc != CURLE_OK)
        fprintf(stderr, "send_call %s: %s\n", c->path, curl_easy_strerror(rc));
    return (int)rc;
}

/* ---- the examples ---- */

struct example {
    cJSON *root;
    const cJSON *stage;
    const char *result, *error;
};

static int example_load(const char *name, struct example *x)
{
    memset(x, 0, sizeof *x);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.json", examples_dir(), name);
    char *text = slurp(path, NULL);
    x->root = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *st = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(x->root, "stages"), 0);
    x->stage = st;
    x->result = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "result"));
    x->error = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "error"));
    if (!st || !x->result || !x->error) {
        fprintf(stderr, "example_load: %s lacks stages[0] with result and error\n", path);
        cJSON_Delete(x->root);
        return -1;
    }
    return 0;
}

/* Which placeholders the example's text uses, replaced: the image's base64 and MIME type, and
 * the token for the ${VAR}s of url and headers. */
static const char *const FROM[] = {"{{image}}", "{{image.mime}}", "${OPENAI_API_KEY}", "${VISION_KEY}"};
static const char *to_values[4];

/* The request the example describes for this image (its url, its Authorization header, and its
 * body: a JSON template, "{{image.bytes}}" raw, or a "form" with a {{image.file}} part). The
 * strings in *c are malloc'd into store[0..1] (free them). */
static int example_call(const struct example *x, const unsigned char *img, size_t len, const char *b64,
                        struct call *c, char *store[2])
{
    memset(c, 0, sizeof *c);
    store[0] = store[1] = NULL;
    to_values[0] = b64;
    to_values[1] = "image/png";
    to_values[2] = TOKEN;
    to_values[3] = TOKEN;
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(x->stage, "url"));
    if (!url)
        return -1;
    store[0] = replace_all(url, FROM, to_values, 4);
    c->path = store[0];
    const cJSON *auth = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(x->stage, "headers"), "Authorization");
    if (cJSON_IsString(auth) && !strcmp(auth->valuestring, "Bearer ${OPENAI_API_KEY}"))
        c->auth = "Bearer " TOKEN;
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(x->stage, "body");
    const cJSON *form = cJSON_GetObjectItemCaseSensitive(x->stage, "form");
    if (form) {
        const cJSON *f = form->child;
        if (!f || !cJSON_IsString(f) || strcmp(f->valuestring, "{{image.file}}"))
            return -1;
        c->form_field = f->string;
        c->file = img;
        c->file_len = len;
    } else if (cJSON_IsString(body) && !strcmp(body->valuestring, "{{image.bytes}}")) {
        c->ctype = "image/png";
        c->body = (const char *)img;
        c->len = len;
    } else if (body) {
        char *t = cJSON_PrintUnformatted(body);
        /* base64 and a MIME type hold no JSON-special characters: text replacement is exact. */
        store[1] = t ? replace_all(t, FROM, to_values, 4) : NULL;
        free(t);
        if (!store[1])
            return -1;
        c->ctype = "application/json";
        c->body = store[1];
        c->len = strlen(store[1]);
    } else {
        return -1;
    }
    return 0;
}

/* The whole answer the server must give to a correct request for an image (the bytes this test
 * pins down; pyserver_expected's cell is a part of each). malloc'd. */
static char *expected_body(const char *name, const unsigned char *img, size_t len)
{
    char *cell = pyserver_expected(name, img, len);
    if (!cell)
        return NULL;
    uint32_t crc = pyserver_crc32(img, len);
    char l1[16], buf[2048];
    snprintf(l1, sizeof l1, "L%08x", crc);
    if (!strcmp(name, "kserve-v2"))
        snprintf(buf, sizeof buf,
                 "{\"model_name\":\"classifier\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"OUTPUT\","
                 "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[%s]}]}", cell);
    else if (!strcmp(name, "tfserving"))
        snprintf(buf, sizeof buf, "{\"predictions\":[%s]}", cell);
    else if (!strcmp(name, "openai-vision")) {
        char content[128];
        int k = snprintf(content, sizeof content, "{\"label\": \"%s\", \"score\": %zu}", l1, len);
        char esc[256]; /* content as a JSON string */
        char *e = esc;
        for (const char *p = content; *p; p++) {
            if (*p == '"')
                *e++ = '\\';
            *e++ = *p;
        }
        *e = '\0';
        snprintf(buf, sizeof buf,
                 "{\"id\":\"chatcmpl-%08x\",\"object\":\"chat.completion\",\"created\":1700000000,"
                 "\"model\":\"classifier\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                 "\"content\":\"%s\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":%zu,"
                 "\"completion_tokens\":%d,\"total_tokens\":%zu}}",
                 crc, esc, len, k, len + (size_t)k);
    } else if (!strcmp(name, "multipart"))
        snprintf(buf, sizeof buf,
                 "{\"filename\":\"tiny.png\",\"content_type\":\"image/png\",\"label\":%s,\"score\":%zu}", cell, len);
    else if (!strcmp(name, "google-vision"))
        snprintf(buf, sizeof buf, "{\"responses\":[{\"labelAnnotations\":%s}]}", cell);
    else /* torchserve, hf-endpoint: the answer is the cell */
        snprintf(buf, sizeof buf, "%s", cell);
    free(cell);
    return strdup(buf);
}

/* ---- tests ---- */

static void test_crc32_and_images(void)
{
    CU_ASSERT_EQUAL(pyserver_crc32((const unsigned char *)"", 0), 0u);
    CU_ASSERT_EQUAL(pyserver_crc32((const unsigned char *)"123456789", 9), 0xCBF43926u);
    CU_ASSERT_EQUAL(pyserver_crc32((const unsigned char *)"The quick brown fox jumps over the lazy dog", 43),
                    0x414FA339u);
    CU_ASSERT(pyserver_is_image(png, png_len));
    CU_ASSERT(pyserver_is_image((const unsigned char *)"\xff\xd8\xff\xe0", 4));
    CU_ASSERT(pyserver_is_image((const unsigned char *)"RIFF\0\0\0\0WEBPVP8 ", 16));
    CU_ASSERT(pyserver_is_image((const unsigned char *)"GIF89a", 6));
    CU_ASSERT(pyserver_is_image((const unsigned char *)"BM", 2));
    CU_ASSERT(pyserver_is_image((const unsigned char *)"MM\0*", 4));
    CU_ASSERT(!pyserver_is_image((const unsigned char *)"", 0));
    CU_ASSERT(!pyserver_is_image((const unsigned char *)"hello", 5));
    CU_ASSERT(!pyserver_is_image((const unsigned char *)"RIFF\0\0\0\0WAVE", 12));
    CU_ASSERT_PTR_NULL(pyserver_expected("kserve-v2", (const unsigned char *)"hello", 5));
    CU_ASSERT_PTR_NULL(pyserver_expected("no-such-example", png, png_len));
    for (int i = 0; pyserver_examples[i]; i++) {
        char *cell = pyserver_expected(pyserver_examples[i], png, png_len);
        CU_ASSERT_PTR_NOT_NULL(cell);
        free(cell);
    }
    /* The doc comment's example values. */
    const unsigned char doc[] = "\x89PNG\r\n\x1a\nhello-image-bytes";
    CU_ASSERT_EQUAL(pyserver_crc32(doc, sizeof doc - 1), 0x0348f244u);
    char *c = pyserver_expected("torchserve", doc, sizeof doc - 1);
    CU_ASSERT_STRING_EQUAL(c, "{\"L0348f244\":25,\"Lfcb70dbb\":0}");
    free(c);
}

/* One correct request built from examples/NAME.json: 200, application/json, the predicted
 * bytes, and the example's result expression giving pyserver_expected's cell. */
static void check_example(const char *name)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(server());
    struct example x;
    CU_ASSERT_FATAL(example_load(name, &x) == 0);
    struct call c;
    char *store[2];
    CU_ASSERT_FATAL(example_call(&x, png, png_len, png_b64, &c, store) == 0);
    struct reply r;
    CU_ASSERT_EQUAL(send_call(&c, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.ctype, "application/json");
    char *want = expected_body(name, png, png_len);
    char *cell = pyserver_expected(name, png, png_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    if (strcmp(r.body, want)) {
        CU_FAIL("answer bytes differ from the prediction");
        fprintf(stderr, "\n%s: got  %s\n%s: want %s\n", name, printable(r.body, r.len), name,
                printable(want, strlen(want)));
    }
    char why[256];
    char *got = jq_first(x.result, r.body, why, sizeof why);
    if (!got || strcmp(got, cell)) {
        CU_FAIL("the example's result expression does not give the predicted cell");
        fprintf(stderr, "\n%s: %s gave %s (%s), want %s\n", name, x.result, got ? got : "nothing", why, cell);
    }
    /* A correct answer is no error: the error expression gives null, false or nothing. */
    char *err = jq_first(x.error, r.body, why, sizeof why);
    CU_ASSERT(!err || !strcmp(err, "null") || !strcmp(err, "false"));
    free(err);
    free(got);
    free(cell);
    free(want);
    free(r.body);
    free(store[0]);
    free(store[1]);
    cJSON_Delete(x.root);
}

/* A bad request: the status must be want_status and the example's error expression must give
 * a string containing want_msg. */
static void check_bad(const char *name, const struct call *c, long want_status, const char *want_msg)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(server());
    struct example x;
    CU_ASSERT_FATAL(example_load(name, &x) == 0);
    struct reply r;
    CU_ASSERT_EQUAL(send_call(c, &r), 0);
    CU_ASSERT_STRING_EQUAL(r.ctype, "application/json");
    char why[256];
    char *msg = jq_first(x.error, r.body, why, sizeof why);
    if (r.status != want_status || !msg || msg[0] != '"' || !strstr(msg, want_msg)) {
        CU_FAIL("bad request: wrong status or error message");
        fprintf(stderr, "\n%s %s: HTTP %ld %s; error expression: %s; want HTTP %ld and \"%s\"\n", name, c->path,
                r.status, printable(r.body, r.len), msg ? msg : why, want_status, want_msg);
    }
    free(msg);
    free(r.body);
    cJSON_Delete(x.root);
}

static void test_kserve(void) { check_example("kserve-v2"); }
static void test_torchserve(void) { check_example("torchserve"); }
static void test_tfserving(void) { check_example("tfserving"); }
static void test_openai(void) { check_example("openai-vision"); }
static void test_hf(void) { check_example("hf-endpoint"); }
static void test_multipart(void) { check_example("multipart"); }
static void test_google(void) { check_example("google-vision"); }

static const char NOT_IMAGE[] = "hello, not an image";

static void test_bad_kserve(void)
{
    const char *b = "{\"inputs\":[{\"name\":\"INPUT\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"aGVsbG8\"]}]}";
    struct call c = {.path = "/v2/models/classifier/infer", .ctype = "application/json", .body = b, .len = strlen(b)};
    check_bad("kserve-v2", &c, 400, "base64");
    const char *u = "{\"inputs\":[]}";
    struct call m = {.path = "/v2/models/resnet/infer", .ctype = "application/json", .body = u, .len = strlen(u)};
    check_bad("kserve-v2", &m, 400, "unknown model: 'resnet' is not found");
}

static void test_bad_torchserve(void)
{
    /* What PIL cannot open fails in the handler: TorchServe answers 503 "Prediction failed". */
    struct call c = {.path = "/predictions/classifier", .ctype = "image/png", .body = NOT_IMAGE,
                     .len = sizeof NOT_IMAGE - 1};
    check_bad("torchserve", &c, 503, "Prediction failed");
    struct call m = {.path = "/predictions/resnet", .ctype = "image/png", .body = (const char *)png, .len = png_len};
    check_bad("torchserve", &m, 404, "Model not found: resnet");
}

static void test_bad_tfserving(void)
{
    const char *b = "{\"instances\":[{\"b64\":\"QR==\"}]}"; /* non-zero unused bits: not canonical */
    struct call c = {.path = "/v1/models/classifier:predict", .ctype = "application/json", .body = b, .len = strlen(b)};
    check_bad("tfserving", &c, 400, "Unable to base64 decode");
}

static void test_bad_openai(void)
{
    struct example x;
    CU_ASSERT_FATAL(example_load("openai-vision", &x) == 0);
    struct call c;
    char *store[2];
    CU_ASSERT_FATAL(example_call(&x, png, png_len, png_b64, &c, store) == 0);
    c.auth = "Bearer wrong-token";
    check_bad("openai-vision", &c, 401, "Incorrect API key");
    c.auth = NULL;
    check_bad("openai-vision", &c, 401, "provide an API key");
    free(store[0]);
    free(store[1]);
    cJSON_Delete(x.root);
}

static void test_bad_hf(void)
{
    struct call c = {.path = "/models/classifier", .ctype = "text/plain", .body = (const char *)png, .len = png_len};
    check_bad("hf-endpoint", &c, 400, "Content type");
}

static void test_bad_multipart(void)
{
    /* FastAPI's own validation: no part named "file". */
    struct call c = {.path = "/classifier", .form_field = "data", .file = png, .file_len = png_len};
    check_bad("multipart", &c, 422, "field required");
}

static void test_bad_google(void)
{
    struct example x;
    CU_ASSERT_FATAL(example_load("google-vision", &x) == 0);
    struct call c;
    char *store[2];
    char *nb64 = malloc(b64_encoded_len(sizeof NOT_IMAGE - 1) + 1);
    b64_encode(NOT_IMAGE, sizeof NOT_IMAGE - 1, nb64);
    /* Bad image data: a per-image error inside a 200; the row gets no labels. */
    CU_ASSERT_FATAL(example_call(&x, (const unsigned char *)NOT_IMAGE, sizeof NOT_IMAGE - 1, nb64, &c, store) == 0);
    check_bad("google-vision", &c, 200, "Bad image data.");
    struct reply r;
    CU_ASSERT_EQUAL(send_call(&c, &r), 0);
    char *res = jq_first(x.result, r.body, NULL, 0);
    CU_ASSERT(res && !strcmp(res, "null"));
    free(res);
    free(r.body);
    free(store[0]);
    free(store[1]);
    /* A wrong key: Google's 400 INVALID_ARGUMENT API-key error. */
    CU_ASSERT_FATAL(example_call(&x, png, png_len, png_b64, &c, store) == 0);
    c.path = "/v1/images:annotate?key=wrong";
    check_bad("google-vision", &c, 400, "API key not valid");
    free(store[0]);
    free(store[1]);
    free(nb64);
    cJSON_Delete(x.root);
}

/* Without --token: any Bearer token for OpenAI (but still one), any key or none for Google. */
static void test_no_token(void)
{
    struct pyserver s;
    CU_ASSERT_FATAL(pyserver_start(NULL, &s) == 0);
    char url[160];
    long status = 0;
    char *resp = NULL;
    char body[1024];
    snprintf(body, sizeof body,
             "{\"requests\":[{\"image\":{\"content\":\"%s\"},\"features\":[{\"type\":\"LABEL_DETECTION\"}]}]}", png_b64);
    snprintf(url, sizeof url, "%s/v1/images:annotate", s.base_url);
    CU_ASSERT_EQUAL(http_post(url, body, strlen(body), &status, &resp), 0);
    CU_ASSERT_EQUAL(status, 200);
    char *cell = pyserver_expected("google-vision", png, png_len);
    CU_ASSERT_PTR_NOT_NULL(strstr(resp, cell));
    free(cell);
    free(resp);
    snprintf(url, sizeof url, "%s/v1/chat/completions", s.base_url);
    CU_ASSERT_EQUAL(http_post(url, "{}", 2, &status, &resp), 0);
    CU_ASSERT_EQUAL(status, 401); /* no Authorization header at all */
    free(resp);
    pyserver_stop(&s);
    CU_ASSERT_EQUAL(s.pid, 0);
}

int register_pyserver(void)
{
    CU_pSuite s = CU_add_suite("pyserver", suite_init, suite_cleanup);
    if (!s)
        return -1;
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"predictor: CRC-32 vectors, the image test, unknown examples", test_crc32_and_images},
        {"kserve-v2: the example's request, exact answer and cell", test_kserve},
        {"torchserve: the example's request, exact answer and cell", test_torchserve},
        {"tfserving: the example's request, exact answer and cell", test_tfserving},
        {"openai-vision: the example's request, exact answer and cell", test_openai},
        {"hf-endpoint: the example's request, exact answer and cell", test_hf},
        {"multipart: the example's request, exact answer and cell", test_multipart},
        {"google-vision: the example's request, exact answer and cell", test_google},
        {"kserve-v2: bad base64 and an unknown model get 400 {\"error\"}", test_bad_kserve},
        {"torchserve: not an image 503, unknown model 404", test_bad_torchserve},
        {"tfserving: non-canonical base64 gets 400 Unable to base64 decode", test_bad_tfserving},
        {"openai-vision: wrong and missing Bearer token get 401", test_bad_openai},
        {"hf-endpoint: a text/plain body gets 400 {\"error\"}", test_bad_hf},
        {"multipart: no file part gets FastAPI's 422", test_bad_multipart},
        {"google-vision: bad image data in a 200, a wrong key 400", test_bad_google},
        {"server without --token", test_no_token},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
