/* run: what every stage of one run shares: the configuration, the pipeline, the counters, the
 * rate limiter and the stop flag. Created by runner.c (and, in a worker process, by the worker's
 * main from the configuration its parent sent), read by the chain and the drivers. */
#ifndef ANNOTATE_RUN_H
#define ANNOTATE_RUN_H

#include <stdatomic.h>
#include "config.h"

struct pipeline;
struct ratelimit;
struct shared_page;
struct stats;
struct memo;

struct sources;

enum { RUN_GOING = 0, RUN_DRAIN = 1, RUN_ABORT = 2 };

struct run {
    const struct config *cfg;
    const struct pipeline *p;
    struct stats *stats;
    struct shared_page *shared; /* counters shared with worker processes; never NULL in a run */
    int shared_fd;              /* its descriptor, for worker processes to map */
    struct ratelimit *rl;       /* NULL: no --max-rps */
    /* RUN_GOING, RUN_DRAIN (stop scanning, finish what is in flight), RUN_ABORT: owned by whoever
     * made the run (the runner, a worker process), written by it and by code that must stop the
     * run (a set-up error, a failed event loop: run_abort), read by all. A pointer: what changes
     * during a run is reached through a pointer to mutable state, never through a const cast. */
    atomic_int *stop;
    /* Called by the blocking driver before each attempt and about every second while it waits
     * (a worker process tells its parent it is alive); NULL: nobody is listening. */
    void (*alive)(const struct run *run);
    int holder;                 /* a worker process: its entry + 1 in the shared page's table of
                                 * slot holders (limit.h); 0: none (the parent's threads) */
    struct sources *sources;    /* S3 clients, image-URL headers (sources/sources.h); NULL in a
                                 * worker process, which is never given an image to fetch */
    struct memo *memo;          /* --cache: the answer store and the questions on the wire
                                 * (chain/memo.h); NULL: no cache, or this process does not query */
};

/* The stop flag's value, and stopping the run now (the runner turns it into exit 2 or 130). */
static inline int run_stop_state(const struct run *run)
{
    return atomic_load(run->stop);
}
static inline void run_abort(const struct run *run)
{
    atomic_store(run->stop, RUN_ABORT);
}

#endif
