/* Suites "hardening2 ...": the Hardening issue's findings in the chain, the endpoint and the
 * drivers (the batch ones are in test_batch.c).
 *
 *   "hardening2 replicas"        a replica that answers wrongly (a 200 that is not JSON; a 404)
 *                                while another answers well: every row ok, retried elsewhere,
 *                                the wrong replica ejected, no set-up error (exit 0)
 *   "hardening2 outages"         a server restart while the stage has a single request in flight
 *                                (serial, one worker): no failed row; images the server always
 *                                500s on are not an outage: each fails after its own retries,
 *                                the others go on
 *   "hardening2 setup"           a stage whose first answers are 404s about two images (the
 *                                others slower): their rows say so, the others are ok, the run
 *                                goes on (they used to be left without a row, exit 0)
 *   "hardening2 tokens"          a token file that lags the server's rotation by 150 ms: every
 *                                row ok, under curl-multi, threads and processes
 *   "hardening2 jq serial"       a jq expression that never ends is stopped at its CPU-time
 *                                budget (expr_run, in this process), and in a serial run fails
 *                                its image alone, not retried, named; the run goes on (make
 *                                valgrind runs it: the timer's signal under valgrind)
 *   "hardening2 jq concurrent"   the same from several threads at once, and under threads,
 *                                processes and curl-multi (make tsan runs it; ThreadSanitizer
 *                                holds a signal back until its thread calls a function it
 *                                intercepts, so the runaway programs here are generators, whose
 *                                every output is allocated)
 */
#include <CUnit/CUnit.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/expr.h"

#include "batchy.h"
#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "util.h"

/* ---- a one-stage seed pipeline ------------------------------------------------------------------ */

/* A pipeline of one stage, model_01 of the seed chain, at urls (the JSON text of a URL or a list
 * of replicas), into t's directory; its path in cfg. 0 or -1. */
static int write_model01(const struct e2e_tree *t, const char *urls, char *cfg, size_t len)
{
    char text[1024];
    snprintf(cfg, len, "%s/p.json", t->base);
    snprintf(text, sizeof text,
             "{\"stages\": [{\"name\": \"model_01\", \"url\": %s, \"fields\": {\"model_03\": null}}]}", urls);
    return write_file(cfg, text, strlen(text));
}

/* Checks a one-stage model_01 results file: a row per image, each ok with the mock's answer.
 * Returns the number of problems (the first few said). */
static long check_model01(const struct e2e_tree *t, const char *what)
{
    struct e2e_csv c;
    if (e2e_csv_read(t->csv, &c)) {
        CHECKF(0, "%s: the results file cannot be read", what);
        return 1;
    }
    long bad = c.n != t->n;
    CHECKF(c.n == t->n, "%s: %zu rows for %zu images", what, c.n, t->n);
    for (size_t i = 0; i < t->n; i++) {
        size_t len;
        unsigned char *bytes = (unsigned char *)slurp(t->paths[i], &len);
        struct e2e_pred p;
        int predicted = bytes && e2e_predict(bytes, len, &p) == 0;
        free(bytes);
        const struct e2e_row *r = NULL;
        for (size_t k = 0; k < c.n && !r; k++)
            if (c.rows[k].n >= 4 && !strcmp(c.rows[k].f[0].s, t->paths[i]))
                r = &c.rows[k];
        int ok = predicted && r && !strcmp(r->f[1].s, "ok") && !strcmp(r->f[2].s, p.cell[0]);
        if (!ok && bad++ < 5)
            CHECKF(0, "%s: image %zu: %s [%s] %s", what, i, r ? r->f[1].s : "no row", r ? r->f[2].s : "",
                   r ? r->f[3].s : "");
        if (predicted)
            e2e_pred_free(&p);
    }
    e2e_csv_free(&c);
    return bad;
}

/* ---- hardening2 replicas ------------------------------------------------------------------------ */

/* The second replica's errors and ejections from a --stats-json file. */
static void replica_b(const char *sj, long *errors, long *ejections)
{
    cJSON *j = e2e_read_json(sj);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "replicas"), "model_01");
    const cJSON *b = cJSON_GetArrayItem(list, 1);
    *errors = (long)e2e_json_num(b, "errors");
    *ejections = (long)e2e_json_num(b, "ejections");
    cJSON_Delete(j);
}

/* model_01 on a good replica and a wrong one (urls): under curl-multi and processes, exit 0,
 * every row as the good replica answers, the wrong one ejected. */
static void run_wrong_replica(const char *tag, const char *urls_fmt, const struct mock_proc *good,
                              const struct mock_proc *wrong)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, tag, 200, 23), 0);
    char urls[512], cfg[700];
    snprintf(urls, sizeof urls, urls_fmt, good->base_url, wrong->base_url);
    CU_ASSERT_EQUAL_FATAL(write_model01(&t, urls, cfg, sizeof cfg), 0);
    static const char *const strategies[] = {"curl-multi", "processes"};
    for (int s = 0; s < 2; s++) {
        char out[8192], what[128];
        snprintf(what, sizeof what, "%s, %s", tag, strategies[s]);
        const char *extra[] = {"--config", cfg, "--strategy", strategies[s], "--workers", "4", "--stats-json", t.sj,
                               NULL};
        int rc = e2e_run(out, sizeof out, tmo(90), t.root, t.csv, good->base_url, extra);
        if (rc != 0)
            show(what, rc, out);
        CU_ASSERT_EQUAL(rc, 0);
        CHECKF(check_model01(&t, what) == 0, "%s: rows not as the good replica answers", what);
        long errors = 0, ejections = 0;
        replica_b(t.sj, &errors, &ejections);
        CHECKF(errors >= 5 && ejections >= 1, "%s: the wrong replica had %ld errors, %ld ejections", what, errors,
               ejections);
    }
    e2e_tree_free(&t);
}

static void test_replica_garbled(void)
{
    struct mock_proc good, wrong;
    const char *garbage[] = {"--garbage-rate", "1", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&good, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(mock_start(&wrong, garbage), 0);
    run_wrong_replica("replica-garbled", "[\"%s/model_01\", \"%s/model_01\"]", &good, &wrong);
    mock_stop(&good);
    mock_stop(&wrong);
}

static void test_replica_not_found(void)
{
    struct mock_proc good;
    CU_ASSERT_EQUAL_FATAL(mock_start(&good, NULL), 0);
    run_wrong_replica("replica-404", "[\"%s/model_01\", \"%s/no_such_model\"]", &good, &good);
    mock_stop(&good);
}

/* ---- hardening2 outages ------------------------------------------------------------------------- */

/* The seed chain, one request at a time (strategy opts), against a mock that is stopped for
 * 3 s and started again on its port mid-run: no row fails. */
static void run_lone_restart(const char *const *opts, const char *what)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "lone-restart", 40, 5), 0);
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "5", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", m.port);
    const char *extra[16] = {NULL};
    int k = 0;
    for (int i = 0; opts[i] && k < 15; i++)
        extra[k++] = opts[i];
    const char *argv[32];
    e2e_annotate_argv(argv, 32, t.root, t.csv, m.base_url, extra);
    pid_t pid = e2e_spawn(argv, t.log);
    CU_ASSERT_FATAL(pid > 0);
    CU_ASSERT(e2e_wait_lines(t.csv, 6, pid, tmo(60)));
    mock_stop(&m); /* a restart: gone for 3 s (the retries of one request take under one)... */
    sleep_ms(3000);
    const char *again[] = {"--latency-ms", "5", "--port", port, NULL}; /* ...and back */
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, again), 0);
    int rc = e2e_wait(pid, tmo(120));
    if (rc != 0)
        show_log(what, rc, t.log);
    CU_ASSERT_EQUAL(rc, 0);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    long bad = e2e_check_results(&c, t.paths, t.n, NULL, NULL);
    CHECKF(bad == 0, "%s: %ld rows are not as predicted after a restart", what, bad);
    e2e_csv_free(&c);
    mock_stop(&m);
    e2e_tree_free(&t);
}

static void test_lone_request_restart(void)
{
    const char *serial[] = {"--strategy", "serial", NULL};
    run_lone_restart(serial, "serial");
    const char *one[] = {"--strategy", "threads", "--workers", "1", NULL};
    run_lone_restart(one, "threads, one worker");
}

/* A third of the images are answered 500 every time: each fails after its own 3 attempts (not
 * held as an outage beyond them), the others are ok; curl-multi and threads. */
static void test_poisoned_images(void)
{
    int bad[30];
    for (int i = 0; i < 30; i++)
        bad[i] = 3 * i + 1;
    static const char *const strategies[] = {"curl-multi", "threads"};
    for (int s = 0; s < 2; s++) {
        const char *opts[] = {"--strategy", strategies[s], "--workers", "8", "--concurrency", "8",
                              "--outage-timeout", "20", NULL};
        struct batchy_case c = {"/poison", 90, bad, 30, "HTTP 500: cannot process bad", .opts = opts,
                                .bad_attempts = 3};
        cJSON_Delete(batchy_run(&c));
    }
}

/* ---- hardening2 setup --------------------------------------------------------------------------- */

/* The stage's first answers are 404s about two images, the others' come 300 ms later (six sent
 * at once): those images are not set aside without a row (as set-up errors would be), nor do
 * they stop the run: once the others have answered, their 404s are their own, and their rows
 * say so. (Should a loader be so slow that a bad image goes alone, its 404s are a set-up error
 * by the breaker's rule: exit 2, no row at all, is right then. Never rows missing.) */
static void test_first_answer_about_an_image(void)
{
    const int bad[] = {1, 4};
    const char *opts[] = {"--strategy", "curl-multi", "--concurrency", "6", NULL};
    struct batchy_case c = {"/late404", 6, bad, 2, "HTTP 404: no model for bad", .opts = opts, .may_stop = 1};
    cJSON_Delete(batchy_run(&c));
}

/* ---- hardening2 tokens -------------------------------------------------------------------------- */

/* Rotates the server's token file, and 150 ms later the client's, until told to stop. */
struct rotation {
    const char *server_file, *client_file;
    atomic_int stop;
    int rounds;
};

static void put_token(const char *path, int k)
{
    char tmp[800], tok[64];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    int n = snprintf(tok, sizeof tok, "lag-t0ken-%06d\n", k);
    if (write_file(tmp, tok, (size_t)n) != 0 || rename(tmp, path) != 0)
        perror("put_token");
}

static void *rotate(void *arg)
{
    struct rotation *r = arg;
    for (int k = 1; !atomic_load(&r->stop); k++) {
        sleep_ms(250);
        put_token(r->server_file, k);
        sleep_ms(150); /* a secrets agent writing a moment late */
        put_token(r->client_file, k);
        r->rounds = k;
    }
    return NULL;
}

/* The OpenAI example with its key read from the client's file; the mock reads its own. */
static int write_openai(const char *path, const char *token_file)
{
    char src[700];
    snprintf(src, sizeof src, "%s/openai-vision.json", examples_dir());
    char *text = slurp(src, NULL);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    cJSON *st = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "stages"), 0);
    cJSON *hdrs = cJSON_GetObjectItemCaseSensitive(st, "headers");
    char bearer[800];
    snprintf(bearer, sizeof bearer, "Bearer ${file:%s}", token_file);
    int rc = -1;
    if (cJSON_IsObject(hdrs) && cJSON_ReplaceItemInObjectCaseSensitive(hdrs, "Authorization", cJSON_CreateString(bearer))) {
        char *out = cJSON_Print(doc);
        rc = out ? write_file(path, out, strlen(out)) : -1;
        free(out);
    }
    cJSON_Delete(doc);
    return rc;
}

/* The rotations start once the stage has answered (rows are written): a 401 before any answer
 * is a set-up error, which is the set-up breaker's (breakers.h). */
static void test_token_lag(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "token-lag", 150, 41), 0);
    char server_file[700], client_file[700], cfg[700];
    snprintf(server_file, sizeof server_file, "%s/server-token", t.base);
    snprintf(client_file, sizeof client_file, "%s/client-token", t.base);
    snprintf(cfg, sizeof cfg, "%s/openai.json", t.base);
    CU_ASSERT_EQUAL_FATAL(write_openai(cfg, client_file), 0);
    struct mock_proc m;
    const char *margs[] = {"--token-file", server_file, "--latency-ms", "25", NULL};
    put_token(server_file, 0);
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    static const char *const strategies[] = {"curl-multi", "threads", "processes"};
    for (int s = 0; s < 3; s++) {
        put_token(server_file, 0);
        put_token(client_file, 0);
        unlink(t.csv);
        const char *extra[] = {"--config", cfg, "--strategy", strategies[s], "--workers", "4", "--concurrency", "4", NULL};
        const char *argv[32];
        e2e_annotate_argv(argv, 32, t.root, t.csv, m.base_url, extra);
        pid_t pid = e2e_spawn(argv, t.log);
        CU_ASSERT_FATAL(pid > 0);
        CU_ASSERT(e2e_wait_lines(t.csv, 3, pid, tmo(60)));
        struct rotation r = {server_file, client_file, 0, 0};
        pthread_t tid;
        CU_ASSERT_FATAL(pthread_create(&tid, NULL, rotate, &r) == 0);
        int rc = e2e_wait(pid, tmo(120));
        atomic_store(&r.stop, 1);
        pthread_join(tid, NULL);
        if (rc != 0)
            show_log(strategies[s], rc, t.log);
        CU_ASSERT_EQUAL(rc, 0);
        CHECKF(r.rounds >= 1, "%s: the run ended before the first rotation", strategies[s]);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
        long failed = 0;
        for (size_t i = 0; i < c.n; i++)
            failed += c.rows[i].n < 2 || strcmp(c.rows[i].f[1].s, "ok");
        CHECKF(c.n == t.n && failed == 0, "%s: %zu rows for %zu images, %ld failed, over %d rotations", strategies[s],
               c.n, t.n, failed, r.rounds);
        e2e_csv_free(&c);
    }
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- hardening2 jq ------------------------------------------------------------------------------ */

static int count_out(void *arg, const char *text, size_t len)
{
    (void)text;
    (void)len;
    ++*(long *)arg;
    return 0;
}

/* One run of text on json: expr_run's result, its message in err. */
static int run_expr(const char *text, const char *json, long *outputs, char *err, size_t errlen)
{
    struct expr e;
    if (expr_compile(&e, text, err, errlen))
        return -100;
    *outputs = 0;
    err[0] = 0;
    int n = expr_run(&e, json, strlen(json), count_out, outputs, err, errlen);
    expr_free(&e);
    return n;
}

/* Programs that never end (a loop, endless recursion, an endless generator) are stopped at the
 * budget, named; a state that was stopped runs the next input as if new; a program that halts
 * itself is an error of its own, not the budget's. */
static void test_expr_budget(void)
{
    static const char *const runaway[] = {"until(false; .)", "def f: f; f", "repeat(.)", "last(range(1e15))"};
    char err[512];
    long outs;
    for (size_t i = 0; i < sizeof runaway / sizeof *runaway; i++) {
        int n = run_expr(runaway[i], "{\"x\": 1}", &outs, err, sizeof err);
        CHECKF(n == EXPR_OVER_BUDGET && strstr(err, runaway[i]) && strstr(err, "CPU-time budget"), "%s: %d, %s",
               runaway[i], n, err);
    }
    struct expr e;
    CU_ASSERT_EQUAL_FATAL(expr_compile(&e, "if .loop then until(false; .) else .x end", err, sizeof err), 0);
    for (int round = 0; round < 2; round++) {
        outs = 0;
        CU_ASSERT_EQUAL(expr_run(&e, "{\"loop\": true}", 14, count_out, &outs, err, sizeof err), EXPR_OVER_BUDGET);
        outs = 0;
        CU_ASSERT_EQUAL(expr_run(&e, "{\"x\": 7}", 8, count_out, &outs, err, sizeof err), 1);
        CU_ASSERT_EQUAL(outs, 1);
    }
    expr_free(&e);
    int n = run_expr("halt_error(3)", "\"bye\"", &outs, err, sizeof err);
    CHECKF(n == -1 && strstr(err, "halted"), "halt_error: %d, %s", n, err);
    CU_ASSERT_EQUAL(run_expr("[range(100000)] | length", "null", &outs, err, sizeof err), 1);
}

/* The pipeline's "result" runs loop (a jq program that never ends) for the image named bad...,
 * or its "error" does: it fails at once (1 attempt), naming the stage and the expression; the
 * others are ok. */
static void run_runaway(const char *const *opts, const char *loop)
{
    char result[300], error[300], want[500];
    snprintf(result, sizeof result, ".predictions[0] | if (.name | startswith(\"bad\")) then %s else . end", loop);
    snprintf(error, sizeof error, "if (.predictions[0].name | startswith(\"bad\")) then %s else .error end", loop);
    const int bad[] = {5};
    snprintf(want, sizeof want, "m: \"result\" failed: jq: %s ran past its CPU-time budget", result);
    struct batchy_case c = {"/ok", 8, bad, 1, want, .opts = opts, .result = result, .bad_attempts = 1};
    cJSON_Delete(batchy_run(&c));
    snprintf(want, sizeof want, "m: \"error\" failed: jq: %s ran past its CPU-time budget", error);
    struct batchy_case ce = {"/ok", 8, bad, 1, want, .opts = opts, .error = error, .bad_attempts = 1};
    cJSON_Delete(batchy_run(&ce));
}

static void test_runaway_serial(void)
{
    const char *serial[] = {"--strategy", "serial", NULL};
    run_runaway(serial, "until(false; .)");
}

struct budget_thread {
    const struct expr *e;
    int over, ok;
};

static void *budget_worker(void *arg)
{
    struct budget_thread *b = arg;
    char err[512];
    for (int i = 0; i < 2; i++) {
        long outs = 0;
        b->over += expr_run(b->e, "{\"loop\": true}", 14, count_out, &outs, err, sizeof err) == EXPR_OVER_BUDGET;
        outs = 0;
        b->ok += expr_run(b->e, "{\"x\": 2}", 8, count_out, &outs, err, sizeof err) == 1 && outs == 1;
    }
    return NULL;
}

/* Threads running one expression at once (each on a state of its own): each runaway run is
 * stopped on its own thread's budget, and the other runs are not disturbed. */
static void test_expr_budget_threads(void)
{
    struct expr e;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(expr_compile(&e, "if .loop then repeat(.) else .x end", err, sizeof err), 0);
    struct budget_thread b[3];
    pthread_t tid[3];
    for (int i = 0; i < 3; i++) {
        b[i] = (struct budget_thread){&e, 0, 0};
        CU_ASSERT_FATAL(pthread_create(&tid[i], NULL, budget_worker, &b[i]) == 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(tid[i], NULL);
        CHECKF(b[i].over == 2 && b[i].ok == 2, "thread %d: %d stopped, %d ok", i, b[i].over, b[i].ok);
    }
    expr_free(&e);
}

static void test_runaway_strategies(void)
{
    static const char *const strategies[] = {"threads", "processes", "curl-multi", "load=threads,query=processes"};
    for (int s = 0; s < 4; s++) {
        const char *opts[] = {"--strategy", strategies[s], "--workers", "3", NULL};
        run_runaway(opts, "repeat(.)");
    }
}

/* ---- registration ------------------------------------------------------------------------------- */

int register_hardening2(void)
{
    CU_pSuite s = CU_add_suite("hardening2 replicas", NULL, NULL);
    if (!s || !CU_add_test(s, "a replica answering 200 with no JSON: ejected, every row ok", test_replica_garbled) ||
        !CU_add_test(s, "a replica answering 404: ejected, every row ok, no set-up error", test_replica_not_found))
        return -1;
    s = CU_add_suite("hardening2 outages", NULL, NULL);
    if (!s || !CU_add_test(s, "a restart with one request in flight: no failed row", test_lone_request_restart) ||
        !CU_add_test(s, "images the server always 500s on: not an outage, each fails after its retries",
                     test_poisoned_images))
        return -1;
    s = CU_add_suite("hardening2 setup", NULL, NULL);
    if (!s || !CU_add_test(s, "first answers that are 404s about two images: their rows, the run goes on",
                           test_first_answer_about_an_image))
        return -1;
    s = CU_add_suite("hardening2 tokens", NULL, NULL);
    if (!s || !CU_add_test(s, "a token file 150 ms behind the server's rotation: every row ok", test_token_lag))
        return -1;
    s = CU_add_suite("hardening2 jq serial", NULL, NULL);
    if (!s || !CU_add_test(s, "expr_run: a runaway program stopped at its CPU-time budget", test_expr_budget) ||
        !CU_add_test(s, "a runaway \"result\" or \"error\", serial: its image fails alone, named",
                     test_runaway_serial))
        return -1;
    s = CU_add_suite("hardening2 jq concurrent", NULL, NULL);
    if (!s || !CU_add_test(s, "expr_run from three threads: each stopped on its own budget", test_expr_budget_threads) ||
        !CU_add_test(s, "a runaway expression under threads, processes and curl-multi", test_runaway_strategies))
        return -1;
    return 0;
}
