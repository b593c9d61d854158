/* exec_proc: the processes strategy, the parent's side. N worker processes, each annotate itself
 * re-executed as a worker (worker.c is its main; see ipc.h for everything that passes between
 * the two), fed over its stdin and drained over its stdout with length-prefixed frames. One
 * manager thread polls every worker's pipes (and the input queue's eventfd) and hands an item to
 * whichever worker is idle. Its loop is four named steps: hand_out, wait_events, tend (each
 * worker: watchdog, frames, a death), and stop_workers once every item is back.
 *
 * A worker's first frame is its configuration: the parent's resolved options and pipeline. It
 * never parses the command line or reads the pipeline file, so a file edited during a run cannot
 * reach a replacement worker, and both ends always walk the same stage table.
 *
 * When load and query both run here they run in the same worker, and the frame carries only the
 * path: the worker reads the file itself and the image never crosses a pipe (the seed's lesson,
 * post #11). With load elsewhere, the base64 text is what is sent.
 *
 * Writes to workers never block the manager: pipes are non-blocking and each worker has a send
 * buffer, flushed when poll says the pipe has room. A worker that dies (a crash in native code,
 * the OOM killer, kill -9) is noticed by EOF on its pipe, reaped with waitpid (no zombie), and
 * replaced; its item is tried once more on another worker and, if that one dies too, written as
 * failed with the reason. A worker that says nothing for longer than a request may take (it
 * sends a heartbeat before every attempt and every second while it waits) is taken for stuck
 * (stopped, deadlocked) and killed, which is the same death. */
#include "drivers/backend.h"
#include "endpoint/ratelimit.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drivers/ipc.h"
#include "endpoint/limit.h"
#include "flow/budget.h"

extern char **environ;

#define MAX_DEATHS_PER_ITEM 2
#define SILENCE_MARGIN_S 5.0

struct worker {
    pid_t pid;
    int to, from;
    struct item *busy;
    struct ipc_buf send;  /* frames not yet written to the worker's stdin */
    size_t sent;          /* bytes of send already written */
    struct ipc_buf recv;  /* bytes read from its stdout, not yet a whole frame */
    double started;       /* monotonic time of the spawn */
    double heard;         /* monotonic time we last heard from it (or handed it work) */
    int killed;           /* the watchdog sent SIGKILL */
};

struct proc {
    struct exec base;
    const struct run *run;
    queue *in, *out;
    int n;
    unsigned jobs;
    struct worker *w;
    struct ipc_buf config; /* the configuration frame every worker is sent first */
    char **envp;
    char exe[4096];
    pthread_t tid;
};

/* How long a busy worker may be silent before it is taken for stuck: the longest request it may
 * be making (it says it is alive before each attempt, every second while it waits, and while it
 * reads a file), plus a margin. */
static double silence_limit_s(const struct run *run)
{
    long t = run->cfg->timeout_ms;
    for (int s = 0; s < run->p->n; s++)
        if (run->p->stages[s].timeout_ms > t)
            t = run->p->stages[s].timeout_ms;
    return (double)t / 1e3 + SILENCE_MARGIN_S;
}

static void proc_free(struct proc *p)
{
    if (p->w)
        for (int i = 0; i < p->n; i++) {
            ipc_buf_free(&p->w[i].send);
            ipc_buf_free(&p->w[i].recv);
        }
    ipc_buf_free(&p->config);
    free(p->envp);
    free(p->w);
    free(p);
}

/* Appends a whole frame to the worker's send buffer. 0, or -1 when out of memory. */
static int queue_frame(struct worker *w, const struct ipc_buf *f)
{
    struct ipc_buf *b = &w->send;
    if (b->len + f->len > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->len + f->len)
            c *= 2;
        unsigned char *d = realloc(b->d, c);
        if (!d)
            return -1;
        b->d = d;
        b->cap = c;
    }
    memcpy(b->d + b->len, f->d, f->len);
    b->len += f->len;
    return 0;
}

/* Reads what the pipe has without blocking. Returns 1 when recv starts with a whole frame, 0
 * when more is to come, -1 on end of file, an error, or an oversized frame. */
static int pump_recv(struct worker *w)
{
    struct ipc_buf *b = &w->recv;
    for (;;) {
        uint32_t n;
        if (b->len >= 4) {
            memcpy(&n, b->d, 4);
            if (n > IPC_MAX_FRAME)
                return -1;
            if (b->len >= 4 + (size_t)n)
                return 1;
        }
        if (b->cap - b->len < 65536) {
            size_t c = b->cap ? b->cap * 2 : 65536;
            unsigned char *d = realloc(b->d, c);
            if (!d)
                return -1;
            b->d = d;
            b->cap = c;
        }
        ssize_t r = read(w->from, b->d + b->len, b->cap - b->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (r <= 0)
            return -1;
        b->len += (size_t)r;
    }
}

/* Drops the frame at the start of recv. */
static void pop_frame(struct worker *w)
{
    struct ipc_buf *b = &w->recv;
    uint32_t n;
    memcpy(&n, b->d, 4);
    memmove(b->d, b->d + 4 + n, b->len - 4 - n);
    b->len -= 4 + (size_t)n;
}

/* Writes what the pipe takes without blocking. -1 when the worker is gone (EPIPE). */
static int flush_send(struct worker *w)
{
    while (w->sent < w->send.len) {
        ssize_t r = write(w->to, w->send.d + w->sent, w->send.len - w->sent);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (r < 0)
            return -1;
        w->sent += (size_t)r;
    }
    w->send.len = w->sent = 0;
    ipc_buf_trim(&w->send);
    return 0;
}

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
    char *argv[] = {"annotate", IPC_WORKER_ARG, NULL};
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
        execve("/proc/self/exe", argv, p->envp);
        execve(p->exe, argv, p->envp);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    fcntl(to[1], F_SETFL, O_NONBLOCK);
    fcntl(from[0], F_SETFL, O_NONBLOCK);
    w->pid = pid;
    w->to = to[1];
    w->from = from[0];
    w->busy = NULL;
    w->killed = 0;
    w->send.len = w->sent = 0;
    w->recv.len = 0;
    w->started = w->heard = now_s();
    if (queue_frame(w, &p->config) || flush_send(w)) {
        /* Dead already, or no memory: its EOF reaps it like any other death. */
    }
    return 0;
fail:
    snprintf(err, errlen, "cannot start a worker process: %s", strerror(errno));
    return -1;
}

/* Reaps a worker and describes how it ended. A stage slot it held (limit.h) is given back. */
static void reap(struct proc *p, struct worker *w, char *why, size_t len)
{
    int status = 0;
    close(w->to);
    close(w->from);
    w->to = w->from = -1;
    w->send.len = w->sent = 0;
    if (waitpid(w->pid, &status, 0) < 0)
        snprintf(why, len, "worker process %d vanished", (int)w->pid);
    else if (WIFSIGNALED(status))
        snprintf(why, len, "worker process %d was killed by signal %d (%s)%s", (int)w->pid, WTERMSIG(status),
                 strsignal(WTERMSIG(status)), w->killed ? " after it stopped answering" : "");
    else
        snprintf(why, len, "worker process %d exited with status %d", (int)w->pid, WEXITSTATUS(status));
    budget_reap(p->run->shared, (int)w->pid);
    limit_holder_reap(p->run->shared, (int)w->pid);
    w->pid = 0;
}

static void pass_on(struct proc *p, struct item *it)
{
    if (queue_push(p->out, it))
        item_free(it);
}

/* Items that lost their worker, with how many workers they have cost. */
struct orphans {
    struct item **it;
    int *deaths;
    int n, cap;
};

/* The manager thread's state between its steps. */
struct manager {
    struct proc *p;
    int qfd;                /* the input queue's eventfd */
    struct pollfd *pfd;     /* [2n + 1]: each worker's stdout and stdin, then qfd */
    int *deaths_of_busy;    /* [n]: workers the item worker i holds has cost already */
    struct orphans o;       /* room for one per worker: a worker holds one item at most */
    struct ipc_buf frame;   /* an item's frame, made before it is queued to a worker */
    int input_done;         /* the input queue is closed and empty */
    double respawn_after;   /* workers that die as soon as they start are not re-forked in a tight loop */
    double silence_s;       /* silence_limit_s */
};

/* ---- handing out ---- */

/* Starts worker w if it is missing (not within a second of one that died as it started).
 * Returns 0 when it is there. */
static int ensure_worker(struct manager *m, struct worker *w)
{
    if (w->pid)
        return 0;
    char err[256];
    if (now_s() < m->respawn_after)
        return -1;
    if (spawn(m->p, w, err, sizeof err) == 0)
        return 0;
    fprintf(stderr, "annotate: %s\n", err);
    return -1;
}

/* The next item for an idle worker: an orphan first (*deaths: the workers it has cost), then the
 * input queue. NULL when there is none now. */
static struct item *next_item(struct manager *m, int *deaths)
{
    struct proc *p = m->p;
    *deaths = 0;
    if (m->o.n) {
        m->o.n--;
        *deaths = m->o.deaths[m->o.n];
        return m->o.it[m->o.n];
    }
    if (m->input_done || run_stop_state(p->run) == RUN_ABORT)
        return NULL;
    void *x;
    int got;
    while ((got = queue_try_pop(p->in, &x)) > 0 && exec_stopping(p->run))
        exec_let_go(p->run, x); /* stopping: never sent, no row, left to --resume */
    if (got < 0)
        m->input_done = 1;
    return got > 0 ? x : NULL;
}

/* Gives worker i an item while it is idle and there is one. */
static void feed(struct manager *m, int i)
{
    struct proc *p = m->p;
    struct worker *w = &p->w[i];
    while (!w->busy) {
        int deaths;
        struct item *it = next_item(m, &deaths);
        if (!it)
            break;
        if (it->status == ITEM_FAILED && !(p->jobs & JOB_LOAD)) {
            pass_on(p, it); /* failed before reaching us: nothing for a worker to do */
            continue;
        }
        /* The parent sends the payload only when the worker does not load the file itself. */
        if (ipc_encode_item(&m->frame, it, !(p->jobs & JOB_LOAD)) || queue_frame(w, &m->frame)) {
            item_fail(it, "out of memory for a frame to a worker process");
            pass_on(p, it);
            continue;
        }
        m->frame.len = 0;
        ipc_buf_trim(&m->frame);
        w->busy = it;
        m->deaths_of_busy[i] = deaths;
        w->heard = now_s();
        if (flush_send(w)) {
            /* Died before taking it: handled when its pipe reports EOF. */
        }
    }
}

/* Hands idle workers their next item (orphans first), spawning workers that are missing.
 * Returns the number of busy workers. */
static int hand_out(struct manager *m)
{
    int busy = 0;
    for (int i = 0; i < m->p->n; i++) {
        if (ensure_worker(m, &m->p->w[i]))
            continue;
        feed(m, i);
        busy += m->p->w[i].busy != NULL;
    }
    return busy;
}

/* ---- waiting ---- */

/* Polls every worker's answers (idle ones too: one that dies idle is reaped and replaced at
 * once, not left a zombie), its stdin while frames wait to be written, and the input queue while
 * a worker is free. At most a second, for the watchdog. Returns -1 when poll fails. */
static int wait_events(struct manager *m, int busy)
{
    struct proc *p = m->p;
    for (int i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        m->pfd[2 * i] = (struct pollfd){w->pid ? w->from : -1, POLLIN, 0};
        m->pfd[2 * i + 1] = (struct pollfd){w->pid && w->sent < w->send.len ? w->to : -1, POLLOUT, 0};
    }
    m->pfd[2 * p->n] = (struct pollfd){(!m->input_done && busy < p->n) ? m->qfd : -1, POLLIN, 0};
    int r = poll(m->pfd, (nfds_t)p->n * 2 + 1, 1000);
    if (r < 0 && errno != EINTR)
        return -1;
    if (m->pfd[2 * p->n].revents & POLLIN) {
        uint64_t v;
        ssize_t rr = read(m->qfd, &v, sizeof v);
        (void)rr;
    }
    return 0;
}

/* ---- a worker's news ---- */

/* A busy worker silent for longer than a request may take is taken for stuck and killed: its
 * pipe's EOF then reaps it and retries the image. */
static void watchdog(const struct manager *m, struct worker *w, double now)
{
    if (!w->busy || !w->pid || w->killed || now - w->heard <= m->silence_s)
        return;
    fprintf(stderr, "annotate: worker process %d has said nothing for %.0f s (the longest request "
                    "may take %.0f s); killing it\n", (int)w->pid, now - w->heard, m->silence_s - SILENCE_MARGIN_S);
    kill(w->pid, SIGKILL);
    w->killed = 1;
}

/* Takes the whole frames worker w has sent: heartbeats, and the answer for its item, which goes
 * on. Returns 0 when more is to come, -1 when the worker is at its end (EOF, an error, or a frame
 * we did not ask for or cannot read: the same as a death). */
static int take_frames(struct manager *m, struct worker *w, double now)
{
    struct proc *p = m->p;
    int got;
    while ((got = pump_recv(w)) == 1) {
        uint32_t n;
        memcpy(&n, w->recv.d, 4);
        w->heard = now;
        if (n == 0) { /* a heartbeat */
            pop_frame(w);
            continue;
        }
        struct ipc_buf view = {.d = w->recv.d + 4, .len = n};
        struct item *res = w->busy ? ipc_decode_item(&view, p->run->p->n) : NULL;
        pop_frame(w);
        if (!res)
            return -1;
        /* A payload it loaded: its share, counted by the worker, is ours now (a worker on a
         * private page, when the run has no shared one, counted it there: count it here). */
        if (p->run->shared_fd >= 0)
            budget_adopt(p->run->shared, (int)w->pid, item_charge(res));
        else
            budget_force(item_charge(res));
        ipc_buf_trim(&w->recv);
        item_free(w->busy);
        w->busy = NULL;
        pass_on(p, res);
    }
    return got;
}

/* Kills worker w unless the watchdog did, and reaps it; why says how it ended. */
static void end_worker(struct proc *p, struct worker *w, char *why, size_t len)
{
    if (w->pid && !w->killed)
        kill(w->pid, SIGKILL);
    reap(p, w, why, len);
}

/* An idle worker has nothing to say: this is its end (EOF). It is replaced on the next hand-out. */
static void ended_idle(struct manager *m, struct worker *w, double now)
{
    char why[200];
    double lived = now - w->started;
    end_worker(m->p, w, why, sizeof why);
    fprintf(stderr, "annotate: %s while idle; starting another\n", why);
    if (lived < 1.0)
        m->respawn_after = now + 1.0;
}

/* Worker i died with our item (or sent a frame we cannot read: the same to us). The item is
 * tried on another worker, unless it has now cost MAX_DEATHS_PER_ITEM: then it fails. */
static void died_busy(struct manager *m, int i)
{
    struct proc *p = m->p;
    struct worker *w = &p->w[i];
    char why[200];
    end_worker(p, w, why, sizeof why);
    struct item *it = w->busy;
    w->busy = NULL;
    int times = m->deaths_of_busy[i] + 1;
    if (times >= MAX_DEATHS_PER_ITEM) {
        item_fail(it, "%s while handling this image (tried %d times)", why, times);
        pass_on(p, it);
    } else {
        fprintf(stderr, "annotate: %s; starting another and trying its image again\n", why);
        m->o.it[m->o.n] = it; /* at most one orphan per worker: o has room for p->n */
        m->o.deaths[m->o.n++] = times;
    }
}

/* What poll said of worker i: the watchdog, its stdin's room, its frames, its end. */
static void tend(struct manager *m, int i, double now)
{
    struct worker *w = &m->p->w[i];
    watchdog(m, w, now);
    if (m->pfd[2 * i + 1].revents & POLLOUT)
        flush_send(w); /* an error shows as EOF on its other pipe */
    if (!m->pfd[2 * i].revents || take_frames(m, w, now) == 0)
        return;
    if (!w->busy)
        ended_idle(m, w, now);
    else
        died_busy(m, i);
}

/* ---- the manager ---- */

/* Stops the workers: EOF on stdin ends them. A worker still busy is killed: that happens only
 * when the run is being torn down, its image will not be written, and it need not finish it. */
static void stop_workers(struct proc *p)
{
    for (int i = 0; i < p->n; i++) {
        struct worker *w = &p->w[i];
        if (!w->pid)
            continue;
        if (w->busy) {
            kill(w->pid, SIGKILL);
            item_free(w->busy);
            w->busy = NULL;
        }
        close(w->to);
        close(w->from);
        waitpid(w->pid, NULL, 0);
        w->pid = 0;
    }
}

/* 0, or -1 when out of memory (m can be freed either way). */
static int manager_init(struct manager *m, struct proc *p)
{
    *m = (struct manager){.p = p, .qfd = queue_notify_fd(p->in), .silence_s = silence_limit_s(p->run)};
    m->pfd = calloc((size_t)p->n * 2 + 1, sizeof *m->pfd);
    m->deaths_of_busy = calloc((size_t)p->n, sizeof *m->deaths_of_busy);
    m->o = (struct orphans){calloc((size_t)p->n, sizeof *m->o.it), calloc((size_t)p->n, sizeof *m->o.deaths), 0, p->n};
    return m->pfd && m->deaths_of_busy && m->o.it && m->o.deaths ? 0 : -1;
}

static void manager_free(struct manager *m)
{
    while (m->o.n)
        item_free(m->o.it[--m->o.n]);
    free(m->o.it);
    free(m->o.deaths);
    free(m->deaths_of_busy);
    free(m->pfd);
    ipc_buf_free(&m->frame);
}

/* The manager thread: hand out, wait, tend each worker, until the input is done and every item
 * is back; then stop the workers. */
static void *manager(void *arg)
{
    struct manager m;
    if (manager_init(&m, arg)) {
        fprintf(stderr, "annotate: out of memory in the process manager; stopping\n");
        run_abort(m.p->run);
        m.input_done = 1;
    }
    for (;;) {
        int busy = m.pfd ? hand_out(&m) : 0;
        if (busy == 0 && m.o.n == 0 && (m.input_done || run_stop_state(m.p->run) == RUN_ABORT))
            break;
        if (wait_events(&m, busy))
            break;
        double now = now_s();
        for (int i = 0; i < m.p->n; i++)
            tend(&m, i, now);
    }
    stop_workers(m.p);
    manager_free(&m);
    queue_producer_done(m.p->out);
    return NULL;
}

static void join(struct exec *base)
{
    struct proc *p = (struct proc *)base;
    pthread_join(p->tid, NULL);
    proc_free(p);
}

struct exec *exec_proc_start(const struct run *run, unsigned jobs, int workers, queue *in, queue *out,
                             char *err, size_t errlen)
{
    struct proc *p = calloc(1, sizeof *p);
    if (!p || !(p->w = calloc((size_t)workers, sizeof *p->w))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->base.join = join;
    p->run = run;
    p->in = in;
    p->out = out;
    p->n = workers;
    p->jobs = jobs;
    ssize_t l = readlink("/proc/self/exe", p->exe, sizeof p->exe - 1);
    if (l <= 0) {
        snprintf(err, errlen, "cannot find the annotate binary to start workers: %s", strerror(errno));
        proc_free(p);
        return NULL;
    }
    p->exe[l] = 0;
    if (ipc_encode_config(&p->config, run->cfg, jobs, run->shared_fd, run->rl ? ratelimit_fd(run->rl) : -1)) {
        snprintf(err, errlen, "out of memory for the workers' configuration");
        proc_free(p);
        return NULL;
    }
    /* The environment for workers, copied before any fork (it must not change under a fork). */
    size_t n = 0;
    while (environ[n])
        n++;
    if (!(p->envp = calloc(n + 1, sizeof *p->envp))) {
        snprintf(err, errlen, "out of memory");
        proc_free(p);
        return NULL;
    }
    memcpy(p->envp, environ, n * sizeof *p->envp);
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
