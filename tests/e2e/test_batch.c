/* Suite "batch": a stage's "batch": {"size", "max_wait_ms", "item"}.
 *
 *   - the seed chain with every stage batched, against the mock's batch endpoints (--batch all,
 *     which answer {"result": [r1, r2, ...]}), over the hostile tree: every row as predicted from
 *     the image (each item's cell is its element of the list, byte for byte), under every
 *     strategy; under curl-multi the mock saw several items per request;
 *   - a template batch ({"instances": "{{batch}}"}, item {"name": "{{name}}", "b64": "{{image}}"})
 *     against tests/servers/batchy.py: results are the answer's elements; a per-item "error"
 *     fails only its image; a batch refused as a whole (400), or whose retries run out (a 500
 *     for one image in it, an answer that leaves one image out), is split, so that only the bad
 *     image fails; an answer with the wrong number of results is retried, split, then fails;
 *     --max-answer-bytes holds per image (a batch's answer may hold it for each); the last
 *     batch goes as soon as the folder is done, and a batch still gathering goes on Ctrl-C;
 *   - the load-time errors (exit 2). */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>

#include "batchy.h"
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

/* ---- against tests/servers/batchy.py (batchy.h) ---- */

/* A batch of 8 on batchy.py's endpoint over n files, bad[] the bad ones. */
static cJSON *run_template(const char *endpoint, int n, const int *bad, int n_bad, const char *want_bad,
                           const char *want_all)
{
    struct batchy_case c = {endpoint, n, bad, n_bad, want_bad, want_all, .batch = 8};
    return batchy_run(&c);
}

static void test_template_results(void)
{
    cJSON *s = run_template("/ok", 40, NULL, 0, NULL, NULL);
    CHECKF(s && batchy_stat(s, "items") == 40 && batchy_stat(s, "requests") <= 20, "40 items in %ld requests",
           batchy_stat(s, "requests"));
    cJSON_Delete(s);
}

static void test_per_item_error(void)
{
    const int bad[] = {3, 17};
    cJSON *s = run_template("/perr", 40, bad, 2, "refused bad", NULL);
    CHECKF(s && batchy_stat(s, "items") == 40, "the per-item errors were retried: %ld items", batchy_stat(s, "items"));
    cJSON_Delete(s);
}

static void test_split(void)
{
    const int bad[] = {5};
    cJSON *s = run_template("/whole", 40, bad, 1, "HTTP 400", NULL);
    /* The batch holding bad005 was refused, then each of its items went alone. */
    CHECKF(batchy_singles(s) >= 2, "%d batches of one after the split", batchy_singles(s));
    cJSON_Delete(s);
}

/* Images the server always answers 500 for: their batches' retries run out, then each member
 * goes alone (with retries of its own), so that only those images fail. */
static void test_split_after_retries(void)
{
    const int bad[] = {5, 22, 23};
    cJSON *s = run_template("/poison", 40, bad, 3, "HTTP 500", NULL);
    CHECKF(batchy_singles(s) >= 2 * 3, "%d batches of one after the splits", batchy_singles(s));
    cJSON_Delete(s);
}

/* An answer that leaves out one image's result has the wrong count for its batch: retried, then
 * split, so that the image left out fails alone. */
static void test_split_after_wrong_count(void)
{
    const int bad[] = {9};
    cJSON_Delete(run_template("/drop", 40, bad, 1, "0 results for a batch of 1", NULL));
}

static void test_wrong_count(void)
{
    cJSON *s = run_template("/count", 12, NULL, 0, NULL, "results for a batch of");
    /* retries 2: three attempts of every batch, and then (split) three of every image alone. */
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(s, "sizes");
    long multi = 0;
    for (const cJSON *e = sizes ? sizes->child : NULL; e; e = e->next)
        multi += e->valuedouble > 1 ? (long)e->valuedouble : 0;
    CHECKF(s && batchy_singles(s) == 3 * 12 && batchy_stat(s, "items") == 3 * 12 + multi,
           "%ld items sent for 12 images, %d of them alone (want 36), %ld in batches", batchy_stat(s, "items"),
           batchy_singles(s), multi);
    cJSON_Delete(s);
}

/* --max-answer-bytes is per image: batches of 8 answers of about 3 KB each go through a cap of
 * 10000 bytes, and the one image whose element is 30 KB fails alone. */
static void test_answer_cap_per_item(void)
{
    const int bad[] = {7};
    const char *opts[] = {"--max-answer-bytes", "10000", NULL};
    struct batchy_case c = {"/big/3000", 24, bad, 1, "larger than --max-answer-bytes", NULL, opts, .batch = 8};
    cJSON *s = batchy_run(&c);
    CHECKF(s && batchy_stat(s, "items") < 2 * 24, "%ld items sent for 24 images: batches failed", batchy_stat(s, "items"));
    cJSON_Delete(s);
}

/* The last batch does not wait out its max_wait_ms (here 60 s) once the folder is done: the run
 * ends well before. */
static void test_last_batch_at_once(void)
{
    struct batchy_case c = {"/ok", 20, .batch = 8, .wait_ms = 60000};
    cJSON *s = batchy_run(&c);
    CHECKF(c.seconds < 50, "20 images in batches of 8 took %.1f s: the last batch waited out max_wait_ms 60000",
           c.seconds);
    CHECKF(s && batchy_stat(s, "items") == 20, "%ld items", batchy_stat(s, "items"));
    cJSON_Delete(s);
}

/* Ctrl-C while a batch gathers (size 32, max_wait_ms 60000, behind a stage of one slot that
 * feeds it slowly, so that the folder is not done): the batch goes at once, and every image that
 * was sent to the first stage gets its row within the drain (it waited out the drain, and those
 * images had no row). */
static void test_stop_sends_gathering(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "batch-stop", 300, 31), 0);
    struct mock_proc m;
    const char *margs[] = {"--batch", "model_02", "--latency-ms", "model_01=100", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    char cfg[700], text[1024];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    snprintf(text, sizeof text,
             "{\"stages\": ["
             "{\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null}, \"concurrency\": 2},"
             "{\"name\": \"model_02\", \"url\": \"/model_02\", \"fields\": {\"model_03\": null}, \"when\": [\"model_01\"],"
             " \"concurrency\": 1, \"batch\": {\"size\": 32, \"max_wait_ms\": 60000}}]}");
    CU_ASSERT_EQUAL_FATAL(write_file(cfg, text, strlen(text)), 0);
    const char *extra[] = {"--config", cfg, "--strategy", "curl-multi", NULL};
    const char *argv[32];
    e2e_annotate_argv(argv, 32, t.root, t.csv, m.base_url, extra);
    pid_t pid = e2e_spawn(argv, t.log);
    CU_ASSERT_FATAL(pid > 0);
    long sent = 0;
    for (long deadline = now_ms() + 1000L * tmo(30); sent < 10 && now_ms() < deadline; sleep_ms(50)) {
        cJSON *st = mock_stats(&m);
        sent = mock_stat(st, "requests.model_01");
        cJSON_Delete(st);
    }
    CHECKF(sent >= 10, "model_01 had %ld requests", sent);
    kill(pid, SIGINT);
    int rc = e2e_wait(pid, tmo(60));
    cJSON *st = mock_stats(&m);
    sent = mock_stat(st, "requests.model_01");
    cJSON_Delete(st);
    long rows = e2e_count_lines(t.csv) - 1;
    if (rc != 130 || rows != sent)
        show_log("Ctrl-C with a batch gathering", rc, t.log);
    CHECKF(rc == 130, "exit %d after Ctrl-C", rc);
    CHECKF(rows == sent && sent < 300, "%ld rows for the %ld images sent to model_01 before the stop", rows, sent);
    mock_stop(&m);
    e2e_tree_free(&t);
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
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "batchcfg", 2, 1), 0);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\", %s}]}", cases[i].stage);
        CU_ASSERT_EQUAL_FATAL(write_file(cfg, text, strlen(text)), 0);
        char out[4096];
        const char *extra[] = {"--config", cfg, NULL};
        int rc = e2e_run(out, sizeof out, tmo(20), t.root, t.csv, "http://127.0.0.1:9", extra);
        CHECKF(rc == 2 && strstr(out, cases[i].want), "%s: exit %d, want \"%s\": %s", cases[i].stage, rc,
               cases[i].want, out);
    }
    e2e_tree_free(&t);
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
                   !CU_add_test(s, "the wrong number of results is retried, split, then fails", test_wrong_count) ||
                   !CU_add_test(s, "images the server always 500s on: their batches split, only they fail",
                                test_split_after_retries) ||
                   !CU_add_test(s, "an answer that leaves one image out: split, only it fails",
                                test_split_after_wrong_count) ||
                   !CU_add_test(s, "--max-answer-bytes is per image: an element over it fails alone",
                                test_answer_cap_per_item) ||
                   !CU_add_test(s, "the last batch goes once the folder is done, not after max_wait_ms",
                                test_last_batch_at_once) ||
                   !CU_add_test(s, "Ctrl-C sends the batch still gathering: every image sent has its row",
                                test_stop_sends_gathering) ||
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
