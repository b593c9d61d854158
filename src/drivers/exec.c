/* exec: see exec.h. The choice of back end (backend.h). */
#include "drivers/exec.h"
#include "drivers/backend.h"

#include <stdio.h>

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
        if (jobs == JOB_LOAD) /* fetches of S3 objects and image URLs (loadmulti.c) */
            return exec_load_multi_start(run, in, out, err, errlen);
        if (jobs != JOB_QUERY) {
            snprintf(err, errlen, "curl-multi runs either the load stage (fetches) or the query stage, not both");
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
