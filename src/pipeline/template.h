/* template: a stage's request body, compiled once at load into segments, and filled per request
 * into pieces that point at what they send (nothing large is copied into a body).
 *
 * Kinds of body:
 *   - the seed's (no "body"): [{"im_str": "{{image}}", ...fields}], as the seed's servers want;
 *   - "body": a JSON value. A string that is exactly "{{x}}" is replaced by x's JSON value; a
 *     placeholder inside a longer string is inserted as text ("data:{{image.mime}};base64,{{image}}");
 *   - "body": "{{image.bytes}}": the file itself;
 *   - "form": {"field": "text", "file": "{{image.file}}"}: multipart/form-data, one part a field;
 *     a {{image.file}} part carries the file's name and type, the others their text.
 * Placeholders: {{image}} (base64 of the image, or of the element in an "each" stage),
 * {{image.bytes}}, {{image.file}}, {{image.mime}}, {{image.width}} and {{image.height}} (the
 * pixels of the image sent: a prepared copy's or crop's size, else the file's pixels as stored;
 * numbers, 0 for an element of an "each" stage), {{path}}, {{name}}, {{index}} (the element's
 * index in an "each" stage, else 0) and {{STAGE}} (an earlier stage's result; inside a string, a
 * string result's text, or another result's JSON text). ${VAR} in a body's text is the
 * environment's value, expanded when the body is compiled.
 *
 * A stage with "batch" sends several items in one request: its template (t) is then one item's,
 * and the request around the items is the body's "outer" template, where {{batch}} is the JSON
 * list of the filled items and {{batch.size}} their number. The seed's batch is the list itself:
 * [{"im_str": a, ...}, {"im_str": b, ...}]. */
#ifndef ANNOTATE_TEMPLATE_H
#define ANNOTATE_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

enum tseg_kind {
    T_TEXT, T_B64, T_BYTES, T_MIME, T_WIDTH, T_HEIGHT, T_PATH, T_NAME, T_INDEX, T_STAGE, T_BATCH, T_BATCH_SIZE
};
/* How a value is written: as it is, as a JSON value, or as text inside a JSON string. */
enum tseg_ctx { C_RAW, C_VALUE, C_STRING };

struct tseg {
    enum tseg_kind kind;
    enum tseg_ctx ctx;
    char *text; /* T_TEXT: owned */
    size_t len;
    int stage;  /* T_STAGE */
};

struct tmpl {
    struct tseg *seg;
    int n, cap;
};

enum body_kind { BODY_SEED, BODY_JSON, BODY_RAW, BODY_FORM };

/* What a body needs of the image (the loader makes only that). */
#define NEED_B64 1u
#define NEED_BYTES 2u
#define NEED_SIZE 4u  /* {{image.width}}, {{image.height}}: the header is read */

struct form_part {
    char *name;
    int file;         /* the {{image.file}} part */
    struct tmpl value; /* a text part's value */
};

struct body {
    enum body_kind kind;
    struct tmpl t;            /* BODY_SEED, BODY_JSON, BODY_RAW */
    struct form_part *parts;  /* BODY_FORM */
    int n_parts;
    unsigned needs;           /* NEED_* */
    uint64_t stage_refs;      /* stages whose results it sends */
    int batch;                /* a batch stage's: t is one item, outer the request (body_batch) */
    struct tmpl outer;
};

/* Resolves a placeholder's stage name to its index (only earlier stages), or -1 with what is
 * wrong in err (an unknown name, a later stage). */
typedef int (*tmpl_stage_ref)(void *arg, const char *name, char *err, size_t errlen);

/* Compiles a "body" value / a "form" object. Returns 0, or -1 with what is wrong in err (an
 * unknown placeholder, a later stage, raw bytes inside a JSON body, an unset ${VAR}). */
int body_compile_json(struct body *b, const cJSON *v, tmpl_stage_ref ref, void *arg, char *err, size_t errlen);
int body_compile_form(struct body *b, const cJSON *v, tmpl_stage_ref ref, void *arg, char *err, size_t errlen);
/* The seed body: im_str and the "fields" (name, literal JSON text or stage), in order. */
struct seed_field {
    const char *name;
    const char *literal;
    int stage;
};
int body_compile_seed(struct body *b, const struct seed_field *f, int n);
/* Makes b, compiled as above, a batch stage's body: what it was becomes one item's template, and
 * outer (a JSON body holding "{{batch}}" once, whole; NULL: the list itself) the request around
 * the items. Only a seed or JSON body can be batched. Returns 0, or -1 with what is wrong. */
int body_batch(struct body *b, const cJSON *outer, char *err, size_t errlen);
void body_free(struct body *b);

/* ---- filling ---- */

struct piece {
    const char *p;
    size_t n;
};

/* A filled template: pieces pointing into the sources, plus what had to be made for it. */
struct filled {
    struct piece *pc;
    int n;
    size_t total;
    char **owned;
    int n_owned;
};

/* What a request's placeholders are filled from. Everything must outlive the filled template. */
struct fill_src {
    const char *b64;     /* the image's or the element's base64 text (JSON-escaped if needed) */
    size_t b64_len;
    int b64_ours;        /* b64 is our own encoder's: it never needs escaping, and is not scanned */
    const unsigned char *bytes;
    size_t bytes_len;
    const char *mime;
    int width, height;   /* the image's pixels (0: not known) */
    const char *path;    /* NUL-terminated */
    size_t path_len;
    const char *name;    /* points into path */
    int index;
    const cJSON *const *results; /* results[stage]: Raw JSON text, or trees */
};

/* Fills t. Returns 0, or -1 with why (out of memory, a path that is not UTF-8 for a JSON body). */
int tmpl_fill(const struct tmpl *t, const struct fill_src *src, struct filled *out, char *err, size_t errlen);
void filled_free(struct filled *f);
/* Fills a batch stage's outer template around items[0..n) (filled item templates, which must
 * outlive out: its pieces point into theirs). Returns 0, or -1 when out of memory. */
int batch_fill(const struct tmpl *outer, const struct filled *const *items, int n, struct filled *out);

/* Copies the bytes at offset *pos of f into buf (up to n); returns the count (0 at the end). */
size_t filled_read(const struct filled *f, size_t *pos, char *buf, size_t n);

/* Escapes s for inside a JSON string. Returns a malloc'd text (its length in *out_len), or NULL
 * when s is not valid UTF-8 (*bad = 1) or memory runs out (*bad = 0). */
char *json_escape_text(const char *s, size_t n, size_t *out_len, int *bad);

#endif
