/* Suites "sources s3" and "sources list": runs of annotate whose images come from an
 * S3-compatible store and from --files-from lists, against servers nobody here wrote, started
 * here on 127.0.0.1 and stopped by PID:
 *
 *   - s3rver behind tests/servers/s3sig.py, which checks every request's SigV4 signature with
 *     botocore (tests/helpers/s3srv.h): a bucket "photos" whose prefix "set/" holds generated PNGs
 *     under odd keys (spaces, commas, '+', '%', quotes, non-ASCII, upper-case extensions), an
 *     empty object, a non-image and a folder marker; listed in pages of 3 and 1;
 *   - tests/servers/imagehost.py (Python's http.server) for http:// image URLs;
 *   - the mock model server, whose answers are predicted from each image's bytes (e2e.h).
 *
 * Every row is checked: each image exactly once, its path as the source spells it
 * (s3://photos/KEY, a list's line as written), its cells as predicted, byte for byte, in CSV and
 * in JSON Lines, under every strategy. The faults: a wrong secret, key or bucket (exit 2 before any
 * model request, naming S3's Code), an object deleted after the listing (a failed row), 503
 * SlowDown storms (retried), kill -9 during the listing and during the run then --resume, shards
 * then merge, --retry-failed keeping the row of an object deleted since; a list of local paths,
 * s3:// and http:// URLs mixed, with -0, on standard input, and whether --header reaches an image
 * host (only with --image-auth). */
#include <CUnit/CUnit.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "check.h"
#include "common/json.h"
#include "e2e.h"
#include "proc.h"
#include "pyserver.h"
#include "s3srv.h"
#include "select.h"
#include "tree.h"
#include "util.h"

#define N_IMAGES 24
#define BUCKET "photos"

static struct s3srv store;
static struct mock_proc mock, slow_mock, host;
static char base[512], images[600], hostdir[600];
static int up;

/* One image of the bucket: its key, and the local file with the same bytes. */
struct image {
    char key[160];
    char file[700];
};
static struct image imgs[N_IMAGES];

/* An expected row: its path, and the bytes of its image (NULL: a row that must be failed, with
 * fail_with in its error). */
struct want {
    char *path;
    const char *file;
    const char *fail_with;
};

static const char *const odd_names[] = {"a b %d.png", "c,d %d.png", "e+f %d.png", "g%%h %d.png", "q\"u'o %d.png",
                                        "日本/ü %d.png", "café/%d.PNG", "dir/x (%d).png"};

/* ---- the servers ---- */

static void stop_all(void)
{
    s3srv_stop(&store);
    mock_stop(&mock);
    mock_stop(&slow_mock);
    mock_stop(&host);
    s3srv_env_clear();
    if (base[0]) {
        tree_rm(base);
        base[0] = 0;
    }
}

/* The images, the bucket (every image under its odd key, an empty object, a text file, a folder
 * marker, an image outside the prefix), the image host's folder, and the servers. */
static int suite_init(void)
{
    if (make_tmpdir(base, sizeof base, "sources"))
        return -1;
    snprintf(images, sizeof images, "%s/img", base);
    snprintf(hostdir, sizeof hostdir, "%s/host", base);
    static const char *const buckets[] = {BUCKET, NULL};
    static const char *const slow[] = {"--latency-ms", "40", NULL};
    if (tree_make_generated(images, N_IMAGES, 300, 7) || mkdir(hostdir, 0755) || mock_start(&mock, NULL) ||
        mock_start(&slow_mock, slow) || s3srv_start(&store, buckets))
        return 0; /* each test then says what did not start */
    for (int i = 0; i < N_IMAGES; i++) {
        char name[128];
        snprintf(name, sizeof name, odd_names[i % 8], i);
        snprintf(imgs[i].key, sizeof imgs[i].key, "set/%s", name);
        tree_generated_path(images, (size_t)i, imgs[i].file, sizeof imgs[i].file);
        size_t len;
        char *bytes = slurp(imgs[i].file, &len);
        int bad = !bytes || s3srv_put(&store, BUCKET, imgs[i].key, bytes, len);
        char copy[700];
        snprintf(copy, sizeof copy, "%s/h%02d.png", hostdir, i);
        bad = bad || write_file(copy, bytes, len);
        free(bytes);
        if (bad)
            return 0;
    }
    if (s3srv_put(&store, BUCKET, "set/empty.png", "", 0) || s3srv_put(&store, BUCKET, "set/notes.txt", "x", 1) ||
        s3srv_put(&store, BUCKET, "set/folder/", "", 0) || s3srv_put(&store, BUCKET, "other/out.png", "x", 1))
        return 0;
    const char *hargv[] = {pyserver_python(), server_script("imagehost.py"), hostdir, NULL};
    if (listener_start(&host, hargv, 0))
        return 0;
    s3srv_env(&store, NULL);
    up = 1;
    return 0;
}

static int suite_clean(void)
{
    stop_all();
    up = 0;
    return 0;
}

#define NEED_SERVERS()                                                                                         \
    do {                                                                                                       \
        if (!up) {                                                                                             \
            CU_FAIL("the servers did not start (s3rver: make s3rver; python3-botocore; the mock)");             \
            return;                                                                                            \
        }                                                                                                      \
    } while (0)

/* ---- running annotate ---- */

/* annotate ARGS... --quiet (and --force unless --resume is among them), output into out. */
static int run_args(char *out, size_t outlen, const char *const *args)
{
    const char *argv[64];
    int n = 0, resume = 0;
    argv[n++] = e2e_annotate_bin();
    for (int i = 0; args[i] && n < 60; i++) {
        resume |= !strcmp(args[i], "--resume");
        argv[n++] = args[i];
    }
    argv[n++] = "--quiet";
    if (!resume)
        argv[n++] = "--force";
    argv[n] = NULL;
    return run_cmd(argv, tmo(60), out, outlen);
}
#define RUN(out, ...) run_args(out, sizeof out, (const char *const[]){__VA_ARGS__, NULL})

/* ---- reading rows back, CSV or JSON Lines ---- */

struct row {
    char *path;
    size_t path_len;
    int ok;
    char *cell[4]; /* model_01, model_02, model_03, model_05 as written ("" empty; JSONL: null) */
    char *error;
};

struct rows {
    struct row *r;
    size_t n;
    int jsonl;
    int bad; /* a line or record that is not a row */
};

static void rows_free(struct rows *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].path);
        free(rs->r[i].error);
        for (int k = 0; k < 4; k++)
            free(rs->r[i].cell[k]);
    }
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

struct jline {
    struct row *row;
    int k;
};

static int take_member(void *arg, const char *key, size_t keylen, const char *v, size_t vlen)
{
    static const char *const keys[] = {"path", "status", "model_01", "model_02", "model_03", "model_05", "error",
                                       "attempts", "elapsed_ms"};
    struct jline *j = arg;
    int k = j->k++;
    if (k >= 9 || keylen != strlen(keys[k]) || memcmp(key, keys[k], keylen))
        return -1;
    if (k == 0) {
        j->row->path = malloc(vlen + 1);
        long pl = json_string_bytes(v, vlen, j->row->path);
        if (pl < 0)
            return -1;
        j->row->path_len = (size_t)pl;
        j->row->path[pl] = 0;
    } else if (k == 1) {
        j->row->ok = vlen == 4 && !memcmp(v, "\"ok\"", 4);
    } else if (k >= 2 && k <= 5) {
        j->row->cell[k - 2] = strndup(v, vlen);
    } else if (k == 6) {
        j->row->error = malloc(vlen + 1);
        long el = v[0] == '"' ? json_string_bytes(v, vlen, j->row->error) : 0;
        j->row->error[el > 0 ? el : 0] = 0;
    }
    return 0;
}

/* Reads a results file of either format (by its name). 0, or -1 when it cannot be read. */
static int rows_read(const char *path, struct rows *rs)
{
    memset(rs, 0, sizeof *rs);
    rs->jsonl = strstr(path, ".jsonl") != NULL;
    if (!rs->jsonl) {
        struct e2e_csv c;
        if (e2e_csv_read(path, &c))
            return -1;
        rs->bad = !e2e_csv_well_formed(&c) || !c.complete;
        rs->r = calloc(c.n + 1, sizeof *rs->r);
        for (size_t i = 0; i < c.n; i++, rs->n++) {
            struct row *r = &rs->r[i];
            r->path = strdup(c.rows[i].f[COL_PATH].s);
            r->path_len = c.rows[i].f[COL_PATH].len;
            r->ok = !strcmp(c.rows[i].f[COL_STATUS].s, "ok");
            for (int k = 0; k < 4; k++)
                r->cell[k] = strdup(c.rows[i].f[COL_M01 + k].s);
            r->error = strdup(c.rows[i].f[COL_ERROR].s);
        }
        e2e_csv_free(&c);
        return 0;
    }
    size_t len;
    char *text = slurp(path, &len);
    if (!text)
        return -1;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    rs->r = calloc(lines + 1, sizeof *rs->r);
    rs->bad = len && text[len - 1] != '\n';
    for (char *p = text, *nl; (nl = memchr(p, '\n', len - (size_t)(p - text))); p = nl + 1) {
        struct jline j = {&rs->r[rs->n++], 0};
        char err[100];
        if (json_check(p, (size_t)(nl - p), err, sizeof err) || json_members(p, (size_t)(nl - p), take_member, &j) != 9)
            rs->bad++;
    }
    free(text);
    return 0;
}

/* The number of problems of the rows against what is wanted: each wanted path exactly once, ok
 * rows with the cells the mock's models predict from the image's bytes, failed ones saying
 * fail_with; no other row. */
static long check_rows(const struct rows *rs, const struct want *w, size_t n)
{
    long bad = rs->bad ? 1 : 0;
    if (rs->bad)
        fprintf(stderr, "  the results file has %d line(s) that are not rows\n", rs->bad);
    if (rs->n != n) {
        fprintf(stderr, "  %zu rows, want %zu\n", rs->n, n);
        bad++;
    }
    for (size_t k = 0; k < n; k++) {
        size_t pl = strlen(w[k].path), count = 0;
        const struct row *r = NULL;
        for (size_t i = 0; i < rs->n; i++)
            if (rs->r[i].path_len == pl && !memcmp(rs->r[i].path, w[k].path, pl))
                count++, r = &rs->r[i];
        if (count != 1) {
            fprintf(stderr, "  %s: %zu rows\n", printable(w[k].path, pl), count);
            bad++;
            continue;
        }
        if (w[k].fail_with) {
            if (r->ok || !strstr(r->error, w[k].fail_with)) {
                fprintf(stderr, "  %s: want failed with \"%s\", got %s: %s\n", printable(w[k].path, pl),
                        w[k].fail_with, r->ok ? "ok" : "failed", r->error);
                bad++;
            }
            continue;
        }
        size_t len;
        unsigned char *bytes = (unsigned char *)slurp(w[k].file, &len);
        struct e2e_pred p;
        if (!bytes || e2e_predict(bytes, len, &p)) {
            bad++;
            free(bytes);
            continue;
        }
        for (int c = 0; c < 4; c++) {
            const char *want = p.cell[c] ? p.cell[c] : "";
            int same = !strcmp(r->cell[c], want) || (rs->jsonl && !*want && !strcmp(r->cell[c], "null"));
            if (!r->ok || !same) {
                fprintf(stderr, "  %s: %s, column %d is %s, want %s (%s)\n", printable(w[k].path, pl),
                        r->ok ? "ok" : "failed", c, r->cell[c], want, r->error);
                bad++;
                break;
            }
        }
        e2e_pred_free(&p);
        free(bytes);
    }
    return bad;
}

/* The rows a run over s3://photos/set/ must write: every image ok, the empty object failed. */
static struct want *bucket_wants(size_t *n, const char *deleted_key, const char *deleted_why)
{
    struct want *w = calloc(N_IMAGES + 1, sizeof *w);
    for (int i = 0; i < N_IMAGES; i++) {
        w[i].path = malloc(strlen(imgs[i].key) + 32);
        sprintf(w[i].path, "s3://" BUCKET "/%s", imgs[i].key);
        w[i].file = imgs[i].file;
        if (deleted_key && !strcmp(deleted_key, imgs[i].key))
            w[i].fail_with = deleted_why;
    }
    w[N_IMAGES].path = strdup("s3://" BUCKET "/set/empty.png");
    w[N_IMAGES].fail_with = "empty object (0 bytes)";
    *n = N_IMAGES + 1;
    return w;
}

static void wants_free(struct want *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(w[i].path);
    free(w);
}

/* Reads the results file and checks it; the number of problems. */
static long check_file(const char *path, const struct want *w, size_t n, const char *what)
{
    struct rows rs;
    if (rows_read(path, &rs)) {
        fprintf(stderr, "%s: cannot read %s\n", what, path);
        return 1;
    }
    long bad = check_rows(&rs, w, n);
    if (bad)
        fprintf(stderr, "%s: %ld problem(s) in %s\n", what, bad, path);
    rows_free(&rs);
    return bad;
}

static long check_bucket_run(const char *path, const char *what)
{
    size_t n;
    struct want *w = bucket_wants(&n, NULL, NULL);
    long bad = check_file(path, w, n, what);
    wants_free(w, n);
    return bad;
}

/* A list's entries and the rows they must give: local files, s3:// objects, http:// URLs. */
struct list {
    char text[16384];
    size_t len;
    struct want w[64];
    size_t n;
};

static void add_entry(struct list *l, int nul, const char *entry, const char *file, const char *fail_with, int want_row)
{
    size_t el = strlen(entry);
    memcpy(l->text + l->len, entry, el);
    l->len += el;
    l->text[l->len++] = nul ? '\0' : '\n';
    if (want_row)
        l->w[l->n++] = (struct want){strdup(entry), file, fail_with};
}

/* ---- a bucket ---- */

/* Each of the strategies, CSV and JSON Lines, pages of 3: the same rows, every signature
 * accepted. */
static void bucket_strategies(const char *const *strategies, size_t n_strategies)
{
    long rejected = s3srv_stat(&store, "requests") - s3srv_stat(&store, "verified");
    for (size_t s = 0; s < n_strategies; s++)
        for (int jsonl = 0; jsonl < 2; jsonl++) {
            char out[4096], res[700], what[200];
            snprintf(res, sizeof res, "%s/r.%s", base, jsonl ? "jsonl" : "csv");
            snprintf(what, sizeof what, "--strategy %s, %s", strategies[s], jsonl ? "JSON Lines" : "CSV");
            int rc = RUN(out, "s3://" BUCKET "/set/", "--out", res, "--server", mock.base_url, "--s3-max-keys", "3",
                         "--strategy", strategies[s], "--workers", "3");
            CHECKF(rc == 1, "%s: exit %d (want 1: the empty object's row is failed): %s", what, rc, out);
            CHECKF(check_bucket_run(res, what) == 0, "%s: rows", what);
        }
    CHECKF(s3srv_stat(&store, "requests") - s3srv_stat(&store, "verified") == rejected,
           "the signature checker rejected %ld request(s)",
           s3srv_stat(&store, "requests") - s3srv_stat(&store, "verified") - rejected);
}

static void test_bucket_every_strategy(void)
{
    NEED_SERVERS();
    static const char *const strategies[] = {"serial", "threads", "processes", "curl-multi",
                                             "load=threads,query=curl-multi", "load=curl-multi,query=threads"};
    bucket_strategies(strategies, sizeof strategies / sizeof strategies[0]);
}

/* The threaded paths (make tsan runs the suites named concurrent). */
static void test_bucket_threaded(void)
{
    NEED_SERVERS();
    static const char *const strategies[] = {"curl-multi", "load=threads,query=curl-multi", "threads"};
    bucket_strategies(strategies, sizeof strategies / sizeof strategies[0]);
}

/* One image at a time (make valgrind runs the suites named serial). */
static void test_bucket_serial(void)
{
    NEED_SERVERS();
    static const char *const strategies[] = {"serial"};
    bucket_strategies(strategies, 1);
}

/* What S3 refuses at set-up exits 2 before any model request, naming S3's Code; no row. */
static void test_bucket_setup_errors(void)
{
    NEED_SERVERS();
    char res[700];
    snprintf(res, sizeof res, "%s/setup.csv", base);
    static const struct {
        const char *what, *url, *secret, *key, *code;
    } cases[] = {
        {"a wrong secret", "s3://" BUCKET "/set/", "wrong/secret/EXAMPLEKEYwrongwrongwrongw", NULL, "SignatureDoesNotMatch"},
        {"a wrong access key", "s3://" BUCKET "/set/", NULL, "AKIAWRONGWRONGWRONG0", "InvalidAccessKeyId"},
        {"a missing bucket", "s3://no-such-bucket/set/", NULL, NULL, "NoSuchBucket"},
        {"no credentials", "s3://" BUCKET "/set/", NULL, "", "AWS_ACCESS_KEY_ID"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unlink(res);
        e2e_stats_reset(&mock);
        s3srv_env(&store, cases[i].secret);
        if (cases[i].key && *cases[i].key)
            setenv("AWS_ACCESS_KEY_ID", cases[i].key, 1);
        else if (cases[i].key)
            unsetenv("AWS_ACCESS_KEY_ID"), unsetenv("AWS_SECRET_ACCESS_KEY");
        char out[4096];
        int rc = RUN(out, cases[i].url, "--out", res, "--server", mock.base_url);
        s3srv_env(&store, NULL);
        cJSON *st = mock_stats(&mock);
        long sent = mock_stat(st, "requests.model_01") + mock_stat(st, "requests.model_02");
        cJSON_Delete(st);
        CHECKF(rc == 2 && strstr(out, cases[i].code) && sent == 0, "%s: exit %d, %ld model requests: %s",
               cases[i].what, rc, sent, out);
        CHECKF(e2e_count_lines(res) == 0, "%s: the results file holds %ld lines", cases[i].what, e2e_count_lines(res));
        CHECKF(!strstr(out, S3SRV_SECRET) && !strstr(out, "wrong/secret"), "%s: a secret in the message: %s",
               cases[i].what, out);
    }
}

/* The last key in S3's order is deleted once the first row is written (the listing, one page of
 * them all, was read at set-up): its fetch finds NoSuchKey, a failed row; the others are ok. */
static void test_bucket_deleted_after_listing(void)
{
    NEED_SERVERS();
    char res[700], log[700];
    snprintf(res, sizeof res, "%s/deleted.csv", base);
    snprintf(log, sizeof log, "%s/deleted.log", base);
    const char *last = imgs[0].key;
    for (int i = 1; i < N_IMAGES; i++)
        if (strcmp(imgs[i].key, last) > 0)
            last = imgs[i].key;
    const char *argv[] = {e2e_annotate_bin(), "s3://" BUCKET "/set/", "--out", res, "--force", "--quiet", "--server",
                          slow_mock.base_url, "--strategy", "serial", NULL};
    pid_t pid = e2e_spawn(argv, log);
    int first = e2e_wait_lines(res, 2, pid, tmo(30));
    CU_ASSERT(first && s3srv_delete(&store, BUCKET, last) == 0);
    int rc = e2e_wait(pid, tmo(60));
    CHECKF(rc == 1, "exit %d", rc);
    size_t n; /* (s3rver answers some of those 404s without S3's NoSuchKey document) */
    struct want *w = bucket_wants(&n, last, "404");
    CHECKF(check_file(res, w, n, "deleted after the listing") == 0, "rows");
    struct rows rs;
    if (rows_read(res, &rs) == 0) {
        for (size_t i = 0; i < rs.n; i++)
            if (strstr(rs.r[i].path, last))
                CHECKF(strstr(rs.r[i].error, "deleted since it was listed") != NULL, "%s", rs.r[i].error);
        rows_free(&rs);
    }
    wants_free(w, n);
    /* put it back for the other tests */
    for (int i = 0; i < N_IMAGES; i++)
        if (imgs[i].key == last) {
            size_t len;
            char *bytes = slurp(imgs[i].file, &len);
            CU_ASSERT(bytes && s3srv_put(&store, BUCKET, last, bytes, len) == 0);
            free(bytes);
        }
}

/* 503 SlowDown on the listing and the fetches: retried, every row ok. */
static void test_bucket_slowdown_storm(void)
{
    NEED_SERVERS();
    char res[700], out[4096];
    snprintf(res, sizeof res, "%s/slow.jsonl", base);
    long before = s3srv_stat(&store, "rejected.SlowDown");
    CU_ASSERT_FATAL(s3srv_slowdown(&store, 12) == 0);
    int rc = RUN(out, "s3://" BUCKET "/set/", "--out", res, "--server", mock.base_url, "--backoff-ms", "5",
                 "--backoff-max-ms", "50", "--s3-max-keys", "5");
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    CU_ASSERT(check_bucket_run(res, "SlowDown storm") == 0);
    long after = s3srv_stat(&store, "rejected.SlowDown");
    CHECKF(after - (before < 0 ? 0 : before) == 12, "%ld SlowDown answers, want 12", after - before);
}

/* An outage of the store (40 SlowDowns in a row, more than any image's --retries 1 allows) is
 * waited out: every row ok. With --outage-timeout 0 the same storm fails the images it hits, with
 * S3's Code: the wait is what kept them. */
static void test_bucket_outage(void)
{
    NEED_SERVERS();
    char res[700], out[4096], listf[700];
    snprintf(res, sizeof res, "%s/outage.csv", base);
    CU_ASSERT_FATAL(s3srv_slowdown(&store, 40) == 0);
    int rc = RUN(out, "s3://" BUCKET "/set/", "--out", res, "--server", mock.base_url, "--retries", "1", "--backoff-ms",
                 "5", "--backoff-max-ms", "20");
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    CU_ASSERT(check_bucket_run(res, "an outage waited out") == 0);
    snprintf(listf, sizeof listf, "%s/outage-list.txt", base);
    static struct list l;
    memset(&l, 0, sizeof l);
    char e[1024];
    for (int i = 0; i < 8; i++) {
        snprintf(e, sizeof e, "s3://" BUCKET "/%.200s", imgs[i].key);
        add_entry(&l, 0, e, imgs[i].file, NULL, 1);
    }
    CU_ASSERT_FATAL(write_file(listf, l.text, l.len) == 0);
    CU_ASSERT_FATAL(s3srv_slowdown(&store, 40) == 0);
    rc = RUN(out, "--files-from", listf, "--out", res, "--server", mock.base_url, "--retries", "1", "--backoff-ms", "5",
             "--outage-timeout", "0", "--strategy", "serial");
    s3srv_slowdown(&store, 0);
    struct rows rs;
    int failed = 0;
    if (rows_read(res, &rs) == 0) {
        for (size_t i = 0; i < rs.n; i++)
            failed += !rs.r[i].ok && strstr(rs.r[i].error, "SlowDown") && strstr(rs.r[i].error, "after 2 attempts");
        rows_free(&rs);
    }
    CHECKF(rc == 1 && failed == 8, "--outage-timeout 0: exit %d, %d rows failed with SlowDown: %s", rc, failed, out);
    for (size_t i = 0; i < l.n; i++)
        free(l.w[i].path);
}

/* kill -9 while the listing is still going (pages of 1, queues of 1: the listing keeps only a few
 * keys ahead of the images in flight), then --resume: every image exactly once. */
static void test_kill_during_listing(void)
{
    NEED_SERVERS();
    char res[700], log[700], out[4096];
    snprintf(res, sizeof res, "%s/killlist.csv", base);
    snprintf(log, sizeof log, "%s/killlist.log", base);
    const char *argv[] = {e2e_annotate_bin(), "s3://" BUCKET "/set/", "--out", res, "--force", "--quiet", "--server",
                          slow_mock.base_url, "--s3-max-keys", "1", "--queue-size", "1", "--concurrency", "2", NULL};
    pid_t pid = e2e_spawn(argv, log);
    int got = e2e_wait_lines(res, 4, pid, tmo(30));
    kill(-pid, SIGKILL);
    e2e_wait(pid, tmo(10));
    long lines = e2e_count_lines(res);
    CHECKF(got && lines < N_IMAGES / 2, "killed with %ld lines: not during the listing", lines);
    int rc = RUN(out, "s3://" BUCKET "/set/", "--out", res, "--server", mock.base_url, "--resume", "--s3-max-keys", "1");
    CHECKF(rc == 1, "resume: exit %d: %s", rc, out);
    CU_ASSERT(check_bucket_run(res, "kill -9 during the listing, then --resume") == 0);
}

/* kill -9 in the middle of the run (JSON Lines), then --resume. */
static void test_kill_during_run(void)
{
    NEED_SERVERS();
    char res[700], log[700], out[4096];
    snprintf(res, sizeof res, "%s/killrun.jsonl", base);
    snprintf(log, sizeof log, "%s/killrun.log", base);
    const char *argv[] = {e2e_annotate_bin(), "s3://" BUCKET "/set/", "--out", res, "--force", "--quiet", "--server",
                          slow_mock.base_url, "--concurrency", "4", NULL};
    pid_t pid = e2e_spawn(argv, log);
    int got = e2e_wait_lines(res, 5, pid, tmo(30));
    kill(-pid, SIGKILL);
    e2e_wait(pid, tmo(10));
    CHECKF(got && e2e_count_lines(res) < N_IMAGES, "killed with %ld lines", e2e_count_lines(res));
    int rc = RUN(out, "s3://" BUCKET "/set/", "--out", res, "--server", mock.base_url, "--resume");
    CHECKF(rc == 1, "resume: exit %d: %s", rc, out);
    CU_ASSERT(check_bucket_run(res, "kill -9 during the run, then --resume") == 0);
}

/* --shard K/2 splits the bucket by key (shard_hash of the key), JSON Lines and CSV, and merge
 * puts the halves together. */
static void test_shards_and_merge(void)
{
    NEED_SERVERS();
    for (int jsonl = 0; jsonl < 2; jsonl++) {
        const char *ext = jsonl ? "jsonl" : "csv";
        char part[2][700], merged[700], out[4096];
        for (int k = 0; k < 2; k++) {
            char shard[16];
            snprintf(shard, sizeof shard, "%d/2", k);
            snprintf(part[k], sizeof part[k], "%s/part-%d.%s", base, k, ext);
            int rc = RUN(out, "s3://" BUCKET "/set/", "--out", part[k], "--server", mock.base_url, "--shard", shard);
            CHECKF(rc == 0 || rc == 1, "shard %s: exit %d: %s", shard, rc, out);
            struct rows rs;
            CU_ASSERT_FATAL(rows_read(part[k], &rs) == 0);
            for (size_t i = 0; i < rs.n; i++) {
                const char *key = rs.r[i].path + strlen("s3://" BUCKET "/");
                CHECKF(shard_hash(key, strlen(key)) % 2 == (uint64_t)k, "%s is in shard %d", rs.r[i].path, k);
            }
            rows_free(&rs);
        }
        snprintf(merged, sizeof merged, "%s/merged.%s", base, ext);
        const char *margv[] = {e2e_annotate_bin(), "merge", merged, part[0], part[1], NULL};
        int rc = run_cmd(margv, tmo(30), out, sizeof out);
        CHECKF(rc == 0, "merge: exit %d: %s", rc, out);
        CHECKF(check_bucket_run(merged, jsonl ? "merged JSON Lines shards" : "merged CSV shards") == 0, "merged");
    }
}

/* --retry-failed: rows failed for a --max-image-bytes below the images' size are redone, but the
 * row of an object deleted since stays (a HEAD finds it gone: the listing would not give it). */
static void test_bucket_retry_failed(void)
{
    NEED_SERVERS();
    char res[700], out[4096];
    snprintf(res, sizeof res, "%s/retry.jsonl", base);
    int rc = RUN(out, "s3://" BUCKET "/set/", "--out", res, "--server", mock.base_url, "--max-image-bytes", "200");
    CHECKF(rc == 1, "first run: exit %d: %s", rc, out);
    struct rows rs;
    CU_ASSERT_FATAL(rows_read(res, &rs) == 0);
    int failed = 0;
    for (size_t i = 0; i < rs.n; i++)
        failed += !rs.r[i].ok && strstr(rs.r[i].error, "more than --max-image-bytes 200");
    CHECKF(failed == N_IMAGES, "%d rows failed for their size, want %d", failed, N_IMAGES);
    rows_free(&rs);
    const char *gone = imgs[5].key;
    CU_ASSERT_FATAL(s3srv_delete(&store, BUCKET, gone) == 0);
    const char *argv[] = {e2e_annotate_bin(), "s3://" BUCKET "/set/", "--out", res, "--server", mock.base_url,
                          "--resume", "--retry-failed", NULL};
    rc = run_cmd(argv, tmo(60), out, sizeof out);
    CHECKF(rc == 1 && strstr(out, "kept 1 failed row"), "retry: exit %d: %s", rc, out);
    size_t n;
    struct want *w = bucket_wants(&n, gone, "more than --max-image-bytes 200");
    CU_ASSERT(check_file(res, w, n, "--retry-failed with an object deleted since") == 0);
    wants_free(w, n);
    size_t len;
    char *bytes = slurp(imgs[5].file, &len);
    CU_ASSERT(bytes && s3srv_put(&store, BUCKET, gone, bytes, len) == 0);
    free(bytes);
}

/* A pipeline that prepares images (a stage's "image": resized, re-encoded): the bucket's rows
 * hold the same cells as the folder's, image by image, under the blocking loader and the
 * curl-multi one (the mock answers from the bytes it is sent, so equal cells mean equal prepared
 * images). */
static void test_bucket_prepared(void)
{
    NEED_SERVERS();
    char pipe[700], fres[700], bres[700], out[4096];
    snprintf(pipe, sizeof pipe, "%s/prep.json", base);
    snprintf(fres, sizeof fres, "%s/prep-folder.csv", base);
    snprintf(bres, sizeof bres, "%s/prep-bucket.jsonl", base);
    static const char text[] = "{\"stages\": [{\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": "
                               "{\"model_03\": null}, \"image\": {\"size\": [16, 16], \"fit\": \"cover\", "
                               "\"format\": \"png\"}}]}";
    CU_ASSERT_FATAL(write_file(pipe, text, strlen(text)) == 0);
    int rc = RUN(out, images, "--out", fres, "--server", mock.base_url, "--config", pipe);
    CHECKF(rc == 0, "the folder: exit %d: %s", rc, out);
    struct e2e_csv fc;
    CU_ASSERT_FATAL(e2e_csv_read(fres, &fc) == 0);
    for (int loader = 0; loader < 2; loader++) {
        rc = RUN(out, "s3://" BUCKET "/set/", "--out", bres, "--server", mock.base_url, "--config", pipe, "--strategy",
                 loader ? "load=curl-multi,query=curl-multi" : "load=threads,query=curl-multi");
        CHECKF(rc == 1, "the bucket: exit %d: %s", rc, out); /* (the empty object) */
        size_t len;
        char *jl = slurp(bres, &len);
        int same = 0;
        for (int i = 0; jl && i < N_IMAGES; i++) {
            const char *cell = NULL;
            for (size_t r = 0; r < fc.n; r++)
                if (!strcmp(fc.rows[r].f[0].s, imgs[i].file))
                    cell = fc.rows[r].f[2].s;
            char want[600];
            snprintf(want, sizeof want, "\"model_01\":%s,", cell ? cell : "?");
            char *enc = malloc(6 * strlen(imgs[i].key) + 2);
            size_t el = json_put_bytes(imgs[i].key, strlen(imgs[i].key), enc);
            enc[el - 1] = 0; /* without its closing quote: the path continues */
            for (char *line = jl; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
                if (!strncmp(line, "{\"path\":\"s3://" BUCKET "/", 21) && !strncmp(line + 21, enc + 1, el - 2) &&
                    line[21 + el - 2] == '"' && strstr(line, want) && strstr(line, want) < strchr(line, '\n'))
                    same++;
            free(enc);
        }
        CHECKF(same == N_IMAGES, "loader %d: %d of %d images have the folder's cell", loader, same, N_IMAGES);
        free(jl);
    }
    e2e_csv_free(&fc);
}

/* The cache's hits and misses in a --stats-json file (-1 when missing). */
static void cache_counts(const char *sj, double *hits, double *misses)
{
    cJSON *j = e2e_read_json(sj);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "cache");
    *hits = c ? e2e_json_num(c, "hits") : -1;
    *misses = c ? e2e_json_num(c, "misses") : -1;
    cJSON_Delete(j);
}

/* --cache keys an object fetched from S3 by its bytes, as it keys a file: the folder's run fills
 * the store, and the bucket's run (the same images under other names) is answered from it whole,
 * under the blocking loader and the curl-multi one: no model request, every cell the folder's. */
static void test_bucket_cache(void)
{
    NEED_SERVERS();
    char cache[700], fres[700], bres[700], sj[700], out[4096];
    snprintf(cache, sizeof cache, "%s/answers.db", base);
    snprintf(fres, sizeof fres, "%s/cache-folder.csv", base);
    snprintf(bres, sizeof bres, "%s/cache-bucket.csv", base);
    snprintf(sj, sizeof sj, "%s/cache-stats.json", base);
    unlink(cache);
    int rc = RUN(out, images, "--out", fres, "--server", mock.base_url, "--cache", cache);
    CHECKF(rc == 0, "the folder: exit %d: %s", rc, out);
    struct rows folder;
    CU_ASSERT_FATAL(rows_read(fres, &folder) == 0 && folder.n == N_IMAGES);
    for (int loader = 0; loader < 2; loader++) {
        CU_ASSERT_EQUAL_FATAL(e2e_stats_reset(&mock), 0);
        rc = RUN(out, "s3://" BUCKET "/set/", "--out", bres, "--server", mock.base_url, "--cache", cache,
                 "--stats-json", sj, "--strategy", loader ? "load=curl-multi,query=curl-multi" : "threads");
        CHECKF(rc == 1, "the bucket: exit %d: %s", rc, out); /* (the empty object) */
        cJSON *st = mock_stats(&mock);
        long sent = mock_stat(st, "total");
        cJSON_Delete(st);
        CHECKF(sent == 0, "loader %d: %ld model requests went for images the store holds", loader, sent);
        double hits, misses;
        cache_counts(sj, &hits, &misses);
        CHECKF(hits > 0 && misses == 0, "loader %d: %.0f hits, %.0f misses", loader, hits, misses);
        struct rows bucket;
        CU_ASSERT_FATAL(rows_read(bres, &bucket) == 0);
        int same = 0;
        size_t pre = strlen("s3://" BUCKET "/");
        for (int i = 0; i < N_IMAGES; i++) {
            const struct row *f = NULL, *b = NULL;
            for (size_t r = 0; r < folder.n; r++)
                if (!strcmp(folder.r[r].path, imgs[i].file))
                    f = &folder.r[r];
            for (size_t r = 0; r < bucket.n; r++)
                if (bucket.r[r].path_len > pre && !strcmp(bucket.r[r].path + pre, imgs[i].key))
                    b = &bucket.r[r];
            int eq = f && b && f->ok && b->ok;
            for (int k = 0; eq && k < 4; k++)
                eq = !strcmp(f->cell[k], b->cell[k]);
            same += eq;
        }
        CHECKF(same == N_IMAGES, "loader %d: %d of %d objects have the folder's cells", loader, same, N_IMAGES);
        rows_free(&bucket);
    }
    rows_free(&folder);
}

/* --resume refuses a file whose rows are not under s3://BUCKET/PREFIX (another prefix, another
 * spelling), as it refuses a folder spelled otherwise; the file stays as it was. */
static void test_bucket_resume_other_prefix(void)
{
    NEED_SERVERS();
    char res[700], out[4096];
    snprintf(res, sizeof res, "%s/prefix.csv", base);
    int rc = RUN(out, "s3://" BUCKET "/set/", "--out", res, "--server", mock.base_url, "--max-images", "3");
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    long lines = e2e_count_lines(res);
    rc = RUN(out, "s3://" BUCKET "/other/", "--out", res, "--server", mock.base_url, "--resume");
    CHECKF(rc == 2 && strstr(out, "not under \"s3://" BUCKET "/other/\""), "exit %d: %s", rc, out);
    CU_ASSERT_EQUAL(e2e_count_lines(res), lines);
}

/* ---- a list ---- */

/* Every kind of entry, twice some of them, with blank lines (not under -0). */
static void make_list(struct list *l, int nul)
{
    memset(l, 0, sizeof *l);
    char e[1024];
    for (int i = 0; i < 4; i++)
        add_entry(l, nul, imgs[i].file, imgs[i].file, NULL, 1);
    for (int i = 4; i < 8; i++) {
        snprintf(e, sizeof e, "s3://" BUCKET "/%s", imgs[i].key);
        add_entry(l, nul, e, imgs[i].file, NULL, 1);
    }
    for (int i = 8; i < 12; i++) {
        snprintf(e, sizeof e, "%s/h%02d.png", host.base_url, i);
        add_entry(l, nul, e, imgs[i].file, NULL, 1);
    }
    snprintf(e, sizeof e, "%s/h%02d.png", host.base_url, 8);
    add_entry(l, nul, e, NULL, NULL, 0); /* twice: one row */
    add_entry(l, nul, imgs[0].file, NULL, NULL, 0);
    snprintf(e, sizeof e, "%s/missing.png", host.base_url);
    add_entry(l, nul, e, NULL, "HTTP 404", 1);
    add_entry(l, nul, "s3://" BUCKET "/set/missing.png", NULL, "NoSuchKey", 1);
    add_entry(l, nul, "gs://bucket/x.png", NULL, "only s3:// and http(s)://", 1);
    add_entry(l, nul, "s3://" BUCKET "/", NULL, "not an S3 object's URL", 1);
    snprintf(e, sizeof e, "%s/no-such-file.png", base);
    add_entry(l, nul, e, NULL, "cannot open", 1);
    if (!nul)
        l->text[l->len++] = '\n'; /* a blank line */
}

static void test_list_mixed(void)
{
    NEED_SERVERS();
    char listf[700], res[700], out[4096];
    snprintf(listf, sizeof listf, "%s/list.txt", base);
    snprintf(res, sizeof res, "%s/list.csv", base);
    struct list l;
    make_list(&l, 0);
    /* A list written on Windows: its CR before each newline is not part of the entry. */
    char crlf[20000];
    size_t cl = 0;
    for (size_t i = 0; i < l.len; i++) {
        if (l.text[i] == '\n' && i % 3 == 0)
            crlf[cl++] = '\r';
        crlf[cl++] = l.text[i];
    }
    CU_ASSERT_FATAL(write_file(listf, crlf, cl) == 0);
    for (int s = 0; s < 3; s++) {
        static const char *const strat[] = {"curl-multi", "load=curl-multi,query=curl-multi", "serial"};
        int rc = RUN(out, "--files-from", listf, "--out", res, "--server", mock.base_url, "--strategy", strat[s]);
        CHECKF(rc == 1, "--strategy %s: exit %d: %s", strat[s], rc, out);
        CHECKF(check_file(res, l.w, l.n, strat[s]) == 0, "a mixed list, --strategy %s", strat[s]);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.w[i].path);
}

/* -0 on standard input, JSON Lines, with a local file whose name holds a newline (only a
 * NUL-separated list can name it). */
static void test_list_nul_stdin(void)
{
    NEED_SERVERS();
    char listf[700], res[700], odd[700], out[4096];
    snprintf(listf, sizeof listf, "%s/list0", base);
    snprintf(res, sizeof res, "%s/list0.jsonl", base);
    snprintf(odd, sizeof odd, "%s/new\nline, \"quoted\".png", base);
    size_t len;
    char *bytes = slurp(imgs[20].file, &len);
    CU_ASSERT_FATAL(bytes && write_file(odd, bytes, len) == 0);
    free(bytes);
    struct list l;
    make_list(&l, 1);
    add_entry(&l, 1, odd, imgs[20].file, NULL, 1);
    CU_ASSERT_FATAL(write_file(listf, l.text, l.len) == 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec \"$0\" --files-from - -0 --out '%s' --server '%s' --quiet --force < '%s'", res,
             mock.base_url, listf);
    const char *argv[] = {"sh", "-c", cmd, e2e_annotate_bin(), NULL};
    int rc = run_cmd(argv, tmo(60), out, sizeof out);
    CHECKF(rc == 1, "exit %d: %s", rc, out);
    CU_ASSERT(check_file(res, l.w, l.n, "-0 on standard input") == 0);
    /* A JSON Lines file that holds rows is not overwritten without --resume or --force. */
    size_t before_len;
    char *before = slurp(res, &before_len);
    const char *again[] = {e2e_annotate_bin(), "--files-from", listf, "-0", "--out", res, "--server", mock.base_url,
                           "--quiet", NULL};
    rc = run_cmd(again, tmo(30), out, sizeof out);
    size_t after_len;
    char *after = slurp(res, &after_len);
    CHECKF(rc == 2 && strstr(out, "--resume") && after && after_len == before_len && !memcmp(before, after, after_len),
           "a second run without --resume: exit %d: %s", rc, out);
    free(before);
    free(after);
    /* Python's json module reads every line, and os.fsencode gives each path's bytes back. */
    char py[1024];
    snprintf(py, sizeof py,
             "import json, os, sys\n"
             "rows = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]\n"
             "sys.stdout.buffer.write(b'%%d rows; ' %% len(rows))\n"
             "sys.stdout.buffer.write(b'found' if any(os.fsencode(r['path']) == sys.argv[2].encode('utf-8', "
             "'surrogateescape') for r in rows) else b'missing')\n");
    const char *pargv[] = {pyserver_python(), "-c", py, res, odd, NULL};
    rc = run_cmd(pargv, tmo(30), out, sizeof out);
    char want[64];
    snprintf(want, sizeof want, "%zu rows; found", l.n);
    CHECKF(rc == 0 && strstr(out, want), "python: %d: %s", rc, out);
    for (size_t i = 0; i < l.n; i++)
        free(l.w[i].path);
}

/* --header goes to the model server only: an image host sees it with --image-auth alone. And a
 * host that answers 503 for a while is retried. */
static void test_list_headers_and_busy_host(void)
{
    NEED_SERVERS();
    char listf[700], res[700], out[4096], url[200];
    snprintf(listf, sizeof listf, "%s/urls.txt", base);
    snprintf(res, sizeof res, "%s/urls.csv", base);
    struct list l = {0};
    for (int i = 0; i < 6; i++) {
        snprintf(url, sizeof url, "%s/h%02d.png", host.base_url, i);
        add_entry(&l, 0, url, imgs[i].file, NULL, 1);
    }
    CU_ASSERT_FATAL(write_file(listf, l.text, l.len) == 0);
    for (int auth = 0; auth < 2; auth++) {
        long a0;
        char stats[200];
        snprintf(stats, sizeof stats, "%s/__stats", host.base_url);
        long status;
        char *body = NULL;
        http_request(stats, NULL, NULL, 0, &status, &body, NULL);
        cJSON *j = cJSON_Parse(body ? body : "");
        a0 = mock_stat(j, "authorization");
        long r0 = mock_stat(j, "requests");
        cJSON_Delete(j);
        free(body);
        int rc = auth ? RUN(out, "--files-from", listf, "--out", res, "--server", mock.base_url, "--header",
                            "Authorization: Bearer model-token", "--image-auth")
                      : RUN(out, "--files-from", listf, "--out", res, "--server", mock.base_url, "--header",
                            "Authorization: Bearer model-token");
        CHECKF(rc == 0, "--image-auth %d: exit %d: %s", auth, rc, out);
        CU_ASSERT(check_file(res, l.w, l.n, "URLs") == 0);
        body = NULL;
        http_request(stats, NULL, NULL, 0, &status, &body, NULL);
        j = cJSON_Parse(body ? body : "");
        long seen = mock_stat(j, "authorization") - a0, reqs = mock_stat(j, "requests") - r0;
        cJSON_Delete(j);
        free(body);
        CHECKF(reqs == 6 && seen == (auth ? 6 : 0), "--image-auth %d: %ld requests, %ld with Authorization", auth,
               reqs, seen);
    }
    char fault[200];
    snprintf(fault, sizeof fault, "%s/__fault?busy=9", host.base_url);
    long status;
    http_post(fault, "", 0, &status, NULL);
    int rc = RUN(out, "--files-from", listf, "--out", res, "--server", mock.base_url, "--backoff-ms", "5");
    CHECKF(rc == 0, "a busy host: exit %d: %s", rc, out);
    CU_ASSERT(check_file(res, l.w, l.n, "a busy image host") == 0);
    for (size_t i = 0; i < l.n; i++)
        free(l.w[i].path);
}

/* An image URL's size is judged by the answer that brings the image: over --max-image-bytes it
 * is failed and says so; a redirect's own Content-Length (4096 bytes, over the 1000 allowed)
 * does not count. (Whether it was refused at its Content-Length or at its first bytes is not
 * seen from here: both say the same.) */
static void test_list_image_size(void)
{
    NEED_SERVERS();
    char listf[700], res[700], out[4096], url[200];
    snprintf(listf, sizeof listf, "%s/sized.txt", base);
    snprintf(res, sizeof res, "%s/sized.csv", base);
    for (int small = 0; small < 2; small++) {
        struct list l = {0};
        const char *fail = small ? "larger than --max-image-bytes" : NULL;
        snprintf(url, sizeof url, "%s/h%02d.png", host.base_url, 0);
        add_entry(&l, 0, url, imgs[0].file, fail, 1);
        snprintf(url, sizeof url, "%s/__moved/h%02d.png", host.base_url, 1);
        add_entry(&l, 0, url, imgs[1].file, fail, 1);
        CU_ASSERT_FATAL(write_file(listf, l.text, l.len) == 0);
        const char *max = small ? "100" : "1000";
        int rc = RUN(out, "--files-from", listf, "--out", res, "--server", mock.base_url, "--max-image-bytes", max);
        CHECKF(rc == (small ? 1 : 0), "--max-image-bytes %s: exit %d: %s", max, rc, out);
        CHECKF(check_file(res, l.w, l.n, max) == 0, "--max-image-bytes %s: rows", max);
        for (size_t i = 0; i < l.n; i++)
            free(l.w[i].path);
    }
}

/* Lists refused before anything is sent (exit 2): an entry longer than 64 KiB, a NUL byte in a
 * newline-separated list, a folder, a file that is not there. */
static void test_list_refused(void)
{
    NEED_SERVERS();
    char listf[700], res[700], out[4096];
    snprintf(listf, sizeof listf, "%s/bad-list", base);
    snprintf(res, sizeof res, "%s/bad-list.csv", base);
    size_t big = 70000;
    char *text = malloc(big + 64);
    int n = snprintf(text, big + 64, "%s\n", imgs[0].file);
    memset(text + n, 'x', big);
    text[n + (int)big] = '\n';
    static const struct {
        const char *what, *msg;
    } cases[] = {{"a long entry", "longer than 65536 bytes"}, {"a NUL byte", "holds a NUL byte"},
                 {"a folder", "is a directory"}, {"no such file", "cannot read it"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *arg = listf;
        if (i == 0)
            write_file(listf, text, (size_t)n + big + 1);
        else if (i == 1)
            write_file(listf, "a.png\n\0b.png\n", 14);
        else
            arg = i == 2 ? base : "/nonexistent/list.txt";
        e2e_stats_reset(&mock);
        int rc = RUN(out, "--files-from", arg, "--out", res, "--server", mock.base_url);
        cJSON *st = mock_stats(&mock);
        long sent = mock_stat(st, "requests.model_01");
        cJSON_Delete(st);
        CHECKF(rc == 2 && strstr(out, cases[i].msg) && sent == 0, "%s: exit %d, %ld requests: %s", cases[i].what, rc,
               sent, out);
    }
    free(text);
}

int register_sources(void)
{
    CU_pSuite s = CU_add_suite("sources s3", suite_init, suite_clean);
    if (!s)
        return -1;
    if (!CU_add_test(s, "a bucket under every strategy, CSV and JSON Lines, pages of 3, odd keys",
                     test_bucket_every_strategy) ||
        !CU_add_test(s, "wrong secret, wrong key, no bucket, no credentials: exit 2, no model request",
                     test_bucket_setup_errors) ||
        !CU_add_test(s, "an object deleted after the listing: a failed row", test_bucket_deleted_after_listing) ||
        !CU_add_test(s, "503 SlowDown storm: retried, every row ok", test_bucket_slowdown_storm) ||
        !CU_add_test(s, "an outage of the store waited out; with --outage-timeout 0 its images fail",
                     test_bucket_outage) ||
        !CU_add_test(s, "kill -9 during the listing, then --resume", test_kill_during_listing) ||
        !CU_add_test(s, "kill -9 during the run (JSON Lines), then --resume", test_kill_during_run) ||
        !CU_add_test(s, "--shard by key, then merge (CSV and JSON Lines)", test_shards_and_merge) ||
        !CU_add_test(s, "--retry-failed keeps the row of an object deleted since", test_bucket_retry_failed) ||
        !CU_add_test(s, "--resume refuses rows of another prefix", test_bucket_resume_other_prefix) ||
        !CU_add_test(s, "a pipeline that prepares images: the bucket's cells are the folder's", test_bucket_prepared) ||
        !CU_add_test(s, "--cache: objects answered from what the folder's run stored", test_bucket_cache))
        return -1;
    CU_pSuite t = CU_add_suite("sources list", suite_init, suite_clean);
    if (!t)
        return -1;
    if (!CU_add_test(t, "--files-from: local paths, s3:// and http:// mixed, twice, blank, CRLF", test_list_mixed) ||
        !CU_add_test(t, "-0 on standard input, JSON Lines read back by Python", test_list_nul_stdin) ||
        !CU_add_test(t, "an image URL over --max-image-bytes fails; a redirect's own length does not count",
                     test_list_image_size) ||
        !CU_add_test(t, "--header reaches an image host only with --image-auth; a busy host is retried",
                     test_list_headers_and_busy_host) ||
        !CU_add_test(t, "a long entry, a NUL without -0, a folder, no file: exit 2 before any request",
                     test_list_refused))
        return -1;
    CU_pSuite c = CU_add_suite("sources concurrent", suite_init, suite_clean);
    CU_pSuite v = c ? CU_add_suite("sources serial", suite_init, suite_clean) : NULL;
    if (!v || !CU_add_test(c, "a bucket on threads and curl-multi, CSV and JSON Lines", test_bucket_threaded) ||
        !CU_add_test(v, "a bucket, one image at a time, CSV and JSON Lines", test_bucket_serial))
        return -1;
    return 0;
}
