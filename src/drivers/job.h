/* job: what the executors do to an item, and the two rules every executor keeps while a run
 * stops. Shared by the back ends (threads.c, processes.c, multi.c); exec.c only picks one.
 *
 * A job worker does the jobs on one item in the calling thread: load, then the chain with the
 * blocking driver. One per thread or worker process; the serial path, the threads strategy and
 * worker processes all run items through it. */
#ifndef ANNOTATE_JOB_H
#define ANNOTATE_JOB_H

#include "flow/item.h"
#include "run.h"

enum job { JOB_LOAD = 1, JOB_QUERY = 2 };

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

#endif
