/* rng: xorshift64*, cheap and good enough for jitter and tie-breaks (backoff, replica choice).
 * Each caller keeps its own state; a zero state is replaced by a fixed seed. */
#ifndef ANNOTATE_RNG_H
#define ANNOTATE_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif
