/* bench-store: the answer store (src/results/store.h) at scale, and the hashes it could use.
 *
 *   bench-store [--entries N] [--result-bytes R] [--lookups M] [--dir DIR] [--keep]
 *               [--wal-pages N] [--wal-max-pages N] [--lookups-beside]
 *
 * 1. Hash throughput on one core, MB/s, for 40 KB (an image) and 4 MB: BLAKE3 through the
 *    store's own hash.h (the one used), and the candidates it was chosen against: SHA-256 (the
 *    store's hash before) and BLAKE2b-512 through libcrypto's EVP, libb2's BLAKE2b, xxHash's
 *    XXH3-128.
 * 2. Inserts: N entries (default 10,000,000) of R-byte results (default 64, a label and a score
 *    as JSON) through store_put with the default batches, into a new store in DIR; the rate
 *    counts until store_close has committed the last one. Every million, the rate of that
 *    million: it must not fall as the file grows. With --lookups-beside, a thread looks up keys
 *    put before the last million while that million is put (a run that asks the store and puts
 *    into it at once), and says how long each took; the inserts' figures then include it.
 * 3. The file: bytes per entry beyond the result, (file size - N R) / N, after the close's
 *    checkpoint.
 * 4. Lookups: M (default 1,000,000) keys drawn at random among the N through store_get, on one
 *    thread and then on two at once, hits; then M/10 misses. Average microseconds each.
 *
 * Keys are made as the chain makes them (store_key_begin, a piece, store_key_end). The store's
 * file is removed at the end unless --keep. */
#include <blake2.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/hash.h"
#include "results/store.h"
#include "results/store_db.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static volatile unsigned char sink;

/* ---- 1. hashes ---- */

enum cand { C_OURS, C_EVP_SHA256, C_EVP_BLAKE2B, C_LIBB2, C_XXH3, C_N };
static const char *const CAND_NAME[C_N] = {
    "BLAKE3 (hash.h, the BLAKE3 team's C code)", "SHA-256 (libcrypto EVP; SHA-NI)", "BLAKE2b-512 (EVP)",
    "BLAKE2b-256 (libb2)", "XXH3-128 (libxxhash; not collision-resistant)",
};

static void hash_once(enum cand c, const unsigned char *p, size_t n, unsigned char *out)
{
    unsigned len;
    switch (c) {
    case C_OURS:
        hash_bytes(p, n, out);
        break;
    case C_EVP_SHA256:
        EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
        break;
    case C_EVP_BLAKE2B:
        EVP_Digest(p, n, out, &len, EVP_blake2b512(), NULL);
        break;
    case C_LIBB2:
        blake2b(out, p, NULL, 32, n, 0);
        break;
    default: {
        XXH128_hash_t h = XXH3_128bits(p, n);
        memcpy(out, &h, sizeof h);
    }
    }
}

/* Best of 5 rounds of about 256 MB each, after a warm-up. */
static double hash_rate(enum cand c, const unsigned char *buf, size_t n)
{
    unsigned char out[64];
    size_t reps = ((size_t)256 << 20) / n;
    double best = 1e30;
    hash_once(c, buf, n, out);
    for (int r = 0; r < 5; r++) {
        double t = now();
        for (size_t i = 0; i < reps; i++)
            hash_once(c, buf, n, out);
        t = now() - t;
        sink ^= out[0];
        if (t < best)
            best = t;
    }
    return (double)reps * (double)n / best / 1e6;
}

static void bench_hashes(void)
{
    size_t big = (size_t)4 << 20;
    unsigned char *buf = malloc(big);
    if (!buf)
        return;
    uint64_t x = 0x243f6a8885a308d3ull;
    for (size_t i = 0; i < big; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)(x >> 56);
    }
    printf("hash throughput, one core, MB/s (10^6 bytes)   40 KB      4 MB\n");
    for (int c = 0; c < C_N; c++)
        printf("  %-46s %8.0f  %8.0f\n", CAND_NAME[c], hash_rate(c, buf, 40960), hash_rate(c, buf, big));
    /* A key: the chain hashes a few small pieces per stage and request. */
    struct store_ident id = {{0}, "", "", ""};
    unsigned char digest[HASH_BYTES] = {1};
    int reps = 1000000;
    double t = now();
    for (int i = 0; i < reps; i++) {
        struct hash_ctx h;
        struct store_key k;
        store_key_begin(&h, &id);
        store_key_bytes(&h, "[{\"im_str\": ", 12);
        store_key_image(&h, digest);
        store_key_bytes(&h, ", \"model_03\": null}]", 20);
        store_key_end(&h, &id, &k);
        sink ^= k.b[9];
    }
    printf("  a request's key from its image digest and two pieces: %.2f us\n\n", (now() - t) / reps * 1e6);
    free(buf);
}

/* ---- 2-4. the store ---- */

static struct store_ident bench_ident;

static void key_of(uint64_t i, struct store_key *k)
{
    struct hash_ctx h;
    store_key_begin(&h, &bench_ident);
    store_key_bytes(&h, &i, sizeof i);
    store_key_end(&h, &bench_ident, k);
}

static void result_of(uint64_t i, char *buf, size_t r)
{
    int n = snprintf(buf, r + 1, "{\"label\": \"class_%03u\", \"score\": 0.%06u, \"id\": %llu}",
                     (unsigned)(i % 1000), (unsigned)(i * 2654435761u % 1000000), (unsigned long long)i);
    for (size_t j = n < 0 ? 0 : (size_t)n; j < r; j++)
        buf[j] = ' ';
}

/* CPU seconds of this process so far (all threads: the putting one and the store's writer). */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Lookups made while the writer inserts (the last million's puts): keys already committed or
 * buffered, at random, one thread, until told to stop. */
struct busy_looker {
    struct store *s;
    uint64_t below;  /* keys 0 .. below - 1 have been put */
    atomic_int stop;
    uint64_t done, found;
    double seconds, cpu;
};

static double thread_cpu(void);

static void *busy_look(void *arg)
{
    struct busy_looker *l = arg;
    uint64_t x = 0x2545f4914f6cdd1dull;
    double t = now(), c = thread_cpu();
    while (!atomic_load(&l->stop)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        struct store_key k;
        key_of(x % l->below, &k);
        char *b;
        size_t len;
        if (store_get(l->s, &k, &b, &len)) {
            l->found++;
            free(b);
        }
        l->done++;
    }
    l->seconds = now() - t;
    l->cpu = thread_cpu() - c;
    return NULL;
}

static int bench_inserts(const char *path, uint64_t n, size_t r, const struct store_opts *o, int beside)
{
    char err[1024], *res = malloc(r + 1);
    struct store *s = res ? store_open(path, o, err, sizeof err) : NULL;
    if (!s) {
        fprintf(stderr, "bench-store: %s\n", res ? err : "out of memory");
        free(res);
        return -1;
    }
    printf("inserts: %llu entries of %zu-byte results (batches of 16384 or 1 s)\n", (unsigned long long)n, r);
    double t0 = now(), tm = t0, c0 = cpu_seconds();
    struct busy_looker busy = {.s = s, .below = beside && n > 1000000 ? n - 1000000 : 0};
    pthread_t busy_tid;
    int busy_on = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (i == busy.below && i > 0)
            busy_on = pthread_create(&busy_tid, NULL, busy_look, &busy) == 0;
        struct store_key k;
        key_of(i, &k);
        result_of(i, res, r);
        store_put(s, &k, &bench_ident, res, r);
        if ((i + 1) % 1000000 == 0) {
            double t = now();
            printf("  %3llu M: %8.0f puts/s in this million\n", (unsigned long long)(i + 1) / 1000000, 1e6 / (t - tm));
            fflush(stdout);
            tm = t;
        }
    }
    if (busy_on) {
        atomic_store(&busy.stop, 1);
        pthread_join(busy_tid, NULL);
    }
    struct store_counters c;
    store_get_counters(s, &c);
    int told = store_close(s, err, sizeof err);
    double t = now() - t0;
    free(res);
    if (told) {
        fprintf(stderr, "bench-store: %s\n", err);
        return -1;
    }
    double cpu = cpu_seconds() - c0;
    printf("  %llu puts committed in %.1f s: %.0f inserts/s (%llu batches, %llu puts waited for the writer)\n",
           (unsigned long long)n, t, (double)n / t, (unsigned long long)c.batches, (unsigned long long)c.waits);
    printf("  CPU (all threads, user + system): %.1f us per insert, %.0f inserts per CPU-second\n", cpu / (double)n * 1e6,
           (double)n / cpu);
    printf("  the WAL: %llu checkpoints beside the writer, %llu waits for one, %llu pages (%.0f MiB) at its longest\n",
           (unsigned long long)c.checkpoints, (unsigned long long)c.catch_ups, (unsigned long long)c.wal_longest,
           (double)c.wal_longest * (4096 + 24) / 1048576.0);
    if (busy_on)
        printf("  lookups beside the last million's inserts (one thread, keys put before it): %.2f us each, %.2f us "
               "of CPU (%llu of %llu found)\n",
               busy.seconds / (double)busy.done * 1e6, busy.cpu / (double)busy.done * 1e6,
               (unsigned long long)busy.found, (unsigned long long)busy.done);
    return busy_on && busy.found != busy.done ? -1 : 0;
}

struct lookers {
    struct store *s;
    uint64_t n, m, seed;
    int miss;
    uint64_t found;
    double seconds, cpu; /* wall time, and this thread's CPU time (what a loaded machine does not change) */
};

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *look(void *arg)
{
    struct lookers *l = arg;
    uint64_t x = l->seed;
    struct store_key *keys = malloc(l->m * sizeof *keys);
    if (!keys)
        return NULL;
    for (uint64_t i = 0; i < l->m; i++) { /* the keys first: what is timed is the lookups */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        key_of(l->miss ? l->n + x % l->n : x % l->n, &keys[i]);
    }
    double t = now(), c = thread_cpu();
    for (uint64_t i = 0; i < l->m; i++) {
        char *b;
        size_t len;
        if (store_get(l->s, &keys[i], &b, &len)) {
            l->found++;
            free(b);
        }
    }
    l->seconds = now() - t;
    l->cpu = thread_cpu() - c;
    free(keys);
    return NULL;
}

static int bench_lookups(const char *path, uint64_t n, uint64_t m)
{
    char err[1024];
    struct store *s = store_open(path, NULL, err, sizeof err);
    if (!s) {
        fprintf(stderr, "bench-store: %s\n", err);
        return -1;
    }
    printf("lookups among %llu entries (%llu keys at random; default options):\n",
           (unsigned long long)n, (unsigned long long)m);
    struct lookers one = {s, n, m, 0x9e3779b97f4a7c15ull, 0, 0, 0, 0};
    look(&one);
    printf("  one thread, hits:    %6.2f us each, %.2f us of CPU (%llu of %llu found)\n", one.seconds / (double)m * 1e6,
           one.cpu / (double)m * 1e6, (unsigned long long)one.found, (unsigned long long)m);
    struct lookers two[2] = {{s, n, m, 0x1234567ull, 0, 0, 0, 0}, {s, n, m, 0x7654321ull, 0, 0, 0, 0}};
    pthread_t tid[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&tid[i], NULL, look, &two[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(tid[i], NULL);
    double wall = two[0].seconds > two[1].seconds ? two[0].seconds : two[1].seconds;
    printf("  two threads, hits:   %6.2f us each on its thread, %.0f lookups/s together (%llu found)\n",
           (two[0].seconds + two[1].seconds) / (double)(2 * m) * 1e6, (double)(2 * m) / wall,
           (unsigned long long)(two[0].found + two[1].found));
    struct lookers miss = {s, n, m / 10, 0x51ed2701ull, 1, 0, 0, 0};
    look(&miss);
    printf("  one thread, misses:  %6.2f us each, %.2f us of CPU (%llu found)\n", miss.seconds / (double)miss.m * 1e6,
           miss.cpu / (double)miss.m * 1e6, (unsigned long long)miss.found);
    int bad = one.found != m || two[0].found + two[1].found != 2 * m || miss.found != 0;
    store_close(s, err, sizeof err);
    if (bad)
        fprintf(stderr, "bench-store: lookups did not find what was put\n");
    return bad ? -1 : 0;
}


int main(int argc, char **argv)
{
    uint64_t n = 10000000, m = 1000000;
    size_t r = 64;
    const char *dir = "build/bench-store";
    int keep = 0, beside = 0;
    struct store_opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--entries") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--result-bytes") && i + 1 < argc)
            r = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--lookups") && i + 1 < argc)
            m = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else if (!strcmp(argv[i], "--lookups-beside"))
            beside = 1;
        else if (!strcmp(argv[i], "--wal-pages") && i + 1 < argc)
            o.wal_pages = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--wal-max-pages") && i + 1 < argc)
            o.wal_max_pages = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench-store [--entries N] [--result-bytes R] [--lookups M] [--dir DIR] [--keep]\n"
                            "                   [--wal-pages N] [--wal-max-pages N] (store_opts: 0 for the defaults)\n"
                            "                   [--lookups-beside]\n");
            return 2;
        }
    }
    if (n == 0 || r < 8 || m == 0) {
        fprintf(stderr, "bench-store: --entries and --lookups at least 1, --result-bytes at least 8\n");
        return 2;
    }
    bench_hashes();
    struct hash_ctx h;
    store_ident_begin(&h);
    store_ident_add(&h, "url", "http://127.0.0.1/bench", 22);
    store_ident_end(&h, &bench_ident, "bench", "http://127.0.0.1/bench", "");
    char path[4096];
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/store.db", dir);
    unlink(path);
    if (bench_inserts(path, n, r, &o, beside))
        return 1;
    unsigned long long size = store_db_file_size(path, "");
    printf("file: %llu bytes for %llu entries: %.1f bytes per entry, %.1f beyond the %zu-byte result\n\n", size,
           (unsigned long long)n, (double)size / (double)n, ((double)size - (double)n * (double)r) / (double)n, r);
    int rc = bench_lookups(path, n, m);
    if (!keep) {
        unlink(path);
        rmdir(dir);
    }
    return rc ? 1 : 0;
}
