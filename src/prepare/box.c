/* box: see box.h. */
#include "prepare/box.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const BOX_NAMES[] = {"xywh", "xyxy", "cxcywh"}; /* enum prep_box_format's order */

const char *prep_box_format_name(enum prep_box_format f)
{
    return (unsigned)f < 3 ? BOX_NAMES[f] : "?";
}

int prep_box_parse(const cJSON *input, struct prep_box_spec *out, char *err, size_t errlen)
{
    struct prep_box_spec b = {PREP_BOX_XYWH, 0};
    if (!cJSON_IsObject(input)) {
        snprintf(err, errlen, "\"input\" must be an object");
        return -1;
    }
    const char *twice = prep_json_repeated_key(input);
    if (twice) {
        snprintf(err, errlen, "\"input\": key \"%s\" appears twice", twice);
        return -1;
    }
    const cJSON *box = cJSON_GetObjectItemCaseSensitive(input, "box");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(input, "normalized");
    if (box) {
        int i = 0;
        while (i < 3 && !(cJSON_IsString(box) && !strcmp(box->valuestring, BOX_NAMES[i])))
            i++;
        if (i == 3) {
            snprintf(err, errlen, "\"input\": \"box\" must be \"xywh\", \"xyxy\" or \"cxcywh\"");
            return -1;
        }
        b.format = (enum prep_box_format)i;
    }
    if (norm && !cJSON_IsBool(norm)) {
        snprintf(err, errlen, "\"input\": \"normalized\" must be true or false");
        return -1;
    }
    b.normalized = norm && cJSON_IsTrue(norm);
    *out = b;
    return 0;
}

void prep_frame_stored(struct prep_frame *f, int w, int h, int orientation)
{
    *f = (struct prep_frame){.width = w, .height = h, .base_w = w, .base_h = h,
                             .orientation = orientation >= 1 && orientation <= 8 ? orientation : 1,
                             .sx = 1, .sy = 1, .ox = 0, .oy = 0};
}

/* ---- orientation ---- */

static int swaps(int o)
{
    return o >= 5 && o <= 8;
}

void prep_orient_size(int orientation, int w, int h, int *uw, int *uh)
{
    *uw = swaps(orientation) ? h : w;
    *uh = swaps(orientation) ? w : h;
}

/* Where the stored point (x, y) of a w x h image is in the upright image. */
static void orient_point(int o, int w, int h, double x, double y, double *u, double *v)
{
    switch (o) {
    case 2: *u = w - x; *v = y; break;
    case 3: *u = w - x; *v = h - y; break;
    case 4: *u = x; *v = h - y; break;
    case 5: *u = y; *v = x; break;
    case 6: *u = h - y; *v = x; break;
    case 7: *u = h - y; *v = w - x; break;
    case 8: *u = y; *v = w - x; break;
    default: *u = x; *v = y; break;
    }
}

void prep_orient_area(int orientation, int w, int h, int back, const double in[4], double out[4])
{
    if (back) {
        /* Turning back: 6 and 8 undo each other, every other orientation undoes itself; the image
         * being turned back is the upright one. */
        int uw, uh;
        prep_orient_size(orientation, w, h, &uw, &uh);
        w = uw, h = uh;
        orientation = orientation == 6 ? 8 : orientation == 8 ? 6 : orientation;
    }
    double u0, v0, u1, v1;
    orient_point(orientation, w, h, in[0], in[1], &u0, &v0);
    orient_point(orientation, w, h, in[0] + in[2], in[1] + in[3], &u1, &v1);
    out[0] = fmin(u0, u1);
    out[1] = fmin(v0, v1);
    out[2] = fabs(u1 - u0);
    out[3] = fabs(v1 - v0);
}

static struct prep_rect orient_rect(int orientation, int w, int h, int back, struct prep_rect r)
{
    double in[4] = {r.x, r.y, r.w, r.h}, out[4];
    prep_orient_area(orientation, w, h, back, in, out);
    return (struct prep_rect){(int)lround(out[0]), (int)lround(out[1]), (int)lround(out[2]), (int)lround(out[3])};
}

struct prep_rect prep_orient_rect(int orientation, int w, int h, struct prep_rect r)
{
    return orient_rect(orientation, w, h, 0, r);
}

struct prep_rect prep_unorient_rect(int orientation, int w, int h, struct prep_rect r)
{
    return orient_rect(orientation, w, h, 1, r);
}

/* ---- layout ---- */

/* round(a * num / den), at least 1: a side scaled in proportion. */
static int scaled(int a, int num, int den)
{
    long v = lround((double)a * num / den);
    return v < 1 ? 1 : (int)v;
}

void prep_layout_of(const struct prep_spec *s, int bw, int bh, struct prep_layout *l)
{
    *l = (struct prep_layout){0, 0, bw, bh, bw, bh, bw, bh, 0, 0};
    int W = s->width, H = s->height;
    int wide = (long)bw * H >= (long)bh * W; /* the base is at least as wide as W:H */
    switch (s->resize) {
    case PREP_RESIZE_NONE: return;
    case PREP_RESIZE_MAX_SIDE:
        if (bw <= W && bh <= H)
            return;
        l->content_w = bw >= bh ? W : scaled(bw, H, bh);
        l->content_h = bw >= bh ? scaled(bh, W, bw) : H;
        break;
    case PREP_RESIZE_FILL: l->content_w = W; l->content_h = H; break;
    case PREP_RESIZE_COVER:
        /* The middle of the base with W:H's aspect, scaled to W x H. */
        l->rw = wide ? fmin(bw, scaled(bh, W, H)) : bw;
        l->rh = wide ? bh : fmin(bh, scaled(bw, H, W));
        l->rx = floor((bw - l->rw) / 2);
        l->ry = floor((bh - l->rh) / 2);
        l->content_w = W;
        l->content_h = H;
        break;
    case PREP_RESIZE_CONTAIN:
        l->content_w = wide ? W : (int)fmin(W, scaled(bw, H, bh));
        l->content_h = wide ? (int)fmin(H, scaled(bh, W, bw)) : H;
        l->dx = (W - l->content_w) / 2;
        l->dy = (H - l->content_h) / 2;
        break;
    }
    l->out_w = s->resize == PREP_RESIZE_MAX_SIDE ? l->content_w : W;
    l->out_h = s->resize == PREP_RESIZE_MAX_SIDE ? l->content_h : H;
}

void prep_layout_frame(const struct prep_layout *l, int base_w, int base_h, int orientation, struct prep_frame *f)
{
    f->width = l->out_w;
    f->height = l->out_h;
    f->base_w = base_w;
    f->base_h = base_h;
    f->orientation = orientation >= 1 && orientation <= 8 ? orientation : 1;
    f->sx = l->rw / l->content_w;
    f->sy = l->rh / l->content_h;
    f->ox = l->rx - l->dx * f->sx;
    f->oy = l->ry - l->dy * f->sy;
}

/* ---- boxes ---- */

/* Clamps [*a, *b) into [0, hi]; 0 when nothing is left. */
static int clamp_span(double *a, double *b, double hi)
{
    *a = fmax(*a, 0);
    *b = fmin(*b, hi);
    return *b > *a;
}

/* [a, b) rounded outwards to whole pixels of [0, hi): at least one pixel. */
static void outwards(double a, double b, int hi, int *lo, int *len)
{
    const double eps = 1e-6; /* a float error below this is not a pixel more */
    int x0 = (int)floor(a + eps), x1 = (int)ceil(b - eps);
    x0 = x0 < 0 ? 0 : x0 > hi - 1 ? hi - 1 : x0;
    x1 = x1 <= x0 ? x0 + 1 : x1 > hi ? hi : x1;
    *lo = x0;
    *len = x1 - x0;
}

int prep_box_map(const struct prep_box_spec *bs, const double v[4], const struct prep_frame *f, int index,
                 struct prep_rect *out, char *err, size_t errlen)
{
    char name[160];
    snprintf(name, sizeof name, "box %d [%.10g, %.10g, %.10g, %.10g] (%s%s)", index, v[0], v[1], v[2], v[3],
             prep_box_format_name(bs->format), bs->normalized ? ", normalized" : "");
    if (!isfinite(v[0]) || !isfinite(v[1]) || !isfinite(v[2]) || !isfinite(v[3])) {
        snprintf(err, errlen, "%s is not four finite numbers", name);
        return -1;
    }
    double x0 = v[0], y0 = v[1], x1 = v[0] + v[2], y1 = v[1] + v[3];
    if (bs->format == PREP_BOX_XYXY) {
        x1 = v[2];
        y1 = v[3];
    } else if (bs->format == PREP_BOX_CXCYWH) {
        x0 = v[0] - v[2] / 2, x1 = v[0] + v[2] / 2;
        y0 = v[1] - v[3] / 2, y1 = v[1] + v[3] / 2;
    }
    if (!(x1 > x0 && y1 > y0)) {
        snprintf(err, errlen, "%s has no area", name);
        return -1;
    }
    double kx = bs->normalized ? f->width : 1, ky = bs->normalized ? f->height : 1;
    x0 *= kx, x1 *= kx, y0 *= ky, y1 *= ky;
    if (!clamp_span(&x0, &x1, f->width) || !clamp_span(&y0, &y1, f->height)) {
        snprintf(err, errlen, "%s has no area inside the %d×%d image", name, f->width, f->height);
        return -1;
    }
    double bx0 = f->ox + x0 * f->sx, bx1 = f->ox + x1 * f->sx, by0 = f->oy + y0 * f->sy, by1 = f->oy + y1 * f->sy;
    if (!clamp_span(&bx0, &bx1, f->base_w) || !clamp_span(&by0, &by1, f->base_h)) {
        snprintf(err, errlen, "%s lies in the padding of the %d×%d image, outside the picture", name, f->width,
                 f->height);
        return -1;
    }
    struct prep_rect r;
    outwards(bx0, bx1, f->base_w, &r.x, &r.w);
    outwards(by0, by1, f->base_h, &r.y, &r.h);
    *out = prep_orient_rect(f->orientation, f->base_w, f->base_h, r);
    return 0;
}
