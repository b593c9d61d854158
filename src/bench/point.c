/* point: see point.h.
 *
 * Each point is a separate annotate process, so that its CPU time and peak RSS are its own
 * (wait4's rusage, which includes its worker processes). It is given every run option bench was
 * given (bench_child_argv). The child writes a sample per window to a pipe (the sample channel,
 * ipc.h): a JSON line with its counts of ok and failed images, requests, retries, latency
 * percentiles so far and its most common failures. Like perf_analyzer we drop a warm-up (until
 * the first sample with an image done) and keep measuring until the last three windows agree
 * within the tolerance, or --max-windows or --duration is reached. A window lasts from one
 * sample to the first one at which it holds at least 1 / --tolerance images done (so that one
 * image more or less moves its rate by no more than the tolerance): --window against a fast
 * server, as long as its images take against a slow one. A point that did not settle says why,
 * what it reported instead (the whole run's rates), and the --duration that would do.
 *
 * The child is then stopped as Ctrl-C would stop it, with a short --drain-timeout-ms, and killed
 * if it outlives that, so a point takes at most --duration plus about a second whatever the
 * server does. Throughput counts ok images only; a point with images that failed for load
 * (item.h's load_failure) is never stable, and says why; images that failed on their own (a
 * corrupt file's 400) are counted and named, and do not count against it. The mock server's CPU
 * is read from /proc over the same interval (not with --server: a server elsewhere cannot be
 * measured from here). */
#include "bench/point.h"
#include "common/secrets.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drivers/ipc.h"
#include "flow/item.h"

#define MAX_WINDOWS 1024

/* One line of the sample channel, parsed. */
struct sample {
    double t, ok, failed, failed_load, requests, retries, attempts;
    double stage_requests[MAX_STAGE_COUNTS]; /* requests completed per stage, for the bound */
    double stage_attempts[MAX_STAGE_COUNTS]; /* their HTTP attempts, retries included */
    double stage_p99[MAX_STAGE_COUNTS];      /* ms */
    double stage_mean[MAX_STAGE_COUNTS];     /* ms */
    int n_stage_requests;
    double req_p50, req_p90, req_p99, req_max, img_p50, img_p99;
    struct errtally_entry top[TOP_ERRORS];
    int ntop, final;
};

/* A point's run while it is measured: the child, what it has said, and its windows. */
struct watch {
    pid_t pid;
    int fds[2];                /* read ends of the sample channel and of the child's stderr; -1: closed */
    char outf[512], statsf[512];
    long drain_ms;             /* the run's --drain-timeout-ms */
    double t0, t_stop, t_sig;  /* started; when --duration ends it (0: never); when it was sent Ctrl-C */
    double mock0;              /* the mock's CPU seconds at the start */
    int stopped, reaped, status, settled_by; /* settled_by: 1 the tolerance, 2 --max-windows */
    struct rusage ru;
    struct sample last, prev;
    int have_prev, nw;
    double t_warm;             /* the end of the warm-up: the first sample with an image done */
    double rates[MAX_WINDOWS], rreq[MAX_WINDOWS], srates[MAX_WINDOWS][MAX_STAGE_COUNTS];
    char lines[1 << 16], errs[8192];
    size_t llen, elen;
};

int bench_self_exe(char *buf, size_t len)
{
    ssize_t l = readlink("/proc/self/exe", buf, len - 1);
    if (l <= 0)
        return -1;
    buf[l] = 0;
    return 0;
}

double bench_jnum(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

int bench_concurrencies(const char *s, int *out, int max)
{
    int n = 0;
    int lo, hi;
    char extra;
    if (sscanf(s, "%d-%d%c", &lo, &hi, &extra) == 2 && lo >= 1 && hi >= lo) {
        for (long c = lo; c <= hi && n < max; c *= 2)
            out[n++] = (int)c;
        if (out[n - 1] != hi && n < max)
            out[n++] = hi;
        return n;
    }
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "auto")) {
            out[n++] = CONC_AUTO;
            continue;
        }
        char *end;
        long v = strtol(t, &end, 10);
        if (*end || v < 1 || v > 100000) {
            free(copy);
            return -1;
        }
        out[n++] = (int)v;
    }
    free(copy);
    return n;
}

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long ut = 0, st = 0;
    /* after ") ": state(3) ... utime is field 14, stime 15 */
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14)
            ut = strtoul(tok, NULL, 10);
        else if (field == 15) {
            st = strtoul(tok, NULL, 10);
            break;
        }
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- the run's command line ---- */

/* --strategy and its sizes: bench's own, per point. */
static void strategy_args(const struct config *cfg, const struct bench_opts *b, const char *strategy, int conc,
                          struct config_argv *a)
{
    char cs[16];
    snprintf(cs, sizeof cs, conc == CONC_AUTO ? "auto" : "%d", conc);
    int serial = !strcmp(strategy, "serial");
    config_argv_add(a, "--strategy");
    if (serial) {
        config_argv_add(a, "serial");
    } else if (!strcmp(strategy, "curl-multi")) {
        config_argv_add(a, "curl-multi");
        /* the loader threads in front of the event loop: --workers as given to bench */
        config_argv_add(a, "--workers");
        config_argv_addf(a, "%d", cfg->workers);
        config_argv_add(a, "--loops");
        config_argv_addf(a, "%d", cfg->loops);
    } else {
        /* threads, processes, or a per-stage spec written with '+' (load=threads+query=processes) */
        config_argv_addf(a, "%s", strategy);
        for (char *c = a->bad ? NULL : (char *)a->argv[a->argc - 1]; c && *c; c++)
            if (*c == '+')
                *c = ',';
        config_argv_add(a, "--workers"); /* auto: the stages' limits within the most workers of the list */
        config_argv_addf(a, "%d", conc == CONC_AUTO ? b->auto_workers : conc);
        if (strstr(strategy, "curl-multi") || conc == CONC_AUTO) {
            config_argv_add(a, "--loops");
            config_argv_addf(a, "%d", cfg->loops);
        }
    }
    /* The point's number for every strategy (serial: one at a time): a run's default is auto,
     * which would give the stages limits of their own. */
    config_argv_add(a, "--concurrency");
    config_argv_addf(a, "%s", serial ? "1" : cs);
}

int bench_child_argv(const struct config *cfg, const struct bench_opts *b, const char *strategy, int conc,
                     const char *url, const char *out, const char *stats, long drain_ms, struct config_argv *a)
{
    char exe[4096];
    config_argv_reset(a);
    if (bench_self_exe(exe, sizeof exe))
        return -1;
    config_argv_addf(a, "%s", exe);
    config_argv_add(a, cfg->dir);
    /* bench's own: the server, where the rows go, quiet, and how the run ends */
    const char *const own[] = {"--server", url, "--out", out, "--force", "--quiet", "--sync-every", "0"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        config_argv_add(a, own[i]);
    config_argv_add(a, "--drain-timeout-ms");
    config_argv_addf(a, "%ld", drain_ms);
    if (stats) {
        config_argv_add(a, "--stats-json"); /* for the stages' limits at the end (the rest comes sampled) */
        config_argv_add(a, stats);
    }
    config_args(cfg, b, CONFIG_FOR_BENCH_RUN, a); /* every run option bench was given */
    strategy_args(cfg, b, strategy, conc, a);
    if (b->limit) {
        config_argv_add(a, "--max-images");
        config_argv_addf(a, "%ld", b->limit);
    }
    return a->bad ? -1 : 0;
}

/* ---- one line of the sample channel ---- */

/* The numbers of the array o[name], at most max, into out. How many. */
static int jnums(const cJSON *o, const char *name, double *out, int max)
{
    int k = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(o, name))
    {
        if (k < max && cJSON_IsNumber(x))
            out[k++] = x->valuedouble;
    }
    return k;
}

static void parse_errors(const cJSON *o, struct sample *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(o, "errors"))
    {
        if (s->ntop == TOP_ERRORS)
            break;
        struct errtally_entry *t = &s->top[s->ntop++];
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(e, "stage"));
        const char *re = cJSON_GetStringValue(cJSON_GetObjectItem(e, "reason"));
        snprintf(t->stage, sizeof t->stage, "%s", st ? st : "");
        snprintf(t->reason, sizeof t->reason, "%s", re ? re : "?");
        t->count = (uint64_t)bench_jnum(e, "count", NULL);
    }
}

/* One line of the sample channel (see bench_sampler_start). 0, or -1 when it is not one. */
static int parse_sample(const char *line, struct sample *s)
{
    cJSON *o = cJSON_Parse(line);
    if (!cJSON_IsObject(o) || !cJSON_IsNumber(cJSON_GetObjectItem(o, "t"))) {
        cJSON_Delete(o);
        return -1;
    }
    memset(s, 0, sizeof *s);
    s->t = bench_jnum(o, "t", NULL);
    s->ok = bench_jnum(o, "ok", NULL);
    s->failed = bench_jnum(o, "failed", NULL);
    s->failed_load = bench_jnum(o, "failed_load", NULL);
    s->requests = bench_jnum(o, "requests", NULL);
    s->retries = bench_jnum(o, "retries", NULL);
    s->attempts = bench_jnum(o, "attempts", NULL);
    s->n_stage_requests = jnums(o, "stage_requests", s->stage_requests, MAX_STAGE_COUNTS);
    jnums(o, "stage_attempts", s->stage_attempts, s->n_stage_requests);
    jnums(o, "stage_p99_ms", s->stage_p99, s->n_stage_requests);
    jnums(o, "stage_mean_ms", s->stage_mean, s->n_stage_requests);
    s->req_p50 = bench_jnum(o, "request_ms", "p50");
    s->req_p90 = bench_jnum(o, "request_ms", "p90");
    s->req_p99 = bench_jnum(o, "request_ms", "p99");
    s->req_max = bench_jnum(o, "request_ms", "max");
    s->img_p50 = bench_jnum(o, "image_ms", "p50");
    s->img_p99 = bench_jnum(o, "image_ms", "p99");
    s->final = cJSON_IsTrue(cJSON_GetObjectItem(o, "final"));
    parse_errors(o, s);
    cJSON_Delete(o);
    return 0;
}

/* ---- the run, while it is measured ---- */

/* Reads what fd has without blocking into buf (at most cap - 1 bytes kept; when it is full the
 * oldest half is dropped: only the tail of a child's messages matters). 0 at end of file. */
static int read_some(int fd, char *buf, size_t cap, size_t *len)
{
    for (;;) {
        if (*len + 1 >= cap) {
            size_t drop = *len / 2;
            memmove(buf, buf + drop, *len - drop);
            *len -= drop;
        }
        ssize_t r = read(fd, buf + *len, cap - 1 - *len);
        if (r > 0) {
            *len += (size_t)r;
            buf[*len] = 0;
            continue;
        }
        if (r == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return 1; /* EAGAIN: nothing more now */
    }
}

/* The last line of a child's messages, without "annotate: ", into out. */
static void last_message(const char *buf, char *out, size_t len)
{
    const char *end = buf + strlen(buf);
    while (end > buf && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > buf && start[-1] != '\n')
        start--;
    if (!strncmp(start, "annotate: ", 10))
        start += 10;
    snprintf(out, len, "%.*s", (int)(end - start), start);
}

/* In the child: the run, with the sample channel on sfd and its stderr into efd. */
static void exec_run(const struct config_argv *a, int sfd, int efd, double window_s)
{
    int fd = dup(sfd); /* a copy without close-on-exec: the run inherits it */
    dup2(efd, STDERR_FILENO);
    char fdenv[48], ivenv[64];
    snprintf(fdenv, sizeof fdenv, IPC_BENCH_FD_ENV "=%d", fd);
    snprintf(ivenv, sizeof ivenv, IPC_BENCH_INTERVAL_ENV "=%g", window_s);
    putenv(fdenv);
    putenv(ivenv);
    execv(a->argv[0], (char **)a->argv);
    _exit(127);
}

/* Starts the point's run. 0, or -1 with pt->error. */
static int start_run(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock,
                     struct point *pt, struct watch *w)
{
    const char *tmpdir = getenv("TMPDIR");
    snprintf(w->outf, sizeof w->outf, "%s/annotate-bench-%d.csv", tmpdir && *tmpdir ? tmpdir : "/tmp", (int)getpid());
    snprintf(w->statsf, sizeof w->statsf, "%s/annotate-bench-%d.json", tmpdir && *tmpdir ? tmpdir : "/tmp", (int)getpid());
    unlink(w->statsf);
    /* After the Ctrl-C that ends a measurement, the images in flight get this long. */
    w->drain_ms = b->limit ? 1000 : (long)fmin(1000, fmax(100, b->duration_s * 100));
    struct config_argv *a = calloc(1, sizeof *a);
    if (!a || bench_child_argv(cfg, b, pt->strategy, pt->conc, url, w->outf, w->statsf, w->drain_ms, a)) {
        free(a);
        snprintf(pt->error, sizeof pt->error, "cannot make the run's command line");
        return -1;
    }
    int sfd[2] = {-1, -1}, efd[2];
    if (pipe2(sfd, O_CLOEXEC) || pipe2(efd, O_CLOEXEC)) {
        snprintf(pt->error, sizeof pt->error, "pipe: %s", strerror(errno));
        if (sfd[0] >= 0) {
            close(sfd[0]);
            close(sfd[1]);
        }
        free(a);
        return -1;
    }
    w->mock0 = mock > 0 ? proc_cpu_s(mock) : 0;
    w->t0 = now_s();
    w->pid = fork();
    if (w->pid == 0)
        exec_run(a, sfd[1], efd[1], b->window_s);
    close(sfd[1]);
    close(efd[1]);
    free(a);
    w->fds[0] = sfd[0];
    w->fds[1] = efd[0];
    if (w->pid < 0) {
        close(sfd[0]);
        close(efd[0]);
        snprintf(pt->error, sizeof pt->error, "fork: %s", strerror(errno));
        return -1;
    }
    fcntl(sfd[0], F_SETFL, O_NONBLOCK);
    fcntl(efd[0], F_SETFL, O_NONBLOCK);
    w->t_stop = b->limit ? 0 : w->t0 + b->duration_s;
    return 0;
}

/* The run is stopped as Ctrl-C stops it: its images in flight get its drain. */
static void stop_run(struct watch *w, double now)
{
    kill(w->pid, SIGINT);
    w->stopped = 1;
    w->t_sig = now;
}

/* A window from the previous sample to s: its rates; the run is stopped once the last three
 * windows' requests/s agree within the tolerance, or at --max-windows. Requests/s, not images/s:
 * what the servers do per second is steady where images are not (an image of five crops costs
 * five requests of model_05, one of none costs none, so ten images can hold twice the work of
 * ten others), and the images/s reported is the mean of the same three windows. */
static void add_window(const struct bench_opts *b, struct point *pt, struct watch *w, const struct sample *s)
{
    const struct sample *prev = &w->prev;
    int nw = w->nw;
    w->rates[nw] = (s->ok - prev->ok) / (s->t - prev->t);
    w->rreq[nw] = (s->requests - prev->requests) / (s->t - prev->t);
    for (int i = 0; i < s->n_stage_requests && i < prev->n_stage_requests; i++)
        w->srates[nw][i] = (s->stage_requests[i] - prev->stage_requests[i]) / (s->t - prev->t);
    nw = ++w->nw;
    if (nw < 3)
        return;
    const double *r = w->rreq;
    double mx = fmax(fmax(r[nw - 1], r[nw - 2]), r[nw - 3]);
    double mn = fmin(fmin(r[nw - 1], r[nw - 2]), r[nw - 3]);
    double mean = (r[nw - 1] + r[nw - 2] + r[nw - 3]) / 3;
    pt->spread = mean > 0 ? (mx - mn) / mean : 0;
    if (!b->limit && !w->stopped && !w->reaped && ((mean > 0 && pt->spread <= b->tolerance) || nw >= b->max_windows)) {
        w->settled_by = mean > 0 && pt->spread <= b->tolerance ? 1 : 2;
        stop_run(w, now_s());
    }
}

/* The images a window must hold (ok or failed), so that one image more or less moves its rate by
 * no more than --tolerance: 1 / tolerance (10 at the default). A window is --window seconds long,
 * or as many more as its images take against a slow server. */
static double bench_window_images(const struct bench_opts *b)
{
    return ceil(1 / b->tolerance - 1e-9);
}

/* A sample's images done, ok or failed. */
static double done_of(const struct sample *s)
{
    return s->ok + s->failed;
}

/* A sample after the warm-up: it ends a window when the window holds its images (a window is
 * --window s long, or as many more as its images take). */
static void window_sample(const struct bench_opts *b, struct point *pt, struct watch *w, const struct sample *s)
{
    if (!w->have_prev) {
        if (done_of(s) <= 0)
            return; /* warm-up: until the first sample with an image done */
        w->prev = *s;
        w->have_prev = 1;
        w->t_warm = s->t;
        return;
    }
    if (s->t > w->prev.t && done_of(s) - done_of(&w->prev) >= bench_window_images(b) && w->nw < MAX_WINDOWS) {
        add_window(b, pt, w, s);
        w->prev = *s;
    }
}

/* The whole lines of the sample channel so far: each sample, and the windows between them. */
static void take_samples(const struct bench_opts *b, struct point *pt, struct watch *w)
{
    char *line = w->lines, *nl;
    struct sample s;
    while ((nl = strchr(line, '\n'))) {
        *nl = 0;
        if (parse_sample(line, &s) == 0) {
            w->last = s;
            pt->sampled = 1;
            /* what comes after the Ctrl-C (the drain) is no window */
            if (!s.final && !w->stopped)
                window_sample(b, pt, w, &s);
        }
        line = nl + 1;
    }
    w->llen -= (size_t)(line - w->lines);
    memmove(w->lines, line, w->llen);
    w->lines[w->llen] = 0;
}

/* Waits up to 0.2 s (less when --duration ends sooner) for the run to say something, then reads
 * what it said (after it has ended, one last read of what it left in the pipes). */
static void read_run(struct watch *w, double now)
{
    if (!w->reaped) {
        struct pollfd pfd[2] = {{w->fds[0], POLLIN, 0}, {w->fds[1], POLLIN, 0}};
        double until = w->t_stop && !w->stopped ? w->t_stop - now : 0.2;
        poll(pfd, 2, (int)(fmin(0.2, fmax(0.001, until)) * 1000));
    }
    for (int k = 0; k < 2; k++) {
        if (w->fds[k] < 0)
            continue;
        int more = k == 0 ? read_some(w->fds[k], w->lines, sizeof w->lines, &w->llen)
                          : read_some(w->fds[k], w->errs, sizeof w->errs, &w->elen);
        if (!more) {
            close(w->fds[k]);
            w->fds[k] = -1;
        }
    }
}

/* Until the run has ended: its samples read, stopped at the end of --duration, once its
 * windows settle or when bench is stopped, and killed when it outlives its drain. */
static void watch_run(const struct bench_opts *b, struct point *pt, struct watch *w)
{
    for (;;) {
        double now = now_s();
        if (!w->reaped && wait4(w->pid, &w->status, WNOHANG, &w->ru) == w->pid)
            w->reaped = 1;
        if (!w->stopped && !w->reaped && (bench_stop || (w->t_stop && now >= w->t_stop))) {
            pt->interrupted = bench_stop != 0;
            stop_run(w, now);
        }
        if (w->stopped && !w->reaped && !pt->killed && now >= w->t_sig + (double)w->drain_ms / 1e3 + 2) {
            kill(w->pid, SIGKILL); /* it outlived its drain: what it sampled stands */
            pt->killed = 1;
        }
        read_run(w, now);
        take_samples(b, pt, w);
        if (w->reaped)
            break;
    }
    for (int k = 0; k < 2; k++)
        if (w->fds[k] >= 0)
            close(w->fds[k]);
}

/* The stages' limits as the run ended, when it ended by itself or within its drain: the
 * "limits" of its --stats-json, or NULL. */
static cJSON *read_limits(const char *statsf)
{
    FILE *sf = fopen(statsf, "r");
    if (!sf)
        return NULL;
    char *txt = malloc(1 << 20);
    size_t l = txt ? fread(txt, 1, (1 << 20) - 1, sf) : 0;
    fclose(sf);
    cJSON *js = NULL;
    if (txt) {
        txt[l] = 0;
        js = cJSON_Parse(txt);
    }
    free(txt);
    cJSON *limits = cJSON_DetachItemFromObjectCaseSensitive(js, "limits");
    cJSON_Delete(js);
    return limits;
}

/* What the run cost, and how it ended. 0 when it ended as a measured run does (by itself, by
 * the Ctrl-C, or killed after its drain), else -1 with pt->error: its last message. */
static int end_of_run(struct point *pt, struct watch *w, pid_t mock)
{
    unlink(w->outf);
    pt->limits = read_limits(w->statsf);
    unlink(w->statsf);
    pt->wall_s = now_s() - w->t0;
    pt->mock_cpu_s = mock > 0 ? proc_cpu_s(mock) - w->mock0 : -1;
    pt->tool_cpu_s = (double)w->ru.ru_utime.tv_sec + (double)w->ru.ru_utime.tv_usec / 1e6 +
                     (double)w->ru.ru_stime.tv_sec + (double)w->ru.ru_stime.tv_usec / 1e6;
    pt->rss_kb = w->ru.ru_maxrss;
    pt->windows = w->nw;
    int status = w->status;
    pt->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    int ok_end = WIFEXITED(status) ? (pt->exit_status == 0 || pt->exit_status == 1 || pt->exit_status == 130)
                                   : pt->killed && WTERMSIG(status) == SIGKILL;
    if (ok_end)
        return 0;
    char msg[400];
    last_message(w->errs, msg, sizeof msg);
    if (WIFSIGNALED(status))
        snprintf(pt->error, sizeof pt->error, "it died of signal %d%s%s", WTERMSIG(status), msg[0] ? ": " : "", msg);
    else if (msg[0])
        snprintf(pt->error, sizeof pt->error, "%s", msg);
    else
        snprintf(pt->error, sizeof pt->error, "it exited with status %d", pt->exit_status);
    secrets_scrub(pt->error, sizeof pt->error); /* the run scrubbed its own: this is the report's */
    return -1;
}

/* The point's figures from the run's last sample, and its rates: of its last three windows, or
 * of the whole run for a fixed amount of work (or one too short for windows). */
static void figures(const struct bench_opts *b, struct point *pt, const struct watch *w)
{
    const struct sample *last = &w->last;
    int nw = w->nw;
    pt->ran_out = !w->stopped && !b->limit;
    pt->ok = last->ok;
    pt->failed = last->failed;
    pt->failed_load = last->failed_load;
    pt->requests = last->requests;
    pt->retries = last->retries;
    pt->attempts = last->attempts;
    pt->req_p50 = last->req_p50;
    pt->req_p90 = last->req_p90;
    pt->req_p99 = last->req_p99;
    pt->req_max = last->req_max;
    pt->img_p50 = last->img_p50;
    pt->img_p99 = last->img_p99;
    pt->ntop = last->ntop;
    memcpy(pt->top, last->top, sizeof pt->top);
    pt->n_stages = last->n_stage_requests;
    memcpy(pt->stage_requests, last->stage_requests, sizeof pt->stage_requests);
    memcpy(pt->stage_attempts, last->stage_attempts, sizeof pt->stage_attempts);
    memcpy(pt->stage_p99, last->stage_p99, sizeof pt->stage_p99);
    memcpy(pt->stage_mean, last->stage_mean, sizeof pt->stage_mean);
    if (b->limit || nw < 3) {
        pt->img_s = last->t > 0 ? last->ok / last->t : 0;
        pt->req_s = last->t > 0 ? last->requests / last->t : 0;
        for (int i = 0; i < pt->n_stages; i++)
            pt->stage_req_s[i] = last->t > 0 ? last->stage_requests[i] / last->t : 0;
        return;
    }
    pt->img_s = (w->rates[nw - 1] + w->rates[nw - 2] + w->rates[nw - 3]) / 3;
    pt->req_s = (w->rreq[nw - 1] + w->rreq[nw - 2] + w->rreq[nw - 3]) / 3;
    for (int i = 0; i < pt->n_stages; i++)
        pt->stage_req_s[i] = (w->srates[nw - 1][i] + w->srates[nw - 2][i] + w->srates[nw - 3][i]) / 3;
}

/* The bottleneck's bound: each endpoint of the mock serves --capacity requests per --latency-ms;
 * with the requests per image each stage made, the images/s the busiest endpoint allows. The
 * point's ok images/s as a share of it (< 0: no bound). */
static double share_of_bound(const struct bench_opts *b, const struct point *pt, const struct sample *last)
{
    double images = last->ok + last->failed;
    if (b->capacity <= 0 || b->latency_ms <= 0 || images <= 0)
        return -1;
    double per_s = (double)b->capacity * 1e3 / (double)b->latency_ms, best = -1;
    for (int i = 0; i < last->n_stage_requests; i++) {
        double count = last->stage_requests[i];
        if (count > 0 && (best < 0 || per_s / (count / images) < best))
            best = per_s / (count / images);
    }
    return best > 0 ? pt->img_s / best : -1;
}

/* How long a window takes at the run's rate so far: --window, or the time its images take. */
static double window_at_rate(const struct bench_opts *b, const struct watch *w)
{
    return fmax(b->window_s, bench_window_images(b) * w->last.t / fmax(1, done_of(&w->last)));
}

/* The --duration that would let the point settle, from what it saw: its warm-up, then four
 * windows (three to agree, one to spare) of bench_window_images at its rate so far, rounded up to
 * 10 s. 0 when no image finished: nothing to go by. */
static double settle_duration(const struct bench_opts *b, const struct watch *w)
{
    const struct sample *l = &w->last;
    if (done_of(l) <= 0 || l->t <= 0)
        return 0;
    return ceil(((w->have_prev ? w->t_warm : l->t) + 4 * window_at_rate(b, w)) / 10) * 10;
}

/* Why a point that ran out of time is not stable, with what it did instead and what to try. */
static void unsettled(const struct bench_opts *b, struct point *pt, const struct watch *w, int settled_by)
{
    double need = settle_duration(b, w);
    char try[160];
    if (need > b->duration_s)
        snprintf(try, sizeof try, "give --duration %.0f or more", need);
    else
        snprintf(try, sizeof try, "give a longer --duration or a wider --tolerance");
    if (pt->windows < 3)
        snprintf(pt->why, sizeof pt->why,
                 "only %d window%s of %.0f images in --duration %g s (3 are needed after the warm-up; at %.2f "
                 "images/s a window takes %.1f s): its figures are over the whole run; %s",
                 pt->windows, pt->windows == 1 ? "" : "s", bench_window_images(b), b->duration_s,
                 w->last.t > 0 ? done_of(&w->last) / w->last.t : 0, window_at_rate(b, w), try);
    else
        snprintf(pt->why, sizeof pt->why,
                 "the last 3 windows disagree by %.0f%% (tolerance %.0f%%) %s: its figures are those 3 windows'; %s",
                 100 * pt->spread, 100 * b->tolerance,
                 settled_by == 2 ? "after --max-windows" : "at the end of --duration",
                 settled_by == 2 ? "give a larger --max-windows or a wider --tolerance" : try);
    pt->suggest_duration_s = need > b->duration_s ? need : 0;
}

/* Why a measured point is not stable, or "" when it is. Images that failed on their own (a
 * final 4xx, a garbled answer on every retry: item.h's load_failure unset) say nothing about
 * load and do not make it unstable; they are counted (pt->failed) and named (pt->note). */
static void verdict(const struct bench_opts *b, struct point *pt, const struct watch *w, int settled_by)
{
    char label[ERRTALLY_STAGE + ERRTALLY_REASON + 4] = "";
    pt->why[0] = pt->note[0] = 0;
    if (pt->ntop)
        errtally_label(&pt->top[0], label, sizeof label);
    double own = pt->failed - pt->failed_load;
    if (own > 0) /* (the most common reason is theirs only when no image failed for load) */
        snprintf(pt->note, sizeof pt->note, "%.0f failed on their own (%s), not for load", own,
                 label[0] && pt->failed_load == 0 ? label : "see the error column");
    if (pt->interrupted)
        snprintf(pt->why, sizeof pt->why, "stopped by a signal");
    else if (!pt->sampled)
        snprintf(pt->why, sizeof pt->why, "no sample came from the run in %.1f s", pt->wall_s);
    else if (pt->failed_load > 0)
        snprintf(pt->why, sizeof pt->why, "%.0f failed (%s)", pt->failed_load,
                 label[0] ? label : "see the error column");
    else if (pt->ok == 0 && own == 0)
        snprintf(pt->why, sizeof pt->why,
                 "no image finished in %.1f s: an image takes longer than that here (or its requests queue at "
                 "the server: try a lower concurrency); give a longer --duration (now %g s), or --limit N to "
                 "time N images however long they take",
                 pt->wall_s, b->duration_s);
    else if (b->limit)
        ; /* a fixed amount of work, all of it done */
    else if (pt->ran_out)
        snprintf(pt->why, sizeof pt->why, "ran out of images after %d window%s (give more images or a shorter --window)",
                 pt->windows, pt->windows == 1 ? "" : "s");
    else if (pt->windows < 3 || settled_by != 1)
        unsettled(b, pt, w, settled_by);
    pt->stable = pt->why[0] == 0;
}

int run_point(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock, struct point *pt)
{
    struct watch *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(pt->error, sizeof pt->error, "out of memory");
        return -1;
    }
    int rc = start_run(cfg, b, url, mock, pt, w);
    if (rc == 0) {
        watch_run(b, pt, w);
        rc = end_of_run(pt, w, mock);
    }
    if (rc == 0) {
        figures(b, pt, w);
        pt->bound = share_of_bound(b, pt, &w->last);
        verdict(b, pt, w, w->settled_by);
    }
    free(w);
    return rc;
}
