/* hash: see hash.h. The SHA-256 implementation is fetched from libcrypto's default provider once
 * (an implicit fetch on every hash_init costs as much as hashing 400 bytes). */
#include "common/hash.h"
#include "common/hex.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_fetched;

static void md_fetch(void)
{
    md_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *md_sha256(void)
{
    pthread_once(&md_once, md_fetch);
    return md_fetched ? md_fetched : EVP_sha256();
}

int hash_init(struct hash_ctx *h)
{
    h->failed = 0;
    h->md = EVP_MD_CTX_new();
    if (!h->md)
        return -1;
    if (EVP_DigestInit_ex2(h->md, md_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->md);
        h->md = NULL;
        return -1;
    }
    return 0;
}

void hash_update(struct hash_ctx *h, const void *p, size_t n)
{
    if (!h->md)
        h->failed = 1;
    else if (n && EVP_DigestUpdate(h->md, p, n) != 1)
        h->failed = 1;
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
    unsigned len = 0;
    int ok = h->md && !h->failed && EVP_DigestFinal_ex(h->md, out, &len) == 1 && len == HASH_BYTES;
    if (!ok)
        memset(out, 0, HASH_BYTES);
    hash_discard(h);
    return ok ? 0 : -1;
}

void hash_discard(struct hash_ctx *h)
{
    EVP_MD_CTX_free(h->md);
    h->md = NULL;
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
