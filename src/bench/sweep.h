/* sweep: `annotate bench --sweep`: each stage's "concurrency" in turn, its knee, the bottleneck,
 * and the pipeline file it recommends. See sweep.c. */
#ifndef ANNOTATE_BENCH_SWEEP_H
#define ANNOTATE_BENCH_SWEEP_H

#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* What --sweep needs, checked before anything is started or sent: the values of --concurrency
 * into concs (at most 64; *nc of them) and the stages to sweep into *which (a mask of the
 * pipeline's). 0, or 2 with the reason on stderr. Without --sweep, only that no option of it was
 * given. */
int sweep_check(const struct config *cfg, const struct bench_opts *b, int *concs, int *nc, uint64_t *which);

/* The sweep against url (mock: the mock's pid, or -1). Its exit status: 0, 1 (a stage had no
 * knee, a run did not finish), 2 (a set-up error), 130 (stopped by a signal). */
int sweep_main(const struct config *cfg, const struct bench_opts *b, const char *url, pid_t mock, const int *concs,
               int nc, uint64_t which);

#endif
