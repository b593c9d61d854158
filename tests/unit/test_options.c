/* Suite "options": the option table of src/options.c, parsed in this process (no annotate child):
 * each numeric option's range (both ends accepted and stored, one step outside refused with a
 * message naming the option, the value and the range), the custom options, flags and strings;
 * and the rate limiter with rates at the edges of what --max-rps could be given. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "check.h"
#include "cli.h"
#include "drivers/ipc.h"
#include "endpoint/limit.h"
#include "endpoint/ratelimit.h"
#include "results/resume.h"

/* ---- helpers ---- */

/* cli_parse of "annotate DIR ARGS..." (bench: "annotate bench DIR ARGS..."), NULL-terminated.
 * The parsed config stays in *cfg (and *b) until the next call or opts_done(). */
static struct config cfg;
static struct bench_opts bo;
static char err[1024];

static int parse_v(int bench, const char *const *args)
{
    char *argv[64];
    int n = 0;
    argv[n++] = bench ? "bench" : "annotate";
    argv[n++] = "some-dir";
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    config_free(&cfg);
    bench_opts_free(&bo);
    err[0] = 0;
    return cli_parse(n, argv, &cfg, bench ? &bo : NULL, err, sizeof err);
}

#define PARSE(bench, ...) parse_v(bench, (const char *const[]){__VA_ARGS__, NULL})

/* ---- numeric options: the range of each, from both ends ---- */

typedef double (*getter)(void);
#define GET_CFG(field) static double get_##field(void) { return (double)cfg.field; }
#define GET_BENCH(field) static double get_b_##field(void) { return (double)bo.field; }
GET_CFG(workers)
GET_CFG(s3_max_keys)
GET_CFG(concurrency)
GET_CFG(loops)
GET_CFG(queue_size)
GET_CFG(timeout_ms)
GET_CFG(connect_timeout_ms)
GET_CFG(retries)
GET_CFG(backoff_ms)
GET_CFG(backoff_max_ms)
GET_CFG(max_rps)
GET_CFG(max_image_bytes)
GET_CFG(max_memory)
GET_CFG(max_pixels)
GET_CFG(load_threads)
GET_CFG(max_answer_bytes)
GET_CFG(sync_every)
GET_CFG(drain_timeout_ms)
GET_CFG(outage_timeout_s)
GET_CFG(progress_interval)
GET_CFG(max_images)
GET_BENCH(latency_ms)
GET_BENCH(duration_s)
GET_BENCH(limit)
GET_BENCH(tolerance)
GET_BENCH(max_windows)
GET_BENCH(window_s)
GET_BENCH(capacity)
GET_BENCH(queue_max)

/* What each numeric option must accept, written out here rather than read from options.c's table,
 * so that a change of a range is a change of this test too. hi_text NULL: no upper bound. */
static const struct numeric {
    const char *name;
    int bench;
    int whole;                 /* integers only */
    const char *lo, *hi;       /* the ends, as given and as the message must show them */
    const char *below, *above; /* one step outside (above NULL: no upper bound) */
    int zero;                  /* 0 is accepted besides the range */
    getter get;
} NUMERIC[] = {
    {"workers", 0, 1, "1", "4096", "0", "4097", 0, get_workers},
    {"concurrency", 0, 1, "1", "100000", "0", "100001", 0, get_concurrency},
    {"loops", 0, 1, "1", "256", "0", "257", 0, get_loops},
    {"queue-size", 0, 1, "1", "1048576", "0", "1048577", 0, get_queue_size},
    {"timeout-ms", 0, 1, "1", "86400000", "0", "86400001", 0, get_timeout_ms},
    {"connect-timeout-ms", 0, 1, "1", "86400000", "0", "86400001", 0, get_connect_timeout_ms},
    {"retries", 0, 1, "0", "100", "-1", "101", 0, get_retries},
    {"backoff-ms", 0, 1, "0", "3600000", "-1", "3600001", 0, get_backoff_ms},
    {"backoff-max-ms", 0, 1, "0", "3600000", "-1", "3600001", 0, get_backoff_max_ms},
    {"max-rps", 0, 0, "0.001", "10000000", "0.0009", "10000001", 1, get_max_rps},
    {"max-image-bytes", 0, 1, "1", NULL, "0", NULL, 0, get_max_image_bytes},
    {"max-memory", 0, 1, "1", NULL, "-1", NULL, 1, get_max_memory},
    {"max-pixels", 0, 1, "1", NULL, "0", NULL, 0, get_max_pixels},
    {"load-threads", 0, 1, "1", "4096", "-1", "4097", 1, get_load_threads},
    {"max-answer-bytes", 0, 1, "1", "2147483648", "0", "2147483649", 0, get_max_answer_bytes},
    {"sync-every", 0, 1, "1", NULL, "-1", NULL, 1, get_sync_every},
    {"drain-timeout-ms", 0, 1, "0", "86400000", "-1", "86400001", 0, get_drain_timeout_ms},
    {"outage-timeout", 0, 1, "0", "604800", "-1", "604801", 0, get_outage_timeout_s},
    {"progress-interval", 0, 0, "0.1", "86400", "0.09", "86401", 0, get_progress_interval},
    {"max-images", 0, 1, "1", NULL, "0", NULL, 0, get_max_images},
    {"s3-max-keys", 0, 1, "1", "1000", "0", "1001", 0, get_s3_max_keys},
    {"latency-ms", 1, 1, "0", "600000", "-1", "600001", 0, get_b_latency_ms},
    {"duration", 1, 0, "0.1", "86400", "0.05", "86400.5", 0, get_b_duration_s},
    {"limit", 1, 1, "1", NULL, "0", NULL, 0, get_b_limit},
    {"tolerance", 1, 0, "0.001", "1", "0.0001", "1.01", 0, get_b_tolerance},
    {"max-windows", 1, 1, "3", "1000", "2", "1001", 0, get_b_max_windows},
    {"window", 1, 0, "0.1", "3600", "0.01", "3601", 0, get_b_window_s},
    {"capacity", 1, 1, "1", "1000000", "0", "1000001", 0, get_b_capacity},
    {"queue-max", 1, 1, "0", "1000000", "-1", "1000001", 0, get_b_queue_max},
};
#define N_NUMERIC (sizeof NUMERIC / sizeof NUMERIC[0])

/* The message for a refused value names the option, repeats the value and gives the range. */
static void check_refused(const struct numeric *o, const char *value)
{
    char opt[64];
    snprintf(opt, sizeof opt, "--%s", o->name);
    int rc = PARSE(o->bench, opt, value);
    CHECKF(rc == -1, "%s %s: accepted (rc %d)", opt, value, rc);
    if (rc != -1)
        return;
    char head[128];
    snprintf(head, sizeof head, "%s %s: ", opt, value);
    CHECKF(strncmp(err, head, strlen(head)) == 0, "%s %s: the message does not start with the option: %s", opt, value,
           err);
    CHECKF(strstr(err, o->lo) != NULL, "%s %s: the message lacks the low end %s: %s", opt, value, o->lo, err);
    if (o->hi)
        CHECKF(strstr(err, o->hi) != NULL, "%s %s: the message lacks the high end %s: %s", opt, value, o->hi, err);
    else
        CHECKF(strstr(err, "or more") != NULL, "%s %s: the message does not say there is no upper bound: %s", opt,
               value, err);
    if (o->zero)
        CHECKF(strstr(err, "or 0 ") != NULL, "%s %s: the message does not say 0 is allowed: %s", opt, value, err);
}

static void test_numeric_ranges(void)
{
    for (size_t i = 0; i < N_NUMERIC; i++) {
        const struct numeric *o = &NUMERIC[i];
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", o->name);
        /* Both ends are accepted and land in the option's own field. */
        const char *ends[] = {o->lo, o->hi ? o->hi : "1000000000000"};
        for (int e = 0; e < 2; e++) {
            /* (--backoff-max-ms below --backoff-ms would be raised to it) */
            int rc = !strcmp(o->name, "backoff-max-ms") ? PARSE(0, "--backoff-ms", "0", opt, ends[e])
                                                         : PARSE(o->bench, opt, ends[e]);
            CHECKF(rc == 0, "%s %s: refused: %s", opt, ends[e], err);
            if (rc == 0)
                CHECKF(o->get() == strtod(ends[e], NULL), "%s %s: stored %g", opt, ends[e], o->get());
        }
        if (o->zero) {
            int rc = PARSE(o->bench, opt, "0");
            CHECKF(rc == 0 && o->get() == 0, "%s 0: rc %d, stored %g: %s", opt, rc, o->get(), err);
        }
        check_refused(o, o->below);
        if (o->above)
            check_refused(o, o->above);
        static const char *const junk[] = {"", "abc", "5x", "1 2", "0x"};
        for (size_t j = 0; j < sizeof junk / sizeof junk[0]; j++)
            check_refused(o, junk[j]);
        if (o->whole) {
            check_refused(o, "2.5");
            check_refused(o, "99999999999999999999999"); /* beyond long */
        } else {
            check_refused(o, "nan");
            check_refused(o, "inf");
            check_refused(o, "1e-400"); /* underflows: not zero */
        }
    }
}

/* The case: 1e-300 requests per second used to be accepted and overflowed into no
 * limit at all. */
static void test_max_rps_tiny(void)
{
    CU_ASSERT_EQUAL(PARSE(0, "--max-rps", "1e-300"), -1);
    CHECKF(strstr(err, "--max-rps") && strstr(err, "0.001") && strstr(err, "0 for no limit"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--max-rps", "250.5"), 0);
    CU_ASSERT_EQUAL(cfg.max_rps, 250.5);
}

/* ---- flags, strings and the options with their own syntax ---- */

static void test_flags_strings(void)
{
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "-o", "r.csv", "--resume", "--retry-failed", "--quiet", "--stats-json", "s.json"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.out, "r.csv");
    CU_ASSERT(cfg.resume && cfg.retry_failed && cfg.quiet && !cfg.insecure);
    CU_ASSERT_STRING_EQUAL(cfg.stats_json, "s.json");
    CU_ASSERT_STRING_EQUAL(cfg.dir, "some-dir");
    CU_ASSERT_PTR_NULL(cfg.cache);
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--cache", "answers.db"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.cache, "answers.db");
    CU_ASSERT_EQUAL(PARSE(1, "--cache", "answers.db"), -1); /* a run's, not bench's */
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--out", "x.csv"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.out, "x.csv");
    CU_ASSERT(!cfg.resume && !cfg.quiet && !cfg.verbose);
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--verbose"), 0);
    CU_ASSERT(cfg.verbose);
    CU_ASSERT_EQUAL(PARSE(1, "--verbose"), -1); /* a run's: bench's runs are quiet */
    /* The defaults. */
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--quiet"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.out, "-");
    CU_ASSERT_STRING_EQUAL(cfg.server, "http://127.0.0.1:8080");
    CU_ASSERT_EQUAL(cfg.load, STRAT_THREADS);
    CU_ASSERT_EQUAL(cfg.query, STRAT_CURL_MULTI);
    CU_ASSERT(cfg.concurrency_auto && cfg.concurrency == LIMIT_AUTO_TOTAL); /* --concurrency auto */
    CU_ASSERT_EQUAL(cfg.timeout_ms, 30000);
    CU_ASSERT_EQUAL(cfg.retries, 3);
    CU_ASSERT_EQUAL(cfg.max_rps, 0);
    CU_ASSERT_EQUAL(cfg.max_image_bytes, 64ull << 20);
    CU_ASSERT_EQUAL(cfg.sync_every, 1000);
    CU_ASSERT_EQUAL(cfg.progress_interval, 10);
    CU_ASSERT_EQUAL(cfg.shard_n, 0);
    CU_ASSERT_PTR_NOT_NULL(cfg.pipeline);
    /* --backoff-max-ms below --backoff-ms is raised to it. */
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--backoff-ms", "500", "--backoff-max-ms", "200"), 0);
    CU_ASSERT_EQUAL(cfg.backoff_max_ms, 500);
    /* Combinations. */
    CU_ASSERT_EQUAL(PARSE(0, "--retry-failed"), -1);
    CHECKF(strstr(err, "--resume") != NULL, "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--resume"), -1);
    CHECKF(strstr(err, "--out") != NULL, "%s", err);
    /* No folder, two folders. */
    char *argv[] = {"annotate", "--quiet", NULL};
    CU_ASSERT_EQUAL(cli_parse(2, argv, &cfg, NULL, err, sizeof err), -1);
    CHECKF(strstr(err, "no folder") != NULL, "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "other-dir"), -1);
    CHECKF(strstr(err, "some-dir") && strstr(err, "other-dir"), "%s", err);

    /* bench's own. */
    CU_ASSERT_EQUAL_FATAL(PARSE(1, "--strategies", "threads", "--report", "r.json", "--chart", "c.svg", "--mock", "m",
                                "--trust-payload", "--latency-dist", "exp"), 0);
    CU_ASSERT_STRING_EQUAL(bo.strategies, "threads");
    CU_ASSERT_STRING_EQUAL(bo.report, "r.json");
    CU_ASSERT_STRING_EQUAL(bo.chart, "c.svg");
    CU_ASSERT_STRING_EQUAL(bo.mock_bin, "m");
    CU_ASSERT_STRING_EQUAL(bo.latency_dist, "exp");
    CU_ASSERT(bo.trust_payload && !bo.server_given);
    CU_ASSERT_EQUAL_FATAL(PARSE(1, "--server", "http://h:1"), 0);
    CU_ASSERT(bo.server_given);
    CU_ASSERT_STRING_EQUAL(cfg.server, "http://h:1");
    CU_ASSERT_EQUAL(PARSE(1, "--latency-dist", "gauss"), -1);
    CHECKF(strstr(err, "--latency-dist gauss") && strstr(err, "fixed, uniform or exp"), "%s", err);
    /* --duration replaces an earlier --limit, and --limit a --duration. */
    CU_ASSERT_EQUAL_FATAL(PARSE(1, "--limit", "50", "--duration", "2.5"), 0);
    CU_ASSERT(bo.limit == 0 && bo.duration_s == 2.5);
    CU_ASSERT_EQUAL_FATAL(PARSE(1, "--duration", "2.5", "--limit", "50"), 0);
    CU_ASSERT(bo.limit == 50);
}

static void test_custom_options(void)
{
    static const struct {
        const char *arg;
        enum strategy load, query;
    } strat[] = {
        {"serial", STRAT_SERIAL, STRAT_SERIAL},
        {"threads", STRAT_THREADS, STRAT_THREADS},
        {"processes", STRAT_PROCESSES, STRAT_PROCESSES},
        {"curl-multi", STRAT_THREADS, STRAT_CURL_MULTI},
        {"load=processes,query=curl-multi", STRAT_PROCESSES, STRAT_CURL_MULTI},
        {"query=serial", STRAT_THREADS, STRAT_SERIAL},
        {"scan=serial,write=serial,load=serial", STRAT_SERIAL, STRAT_CURL_MULTI},
    };
    for (size_t i = 0; i < sizeof strat / sizeof strat[0]; i++) {
        int rc = PARSE(0, "--strategy", strat[i].arg);
        CHECKF(rc == 0 && cfg.load == strat[i].load && cfg.query == strat[i].query, "--strategy %s: rc %d (%s)",
               strat[i].arg, rc, err);
    }
    static const struct {
        const char *arg, *want;
    } bad_strat[] = {
        {"fast", "unknown strategy"},
        {"load=curl-multi", "a folder's files"},
        {"scan=threads", "one thread"},
        {"load=threads,compute=serial", "unknown stage \"compute\""},
        {"load=threads,query", "STAGE=STRATEGY"},
        {"query=fast", "unknown strategy \"fast\""},
    };
    for (size_t i = 0; i < sizeof bad_strat / sizeof bad_strat[0]; i++) {
        int rc = PARSE(0, "--strategy", bad_strat[i].arg);
        CHECKF(rc == -1 && strstr(err, "--strategy") && strstr(err, bad_strat[i].want), "--strategy %s: rc %d: %s",
               bad_strat[i].arg, rc, err);
    }

    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--shard", "3/4"), 0);
    CU_ASSERT(cfg.shard_k == 3 && cfg.shard_n == 4);
    static const char *const bad_shard[] = {"4/4", "-1/4", "1/0", "1", "1/4x", "a/b", "0/1000001"};
    for (size_t i = 0; i < sizeof bad_shard / sizeof bad_shard[0]; i++) {
        int rc = PARSE(0, "--shard", bad_shard[i]);
        CHECKF(rc == -1 && strstr(err, "--shard") && strstr(err, "0 <= K < N"), "--shard %s: rc %d: %s", bad_shard[i],
               rc, err);
    }
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--encoder", "libb64"), 0);
    CU_ASSERT_EQUAL(cfg.encoder, B64_LIBB64);
    CU_ASSERT_EQUAL(PARSE(0, "--encoder", "slow"), -1);
    CHECKF(strstr(err, "--encoder slow") && strstr(err, "fast or libb64"), "%s", err);
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--extensions", "tif,TIFF", "--extensions", "png"), 0);
    CU_ASSERT_PTR_NOT_NULL(cfg.ext_storage);
    CU_ASSERT_EQUAL(PARSE(0, "--extensions", ""), -1);

    /* --concurrency: a number for a run, a list or range for bench (checked here, not after the
     * mock server has been started). */
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--concurrency", "7"), 0);
    CU_ASSERT_EQUAL(cfg.concurrency, 7);
    CU_ASSERT_EQUAL(PARSE(0, "--concurrency", "1,16"), -1);
    CHECKF(strstr(err, "--concurrency 1,16") && strstr(err, "100000"), "%s", err);
    static const char *const good_list[] = {"1,16,64", "1-256", "5", "100000", "3-3"};
    for (size_t i = 0; i < sizeof good_list / sizeof good_list[0]; i++) {
        int rc = PARSE(1, "--concurrency", good_list[i]);
        CHECKF(rc == 0 && bo.concurrency && !strcmp(bo.concurrency, good_list[i]), "bench --concurrency %s: %s",
               good_list[i], err);
    }
    static const char *const bad_list[] = {"", "0", "1,x", "1,,2", "1,", ",1", "5-2", "0-8", "1-100001", "16,100001", "a-b"};
    for (size_t i = 0; i < sizeof bad_list / sizeof bad_list[0]; i++) {
        int rc = PARSE(1, "--concurrency", bad_list[i]);
        CHECKF(rc == -1 && strstr(err, "--concurrency"), "bench --concurrency '%s': rc %d: %s", bad_list[i], rc, err);
    }
}

/* --server, --cacert and --header are checked when parsed, and named in the message. */
static void test_checked_options(void)
{
    CU_ASSERT_EQUAL(PARSE(0, "--server", "htp://h"), -1);
    CHECKF(!strncmp(err, "--server \"htp://h\": ", 20) && strstr(err, "http://"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--server", "http://h:1/v1"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.pipeline->stages[0].full_url, "http://h:1/v1/model_01");
    CU_ASSERT_EQUAL(PARSE(0, "--cacert", "/nonexistent/ca.pem"), -1);
    CHECKF(strstr(err, "--cacert /nonexistent/ca.pem") && strstr(err, "No such file"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--cacert", "/"), -1);
    CHECKF(strstr(err, "--cacert /") && strstr(err, "directory"), "%s", err);
    char ca[] = "/tmp/annotate-ca-XXXXXX";
    int fd = mkstemp(ca);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    CU_ASSERT_EQUAL(PARSE(0, "--cacert", ca), 0);
    CU_ASSERT_STRING_EQUAL(cfg.cacert, ca);
    unlink(ca);
    /* Every --header goes to every stage of the (built-in) pipeline. */
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--header", "X-A: 1", "--header", "X-B:2"), 0);
    CU_ASSERT_EQUAL(cfg.pipeline->n_cli_headers, 2);
    for (int i = 0; i < cfg.pipeline->n; i++) {
        int a = 0, b = 0;
        for (const struct curl_slist *l = pipeline_headers(&cfg.pipeline->stages[i], NULL); l; l = l->next) {
            a += !strcmp(l->data, "X-A: 1");
            b += !strcmp(l->data, "X-B: 2");
        }
        CHECKF(a == 1 && b == 1, "stage %d: X-A %d times, X-B %d times", i + 1, a, b);
    }
    CU_ASSERT_EQUAL(PARSE(0, "--header", "X-A: 1", "--header", "x-a: 2"), -1);
    CHECKF(strstr(err, "twice"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--header", "t0ken"), -1);
    CHECKF(strstr(err, "--header") && !strstr(err, "t0ken"), "%s", err);
    /* bench takes --header too, checked as for a run, and keeps the lines for its runs. */
    CU_ASSERT_EQUAL_FATAL(PARSE(1, "--header", "X-A: 1", "--header", "Authorization: Bearer ${HOME}"), 0);
    CU_ASSERT_EQUAL(bo.n_headers, 2);
    CU_ASSERT_STRING_EQUAL(bo.headers[1], "Authorization: Bearer ${HOME}");
    CU_ASSERT_EQUAL(PARSE(1, "--header", "t0ken"), -1);
    CHECKF(strstr(err, "--header") && !strstr(err, "t0ken"), "%s", err);
}

/* The word after opt in a (or "" when opt is the last word, a flag), NULL when opt is not there. */
static const char *arg_of(const struct config_argv *a, const char *opt)
{
    for (int i = 2; i < a->argc; i++)
        if (!strcmp(a->argv[i], opt))
            return i + 1 < a->argc ? a->argv[i + 1] : "";
    return NULL;
}

/* The options of both commands that bench sets itself for each run, written out here rather than
 * read from the table, so that marking a row so (and not passing it on) is a change of this test
 * too. */
static const char *const BENCH_OWN_OPTIONS[] = {"server", "workers", "concurrency", "loops", "quiet", NULL};

static int listed(const char *const *list, const char *name)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], name))
            return 1;
    return 0;
}

/* Every run option bench takes reaches the annotate runs it starts, with its value; every option
 * of both commands is either passed on or bench's own; a value left at its default is not
 * written. */
static void test_bench_forwards(void)
{
    char ca[] = "/tmp/annotate-ca-XXXXXX";
    int fd = mkstemp(ca);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    setenv("BENCH_T", "t", 1); /* checked by bench as by a run; passed on as written */
    int rc0 = PARSE(1, "--cacert", ca, "--insecure", "--header", "X-Team: vision", "--header",
                                "Authorization: Bearer ${BENCH_T}", "--timeout-ms", "1234", "--connect-timeout-ms",
                                "2345", "--retries", "7", "--backoff-ms", "11", "--backoff-max-ms", "22", "--max-rps",
                                "33.5", "--max-image-bytes", "4444", "--extensions", "png,JPG", "--encoder", "libb64",
                                "--queue-size", "55", "--loops", "2", "--workers", "3", "--server", "https://h:9/v1",
                                "--max-answer-bytes", "777", "--max-memory", "8888", "--outage-timeout", "9",
                                "--max-pixels", "5555", "--load-threads", "3", "--limit", "66");
    unsetenv("BENCH_T");
    CHECKF(rc0 == 0, "%s", err);
    if (rc0)
        return;
    static const char *const want[][2] = {
        {"--cacert", NULL}, {"--insecure", ""}, {"--header", "X-Team: vision"},
        {"--header", "Authorization: Bearer ${BENCH_T}"}, {"--timeout-ms", "1234"}, {"--connect-timeout-ms", "2345"},
        {"--retries", "7"}, {"--backoff-ms", "11"}, {"--backoff-max-ms", "22"}, {"--max-rps", "33.5"},
        {"--max-image-bytes", "4444"}, {"--extensions", "png,JPG"}, {"--encoder", "libb64"}, {"--queue-size", "55"},
        {"--server", "https://h:9/v1"}, {"--max-images", "66"}, {"--quiet", ""}, {"--max-answer-bytes", "777"},
        {"--max-memory", "8888"}, {"--outage-timeout", "9"}, {"--max-pixels", "5555"}, {"--load-threads", "3"},
    };
    static const char *const strategies[] = {"serial", "threads", "processes", "curl-multi", "load=threads+query=processes",
                                             "load=processes+query=curl-multi"};
    struct config_argv a;
    for (size_t k = 0; k < sizeof strategies / sizeof strategies[0]; k++) {
        CU_ASSERT_EQUAL_FATAL(bench_child_argv(&cfg, &bo, strategies[k], 8, "https://h:9/v1", "/tmp/o.csv", NULL, 500, &a), 0);
        CU_ASSERT_PTR_NULL(a.argv[a.argc]);
        CU_ASSERT_STRING_EQUAL(a.argv[1], "some-dir");
        for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
            const char *v = want[w][1] ? want[w][1] : ca;
            int found = 0;
            for (int i = 2; i < a.argc; i++)
                if (!strcmp(a.argv[i], want[w][0]) && (!*v || (i + 1 < a.argc && !strcmp(a.argv[i + 1], v))))
                    found = 1;
            CHECKF(found, "%s: the run lacks %s %s", strategies[k], want[w][0], v);
        }
        /* every option of both commands that bench does not set itself is passed on (all of them
         * were given above with a value that is not the default, --config below) */
        for (int r = 0; r < CONFIG_N_OPTIONS; r++) {
            const struct config_option *o = &CONFIG_OPTIONS[r];
            if (o->scope != SCOPE_BOTH || o->type == OPT_ACTION || o->bench_own || !strcmp(o->name, "config"))
                continue;
            char opt[64];
            snprintf(opt, sizeof opt, "--%s", o->name);
            CHECKF(arg_of(&a, opt) != NULL, "%s: %s is not passed on", strategies[k], opt);
        }
        int i;
        for (i = 2; i < a.argc && strcmp(a.argv[i], "--strategy"); i++)
            ;
        CU_ASSERT_FATAL(i + 1 < a.argc);
        CHECKF(strchr(a.argv[i + 1], '+') == NULL, "--strategy %s", a.argv[i + 1]);
        /* bench's own: the server it measures, quiet runs, and the strategy's sizes */
        CHECKF(!strcmp(strategies[k], "serial") || arg_of(&a, "--workers"), "%s: no --workers", strategies[k]);
        CHECKF(!strstr(strategies[k], "curl-multi") || arg_of(&a, "--loops"), "%s: no --loops", strategies[k]);
        /* the point's number, for every strategy: a run's default would be auto */
        const char *conc = arg_of(&a, "--concurrency");
        CHECKF(conc && !strcmp(conc, strcmp(strategies[k], "serial") ? "8" : "1"), "%s: --concurrency %s",
               strategies[k], conc ? conc : "(none)");
    }
    /* --config too (the built-in chain needs none) */
    unlink(ca);
    char pf[] = "/tmp/annotate-pipe-XXXXXX";
    fd = mkstemp(pf);
    CU_ASSERT_FATAL(fd >= 0);
    const char *text = "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}]}";
    CU_ASSERT(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    CU_ASSERT_EQUAL_FATAL(PARSE(1, "--config", pf), 0);
    CU_ASSERT_EQUAL_FATAL(bench_child_argv(&cfg, &bo, "threads", 2, "http://h", "/tmp/o.csv", NULL, 500, &a), 0);
    const char *given = arg_of(&a, "--config");
    CU_ASSERT(given && !strcmp(given, pf));
    unlink(pf);
    /* Values left at their defaults (or given as the defaults) are not written: the run has them. */
    CU_ASSERT_EQUAL_FATAL(PARSE(1, "--timeout-ms", "30000", "--encoder", "fast"), 0);
    CU_ASSERT_EQUAL_FATAL(bench_child_argv(&cfg, &bo, "threads", 2, "http://h", "/tmp/o.csv", NULL, 500, &a), 0);
    for (int r = 0; r < CONFIG_N_OPTIONS; r++) {
        const struct config_option *o = &CONFIG_OPTIONS[r];
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", o->name);
        if (o->scope == SCOPE_BOTH && !o->bench_own)
            CHECKF(arg_of(&a, opt) == NULL, "%s at its default is written: %s", opt, arg_of(&a, opt));
    }
    /* The options bench sets itself are the ones this test names, and the table marks no other
     * (one marked by mistake would silently not reach the runs). */
    for (int r = 0; r < CONFIG_N_OPTIONS; r++) {
        const struct config_option *o = &CONFIG_OPTIONS[r];
        CHECKF(o->bench_own == listed(BENCH_OWN_OPTIONS, o->name), "--%s: bench_own %d in the table", o->name,
               o->bench_own);
        CHECKF(!o->bench_own || o->scope == SCOPE_BOTH, "--%s: bench's own but not an option of both", o->name);
    }
    /* An option of one command only is refused by the other. */
    const char *const *names = cli_option_names();
    for (int i = 0; names[i]; i++) {
        const struct config_option *o = config_option_named(names[i], strlen(names[i]));
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        if (o->scope == SCOPE_BOTH)
            continue;
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", names[i]);
        int run_refuses = PARSE(0, opt, "1") == -1 && strstr(err, "is an option of annotate bench");
        int bench_refuses = PARSE(1, opt, "1") == -1 && strstr(err, "is an option of a run");
        CHECKF(run_refuses || bench_refuses, "%s is taken by a run and by bench, but is not an option of both", opt);
    }
}

/* The options a worker process of the processes strategy reads (the drivers, load and the chain),
 * written out here: each must reach it through the configuration frame. */
static const char *const WORKER_READS[] = {"timeout-ms", "connect-timeout-ms", "retries", "backoff-ms",
                                           "backoff-max-ms", "max-rps", "max-image-bytes", "max-answer-bytes",
                                           "max-memory", "encoder", "insecure", "cacert", "outage-timeout",
                                           "max-pixels", "load-threads", "cache", NULL};

/* A worker receives every option marked for workers, as its parent had it: a configuration with
 * every one of them set to a value that is not the default goes through ipc_encode_config and
 * ipc_decode_config, and each is compared, field by field, with the parent's. */
static void test_worker_config_frame(void)
{
    char ca[] = "/tmp/annotate-ca-XXXXXX", pf[] = "/tmp/annotate-pipe-XXXXXX";
    int fd = mkstemp(ca);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    fd = mkstemp(pf);
    CU_ASSERT_FATAL(fd >= 0);
    const char *text = "{\"stages\": [{\"name\": \"m\", \"url\": \"/m\"}, {\"name\": \"n\", \"url\": \"/n\"}]}";
    CU_ASSERT(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    /* one value for each option marked for workers, none of them its default */
    const char *const given[][2] = {
        {"--out", "x.csv"}, {"--server", "http://h:1/v1"}, {"--config", NULL}, {"--strategy", "load=processes,query=threads"},
        {"--workers", "3"}, {"--concurrency", "7"}, {"--loops", "2"}, {"--queue-size", "55"}, {"--timeout-ms", "1234"},
        {"--connect-timeout-ms", "2345"}, {"--retries", "7"}, {"--backoff-ms", "11"}, {"--backoff-max-ms", "22"},
        {"--max-rps", "0.1"}, {"--max-image-bytes", "4444"}, {"--max-answer-bytes", "777"}, {"--max-memory", "8888"},
        {"--max-pixels", "5555"}, {"--load-threads", "3"}, {"--encoder", "libb64"}, {"--drain-timeout-ms", "99"},
        {"--outage-timeout", "9"}, {"--quiet", ""},
        {"--insecure", ""}, {"--cacert", ca}, {"--cache", "answers.db"},
    };
    const char *args[2 * sizeof given / sizeof given[0] + 8];
    int n = 0;
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++) {
        args[n++] = given[i][0];
        if (!given[i][1] || given[i][1][0])
            args[n++] = given[i][1] ? given[i][1] : pf;
    }
    args[n++] = "--sync-every"; /* not a worker's: it keeps its default there */
    args[n++] = "5";
    args[n++] = "--header";
    args[n++] = "X-Team: vision";
    args[n] = NULL;
    int rc = parse_v(0, args);
    CHECKF(rc == 0, "%s", err);
    if (rc)
        goto out;
    struct config d;
    config_defaults(&d, NULL);
    for (int r = 0; r < CONFIG_N_OPTIONS; r++) {
        const struct config_option *o = &CONFIG_OPTIONS[r];
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", o->name);
        int covered = 0;
        for (size_t i = 0; i < sizeof given / sizeof given[0]; i++)
            covered |= !strcmp(given[i][0], opt);
        CHECKF(covered == o->worker, "%s: marked for workers %d, given by this test %d", opt, o->worker, covered);
        if (listed(WORKER_READS, o->name))
            CHECKF(o->worker, "%s: a worker reads it, but it is not marked for workers", opt);
    }

    struct ipc_buf frame = {0};
    CU_ASSERT_EQUAL_FATAL(ipc_encode_config(&frame, &cfg, 5, 7, 8), 0);
    struct ipc_buf payload = {.d = frame.d + 4, .len = frame.len - 4};
    struct ipc_worker_config w;
    char why[512] = "";
    rc = ipc_decode_config(&payload, &w, why, sizeof why);
    CHECKF(rc == 0, "%s", why);
    if (rc == 0) {
        for (int r = 0; r < CONFIG_N_OPTIONS; r++) {
            const struct config_option *o = &CONFIG_OPTIONS[r];
            if (!o->worker)
                continue;
            char x[64], y[64], z[64];
            const char *sent = config_value(o, &cfg, NULL, 0, x, sizeof x);
            const char *got = config_value(o, &w.cfg, NULL, 0, y, sizeof y);
            const char *dflt = config_value(o, &d, NULL, 0, z, sizeof z);
            CHECKF(sent && got && !strcmp(sent, got), "--%s: sent %s, the worker has %s", o->name, sent ? sent : "(none)",
                   got ? got : "(none)");
            CHECKF(sent && (!dflt || strcmp(sent, dflt)), "--%s: the test gives it its default %s", o->name,
                   dflt ? dflt : "");
            if (o->where != AT_CFG)
                continue;
            const char *fa = (const char *)&cfg + o->off, *fb = (const char *)&w.cfg + o->off;
            if (o->ctype == CT_STR)
                CHECKF(!strcmp(*(const char *const *)fa, *(const char *const *)fb), "--%s: the field differs", o->name);
            else
                CHECKF(!memcmp(fa, fb, o->size), "--%s: the field differs", o->name);
        }
        CU_ASSERT(w.cfg.load == STRAT_PROCESSES && w.cfg.query == STRAT_THREADS);
        CU_ASSERT_STRING_EQUAL(w.cfg.dir, "some-dir");
        CU_ASSERT_EQUAL(w.cfg.sync_every, 1000);
        CU_ASSERT(w.jobs == 5 && w.shared_fd == 7 && w.ratelimit_fd == 8);
        CU_ASSERT_EQUAL_FATAL(w.cfg.pipeline->n, 2);
        for (int s = 0; s < 2; s++) {
            CU_ASSERT_STRING_EQUAL(w.cfg.pipeline->stages[s].full_url, cfg.pipeline->stages[s].full_url);
            int team = 0;
            for (const struct curl_slist *l = pipeline_headers(&w.cfg.pipeline->stages[s], NULL); l; l = l->next)
                team += !strcmp(l->data, "X-Team: vision");
            CHECKF(team == 1, "stage %d: X-Team %d times", s + 1, team);
        }
    }
    ipc_worker_config_free(&w);
    /* A frame whose options the parser refuses is refused, naming the option. */
    static const char bad[] = "{\"args\": [\"--timeout-ms\", \"0\"], \"dir\": null, \"jobs\": 1, \"shared_fd\": 3, "
                              "\"ratelimit_fd\": -1, \"pipeline\": {}}";
    struct ipc_buf bb = {.d = (unsigned char *)bad, .len = sizeof bad - 1};
    CU_ASSERT_EQUAL(ipc_decode_config(&bb, &w, why, sizeof why), -1);
    CHECKF(strstr(why, "--timeout-ms 0"), "%s", why);
    ipc_worker_config_free(&w);
    ipc_buf_free(&frame);
out:
    unlink(ca);
    unlink(pf);
}

/* Options outside their command, unknown ones, values missing or extra. */
static void test_option_errors(void)
{
    CU_ASSERT_EQUAL(PARSE(0, "--latency-ms", "5"), -1);
    CHECKF(strstr(err, "--latency-ms") && strstr(err, "annotate bench"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(1, "--resume"), -1);
    CHECKF(strstr(err, "--resume") && strstr(err, "not of annotate bench"), "%s", err);
    /* a run's option by its full name is that option, not a prefix of one of bench's */
    CU_ASSERT_EQUAL(PARSE(1, "--out", "r.csv"), -1);
    CHECKF(strstr(err, "--out is an option of a run"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--no-such-option"), -1);
    CHECKF(strstr(err, "unknown option --no-such-option"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "-z"), -1);
    CHECKF(strstr(err, "unknown option -z"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--quiet=yes"), -1);
    CHECKF(strstr(err, "--quiet takes no value"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--workers"), -1);
    CHECKF(strstr(err, "--workers needs a value"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--workers=9"), 0);
    CU_ASSERT_EQUAL(cfg.workers, 9);
    CU_ASSERT_EQUAL(PARSE(0, "--force"), 0);
    CU_ASSERT_EQUAL(cfg.force, 1);
}

/* --concurrency auto (the default): every stage adapts, within LIMIT_AUTO_TOTAL; a number turns
 * it off; a worker process is sent "auto", not the total's number (which would pin it there);
 * bench takes "auto" among the numbers of its list. */
static void test_concurrency_auto(void)
{
    const struct config_option *o = config_option_named("concurrency", strlen("concurrency"));
    CU_ASSERT_FATAL(o != NULL);
    char buf[64];
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--quiet"), 0);
    CU_ASSERT_EQUAL(cfg.concurrency_auto, 1);
    CU_ASSERT_STRING_EQUAL(config_value(o, &cfg, NULL, 0, buf, sizeof buf), "auto");
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--concurrency", "64"), 0);
    CU_ASSERT(!cfg.concurrency_auto && cfg.concurrency == 64);
    CU_ASSERT_STRING_EQUAL(config_value(o, &cfg, NULL, 0, buf, sizeof buf), "64");
    CU_ASSERT_EQUAL_FATAL(PARSE(0, "--quiet"), 0);
    static struct config_argv a;
    config_argv_reset(&a);
    CU_ASSERT_EQUAL_FATAL(config_args(&cfg, NULL, CONFIG_FOR_WORKER, &a), 0);
    int sent_auto = 0;
    for (int i = 0; i + 1 < a.argc; i++)
        sent_auto |= !strcmp(a.argv[i], "--concurrency") && !strcmp(a.argv[i + 1], "auto");
    CU_ASSERT(sent_auto);

    CU_ASSERT_EQUAL(PARSE(0, "--concurrency", "auto"), 0);
    CU_ASSERT_EQUAL(cfg.concurrency_auto, 1);
    CU_ASSERT_EQUAL(cfg.concurrency, LIMIT_AUTO_TOTAL);
    CU_ASSERT_EQUAL(PARSE(0, "--concurrency", "auto", "--concurrency", "32"), 0);
    CU_ASSERT_EQUAL(cfg.concurrency_auto, 0);
    CU_ASSERT_EQUAL(cfg.concurrency, 32);
    CU_ASSERT_EQUAL(PARSE(0, "--concurrency", "Auto"), -1);
    CU_ASSERT_EQUAL(PARSE(1, "--concurrency", "8,auto,64"), 0);
    CU_ASSERT_EQUAL(PARSE(1, "--concurrency", "auto"), 0);
    CU_ASSERT_EQUAL(PARSE(1, "--concurrency", "auto,"), -1);
    CU_ASSERT_EQUAL(PARSE(1, "--concurrency", "autos"), -1);
    CU_ASSERT_EQUAL(PARSE(1, "--concurrency", "1-auto"), -1);
    CU_ASSERT_EQUAL(PARSE(1, "--capacity", "4"), 0);
    CU_ASSERT_EQUAL(bo.capacity, 4);
    CU_ASSERT_EQUAL(bo.queue_max, -1); /* unlimited unless given */
    CU_ASSERT_EQUAL(PARSE(0, "--capacity", "4"), -1); /* bench only */
}

/* --sweep, --sweep-stages and --recommend are bench's (what they find wrong is bench_main's:
 * suite bench). */
static void test_sweep_options(void)
{
    CU_ASSERT_EQUAL(PARSE(1, "--sweep"), 0);
    CU_ASSERT_EQUAL(bo.sweep, 1);
    CU_ASSERT_PTR_NULL(bo.sweep_stages);
    CU_ASSERT_STRING_EQUAL(bo.recommend, "out/recommended.json");
    CU_ASSERT_EQUAL(PARSE(1, "--sweep", "--sweep-stages", "model_01,model_03", "--recommend", "r.json"), 0);
    CU_ASSERT_STRING_EQUAL(bo.sweep_stages, "model_01,model_03");
    CU_ASSERT_STRING_EQUAL(bo.recommend, "r.json");
    CU_ASSERT_EQUAL(PARSE(1, "--sweep=yes"), -1);
    CU_ASSERT_EQUAL(PARSE(0, "--sweep"), -1);
    CHECKF(strstr(err, "--sweep") && strstr(err, "annotate bench"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--recommend", "r.json"), -1);
    CU_ASSERT_EQUAL(PARSE(0, "--sweep-stages", "a"), -1);
}

/* A run's command line without the "some-dir" PARSE puts first. */
static int parse_words(const char *const *args)
{
    char *argv[64];
    int n = 0;
    argv[n++] = "annotate";
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    config_free(&cfg);
    bench_opts_free(&bo);
    err[0] = 0;
    return cli_parse(n, argv, &cfg, NULL, err, sizeof err);
}
#define WORDS(...) parse_words((const char *const[]){__VA_ARGS__, NULL})

/* Where the images come from (DIR, s3://, --files-from, -0, --image-auth) and the results'
 * format (--format against --out's name); the load strategy each source gets. */
static void test_source_options(void)
{
    CU_ASSERT_EQUAL(WORDS("--files-from", "list.txt"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.files_from, "list.txt");
    CU_ASSERT_PTR_NULL(cfg.dir);
    CU_ASSERT_EQUAL(cfg.list_nul, 0);
    CU_ASSERT_EQUAL(cfg.load, STRAT_THREADS);
    CU_ASSERT_EQUAL(WORDS("--files-from", "-", "-0", "--image-auth"), 0);
    CU_ASSERT(cfg.list_nul == 1 && cfg.image_auth == 1);
    CU_ASSERT_EQUAL(WORDS("--files-from", "-", "--null"), 0);
    CU_ASSERT_EQUAL(cfg.list_nul, 1);
    CU_ASSERT_EQUAL(WORDS("dir", "--files-from", "l"), -1);
    CHECKF(strstr(err, "both DIR") != NULL, "%s", err);
    CU_ASSERT_EQUAL(WORDS("--out", "x.csv"), -1);
    CHECKF(strstr(err, "--files-from") && strstr(err, "s3://"), "%s", err);
    CU_ASSERT_EQUAL(WORDS("dir", "-0"), -1);
    CHECKF(strstr(err, "-0") && strstr(err, "--files-from"), "%s", err);
    CU_ASSERT_EQUAL(WORDS("dir", "--image-auth"), -1);
    CHECKF(strstr(err, "--image-auth") && strstr(err, "--files-from"), "%s", err);
    CU_ASSERT_EQUAL(WORDS("--files-from", "-", "--out", "r.csv", "--resume", "--retry-failed"), -1);
    CHECKF(strstr(err, "--retry-failed") && strstr(err, "standard input"), "%s", err);
    CU_ASSERT_EQUAL(WORDS("http://host/a.jpg"), -1);
    CHECKF(strstr(err, "--files-from") != NULL, "%s", err);
    /* A bucket: the URL is checked, and it loads on curl-multi unless told otherwise. */
    CU_ASSERT_EQUAL(WORDS("s3://my-bucket/photos/"), 0);
    CU_ASSERT_EQUAL(cfg.load, STRAT_CURL_MULTI);
    CU_ASSERT_EQUAL(cfg.query, STRAT_CURL_MULTI);
    CU_ASSERT_EQUAL(WORDS("s3://my-bucket", "--strategy", "curl-multi"), 0);
    CU_ASSERT_EQUAL(cfg.load, STRAT_CURL_MULTI);
    CU_ASSERT_EQUAL(WORDS("s3://my-bucket", "--strategy", "load=threads,query=curl-multi"), 0);
    CU_ASSERT_EQUAL(cfg.load, STRAT_THREADS);
    CU_ASSERT_EQUAL(WORDS("s3://my-bucket", "--strategy", "threads"), 0);
    CU_ASSERT_EQUAL(cfg.load, STRAT_THREADS);
    CU_ASSERT_EQUAL(WORDS("--files-from", "l", "--strategy", "load=curl-multi,query=curl-multi"), 0);
    CU_ASSERT_EQUAL(cfg.load, STRAT_CURL_MULTI);
    CU_ASSERT_EQUAL(WORDS("s3://"), -1);
    CHECKF(strstr(err, "s3://") != NULL, "%s", err);
    CU_ASSERT_EQUAL(WORDS("s3://x/"), -1); /* a bucket name has 3 characters at least */
    /* The format: by --out's name, or --format, which must not contradict the name. */
    CU_ASSERT_EQUAL(PARSE(0, "--out", "r.csv"), 0);
    CU_ASSERT_EQUAL(cfg.format, RESULTS_CSV);
    CU_ASSERT_EQUAL(PARSE(0, "--out", "r.jsonl"), 0);
    CU_ASSERT_EQUAL(cfg.format, RESULTS_JSONL);
    CU_ASSERT_EQUAL(PARSE(0, "--out", "R.NDJSON"), 0);
    CU_ASSERT_EQUAL(cfg.format, RESULTS_JSONL);
    CU_ASSERT_EQUAL(PARSE(0, "--format", "jsonl"), 0); /* standard output */
    CU_ASSERT_EQUAL(cfg.format, RESULTS_JSONL);
    CU_ASSERT_EQUAL(PARSE(0, "--out", "results", "--format", "jsonl"), 0);
    CU_ASSERT_EQUAL(cfg.format, RESULTS_JSONL);
    CU_ASSERT_EQUAL(PARSE(0, "--out", "r.csv", "--format", "jsonl"), -1);
    CHECKF(strstr(err, "--format jsonl") && strstr(err, "r.csv"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--out", "r.jsonl", "--format", "csv"), -1);
    CU_ASSERT_EQUAL(PARSE(0, "--format", "parquet"), -1);
    CHECKF(strstr(err, "--format parquet") && strstr(err, "csv or jsonl"), "%s", err);
    CU_ASSERT_EQUAL(PARSE(0, "--strategy", "load=curl-multi"), -1); /* a folder */
    CHECKF(strstr(err, "load=curl-multi") && strstr(err, "folder"), "%s", err);
}

/* Every option the parser knows is covered by one of the tests above, so that a new one cannot
 * land untested. */
static void test_every_option_tested(void)
{
    static const char *const others[] = {"out", "server", "config", "strategy", "extensions", "encoder", "resume",
                                         "retry-failed", "force", "quiet", "stats-json", "cache", "insecure", "cacert", "shard", "help",
                                         "version", "strategies", "latency-dist", "report", "chart", "mock",
                                         "trust-payload", "header", "verbose", "sweep", "sweep-stages", "recommend",
                                         "format", "files-from", "null", "image-auth", NULL};
    const char *const *names = cli_option_names();
    for (int i = 0; names[i]; i++) {
        int found = 0;
        for (size_t k = 0; k < N_NUMERIC; k++)
            found |= !strcmp(NUMERIC[k].name, names[i]);
        for (int k = 0; others[k]; k++)
            found |= !strcmp(others[k], names[i]);
        CHECKF(found, "--%s is not covered by the option tests", names[i]);
    }
}

static int opts_done(void)
{
    config_free(&cfg);
    bench_opts_free(&bo);
    return 0;
}

/* ---- ratelimit ---- */

/* A rate so small that 1e9 / rps does not fit in an int64 still limits: the first request goes
 * at once, the next waits (decades), and neither wait is negative or NaN. Huge rates do not
 * limit and do not break. */
static void test_ratelimit_extreme_rates(void)
{
    static const double tiny[] = {1e-300, 1e-12, 1e-9};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++) {
        struct ratelimit *rl = ratelimit_new(tiny[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(rl);
        double w1 = ratelimit_take(rl), w2 = ratelimit_take(rl);
        CHECKF(w1 == 0, "rps %g: the first request waits %g s", tiny[i], w1);
        CHECKF(w2 > 365.0 * 86400, "rps %g: the second request waits %g s, want years", tiny[i], w2);
        /* Many more takes do not wrap the deadline around into the past. */
        double w = 0;
        for (int k = 0; k < 10; k++)
            w = ratelimit_take(rl);
        CHECKF(w >= w2, "rps %g: after 12 takes the wait is %g s, below the second's %g s", tiny[i], w, w2);
        ratelimit_free(rl);
    }
    static const double huge[] = {1e9, 1e300, INFINITY};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        struct ratelimit *rl = ratelimit_new(huge[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(rl);
        double w = 0;
        for (int k = 0; k < 1000; k++)
            w = ratelimit_take(rl);
        CHECKF(w >= 0 && w < 0.01, "rps %g: the 1000th request waits %g s", huge[i], w);
        ratelimit_free(rl);
    }
}

int register_options(void)
{
    CU_pSuite s = CU_add_suite("options", NULL, opts_done);
    if (!s)
        return -1;
    if (!CU_add_test(s, "numeric options: both ends accepted, one step out refused, message with the range",
                     test_numeric_ranges) ||
        !CU_add_test(s, "--max-rps 1e-300 is refused", test_max_rps_tiny) ||
        !CU_add_test(s, "--concurrency auto, and auto in bench's list", test_concurrency_auto) ||
        !CU_add_test(s, "bench's --sweep, --sweep-stages, --recommend", test_sweep_options) ||
        !CU_add_test(s, "flags, strings, defaults, combinations, bench's own", test_flags_strings) ||
        !CU_add_test(s, "--strategy, --shard, --encoder, --extensions, --concurrency", test_custom_options) ||
        !CU_add_test(s, "--server, --cacert, --header checked and named", test_checked_options) ||
        !CU_add_test(s, "bench passes every run option it takes on to its runs", test_bench_forwards) ||
        !CU_add_test(s, "a worker process receives every option marked for workers", test_worker_config_frame) ||
        !CU_add_test(s, "options of the other command, unknown, missing or extra values", test_option_errors) ||
        !CU_add_test(s, "sources and formats: DIR, s3://, --files-from, -0, --image-auth, --format",
                     test_source_options) ||
        !CU_add_test(s, "every option is covered", test_every_option_tested) ||
        !CU_add_test(s, "ratelimit: tiny rates still limit, huge ones do not break", test_ratelimit_extreme_rates))
        return -1;
    return 0;
}
