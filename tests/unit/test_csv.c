/* Suite "csv": the results file writer (src/results/results.c).
 *
 * The header for the default pipeline; rows for items with hostile paths, errors and results,
 * read back with libcsv (CSV_STRICT, default options: what resume.c reads with) and with
 * python3's csv module, byte for byte in every field; append mode and the header. */
#include "results/results.h"

#include <CUnit/CUnit.h>
#include <csv.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "util.h"

static struct pipeline *P;
static char tmpdir[512];

static int suite_init(void)
{
    if (make_tmpdir(tmpdir, sizeof tmpdir, "csv"))
        return -1;
    return pipeline_default(&P) ? -1 : 0;
}

static int suite_clean(void)
{
    pipeline_free(P);
    P = NULL;
    rmdir(tmpdir);
    return 0;
}

static void tmp_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

/* ---- records read back with libcsv ---- */

struct field {
    char *s;
    size_t n;
};
struct record {
    struct field f[16];
    int n;
};
struct records {
    struct record r[64];
    int n;
    int overflow;
};

static void cb_field(void *s, size_t len, void *data)
{
    struct records *rs = data;
    if (rs->n >= 64) {
        rs->overflow = 1;
        return;
    }
    struct record *r = &rs->r[rs->n];
    if (r->n >= 16) {
        rs->overflow = 1;
        return;
    }
    r->f[r->n].s = malloc(len + 1);
    memcpy(r->f[r->n].s, s, len);
    r->f[r->n].s[len] = 0;
    r->f[r->n].n = len;
    r->n++;
}

static void cb_record(int c, void *data)
{
    (void)c;
    struct records *rs = data;
    if (rs->n < 64)
        rs->n++;
}

static int parse_csv(const char *text, size_t len, struct records *rs)
{
    memset(rs, 0, sizeof *rs);
    struct csv_parser p;
    csv_init(&p, CSV_STRICT | CSV_STRICT_FINI);
    int ok = csv_parse(&p, text, len, cb_field, cb_record, rs) == len;
    ok &= csv_fini(&p, cb_field, cb_record, rs) == 0;
    csv_free(&p);
    return ok && !rs->overflow;
}

static void free_records(struct records *rs)
{
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < rs->r[i].n; j++)
            free(rs->r[i].f[j].s);
}

/* ---- items ---- */

static const struct {
    const char *path;
    size_t len; /* 0: strlen */
} paths[] = {
    {"plain/a.jpg", 0},
    {"dir,with,commas/x.jpg", 0},
    {"quote\"in\"name.jpg", 0},
    {"\"", 0},
    {"new\nline.jpg", 0},
    {"cr\rname.jpg", 0},
    {"crlf\r\nname.jpg", 0},
    {"\n", 0},
    {" leading.jpg", 0},
    {"trailing.jpg ", 0},
    {"  both  ", 0},
    {"tab\tinside.jpg", 0},
    {"\tleading-tab.jpg", 0},
    {"trailing-tab.jpg\t", 0},
    {"\xff\xfe\x80 bytes \xe9\xc3\xa9.jpg", 0},
    {"\x80", 0},
    {"all: ,\"\n\r\xff \t end", 0},
    {"=cmd|x.jpg", 0},
    {"", 0},
};
#define N_PATHS (sizeof paths / sizeof paths[0])

static const char *results_json[] = {
    "{\"label\":\"ca\\\"t\",\"score\":12,\"s\":\"a,b\\nc\"}",
    "[\"tag_a\",\"tag,b\",\"\\\"q\\\"\"]",
    "{\"id\":\"00ff\",\"regions\":2}",
    "{\"n\":2,\"sub-img\":[]}", /* model_04: not a CSV column */
    "[{\"label\":\"dog\",\"bytes\":17},null]",
};

static const char *errors[] = {
    "model_04: HTTP 500: boom, \"again\" (after 3 attempts)",
    "model_01: line\nbreak",
    " leading and trailing ",
    "\xff\xfe invalid utf-8",
};

static struct item *make_item(size_t i)
{
    const char *path = paths[i].path;
    size_t len = paths[i].len ? paths[i].len : strlen(path);
    struct item *it = item_new(path, len, 0, P->n, i);
    if (!it)
        return NULL;
    it->attempts = (uint32_t)(i * 3);
    if (i % 3 == 2) {
        it->status = ITEM_FAILED;
        it->error = strdup(errors[i % 4]);
        it->results[0] = cJSON_Parse(results_json[0]); /* partial results stay */
    } else {
        it->status = ITEM_OK;
        for (int s = 0; s < 5; s++)
            if (i % 3 == 0 || s < 2)
                it->results[s] = cJSON_Parse(results_json[s]);
    }
    return it;
}

/* The fields the row of item i must hold, except elapsed_ms. */
static int expected_fields(const struct item *it, char *want[8], size_t wl[8])
{
    int n = 0;
    want[n] = malloc(it->path_len + 1);
    memcpy(want[n], it->path, it->path_len + 1);
    wl[n++] = it->path_len;
    want[n] = strdup(it->status == ITEM_OK ? "ok" : "failed");
    wl[n] = strlen(want[n]);
    n++;
    for (int s = 0; s < P->n; s++) {
        if (!P->stages[s].csv)
            continue;
        want[n] = it->results[s] ? cJSON_PrintUnformatted(it->results[s]) : strdup("");
        wl[n] = strlen(want[n]);
        n++;
    }
    want[n] = strdup(it->status == ITEM_OK || !it->error ? "" : it->error);
    wl[n] = strlen(want[n]);
    n++;
    char num[32];
    snprintf(num, sizeof num, "%u", it->attempts);
    want[n] = strdup(num);
    wl[n] = strlen(num);
    n++;
    return n;
}

static const char *DEFAULT_HEADER = "path,status,model_01,model_02,model_03,model_05,error,attempts,elapsed_ms\n";

static void test_header(void)
{
    char *h = csv_header(P);
    CU_ASSERT_STRING_EQUAL(h, DEFAULT_HEADER);
    free(h);
    struct pipeline *q;
    char err[256];
    const char *text = "{\"stages\":[{\"name\":\"a.b-c_d\",\"url\":\"/a\",\"csv\":false},{\"name\":\"Z9\",\"url\":\"/z\"}]}";
    CU_ASSERT_EQUAL_FATAL(pipeline_parse(text, strlen(text), "t", &q, err, sizeof err), 0);
    h = csv_header(q);
    CU_ASSERT_STRING_EQUAL(h, "path,status,Z9,error,attempts,elapsed_ms\n");
    free(h);
    pipeline_free(q);
}

static void test_put_field(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"", ""},
        {"abc", "abc"},
        {"a,b", "\"a,b\""},
        {"a\"b", "\"a\"\"b\""},
        {"a\nb", "\"a\nb\""},
        {"a\rb", "\"a\rb\""},
        {" a", "\" a\""},
        {"a ", "\"a \""},
        {"\xff", "\xff"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *buf = NULL;
        size_t len = 0, cap = 0;
        csv_put_field(&buf, &len, &cap, "x,", 2); /* appends after what is there */
        csv_put_field(&buf, &len, &cap, cases[i].in, strlen(cases[i].in));
        char want[64];
        snprintf(want, sizeof want, "\"x,\"%s", cases[i].out);
        CHECKF(len == strlen(want) && buf && !memcmp(buf, want, len), "field '%s': got '%s', want '%s'",
               printable(cases[i].in, strlen(cases[i].in)), buf ? printable(buf, len) : "(null)",
               printable(want, strlen(want)));
        free(buf);
    }
}

/* Opens the results file as a run would: append keeps what is there (resume). */
static struct results *open_out(const char *path, int append, long sync_every, char *err, size_t errlen)
{
    struct results_opts o = {.path = path, .resume = append, .force = 1, .sync_every = sync_every};
    struct doneset *d;
    struct resume_info info;
    struct results *r = results_open(&o, P, &d, &info, err, errlen);
    doneset_free(d);
    return r;
}

/* Writes every item to name; returns the items (caller frees) in *its. */
static int write_items(const char *path, struct item **its)
{
    char err[256] = "";
    struct results *c = open_out(path, 0, 3, err, sizeof err);
    CHECKF(c != NULL, "results_open: %s", err);
    if (!c)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < N_PATHS; i++) {
        its[i] = make_item(i);
        if (results_write(c, its[i], err, sizeof err)) {
            CHECKF(0, "results_write: %s", err);
            rc = -1;
        }
    }
    CU_ASSERT_EQUAL(results_close(c), 0);
    return rc;
}

static int all_digits(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static void test_round_trip_libcsv(void)
{
    char path[600];
    tmp_path(path, sizeof path, "rows.csv");
    struct item *its[N_PATHS] = {0};
    if (write_items(path, its) == 0) {
        size_t len;
        char *text = slurp(path, &len);
        CU_ASSERT_PTR_NOT_NULL_FATAL(text);
        CU_ASSERT(len > strlen(DEFAULT_HEADER) && !memcmp(text, DEFAULT_HEADER, strlen(DEFAULT_HEADER)));
        CU_ASSERT(text[len - 1] == '\n');
        struct records rs;
        CHECKF(parse_csv(text, len, &rs), "libcsv (strict) cannot parse the file");
        CHECKF(rs.n == (int)N_PATHS + 1, "%d records, want %zu", rs.n, N_PATHS + 1);
        for (int r = 1; r < rs.n && r <= (int)N_PATHS; r++) {
            struct item *it = its[r - 1];
            char *want[8];
            size_t wl[8];
            int nw = expected_fields(it, want, wl);
            CHECKF(rs.r[r].n == nw + 1, "row %d (%s): %d fields, want %d", r, printable(it->path, it->path_len),
                   rs.r[r].n, nw + 1);
            for (int f = 0; f < nw && f < rs.r[r].n; f++)
                CHECKF(rs.r[r].f[f].n == wl[f] && !memcmp(rs.r[r].f[f].s, want[f], wl[f]),
                       "row %d field %d: got '%s', want '%s'", r, f, printable(rs.r[r].f[f].s, rs.r[r].f[f].n),
                       printable(want[f], wl[f]));
            if (rs.r[r].n == nw + 1)
                CHECKF(all_digits(rs.r[r].f[nw].s, rs.r[r].f[nw].n), "row %d: elapsed_ms '%s'", r,
                       printable(rs.r[r].f[nw].s, rs.r[r].f[nw].n));
            for (int f = 0; f < nw; f++)
                free(want[f]);
        }
        free_records(&rs);
        free(text);
    }
    for (size_t i = 0; i < N_PATHS; i++)
        item_free(its[i]);
    unlink(path);
}

static const char PY[] =
    "import csv, sys\n"
    "with open(sys.argv[1], newline='', encoding='latin-1') as f, open(sys.argv[2], 'w') as o:\n"
    "    for row in csv.reader(f, strict=True):\n"
    "        o.write(' '.join(x.encode('latin-1').hex() or '-' for x in row) + '\\n')\n";

static int unhex(const char *h, size_t n, char *out)
{
    if (n == 1 && h[0] == '-')
        return 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned v;
        if (sscanf(h + i, "%2x", &v) != 1)
            return -1;
        out[i / 2] = (char)v;
    }
    return (int)(n / 2);
}

static void test_round_trip_python(void)
{
    if (system("python3 -c 'import csv' >/dev/null 2>&1") != 0) {
        CU_FAIL("python3 with its csv module is not installed (make deps installs it): the file cannot be read "
                "the way Python users read it");
        return;
    }
    char path[600], py[600], out[600], cmd[2048];
    tmp_path(path, sizeof path, "py.csv");
    tmp_path(py, sizeof py, "check.py");
    tmp_path(out, sizeof out, "py.out");
    CU_ASSERT_FATAL(write_file(py, PY, strlen(PY)) == 0);
    struct item *its[N_PATHS] = {0};
    if (write_items(path, its) == 0) {
        snprintf(cmd, sizeof cmd, "python3 '%s' '%s' '%s'", py, path, out);
        int rc = system(cmd);
        CHECKF(rc == 0, "python's csv module could not read the file (%d)", rc);
        FILE *o = fopen(out, "r");
        char line[8192];
        int r = 0;
        while (o && fgets(line, sizeof line, o)) {
            if (r == 0) {
                r++;
                continue; /* the header */
            }
            if (r > (int)N_PATHS) {
                CHECKF(0, "python sees more rows than written");
                break;
            }
            struct item *it = its[r - 1];
            char *want[8];
            size_t wl[8];
            int nw = expected_fields(it, want, wl);
            int f = 0;
            for (char *tok = strtok(line, " \n"); tok; tok = strtok(NULL, " \n"), f++) {
                char got[2048];
                int gl = unhex(tok, strlen(tok), got);
                if (f < nw)
                    CHECKF(gl == (int)wl[f] && !memcmp(got, want[f], wl[f]), "python, row %d field %d: got '%s', want '%s'",
                           r, f, gl >= 0 ? printable(got, (size_t)gl) : "?", printable(want[f], wl[f]));
            }
            CHECKF(f == nw + 1, "python, row %d (%s): %d fields, want %d", r, printable(it->path, it->path_len), f,
                   nw + 1);
            for (int k = 0; k < nw; k++)
                free(want[k]);
            r++;
        }
        CHECKF(r == (int)N_PATHS + 1, "python read %d records, want %zu", r, N_PATHS + 1);
        if (o)
            fclose(o);
    }
    for (size_t i = 0; i < N_PATHS; i++)
        item_free(its[i]);
    unlink(path);
    unlink(py);
    unlink(out);
}

/* 1 when the file holds the default header and nothing else. */
static int header_only(const char *path)
{
    size_t len;
    char *t = slurp(path, &len);
    int ok = t && len == strlen(DEFAULT_HEADER) && !memcmp(t, DEFAULT_HEADER, len);
    free(t);
    return ok;
}

static void test_append(void)
{
    char path[600], err[256] = "";
    tmp_path(path, sizeof path, "append.csv");
    unlink(path);
    struct item *it = make_item(0);
    size_t hl = strlen(DEFAULT_HEADER);

    /* append=1 on a missing file: created, with a header. */
    struct results *c = open_out(path, 1, 0, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(results_write(c, it, err, sizeof err), 0);
    CU_ASSERT_EQUAL(results_close(c), 0);
    size_t len1;
    char *t1 = slurp(path, &len1);
    CU_ASSERT_FATAL(t1 && len1 > hl && !memcmp(t1, DEFAULT_HEADER, hl));

    /* append=1 on a non-empty file: no second header, the old bytes kept. */
    c = open_out(path, 1, 1, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(results_write(c, it, err, sizeof err), 0);
    CU_ASSERT_EQUAL(results_close(c), 0);
    size_t len2;
    char *t2 = slurp(path, &len2);
    CU_ASSERT_FATAL(t2 != NULL);
    CU_ASSERT(len2 > len1 && !memcmp(t2, t1, len1));
    CU_ASSERT_PTR_NULL(strstr(t2 + hl, "path,status"));
    struct records rs;
    CU_ASSERT(parse_csv(t2, len2, &rs));
    CU_ASSERT_EQUAL(rs.n, 3);
    free_records(&rs);

    /* append=0: truncated, one header. */
    c = open_out(path, 0, 0, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(results_close(c), 0);
    CU_ASSERT(header_only(path));

    /* append=1 on an existing empty file: the header. */
    CU_ASSERT_FATAL(write_file(path, "", 0) == 0);
    c = open_out(path, 1, 0, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(results_close(c), 0);
    CU_ASSERT(header_only(path));

    /* Without --resume or --force, a file holding rows is refused, and left as it was. */
    CU_ASSERT_FATAL(write_file(path, t2, len2) == 0);
    struct results_opts keep = {.path = path};
    struct doneset *dd;
    struct resume_info ii;
    err[0] = 0;
    CU_ASSERT_PTR_NULL(results_open(&keep, P, &dd, &ii, err, sizeof err));
    CHECKF(strstr(err, "--resume") && strstr(err, "--force"), "refusal: %s", err);
    size_t len5;
    char *t5 = slurp(path, &len5);
    CU_ASSERT(t5 && len5 == len2 && !memcmp(t5, t2, len2));
    free(t5);
    /* An empty file is no loss: taken without --force. */
    CU_ASSERT_FATAL(write_file(path, "", 0) == 0);
    struct results *c0 = results_open(&keep, P, &dd, &ii, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL(c0);
    CU_ASSERT_EQUAL(results_close(c0), 0);

    /* An unwritable place: NULL and a reason. */
    err[0] = 0;
    c = open_out("/nonexistent-dir/annotate/x.csv", 0, 0, err, sizeof err);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT(strstr(err, "/nonexistent-dir/annotate/x.csv") != NULL);
    CU_ASSERT_EQUAL(results_close(NULL), 0);

    free(t1);
    free(t2);
    item_free(it);
    unlink(path);
}

int register_csv(void)
{
    CU_pSuite s = CU_add_suite("csv", suite_init, suite_clean);
    if (!s)
        return -1;
    if (!CU_add_test(s, "header of the default pipeline and a custom one", test_header) ||
        !CU_add_test(s, "csv_put_field quoting", test_put_field) ||
        !CU_add_test(s, "hostile paths, errors, JSON: libcsv strict reads back every byte", test_round_trip_libcsv) ||
        !CU_add_test(s, "the same file through python3's csv module", test_round_trip_python) ||
        !CU_add_test(s, "append: header only on a new or empty file", test_append))
        return -1;
    return 0;
}
