/* Tests for src/prepare/: the "image" spec, crop boxes, and preparation with libvips, on images
 * made by tests/helpers/images.py with Pillow (its docstring defines each image by a formula this
 * file computes too). Pixels of the outputs are read back with libvips; what they must be comes
 * from those formulas, not from libvips. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <CUnit/CUnit.h>
#include <vips/vips.h>

#include "common/mime.h"
#include "prepare/prepare.h"
#include "proc.h"
#include "pyserver.h"
#include "util.h"

static char dir[512]; /* the test images */

/* ---- helpers ---- */

static cJSON *js(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    return j;
}

/* Parses text as an "image" spec: 0 or -1, with the message in err. */
static int spec_of(const char *text, struct prep_spec *s, char *err, size_t errlen)
{
    cJSON *j = js(text);
    int rc = prep_spec_parse(j, s, err, errlen);
    cJSON_Delete(j);
    return rc;
}

static struct prep_spec spec(const char *text)
{
    struct prep_spec s;
    char err[300] = "";
    if (spec_of(text, &s, err, sizeof err))
        fprintf(stderr, "spec %s: %s\n", text, err);
    CU_ASSERT_FATAL(err[0] == 0);
    return s;
}

/* A test image's bytes (malloc'd). */
static unsigned char *image(const char *name, size_t *len)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unsigned char *b = (unsigned char *)slurp(path, len);
    if (!b)
        fprintf(stderr, "cannot read %s\n", path);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    return b;
}

/* Decoded pixels of an output, 8-bit. */
struct pix {
    int w, h, bands;
    unsigned char *p;
};

static int decode(const void *bytes, size_t len, struct pix *px)
{
    VipsImage *im = vips_image_new_from_buffer(bytes, len, "", NULL), *u = NULL;
    if (!im)
        return -1;
    int rc = vips_cast(im, &u, VIPS_FORMAT_UCHAR, NULL);
    size_t n = 0;
    if (rc == 0) {
        px->w = u->Xsize, px->h = u->Ysize, px->bands = u->Bands;
        px->p = vips_image_write_to_memory(u, &n);
        rc = px->p ? 0 : -1;
        g_object_unref(u);
    }
    g_object_unref(im);
    return rc;
}

static const unsigned char *at(const struct pix *px, int x, int y)
{
    return px->p + ((size_t)y * px->w + x) * px->bands;
}

/* Pixel (x, y) is within tol of (r, g, b). */
static int near(const struct pix *px, int x, int y, int r, int g, int b, int tol)
{
    const unsigned char *c = at(px, x, y);
    int ok = abs(c[0] - r) <= tol && abs(c[1] - g) <= tol && abs(c[2] - b) <= tol;
    if (!ok)
        fprintf(stderr, "pixel %d,%d is %d,%d,%d, not %d,%d,%d\n", x, y, c[0], c[1], c[2], r, g, b);
    return ok;
}

/* The quadrants of quad(): red, green / blue, white, sampled at the middle of each. */
static int upright_quad(const struct pix *px, int tol)
{
    int w = px->w, h = px->h;
    return near(px, w / 4, h / 4, 255, 0, 0, tol) && near(px, 3 * w / 4, h / 4, 0, 255, 0, tol) &&
           near(px, w / 4, 3 * h / 4, 0, 0, 255, tol) && near(px, 3 * w / 4, 3 * h / 4, 255, 255, 255, tol);
}

/* coord()'s colour at upright (x, y). */
static void coord_rgb(int x, int y, unsigned char c[3])
{
    c[0] = (unsigned char)(x % 256), c[1] = (unsigned char)(y % 256), c[2] = (unsigned char)(16 * (x / 256) + y / 256);
}

/* Every pixel of px is coord()'s pixel (x0 + i, y0 + j), exactly. */
static int coord_region(const struct pix *px, int x0, int y0)
{
    for (int j = 0; j < px->h; j++)
        for (int i = 0; i < px->w; i++) {
            unsigned char c[3];
            coord_rgb(x0 + i, y0 + j, c);
            if (memcmp(at(px, i, j), c, 3)) {
                fprintf(stderr, "crop pixel %d,%d is not coord %d,%d\n", i, j, x0 + i, y0 + j);
                return 0;
            }
        }
    return 1;
}

/* Prepares a test image; the result's pixels into *px when px is not NULL. */
static int prepare(const char *name, const char *spec_text, struct prep_result *r, struct pix *px, char *err,
                   size_t errlen)
{
    size_t len;
    unsigned char *b = image(name, &len);
    struct prep_spec s = spec(spec_text);
    int rc = prep_image(b, len, &s, 0, r, err, errlen);
    if (rc == 0 && px) {
        CU_ASSERT_FATAL(decode(r->unchanged ? b : r->data, r->unchanged ? len : r->len, px) == 0);
        CU_ASSERT(px->w == r->width && px->h == r->height);
    }
    free(b);
    return rc;
}

/* Whether the output carries a metadata field (exif-data, icc-profile-data, ...). */
static int has_field(const struct prep_result *r, const char *field)
{
    VipsImage *im = vips_image_new_from_buffer(r->data, r->len, "", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(im);
    int has = vips_image_get_typeof(im, field) != 0;
    g_object_unref(im);
    return has;
}

static const char *images_script(void)
{
    static char buf[1100];
    if (access("tests/helpers/images.py", R_OK) == 0)
        return "tests/helpers/images.py";
    snprintf(buf, sizeof buf, "%s/../tests/helpers/images.py", fixtures_dir());
    return buf;
}

static int suite_init(void)
{
    char err[256], out[4000];
    if (prep_init(1, err, sizeof err)) {
        fprintf(stderr, "prep_init: %s\n", err);
        return -1;
    }
    if (make_tmpdir(dir, sizeof dir, "prepare"))
        return -1;
    const char *argv[] = {pyserver_python(), images_script(), "tests", dir, NULL};
    int rc = run_cmd(argv, tmo(60), out, sizeof out);
    if (rc != 0)
        show("images.py tests (needs python3-pil and libheif-examples)", rc, out);
    return rc == 0 ? 0 : -1;
}

/* libvips' threads and caches go with the suite (no suite after it prepares images: libvips does
 * not start twice), so that leak checkers see them gone. */
static int suite_cleanup(void)
{
    prep_shutdown();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return dir[0] && system(cmd) != 0 ? -1 : 0;
}

/* ---- the spec ---- */

static void test_spec_valid(void)
{
    struct prep_spec s = spec("{}");
    CU_ASSERT(s.resize == PREP_RESIZE_NONE && s.format == PREP_FORMAT_JPEG && s.quality == PREP_QUALITY_DEFAULT &&
              s.orient == 1 && s.strip == 1);
    s = spec("{\"max_side\": 1024, \"format\": \"webp\", \"quality\": 90}");
    CU_ASSERT(s.resize == PREP_RESIZE_MAX_SIDE && s.width == 1024 && s.height == 1024 && s.format == PREP_FORMAT_WEBP &&
              s.quality == 90);
    s = spec("{\"size\": [224, 160], \"fit\": \"cover\", \"format\": \"png\", \"strip\": false}");
    CU_ASSERT(s.resize == PREP_RESIZE_COVER && s.width == 224 && s.height == 160 && s.format == PREP_FORMAT_PNG &&
              s.quality == 0 && s.strip == 0 && s.orient == 1);
    CU_ASSERT(spec("{\"size\": [1, 16383], \"fit\": \"fill\"}").resize == PREP_RESIZE_FILL);
    CU_ASSERT(spec("{\"size\": [8, 8], \"fit\": \"contain\"}").resize == PREP_RESIZE_CONTAIN);
    s = spec("{\"orient\": false, \"strip\": false, \"format\": \"jpeg\"}");
    CU_ASSERT(s.orient == 0 && s.strip == 0 && s.format == PREP_FORMAT_JPEG);
    CU_ASSERT(spec("{\"format\": \"same\", \"max_side\": 16383}").format == PREP_FORMAT_SAME);
    CU_ASSERT(spec("{\"quality\": 1}").quality == 1);
}

static void test_spec_errors(void)
{
    static const struct {
        const char *text, *err;
    } cases[] = {
        {"[]", "\"image\": must be an object, e.g. {\"max_side\": 1024}"},
        {"{\"max_sides\": 5}", "\"image\": unknown key \"max_sides\" (known: max_side, size, fit, format, quality, "
                               "orient, strip)"},
        {"{\"max_side\": 0}", "\"image\": \"max_side\" must be a whole number from 1 to 16383"},
        {"{\"max_side\": 16384}", "\"image\": \"max_side\" must be a whole number from 1 to 16383"},
        {"{\"max_side\": 10.5}", "\"image\": \"max_side\" must be a whole number from 1 to 16383"},
        {"{\"max_side\": \"1024\"}", "\"image\": \"max_side\" must be a whole number from 1 to 16383"},
        {"{\"size\": [224], \"fit\": \"fill\"}", "\"image\": \"size\" must be [WIDTH, HEIGHT], whole numbers from 1 "
                                                 "to 16383"},
        {"{\"size\": [224, -1], \"fit\": \"fill\"}", "\"image\": \"size\" must be [WIDTH, HEIGHT], whole numbers "
                                                     "from 1 to 16383"},
        {"{\"size\": [224, 224]}", "\"image\": \"size\" needs \"fit\": \"fill\", \"cover\" or \"contain\""},
        {"{\"size\": [224, 224], \"fit\": \"stretch\"}", "\"image\": \"fit\" must be \"fill\", \"cover\" or "
                                                        "\"contain\""},
        {"{\"fit\": \"cover\"}", "\"image\": \"fit\" goes with \"size\": [WIDTH, HEIGHT]"},
        {"{\"max_side\": 9, \"size\": [9, 9], \"fit\": \"fill\"}", "\"image\": \"max_side\" and \"size\" are two ways "
                                                                   "to size the image: give one"},
        {"{\"format\": \"gif\"}", "\"image\": \"format\" must be \"jpeg\", \"png\", \"webp\" or \"same\""},
        {"{\"format\": \"png\", \"quality\": 90}", "\"image\": \"quality\" is for jpeg and webp; png is lossless"},
        {"{\"quality\": 101}", "\"image\": \"quality\" must be a whole number from 1 to 100"},
        {"{\"quality\": true}", "\"image\": \"quality\" must be a whole number from 1 to 100"},
        {"{\"orient\": 1}", "\"image\": \"orient\" must be true or false"},
        {"{\"strip\": \"yes\"}", "\"image\": \"strip\" must be true or false"},
        {"{\"quality\": 80, \"quality\": 90}", "\"image\": key \"quality\" appears twice"},
        {"{\"orient\": false, \"strip\": false, \"format\": \"same\"}",
         "\"image\": changes nothing (no max_side or size, orient and strip false, format same): leave \"image\" out "
         "to send the file as it is"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct prep_spec s;
        char err[400] = "";
        CU_ASSERT_EQUAL(spec_of(cases[i].text, &s, err, sizeof err), -1);
        if (strcmp(err, cases[i].err))
            fprintf(stderr, "%s: got \"%s\"\n", cases[i].text, err);
        CU_ASSERT_STRING_EQUAL(err, cases[i].err);
    }
}

static void test_spec_equal(void)
{
    struct prep_spec a = spec("{\"max_side\": 1024}");
    struct prep_spec b = spec("{\"strip\": true, \"quality\": 85, \"format\": \"jpeg\", \"max_side\": 1024, "
                              "\"orient\": true}");
    CU_ASSERT(prep_spec_equal(&a, &b));
    char ta[PREP_SPEC_TEXT_MAX], tb[PREP_SPEC_TEXT_MAX];
    prep_spec_text(&a, ta, sizeof ta);
    prep_spec_text(&b, tb, sizeof tb);
    CU_ASSERT_STRING_EQUAL(ta, "{\"max_side\":1024,\"format\":\"jpeg\",\"quality\":85,\"orient\":true,\"strip\":true}");
    CU_ASSERT_STRING_EQUAL(ta, tb);
    struct prep_spec c = spec("{\"max_side\": 1024, \"quality\": 86}");
    CU_ASSERT(!prep_spec_equal(&a, &c));
    static const char *const texts[] = {
        "{}", "{\"size\": [224, 160], \"fit\": \"contain\", \"format\": \"png\"}",
        "{\"size\": [3, 4], \"fit\": \"fill\", \"orient\": false}", "{\"format\": \"same\", \"strip\": false}",
        "{\"max_side\": 7, \"format\": \"webp\", \"quality\": 1, \"strip\": false, \"orient\": false}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct prep_spec s = spec(texts[i]), back;
        char t[PREP_SPEC_TEXT_MAX], err[300];
        size_t n = prep_spec_text(&s, t, sizeof t);
        CU_ASSERT(n == strlen(t) && n < PREP_SPEC_TEXT_MAX);
        CU_ASSERT_EQUAL(spec_of(t, &back, err, sizeof err), 0);
        CU_ASSERT(prep_spec_equal(&s, &back));
        CU_ASSERT(!prep_spec_equal(&s, &a) || i == 99);
    }
}

/* ---- boxes ---- */

static void test_box_parse(void)
{
    struct prep_box_spec b;
    char err[200] = "";
    cJSON *j = js("{\"each\": \"detect\", \"crop\": \".boxes[]\"}");
    CU_ASSERT(prep_box_parse(j, &b, err, sizeof err) == 0 && b.format == PREP_BOX_XYWH && !b.normalized);
    cJSON_Delete(j);
    j = js("{\"each\": \"detect\", \"crop\": \".b\", \"box\": \"cxcywh\", \"normalized\": true}");
    CU_ASSERT(prep_box_parse(j, &b, err, sizeof err) == 0 && b.format == PREP_BOX_CXCYWH && b.normalized);
    cJSON_Delete(j);
    j = js("{\"box\": \"xyxy\"}");
    CU_ASSERT(prep_box_parse(j, &b, err, sizeof err) == 0 && b.format == PREP_BOX_XYXY);
    cJSON_Delete(j);
    static const struct {
        const char *text, *err;
    } bad[] = {
        {"{\"box\": \"yxyx\"}", "\"input\": \"box\" must be \"xywh\", \"xyxy\" or \"cxcywh\""},
        {"{\"box\": 4}", "\"input\": \"box\" must be \"xywh\", \"xyxy\" or \"cxcywh\""},
        {"{\"normalized\": 1}", "\"input\": \"normalized\" must be true or false"},
        {"{\"box\": \"xywh\", \"box\": \"xyxy\"}", "\"input\": key \"box\" appears twice"},
        {"\"image\"", "\"input\" must be an object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        j = js(bad[i].text);
        CU_ASSERT_EQUAL(prep_box_parse(j, &b, err, sizeof err), -1);
        CU_ASSERT_STRING_EQUAL(err, bad[i].err);
        cJSON_Delete(j);
    }
}

static int rect_is(struct prep_rect r, int x, int y, int w, int h)
{
    if (r.x == x && r.y == y && r.w == w && r.h == h)
        return 1;
    fprintf(stderr, "rect %d,%d %dx%d, not %d,%d %dx%d\n", r.x, r.y, r.w, r.h, x, y, w, h);
    return 0;
}

static void test_orient_rect(void)
{
    /* A 10 x 5 rectangle at the stored image's top left corner (300 x 200), shown upright. */
    static const int want[9][4] = {{0},           {0, 0, 10, 5},  {290, 0, 10, 5}, {290, 195, 10, 5}, {0, 195, 10, 5},
                                   {0, 0, 5, 10}, {195, 0, 5, 10}, {195, 290, 5, 10}, {0, 290, 5, 10}};
    for (int o = 1; o <= 8; o++) {
        struct prep_rect r = {0, 0, 10, 5}, u = prep_orient_rect(o, 300, 200, r);
        CU_ASSERT(rect_is(u, want[o][0], want[o][1], want[o][2], want[o][3]));
        CU_ASSERT(rect_is(prep_unorient_rect(o, 300, 200, u), 0, 0, 10, 5));
        struct prep_rect odd = {17, 33, 41, 9};
        CU_ASSERT(rect_is(prep_unorient_rect(o, 300, 200, prep_orient_rect(o, 300, 200, odd)), 17, 33, 41, 9));
        int uw, uh;
        prep_orient_size(o, 300, 200, &uw, &uh);
        CU_ASSERT(o >= 5 ? uw == 200 && uh == 300 : uw == 300 && uh == 200);
    }
}

static int map(const struct prep_box_spec *bs, double a, double b, double c, double d, const struct prep_frame *f,
               struct prep_rect *r, char *err, size_t errlen)
{
    double v[4] = {a, b, c, d};
    return prep_box_map(bs, v, f, 2, r, err, errlen);
}

static void test_box_map(void)
{
    struct prep_frame f;
    struct prep_rect r;
    char err[300];
    struct prep_box_spec xywh = {PREP_BOX_XYWH, 0}, xyxy = {PREP_BOX_XYXY, 0}, cxcy = {PREP_BOX_CXCYWH, 0},
                         norm = {PREP_BOX_XYWH, 1};
    prep_frame_stored(&f, 300, 200, 1);
    CU_ASSERT(map(&xywh, 10, 20, 30, 40, &f, &r, err, sizeof err) == 0 && rect_is(r, 10, 20, 30, 40));
    CU_ASSERT(map(&xyxy, 10, 20, 40, 60, &f, &r, err, sizeof err) == 0 && rect_is(r, 10, 20, 30, 40));
    CU_ASSERT(map(&cxcy, 25, 40, 30, 40, &f, &r, err, sizeof err) == 0 && rect_is(r, 10, 20, 30, 40));
    CU_ASSERT(map(&norm, 0.1, 0.2, 0.3, 0.4, &f, &r, err, sizeof err) == 0 && rect_is(r, 30, 40, 90, 80));
    /* edges rounded outwards; clamped at the image's edges */
    CU_ASSERT(map(&xywh, 10.5, 20.2, 1, 1, &f, &r, err, sizeof err) == 0 && rect_is(r, 10, 20, 2, 2));
    CU_ASSERT(map(&xywh, -10, -10, 50, 50, &f, &r, err, sizeof err) == 0 && rect_is(r, 0, 0, 40, 40));
    CU_ASSERT(map(&xywh, 290, 190, 50, 50, &f, &r, err, sizeof err) == 0 && rect_is(r, 290, 190, 10, 10));
    CU_ASSERT(map(&norm, -1, -1, 3, 3, &f, &r, err, sizeof err) == 0 && rect_is(r, 0, 0, 300, 200));
    /* refused, naming the box */
    CU_ASSERT(map(&xywh, 400, 10, 5, 5, &f, &r, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "box 2 [400, 10, 5, 5] (xywh) has no area inside the 300×200 image");
    CU_ASSERT(map(&xywh, 10, 10, 0, 5, &f, &r, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "box 2 [10, 10, 0, 5] (xywh) has no area");
    CU_ASSERT(map(&xyxy, 50, 10, 40, 20, &f, &r, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "box 2 [50, 10, 40, 20] (xyxy) has no area");
    CU_ASSERT(map(&norm, 0.5, 1.0, 0.2, 0.2, &f, &r, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "box 2 [0.5, 1, 0.2, 0.2] (xywh, normalized) has no area inside the 300×200 image");
    CU_ASSERT(map(&xywh, NAN, 1, 2, 3, &f, &r, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "box 2 [nan, 1, 2, 3] (xywh) is not four finite numbers");
    CU_ASSERT(map(&xywh, 1e308, 1e308, 1e308, 1e308, &f, &r, err, sizeof err) == -1);
    CU_ASSERT(map(&xywh, -1e308, -1e308, 1e308, 1e308, &f, &r, err, sizeof err) == -1);
    /* a file sent as stored, orientation 6: the stored 300 x 200 box lands in the upright 200 x 300 */
    prep_frame_stored(&f, 300, 200, 6);
    CU_ASSERT(map(&xywh, 0, 0, 10, 5, &f, &r, err, sizeof err) == 0 && rect_is(r, 195, 0, 5, 10));
}

/* Frames of prepared images: max_side, cover and contain over coord()'s 300 x 200. */
static void test_frames(void)
{
    struct prep_layout l;
    struct prep_frame f;
    struct prep_rect r;
    char err[300];
    struct prep_box_spec xywh = {PREP_BOX_XYWH, 0}, norm = {PREP_BOX_XYWH, 1};
    struct prep_spec s = spec("{\"max_side\": 150}");
    prep_layout_of(&s, 300, 200, &l);
    CU_ASSERT(l.out_w == 150 && l.out_h == 100);
    prep_layout_frame(&l, 300, 200, 1, &f);
    CU_ASSERT(map(&xywh, 10, 20, 30, 40, &f, &r, err, sizeof err) == 0 && rect_is(r, 20, 40, 60, 80));
    CU_ASSERT(map(&norm, 0.1, 0.2, 0.3, 0.4, &f, &r, err, sizeof err) == 0 && rect_is(r, 30, 40, 90, 80));
    s = spec("{\"max_side\": 1000}"); /* never enlarged */
    prep_layout_of(&s, 300, 200, &l);
    CU_ASSERT(l.out_w == 300 && l.out_h == 200 && l.rw == 300);
    s = spec("{\"size\": [100, 100], \"fit\": \"cover\"}");
    prep_layout_of(&s, 300, 200, &l);
    CU_ASSERT(l.out_w == 100 && l.out_h == 100 && l.rx == 50 && l.rw == 200 && l.rh == 200);
    prep_layout_frame(&l, 300, 200, 1, &f);
    CU_ASSERT(map(&xywh, 10, 20, 30, 40, &f, &r, err, sizeof err) == 0 && rect_is(r, 70, 40, 60, 80));
    s = spec("{\"size\": [100, 100], \"fit\": \"contain\"}");
    prep_layout_of(&s, 300, 200, &l);
    CU_ASSERT(l.out_w == 100 && l.out_h == 100 && l.content_w == 100 && l.content_h == 67 && l.dy == 16);
    prep_layout_frame(&l, 300, 200, 1, &f);
    CU_ASSERT(map(&xywh, 10, 16, 30, 67, &f, &r, err, sizeof err) == 0 && rect_is(r, 30, 0, 90, 200));
    CU_ASSERT(map(&xywh, 0, 0, 100, 10, &f, &r, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "box 2 [0, 0, 100, 10] (xywh) lies in the padding of the 100×100 image, outside "
                                "the picture");
    s = spec("{\"size\": [600, 100], \"fit\": \"fill\"}");
    prep_layout_of(&s, 300, 200, &l);
    prep_layout_frame(&l, 300, 200, 1, &f);
    CU_ASSERT(map(&xywh, 60, 10, 60, 10, &f, &r, err, sizeof err) == 0 && rect_is(r, 30, 20, 30, 20));
}

/* ---- preparing whole images ---- */

static void test_orient_all(void)
{
    for (int o = 1; o <= 8; o++) {
        char name[32], err[300] = "";
        struct prep_result r;
        struct pix px = {0};
        snprintf(name, sizeof name, "quad_o%d.jpg", o);
        CU_ASSERT_FATAL(prepare(name, "{}", &r, &px, err, sizeof err) == 0);
        CU_ASSERT(r.width == 64 && r.height == 48 && !r.unchanged);
        CU_ASSERT_STRING_EQUAL(r.mime, "image/jpeg");
        if (!upright_quad(&px, 40))
            fprintf(stderr, "orientation %d is not upright\n", o);
        CU_ASSERT(upright_quad(&px, 40));
        CU_ASSERT(r.frame.orientation == 1 && r.frame.base_w == 64 && r.frame.base_h == 48);
        g_free(px.p);
        prep_result_free(&r);
        CU_ASSERT_FATAL(prepare(name, "{\"max_side\": 32, \"format\": \"png\"}", &r, &px, err, sizeof err) == 0);
        CU_ASSERT(r.width == 32 && r.height == 24);
        CU_ASSERT(upright_quad(&px, 40));
        g_free(px.p);
        prep_result_free(&r);
    }
}

static void test_orient_false(void)
{
    struct prep_result r;
    struct pix px = {0};
    char err[300];
    /* orientation 6, not applied: the stored 48 x 64 pixels; the frame says how they turn */
    CU_ASSERT_FATAL(prepare("quad_o6.jpg", "{\"orient\": false}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(r.width == 48 && r.height == 64 && r.frame.orientation == 6);
    CU_ASSERT(!has_field(&r, "exif-data")); /* stripped, the tag with the rest */
    /* stored turned a quarter anticlockwise: quad()'s top right (green) at the top left, its top
     * left (red) at the bottom left */
    CU_ASSERT(near(&px, 12, 12, 0, 255, 0, 40) && near(&px, 36, 12, 255, 255, 255, 40) &&
              near(&px, 12, 52, 255, 0, 0, 40) && near(&px, 36, 52, 0, 0, 255, 40));
    g_free(px.p);
    prep_result_free(&r);
}

/* big_o6.jpg: the ramp R = 255 x / 1599, G = 255 y / 1199 of the upright 1600 x 1200. */
static int ramp_ok(const struct pix *px)
{
    int ok = 1;
    for (int k = 0; k < 9; k++) {
        int x = (px->w - 1) * (k % 3) / 2, y = (px->h - 1) * (k / 3) / 2;
        int r = (int)lround(255.0 * x / (px->w - 1)), g = (int)lround(255.0 * y / (px->h - 1));
        ok &= near(px, x, y, r, g, 128, 12);
    }
    return ok;
}

static void test_max_side(void)
{
    static const struct {
        const char *spec;
        int w, h;
    } cases[] = {{"{\"max_side\": 1024}", 1024, 768}, /* decoded at full size */
                 {"{\"max_side\": 256}", 256, 192},   /* at 1/4 (shrink-on-load) */
                 {"{\"max_side\": 100}", 100, 75},    /* at 1/8 */
                 {"{\"max_side\": 4000}", 1600, 1200}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct prep_result r;
        struct pix px = {0};
        char err[300];
        CU_ASSERT_FATAL(prepare("big_o6.jpg", cases[i].spec, &r, &px, err, sizeof err) == 0);
        CU_ASSERT(r.width == cases[i].w && r.height == cases[i].h);
        CU_ASSERT(ramp_ok(&px));
        CU_ASSERT(r.frame.base_w == 1600 && r.frame.base_h == 1200 && r.frame.orientation == 1);
        CU_ASSERT(fabs(r.frame.sx * r.width - 1600) < 1 && fabs(r.frame.sy * r.height - 1200) < 1);
        g_free(px.p);
        prep_result_free(&r);
    }
}

static void test_fit(void)
{
    struct prep_result r;
    struct pix px = {0};
    char err[300];
    /* fill: 64 x 48 squeezed into 32 x 32, the quadrants with it */
    CU_ASSERT_FATAL(prepare("quad_o6.jpg", "{\"size\": [32, 32], \"fit\": \"fill\"}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(r.width == 32 && r.height == 32 && upright_quad(&px, 40));
    g_free(px.p);
    prep_result_free(&r);
    /* cover: the middle 48 x 48 of 64 x 48, scaled to 32 x 32: 8 columns cut off each side */
    CU_ASSERT_FATAL(prepare("quad_o6.jpg", "{\"size\": [32, 32], \"fit\": \"cover\"}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(r.width == 32 && r.height == 32 && upright_quad(&px, 40));
    CU_ASSERT(fabs(r.frame.ox - 8) < 1e-9 && fabs(r.frame.sx - 1.5) < 1e-9);
    g_free(px.p);
    prep_result_free(&r);
    /* contain: 32 x 24 in the middle of 32 x 32, four black rows above and below */
    CU_ASSERT_FATAL(prepare("quad_o6.jpg", "{\"size\": [32, 32], \"fit\": \"contain\", \"format\": \"png\"}", &r, &px,
                            err, sizeof err) == 0);
    CU_ASSERT(r.width == 32 && r.height == 32);
    CU_ASSERT(near(&px, 16, 1, 0, 0, 0, 0) && near(&px, 16, 30, 0, 0, 0, 0));
    CU_ASSERT(near(&px, 8, 8, 255, 0, 0, 40) && near(&px, 24, 23, 255, 255, 255, 40));
    CU_ASSERT(fabs(r.frame.oy + 4 * r.frame.sy) < 1e-9 && fabs(r.frame.sy - 2) < 1e-9);
    g_free(px.p);
    prep_result_free(&r);
    /* enlarged: size is exact, whatever the image's own size */
    CU_ASSERT_FATAL(prepare("quad_o1.jpg", "{\"size\": [128, 96], \"fit\": \"fill\"}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(r.width == 128 && r.height == 96 && upright_quad(&px, 40));
    g_free(px.p);
    prep_result_free(&r);
}

static void test_formats(void)
{
    static const struct {
        const char *file, *spec, *mime;
    } cases[] = {
        {"coord_o1.png", "{\"format\": \"jpeg\"}", "image/jpeg"},
        {"coord_o1.png", "{\"format\": \"webp\", \"quality\": 90}", "image/webp"},
        {"quad_o1.jpg", "{\"format\": \"png\"}", "image/png"},
        {"coord_o1.png", "{\"format\": \"same\"}", "image/png"},
        {"quad_o3.jpg", "{\"format\": \"same\"}", "image/jpeg"},
        {"coord.webp", "{\"format\": \"same\"}", "image/webp"},
        {"coord.gif", "{\"format\": \"same\"}", "image/png"},
        {"coord.tif", "{\"format\": \"same\"}", "image/png"},
        {"quad.heic", "{\"format\": \"same\"}", "image/jpeg"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct prep_result r;
        struct pix px = {0};
        char err[300];
        CU_ASSERT_FATAL(prepare(cases[i].file, cases[i].spec, &r, &px, err, sizeof err) == 0);
        CU_ASSERT_STRING_EQUAL(r.mime, cases[i].mime);
        CU_ASSERT(mime_sniff(r.data, r.len) && !strcmp(mime_sniff(r.data, r.len), cases[i].mime));
        g_free(px.p);
        prep_result_free(&r);
    }
}

static void test_strip(void)
{
    struct prep_result r;
    char err[300];
    CU_ASSERT_FATAL(prepare("quad_o6.jpg", "{}", &r, NULL, err, sizeof err) == 0);
    CU_ASSERT(!has_field(&r, "exif-data") && !has_field(&r, "exif-ifd3-GPSLatitude") &&
              !has_field(&r, "icc-profile-data") && !has_field(&r, "xmp-data"));
    CU_ASSERT(memmem(r.data, r.len, "TestCam", 7) == NULL && memmem(r.data, r.len, "Exif", 4) == NULL);
    prep_result_free(&r);
    /* kept: the GPS position and the camera, with the orientation tag made 1 (it was applied) */
    CU_ASSERT_FATAL(prepare("quad_o6.jpg", "{\"strip\": false}", &r, NULL, err, sizeof err) == 0);
    CU_ASSERT(has_field(&r, "exif-ifd3-GPSLatitude") && memmem(r.data, r.len, "TestCam", 7) != NULL);
    VipsImage *im = vips_image_new_from_buffer(r.data, r.len, "", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(im);
    CU_ASSERT_EQUAL(vips_image_get_orientation(im), 1);
    g_object_unref(im);
    prep_result_free(&r);
    /* PNG and WebP outputs strip too */
    CU_ASSERT_FATAL(prepare("coord_o6.png", "{\"format\": \"png\"}", &r, NULL, err, sizeof err) == 0);
    CU_ASSERT(!has_field(&r, "exif-data") && memmem(r.data, r.len, "TestCam", 7) == NULL);
    prep_result_free(&r);
    CU_ASSERT_FATAL(prepare("coord.webp", "{\"format\": \"webp\"}", &r, NULL, err, sizeof err) == 0);
    CU_ASSERT(!has_field(&r, "exif-data") && memmem(r.data, r.len, "TestCam", 7) == NULL);
    prep_result_free(&r);
}

/* An image in Display P3 (libvips' built-in profile), made from sRGB (200, 60, 60): stripped, it
 * comes back as sRGB (200, 60, 60) with no profile; kept, its P3 pixels and profile stay. */
static void test_icc(void)
{
    VipsImage *flat = NULL, *srgb = NULL, *p3 = NULL;
    CU_ASSERT_FATAL(vips_black(&flat, 16, 16, "bands", 3, NULL) == 0);
    double add[3] = {200, 60, 60}, one[3] = {1, 1, 1};
    CU_ASSERT_FATAL(vips_linear(flat, &srgb, one, add, 3, "uchar", TRUE, NULL) == 0);
    vips_image_set_int(srgb, "interpretation", VIPS_INTERPRETATION_sRGB);
    VipsImage *tagged = NULL;
    CU_ASSERT_FATAL(vips_copy(srgb, &tagged, "interpretation", VIPS_INTERPRETATION_sRGB, NULL) == 0);
    CU_ASSERT_FATAL(vips_icc_transform(tagged, &p3, "p3", "input_profile", "srgb", NULL) == 0);
    void *png = NULL;
    size_t len = 0;
    CU_ASSERT_FATAL(vips_pngsave_buffer(p3, &png, &len, NULL) == 0);
    struct pix in = {0}, px = {0};
    CU_ASSERT_FATAL(decode(png, len, &in) == 0);
    CU_ASSERT(abs(at(&in, 3, 3)[0] - 200) > 5 || abs(at(&in, 3, 3)[1] - 60) > 5); /* P3 numbers differ */
    struct prep_result r;
    char err[300];
    struct prep_spec s = spec("{\"format\": \"png\"}");
    CU_ASSERT_FATAL(prep_image(png, len, &s, 0, &r, err, sizeof err) == 0);
    CU_ASSERT_FATAL(decode(r.data, r.len, &px) == 0);
    CU_ASSERT(near(&px, 3, 3, 200, 60, 60, 2) && !has_field(&r, "icc-profile-data"));
    g_free(px.p);
    prep_result_free(&r);
    s = spec("{\"format\": \"png\", \"strip\": false}");
    CU_ASSERT_FATAL(prep_image(png, len, &s, 0, &r, err, sizeof err) == 0);
    CU_ASSERT(r.unchanged); /* nothing to do: PNG to PNG, nothing stripped, nothing turned */
    s = spec("{\"format\": \"jpeg\", \"quality\": 100, \"strip\": false}");
    CU_ASSERT_FATAL(prep_image(png, len, &s, 0, &r, err, sizeof err) == 0);
    CU_ASSERT_FATAL(decode(r.data, r.len, &px) == 0);
    CU_ASSERT(has_field(&r, "icc-profile-data"));
    CU_ASSERT(near(&px, 3, 3, at(&in, 3, 3)[0], at(&in, 3, 3)[1], at(&in, 3, 3)[2], 4));
    g_free(px.p);
    g_free(in.p);
    prep_result_free(&r);
    g_free(png);
    g_object_unref(p3);
    g_object_unref(tagged);
    g_object_unref(srgb);
    g_object_unref(flat);
}

static void test_colour_kinds(void)
{
    struct prep_result r;
    struct pix px = {0};
    char err[300];
    /* transparency: laid on white for JPEG, kept in PNG */
    CU_ASSERT_FATAL(prepare("alpha.png", "{\"format\": \"jpeg\"}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(px.bands == 3 && near(&px, 5, 5, 255, 0, 0, 30) && near(&px, 35, 5, 255, 255, 255, 30));
    g_free(px.p);
    prep_result_free(&r);
    CU_ASSERT_FATAL(prepare("alpha.png", "{\"format\": \"png\", \"max_side\": 20}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(px.bands == 4 && px.w == 20 && at(&px, 2, 2)[3] == 255 && at(&px, 17, 2)[3] == 0);
    CU_ASSERT(near(&px, 2, 2, 255, 0, 0, 0)); /* no dark fringe: alpha premultiplied while resized */
    g_free(px.p);
    prep_result_free(&r);
    /* 16-bit grey: 8-bit grey, value x + y */
    CU_ASSERT_FATAL(prepare("grey16.png", "{\"format\": \"png\"}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(px.bands == 1 && at(&px, 7, 5)[0] == 12 && at(&px, 29, 19)[0] == 48);
    g_free(px.p);
    prep_result_free(&r);
    /* CMYK: no cyan, full magenta and yellow, no black: red */
    CU_ASSERT_FATAL(prepare("cmyk.jpg", "{}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(px.bands == 3 && at(&px, 8, 8)[0] > 180 && at(&px, 8, 8)[1] < 80 && at(&px, 8, 8)[2] < 80);
    g_free(px.p);
    prep_result_free(&r);
}

static void test_unchanged(void)
{
    struct prep_result r;
    char err[300];
    /* nothing to do: the file's bytes go as they are */
    CU_ASSERT_FATAL(prepare("coord_o1.png", "{\"max_side\": 1024, \"strip\": false, \"format\": \"same\"}", &r, NULL,
                            err, sizeof err) == 0);
    CU_ASSERT(r.unchanged && r.data == NULL && r.width == 300 && r.height == 200);
    CU_ASSERT_STRING_EQUAL(r.mime, "image/png");
    /* to turn upright, to strip, to convert: re-encoded */
    CU_ASSERT_FATAL(
        prepare("coord_o6.png", "{\"strip\": false, \"format\": \"same\"}", &r, NULL, err, sizeof err) == 0);
    CU_ASSERT(!r.unchanged && r.width == 300 && r.height == 200);
    prep_result_free(&r);
    CU_ASSERT_FATAL(prepare("coord_o1.png", "{\"format\": \"same\"}", &r, NULL, err, sizeof err) == 0);
    CU_ASSERT(!r.unchanged);
    prep_result_free(&r);
    CU_ASSERT_FATAL(prepare("coord_o1.png", "{\"strip\": false}", &r, NULL, err, sizeof err) == 0);
    CU_ASSERT(!r.unchanged && !strcmp(r.mime, "image/jpeg"));
    prep_result_free(&r);
}

/* ---- crops ---- */

/* Opens a test image as a source, its bytes freed at once (the source needs them no more). */
static struct prep_source *source(const char *name)
{
    size_t len;
    unsigned char *b = image(name, &len);
    struct prep_source *s = NULL;
    char err[300];
    int rc = prep_source_open(b, len, 0, &s, err, sizeof err);
    memset(b, 0, len);
    free(b);
    if (rc)
        fprintf(stderr, "%s: %s\n", name, err);
    CU_ASSERT_FATAL(rc == 0);
    return s;
}

/* Cuts r out of s as PNG and checks it is coord()'s pixels there. */
static int crop_is_coord(struct prep_source *s, struct prep_rect r)
{
    struct prep_spec png = spec("{\"format\": \"png\"}");
    struct prep_result out;
    struct pix px = {0};
    char err[300];
    if (prep_crop(s, r, &png, &out, err, sizeof err)) {
        fprintf(stderr, "crop: %s\n", err);
        return 0;
    }
    int ok = decode(out.data, out.len, &px) == 0 && px.w == r.w && px.h == r.h && coord_region(&px, r.x, r.y);
    g_free(px.p);
    prep_result_free(&out);
    return ok;
}

static void test_crops(void)
{
    struct prep_box_spec formats[] = {{PREP_BOX_XYWH, 0}, {PREP_BOX_XYXY, 0}, {PREP_BOX_CXCYWH, 0},
                                      {PREP_BOX_XYWH, 1}, {PREP_BOX_XYXY, 1}, {PREP_BOX_CXCYWH, 1}};
    /* the box x 70-130, y 40-120 of the upright 300 x 200, in each format */
    double boxes[6][4] = {{70, 40, 60, 80},        {70, 40, 130, 120},     {100, 80, 60, 80},
                          {70 / 300., 0.2, 0.2, 0.4}, {70 / 300., 0.2, 130 / 300., 0.6}, {1 / 3., 0.4, 0.2, 0.4}};
    for (int o = 1; o <= 8; o++) {
        char name[32], err[300];
        snprintf(name, sizeof name, "coord_o%d.png", o);
        struct prep_source *s = source(name);
        const struct prep_info *info = prep_source_info(s);
        CU_ASSERT(info->width == 300 && info->height == 200 && info->orientation == o);
        /* the detect stage saw the image upright (its own preparation, no resize) */
        struct prep_frame f;
        prep_frame_stored(&f, 300, 200, 1);
        for (int k = 0; k < 6; k++) {
            struct prep_rect r;
            CU_ASSERT_FATAL(prep_box_map(&formats[k], boxes[k], &f, k, &r, err, sizeof err) == 0);
            CU_ASSERT(rect_is(r, 70, 40, 60, 80));
            CU_ASSERT(crop_is_coord(s, r));
        }
        /* edges, a pixel, the whole image */
        CU_ASSERT(crop_is_coord(s, (struct prep_rect){0, 0, 300, 200}));
        CU_ASSERT(crop_is_coord(s, (struct prep_rect){299, 199, 1, 1}));
        CU_ASSERT(crop_is_coord(s, (struct prep_rect){257, 0, 43, 200}));
        prep_source_free(s);
    }
}

/* The detect stage received coord_o6.png prepared ({"max_side": 150}, and cover, contain); its
 * boxes come back to the upright original. */
static void test_crop_frames(void)
{
    static const struct {
        const char *spec;
        double box[4];
        int x, y, w, h;
    } cases[] = {
        {"{\"max_side\": 150}", {10, 20, 30, 40}, 20, 40, 60, 80},
        {"{\"size\": [100, 100], \"fit\": \"cover\"}", {10, 20, 30, 40}, 70, 40, 60, 80},
        {"{\"size\": [100, 100], \"fit\": \"contain\"}", {10, 16, 30, 67}, 30, 0, 90, 200},
        /* not turned: the stored 200 x 300, whose stored rectangle 0,30 200x90 is upright 180,0 90x200 */
        {"{\"size\": [100, 100], \"fit\": \"contain\", \"orient\": false}", {16, 10, 67, 30}, 180, 0, 90, 200},
    };
    struct prep_source *s = source("coord_o6.png");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct prep_result det;
        char err[300];
        CU_ASSERT_FATAL(prepare("coord_o6.png", cases[i].spec, &det, NULL, err, sizeof err) == 0);
        struct prep_box_spec xywh = {PREP_BOX_XYWH, 0};
        struct prep_rect r;
        CU_ASSERT_FATAL(prep_box_map(&xywh, cases[i].box, &det.frame, 0, &r, err, sizeof err) == 0);
        CU_ASSERT(rect_is(r, cases[i].x, cases[i].y, cases[i].w, cases[i].h));
        CU_ASSERT(crop_is_coord(s, r));
        prep_result_free(&det);
    }
    prep_source_free(s);
}

/* A crop gets the crop stage's own spec; rectangles outside are refused. */
static void test_crop_spec(void)
{
    struct prep_source *s = source("coord_o8.png");
    struct prep_result out;
    struct pix px = {0};
    char err[300];
    struct prep_spec sp = spec("{\"size\": [30, 40], \"fit\": \"fill\", \"format\": \"png\", \"orient\": false}");
    CU_ASSERT_FATAL(prep_crop(s, (struct prep_rect){100, 100, 60, 80}, &sp, &out, err, sizeof err) == 0);
    CU_ASSERT_FATAL(decode(out.data, out.len, &px) == 0);
    /* upright whatever "orient" says; every pixel near coord's at twice its place */
    CU_ASSERT(px.w == 30 && px.h == 40);
    unsigned char c[3];
    coord_rgb(100 + 2 * 10 + 1, 100 + 2 * 20 + 1, c);
    CU_ASSERT(near(&px, 10, 20, c[0], c[1], c[2], 2));
    g_free(px.p);
    prep_result_free(&out);
    CU_ASSERT_FATAL(prep_crop(s, (struct prep_rect){0, 0, 10, 10}, NULL, &out, err, sizeof err) == 0);
    CU_ASSERT(out.width == 10 && !strcmp(out.mime, "image/jpeg"));
    prep_result_free(&out);
    CU_ASSERT(prep_crop(s, (struct prep_rect){250, 0, 51, 10}, NULL, &out, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "the rectangle 250,0 51×10 is not inside the 300×200 image");
    CU_ASSERT(prep_crop(s, (struct prep_rect){0, 0, 0, 10}, NULL, &out, err, sizeof err) == -1);
    prep_source_free(s);
}

/* ---- bad images ---- */

/* crc.png's: libvips' words, then libpng's (its image data no longer inflates) */
#define CRC_REASON "cannot prepare the image: vipspng: libpng read error; Not enough image data"

static void test_bad_files(void)
{
    static const struct {
        const char *file, *err;
    } cases[] = {
        {"trunc.jpg", "cannot prepare the image: VipsJpeg: Premature end of input file"},
        {"trunc.png", "cannot prepare the image: "},
        {"crc.png", "cannot prepare the image: "},
        {"junk.bin", "not an image annotate reads (JPEG, PNG, WebP, TIFF, GIF or HEIC)"},
        {"empty.jpg", "not an image annotate reads (JPEG, PNG, WebP, TIFF, GIF or HEIC)"},
        {"drawing.svg", "not an image annotate reads (JPEG, PNG, WebP, TIFF, GIF or HEIC)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct prep_result r;
        char err[400] = "";
        CU_ASSERT(prepare(cases[i].file, "{\"max_side\": 100}", &r, NULL, err, sizeof err) == -1);
        CU_ASSERT(r.data == NULL);
        if (strncmp(err, cases[i].err, strlen(cases[i].err)))
            fprintf(stderr, "%s: %s\n", cases[i].file, err);
        CU_ASSERT(!strncmp(err, cases[i].err, strlen(cases[i].err)));
        size_t len;
        unsigned char *b = image(cases[i].file, &len);
        struct prep_source *s = NULL;
        char err2[400] = "";
        CU_ASSERT(prep_source_open(b, len, 0, &s, err2, sizeof err2) == -1 && s == NULL);
        CU_ASSERT(!strncmp(err2, cases[i].err, strlen(cases[i].err)));
        free(b);
    }
    struct prep_result r;
    char err[400];
    /* libpng's own words after libvips' */
    CU_ASSERT(prepare("crc.png", "{}", &r, NULL, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, CRC_REASON);
    CU_ASSERT(prepare("trunc.png", "{}", &r, NULL, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "cannot prepare the image: vipspng: libpng read error; not enough data");
}

/* Peak resident memory growth of the process while fn runs (Linux: /proc/self/clear_refs resets
 * VmHWM to the current size). */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, strlen(field)))
            v = atol(line + strlen(field) + 1);
    if (f)
        fclose(f);
    return v;
}

static void test_bomb(void)
{
    size_t len;
    unsigned char *b = image("bomb.png", &len);
    CU_ASSERT(len < 1000);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("5", f);
    fclose(f);
    long before = status_kb("VmRSS:");
    struct prep_spec s = spec("{\"max_side\": 1024}");
    struct prep_result r;
    struct prep_source *src = NULL;
    struct prep_info info;
    const char *want = "image too large: 50000×50000 pixels (--max-pixels 100000000)";
    char err[300] = "";
    CU_ASSERT(prep_image(b, len, &s, 0, &r, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT(prep_source_open(b, len, 0, &src, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, want);
    CU_ASSERT(prep_probe(b, len, 0, &info, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, want);
    long grew = status_kb("VmHWM:") - before;
    if (grew > 16 * 1024)
        fprintf(stderr, "the bomb's peak RSS grew by %ld kB\n", grew);
    CU_ASSERT(grew < 16 * 1024); /* 7.5 GB of pixels claimed; not a row of them allocated */
    /* the limit is the caller's */
    CU_ASSERT(prep_probe(b, len, 2500000000ull, &info, err, sizeof err) == 0 && info.width == 50000);
    free(b);
    b = image("quad_o1.jpg", &len);
    CU_ASSERT(prep_image(b, len, &s, 3071, &r, err, sizeof err) == -1);
    CU_ASSERT_STRING_EQUAL(err, "image too large: 64×48 pixels (--max-pixels 3071)");
    CU_ASSERT(prep_image(b, len, &s, 3072, &r, err, sizeof err) == 0);
    prep_result_free(&r);
    free(b);
}

/* ---- other inputs ---- */

static void test_inputs(void)
{
    struct prep_result r;
    struct pix px = {0}, gif = {0};
    char err[300];
    CU_ASSERT_FATAL(prepare("quad.heic", "{}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(r.width == 64 && r.height == 48 && upright_quad(&px, 60));
    g_free(px.p);
    prep_result_free(&r);
    /* WebP, orientation 6: the stored coord() turned; upright (u, v) is stored (v, 199 - u) */
    CU_ASSERT_FATAL(prepare("coord.webp", "{\"format\": \"png\"}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(r.width == 200 && r.height == 300);
    int ok = 1;
    for (int v = 0; v < 300; v += 37)
        for (int u = 0; u < 200; u += 23) {
            unsigned char c[3];
            coord_rgb(v, 199 - u, c);
            ok &= !memcmp(at(&px, u, v), c, 3);
        }
    CU_ASSERT(ok);
    g_free(px.p);
    prep_result_free(&r);
    CU_ASSERT_FATAL(prepare("coord.tif", "{\"format\": \"png\"}", &r, &px, err, sizeof err) == 0);
    CU_ASSERT(coord_region(&px, 0, 0));
    g_free(px.p);
    prep_result_free(&r);
    CU_ASSERT_FATAL(prepare("coord.gif", "{\"format\": \"png\"}", &r, &px, err, sizeof err) == 0);
    size_t len;
    unsigned char *want = image("coord_gif.png", &len);
    CU_ASSERT_FATAL(decode(want, len, &gif) == 0);
    CU_ASSERT(px.w == gif.w && px.h == gif.h && px.bands == 3 && gif.bands == 3 &&
              !memcmp(px.p, gif.p, (size_t)px.w * px.h * 3));
    free(want);
    g_free(gif.p);
    g_free(px.p);
    prep_result_free(&r);
}

/* ---- memory estimates (make bench-prepare measures them against the peak RSS) ---- */

static struct prep_info probe(const char *name)
{
    size_t len;
    unsigned char *b = image(name, &len);
    struct prep_info info;
    char err[300];
    CU_ASSERT_FATAL(prep_probe(b, len, 0, &info, err, sizeof err) == 0);
    free(b);
    return info;
}

static void test_estimates(void)
{
    struct prep_info big = probe("big_o6.jpg"), webp = probe("coord.webp"), png = probe("coord_o1.png");
    CU_ASSERT(big.stored_w == 1200 && big.stored_h == 1600 && big.width == 1600 && big.orientation == 6);
    CU_ASSERT(big.streams && big.bands == 3 && big.sample_bytes == 1 && !strcmp(big.mime, "image/jpeg"));
    CU_ASSERT(!webp.streams && png.streams && !strcmp(webp.mime, "image/webp"));
    struct prep_spec s100 = spec("{\"max_side\": 100}"), s1024 = spec("{\"max_side\": 1024}"), full = spec("{}");
    uint64_t a = prep_peak_bytes(&big, &s100), b = prep_peak_bytes(&big, &s1024), c = prep_peak_bytes(&big, &full);
    CU_ASSERT(a < b && b < c);
    CU_ASSERT(c > 2ull * 1600 * 1200 * 3); /* turned at full size: the upright copy and the output */
    /* whole-image decoders count the whole image; a held source its pixels */
    CU_ASSERT(prep_peak_bytes(&webp, &s100) > 3ull * 300 * 200 * 3);
    CU_ASSERT(prep_source_bytes(&big) > 1600ull * 1200 * 3);
    struct prep_rect r = {0, 0, 400, 300};
    CU_ASSERT(prep_crop_peak_bytes(&big, r, NULL) > 400ull * 300 * 3);
    CU_ASSERT(prep_crop_peak_bytes(&big, r, &s100) < prep_crop_peak_bytes(&big, r, NULL));
}

/* ---- threads ---- */

static struct {
    unsigned char *bytes[4];
    size_t len[4];
    struct prep_source *source;
} shared;

struct worker {
    int id, failures;
    char first[400];
};

static void failed(struct worker *w, const char *what, const char *err)
{
    if (!w->failures++)
        snprintf(w->first, sizeof w->first, "%s: %s", what, err);
}

/* Each call's result, and each failure's reason, must be that call's own. */
static void *work(void *arg)
{
    struct worker *w = arg;
    struct prep_spec s;
    prep_spec_default(&s);
    s.resize = PREP_RESIZE_MAX_SIDE, s.width = s.height = 256;
    for (int i = 0; i < 10; i++) {
        int k = (w->id + i) % 4;
        struct prep_result r;
        char err[400] = "";
        int rc = prep_image(shared.bytes[k], shared.len[k], &s, 0, &r, err, sizeof err);
        if (k == 0 && (rc || r.width != 256 || r.height != 192))
            failed(w, "big_o6.jpg", err);
        if (k == 1 && (rc != -1 || strcmp(err, "cannot prepare the image: VipsJpeg: Premature end of input file")))
            failed(w, "trunc.jpg", err);
        if (k == 2 && (rc != -1 || strcmp(err, CRC_REASON)))
            failed(w, "crc.png", err);
        if (k == 3 && (rc != -1 || strcmp(err, "not an image annotate reads (JPEG, PNG, WebP, TIFF, GIF or HEIC)")))
            failed(w, "junk.bin", err);
        prep_result_free(&r);
        struct prep_rect box = {10 * (i + w->id), 5 * i, 40 + i, 30};
        if (!crop_is_coord(shared.source, box))
            failed(w, "crop", "wrong pixels");
    }
    return NULL;
}

static void test_threads(void)
{
    static const char *const files[4] = {"big_o6.jpg", "trunc.jpg", "crc.png", "junk.bin"};
    for (int k = 0; k < 4; k++)
        shared.bytes[k] = image(files[k], &shared.len[k]);
    shared.source = source("coord_o3.png");
    enum { N = 6 };
    pthread_t t[N];
    struct worker w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){.id = i};
        CU_ASSERT_FATAL(pthread_create(&t[i], NULL, work, &w[i]) == 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        if (w[i].failures)
            fprintf(stderr, "thread %d: %d failures, the first: %s\n", i, w[i].failures, w[i].first);
        CU_ASSERT_EQUAL(w[i].failures, 0);
    }
    prep_source_free(shared.source);
    for (int k = 0; k < 4; k++)
        free(shared.bytes[k]);
}

int register_prepare(void)
{
    CU_pSuite s = CU_add_suite("prepare", suite_init, suite_cleanup);
    if (!s)
        return -1;
    if (!CU_add_test(s, "spec: keys, defaults, sizes, formats", test_spec_valid) ||
        !CU_add_test(s, "spec: errors name the key", test_spec_errors) ||
        !CU_add_test(s, "spec: equal specs, canonical text, round trip", test_spec_equal) ||
        !CU_add_test(s, "box: the crop input's box and normalized", test_box_parse) ||
        !CU_add_test(s, "box: rectangles turned by each EXIF orientation", test_orient_rect) ||
        !CU_add_test(s, "box: formats, normalized, clamped, refused", test_box_map) ||
        !CU_add_test(s, "box: frames of max_side, cover, contain, fill", test_frames) ||
        !CU_add_test(s, "every EXIF orientation 1-8 arrives upright", test_orient_all) ||
        !CU_add_test(s, "orient false: the stored pixels", test_orient_false) ||
        !CU_add_test(s, "max_side: shrink-on-load, never enlarged", test_max_side) ||
        !CU_add_test(s, "size: fill, cover, contain", test_fit) ||
        !CU_add_test(s, "formats: jpeg, png, webp, same", test_formats) ||
        !CU_add_test(s, "strip: EXIF and GPS gone, or kept", test_strip) ||
        !CU_add_test(s, "ICC: converted to sRGB when stripped, kept otherwise", test_icc) ||
        !CU_add_test(s, "alpha, 16-bit grey, CMYK", test_colour_kinds) ||
        !CU_add_test(s, "unchanged when there is nothing to do", test_unchanged) ||
        !CU_add_test(s, "crops: each box format, every orientation, exact pixels", test_crops) ||
        !CU_add_test(s, "crops: boxes from a detect stage's prepared image", test_crop_frames) ||
        !CU_add_test(s, "crops: the crop stage's own spec; outside refused", test_crop_spec) ||
        !CU_add_test(s, "corrupt and truncated files: the decoder's reason", test_bad_files) ||
        !CU_add_test(s, "a decompression bomb refused before allocation", test_bomb) ||
        !CU_add_test(s, "HEIC, WebP, TIFF, GIF inputs", test_inputs) ||
        !CU_add_test(s, "memory estimates", test_estimates) ||
        !CU_add_test(s, "threads: each result and reason its own", test_threads))
        return -1;
    return 0;
}
