/* Suite "run concurrent": how a whole run stops and what it takes, seen from outside.
 *
 *   - Ctrl-C finishes only the images already sent: queued ones get no row and --resume runs
 *     them; the same for SIGTERM and SIGHUP, under every strategy;
 *   - an --out file inside DIR, named like an image, is never sent as one;
 *   - a stage whose server answers "not set up" (404 here) from its first requests stops the run
 *     with exit 2 and writes no row for it. */
#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e.h"
#include "proc.h"
#include "util.h"
#include "tree.h"

#include "check.h"

static long rows_ok(const char *csv, char *const *paths, size_t n)
{
    struct e2e_csv c;
    if (e2e_csv_read(csv, &c)) {
        CU_FAIL("the results file cannot be read");
        return -1;
    }
    long bad = e2e_check_results(&c, paths, n, NULL, NULL);
    CHECKF(bad == 0, "%ld problems in the rows", bad);
    e2e_csv_free(&c);
    return bad;
}

static void test_prompt_stop(void)
{
    static const char *const mock_args[] = {"--latency-ms", "150", NULL};
    static const struct {
        const char *strategy;
        int sig;
    } cases[] = {
        {"threads", SIGINT}, {"curl-multi", SIGTERM}, {"processes", SIGHUP}, {"serial", SIGINT},
    };
    char base[512], root[600], csv[600], log[600];
    CU_ASSERT_FATAL(make_tmpdir(base, sizeof base, "run-stop") == 0);
    snprintf(root, sizeof root, "%s/img", base);
    snprintf(csv, sizeof csv, "%s/out.csv", base);
    snprintf(log, sizeof log, "%s/log", base);
    const size_t N = 300;
    char **paths = NULL;
    struct mock_proc m;
    if (tree_make_generated(root, N, 200, 9) || !(paths = e2e_generated_paths(root, N)) || mock_start(&m, mock_args)) {
        CU_FAIL("fixture");
        tree_rm(base);
        return;
    }
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        unlink(csv);
        const char *argv[] = {e2e_annotate_bin(), root, "--out", csv, "--server", m.base_url, "--quiet",
                              "--strategy", cases[k].strategy, "--workers", "4", "--concurrency", "4", NULL};
        pid_t pid = e2e_spawn(argv, log);
        long deadline = now_ms() + tmo(20) * 1000L;
        while (e2e_count_lines(csv) < 6 && e2e_alive(pid) && now_ms() < deadline)
            sleep_ms(10);
        long before = e2e_count_lines(csv) - 1;
        long t0 = now_ms();
        kill(pid, cases[k].sig);
        int rc = e2e_wait(pid, tmo(20));
        long took = now_ms() - t0, after = e2e_count_lines(csv) - 1;
        CHECKF(rc == 130, "%s, signal %d: exit %d", cases[k].strategy, cases[k].sig, rc);
        /* At most the images in flight (4 requests at a time, a chain of up to a few each). */
        CHECKF(after - before <= 12, "%s: %ld rows written after the signal (had %ld): queued images were run",
               cases[k].strategy, after - before, before);
        CHECKF(took < 5000 * (getenv("ANNOTATE_WRAP") ? 20 : 1), "%s: stopping took %ld ms", cases[k].strategy, took);
        CHECKF(after < (long)N, "%s: every image has a row: the stop stopped nothing", cases[k].strategy);
        /* --resume finishes the job, one row per image. */
        const char *again[] = {e2e_annotate_bin(), root, "--out", csv, "--server", m.base_url, "--quiet",
                               "--resume", "--concurrency", "64", NULL};
        CU_ASSERT_EQUAL(run_cmd(again, tmo(60), NULL, 0), 0);
        rows_ok(csv, paths, N);
    }
    mock_stop(&m);
    free_strs(paths, N);
    tree_rm(base);
}

static void test_out_inside_dir(void)
{
    char base[512], root[600], csv[700], csv2[700];
    CU_ASSERT_FATAL(make_tmpdir(base, sizeof base, "run-self") == 0);
    snprintf(root, sizeof root, "%s/img", base);
    const size_t N = 5;
    char **paths = NULL;
    struct mock_proc m;
    if (tree_make_generated(root, N, 200, 4) || !(paths = e2e_generated_paths(root, N)) || mock_start(&m, NULL)) {
        CU_FAIL("fixture");
        tree_rm(base);
        return;
    }
    snprintf(csv, sizeof csv, "%s/results.png", root);
    snprintf(csv2, sizeof csv2, "%s/../img/results.png", root); /* the same file, spelled otherwise */
    const char *argv[] = {e2e_annotate_bin(), root, "--out", csv, "--server", m.base_url, "--quiet", NULL};
    CU_ASSERT_EQUAL(run_cmd(argv, tmo(30), NULL, 0), 0);
    rows_ok(csv, paths, N);
    const char *again[] = {e2e_annotate_bin(), root, "--out", csv2, "--server", m.base_url, "--quiet", "--resume", NULL};
    CU_ASSERT_EQUAL(run_cmd(again, tmo(30), NULL, 0), 0);
    rows_ok(csv, paths, N);
    /* The same command again, without --resume: refused, the finished file untouched. */
    char out[2048];
    long lines = e2e_count_lines(csv);
    CU_ASSERT_EQUAL(run_cmd(argv, tmo(30), out, sizeof out), 2);
    CHECKF(strstr(out, "--resume") && strstr(out, "--force"), "refusal: %s", out);
    CU_ASSERT_EQUAL(e2e_count_lines(csv), lines);
    rows_ok(csv, paths, N);
    const char *force[] = {e2e_annotate_bin(), root, "--out", csv, "--server", m.base_url, "--quiet", "--force", NULL};
    CU_ASSERT_EQUAL(run_cmd(force, tmo(30), NULL, 0), 0);
    rows_ok(csv, paths, N);
    mock_stop(&m);
    free_strs(paths, N);
    tree_rm(base);
}

/* A stage whose every answer says the set-up is wrong (here a 404 path): exit 2 at once, naming
 * the stage, and no row written, so that --resume after the fix does the whole folder. */
static void test_setup_error_stops(void)
{
    char base[512], root[600], csv[600], cfg[600], out[4096];
    CU_ASSERT_FATAL(make_tmpdir(base, sizeof base, "run-setup") == 0);
    snprintf(root, sizeof root, "%s/img", base);
    snprintf(csv, sizeof csv, "%s/out.csv", base);
    snprintf(cfg, sizeof cfg, "%s/p.json", base);
    const size_t N = 200;
    char **paths = NULL;
    struct mock_proc m;
    if (tree_make_generated(root, N, 200, 6) || !(paths = e2e_generated_paths(root, N)) || mock_start(&m, NULL)) {
        CU_FAIL("fixture");
        tree_rm(base);
        return;
    }
    FILE *f = fopen(cfg, "w");
    fputs("{\"stages\": [{\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null}},"
          " {\"name\": \"typo\", \"url\": \"/model_2\", \"fields\": {\"model_03\": null}}]}", f);
    fclose(f);
    static const char *const strategies[] = {"curl-multi", "threads", "processes", "serial"};
    for (size_t k = 0; k < sizeof strategies / sizeof *strategies; k++) {
        unlink(csv);
        const char *argv[] = {e2e_annotate_bin(), root, "--out", csv, "--server", m.base_url, "--quiet",
                              "--config", cfg, "--strategy", strategies[k], NULL};
        int rc = run_cmd(argv, tmo(30), out, sizeof out);
        CHECKF(rc == 2, "%s: exit %d: %s", strategies[k], rc, out);
        CHECKF(strstr(out, "typo") && strstr(out, "404") && strstr(out, "--resume"), "%s: message: %s",
               strategies[k], out);
        CHECKF(e2e_count_lines(csv) == 1, "%s: %ld lines written", strategies[k], e2e_count_lines(csv));
    }
    /* Mended: --resume does every image. */
    f = fopen(cfg, "w");
    fputs("{\"stages\": [{\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null}},"
          " {\"name\": \"typo\", \"url\": \"/model_02\", \"fields\": {\"model_03\": null}}]}", f);
    fclose(f);
    const char *again[] = {e2e_annotate_bin(), root, "--out", csv, "--server", m.base_url, "--quiet",
                           "--config", cfg, "--resume", NULL};
    CU_ASSERT_EQUAL(run_cmd(again, tmo(30), out, sizeof out), 0);
    CU_ASSERT_EQUAL(e2e_count_lines(csv), (long)N + 1);
    mock_stop(&m);
    free_strs(paths, N);
    tree_rm(base);
}

int register_run(void)
{
    CU_pSuite s = CU_add_suite("run concurrent", NULL, NULL);
    if (!s || !CU_add_test(s, "a signal finishes only the images sent; --resume does the rest", test_prompt_stop) ||
        !CU_add_test(s, "an --out inside DIR is not sent; a finished --out is never overwritten without --force",
                     test_out_inside_dir) ||
        !CU_add_test(s, "a stage that answers 404 from the start: exit 2, no rows, --resume after the fix",
                     test_setup_error_stops))
        return -1;
    return 0;
}
