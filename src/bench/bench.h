/* bench: `annotate bench DIR` runs the strategies in turn over the same images against a mock
 * model server it starts itself (or --server), and reports throughput (of ok images), latency,
 * failures, CPU and memory per strategy and concurrency: a table, a JSON report and an SVG
 * chart. Every run option given to bench reaches the runs it starts. Its options are struct
 * bench_opts (config.h).
 *
 * The files of src/bench/, by job: bench.c, bench_main (the strategies at each concurrency);
 * point.c, one measured point (a child annotate run, its samples, its windows); sweep.c, --sweep;
 * report.c, the table, the JSON report and the SVG chart; mock.c, the mock model server as a
 * child process; sampler.c, the sample channel's writing end, in the run that bench started. */
#ifndef ANNOTATE_BENCH_H
#define ANNOTATE_BENCH_H

#include "options.h"

int bench_main(struct config *cfg, struct bench_opts *b);
void bench_opts_free(struct bench_opts *b);

/* Fills a with the run of strategy at conc (0: --concurrency auto) against url, writing its rows
 * to out and (when stats is not NULL) its --stats-json to stats, stopped within drain_ms after
 * the Ctrl-C bench sends it. It is given every option of both commands that bench does not set
 * itself, when its value is not the default (config_args). 0, or -1 when it does not fit (a bug). */
int bench_child_argv(const struct config *cfg, const struct bench_opts *b, const char *strategy, int conc,
                     const char *url, const char *out, const char *stats, long drain_ms, struct config_argv *a);

/* In a run that `annotate bench` started (the sample channel of ipc.h is set), a thread that
 * writes the run's samples; NULL otherwise. Stop it before st is freed; NULL is a no-op. */
struct stats;
struct bench_sampler;
struct bench_sampler *bench_sampler_start(struct stats *st);
void bench_sampler_stop(struct bench_sampler *s);

#endif
