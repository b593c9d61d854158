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

int register_bench(void)
{
    CU_pSuite s = CU_add_suite("bench", NULL, NULL);
    if (!s || !CU_add_test(s, "annotate bench: table, JSON report, SVG chart", test_bench_report))
        return -1;
    return 0;
}
