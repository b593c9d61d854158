/* spec: how a stage wants its image prepared, the stage's "image" object of a pipeline file:
 *
 *   {"max_side": 1024, "format": "jpeg", "quality": 90}
 *   {"size": [224, 224], "fit": "cover", "format": "png", "strip": false}
 *
 *   "max_side" N      fit inside N x N, aspect kept; never enlarged (a smaller image keeps its
 *                     size). 1 to PREP_SIDE_MAX.
 *   "size" [W, H]     exactly W x H, enlarged or reduced as needed, with "fit" (required with
 *                     "size", refused without it): "fill" stretches to W x H; "cover" keeps the
 *                     aspect and cuts the overflow off equally on both sides (the middle of the
 *                     image stays); "contain" keeps the aspect, fits the whole image inside and
 *                     pads the rest with black, equally on both sides (letterboxing). W and H
 *                     from 1 to PREP_SIDE_MAX. "max_side" and "size" exclude each other.
 *   "format"          "jpeg" (the default), "png", "webp", or "same": the file's own format when
 *                     it is one of those three, else PNG for the lossless GIF and TIFF and JPEG
 *                     for HEIC. An image with transparency saved as JPEG is laid on white.
 *   "quality"         1 to 100 (default PREP_QUALITY_DEFAULT), for JPEG and WebP; refused with
 *                     "format": "png".
 *   "orient"          true (the default) or false: turn the image upright by its EXIF
 *                     Orientation tag (the tag is then gone, so nobody turns it twice). HEIC
 *                     arrives upright either way: libheif applies the file's own transforms
 *                     and libvips drops its EXIF tag, as the HEIF standard says.
 *   "strip"           true (the default) or false: send no metadata. EXIF (the GPS position,
 *                     the camera's serial number), XMP, IPTC, comments and the ICC profile are
 *                     all left out; an image with an ICC profile has its pixels converted to
 *                     sRGB with it first, so its colours stay right without one. false keeps
 *                     them all, the profile with the pixels as they are.
 *
 * Every key is optional, but a spec must change something: one whose "orient" and "strip" are
 * false, with "format" "same" and no size, is refused as doing nothing (leave "image" out to
 * send the file as it is). Any other key, a value of another type, a number out of range or not
 * whole, and a key given twice are refused with a message naming the key.
 *
 * A parsed spec is a plain value: two specs that prepare images the same way compare equal
 * (prep_spec_equal), whatever defaults were spelt out, and have the same canonical text
 * (prep_spec_text), which parses back into an equal spec. No libvips here: the pipeline parser
 * and the fuzzer use this alone. */
#ifndef ANNOTATE_PREP_SPEC_H
#define ANNOTATE_PREP_SPEC_H

#include <stddef.h>
#include <cjson/cJSON.h>

#define PREP_SIDE_MAX 16383         /* the most pixels on a side any of the three formats holds (WebP) */
#define PREP_QUALITY_DEFAULT 85
#define PREP_SPEC_TEXT_MAX 128      /* prep_spec_text's longest text, with its NUL */

enum prep_resize {
    PREP_RESIZE_NONE = 0, /* the image's own size */
    PREP_RESIZE_MAX_SIDE, /* "max_side": width == height == N */
    PREP_RESIZE_FILL,     /* "size" with "fit" "fill" */
    PREP_RESIZE_COVER,    /* ... "cover" */
    PREP_RESIZE_CONTAIN,  /* ... "contain" */
};

enum prep_format { PREP_FORMAT_SAME = 0, PREP_FORMAT_JPEG, PREP_FORMAT_PNG, PREP_FORMAT_WEBP };

struct prep_spec {
    enum prep_resize resize;
    int width, height;       /* 0 with PREP_RESIZE_NONE */
    enum prep_format format;
    int quality;             /* 1-100; 0 with PREP_FORMAT_PNG */
    int orient, strip;       /* 0 or 1 */
};

/* Parses a stage's "image" value. Returns 0 with *out set, or -1 with err saying what is wrong,
 * as "\"image\": \"quality\" must be a whole number from 1 to 100" (the caller adds the file
 * and the stage). */
int prep_spec_parse(const cJSON *image, struct prep_spec *out, char *err, size_t errlen);

/* The spec of "image": {} (all defaults). */
void prep_spec_default(struct prep_spec *out);

/* 1 when a and b prepare every image the same way. */
int prep_spec_equal(const struct prep_spec *a, const struct prep_spec *b);

/* The canonical text: compact JSON, every key spelt out in a fixed order, e.g.
 * {"max_side":1024,"format":"jpeg","quality":85,"orient":true,"strip":true}. Writes it into buf
 * (cap >= PREP_SPEC_TEXT_MAX is always enough) and returns its length. */
size_t prep_spec_text(const struct prep_spec *s, char *buf, size_t cap);

/* Checks that the object has no key twice. Returns the first repeated key, or NULL. */
const char *prep_json_repeated_key(const cJSON *object);

#endif
