/* chain: see chain.h. The state machine: which stages of an item can start, which are skipped,
 * and the requests they make (one for an image stage, one per element for an "each" stage).
 * A request's life is in request.c, reading an answer in answer.c, batches in batch.c, bodies in
 * body.c. */
#include "chain/chain_int.h"

#include "common/b64.h"
#include "common/mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int chain_truthy(const cJSON *v)
{
    if (cJSON_IsRaw(v)) {
        /* The exact bytes of a checked JSON value, read without parsing (a parse that ran out of
         * memory used to read as falsy and skip stages of an ok row). */
        const char *t = v->valuestring ? v->valuestring : "null";
        t += strspn(t, " \t\r\n");
        if (*t == '[' || *t == '{')
            return t[1 + strspn(t + 1, " \t\r\n")] != (*t == '[' ? ']' : '}');
        if (*t == '"')
            return t[1] != '"';
        if (*t == '-' || (*t >= '0' && *t <= '9'))
            return strtod(t, NULL) != 0;
        return *t == 't'; /* true; null and false are falsy */
    }
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v) || cJSON_IsInvalid(v))
        return 0;
    if (cJSON_IsNumber(v))
        return v->valuedouble != 0;
    if (cJSON_IsString(v))
        return v->valuestring && v->valuestring[0];
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return v->child != NULL;
    return 1;
}

/* The element's decoded bytes, for a body that sends bytes or the type of an "each" element
 * (which is base64 text). Returns 0, or -1 with the item failed. */
static int decode_element(struct chain_req *r, const struct stage *st, const char *el, size_t n, int whole)
{
    size_t take = whole ? n : (n < 16 ? n & ~(size_t)3 : 16);
    if (!(r->el_bytes = malloc(b64_decoded_max(take) + 1)))
        return item_fail(r->it, "%s[%d]: out of memory", st->name, r->index), -1;
    if (b64_decode(el, take, r->el_bytes, &r->el_bytes_len) && whole)
        return item_fail_final(r->it, "%s[%d]: the element is not base64, so its bytes cannot be sent", st->name, r->index), -1;
    return 0;
}

/* What an image stage's body is filled from: the image's base64 and bytes (the stage's prepared
 * copy when it has "image", else the file's), its type, size and path. */
static struct fill_src image_source(struct item *it, const struct stage *st, int index)
{
    const char *slash = strrchr(it->path, '/');
    struct fill_src src = {.b64 = it->b64, .b64_len = it->b64_len, .b64_ours = 1, .bytes = it->raw,
                           .bytes_len = it->raw_len, .mime = it->mime ? it->mime : "application/octet-stream",
                           .width = it->stored_w, .height = it->stored_h, .path = it->path,
                           .path_len = it->path_len, .name = slash ? slash + 1 : it->path, .index = index,
                           .results = (const cJSON *const *)it->results};
    if (st->input == INPUT_IMAGE && st->spec >= 0 && st->spec < it->n_copies) {
        const struct item_copy *c = &it->copies[st->spec];
        src.b64 = c->b64;
        src.b64_len = c->b64_len;
        src.bytes = c->raw;
        src.bytes_len = c->raw_len;
        src.mime = c->mime;
        src.width = c->width;
        src.height = c->height;
    }
    return src;
}

/* A crop's body is filled from the crop (prepared bytes, owned by r from now on: r->el_bytes)
 * and its base64 (r->el) when the body sends it. 0, or -1 with the item failed. */
static int crop_source(struct chain_req *r, const struct stage *st, struct prep_result *crop, struct fill_src *src)
{
    if (!(r->el_bytes = malloc(crop->len ? crop->len : 1)))
        return item_fail(r->it, "%s[%d]: out of memory", st->name, r->index), -1;
    memcpy(r->el_bytes, crop->data, crop->len);
    r->el_bytes_len = crop->len;
    if ((st->body.needs & NEED_B64) && !(r->el = malloc(b64_encoded_len(crop->len) + 1)))
        return item_fail(r->it, "%s[%d]: out of memory", st->name, r->index), -1;
    src->b64 = r->el;
    src->b64_len = r->el ? b64_encode(r->el_bytes, r->el_bytes_len, r->el) : 0;
    src->bytes = r->el_bytes;
    src->bytes_len = r->el_bytes_len;
    src->mime = crop->mime;
    src->width = crop->width;
    src->height = crop->height;
    return 0;
}

/* An "each" stage's body is filled from element el (n bytes, the text of an answer's string) in
 * place of the image: kept as r's own copy (the answer's tree is gone once the requests are
 * made), decoded when the body sends bytes, and typed by its bytes. 0, or -1 with the item
 * failed. */
static int element_source(struct chain_req *r, const struct stage *st, const char *el, size_t n, struct fill_src *src)
{
    if (!(r->el = malloc(n + 1))) {
        item_fail(r->it, "%s[%d]: out of memory", st->name, r->index);
        return -1;
    }
    memcpy(r->el, el, n);
    r->el[n] = 0;
    src->b64 = r->el;
    src->b64_len = n;
    src->b64_ours = 0;
    int bytes = (st->body.needs & NEED_BYTES) != 0;
    if (decode_element(r, st, el, n, bytes))
        return -1;
    src->mime = mime_of(r->el_bytes, r->el_bytes_len < MIME_HEAD ? r->el_bytes_len : MIME_HEAD, NULL);
    src->bytes = r->el_bytes;
    src->bytes_len = bytes ? r->el_bytes_len : 0;
    return 0;
}

/* Fills r's body (or each part of its form) from src. 0, or -1 with why. */
static int fill_body(struct chain_req *r, const struct stage *st, const struct fill_src *src, char *why, size_t len)
{
    if (st->body.kind != BODY_FORM)
        return tmpl_fill(&st->body.t, src, &r->body, why, len);
    if (!(r->parts = calloc((size_t)st->body.n_parts, sizeof *r->parts))) {
        snprintf(why, len, "out of memory");
        return -1;
    }
    r->n_parts = st->body.n_parts;
    for (int k = 0; k < st->body.n_parts; k++) {
        const struct form_part *fp = &st->body.parts[k];
        struct tseg seg = {.kind = T_BYTES, .ctx = C_RAW};
        struct tmpl file = {&seg, 1, 1};
        if (tmpl_fill(fp->file ? &file : &fp->value, src, &r->parts[k], why, len))
            return -1;
    }
    return 0;
}

/* A new request of stage s: its body filled from the image, from element el (n bytes) of an
 * "each" stage, or from a crop. NULL when it cannot be made; the item has failed, with why. */
static struct chain_req *new_req(const struct run *run, struct item *it, int s, int index, const char *el, size_t n,
                                 struct prep_result *crop)
{
    const struct stage *st = &run->p->stages[s];
    struct chain_req *r = calloc(1, sizeof *r);
    if (!r) {
        item_fail(it, "%s: out of memory", st->name);
        return NULL;
    }
    r->it = it;
    r->stage = s;
    r->index = index;
    r->rng = (it->seq + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)s << 32 | (uint32_t)index);
    ticket_init(&r->tk, s, (it->seq + 1) << 24 ^ (uint64_t)s << 16 ^ (uint64_t)(index + 1), r->rng ^ 0xD1B54A32D192ED03ull);
    struct fill_src src = image_source(it, st, index);
    if ((crop ? crop_source(r, st, crop, &src) : st->input == INPUT_EACH ? element_source(r, st, el, n, &src) : 0)) {
        chain_req_free(r);
        return NULL;
    }
    r->mime = src.mime;
    char why[200];
    if (fill_body(r, st, &src, why, sizeof why)) {
        void (*fail)(struct item *, const char *, ...) = strstr(why, "out of memory") ? item_fail : item_fail_final;
        if (st->input == INPUT_EACH)
            fail(it, "%s[%d]: %s", st->name, index, why);
        else
            fail(it, "%s: %s", st->name, why);
        chain_req_free(r);
        return NULL;
    }
    it->outstanding[s]++;
    it->in_flight++;
    return r;
}

/* The value of a result as a tree (results are kept as the text the server sent). NULL when
 * out of memory. The caller deletes it. */
static cJSON *tree_of(const cJSON *r)
{
    if (cJSON_IsRaw(r))
        return cJSON_Parse(r->valuestring);
    char *t = cJSON_PrintUnformatted(r);
    cJSON *v = t ? cJSON_Parse(t) : NULL;
    free(t);
    return v;
}

/* The text of a result, for an expression (results are kept as the text the server sent).
 * *owned is set when it had to be made. NULL when out of memory. */
static const char *text_of(const cJSON *r, char **owned)
{
    *owned = NULL;
    if (cJSON_IsRaw(r))
        return r->valuestring;
    return *owned = r ? cJSON_PrintUnformatted(r) : strdup("null");
}

/* The elements of "each" stage s: a list of malloc'd strings, from "items" or from
 * result[array][i][field]. Returns their number, or -1 with the item failed. */
struct elements {
    char **s;
    size_t *len;
    int n, cap;
    int bad; /* 1: an element that is not a string; 2: out of memory */
};

static int add_element(void *arg, const char *text, size_t len)
{
    struct elements *e = arg;
    cJSON *v = cJSON_ParseWithLength(text, len);
    const char *str = cJSON_GetStringValue(v);
    int rc = 0;
    if (!str) {
        rc = 1;
    } else {
        if (e->n == e->cap) {
            int cap = e->cap ? e->cap * 2 : 8;
            char **ns = realloc(e->s, (size_t)cap * sizeof *ns);
            size_t *nl = ns ? realloc(e->len, (size_t)cap * sizeof *nl) : NULL;
            if (ns)
                e->s = ns;
            if (nl)
                e->len = nl;
            if (!ns || !nl)
                rc = 2;
            else
                e->cap = cap;
        }
        if (!rc) {
            size_t l = strlen(str); /* a string holding \u0000 stops there; base64 never does */
            if ((e->s[e->n] = malloc(l + 1))) {
                memcpy(e->s[e->n], str, l + 1);
                e->len[e->n++] = l;
            } else {
                rc = 2;
            }
        }
    }
    cJSON_Delete(v);
    e->bad = rc;
    return rc;
}

/* The elements of "each" stage s by its "items" expression on the source stage's result. 0, or -1
 * with the item failed. */
static int elements_by_items(struct item *it, const struct stage *st, const struct stage *src, struct elements *el)
{
    char *owned, why[300];
    const char *text = text_of(it->results[st->each_stage], &owned);
    int got = text ? expr_run(&st->items, text, strlen(text), add_element, el, why, sizeof why) : -1;
    free(owned);
    if (got >= 0)
        return 0;
    if (!text || el->bad == 2)
        item_fail(it, "%s: out of memory", st->name);
    else if (el->bad == 1)
        item_fail_final(it, "%s: element %d of \"items\" (%s) on %s's result is not a string", st->name, el->n,
                  st->items.text, src->name);
    else
        item_fail_final(it, "%s: \"items\" on %s's result: %s", st->name, src->name, why);
    return -1;
}

/* The elements of "each" stage s as result[array][i][field] of the source stage. 0, or -1 with
 * the item failed. */
static int elements_by_field(struct item *it, const struct stage *st, const struct stage *src, struct elements *el)
{
    cJSON *tree = tree_of(it->results[st->each_stage]);
    const cJSON *arr = cJSON_IsObject(tree) ? cJSON_GetObjectItemCaseSensitive(tree, st->each_array) : NULL;
    int i = 0, r = 0;
    if (!cJSON_IsArray(arr))
        item_fail_final(it, "%s: %s's result has no array \"%s\"", st->name, src->name, st->each_array);
    for (const cJSON *e = cJSON_IsArray(arr) ? arr->child : NULL; e && !r; e = e->next, i++) {
        const cJSON *f = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, st->each_field) : NULL;
        char *t = cJSON_IsString(f) ? cJSON_PrintUnformatted(f) : NULL;
        r = !f || !cJSON_IsString(f) ? 1 : !t ? 2 : add_element(el, t, strlen(t));
        free(t);
        if (r == 1)
            item_fail_final(it, "%s: element %d of %s's \"%s\" has no string \"%s\"", st->name, i, src->name,
                      st->each_array, st->each_field);
        else if (r)
            item_fail(it, "%s: out of memory", st->name);
    }
    int ok = cJSON_IsArray(arr) && !r; /* (arr is inside tree) */
    cJSON_Delete(tree);
    return ok ? 0 : -1;
}

/* Stage s's result before its answers: one null per element, each filled in as its answer
 * comes back. 0, or -1 when out of memory. */
static int element_slots(struct item *it, int s, int count)
{
    it->results[s] = chain_null_list(count);
    return it->results[s] ? 0 : -1;
}

/* "each" stage s: one request per element, added at *tail. Returns their number, or -1 with the
 * item failed. */
static int each_requests(const struct run *run, struct item *it, int s, struct chain_req ***tail)
{
    const struct pipeline *p = run->p;
    const struct stage *st = &p->stages[s], *src = &p->stages[st->each_stage];
    struct elements el = {0};
    int n = -1;
    if ((st->items.text ? elements_by_items : elements_by_field)(it, st, src, &el))
        goto out;
    if (element_slots(it, s, el.n)) {
        item_fail(it, "%s: out of memory", st->name);
        chain_set_state(it, s, ST_FAILED);
        goto out;
    }
    if (el.n)
        chain_set_state(it, s, ST_RUNNING);
    for (int i = 0; i < el.n; i++) {
        if (!(**tail = new_req(run, it, s, i, el.s[i], el.len[i], NULL))) {
            if (it->outstanding[s] == 0)
                chain_set_state(it, s, ST_FAILED);
            goto out;
        }
        *tail = &(**tail)->next;
    }
    n = el.n;
out:
    for (int i = 0; i < el.n; i++)
        free(el.s[i]);
    free(el.s);
    free(el.len);
    return n;
}

/* ---- crops ---- */

/* The boxes a crop stage's "crop" expression yields: four numbers each. */
struct boxes {
    double (*v)[4];
    int n, cap;
    int bad; /* 1: an output that is not four numbers; 2: out of memory */
};

static int add_box(void *arg, const char *text, size_t len)
{
    struct boxes *b = arg;
    cJSON *v = cJSON_ParseWithLength(text, len);
    int ok = cJSON_IsArray(v) && cJSON_GetArraySize(v) == 4;
    for (const cJSON *e = ok ? v->child : NULL; e; e = e->next)
        ok &= cJSON_IsNumber(e);
    if (ok && b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 8;
        double(*nv)[4] = realloc(b->v, (size_t)cap * sizeof *nv);
        if (nv) {
            b->v = nv;
            b->cap = cap;
        }
    }
    b->bad = !ok ? 1 : b->n == b->cap ? 2 : 0;
    for (int k = 0; !b->bad && k < 4; k++)
        b->v[b->n][k] = cJSON_GetArrayItem(v, k)->valuedouble;
    b->n += !b->bad;
    cJSON_Delete(v);
    return b->bad;
}

/* Where the pixels of the image the source stage received come from: its prepared copy's frame,
 * or the file's pixels as stored. */
static struct prep_frame received_frame(const struct item *it, const struct stage *src)
{
    struct prep_frame f;
    if (src->spec >= 0 && src->spec < it->n_copies)
        return it->copies[src->spec].frame;
    prep_frame_stored(&f, it->stored_w, it->stored_h, it->orientation);
    return f;
}

/* The rectangles of the upright original that crop stage s cuts, into c. 0, or -1 with the item
 * failed (the expression failed, or a box is refused: the reason names it). */
static int crop_rects(struct item *it, const struct stage *st, const struct stage *src, struct chain_cut *c)
{
    struct boxes b = {0};
    char *owned, why[400];
    const char *text = text_of(it->results[st->each_stage], &owned);
    int got = text ? expr_run(&st->crop_expr, text, strlen(text), add_box, &b, why, sizeof why) : -1;
    free(owned);
    if (got < 0 && (!text || b.bad == 2))
        item_fail(it, "%s: out of memory", st->name);
    else if (got < 0 && b.bad == 1)
        item_fail_final(it, "%s: box %d of \"crop\" (%s) on %s's result is not four numbers", st->name, b.n,
                  st->crop_expr.text, src->name);
    else if (got < 0)
        item_fail_final(it, "%s: \"crop\" on %s's result: %s", st->name, src->name, why);
    c->n = got < 0 ? 0 : b.n;
    if (got >= 0 && b.n && !(c->rects = calloc((size_t)b.n, sizeof *c->rects))) {
        item_fail(it, "%s: out of memory", st->name);
        got = -1;
    }
    struct prep_frame f = received_frame(it, src);
    for (int i = 0; got >= 0 && i < b.n; i++)
        if (prep_box_map(&st->box, b.v[i], &f, i, &c->rects[i], why, sizeof why)) {
            item_fail_final(it, "%s: %s", st->name, why);
            got = -1;
        }
    free(b.v);
    return got < 0 ? -1 : 0;
}

/* Crop stage s: its boxes, mapped to the upright original, as one cut (chain.h) added at *tail.
 * Returns 1 (a cut in flight), 0 when there is no box (the stage is done with an empty list), or
 * -1 with the item failed. */
static int crop_cut(const struct run *run, struct item *it, int s, struct chain_req ***tail)
{
    const struct stage *st = &run->p->stages[s];
    struct chain_cut *c = calloc(1, sizeof *c);
    struct chain_req *r = c ? calloc(1, sizeof *r) : NULL;
    if (!r || !it->raw) {
        item_fail(it, "%s: %s", st->name, r ? "the image was not loaded" : "out of memory");
        free(c);
        free(r);
        return -1;
    }
    r->cut = c;
    if (crop_rects(it, st, &run->p->stages[st->each_stage], c) || element_slots(it, s, c->n)) {
        item_fail(it, "%s: out of memory", st->name); /* (unless it failed already, with why) */
        chain_req_free(r);
        return -1;
    }
    if (c->n == 0) {
        chain_req_free(r);
        return 0;
    }
    *c = (struct chain_cut){.bytes = it->raw, .len = it->raw_len, .spec = st->has_image ? &st->image : NULL,
                            .max_pixels = run->cfg->max_pixels, .n = c->n, .rects = c->rects};
    r->it = it;
    r->stage = s;
    it->outstanding[s]++;
    it->in_flight++;
    it->cutting++;
    chain_set_state(it, s, ST_RUNNING);
    **tail = r;
    *tail = &r->next;
    return 1;
}

void chain_cut_run(const struct run *run, struct chain_req *req)
{
    (void)run;
    struct chain_cut *c = req->cut;
    struct prep_source *src = NULL;
    if (!(c->out = calloc((size_t)c->n, sizeof *c->out))) {
        c->failed = 1;
        snprintf(c->err, sizeof c->err, "out of memory");
        return;
    }
    if (prep_source_open(c->bytes, c->len, c->max_pixels, &src, c->err, sizeof c->err)) {
        c->failed = 1;
        return;
    }
    for (int i = 0; i < c->n && !c->failed; i++) {
        char why[700];
        if (prep_crop(src, c->rects[i], c->spec, &c->out[i], why, sizeof why)) {
            c->failed = 1;
            snprintf(c->err, sizeof c->err, "box %d: %s", i, why);
        }
    }
    prep_source_free(src);
}

struct chain_req *chain_cut_done(const struct run *run, struct chain_req *req)
{
    struct item *it = req->it;
    int s = req->stage;
    const struct stage *st = &run->p->stages[s];
    struct chain_req *head = NULL, **tail = &head;
    it->outstanding[s]--;
    it->in_flight--;
    it->cutting--;
    if (req->cut->failed) /* the file does not decode: the other stages go on */
        item_stage_fail(it, s, 0, 1, "%s: %s", st->name, req->cut->err);
    for (int i = 0; i < req->cut->n && it->status != ITEM_FAILED && !req->cut->failed; i++) {
        if (!(*tail = new_req(run, it, s, i, NULL, 0, &req->cut->out[i])))
            break;
        tail = &(*tail)->next;
    }
    if ((it->status == ITEM_FAILED || req->cut->failed) && it->outstanding[s] == 0) {
        cJSON_Delete(it->results[s]);
        it->results[s] = NULL;
        chain_set_state(it, s, ST_FAILED);
    }
    chain_req_free(req);
    chain_release(run->p, it);
    return head;
}

static int first_truthy(void *arg, const char *text, size_t len)
{
    *(int *)arg = expr_text_truthy(text, len);
    return 1; /* the first output decides */
}

/* A jq "when": run on {"STAGE": result, ...} of the stages it names. Returns 1 (run the stage),
 * 0 (skip it) or -1 (the expression failed: the item has failed). */
static int when_holds(const struct pipeline *p, struct item *it, int s)
{
    const struct stage *st = &p->stages[s];
    size_t len, cap = 256;
    char *in = malloc(cap), why[300];
    int first = 1, truth = 0;
    if (!in)
        goto oom;
    strcpy(in, "{");
    len = 1;
    for (int d = 0; d < s; d++) {
        if (!(st->when_mask >> d & 1))
            continue;
        char *owned;
        const char *t = text_of(it->results[d], &owned);
        if (!t)
            goto oom;
        size_t need = len + strlen(p->stages[d].name) + strlen(t) + 8;
        if (need > cap) {
            while (need > cap)
                cap *= 2;
            char *ni = realloc(in, cap);
            if (!ni) {
                free(owned);
                goto oom;
            }
            in = ni;
        }
        len += (size_t)sprintf(in + len, "%s\"%s\":%s", first ? "" : ",", p->stages[d].name, t);
        first = 0;
        free(owned);
    }
    strcpy(in + len, "}");
    len++;
    int n = expr_run(&st->when, in, len, first_truthy, &truth, why, sizeof why);
    free(in);
    if (n < 0 && strncmp(why, "jq: ", 4) == 0) {
        item_fail_final(it, "%s: \"when\": %s", st->name, why);
        return -1;
    }
    return n != 0 && truth;
oom:
    free(in);
    item_fail(it, "%s: out of memory", st->name);
    return -1;
}

/* Where a waiting stage stands. */
enum readiness {
    NOT_YET, /* a stage it refers to has not finished */
    SKIP,    /* one it refers to was skipped, or its "when" does not hold */
    START,   /* it can start */
    BROKEN   /* its jq "when" failed: the item has failed */
};

static enum readiness readiness(const struct pipeline *p, struct item *it, int s)
{
    const struct stage *st = &p->stages[s];
    int ready = 1;
    for (int d = 0; d < s; d++) {
        if (!(st->dep_mask >> d & 1))
            continue;
        if (it->state[d] == ST_SKIPPED || it->state[d] == ST_FAILED)
            return SKIP; /* (a failed stage fails the row once the others are settled) */
        if (it->state[d] != ST_DONE)
            ready = 0;
        else if ((st->when_mask >> d & 1) && !st->when.text && !chain_truthy(it->results[d]))
            return SKIP;
    }
    if (!ready)
        return NOT_YET;
    if (st->when.text) {
        int w = when_holds(p, it, s);
        return w < 0 ? BROKEN : w ? START : SKIP;
    }
    return START;
}

/* Starts stage s: its requests are added at *tail. Returns 1 when it has requests in flight, 0
 * when it is done at once (an "each" stage with no element), -1 when the item has failed. */
static int start_stage(const struct run *run, struct item *it, int s, struct chain_req ***tail)
{
    const struct stage *st = &run->p->stages[s];
    if (st->input == INPUT_EACH) { /* one request per element of the source's array, or per box */
        int n = st->crop ? crop_cut(run, it, s, tail) : each_requests(run, it, s, tail);
        if (n == 0)
            chain_set_state(it, s, ST_DONE); /* later stages, which may depend on it, come next */
        return n < 0 ? -1 : n > 0;
    }
    struct fill_src have = image_source(it, st, 0);
    if (((st->body.needs & NEED_B64) && !have.b64) || ((st->body.needs & NEED_BYTES) && !have.bytes)) {
        item_fail(it, "%s: the image was not loaded", st->name);
        return -1;
    }
    chain_set_state(it, s, ST_RUNNING);
    if (!(**tail = new_req(run, it, s, 0, NULL, 0, NULL))) {
        chain_set_state(it, s, ST_FAILED);
        return -1;
    }
    *tail = &(**tail)->next;
    return 1;
}

/* Puts the members of a split batch (it->requeue), each to go in a batch of its own, at the head
 * of the list chain_next returns; returns where the list goes on. */
static struct chain_req **requeued(struct item *it, struct chain_req **head)
{
    struct chain_req **tail;
    *head = it->requeue;
    it->requeue = NULL;
    for (tail = head; *tail; tail = &(*tail)->next)
        ;
    return tail;
}

/* Stage s could not start: the item failed (item_fail) as it tried, because of what s needs (its
 * source's answer has no list of elements, its "when" failed, a body could not be filled) or for
 * want of memory. Unless the item gets no row, that is the stage's failure, as a request's is
 * (settle.c): the other stages go on. Returns 1 when the item has failed as a whole. */
static int could_not_start(struct item *it, int s)
{
    if (it->status != ITEM_FAILED || it->no_row)
        return it->status == ITEM_FAILED;
    char *why = it->error;
    it->error = NULL;
    it->status = ITEM_PENDING;
    item_stage_fail(it, s, 0, it->fail_final, "%s", why ? why : "out of memory (the reason could not be kept)");
    it->fail_final = 0;
    free(why);
    cJSON_Delete(it->results[s]);
    cJSON_Delete(it->cells[s]);
    it->results[s] = it->cells[s] = NULL;
    chain_set_state(it, s, ST_FAILED);
    return it->status == ITEM_FAILED; /* (out of memory for the reason) */
}

/* Settles the stages that can be settled without a request, and starts the ones whose inputs are
 * ready. Returns the new requests. */
struct chain_req *chain_next(const struct run *run, struct item *it)
{
    const struct pipeline *p = run->p;
    struct chain_req *head, **tail = requeued(it, &head);
    if (it->status == ITEM_FAILED)
        return head;
    int settled = 1;
    for (int s = 0; s < p->n; s++) {
        if (it->state[s] != ST_WAITING) {
            settled &= it->state[s] != ST_RUNNING;
            continue;
        }
        switch (readiness(p, it, s)) {
        case BROKEN:
            if (could_not_start(it, s))
                return head;
            continue;
        case SKIP: /* stages are in dependency order, so later stages see this at once */
            chain_set_state(it, s, ST_SKIPPED);
            continue;
        case NOT_YET:
            settled = 0;
            continue;
        case START:
            break;
        }
        int r = start_stage(run, it, s, &tail);
        if (r < 0 && could_not_start(it, s))
            return head;
        settled &= r <= 0; /* (one that could not start has failed) */
    }
    if (settled && it->in_flight == 0 && it->status == ITEM_PENDING && !item_settle_fails(it))
        it->status = ITEM_OK;
    if (!head && chain_finished(it))
        item_drop_payload(it);
    else
        chain_release(p, it); /* stages skipped just now may have been the last to need a copy */
    return head;
}

int chain_finished(const struct item *it)
{
    return it->in_flight == 0 && it->status != ITEM_PENDING;
}

/* The only output of an expression, kept as text. */
