/* Suite "batch": a stage's "batch": {"size", "max_wait_ms", "item"}.
 *
 *   - the seed chain with every stage batched, against the mock's batch endpoints (--batch all,
 *     which answer {"result": [r1, r2, ...]}), over the hostile tree: every row as predicted from
 *     the image (each item's cell is its element of the list, byte for byte), under every
 *     strategy; under curl-multi the mock saw several items per request;
 *   - a template batch ({"instances": "{{batch}}"}, item {"name": "{{name}}", "b64": "{{image}}"})
 *     against tests/servers/batchy.py: results are the answer's elements; a per-item "error"
 *     fails only its image; a batch refused as a whole (400) is split, so that only the bad
 *     image fails; an answer with the wrong number of results is retried, then fails;
 *   - the load-time errors (exit 2). */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "e2e.h"
#include "common/json.h"
#include "pipeline/template.h"
#include "util.h"
#include "proc.h"
#include "tree.h"

/* The seed chain, each stage with "batch": {"size": size, "max_wait_ms": 30}. */
static int write_seed_batched(const char *path, int size)
{
    char b[96], text[2048];
    snprintf(b, sizeof b, "\"batch\": {\"size\": %d, \"max_wait_ms\": 30}", size);
    snprintf(text, sizeof text,
             "{\"stages\": ["
             "{\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null}, %s},"
             "{\"name\": \"model_02\", \"url\": \"/model_02\", \"fields\": {\"model_03\": null}, %s},"
             "{\"name\": \"model_03\", \"url\": \"/model_03\", \"fields\": {\"model_03\": null}, \"when\": [\"model_01\", \"model_02\"], %s},"
             "{\"name\": \"model_04\", \"url\": \"/model_04\", \"fields\": {\"model_03\": {\"result_of\": \"model_03\"}}, \"csv\": false, %s},"
             "{\"name\": \"model_05\", \"url\": \"/model_05\", \"fields\": {\"model_03\": null}, "
             "\"input\": {\"each\": \"model_04\", \"array\": \"sub-img\", \"field\": \"img\"}, %s}]}",
             b, b, b, b, b);
    return write_file(path, text, strlen(text));
}

static void test_seed_every_strategy(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_hostile(&t, "batch"), 0);
    struct mock_proc m;
    const char *margs[] = {"--batch", "all", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    CU_ASSERT_EQUAL_FATAL(write_seed_batched(cfg, 8), 0);
    static const char *const strategies[] = {"curl-multi", "serial", "threads", "processes", "load=threads,query=processes"};
    for (int s = 0; s < 5; s++) {
        CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
        char out[8192];
        const char *extra[] = {"--config", cfg, "--strategy", strategies[s], "--workers", "4", NULL};
        int rc = e2e_run(out, sizeof out, tmo(120), t.root, t.csv, m.base_url, extra);
        /* The hostile tree holds images the mock refuses: exit 1, and those rows say why. */
        CHECKF(rc == 0 || rc == 1, "%s: exit %d: %s", strategies[s], rc, out);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
        CHECKF(e2e_check_results(&c, t.paths, t.n, NULL, NULL) == 0, "%s: rows not as predicted", strategies[s]);
        e2e_csv_free(&c);
        cJSON *st = mock_stats(&m);
        long req = mock_stat(st, "requests.model_01"), items = mock_stat(st, "endpoints.model_01.items");
        cJSON_Delete(st);
        if (s == 0)
            CHECKF(req > 0 && items >= 3 * req, "curl-multi: %ld items in %ld model_01 requests: not batched", items, req);
        else
            CHECKF(req == items, "%s: %ld items in %ld model_01 requests: the blocking strategies send batches of one",
                   strategies[s], items, req);
    }
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* A generated tree through the batched seed chain with these options: every row predicted, and
 * (batched_min > 0) at least that many items per model_01 request on average. */
static void run_generated(const char *tag, size_t n, const char *const *opts, double batched_min)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, tag, n, 7), 0);
    struct mock_proc m;
    const char *margs[] = {"--batch", "all", "--latency-ms", "2", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    CU_ASSERT_EQUAL_FATAL(write_seed_batched(cfg, 16), 0);
    const char *extra[32] = {"--config", cfg, "--stats-json", t.sj};
    int k = 4;
    for (int i = 0; opts[i] && k < 31; i++)
        extra[k++] = opts[i];
    extra[k] = NULL;
    char out[8192];
    int rc = e2e_run(out, sizeof out, tmo(300), t.root, t.csv, m.base_url, extra);
    CHECKF(rc == 0, "%s: exit %d: %s", tag, rc, out);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CHECKF(e2e_check_results(&c, t.paths, t.n, NULL, NULL) == 0, "%s: rows not as predicted", tag);
    e2e_csv_free(&c);
    cJSON *sj = e2e_read_json(t.sj);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(sj, "batches"), "model_01");
    double sends = e2e_json_num(b, "http_requests"), items = e2e_json_num(b, "items");
    CHECKF(items == (double)n && sends > 0 && items / sends >= batched_min,
           "%s: --stats-json batches.model_01: %.0f items in %.0f requests", tag, items, sends);
    cJSON_Delete(sj);
    mock_stop(&m);
    e2e_tree_free(&t);
}

static void test_serial_small(void)
{
    const char *serial[] = {"--strategy", "serial", NULL};
    run_generated("batch-serial", 20, serial, 1);
    const char *multi[] = {"--strategy", "curl-multi", "--concurrency", "8", NULL};
    run_generated("batch-multi", 40, multi, 2);
}

static void test_concurrent(void)
{
    const char *loops[] = {"--strategy", "curl-multi", "--loops", "2", "--concurrency", "16", NULL};
    run_generated("batch-loops", 400, loops, 4);
    const char *threads[] = {"--strategy", "threads", "--workers", "6", NULL};
    run_generated("batch-threads", 200, threads, 1);
}

/* ---- against tests/servers/batchy.py ---- */

static int batchy_start(struct mock_proc *m)
{
    const char *script = "tests/servers/batchy.py";
    struct stat sb;
    if (stat(script, &sb) != 0)
        script = "../tests/servers/batchy.py";
    const char *argv[] = {"python3", script, NULL};
    return listener_start(m, argv, 0);
}

/* n files img000.png.. (3 bytes apart in size), and "bad" ones at the indexes in bad[]. */
static int make_tree(const char *root, int n, const int *bad, int n_bad)
{
    if (mkdir(root, 0755) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        int is_bad = 0;
        for (int k = 0; k < n_bad; k++)
            is_bad |= bad[k] == i;
        char p[700], data[400];
        snprintf(p, sizeof p, "%s/%s%03d.png", root, is_bad ? "bad" : "img", i);
        memset(data, 'a' + i % 26, sizeof data);
        if (write_file(p, data, (size_t)(30 + i * 3)) != 0)
            return -1;
    }
    return 0;
}

/* A fresh directory from tmpl (mkdtemp's XXXXXX), with its tree of n files (bad[] as make_tree
 * has them) and the names of the run's files in it. 0 or -1. */
static int batch_dirs(char *base, char *root, char *csv, char *cfg, size_t len, int n, const int *bad, int n_bad)
{
    if (!mkdtemp(base))
        return -1;
    snprintf(root, len, "%s/t", base);
    snprintf(csv, len, "%s/r.csv", base);
    snprintf(cfg, len, "%s/p.json", base);
    return make_tree(root, n, bad, n_bad);
}

static int write_template(const char *path, const char *endpoint, const char *base)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"stages\": [{\"name\": \"m\", \"url\": \"%s%s\", \"retries\": 2,"
             " \"body\": {\"instances\": \"{{batch}}\", \"n\": \"{{batch.size}}\"},"
             " \"batch\": {\"size\": 8, \"max_wait_ms\": 50, \"item\": {\"name\": \"{{name}}\", \"b64\": \"{{image}}\"}},"
             " \"result\": \".predictions\", \"error\": \".error\"}]}",
             base, endpoint);
    return write_file(path, text, strlen(text));
}

/* The row of file name in the CSV (path, status, m, error, attempts, elapsed_ms), or NULL. */
static const struct e2e_row *row_of(const struct e2e_csv *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        const char *slash = strrchr(c->rows[i].f[0].s, '/');
        if (slash && !strcmp(slash + 1, name))
            return &c->rows[i];
    }
    return NULL;
}

/* Runs the template pipeline on endpoint over n files with bad[]; checks each row: the bad ones
 * failed with want_bad in the error (or, want_bad NULL, every row failed with want_all), the
 * others ok with {"name":N,"len":L}. Returns the server's stats. */
static cJSON *run_template(const char *endpoint, int n, const int *bad, int n_bad, const char *want_bad,
                           const char *want_all)
{
    struct mock_proc srv;
    if (batchy_start(&srv) != 0) {
        CU_FAIL("tests/servers/batchy.py did not start");
        return NULL;
    }
    char base[] = "/tmp/annotate-batch-XXXXXX", root[600], csv[600], cfg[600];
    CU_ASSERT_EQUAL_FATAL(batch_dirs(base, root, csv, cfg, sizeof root, n, bad, n_bad), 0);
    CU_ASSERT_EQUAL_FATAL(write_template(cfg, endpoint, srv.base_url), 0);
    char out[8192];
    const char *extra[] = {"--config", cfg, "--concurrency", "4", "--backoff-ms", "1", "--backoff-max-ms", "5", NULL};
    int rc = e2e_run(out, sizeof out, tmo(60), root, csv, srv.base_url, extra);
    CHECKF(rc == (n_bad || want_all ? 1 : 0), "%s: exit %d: %s", endpoint, rc, out);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(csv, &c), 0);
    CHECKF(c.n == (size_t)n, "%s: %zu rows for %d files", endpoint, c.n, n);
    for (int i = 0; i < n; i++) {
        int is_bad = 0;
        for (int k = 0; k < n_bad; k++)
            is_bad |= bad[k] == i;
        char name[32], cell[160];
        snprintf(name, sizeof name, "%s%03d.png", is_bad ? "bad" : "img", i);
        const struct e2e_row *r = row_of(&c, name);
        CHECKF(r != NULL && r->n >= 4, "%s: no row for %s", endpoint, name);
        if (!r || r->n < 4)
            continue;
        if (want_all) {
            CHECKF(!strcmp(r->f[1].s, "failed") && strstr(r->f[3].s, want_all), "%s: %s: %s %s", endpoint, name,
                   r->f[1].s, r->f[3].s);
        } else if (is_bad) {
            CHECKF(!strcmp(r->f[1].s, "failed") && strstr(r->f[3].s, want_bad) && !r->f[2].s[0], "%s: %s: %s %s",
                   endpoint, name, r->f[1].s, r->f[3].s);
        } else {
            /* base64 of 30 + 3i bytes: 4 * ceil(len / 3) characters */
            snprintf(cell, sizeof cell, "{\"name\": \"%s\", \"len\": %d}", name, 4 * ((30 + i * 3 + 2) / 3));
            CHECKF(!strcmp(r->f[1].s, "ok") && !strcmp(r->f[2].s, cell), "%s: %s: %s [%s] want [%s]", endpoint, name,
                   r->f[1].s, r->f[2].s, cell);
        }
    }
    e2e_csv_free(&c);
    char url[200];
    snprintf(url, sizeof url, "%s/stats", srv.base_url);
    long status = 0;
    char *resp = NULL;
    http_request(url, NULL, NULL, 0, &status, &resp, NULL);
    cJSON *stats = resp ? cJSON_Parse(resp) : NULL;
    free(resp);
    mock_stop(&srv);
    tree_rm(base);
    return stats;
}

static long stat_of(const cJSON *s, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, k);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

static void test_template_results(void)
{
    cJSON *s = run_template("/ok", 40, NULL, 0, NULL, NULL);
    CHECKF(s && stat_of(s, "items") == 40 && stat_of(s, "requests") <= 20, "40 items in %ld requests",
           stat_of(s, "requests"));
    cJSON_Delete(s);
}

static void test_per_item_error(void)
{
    const int bad[] = {3, 17};
    cJSON *s = run_template("/perr", 40, bad, 2, "refused bad", NULL);
    CHECKF(s && stat_of(s, "items") == 40, "the per-item errors were retried: %ld items", stat_of(s, "items"));
    cJSON_Delete(s);
}

static void test_split(void)
{
    const int bad[] = {5};
    cJSON *s = run_template("/whole", 40, bad, 1, "HTTP 400", NULL);
    /* The batch holding bad005 was refused, then each of its items went alone. */
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(s, "sizes");
    int ones = 0;
    for (const cJSON *e = sizes ? sizes->child : NULL; e; e = e->next)
        ones += e->valuedouble == 1;
    CHECKF(ones >= 2, "%d batches of one after the split", ones);
    cJSON_Delete(s);
}

static void test_wrong_count(void)
{
    cJSON *s = run_template("/count", 12, NULL, 0, NULL, "results for a batch of");
    /* retries 2: three attempts of every batch */
    CHECKF(s && stat_of(s, "items") == 36, "%ld items sent for 12 images with 3 attempts each", stat_of(s, "items"));
    cJSON_Delete(s);
}

/* ---- load-time errors ---- */

static void test_config_errors(void)
{
    static const struct {
        const char *stage, *want;
    } cases[] = {
        {"\"batch\": {\"size\": 0}", "\"size\" must be a whole number from 1 to 256"},
        {"\"batch\": {\"size\": 300}", "from 1 to 256"},
        {"\"batch\": {\"max_wait_ms\": 5}", "needs \"size\""},
        {"\"batch\": {\"size\": 4, \"wait\": 5}", "unknown key \"wait\""},
        {"\"batch\": 4", "must be an object"},
        {"\"batch\": {\"size\": 4, \"max_wait_ms\": -1}", "max_wait_ms"},
        {"\"batch\": {\"size\": 4, \"item\": \"{{image}}\"}", "goes with a \"body\""},
        {"\"batch\": {\"size\": 4}, \"body\": {\"x\": \"{{image}}\"}", "{{image}} goes in \"batch\""},
        {"\"batch\": {\"size\": 4}, \"body\": {\"x\": 1}", "must hold \"{{batch}}\""},
        {"\"batch\": {\"size\": 4}, \"body\": [\"{{batch}}\", \"{{batch}}\"]", "once"},
        {"\"batch\": {\"size\": 4}, \"body\": {\"x\": \"a {{batch}}\"}", "whole string"},
        {"\"body\": {\"x\": \"{{batch}}\"}", "belongs in the body of a stage with \"batch\""},
        {"\"batch\": {\"size\": 4}, \"form\": {\"f\": \"{{image.file}}\"}", "multipart body holds one image"},
        {"\"batch\": {\"size\": 4}, \"body\": \"{{batch}}\", \"batch\": {\"size\": 2}", "appears twice"},
        {"\"batch\": {\"size\": 4, \"item\": \"{{image.bytes}}\"}, \"body\": {\"i\": \"{{batch}}\"}", "raw"},
    };
    char base[] = "/tmp/annotate-batchcfg-XXXXXX", cfg[600], root[600], csv[600];
    CU_ASSERT_EQUAL_FATAL(batch_dirs(base, root, csv, cfg, sizeof root, 2, NULL, 0), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", %s}]}", cases[i].stage);
        CU_ASSERT_EQUAL_FATAL(write_file(cfg, text, strlen(text)), 0);
        char out[4096];
        const char *extra[] = {"--config", cfg, NULL};
        int rc = e2e_run(out, sizeof out, tmo(20), root, csv, "http://127.0.0.1:9", extra);
        CHECKF(rc == 2 && strstr(out, cases[i].want), "%s: exit %d, want \"%s\": %s", cases[i].stage, rc,
               cases[i].want, out);
    }
    tree_rm(base);
}

/* ---- units ---- */

static int count_cb(void *arg, const char *v, size_t n)
{
    char *acc = arg;
    strncat(acc, v, n);
    strcat(acc, "|");
    return 0;
}

static void test_json_elements(void)
{
    char acc[256] = "";
    const char *t = " [ 1e999 , \"a,b\" ,{\"x\":[1,2]}, null ] ";
    CU_ASSERT_EQUAL(json_elements(t, strlen(t), count_cb, acc), 4);
    CU_ASSERT_STRING_EQUAL(acc, "1e999|\"a,b\"|{\"x\":[1,2]}|null|");
    CU_ASSERT_EQUAL(json_elements("[]", 2, NULL, NULL), 0);
    CU_ASSERT_EQUAL(json_elements("{\"a\":1}", 7, NULL, NULL), -1);
    CU_ASSERT_EQUAL(json_elements("7", 1, NULL, NULL), -1);
}

static void test_seed_batch_body(void)
{
    struct body b;
    struct seed_field f[] = {{"model_03", "null", -1}};
    CU_ASSERT_EQUAL_FATAL(body_compile_seed(&b, f, 1), 0);
    char err[200];
    CU_ASSERT_EQUAL_FATAL(body_batch(&b, NULL, err, sizeof err), 0);
    struct filled items[3];
    const struct filled *ip[3];
    const char *b64[] = {"QQ==", "Qg==", "Qw=="};
    for (int i = 0; i < 3; i++) {
        struct fill_src src = {.b64 = b64[i], .b64_len = 4, .b64_ours = 1, .mime = "image/png", .path = "p",
                               .path_len = 1, .name = "p"};
        CU_ASSERT_EQUAL_FATAL(tmpl_fill(&b.t, &src, &items[i], err, sizeof err), 0);
        ip[i] = &items[i];
    }
    struct filled all;
    CU_ASSERT_EQUAL_FATAL(batch_fill(&b.outer, ip, 3, &all), 0);
    char text[512];
    size_t pos = 0, n = filled_read(&all, &pos, text, sizeof text - 1);
    text[n] = 0;
    CU_ASSERT_EQUAL(n, all.total);
    CU_ASSERT_STRING_EQUAL(text, "[{\"im_str\":\"QQ==\",\"model_03\":null},{\"im_str\":\"Qg==\",\"model_03\":null},"
                                 "{\"im_str\":\"Qw==\",\"model_03\":null}]");
    filled_free(&all);
    for (int i = 0; i < 3; i++)
        filled_free(&items[i]);
    body_free(&b);
}

int register_batch(void)
{
    CU_pSuite s = CU_add_suite("batch", NULL, NULL);
    if (!s)
        return -1;
    return !CU_add_test(s, "json_elements: each element's exact bytes", test_json_elements) ||
                   !CU_add_test(s, "the seed's batch body is the list of its items", test_seed_batch_body) ||
                   !CU_add_test(s, "seed chain batched: rows as predicted under every strategy", test_seed_every_strategy) ||
                   !CU_add_test(s, "template batch: each item its element, byte for byte", test_template_results) ||
                   !CU_add_test(s, "a per-item error fails only its image", test_per_item_error) ||
                   !CU_add_test(s, "a batch refused as a whole is split: only the bad image fails", test_split) ||
                   !CU_add_test(s, "the wrong number of results is retried, then fails", test_wrong_count) ||
                   !CU_add_test(s, "batch set-up mistakes exit 2", test_config_errors)
               ? -1
               : 0;
}

/* Small runs for make valgrind (which runs the suites named "serial"): the batch-of-one path and
 * curl-multi's batches. */
int register_batch_serial(void)
{
    CU_pSuite s = CU_add_suite("batch serial", NULL, NULL);
    return s && CU_add_test(s, "seed chain batched, serial and curl-multi, under valgrind too", test_serial_small) ? 0 : -1;
}

/* For make tsan (the suites named "concurrent"): two event loops gathering batches, and threads. */
int register_batch_concurrent(void)
{
    CU_pSuite s = CU_add_suite("batch concurrent", NULL, NULL);
    return s && CU_add_test(s, "seed chain batched with --loops 2, and with threads", test_concurrent) ? 0 : -1;
}
