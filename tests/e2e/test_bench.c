/* annotate bench, end to end: it starts the mock itself, runs each strategy, and leaves a table
 * on stdout, a JSON report with a point per strategy and concurrency, and an SVG chart. */
#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "tree.h"
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
    CU_ASSERT(strstr(buf, "mock at http://127.0.0.1:") != NULL);
    CU_ASSERT(strstr(buf, "mock CPU") != NULL);
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
        CU_ASSERT_EQUAL(cJSON_GetObjectItem(p, "images_ok")->valuedouble, 40);
        CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(p, "stable")));
        CU_ASSERT(cJSON_GetObjectItem(p, "mock_cpu_s") != NULL); /* the mock bench started: measured */
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

/* A pipeline whose model_03 batches: the mock bench starts makes /model_03 a batch endpoint
 * (--batch model_03), so its points have no failure. */
static void test_bench_batch(void)
{
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench") == 0);
    char imgs[300], report[300], chart[300], cfg[300], buf[16384];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/bench.json", tmp);
    snprintf(chart, sizeof chart, "%s/bench.svg", tmp);
    snprintf(cfg, sizeof cfg, "%s/p.json", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 200, 500, 9) == 0);
    static const char text[] =
        "{\"stages\": ["
        "{\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null}},"
        "{\"name\": \"model_02\", \"url\": \"/model_02\", \"fields\": {\"model_03\": null}},"
        "{\"name\": \"model_03\", \"url\": \"/model_03\", \"fields\": {\"model_03\": null}, \"when\": [\"model_01\", \"model_02\"],"
        " \"batch\": {\"size\": 8}},"
        "{\"name\": \"model_04\", \"url\": \"/model_04\", \"fields\": {\"model_03\": {\"result_of\": \"model_03\"}}, \"csv\": false},"
        "{\"name\": \"model_05\", \"url\": \"/model_05\", \"fields\": {\"model_03\": null}, "
        "\"input\": {\"each\": \"model_04\", \"array\": \"sub-img\", \"field\": \"img\"}}]}";
    CU_ASSERT_FATAL(write_file(cfg, text, strlen(text)) == 0);
    const char *argv[] = {e2e_annotate_bin(), "bench", imgs, "--mock", mock_bin(), "--config", cfg, "--strategies",
                          "curl-multi", "--concurrency", "8", "--latency-ms", "2", "--report", report, "--chart", chart,
                          NULL};
    int rc = run_cmd(argv, tmo(120), buf, sizeof buf);
    if (rc != 0)
        show("annotate bench --config (batched model_03)", rc, buf);
    CU_ASSERT_EQUAL(rc, 0);
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "points"), 0);
    CU_ASSERT(p && cJSON_GetObjectItem(p, "images_failed")->valuedouble == 0);
    CU_ASSERT(p && cJSON_GetObjectItem(p, "images_ok")->valuedouble > 0);
    cJSON_Delete(o);
    tree_rm(tmp);
}

/* ---- against a user's own servers ---- */

/* nginx in front of the mock, as the newcomer had it: TLS with a private CA, and a token. The
 * CA and the server's certificate (for IP 127.0.0.1) are made with openssl(1); nginx runs as
 * one process (master_process off) on a free loopback port, stopped by its PID. */
struct tls_proxy {
    char dir[300];
    char ca[400];
    int port;
    pid_t pid;
};

static int sh(const char *cmd)
{
    const char *argv[] = {"sh", "-c", cmd, NULL};
    char out[4096];
    int rc = run_cmd(argv, tmo(60), out, sizeof out);
    if (rc != 0)
        show(cmd, rc, out);
    return rc;
}

static int tls_proxy_start(struct tls_proxy *t, const char *base, int mock_port)
{
    memset(t, 0, sizeof *t);
    if (!in_path("nginx") && access("/usr/sbin/nginx", X_OK) != 0) {
        CU_FAIL("nginx is not installed (Debian's nginx; make deps installs it): the TLS cases cannot run");
        return -1;
    }
    if (!in_path("openssl")) {
        CU_FAIL("openssl is not installed (make deps installs it): the TLS cases cannot run");
        return -1;
    }
    snprintf(t->dir, sizeof t->dir, "%s/tls", base);
    snprintf(t->ca, sizeof t->ca, "%s/ca.pem", t->dir);
    mkdir(t->dir, 0700);
    char cmd[4096], conf[400];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
             "extendedKeyUsage=serverAuth\\n' >ext.cnf && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem "
             "-days 2 -subj /CN=annotate-test-ca && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr "
             "-subj /CN=127.0.0.1 && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 "
             "-extfile ext.cnf",
             t->dir);
    if (sh(cmd))
        return -1;
    t->port = e2e_closed_port();
    snprintf(conf, sizeof conf, "%s/nginx.conf", t->dir);
    snprintf(cmd, sizeof cmd,
             "daemon off; master_process off; worker_processes 1; pid %s/nginx.pid; error_log %s/error.log;\n"
             "events { worker_connections 1024; }\n"
             "http {\n"
             "  access_log %s/access.log;\n"
             "  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fcgi;\n"
             "  uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
             "  upstream mock { server 127.0.0.1:%d; keepalive 16; }\n"
             "  server {\n"
             "    listen 127.0.0.1:%d ssl;\n"
             "    ssl_certificate %s/srv.pem; ssl_certificate_key %s/srv.key;\n"
             "    location / {\n"
             "      if ($http_authorization != \"Bearer good-token\") { return 401; }\n"
             "      proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection \"\";\n"
             "    }\n"
             "  }\n"
             "}\n",
             t->dir, t->dir, t->dir, t->dir, t->dir, t->dir, t->dir, t->dir, mock_port, t->port, t->dir, t->dir);
    if (write_file(conf, cmd, strlen(cmd)))
        return -1;
    char log[400];
    snprintf(log, sizeof log, "%s/nginx.out", t->dir);
    const char *nginx = access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : "nginx";
    const char *argv[] = {nginx, "-p", t->dir, "-c", conf, "-e", "stderr", NULL};
    if (!strcmp(nginx, "nginx")) {
        CU_FAIL("nginx is not at /usr/sbin/nginx");
        return -1;
    }
    t->pid = e2e_spawn(argv, log);
    if (t->pid < 0)
        return -1;
    if (wait_accepting(t->pid, t->port) == 0)
        return 0;
    show_log("nginx did not start", -1, log);
    kill(t->pid, SIGKILL);
    e2e_wait(t->pid, 10);
    t->pid = 0;
    return -1;
}

static void tls_proxy_stop(struct tls_proxy *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGTERM); /* by its PID: nothing else is touched */
        if (e2e_wait(t->pid, 10) < 0)
            fprintf(stderr, "nginx %d did not stop\n", (int)t->pid);
    }
    t->pid = 0;
}

/* The servers of a test: stopped at the start and end of each, and by the suite's cleanup, so
 * that a failed assertion (which leaves the test at once) leaves nothing running. */
static struct mock_proc m;
static struct tls_proxy t;

static void stop_servers(void)
{
    tls_proxy_stop(&t);
    if (m.pid)
        mock_stop(&m);
}

static int suite_cleanup(void)
{
    stop_servers();
    unsetenv("BENCH_TOKEN");
    return 0;
}

static cJSON *point_at(cJSON *rep, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "points"), i);
}

/* Over HTTPS with a private CA and a token, every run of the bench gets --cacert, --header,
 * --insecure: all images ok. Without the CA, or with a wrong token, the first point's run stops
 * at once on the set-up check and bench says why, exit 2, instead of measuring failures. */
static void test_bench_tls(void)
{
    stop_servers();
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench-tls") == 0);
    char imgs[300], report[300], chart[300], buf[32768], url[128];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/bench.json", tmp);
    snprintf(chart, sizeof chart, "%s/bench.svg", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 60, 400, 7) == 0);
    CU_ASSERT_FATAL(mock_start(&m, NULL) == 0);
    if (tls_proxy_start(&t, tmp, m.port)) {
        stop_servers();
        tree_rm(tmp);
        CU_FAIL_FATAL("the TLS proxy did not start");
    }
    snprintf(url, sizeof url, "https://127.0.0.1:%d", t.port);
    const char *good[] = {e2e_annotate_bin(), "bench", imgs, "--server", url, "--cacert", t.ca, "--header",
                          "Authorization: Bearer ${BENCH_TOKEN}", "--strategies", "curl-multi,processes",
                          "--concurrency", "4", "--limit", "30", "--report", report, "--chart", chart, NULL};
    setenv("BENCH_TOKEN", "good-token", 1);
    int rc = run_cmd(good, tmo(120), buf, sizeof buf);
    CHECKF(rc == 0, "bench over TLS with --cacert: exit %d: %s", rc, buf);
    CHECKF(strstr(buf, "server at https://127.0.0.1:") != NULL, "%s", buf);
    CHECKF(strstr(buf, "mock at") == NULL && strstr(buf, "mock CPU") == NULL, "a mock is named: %s", buf);
    CHECKF(strstr(buf, "good-token") == NULL, "the token is shown: %s", buf);
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(o, "points")), 2);
    for (int i = 0; i < 2; i++) {
        cJSON *p = point_at(o, i);
        CHECKF(e2e_json_num(p, "images_ok") == 30 && e2e_json_num(p, "images_failed") == 0,
               "point %d: %g ok, %g failed", i, e2e_json_num(p, "images_ok"), e2e_json_num(p, "images_failed"));
        CU_ASSERT(e2e_json_num(p, "images_per_s") > 0);
        CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(p, "stable")));
        CU_ASSERT(cJSON_GetObjectItem(p, "mock_cpu_s") == NULL); /* cannot be measured: left out */
    }
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(o, "complete")));
    CU_ASSERT(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "mode"), "latency_ms") == NULL);
    cJSON_Delete(o);
    char *svg = slurp(chart, NULL);
    CU_ASSERT(svg && strstr(svg, "server at https://127.0.0.1:") && !strstr(svg, "mock latency"));
    free(svg);
    /* The requests went through nginx to the mock: 2 points x 30 images to each endpoint. */
    cJSON *st = mock_stats(&m);
    CHECKF(mock_stat(st, "requests.model_01") == 60, "model_01 got %ld requests", mock_stat(st, "requests.model_01"));
    cJSON_Delete(st);

    /* --insecure reaches the runs too. */
    const char *insecure[] = {e2e_annotate_bin(), "bench", imgs, "--server", url, "--insecure", "--header",
                              "Authorization: Bearer good-token", "--strategies", "threads", "--concurrency", "2",
                              "--limit", "10", "--report", report, "--chart", chart, NULL};
    rc = run_cmd(insecure, tmo(120), buf, sizeof buf);
    CHECKF(rc == 0 && strstr(buf, "--insecure"), "bench --insecure: exit %d: %s", rc, buf);

    /* No --cacert: the certificate does not verify; the run stops on the set-up check. */
    const char *noca[] = {e2e_annotate_bin(), "bench", imgs, "--server", url, "--header",
                          "Authorization: Bearer good-token", "--strategies", "curl-multi,threads", "--concurrency",
                          "4", "--limit", "30", "--report", report, "--chart", chart, NULL};
    rc = run_cmd(noca, tmo(120), buf, sizeof buf);
    CHECKF(rc == 2, "bench without --cacert: exit %d: %s", rc, buf);
    CHECKF(strstr(buf, "did not finish") && strstr(buf, "--cacert"), "%s", buf);
    CHECKF(strstr(buf, "threads ") == NULL, "bench went on after a set-up error: %s", buf);
    o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(o, "points")), 0);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(o, "not_run")), 1);
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(o, "complete")));
    cJSON_Delete(o);

    /* A wrong token: nginx answers 401. */
    setenv("BENCH_TOKEN", "wrong-token", 1);
    rc = run_cmd(good, tmo(120), buf, sizeof buf);
    CHECKF(rc == 2 && strstr(buf, "did not finish") && strstr(buf, "HTTP 401") && strstr(buf, "credentials"),
           "bench with a wrong token: exit %d: %s", rc, buf);
    CHECKF(strstr(buf, "wrong-token") == NULL, "the token is shown: %s", buf);
    unsetenv("BENCH_TOKEN");

    /* nginx's default client_max_body_size is 1m: an image of 800 kB is 1.07 MB as base64, and is
     * refused with 413 (the README's Troubleshooting); one of 700 kB (933 kB of base64) passes. */
    char big[300], small[320], large[320], out[300], sj[300];
    snprintf(big, sizeof big, "%s/sizes", tmp);
    snprintf(small, sizeof small, "%s/700k", big);
    snprintf(large, sizeof large, "%s/800k", big);
    snprintf(out, sizeof out, "%s/big.csv", tmp);
    snprintf(sj, sizeof sj, "%s/big.json", tmp);
    mkdir(big, 0755);
    CU_ASSERT_FATAL(tree_make_generated(large, 1, 800000, 3) == 0);
    CU_ASSERT_FATAL(tree_make_generated(small, 1, 700000, 4) == 0);
    const char *run[] = {e2e_annotate_bin(), big, "--server", url, "--cacert", t.ca, "--header",
                         "Authorization: Bearer good-token", "--out", out, "--stats-json", sj, "--quiet", NULL};
    rc = run_cmd(run, tmo(60), buf, sizeof buf);
    CHECKF(rc == 1, "exit %d: %s", rc, buf);
    o = e2e_read_json(sj);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(e2e_json_num(o, "images_ok"), 1);
    CU_ASSERT_EQUAL(e2e_json_num(o, "images_failed"), 1);
    cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "errors"), 0);
    CHECKF(e && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "reason")) ?: "", "HTTP 413") &&
               e2e_json_num(e, "count") == 1,
           "the tally has no HTTP 413");
    cJSON_Delete(o);

    stop_servers();
    tree_rm(tmp);
}

/* A server that fails: the failures count against each point (shown with their top reason, never
 * stable), and images/s counts ok images only. --retries and --timeout-ms reach the runs. */
static void test_bench_failures(void)
{
    stop_servers();
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench-fail") == 0);
    char imgs[300], report[300], chart[300], buf[32768];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/bench.json", tmp);
    snprintf(chart, sizeof chart, "%s/bench.svg", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 80, 300, 9) == 0);
    const char *margs[] = {"--error-rate", "0.3", "--seed", "4", NULL};
    CU_ASSERT_FATAL(mock_start(&m, margs) == 0);
    const char *argv[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--retries", "0",
                          "--outage-timeout", "0", "--strategies", "curl-multi,threads", "--concurrency", "4", "--limit", "60",
                          "--report", report, "--chart", chart, NULL};
    int rc = run_cmd(argv, tmo(120), buf, sizeof buf);
    mock_stop(&m);
    CHECKF(rc == 1, "exit %d: %s", rc, buf);
    CHECKF(strstr(buf, "NO: ") && strstr(buf, " failed (model_0") && strstr(buf, ": HTTP 500)"), "%s", buf);
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL_FATAL(cJSON_GetArraySize(cJSON_GetObjectItem(o, "points")), 2);
    for (int i = 0; i < 2; i++) {
        cJSON *p = point_at(o, i);
        double ok = e2e_json_num(p, "images_ok"), failed = e2e_json_num(p, "images_failed");
        double req = e2e_json_num(p, "requests"), img_s = e2e_json_num(p, "images_per_s");
        double req_s = e2e_json_num(p, "requests_per_s");
        CHECKF(failed > 0 && ok > 0 && ok + failed == 60, "point %d: %g ok, %g failed", i, ok, failed);
        CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(p, "stable")));
        const char *why = cJSON_GetStringValue(cJSON_GetObjectItem(p, "unsettled"));
        CHECKF(why && strstr(why, "failed (model_0") && strstr(why, "HTTP 500"), "point %d: %s", i, why ? why : "-");
        cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(p, "errors"), 0);
        CU_ASSERT(e && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "reason")) ?: "", "HTTP 500"));
        /* ok images only: the same run gives ok / requests as the two rates' ratio */
        CHECKF(req > 0 && req_s > 0 && fabs(img_s / req_s - ok / req) < 1e-6, "point %d: %g img/s, %g req/s, %g ok, %g req",
               i, img_s, req_s, ok, req);
    }
    cJSON_Delete(o);

    /* Every request hangs: with --timeout-ms 300, --retries 0 and --outage-timeout 0 passed on,
     * each image fails in 0.3 s ("timed out"); the defaults would not end in time (30 s a
     * request, and a stage that only times out is down: its images would wait 300 s). */
    const char *hang[] = {"--hang-rate", "1", NULL};
    CU_ASSERT_FATAL(mock_start(&m, hang) == 0);
    const char *argv2[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--retries", "0",
                           "--outage-timeout", "0", "--timeout-ms", "300", "--strategies", "curl-multi", "--concurrency", "4", "--limit",
                           "8", "--report", report, "--chart", chart, NULL};
    long t0 = now_ms();
    rc = run_cmd(argv2, tmo(60), buf, sizeof buf);
    long took = now_ms() - t0;
    mock_stop(&m);
    CHECKF(rc == 1 && took < 20000, "exit %d after %ld ms: %s", rc, took, buf);
    o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    cJSON *p = point_at(o, 0);
    CHECKF(e2e_json_num(p, "images_failed") == 8, "%g failed", e2e_json_num(p, "images_failed"));
    cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(p, "errors"), 0);
    CHECKF(e && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "reason")) ?: "", "timed out") &&
               !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "stage")) ?: "", "model_01"),
           "the top reason is not model_01: timed out");
    cJSON_Delete(o);
    tree_rm(tmp);
}

/* Every request the mock has taken so far (its "total"; -1 when it cannot be asked). */
static long mock_requests_total(void)
{
    cJSON *st = mock_stats(&m);
    long n = mock_stat(st, "total");
    cJSON_Delete(st);
    return n;
}

/* --duration is kept to against a slow server (requests of 1.5 s: the drain alone would take
 * seconds), an unsettled point says why, and a bench stopped with Ctrl-C keeps the report of the
 * points that finished. */
static void test_bench_duration(void)
{
    stop_servers();
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench-dur") == 0);
    char imgs[300], report[300], chart[300], buf[32768];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/bench.json", tmp);
    snprintf(chart, sizeof chart, "%s/bench.svg", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 200, 300, 5) == 0);
    const char *margs[] = {"--latency-ms", "1500", NULL};
    CU_ASSERT_FATAL(mock_start(&m, margs) == 0);
    const char *argv[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--duration", "2", "--window",
                          "0.5", "--strategies", "curl-multi,processes,serial", "--concurrency", "4",
                          "--report", report, "--chart", chart, NULL};
    long t0 = now_ms();
    int rc = run_cmd(argv, tmo(120), buf, sizeof buf);
    long took = now_ms() - t0;
    CHECKF(rc == 0, "exit %d: %s", rc, buf);
    /* 3 points of 2 s: a bench that waited for each point's requests of 1.5 s to drain would
     * still be in time, so this is only a bound on a hang; each point's own wall, below, is
     * what says --duration was kept to. */
    CHECKF(took < 3 * 15000, "3 points of --duration 2 took %ld ms: %s", took, buf);
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(o, "points")), 3);
    for (int i = 0; i < 3; i++) {
        cJSON *p = point_at(o, i);
        double wall = e2e_json_num(p, "wall_s");
        CHECKF(wall >= 1.9 && wall < 4.0, "point %d: wall %g s", i, wall);
        CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(p, "stable")));
        const char *why = cJSON_GetStringValue(cJSON_GetObjectItem(p, "unsettled"));
        CHECKF(why && (strstr(why, "no image finished") || strstr(why, "window")), "point %d: %s", i, why ? why : "-");
    }
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(o, "complete")));
    cJSON_Delete(o);

    /* Ctrl-C (to bench alone) during the second point: the report holds the first, and says it
     * is not complete. */
    unlink(report);
    char log[300];
    snprintf(log, sizeof log, "%s/bench.log", tmp);
    const char *argv2[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--duration", "2",
                           "--window", "0.5", "--strategies", "curl-multi,threads,processes", "--concurrency", "4",
                           "--report", report, "--chart", chart, NULL};
    pid_t pid = e2e_spawn(argv2, log);
    CU_ASSERT_FATAL(pid > 0);
    cJSON *part = NULL;
    for (int i = 0; i < 200 * tmo(1) && !part; i++) {
        sleep_ms(50);
        part = e2e_read_json(report);
    }
    CU_ASSERT(part != NULL);
    cJSON_Delete(part);
    /* The second point has begun once the mock sees requests beyond the first's. */
    long first = mock_requests_total();
    for (int i = 0; i < 200 * tmo(1) && mock_requests_total() <= first; i++)
        sleep_ms(50);
    kill(pid, SIGINT);
    rc = e2e_wait(pid, tmo(30));
    mock_stop(&m);
    CHECKF(rc == 130, "bench after Ctrl-C: exit %d", rc);
    if (rc != 130)
        show_log("bench", rc, log);
    o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(o, "points"));
    CHECKF(n == 2, "%d points after a Ctrl-C in the second", n);
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(o, "complete")));
    const char *why = cJSON_GetStringValue(cJSON_GetObjectItem(point_at(o, n - 1), "unsettled"));
    CHECKF(why && strstr(why, "stopped by a signal"), "%s", why ? why : "-");
    cJSON_Delete(o);
    tree_rm(tmp);
}

/* ---- --sweep: what to run against one's own servers ---- */

static long mock_requests(void)
{
    cJSON *st = mock_stats(&m);
    long n = 0;
    char key[64];
    for (int i = 1; i <= 5; i++) {
        snprintf(key, sizeof key, "requests.model_0%d", i);
        long v = mock_stat(st, key);
        n += v > 0 ? v : 0;
    }
    cJSON_Delete(st);
    return n;
}

static cJSON *sweep_stage_of(cJSON *rep, const char *name)
{
    cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "sweep"), "stages"))
    {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(s, "stage")) ?: "", name))
            return s;
    }
    return NULL;
}

/* The seed chain against servers of their own capacity (model_03 serves 2 at once, the others 8,
 * 20 ms each): the sweep finds model_03's knee small and the others' larger, names model_03 the
 * bottleneck, and writes a pipeline that keeps the user's settings, has every stage's
 * "concurrency", and runs. A mistake in what to sweep exits 2 before any request is sent. */
static void test_bench_sweep(void)
{
    stop_servers();
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench-sweep") == 0);
    char imgs[300], report[300], rec[300], cfgf[300], badf[300], out[300], buf[65536];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/sweep.json", tmp);
    snprintf(rec, sizeof rec, "%s/out/recommended.json", tmp); /* a folder it must create */
    snprintf(cfgf, sizeof cfgf, "%s/pipeline.json", tmp);
    snprintf(badf, sizeof badf, "%s/bad.json", tmp);
    snprintf(out, sizeof out, "%s/rows.csv", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 2000, 300, 7) == 0);
    /* the seed chain with settings of the user's own, which the recommendation must keep */
    const char *user = "{\"defaults\": {\"timeout_ms\": 20000, \"headers\": {\"X-Team\": \"vision\"}},\n"
                       " \"stages\": [\n"
                       "  {\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null}, \"retries\": 5},\n"
                       "  {\"name\": \"model_02\", \"url\": \"/model_02\", \"fields\": {\"model_03\": null}, \"concurrency\": 1},\n"
                       "  {\"name\": \"model_03\", \"url\": \"/model_03\", \"fields\": {\"model_03\": null},\n"
                       "   \"when\": [\"model_01\", \"model_02\"], \"headers\": {\"X-Model\": \"three\"}},\n"
                       "  {\"name\": \"model_04\", \"url\": \"/model_04\",\n"
                       "   \"fields\": {\"model_03\": {\"result_of\": \"model_03\"}}, \"csv\": false},\n"
                       "  {\"name\": \"model_05\", \"url\": \"/model_05\", \"fields\": {\"model_03\": null},\n"
                       "   \"input\": {\"each\": \"model_04\", \"array\": \"sub-img\", \"field\": \"img\"}}\n"
                       " ]}\n";
    CU_ASSERT_FATAL(write_file(cfgf, user, strlen(user)) == 0);
    const char *margs[] = {"--latency-ms", "20", "--capacity", "8", "--capacity", "model_03=2", NULL};
    CU_ASSERT_FATAL(mock_start(&m, margs) == 0);

    /* mistakes: exit 2, and nothing reaches the server */
    const char *bad = "{\"stages\": [{\"name\": \"a\", \"url\": \"/model_01\", \"when\": [\"nope\"]}]}";
    CU_ASSERT_FATAL(write_file(badf, bad, strlen(bad)) == 0);
    char missing[320];
    snprintf(missing, sizeof missing, "%s/none.json", tmp);
    struct {
        const char *opt, *val, *cfg, *says;
    } mistakes[] = {
        {"--sweep-stages", "model_03,model_09", cfgf, "no stage \"model_09\""},
        {"--sweep-stages", "model_03", badf, "nope"},
        {"--concurrency", "1,2,4", missing, "none.json"},
        {"--concurrency", "1,auto", cfgf, "leave auto out"},
    };
    for (size_t i = 0; i < sizeof mistakes / sizeof mistakes[0]; i++) {
        const char *argv[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--config", mistakes[i].cfg,
                              "--sweep", mistakes[i].opt, mistakes[i].val, "--duration", "1", "--report", report,
                              "--recommend", rec, NULL};
        int rc = run_cmd(argv, tmo(30), buf, sizeof buf);
        CHECKF(rc == 2 && strstr(buf, mistakes[i].says), "mistake %zu: exit %d: %s", i, rc, buf);
    }
    const char *nosweep[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--sweep-stages", "model_01", NULL};
    int rc = run_cmd(nosweep, tmo(30), buf, sizeof buf);
    CHECKF(rc == 2 && strstr(buf, "add --sweep"), "--sweep-stages without --sweep: exit %d: %s", rc, buf);
    CHECKF(mock_requests() == 0, "%ld requests reached the server before the mistakes were found", mock_requests());
    CU_ASSERT(access(report, F_OK) != 0 && access(rec, F_OK) != 0);

    const char *argv[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--config", cfgf, "--sweep",
                          "--duration", "1.5", "--window", "0.25", "--report", report, "--recommend", rec, NULL};
    long t0 = now_ms();
    rc = run_cmd(argv, tmo(150), buf, sizeof buf);
    long took = now_ms() - t0;
    CHECKF(rc == 0, "exit %d: %s", rc, buf);
    /* 22 points or so of at most 1.5 s and a second to stop: about 35 s (also under ASan) */
    CHECKF(took < 100000, "the sweep took %ld ms", took);
    CHECKF(strstr(buf, "bottleneck: model_03") != NULL, "%s", buf);
    CHECKF(strstr(buf, "\nstage model_03 (with model_01, model_02 on auto; not run") != NULL, "%s", buf);
    CHECKF(strstr(buf, "knee: ") && strstr(buf, "recommended pipeline: ") && strstr(buf, "suggested --concurrency "),
           "%s", buf);

    /* The check: the whole pipeline at the swept limits, then on auto. The recommendation is the
     * faster of the two (at least as fast as --concurrency auto), and says which. */
    cJSON *rep = e2e_read_json(report);
    CU_ASSERT_FATAL(rep != NULL);
    cJSON *chk = cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "sweep"), "check");
    CU_ASSERT_FATAL(chk != NULL);
    double r_img = e2e_json_num(chk, "recommended_images_per_s"), a_img = e2e_json_num(chk, "auto_images_per_s");
    const char *chosen = cJSON_GetStringValue(cJSON_GetObjectItem(chk, "chosen")) ?: "";
    CHECKF(r_img > 0 && a_img > 0, "check: %g images/s at the swept limits, %g on auto", r_img, a_img);
    int on_auto = !strcmp(chosen, "auto");
    CHECKF(on_auto == (a_img > r_img), "check: %g swept, %g auto, chosen %s", r_img, a_img, chosen);
    CHECKF(on_auto == cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(rep, "sweep"), "auto")), "%s", chosen);
    CHECKF(strstr(buf, on_auto ? "recommended: auto" : "the sweep's limits are recommended") &&
               strstr(buf, on_auto ? "--concurrency auto)" : "--concurrency "), "%s", buf);

    /* the recommendation: the user's file, every stage with its concurrency (the knees, or
     * "auto" when auto was faster; the knees are in the report either way) */
    cJSON *r = e2e_read_json(rec);
    CU_ASSERT_FATAL(r != NULL);
    cJSON *stages = cJSON_GetObjectItem(r, "stages");
    CU_ASSERT_EQUAL_FATAL(cJSON_GetArraySize(stages), 5);
    int conc[5] = {0};
    const char *names[] = {"model_01", "model_02", "model_03", "model_04", "model_05"};
    for (int i = 0; i < 5; i++) {
        cJSON *st = cJSON_GetArrayItem(stages, i), *c = cJSON_GetObjectItem(st, "concurrency");
        if (on_auto)
            CHECKF(cJSON_IsString(c) && !strcmp(c->valuestring, "auto"), "stage %d is not on auto", i);
        else
            CHECKF(cJSON_IsNumber(c), "stage %d has no numeric concurrency", i);
        conc[i] = on_auto ? (int)e2e_json_num(sweep_stage_of(rep, names[i]), "recommended")
                          : cJSON_IsNumber(c) ? c->valueint : 0;
    }
    cJSON_Delete(rep);
    CHECKF(conc[2] >= 1 && conc[2] <= 4, "model_03 (capacity 2): %d", conc[2]);
    CHECKF(conc[0] > conc[2] && conc[1] > conc[2], "model_01 %d, model_02 %d, model_03 %d", conc[0], conc[1], conc[2]);
    CHECKF(conc[0] >= 8 && conc[1] >= 8, "model_01 %d, model_02 %d: capacity 8 each", conc[0], conc[1]);
    CU_ASSERT_EQUAL(e2e_json_num(cJSON_GetArrayItem(stages, 0), "retries"), 5);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(stages, 2),
                                                                                        "headers"), "X-Model")) ?: "",
                           "three");
    CU_ASSERT_EQUAL(e2e_json_num(cJSON_GetObjectItem(r, "defaults"), "timeout_ms"), 20000);
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetArrayItem(stages, 3), "csv")));
    CU_ASSERT(cJSON_GetObjectItem(cJSON_GetArrayItem(stages, 4), "input") != NULL);
    cJSON_Delete(r);

    /* the report: each stage's points, the knee, who held whom back, the bottleneck */
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(o, "complete")));
    cJSON *sw = cJSON_GetObjectItem(o, "sweep");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(sw, "bottleneck")) ?: "", "model_03");
    CU_ASSERT(e2e_json_num(sw, "concurrency") >= conc[0] + conc[1] + conc[2] + conc[3] + conc[4]);
    for (int i = 0; i < 5; i++) {
        cJSON *st = sweep_stage_of(o, names[i]);
        CHECKF(st != NULL, "no %s in the report", names[i]);
        if (!st)
            continue;
        CHECKF(e2e_json_num(st, "recommended") == conc[i], "%s: %g recommended in the report, %d in the file", names[i],
               e2e_json_num(st, "recommended"), conc[i]);
        CU_ASSERT(e2e_json_num(st, "knee") >= 1 && e2e_json_num(st, "knee") <= conc[i]);
        CU_ASSERT(cJSON_GetArraySize(cJSON_GetObjectItem(st, "points")) >= 2);
        CU_ASSERT(e2e_json_num(st, "best_requests_per_s") > 0);
    }
    /* model_03's requests/s: about its capacity over its latency, 2 / 20 ms */
    double m3 = e2e_json_num(sweep_stage_of(o, "model_03"), "best_requests_per_s");
    CHECKF(m3 > 60 && m3 < 110, "model_03: %g req/s at best", m3);
    /* model_04 needs model_03: it cannot be driven past it, and is said to be held back */
    const char *held = cJSON_GetStringValue(cJSON_GetObjectItem(sweep_stage_of(o, "model_04"), "held_back_by"));
    CHECKF(held && !strcmp(held, "model_03"), "model_04 held back by %s", held ? held : "nothing");
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(sweep_stage_of(o, "model_04"), "starved")));
    CU_ASSERT(cJSON_GetObjectItem(sweep_stage_of(o, "model_01"), "held_back_by") == NULL);
    cJSON_Delete(o);

    /* the recommendation runs as it is */
    const char *run[] = {e2e_annotate_bin(), imgs, "--server", m.base_url, "--config", rec, "--max-images", "50",
                         "--out", out, "--quiet", NULL};
    rc = run_cmd(run, tmo(60), buf, sizeof buf);
    CHECKF(rc == 0, "a run with the recommended pipeline: exit %d: %s", rc, buf);
    mock_stop(&m);
    tree_rm(tmp);
}

/* ---- what a real folder and slow servers do to bench (issue 24, issue 23's bench) ---- */

/* Every point of the report's stage: none rejected for what is asked (rejected_has; NULL: any
 * rejection), each with images failed, when failed. How many points. */
static int sweep_points_not_rejected(cJSON *st, const char *rejected_has, int want_failed)
{
    int n = 0;
    cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(st, "points"))
    {
        const char *rej = cJSON_GetStringValue(cJSON_GetObjectItem(p, "rejected"));
        CHECKF(!rej || (rejected_has && !strstr(rej, rejected_has)), "point at %g rejected: %s",
               e2e_json_num(p, "concurrency"), rej);
        CHECKF(e2e_json_num(p, "images_failed_for_load") == 0, "point at %g: %g failed for load",
               e2e_json_num(p, "concurrency"), e2e_json_num(p, "images_failed_for_load"));
        if (want_failed)
            CHECKF(e2e_json_num(p, "images_failed") > 0 && cJSON_GetObjectItem(p, "failed_on_their_own"),
                   "point at %g: %g failed, and not said to have failed on their own", e2e_json_num(p, "concurrency"),
                   e2e_json_num(p, "images_failed"));
        n++;
    }
    return n;
}

/* A folder with corrupt files: the server answers 400 for 5% of the images, always the same ones
 * (the mock's --reject-rate). Those failures say nothing about load: a plain point with them is
 * stable, bench exits 0, and the sweep rejects no point for them: it goes on until the stage's
 * requests/s stop growing, and the stage has a knee (on main, concurrency 1 was rejected: "no
 * knee: no point was accepted"). */
static void test_bench_own_failures(void)
{
    stop_servers();
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench-400") == 0);
    char imgs[300], report[300], chart[300], rec[300], buf[65536];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/bench.json", tmp);
    snprintf(chart, sizeof chart, "%s/bench.svg", tmp);
    snprintf(rec, sizeof rec, "%s/rec.json", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 3000, 300, 11) == 0);
    const char *margs[] = {"--reject-rate", "0.05", "--latency-ms", "20", "--capacity", "2", NULL};
    CU_ASSERT_FATAL(mock_start(&m, margs) == 0);

    const char *plain[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--strategies", "curl-multi",
                           "--concurrency", "4", "--limit", "200", "--report", report, "--chart", chart, NULL};
    int rc = run_cmd(plain, tmo(120), buf, sizeof buf);
    CHECKF(rc == 0, "plain bench with 5%% corrupt images: exit %d: %s", rc, buf);
    CHECKF(strstr(buf, "failed on their own (model_0") && strstr(buf, "HTTP 400"), "%s", buf);
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    cJSON *p = point_at(o, 0);
    CHECKF(e2e_json_num(p, "images_failed") > 0 && e2e_json_num(p, "images_failed_for_load") == 0,
           "%g failed, %g for load", e2e_json_num(p, "images_failed"), e2e_json_num(p, "images_failed_for_load"));
    CHECKF(e2e_json_num(p, "images_ok") + e2e_json_num(p, "images_failed") == 200, "%g ok, %g failed",
           e2e_json_num(p, "images_ok"), e2e_json_num(p, "images_failed"));
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(p, "stable")));
    cJSON_Delete(o);

    const char *sweep[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--sweep", "--sweep-stages",
                           "model_01", "--concurrency", "1,2,4,8", "--duration", "1.5", "--window", "0.25",
                           "--report", report, "--recommend", rec, NULL};
    rc = run_cmd(sweep, tmo(150), buf, sizeof buf);
    CHECKF(rc == 0, "the sweep with 5%% corrupt images: exit %d: %s", rc, buf);
    o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    cJSON *st = sweep_stage_of(o, "model_01");
    CU_ASSERT_FATAL(st != NULL);
    CHECKF(sweep_points_not_rejected(st, NULL, 1) >= 2, "%s", buf);
    /* (where the knee falls, 2 here on a quiet machine, depends on the machine's speed: not asserted) */
    CHECKF(e2e_json_num(st, "knee") >= 1, "no knee: %s", buf);
    cJSON_Delete(o);
    mock_stop(&m);
    tree_rm(tmp);
}

/* Faults that do not rise with load (2% of requests hang until --timeout-ms of 500 ms, 2% answer
 * garbage, at every concurrency): retries are about 4% at every point, so none is rejected for them (on
 * main, every point past the first was rejected for "retries 3% or more"). */
static void test_bench_sweep_steady_faults(void)
{
    stop_servers();
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench-faults") == 0);
    char imgs[300], report[300], rec[300], buf[65536];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/sweep.json", tmp);
    snprintf(rec, sizeof rec, "%s/rec.json", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 4000, 300, 12) == 0);
    const char *margs[] = {"--hang-rate", "0.02", "--garbage-rate", "0.02", "--latency-ms", "5", "--seed", "7", NULL};
    CU_ASSERT_FATAL(mock_start(&m, margs) == 0);
    const char *sweep[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--sweep", "--sweep-stages",
                           "model_01", "--concurrency", "1,2,4,8", "--timeout-ms", "500", "--backoff-ms", "1",
                           "--duration", "1.5", "--window", "0.25", "--report", report, "--recommend", rec, NULL};
    int rc = run_cmd(sweep, tmo(150), buf, sizeof buf);
    CHECKF(rc == 0, "exit %d: %s", rc, buf);
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    cJSON *st = sweep_stage_of(o, "model_01");
    CU_ASSERT_FATAL(st != NULL);
    int n = sweep_points_not_rejected(st, "retries", 0);
    CHECKF(n >= 2, "%d points: %s", n, buf);
    /* the faults were there: the points retried (each about 4%: one of a hundred attempts may
     * have none by chance) */
    cJSON *p;
    double retried = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(st, "points"))
    {
        retried += e2e_json_num(p, "stage_retry_share");
    }
    CHECKF(retried > 0, "no point retried: %s", buf);
    CHECKF(e2e_json_num(st, "knee") >= 1, "no knee: %s", buf);
    cJSON_Delete(o);
    mock_stop(&m);
    tree_rm(tmp);
}

/* A folder with no image (empty, or only a text file): bench and --sweep exit 2 saying 0 images
 * were found, before any request, report or recommendation (on main: a recommendation). */
static void test_bench_no_images(void)
{
    stop_servers();
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench-empty") == 0);
    char empty[300], notes[300], txt[320], report[300], rec[300], buf[16384];
    snprintf(empty, sizeof empty, "%s/empty", tmp);
    snprintf(notes, sizeof notes, "%s/notes", tmp);
    snprintf(txt, sizeof txt, "%s/notes/readme.txt", tmp);
    snprintf(report, sizeof report, "%s/out/bench.json", tmp);
    snprintf(rec, sizeof rec, "%s/out/rec.json", tmp);
    mkdir(empty, 0755);
    mkdir(notes, 0755);
    CU_ASSERT_FATAL(write_file(txt, "not an image\n", 13) == 0);
    CU_ASSERT_FATAL(mock_start(&m, NULL) == 0);
    const char *dirs[] = {empty, notes};
    for (int d = 0; d < 2; d++)
        for (int sweep = 0; sweep < 2; sweep++) {
            const char *argv[] = {e2e_annotate_bin(), "bench", dirs[d], "--server", m.base_url, "--duration", "1",
                                  "--report", report, "--recommend", rec, sweep ? "--sweep" : NULL, NULL};
            int rc = run_cmd(argv, tmo(30), buf, sizeof buf);
            CHECKF(rc == 2 && strstr(buf, "0 images found"), "%s%s: exit %d: %s", dirs[d], sweep ? " --sweep" : "", rc,
                   buf);
            CHECKF(!strstr(buf, "recommended") && !strstr(buf, "--concurrency 256"), "%s", buf);
        }
    CHECKF(mock_requests() == 0, "%ld requests reached the server", mock_requests());
    CU_ASSERT(access(report, F_OK) != 0 && access(rec, F_OK) != 0);
    mock_stop(&m);
    tree_rm(tmp);
}

/* A one-worker server of slow requests (capacity 1, 400 ms each: an image takes seconds): a point
 * of --duration 3 cannot hold three windows of 10 images; it says so, what it reported instead
 * (the whole run's figures), and the --duration that would let it settle, from what it saw. */
static void test_bench_slow_server(void)
{
    stop_servers();
    CU_ASSERT_FATAL(make_tmpdir(tmp, sizeof tmp, "bench-slow") == 0);
    char imgs[300], report[300], chart[300], buf[32768];
    snprintf(imgs, sizeof imgs, "%s/imgs", tmp);
    snprintf(report, sizeof report, "%s/bench.json", tmp);
    snprintf(chart, sizeof chart, "%s/bench.svg", tmp);
    CU_ASSERT_FATAL(tree_make_generated(imgs, 200, 300, 13) == 0);
    const char *margs[] = {"--latency-ms", "400", "--capacity", "1", NULL};
    CU_ASSERT_FATAL(mock_start(&m, margs) == 0);
    const char *argv[] = {e2e_annotate_bin(), "bench", imgs, "--server", m.base_url, "--strategies", "curl-multi",
                          "--concurrency", "4", "--duration", "3", "--window", "0.5", "--report", report, "--chart",
                          chart, NULL};
    int rc = run_cmd(argv, tmo(60), buf, sizeof buf);
    mock_stop(&m);
    CHECKF(rc == 0, "exit %d: %s", rc, buf);
    cJSON *o = e2e_read_json(report);
    CU_ASSERT_FATAL(o != NULL);
    cJSON *p = point_at(o, 0);
    CU_ASSERT_FATAL(p != NULL);
    const char *why = cJSON_GetStringValue(cJSON_GetObjectItem(p, "unsettled"));
    if (cJSON_IsTrue(cJSON_GetObjectItem(p, "stable"))) {
        CU_ASSERT(e2e_json_num(p, "images_per_s") > 0);
    } else if (e2e_json_num(p, "images_ok") > 0) {
        /* it says what it did instead, and what to try: a --duration longer than it had */
        CHECKF(why && strstr(why, "figures are over the whole run") && strstr(why, "give --duration "), "%s",
               why ? why : "-");
        CHECKF(e2e_json_num(p, "suggested_duration_s") > 3, "suggested %g s", e2e_json_num(p, "suggested_duration_s"));
        CU_ASSERT(e2e_json_num(p, "images_per_s") > 0);
    } else {
        CHECKF(why && strstr(why, "no image finished") && strstr(why, "--duration") && strstr(why, "--limit"), "%s",
               why ? why : "-");
    }
    cJSON_Delete(o);
    tree_rm(tmp);
}

int register_bench(void)
{
    CU_pSuite s = CU_add_suite("bench", NULL, suite_cleanup);
    if (!s || !CU_add_test(s, "annotate bench: table, JSON report, SVG chart", test_bench_report) ||
        !CU_add_test(s, "annotate bench --capacity --queue-max with an auto point", test_bench_capacity_auto) ||
        !CU_add_test(s, "bench with a batch stage: the mock it starts answers that endpoint in lists", test_bench_batch) ||
        !CU_add_test(s, "bench over TLS (nginx, private CA, token): --cacert, --insecure, --header reach the runs; "
                        "a set-up error stops it; nginx's 1m body limit gives 413", test_bench_tls) ||
        !CU_add_test(s, "bench against a failing server: failures count against a point, ok images only",
                     test_bench_failures) ||
        !CU_add_test(s, "bench keeps to --duration against a slow server; Ctrl-C keeps the report", test_bench_duration) ||
        !CU_add_test(s, "bench --sweep against servers of their own capacity: the knee per stage, the bottleneck, the "
                        "recommended pipeline; a mistake exits 2 before a request", test_bench_sweep) ||
        !CU_add_test(s, "bench with 5% corrupt images (permanent 400s): counted, not against a point; the sweep "
                        "rejects no point for them", test_bench_own_failures) ||
        !CU_add_test(s, "bench --sweep against faults that do not rise with load (2% hangs, 2% garbage): no point "
                        "rejected for retries", test_bench_sweep_steady_faults) ||
        !CU_add_test(s, "bench and --sweep on a folder with no image exit 2: 0 images found", test_bench_no_images) ||
        !CU_add_test(s, "bench against a one-worker server of slow requests: a settled point, or why not and what "
                        "to try", test_bench_slow_server))
        return -1;
    return 0;
}
