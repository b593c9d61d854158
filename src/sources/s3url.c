/* s3url: s3:// URLs, S3's percent-encoding, and the text checks the other s3 files share (see
 * s3.h and s3int.h). */
#include "sources/s3.h"
#include "common/hex.h"
#include "sources/s3int.h"
#include "common/secrets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

size_t s3_encode(const char *s, size_t n, int keep_slash, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (c == '/' && keep_slash)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

int s3_decode(const char *s, size_t n, int plus_is_space, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = n - i >= 3 ? hex_digit((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit((unsigned char)s[i + 2]) : -1;
            if (lo < 0)
                return -1;
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = c == '+' && plus_is_space ? ' ' : (char)c;
        }
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

/* ---- text checks ---- */

int s3_utf8_ok(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0; /* cut short */
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        /* overlong three- and four-byte forms, surrogates, beyond U+10FFFF */
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* 1 for a hex digit. */
static int hexdigit(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* s[0..n) with every run of 64 or more hex digits (a SigV4 signature, which libcurl computes,
 * so that it cannot be registered) as SECRETS_MARK; malloc'd, its length in *len. */
static char *without_signatures(const char *s, size_t n, size_t *len)
{
    size_t ml = sizeof SECRETS_MARK - 1;
    char *o = malloc(n + ml + 1);
    size_t k = 0;
    for (size_t i = 0; o && i < n;) {
        size_t run = 0;
        while (i + run < n && hexdigit((unsigned char)s[i + run]))
            run++;
        if (run >= 64) {
            memcpy(o + k, SECRETS_MARK, ml);
            k += ml;
        } else {
            memcpy(o + k, s + i, run ? run : 1);
            k += run ? run : 1;
        }
        i += run ? run : 1;
    }
    *len = k;
    return o;
}

void s3_printable(char *out, size_t cap, const char *s, size_t n)
{
    if (cap == 0)
        return;
    /* Scrubbed before it is cut: a secret across the cut leaves no prefix behind. */
    size_t sl = 0;
    char *clean = without_signatures(s, n, &sl);
    size_t o = clean ? secrets_scrub_to(clean, sl, out, cap) : 0;
    free(clean);
    for (size_t i = 0; i < o; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c == '\r' || c == '\n' || c == '\t')
            c = ' ';
        out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    /* a cut inside a UTF-8 sequence would leave half a character: drop it */
    size_t lead = o;
    while (lead > 0 && ((unsigned char)out[lead - 1] & 0xC0) == 0x80)
        lead--;
    if (lead > 0 && (unsigned char)out[lead - 1] >= 0xC0) {
        unsigned char c = (unsigned char)out[lead - 1];
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (o - (lead - 1) < need)
            o = lead - 1;
    }
    out[o] = '\0';
}

/* ---- s3:// ---- */

int s3_bucket_name_ok(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '.' && c != '-' && c != '_')
            return 0;
        if ((i == 0 || i == n - 1) && !alnum)
            return 0;
    }
    return 1;
}

int s3_bucket_is_dns(const char *b)
{
    size_t n = strlen(b);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return n >= 3 && n <= 63 && b[0] != '-' && b[n - 1] != '-';
}

int s3_url_parse(const char *url, struct s3_location *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strncmp(url, "s3://", 5) != 0) {
        snprintf(err, errlen, "%.200s: not an s3:// URL", url);
        return -1;
    }
    const char *b = url + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    const char *prefix = slash ? slash + 1 : "";
    char shown[256];
    s3_printable(shown, sizeof shown, url, strlen(url));
    if (blen == 0) {
        snprintf(err, errlen, "%s: no bucket name (write s3://BUCKET/PREFIX)", shown);
        return -1;
    }
    if (!s3_bucket_name_ok(b, blen)) {
        snprintf(err, errlen,
                 "%s: not a bucket name (3 to 63 letters, digits, '.', '-' or '_', beginning and ending with a letter "
                 "or a digit)", shown);
        return -1;
    }
    size_t plen = strlen(prefix);
    if (plen > S3_KEY_MAX || !s3_utf8_ok(prefix, plen)) {
        snprintf(err, errlen, "%s: the prefix must be at most %d bytes of UTF-8", shown, S3_KEY_MAX);
        return -1;
    }
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)prefix[i] < 0x20 || prefix[i] == 0x7f) {
            snprintf(err, errlen, "%s: the prefix holds a control character", shown);
            return -1;
        }
    out->bucket = strndup(b, blen);
    out->prefix = strdup(prefix);
    if (!out->bucket || !out->prefix) {
        s3_location_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void s3_location_free(struct s3_location *l)
{
    free(l->bucket);
    free(l->prefix);
    l->bucket = l->prefix = NULL;
}
