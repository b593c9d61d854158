/* b64: strict base64, RFC 4648 standard alphabet, padded, no line breaks. See b64.h.
 *
 * Fast encoder: a 4096-entry table of 2-character pairs (12 input bits -> 2 output chars).
 * The main loop reads 64-bit big-endian words and turns 6 input bytes into 8 output chars
 * with four pair lookups and one 64-bit store; two words per iteration (12 in, 16 out).
 *
 * Decoder: four 256-entry tables of pre-shifted 24-bit contributions; an invalid character
 * maps to a value with bit 24 set, so OR-ing the four lookups of a group gives the decoded
 * 24 bits and an error flag at once. Errors are accumulated and tested once, after the main
 * loop (dst contents are unspecified on error). On little-endian targets four groups are
 * written as two 8-byte stores (6 useful bytes each); this never writes past dst because the
 * loop stops before the final group, whose 1..3 bytes of room absorb the 2 bytes of slack.
 *
 * libb64 path: Debian's libb64 1.2 (cencode.h) wraps lines every 72 characters and appends a
 * newline in blockend; we encode in chunks (its length is an int) into a stack buffer and copy
 * out everything except the newlines. */
#include "common/b64.h"

#include <stdint.h>
#include <string.h>

#include <b64/cencode.h>

/* ---------------------------------------------------------------------------------------- */
/* Tables, all built at compile time.                                                        */

#define B64_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

static const char b64_alpha[65] = B64_ALPHABET;

/* b64_pairs[2*i], b64_pairs[2*i+1] = alphabet[i >> 6], alphabet[i & 63], for i in 0..4095. */
#define P1(a, b) a b
#define PROW(a)                                                                              \
    P1(a, "A") P1(a, "B") P1(a, "C") P1(a, "D") P1(a, "E") P1(a, "F") P1(a, "G") P1(a, "H")  \
    P1(a, "I") P1(a, "J") P1(a, "K") P1(a, "L") P1(a, "M") P1(a, "N") P1(a, "O") P1(a, "P")  \
    P1(a, "Q") P1(a, "R") P1(a, "S") P1(a, "T") P1(a, "U") P1(a, "V") P1(a, "W") P1(a, "X")  \
    P1(a, "Y") P1(a, "Z") P1(a, "a") P1(a, "b") P1(a, "c") P1(a, "d") P1(a, "e") P1(a, "f")  \
    P1(a, "g") P1(a, "h") P1(a, "i") P1(a, "j") P1(a, "k") P1(a, "l") P1(a, "m") P1(a, "n")  \
    P1(a, "o") P1(a, "p") P1(a, "q") P1(a, "r") P1(a, "s") P1(a, "t") P1(a, "u") P1(a, "v")  \
    P1(a, "w") P1(a, "x") P1(a, "y") P1(a, "z") P1(a, "0") P1(a, "1") P1(a, "2") P1(a, "3")  \
    P1(a, "4") P1(a, "5") P1(a, "6") P1(a, "7") P1(a, "8") P1(a, "9") P1(a, "+") P1(a, "/")

static const char b64_pairs[8192 + 1] __attribute__((aligned(64))) =
    PROW("A") PROW("B") PROW("C") PROW("D") PROW("E") PROW("F") PROW("G") PROW("H")
    PROW("I") PROW("J") PROW("K") PROW("L") PROW("M") PROW("N") PROW("O") PROW("P")
    PROW("Q") PROW("R") PROW("S") PROW("T") PROW("U") PROW("V") PROW("W") PROW("X")
    PROW("Y") PROW("Z") PROW("a") PROW("b") PROW("c") PROW("d") PROW("e") PROW("f")
    PROW("g") PROW("h") PROW("i") PROW("j") PROW("k") PROW("l") PROW("m") PROW("n")
    PROW("o") PROW("p") PROW("q") PROW("r") PROW("s") PROW("t") PROW("u") PROW("v")
    PROW("w") PROW("x") PROW("y") PROW("z") PROW("0") PROW("1") PROW("2") PROW("3")
    PROW("4") PROW("5") PROW("6") PROW("7") PROW("8") PROW("9") PROW("+") PROW("/");

#undef PROW
#undef P1

/* Value of character c, or B64_BAD. */
#define B64_BAD 0x1000000u
#define DVAL(c)                                                                              \
    ((c) >= 'A' && (c) <= 'Z'   ? (uint32_t)((c) - 'A')                                      \
     : (c) >= 'a' && (c) <= 'z' ? (uint32_t)((c) - 'a' + 26)                                 \
     : (c) >= '0' && (c) <= '9' ? (uint32_t)((c) - '0' + 52)                                 \
     : (c) == '+'               ? 62u                                                        \
     : (c) == '/'               ? 63u                                                        \
                                : B64_BAD)
/* Position p (0..3) in a group: value shifted into place; B64_BAD stays B64_BAD. */
#define DSH(c, p) (DVAL(c) == B64_BAD ? B64_BAD : DVAL(c) << (18 - 6 * (p)))
#define D4(c, p) DSH(c, p), DSH((c) + 1, p), DSH((c) + 2, p), DSH((c) + 3, p)
#define D16(c, p) D4(c, p), D4((c) + 4, p), D4((c) + 8, p), D4((c) + 12, p)
#define D64(c, p) D16(c, p), D16((c) + 16, p), D16((c) + 32, p), D16((c) + 48, p)
#define D256(p) { D64(0, p), D64(64, p), D64(128, p), D64(192, p) }

static const uint32_t b64_dec[4][256] __attribute__((aligned(64))) = {
    D256(0), D256(1), D256(2), D256(3),
};

#undef D256
#undef D64
#undef D16
#undef D4
#undef DSH
#undef DVAL

/* ---------------------------------------------------------------------------------------- */
/* Helpers.                                                                                  */

static inline uint64_t load_be64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#elif !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
    v = (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 |
        (uint64_t)p[3] << 32 | (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 |
        (uint64_t)p[6] << 8 | (uint64_t)p[7];
#endif
    return v;
}

static inline void put_pair(char *d, unsigned idx)
{
    memcpy(d, b64_pairs + 2 * idx, 2);
}

/* 6 bytes (the top 48 bits of w) -> 8 characters at d. */
static inline void enc6(char *d, uint64_t w)
{
    put_pair(d + 0, (unsigned)(w >> 52) & 0xfff);
    put_pair(d + 2, (unsigned)(w >> 40) & 0xfff);
    put_pair(d + 4, (unsigned)(w >> 28) & 0xfff);
    put_pair(d + 6, (unsigned)(w >> 16) & 0xfff);
}

/* ---------------------------------------------------------------------------------------- */
/* Encoders.                                                                                 */

size_t b64_encoded_len(size_t n)
{
    return (n / 3 + (n % 3 != 0)) * 4;
}

static size_t encode_fast(const unsigned char *s, size_t n, char *dst)
{
    char *d = dst;
    /* 12 bytes per iteration from two 8-byte loads; the second load reads s[6..13]. */
    while (n >= 14) {
        enc6(d, load_be64(s));
        enc6(d + 8, load_be64(s + 6));
        s += 12;
        d += 16;
        n -= 12;
    }
    while (n >= 3) {
        unsigned v = (unsigned)s[0] << 16 | (unsigned)s[1] << 8 | s[2];
        put_pair(d, v >> 12);
        put_pair(d + 2, v & 0xfff);
        s += 3;
        d += 4;
        n -= 3;
    }
    if (n == 1) {
        unsigned v = s[0];
        d[0] = b64_alpha[v >> 2];
        d[1] = b64_alpha[(v & 3) << 4];
        d[2] = '=';
        d[3] = '=';
        d += 4;
    } else if (n == 2) {
        unsigned v = (unsigned)s[0] << 8 | s[1];
        d[0] = b64_alpha[v >> 10];
        d[1] = b64_alpha[(v >> 4) & 63];
        d[2] = b64_alpha[(v & 15) << 2];
        d[3] = '=';
        d += 4;
    }
    *d = '\0';
    return (size_t)(d - dst);
}

/* Input bytes per libb64 call: a multiple of 3 (so each chunk but the last leaves the encoder in
 * step_A) and of 54 (one 72-character line), far below INT_MAX. */
#define LIBB64_CHUNK (54 * 3 * 64) /* 10368 bytes -> 13824 chars + 192 newlines */

static size_t encode_libb64(const unsigned char *s, size_t n, char *dst)
{
    /* Room for one chunk's output with its newlines, plus blockend (4 chars + newline). */
    char buf[LIBB64_CHUNK / 3 * 4 + LIBB64_CHUNK / 54 + 16];
    base64_encodestate st;
    char *d = dst;

    base64_init_encodestate(&st);
    for (;;) {
        size_t take = n < LIBB64_CHUNK ? n : LIBB64_CHUNK;
        int len = 0;
        if (take > 0)
            len = base64_encode_block((const char *)s, (int)take, buf, &st);
        s += take;
        n -= take;
        if (n == 0)
            len += base64_encode_blockend(buf + len, &st);
        /* Copy the 72-character lines without their line breaks. */
        const char *p = buf, *end = buf + len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t seg = (size_t)((nl ? nl : end) - p);
            if (seg > 0 && p[seg - 1] == '\r') /* not emitted by libb64 1.2; be safe */
                seg--;
            memcpy(d, p, seg);
            d += seg;
            p = nl ? nl + 1 : end;
        }
        if (n == 0)
            break;
    }
    *d = '\0';
    return (size_t)(d - dst);
}

size_t b64_encode_with(enum b64_encoder enc, const void *src, size_t n, char *dst)
{
    if (enc == B64_LIBB64)
        return encode_libb64(src, n, dst);
    return encode_fast(src, n, dst);
}

size_t b64_encode(const void *src, size_t n, char *dst)
{
    return encode_fast(src, n, dst);
}

/* ---------------------------------------------------------------------------------------- */
/* Decoder.                                                                                  */

size_t b64_decoded_max(size_t n)
{
    return (n / 4) * 3 + (n % 4 ? 3 : 0);
}

static inline uint32_t dec4(const unsigned char *s)
{
    return b64_dec[0][s[0]] | b64_dec[1][s[1]] | b64_dec[2][s[2]] | b64_dec[3][s[3]];
}

static inline void put3(unsigned char *d, uint32_t w)
{
    d[0] = (unsigned char)(w >> 16);
    d[1] = (unsigned char)(w >> 8);
    d[2] = (unsigned char)w;
}

int b64_decode(const char *src, size_t n, unsigned char *dst, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)src;
    unsigned char *d = dst;

    if (n % 4 != 0)
        return -1;
    if (n == 0) {
        *out_len = 0;
        return 0;
    }

    /* Every group but the last: no '=' allowed. */
    size_t groups = n / 4 - 1;
    uint32_t bad = 0;
    while (groups >= 4) {
        uint32_t a = dec4(s), b = dec4(s + 4), c = dec4(s + 8), e = dec4(s + 12);
        bad |= a | b | c | e;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Two groups = 48 bits -> one 8-byte store; the 2 extra bytes fall within dst (the
         * final group's 3 bytes of room are still ahead) and are overwritten later. */
        uint64_t x = __builtin_bswap64((uint64_t)a << 40 | (uint64_t)(b & 0xffffff) << 16);
        uint64_t y = __builtin_bswap64((uint64_t)c << 40 | (uint64_t)(e & 0xffffff) << 16);
        memcpy(d, &x, 8);
        memcpy(d + 6, &y, 8);
#else
        put3(d, a);
        put3(d + 3, b);
        put3(d + 6, c);
        put3(d + 9, e);
#endif
        s += 16;
        d += 12;
        groups -= 4;
    }
    while (groups > 0) {
        uint32_t a = dec4(s);
        bad |= a;
        put3(d, a);
        s += 4;
        d += 3;
        groups--;
    }
    if (bad & B64_BAD)
        return -1;

    /* Last group: "xxxx", "xxx=" or "xx==", with the unused bits zero. */
    if (s[3] != '=') {
        uint32_t a = dec4(s);
        if (a & B64_BAD)
            return -1;
        put3(d, a);
        d += 3;
    } else if (s[2] != '=') {
        uint32_t a = b64_dec[0][s[0]] | b64_dec[1][s[1]] | b64_dec[2][s[2]];
        if ((a & B64_BAD) || (a & 0xff))
            return -1;
        d[0] = (unsigned char)(a >> 16);
        d[1] = (unsigned char)(a >> 8);
        d += 2;
    } else {
        uint32_t a = b64_dec[0][s[0]] | b64_dec[1][s[1]];
        if ((a & B64_BAD) || (a & 0xffff))
            return -1;
        d[0] = (unsigned char)(a >> 16);
        d += 1;
    }
    *out_len = (size_t)(d - dst);
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Names.                                                                                    */

int b64_encoder_from_name(const char *name, enum b64_encoder *out)
{
    if (!name)
        return -1;
    if (strcmp(name, "fast") == 0) {
        *out = B64_FAST;
        return 0;
    }
    if (strcmp(name, "libb64") == 0) {
        *out = B64_LIBB64;
        return 0;
    }
    return -1;
}

const char *b64_encoder_name(enum b64_encoder enc)
{
    switch (enc) {
    case B64_FAST:
        return "fast";
    case B64_LIBB64:
        return "libb64";
    }
    return "unknown";
}
