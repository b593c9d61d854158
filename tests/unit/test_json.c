/* Suite "json": the strict checker and plain paths on raw text (src/common/json.c). */
#include <CUnit/CUnit.h>
#include <string.h>

#include "common/json.h"

#include "check.h"

static void test_check(void)
{
    static const char *good[] = {
        "0", "-0", "1.5e+10", "1E-400", "1e999", "123456789012345678901234567890", "\"\"", "\"\\u0000\"",
        "\"\\ud83d\\ude00\"", "\"\\udc00\"", "\"\xe6\x97\xa5\"", "[]", "{}", " [ 1 , { \"a\" : null } ] \n", "true",
        "false", "null", "{\"a\":1,\"a\":2}",
    };
    static const char *bad[] = {
        "", " ", "01", "1.", ".5", "+1", "1e", "NaN", "Infinity", "0x10", "'a'", "\"a", "\"\\x\"", "\"\\u12\"",
        "\"\t\"", "\"\xff\"", "\"\xc0\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xe0\x80\x80\"", "[1,]", "{\"a\":1,}",
        "{a:1}", "{\"a\" 1}", "[1 2]", "1 2", "tru", "nul", "[", "{\"a\":1}x",
    };
    char err[200];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECKF(json_check(good[i], strlen(good[i]), err, sizeof err) == 0, "good %zu (%s): %s", i, good[i], err);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECKF(json_check(bad[i], strlen(bad[i]), err, sizeof err) != 0 && err[0], "bad %zu (%s) accepted", i, bad[i]);
    char deep[1200];
    memset(deep, '[', 600);
    memset(deep + 600, ']', 600);
    CU_ASSERT(json_check(deep, 1200, err, sizeof err) != 0 && strstr(err, "nested too deep"));
    CU_ASSERT(json_check(deep + 100, 1000, err, sizeof err) == 0); /* 500 deep is fine */
}

static void test_paths(void)
{
    static const char doc[] =
        "{\"result\": {\"a\": [10, 20.50, {\"b\": \"x\"}]}, \"sub-img\": [{\"img\": \"QQ==\"}],"
        " \"choices\": [{\"message\": {\"content\": \"{\\\"k\\\": 1}\"}}], \"k\\u00e9y\": 7, \"d\": 1, \"d\": 2}";
    static const struct {
        const char *path, *want; /* want NULL: names nothing */
    } cases[] = {
        {".", NULL},
        {".result", "{\"a\": [10, 20.50, {\"b\": \"x\"}]}"},
        {".result.a", "[10, 20.50, {\"b\": \"x\"}]"},
        {".result.a[1]", "20.50"},
        {".result.a[2].b", "\"x\""},
        {".result.a[3]", NULL},
        {".[\"sub-img\"][0].img", "\"QQ==\""},
        {".[\"sub-img\"][0][\"img\"]", "\"QQ==\""},
        {".choices[0].message.content", "\"{\\\"k\\\": 1}\""},
        {".[\"k\\u00e9y\"]", "7"},
        {".[\"k\xc3\xa9y\"]", "7"},
        {".d", "2"},
        {".missing", NULL},
        {".result.a.b", NULL},
        {".result[0]", NULL},
    };
    char err[200];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct json_path p;
        CHECKF(json_path_parse(cases[i].path, &p, err, sizeof err) == 0, "path %s: %s", cases[i].path, err);
        const char *v;
        size_t vl;
        int rc = json_find(doc, sizeof doc - 1, &p, &v, &vl);
        if (!strcmp(cases[i].path, ".")) {
            CU_ASSERT(rc == 0 && vl == sizeof doc - 1);
        } else if (cases[i].want)
            CHECKF(rc == 0 && vl == strlen(cases[i].want) && !memcmp(v, cases[i].want, vl), "path %s: got %.*s",
                   cases[i].path, rc ? 6 : (int)vl, rc ? "(none)" : v);
        else
            CHECKF(rc != 0, "path %s found %.*s", cases[i].path, (int)vl, v);
        json_path_free(&p);
    }
    static const char *not_plain[] = {"result", ".a | .b", ".a[]", ".[-1]", ".a..b", ".[\"x]", ".1a", "", ".a[x]"};
    for (size_t i = 0; i < sizeof not_plain / sizeof *not_plain; i++) {
        struct json_path p;
        CHECKF(json_path_parse(not_plain[i], &p, err, sizeof err) != 0, "'%s' taken for a plain path", not_plain[i]);
    }
}

int register_json(void)
{
    CU_pSuite s = CU_add_suite("json", NULL, NULL);
    if (!s || !CU_add_test(s, "strict JSON: what is accepted and what is not", test_check) ||
        !CU_add_test(s, "plain paths find the exact bytes of a value", test_paths))
        return -1;
    return 0;
}
