/* mime: an image's MIME type, for {{image.mime}}, a raw-bytes body's Content-Type and a
 * multipart file part. Read from the content's first bytes (the magic numbers of PNG, JPEG, GIF,
 * WebP, BMP and TIFF), or else from the file name's extension, or else
 * application/octet-stream. The strings are static. */
#ifndef ANNOTATE_MIME_H
#define ANNOTATE_MIME_H

#include <stddef.h>

/* How many first bytes mime_of wants to see (fewer is fine: a short file). */
#define MIME_HEAD 12

/* head: the first min(MIME_HEAD, file size) bytes; name: the file's name or path (may be NULL). */
const char *mime_of(const unsigned char *head, size_t n, const char *name);

/* The static string of a type mime_of can give that equals s, or application/octet-stream (a
 * type passed between processes comes back as the same static string). */
const char *mime_canonical(const char *s);

/* The type the magic numbers alone give, or NULL when they name none. */
const char *mime_sniff(const unsigned char *head, size_t n);

#endif
