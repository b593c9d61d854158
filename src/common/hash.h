/* hash: the digest that names what was asked, for the answer store (results/store.h). BLAKE3,
 * through the BLAKE3 team's own C implementation (third_party/blake3), which picks its fastest
 * code for the processor at run time (AVX-512, AVX2, SSE4.1, SSE2, NEON, portable C).
 *
 * Why BLAKE3: a store shared between jobs must not be fooled by crafted images, so the hash must
 * be one with no known way to make two inputs collide; among those it is by far the fastest
 * here, and a first run with --cache hashes every file it reads. Measured on the project's
 * machine (make bench-cache-store prints the same table), one core, MB/s:
 *
 *                         40 KB   4 MB
 *   BLAKE3                 6570   8220   chosen
 *   SHA-256 (libcrypto)    1720   1740   SHA-NI; the store's hash until 2026-12
 *   BLAKE2b-512 (EVP)      1210   1230
 *   BLAKE2b (libb2)         540    550
 *   XXH3-128 (libxxhash)  16250  16600   not collision-resistant: a crafted pair shares a key
 *
 * With SHA-256, the hash alone was about 8 % of a first run's CPU (30 us of a 40 KB image's
 * 320); it was most of what --cache added to it. A fully cached re-run of 5,000 images/s of 40 KB
 * hashes 205 MB/s: a thirtieth of one core.
 *
 * What callers may rely on:
 *   - hash_init, then any number of hash_update / hash_part calls, then hash_final gives the
 *     BLAKE3 hash (32 bytes, its default length) of the bytes fed, in order: a request can be
 *     hashed piece by piece, never assembled. hash_update(a) then hash_update(b) is the same as
 *     hash_update(a b).
 *   - hash_part frames a piece with its length (8 bytes, little-endian, then the bytes), so that
 *     pieces cannot run into each other: parts "ab","c" and "a","bc" hash differently. Keys are
 *     built from parts (store.h says which).
 *   - A context is used by one thread at a time; different contexts in different threads at
 *     once are fine. A context holds its state itself (about 1.9 KB: a stack variable is fine)
 *     and allocates nothing; after hash_final or hash_discard it can be initialised again.
 *   - Nothing fails: hash_init and hash_final return 0 (callers still check them: the interface
 *     lets a hash fail, and the caller then does without the digest: for the store, no lookup
 *     and no put). */
#ifndef ANNOTATE_HASH_H
#define ANNOTATE_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "blake3.h"

#define HASH_BYTES 32 /* BLAKE3's default output */
_Static_assert(HASH_BYTES == BLAKE3_OUT_LEN, "the digest is BLAKE3's default length");

struct hash_ctx {
    blake3_hasher b3;
    int ready; /* initialised, not yet finalised: an update outside that makes hash_final fail */
    int failed;
};

/* 0 (the interface keeps -1 for a hash that cannot start; this one always can). */
int hash_init(struct hash_ctx *h);

/* Feeds n bytes (n may be 0; p may then be NULL). */
void hash_update(struct hash_ctx *h, const void *p, size_t n);

/* Feeds the piece [p, p + n) framed by its length. */
void hash_part(struct hash_ctx *h, const void *p, size_t n);

/* The frame of a piece of total bytes that the caller then feeds with hash_update, in as many
 * calls as it likes, exactly total bytes in all: hash_part_begin(h, n) + hash_update(h, p, n) is
 * hash_part(h, p, n). */
void hash_part_begin(struct hash_ctx *h, uint64_t total);

/* Writes the digest into out and ends the context. 0, or -1 (out is then zeroed) when the
 * context was not initialised or was fed after its end. */
int hash_final(struct hash_ctx *h, unsigned char out[HASH_BYTES]);

/* Ends a context without a digest (an error path). A context never initialised, or already
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
