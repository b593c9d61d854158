/* Suite "replicas": a stage whose "url" is a list of replicas.
 *
 *   - one replica of three is down (nothing listens): it is ejected after a few attempts, the
 *     retries go to the others, every row is ok and predicted; under curl-multi and processes
 *     (whose workers share the replicas' counters through the shared page);
 *   - the replica with the fewest requests outstanding is chosen: a slow replica gets fewer;
 *   - --stats-json reports attempts, errors, p99 and ejections per replica;
 *   - a replica killed mid-run: every row ok, its share moves to the other;
 *   - a 503 storm (a server of 2 slots that queues nothing) under --concurrency auto;
 *   - a bad list is refused at load. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "e2e.h"
#include "pipeline/pipeline.h"
#include "util.h"
#include "proc.h"

/* The seed chain with model_03's url replaced by the list urls (JSON text of an array). */
static int write_pipeline(const char *path, const char *urls)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"stages\": ["
             "{\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null}},"
             "{\"name\": \"model_02\", \"url\": \"/model_02\", \"fields\": {\"model_03\": null}},"
             "{\"name\": \"model_03\", \"url\": %s, \"fields\": {\"model_03\": null}, \"when\": [\"model_01\", \"model_02\"]},"
             "{\"name\": \"model_04\", \"url\": \"/model_04\", \"fields\": {\"model_03\": {\"result_of\": \"model_03\"}}, \"csv\": false},"
             "{\"name\": \"model_05\", \"url\": \"/model_05\", \"fields\": {\"model_03\": null}, "
             "\"input\": {\"each\": \"model_04\", \"array\": \"sub-img\", \"field\": \"img\"}}]}",
             urls);
    return write_file(path, text, strlen(text));
}

/* The replicas' entries of a --stats-json file for model_03: attempts, errors, ejections. */
static int replica_stats(const char *sj, long att[3], long err[3], long ej[3])
{
    cJSON *j = e2e_read_json(sj);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "replicas"), "model_03");
    int n = 0;
    for (const cJSON *e = list ? list->child : NULL; e && n < 3; e = e->next, n++) {
        att[n] = (long)cJSON_GetObjectItemCaseSensitive(e, "attempts")->valuedouble;
        err[n] = (long)cJSON_GetObjectItemCaseSensitive(e, "errors")->valuedouble;
        ej[n] = (long)cJSON_GetObjectItemCaseSensitive(e, "ejections")->valuedouble;
    }
    cJSON_Delete(j);
    return n;
}

static void test_one_down(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "replicas", 300, 21), 0);
    struct mock_proc a, b;
    CU_ASSERT_EQUAL_FATAL(mock_start(&a, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(mock_start(&b, NULL), 0);
    char cfg[700], urls[512];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    snprintf(urls, sizeof urls, "[\"%s/model_03\", \"http://127.0.0.1:%d/model_03\", \"%s/model_03\"]", a.base_url,
             e2e_closed_port(), b.base_url);
    CU_ASSERT_EQUAL_FATAL(write_pipeline(cfg, urls), 0);
    static const char *const strategies[] = {"curl-multi", "processes"};
    for (int s = 0; s < 2; s++) {
        char out[8192];
        const char *extra[] = {"--config", cfg, "--strategy", strategies[s], "--workers", "4", "--stats-json", t.sj, NULL};
        int rc = e2e_run(out, sizeof out, tmo(90), t.root, t.csv, a.base_url, extra);
        if (rc != 0)
            show(strategies[s], rc, out);
        CU_ASSERT_EQUAL(rc, 0);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
        CHECKF(e2e_check_results(&c, t.paths, t.n, NULL, NULL) == 0, "%s: rows not as predicted", strategies[s]);
        e2e_csv_free(&c);
        long att[3] = {0}, err[3] = {0}, ej[3] = {0};
        CU_ASSERT_EQUAL(replica_stats(t.sj, att, err, ej), 3);
        CHECKF(att[1] == err[1] && att[1] >= 5 && att[1] <= 5 + 64 && ej[1] == 1,
               "%s: the dead replica had %ld attempts, %ld errors, %ld ejections", strategies[s], att[1], err[1], ej[1]);
        CHECKF(att[0] > 20 && att[2] > 20 && err[0] == 0 && err[2] == 0, "%s: live replicas %ld/%ld attempts",
               strategies[s], att[0], att[2]);
    }
    mock_stop(&a);
    mock_stop(&b);
    e2e_tree_free(&t);
}

static void test_least_outstanding(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "replicas2", 200, 22), 0);
    struct mock_proc fast, slow;
    const char *slow_args[] = {"--latency-ms", "60", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&fast, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(mock_start(&slow, slow_args), 0);
    char cfg[700], urls[512], out[8192];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    snprintf(urls, sizeof urls, "[\"%s/model_03\", \"%s/model_03\"]", slow.base_url, fast.base_url);
    CU_ASSERT_EQUAL_FATAL(write_pipeline(cfg, urls), 0);
    const char *extra[] = {"--config", cfg, "--concurrency", "16", "--stats-json", t.sj, NULL};
    int rc = e2e_run(out, sizeof out, tmo(90), t.root, t.csv, fast.base_url, extra);
    CU_ASSERT_EQUAL(rc, 0);
    long att[3] = {0}, err[3] = {0}, ej[3] = {0};
    CU_ASSERT_EQUAL(replica_stats(t.sj, att, err, ej), 2);
    CHECKF(att[1] > 2 * att[0] && att[0] > 0, "slow replica %ld attempts, fast %ld", att[0], att[1]);
    mock_stop(&fast);
    mock_stop(&slow);
    e2e_tree_free(&t);
}

/* A replica killed while the run goes (SIGTERM to one of two, a third of the way through): its
 * requests in flight fail the outage way and are retried on the other, it is ejected, and every
 * row is ok and predicted; its share of the attempts stops growing when it dies. */
static void test_killed_mid_run(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "replicas3", 1500, 23), 0);
    struct mock_proc a, b;
    const char *slow[] = {"--latency-ms", "5", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&a, slow), 0);
    CU_ASSERT_EQUAL_FATAL(mock_start(&b, slow), 0);
    char cfg[700], urls[512];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    snprintf(urls, sizeof urls, "[\"%s/model_03\", \"%s/model_03\"]", a.base_url, b.base_url);
    CU_ASSERT_EQUAL_FATAL(write_pipeline(cfg, urls), 0);
    const char *extra[] = {"--config", cfg, "--concurrency", "16", "--stats-json", t.sj, NULL};
    const char *argv[32];
    e2e_annotate_argv(argv, 32, t.root, t.csv, a.base_url, extra);
    pid_t pid = e2e_spawn(argv, t.log);
    CU_ASSERT_FATAL(pid > 0);
    CHECKF(e2e_wait_lines(t.csv, 500, pid, tmo(60)), "the run did not reach 500 rows");
    cJSON *st = mock_stats(&b);
    long before = mock_stat(st, "requests.model_03");
    cJSON_Delete(st);
    mock_stop(&b);
    int rc = e2e_wait(pid, tmo(120));
    CU_ASSERT_EQUAL(rc, 0);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CHECKF(e2e_check_results(&c, t.paths, t.n, NULL, NULL) == 0, "rows not as predicted after a replica died");
    e2e_csv_free(&c);
    long att[3] = {0}, err[3] = {0}, ej[3] = {0};
    CU_ASSERT_EQUAL(replica_stats(t.sj, att, err, ej), 2);
    st = mock_stats(&a);
    long on_a = mock_stat(st, "requests.model_03");
    cJSON_Delete(st);
    /* b answered about half until it died; a took all the rest */
    CHECKF(before > 50 && ej[1] >= 1 && err[1] >= 1 && on_a > att[1] - err[1],
           "killed replica: %ld requests before, %ld attempts (%ld errors, %ld ejections); the other: %ld", before,
           att[1], err[1], ej[1], on_a);
    mock_stop(&a);
    e2e_tree_free(&t);
}

/* A 503 storm: a server with 2 slots and no queue (503 with Retry-After as soon as both are
 * busy), hit with --concurrency auto and a total of 64: the limits fall to what it serves,
 * nothing fails, and the 503s stay a small share of the attempts. */
static void test_storm(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "storm", 600, 24), 0);
    struct mock_proc m;
    const char *margs[] = {"--capacity", "2", "--queue-max", "0", "--latency-ms", "5", "--retry-after", "0", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    static const char *const strategies[] = {"curl-multi", "threads"};
    for (int s = 0; s < 2; s++) {
        CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
        char out[8192];
        const char *extra[] = {"--concurrency", "auto", "--strategy", strategies[s], "--workers", "32",
                               "--backoff-ms", "5", "--backoff-max-ms", "50", "--stats-json", t.sj, NULL};
        int rc = e2e_run(out, sizeof out, tmo(120), t.root, t.csv, m.base_url, extra);
        CHECKF(rc == 0, "%s: exit %d: %s", strategies[s], rc, out);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
        CHECKF(e2e_check_results(&c, t.paths, t.n, NULL, NULL) == 0, "%s: rows not as predicted", strategies[s]);
        e2e_csv_free(&c);
        cJSON *sj = e2e_read_json(t.sj);
        double att = e2e_json_num(sj, "attempts"), ret = e2e_json_num(sj, "retries");
        cJSON_Delete(sj);
        CHECKF(att > 0 && ret / att < 0.25, "%s: %.0f retries of %.0f attempts", strategies[s], ret, att);
    }
    mock_stop(&m);
    e2e_tree_free(&t);
}

static void test_bad_lists(void)
{
    static const struct {
        const char *url, *want;
    } cases[] = {
        {"[]", "a list of 1 to 8 replicas"},
        {"[\"/a\", \"/a\"]", "lists \"/a\" twice"},
        {"[\"/a\", 3]", "must be a non-empty string"},
        {"[\"/a\", \"/b c\"]", "holds a blank"},
        {"[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]", "a list of 1 to 8 replicas"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[512], err[512] = "";
        snprintf(text, sizeof text, "{\"stages\": [{\"name\": \"a\", \"url\": %s}]}", cases[i].url);
        struct pipeline *p = NULL;
        int rc = pipeline_parse(text, strlen(text), "r.json", &p, err, sizeof err);
        CHECKF(rc == -1 && strstr(err, cases[i].want), "case %zu: %s", i, err);
        pipeline_free(p);
    }
}

int register_replicas(void)
{
    CU_pSuite s = CU_add_suite("replicas", NULL, NULL);
    if (!s || !CU_add_test(s, "one replica of three down: ejected, retried elsewhere, every row ok", test_one_down) ||
        !CU_add_test(s, "the replica with the fewest outstanding requests is chosen", test_least_outstanding) ||
        !CU_add_test(s, "a replica killed mid-run: no failed row, the other takes its share", test_killed_mid_run) ||
        !CU_add_test(s, "a 503 storm (2 slots, no queue) under auto: no failed row", test_storm) ||
        !CU_add_test(s, "a bad list of replicas is refused at load", test_bad_lists))
        return -1;
    return 0;
}
