/* exec_proc: the processes strategy. N worker processes, each annotate itself re-executed with
 * ANNOTATE_WORKER naming the stages it runs, fed over its stdin and drained over its stdout with
 * length-prefixed frames. One manager thread polls every worker's pipe (and the input queue's
 * eventfd) and hands an item to whichever worker is idle.
 *
 * When load and query both run here they run in the same worker, and the frame carries only the
 * path: the worker reads the file itself and the image never crosses a pipe (the seed's lesson,
 * post #11). With load elsewhere, the base64 text is what is sent.
 *
 * A worker that dies (a crash in native code, the OOM killer, kill -9) is noticed by EOF on its
 * pipe, reaped with waitpid (no zombie), and replaced; its item is tried once more on another
 * worker and, if that one dies too, written as failed with the reason. Workers exec a fresh image
 * rather than running on as a fork of a threaded parent: nothing of the parent's threads or locks
 * comes along. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdio.h"
#include "http.h"

char **annotate_argv;
extern char **environ;

#define MAX_DEATHS_PER_ITEM 2
#define NO_STR 0xFFFFFFFFu

/* ---- framing: u32 length, then the item ---- */

struct buf {
    unsigned char *d;
    size_t len, cap, pos;
};

static void need(struct buf *b, size_t n)
{
    if (b->len + n > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->len + n)
            c *= 2;
        b->d = realloc(b->d, c);
        b->cap = c;
    }
}

static void put(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return; /* p may be NULL (an item with no request log yet) */
    need(b, n);
    memcpy(b->d + b->len, p, n);
    b->len += n;
}

static void put_u32(struct buf *b, uint32_t v) { put(b, &v, 4); }

static void put_str(struct buf *b, const char *s, size_t n)
{
    if (!s) {
        put_u32(b, NO_STR);
        return;
    }
    put_u32(b, (uint32_t)n);
    put(b, s, n);
}

static int get(struct buf *b, void *p, size_t n)
{
    if (b->pos + n > b->len)
        return -1;
    memcpy(p, b->d + b->pos, n);
    b->pos += n;
    return 0;
}

static int get_u32(struct buf *b, uint32_t *v) { return get(b, v, 4); }

/* A NUL-terminated copy, or NULL for an absent string. */
static int get_str(struct buf *b, char **out, size_t *len)
{
    uint32_t n;
    *out = NULL;
    if (get_u32(b, &n))
        return -1;
    if (n == NO_STR)
        return 0;
    if (b->pos + n > b->len)
        return -1;
    *out = malloc((size_t)n + 1);
    memcpy(*out, b->d + b->pos, n);
    (*out)[n] = 0;
    b->pos += n;
    if (len)
        *len = n;
    return 0;
}

/* Serialises everything a stage may have changed. */
static void encode_item(struct buf *b, const struct item *it, int with_payload)
{
    b->len = 0;
    put_u32(b, 0); /* length, filled in below */
    put(b, &it->seq, 8);
    put(b, &it->t_start, sizeof it->t_start);
    uint32_t v[5] = {(uint32_t)it->status, it->requests, it->attempts, (uint32_t)it->rel_off, (uint32_t)it->n_stages};
    put(b, v, sizeof v);
    put_str(b, it->path, it->path_len);
    put_str(b, with_payload ? it->b64 : NULL, it->b64_len);
    put_str(b, it->error, it->error ? strlen(it->error) : 0);
    for (int s = 0; s < it->n_stages; s++) {
        put(b, &it->state[s], 1);
        char *j = it->results[s] ? cJSON_PrintUnformatted(it->results[s]) : NULL;
        put_str(b, j, j ? strlen(j) : 0);
        free(j);
    }
    put_u32(b, (uint32_t)it->n_log);
    put(b, it->log, (size_t)it->n_log * sizeof *it->log);
    uint32_t total = (uint32_t)(b->len - 4);
    memcpy(b->d, &total, 4);
}

static struct item *decode_item(struct buf *b)
{
    b->pos = 0;
    uint64_t seq;
    double t0;
    uint32_t v[5];
    char *path = NULL;
    size_t path_len = 0;
    if (get(b, &seq, 8) || get(b, &t0, sizeof t0) || get(b, v, sizeof v) || v[4] > PIPELINE_MAX_STAGES ||
        get_str(b, &path, &path_len) || !path) {
        free(path);
        return NULL;
    }
    struct item *it = item_new(path, path_len, v[3], (int)v[4], seq);
    free(path);
    if (!it)
        return NULL;
    it->t_start = t0;
    it->status = (int)v[0];
    it->requests = v[1];
    it->attempts = v[2];
    if (get_str(b, &it->b64, &it->b64_len) || get_str(b, &it->error, NULL))
        goto bad;
    for (int s = 0; s < it->n_stages; s++) {
        char *j;
        if (get(b, &it->state[s], 1) || get_str(b, &j, NULL))
            goto bad;
        if (j) {
            it->results[s] = cJSON_Parse(j);
            free(j);
            if (!it->results[s])
                goto bad;
        }
    }
    uint32_t nlog;
    if (get_u32(b, &nlog) || nlog > 1u << 20)
        goto bad;
    for (uint32_t i = 0; i < nlog; i++) {
        struct req_log l;
        if (get(b, &l, sizeof l))
            goto bad;
        item_log_request(it, l.stage, l.us, l.attempts);
    }
    return it;
bad:
    item_free(it);
    return NULL;
}

/* Reads one frame into b (payload only). -1 on EOF or error. */
static int read_frame(int fd, struct buf *b)
{
    uint32_t n;
    if (fd_read_all(fd, &n, 4) || n > (1u << 30))
        return -1;
    b->len = 0;
    need(b, n);
    if (fd_read_all(fd, b->d, n))
        return -1;
    b->len = n;
    return 0;
}

/* ---- the worker process ---- */

int exec_proc_worker_main(const struct run *run, const char *stages)
{
    const struct stage_fn *fns[2];
    int nfns = 0;
    char *copy = strdup(stages), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && nfns < 2; t = strtok_r(NULL, ",", &save))
        fns[nfns++] = !strcmp(t, "load") ? &STAGE_LOAD : &STAGE_QUERY;
    int sends_payload = nfns == 1 && fns[0] == &STAGE_LOAD;
    free(copy);
    /* The parent decides when we stop (it closes our stdin); a Ctrl-C on the terminal reaches the
     * whole process group and must not kill work in flight. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    /* If the parent dies (kill -9, or its drain deadline passed), what we are doing can no longer
     * be written anywhere: go at once rather than finish retries into a closed pipe. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 0; /* it died before we got here */
    /* Frames go to a private descriptor; anything printed to stdout by accident goes to stderr
     * instead of corrupting the stream. */
    int out = dup(STDOUT_FILENO);
    dup2(STDERR_FILENO, STDOUT_FILENO);
    void *state[2] = {0};
    for (int f = 0; f < nfns; f++)
        if (fns[f]->worker_new)
            state[f] = fns[f]->worker_new(run);
    struct buf in = {0}, o = {0};
    int rc = 0;
    while (read_frame(STDIN_FILENO, &in) == 0) {
        struct item *it = decode_item(&in);
        if (!it) {
            fprintf(stderr, "annotate worker: malformed frame from the parent\n");
            rc = 3;
            break;
        }
        for (int f = 0; f < nfns; f++)
            fns[f]->run(state[f], run, it);
        encode_item(&o, it, sends_payload);
        item_free(it);
        if (fd_write_all(out, o.d, o.len)) {
            rc = 3;
            break;
        }
    }
    for (int f = 0; f < nfns; f++)
        if (fns[f]->worker_free)
            fns[f]->worker_free(state[f]);
    free(in.d);
    free(o.d);
    close(out);
    return rc;
}

/* ---- the parent's side ---- */

struct worker {
    pid_t pid;
    int to, from;
    struct item *busy;
    double started;     /* monotonic time of the spawn */
    double since;       /* monotonic time busy was handed over */
};

/* How long one image may take in a worker before the worker is taken for stuck (stopped,
 * deadlocked, spinning in native code) and killed: every stage (and a few sub-images) trying
 * every attempt to its timeout after the longest backoff, plus slack. Generous on purpose: it is
 * there so that a wedged worker cannot hang the run forever, not to police slow servers. */
static double item_deadline_s(const struct run *run)
{
    const struct config *c = run->cfg;
    double backoff = (double)(c->backoff_max_ms > 60000 ? c->backoff_max_ms : 60000);
    return (double)(run->p->n + 4) * (c->retries + 1) * ((double)c->timeout_ms + backoff) / 1e3 + 30;
}

struct proc {
    struct exec base;
    const struct run *run;
    queue *in, *out;
    int n;
    struct worker *w;
    char stages[32];
    int sends_payload;
    char **envp;
    char exe[4096];
    char *own_env[2];         /* the two entries of envp we allocated */
    pthread_t tid;
};

static void proc_free(struct proc *p)
{
    free(p->own_env[0]);
    free(p->own_env[1]);
    free(p->envp);
    free(p->w);
    free(p);
}

/* Per-item death count travels in a side table keyed by pointer (items are few in flight). */
struct death {
    struct item *it;
    int n;
};

static int spawn(struct proc *p, struct worker *w, char *err, size_t errlen)
{
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC))
        goto fail;
    if (pipe2(from, O_CLOEXEC)) {
        close(to[0]);
        close(to[1]);
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(to[0]);
        close(to[1]);
        close(from[0]);
        close(from[1]);
        goto fail;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        dup2(to[0], STDIN_FILENO);
        dup2(from[1], STDOUT_FILENO);
        /* /proc/self/exe, not the path: if the binary was rebuilt during the run, replacements
         * still run the parent's own image, which speaks its frame format. */
        execve("/proc/self/exe", annotate_argv, p->envp);
        execve(p->exe, annotate_argv, p->envp);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    w->pid = pid;
    w->to = to[1];
    w->from = from[0];
    w->busy = NULL;
    w->started = now_s();
    return 0;
fail:
    snprintf(err, errlen, "cannot start a worker process: %s", strerror(errno));
    return -1;
}

/* Reaps a worker and describes how it ended. */
static void reap(struct worker *w, char *why, size_t len)
{
    int status = 0;
    close(w->to);
    close(w->from);
    w->to = w->from = -1;
    if (waitpid(w->pid, &status, 0) < 0)
        snprintf(why, len, "worker process %d vanished", (int)w->pid);
    else if (WIFSIGNALED(status))
        snprintf(why, len, "worker process %d was killed by signal %d (%s)", (int)w->pid, WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(why, len, "worker process %d exited with status %d", (int)w->pid, WEXITSTATUS(status));
    w->pid = 0;
}

static void pass_on(struct proc *p, struct item *it)
{
    if (queue_push(p->out, it))
        item_free(it);
}

static void *manager(void *arg)
{
    struct proc *p = arg;
    int qfd = queue_notify_fd(p->in);
    struct pollfd *pfd = calloc((size_t)p->n + 1, sizeof *pfd);
    struct death *deaths = calloc((size_t)p->n * 2 + 8, sizeof *deaths);
    int n_deaths = 0, input_done = 0;
    double respawn_after = 0;
    const double deadline_s = item_deadline_s(p->run); /* workers that die as soon as they start are not re-forked in a tight loop */
    struct buf b = {0};
    struct item **retry = calloc((size_t)p->n + 1, sizeof *retry);
    int n_retry = 0;
    for (;;) {
        /* Hand work to idle workers: retries first. */
        int busy = 0;
        for (int i = 0; i < p->n; i++) {
            struct worker *w = &p->w[i];
            if (!w->pid) {
                if (now_s() < respawn_after)
                    continue;
                char err[256];
                if (spawn(p, w, err, sizeof err)) {
                    fprintf(stderr, "annotate: %s\n", err);
                    continue;
                }
            }
            if (!w->busy) {
                struct item *it = NULL;
                if (n_retry)
                    it = retry[--n_retry];
                else if (!input_done && atomic_load(&p->run->stop) != RUN_ABORT) {
                    void *x;
                    int got = queue_try_pop(p->in, &x);
                    if (got < 0)
                        input_done = 1;
                    else if (got > 0)
                        it = x;
                }
                if (it) {
                    if (it->status == ITEM_FAILED && !p->sends_payload) {
                        pass_on(p, it); /* failed before reaching us: nothing for a worker to do */
                        i--;
                        continue;
                    }
                    encode_item(&b, it, !p->sends_payload);
                    w->busy = it;
                    w->since = now_s();
                    if (fd_write_all(w->to, b.d, b.len)) {
                        /* Died before taking it: handled when its pipe reports EOF. */
                    }
                }
            }
            busy += w->busy != NULL;
        }
        if (busy == 0 && (input_done || atomic_load(&p->run->stop) == RUN_ABORT) && n_retry == 0)
            break;
        int np = 0;
        for (int i = 0; i < p->n; i++) {
            /* Idle workers are watched too: one that dies idle is reaped and replaced at once,
             * not left a zombie until it is next given work. */
            pfd[np].fd = p->w[i].pid ? p->w[i].from : -1;
            pfd[np].events = POLLIN;
            pfd[np].revents = 0;
            np++;
        }
        pfd[np].fd = (!input_done && busy < p->n) ? qfd : -1;
        pfd[np].events = POLLIN;
        pfd[np].revents = 0;
        int r = poll(pfd, (nfds_t)np + 1, 1000);
        if (r < 0 && errno != EINTR)
            break;
        double now = now_s();
        for (int i = 0; i < p->n; i++) {
            struct worker *w = &p->w[i];
            if (w->busy && w->pid && now - w->since > deadline_s) {
                fprintf(stderr, "annotate: worker process %d has had one image for %.0f s; killing it\n",
                        (int)w->pid, now - w->since);
                kill(w->pid, SIGKILL); /* its pipe's EOF then reaps it and retries the image */
                w->since = now;       /* once */
            }
        }
        if (pfd[np].revents & POLLIN) {
            uint64_t v;
            ssize_t rr = read(qfd, &v, sizeof v);
            (void)rr;
        }
        for (int i = 0; i < p->n; i++) {
            struct worker *w = &p->w[i];
            if (!pfd[i].revents)
                continue;
            if (!w->busy) {
                /* An idle worker has nothing to say: this is its end (EOF). */
                char why[200];
                double lived = now_s() - w->started;
                reap(w, why, sizeof why);
                fprintf(stderr, "annotate: %s while idle; starting another\n", why);
                if (lived < 1.0)
                    respawn_after = now_s() + 1.0;
                continue;
            }
            struct item *res = read_frame(w->from, &b) == 0 ? decode_item(&b) : NULL;
            if (res) {
                struct item *old = w->busy;
                w->busy = NULL;
                if (p->sends_payload == 0)
                    item_drop_payload(res); /* query done: the writer does not need it */
                item_free(old);
                pass_on(p, res);
                continue;
            }
            /* The worker died with our item. */
            char why[200];
            reap(w, why, sizeof why);
            struct item *it = w->busy;
            w->busy = NULL;
            int k, times = 0;
            for (k = 0; k < n_deaths; k++)
                if (deaths[k].it == it)
                    break;
            if (k == n_deaths && n_deaths < p->n * 2 + 8)
                deaths[n_deaths++] = (struct death){it, 0};
            if (k < n_deaths)
                times = ++deaths[k].n;
            if (times >= MAX_DEATHS_PER_ITEM) {
                item_fail(it, "%s while handling this image (tried %d times)", why, times);
                deaths[k] = deaths[--n_deaths];
                pass_on(p, it);
            } else {
                fprintf(stderr, "annotate: %s; starting another and trying its image again\n", why);
                retry[n_retry++] = it;
            }
        }
        /* Forget death records of items that have left us. */
        for (int k = 0; k < n_deaths; k++) {
            int still = 0;
            for (int i = 0; i < p->n; i++)
                still |= p->w[i].busy == deaths[k].it;
            for (int j = 0; j < n_retry; j++)
                still |= retry[j] == deaths[k].it;
            if (!still)
                deaths[k--] = deaths[--n_deaths];
        }
    }
    /* Stop the workers: EOF on stdin ends them. */
    for (int i = 0; i < p->n; i++) {
        if (!p->w[i].pid)
            continue;
        if (p->w[i].busy) {
            /* Only when the run is being torn down: its image will not be written, and the
             * worker need not finish it. */
            kill(p->w[i].pid, SIGKILL);
            item_free(p->w[i].busy);
            p->w[i].busy = NULL;
        }
        close(p->w[i].to);
        close(p->w[i].from);
        int st;
        waitpid(p->w[i].pid, &st, 0);
        p->w[i].pid = 0;
    }
    while (n_retry)
        item_free(retry[--n_retry]);
    free(retry);
    free(deaths);
    free(pfd);
    free(b.d);
    queue_producer_done(p->out);
    return NULL;
}

static void join(struct exec *base)
{
    struct proc *p = (struct proc *)base;
    pthread_join(p->tid, NULL);
    proc_free(p);
}

struct exec *exec_proc_start(const struct run *run, const struct stage_fn *const *fns, int nfns,
                             int workers, queue *in, queue *out, char *err, size_t errlen)
{
    if (!annotate_argv) {
        snprintf(err, errlen, "the processes strategy needs the annotate binary (annotate_argv is unset)");
        return NULL;
    }
    struct proc *p = calloc(1, sizeof *p);
    p->base.join = join;
    p->run = run;
    p->in = in;
    p->out = out;
    p->n = workers;
    p->w = calloc((size_t)workers, sizeof *p->w);
    for (int f = 0; f < nfns; f++) {
        if (f)
            strcat(p->stages, ",");
        strcat(p->stages, fns[f]->name);
    }
    p->sends_payload = nfns == 1 && fns[0] == &STAGE_LOAD;
    ssize_t l = readlink("/proc/self/exe", p->exe, sizeof p->exe - 1);
    if (l <= 0) {
        snprintf(err, errlen, "cannot find the annotate binary to start workers: %s", strerror(errno));
        proc_free(p);
        return NULL;
    }
    p->exe[l] = 0;
    /* The environment for workers, built before any fork: setenv is not safe after one. */
    size_t n = 0;
    while (environ[n])
        n++;
    p->envp = calloc(n + 3, sizeof *p->envp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "ANNOTATE_WORKER=", 16) && strncmp(environ[i], "ANNOTATE_RATELIMIT_FD=", 22))
            p->envp[k++] = environ[i];
    char tmp[64];
    snprintf(tmp, sizeof tmp, "ANNOTATE_WORKER=%s", p->stages);
    p->envp[k++] = p->own_env[0] = strdup(tmp);
    if (run->rl) {
        snprintf(tmp, sizeof tmp, "ANNOTATE_RATELIMIT_FD=%d", ratelimit_fd(run->rl));
        p->envp[k++] = p->own_env[1] = strdup(tmp);
    }
    int started = 0, rc = 0;
    while (started < workers && spawn(p, &p->w[started], err, errlen) == 0)
        started++;
    if (started == workers && (rc = pthread_create(&p->tid, NULL, manager, p)))
        snprintf(err, errlen, "cannot start the process manager thread: %s", strerror(rc));
    if (started < workers || rc) {
        for (int j = 0; j < started; j++) {
            close(p->w[j].to);
            close(p->w[j].from);
            waitpid(p->w[j].pid, NULL, 0);
        }
        proc_free(p);
        return NULL;
    }
    return &p->base;
}
