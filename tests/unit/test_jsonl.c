/* Suite "jsonl": results written as JSON Lines (src/results/results.c, resume.c; resume.h says
 * what a row is) and the JSON string codec they use for paths and reasons (src/common/json.c:
 * json_put_bytes, json_string_bytes, json_members).
 *
 * Rows are made with the results writer, so they are exactly what a run writes, and checked
 * with the strict JSON reader: each line one object with the pipeline's columns as keys, in
 * order, each result spliced in byte for byte (an int64, 1e999, a "\u0000" inside a string come
 * out as they went in). Then the file is damaged the ways a crash damages it (cut at every
 * byte) and read back: the complete lines are kept byte for byte, the torn one is cut off. A
 * damaged line in the middle, or rows of another pipeline, are errors that leave the file alone;
 * --retry-failed drops only failed rows; paths of any bytes (not UTF-8, control characters) are
 * found again. */
#include "results/resume.h"

#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/rng.h"
#include "flow/item.h"
#include "results/results.h"

#include "check.h"
#include "util.h"

static struct pipeline *P;
static char tmpdir[512];
static char file[600];

static int suite_init(void)
{
    if (make_tmpdir(tmpdir, sizeof tmpdir, "jsonl"))
        return -1;
    snprintf(file, sizeof file, "%s/results.jsonl", tmpdir);
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

/* ---- the string codec ---- */

/* The bytes s[0..n) through json_put_bytes and back. 1 when they come back the same and the
 * string is strict JSON. */
static int round_trip(const char *s, size_t n)
{
    char *enc = malloc(6 * n + 2), *dec = malloc(6 * n + 2);
    size_t el = json_put_bytes(s, n, enc);
    char err[128];
    long dl = json_check(enc, el, err, sizeof err) == 0 ? json_string_bytes(enc, el, dec) : -1;
    int ok = dl == (long)n && !memcmp(dec, s, n);
    if (!ok)
        fprintf(stderr, "round trip of %s: %.*s (%ld)\n", printable(s, n), (int)el, enc, dl);
    free(enc);
    free(dec);
    return ok;
}

static void test_codec(void)
{
    char out[64];
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"plain", 5, "\"plain\""},
        {"a\"b\\c", 5, "\"a\\\"b\\\\c\""},
        {"t\tn\nr\r", 6, "\"t\\tn\\nr\\r\""},
        {"\x01\x1f", 2, "\"\\u0001\\u001f\""},
        {"caf\xc3\xa9", 5, "\"caf\xc3\xa9\""},          /* UTF-8 stays as it is */
        {"\xff", 1, "\"\\udcff\""},                       /* a byte of no character: surrogateescape */
        {"\xc3", 1, "\"\\udcc3\""},                       /* half a character */
        {"\xed\xa0\x80", 3, "\"\\udced\\udca0\\udc80\""}, /* an encoded surrogate is not UTF-8 */
        {"\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\""},  /* outside the BMP */
        {"", 0, "\"\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t l = json_put_bytes(cases[i].in, cases[i].n, out);
        CHECKF(l == strlen(cases[i].want) && !memcmp(out, cases[i].want, l), "case %zu: %.*s", i, (int)l, out);
    }
    int bad = 0;
    for (int c = 0; c < 256; c++) { /* every byte, alone and between others */
        char one = (char)c, three[3] = {'a', (char)c, 'z'};
        bad += !round_trip(&one, 1) + !round_trip(three, 3);
    }
    uint64_t rng = 12345;
    for (int k = 0; k < 2000; k++) {
        char s[64];
        size_t n = rng_next(&rng) % sizeof s;
        fill_random(&rng, (unsigned char *)s, n);
        bad += !round_trip(s, n);
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* Escapes another writer may use come back too; something else is refused. */
    char dec[32];
    CU_ASSERT_EQUAL(json_string_bytes("\"\\u00e9\\/\\ud83d\\ude00\"", 22, dec), 7);
    CU_ASSERT_EQUAL(memcmp(dec, "\xc3\xa9/\xf0\x9f\x98\x80", 7), 0);
    CU_ASSERT_EQUAL(json_string_bytes("\"\\ud800\"", 8, dec), 3); /* another lone one: U+FFFD */
    CU_ASSERT_EQUAL(memcmp(dec, "\xef\xbf\xbd", 3), 0);
    CU_ASSERT_EQUAL(json_string_bytes("\"a\" ", 4, dec), -1);
    CU_ASSERT_EQUAL(json_string_bytes("12", 2, dec), -1);
    CU_ASSERT_EQUAL(json_string_bytes("\"\\x\"", 4, dec), -1);
}

static int count_member(void *arg, const char *key, size_t keylen, const char *v, size_t vlen)
{
    (void)key;
    (void)v;
    (void)vlen;
    (*(int *)arg)++;
    return keylen == 4 && !memcmp(key, "stop", 4);
}

static void test_members(void)
{
    int n = 0;
    const char *o = " { \"a\" : 1 , \"b\\n\":[1,{\"x\":2}], \"c\": \"}\" } ";
    CU_ASSERT_EQUAL(json_members(o, strlen(o), count_member, &n), 3);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(json_members("{}", 2, count_member, &n), 0);
    CU_ASSERT_EQUAL(json_members("[1]", 3, count_member, &n), -1);
    CU_ASSERT_EQUAL(json_members("{\"a\":1,\"stop\":2,\"z\":3}", 22, count_member, &n), -1);
    const char *line = "{\"path\":\"x\",\"status\":\"ok\",\"m.1\":null,\"error\":null}\n";
    char *cols = jsonl_columns(line, strlen(line));
    CU_ASSERT_PTR_NOT_NULL_FATAL(cols);
    CU_ASSERT_STRING_EQUAL(cols, "path,status,m.1,error\n");
    free(cols);
    CU_ASSERT_PTR_NULL(jsonl_columns("{\"a,b\":1}", 9));
    CU_ASSERT_PTR_NULL(jsonl_columns("{\"\":1}", 6));
    CU_ASSERT_PTR_NULL(jsonl_columns("[1]", 3));
    CU_ASSERT_PTR_NULL(jsonl_columns("{\"a\":1", 6));
}

/* ---- rows ---- */

struct row {
    const char *path;
    size_t path_len; /* 0: strlen */
    int ok;
    const char *m01, *m02; /* the results as the server's text (Raw), or NULL: the stage did not run */
};

static const struct row base_rows[] = {
    {"photos/a.jpg", 0, 1, "{\"id\":1234567890123456789,\"big\":1e999}", "[\"tag_a\", \"tag_b\"]"},
    {"photos/b \"q\",\n.png", 0, 0, NULL, NULL},
    {"photos/caf\xc3\xa9/\xff\xfe.jpg", 0, 1, "\"a\\u0000b\"", "false"},
    {"photos/c.jpg", 0, 1, "null", NULL},
    {"photos/\x01\x7f\t.jpg", 0, 0, "0", NULL},
    {"photos/d.jpg", 0, 1, "{\"s\" : \"x\" }", "[]"},
};
#define N_BASE (int)(sizeof base_rows / sizeof base_rows[0])

struct built {
    char *text;
    size_t len;
    size_t end[16];
    int n;
};

/* Writes the rows with the results writer (JSON Lines) into file, and reads the bytes back. */
static int build(const struct row *rows, int n, struct built *b)
{
    memset(b, 0, sizeof *b);
    char err[256] = "";
    unlink(file);
    struct results_opts o = {.path = file, .format = RESULTS_JSONL};
    struct doneset *none;
    struct resume_info ri;
    struct results *c = results_open(&o, P, &none, &ri, err, sizeof err);
    if (!c) {
        CHECKF(0, "results_open: %s", err);
        return -1;
    }
    struct stat st;
    for (int i = 0; i < n; i++) {
        size_t pl = rows[i].path_len ? rows[i].path_len : strlen(rows[i].path);
        struct item *it = item_new(rows[i].path, pl, 0, P->n, (uint64_t)i);
        it->status = rows[i].ok ? ITEM_OK : ITEM_FAILED;
        if (!rows[i].ok)
            it->error = strdup("model_02: HTTP 500: \"boom\"\n\xff (after 3 attempts)");
        it->results[0] = rows[i].m01 ? cJSON_CreateRaw(rows[i].m01) : NULL;
        it->results[1] = rows[i].m02 ? cJSON_CreateRaw(rows[i].m02) : NULL;
        it->attempts = 7;
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

/* What a line must hold: key k's value checked against the row. */
struct expect {
    const struct row *r;
    int k, bad;
};

static int check_member(void *arg, const char *key, size_t keylen, const char *v, size_t vlen)
{
    struct expect *x = arg;
    static const char *const keys[] = {"path", "status", "model_01", "model_02", "model_03", "model_05", "error",
                                       "attempts", "elapsed_ms"};
    static const char failed_error[] = "\"model_02: HTTP 500: \\\"boom\\\"\\n\\udcff (after 3 attempts)\"";
    int k = x->k++;
    if (k >= 9 || keylen != strlen(keys[k]) || memcmp(key, keys[k], keylen))
        return x->bad = 1;
    const char *want = NULL; /* path: decoded below; elapsed_ms: any number */
    if (k == 1)
        want = x->r->ok ? "\"ok\"" : "\"failed\"";
    else if (k == 2 || k == 3)
        want = (k == 2 ? x->r->m01 : x->r->m02) ? (k == 2 ? x->r->m01 : x->r->m02) : "null";
    else if (k == 4 || k == 5)
        want = "null"; /* stages that did not run */
    else if (k == 6)
        want = x->r->ok ? "null" : failed_error;
    else if (k == 7)
        want = "7";
    if (k == 0) {
        char dec[256];
        long dl = json_string_bytes(v, vlen, dec);
        size_t pl = x->r->path_len ? x->r->path_len : strlen(x->r->path);
        x->bad |= dl != (long)pl || memcmp(dec, x->r->path, pl);
    } else if (want) {
        x->bad |= vlen != strlen(want) || memcmp(v, want, vlen); /* byte for byte */
    }
    return x->bad;
}

static void test_rows_written(void)
{
    struct built b;
    if (build(base_rows, N_BASE, &b))
        return;
    size_t start = 0;
    for (int i = 0; i < b.n; i++) {
        CHECKF(b.text[b.end[i] - 1] == '\n', "row %d does not end its line", i);
        char err[128];
        size_t len = b.end[i] - 1 - start;
        CHECKF(json_check(b.text + start, len, err, sizeof err) == 0, "row %d is not JSON: %s", i, err);
        CHECKF(!memchr(b.text + start, '\n', len), "row %d holds a raw newline", i);
        struct expect x = {&base_rows[i], 0, 0};
        json_members(b.text + start, len, check_member, &x);
        CHECKF(!x.bad && x.k == 9, "row %d: %.*s", i, (int)len, b.text + start);
        start = b.end[i];
    }
    free(b.text);
}

static int in_set(const struct doneset *d, const struct row *r)
{
    return doneset_has(d, r->path, r->path_len ? r->path_len : strlen(r->path));
}

static int found_again(void *ud, const char *path, size_t len)
{
    (void)ud;
    (void)path;
    (void)len;
    return 1;
}

static int reopen(int retry_failed, struct doneset **d, struct resume_info *info, char *err, size_t errlen)
{
    struct results_opts o = {.path = file, .format = RESULTS_JSONL, .resume = 1, .retry_failed = retry_failed,
                             .can_redo = found_again};
    struct results *r = results_open(&o, P, d, info, err, errlen);
    return r ? results_close(r) : -1;
}

/* Cut at every byte, as a crash can leave it: the whole lines before the cut stay byte for byte,
 * the torn one goes, and every whole line's path is in the set. */
static void test_torn_every_byte(void)
{
    struct built b;
    if (build(base_rows, N_BASE, &b))
        return;
    int bad = 0;
    for (size_t cut = 0; cut <= b.len; cut++) {
        write_file(file, b.text, cut);
        struct doneset *d = NULL;
        struct resume_info info;
        char err[256];
        int whole = 0;
        size_t want = 0;
        for (int i = 0; i < b.n; i++)
            if (b.end[i] <= cut)
                whole++, want = b.end[i];
        if (reopen(0, &d, &info, err, sizeof err)) {
            CHECKF(0, "cut %zu: %s", cut, err);
            bad++;
            continue;
        }
        size_t len;
        char *now = slurp(file, &len);
        bad += !now || len != want || memcmp(now, b.text, want) || info.torn_bytes != cut - want ||
               info.rows != (uint64_t)whole;
        for (int i = 0; i < b.n; i++)
            bad += in_set(d, &base_rows[i]) != (i < whole);
        free(now);
        doneset_free(d);
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(b.text);
}

/* A damaged line that is not the last, rows of another pipeline, a CSV file: refused, untouched. */
static void test_refused(void)
{
    struct built b;
    if (build(base_rows, N_BASE, &b))
        return;
    static const struct {
        const char *what, *line, *msg;
    } damage[] = {
        {"not JSON", "{\"path\":\"x\",\"status\":\"ok\"\n", "not JSON"},
        {"another pipeline's keys",
         "{\"path\":\"x\",\"status\":\"ok\",\"other\":1,\"error\":null,\"attempts\":1,\"elapsed_ms\":1}\n", "columns"},
        {"a status of neither kind",
         "{\"path\":\"x\",\"status\":\"done\",\"model_01\":1,\"model_02\":1,\"model_03\":1,\"model_05\":1,"
         "\"error\":null,\"attempts\":1,\"elapsed_ms\":1}\n", "status"},
        {"attempts not a number",
         "{\"path\":\"x\",\"status\":\"ok\",\"model_01\":1,\"model_02\":1,\"model_03\":1,\"model_05\":1,"
         "\"error\":null,\"attempts\":\"1\",\"elapsed_ms\":1}\n", "numbers"},
        {"an empty line", "\n", "not JSON"},
    };
    for (size_t k = 0; k < sizeof damage / sizeof damage[0]; k++) {
        size_t dl = strlen(damage[k].line), len = b.end[1] + dl + (b.len - b.end[1]);
        char *t = malloc(len);
        memcpy(t, b.text, b.end[1]);
        memcpy(t + b.end[1], damage[k].line, dl);
        memcpy(t + b.end[1] + dl, b.text + b.end[1], b.len - b.end[1]);
        write_file(file, t, len);
        struct doneset *d = NULL;
        struct resume_info info;
        char err[256] = "";
        int rc = reopen(0, &d, &info, err, sizeof err);
        size_t now_len;
        char *now = slurp(file, &now_len);
        CHECKF(rc == -1 && strstr(err, "line 3") && strstr(err, damage[k].msg) && now && now_len == len &&
                   !memcmp(now, t, len),
               "%s: rc %d: %s", damage[k].what, rc, err);
        free(now);
        free(t);
    }
    static const char csv[] = "path,status,model_01,model_02,model_03,model_05,error,attempts,elapsed_ms\n";
    write_file(file, csv, strlen(csv));
    struct doneset *d = NULL;
    struct resume_info info;
    char err[256] = "";
    CU_ASSERT_EQUAL(reopen(0, &d, &info, err, sizeof err), -1);
    CHECKF(strstr(err, "not a row") != NULL, "%s", err);
    free(b.text);
}

/* --retry-failed drops the failed lines (their paths out of the set); the others stay byte for
 * byte, in order. A path given twice keeps its first line. */
static void test_retry_failed_and_duplicates(void)
{
    struct row rows[N_BASE + 1];
    memcpy(rows, base_rows, sizeof base_rows);
    rows[N_BASE] = (struct row){"photos/a.jpg", 0, 0, NULL, NULL}; /* a second line for a.jpg */
    struct built b;
    if (build(rows, N_BASE + 1, &b))
        return;
    struct doneset *d = NULL;
    struct resume_info info;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(reopen(1, &d, &info, err, sizeof err), 0);
    size_t len, want_len = 0, start = 0;
    char *now = slurp(file, &len), *want = malloc(b.len);
    for (int i = 0; i < N_BASE + 1; i++) {
        if (i < N_BASE && rows[i].ok) {
            memcpy(want + want_len, b.text + start, b.end[i] - start);
            want_len += b.end[i] - start;
        }
        start = b.end[i];
    }
    CU_ASSERT(now && len == want_len && !memcmp(now, want, len));
    for (int i = 0; i < N_BASE; i++)
        CHECKF(in_set(d, &rows[i]) == rows[i].ok, "row %d", i);
    CU_ASSERT_EQUAL(info.dropped_failed, 2);
    free(now);
    free(want);
    doneset_free(d);
    free(b.text);
}

int register_jsonl(void)
{
    CU_pSuite s = CU_add_suite("jsonl", suite_init, suite_clean);
    if (!s)
        return -1;
    if (!CU_add_test(s, "json_put_bytes and json_string_bytes: every byte, surrogateescape, strict JSON",
                     test_codec) ||
        !CU_add_test(s, "json_members and jsonl_columns", test_members) ||
        !CU_add_test(s, "rows: one object a line, the columns in order, results byte for byte", test_rows_written) ||
        !CU_add_test(s, "a torn last line, cut at every byte: whole lines kept, the torn one cut off",
                     test_torn_every_byte) ||
        !CU_add_test(s, "damaged lines, another pipeline's rows, a CSV file: refused, file untouched", test_refused) ||
        !CU_add_test(s, "--retry-failed drops failed lines; a path twice keeps its first", test_retry_failed_and_duplicates))
        return -1;
    return 0;
}
