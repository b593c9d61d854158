/* timers: a min-heap of deadlines, each with the caller's pointer: the earliest comes out first.
 * The curl-multi driver parks retries and rate-limit waits in one (multi.c); the tests' simulated
 * server keeps its events in one. Not thread-safe: one owner. */
#ifndef ANNOTATE_TIMERS_H
#define ANNOTATE_TIMERS_H

struct timer {
    double at;
    void *p;
};

struct timers {
    struct timer *h;
    int n, cap;
};

/* Adds p due at `at`. 0, or -1 when out of memory (nothing was added). */
int timers_push(struct timers *t, double at, void *p);

/* Takes the earliest (t->n > 0); its deadline in *at when at is not NULL. */
void *timers_pop(struct timers *t, double *at);

/* The earliest deadline, or -1 when there is none. */
static inline double timers_next(const struct timers *t)
{
    return t->n ? t->h[0].at : -1;
}

void timers_free(struct timers *t);

#endif
