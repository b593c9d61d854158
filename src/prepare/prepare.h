/* prepare: an image file's bytes made into what a stage asked for (spec.h): sized, upright,
 * re-encoded, without metadata; or a box of the upright original (box.h) cut out and then
 * prepared the same way. libvips (Debian's 8.14) does the decoding, resampling and encoding.
 *
 * What callers may rely on:
 *
 * - The plugin. libvips is not linked into annotate: the code that calls it is the plugin
 *   annotate-vips.so (plugin.h), loaded by prep_plugin_load (prep_init loads it too) from the
 *   first of: $ANNOTATE_PLUGIN_DIR (alone, when set); the folder of the running binary; that
 *   folder's ../lib/annotate; $(PREFIX)/lib/annotate as built. A process that prepares no image
 *   never loads it, nor libvips. Every function below but prep_plugin_load needs prep_init to
 *   have succeeded in the process: before it, those that can fail fail with "image preparation
 *   is not started (prep_init)", the frees do nothing and the estimates say UINT64_MAX.
 *
 * - Formats. JPEG, PNG, WebP, TIFF, GIF (its first frame) and HEIC (libheif, which also reads
 *   AVIF) are read; nothing else. Each of those six loaders is asked alone whether the bytes are
 *   its format; libvips' own search (vips_foreign_find_load_buffer) is not used, as it would run
 *   every loader's sniffer on them, ImageMagick's among them. Every other loader (SVG, PDF,
 *   ImageMagick, FITS, ...) is blocked for the whole process besides. The output is JPEG, PNG or
 *   WebP (spec.h says which).
 *
 * - Bad images fail, they never crash. A file that is not an image fails with "not an image
 *   annotate reads (...)"; a header the decoder refuses with "cannot read the image: " and its
 *   reason; a truncated or corrupt image with "cannot prepare the image: " and the decoder's
 *   reason ("cannot prepare the image: VipsJpeg: Premature end of input file", "...: vipspng:
 *   libpng read error; not enough data"). libvips fails on truncation and on decoder errors
 *   (fail_on "error"); the warnings a decoder recovers from (a few bad bytes in a JPEG's
 *   entropy-coded data) do not fail the image: it is decoded as every viewer shows it. An image
 *   of more than max_pixels pixels (width x height of its first frame) fails with "image too
 *   large: W×H pixels (--max-pixels N)", read from its header, before any pixel is decoded or any
 *   buffer for them is allocated.
 *
 * - The reason is this image's own. libvips 8.14 keeps one error buffer for the whole process and
 *   its decoders report from libvips' worker threads, so two images failing at once would mix
 *   their messages. Every call here therefore runs under a shared lock, and a call that libvips
 *   failed is run a second time alone (the lock held exclusively, the buffer cleared first):
 *   what the buffer then holds, and the decoder's warnings, are this image's. Failing images cost
 *   a second decode and a short pause of the other preparations; good ones cost nothing more.
 *   libvips' warnings are never printed (they would break the progress line); they only feed
 *   those reasons.
 *
 * - Shrink-on-load. A JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) when that
 *   still leaves at least the pixels the output needs, as Pillow's draft() does; the rest of the
 *   way is vips_resize with a Catmull-Rom cubic (Pillow's BICUBIC), alpha premultiplied. Other
 *   formats are decoded at full size. Decoding streams: a baseline JPEG, a non-interlaced PNG and
 *   a stripped TIFF are read a few lines at a time; a progressive JPEG, an interlaced PNG, WebP,
 *   GIF and HEIC are decoded whole by their libraries. Turning an image upright happens after
 *   sizing, on the small image.
 *
 * - Memory. The operation cache is off (vips_cache_set_max(0), and 0 bytes, 0 files): nothing of
 *   one image is kept after its call. No temporary file is ever written (loaders are opened
 *   sequentially or copied into memory explicitly, so VIPS_DISC_THRESHOLD never applies and a
 *   killed run leaves nothing in TMPDIR). prep_peak_bytes and prep_source_bytes say how many
 *   bytes one preparation or one held source needs at most, for --max-memory.
 *
 * - Threads. Every function may be called from any thread, at once, after prep_init. Each call
 *   works on one image with `threads` libvips worker threads (1 when the caller runs one image
 *   per thread), plus libvips' write-behind thread while it encodes. A source may be cut by
 *   several threads at once. libvips' threads do not survive a fork: a process that forks
 *   without exec'ing calls prep_init in the child, not before the fork. ThreadSanitizer cannot
 *   follow libvips' and GLib's own locking (they are not instrumented), so it reports races inside
 *   them; valgrind runs them with VIPS_NOVECTOR=1 and JSIMD_FORCENONE=1 (see the Makefile).
 *
 * - Output bytes are libvips' (g_malloc); prep_result_free releases them. The input's bytes are
 *   never changed, and prep_image and prep_crop never keep a pointer to them. */
#ifndef ANNOTATE_PREPARE_H
#define ANNOTATE_PREPARE_H

#include <stddef.h>
#include <stdint.h>
#include "prepare/box.h"
#include "prepare/spec.h"

#define PREP_MAX_PIXELS_DEFAULT 100000000ull /* --max-pixels: 100 MP */

/* Loads the plugin (above), once per process; safe from any thread. Returns 0, or -1 with err
 * naming every file looked for (none there), or the file and why it was refused (it does not
 * load: libvips missing; not annotate's; from another build). A configuration error: the
 * command line calls it when the pipeline prepares images, before anything is sent. */
int prep_plugin_load(char *err, size_t errlen);

/* Starts libvips for the process and configures it (above). threads: libvips worker threads per
 * call (1 to 1024). The first call does it; later calls change nothing and return what the
 * first returned. Returns 0, or -1 with err. */
int prep_init(int threads, char *err, size_t errlen);

/* Shuts libvips down (its threads, its caches), for a clean exit under leak checkers. No call may
 * follow, nor run at the same time. */
void prep_shutdown(void);

/* What an image's header says. */
struct prep_info {
    int width, height;       /* upright */
    int stored_w, stored_h;  /* as the file stores its pixels */
    int orientation;         /* EXIF orientation, 1-8 (1 when there is none) */
    int bands;               /* 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA or CMYK */
    int sample_bytes;        /* 1 for 8-bit images, 2 for 16-bit, ... */
    int streams;             /* 1 when the decoder reads a few lines at a time, 0 when it holds
                                the whole image (see above) */
    int has_icc;             /* it carries an ICC profile */
    const char *mime;        /* static (mime.h): image/jpeg, image/png, image/webp, image/tiff,
                                image/gif or image/heif */
};

/* Reads the header only (no pixels). Returns 0, or -1 with err: not an image, a format that is
 * not read, a header the decoder refuses, or more than max_pixels pixels (0:
 * PREP_MAX_PIXELS_DEFAULT, in every function here). */
int prep_probe(const void *bytes, size_t len, uint64_t max_pixels, struct prep_info *info, char *err,
               size_t errlen);

/* A prepared image. */
struct prep_result {
    unsigned char *data;     /* the prepared file's bytes; NULL when unchanged */
    size_t len;
    int unchanged;           /* 1: the input's bytes already are what the spec asks for (nothing
                                to size, turn, strip or convert, and in the format asked): send
                                them as they are */
    const char *mime;        /* static (mime.h) */
    int width, height;       /* of the prepared image (the input's, when unchanged) */
    struct prep_frame frame; /* how its pixels map to the upright original (box.h), for the boxes
                                a stage answers about it */
};

/* Prepares the image file bytes[0..len) as spec says. Returns 0 with *out (release it with
 * prep_result_free), or -1 with err (out is then empty). */
int prep_image(const void *bytes, size_t len, const struct prep_spec *spec, uint64_t max_pixels,
               struct prep_result *out, char *err, size_t errlen);

void prep_result_free(struct prep_result *r);

/* An image decoded whole, at full size, for cutting crops out of: prep_source_open decodes it
 * (errors and limits as prep_image's) and the bytes may be freed as soon as it returns. */
struct prep_source;

int prep_source_open(const void *bytes, size_t len, uint64_t max_pixels, struct prep_source **out, char *err,
                     size_t errlen);

const struct prep_info *prep_source_info(const struct prep_source *s);

/* Cuts r, a rectangle of the upright original (prep_box_map's), and prepares it as spec says
 * (NULL: prep_spec_default's). A crop is always upright, whatever spec's "orient": the box was
 * drawn on the upright image. "cover", "contain" and "fill" apply to the crop; "format": "same" is
 * the source file's format. Returns 0 with *out (out->frame is the crop's own), or -1 with err
 * (a rectangle outside the image is refused). */
int prep_crop(struct prep_source *s, struct prep_rect r, const struct prep_spec *spec, struct prep_result *out,
              char *err, size_t errlen);

void prep_source_free(struct prep_source *s);

/* The most bytes one prep_image of an image with this header needs while it runs (decoder,
 * pixels, encoder), its output included; for --max-memory. Measured by make bench-prepare. */
uint64_t prep_peak_bytes(const struct prep_info *info, const struct prep_spec *spec);

/* The bytes a source of this image holds while it is open (its decoded pixels), and the most
 * one prep_crop of an r.w x r.h rectangle needs on top. */
uint64_t prep_source_bytes(const struct prep_info *info);
uint64_t prep_crop_peak_bytes(const struct prep_info *info, struct prep_rect r, const struct prep_spec *spec);

#endif
