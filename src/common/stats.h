/* stats: counters and latency histograms for a run. Histograms have a fixed number of
 * log-spaced buckets (16 per power of two, from 1 µs to about 18 hours: under 5% error), so
 * memory does not grow with the run. Every update is a relaxed atomic add: any thread may
 * record. */
#ifndef ANNOTATE_STATS_H
#define ANNOTATE_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#define HIST_SUB 16 /* buckets per power of two */
#define HIST_BUCKETS (37 * HIST_SUB)

struct hist {
    _Atomic uint64_t b[HIST_BUCKETS];
    _Atomic uint64_t count, max_us, sum_us;
};

void hist_add(struct hist *h, uint64_t us);
/* The q-quantile (0..1) in microseconds, interpolated within its bucket and capped by the max. */
uint64_t hist_quantile(const struct hist *h, double q);
void hist_merge(struct hist *into, const struct hist *from);
void hist_reset(struct hist *h);

struct limit_view;

struct stats {
    _Atomic uint64_t found, ok, failed, skipped;
    _Atomic uint64_t failed_final; /* of the failed rows, those a retry would fail the same way
                                      (item.h: fail_final); the others failed for load */
    _Atomic uint64_t unsent;  /* taken, then let go unsent by a stop: no row, left to --resume */
    _Atomic uint64_t requests, attempts, retries;
    _Atomic int64_t in_flight;
    struct hist request_us;   /* per request, first attempt to final answer */
    struct hist image_us;     /* per image, entering the pipeline to its row */
    int n_stages;
    struct hist *stage_us;    /* [n_stages], per request of that stage */
    _Atomic uint64_t *stage_attempts; /* [n_stages]: HTTP attempts of its requests, retries included */
    struct limit_view *limits; /* [n_stages]: the stages' concurrency limits at the end of the run
                                * (limit.h), for the summary; NULL when no stage has one */
    struct errtally *errors;  /* why rows failed, by stage and reason (errtally.h) */
};

struct stats *stats_new(int n_stages);
void stats_free(struct stats *s);

#endif
