/* mime: see mime.h. */
#include "common/mime.h"

#include <string.h>
#include <strings.h>

const char *mime_sniff(const unsigned char *h, size_t n)
{
    if (n >= 8 && !memcmp(h, "\x89PNG\r\n\x1a\n", 8))
        return "image/png";
    if (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF)
        return "image/jpeg";
    if (n >= 6 && (!memcmp(h, "GIF87a", 6) || !memcmp(h, "GIF89a", 6)))
        return "image/gif";
    if (n >= 12 && !memcmp(h, "RIFF", 4) && !memcmp(h + 8, "WEBP", 4))
        return "image/webp";
    if (n >= 2 && h[0] == 'B' && h[1] == 'M')
        return "image/bmp";
    if (n >= 4 && (!memcmp(h, "II*\0", 4) || !memcmp(h, "MM\0*", 4)))
        return "image/tiff";
    return NULL;
}

static const struct {
    const char *ext, *type;
} EXT[] = {
    {"png", "image/png"},   {"jpg", "image/jpeg"},  {"jpeg", "image/jpeg"}, {"jpe", "image/jpeg"},
    {"gif", "image/gif"},   {"webp", "image/webp"}, {"bmp", "image/bmp"},   {"tif", "image/tiff"},
    {"tiff", "image/tiff"}, {"heic", "image/heic"}, {"heif", "image/heif"}, {"avif", "image/avif"},
};

const char *mime_canonical(const char *s)
{
    static const char *const sniffed[] = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
                                          "image/tiff"};
    for (size_t i = 0; i < sizeof sniffed / sizeof *sniffed; i++)
        if (!strcmp(s, sniffed[i]))
            return sniffed[i];
    for (size_t i = 0; i < sizeof EXT / sizeof EXT[0]; i++)
        if (!strcmp(s, EXT[i].type))
            return EXT[i].type;
    return "application/octet-stream";
}

const char *mime_of(const unsigned char *head, size_t n, const char *name)
{
    const char *t = mime_sniff(head, n);
    if (t)
        return t;
    const char *slash = name ? strrchr(name, '/') : NULL;
    const char *base = slash ? slash + 1 : name;
    const char *dot = base ? strrchr(base, '.') : NULL;
    if (dot && dot != base)
        for (size_t i = 0; i < sizeof EXT / sizeof EXT[0]; i++)
            if (!strcasecmp(dot + 1, EXT[i].ext))
                return EXT[i].type;
    return "application/octet-stream";
}
