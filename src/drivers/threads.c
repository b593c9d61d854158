/* exec_threads: the serial (one thread) and threads (N threads) strategies. Each worker pops an
 * item, runs its jobs on it (job_worker_run) and pushes it on; the last worker out closes the output
 * queue. In C there is no GIL: N threads run N stages at once, on as many cores as there are. */
#include "drivers/backend.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct exec_threads {
    struct exec base;
    const struct run *run;
    unsigned jobs;
    int n;
    queue *in, *out;
    pthread_t *tids;
    atomic_int running;
};

static void *worker(void *arg)
{
    struct exec_threads *e = arg;
    struct job_worker *w = job_worker_new(e->run, e->jobs);
    struct item *it;
    while ((it = queue_pop(e->in))) {
        if (exec_stopping(e->run)) {
            exec_let_go(e->run, it);
            continue;
        }
        if (w)
            job_worker_run(w, it);
        else
            item_fail(it, "out of memory for a worker");
        if (queue_push(e->out, it)) /* closed under us: the run is being torn down */
            item_free(it);
    }
    job_worker_free(w);
    if (atomic_fetch_sub(&e->running, 1) == 1)
        queue_producer_done(e->out); /* the last worker out closes the door */
    return NULL;
}

static void join(struct exec *base)
{
    struct exec_threads *e = (struct exec_threads *)base;
    for (int i = 0; i < e->n; i++)
        pthread_join(e->tids[i], NULL);
    free(e->tids);
    free(e);
}

struct exec *exec_threads_start(const struct run *run, unsigned jobs, int workers, queue *in, queue *out,
                                char *err, size_t errlen)
{
    struct exec_threads *e = calloc(1, sizeof *e);
    if (e)
        e->tids = calloc((size_t)workers, sizeof *e->tids);
    if (!e || !e->tids) {
        free(e);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->base.join = join;
    e->run = run;
    e->jobs = jobs;
    e->in = in;
    e->out = out;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    atomic_store(&e->running, workers);
    for (int i = 0; i < workers; i++) {
        int rc = pthread_create(&e->tids[i], &attr, worker, e);
        if (rc) {
            if (i == 0) {
                pthread_attr_destroy(&attr);
                snprintf(err, errlen, "cannot start a thread: %s", strerror(rc));
                free(e->tids);
                free(e);
                return NULL;
            }
            fprintf(stderr, "annotate: started %d of %d threads (%s); going on with those\n", i, workers,
                    strerror(rc));
            if (atomic_fetch_sub(&e->running, workers - i) == workers - i)
                queue_producer_done(e->out);
            break;
        }
        e->n++;
    }
    pthread_attr_destroy(&attr);
    return &e->base;
}
