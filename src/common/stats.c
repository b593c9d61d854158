/* stats: see stats.h. */
#include "common/stats.h"

#include "common/errtally.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int bucket_of(uint64_t us)
{
    if (us < 1)
        return 0;
    int lg = 63 - __builtin_clzll(us); /* floor(log2) */
    int sub = lg >= 4 ? (int)((us >> (lg - 4)) & (HIST_SUB - 1)) : (int)((us << (4 - lg)) & (HIST_SUB - 1));
    int b = lg * HIST_SUB + sub + 1;
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

/* [lo, hi) of bucket b in microseconds. */
static void bucket_range(int b, double *lo, double *hi)
{
    if (b == 0) {
        *lo = 0;
        *hi = 1;
        return;
    }
    int lg = (b - 1) / HIST_SUB, sub = (b - 1) % HIST_SUB;
    *lo = ldexp(1.0 + (double)sub / HIST_SUB, lg);
    *hi = ldexp(1.0 + (double)(sub + 1) / HIST_SUB, lg);
}

void hist_add(struct hist *h, uint64_t us)
{
    atomic_fetch_add_explicit(&h->b[bucket_of(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
    uint64_t m = atomic_load_explicit(&h->max_us, memory_order_relaxed);
    while (us > m && !atomic_compare_exchange_weak_explicit(&h->max_us, &m, us, memory_order_relaxed,
                                                            memory_order_relaxed))
        ;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t n = atomic_load_explicit(&h->count, memory_order_relaxed);
    if (n == 0)
        return 0;
    double want = q * (double)n;
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    uint64_t max = atomic_load_explicit(&h->max_us, memory_order_relaxed);
    for (int b = 0; b < HIST_BUCKETS; b++) {
        uint64_t c = atomic_load_explicit(&h->b[b], memory_order_relaxed);
        if (c && (double)(seen + c) >= want) {
            double lo, hi;
            bucket_range(b, &lo, &hi);
            if (b == HIST_BUCKETS - 1 && (double)max > hi)
                hi = (double)max; /* the last bucket holds everything above its start */
            double v = lo + (hi - lo) * ((want - (double)seen) / (double)c);
            return v < (double)max ? (uint64_t)v : max;
        }
        seen += c;
    }
    return max;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    for (int b = 0; b < HIST_BUCKETS; b++)
        atomic_fetch_add_explicit(&into->b[b], atomic_load_explicit(&from->b[b], memory_order_relaxed),
                                  memory_order_relaxed);
    atomic_fetch_add_explicit(&into->count, atomic_load_explicit(&from->count, memory_order_relaxed), memory_order_relaxed);
    atomic_fetch_add_explicit(&into->sum_us, atomic_load_explicit(&from->sum_us, memory_order_relaxed), memory_order_relaxed);
    uint64_t m = atomic_load_explicit(&from->max_us, memory_order_relaxed);
    if (m > atomic_load_explicit(&into->max_us, memory_order_relaxed))
        atomic_store_explicit(&into->max_us, m, memory_order_relaxed);
}

void hist_reset(struct hist *h)
{
    for (int b = 0; b < HIST_BUCKETS; b++)
        atomic_store_explicit(&h->b[b], 0, memory_order_relaxed);
    atomic_store_explicit(&h->count, 0, memory_order_relaxed);
    atomic_store_explicit(&h->sum_us, 0, memory_order_relaxed);
    atomic_store_explicit(&h->max_us, 0, memory_order_relaxed);
}

struct stats *stats_new(int n_stages)
{
    struct stats *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->n_stages = n_stages;
    s->stage_us = calloc((size_t)n_stages + 1, sizeof *s->stage_us);
    s->stage_attempts = calloc((size_t)n_stages + 1, sizeof *s->stage_attempts);
    s->errors = errtally_new();
    if (!s->stage_us || !s->stage_attempts || !s->errors) {
        free(s->stage_us);
        free(s->stage_attempts);
        errtally_free(s->errors);
        free(s);
        return NULL;
    }
    return s;
}

void stats_free(struct stats *s)
{
    if (!s)
        return;
    free(s->stage_us);
    free(s->stage_attempts);
    errtally_free(s->errors);
    free(s->limits);
    free(s);
}
