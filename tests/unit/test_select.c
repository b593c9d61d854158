/* Suite "select": which images a run takes (src/select.c). The shard key of --shard K/N
 * (shard_hash): FNV-1a 64 of the path below the root, so that N machines seeing one folder split it the same way, each image
 * in exactly one shard, in shares of about 1/N. (The end-to-end test "e2e shard" checks that a
 * run's --shard K/N takes exactly the images whose key is K modulo N.) And selection_pick:
 * shard first, then images already done, then the --max-images cap counting only the taken. */
#include "select.h"

#include <CUnit/CUnit.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

/* FNV-1a 64 reference values (the FNV authors' test vectors, and ones computed by hand). */
static void test_fnv1a_vectors(void)
{
    static const struct {
        const char *s;
        size_t len;
        uint64_t h;
    } v[] = {
        {"", 0, 0xcbf29ce484222325ull}, /* the offset basis */
        {"a", 1, 0xaf63dc4c8601ec8cull},
        {"b", 1, 0xaf63df4c8601f1a5ull},
        {"foobar", 6, 0x85944171f73967e8ull},
        {"\xff", 1, 0xaf64724c8602eb6eull},     /* bytes are unsigned */
        {"a\0b", 3, 0xe5d29919042666b2ull},     /* a NUL is a byte like any other */
        {"foobar and more", 6, 0x85944171f73967e8ull}, /* only len bytes are read */
        {"photos/a.jpg", 12, 0xd86bcdad0c13ab99ull},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        uint64_t h = shard_hash(v[i].s, v[i].len);
        CHECKF(h == v[i].h, "shard_hash of vector %zu (%zu bytes): %016llx, want %016llx", i, v[i].len,
               (unsigned long long)h, (unsigned long long)v[i].h);
    }
}

enum { NPATHS = 20000 };

/* The paths below the root of a generated tree (util_tree's layout) and of a few other shapes. */
static void rel_path(size_t i, char *buf, size_t cap)
{
    if (i % 5 == 4)
        snprintf(buf, cap, "photos/2024/%02zu/IMG_%06zu.JPG", i % 12 + 1, i);
    else
        snprintf(buf, cap, "%02x/img%08zu.png", (unsigned)(i % 256), i);
}

/* Every path is in exactly one shard (the runner keeps a path in shard K when its key is K
 * modulo N), and no shard gets far from its share. The paths are fixed, so the counts are too:
 * the slack only allows for the hash not being a perfect splitter, not for chance. */
static void test_shards_partition(void)
{
    static const unsigned ns[] = {1, 2, 3, 4, 7, 16, 100};
    static unsigned count[100];
    char path[64];
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        unsigned n = ns[k];
        memset(count, 0, sizeof count);
        size_t not_once = 0;
        for (size_t i = 0; i < NPATHS; i++) {
            rel_path(i, path, sizeof path);
            uint64_t h = shard_hash(path, strlen(path));
            unsigned takers = 0;
            for (unsigned K = 0; K < n; K++)
                if (h % n == K) {
                    takers++;
                    count[K]++;
                }
            not_once += takers != 1;
        }
        CHECKF(not_once == 0, "--shard ?/%u: %zu paths not taken by exactly one shard", n, not_once);
        unsigned total = 0, lo = NPATHS, hi = 0;
        for (unsigned K = 0; K < n; K++) {
            total += count[K];
            lo = count[K] < lo ? count[K] : lo;
            hi = count[K] > hi ? count[K] : hi;
        }
        double share = (double)NPATHS / n;
        CHECKF(total == NPATHS, "--shard ?/%u: shards hold %u paths of %d", n, total, NPATHS);
        CHECKF(lo >= 0.75 * share && hi <= 1.25 * share, "--shard ?/%u: shards of %u to %u paths, share %.0f", n, lo,
               hi, share);
    }
}

/* The key depends on the path below the root only: the same bytes, wherever they come from,
 * give the same key (the runner passes scan_entry.rel), and a one-byte change moves it. */
static void test_key_stable(void)
{
    const char *a = "/mnt/photos/00/img00000001.png", *b = "/other/mount/00/img00000001.png";
    const char *ra = strstr(a, "00/"), *rb = strstr(b, "00/");
    CHECKF(shard_hash(ra, strlen(ra)) == shard_hash(rb, strlen(rb)), "one relative path, two keys");
    CHECKF(shard_hash(ra, strlen(ra)) == 0xa7ddaf4473803d23ull, "00/img00000001.png: %016llx",
           (unsigned long long)shard_hash(ra, strlen(ra)));
    CHECKF(shard_hash("00/img00000001.png", 18) != shard_hash("00/img00000001.PNG", 18), "case is ignored");
    CHECKF(shard_hash("ab", 2) != shard_hash("ba", 2), "byte order is ignored");
}

static struct scan_entry entry(const char *path, size_t root_len)
{
    struct scan_entry e = {path, strlen(path), path + root_len + 1, strlen(path) - root_len - 1, NULL};
    return e;
}

static void test_pick(void)
{
    struct config cfg = {0};
    cfg.out = "-";
    cfg.max_images = 3;
    struct doneset *done = doneset_new();
    CU_ASSERT_FATAL(done != NULL);
    doneset_add(done, "r/a.jpg", 7);
    doneset_add(done, "r/c.jpg", 7);
    struct selection s;
    selection_init(&s, &cfg, done);
    static const char *const paths[] = {"r/a.jpg", "r/b.jpg", "r/c.jpg", "r/d.jpg", "r/e.jpg", "r/f.jpg", "r/a.jpg"};
    static const enum pick want[] = {PICK_DONE, PICK_TAKE, PICK_DONE, PICK_TAKE, PICK_TAKE, PICK_STOP, PICK_DONE};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        struct scan_entry e = entry(paths[i], 1);
        enum pick k = selection_pick(&s, &e);
        CHECKF(k == want[i], "%s: pick %d, want %d (done images do not count against --max-images)", paths[i], (int)k,
               (int)want[i]);
    }
    /* With shards, an image of another shard is that before anything else. */
    cfg.shard_n = 2;
    cfg.max_images = 0;
    selection_init(&s, &cfg, done);
    for (size_t i = 0; i < 6; i++) {
        struct scan_entry e = entry(paths[i], 1);
        int mine = shard_hash(e.rel, e.rel_len) % 2 == 0;
        enum pick k = selection_pick(&s, &e);
        enum pick w = !mine ? PICK_OTHER_SHARD : doneset_has(done, paths[i], 7) ? PICK_DONE : PICK_TAKE;
        CHECKF(k == w, "%s: pick %d, want %d", paths[i], (int)k, (int)w);
    }
    doneset_free(done);
}

int register_select(void)
{
    CU_pSuite s = CU_add_suite("select", NULL, NULL);
    if (!s || !CU_add_test(s, "selection_pick: shard, done, --max-images", test_pick))
        return -1;
    if (!CU_add_test(s, "shard_hash: FNV-1a 64 test vectors", test_fnv1a_vectors) ||
        !CU_add_test(s, "shard_hash: K/N shards partition 20,000 paths in fair shares", test_shards_partition) ||
        !CU_add_test(s, "shard_hash: the key of the path below the root", test_key_stable))
        return -1;
    return 0;
}
