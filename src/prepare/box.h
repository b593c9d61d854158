/* box: the geometry of crops. A crop stage's input is
 *
 *   {"each": "detect", "crop": ".boxes[]", "box": "xywh", "normalized": false}
 *
 * "each" and "crop" (the stage whose result holds the boxes and the expression that yields
 * them, four numbers a box) are the pipeline's; this module reads "box" and "normalized":
 *
 *   "box"         how the four numbers are laid out: "xywh" (the default: left, top, width,
 *                 height), "xyxy" (left, top, right, bottom) or "cxcywh" (centre x, centre y,
 *                 width, height)
 *   "normalized"  false (the default): in pixels; true: fractions 0-1 of the width and height
 *
 * The numbers are in the pixels of the image the detecting stage received: the image after that
 * stage's own preparation (its "image"), whose geometry a prep_frame describes. prep_box_map
 * turns one box into a rectangle of whole pixels of the full-size upright original, where the
 * crop is cut. A box partly outside the received image, or outside the original, is clamped to
 * it; a box with no area left (or given with none: a zero or negative width or height, a
 * right edge left of its left one) is refused, with a reason naming the box. Edges are rounded
 * outwards, so a box covers every pixel it touches.
 *
 * Coordinates are continuous: pixel (x, y) covers [x, x + 1) x [y, y + 1), and a box from 0 to
 * the width covers the whole row. No libvips here (prepare.c does the cutting). */
#ifndef ANNOTATE_PREP_BOX_H
#define ANNOTATE_PREP_BOX_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "prepare/spec.h"

enum prep_box_format { PREP_BOX_XYWH = 0, PREP_BOX_XYXY, PREP_BOX_CXCYWH };

struct prep_box_spec {
    enum prep_box_format format;
    int normalized; /* 0 or 1 */
};

/* Reads "box" and "normalized" of a crop stage's "input" object (both optional; other keys are
 * left to the caller). Returns 0, or -1 with err, as "\"input\": \"box\" must be ...". */
int prep_box_parse(const cJSON *input, struct prep_box_spec *out, char *err, size_t errlen);

/* "xywh", "xyxy" or "cxcywh". */
const char *prep_box_format_name(enum prep_box_format f);

/* A rectangle of whole pixels. */
struct prep_rect {
    int x, y, w, h;
};

/* Where the pixels of an image a stage received come from. The received image (width x height)
 * was made from a full-size "base" image (base_w x base_h): the upright original when the stage's
 * preparation turned it upright, else the pixels as the file stores them. A received pixel
 * coordinate x maps to base coordinate ox + x * sx (y likewise), which covers sizing, the cut of
 * "cover" and the padding of "contain". The upright original is the base turned by the EXIF
 * orientation `orientation` (1 when the base is upright already). */
struct prep_frame {
    int width, height;
    int base_w, base_h;
    int orientation;     /* 1-8 */
    double sx, sy, ox, oy;
};

/* The frame of a file sent as it is stored (a stage without "image"): the stored pixels, w x h,
 * and the file's EXIF orientation (1-8; anything else counts as 1). */
void prep_frame_stored(struct prep_frame *f, int w, int h, int orientation);

/* Maps box number `index` (for the message), v[0..4) as the spec lays it out, through frame f
 * into the upright original. Returns 0 with *out, or -1 with err, e.g.
 * "box 2 [1200, 50, 80, 40] (xywh) has no area inside the 1024x768 image". */
int prep_box_map(const struct prep_box_spec *bs, const double v[4], const struct prep_frame *f, int index,
                 struct prep_rect *out, char *err, size_t errlen);

/* How a spec sizes a base image of base_w x base_h: the region of the base that is kept (all of
 * it; for "cover", the middle part of the output's aspect), the size that region is scaled to,
 * and where it lands in the output image (at dx, dy: "contain" pads around it). The region is in
 * base pixels; prepare.c may move its edges by a fraction of a pixel when it decodes at a
 * reduced scale, and the frame then follows the region it really used. */
struct prep_layout {
    double rx, ry, rw, rh;
    int content_w, content_h;
    int out_w, out_h;
    int dx, dy;
};

void prep_layout_of(const struct prep_spec *s, int base_w, int base_h, struct prep_layout *out);

/* The frame of the image a layout makes (width x height = out_w x out_h). */
void prep_layout_frame(const struct prep_layout *l, int base_w, int base_h, int orientation, struct prep_frame *f);

/* EXIF orientation: the stored pixels (w x h) shown upright. prep_orient_size gives the upright
 * size; prep_orient_rect maps a rectangle of the stored pixels into the upright image, and
 * prep_unorient_rect one of the upright image (of the upright size) back into the stored
 * pixels. An orientation outside 1-8 counts as 1. */
void prep_orient_size(int orientation, int w, int h, int *uw, int *uh);
struct prep_rect prep_orient_rect(int orientation, int w, int h, struct prep_rect r);
struct prep_rect prep_unorient_rect(int orientation, int w, int h, struct prep_rect r);

/* The same on an area of fractional pixels, in[4] = x, y, width, height, into out[4]: the stored
 * image (w x h) to the upright one, or back (back = 1) from the upright one to the stored pixels
 * (w and h are still the stored size). */
void prep_orient_area(int orientation, int w, int h, int back, const double in[4], double out[4]);

#endif
