/* hash: the digest that names what was asked, for the answer store (results/store.h). SHA-256,
 * through OpenSSL's libcrypto (EVP, the provider's fastest code: SHA-NI where the processor has
 * it).
 *
 * Why SHA-256: a store shared between jobs must not be fooled by crafted images, so the hash must
 * be one with no known way to make two inputs collide; among those it is the fastest here. Measured
 * on the project's machine (make bench-cache-store prints the same table), one core, MB/s:
 *
 *                         40 KB   4 MB
 *   SHA-256 (EVP)          1730   1720   chosen
 *   BLAKE2b-512 (EVP)       900    760
 *   BLAKE2b (libb2)         790    800
 *   XXH3-128 (libxxhash)  14650  15560   not collision-resistant: a crafted pair shares a key
 *
 * A fully cached re-run of 5,000 images/s of 40 KB hashes 205 MB/s: an eighth of one core. On a
 * processor without SHA instructions SHA-256 falls to about 400 MB/s, still twice that.
 *
 * What callers may rely on:
 *   - hash_init, then any number of hash_update / hash_part calls, then hash_final gives the
 *     SHA-256 of the bytes fed, in order: a request can be hashed piece by piece, never
 *     assembled. hash_update(a) then hash_update(b) is the same as hash_update(a b).
 *   - hash_part frames a piece with its length (8 bytes, little-endian, then the bytes), so that
 *     pieces cannot run into each other: parts "ab","c" and "a","bc" hash differently. Keys are
 *     built from parts (store.h says which).
 *   - A context is used by one thread at a time; different contexts in different threads at
 *     once are fine. hash_init allocates (about 300 bytes); hash_final and hash_discard free, and
 *     the context can then be initialised again.
 *   - Nothing fails once hash_init returned 0, except with a broken libcrypto: hash_final then
 *     returns -1, and the caller does without the digest (for the store: no lookup, no put). */
#ifndef ANNOTATE_HASH_H
#define ANNOTATE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_BYTES 32 /* SHA-256 */
#define HASH_NAME "SHA-256"

struct hash_ctx {
    void *md;   /* libcrypto's EVP_MD_CTX; NULL when not initialised */
    int failed; /* an update failed: hash_final returns -1 */
};

/* 0, or -1 when memory runs out (the context is then not initialised). */
int hash_init(struct hash_ctx *h);

/* Feeds n bytes (n may be 0; p may then be NULL). */
void hash_update(struct hash_ctx *h, const void *p, size_t n);

/* Feeds the piece [p, p + n) framed by its length. */
void hash_part(struct hash_ctx *h, const void *p, size_t n);

/* The frame of a piece of total bytes that the caller then feeds with hash_update, in as many
 * calls as it likes, exactly total bytes in all: hash_part_begin(h, n) + hash_update(h, p, n) is
 * hash_part(h, p, n). */
void hash_part_begin(struct hash_ctx *h, uint64_t total);

/* Writes the digest into out and frees the context. 0, or -1 (out is then zeroed). */
int hash_final(struct hash_ctx *h, unsigned char out[HASH_BYTES]);

/* Frees a context without a digest (an error path). A context never initialised, or already
 * finalised, is fine. */
void hash_discard(struct hash_ctx *h);

/* The digest of n bytes in one call. 0 or -1. */
int hash_bytes(const void *p, size_t n, unsigned char out[HASH_BYTES]);

/* n bytes as 2n lowercase hex digits and a NUL into out (which holds 2n + 1). Returns out. */
char *hash_hex(const unsigned char *d, size_t n, char *out);

/* Reads hex digits (either case) into at most max bytes: returns the number of bytes, or -1 when
 * text is empty, has an odd length, a non-hex character, or more than 2 max digits. */
int hash_unhex(const char *text, unsigned char *out, size_t max);

#endif
