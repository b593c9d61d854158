/* stats: see stats.h. */
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int bucket_of(uint64_t us)
{
    if (us < 1)
        return 0;
    int lg = 63 - __builtin_clzll(us);            /* floor(log2) */
    int sub = lg >= 2 ? (int)((us >> (lg - 2)) & 3) : (int)((us << (2 - lg)) & 3);
    int b = lg * 4 + sub + 1;
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

static uint64_t bucket_upper(int b)
{
    if (b == 0)
        return 1;
    int lg = (b - 1) / 4, sub = (b - 1) % 4;
    double lo = ldexp(1.0 + sub / 4.0, lg), hi = ldexp(1.0 + (sub + 1) / 4.0, lg);
    (void)lo;
    return (uint64_t)hi;
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
    uint64_t want = (uint64_t)ceil(q * (double)n), seen = 0;
    if (want < 1)
        want = 1;
    uint64_t max = atomic_load_explicit(&h->max_us, memory_order_relaxed);
    for (int b = 0; b < HIST_BUCKETS; b++) {
        seen += atomic_load_explicit(&h->b[b], memory_order_relaxed);
        if (seen >= want) {
            uint64_t up = bucket_upper(b);
            return up < max ? up : max;
        }
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
    if (!s->stage_us) {
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
    free(s);
}
