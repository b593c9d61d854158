/* pipeline: the model chain as data. A pipeline file (JSON) lists the stages in order; this
 * module parses and validates it into a stage table that chain.c interprets. The seed's chain is
 * the built-in default (and fixtures/pipeline.json holds the same text).
 *
 * A stage:
 *   "name"        unique, [A-Za-z0-9_.-]+; also the CSV column
 *   "url"         absolute (http://, https://) or relative to --server
 *   "input"       "image" (default: the image's base64), or
 *                 {"each": STAGE, "array": KEY, "field": KEY}: one request per element of
 *                 STAGE's result[KEY], sending element[KEY2] as im_str; results kept in order
 *   "fields"      extra request fields: a JSON literal, or {"result_of": STAGE}
 *   "when"        [STAGE, ...]: run only if each of those results is truthy
 *   "csv"         true (default) or false: whether the result is a CSV column
 *   "timeout_ms", "retries", "headers" {"Name": "value with ${ENV}"}: per-stage overrides
 * A stage may only refer to stages before it, so the file order is a valid schedule. A stage runs
 * once every stage it refers to has run; if one of those was skipped, or a "when" result is
 * falsy, it is skipped (its column stays empty). */
#ifndef ANNOTATE_PIPELINE_H
#define ANNOTATE_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>

#define PIPELINE_MAX_STAGES 64

enum stage_input { INPUT_IMAGE, INPUT_EACH };

struct stage_field {
    char *name;     /* request key */
    char *literal;  /* compact JSON text, when result_of < 0 */
    int result_of;  /* index of the stage whose result is sent, or -1 */
};

struct stage {
    char *name;
    char *url;      /* as written */
    char *full_url; /* after pipeline_resolve */
    enum stage_input input;
    int each_stage; /* INPUT_EACH: source stage */
    char *each_array, *each_field;
    struct stage_field *fields;
    int n_fields;
    uint64_t when_mask; /* stages whose results must be truthy */
    uint64_t dep_mask;  /* every stage this one refers to (when, result_of, each) */
    int csv;
    long timeout_ms;    /* -1: the run's --timeout-ms */
    int retries;        /* -1: the run's --retries */
    char **header_tmpl; /* "Name: value" before ${ENV} expansion */
    int n_headers;
    struct curl_slist *headers; /* after pipeline_resolve: expanded, plus our fixed ones */
};

struct pipeline {
    struct stage *stages;
    int n;
    char *source; /* file name or "built-in" */
    char *text;   /* the JSON text it was parsed from (what a worker process is sent) */
    size_t text_len;
};

/* Parses pipeline JSON text. On error returns -1 and writes "SOURCE: stage N (NAME): what is
 * wrong" into err. *out is owned by the caller (pipeline_free). */
int pipeline_parse(const char *text, size_t len, const char *source, struct pipeline **out,
                   char *err, size_t errlen);
int pipeline_load(const char *path, struct pipeline **out, char *err, size_t errlen);
int pipeline_default(struct pipeline **out);

/* The seed's chain, as JSON text (the same as fixtures/pipeline.json). */
extern const char pipeline_default_json[];

/* Joins relative URLs to base and expands ${ENV} in headers. An unset variable is an error that
 * names the variable (never its value). Returns 0 or -1. */
int pipeline_resolve(struct pipeline *p, const char *base, char *err, size_t errlen);

/* Sets stage i's resolved URL and header lines as another process resolved them (a worker
 * takes its parent's, and never resolves anything itself). Returns 0, or -1 when out of memory. */
int pipeline_adopt_resolved(struct pipeline *p, int i, const char *full_url, const char *const *lines, int n);

/* Number of stages that are CSV columns. */
int pipeline_csv_columns(const struct pipeline *p);

void pipeline_free(struct pipeline *p);

#endif
