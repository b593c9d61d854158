/* Suites "template", "expr" and "expr concurrent": request bodies compiled from a pipeline's
 * "body" / "form" (src/pipeline/template.c) and filled by the chain, the expressions answers are read with
 * (src/pipeline/expr.c: plain paths and libjq), and what chain_read_answer makes of an answer under a
 * stage's "result", "error", "retry_if", "retry_after" and "retry_on". No network: requests are
 * made with chain_next and read with chain_req_read, answers are written by hand. */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "chain/chain.h"
#include "endpoint/shared.h"
#include "pipeline/expr.h"
#include "pipeline/pipeline.h"
#include "pipeline/template.h"

#include "check.h"
#include "e2e.h"
#include "mock/dialects.h"
#include "util.h"
#include "proc.h"

static struct config CFG;
static struct shared_page SHARED;
static struct run RUN;
static atomic_int RUN_STOP;

static const struct run *run_of(const struct pipeline *p)
{
    RUN.cfg = &CFG;
    RUN.stop = &RUN_STOP;
    RUN.p = p;
    RUN.shared = &SHARED;
    return &RUN;
}

static struct pipeline *parse(const char *text, char *err, size_t errlen)
{
    struct pipeline *p = NULL;
    if (pipeline_parse(text, strlen(text), "t.json", &p, err, errlen))
        return NULL;
    return p;
}

/* The error pipeline_parse gives for text ("" when it parses). */
static const char *parse_error(const char *text)
{
    static char err[600];
    struct pipeline *p = parse(text, err, sizeof err);
    if (p) {
        pipeline_free(p);
        return "";
    }
    return err;
}

/* An item for path, with the given bytes loaded as the load stage would (both forms). */
static struct item *loaded(const struct pipeline *p, const char *path, const char *bytes, size_t n)
{
    struct item *it = item_new(path, strlen(path), 0, p->n, 1);
    it->b64 = malloc(b64_encoded_len(n) + 1);
    it->b64_len = b64_encode(bytes, n, it->b64);
    it->raw = malloc(n ? n : 1);
    memcpy(it->raw, bytes, n);
    it->raw_len = n;
    it->mime = "image/png";
    return it;
}

static char *whole(const struct filled *f, size_t chunk)
{
    char *buf = malloc(f->total + chunk + 1);
    size_t pos = 0, n = 0, got;
    while ((got = filled_read(f, &pos, buf + n, chunk)) > 0)
        n += got;
    buf[n] = 0;
    return buf;
}

/* Every placeholder, whole and inside a string, with a path that needs escaping. */
static void test_placeholders(void)
{
    char err[600];
    struct pipeline *p = parse("{\"stages\": ["
                               "{\"name\": \"a\", \"url\": \"/a\"},"
                               "{\"name\": \"s\", \"url\": \"/s\"},"
                               "{\"name\": \"b\", \"url\": \"/b\", \"body\": {\"img\": \"{{image}}\", \"url\": "
                               "\"data:{{image.mime}};base64,{{image}}\", \"m\": \"{{image.mime}}\", \"p\": "
                               "\"{{path}}\", \"n\": \"{{name}}\", \"i\": \"{{index}}\", \"a\": \"{{a}}\", \"in\": "
                               "\"<{{a}}|{{s}}>\", \"k\": [1, true, null, {\"x\": \"y\"}]}}]}",
                               err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CHECKF(p->stages[2].dep_mask == 3, "dep_mask %llx", (unsigned long long)p->stages[2].dep_mask);
    CU_ASSERT_EQUAL(pipeline_needs(p), NEED_B64);
    struct item *it = loaded(p, "dir/q\"uo\nte.png", "\x89PNG", 4);
    it->results[0] = cJSON_CreateRaw("{\"k\":\"v\\\"q\",\"n\":1e999}");
    it->results[1] = cJSON_CreateRaw("\"he said \\\"hi\\\"\"");
    it->state[0] = it->state[1] = ST_DONE;
    struct chain_req *r = chain_next(run_of(p), it);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->stage, 2);
    char *body = whole(&r->body, 3);
    const char *want = "{\"img\":\"iVBORw==\",\"url\":\"data:image/png;base64,iVBORw==\",\"m\":\"image/png\","
                       "\"p\":\"dir/q\\\"uo\\nte.png\",\"n\":\"q\\\"uo\\nte.png\",\"i\":0,"
                       "\"a\":{\"k\":\"v\\\"q\",\"n\":1e999},"
                       "\"in\":\"<{\\\"k\\\":\\\"v\\\\\\\"q\\\",\\\"n\\\":1e999}|he said \\\"hi\\\">\","
                       "\"k\":[1,true,null,{\"x\":\"y\"}]}";
    CHECKF(!strcmp(body, want), "body\n%s\nwant\n%s", body, want);
    CU_ASSERT_EQUAL(r->body.total, strlen(want));
    char *again = whole(&r->body, 4096);
    CU_ASSERT_STRING_EQUAL(again, body); /* read again from the start: a retry sends the same */
    free(again);
    free(body);
    chain_req_free(r);
    it->in_flight = 0;
    item_free(it);
    pipeline_free(p);
}

/* The seed body is the seed's, byte for byte, fields and result_of included. */
static void test_seed_body(void)
{
    char err[600];
    struct pipeline *p = parse("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}, {\"name\": \"b\", \"url\": \"/b\", "
                               "\"fields\": {\"x\": null, \"y\": {\"result_of\": \"a\"}, \"z\": \"q\\\"\"}}]}",
                               err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    struct item *it = loaded(p, "d/x.png", "abc", 3);
    it->results[0] = cJSON_CreateRaw("{\"id\":12345678901234567890}");
    it->state[0] = ST_DONE;
    struct chain_req *r = chain_next(run_of(p), it);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    char *body = whole(&r->body, 1);
    CU_ASSERT_STRING_EQUAL(body, "[{\"im_str\":\"YWJj\",\"x\":null,\"y\":{\"id\":12345678901234567890},\"z\":\"q\\\"\"}]");
    free(body);
    chain_req_free(r);
    it->in_flight = 0;
    item_free(it);
    pipeline_free(p);
}

/* A raw body is the bytes, with the image's type; a form has its parts; neither makes base64. */
static void test_raw_and_form(void)
{
    char err[600];
    struct pipeline *p = parse("{\"defaults\": {\"headers\": {\"Content-Type\": \"application/json\"}}, \"stages\": ["
                               "{\"name\": \"raw\", \"url\": \"/r\", \"body\": \"{{image.bytes}}\"},"
                               "{\"name\": \"form\", \"url\": \"/f\", \"form\": {\"file\": \"{{image.file}}\", "
                               "\"note\": \"{{name}} at {{index}}\", \"t\": \"0.5\"}},"
                               "{\"name\": \"typed\", \"url\": \"/t\", \"body\": \"{{image.bytes}}\", "
                               "\"headers\": {\"content-type\": \"image/x-mine\"}}]}",
                               err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(pipeline_needs(p), NEED_BYTES); /* nothing is base64-encoded */
    CU_ASSERT(p->stages[0].type_of_image);
    CU_ASSERT(!p->stages[2].type_of_image);
    CU_ASSERT_EQUAL_FATAL(pipeline_resolve(p, "http://127.0.0.1:1", err, sizeof err), 0);
    for (int s = 0; s < 2; s++) /* the defaults' JSON type is not a raw or multipart body's */
        for (const struct curl_slist *l = pipeline_headers(&p->stages[s], NULL); l; l = l->next)
            CHECKF(strncasecmp(l->data, "Content-Type", 12), "stage %d sends %s", s, l->data);
    const char bytes[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    struct item *it = loaded(p, "d/ph\"oto.png", bytes, sizeof bytes - 1);
    struct chain_req *r = chain_next(run_of(p), it);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->body.total, sizeof bytes - 1);
    char *b = whole(&r->body, 5);
    CU_ASSERT(memcmp(b, bytes, sizeof bytes - 1) == 0);
    free(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->next);
    struct chain_req *f = r->next;
    CU_ASSERT_EQUAL_FATAL(f->n_parts, 3);
    CU_ASSERT_EQUAL(f->parts[0].total, sizeof bytes - 1);
    char *note = whole(&f->parts[1], 2), *t = whole(&f->parts[2], 2);
    CU_ASSERT_STRING_EQUAL(note, "ph\"oto.png at 0"); /* a form's text is not JSON-escaped */
    CU_ASSERT_STRING_EQUAL(t, "0.5");
    CU_ASSERT_STRING_EQUAL(f->mime, "image/png");
    free(note);
    free(t);
    for (struct chain_req *x = r, *n; x; x = n) {
        n = x->next;
        chain_req_free(x);
    }
    it->in_flight = 0;
    item_free(it);
    pipeline_free(p);
}

/* In an "each" stage {{image.bytes}} is the element decoded from base64, sent with its own type;
 * an element that is not base64 fails the item, saying so. */
static void test_each_bytes(void)
{
    char err[600];
    struct pipeline *p = parse("{\"stages\": [{\"name\": \"det\", \"url\": \"/d\"}, {\"name\": \"crop\", \"url\": \"/c\", "
                               "\"input\": {\"each\": \"det\", \"items\": \".crops[]\"}, \"body\": \"{{image.bytes}}\"}]}",
                               err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(pipeline_needs(p), NEED_B64); /* the image itself only goes to det, as base64 */
    struct item *it = loaded(p, "x.png", "a", 1);
    it->results[0] = cJSON_CreateRaw("{\"crops\":[\"/9j/4AAQ\",\"R0lGODlh\"]}"); /* JPEG and GIF heads */
    it->state[0] = ST_DONE;
    struct chain_req *r = chain_next(run_of(p), it);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->next);
    char *b0 = whole(&r->body, 2), *b1 = whole(&r->next->body, 2);
    CU_ASSERT(r->body.total == 6 && !memcmp(b0, "\xff\xd8\xff\xe0\x00\x10", 6));
    CU_ASSERT(r->next->body.total == 6 && !memcmp(b1, "GIF89a", 6));
    CU_ASSERT_STRING_EQUAL(r->mime, "image/jpeg");
    CU_ASSERT_STRING_EQUAL(r->next->mime, "image/gif");
    free(b0);
    free(b1);
    chain_req_free(r->next);
    chain_req_free(r);
    it->in_flight = 0;
    item_free(it);
    it = loaded(p, "y.png", "a", 1);
    it->results[0] = cJSON_CreateRaw("{\"crops\":[\"not base64!\"]}");
    it->state[0] = ST_DONE;
    CU_ASSERT_PTR_NULL(chain_next(run_of(p), it));
    CHECKF(it->status == ITEM_FAILED && it->error && strstr(it->error, "crop[0]: the element is not base64"), "%s",
           it->error ? it->error : "(not failed)");
    item_free(it);
    pipeline_free(p);
}

/* What is refused at load, and that the message names the file, the stage and the problem. */
static void test_compile_errors(void)
{
    static const struct {
        const char *stages, *want;
    } cases[] = {
        {"{\"name\": \"a\", \"url\": \"/a\", \"body\": {\"x\": \"{{imgae}}\"}}", "placeholder {{imgae}}: unknown placeholder"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"body\": {\"x\": \"{{b}}\"}}, {\"name\": \"b\", \"url\": \"/b\"}",
         "\"b\" is a later stage"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"body\": {\"x\": \"{{a}}\"}}", "cannot send its own result"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"body\": {\"x\": \"{{image.bytes}}\"}}", "cannot go inside a JSON body"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"body\": [\"x{{image.bytes}}\"]}", "cannot go inside a JSON body"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"body\": {\"f\": \"{{image.file}}\"}}", "belongs in \"form\""},
        {"{\"name\": \"a\", \"url\": \"/a\", \"form\": {\"f\": \"{{image.file}}\", \"g\": \"{{image.file}}\"}}",
         "one is enough"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"form\": {\"f\": 1}}", "must be a string"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"form\": {\"f\": \"{{image.file}}\"}, \"headers\": {\"Content-Type\": "
         "\"text/plain\"}}",
         "sets its own Content-Type"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"body\": {}, \"fields\": {\"x\": 1}}", "\"fields\" belongs to the seed's body"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"body\": {}, \"form\": {\"f\": \"x\"}}", "give one"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"body\": {\"k\": \"${ANNOTATE_TEST_UNSET_VAR}\"}}",
         "${ANNOTATE_TEST_UNSET_VAR}, which is not set"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"result\": \".result[\"}", "\"result\": jq: syntax error"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"error\": \"nosuchfn(1)\"}", "\"error\": jq: nosuchfn/1 is not defined"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"result\": 3}", "must be a jq expression"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"when\": \".b.x\"}, {\"name\": \"b\", \"url\": \"/b\"}",
         "\"when\" names \"b\", which is not an earlier stage"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"retry_on\": [503, 42]}", "status code from 100 to 599"},
        {"{\"name\": \"a\", \"url\": \"/a\", \"input\": {\"each\": \"a\", \"items\": \".[]\"}}", "not an earlier stage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[1200];
        snprintf(text, sizeof text, "{\"stages\": [%s]}", cases[i].stages);
        const char *err = parse_error(text);
        CHECKF(strstr(err, cases[i].want) && strstr(err, "t.json: stage "), "case %zu: %s\nwant: %s", i, err,
               cases[i].want);
    }
}

/* ${VAR} in a body and a URL: expanded where sent, never in what is shown. */
static void test_env(void)
{
    setenv("ANNOTATE_TEST_KEY", "s3cr et", 1);
    char err[600];
    struct pipeline *p = parse("{\"stages\": [{\"name\": \"a\", \"url\": \"/v1/x?key=${ANNOTATE_TEST_KEY}\", "
                               "\"body\": {\"k\": \"${ANNOTATE_TEST_KEY}\", \"t\": \"a ${ANNOTATE_TEST_KEY} b\"}}]}",
                               err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(pipeline_resolve(p, "http://h:1", err, sizeof err), -1); /* a blank is no URL */
    CHECKF(strstr(err, "${ANNOTATE_TEST_KEY}") && !strstr(err, "s3cr"), "%s", err);
    pipeline_free(p);
    setenv("ANNOTATE_TEST_KEY", "s3cret", 1);
    p = parse("{\"stages\": [{\"name\": \"a\", \"url\": \"/v1/x?key=${ANNOTATE_TEST_KEY}\", "
              "\"body\": {\"k\": \"${ANNOTATE_TEST_KEY}\", \"t\": \"a ${ANNOTATE_TEST_KEY} b\"}}]}",
              err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL_FATAL(pipeline_resolve(p, "http://h:1/", err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(p->stages[0].full_url, "http://h:1/v1/x?key=s3cret");
    CU_ASSERT_STRING_EQUAL(p->stages[0].shown_url, "http://h:1/v1/x?key=${ANNOTATE_TEST_KEY}");
    struct item *it = loaded(p, "x.png", "a", 1);
    struct chain_req *r = chain_next(run_of(p), it);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    char *b = whole(&r->body, 7);
    CU_ASSERT_STRING_EQUAL(b, "{\"k\":\"s3cret\",\"t\":\"a s3cret b\"}");
    free(b);
    chain_req_free(r);
    it->in_flight = 0;
    item_free(it);
    pipeline_free(p);
    unsetenv("ANNOTATE_TEST_KEY");
}

/* A path that is not UTF-8 cannot go into JSON: the item fails and says so (it is not mangled). */
static void test_non_utf8_path(void)
{
    char err[600];
    struct pipeline *p = parse("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"body\": {\"p\": \"{{path}}\"}}]}",
                               err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    struct item *it = loaded(p, "d/\xff\xfe.png", "a", 1);
    CU_ASSERT_PTR_NULL(chain_next(run_of(p), it));
    CU_ASSERT_EQUAL(it->status, ITEM_FAILED);
    CHECKF(it->error && strstr(it->error, "not valid UTF-8"), "%s", it->error ? it->error : "(none)");
    item_free(it);
    pipeline_free(p);
}

/* ---- expressions ---- */

struct outs {
    char text[8][256];
    int n;
};

static int collect(void *arg, const char *t, size_t n)
{
    struct outs *o = arg;
    if (o->n < 8)
        snprintf(o->text[o->n], sizeof o->text[0], "%.*s", (int)n, t);
    o->n++;
    return 0;
}

static void test_expr(void)
{
    char err[300];
    struct expr e;
    struct outs o = {0};
    const char *ans = "{\"a\": 1.000000000000000000001, \"b\": [\"x\", \"y\"], \"c\": 10000000000000001}";
    /* a plain path: the exact bytes */
    CU_ASSERT_EQUAL_FATAL(expr_compile(&e, ".a", err, sizeof err), 0);
    CU_ASSERT(e.plain);
    CU_ASSERT_EQUAL(expr_run(&e, ans, strlen(ans), collect, &o, err, sizeof err), 1);
    CU_ASSERT_STRING_EQUAL(o.text[0], "1.000000000000000000001");
    expr_free(&e);
    /* jq: its own text (numbers through doubles: jq 1.6) and every output */
    CU_ASSERT_EQUAL_FATAL(expr_compile(&e, ".b[], .c", err, sizeof err), 0);
    CU_ASSERT(!e.plain);
    o.n = 0;
    CU_ASSERT_EQUAL(expr_run(&e, ans, strlen(ans), collect, &o, err, sizeof err), 3);
    CU_ASSERT_STRING_EQUAL(o.text[0], "\"x\"");
    CU_ASSERT_STRING_EQUAL(o.text[1], "\"y\"");
    CU_ASSERT_STRING_EQUAL(o.text[2], "1e+16"); /* jq 1.6: a double */
    expr_free(&e);
    /* a run-time error is the message, and the state can be run again afterwards */
    CU_ASSERT_EQUAL_FATAL(expr_compile(&e, ".b.x", err, sizeof err), 0);
    o.n = 0; /* as a plain path, a step into a value of another kind names nothing */
    CU_ASSERT_EQUAL(expr_run(&e, ans, strlen(ans), collect, &o, err, sizeof err), 0);
    expr_free(&e);
    CU_ASSERT_EQUAL_FATAL(expr_compile(&e, ".b | .x", err, sizeof err), 0);
    for (int k = 0; k < 3; k++) {
        o.n = 0;
        CU_ASSERT_EQUAL(expr_run(&e, ans, strlen(ans), collect, &o, err, sizeof err), -1);
        CHECKF(strstr(err, "jq: Cannot index array with string \"x\""), "%s", err);
    }
    expr_free(&e);
    /* fromjson: a VLM's reply */
    CU_ASSERT_EQUAL_FATAL(expr_compile(&e, ".c | fromjson", err, sizeof err), 0);
    const char *vlm = "{\"c\": \"{\\\"label\\\": \\\"cat\\\", \\\"score\\\": 0.5}\"}";
    o.n = 0;
    CU_ASSERT_EQUAL(expr_run(&e, vlm, strlen(vlm), collect, &o, err, sizeof err), 1);
    CU_ASSERT_STRING_EQUAL(o.text[0], "{\"label\":\"cat\",\"score\":0.5}");
    expr_free(&e);
    CU_ASSERT(!expr_text_truthy("null", 4) && !expr_text_truthy(" false ", 7) && expr_text_truthy("0", 1) &&
              expr_text_truthy("\"\"", 2));
}

/* chain_read_answer under a stage's expressions. */
static void test_read_answer(void)
{
    char err[600];
    struct pipeline *p = parse(
        "{\"stages\": [{\"name\": \"v\", \"url\": \"/v\", \"result\": \".responses[0].labels\", "
        "\"error\": \".error.message // .responses[0].error.message\", "
        "\"retry_if\": \".error.code == \\\"Throttling\\\"\", \"retry_after\": \".estimated_time\"},"
        "{\"name\": \"j\", \"url\": \"/j\", \"result\": \".x | fromjson\", \"retry_on\": [404]},"
        "{\"name\": \"m\", \"url\": \"/m\", \"result\": \".[]\"}]}",
        err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    static const struct {
        int stage;
        long status;
        const char *body;
        enum answer_kind want;
        const char *err; /* in the reason, or the result's text on ANSWER_OK */
        long ra;
    } cases[] = {
        {0, 200, "{\"responses\":[{\"labels\":[{\"d\":\"Cat\",\"s\":0.98000000000000000001}]}]}", ANSWER_OK,
         "[{\"d\":\"Cat\",\"s\":0.98000000000000000001}]", -1},
        {0, 200, "{\"responses\":[{\"error\":{\"code\":3,\"message\":\"Bad image data.\"}}]}", ANSWER_FINAL,
         "Bad image data.", -1},
        {0, 400, "{\"error\":{\"code\":\"Throttling\",\"message\":\"slow down\"},\"estimated_time\":7.2}", ANSWER_RETRY,
         "HTTP 400: slow down", 8},
        {0, 400, "{\"error\":{\"code\":400,\"message\":\"API key not valid\"}}", ANSWER_FINAL,
         "HTTP 400: API key not valid", -1},
        {0, 503, "{\"error\":{\"message\":\"loading\"},\"estimated_time\":20}", ANSWER_BUSY, "HTTP 503: loading", 20},
        {0, 503, "<html>busy</html>", ANSWER_BUSY, "HTTP 503: <html>busy</html>", -1},
        {0, 200, "{\"responses\":[{}]}", ANSWER_RETRY, "the answer has nothing at .responses[0].labels", -1},
        {1, 200, "{\"x\":\"{\\\"a\\\":1}\"}", ANSWER_OK, "{\"a\":1}", -1},
        {1, 200, "{\"x\":\"not json\"}", ANSWER_RETRY, "\"result\" failed: jq: ", -1},
        {1, 404, "nope", ANSWER_RETRY, "HTTP 404: nope", -1},
        {1, 503, "busy", ANSWER_FINAL, "HTTP 503: busy", -1},
        {2, 200, "[1]", ANSWER_OK, "1", -1},
        {2, 200, "[]", ANSWER_RETRY, "\"result\" yielded nothing", -1},
        {2, 200, "[1,2]", ANSWER_RETRY, "yielded 2 values, not one", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct chain_answer a = {.cc = CURLE_OK, .status = cases[i].status, .body = cases[i].body,
                                 .len = strlen(cases[i].body), .retry_after_s = -1};
        cJSON *res = NULL;
        long ra;
        char why[600] = "";
        enum answer_kind o = chain_read_answer(&p->stages[cases[i].stage], &a, &res, &ra, why, sizeof why);
        CHECKF(o == cases[i].want, "case %zu: kind %d, want %d (%s)", i, o, cases[i].want, why);
        if (o == ANSWER_OK)
            CHECKF(cJSON_IsRaw(res) && !strcmp(res->valuestring, cases[i].err), "case %zu: result %s", i,
                   res ? res->valuestring : "(none)");
        else
            CHECKF(strstr(why, cases[i].err) != NULL, "case %zu: reason '%s', want '%s'", i, why, cases[i].err);
        CHECKF(ra == cases[i].ra, "case %zu: retry_after %ld, want %ld", i, ra, cases[i].ra);
        cJSON_Delete(res);
    }
    pipeline_free(p);
}

/* A jq "when" over earlier results, and "items" for an each stage. */
static void test_when_and_items(void)
{
    char err[600];
    struct pipeline *p = parse("{\"stages\": [{\"name\": \"model_01\", \"url\": \"/1\"}, {\"name\": \"model_02\", "
                               "\"url\": \"/2\"}, {\"name\": \"gate\", \"url\": \"/g\", \"when\": "
                               "\".model_01.is_photo and .model_02.score > 0.5\"},"
                               "{\"name\": \"each\", \"url\": \"/e\", \"input\": {\"each\": \"model_01\", \"items\": "
                               "\".[\\\"sub-img\\\"][].img\"}, \"body\": {\"i\": \"{{index}}\", \"im\": \"{{image}}\"}}]}",
                               err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->stages[2].dep_mask, 3);
    CU_ASSERT_EQUAL(p->stages[3].dep_mask, 1);
    static const struct {
        const char *r1, *r2;
        int gate_runs;
        int n_each; /* -1: the item fails */
    } cases[] = {
        {"{\"is_photo\":true,\"sub-img\":[{\"img\":\"YQ==\"},{\"img\":\"Yg==\"}]}", "{\"score\":0.7}", 1, 2},
        {"{\"is_photo\":false,\"sub-img\":[]}", "{\"score\":0.7}", 0, 0},
        {"{\"is_photo\":true,\"sub-img\":[{\"img\":\"YQ==\"}]}", "{\"score\":0.2}", 0, 1},
        {"{\"is_photo\":true,\"sub-img\":[{\"img\":7}]}", "{\"score\":0.9}", 1, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct item *it = loaded(p, "x.png", "a", 1);
        it->results[0] = cJSON_CreateRaw(cases[i].r1);
        it->results[1] = cJSON_CreateRaw(cases[i].r2);
        it->state[0] = it->state[1] = ST_DONE;
        struct chain_req *r = chain_next(run_of(p), it);
        int gate = 0, each = 0;
        for (struct chain_req *x = r; x; x = x->next) {
            if (x->stage == 2)
                gate++;
            if (x->stage == 3) {
                char *b = whole(&x->body, 64), want[64];
                snprintf(want, sizeof want, "{\"i\":%d,\"im\":\"%s\"}", each, each ? "Yg==" : "YQ==");
                CHECKF(!strcmp(b, want), "case %zu: body %s, want %s", i, b, want);
                free(b);
                each++;
            }
        }
        if (cases[i].n_each < 0) {
            /* the stage fails (final), and the image's other stages go on: its row fails once all settle */
            const char *why = it->fails ? it->fails[3].why : NULL;
            CHECKF(why && strstr(why, "is not a string") && it->fails[3].final && each == 0, "case %zu: %s", i,
                   why ? why : "(stage 3 not failed)");
        } else {
            CHECKF(gate == cases[i].gate_runs, "case %zu: gate %d", i, gate);
            CHECKF(each == cases[i].n_each, "case %zu: %d each requests", i, each);
            CHECKF(it->state[2] == (cases[i].gate_runs ? ST_RUNNING : ST_SKIPPED), "case %zu: gate state %d", i,
                   it->state[2]);
        }
        for (struct chain_req *x = r, *n; x; x = n) {
            n = x->next;
            chain_req_free(x);
        }
        it->in_flight = 0;
        item_free(it);
    }
    pipeline_free(p);
}

/* ---- threads: one jq state per thread at a time ---- */

static struct expr SHARED_EXPR;

static void *jq_worker(void *arg)
{
    long id = (long)arg;
    int bad = 0;
    for (int k = 0; k < 400; k++) {
        char in[128], want[64], err[200];
        snprintf(in, sizeof in, "{\"x\": {\"v\": %ld, \"s\": \"t%d\"}}", id * 1000 + k, k);
        snprintf(want, sizeof want, "[%ld,\"t%d\"]", id * 1000 + k + 1, k);
        struct outs o = {0};
        if (expr_run(&SHARED_EXPR, in, strlen(in), collect, &o, err, sizeof err) != 1 || strcmp(o.text[0], want))
            bad++;
    }
    return (void *)(long)bad;
}

static void test_jq_threads(void)
{
    char err[200];
    CU_ASSERT_EQUAL_FATAL(expr_compile(&SHARED_EXPR, "[.x.v + 1, .x.s]", err, sizeof err), 0);
    pthread_t t[6];
    for (long i = 0; i < 6; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, jq_worker, (void *)i), 0);
    long bad = 0;
    for (int i = 0; i < 6; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    CU_ASSERT_EQUAL(bad, 0);
    expr_free(&SHARED_EXPR);
}

/* annotate itself (under TSan in make tsan) running jq expressions from many threads: the
 * openai-vision example (fromjson) with threads, and with curl-multi on two event loops. */
static void test_jq_in_annotate(void)
{
    struct mock_proc m = {0};
    const char *margs[] = {"--token", "tsan-tok", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "jqthreads", 60, 7), 0);
    setenv("OPENAI_API_KEY", "tsan-tok", 1);
    char cfg[1200];
    snprintf(cfg, sizeof cfg, "%s/openai-vision.json", examples_dir());
    static const char *const modes[][6] = {{"--strategy", "threads", "--workers", "6", NULL},
                                           {"--strategy", "curl-multi", "--loops", "2", "--concurrency", "16"}};
    for (int k = 0; k < 2; k++) {
        const char *extra[10] = {"--config", cfg};
        int n = 2;
        for (int j = 0; j < 6 && modes[k][j]; j++)
            extra[n++] = modes[k][j];
        extra[n] = NULL;
        char out[8192];
        int rc = e2e_run(out, sizeof out, tmo(120), t.root, t.csv, m.base_url, extra);
        if (rc != 0)
            show("jq in annotate", rc, out);
        CU_ASSERT_EQUAL(rc, 0);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
        CU_ASSERT_EQUAL(c.n, t.n);
        long bad = 0;
        for (size_t r = 0; r < c.n; r++) {
            size_t len;
            unsigned char *img = (unsigned char *)slurp(c.rows[r].f[0].s, &len);
            char *cell = NULL;
            const char *why;
            if (!img || mock_dialect_cell(MOCK_D_OPENAI, img, len, &cell, &why) != 0 || c.rows[r].n < 3 ||
                strcmp(c.rows[r].f[2].s, cell))
                bad++;
            free(cell);
            free(img);
        }
        CHECKF(bad == 0, "%s: %ld rows differ from the prediction", modes[k][1], bad);
        e2e_csv_free(&c);
    }
    unsetenv("OPENAI_API_KEY");
    e2e_tree_free(&t);
    mock_stop(&m);
}

/* Each example once, serially: make valgrind runs this suite with annotate under memcheck, so
 * the template, multipart and jq paths are checked for leaks and bad reads too. */
static void test_examples_serial(void)
{
    struct mock_proc m = {0};
    const char *margs[] = {"--token", "vg-tok", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "exserial", 4, 11), 0);
    setenv("OPENAI_API_KEY", "vg-tok", 1);
    setenv("VISION_KEY", "vg-tok", 1);
    for (int d = 0; d < MOCK_N_DIALECTS; d++) {
        char cfg[1200], out[8192];
        snprintf(cfg, sizeof cfg, "%s/%s.json", examples_dir(), mock_dialect_name(d));
        const char *extra[] = {"--config", cfg, "--strategy", "serial", NULL};
        int rc = e2e_run(out, sizeof out, tmo(120), t.root, t.csv, m.base_url, extra);
        if (rc != 0)
            show(mock_dialect_name(d), rc, out);
        CHECKF(rc == 0, "%s: exit %d", mock_dialect_name(d), rc);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
        CHECKF(c.n == t.n, "%s: %zu rows", mock_dialect_name(d), c.n);
        e2e_csv_free(&c);
    }
    unsetenv("OPENAI_API_KEY");
    unsetenv("VISION_KEY");
    e2e_tree_free(&t);
    mock_stop(&m);
}

int register_template(void)
{
    CU_pSuite s = CU_add_suite("template", NULL, NULL);
    if (!s || !CU_add_test(s, "every placeholder, whole and inside a string, escaped as JSON wants", test_placeholders) ||
        !CU_add_test(s, "the seed body is unchanged: im_str, fields, result_of", test_seed_body) ||
        !CU_add_test(s, "raw bytes with the image's type; multipart parts; no base64 made", test_raw_and_form) ||
        !CU_add_test(s, "each stage: {{image.bytes}} is the element decoded, with its own type", test_each_bytes) ||
        !CU_add_test(s, "mistakes refused at load, naming the file, the stage and the problem", test_compile_errors) ||
        !CU_add_test(s, "${VAR} in a body and a URL: sent expanded, shown as written", test_env) ||
        !CU_add_test(s, "a path that is not UTF-8 fails its item for a JSON body", test_non_utf8_path))
        return -1;
    CU_pSuite e = CU_add_suite("expr", NULL, NULL);
    if (!e || !CU_add_test(e, "plain paths give exact bytes; jq gives its text, errors and every output", test_expr) ||
        !CU_add_test(e, "result, error, retry_if, retry_after, retry_on on answers", test_read_answer) ||
        !CU_add_test(e, "a jq when over earlier results; each stage items from jq", test_when_and_items))
        return -1;
    CU_pSuite v = CU_add_suite("dialects serial", NULL, NULL);
    if (!v || !CU_add_test(v, "each example once, serially (under valgrind in make valgrind)", test_examples_serial))
        return -1;
    CU_pSuite c = CU_add_suite("expr concurrent", NULL, NULL);
    if (!c || !CU_add_test(c, "six threads share one expression's jq pool", test_jq_threads) ||
        !CU_add_test(c, "annotate runs jq from 6 threads, and from 2 curl-multi loops", test_jq_in_annotate))
        return -1;
    return 0;
}
