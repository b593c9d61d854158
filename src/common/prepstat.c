/* prepstat: see prepstat.h. Relaxed atomic adds: any thread of any process may count. */
#include "common/prepstat.h"

#include <time.h>

int64_t prepstat_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + 1;
}

void prepstat_add_prep(struct prepstat *ps, int copies, uint64_t us)
{
    atomic_fetch_add_explicit(&ps->images, copies > 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&ps->copies, (uint64_t)copies, memory_order_relaxed);
    atomic_fetch_add_explicit(&ps->prep_us, us, memory_order_relaxed);
}

void prepstat_add_starved(struct prepstat *ps, uint64_t us)
{
    atomic_fetch_add_explicit(&ps->starved_us, us, memory_order_relaxed);
}

void prepstat_starve_begin(struct prepstat *ps)
{
    atomic_store(&ps->starved_since_us, prepstat_now_us());
}

void prepstat_starve_end(struct prepstat *ps)
{
    int64_t since = atomic_exchange(&ps->starved_since_us, 0), now = prepstat_now_us();
    if (since > 0 && now > since)
        prepstat_add_starved(ps, (uint64_t)(now - since));
}

void prepstat_sample(const struct prepstat *ps, struct prep_sample *s)
{
    s->t_us = prepstat_now_us();
    s->images = atomic_load(&ps->images);
    s->prep_us = atomic_load(&ps->prep_us);
    s->starved_us = atomic_load(&ps->starved_us);
    int64_t since = atomic_load(&ps->starved_since_us);
    if (since > 0 && since < s->t_us)
        s->starved_us += (uint64_t)(s->t_us - since);
}

static double share(uint64_t from, uint64_t to, int n, double window_s)
{
    double x = to > from ? (double)(to - from) / 1e6 / ((n > 0 ? n : 1) * window_s) : 0;
    return x > 1 ? 1 : x;
}

void prepstat_judge(const struct prepstat *ps, const struct prep_sample *a, const struct prep_sample *b,
                    struct prep_verdict *v)
{
    v->window_s = (double)(b->t_us - a->t_us) / 1e6;
    if (v->window_s <= 0) {
        *v = (struct prep_verdict){0};
        return;
    }
    v->busy = share(a->prep_us, b->prep_us, atomic_load(&ps->threads), v->window_s);
    v->starved = share(a->starved_us, b->starved_us, atomic_load(&ps->lanes), v->window_s);
    v->bottleneck = v->busy > PREPSTAT_SHARE && v->starved > PREPSTAT_SHARE;
}
