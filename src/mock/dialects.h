/* dialects: the mock's seven other kinds of model server, each on its standard path for a model
 * named "classifier", beside the seed's /model_01 .. /model_05 (which this module never sees).
 * The wire protocols are those of docs/PROTOCOLS.md; the pipelines that talk to them are
 * examples/<name>.json, <name> being mock_dialect_name().
 *
 *   kserve-v2      POST /v2/models/classifier/infer        (Triton / KServe v2, JSON, base64 BYTES)
 *   torchserve     POST /predictions/classifier            (raw image bytes)
 *   tfserving      POST /v1/models/classifier:predict      (JSON, {"b64": ...} instances)
 *   openai-vision  POST /v1/chat/completions               (JSON, data: URL, Bearer token)
 *   hf-endpoint    POST /models/classifier                 (raw image bytes, or JSON inputs)
 *   multipart      POST /classifier                        (FastAPI UploadFile, part "file")
 *   google-vision  POST /v1/images:annotate                (JSON, ?key= or X-Goog-Api-Key)
 *
 * Every answer is a deterministic function of the image bytes (and, for multipart, of the
 * part's filename, which the answer echoes). With key = mock_key(bytes) (FNV-1a 64, answers.h)
 * an image's labels and scores are, for i = 0 .. 7:
 *
 *   label[i] = LABELS[((key >> 8) + i) % 8]       LABELS = cat dog car tree boat bird house person
 *   score[0] = (500 + (key >> 16) % 500) / 1000   so the first is the best, 0.500 .. 0.999
 *   score[i] = floor(rest / 2) / 1000, rest = 1000 - score[0..i-1] in thousandths
 *
 * so the scores are in thousandths, decreasing, and sum to at most 1 as a softmax's top-k do.
 * Numbers are written as the real server's JSON writer would write those values: the shortest
 * form with at least one decimal ("0.734", "0.5", "0.0"), except the chat model's own text,
 * which is always three decimals ("0.500"). The exact bytes of each answer, and what
 * annotate's CSV cell is for each example pipeline, come from mock_dialect_answer and
 * mock_dialect_cell below, which the tests link (docs/mock-model-server.1, DIALECTS, lists the
 * shapes and the error answers).
 *
 * This file knows nothing of libevent: server.c turns an evhttp request into a mock_dreq and
 * sends the mock_dans back, so the unit tests can link the module alone. */
#ifndef ANNOTATE_MOCK_DIALECTS_H
#define ANNOTATE_MOCK_DIALECTS_H

#include <stddef.h>
#include <stdint.h>

enum mock_dialect {
    MOCK_D_KSERVE = 0,
    MOCK_D_TORCHSERVE,
    MOCK_D_TFSERVING,
    MOCK_D_OPENAI,
    MOCK_D_HF,
    MOCK_D_MULTIPART,
    MOCK_D_GOOGLE,
    MOCK_N_DIALECTS,
};

/* "kserve-v2", "torchserve", "tfserving", "openai-vision", "hf-endpoint", "multipart",
 * "google-vision": the names of the example pipelines. NULL when d is out of range. */
const char *mock_dialect_name(int d);

/* The dialect of a name above, or -1. */
int mock_dialect_from_name(const char *name);

/* The inference path ("/v2/models/classifier/infer", ...), without query. */
const char *mock_dialect_path(int d);

/* Which dialect serves a request path (n bytes, query cut off): the dialect whose path family
 * it is in (any /v2/... is KServe's, /predictions/... TorchServe's, /v1/models/... TF
 * Serving's, /models/... Hugging Face's, so that a wrong model name or version gets that
 * server's own error), or -1 for a path none of them owns. */
int mock_dialect_route(const char *path, size_t n);

/* The MIME type of an image by its magic number: image/png, image/jpeg, image/gif,
 * image/webp, image/bmp, image/tiff; NULL when the bytes are none of those. */
const char *mock_mime_of(const unsigned char *p, size_t n);

/* One request, as the server received it. Every pointer may be NULL when absent; strings are
 * NUL-terminated; the body may hold any bytes. */
struct mock_dreq {
    int dialect;               /* enum mock_dialect */
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* the path, query cut off (path_len bytes) */
    size_t path_len;
    const char *query;         /* what follows '?', up to '#' or the end (query_len bytes) */
    size_t query_len;
    const char *content_type;
    const char *authorization;
    const char *goog_api_key;  /* X-Goog-Api-Key */
    const unsigned char *body;
    size_t len;
    const char *token;         /* the token OpenAI's Bearer and Google's key must be; NULL: any */
    int token_unreadable;      /* --token-file could not be read for this request: answer 500 */
    int fault;                 /* -1, or the injected MOCK_FAULT_ERROR, _429 or _GARBAGE */
    int retry_after;           /* seconds, for Retry-After and Hugging Face's estimated_time */
};

enum mock_doutcome {
    MOCK_D_OK = 0,       /* a 200 answer to a valid request (Google's per-image errors too) */
    MOCK_D_REJECTED,     /* the request was wrong: a 4xx with the server's error shape */
    MOCK_D_FAULTED,      /* an injected fault's answer, or a --token-file that cannot be read */
};

/* The answer to send. body is malloc'd (free it), len bytes, NUL after them. */
struct mock_dans {
    int status;
    const char *content_type;  /* static */
    int retry_after;           /* >= 0: send Retry-After with this value */
    int outcome;               /* enum mock_doutcome */
    char *body;
    size_t len;
};

/* Checks the request strictly and builds the answer the real server would send: 0, or -1 when
 * memory runs out (nothing to free then). */
int mock_dialect_serve(const struct mock_dreq *rq, struct mock_dans *out);

/* The reason phrase of an HTTP status the dialects use ("OK", "Bad Request", ...). */
const char *mock_http_phrase(int status);

/* What a correct request carrying these image bytes is answered: the status (200, or the error
 * status when the server refuses the image: OpenAI's 400 for bytes that are not an image) and
 * the exact body, malloc'd, NUL after its *len bytes. filename is the multipart part's filename
 * as sent (NULL: ""); the other dialects ignore it. NULL when memory runs out. */
char *mock_dialect_answer(int d, const unsigned char *img, size_t len, const char *filename,
                          int *status, size_t *out_len);

/* What annotate writes in the label column when it runs examples/<mock_dialect_name(d)>.json
 * on an image of these bytes against the mock: 0 and *cell (malloc'd) for an ok row; 1 and
 * *error (static) for a failed row, *error being text its error column holds ("Bad image
 * data." for Google and bytes that are not an image); -1 when memory runs out.
 *   kserve-v2, multipart     the label as a JSON string, quotes included: "cat"
 *   torchserve, hf-endpoint  the whole answer, byte for byte
 *   tfserving                predictions[0], google-vision responses[0].labelAnnotations: the
 *                            exact bytes of that value inside the (pretty-printed) answer
 *   openai-vision            the message content through jq's fromjson, printed by libjq 1.6's
 *                            jv_dump_string with flags 0: {"label":"cat","score":0.5} */
int mock_dialect_cell(int d, const unsigned char *img, size_t len, char **cell, const char **error);

/* Reads a --token-file: its content minus one trailing newline, NUL-terminated into buf.
 * 0, or -1 when it cannot be read, holds a NUL or does not fit in cap - 1 bytes. */
int mock_token_read(const char *path, char *buf, size_t cap);

#endif
