/* request: the strict and the trusting reading of a model request (see request.h). */
#include "mock/request.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cjson/cJSON.h>

#include "b64.h"
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

/* The shape check, on the parsed document; NULL when it is exactly one object holding exactly
 * "im_str" (a string) and "model_03". */
static const char *check_shape(const cJSON *doc, const cJSON **im, const cJSON **m03)
{
    if (!cJSON_IsArray(doc))
        return "body must be a JSON array of one object";
    int n = cJSON_GetArraySize(doc);
    if (n == 0)
        return "body is an empty array; it must hold one object";
    if (n > 1)
        return "body holds more than one object; send one image per request";
    const cJSON *obj = doc->child;
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

const char *mock_request_check(int m, const char *body, size_t len, struct mock_buf *scratch,
                               struct mock_payload *out)
{
    /* cJSON hands strings back NUL-terminated without their length, so "aGVsbG8=\u0000junk"
     * would read as "aGVsbG8=": refuse the escape itself. No valid request holds one. */
    if (memmem(body, len, "\\u0000", 6))
        return "body holds an escaped NUL (\\u0000)";
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!doc)
        return "body is not valid JSON";
    const char *reason = NULL;
    if (!only_space(end, body + len)) {
        reason = "trailing data after the JSON value";
        goto done;
    }
    const cJSON *im, *m03;
    if ((reason = check_shape(doc, &im, &m03)))
        goto done;
    const char *text = im->valuestring;
    size_t n = strlen(text);
    if (n == 0) {
        reason = "\"im_str\" is empty; the payload must not be";
        goto done;
    }
    if (mock_buf_reserve(scratch, b64_decoded_max(n)) != 0) {
        reason = "out of memory decoding \"im_str\"";
        goto done;
    }
    size_t plen = 0;
    if (b64_decode(text, n, scratch->p, &plen) != 0) {
        reason = "\"im_str\" is not strict base64 (standard alphabet, padded, no line breaks)";
        goto done;
    }
    if (plen == 0) {
        reason = "\"im_str\" decodes to an empty payload";
        goto done;
    }
    out->key = mock_key(scratch->p, plen);
    out->len = plen;
    if (m == 4) {
        /* mock_model04_accepts would hash the payload again; compare against the key's answer. */
        cJSON *want = mock_answer_key(3, out->key, plen);
        int ok = want && cJSON_Compare(want, m03, 1);
        cJSON_Delete(want);
        if (!ok)
            reason = "\"model_03\" is not model_03's answer for this image";
    }
done:
    cJSON_Delete(doc);
    return reason;
}

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

const char *mock_request_trusted(const char *body, size_t len, struct mock_payload *out)
{
    static const char KEY[] = "\"im_str\"";
    const char *end = body + len;
    const char *p = memmem(body, len, KEY, sizeof KEY - 1);
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
    return NULL;
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
