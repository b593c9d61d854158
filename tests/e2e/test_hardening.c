/* Suites "hardening ...": the Hardening issue's lost rows and leftovers.
 *
 *   "hardening merge"    a stale OUT.merge.tmp (a killed merge's, a link, one still locked by a live
 *                        merge) is taken over, removed or left alone as it should be, and no merge
 *                        that fails leaves one behind
 *   "hardening rows"     one row per image found, whatever happens to the folder: a folder that
 *                        cannot be read (mode 000 as an unprivileged user; replaced or removed between
 *                        being listed and being opened) is a failed row, exit 1, named by the
 *                        summary, retried by --resume; --retry-failed keeps the failed rows of files
 *                        deleted since
 *   "hardening fds"      under ulimit -n 64 with --concurrency 1000 or 200 workers, every strategy
 *                        finishes every image ok: the run fits itself to the limit and says so
 *   "hardening alloc"    build/annotate-failalloc (tests/helpers/failalloc.c) fails the Nth allocation of a
 *                        small serial run, for N over every allocation (a sample of about 250 of
 *                        them; ANNOTATE_ALLOC_SWEEP=all or make alloc-sweep: every one), once and
 *                        from N on: each run exits 0 or 1 with every image in the CSV exactly once,
 *                        or 2 with a message; never a crash, a sanitizer report or a hang, never a
 *                        torn, duplicate or wrong row
 */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flow/scan.h"

#include "check.h"
#include "e2e.h"
#include "util.h"
#include "proc.h"
#include "tree.h"

static void put(const char *path, const char *text)
{
    CU_ASSERT_FATAL(write_file(path, text, strlen(text)) == 0);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- hardening merge ---------------------------------------------------------------------------- */

static char mtmp[512];

static int merge_init(void)
{
    return make_tmpdir(mtmp, sizeof mtmp, "hardening-merge");
}

static int merge_clean(void)
{
    return tree_rm(mtmp);
}

#define HDR "path,status,m1,error,attempts,elapsed_ms\n"
static const char shard_a[] = HDR "d/x.jpg,ok,1,,1,2\nd/y.jpg,failed,,boom,4,9\n";
static const char shard_b[] = HDR "d/y.jpg,ok,2,,1,3\n";
static const char merged[] = HDR "d/x.jpg,ok,1,,1,2\nd/y.jpg,ok,2,,1,3\n";

struct mfiles {
    char a[600], b[600], out[600], tmp[700], victim[600];
};

static void mfiles(struct mfiles *f)
{
    snprintf(f->a, sizeof f->a, "%s/a.csv", mtmp);
    snprintf(f->b, sizeof f->b, "%s/b.csv", mtmp);
    snprintf(f->out, sizeof f->out, "%s/out.csv", mtmp);
    snprintf(f->tmp, sizeof f->tmp, "%s.merge.tmp", f->out);
    snprintf(f->victim, sizeof f->victim, "%s/victim.txt", mtmp);
    unlink(f->out);
    unlink(f->tmp);
    put(f->a, shard_a);
    put(f->b, shard_b);
}

static int merge(const struct mfiles *f, const char *a, const char *b, char *out, size_t outlen)
{
    const char *argv[] = {e2e_annotate_bin(), "merge", f->out, a, b, NULL};
    return run_cmd(argv, tmo(30), out, outlen);
}

static int file_equals(const char *path, const char *want)
{
    char *got = slurp(path, NULL);
    int same = got && !strcmp(got, want);
    free(got);
    return same;
}

/* A killed merge's temporary file (half a merge) is taken over by the next merge: the result is
 * right and nothing is left. */
static void test_merge_stale_tmp_replaced(void)
{
    struct mfiles f;
    mfiles(&f);
    put(f.tmp, HDR "d/half-a-merge.jpg,ok,1,,1");
    char out[4096];
    int rc = merge(&f, f.a, f.b, out, sizeof out);
    CHECKF(rc == 0, "merge over a stale %s: exit %d: %s", f.tmp, rc, out);
    CHECKF(file_equals(f.out, merged), "the merge over a stale temporary file is not the merge");
    CHECKF(!exists(f.tmp), "%s is still there after a merge", f.tmp);
}

/* A merge that fails (here on an input that is not a results file) still removes a killed merge's
 * leftover: it is cleaned up at the next start, whatever that merge then finds. */
static void test_merge_stale_tmp_removed_on_error(void)
{
    struct mfiles f;
    mfiles(&f);
    put(f.tmp, HDR "d/half-a-merge.jpg,ok,1,,1");
    char bad[700], out[4096];
    snprintf(bad, sizeof bad, "%s/not-results.csv", mtmp);
    put(bad, "name,age\nalice,30\n");
    int rc = merge(&f, f.a, bad, out, sizeof out);
    CHECKF(rc == 2, "merge with a foreign input: exit %d: %s", rc, out);
    CHECKF(!exists(f.tmp), "a failed merge left %s behind", f.tmp);
    CHECKF(!exists(f.out), "a failed merge wrote %s", f.out);
    /* A missing input: the same. */
    put(f.tmp, "junk");
    snprintf(bad, sizeof bad, "%s/missing.csv", mtmp);
    rc = merge(&f, f.a, bad, out, sizeof out);
    CHECKF(rc == 2 && !exists(f.tmp), "merge with a missing input: exit %d, leftover %d: %s", rc, exists(f.tmp), out);
}

/* A leftover that is a symbolic link is removed, never followed: the file it points to is not
 * written, and OUT ends up a regular file holding the merge. */
static void test_merge_stale_tmp_symlink(void)
{
    struct mfiles f;
    mfiles(&f);
    put(f.victim, "precious\n");
    CU_ASSERT_FATAL(symlink(f.victim, f.tmp) == 0);
    char out[4096];
    int rc = merge(&f, f.a, f.b, out, sizeof out);
    CHECKF(rc == 0, "merge over a symlinked %s: exit %d: %s", f.tmp, rc, out);
    CHECKF(file_equals(f.victim, "precious\n"), "the merge wrote through the link into %s", f.victim);
    struct stat st;
    CHECKF(lstat(f.out, &st) == 0 && S_ISREG(st.st_mode), "%s is not a regular file after the merge", f.out);
    CHECKF(file_equals(f.out, merged), "the merge is wrong");
    CHECKF(!exists(f.tmp), "%s is still there", f.tmp);
    /* A directory in its place is no better: removed (it is empty), and the merge goes on. */
    unlink(f.out);
    CU_ASSERT_FATAL(mkdir(f.tmp, 0755) == 0);
    rc = merge(&f, f.a, f.b, out, sizeof out);
    CHECKF(rc == 0 && file_equals(f.out, merged) && !exists(f.tmp), "merge over a directory %s: exit %d: %s",
           f.tmp, rc, out);
    rmdir(f.tmp);
}

/* A live merge holds its temporary file locked: a second merge to the same OUT exits 2 and leaves
 * that file (and OUT) alone. */
static void test_merge_tmp_locked(void)
{
    struct mfiles f;
    mfiles(&f);
    put(f.out, "an earlier merge\n");
    put(f.tmp, "a merge in progress\n");
    int fd = open(f.tmp, O_RDWR);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(flock(fd, LOCK_EX | LOCK_NB) == 0);
    char out[4096];
    int rc = merge(&f, f.a, f.b, out, sizeof out);
    CHECKF(rc == 2 && strstr(out, "another annotate merge"), "a merge beside a live one: exit %d: %s", rc, out);
    CHECKF(file_equals(f.tmp, "a merge in progress\n"), "the live merge's temporary file was touched");
    CHECKF(file_equals(f.out, "an earlier merge\n"), "%s was touched", f.out);
    close(fd);
    /* Once that merge is gone (its lock with it), the next one takes over. */
    rc = merge(&f, f.a, f.b, out, sizeof out);
    CHECKF(rc == 0 && file_equals(f.out, merged) && !exists(f.tmp), "after the lock is gone: exit %d: %s", rc, out);
}

static void no_big_files(void *arg)
{
    struct rlimit rl = {(rlim_t)(size_t)arg, (rlim_t)(size_t)arg};
    signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG instead */
    setrlimit(RLIMIT_FSIZE, &rl);
}

/* A merge whose output cannot be written (a file size limit standing in for a full disk) exits 2,
 * leaves OUT as it was and no temporary file. */
static void test_merge_write_error(void)
{
    struct mfiles f;
    mfiles(&f);
    /* Inputs big enough that the merge passes stdio's buffer. */
    size_t n = 4000;
    char *big = malloc(n * 40 + 100);
    CU_ASSERT_FATAL(big != NULL);
    size_t len = (size_t)sprintf(big, HDR);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(big + len, "d/img%06zu.jpg,ok,1,,1,2\n", i);
    CU_ASSERT_FATAL(write_file(f.a, big, len) == 0);
    free(big);
    put(f.out, "an earlier merge\n");
    char out[4096];
    const char *argv[] = {e2e_annotate_bin(), "merge", f.out, f.a, f.b, NULL};
    int rc = run_cmd_hook(argv, tmo(30), out, sizeof out, no_big_files, (void *)(size_t)8192);
    CHECKF(rc == 2 && strstr(out, "cannot write"), "merge past the size limit: exit %d: %s", rc, out);
    CHECKF(!exists(f.tmp), "a merge that could not write left %s", f.tmp);
    CHECKF(file_equals(f.out, "an earlier merge\n"), "%s changed", f.out);
}

/* ---- hardening rows ----------------------------------------------------------------------------- */

static struct mock_proc M;

static int rows_init(void)
{
    return mock_start(&M, NULL);
}

static int rows_clean(void)
{
    mock_stop(&M);
    return 0;
}

/* annotate ROOT --out CSV --server URL [--force] EXTRA..., with --quiet unless loud; in_child (may
 * be NULL) runs in the child before the exec. */
static int annotate(char *out, size_t outlen, int loud, void (*in_child)(void *), void *arg, const char *root,
                    const char *csv, const char *server, const char *const *extra)
{
    const char *argv[64];
    int n = e2e_annotate_argv(argv, 64, root, csv, server, extra), k = 0;
    for (int i = 0; i < n; i++)
        if (!loud || strcmp(argv[i], "--quiet"))
            argv[k++] = argv[i];
    argv[k] = NULL;
    return run_cmd_hook(argv, tmo(60), out, outlen, in_child, arg);
}

/* The row of path in c (NULL when none), and how many rows it has. */
static const struct e2e_row *row_of(const struct e2e_csv *c, const char *path, int *count)
{
    const struct e2e_row *r = NULL;
    *count = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->rows[i].n > COL_PATH && !strcmp(c->rows[i].f[COL_PATH].s, path)) {
            r = &c->rows[i];
            ++*count;
        }
    return r;
}

/* A run with the server down fails every image; five files are deleted; --resume --retry-failed
 * with the server up redoes the rest and keeps the five failed rows as they were (they used to be
 * dropped: the rows of files since deleted vanished). Exit 0: this run failed nothing (the failed
 * rows kept are an earlier run's, README "Exit status"). */
static void test_retry_failed_keeps_deleted(void)
{
    enum { N = 30, GONE = 5 };
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "hardening", N, 12) == 0);
    char down[64], out[8192];
    snprintf(down, sizeof down, "http://127.0.0.1:%d", e2e_closed_port());
    const char *first[] = {"--retries", "0", "--strategy", "serial", "--outage-timeout", "0", NULL};
    int rc = annotate(out, sizeof out, 0, NULL, NULL, t.root, t.csv, down, first);
    CHECKF(rc == 1, "the run with the server down: exit %d: %s", rc, out);
    for (int i = 0; i < GONE; i++)
        CU_ASSERT(unlink(t.paths[i * 6]) == 0);
    const char *again[] = {"--resume", "--retry-failed", NULL};
    rc = annotate(out, sizeof out, 1, NULL, NULL, t.root, t.csv, M.base_url, again);
    CHECKF(rc == 0, "--resume --retry-failed with %d files gone: exit %d (want 0: this run failed nothing): %s", GONE,
           rc, out);
    CHECKF(strstr(out, "kept 5 failed rows"), "the run does not say it kept the 5 failed rows: %s", out);
    for (int round = 0; round < 2; round++) {
        struct e2e_csv c;
        if (e2e_csv_read(t.csv, &c)) {
            CU_FAIL("the results file cannot be read as CSV");
            break;
        }
        CHECKF(c.n == N, "round %d: %zu rows for %d images", round, c.n, N);
        for (size_t i = 0; i < t.n; i++) {
            int count;
            const struct e2e_row *r = row_of(&c, t.paths[i], &count);
            int gone = i % 6 == 0 && i / 6 < GONE;
            CHECKF(count == 1, "round %d: image %zu has %d rows", round, i, count);
            if (r && gone)
                CHECKF(!strcmp(r->f[COL_STATUS].s, "failed") && strstr(r->f[COL_ERROR].s, "onnect"),
                       "round %d: the deleted image %zu's row is not its failed row: %s %s", round, i,
                       r->f[COL_STATUS].s, r->f[COL_ERROR].s);
            else if (r)
                CHECKF(!strcmp(r->f[COL_STATUS].s, "ok"), "round %d: image %zu is %s", round, i, r->f[COL_STATUS].s);
        }
        e2e_csv_free(&c);
        /* Once more: nothing changes, still exit 0. */
        if (round == 0) {
            rc = annotate(out, sizeof out, 0, NULL, NULL, t.root, t.csv, M.base_url, again);
            CHECKF(rc == 0, "a second --retry-failed: exit %d: %s", rc, out);
        }
    }
    e2e_tree_free(&t);
}

/* Folders listed by the walk, then replaced before it opens them: by a file (ENOTDIR), or removed
 * (ENOENT). Each is returned once as a folder entry (2, path ending in '/', the reason), never
 * silently skipped; the walk goes on. The replacement happens right after the first image comes
 * back: the root's entries are read by then (one getdents for a dozen names), the other folders
 * not yet opened. Works as root, unlike a mode-000 folder. */
static void test_scan_folder_vanishes(void)
{
    enum { D = 10 };
    char root[700], p[800];
    CU_ASSERT_FATAL(make_tmpdir(root, sizeof root, "hardening-scan") == 0);
    for (int i = 0; i < D; i++) {
        snprintf(p, sizeof p, "%s/d%d", root, i);
        CU_ASSERT_FATAL(mkdir(p, 0755) == 0);
        snprintf(p, sizeof p, "%s/d%d/img.jpg", root, i);
        put(p, "x");
    }
    char err[256] = "";
    scanner *sc = scan_open(root, NULL, err, sizeof err);
    CU_ASSERT_FATAL(sc != NULL);
    scan_report_folders(sc, 1);
    struct scan_entry e;
    int first = -1, images = 0, folders = 0, k;
    int seen[D] = {0};
    while ((k = scan_next(sc, &e)) != 0) {
        size_t rl = strlen(root);
        CU_ASSERT_FATAL(e.path_len > rl + 3 && !memcmp(e.path, root, rl) && e.path[rl] == '/' &&
                        e.path[rl + 1] == 'd');
        int i = e.path[rl + 2] - '0';
        CU_ASSERT_FATAL(i >= 0 && i < D);
        if (k == 1) {
            CU_ASSERT(e.error == NULL);
            images++;
            if (first < 0) {
                first = i;
                for (int j = 0; j < D; j++) {
                    if (j == i)
                        continue;
                    snprintf(p, sizeof p, "%s/d%d", root, j);
                    CU_ASSERT_FATAL(tree_rm(p) == 0);
                    if (j % 2)
                        put(p, "now a file"); /* odd ones replaced by a file, even ones just gone */
                }
            }
            continue;
        }
        folders++;
        seen[i]++;
        CHECKF(k == 2 && e.error && e.path[e.path_len - 1] == '/' && e.path_len == rl + 4 &&
                   e.rel == e.path + rl + 1 && e.rel_len == 3,
               "folder entry %d: %s", k, printable(e.path, e.path_len));
        const char *why = strerror(i % 2 ? ENOTDIR : ENOENT);
        CHECKF(e.error && strstr(e.error, "cannot read folder") && strstr(e.error, why),
               "d%d: the reason is \"%s\", want cannot read folder: %s", i, e.error ? e.error : "(none)", why);
    }
    scan_close(sc);
    CHECKF(images == 1, "%d images found, want 1 (only the folder that stayed)", images);
    CHECKF(folders == D - 1, "%d folders reported, want %d (every one that vanished)", folders, D - 1);
    for (int j = 0; j < D; j++)
        CHECKF(seen[j] == (j != first), "d%d reported %d times", j, seen[j]);
    CU_ASSERT(tree_rm(root) == 0);
}

#define NOBODY 65534 /* Debian's nobody and nogroup */

/* In the child: become nobody when root (root opens any folder), so that mode 000 holds. */
static void as_nobody(void *root)
{
    if (geteuid() == 0 && (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY))) {
        fprintf(stderr, "as_nobody: cannot become uid %d: %s\n", NOBODY, strerror(errno));
        _exit(98);
    }
    if (access(root, R_OK | X_OK)) {
        fprintf(stderr, "as_nobody: uid %d cannot read %s: %s\n", (int)geteuid(), (char *)root, strerror(errno));
        _exit(98);
    }
}

/* A subfolder that cannot be opened (mode 000, run as nobody): one failed row for it (path = the
 * folder, "cannot read folder: Permission denied"), every other image ok, exit 1, the summary and
 * --stats-json count it. Once readable, --resume retries it: its image gets its row, the folder's
 * row goes, exit 0. While it stays unreadable, a --resume writes no second row. */
static void test_unreadable_folder_row(void)
{
    enum { N = 20 };
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "hardening", N, 13) == 0);
    /* nobody must reach the tree and write the results: the directory becomes its own. */
    CU_ASSERT_FATAL(chown(t.base, NOBODY, NOBODY) == 0 && chmod(t.base, 0755) == 0);
    char locked[700], want_row[720], out[8192];
    snprintf(locked, sizeof locked, "%s/05", t.root);
    snprintf(want_row, sizeof want_row, "%s/", locked);
    CU_ASSERT_FATAL(chmod(locked, 0) == 0);
    const char *first[] = {"--stats-json", t.sj, NULL};
    int rc = annotate(out, sizeof out, 1, as_nobody, t.root, t.root, t.csv, M.base_url, first);
    CHECKF(rc == 1, "a run with an unreadable folder: exit %d (want 1): %s", rc, out);
    CHECKF(strstr(out, "1 folder could not be read") && strstr(out, want_row) && strstr(out, "--resume"),
           "the summary does not name the folder: %s", out);
    struct e2e_csv c;
    int count;
    if (e2e_csv_read(t.csv, &c) == 0) {
        CHECKF(c.n == N, "%zu rows: want %d (%d images and the folder)", c.n, N, N - 1);
        const struct e2e_row *r = row_of(&c, want_row, &count);
        CHECKF(count == 1, "the folder %s has %d rows", want_row, count);
        if (r)
            CHECKF(!strcmp(r->f[COL_STATUS].s, "failed") &&
                       strstr(r->f[COL_ERROR].s, "cannot read folder: Permission denied"),
                   "the folder's row: %s, %s", r->f[COL_STATUS].s, r->f[COL_ERROR].s);
        for (size_t i = 0; i < t.n; i++) {
            r = row_of(&c, t.paths[i], &count);
            int inside = !strncmp(t.paths[i], want_row, strlen(want_row));
            CHECKF(count == !inside, "image %zu (%s the folder) has %d rows", i, inside ? "in" : "not in", count);
            if (r)
                CHECKF(!strcmp(r->f[COL_STATUS].s, "ok"), "image %zu: %s", i, r->f[COL_STATUS].s);
        }
        e2e_csv_free(&c);
    } else {
        CU_FAIL("the results file cannot be read as CSV");
    }
    cJSON *j = e2e_read_json(t.sj);
    CHECKF(e2e_json_num(j, "folders_failed") == 1, "--stats-json: folders_failed %g", e2e_json_num(j, "folders_failed"));
    cJSON_Delete(j);

    /* Still locked: --resume tries again and the folder keeps one row. */
    const char *resume[] = {"--resume", NULL};
    rc = annotate(out, sizeof out, 0, as_nobody, t.root, t.root, t.csv, M.base_url, resume);
    CHECKF(rc == 1, "--resume, folder still unreadable: exit %d: %s", rc, out);
    if (e2e_csv_read(t.csv, &c) == 0) {
        row_of(&c, want_row, &count);
        CHECKF(c.n == N && count == 1, "after --resume: %zu rows, the folder's %d", c.n, count);
        e2e_csv_free(&c);
    }
    /* Readable again: --resume does it. */
    CU_ASSERT_FATAL(chmod(locked, 0755) == 0);
    rc = annotate(out, sizeof out, 0, as_nobody, t.root, t.root, t.csv, M.base_url, resume);
    CHECKF(rc == 0, "--resume once the folder is readable: exit %d: %s", rc, out);
    if (e2e_csv_read(t.csv, &c) == 0) {
        CU_ASSERT_EQUAL(e2e_check_results(&c, t.paths, t.n, NULL, NULL), 0);
        e2e_csv_free(&c);
    } else {
        CU_FAIL("the results file cannot be read as CSV");
    }
    e2e_tree_free(&t);
}

/* ---- hardening fds ------------------------------------------------------------------------------ */

static void nofile_limit(void *arg)
{
    struct rlimit rl = {(rlim_t)(size_t)arg, (rlim_t)(size_t)arg};
    if (setrlimit(RLIMIT_NOFILE, &rl)) {
        fprintf(stderr, "nofile_limit: %s\n", strerror(errno));
        _exit(98);
    }
}

/* ulimit -n 64 (soft and hard, set in the child) and far more asked for: every image gets an ok
 * row, exit 0, and a note names what was lowered. The mock answers after 30 ms, so that many
 * requests would be in flight at once; before, hundreds of rows failed with "Too many open
 * files" or "Failed to connect", and the processes strategy could not start its workers. With
 * a soft limit below a higher hard one, the run raises the soft limit and lowers nothing. */
static void test_nofile_64(void)
{
    enum { N = 150 };
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "hardening", N, 14) == 0);
    struct mock_proc slow = {0};
    static const char *const margs[] = {"--latency-ms", "30", NULL};
    if (mock_start(&slow, margs)) {
        CU_FAIL("the mock did not start");
        e2e_tree_free(&t);
        return;
    }
    static const char *const runs[][8] = {
        {"--concurrency", "1000", NULL},
        {"--concurrency", "1000", "--loops", "4", NULL},
        {"--strategy", "threads", "--workers", "200", NULL},
        {"--strategy", "processes", "--workers", "100", NULL},
        {"--strategy", "load=threads,query=processes", "--workers", "60", NULL},
    };
    char out[8192];
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        long t0 = now_ms();
        int rc = annotate(out, sizeof out, 1, nofile_limit, (void *)(size_t)64, t.root, t.csv, slow.base_url, runs[k]);
        CHECKF(rc == 0, "ulimit -n 64, %s %s: exit %d: %s", runs[k][0], runs[k][1], rc, out);
        CHECKF(strstr(out, "ulimit -n is 64: running with"), "%s %s: no note says what was lowered: %s", runs[k][0],
               runs[k][1], out);
        struct e2e_csv c;
        if (e2e_csv_read(t.csv, &c) == 0) {
            long bad = e2e_check_results(&c, t.paths, t.n, NULL, NULL);
            CHECKF(bad == 0, "ulimit -n 64, %s %s: %ld problems in the rows", runs[k][0], runs[k][1], bad);
            e2e_csv_free(&c);
        } else {
            CU_FAIL("the results file cannot be read as CSV");
        }
        fprintf(stderr, "[%s %s: %ld ms] ", runs[k][0], runs[k][1], now_ms() - t0);
    }
    e2e_tree_free(&t);
    mock_stop(&slow);
}

/* The soft limit is raised (up to the hard one) rather than anything lowered. */
static void soft_64(void *arg)
{
    (void)arg;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 64;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 4096)
        rl.rlim_max = 4096;
    if (setrlimit(RLIMIT_NOFILE, &rl)) {
        fprintf(stderr, "soft_64: %s\n", strerror(errno));
        _exit(98);
    }
}

static void test_nofile_soft_raised(void)
{
    enum { N = 40 };
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "hardening", N, 15) == 0);
    const char *extra[] = {"--concurrency", "1000", NULL};
    char out[8192];
    int rc = annotate(out, sizeof out, 1, soft_64, NULL, t.root, t.csv, M.base_url, extra);
    CHECKF(rc == 0 && !strstr(out, "ulimit -n is"), "soft limit 64 under a hard 4096: exit %d: %s", rc, out);
    struct e2e_csv c;
    if (e2e_csv_read(t.csv, &c) == 0) {
        CU_ASSERT_EQUAL(e2e_check_results(&c, t.paths, t.n, NULL, NULL), 0);
        e2e_csv_free(&c);
    }
    /* And a limit that cannot hold a run at all is a set-up error, said at once. */
    rc = annotate(out, sizeof out, 1, nofile_limit, (void *)(size_t)12, t.root, t.csv, M.base_url, extra);
    CHECKF(rc == 2 && strstr(out, "ulimit -n is 12, too low"), "ulimit -n 12: exit %d: %s", rc, out);
    e2e_tree_free(&t);
}

/* ---- hardening alloc ---------------------------------------------------------------------------- */

static char fa_bin[700];

static const char *failalloc_bin(void)
{
    const char *e = getenv("ANNOTATE_FAILALLOC_BIN");
    if (e && *e)
        return e;
    const char *a = e2e_annotate_bin();
    const char *slash = strrchr(a, '/');
    snprintf(fa_bin, sizeof fa_bin, "%.*sannotate-failalloc", slash ? (int)(slash - a + 1) : 0, a);
    return fa_bin;
}

struct fa_env {
    long n;
    int from;
    const char *count_file;
};

/* In the child: which allocation fails, and sanitizers that exit 99 (their default, 1, would look
 * like a run with failed images). */
static void fa_child(void *arg)
{
    const struct fa_env *e = arg;
    char v[32];
    snprintf(v, sizeof v, "%ld", e->n);
    setenv("ANNOTATE_FAILALLOC", v, 1);
    setenv("ANNOTATE_FAILALLOC_FROM", e->from ? "1" : "0", 1);
    if (e->count_file)
        setenv("ANNOTATE_FAILALLOC_COUNT", e->count_file, 1);
    static const char *const vars[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS"};
    for (int i = 0; i < 2; i++) {
        const char *old = getenv(vars[i]);
        char buf[1024];
        snprintf(buf, sizeof buf, "%s%sexitcode=99", old ? old : "", old && *old ? ":" : "");
        setenv(vars[i], buf, 1);
    }
}

struct fa_tally {
    long runs, exit0, exit1, exit2, bad;
};

/* One run with allocation n failing (once, or from n on); checks its outcome against the
 * reference rows. With prepared (a results file: image 0 ok, image 1 failed), the run is
 * --resume --retry-failed over it, and image 0's row must survive whatever happens. */
static void fa_run(const struct e2e_tree *t, const struct e2e_csv *ref, long n, int from, const char *prepared,
                   struct fa_tally *ty)
{
    struct fa_env env = {n, from, NULL};
    const char *argv[] = {failalloc_bin(), t->root, "--out", t->csv, "--server", M.base_url, "--strategy", "serial",
                          "--quiet", prepared ? "--resume" : "--force", prepared ? "--retry-failed" : NULL, NULL};
    char out[4096];
    unlink(t->csv);
    if (prepared && write_file(t->csv, prepared, strlen(prepared))) {
        CU_FAIL("cannot write the results file to resume");
        return;
    }
    int rc = run_cmd_hook(argv, tmo(20), out, sizeof out, fa_child, &env);
    ty->runs++;
    const char *mode = prepared ? (from ? "resume, from" : "resume, only") : from ? "from" : "only";
    int bad = 0;
    if (rc < 0 || rc > 2) {
        CHECKF(0, "allocation %ld (%s) failing: exit %d (a crash, a sanitizer's report or a hang): %s", n, mode, rc,
               out);
        ty->bad++;
        return;
    }
    if (rc == 0)
        ty->exit0++;
    else if (rc == 1)
        ty->exit1++;
    else
        ty->exit2++;
    if (rc == 2) {
        /* A clear error: annotate says something besides the injector's own line. */
        const char *p = out;
        int said = 0;
        while ((p = strstr(p, "annotate")) && !said) {
            said = p == out || p[-1] == '\n';
            p++;
        }
        if (!said) {
            CHECKF(0, "allocation %ld (%s) failing: exit 2 without a message: %s", n, mode, out);
            bad = 1;
        }
    }
    struct e2e_csv c;
    struct stat st;
    if (stat(t->csv, &st) != 0 || st.st_size == 0) {
        if (rc != 2) {
            CHECKF(0, "allocation %ld (%s) failing: exit %d and no results: %s", n, mode, rc, out);
            bad = 1;
        }
    } else if (e2e_csv_read(t->csv, &c) != 0) {
        CHECKF(0, "allocation %ld (%s) failing: exit %d and the results are not CSV", n, mode, rc);
        bad = 1;
    } else {
        int failed = 0;
        if (!c.complete || c.ragged || (c.header.n && c.header.n != N_COLS)) {
            CHECKF(0, "allocation %ld (%s) failing: a torn or ragged results file (exit %d)", n, mode, rc);
            bad = 1;
        }
        for (size_t i = 0; i < t->n && !bad; i++) {
            int count, rcount;
            const struct e2e_row *r = row_of(&c, t->paths[i], &count), *want = row_of(ref, t->paths[i], &rcount);
            if (count == 0 && rc != 2) {
                /* Its folder could not be read (fdopendir ran out of memory): the folder's row
                 * stands for it. */
                for (size_t j = 0; j < c.n && count == 0; j++) {
                    const struct e2e_row *f = &c.rows[j];
                    count = f->f[COL_PATH].len && f->f[COL_PATH].s[f->f[COL_PATH].len - 1] == '/' &&
                            !strncmp(t->paths[i], f->f[COL_PATH].s, f->f[COL_PATH].len) &&
                            !strcmp(f->f[COL_STATUS].s, "failed");
                }
                failed += count;
            }
            if (count > 1 || ((rc != 2 || (prepared && i == 0)) && count != 1)) {
                CHECKF(0, "allocation %ld (%s) failing: exit %d and image %zu has %d rows: %s", n, mode, rc, i, count,
                       out);
                bad = 1;
            } else if (r && !strcmp(r->f[COL_STATUS].s, "ok")) {
                for (int k = COL_M01; k <= COL_M05 && !bad; k++)
                    if (!want || strcmp(r->f[k].s, want->f[k].s)) {
                        CHECKF(0, "allocation %ld (%s) failing: image %zu's ok row has a wrong cell %d: %s", n, mode,
                               i, k, printable(r->f[k].s, r->f[k].len));
                        bad = 1;
                    }
            } else if (r) {
                failed++;
                if (!r->f[COL_ERROR].len) {
                    CHECKF(0, "allocation %ld (%s) failing: image %zu failed without a reason", n, mode, i);
                    bad = 1;
                }
            }
        }
        if (c.n > t->n + 4 && !bad) {
            CHECKF(0, "allocation %ld (%s) failing: %zu rows for %zu images", n, mode, c.n, t->n);
            bad = 1;
        }
        /* A folder the run could not read has a failed row of its own, also when its images have
         * rows from an earlier run (--resume): that is exit 1 too. */
        for (size_t j = 0; j < c.n && !failed; j++) {
            const struct e2e_row *f = &c.rows[j];
            failed = f->f[COL_PATH].len && f->f[COL_PATH].s[f->f[COL_PATH].len - 1] == '/' &&
                     !strcmp(f->f[COL_STATUS].s, "failed");
        }
        if (!bad && ((rc == 0 && failed) || (rc == 1 && !failed))) {
            CHECKF(0, "allocation %ld (%s) failing: exit %d with %d failed rows", n, mode, rc, failed);
            bad = 1;
        }
        e2e_csv_free(&c);
    }
    ty->bad += bad;
}

static void test_alloc_failures(void)
{
    struct e2e_tree t;
    CU_ASSERT_FATAL(e2e_tree_generated(&t, "hardening", 4, 16) == 0);
    char count_file[700], out[4096];
    snprintf(count_file, sizeof count_file, "%s/count", t.base);
    /* The reference: nothing fails; how many allocations a run makes. */
    struct fa_env env = {0, 0, count_file};
    const char *argv[] = {failalloc_bin(), t.root, "--out", t.csv, "--server", M.base_url, "--strategy", "serial",
                          "--quiet", "--force", NULL};
    int rc = run_cmd_hook(argv, tmo(20), out, sizeof out, fa_child, &env);
    char *cnt = slurp(count_file, NULL);
    long k = cnt ? atol(cnt) : 0;
    free(cnt);
    struct e2e_csv ref;
    CHECKF(rc == 0 && k > 100, "%s with no failure: exit %d, %ld allocations counted: %s", failalloc_bin(), rc, k, out);
    if (rc != 0 || k <= 100 || e2e_csv_read(t.csv, &ref) != 0) {
        e2e_tree_free(&t);
        return;
    }
    CU_ASSERT_EQUAL(e2e_check_results(&ref, t.paths, t.n, NULL, NULL), 0);
    const char *all = getenv("ANNOTATE_ALLOC_SWEEP");
    long stride = all && !strcmp(all, "all") ? 1 : (k + 199) / 200;
    struct fa_tally once = {0}, from = {0}, res = {0};
    long t0 = now_ms();
    /* The allocation sites repeat per image: a stride that is not a multiple of the per-image
     * count walks through all of them. K + a few: the last ones (at exit) too. */
    for (long n = 1; n <= k + 2 && once.bad < 10; n += stride)
        fa_run(&t, &ref, n, 0, NULL, &once);
    for (long n = 1; n <= k + 2 && from.bad < 10; n += stride * 8)
        fa_run(&t, &ref, n, 1, NULL, &from);
    /* Resuming: reading the rows back, the rewrite without the failed one, the rest of the run. */
    char *text = slurp(t.csv, NULL), *prepared = NULL;
    const char *line = text ? strstr(text, t.paths[0]) : NULL, *eol = line ? strchr(line, '\n') : NULL;
    if (line && eol && line[-1] == '\n' && asprintf(&prepared, "%s%.*s%s,failed,,,,,boom,1,0\n", E2E_HEADER,
                                                   (int)(eol + 1 - line), line, t.paths[1]) > 0) {
        for (long n = 1; n <= k + 2 && res.bad < 10; n += stride * 2)
            fa_run(&t, &ref, n, n % 3 == 0, prepared, &res);
    } else {
        CU_FAIL("cannot build the results file to resume");
    }
    free(prepared);
    free(text);
    fprintf(stderr, "[%ld allocations; failing one: %ld runs (%ld exit 0, %ld exit 1, %ld exit 2); from it on: %ld runs "
                    "(%ld, %ld, %ld); resuming: %ld runs (%ld, %ld, %ld); %.1f s] ", k, once.runs, once.exit0,
            once.exit1, once.exit2, from.runs, from.exit0, from.exit1, from.exit2, res.runs, res.exit0, res.exit1,
            res.exit2, (double)(now_ms() - t0) / 1e3);
    CU_ASSERT_EQUAL(once.bad + from.bad + res.bad, 0);
    e2e_csv_free(&ref);
    e2e_tree_free(&t);
}

/* annotate merge with each of its allocations failing: exit 0 with the right merge, or exit 2 with
 * OUT as it was and no temporary file. */
static void test_alloc_merge(void)
{
    char dir[512], a[600], b[600], outf[600], tmpf[700], cnt[600];
    CU_ASSERT_FATAL(make_tmpdir(dir, sizeof dir, "hardening-alloc-merge") == 0);
    snprintf(a, sizeof a, "%s/a.csv", dir);
    snprintf(b, sizeof b, "%s/b.csv", dir);
    snprintf(outf, sizeof outf, "%s/out.csv", dir);
    snprintf(tmpf, sizeof tmpf, "%s.merge.tmp", outf);
    snprintf(cnt, sizeof cnt, "%s/count", dir);
    put(a, shard_a);
    put(b, shard_b);
    const char *argv[] = {failalloc_bin(), "merge", outf, a, b, NULL};
    char out[4096];
    struct fa_env env = {0, 0, cnt};
    int rc = run_cmd_hook(argv, tmo(20), out, sizeof out, fa_child, &env);
    char *c = slurp(cnt, NULL);
    long k = c ? atol(c) : 0;
    free(c);
    CHECKF(rc == 0 && k > 0 && file_equals(outf, merged), "merge with no failure: exit %d, %ld allocations: %s", rc, k,
           out);
    long bad = 0;
    for (long n = 1; n <= k + 1 && bad < 5; n++) {
        put(outf, "an earlier merge\n");
        struct fa_env e = {n, n % 2, NULL};
        rc = run_cmd_hook(argv, tmo(20), out, sizeof out, fa_child, &e);
        int ok = (rc == 0 && file_equals(outf, merged)) ||
                 (rc == 2 && strstr(out, "annotate merge:") && file_equals(outf, "an earlier merge\n"));
        ok = ok && !exists(tmpf);
        CHECKF(ok, "merge with allocation %ld failing: exit %d, temporary file %d: %s", n, rc, exists(tmpf), out);
        bad += !ok;
    }
    CU_ASSERT(tree_rm(dir) == 0);
}

/* ---- registration ------------------------------------------------------------------------------- */

int register_hardening(void)
{
    CU_pSuite s = CU_add_suite("hardening merge", merge_init, merge_clean);
    if (!s || !CU_add_test(s, "a killed merge's OUT.merge.tmp is taken over", test_merge_stale_tmp_replaced) ||
        !CU_add_test(s, "a failing merge removes a stale OUT.merge.tmp", test_merge_stale_tmp_removed_on_error) ||
        !CU_add_test(s, "a link or directory as OUT.merge.tmp is removed, never followed",
                     test_merge_stale_tmp_symlink) ||
        !CU_add_test(s, "a live merge's locked OUT.merge.tmp is left alone (exit 2)", test_merge_tmp_locked) ||
        !CU_add_test(s, "a write error leaves no OUT.merge.tmp and OUT as it was", test_merge_write_error))
        return -1;
    s = CU_add_suite("hardening rows", rows_init, rows_clean);
    if (!s || !CU_add_test(s, "folders replaced or removed mid-scan: each returned once", test_scan_folder_vanishes) ||
        !CU_add_test(s, "an unreadable folder: a failed row, exit 1, the summary; --resume retries it",
                     test_unreadable_folder_row) ||
        !CU_add_test(s, "--retry-failed keeps the failed rows of deleted files", test_retry_failed_keeps_deleted))
        return -1;
    s = CU_add_suite("hardening fds", rows_init, rows_clean);
    if (!s || !CU_add_test(s, "ulimit -n 64, 1000 in flight or 200 workers: every image ok", test_nofile_64) ||
        !CU_add_test(s, "a low soft limit is raised; one too low for any run is exit 2", test_nofile_soft_raised))
        return -1;
    s = CU_add_suite("hardening alloc", rows_init, rows_clean);
    if (!s || !CU_add_test(s, "every allocation of a run fails in turn: a whole CSV or a clear exit 2",
                           test_alloc_failures) ||
        !CU_add_test(s, "every allocation of a merge fails in turn: the merge, or exit 2 and OUT as it was",
                     test_alloc_merge))
        return -1;
    return 0;
}
