/* pipeline: parse and validate the stage table, and resolve its URLs. See pipeline.h for the file
 * format; the headers and the secrets in them are headers.c's. Validation is strict (unknown keys
 * are errors) because a typo in a long run's config should fail in the first second, not after
 * six hours.
 *
 * A stage is read in steps: its name, then each key by its own function (STAGE_KEYS), then what
 * several keys make together (the body, the default result). Every message names the file and
 * the stage, through one struct reader. */
#include "pipeline/pipeline.h"
#include "common/secrets.h"
#include "common/url.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char pipeline_default_json[] =
    "{\n"
    "  \"stages\": [\n"
    "    {\"name\": \"model_01\", \"url\": \"/model_01\", \"fields\": {\"model_03\": null}},\n"
    "    {\"name\": \"model_02\", \"url\": \"/model_02\", \"fields\": {\"model_03\": null}},\n"
    "    {\"name\": \"model_03\", \"url\": \"/model_03\", \"fields\": {\"model_03\": null},\n"
    "     \"when\": [\"model_01\", \"model_02\"]},\n"
    "    {\"name\": \"model_04\", \"url\": \"/model_04\",\n"
    "     \"fields\": {\"model_03\": {\"result_of\": \"model_03\"}}, \"csv\": false},\n"
    "    {\"name\": \"model_05\", \"url\": \"/model_05\", \"fields\": {\"model_03\": null},\n"
    "     \"input\": {\"each\": \"model_04\", \"array\": \"sub-img\", \"field\": \"img\"}}\n"
    "  ]\n"
    "}\n";

/* idx >= 0: a stage; IDX_FILE: the file as a whole; IDX_DEFAULTS: its "defaults" object. */
#define IDX_FILE (-1)
#define IDX_DEFAULTS (-2)

/* Writes "SOURCE: stage N (NAME): what" into err, what being fmt's text; without a name
 * "SOURCE: stage N: what", and for the file or its defaults "SOURCE: what" and
 * "SOURCE: \"defaults\": what". Returns -1. */
static int vfail(char *err, size_t errlen, const char *source, int idx, const char *name, const char *fmt,
                 va_list ap)
{
    char what[400];
    vsnprintf(what, sizeof what, fmt, ap);
    if (idx == IDX_DEFAULTS)
        snprintf(err, errlen, "%s: \"defaults\": %s", source, what);
    else if (idx < 0)
        snprintf(err, errlen, "%s: %s", source, what);
    else if (name)
        snprintf(err, errlen, "%s: stage %d (%s): %s", source, idx + 1, name, what);
    else
        snprintf(err, errlen, "%s: stage %d: %s", source, idx + 1, what);
    return -1;
}

static int fail(char *err, size_t errlen, const char *source, int idx, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int fail(char *err, size_t errlen, const char *source, int idx, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(err, errlen, source, idx, name, fmt, ap);
    va_end(ap);
    return -1;
}

#define OOM(err, errlen, src) fail(err, errlen, src, IDX_FILE, NULL, "out of memory")

/* What the parser reads one object of the file with: the pipeline so far, whose object it is (a
 * stage, or the defaults) and where a message goes. */
struct reader {
    struct pipeline *p;
    struct stage *s;     /* the stage read, or NULL: the defaults */
    int i;               /* its index, or IDX_DEFAULTS */
    const cJSON *all;    /* the file's "stages" array, to tell a later stage from an unknown name */
    const char *src;     /* the file's name */
    char *err;
    size_t errlen;
};

/* "SOURCE: stage N (NAME): what" (or "SOURCE: \"defaults\": what") into the reader's err. -1. */
static int failr(const struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int failr(const struct reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(r->err, r->errlen, r->src, r->i, r->s ? r->s->name : NULL, fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(const struct reader *r)
{
    return OOM(r->err, r->errlen, r->src);
}

static int find_stage(const struct pipeline *p, int before, const char *name)
{
    for (int i = 0; i < before; i++)
        if (strcmp(p->stages[i].name, name) == 0)
            return i;
    return -1;
}

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

static int line_of(const char *text, size_t len, size_t at)
{
    int line = 1;
    for (size_t i = 0; i < at && i < len; i++)
        line += text[i] == '\n';
    return line;
}

/* Resolves a stage reference (a string naming an earlier stage). */
static int ref(const struct reader *r, const cJSON *v, const char *what, int *out)
{
    if (!cJSON_IsString(v))
        return failr(r, "%s must be the name of an earlier stage", what);
    int k = find_stage(r->p, r->i, v->valuestring);
    if (k < 0)
        return failr(r, "%s names \"%s\", which is not an earlier stage", what, v->valuestring);
    *out = k;
    return 0;
}

/* Optimal string alignment distance (Levenshtein plus adjacent swaps), ignoring case, of two
 * short words; 99 when one is longer than 31. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 31 || lb > 31)
        return 99;
    int d[32][32];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]) && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

/* The words with a meaning inside "fields". A one-key object whose key is within two edits of
 * one of them ({"reslt_of": "a"}) was meant as that word: sent as a literal, it would fail every
 * image with the server's 400, one at a time. */
static const char *const FIELD_WORDS[] = {"result_of", NULL};

static const char *near_field_word(const char *key)
{
    for (int w = 0; FIELD_WORDS[w]; w++)
        if (strcmp(key, FIELD_WORDS[w]) && edit_distance(key, FIELD_WORDS[w]) <= 2)
            return FIELD_WORDS[w];
    return NULL;
}

/* The first key of object js that appears again later in it, or NULL. cJSON keeps both, and
 * its lookups find the first, so a second "url" or "stages" would be silently ignored. */
static const char *duplicate_key(const cJSON *js)
{
    for (const cJSON *kv = js->child; kv; kv = kv->next)
        for (const cJSON *prev = js->child; prev != kv; prev = prev->next)
            if (!strcmp(prev->string, kv->string))
                return kv->string;
    return NULL;
}

/* ---- values that a stage and the defaults both give ---- */

static int parse_headers(const struct reader *r, const cJSON *kv, char ***out, int *n_out)
{
    char what[400];
    int rc = headers_parse(kv, out, n_out, what, sizeof what);
    return rc == HEADERS_OOM ? oom(r) : rc ? failr(r, "%s", what) : 0;
}

static int parse_timeout(const struct reader *r, const cJSON *kv, long *out)
{
    if (!cJSON_IsNumber(kv) || kv->valuedouble < 1 || kv->valuedouble > 86400000)
        return failr(r, "\"timeout_ms\" must be a number from 1 to 86400000");
    *out = (long)kv->valuedouble;
    return 0;
}

static int parse_retries(const struct reader *r, const cJSON *kv, int *out)
{
    if (!cJSON_IsNumber(kv) || kv->valuedouble < 0 || kv->valuedouble > 100)
        return failr(r, "\"retries\" must be a number from 0 to 100");
    *out = (int)kv->valuedouble;
    return 0;
}

/* "concurrency": a number of requests in flight, or "auto" (an adaptive limit, limit.h). */
static int parse_concurrency(const struct reader *r, const cJSON *kv, int *out)
{
    if (cJSON_IsString(kv) && !strcmp(kv->valuestring, "auto")) {
        *out = STAGE_CONCURRENCY_AUTO;
        return 0;
    }
    if (!cJSON_IsNumber(kv) || kv->valuedouble < 1 || kv->valuedouble > STAGE_CONCURRENCY_MAX ||
        kv->valuedouble != floor(kv->valuedouble))
        return failr(r, "\"concurrency\" must be a whole number from 1 to %d, or \"auto\"", STAGE_CONCURRENCY_MAX);
    *out = (int)kv->valuedouble;
    return 0;
}

/* "max_rps": requests per second, as --max-rps (without its 0: a stage without a limit says
 * nothing). */
static int parse_max_rps(const struct reader *r, const cJSON *kv, double *out)
{
    if (!cJSON_IsNumber(kv) || !(kv->valuedouble >= 0.001) || kv->valuedouble > 1e7)
        return failr(r, "\"max_rps\" must be a number of requests per second from 0.001 to 10000000");
    *out = kv->valuedouble;
    return 0;
}

/* ---- names of stages inside a stage: templates and jq "when" ---- */

/* 1 when name (n bytes) is the name of a stage after the one r reads. */
static int later_stage(const struct reader *r, const char *name, size_t n)
{
    int k = 0;
    for (const cJSON *js = r->all ? r->all->child : NULL; js; js = js->next, k++) {
        const cJSON *nm = k > r->i ? cJSON_GetObjectItemCaseSensitive(js, "name") : NULL;
        if (cJSON_IsString(nm) && strlen(nm->valuestring) == n && !memcmp(nm->valuestring, name, n))
            return 1;
    }
    return 0;
}

/* A template's {{STAGE}} (template.h: tmpl_stage_ref); arg is the struct reader. */
static int placeholder_stage(void *arg, const char *name, char *err, size_t errlen)
{
    const struct reader *r = arg;
    int k = find_stage(r->p, r->i, name);
    if (k >= 0)
        return k;
    if (!strcmp(name, r->s->name))
        snprintf(err, errlen, "a stage cannot send its own result");
    else if (later_stage(r, name, strlen(name)))
        snprintf(err, errlen, "\"%s\" is a later stage; a stage may only send earlier stages' results", name);
    else
        snprintf(err, errlen, "unknown placeholder (known: image, image.bytes, image.file, image.mime, image.width, "
                              "image.height, path, name, index, or an earlier stage's name)");
    return -1;
}

static int is_word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

/* The stages a jq "when" names: each earlier stage's name that appears in it as a whole word
 * (.model_01.x, .["model_01"]). A later stage's name is an error. */
static int when_refs(const struct reader *r, const char *text, uint64_t *mask, char *bad, size_t badlen)
{
    size_t tl = strlen(text);
    for (size_t a = 0; a < tl; a++) {
        if (!(isalnum((unsigned char)text[a]) || text[a] == '_') || (a > 0 && is_word_char(text[a - 1]) && text[a - 1] != '.'))
            continue;
        size_t b = a;
        while (b < tl && (isalnum((unsigned char)text[b]) || text[b] == '_' || text[b] == '-'))
            b++;
        /* the longest run of name characters that is a stage's name, dots included */
        size_t e = b;
        while (e < tl && is_word_char(text[e]))
            e++;
        for (size_t end = e; end > a; end--) {
            if (end < tl && is_word_char(text[end]) && text[end] != '.')
                continue;
            char nm[128];
            if (end - a >= sizeof nm)
                continue;
            memcpy(nm, text + a, end - a);
            nm[end - a] = 0;
            int k = find_stage(r->p, r->i, nm);
            if (k >= 0) {
                *mask |= 1ull << k;
                break;
            }
            if (later_stage(r, nm, end - a) || !strcmp(nm, r->s->name)) {
                snprintf(bad, badlen, "%s", nm);
                return -1;
            }
        }
        a = b;
    }
    return 0;
}

static int parse_expr(const struct reader *r, struct expr *e, const cJSON *kv, const char *key)
{
    if (!cJSON_IsString(kv) || !kv->valuestring[0])
        return failr(r, "\"%s\" must be a jq expression (a string)", key);
    char why[400];
    if (expr_compile(e, kv->valuestring, why, sizeof why))
        return failr(r, "\"%s\": %s", key, why);
    return 0;
}

/* ---- a stage's keys, one function each ---- */

/* What a stage's keys leave for the steps after them: the parts of its body, compiled together
 * once every key is read. */
struct body_keys {
    const cJSON *body, *form, *fields, *batch, *item;
};

/* Reads one key (kv) of the stage r reads. 0, or -1 with r's err. */
typedef int stage_key_fn(const struct reader *r, const cJSON *kv, struct body_keys *b);

static int key_name(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)r, (void)kv, (void)b; /* read first, by parse_name */
    return 0;
}

/* Entry k of "url": a URL unlike the ones before it. */
static int url_entry(const struct reader *r, const cJSON *u, int k)
{
    struct stage *s = r->s;
    char what[128];
    if (!cJSON_IsString(u) || !u->valuestring[0])
        return failr(r, "\"url\" must be a non-empty string (or a list of them)");
    if (url_chars_problem(u->valuestring, what, sizeof what))
        return failr(r, "\"url\" %s", what);
    for (int q = 0; q < k; q++)
        if (!strcmp(s->urls[q], u->valuestring))
            return failr(r, "\"url\" lists \"%s\" twice", u->valuestring);
    if (!(s->urls[k] = strdup(u->valuestring)))
        return oom(r);
    s->n_urls = k + 1;
    return 0;
}

/* "url": one URL, or a list of replicas' URLs, which take slots in the shared page. */
static int key_url(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    struct stage *s = r->s;
    struct pipeline *p = r->p;
    int n = cJSON_IsArray(kv) ? cJSON_GetArraySize(kv) : 1;
    if (cJSON_IsArray(kv) && (n < 1 || n > PIPELINE_MAX_REPLICAS))
        return failr(r, "\"url\" must be a URL or a list of 1 to %d replicas' URLs", PIPELINE_MAX_REPLICAS);
    if (!(s->urls = calloc((size_t)n, sizeof *s->urls)) || !(s->rep_full = calloc((size_t)n, sizeof *s->rep_full)) ||
        !(s->rep_shown = calloc((size_t)n, sizeof *s->rep_shown)))
        return oom(r);
    for (int k = 0; k < n; k++)
        if (url_entry(r, cJSON_IsArray(kv) ? cJSON_GetArrayItem(kv, k) : kv, k))
            return -1;
    if (p->n_replica_slots + n > PIPELINE_MAX_REPLICA_SLOTS && n > 1)
        return failr(r, "more than %d replicas in the pipeline", PIPELINE_MAX_REPLICA_SLOTS);
    if (n > 1) {
        s->replica_base = p->n_replica_slots;
        p->n_replica_slots += n;
    }
    if (!(s->url = strdup(s->urls[0])))
        return oom(r);
    return 0;
}

/* "input": {"each": STAGE, "crop": EXPR, "box": ..., "normalized": ...}: boxes to cut. */
static int crop_input(const struct reader *r, const cJSON *kv, const cJSON *crop)
{
    struct stage *s = r->s;
    char why[300];
    for (const cJSON *k = kv->child; k; k = k->next)
        if (strcmp(k->string, "each") && strcmp(k->string, "crop") && strcmp(k->string, "box") &&
            strcmp(k->string, "normalized"))
            return failr(r, "\"input\": unknown key \"%s\" beside \"crop\" (known: each, crop, box, normalized)",
                         k->string);
    if (prep_box_parse(kv, &s->box, why, sizeof why))
        return failr(r, "%s", why);
    if (parse_expr(r, &s->crop_expr, crop, "input.crop"))
        return -1;
    s->crop = 1;
    return 0;
}

/* "input": "image", or one request per element of an earlier stage's result, or per box. */
static int key_input(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    struct stage *s = r->s;
    if (cJSON_IsString(kv) && !strcmp(kv->valuestring, "image"))
        return 0;
    const char *shape = "\"input\" must be \"image\", {\"each\": STAGE, \"items\": EXPR}, "
                        "{\"each\": STAGE, \"array\": KEY, \"field\": KEY} or {\"each\": STAGE, \"crop\": EXPR}";
    if (!cJSON_IsObject(kv))
        return failr(r, "%s", shape);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(kv, "each");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(kv, "array");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(kv, "field");
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(kv, "items");
    const cJSON *crop = cJSON_GetObjectItemCaseSensitive(kv, "crop");
    int keys = cJSON_GetArraySize(kv);
    if (!e || !(crop || (keys == 3 && cJSON_IsString(a) && cJSON_IsString(f)) || (keys == 2 && it)))
        return failr(r, "%s", shape);
    if (ref(r, e, "\"input.each\"", &s->each_stage))
        return -1;
    s->input = INPUT_EACH;
    if (crop) {
        if (crop_input(r, kv, crop))
            return -1;
    } else if (it) {
        if (parse_expr(r, &s->items, it, "input.items"))
            return -1;
    } else if (!(s->each_array = strdup(a->valuestring)) || !(s->each_field = strdup(f->valuestring))) {
        return oom(r);
    }
    s->dep_mask |= 1ull << s->each_stage;
    return 0;
}

/* "image": how the stage's image is prepared (prepare/spec.h); registered in p->specs by
 * image_spec once the stage's "input" is known. */
static int key_image(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    char why[300];
    if (prep_spec_parse(kv, &r->s->image, why, sizeof why))
        return failr(r, "%s", why);
    r->s->has_image = 1;
    return 0;
}

/* One entry of "fields": a JSON literal, or {"result_of": STAGE}. */
static int field_entry(const struct reader *r, const cJSON *f)
{
    struct stage *s = r->s;
    struct stage_field *sf = &s->fields[s->n_fields++];
    sf->result_of = -1;
    if (!(sf->name = strdup(f->string)))
        return oom(r);
    if (!strcmp(f->string, "im_str"))
        return failr(r, "\"fields\" may not set \"im_str\": it is the input");
    for (int j = 0; j < s->n_fields - 1; j++)
        if (!strcmp(s->fields[j].name, f->string))
            return failr(r, "field \"%s\" is set twice", f->string);
    const cJSON *only = cJSON_IsObject(f) && cJSON_GetArraySize(f) == 1 ? f->child : NULL;
    const char *meant = only ? near_field_word(only->string) : NULL;
    if (meant)
        return failr(r,
                     "field \"%s\": {\"%.40s\": ...} is not a reference; did you mean \"%s\"? (to send an "
                     "object with that key as it is, give it a second key)",
                     f->string, only->string, meant);
    if (only && !strcmp(only->string, "result_of")) {
        if (ref(r, only, "\"result_of\"", &sf->result_of))
            return -1;
        s->dep_mask |= 1ull << sf->result_of;
    } else if (!(sf->literal = cJSON_PrintUnformatted(f))) {
        return oom(r);
    }
    return 0;
}

/* "fields": the seed body's extra request fields. */
static int key_fields(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    struct stage *s = r->s;
    if (!cJSON_IsObject(kv))
        return failr(r, "\"fields\" must be an object");
    int n = cJSON_GetArraySize(kv);
    if (!(s->fields = calloc((size_t)n + 1, sizeof *s->fields)))
        return oom(r);
    for (const cJSON *f = kv->child; f; f = f->next)
        if (field_entry(r, f))
            return -1;
    b->fields = kv;
    return 0;
}

static int key_body(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)r;
    b->body = kv;
    return 0;
}

static int key_form(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)r;
    b->form = kv;
    return 0;
}

/* "result", "error", "retry_if", "retry_after": expressions on the answer. */
static int key_answer(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    struct stage *s = r->s;
    const char *k = kv->string;
    struct expr *e = !strcmp(k, "error")         ? &s->error
                     : !strcmp(k, "retry_if")    ? &s->retry_if
                     : !strcmp(k, "retry_after") ? &s->retry_after
                     : !strcmp(k, "column")      ? &s->column
                                                 : &s->result;
    return parse_expr(r, e, kv, k);
}

static int key_retry_on(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    struct stage *s = r->s;
    int n = cJSON_GetArraySize(kv);
    if (!cJSON_IsArray(kv) || n > (int)(sizeof s->retry_on / sizeof s->retry_on[0]))
        return failr(r, "\"retry_on\" must be a list of up to 32 HTTP status codes");
    s->n_retry_on = 0;
    for (const cJSON *c = kv->child; c; c = c->next) {
        if (!cJSON_IsNumber(c) || c->valuedouble != (int)c->valuedouble || c->valuedouble < 100 || c->valuedouble > 599)
            return failr(r, "\"retry_on\": each entry must be a status code from 100 to 599");
        s->retry_on[s->n_retry_on++] = (int)c->valuedouble;
    }
    return 0;
}

/* "when": a list of earlier stages, or a jq expression over the stages it names. */
static int key_when(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    struct stage *s = r->s;
    if (cJSON_IsString(kv)) {
        char bad[128];
        if (parse_expr(r, &s->when, kv, "when"))
            return -1;
        if (when_refs(r, kv->valuestring, &s->when_mask, bad, sizeof bad))
            return failr(r, "\"when\" names \"%s\", which is not an earlier stage", bad);
        s->dep_mask |= s->when_mask;
        return 0;
    }
    if (!cJSON_IsArray(kv))
        return failr(r, "\"when\" must be an array of stage names or a jq expression (a string)");
    for (const cJSON *w = kv->child; w; w = w->next) {
        int idx;
        if (ref(r, w, "\"when\"", &idx))
            return -1;
        s->when_mask |= 1ull << idx;
        s->dep_mask |= 1ull << idx;
    }
    return 0;
}

static int key_csv(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    if (cJSON_IsString(kv) && !strcmp(kv->valuestring, "text")) {
        r->s->csv = STAGE_CSV_TEXT;
        return 0;
    }
    if (!cJSON_IsBool(kv))
        return failr(r, "\"csv\" must be true, false or \"text\" (a string result as its plain text)");
    r->s->csv = cJSON_IsTrue(kv) ? STAGE_CSV_JSON : STAGE_CSV_NONE;
    return 0;
}

static int key_timeout(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    return parse_timeout(r, kv, &r->s->timeout_ms);
}

static int key_retries(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    return parse_retries(r, kv, &r->s->retries);
}

static int key_headers(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    return parse_headers(r, kv, &r->s->header_tmpl, &r->s->n_headers);
}

static int key_concurrency(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    return parse_concurrency(r, kv, &r->s->concurrency);
}

static int key_max_rps(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    return parse_max_rps(r, kv, &r->s->max_rps);
}

/* "batch": {"size": N, "max_wait_ms": T, "item": TEMPLATE}; b->item gets "item" or NULL. */
static int key_batch(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    struct stage *s = r->s;
    if (!cJSON_IsObject(kv))
        return failr(r, "\"batch\" must be an object: {\"size\": N, \"max_wait_ms\": T}");
    s->batch_wait_ms = STAGE_BATCH_WAIT_MS;
    for (const cJSON *e = kv->child; e; e = e->next) {
        if (!strcmp(e->string, "size")) {
            if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int)e->valuedouble || e->valuedouble < 1 ||
                e->valuedouble > STAGE_BATCH_MAX)
                return failr(r, "\"batch\": \"size\" must be a whole number from 1 to %d", STAGE_BATCH_MAX);
            s->batch_size = (int)e->valuedouble;
        } else if (!strcmp(e->string, "max_wait_ms")) {
            if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0) || e->valuedouble > 60000)
                return failr(r, "\"batch\": \"max_wait_ms\" must be a number of milliseconds from 0 to 60000");
            s->batch_wait_ms = (long)e->valuedouble;
        } else if (!strcmp(e->string, "item")) {
            b->item = e;
        } else {
            return failr(r, "\"batch\": unknown key \"%s\" (known: size, max_wait_ms, item)", e->string);
        }
    }
    if (!s->batch_size)
        return failr(r, "\"batch\" needs \"size\": the most items one request carries");
    b->batch = kv;
    return 0;
}

/* "version": a label the user changes when another model goes behind the same URL, so that the
 * answer store (--cache) asks again; printable text, at most 127 bytes. */
static int key_version(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    (void)b;
    if (!cJSON_IsString(kv) || !kv->valuestring[0] || strlen(kv->valuestring) > 127)
        return failr(r, "\"version\" must be a non-empty string of at most 127 bytes");
    for (const unsigned char *c = (const unsigned char *)kv->valuestring; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return failr(r, "\"version\" holds a control character");
    if (!(r->s->version = strdup(kv->valuestring)))
        return oom(r);
    return 0;
}

/* A stage's keys, in the order the message for an unknown key lists them. */
static const struct {
    const char *name;
    stage_key_fn *read;
} STAGE_KEYS[] = {
    {"name", key_name},
    {"url", key_url},
    {"input", key_input},
    {"body", key_body},
    {"form", key_form},
    {"fields", key_fields},
    {"result", key_answer},
    {"column", key_answer},
    {"error", key_answer},
    {"retry_if", key_answer},
    {"retry_after", key_answer},
    {"retry_on", key_retry_on},
    {"when", key_when},
    {"csv", key_csv},
    {"timeout_ms", key_timeout},
    {"retries", key_retries},
    {"headers", key_headers},
    {"concurrency", key_concurrency},
    {"max_rps", key_max_rps},
    {"batch", key_batch},
    {"image", key_image},
    {"version", key_version},
};

#define N_STAGE_KEYS (sizeof STAGE_KEYS / sizeof STAGE_KEYS[0])

static int read_key(const struct reader *r, const cJSON *kv, struct body_keys *b)
{
    for (size_t k = 0; k < N_STAGE_KEYS; k++)
        if (!strcmp(kv->string, STAGE_KEYS[k].name))
            return STAGE_KEYS[k].read(r, kv, b);
    char known[256];
    size_t o = 0;
    for (size_t k = 0; k < N_STAGE_KEYS && o < sizeof known; k++)
        o += (size_t)snprintf(known + o, sizeof known - o, "%s%s", k ? ", " : "", STAGE_KEYS[k].name);
    return failr(r, "unknown key \"%s\" (known: %s)", kv->string, known);
}

/* ---- a stage ---- */

static const char *const FIXED_COLUMNS[] = {"path", "status", "error", "attempts", "elapsed_ms"};

/* "name": unique, and not a fixed CSV column's. Also refuses a key given twice. */
static int parse_name(const struct reader *r, const cJSON *js)
{
    struct stage *s = r->s;
    if (!cJSON_IsObject(js))
        return failr(r, "a stage must be a JSON object");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
    if (!cJSON_IsString(name))
        return failr(r, "\"name\" is missing or not a string");
    if (!valid_name(name->valuestring))
        return failr(r, "\"name\" \"%.64s\" must be a non-empty string of letters, digits, '_', '-' or '.'",
                     name->valuestring);
    if (!(s->name = strdup(name->valuestring)))
        return oom(r);
    if (find_stage(r->p, r->i, s->name) >= 0)
        return failr(r, "the name is used by an earlier stage");
    for (size_t c = 0; c < sizeof FIXED_COLUMNS / sizeof FIXED_COLUMNS[0]; c++)
        if (!strcmp(s->name, FIXED_COLUMNS[c]))
            return failr(r, "the name is taken by a fixed CSV column");
    const char *dup = duplicate_key(js);
    if (dup)
        return failr(r, "key \"%s\" appears twice", dup);
    return 0;
}

/* The keys that make the body, as they may be combined. */
static int check_body_keys(const struct reader *r, const struct body_keys *b)
{
    if ((b->body || b->form) && b->fields)
        return failr(r, "\"fields\" belongs to the seed's body; with \"%s\", put the fields in it",
                     b->body ? "body" : "form");
    if (b->body && b->form)
        return failr(r, "\"body\" and \"form\" are two kinds of body: give one");
    if (b->item && !b->body)
        return failr(r, "\"batch\": \"item\" goes with a \"body\" holding \"{{batch}}\" (the seed's body makes its own items)");
    return 0;
}

/* The seed's body, [{"im_str": ..., ...fields}]. */
static int compile_seed(const struct reader *r)
{
    struct stage *s = r->s;
    struct seed_field sf[64];
    int n = s->n_fields < 64 ? s->n_fields : 64;
    for (int f = 0; f < n; f++)
        sf[f] = (struct seed_field){s->fields[f].name, s->fields[f].literal, s->fields[f].result_of};
    if (s->n_fields > 64)
        return failr(r, "\"fields\" holds more than 64 fields");
    if (body_compile_seed(&s->body, sf, n))
        return oom(r);
    return 0;
}

/* The stage's body: "body" or "form" compiled as a template, else the seed's; with "batch", the
 * template is one item ("item", or the image) and "body" the request around the items. */
static int compile_body(struct reader *r, const struct body_keys *b)
{
    struct stage *s = r->s;
    char why[400];
    cJSON *image_item = NULL;
    const cJSON *body = b->body, *outer = NULL, *item = b->item;
    if (b->batch && body) {
        outer = body;
        if (!item && !(item = image_item = cJSON_CreateString("{{image}}")))
            return oom(r);
        body = item;
    }
    int bad = body     ? body_compile_json(&s->body, body, placeholder_stage, r, why, sizeof why)
              : b->form ? body_compile_form(&s->body, b->form, placeholder_stage, r, why, sizeof why)
                        : 0;
    cJSON_Delete(image_item);
    if (bad)
        return failr(r, "\"%s\": %s", outer ? "batch\": \"item" : body ? "body" : "form", why);
    if (!body && !b->form && compile_seed(r))
        return -1;
    if (b->batch && body_batch(&s->body, outer, why, sizeof why))
        return failr(r, "\"%s\": %s", outer ? "body" : "batch", why);
    s->dep_mask |= s->body.stage_refs;
    return 0;
}

/* An image stage's "image" as an index into p->specs: one prepared copy per distinct spec,
 * shared by every stage that asks for it. A crop stage's prepares its crops; an "each" stage of
 * elements sends them as the answer had them. */
static int image_spec(const struct reader *r)
{
    struct stage *s = r->s;
    struct pipeline *p = r->p;
    s->spec = -1;
    if (!s->has_image || s->crop)
        return 0;
    if (s->input == INPUT_EACH)
        return failr(r, "\"image\" prepares the file or its crops; an \"each\" stage sends the elements as "
                        "the answer had them");
    for (int k = 0; k < p->n_specs; k++)
        if (prep_spec_equal(&p->specs[k], &s->image))
            return s->spec = k, 0;
    p->specs[p->n_specs] = s->image;
    s->spec = p->n_specs++;
    return 0;
}

/* What follows from the keys together: the default result, the prepared copy, and the body's
 * Content-Type. */
static int finish_stage(const struct reader *r)
{
    struct stage *s = r->s;
    char why[400];
    if (image_spec(r))
        return -1;
    if (!s->result.text && expr_compile(&s->result, ".result", why, sizeof why))
        return oom(r);
    if (s->body.kind == BODY_RAW && !header_named(s->header_tmpl, s->n_headers, "Content-Type"))
        s->type_of_image = 1;
    if (s->body.kind == BODY_FORM && header_named(s->header_tmpl, s->n_headers, "Content-Type"))
        return failr(r, "a \"form\" body sets its own Content-Type (multipart/form-data with its boundary): "
                        "remove the stage's Content-Type header");
    return 0;
}

/* Stage i of the file (js) into p->stages[i]: its name, each of its keys, then what several keys
 * make together. all is the file's "stages" array. */
static int parse_stage(struct pipeline *p, int i, const cJSON *js, const cJSON *all, const char *src, char *err,
                       size_t errlen)
{
    struct stage *s = &p->stages[i];
    struct reader r = {p, s, i, all, src, err, errlen};
    struct body_keys b = {0};
    s->each_stage = -1;
    s->spec = -1;
    s->n_retry_on = -1;
    s->csv = STAGE_CSV_JSON;
    s->timeout_ms = -1;
    s->retries = -1;
    if (parse_name(&r, js))
        return -1;
    for (const cJSON *kv = js->child; kv; kv = kv->next)
        if (read_key(&r, kv, &b))
            return -1;
    if (!s->url)
        return failr(&r, "\"url\" is missing");
    if (check_body_keys(&r, &b) || compile_body(&r, &b))
        return -1;
    return finish_stage(&r);
}

/* ---- the file ---- */

/* "defaults": what every stage gets unless it says otherwise (-1, 0: nothing given). */
struct stage_defaults {
    long timeout_ms;
    int retries, concurrency;
    double max_rps;
};

static int parse_defaults(struct pipeline *p, const cJSON *js, struct stage_defaults *d, const char *src, char *err,
                          size_t errlen)
{
    const struct reader r = {p, NULL, IDX_DEFAULTS, NULL, src, err, errlen};
    if (!cJSON_IsObject(js))
        return failr(&r, "must be an object with \"headers\", \"timeout_ms\", \"retries\", \"concurrency\" or \"max_rps\"");
    const char *dup = duplicate_key(js);
    if (dup)
        return failr(&r, "key \"%s\" appears twice", dup);
    for (const cJSON *kv = js->child; kv; kv = kv->next) {
        const char *k = kv->string;
        int rc = !strcmp(k, "headers")       ? parse_headers(&r, kv, &p->default_headers, &p->n_default_headers)
                 : !strcmp(k, "timeout_ms")  ? parse_timeout(&r, kv, &d->timeout_ms)
                 : !strcmp(k, "retries")     ? parse_retries(&r, kv, &d->retries)
                 : !strcmp(k, "concurrency") ? parse_concurrency(&r, kv, &d->concurrency)
                 : !strcmp(k, "max_rps")     ? parse_max_rps(&r, kv, &d->max_rps)
                                             : failr(&r, "unknown key \"%s\" (known: headers, timeout_ms, retries, "
                                                         "concurrency, max_rps)", k);
        if (rc)
            return -1;
    }
    return 0;
}

/* What stage s does not say itself, it takes from the defaults. */
static void apply_defaults(struct stage *s, const struct stage_defaults *d)
{
    if (s->timeout_ms < 0)
        s->timeout_ms = d->timeout_ms;
    if (s->retries < 0)
        s->retries = d->retries;
    if (s->concurrency == 0)
        s->concurrency = d->concurrency;
    if (s->max_rps == 0)
        s->max_rps = d->max_rps;
}

/* Where the first NUL character inside a string is: a raw 0 byte, or the escape \u0000. cJSON
 * keeps strings NUL-terminated, so whatever follows it in a URL, a header or a field would be
 * dropped without a word. Returns its offset, or -1; *stage gets the index of the element of the
 * top-level "stages" array it is in, or -1. The text is valid JSON (cJSON parsed it). */
static long find_nul(const char *t, size_t len, int *stage)
{
    int depth = 0, in_str = 0, in_stages = 0, last_str_stages = 0;
    size_t str_start = 0;
    *stage = -1;
    for (size_t i = 0; i < len; i++) {
        char c = t[i];
        if (in_str) {
            if (c == 0)
                return (long)i;
            if (c == '\\' && i + 1 < len) {
                if (t[i + 1] == 'u' && i + 5 < len && !memcmp(t + i + 2, "0000", 4))
                    return (long)i;
                i++;
            } else if (c == '"') {
                in_str = 0;
                last_str_stages = depth == 1 && i - str_start == 6 && !memcmp(t + str_start, "stages", 6);
            }
            continue;
        }
        if (c == '"') {
            in_str = 1;
            str_start = i + 1;
        } else if (c == '{' || c == '[') {
            if (c == '[' && depth == 1 && last_str_stages) {
                in_stages = 1;
                *stage = 0;
            }
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
            if (depth == 1 && in_stages) {
                in_stages = 0;
                *stage = -1;
            }
        } else if (c == ',' && depth == 2 && in_stages) {
            (*stage)++;
        }
    }
    *stage = -1;
    return -1;
}

/* A pipeline holding a copy of the text it is parsed from (what a worker process is sent), or
 * NULL when out of memory. */
static struct pipeline *new_pipeline(const char *text, size_t len, const char *source)
{
    struct pipeline *p = calloc(1, sizeof *p);
    if (!p || !(p->source = strdup(source)) || !(p->text = malloc(len + 1))) {
        pipeline_free(p);
        return NULL;
    }
    memcpy(p->text, text, len);
    p->text[len] = 0;
    p->text_len = len;
    return p;
}

/* What cJSON lets through: text after the end of the value (it stops at the first one, used
 * bytes), and a NUL inside a string. */
static int check_text(const char *text, size_t len, size_t used, const cJSON *root, const char *source, char *err,
                      size_t errlen)
{
    for (size_t k = used; k < len; k++)
        if (text[k] != ' ' && text[k] != '\t' && text[k] != '\r' && text[k] != '\n')
            return fail(err, errlen, source, IDX_FILE, NULL,
                        "text after the end of the JSON object (line %d); a pipeline file holds one object",
                        line_of(text, len, k));
    int nul_stage;
    long nul = find_nul(text, used, &nul_stage);
    if (nul < 0)
        return 0;
    const cJSON *st = nul_stage >= 0 ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "stages"), nul_stage) : NULL;
    const cJSON *nm = st ? cJSON_GetObjectItemCaseSensitive(st, "name") : NULL;
    return fail(err, errlen, source, st ? nul_stage : IDX_FILE,
                cJSON_IsString(nm) && valid_name(nm->valuestring) ? nm->valuestring : NULL,
                "a string holds a NUL character (\\u0000) on line %d; it cannot be sent", line_of(text, len, (size_t)nul));
}

/* "stages": each stage in turn, then what it takes from the defaults. */
static int parse_stages(struct pipeline *p, const cJSON *stages, const struct stage_defaults *d, char *err,
                        size_t errlen)
{
    if (!cJSON_IsArray(stages))
        return fail(err, errlen, p->source, IDX_FILE, NULL, "expected an object with a \"stages\" array");
    int n = cJSON_GetArraySize(stages);
    if (n == 0 || n > PIPELINE_MAX_STAGES)
        return fail(err, errlen, p->source, IDX_FILE, NULL, "\"stages\" must hold 1 to %d stages", PIPELINE_MAX_STAGES);
    if (!(p->stages = calloc((size_t)n, sizeof *p->stages)))
        return OOM(err, errlen, p->source);
    int i = 0;
    for (const cJSON *js = stages->child; js; js = js->next, i++) {
        p->n = i + 1;
        if (parse_stage(p, i, js, stages, p->source, err, errlen))
            return -1;
        apply_defaults(&p->stages[i], d);
    }
    return 0;
}

/* The file's object: "defaults" first (wherever it is), then "stages". */
static int parse_file(struct pipeline *p, const cJSON *root, char *err, size_t errlen)
{
    if (!cJSON_IsObject(root))
        return fail(err, errlen, p->source, IDX_FILE, NULL, "expected an object with a \"stages\" array");
    const char *dup = duplicate_key(root);
    if (dup)
        return fail(err, errlen, p->source, IDX_FILE, NULL, "top-level key \"%s\" appears twice", dup);
    struct stage_defaults d = {.timeout_ms = -1, .retries = -1};
    for (const cJSON *kv = root->child; kv; kv = kv->next) {
        if (!strcmp(kv->string, "defaults")) {
            if (parse_defaults(p, kv, &d, p->source, err, errlen))
                return -1;
        } else if (strcmp(kv->string, "stages")) {
            return fail(err, errlen, p->source, IDX_FILE, NULL, "unknown top-level key \"%s\" (known: stages, defaults)",
                        kv->string);
        }
    }
    return parse_stages(p, cJSON_GetObjectItemCaseSensitive(root, "stages"), &d, err, errlen);
}

int pipeline_parse(const char *text, size_t len, const char *source, struct pipeline **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        int line = at && at >= text && at <= text + len ? line_of(text, len, (size_t)(at - text)) : 1;
        return fail(err, errlen, source, IDX_FILE, NULL, "not valid JSON (near line %d)", line);
    }
    size_t used = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
    struct pipeline *p = new_pipeline(text, len, source);
    int rc = !p ? OOM(err, errlen, source)
             : check_text(text, len, used, root, source, err, errlen) || parse_file(p, root, err, errlen) ? -1
                                                                                                          : 0;
    cJSON_Delete(root);
    if (rc) {
        pipeline_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

int pipeline_load(const char *path, struct pipeline **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open the pipeline file: %s", path, strerror(errno));
        return -1;
    }
    /* fopen succeeds on a directory; only the read would fail, with a vaguer message. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        snprintf(err, errlen, "%s: cannot read the pipeline file: %s", path, strerror(EISDIR));
        return -1;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    size_t r;
    while ((r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *bigger = cap > (16u << 20) ? NULL : realloc(buf, cap * 2);
            if (!bigger) {
                fclose(f);
                free(buf);
                snprintf(err, errlen, cap > (16u << 20) ? "%s: the pipeline file is larger than 16 MiB" : "%s: out of memory",
                         path);
                return -1;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    int bad = ferror(f), e = errno;
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "%s: cannot read the pipeline file: %s", path, strerror(e));
        return -1;
    }
    int rc = pipeline_parse(buf, len, path, out, err, errlen);
    free(buf);
    return rc;
}

int pipeline_default(struct pipeline **out)
{
    char err[256];
    return pipeline_parse(pipeline_default_json, sizeof pipeline_default_json - 1, "built-in", out,
                          err, sizeof err);
}

/* A copy of a URL that is safe to print (control characters as '?'), cut at 200 bytes. */
const char *pipeline_printable(const char *s, char *buf, size_t len)
{
    size_t i = 0;
    for (; s[i] && i + 1 < len && i < 200; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = 0;
    return buf;
}

/* "http://..." and the like: a scheme (a letter, then letters, digits, + - .) and "://" at the
 * start. "/proxy?to=http://x" is relative. */
static int has_scheme(const char *url)
{
    if (!((*url >= 'a' && *url <= 'z') || (*url >= 'A' && *url <= 'Z')))
        return 0;
    const char *c = url + 1;
    while (isalnum((unsigned char)*c) || *c == '+' || *c == '-' || *c == '.')
        c++;
    return strncmp(c, "://", 3) == 0;
}

int pipeline_check_base(const char *base, char *err, size_t errlen)
{
    if (url_check(base, err, errlen))
        return -1;
    /* "http://h/v1?k=1" + "/m" would put the stage's path inside the query. */
    if (strpbrk(base, "?#"))
        return snprintf(err, errlen, "holds a query or fragment ('?' or '#'), which stage URLs cannot be joined after"),
               -1;
    return 0;
}

/* base (bl bytes, no trailing '/') joined with a relative url. */
static char *join_url(const char *base, size_t bl, const char *url)
{
    size_t ul = strlen(url);
    char *j = malloc(bl + ul + 2);
    if (!j)
        return NULL;
    memcpy(j, base, bl);
    size_t o = bl;
    if (url[0] != '/')
        j[o++] = '/';
    memcpy(j + o, url, ul + 1);
    return j;
}

/* ${VAR} in a URL: the environment's value. Returns the expanded URL (malloc'd), or NULL with
 * what is wrong in err (never a value). */
static char *expand_url(const char *url, char *err, size_t errlen)
{
    size_t cap = strlen(url) + 1, o = 0;
    char *out = malloc(cap);
    for (const char *c = url; out && *c;) {
        const char *val = NULL;
        char var[128];
        size_t take = 1;
        if (c[0] == '$' && c[1] == '{') {
            const char *end = strchr(c + 2, '}');
            size_t vl = end ? (size_t)(end - c - 2) : 0;
            if (!end || vl == 0 || vl >= sizeof var) {
                snprintf(err, errlen, "\"url\" has a bad ${VAR} reference");
                free(out);
                return NULL;
            }
            memcpy(var, c + 2, vl);
            var[vl] = 0;
            if (!(val = getenv(var))) {
                snprintf(err, errlen, "\"url\" uses ${%s}, which is not set", var);
                free(out);
                return NULL;
            }
            char what[128];
            if (url_chars_problem(val, what, sizeof what)) {
                snprintf(err, errlen, "\"url\" uses ${%s}, whose value %s", var, what);
                free(out);
                return NULL;
            }
            secrets_add(val, strlen(val)); /* a key in the URL: never in a message */
            take = vl + 3;
        }
        size_t add = val ? strlen(val) : 1;
        if (o + add + 1 > cap) {
            cap = (o + add + 1) * 2;
            char *n = realloc(out, cap);
            if (!n) {
                free(out);
                out = NULL;
                break;
            }
            out = n;
        }
        memcpy(out + o, val ? val : c, add);
        o += add;
        c += take;
    }
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    out[o] = 0;
    return out;
}

/* ---- resolving: URLs joined to --server, headers expanded ---- */

/* Where relative URLs are joined: --server without its trailing slashes, and whether it can be. */
struct base {
    const char *url;
    size_t len;
    int ok;
    char why[160]; /* when not ok, what is wrong with it */
};

/* One URL template of stage i: ${VAR} expanded and joined to base into *full, and joined
 * unexpanded into *shown. 0, or -1 with err. */
static int resolve_url(const struct pipeline *p, int i, const char *tmpl, const struct base *b, char **full,
                       char **shown_out, char *err, size_t errlen)
{
    const struct stage *s = &p->stages[i];
    char why[300], shown[256];
    char *url = expand_url(tmpl, why, sizeof why);
    if (!url)
        return fail(err, errlen, p->source, i, s->name, "%s", why);
    if (has_scheme(url)) {
        *full = url;
        if (!(*shown_out = strdup(tmpl)))
            return OOM(err, errlen, p->source);
        if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
            return fail(err, errlen, p->source, i, s->name,
                        "url \"%s\" must start with http:// or https:// (or be relative to --server)",
                        pipeline_printable(tmpl, shown, sizeof shown));
        /* Named by its template: an expanded ${VAR} may be a secret. */
        if (url_check(url, why, sizeof why))
            return fail(err, errlen, p->source, i, s->name, "url \"%s\" %s", pipeline_printable(tmpl, shown, sizeof shown),
                        why);
        return 0;
    }
    if (!b->ok) {
        free(url);
        return fail(err, errlen, p->source, i, s->name, "url \"%s\" is relative to --server \"%s\", which %s", tmpl,
                    pipeline_printable(b->url, shown, sizeof shown), b->why);
    }
    *full = join_url(b->url, b->len, url);
    *shown_out = join_url(b->url, b->len, tmpl);
    free(url);
    if (!*full || !*shown_out)
        return OOM(err, errlen, p->source);
    if (url_check(*full, why, sizeof why))
        return fail(err, errlen, p->source, i, s->name, "url \"%s\" joined to --server is \"%s\", which %s", tmpl,
                    pipeline_printable(*shown_out, shown, sizeof shown), why);
    return 0;
}

/* Stage i's URL and its replicas' URLs, resolved again. */
static int resolve_stage_urls(struct pipeline *p, int i, const struct base *b, char *err, size_t errlen)
{
    struct stage *s = &p->stages[i];
    free(s->full_url);
    free(s->shown_url);
    s->full_url = s->shown_url = NULL;
    if (resolve_url(p, i, s->url, b, &s->full_url, &s->shown_url, err, errlen))
        return -1;
    for (int k = 1; k < s->n_urls; k++) {
        free(s->rep_full[k]);
        free(s->rep_shown[k]);
        s->rep_full[k] = s->rep_shown[k] = NULL;
        if (resolve_url(p, i, s->urls[k], b, &s->rep_full[k], &s->rep_shown[k], err, errlen))
            return -1;
    }
    return 0;
}

/* The base of relative URLs: --server checked, its trailing slashes dropped. */
static struct base base_of(const char *base)
{
    struct base b = {.url = base, .len = strlen(base)};
    b.ok = pipeline_check_base(base, b.why, sizeof b.why) == 0;
    while (b.len && base[b.len - 1] == '/')
        b.len--;
    return b;
}

int pipeline_resolve_urls(struct pipeline *p, const char *base, char *err, size_t errlen)
{
    struct base b = base_of(base);
    for (int i = 0; i < p->n; i++)
        if (resolve_stage_urls(p, i, &b, err, errlen))
            return -1;
    return 0;
}

int pipeline_resolve(struct pipeline *p, const char *base, char *err, size_t errlen)
{
    struct base b = base_of(base);
    char where[400];
    struct header_sources hs;
    snprintf(where, sizeof where, "%s: \"defaults\"", p->source);
    if (header_sources_expand(p, where, &hs, err, errlen))
        return -1;
    int rc = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        snprintf(where, sizeof where, "%s: stage %d (%s)", p->source, i + 1, p->stages[i].name);
        rc = resolve_stage_urls(p, i, &b, err, errlen) || headers_resolve_stage(p, &p->stages[i], &hs, where, err, errlen);
    }
    header_sources_wipe(&hs);
    return rc ? -1 : 0;
}

int pipeline_adopt_resolved(struct pipeline *p, int i, const char *full_url, const char *shown_url,
                            const char *const *lines, int n)
{
    struct stage *s = &p->stages[i];
    free(s->shown_url);
    if (!(s->shown_url = strdup(shown_url)))
        return -1;
    free(s->full_url);
    if (!(s->full_url = strdup(full_url)))
        return -1;
    return headers_adopt(p, s, lines, n);
}

int pipeline_adopt_replica(struct pipeline *p, int i, int k, const char *full_url, const char *shown_url)
{
    struct stage *s = &p->stages[i];
    if (k < 1 || k >= s->n_urls)
        return -1;
    free(s->rep_full[k]);
    free(s->rep_shown[k]);
    s->rep_full[k] = strdup(full_url);
    s->rep_shown[k] = strdup(shown_url);
    return s->rep_full[k] && s->rep_shown[k] ? 0 : -1;
}

const char *pipeline_replica_url(const struct stage *s, int k, int shown)
{
    if (k <= 0 || k >= s->n_urls)
        return shown ? s->shown_url : s->full_url;
    return shown ? s->rep_shown[k] : s->rep_full[k];
}

unsigned pipeline_needs(const struct pipeline *p)
{
    unsigned n = 0;
    for (int i = 0; i < p->n; i++)
        if (p->stages[i].input == INPUT_IMAGE && p->stages[i].spec < 0)
            n |= p->stages[i].body.needs;
    return n;
}

unsigned pipeline_spec_needs(const struct pipeline *p, int k)
{
    unsigned n = 0;
    for (int i = 0; i < p->n; i++)
        if (p->stages[i].input == INPUT_IMAGE && p->stages[i].spec == k)
            n |= p->stages[i].body.needs;
    return n;
}

int pipeline_crops(const struct pipeline *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->stages[i].crop)
            return 1;
    return 0;
}

int pipeline_prepares(const struct pipeline *p)
{
    return p->n_specs > 0 || pipeline_crops(p) || (pipeline_needs(p) & NEED_SIZE);
}

int pipeline_csv_columns(const struct pipeline *p)
{
    int n = 0;
    for (int i = 0; i < p->n; i++)
        n += p->stages[i].csv != STAGE_CSV_NONE;
    return n;
}

void pipeline_free(struct pipeline *p)
{
    if (!p)
        return;
    headers_free(p);
    for (int i = 0; i < p->n; i++) {
        struct stage *s = &p->stages[i];
        free(s->name);
        free(s->url);
        free(s->version);
        free(s->full_url);
        free(s->each_array);
        free(s->each_field);
        for (int f = 0; f < s->n_fields; f++) {
            free(s->fields[f].name);
            free(s->fields[f].literal);
        }
        free(s->fields);
        body_free(&s->body);
        expr_free(&s->result);
        expr_free(&s->column);
        expr_free(&s->error);
        expr_free(&s->retry_if);
        expr_free(&s->retry_after);
        expr_free(&s->when);
        expr_free(&s->items);
        expr_free(&s->crop_expr);
        free(s->shown_url);
        for (int k = 0; k < s->n_urls; k++) {
            free(s->urls[k]);
            if (k) {
                free(s->rep_full[k]);
                free(s->rep_shown[k]);
            }
        }
        free(s->urls);
        free(s->rep_full);
        free(s->rep_shown);
    }
    free(p->stages);
    free(p->source);
    free(p->text);
    free(p);
}
