/* csv_out: see csv_out.h. */
#include "csv_out.h"
#include "fdio.h"

#include <csv.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct csv_out {
    int fd;
    int own_fd;
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

static void *syncer_main(void *arg)
{
    struct csv_out *c = arg;
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

int csv_lock(int fd, const char *path, char *err, size_t errlen)
{
    err[0] = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    if (errno == EWOULDBLOCK)
        snprintf(err, errlen, "another annotate run is writing %s; wait for it to end (or stop it), then "
                              "run again with --resume", path);
    else
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
    return -1;
}

static void grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    *buf = realloc(*buf, c);
    *cap = c;
}

void csv_put_field(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    /* libcsv (and other readers) trim blanks from unquoted fields: quote a field that starts or
     * ends with one, so it reads back byte for byte. */
    int quote = n > 0 && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t');
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == '"' || s[i] == ',' || s[i] == '\n' || s[i] == '\r';
    if (!quote) {
        grow(buf, cap, *len + n + 1);
        memcpy(*buf + *len, s, n);
        *len += n;
        return;
    }
    grow(buf, cap, *len + 2 * n + 3);
    *len += csv_write(*buf + *len, *cap - *len, s, n);
}

static void put_sep(char **buf, size_t *len, size_t *cap, char c)
{
    grow(buf, cap, *len + 1);
    (*buf)[(*len)++] = c;
}

char *csv_header(const struct pipeline *p)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    csv_put_field(&buf, &len, &cap, "path", 4);
    put_sep(&buf, &len, &cap, ',');
    csv_put_field(&buf, &len, &cap, "status", 6);
    for (int s = 0; s < p->n; s++) {
        if (!p->stages[s].csv)
            continue;
        put_sep(&buf, &len, &cap, ',');
        csv_put_field(&buf, &len, &cap, p->stages[s].name, strlen(p->stages[s].name));
    }
    const char *tail = ",error,attempts,elapsed_ms\n";
    grow(&buf, &cap, len + strlen(tail) + 1);
    memcpy(buf + len, tail, strlen(tail) + 1);
    return buf;
}

struct csv_out *csv_out_open(const char *path, const struct pipeline *p, int append, long sync_every,
                             char *err, size_t errlen)
{
    struct csv_out *c = calloc(1, sizeof *c);
    c->p = p;
    c->sync_every = sync_every;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (!strcmp(path, "-")) {
        c->fd = STDOUT_FILENO;
    } else {
        /* Not O_TRUNC: the file is truncated only once we hold its lock, so that starting a second
         * run on the same --out cannot wipe the rows of one still writing them. */
        c->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_APPEND, 0644);
        if (c->fd < 0) {
            snprintf(err, errlen, "cannot open %s for writing: %s", path, strerror(errno));
            pthread_mutex_destroy(&c->mu);
            pthread_cond_destroy(&c->cv);
            free(c);
            return NULL;
        }
        c->own_fd = 1;
        if (csv_lock(c->fd, path, err, errlen) || (!append && ftruncate(c->fd, 0))) {
            if (!err[0])
                snprintf(err, errlen, "cannot truncate %s: %s", path, strerror(errno));
            close(c->fd);
            pthread_mutex_destroy(&c->mu);
            pthread_cond_destroy(&c->cv);
            free(c);
            return NULL;
        }
    }
    struct stat st;
    int empty = fstat(c->fd, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size == 0 : !append;
    if (!append || empty) {
        char *h = csv_header(p);
        int rc = fd_write_all(c->fd, h, strlen(h));
        free(h);
        if (rc) {
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            csv_out_close(c);
            return NULL;
        }
    }
    if (sync_every > 0 && pthread_create(&c->syncer, NULL, syncer_main, c) == 0)
        c->has_syncer = 1;
    return c;
}

int csv_out_write(struct csv_out *c, const struct item *it, char *err, size_t errlen)
{
    size_t len = 0;
    csv_put_field(&c->buf, &len, &c->cap, it->path, it->path_len);
    put_sep(&c->buf, &len, &c->cap, ',');
    const char *status = it->status == ITEM_OK ? "ok" : "failed";
    csv_put_field(&c->buf, &len, &c->cap, status, strlen(status));
    for (int s = 0; s < c->p->n; s++) {
        if (!c->p->stages[s].csv)
            continue;
        put_sep(&c->buf, &len, &c->cap, ',');
        if (it->results[s]) {
            char *j = cJSON_PrintUnformatted(it->results[s]);
            if (j) {
                csv_put_field(&c->buf, &len, &c->cap, j, strlen(j));
                free(j);
            }
        }
    }
    put_sep(&c->buf, &len, &c->cap, ',');
    if (it->status != ITEM_OK && it->error)
        csv_put_field(&c->buf, &len, &c->cap, it->error, strlen(it->error));
    char nums[64];
    int n = snprintf(nums, sizeof nums, ",%" PRIu32 ",%.0f\n", it->attempts,
                     (now_s() - it->t_start) * 1e3);
    grow(&c->buf, &c->cap, len + (size_t)n + 1);
    memcpy(c->buf + len, nums, (size_t)n);
    len += (size_t)n;
    if (fd_write_all(c->fd, c->buf, len)) {
        snprintf(err, errlen, "cannot write a row: %s", strerror(errno));
        return -1;
    }
    if (c->sync_every > 0 && ++c->since_sync >= c->sync_every) {
        c->since_sync = 0;
        if (!c->has_syncer)
            return csv_out_sync(c);
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

int csv_out_sync(struct csv_out *c)
{
    c->since_sync = 0;
    if (fdatasync(c->fd) && errno != EINVAL && errno != EROFS)
        return -1; /* EINVAL: stdout is a pipe or terminal, nothing to sync */
    return 0;
}

int csv_out_close(struct csv_out *c)
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
    int rc = csv_out_sync(c);
    if (c->sync_error) {
        /* Linux reports a writeback error to one fdatasync only: the syncer's. */
        errno = c->sync_error;
        rc = -1;
    }
    if (c->own_fd && close(c->fd))
        rc = -1;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->buf);
    free(c);
    return rc;
}
