/* exec: the executors, which run the parallel stages of a run (load, query) over the items of
 * one queue and pass them to the next. What an executor promises its caller:
 *
 *   - it takes items from `in` until `in` is closed and drained, or the run aborts;
 *   - it applies `jobs` to each item: JOB_LOAD reads the file and encodes it (load.c),
 *     JOB_QUERY runs the model chain (chain.c) with one of the two drivers;
 *   - it pushes every item it took to `out` exactly once, or frees it when `out` was closed
 *     under it (the run is being torn down);
 *   - once the run is stopping (RUN_DRAIN), it starts no new item: items it takes from then on
 *     are let go with exec_let_go (job.h; no row: --resume runs them), and the ones it had started
 *     finish;
 *   - it closes `out` (queue_producer_done) after its last push;
 *   - exec_join waits for all of that and frees the executor.
 *
 *   serial      one thread, one item at a time, the blocking driver       any jobs
 *   threads     N threads, each the blocking driver (threads.h)           any jobs
 *   processes   N worker processes fed over pipes (processes.h, ipc.h)    any jobs
 *   curl-multi  event loops on libcurl's multi interface (multi.c)        JOB_QUERY, or JOB_LOAD
 *               alone: one loop fetching S3 objects and image URLs (loadmulti.c)
 *
 * The executors know what to run (jobs), never what a request means: that is the chain's. Nor
 * how many requests an endpoint may have in flight: that is limit.h's; the drivers take a slot
 * of the request's stage before each attempt and give it back when it has ended. */
#ifndef ANNOTATE_EXEC_H
#define ANNOTATE_EXEC_H

#include "config.h"
#include "drivers/job.h"
#include "flow/queue.h"
#include "run.h"

struct exec;

/* Starts an executor of strategy s doing jobs on each item. Returns NULL with err when it
 * cannot start or cannot do those jobs (then `out` is left open and the caller cleans up). */
struct exec *exec_start(enum strategy s, const struct run *run, unsigned jobs, int workers, queue *in,
                        queue *out, char *err, size_t errlen);

/* Waits for the executor to finish (its input closed and drained) and frees it. NULL: no-op. */
void exec_join(struct exec *e);

#endif
