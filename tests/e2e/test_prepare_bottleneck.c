/* Suite "prepare_bottleneck": the summary, --stats-json and the progress line say when preparing
 * images, not the model servers, limits a run (src/common/prepstat.h's rule), under every
 * strategy, worker processes' figures included.
 *
 *   - heavy preparation (camera-like 1200 x 900 JPEGs re-encoded whole as WebP, one loader)
 *     against a fast mock: the summary names preparation as the bottleneck, with the figures;
 *     --stats-json's "prepare" says so, under serial, threads, processes, curl-multi,
 *     load=processes,query=curl-multi, load=threads,query=processes, load=serial and (a list)
 *     load=curl-multi, each with advice that fits it;
 *   - small images against a very slow mock (--latency-ms 2000): the figures are there, and the
 *     rule says no (the loaders were idle, the servers never waited for an image);
 *   - the progress line carries the note in the heavy run, never in the slow one.
 *
 * Margins: the rule's thresholds are one half; the heavy runs spend nearly all their time
 * preparing (measured here: 92-99%) and the slow ones nearly none (under 4%), whatever the
 * machine's load, since both sides of each share slow down together. */
#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "pyserver.h"
#include "util.h"

static char dir[512], heavy[600], small[600], list[700], cfg[600], csv[600], sj[600];
static struct mock_proc fast, slow;

static const char *script(const char *rel)
{
    static char b[1100];
    if (access(rel, R_OK) == 0)
        return rel;
    snprintf(b, sizeof b, "../%s", rel);
    return b;
}

/* A stage that re-encodes the whole image as WebP (heavy), and the mock's fields. */
static const char PIPELINE[] =
    "{\"stages\": [{\"name\": \"m\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null},"
    " \"image\": {\"format\": \"webp\", \"quality\": 90}}]}";

static int make_images(const char *out, const char *n, const char *w, const char *h)
{
    char log[4000];
    const char *mk[] = {pyserver_python(), script("tests/helpers/images.py"), "camera", out, n, w, h, NULL};
    if (run_cmd(mk, tmo(120), log, sizeof log) == 0)
        return 0;
    fprintf(stderr, "images.py camera (needs python3-pil): %s\n", log);
    return -1;
}

static int suite_init(void)
{
    if (make_tmpdir(dir, sizeof dir, "prepare_bottleneck"))
        return -1;
    snprintf(heavy, sizeof heavy, "%s/heavy", dir);
    snprintf(small, sizeof small, "%s/small", dir);
    snprintf(cfg, sizeof cfg, "%s/p.json", dir);
    snprintf(csv, sizeof csv, "%s/r.csv", dir);
    snprintf(sj, sizeof sj, "%s/stats.json", dir);
    if (make_images(heavy, "4", "1200", "900") || make_images(small, "6", "64", "48") ||
        write_file(cfg, PIPELINE, strlen(PIPELINE)))
        return -1;
    char names[3000];
    int o = 0;
    for (int i = 0; i < 4; i++)
        o += snprintf(names + o, sizeof names - (size_t)o, "%s/photo%03d.jpg\n", heavy, i);
    snprintf(list, sizeof list, "list:%s/list.txt", dir);
    if (write_file(list + 5, names, (size_t)o))
        return -1;
    const char *slow_args[] = {"--latency-ms", "2000", NULL};
    if (mock_start(&fast, NULL))
        return -1;
    return mock_start(&slow, slow_args);
}

static int suite_cleanup(void)
{
    mock_stop(&fast);
    mock_stop(&slow);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return dir[0] && system(cmd) != 0 ? -1 : 0;
}

/* Runs annotate on root against server with the strategy, one loader and one worker, the summary
 * on (not --quiet) and a status line every interval seconds. Returns the exit status, the
 * output in out, --stats-json's "prepare" in *prep (cJSON_Delete *whole). */
static int run(const char *root, const char *server, const char *strategy, const char *interval, char *out,
               size_t outlen, cJSON **whole, const cJSON **prep)
{
    unlink(sj);
    const char *argv[] = {e2e_annotate_bin(), "--config", cfg, "--server", server, "--out", csv, "--force",
                          "--strategy", strategy, "--load-threads", "1", "--workers", "1", "--stats-json", sj,
                          "--progress-interval", interval, root, NULL, NULL};
    if (!strncmp(root, "list:", 5)) { /* a list of the images: --files-from LIST */
        argv[18] = "--files-from";
        argv[19] = root + 5;
    }
    int rc = run_cmd(argv, tmo(120), out, outlen);
    *whole = e2e_read_json(sj);
    *prep = cJSON_GetObjectItemCaseSensitive(*whole, "prepare");
    return rc;
}

static const char *const STRATEGIES[] = {"curl-multi", "serial", "threads", "processes",
                                         "load=processes,query=curl-multi", "load=threads,query=processes",
                                         "load=serial,query=curl-multi", "load=curl-multi,query=curl-multi", NULL};

#define SAID "preparation, not the servers, was the bottleneck"

static void test_heavy_preparation(void)
{
    for (int s = 0; STRATEGIES[s]; s++) {
        char out[8000];
        cJSON *whole;
        const cJSON *prep;
        /* load=curl-multi reads a list (a folder is refused), prepared on its loop's thread */
        int rc = run(s == 7 ? list : heavy, fast.base_url, STRATEGIES[s], "60", out, sizeof out, &whole, &prep);
        CHECKF(rc == 0, "%s: exit %d: %s", STRATEGIES[s], rc, out);
        CHECKF(prep != NULL, "%s: no \"prepare\" in --stats-json", STRATEGIES[s]);
        CHECKF(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(prep, "bottleneck")), "%s: not the bottleneck: %s",
               STRATEGIES[s], out);
        /* the figures: every image prepared, by one loader, which was busy preparing, while the
         * servers waited for images (the workers' figures, for the processes strategies) */
        CHECKF(e2e_json_num(prep, "images") == 4 && e2e_json_num(prep, "copies") == 4, "%s: %g images prepared",
               STRATEGIES[s], e2e_json_num(prep, "images"));
        CU_ASSERT_EQUAL(e2e_json_num(prep, "loaders"), 1);
        CU_ASSERT(e2e_json_num(prep, "wall_ms") > 0 && e2e_json_num(prep, "ms_per_image") > 0);
        CHECKF(e2e_json_num(prep, "busy_share") > 0.5 && e2e_json_num(prep, "busy_share") <= 1 &&
                   e2e_json_num(prep, "starved_share") > 0.5 && e2e_json_num(prep, "starved_share") <= 1,
               "%s: busy %g, starved %g", STRATEGIES[s], e2e_json_num(prep, "busy_share"),
               e2e_json_num(prep, "starved_share"));
        CHECKF(strstr(out, "annotate: preparing images took ") && strstr(out, SAID), "%s: the summary: %s",
               STRATEGIES[s], out);
        CHECKF(strstr(out, s == 3   ? "more --workers"
                           : s == 1 ? "a strategy that loads on every core"
                           : s >= 6 ? "--strategy load=threads"
                                    : "--load-threads"),
               "%s: no advice fitting the strategy: %s", STRATEGIES[s], out);
        cJSON_Delete(whole);
    }
}

static void test_slow_server(void)
{
    /* processes with one worker would take 6 x 2 s: the strategies where images go in parallel */
    static const char *const strategies[] = {"curl-multi", "load=processes,query=curl-multi", NULL};
    for (int s = 0; strategies[s]; s++) {
        char out[8000];
        cJSON *whole;
        const cJSON *prep;
        int rc = run(small, slow.base_url, strategies[s], "0.2", out, sizeof out, &whole, &prep);
        CHECKF(rc == 0, "%s: exit %d: %s", strategies[s], rc, out);
        CHECKF(prep != NULL, "%s: no \"prepare\" in --stats-json", strategies[s]);
        CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(prep, "bottleneck")));
        CHECKF(e2e_json_num(prep, "images") == 6, "%s: %g images prepared", strategies[s],
               e2e_json_num(prep, "images"));
        CHECKF(e2e_json_num(prep, "busy_share") >= 0 && e2e_json_num(prep, "busy_share") < 0.5,
               "%s: busy %g", strategies[s], e2e_json_num(prep, "busy_share"));
        CHECKF(strstr(out, "annotate: preparing images took ") && !strstr(out, SAID), "%s: the summary: %s",
               strategies[s], out);
        CHECKF(!strstr(out, "image prep is the bottleneck"), "%s: the progress line: %s", strategies[s], out);
        cJSON_Delete(whole);
    }
}

/* The progress line judges the last few seconds: a heavy run long enough to have been judged
 * shows the note (one that ends sooner is not held to it; here it runs about 2.5 s). */
static void test_progress_line(void)
{
    /* the heavy images five times over (about 2.5 s here) */
    char cmd[3000], longer[700];
    snprintf(longer, sizeof longer, "%s/heavy5", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && for k in 1 2 3 4 5; do for f in '%s'/*.jpg; do cp \"$f\" '%s'/$k-$(basename \"$f\"); done; done",
             longer, heavy, longer);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    char out[16000];
    cJSON *whole;
    const cJSON *prep;
    int rc = run(longer, fast.base_url, "curl-multi", "0.2", out, sizeof out, &whole, &prep);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    CU_ASSERT_EQUAL(e2e_json_num(prep, "images"), 20);
    /* A line is drawn every 0.2 s and the figures sampled every 0.5 s or so (0.75 s at most);
     * from 1 s on (PREPSTAT_MIN_S) a sample judges the run so far. The one loader prepares one
     * image after another and an image counts once prepared, so at time t the images counted
     * fill at least t - 2 x an image's time: over half of t once t is past 4 images' time. A run
     * that lasts 1 s past both has had such a line. */
    double wall = e2e_json_num(whole, "elapsed_s"), each = e2e_json_num(prep, "ms_per_image") / 1e3;
    CHECKF(wall < (4 * each > 1 ? 4 * each : 1) + 1 || strstr(out, "in flight  image prep is the bottleneck"),
           "%.1f s, %.2f s an image: %s", wall, each, out);
    cJSON_Delete(whole);
}

int register_prepare_bottleneck(void)
{
    CU_pSuite s = CU_add_suite("prepare_bottleneck", suite_init, suite_cleanup);
    if (!s)
        return -1;
    return !CU_add_test(s, "heavy preparation: the summary and stats say it is the bottleneck, every strategy",
                        test_heavy_preparation) ||
                   !CU_add_test(s, "a slow server with small images: the figures, and not the bottleneck",
                                test_slow_server) ||
                   !CU_add_test(s, "the progress line says so in a heavy run", test_progress_line)
               ? -1
               : 0;
}
