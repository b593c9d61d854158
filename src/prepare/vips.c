/* The plugin annotate-vips.so: everything of prepare.h that needs libvips, handed to annotate
 * as one table (plugin.h: PREP_PLUGIN_SYMBOL). Built apart from libannotate.a with -fPIC and
 * hidden symbols, with its own copies of spec.c, box.c and common/mime.c; the table is the
 * only symbol it exports. What each function does is prepare.h's. */
#include "prepare/plugin.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <vips/vips.h>
#include <webp/mux.h>

#include "common/mime.h"

/* A call's return when libvips failed: it runs again alone, for this image's reason. */
#define FAILED_IN_VIPS (-2)

/* The loaders annotate uses, each asked alone whether the bytes are its format (its is_a): never
 * vips_foreign_find_load_buffer, which would run every loader's sniffer on them, ImageMagick's
 * (with all its coder modules) among them. Every other loader is blocked besides. */
typedef int (*load_fn)(void *buf, size_t len, VipsImage **out, ...);

static const struct reader {
    const char *nick, *class_name, *mime;
    load_fn load;
} READERS[] = {
    {"jpegload_buffer", "VipsForeignLoadJpegBuffer", "image/jpeg", vips_jpegload_buffer},
    {"pngload_buffer", "VipsForeignLoadPngBuffer", "image/png", vips_pngload_buffer},
    {"webpload_buffer", "VipsForeignLoadWebpBuffer", "image/webp", vips_webpload_buffer},
    {"tiffload_buffer", "VipsForeignLoadTiffBuffer", "image/tiff", vips_tiffload_buffer},
    {"gifload_buffer", "VipsForeignLoadNsgifBuffer", "image/gif", vips_gifload_buffer},
    {"heifload_buffer", "VipsForeignLoadHeifBuffer", "image/heic", vips_heifload_buffer},
};
#define N_READERS (sizeof READERS / sizeof READERS[0])

/* ---- the process's set-up, and the reasons of failures ---- */

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static int init_done, init_rc;
static char init_err[256];
static atomic_int started;
static pthread_rwlock_t calls; /* shared by every call; exclusive while a failed one runs again */

/* The decoder warnings of a failed call running again alone. */
static pthread_mutex_t diag_mu = PTHREAD_MUTEX_INITIALIZER;
static int diag_on;
static char diag_text[600];

/* Appends msg's lines to buf (cap bytes), "; " between them, leaving out empty lines, lines
 * already there, and libvips' own follow-ups ("error in tile", "read gave N warnings"). Control
 * characters become spaces. */
static void add_lines(char *buf, size_t cap, const char *msg)
{
    while (msg && *msg) {
        size_t n = strcspn(msg, "\n");
        char line[300];
        snprintf(line, sizeof line, "%.*s", (int)n, msg);
        msg += n + (msg[n] == '\n');
        for (char *p = line; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
        if (!line[0] || strstr(buf, line) || !strncmp(line, "error in tile", 13) || !strncmp(line, "read gave", 9))
            continue;
        size_t used = strlen(buf);
        snprintf(buf + used, cap - used, "%s%s", used ? "; " : "", line);
    }
}

static void on_vips_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data)
{
    (void)domain, (void)level, (void)data;
    pthread_mutex_lock(&diag_mu);
    if (diag_on)
        add_lines(diag_text, sizeof diag_text, msg);
    pthread_mutex_unlock(&diag_mu);
}

static void diag_set(int on)
{
    pthread_mutex_lock(&diag_mu);
    diag_on = on;
    diag_text[0] = 0;
    pthread_mutex_unlock(&diag_mu);
}

/* err holds what failed ("cannot read the image"); adds ": " and libvips' reason. Called alone
 * (the lock held exclusively), so the buffer and the warnings are this call's. */
static void add_reason(char *err, size_t errlen)
{
    char why[700] = "";
    add_lines(why, sizeof why, vips_error_buffer());
    pthread_mutex_lock(&diag_mu);
    add_lines(why, sizeof why, diag_text);
    pthread_mutex_unlock(&diag_mu);
    size_t used = strnlen(err, errlen);
    if (used + 1 < errlen)
        snprintf(err + used, errlen - used, ": %s", why[0] ? why : "libvips gave no reason");
}

static void start(int threads)
{
    if (VIPS_INIT("annotate")) {
        snprintf(init_err, sizeof init_err, "libvips cannot start: %s", vips_error_buffer());
        init_rc = -1;
        return;
    }
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, on_vips_log, NULL);
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_concurrency_set(threads);
    vips_operation_block_set("VipsForeignLoad", TRUE);
    for (size_t i = 0; i < N_READERS; i++)
        vips_operation_block_set(READERS[i].class_name, FALSE);
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* A failed call waiting to run alone must not wait for a gap between the others' calls. */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&calls, &a);
    pthread_rwlockattr_destroy(&a);
    vips_error_clear();
    atomic_store(&started, 1);
}

static int vp_init(int threads, char *err, size_t errlen)
{
    if (threads < 1 || threads > 1024) {
        snprintf(err, errlen, "libvips threads: give a number from 1 to 1024");
        return -1;
    }
    pthread_mutex_lock(&init_mu);
    if (!init_done)
        start(threads);
    init_done = 1;
    int rc = init_rc;
    if (rc)
        snprintf(err, errlen, "%s", init_err);
    pthread_mutex_unlock(&init_mu);
    return rc;
}

static void vp_shutdown(void)
{
    if (atomic_exchange(&started, 0))
        vips_shutdown();
}

/* One call's inputs and outputs. */
struct call {
    const void *bytes;
    size_t len;
    uint64_t max_pixels;
    const struct prep_spec *spec;
    struct prep_source *source;
    struct prep_rect rect;
    struct prep_info *info;
    struct prep_result *out;
};

typedef int (*call_fn)(struct call *c, char *err, size_t errlen);

/* Runs fn under the shared lock; when libvips failed it, runs it again alone for the reason. */
static int run(call_fn fn, struct call *c, char *err, size_t errlen)
{
    if (!atomic_load(&started)) {
        snprintf(err, errlen, "image preparation is not started (prep_init)");
        return -1;
    }
    pthread_rwlock_rdlock(&calls);
    int rc = fn(c, err, errlen);
    pthread_rwlock_unlock(&calls);
    if (rc != FAILED_IN_VIPS)
        return rc;
    pthread_rwlock_wrlock(&calls);
    vips_error_clear();
    diag_set(1);
    rc = fn(c, err, errlen);
    if (rc == FAILED_IN_VIPS) {
        add_reason(err, errlen);
        rc = -1;
    }
    diag_set(0);
    vips_error_clear();
    pthread_rwlock_unlock(&calls);
    return rc;
}

/* ---- images held during a call ---- */

/* The images a call made, each from the one before; top is the newest. */
struct chain {
    VipsImage *img[24];
    int n;
};

static VipsImage *top(const struct chain *ch)
{
    return ch->img[ch->n - 1];
}

/* Takes the reference of im (NULL: the libvips call that should have made it failed). */
static int push(struct chain *ch, VipsImage *im)
{
    if (!im)
        return FAILED_IN_VIPS;
    if (ch->n == (int)(sizeof ch->img / sizeof ch->img[0])) {
        g_object_unref(im);
        vips_error("annotate", "too many steps");
        return FAILED_IN_VIPS;
    }
    ch->img[ch->n++] = im;
    return 0;
}

static void chain_free(struct chain *ch)
{
    while (ch->n > 0)
        g_object_unref(ch->img[--ch->n]);
}

/* ---- reading ---- */

static const struct reader *reader_of(const void *bytes, size_t len)
{
    for (size_t i = 0; len && i < N_READERS; i++)
        if (vips_foreign_is_a_buffer(READERS[i].nick, bytes, len))
            return &READERS[i];
    return NULL;
}

static void read_info(VipsImage *im, const struct reader *r, struct prep_info *info)
{
    info->stored_w = im->Xsize;
    info->stored_h = im->Ysize;
    info->orientation = vips_image_get_orientation(im);
    if (info->orientation < 1 || info->orientation > 8)
        info->orientation = 1;
    prep_orient_size(info->orientation, im->Xsize, im->Ysize, &info->width, &info->height);
    info->bands = im->Bands;
    info->sample_bytes = (int)vips_format_sizeof(im->BandFmt);
    info->has_icc = vips_image_get_typeof(im, VIPS_META_ICC_NAME) != 0;
    int interlaced = 0;
    if (vips_image_get_typeof(im, "interlaced") && vips_image_get_int(im, "interlaced", &interlaced))
        interlaced = 0;
    const char *m = r->mime;
    info->streams = !interlaced && (!strcmp(m, "image/jpeg") || !strcmp(m, "image/png") || !strcmp(m, "image/tiff"));
    const char *comp = NULL;
    if (!strcmp(m, "image/heic") && vips_image_get_typeof(im, "heif-compression") &&
        !vips_image_get_string(im, "heif-compression", &comp) && comp && !strcmp(comp, "av1"))
        m = "image/avif";
    info->mime = mime_canonical(m);
}

/* Opens the image's header (no pixels yet), decoded later a few lines at a time, at 1/shrink
 * of its size (a JPEG's shrink-on-load; 1 for any other format). Checks the format and the
 * pixel limit. */
static int open_image(const struct call *c, int shrink, VipsImage **out, struct prep_info *info, char *err,
                      size_t errlen)
{
    const struct reader *r = reader_of(c->bytes, c->len);
    if (!r) {
        snprintf(err, errlen, "not an image annotate reads (JPEG, PNG, WebP, TIFF, GIF or HEIC)");
        return -1;
    }
    /* the loaders wrap the buffer, they do not write to it */
    VipsImage *im = NULL;
    if (shrink > 1)
        r->load((void *)c->bytes, c->len, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR,
                "shrink", shrink, NULL);
    else
        r->load((void *)c->bytes, c->len, &im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    if (!im) {
        snprintf(err, errlen, "cannot read the image");
        return FAILED_IN_VIPS;
    }
    read_info(im, r, info);
    uint64_t limit = c->max_pixels ? c->max_pixels : PREP_MAX_PIXELS_DEFAULT;
    if (shrink == 1 && (uint64_t)im->Xsize * (uint64_t)im->Ysize > limit) {
        snprintf(err, errlen, "image too large: %d×%d pixels (--max-pixels %llu)", im->Xsize, im->Ysize,
                 (unsigned long long)limit);
        g_object_unref(im);
        return -1;
    }
    *out = im;
    return 0;
}

static int probe_fn(struct call *c, char *err, size_t errlen)
{
    VipsImage *im = NULL;
    int rc = open_image(c, 1, &im, c->info, err, errlen);
    if (im)
        g_object_unref(im);
    return rc;
}

static int vp_probe(const void *bytes, size_t len, uint64_t max_pixels, struct prep_info *info, char *err,
                    size_t errlen)
{
    struct call c = {.bytes = bytes, .len = len, .max_pixels = max_pixels, .info = info};
    return run(probe_fn, &c, err, errlen);
}

/* ---- the steps from decoded pixels to the output's bytes ---- */

/* What render makes of an image: the stored pixels `window` of `in` (which holds the whole
 * stored image at kx, ky of its size), turned upright or not, sized by `layout` (over that base),
 * and saved as `format`. */
struct plan {
    double kx, ky;
    struct prep_rect window;
    int orientation; /* in's EXIF orientation */
    int turn;        /* 1: the base is the window turned upright */
    struct prep_layout layout;
    const struct prep_spec *spec;
    enum prep_format format;
    int has_icc;
};

/* The base's size: the window, turned or not. */
static void base_size(const struct plan *p, int *bw, int *bh)
{
    *bw = p->window.w, *bh = p->window.h;
    if (p->turn)
        prep_orient_size(p->orientation, p->window.w, p->window.h, bw, bh);
}

/* Cuts the layout's region out of in (the window, or the middle of it for "cover"), and moves the
 * layout's region to the pixels really cut (in may be at a reduced scale). */
static int cut(struct chain *ch, struct plan *p)
{
    struct prep_layout *l = &p->layout;
    double base[4] = {l->rx, l->ry, l->rw, l->rh}, st[4];
    if (p->turn)
        prep_orient_area(p->orientation, p->window.w, p->window.h, 1, base, st);
    else
        memcpy(st, base, sizeof st);
    VipsImage *in = top(ch);
    int x0 = (int)lround((p->window.x + st[0]) * p->kx), x1 = (int)lround((p->window.x + st[0] + st[2]) * p->kx);
    int y0 = (int)lround((p->window.y + st[1]) * p->ky), y1 = (int)lround((p->window.y + st[1] + st[3]) * p->ky);
    x0 = x0 < 0 ? 0 : x0 >= in->Xsize ? in->Xsize - 1 : x0;
    y0 = y0 < 0 ? 0 : y0 >= in->Ysize ? in->Ysize - 1 : y0;
    x1 = x1 <= x0 ? x0 + 1 : x1 > in->Xsize ? in->Xsize : x1;
    y1 = y1 <= y0 ? y0 + 1 : y1 > in->Ysize ? in->Ysize : y1;
    double used[4] = {x0 / p->kx - p->window.x, y0 / p->ky - p->window.y, (x1 - x0) / p->kx, (y1 - y0) / p->ky};
    if (p->turn)
        prep_orient_area(p->orientation, p->window.w, p->window.h, 0, used, base);
    else
        memcpy(base, used, sizeof base);
    l->rx = base[0], l->ry = base[1], l->rw = base[2], l->rh = base[3];
    if (x0 == 0 && y0 == 0 && x1 == in->Xsize && y1 == in->Ysize)
        return 0;
    VipsImage *o = NULL;
    vips_extract_area(in, &o, x0, y0, x1 - x0, y1 - y0, NULL);
    return push(ch, o);
}

/* To 8-bit sRGB, or 8-bit grey, keeping alpha: what every resampler and saver here takes. A
 * CMYK image goes through its ICC profile (libvips' own CMYK profile when it has none). */
static int to_srgb(struct chain *ch, int *converted)
{
    VipsImage *in = top(ch), *o = NULL;
    *converted = 0;
    if (in->Type == VIPS_INTERPRETATION_CMYK) {
        *converted = 1;
        vips_icc_transform(in, &o, "srgb", "input_profile", "cmyk", "embedded", TRUE, NULL);
        return push(ch, o);
    }
    VipsInterpretation want = in->Bands < 3 ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB;
    if (in->Type == want && in->BandFmt == VIPS_FORMAT_UCHAR)
        return 0;
    vips_colourspace(in, &o, want, NULL);
    return push(ch, o);
}

/* Resamples to exactly w x h; alpha premultiplied while it does. */
static int resize_to(struct chain *ch, int w, int h)
{
    VipsImage *in = top(ch), *o = NULL;
    if (in->Xsize == w && in->Ysize == h)
        return 0;
    int alpha = vips_image_hasalpha(in), rc;
    VipsBandFormat format = in->BandFmt;
    if (alpha && (vips_premultiply(top(ch), &o, NULL), rc = push(ch, o)))
        return rc;
    /* Catmull-Rom cubic, as Pillow's BICUBIC: Lanczos 3 costs a tenth more CPU per photo */
    vips_resize(top(ch), &o, (double)w / in->Xsize, "vscale", (double)h / in->Ysize, "kernel", VIPS_KERNEL_CUBIC,
                NULL);
    if ((rc = push(ch, o)))
        return rc;
    if (alpha && ((vips_unpremultiply(top(ch), &o, NULL), rc = push(ch, o)) ||
                  (vips_cast(top(ch), &o, format, NULL), rc = push(ch, o))))
        return rc;
    if (top(ch)->Xsize == w && top(ch)->Ysize == h)
        return 0;
    /* vips_resize rounds each side; a pixel row more or less is edge pixels repeated or dropped */
    vips_embed(top(ch), &o, 0, 0, w, h, "extend", VIPS_EXTEND_COPY, NULL);
    return push(ch, o);
}

/* The output's colours: sRGB through the ICC profile when the profile is not sent; alpha laid on
 * white for JPEG. */
static int finish_colour(struct chain *ch, const struct plan *p, int converted)
{
    VipsImage *o = NULL;
    int rc;
    if (p->spec->strip && p->has_icc && !converted &&
        (vips_icc_transform(top(ch), &o, "srgb", "embedded", TRUE, "intent", VIPS_INTENT_RELATIVE, NULL),
         rc = push(ch, o)))
        return rc;
    if (p->format != PREP_FORMAT_JPEG || !vips_image_hasalpha(top(ch)))
        return 0;
    VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
    vips_flatten(top(ch), &o, "background", white, NULL);
    vips_area_unref(VIPS_AREA(white));
    if ((rc = push(ch, o)) || top(ch)->BandFmt == VIPS_FORMAT_UCHAR)
        return rc;
    vips_cast(top(ch), &o, VIPS_FORMAT_UCHAR, NULL);
    return push(ch, o);
}

/* Upright (on the small image: it is copied into memory, the rotation reads it in any order),
 * then the padding of "contain". */
static int turn_and_pad(struct chain *ch, const struct plan *p)
{
    VipsImage *o = NULL;
    int rc;
    if (p->turn && p->orientation != 1 &&
        ((rc = push(ch, vips_image_copy_memory(top(ch)))) || (vips_autorot(top(ch), &o, NULL), rc = push(ch, o))))
        return rc;
    const struct prep_layout *l = &p->layout;
    if (top(ch)->Xsize == l->out_w && top(ch)->Ysize == l->out_h)
        return 0;
    vips_embed(top(ch), &o, l->dx, l->dy, l->out_w, l->out_h, "extend", VIPS_EXTEND_BLACK, NULL);
    return push(ch, o);
}

/* "strip": no metadata field is left on the image (EXIF, XMP, IPTC, ICC, comments, ...), and the
 * savers are asked to strip too. The savers alone are not trusted with it: Debian's libvips
 * 8.14.1 webpsave ignores its "strip" (fixed upstream in 8.14.2) and would send the GPS position. */
static int drop_metadata(struct chain *ch)
{
    VipsImage *o = NULL;
    int rc;
    if ((vips_copy(top(ch), &o, NULL), rc = push(ch, o)))
        return rc;
    gchar **names = vips_image_get_fields(top(ch));
    for (gchar **n = names; n && *n; n++)
        vips_image_remove(top(ch), *n);
    g_strfreev(names);
    return 0;
}

/* Debian's libvips 8.14.1 webpsave writes an EXIF block even then (one it makes up from the
 * image's size): libwebpmux takes the EXIF, XMP and ICC chunks out of the file it made. */
static int webp_strip(void **buf, size_t *len)
{
    WebPData in = {*buf, *len}, out = {NULL, 0};
    WebPMux *mux = WebPMuxCreate(&in, 0);
    WebPMuxError e = mux ? WEBP_MUX_OK : WEBP_MUX_BAD_DATA;
    static const char *const chunks[] = {"EXIF", "XMP ", "ICCP"};
    for (int i = 0; i < 3 && e == WEBP_MUX_OK; i++)
        if ((e = WebPMuxDeleteChunk(mux, chunks[i])) == WEBP_MUX_NOT_FOUND)
            e = WEBP_MUX_OK;
    if (e == WEBP_MUX_OK)
        e = WebPMuxAssemble(mux, &out);
    WebPMuxDelete(mux);
    void *copy = e == WEBP_MUX_OK ? g_try_malloc(out.size ? out.size : 1) : NULL;
    if (!copy) {
        WebPDataClear(&out);
        vips_error("webpsave", "cannot take the metadata out (libwebpmux error %d)", (int)e);
        return -1;
    }
    memcpy(copy, out.bytes, out.size);
    g_free(*buf);
    *buf = copy;
    *len = out.size;
    WebPDataClear(&out);
    return 0;
}

static int save(VipsImage *im, const struct plan *p, struct prep_result *out, char *err, size_t errlen)
{
    void *buf = NULL;
    size_t len = 0;
    int strip = p->spec->strip, q = p->spec->quality ? p->spec->quality : PREP_QUALITY_DEFAULT, rc;
    const char *mime = p->format == PREP_FORMAT_PNG ? "image/png" : p->format == PREP_FORMAT_WEBP ? "image/webp"
                                                                                                 : "image/jpeg";
    if (p->format == PREP_FORMAT_PNG)
        rc = vips_pngsave_buffer(im, &buf, &len, "strip", strip, NULL);
    else if (p->format == PREP_FORMAT_WEBP)
        rc = vips_webpsave_buffer(im, &buf, &len, "strip", strip, "Q", q, NULL) || (strip && webp_strip(&buf, &len));
    else /* 4:2:0 chroma at every quality, as Pillow does (libvips' own default keeps full chroma from 90 on) */
        rc = vips_jpegsave_buffer(im, &buf, &len, "strip", strip, "Q", q, "subsample_mode",
                                  VIPS_FOREIGN_SUBSAMPLE_ON, NULL);
    if (rc) {
        g_free(buf);
        /* libvips computes lazily: the decoder runs here too */
        snprintf(err, errlen, "cannot prepare the image");
        return FAILED_IN_VIPS;
    }
    *out = (struct prep_result){.data = buf, .len = len, .mime = mime_canonical(mime), .width = im->Xsize,
                                .height = im->Ysize};
    return 0;
}

/* Every step from the decoded image (ch's top) to out. */
static int render(struct chain *ch, struct plan *p, struct prep_result *out, char *err, size_t errlen)
{
    int converted = 0, rc;
    const struct prep_layout *l = &p->layout;
    int cw = l->content_w, chh = l->content_h; /* the content's size before it is turned upright */
    if (p->turn)
        prep_orient_size(p->orientation, l->content_w, l->content_h, &cw, &chh);
    if ((rc = cut(ch, p)) || (rc = to_srgb(ch, &converted)) || (rc = resize_to(ch, cw, chh)) ||
        (rc = finish_colour(ch, p, converted)) || (rc = turn_and_pad(ch, p)) ||
        (p->spec->strip && (rc = drop_metadata(ch)))) {
        snprintf(err, errlen, "cannot prepare the image");
        return rc;
    }
    return save(top(ch), p, out, err, errlen);
}

/* ---- whole images ---- */

static enum prep_format format_for(const struct prep_spec *s, const char *mime)
{
    if (s->format != PREP_FORMAT_SAME)
        return s->format;
    if (!strcmp(mime, "image/png") || !strcmp(mime, "image/gif") || !strcmp(mime, "image/tiff"))
        return PREP_FORMAT_PNG;
    return !strcmp(mime, "image/webp") ? PREP_FORMAT_WEBP : PREP_FORMAT_JPEG;
}

static int same_format(enum prep_format f, const char *mime)
{
    return (f == PREP_FORMAT_JPEG && !strcmp(mime, "image/jpeg")) ||
           (f == PREP_FORMAT_PNG && !strcmp(mime, "image/png")) ||
           (f == PREP_FORMAT_WEBP && !strcmp(mime, "image/webp"));
}

/* libjpeg's DCT scaling: the smallest of 1/2, 1/4, 1/8 that leaves the region at least the
 * content's pixels (both in stored pixels). */
static int jpeg_shrink(const double region_st[4], int cw, int ch)
{
    for (int s = 8; s > 1; s /= 2)
        if (region_st[2] / s >= cw && region_st[3] / s >= ch)
            return s;
    return 1;
}

/* The JPEG shrink-on-load for a whole image's plan: its region and content in stored pixels. */
static int whole_shrink(const struct plan *p)
{
    const struct prep_layout *l = &p->layout;
    double region[4] = {l->rx, l->ry, l->rw, l->rh}, st[4];
    int cw = l->content_w, chh = l->content_h;
    if (p->turn) {
        prep_orient_area(p->orientation, p->window.w, p->window.h, 1, region, st);
        prep_orient_size(p->orientation, cw, chh, &cw, &chh);
    } else {
        memcpy(st, region, sizeof st);
    }
    return jpeg_shrink(st, cw, chh);
}

static void plan_whole(struct plan *p, const struct prep_info *info, const struct prep_spec *spec)
{
    *p = (struct plan){.kx = 1, .ky = 1, .window = {0, 0, info->stored_w, info->stored_h},
                       .orientation = info->orientation, .turn = spec->orient, .spec = spec,
                       .format = format_for(spec, info->mime), .has_icc = info->has_icc};
    int bw, bh;
    base_size(p, &bw, &bh);
    prep_layout_of(spec, bw, bh, &p->layout);
}

static int unchanged(const struct plan *p, const struct prep_info *info)
{
    const struct prep_layout *l = &p->layout;
    return !p->spec->strip && !(p->turn && p->orientation != 1) && same_format(p->format, info->mime) &&
           l->rw == l->content_w && l->rh == l->content_h && l->out_w == l->content_w && l->out_h == l->content_h;
}

static int image_fn(struct call *c, char *err, size_t errlen)
{
    struct chain ch = {.n = 0};
    struct prep_info info;
    struct plan p;
    int rc = open_image(c, 1, &ch.img[0], &info, err, errlen);
    if (rc)
        return rc;
    ch.n = 1;
    plan_whole(&p, &info, c->spec);
    if (unchanged(&p, &info)) {
        chain_free(&ch);
        *c->out = (struct prep_result){.unchanged = 1, .len = c->len, .mime = info.mime, .width = info.stored_w,
                                       .height = info.stored_h};
        prep_frame_stored(&c->out->frame, info.stored_w, info.stored_h, p.turn ? 1 : info.orientation);
        return 0;
    }
    int shrink = !strcmp(info.mime, "image/jpeg") ? whole_shrink(&p) : 1;
    if (shrink > 1) {
        struct prep_info scaled;
        chain_free(&ch);
        if ((rc = open_image(c, shrink, &ch.img[0], &scaled, err, errlen)))
            return rc;
        ch.n = 1;
        p.kx = (double)scaled.stored_w / p.window.w;
        p.ky = (double)scaled.stored_h / p.window.h;
    }
    rc = render(&ch, &p, c->out, err, errlen);
    chain_free(&ch);
    if (rc == 0) {
        int bw, bh;
        base_size(&p, &bw, &bh);
        prep_layout_frame(&p.layout, bw, bh, p.turn ? 1 : info.orientation, &c->out->frame);
    }
    return rc;
}

static int vp_image(const void *bytes, size_t len, const struct prep_spec *spec, uint64_t max_pixels,
                    struct prep_result *out, char *err, size_t errlen)
{
    struct call c = {.bytes = bytes, .len = len, .max_pixels = max_pixels, .spec = spec, .out = out};
    *out = (struct prep_result){0};
    return run(image_fn, &c, err, errlen);
}

static void vp_result_free(struct prep_result *r)
{
    if (r) {
        g_free(r->data);
        *r = (struct prep_result){0};
    }
}

/* ---- sources and crops ---- */

struct prep_source {
    VipsImage *image; /* the stored pixels, decoded, in memory */
    struct prep_info info;
};

static int source_fn(struct call *c, char *err, size_t errlen)
{
    VipsImage *im = NULL;
    int rc = open_image(c, 1, &im, &c->source->info, err, errlen);
    if (rc)
        return rc;
    c->source->image = vips_image_copy_memory(im);
    g_object_unref(im);
    if (!c->source->image) {
        snprintf(err, errlen, "cannot prepare the image");
        return FAILED_IN_VIPS;
    }
    return 0;
}

static int vp_source_open(const void *bytes, size_t len, uint64_t max_pixels, struct prep_source **out,
                          char *err, size_t errlen)
{
    struct prep_source *s = g_try_new0(struct prep_source, 1);
    *out = NULL;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct call c = {.bytes = bytes, .len = len, .max_pixels = max_pixels, .source = s};
    if (run(source_fn, &c, err, errlen)) {
        g_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

static const struct prep_info *vp_source_info(const struct prep_source *s)
{
    return &s->info;
}

static int crop_fn(struct call *c, char *err, size_t errlen)
{
    const struct prep_info *info = &c->source->info;
    struct plan p = {.kx = 1, .ky = 1, .orientation = info->orientation, .turn = 1, .spec = c->spec,
                     .format = format_for(c->spec, info->mime), .has_icc = info->has_icc};
    p.window = prep_unorient_rect(info->orientation, info->stored_w, info->stored_h, c->rect);
    prep_layout_of(c->spec, c->rect.w, c->rect.h, &p.layout);
    struct chain ch = {.n = 0};
    push(&ch, g_object_ref(c->source->image));
    int rc = render(&ch, &p, c->out, err, errlen);
    chain_free(&ch);
    if (rc == 0)
        prep_layout_frame(&p.layout, c->rect.w, c->rect.h, 1, &c->out->frame);
    return rc;
}

static int vp_crop(struct prep_source *s, struct prep_rect r, const struct prep_spec *spec,
                   struct prep_result *out, char *err, size_t errlen)
{
    struct prep_spec defaults;
    const struct prep_info *info = &s->info;
    *out = (struct prep_result){0};
    if (!spec)
        prep_spec_default(&defaults), spec = &defaults;
    if (r.w < 1 || r.h < 1 || r.x < 0 || r.y < 0 || r.x > info->width - r.w || r.y > info->height - r.h) {
        snprintf(err, errlen, "the rectangle %d,%d %d×%d is not inside the %d×%d image", r.x, r.y, r.w, r.h,
                 info->width, info->height);
        return -1;
    }
    struct call c = {.spec = spec, .source = s, .rect = r, .out = out};
    return run(crop_fn, &c, err, errlen);
}

static void vp_source_free(struct prep_source *s)
{
    if (s) {
        if (s->image)
            g_object_unref(s->image);
        g_free(s);
    }
}

/* ---- memory ----
 *
 * Measured with make bench-prepare (bench-prepare measure: the growth of the peak RSS of one
 * preparation, after a warm-up), 4000 x 3000 photos: a baseline JPEG to 1024 px 7 MB, to 224 px
 * 0.5 MB, re-encoded at full size 12 MB; a progressive JPEG 44 MB (libjpeg keeps every DCT
 * coefficient of the image: 2 bytes per sample at full size, whatever the scale it decodes at);
 * PNG and TIFF 13-15 MB; WebP 97 MB and HEIC 87-100 MB (decoded whole, then copied by libvips:
 * 8 bytes a pixel). The estimates below hold those and round up. */

#define LINES_IN 1024      /* decoded lines in flight: decoder, line cache, the resampler's window */
#define LINES_OUT 512      /* output lines in flight: the encoder's strips */
#define FIXED (4u << 20)   /* libvips' per-call objects, regions and thread buffers */

static uint64_t pixel_bytes(const struct prep_info *info)
{
    return (uint64_t)(info->bands > 3 ? info->bands : 3) * (uint64_t)(info->sample_bytes > 0 ? info->sample_bytes : 1);
}

/* The decoder's part, at 1/shrink of the stored size. */
static uint64_t decode_bytes(const struct prep_info *info, int shrink)
{
    uint64_t px = pixel_bytes(info), w = (uint64_t)info->stored_w, h = (uint64_t)info->stored_h;
    uint64_t dw = (w + shrink - 1) / shrink, dh = (h + shrink - 1) / shrink;
    if (info->streams)
        return dw * px * LINES_IN;
    if (!strcmp(info->mime, "image/jpeg")) /* progressive: coefficients at full size, 2 bytes a sample */
        return w * h * 2 * (uint64_t)(info->bands > 3 ? info->bands : 3) + dw * dh * px;
    return w * h * px * 3; /* the library's whole image and libvips' copy, with alpha */
}

/* The output's part: its lines in flight, the upright copy (turned images), and the encoded
 * bytes (at most the pixels' size, in a buffer grown by halves). */
static uint64_t output_bytes(int ow, int oh, uint64_t px, int turned)
{
    uint64_t pixels = (uint64_t)ow * (uint64_t)oh * px;
    return (uint64_t)ow * px * LINES_OUT + (turned ? pixels : 0) + pixels * 3 / 2;
}

static uint64_t with_margin(uint64_t n)
{
    return (n + FIXED) / 4 * 5;
}

static uint64_t vp_peak_bytes(const struct prep_info *info, const struct prep_spec *spec)
{
    struct plan p;
    plan_whole(&p, info, spec);
    int shrink = !strcmp(info->mime, "image/jpeg") ? whole_shrink(&p) : 1;
    return with_margin(decode_bytes(info, shrink) + output_bytes(p.layout.out_w, p.layout.out_h, pixel_bytes(info),
                                                                 p.turn && info->orientation != 1));
}

static uint64_t vp_source_bytes(const struct prep_info *info)
{
    uint64_t held = (uint64_t)info->stored_w * (uint64_t)info->stored_h * (uint64_t)info->bands *
                    (uint64_t)(info->sample_bytes > 0 ? info->sample_bytes : 1);
    return with_margin(held + decode_bytes(info, 1));
}

static uint64_t vp_crop_peak_bytes(const struct prep_info *info, struct prep_rect r, const struct prep_spec *spec)
{
    struct prep_spec defaults;
    struct prep_layout l;
    if (!spec)
        prep_spec_default(&defaults), spec = &defaults;
    prep_layout_of(spec, r.w, r.h, &l);
    uint64_t px = pixel_bytes(info);
    return with_margin((uint64_t)r.w * px * LINES_IN + output_bytes(l.out_w, l.out_h, px, info->orientation != 1));
}

/* ---- the table annotate looks up ---- */

PREP_PLUGIN_EXPORT const struct prep_plugin annotate_prep_plugin = {
    .abi = PREP_PLUGIN_ABI,
    .size = sizeof(struct prep_plugin),
    .layout = PREP_PLUGIN_LAYOUT,
    .version = ANNOTATE_VERSION,
    .init = vp_init,
    .shutdown = vp_shutdown,
    .probe = vp_probe,
    .image = vp_image,
    .result_free = vp_result_free,
    .source_open = vp_source_open,
    .source_info = vp_source_info,
    .crop = vp_crop,
    .source_free = vp_source_free,
    .peak_bytes = vp_peak_bytes,
    .source_bytes = vp_source_bytes,
    .crop_peak_bytes = vp_crop_peak_bytes,
};
