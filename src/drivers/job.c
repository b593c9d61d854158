/* job: see job.h. */
#include "drivers/job.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "common/stats.h"
#include "drivers/blocking.h"
#include "flow/load.h"

struct job_worker {
    const struct run *run;
    unsigned jobs;
    struct blocking *http; /* JOB_QUERY; NULL when no curl handle could be made */
};

struct job_worker *job_worker_new(const struct run *run, unsigned jobs)
{
    struct job_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->run = run;
    w->jobs = jobs;
    if (jobs & JOB_QUERY)
        w->http = blocking_new(run);
    return w;
}

void job_worker_run(struct job_worker *w, struct item *it)
{
    if (w->jobs & JOB_LOAD)
        load_image(w->run, it);
    if (w->jobs & JOB_QUERY)
        blocking_query(w->http, it); /* the chain lets the payload go when it is done with it */
}

void job_worker_free(struct job_worker *w)
{
    if (!w)
        return;
    blocking_free(w->http);
    free(w);
}

void exec_let_go(const struct run *run, struct item *it)
{
    atomic_fetch_add(&run->stats->unsent, 1);
    item_free(it);
}

int exec_stopping(const struct run *run)
{
    return run_stop_state(run) != RUN_GOING;
}

