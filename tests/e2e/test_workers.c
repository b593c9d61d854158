/* Suite "workers concurrent": the defects of the issue "Foundation" seen from outside, each
 * checked on a real run against the mock.
 *
 *   - a pipeline file edited during a processes run never reaches a replacement worker: workers
 *     take their configuration from the parent's first frame, not from the file;
 *   - the progress line counts requests in flight under threads and processes too;
 *   - --resume --max-images: the progress total is what this run settles (never done > total);
 *   - a stopped worker that was being sent a frame larger than a pipe holds is replaced, and the
 *     run finishes (the manager never blocks on a write to a worker);
 *   - annotate started as a worker by hand, with no configuration frame, exits 2 saying why. */
#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e.h"
#include "drivers/ipc.h"
#include "pipeline/pipeline.h"
#include "proc.h"
#include "util.h"
#include "tree.h"

#include "check.h"

#define MAXA 64

/* A fresh temporary tree of n generated images of `bytes` each, and the mock with extra args. */
struct fixture {
    char base[512], root[600], csv[600], log[600], cfg[600];
    char **paths;
    size_t n;
    struct mock_proc m;
};

static int fixture_up(struct fixture *f, const char *tag, size_t n, size_t bytes, const char *const *mock_args)
{
    memset(f, 0, sizeof *f);
    if (make_tmpdir(f->base, sizeof f->base, tag))
        return -1;
    snprintf(f->root, sizeof f->root, "%s/img", f->base);
    snprintf(f->csv, sizeof f->csv, "%s/out.csv", f->base);
    snprintf(f->log, sizeof f->log, "%s/log", f->base);
    snprintf(f->cfg, sizeof f->cfg, "%s/pipeline.json", f->base);
    f->n = n;
    if (tree_make_generated(f->root, n, bytes, 7) || !(f->paths = e2e_generated_paths(f->root, n)))
        return -1;
    return mock_start(&f->m, mock_args);
}

static void fixture_down(struct fixture *f)
{
    mock_stop(&f->m);
    if (f->paths)
        free_strs(f->paths, f->n);
    tree_rm(f->base);
}

static long check_rows(const char *what, const char *csv, char *const *paths, size_t n, int allow_worker_failed)
{
    struct e2e_csv c;
    if (e2e_csv_read(csv, &c)) {
        CHECKF(0, "%s: the results file cannot be read", what);
        return -1;
    }
    struct e2e_expect x = {.allow_worker_failed = allow_worker_failed};
    long bad = e2e_check_results(&c, paths, n, &x, NULL);
    CHECKF(bad == 0, "%s: %ld problems in the rows", what, bad);
    e2e_csv_free(&c);
    return bad;
}

/* Kills every child of pid (the worker processes) with sig. Returns how many. */
static int signal_children(pid_t pid, int sig)
{
    pid_t kids[64];
    int n = e2e_children(pid, kids, NULL, 64), k = 0;
    for (int i = 0; i < n; i++)
        k += kill(kids[i], sig) == 0;
    return k;
}

static void test_pipeline_edited_during_run(void)
{
    static const char *const mock_args[] = {"--latency-ms", "10", NULL};
    struct fixture f;
    if (fixture_up(&f, "workers-edit", 240, 200, mock_args)) {
        CU_FAIL("fixture");
        fixture_down(&f);
        return;
    }
    CU_ASSERT_FATAL(write_text(f.cfg, pipeline_default_json) == 0);
    const char *argv[] = {e2e_annotate_bin(), f.root, "--out", f.csv, "--server", f.m.base_url, "--quiet",
                          "--strategy", "processes", "--workers", "3", "--config", f.cfg, NULL};
    pid_t pid = e2e_spawn(argv, f.log);
    CU_ASSERT_FATAL(pid > 0);
    long deadline = now_ms() + tmo(20) * 1000L;
    while (e2e_count_lines(f.csv) < 30 && e2e_alive(pid) && now_ms() < deadline)
        sleep_ms(20);
    /* A one-stage pipeline: a worker that read it would answer model_02's result as the only
     * stage, under model_01's column. */
    CU_ASSERT(write_text(f.cfg, "{\"stages\": [{\"name\": \"model_02\", \"url\": \"/model_02\"}]}\n") == 0);
    int killed = signal_children(pid, SIGKILL);
    CHECKF(killed > 0, "no worker process to kill (the run ended too soon?)");
    sleep_ms(300);
    signal_children(pid, SIGKILL); /* the replacements too */
    int rc = e2e_wait(pid, tmo(60));
    char tail[2000];
    file_tail(f.log, tail, sizeof tail);
    CHECKF(rc == 0 || rc == 1, "exit %d; log: %s", rc, tail);
    check_rows("edited pipeline", f.csv, f.paths, f.n, 1);
    fixture_down(&f);
}

/* The largest "N in flight" in a run's progress lines. */
static long max_in_flight(const char *log)
{
    char *text = slurp(log, NULL);
    if (!text)
        return -1;
    long best = 0;
    for (char *p = text; (p = strstr(p, " in flight")); p++) {
        char *q = p;
        while (q > text && q[-1] >= '0' && q[-1] <= '9')
            q--;
        long v = atol(q);
        if (v > best)
            best = v;
    }
    free(text);
    return best;
}

static void test_in_flight_counted(void)
{
    static const char *const mock_args[] = {"--latency-ms", "150", NULL};
    static const char *const strategies[] = {"threads", "processes", "serial", "curl-multi"};
    struct fixture f;
    if (fixture_up(&f, "workers-inflight", 30, 200, mock_args)) {
        CU_FAIL("fixture");
        fixture_down(&f);
        return;
    }
    for (size_t s = 0; s < sizeof strategies / sizeof *strategies; s++) {
        unlink(f.log);
        const char *argv[] = {e2e_annotate_bin(), f.root, "--out", f.csv, "--server", f.m.base_url,
                              "--strategy", strategies[s], "--workers", "4", "--concurrency", "8",
                              "--progress-interval", "0.1", "--force", "--max-images", s == 2 ? "4" : "30", NULL};
        pid_t pid = e2e_spawn(argv, f.log);
        int rc = e2e_wait(pid, tmo(60));
        long most = max_in_flight(f.log);
        CHECKF(rc == 0, "%s: exit %d", strategies[s], rc);
        CHECKF(most >= 1, "%s: the progress line never showed a request in flight", strategies[s]);
    }
    fixture_down(&f);
}

/* Every "D/T images" of a log: D never above T, and the last T equals want_total. */
static void check_totals(const char *log, long want_total)
{
    char *text = slurp(log, NULL);
    CU_ASSERT_FATAL(text != NULL);
    long last_total = -1;
    int lines = 0;
    for (char *p = text; (p = strstr(p, "] ")); p++) {
        long d, t;
        char plus;
        int k = sscanf(p + 2, "%ld/%ld%c", &d, &t, &plus);
        if (k < 2)
            continue;
        lines++;
        CHECKF(d <= t || (k == 3 && plus == '+'), "progress shows %ld done of %ld", d, t);
        if (k < 3 || plus != '+')
            last_total = t;
    }
    CHECKF(lines > 0, "no progress line");
    CHECKF(last_total == want_total, "the progress total is %ld, want %ld", last_total, want_total);
    free(text);
}

static void test_resume_max_images_total(void)
{
    static const char *const mock_args[] = {"--latency-ms", "40", NULL};
    struct fixture f;
    if (fixture_up(&f, "workers-total", 60, 200, mock_args)) {
        CU_FAIL("fixture");
        fixture_down(&f);
        return;
    }
    const char *first[] = {e2e_annotate_bin(), f.root, "--out", f.csv, "--server", f.m.base_url, "--quiet",
                           "--max-images", "3", NULL};
    CU_ASSERT_EQUAL(run_cmd(first, tmo(30), NULL, 0), 0);
    CU_ASSERT_EQUAL(e2e_count_lines(f.csv), 4);
    const char *again[] = {e2e_annotate_bin(), f.root, "--out", f.csv, "--server", f.m.base_url, "--resume",
                           "--max-images", "20", "--strategy", "threads", "--workers", "2",
                           "--progress-interval", "0.1", NULL};
    pid_t pid = e2e_spawn(again, f.log);
    CU_ASSERT_EQUAL(e2e_wait(pid, tmo(60)), 0);
    CU_ASSERT_EQUAL(e2e_count_lines(f.csv), 24);
    check_totals(f.log, 23); /* 3 already there + 20 taken now */
    fixture_down(&f);
}

static void test_stopped_worker_big_frames(void)
{
    static const char *const mock_args[] = {"--latency-ms", "20", NULL};
    struct fixture f;
    /* 100 KB images: their base64 frames (about 133 KB) are bigger than a pipe holds. */
    if (fixture_up(&f, "workers-stop", 40, 100 * 1024, mock_args)) {
        CU_FAIL("fixture");
        fixture_down(&f);
        return;
    }
    const char *argv[] = {e2e_annotate_bin(), f.root, "--out", f.csv, "--server", f.m.base_url, "--quiet",
                          "--strategy", "load=threads,query=processes", "--workers", "2", "--timeout-ms", "2000",
                          NULL};
    pid_t pid = e2e_spawn(argv, f.log);
    CU_ASSERT_FATAL(pid > 0);
    long deadline = now_ms() + tmo(20) * 1000L;
    pid_t kids[8];
    int n = 0;
    while ((n = e2e_children(pid, kids, NULL, 8)) < 2 && e2e_alive(pid) && now_ms() < deadline)
        sleep_ms(10);
    CHECKF(n >= 1, "no worker process");
    if (n >= 1)
        kill(kids[0], SIGSTOP); /* stopped, not dead: only silence tells */
    int rc = e2e_wait(pid, tmo(40));
    if (n >= 1)
        kill(kids[0], SIGKILL); /* in case it is still there */
    char tail[2000];
    file_tail(f.log, tail, sizeof tail);
    CHECKF(rc == 0 || rc == 1, "the run did not finish (exit %d); log: %s", rc, tail);
    check_rows("a stopped worker", f.csv, f.paths, f.n, 1);
    fixture_down(&f);
}

static void test_worker_by_hand(void)
{
    const char *argv[] = {e2e_annotate_bin(), IPC_WORKER_ARG, NULL};
    char out[2048];
    int rc = run_cmd(argv, tmo(10), out, sizeof out);
    CHECKF(rc == 2, "exit %d: %s", rc, out);
    CHECKF(strstr(out, "configuration") != NULL, "no reason given: %s", out);
}

int register_workers(void)
{
    CU_pSuite s = CU_add_suite("workers concurrent", NULL, NULL);
    if (!s || !CU_add_test(s, "a pipeline file edited mid-run never reaches a replacement worker",
                           test_pipeline_edited_during_run) ||
        !CU_add_test(s, "the progress line counts requests in flight, every strategy", test_in_flight_counted) ||
        !CU_add_test(s, "--resume --max-images: the progress total is what this run settles",
                     test_resume_max_images_total) ||
        !CU_add_test(s, "a stopped worker with frames bigger than a pipe is replaced; the run ends",
                     test_stopped_worker_big_frames) ||
        !CU_add_test(s, "a worker started by hand exits 2", test_worker_by_hand))
        return -1;
    return 0;
}
