/* e2e_util: helpers for the end-to-end tests (see e2e_util.h). Not a suite: only helpers. */
#include "e2e.h"

#include <csv.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "common/b64.h"
#include "mock/answers.h"
#include "proc.h"
#include "tree.h"
#include "util.h"

/* ---- results files ---- */

struct reader {
    struct e2e_csv *c;
    struct e2e_row cur;
    int cap_cur;
    int first;
    int oom;
};

static void on_field(void *s, size_t len, void *ud)
{
    struct reader *r = ud;
    if (r->cur.n == r->cap_cur) {
        r->cap_cur = r->cap_cur ? r->cap_cur * 2 : 16;
        r->cur.f = realloc(r->cur.f, (size_t)r->cap_cur * sizeof *r->cur.f);
    }
    struct e2e_field *f = &r->cur.f[r->cur.n++];
    f->s = malloc(len + 1);
    if (len)
        memcpy(f->s, s, len);
    f->s[len] = 0;
    f->len = len;
}

static void on_record(int c, void *ud)
{
    (void)c;
    struct reader *r = ud;
    struct e2e_row row = r->cur;
    r->cur.f = NULL;
    r->cur.n = 0;
    r->cap_cur = 0;
    if (r->first) {
        r->c->header = row;
        r->first = 0;
        return;
    }
    struct e2e_csv *cv = r->c;
    if (cv->n == cv->cap) {
        cv->cap = cv->cap ? cv->cap * 2 : 256;
        cv->rows = realloc(cv->rows, cv->cap * sizeof *cv->rows);
    }
    cv->rows[cv->n++] = row;
    if (row.n != cv->header.n)
        cv->ragged++;
}

static int no_space(unsigned char c)
{
    (void)c;
    return 0; /* read fields byte for byte: RFC 4180 spaces and tabs are part of a field */
}

int e2e_csv_read(const char *path, struct e2e_csv *out)
{
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = slurp(path, &len);
    if (!text)
        return -1;
    out->complete = len == 0 || text[len - 1] == '\n';
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI)) {
        free(text);
        return -1;
    }
    csv_set_space_func(&p, no_space);
    struct reader r = {.c = out, .first = 1};
    int rc = 0;
    if (csv_parse(&p, text, len, on_field, on_record, &r) != len)
        rc = -1;
    if (csv_fini(&p, on_field, on_record, &r))
        rc = -1;
    csv_free(&p);
    for (int i = 0; i < r.cur.n; i++)
        free(r.cur.f[i].s);
    free(r.cur.f);
    free(text);
    if (rc)
        e2e_csv_free(out);
    return rc;
}

static void row_free(struct e2e_row *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->f[i].s);
    free(r->f);
    r->f = NULL;
    r->n = 0;
}

void e2e_csv_free(struct e2e_csv *c)
{
    if (!c)
        return;
    row_free(&c->header);
    for (size_t i = 0; i < c->n; i++)
        row_free(&c->rows[i]);
    free(c->rows);
    memset(c, 0, sizeof *c);
}

int e2e_csv_well_formed(const struct e2e_csv *c)
{
    static const char *const names[N_COLS] = {"path",     "status", "model_01", "model_02", "model_03",
                                              "model_05", "error",  "attempts", "elapsed_ms"};
    if (c->header.n != N_COLS || c->ragged)
        return 0;
    for (int i = 0; i < N_COLS; i++)
        if (strcmp(c->header.f[i].s, names[i]))
            return 0;
    return 1;
}

long e2e_csv_attempts(const struct e2e_csv *c)
{
    long sum = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->rows[i].n > COL_ATTEMPTS)
            sum += atol(c->rows[i].f[COL_ATTEMPTS].s);
    return sum;
}

char **e2e_csv_keys(const struct e2e_csv *c)
{
    char **v = calloc(c->n + 1, sizeof *v);
    for (size_t i = 0; i < c->n; i++) {
        const struct e2e_row *r = &c->rows[i];
        size_t len = 1;
        for (int k = 0; k < r->n; k++)
            len += r->f[k].len + 1;
        char *s = malloc(len), *o = s;
        for (int k = 0; k < r->n; k++) {
            if (k == COL_ATTEMPTS || k == COL_ELAPSED)
                continue;
            memcpy(o, r->f[k].s, r->f[k].len);
            o += r->f[k].len;
            *o++ = 0x1f;
        }
        *o = 0;
        v[i] = s;
    }
    qsort(v, c->n, sizeof *v, cmp_strp);
    return v;
}

/* ---- predictions ---- */

/* JSON truthiness as the seed's Python has it, written again here rather than taken from
 * chain.c, so a mistake there cannot hide itself. */
static int truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return 0;
    if (cJSON_IsNumber(v))
        return v->valuedouble != 0;
    if (cJSON_IsString(v))
        return v->valuestring[0] != 0;
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return cJSON_GetArraySize(v) > 0;
    return 1;
}

static char *print(const cJSON *j)
{
    return j ? cJSON_PrintUnformatted(j) : NULL;
}

int e2e_predict(const unsigned char *bytes, size_t len, struct e2e_pred *p)
{
    memset(p, 0, sizeof *p);
    int rc = -1;
    cJSON *m1 = mock_answer(1, bytes, len), *m2 = mock_answer(2, bytes, len), *m3 = NULL, *m4 = NULL;
    cJSON *m5 = NULL;
    if (!m1 || !m2)
        goto out;
    p->cell[0] = print(m1);
    p->cell[1] = print(m2);
    p->requests[0] = p->requests[1] = 1;
    if (truthy(m1) && truthy(m2)) {
        m3 = mock_answer(3, bytes, len);
        m4 = mock_answer(4, bytes, len);
        if (!m3 || !m4)
            goto out;
        p->cell[2] = print(m3);
        p->requests[2] = p->requests[3] = 1;
        const cJSON *subs = cJSON_GetObjectItemCaseSensitive(m4, "sub-img");
        if (!cJSON_IsArray(subs))
            goto out;
        m5 = cJSON_CreateArray();
        for (const cJSON *e = subs->child; e; e = e->next) {
            const cJSON *img = cJSON_GetObjectItemCaseSensitive(e, "img");
            if (!cJSON_IsString(img))
                goto out;
            size_t n = strlen(img->valuestring), dl = 0;
            unsigned char *d = malloc(b64_decoded_max(n) + 1);
            if (b64_decode(img->valuestring, n, d, &dl)) {
                free(d);
                goto out;
            }
            cJSON_AddItemToArray(m5, mock_answer(5, d, dl));
            free(d);
            p->requests[4]++;
        }
        p->cell[3] = print(m5);
    }
    for (int i = 0; i < 4; i++)
        if (!p->cell[i])
            p->cell[i] = strdup("");
    rc = 0;
out:
    cJSON_Delete(m1);
    cJSON_Delete(m2);
    cJSON_Delete(m3);
    cJSON_Delete(m4);
    cJSON_Delete(m5);
    if (rc)
        e2e_pred_free(p);
    return rc;
}

void e2e_pred_free(struct e2e_pred *p)
{
    for (int i = 0; i < 4; i++) {
        free(p->cell[i]);
        p->cell[i] = NULL;
    }
}

/* ---- checking a results file ---- */

static long problem(long *count, const char *path, size_t plen, const char *fmt, const char *a, const char *b)
{
    if (++*count <= 8) {
        fprintf(stderr, "\n  [e2e] ");
        if (path)
            fputs(printable(path, plen), stderr);
        fprintf(stderr, ": ");
        fprintf(stderr, fmt, a ? a : "", b ? b : "");
    }
    return *count;
}

static const struct e2e_csv *sort_csv; /* qsort has no user data; the tests call this from one thread */

static int cmp_row_idx(const void *a, const void *b)
{
    const struct e2e_row *x = &sort_csv->rows[*(const size_t *)a], *y = &sort_csv->rows[*(const size_t *)b];
    size_t lx = x->n ? x->f[0].len : 0, ly = y->n ? y->f[0].len : 0;
    int r = memcmp(x->n ? x->f[0].s : "", y->n ? y->f[0].s : "", lx < ly ? lx : ly);
    return r ? r : (lx > ly) - (lx < ly);
}

static int cmp_path_row(const char *p, size_t pl, const struct e2e_row *y)
{
    size_t ly = y->n ? y->f[0].len : 0;
    int r = memcmp(p, y->n ? y->f[0].s : "", pl < ly ? pl : ly);
    return r ? r : (pl > ly) - (pl < ly);
}

long e2e_check_results(const struct e2e_csv *c, char *const *paths, size_t n, const struct e2e_expect *x,
                       long req[5])
{
    static const struct e2e_expect none = {0};
    if (!x)
        x = &none;
    long bad = 0;
    if (!e2e_csv_well_formed(c))
        problem(&bad, NULL, 0, "the results file is not well formed (header or field counts)%s%s", NULL, NULL);
    if (!c->complete)
        problem(&bad, NULL, 0, "the results file does not end with a newline%s%s", NULL, NULL);
    size_t *idx = malloc((c->n + 1) * sizeof *idx);
    unsigned char *seen = calloc(c->n + 1, 1);
    for (size_t i = 0; i < c->n; i++)
        idx[i] = i;
    sort_csv = c;
    qsort(idx, c->n, sizeof *idx, cmp_row_idx);
    for (size_t k = 0; k < n; k++) {
        const char *path = paths[k];
        size_t pl = strlen(path);
        /* lower bound */
        size_t lo = 0, hi = c->n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cmp_path_row(path, pl, &c->rows[idx[mid]]) > 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t count = 0, first = lo;
        while (lo + count < c->n && cmp_path_row(path, pl, &c->rows[idx[lo + count]]) == 0) {
            seen[idx[lo + count]] = 1;
            count++;
        }
        if (count != 1) {
            char msg[64];
            snprintf(msg, sizeof msg, "%zu", count);
            problem(&bad, path, pl, "%s rows instead of 1%s", msg, NULL);
            if (count == 0)
                continue;
        }
        const struct e2e_row *r = &c->rows[idx[first]];
        if (r->n != N_COLS)
            continue;
        size_t len;
        unsigned char *bytes = (unsigned char *)slurp(path, &len);
        if (!bytes) {
            problem(&bad, path, pl, "cannot read the image back%s%s", NULL, NULL);
            continue;
        }
        const char *status = r->f[COL_STATUS].s, *err = r->f[COL_ERROR].s;
        int cells_empty = !r->f[COL_M01].len && !r->f[COL_M02].len && !r->f[COL_M03].len && !r->f[COL_M05].len;
        if (len == 0 || (x->max_bytes && len > x->max_bytes)) {
            const char *why = len == 0 ? "empty" : "max-image-bytes";
            if (strcmp(status, "failed") || !strcasestr(err, why))
                problem(&bad, path, pl, "expected failed mentioning %s, got %s", why, status);
            else if (!cells_empty || strcmp(r->f[COL_ATTEMPTS].s, "0"))
                problem(&bad, path, pl, "not sent, yet has results or attempts %s%s", r->f[COL_ATTEMPTS].s, NULL);
            free(bytes);
            continue;
        }
        if (x->fail_substr) {
            if (strcmp(status, "failed") || !strcasestr(err, x->fail_substr))
                problem(&bad, path, pl, "expected failed mentioning %s, got error '%s'", x->fail_substr, err);
            else if (!cells_empty)
                problem(&bad, path, pl, "failed, yet has results%s%s", NULL, NULL);
            free(bytes);
            continue;
        }
        if (x->allow_worker_failed && !strcmp(status, "failed") && strcasestr(err, "worker")) {
            free(bytes);
            continue;
        }
        struct e2e_pred p;
        if (e2e_predict(bytes, len, &p)) {
            problem(&bad, path, pl, "cannot predict%s%s", NULL, NULL);
            free(bytes);
            continue;
        }
        free(bytes);
        if (strcmp(status, "ok"))
            problem(&bad, path, pl, "status %s, error '%s'", status, err);
        else if (r->f[COL_ERROR].len)
            problem(&bad, path, pl, "ok with an error '%s'%s", err, NULL);
        static const char *const names[4] = {"model_01", "model_02", "model_03", "model_05"};
        for (int m = 0; m < 4; m++)
            if (strcmp(r->f[COL_M01 + m].s, p.cell[m])) {
                char want[600];
                snprintf(want, sizeof want, "%s: got '%.200s', want '%.200s'", names[m], r->f[COL_M01 + m].s,
                         p.cell[m]);
                problem(&bad, path, pl, "%s%s", want, NULL);
            }
        int total = 0;
        for (int m = 0; m < 5; m++) {
            total += p.requests[m];
            if (req)
                req[m] += p.requests[m];
        }
        if (x->check_attempts && atol(r->f[COL_ATTEMPTS].s) != total) {
            char want[64];
            snprintf(want, sizeof want, "%d", total);
            problem(&bad, path, pl, "attempts %s, want %s", r->f[COL_ATTEMPTS].s, want);
        }
        e2e_pred_free(&p);
    }
    for (size_t i = 0; i < c->n; i++)
        if (!seen[i])
            problem(&bad, c->rows[i].n ? c->rows[i].f[0].s : "", c->rows[i].n ? c->rows[i].f[0].len : 0,
                    "a row for an unexpected path%s%s", NULL, NULL);
    free(idx);
    free(seen);
    if (bad > 8)
        fprintf(stderr, "\n  [e2e] ... %ld problems in all\n", bad);
    return bad;
}

char **e2e_generated_paths(const char *root, size_t n)
{
    char **v = calloc(n + 1, sizeof *v);
    char buf[4096];
    for (size_t i = 0; v && i < n; i++) {
        if (tree_generated_path(root, i, buf, sizeof buf) < 0 || !(v[i] = strdup(buf))) {
            free_strs(v, i);
            return NULL;
        }
    }
    return v;
}

/* ---- a test's tree ---- */

static int tree_dirs(struct e2e_tree *t, const char *tag)
{
    memset(t, 0, sizeof *t);
    if (make_tmpdir(t->base, sizeof t->base, tag))
        return -1;
    snprintf(t->root, sizeof t->root, "%s/t", t->base);
    snprintf(t->csv, sizeof t->csv, "%s/r.csv", t->base);
    snprintf(t->log, sizeof t->log, "%s/log", t->base);
    snprintf(t->sj, sizeof t->sj, "%s/stats.json", t->base);
    return 0;
}

int e2e_tree_generated(struct e2e_tree *t, const char *tag, size_t n, unsigned seed)
{
    if (tree_dirs(t, tag))
        return -1;
    if (tree_make_generated(t->root, n, 200, seed) || !(t->paths = e2e_generated_paths(t->root, n))) {
        e2e_tree_free(t);
        return -1;
    }
    t->n = n;
    return 0;
}

int e2e_tree_hostile(struct e2e_tree *t, const char *tag)
{
    if (tree_dirs(t, tag))
        return -1;
    if (tree_make_hostile(t->root, e2e_fixtures_dir()) || tree_expected(t->root, &t->paths, &t->n)) {
        e2e_tree_free(t);
        return -1;
    }
    return 0;
}

void e2e_tree_free(struct e2e_tree *t)
{
    free_strs(t->paths, t->n);
    t->paths = NULL;
    t->n = 0;
    if (t->base[0])
        tree_rm(t->base);
    t->base[0] = '\0';
}

/* ---- --stats-json ---- */

cJSON *e2e_read_json(const char *path)
{
    size_t len;
    char *text = slurp(path, &len);
    if (!text)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

double e2e_json_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

long e2e_check_summary(const char *stats_json, const struct e2e_csv *c, long requests_want)
{
    long bad = 0;
    cJSON *j = e2e_read_json(stats_json);
    if (!j) {
        fprintf(stderr, "\n  [e2e] --stats-json %s: missing or not JSON\n", stats_json);
        return 1;
    }
    double attempts = e2e_json_num(j, "attempts"), requests = e2e_json_num(j, "requests");
    double retries = e2e_json_num(j, "retries");
    double ok = e2e_json_num(j, "images_ok"), failed = e2e_json_num(j, "images_failed");
    long col = e2e_csv_attempts(c), rows_ok = 0, rows_failed = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->rows[i].n > COL_STATUS && !strcmp(c->rows[i].f[COL_STATUS].s, "ok"))
            rows_ok++;
        else
            rows_failed++;
    }
    if (attempts != (double)col) {
        fprintf(stderr, "\n  [e2e] summary: attempts %.0f, the attempts column sums to %ld\n", attempts, col);
        bad++;
    }
    if (retries != attempts - requests || requests > attempts || retries < 0) {
        fprintf(stderr, "\n  [e2e] summary: %.0f requests, %.0f attempts, yet %.0f retries\n", requests, attempts,
                retries);
        bad++;
    }
    if (requests_want >= 0 && requests != (double)requests_want) {
        fprintf(stderr, "\n  [e2e] summary: %.0f requests, the rows imply %ld\n", requests, requests_want);
        bad++;
    }
    if (ok != (double)rows_ok || failed != (double)rows_failed) {
        fprintf(stderr, "\n  [e2e] summary: %.0f ok, %.0f failed; the rows: %ld ok, %ld failed\n", ok, failed,
                rows_ok, rows_failed);
        bad++;
    }
    cJSON_Delete(j);
    return bad;
}

/* ---- processes ---- */

const char *e2e_annotate_bin(void)
{
    const char *b = getenv("ANNOTATE_BIN");
    return b && *b ? b : "build/annotate";
}

const char *e2e_fixtures_dir(void)
{
    static char buf[1100];
    const char *e = getenv("ANNOTATE_FIXTURES");
    if (e && *e)
        return e;
    snprintf(buf, sizeof buf, "%s/images", fixtures_dir());
    return buf;
}

pid_t e2e_spawn(const char *const argv[], const char *log_path)
{
    /* Everything the child needs is opened before fork: the test binary may have threads. */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int log = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    if (devnull < 0) {
        if (log >= 0)
            close(log);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        dup2(devnull, 0);
        dup2(log >= 0 ? log : devnull, 1);
        dup2(log >= 0 ? log : devnull, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (pid > 0)
        setpgid(pid, pid);
    close(devnull);
    if (log >= 0)
        close(log);
    return pid;
}

int e2e_wait(pid_t pid, int timeout_s)
{
    int rc = wait_for(pid, timeout_s * 1000L);
    if (rc == -2) {
        fprintf(stderr, "\n  [e2e] process %d still running after %d s: killing its group\n", (int)pid, timeout_s);
        kill(-pid, SIGKILL);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    return rc;
}

int e2e_wait_lines(const char *csv, long lines, pid_t pid, int timeout_s)
{
    long deadline = now_ms() + timeout_s * 1000L;
    while (now_ms() < deadline) {
        if (e2e_count_lines(csv) >= lines)
            return 1;
        if (!e2e_alive(pid))
            return 0;
        sleep_ms(1);
    }
    return 0;
}

/* Parses /proc/PID/stat: state, ppid and pgrp (comm may hold spaces and parentheses). */
static int proc_stat3(pid_t pid, char *state, pid_t *ppid, pid_t *pgrp)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *rp = strrchr(buf, ')');
    if (!rp)
        return -1;
    char st;
    int pp, pg;
    if (sscanf(rp + 1, " %c %d %d", &st, &pp, &pg) != 3)
        return -1;
    *state = st;
    *ppid = pp;
    if (pgrp)
        *pgrp = pg;
    return 0;
}

static int proc_stat(pid_t pid, char *state, pid_t *ppid)
{
    return proc_stat3(pid, state, ppid, NULL);
}

int e2e_group_count(pid_t pgid)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char st;
        pid_t pp, pg;
        if (proc_stat3((pid_t)pid, &st, &pp, &pg) == 0 && pg == pgid && st != 'Z' && st != 'X')
            n++;
    }
    closedir(d);
    return n;
}

int e2e_children(pid_t parent, pid_t *kids, char *state, int max)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char st;
        pid_t pp;
        if (proc_stat((pid_t)pid, &st, &pp) == 0 && pp == parent) {
            kids[n] = (pid_t)pid;
            if (state)
                state[n] = st;
            n++;
        }
    }
    closedir(d);
    return n;
}

int e2e_alive(pid_t pid)
{
    char st;
    pid_t pp;
    return proc_stat(pid, &st, &pp) == 0 && st != 'Z' && st != 'X';
}

long e2e_count_lines(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[65536];
    long n = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < r; i++)
            n += buf[i] == '\n';
    close(fd);
    return n;
}

int e2e_closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(s, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(s, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(s); /* never listened: connections to it are refused */
    return port;
}

int e2e_annotate_argv(const char **argv, int max, const char *root, const char *csv, const char *server,
                      const char *const *extra)
{
    int n = 0;
    argv[n++] = e2e_annotate_bin();
    argv[n++] = root;
    argv[n++] = "--out";
    argv[n++] = csv;
    argv[n++] = "--server";
    argv[n++] = server;
    argv[n++] = "--quiet";
    /* Tests run again and again into one file: each run that does not resume starts it afresh
     * (the refusal without --force has its own test). */
    int resume = 0;
    for (int i = 0; extra && extra[i]; i++)
        resume |= !strcmp(extra[i], "--resume");
    if (!resume)
        argv[n++] = "--force";
    for (int i = 0; extra && extra[i] && n < max - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return n;
}

int e2e_run(char *out, size_t outlen, int timeout_s, const char *root, const char *csv, const char *server,
            const char *const *extra)
{
    const char *argv[64];
    e2e_annotate_argv(argv, 64, root, csv, server, extra);
    return run_cmd(argv, timeout_s, out, outlen);
}

int e2e_stats_reset(const struct mock_proc *m)
{
    char url[200];
    snprintf(url, sizeof url, "%s/stats/reset", m->base_url);
    long status = 0;
    char *resp = NULL;
    int rc = http_post(url, "", 0, &status, &resp);
    free(resp);
    return rc == 0 && status == 200 ? 0 : -1;
}
