/* exec: see exec.h. The job worker and the choice of back end. */
#include "exec.h"

#include <stdio.h>
#include <stdlib.h>

#include "http.h"

struct job_worker {
    const struct run *run;
    unsigned jobs;
    struct http_worker *http; /* JOB_QUERY; NULL when no curl handle could be made */
};

struct job_worker *job_worker_new(const struct run *run, unsigned jobs)
{
    struct job_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->run = run;
    w->jobs = jobs;
    if (jobs & JOB_QUERY)
        w->http = http_worker_new(run);
    return w;
}

void job_worker_run(struct job_worker *w, struct item *it)
{
    if (w->jobs & JOB_LOAD)
        load_image(w->run, it);
    if (w->jobs & JOB_QUERY)
        http_worker_query(w->http, it); /* the chain lets the payload go when it is done with it */
}

void job_worker_free(struct job_worker *w)
{
    if (!w)
        return;
    http_worker_free(w->http);
    free(w);
}

void exec_let_go(const struct run *run, struct item *it)
{
    atomic_fetch_add(&run->stats->unsent, 1);
    item_free(it);
}

int exec_stopping(const struct run *run)
{
    return atomic_load(&run->stop) != RUN_GOING;
}

struct exec *exec_start(enum strategy s, const struct run *run, unsigned jobs, int workers, queue *in,
                        queue *out, char *err, size_t errlen)
{
    if (!jobs || (jobs & ~(unsigned)(JOB_LOAD | JOB_QUERY))) {
        snprintf(err, errlen, "an executor needs jobs to do");
        return NULL;
    }
    switch (s) {
    case STRAT_SERIAL:
        return exec_threads_start(run, jobs, 1, in, out, err, errlen);
    case STRAT_THREADS:
        return exec_threads_start(run, jobs, workers, in, out, err, errlen);
    case STRAT_PROCESSES:
        return exec_proc_start(run, jobs, workers, in, out, err, errlen);
    case STRAT_CURL_MULTI:
        if (jobs != JOB_QUERY) {
            snprintf(err, errlen, "curl-multi sends HTTP requests; it cannot load files");
            return NULL;
        }
        return exec_multi_start(run, in, out, err, errlen);
    default:
        snprintf(err, errlen, "unknown strategy");
        return NULL;
    }
}

void exec_join(struct exec *e)
{
    if (e)
        e->join(e);
}
