/* request: what a model endpoint accepts, checked strictly (the default) or found cheaply
 * (--trust-payload), reduced to the two numbers the models need.
 *
 * Kept apart from the event loop so that the rules live in one place and read as a list:
 * the body must be exactly [{"im_str": "<strict base64 of a non-empty payload>", "model_03": v}],
 * and model_04 also needs v to be model_03's answer for that payload. */
#ifndef ANNOTATE_MOCK_REQUEST_H
#define ANNOTATE_MOCK_REQUEST_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer reused from request to request, so that the hot path does not
 * allocate once it has seen its largest body. */
struct mock_buf {
    unsigned char *p;
    size_t cap;
};

/* Makes room for n bytes (contents not kept); 0, or -1 when memory runs out. */
int mock_buf_reserve(struct mock_buf *b, size_t n);
void mock_buf_release(struct mock_buf *b); /* frees and zeroes; on a zeroed buf a no-op */

/* What the models answer from: mock_answer_key(model, key, len). */
struct mock_payload {
    uint64_t key;
    size_t len;
};

/* Strict check of a body sent to model m (1..5). Decodes the base64 into *scratch. Returns
 * NULL and fills *out, or the reason the request is rejected (a static string, safe to put
 * in a JSON string as is). */
const char *mock_request_check(int m, const char *body, size_t len, struct mock_buf *scratch,
                               struct mock_payload *out);

/* --trust-payload: finds the "im_str" string by scanning, without parsing the JSON nor
 * decoding the base64; key = mock_key_b64 of the text. Rejects only what it cannot scan
 * (no "im_str", no closing quote, an empty string). Same contract as mock_request_check. */
const char *mock_request_trusted(const char *body, size_t len, struct mock_payload *out);

/* 1 when a Content-Type header value (may be NULL) names application/json, parameters such
 * as "; charset=utf-8" allowed. */
int mock_request_is_json(const char *content_type);

#endif
