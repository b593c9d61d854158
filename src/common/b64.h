/* b64: strict base64 (RFC 4648 standard alphabet, padded, no line breaks).
 *
 * Every image is encoded exactly once, by the load stage, and that text goes on the wire as-is.
 * Two encoders sit behind the same interface: a fast table-driven one (the default) and
 * Debian's libb64, kept as the reference the tests compare against (libb64 breaks lines every
 * 72 characters; its output is stripped of them here). The decoder is strict: it is what the
 * mock server uses to reject anything that is not canonical base64. */
#ifndef ANNOTATE_B64_H
#define ANNOTATE_B64_H

#include <stddef.h>

enum b64_encoder {
    B64_FAST = 0,   /* default */
    B64_LIBB64 = 1, /* Debian's libb64, newlines stripped */
};

/* Length of the encoding of n bytes, without the NUL: 4 * ceil(n / 3). */
size_t b64_encoded_len(size_t n);

/* Encodes n bytes of src into dst, which must hold b64_encoded_len(n) + 1 bytes; writes a
 * terminating NUL and returns the length written (not counting the NUL). */
size_t b64_encode(const void *src, size_t n, char *dst);
size_t b64_encode_with(enum b64_encoder enc, const void *src, size_t n, char *dst);

/* Upper bound of the decoded size of n characters of base64. */
size_t b64_decoded_max(size_t n);

/* Strict decode: n must be a multiple of 4, only the standard alphabet, '=' only as one or two
 * final pad characters, and unused bits of the last group zero. Writes at most
 * b64_decoded_max(n) bytes to dst and stores the count in *out_len.
 * Returns 0, or -1 when the input is not strict base64 (dst contents then unspecified). */
int b64_decode(const char *src, size_t n, unsigned char *dst, size_t *out_len);

/* "fast" or "libb64" → the encoder; returns 0, or -1 for an unknown name. */
int b64_encoder_from_name(const char *name, enum b64_encoder *out);
const char *b64_encoder_name(enum b64_encoder enc);

#endif
