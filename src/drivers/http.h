/* http: one HTTP attempt on a curl easy handle, as both drivers make it: how a request is put on
 * a handle, and how its answer is collected and handed to the chain. The drivers (blocking.h,
 * multi.c) decide only when. */
#ifndef ANNOTATE_HTTP_H
#define ANNOTATE_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include "chain/chain.h"
#include "run.h"
#include "flow/budget.h"

struct http_buf {
    char *data;
    size_t len, cap;
    size_t limit;  /* an answer: more than this is refused (--max-answer-bytes, for each image
                      of a batch) */
    int images;    /* how many images that limit is for */
    int refused;   /* 1: over the limit; 2: out of memory; 3: no room within --max-memory */
    /* An answer's share of --max-memory (flow/budget.h): what its buffer holds beyond
     * HTTP_ANSWER_FREE, and its token, until http_answer_release. */
    uint64_t charged;
    uint64_t token;
    int paused;            /* its transfer waits for room (curl-multi) */
    double deadline;       /* a blocking wait for room gives up then (the attempt's timeout) */
    const struct run *run; /* whose stop flag ends that wait */
};

/* Each slot's answer buffer holds up to this much outside --max-memory (what every answer of a
 * model's JSON needs); an answer larger draws on the budget as it grows. */
#define HTTP_ANSWER_FREE BUDGET_SMALL

/* One multipart part's upload: read from its filled template (curl_mime_data_cb). */
struct http_part {
    const struct filled *f;
    size_t pos;
};

/* A reusable easy handle with its buffers: one per blocking worker, one per request slot of the
 * curl-multi loop. Reusing it keeps its connection and its buffers. */
struct http_slot {
    CURL *h;
    struct http_buf resp;  /* the answer */
    struct http_buf body;  /* small bodies, assembled (see http_prepare) */
    char errbuf[CURL_ERROR_SIZE];
    curl_mime *mime;       /* a "form" body's parts, for the attempt on the handle */
    struct http_part *part;/* where each part's upload stands */
    int n_part;
    struct curl_slist *req_headers; /* the stage's headers plus the image's Content-Type */
    struct item *whole;    /* the attempt's body is this image's base64 in place (chain_req_whole) */
    /* An answer that finds no room within --max-memory: with a pause list (curl-multi), its
     * transfer is paused and the slot put on the list, for http_resume_paused; without one (the
     * blocking driver), the write waits for room until the attempt's timeout. */
    struct http_slot **pause_list;
    struct http_slot *next_paused;
    int listed;
};

int http_slot_init(struct http_slot *s);
void http_slot_free(struct http_slot *s);

/* Puts one attempt of req on the slot's handle: URL, body, headers, timeouts, TLS settings; the
 * answer goes into slot->resp (emptied), errors into slot->errbuf. CURLOPT_PRIVATE is set to req.
 * A body up to HTTP_SMALL_BODY bytes is handed to curl whole, so that headers and body leave in
 * one send(): in place around the image's base64 when chain_req_whole can (no copy), else
 * assembled in slot->body; a larger one is streamed from the image's base64 or bytes
 * by a read callback, never copied into a body first. A "form" body is a curl_mime whose parts
 * are streamed the same way (curl_mime_data_cb), and can be rewound for a retry. */
#define HTTP_SMALL_BODY (60 * 1024)
void http_prepare(struct http_slot *slot, const struct run *run, struct chain_req *req);

/* How the attempt on the slot's handle ended (cc from curl), for chain_attempt_end. The
 * answer points into the slot: valid until the slot is prepared again. */
void http_answer(struct http_slot *slot, CURLcode cc, struct chain_answer *a);

/* After the chain has read the answer (chain_attempt_end): lets a buffer larger than
 * HTTP_ANSWER_FREE go, and gives its share of --max-memory back. */
void http_answer_release(struct http_slot *slot);

/* Unpauses the transfers on *list that waited for room (each pauses again, and is listed again,
 * when there is still none). */
void http_resume_paused(struct http_slot **list);

#endif
