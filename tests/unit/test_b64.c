/* Tests for src/b64.c: RFC 4648 vectors, fast vs libb64 equality, round trips, strict decoder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <CUnit/CUnit.h>

#include "common/b64.h"
#include "util.h"

static const struct {
    const char *plain, *code;
} rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};
#define NVEC (sizeof rfc4648 / sizeof rfc4648[0])

/* Deterministic, so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static int decode_str(const char *s, unsigned char *out, size_t *len)
{
    return b64_decode(s, strlen(s), out, len);
}

static void test_lengths(void)
{
    CU_ASSERT_EQUAL(b64_encoded_len(0), 0);
    CU_ASSERT_EQUAL(b64_encoded_len(1), 4);
    CU_ASSERT_EQUAL(b64_encoded_len(2), 4);
    CU_ASSERT_EQUAL(b64_encoded_len(3), 4);
    CU_ASSERT_EQUAL(b64_encoded_len(4), 8);
    CU_ASSERT_EQUAL(b64_encoded_len(40000), 53336);
    CU_ASSERT(b64_decoded_max(0) == 0);
    CU_ASSERT(b64_decoded_max(4) >= 3);
    CU_ASSERT(b64_decoded_max(8) >= 6);
}

static void test_rfc_vectors_encode(void)
{
    for (size_t i = 0; i < NVEC; i++) {
        const char *p = rfc4648[i].plain, *c = rfc4648[i].code;
        char out[32];
        memset(out, 'X', sizeof out);
        CU_ASSERT_EQUAL(b64_encode(p, strlen(p), out), strlen(c));
        CU_ASSERT_STRING_EQUAL(out, c);
        memset(out, 'X', sizeof out);
        CU_ASSERT_EQUAL(b64_encode_with(B64_FAST, p, strlen(p), out), strlen(c));
        CU_ASSERT_STRING_EQUAL(out, c);
        memset(out, 'X', sizeof out);
        CU_ASSERT_EQUAL(b64_encode_with(B64_LIBB64, p, strlen(p), out), strlen(c));
        CU_ASSERT_STRING_EQUAL(out, c);
    }
}

static void test_rfc_vectors_decode(void)
{
    for (size_t i = 0; i < NVEC; i++) {
        const char *p = rfc4648[i].plain, *c = rfc4648[i].code;
        unsigned char out[32];
        size_t len = 999;
        CU_ASSERT_EQUAL(decode_str(c, out, &len), 0);
        CU_ASSERT_EQUAL(len, strlen(p));
        CU_ASSERT(memcmp(out, p, strlen(p)) == 0);
    }
}

/* Every length 0..1000: both encoders agree, the output is exactly sized, and it decodes back.
 * Buffers are malloc'ed to the exact documented size so ASan catches any overrun. */
static void test_round_trip_all_lengths(void)
{
    for (size_t n = 0; n <= 1000; n++) {
        unsigned char *src = malloc(n ? n : 1);
        size_t elen = b64_encoded_len(n);
        char *fast = malloc(elen + 1), *lib = malloc(elen + 1);
        unsigned char *back = malloc(b64_decoded_max(elen) ? b64_decoded_max(elen) : 1);
        CU_ASSERT_FATAL(src && fast && lib && back);
        fill_random(&rng_state, src, n);

        CU_ASSERT_EQUAL(b64_encode_with(B64_FAST, src, n, fast), elen);
        CU_ASSERT_EQUAL(fast[elen], '\0');
        CU_ASSERT_EQUAL(b64_encode_with(B64_LIBB64, src, n, lib), elen);
        CU_ASSERT_EQUAL(lib[elen], '\0');
        CU_ASSERT(memcmp(fast, lib, elen + 1) == 0);
        CU_ASSERT(strchr(fast, '\n') == NULL);

        size_t len = 0;
        CU_ASSERT_EQUAL(b64_decode(fast, elen, back, &len), 0);
        CU_ASSERT_EQUAL(len, n);
        CU_ASSERT(len == n && memcmp(back, src, n) == 0);
        free(src);
        free(fast);
        free(lib);
        free(back);
    }
}

/* Every byte value at every position of a 3-byte group, through both encoders and back. */
static void test_all_byte_values(void)
{
    unsigned char src[256 * 3];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (unsigned char)((i / 3) + (i % 3) * 85);
    char fast[1100], lib[1100];
    size_t elen = b64_encode_with(B64_FAST, src, sizeof src, fast);
    CU_ASSERT_EQUAL(b64_encode_with(B64_LIBB64, src, sizeof src, lib), elen);
    CU_ASSERT_STRING_EQUAL(fast, lib);
    unsigned char back[sizeof src];
    size_t len = 0;
    CU_ASSERT_EQUAL(b64_decode(fast, elen, back, &len), 0);
    CU_ASSERT_EQUAL(len, sizeof src);
    CU_ASSERT(memcmp(back, src, sizeof src) == 0);
}

static void check_libb64_size(size_t n)
{
    unsigned char *src = malloc(n);
    size_t elen = b64_encoded_len(n);
    char *fast = malloc(elen + 1), *lib = malloc(elen + 1);
    CU_ASSERT_FATAL(src && fast && lib);
    fill_random(&rng_state, src, n);
    CU_ASSERT_EQUAL(b64_encode_with(B64_LIBB64, src, n, lib), elen);
    CU_ASSERT_EQUAL(strlen(lib), elen);
    CU_ASSERT(memchr(lib, '\n', elen) == NULL);
    CU_ASSERT(memchr(lib, '\r', elen) == NULL);
    CU_ASSERT_EQUAL(b64_encode_with(B64_FAST, src, n, fast), elen);
    CU_ASSERT(memcmp(fast, lib, elen + 1) == 0);
    free(src);
    free(fast);
    free(lib);
}

/* Longer than one 72-character line (54 bytes) times 3, and not a multiple of a line. */
static void test_libb64_past_line_length(void)
{
    check_libb64_size(72 * 3 + 1);
    check_libb64_size(72 * 3 * 10 + 2);
    check_libb64_size(54);
    check_libb64_size(55);
}

/* Several megabytes: many libb64 chunks, no newline anywhere. */
static void test_libb64_multi_megabyte(void)
{
    check_libb64_size(5 * 1024 * 1024 + 1);
}

static void expect_reject(const char *s)
{
    unsigned char out[64];
    size_t len = 0;
    if (decode_str(s, out, &len) != -1)
        CU_FAIL_FATAL("b64_decode accepted invalid input");
}

static void test_decode_rejects(void)
{
    /* Length not a multiple of 4. */
    expect_reject("Z");
    expect_reject("Zg");
    expect_reject("Zg=");
    expect_reject("Zm9vY");
    expect_reject("Zm9vYg=");
    /* Characters outside the alphabet (incl. URL-safe, space, NUL-free high bytes). */
    expect_reject("Zm9*");
    expect_reject("Zm-v");
    expect_reject("Zm_v");
    expect_reject("Zm v");
    expect_reject("Zm9vYmF\x80");
    expect_reject("\xffm9vYmFy");
    expect_reject("Zm9vYm.y");
    /* '=' in the middle or not at the end. */
    expect_reject("Zg==Zm9v");
    expect_reject("Zm8=Zm9v");
    expect_reject("=m9v");
    expect_reject("Z=9v");
    expect_reject("Zm=v");
    expect_reject("Zm9vZ==v");
    expect_reject("Zg=a");
    expect_reject("Zm9vZm9vZ=9v");
    /* Three or four '='. */
    expect_reject("Z===");
    expect_reject("====");
    expect_reject("Zm9v====");
    /* Line breaks (what unstripped libb64 output would contain). */
    expect_reject("Zm9v\nZm9");
    expect_reject("Zm9vYmF\n");
    expect_reject("Zm9v\r\nZm");
    /* Non-zero unused bits in the final group. */
    expect_reject("QR==");
    expect_reject("Zh==");
    expect_reject("Zm9=");
    expect_reject("Zm9vZm9=");
    expect_reject("Zm9vZh==");

    /* An embedded NUL (decoder is length-driven, not NUL-driven). */
    unsigned char out[16];
    size_t len;
    CU_ASSERT_EQUAL(b64_decode("Zm\0v", 4, out, &len), -1);
}

static void test_decode_accepts(void)
{
    unsigned char out[16];
    size_t len = 123;
    CU_ASSERT_EQUAL(b64_decode("", 0, out, &len), 0);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(b64_decode(NULL, 0, out, &len), 0);
    CU_ASSERT_EQUAL(decode_str("QQ==", out, &len), 0);
    CU_ASSERT_EQUAL(len, 1);
    CU_ASSERT_EQUAL(out[0], 'A');
    CU_ASSERT_EQUAL(decode_str("////", out, &len), 0);
    CU_ASSERT_EQUAL(len, 3);
    CU_ASSERT(out[0] == 0xff && out[1] == 0xff && out[2] == 0xff);
    CU_ASSERT_EQUAL(decode_str("++++", out, &len), 0);
    CU_ASSERT(len == 3 && out[0] == 0xfb && out[1] == 0xef && out[2] == 0xbe);
    CU_ASSERT_EQUAL(decode_str("AAAA", out, &len), 0);
    CU_ASSERT(len == 3 && out[0] == 0 && out[1] == 0 && out[2] == 0);
}

/* A single corrupted character anywhere in a long valid string is caught (covers the unrolled
 * main loop, its tail, and the final group). */
static void test_decode_rejects_any_position(void)
{
    enum { N = 301 }; /* 101 groups: unrolled loop, scalar tail, padded final group */
    unsigned char src[N], back[N + 3];
    char code[4 * (N / 3 + 1) + 1];
    fill_random(&rng_state, src, N);
    size_t elen = b64_encode(src, N, code);
    static const char bad[] = {'=', '\n', '-', '_', ' ', '\0', '*', (char)0x80, (char)0xff};
    for (size_t pos = 0; pos < elen; pos++) {
        char saved = code[pos];
        for (size_t b = 0; b < sizeof bad; b++) {
            if (bad[b] == '=' && pos >= elen - 2)
                continue; /* already padding there */
            code[pos] = bad[b];
            size_t len;
            if (b64_decode(code, elen, back, &len) != -1) {
                CU_FAIL("corrupted character accepted");
                code[pos] = saved;
                return;
            }
        }
        code[pos] = saved;
    }
    size_t len = 0;
    CU_ASSERT_EQUAL(b64_decode(code, elen, back, &len), 0);
    CU_ASSERT(len == N && memcmp(back, src, N) == 0);
}

static void test_encoder_names(void)
{
    enum b64_encoder e = (enum b64_encoder)42;
    CU_ASSERT_EQUAL(b64_encoder_from_name("fast", &e), 0);
    CU_ASSERT_EQUAL(e, B64_FAST);
    CU_ASSERT_EQUAL(b64_encoder_from_name("libb64", &e), 0);
    CU_ASSERT_EQUAL(e, B64_LIBB64);
    e = B64_LIBB64;
    CU_ASSERT_EQUAL(b64_encoder_from_name("nope", &e), -1);
    CU_ASSERT_EQUAL(b64_encoder_from_name("", &e), -1);
    CU_ASSERT_EQUAL(b64_encoder_from_name("FAST", &e), -1);
    CU_ASSERT_EQUAL(e, B64_LIBB64); /* untouched on failure */
    CU_ASSERT_STRING_EQUAL(b64_encoder_name(B64_FAST), "fast");
    CU_ASSERT_STRING_EQUAL(b64_encoder_name(B64_LIBB64), "libb64");
}

int register_b64(void)
{
    CU_pSuite s = CU_add_suite("b64", NULL, NULL);
    if (!s)
        return -1;
    if (!CU_add_test(s, "encoded/decoded lengths", test_lengths) ||
        !CU_add_test(s, "RFC 4648 vectors, both encoders", test_rfc_vectors_encode) ||
        !CU_add_test(s, "RFC 4648 vectors, decoder", test_rfc_vectors_decode) ||
        !CU_add_test(s, "round trip, lengths 0..1000", test_round_trip_all_lengths) ||
        !CU_add_test(s, "all byte values", test_all_byte_values) ||
        !CU_add_test(s, "libb64 past 72*3 bytes", test_libb64_past_line_length) ||
        !CU_add_test(s, "libb64 multi-megabyte", test_libb64_multi_megabyte) ||
        !CU_add_test(s, "decoder rejects", test_decode_rejects) ||
        !CU_add_test(s, "decoder rejects a bad char anywhere", test_decode_rejects_any_position) ||
        !CU_add_test(s, "decoder accepts", test_decode_accepts) ||
        !CU_add_test(s, "encoder names", test_encoder_names))
        return -1;
    return 0;
}
