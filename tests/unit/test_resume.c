/* Suite "resume": reading a results file back (src/results/resume.c) and the done-set.
 *
 * Files are made with the results writer (so they are exactly what a run writes), then damaged the ways a
 * crash can damage them: the last row cut in a quoted path with a newline in it, right after
 * that newline, in the middle of the JSON, just before the final newline, between the two
 * quotes of an escaped quote. results_open (with resume) must cut the torn row off (and nothing else), keep
 * the complete rows byte for byte, and leave the torn image out of the set. A wrong header or
 * a damaged row in the middle is an error, and the file is then left alone. */
#include "results/resume.h"

#include <CUnit/CUnit.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "results/results.h"
#include "flow/item.h"
#include "select.h"

#include "check.h"
#include "util.h"
#include "tree.h"

static struct pipeline *P;
static char tmpdir[512];
static char file[600];

static int suite_init(void)
{
    if (make_tmpdir(tmpdir, sizeof tmpdir, "resume"))
        return -1;
    snprintf(file, sizeof file, "%s/results.csv", tmpdir);
    return pipeline_default(&P) ? -1 : 0;
}

static int suite_clean(void)
{
    pipeline_free(P);
    P = NULL;
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.compact.tmp", file);
    unlink(tmp);
    unlink(file);
    rmdir(tmpdir);
    return 0;
}

/* ---- building results files ---- */

struct row {
    const char *path;
    int ok;
    const char *result; /* model_01's result (JSON), or NULL */
};

struct built {
    char *text;
    size_t len;
    size_t start[32], end[32]; /* each row's bytes */
    size_t header_len;
    int n;
};

/* The rows of these tests stand for images a run finds again (their paths name no real files):
 * every failed row may be dropped to be redone. test_retry_failed_gone tests the real rule. */
static int found_again(void *ud, const char *path, size_t len)
{
    (void)ud;
    (void)path;
    (void)len;
    return 1;
}

/* Opens file for resume as a run does (lock, read, repair, rewrite), and closes it again.
 * Returns 0, or -1 with err. */
static int resume_open(const char *path, const struct pipeline *p, int retry_failed, struct doneset **d,
                       struct resume_info *info, char *err, size_t errlen)
{
    struct results_opts o = {.path = path, .resume = 1, .retry_failed = retry_failed, .can_redo = found_again};
    struct results *r = results_open(&o, p, d, info, err, errlen);
    if (!r)
        return -1;
    return results_close(r);
}

/* Writes the rows with the results writer into file and reads the bytes back. */
static int build(const struct row *rows, int n, struct built *b)
{
    memset(b, 0, sizeof *b);
    char err[256] = "";
    unlink(file);
    struct results_opts o = {.path = file};
    struct doneset *none;
    struct resume_info ri;
    struct results *c = results_open(&o, P, &none, &ri, err, sizeof err);
    if (!c) {
        CHECKF(0, "results_open: %s", err);
        return -1;
    }
    struct stat st;
    stat(file, &st);
    b->header_len = (size_t)st.st_size;
    for (int i = 0; i < n; i++) {
        struct item *it = item_new(rows[i].path, strlen(rows[i].path), 0, P->n, (uint64_t)i);
        it->status = rows[i].ok ? ITEM_OK : ITEM_FAILED;
        if (!rows[i].ok)
            it->error = strdup("model_02: HTTP 500: \"boom\", again (after 3 attempts)");
        if (rows[i].result)
            it->results[0] = cJSON_Parse(rows[i].result);
        it->results[1] = cJSON_Parse("[\"tag_a\",\"tag_b\"]");
        it->attempts = 2;
        b->start[i] = (size_t)st.st_size;
        if (results_write(c, it, err, sizeof err))
            CHECKF(0, "results_write: %s", err);
        stat(file, &st);
        b->end[i] = (size_t)st.st_size;
        item_free(it);
    }
    results_close(c);
    b->n = n;
    b->text = slurp(file, &b->len);
    return b->text ? 0 : -1;
}

/* The header and the rows i of b with keep[i] set (keep NULL: every row), byte for byte: what the
 * file holds after a compaction. malloc'd (NULL when out of memory); *len gets the length. */
static char *kept_rows(const struct built *b, const int *keep, size_t *len)
{
    char *t = malloc(b->len + 1);
    if (!t)
        return NULL;
    size_t n = b->header_len;
    memcpy(t, b->text, n);
    for (int i = 0; i < b->n; i++)
        if (!keep || keep[i]) {
            memcpy(t + n, b->text + b->start[i], b->end[i] - b->start[i]);
            n += b->end[i] - b->start[i];
        }
    *len = n;
    return t;
}

/* b's text with drop bytes at `at` replaced by ins. malloc'd (NULL when out of memory). */
static char *splice(const struct built *b, size_t at, size_t drop, const char *ins, size_t *len)
{
    size_t il = strlen(ins);
    *len = b->len - drop + il;
    char *t = malloc(*len + 1);
    if (!t)
        return NULL;
    memcpy(t, b->text, at);
    memcpy(t + at, ins, il);
    memcpy(t + at + il, b->text + at + drop, b->len - at - drop);
    return t;
}

/* 1 when the results file holds exactly the len bytes of want. */
static int file_is(const char *want, size_t len)
{
    size_t got;
    char *text = slurp(file, &got);
    int same = text && want && got == len && !memcmp(text, want, len);
    free(text);
    return same;
}

/* resume_open on the file as it is, which must succeed (the test stops otherwise): the done-set. */
static struct doneset *open_ok(int retry, struct resume_info *info)
{
    struct doneset *d = NULL;
    char err[512] = "";
    int rc = resume_open(file, P, retry, &d, info, err, sizeof err);
    CHECKF(rc == 0 && d, "resume_open (retry_failed %d): %s", retry, err);
    CU_ASSERT_FATAL(rc == 0 && d != NULL);
    return d;
}

static int in_set(const struct doneset *d, const char *path)
{
    return doneset_has(d, path, strlen(path));
}

static const struct row base_rows[] = {
    {"img/a.jpg", 1, "{\"label\":\"cat\",\"score\":1}"},
    {"img/b,c.jpg", 0, NULL},
    {"img/q\"uote.jpg", 1, "{\"label\":\"d\\\"og\"}"},
    {"img/nl\nin/path.jpg", 1, "0"},
    {"img/f2.jpg", 0, "{\"label\":\"x\"}"},
    {" img/space.jpg", 1, "\"\""},
};
#define N_BASE ((int)(sizeof base_rows / sizeof base_rows[0]))

/* ---- tests ---- */

static void test_missing_and_empty(void)
{
    struct doneset *d = (struct doneset *)1;
    struct resume_info info;
    char err[512] = "";
    unlink(file);
    char *h = csv_header(P);
    CU_ASSERT_EQUAL(resume_open(file, P, 0, &d, &info, err, sizeof err), 0);
    CU_ASSERT_PTR_NULL(d);
    struct stat st;
    CU_ASSERT(stat(file, &st) == 0 && (size_t)st.st_size == strlen(h)); /* created, with its header */

    CU_ASSERT_EQUAL(write_file(file, "", 0), 0);
    d = (struct doneset *)1;
    CU_ASSERT_EQUAL(resume_open(file, P, 1, &d, &info, err, sizeof err), 0);
    CU_ASSERT_PTR_NULL(d);
    CU_ASSERT(stat(file, &st) == 0 && (size_t)st.st_size == strlen(h)); /* an empty file gets its header */

    /* Just the header: a set, empty. */
    CU_ASSERT_EQUAL(write_file(file, h, strlen(h)), 0);
    CU_ASSERT_EQUAL(resume_open(file, P, 0, &d, &info, err, sizeof err), 0);
    CU_ASSERT_PTR_NOT_NULL(d);
    CU_ASSERT_EQUAL(doneset_size(d), 0);
    CU_ASSERT_EQUAL(info.rows, 0);
    CU_ASSERT(stat(file, &st) == 0 && (size_t)st.st_size == strlen(h));
    doneset_free(d);

    /* A torn header (a crash at the very start): a fresh start, the file rewritten from its
     * header. */
    CU_ASSERT_EQUAL(write_file(file, h, 10), 0);
    d = NULL;
    CU_ASSERT_EQUAL(resume_open(file, P, 0, &d, &info, err, sizeof err), 0);
    CU_ASSERT_EQUAL(doneset_size(d), 0);
    CU_ASSERT_EQUAL(info.torn_bytes, 10);
    CU_ASSERT(stat(file, &st) == 0 && (size_t)st.st_size == strlen(h));
    doneset_free(d);
    free(h);
}

static void test_whole_file(void)
{
    struct built b;
    if (build(base_rows, N_BASE, &b))
        return;
    struct resume_info info;
    struct doneset *d = open_ok(0, &info);
    for (int i = 0; i < N_BASE; i++)
        CHECKF(in_set(d, base_rows[i].path), "row %d (%s) is not in the set", i, base_rows[i].path);
    CU_ASSERT_EQUAL(doneset_size(d), N_BASE);
    CU_ASSERT_FALSE(in_set(d, "img/z.jpg"));
    CU_ASSERT_FALSE(in_set(d, "img/space.jpg")); /* the space is part of the path */
    CU_ASSERT_EQUAL(info.rows, N_BASE);
    CU_ASSERT_EQUAL(info.ok, 4);
    CU_ASSERT_EQUAL(info.failed, 2);
    CU_ASSERT_EQUAL(info.dropped_failed, 0);
    CU_ASSERT_EQUAL(info.torn_bytes, 0);
    CU_ASSERT_EQUAL(info.duplicates, 0);
    doneset_free(d);
    CU_ASSERT(file_is(b.text, b.len)); /* untouched */
    free(b.text);
}

static void test_retry_failed(void)
{
    struct built b;
    if (build(base_rows, N_BASE, &b))
        return;
    struct resume_info info;
    struct doneset *d = open_ok(1, &info);
    for (int i = 0; i < N_BASE; i++)
        CHECKF(in_set(d, base_rows[i].path) == base_rows[i].ok, "row %d (%s): in set %d, ok %d", i, base_rows[i].path,
               in_set(d, base_rows[i].path), base_rows[i].ok);
    CU_ASSERT_EQUAL(info.dropped_failed, 2);
    CU_ASSERT_EQUAL(doneset_size(d), 4);
    doneset_free(d);

    /* The file: the header and the ok rows, each byte for byte as before. */
    int ok[N_BASE];
    for (int i = 0; i < N_BASE; i++)
        ok[i] = base_rows[i].ok;
    size_t wl;
    char *want = kept_rows(&b, ok, &wl);
    CHECKF(file_is(want, wl), "after retry_failed the file is not the header and the ok rows (%zu bytes)", wl);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.compact.tmp", file);
    CU_ASSERT_NOT_EQUAL(access(tmp, F_OK), 0); /* no leftover */

    /* Again: nothing more to drop, nothing changes. */
    d = open_ok(1, &info);
    CU_ASSERT_EQUAL(doneset_size(d), 4);
    CU_ASSERT_EQUAL(info.dropped_failed, 0);
    doneset_free(d);
    CU_ASSERT(file_is(want, wl));
    free(want);
    free(b.text);
}

/* Offset of needle within row r of b (absolute), or (size_t)-1. */
static size_t find_in_row(const struct built *b, int r, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t o = b->start[r]; o + nl <= b->end[r]; o++)
        if (!memcmp(b->text + o, needle, nl))
            return o;
    return (size_t)-1;
}

static void test_torn_last_row(void)
{
    struct row rows[N_BASE + 1];
    memcpy(rows, base_rows, sizeof base_rows);
    rows[N_BASE] = (struct row){"img/torn\nrow \"x\".jpg", 1, "{\"label\":\"c\\\"a,t\",\"score\":7}"};
    int last = N_BASE;
    struct built b;
    if (build(rows, N_BASE + 1, &b))
        return;
    size_t nl = find_in_row(&b, last, "\n");
    size_t json = find_in_row(&b, last, "label");
    size_t dq = find_in_row(&b, last, "\"\"x");
    CU_ASSERT_FATAL(nl != (size_t)-1 && json != (size_t)-1 && dq != (size_t)-1);
    /* A crash can also leave the tail as zeros (the size was updated, the data never written):
     * put zeros over the torn row and check that they are cut off as well. */
    char *zeroed = malloc(b.len);
    memcpy(zeroed, b.text, b.len);
    memset(zeroed + b.start[last], 0, b.len - b.start[last]);
    const struct {
        const char *what;
        size_t cut;
    } cuts[] = {
        {"one byte of the row", b.start[last] + 1},
        {"in the quoted path, before its newline", nl - 2},
        {"right after the newline inside the quoted path", nl + 1},
        {"between the two quotes of an escaped quote", dq + 1},
        {"in the middle of the JSON", json + 3},
        {"just after a comma", find_in_row(&b, last, ",ok,") + 1},
        {"everything but the final newline", b.end[last] - 1},
        {"zeros instead of the row", b.end[last]},
    };
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        for (int retry = 0; retry < 2; retry++) {
            CU_ASSERT_EQUAL(write_file(file, k == sizeof cuts / sizeof cuts[0] - 1 ? zeroed : b.text, cuts[k].cut), 0);
            struct doneset *d = NULL;
            struct resume_info info;
            char err[512] = "";
            int rc = resume_open(file, P, retry, &d, &info, err, sizeof err);
            CHECKF(rc == 0, "cut %s (retry %d): %s", cuts[k].what, retry, err);
            if (rc)
                continue;
            CHECKF(d && !in_set(d, rows[last].path), "cut %s: the torn path is in the set", cuts[k].what);
            for (int i = 0; i < last; i++)
                CHECKF(d && in_set(d, rows[i].path) == (retry ? rows[i].ok : 1), "cut %s (retry %d): row %d wrong",
                       cuts[k].what, retry, i);
            CHECKF(info.torn_bytes == cuts[k].cut - b.start[last], "cut %s: torn_bytes %llu, want %zu", cuts[k].what,
                   (unsigned long long)info.torn_bytes, cuts[k].cut - b.start[last]);
            CU_ASSERT_EQUAL(info.rows, (uint64_t)last);
            doneset_free(d);
            /* The rows before the torn one (without retry, all of them; with, the ok ones). */
            int keep[N_BASE + 1];
            for (int i = 0; i <= last; i++)
                keep[i] = i < last && (!retry || rows[i].ok);
            size_t wl;
            char *want = kept_rows(&b, keep, &wl);
            CHECKF(file_is(want, wl), "cut %s (retry %d): the file is not the %zu bytes of the rows before it",
                   cuts[k].what, retry, wl);
            /* Once repaired, a second resume changes nothing. */
            d = NULL;
            rc = resume_open(file, P, retry, &d, &info, err, sizeof err);
            CU_ASSERT(rc == 0 && info.torn_bytes == 0 && file_is(want, wl));
            doneset_free(d);
            free(want);
        }
    }
    free(zeroed);
    free(b.text);
}

static void test_wrong_header(void)
{
    struct built b;
    if (build(base_rows, 2, &b))
        return;
    char *h = csv_header(P);
    static const char *heads[] = {
        "path,status,model_01,model_02,model_03,error,attempts,elapsed_ms\n",              /* a column less */
        "path,status,model_01,model_02,model_03,model_05,error,attempts,elapsed_ms,x\n",   /* one more */
        "path,status,model_01,model_02,model_03,model_04,model_05,error,attempts,elapsed_ms\n",
        "name,age\nbob,3\n",
        "\"not\" ,csv\n",
        "hello world\n",
    };
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        size_t len;
        char *text = splice(&b, 0, b.header_len, heads[i], &len);
        CU_ASSERT_FATAL(text != NULL);
        CU_ASSERT_EQUAL(write_file(file, text, len), 0);
        struct doneset *d = (struct doneset *)1;
        struct resume_info info;
        char err[512] = "";
        int rc = resume_open(file, P, 1, &d, &info, err, sizeof err);
        CHECKF(rc == -1, "header %zu accepted", i);
        CHECKF(d == NULL, "header %zu: a set on error", i);
        CHECKF(strstr(err, file) && strstr(err, "move") && strstr(err, "aside"),
               "header %zu: the message must name the file and say to move it aside: %s", i, err);
        CU_ASSERT(file_is(text, len)); /* left alone */
        free(text);
    }
    free(h);
    free(b.text);
}

static void test_damaged_middle(void)
{
    struct built b;
    if (build(base_rows, N_BASE, &b))
        return;
    static const char *junk[] = {
        "junk,ok\n",                                         /* too few fields */
        "a.jpg,maybe,,,,,,1,2\n",                            /* not ok/failed */
        "a\"b.jpg,ok,,,,,,1,2\n",                            /* a quote in an unquoted field */
        "\"a.jpg\"x,ok,,,,,,1,2\n",                          /* text after a closing quote */
        "a.jpg,ok,,,,,,1,2,3\n",                             /* too many */
        "a.jpg,ok,,,,,,1,2\r\"b,\n\"\".jpg\",ok,,,,,,1,2\n",   /* a bare CR ends a row mid-line (fuzz) */
        "a.jpg,ok,,,,,,1,2\r\n",                             /* a Windows line end */
        "\n",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        size_t len;
        char *text = splice(&b, b.start[2], 0, junk[i], &len);
        CU_ASSERT_FATAL(text != NULL);
        CU_ASSERT_EQUAL(write_file(file, text, len), 0);
        struct doneset *d = (struct doneset *)1;
        struct resume_info info;
        char err[512] = "";
        int rc = resume_open(file, P, 0, &d, &info, err, sizeof err);
        if (i == sizeof junk / sizeof junk[0] - 1) {
            /* An empty line is not a row: tolerated, nothing lost. */
            if (rc == 0) {
                for (int r = 0; r < N_BASE; r++)
                    CHECKF(in_set(d, base_rows[r].path), "blank line: row %d lost", r);
                doneset_free(d);
            }
        } else {
            CHECKF(rc == -1, "damage %zu (%.20s) accepted", i, junk[i]);
            CHECKF(d == NULL, "damage %zu: a set on error", i);
            CHECKF(strstr(err, file) != NULL, "damage %zu: the file is not named: %s", i, err);
            CHECKF(file_is(text, len), "damage %zu: the file was changed", i);
        }
        free(text);
    }
    free(b.text);
}

static void test_duplicates(void)
{
    static const struct row rows[] = {
        {"a.jpg", 1, "1"},
        {"b.jpg", 0, NULL},
        {"a.jpg", 1, "2"},
        {"c.jpg", 1, "3"},
        {"a.jpg", 0, NULL},
        {"b.jpg", 1, "4"},
    };
    int n = (int)(sizeof rows / sizeof rows[0]);
    for (int retry = 0; retry < 2; retry++) {
        struct built b;
        if (build(rows, n, &b))
            return;
        struct resume_info info;
        struct doneset *d = open_ok(retry, &info);
        CU_ASSERT_EQUAL(doneset_size(d), 3);
        CU_ASSERT(in_set(d, "a.jpg") && in_set(d, "b.jpg") && in_set(d, "c.jpg"));
        doneset_free(d);
        /* One row per image: without retry the first of each (a ok, b failed, c); with retry the
         * failed rows go first, so b's ok row is the one kept. */
        int keep[6] = {1, !retry, 0, 1, 0, retry};
        size_t wl;
        char *want = kept_rows(&b, keep, &wl);
        CHECKF(file_is(want, wl), "retry %d: duplicates not collapsed to the right rows", retry);
        /* With retry, a's failed row (its image has an ok row) is a duplicate, not a row to redo. */
        CU_ASSERT_EQUAL(info.duplicates, retry ? 2 : 3);
        CU_ASSERT_EQUAL(info.dropped_failed, retry ? 1 : 0);
        free(want);
        free(b.text);
    }
}

/* --retry-failed drops a failed row only when the run will find its image again: the failed rows
 * of files deleted since (or that are now directories, links, or not images of this run) stay,
 * byte for byte, and count as kept failed rows; the others go, and their images are redone. The
 * default rule (the path is a regular file) and the run's (selection_finds: under DIR, an image
 * extension, in the shard) both. */
static void test_retry_failed_gone(void)
{
    char dir[700], p[6][800];
    snprintf(dir, sizeof dir, "%s/img", tmpdir);
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    snprintf(p[0], sizeof p[0], "%s/kept-ok.jpg", dir);   /* ok: always kept */
    snprintf(p[1], sizeof p[1], "%s/there.jpg", dir);     /* failed, still there: redone */
    snprintf(p[2], sizeof p[2], "%s/deleted.jpg", dir);   /* failed, deleted since: kept */
    snprintf(p[3], sizeof p[3], "%s/now-a-dir.jpg", dir); /* failed, now a directory: kept */
    snprintf(p[4], sizeof p[4], "%s/link.jpg", dir);      /* failed, now a symbolic link: kept */
    snprintf(p[5], sizeof p[5], "%s/there.tiff", dir);    /* failed, there, but not an image by default */
    struct row rows[6];
    for (int i = 0; i < 6; i++)
        rows[i] = (struct row){p[i], i == 0, i == 0 ? "1" : NULL};
    CU_ASSERT_FATAL(write_file(p[0], "x", 1) == 0 && write_file(p[1], "x", 1) == 0 && write_file(p[5], "x", 1) == 0);
    CU_ASSERT_FATAL(mkdir(p[3], 0755) == 0 && symlink(p[1], p[4]) == 0);
    struct config cfg = {.dir = dir};
    for (int rule = 0; rule < 2; rule++) {
        struct built b;
        if (build(rows, 6, &b))
            break;
        struct doneset *d = NULL;
        struct resume_info info;
        char err[512] = "";
        struct results_opts o = {.path = file, .resume = 1, .retry_failed = 1};
        if (rule) {
            o.can_redo = selection_finds;
            o.can_redo_ud = &cfg;
        }
        struct results *r = results_open(&o, P, &d, &info, err, sizeof err);
        CHECKF(r != NULL, "resume (rule %d): %s", rule, err);
        results_close(r);
        /* Redone: there.jpg, and with the default rule (any regular file) there.tiff. */
        int redo[6] = {0, 1, 0, 0, 0, !rule};
        for (int i = 0; i < 6 && d; i++)
            CHECKF(in_set(d, p[i]) == !redo[i], "rule %d: %s is %sin the done-set", rule, p[i] + strlen(tmpdir),
                   in_set(d, p[i]) ? "" : "not ");
        CHECKF(info.dropped_failed == 1u + !rule, "rule %d: %llu failed rows dropped", rule,
               (unsigned long long)info.dropped_failed);
        CHECKF(info.kept_failed == 3u + rule && info.kept_missing == 3u + rule, "rule %d: kept %llu failed rows "
               "(%llu missing)", rule, (unsigned long long)info.kept_failed, (unsigned long long)info.kept_missing);
        int keep[6];
        for (int i = 0; i < 6; i++)
            keep[i] = !redo[i];
        size_t wl;
        char *want = kept_rows(&b, keep, &wl);
        CHECKF(file_is(want, wl), "rule %d: the file is not the ok row and the kept failed rows, byte for byte", rule);
        free(want);
        doneset_free(d);
        free(b.text);
    }
    /* Rows not under DIR are never dropped (the run would not find them): the resume refuses them. */
    snprintf(p[1], sizeof p[1], "%s/elsewhere.jpg", tmpdir);
    CU_ASSERT_FATAL(write_file(p[1], "x", 1) == 0);
    struct built b;
    if (build(rows, 2, &b) == 0) {
        struct doneset *d = NULL;
        struct resume_info info;
        char err[512] = "";
        struct results_opts o = {.path = file, .dir = dir, .resume = 1, .retry_failed = 1,
                                 .can_redo = selection_finds, .can_redo_ud = &cfg};
        struct results *r = results_open(&o, P, &d, &info, err, sizeof err);
        CHECKF(r == NULL && strstr(err, "not under"), "a failed row outside DIR: %s", r ? "accepted" : err);
        results_close(r);
        doneset_free(d);
        free(b.text);
    }
    unlink(p[1]);
    CU_ASSERT(tree_rm(dir) == 0);
}

/* Paths that only a careful reader gets back: every one must be found again. */
static void test_hostile_paths_found(void)
{
    static const struct row rows[] = {
        {"\tleading-tab.jpg", 1, "1"},
        {"trailing-tab.jpg\t", 1, "1"},
        {" lead-space.jpg", 1, "1"},
        {"trail-space.jpg ", 1, "1"},
        {"cr\r.jpg", 1, "1"},
        {"crlf\r\n.jpg", 1, "1"},
        {"\xff\xfe\x80.jpg", 1, "1"},
        {"", 1, "1"},
        {"\"\"\"", 1, "1"},
    };
    int n = (int)(sizeof rows / sizeof rows[0]);
    struct built b;
    if (build(rows, n, &b))
        return;
    struct resume_info info;
    struct doneset *d = open_ok(0, &info);
    for (int i = 0; i < n; i++)
        CHECKF(d && in_set(d, rows[i].path), "path %d (%zu bytes) is not found again after resume", i,
               strlen(rows[i].path));
    CU_ASSERT_EQUAL(doneset_size(d), (uint64_t)n);
    doneset_free(d);
    free(b.text);
}

/* resume_parse on text in memory: complete_len and counts. */
static void test_parse_in_memory(void)
{
    struct built b;
    if (build(base_rows, N_BASE, &b))
        return;
    char *h = csv_header(P);
    for (size_t cut = b.header_len; cut <= b.len; cut += 7) {
        struct doneset *d = doneset_new();
        struct resume_info info = {0};
        size_t complete = 12345;
        char err[256];
        int64_t n = resume_parse(b.text, cut, h, 0, d, &complete, &info, err, sizeof err);
        int whole = 0;
        size_t want = b.header_len;
        for (int i = 0; i < N_BASE; i++)
            if (b.end[i] <= cut) {
                whole++;
                want = b.end[i];
            }
        CHECKF(n == whole + 1 && complete == want, "cut %zu: %lld records, complete %zu; want %d, %zu", cut,
               (long long)n, complete, whole + 1, want);
        CU_ASSERT_EQUAL(doneset_size(d), (uint64_t)whole);
        doneset_free(d);
    }
    free(h);
    free(b.text);
}

/* ---- the done-set ---- */

static void test_doneset(void)
{
    struct doneset *d = doneset_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_FALSE(doneset_has(d, "", 0));
    CU_ASSERT_EQUAL(doneset_add(d, "", 0), 1);
    CU_ASSERT_EQUAL(doneset_add(d, "", 0), 0);
    CU_ASSERT_TRUE(doneset_has(d, "", 0));

    enum { N = 100000 };
    char p[64];
    int bad_add = 0, bad_dup = 0, bad_has = 0, bad_absent = 0;
    for (int i = 0; i < N; i++) {
        int l = snprintf(p, sizeof p, "photos/%03d/img_%07d.jpg", i % 997, i);
        bad_add += doneset_add(d, p, (size_t)l) != 1;
    }
    for (int i = 0; i < N; i++) {
        int l = snprintf(p, sizeof p, "photos/%03d/img_%07d.jpg", i % 997, i);
        bad_dup += doneset_add(d, p, (size_t)l) != 0;
        bad_has += !doneset_has(d, p, (size_t)l);
        bad_absent += doneset_has(d, p, (size_t)l - 1); /* a prefix */
        p[l - 1] = 'G';                                  /* the last byte differs */
        bad_absent += doneset_has(d, p, (size_t)l);
        int l2 = snprintf(p, sizeof p, "photos/%03d/img_%07d.jpg", (i + 1) % 997, i);
        bad_absent += doneset_has(d, p, (size_t)l2);
    }
    CU_ASSERT_EQUAL(bad_add, 0);
    CU_ASSERT_EQUAL(bad_dup, 0);
    CU_ASSERT_EQUAL(bad_has, 0);
    CU_ASSERT_EQUAL(bad_absent, 0);
    CU_ASSERT_EQUAL(doneset_size(d), N + 1);

    /* 256 paths that differ only in their last byte (NUL included), and long ones. */
    char q[4100];
    memset(q, 'x', sizeof q);
    int bad = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < 256; c++) {
            q[40] = (char)c;
            q[4099] = (char)c;
            bad += doneset_add(d, q, 41) != !pass;
            bad += doneset_add(d, q, 4100) != !pass;
        }
    for (int c = 0; c < 256; c++) {
        q[40] = (char)c;
        q[4099] = (char)c;
        bad += !doneset_has(d, q, 41) || !doneset_has(d, q, 4100) || doneset_has(d, q, 4099);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(doneset_size(d), N + 1 + 512);
    doneset_free(d);

    doneset_free(NULL);
    CU_ASSERT_EQUAL(doneset_size(NULL), 0);
    CU_ASSERT_FALSE(doneset_has(NULL, "a", 1));
}

int register_resume(void)
{
    CU_pSuite s = CU_add_suite("resume", suite_init, suite_clean);
    if (!s)
        return -1;
    if (!CU_add_test(s, "missing, empty, header-only, torn-header files", test_missing_and_empty) ||
        !CU_add_test(s, "a whole file: ok and failed rows in the set, file untouched", test_whole_file) ||
        !CU_add_test(s, "retry_failed: only ok rows stay, byte for byte", test_retry_failed) ||
        !CU_add_test(s, "torn last row, every way a crash can cut it", test_torn_last_row) ||
        !CU_add_test(s, "wrong header: -1, move it aside, file untouched", test_wrong_header) ||
        !CU_add_test(s, "damaged row in the middle: -1, file untouched", test_damaged_middle) ||
        !CU_add_test(s, "duplicates collapse to one row", test_duplicates) ||
        !CU_add_test(s, "retry_failed keeps the failed rows of images that are gone", test_retry_failed_gone) ||
        !CU_add_test(s, "hostile paths (tabs, spaces, CR, bytes) are found again", test_hostile_paths_found) ||
        !CU_add_test(s, "resume_parse: complete_len at every cut", test_parse_in_memory) ||
        !CU_add_test(s, "doneset: 100k paths, last-byte twins, empty, long", test_doneset))
        return -1;
    return 0;
}
