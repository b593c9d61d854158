/* annotate bench, end to end: it starts the mock itself, runs each strategy, and leaves a table
 * on stdout, a JSON report with a point per strategy and concurrency, and an SVG chart. */
#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e_util.h"
#include "util_proc.h"
#include "util_tree.h"
#include "util.h"

static char tmp[256];

static void test_bench_report(void)
{
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench") == 0);
    char imgs[300], report[300], chart[300], buf[16384];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/out/bench.json", tmp); /* a folder bench must create */
    snprintf(chart, sizeof chart, "%s/out/bench.svg", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 120, 500, 5) == 0);
    const char *argv[] = {e2e_annotate_bin(), "bench", imgs, "--mock", mock_bin(),
                          "--strategies", "serial,threads,load=threads+query=processes,curl-multi",
                          "--concurrency", "2,8", "--limit", "40", "--latency-ms", "1",
                          "--report", report, "--chart", chart, NULL};
    int rc = run_cmd(argv, tmo(120), buf, sizeof buf);
    if (rc != 0)
        show("annotate bench", rc, buf);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(strstr(buf, "images/s") != NULL);
    CU_ASSERT(strstr(buf, "curl-multi") != NULL);
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    cJSON *pts = cJSON_GetObjectItem(o, "points");
    /* serial once, the other three at two concurrencies */
    CU_ASSERT_EQUAL(cJSON_GetArraySize(pts), 7);
    cJSON *p;
    cJSON_ArrayForEach(p, pts)
    {
        CU_ASSERT(cJSON_GetObjectItem(p, "images_per_s")->valuedouble > 0);
        CU_ASSERT(cJSON_GetObjectItem(p, "requests_per_s")->valuedouble > 0);
        CU_ASSERT(cJSON_GetObjectItem(p, "request_p99_ms")->valuedouble >= 1.0); /* 1 ms injected */
        CU_ASSERT(cJSON_GetObjectItem(p, "peak_rss_kb")->valuedouble > 0);
        CU_ASSERT(cJSON_GetObjectItem(p, "tool_cpu_s")->valuedouble > 0);
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(p, "images_failed")->valuedouble, 0);
    }
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "mode"), "latency_ms")->valuedouble, 1);
    cJSON_Delete(o);
    char *svg = slurp(chart, NULL);
    CU_ASSERT_FATAL(svg != NULL);
    CU_ASSERT(strncmp(svg, "<svg", 4) == 0);
    CU_ASSERT(strstr(svg, "</svg>") != NULL);
    CU_ASSERT(strstr(svg, "<polyline") != NULL);
    CU_ASSERT(strstr(svg, ">curl-multi</text>") != NULL);
    free(svg);
    tree_rm(tmp);
}

/* annotate bench against a GPU-like mock it starts (--capacity, --queue-max) with an auto point:
 * the report says so, and each point has its retries and its share of the bottleneck's bound;
 * an auto point has the stages' limits. */
static void test_bench_capacity_auto(void)
{
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench") == 0);
    char imgs[300], report[300], chart[300], buf[16384];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/bench.json", tmp);
    snprintf(chart, sizeof chart, "%s/bench.svg", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 80, 500, 6) == 0);
    const char *argv[] = {e2e_annotate_bin(), "bench", imgs, "--mock", mock_bin(), "--strategies", "curl-multi,threads",
                          "--concurrency", "4,auto", "--limit", "40", "--latency-ms", "2", "--capacity", "2",
                          "--queue-max", "2", "--retries", "20", "--report", report, "--chart", chart, NULL};
    int rc = run_cmd(argv, tmo(120), buf, sizeof buf);
    if (rc != 0)
        show("annotate bench --capacity", rc, buf);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(strstr(buf, "capacity 2 per endpoint, queue 2") != NULL);
    CU_ASSERT(strstr(buf, "bound %") != NULL);
    CU_ASSERT(strstr(buf, "limits: model_01 ") != NULL);
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "mode"), "capacity")->valuedouble, 2);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "mode"), "queue_max")->valuedouble, 2);
    cJSON *pts = cJSON_GetObjectItem(o, "points"), *p;
    CU_ASSERT_EQUAL(cJSON_GetArraySize(pts), 4);
    int autos = 0;
    cJSON_ArrayForEach(p, pts)
    {
        CU_ASSERT(cJSON_GetObjectItem(p, "share_of_bound") && cJSON_GetObjectItem(p, "share_of_bound")->valuedouble > 0);
        CU_ASSERT(cJSON_GetObjectItem(p, "retries") != NULL);
        CU_ASSERT(cJSON_GetObjectItem(p, "attempts")->valuedouble > 0);
        if (cJSON_IsString(cJSON_GetObjectItem(p, "concurrency"))) {
            autos++;
            CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(p, "concurrency")->valuestring, "auto");
            CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(p, "limits")), 5);
        }
    }
    CU_ASSERT_EQUAL(autos, 2);
    cJSON_Delete(o);
    char *svg = slurp(chart, NULL);
    CU_ASSERT(svg && strstr(svg, ">auto</text>"));
    free(svg);
    tree_rm(tmp);
}

int register_bench(void)
{
    CU_pSuite s = CU_add_suite("bench", NULL, NULL);
    if (!s || !CU_add_test(s, "annotate bench: table, JSON report, SVG chart", test_bench_report) ||
        !CU_add_test(s, "annotate bench --capacity --queue-max with an auto point", test_bench_capacity_auto))
        return -1;
    return 0;
}
