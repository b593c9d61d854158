/* ratelimit: see ratelimit.h. */
#include "endpoint/ratelimit.h"

#include "pipeline/pipeline.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* The longest interval between two requests: about 73 years. A smaller rate than that (1e-300)
 * is clamped to it, so it still means "wait", and tat + interval cannot overflow. */
#define MAX_INTERVAL_NS (INT64_MAX / 4)

/* The page holds the buckets' arrival times: the run's, then one per stage. */
#define N_BUCKETS (1 + PIPELINE_MAX_STAGES)

struct bucket {
    int on;
    int64_t interval_ns, burst_ns;
};

struct ratelimit {
    _Atomic int64_t *tat; /* in the shared page: [N_BUCKETS], ns at which each bucket is next empty */
    int fd;
    struct bucket b[N_BUCKETS];
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* system-wide, so comparable across processes */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void set_rate(struct bucket *b, double rps)
{
    if (!(rps > 0))
        return;
    b->on = 1;
    /* In double first: 1e9 / 1e-300 does not fit in an int64, and converting it anyway is
     * undefined (on x86 it became INT64_MIN, a negative interval, which meant no limit at all). */
    double ns = 1e9 / rps;
    b->interval_ns = !(ns >= 1) ? 1 : ns >= (double)MAX_INTERVAL_NS ? MAX_INTERVAL_NS : (int64_t)ns;
    /* Tolerance for rps/100 requests early: smooths timer jitter without letting a second's
     * count drift more than 1% over the limit. */
    double burst = rps / 100 * (double)b->interval_ns;
    b->burst_ns = !(burst >= 0) ? 0 : burst >= (double)MAX_INTERVAL_NS ? MAX_INTERVAL_NS : (int64_t)burst;
}

static struct ratelimit *map(int fd, double rps, const struct pipeline *p)
{
    struct ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        free(rl);
        return NULL;
    }
    rl->tat = m;
    rl->fd = fd;
    set_rate(&rl->b[0], rps);
    for (int s = 0; p && s < p->n && s < PIPELINE_MAX_STAGES; s++)
        set_rate(&rl->b[1 + s], p->stages[s].max_rps);
    return rl;
}

int ratelimit_wanted(double rps, const struct pipeline *p)
{
    if (rps > 0)
        return 1;
    for (int s = 0; p && s < p->n; s++)
        if (p->stages[s].max_rps > 0)
            return 1;
    return 0;
}

struct ratelimit *ratelimit_new_stages(double rps, const struct pipeline *p)
{
    if (!ratelimit_wanted(rps, p))
        return NULL;
    int fd = memfd_create("annotate-ratelimit", 0); /* inherited across exec on purpose */
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, 4096)) {
        close(fd);
        return NULL;
    }
    struct ratelimit *rl = map(fd, rps, p);
    if (!rl) {
        close(fd);
        return NULL;
    }
    int64_t now = mono_ns();
    for (int i = 0; i < N_BUCKETS; i++)
        atomic_store(&rl->tat[i], now);
    return rl;
}

struct ratelimit *ratelimit_new(double rps)
{
    return rps > 0 ? ratelimit_new_stages(rps, NULL) : NULL;
}

struct ratelimit *ratelimit_attach_stages(int fd, double rps, const struct pipeline *p)
{
    return ratelimit_wanted(rps, p) ? map(fd, rps, p) : NULL;
}

struct ratelimit *ratelimit_attach(int fd, double rps)
{
    return rps > 0 ? map(fd, rps, NULL) : NULL;
}

int ratelimit_fd(const struct ratelimit *rl)
{
    return rl->fd;
}

/* GCRA: tat advances by one interval per request; a request arriving at `at` may go once it is
 * no more than the burst tolerance ahead. Returns when its token is valid (>= at). */
static int64_t take_at(struct ratelimit *rl, int i, int64_t at)
{
    const struct bucket *b = &rl->b[i];
    int64_t old = atomic_load(&rl->tat[i]), next;
    do {
        int64_t base = old > at ? old : at;
        /* Saturates rather than wraps: at a rate of one request in decades, many takes at once
         * would otherwise carry tat past INT64_MAX into the past. */
        next = base > INT64_MAX - b->interval_ns ? INT64_MAX : base + b->interval_ns;
    } while (!atomic_compare_exchange_weak(&rl->tat[i], &old, next));
    int64_t valid = old - b->burst_ns;
    return valid > at ? valid : at;
}

double ratelimit_take(struct ratelimit *rl)
{
    int64_t now = mono_ns();
    return rl->b[0].on ? (double)(take_at(rl, 0, now) - now) / 1e9 : 0.0;
}

double ratelimit_take_stage(struct ratelimit *rl, int s)
{
    if (s < 0 || s >= PIPELINE_MAX_STAGES || !rl->b[1 + s].on)
        return 0.0;
    int64_t now = mono_ns();
    return (double)(take_at(rl, 1 + s, now) - now) / 1e9;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    munmap((void *)rl->tat, 4096);
    close(rl->fd);
    free(rl);
}
