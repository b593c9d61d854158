/* What a person meets: the progress line on a terminal (under script(1)) and the plain status
 * lines without one, the summary and --stats-json, header expansion in pipeline files and that a
 * token never leaks into output, logs or the CSV. */
#include <arpa/inet.h>
#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "tree.h"
#include "util.h"
#include "cli.h"
#include "check.h"

static char tmp[256];
static char imgs[300];

static int setup(void)
{
    if (make_tmpdir(tmp, sizeof tmp, "cli"))
        return -1;
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    return tree_make_generated(imgs, 60, 300, 11);
}

static int teardown(void)
{
    return tree_rm(tmp);
}

/* The progress line on a terminal: drawn with \r and erase-line, cleared at the end. */
static void test_progress_tty(void)
{
    if (!in_path("script")) {
        CU_FAIL("script(1) is not installed (Debian's bsdutils; make deps installs it): the terminal case cannot run");
        return;
    }
    struct mock_proc m;
    const char *args[] = {"--latency-ms", "30", NULL};
    CU_ASSERT_FATAL(mock_start(&m, args) == 0);
    char cmd[2048], log[300], out[300];
    snprintf(log, sizeof log, "%s/tty.log", tmp);
    snprintf(out, sizeof out, "%s/tty.csv", tmp);
    snprintf(cmd, sizeof cmd,
             "script -qfec '%s %s --server %s --out %s --strategy threads --workers 2' %s >/dev/null 2>&1",
             e2e_annotate_bin(), imgs, m.base_url, out, log);
    int rc = system(cmd);
    mock_stop(&m);
    CHECKF(rc == 0, "script -c 'annotate ...' returned %d", rc);
    char *t = slurp(log, NULL);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT(strstr(t, "\r\033[K") != NULL);      /* redrawn in place */
    CU_ASSERT(strstr(t, "images") != NULL);
    CU_ASSERT(strstr(t, "img/s") != NULL);
    CU_ASSERT(strstr(t, "ETA") != NULL);
    CU_ASSERT(strstr(t, "annotate: 60 images: 60 ok, 0 failed") != NULL);
    /* the line is cleared before the summary */
    const char *sum = strstr(t, "annotate: 60 images");
    CU_ASSERT(sum && sum - t >= 3 && strncmp(sum - 3, "\033[K", 3) == 0);
    free(t);
}

/* Without a terminal: plain lines at --progress-interval, no escape codes. */
static void test_progress_plain(void)
{
    struct mock_proc m;
    const char *args[] = {"--latency-ms", "40", NULL};
    CU_ASSERT_FATAL(mock_start(&m, args) == 0);
    char out[300], stats[300], buf[16384];
    snprintf(out, sizeof out, "%s/plain.csv", tmp);
    snprintf(stats, sizeof stats, "%s/stats.json", tmp);
    const char *argv[] = {e2e_annotate_bin(), imgs, "--server", m.base_url, "--out", out, "--strategy", "threads",
                          "--workers", "8", "--progress-interval", "0.2", "--stats-json", stats, NULL};
    int rc = run_cmd(argv, 60, buf, sizeof buf);
    mock_stop(&m);
    CU_ASSERT(rc == 0);
    CU_ASSERT(strstr(buf, "annotate: [") != NULL);
    CU_ASSERT(strstr(buf, "\033[") == NULL);
    CU_ASSERT(strstr(buf, "annotate: 60 images: 60 ok, 0 failed") != NULL);
    CU_ASSERT(strstr(buf, "slowest stage by p99") != NULL);
    cJSON *o = e2e_read_json(stats);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "images_found")->valuedouble, 60);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "images_ok")->valuedouble, 60);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(o, "images_failed")->valuedouble, 0);
    CU_ASSERT(cJSON_GetObjectItem(o, "requests")->valuedouble >= 120);
    CU_ASSERT(cJSON_IsString(cJSON_GetObjectItem(o, "slowest_stage")));
    cJSON *lat = cJSON_GetObjectItem(o, "request_latency");
    CU_ASSERT(cJSON_GetObjectItem(lat, "p50_ms")->valuedouble >= 35); /* 40 ms, within a bucket */
    CU_ASSERT(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "stages"), "model_01") != NULL);
    cJSON_Delete(o);
}

/* --quiet: nothing on stderr at all. */
static void test_quiet(void)
{
    struct mock_proc m;
    CU_ASSERT_FATAL(mock_start(&m, NULL) == 0);
    char out[300], buf[4096];
    snprintf(out, sizeof out, "%s/quiet.csv", tmp);
    const char *argv[] = {e2e_annotate_bin(), imgs, "--server", m.base_url, "--out", out, "--quiet", NULL};
    int rc = run_cmd(argv, 60, buf, sizeof buf);
    mock_stop(&m);
    CU_ASSERT(rc == 0);
    CU_ASSERT_STRING_EQUAL(buf, "");
}

/* A one-connection HTTP server that records the request and answers {"result": 1}. */
struct catcher {
    int fd, port;
    char req[8192];
    pthread_t tid;
};

static void *catch_one(void *arg)
{
    struct catcher *c = arg;
    int s = accept(c->fd, NULL, NULL);
    close(c->fd); /* later connections are refused */
    c->fd = -1;
    if (s < 0)
        return NULL;
    size_t n = 0;
    while (n < sizeof c->req - 1) {
        ssize_t r = read(s, c->req + n, sizeof c->req - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        c->req[n] = 0;
        char *end = strstr(c->req, "\r\n\r\n");
        const char *cl = strcasestr(c->req, "content-length:");
        if (end && cl && (size_t)(end + 4 - c->req) + (size_t)atol(cl + 15) <= n)
            break;
    }
    const char *ans = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"result\":1}";
    ssize_t w = write(s, ans, strlen(ans));
    (void)w;
    close(s);
    return NULL;
}

static int catcher_start(struct catcher *c)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* annotate must not inherit it */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (bind(c->fd, (struct sockaddr *)&a, sizeof a) || listen(c->fd, 4) ||
        getsockname(c->fd, (struct sockaddr *)&a, &l))
        return -1;
    c->port = ntohs(a.sin_port);
    return pthread_create(&c->tid, NULL, catch_one, c);
}

/* ${VAR} in a header reaches the server expanded, and the token appears nowhere else: not in
 * stdout/stderr, not in the CSV, not in --stats-json, even when requests fail. */
static void test_header_token(void)
{
    const char *token = "s3cr3t-T0KEN-value-42";
    struct catcher c;
    CU_ASSERT_FATAL(catcher_start(&c) == 0);
    char pipe_path[300], out[300], stats[300], buf[16384], cfg[1024];
    snprintf(pipe_path, sizeof pipe_path, "%s/tok.json", tmp);
    snprintf(out, sizeof out, "%s/tok.csv", tmp);
    snprintf(stats, sizeof stats, "%s/tok-stats.json", tmp);
    /* Stage one goes to the catcher (answers once, then the port is closed: later images fail
     * with connection errors, whose messages must not carry the token either). */
    snprintf(cfg, sizeof cfg,
             "{\"stages\": [{\"name\": \"m\", \"url\": \"http://127.0.0.1:%d/m\", "
             "\"headers\": {\"Authorization\": \"Bearer ${ANNOTATE_TEST_TOKEN}\", \"X-Fixed\": \"yes\"}}]}",
             c.port);
    CU_ASSERT_FATAL(write_file(pipe_path, cfg, strlen(cfg)) == 0);
    setenv("ANNOTATE_TEST_TOKEN", token, 1);
    const char *argv[] = {e2e_annotate_bin(), imgs, "--config", pipe_path, "--out", out, "--strategy", "serial",
                          "--retries", "0", "--stats-json", stats, "--max-images", "3", NULL};
    int rc = run_cmd(argv, 60, buf, sizeof buf);
    pthread_join(c.tid, NULL);
    if (rc != 1)
        show("annotate with a header token", rc, buf);
    CU_ASSERT(rc == 1); /* one ok, two failed (connection refused) */
    CU_ASSERT(strstr(c.req, "Authorization: Bearer s3cr3t-T0KEN-value-42\r\n") != NULL);
    CU_ASSERT(strstr(c.req, "X-Fixed: yes\r\n") != NULL);
    CU_ASSERT(strstr(c.req, "User-Agent: annotate/" ANNOTATE_VERSION "\r\n") != NULL); /* servers' logs name us */
    CU_ASSERT(strstr(c.req, "Content-Type: application/json\r\n") != NULL);
    CU_ASSERT(strstr(c.req, "Expect:") == NULL);
    CU_ASSERT(strstr(buf, token) == NULL);
    char *csv = slurp(out, NULL), *js = slurp(stats, NULL);
    CU_ASSERT_FATAL(csv && js);
    CU_ASSERT(strstr(csv, "failed") != NULL);
    CU_ASSERT(strstr(csv, token) == NULL);
    CU_ASSERT(strstr(js, token) == NULL);
    free(csv);
    free(js);
    /* Unset: exit 2 naming the variable, and no other variable's value in the message. */
    unsetenv("ANNOTATE_TEST_TOKEN");
    setenv("ANNOTATE_OTHER_SECRET", "do-not-print-me", 1);
    rc = run_cmd(argv, 30, buf, sizeof buf);
    CU_ASSERT(rc == 2);
    CU_ASSERT(strstr(buf, "ANNOTATE_TEST_TOKEN") != NULL);
    CU_ASSERT(strstr(buf, "do-not-print-me") == NULL);
    unsetenv("ANNOTATE_OTHER_SECRET");
}

/* --help lists every option with its default where it has one; --version. */
static void test_help_version(void)
{
    char buf[16384];
    const char *argv[] = {e2e_annotate_bin(), "--help", NULL};
    CU_ASSERT(run_cmd(argv, 10, buf, sizeof buf) == 0);
    CU_ASSERT(strstr(buf, "[default: 256]") != NULL); /* --queue-size */
    CU_ASSERT(strstr(buf, "--concurrency N|auto|LIST") && strstr(buf, "[default: auto]"));
    CU_ASSERT(strstr(buf, "Exit status") != NULL);
    const char *bargv[] = {e2e_annotate_bin(), "bench", "--help", NULL};
    CU_ASSERT(run_cmd(bargv, 10, buf, sizeof buf) == 0);
    CU_ASSERT(strstr(buf, "--latency-ms") != NULL);
    CU_ASSERT(strstr(buf, "--strategies") != NULL);
    const char *vargv[] = {e2e_annotate_bin(), "--version", NULL};
    CU_ASSERT(run_cmd(vargv, 10, buf, sizeof buf) == 0);
    CU_ASSERT(strncmp(buf, "annotate ", 9) == 0);
}

/* Two runs on one --out: the second exits 2 at once and leaves the file alone. */
static void test_one_writer(void)
{
    struct mock_proc m;
    const char *args[] = {"--latency-ms", "100", NULL};
    CU_ASSERT_FATAL(mock_start(&m, args) == 0);
    char out[300], buf[4096];
    snprintf(out, sizeof out, "%s/lock.csv", tmp);
    const char *argv[] = {e2e_annotate_bin(), imgs, "--server", m.base_url, "--out", out, "--strategy", "serial",
                          "--quiet", NULL};
    pid_t first = e2e_spawn(argv, NULL);
    CU_ASSERT_FATAL(first > 0);
    /* Once the first run has written a row it holds the lock (taken before the header); it has
     * about 24 s of requests left (60 images, 4 requests of 100 ms each). */
    CHECKF(e2e_wait_lines(out, 2, first, tmo(30)), "the first run wrote no row");
    int rc = run_cmd(argv, 30, buf, sizeof buf);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT(strstr(buf, "another annotate run is writing") != NULL);
    /* The first run is stopped (Ctrl-C) rather than waited for: its file holds its own rows,
     * untouched by the second run: one header, rows complete, each image once, all ok. */
    CU_ASSERT_EQUAL(kill(first, SIGINT), 0);
    rc = e2e_wait(first, tmo(60));
    CHECKF(rc == 130, "the first run exited %d", rc);
    struct e2e_csv c = {0};
    CU_ASSERT_EQUAL(e2e_csv_read(out, &c), 0);
    CHECKF(c.n >= 1 && c.complete && !c.ragged, "%zu rows, complete %d, ragged %d", c.n, c.complete, c.ragged);
    for (size_t i = 0; i < c.n; i++) {
        CU_ASSERT_STRING_EQUAL(c.rows[i].f[COL_STATUS].s, "ok");
        CU_ASSERT(strcmp(c.rows[i].f[COL_PATH].s, "path") != 0); /* no second header */
        for (size_t j = 0; j < i; j++)
            CU_ASSERT(strcmp(c.rows[i].f[COL_PATH].s, c.rows[j].f[COL_PATH].s) != 0);
    }
    e2e_csv_free(&c);
    /* --resume with DIR spelled otherwise is refused rather than run everything again. */
    char dotted[400];
    snprintf(dotted, sizeof dotted, "%s/./imgs", tmp);
    const char *rargv[] = {e2e_annotate_bin(), dotted, "--server", m.base_url, "--out", out, "--resume", "--quiet", NULL};
    rc = run_cmd(rargv, 30, buf, sizeof buf);
    CU_ASSERT_EQUAL(rc, 2);
    CHECKF(strstr(buf, "the same folder spelled otherwise") && strstr(buf, "as the run that wrote it"), "%s", buf);
    mock_stop(&m);
}

/* A results file that cannot be written (the file size limit) stops every strategy with exit 2,
 * promptly: no hang waiting for a stage that will never drain. */
static void test_write_error(void)
{
    struct mock_proc m;
    CU_ASSERT_FATAL(mock_start(&m, NULL) == 0);
    static const char *const strategies[] = {"serial", "threads", "processes", "curl-multi"};
    for (int s = 0; s < 4; s++) {
        char cmd[2048], buf[4096];
        snprintf(cmd, sizeof cmd, "trap '' XFSZ; ulimit -f 2; exec %s %s --server %s --out %s/big.csv --quiet --force "
                 "--strategy %s --queue-size 4", e2e_annotate_bin(), imgs, m.base_url, tmp, strategies[s]);
        const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
        int rc = run_cmd(argv, 60, buf, sizeof buf);
        if (rc != 2)
            show(strategies[s], rc, buf);
        CU_ASSERT_EQUAL(rc, 2);
        CU_ASSERT(strstr(buf, "cannot write") != NULL);
    }
    mock_stop(&m);
}

static void must_write_text(const char *path, const char *text)
{
    CU_ASSERT_FATAL(write_text(path, text) == 0);
}

/* merge takes only annotate results files: a CSV with another header exits 2 naming the file,
 * and so do two results files of different pipelines; results files of one pipeline merge. */
static void test_merge_headers(void)
{
    char a[300], b[300], other[300], out[300], buf[4096];
    snprintf(a, sizeof a, "%s/merge-a.csv", tmp);
    snprintf(b, sizeof b, "%s/merge-b.csv", tmp);
    snprintf(other, sizeof other, "%s/merge-other.csv", tmp);
    snprintf(out, sizeof out, "%s/merged.csv", tmp);
    must_write_text(a, "path,status,m1,error,attempts,elapsed_ms\nd/x.jpg,ok,1,,1,2\nd/y.jpg,failed,,boom,4,9\n");
    must_write_text(b, "path,status,m1,error,attempts,elapsed_ms\nd/y.jpg,ok,2,,1,3\n");
    static const char *const foreign[] = {
        "name,age\nalice,30\n",
        "path,status,error\nd/x.jpg,ok,\n",                       /* no attempts, elapsed_ms */
        "status,path,m1,error,attempts,elapsed_ms\nok,d/x.jpg,1,,1,2\n", /* columns swapped */
        "path,status,m 1,error,attempts,elapsed_ms\nd/x.jpg,ok,1,,1,2\n", /* not a stage name */
        "path,status,,error,attempts,elapsed_ms\nd/x.jpg,ok,1,,1,2\n",
    };
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
        must_write_text(other, foreign[i]);
        /* Alone (it used to be merged by whatever sat in its first two columns)... */
        const char *argv1[] = {e2e_annotate_bin(), "merge", out, other, NULL};
        int rc = run_cmd(argv1, 30, buf, sizeof buf);
        CHECKF(rc == 2, "case %zu: merge of a foreign CSV alone exits %d: %s", i, rc, buf);
        CHECKF(strstr(buf, other) && strstr(buf, "not an annotate results file"), "case %zu: %s", i, buf);
        /* ... or beside a results file, after it or before it. */
        const char *argv[] = {e2e_annotate_bin(), "merge", out, a, other, NULL};
        rc = run_cmd(argv, 30, buf, sizeof buf);
        CHECKF(rc == 2, "case %zu: merge of a foreign CSV exits %d: %s", i, rc, buf);
        CHECKF(strstr(buf, other) && strstr(buf, "not an annotate results file"), "case %zu: %s", i, buf);
        /* first or second: the first header is checked too */
        const char *argv2[] = {e2e_annotate_bin(), "merge", out, other, a, NULL};
        rc = run_cmd(argv2, 30, buf, sizeof buf);
        CHECKF(rc == 2 && strstr(buf, other), "case %zu, given first: exit %d: %s", i, rc, buf);
        CHECKF(access(out, F_OK) != 0, "case %zu: %s was written", i, out);
    }
    /* Two pipelines' results (both annotate's): refused, as before. */
    must_write_text(other, "path,status,m2,error,attempts,elapsed_ms\nd/z.jpg,ok,1,,1,2\n");
    const char *argv[] = {e2e_annotate_bin(), "merge", out, a, other, NULL};
    int rc = run_cmd(argv, 30, buf, sizeof buf);
    CHECKF(rc == 2 && strstr(buf, "same pipeline"), "two pipelines: exit %d: %s", rc, buf);
    /* One with no stage column at all is still annotate's (every stage "csv": false). */
    must_write_text(other, "path,status,error,attempts,elapsed_ms\nd/z.jpg,ok,,1,2\n");
    const char *argv3[] = {e2e_annotate_bin(), "merge", out, other, NULL};
    rc = run_cmd(argv3, 30, buf, sizeof buf);
    CHECKF(rc == 0, "no stage columns: exit %d: %s", rc, buf);
    unlink(out);
    const char *argv4[] = {e2e_annotate_bin(), "merge", out, a, b, NULL};
    rc = run_cmd(argv4, 30, buf, sizeof buf);
    CHECKF(rc == 0, "merge of two results files: exit %d: %s", rc, buf);
    char *m = slurp(out, NULL);
    CU_ASSERT_FATAL(m != NULL);
    CU_ASSERT_STRING_EQUAL(m, "path,status,m1,error,attempts,elapsed_ms\nd/x.jpg,ok,1,,1,2\nd/y.jpg,ok,2,,1,3\n");
    free(m);
}


/* --header reaches the server, for every stage, under the pipeline file's own headers of the
 * same name; its value (from ${file:PATH} or ${VAR}) appears nowhere else. A relative stage URL is
 * joined to --server's path. */
static void test_header_option(void)
{
    const char *token = "cl1-T0KEN-from-file-77", *envtok = "cl1-T0KEN-from-env-88";
    struct catcher c;
    CU_ASSERT_FATAL(catcher_start(&c) == 0);
    char pipe_path[300], tok_path[300], out[300], buf[16384], server[128], hdr1[400];
    snprintf(pipe_path, sizeof pipe_path, "%s/hdr.json", tmp);
    snprintf(tok_path, sizeof tok_path, "%s/token.txt", tmp);
    snprintf(out, sizeof out, "%s/hdr.csv", tmp);
    snprintf(server, sizeof server, "http://127.0.0.1:%d/v1/", c.port);
    must_write_text(pipe_path, "{\"defaults\": {\"headers\": {\"X-Team\": \"vision\", \"User-Agent\": \"mine/1\"}},"
                          " \"stages\": [{\"name\": \"m\", \"url\": \"model_01\", \"headers\": {\"x-run\": \"stage-wins\"}}]}");
    char tokline[64];
    snprintf(tokline, sizeof tokline, "%s\n", token);
    must_write_text(tok_path, tokline);
    snprintf(hdr1, sizeof hdr1, "Authorization: Bearer ${file:%s}", tok_path);
    setenv("ANNOTATE_TEST_CLI_TOKEN", envtok, 1);
    const char *argv[] = {e2e_annotate_bin(), imgs, "--config", pipe_path, "--server", server, "--out", out,
                          "--strategy", "serial", "--retries", "0", "--max-images", "2",
                          "--header", hdr1, "--header", "X-Env: ${ANNOTATE_TEST_CLI_TOKEN}",
                          "--header", "X-Team: from-cli", "--header", "X-Run: from-cli", NULL};
    int rc = run_cmd(argv, 60, buf, sizeof buf);
    pthread_join(c.tid, NULL);
    CHECKF(rc == 1, "annotate exited %d: %s", rc, buf); /* one ok, then connection refused */
    CHECKF(strncmp(c.req, "POST /v1/model_01 ", 18) == 0, "request line: %.60s", c.req);
    CU_ASSERT(strstr(c.req, "Authorization: Bearer cl1-T0KEN-from-file-77\r\n") != NULL);
    CU_ASSERT(strstr(c.req, "X-Env: cl1-T0KEN-from-env-88\r\n") != NULL);
    CU_ASSERT(strstr(c.req, "X-Team: vision\r\n") != NULL);       /* the file's defaults win */
    CU_ASSERT(strstr(c.req, "from-cli") == NULL);                  /* ... and --header's is not sent too */
    CU_ASSERT(strstr(c.req, "x-run: stage-wins\r\n") != NULL);
    CU_ASSERT(strstr(c.req, "User-Agent: mine/1\r\n") != NULL); /* a User-Agent given replaces ours */
    CU_ASSERT(strstr(c.req, "annotate/") == NULL);
    CU_ASSERT(strstr(buf, token) == NULL && strstr(buf, envtok) == NULL);
    char *csv = slurp(out, NULL);
    CU_ASSERT_FATAL(csv != NULL);
    CU_ASSERT(strstr(csv, token) == NULL && strstr(csv, envtok) == NULL);
    free(csv);

    /* A missing token file: exit 2 at start, naming the path; an unset variable: naming it. */
    char missing[320];
    snprintf(missing, sizeof missing, "Authorization: Bearer ${file:%s/no-such-token}", tmp);
    argv[15] = missing;
    rc = run_cmd(argv, 30, buf, sizeof buf);
    CHECKF(rc == 2 && strstr(buf, "no-such-token") && strstr(buf, "--header"), "exit %d: %s", rc, buf);
    CU_ASSERT(strstr(buf, envtok) == NULL);
    argv[15] = hdr1;
    unsetenv("ANNOTATE_TEST_CLI_TOKEN");
    rc = run_cmd(argv, 30, buf, sizeof buf);
    CHECKF(rc == 2 && strstr(buf, "ANNOTATE_TEST_CLI_TOKEN") && strstr(buf, "--header"), "exit %d: %s", rc, buf);
    CU_ASSERT(strstr(buf, token) == NULL);
    /* A --header without a name: refused without showing it. */
    argv[15] = "cl1-T0KEN-pasted-alone";
    rc = run_cmd(argv, 30, buf, sizeof buf);
    CHECKF(rc == 2 && strstr(buf, "--header") && !strstr(buf, "pasted-alone"), "exit %d: %s", rc, buf);
}

/* Configuration errors that used to be accepted and then fail every image one at a time: each
 * exits 2 at start, naming the option or the file (and the stage) and what is wrong, before a
 * single request. */
static void test_startup_errors(void)
{
    char good[300], trailing[300], dupl[300], space[300], typo[300], cacert_dir[300], buf[8192];
    snprintf(good, sizeof good, "%s/se-good.json", tmp);
    snprintf(trailing, sizeof trailing, "%s/se-trailing.json", tmp);
    snprintf(dupl, sizeof dupl, "%s/se-dup.json", tmp);
    snprintf(space, sizeof space, "%s/se-space.json", tmp);
    snprintf(typo, sizeof typo, "%s/se-typo.json", tmp);
    snprintf(cacert_dir, sizeof cacert_dir, "%s/se-certs", tmp);
    mkdir(cacert_dir, 0755);
    must_write_text(good, "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}]}\n");
    must_write_text(trailing, "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}]}\n{\"stages\": []}\n");
    must_write_text(dupl, "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}], \"stages\": [{\"name\": \"n\", \"url\": \"/n\"}]}");
    must_write_text(space, "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}, {\"name\": \"n\", \"url\": \"/model 05\"}]}");
    must_write_text(typo, "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}, {\"name\": \"n\", \"url\": \"/n\","
                     " \"fields\": {\"prev\": {\"reslt_of\": \"m\"}}}]}");
    char missing_ca[320];
    snprintf(missing_ca, sizeof missing_ca, "%s/no-such-ca.pem", tmp);
    struct {
        const char *args[4];
        const char *want[4];
        const char *not;
    } cases[] = {
        {{"--server", "htp://models:8080"}, {"--server", "htp://models:8080", "http://"}, "stage"},
        {{"--server", "http://models:8080/v1 "}, {"--server", "blank"}, "stage"},
        {{"--server", "http://models:8080\r\nX-Evil: 1"}, {"--server", "line break"}, "\n"},
        {{"--server", "127.0.0.1:8080"}, {"--server", "http://"}, NULL},
        {{"--cacert", missing_ca}, {"--cacert", missing_ca, "No such file"}, NULL},
        {{"--cacert", cacert_dir}, {"--cacert", cacert_dir, "directory"}, NULL},
        {{"--config", tmp}, {tmp, "directory"}, NULL},
        {{"--config", trailing}, {trailing, "text after the end", "line 2"}, NULL},
        {{"--config", dupl}, {dupl, "\"stages\" appears twice"}, NULL},
        {{"--config", space}, {space, "stage 2 (n)", "\"url\"", "blank"}, NULL},
        {{"--config", typo}, {typo, "stage 2 (n)", "did you mean \"result_of\""}, NULL},
        {{"--config", good, "--max-rps", "1e-300"}, {"--max-rps", "0.001"}, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[15] = {e2e_annotate_bin(), imgs, "--out", "-", "--quiet"};
        int n = 5;
        for (int k = 0; k < 4 && cases[i].args[k]; k++)
            argv[n++] = cases[i].args[k];
        argv[n] = NULL;
        int rc = run_cmd(argv, 30, buf, sizeof buf);
        CHECKF(rc == 2, "case %zu (%s %s): exit %d: %s", i, cases[i].args[0], cases[i].args[1], rc, buf);
        for (int w = 0; w < 4 && cases[i].want[w]; w++)
            CHECKF(strstr(buf, cases[i].want[w]) != NULL, "case %zu: the message lacks '%s': %s", i, cases[i].want[w], buf);
        /* one line: "annotate: ...\n" */
        const char *nl = strchr(buf, '\n');
        CHECKF(nl && nl[1] == 0 && !strncmp(buf, "annotate: ", 10), "case %zu: not one message line: %s", i, buf);
        if (cases[i].not && nl)
            CHECKF(strstr(buf, cases[i].not) == NULL || strstr(buf, cases[i].not) == nl, "case %zu: shows '%s': %s", i,
                   cases[i].not, buf);
    }
    /* An unreadable pipeline file (as root every file is readable: not testable there). */
    if (geteuid() != 0) {
        chmod(good, 0);
        const char *argv[] = {e2e_annotate_bin(), imgs, "--config", good, NULL};
        int rc = run_cmd(argv, 30, buf, sizeof buf);
        CHECKF(rc == 2 && strstr(buf, good) && strstr(buf, "Permission denied"), "exit %d: %s", rc, buf);
        chmod(good, 0644);
    }
}

/* Failures explained while the run goes and at its end: the progress line shows retries and the
 * most common reason, the summary and --stats-json a tally by stage and reason, most common
 * first. The processes strategy: rows come from worker processes, and are tallied where the
 * parent writes them. */
static void test_failures_explained(void)
{
    char dir[300], out[300], stats[300], buf[65536];
    snprintf(dir, sizeof dir, "%s/fail-imgs", tmp);
    snprintf(out, sizeof out, "%s/fail.csv", tmp);
    snprintf(stats, sizeof stats, "%s/fail.json", tmp);
    CU_ASSERT_FATAL(tree_make_generated(dir, 40, 300, 12) == 0);
    char empty[400];
    snprintf(empty, sizeof empty, "%s/empty.png", dir);
    CU_ASSERT_FATAL(write_file(empty, "", 0) == 0);
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "20", "--error-rate", "0.25", "--seed", "5", NULL};
    CU_ASSERT_FATAL(mock_start(&m, margs) == 0);
    const char *argv[] = {e2e_annotate_bin(), dir, "--server", m.base_url, "--out", out, "--strategy", "processes",
                          "--workers", "2", "--retries", "1", "--backoff-ms", "1", "--progress-interval", "0.1",
                          "--stats-json", stats, "--outage-timeout", "0", NULL};
    int rc = run_cmd(argv, tmo(60), buf, sizeof buf);
    mock_stop(&m);
    CHECKF(rc == 1, "exit %d: %s", rc, buf);
    /* While it runs: "N retries  N failed (model_0x: HTTP 500)" (or the empty file's reason). */
    CHECKF(strstr(buf, " retries  ") != NULL, "no retries on the progress line: %s", buf);
    CHECKF(strstr(buf, " failed (model_0") || strstr(buf, " failed (empty file"), "no reason on the progress line: %s",
           buf);
    /* At the end: the tally, most common first. */
    CHECKF(strstr(buf, "images failed (most common first):\n") != NULL, "%s", buf);
    CHECKF(strstr(buf, ": HTTP 500\n") != NULL, "%s", buf);
    /* The summary lists five kinds: with six, the empty file (1, tied with others at 1) may be
     * among the "other reasons"; --stats-json below lists every kind. */
    CHECKF(strstr(buf, "  1  empty file (N bytes): not sent\n") != NULL || strstr(buf, "  other reasons (") != NULL,
           "%s", buf);
    struct e2e_csv c;
    CU_ASSERT_FATAL(e2e_csv_read(out, &c) == 0);
    long failed_rows = 0;
    for (size_t i = 0; i < c.n; i++)
        failed_rows += c.rows[i].n > 1 && !strcmp(c.rows[i].f[1].s, "failed");
    e2e_csv_free(&c);
    cJSON *o = e2e_read_json(stats);
    CU_ASSERT_FATAL(o != NULL);
    double failed = e2e_json_num(o, "images_failed");
    CHECKF(failed == failed_rows && failed >= 2, "images_failed %g, failed rows %ld", failed, failed_rows);
    cJSON *errs = cJSON_GetObjectItem(o, "errors"), *e;
    CU_ASSERT_FATAL(cJSON_IsArray(errs));
    double sum = e2e_json_num(o, "errors_other"), last = 1e18;
    int empties = 0, http500 = 0;
    CU_ASSERT_EQUAL(sum, 0);
    cJSON_ArrayForEach(e, errs)
    {
        double n = e2e_json_num(e, "count");
        const char *reason = cJSON_GetStringValue(cJSON_GetObjectItem(e, "reason"));
        cJSON *stage = cJSON_GetObjectItem(e, "stage");
        CU_ASSERT_FATAL(reason != NULL);
        CHECKF(n <= last, "not most common first: %g after %g", n, last);
        last = n;
        sum += n;
        if (cJSON_IsNull(stage)) {
            CHECKF(!strcmp(reason, "empty file (N bytes): not sent") && n == 1, "%s x %g", reason, n);
            empties++;
        } else {
            const char *sn = cJSON_GetStringValue(stage);
            CHECKF(sn && !strncmp(sn, "model_0", 7) && !strcmp(reason, "HTTP 500"), "%s: %s", sn ? sn : "?", reason);
            const char *ex = cJSON_GetStringValue(cJSON_GetObjectItem(e, "example"));
            CHECKF(ex && strstr(ex, "HTTP 500: ") && strstr(ex, "(after 2 attempts)"), "example %s", ex ? ex : "?");
            http500++;
        }
    }
    CU_ASSERT_EQUAL(empties, 1);
    CU_ASSERT(http500 >= 1);
    CHECKF(sum == failed, "the tally counts %g failures, the run %g", sum, failed);
    cJSON_Delete(o);
    tree_rm(dir);
}

/* On a terminal the line fits its width: the reason is shortened, not wrapped; a wide terminal
 * (or --verbose) also shows each stage's p50. */
static void test_progress_width(void)
{
    if (!in_path("script")) {
        CU_FAIL("script(1) is not installed (Debian's bsdutils; make deps installs it): the terminal case cannot run");
        return;
    }
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "30", "--error-rate", "0.5", "--seed", "9", NULL};
    CU_ASSERT_FATAL(mock_start(&m, margs) == 0);
    static const int cols[] = {72, 160};
    for (int k = 0; k < 2; k++) {
        char cmd[2048], log[300], out[300];
        snprintf(log, sizeof log, "%s/width.log", tmp);
        snprintf(out, sizeof out, "%s/width.csv", tmp);
        snprintf(cmd, sizeof cmd,
                 "script -qfec 'stty cols %d; %s %s --server %s --out %s --force --strategy threads --workers 2 "
                 "--retries 0 --outage-timeout 0' %s >/dev/null 2>&1",
                 cols[k], e2e_annotate_bin(), imgs, m.base_url, out, log);
        int rc = system(cmd);
        CHECKF(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "script -c 'annotate ...' returned %d", rc);
        char *t = slurp(log, NULL);
        CU_ASSERT_FATAL(t != NULL);
        int lines = 0, reasons = 0, stages = 0;
        for (char *seg = strstr(t, "\r\033[K"); seg; seg = strstr(seg, "\r\033[K")) {
            seg += 4;
            size_t len = strcspn(seg, "\r\n");
            int vis = 0;
            for (size_t i = 0; i < len; i++) {
                if (seg[i] == '\033') {
                    while (i < len && seg[i] != 'm')
                        i++;
                    continue;
                }
                vis++;
            }
            if (len == 0 || !strncmp(seg, "annotate: ", 10)) /* cleared, then the summary */
                continue;
            lines++;
            CHECKF(vis < cols[k], "%d columns: a line of %d: %s", cols[k], vis, printable(seg, len));
            reasons += memmem(seg, len, "failed (", 8) != NULL;
            stages += memmem(seg, len, "p50 model_01 ", 13) != NULL;
        }
        CHECKF(lines > 0, "%d columns: no progress line: %s", cols[k], printable(t, strlen(t)));
        CHECKF(reasons > 0, "%d columns: no reason shown", cols[k]);
        CHECKF(k == 0 ? stages == 0 : stages > 0, "%d columns: %d lines with stage p50s", cols[k], stages);
        free(t);
    }
    mock_stop(&m);
}

int register_cli(void)
{
    CU_pSuite s = CU_add_suite("cli", setup, teardown);
    if (!s)
        return -1;
    if (!CU_add_test(s, "progress line on a terminal", test_progress_tty) ||
        !CU_add_test(s, "plain progress lines, summary, --stats-json", test_progress_plain) ||
        !CU_add_test(s, "--quiet prints nothing", test_quiet) ||
        !CU_add_test(s, "header ${VAR} expansion, the token never leaks", test_header_token) ||
        !CU_add_test(s, "--help, bench --help, --version", test_help_version) ||
        !CU_add_test(s, "one writer per --out; resume refuses another DIR spelling", test_one_writer) ||
        !CU_add_test(s, "a results file that cannot be written: exit 2, no hang", test_write_error) ||
        !CU_add_test(s, "merge: only annotate results files, of one pipeline", test_merge_headers) ||
        !CU_add_test(s, "--header reaches the server under the file's headers, never shown", test_header_option) ||
        !CU_add_test(s, "configuration errors exit 2 at start, naming the option or file", test_startup_errors) ||
        !CU_add_test(s, "failures explained: progress line, summary and --stats-json tally, worker processes too",
                     test_failures_explained) ||
        !CU_add_test(s, "the progress line fits the terminal; a wide one shows stage p50s", test_progress_width))
        return -1;
    return 0;
}
