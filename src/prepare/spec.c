/* spec: see spec.h. */
#include "prepare/spec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    char what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "\"image\": %s", what);
    return -1;
}

const char *prep_json_repeated_key(const cJSON *object)
{
    for (const cJSON *a = object ? object->child : NULL; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && !strcmp(a->string, b->string))
                return a->string;
    return NULL;
}

/* A whole number from lo to hi, into *out. */
static int whole(const cJSON *v, int lo, int hi, int *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < lo || v->valuedouble > hi)
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

/* Index of s in names[0..n), or -1. */
static int one_of(const cJSON *v, const char *const *names, int n)
{
    if (!cJSON_IsString(v))
        return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(v->valuestring, names[i]))
            return i;
    return -1;
}

static const char *const FORMATS[] = {"same", "jpeg", "png", "webp"};  /* enum prep_format's order */
static const char *const FITS[] = {"fill", "cover", "contain"};      /* from PREP_RESIZE_FILL on */

static int parse_size(const cJSON *size, const cJSON *fit, struct prep_spec *s, char *err, size_t errlen)
{
    if (!cJSON_IsArray(size) || cJSON_GetArraySize(size) != 2 ||
        whole(cJSON_GetArrayItem(size, 0), 1, PREP_SIDE_MAX, &s->width) ||
        whole(cJSON_GetArrayItem(size, 1), 1, PREP_SIDE_MAX, &s->height))
        return fail(err, errlen, "\"size\" must be [WIDTH, HEIGHT], whole numbers from 1 to %d", PREP_SIDE_MAX);
    if (!fit)
        return fail(err, errlen, "\"size\" needs \"fit\": \"fill\", \"cover\" or \"contain\"");
    int f = one_of(fit, FITS, 3);
    if (f < 0)
        return fail(err, errlen, "\"fit\" must be \"fill\", \"cover\" or \"contain\"");
    s->resize = (enum prep_resize)(PREP_RESIZE_FILL + f);
    return 0;
}

static int parse_bool(const cJSON *v, const char *key, int *out, char *err, size_t errlen)
{
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return fail(err, errlen, "\"%s\" must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int known_keys(const cJSON *image, char *err, size_t errlen)
{
    static const char *const KEYS[] = {"max_side", "size", "fit", "format", "quality", "orient", "strip"};
    for (const cJSON *kv = image->child; kv; kv = kv->next) {
        size_t i = 0;
        while (i < sizeof KEYS / sizeof *KEYS && strcmp(kv->string, KEYS[i]))
            i++;
        if (i == sizeof KEYS / sizeof *KEYS)
            return fail(err, errlen, "unknown key \"%s\" (known: max_side, size, fit, format, quality, orient, strip)",
                        kv->string);
    }
    const char *twice = prep_json_repeated_key(image);
    if (twice)
        return fail(err, errlen, "key \"%s\" appears twice", twice);
    return 0;
}

void prep_spec_default(struct prep_spec *out)
{
    *out = (struct prep_spec){.resize = PREP_RESIZE_NONE, .format = PREP_FORMAT_JPEG,
                              .quality = PREP_QUALITY_DEFAULT, .orient = 1, .strip = 1};
}

int prep_spec_parse(const cJSON *image, struct prep_spec *out, char *err, size_t errlen)
{
    if (!cJSON_IsObject(image))
        return fail(err, errlen, "must be an object, e.g. {\"max_side\": 1024}");
    if (known_keys(image, err, errlen))
        return -1;
    struct prep_spec s;
    prep_spec_default(&s);
    const cJSON *max_side = cJSON_GetObjectItemCaseSensitive(image, "max_side");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(image, "size");
    const cJSON *fit = cJSON_GetObjectItemCaseSensitive(image, "fit");
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(image, "format");
    const cJSON *quality = cJSON_GetObjectItemCaseSensitive(image, "quality");
    if (max_side && size)
        return fail(err, errlen, "\"max_side\" and \"size\" are two ways to size the image: give one");
    if (max_side) {
        if (whole(max_side, 1, PREP_SIDE_MAX, &s.width))
            return fail(err, errlen, "\"max_side\" must be a whole number from 1 to %d", PREP_SIDE_MAX);
        s.height = s.width;
        s.resize = PREP_RESIZE_MAX_SIDE;
    } else if (size) {
        if (parse_size(size, fit, &s, err, errlen))
            return -1;
    }
    if (fit && !size)
        return fail(err, errlen, "\"fit\" goes with \"size\": [WIDTH, HEIGHT]");
    int f = format ? one_of(format, FORMATS, 4) : (int)s.format;
    if (f < 0)
        return fail(err, errlen, "\"format\" must be \"jpeg\", \"png\", \"webp\" or \"same\"");
    s.format = (enum prep_format)f;
    if (quality && s.format == PREP_FORMAT_PNG)
        return fail(err, errlen, "\"quality\" is for jpeg and webp; png is lossless");
    if (quality && whole(quality, 1, 100, &s.quality))
        return fail(err, errlen, "\"quality\" must be a whole number from 1 to 100");
    if (s.format == PREP_FORMAT_PNG)
        s.quality = 0;
    if (parse_bool(cJSON_GetObjectItemCaseSensitive(image, "orient"), "orient", &s.orient, err, errlen) ||
        parse_bool(cJSON_GetObjectItemCaseSensitive(image, "strip"), "strip", &s.strip, err, errlen))
        return -1;
    if (s.resize == PREP_RESIZE_NONE && !s.orient && !s.strip && s.format == PREP_FORMAT_SAME)
        return fail(err, errlen, "changes nothing (no max_side or size, orient and strip false, format same): "
                                 "leave \"image\" out to send the file as it is");
    *out = s;
    return 0;
}

int prep_spec_equal(const struct prep_spec *a, const struct prep_spec *b)
{
    return a->resize == b->resize && a->width == b->width && a->height == b->height && a->format == b->format &&
           a->quality == b->quality && !a->orient == !b->orient && !a->strip == !b->strip;
}

size_t prep_spec_text(const struct prep_spec *s, char *buf, size_t cap)
{
    char size[64] = "", quality[24] = "";
    if (s->resize == PREP_RESIZE_MAX_SIDE)
        snprintf(size, sizeof size, "\"max_side\":%d,", s->width);
    else if (s->resize != PREP_RESIZE_NONE)
        snprintf(size, sizeof size, "\"size\":[%d,%d],\"fit\":\"%s\",", s->width, s->height,
                 FITS[s->resize - PREP_RESIZE_FILL]);
    if (s->format != PREP_FORMAT_PNG)
        snprintf(quality, sizeof quality, "\"quality\":%d,", s->quality);
    int n = snprintf(buf, cap, "{%s\"format\":\"%s\",%s\"orient\":%s,\"strip\":%s}", size, FORMATS[s->format],
                     quality, s->orient ? "true" : "false", s->strip ? "true" : "false");
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap ? cap - 1 : 0;
}
