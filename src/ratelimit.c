/* ratelimit: see ratelimit.h. */
#include "ratelimit.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* The longest interval between two requests: about 73 years. A smaller rate than that (1e-300)
 * is clamped to it, so it still means "wait", and tat + interval cannot overflow. */
#define MAX_INTERVAL_NS (INT64_MAX / 4)

struct ratelimit {
    _Atomic int64_t *tat; /* in the shared page: ns at which the bucket is next empty */
    int fd;
    int64_t interval_ns, burst_ns;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* system-wide, so comparable across processes */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct ratelimit *map(int fd, double rps)
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
    /* In double first: 1e9 / 1e-300 does not fit in an int64, and converting it anyway is
     * undefined (on x86 it became INT64_MIN, a negative interval, which meant no limit at all). */
    double ns = 1e9 / rps;
    rl->interval_ns = !(ns >= 1) ? 1 : ns >= (double)MAX_INTERVAL_NS ? MAX_INTERVAL_NS : (int64_t)ns;
    /* Tolerance for rps/100 requests early: smooths timer jitter without letting a second's
     * count drift more than 1% over the limit. */
    double burst = rps / 100 * (double)rl->interval_ns;
    rl->burst_ns = !(burst >= 0) ? 0 : burst >= (double)MAX_INTERVAL_NS ? MAX_INTERVAL_NS : (int64_t)burst;
    return rl;
}

struct ratelimit *ratelimit_new(double rps)
{
    if (!(rps > 0))
        return NULL;
    int fd = memfd_create("annotate-ratelimit", 0); /* inherited across exec on purpose */
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, 4096)) {
        close(fd);
        return NULL;
    }
    struct ratelimit *rl = map(fd, rps);
    if (!rl) {
        close(fd);
        return NULL;
    }
    atomic_store(rl->tat, mono_ns());
    return rl;
}

struct ratelimit *ratelimit_attach(int fd, double rps)
{
    return rps > 0 ? map(fd, rps) : NULL;
}

int ratelimit_fd(const struct ratelimit *rl)
{
    return rl->fd;
}

double ratelimit_take(struct ratelimit *rl)
{
    /* GCRA: tat advances by one interval per request; a request may go once it is no more than
     * the burst tolerance ahead of now. */
    int64_t now = mono_ns();
    int64_t old = atomic_load(rl->tat), next;
    do {
        int64_t base = old > now ? old : now;
        /* Saturates rather than wraps: at a rate of one request in decades, many takes at once
         * would otherwise carry tat past INT64_MAX into the past. */
        next = base > INT64_MAX - rl->interval_ns ? INT64_MAX : base + rl->interval_ns;
    } while (!atomic_compare_exchange_weak(rl->tat, &old, next));
    int64_t at = old - rl->burst_ns;
    return at > now ? (double)(at - now) / 1e9 : 0.0;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    munmap((void *)rl->tat, 4096);
    close(rl->fd);
    free(rl);
}
