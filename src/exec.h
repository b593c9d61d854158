/* exec: the executors, which run the parallel stages of a run (load, query) over the items of
 * one queue and pass them to the next. What an executor promises its caller:
 *
 *   - it takes items from `in` until `in` is closed and drained, or the run aborts;
 *   - it applies `jobs` to each item: JOB_LOAD reads the file and encodes it (load.c),
 *     JOB_QUERY runs the model chain (chain.c) with one of the two drivers;
 *   - it pushes every item it took to `out` exactly once, or frees it when `out` was closed
 *     under it (the run is being torn down);
 *   - once the run is stopping (RUN_DRAIN), it starts no new item: items it takes from then on
 *     are let go with exec_let_go (no row: --resume runs them), and the ones it had started
 *     finish;
 *   - it closes `out` (queue_producer_done) after its last push;
 *   - exec_join waits for all of that and frees the executor.
 *
 *   serial      one thread, one item at a time, the blocking driver     any jobs
 *   threads     N threads, each the blocking driver                     any jobs
 *   processes   N worker processes fed over pipes (exec_proc.c, ipc.h)  any jobs
 *   curl-multi  event loops on libcurl's multi interface (exec_multi.c) JOB_QUERY only
 *
 * The executors know what to run (jobs), never what a request means: that is the chain's. Nor
 * how many requests an endpoint may have in flight: that is limit.h's; the drivers take a slot
 * of the request's stage before each attempt and give it back when it has ended. */
#ifndef ANNOTATE_EXEC_H
#define ANNOTATE_EXEC_H

#include "config.h"
#include "item.h"
#include "queue.h"
#include "run.h"

enum job { JOB_LOAD = 1, JOB_QUERY = 2 };

/* The jobs on one item, done in the calling thread: load, then the chain with the blocking
 * driver. One per thread or worker process; the serial path, the threads strategy and worker
 * processes all run items through this. */
struct job_worker;
/* Never NULL for lack of a curl handle (the items then fail saying so); NULL only when out of
 * memory. */
struct job_worker *job_worker_new(const struct run *run, unsigned jobs);
void job_worker_run(struct job_worker *w, struct item *it);
void job_worker_free(struct job_worker *w); /* NULL is a no-op */

/* Lets go of an item a stopping run will not start: freed, counted as unsent. */
void exec_let_go(const struct run *run, struct item *it);

/* 1 once the run is stopping or being torn down: start nothing new. */
int exec_stopping(const struct run *run);

/* The load job: reads the file and base64-encodes it into it->b64, or fails the item. */
void load_image(const struct run *run, struct item *it);

struct exec;

/* Starts an executor of strategy s doing jobs on each item. Returns NULL with err when it
 * cannot start or cannot do those jobs (then `out` is left open and the caller cleans up). */
struct exec *exec_start(enum strategy s, const struct run *run, unsigned jobs, int workers, queue *in,
                        queue *out, char *err, size_t errlen);

/* Waits for the executor to finish (its input closed and drained) and frees it. NULL: no-op. */
void exec_join(struct exec *e);

/* Each back end's state starts with this; exec_start picks the back end. */
struct exec {
    void (*join)(struct exec *self);
};
struct exec *exec_threads_start(const struct run *run, unsigned jobs, int workers, queue *in, queue *out,
                                char *err, size_t errlen);
struct exec *exec_proc_start(const struct run *run, unsigned jobs, int workers, queue *in, queue *out,
                             char *err, size_t errlen);
struct exec *exec_multi_start(const struct run *run, queue *in, queue *out, char *err, size_t errlen);

/* The main of a worker process of the processes strategy (annotate started with IPC_WORKER_ARG):
 * it reads its configuration from the parent's first frame, then serves items until its stdin
 * closes. Returns the process exit status. */
int exec_proc_worker_main(void);

#endif
