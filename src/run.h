/* run: what every stage of one run shares: the configuration, the pipeline, the counters, the
 * rate limiter and the stop flag. Created by runner.c, read by the stages and executors. */
#ifndef ANNOTATE_RUN_H
#define ANNOTATE_RUN_H

#include <stdatomic.h>
#include "config.h"
#include "pipeline.h"
#include "ratelimit.h"
#include "stats.h"

enum { RUN_GOING = 0, RUN_DRAIN = 1, RUN_ABORT = 2 };

struct run {
    const struct config *cfg;
    const struct pipeline *p;
    struct stats *stats;
    struct ratelimit *rl;   /* NULL: no --max-rps */
    atomic_int stop;        /* RUN_GOING, RUN_DRAIN (stop scanning, finish what is in flight), RUN_ABORT */
};

#endif
