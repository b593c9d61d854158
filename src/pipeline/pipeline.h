/* pipeline: the model chain as data. A pipeline file (JSON) lists the stages in order; this
 * module parses and validates it into a stage table that chain.c interprets. The seed's chain is
 * the built-in default (and fixtures/pipeline.json holds the same text).
 *
 * The file is one object: "stages" (required) and "defaults" (optional). A stage:
 *   "name"        unique, [A-Za-z0-9_.-]+; also the CSV column
 *   "url"         absolute (http://, https://) or relative to --server; no blanks or control
 *                 characters
 *   "input"       "image" (default: the image's base64), or
 *                 {"each": STAGE, "array": KEY, "field": KEY}: one request per element of
 *                 STAGE's result[KEY], sending element[KEY2] as im_str, or
 *                 {"each": STAGE, "items": EXPR}: one per string EXPR yields; results in order, or
 *                 {"each": STAGE, "crop": EXPR, "box": "xywh", "normalized": false}: one request
 *                 per box EXPR yields on STAGE's result (four numbers a box, in the pixels of the
 *                 image STAGE received: box.h), each cut from the upright original and prepared
 *                 with this stage's "image"; results in box order
 *   "image"       how the image is prepared before it is sent (prepare/spec.h): {"max_side": 1024,
 *                 "format": "jpeg", ...}. Stages with equal specs share one prepared copy
 *                 (p->specs); without it the file's bytes are sent as they are. In a crop stage it
 *                 prepares each crop; an "each" stage of elements takes none
 *   "fields"      optional extra request fields: a JSON literal, or {"result_of": STAGE}; a
 *                 one-key object whose key is nearly "result_of" is refused as a typo
 *   "body", "form" the request as a template, or a multipart form (template.h); without them,
 *                 the seed's body [{"im_str": ..., ...fields}]
 *   "result"      an expression (expr.h) giving the stage's result; default .result
 *   "column"      an expression over the answer, as "result" is: what the stage's cell shows
 *                 (default: the result); "result" stays what later stages read
 *   "error", "retry_if", "retry_after": expressions on a failed (or 2xx) answer; "retry_on":
 *                 the statuses retried (chain_read_answer in chain.h says what each does)
 *   "when"        [STAGE, ...]: run only if each of those results is truthy; or a jq expression
 *                 over {"STAGE": result, ...} of the stages it names
 *   "csv"         true (default), false or "text": whether the stage has a column, and how a
 *                 string cell is written (enum stage_csv)
 *   "timeout_ms", "retries", "headers" {"Name": "value"}: per-stage overrides
 *   "concurrency" N (1 to 100000) or "auto", "max_rps" N: the stage's own limits (limit.h,
 *                 ratelimit.h), inside the run's --concurrency and --max-rps
 *   "version"     a label of the model behind the URL: part of the stage's identity in the
 *                 answer store (--cache, chain/memo.h), so that a new one is asked again
 * "defaults" holds "timeout_ms", "retries", "headers", "concurrency" and "max_rps" for every
 * stage that does not set its own. Headers come from three places; for one name (case-insensitive)
 * the first of these wins and the others are not sent: the stage's "headers", the file's
 * "defaults", --header (pipeline_add_header). A header value may use ${VAR} (the environment) and
 * ${file:PATH} (the file's content, one trailing newline removed); values are never shown in a
 * message. headers.h says the rest: the lists, the secrets, the re-read on a 401.
 * A stage may only refer to stages before it, so the file order is a valid schedule. A stage runs
 * once every stage it refers to has run; if one of those was skipped, or a "when" result is
 * falsy, it is skipped (its column stays empty). */
#ifndef ANNOTATE_PIPELINE_H
#define ANNOTATE_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include "pipeline/expr.h"
#include "pipeline/headers.h"
#include "pipeline/template.h"
#include "prepare/box.h"
#include "prepare/spec.h"

#define PIPELINE_MAX_STAGES 64
#define PIPELINE_MAX_REPLICAS 8       /* URLs of one stage */
#define PIPELINE_MAX_REPLICA_SLOTS 64 /* replicas of all the stages that have several */

enum stage_input { INPUT_IMAGE, INPUT_EACH };

/* "csv": whether a stage has a column (nonzero), and how its cell is written. JSON: the value's
 * JSON text as the server sent it (a string result stays a JSON string, quotes and escapes
 * included). TEXT: a string value as its plain text (decoded once, so a CSV reader gets the
 * caption itself); any other value (a number, an object, a list, a string holding \u0000) as
 * JSON. In JSON Lines both are the same JSON value. */
enum stage_csv { STAGE_CSV_NONE = 0, STAGE_CSV_JSON = 1, STAGE_CSV_TEXT = 2 };

struct stage_field {
    char *name;     /* request key */
    char *literal;  /* compact JSON text, when result_of < 0 */
    int result_of;  /* index of the stage whose result is sent, or -1 */
};

struct stage {
    char *name;
    char *url;      /* as written */
    char *full_url; /* after pipeline_resolve: joined to --server, ${VAR} expanded */
    char *shown_url; /* the same, ${VAR} left as written: what messages show */
    char **urls;    /* "url" as a list of replicas: [n_urls], urls[0] == url's text */
    int n_urls;
    char **rep_full, **rep_shown; /* replicas 1.. resolved ([0] is full_url / shown_url) */
    int replica_base; /* n_urls > 1: its replicas' slots in the shared page (replica.h) */
    enum stage_input input;
    int each_stage; /* INPUT_EACH: source stage */
    int crop;       /* INPUT_EACH with "crop": its elements are boxes cut from the original */
    struct expr crop_expr;    /* "crop": the boxes */
    struct prep_box_spec box; /* "box", "normalized" */
    int has_image;  /* "image" given: image is the spec */
    struct prep_spec image;
    int spec;       /* an image stage's prepared copy: index into p->specs, or -1 (the file as is) */
    char *each_array, *each_field;
    struct stage_field *fields;
    int n_fields;
    uint64_t when_mask; /* stages whose results must be truthy */
    uint64_t dep_mask;  /* every stage this one refers to (when, result_of, each) */
    int csv;        /* enum stage_csv: 0 no column; nonzero: a column */
    long timeout_ms;    /* the stage's, else "defaults"'s; -1: the run's --timeout-ms */
    int retries;        /* the stage's, else "defaults"'s; -1: the run's --retries */
    char **header_tmpl; /* the stage's own "Name: value" lines, before ${...} expansion */
    int n_headers;
    int file_headers;   /* a header value comes from a file (${file:PATH}): re-read on a 401 */
    struct stage_headers *live; /* after pipeline_resolve: the header list sent (headers.h:
                                 * pipeline_headers), which a 401 may replace during a run */
    struct body body;   /* the request body (template.h): the seed's, "body" or "form" */
    int type_of_image;  /* a raw body without a Content-Type header: the image's type is sent */
    struct expr result; /* "result": what of the answer is the stage's result (default .result) */
    struct expr column; /* "column": what of the answer the cell shows; text NULL: the result */
    struct expr error;  /* "error": a non-null value fails the attempt, with that message */
    struct expr retry_if;    /* "retry_if": a truthy value makes a failed answer retryable */
    struct expr retry_after; /* "retry_after": seconds to wait, named in the body */
    struct expr when;   /* "when" as a jq expression over {"STAGE": result, ...} of when_mask */
    struct expr items;  /* "input": {"each": STAGE, "items": EXPR}: the elements */
    int retry_on[32];   /* "retry_on": the statuses retried; n_retry_on < 0: 5xx, 429 and 408 */
    int n_retry_on;
    int concurrency;    /* "concurrency": requests in flight to it at most (limit.h); 0: no limit of
                         * its own, STAGE_CONCURRENCY_AUTO: "auto", an adaptive limit */
    double max_rps;     /* "max_rps": its requests per second at most (ratelimit.h); 0: no limit */
    int batch_size;     /* "batch": {"size"}: items (of different images) per request; 0: no batch */
    long batch_wait_ms; /* "batch": {"max_wait_ms"}: how long a batch's oldest item waits at most */
    char *version;      /* "version": printable, at most 127 bytes; NULL when not given */
};

#define STAGE_BATCH_MAX 256         /* "batch": {"size"} at most */
#define STAGE_BATCH_WAIT_MS 10      /* "max_wait_ms" when not given */

#define STAGE_CONCURRENCY_AUTO (-1)
#define STAGE_CONCURRENCY_MAX 100000

struct pipeline {
    struct stage *stages;
    int n;
    struct prep_spec specs[PIPELINE_MAX_STAGES]; /* the distinct "image" specs of image stages */
    int n_specs;
    char *source;            /* file name or "built-in" */
    char *text;              /* the JSON text it was parsed from (what a worker process is sent) */
    size_t text_len;
    char **default_headers;  /* "defaults": "headers", as "Name: value" templates */
    int n_default_headers;
    char **cli_headers;      /* --header lines (pipeline_add_header), templates too */
    int n_replica_slots;     /* replicas of the stages with several URLs */
    int n_cli_headers;
};

/* Parses pipeline JSON text. On error returns -1 and writes "SOURCE: stage N (NAME): what is
 * wrong" into err. *out is owned by the caller (pipeline_free). */
int pipeline_parse(const char *text, size_t len, const char *source, struct pipeline **out,
                   char *err, size_t errlen);
int pipeline_load(const char *path, struct pipeline **out, char *err, size_t errlen);
int pipeline_default(struct pipeline **out);

/* The seed's chain, as JSON text (the same as fixtures/pipeline.json). */
extern const char pipeline_default_json[];

/* s for a message: at most 200 bytes, control characters as '?', into buf. Returns buf. */
const char *pipeline_printable(const char *s, char *buf, size_t len);

/* Checks a base URL (--server): url_check (common/url.h), and no query or fragment. Returns 0, or -1
 * with what is wrong in err (without a prefix: the caller names the option). */
int pipeline_check_base(const char *base, char *err, size_t errlen);

/* Joins relative URLs to base (expanding ${VAR} in them) and builds each stage's header list,
 * expanding ${VAR} and ${file:PATH} (headers.h). An unset variable or an unreadable file is an
 * error that names the variable or the path (never a value or a file's content). Can be called
 * again (it rebuilds everything). Returns 0 or -1. */
int pipeline_resolve(struct pipeline *p, const char *base, char *err, size_t errlen);

/* Only the URLs of pipeline_resolve: for what needs a stage's URL but sends nothing (annotate
 * cache prune --keep-pipelines: a stage's identity), so that no header's secret is read. */
int pipeline_resolve_urls(struct pipeline *p, const char *base, char *err, size_t errlen);

/* Sets stage i's resolved URL and header lines as another process resolved them (a worker
 * takes its parent's, and never resolves anything itself). Returns 0, or -1 when out of memory. */
int pipeline_adopt_resolved(struct pipeline *p, int i, const char *full_url, const char *shown_url,
                            const char *const *lines, int n);

/* Sets replica k (1..n_urls-1) of stage i as another process resolved it. 0 or -1. */
int pipeline_adopt_replica(struct pipeline *p, int i, int k, const char *full_url, const char *shown_url);

/* Replica k's URL: as sent, or (shown) as messages show it. */
const char *pipeline_replica_url(const struct stage *s, int k, int shown);

/* What the load stage must make of each image's file as it is (NEED_B64, NEED_BYTES, NEED_SIZE
 * of template.h): the union of what the bodies of the image stages without "image" need. (When
 * pipeline_prepares, the loader reads the bytes whatever this says.) */
unsigned pipeline_needs(const struct pipeline *p);

/* What the bodies of the image stages that send prepared copy k (p->specs[k]) need of it. */
unsigned pipeline_spec_needs(const struct pipeline *p, int k);

/* 1 when the loader reads images with libvips (prepare.h): a stage has "image", crops, or sends
 * the file's {{image.width}} or {{image.height}}. */
int pipeline_prepares(const struct pipeline *p);

/* 1 when a crop stage cuts boxes from the original (whose bytes are then kept until it runs). */
int pipeline_crops(const struct pipeline *p);

/* Number of stages that are CSV columns. */
int pipeline_csv_columns(const struct pipeline *p);

void pipeline_free(struct pipeline *p);

#endif
