/* exec_threads: the serial (one thread) and threads (N threads) strategies. Each worker pops an
 * item, runs the stage functions on it and pushes it on; the last worker out closes the output
 * queue. In C there is no GIL: N threads run N stages at once, on as many cores as there are. */
#include "exec.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct exec_threads {
    struct exec base;
    const struct run *run;
    const struct stage_fn *const *fns;
    int nfns, n;
    queue *in, *out;
    pthread_t *tids;
    atomic_int running;
};

static void *worker(void *arg)
{
    struct exec_threads *e = arg;
    void *state[8] = {0};
    for (int f = 0; f < e->nfns; f++)
        if (e->fns[f]->worker_new)
            state[f] = e->fns[f]->worker_new(e->run);
    struct item *it;
    while ((it = queue_pop(e->in))) {
        for (int f = 0; f < e->nfns; f++)
            e->fns[f]->run(state[f], e->run, it);
        if (queue_push(e->out, it)) /* closed under us: the run is being torn down */
            item_free(it);
    }
    for (int f = 0; f < e->nfns; f++)
        if (e->fns[f]->worker_free)
            e->fns[f]->worker_free(state[f]);
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

struct exec *exec_threads_start(const struct run *run, const struct stage_fn *const *fns, int nfns,
                                int workers, queue *in, queue *out, char *err, size_t errlen)
{
    if (nfns > 8) {
        snprintf(err, errlen, "too many stages for one executor");
        return NULL;
    }
    struct exec_threads *e = calloc(1, sizeof *e);
    e->base.join = join;
    e->run = run;
    e->fns = fns;
    e->nfns = nfns;
    e->in = in;
    e->out = out;
    e->tids = calloc((size_t)workers, sizeof *e->tids);
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
