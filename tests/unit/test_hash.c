/* Suite "hash": src/common/hash.c, the BLAKE3 the answer store's keys are made of. Known answers
 * (the BLAKE3 team's), pieces fed in any split give the digest of the whole, framed parts never run
 * into each other, and the hex helpers. */
#include "common/hash.h"

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "util.h"

static void digest_hex(const void *p, size_t n, char *hex)
{
    unsigned char d[HASH_BYTES];
    CU_ASSERT_EQUAL(hash_bytes(p, n, d), 0);
    hash_hex(d, HASH_BYTES, hex);
}

/* The BLAKE3 team's test vectors (test_vectors/test_vectors.json of release 1.8.6): input_len
 * bytes of 0, 1, ..., 250, 0, 1, ... and the first 32 bytes of "hash". Lengths around a block (64),
 * a chunk (1024) and the trees of many chunks, which its SIMD code hashes several at a time. */
static void test_known_answers(void)
{
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        {0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"},
        {1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"},
        {63, "e9bc37a594daad83be9470df7f7b3798297c3d834ce80ba85d6e207627b7db7b"},
        {64, "4eed7141ea4a5cd4b788606bd23f46e212af9cacebacdc7d1f4c6dc7f2511b98"},
        {65, "de1e5fa0be70df6d2be8fffd0e99ceaa8eb6e8c93a63f2d8d1c30ecb6b263dee"},
        {1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"},
        {1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"},
        {1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"},
        {4097, "9b4052b38f1c5fc8b1f9ff7ac7b27cd242487b3d890d15c96a1c25b8aa0fb995"},
        {8193, "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b"},
        {16384, "f875d6646de28985646f34ee13be9a576fd515f76b5b0a26bb324735041ddde4"},
        {31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47"},
        {102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085"},
    };
    unsigned char *in = malloc(102400);
    CU_ASSERT_PTR_NOT_NULL_FATAL(in);
    for (size_t i = 0; i < 102400; i++)
        in[i] = (unsigned char)(i % 251);
    char hex[2 * HASH_BYTES + 1];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        digest_hex(in, v[i].n, hex);
        CHECKF(!strcmp(hex, v[i].hex), "%zu bytes: %s, not %s", v[i].n, hex, v[i].hex);
    }
    free(in);
}

static void test_streaming(void)
{
    uint64_t seed = 0x5eed;
    size_t n = 300000;
    unsigned char *buf = malloc(n), whole[HASH_BYTES], parts[HASH_BYTES];
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    fill_random(&seed, buf, n);
    CU_ASSERT_EQUAL(hash_bytes(buf, n, whole), 0);
    for (int round = 0; round < 20; round++) {
        struct hash_ctx h;
        CU_ASSERT_EQUAL_FATAL(hash_init(&h), 0);
        size_t at = 0;
        while (at < n) {
            size_t step = (size_t)(xorshift64(&seed) % 70000);
            if (step > n - at)
                step = n - at;
            hash_update(&h, buf + at, step); /* steps of 0 too */
            at += step;
        }
        CU_ASSERT_EQUAL(hash_final(&h, parts), 0);
        CHECKF(!memcmp(whole, parts, HASH_BYTES), "round %d: pieces give another digest than the whole", round);
    }
    /* A finalised context can be initialised again; a discarded one gives nothing. */
    struct hash_ctx h = {0};
    hash_discard(&h);
    CU_ASSERT_EQUAL(hash_init(&h), 0);
    hash_update(&h, "x", 1);
    hash_discard(&h);
    hash_update(&h, "x", 1); /* fed after its end: the next final fails */
    CU_ASSERT_EQUAL(hash_final(&h, parts), -1); /* not initialised: -1, zeroed */
    unsigned char zero[HASH_BYTES] = {0};
    CU_ASSERT(!memcmp(parts, zero, HASH_BYTES));
    free(buf);
}

static void framed(const char *const *parts, int n, unsigned char out[HASH_BYTES])
{
    struct hash_ctx h;
    CU_ASSERT_EQUAL_FATAL(hash_init(&h), 0);
    for (int i = 0; i < n; i++)
        hash_part(&h, parts[i], strlen(parts[i]));
    CU_ASSERT_EQUAL(hash_final(&h, out), 0);
}

static void test_parts(void)
{
    unsigned char a[HASH_BYTES], b[HASH_BYTES], c[HASH_BYTES];
    const char *p1[] = {"ab", "c"}, *p2[] = {"a", "bc"}, *p3[] = {"abc"};
    framed(p1, 2, a);
    framed(p2, 2, b);
    framed(p3, 1, c);
    CU_ASSERT(memcmp(a, b, HASH_BYTES) != 0);
    CU_ASSERT(memcmp(a, c, HASH_BYTES) != 0);
    CU_ASSERT(memcmp(b, c, HASH_BYTES) != 0);
    /* hash_part_begin + updates in pieces is hash_part */
    struct hash_ctx h;
    CU_ASSERT_EQUAL_FATAL(hash_init(&h), 0);
    hash_part_begin(&h, 3);
    hash_update(&h, "a", 1);
    hash_update(&h, "bc", 2);
    CU_ASSERT_EQUAL(hash_final(&h, b), 0);
    CU_ASSERT(!memcmp(b, c, HASH_BYTES));
    /* the frame is 8 bytes of length, little-endian, then the bytes */
    unsigned char raw[11] = {3, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c'};
    CU_ASSERT_EQUAL(hash_bytes(raw, sizeof raw, a), 0);
    CU_ASSERT(!memcmp(a, c, HASH_BYTES));
}

static void test_hex(void)
{
    unsigned char d[4] = {0x00, 0x9f, 0xa0, 0xff}, back[8];
    char hex[9];
    CU_ASSERT_STRING_EQUAL(hash_hex(d, 4, hex), "009fa0ff");
    CU_ASSERT_EQUAL(hash_unhex("009FA0ff", back, sizeof back), 4);
    CU_ASSERT(!memcmp(back, d, 4));
    CU_ASSERT_EQUAL(hash_unhex("", back, sizeof back), -1);
    CU_ASSERT_EQUAL(hash_unhex("abc", back, sizeof back), -1);   /* odd */
    CU_ASSERT_EQUAL(hash_unhex("zz", back, sizeof back), -1);    /* not hex */
    CU_ASSERT_EQUAL(hash_unhex("00112233", back, 3), -1);         /* too long */
}

int register_hash(void)
{
    CU_pSuite s = CU_add_suite("hash", NULL, NULL);
    if (!s || !CU_add_test(s, "BLAKE3 known answers", test_known_answers) ||
        !CU_add_test(s, "pieces in any split give the whole's digest", test_streaming) ||
        !CU_add_test(s, "framed parts never run into each other", test_parts) ||
        !CU_add_test(s, "hex both ways", test_hex))
        return -1;
    return 0;
}
