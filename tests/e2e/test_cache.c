/* Suites "cache serial" and "cache concurrent": --cache FILE end to end, against servers that
 * count what they receive (the mock's /stats, tests/servers/versioned.py).
 *
 *   serial (one image at a time, so that valgrind can run it):
 *     - copies of images under other names are sent once; a re-run sends nothing and writes the
 *       same rows with 0 attempts; the summary's hits and misses add up; the file is 0600;
 *     - a changed file sends only itself;
 *     - a stage added to a finished run sends only its own requests; a "version" bump sends that
 *       stage and the stages that use its result, and nothing else (versioned.py's models change
 *       their answers when given another salt);
 *     - annotate cache stats, and prune --keep-pipelines dropping what a pipeline no longer uses;
 *     - a stage that sends a prepared copy ("image"): the copy's bytes are the question;
 *     - a read-only store (a read-only bind mount) and a full one (a small tmpfs): one message,
 *       the run goes on, no image fails, the file stays intact (PRAGMA integrity_check);
 *     - credentials (a header's token, a ${VAR} in a URL) never reach the file;
 *   concurrent:
 *     - copies in flight at once are sent once: curl-multi with two loops, threads, processes,
 *       load=threads,query=processes;
 *     - batches: only the questions the store cannot answer go, each copy once;
 *     - two runs on one store at once;
 *     - kill -9 at random points, then --resume: every row right and the store intact. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "e2e.h"
#include "proc.h"
#include "tree.h"
#include "util.h"

static const char *const MODELS[5] = {"model_01", "model_02", "model_03", "model_04", "model_05"};

/* ---- trees with copies ---- */

/* A generated tree of n distinct images, and copies of the first n_copies under other names in
 * another folder: t->paths lists all of them, the originals first. 0 or -1. */
static int tree_with_copies(struct e2e_tree *t, const char *tag, size_t n, size_t n_copies, unsigned seed)
{
    if (e2e_tree_generated(t, tag, n, seed))
        return -1;
    char dir[700];
    snprintf(dir, sizeof dir, "%s/copies", t->root);
    char **p = realloc(t->paths, (n + n_copies + 1) * sizeof *p);
    if (!p || mkdir(dir, 0755))
        return -1;
    t->paths = p;
    for (size_t i = 0; i < n_copies; i++) {
        size_t len;
        char *bytes = slurp(t->paths[i], &len), path[800];
        snprintf(path, sizeof path, "%s/copy of %zu.png", dir, i);
        int bad = !bytes || write_file(path, bytes, len);
        free(bytes);
        if (bad || !(t->paths[t->n++] = strdup(path)))
            return -1;
    }
    return 0;
}

/* The requests the mock must see for the distinct images among paths[0..n) (each once). */
static void distinct_requests(char *const *paths, size_t n, long req[5])
{
    memset(req, 0, 5 * sizeof *req);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        unsigned char *b = (unsigned char *)slurp(paths[i], &len);
        struct e2e_pred p;
        if (b && e2e_predict(b, len, &p) == 0) {
            for (int m = 0; m < 5; m++)
                req[m] += p.requests[m];
            e2e_pred_free(&p);
        }
        free(b);
    }
}

/* What the mock received since its last reset, per model; *items the items of model_01. */
static void mock_requests(const struct mock_proc *m, long got[5], long *items)
{
    cJSON *st = mock_stats(m);
    for (int i = 0; i < 5; i++) {
        char k[64];
        snprintf(k, sizeof k, "requests.%s", MODELS[i]);
        got[i] = mock_stat(st, k);
    }
    if (items)
        *items = mock_stat(st, "endpoints.model_01.items");
    cJSON_Delete(st);
}

static int same_requests(const long a[5], const long b[5], char *msg, size_t len)
{
    snprintf(msg, len, "got %ld %ld %ld %ld %ld, want %ld %ld %ld %ld %ld", a[0], a[1], a[2], a[3], a[4], b[0], b[1],
             b[2], b[3], b[4]);
    return !memcmp(a, b, 5 * sizeof *a);
}

/* Runs annotate over t with --cache cache and extra options (NULL-terminated); checks the exit
 * status and every row. Returns the exit status. */
static int run_cached(struct e2e_tree *t, const struct mock_proc *m, const char *cache, const char *const *extra,
                      char *out, size_t outlen)
{
    const char *args[32] = {"--cache", cache, "--stats-json", t->sj};
    int k = 4;
    for (int i = 0; extra && extra[i] && k < 31; i++)
        args[k++] = extra[i];
    args[k] = NULL;
    int rc = e2e_run(out, outlen, tmo(180), t->root, t->csv, m->base_url, args);
    struct e2e_csv c;
    if (e2e_csv_read(t->csv, &c) == 0) {
        CHECKF(e2e_check_results(&c, t->paths, t->n, NULL, NULL) == 0, "rows not as predicted (%s)", cache);
        e2e_csv_free(&c);
    } else {
        CU_FAIL("no results file");
    }
    return rc;
}

/* The summary's "cache" object: hits and misses in all. */
static void cache_counts(const char *sj, double *hits, double *misses)
{
    cJSON *j = e2e_read_json(sj);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "cache");
    *hits = e2e_json_num(c, "hits");
    *misses = e2e_json_num(c, "misses");
    cJSON_Delete(j);
}

/* PRAGMA integrity_check of a store, into out ("ok" when intact). */
static void integrity(const char *path, char *out, size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(out, len, "cannot open");
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ---- serial ---- */

static void test_copies_and_rerun(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(tree_with_copies(&t, "cache-copies", 12, 6, 3), 0);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, NULL), 0);
    char cache[700], out[8192], msg[200];
    snprintf(cache, sizeof cache, "%s/answers.db", t.base);
    long want[5], got[5], all[5];
    distinct_requests(t.paths, 12, want);
    distinct_requests(t.paths, t.n, all);
    const char *serial[] = {"--strategy", "serial", NULL};
    int rc = run_cached(&t, &m, cache, serial, out, sizeof out);
    CHECKF(rc == 0, "first run: exit %d: %s", rc, out);
    mock_requests(&m, got, NULL);
    CHECKF(same_requests(got, want, msg, sizeof msg), "first run: the copies were sent again: %s", msg);
    double hits, misses;
    cache_counts(t.sj, &hits, &misses);
    long n_want = want[0] + want[1] + want[2] + want[3] + want[4], n_all = all[0] + all[1] + all[2] + all[3] + all[4];
    CHECKF(misses == (double)n_want && hits == (double)(n_all - n_want), "first run: %.0f hits, %.0f misses", hits,
           misses);
    struct stat sb;
    CHECKF(stat(cache, &sb) == 0 && (sb.st_mode & 0777) == 0600, "the store's mode is %o", sb.st_mode & 0777);

    CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
    rc = run_cached(&t, &m, cache, serial, out, sizeof out);
    CHECKF(rc == 0, "re-run: exit %d: %s", rc, out);
    mock_requests(&m, got, NULL);
    long none[5] = {0};
    CHECKF(same_requests(got, none, msg, sizeof msg), "re-run: requests went: %s", msg);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CHECKF(e2e_csv_attempts(&c) == 0, "re-run: %ld attempts in the CSV", e2e_csv_attempts(&c));
    e2e_csv_free(&c);
    cache_counts(t.sj, &hits, &misses);
    CHECKF(hits == (double)n_all && misses == 0, "re-run: %.0f hits, %.0f misses", hits, misses);
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* The line a run prints at the end, and its progress lines (every 0.1 s: stderr is no terminal),
 * tell what came from the store. */
static void check_told(const char *out, long asked)
{
    char want[96];
    snprintf(want, sizeof want, " answered from it (");
    const char *line = strstr(out, "annotate: cache ");
    CHECKF(line && strstr(line, want) && strstr(out, "% cached"), "the summary and progress lines: %s", out);
    snprintf(want, sizeof want, "model_01 %ld/", 9L); /* 9 images unchanged */
    CHECKF(line && strstr(line, want) && asked > 0, "per stage, answered/asked: %s", out);
}

static void test_changed_file(void)
{
    struct e2e_tree t, other;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "cache-changed", 10, 5), 0);
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&other, "cache-other", 1, 99), 0);
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "150", NULL}; /* the changed image's requests take a while */
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    char cache[700], out[8192], msg[200];
    snprintf(cache, sizeof cache, "%s/answers.db", t.base);
    const char *serial[] = {"--strategy", "serial", NULL};
    CHECKF(run_cached(&t, &m, cache, serial, out, sizeof out) == 0, "first run: %s", out);
    /* Image 4 gets other bytes (a valid image of its own). */
    size_t len;
    char *bytes = slurp(other.paths[0], &len);
    CU_ASSERT_FATAL(bytes && write_file(t.paths[4], bytes, len) == 0);
    free(bytes);
    CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
    /* Not --quiet this time: the summary and the progress line speak of the cache. */
    const char *argv[32];
    const char *extra[] = {"--cache", cache, "--strategy", "serial", "--progress-interval", "0.1", NULL};
    int n = e2e_annotate_argv(argv, 32, t.root, t.csv, m.base_url, extra);
    for (int i = 0; i < n; i++)
        if (!strcmp(argv[i], "--quiet"))
            argv[i] = "--verbose";
    int rc = run_cmd(argv, tmo(120), out, sizeof out);
    CHECKF(rc == 0, "second run: exit %d: %s", rc, out);
    long want[5], got[5];
    distinct_requests(&t.paths[4], 1, want);
    mock_requests(&m, got, NULL);
    CHECKF(same_requests(got, want, msg, sizeof msg), "a changed file: %s", msg);
    check_told(out, want[0]);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CHECKF(e2e_check_results(&c, t.paths, t.n, NULL, NULL) == 0, "second run: rows not as predicted");
    e2e_csv_free(&c);
    mock_stop(&m);
    e2e_tree_free(&other);
    e2e_tree_free(&t);
}

/* ---- versioned.py: added stages, versions ---- */

static int versioned_start(struct mock_proc *s)
{
    const char *script = "tests/servers/versioned.py";
    struct stat sb;
    if (stat(script, &sb) != 0)
        script = "../tests/servers/versioned.py";
    const char *argv[] = {"python3", script, NULL};
    return listener_start(s, argv, 0);
}

static long versioned_count(const struct mock_proc *s, const char *path)
{
    char url[200], *resp = NULL;
    long status = 0;
    snprintf(url, sizeof url, "%s/stats", s->base_url);
    http_request(url, NULL, NULL, 0, &status, &resp, NULL);
    cJSON *j = resp ? cJSON_Parse(resp) : NULL;
    free(resp);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "requests"), path);
    long n = cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
    cJSON_Delete(j);
    return n;
}

/* a and c send the image; b sends a's result, d sends c's. Only the stages of keep (a string of
 * letters) are written; a has version va. */
static int write_versioned(const char *path, const char *keep, const char *va)
{
    char text[2048] = "{\"stages\": [";
    static const char *const def[4] = {
        "{\"name\": \"a\", \"url\": \"/a\", \"version\": \"%s\", \"body\": {\"img\": \"{{image}}\"}}",
        "{\"name\": \"b\", \"url\": \"/b\", \"body\": {\"from_a\": \"{{a}}\"}}",
        "{\"name\": \"c\", \"url\": \"/c\", \"body\": {\"img\": \"{{image}}\", \"n\": \"{{name}}\"}}",
        "{\"name\": \"d\", \"url\": \"/d\", \"body\": {\"from_c\": \"{{c}}\"}}",
    };
    int first = 1;
    for (int i = 0; i < 4; i++) {
        if (!strchr(keep, 'a' + i))
            continue;
        char st[400];
        snprintf(st, sizeof st, def[i], va);
        strcat(text, first ? "" : ", ");
        strcat(text, st);
        first = 0;
    }
    strcat(text, "]}");
    return write_file(path, text, strlen(text));
}

/* The column of stage `name` in a results file, row by row in path order, joined. */
static char *column(const char *csv, const char *name)
{
    struct e2e_csv c;
    if (e2e_csv_read(csv, &c))
        return strdup("");
    int col = -1;
    for (int i = 0; i < c.header.n; i++)
        if (!strcmp(c.header.f[i].s, name))
            col = i;
    char **keys = calloc(c.n + 1, sizeof *keys);
    for (size_t i = 0; i < c.n; i++) {
        const struct e2e_row *r = &c.rows[i];
        if (asprintf(&keys[i], "%s=%s", r->f[0].s, col >= 0 && col < r->n ? r->f[col].s : "?") < 0)
            keys[i] = NULL;
    }
    qsort(keys, c.n, sizeof *keys, cmp_strp);
    size_t total = 1;
    for (size_t i = 0; i < c.n; i++)
        total += (keys[i] ? strlen(keys[i]) : 0) + 1;
    char *all = calloc(total, 1);
    for (size_t i = 0; all && i < c.n; i++) {
        strcat(all, keys[i] ? keys[i] : "");
        strcat(all, "\n");
    }
    free_strs(keys, c.n);
    e2e_csv_free(&c);
    return all;
}

/* Runs the versioned pipeline (stages keep, a's version va) over t against s; checks what each
 * model received against want ("abcd" counts, -1: not checked). */
static void run_versioned(struct e2e_tree *t, struct mock_proc *s, const char *cache, const char *keep, const char *va,
                          const long want[4], const char *what)
{
    char cfg[700], out[8192];
    snprintf(cfg, sizeof cfg, "%s/p.json", t->base);
    CU_ASSERT_EQUAL_FATAL(write_versioned(cfg, keep, va), 0);
    char url[200];
    snprintf(url, sizeof url, "%s/stats/reset", s->base_url);
    long status = 0;
    http_post(url, "", 0, &status, NULL);
    const char *extra[] = {"--config", cfg, "--cache", cache, "--strategy", "serial", NULL};
    int rc = e2e_run(out, sizeof out, tmo(120), t->root, t->csv, s->base_url, extra);
    CHECKF(rc == 0, "%s: exit %d: %s", what, rc, out);
    for (int i = 0; i < 4; i++) {
        char path[8] = {'/', (char)('a' + i), 0};
        long got = versioned_count(s, path);
        CHECKF(want[i] < 0 || got == want[i], "%s: model %c received %ld requests, want %ld", what, 'a' + i, got,
               want[i]);
    }
}

static void test_added_stage_and_version(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "cache-version", 8, 11), 0);
    struct mock_proc s;
    CU_ASSERT_EQUAL_FATAL(versioned_start(&s), 0);
    char cache[700];
    snprintf(cache, sizeof cache, "%s/answers.db", t.base);
    const long n = 8, first[4] = {n, 0, n, 0}, added[4] = {0, n, 0, n}, bumped[4] = {n, n, 0, 0}, none[4] = {0};
    run_versioned(&t, &s, cache, "ac", "1", first, "a and c");
    run_versioned(&t, &s, cache, "abcd", "1", added, "b and d added");
    char *a1 = column(t.csv, "a"), *b1 = column(t.csv, "b"), *c1 = column(t.csv, "c");
    /* Another model behind /a: the user bumps a's version. */
    char url[200];
    long status = 0;
    snprintf(url, sizeof url, "%s/salt", s.base_url);
    CU_ASSERT_FATAL(http_post(url, "a=model-2", 9, &status, NULL) == 0 && status == 200);
    run_versioned(&t, &s, cache, "abcd", "2", bumped, "a's version bumped");
    char *a2 = column(t.csv, "a"), *b2 = column(t.csv, "b"), *c2 = column(t.csv, "c");
    CHECKF(strcmp(a1, a2) && strcmp(b1, b2) && !strcmp(c1, c2), "after the bump: a %s, b %s, c %s",
           strcmp(a1, a2) ? "changed" : "the same", strcmp(b1, b2) ? "changed" : "the same",
           strcmp(c1, c2) ? "changed" : "the same");
    run_versioned(&t, &s, cache, "abcd", "2", none, "again");

    /* cache stats lists both versions of a; prune keeps what the pipeline uses. */
    char cfg[700], out[8192];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    const char *stats[] = {e2e_annotate_bin(), "cache", "stats", cache, NULL};
    int rc = run_cmd(stats, tmo(30), out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "cache ") && strstr(out, " 2 ") && strstr(out, "/a"), "cache stats: exit %d: %s", rc,
           out);
    const char *prune[] = {e2e_annotate_bin(), "cache", "prune", cache, "--keep-pipelines", cfg, "--server",
                           s.base_url, NULL};
    rc = run_cmd(prune, tmo(30), out, sizeof out);
    char want[64];
    /* a's answers of version 1 (b's identity is the same: its old answers are only questions
     * no longer asked, which --older-than drops in time) */
    snprintf(want, sizeof want, "dropped %ld entries", n);
    CHECKF(rc == 0 && strstr(out, want) && strstr(out, "1 stage identities"), "prune: exit %d: %s", rc, out);
    run_versioned(&t, &s, cache, "abcd", "2", none, "after the prune");
    free(a1), free(b1), free(c1), free(a2), free(b2), free(c2);
    mock_stop(&s);
    e2e_tree_free(&t);
}

/* A stage that sends a prepared copy ("image": its bytes are the question): copies of a file are
 * sent once, a re-run sends nothing, another spec (other bytes) is asked again. */
static void test_prepared(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(tree_with_copies(&t, "cache-prepared", 6, 6, 13), 0);
    struct mock_proc s;
    CU_ASSERT_EQUAL_FATAL(versioned_start(&s), 0);
    char cfg[700], cache[700], out[8192];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    snprintf(cache, sizeof cache, "%s/answers.db", t.base);
    static const char *const specs[3] = {"{\"max_side\": 64}", "{\"max_side\": 64}", "{\"max_side\": 32}"};
    static const long want[3] = {6, 0, 6};
    for (int k = 0; k < 3; k++) {
        char text[512], url[200];
        snprintf(text, sizeof text, "{\"stages\": [{\"name\": \"p\", \"url\": \"/p\", \"image\": %s,"
                                    " \"body\": \"{{image.bytes}}\"}]}", specs[k]);
        CU_ASSERT_FATAL(write_file(cfg, text, strlen(text)) == 0);
        long status = 0;
        snprintf(url, sizeof url, "%s/stats/reset", s.base_url);
        http_post(url, "", 0, &status, NULL);
        const char *extra[] = {"--config", cfg, "--cache", cache, "--strategy", "serial", NULL};
        int rc = e2e_run(out, sizeof out, tmo(120), t.root, t.csv, s.base_url, extra);
        long got = versioned_count(&s, "/p");
        CHECKF(rc == 0 && got == want[k], "run %d (\"image\": %s): exit %d, %ld requests for 6 distinct images, "
                                          "want %ld: %s", k + 1, specs[k], rc, got, want[k], out);
    }
    mock_stop(&s);
    e2e_tree_free(&t);
}

/* ---- a store that cannot be written ---- */

/* What the child that ran annotate in its own mount namespace saw. */
struct ns_report {
    int step;          /* 0: it ran; else what could not be set up */
    int rc;            /* annotate's exit status */
    char out[6000];    /* its output */
    char integrity[64];
};

struct ns_job {
    const char *dir;    /* the store's folder: mounted over in the child */
    int full;           /* 1: a 64 KiB tmpfs; 0: the folder read-only */
    const char *const *argv;
    const char *cache;
};

static void ns_child(const struct ns_job *j, int fd)
{
    struct ns_report r = {0};
    if (unshare(CLONE_NEWNS) || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL))
        r.step = 1;
    else if (j->full && mount("tmpfs", j->dir, "tmpfs", 0, "size=64k,mode=0700"))
        r.step = 2;
    else if (!j->full && (mount(j->dir, j->dir, NULL, MS_BIND, NULL) ||
                          mount(NULL, j->dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL)))
        r.step = 3;
    if (!r.step) {
        r.rc = run_cmd(j->argv, tmo(120), r.out, sizeof r.out);
        integrity(j->cache, r.integrity, sizeof r.integrity);
    }
    ssize_t w = write(fd, &r, sizeof r);
    _exit(w == (ssize_t)sizeof r ? 0 : 1);
}

/* Runs annotate (argv) with the store's folder read-only or full, in a child of its own mount
 * namespace. 0 and *r, or -1. */
static int run_in_namespace(const struct ns_job *j, struct ns_report *r)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        ns_child(j, fds[1]);
    }
    close(fds[1]);
    ssize_t got = pid > 0 ? read(fds[0], r, sizeof *r) : -1;
    close(fds[0]);
    int st;
    if (pid > 0)
        waitpid(pid, &st, 0);
    return got == (ssize_t)sizeof *r ? 0 : -1;
}

static int count_substr(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

static void test_read_only_and_full(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "cache-off", 40, 21), 0);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, NULL), 0);
    char dir[700], cache[800], out[8192], msg[200];
    snprintf(dir, sizeof dir, "%s/store", t.base);
    snprintf(cache, sizeof cache, "%s/answers.db", dir);
    CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
    const char *serial[] = {"--strategy", "serial", NULL};
    CHECKF(run_cached(&t, &m, cache, serial, out, sizeof out) == 0, "first run: %s", out);

    /* Read-only: the store is off, told once; every image is asked, and ok. */
    long want[5], got[5];
    distinct_requests(t.paths, t.n, want);
    CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
    const char *argv[24];
    const char *ro_extra[] = {"--cache", cache, "--strategy", "serial", NULL};
    e2e_annotate_argv(argv, 24, t.root, t.csv, m.base_url, ro_extra);
    struct ns_job job = {dir, 0, argv, cache};
    struct ns_report r;
    CU_ASSERT_FATAL(run_in_namespace(&job, &r) == 0);
    if (r.step) {
        CHECKF(0, "cannot make the folder read-only in a mount namespace (step %d): not tested", r.step);
    } else {
        CHECKF(r.rc == 0 && count_substr(r.out, "going on without it") == 1 && strstr(r.out, "cache "),
               "read-only: exit %d: %s", r.rc, r.out);
        mock_requests(&m, got, NULL);
        CHECKF(same_requests(got, want, msg, sizeof msg), "read-only: %s", msg);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
        CHECKF(e2e_check_results(&c, t.paths, t.n, NULL, NULL) == 0, "read-only: rows not as predicted");
        e2e_csv_free(&c);
    }

    /* Full: a 64 KiB folder fills up during the run; told once, the rest of the run goes on. */
    remove(cache);
    const char *full_extra[] = {"--cache", cache, "--strategy", "serial", NULL};
    e2e_annotate_argv(argv, 24, t.root, t.csv, m.base_url, full_extra);
    struct ns_job fj = {dir, 1, argv, cache};
    CU_ASSERT_FATAL(run_in_namespace(&fj, &r) == 0);
    if (r.step) {
        CHECKF(0, "cannot mount a small tmpfs in a mount namespace (step %d): not tested", r.step);
    } else {
        CHECKF(r.rc == 0 && count_substr(r.out, "going on without it") == 1 && strstr(r.out, "cannot be written"),
               "full: exit %d: %s", r.rc, r.out);
        CHECKF(!strcmp(r.integrity, "ok"), "full: integrity_check: %s", r.integrity);
        struct e2e_csv c;
        CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
        CHECKF(e2e_check_results(&c, t.paths, t.n, NULL, NULL) == 0, "full: rows not as predicted");
        e2e_csv_free(&c);
    }
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* A token in a header and a ${VAR} in a URL reach the server, never the store's file. */
static void test_credentials(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&t, "cache-secret", 6, 31), 0);
    struct mock_proc m;
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, NULL), 0);
    char cfg[700], cache[700], out[8192];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    snprintf(cache, sizeof cache, "%s/answers.db", t.base);
    const char *text = "{\"stages\": [{\"name\": \"model_01\", \"url\": \"/model_01?k=${MEMO_URL_SECRET}\","
                       " \"fields\": {\"model_03\": null}, \"headers\": {\"Authorization\": \"Bearer ${MEMO_TOKEN}\"}}]}";
    CU_ASSERT_FATAL(write_file(cfg, text, strlen(text)) == 0);
    setenv("MEMO_URL_SECRET", "url-secret-4f1d9", 1);
    setenv("MEMO_TOKEN", "token-secret-77ac2", 1);
    const char *extra[] = {"--config", cfg, "--cache", cache, "--strategy", "serial", NULL};
    int rc = e2e_run(out, sizeof out, tmo(60), t.root, t.csv, m.base_url, extra);
    CHECKF(rc == 0, "exit %d: %s", rc, out);
    size_t len;
    char *bytes = slurp(cache, &len);
    CU_ASSERT_FATAL(bytes != NULL);
    CHECKF(len > 0 && !memmem(bytes, len, "url-secret-4f1d9", 16) && !memmem(bytes, len, "token-secret-77ac2", 18) &&
               memmem(bytes, len, "${MEMO_URL_SECRET}", 18),
           "the store's %zu bytes hold a secret, or not the URL as shown", len);
    free(bytes);
    unsetenv("MEMO_URL_SECRET");
    unsetenv("MEMO_TOKEN");
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* ---- concurrent ---- */

static void test_copies_in_flight(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(tree_with_copies(&t, "cache-flight", 24, 24, 41), 0);
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "40", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    long want[5], got[5];
    distinct_requests(t.paths, 24, want);
    static const char *const strategies[][8] = {
        {"--strategy", "curl-multi", "--loops", "2", "--concurrency", "64", NULL},
        {"--strategy", "threads", "--workers", "8", NULL},
        {"--strategy", "processes", "--workers", "8", NULL},
        {"--strategy", "load=threads,query=processes", "--workers", "8", NULL},
    };
    for (size_t k = 0; k < sizeof strategies / sizeof strategies[0]; k++) {
        char cache[700], out[8192], msg[200];
        snprintf(cache, sizeof cache, "%s/answers-%zu.db", t.base, k);
        CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
        int rc = run_cached(&t, &m, cache, strategies[k], out, sizeof out);
        CHECKF(rc == 0, "%s: exit %d: %s", strategies[k][1], rc, out);
        mock_requests(&m, got, NULL);
        CHECKF(same_requests(got, want, msg, sizeof msg), "%s: %s", strategies[k][1], msg);
        CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
        rc = run_cached(&t, &m, cache, strategies[k], out, sizeof out);
        mock_requests(&m, got, NULL);
        long none[5] = {0};
        CHECKF(rc == 0 && same_requests(got, none, msg, sizeof msg), "%s, again: exit %d: %s", strategies[k][1], rc,
               msg);
    }
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* The seed chain with every stage batched (16 items, 30 ms). */
static int write_seed_batched(const char *path)
{
    const char *b = "\"batch\": {\"size\": 16, \"max_wait_ms\": 30}";
    char text[2048];
    snprintf(text, sizeof text,
             "{\"stages\": ["
             "{\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null}, %s},"
             "{\"name\": \"model_02\", \"url\": \"/model_02\", \"fields\": {\"model_03\": null}, %s},"
             "{\"name\": \"model_03\", \"url\": \"/model_03\", \"fields\": {\"model_03\": null}, \"when\": [\"model_01\", \"model_02\"], %s},"
             "{\"name\": \"model_04\", \"url\": \"/model_04\", \"fields\": {\"model_03\": {\"result_of\": \"model_03\"}}, \"csv\": false, %s},"
             "{\"name\": \"model_05\", \"url\": \"/model_05\", \"fields\": {\"model_03\": null}, "
             "\"input\": {\"each\": \"model_04\", \"array\": \"sub-img\", \"field\": \"img\"}, %s}]}",
             b, b, b, b, b);
    return write_file(path, text, strlen(text));
}

static void test_batches(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(tree_with_copies(&t, "cache-batch", 40, 20, 43), 0);
    struct mock_proc m;
    const char *margs[] = {"--batch", "all", "--latency-ms", "5", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/p.json", t.base);
    CU_ASSERT_EQUAL_FATAL(write_seed_batched(cfg), 0);
    long want[5];
    distinct_requests(t.paths, 40, want);
    static const char *const strategies[][10] = {
        {"--config", NULL, "--strategy", "curl-multi", "--concurrency", "16", NULL},
        {"--config", NULL, "--strategy", "processes", "--workers", "4", NULL},
    };
    for (size_t k = 0; k < 2; k++) {
        const char *opts[10];
        memcpy(opts, strategies[k], sizeof opts);
        opts[1] = cfg;
        char cache[700], out[8192];
        snprintf(cache, sizeof cache, "%s/answers-%zu.db", t.base, k);
        CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
        int rc = run_cached(&t, &m, cache, opts, out, sizeof out);
        long got[5], items;
        mock_requests(&m, got, &items);
        CHECKF(rc == 0 && items == want[0], "%s: exit %d; %ld model_01 items for %ld distinct images", opts[3], rc,
               items, want[0]);
        CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
        rc = run_cached(&t, &m, cache, opts, out, sizeof out);
        mock_requests(&m, got, &items);
        CHECKF(rc == 0 && got[0] + got[1] + got[2] + got[3] + got[4] == 0, "%s, again: exit %d, %ld requests", opts[3],
               rc, got[0] + got[1] + got[2] + got[3] + got[4]);
    }
    mock_stop(&m);
    e2e_tree_free(&t);
}

/* Two runs over two folders that share half their images, on one store at once. */
static void test_two_runs(void)
{
    struct e2e_tree a, b;
    CU_ASSERT_EQUAL_FATAL(e2e_tree_generated(&a, "cache-two-a", 60, 51), 0);
    CU_ASSERT_EQUAL_FATAL(tree_with_copies(&b, "cache-two-b", 30, 0, 52), 0);
    /* b also gets copies of a's first 30 */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/from-a", b.root);
    CU_ASSERT_FATAL(mkdir(dir, 0755) == 0);
    char **p = realloc(b.paths, (b.n + 31) * sizeof *p);
    CU_ASSERT_FATAL(p != NULL);
    b.paths = p;
    for (size_t i = 0; i < 30; i++) {
        size_t len;
        char *bytes = slurp(a.paths[i], &len), path[800];
        snprintf(path, sizeof path, "%s/a%zu.png", dir, i);
        CU_ASSERT_FATAL(bytes && write_file(path, bytes, len) == 0);
        free(bytes);
        b.paths[b.n++] = strdup(path);
    }
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "10", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    char cache[700];
    snprintf(cache, sizeof cache, "%s/shared.db", a.base);
    const char *argv_a[24], *argv_b[24];
    const char *ea[] = {"--cache", cache, "--concurrency", "8", NULL};
    const char *eb[] = {"--cache", cache, "--strategy", "threads", "--workers", "4", NULL};
    e2e_annotate_argv(argv_a, 24, a.root, a.csv, m.base_url, ea);
    e2e_annotate_argv(argv_b, 24, b.root, b.csv, m.base_url, eb);
    pid_t pa = e2e_spawn(argv_a, a.log), pb = e2e_spawn(argv_b, b.log);
    int ra = e2e_wait(pa, tmo(120)), rb = e2e_wait(pb, tmo(120));
    if (ra)
        show_log("run a", ra, a.log);
    if (rb)
        show_log("run b", rb, b.log);
    CHECKF(ra == 0 && rb == 0, "two runs on one store: exit %d and %d", ra, rb);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(a.csv, &c), 0);
    CHECKF(e2e_check_results(&c, a.paths, a.n, NULL, NULL) == 0, "run a: rows not as predicted");
    e2e_csv_free(&c);
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(b.csv, &c), 0);
    CHECKF(e2e_check_results(&c, b.paths, b.n, NULL, NULL) == 0, "run b: rows not as predicted");
    e2e_csv_free(&c);
    char ok[64];
    integrity(cache, ok, sizeof ok);
    CHECKF(!strcmp(ok, "ok"), "integrity_check: %s", ok);
    /* Everything both asked is in the store now. */
    CU_ASSERT_EQUAL(e2e_stats_reset(&m), 0);
    char out[8192];
    const char *again[] = {"--cache", cache, NULL};
    int rc = e2e_run(out, sizeof out, tmo(60), b.root, b.csv, m.base_url, again);
    long got[5];
    mock_requests(&m, got, NULL);
    CHECKF(rc == 0 && got[0] + got[1] + got[2] + got[3] + got[4] == 0, "b again: exit %d, %ld requests", rc,
           got[0] + got[1] + got[2] + got[3] + got[4]);
    mock_stop(&m);
    e2e_tree_free(&b);
    e2e_tree_free(&a);
}

/* kill -9 while it runs (answers being put and committed), three times, then --resume to the
 * end: every row right, each once, and the store intact. */
static void test_kill_and_resume(void)
{
    struct e2e_tree t;
    CU_ASSERT_EQUAL_FATAL(tree_with_copies(&t, "cache-kill", 160, 40, 61), 0);
    struct mock_proc m;
    const char *margs[] = {"--latency-ms", "15", NULL};
    CU_ASSERT_EQUAL_FATAL(mock_start(&m, margs), 0);
    char cache[700];
    snprintf(cache, sizeof cache, "%s/answers.db", t.base);
    static const char *const modes[3][4] = {{"--concurrency", "8", NULL}, {"--strategy", "processes", NULL},
                                            {"--strategy", "threads", NULL}};
    uint64_t rng = 0x5eed;
    for (int round = 0; round < 3; round++) {
        const char *extra[12] = {"--cache", cache, "--workers", "4"}, *argv[32];
        int k = 4;
        for (int i = 0; modes[round][i]; i++)
            extra[k++] = modes[round][i];
        if (round)
            extra[k++] = "--resume";
        extra[k] = NULL;
        e2e_annotate_argv(argv, 32, t.root, t.csv, m.base_url, extra);
        pid_t pid = e2e_spawn(argv, t.log);
        CU_ASSERT_FATAL(pid > 0);
        sleep_ms(150 + (long)(xorshift64(&rng) % 700));
        kill(-pid, SIGKILL);
        e2e_wait(pid, tmo(30));
        char ok[64];
        integrity(cache, ok, sizeof ok);
        CHECKF(!strcmp(ok, "ok"), "after kill -9 number %d: integrity_check: %s", round + 1, ok);
    }
    char out[8192];
    const char *resume[] = {"--cache", cache, "--resume", NULL};
    int rc = e2e_run(out, sizeof out, tmo(180), t.root, t.csv, m.base_url, resume);
    CHECKF(rc == 0, "the last --resume: exit %d: %s", rc, out);
    struct e2e_csv c;
    CU_ASSERT_EQUAL_FATAL(e2e_csv_read(t.csv, &c), 0);
    CHECKF(e2e_check_results(&c, t.paths, t.n, NULL, NULL) == 0, "after kill -9 and --resume: rows not as predicted");
    e2e_csv_free(&c);
    char ok[64];
    integrity(cache, ok, sizeof ok);
    CHECKF(!strcmp(ok, "ok"), "at the end: integrity_check: %s", ok);
    mock_stop(&m);
    e2e_tree_free(&t);
}

int register_cache(void)
{
    CU_pSuite s = CU_add_suite("cache serial", NULL, NULL);
    if (!s || !CU_add_test(s, "copies sent once; a re-run sends nothing", test_copies_and_rerun) ||
        !CU_add_test(s, "a changed file sends only itself", test_changed_file) ||
        !CU_add_test(s, "an added stage, a version bump; stats and prune", test_added_stage_and_version) ||
        !CU_add_test(s, "prepared images: their bytes are the question", test_prepared) ||
        !CU_add_test(s, "a read-only or full store: told once, the run goes on", test_read_only_and_full) ||
        !CU_add_test(s, "credentials never in the file", test_credentials))
        return -1;
    CU_pSuite c = CU_add_suite("cache concurrent", NULL, NULL);
    if (!c || !CU_add_test(c, "copies in flight sent once, every strategy", test_copies_in_flight) ||
        !CU_add_test(c, "batches send only what the store lacks", test_batches) ||
        !CU_add_test(c, "two runs on one store at once", test_two_runs) ||
        !CU_add_test(c, "kill -9 at random points, then --resume", test_kill_and_resume))
        return -1;
    return 0;
}
