/* request: the strict and the trusting reading of a model request (see request.h). */
#include "mock/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cjson/cJSON.h>

#include "common/b64.h"
#include "mock/answers.h"

int mock_buf_reserve(struct mock_buf *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < n)
        cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    /* free + malloc, not realloc: the old contents are never needed, so do not copy them. */
    free(b->p);
    b->p = malloc(cap);
    b->cap = b->p ? cap : 0;
    return b->p ? 0 : -1;
}

void mock_buf_release(struct mock_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->cap = 0;
}

static int only_space(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return 0;
    return 1;
}

/* An element's keys: NULL when it is an object holding exactly "im_str" (a string) and
 * "model_03". */
static const char *check_element(const cJSON *obj, const cJSON **im, const cJSON **m03)
{
    if (!cJSON_IsObject(obj))
        return "the array element must be an object";
    *im = *m03 = NULL;
    for (const cJSON *it = obj->child; it; it = it->next) {
        const cJSON **slot = !strcmp(it->string, "im_str") ? im
                           : !strcmp(it->string, "model_03") ? m03 : NULL;
        if (!slot)
            return "unexpected key in the object; only \"im_str\" and \"model_03\" are allowed";
        if (*slot)
            return "duplicate key in the object";
        *slot = it;
    }
    if (!*im)
        return "missing \"im_str\"";
    if (!cJSON_IsString(*im))
        return "\"im_str\" must be a string";
    if (!*m03)
        return "missing \"model_03\" (send null when there is none)";
    return NULL;
}

/* The array itself: NULL when it holds 1 .. max_items elements (max_items 0: any number). */
static const char *check_array(const cJSON *doc, size_t n, size_t max_items, char *why)
{
    if (max_items == 1) { /* the seed's one-image endpoints, worded as before batches */
        if (!cJSON_IsArray(doc))
            return "body must be a JSON array of one object";
        if (n == 0)
            return "body is an empty array; it must hold one object";
        if (n > 1)
            return "body holds more than one object; send one image per request";
        return NULL;
    }
    if (!cJSON_IsArray(doc))
        return "body must be a JSON array of objects";
    if (n == 0)
        return "body is an empty array; it must hold at least one object";
    if (max_items && n > max_items) {
        snprintf(why, MOCK_WHY_MAX, "batch of %zu images; this endpoint takes at most %zu per "
                 "request (--batch-max)", n, max_items);
        return why;
    }
    return NULL;
}

static int batch_reserve(struct mock_batch *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 8;
    while (cap < n)
        cap *= 2;
    struct mock_payload *p = realloc(b->item, cap * sizeof *p);
    if (!p)
        return -1;
    b->item = p;
    b->cap = cap;
    return 0;
}

void mock_batch_release(struct mock_batch *b)
{
    free(b->item);
    b->item = NULL;
    b->n = b->cap = 0;
}

/* One element's payload: NULL and fills *out, or the reason. */
static const char *check_payload(int m, const cJSON *im, const cJSON *m03, struct mock_buf *scratch,
                                 struct mock_payload *out)
{
    const char *text = im->valuestring;
    size_t n = strlen(text);
    if (n == 0)
        return "\"im_str\" is empty; the payload must not be";
    if (mock_buf_reserve(scratch, b64_decoded_max(n)) != 0)
        return "out of memory decoding \"im_str\"";
    size_t plen = 0;
    if (b64_decode(text, n, scratch->p, &plen) != 0)
        return "\"im_str\" is not strict base64 (standard alphabet, padded, no line breaks)";
    if (plen == 0)
        return "\"im_str\" decodes to an empty payload";
    out->key = mock_key(scratch->p, plen);
    out->len = plen;
    if (m == 4) {
        /* mock_model04_accepts would hash the payload again; compare against the key's answer. */
        cJSON *want = mock_answer_key(3, out->key, plen);
        int ok = want && cJSON_Compare(want, m03, 1);
        cJSON_Delete(want);
        if (!ok)
            return "\"model_03\" is not model_03's answer for this image";
    }
    return NULL;
}

static int fail(char *why, const char *reason)
{
    if (reason != why)
        snprintf(why, MOCK_WHY_MAX, "%s", reason);
    return -1;
}

/* ---- the fast reading ----------------------------------------------------------------------
 *
 * The full check parses the body with cJSON, which walks a 50 KB base64 string twice and copies
 * it, and scans the whole body for an escaped NUL: together more than a third of the mock's CPU
 * per request. The body a client sends is nearly always the plain shape
 *   [{"im_str": "<base64>", "model_03": VALUE}, ...]
 * with literal keys (either order) and no backslash in the base64, which can be read by hand and
 * decoded in place. The fast reading only ever says yes: it accepts a body only when it is sure
 * the full check accepts it with the same payloads, and leaves everything else (odd shapes,
 * escapes, and every request that is to be rejected, so that the reasons stay the full check's)
 * to mock_request_check's full path. VALUE goes through cJSON as before. */

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at a '"': the literal key "im_str" (1) or "model_03" (2), else 0; *p moved past the ':'. */
static int fast_key(const char **pp, const char *end)
{
    const char *p = *pp;
    int k = 0;
    if (end - p >= 8 && !memcmp(p, "\"im_str\"", 8)) {
        k = 1;
        p += 8;
    } else if (end - p >= 10 && !memcmp(p, "\"model_03\"", 10)) {
        k = 2;
        p += 10;
    } else {
        return 0;
    }
    p = ws(p, end);
    if (p == end || *p != ':')
        return 0;
    *pp = ws(p + 1, end);
    return k;
}

/* One element at p (at its '{'): 1 and fills *pl, moving *pp past its '}'; 0: not sure. */
static int fast_element(int m, const char **pp, const char *end, struct mock_buf *scratch,
                        struct mock_payload *pl)
{
    const char *p = *pp, *im = NULL, *m03 = NULL, *m03_end = NULL;
    size_t im_len = 0;
    if (p == end || *p != '{')
        return 0;
    p = ws(p + 1, end);
    for (int i = 0; i < 2; i++) {
        if (i) {
            if (p == end || *p != ',')
                return 0;
            p = ws(p + 1, end);
        }
        int k = p < end && *p == '"' ? fast_key(&p, end) : 0;
        if (k == 1 && !im) {
            if (p == end || *p != '"')
                return 0;
            const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
            if (!q || q == p + 1 || memchr(p + 1, '\\', (size_t)(q - p - 1)))
                return 0;
            im = p + 1;
            im_len = (size_t)(q - im);
            p = ws(q + 1, end);
        } else if (k == 2 && !m03) {
            /* cJSON would skip a byte-order mark before a value it parses alone. */
            if (p == end || !strchr("\"{[-0123456789tfn", *p))
                return 0;
            const char *vend = NULL;
            cJSON *v = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &vend, 0);
            int parsed = v != NULL;
            cJSON_Delete(v); /* parsed again for model_04 once the payload is known */
            if (!parsed)
                return 0;
            m03 = p;
            m03_end = vend;
            /* Inside the body it sits two levels deeper than alone: leave deep values, which
             * might hit cJSON's nesting limit there and not here, to the full check. The value
             * is the only place an escaped NUL can hide in a body read this way. */
            size_t opens = 0;
            for (const char *c = m03; c < m03_end; c++)
                opens += *c == '[' || *c == '{';
            if (opens >= 64 || memmem(m03, (size_t)(m03_end - m03), "\\u0000", 6))
                return 0;
            p = ws(m03_end, end);
        } else {
            return 0;
        }
    }
    if (p == end || *p != '}')
        return 0;
    if (mock_buf_reserve(scratch, b64_decoded_max(im_len)) != 0)
        return 0;
    size_t plen = 0;
    if (b64_decode(im, im_len, scratch->p, &plen) != 0 || plen == 0)
        return 0;
    pl->key = mock_key(scratch->p, plen);
    pl->len = plen;
    if (m == 4) {
        cJSON *got = cJSON_ParseWithLengthOpts(m03, (size_t)(m03_end - m03), NULL, 0);
        cJSON *want = mock_answer_key(3, pl->key, plen);
        int ok = got && want && cJSON_Compare(want, got, 1);
        cJSON_Delete(got);
        cJSON_Delete(want);
        if (!ok)
            return 0;
    }
    *pp = p + 1;
    return 1;
}

static int fast_check(int m, const char *body, size_t len, size_t max_items,
                      struct mock_buf *scratch, struct mock_batch *out)
{
    const char *p = ws(body, body + len), *end = body + len;
    if (p == end || *p != '[')
        return 0;
    p = ws(p + 1, end);
    size_t n = 0;
    for (;;) {
        if (max_items && n == max_items)
            return 0; /* one more would be refused, with a reason the full check words */
        if (batch_reserve(out, n + 1) != 0 || !fast_element(m, &p, end, scratch, &out->item[n]))
            return 0;
        n++;
        p = ws(p, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        break;
    }
    if (p == end || *p != ']' || ws(p + 1, end) != end)
        return 0;
    out->n = n;
    return 1;
}

/* "element I of N: " takes at most 54 bytes (two counts of up to 20 digits); an element's
 * reason gets what is left of MOCK_WHY_MAX, so that the whole always fits. */
#define ELEMENT_REASON_MAX (MOCK_WHY_MAX - 1 - 54)

/* The full check: cJSON's reading of the whole body, and a reason for whatever is wrong. */
static int full_check(int m, const char *body, size_t len, size_t max_items,
                      struct mock_buf *scratch, struct mock_batch *out, char *why)
{
    out->n = 0;
    /* cJSON hands strings back NUL-terminated without their length, so "aGVsbG8=\u0000junk"
     * would read as "aGVsbG8=": refuse the escape itself. No valid request holds one. */
    if (memmem(body, len, "\\u0000", 6))
        return fail(why, "body holds an escaped NUL (\\u0000)");
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!doc)
        return fail(why, "body is not valid JSON");
    const char *reason = NULL;
    size_t n = cJSON_IsArray(doc) ? (size_t)cJSON_GetArraySize(doc) : 0;
    if (!only_space(end, body + len))
        reason = "trailing data after the JSON value";
    else if (!(reason = check_array(doc, n, max_items, why)) && batch_reserve(out, n) != 0)
        reason = "out of memory";
    size_t i = 0;
    for (const cJSON *el = doc->child; !reason && el; el = el->next, i++) {
        const cJSON *im, *m03;
        if (!(reason = check_element(el, &im, &m03)))
            reason = check_payload(m, im, m03, scratch, &out->item[i]);
    }
    cJSON_Delete(doc);
    if (reason && i > 0 && n > 1) { /* an element's reason: a static string */
        snprintf(why, MOCK_WHY_MAX, "element %zu of %zu: %.*s", i, n, ELEMENT_REASON_MAX, reason);
        return -1;
    }
    if (reason)
        return fail(why, reason);
    out->n = n;
    return 0;
}

int mock_request_check(int m, const char *body, size_t len, size_t max_items,
                       struct mock_buf *scratch, struct mock_batch *out, char *why)
{
    if (fast_check(m, body, len, max_items, scratch, out))
        return 0;
    return full_check(m, body, len, max_items, scratch, out, why);
}

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The first "im_str" string at or after *at: NULL and fills *out, moving *at past it; or the
 * reason. */
static const char *trusted_one(const char **at, const char *end, struct mock_payload *out)
{
    static const char KEY[] = "\"im_str\"";
    const char *p = memmem(*at, (size_t)(end - *at), KEY, sizeof KEY - 1);
    if (!p)
        return "no \"im_str\" in the body";
    p = skip_space(p + sizeof KEY - 1, end);
    if (p == end || *p != ':')
        return "no value after \"im_str\"";
    p = skip_space(p + 1, end);
    if (p == end || *p != '"')
        return "\"im_str\" must be a string";
    const char *text = p + 1;
    const char *q = memchr(text, '"', (size_t)(end - text));
    if (!q)
        return "\"im_str\" has no closing quote";
    size_t n = (size_t)(q - text);
    if (n == 0)
        return "\"im_str\" is empty; the payload must not be";
    out->key = mock_key_b64(text, n);
    out->len = mock_b64_payload_len(text, n);
    *at = q + 1;
    return NULL;
}

int mock_request_trusted(const char *body, size_t len, size_t max_items, struct mock_batch *out,
                         char *why)
{
    static const char KEY[] = "\"im_str\"";
    const char *at = body, *end = body + len;
    out->n = 0;
    do {
        if (batch_reserve(out, out->n + 1) != 0)
            return fail(why, "out of memory");
        const char *reason = trusted_one(&at, end, &out->item[out->n]);
        if (reason)
            return fail(why, reason);
        out->n++;
    } while (max_items != 1 && memmem(at, (size_t)(end - at), KEY, sizeof KEY - 1));
    if (max_items > 1 && out->n > max_items) {
        snprintf(why, MOCK_WHY_MAX, "batch of %zu images; this endpoint takes at most %zu per "
                 "request (--batch-max)", out->n, max_items);
        out->n = 0;
        return -1;
    }
    return 0;
}

int mock_request_is_json(const char *ct)
{
    static const char JSON[] = "application/json";
    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, JSON, sizeof JSON - 1) != 0)
        return 0;
    ct += sizeof JSON - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}
