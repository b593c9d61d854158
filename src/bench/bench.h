/* bench: `annotate bench DIR` runs the strategies in turn over the same images against a mock
 * model server it starts itself (or --server), and reports throughput (of ok images), latency,
 * failures, CPU and memory per strategy and concurrency: a table, a JSON report and an SVG
 * chart. Every run option given to bench reaches the runs it starts. */
#ifndef ANNOTATE_BENCH_H
#define ANNOTATE_BENCH_H

#include "config.h"

struct bench_opts {
    const char *strategies;   /* comma list; default all four */
    const char *concurrency;  /* list or range: "1,16,64,256" or "1-256" (doubling); "auto" in a list
                               * is a point with --concurrency auto */
    long latency_ms;          /* the mock's injected latency */
    const char *latency_dist;
    double duration_s;        /* per measurement window set; 0: use limit */
    long limit;               /* images per measurement; 0: use duration */
    const char *report;       /* JSON report path */
    const char *chart;        /* SVG chart path */
    const char *mock_bin;
    int trust_payload;        /* mock skips decoding (the no-latency throughput mode) */
    double tolerance;         /* windows agree within this fraction */
    int max_windows;
    double window_s;
    int server_given;
    const char **headers;     /* the --header lines as given (owned array, strings from argv) */
    int n_headers;
    const char *extensions;   /* --extensions as given, or NULL */
    long capacity;            /* the mock's --capacity for every endpoint; 0: none */
    long queue_max;           /* the mock's --queue-max; -1: unlimited */
    int sweep;                /* --sweep: each stage's concurrency in turn, and a recommended pipeline */
    const char *sweep_stages; /* --sweep-stages: the stages swept (comma list), NULL: all */
    const char *recommend;    /* --sweep: where the recommended pipeline is written */
    int auto_workers;         /* set by bench_main: --workers of an auto point of a blocking strategy */
};

int bench_main(struct config *cfg, struct bench_opts *b);
void bench_opts_free(struct bench_opts *b);

/* 1 when an option of both commands (a run's and bench's) is passed on by bench to the runs it
 * starts, or is bench's own (--concurrency, --server, ...). cli.c refuses a table in which an
 * option of both is neither, so none can be added and silently dropped. */
int bench_takes_option(const char *name);

/* The options bench passes on, by name (NULL-terminated), for the tests. */
const char *const *bench_forwarded_options(void);

/* The command line of the annotate run of one point. */
struct bench_argv {
    const char *argv[160];
    int argc;
    char store[8192];
    size_t used;
};

/* Fills a with the run of strategy at conc (0: --concurrency auto) against url, writing its rows
 * to out and (when stats is not NULL) its --stats-json to stats, stopped within drain_ms after
 * the Ctrl-C bench sends it. 0, or -1 when it does not fit (a bug). */
int bench_child_argv(const struct config *cfg, const struct bench_opts *b, const char *strategy, int conc,
                     const char *url, const char *out, const char *stats, long drain_ms, struct bench_argv *a);

/* In a run that `annotate bench` started (the sample channel of ipc.h is set), a thread that
 * writes the run's samples; NULL otherwise. Stop it before st is freed; NULL is a no-op. */
struct stats;
struct bench_sampler;
struct bench_sampler *bench_sampler_start(struct stats *st);
void bench_sampler_stop(struct bench_sampler *s);

#endif
