/* End-to-end tests: build/annotate ($ANNOTATE_BIN) run against the mock model server ($MOCK_BIN)
 * over real file trees, every CSV cell checked against the mock's own models (mock_answer).
 *
 *   "e2e serial"      the hostile tree through --strategy serial (make valgrind runs this one)
 *   "e2e"             server down, bad options, --max-image-bytes
 *   "e2e concurrent"  every strategy gives serial's rows; a worker process killed mid-run
 *                     (make tsan runs these)
 *   "e2e shard"       four shards run at once, merged: the single run's rows
 *   "e2e cli"         --help lists every option, --version */
#include <CUnit/CUnit.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "cli.h"
#include "select.h"
#include "e2e.h"
#include "proc.h"
#include "tree.h"
#include "util.h"

#define MAXA 64

/* Runs annotate with the NULL-terminated arguments; output into out. */
static int annotate(char *out, size_t outlen, int timeout_s, ...)
{
    const char *argv[MAXA];
    int n = 0;
    argv[n++] = e2e_annotate_bin();
    va_list ap;
    va_start(ap, timeout_s);
    const char *s;
    while ((s = va_arg(ap, const char *)) && n < MAXA - 1)
        argv[n++] = s;
    va_end(ap);
    argv[n] = NULL;
    return run_cmd(argv, timeout_s, out, outlen);
}

/* Checks that the mock saw exactly req[m] requests per model and rejected none. */
static void check_stats(const struct mock_proc *m, const long req[5], long attempts)
{
    cJSON *s = mock_stats(m);
    CU_ASSERT_PTR_NOT_NULL(s);
    if (!s)
        return;
    CU_ASSERT_EQUAL(mock_stat(s, "rejected"), 0);
    long total = 0;
    for (int k = 0; k < 5; k++) {
        char key[32];
        snprintf(key, sizeof key, "requests.model_%02d", k + 1);
        long got = mock_stat(s, key);
        total += req[k];
        if (req[k] >= 0 && got != req[k])
            fprintf(stderr, "\n  [e2e] %s: mock saw %ld, rows imply %ld\n", key, got, req[k]);
        CU_ASSERT_EQUAL(got, req[k]);
    }
    CU_ASSERT_EQUAL(mock_stat(s, "total"), total);
    if (attempts >= 0) {
        if (mock_stat(s, "total") != attempts)
            fprintf(stderr, "\n  [e2e] mock total %ld, attempts column sums to %ld\n", mock_stat(s, "total"),
                    attempts);
        CU_ASSERT_EQUAL(mock_stat(s, "total"), attempts);
    }
    cJSON_Delete(s);
}

/* ---- e2e serial ---------------------------------------------------------------------------- */

static void test_serial_hostile(void)
{
    char out[16384];
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_hostile(&t, "e2e") == 0);
    const char *root = t.root, *csv = t.csv, *sj = t.sj;
    char **paths = t.paths;
    size_t n = t.n;
    struct mock_proc m = {0};
    struct e2e_csv c = {0};
    if (mock_start(&m, NULL)) {
        CU_FAIL("mock did not start");
        goto done;
    }
    int rc = annotate(out, sizeof out, tmo(60), root, "--out", csv, "--server", m.base_url, "--strategy", "serial",
                      "--stats-json", sj, (const char *)NULL);
    if (rc != 1)
        show("serial over the hostile tree", rc, out);
    CU_ASSERT_EQUAL(rc, 1); /* the empty file */
    if (e2e_csv_read(csv, &c)) {
        CU_FAIL("the results file cannot be read as CSV");
        goto done;
    }
    CU_ASSERT_EQUAL(c.n, n);
    long req[5] = {0};
    struct e2e_expect x = {.check_attempts = 1};
    CU_ASSERT_EQUAL(e2e_check_results(&c, paths, n, &x, req), 0);
    int empties = 0;
    for (size_t i = 0; i < c.n; i++)
        empties += !strcmp(c.rows[i].f[COL_STATUS].s, "failed");
    CU_ASSERT_EQUAL(empties, 1);
    check_stats(&m, req, e2e_csv_attempts(&c));
    CU_ASSERT_EQUAL(e2e_check_summary(sj, &c, req[0] + req[1] + req[2] + req[3] + req[4]), 0);
done:
    e2e_csv_free(&c);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- e2e ------------------------------------------------------------------------------------- */

static void test_server_down(void)
{
    enum { N = 40 };
    char server[64], out[8192];
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "e2e", N, 3) == 0);
    const char *root = t.root, *csv = t.csv, *sj = t.sj;
    char **paths = t.paths;
    int port = e2e_closed_port();
    CU_ASSERT_FATAL(port > 0);
    snprintf(server, sizeof server, "http://127.0.0.1:%d", port);
    static const char *const strategies[] = {"serial", "threads", "processes", "curl-multi",
                                             "load=threads,query=curl-multi"};
    for (size_t s = 0; s < sizeof strategies / sizeof *strategies; s++) {
        /* --outage-timeout 0: the images fail at once instead of waiting for the server (the
         * suite "outage" tests the wait) */
        const char *extra[] = {"--strategy", strategies[s], "--retries", "1", "--backoff-ms", "1", "--workers", "4",
                               "--stats-json", sj, "--outage-timeout", "0", NULL};
        long t0 = now_ms();
        int rc = e2e_run(out, sizeof out, tmo(30), root, csv, server, extra);
        long ms = now_ms() - t0;
        if (rc != 1)
            show(strategies[s], rc, out);
        CU_ASSERT_EQUAL(rc, 1);
        CU_ASSERT(ms < 15000); /* no hang: refused connections fail at once */
        struct e2e_csv c;
        if (e2e_csv_read(csv, &c)) {
            CU_FAIL("the results file cannot be read as CSV");
            continue;
        }
        struct e2e_expect x = {.fail_substr = "connect"};
        long bad = e2e_check_results(&c, paths, N, &x, NULL);
        if (bad)
            fprintf(stderr, "\n  [e2e] server down, strategy %s: %ld problems\n", strategies[s], bad);
        CU_ASSERT_EQUAL(bad, 0);
        /* model_01 is sent, and model_02 too unless the driver sends one request at a time (it
         * is not sent once model_01 failed); each is tried twice (the first try and the one
         * retry) unless the image failed meanwhile. So every row made 2 to 4 attempts, and
         * at least one retry. */
        for (size_t i = 0; i < c.n; i++) {
            long a = atol(c.rows[i].f[COL_ATTEMPTS].s);
            CU_ASSERT(a >= 2 && a <= 4);
        }
        CU_ASSERT_EQUAL(e2e_check_summary(sj, &c, -1), 0);
        cJSON *j = e2e_read_json(sj);
        double rq = e2e_json_num(j, "requests"), rt = e2e_json_num(j, "retries"), at = e2e_json_num(j, "attempts");
        if (rt < N || rq < N || rq > at - N)
            fprintf(stderr, "\n  [e2e] server down, %s: %.0f requests, %.0f attempts, %.0f retries for %d images "
                            "that each retried at least once\n", strategies[s], rq, at, rt, N);
        CU_ASSERT(rt >= N);
        CU_ASSERT(rq >= N && rq <= at - N);
        cJSON_Delete(j);
        e2e_csv_free(&c);
    }
    e2e_tree_free(&t);
}

/* Exit 2 with one line on stderr, and an existing --out file left alone. */
static void check_usage_error(const char *what, const char *const *args, const char *csv)
{
    const char *argv[MAXA];
    int n = 0;
    argv[n++] = e2e_annotate_bin();
    for (int i = 0; args[i] && n < MAXA - 3; i++)
        argv[n++] = args[i];
    argv[n++] = "--out";
    argv[n++] = csv;
    argv[n] = NULL;
    if (write_file(csv, "keep me\n", 8))
        CU_FAIL("cannot write the sentinel file");
    char out[4096];
    int rc = run_cmd(argv, tmo(20), out, sizeof out);
    size_t len = strlen(out);
    char *nl = strchr(out, '\n');
    int one_line = len > 0 && nl == out + len - 1;
    if (rc != 2 || !one_line)
        show(what, rc, out);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT(one_line);
    CU_ASSERT(strncmp(out, "annotate", 8) == 0);
    size_t kl;
    char *kept = slurp(csv, &kl);
    int same = kept && kl == 8 && !memcmp(kept, "keep me\n", 8);
    if (!same)
        fprintf(stderr, "\n  [e2e] %s: the existing --out file was changed\n", what);
    CU_ASSERT(same);
    free(kept);
}

static void test_bad_options(void)
{
    char base[512], root[600], csv[600], bad[600], missing[600], notjson[600];
    CU_ASSERT_FATAL(make_tmpdir(base, sizeof base, "e2e") == 0);
    snprintf(root, sizeof root, "%s/t", base);
    snprintf(csv, sizeof csv, "%s/r.csv", base);
    snprintf(bad, sizeof bad, "%s/bad-pipeline.json", base);
    snprintf(missing, sizeof missing, "%s/nope", base);
    snprintf(notjson, sizeof notjson, "%s/notjson.json", base);
    mkdir(root, 0755);
    static const char bad_text[] = "{\"stages\": [{\"name\": \"a\", \"url\": \"/model_01\"},\n"
                                   " {\"name\": \"b\", \"url\": \"/model_02\", \"when\": [\"later\"]}]}\n";
    CU_ASSERT_FATAL(write_file(bad, bad_text, strlen(bad_text)) == 0);
    CU_ASSERT_FATAL(write_file(notjson, "{\"stages\": [", 12) == 0);
    struct {
        const char *what;
        const char *args[8];
    } cases[] = {
        {"unknown option", {root, "--no-such-option", NULL}},
        {"load=curl-multi", {root, "--strategy", "load=curl-multi", NULL}},
        {"unknown strategy", {root, "--strategy", "quantum", NULL}},
        {"--workers 0", {root, "--workers", "0", NULL}},
        {"--workers -3", {root, "--workers", "-3", NULL}},
        {"--workers x", {root, "--workers", "x", NULL}},
        {"missing DIR", {"--server", "http://127.0.0.1:1", NULL}},
        {"nonexistent DIR", {missing, NULL}},
        {"bad pipeline file", {root, "--config", bad, NULL}},
        {"pipeline file not JSON", {root, "--config", notjson, NULL}},
        {"missing pipeline file", {root, "--config", missing, NULL}},
        {"--shard 4/4", {root, "--shard", "4/4", NULL}},
        {"--retry-failed without --resume", {root, "--retry-failed", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_usage_error(cases[i].what, cases[i].args, csv);
    tree_rm(base);
}

static void test_max_image_bytes(void)
{
    char out[8192];
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_hostile(&t, "e2e") == 0);
    const char *root = t.root, *csv = t.csv;
    char **paths = t.paths;
    size_t n = t.n;
    struct mock_proc m = {0};
    struct e2e_csv c = {0};
    if (mock_start(&m, NULL)) {
        CU_FAIL("mock did not start");
        goto done;
    }
    int rc = annotate(out, sizeof out, tmo(60), root, "--out", csv, "--server", m.base_url, "--max-image-bytes",
                      "1000", "--quiet", (const char *)NULL);
    if (rc != 1)
        show("--max-image-bytes 1000", rc, out);
    CU_ASSERT_EQUAL(rc, 1);
    if (e2e_csv_read(csv, &c)) {
        CU_FAIL("the results file cannot be read as CSV");
        goto done;
    }
    long req[5] = {0};
    struct e2e_expect x = {.max_bytes = 1000, .check_attempts = 1};
    CU_ASSERT_EQUAL(e2e_check_results(&c, paths, n, &x, req), 0);
    int too_big = 0;
    for (size_t i = 0; i < c.n; i++)
        too_big += strstr(c.rows[i].f[COL_ERROR].s, "max-image-bytes") != NULL;
    CU_ASSERT(too_big > 3); /* the fixtures hold several images over 1000 bytes */
    check_stats(&m, req, e2e_csv_attempts(&c));
done:
    e2e_csv_free(&c);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- e2e concurrent -------------------------------------------------------------------------- */

static void test_strategies_agree(void)
{
    enum { N = 2000 };
    char out[8192];
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "e2e", N, 11) == 0);
    const char *root = t.root, *csv = t.csv, *sj = t.sj;
    char **paths = t.paths, **ref = NULL;
    size_t n_ref = 0;
    long req_total = 0;
    struct mock_proc fast = {0}, slow = {0};
    static const char *const slow_args[] = {"--latency-ms", "2", "--latency-dist", "uniform", NULL};
    if (mock_start(&fast, NULL) || mock_start(&slow, slow_args)) {
        CU_FAIL("mock did not start");
        goto done;
    }
    /* The reference: serial, against a mock without latency (it would take N * 4 requests *
     * 2 ms otherwise), and checked cell by cell. */
    {
        const char *extra[] = {"--strategy", "serial", "--stats-json", sj, NULL};
        int rc = e2e_run(out, sizeof out, tmo(120), root, csv, fast.base_url, extra);
        if (rc != 0)
            show("serial", rc, out);
        CU_ASSERT_EQUAL(rc, 0);
        struct e2e_csv c;
        if (e2e_csv_read(csv, &c)) {
            CU_FAIL("serial: the results file cannot be read as CSV");
            goto done;
        }
        long req[5] = {0};
        struct e2e_expect x = {.check_attempts = 1};
        CU_ASSERT_EQUAL(e2e_check_results(&c, paths, N, &x, req), 0);
        check_stats(&fast, req, e2e_csv_attempts(&c));
        for (int k = 0; k < 5; k++)
            req_total += req[k];
        CU_ASSERT_EQUAL(e2e_check_summary(sj, &c, req_total), 0);
        ref = e2e_csv_keys(&c);
        n_ref = c.n;
        e2e_csv_free(&c);
    }
    static const char *const strategies[] = {"threads", "processes", "curl-multi", "load=processes,query=curl-multi",
                                             "load=threads,query=processes", "curl-multi"};
    /* the last one: three event loops sharing 32 requests in flight */
    static const char *const loops[] = {"1", "1", "1", "1", "1", "3"};
    for (size_t s = 0; s < sizeof strategies / sizeof *strategies; s++) {
        const char *extra[] = {"--strategy", strategies[s], "--stats-json", sj, "--loops", loops[s],
                               "--concurrency", "32", NULL};
        if (e2e_stats_reset(&slow))
            CU_FAIL("cannot reset the mock's counters");
        long t0 = now_ms();
        int rc = e2e_run(out, sizeof out, tmo(120), root, csv, slow.base_url, extra);
        long ms = now_ms() - t0;
        if (rc != 0)
            show(strategies[s], rc, out);
        CU_ASSERT_EQUAL(rc, 0);
        struct e2e_csv c;
        if (e2e_csv_read(csv, &c)) {
            CU_FAIL("the results file cannot be read as CSV");
            continue;
        }
        CU_ASSERT(e2e_csv_well_formed(&c) && c.complete);
        char **keys = e2e_csv_keys(&c);
        size_t diff = 0;
        if (c.n != n_ref) {
            diff = c.n > n_ref ? c.n - n_ref : n_ref - c.n;
        } else {
            for (size_t i = 0; i < c.n; i++)
                diff += strcmp(keys[i], ref[i]) != 0;
        }
        if (diff)
            fprintf(stderr, "\n  [e2e] %s: %zu rows (of %zu) differ from serial's\n", strategies[s], diff, c.n);
        CU_ASSERT_EQUAL(diff, 0);
        /* Every request the mock saw is an attempt in some row, and no more. */
        long req[5] = {-1, -1, -1, -1, -1};
        cJSON *st = mock_stats(&slow);
        CU_ASSERT_EQUAL(mock_stat(st, "rejected"), 0);
        long total = mock_stat(st, "total");
        if (total != e2e_csv_attempts(&c))
            fprintf(stderr, "\n  [e2e] %s: mock total %ld, attempts column sums to %ld\n", strategies[s], total,
                    e2e_csv_attempts(&c));
        CU_ASSERT_EQUAL(total, e2e_csv_attempts(&c));
        CU_ASSERT_EQUAL(total, req_total); /* no faults: no retries */
        cJSON_Delete(st);
        (void)req;
        CU_ASSERT_EQUAL(e2e_check_summary(sj, &c, req_total), 0);
        fprintf(stderr, "[%s %.1fs] ", strategies[s], (double)ms / 1e3);
        free_strs(keys, c.n);
        e2e_csv_free(&c);
    }
done:
    mock_stop(&fast);
    mock_stop(&slow);
    free_strs(ref, n_ref);
    e2e_tree_free(&t);
}

static void test_worker_killed(void)
{
    enum { N = 800, WORKERS = 4 };
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "e2e", N, 5) == 0);
    const char *root = t.root, *csv = t.csv, *log = t.log;
    char **paths = t.paths;
    struct mock_proc m = {0};
    pid_t pid = -1;
    static const char *const slow_args[] = {"--latency-ms", "5", NULL};
    if (mock_start(&m, slow_args)) {
        CU_FAIL("mock did not start");
        goto done;
    }
    const char *argv[] = {e2e_annotate_bin(), root, "--out", csv, "--server", m.base_url, "--strategy", "processes",
                          "--workers", "4", "--quiet", NULL};
    pid = e2e_spawn(argv, log);
    CU_ASSERT_FATAL(pid > 0);
    int got = e2e_wait_lines(csv, N / 5, pid, tmo(60));
    if (got != 1) {
        CU_FAIL("the run did not reach a fifth of its rows while running");
        goto wait;
    }
    pid_t kids[64];
    char states[64];
    int nk = e2e_children(pid, kids, states, 64);
    CU_ASSERT_EQUAL(nk, WORKERS);
    if (nk < 1)
        goto wait;
    pid_t victim = kids[nk / 2];
    CU_ASSERT_EQUAL(kill(victim, SIGKILL), 0);
    /* The dead worker is reaped (no zombie) and replaced, while the run goes on. */
    int settled = 0;
    long deadline = now_ms() + tmo(5) * 1000L;
    while (now_ms() < deadline && !settled) {
        sleep_ms(20);
        nk = e2e_children(pid, kids, states, 64);
        int zombies = 0, victim_there = 0;
        for (int i = 0; i < nk; i++) {
            zombies += states[i] == 'Z';
            victim_there |= kids[i] == victim;
        }
        settled = !zombies && !victim_there && nk == WORKERS;
        if (!e2e_alive(pid))
            break;
    }
    if (e2e_alive(pid)) {
        if (!settled)
            fprintf(stderr, "\n  [e2e] after the kill: %d children, not reaped or not replaced\n", nk);
        CU_ASSERT(settled);
    }
wait:;
    int rc = e2e_wait(pid, tmo(120));
    CU_ASSERT(rc == 0 || rc == 1);
    if (rc != 0 && rc != 1)
        show_log("processes with a worker killed", rc, log);
    /* No worker outlives the run. */
    long dl = now_ms() + 5000;
    while (e2e_group_count(pid) > 0 && now_ms() < dl)
        sleep_ms(20);
    CU_ASSERT_EQUAL(e2e_group_count(pid), 0);
    struct e2e_csv c;
    if (e2e_csv_read(csv, &c)) {
        CU_FAIL("the results file cannot be read as CSV");
        goto done;
    }
    struct e2e_expect x = {.allow_worker_failed = 1};
    CU_ASSERT_EQUAL(e2e_check_results(&c, paths, N, &x, NULL), 0);
    int failed = 0;
    for (size_t i = 0; i < c.n; i++)
        failed += !strcmp(c.rows[i].f[COL_STATUS].s, "failed");
    CU_ASSERT(failed <= 1);          /* one kill: its image is retried on another worker */
    CU_ASSERT_EQUAL(rc, failed ? 1 : 0);
    e2e_csv_free(&c);
done:
    if (pid > 0)
        kill(-pid, SIGKILL); /* our own process group: nothing left behind if a check failed */
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- e2e shard ------------------------------------------------------------------------------- */

static void test_shards(void)
{
    enum { N = 400, SHARDS = 4 };
    char merged[600], sh[SHARDS][600], failed[600], out[8192];
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "e2e", N, 21) == 0);
    const char *base = t.base, *root = t.root, *csv = t.csv;
    snprintf(merged, sizeof merged, "%s/merged.csv", base);
    snprintf(failed, sizeof failed, "%s/failed.csv", base);
    for (int k = 0; k < SHARDS; k++)
        snprintf(sh[k], sizeof sh[k], "%s/s%d.csv", base, k);
    char **paths = t.paths, **ref = NULL;
    size_t n_ref = 0;
    struct mock_proc m = {0};
    if (mock_start(&m, NULL)) {
        CU_FAIL("mock did not start");
        goto done;
    }
    int rc = e2e_run(out, sizeof out, tmo(60), root, csv, m.base_url, NULL);
    CU_ASSERT_EQUAL(rc, 0);
    struct e2e_csv c;
    if (e2e_csv_read(csv, &c)) {
        CU_FAIL("single run: the results file cannot be read");
        goto done;
    }
    CU_ASSERT_EQUAL(e2e_check_results(&c, paths, N, NULL, NULL), 0);
    ref = e2e_csv_keys(&c);
    n_ref = c.n;
    e2e_csv_free(&c);

    /* As the README runs it, with GNU parallel (make deps installs it). */
    if (!in_path("parallel")) {
        CU_FAIL("GNU parallel is not installed (make deps installs it): the README's shard command cannot run");
        goto done;
    }
    char tmpl[2048];
    snprintf(tmpl, sizeof tmpl, "%s/s{}.csv", base);
    const char *pargv[] = {"parallel", "--will-cite", "-j", "4", e2e_annotate_bin(), root, "--shard", "{}/4", "--out",
                           tmpl, "--server", m.base_url, "--quiet", ":::", "0", "1", "2", "3", NULL};
    rc = run_cmd(pargv, tmo(120), out, sizeof out);
    if (rc != 0)
        show("parallel", rc, out);
    CU_ASSERT_EQUAL(rc, 0);
    /* Disjoint, each a fair part, together everything; shard k holds exactly the images whose
     * key, shard_hash of the path below the root, is k modulo 4. */
    size_t total = 0, root_len = strlen(root);
    for (int k = 0; k < SHARDS; k++) {
        struct e2e_csv s;
        if (e2e_csv_read(sh[k], &s)) {
            CU_FAIL("a shard's results file cannot be read");
            continue;
        }
        CU_ASSERT(e2e_csv_well_formed(&s) && s.complete);
        CU_ASSERT(s.n > N / SHARDS / 2);
        size_t elsewhere = 0;
        for (size_t i = 0; i < s.n; i++) {
            const struct e2e_field *p = &s.rows[i].f[COL_PATH];
            elsewhere += p->len <= root_len + 1 ||
                         shard_hash(p->s + root_len + 1, p->len - root_len - 1) % SHARDS != (uint64_t)k;
        }
        CHECKF(elsewhere == 0, "shard %d/%d: %zu of its %zu rows have another shard's key", k, SHARDS, elsewhere, s.n);
        total += s.n;
        e2e_csv_free(&s);
    }
    CU_ASSERT_EQUAL(total, N);
    /* An all-failed run of shard 0 merged in too: an ok row wins over a failed one. */
    char server[64];
    snprintf(server, sizeof server, "http://127.0.0.1:%d", e2e_closed_port());
    const char *extra[] = {"--shard", "0/4", "--retries", "0", "--outage-timeout", "0", NULL};
    rc = e2e_run(out, sizeof out, tmo(60), root, failed, server, extra);
    CU_ASSERT_EQUAL(rc, 1);
    rc = annotate(out, sizeof out, tmo(60), "merge", merged, failed, sh[0], sh[1], sh[2], sh[3], (const char *)NULL);
    if (rc != 0)
        show("merge", rc, out);
    CU_ASSERT_EQUAL(rc, 0);
    if (e2e_csv_read(merged, &c)) {
        CU_FAIL("the merged file cannot be read");
        goto done;
    }
    CU_ASSERT_EQUAL(e2e_check_results(&c, paths, N, NULL, NULL), 0);
    char **keys = e2e_csv_keys(&c);
    size_t diff = 0;
    if (c.n == n_ref)
        for (size_t i = 0; i < c.n; i++)
            diff += strcmp(keys[i], ref[i]) != 0;
    else
        diff = 1;
    CU_ASSERT_EQUAL(diff, 0);
    free_strs(keys, c.n);
    e2e_csv_free(&c);
done:
    mock_stop(&m);
    free_strs(ref, n_ref);
    e2e_tree_free(&t);
}

/* ---- e2e cli --------------------------------------------------------------------------------- */

static int mentions_option(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, "--")); p += 2) {
        if (!strncmp(p + 2, name, n)) {
            char after = p[2 + n];
            if (!(after >= 'a' && after <= 'z') && !(after >= '0' && after <= '9') && after != '-')
                return 1;
        }
    }
    return 0;
}

static void test_help_version(void)
{
    static char out[65536];
    int rc = annotate(out, sizeof out, tmo(20), "--help", (const char *)NULL);
    CU_ASSERT_EQUAL(rc, 0);
    const char *const *names = cli_option_names();
    CU_ASSERT_PTR_NOT_NULL_FATAL(names);
    int count = 0;
    for (int i = 0; names[i]; i++, count++) {
        /* bench-only options are documented in annotate bench --help. */
        int found = mentions_option(out, names[i]);
        if (!found) {
            static char bench[65536];
            annotate(bench, sizeof bench, tmo(20), "bench", "--help", (const char *)NULL);
            found = mentions_option(bench, names[i]);
        }
        if (!found)
            fprintf(stderr, "\n  [e2e] --help does not mention --%s\n", names[i]);
        CU_ASSERT(found);
    }
    CU_ASSERT(count >= 25);
    CU_ASSERT(strstr(out, "usage") != NULL);
    char ver[1024];
    rc = annotate(ver, sizeof ver, tmo(20), "--version", (const char *)NULL);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(strstr(ver, ANNOTATE_VERSION) != NULL);
}

/* ---- --stats-json's keys in the man page ---- */

/* The man page's section `section` (from its .SH line to the next), without font escapes (\fB,
 * \fR, \fI, \fP) and with "\-" as "-"; NULL when there is none. */
static char *man_section(const char *path, const char *section)
{
    size_t len;
    char *t = slurp(path, &len);
    char *start = t ? strstr(t, section) : NULL;
    if (!start) {
        free(t);
        return NULL;
    }
    char *end = strstr(start + 1, "\n.SH ");
    len = end ? (size_t)(end - start) : strlen(start);
    memmove(t, start, len);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (t[i] == '\\' && i + 2 < len && t[i + 1] == 'f') {
            i += 2;
            continue;
        }
        if (t[i] == '\\' && i + 1 < len && t[i + 1] == '-')
            i++;
        t[o++] = t[i];
    }
    t[o] = 0;
    return t;
}

/* key appears in text as a word of its own (letters, digits and '_' make a word). */
static int mentions_word(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = text; (p = strstr(p, key)); p++) {
        int before = p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_');
        int after = isalnum((unsigned char)p[n]) || p[n] == '_';
        if (!before && !after)
            return 1;
    }
    return 0;
}

/* Every key under node is in the man page (the keys of objects keyed by stage are the stages'
 * names: only what is under them is checked). Returns the keys checked; the missing ones are
 * counted in *missing and named on stderr. */
static int check_keys(const cJSON *node, const char *man, int *missing)
{
    static const char *const BY_STAGE[] = {"stages", "limits", "replicas", "batches", NULL};
    int checked = 0;
    for (const cJSON *c = node ? node->child : NULL; c; c = c->next) {
        int by_stage = 0;
        if (cJSON_IsObject(node) && c->string) {
            checked++;
            if (!mentions_word(man, c->string)) {
                fprintf(stderr, "\n  [e2e] --stats-json has \"%s\"; the man page does not say it", c->string);
                (*missing)++;
            }
            for (int k = 0; BY_STAGE[k]; k++)
                by_stage |= !strcmp(c->string, BY_STAGE[k]) && cJSON_IsObject(c);
        }
        if (by_stage) {
            for (const cJSON *st = c->child; st; st = st->next)
                checked += check_keys(st, man, missing);
        } else if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            checked += check_keys(c, man, missing);
        }
    }
    return checked;
}

/* A run with many of --stats-json's parts on (failures, --concurrency auto, --cache, replicas):
 * every key it writes is described in docs/annotate.1's STATS JSON section (a common word such as
 * "limit" or "end" found elsewhere in the page would not do). */
static void test_stats_json_in_man(void)
{
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "e2e-keys", 40, 5) == 0);
    static const char *const mock_args[] = {"--seed", "3", "--error-rate", "0.2", NULL};
    struct mock_proc m = {0};
    char pfile[700], pipe[2048], cache[700], out[8192];
    char *man = man_section("docs/annotate.1", ".SH STATS JSON\n");
    CU_ASSERT_PTR_NOT_NULL_FATAL(man);
    snprintf(pfile, sizeof pfile, "%s/pipeline.json", t.base);
    snprintf(cache, sizeof cache, "%s/cache.db", t.base);
    if (mock_start(&m, mock_args)) {
        CU_FAIL("mock did not start");
        goto done;
    }
    snprintf(pipe, sizeof pipe,
             "{\"stages\": [{\"name\": \"model_01\", \"url\": [\"%s/model_01\", \"%s/model_01?replica=2\"], "
             "\"fields\": {\"model_03\": null}}]}",
             m.base_url, m.base_url);
    FILE *f = fopen(pfile, "w");
    if (!f || fputs(pipe, f) < 0 || fclose(f)) {
        CU_FAIL("cannot write the pipeline file");
        goto done;
    }
    int rc = annotate(out, sizeof out, tmo(60), t.root, "--out", t.csv, "--config", pfile, "--quiet",
                      "--concurrency", "auto", "--cache", cache, "--retries", "0", "--stats-json", t.sj,
                      (const char *)NULL);
    CHECKF(rc == 1, "rc %d (some images fail with the mock's 500s): %s", rc, out);
    cJSON *sj = e2e_read_json(t.sj);
    if (!sj) {
        CU_FAIL("no --stats-json file");
        goto done;
    }
    static const char *const parts[] = {"errors", "limits", "concurrency_total", "cache", "replicas", NULL};
    for (int k = 0; parts[k]; k++)
        CHECKF(cJSON_GetObjectItemCaseSensitive(sj, parts[k]) != NULL, "no \"%s\" in --stats-json", parts[k]);
    int missing = 0, checked = check_keys(sj, man, &missing);
    CHECKF(checked >= 60, "only %d keys checked", checked);
    CHECKF(missing == 0, "%d of --stats-json's keys are not in the man page", missing);
    cJSON_Delete(sj);
done:
    free(man);
    mock_stop(&m);
    e2e_tree_free(&t);
}

int register_e2e(void)
{
    CU_pSuite s = CU_add_suite("e2e serial", NULL, NULL);
    if (!s || !CU_add_test(s, "hostile tree, serial: every row and cell predicted, mock counts match",
                           test_serial_hostile))
        return -1;
    s = CU_add_suite("e2e", NULL, NULL);
    if (!s || !CU_add_test(s, "server down: every image failed with a connection error, no hang", test_server_down) ||
        !CU_add_test(s, "bad options: exit 2, one line, --out untouched", test_bad_options) ||
        !CU_add_test(s, "--max-image-bytes: larger files failed, not sent", test_max_image_bytes))
        return -1;
    s = CU_add_suite("e2e concurrent", NULL, NULL);
    if (!s || !CU_add_test(s, "every strategy writes serial's rows (2000 images, 2 ms latency)", test_strategies_agree) ||
        !CU_add_test(s, "processes: a worker killed mid-run is reaped and replaced", test_worker_killed))
        return -1;
    s = CU_add_suite("e2e shard", NULL, NULL);
    if (!s || !CU_add_test(s, "four shards at once, merged: the single run's rows", test_shards))
        return -1;
    s = CU_add_suite("e2e cli", NULL, NULL);
    if (!s || !CU_add_test(s, "--help names every option, --version", test_help_version) ||
        !CU_add_test(s, "--stats-json: every key it writes is in the man page", test_stats_json_in_man))
        return -1;
    return 0;
}
