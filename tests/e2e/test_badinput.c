/* Bad input to merge, resume and the URLs, and what a stopped or finished run says (issues 23
 * and 24), each against the annotate binary:
 *
 *   "badinput merge"    two ok rows of one image with different results exit 2 naming it and
 *                       both files (identical results merge; --prefer first|last chooses); one
 *                       folder spelled two ways across shards (./ds beside ds) exits 2; CSV and
 *                       JSON Lines alike
 *   "badinput zeros"    a block of NULs (a power cut's zero-filled block) before the last line is
 *                       refused by merge and --resume alike, naming the line; at the end it is a
 *                       torn write, cut off
 *   "badinput status"   a hand-edited status (OK) is named as such by --resume, CSV and JSON Lines
 *   "badinput urls"     --server, a stage's URL and the S3 endpoint with an empty port, a port out
 *                       of range, port 0 or no host exit 2 before anything is sent
 *   "badinput summary"  a resume with nothing to do but old failed rows exits 0 and counts them;
 *                       after SIGINT the summary names the images left, and --resume does
 *                       exactly those */
#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
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

static int setup(void)
{
    return make_tmpdir(tmp, sizeof tmp, "badinput");
}

static int teardown(void)
{
    return tree_rm(tmp);
}

/* tmp/name into buf. */
static const char *at(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", tmp, name);
    return buf;
}

static void put(const char *path, const char *text, size_t len)
{
    CU_ASSERT_FATAL(write_file(path, text, len) == 0);
}

/* annotate merge [opt] OUT A B: its exit status, its output in buf. opt may be NULL. */
static int merge2(const char *opt, const char *out, const char *a, const char *b, char *buf, size_t len)
{
    const char *argv[] = {e2e_annotate_bin(), "merge", out, a, b, NULL, NULL};
    if (opt) {
        argv[2] = opt;
        argv[3] = out;
        argv[4] = a;
        argv[5] = b;
    }
    return run_cmd(argv, tmo(30), buf, len);
}

/* ---- merge ---- */

#define HDR "path,status,m1,m2,error,attempts,elapsed_ms\n"
#define JROW(p, m1, att) "{\"path\":\"" p "\",\"status\":\"ok\",\"m1\":" m1 ",\"m2\":[1],\"error\":null,\"attempts\":" att ",\"elapsed_ms\":5}\n"

/* One format's shards: a and b both have ds/x.jpg ok; b's m1 differs for ds/y.jpg. */
struct shards {
    const char *ext, *a, *b, *same_b; /* same_b: b with ds/y.jpg's results as a has them */
    const char *row_a_y, *row_b_y;    /* ds/y.jpg's row in a and in b */
};

static const struct shards csv_shards = {
    "csv",
    HDR "ds/x.jpg,ok,1,[1],,1,5\nds/y.jpg,ok,\"{\"\"k\"\":2}\",[1],,1,5\n",
    HDR "ds/y.jpg,ok,\"{\"\"k\"\":3}\",[1],,2,7\nds/x.jpg,ok,1,[1],,4,9\nds/z.jpg,failed,,,boom,3,1\n",
    HDR "ds/y.jpg,ok,\"{\"\"k\"\":2}\",[1],,2,7\nds/x.jpg,ok,1,[1],,4,9\nds/z.jpg,failed,,,boom,3,1\n",
    "ds/y.jpg,ok,\"{\"\"k\"\":2}\",[1],,1,5\n",
    "ds/y.jpg,ok,\"{\"\"k\"\":3}\",[1],,2,7\n",
};

static const struct shards jsonl_shards = {
    "jsonl",
    JROW("ds/x.jpg", "1", "1") JROW("ds/y.jpg", "{\"k\":2}", "1"),
    JROW("ds/y.jpg", "{\"k\":3}", "2") JROW("ds/x.jpg", "1", "4"),
    JROW("ds/y.jpg", "{\"k\":2}", "2") JROW("ds/x.jpg", "1", "4"),
    JROW("ds/y.jpg", "{\"k\":2}", "1"),
    JROW("ds/y.jpg", "{\"k\":3}", "2"),
};

/* 1 when the file holds the row (whole line) exactly once. */
static int has_row_once(const char *path, const char *row)
{
    char *t = slurp(path, NULL);
    const char *f = t ? strstr(t, row) : NULL;
    int once = f && !strstr(f + 1, row);
    free(t);
    return once;
}

static void merge_conflict(const struct shards *s)
{
    char a[400], b[400], out[400], name[64], buf[4096];
    snprintf(name, sizeof name, "a.%s", s->ext);
    at(a, sizeof a, name);
    snprintf(name, sizeof name, "b.%s", s->ext);
    at(b, sizeof b, name);
    snprintf(name, sizeof name, "out.%s", s->ext);
    at(out, sizeof out, name);
    put(a, s->a, strlen(s->a));
    put(b, s->b, strlen(s->b));
    unlink(out);
    /* Different results for ds/y.jpg: refused, naming it and both files; nothing written. */
    int rc = merge2(NULL, out, a, b, buf, sizeof buf);
    CHECKF(rc == 2, "%s: two ok rows with different results: exit %d: %s", s->ext, rc, buf);
    CHECKF(strstr(buf, "ds/y.jpg") && strstr(buf, a) && strstr(buf, b) && strstr(buf, "--prefer"),
           "%s: the message must name the image, both files and --prefer: %s", s->ext, buf);
    CHECKF(!strstr(buf, "\"ds/x.jpg\""), "%s: ds/x.jpg has the same results in both: %s", s->ext, buf);
    CHECKF(access(out, F_OK) != 0, "%s: %s was written", s->ext, out);
    /* --prefer says which wins; each image once. */
    rc = merge2("--prefer=first", out, a, b, buf, sizeof buf);
    CHECKF(rc == 0 && has_row_once(out, s->row_a_y) && !has_row_once(out, s->row_b_y),
           "%s: --prefer first: exit %d, the first file's row must win: %s", s->ext, rc, buf);
    rc = merge2("--prefer=last", out, a, b, buf, sizeof buf);
    CHECKF(rc == 0 && has_row_once(out, s->row_b_y) && !has_row_once(out, s->row_a_y),
           "%s: --prefer last: exit %d, the last file's row must win: %s", s->ext, rc, buf);
    /* The same results (attempts and elapsed_ms apart): merged, the first row kept. */
    put(b, s->same_b, strlen(s->same_b));
    rc = merge2(NULL, out, a, b, buf, sizeof buf);
    CHECKF(rc == 0 && has_row_once(out, s->row_a_y), "%s: identical results: exit %d: %s", s->ext, rc, buf);
    rc = merge2("--prefer=middle", out, a, b, buf, sizeof buf);
    CHECKF(rc == 2 && strstr(buf, "first or last"), "%s: --prefer middle: exit %d: %s", s->ext, rc, buf);
}

static void test_merge_conflict_csv(void)
{
    merge_conflict(&csv_shards);
}

static void test_merge_conflict_jsonl(void)
{
    merge_conflict(&jsonl_shards);
}

/* Shards of runs given ./ds and ds (and ds//sub beside ds/sub): refused, naming both spellings;
 * the same or unrelated folders, and URLs, merge. */
static void test_merge_spellings(void)
{
    static const struct {
        const char *a, *b;
        int refused;
    } cases[] = {
        {HDR "./ds/x.jpg,ok,1,[1],,1,5\n", HDR "ds/x.jpg,ok,1,[1],,1,5\nds/y.jpg,ok,1,[1],,1,5\n", 1},
        {HDR "./ds/x.jpg,ok,1,[1],,1,5\n", HDR "ds/a/y.jpg,ok,1,[1],,1,5\n", 1},
        {HDR "ds//sub/x.jpg,ok,1,[1],,1,5\n", HDR "ds/sub/y.jpg,ok,1,[1],,1,5\n", 1},
        {HDR "/data/ds/x.jpg,ok,1,[1],,1,5\n", HDR "/data/./ds/y.jpg,ok,1,[1],,1,5\n", 1},
        {HDR "ds/x.jpg,ok,1,[1],,1,5\n", HDR "ds/y.jpg,ok,1,[1],,1,5\n", 0},
        {HDR "ds/x.jpg,ok,1,[1],,1,5\n", HDR "other/x.jpg,ok,1,[1],,1,5\n", 0},
        {HDR "s3://b//k/x.jpg,ok,1,[1],,1,5\n", HDR "s3://b/k/y.jpg,ok,1,[1],,1,5\n", 0},
    };
    char a[400], b[400], out[400], buf[4096];
    at(a, sizeof a, "sa.csv");
    at(b, sizeof b, "sb.csv");
    at(out, sizeof out, "sout.csv");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put(a, cases[i].a, strlen(cases[i].a));
        put(b, cases[i].b, strlen(cases[i].b));
        unlink(out);
        int rc = merge2(NULL, out, a, b, buf, sizeof buf);
        if (cases[i].refused)
            CHECKF(rc == 2 && strstr(buf, "spell one folder two ways") && strstr(buf, a) && strstr(buf, b) &&
                       access(out, F_OK) != 0,
                   "case %zu: one folder spelled two ways: exit %d: %s", i, rc, buf);
        else
            CHECKF(rc == 0, "case %zu: exit %d: %s", i, rc, buf);
    }
    /* JSON Lines alike. */
    at(a, sizeof a, "sa.jsonl");
    at(b, sizeof b, "sb.jsonl");
    at(out, sizeof out, "sout.jsonl");
    const char *ja = JROW("./ds/x.jpg", "1", "1"), *jb = JROW("ds/x.jpg", "1", "1");
    put(a, ja, strlen(ja));
    put(b, jb, strlen(jb));
    int rc = merge2(NULL, out, a, b, buf, sizeof buf);
    CHECKF(rc == 2 && strstr(buf, "spell one folder two ways"), "jsonl ./ds and ds: exit %d: %s", rc, buf);
}

/* ---- a zero-filled block ---- */

/* text, then n NULs, then tail, into path. */
static void put_zeros(const char *path, const char *text, size_t n, const char *tail)
{
    size_t a = strlen(text), t = strlen(tail);
    char *buf = calloc(1, a + n + t);
    CU_ASSERT_FATAL(buf != NULL);
    memcpy(buf, text, a);
    memcpy(buf + a + n, tail, t);
    put(path, buf, a + n + t);
    free(buf);
}

/* A merge of a good shard and one with 3,000 NULs between its rows: exit 2 naming the line;
 * with the NULs at the end only (no newline after them): a torn write, ignored. */
static void merge_zeros(const char *ext, const char *good, const char *head, const char *tail)
{
    char a[400], b[400], out[400], name[64], buf[4096];
    snprintf(name, sizeof name, "za.%s", ext);
    at(a, sizeof a, name);
    snprintf(name, sizeof name, "zb.%s", ext);
    at(b, sizeof b, name);
    snprintf(name, sizeof name, "zout.%s", ext);
    at(out, sizeof out, name);
    put(a, good, strlen(good));
    put_zeros(b, head, 3000, tail);
    unlink(out);
    int rc = merge2(NULL, out, a, b, buf, sizeof buf);
    CHECKF(rc == 2 && strstr(buf, b) && strstr(buf, "3000 zero bytes") && access(out, F_OK) != 0,
           "%s: merge of a shard with a NUL block: exit %d: %s", ext, rc, buf);
    put_zeros(b, head, 3000, "");
    rc = merge2(NULL, out, a, b, buf, sizeof buf);
    char *m = slurp(out, NULL);
    CHECKF(rc == 0 && m && !memchr(m, 0, strlen(m)) && strstr(buf, "torn"),
           "%s: NULs at the end are a torn write: exit %d: %s", ext, rc, buf);
    free(m);
}

static void test_merge_zeros(void)
{
    merge_zeros("csv", HDR "ds/a.jpg,ok,1,[1],,1,5\n", HDR "ds/b.jpg,ok,1,[1],,1,5\n", "ds/c.jpg,ok,1,[1],,1,5\n");
    merge_zeros("jsonl", JROW("ds/a.jpg", "1", "1"), JROW("ds/b.jpg", "1", "1"), JROW("ds/c.jpg", "1", "1"));
}

/* ---- resume: one image folder, a server nothing listens on (nothing is sent: the file is
 * refused first) ---- */

/* annotate DIR --out OUT --resume against a closed port: exit status, output in buf. */
static int resume_run(const char *dir, const char *out, char *buf, size_t len)
{
    char server[64];
    snprintf(server, sizeof server, "http://127.0.0.1:%d", e2e_closed_port());
    const char *argv[] = {e2e_annotate_bin(), dir, "--out", out, "--server", server, "--resume", "--quiet", NULL};
    return run_cmd(argv, tmo(30), buf, len);
}

static void resume_refuses(const char *what, const char *dir, const char *out, const char *text, size_t len,
                           const char *const *want)
{
    char buf[4096];
    put(out, text, len);
    int rc = resume_run(dir, out, buf, sizeof buf);
    CHECKF(rc == 2, "%s: exit %d: %s", what, rc, buf);
    for (int i = 0; want[i]; i++)
        CHECKF(strstr(buf, want[i]) != NULL, "%s: the message lacks \"%s\": %s", what, want[i], buf);
    size_t got;
    char *now = slurp(out, &got);
    CHECKF(now && got == len && !memcmp(now, text, len), "%s: the file was changed", what);
    free(now);
}

#define SEED_HDR "path,status,model_01,model_02,model_03,model_05,error,attempts,elapsed_ms\n"
#define SEED_JROW(p, st) "{\"path\":\"" p "\",\"status\":\"" st "\",\"model_01\":1,\"model_02\":1,\"model_03\":1," \
                         "\"model_05\":[],\"error\":null,\"attempts\":5,\"elapsed_ms\":3}\n"

static void test_resume_zeros(void)
{
    char dir[400], out[400], row[700];
    at(dir, sizeof dir, "zimgs");
    mkdir(dir, 0755);
    snprintf(row, sizeof row, SEED_HDR "%s/a.png,ok,1,1,1,[],,5,3\n", dir);
    size_t hl = strlen(row);
    snprintf(row + hl, sizeof row - hl, "%s/b.png,ok,1,1,1,[],,5,3\n", dir);
    char *text = calloc(1, strlen(row) + 3000);
    CU_ASSERT_FATAL(text != NULL);
    memcpy(text, row, hl);
    memcpy(text + hl + 3000, row + hl, strlen(row) - hl);
    at(out, sizeof out, "z.csv");
    static const char *const want[] = {"line 3", "3000 zero bytes", "z.csv", NULL};
    resume_refuses("csv with a NUL block", dir, out, text, hl + 3000 + strlen(row) - hl, want);
    free(text);
    /* At the end, after the last row: cut off as a torn write, the rows kept. */
    put_zeros(out, row, 3000, "");
    char buf[4096];
    int rc = resume_run(dir, out, buf, sizeof buf);
    size_t got;
    char *now = slurp(out, &got);
    CHECKF(rc == 0 && now && got == strlen(row) && !memcmp(now, row, got),
           "NULs at the end: exit %d, %zu bytes left (want the %zu of the rows): %s", rc, got, strlen(row), buf);
    free(now);
}

static void test_resume_status(void)
{
    char dir[400], out[400], text[2000];
    at(dir, sizeof dir, "simgs");
    mkdir(dir, 0755);
    at(out, sizeof out, "s.csv");
    snprintf(text, sizeof text, SEED_HDR "%s/a.png,ok,1,1,1,[],,5,3\n%s/b.png,OK,1,1,1,[],,5,3\n", dir, dir);
    static const char *const want[] = {"line 3", "\"OK\"", "\"ok\" or \"failed\"", NULL};
    resume_refuses("csv status OK", dir, out, text, strlen(text), want);
    snprintf(text, sizeof text, SEED_HDR "%s/a.png,ok,1,1,1,[],5,3\n", dir);
    static const char *const want_fields[] = {"line 2", "8 fields", "9", NULL};
    resume_refuses("csv with a field missing", dir, out, text, strlen(text), want_fields);
    at(out, sizeof out, "s.jsonl");
    char p[500];
    snprintf(p, sizeof p, "%s/a.png", dir);
    snprintf(text, sizeof text, SEED_JROW("%s", "ok") SEED_JROW("%s", "OK"), p, p);
    static const char *const wantj[] = {"line 2", "\"OK\"", "\"ok\" or \"failed\"", NULL};
    resume_refuses("jsonl status OK", dir, out, text, strlen(text), wantj);
}

/* Rows written with DIR spelled DIR/. (the folder's plain spelling, as merge compares them):
 * --resume given DIR names the spelling the rows use. */
static void test_resume_spelling(void)
{
    char dir[400], out[400], text[1200], spelled[420];
    at(dir, sizeof dir, "dimgs");
    mkdir(dir, 0755);
    at(out, sizeof out, "d.csv");
    snprintf(spelled, sizeof spelled, "%s/.", dir);
    snprintf(text, sizeof text, SEED_HDR "%s/a.png,ok,1,1,1,[],,5,3\n", spelled);
    const char *const want[] = {"spell the folder", spelled, "run with DIR", NULL};
    resume_refuses("rows of DIR/. resumed with DIR", dir, out, text, strlen(text), want);
    snprintf(spelled, sizeof spelled, "%s/./dimgs", tmp);
    snprintf(text, sizeof text, SEED_HDR "%s/a.png,ok,1,1,1,[],,5,3\n", spelled);
    resume_refuses("rows of TMP/./dimgs resumed with TMP/dimgs", dir, out, text, strlen(text), want);
    /* A folder whose name begins with a dot is no other spelling. */
    char buf[4096];
    snprintf(text, sizeof text, SEED_HDR "%s/.hidden/a.png,ok,1,1,1,[],,5,3\n", dir);
    put(out, text, strlen(text));
    int rc = resume_run(dir, out, buf, sizeof buf);
    CHECKF(rc == 0, "rows under DIR/.hidden: exit %d: %s", rc, buf);
}

/* ---- URLs ---- */

static void url_refused(const char *what, const char *const *argv, const char *want, const char *const *env)
{
    char buf[4096];
    int rc;
    if (env) {
        for (int i = 0; env[i]; i += 2)
            setenv(env[i], env[i + 1], 1);
        rc = run_cmd(argv, tmo(30), buf, sizeof buf);
        for (int i = 0; env[i]; i += 2)
            unsetenv(env[i]);
    } else {
        rc = run_cmd(argv, tmo(30), buf, sizeof buf);
    }
    CHECKF(rc == 2 && strstr(buf, want), "%s: exit %d, want 2 and \"%s\": %s", what, rc, want, buf);
}

/* Image URLs in a --files-from list: each malformed one a failed row saying why, nothing fetched
 * (the one with an empty port went to port 80). */
static void list_urls(const char *out)
{
    char list[400], buf[4096];
    at(list, sizeof list, "urls.txt");
    static const char text[] = "http://127.0.0.1:/a.jpg\nhttps://127.0.0.1:99999/b.jpg\nhttp:///c.jpg\n";
    put(list, text, strlen(text));
    const char *argv[] = {e2e_annotate_bin(), "--files-from", list, "--out", out, "--force", "--server",
                          "http://127.0.0.1:9", "--quiet", NULL};
    int rc = run_cmd(argv, tmo(30), buf, sizeof buf);
    struct e2e_csv c;
    int read = e2e_csv_read(out, &c);
    CHECKF(rc == 1 && read == 0, "a list of malformed image URLs: exit %d: %s", rc, buf);
    if (read)
        return;
    static const char *const why[] = {"empty port", "Port number", "no host"};
    CHECKF(c.n == 3, "%zu rows for 3 entries", c.n);
    for (size_t i = 0; i < c.n && i < 3; i++) {
        const struct e2e_row *r = &c.rows[i];
        int k = strstr(r->f[0].s, "a.jpg") ? 0 : strstr(r->f[0].s, "b.jpg") ? 1 : 2;
        CHECKF(!strcmp(r->f[COL_STATUS].s, "failed") && strstr(r->f[COL_ERROR].s, why[k]) &&
                   !strcmp(r->f[COL_ATTEMPTS].s, "0"),
               "row %zu (%s): %s, %s", i, r->f[0].s, r->f[COL_STATUS].s, r->f[COL_ERROR].s);
    }
    e2e_csv_free(&c);
}

static void test_urls(void)
{
    char dir[400], out[400], cfg[400];
    at(dir, sizeof dir, "uimgs");
    mkdir(dir, 0755);
    at(out, sizeof out, "u.csv");
    at(cfg, sizeof cfg, "u.json");
    static const struct {
        const char *url, *want;
    } bad[] = {
        {"http://127.0.0.1:", "empty port"},         {"http://127.0.0.1:/", "empty port"},
        {"http://[::1]:", "empty port"},             {"http://127.0.0.1:70000", "Port number"},
        {"http://127.0.0.1:0", "port 0"},            {"http://127.0.0.1:8x", "Port number"},
        {"http:///model", "no host"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *argv[] = {e2e_annotate_bin(), dir, "--out", out, "--force", "--server", bad[i].url, NULL};
        url_refused(bad[i].url, argv, bad[i].want, NULL);
        /* The same URL as a stage's own (with a path), and as a replica's. */
        char text[600];
        snprintf(text, sizeof text, "{\"stages\":[{\"name\":\"m\",\"url\":[\"http://127.0.0.1:9/m\",\"%s/m\"]}]}",
                 bad[i].url);
        put(cfg, text, strlen(text));
        const char *argv2[] = {e2e_annotate_bin(), dir, "--out", out, "--force", "--config", cfg, NULL};
        url_refused(text, argv2, bad[i].want, NULL);
    }
    /* A ${VAR} that makes the URL bad: named by the template, its value never shown. */
    const char *text = "{\"stages\":[{\"name\":\"m\",\"url\":\"http://${BADINPUT_HOST}/m\"}]}";
    put(cfg, text, strlen(text));
    static const char *const env[] = {"BADINPUT_HOST", "s3cr3t-host:", NULL};
    const char *argv3[] = {e2e_annotate_bin(), dir, "--out", out, "--force", "--config", cfg, NULL};
    url_refused("${VAR} with an empty port", argv3, "${BADINPUT_HOST}", env);
    /* The S3 endpoint. */
    static const char *const s3env[] = {"AWS_ACCESS_KEY_ID", "AKIDBADINPUT", "AWS_SECRET_ACCESS_KEY", "x",
                                        "AWS_ENDPOINT_URL", "http://127.0.0.1:", NULL};
    const char *argv4[] = {e2e_annotate_bin(), "s3://bucket/p/", "--out", out, "--force", "--server",
                           "http://127.0.0.1:9", NULL};
    url_refused("AWS_ENDPOINT_URL with an empty port", argv4, "empty port", s3env);
    list_urls(out);
}

/* ---- the summary ---- */

struct run_files {
    struct e2e_tree t;
    char sj[700], log[700];
};

/* A run's --stats-json, parsed: the number under key, or -1. */
static double stat_of(const char *sj, const char *key)
{
    cJSON *o = e2e_read_json(sj);
    double v = o ? e2e_json_num(o, key) : -1;
    cJSON_Delete(o);
    return v;
}

/* A folder with one empty image (a failed row); the resume with nothing to do exits 0 and counts
 * the failed row it skipped; a resume that fails an image again exits 1. */
static void test_resume_nothing_to_do(void)
{
    struct e2e_tree t;
    struct mock_proc m = {0};
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "badinput", 6, 5) == 0);
    char empty[700], buf[8192];
    snprintf(empty, sizeof empty, "%s/empty.png", t.root);
    put(empty, "", 0);
    if (mock_start(&m, NULL)) {
        CU_FAIL("mock did not start");
        e2e_tree_free(&t);
        return;
    }
    const char *first[] = {"--stats-json", t.sj, NULL};
    int rc = e2e_run(buf, sizeof buf, tmo(60), t.root, t.csv, m.base_url, first);
    CHECKF(rc == 1, "the first run fails the empty image: exit %d: %s", rc, buf);
    const char *argv[] = {e2e_annotate_bin(), t.root, "--out", t.csv, "--server", m.base_url, "--resume",
                          "--stats-json", t.sj, NULL};
    rc = run_cmd(argv, tmo(60), buf, sizeof buf);
    CHECKF(rc == 0, "a resume that fails nothing exits 0 (old failed rows are not this run's): %d: %s", rc, buf);
    CHECKF(strstr(buf, "7 skipped") && strstr(buf, "1 of them failed earlier") && strstr(buf, "--retry-failed"),
           "the summary must say how many skipped rows failed: %s", buf);
    CHECKF(stat_of(t.sj, "images_skipped_failed") == 1, "images_skipped_failed: %g", stat_of(t.sj, "images_skipped_failed"));
    const char *again[] = {e2e_annotate_bin(), t.root, "--out", t.csv, "--server", m.base_url, "--resume",
                           "--retry-failed", "--quiet", NULL};
    rc = run_cmd(again, tmo(60), buf, sizeof buf);
    CHECKF(rc == 1, "a resume that fails the empty image again exits 1: %d: %s", rc, buf);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* The first run against a slow server, stopped by SIGINT after a few rows: the count it names
 * (and images_left) is found minus the rows written; --resume then does exactly the images
 * without a row. */
static void test_sigint_left(void)
{
    /* At 400 ms a request and two images at a time, the first run would take about 30 s: the
     * signal after 3 rows comes long before its end. */
    enum { N = 40 };
    struct e2e_tree t;
    struct mock_proc m = {0};
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "badinput", N, 9) == 0);
    static const char *const slow[] = {"--latency-ms", "400", NULL};
    if (mock_start(&m, slow)) {
        CU_FAIL("mock did not start");
        e2e_tree_free(&t);
        return;
    }
    const char *argv[] = {e2e_annotate_bin(), t.root, "--out", t.csv, "--server", m.base_url, "--concurrency", "2",
                          "--stats-json", t.sj, NULL};
    pid_t pid = e2e_spawn(argv, t.log);
    CU_ASSERT_FATAL(pid > 0);
    int got = e2e_wait_lines(t.csv, 1 + 3, pid, tmo(60));
    kill(pid, SIGINT);
    int rc = e2e_wait(pid, tmo(60));
    CHECKF(got && rc == 130, "the run must be stopped by SIGINT after 3 rows: rows %d, exit %d", got, rc);
    long rows = e2e_count_lines(t.csv) - 1;
    double found = stat_of(t.sj, "images_found"), left = stat_of(t.sj, "images_left");
    CHECKF(found > 0 && left == found - (double)rows && rows < N,
           "images_left %g must be images_found %g minus the %ld rows written", left, found, rows);
    char *log = slurp(t.log, NULL), want[96];
    snprintf(want, sizeof want, "stopped early: %.0f images found have no row", left);
    CHECKF(log && strstr(log, want), "the summary must say \"%s\": %s", want, log ? log : "(no log)");
    free(log);
    const char *extra[] = {"--resume", "--stats-json", t.sj, NULL};
    char buf[8192];
    rc = e2e_run(buf, sizeof buf, tmo(120), t.root, t.csv, m.base_url, extra);
    double done = stat_of(t.sj, "images_ok") + stat_of(t.sj, "images_failed");
    /* The scan finds the 40 images long before 3 rows are written; if it had not, the images it
     * had not reached are the resume's to do too. */
    CHECKF(rc == 0 && done == left + (N - found), "--resume did %g images; %g were left (found %g of %d): exit %d: %s",
           done, left, found, N, rc, buf);
    CHECKF(found == N, "the scan found %g of %d images before the stop", found, N);
    CHECKF(e2e_count_lines(t.csv) == 1 + N, "%ld lines after the resume", e2e_count_lines(t.csv));
    mock_stop(&m);
    e2e_tree_free(&t);
}

int register_badinput(void)
{
    CU_pSuite s = CU_add_suite("badinput merge", setup, teardown);
    if (!s || !CU_add_test(s, "two ok rows with different results: exit 2 or --prefer (CSV)", test_merge_conflict_csv) ||
        !CU_add_test(s, "two ok rows with different results: exit 2 or --prefer (JSON Lines)", test_merge_conflict_jsonl) ||
        !CU_add_test(s, "one folder spelled two ways across shards: exit 2", test_merge_spellings))
        return -1;
    s = CU_add_suite("badinput zeros", setup, teardown);
    if (!s || !CU_add_test(s, "merge: a NUL block refused, NULs at the end torn", test_merge_zeros) ||
        !CU_add_test(s, "--resume: a NUL block refused, NULs at the end cut off", test_resume_zeros))
        return -1;
    s = CU_add_suite("badinput status", setup, teardown);
    if (!s || !CU_add_test(s, "--resume names a bad status or field count, its line and what is allowed",
                           test_resume_status) ||
        !CU_add_test(s, "--resume with DIR spelled otherwise names the rows' spelling", test_resume_spelling))
        return -1;
    s = CU_add_suite("badinput urls", setup, teardown);
    if (!s || !CU_add_test(s, "empty port, port out of range, port 0, no host: exit 2 (a list's: failed rows)", test_urls))
        return -1;
    s = CU_add_suite("badinput summary", setup, teardown);
    if (!s || !CU_add_test(s, "a resume with nothing to do but old failed rows: exit 0, counted",
                           test_resume_nothing_to_do) ||
        !CU_add_test(s, "SIGINT: the images left are named, and --resume does exactly those", test_sigint_left))
        return -1;
    return 0;
}
