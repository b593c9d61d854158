/* Suite "hash": src/common/hash.c, the SHA-256 the answer store's keys are made of. Known answers
 * (FIPS 180-2's), pieces fed in any split give the digest of the whole, framed parts never run
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

static void test_known_answers(void)
{
    char hex[2 * HASH_BYTES + 1];
    digest_hex("", 0, hex);
    CU_ASSERT_STRING_EQUAL(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    digest_hex("abc", 3, hex);
    CU_ASSERT_STRING_EQUAL(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    digest_hex(two, strlen(two), hex);
    CU_ASSERT_STRING_EQUAL(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a': many blocks */
    char *a = malloc(1000000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    memset(a, 'a', 1000000);
    digest_hex(a, 1000000, hex);
    CU_ASSERT_STRING_EQUAL(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
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
    CU_ASSERT_PTR_NULL(h.md);
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
    if (!s || !CU_add_test(s, "SHA-256 known answers", test_known_answers) ||
        !CU_add_test(s, "pieces in any split give the whole's digest", test_streaming) ||
        !CU_add_test(s, "framed parts never run into each other", test_parts) ||
        !CU_add_test(s, "hex both ways", test_hex))
        return -1;
    return 0;
}
