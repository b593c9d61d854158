/* chain: the meaning of the model chain, in one place. A small state machine per item, and the
 * only code that decides what an HTTP attempt's end means.
 *
 *   chain_next(run, item)            → the requests that may be sent now (model_01 and model_02
 *                                      together; model_03 once both are truthy; model_04 after
 *                                      model_03; one model_05 per sub-image);
 *   chain_attempt_begin(run, req)    → may this attempt go? It counts the attempt and the
 *                                      request in flight, or settles a request that need not be
 *                                      sent (a sibling failed, the run is being torn down);
 *   chain_attempt_end(run, req, ans) → what the attempt's end means: the request is done (its
 *                                      result recorded), it is to be retried at time T, or it
 *                                      failed (and with it the item);
 *   chain_finished(item)             → the item needs nothing more and can be written.
 *
 * What the server can take (rate, slots, replicas, breakers) is the endpoint's (endpoint.h): a
 * driver asks endpoint_admit before each attempt, and chain_attempt_end tells the endpoint how the
 * attempt went (endpoint_done), having read the answer once (chain_read_answer: one answer kind
 * for retries, breakers, replicas and limits alike).
 *
 * Drivers differ only in how they wait: the blocking driver (serial, threads, processes) sleeps
 * until T, the curl-multi driver arms a timer. Both call exactly these functions, in the same
 * order, as curl's serial and parallel drivers share post_per_transfer(); so they cannot disagree
 * about what runs when, what is sent, what is retried, how attempts are counted, or what ends up
 * in the row. A new rule (a retry budget, an error expression) is written here once.
 *
 * The chain reads no clock: drivers pass the time in. */
#ifndef ANNOTATE_CHAIN_H
#define ANNOTATE_CHAIN_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
#include <cjson/cJSON.h>
#include "config.h"
#include "endpoint/endpoint.h"
#include "flow/item.h"
#include "pipeline/pipeline.h"
#include "run.h"

/* A request's standing with the answer store (--cache; memo.h): its key once looked up, and the
 * claim on its question while it is the one asking it. */
struct memo_ticket {
    struct memo *m;            /* set while it holds the claim: where to give it back */
    unsigned char key[24];     /* STORE_KEY_BYTES */
    uint32_t serial;           /* the claim's */
    uint32_t gen;              /* the registry's generation when it found its question claimed */
    unsigned char state;       /* memo.c's MEMO_*: not looked up yet, asked, answered */
    unsigned char keyed;       /* key holds its key (a request that is not cacheable has none) */
    unsigned char waited;      /* it waited for its twin: the store is looked at whatever */
};

/* One request. Its body is the stage's template (template.h) filled for this image or element:
 * pieces that point at the image's base64 or bytes and at earlier results, sent without being
 * assembled in memory (the image is never copied into a body). A "form" body is one filled
 * template per part. Owned by the driver between chain_next and the chain_attempt_end (or
 * chain_attempt_begin) that settles it, which frees it. */
struct chain_req {
    struct item *it;
    int stage;
    int index;            /* element index for an "each" stage, else 0 */
    struct filled body;   /* BODY_SEED, BODY_JSON, BODY_RAW */
    struct filled *parts; /* BODY_FORM: one per part of the stage's form */
    int n_parts;
    const char *mime;     /* the image's or the element's type */
    char *el;             /* an "each" element's text (base64, as the answer had it), owned */
    unsigned char *el_bytes; /* ... decoded, when the body sends bytes; owned */
    size_t el_bytes_len;
    size_t sent;          /* upload position, for the read callback */
    int attempts;         /* HTTP attempts made so far (every time it went on the wire) */
    int sends;            /* times the current attempt went on the wire (libcurl may resend) */
    int busy;             /* attempts an "auto" stage's server refused as busy (429, 503), not
                             charged to the retries (at most CHAIN_BUSY_FREE) */
    int in_batch;         /* attempts made inside batches that were then split: not charged to
                             the retries it has alone */
    struct ticket tk;     /* its standing with its stage's endpoint: tokens, slot, replica */
    double t_first;       /* monotonic time of the first attempt */
    double t_attempt;     /* monotonic time of the current attempt */
    double t_end;         /* monotonic time the last attempt ended */
    uint64_t rng;         /* backoff jitter, seeded from the item and the request */
    struct chain_req **members; /* a batch (see below): the requests of its items, owned */
    int n_members;        /* 0: not a batch */
    int alone;            /* a member whose batch failed for good: it is sent in a batch of its own */
    cJSON *column;        /* its answer's "column" (owned), settled with its result; NULL: none */
    int retryable;        /* it failed in a way a later run may mend (a timeout, an outage, a 5xx
                             after its retries): set before the settle that fails it; 0: final */
    struct memo_ticket memo; /* the answer store's (chain_memo_look) */
    struct chain_cut *cut; /* not an HTTP request: a crop stage's boxes to cut (see chain_cut_run) */
    struct chain_req *next; /* for the driver's lists */
    void *driver;         /* the driver's own data (its curl handle while on the wire) */
};

/* The seed's body starts with this (the template of a stage without "body" or "form"). */
#define CHAIN_BODY_HEAD "[{\"im_str\":\""
#define CHAIN_BODY_HEAD_LEN (sizeof CHAIN_BODY_HEAD - 1)

/* Moves every stage that can start now to running and returns its requests as a list (linked by
 * ->next, in stage then element order), or NULL when none can start. Stages found to be skipped
 * are marked so. When every stage is settled the item becomes ITEM_OK (unless it failed). */
struct chain_req *chain_next(const struct run *run, struct item *it);

/* Crops. A stage whose "input" has "crop" sends boxes cut out of the upright original (box.h),
 * each prepared with the stage's "image". When it can start, chain_next gives it as one request
 * with ->cut set: a cut, which is never sent. The driver runs chain_cut_run on it, CPU work (the
 * file is decoded whole), on a thread that may take that time (the blocking drivers' own, a
 * loader's for the curl-multi driver, never its event loop); chain_cut_run touches only the cut,
 * so the item's owner may go on with its other requests meanwhile. Then, in the thread that owns
 * the item, chain_cut_done returns the stage's requests, one per box in box order (or none, with
 * the item failed: the decoder's reason), and the driver follows up the item as after any
 * request's end (chain_next, chain_finished). A cut counts as a request of its image in flight
 * until chain_cut_done. */
void chain_cut_run(const struct run *run, struct chain_req *cut);
struct chain_req *chain_cut_done(const struct run *run, struct chain_req *cut);

/* 1 when the item needs nothing more: no request in flight, and ok or failed. */
int chain_finished(const struct item *it);

enum chain_go {
    CHAIN_SEND = 0,   /* send it now; the attempt is counted and in flight */
    CHAIN_SETTLED = 1 /* not to be sent: the chain has settled (and freed) the request */
};

/* Called before each attempt goes on the wire (the first and every retry), once the endpoint has
 * admitted it (endpoint_admit returned ADMIT_GO on req->tk), or at once for a request that will
 * be settled (chain_req_moot). When it settles the request, whatever req->tk holds is given
 * back. */
enum chain_go chain_attempt_begin(const struct run *run, struct chain_req *req, double now);

/* How one attempt ended, as the driver saw it. */
struct chain_answer {
    CURLcode cc;          /* CURLE_OK when an answer came */
    long status;          /* HTTP status, 0 when none */
    const char *body;     /* the answer (may be NULL when len is 0) */
    size_t len;
    const char *curl_err; /* curl's error buffer, may be NULL or empty */
    long retry_after_s;   /* the Retry-After header, or -1 */
    const char *location; /* a 3xx answer's Location, or NULL */
    int no_room;          /* it found no room within --max-memory for the attempt's time (other
                           * answers held it): worth another attempt, and nothing the server did */
};

enum chain_step {
    CHAIN_DONE = 0,  /* the request finished with its result; it has been freed */
    CHAIN_RETRY = 1, /* send it again (chain_attempt_begin first) at *retry_at */
    CHAIN_FAIL = 2   /* the request failed, and the item with it; it has been freed */
};

/* Ends the attempt begun by the last chain_attempt_begin: reads the answer (chain_read_answer),
 * tells the endpoint (which gives back the request's slot), and decides. After CHAIN_DONE or
 * CHAIN_FAIL the driver asks chain_next for what comes next and chain_finished whether the item
 * is settled. */
enum chain_step chain_attempt_end(const struct run *run, struct chain_req *req, const struct chain_answer *a,
                                  double now, double *retry_at);

/* Settles a request the driver could not send at all (no curl handle, say): the item fails with
 * why. What req->tk holds is given back; the request is freed. */
void chain_abandon(const struct run *run, struct chain_req *req, const char *why);

/* What one attempt's answer means to stage st: its kind (endpoint.h), the one reading of an
 * answer that retries, breakers, replicas and limits all follow. On ANSWER_OK *result is the
 * stage's result (the caller owns it); otherwise err says why.
 *   - no answer: a timeout is BUSY; refused, reset, nothing or a partial answer DOWN; a name
 *     that did not resolve or an HTTP/2 stream error RETRY; a certificate that does not verify
 *     SETUP; anything else (an answer over --max-answer-bytes) FINAL;
 *   - a status the stage retries ("retry_on"; default 5xx, 429 and 408), or one "retry_if" holds
 *     true on: 429 and 503 BUSY, other 5xx but 501 and 505 DOWN, the rest RETRY; a status not
 *     retried: 401, 403, 404, 405 and Google's 400 API_KEY_INVALID SETUP, the rest FINAL;
 *   - a 2xx whose "error" yields a value other than null or false fails with that value's text
 *     (RETRY when "retry_if" holds, else FINAL); a 2xx whose "result" yields nothing or fails is
 *     garbled, a server fault: RETRY;
 *   - an expression ("result", "error", "retry_if", "retry_after") that ran past its CPU-time
 *     budget (expr.h) is FINAL, its reason naming which and its text: the pipeline's fault, which
 *     no other attempt mends.
 * *retry_after_s is a wait the "retry_after" expression named (seconds), or -1. st NULL: the
 * seed's stage (.result, no other expression). err never holds a secret of the run
 * (common/secrets.h): excerpts and a redirect's target are scrubbed before they are cut, and
 * the reason as a whole once made. An ok result is the server's bytes, not scrubbed. */
enum answer_kind chain_read_answer(const struct stage *st, const struct chain_answer *a, cJSON **result,
                                   long *retry_after_s, char *err, size_t errlen);
enum answer_kind chain_outcome(const struct chain_answer *a, cJSON **result, char *err, size_t errlen);

/* 1 when an attempt that failed for good says the server was over its load or down, rather
 * than that the image (or its answer) is bad: a BUSY or DOWN answer (a timeout, 429, 503, other
 * 5xx, refused, reset), or a RETRY without an answer, with 408, or for want of room within
 * --max-memory (the client's load). A final 4xx (400, 413, 415,
 * 422), a garbled answer that came back on every retry, an image that could not be read: 0.
 * The one rule for both uses of a failure's kind: a row whose failures all say load may be mended
 * by --retry-failed (the others are final: item.h's fail_final, the summary's advice), and
 * `annotate bench` holds only those against a point (per-image failures say nothing about how
 * much load a server takes). */
int chain_load_shaped(enum answer_kind kind, const struct chain_answer *a);

/* Reads a 2xx answer body with stage st's "result" (st NULL: .result): returns 0 and the result
 * (Raw JSON text: the exact bytes for a plain path), or -1 with a reason (a garbled answer), or
 * EXPR_OVER_BUDGET when a jq "result" ran past its CPU-time budget (expr.h: the pipeline's
 * fault, not the answer's). (The fuzz target for answers.) */
int chain_parse_answer(const char *body, size_t len, cJSON **result, char *err, size_t errlen);
/* Stage st's "column" (pipeline.h) on an answer chain_read_answer read as ok: 0 with *column (NULL
 * when the stage has none: its cell is its result), or as chain_parse_result fails (a garbled
 * answer, or EXPR_OVER_BUDGET). */
int chain_parse_column(const struct stage *st, const char *body, size_t len, cJSON **column, char *err,
                       size_t errlen);
int chain_parse_result(const struct stage *st, const char *body, size_t len, cJSON **result, char *err,
                       size_t errlen);

/* A stage whose "concurrency" is "auto" finds its server's capacity by going past it now and
 * then, and a server with a short queue answers those requests 429 or 503: flow control that the
 * limit answers (it backs off), not a fault of the image. Such an answer is not charged to the
 * request's retries, up to this many of them; it still waits its backoff and Retry-After. */
#define CHAIN_BUSY_FREE 20

/* Attempts allowed for a stage's requests: 1 + retries (the stage's override or --retries). */
int chain_max_attempts(const struct run *run, int stage);

/* The most bytes an answer to req may hold: --max-answer-bytes for each image it carries (a
 * batch: one per member). req NULL: for one image. */
size_t chain_answer_cap(const struct run *run, const struct chain_req *req);
/* The largest answer any request of the run may take (a batch's, of the largest batch): how far
 * answers may go past --max-memory (budget.h). */
size_t chain_answer_room(const struct run *run);

/* Backoff before retry number `attempt` (1 = first retry): exponential with full jitter, capped
 * by --backoff-max-ms, and at least the server's Retry-After (seconds; < 0 if none), which is
 * itself capped at max(--backoff-max-ms, 60 s). */
long chain_backoff_ms(const struct config *cfg, int attempt, long retry_after_s, uint64_t *rng);

/* Copies the next up to n bytes of req's body (not a form's) into buf; returns the count (0 at
 * the end). */
size_t chain_req_read(struct chain_req *req, char *buf, size_t n);
size_t chain_req_body_len(const struct chain_req *req);

/* Batches. A stage with "batch": {"size": N, "max_wait_ms": T} sends up to N of its requests,
 * of different images (or elements), as one HTTP request: a batch. chain_next still makes one
 * request per item; the driver hands each to a batcher, which gathers them per stage and gives
 * back a batch when it is full, or when its oldest item has waited T ms. A batch is a chain_req
 * with members: it goes through chain_attempt_begin / chain_attempt_end as one request (one
 * attempt, one slot, one rate-limit token), and those settle its members. Its answer's "result"
 * must be a list with one element per member, in order (else the attempt is retried); each
 * element is that member's result, byte for byte; "error", in a batch stage, is read on each
 * element and fails only its item. A batch's answer may hold --max-answer-bytes for each of its
 * members (chain_answer_cap), and each element is held to it on its own: an element over it
 * fails its image alone. A batch that fails for good (a final answer such as 400 or 413, or its
 * retries run out on a 5xx, a timeout or a wrong count of results) is split: each member is sent
 * again in a batch of its own, with the retries of a request of its own, so that one bad image
 * fails alone. Not when the failure is the stage's as a whole: a set-up error, its server down
 * (the outage breaker, breakers.h), or a run being torn down. After a chain call on a batch,
 * the driver follows up every item of it (take them with chain_req_items before the call): any
 * of them may have moved on. The blocking drivers send batches of one (chain_batch_one): their
 * workers wait for their own image. */
struct chain_batcher;
struct chain_batcher *chain_batcher_new(const struct run *run);
/* Frees the batcher and any batch still gathering (the run is being torn down). */
void chain_batcher_free(struct chain_batcher *b);
/* 1 when req must go through a batch (its stage batches, and it is not one). */
int chain_batched(const struct run *run, const struct chain_req *req);
/* Takes req (chain_batched): returns a batch to send now (full, or req goes alone), or NULL when
 * req waits in its stage's batch. */
struct chain_req *chain_batch_add(struct chain_batcher *b, struct chain_req *req, double now);
/* A batch whose oldest item has waited its stage's max_wait_ms at now, or with flush any batch
 * gathering; NULL when none. */
struct chain_req *chain_batch_due(struct chain_batcher *b, double now, int flush);
/* When the next batch falls due (monotonic seconds), or -1 when none is gathering. */
double chain_batch_deadline(const struct chain_batcher *b);
/* req (chain_batched) as a batch of its own. */
struct chain_req *chain_batch_one(const struct run *run, struct chain_req *req);
/* The distinct items of req (its own, or its members'), at most CHAIN_BATCH_ITEMS. */
#define CHAIN_BATCH_ITEMS 256 /* STAGE_BATCH_MAX */
int chain_req_items(const struct chain_req *req, struct item **out);
/* 1 when chain_attempt_begin would settle req rather than send it: its images have failed (a
 * batch: all of them), or the run is being torn down. */
int chain_req_moot(const struct run *run, const struct chain_req *req);

/* req's body (not a form's) as one piece, or NULL. When the body is the image's base64 with text
 * before and after it that fits in the slack the loader left around it (item.h), that text is
 * written there and the piece is the base64 with it: nothing is copied. While the piece is in use
 * (until chain_req_whole_done), another request of the image gets it only if its text is the
 * same; otherwise NULL, and its body is read with chain_req_read. */
const char *chain_req_whole(struct chain_req *req);
void chain_req_whole_done(struct item *it);

/* ---- the answer store (--cache; memo.c) ----
 *
 * Before a request's first admission (and before a batch stage's request goes to the batcher:
 * a batch carries only the questions the store cannot answer), the driver asks the chain whether
 * the question is answered already. A hit settles the request with the stored bytes and no
 * attempt, through the same settle as a server's answer, so "when", "each", {{STAGE}} and the row
 * cannot tell the difference; it takes no rate token and no slot. A question that another
 * request is asking right now (a copy of the image, in flight) is a twin: it waits for that
 * answer and is looked up again when it comes (chain_memo_wait, or chain_memo_changed and the
 * watched descriptor for an event loop); if that request failed, the twin asks for itself. Every
 * other request claims its question (memo.h's registry) and goes on; its ok answer is put in the
 * store, then its waiters are woken. Without --cache every request is CHAIN_ASK at once. */
enum chain_memo {
    CHAIN_ASK = 0,      /* send it (endpoint_admit, chain_attempt_begin, ...) */
    CHAIN_ANSWERED = 1, /* answered from the store: settled and freed; follow up its item */
    CHAIN_TWIN = 2      /* its question is on the wire for another request: wait, then ask again */
};
enum chain_memo chain_memo_look(const struct run *run, struct chain_req *req);

/* A blocking driver's wait for a twin's answer: until the question it waits for is given back,
 * or max_s seconds. (A claim left by a worker process that died is given back here.) */
void chain_memo_wait(const struct run *run, const struct chain_req *req, double max_s);

/* An event loop's check: 1 when a question others waited for was given back since *seen (which
 * is updated), so that its twins are looked up again. */
int chain_memo_changed(const struct run *run, uint32_t *seen);

/* An event loop's eventfd (on 1, off 0), written when a question others wait for is given back in
 * this process, so that the loop wakes for its twins. */
void chain_memo_watch(const struct run *run, int fd, int on);

/* Frees a request that will not be completed (the run is being torn down). */
void chain_req_free(struct chain_req *req);

/* JSON truthiness as the seed's Python has it: null, false, 0, "", [] and {} are false. */
int chain_truthy(const cJSON *v);

#endif
