/* Suite "dialects independent": every examples/NAME.json under every strategy against a server
 * that is not our mock: tests/servers/dialects.py, a FastAPI app written from each server's own
 * documentation (its multipart endpoint is FastAPI's own UploadFile parsing). Run over the
 * hostile tree (names with quotes, commas, newlines, spaces, non-UTF-8 bytes): one row per
 * image, and every cell as pyserver_expected predicts from the image's bytes; what the server
 * refuses (not an image, an empty file) is a failed row with a reason. The tokens never appear
 * in the CSV or the output. */
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "e2e.h"
#include "util.h"
#include "pyserver.h"
#include "tree.h"

#define TOKEN "indep-tok-7e11a"

static struct pyserver srv;
static struct e2e_tree tree;
static int ready = -1; /* -1: not tried yet */

static const char *const STRATEGIES[] = {"serial", "threads", "processes", "curl-multi",
                                         "load=threads,query=processes"};

static int setup(void)
{
    if (ready >= 0)
        return ready ? 0 : -1;
    ready = 0;
    if (pyserver_start(TOKEN, &srv) != 0 || e2e_tree_hostile(&tree, "indep") != 0)
        return -1;
    setenv("OPENAI_API_KEY", TOKEN, 1);
    setenv("VISION_KEY", TOKEN, 1);
    ready = 1;
    return 0;
}

static int is(const struct e2e_field *f, const char *s)
{
    return f->len == strlen(s) && !memcmp(f->s, s, f->len);
}

/* Problems of one run's CSV (the first few described on stderr). */
static long check(const char *ex, const struct e2e_csv *c, const char *what)
{
    long bad = 0;
#define PROBLEM(...) do { if (bad++ < 5) { fprintf(stderr, "\n  [indep] %s: ", what); fprintf(stderr, __VA_ARGS__); } } while (0)
    static const char *const cols[] = {"path", "status", "label", "error", "attempts", "elapsed_ms"};
    int hdr = c->header.n == 6;
    for (int i = 0; hdr && i < 6; i++)
        hdr = is(&c->header.f[i], cols[i]);
    if (!hdr || c->ragged || !c->complete) {
        PROBLEM("header or framing is wrong\n");
        return bad;
    }
    if (c->n != tree.n)
        PROBLEM("%zu rows for %zu images\n", c->n, tree.n);
    char *seen = calloc(tree.n, 1);
    size_t oks = 0;
    for (size_t r = 0; r < c->n; r++) {
        const struct e2e_row *row = &c->rows[r];
        size_t k = 0;
        while (k < tree.n && !is(&row->f[0], tree.paths[k]))
            k++;
        if (k == tree.n || seen[k]++) {
            PROBLEM("row %zu: a path not in the tree, or twice: %s\n", r, printable(row->f[0].s, row->f[0].len));
            continue;
        }
        size_t len = 0;
        unsigned char *img = (unsigned char *)slurp(tree.paths[k], &len);
        char *want = img && len ? pyserver_expected(ex, img, len) : NULL;
        const char *p = printable(tree.paths[k], strlen(tree.paths[k]));
        if (want) {
            oks++;
            if (!is(&row->f[1], "ok") || !is(&row->f[2], want) || row->f[3].len)
                PROBLEM("%s: got %s | %s | %s, want ok | %s\n", p, row->f[1].s, printable(row->f[2].s, row->f[2].len),
                        printable(row->f[3].s, row->f[3].len), want);
        } else if (!is(&row->f[1], "failed") || row->f[2].len || !row->f[3].len) {
            PROBLEM("%s: refused by the server, yet its row is %s | %s\n", p, row->f[1].s,
                    printable(row->f[2].s, row->f[2].len));
        }
        free(want);
        free(img);
    }
    free(seen);
    if (oks < 3)
        PROBLEM("only %zu images the server classifies: the test proves little\n", oks);
#undef PROBLEM
    return bad;
}

/* examples/EX.json, whose cells are predicted as example AS's. */
static void run_example_as(const char *ex, const char *as)
{
    CU_ASSERT_EQUAL_FATAL(setup(), 0);
    char cfg[1200];
    snprintf(cfg, sizeof cfg, "%s/%s.json", examples_dir(), ex);
    for (size_t s = 0; s < sizeof STRATEGIES / sizeof *STRATEGIES; s++) {
        char what[160], out[16384];
        snprintf(what, sizeof what, "%s, --strategy %s", ex, STRATEGIES[s]);
        const char *extra[] = {"--config", cfg, "--strategy", STRATEGIES[s], "--workers", "2", "--concurrency", "8",
                               "--retries", "1", "--backoff-ms", "1", NULL};
        int rc = e2e_run(out, sizeof out, tmo(90), tree.root, tree.csv, srv.base_url, extra);
        if (rc != 1) /* the empty file and the non-images fail */
            show(what, rc, out);
        CU_ASSERT_EQUAL(rc, 1);
        size_t n = 0;
        char *text = slurp(tree.csv, &n);
        CHECKF(!strstr(out, TOKEN) && !(text && memmem(text, n, TOKEN, strlen(TOKEN))), "%s: the token leaked", what);
        free(text);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(tree.csv, &c), 0);
        CU_ASSERT_EQUAL(check(as, &c, what), 0);
        e2e_csv_free(&c);
    }
}

static void run_example(const char *ex)
{
    run_example_as(ex, ex);
}

/* TF Serving's instances in batches of 16: each image's cell is its element of "predictions",
 * as tfserving.json's .predictions[0] is for one image; a batch TF Serving refuses (an image
 * that is not one fails the whole request) is split, so that only that image fails. */
static void t_tfserving_batch(void)
{
    run_example_as("tfserving-batch", "tfserving");
}

#define EXAMPLE_TEST(fn, name) \
    static void fn(void) { run_example(name); }
EXAMPLE_TEST(t_kserve, "kserve-v2")
EXAMPLE_TEST(t_torchserve, "torchserve")
EXAMPLE_TEST(t_tfserving, "tfserving")
EXAMPLE_TEST(t_openai, "openai-vision")
EXAMPLE_TEST(t_hf, "hf-endpoint")
EXAMPLE_TEST(t_multipart, "multipart")
EXAMPLE_TEST(t_google, "google-vision")

static int cleanup(void)
{
    pyserver_stop(&srv);
    e2e_tree_free(&tree);
    return 0;
}

int register_dialects_independent(void)
{
    CU_pSuite s = CU_add_suite("dialects independent", NULL, cleanup);
    if (!s || !CU_add_test(s, "kserve-v2.json against the FastAPI server, every strategy", t_kserve) ||
        !CU_add_test(s, "torchserve.json against the FastAPI server, every strategy", t_torchserve) ||
        !CU_add_test(s, "tfserving.json against the FastAPI server, every strategy", t_tfserving) ||
        !CU_add_test(s, "tfserving-batch.json against the FastAPI server, every strategy", t_tfserving_batch) ||
        !CU_add_test(s, "openai-vision.json against the FastAPI server, every strategy", t_openai) ||
        !CU_add_test(s, "hf-endpoint.json against the FastAPI server, every strategy", t_hf) ||
        !CU_add_test(s, "multipart.json against FastAPI's UploadFile, every strategy", t_multipart) ||
        !CU_add_test(s, "google-vision.json against the FastAPI server, every strategy", t_google))
        return -1;
    return 0;
}
