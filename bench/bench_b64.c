/* bench_b64: single-core throughput of the base64 encoders and the strict decoder.
 *
 *   bench_b64 [runs]        (default 7)
 *
 * For each size (64 MiB, and 40 KB = a typical image) and each operation, the buffer is
 * processed repeatedly in batches of about 64 MiB of binary data; each batch is timed with
 * CLOCK_MONOTONIC and the best of `runs` batches is reported, after one untimed warm-up batch.
 * MB/s counts binary bytes (encode input, decode output) in units of 10^6 bytes/s, so encode
 * and decode figures are comparable; the base64 text side is 4/3 of that. Input is xorshift
 * random data. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/b64.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fill_random(unsigned char *p, size_t n)
{
    uint64_t x = 0x243f6a8885a308d3ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)(x >> 56);
    }
}

static volatile size_t sink;

enum op { ENC_FAST, ENC_LIBB64, DECODE };

/* Best MB/s over `runs` batches of `reps` calls on a buffer of n binary bytes. */
static double measure(enum op op, const unsigned char *raw, size_t n, char *text,
                      unsigned char *back, int reps, int runs)
{
    size_t elen = b64_encoded_len(n);
    double best = 0;
    /* Run -1 is an untimed warm-up (page faults, caches, CPU clock ramp-up). */
    for (int r = -1; r < runs; r++) {
        size_t acc = 0;
        double t0 = now();
        for (int i = 0; i < reps; i++) {
            switch (op) {
            case ENC_FAST:
                acc += b64_encode_with(B64_FAST, raw, n, text);
                break;
            case ENC_LIBB64:
                acc += b64_encode_with(B64_LIBB64, raw, n, text);
                break;
            case DECODE: {
                size_t len = 0;
                if (b64_decode(text, elen, back, &len) != 0) {
                    fprintf(stderr, "bench_b64: decode failed\n");
                    exit(1);
                }
                acc += len;
                break;
            }
            }
        }
        double dt = now() - t0;
        sink += acc;
        if (r < 0)
            continue;
        double mbs = (double)n * reps / dt / 1e6;
        if (mbs > best)
            best = mbs;
    }
    return best;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    if (runs < 1)
        runs = 1;
    static const struct {
        const char *label;
        size_t n;
    } sizes[] = {{"40KB", 40 * 1000}, {"64MiB", 64u << 20}};
    const size_t batch = 64u << 20; /* binary bytes per timed batch */

    printf("%-7s %-7s %-6s %8s\n", "op", "encoder", "size", "MB/s");
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si].n;
        int reps = (int)(batch / n);
        if (reps < 1)
            reps = 1;
        unsigned char *raw = malloc(n), *back = malloc(b64_decoded_max(b64_encoded_len(n)));
        char *text = malloc(b64_encoded_len(n) + 1), *ref = malloc(b64_encoded_len(n) + 1);
        if (!raw || !back || !text || !ref) {
            fprintf(stderr, "bench_b64: out of memory\n");
            return 1;
        }
        fill_random(raw, n);

        /* Correctness check before timing: both encoders agree and decode round-trips. */
        size_t elen = b64_encode_with(B64_LIBB64, raw, n, ref);
        if (b64_encode_with(B64_FAST, raw, n, text) != elen || memcmp(text, ref, elen) != 0) {
            fprintf(stderr, "bench_b64: encoders disagree at %s\n", sizes[si].label);
            return 1;
        }
        size_t len = 0;
        if (b64_decode(text, elen, back, &len) != 0 || len != n || memcmp(back, raw, n) != 0) {
            fprintf(stderr, "bench_b64: round trip failed at %s\n", sizes[si].label);
            return 1;
        }

        double fast = measure(ENC_FAST, raw, n, text, back, reps, runs);
        printf("%-7s %-7s %-6s %8.0f\n", "encode", "fast", sizes[si].label, fast);
        fflush(stdout);
        double lib = measure(ENC_LIBB64, raw, n, text, back, reps, runs);
        printf("%-7s %-7s %-6s %8.0f\n", "encode", "libb64", sizes[si].label, lib);
        fflush(stdout);
        b64_encode(raw, n, text);
        double dec = measure(DECODE, raw, n, text, back, reps, runs);
        printf("%-7s %-7s %-6s %8.0f\n", "decode", "strict", sizes[si].label, dec);
        fflush(stdout);

        free(raw);
        free(back);
        free(text);
        free(ref);
    }
    return 0;
}
