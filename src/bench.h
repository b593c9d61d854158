/* bench: `annotate bench DIR` runs the strategies in turn over the same images against a mock
 * model server it starts itself (or --server), and reports throughput, latency, CPU and memory
 * per strategy and concurrency: a table, a JSON report and an SVG chart. */
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
    long capacity;            /* the mock's --capacity for every endpoint; 0: none */
    long queue_max;           /* the mock's --queue-max; -1: unlimited */
    int auto_workers;         /* set by bench_main: --workers of an auto point of a blocking strategy */
};

int bench_main(struct config *cfg, struct bench_opts *b);

/* In a run that `annotate bench` started (the sample channel of ipc.h is set), a thread that
 * writes the run's samples; NULL otherwise. Stop it before st is freed; NULL is a no-op. */
struct stats;
struct bench_sampler;
struct bench_sampler *bench_sampler_start(struct stats *st);
void bench_sampler_stop(struct bench_sampler *s);

#endif
