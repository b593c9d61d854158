/* job: see job.h. */
#include "drivers/job.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "common/prepstat.h"
#include "common/stats.h"
#include "endpoint/shared.h"
#include "drivers/blocking.h"
#include "flow/load.h"

struct job_worker {
    const struct run *run;
    unsigned jobs;
    struct loader *load;   /* JOB_LOAD; NULL when out of memory (load_item says so) */
    struct blocking *http; /* JOB_QUERY; NULL when no curl handle could be made */
};

struct job_worker *job_worker_new(const struct run *run, unsigned jobs)
{
    struct job_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->run = run;
    w->jobs = jobs;
    if (jobs & JOB_LOAD)
        w->load = loader_new(run);
    if (jobs & JOB_QUERY)
        w->http = blocking_new(run);
    return w;
}

void job_worker_run(struct job_worker *w, struct item *it)
{
    if (w->jobs & JOB_LOAD) {
        int64_t t0 = prepstat_now_us();
        load_item(w->load, w->run, it);
        if ((w->jobs & JOB_QUERY) && w->run->shared) /* this worker's query side waited for it (prepstat.h) */
            prepstat_add_starved(&w->run->shared->prep, (uint64_t)(prepstat_now_us() - t0));
    }
    if (w->jobs & JOB_QUERY)
        blocking_query(w->http, it); /* the chain lets the payload go when it is done with it */
}

void job_worker_free(struct job_worker *w)
{
    if (!w)
        return;
    loader_free(w->load);
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

