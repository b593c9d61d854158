/* bench: see bench.h. bench_main checks what it was given, starts the mock (unless --server),
 * and measures each strategy at each concurrency in turn (or, with --sweep, each stage: sweep.c),
 * a point at a time (point.c), printing a row per point and rewriting the report and the chart
 * after each (report.c). SIGINT and SIGTERM stop the point being measured; what was measured is
 * kept. */
#include "bench/bench.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/mock.h"
#include "bench/point.h"
#include "bench/report.h"
#include "bench/sweep.h"
#include "flow/source.h"
#include "sources/sources.h"

volatile sig_atomic_t bench_stop;

static void on_bench_signal(int sig)
{
    (void)sig;
    bench_stop = 1;
}

/* SIGINT and SIGTERM set bench_stop until restore_signals. */
static void catch_signals(struct sigaction *old_int, struct sigaction *old_term)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_bench_signal;
    sigemptyset(&sa.sa_mask);
    bench_stop = 0;
    sigaction(SIGINT, &sa, old_int);
    sigaction(SIGTERM, &sa, old_term);
}

static void restore_signals(const struct sigaction *old_int, const struct sigaction *old_term)
{
    sigaction(SIGINT, old_int, NULL);
    sigaction(SIGTERM, old_term, NULL);
}

/* 0 when DIR (a folder, or a bucket) has an image to measure; 2 with the reason said when it
 * has none, or cannot be read: every point would measure nothing, and a recommendation made of
 * nothing would be a guess. The source stops at its first image. */
static int check_images(const struct config *cfg, const struct bench_opts *b)
{
    char err[1024] = "";
    int need_s3 = cfg->dir && !strncmp(cfg->dir, "s3://", 5), found = 0;
    struct sources *src = need_s3 ? sources_new(cfg, 1, err, sizeof err) : NULL;
    struct source *s = need_s3 && !src ? NULL : source_open(cfg, src, 0, err, sizeof err);
    struct source_entry e;
    for (int r = 1; s && !found && r != 0;)
        found = (r = source_next(s, &e)) == 1;
    source_close(s);
    sources_free(src);
    if (found)
        return 0;
    if (err[0])
        fprintf(stderr, "annotate bench: %s\n", err);
    else
        fprintf(stderr,
                "annotate bench: %s: 0 images found (files with an image extension%s%s): nothing to measure%s\n", cfg->dir, b->extensions ? ": --extensions " : "", b->extensions ? b->extensions : "",
                b->sweep ? ", and no recommendation can be made" : "");
    return 2;
}

/* The server the runs are sent to: --server, or the mock started here (*mock: its pid). 0, or 2
 * with the reason on stderr. */
static int start_server(const struct config *cfg, const struct bench_opts *b, char *url, size_t urllen, pid_t *mock)
{
    *mock = -1;
    if (b->server_given) {
        /* What only the mock bench starts can do: refused rather than silently ignored. */
        const char *mock_only = bench_mock_only(b);
        if (mock_only) {
            fprintf(stderr, "annotate bench: %s is for the mock server bench starts; with --server there is none: "
                            "leave %s out\n", mock_only, mock_only);
            return 2;
        }
        snprintf(url, urllen, "%s", cfg->server);
        return 0;
    }
    *mock = bench_mock_start(cfg, b, url, urllen);
    return *mock < 0 ? 2 : 0;
}

/* The concurrencies of the points (--concurrency, or 1,16,64,256), and the workers of an auto
 * point of a blocking strategy: the most of the list (64 for a list of auto alone). 0, or 2. */
static int point_concurrencies(struct bench_opts *b, int *concs, int *nc)
{
    *nc = bench_concurrencies(b->concurrency ? b->concurrency : "1,16,64,256", concs, 64);
    if (*nc <= 0) {
        fprintf(stderr, "annotate bench: --concurrency %s: give a list (1,16,64) or a range (1-256)\n", b->concurrency);
        return 2;
    }
    b->auto_workers = 0;
    for (int c = 0; c < *nc; c++)
        if (concs[c] > b->auto_workers)
            b->auto_workers = concs[c];
    if (b->auto_workers == 0)
        b->auto_workers = 64;
    return 0;
}

/* Measures pt and prints its row; the exit status so far, from rc: 1 once images of a point
 * failed for load (those that failed on their own, a corrupt file's 400, are only counted), 2
 * when a run found the set-up wrong (every other point would say the same). */
static int measure_point(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock,
                         struct point *pt, int rc)
{
    if (run_point(cfg, b, url, mock, pt)) {
        fprintf(stderr, "annotate bench: the %s run at %d did not finish: %s\n", pt->strategy, pt->conc, pt->error);
        return pt->exit_status == 2 ? 2 : 1;
    }
    report_row(b, pt);
    if (pt->interrupted)
        bench_stop = 1;
    return pt->failed_load > 0 && rc == 0 ? 1 : rc;
}

/* Each strategy of --strategies at each concurrency (serial at one), then the report. */
static int measure(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock,
                   const int *concs, int nc)
{
    char *strategies = strdup(b->strategies), *save = NULL;
    const char *names[16];
    int nn = 0;
    for (char *t = strategies ? strtok_r(strategies, ",", &save) : NULL; t && nn < 16; t = strtok_r(NULL, ",", &save))
        names[nn++] = t;
    struct point *pts = calloc((size_t)nn * (size_t)nc + 1, sizeof *pts);
    int np = 0, rc = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    report_header(cfg, b, url, ncpu);
    for (int s = 0; pts && s < nn && !bench_stop && rc != 2; s++) {
        /* serial has no concurrency to vary */
        for (int c = 0; c < nc && !bench_stop && rc != 2 && !(c > 0 && !strcmp(names[s], "serial")); c++) {
            struct point *pt = &pts[np++];
            pt->strategy = names[s];
            pt->conc = strcmp(names[s], "serial") ? concs[c] : 1;
            rc = measure_point(cfg, b, url, mock, pt, rc);
            report_write(cfg, b, url, ncpu, pts, np, 0);
        }
    }
    printf("(images/s counts ok images only; CPU is a share of one core over the point's wall time; latencies in ms; "
           "the tool's CPU includes its worker processes%s)\n",
           b->server_given ? "; the server's CPU is not measured" : "");
    int complete = !bench_stop && rc != 2;
    if (report_write(cfg, b, url, ncpu, pts, np, complete))
        rc = 2;
    if (b->report)
        printf("report: %s%s\n", b->report, complete ? "" : " (the points that finished)");
    if (b->chart)
        printf("chart:  %s\n", b->chart);
    for (int i = 0; i < np; i++)
        cJSON_Delete(pts[i].limits);
    free(pts);
    free(strategies);
    return bench_stop && rc != 2 ? 130 : rc;
}

int bench_main(struct config *cfg, struct bench_opts *b)
{
    char url[4096];
    int concs[64], nc = 0;
    uint64_t which = 0;
    pid_t mock;
    /* everything that can be refused, before anything is started or sent */
    int rc = sweep_check(cfg, b, concs, &nc, &which);
    if (!rc && !b->sweep)
        rc = point_concurrencies(b, concs, &nc);
    if (!rc)
        rc = check_images(cfg, b);
    if (!rc)
        rc = start_server(cfg, b, url, sizeof url, &mock);
    if (rc)
        return rc;
    struct sigaction old_int, old_term;
    catch_signals(&old_int, &old_term);
    rc = b->sweep ? sweep_main(cfg, b, url, mock, concs, nc, which) : measure(cfg, b, url, mock, concs, nc);
    bench_mock_stop(mock);
    restore_signals(&old_int, &old_term);
    return rc;
}

void bench_opts_free(struct bench_opts *b)
{
    free(b->headers);
    b->headers = NULL;
    b->n_headers = 0;
}
