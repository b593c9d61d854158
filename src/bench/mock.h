/* mock: the mock model server (src/mock/) that `annotate bench` starts as a child process,
 * listening on 127.0.0.1 at a port of its choosing, with bench's --latency-ms, --latency-dist,
 * --trust-payload, --capacity and --queue-max, and answering in lists at the endpoints the
 * pipeline's batch stages post to. */
#ifndef ANNOTATE_BENCH_MOCK_H
#define ANNOTATE_BENCH_MOCK_H

#include <stddef.h>
#include <sys/types.h>

#include "config.h"

/* The option of b that only the mock bench starts can honour ("--latency-ms", ...), when b has
 * one: with --server there is no mock. NULL if none. */
const char *bench_mock_only(const struct bench_opts *b);

/* Starts the mock (b->mock_bin, or mock-model-server beside annotate) for cfg's pipeline: its pid,
 * with its base URL in url; -1 when it did not start (said on stderr). */
pid_t bench_mock_start(const struct config *cfg, const struct bench_opts *b, char *url, size_t urllen);

/* Stops it and waits for it; no-op for a pid <= 0. */
void bench_mock_stop(pid_t pid);

#endif
