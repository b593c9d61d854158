/* Suite "memo": a stage's identity in the answer store (chain/memo.h: memo_ident). What decides
 * the answer changes it (the resolved URL, ${VAR} in it included; the body, form or seed fields;
 * "input"; "result"; "error"; "version"); what does not leaves it (the name, headers, timeouts,
 * retries, limits, "when", the batch size); its description never holds an expanded ${VAR}. And
 * the hook of annotate cache prune --keep-pipelines computes the same identities as a run. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/memo.h"
#include "check.h"
#include "util.h"

#define BASE "http://127.0.0.1:8080"

/* The identity of stage s of a pipeline given as the stages' JSON; 0 or -1. */
static int ident_of(const char *stages, int s, struct store_ident *id)
{
    char text[4096], err[512];
    snprintf(text, sizeof text, "{\"stages\": [%s]}", stages);
    struct pipeline *p = NULL;
    int rc = pipeline_parse(text, strlen(text), "t.json", &p, err, sizeof err) ||
             pipeline_resolve_urls(p, BASE, err, sizeof err) || memo_ident(p, s, id);
    if (rc)
        fprintf(stderr, "\n    %s: %s\n", stages, err);
    pipeline_free(p);
    return rc ? -1 : 0;
}

static int same(const char *a, const char *b, int s)
{
    struct store_ident x, y;
    if (ident_of(a, s, &x) || ident_of(b, s, &y))
        return -1;
    return !memcmp(x.id, y.id, STORE_IDENT_BYTES);
}

#define M "{\"name\": \"m\", \"url\": \"/m\""

static void test_what_changes_it(void)
{
    static const char *const other[] = {
        M ", \"version\": \"2\"}",
        "{\"name\": \"m\", \"url\": \"/n\"}",
        "{\"name\": \"m\", \"url\": \"http://other:8080/m\"}",
        M ", \"fields\": {\"k\": 1}}",
        M ", \"body\": {\"x\": \"{{image}}\"}}",
        M ", \"body\": \"{{image.bytes}}\"}",
        M ", \"form\": {\"file\": \"{{image.file}}\"}}",
        M ", \"result\": \".result.label\"}",
        M ", \"error\": \".error\"}",
        M ", \"batch\": {\"size\": 4}}",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        CHECKF(same(M "}", other[i], 0) == 0, "%s has the identity of the plain stage", other[i]);
    CHECKF(same(M ", \"version\": \"1\"}", M ", \"version\": \"2\"}", 0) == 0, "a version bump kept the identity");
    /* A form's part names and values, a body's text: each is part of it. */
    CHECKF(same(M ", \"form\": {\"f\": \"{{image.file}}\"}}", M ", \"form\": {\"g\": \"{{image.file}}\"}}", 0) == 0,
           "a form part's name is not in the identity");
    CHECKF(same(M ", \"body\": {\"x\": \"{{image}}\", \"t\": 1}}", M ", \"body\": {\"x\": \"{{image}}\", \"t\": 2}}", 0) == 0,
           "a body's fixed text is not in the identity");
}

static void test_what_does_not(void)
{
    static const char *const alike[] = {
        "{\"name\": \"renamed\", \"url\": \"/m\"}",
        M ", \"headers\": {\"Authorization\": \"Bearer x\"}}",
        M ", \"timeout_ms\": 100, \"retries\": 9}",
        M ", \"concurrency\": 3, \"max_rps\": 5}",
        M ", \"csv\": false}",
        "{\"name\": \"m\", \"url\": [\"/m\", \"http://replica:9/m\"]}",
    };
    for (size_t i = 0; i < sizeof alike / sizeof alike[0]; i++)
        CHECKF(same(M "}", alike[i], 0) == 1, "%s changed the identity", alike[i]);
    CHECKF(same(M ", \"batch\": {\"size\": 4}}", M ", \"batch\": {\"size\": 64, \"max_wait_ms\": 5}}", 0) == 1,
           "the batch size changed the identity");
    /* "when" and which earlier stage a reference names are not the question: the result sent is
     * in the request's key. */
    const char *a = "{\"name\": \"a\", \"url\": \"/a\"}, {\"name\": \"b\", \"url\": \"/b\"},"
                    "{\"name\": \"c\", \"url\": \"/c\", \"fields\": {\"r\": {\"result_of\": \"a\"}}, \"when\": [\"a\"]}";
    const char *b = "{\"name\": \"a\", \"url\": \"/a\"}, {\"name\": \"b\", \"url\": \"/b\"},"
                    "{\"name\": \"c\", \"url\": \"/c\", \"fields\": {\"r\": {\"result_of\": \"b\"}}}";
    CHECKF(same(a, b, 2) == 1, "the stage a result comes from, or \"when\", changed the identity");
}

static void test_secrets_and_description(void)
{
    setenv("MEMO_TEST_KEY", "s3cr3t-value", 1);
    struct store_ident x, y;
    CU_ASSERT_EQUAL_FATAL(ident_of("{\"name\": \"v\", \"url\": \"/v?key=${MEMO_TEST_KEY}\", \"version\": \"b7\"}", 0, &x), 0);
    CHECKF(!strstr(x.url, "s3cr3t") && strstr(x.url, "${MEMO_TEST_KEY}") && !strcmp(x.name, "v") &&
               !strcmp(x.version, "b7"),
           "the description: name %s, url %s, version %s", x.name, x.url, x.version);
    setenv("MEMO_TEST_KEY", "another", 1);
    CU_ASSERT_EQUAL_FATAL(ident_of("{\"name\": \"v\", \"url\": \"/v?key=${MEMO_TEST_KEY}\", \"version\": \"b7\"}", 0, &y), 0);
    CHECKF(memcmp(x.id, y.id, STORE_IDENT_BYTES) != 0, "the URL's ${VAR} is not in the identity");
    unsetenv("MEMO_TEST_KEY");
}

static void test_version_key(void)
{
    static const char *const bad[] = {"\"\"", "3", "\"a\\u0001b\"", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512], err[512];
        snprintf(text, sizeof text, "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"version\": %s}]}", bad[i]);
        struct pipeline *p = NULL;
        int rc = pipeline_parse(text, strlen(text), "t.json", &p, err, sizeof err);
        CHECKF(rc != 0 && strstr(err, "\"version\""), "\"version\": %s: %s", bad[i], rc ? err : "accepted");
        pipeline_free(p);
    }
}

/* The hook of annotate cache prune --keep-pipelines: the identities a run computes. */
static void test_prune_hook(void)
{
    char dir[512], path[600], err[512];
    CU_ASSERT_FATAL(make_tmpdir(dir, sizeof dir, "memo") == 0);
    snprintf(path, sizeof path, "%s/p.json", dir);
    const char *text = "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}, {\"name\": \"n\", \"url\": \"http://h/n\"}]}";
    CU_ASSERT_FATAL(write_file(path, text, strlen(text)) == 0);
    struct store_ident *ids = NULL, want;
    int n = 0;
    CU_ASSERT_FATAL(memo_pipeline_idents(NULL, path, NULL, &ids, &n, err, sizeof err) == 0);
    CU_ASSERT_FATAL(n == 2);
    CU_ASSERT_FATAL(ident_of("{\"name\": \"m\", \"url\": \"/m\"}", 0, &want) == 0);
    CHECKF(!memcmp(ids[0].id, want.id, STORE_IDENT_BYTES), "the default --server is not a run's");
    free(ids);
    CU_ASSERT_FATAL(memo_pipeline_idents(NULL, path, "http://elsewhere:1", &ids, &n, err, sizeof err) == 0);
    CHECKF(n == 2 && memcmp(ids[0].id, want.id, STORE_IDENT_BYTES) != 0, "--server is not used");
    free(ids);
    CHECKF(memo_pipeline_idents(NULL, dir, NULL, &ids, &n, err, sizeof err) == -1 && err[0], "a folder as a pipeline");
    remove(path);
    remove(dir);
}

int register_memo(void)
{
    CU_pSuite s = CU_add_suite("memo", NULL, NULL);
    if (!s || !CU_add_test(s, "what changes a stage's identity", test_what_changes_it) ||
        !CU_add_test(s, "what does not", test_what_does_not) ||
        !CU_add_test(s, "a ${VAR} in the URL: hashed, never described", test_secrets_and_description) ||
        !CU_add_test(s, "the \"version\" key", test_version_key) ||
        !CU_add_test(s, "prune --keep-pipelines: a run's identities", test_prune_hook))
        return -1;
    return 0;
}
