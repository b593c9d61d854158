/* End-to-end tests of the dialect pipelines: build/annotate ($ANNOTATE_BIN) runs each
 * examples/<name>.json against the mock's dialect endpoints ($MOCK_BIN), and every cell of the
 * CSV is checked against the mock's own prediction (mock_dialect_cell, src/mock/dialects.c).
 *
 *   "dialects"  every example x every strategy over the hostile tree (plus bytes that are not an
 *               image, and a TIFF named .png): header, one row per image, status, label,
 *               error, attempts; the token never in the CSV nor the output; a wrong token
 *               stops the run as a set-up error (exit 2); an unset ${VISION_KEY} exits 2 before
 *               any request; a --token-file rotated during a run is re-read on the 401 and the
 *               request retried once, so every row is ok.
 *
 * These need the client side of the dialects (stage "body"/"form", jq "result" and "error",
 * ${VAR} in URLs, ${file:} re-read on 401). */
#include <CUnit/CUnit.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "e2e.h"
#include "mock/dialects.h"
#include "proc.h"
#include "tree.h"
#include "util.h"

/* The option that names a pipeline file (README: --config). */
#define PIPELINE_OPT "--config"

#define TOKEN "e2e-tok-51c0ffee"
#define WRONG "e2e-wrong-9d7a"
#define HEADER "path,status,label,error,attempts,elapsed_ms"

enum { C_PATH, C_STATUS, C_LABEL, C_ERROR, C_ATTEMPTS, C_ELAPSED, N_C };

static struct mock_proc srv;      /* --token TOKEN, for the whole suite */
static struct e2e_tree tree;      /* the hostile tree and two extra files */
static char **paths;              /* tree.paths and the extras */
static size_t n_paths;

static const char *const STRATEGIES[] = {"serial", "threads", "processes", "curl-multi",
                                         "load=threads,query=processes"};

static const char *example(int d)
{
    static char buf[1200];
    snprintf(buf, sizeof buf, "%s/%s.json", examples_dir(), mock_dialect_name(d));
    return buf;
}

/* The mock and the tree, made by the first test that needs them. */
static int setup(void)
{
    if (srv.pid > 0)
        return 0;
    const char *args[] = {"--token", TOKEN, NULL};
    if (mock_start(&srv, args) != 0)
        return -1;
    if (e2e_tree_hostile(&tree, "dialects") != 0)
        return -1;
    /* Bytes that are not an image under an image's name, and a TIFF under a PNG's name: the
     * type annotate sends comes from the magic number, the extension only when that fails. */
    static const char text[] = "not an image, whatever the name says\n";
    static const unsigned char tiff[] = {'I', 'I', '*', 0, 8, 0, 0, 0, 0x42, 0x17, 0, 1, 2, 3, 4, 5};
    char p1[700], p2[700];
    snprintf(p1, sizeof p1, "%s/not-an-image.jpg", tree.root);
    snprintf(p2, sizeof p2, "%s/scan,tiff.png", tree.root);
    if (write_file(p1, text, sizeof text - 1) || write_file(p2, tiff, sizeof tiff))
        return -1;
    n_paths = tree.n + 2;
    paths = calloc(n_paths, sizeof *paths);
    for (size_t i = 0; i < tree.n; i++)
        paths[i] = strdup(tree.paths[i]);
    paths[tree.n] = strdup(p1);
    paths[tree.n + 1] = strdup(p2);
    setenv("OPENAI_API_KEY", TOKEN, 1);
    setenv("VISION_KEY", TOKEN, 1);
    return 0;
}

/* The output of a run, the CSV's bytes: neither may hold a token. */
static int leaks(const char *what, const char *out, const char *csv)
{
    size_t n = 0;
    char *text = slurp(csv, &n);
    int bad = 0;
    static const char *const secrets[] = {TOKEN, WRONG};
    for (int i = 0; i < 2; i++) {
        if (strstr(out, secrets[i]) || (text && memmem(text, n, secrets[i], strlen(secrets[i])))) {
            fprintf(stderr, "\n  [dialects] %s: a token appears in the %s\n", what,
                    strstr(out, secrets[i]) ? "output" : "CSV");
            bad = 1;
        }
    }
    free(text);
    return bad;
}

static int field_is(const struct e2e_field *f, const char *s)
{
    return f->len == strlen(s) && !memcmp(f->s, s, f->len);
}

/* 1 when the header is this pipeline's: one stage named label. */
static int header_ok(const struct e2e_csv *c)
{
    static const char *const cols[N_C] = {"path", "status", "label", "error", "attempts", "elapsed_ms"};
    if (c->header.n != N_C)
        return 0;
    for (int i = 0; i < N_C; i++)
        if (!field_is(&c->header.f[i], cols[i]))
            return 0;
    return 1;
}

/* Checks every row of a run of dialect d over the list of paths: each path exactly once,
 * and each cell as predicted, in 1 attempt (or up to 1 + retries for an ok row).
 * *rejected gets the rows the mock must have refused (4xx). Returns the number of problems
 * (the first ones described on stderr). */
static long check_rows(int d, const struct e2e_csv *c, char *const *list, size_t n, int retries,
                       long *rejected, const char *what)
{
    long bad = 0;
    *rejected = 0;
    char *seen = calloc(n, 1);
#define PROBLEM(...) do { if (bad++ < 5) { fprintf(stderr, "\n  [dialects] %s: ", what); \
                                           fprintf(stderr, __VA_ARGS__); } } while (0)
    if (!header_ok(c))
        PROBLEM("the header is not " HEADER "\n");
    if (c->ragged || !c->complete)
        PROBLEM("ragged or torn CSV\n");
    if (c->n != n)
        PROBLEM("%zu rows for %zu images\n", c->n, n);
    for (size_t r = 0; r < c->n && header_ok(c); r++) {
        const struct e2e_row *row = &c->rows[r];
        if (row->n != N_C) {
            PROBLEM("row %zu has %d fields\n", r, row->n);
            continue;
        }
        size_t k = 0;
        while (k < n && !field_is(&row->f[C_PATH], list[k]))
            k++;
        if (k == n) {
            PROBLEM("a row for a path not in the tree: %s\n", printable(row->f[C_PATH].s, row->f[C_PATH].len));
            continue;
        }
        if (seen[k]++) {
            PROBLEM("two rows for %s\n", printable(list[k], strlen(list[k])));
            continue;
        }
        size_t len = 0;
        unsigned char *img = (unsigned char *)slurp(list[k], &len);
        const char *p = printable(list[k], strlen(list[k]));
        if (!img) {
            PROBLEM("cannot read %s\n", p);
            continue;
        }
        const struct e2e_field *st = &row->f[C_STATUS], *lab = &row->f[C_LABEL], *err = &row->f[C_ERROR];
        long attempts = atol(row->f[C_ATTEMPTS].s);
        if (len == 0) {
            if (!field_is(st, "failed") || lab->len || !strstr(err->s, "empty"))
                PROBLEM("%s: the empty file's row is %s,%s,%s\n", p, st->s, lab->s, err->s);
            free(img);
            continue;
        }
        char *cell = NULL;
        const char *error = NULL;
        int rc = mock_dialect_cell(d, img, len, &cell, &error);
        if (rc == 0) {
            if (!field_is(st, "ok") || !field_is(lab, cell) || err->len || attempts < 1 || attempts > 1 + retries)
                PROBLEM("%s: got %s | %s | %s | %ld attempts\n    want ok | %s | (no error) | 1 attempt\n", p,
                        st->s, printable(lab->s, lab->len), printable(err->s, err->len), attempts,
                        printable(cell, strlen(cell)));
        } else if (rc == 1) {
            /* refused by the server: OpenAI's 400 (not retried), Google's error in a 200 */
            if (!field_is(st, "failed") || lab->len || !strstr(err->s, error) || attempts != 1)
                PROBLEM("%s: got %s | %s | %s | %ld attempts\n    want failed | (empty) | ...%s... | 1 attempt\n",
                        p, st->s, printable(lab->s, lab->len), printable(err->s, err->len), attempts, error);
            *rejected += d == MOCK_D_OPENAI;
        } else {
            PROBLEM("no prediction for %s\n", p);
        }
        free(cell);
        free(img);
    }
    for (size_t k = 0; k < n; k++)
        if (!seen[k] && c->n == n)
            PROBLEM("no row for %s\n", printable(list[k], strlen(list[k])));
#undef PROBLEM
    free(seen);
    return bad;
}

/* The mock's counters for dialect d: requests, ok, rejected, faults. */
static void dialect_stats(const struct mock_proc *m, int d, long out[4])
{
    static const char *const what[4] = {"requests", "ok", "rejected", "faults"};
    cJSON *s = mock_stats(m);
    for (int i = 0; i < 4; i++) {
        char key[96];
        snprintf(key, sizeof key, "dialects.%s.%s", mock_dialect_name(d), what[i]);
        long v = mock_stat(s, key);
        out[i] = v < 0 ? 0 : v;
    }
    cJSON_Delete(s);
}

/* One example through one strategy over the hostile tree. */
static void run_one(int d, const char *strategy)
{
    char what[160], out[16384];
    snprintf(what, sizeof what, "%s, --strategy %s", mock_dialect_name(d), strategy);
    CU_ASSERT_EQUAL_FATAL(e2e_stats_reset(&srv), 0);
    const char *extra[] = {PIPELINE_OPT, example(d), "--strategy", strategy, "--workers", "2",
                           "--concurrency", "8", "--retries", "1", NULL};
    int rc = e2e_run(out, sizeof out, tmo(60), tree.root, tree.csv, srv.base_url, extra);
    if (rc != 1)
        show(what, rc, out);
    CU_ASSERT_EQUAL(rc, 1); /* the empty file, at least, fails */
    struct e2e_csv c;
    if (e2e_csv_read(tree.csv, &c) != 0) {
        fprintf(stderr, "\n  [dialects] %s: the results file cannot be read as CSV\n", what);
        CU_FAIL("the results file is not CSV");
        return;
    }
    long rejected = 0;
    CU_ASSERT_EQUAL(check_rows(d, &c, paths, n_paths, 0, &rejected, what), 0);
    CU_ASSERT_EQUAL(leaks(what, out, tree.csv), 0);
    /* one request per non-empty image, each accepted unless predicted refused */
    long st[4];
    dialect_stats(&srv, d, st);
    long sent = (long)n_paths - 1;
    if (st[0] != sent || st[2] != rejected || st[3] != 0)
        fprintf(stderr, "\n  [dialects] %s: the mock saw %ld requests (%ld rejected), want %ld (%ld)\n", what,
                st[0], st[2], sent, rejected);
    CU_ASSERT_EQUAL(st[0], sent);
    CU_ASSERT_EQUAL(st[2], rejected);
    e2e_csv_free(&c);
}

#define RUN_TEST(fn, d)                                      \
    static void fn(void)                                     \
    {                                                        \
        CU_ASSERT_EQUAL_FATAL(setup(), 0);                   \
        for (size_t s = 0; s < sizeof STRATEGIES / sizeof *STRATEGIES; s++)                       \
            run_one(d, STRATEGIES[s]);                       \
    }

RUN_TEST(test_kserve, MOCK_D_KSERVE)
RUN_TEST(test_torchserve, MOCK_D_TORCHSERVE)
RUN_TEST(test_tfserving, MOCK_D_TFSERVING)
RUN_TEST(test_openai, MOCK_D_OPENAI)
RUN_TEST(test_hf, MOCK_D_HF)
RUN_TEST(test_multipart, MOCK_D_MULTIPART)
RUN_TEST(test_google, MOCK_D_GOOGLE)

/* Google answers bytes that are not an image with an error inside a 200: that row fails,
 * naming it, and the others are ok (run_one checks every row; this names the case). */
static void test_google_bad_image(void)
{
    CU_ASSERT_EQUAL_FATAL(setup(), 0);
    char out[8192];
    const char *extra[] = {PIPELINE_OPT, example(MOCK_D_GOOGLE), "--workers", "2", NULL};
    e2e_run(out, sizeof out, tmo(60), tree.root, tree.csv, srv.base_url, extra);
    struct e2e_csv c;
    CU_ASSERT_FATAL(e2e_csv_read(tree.csv, &c) == 0);
    int found = 0;
    for (size_t r = 0; r < c.n; r++) {
        const struct e2e_row *row = &c.rows[r];
        if (row->n == N_C && field_is(&row->f[C_PATH], paths[tree.n])) {
            found = 1;
            CU_ASSERT(field_is(&row->f[C_STATUS], "failed"));
            CU_ASSERT_PTR_NOT_NULL(strstr(row->f[C_ERROR].s, "Bad image data."));
            CU_ASSERT_EQUAL(row->f[C_LABEL].len, 0);
        }
    }
    CU_ASSERT(found);
    e2e_csv_free(&c);
}

/* A wrong token: the first answers are all 401, so the run stops as a set-up error (exit 2)
 * with no row for those images, and neither token is printed or written. */
static void test_wrong_token(void)
{
    CU_ASSERT_EQUAL_FATAL(setup(), 0);
    for (size_t s = 0; s < sizeof STRATEGIES / sizeof *STRATEGIES; s++) {
        char what[160], out[16384];
        snprintf(what, sizeof what, "openai-vision, wrong token, --strategy %s", STRATEGIES[s]);
        setenv("OPENAI_API_KEY", WRONG, 1);
        const char *extra[] = {PIPELINE_OPT, example(MOCK_D_OPENAI), "--strategy", STRATEGIES[s], "--workers", "2",
                               "--concurrency", "8", NULL};
        int rc = e2e_run(out, sizeof out, tmo(60), tree.root, tree.csv, srv.base_url, extra);
        setenv("OPENAI_API_KEY", TOKEN, 1);
        if (rc != 2)
            show(what, rc, out);
        CU_ASSERT_EQUAL(rc, 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "label")); /* the message names the stage */
        CU_ASSERT_EQUAL(leaks(what, out, tree.csv), 0);
        struct e2e_csv c;
        if (e2e_csv_read(tree.csv, &c) == 0) {
            for (size_t r = 0; r < c.n; r++) /* only the empty file may have a row */
                CU_ASSERT(c.rows[r].n == N_C && !field_is(&c.rows[r].f[C_STATUS], "ok")
                          && strstr(c.rows[r].f[C_ERROR].s, "empty"));
            e2e_csv_free(&c);
        }
    }
    /* Google answers a wrong key 400 API_KEY_INVALID (not a 401): a set-up error all the same,
     * so the run stops (exit 2) with no row but the empty file's, and the key appears nowhere,
     * though it is in the URL. */
    char out[16384];
    setenv("VISION_KEY", WRONG, 1);
    const char *extra[] = {PIPELINE_OPT, example(MOCK_D_GOOGLE), "--workers", "2", NULL};
    int rc = e2e_run(out, sizeof out, tmo(60), tree.root, tree.csv, srv.base_url, extra);
    setenv("VISION_KEY", TOKEN, 1);
    if (rc != 2)
        show("google-vision, wrong key", rc, out);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "API key not valid"));
    CU_ASSERT_EQUAL(leaks("google-vision, wrong key", out, tree.csv), 0);
    struct e2e_csv c;
    if (e2e_csv_read(tree.csv, &c) == 0) {
        for (size_t r = 0; r < c.n; r++) {
            const struct e2e_row *row = &c.rows[r];
            CU_ASSERT(row->n == N_C && field_is(&row->f[C_STATUS], "failed"));
            CU_ASSERT(row->n == N_C && strstr(row->f[C_ERROR].s, "empty"));
        }
        e2e_csv_free(&c);
    }
}

/* Google's key is in the URL: a stage whose URL is wrong (here --server's path) stops the run as
 * a set-up error (three 404s), and the message naming the URL must not show the key. */
static void test_key_not_in_setup_error(void)
{
    CU_ASSERT_EQUAL_FATAL(setup(), 0);
    char server[200], out[16384];
    snprintf(server, sizeof server, "%s/wrong-prefix", srv.base_url);
    const char *extra[] = {PIPELINE_OPT, example(MOCK_D_GOOGLE), "--workers", "2", NULL};
    int rc = e2e_run(out, sizeof out, tmo(60), tree.root, tree.csv, server, extra);
    if (rc != 2)
        show("google-vision, wrong --server path", rc, out);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "404"));
    CU_ASSERT_EQUAL(leaks("google-vision, wrong --server path", out, tree.csv), 0);
}

/* ${VISION_KEY} unset: exit 2 at start, naming the variable, before any request. */
static void test_unset_key(void)
{
    CU_ASSERT_EQUAL_FATAL(setup(), 0);
    CU_ASSERT_EQUAL_FATAL(e2e_stats_reset(&srv), 0);
    char out[8192];
    unsetenv("VISION_KEY");
    const char *extra[] = {PIPELINE_OPT, example(MOCK_D_GOOGLE), NULL};
    int rc = e2e_run(out, sizeof out, tmo(30), tree.root, tree.csv, srv.base_url, extra);
    setenv("VISION_KEY", TOKEN, 1);
    if (rc != 2)
        show("google-vision without VISION_KEY", rc, out);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "VISION_KEY"));
    long st[4];
    dialect_stats(&srv, MOCK_D_GOOGLE, st);
    CU_ASSERT_EQUAL(st[0], 0);
}

/* The OpenAI example with its key read from a file, "Bearer ${file:PATH}"; the mock reads its
 * --token-file from the same file. The file is rotated (a new file renamed over it) while the
 * run goes on: the next request still carries the old token and gets a 401, annotate reads the
 * file again and retries once, and every row ends ok. */
static void test_token_rotation(void)
{
    enum { N = 30 };
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "dialects", N, 77) == 0);
    char token_file[700], tmp[720], pipeline[700];
    snprintf(token_file, sizeof token_file, "%s/token", t.base);
    snprintf(tmp, sizeof tmp, "%s/token.new", t.base);
    snprintf(pipeline, sizeof pipeline, "%s/openai-file.json", t.base);
    CU_ASSERT_FATAL(write_file(token_file, "rotate-old-1\n", 13) == 0);
    /* the example, with the Authorization header taken from the file */
    char *text = slurp(example(MOCK_D_OPENAI), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    cJSON *hdrs = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "stages"),
                                                                      0), "headers");
    CU_ASSERT_FATAL(cJSON_IsObject(hdrs));
    char bearer[800];
    snprintf(bearer, sizeof bearer, "Bearer ${file:%s}", token_file);
    cJSON_ReplaceItemInObjectCaseSensitive(hdrs, "Authorization", cJSON_CreateString(bearer));
    char *ptext = cJSON_Print(doc);
    cJSON_Delete(doc);
    CU_ASSERT_FATAL(ptext && write_file(pipeline, ptext, strlen(ptext)) == 0);
    free(ptext);
    struct mock_proc m = {0};
    const char *args[] = {"--token-file", token_file, "--latency-ms", "25", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, args), 0);
    for (size_t s = 0; s < sizeof STRATEGIES / sizeof *STRATEGIES; s++) {
        char what[160];
        snprintf(what, sizeof what, "token rotation, --strategy %s", STRATEGIES[s]);
        const char *old = s % 2 ? "rotate-new-2\n" : "rotate-old-1\n", *next = s % 2 ? "rotate-old-1\n" : "rotate-new-2\n";
        CU_ASSERT_FATAL(write_file(tmp, old, 13) == 0 && rename(tmp, token_file) == 0);
        CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
        const char *extra[] = {PIPELINE_OPT, pipeline, "--strategy", STRATEGIES[s], "--workers", "2",
                               "--concurrency", "2", NULL};
        const char *argv[64];
        e2e_annotate_argv(argv, 64, t.root, t.csv, m.base_url, extra);
        unlink(t.log);
        unlink(t.csv); /* else the last run's rows would count as this one's progress */
        pid_t pid = e2e_spawn(argv, t.log);
        CU_ASSERT_FATAL(pid > 0);
        /* some rows done with the first token, then rotate */
        int mid = e2e_wait_lines(t.csv, 1 + 4, pid, tmo(30));
        CU_ASSERT_FATAL(write_file(tmp, next, 13) == 0 && rename(tmp, token_file) == 0);
        int rc = e2e_wait(pid, tmo(60));
        if (rc != 0 || !mid)
            show_log(what, rc, t.log);
        CU_ASSERT(mid); /* the rotation happened during the run */
        CU_ASSERT_EQUAL(rc, 0);
        struct e2e_csv c;
        if (e2e_csv_read(t.csv, &c) != 0) {
            CU_FAIL("the results file is not CSV");
            continue;
        }
        long rejected, attempts = 0, retried = 0;
        /* every row ok, as predicted, in one attempt or two (a 401, then the retry) */
        CU_ASSERT_EQUAL(check_rows(MOCK_D_OPENAI, &c, t.paths, N, 1, &rejected, what), 0);
        for (size_t r = 0; r < c.n; r++) {
            long a = c.rows[r].n == N_C ? atol(c.rows[r].f[C_ATTEMPTS].s) : 0;
            attempts += a;
            retried += a == 2;
        }
        long st[4];
        dialect_stats(&m, MOCK_D_OPENAI, st);
        /* at least one request carried the old token after the rotation; each such 401 was
         * retried once with the new one */
        if (st[2] < 1 || st[0] != N + st[2] || attempts != st[0] || retried != st[2])
            fprintf(stderr, "\n  [dialects] %s: %ld requests, %ld refused (401), %ld attempts, %ld rows retried\n",
                    what, st[0], st[2], attempts, retried);
        CU_ASSERT(st[2] >= 1); /* the old token was still in use: the 401 path was exercised */
        CU_ASSERT_EQUAL(st[0], N + st[2]);
        CU_ASSERT_EQUAL(attempts, st[0]);
        CU_ASSERT_EQUAL(retried, st[2]);
        char log[4096] = "";
        file_tail(t.log, log, sizeof log);
        CU_ASSERT(!strstr(log, "rotate-old") && !strstr(log, "rotate-new"));
        size_t n = 0;
        char *csv = slurp(t.csv, &n);
        CU_ASSERT(csv && !memmem(csv, n, "rotate-", 7));
        free(csv);
        e2e_csv_free(&c);
    }
    CU_ASSERT_EQUAL(mock_stop(&m), 0);
    e2e_tree_free(&t);
}

static int suite_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int suite_cleanup(void)
{
    if (srv.pid > 0)
        mock_stop(&srv);
    curl_global_cleanup();
    free_strs(paths, n_paths);
    paths = NULL;
    n_paths = 0;
    e2e_tree_free(&tree);
    return 0;
}

int register_dialects(void)
{
    CU_pSuite s = CU_add_suite("dialects", suite_init, suite_cleanup);
    if (!s)
        return -1;
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"kserve-v2.json, every strategy, every cell", test_kserve},
        {"torchserve.json, every strategy, every cell", test_torchserve},
        {"tfserving.json, every strategy, every cell", test_tfserving},
        {"openai-vision.json, every strategy, every cell", test_openai},
        {"hf-endpoint.json, every strategy, every cell", test_hf},
        {"multipart.json, every strategy, every cell", test_multipart},
        {"google-vision.json, every strategy, every cell", test_google},
        {"google-vision.json: not an image is 'Bad image data.'", test_google_bad_image},
        {"a wrong token stops the run (exit 2) and is never shown", test_wrong_token},
        {"a wrong URL stops the run (exit 2) without showing the key in it", test_key_not_in_setup_error},
        {"an unset ${VISION_KEY} exits 2 before any request", test_unset_key},
        {"--token-file rotated during a run: re-read on 401, retried once", test_token_rotation},
    };
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn))
            return -1;
    return 0;
}
