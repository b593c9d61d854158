/* Tests for the mock's dialect endpoints (src/mock/dialects.c, linked in for its predictions,
 * and the server $MOCK_BIN driven with libcurl).
 *
 *   - the predictions: every answer is strict JSON, and the CSV cell mock_dialect_cell predicts
 *     is what the example pipeline's `result` gives on it (annotate's own path finder for the
 *     plain paths, libjq 1.6 for OpenAI's fromjson), numbers as the servers print them;
 *   - a correct request per dialect, built from the example pipeline's own body template, is
 *     answered exactly the predicted bytes, for every fixture image and for bytes that are
 *     not an image;
 *   - every kind of bad request gets the real server's status and error shape: bad base64,
 *     wrong Content-Type, multipart framing, missing or wrong token, wrong path or method;
 *   - --token-file is re-read on every request; faults and latency apply; /stats counts the
 *     dialects apart from the seed's endpoints, which answer as before. */
#include <CUnit/CUnit.h>
#include <ctype.h>
#include <curl/curl.h>
#include <jq.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/b64.h"
#include "e2e.h"
#include "common/json.h"
#include "mock/answers.h"
#include "mock/dialects.h"
#include "proc.h"
#include "tree.h"
#include "util.h"

#define TOKEN "tok-3f9a61c2e8"
#define N_D MOCK_N_DIALECTS

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

/* The server most tests share: --token TOKEN. Started by the first test that needs it. */
static struct mock_proc srv;

static int shared_server(void)
{
    if (srv.pid > 0)
        return 0;
    const char *args[] = {"--token", TOKEN, NULL};
    return mock_start(&srv, args);
}

/* ---- images ---------------------------------------------------------------------------- */

struct image {
    char name[64];
    unsigned char *p;
    size_t n;
};

static struct image imgs[16];
static size_t n_imgs;

/* The fixture images, then bytes that are not an image, then a TIFF header. */
static void load_images(void)
{
    if (n_imgs)
        return;
    static const char *const files[] = {"alpha.png", "checker.png", "gradient.jpg", "gray.jpg", "label.jpg",
                                        "plasma.jpg", "plasma.png", "plasma.webp", "radial.gif", "tiles.bmp"};
    char path[1200];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/images/%s", fixtures_dir(), files[i]);
        struct image *im = &imgs[n_imgs];
        im->p = (unsigned char *)slurp(path, &im->n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(im->p);
        snprintf(im->name, sizeof im->name, "%s", files[i]);
        n_imgs++;
    }
    static const char text[] = "not an image\n";
    static const unsigned char tiff[] = {'I', 'I', '*', 0, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6};
    struct image *im = &imgs[n_imgs++];
    snprintf(im->name, sizeof im->name, "notes.bin");
    im->p = malloc(sizeof text);
    memcpy(im->p, text, im->n = sizeof text - 1);
    im = &imgs[n_imgs++];
    snprintf(im->name, sizeof im->name, "scan.tif");
    im->p = malloc(sizeof tiff);
    memcpy(im->p, tiff, im->n = sizeof tiff);
}

static char *b64_of(const unsigned char *p, size_t n)
{
    char *t = malloc(b64_encoded_len(n) + 1);
    b64_encode(p, n, t);
    return t;
}

/* {{image.mime}} as annotate gives it: by magic, else application/octet-stream (these
 * names' extensions are not image extensions). */
static const char *mime_or_octets(const struct image *im)
{
    const char *m = mock_mime_of(im->p, im->n);
    return m ? m : "application/octet-stream";
}

/* ---- HTTP ------------------------------------------------------------------------------ */

struct grow {
    char *p;
    size_t n;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct grow *g = arg;
    size_t n = size * nmemb;
    char *q = realloc(g->p, g->n + n + 1);
    if (!q)
        return 0;
    memcpy(q + g->n, p, n);
    g->p = q;
    g->n += n;
    g->p[g->n] = '\0';
    return n;
}

struct resp {
    long status;
    char *body; /* NUL-terminated, len bytes */
    size_t len;
    char *headers;
    double secs;
};

static void resp_free(struct resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

/* One request: method (NULL: POST with a body or a form, else GET), header lines
 * (NULL-terminated, may be NULL; "Content-Type:" alone sends none), a body or a curl form.
 * 0 or the CURLcode. */
static int send_req(const char *url, const char *method, const char *const *headers, const void *body,
                    size_t len, curl_mime *form, struct resp *r)
{
    struct grow b = {0}, h = {0};
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c)
        return CURLE_FAILED_INIT;
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    for (int i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    if (form) {
        curl_easy_setopt(c, CURLOPT_MIMEPOST, form);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->secs);
    curl_easy_cleanup(c);
    curl_slist_free_all(hl);
    r->body = b.p ? b.p : calloc(1, 1);
    r->len = b.n;
    r->headers = h.p ? h.p : calloc(1, 1);
    return (int)rc;
}

static const char *url_of(const struct mock_proc *m, const char *path)
{
    static char buf[4][600];
    static int k;
    char *u = buf[k++ % 4];
    snprintf(u, sizeof buf[0], "%s%s", m->base_url, path);
    return u;
}

/* The response header's value (case-insensitive name), into a static buffer; NULL if absent. */
static const char *resp_header(const struct resp *r, const char *name)
{
    static char val[256];
    size_t nl = strlen(name);
    for (const char *line = r->headers; line && *line;) {
        const char *eol = strstr(line, "\r\n");
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        if (n > nl && !strncasecmp(line, name, nl) && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            snprintf(val, sizeof val, "%.*s", (int)(n - (size_t)(v - line)), v);
            return val;
        }
        line = eol ? eol + 2 : line + n;
    }
    return NULL;
}

/* ---- the example pipelines ------------------------------------------------------------- */

struct example {
    cJSON *doc;            /* the whole file */
    const cJSON *stage;    /* stages[0] */
    const char *url;       /* with ${VAR} replaced by the token */
    char url_buf[256];
    const char *result;    /* the jq expression */
    char *body_template;   /* the JSON body printed, or NULL (raw bytes, or a form) */
    int raw;               /* "body": "{{image.bytes}}" */
    int form;              /* "form": {"file": "{{image.file}}"} */
    int bearer;            /* an Authorization: Bearer ${...} header */
};

static struct example ex[N_D];

/* Replaces every ${NAME} in s with TOKEN (the tests set every variable to it). */
static void expand_vars(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    while (*s && o + 1 < cap) {
        const char *end;
        if (s[0] == '$' && s[1] == '{' && (end = strchr(s, '}'))) {
            o += (size_t)snprintf(out + o, cap - o, "%s", TOKEN);
            s = end + 1;
        } else {
            out[o++] = *s++;
        }
    }
    out[o < cap ? o : cap - 1] = '\0';
}

static void load_examples(void)
{
    if (ex[0].doc)
        return;
    for (int d = 0; d < N_D; d++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s.json", examples_dir(), mock_dialect_name(d));
        char *text = slurp(path, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        struct example *e = &ex[d];
        e->doc = cJSON_Parse(text);
        free(text);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e->doc);
        e->stage = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e->doc, "stages"), 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e->stage);
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(e->stage, "url");
        const cJSON *result = cJSON_GetObjectItemCaseSensitive(e->stage, "result");
        const cJSON *body = cJSON_GetObjectItemCaseSensitive(e->stage, "body");
        const cJSON *auth = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(e->stage, "headers"), "Authorization");
        CU_ASSERT_FATAL(cJSON_IsString(url) && cJSON_IsString(result));
        expand_vars(url->valuestring, e->url_buf, sizeof e->url_buf);
        e->url = e->url_buf;
        e->result = result->valuestring;
        e->raw = cJSON_IsString(body) && !strcmp(body->valuestring, "{{image.bytes}}");
        e->form = cJSON_GetObjectItemCaseSensitive(e->stage, "form") != NULL;
        e->bearer = cJSON_IsString(auth) && !strncmp(auth->valuestring, "Bearer ${", 9);
        if (body && !e->raw)
            e->body_template = cJSON_PrintUnformatted(body);
        /* every example is on the dialect's own standard path */
        size_t plen = strcspn(e->url, "?");
        CU_ASSERT(plen == strlen(mock_dialect_path(d)) && !memcmp(e->url, mock_dialect_path(d), plen));
        CU_ASSERT_EQUAL(mock_dialect_route(e->url, plen), d);
    }
}

/* The body template with {{image}} and {{image.mime}} filled in, malloc'd. */
static char *fill(const char *tmpl, const char *b64, const char *mime)
{
    size_t cap = strlen(tmpl) + strlen(b64) * 2 + 256, o = 0;
    char *out = malloc(cap);
    for (const char *s = tmpl; *s;) {
        if (!strncmp(s, "{{image}}", 9)) {
            o += (size_t)snprintf(out + o, cap - o, "%s", b64);
            s += 9;
        } else if (!strncmp(s, "{{image.mime}}", 14)) {
            o += (size_t)snprintf(out + o, cap - o, "%s", mime);
            s += 14;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
    return out;
}

/* Sends image im to dialect d exactly as the example pipeline describes the request (what
 * annotate will send). filename is the multipart part's. */
static int send_example(const struct mock_proc *m, int d, const struct image *im, const char *filename,
                        struct resp *r)
{
    const struct example *e = &ex[d];
    const char *mime = mime_or_octets(im);
    char ct[128], auth[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", e->raw ? mime : "application/json");
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", TOKEN);
    const char *hdrs[] = {ct, e->bearer ? auth : NULL, NULL};
    if (e->form) {
        CURL *c = curl_easy_init();
        curl_mime *form = curl_mime_init(c);
        curl_mimepart *part = curl_mime_addpart(form);
        curl_mime_name(part, "file");
        curl_mime_filename(part, filename);
        curl_mime_type(part, mime);
        curl_mime_data(part, (const char *)im->p, im->n);
        const char *none[] = {e->bearer ? auth : NULL, NULL};
        int rc = send_req(url_of(m, e->url), NULL, none, NULL, 0, form, r);
        curl_mime_free(form);
        curl_easy_cleanup(c);
        return rc;
    }
    if (e->raw)
        return send_req(url_of(m, e->url), NULL, hdrs, im->p, im->n, NULL, r);
    char *b64 = b64_of(im->p, im->n);
    char *body = fill(e->body_template, b64, mime);
    int rc = send_req(url_of(m, e->url), NULL, hdrs, body, strlen(body), NULL, r);
    free(body);
    free(b64);
    return rc;
}

/* ---- libjq: what annotate does with a `result` that is not a plain path ------------------ */

/* The first output of a compiled program on text, printed by jv_dump_string with flags 0;
 * malloc'd, NULL when it gives nothing or an error. */
static char *jq_first(jq_state *jq, const char *text, size_t n)
{
    jq_start(jq, jv_parse_sized(text, (int)n), 0);
    jv out = jq_next(jq);
    if (!jv_is_valid(out)) {
        jv_free(out);
        return NULL;
    }
    jv s = jv_dump_string(out, 0);
    char *r = strdup(jv_string_value(s));
    jv_free(s);
    return r;
}

/* What annotate writes for an answer: a plain path's exact bytes, else jq's printing. */
static char *cell_of(jq_state *jq, const char *expr, const char *ans, size_t n)
{
    struct json_path p;
    char err[200];
    if (json_path_parse(expr, &p, err, sizeof err) == 0) {
        const char *v;
        size_t vlen;
        char *r = NULL;
        if (json_find(ans, n, &p, &v, &vlen) == 0) {
            r = malloc(vlen + 1);
            memcpy(r, v, vlen);
            r[vlen] = '\0';
        }
        json_path_free(&p);
        return r;
    }
    return jq_first(jq, ans, n);
}

/* ---- the predictions ------------------------------------------------------------------- */

static void test_names_routes(void)
{
    for (int d = 0; d < N_D; d++) {
        CU_ASSERT_EQUAL(mock_dialect_from_name(mock_dialect_name(d)), d);
        const char *p = mock_dialect_path(d);
        CU_ASSERT_EQUAL(mock_dialect_route(p, strlen(p)), d);
    }
    CU_ASSERT_PTR_NULL(mock_dialect_name(N_D));
    CU_ASSERT_EQUAL(mock_dialect_from_name("triton"), -1);
    static const struct {
        const char *path;
        int d;
    } cases[] = {
        {"/model_01", -1}, {"/stats", -1}, {"/", -1}, {"/classifierx", -1}, {"/v1/chat", -1},
        {"/v2/models/other/infer", MOCK_D_KSERVE}, {"/v2/health/ready", MOCK_D_KSERVE},
        {"/predictions/other", MOCK_D_TORCHSERVE}, {"/v1/models/other:predict", MOCK_D_TFSERVING},
        {"/models/google/vit-base", MOCK_D_HF},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CU_ASSERT_EQUAL(mock_dialect_route(cases[i].path, strlen(cases[i].path)), cases[i].d);
}

static void test_mime(void)
{
    load_images();
    static const struct {
        const char *ext, *mime;
    } want[] = {{".png", "image/png"}, {".jpg", "image/jpeg"}, {".gif", "image/gif"},
                {".webp", "image/webp"}, {".bmp", "image/bmp"}, {".tif", "image/tiff"}};
    for (size_t i = 0; i < n_imgs; i++) {
        const char *m = mock_mime_of(imgs[i].p, imgs[i].n), *exp = NULL;
        for (size_t k = 0; k < sizeof want / sizeof *want; k++)
            if (strstr(imgs[i].name, want[k].ext))
                exp = want[k].mime;
        CU_ASSERT(exp ? m && !strcmp(m, exp) : m == NULL);
    }
    CU_ASSERT_PTR_NULL(mock_mime_of((const unsigned char *)"\x89PNG", 4));
    CU_ASSERT_STRING_EQUAL(mock_mime_of((const unsigned char *)"MM\0*", 4), "image/tiff");
    CU_ASSERT_PTR_NULL(mock_mime_of(NULL, 0));
}

/* A payload: a fixture image, or random bytes behind a PNG signature or none. */
static size_t payload(size_t i, unsigned char *buf, size_t cap)
{
    if (i < n_imgs && imgs[i].n <= cap) {
        memcpy(buf, imgs[i].p, imgs[i].n);
        return imgs[i].n;
    }
    size_t n = 1 + (size_t)(xorshift64(&rng_state) % 300);
    fill_random(&rng_state, buf, n);
    if (i % 2 && n >= 8)
        memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    return n;
}

/* For each dialect and many payloads: the answer is strict JSON, and the predicted cell is what
 * the example's `result` makes of it. */
static void test_cells_match_answers(void)
{
    load_images();
    load_examples();
    static unsigned char buf[1 << 20];
    for (int d = 0; d < N_D; d++) {
        jq_state *jq = jq_init();
        CU_ASSERT_FATAL(jq && jq_compile(jq, ex[d].result));
        for (size_t i = 0; i < n_imgs + 300; i++) {
            size_t n = payload(i, buf, sizeof buf);
            int status;
            size_t alen;
            char *ans = mock_dialect_answer(d, buf, n, "x.png", &status, &alen);
            CU_ASSERT_PTR_NOT_NULL_FATAL(ans);
            CU_ASSERT_EQUAL(strlen(ans), alen);
            char err[200];
            int strict = json_check(ans, alen, err, sizeof err) == 0;
            CU_ASSERT(strict);
            char *cell = NULL;
            const char *error = NULL;
            int rc = mock_dialect_cell(d, buf, n, &cell, &error);
            int image = mock_mime_of(buf, n) != NULL;
            if (rc == 0) {
                CU_ASSERT_EQUAL(status, 200);
                char *got = cell_of(jq, ex[d].result, ans, alen);
                int same = got && !strcmp(got, cell);
                if (!same)
                    fprintf(stderr, "\n  [%s] predicted %s, the answer gives %s\n", mock_dialect_name(d),
                            printable(cell, strlen(cell)), got ? printable(got, strlen(got)) : "nothing");
                CU_ASSERT(same);
                free(got);
                CU_ASSERT(image || (d != MOCK_D_GOOGLE && d != MOCK_D_OPENAI));
            } else {
                /* refused: Google's per-image error in a 200, OpenAI's 400, both for non-images */
                CU_ASSERT_EQUAL(rc, 1);
                CU_ASSERT(!image);
                CU_ASSERT(error && strstr(ans, error));
                CU_ASSERT_EQUAL(status, d == MOCK_D_GOOGLE ? 200 : 400);
                CU_ASSERT(d == MOCK_D_GOOGLE || d == MOCK_D_OPENAI);
            }
            free(cell);
            free(ans);
        }
        jq_teardown(&jq);
    }
}

/* The model behind every dialect: the same label and score for an image everywhere, five
 * distinct labels with decreasing scores summing to at most 1, best first. */
static void test_same_model(void)
{
    unsigned char buf[300];
    for (int i = 0; i < 500; i++) {
        size_t n = payload(1000, buf, sizeof buf);
        memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
        if (n < 8)
            n = 8;
        uint64_t key = mock_key(buf, n);
        const char *label = (const char *[]){"cat", "dog", "car", "tree", "boat", "bird", "house", "person"}
            [(key >> 8) % 8];
        int top = 500 + (int)((key >> 16) % 500);
        int status;
        size_t alen;
        char *hf = mock_dialect_answer(MOCK_D_HF, buf, n, NULL, &status, &alen);
        cJSON *a = cJSON_Parse(hf);
        CU_ASSERT_FATAL(cJSON_IsArray(a) && cJSON_GetArraySize(a) == 5);
        double sum = 0, prev = 2;
        const cJSON *e;
        int k = 0;
        cJSON_ArrayForEach(e, a) {
            double sc = cJSON_GetObjectItemCaseSensitive(e, "score")->valuedouble;
            CU_ASSERT(sc <= prev);
            prev = sc;
            sum += sc;
            const char *l = cJSON_GetObjectItemCaseSensitive(e, "label")->valuestring;
            if (k++ == 0) {
                CU_ASSERT_STRING_EQUAL(l, label);
                CU_ASSERT((int)(sc * 1000 + 0.5) == top);
            }
        }
        CU_ASSERT(sum <= 1.0 + 1e-9);
        cJSON_Delete(a);
        free(hf);
        for (int d = 0; d < N_D; d++) {
            char *cell;
            const char *error;
            CU_ASSERT_EQUAL_FATAL(mock_dialect_cell(d, buf, n, &cell, &error), 0);
            CU_ASSERT_PTR_NOT_NULL(strstr(cell, d == MOCK_D_GOOGLE ? "\"description\"" : label));
            free(cell);
        }
    }
}

/* Numbers as each writer prints them: 0.5 (not 0.500) in the servers' JSON, 0.0 for a zero
 * score, 0.500 in the chat model's own text and 0.5 once jq has read it. */
static void test_number_forms(void)
{
    unsigned char buf[16] = "\x89PNG\r\n\x1a\n";
    int found_half = 0, found_zero = 0;
    for (uint64_t i = 0; i < 2000000 && !(found_half && found_zero); i++) {
        memcpy(buf + 8, &i, 8);
        uint64_t key = mock_key(buf, 16);
        int top = 500 + (int)((key >> 16) % 500);
        int status;
        size_t alen;
        char *cell;
        const char *error;
        if (top == 500 && !found_half) {
            found_half = 1;
            char *oa = mock_dialect_answer(MOCK_D_OPENAI, buf, 16, NULL, &status, &alen);
            CU_ASSERT_PTR_NOT_NULL(strstr(oa, "\\\"score\\\": 0.500}"));
            free(oa);
            CU_ASSERT_EQUAL(mock_dialect_cell(MOCK_D_OPENAI, buf, 16, &cell, &error), 0);
            CU_ASSERT_PTR_NOT_NULL(strstr(cell, "\"score\":0.5}"));
            free(cell);
            char *hf = mock_dialect_answer(MOCK_D_HF, buf, 16, NULL, &status, &alen);
            CU_ASSERT_PTR_NOT_NULL(strstr(hf, "\"score\":0.5}"));
            free(hf);
        }
        if (top == 999 && !found_zero) { /* 1 thousandth left: the next ones are 0 */
            found_zero = 1;
            char *ts = mock_dialect_answer(MOCK_D_TORCHSERVE, buf, 16, NULL, &status, &alen);
            CU_ASSERT_PTR_NOT_NULL(strstr(ts, ": 0.0,\n"));
            CU_ASSERT_PTR_NOT_NULL(strstr(ts, ": 0.999,\n"));
            free(ts);
        }
    }
    CU_ASSERT(found_half && found_zero);
}

/* ---- the server: correct requests ------------------------------------------------------ */

static void test_correct_requests(void)
{
    load_images();
    load_examples();
    CU_ASSERT_EQUAL_FATAL(shared_server(), 0);
    for (int d = 0; d < N_D; d++) {
        for (size_t i = 0; i < n_imgs; i++) {
            struct resp r;
            CU_ASSERT_EQUAL_FATAL(send_example(&srv, d, &imgs[i], imgs[i].name, &r), 0);
            int status;
            size_t alen;
            char *want = mock_dialect_answer(d, imgs[i].p, imgs[i].n, imgs[i].name, &status, &alen);
            int same = r.status == status && r.len == alen && !memcmp(r.body, want, alen);
            if (!same)
                fprintf(stderr, "\n  [%s] %s: got %ld %s\n  want %d %s\n", mock_dialect_name(d), imgs[i].name,
                        r.status, printable(r.body, r.len), status, printable(want, alen));
            CU_ASSERT(same);
            const char *ct = resp_header(&r, "Content-Type");
            CU_ASSERT(ct && !strcmp(ct, "application/json"));
            free(want);
            resp_free(&r);
        }
    }
}

/* Variants a real client may send and the real server takes. */
static void test_request_variants(void)
{
    load_images();
    CU_ASSERT_EQUAL_FATAL(shared_server(), 0);
    const struct image *im = &imgs[0];
    char *b64 = b64_of(im->p, im->n), body[1 << 16];
    struct resp r;
    struct cJSON *j;
    const char *json_cs[] = {"Content-Type: application/json; charset=utf-8", NULL};

    /* KServe: an id is echoed; "outputs" picks the outputs; a version in the path */
    snprintf(body, sizeof body, "{\"id\":\"r-7\",\"inputs\":[{\"name\":\"INPUT\",\"shape\":[1],\"datatype\":\"BYTES\","
             "\"data\":[\"%s\"]}],\"outputs\":[{\"name\":\"SCORE\"}]}", b64);
    CU_ASSERT_EQUAL(send_req(url_of(&srv, "/v2/models/classifier/versions/1/infer"), NULL, json_cs, body,
                             strlen(body), NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    j = cJSON_Parse(r.body);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItemCaseSensitive(j, "id")->valuestring, "r-7");
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(j, "outputs");
    CU_ASSERT(cJSON_GetArraySize(outs) == 1
              && !strcmp(cJSON_GetObjectItemCaseSensitive(outs->child, "name")->valuestring, "SCORE"));
    cJSON_Delete(j);
    resp_free(&r);

    /* KServe health and readiness */
    static const char *const ready[] = {"/v2/health/live", "/v2/health/ready", "/v2/models/classifier/ready"};
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(send_req(url_of(&srv, ready[i]), NULL, NULL, NULL, 0, NULL, &r), 0);
        CU_ASSERT_EQUAL(r.status, 200);
        CU_ASSERT_EQUAL(r.len, 0);
        resp_free(&r);
    }

    /* TF Serving: two instances, two predictions in order; the signature named */
    unsigned char other[] = "\x89PNG\r\n\x1a\nxyz";
    char *b64b = b64_of(other, sizeof other - 1);
    snprintf(body, sizeof body, "{\"signature_name\":\"serving_default\",\"instances\":[{\"b64\":\"%s\"},"
             "{\"b64\":\"%s\"}]}", b64, b64b);
    CU_ASSERT_EQUAL(send_req(url_of(&srv, "/v1/models/classifier:predict"), NULL, json_cs, body, strlen(body),
                             NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    j = cJSON_Parse(r.body);
    const cJSON *preds = cJSON_GetObjectItemCaseSensitive(j, "predictions");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(preds), 2);
    for (int i = 0; i < 2 && cJSON_GetArraySize(preds) == 2; i++) {
        char *cell;
        const char *error;
        mock_dialect_cell(MOCK_D_TFSERVING, i ? other : im->p, i ? sizeof other - 1 : im->n, &cell, &error);
        cJSON *want = cJSON_Parse(cell);
        CU_ASSERT(cJSON_Compare(cJSON_GetArrayItem(preds, i), want, 1));
        cJSON_Delete(want);
        free(cell);
    }
    cJSON_Delete(j);
    resp_free(&r);

    /* Google: the key as a header; two images, the second not one: labels, then its error;
     * maxResults */
    char key_hdr[128];
    snprintf(key_hdr, sizeof key_hdr, "X-Goog-Api-Key: %s", TOKEN);
    const char *gh[] = {"Content-Type: application/json; charset=utf-8", key_hdr, NULL};
    snprintf(body, sizeof body, "{\"requests\":[{\"image\":{\"content\":\"%s\"},\"features\":[{\"type\":"
             "\"LABEL_DETECTION\",\"maxResults\":2}]},{\"image\":{\"content\":\"aGVsbG8=\"},\"features\":"
             "[{\"type\":\"LABEL_DETECTION\"}]}]}", b64);
    CU_ASSERT_EQUAL(send_req(url_of(&srv, "/v1/images:annotate"), NULL, gh, body, strlen(body), NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    j = cJSON_Parse(r.body);
    const cJSON *resps = cJSON_GetObjectItemCaseSensitive(j, "responses");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(resps), 2);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(resps, 0),
                                                                        "labelAnnotations")), 2);
    const cJSON *gerr = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(resps, 1), "error");
    CU_ASSERT(gerr && cJSON_GetObjectItemCaseSensitive(gerr, "code")->valueint == 3
              && !strcmp(cJSON_GetObjectItemCaseSensitive(gerr, "message")->valuestring, "Bad image data."));
    cJSON_Delete(j);
    resp_free(&r);

    /* Hugging Face: the JSON form with parameters */
    snprintf(body, sizeof body, "{\"inputs\":\"%s\",\"parameters\":{\"top_k\":2}}", b64);
    CU_ASSERT_EQUAL(send_req(url_of(&srv, "/models/classifier"), NULL, json_cs, body, strlen(body), NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    j = cJSON_Parse(r.body);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(j), 2);
    cJSON_Delete(j);
    resp_free(&r);

    /* Raw bytes whose magic is unknown: any image type or application/octet-stream */
    static const char *const cts[] = {"Content-Type: image/x-anything", "Content-Type: application/octet-stream"};
    for (int i = 0; i < 2; i++) {
        const char *h[] = {cts[i], NULL};
        CU_ASSERT_EQUAL(send_req(url_of(&srv, "/predictions/classifier"), NULL, h, "hello", 5, NULL, &r), 0);
        CU_ASSERT_EQUAL(r.status, 200);
        resp_free(&r);
        CU_ASSERT_EQUAL(send_req(url_of(&srv, "/models/classifier"), NULL, h, "hello", 5, NULL, &r), 0);
        CU_ASSERT_EQUAL(r.status, 200);
        resp_free(&r);
    }

    /* Multipart: a hand-made body with a quoted boundary and an extra text field; the filename
     * is echoed (a comma, a quote escaped, a lone backslash kept, and a byte that is not UTF-8,
     * read as Latin-1) */
    static const char head[] = "--b0\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
                               "--b0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a,\\\"b\\x\xff.png\"\r\n"
                               "Content-Type: image/png\r\n\r\n";
    size_t hl = sizeof head - 1, n = 0;
    memcpy(body, head, hl);
    memcpy(body + hl, im->p, im->n);
    n = hl + im->n;
    memcpy(body + n, "\r\n--b0--\r\n", 10);
    n += 10;
    const char *mh[] = {"Content-Type: multipart/form-data; boundary=\"b0\"", NULL};
    CU_ASSERT_EQUAL(send_req(url_of(&srv, "/classifier"), NULL, mh, body, n, NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    int st;
    size_t alen;
    char *want = mock_dialect_answer(MOCK_D_MULTIPART, im->p, im->n, "a,\"b\\x\xff.png", &st, &alen);
    CU_ASSERT(r.len == alen && !memcmp(r.body, want, alen));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"filename\":\"a,\\\"b\\\\x\xc3\xbf.png\""));
    free(want);
    resp_free(&r);
    free(b64b);
    free(b64);
}

/* ---- the server: bad requests ---------------------------------------------------------- */

/* Checks a refusal: the status, strict JSON, and the shape: a dotted path that must name a
 * string (or, with "=", must equal that string; "#" a number). */
static void expect_error(const char *what, const struct resp *r, long status, const char *const *paths)
{
    int ok = r->status == status;
    char err[200];
    cJSON *j = NULL;
    if (json_check(r->body, r->len, err, sizeof err) != 0)
        ok = 0;
    else
        j = cJSON_Parse(r->body);
    for (int i = 0; ok && paths && paths[i]; i++) {
        char key[128];
        const char *p = paths[i], *eq = strpbrk(p, "=#");
        const cJSON *v = j;
        for (;;) {
            size_t n = strcspn(p, ".=#");
            snprintf(key, sizeof key, "%.*s", (int)n, p);
            v = isdigit((unsigned char)key[0]) ? cJSON_GetArrayItem(v, atoi(key))
                                               : cJSON_GetObjectItemCaseSensitive(v, key);
            p += n;
            if (*p != '.')
                break;
            p++;
        }
        if (eq && *eq == '#')
            ok = cJSON_IsNumber(v) && v->valuedouble == atof(eq + 1);
        else if (eq)
            ok = cJSON_IsString(v) ? !strcmp(v->valuestring, eq + 1) : cJSON_IsNull(v) && !strcmp(eq + 1, "null");
        else
            ok = cJSON_IsString(v);
    }
    if (!ok)
        fprintf(stderr, "\n  %s: got %ld %s\n", what, r->status, printable(r->body, r->len));
    CU_ASSERT(ok);
    cJSON_Delete(j);
}

static const char *const KSERVE_ERR[] = {"error", NULL};
static const char *const TORCH_ERR[] = {"code#400", "type=BadRequestException", "message", NULL};
static const char *const TFS_ERR[] = {"error", NULL};
static const char *const OPENAI_ERR[] = {"error.message", "error.type=invalid_request_error", NULL};
static const char *const HF_ERR[] = {"error", NULL};
static const char *const GOOGLE_ERR[] = {"error.code#400", "error.message", "error.status=INVALID_ARGUMENT", NULL};

/* POSTs body to path with the token and Content-Type ct; checks a 400-class answer. */
static void bad_json(const char *what, const char *path, const char *ct, const char *body, long status,
                     const char *const *shape)
{
    char auth[128], ct_line[160];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", TOKEN);
    snprintf(ct_line, sizeof ct_line, "Content-Type: %s", ct);
    const char *h[] = {ct_line, auth, NULL};
    struct resp r;
    CU_ASSERT_EQUAL(send_req(url_of(&srv, path), NULL, h, body, strlen(body), NULL, &r), 0);
    expect_error(what, &r, status, shape);
    resp_free(&r);
}

/* Each JSON dialect's body with this base64 text where the image goes. */
static void bodies_with(const char *b64, char out[4][1024])
{
    snprintf(out[0], 1024, "{\"inputs\":[{\"name\":\"INPUT\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"%s\"]}]}", b64);
    snprintf(out[1], 1024, "{\"instances\":[{\"b64\":\"%s\"}]}", b64);
    snprintf(out[2], 1024, "{\"model\":\"classifier\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
             "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,%s\"}}]}]}", b64);
    snprintf(out[3], 1024, "{\"requests\":[{\"image\":{\"content\":\"%s\"},\"features\":[{\"type\":"
             "\"LABEL_DETECTION\"}]}]}", b64);
}

static const char *GOOGLE_URL = "/v1/images:annotate?key=" TOKEN;

static void test_bad_base64(void)
{
    CU_ASSERT_EQUAL_FATAL(shared_server(), 0);
    /* unpadded, a line break (as JSON's \n), the URL-safe alphabet, a stray character,
     * unused bits not zero */
    static const char *const bad[] = {"iVBORw0KGgo", "iVBORw0K\\nGgo=", "iVBO-w0_GgoAAAA=", "iVBORw0K!go=",
                                      "iVBORw0KGgp="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char b[4][1024], hf[512];
        bodies_with(bad[i], b);
        bad_json("kserve bad base64", mock_dialect_path(MOCK_D_KSERVE), "application/json", b[0], 400, KSERVE_ERR);
        bad_json("tfserving bad base64", mock_dialect_path(MOCK_D_TFSERVING), "application/json", b[1], 400, TFS_ERR);
        bad_json("openai bad base64", mock_dialect_path(MOCK_D_OPENAI), "application/json", b[2], 400, OPENAI_ERR);
        bad_json("google bad base64", GOOGLE_URL, "application/json", b[3], 400, GOOGLE_ERR);
        snprintf(hf, sizeof hf, "{\"inputs\":\"%s\"}", bad[i]);
        bad_json("hf bad base64", mock_dialect_path(MOCK_D_HF), "application/json", hf, 400, HF_ERR);
    }
    /* an empty image, and a body that is not JSON */
    char b[4][1024];
    bodies_with("", b);
    bad_json("kserve empty", mock_dialect_path(MOCK_D_KSERVE), "application/json", b[0], 400, KSERVE_ERR);
    bad_json("tfserving empty", mock_dialect_path(MOCK_D_TFSERVING), "application/json", b[1], 400, TFS_ERR);
    bad_json("openai empty", mock_dialect_path(MOCK_D_OPENAI), "application/json", b[2], 400, OPENAI_ERR);
    bad_json("kserve not JSON", mock_dialect_path(MOCK_D_KSERVE), "application/json", "{\"inputs\": [", 400, KSERVE_ERR);
    bad_json("tfserving not JSON", mock_dialect_path(MOCK_D_TFSERVING), "application/json", "[1] x", 400, TFS_ERR);
    bad_json("google not JSON", GOOGLE_URL, "application/json", "{{", 400, GOOGLE_ERR);
    bad_json("openai duplicate key", mock_dialect_path(MOCK_D_OPENAI), "application/json",
             "{\"model\":\"classifier\",\"model\":\"classifier\"}", 400, OPENAI_ERR);
    /* wrong shapes, each refused with the server's own wording where it has one */
    bad_json("kserve two inputs", mock_dialect_path(MOCK_D_KSERVE), "application/json",
             "{\"inputs\":[{\"name\":\"INPUT\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"aGk=\"]},"
             "{\"name\":\"INPUT\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"aGk=\"]}]}", 400,
             (const char *[]){"error=expected 1 inputs but got 2 inputs for model 'classifier'", NULL});
    bad_json("kserve FP32", mock_dialect_path(MOCK_D_KSERVE), "application/json",
             "{\"inputs\":[{\"name\":\"INPUT\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[\"aGk=\"]}]}", 400,
             (const char *[]){"error=inference input 'INPUT' data-type is 'FP32', but model 'classifier' expects "
                              "'BYTES'", NULL});
    bad_json("tfserving both formats", mock_dialect_path(MOCK_D_TFSERVING), "application/json",
             "{\"instances\":[],\"inputs\":[]}", 400, TFS_ERR);
    bad_json("tfserving not b64 object", mock_dialect_path(MOCK_D_TFSERVING), "application/json",
             "{\"instances\":[\"aGk=\"]}", 400, TFS_ERR);
    bad_json("openai unknown argument", mock_dialect_path(MOCK_D_OPENAI), "application/json",
             "{\"model\":\"classifier\",\"messages\":[],\"colour\":1}", 400,
             (const char *[]){"error.message=Unrecognized request argument supplied: colour", NULL});
    bad_json("openai no image", mock_dialect_path(MOCK_D_OPENAI), "application/json",
             "{\"model\":\"classifier\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 400, OPENAI_ERR);
    bad_json("openai unknown model", mock_dialect_path(MOCK_D_OPENAI), "application/json",
             "{\"model\":\"gpt-x\",\"messages\":[]}", 404,
             (const char *[]){"error.code=model_not_found", "error.type=invalid_request_error", NULL});
    bad_json("openai mime mismatch", mock_dialect_path(MOCK_D_OPENAI), "application/json",
             "{\"model\":\"classifier\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
             "\"image_url\":{\"url\":\"data:image/jpeg;base64,iVBORw0KGgoAAAAA\"}}]}]}", 400,
             (const char *[]){"error.code=invalid_image_format", NULL});
    bad_json("openai not an image", mock_dialect_path(MOCK_D_OPENAI), "application/json",
             "{\"model\":\"classifier\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
             "\"image_url\":{\"url\":\"data:image/png;base64,aGVsbG8=\"}}]}]}", 400,
             (const char *[]){"error.code=invalid_image_format", NULL});
    bad_json("google unknown field", GOOGLE_URL, "application/json",
             "{\"requests\":[{\"image\":{\"content\":\"aGk=\"},\"feature\":[]}]}", 400,
             (const char *[]){"error.message=Invalid JSON payload received. Unknown name \"feature\" at "
                              "'requests[0]': Cannot find field.", NULL});
}

static void test_bad_content_type(void)
{
    load_images();
    CU_ASSERT_EQUAL_FATAL(shared_server(), 0);
    const struct image *png = &imgs[1]; /* checker.png: small enough for bodies_with */
    char b64[1 << 15], b[4][1024];
    CU_ASSERT_FATAL(b64_encoded_len(png->n) < 800);
    b64_encode(png->p, png->n, b64);
    bodies_with(b64, b);
    static const char *const not_json[] = {"text/plain", "application/x-www-form-urlencoded", "application/jsonx"};
    for (int i = 0; i < 3; i++) {
        bad_json("kserve content type", mock_dialect_path(MOCK_D_KSERVE), not_json[i], b[0], 400, KSERVE_ERR);
        bad_json("tfserving content type", mock_dialect_path(MOCK_D_TFSERVING), not_json[i], b[1], 400, TFS_ERR);
        bad_json("openai content type", mock_dialect_path(MOCK_D_OPENAI), not_json[i], b[2], 400, OPENAI_ERR);
        bad_json("google content type", GOOGLE_URL, not_json[i], b[3], 400, GOOGLE_ERR);
    }
    /* Raw bytes: the image's own type, never another image type, JSON, text or nothing */
    static const char *const raw_bad[] = {"Content-Type: image/jpeg", "Content-Type: application/json",
                                          "Content-Type: text/plain", "Content-Type: application/octet-stream",
                                          "Content-Type:"};
    for (size_t i = 0; i < sizeof raw_bad / sizeof *raw_bad; i++) {
        const char *h[] = {raw_bad[i], NULL};
        struct resp r;
        CU_ASSERT_EQUAL(send_req(url_of(&srv, "/predictions/classifier"), NULL, h, png->p, png->n, NULL, &r), 0);
        expect_error("torchserve content type", &r, 400, TORCH_ERR);
        resp_free(&r);
        CU_ASSERT_EQUAL(send_req(url_of(&srv, "/models/classifier"), NULL, h, png->p, png->n, NULL, &r), 0);
        expect_error("hf content type", &r, 400, HF_ERR);
        resp_free(&r);
    }
    /* Bytes that are not an image, sent as text: refused even though the magic is unknown */
    const char *tp[] = {"Content-Type: text/plain", NULL};
    struct resp r;
    CU_ASSERT_EQUAL(send_req(url_of(&srv, "/predictions/classifier"), NULL, tp, "hello", 5, NULL, &r), 0);
    expect_error("torchserve text", &r, 400, TORCH_ERR);
    resp_free(&r);
    /* An empty raw body: TorchServe's handler fails (503), Hugging Face says so (400) */
    const char *ip[] = {"Content-Type: image/png", NULL};
    CU_ASSERT_EQUAL(send_req(url_of(&srv, "/predictions/classifier"), NULL, ip, "", 0, NULL, &r), 0);
    expect_error("torchserve empty", &r, 503,
                 (const char *[]){"code#503", "type=InternalServerException", "message=Prediction failed", NULL});
    resp_free(&r);
    CU_ASSERT_EQUAL(send_req(url_of(&srv, "/models/classifier"), NULL, ip, "", 0, NULL, &r), 0);
    expect_error("hf empty", &r, 400, HF_ERR);
    resp_free(&r);
}

/* A multipart body built by hand: parts given as full text, then the close delimiter. */
static size_t multipart(char *out, size_t cap, const char *const *parts, int close)
{
    size_t n = 0;
    for (int i = 0; parts[i]; i++)
        n += (size_t)snprintf(out + n, cap - n, "--XyZ\r\n%s\r\n", parts[i]);
    if (close)
        n += (size_t)snprintf(out + n, cap - n, "--XyZ--\r\n");
    return n;
}

static void test_bad_multipart(void)
{
    CU_ASSERT_EQUAL_FATAL(shared_server(), 0);
    static const char PNG[] = "\x89PNG\r\n\x1a\n-the-rest";
    char file_ok[256], file_ct[256], file_noname[256], file_empty[256];
    snprintf(file_ok, sizeof file_ok, "Content-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
             "Content-Type: image/png\r\n\r\n%s", PNG);
    snprintf(file_ct, sizeof file_ct, "Content-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
             "Content-Type: image/gif\r\n\r\n%s", PNG);
    snprintf(file_noname, sizeof file_noname, "Content-Disposition: form-data; name=\"file\"\r\n\r\n%s", PNG);
    snprintf(file_empty, sizeof file_empty, "Content-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
             "Content-Type: image/png\r\n\r\n");
    char file_noct[256];
    snprintf(file_noct, sizeof file_noct, "Content-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n%s",
             PNG);
    static const char *const MISSING[] = {"detail.0.type=missing", "detail.0.loc.0=body", "detail.0.loc.1=file",
                                          "detail.0.msg=Field required", NULL};
    static const char *const NOT_FILE[] = {"detail.0.type=value_error", "detail.0.loc.1=file", NULL};
    static const char *const PARSE[] = {"detail=There was an error parsing the body", NULL};
    static const char *const DETAIL[] = {"detail", NULL};
    struct {
        const char *what;
        const char *ct;
        const char *parts[3];
        int close;
        long status;
        const char *const *shape;
    } cases[] = {
        {"correct", "multipart/form-data; boundary=XyZ", {file_ok, NULL}, 1, 200, NULL},
        {"no file part", "multipart/form-data; boundary=XyZ",
         {"Content-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nxx", NULL}, 1, 422, MISSING},
        {"no parts", "multipart/form-data; boundary=XyZ", {NULL}, 1, 422, MISSING},
        {"file part without filename", "multipart/form-data; boundary=XyZ", {file_noname, NULL}, 1, 422, NOT_FILE},
        {"wrong part Content-Type", "multipart/form-data; boundary=XyZ", {file_ct, NULL}, 1, 400, DETAIL},
        {"no part Content-Type", "multipart/form-data; boundary=XyZ", {file_noct, NULL}, 1, 400, DETAIL},
        {"empty file", "multipart/form-data; boundary=XyZ", {file_empty, NULL}, 1, 400, DETAIL},
        {"no boundary", "multipart/form-data", {file_ok, NULL}, 1, 400, PARSE},
        {"another boundary", "multipart/form-data; boundary=Other", {file_ok, NULL}, 1, 400, PARSE},
        {"no close delimiter", "multipart/form-data; boundary=XyZ", {file_ok, NULL}, 0, 400, PARSE},
        {"part without Content-Disposition", "multipart/form-data; boundary=XyZ",
         {"Content-Type: image/png\r\n\r\nxx", NULL}, 1, 400, PARSE},
        {"sent as JSON", "application/json", {file_ok, NULL}, 1, 422, MISSING},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char body[2048], ct[128];
        size_t n = multipart(body, sizeof body, cases[i].parts, cases[i].close);
        snprintf(ct, sizeof ct, "Content-Type: %s", cases[i].ct);
        const char *h[] = {ct, NULL};
        struct resp r;
        CU_ASSERT_EQUAL(send_req(url_of(&srv, "/classifier"), NULL, h, body, n, NULL, &r), 0);
        if (cases[i].status == 200) {
            if (r.status != 200)
                fprintf(stderr, "\n  multipart %s: %ld %s\n", cases[i].what, r.status, r.body);
            CU_ASSERT_EQUAL(r.status, 200);
        } else {
            expect_error(cases[i].what, &r, cases[i].status, cases[i].shape);
        }
        resp_free(&r);
    }
}

static void test_tokens(void)
{
    CU_ASSERT_EQUAL_FATAL(shared_server(), 0);
    char b[4][1024];
    bodies_with("iVBORw0KGgoAAAAA", b); /* a PNG signature and a little more */
    static const char *const WRONG_KEY[] = {"error.code=invalid_api_key", "error.type=invalid_request_error", NULL};
    static const char *const NO_KEY[] = {"error.code=null", "error.type=invalid_request_error", "error.message", NULL};
    struct {
        const char *auth;
        long status;
        const char *const *shape;
    } oa[] = {
        {NULL, 401, NO_KEY},
        {"Authorization: Basic dXNlcjpwYXNz", 401, NO_KEY},
        {"Authorization: Bearer ", 401, NO_KEY},
        {"Authorization: Bearer wrong-token-77", 401, WRONG_KEY},
        {"Authorization: Bearer " TOKEN "x", 401, WRONG_KEY},
        {"Authorization: Bearer " TOKEN, 200, NULL},
        {"Authorization: bearer " TOKEN, 200, NULL},
    };
    for (size_t i = 0; i < sizeof oa / sizeof *oa; i++) {
        const char *h[] = {"Content-Type: application/json", oa[i].auth, NULL};
        struct resp r;
        CU_ASSERT_EQUAL(send_req(url_of(&srv, "/v1/chat/completions"), NULL, h, b[2], strlen(b[2]), NULL, &r), 0);
        if (oa[i].status == 200) {
            CU_ASSERT_EQUAL(r.status, 200);
        } else {
            expect_error("openai token", &r, oa[i].status, oa[i].shape);
        }
        /* the answer never quotes the token it was sent, nor the right one */
        CU_ASSERT_PTR_NULL(strstr(r.body, "wrong-token"));
        CU_ASSERT(oa[i].status == 200 || !strstr(r.body, TOKEN));
        resp_free(&r);
    }
    static const char *const G_INVALID[] = {"error.code#400", "error.status=INVALID_ARGUMENT",
                                            "error.message=API key not valid. Please pass a valid API key.",
                                            "error.details.0.reason=API_KEY_INVALID", NULL};
    static const char *const G_NONE[] = {"error.code#403", "error.status=PERMISSION_DENIED", NULL};
    struct {
        const char *path, *hdr;
        long status;
        const char *const *shape;
    } g[] = {
        {"/v1/images:annotate", NULL, 403, G_NONE},
        {"/v1/images:annotate?key=", NULL, 403, G_NONE},
        {"/v1/images:annotate?key=nope", NULL, 400, G_INVALID},
        {"/v1/images:annotate?alt=json&key=" TOKEN, NULL, 200, NULL},
        {"/v1/images:annotate?key=tok%2D3f9a61c2e8", NULL, 200, NULL}, /* percent-encoded '-' */
        {"/v1/images:annotate", "X-Goog-Api-Key: " TOKEN, 200, NULL},
        {"/v1/images:annotate", "X-Goog-Api-Key: nope", 400, G_INVALID},
    };
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
        const char *h[] = {"Content-Type: application/json", g[i].hdr, NULL};
        struct resp r;
        CU_ASSERT_EQUAL(send_req(url_of(&srv, g[i].path), NULL, h, b[3], strlen(b[3]), NULL, &r), 0);
        if (g[i].status == 200) {
            CU_ASSERT_EQUAL(r.status, 200);
        } else {
            expect_error("google key", &r, g[i].status, g[i].shape);
        }
        CU_ASSERT(g[i].status == 200 || (!strstr(r.body, TOKEN) && !strstr(r.body, "nope")));
        resp_free(&r);
    }
    /* Without --token any token goes, but OpenAI still wants one */
    struct mock_proc any = {0};
    CU_ASSERT_EQUAL_FATAL(mock_start(&any, NULL), 0);
    const char *with[] = {"Content-Type: application/json", "Authorization: Bearer whatever", NULL};
    const char *without[] = {"Content-Type: application/json", NULL};
    struct resp r;
    CU_ASSERT_EQUAL(send_req(url_of(&any, "/v1/chat/completions"), NULL, with, b[2], strlen(b[2]), NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    resp_free(&r);
    CU_ASSERT_EQUAL(send_req(url_of(&any, "/v1/chat/completions"), NULL, without, b[2], strlen(b[2]), NULL, &r), 0);
    expect_error("openai no token, no --token", &r, 401, NO_KEY);
    resp_free(&r);
    CU_ASSERT_EQUAL(send_req(url_of(&any, "/v1/images:annotate?key=whatever"), NULL, without, b[3], strlen(b[3]),
                             NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    resp_free(&r);
    CU_ASSERT_EQUAL(mock_stop(&any), 0);
}

/* --token-file: read on every request, so a rotation takes effect at once. */
static void test_token_file(void)
{
    char dir[512], file[600], tmp[620];
    CU_ASSERT_FATAL(make_tmpdir(dir, sizeof dir, "dialects") == 0);
    snprintf(file, sizeof file, "%s/token", dir);
    snprintf(tmp, sizeof tmp, "%s/token.new", dir);
    CU_ASSERT_FATAL(write_file(file, "first-token\n", 12) == 0);
    struct mock_proc m = {0};
    const char *args[] = {"--token-file", file, NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, args), 0);
    char b[4][1024];
    bodies_with("iVBORw0KGgoAAAAA", b);
    const char *first[] = {"Content-Type: application/json", "Authorization: Bearer first-token", NULL};
    const char *second[] = {"Content-Type: application/json", "Authorization: Bearer second-token", NULL};
    struct resp r;
    long st[6];
    CU_ASSERT_EQUAL(send_req(url_of(&m, "/v1/chat/completions"), NULL, first, b[2], strlen(b[2]), NULL, &r), 0);
    st[0] = r.status;
    resp_free(&r);
    CU_ASSERT_EQUAL(send_req(url_of(&m, "/v1/chat/completions"), NULL, second, b[2], strlen(b[2]), NULL, &r), 0);
    st[1] = r.status;
    resp_free(&r);
    /* rotate: a new file renamed over the old one, as secret managers do */
    CU_ASSERT_FATAL(write_file(tmp, "second-token", 12) == 0 && rename(tmp, file) == 0);
    CU_ASSERT_EQUAL(send_req(url_of(&m, "/v1/chat/completions"), NULL, first, b[2], strlen(b[2]), NULL, &r), 0);
    st[2] = r.status;
    resp_free(&r);
    CU_ASSERT_EQUAL(send_req(url_of(&m, "/v1/chat/completions"), NULL, second, b[2], strlen(b[2]), NULL, &r), 0);
    st[3] = r.status;
    resp_free(&r);
    CU_ASSERT_EQUAL(send_req(url_of(&m, "/v1/images:annotate?key=second-token"), NULL, second, b[3], strlen(b[3]),
                             NULL, &r), 0);
    st[4] = r.status;
    resp_free(&r);
    /* one trailing newline only is removed: "second-token\n\n" is the token "second-token\n" */
    CU_ASSERT_FATAL(write_file(tmp, "second-token\n\n", 14) == 0 && rename(tmp, file) == 0);
    CU_ASSERT_EQUAL(send_req(url_of(&m, "/v1/chat/completions"), NULL, second, b[2], strlen(b[2]), NULL, &r), 0);
    st[5] = r.status;
    resp_free(&r);
    CU_ASSERT(st[0] == 200 && st[1] == 401 && st[2] == 401 && st[3] == 200 && st[4] == 200 && st[5] == 401);
    if (!(st[0] == 200 && st[1] == 401 && st[2] == 401 && st[3] == 200 && st[4] == 200 && st[5] == 401))
        fprintf(stderr, "\n  token file: %ld %ld %ld %ld %ld %ld\n", st[0], st[1], st[2], st[3], st[4], st[5]);
    /* a token file that is gone: a 500 in the server's shape, never a 200 */
    unlink(file);
    CU_ASSERT_EQUAL(send_req(url_of(&m, "/v1/chat/completions"), NULL, second, b[2], strlen(b[2]), NULL, &r), 0);
    expect_error("openai, token file gone", &r, 500, (const char *[]){"error.type=server_error", NULL});
    resp_free(&r);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
    /* the command line: a missing file, and both options, are usage errors */
    char out[1024];
    const char *missing[] = {mock_bin(), "--port", "0", "--token-file", file, NULL};
    CU_ASSERT_EQUAL(run_cmd(missing, tmo(10), out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--token-file"));
    write_file(file, "t\n", 2);
    const char *both[] = {mock_bin(), "--port", "0", "--token", "secret-zz", "--token-file", file, NULL};
    CU_ASSERT_EQUAL(run_cmd(both, tmo(10), out, sizeof out), 2);
    CU_ASSERT_PTR_NULL(strstr(out, "secret-zz"));
    tree_rm(dir);
}

static void test_paths_methods(void)
{
    CU_ASSERT_EQUAL_FATAL(shared_server(), 0);
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", TOKEN);
    struct {
        const char *method, *path;
        long status;
        const char *const *shape;
    } cases[] = {
        {"GET", "/v2/models/classifier/infer", 405, (const char *[]){"error=Method Not Allowed", NULL}},
        {"POST", "/v2/models/resnet/infer", 400,
         (const char *[]){"error=Request for unknown model: 'resnet' is not found", NULL}},
        {"POST", "/v2/models/classifier/versions/7/infer", 400, KSERVE_ERR},
        {"POST", "/v2/models/classifier/explain", 404, KSERVE_ERR},
        {"POST", "/predictions/resnet", 404,
         (const char *[]){"code#404", "type=ModelNotFoundException", "message=Model not found: resnet", NULL}},
        {"POST", "/predictions/classifier/2.0", 404, (const char *[]){"type=ModelVersionNotFoundException", NULL}},
        {"POST", "/predictions", 404, (const char *[]){"type=ResourceNotFoundException", NULL}},
        {"GET", "/v1/models/classifier:predict", 400,
         (const char *[]){"error=Malformed request: GET /v1/models/classifier:predict", NULL}},
        {"POST", "/v1/models/resnet:predict", 404,
         (const char *[]){"error=Servable not found for request: Latest(resnet)", NULL}},
        {"POST", "/v1/models/classifier:classify", 400, TFS_ERR},
        {"GET", "/v1/chat/completions", 405, OPENAI_ERR},
        {"POST", "/models/google/vit-base", 404,
         (const char *[]){"error=Model google/vit-base does not exist", NULL}},
        {"GET", "/models/classifier", 405, HF_ERR},
        {"GET", "/classifier", 405, (const char *[]){"detail=Method Not Allowed", NULL}},
        {"GET", "/v1/images:annotate?key=" TOKEN, 404, (const char *[]){"error.code#404", "error.status=NOT_FOUND", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *h[] = {"Content-Type: application/json", auth, NULL};
        struct resp r;
        int post = !strcmp(cases[i].method, "POST");
        CU_ASSERT_EQUAL(send_req(url_of(&srv, cases[i].path), cases[i].method, h, post ? "{}" : NULL, 2, NULL, &r), 0);
        char what[200];
        snprintf(what, sizeof what, "%s %s", cases[i].method, cases[i].path);
        expect_error(what, &r, cases[i].status, cases[i].shape);
        resp_free(&r);
    }
    /* the TorchServe front end does not look at the method: GET with the image works */
    load_images();
    const char *h[] = {"Content-Type: image/png", NULL};
    struct resp r;
    CU_ASSERT_EQUAL(send_req(url_of(&srv, "/predictions/classifier"), "GET", h, imgs[0].p, imgs[0].n, NULL, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    resp_free(&r);
    /* and the seed's endpoints are untouched */
    static const char seed[] = "[{\"im_str\": \"aGVsbG8=\", \"model_03\": null}]";
    long status;
    char *body = NULL;
    CU_ASSERT_EQUAL(http_post(url_of(&srv, "/model_05"), seed, strlen(seed), &status, &body), 0);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT(body && strstr(body, "\"bytes\":5"));
    free(body);
}

/* /stats: no "dialects" until a dialect request arrives; then counted apart from the seed. */
static void test_stats(void)
{
    struct mock_proc m = {0};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, NULL), 0);
    cJSON *s = mock_stats(&m);
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(s, "dialects"));
    cJSON_Delete(s);
    load_images();
    load_examples();
    for (int d = 0; d < N_D; d++) {
        struct resp r;
        CU_ASSERT_EQUAL(send_example(&m, d, &imgs[0], "a.png", &r), 0);
        resp_free(&r);
    }
    const char *h[] = {"Content-Type: text/plain", NULL};
    struct resp r;
    CU_ASSERT_EQUAL(send_req(url_of(&m, "/predictions/classifier"), NULL, h, "x", 1, NULL, &r), 0);
    resp_free(&r);
    s = mock_stats(&m);
    for (int d = 0; d < N_D; d++) {
        char key[80];
        snprintf(key, sizeof key, "dialects.%s.requests", mock_dialect_name(d));
        CU_ASSERT_EQUAL(mock_stat(s, key), d == MOCK_D_TORCHSERVE ? 2 : 1);
        snprintf(key, sizeof key, "dialects.%s.ok", mock_dialect_name(d));
        CU_ASSERT_EQUAL(mock_stat(s, key), 1);
        snprintf(key, sizeof key, "dialects.%s.rejected", mock_dialect_name(d));
        CU_ASSERT_EQUAL(mock_stat(s, key), d == MOCK_D_TORCHSERVE ? 1 : 0);
    }
    CU_ASSERT_EQUAL(mock_stat(s, "total"), 0);
    CU_ASSERT_EQUAL(mock_stat(s, "ok"), 0);
    CU_ASSERT_EQUAL(mock_stat(s, "rejected"), 0);
    cJSON_Delete(s);
    CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
    s = mock_stats(&m);
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(s, "dialects"));
    cJSON_Delete(s);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* Injected faults in each server's shape; latency applies. */
static void test_faults(void)
{
    load_images();
    load_examples();
    struct {
        const char *const args[8];
        long status[N_D];
        int retry_after;
    } runs[] = {
        {{"--error-rate", "1", "--retry-after", "3", "--token", TOKEN, NULL},
         {[MOCK_D_KSERVE] = 500, [MOCK_D_TORCHSERVE] = 503, [MOCK_D_TFSERVING] = 500, [MOCK_D_OPENAI] = 500,
          [MOCK_D_HF] = 503, [MOCK_D_MULTIPART] = 500, [MOCK_D_GOOGLE] = 500}, 0},
        {{"--rate-429", "1", "--retry-after", "3", "--token", TOKEN, NULL},
         {429, 429, 429, 429, 429, 429, 429}, 1},
        {{"--garbage-rate", "1", NULL}, {200, 200, 200, 200, 200, 200, 200}, 0},
    };
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        struct mock_proc m = {0};
        CU_ASSERT_EQUAL_FATAL(mock_start(&m, runs[k].args), 0);
        for (int d = 0; d < N_D; d++) {
            struct resp r;
            CU_ASSERT_EQUAL(send_example(&m, d, &imgs[0], "a.png", &r), 0);
            CU_ASSERT_EQUAL(r.status, runs[k].status[d]);
            const char *ra = resp_header(&r, "Retry-After");
            CU_ASSERT(runs[k].retry_after ? ra && !strcmp(ra, "3") : ra == NULL);
            char err[200];
            int strict = json_check(r.body, r.len, err, sizeof err) == 0;
            if (k == 2) {
                CU_ASSERT(!strict);
            } else if (d == MOCK_D_MULTIPART && r.status == 500) {
                const char *ct = resp_header(&r, "Content-Type");
                CU_ASSERT(!strcmp(r.body, "Internal Server Error") && ct && strstr(ct, "text/plain"));
            } else {
                CU_ASSERT(strict);
            }
            if (k == 0 && d == MOCK_D_HF)
                expect_error("hf loading", &r, 503,
                             (const char *[]){"error=Model classifier is currently loading", "estimated_time#3", NULL});
            if (k == 0 && d == MOCK_D_TORCHSERVE)
                expect_error("torchserve fault", &r, 503, (const char *[]){"message=Prediction failed", NULL});
            if (k == 1 && d == MOCK_D_OPENAI)
                expect_error("openai 429", &r, 429, (const char *[]){"error.code=rate_limit_exceeded", NULL});
            resp_free(&r);
        }
        cJSON *s = mock_stats(&m);
        CU_ASSERT_EQUAL(mock_stat(s, "dialects.hf-endpoint.faults"), 1);
        CU_ASSERT_EQUAL(mock_stat(s, "faults.error"), 0); /* the seed's counters stay the seed's */
        cJSON_Delete(s);
        CU_ASSERT_EQUAL(mock_stop(&m), 0);
    }
    /* latency: --latency-ms for all endpoints delays the dialects too */
    struct mock_proc m = {0};
    const char *args[] = {"--latency-ms", "120", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, args), 0);
    struct resp r;
    CU_ASSERT_EQUAL(send_example(&m, MOCK_D_HF, &imgs[0], "a.png", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT(r.secs >= 0.115);
    int st;
    size_t alen;
    char *want = mock_dialect_answer(MOCK_D_HF, imgs[0].p, imgs[0].n, NULL, &st, &alen);
    CU_ASSERT(r.len == alen && !memcmp(r.body, want, alen));
    free(want);
    resp_free(&r);
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
}

/* The help names every dialect path and the token options. */
static void test_help(void)
{
    char out[8192];
    const char *argv[] = {mock_bin(), "--help", NULL};
    CU_ASSERT_EQUAL(run_cmd(argv, tmo(10), out, sizeof out), 0);
    for (int d = 0; d < N_D; d++)
        CU_ASSERT_PTR_NOT_NULL(strstr(out, mock_dialect_path(d)));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--token T"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--token-file F"));
}

/* Last: the shared server stops cleanly (under ASan, also without a leak). */
static void test_stop_shared(void)
{
    CU_ASSERT_EQUAL_FATAL(shared_server(), 0);
    CU_ASSERT_EQUAL(mock_stop(&srv), 0);
}

static int suite_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int suite_cleanup(void)
{
    if (srv.pid > 0)
        mock_stop(&srv);
    for (size_t i = 0; i < n_imgs; i++)
        free(imgs[i].p);
    n_imgs = 0;
    for (int d = 0; d < N_D; d++) {
        cJSON_Delete(ex[d].doc);
        free(ex[d].body_template);
        memset(&ex[d], 0, sizeof ex[d]);
    }
    curl_global_cleanup();
    return 0;
}

int register_mock_dialects(void)
{
    CU_pSuite s = CU_add_suite("mock_dialects", suite_init, suite_cleanup);
    if (!s)
        return -1;
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"names, paths, routes", test_names_routes},
        {"MIME type by magic number", test_mime},
        {"every answer is strict JSON and gives the predicted cell", test_cells_match_answers},
        {"one model behind every dialect", test_same_model},
        {"numbers as each writer prints them", test_number_forms},
        {"the examples' requests get the predicted bytes", test_correct_requests},
        {"request variants the real servers take", test_request_variants},
        {"bad base64 and bad shapes", test_bad_base64},
        {"wrong Content-Type", test_bad_content_type},
        {"multipart framing", test_bad_multipart},
        {"tokens: missing, wrong, right", test_tokens},
        {"--token-file is re-read on every request", test_token_file},
        {"wrong paths and methods; the seed's endpoints unchanged", test_paths_methods},
        {"/stats counts the dialects apart", test_stats},
        {"faults and latency in each server's shape", test_faults},
        {"--help", test_help},
        {"SIGTERM: the server exits 0", test_stop_shared},
    };
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
