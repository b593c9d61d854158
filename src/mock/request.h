/* request: what a model endpoint accepts, checked strictly (the default) or found cheaply
 * (--trust-payload), reduced to the two numbers per image the models need.
 *
 * Kept apart from the event loop so that the rules live in one place and read as a list:
 * the body must be an array of 1 .. max_items objects, each exactly
 * {"im_str": "<strict base64 of a non-empty payload>", "model_03": v}, and model_04 also needs
 * each v to be model_03's answer for that element's payload. With max_items 1 (the default of
 * an endpoint that is not a batch endpoint) that is exactly one object, as the seed sends. */
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

/* The images of one request, in order. Reused from request to request: it grows to the
 * largest batch seen and stays. */
struct mock_batch {
    struct mock_payload *item;
    size_t n, cap;
};

void mock_batch_release(struct mock_batch *b); /* frees and zeroes; on a zeroed batch a no-op */

/* Room for the reasons below, element number included. */
#define MOCK_WHY_MAX 200

/* Strict check of a body sent to model m (1..5) that may hold up to max_items elements
 * (0: no limit). Decodes each base64 into *scratch in turn. 0 and fills *out; or -1 with the
 * reason the request is rejected in why (MOCK_WHY_MAX bytes; no character that JSON would need
 * escaped but '"' and '\\'). A reason about one element of a batch of several starts
 * "element I of N: " (I from 1). */
int mock_request_check(int m, const char *body, size_t len, size_t max_items,
                       struct mock_buf *scratch, struct mock_batch *out, char *why);

/* --trust-payload: finds the "im_str" strings by scanning, without parsing the JSON nor
 * decoding the base64; key = mock_key_b64 of each text. With max_items 1 only the first is
 * read, as before batches; otherwise each "im_str" is an element. Rejects only what it cannot
 * scan (no "im_str", no closing quote, an empty string) and more than max_items elements
 * (0: no limit). Same contract as mock_request_check. */
int mock_request_trusted(const char *body, size_t len, size_t max_items, struct mock_batch *out,
                         char *why);

/* 1 when a Content-Type header value (may be NULL) names application/json, parameters such
 * as "; charset=utf-8" allowed. */
int mock_request_is_json(const char *content_type);

#endif
