/* results: see results.h. */
#include "results/results.h"
#include "common/fdio.h"
#include "common/json.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct results {
    int fd;
    int own_fd;
    enum results_format format;
    const struct pipeline *p;
    long sync_every, since_sync;
    char *buf;
    size_t cap;
    /* The syncer thread: fdatasync can take a second on a busy disk, and the writer must not
     * stall the pipeline for it. The writer asks; the syncer syncs whatever has been written. */
    pthread_t syncer;
    int has_syncer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int want_sync, stop, sync_error;
};

/* ---- rows ---- */

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    char *nb = realloc(*buf, c);
    if (!nb)
        return -1;
    *buf = nb;
    *cap = c;
    return 0;
}

int csv_put_field(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    /* libcsv (and other readers) trim blanks from unquoted fields: quote a field that starts or
     * ends with one, so it reads back byte for byte. */
    int quote = n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t');
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == '"' || s[i] == ',' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        if (grow(buf, cap, *len + n + 1))
            return -1;
        memcpy(*buf + *len, s, n);
        *len += n;
        return 0;
    }
    if (grow(buf, cap, *len + 2 * n + 3))
        return -1;
    *len += csv_write(*buf + *len, *cap - *len, s, n);
    return 0;
}

static int put_raw(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (grow(buf, cap, *len + n + 1))
        return -1;
    memcpy(*buf + *len, s, n);
    *len += n;
    return 0;
}

char *csv_header(const struct pipeline *p)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int bad = csv_put_field(&buf, &len, &cap, "path", 4) || put_raw(&buf, &len, &cap, ",", 1) ||
              csv_put_field(&buf, &len, &cap, "status", 6);
    for (int s = 0; s < p->n && !bad; s++)
        if (p->stages[s].csv)
            bad = put_raw(&buf, &len, &cap, ",", 1) ||
                  csv_put_field(&buf, &len, &cap, p->stages[s].name, strlen(p->stages[s].name));
    const char *tail = ",error,attempts,elapsed_ms\n";
    if (bad || put_raw(&buf, &len, &cap, tail, strlen(tail) + 1)) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* A failed row's reason: no reason means its copy ran out of memory (item_fail), and a failed row
 * always says why. */
static const char *reason_of(const struct item *it)
{
    return it->error ? it->error : "out of memory (the reason could not be kept)";
}

/* 1 when the JSON string text s (n bytes, quotes included) holds \u0000, which plain text
 * cannot carry. */
static int holds_nul(const char *s, size_t n)
{
    for (size_t i = 1; i + 1 < n; i++)
        if (s[i] == '\\' && s[++i] == 'u' && i + 4 < n && !memcmp(s + i + 1, "0000", 4))
            return 1;
    return 0;
}

/* Stage s's cell of the item (the stage's value as the row shows it: results.h) into *c, *len: 1,
 * or 0 when it has none (the stage did not run, or failed), or -1 when out of memory. *owned is
 * what the caller frees. A "text" stage's string value is decoded (cJSON) in a CSV cell. */
static int cell_of(const struct stage *st, const struct item *it, int s, enum results_format f, const char **c,
                   size_t *len, char **owned)
{
    const cJSON *v = it->cells[s] ? it->cells[s] : it->results[s]; /* its "column", else its result */
    *owned = NULL;
    if (!v)
        return 0;
    if (cJSON_IsRaw(v))
        *c = v->valuestring;
    else if (!(*c = *owned = cJSON_PrintUnformatted(v)))
        return -1;
    *len = strlen(*c);
    if (st->csv != STAGE_CSV_TEXT || f != RESULTS_CSV || *len < 2 || **c != '"' || holds_nul(*c, *len))
        return 1;
    cJSON *str = cJSON_ParseWithLength(*c, *len);
    if (!cJSON_IsString(str)) { /* (a string that does not decode, a lone surrogate, stays JSON) */
        cJSON_Delete(str);
        return 1;
    }
    free(*owned);
    *owned = str->valuestring; /* taken from the tree */
    str->valuestring = NULL;
    cJSON_Delete(str);
    *c = *owned;
    *len = strlen(*c);
    return 1;
}

/* The item's CSV row into *buf. 0, or -1 when out of memory. */
static int format_csv_row(const struct pipeline *p, const struct item *it, char **buf, size_t *cap, size_t *out_len)
{
    size_t len = 0;
    const char *status = it->status == ITEM_OK ? "ok" : "failed";
    int bad = csv_put_field(buf, &len, cap, it->path, it->path_len) || put_raw(buf, &len, cap, ",", 1) ||
              csv_put_field(buf, &len, cap, status, strlen(status));
    for (int s = 0; s < p->n && !bad; s++) {
        if (!p->stages[s].csv)
            continue;
        bad = put_raw(buf, &len, cap, ",", 1);
        const char *c;
        size_t cl;
        char *owned = NULL;
        int has = !bad ? cell_of(&p->stages[s], it, s, RESULTS_CSV, &c, &cl, &owned) : 0;
        bad = bad || has < 0 || (has && csv_put_field(buf, &len, cap, c, cl));
        free(owned);
    }
    if (!bad)
        bad = put_raw(buf, &len, cap, ",", 1);
    if (!bad && it->status != ITEM_OK)
        bad = csv_put_field(buf, &len, cap, reason_of(it), strlen(reason_of(it)));
    char nums[64];
    int n = snprintf(nums, sizeof nums, ",%" PRIu32 ",%.0f\n", it->attempts, (now_s() - it->t_start) * 1e3);
    if (bad || put_raw(buf, &len, cap, nums, (size_t)n))
        return -1;
    *out_len = len;
    return 0;
}

/* Appends "KEY": and s as a JSON string (json_put_bytes). 0, or -1 when out of memory. */
static int json_put_member(char **buf, size_t *len, size_t *cap, const char *key, const char *s, size_t n)
{
    size_t kl = strlen(key);
    if (grow(buf, cap, *len + kl + 4 + 6 * n + 2 + 1))
        return -1;
    (*buf)[(*len)++] = '"';
    memcpy(*buf + *len, key, kl);
    *len += kl;
    memcpy(*buf + *len, "\":", 2);
    *len += 2;
    *len += json_put_bytes(s, n, *buf + *len);
    return 0;
}

/* The item's JSON Lines row (resume.h) into *buf: each result spliced in as the server sent it.
 * 0, or -1 when out of memory. */
static int format_jsonl_row(const struct pipeline *p, const struct item *it, char **buf, size_t *cap, size_t *out_len)
{
    size_t len = 0;
    int bad = put_raw(buf, &len, cap, "{", 1) || json_put_member(buf, &len, cap, "path", it->path, it->path_len) ||
              put_raw(buf, &len, cap, ",", 1) ||
              put_raw(buf, &len, cap, it->status == ITEM_OK ? "\"status\":\"ok\"" : "\"status\":\"failed\"",
                      it->status == ITEM_OK ? 13 : 17);
    for (int s = 0; s < p->n && !bad; s++) {
        if (!p->stages[s].csv)
            continue;
        const char *name = p->stages[s].name;
        bad = put_raw(buf, &len, cap, ",\"", 2) || put_raw(buf, &len, cap, name, strlen(name)) ||
              put_raw(buf, &len, cap, "\":", 2);
        const char *c;
        size_t cl;
        char *owned = NULL;
        int has = !bad ? cell_of(&p->stages[s], it, s, RESULTS_JSONL, &c, &cl, &owned) : 0;
        bad = bad || has < 0 || (has ? put_raw(buf, &len, cap, c, cl) : put_raw(buf, &len, cap, "null", 4));
        free(owned);
    }
    if (!bad && it->status != ITEM_OK)
        bad = put_raw(buf, &len, cap, ",", 1) ||
              json_put_member(buf, &len, cap, "error", reason_of(it), strlen(reason_of(it)));
    else if (!bad)
        bad = put_raw(buf, &len, cap, ",\"error\":null", 13);
    char nums[80];
    int n = snprintf(nums, sizeof nums, ",\"attempts\":%" PRIu32 ",\"elapsed_ms\":%.0f}\n", it->attempts,
                     (now_s() - it->t_start) * 1e3);
    if (bad || put_raw(buf, &len, cap, nums, (size_t)n))
        return -1;
    *out_len = len;
    return 0;
}

/* ---- the lock ---- */

static int lock_fd(int fd, const char *path, char *err, size_t errlen)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    if (errno == EWOULDBLOCK)
        snprintf(err, errlen, "another annotate run is writing %s; wait for it to end (or stop it), then "
                              "run again with --resume", path);
    else
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
    return -1;
}

/* Opens path and locks it. A run that was resuming may have renamed a rewritten file over path
 * between our open and our lock: then the lock is on a file nobody will see again, so drop it
 * and lock what path is now. Returns the descriptor, or -1 with err. */
static int open_locked(const char *path, char *err, size_t errlen)
{
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "cannot open %s for writing: %s", path, strerror(errno));
            return -1;
        }
        if (lock_fd(fd, path, err, errlen)) {
            close(fd);
            return -1;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && (!S_ISREG(a.st_mode) ||
                                   (stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)))
            return fd;
        close(fd);
    }
    snprintf(err, errlen, "cannot lock %s: it keeps being replaced", path);
    return -1;
}

/* ---- resume ---- */

struct keep {
    struct doneset *seen;
    const char *text;
    const struct doneset *redo; /* paths whose failed rows go */
    char *buf;
    size_t len, cap;
    int oom;
};

static void keep_row(void *ud, const char *path, size_t len, int ok, size_t start, size_t end)
{
    struct keep *k = ud;
    if (k->oom || (!ok && doneset_has(k->redo, path, len)))
        return;
    int added = doneset_add(k->seen, path, len);
    if (added < 0)
        k->oom = 1;
    else if (added)
        k->oom = put_raw(&k->buf, &k->len, &k->cap, k->text + start, end - start);
}

static void fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(copy);
}

/* Rewrites the file keeping the header and, per image, its first row (failed rows of the paths in
 * redo dropped: they are run again). The new file is locked before it takes the old one's name,
 * and its descriptor replaces *fd. */
static int compact(int *fd, enum results_format f, const char *path, const char *text, size_t len,
                   const char *header, const struct doneset *redo, char *err, size_t errlen)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.compact.tmp", path);
    struct keep k = {doneset_new(), text, redo, NULL, 0, 0, 0};
    size_t complete;
    k.oom = !k.seen || (f == RESULTS_CSV && put_raw(&k.buf, &k.len, &k.cap, header, strlen(header)));
    if (!k.oom && results_rows(f, text, len, header, keep_row, &k, &complete, err, errlen) < 0)
        k.oom = 1; /* the text was read once already: only memory can fail now */
    doneset_free(k.seen);
    if (k.oom) {
        free(k.buf);
        snprintf(err, errlen, "out of memory rewriting %s", path);
        return -1;
    }
    int nfd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = nfd < 0 || flock(nfd, LOCK_EX | LOCK_NB) || fd_write_all(nfd, k.buf, k.len) || fsync(nfd) ||
             fcntl(nfd, F_SETFL, O_APPEND) || rename(tmp, path);
    free(k.buf);
    if (rc) {
        snprintf(err, errlen, "cannot rewrite %s without its failed rows: %s", path, strerror(errno));
        if (nfd >= 0)
            close(nfd);
        unlink(tmp);
        return -1;
    }
    fsync_dir_of(path);
    close(*fd); /* the old file, now nameless; its lock goes with it */
    *fd = nfd;
    return 0;
}

/* The length of the longest folder of path (up to one of its '/') that is dir[0, dl) spelled
 * otherwise (results_plain_folder: "ds/." of "ds/./x"), or 0 when none is. */
static size_t same_folder(const char *path, const char *dir, size_t dl)
{
    char want[4096], got[256];
    size_t n = strlen(path), wl = dl < sizeof want ? results_plain_folder(dir, dl, want) : 0, last = 0;
    for (size_t i = 1; wl && i < n && i < sizeof got; i++)
        if (path[i] == '/' && results_plain_folder(path, i, got) == wl && !memcmp(got, want, wl))
            last = i;
    return last;
}

/* Rows are keyed by path as the source spells it (DIR joined with the path below it):
 * resuming with DIR spelled otherwise (./photos for photos) would match nothing and write every
 * image twice. The same for a bucket's prefix (o->under). 0, or -1 with err. */
static int check_under(const struct results_opts *o, const struct doneset *set, char *err, size_t errlen)
{
    if (!o->dir && !o->under)
        return 0;
    char prefix[4096], example[256];
    size_t dl = o->dir ? strlen(o->dir) : 0;
    if (o->dir)
        snprintf(prefix, sizeof prefix, "%s%s", o->dir, dl && o->dir[dl - 1] == '/' ? "" : "/");
    else
        snprintf(prefix, sizeof prefix, "%s", o->under);
    int folder = !strstr(prefix, "://"); /* an S3 key may hold "//" or "./" */
    if (!doneset_outside(set, prefix, strlen(prefix), folder, example, sizeof example))
        return 0;
    size_t pl = strlen(prefix), spelled = strstr(example, "://") ? 0 : same_folder(example, prefix, pl);
    if (spelled)
        snprintf(err, errlen, "cannot resume %s: its rows spell the folder \"%.*s\", and this run was given "
                 "\"%.*s\", the same folder spelled otherwise (e.g. \"%s\"): rows are keyed by path, so every "
                 "image would be run and written again; run with DIR \"%.*s\", as the run that wrote it", o->path,
                 (int)spelled, example, (int)(pl > 1 ? pl - 1 : pl), prefix, example, (int)spelled, example);
    else
        snprintf(err, errlen, "cannot resume %s: it has rows for paths not under \"%s\" (e.g. \"%s\"); "
                 "run with DIR spelled as in the run that wrote it", o->path, prefix, example);
    return -1;
}

/* Reads the rows of the locked file for resume: repairs, rewrites when needed, and checks that
 * they are this run's. */
static int resume_rows(int *fd, const struct results_opts *o, const struct pipeline *p, struct doneset **done,
                       struct resume_info *info, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(*fd, &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file: cannot resume into it", o->path);
        return -1;
    }
    if (st.st_size == 0)
        return 0;
    size_t len = (size_t)st.st_size;
    const char *text = mmap(NULL, len, PROT_READ, MAP_PRIVATE, *fd, 0);
    if (text == MAP_FAILED) {
        snprintf(err, errlen, "cannot read %s: %s", o->path, strerror(errno));
        return -1;
    }
    madvise((void *)text, len, MADV_SEQUENTIAL);
    char *header = csv_header(p);
    struct doneset *set = doneset_new(), *redo = doneset_new();
    int rc = 0;
    if (!header || !set || !redo) {
        snprintf(err, errlen, "out of memory reading %s", o->path);
        rc = -1;
        goto out;
    }
    size_t complete = 0;
    char why[300];
    struct resume_redo rr = {o->retry_failed, o->can_redo, o->can_redo_ud, redo};
    int64_t n = resume_parse_rows(o->format, text, len, header, &rr, set, &complete, info, why, sizeof why);
    if (n == -2) {
        snprintf(err, errlen, "out of memory reading %s", o->path);
        rc = -1;
    } else if (n < 0) {
        snprintf(err, errlen, "cannot resume %s: %s. Use another --out file, or move this one aside.", o->path, why);
        rc = -1;
    } else if (n == 0) {
        /* Not even a whole header: a crash right at the start. Start afresh. */
        if (ftruncate(*fd, 0)) {
            snprintf(err, errlen, "cannot repair %s: %s", o->path, strerror(errno));
            rc = -1;
        }
        info->torn_bytes = len;
    } else if (complete < len && (ftruncate(*fd, (off_t)complete) || fsync(*fd))) {
        snprintf(err, errlen, "cannot repair the torn last row of %s: %s", o->path, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && (info->dropped_failed || info->duplicates))
        rc = compact(fd, o->format, o->path, text, complete, header, redo, err, errlen);
    if (rc == 0)
        rc = check_under(o, set, err, errlen);
out:
    munmap((void *)text, len);
    free(header);
    doneset_free(redo);
    if (rc) {
        doneset_free(set);
        return -1;
    }
    *done = set;
    return 0;
}

/* ---- the syncer ---- */

static void *syncer_main(void *arg)
{
    struct results *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->want_sync && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (!c->want_sync && c->stop)
            break;
        c->want_sync = 0;
        pthread_mutex_unlock(&c->mu);
        int bad = fdatasync(c->fd) && errno != EINVAL && errno != EROFS;
        pthread_mutex_lock(&c->mu);
        if (bad)
            c->sync_error = errno;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- open, write, close ---- */

struct results *results_open(const struct results_opts *o, const struct pipeline *p, struct doneset **done,
                             struct resume_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof *info);
    *done = NULL;
    struct results *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->p = p;
    c->format = o->format;
    c->sync_every = o->sync_every;
    c->fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (!strcmp(o->path, "-")) {
        c->fd = STDOUT_FILENO;
    } else {
        if ((c->fd = open_locked(o->path, err, errlen)) < 0)
            goto fail;
        c->own_fd = 1;
        /* A rewrite that a crash interrupted leaves its temporary file: only the lock holder
         * rewrites, so it is ours to remove. */
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.compact.tmp", o->path);
        unlink(tmp);
        struct stat st;
        int regular = fstat(c->fd, &st) == 0 && S_ISREG(st.st_mode);
        if (o->resume) {
            if (resume_rows(&c->fd, o, p, done, info, err, errlen))
                goto fail;
        } else if (regular && st.st_size > 0 && !o->force) {
            /* A finished run's rows are not lost to a command run again without --resume. */
            snprintf(err, errlen, "%s already holds %lld bytes of results: use --resume to continue it, or --force "
                     "to start it afresh (its rows are lost)", o->path, (long long)st.st_size);
            goto fail;
        } else if (regular && ftruncate(c->fd, 0)) {
            /* Truncated only now that we hold the lock: starting a second run on the same --out
             * cannot wipe the rows of one still writing them. */
            snprintf(err, errlen, "cannot truncate %s: %s", o->path, strerror(errno));
            goto fail;
        }
    }
    struct stat st;
    int empty = fstat(c->fd, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size == 0 : !o->resume;
    if ((!o->resume || empty) && o->format == RESULTS_CSV) {
        char *h = csv_header(p);
        int rc = !h || fd_write_all(c->fd, h, strlen(h));
        free(h);
        if (rc) {
            snprintf(err, errlen, "cannot write %s: %s", o->path, strerror(errno));
            goto fail;
        }
    }
    if (o->sync_every > 0 && pthread_create(&c->syncer, NULL, syncer_main, c) == 0)
        c->has_syncer = 1;
    return c;
fail:
    doneset_free(*done);
    *done = NULL;
    results_close(c);
    return NULL;
}

int results_write(struct results *c, const struct item *it, char *err, size_t errlen)
{
    size_t len;
    int bad = c->format == RESULTS_JSONL ? format_jsonl_row(c->p, it, &c->buf, &c->cap, &len)
                                         : format_csv_row(c->p, it, &c->buf, &c->cap, &len);
    if (bad) {
        snprintf(err, errlen, "out of memory for a row");
        return -1;
    }
    if (fd_write_all(c->fd, c->buf, len)) {
        snprintf(err, errlen, "cannot write a row: %s", strerror(errno));
        return -1;
    }
    if (c->sync_every > 0 && ++c->since_sync >= c->sync_every) {
        c->since_sync = 0;
        if (!c->has_syncer)
            return results_sync(c);
        pthread_mutex_lock(&c->mu);
        c->want_sync = 1;
        int e = c->sync_error;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        if (e) {
            snprintf(err, errlen, "cannot sync the results file: %s", strerror(e));
            return -1;
        }
    }
    return 0;
}

int results_sync(struct results *c)
{
    c->since_sync = 0;
    if (fdatasync(c->fd) && errno != EINVAL && errno != EROFS)
        return -1; /* EINVAL: stdout is a pipe or terminal, nothing to sync */
    return 0;
}

int results_close(struct results *c)
{
    if (!c)
        return 0;
    if (c->has_syncer) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->syncer, NULL);
    }
    int rc = c->fd >= 0 ? results_sync(c) : 0;
    if (c->sync_error) {
        /* Linux reports a writeback error to one fdatasync only: the syncer's. */
        errno = c->sync_error;
        rc = -1;
    }
    if (c->own_fd && c->fd >= 0 && close(c->fd))
        rc = -1;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->buf);
    free(c);
    return rc;
}
