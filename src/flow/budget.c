/* budget: see budget.h. */
#include "flow/budget.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t freed = PTHREAD_COND_INITIALIZER;
static uint64_t cap, held, peak;

void budget_set(uint64_t max_bytes)
{
    pthread_mutex_lock(&mu);
    cap = max_bytes;
    pthread_mutex_unlock(&mu);
}

int budget_take(uint64_t n, void (*alive)(const void *), int (*stop)(const void *), const void *arg)
{
    pthread_mutex_lock(&mu);
    while (cap && held && held + n > cap) {
        if (stop && stop(arg)) {
            pthread_mutex_unlock(&mu);
            return -1;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&freed, &mu, &ts);
        if (alive) {
            pthread_mutex_unlock(&mu);
            alive(arg);
            pthread_mutex_lock(&mu);
        }
    }
    held += n;
    if (held > peak)
        peak = held;
    pthread_mutex_unlock(&mu);
    return 0;
}

void budget_give(uint64_t n)
{
    pthread_mutex_lock(&mu);
    held = n > held ? 0 : held - n;
    pthread_cond_broadcast(&freed);
    pthread_mutex_unlock(&mu);
}

uint64_t budget_held(void)
{
    pthread_mutex_lock(&mu);
    uint64_t h = held;
    pthread_mutex_unlock(&mu);
    return h;
}

uint64_t budget_peak(void)
{
    pthread_mutex_lock(&mu);
    uint64_t p = peak;
    pthread_mutex_unlock(&mu);
    return p;
}
