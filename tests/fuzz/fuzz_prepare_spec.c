/* libFuzzer target: a stage's "image" spec and a crop stage's "box" and "normalized"
 * (src/prepare/spec.c, box.c), and the geometry they drive. The input is JSON:
 *
 *   {"image": SPEC, "input": CROP_INPUT, "base": [W, H, ORIENTATION], "boxes": [[a, b, c, d], ...]}
 *
 * (missing members take defaults; an input that is no such object is tried as a spec alone). What
 * must hold: a spec that parses has a canonical text that parses back into an equal spec; its
 * layout of a W x H image keeps inside it and gives the output the spec's size; every box that
 * maps lands inside the upright original, with area; every refusal says why. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "prepare/box.h"
#include "prepare/spec.h"

static void check_spec(const struct prep_spec *s)
{
    char text[PREP_SPEC_TEXT_MAX], err[400];
    size_t n = prep_spec_text(s, text, sizeof text);
    if (n != strlen(text) || n + 1 >= sizeof text)
        abort();
    cJSON *back = cJSON_Parse(text);
    struct prep_spec again;
    if (!back || prep_spec_parse(back, &again, err, sizeof err) || !prep_spec_equal(s, &again))
        abort(); /* the canonical text is a spec, and the same one */
    cJSON_Delete(back);
}

static int whole(const cJSON *a, int i, int lo, int hi, int dflt)
{
    const cJSON *v = cJSON_GetArrayItem(a, i);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return dflt;
    double d = fabs(fmod(v->valuedouble, (double)(hi - lo + 1)));
    return lo + (int)d;
}

static void check_layout(const struct prep_spec *s, int bw, int bh, struct prep_layout *l)
{
    prep_layout_of(s, bw, bh, l);
    if (l->content_w < 1 || l->content_h < 1 || l->dx < 0 || l->dy < 0 || l->dx + l->content_w > l->out_w ||
        l->dy + l->content_h > l->out_h || l->rx < 0 || l->ry < 0 || l->rw < 1 || l->rh < 1 ||
        l->rx + l->rw > bw + 1e-9 || l->ry + l->rh > bh + 1e-9)
        abort();
    if (s->resize == PREP_RESIZE_MAX_SIDE &&
        (l->out_w > s->width || l->out_h > s->height || l->out_w > bw || l->out_h > bh))
        abort(); /* never larger than asked, never enlarged */
    if (s->resize >= PREP_RESIZE_FILL && (l->out_w != s->width || l->out_h != s->height))
        abort();
}

static void check_boxes(const struct prep_box_spec *bs, const cJSON *boxes, const struct prep_frame *f)
{
    int uw, uh, i = 0;
    prep_orient_size(f->orientation, f->base_w, f->base_h, &uw, &uh);
    for (const cJSON *b = boxes ? boxes->child : NULL; b && i < 64; b = b->next, i++) {
        double v[4];
        for (int k = 0; k < 4; k++) {
            const cJSON *x = cJSON_GetArrayItem(b, k);
            v[k] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        }
        struct prep_rect r;
        char err[400] = "";
        if (prep_box_map(bs, v, f, i, &r, err, sizeof err) == 0) {
            if (r.w < 1 || r.h < 1 || r.x < 0 || r.y < 0 || r.x + r.w > uw || r.y + r.h > uh)
                abort();
            struct prep_rect back = prep_unorient_rect(f->orientation, f->base_w, f->base_h, r);
            if (back.x < 0 || back.y < 0 || back.x + back.w > f->base_w || back.y + back.h > f->base_h)
                abort();
        } else if (!err[0]) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (!j)
        return 0;
    const cJSON *image = cJSON_GetObjectItemCaseSensitive(j, "image");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(j, "input");
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(j, "base");
    struct prep_spec s;
    struct prep_box_spec bs = {PREP_BOX_XYWH, 0};
    char err[400] = "";
    int ok = prep_spec_parse(image ? image : j, &s, err, sizeof err) == 0;
    if (!ok && !err[0])
        abort();
    err[0] = 0;
    if (input && prep_box_parse(input, &bs, err, sizeof err) && !err[0])
        abort();
    if (ok) {
        check_spec(&s);
        int bw = whole(base, 0, 1, 20000, 4000), bh = whole(base, 1, 1, 20000, 3000), o = whole(base, 2, 1, 8, 1);
        struct prep_layout l;
        struct prep_frame f;
        check_layout(&s, bw, bh, &l);
        prep_layout_frame(&l, bw, bh, o, &f);
        check_boxes(&bs, cJSON_GetObjectItemCaseSensitive(j, "boxes"), &f);
    }
    cJSON_Delete(j);
    return 0;
}
