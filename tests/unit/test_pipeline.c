/* Suite "pipeline": pipeline files (src/pipeline/pipeline.c).
 *
 * The built-in default against fixtures/pipeline.json; every fixtures/pipelines/good_*.json parses
 * and resolves (with per-file checks of the stage table); every fixtures/pipelines/bad_*.json is
 * rejected with a message that names the file, the stage (number and name, when it has one) and
 * what is wrong. Each bad file must have an entry in bad_expect[] and each entry a file, so a
 * new fixture cannot be silently skipped. pipeline_resolve: URL joining, ${ENV} and ${file:PATH}
 * expansion, "defaults" and --header (pipeline_add_header) merged under the stage's own headers,
 * and that an error never shows an environment variable's value or a file's content. */
#include "pipeline/pipeline.h"

#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* An assertion with a formatted message (formatted only when it fails). */
#include "check.h"
#include "util.h"

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int streq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static struct pipeline *parse_str(const char *text, char *err, size_t errlen)
{
    struct pipeline *p = (struct pipeline *)1;
    err[0] = 0;
    if (pipeline_parse(text, strlen(text), "inline", &p, err, errlen)) {
        CHECKF(p == NULL, "*out must be NULL on error");
        return NULL;
    }
    return p;
}

/* 1 when the two stage tables mean the same (everything but the source name). */
static int same_stage(const struct stage *a, const struct stage *b, char *why, size_t wl)
{
#define DIFF(cond, what)                                                                          \
    if (cond) {                                                                                   \
        snprintf(why, wl, "stage %s: %s differs", a->name ? a->name : "?", what);                 \
        return 0;                                                                                 \
    }
    DIFF(!streq(a->name, b->name), "name");
    DIFF(!streq(a->url, b->url), "url");
    DIFF(a->input != b->input, "input");
    DIFF(a->each_stage != b->each_stage, "each_stage");
    DIFF(!streq(a->each_array, b->each_array), "each_array");
    DIFF(!streq(a->each_field, b->each_field), "each_field");
    DIFF(a->n_fields != b->n_fields, "n_fields");
    for (int f = 0; f < a->n_fields; f++) {
        DIFF(!streq(a->fields[f].name, b->fields[f].name), "a field name");
        DIFF(!streq(a->fields[f].literal, b->fields[f].literal), "a field literal");
        DIFF(a->fields[f].result_of != b->fields[f].result_of, "a field result_of");
    }
    DIFF(a->when_mask != b->when_mask, "when_mask");
    DIFF(a->dep_mask != b->dep_mask, "dep_mask");
    DIFF(a->csv != b->csv, "csv");
    DIFF(!streq(a->result.text, b->result.text), "result");
    DIFF(!streq(a->column.text, b->column.text), "column");
    DIFF(a->timeout_ms != b->timeout_ms, "timeout_ms");
    DIFF(a->retries != b->retries, "retries");
    DIFF(a->concurrency != b->concurrency, "concurrency");
    DIFF(a->max_rps != b->max_rps, "max_rps");
    DIFF(a->n_headers != b->n_headers, "n_headers");
    for (int h = 0; h < a->n_headers; h++)
        DIFF(!streq(a->header_tmpl[h], b->header_tmpl[h]), "a header");
#undef DIFF
    return 1;
}

static const struct stage_field *field(const struct stage *s, const char *name)
{
    for (int f = 0; f < s->n_fields; f++)
        if (streq(s->fields[f].name, name))
            return &s->fields[f];
    return NULL;
}

static int slist_has(const struct curl_slist *l, const char *line)
{
    for (; l; l = l->next)
        if (streq(l->data, line))
            return 1;
    return 0;
}

/* ---- the default ---- */

static void test_default_equals_fixture(void)
{
    struct pipeline *def = NULL, *fix = NULL;
    char err[512] = "", path[1200];
    CU_ASSERT_EQUAL_FATAL(pipeline_default(&def), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(def);
    snprintf(path, sizeof path, "%s/pipeline.json", fixtures_dir());
    int rc = pipeline_load(path, &fix, err, sizeof err);
    CHECKF(rc == 0, "loading %s: %s", path, err);
    if (rc) {
        pipeline_free(def);
        return;
    }
    CU_ASSERT_STRING_EQUAL(def->source, "built-in");
    CU_ASSERT_STRING_EQUAL(fix->source, path);
    CU_ASSERT_EQUAL(def->n, fix->n);
    for (int i = 0; i < def->n && i < fix->n; i++) {
        char why[256] = "";
        CHECKF(same_stage(&def->stages[i], &fix->stages[i], why, sizeof why), "%s", why);
    }

    /* And the default is the seed's chain. */
    CU_ASSERT_EQUAL_FATAL(def->n, 5);
    static const char *names[5] = {"model_01", "model_02", "model_03", "model_04", "model_05"};
    for (int i = 0; i < 5; i++) {
        const struct stage *s = &def->stages[i];
        char url[32];
        snprintf(url, sizeof url, "/%s", names[i]);
        CU_ASSERT_STRING_EQUAL(s->name, names[i]);
        CU_ASSERT_STRING_EQUAL(s->url, url);
        CU_ASSERT_EQUAL(s->csv, i != 3);
        CU_ASSERT_EQUAL(s->timeout_ms, -1);
        CU_ASSERT_EQUAL(s->retries, -1);
        CU_ASSERT_EQUAL(s->n_headers, 0);
        CU_ASSERT_EQUAL(s->n_fields, 1);
        const struct stage_field *f = field(s, "model_03");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        if (i == 3) {
            CU_ASSERT_EQUAL(f->result_of, 2);
            CU_ASSERT_PTR_NULL(f->literal);
        } else {
            CU_ASSERT_EQUAL(f->result_of, -1);
            CU_ASSERT(streq(f->literal, "null"));
        }
    }
    CU_ASSERT_EQUAL(def->stages[0].dep_mask, 0);
    CU_ASSERT_EQUAL(def->stages[1].dep_mask, 0);
    CU_ASSERT_EQUAL(def->stages[2].when_mask, 0x3);
    CU_ASSERT_EQUAL(def->stages[2].dep_mask, 0x3);
    CU_ASSERT_EQUAL(def->stages[3].when_mask, 0);
    CU_ASSERT_EQUAL(def->stages[3].dep_mask, 0x4);
    CU_ASSERT_EQUAL(def->stages[4].input, INPUT_EACH);
    CU_ASSERT_EQUAL(def->stages[4].each_stage, 3);
    CU_ASSERT(streq(def->stages[4].each_array, "sub-img"));
    CU_ASSERT(streq(def->stages[4].each_field, "img"));
    CU_ASSERT_EQUAL(def->stages[4].dep_mask, 0x8);
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(def->stages[i].input, INPUT_IMAGE);
    CU_ASSERT_EQUAL(pipeline_csv_columns(def), 4);

    /* The text too: the header says the fixture holds the same. */
    FILE *f = fopen(path, "rb");
    if (f) {
        char buf[8192];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        CHECKF(n == strlen(pipeline_default_json) && memcmp(buf, pipeline_default_json, n) == 0,
               "%s is not byte for byte pipeline_default_json", path);
    }
    pipeline_free(def);
    pipeline_free(fix);
    pipeline_free(NULL);
}

/* ---- good files ---- */

static void check_good_absolute(struct pipeline *p)
{
    CU_ASSERT_EQUAL_FATAL(p->n, 2);
    CU_ASSERT(streq(p->stages[0].full_url, "http://10.0.0.7:9000/v1/detect"));
    CU_ASSERT(streq(p->stages[1].full_url, "https://models.example.com/caption"));
    const struct stage_field *f = field(&p->stages[0], "threshold");
    CU_ASSERT(f && f->result_of == -1 && streq(f->literal, "0.5"));
    f = field(&p->stages[1], "lang");
    CU_ASSERT(f && streq(f->literal, "\"en\""));
    f = field(&p->stages[1], "opts");
    CU_ASSERT(f && f->result_of == -1 && streq(f->literal, "{\"beam\":4,\"tags\":[\"a\",\"b\"]}"));
    CU_ASSERT_EQUAL(p->stages[1].when_mask, 1);
    CU_ASSERT_EQUAL(p->stages[1].dep_mask, 1);
    CU_ASSERT_EQUAL(pipeline_csv_columns(p), 2);
}

static void check_good_overrides(struct pipeline *p)
{
    CU_ASSERT_EQUAL_FATAL(p->n, 3);
    const struct stage *s = &p->stages[0];
    CU_ASSERT_EQUAL(s->timeout_ms, 2500);
    CU_ASSERT_EQUAL(s->retries, 0);
    CU_ASSERT_EQUAL_FATAL(s->n_headers, 2);
    CU_ASSERT(streq(s->header_tmpl[0], "Authorization: Bearer ${ANNOTATE_TEST_TOKEN}"));
    CU_ASSERT(streq(s->header_tmpl[1], "X-Client: annotate"));
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "Authorization: Bearer tok-123"));
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "X-Client: annotate"));
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "Content-Type: application/json"));
    CU_ASSERT(streq(s->full_url, "http://127.0.0.1:8080/model_01"));
    s = &p->stages[1];
    CU_ASSERT_EQUAL(s->timeout_ms, 86400000);
    CU_ASSERT_EQUAL(s->retries, 100);
    CU_ASSERT_EQUAL(s->csv, 1);
    CU_ASSERT_EQUAL(s->n_headers, 0);
    CU_ASSERT(streq(s->full_url, "http://127.0.0.1:8080/model_02"));
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "Content-Type: application/json"));
    s = &p->stages[2];
    CU_ASSERT_EQUAL(s->csv, 0);
    CU_ASSERT_EQUAL(s->input, INPUT_IMAGE);
    CU_ASSERT_EQUAL(s->timeout_ms, -1);
    CU_ASSERT_EQUAL(s->retries, -1);
    CU_ASSERT_EQUAL(pipeline_csv_columns(p), 2);
}

static void check_good_no_fields(struct pipeline *p)
{
    CU_ASSERT_EQUAL_FATAL(p->n, 1);
    const struct stage *s = &p->stages[0];
    CU_ASSERT(streq(s->name, "only.stage-1_A"));
    CU_ASSERT_EQUAL(s->n_fields, 0);
    CU_ASSERT_EQUAL(s->input, INPUT_IMAGE);
    CU_ASSERT_EQUAL(s->each_stage, -1);
    CU_ASSERT_EQUAL(s->when_mask, 0);
    CU_ASSERT_EQUAL(s->dep_mask, 0);
    CU_ASSERT_EQUAL(s->csv, 1);
    CU_ASSERT_EQUAL(s->timeout_ms, -1);
    CU_ASSERT_EQUAL(s->retries, -1);
    CU_ASSERT(streq(s->full_url, "http://127.0.0.1:8080/only"));
}

static void check_good_each(struct pipeline *p)
{
    CU_ASSERT_EQUAL_FATAL(p->n, 3);
    const struct stage *s = &p->stages[1];
    CU_ASSERT_EQUAL(s->input, INPUT_EACH);
    CU_ASSERT_EQUAL(s->each_stage, 0);
    CU_ASSERT(streq(s->each_array, "boxes"));
    CU_ASSERT(streq(s->each_field, "img"));
    const struct stage_field *f = field(s, "src");
    CU_ASSERT(f && f->result_of == 0 && f->literal == NULL);
    f = field(s, "k");
    CU_ASSERT(f && f->result_of == -1 && streq(f->literal, "3"));
    CU_ASSERT_EQUAL(s->dep_mask, 1);
    CU_ASSERT_EQUAL(s->when_mask, 0);
    s = &p->stages[2];
    CU_ASSERT_EQUAL(s->input, INPUT_IMAGE);
    f = field(s, "crops");
    CU_ASSERT(f && f->result_of == 1);
    CU_ASSERT_EQUAL(s->when_mask, 1);
    CU_ASSERT_EQUAL(s->dep_mask, 3);
    CU_ASSERT_EQUAL(p->stages[0].csv, 0);
    CU_ASSERT_EQUAL(pipeline_csv_columns(p), 2);
}

/* "defaults": every stage gets them unless it has its own (a header name matches whatever its
 * case), and a replaced default is not sent as well. */
static void check_good_defaults(struct pipeline *p)
{
    CU_ASSERT_EQUAL_FATAL(p->n, 2);
    CU_ASSERT_EQUAL(p->n_default_headers, 2);
    const struct stage *s = &p->stages[0];
    CU_ASSERT_EQUAL(s->timeout_ms, 1500);
    CU_ASSERT_EQUAL(s->retries, 7);
    CU_ASSERT_EQUAL(s->n_headers, 0);
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "Authorization: Bearer tok-123"));
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "X-Team: vision"));
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "Content-Type: application/json"));
    s = &p->stages[1];
    CU_ASSERT_EQUAL(s->timeout_ms, 99);
    CU_ASSERT_EQUAL(s->retries, 0);
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "authorization: Token other"));
    CU_ASSERT(!slist_has(pipeline_headers(s, NULL), "Authorization: Bearer tok-123"));
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "X-Team: vision"));
    CU_ASSERT(slist_has(pipeline_headers(s, NULL), "X-Stage: 2"));
}

/* "concurrency" and "max_rps": the stage's own, else the defaults'. */
static void check_good_limits(struct pipeline *p)
{
    CU_ASSERT_EQUAL_FATAL(p->n, 3);
    CU_ASSERT_EQUAL(p->stages[0].concurrency, 8);
    CU_ASSERT_EQUAL(p->stages[0].max_rps, 250);
    CU_ASSERT_EQUAL(p->stages[1].concurrency, STAGE_CONCURRENCY_AUTO);
    CU_ASSERT_EQUAL(p->stages[1].max_rps, 0.5);
    CU_ASSERT_EQUAL(p->stages[2].concurrency, 1);
    CU_ASSERT_EQUAL(p->stages[2].max_rps, 250);
}

static const struct {
    const char *file;
    void (*check)(struct pipeline *);
} good_expect[] = {
    {"good_limits.json", check_good_limits},
    {"good_defaults.json", check_good_defaults},
    {"good_absolute.json", check_good_absolute},
    {"good_overrides.json", check_good_overrides},
    {"good_no_fields.json", check_good_no_fields},
    {"good_each.json", check_good_each},
};
#define N_GOOD (sizeof good_expect / sizeof good_expect[0])

/* The fixtures/pipelines/ files whose names match pattern, into g (globfree it). 0 or -1. */
static int glob_pipelines(const char *pattern, glob_t *g)
{
    char pat[1200];
    snprintf(pat, sizeof pat, "%s/pipelines/%s", fixtures_dir(), pattern);
    int gr = glob(pat, 0, NULL, g);
    CHECKF(gr == 0, "no files match %s", pat);
    return gr ? -1 : 0;
}

static void test_good_files(void)
{
    glob_t g;
    if (glob_pipelines("good_*.json", &g))
        return;
    CHECKF(g.gl_pathc >= N_GOOD, "%zu good files, expected at least %zu", g.gl_pathc, N_GOOD);
    setenv("ANNOTATE_TEST_TOKEN", "tok-123", 1);
    int seen[N_GOOD] = {0};
    for (size_t k = 0; k < g.gl_pathc; k++) {
        const char *path = g.gl_pathv[k];
        struct pipeline *p = NULL;
        char err[512] = "";
        int rc = pipeline_load(path, &p, err, sizeof err);
        CHECKF(rc == 0 && p, "%s should load: %s", path, err);
        if (rc)
            continue;
        rc = pipeline_resolve(p, "http://127.0.0.1:8080", err, sizeof err);
        CHECKF(rc == 0, "%s should resolve: %s", path, err);
        for (int i = 0; rc == 0 && i < p->n; i++)
            CHECKF(p->stages[i].full_url && pipeline_headers(&p->stages[i], NULL), "%s: stage %d not resolved", path, i + 1);
        for (size_t e = 0; e < N_GOOD; e++)
            if (!strcmp(base_name(path), good_expect[e].file)) {
                seen[e] = 1;
                if (rc == 0)
                    good_expect[e].check(p);
            }
        pipeline_free(p);
    }
    for (size_t e = 0; e < N_GOOD; e++)
        CHECKF(seen[e], "fixture %s is missing", good_expect[e].file);
    globfree(&g);
    unsetenv("ANNOTATE_TEST_TOKEN");
}

/* ---- bad files ---- */

#define MAXW 4
static const struct {
    const char *file;
    const char *want[MAXW]; /* each must be in the message */
    const char *not;        /* must not be */
} bad_expect[] = {
    {"bad_not_json.json", {"not valid JSON", "line 4"}, NULL},
    {"bad_no_stages.json", {"\"stages\""}, NULL},
    {"bad_stages_not_array.json", {"\"stages\" array"}, NULL},
    {"bad_empty_stages.json", {"\"stages\"", "1 to"}, NULL},
    {"bad_top_level_key.json", {"unknown top-level key", "\"stage\""}, NULL},
    {"bad_stage_key.json", {"stage 2 (model_02)", "unknown key \"timeout\""}, NULL},
    {"bad_missing_name.json", {"stage 2", "\"name\""}, NULL},
    {"bad_missing_url.json", {"stage 2 (model_02)", "\"url\" is missing"}, NULL},
    {"bad_duplicate_name.json", {"stage 3 (model_01)", "earlier stage"}, NULL},
    {"bad_reserved_path.json", {"stage 2 (path)", "fixed CSV column"}, NULL},
    {"bad_reserved_status.json", {"stage 2 (status)", "fixed CSV column"}, NULL},
    {"bad_reserved_error.json", {"stage 2 (error)", "fixed CSV column"}, NULL},
    {"bad_name_chars.json", {"stage 2", "\"name\"", "model 02"}, NULL},
    {"bad_name_comma.json", {"stage 1", "\"name\"", "model,01"}, NULL},
    {"bad_when_later.json", {"stage 1 (model_01)", "\"when\"", "\"model_02\"", "not an earlier stage"}, NULL},
    {"bad_when_unknown.json", {"stage 2 (model_02)", "\"when\"", "\"model_09\""}, NULL},
    {"bad_when_self.json", {"stage 1 (model_01)", "\"when\"", "\"model_01\""}, NULL},
    {"bad_result_of_unknown.json", {"stage 2 (model_02)", "result_of", "\"model_00\""}, NULL},
    {"bad_each_no_array.json", {"stage 2 (model_02)", "\"input\"", "\"array\""}, NULL},
    {"bad_each_no_field.json", {"stage 2 (model_02)", "\"input\"", "\"field\""}, NULL},
    {"bad_each_unknown.json", {"stage 2 (model_02)", "each", "\"model_04\""}, NULL},
    {"bad_fields_im_str.json", {"stage 1 (model_01)", "\"im_str\""}, NULL},
    {"bad_csv_not_bool.json", {"stage 2 (model_02)", "\"csv\""}, NULL},
    {"bad_timeout_zero.json", {"stage 1 (model_01)", "\"timeout_ms\""}, NULL},
    {"bad_retries_negative.json", {"stage 2 (model_02)", "\"retries\""}, NULL},
    {"bad_header_newline.json", {"stage 1 (model_01)", "X-Token", "line break"}, "X-Injected"},
    {"bad_duplicate_key.json", {"stage 1 (model_01)", "\"url\""}, NULL},
    {"bad_trailing_text.json", {"text after the end", "line 4"}, NULL},
    {"bad_duplicate_stages.json", {"top-level key \"stages\" appears twice"}, NULL},
    {"bad_url_space.json", {"stage 2 (model_02)", "\"url\"", "blank", "character 7"}, NULL},
    {"bad_url_newline.json", {"stage 1 (model_01)", "\"url\"", "line break"}, "X-Injected"},
    {"bad_url_nul.json", {"stage 2 (model_02)", "NUL", "line 4"}, NULL},
    {"bad_result_of_typo.json", {"stage 2 (model_02)", "\"reslt_of\"", "did you mean \"result_of\""}, NULL},
    {"bad_defaults_key.json", {"\"defaults\"", "unknown key \"timeout\""}, NULL},
    {"bad_defaults_retries.json", {"\"defaults\"", "\"retries\"", "0 to 100"}, NULL},
    {"bad_defaults_twice.json", {"\"defaults\"", "\"retries\" appears twice"}, NULL},
    {"bad_header_twice.json", {"stage 1 (model_01)", "\"x-token\"", "twice"}, NULL},
    {"bad_concurrency_zero.json", {"stage 2 (model_02)", "\"concurrency\"", "1 to 100000", "\"auto\""}, NULL},
    {"bad_concurrency_word.json", {"stage 1 (model_01)", "\"concurrency\"", "\"auto\""}, NULL},
    {"bad_concurrency_fraction.json", {"stage 1 (model_01)", "\"concurrency\"", "whole number"}, NULL},
    {"bad_defaults_concurrency.json", {"\"defaults\"", "\"concurrency\"", "1 to 100000"}, NULL},
    {"bad_max_rps_zero.json", {"stage 3 (model_03)", "\"max_rps\"", "0.001 to 10000000"}, NULL},
    {"bad_defaults_max_rps.json", {"\"defaults\"", "\"max_rps\""}, NULL},
};
#define N_BAD (sizeof bad_expect / sizeof bad_expect[0])

static void test_bad_files(void)
{
    glob_t g;
    if (glob_pipelines("bad_*.json", &g))
        return;
    int seen[N_BAD] = {0};
    for (size_t k = 0; k < g.gl_pathc; k++) {
        const char *path = g.gl_pathv[k];
        int e = -1;
        for (size_t i = 0; i < N_BAD; i++)
            if (!strcmp(base_name(path), bad_expect[i].file))
                e = (int)i;
        CHECKF(e >= 0, "%s has no entry in bad_expect[]", path);
        struct pipeline *p = (struct pipeline *)1;
        char err[1024] = "";
        int rc = pipeline_load(path, &p, err, sizeof err);
        CHECKF(rc == -1, "%s should be rejected (rc %d)", path, rc);
        CHECKF(rc != -1 || p == NULL, "%s: *out not NULL on error", path);
        if (rc != -1) {
            pipeline_free(p);
            continue;
        }
        /* "FILE: ..." */
        size_t pl = strlen(path);
        CHECKF(strncmp(err, path, pl) == 0 && err[pl] == ':', "%s: the message does not start with the file: %s",
               path, err);
        if (e < 0)
            continue;
        seen[e] = 1;
        for (int w = 0; w < MAXW && bad_expect[e].want[w]; w++)
            CHECKF(strstr(err, bad_expect[e].want[w]) != NULL, "%s: the message lacks '%s': %s", path,
                   bad_expect[e].want[w], err);
        if (bad_expect[e].not)
            CHECKF(strstr(err, bad_expect[e].not) == NULL, "%s: the message shows '%s': %s", path,
                   bad_expect[e].not, err);
    }
    for (size_t i = 0; i < N_BAD; i++)
        CHECKF(seen[i], "fixture %s is missing", bad_expect[i].file);
    globfree(&g);
}

static void test_load_missing_file(void)
{
    struct pipeline *p = (struct pipeline *)1;
    char err[512] = "";
    CU_ASSERT_EQUAL(pipeline_load("/nonexistent/annotate/pipe.json", &p, err, sizeof err), -1);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/annotate/pipe.json"));
}

/* Inline texts: line numbers, non-object roots, odd-but-valid shapes. */
static void test_parse_inline(void)
{
    char err[512];
    struct pipeline *p;
    /* The error is on line 3. */
    CU_ASSERT_PTR_NULL(parse_str("{\n\"stages\": [\n  {\"name\": \"a\" \"url\": \"/a\"}\n]}", err, sizeof err));
    CHECKF(strstr(err, "line 3") != NULL, "want line 3: %s", err);
    CU_ASSERT_PTR_NULL(parse_str("", err, sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("[]", err, sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [\"model_01\"]}", err, sizeof err));
    CHECKF(strstr(err, "stage 1") != NULL, "want stage 1: %s", err);
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"\", \"url\": \"/a\"}]}", err, sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"\"}]}", err, sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"input\": \"images\"}]}", err,
                                 sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"fields\": {\"x\": 1, \"x\": 2}}]}",
                                 err, sizeof err));
    CHECKF(strstr(err, "\"x\"") != NULL, "want the field: %s", err);
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"timeout_ms\": \"5\"}]}", err,
                                 sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"retries\": 101}]}", err,
                                 sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"headers\": {\"Bad Name\": \"x\"}}]}",
                                 err, sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"headers\": {\"X\": 5}}]}", err,
                                 sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"attempts\", \"url\": \"/a\"}]}", err, sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"elapsed_ms\", \"url\": \"/a\"}]}", err, sizeof err));

    /* {"result_of": ..., plus another key} is a literal object, not a reference. */
    p = parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}, {\"name\": \"b\", \"url\": \"/b\","
                  " \"fields\": {\"r\": {\"result_of\": \"a\", \"x\": 1}, \"s\": {\"result_of\": \"a\"}}}]}",
                  err, sizeof err);
    CHECKF(p != NULL, "%s", err);
    if (p) {
        const struct stage_field *f = field(&p->stages[1], "r");
        CU_ASSERT(f && f->result_of == -1 && streq(f->literal, "{\"result_of\":\"a\",\"x\":1}"));
        f = field(&p->stages[1], "s");
        CU_ASSERT(f && f->result_of == 0);
        CU_ASSERT_EQUAL(p->stages[1].dep_mask, 1);
        CU_ASSERT_EQUAL(p->stages[1].when_mask, 0);
        CU_ASSERT(streq(p->source, "inline"));
        pipeline_free(p);
    }
    /* 64 stages is the most; 65 is refused. */
    char *big = malloc(70 * 64);
    for (int n = 64; n <= 65; n++) {
        size_t o = (size_t)sprintf(big, "{\"stages\":[");
        for (int i = 0; i < n; i++)
            o += (size_t)sprintf(big + o, "%s{\"name\":\"s%d\",\"url\":\"/s\"}", i ? "," : "", i);
        sprintf(big + o, "]}");
        p = parse_str(big, err, sizeof err);
        CHECKF((p != NULL) == (n == 64), "%d stages: %s", n, err);
        pipeline_free(p);
    }
    free(big);
}

/* ---- resolve ---- */

static void test_resolve_urls(void)
{
    static const struct {
        const char *base, *url, *want;
    } cases[] = {
        {"http://127.0.0.1:8080", "/model_01", "http://127.0.0.1:8080/model_01"},
        {"http://127.0.0.1:8080/", "/model_01", "http://127.0.0.1:8080/model_01"},
        {"http://127.0.0.1:8080", "model_01", "http://127.0.0.1:8080/model_01"},
        {"http://127.0.0.1:8080/", "model_01", "http://127.0.0.1:8080/model_01"},
        {"http://h//", "m", "http://h/m"},
        {"http://h/api/v2", "/m", "http://h/api/v2/m"},
        {"http://h/api/v2/", "m/x", "http://h/api/v2/m/x"},
        {"https://h:443", "/m?x=1", "https://h:443/m?x=1"},
        {"http://127.0.0.1:8080", "http://other:9/abs", "http://other:9/abs"},
        {"http://127.0.0.1:8080", "https://other/abs/", "https://other/abs/"},
        /* "://" later in a relative URL (a query naming another URL) does not make it absolute. */
        {"http://127.0.0.1:8080", "/proxy?to=http://other/x", "http://127.0.0.1:8080/proxy?to=http://other/x"},
        {"http://127.0.0.1:8080", "models/m?cb=https://h/", "http://127.0.0.1:8080/models/m?cb=https://h/"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512], err[512] = "";
        snprintf(text, sizeof text, "{\"stages\": [{\"name\": \"m\", \"url\": \"%s\"}]}", cases[i].url);
        struct pipeline *p = parse_str(text, err, sizeof err);
        CHECKF(p != NULL, "%s", err);
        if (!p)
            continue;
        int rc = pipeline_resolve(p, cases[i].base, err, sizeof err);
        CHECKF(rc == 0 && streq(p->stages[0].full_url, cases[i].want), "%s + %s: got %s, want %s (%s)",
               cases[i].base, cases[i].url, p->stages[0].full_url ? p->stages[0].full_url : "(null)",
               cases[i].want, err);
        /* Twice is the same (and frees what the first made). */
        rc = pipeline_resolve(p, cases[i].base, err, sizeof err);
        CU_ASSERT(rc == 0 && streq(p->stages[0].full_url, cases[i].want));
        pipeline_free(p);
    }

    /* Not http(s). */
    static const struct {
        const char *base, *url;
    } bad[] = {
        {"http://127.0.0.1:8080", "ftp://files/model"},
        {"ftp://127.0.0.1", "/model"},
        {"127.0.0.1:8080", "/model"},
        {"http://127.0.0.1:8080", "file:///etc/passwd"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512], err[512] = "";
        snprintf(text, sizeof text,
                 "{\"stages\": [{\"name\": \"ok\", \"url\": \"/ok\"}, {\"name\": \"m2\", \"url\": \"%s\"}]}",
                 bad[i].url);
        struct pipeline *p = parse_str(text, err, sizeof err);
        CHECKF(p != NULL, "%s", err);
        if (!p)
            continue;
        int rc = pipeline_resolve(p, bad[i].base, err, sizeof err);
        if (strncmp(bad[i].base, "http", 4) == 0) {
            CHECKF(rc == -1, "%s + %s should be refused", bad[i].base, bad[i].url);
            CHECKF(strstr(err, "stage 2 (m2)") && strstr(err, bad[i].url), "message: %s", err);
        } else {
            CHECKF(rc == -1, "base %s should be refused", bad[i].base);
            CHECKF(strstr(err, "stage 1 (ok)") != NULL, "message: %s", err);
        }
        pipeline_free(p);
    }
}

/* 1 when err holds the value of any environment variable long enough to be a secret. */
static const char *leaked_value(const char *err)
{
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq && strlen(eq + 1) >= 8 && strstr(err, eq + 1))
            return *e;
    }
    return NULL;
}

static void test_resolve_env(void)
{
    char err[512] = "";
    setenv("ANNOTATE_TEST_A", "alpha-value", 1);
    setenv("ANNOTATE_TEST_B", "", 1);
    setenv("ANNOTATE_TEST_SECRET", "s3cr3t-v4lue-do-not-print", 1);
    unsetenv("ANNOTATE_TEST_UNSET");

    struct pipeline *p = parse_str(
        "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"headers\": {"
        "\"X-A\": \"${ANNOTATE_TEST_A}\", \"X-Mix\": \"pre ${ANNOTATE_TEST_A}/${ANNOTATE_TEST_B}-${ANNOTATE_TEST_A} post\","
        "\"X-Lit\": \"$ANNOTATE_TEST_A and ${unclosed\", \"X-Dollar\": \"$${ANNOTATE_TEST_A}$\"}}]}",
        err, sizeof err);
    CHECKF(p != NULL, "%s", err);
    if (p) {
        int rc = pipeline_resolve(p, "http://h", err, sizeof err);
        CHECKF(rc == 0, "%s", err);
        const struct curl_slist *h = pipeline_headers(&p->stages[0], NULL);
        CU_ASSERT(slist_has(h, "X-A: alpha-value"));
        CU_ASSERT(slist_has(h, "X-Mix: pre alpha-value/-alpha-value post"));
        CU_ASSERT(slist_has(h, "X-Lit: $ANNOTATE_TEST_A and ${unclosed"));
        CU_ASSERT(slist_has(h, "X-Dollar: $alpha-value$"));
        CU_ASSERT(slist_has(h, "Content-Type: application/json"));
        /* The template is kept as written (it is what a later resolve expands again). */
        CU_ASSERT(streq(p->stages[0].header_tmpl[0], "X-A: ${ANNOTATE_TEST_A}"));
        pipeline_free(p);
    }

    /* Unset: fails, names the variable, shows no value, even when a set secret is used in the
     * same header and by an earlier stage. */
    static const char *texts[] = {
        "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"headers\": {\"Authorization\": \"${ANNOTATE_TEST_UNSET}\"}}]}",
        "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"headers\": {\"Authorization\": "
        "\"Bearer ${ANNOTATE_TEST_SECRET}:${ANNOTATE_TEST_UNSET}\"}}]}",
        "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"headers\": {\"Authorization\": \"${ANNOTATE_TEST_SECRET}\"}},"
        " {\"name\": \"n\", \"url\": \"/n\", \"headers\": {\"X-Key\": \"${ANNOTATE_TEST_SECRET}\","
        " \"X-Other\": \"${ANNOTATE_TEST_A}${ANNOTATE_TEST_UNSET}\"}}]}",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        p = parse_str(texts[i], err, sizeof err);
        CHECKF(p != NULL, "%s", err);
        if (!p)
            continue;
        err[0] = 0;
        int rc = pipeline_resolve(p, "http://h", err, sizeof err);
        CHECKF(rc == -1, "case %zu: an unset variable must fail", i);
        CHECKF(strstr(err, "ANNOTATE_TEST_UNSET") != NULL, "case %zu: the variable is not named: %s", i, err);
        CHECKF(strstr(err, i == 2 ? "stage 2 (n)" : "stage 1 (m)") != NULL, "case %zu: the stage is not named: %s",
               i, err);
        const char *leak = leaked_value(err);
        CHECKF(leak == NULL, "case %zu: the message shows the value of %.40s...: %s", i, leak ? leak : "", err);
        CHECKF(strstr(err, "s3cr3t") == NULL && strstr(err, "alpha-value") == NULL, "case %zu: a value shows: %s", i,
               err);
        pipeline_free(p);
    }

    /* ${} is an error too. */
    p = parse_str("{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"headers\": {\"X\": \"a${}b\"}}]}", err,
                  sizeof err);
    CHECKF(p != NULL, "%s", err);
    if (p) {
        CU_ASSERT_EQUAL(pipeline_resolve(p, "http://h", err, sizeof err), -1);
        CHECKF(strstr(err, "stage 1 (m)") != NULL, "%s", err);
        pipeline_free(p);
    }
    /* A value with a line break would end the header early or inject another one (the file's
     * own text is checked for that; the environment must be too): refused, naming the
     * variable, never showing the value. */
    static const char *broken[] = {"tok3n-with-crlf\r\nX-Injected: 1", "tok3n-with-trailing-newline\n",
                                   "tok3n\rcarriage"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        setenv("ANNOTATE_TEST_NL", broken[i], 1);
        p = parse_str("{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"headers\": {\"Authorization\": "
                      "\"Bearer ${ANNOTATE_TEST_NL}\"}}]}",
                      err, sizeof err);
        CHECKF(p != NULL, "%s", err);
        if (!p)
            continue;
        err[0] = 0;
        int rc = pipeline_resolve(p, "http://h", err, sizeof err);
        CHECKF(rc == -1, "case %zu: a variable holding a line break is accepted into a header", i);
        if (rc == -1) {
            CHECKF(strstr(err, "ANNOTATE_TEST_NL") != NULL, "case %zu: the variable is not named: %s", i, err);
            CHECKF(strstr(err, "tok3n") == NULL, "case %zu: the value shows: %s", i, err);
        }
        pipeline_free(p);
    }
    unsetenv("ANNOTATE_TEST_NL");
    unsetenv("ANNOTATE_TEST_A");
    unsetenv("ANNOTATE_TEST_B");
    unsetenv("ANNOTATE_TEST_SECRET");
}


/* A directory or an unreadable file given as the pipeline: the path and the reason. */
static void test_load_dir_unreadable(void)
{
    struct pipeline *p = (struct pipeline *)1;
    char err[512] = "";
    CU_ASSERT_EQUAL(pipeline_load("/tmp", &p, err, sizeof err), -1);
    CU_ASSERT_PTR_NULL(p);
    CHECKF(strncmp(err, "/tmp:", 5) == 0 && strstr(err, "directory"), "%s", err);

    char path[] = "/tmp/annotate-pipe-XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    const char *text = "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}]}";
    CU_ASSERT(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    chmod(path, 0);
    /* root reads any file: try it as nobody, in a child. */
    int pfd[2];
    CU_ASSERT_FATAL(pipe(pfd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        if (geteuid() == 0 && (setgid(65534) || setuid(65534)))
            _exit(3);
        struct pipeline *q = NULL;
        char e[512] = "";
        int rc = pipeline_load(path, &q, e, sizeof e);
        pipeline_free(q);
        ssize_t w = write(pfd[1], e, strlen(e));
        (void)w;
        _exit(rc == -1 ? 0 : 1);
    }
    close(pfd[1]);
    char got[512] = "";
    ssize_t n = read(pfd[0], got, sizeof got - 1);
    got[n > 0 ? n : 0] = 0;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 3) {
        CU_PASS("cannot drop root here: the unreadable case is not tested");
    } else {
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "an unreadable pipeline file was loaded");
        CHECKF(strstr(got, path) && strstr(got, strerror(EACCES)), "want the path and the reason: %s", got);
    }
    unlink(path);
}

/* After the JSON object only white space; no NUL inside a string, raw or escaped. */
static void test_parse_trailing_and_nul(void)
{
    char err[512];
    struct pipeline *p;
    const char *one = "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}]}";
    char text[512];
    snprintf(text, sizeof text, "%s \n\t\r\n  ", one);
    p = parse_str(text, err, sizeof err);
    CHECKF(p != NULL, "trailing white space is fine: %s", err);
    pipeline_free(p);
    static const char *const after[] = {"x", "\n{}", "]", "//", "\n\n,"};
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        snprintf(text, sizeof text, "%s%s", one, after[i]);
        p = parse_str(text, err, sizeof err);
        CHECKF(p == NULL && strstr(err, "text after the end"), "case %zu: %s", i, err);
        pipeline_free(p);
    }
    /* A NUL byte after the object: still text after it (cJSON's own "null-terminated" option
     * would have stopped there and accepted the file). */
    size_t l = strlen(one);
    memcpy(text, one, l);
    memcpy(text + l, "\0junk", 5);
    p = NULL;
    CU_ASSERT_EQUAL(pipeline_parse(text, l + 5, "inline", &p, err, sizeof err), -1);
    CHECKF(strstr(err, "text after the end") != NULL, "%s", err);

    /* A raw NUL byte inside a string. */
    const char *raw = "{\"stages\": [{\"name\": \"m\", \"url\": \"/m?a\"}]}";
    l = strlen(raw);
    memcpy(text, raw, l);
    text[strchr(raw, '?') - raw] = 0;
    CU_ASSERT_EQUAL(pipeline_parse(text, l, "inline", &p, err, sizeof err), -1);
    CHECKF(strstr(err, "stage 1 (m)") && strstr(err, "NUL"), "%s", err);

    /* \u0000 anywhere, with the stage named when it is in one. */
    static const struct {
        const char *text, *want;
    } nul[] = {
        {"{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}, {\"name\": \"b\", \"url\": \"/b\", \"fields\": {\"k\": \"x\\u0000y\"}}]}",
         "stage 2 (b)"},
        {"{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"headers\": {\"X\": \"t\\u0000\"}}]}", "stage 1 (a)"},
        {"{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}, {\"name\": \"b\", \"url\": \"/b\", \"fields\": {\"k\\u0000\": 1}}]}",
         "stage 2 (b)"},
        {"{\"defaults\": {\"headers\": {\"X\": \"\\u0000\"}}, \"stages\": [{\"name\": \"a\", \"url\": \"/a\"}]}", "inline: a string"},
        {"{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"fields\": {\"o\": [{\"x\": [1, \"\\u0000\"]}]}}]}", "stage 1 (a)"},
    };
    for (size_t i = 0; i < sizeof nul / sizeof nul[0]; i++) {
        p = parse_str(nul[i].text, err, sizeof err);
        CHECKF(p == NULL && strstr(err, nul[i].want) && strstr(err, "NUL"), "NUL case %zu: %s", i, err);
        pipeline_free(p);
    }
    /* Not a NUL: an escaped backslash followed by the text u0000, and \u0001. */
    p = parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"fields\": {\"k\": \"x\\\\u0000\", \"j\": \"\\u0001\"}}]}",
                  err, sizeof err);
    CHECKF(p != NULL, "%s", err);
    if (p) {
        const struct stage_field *f = field(&p->stages[0], "k");
        CU_ASSERT(f && streq(f->literal, "\"x\\\\u0000\""));
        pipeline_free(p);
    }
    /* Keys of the top level: duplicates of any key, unknown ones. */
    p = parse_str("{\"defaults\": {}, \"stages\": [{\"name\": \"a\", \"url\": \"/a\"}], \"defaults\": {}}", err, sizeof err);
    CHECKF(p == NULL && strstr(err, "\"defaults\" appears twice"), "%s", err);
    p = parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}], \"default\": {}}", err, sizeof err);
    CHECKF(p == NULL && strstr(err, "unknown top-level key \"default\"") && strstr(err, "defaults"), "%s", err);
    p = parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}], \"defaults\": []}", err, sizeof err);
    CHECKF(p == NULL && strstr(err, "\"defaults\""), "%s", err);
}

/* URLs with blanks or control characters are refused at parse, naming the stage. */
static void test_parse_url_chars(void)
{
    static const char *const bad[] = {"/a b", "/a\\tb", "/a\\nb", "/a\\rb", "/a\\u0007", "/a\\u007f", "http://h x/a", " /a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[256], err[512];
        snprintf(text, sizeof text, "{\"stages\": [{\"name\": \"ok\", \"url\": \"/ok\"}, {\"name\": \"m\", \"url\": \"%s\"}]}", bad[i]);
        struct pipeline *p = parse_str(text, err, sizeof err);
        CHECKF(p == NULL && strstr(err, "stage 2 (m)") && strstr(err, "\"url\""), "url %s: %s", bad[i], err);
        pipeline_free(p);
    }
    char err[512];
    struct pipeline *p = parse_str("{\"stages\": [{\"name\": \"m\", \"url\": \"/a%20b?q=%0A\"}]}", err, sizeof err);
    CHECKF(p != NULL, "percent-escapes are fine: %s", err);
    pipeline_free(p);
}

/* {"reslt_of": "a"}: a one-key object whose key is within two edits of result_of (any case) is
 * a typo, not a literal; other objects are literals as before. */
static void test_fields_typo(void)
{
    static const char *const typos[] = {"reslt_of", "result-of", "Result_Of", "RESULT_OF", "resultof", "results_of",
                                        "rseult_of", "reslut_fo", "result_o", "esult_of"};
    for (size_t i = 0; i < sizeof typos / sizeof typos[0]; i++) {
        char text[300], err[512];
        snprintf(text, sizeof text,
                 "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}, {\"name\": \"b\", \"url\": \"/b\", \"fields\": "
                 "{\"x\": {\"%s\": \"a\"}}}]}", typos[i]);
        struct pipeline *p = parse_str(text, err, sizeof err);
        CHECKF(p == NULL, "{\"%s\": \"a\"} was taken as a literal", typos[i]);
        CHECKF(strstr(err, "stage 2 (b)") && strstr(err, typos[i]) && strstr(err, "did you mean \"result_of\""),
               "%s: %s", typos[i], err);
        pipeline_free(p);
    }
    static const char *const literals[] = {"{\"result\": 1}", "{\"reslt_of\": \"a\", \"x\": 1}", "{\"rest_of_it\": 2}",
                                           "{\"label\": \"cat\"}", "{}", "{\"r\": 1}",
                                           "{\"a_very_long_key_that_is_nothing_like_it_at_all\": 1}"};
    for (size_t i = 0; i < sizeof literals / sizeof literals[0]; i++) {
        char text[300], err[512];
        snprintf(text, sizeof text,
                 "{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}, {\"name\": \"b\", \"url\": \"/b\", \"fields\": "
                 "{\"x\": %s}}]}", literals[i]);
        struct pipeline *p = parse_str(text, err, sizeof err);
        CHECKF(p != NULL, "%s should be a literal: %s", literals[i], err);
        if (p) {
            const struct stage_field *f = field(&p->stages[1], "x");
            CU_ASSERT(f && f->result_of == -1 && f->literal);
        }
        pipeline_free(p);
    }
}

static int count_named(const struct curl_slist *l, const char *name)
{
    int n = 0;
    size_t nl = strlen(name);
    for (; l; l = l->next)
        n += strncasecmp(l->data, name, nl) == 0 && l->data[nl] == ':';
    return n;
}

/* --header lines (pipeline_add_header) under "defaults" under a stage's own, one of each name. */
static void test_header_precedence(void)
{
    char err[512] = "";
    setenv("ANNOTATE_TEST_CLI", "cli-secret-value", 1);
    struct pipeline *p = parse_str(
        "{\"defaults\": {\"headers\": {\"X-Team\": \"vision\", \"x-both\": \"from-defaults\"}},"
        " \"stages\": [{\"name\": \"a\", \"url\": \"/a\", \"headers\": {\"X-BOTH\": \"from-stage\", \"X-Own\": \"1\"}},"
        " {\"name\": \"b\", \"url\": \"/b\"},"
        " {\"name\": \"c\", \"url\": \"/c\", \"headers\": {\"authorization\": \"Token c\", \"Content-Type\": \"text/x\"}}]}",
        err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(pipeline_add_header(p, "Authorization: Bearer ${ANNOTATE_TEST_CLI}", err, sizeof err), 0);
    CU_ASSERT_EQUAL(pipeline_add_header(p, "X-Team:cli", err, sizeof err), 0);
    CU_ASSERT_EQUAL(pipeline_add_header(p, "X-Cli:   spaced value ", err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(pipeline_resolve(p, "http://h", err, sizeof err), 0);
    const struct curl_slist *a = pipeline_headers(&p->stages[0], NULL), *b = pipeline_headers(&p->stages[1], NULL),
                            *c = pipeline_headers(&p->stages[2], NULL);
    /* a: its own X-BOTH wins over the defaults'; the defaults' X-Team over --header's. */
    CU_ASSERT(slist_has(a, "X-BOTH: from-stage"));
    CU_ASSERT_EQUAL(count_named(a, "x-both"), 1);
    CU_ASSERT(slist_has(a, "X-Team: vision"));
    CU_ASSERT_EQUAL(count_named(a, "x-team"), 1);
    CU_ASSERT(slist_has(a, "X-Own: 1"));
    CU_ASSERT(slist_has(a, "Authorization: Bearer cli-secret-value"));
    CU_ASSERT(slist_has(a, "X-Cli: spaced value "));
    CU_ASSERT(slist_has(a, "Content-Type: application/json"));
    CU_ASSERT(slist_has(a, "Expect:"));
    /* b: nothing of its own. */
    CU_ASSERT(slist_has(b, "x-both: from-defaults"));
    CU_ASSERT(slist_has(b, "X-Team: vision"));
    CU_ASSERT(slist_has(b, "Authorization: Bearer cli-secret-value"));
    /* c: its authorization replaces --header's, its Content-Type our fixed one. */
    CU_ASSERT(slist_has(c, "authorization: Token c"));
    CU_ASSERT_EQUAL(count_named(c, "authorization"), 1);
    CU_ASSERT(slist_has(c, "Content-Type: text/x"));
    CU_ASSERT_EQUAL(count_named(c, "content-type"), 1);
    /* Again: the same lists, rebuilt. */
    CU_ASSERT_EQUAL(pipeline_resolve(p, "http://h", err, sizeof err), 0);
    CU_ASSERT_EQUAL(count_named(pipeline_headers(&p->stages[0], NULL), "x-both"), 1);
    CU_ASSERT_EQUAL(count_named(pipeline_headers(&p->stages[1], NULL), "authorization"), 1);
    /* An unset variable in a --header: named, with "--header", never a value. */
    CU_ASSERT_EQUAL(pipeline_add_header(p, "X-Other: ${ANNOTATE_TEST_UNSET_CLI}", err, sizeof err), 0);
    CU_ASSERT_EQUAL(pipeline_resolve(p, "http://h", err, sizeof err), -1);
    CHECKF(strstr(err, "--header") && strstr(err, "ANNOTATE_TEST_UNSET_CLI") && !strstr(err, "cli-secret"), "%s", err);
    pipeline_free(p);

    /* pipeline_add_header: what is refused, and that the value is never shown. */
    p = parse_str("{\"stages\": [{\"name\": \"a\", \"url\": \"/a\"}]}", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    static const struct {
        const char *line, *want;
    } bad[] = {
        {"s3cr3t-token-no-colon", "no ':'"},
        {"Bearer s3cr3t-token: x", "not a header name"},
        {": s3cr3t-token", "not a header name"},
        {"X-Key: s3cr3t-token\r\nX-Injected: 1", "line break"},
        {"X-Key: s3cr3t-token\n", "line break"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CU_ASSERT_EQUAL(pipeline_add_header(p, bad[i].line, err, sizeof err), -1);
        CHECKF(strstr(err, "--header") && strstr(err, bad[i].want) && !strstr(err, "s3cr3t"), "case %zu: %s", i, err);
    }
    CU_ASSERT_EQUAL(pipeline_add_header(p, "X-Key: s3cr3t-token", err, sizeof err), 0);
    CU_ASSERT_EQUAL(pipeline_add_header(p, "x-key: other-s3cr3t", err, sizeof err), -1);
    CHECKF(strstr(err, "twice") && strstr(err, "x-key") && !strstr(err, "s3cr3t"), "%s", err);
    /* A stage named the same as a --header still replaces it, whatever the case. */
    pipeline_free(p);
    unsetenv("ANNOTATE_TEST_CLI");
}


/* ${file:PATH}: the content, one trailing newline removed; errors name the path, not the
 * content. */
static void test_header_file(void)
{
    char dir[] = "/tmp/annotate-hdr-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    static const struct {
        const char *content;
        size_t len;
        const char *want; /* the header line, or NULL: refused */
    } cases[] = {
        {"f1le-t0ken-abc", 14, "Authorization: Bearer f1le-t0ken-abc"},
        {"f1le-t0ken-abc\n", 15, "Authorization: Bearer f1le-t0ken-abc"},
        {"f1le-t0ken-abc\r\n", 16, "Authorization: Bearer f1le-t0ken-abc"},
        {"  spaced f1le-t0ken \n", 21, "Authorization: Bearer   spaced f1le-t0ken "},
        {"", 0, "Authorization: Bearer "},
        {"f1le-t0ken-abc\n\n", 16, NULL},
        {"f1le-t0ken\nX-Injected: 1\n", 25, NULL},
        {"f1le-t0ken\rabc", 14, NULL},
        {"f1le\0t0ken", 10, NULL},
    };
    char path[300], text[600], err[768];
    snprintf(path, sizeof path, "%s/token", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CU_ASSERT_FATAL(write_file(path, cases[i].content, cases[i].len) == 0);
        snprintf(text, sizeof text,
                 "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"headers\": {\"Authorization\": \"Bearer ${file:%s}\"}}]}",
                 path);
        struct pipeline *p = parse_str(text, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        err[0] = 0;
        int rc = pipeline_resolve(p, "http://h", err, sizeof err);
        if (cases[i].want) {
            CHECKF(rc == 0 && slist_has(pipeline_headers(&p->stages[0], NULL), cases[i].want), "case %zu: rc %d %s", i, rc, err);
        } else {
            CHECKF(rc == -1, "case %zu: accepted", i);
            CHECKF(strstr(err, "stage 1 (m)") && strstr(err, path) && strstr(err, "Authorization"), "case %zu: %s", i, err);
            CHECKF(!strstr(err, "t0ken") && !strstr(err, "Injected"), "case %zu: the content shows: %s", i, err);
        }
        pipeline_free(p);
    }
    /* The same through "defaults" and --header. */
    CU_ASSERT_FATAL(write_file(path, "f1le-t0ken-abc\n", 15) == 0);
    snprintf(text, sizeof text,
             "{\"defaults\": {\"headers\": {\"X-D\": \"${file:%s}\"}}, \"stages\": [{\"name\": \"m\", \"url\": \"/m\"}]}", path);
    struct pipeline *p = parse_str(text, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    snprintf(text, sizeof text, "X-C: k=${file:%s};", path);
    CU_ASSERT_EQUAL(pipeline_add_header(p, text, err, sizeof err), 0);
    CU_ASSERT_EQUAL(pipeline_resolve(p, "http://h", err, sizeof err), 0);
    CU_ASSERT(slist_has(pipeline_headers(&p->stages[0], NULL), "X-D: f1le-t0ken-abc"));
    CU_ASSERT(slist_has(pipeline_headers(&p->stages[0], NULL), "X-C: k=f1le-t0ken-abc;"));
    pipeline_free(p);

    /* Missing, a directory, too large, no path: exit-2 errors naming the path and who uses it. */
    char big[70000];
    memset(big, 'a', sizeof big);
    char bigpath[320];
    snprintf(bigpath, sizeof bigpath, "%s/big", dir);
    CU_ASSERT_FATAL(write_file(bigpath, big, sizeof big) == 0);
    struct {
        const char *where, *ref, *want;
    } errs[] = {
        {"defaults", "${file:/nonexistent/annotate/token}", "No such file"},
        {"defaults", "${file:/tmp}", "a directory"},
        {"header", "${file:/dev/null}", "not a regular file"},
        {"header", "${file:}", "no path"},
        {"defaults", NULL, "larger than 64 KiB"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        char ref[400];
        snprintf(ref, sizeof ref, "%s", errs[i].ref ? errs[i].ref : "");
        if (!errs[i].ref)
            snprintf(ref, sizeof ref, "${file:%s}", bigpath);
        if (!strcmp(errs[i].where, "defaults"))
            snprintf(text, sizeof text, "{\"defaults\": {\"headers\": {\"X-K\": \"%s\"}}, \"stages\": [{\"name\": \"m\", \"url\": \"/m\"}]}",
                     ref);
        else
            snprintf(text, sizeof text, "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"headers\": {\"X-K\": \"%s\"}}]}", ref);
        p = parse_str(text, err, sizeof err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT_EQUAL(pipeline_resolve(p, "http://h", err, sizeof err), -1);
        CHECKF(strstr(err, errs[i].want) && strstr(err, "X-K") &&
                   strstr(err, !strcmp(errs[i].where, "defaults") ? "\"defaults\"" : "stage 1 (m)"),
               "case %zu: %s", i, err);
        CHECKF(!strstr(err, "aaaa"), "case %zu: the content shows", i);
        pipeline_free(p);
    }
    unlink(bigpath);
    unlink(path);
    rmdir(dir);
}

/* A 401 re-reads the ${file:} values (pipeline_refresh_headers): a changed file replaces the
 * stage's list once and bumps its generation, a caller with an older generation is told to retry
 * without a second read, an unchanged file changes nothing, the list a request may still hold
 * stays valid, and a stage without a file value is never re-read. */
static void test_header_refresh(void)
{
    char dir[] = "/tmp/annotate-hdr-XXXXXX", path[300], text[600], err[768];
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/token", dir);
    CU_ASSERT_FATAL(write_file(path, "t0ken-one\n", 10) == 0);
    snprintf(text, sizeof text,
             "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", \"headers\": {\"Authorization\": \"Bearer ${file:%s}\"}},"
             " {\"name\": \"plain\", \"url\": \"/p\", \"headers\": {\"X-K\": \"v\"}}]}",
             path);
    struct pipeline *p = parse_str(text, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL_FATAL(pipeline_resolve(p, "http://h", err, sizeof err), 0);
    CU_ASSERT(p->stages[0].file_headers && !p->stages[1].file_headers);
    unsigned gen = 99;
    const struct curl_slist *before = pipeline_headers(&p->stages[0], &gen);
    CU_ASSERT_EQUAL(gen, 0);
    CU_ASSERT(slist_has(before, "Authorization: Bearer t0ken-one"));
    CU_ASSERT_EQUAL(pipeline_refresh_headers(p, 0, 0), 0); /* the file did not change */
    CU_ASSERT_EQUAL(pipeline_refresh_headers(p, 1, 0), 0); /* no value from a file */

    CU_ASSERT_FATAL(write_file(path, "t0ken-two\n", 10) == 0);
    CU_ASSERT_EQUAL(pipeline_refresh_headers(p, 0, 0), 1);
    const struct curl_slist *after = pipeline_headers(&p->stages[0], &gen);
    CU_ASSERT_EQUAL(gen, 1);
    CU_ASSERT(slist_has(after, "Authorization: Bearer t0ken-two"));
    CU_ASSERT(slist_has(after, "Content-Type: application/json"));
    CU_ASSERT(slist_has(before, "Authorization: Bearer t0ken-one")); /* still valid */
    /* A request sent with generation 0 that comes back later: already re-read, retry it. */
    CU_ASSERT_FATAL(write_file(path, "t0ken-three\n", 12) == 0);
    CU_ASSERT_EQUAL(pipeline_refresh_headers(p, 0, 0), 1);
    CU_ASSERT_PTR_EQUAL(pipeline_headers(&p->stages[0], &gen), after);
    CU_ASSERT_EQUAL(gen, 1);
    /* A file that cannot be read any more: the list stays as it is. */
    unlink(path);
    CU_ASSERT_EQUAL(pipeline_refresh_headers(p, 0, 1), 0);
    CU_ASSERT_PTR_EQUAL(pipeline_headers(&p->stages[0], &gen), after);
    pipeline_free(p);
    rmdir(dir);
}

/* The base URL (--server): checked on its own, and named when a relative stage URL needs it. */
/* "column" is compiled as "result" is; "csv" takes true, false or "text". */
static void test_column_and_csv_text(void)
{
    char err[512];
    struct pipeline *p = parse_str("{\"stages\": [{\"name\": \"d\", \"url\": \"/d\", \"result\": \"[.boxes[].b]\","
                                   " \"column\": \".boxes\", \"csv\": \"text\"},"
                                   " {\"name\": \"e\", \"url\": \"/e\", \"csv\": false}, {\"name\": \"f\", \"url\": \"/f\"}]}",
                                   err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->stages[0].csv, STAGE_CSV_TEXT);
    CU_ASSERT_EQUAL(p->stages[1].csv, STAGE_CSV_NONE);
    CU_ASSERT_EQUAL(p->stages[2].csv, STAGE_CSV_JSON);
    CU_ASSERT_EQUAL(pipeline_csv_columns(p), 2);
    CU_ASSERT(p->stages[0].column.text && !strcmp(p->stages[0].column.text, ".boxes") && p->stages[0].column.plain);
    CU_ASSERT_PTR_NULL(p->stages[2].column.text); /* its cell is its result */
    pipeline_free(p);
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"d\", \"url\": \"/d\", \"column\": \".a | [\"}]}", err,
                                 sizeof err));
    CHECKF(strstr(err, "column") != NULL, "the error names \"column\": %s", err);
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"d\", \"url\": \"/d\", \"column\": 3}]}", err, sizeof err));
    CU_ASSERT_PTR_NULL(parse_str("{\"stages\": [{\"name\": \"d\", \"url\": \"/d\", \"csv\": \"plain\"}]}", err, sizeof err));
    CHECKF(strstr(err, "\"text\"") != NULL, "the error names \"text\": %s", err);
}

static void test_check_base(void)
{
    static const char *const good[] = {"http://h", "https://h:8443", "http://127.0.0.1:8080/", "http://h/v1/", "http://[::1]:80"};
    static const char *const bad[] = {"htp://h", "h:80", "", "http://", "https:///x", "http://h x", "http://h\r\nX: 1",
                                      "http://h/\tx", "http://h/v1?k=1", "http://h/#top", "ftp://h", "HTTP//h"};
    char err[256];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECKF(pipeline_check_base(good[i], err, sizeof err) == 0, "%s: %s", good[i], err);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(pipeline_check_base(bad[i], err, sizeof err) == -1 && err[0], "'%s' accepted", bad[i]);
    struct pipeline *p = parse_str("{\"stages\": [{\"name\": \"abs\", \"url\": \"http://x/a\"}, {\"name\": \"rel\", \"url\": \"/r\"}]}",
                                   err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(pipeline_resolve(p, "htp://models", err, sizeof err), -1);
    CHECKF(strstr(err, "stage 2 (rel)") && strstr(err, "--server \"htp://models\"") && strstr(err, "http://"), "%s", err);
    CU_ASSERT_EQUAL(pipeline_resolve(p, "http://h\r\nX-Injected: 1", err, sizeof err), -1);
    CHECKF(strstr(err, "--server") && !strchr(err, '\r') && !strchr(err, '\n'), "%s", err);
    pipeline_free(p);
}

int register_pipeline(void)
{
    CU_pSuite s = CU_add_suite("pipeline", NULL, NULL);
    if (!s)
        return -1;
    if (!CU_add_test(s, "built-in default equals fixtures/pipeline.json", test_default_equals_fixture) ||
        !CU_add_test(s, "good_*.json fixtures load, resolve, mean what they say", test_good_files) ||
        !CU_add_test(s, "bad_*.json fixtures: -1, file, stage, what is wrong", test_bad_files) ||
        !CU_add_test(s, "missing file", test_load_missing_file) ||
        !CU_add_test(s, "inline texts: line numbers, shapes, limits", test_parse_inline) ||
        !CU_add_test(s, "resolve: URL joining, http(s) only", test_resolve_urls) ||
        !CU_add_test(s, "resolve: ${ENV} expansion; errors name, never show", test_resolve_env) ||
        !CU_add_test(s, "load: a directory, an unreadable file", test_load_dir_unreadable) ||
        !CU_add_test(s, "only white space after the object; no NUL in a string", test_parse_trailing_and_nul) ||
        !CU_add_test(s, "url: no blanks or control characters", test_parse_url_chars) ||
        !CU_add_test(s, "fields: {\"reslt_of\": ...} is a typo, did you mean result_of", test_fields_typo) ||
        !CU_add_test(s, "headers: stage over defaults over --header, one per name", test_header_precedence) ||
        !CU_add_test(s, "headers: ${file:PATH}, errors name the path, never the content", test_header_file) ||
        !CU_add_test(s, "headers: a 401 re-reads ${file:PATH} values, once per generation", test_header_refresh) ||
        !CU_add_test(s, "base URL (--server) checked and named", test_check_base) ||
        !CU_add_test(s, "\"column\" compiled as \"result\"; \"csv\": true, false or \"text\"", test_column_and_csv_text))
        return -1;
    return 0;
}
