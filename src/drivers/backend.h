/* backend: what every executor's back end is to exec.c, which picks one (exec.h). Each back
 * end's state starts with struct exec; exec_join calls its join. */
#ifndef ANNOTATE_BACKEND_H
#define ANNOTATE_BACKEND_H

#include <stddef.h>
#include "drivers/job.h"
#include "flow/queue.h"
#include "run.h"

struct exec {
    void (*join)(struct exec *self);
};

/* Each returns NULL with err when it cannot start (see exec_start). */
struct exec *exec_threads_start(const struct run *run, unsigned jobs, int workers, queue *in, queue *out,
                                char *err, size_t errlen);
struct exec *exec_proc_start(const struct run *run, unsigned jobs, int workers, queue *in, queue *out,
                             char *err, size_t errlen);
struct exec *exec_multi_start(const struct run *run, queue *in, queue *out, char *err, size_t errlen);
struct exec *exec_load_multi_start(const struct run *run, queue *in, queue *out, char *err, size_t errlen);

#endif
