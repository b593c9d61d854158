/* Suites "cells serial" and "cells concurrent": what a row holds when a real folder has corrupt
 * files (tests/servers/cells.py). Serial (one image at a time, so that valgrind can run it): the
 * summary, --retry-failed, merge, the cache, load errors; concurrent (for make tsan) and
 * strategies (crops, which libvips cuts on threads TSan cannot follow): every other strategy.
 *
 *   - a corrupt image (a permanent 400 from two of four stages) fails its row, which keeps the
 *     cells of the stages that answered; the error names every failed stage in pipeline order,
 *     the same under every strategy; a stage that needs a failed one is not run;
 *   - "csv": "text" writes a string result as its plain text in the CSV;
 *   - "column": a detector whose result (the boxes) feeds a per-crop stage shows its whole
 *     detections in its cell, later stages still read the result, a per-crop stage's column is a
 *     list, the same under every strategy and from --cache (0 attempts, the same cells);
 *   - the summary counts final failures apart from those a retry may mend, and suggests
 *     --retry-failed only for the latter; --resume --retry-failed sends a failed row with cells
 *     again in full. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "pyserver.h"
#include "tree.h"
#include "util.h"

#define N_IMAGES 10

/* Image i: "CORRUPT" for i 1, 4, 7 (refused by ocr and caption), "FLAKY" for i 5 (ocr answers
 * 503 until healed), plain otherwise. */
static const char *kind_of(int i)
{
    return i == 1 || i == 4 || i == 7 ? "CORRUPT" : i == 5 ? "FLAKY" : "plain";
}

static int cells_start(struct mock_proc *s)
{
    const char *script = "tests/servers/cells.py";
    struct stat sb;
    if (stat(script, &sb) != 0)
        script = "../tests/servers/cells.py";
    const char *argv[] = {"python3", script, NULL};
    return listener_start(s, argv, 0);
}

static const char PIPELINE[] =
    "{\"stages\": ["
    "{\"name\": \"ocr\", \"url\": \"/ocr\", \"body\": {\"img\": \"{{image}}\"}, \"result\": \".text\"},"
    "{\"name\": \"caption\", \"url\": \"/caption\", \"body\": {\"img\": \"{{image}}\"}, \"result\": \".caption\","
    " \"csv\": \"text\"},"
    "{\"name\": \"tag\", \"url\": \"/tag\", \"body\": {\"img\": \"{{image}}\"}},"
    "{\"name\": \"summary\", \"url\": \"/summary\", \"body\": {\"o\": \"{{ocr}}\"}}"
    "]}";

struct img {
    char path[700];
    char key[16];
};

/* The folder: N_IMAGES files under t->root, their paths and CRC keys into im. */
static int make_folder(const char *root, struct img *im)
{
    if (mkdir(root, 0755))
        return -1;
    for (int i = 0; i < N_IMAGES; i++) {
        char body[64];
        int n = snprintf(body, sizeof body, "image %d %s bytes", i, kind_of(i));
        snprintf(im[i].path, sizeof im[i].path, "%s/img%02d.jpg", root, i);
        snprintf(im[i].key, sizeof im[i].key, "%08lx", (unsigned long)pyserver_crc32((const unsigned char *)body, (size_t)n));
        if (write_file(im[i].path, body, (size_t)n))
            return -1;
    }
    return 0;
}

static const struct e2e_row *row_of(const struct e2e_csv *c, const char *path)
{
    for (size_t r = 0; r < c->n; r++)
        if (c->rows[r].n > 0 && !strcmp(c->rows[r].f[0].s, path))
            return &c->rows[r];
    return NULL;
}

/* Checks every row of csv against what the server answers: each image once; a corrupt one
 * failed with tag's cell kept and the error naming ocr then caption; the flaky one (unless
 * healed) failed by ocr alone, with caption and tag kept; summary only where ocr answered. */
static long check_rows(const char *csv, const struct img *im, int healed, const char *what)
{
    struct e2e_csv c;
    long bad = 0;
    if (e2e_csv_read(csv, &c)) {
        fprintf(stderr, "%s: %s is not CSV\n", what, csv);
        return 1;
    }
    bad += c.n != N_IMAGES || c.header.n != 9 || strcmp(c.header.f[2].s, "ocr") || strcmp(c.header.f[3].s, "caption");
    for (int i = 0; i < N_IMAGES; i++) {
        const struct e2e_row *r = row_of(&c, im[i].path);
        if (!r || r->n != 9) {
            fprintf(stderr, "%s: no row for image %d\n", what, i);
            bad++;
            continue;
        }
        char ocr[32], cap[64], tag[32], sum[40];
        snprintf(ocr, sizeof ocr, "\"T%s\"", im[i].key);
        snprintf(cap, sizeof cap, "A photo, \"%s\"", im[i].key); /* plain text: "csv": "text" */
        snprintf(tag, sizeof tag, "[\"t\", \"%s\"]", im[i].key); /* (Python json.dumps spacing) */
        snprintf(sum, sizeof sum, "\"sum:T%s\"", im[i].key);
        int corrupt = !strcmp(kind_of(i), "CORRUPT"), flaky = !strcmp(kind_of(i), "FLAKY") && !healed;
        const char *want_ocr = corrupt || flaky ? "" : ocr, *want_cap = corrupt ? "" : cap;
        const char *want_sum = corrupt || flaky ? "" : sum;
        const char *status = corrupt || flaky ? "failed" : "ok";
        int ok = !strcmp(r->f[1].s, status) && !strcmp(r->f[2].s, want_ocr) && !strcmp(r->f[3].s, want_cap) &&
                 !strcmp(r->f[4].s, tag) && !strcmp(r->f[5].s, want_sum);
        if (corrupt)
            ok &= !strncmp(r->f[6].s, "ocr: HTTP 400", 13) && strstr(r->f[6].s, "cannot identify image file") &&
                  strstr(r->f[6].s, "; caption: HTTP 400") != NULL;
        else if (flaky)
            ok &= !strncmp(r->f[6].s, "ocr: HTTP 503", 13) && !strstr(r->f[6].s, "caption");
        else
            ok &= r->f[6].len == 0;
        if (!ok) {
            fprintf(stderr, "%s: image %d (%s): row %s,%s,%s,%s,%s,%s\n", what, i, kind_of(i), r->f[1].s, r->f[2].s,
                    r->f[3].s, r->f[4].s, r->f[5].s, r->f[6].s);
            bad++;
        }
    }
    e2e_csv_free(&c);
    return bad;
}

static void test_every_strategy(void)
{
    struct mock_proc srv;
    CU_ASSERT_EQUAL_FATAL(cells_start(&srv), 0);
    char base[512], root[600], csv[600], cfg[600], out[8192];
    CU_ASSERT_FATAL(make_tmpdir(base, sizeof base, "cells") == 0);
    snprintf(root, sizeof root, "%s/t", base);
    snprintf(csv, sizeof csv, "%s/r.csv", base);
    snprintf(cfg, sizeof cfg, "%s/p.json", base);
    struct img im[N_IMAGES];
    CU_ASSERT_EQUAL_FATAL(make_folder(root, im), 0);
    CU_ASSERT_EQUAL_FATAL(write_file(cfg, PIPELINE, strlen(PIPELINE)), 0);
    static const char *const strategies[] = {"threads", "processes", "curl-multi", "load=processes,query=curl-multi"};
    for (size_t s = 0; s < sizeof strategies / sizeof *strategies; s++) {
        /* A fixed number: under --concurrency auto (the default) a 503 is flow control, up to
         * CHAIN_BUSY_FREE of them not charged to retries, and the image that stays 503 would
         * end alone in flight, read as an outage and wait for --outage-timeout. */
        const char *extra[] = {"--config", cfg, "--strategy", strategies[s], "--workers", "3", "--concurrency", "3",
                               "--retries", "1", "--backoff-ms", "1", NULL};
        int rc = e2e_run(out, sizeof out, tmo(120), root, csv, srv.base_url, extra);
        CHECKF(rc == 1, "%s: exit %d (want 1: rows failed): %s", strategies[s], rc, out);
        CHECKF(check_rows(csv, im, 0, strategies[s]) == 0, "%s: rows not as the server answers", strategies[s]);
    }
    tree_rm(base);
    mock_stop(&srv);
}

/* The summary tells final failures from those a retry may mend; --retry-failed sends a failed
 * row with cells again in full, and it becomes ok once the stage answers. */
static void test_final_and_retry_failed(void)
{
    struct mock_proc srv;
    CU_ASSERT_EQUAL_FATAL(cells_start(&srv), 0);
    char base[512], root[600], csv[600], cfg[600], out[8192];
    CU_ASSERT_FATAL(make_tmpdir(base, sizeof base, "cells") == 0);
    snprintf(root, sizeof root, "%s/t", base);
    snprintf(csv, sizeof csv, "%s/r.csv", base);
    snprintf(cfg, sizeof cfg, "%s/p.json", base);
    struct img im[N_IMAGES];
    CU_ASSERT_EQUAL_FATAL(make_folder(root, im), 0);
    CU_ASSERT_EQUAL_FATAL(write_file(cfg, PIPELINE, strlen(PIPELINE)), 0);
    const char *argv[] = {e2e_annotate_bin(), root, "--out", csv, "--server", srv.base_url, "--config", cfg,
                          "--strategy", "serial", "--retries", "1", "--backoff-ms", "1", NULL};
    int rc = run_cmd(argv, tmo(120), out, sizeof out);
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    CHECKF(strstr(out, "3 failed rows are final") != NULL, "final failures not counted: %s", out);
    CHECKF(strstr(out, "1 failed row may succeed on a retry") != NULL && strstr(out, "--retry-failed re-runs it"),
           "the mendable failure not counted, or --retry-failed not suggested for it: %s", out);
    CU_ASSERT_EQUAL(check_rows(csv, im, 0, "first run"), 0);
    char first[600];
    size_t len;
    char *text = slurp(csv, &len);
    snprintf(first, sizeof first, "%s/first.csv", base);
    CU_ASSERT_FATAL(text && write_file(first, text, len) == 0);
    free(text);

    char url[200];
    long status = 0;
    snprintf(url, sizeof url, "%s/heal", srv.base_url);
    http_post(url, "", 0, &status, NULL);
    CU_ASSERT_EQUAL(status, 200);
    const char *again[] = {e2e_annotate_bin(), root, "--out", csv, "--server", srv.base_url, "--config", cfg,
                           "--strategy", "serial", "--retries", "1", "--backoff-ms", "1",
                           "--resume", "--retry-failed", NULL};
    rc = run_cmd(again, tmo(120), out, sizeof out);
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    CHECKF(strstr(out, "3 failed rows are final") != NULL && !strstr(out, "may succeed on a retry"),
           "after the heal only final failures are left: %s", out);
    CU_ASSERT_EQUAL(check_rows(csv, im, 1, "after --retry-failed"), 0);

    /* merge: a failed row with cells is still failed; the ok row of the same image wins. */
    char merged[600];
    snprintf(merged, sizeof merged, "%s/merged.csv", base);
    const char *merge[] = {e2e_annotate_bin(), "merge", merged, first, csv, NULL};
    rc = run_cmd(merge, tmo(60), out, sizeof out);
    CHECKF(rc == 0 || rc == 1, "merge: exit %d: %s", rc, out);
    CU_ASSERT_EQUAL(check_rows(merged, im, 1, "merged"), 0);
    tree_rm(base);
    mock_stop(&srv);
}

static const char DETECT[] =
    "{\"stages\": ["
    "{\"name\": \"detect\", \"url\": \"/detect\", \"body\": {\"img\": \"{{image}}\"},"
    " \"result\": \"[.detections[].bbox]\", \"column\": \".detections\"},"
    "{\"name\": \"species\", \"url\": \"/species\", \"body\": {\"img\": \"{{image}}\"},"
    " \"input\": {\"each\": \"detect\", \"crop\": \".[]\"}, \"image\": {\"format\": \"png\"},"
    " \"result\": \".score\", \"column\": \".label\"},"
    "{\"name\": \"boxes\", \"url\": \"/echo\", \"body\": {\"boxes\": \"{{detect}}\"}}"
    "]}";

/* n 16x16 grey PNGs under root, their paths and CRC keys into im. */
static int make_pngs(const char *root, struct img *im, int n)
{
    if (mkdir(root, 0755))
        return -1;
    unsigned char rows[16 * 17], png[2048];
    for (int i = 0; i < n; i++) {
        for (int y = 0; y < 16; y++) {
            rows[y * 17] = 0;
            for (int x = 0; x < 16; x++)
                rows[y * 17 + 1 + x] = (unsigned char)(i * 40 + x * 7 + y * 3);
        }
        size_t len = png_gray8(png, 16, 16, rows, NULL, 0);
        snprintf(im[i].path, sizeof im[i].path, "%s/p%d.png", root, i);
        snprintf(im[i].key, sizeof im[i].key, "%08lx", (unsigned long)pyserver_crc32(png, len));
        if (write_file(im[i].path, png, len))
            return -1;
    }
    return 0;
}

/* The detect pipeline's rows: detect's cell is its column (the detections as sent), species' a
 * list of two labels of crops, boxes what detect's result (the boxes) was sent as. */
static long check_detect_rows(const char *csv, const struct img *im, int n, const char *what)
{
    struct e2e_csv c;
    long bad = 0;
    if (e2e_csv_read(csv, &c))
        return 1;
    bad += c.n != (size_t)n || c.header.n != 8;
    for (int i = 0; i < n && !bad; i++) {
        const struct e2e_row *r = row_of(&c, im[i].path);
        char det[300];
        snprintf(det, sizeof det,
                 "[{\"bbox\": [0, 0, 4, 4], \"label\": \"L%s\", \"score\": 0.5}, "
                 "{\"bbox\": [4, 4, 4, 4], \"label\": \"M%s\", \"score\": 0.25}]",
                 im[i].key, im[i].key);
        unsigned a, b;
        int ok = r && r->n == 8 && !strcmp(r->f[1].s, "ok") && !strcmp(r->f[2].s, det) &&
                 sscanf(r->f[3].s, "[\"S%8x\",\"S%8x\"]", &a, &b) == 2 && strlen(r->f[3].s) == 25 &&
                 !strcmp(r->f[4].s, "[[0, 0, 4, 4], [4, 4, 4, 4]]");
        if (!ok) {
            fprintf(stderr, "%s: image %d: row %s,%s,%s,%s,%s\n", what, i, r ? r->f[1].s : "-", r ? r->f[2].s : "-",
                    r && r->n > 3 ? r->f[3].s : "-", r && r->n > 4 ? r->f[4].s : "-", r && r->n > 5 ? r->f[5].s : "-");
            bad++;
        }
    }
    e2e_csv_free(&c);
    return bad;
}

/* The detect pipeline run under each strategy of strategies (n of them), then with with_cache,
 * serially, into a new answer store and again from it. */
static void run_column(const char *const *strategies, int n, int with_cache)
{
    struct mock_proc srv;
    CU_ASSERT_EQUAL_FATAL(cells_start(&srv), 0);
    char base[512], root[600], csv[600], cfg[600], cache[600], out[8192];
    CU_ASSERT_FATAL(make_tmpdir(base, sizeof base, "cells") == 0);
    snprintf(root, sizeof root, "%s/t", base);
    snprintf(csv, sizeof csv, "%s/r.csv", base);
    snprintf(cfg, sizeof cfg, "%s/p.json", base);
    snprintf(cache, sizeof cache, "%s/answers.db", base);
    struct img im[4];
    CU_ASSERT_EQUAL_FATAL(make_pngs(root, im, 4), 0);
    CU_ASSERT_EQUAL_FATAL(write_file(cfg, DETECT, strlen(DETECT)), 0);
    for (int s = 0; s < n; s++) {
        const char *extra[] = {"--config", cfg, "--strategy", strategies[s], "--workers", "3", NULL};
        int rc = e2e_run(out, sizeof out, tmo(120), root, csv, srv.base_url, extra);
        CHECKF(rc == 0, "%s: exit %d: %s", strategies[s], rc, out);
        CHECKF(check_detect_rows(csv, im, 4, strategies[s]) == 0, "%s: cells not as the server answers", strategies[s]);
    }
    /* From the answer store: the same cells, no request. */
    for (int round = 0; with_cache && round < 2; round++) {
        const char *extra[] = {"--config", cfg, "--cache", cache, "--strategy", "serial", NULL};
        int rc = e2e_run(out, sizeof out, tmo(120), root, csv, srv.base_url, extra);
        CHECKF(rc == 0, "cache round %d: exit %d: %s", round, rc, out);
        CHECKF(check_detect_rows(csv, im, 4, round ? "from the cache" : "into the cache") == 0,
               "cache round %d: cells not as the server answers", round);
        struct e2e_csv c;
        if (round == 1 && e2e_csv_read(csv, &c) == 0) {
            long attempts = 0;
            for (size_t r = 0; r < c.n; r++)
                attempts += c.rows[r].n == 8 ? atol(c.rows[r].f[6].s) : 1;
            CHECKF(attempts == 0, "a cached re-run made %ld attempts", attempts);
            e2e_csv_free(&c);
        }
    }
    tree_rm(base);
    mock_stop(&srv);
}

static void test_column_serial(void)
{
    run_column(NULL, 0, 1); /* (the cache's first round is a plain serial run) */
}

static void test_column_concurrent(void)
{
    static const char *const strategies[] = {"threads", "processes", "curl-multi", "load=processes,query=curl-multi"};
    run_column(strategies, 4, 0);
}

/* "column" is compiled once at load: a bad one exits 2 before anything is sent. */
static void test_column_load_error(void)
{
    char base[512], cfg[600], out[4096];
    CU_ASSERT_FATAL(make_tmpdir(base, sizeof base, "cells") == 0);
    snprintf(cfg, sizeof cfg, "%s/p.json", base);
    static const char bad[] = "{\"stages\": [{\"name\": \"d\", \"url\": \"/d\", \"column\": \".a | [\"}]}";
    CU_ASSERT_EQUAL_FATAL(write_file(cfg, bad, strlen(bad)), 0);
    const char *argv[] = {e2e_annotate_bin(), base, "--out", "-", "--server", "http://127.0.0.1:9", "--config", cfg, NULL};
    int rc = run_cmd(argv, tmo(30), out, sizeof out);
    CHECKF(rc == 2 && strstr(out, "column"), "exit %d: %s", rc, out);
    static const char text[] = "{\"stages\": [{\"name\": \"d\", \"url\": \"/d\", \"csv\": \"plain\"}]}";
    CU_ASSERT_EQUAL_FATAL(write_file(cfg, text, strlen(text)), 0);
    rc = run_cmd(argv, tmo(30), out, sizeof out);
    CHECKF(rc == 2 && strstr(out, "\"csv\" must be true, false or \"text\""), "exit %d: %s", rc, out);
    tree_rm(base);
}

int register_cells(void)
{
    CU_pSuite s = CU_add_suite("cells serial", NULL, NULL);
    if (!s ||
        !CU_add_test(s, "final failures told apart; --retry-failed re-sends a failed row in full; merge",
                     test_final_and_retry_failed) ||
        !CU_add_test(s, "\"column\": a detector's cell, its result to a per-crop stage, and from the cache",
                     test_column_serial) ||
        !CU_add_test(s, "a bad \"column\" or \"csv\" exits 2", test_column_load_error))
        return -1;
    s = CU_add_suite("cells concurrent", NULL, NULL);
    if (!s || !CU_add_test(s, "a corrupt image keeps the cells that answered, the same under every strategy",
                           test_every_strategy))
        return -1;
    /* Not "concurrent": make tsan would flag libvips' own threads decoding the crops (its glib
     * locks are not instrumented), as it would any run that cuts crops. */
    s = CU_add_suite("cells strategies", NULL, NULL);
    if (!s || !CU_add_test(s, "\"column\" of a crop stage under every strategy", test_column_concurrent))
        return -1;
    return 0;
}
