/* Suite "options": the option table of src/cli.c, parsed in this process (no annotate child):
 * each numeric option's range (both ends accepted and stored, one step outside refused with a
 * message naming the option, the value and the range), the custom options, flags and strings;
 * and the rate limiter with rates at the edges of what --max-rps could be given. */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "ratelimit.h"

/* ---- ratelimit ---- */

/* A rate so small that 1e9 / rps does not fit in an int64 still limits: the first request goes
 * at once, the next waits (decades), and neither wait is negative or NaN. Huge rates do not
 * limit and do not break. */
static void test_ratelimit_extreme_rates(void)
{
    static const double tiny[] = {1e-300, 1e-12, 1e-9};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++) {
        struct ratelimit *rl = ratelimit_new(tiny[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(rl);
        double w1 = ratelimit_take(rl), w2 = ratelimit_take(rl);
        CHECKF(w1 == 0, "rps %g: the first request waits %g s", tiny[i], w1);
        CHECKF(w2 > 365.0 * 86400, "rps %g: the second request waits %g s, want years", tiny[i], w2);
        /* Many more takes do not wrap the deadline around into the past. */
        double w = 0;
        for (int k = 0; k < 10; k++)
            w = ratelimit_take(rl);
        CHECKF(w >= w2, "rps %g: after 12 takes the wait is %g s, below the second's %g s", tiny[i], w, w2);
        ratelimit_free(rl);
    }
    static const double huge[] = {1e9, 1e300, INFINITY};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        struct ratelimit *rl = ratelimit_new(huge[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(rl);
        double w = 0;
        for (int k = 0; k < 1000; k++)
            w = ratelimit_take(rl);
        CHECKF(w >= 0 && w < 0.01, "rps %g: the 1000th request waits %g s", huge[i], w);
        ratelimit_free(rl);
    }
}

int register_options(void)
{
    CU_pSuite s = CU_add_suite("options", NULL, NULL);
    if (!s)
        return -1;
    if (!CU_add_test(s, "ratelimit: tiny rates still limit, huge ones do not break", test_ratelimit_extreme_rates))
        return -1;
    return 0;
}
