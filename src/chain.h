/* chain: the meaning of the model chain, in one place. A small state machine per item:
 *
 *   chain_next(item)      → the requests that may be sent now (model_01 and model_02 together;
 *                           model_03 once both are truthy; model_04 after model_03; one
 *                           model_05 per sub-image), each a struct chain_req;
 *   chain_outcome(...)    → what one HTTP attempt's answer means: a result, a transient error
 *                           worth retrying, or a final error;
 *   chain_done(item, req) → record the result (or the error) and free the request.
 *
 * The blocking driver (serial, threads, processes) sends requests one at a time; the curl-multi
 * driver sends every ready request at once. Both call exactly these functions, so they cannot
 * disagree about what runs when, what is sent, or what ends up in the row. */
#ifndef ANNOTATE_CHAIN_H
#define ANNOTATE_CHAIN_H

#include <stddef.h>
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include "item.h"
#include "pipeline.h"

/* One request: the body is CHAIN_BODY_HEAD + im (the base64 text) + tail, sent without being
 * assembled in memory (the image is never copied into a body). */
struct chain_req {
    struct item *it;
    int stage;
    int index;            /* element index for an "each" stage, else 0 */
    const char *im;       /* points into it->b64, into a result, or into im_owned */
    size_t im_len;
    char *im_owned;       /* an escaped copy, when the element needed JSON escaping */
    char *tail;           /* owned: "\"" + fields + "}]" */
    size_t tail_len;
    size_t sent;          /* upload position, for the read callback */
    int attempts;         /* HTTP attempts made so far (every time it went on the wire) */
    int sends;            /* times the current attempt went on the wire (libcurl may resend) */
    double t_first;       /* monotonic time of the first attempt */
    double t_attempt;     /* monotonic time of the current attempt */
    struct chain_req *next; /* for the driver's lists */
    void *driver;         /* the driver's own data (a curl handle, a timer) */
};

#define CHAIN_BODY_HEAD "[{\"im_str\":\""
#define CHAIN_BODY_HEAD_LEN (sizeof CHAIN_BODY_HEAD - 1)

/* Moves every stage that can start now to running and returns its requests as a list (linked by
 * ->next, in stage then element order), or NULL when none can start. Stages found to be skipped
 * are marked so. When every stage is settled the item becomes ITEM_OK (unless it failed). */
struct chain_req *chain_next(const struct pipeline *p, struct item *it);

/* 1 when the item needs nothing more: no request in flight, and ok or failed. */
int chain_finished(const struct item *it);

enum chain_outcome { OUTCOME_OK = 0, OUTCOME_RETRY = 1, OUTCOME_FAIL = 2 };

/* What one attempt's answer means. cc is curl's result (CURLE_OK when an answer came), status
 * the HTTP status, body the answer, curl_err curl's error buffer (may be NULL). On OUTCOME_OK
 * *result is the answer's "result" (the caller owns it); otherwise err says why. Retryable:
 * connect failures, timeouts, resets, 5xx, 429, and a 2xx whose body is not {"result": ...}
 * (a garbled answer is a server fault). Other 4xx and local errors are final. */
enum chain_outcome chain_outcome(CURLcode cc, long status, const char *body, size_t len,
                                 const char *curl_err, cJSON **result, char *err, size_t errlen);

/* Parses an answer body: a JSON object with a "result" key. Returns 0 and the detached result,
 * or -1 with a reason. (The fuzz target for answers.) */
int chain_parse_answer(const char *body, size_t len, cJSON **result, char *err, size_t errlen);

/* Records a request's end: result (owned, taken) when it succeeded, or NULL and err. Frees req. */
void chain_done(const struct pipeline *p, struct chain_req *req, cJSON *result, const char *err);

/* Copies the next up to n bytes of req's body into buf; returns the count (0 at the end). */
size_t chain_req_read(struct chain_req *req, char *buf, size_t n);
size_t chain_req_body_len(const struct chain_req *req);

/* Frees a request that will not be completed (the run is being torn down). */
void chain_req_free(struct chain_req *req);

/* JSON truthiness as the seed's Python has it: null, false, 0, "", [] and {} are false. */
int chain_truthy(const cJSON *v);

#endif
