/* Suites "stats" and "stats concurrent": latency histograms (src/common/stats.c) and the --max-rps
 * limiter (src/endpoint/ratelimit.c).
 *
 * Histograms on known distributions (a constant, uniform 1..100000, zeros, huge values), merge
 * and reset. The limiter is checked from the waits it returns, never by sleeping: a caller that
 * takes 2000 tokens at 1000 rps and sleeps what it is told would sleep about 2 s in all.
 * "stats concurrent" (run under TSan by make tsan) records and takes from several threads. */
#include "endpoint/ratelimit.h"
#include "common/stats.h"

#include <CUnit/CUnit.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "flow/item.h" /* now_s */

static struct hist *hist_new(void)
{
    struct hist *h = malloc(sizeof *h);
    if (h)
        hist_reset(h);
    return h;
}

static int near(double got, double want, double rel)
{
    return fabs(got - want) <= rel * want;
}

/* ---- histograms ---- */

static void test_empty(void)
{
    struct hist *h = hist_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT_EQUAL(hist_quantile(h, 0.5), 0);
    CU_ASSERT_EQUAL(hist_quantile(h, 0.0), 0);
    CU_ASSERT_EQUAL(hist_quantile(h, 1.0), 0);
    CU_ASSERT_EQUAL(h->count, 0);
    free(h);
}

static void test_constant(void)
{
    struct hist *h = hist_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    for (int i = 0; i < 1000; i++)
        hist_add(h, 1000);
    CU_ASSERT_EQUAL(h->count, 1000);
    CU_ASSERT_EQUAL(h->sum_us, 1000000);
    CU_ASSERT_EQUAL(h->max_us, 1000);
    double qs[] = {0.0, 0.01, 0.5, 0.9, 0.99, 1.0};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        uint64_t v = hist_quantile(h, qs[i]);
        /* Within the bucket around 1000 (buckets are 1/16 of a power of two wide), never past the max. */
        CHECKF(v >= 1000 - 1000 / 16 && v <= 1000, "q %.2f of a constant 1000: %llu", qs[i], (unsigned long long)v);
    }
    free(h);
}

static void test_uniform(void)
{
    struct hist *h = hist_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    uint64_t sum = 0;
    for (uint64_t us = 1; us <= 100000; us++) {
        hist_add(h, us);
        sum += us;
    }
    CU_ASSERT_EQUAL(h->count, 100000);
    CU_ASSERT_EQUAL(h->sum_us, sum);
    CU_ASSERT_EQUAL(h->max_us, 100000);
    uint64_t p50 = hist_quantile(h, 0.5), p90 = hist_quantile(h, 0.9), p99 = hist_quantile(h, 0.99);
    CHECKF(near((double)p50, 50000, 0.25), "p50 %llu", (unsigned long long)p50);
    CHECKF(near((double)p99, 99000, 0.25), "p99 %llu", (unsigned long long)p99);
    /* What the header promises: under 5% error. */
    CHECKF(near((double)p50, 50000, 0.05), "p50 %llu not within 5%%", (unsigned long long)p50);
    CHECKF(near((double)p90, 90000, 0.05), "p90 %llu not within 5%%", (unsigned long long)p90);
    CHECKF(near((double)p99, 99000, 0.05), "p99 %llu not within 5%%", (unsigned long long)p99);
    CU_ASSERT_EQUAL(hist_quantile(h, 1.0), 100000); /* the max, exactly */
    uint64_t p0 = hist_quantile(h, 0.0);
    CHECKF(p0 <= 2, "p0 %llu", (unsigned long long)p0);
    /* Quantiles never go down as q goes up. */
    uint64_t prev = 0;
    int mono = 1;
    for (int i = 0; i <= 1000; i++) {
        uint64_t v = hist_quantile(h, i / 1000.0);
        mono &= v >= prev;
        prev = v;
    }
    CU_ASSERT_TRUE(mono);
    free(h);
}

static void test_edges(void)
{
    struct hist *h = hist_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    hist_add(h, 0);
    hist_add(h, 0);
    CU_ASSERT_EQUAL(hist_quantile(h, 0.5), 0);
    CU_ASSERT_EQUAL(h->max_us, 0);
    /* Beyond the last bucket (a stuck request: 11 days): counted, max exact. */
    uint64_t huge = 1000000ull * 86400 * 11;
    hist_add(h, huge);
    CU_ASSERT_EQUAL(h->count, 3);
    CU_ASSERT_EQUAL(h->max_us, huge);
    CU_ASSERT_EQUAL(hist_quantile(h, 1.0), huge);
    CU_ASSERT_EQUAL(hist_quantile(h, 0.5), 0);
    hist_add(h, UINT64_MAX / 4);
    CU_ASSERT_EQUAL(hist_quantile(h, 1.0), UINT64_MAX / 4);
    /* Small values, each in its own bucket. */
    hist_reset(h);
    for (uint64_t v = 1; v <= 16; v++)
        hist_add(h, v);
    for (uint64_t v = 1; v <= 16; v++) {
        uint64_t q = hist_quantile(h, (double)v / 16.0);
        CHECKF(q + 1 >= v && q <= v + 1, "q(%llu/16) of 1..16 is %llu", (unsigned long long)v, (unsigned long long)q);
    }
    hist_reset(h);
    CU_ASSERT_EQUAL(h->count, 0);
    CU_ASSERT_EQUAL(h->max_us, 0);
    CU_ASSERT_EQUAL(h->sum_us, 0);
    CU_ASSERT_EQUAL(hist_quantile(h, 0.5), 0);
    free(h);
}

static void test_merge(void)
{
    struct hist *a = hist_new(), *b = hist_new(), *all = hist_new();
    CU_ASSERT_FATAL(a && b && all);
    for (uint64_t us = 1; us <= 100000; us += 3) {
        hist_add(all, us);
        hist_add(us % 2 ? a : b, us);
    }
    hist_add(b, 777777);
    hist_add(all, 777777);
    hist_merge(a, b);
    CU_ASSERT_EQUAL(a->count, all->count);
    CU_ASSERT_EQUAL(a->sum_us, all->sum_us);
    CU_ASSERT_EQUAL(a->max_us, 777777);
    CU_ASSERT_EQUAL(memcmp((const void *)a->b, (const void *)all->b, sizeof a->b), 0);
    double qs[] = {0.1, 0.5, 0.9, 0.99, 1.0};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        CU_ASSERT_EQUAL(hist_quantile(a, qs[i]), hist_quantile(all, qs[i]));
    /* Merging an empty one changes nothing; into an empty one copies. */
    struct hist *e = hist_new();
    hist_merge(a, e);
    CU_ASSERT_EQUAL(a->count, all->count);
    CU_ASSERT_EQUAL(a->max_us, 777777);
    hist_merge(e, all);
    CU_ASSERT_EQUAL(e->count, all->count);
    CU_ASSERT_EQUAL(e->max_us, all->max_us);
    CU_ASSERT_EQUAL(hist_quantile(e, 0.5), hist_quantile(all, 0.5));
    free(a);
    free(b);
    free(all);
    free(e);
}

static void test_stats_new(void)
{
    struct stats *s = stats_new(5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_EQUAL(s->n_stages, 5);
    CU_ASSERT_PTR_NOT_NULL(s->stage_us);
    CU_ASSERT_EQUAL(s->found, 0);
    CU_ASSERT_EQUAL(s->request_us.count, 0);
    for (int i = 0; i < 5; i++) {
        hist_add(&s->stage_us[i], (uint64_t)(i + 1) * 100);
        CU_ASSERT_EQUAL(s->stage_us[i].count, 1);
    }
    stats_free(s);
    stats_free(NULL);
}

/* ---- ratelimit ---- */

static void test_ratelimit_waits(void)
{
    enum { N = 2000 };
    const double rps = 1000, interval = 1.0 / rps;
    double t0 = now_s();
    struct ratelimit *rl = ratelimit_new(rps);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rl);
    double *w = malloc(N * sizeof *w);
    for (int i = 0; i < N; i++)
        w[i] = ratelimit_take(rl);
    /* Time spent taking (microseconds, unless this thread was descheduled) counts as waited. */
    double spent = now_s() - t0;
    /* A caller that sleeps what it is told before each send: the waits are measured from the
     * moment of each take, so it sleeps max(0, w - already slept) more each time. */
    double slept = 0, raw_sum = 0;
    int zeros = 0, step_ok = 1;
    for (int i = 0; i < N; i++) {
        CU_ASSERT(w[i] >= 0);
        if (w[i] > slept)
            slept = w[i];
        raw_sum += w[i];
        zeros += w[i] == 0;
        if (i) /* (it may shrink, if this thread was descheduled between two takes) */
            step_ok &= w[i] - w[i - 1] <= interval + 1e-6;
    }
    CHECKF(near(slept + spent, N / rps, 0.10), "2000 tokens at 1000 rps: %.3f s of sleeping (+%.3f s taking), want "
           "about 2 s", slept, spent);
    /* Bursts of 1 + rps/100 pass at once (more if time passed while taking). */
    CHECKF(zeros >= 1 + (int)(rps / 100) && zeros <= 1 + (int)(rps / 100) + (int)(spent * rps) + 1,
           "%d tokens without a wait, want 11 (%.3f s spent taking)", zeros, spent);
    CHECKF(step_ok, "a wait grew by more than one interval");
    /* Waits are deadlines, not increments: adding them up is quadratic, not 2 s. */
    CU_ASSERT(raw_sum > 100 * slept);
    free(w);

    /* A second limiter attached to the same page shares the bucket (the fd is dup'ed: each
     * limiter closes its own). */
    struct ratelimit *other = ratelimit_attach(dup(ratelimit_fd(rl)), rps);
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    double w2 = ratelimit_take(other) + (now_s() - t0) - spent;
    CHECKF(w2 > slept - 0.1 && w2 < slept + 0.1, "the attached limiter waits %.3f s, the first one is at %.3f", w2, slept);
    ratelimit_free(other);
    ratelimit_free(rl);
    ratelimit_free(NULL);

    CU_ASSERT_PTR_NULL(ratelimit_new(0));
    CU_ASSERT_PTR_NULL(ratelimit_new(-5));
    CU_ASSERT_PTR_NULL(ratelimit_new(NAN));

    /* A slow rate: the second token waits about one interval (2 s) less the 10 ms tolerance. */
    rl = ratelimit_new(0.5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rl);
    CU_ASSERT_EQUAL(ratelimit_take(rl), 0);
    double s2 = ratelimit_take(rl);
    CHECKF(s2 > 1.9 && s2 <= 2.0, "0.5 rps: second wait %.3f", s2);
    ratelimit_free(rl);
}

/* ---- concurrent ---- */

enum { T = 4, PER = 50000, TAKES = 500 };

struct worker {
    struct hist *h;
    struct ratelimit *rl;
    int id;
    /* Each take's deadline (when its token is valid) lies between the clock read before it plus
     * its wait and the clock read after it plus its wait: the latest of each; and the clock
     * read before and after its first take. */
    double last_lo, last_hi, first_lo, first_hi;
};

static void *hist_worker(void *arg)
{
    struct worker *w = arg;
    for (uint64_t i = 1; i <= PER; i++)
        hist_add(w->h, i + (uint64_t)w->id * PER);
    return NULL;
}

static void *take_worker(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < TAKES; i++) {
        double before = now_s(), x = ratelimit_take(w->rl), after = now_s();
        if (i == 0) {
            w->first_lo = before;
            w->first_hi = after;
        }
        if (before + x > w->last_lo)
            w->last_lo = before + x;
        if (after + x > w->last_hi)
            w->last_hi = after + x;
    }
    return NULL;
}

static void test_concurrent_hist(void)
{
    struct hist *h = hist_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    pthread_t t[T];
    struct worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){.h = h, .id = i};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, hist_worker, &w[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    uint64_t n = (uint64_t)T * PER;
    CU_ASSERT_EQUAL(h->count, n);
    CU_ASSERT_EQUAL(h->sum_us, n * (n + 1) / 2);
    CU_ASSERT_EQUAL(h->max_us, n);
    uint64_t total = 0;
    for (int b = 0; b < HIST_BUCKETS; b++)
        total += h->b[b];
    CU_ASSERT_EQUAL(total, n);
    free(h);
}

static void test_concurrent_ratelimit(void)
{
    const double rps = 1000;
    struct ratelimit *rl = ratelimit_new(rps);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rl);
    pthread_t t[T];
    struct worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){.rl = rl, .id = i};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, take_worker, &w[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    /* Every take advanced the shared deadline once: the last token is valid about 2000
     * intervals after the first take. Bounded from both sides by clock reads around the takes
     * (the first take came after the earliest clock read before one, and before every clock read
     * after one), so that a thread descheduled between them (a loaded machine, a sanitizer)
     * cannot fail it: a take that did not advance it, or advanced it twice, still does. */
    double first_lo = w[0].first_lo, first_hi = w[0].first_hi, lo = 0, hi = 0, span = T * TAKES / rps;
    for (int i = 0; i < T; i++) {
        first_lo = w[i].first_lo < first_lo ? w[i].first_lo : first_lo;
        first_hi = w[i].first_hi < first_hi ? w[i].first_hi : first_hi;
        lo = w[i].last_lo > lo ? w[i].last_lo : lo;
        hi = w[i].last_hi > hi ? w[i].last_hi : hi;
    }
    CHECKF(hi - first_lo >= span - 0.10, "4 threads x 500 tokens at 1000 rps: the last valid at most %.3f s after "
           "the first take", hi - first_lo);
    CHECKF(lo - first_hi <= span + 0.10, "4 threads x 500 tokens at 1000 rps: the last valid at least %.3f s after "
           "the first take", lo - first_hi);
    ratelimit_free(rl);
}

int register_stats(void)
{
    CU_pSuite s = CU_add_suite("stats", NULL, NULL);
    if (!s)
        return -1;
    if (!CU_add_test(s, "empty histogram", test_empty) ||
        !CU_add_test(s, "constant 1000 us: every quantile in its bucket", test_constant) ||
        !CU_add_test(s, "uniform 1..100000: p50, p90, p99, max", test_uniform) ||
        !CU_add_test(s, "zeros, huge values, small values, reset", test_edges) ||
        !CU_add_test(s, "merge equals recording everything in one", test_merge) ||
        !CU_add_test(s, "stats_new/stats_free", test_stats_new) ||
        !CU_add_test(s, "ratelimit: 2000 tokens at 1000 rps mean about 2 s of waiting", test_ratelimit_waits))
        return -1;
    CU_pSuite c = CU_add_suite("stats concurrent", NULL, NULL);
    if (!c)
        return -1;
    if (!CU_add_test(c, "4 threads record into one histogram", test_concurrent_hist) ||
        !CU_add_test(c, "4 threads take from one limiter", test_concurrent_ratelimit))
        return -1;
    return 0;
}
