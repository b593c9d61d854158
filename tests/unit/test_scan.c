/* Suite "scan": the directory walk (src/flow/scan.c) over hostile, deep, unreadable and large trees. */
#include "flow/scan.h"
#include "e2e.h"
#include "tree.h"
#include "util.h"
#include "check.h"

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

/* ---- helpers ---- */

static char tmp_base[512];

/* A fresh temporary directory; "" on failure. */
static const char *make_tmp(void)
{
    if (make_tmpdir(tmp_base, sizeof tmp_base, "scan"))
        tmp_base[0] = '\0';
    return tmp_base;
}

/* Walks root and returns the sorted list of paths (NULL on failure); *warnings gets the count. */
static char **walk_sorted(const char *root, const struct scan_opts *opts, size_t *n, uint64_t *warnings)
{
    char err[512] = "";
    scanner *s = scan_open(root, opts, err, sizeof err);
    if (!s)
        return NULL;
    size_t k = 0, cap = 64;
    char **v = malloc(cap * sizeof *v);
    struct scan_entry e;
    size_t root_len = strlen(root), prefix = root_len + (root_len && root[root_len - 1] == '/' ? 0 : 1);
    int bad = 0;
    while (v && scan_next(s, &e)) {
        /* The entry is self-consistent: path_len, rel inside path, one '/' after root. */
        if (e.path_len != strlen(e.path) || e.rel != e.path + prefix || e.rel_len != e.path_len - prefix ||
            memcmp(e.path, root, root_len) != 0 || e.path[prefix - 1] != '/' || e.rel[0] == '/')
            bad = 1;
        if (k == cap) {
            cap *= 2;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv)
                break;
            v = nv;
        }
        v[k++] = strndup(e.path, e.path_len);
    }
    CU_ASSERT_FALSE(bad);
    *warnings = scan_warnings(s);
    scan_close(s);
    if (v)
        qsort(v, k, sizeof *v, cmp_strp);
    *n = k;
    return v;
}

/* Runs fn(arg) in a child process; returns its exit status (128 + the signal when one killed
 * it), -2 if it did not finish within timeout_ms (it is then killed), -1 if it could not run. */
static int run_child(int (*fn)(void *), void *arg, int timeout_ms)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(fn(arg));
    int rc = wait_for(pid, timeout_ms);
    if (rc == -2) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return rc;
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", "..", and the one opendir holds */
}

/* ---- the hostile tree ---- */

static int walk_count_child(void *root)
{
    char err[256];
    scanner *s = scan_open(root, NULL, err, sizeof err);
    if (!s)
        return 3;
    struct scan_entry e;
    int n = 0;
    while (scan_next(s, &e))
        n++;
    scan_close(s);
    return n > 100 ? 100 : n; /* below 128: a signal's status is never taken for a count */
}

static void test_hostile_tree(void)
{
    const char *tmp = make_tmp();
    CU_ASSERT_FATAL(*tmp);
    char root[600];
    snprintf(root, sizeof root, "%s/t", tmp);
    CU_ASSERT_FATAL(tree_make_hostile(root, e2e_fixtures_dir()) == 0);

    /* The tree really is hostile: the FIFO, the links and the loop are there. */
    char p[700];
    struct stat st;
    snprintf(p, sizeof p, "%s/fifo.jpg", root);
    CU_ASSERT(lstat(p, &st) == 0 && S_ISFIFO(st.st_mode));
    snprintf(p, sizeof p, "%s/link.jpg", root);
    CU_ASSERT(lstat(p, &st) == 0 && S_ISLNK(st.st_mode));
    CU_ASSERT(stat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0);
    snprintf(p, sizeof p, "%s/a/loop", root);
    CU_ASSERT(lstat(p, &st) == 0 && S_ISLNK(st.st_mode));
    snprintf(p, sizeof p, "%s/x.jpg", root);
    CU_ASSERT(lstat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0);
    snprintf(p, sizeof p, "%s/new\nline.jpg", root);
    CU_ASSERT(lstat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0);

    char **want = NULL;
    size_t n_want = 0;
    CU_ASSERT_FATAL(tree_expected(root, &want, &n_want) == 0);
    CU_ASSERT(n_want >= 20);

    /* First in a child with a deadline: opening the FIFO (no writer) would block forever. */
    int rc = run_child(walk_count_child, root, 10000);
    CU_ASSERT_EQUAL(rc, (int)n_want);
    if (rc == -2)
        CU_FAIL("the walk blocked: something opened fifo.jpg");

    if (rc == (int)n_want) {
        size_t n = 0;
        uint64_t warnings = 99;
        char **got = walk_sorted(root, NULL, &n, &warnings);
        CU_ASSERT_FATAL(got != NULL);
        CU_ASSERT_EQUAL(warnings, 0);
        CU_ASSERT_EQUAL(n, n_want);
        for (size_t i = 0; i < n && i < n_want; i++)
            if (strcmp(got[i], want[i]) != 0) {
                CU_FAIL("a path differs from tree_expected");
                fprintf(stderr, "\n  got  [%s]\n  want [%s]\n", got[i], want[i]);
                break;
            }
        free_strs(got, n);

        /* Same with the root written with a trailing slash: still one '/' per join. */
        char root_slash[610], **want2 = NULL;
        size_t n_want2 = 0;
        snprintf(root_slash, sizeof root_slash, "%s/", root);
        CU_ASSERT_FATAL(tree_expected(root_slash, &want2, &n_want2) == 0);
        got = walk_sorted(root_slash, NULL, &n, &warnings);
        CU_ASSERT_FATAL(got != NULL);
        CU_ASSERT_EQUAL(n, n_want2);
        for (size_t i = 0; i < n && i < n_want2; i++) {
            CU_ASSERT_STRING_EQUAL(got[i], want2[i]);
            CU_ASSERT(strstr(got[i], "//") == NULL);
        }
        free_strs(got, n);
        free_strs(want2, n_want2);
    }
    free_strs(want, n_want);
    CU_ASSERT(tree_rm(tmp) == 0);
    CU_ASSERT(access(tmp, F_OK) != 0);
}

/* ---- roots ---- */

/* 0 when scan_open refuses root with "not a directory". */
static int open_root_child(void *root)
{
    char err[256] = "";
    scanner *s = scan_open(root, NULL, err, sizeof err);
    if (s) {
        scan_close(s);
        return 1;
    }
    return strstr(err, "not a directory") ? 0 : 2;
}

static void test_bad_roots(void)
{
    const char *tmp = make_tmp();
    CU_ASSERT_FATAL(*tmp);
    char p[700], err[256];

    snprintf(p, sizeof p, "%s/does-not-exist", tmp);
    err[0] = '\0';
    CU_ASSERT(scan_open(p, NULL, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "does-not-exist") != NULL);
    CU_ASSERT(strstr(err, strerror(ENOENT)) != NULL);

    snprintf(p, sizeof p, "%s/file.jpg", tmp);
    FILE *f = fopen(p, "w");
    CU_ASSERT_FATAL(f != NULL);
    fclose(f);
    err[0] = '\0';
    CU_ASSERT(scan_open(p, NULL, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "file.jpg") != NULL);
    CU_ASSERT(strstr(err, "not a directory") != NULL);

    /* A FIFO or a dangling link as the root: refused at once, never blocking on the FIFO. */
    snprintf(p, sizeof p, "%s/fifo", tmp);
    CU_ASSERT_FATAL(mkfifo(p, 0644) == 0);
    CU_ASSERT_EQUAL(run_child(open_root_child, p, 10000), 0);
    snprintf(p, sizeof p, "%s/dangling", tmp);
    CU_ASSERT_FATAL(symlink("nowhere", p) == 0);
    CU_ASSERT(scan_open(p, NULL, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, strerror(ENOENT)) != NULL);

    err[0] = '\0';
    CU_ASSERT(scan_open("", NULL, err, sizeof err) == NULL);
    CU_ASSERT(err[0] != '\0');

    /* A root name with a newline is escaped in the message, which stays one line. */
    snprintf(p, sizeof p, "%s/no\nsuch", tmp);
    err[0] = '\0';
    CU_ASSERT(scan_open(p, NULL, err, sizeof err) == NULL);
    CU_ASSERT(strchr(err, '\n') == NULL);
    CU_ASSERT(strstr(err, "no\\nsuch") != NULL);

    /* A tiny err buffer is not overrun, and err may be NULL. */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    CU_ASSERT(scan_open(p, NULL, tiny, 5) == NULL);
    CU_ASSERT(memchr(tiny, '\0', 5) != NULL);
    CU_ASSERT(tiny[5] == 'x');
    CU_ASSERT(scan_open(p, NULL, NULL, 0) == NULL);

    scan_close(NULL);
    CU_ASSERT_EQUAL(scan_warnings(NULL), 0);
    CU_ASSERT_PTR_NULL(scan_last_warning(NULL));
    CU_ASSERT(tree_rm(tmp) == 0);
}

static void test_root_forms(void)
{
    const char *tmp = make_tmp();
    CU_ASSERT_FATAL(*tmp);
    char root[700], p[800];
    snprintf(root, sizeof root, "%s/g", tmp);
    CU_ASSERT_FATAL(tree_make_generated(root, 300, 100, 1) == 0);

    const char *forms[] = {"", "/", "//"};
    for (size_t f = 0; f < 3; f++) {
        char r[720];
        snprintf(r, sizeof r, "%s%s", root, forms[f]);
        size_t n = 0;
        uint64_t w = 9;
        char **got = walk_sorted(r, NULL, &n, &w);
        CU_ASSERT_FATAL(got != NULL);
        CU_ASSERT_EQUAL(n, 300);
        CU_ASSERT_EQUAL(w, 0);
        /* Root is kept byte for byte; a '/' is added only when it does not end in one. */
        char want[800];
        CU_ASSERT(tree_generated_path(r, 0, want, sizeof want) > 0);
        int found = 0;
        for (size_t i = 0; i < n; i++)
            found |= strcmp(got[i], want) == 0;
        CU_ASSERT(found);
        free_strs(got, n);
    }

    /* A root that is a symbolic link to a directory is followed (like find -H); nothing below. */
    snprintf(p, sizeof p, "%s/link", tmp);
    CU_ASSERT_FATAL(symlink("g", p) == 0);
    size_t n = 0;
    uint64_t w = 0;
    char **got = walk_sorted(p, NULL, &n, &w);
    CU_ASSERT_FATAL(got != NULL);
    CU_ASSERT_EQUAL(n, 300);
    if (n)
        CU_ASSERT(strncmp(got[0], p, strlen(p)) == 0);
    free_strs(got, n);

    /* After the end scan_next keeps returning 0. */
    char err[256];
    scanner *s = scan_open(root, NULL, err, sizeof err);
    CU_ASSERT_FATAL(s != NULL);
    struct scan_entry e;
    size_t k = 0;
    while (scan_next(s, &e))
        k++;
    CU_ASSERT_EQUAL(k, 300);
    CU_ASSERT_EQUAL(scan_next(s, &e), 0);
    CU_ASSERT_EQUAL(scan_next(s, &e), 0);
    scan_close(s);
    CU_ASSERT(tree_rm(tmp) == 0);
}

/* ---- extensions ---- */

static void test_parse_exts(void)
{
    struct scan_opts o;
    char *storage = NULL, err[256];

    CU_ASSERT_EQUAL_FATAL(scan_parse_exts("jpg,png,tiff", &o, &storage, err, sizeof err), 0);
    CU_ASSERT_EQUAL(o.n_exts, 3);
    CU_ASSERT_STRING_EQUAL(o.exts[0], "jpg");
    CU_ASSERT_STRING_EQUAL(o.exts[1], "png");
    CU_ASSERT_STRING_EQUAL(o.exts[2], "tiff");
    free(storage);

    CU_ASSERT_EQUAL_FATAL(scan_parse_exts(" JPG , .png ", &o, &storage, err, sizeof err), 0);
    CU_ASSERT_EQUAL(o.n_exts, 2);
    CU_ASSERT_STRING_EQUAL(o.exts[0], "JPG");
    CU_ASSERT_STRING_EQUAL(o.exts[1], "png");
    free(storage);

    CU_ASSERT_EQUAL_FATAL(scan_parse_exts("heic", &o, &storage, err, sizeof err), 0);
    CU_ASSERT_EQUAL(o.n_exts, 1);
    CU_ASSERT_STRING_EQUAL(o.exts[0], "heic");
    free(storage);

    const char *bad[] = {"", ",", ",,", "jpg,,png", "jpg,", ",jpg", "tar.gz", ".", "..jpg", " ",
                         "a/b", "jp g", "j*g", "x23456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        storage = (char *)"untouched";
        err[0] = '\0';
        int r = scan_parse_exts(bad[i], &o, &storage, err, sizeof err);
        CU_ASSERT_EQUAL(r, -1);
        CU_ASSERT_PTR_NULL(storage);
        CU_ASSERT(err[0] != '\0');
        if (r == 0) {
            fprintf(stderr, "\n  accepted bad list [%s]\n", bad[i]);
            free(storage);
        }
    }
    CU_ASSERT_EQUAL(scan_parse_exts(NULL, &o, &storage, err, sizeof err), -1);
    CU_ASSERT_EQUAL(scan_parse_exts("jpg", &o, &storage, NULL, 0), 0);
    free(storage);
}

static void touch(const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("x", f);
    fclose(f);
}

static void test_custom_exts(void)
{
    const char *tmp = make_tmp();
    CU_ASSERT_FATAL(*tmp);
    const char *names[] = {"a.TIFF", "b.jpg", "c.tif", "d.Tiff", "e.tiff.bak", "tiff", "f.heic"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        touch(tmp, names[i]);

    struct scan_opts o;
    char *storage, err[256];
    CU_ASSERT_FATAL(scan_parse_exts("tiff,HEIC", &o, &storage, err, sizeof err) == 0);
    size_t n = 0;
    uint64_t w = 0;
    char **got = walk_sorted(tmp, &o, &n, &w);
    free(storage); /* the scanner copied what it needs */
    CU_ASSERT_FATAL(got != NULL);
    CU_ASSERT_EQUAL(n, 3);
    if (n == 3) {
        size_t tl = strlen(tmp);
        CU_ASSERT_STRING_EQUAL(got[0] + tl, "/a.TIFF");
        CU_ASSERT_STRING_EQUAL(got[1] + tl, "/d.Tiff");
        CU_ASSERT_STRING_EQUAL(got[2] + tl, "/f.heic");
    }
    free_strs(got, n);

    /* Defaults: jpg jpeg png gif bmp webp, nothing else. */
    got = walk_sorted(tmp, NULL, &n, &w);
    CU_ASSERT_EQUAL(n, 1);
    free_strs(got, n);

    /* exts given directly, with a leading dot and mixed case. */
    const char *direct[] = {".TIF"};
    struct scan_opts o2 = {direct, 1, 0};
    got = walk_sorted(tmp, &o2, &n, &w);
    CU_ASSERT_EQUAL(n, 1);
    if (n == 1)
        CU_ASSERT(strstr(got[0], "/c.tif") != NULL);
    free_strs(got, n);
    CU_ASSERT(tree_rm(tmp) == 0);
}

/* ---- unreadable directories ---- */

#define NOBODY 65534 /* Debian's nobody and nogroup */

/* What the unprivileged walk saw, sent back through a pipe. */
struct unreadable_result {
    int step; /* 0: walked; else the step that failed, see unreadable_child */
    int err;  /* its errno */
    int uid;
    int count;
    unsigned long long warnings;
    char last[400];
};

static int unreadable_fd = -1;

/* In a child. Root reads any directory (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), and the tests run
 * as root: so first become nobody for good (groups, gid, then uid). Then make sure locked/ really
 * cannot be opened, and walk. */
static int unreadable_child(void *root)
{
    struct unreadable_result r = {0};
    char locked[1024];
    snprintf(locked, sizeof locked, "%s/locked", (char *)root);
    if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)) {
        r.step = 1;
        r.err = errno;
    }
    r.uid = (int)geteuid();
    int probe = r.step ? -1 : open(locked, O_RDONLY | O_DIRECTORY);
    if (r.step == 0 && probe >= 0) {
        close(probe);
        r.step = 2; /* permissions not enforced */
    } else if (r.step == 0 && errno != EACCES) {
        r.step = 3;
        r.err = errno;
    }
    if (r.step == 0) {
        char err[256] = "";
        scanner *s = scan_open(root, NULL, err, sizeof err);
        if (!s) {
            r.step = 4;
            snprintf(r.last, sizeof r.last, "%s", err);
        } else {
            struct scan_entry e;
            while (scan_next(s, &e))
                r.count++;
            r.warnings = scan_warnings(s);
            if (scan_last_warning(s))
                snprintf(r.last, sizeof r.last, "%s", scan_last_warning(s));
            scan_close(s);
        }
    }
    return write(unreadable_fd, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1;
}

static void test_unreadable_subdir(void)
{
    /* Under /tmp (not $TMPDIR), mode 0755 all the way, so that nobody can reach the tree. */
    char root[64] = "/tmp/annotate-scan-unreadable-XXXXXX", p[800];
    CU_ASSERT_FATAL(mkdtemp(root) != NULL);
    CU_ASSERT_FATAL(chmod(root, 0755) == 0);
    touch(root, "ok.jpg");
    snprintf(p, sizeof p, "%s/zz", root);
    CU_ASSERT_FATAL(mkdir(p, 0755) == 0 && chmod(p, 0755) == 0);
    touch(p, "after.png"); /* the walk goes on after the failure */
    snprintf(p, sizeof p, "%s/locked", root);
    CU_ASSERT_FATAL(mkdir(p, 0755) == 0);
    touch(p, "inner.jpg");
    CU_ASSERT_FATAL(chmod(p, 0) == 0);

    int fds[2];
    CU_ASSERT_FATAL(pipe(fds) == 0);
    unreadable_fd = fds[1];
    int rc = run_child(unreadable_child, root, 10000);
    close(fds[1]);
    struct unreadable_result r;
    ssize_t got = read(fds[0], &r, sizeof r);
    close(fds[0]);
    CHECKF(rc == 0 && got == (ssize_t)sizeof r, "the unprivileged walk did not report (exit %d)", rc);
    if (rc == 0 && got == (ssize_t)sizeof r) {
        CHECKF(r.step != 1, "cannot become nobody (uid/gid %d) to test an unreadable directory: %s", NOBODY,
               strerror(r.err));
        CHECKF(r.step != 2, "as uid %d a mode-000 directory can still be opened: permissions are not enforced here",
               r.uid);
        CHECKF(r.step != 3, "as uid %d opening the mode-000 directory failed with %s, not EACCES", r.uid,
               strerror(r.err));
        CHECKF(r.step != 4, "as uid %d the scan cannot open %s: %s", r.uid, root, r.last);
        if (r.step == 0) {
            CHECKF(r.count == 2, "as uid %d: %d files found, want ok.jpg and zz/after.png", r.uid, r.count);
            CHECKF(r.warnings == 1, "as uid %d: %llu warnings, want 1 for locked/", r.uid, r.warnings);
            CHECKF(strstr(r.last, "/locked'") && strstr(r.last, strerror(EACCES)),
                   "the warning does not name locked/ and %s: %s", strerror(EACCES), r.last);
        }
    }
    CU_ASSERT(tree_rm(root) == 0);
}

/* ---- deep trees ---- */

#define DEEP 300

/* DEEP nested directories with long names (the deepest path is ~13 KB, past PATH_MAX), each
 * holding a%03d.jpg, z%03d.png and the next level. */
static int make_deep(const char *root)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    for (int lv = 0; lv < DEEP; lv++) {
        char name[64];
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, k ? "z%03d.png" : "a%03d.jpg", lv);
            int f = openat(fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (f < 0 || close(f) != 0) {
                close(fd);
                return -1;
            }
        }
        if (lv + 1 == DEEP)
            break;
        snprintf(name, sizeof name, "level-%03d-with-a-name-long-enough-to-pass-PATH_MAX", lv + 1);
        int nfd = mkdirat(fd, name, 0755) == 0 ? openat(fd, name, O_RDONLY | O_DIRECTORY) : -1;
        close(fd);
        if (nfd < 0)
            return -1;
        fd = nfd;
    }
    close(fd);
    return 0;
}

/* Walks the deep tree; returns 0 when every file came exactly once at its depth. */
static int check_deep(const char *root, int *max_fds, uint64_t *warnings)
{
    char err[256];
    scanner *s = scan_open(root, NULL, err, sizeof err);
    if (!s)
        return -1;
    static unsigned char seen[DEEP][2];
    memset(seen, 0, sizeof seen);
    struct scan_entry e;
    int bad = 0, n = 0;
    size_t longest = 0;
    while (scan_next(s, &e)) {
        if (++n > 4 * DEEP) { /* repeating itself: fail rather than loop */
            bad = 1;
            break;
        }
        const char *base = strrchr(e.rel, '/');
        base = base ? base + 1 : e.rel;
        int lv = atoi(base + 1), k = base[0] == 'z';
        size_t slashes = 0;
        for (const char *c = e.rel; *c; c++)
            slashes += *c == '/';
        if (lv < 0 || lv >= DEEP || slashes != (size_t)lv || seen[lv][k]++)
            bad = 1;
        if (e.path_len > longest)
            longest = e.path_len;
        if (lv == DEEP - 1 && max_fds) {
            int fds = count_open_fds();
            if (fds > *max_fds)
                *max_fds = fds;
        }
    }
    *warnings = scan_warnings(s);
    scan_close(s);
    if (longest <= 4096)
        bad = 1; /* the test is meant to pass PATH_MAX */
    return bad || n != 2 * DEEP ? -1 : 0;
}

static int deep_low_fd_child(void *root)
{
    /* Only ~40 fds free: the walk must evict levels on EMFILE and still find everything.
     * Lowering a limit needs no privilege, so neither step may fail. */
    int base = count_open_fds();
    if (base < 0)
        return 2;
    struct rlimit rl = {(rlim_t)base + 40, (rlim_t)base + 40};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 3;
    uint64_t w = 0;
    return check_deep(root, NULL, &w) == 0 && w == 0 ? 0 : 1;
}

static void test_deep_tree(void)
{
    const char *tmp = make_tmp();
    CU_ASSERT_FATAL(*tmp);
    CU_ASSERT_FATAL(make_deep(tmp) == 0);
    int before = count_open_fds(), max_fds = 0;
    uint64_t w = 9;
    CU_ASSERT(check_deep(tmp, &max_fds, &w) == 0);
    CU_ASSERT_EQUAL(w, 0);
    /* At most 128 streams are held open however deep the tree is. */
    CU_ASSERT(max_fds - before <= 130);
    CU_ASSERT(max_fds - before >= 2);
    CU_ASSERT_EQUAL(count_open_fds(), before);

    int rc = run_child(deep_low_fd_child, (void *)tmp, 30000);
    CHECKF(rc != 2, "cannot count the open file descriptors (/proc/self/fd)");
    CHECKF(rc != 3, "cannot lower RLIMIT_NOFILE to 40 descriptors above those open");
    CHECKF(rc == 0 || rc == 2 || rc == 3, "the walk with 40 free descriptors: exit %d (1: files missed, repeated "
                                          "or warned about)", rc);
    CU_ASSERT(tree_rm(tmp) == 0);
}

/* ---- many files: all found once, memory flat ---- */

#define MANY 20000

/* Bytes in use on the heap: ASan's own counter under AddressSanitizer (whose allocator glibc's
 * mallinfo2 does not see), else mallinfo2. */
size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

static size_t heap_in_use(void)
{
    if (__sanitizer_get_current_allocated_bytes)
        return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void test_many_files_flat_memory(void)
{
    const char *tmp = make_tmp();
    CU_ASSERT_FATAL(*tmp);
    char root[700];
    snprintf(root, sizeof root, "%s/gen", tmp);
    CU_ASSERT_FATAL(tree_make_generated(root, MANY, 96, 42) == 0);

    /* The generated files are distinct valid PNGs of the asked size. */
    char p[800];
    unsigned char a[96], b[96];
    CU_ASSERT(tree_generated_path(root, 7, p, sizeof p) > 0);
    FILE *f = fopen(p, "rb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fread(a, 1, sizeof a, f) == sizeof a && fgetc(f) == EOF);
    fclose(f);
    CU_ASSERT(tree_generated_path(root, 263, p, sizeof p) > 0); /* same shard, 256 later */
    f = fopen(p, "rb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT(fread(b, 1, sizeof b, f) == sizeof b);
    fclose(f);
    CU_ASSERT(memcmp(a, "\x89PNG\r\n\x1a\n", 8) == 0);
    CU_ASSERT(memcmp(a + 8, "\0\0\0\x0dIHDR", 8) == 0);
    CU_ASSERT(memcmp(a + 96 - 8, "IEND\xae\x42\x60\x82", 8) == 0);
    CU_ASSERT(memcmp(a, b, sizeof a) != 0);

    char err[256];
    scanner *s = scan_open(root, NULL, err, sizeof err);
    CU_ASSERT_FATAL(s != NULL);
    unsigned char *seen = calloc(MANY, 1);
    CU_ASSERT_FATAL(seen != NULL);
    struct scan_entry e;
    size_t n = 0, bad = 0, early = 0, late = 0;
    while (scan_next(s, &e)) {
        n++;
        const char *base = strrchr(e.path, '/') + 1;
        size_t i = strtoul(base + 3, NULL, 10);
        if (i >= MANY || seen[i]++)
            bad++;
        if (n == 100)
            early = heap_in_use();
        else if (n == MANY - 1)
            late = heap_in_use();
    }
    CU_ASSERT_EQUAL(n, MANY);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(scan_warnings(s), 0);
    scan_close(s);
    free(seen);

    /* ASan's counter or glibc's mallinfo2 always see the suite's own allocations; zero means a
     * malloc neither knows (valgrind replaces malloc, but does not run this suite). */
    if (early == 0 && late == 0) {
        CU_FAIL("the heap in use cannot be measured (mallinfo2 reports 0): memory growth is not checked");
    } else {
        /* Between the 100th and the 19,999th file (both read with the root and one shard open)
         * the heap in use must not have grown: nothing is kept per file. Allow 16 KiB of slack
         * for stdio or CUnit. (This sees memory kept, not a malloc freed at once; scan_next has
         * no malloc on its per-file path, only path buffer growth for a longer path.) */
        long long grew = (long long)late - (long long)early;
        CU_ASSERT(grew <= 16 * 1024);
        if (grew > 16 * 1024)
            fprintf(stderr, "\n  heap grew by %lld bytes over %d files\n", grew, MANY);
    }
    CU_ASSERT(tree_rm(tmp) == 0);
}

/* ---- the helpers themselves ---- */

static void test_tree_helpers(void)
{
    const char *tmp = make_tmp();
    CU_ASSERT_FATAL(*tmp);
    char p[800], q[900];

    /* tree_rm does not follow links: a link to a directory outside goes, the target stays. */
    snprintf(p, sizeof p, "%s/outside", tmp);
    CU_ASSERT_FATAL(mkdir(p, 0755) == 0);
    touch(p, "keep.jpg");
    snprintf(p, sizeof p, "%s/victim", tmp);
    CU_ASSERT_FATAL(mkdir(p, 0755) == 0);
    snprintf(q, sizeof q, "%s/to-outside", p);
    CU_ASSERT_FATAL(symlink("../outside", q) == 0);
    snprintf(q, sizeof q, "%s/sub", p);
    CU_ASSERT_FATAL(mkdir(q, 0) == 0); /* unreadable */
    CU_ASSERT(tree_rm(p) == 0);
    CU_ASSERT(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/outside/keep.jpg", tmp);
    CU_ASSERT(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/missing", tmp);
    CU_ASSERT(tree_rm(p) == 0);

    /* tree_expected is sorted, and every path in it exists as a regular file. */
    snprintf(p, sizeof p, "%s/h", tmp);
    CU_ASSERT_FATAL(tree_make_hostile(p, e2e_fixtures_dir()) == 0);
    char **v;
    size_t n;
    CU_ASSERT_FATAL(tree_expected(p, &v, &n) == 0);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        CU_ASSERT(lstat(v[i], &st) == 0 && S_ISREG(st.st_mode));
        if (i)
            CU_ASSERT(strcmp(v[i - 1], v[i]) < 0);
    }
    free_strs(v, n);
    CU_ASSERT(tree_make_hostile(p, "/nonexistent-images-dir") == -1);

    /* Generated sizes: empty, short, one row, padded past 64 KiB. */
    size_t sizes[] = {0, 1, 20, 69, 70, 1000, 4165, 4176, 4177, 4178, 200000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        snprintf(p, sizeof p, "%s/s%zu", tmp, k);
        CU_ASSERT_FATAL(tree_make_generated(p, 3, sizes[k], 5) == 0);
        for (size_t i = 0; i < 3; i++) {
            struct stat st;
            CU_ASSERT(tree_generated_path(p, i, q, sizeof q) > 0);
            CU_ASSERT(stat(q, &st) == 0 && (size_t)st.st_size == sizes[k]);
        }
    }
    CU_ASSERT(tree_rm(tmp) == 0);
}

int register_scan(void)
{
    CU_pSuite s = CU_add_suite("scan", NULL, NULL);
    if (!s)
        return -1;
    if (!CU_add_test(s, "hostile tree: exactly tree_expected, FIFO never opened", test_hostile_tree) ||
        !CU_add_test(s, "roots that cannot be scanned", test_bad_roots) ||
        !CU_add_test(s, "root forms: trailing slash, symlink root, end of walk", test_root_forms) ||
        !CU_add_test(s, "extension list parsing", test_parse_exts) ||
        !CU_add_test(s, "custom extensions, any case", test_custom_exts) ||
        !CU_add_test(s, "unreadable subdirectory: warning, walk goes on", test_unreadable_subdir) ||
        !CU_add_test(s, "300-level tree past PATH_MAX, bounded fds", test_deep_tree) ||
        !CU_add_test(s, "20,000 files: each once, heap flat", test_many_files_flat_memory) ||
        !CU_add_test(s, "tree helpers", test_tree_helpers))
        return -1;
    return 0;
}
