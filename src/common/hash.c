/* hash: see hash.h. BLAKE3's own implementation does the work; this file adds the parts'
 * framing and the interface's checks. */
#include "common/hash.h"
#include "common/hex.h"

#include <string.h>

int hash_init(struct hash_ctx *h)
{
    blake3_hasher_init(&h->b3);
    h->ready = 1;
    h->failed = 0;
    return 0;
}

void hash_update(struct hash_ctx *h, const void *p, size_t n)
{
    if (!h->ready)
        h->failed = 1;
    else if (n)
        blake3_hasher_update(&h->b3, p, n);
}

void hash_part_begin(struct hash_ctx *h, uint64_t total)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(total >> (8 * i));
    hash_update(h, len, sizeof len);
}

void hash_part(struct hash_ctx *h, const void *p, size_t n)
{
    hash_part_begin(h, n);
    hash_update(h, p, n);
}

int hash_final(struct hash_ctx *h, unsigned char out[HASH_BYTES])
{
    int ok = h->ready && !h->failed;
    if (ok)
        blake3_hasher_finalize(&h->b3, out, HASH_BYTES);
    else
        memset(out, 0, HASH_BYTES);
    hash_discard(h);
    return ok ? 0 : -1;
}

void hash_discard(struct hash_ctx *h)
{
    h->ready = 0;
    h->failed = 0;
}

int hash_bytes(const void *p, size_t n, unsigned char out[HASH_BYTES])
{
    struct hash_ctx h;
    if (hash_init(&h)) {
        memset(out, 0, HASH_BYTES);
        return -1;
    }
    hash_update(&h, p, n);
    return hash_final(&h, out);
}

char *hash_hex(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = 0;
    return out;
}

int hash_unhex(const char *text, unsigned char *out, size_t max)
{
    size_t n = strlen(text);
    if (n == 0 || n % 2 || n / 2 > max)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_digit(text[2 * i]), lo = hex_digit(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return (int)(n / 2);
}
