/* Suite "backoff": the backoff before a retry (chain_backoff_ms, src/chain/chain.h).
 *
 * Its contract: exponential with full jitter (a uniform draw from 0 to a ceiling that starts at
 * --backoff-ms and doubles with each retry), the ceiling capped by --backoff-max-ms, and at least
 * the server's Retry-After, itself capped at max(--backoff-max-ms, 60 s). The draws come from the
 * caller's rng state, so with a fixed seed every check here is deterministic: bounds are checked
 * over thousands of draws, never against the clock. */
#include "chain/chain.h"

#include <CUnit/CUnit.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "check.h"

enum { DRAWS = 4000 };

static struct config cfg_of(long backoff_ms, long backoff_max_ms)
{
    struct config c;
    memset(&c, 0, sizeof c);
    c.backoff_ms = backoff_ms;
    c.backoff_max_ms = backoff_max_ms;
    return c;
}

/* The jitter ceiling the contract gives retry `attempt`: backoff * 2^(attempt-1), capped. */
static long ceiling(long backoff_ms, long backoff_max_ms, int attempt)
{
    long c = backoff_ms;
    for (int a = 1; a < attempt && c < backoff_max_ms; a++)
        c *= 2;
    return c < backoff_max_ms ? c : backoff_max_ms;
}

struct draws {
    long min, max;
    double mean;
};

/* DRAWS backoffs for one attempt and Retry-After, from a fixed seed. */
static struct draws draw(const struct config *c, int attempt, long retry_after_s, uint64_t seed)
{
    struct draws d = {LONG_MAX, LONG_MIN, 0};
    uint64_t rng = seed;
    double sum = 0;
    for (int i = 0; i < DRAWS; i++) {
        long v = chain_backoff_ms(c, attempt, retry_after_s, &rng);
        if (v < d.min)
            d.min = v;
        if (v > d.max)
            d.max = v;
        sum += (double)v;
    }
    d.mean = sum / DRAWS;
    return d;
}

/* Full jitter: every draw within [0, ceiling], and the draws really spread over that range
 * (near 0, near the ceiling, mean near half), attempt by attempt as the ceiling doubles. */
static void test_full_jitter_bounds(void)
{
    struct config c = cfg_of(100, 10000);
    for (int a = 1; a <= 12; a++) {
        long top = ceiling(100, 10000, a);
        struct draws d = draw(&c, a, -1, 0x1234567u + (uint64_t)a);
        CHECKF(d.min >= 0 && d.max <= top, "attempt %d: draws in [%ld, %ld], want within [0, %ld]", a, d.min, d.max,
               top);
        CHECKF(d.min <= top / 20, "attempt %d: smallest of %d draws is %ld: no full jitter below %ld?", a, DRAWS,
               d.min, top);
        CHECKF(d.max >= top - top / 20, "attempt %d: largest of %d draws is %ld, the ceiling %ld is never near", a,
               DRAWS, d.max, top);
        CHECKF(d.mean > 0.4 * (double)top && d.mean < 0.6 * (double)top,
               "attempt %d: mean %.1f of draws from [0, %ld]: not uniform", a, d.mean, top);
    }
}

/* The first retry waits at most --backoff-ms; each later one may wait twice as long as the one
 * before, until --backoff-max-ms. */
static void test_attempt_one_vs_later(void)
{
    struct config c = cfg_of(100, 10000);
    struct draws first = draw(&c, 1, -1, 42), second = draw(&c, 2, -1, 42), third = draw(&c, 3, -1, 42);
    CHECKF(first.max <= 100, "attempt 1: up to %ld ms, --backoff-ms is 100", first.max);
    CHECKF(second.max <= 200 && second.max > 100, "attempt 2: up to %ld ms, want (100, 200]", second.max);
    CHECKF(third.max <= 400 && third.max > 200, "attempt 3: up to %ld ms, want (200, 400]", third.max);
    /* 100 * 2^7 = 12800 passes the cap: attempts 8 and on all draw from [0, 10000]. */
    struct draws eighth = draw(&c, 8, -1, 42), ninth = draw(&c, 9, -1, 42);
    CHECKF(eighth.max <= 10000 && eighth.max > 9500, "attempt 8: up to %ld ms, want the cap 10000", eighth.max);
    CHECKF(ninth.max <= 10000 && ninth.max > 9500, "attempt 9: up to %ld ms, want the cap 10000", ninth.max);

    /* --backoff-ms 0: no wait at all, whatever the attempt. */
    struct config zero = cfg_of(0, 0);
    for (int a = 1; a <= 101; a += 10) {
        struct draws d = draw(&zero, a, -1, 7);
        CHECKF(d.min == 0 && d.max == 0, "--backoff-ms 0, attempt %d: waits %ld..%ld ms", a, d.min, d.max);
    }
    /* --backoff-ms equal to --backoff-max-ms: the cap from the first retry on. */
    struct config flat = cfg_of(500, 500);
    for (int a = 1; a <= 4; a++) {
        struct draws d = draw(&flat, a, -1, 9);
        CHECKF(d.min >= 0 && d.max <= 500 && d.max > 450, "--backoff-ms = --backoff-max-ms = 500, attempt %d: %ld..%ld",
               a, d.min, d.max);
    }
}

/* Attempt numbers far past the cap (--retries allows 100; INT_MAX must not overflow a shift):
 * still within --backoff-max-ms, and still spread over it. UBSan (make sanitize) would flag an
 * overflowing shift or conversion here. */
static void test_huge_attempts(void)
{
    static const int attempts[] = {20, 21, 22, 30, 63, 64, 65, 100, 1000, INT_MAX - 1, INT_MAX};
    struct config c = cfg_of(100, 10000);
    struct config widest = cfg_of(3600000, 3600000); /* the largest values the CLI accepts */
    for (size_t i = 0; i < sizeof attempts / sizeof *attempts; i++) {
        struct draws d = draw(&c, attempts[i], -1, 99);
        CHECKF(d.min >= 0 && d.max <= 10000 && d.max > 9500, "attempt %d: %ld..%ld ms, want within [0, 10000]",
               attempts[i], d.min, d.max);
        d = draw(&widest, attempts[i], -1, 99);
        CHECKF(d.min >= 0 && d.max <= 3600000 && d.max > 3400000,
               "--backoff-ms 3600000, attempt %d: %ld..%ld ms, want within [0, 3600000]", attempts[i], d.min, d.max);
    }
    /* The smallest backoff: never past its ceiling, and the ceiling reached at every attempt,
     * also past attempt 21, where the ceiling once stopped doubling at 2^20 x --backoff-ms
     * (about 17 minutes, under the 60-minute cap). */
    struct config tiny = cfg_of(1, 3600000);
    for (int a = 1; a <= 100; a++) {
        struct draws d = draw(&tiny, a, -1, 5);
        long top = ceiling(1, 3600000, a);
        CHECKF(d.min >= 0 && d.max <= top, "--backoff-ms 1, attempt %d: %ld..%ld ms, want within [0, %ld]", a, d.min,
               d.max, top);
        if (a >= 5)
            CHECKF(d.max >= top - top / 20, "--backoff-ms 1, attempt %d: up to %ld ms, the ceiling is %ld", a, d.max,
                   top);
    }
}

/* A negative Retry-After means the server sent none: the same draws as without one, and the
 * same as Retry-After: 0 (at least 0 s). */
static void test_retry_after_negative(void)
{
    static const long none[] = {-1, -2, -1000, LONG_MIN};
    struct config c = cfg_of(100, 10000);
    for (int a = 1; a <= 10; a++) {
        uint64_t ref = 77, zero = 77;
        uint64_t other[4] = {77, 77, 77, 77};
        for (int i = 0; i < 200; i++) {
            long want = chain_backoff_ms(&c, a, -1, &ref);
            CHECKF(chain_backoff_ms(&c, a, 0, &zero) == want, "attempt %d: Retry-After 0 differs from none", a);
            for (size_t k = 1; k < sizeof none / sizeof *none; k++)
                CHECKF(chain_backoff_ms(&c, a, none[k], &other[k]) == want,
                       "attempt %d: Retry-After %ld differs from none (-1)", a, none[k]);
        }
    }
}

/* A Retry-After above the jitter is waited exactly; below it, the jitter wins; the wait is
 * never shorter than asked, up to the Retry-After cap of max(--backoff-max-ms, 60 s). */
static void test_retry_after_honoured(void)
{
    struct config c = cfg_of(100, 10000);
    static const long secs[] = {1, 2, 5, 30, 59, 60};
    for (size_t i = 0; i < sizeof secs / sizeof *secs; i++)
        for (int a = 1; a <= 3; a++) {
            struct draws d = draw(&c, a, secs[i], 3);
            CHECKF(d.min == secs[i] * 1000 && d.max == secs[i] * 1000, "Retry-After %ld, attempt %d: %ld..%ld ms",
                   secs[i], a, d.min, d.max);
        }
    /* Against a jitter ceiling of 10 s, Retry-After 4 s: every draw is max(jitter, 4000). */
    for (int a = 8; a <= 9; a++) {
        uint64_t with = 11, without = 11;
        int above = 0;
        for (int i = 0; i < DRAWS; i++) {
            long j = chain_backoff_ms(&c, a, -1, &without), d = chain_backoff_ms(&c, a, 4, &with);
            CHECKF(d == (j > 4000 ? j : 4000), "attempt %d: jitter %ld, Retry-After 4 s, waited %ld ms", a, j, d);
            above += d > 4000;
        }
        CHECKF(above > DRAWS / 3, "attempt %d: the jitter passed Retry-After in only %d of %d draws", a, above, DRAWS);
    }
}

/* A server asking for minutes, days, or more than a long holds in milliseconds: capped at
 * max(--backoff-max-ms, 60 s), without overflow. */
static void test_retry_after_cap(void)
{
    static const struct {
        long max_ms, ra_s, want_ms;
    } cases[] = {
        /* --backoff-max-ms below 60 s: Retry-After capped at 60 s */
        {10000, 60, 60000},
        {10000, 61, 60000},
        {10000, 3600, 60000},
        {10000, 3L * 86400, 60000},   /* days */
        {10000, 365L * 86400, 60000}, /* a year */
        {10000, LONG_MAX / 1000, 60000},
        {10000, LONG_MAX / 1000 + 1, 60000}, /* * 1000 would overflow */
        {10000, LONG_MAX, 60000},
        {0, 86400, 60000},
        /* above 60 s: capped at --backoff-max-ms */
        {120000, 90, 90000},
        {120000, 120, 120000},
        {120000, 121, 120000},
        {120000, 2L * 86400, 120000},
        {3600000, 7L * 86400, 3600000},
        {3600000, LONG_MAX, 3600000},
        /* a cap that is not whole seconds */
        {60500, 60, 60000},
        {60500, 61, 60500},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        /* --backoff-ms 0: no jitter, so the wait is the Retry-After part alone. */
        struct config c = cfg_of(0, cases[i].max_ms);
        uint64_t rng = 5;
        long d = chain_backoff_ms(&c, 1, cases[i].ra_s, &rng);
        CHECKF(d == cases[i].want_ms, "--backoff-max-ms %ld, Retry-After %ld s: waits %ld ms, want %ld",
               cases[i].max_ms, cases[i].ra_s, d, cases[i].want_ms);
        /* With jitter up to the cap, never above max(cap, the Retry-After cap). */
        struct config j = cfg_of(cases[i].max_ms ? cases[i].max_ms : 1, cases[i].max_ms ? cases[i].max_ms : 1);
        struct draws dr = draw(&j, 30, cases[i].ra_s, 6);
        long top = cases[i].want_ms > j.backoff_max_ms ? cases[i].want_ms : j.backoff_max_ms;
        CHECKF(dr.min >= cases[i].want_ms && dr.max <= top,
               "--backoff-max-ms %ld, Retry-After %ld s, with jitter: %ld..%ld ms, want within [%ld, %ld]",
               j.backoff_max_ms, cases[i].ra_s, dr.min, dr.max, cases[i].want_ms, top);
    }
}

/* The caller's rng state: a zeroed one still draws (rng_next replaces 0), and draws advance it. */
static void test_rng_state(void)
{
    struct config c = cfg_of(100, 10000);
    uint64_t rng = 0;
    long first = chain_backoff_ms(&c, 8, -1, &rng);
    CHECKF(rng != 0, "the rng state stays 0");
    int differ = 0;
    for (int i = 0; i < 100; i++)
        differ += chain_backoff_ms(&c, 8, -1, &rng) != first;
    CHECKF(differ > 90, "from a zero state, %d of 100 draws differ from the first", differ);
    /* Same state, same draw: what makes the other checks here reproducible. */
    uint64_t a = 123, b = 123;
    for (int i = 0; i < 100; i++)
        CHECKF(chain_backoff_ms(&c, 5, -1, &a) == chain_backoff_ms(&c, 5, -1, &b), "draw %d differs for one seed", i);
}

int register_backoff(void)
{
    CU_pSuite s = CU_add_suite("backoff", NULL, NULL);
    if (!s)
        return -1;
    if (!CU_add_test(s, "backoff: full jitter within [0, ceiling], spread over it", test_full_jitter_bounds) ||
        !CU_add_test(s, "backoff: attempt 1 up to --backoff-ms, doubling to the cap", test_attempt_one_vs_later) ||
        !CU_add_test(s, "backoff: huge attempt numbers stay within the cap", test_huge_attempts) ||
        !CU_add_test(s, "backoff: Retry-After < 0 is none", test_retry_after_negative) ||
        !CU_add_test(s, "backoff: at least Retry-After, jitter above it kept", test_retry_after_honoured) ||
        !CU_add_test(s, "backoff: Retry-After of days capped at max(--backoff-max-ms, 60 s)", test_retry_after_cap) ||
        !CU_add_test(s, "backoff: the caller's rng state", test_rng_state))
        return -1;
    return 0;
}
