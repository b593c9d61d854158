/* exec: the executors. An executor runs one or more stage functions over the items of an input
 * queue and pushes them to an output queue; it knows nothing about images, and the stages know
 * nothing about how they are scheduled. The output queue is closed (producer_done) when the
 * executor has pushed its last item.
 *
 *   serial      one thread, one item at a time
 *   threads     N threads popping, running, pushing
 *   processes   N worker processes fed over pipes with framed messages (exec_proc.c)
 *   curl-multi  one event loop on libcurl's multi interface; query only (exec_multi.c)
 */
#ifndef ANNOTATE_EXEC_H
#define ANNOTATE_EXEC_H

#include "config.h"
#include "item.h"
#include "queue.h"
#include "run.h"

struct stage_fn {
    const char *name;
    void *(*worker_new)(const struct run *run); /* per-worker state; NULL when not needed */
    void (*worker_free)(void *w);
    void (*run)(void *w, const struct run *run, struct item *it);
};

/* The two parallel stages. */
extern const struct stage_fn STAGE_LOAD;  /* read the file, base64 it once */
extern const struct stage_fn STAGE_QUERY; /* the model chain, a request at a time */

/* Each back end's state starts with this. */
struct exec {
    void (*join)(struct exec *self);
};

/* Starts an executor of strategy s running fns[0..nfns) in order on each item. Returns NULL with
 * err when it cannot start (then `out` is left open and the caller cleans up). */
struct exec *exec_start(enum strategy s, const struct run *run, const struct stage_fn *const *fns,
                        int nfns, int workers, queue *in, queue *out, char *err, size_t errlen);

/* Waits for the executor to finish (its input closed and drained) and frees it. */
void exec_join(struct exec *e);

/* Strategy back ends, called by exec_start. */
struct exec *exec_threads_start(const struct run *run, const struct stage_fn *const *fns, int nfns,
                                int workers, queue *in, queue *out, char *err, size_t errlen);
struct exec *exec_proc_start(const struct run *run, const struct stage_fn *const *fns, int nfns,
                             int workers, queue *in, queue *out, char *err, size_t errlen);
struct exec *exec_multi_start(const struct run *run, queue *in, queue *out, char *err, size_t errlen);

/* The load stage on its own (the serial path calls it inline). */
void stage_load(const struct run *run, struct item *it);

/* The command line annotate was started with; worker processes are started with the same one. */
extern char **annotate_argv;

/* Entry point of a worker process (annotate re-executed with ANNOTATE_WORKER set). Returns the
 * process exit status. */
int exec_proc_worker_main(const struct run *run, const char *stages);

#endif
