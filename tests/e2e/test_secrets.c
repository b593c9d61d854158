/* Suite "secrets e2e": no secret the run holds is written, whatever a server puts in its
 * answer (the Secrets part of the Hardening issue). tests/servers/leaky.py gives back what it is
 * sent, one way per test; each test runs annotate and reads everything it wrote (the results
 * file, --stats-json, its stderr: summary, stop message, progress line, log lines; bench's report)
 * for the secret's bytes, and checks that the scrub's marker is where the secret would be.
 *
 *   secret kinds: a header's ${file:} (and the value it is rotated to during the run, also in a
 *   worker process), a header's ${VAR}, a ${VAR} in a stage's URL, a header sent to an image
 *   host, S3's secret key, session token and signature;
 *   places: CSV error cells, JSON Lines errors, an excerpt cut across the secret, jq's message
 *   quoting a value cut to its first bytes, a redirect's
 *   Location, --stats-json, the summary and the stop message on stderr, the progress line,
 *   bench's report. */
#include <CUnit/CUnit.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "pyserver.h"
#include "util.h"

#define TOKEN "tok3n-from-a-file-7f3a9c"
#define VAR_KEY "var-key-5b21e0d4c7"
#define VISION_KEY "AIzaVisionKey-9c8b7a6d"
#define IMG_TOKEN "imghosttoken4411"

static const char *leaky_script(void)
{
    struct stat sb;
    return stat("tests/servers/leaky.py", &sb) == 0 ? "tests/servers/leaky.py" : "../tests/servers/leaky.py";
}

/* Starts leaky.py with extra arguments (NULL-terminated, or NULL). 0 or -1. */
static int leaky_start(struct mock_proc *m, const char *const *extra)
{
    const char *argv[16] = {pyserver_python(), leaky_script()};
    int n = 2;
    for (int i = 0; extra && extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return listener_start(m, argv, 0);
}

/* A one-stage pipeline "m" at url with the headers (a JSON object's text) and more keys (text
 * put after them, may be ""), written to t's directory; its path in cfg. */
static void write_stage(const struct e2e_tree *t, const char *url, const char *headers, const char *more, char *cfg,
                        size_t len)
{
    char text[2048];
    snprintf(cfg, len, "%s/p.json", t->base);
    snprintf(text, sizeof text, "{\"stages\": [{\"name\": \"m\", \"url\": \"%s\", \"headers\": %s%s}]}", url,
             headers, more);
    CU_ASSERT_FATAL(write_file(cfg, text, strlen(text)) == 0);
}

/* annotate ROOT --out OUT --server URL --force EXTRA... (not --quiet: the summary is read too),
 * its stdout and stderr into out. Returns its exit status. */
static int run(const struct e2e_tree *t, const char *out_file, const char *url, const char *const *extra, char *out,
               size_t outlen)
{
    const char *argv[40] = {e2e_annotate_bin(), t->root, "--out", out_file, "--server", url, "--force",
                            "--stats-json", t->sj};
    int n = 9;
    for (int i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return run_cmd(argv, tmo(90), out, outlen);
}

/* 1 when the file (NULL: the text) holds needle. */
static int holds(const char *path, const char *text, const char *needle)
{
    size_t len = 0;
    char *d = path ? slurp(path, &len) : NULL;
    const char *s = path ? d : text;
    int r = s && memmem(s, path ? len : strlen(s), needle, strlen(needle)) != NULL;
    free(d);
    return r;
}

/* Every place must be free of secret; what says where; the places NULL-terminated (file paths);
 * out is the run's captured output. */
static void no_secret(const char *what, const char *secret, const char *out, const char *const *files)
{
    CHECKF(!holds(NULL, out, secret), "%s: the output (summary, messages) holds the secret", what);
    for (int i = 0; files[i]; i++)
        CHECKF(!holds(files[i], NULL, secret), "%s: %s holds the secret", what, files[i]);
}

/* Every row of a CSV is failed, with the marker in its error. Returns the rows. */
static size_t rows_scrubbed(const char *what, const char *csv, size_t want)
{
    struct e2e_csv c;
    if (e2e_csv_read(csv, &c)) {
        CHECKF(0, "%s: %s cannot be read", what, csv);
        return 0;
    }
    size_t good = 0;
    for (size_t i = 0; i < c.n; i++) {
        const struct e2e_row *r = &c.rows[i];
        int ok = r->n >= 4 && !strcmp(r->f[1].s, "failed") && strstr(r->f[r->n - 3].s, "[secret]");
        if (!ok && i < 3)
            CHECKF(0, "%s: row %zu: %s", what, i, r->n >= 4 ? r->f[r->n - 3].s : "(short)");
        good += ok;
    }
    CHECKF(c.n == want && good == want, "%s: %zu rows, %zu failed with the marker, want %zu", what, c.n, good, want);
    e2e_csv_free(&c);
    return good;
}

/* ---- a ${file:} header echoed by the server ---- */

/* A 400 whose body echoes the Authorization header (from a ${file:}): the CSV's error cells,
 * --stats-json and the summary hold the marker, never the token. */
static void test_file_header_csv(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-file", 6, 71), 0);
    char tokf[700], cfg[700], hdr[800], out[16384];
    snprintf(tokf, sizeof tokf, "%s/token", t.base);
    CU_ASSERT_FATAL(write_file(tokf, TOKEN "\n", strlen(TOKEN) + 1) == 0);
    snprintf(hdr, sizeof hdr, "{\"Authorization\": \"Bearer ${file:%s}\"}", tokf);
    write_stage(&t, "/echo/400", hdr, "", cfg, sizeof cfg);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, NULL), 0);
    const char *extra[] = {"--config", cfg, NULL};
    int rc = run(&t, t.csv, m.base_url, extra, out, sizeof out);
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    rows_scrubbed("${file:} echoed", t.csv, t.n);
    const char *files[] = {t.csv, t.sj, NULL};
    no_secret("${file:} echoed", TOKEN, out, files);
    CHECKF(holds(t.sj, NULL, "[secret]"), "--stats-json: no example with the marker");
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* The token file rotated by the server during the run (it writes the new token to the file and
 * answers 401; the run reads the file again): neither the first token nor the new one is
 * written. Under curl-multi, and with worker processes, which read the file themselves. */
static void test_file_header_rotated(void)
{
    static const char *const strategies[] = {"curl-multi", "processes"};
    /* Under ANNOTATE_WRAP (valgrind) a worker process cannot start: it is exec'd from
     * /proc/self/exe, which is then valgrind's tool. */
    const char *wrap = getenv("ANNOTATE_WRAP");
    for (int s = 0; s < (wrap && *wrap ? 1 : 2); s++) {
        struct e2e_tree t;
        CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-rotate", 10, 72), 0);
        char tokf[700], cfg[700], hdr[800], out[16384];
        snprintf(tokf, sizeof tokf, "%s/token", t.base);
        CU_ASSERT_FATAL(write_file(tokf, TOKEN "\n", strlen(TOKEN) + 1) == 0);
        snprintf(hdr, sizeof hdr, "{\"Authorization\": \"Bearer ${file:%s}\"}", tokf);
        write_stage(&t, "/rotate", hdr, "", cfg, sizeof cfg);
        struct mock_proc m;
        const char *sargs[] = {"--token-file", tokf, "--rotate-after", "3", NULL};
        CU_ASSERT_EQUAL_FATAL(leaky_start(&m, sargs), 0);
        /* one request at a time: the stage has answered before the rotation's 401 */
        const char *extra[] = {"--config", cfg, "--strategy", strategies[s], "--workers", "1", "--concurrency", "1",
                               NULL};
        int rc = run(&t, t.csv, m.base_url, extra, out, sizeof out);
        CHECKF(rc == 1, "%s: exit %d: %s", strategies[s], rc, out);
        char *now = slurp(tokf, NULL);
        CU_ASSERT_FATAL(now != NULL);
        now[strcspn(now, "\n")] = 0;
        CHECKF(strncmp(now, "rotated", 7) == 0, "%s: the server did not rotate the token", strategies[s]);
        rows_scrubbed(strategies[s], t.csv, t.n);
        const char *files[] = {t.csv, t.sj, NULL};
        no_secret(strategies[s], TOKEN, out, files);
        no_secret(strategies[s], now, out, files);
        free(now);
        mock_stop(&m);
        e2e_tree_free(&t);
    }
}

/* A 401 that echoes the header from the first answer: a set-up error, which stops the run with
 * a message naming the answer. The message (stderr) and --stats-json hold the marker, never
 * the token. */
static void test_stop_message(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-stop", 6, 73), 0);
    char tokf[700], cfg[700], hdr[800], out[16384];
    snprintf(tokf, sizeof tokf, "%s/token", t.base);
    CU_ASSERT_FATAL(write_file(tokf, TOKEN, strlen(TOKEN)) == 0);
    snprintf(hdr, sizeof hdr, "{\"Authorization\": \"Bearer ${file:%s}\"}", tokf);
    write_stage(&t, "/echo/401", hdr, "", cfg, sizeof cfg);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, NULL), 0);
    const char *extra[] = {"--config", cfg, NULL};
    int rc = run(&t, t.csv, m.base_url, extra, out, sizeof out);
    CHECKF(rc == 2 && strstr(out, "HTTP 401") && strstr(out, "[secret]"), "exit %d: %s", rc, out);
    const char *files[] = {t.csv, t.sj, NULL};
    no_secret("the stop message", TOKEN, out, files);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- a ${VAR} header; JSON Lines; an excerpt cut across the secret ---- */

static void test_var_header_jsonl(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-var", 5, 74), 0);
    char cfg[700], jl[700], out[16384];
    snprintf(jl, sizeof jl, "%s/r.jsonl", t.base);
    write_stage(&t, "/echo/422", "{\"X-Api-Key\": \"${LEAKY_KEY}\"}", "", cfg, sizeof cfg);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, NULL), 0);
    setenv("LEAKY_KEY", VAR_KEY, 1);
    const char *extra[] = {"--config", cfg, NULL};
    int rc = run(&t, jl, m.base_url, extra, out, sizeof out);
    unsetenv("LEAKY_KEY");
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    CHECKF(holds(jl, NULL, "\"key\\\": \\\"[secret]\\\""), "the JSON Lines errors do not show the marker");
    CHECKF(e2e_count_lines(jl) == (long)t.n, "%ld lines for %zu images", e2e_count_lines(jl), t.n);
    const char *files[] = {jl, t.sj, NULL};
    no_secret("${VAR} header, JSON Lines", VAR_KEY, out, files);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* The token starts at byte 72 of the body: an excerpt of 80 bytes would show its first 8. */
static void test_excerpt_cut(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-cut", 4, 75), 0);
    char cfg[700], out[16384], prefix[8];
    write_stage(&t, "/pad/400", "{\"Authorization\": \"Bearer ${LEAKY_KEY}\"}", "", cfg, sizeof cfg);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, NULL), 0);
    setenv("LEAKY_KEY", VAR_KEY, 1);
    const char *extra[] = {"--config", cfg, NULL};
    int rc = run(&t, t.csv, m.base_url, extra, out, sizeof out);
    unsetenv("LEAKY_KEY");
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    rows_scrubbed("excerpt cut", t.csv, t.n);
    snprintf(prefix, sizeof prefix, "%.6s", VAR_KEY);
    const char *files[] = {t.csv, t.sj, NULL};
    no_secret("excerpt cut", prefix, out, files);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* jq quotes a value it cannot use cut to its first bytes, "...": "Cannot iterate over string
 * (\"var-key-5b...)" for a "result" that iterates the echoed key. */
static void test_jq_message(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-jq", 3, 81), 0);
    char cfg[700], out[16384];
    write_stage(&t, "/echo/200", "{\"X-Api-Key\": \"${LEAKY_KEY}\"}", ", \"result\": \".key[]\"", cfg, sizeof cfg);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, NULL), 0);
    setenv("LEAKY_KEY", VAR_KEY, 1);
    const char *extra[] = {"--config", cfg, "--retries", "0", NULL};
    int rc = run(&t, t.csv, m.base_url, extra, out, sizeof out);
    unsetenv("LEAKY_KEY");
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    rows_scrubbed("jq's message", t.csv, t.n);
    CHECKF(holds(t.csv, NULL, "Cannot iterate over string"), "the rows do not give jq's message");
    const char *files[] = {t.csv, t.sj, NULL};
    no_secret("jq's message", "var-key-", out, files);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- a ${VAR} in the URL, sent back in a redirect ---- */

static void test_url_redirect(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-url", 5, 76), 0);
    char cfg[700], out[16384];
    write_stage(&t, "/redirect/v1/images:annotate?key=${VISION_KEY}", "{}", "", cfg, sizeof cfg);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, NULL), 0);
    setenv("VISION_KEY", VISION_KEY, 1);
    const char *extra[] = {"--config", cfg, NULL};
    int rc = run(&t, t.csv, m.base_url, extra, out, sizeof out);
    unsetenv("VISION_KEY");
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    rows_scrubbed("URL key in a redirect", t.csv, t.n);
    CHECKF(holds(t.csv, NULL, "HTTP 301 to https://"), "the rows do not say where the redirect points");
    const char *files[] = {t.csv, t.sj, NULL};
    no_secret("URL key in a redirect", VISION_KEY, out, files);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- the progress line ---- */

/* A 200 whose "error" names the token: the reason is kept as the server wrote it, so the
 * progress line and the summary show it. The last image is held by the server until a progress line with the
 * failures has been printed. */
static void test_progress_line(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-progress", 5, 77), 0);
    char cfg[700], rel[700];
    snprintf(rel, sizeof rel, "%s/release", t.base);
    write_stage(&t, "/said", "{\"Authorization\": \"Bearer ${LEAKY_KEY}\"}", ", \"error\": \".error\"", cfg,
                sizeof cfg);
    struct mock_proc m;
    const char *sargs[] = {"--hold-after", "4", "--release-file", rel, NULL};
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, sargs), 0);
    setenv("LEAKY_KEY", VAR_KEY, 1);
    const char *argv[] = {e2e_annotate_bin(), t.root, "--out", t.csv, "--server", m.base_url, "--force", "--config",
                          cfg, "--progress-interval", "0.1", "--concurrency", "4", NULL};
    pid_t pid = e2e_spawn(argv, t.log);
    unsetenv("LEAKY_KEY");
    CU_ASSERT_FATAL(pid > 0);
    int seen = 0;
    for (int i = 0; i < tmo(30) * 20 && !seen && e2e_alive(pid); i++) {
        seen = holds(t.log, NULL, "4 failed");
        if (!seen)
            usleep(50 * 1000);
    }
    CHECKF(seen, "no progress line with the failures");
    CU_ASSERT(write_file(rel, "", 0) == 0);
    int rc = e2e_wait(pid, tmo(60));
    CHECKF(rc == 1, "exit %d", rc);
    CHECKF(holds(t.log, NULL, "4 failed (m: refused: [secret])"),
           "the progress line does not show the reason with the marker");
    CHECKF(holds(t.log, NULL, "5  m: refused: [secret]"), "the summary does not show the reason with the marker");
    const char *files[] = {t.log, t.csv, NULL};
    no_secret("progress line", VAR_KEY, "", files);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- an image host's header ---- */

/* An image host redirecting to a host named after the header it was sent: curl's message names
 * that host. */
static void test_image_host_header(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-imghost", 1, 78), 0);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, NULL), 0);
    char list[700], text[512], cfg[700], out[16384];
    snprintf(list, sizeof list, "%s/list.txt", t.base);
    snprintf(text, sizeof text, "%s/img-redirect/a.png\n%s/img-redirect/b.png\n", m.base_url, m.base_url);
    CU_ASSERT_FATAL(write_file(list, text, strlen(text)) == 0);
    write_stage(&t, "/echo/200", "{}", "", cfg, sizeof cfg);
    setenv("IMG_TOKEN", IMG_TOKEN, 1);
    const char *argv[] = {e2e_annotate_bin(), "--files-from", list, "--out", t.csv, "--server", m.base_url, "--force",
                          "--config", cfg, "--image-auth", "--header", "X-Image-Token: ${IMG_TOKEN}", "--retries", "0",
                          "--stats-json", t.sj, NULL};
    int rc = run_cmd(argv, tmo(60), out, sizeof out);
    unsetenv("IMG_TOKEN");
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    rows_scrubbed("image host's header", t.csv, 2);
    const char *files[] = {t.csv, t.sj, NULL};
    no_secret("image host's header", IMG_TOKEN, out, files);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- S3 ---- */

#define S3_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
#define S3_TOKEN "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789"

static void s3_env(void *arg)
{
    setenv("AWS_ENDPOINT_URL", arg, 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0001", 1);
    setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET, 1);
    setenv("AWS_SESSION_TOKEN", S3_TOKEN, 1);
    setenv("AWS_REGION", "us-east-1", 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/annotate-test", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent/annotate-test", 1);
    unsetenv("AWS_PROFILE");
}

/* 1 when text holds a run of 64 hex digits (a SigV4 signature). */
static int has_signature(const char *text)
{
    int run = 0;
    for (const char *c = text; *c; c++) {
        run = isxdigit((unsigned char)*c) ? run + 1 : 0;
        if (run >= 64)
            return 1;
    }
    return 0;
}

/* A store whose AccessDenied message holds the request's signature, its session token and the
 * secret key: the run stops at the listing (exit 2), its message says AccessDenied, and none of
 * the three. */
static void test_s3(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-s3", 1, 79), 0);
    struct mock_proc m;
    const char *sargs[] = {"--echo", S3_SECRET, NULL};
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, sargs), 0);
    char out[16384];
    const char *argv[] = {e2e_annotate_bin(), "s3://bucket/photos/", "--out", t.csv, "--server", m.base_url,
                          "--force", NULL};
    int rc = run_cmd_hook(argv, tmo(60), out, sizeof out, s3_env, m.base_url);
    CHECKF(rc == 2 && strstr(out, "AccessDenied") && strstr(out, "[secret]"), "exit %d: %s", rc, out);
    CHECKF(!strstr(out, S3_SECRET) && !strstr(out, S3_TOKEN) && !has_signature(out),
           "the message holds S3's secret, token or signature: %s", out);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- bench's report ---- */

static void test_bench_report(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "secret-bench", 6, 80), 0);
    char cfg[700], rep[700], chart[700], out[16384];
    snprintf(rep, sizeof rep, "%s/bench.json", t.base);
    snprintf(chart, sizeof chart, "%s/bench.svg", t.base);
    write_stage(&t, "/said", "{\"Authorization\": \"Bearer ${LEAKY_KEY}\"}", ", \"error\": \".error\"", cfg,
                sizeof cfg);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(leaky_start(&m, NULL), 0);
    setenv("LEAKY_KEY", VAR_KEY, 1);
    const char *argv[] = {e2e_annotate_bin(), "bench", t.root, "--server", m.base_url, "--config", cfg,
                          "--strategies", "curl-multi", "--concurrency", "2", "--limit", "6", "--report", rep, "--chart", chart, NULL};
    int rc = run_cmd(argv, tmo(90), out, sizeof out);
    unsetenv("LEAKY_KEY");
    /* (images the server refuses fail on their own, not for load: bench exits 0) */
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    CHECKF(holds(rep, NULL, "refused: [secret]"), "the report does not show the reason with the marker");
    const char *files[] = {rep, NULL};
    no_secret("bench", VAR_KEY, out, files);
    mock_stop(&m);
    e2e_tree_free(&t);
}

int register_secrets_e2e(void)
{
    CU_pSuite s = CU_add_suite("secrets e2e", NULL, NULL);
    if (!s ||
        !CU_add_test(s, "${file:} header echoed in a 400: CSV error cells, --stats-json, summary", test_file_header_csv) ||
        !CU_add_test(s, "${file:} rotated during the run: neither value (curl-multi, processes)",
                     test_file_header_rotated) ||
        !CU_add_test(s, "${file:} header echoed in 401s: the stop message", test_stop_message) ||
        !CU_add_test(s, "${VAR} header echoed: JSON Lines errors", test_var_header_jsonl) ||
        !CU_add_test(s, "a secret across the excerpt's cut: no prefix of it", test_excerpt_cut) ||
        !CU_add_test(s, "a ${VAR} header quoted cut by jq's message: no prefix of it", test_jq_message) ||
        !CU_add_test(s, "${VAR} in the URL, back in a 301's Location: rows, --stats-json", test_url_redirect) ||
        !CU_add_test(s, "a reason holding a ${VAR} header: the progress line and the summary", test_progress_line) ||
        !CU_add_test(s, "an image host's header in curl's message: the row", test_image_host_header) ||
        !CU_add_test(s, "S3's secret key, session token and signature in its message", test_s3) ||
        !CU_add_test(s, "a reason holding a ${VAR} header: bench's report", test_bench_report))
        return -1;
    return 0;
}
