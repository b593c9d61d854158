/* bench: see bench.h.
 *
 * Each point (a strategy at a concurrency) is a separate annotate process, so that its CPU time
 * and peak RSS are its own (wait4's rusage, which includes its worker processes). The child
 * writes a sample line per window to a pipe (the sample channel, ipc.h); like perf_analyzer we drop the
 * first window as warm-up and keep measuring until the last three windows agree within the
 * tolerance, or the window or time cap is reached, and then say the result is not stable. The
 * child is then stopped as Ctrl-C would stop it, and its --stats-json gives the latency
 * percentiles. The mock server's CPU is read from /proc over the same interval. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
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

#include "ipc.h"
#include "item.h"
#include "stats.h"

struct point {
    const char *strategy;
    int conc;                /* CONC_AUTO: --concurrency auto */
    double img_s, req_s;
    double req_p50, req_p90, req_p99, req_max; /* ms */
    double img_p50, img_p99;
    double tool_cpu_s, mock_cpu_s, wall_s;
    long rss_kb;
    double failed;
    int windows, stable, ran_out;
    double spread; /* (max - min) / mean of the last three windows */
    double retries, attempts;
    double bound;  /* with --capacity: images/s as a share of the bottleneck endpoint's bound; < 0: none */
    cJSON *limits; /* the run's "limits" (its stages' concurrency limits at the end), owned */
};

#define CONC_AUTO 0

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

/* Starts the mock; returns its pid and fills the base URL. */
static pid_t start_mock(const char *bin, const struct bench_opts *b, char *url, size_t urllen)
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

static double jnum(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

static int run_point(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock,
                     struct point *pt)
{
    char exe[4096], conc[16], statsf[256], outf[256], lim[32], to[32], retries[16], loaders[16], loops[16];
    if (self_exe(exe, sizeof exe))
        return -1;
    snprintf(conc, sizeof conc, "%d", pt->conc);
    if (pt->conc == CONC_AUTO)
        snprintf(conc, sizeof conc, "auto");
    char workers_auto[16];
    snprintf(workers_auto, sizeof workers_auto, "%d", b->auto_workers);
    snprintf(statsf, sizeof statsf, "/tmp/annotate-bench-%d.json", (int)getpid());
    snprintf(outf, sizeof outf, "/tmp/annotate-bench-%d.csv", (int)getpid());
    snprintf(to, sizeof to, "%ld", cfg->timeout_ms);
    snprintf(retries, sizeof retries, "%d", cfg->retries);
    const char *argv[40];
    int n = 0;
    argv[n++] = exe;
    argv[n++] = cfg->dir;
    argv[n++] = "--server";
    argv[n++] = url;
    argv[n++] = "--out";
    argv[n++] = outf;
    argv[n++] = "--quiet";
    argv[n++] = "--stats-json";
    argv[n++] = statsf;
    argv[n++] = "--timeout-ms";
    argv[n++] = to;
    argv[n++] = "--retries";
    argv[n++] = retries;
    argv[n++] = "--sync-every";
    argv[n++] = "0";
    argv[n++] = "--encoder";
    argv[n++] = b64_encoder_name(cfg->encoder);
    if (cfg->config_file) {
        argv[n++] = "--config";
        argv[n++] = cfg->config_file;
    }
    argv[n++] = "--strategy";
    if (!strcmp(pt->strategy, "serial")) {
        argv[n++] = "serial";
    } else if (!strcmp(pt->strategy, "curl-multi")) {
        argv[n++] = "curl-multi";
        argv[n++] = "--concurrency";
        argv[n++] = conc;
        /* the loader threads in front of the event loop: --workers as given to bench */
        snprintf(loaders, sizeof loaders, "%d", cfg->workers);
        argv[n++] = "--workers";
        argv[n++] = loaders;
        snprintf(loops, sizeof loops, "%d", cfg->loops);
        argv[n++] = "--loops";
        argv[n++] = loops;
    } else {
        /* threads, processes, or a per-stage spec written with '+' (load=threads+query=processes) */
        static char spec[128];
        snprintf(spec, sizeof spec, "%s", pt->strategy);
        for (char *c = spec; *c; c++)
            if (*c == '+')
                *c = ',';
        argv[n++] = spec;
        argv[n++] = "--workers";
        argv[n++] = pt->conc == CONC_AUTO ? workers_auto : conc; /* auto: the stages' limits within them */
        if (strstr(pt->strategy, "curl-multi") || pt->conc == CONC_AUTO) {
            argv[n++] = "--concurrency";
            argv[n++] = conc;
        }
    }
    if (b->limit) {
        snprintf(lim, sizeof lim, "%ld", b->limit);
        argv[n++] = "--max-images";
        argv[n++] = lim;
    }
    argv[n] = NULL;

    int fds[2];
    if (pipe(fds))
        return -1;
    char fdenv[32], ivenv[48];
    snprintf(fdenv, sizeof fdenv, IPC_BENCH_FD_ENV "=%d", fds[1]);
    snprintf(ivenv, sizeof ivenv, IPC_BENCH_INTERVAL_ENV "=%g", b->window_s);
    double mock0 = mock > 0 ? proc_cpu_s(mock) : 0, t0 = mono();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        putenv(fdenv);
        putenv(ivenv);
        execv(exe, (char **)argv);
        _exit(127);
    }
    close(fds[1]);
    double last_t = 0, rates[1024], rreq[1024];
    unsigned long long last_done = 0, last_req = 0;
    int nw = 0, stopped = 0;
    char buf[4096];
    size_t blen = 0;
    for (;;) {
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int pr = poll(&pfd, 1, 1000);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            if (!stopped && b->limit == 0 && mono() - t0 > b->duration_s * 3 + 30) {
                kill(pid, SIGINT); /* no samples for too long: stop the point */
                stopped = 1;
            }
            continue;
        }
        ssize_t r = read(fds[0], buf + blen, sizeof buf - 1 - blen);
        if (r <= 0)
            break;
        blen += (size_t)r;
        buf[blen] = 0;
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = 0;
            double t;
            unsigned long long done, req;
            if (sscanf(line, "%lf %llu %llu", &t, &done, &req) == 3) {
                if (last_t > 0 && nw < 1024 && t > last_t) {
                    rates[nw] = (double)(done - last_done) / (t - last_t);
                    rreq[nw] = (double)(req - last_req) / (t - last_t);
                    nw++;
                }
                last_t = t;
                last_done = done;
                last_req = req;
            }
            line = nl + 1;
        }
        blen -= (size_t)(line - buf);
        memmove(buf, line, blen);
        /* nw counts windows after the first sample; window 0 (up to the first sample) is warm-up. */
        if (!stopped && b->limit == 0 && nw >= 3) {
            double mx = fmax(fmax(rates[nw - 1], rates[nw - 2]), rates[nw - 3]);
            double mn = fmin(fmin(rates[nw - 1], rates[nw - 2]), rates[nw - 3]);
            double mean = (rates[nw - 1] + rates[nw - 2] + rates[nw - 3]) / 3;
            pt->spread = mean > 0 ? (mx - mn) / mean : 0;
            pt->stable = mean > 0 && pt->spread <= b->tolerance;
            if (pt->stable || nw >= b->max_windows || mono() - t0 >= b->duration_s) {
                kill(pid, SIGINT);
                stopped = 1;
            }
        }
    }
    close(fds[0]);
    int status;
    struct rusage ru;
    wait4(pid, &status, 0, &ru);
    double t1 = mono();
    pt->wall_s = t1 - t0;
    pt->mock_cpu_s = mock > 0 ? proc_cpu_s(mock) - mock0 : 0;
    pt->tool_cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                     (double)ru.ru_stime.tv_usec / 1e6;
    pt->rss_kb = ru.ru_maxrss;
    pt->windows = nw;
    pt->ran_out = !stopped && b->limit == 0;
    FILE *f = fopen(statsf, "r");
    cJSON *js = NULL;
    if (f) {
        char *txt = malloc(1 << 20);
        size_t l = fread(txt, 1, (1 << 20) - 1, f);
        txt[l] = 0;
        fclose(f);
        js = cJSON_Parse(txt);
        free(txt);
    }
    unlink(statsf);
    unlink(outf);
    if (!js) {
        fprintf(stderr, "annotate bench: the %s run at %d exited with status %d and left no stats\n", pt->strategy,
                pt->conc, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        return -1;
    }
    pt->req_p50 = jnum(js, "request_latency", "p50_ms");
    pt->req_p90 = jnum(js, "request_latency", "p90_ms");
    pt->req_p99 = jnum(js, "request_latency", "p99_ms");
    pt->req_max = jnum(js, "request_latency", "max_ms");
    pt->img_p50 = jnum(js, "image_latency", "p50_ms");
    pt->img_p99 = jnum(js, "image_latency", "p99_ms");
    pt->failed = jnum(js, "images_failed", NULL);
    pt->retries = jnum(js, "retries", NULL);
    pt->attempts = jnum(js, "attempts", NULL);
    pt->limits = cJSON_DetachItemFromObjectCaseSensitive(js, "limits");
    /* The bottleneck's bound: each endpoint serves --capacity requests per --latency-ms; with
     * the requests per image each stage made, the images/s the busiest endpoint allows. */
    pt->bound = -1;
    double images = jnum(js, "images_ok", NULL) + pt->failed;
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(js, "stages");
    if (b->capacity > 0 && b->latency_ms > 0 && images > 0 && cJSON_IsObject(stages)) {
        double per_s = (double)b->capacity * 1e3 / (double)b->latency_ms, best = -1;
        for (const cJSON *st = stages->child; st; st = st->next) {
            double count = jnum(st, "count", NULL);
            if (count > 0 && (best < 0 || per_s / (count / images) < best))
                best = per_s / (count / images);
        }
        pt->bound = best;
    }
    if (b->limit || nw < 3) {
        /* A fixed amount of work (or too short for windows): the whole run's rate. */
        double el = jnum(js, "elapsed_s", NULL);
        pt->img_s = el > 0 ? (jnum(js, "images_ok", NULL) + pt->failed) / el : 0;
        pt->req_s = el > 0 ? jnum(js, "requests", NULL) / el : 0;
        pt->stable = b->limit != 0;
    } else {
        pt->img_s = (rates[nw - 1] + rates[nw - 2] + rates[nw - 3]) / 3;
        pt->req_s = (rreq[nw - 1] + rreq[nw - 2] + rreq[nw - 3]) / 3;
    }
    if (pt->bound > 0)
        pt->bound = pt->img_s / pt->bound;
    cJSON_Delete(js);
    return 0;
}

static const char *COLOURS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

static void write_svg(const char *path, struct point *pts, int n, const struct bench_opts *b)
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
    /* An auto point has no concurrency to put on the axis: it is drawn as a dashed line
     * across, at its images/s. */
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
    fprintf(f, "<text x=\"%d\" y=\"40\" fill=\"#555\">mock latency %ld ms (%s)%s</text>\n", L, b->latency_ms, b->latency_dist,
            b->trust_payload ? ", mock skips decoding (--trust-payload)" : "");
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
        fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", W - R + 46, ly + 4, pts[i].strategy);
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

int bench_main(struct config *cfg, struct bench_opts *b)
{
    char url[128], exe[4096], mockbin[4096];
    pid_t mock = -1;
    if (b->server_given) {
        snprintf(url, sizeof url, "%s", cfg->server);
    } else {
        if (b->mock_bin) {
            snprintf(mockbin, sizeof mockbin, "%s", b->mock_bin);
        } else {
            if (self_exe(exe, sizeof exe))
                return 2;
            snprintf(mockbin, sizeof mockbin, "%s/mock-model-server", dirname(exe));
        }
        mock = start_mock(mockbin, b, url, sizeof url);
        if (mock < 0) {
            fprintf(stderr, "annotate bench: cannot start the mock model server %s (give its path with --mock)\n", mockbin);
            return 2;
        }
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
    char capdesc[96] = "";
    if (b->capacity > 0 && b->queue_max >= 0)
        snprintf(capdesc, sizeof capdesc, ", capacity %ld per endpoint, queue %ld", b->capacity, b->queue_max);
    else if (b->capacity > 0)
        snprintf(capdesc, sizeof capdesc, ", capacity %ld per endpoint", b->capacity);
    printf("annotate bench: %s, mock at %s, latency %ld ms (%s)%s%s, %ld CPUs\n", cfg->dir, url, b->latency_ms,
           b->latency_dist, b->trust_payload ? ", mock skips decoding" : "", capdesc, ncpu);
    printf("%-34s %6s %9s %9s %8s %8s %8s %8s %8s %8s %8s %8s %7s %6s %7s %7s %s\n", "strategy", "conc", "images/s",
           "req/s", "req p50", "req p90", "req p99", "req max", "img p99", "tool CPU", "mock CPU", "wall s", "RSS MB",
           "failed", "retry %", "bound %", "stable");
    for (int s = 0; s < nn; s++) {
        for (int c = 0; c < nc; c++) {
            if (!strcmp(names[s], "serial") && c > 0)
                break; /* serial has no concurrency to vary */
            struct point *pt = &pts[np];
            pt->strategy = names[s];
            pt->conc = strcmp(names[s], "serial") ? concs[c] : 1;
            if (run_point(cfg, b, url, mock, pt)) {
                rc = 1;
                continue;
            }
            np++;
            char cs[16], bound[16];
            snprintf(cs, sizeof cs, pt->conc == CONC_AUTO ? "auto" : "%d", pt->conc);
            snprintf(bound, sizeof bound, pt->bound < 0 ? "-" : "%.0f%%", 100 * pt->bound);
            printf("%-34s %6s %9.0f %9.0f %8.1f %8.1f %8.1f %8.1f %8.1f %7.0f%% %7.0f%% %8.1f %7.1f %6.0f %6.1f%% %7s %s\n",
                   pt->strategy, cs, pt->img_s, pt->req_s, pt->req_p50, pt->req_p90, pt->req_p99, pt->req_max,
                   pt->img_p99, 100 * pt->tool_cpu_s / pt->wall_s, 100 * pt->mock_cpu_s / pt->wall_s, pt->wall_s,
                   (double)pt->rss_kb / 1024, pt->failed, pt->attempts > 0 ? 100 * pt->retries / pt->attempts : 0,
                   bound, pt->ran_out ? "ran out of images" : pt->stable ? "yes" : "NO (windows disagree)");
            if (pt->limits && pt->limits->child) { /* where each stage's limit ended */
                printf("%-34s   limits:", "");
                for (const cJSON *l = pt->limits->child; l; l = l->next)
                    printf("%s %s %.0f%s (peak %.0f in flight)", l == pt->limits->child ? "" : ",", l->string,
                           jnum(l, "limit", NULL),
                           cJSON_IsString(cJSON_GetObjectItemCaseSensitive(l, "mode")) &&
                                   !strcmp(cJSON_GetObjectItemCaseSensitive(l, "mode")->valuestring, "auto")
                               ? " auto"
                               : "",
                           jnum(l, "peak_in_flight", NULL));
                printf("\n");
            }
            fflush(stdout);
        }
    }
    printf("(CPU is a share of one core over the point's wall time; latencies in ms; the tool's CPU includes its worker processes)\n");
    if (mock > 0) {
        kill(mock, SIGTERM);
        waitpid(mock, NULL, 0);
    }
    cJSON *rep = cJSON_CreateObject();
    cJSON *mode = cJSON_AddObjectToObject(rep, "mode");
    cJSON_AddStringToObject(mode, "dir", cfg->dir);
    cJSON_AddStringToObject(mode, "server", b->server_given ? url : "mock-model-server (started by bench)");
    cJSON_AddNumberToObject(mode, "latency_ms", (double)b->latency_ms);
    cJSON_AddStringToObject(mode, "latency_dist", b->latency_dist);
    cJSON_AddBoolToObject(mode, "mock_trust_payload", b->trust_payload);
    if (b->capacity > 0) {
        cJSON_AddNumberToObject(mode, "capacity", (double)b->capacity);
        if (b->queue_max >= 0)
            cJSON_AddNumberToObject(mode, "queue_max", (double)b->queue_max);
    }
    cJSON_AddNumberToObject(mode, "cpus", (double)ncpu);
    cJSON_AddNumberToObject(mode, "window_s", b->window_s);
    cJSON_AddNumberToObject(mode, "tolerance", b->tolerance);
    cJSON *arr = cJSON_AddArrayToObject(rep, "points");
    for (int i = 0; i < np; i++) {
        struct point *p = &pts[i];
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
        cJSON_AddNumberToObject(o, "mock_cpu_s", p->mock_cpu_s);
        cJSON_AddNumberToObject(o, "wall_s", p->wall_s);
        cJSON_AddNumberToObject(o, "peak_rss_kb", (double)p->rss_kb);
        cJSON_AddNumberToObject(o, "images_failed", p->failed);
        cJSON_AddNumberToObject(o, "windows", p->windows);
        cJSON_AddNumberToObject(o, "window_spread", p->spread);
        cJSON_AddBoolToObject(o, "stable", p->stable);
        cJSON_AddBoolToObject(o, "ran_out_of_images", p->ran_out);
        cJSON_AddNumberToObject(o, "retries", p->retries);
        cJSON_AddNumberToObject(o, "attempts", p->attempts);
        if (p->bound >= 0)
            cJSON_AddNumberToObject(o, "share_of_bound", p->bound);
        if (p->limits) {
            cJSON_AddItemToObject(o, "limits", p->limits);
            p->limits = NULL;
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *txt = cJSON_Print(rep);
    cJSON_Delete(rep);
    if (b->report) {
        mkdirs_for(b->report);
        FILE *f = fopen(b->report, "w");
        if (f) {
            fputs(txt, f);
            fputc('\n', f);
            fclose(f);
            printf("report: %s\n", b->report);
        } else {
            fprintf(stderr, "annotate bench: cannot write %s: %s\n", b->report, strerror(errno));
            rc = 2;
        }
    }
    free(txt);
    if (b->chart) {
        mkdirs_for(b->chart);
        write_svg(b->chart, pts, np, b);
        printf("chart:  %s\n", b->chart);
    }
    for (int i = 0; i < np; i++)
        cJSON_Delete(pts[i].limits);
    free(pts);
    free(strategies);
    return rc;
}

/* ---- the child's side of the sample channel ---- */

struct bench_sampler {
    struct stats *st;
    int fd;
    double interval, t0;
    pthread_t tid;
    atomic_int stop;
};

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
        char line[128];
        int n = snprintf(line, sizeof line, "%.6f %llu %llu\n", t - s->t0,
                         (unsigned long long)(atomic_load(&s->st->ok) + atomic_load(&s->st->failed)),
                         (unsigned long long)atomic_load(&s->st->requests));
        if (write(s->fd, line, (size_t)n) < 0)
            break;
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
    free(s);
}
