/* bench: see bench.h.
 *
 * Each point (a strategy at a concurrency) is a separate annotate process, so that its CPU time
 * and peak RSS are its own (wait4's rusage, which includes its worker processes). It is given
 * every run option bench was given (bench_child_argv). The child writes a sample per window to
 * a pipe (the sample channel, ipc.h): a JSON line with its counts of ok and failed images,
 * requests, retries, latency percentiles so far and its most common failures. Like
 * perf_analyzer we drop the first window as warm-up and keep measuring until the last three
 * windows agree within the tolerance, or --max-windows or --duration is reached. The child is
 * then stopped as Ctrl-C would stop it, with a short --drain-timeout-ms, and killed if it
 * outlives that, so a point takes at most --duration plus about a second whatever the server
 * does. Throughput counts ok images only; a point with failures is never stable, and says why.
 * The mock server's CPU is read from /proc over the same interval (not with --server: a
 * server elsewhere cannot be measured from here). The report and the chart are rewritten after
 * every point, so a bench that is stopped keeps what it measured. */
#include "bench/bench.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/errtally.h"
#include "drivers/ipc.h"
#include "flow/item.h"
#include "endpoint/limit.h"
#include "common/stats.h"

#define TOP_ERRORS 3  /* failure kinds a sample carries */
#define MAX_WINDOWS 1024

#define MAX_STAGE_COUNTS 64 /* SHARED_MAX_STAGES */

/* One line of the sample channel, parsed. */
struct sample {
    double t, ok, failed, requests, retries, attempts;
    double stage_requests[MAX_STAGE_COUNTS]; /* requests completed per stage, for the bound */
    double stage_attempts[MAX_STAGE_COUNTS]; /* their HTTP attempts, retries included */
    double stage_p99[MAX_STAGE_COUNTS];      /* ms */
    double stage_mean[MAX_STAGE_COUNTS];     /* ms */
    int n_stage_requests;
    double req_p50, req_p90, req_p99, req_max, img_p50, img_p99;
    struct errtally_entry top[TOP_ERRORS];
    int ntop, final;
};

#define CONC_AUTO 0

struct point {
    const char *strategy;
    int conc;                                  /* CONC_AUTO: --concurrency auto */
    double img_s, req_s;                       /* ok images per second; requests per second */
    double req_p50, req_p90, req_p99, req_max; /* ms */
    double img_p50, img_p99;
    double tool_cpu_s, mock_cpu_s, wall_s;
    long rss_kb;
    double ok, failed, requests, retries, attempts;
    double bound;  /* with --capacity: images/s as a share of the bottleneck endpoint's bound; < 0: none */
    cJSON *limits; /* the run's "limits" (its stages' concurrency limits at the end), owned; may be NULL */
    struct errtally_entry top[TOP_ERRORS];
    int ntop;
    int windows, stable, ran_out, interrupted, killed, sampled;
    double spread; /* (max - min) / mean of the last three windows */
    /* per stage of the run's pipeline: requests/s (as img_s: the last three windows), requests,
     * attempts and request p99 (ms) */
    double stage_req_s[MAX_STAGE_COUNTS], stage_requests[MAX_STAGE_COUNTS], stage_attempts[MAX_STAGE_COUNTS];
    double stage_p99[MAX_STAGE_COUNTS], stage_mean[MAX_STAGE_COUNTS];
    int n_stages;
    int sweep_stage, sweep_conc; /* --sweep: the stage swept (its index in the user's pipeline) and its limit */
    char rejected[200];          /* --sweep: why the point cannot be the knee ("" when it can) */
    char stop[200];              /* --sweep: why the stage's sweep stopped after this point */
    int stop_kind;               /* --sweep: SWEEP_STOP_* */
    char why[320];   /* why the point is not stable ("" when it is) */
    char error[600]; /* the run did not finish: what it said ("" when it did) */
    int exit_status;
};

/* Set by SIGINT or SIGTERM to bench: stop the point being measured, write what was measured. */
static volatile sig_atomic_t bench_stop;

static void on_bench_signal(int sig)
{
    (void)sig;
    bench_stop = 1;
}

static double mono(void)
{
    return now_s();
}

static int self_exe(char *buf, size_t len)
{
    ssize_t l = readlink("/proc/self/exe", buf, len - 1);
    if (l <= 0)
        return -1;
    buf[l] = 0;
    return 0;
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

/* The mock's endpoints that the pipeline's batch stages post to ("model_03,model_05"), for its
 * --batch: a batch endpoint answers lists. Empty when none. */
static void batch_endpoints(const struct pipeline *p, char *out, size_t outlen)
{
    out[0] = 0;
    for (int s = 0; p && s < p->n; s++) {
        const char *u = p->stages[s].url, *slash = u ? strrchr(u, '/') : NULL;
        if (!p->stages[s].batch_size || !slash || strncmp(slash + 1, "model_0", 7) || slash[8] < '1' ||
            slash[8] > '5' || slash[9])
            continue;
        size_t l = strlen(out);
        snprintf(out + l, outlen - l, "%s%s", l ? "," : "", slash + 1);
    }
}

/* Starts the mock; returns its pid and fills the base URL. */
static pid_t start_mock(const char *bin, const struct bench_opts *b, const char *batch, char *url, size_t urllen)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    char lat[32];
    snprintf(lat, sizeof lat, "%ld", b->latency_ms);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        const char *argv[16] = {bin, "--port", "0", "--latency-ms", lat, "--latency-dist", b->latency_dist};
        int n = 7;
        char cap[32], qmax[32];
        if (b->trust_payload)
            argv[n++] = "--trust-payload";
        if (b->capacity > 0) {
            snprintf(cap, sizeof cap, "%ld", b->capacity);
            argv[n++] = "--capacity";
            argv[n++] = cap;
            if (b->queue_max >= 0) {
                snprintf(qmax, sizeof qmax, "%ld", b->queue_max);
                argv[n++] = "--queue-max";
                argv[n++] = qmax;
            }
        }
        if (batch[0]) {
            argv[n++] = "--batch";
            argv[n++] = batch;
        }
        argv[n] = NULL;
        execv(bin, (char **)argv);
        fprintf(stderr, "annotate bench: cannot run the mock server %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    char line[256];
    size_t len = 0;
    double deadline = mono() + 10;
    while (len < sizeof line - 1 && mono() < deadline) {
        struct pollfd pfd = {fds[0], POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        ssize_t r = read(fds[0], line + len, 1);
        if (r <= 0)
            break;
        if (line[len] == '\n')
            break;
        len++;
    }
    line[len] = 0;
    close(fds[0]);
    int port;
    if (sscanf(line, "listening on 127.0.0.1:%d", &port) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    snprintf(url, urllen, "http://127.0.0.1:%d", port);
    return pid;
}

static int parse_concurrency(const char *s, int *out, int max)
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

static const char *COLOURS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

/* Text for an SVG element: & < > " escaped. */
static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void write_svg(const char *path, struct point *pts, int n, const struct bench_opts *b, const char *url)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "annotate bench: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    const int W = 860, H = 460, L = 80, R = 270, T = 50, B = 60;
    double maxy = 1, minc = 1, maxc = 1;
    for (int i = 0; i < n; i++) {
        maxy = fmax(maxy, pts[i].img_s);
        maxc = fmax(maxc, pts[i].conc);
    }
    double ystep = pow(10, floor(log10(maxy)));
    if (maxy / ystep < 2.5)
        ystep /= 4;
    else if (maxy / ystep < 5)
        ystep /= 2;
    maxy = ceil(maxy / ystep) * ystep;
    double lx0 = log2(minc), lx1 = log2(maxc) > lx0 ? log2(maxc) : lx0 + 1;
#define X(c) (L + (log2(c) - lx0) / (lx1 - lx0) * (W - L - R))
#define Y(v) (H - B - (v) / maxy * (H - T - B))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">annotate bench: images/s against concurrency</text>\n", L);
    fprintf(f, "<text x=\"%d\" y=\"40\" fill=\"#555\">", L);
    if (b->server_given) {
        fputs("server at ", f);
        xml_text(f, url);
    } else {
        fprintf(f, "mock latency %ld ms (%s)%s", b->latency_ms, b->latency_dist,
                b->trust_payload ? ", mock skips decoding (--trust-payload)" : "");
    }
    fputs("; images/s counts ok images only</text>\n", f);
    for (double v = 0; v <= maxy + 1e-9; v += ystep) {
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, W - R, Y(v), Y(v));
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", L - 6, Y(v) + 4, v);
    }
    for (double c = 1; c <= maxc * 1.0001; c *= 2) {
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#eee\"/>\n", X(c), X(c), T, H - B);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n", X(c), H - B + 16, c);
    }
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, W - R, H - B, H - B);
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, L, T, H - B);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">concurrency (requests in flight, or workers)</text>\n", (L + W - R) / 2, H - 20);
    fprintf(f, "<text x=\"18\" y=\"%d\" transform=\"rotate(-90 18 %d)\" text-anchor=\"middle\">images/s</text>\n", (T + H - B) / 2, (T + H - B) / 2);
    const char *seen[16];
    int ns = 0;
    for (int i = 0; i < n; i++) {
        int k;
        for (k = 0; k < ns; k++)
            if (!strcmp(seen[k], pts[i].strategy))
                break;
        if (k < ns || ns == 16)
            continue;
        seen[ns++] = pts[i].strategy;
        const char *col = COLOURS[k % 6];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (int j = i; j < n; j++)
            if (!strcmp(pts[j].strategy, pts[i].strategy) && pts[j].conc != CONC_AUTO)
                fprintf(f, "%.1f,%.1f ", X(pts[j].conc), Y(pts[j].img_s));
        fprintf(f, "\"/>\n");
        for (int j = i; j < n; j++) {
            if (strcmp(pts[j].strategy, pts[i].strategy))
                continue;
            /* An auto point has no concurrency to put on the axis: a dashed line across, at its
             * images/s. */
            if (pts[j].conc == CONC_AUTO)
                fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-dasharray=\"6 4\"/>"
                           "<text x=\"%d\" y=\"%.1f\" fill=\"%s\">auto</text>\n",
                        L, W - R, Y(pts[j].img_s), Y(pts[j].img_s), col, W - R + 4, Y(pts[j].img_s) + 4, col);
            else
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", X(pts[j].conc),
                        Y(pts[j].img_s), col);
        }
        int ly = T + 10 + 20 * k;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n", W - R + 15, W - R + 40, ly, ly, col);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", W - R + 46, ly + 4);
        xml_text(f, pts[i].strategy);
        fputs("</text>\n", f);
    }
    fprintf(f, "</svg>\n");
#undef X
#undef Y
    fclose(f);
}

static void mkdirs_for(const char *path)
{
    char *copy = strdup(path), *d = dirname(copy);
    char cmd[4096];
    struct stat st;
    if (stat(d, &st) != 0) {
        snprintf(cmd, sizeof cmd, "%s", d);
        for (char *p = cmd + 1; *p; p++)
            if (*p == '/') {
                *p = 0;
                mkdir(cmd, 0755);
                *p = '/';
            }
        mkdir(cmd, 0755);
    }
    free(copy);
}


/* ---- the runs' command lines ---- */

/* Passed on to every run as given (or as the defaults have them). */
static const char *const FORWARDED[] = {"config",          "header",           "queue-size",     "timeout-ms",
                                        "connect-timeout-ms", "retries",        "backoff-ms",     "backoff-max-ms",
                                        "max-rps",         "max-image-bytes",  "max-answer-bytes", "max-memory",
                                        "outage-timeout",  "extensions",       "encoder",        "insecure",
                                        "cacert",          NULL};
/* bench's own: --server is the mock's or the one given; --workers, --concurrency and --loops are
 * set per point from the strategy; its runs are always --quiet; --help and --version end it. */
static const char *const OWN[] = {"server", "workers", "concurrency", "loops", "quiet", "help", "version", NULL};

int bench_takes_option(const char *name)
{
    for (int i = 0; FORWARDED[i]; i++)
        if (!strcmp(FORWARDED[i], name))
            return 1;
    for (int i = 0; OWN[i]; i++)
        if (!strcmp(OWN[i], name))
            return 1;
    return 0;
}

const char *const *bench_forwarded_options(void)
{
    return FORWARDED;
}

static void arg(struct bench_argv *a, int *bad, const char *s)
{
    if (!s || a->argc + 1 >= (int)(sizeof a->argv / sizeof a->argv[0])) {
        *bad = 1;
        return;
    }
    a->argv[a->argc++] = s;
    a->argv[a->argc] = NULL;
}

/* A formatted argument, kept in a->store. */
static void argf(struct bench_argv *a, int *bad, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void argf(struct bench_argv *a, int *bad, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof a->store - a->used;
    int n = vsnprintf(a->store + a->used, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        *bad = 1;
        return;
    }
    arg(a, bad, a->store + a->used);
    a->used += (size_t)n + 1;
}

int bench_child_argv(const struct config *cfg, const struct bench_opts *b, const char *strategy, int conc,
                     const char *url, const char *out, const char *stats, long drain_ms, struct bench_argv *a)
{
    char exe[4096];
    int bad = 0;
    a->argc = 0;
    a->used = 0;
    a->argv[0] = NULL;
    if (self_exe(exe, sizeof exe))
        return -1;
    argf(a, &bad, "%s", exe);
    arg(a, &bad, cfg->dir);
    arg(a, &bad, "--server");
    arg(a, &bad, url);
    arg(a, &bad, "--out");
    arg(a, &bad, out);
    arg(a, &bad, "--force");
    arg(a, &bad, "--quiet");
    arg(a, &bad, "--sync-every");
    arg(a, &bad, "0");
    arg(a, &bad, "--drain-timeout-ms");
    argf(a, &bad, "%ld", drain_ms);
    if (stats) {
        arg(a, &bad, "--stats-json"); /* for the stages' limits at the end (the rest comes sampled) */
        arg(a, &bad, stats);
    }
    /* FORWARDED, every one of them */
    if (cfg->config_file) {
        arg(a, &bad, "--config");
        arg(a, &bad, cfg->config_file);
    }
    for (int i = 0; i < b->n_headers; i++) {
        arg(a, &bad, "--header");
        arg(a, &bad, b->headers[i]);
    }
    arg(a, &bad, "--queue-size");
    argf(a, &bad, "%zu", cfg->queue_size);
    arg(a, &bad, "--timeout-ms");
    argf(a, &bad, "%ld", cfg->timeout_ms);
    arg(a, &bad, "--connect-timeout-ms");
    argf(a, &bad, "%ld", cfg->connect_timeout_ms);
    arg(a, &bad, "--retries");
    argf(a, &bad, "%d", cfg->retries);
    arg(a, &bad, "--backoff-ms");
    argf(a, &bad, "%ld", cfg->backoff_ms);
    arg(a, &bad, "--backoff-max-ms");
    argf(a, &bad, "%ld", cfg->backoff_max_ms);
    if (cfg->max_rps > 0) {
        arg(a, &bad, "--max-rps");
        argf(a, &bad, "%.17g", cfg->max_rps);
    }
    arg(a, &bad, "--max-image-bytes");
    argf(a, &bad, "%llu", (unsigned long long)cfg->max_image_bytes);
    arg(a, &bad, "--max-answer-bytes");
    argf(a, &bad, "%ld", cfg->max_answer_bytes);
    arg(a, &bad, "--max-memory");
    argf(a, &bad, "%llu", (unsigned long long)cfg->max_memory);
    arg(a, &bad, "--outage-timeout");
    argf(a, &bad, "%ld", cfg->outage_timeout_s);
    if (b->extensions) {
        arg(a, &bad, "--extensions");
        arg(a, &bad, b->extensions);
    }
    arg(a, &bad, "--encoder");
    arg(a, &bad, b64_encoder_name(cfg->encoder));
    if (cfg->insecure)
        arg(a, &bad, "--insecure");
    if (cfg->cacert) {
        arg(a, &bad, "--cacert");
        arg(a, &bad, cfg->cacert);
    }
    /* OWN: the strategy and its sizes */
    char cs[16];
    snprintf(cs, sizeof cs, conc == CONC_AUTO ? "auto" : "%d", conc);
    arg(a, &bad, "--strategy");
    if (!strcmp(strategy, "serial")) {
        arg(a, &bad, "serial");
    } else if (!strcmp(strategy, "curl-multi")) {
        arg(a, &bad, "curl-multi");
        arg(a, &bad, "--concurrency");
        argf(a, &bad, "%s", cs);
        /* the loader threads in front of the event loop: --workers as given to bench */
        arg(a, &bad, "--workers");
        argf(a, &bad, "%d", cfg->workers);
        arg(a, &bad, "--loops");
        argf(a, &bad, "%d", cfg->loops);
    } else {
        /* threads, processes, or a per-stage spec written with '+' (load=threads+query=processes) */
        argf(a, &bad, "%s", strategy);
        for (char *c = (char *)a->argv[a->argc - 1]; !bad && *c; c++)
            if (*c == '+')
                *c = ',';
        arg(a, &bad, "--workers"); /* auto: the stages' limits within the most workers of the list */
        argf(a, &bad, "%d", conc == CONC_AUTO ? b->auto_workers : conc);
        if (strstr(strategy, "curl-multi") || conc == CONC_AUTO) {
            arg(a, &bad, "--concurrency");
            argf(a, &bad, "%s", cs);
            arg(a, &bad, "--loops");
            argf(a, &bad, "%d", cfg->loops);
        }
    }
    if (b->limit) {
        arg(a, &bad, "--max-images");
        argf(a, &bad, "%ld", b->limit);
    }
    return bad ? -1 : 0;
}

/* ---- one point ---- */

static double jnum(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : 0;
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
    s->t = jnum(o, "t", NULL);
    s->ok = jnum(o, "ok", NULL);
    s->failed = jnum(o, "failed", NULL);
    s->requests = jnum(o, "requests", NULL);
    s->retries = jnum(o, "retries", NULL);
    s->attempts = jnum(o, "attempts", NULL);
    const cJSON *sr;
    cJSON_ArrayForEach(sr, cJSON_GetObjectItem(o, "stage_requests"))
    {
        if (s->n_stage_requests < MAX_STAGE_COUNTS && cJSON_IsNumber(sr))
            s->stage_requests[s->n_stage_requests++] = sr->valuedouble;
    }
    int k = 0;
    cJSON_ArrayForEach(sr, cJSON_GetObjectItem(o, "stage_attempts"))
    {
        if (k < s->n_stage_requests && cJSON_IsNumber(sr))
            s->stage_attempts[k++] = sr->valuedouble;
    }
    k = 0;
    cJSON_ArrayForEach(sr, cJSON_GetObjectItem(o, "stage_p99_ms"))
    {
        if (k < s->n_stage_requests && cJSON_IsNumber(sr))
            s->stage_p99[k++] = sr->valuedouble;
    }
    k = 0;
    cJSON_ArrayForEach(sr, cJSON_GetObjectItem(o, "stage_mean_ms"))
    {
        if (k < s->n_stage_requests && cJSON_IsNumber(sr))
            s->stage_mean[k++] = sr->valuedouble;
    }
    s->req_p50 = jnum(o, "request_ms", "p50");
    s->req_p90 = jnum(o, "request_ms", "p90");
    s->req_p99 = jnum(o, "request_ms", "p99");
    s->req_max = jnum(o, "request_ms", "max");
    s->img_p50 = jnum(o, "image_ms", "p50");
    s->img_p99 = jnum(o, "image_ms", "p99");
    s->final = cJSON_IsTrue(cJSON_GetObjectItem(o, "final"));
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
        t->count = (uint64_t)jnum(e, "count", NULL);
    }
    cJSON_Delete(o);
    return 0;
}

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

/* Why a measured point is not stable, or "" when it is. */
static void verdict(const struct bench_opts *b, struct point *pt, int settled_by)
{
    char label[ERRTALLY_STAGE + ERRTALLY_REASON + 4] = "";
    pt->why[0] = 0;
    if (pt->ntop)
        errtally_label(&pt->top[0], label, sizeof label);
    if (pt->interrupted)
        snprintf(pt->why, sizeof pt->why, "stopped by a signal");
    else if (!pt->sampled)
        snprintf(pt->why, sizeof pt->why, "no sample came from the run in %.1f s", pt->wall_s);
    else if (pt->failed > 0)
        snprintf(pt->why, sizeof pt->why, "%.0f failed (%s)", pt->failed, label[0] ? label : "see the error column");
    else if (pt->ok == 0)
        snprintf(pt->why, sizeof pt->why, "no image finished in %.1f s", pt->wall_s);
    else if (b->limit)
        ; /* a fixed amount of work, all of it ok */
    else if (pt->ran_out)
        snprintf(pt->why, sizeof pt->why, "ran out of images after %d window%s (give more images or a shorter --window)",
                 pt->windows, pt->windows == 1 ? "" : "s");
    else if (pt->windows < 3)
        snprintf(pt->why, sizeof pt->why,
                 "only %d window%s of %g s in --duration %g s (3 are needed after the first; raise --duration or lower --window)",
                 pt->windows, pt->windows == 1 ? "" : "s", b->window_s, b->duration_s);
    else if (settled_by != 1)
        snprintf(pt->why, sizeof pt->why, "the last 3 windows disagree by %.0f%% (tolerance %.0f%%) %s", 100 * pt->spread,
                 100 * b->tolerance, settled_by == 2 ? "after --max-windows" : "at the end of --duration");
    pt->stable = pt->why[0] == 0;
}

/* Runs one point. 0 when it was measured (pt filled), -1 when the run did not finish (pt->error
 * says what it said; pt->exit_status is 2 when it found the set-up or the options wrong). */
static int run_point(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock,
                     struct point *pt)
{
    const char *tmpdir = getenv("TMPDIR");
    char outf[512], statsf[512];
    snprintf(outf, sizeof outf, "%s/annotate-bench-%d.csv", tmpdir && *tmpdir ? tmpdir : "/tmp", (int)getpid());
    snprintf(statsf, sizeof statsf, "%s/annotate-bench-%d.json", tmpdir && *tmpdir ? tmpdir : "/tmp", (int)getpid());
    unlink(statsf);
    /* After the Ctrl-C that ends a measurement, the images in flight get this long. */
    long drain_ms = b->limit ? 1000 : (long)fmin(1000, fmax(100, b->duration_s * 100));
    struct bench_argv *a = calloc(1, sizeof *a);
    if (!a || bench_child_argv(cfg, b, pt->strategy, pt->conc, url, outf, statsf, drain_ms, a)) {
        free(a);
        snprintf(pt->error, sizeof pt->error, "cannot make the run's command line");
        return -1;
    }
    int sfd[2], efd[2];
    if (pipe2(sfd, O_CLOEXEC)) {
        free(a);
        snprintf(pt->error, sizeof pt->error, "pipe: %s", strerror(errno));
        return -1;
    }
    if (pipe2(efd, O_CLOEXEC)) {
        close(sfd[0]);
        close(sfd[1]);
        free(a);
        snprintf(pt->error, sizeof pt->error, "pipe: %s", strerror(errno));
        return -1;
    }
    double mock0 = mock > 0 ? proc_cpu_s(mock) : 0, t0 = mono();
    pid_t pid = fork();
    if (pid == 0) {
        int fd = dup(sfd[1]); /* a copy without close-on-exec: the run inherits it */
        dup2(efd[1], STDERR_FILENO);
        char fdenv[48], ivenv[64];
        snprintf(fdenv, sizeof fdenv, IPC_BENCH_FD_ENV "=%d", fd);
        snprintf(ivenv, sizeof ivenv, IPC_BENCH_INTERVAL_ENV "=%g", b->window_s);
        putenv(fdenv);
        putenv(ivenv);
        execv(a->argv[0], (char **)a->argv);
        _exit(127);
    }
    close(sfd[1]);
    close(efd[1]);
    free(a);
    if (pid < 0) {
        close(sfd[0]);
        close(efd[0]);
        snprintf(pt->error, sizeof pt->error, "fork: %s", strerror(errno));
        return -1;
    }
    fcntl(sfd[0], F_SETFL, O_NONBLOCK);
    fcntl(efd[0], F_SETFL, O_NONBLOCK);

    static double rates[MAX_WINDOWS], rreq[MAX_WINDOWS], srates[MAX_WINDOWS][MAX_STAGE_COUNTS];
    static char lines[1 << 16], errs[8192];
    size_t llen = 0, elen = 0;
    lines[0] = errs[0] = 0;
    struct sample last = {0}, prev = {0}, s;
    int have_prev = 0, nw = 0, stopped = 0, settled_by = 0, reaped = 0, status = 0;
    int fds[2] = {sfd[0], efd[0]};
    double t_stop = b->limit ? 0 : t0 + b->duration_s, t_sig = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    for (;;) {
        double now = mono();
        if (!reaped && wait4(pid, &status, WNOHANG, &ru) == pid)
            reaped = 1;
        if (!stopped && !reaped && (bench_stop || (t_stop && now >= t_stop))) {
            pt->interrupted = bench_stop != 0;
            kill(pid, SIGINT);
            stopped = 1;
            t_sig = now;
        }
        if (stopped && !reaped && !pt->killed && now >= t_sig + (double)drain_ms / 1e3 + 2) {
            kill(pid, SIGKILL); /* it outlived its drain: what it sampled stands */
            pt->killed = 1;
        }
        if (!reaped) {
            struct pollfd pfd[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
            double until = t_stop && !stopped ? t_stop - now : 0.2;
            int ms = (int)(fmin(0.2, fmax(0.001, until)) * 1000);
            poll(pfd, 2, ms);
        }
        /* (after the run has ended, one last read of what it left in the pipes) */
        for (int k = 0; k < 2; k++) {
            if (fds[k] < 0)
                continue;
            int more = k == 0 ? read_some(fds[k], lines, sizeof lines, &llen) : read_some(fds[k], errs, sizeof errs, &elen);
            if (!more) {
                close(fds[k]);
                fds[k] = -1;
            }
        }
        char *line = lines, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = 0;
            if (parse_sample(line, &s) == 0) {
                last = s;
                pt->sampled = 1;
                if (!s.final && !stopped) {
                    /* window 0 (up to the first sample) is warm-up; what comes after the Ctrl-C
                     * (the drain) is no window either */
                    if (have_prev && s.t > prev.t && nw < MAX_WINDOWS) {
                        rates[nw] = (s.ok - prev.ok) / (s.t - prev.t);
                        rreq[nw] = (s.requests - prev.requests) / (s.t - prev.t);
                        for (int i = 0; i < s.n_stage_requests && i < prev.n_stage_requests; i++)
                            srates[nw][i] = (s.stage_requests[i] - prev.stage_requests[i]) / (s.t - prev.t);
                        nw++;
                        if (nw >= 3) {
                            double mx = fmax(fmax(rates[nw - 1], rates[nw - 2]), rates[nw - 3]);
                            double mn = fmin(fmin(rates[nw - 1], rates[nw - 2]), rates[nw - 3]);
                            double mean = (rates[nw - 1] + rates[nw - 2] + rates[nw - 3]) / 3;
                            pt->spread = mean > 0 ? (mx - mn) / mean : 0;
                            if (!b->limit && !stopped && !reaped &&
                                ((mean > 0 && pt->spread <= b->tolerance) || nw >= b->max_windows)) {
                                settled_by = mean > 0 && pt->spread <= b->tolerance ? 1 : 2;
                                kill(pid, SIGINT);
                                stopped = 1;
                                t_sig = mono();
                            }
                        }
                    }
                    prev = s;
                    have_prev = 1;
                }
            }
            line = nl + 1;
        }
        llen -= (size_t)(line - lines);
        memmove(lines, line, llen);
        lines[llen] = 0;
        if (reaped)
            break;
    }
    for (int k = 0; k < 2; k++)
        if (fds[k] >= 0)
            close(fds[k]);
    unlink(outf);
    /* The stages' limits as the run ended, when it ended by itself or within its drain. */
    pt->limits = NULL;
    FILE *sf = fopen(statsf, "r");
    if (sf) {
        char *txt = malloc(1 << 20);
        size_t l = txt ? fread(txt, 1, (1 << 20) - 1, sf) : 0;
        fclose(sf);
        cJSON *js = NULL;
        if (txt) {
            txt[l] = 0;
            js = cJSON_Parse(txt);
        }
        free(txt);
        pt->limits = cJSON_DetachItemFromObjectCaseSensitive(js, "limits");
        cJSON_Delete(js);
    }
    unlink(statsf);
    pt->wall_s = mono() - t0;
    pt->mock_cpu_s = mock > 0 ? proc_cpu_s(mock) - mock0 : -1;
    pt->tool_cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                     (double)ru.ru_stime.tv_usec / 1e6;
    pt->rss_kb = ru.ru_maxrss;
    pt->windows = nw;
    pt->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    int ok_end = WIFEXITED(status) ? (pt->exit_status == 0 || pt->exit_status == 1 || pt->exit_status == 130)
                                   : pt->killed && WTERMSIG(status) == SIGKILL;
    if (!ok_end) {
        char msg[400];
        last_message(errs, msg, sizeof msg);
        if (WIFSIGNALED(status))
            snprintf(pt->error, sizeof pt->error, "it died of signal %d%s%s", WTERMSIG(status), msg[0] ? ": " : "", msg);
        else if (msg[0])
            snprintf(pt->error, sizeof pt->error, "%s", msg);
        else
            snprintf(pt->error, sizeof pt->error, "it exited with status %d", pt->exit_status);
        return -1;
    }
    pt->ran_out = !stopped && !b->limit;
    pt->ok = last.ok;
    pt->failed = last.failed;
    pt->requests = last.requests;
    pt->retries = last.retries;
    pt->attempts = last.attempts;
    pt->req_p50 = last.req_p50;
    pt->req_p90 = last.req_p90;
    pt->req_p99 = last.req_p99;
    pt->req_max = last.req_max;
    pt->img_p50 = last.img_p50;
    pt->img_p99 = last.img_p99;
    pt->ntop = last.ntop;
    memcpy(pt->top, last.top, sizeof pt->top);
    pt->n_stages = last.n_stage_requests;
    for (int i = 0; i < pt->n_stages; i++) {
        pt->stage_requests[i] = last.stage_requests[i];
        pt->stage_attempts[i] = last.stage_attempts[i];
        pt->stage_p99[i] = last.stage_p99[i];
        pt->stage_mean[i] = last.stage_mean[i];
    }
    if (b->limit || nw < 3) {
        /* A fixed amount of work (or too short for windows): the whole run's rate. */
        pt->img_s = last.t > 0 ? last.ok / last.t : 0;
        pt->req_s = last.t > 0 ? last.requests / last.t : 0;
        for (int i = 0; i < pt->n_stages; i++)
            pt->stage_req_s[i] = last.t > 0 ? last.stage_requests[i] / last.t : 0;
    } else {
        pt->img_s = (rates[nw - 1] + rates[nw - 2] + rates[nw - 3]) / 3;
        pt->req_s = (rreq[nw - 1] + rreq[nw - 2] + rreq[nw - 3]) / 3;
        for (int i = 0; i < pt->n_stages; i++)
            pt->stage_req_s[i] = (srates[nw - 1][i] + srates[nw - 2][i] + srates[nw - 3][i]) / 3;
    }
    /* The bottleneck's bound: each endpoint of the mock serves --capacity requests per
     * --latency-ms; with the requests per image each stage made, the images/s the busiest
     * endpoint allows. The point's ok images/s as a share of it. */
    pt->bound = -1;
    double images = last.ok + last.failed;
    if (b->capacity > 0 && b->latency_ms > 0 && images > 0) {
        double per_s = (double)b->capacity * 1e3 / (double)b->latency_ms, best = -1;
        for (int i = 0; i < last.n_stage_requests; i++) {
            double count = last.stage_requests[i];
            if (count > 0 && (best < 0 || per_s / (count / images) < best))
                best = per_s / (count / images);
        }
        if (best > 0)
            pt->bound = pt->img_s / best;
    }
    verdict(b, pt, settled_by);
    return 0;
}

/* ---- what bench prints and writes ---- */

static void print_header(const struct config *cfg, const struct bench_opts *b, const char *url, long ncpu)
{
    char capdesc[96] = "";
    if (b->capacity > 0 && b->queue_max >= 0)
        snprintf(capdesc, sizeof capdesc, ", capacity %ld per endpoint, queue %ld", b->capacity, b->queue_max);
    else if (b->capacity > 0)
        snprintf(capdesc, sizeof capdesc, ", capacity %ld per endpoint", b->capacity);
    if (b->server_given)
        printf("annotate bench: %s, server at %s, %ld CPUs\n", cfg->dir, url, ncpu);
    else
        printf("annotate bench: %s, mock at %s, latency %ld ms (%s)%s%s, %ld CPUs\n", cfg->dir, url, b->latency_ms,
               b->latency_dist, b->trust_payload ? ", mock skips decoding" : "", capdesc, ncpu);
    printf("%-34s %6s %9s %9s %8s %8s %8s %8s %8s %8s", "strategy", "conc", "images/s", "req/s", "req p50", "req p90",
           "req p99", "req max", "img p99", "tool CPU");
    if (!b->server_given)
        printf(" %8s", "mock CPU");
    printf(" %8s %7s %6s %7s", "wall s", "RSS MB", "failed", "retry %");
    if (b->capacity > 0)
        printf(" %7s", "bound %");
    printf(" %s\n", "stable");
    fflush(stdout);
}

static void print_row(const struct bench_opts *b, const struct point *pt)
{
    char cs[16];
    snprintf(cs, sizeof cs, pt->conc == CONC_AUTO ? "auto" : "%d", pt->conc);
    printf("%-34s %6s %9.0f %9.0f %8.1f %8.1f %8.1f %8.1f %8.1f %7.0f%%", pt->strategy, cs, pt->img_s, pt->req_s,
           pt->req_p50, pt->req_p90, pt->req_p99, pt->req_max, pt->img_p99, 100 * pt->tool_cpu_s / pt->wall_s);
    if (!b->server_given)
        printf(" %7.0f%%", 100 * pt->mock_cpu_s / pt->wall_s);
    printf(" %8.1f %7.1f %6.0f %6.1f%%", pt->wall_s, (double)pt->rss_kb / 1024, pt->failed,
           pt->attempts > 0 ? 100 * pt->retries / pt->attempts : 0);
    if (b->capacity > 0) {
        char bound[16];
        snprintf(bound, sizeof bound, pt->bound < 0 ? "-" : "%.0f%%", 100 * pt->bound);
        printf(" %7s", bound);
    }
    printf(" %s%s\n", pt->stable ? "yes" : "NO: ", pt->stable ? "" : pt->why);
    if (pt->limits && pt->limits->child) { /* where each stage's limit ended */
        printf("%-34s   limits:", "");
        for (const cJSON *l = pt->limits->child; l; l = l->next) {
            const cJSON *mode = cJSON_GetObjectItemCaseSensitive(l, "mode");
            printf("%s %s %.0f%s (peak %.0f in flight)", l == pt->limits->child ? "" : ",", l->string,
                   jnum(l, "limit", NULL), cJSON_IsString(mode) && !strcmp(mode->valuestring, "auto") ? " auto" : "",
                   jnum(l, "peak_in_flight", NULL));
        }
        printf("\n");
    }
    fflush(stdout);
}

static cJSON *point_json(const struct bench_opts *b, const struct point *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "strategy", p->strategy);
    if (p->conc == CONC_AUTO)
        cJSON_AddStringToObject(o, "concurrency", "auto");
    else
        cJSON_AddNumberToObject(o, "concurrency", p->conc);
    cJSON_AddNumberToObject(o, "images_per_s", p->img_s);
    cJSON_AddNumberToObject(o, "requests_per_s", p->req_s);
    cJSON_AddNumberToObject(o, "request_p50_ms", p->req_p50);
    cJSON_AddNumberToObject(o, "request_p90_ms", p->req_p90);
    cJSON_AddNumberToObject(o, "request_p99_ms", p->req_p99);
    cJSON_AddNumberToObject(o, "request_max_ms", p->req_max);
    cJSON_AddNumberToObject(o, "image_p50_ms", p->img_p50);
    cJSON_AddNumberToObject(o, "image_p99_ms", p->img_p99);
    cJSON_AddNumberToObject(o, "tool_cpu_s", p->tool_cpu_s);
    if (!b->server_given)
        cJSON_AddNumberToObject(o, "mock_cpu_s", p->mock_cpu_s);
    cJSON_AddNumberToObject(o, "wall_s", p->wall_s);
    cJSON_AddNumberToObject(o, "peak_rss_kb", (double)p->rss_kb);
    cJSON_AddNumberToObject(o, "images_ok", p->ok);
    cJSON_AddNumberToObject(o, "images_failed", p->failed);
    cJSON_AddNumberToObject(o, "requests", p->requests);
    cJSON_AddNumberToObject(o, "retries", p->retries);
    cJSON_AddNumberToObject(o, "attempts", p->attempts);
    if (p->bound >= 0)
        cJSON_AddNumberToObject(o, "share_of_bound", p->bound);
    if (p->limits)
        cJSON_AddItemToObject(o, "limits", cJSON_Duplicate(p->limits, 1)); /* the report is rewritten per point */
    cJSON *errs = cJSON_AddArrayToObject(o, "errors");
    for (int i = 0; i < p->ntop; i++) {
        cJSON *e = cJSON_CreateObject();
        if (p->top[i].stage[0])
            cJSON_AddStringToObject(e, "stage", p->top[i].stage);
        else
            cJSON_AddNullToObject(e, "stage");
        cJSON_AddStringToObject(e, "reason", p->top[i].reason);
        cJSON_AddNumberToObject(e, "count", (double)p->top[i].count);
        cJSON_AddItemToArray(errs, e);
    }
    cJSON_AddNumberToObject(o, "windows", p->windows);
    cJSON_AddNumberToObject(o, "window_spread", p->spread);
    cJSON_AddBoolToObject(o, "stable", p->stable);
    if (!p->stable)
        cJSON_AddStringToObject(o, "unsettled", p->why);
    cJSON_AddBoolToObject(o, "ran_out_of_images", p->ran_out);
    return o;
}

/* The JSON report and the chart, of the points so far; complete once every point has run. */
static int write_outputs(const struct config *cfg, const struct bench_opts *b, const char *url, long ncpu,
                         struct point *pts, int np, int complete)
{
    cJSON *rep = cJSON_CreateObject();
    cJSON *mode = cJSON_AddObjectToObject(rep, "mode");
    cJSON_AddStringToObject(mode, "dir", cfg->dir);
    cJSON_AddStringToObject(mode, "server", b->server_given ? url : "mock-model-server (started by bench)");
    cJSON_AddStringToObject(mode, "url", url);
    if (!b->server_given) {
        cJSON_AddNumberToObject(mode, "latency_ms", (double)b->latency_ms);
        cJSON_AddStringToObject(mode, "latency_dist", b->latency_dist);
        cJSON_AddBoolToObject(mode, "mock_trust_payload", b->trust_payload);
        if (b->capacity > 0) {
            cJSON_AddNumberToObject(mode, "capacity", (double)b->capacity);
            if (b->queue_max >= 0)
                cJSON_AddNumberToObject(mode, "queue_max", (double)b->queue_max);
        }
    }
    cJSON_AddNumberToObject(mode, "cpus", (double)ncpu);
    cJSON_AddNumberToObject(mode, "window_s", b->window_s);
    cJSON_AddNumberToObject(mode, "tolerance", b->tolerance);
    if (b->limit)
        cJSON_AddNumberToObject(mode, "limit", (double)b->limit);
    else
        cJSON_AddNumberToObject(mode, "duration_s", b->duration_s);
    cJSON_AddBoolToObject(rep, "complete", complete);
    cJSON *arr = cJSON_AddArrayToObject(rep, "points");
    cJSON *bad = cJSON_AddArrayToObject(rep, "not_run");
    for (int i = 0; i < np; i++) {
        if (pts[i].error[0]) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "strategy", pts[i].strategy);
            if (pts[i].conc == CONC_AUTO)
                cJSON_AddStringToObject(o, "concurrency", "auto");
            else
                cJSON_AddNumberToObject(o, "concurrency", pts[i].conc);
            cJSON_AddStringToObject(o, "error", pts[i].error);
            cJSON_AddItemToArray(bad, o);
            continue;
        }
        cJSON_AddItemToArray(arr, point_json(b, &pts[i]));
    }
    char *txt = cJSON_Print(rep);
    cJSON_Delete(rep);
    int rc = 0;
    if (b->report && txt) {
        mkdirs_for(b->report);
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", b->report);
        FILE *f = fopen(tmp, "w");
        if (f && fputs(txt, f) >= 0 && fputc('\n', f) != EOF && fclose(f) == 0 && rename(tmp, b->report) == 0) {
            /* written whole, then renamed: a reader never sees half a report */
        } else {
            fprintf(stderr, "annotate bench: cannot write %s: %s\n", b->report, strerror(errno));
            rc = -1;
        }
    }
    free(txt);
    if (b->chart) {
        mkdirs_for(b->chart);
        struct point *ok = calloc((size_t)np + 1, sizeof *ok);
        int n = 0;
        for (int i = 0; ok && i < np; i++)
            if (!pts[i].error[0])
                ok[n++] = pts[i];
        if (ok)
            write_svg(b->chart, ok, n, b, url);
        free(ok);
    }
    return rc;
}

/* ---- --sweep: each stage's concurrency in turn, and the pipeline it recommends ----
 *
 * A stage is swept alone in a run of its own pipeline: the stage and the stages it needs (its
 * "when", "result_of", "each" and template references, and theirs), the later ones left out, so
 * that a slower stage after it cannot hold it back; those it needs run on "auto". Everything
 * else of the user's file (bodies, headers, timeouts, max_rps, defaults) is kept as written: the
 * run's pipeline is the user's JSON with stages removed and "concurrency" set. The stage takes
 * the values of --concurrency in turn (default 1, 2, 4, ... 256) until a point does not raise its
 * best requests/s by more than SWEEP_GROWTH, or is rejected (failed images, or retries of the
 * stage's attempts at SWEEP_MAX_RETRY or more), or its request p99 is over SWEEP_P99_CLIMB times
 * the sweep's lowest while its requests/s grew by less than SWEEP_P99_GROWTH. The knee is the
 * smallest value of an accepted point within SWEEP_KNEE of the best accepted one. A stage that
 * needs another cannot be driven faster than that one delivers: when its sweep stopped growing while its requests in flight (Little's law: its
 * requests/s times their mean time) averaged under SWEEP_BUSY of its limit, it was starved, not
 * saturated, and is said to be held back by the slowest (in images/s) of the stages it needs
 * (its own capacity was not reached). Its knee only just keeps up with that stage, and two
 * knees in a row lose twice, so what is recommended for it is the value it was starved at (no
 * retries, no climb of p99 there: its server had room). The bottleneck is the stage of the
 * lowest images/s that is not held back. */
#define SWEEP_GROWTH 0.05
#define SWEEP_MAX_RETRY 0.03
#define SWEEP_P99_CLIMB 4.0
#define SWEEP_P99_GROWTH 0.5 /* ... while its requests/s grew by less than this (a lone slow answer is no climb) */
#define SWEEP_KNEE 0.95
#define SWEEP_BUSY 0.7 /* a stage whose requests in flight average less than this share of its limit is starved */
enum { SWEEP_STOP_NONE, SWEEP_STOP_GROWTH, SWEEP_STOP_P99, SWEEP_STOP_REJECTED };
#define SWEEP_AUTO_SPARE 64 /* --concurrency (curl-multi) or --workers beyond the swept stage's, for the auto ones */

struct sweep_stage {
    int index;        /* in the user's pipeline */
    int sub;          /* in the run's pipeline (the last stage of it) */
    uint64_t keep;    /* the stages its runs have */
    int first, n;     /* its points in the sweep's array */
    int knee;         /* index of the knee's point, -1: none */
    int rec;          /* index of the point whose value is recommended: the knee, or for a starved
                       * stage the value it was starved at (its knee only just keeps up) */
    int best;         /* index of the best accepted point, -1: none */
    double bound_img_s; /* the most images/s of its accepted points */
    double busy;      /* its last point's requests in flight on average, as a share of its limit */
    int starved;      /* it stopped growing with its limit not kept busy */
    int held_back_by; /* starved: the slowest swept stage it needs; -1: none, -2: not known (annotate
                       * itself, or stages not swept) */
};

/* The stages s needs, and theirs, with s: a mask of the user's pipeline. */
static uint64_t sweep_closure(const struct pipeline *p, int s)
{
    uint64_t keep = 1ull << s;
    for (int i = s; i >= 0; i--)
        if (keep >> i & 1)
            keep |= p->stages[i].dep_mask;
    return keep;
}

/* Sets o's "concurrency" to n (STAGE_CONCURRENCY_AUTO: "auto"), where it was or at the end. */
static void set_concurrency(cJSON *o, int n)
{
    cJSON *v = n == STAGE_CONCURRENCY_AUTO ? cJSON_CreateString("auto") : cJSON_CreateNumber(n);
    if (cJSON_GetObjectItemCaseSensitive(o, "concurrency"))
        cJSON_ReplaceItemInObjectCaseSensitive(o, "concurrency", v);
    else
        cJSON_AddItemToObject(o, "concurrency", v);
}

/* The run's pipeline of a point: the user's document with only the stages of keep, stage s at
 * conc and the others on auto. NULL when out of memory. */
static char *sweep_pipeline(const cJSON *doc, uint64_t keep, int s, int conc)
{
    cJSON *d = cJSON_Duplicate(doc, 1);
    cJSON *stages = cJSON_GetObjectItemCaseSensitive(d, "stages");
    for (int i = cJSON_GetArraySize(stages) - 1; i >= 0; i--) {
        if (!(keep >> i & 1))
            cJSON_DeleteItemFromArray(stages, i);
        else
            set_concurrency(cJSON_GetArrayItem(stages, i), i == s ? conc : STAGE_CONCURRENCY_AUTO);
    }
    char *txt = d ? cJSON_Print(d) : NULL;
    cJSON_Delete(d);
    return txt;
}

static int write_file(const char *path, const char *txt)
{
    mkdirs_for(path);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f && fputs(txt, f) >= 0 && fputc('\n', f) != EOF && fclose(f) == 0 && rename(tmp, path) == 0)
        return 0;
    if (f)
        unlink(tmp);
    return -1;
}

/* What --sweep needs, checked before anything is started or sent. 0, or 2 with the reason on
 * stderr. */
static int sweep_check(const struct config *cfg, const struct bench_opts *b, int *concs, int *nc, uint64_t *which)
{
    const struct pipeline *p = cfg->pipeline;
    if (!b->sweep) {
        if (b->sweep_stages) {
            fprintf(stderr, "annotate bench: --sweep-stages is for --sweep; add --sweep\n");
            return 2;
        }
        return 0;
    }
    if (strchr(b->strategies, ',') && strcmp(b->strategies, "serial,threads,processes,curl-multi")) {
        fprintf(stderr, "annotate bench: --sweep measures one strategy; give one with --strategies (default curl-multi)\n");
        return 2;
    }
    if (!strcmp(b->strategies, "serial")) {
        fprintf(stderr, "annotate bench: --sweep varies a stage's concurrency; serial has none: give --strategies "
                        "curl-multi, threads or processes\n");
        return 2;
    }
    *nc = parse_concurrency(b->concurrency ? b->concurrency : "1-256", concs, 64);
    if (*nc <= 0) {
        fprintf(stderr, "annotate bench: --concurrency %s: give a list (1,2,4,8) or a range (1-256)\n", b->concurrency);
        return 2;
    }
    for (int i = 0; i < *nc; i++)
        if (concs[i] == CONC_AUTO) {
            fprintf(stderr, "annotate bench: --sweep gives the swept stage fixed limits: leave auto out of --concurrency\n");
            return 2;
        }
    if (!p || p->n < 1 || p->n > MAX_STAGE_COUNTS) {
        fprintf(stderr, "annotate bench: --sweep: the pipeline has no stage to sweep\n");
        return 2;
    }
    cJSON *doc = cJSON_ParseWithLength(p->text, p->text_len);
    int ok = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "stages")) == p->n;
    cJSON_Delete(doc);
    if (!ok) {
        fprintf(stderr, "annotate bench: --sweep: %s does not read back as JSON with %d stages (a bug)\n", p->source, p->n);
        return 2;
    }
    *which = 0;
    if (!b->sweep_stages) {
        *which = p->n == 64 ? ~0ull : (1ull << p->n) - 1;
        return 0;
    }
    char *copy = strdup(b->sweep_stages), *save = NULL;
    if (!copy) {
        fprintf(stderr, "annotate bench: out of memory\n");
        return 2;
    }
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int i = 0; i < p->n; i++)
            if (!strcmp(p->stages[i].name, t))
                found = i;
        if (found < 0) {
            char names[1024] = "";
            for (int i = 0; i < p->n; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", p->stages[i].name);
            char buf[256];
            fprintf(stderr, "annotate bench: --sweep-stages: %s has no stage \"%s\" (its stages: %s)\n", p->source,
                    pipeline_printable(t, buf, sizeof buf), names);
            rc = 2;
        } else
            *which |= 1ull << found;
    }
    free(copy);
    if (!rc && !*which) {
        fprintf(stderr, "annotate bench: --sweep-stages: give stage names, e.g. --sweep-stages %s\n", p->stages[0].name);
        rc = 2;
    }
    return rc;
}

static double pt_retry(const struct point *pt, int sub)
{
    double a = pt->stage_attempts[sub], r = pt->stage_requests[sub];
    return a > 0 && a > r ? (a - r) / a : 0;
}

/* The stage's requests in flight on average (Little's law). */
static double pt_in_flight(const struct point *pt, int sub)
{
    return pt->stage_req_s[sub] * pt->stage_mean[sub] / 1e3;
}

static void sweep_print_stage_header(const struct pipeline *p, const struct sweep_stage *ss)
{
    char with[1024] = "", without[1024] = "";
    for (int i = 0; i < p->n; i++) {
        if (i == ss->index)
            continue;
        char *into = ss->keep >> i & 1 ? with : without;
        size_t l = strlen(into);
        snprintf(into + l, 1024 - l, "%s%s", l ? ", " : "", p->stages[i].name);
    }
    printf("\nstage %s (%s%s%s%s%s)\n", p->stages[ss->index].name, with[0] ? "with " : "alone", with, with[0] ? " on auto" : "",
           without[0] ? "; not run, as it does not need them: " : "", without);
    printf("  %6s %9s %9s %8s %9s %9s %6s\n", "conc", "req/s", "images/s", "retry %", "p99 ms", "in flight", "failed");
    fflush(stdout);
}

static void sweep_print_point(const struct point *pt, int sub)
{
    char note[600];
    if (pt->rejected[0])
        snprintf(note, sizeof note, "rejected: %s; stop", pt->rejected);
    else
        snprintf(note, sizeof note, "%s%s", pt->stop[0] ? "stop: " : "", pt->stop);
    printf("  %6d %9.1f %9.1f %7.1f%% %9.1f %9.1f %6.0f  %s%s%s\n", pt->sweep_conc, pt->stage_req_s[sub], pt->img_s,
           100 * pt_retry(pt, sub), pt->stage_p99[sub], pt_in_flight(pt, sub), pt->failed, note,
           pt->stable ? "" : note[0] ? " (" : "(", pt->stable ? "" : "unsettled)");
    fflush(stdout);
}

static cJSON *sweep_point_json(const struct point *pt, int sub)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "concurrency", pt->sweep_conc);
    cJSON_AddNumberToObject(o, "stage_requests_per_s", pt->stage_req_s[sub]);
    cJSON_AddNumberToObject(o, "images_per_s", pt->img_s);
    cJSON_AddNumberToObject(o, "stage_retry_share", pt_retry(pt, sub));
    cJSON_AddNumberToObject(o, "stage_request_p99_ms", pt->stage_p99[sub]);
    cJSON_AddNumberToObject(o, "stage_request_mean_ms", pt->stage_mean[sub]);
    cJSON_AddNumberToObject(o, "stage_in_flight", pt_in_flight(pt, sub));
    cJSON_AddNumberToObject(o, "images_ok", pt->ok);
    cJSON_AddNumberToObject(o, "images_failed", pt->failed);
    cJSON_AddNumberToObject(o, "wall_s", pt->wall_s);
    cJSON_AddBoolToObject(o, "stable", pt->stable);
    if (!pt->stable)
        cJSON_AddStringToObject(o, "unsettled", pt->why);
    if (pt->rejected[0])
        cJSON_AddStringToObject(o, "rejected", pt->rejected);
    if (pt->stop[0])
        cJSON_AddStringToObject(o, "stop", pt->stop);
    if (pt->error[0])
        cJSON_AddStringToObject(o, "error", pt->error);
    if (pt->limits)
        cJSON_AddItemToObject(o, "limits", cJSON_Duplicate(pt->limits, 1));
    return o;
}

/* The report of the sweep so far (and, once complete, its outcome). */
static void sweep_report(const struct config *cfg, const struct bench_opts *b, const char *url, const char *strategy,
                         struct sweep_stage *ss, int nss, struct point *pts, int complete, int bottleneck, long total)
{
    if (!b->report)
        return;
    const struct pipeline *p = cfg->pipeline;
    cJSON *rep = cJSON_CreateObject();
    cJSON *mode = cJSON_AddObjectToObject(rep, "mode");
    cJSON_AddStringToObject(mode, "dir", cfg->dir);
    cJSON_AddStringToObject(mode, "server", b->server_given ? url : "mock-model-server (started by bench)");
    cJSON_AddStringToObject(mode, "url", url);
    cJSON_AddStringToObject(mode, "pipeline", p->source);
    cJSON_AddStringToObject(mode, "strategy", strategy);
    if (b->limit)
        cJSON_AddNumberToObject(mode, "limit", (double)b->limit);
    else
        cJSON_AddNumberToObject(mode, "duration_s", b->duration_s);
    cJSON_AddNumberToObject(mode, "window_s", b->window_s);
    cJSON_AddBoolToObject(rep, "complete", complete);
    cJSON *sw = cJSON_AddObjectToObject(rep, "sweep");
    cJSON *arr = cJSON_AddArrayToObject(sw, "stages");
    for (int k = 0; k < nss; k++) {
        const struct sweep_stage *s = &ss[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "stage", p->stages[s->index].name);
        cJSON *pa = cJSON_AddArrayToObject(o, "points");
        for (int i = 0; i < s->n; i++)
            cJSON_AddItemToArray(pa, sweep_point_json(&pts[s->first + i], s->sub));
        if (s->knee >= 0) {
            cJSON_AddNumberToObject(o, "knee", pts[s->knee].sweep_conc);
            cJSON_AddNumberToObject(o, "knee_requests_per_s", pts[s->knee].stage_req_s[s->sub]);
            cJSON_AddNumberToObject(o, "recommended", pts[s->rec].sweep_conc);
            cJSON_AddNumberToObject(o, "best_requests_per_s", pts[s->best].stage_req_s[s->sub]);
            cJSON_AddNumberToObject(o, "images_per_s", s->bound_img_s);
        } else
            cJSON_AddNullToObject(o, "knee");
        if (s->held_back_by >= 0)
            cJSON_AddStringToObject(o, "held_back_by", p->stages[s->held_back_by].name);
        else if (s->held_back_by == -2)
            cJSON_AddStringToObject(o, "held_back_by", s->keep == 1ull << s->index ? "annotate" : "stages not swept");
        cJSON_AddBoolToObject(o, "starved", s->starved);
        cJSON_AddNumberToObject(o, "busy_share", s->busy);
        cJSON_AddItemToArray(arr, o);
    }
    if (bottleneck >= 0)
        cJSON_AddStringToObject(sw, "bottleneck", p->stages[bottleneck].name);
    if (complete) {
        cJSON_AddNumberToObject(sw, "concurrency", (double)total);
        if (b->recommend)
            cJSON_AddStringToObject(sw, "recommended_pipeline", b->recommend);
    }
    char *txt = cJSON_Print(rep);
    cJSON_Delete(rep);
    if (!txt || write_file(b->report, txt))
        fprintf(stderr, "annotate bench: cannot write %s: %s\n", b->report, strerror(errno));
    free(txt);
}

static const char *held_name(const struct pipeline *p, const struct sweep_stage *s)
{
    if (s->held_back_by >= 0)
        return p->stages[s->held_back_by].name;
    return s->keep == 1ull << s->index ? "annotate itself: it needs no other stage" : "the stages it needs, not swept";
}

static int sweep_main(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock, const int *concs,
                      int nc, uint64_t which)
{
    const struct pipeline *p = cfg->pipeline;
    const char *strategy = strchr(b->strategies, ',') ? "curl-multi" : b->strategies;
    int blocking = !strstr(strategy, "curl-multi");
    cJSON *doc = cJSON_ParseWithLength(p->text, p->text_len);
    struct sweep_stage ss[MAX_STAGE_COUNTS];
    int nss = 0;
    for (int i = 0; i < p->n; i++)
        if (which >> i & 1) {
            struct sweep_stage *s = &ss[nss++];
            memset(s, 0, sizeof *s);
            s->index = i;
            s->keep = sweep_closure(p, i);
            s->sub = 0;
            for (int j = 0; j < i; j++)
                s->sub += (int)(s->keep >> j & 1);
            s->knee = s->best = s->rec = s->held_back_by = -1;
        }
    struct point *pts = calloc((size_t)nss * (size_t)nc + 1, sizeof *pts);
    const char *tmpdir = getenv("TMPDIR");
    char pfile[512];
    snprintf(pfile, sizeof pfile, "%s/annotate-sweep-%d.json", tmpdir && *tmpdir ? tmpdir : "/tmp", (int)getpid());
    struct config run = *cfg;
    run.config_file = pfile;
    int np = 0, rc = 0;
    char cdesc[64];
    if (b->concurrency)
        snprintf(cdesc, sizeof cdesc, "%s", b->concurrency);
    else
        snprintf(cdesc, sizeof cdesc, "1-256 doubling");
    printf("annotate bench --sweep: %s, %s at %s, pipeline %s, strategy %s\n", cfg->dir,
           b->server_given ? "server" : "mock", url, p->source, strategy);
    printf("each stage in turn at concurrency %s, until a point adds %.0f%% or less to its best requests/s, is rejected "
           "(failed images, retries %.0f%% or more of the stage's attempts) or its p99 is over %.0fx its lowest "
           "for less than %.0f%% more; the knee: the smallest within %.0f%% of the best\n",
           cdesc, 100 * SWEEP_GROWTH, 100 * SWEEP_MAX_RETRY, SWEEP_P99_CLIMB, 100 * SWEEP_P99_GROWTH,
           100 * (1 - SWEEP_KNEE));
    for (int k = 0; k < nss && !bench_stop && rc != 2 && pts; k++) {
        struct sweep_stage *s = &ss[k];
        s->first = np;
        sweep_print_stage_header(p, s);
        double best = 0, low_p99 = 0;
        for (int c = 0; c < nc && !bench_stop; c++) {
            struct point *pt = &pts[np++];
            s->n++;
            pt->strategy = strategy;
            pt->sweep_stage = s->index;
            pt->sweep_conc = concs[c];
            /* the run's total: the swept stage's limit and room for the auto ones */
            pt->conc = concs[c] + (blocking ? SWEEP_AUTO_SPARE : LIMIT_AUTO_TOTAL);
            if (pt->conc > 100000)
                pt->conc = 100000;
            char *txt = sweep_pipeline(doc, s->keep, s->index, concs[c]);
            if (!txt || write_file(pfile, txt)) {
                free(txt);
                fprintf(stderr, "annotate bench: cannot write the run's pipeline %s: %s\n", pfile, strerror(errno));
                rc = 2;
                break;
            }
            free(txt);
            int r = run_point(&run, b, url, mock, pt);
            if (r) {
                fprintf(stderr, "annotate bench: the run of %s at %d did not finish: %s\n", p->stages[s->index].name,
                        concs[c], pt->error);
                snprintf(pt->rejected, sizeof pt->rejected, "the run did not finish");
                snprintf(pt->stop, sizeof pt->stop, "the run did not finish");
                if (pt->exit_status == 2)
                    rc = 2; /* the set-up is wrong: every other point would say the same */
                else if (rc == 0)
                    rc = 1;
                break;
            }
            int sub = s->sub;
            double thr = sub < pt->n_stages ? pt->stage_req_s[sub] : 0, retry = pt_retry(pt, sub);
            char label[ERRTALLY_STAGE + ERRTALLY_REASON + 4] = "";
            if (pt->ntop)
                errtally_label(&pt->top[0], label, sizeof label);
            if (pt->interrupted)
                snprintf(pt->rejected, sizeof pt->rejected, "stopped by a signal");
            else if (pt->failed > 0)
                snprintf(pt->rejected, sizeof pt->rejected, "%.0f images failed (%s)", pt->failed, label[0] ? label : "?");
            else if (retry >= SWEEP_MAX_RETRY)
                snprintf(pt->rejected, sizeof pt->rejected, "retries %.1f%% of the stage's attempts (under %.0f%% wanted)",
                         100 * retry, 100 * SWEEP_MAX_RETRY);
            else if (thr <= 0)
                snprintf(pt->rejected, sizeof pt->rejected, "no request of the stage completed");
            if (pt->rejected[0]) {
                snprintf(pt->stop, sizeof pt->stop, "rejected");
                pt->stop_kind = SWEEP_STOP_REJECTED;
            } else if (low_p99 > 0 && pt->stage_p99[sub] > SWEEP_P99_CLIMB * low_p99 && thr < best * (1 + SWEEP_P99_GROWTH)) {
                snprintf(pt->stop, sizeof pt->stop, "p99 %.0f ms is over %.0fx the lowest (%.0f ms), for %+.0f%% req/s",
                         pt->stage_p99[sub], SWEEP_P99_CLIMB, low_p99, 100 * (thr / best - 1));
                pt->stop_kind = SWEEP_STOP_P99;
            } else if (best > 0 && thr <= best * (1 + SWEEP_GROWTH)) {
                snprintf(pt->stop, sizeof pt->stop, "%+.1f%% on the best so far (%.1f req/s at %d)",
                         100 * (thr / best - 1), best, pts[s->best].sweep_conc);
                pt->stop_kind = SWEEP_STOP_GROWTH;
            }
            if (!pt->rejected[0]) {
                if (thr > best) {
                    best = thr;
                    s->best = np - 1;
                }
                if (pt->stage_p99[sub] > 0 && (low_p99 == 0 || pt->stage_p99[sub] < low_p99))
                    low_p99 = pt->stage_p99[sub];
                if (pt->img_s > s->bound_img_s)
                    s->bound_img_s = pt->img_s;
            }
            sweep_print_point(pt, sub);
            sweep_report(cfg, b, url, strategy, ss, k + 1, pts, 0, -1, 0);
            if (pt->stop[0] || pt->interrupted)
                break;
        }
        /* the knee: the smallest accepted value within SWEEP_KNEE of the best */
        for (int i = 0; i < s->n && s->best >= 0; i++) {
            const struct point *pt = &pts[s->first + i];
            if (!pt->rejected[0] && pt->stage_req_s[s->sub] >= SWEEP_KNEE * best) {
                s->knee = s->first + i;
                break;
            }
        }
        if (s->knee >= 0)
            printf("  knee: %d (%.1f req/s, %.0f%% of the best: %.1f req/s at %d; %.1f images/s)\n",
                   pts[s->knee].sweep_conc, pts[s->knee].stage_req_s[s->sub],
                   100 * pts[s->knee].stage_req_s[s->sub] / best, best, pts[s->best].sweep_conc, s->bound_img_s);
        else
            printf("  no knee: no point was accepted (the stage stays on auto in the recommendation)\n");
        if (s->best >= 0 && s->best == s->first + s->n - 1 && !pts[s->best].stop[0] && s->n == nc)
            printf("  (still growing at %d, the last value of --concurrency: give larger ones)\n", pts[s->best].sweep_conc);
        if (s->n > 0) {
            const struct point *last = &pts[s->first + s->n - 1];
            s->busy = last->sweep_conc > 0 ? pt_in_flight(last, s->sub) / last->sweep_conc : 0;
            s->starved = s->knee >= 0 && last->stop_kind == SWEEP_STOP_GROWTH && s->busy < SWEEP_BUSY;
            s->rec = s->starved ? s->first + s->n - 1 : s->knee;
            if (s->starved)
                printf("  it stopped growing with %.1f requests in flight on average, %.0f%% of its limit of %d: it was "
                       "not given more work (starved), its server was not the limit; recommended: %d, as its knee only "
                       "just keeps up with what it is given\n",
                       pt_in_flight(last, s->sub), 100 * s->busy, last->sweep_conc, last->sweep_conc);
        }
        fflush(stdout);
    }
    unlink(pfile);

    /* held back, the bottleneck, the recommendation */
    int bottleneck = -1, done = !bench_stop && rc != 2;
    for (int k = 0; k < nss; k++) {
        struct sweep_stage *s = &ss[k];
        if (!s->starved)
            continue;
        /* the slowest of the stages it needs that were swept and not starved themselves */
        double lowest = -1;
        s->held_back_by = -2;
        for (int j = 0; j < nss; j++) {
            const struct sweep_stage *d = &ss[j];
            if (d->index != s->index && (s->keep >> d->index & 1) && d->knee >= 0 && !d->starved &&
                (lowest < 0 || d->bound_img_s < lowest)) {
                lowest = d->bound_img_s;
                s->held_back_by = d->index;
            }
        }
    }
    for (int k = 0; k < nss; k++)
        if (ss[k].knee >= 0 && !ss[k].starved &&
            (bottleneck < 0 || ss[k].bound_img_s < ss[bottleneck].bound_img_s))
            bottleneck = k;
    cJSON *recd = cJSON_Duplicate(doc, 1);
    cJSON *rstages = cJSON_GetObjectItemCaseSensitive(recd, "stages");
    long total = 0;
    int unbounded = 0;
    if (done) {
        printf("\nrecommended:");
        for (int i = 0; i < p->n; i++) {
            int k = -1;
            for (int j = 0; j < nss; j++)
                if (ss[j].index == i)
                    k = j;
            cJSON *so = cJSON_GetArrayItem(rstages, i);
            if (k >= 0) {
                int v = ss[k].rec >= 0 ? pts[ss[k].rec].sweep_conc : STAGE_CONCURRENCY_AUTO;
                set_concurrency(so, v);
            }
            const cJSON *cv = cJSON_GetObjectItemCaseSensitive(so, "concurrency");
            if (!cv) {
                const cJSON *dflt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(recd, "defaults"),
                                                                     "concurrency");
                cv = dflt;
            }
            char v[32];
            if (cJSON_IsNumber(cv)) {
                total += (long)cv->valuedouble;
                snprintf(v, sizeof v, "%d", cv->valueint);
            } else {
                unbounded++;
                snprintf(v, sizeof v, "%s", cJSON_IsString(cv) ? cv->valuestring : "no limit");
            }
            printf("%s %s %s%s", i ? "," : "", p->stages[i].name, v, k < 0 ? " (not swept)" : "");
            if (k >= 0 && ss[k].starved)
                printf(" (held back by %s)", held_name(p, &ss[k]));
        }
        printf("\n");
        total += (long)unbounded * SWEEP_AUTO_SPARE;
        if (bottleneck < 0)
            printf("bottleneck: none found (no swept stage had a knee without being held back)\n");
        if (bottleneck >= 0) {
            const struct sweep_stage *s = &ss[bottleneck];
            printf("bottleneck: %s, %.1f images/s at its best (%.1f req/s): the lowest of the stages not held back\n",
                   p->stages[s->index].name, s->bound_img_s, pts[s->best].stage_req_s[s->sub]);
        }
        int held = 0;
        for (int k = 0; k < nss; k++)
            held += ss[k].starved;
        if (held) {
            printf("held back:");
            for (int k = 0, n = 0; k < nss; k++)
                if (ss[k].starved)
                    printf("%s %s (by %s)", n++ ? "," : "", p->stages[ss[k].index].name, held_name(p, &ss[k]));
            printf(": %s could not be driven past what %s given, so %s own capacity was not reached; the value %s "
                   "starved at is recommended (sweep %s again once what holds %s back is faster)\n",
                   held > 1 ? "they" : "it", held > 1 ? "they were" : "it was", held > 1 ? "their" : "its",
                   held > 1 ? "they were" : "it was", held > 1 ? "them" : "it", held > 1 ? "them" : "it");
        }
        printf("suggested %s %ld (the sum of the stages' limits%s)\n", blocking ? "--workers" : "--concurrency", total,
               unbounded ? ", and 64 for each stage without a fixed one" : "");
        char *txt = cJSON_Print(recd);
        if (!txt || !b->recommend || write_file(b->recommend, txt)) {
            fprintf(stderr, "annotate bench: cannot write %s: %s\n", b->recommend ? b->recommend : "(none)",
                    strerror(errno));
            rc = 2;
        } else {
            char how[160];
            if (blocking)
                snprintf(how, sizeof how, "--strategy %s --workers %ld", strategy, total);
            else
                snprintf(how, sizeof how, "--concurrency %ld", total);
            for (char *c = how; *c; c++)
                if (*c == '+')
                    *c = ','; /* a per-stage strategy, as a run spells it */
            printf("recommended pipeline: %s (annotate %s%s%s --config %s %s)\n%s\n", b->recommend, cfg->dir,
                   b->server_given ? " --server " : "", b->server_given ? url : "", b->recommend, how, txt);
        }
        free(txt);
        for (int k = 0; k < nss; k++)
            if (ss[k].knee < 0 && rc == 0)
                rc = 1;
    }
    sweep_report(cfg, b, url, strategy, ss, nss, pts, done, bottleneck >= 0 ? ss[bottleneck].index : -1, total);
    if (b->report)
        printf("report: %s%s\n", b->report, done ? "" : " (the points that finished)");
    cJSON_Delete(recd);
    cJSON_Delete(doc);
    for (int i = 0; i < np; i++)
        cJSON_Delete(pts[i].limits);
    free(pts);
    if (bench_stop && rc != 2)
        rc = 130;
    return rc;
}

int bench_main(struct config *cfg, struct bench_opts *b)
{
    char url[4096], exe[4096], mockbin[4096];
    pid_t mock = -1;
    int sweep_concs[64], sweep_nc = 0;
    uint64_t sweep_which = 0;
    int bad = sweep_check(cfg, b, sweep_concs, &sweep_nc, &sweep_which); /* before anything is sent */
    if (bad)
        return bad;
    if (b->server_given) {
        /* What only the mock bench starts can do: refused rather than silently ignored. */
        const char *mock_only = b->latency_ms ? "--latency-ms"
                                : strcmp(b->latency_dist, "fixed") ? "--latency-dist"
                                : b->trust_payload ? "--trust-payload"
                                : b->capacity ? "--capacity"
                                : b->queue_max >= 0 ? "--queue-max"
                                : b->mock_bin ? "--mock"
                                              : NULL;
        if (mock_only) {
            fprintf(stderr, "annotate bench: %s is for the mock server bench starts; with --server there is none: "
                            "leave %s out\n", mock_only, mock_only);
            return 2;
        }
        snprintf(url, sizeof url, "%s", cfg->server);
    } else {
        if (b->mock_bin) {
            snprintf(mockbin, sizeof mockbin, "%s", b->mock_bin);
        } else {
            if (self_exe(exe, sizeof exe))
                return 2;
            snprintf(mockbin, sizeof mockbin, "%s/mock-model-server", dirname(exe));
        }
        char batch[128];
        batch_endpoints(cfg->pipeline, batch, sizeof batch);
        mock = start_mock(mockbin, b, batch, url, sizeof url);
        if (mock < 0) {
            fprintf(stderr, "annotate bench: cannot start the mock model server %s (give its path with --mock)\n", mockbin);
            return 2;
        }
    }
    if (b->sweep) {
        struct sigaction sa = {0}, old_int, old_term;
        sa.sa_handler = on_bench_signal;
        sigemptyset(&sa.sa_mask);
        bench_stop = 0;
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        int rc = sweep_main(cfg, b, url, mock, sweep_concs, sweep_nc, sweep_which);
        if (mock > 0) {
            kill(mock, SIGTERM);
            waitpid(mock, NULL, 0);
        }
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        return rc;
    }
    int concs[64];
    int nc = parse_concurrency(b->concurrency ? b->concurrency : "1,16,64,256", concs, 64);
    if (nc <= 0) {
        fprintf(stderr, "annotate bench: --concurrency %s: give a list (1,16,64) or a range (1-256)\n", b->concurrency);
        if (mock > 0) {
            kill(mock, SIGTERM);
            waitpid(mock, NULL, 0);
        }
        return 2;
    }
    b->auto_workers = 0;
    for (int c = 0; c < nc; c++)
        if (concs[c] > b->auto_workers)
            b->auto_workers = concs[c];
    if (b->auto_workers == 0)
        b->auto_workers = 64; /* a list of auto alone */
    char *strategies = strdup(b->strategies), *save = NULL;
    const char *names[16];
    int nn = 0;
    for (char *t = strtok_r(strategies, ",", &save); t && nn < 16; t = strtok_r(NULL, ",", &save))
        names[nn++] = t;
    struct point *pts = calloc((size_t)nn * (size_t)nc + 1, sizeof *pts);
    int np = 0, rc = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_bench_signal;
    sigemptyset(&sa.sa_mask);
    bench_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    print_header(cfg, b, url, ncpu);
    for (int s = 0; s < nn && !bench_stop && rc != 2; s++) {
        for (int c = 0; c < nc && !bench_stop; c++) {
            if (!strcmp(names[s], "serial") && c > 0)
                break; /* serial has no concurrency to vary */
            struct point *pt = &pts[np++];
            pt->strategy = names[s];
            pt->conc = strcmp(names[s], "serial") ? concs[c] : 1;
            if (run_point(cfg, b, url, mock, pt)) {
                fprintf(stderr, "annotate bench: the %s run at %d did not finish: %s\n", pt->strategy, pt->conc,
                        pt->error);
                if (pt->exit_status == 2) {
                    /* the set-up (or an option) is wrong: every other point would say the same */
                    rc = 2;
                    break;
                }
                rc = 1;
            } else {
                print_row(b, pt);
                if (pt->failed > 0 && rc == 0)
                    rc = 1;
                if (pt->interrupted)
                    bench_stop = 1;
            }
            write_outputs(cfg, b, url, ncpu, pts, np, 0);
        }
    }
    printf("(images/s counts ok images only; CPU is a share of one core over the point's wall time; latencies in ms; "
           "the tool's CPU includes its worker processes%s)\n",
           b->server_given ? "; the server's CPU is not measured" : "");
    if (mock > 0) {
        kill(mock, SIGTERM);
        waitpid(mock, NULL, 0);
    }
    int complete = !bench_stop && rc != 2;
    if (write_outputs(cfg, b, url, ncpu, pts, np, complete))
        rc = 2;
    if (b->report)
        printf("report: %s%s\n", b->report, complete ? "" : " (the points that finished)");
    if (b->chart)
        printf("chart:  %s\n", b->chart);
    if (bench_stop && rc != 2)
        rc = 130;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    for (int i = 0; i < np; i++)
        cJSON_Delete(pts[i].limits);
    free(pts);
    free(strategies);
    return rc;
}

void bench_opts_free(struct bench_opts *b)
{
    free(b->headers);
    b->headers = NULL;
    b->n_headers = 0;
}

/* ---- the child's side of the sample channel ---- */

struct bench_sampler {
    struct stats *st;
    int fd;
    double interval, t0;
    pthread_t tid;
    atomic_int stop;
};

static void hist_ms(cJSON *o, const char *name, const struct hist *h, int all)
{
    cJSON *x = cJSON_AddObjectToObject(o, name);
    cJSON_AddNumberToObject(x, "p50", (double)hist_quantile(h, 0.50) / 1e3);
    if (all)
        cJSON_AddNumberToObject(x, "p90", (double)hist_quantile(h, 0.90) / 1e3);
    cJSON_AddNumberToObject(x, "p99", (double)hist_quantile(h, 0.99) / 1e3);
    if (all)
        cJSON_AddNumberToObject(x, "max", (double)atomic_load(&h->max_us) / 1e3);
}

/* One line of the channel: {"t", "ok", "failed", "requests", "retries", "attempts", "stage_requests",
 * "stage_attempts", "stage_p99_ms", "stage_mean_ms" (one number per stage), "request_ms": {p50, p90,
 * p99, max}, "image_ms": {p50, p99}, "errors": [{stage, reason, count}] (the TOP_ERRORS most
 * common), "final": true on the last}. One writer (this thread), read by lines. */
static void send_sample(struct bench_sampler *s, int final)
{
    struct stats *st = s->st;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "t", now_s() - s->t0);
    cJSON_AddNumberToObject(o, "ok", (double)atomic_load(&st->ok));
    cJSON_AddNumberToObject(o, "failed", (double)atomic_load(&st->failed));
    cJSON_AddNumberToObject(o, "requests", (double)atomic_load(&st->requests));
    cJSON_AddNumberToObject(o, "retries", (double)atomic_load(&st->retries));
    cJSON_AddNumberToObject(o, "attempts", (double)atomic_load(&st->attempts));
    cJSON *sr = cJSON_AddArrayToObject(o, "stage_requests");
    for (int i = 0; i < st->n_stages && i < MAX_STAGE_COUNTS; i++)
        cJSON_AddItemToArray(sr, cJSON_CreateNumber((double)atomic_load(&st->stage_us[i].count)));
    cJSON *sa = cJSON_AddArrayToObject(o, "stage_attempts");
    for (int i = 0; i < st->n_stages && i < MAX_STAGE_COUNTS; i++)
        cJSON_AddItemToArray(sa, cJSON_CreateNumber((double)atomic_load(&st->stage_attempts[i])));
    cJSON *sp = cJSON_AddArrayToObject(o, "stage_p99_ms");
    for (int i = 0; i < st->n_stages && i < MAX_STAGE_COUNTS; i++)
        cJSON_AddItemToArray(sp, cJSON_CreateNumber(round((double)hist_quantile(&st->stage_us[i], 0.99) / 10) / 100));
    cJSON *sm = cJSON_AddArrayToObject(o, "stage_mean_ms");
    for (int i = 0; i < st->n_stages && i < MAX_STAGE_COUNTS; i++) {
        uint64_t n = atomic_load(&st->stage_us[i].count);
        cJSON_AddItemToArray(sm, cJSON_CreateNumber(n ? round((double)atomic_load(&st->stage_us[i].sum_us) / (double)n / 10) / 100
                                                      : 0)); /* ms, to 10 us: the line stays short */
    }
    hist_ms(o, "request_ms", &st->request_us, 1);
    hist_ms(o, "image_ms", &st->image_us, 0);
    struct errtally_entry top[TOP_ERRORS];
    int n = errtally_top(st->errors, top, TOP_ERRORS, NULL, NULL);
    cJSON *errs = cJSON_AddArrayToObject(o, "errors");
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "stage", top[i].stage);
        cJSON_AddStringToObject(e, "reason", top[i].reason);
        cJSON_AddNumberToObject(e, "count", (double)top[i].count);
        cJSON_AddItemToArray(errs, e);
    }
    if (final)
        cJSON_AddTrueToObject(o, "final");
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!txt)
        return;
    size_t len = strlen(txt);
    txt[len] = '\n'; /* (replaces the NUL: written by length) */
    if (write(s->fd, txt, len + 1) < 0 && !final)
        atomic_store(&s->stop, 1); /* bench has gone */
    free(txt);
}

static void *sampler_main(void *arg)
{
    struct bench_sampler *s = arg;
    double next = s->t0 + s->interval;
    while (!atomic_load(&s->stop)) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        double t = now_s();
        if (t < next)
            continue;
        next += s->interval;
        send_sample(s, 0);
    }
    return NULL;
}

struct bench_sampler *bench_sampler_start(struct stats *st)
{
    const char *fd = getenv(IPC_BENCH_FD_ENV), *iv = getenv(IPC_BENCH_INTERVAL_ENV);
    if (!fd || !*fd)
        return NULL;
    struct bench_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->st = st;
    s->fd = atoi(fd);
    s->interval = iv ? atof(iv) : 1.0;
    if (s->interval < 0.05)
        s->interval = 0.05;
    s->t0 = now_s();
    if (pthread_create(&s->tid, NULL, sampler_main, s)) {
        free(s);
        return NULL;
    }
    return s;
}

void bench_sampler_stop(struct bench_sampler *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    pthread_join(s->tid, NULL);
    send_sample(s, 1); /* everything the run wrote */
    free(s);
}
