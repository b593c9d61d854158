/* pipeline: parse and validate the stage table. See pipeline.h for the file format. Validation
 * is strict (unknown keys are errors) because a typo in a long run's config should fail in the
 * first second, not after six hours. */
#include "pipeline/pipeline.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

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

static int fail(char *err, size_t errlen, const char *source, int idx, const char *name,
                const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
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

#define OOM(err, errlen, src) fail(err, errlen, src, IDX_FILE, NULL, "out of memory")

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
static int ref(const struct pipeline *p, int i, const cJSON *v, const char *what, int *out,
               const char *src, char *err, size_t errlen)
{
    const char *nm = p->stages[i].name;
    if (!cJSON_IsString(v))
        return fail(err, errlen, src, i, nm, "%s must be the name of an earlier stage", what);
    int k = find_stage(p, i, v->valuestring);
    if (k < 0)
        return fail(err, errlen, src, i, nm, "%s names \"%s\", which is not an earlier stage", what,
                    v->valuestring);
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

/* A URL as written in the file: any blank or control character is refused here, because curl
 * would send it as is (or refuse it) and every image would fail with the same error. */
static int url_problem(const char *url, char *what, size_t wl)
{
    for (const char *c = url; *c; c++) {
        unsigned char u = (unsigned char)*c;
        size_t at = (size_t)(c - url) + 1;
        if (u == ' ' || u == '\t')
            return snprintf(what, wl, "holds a blank at character %zu (write a space as %%20)", at), -1;
        if (u == '\r' || u == '\n')
            return snprintf(what, wl, "holds a line break at character %zu", at), -1;
        if (u < 0x20 || u == 0x7f)
            return snprintf(what, wl, "holds a control character (0x%02x) at character %zu", u, at), -1;
    }
    return 0;
}

/* "Name" of a "Name: value" line, as a length. */
static size_t header_name_len(const char *line)
{
    return strcspn(line, ":");
}

static int same_header_name(const char *a, const char *b)
{
    size_t la = header_name_len(a), lb = header_name_len(b);
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* 1 when one of the "Name: value" lines is named name. */
static int header_named(char *const *lines, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (same_header_name(lines[i], name))
            return 1;
    return 0;
}

/* A header name: a non-empty token without ':', blanks or control characters. */
static int valid_header_name(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char u = (unsigned char)s[i];
        if (u <= ' ' || u == ':' || u == 0x7f)
            return 0;
    }
    return 1;
}

/* A "headers" object (a stage's or the defaults') into "Name: value" templates. */
static int parse_headers(const cJSON *kv, char ***out, int *n_out, const char *src, int i, const char *nm,
                         char *err, size_t errlen)
{
    if (!cJSON_IsObject(kv))
        return fail(err, errlen, src, i, nm, "\"headers\" must be an object of strings");
    int n = cJSON_GetArraySize(kv);
    char **tmpl = calloc((size_t)n + 1, sizeof *tmpl);
    if (!tmpl)
        return OOM(err, errlen, src);
    *out = tmpl;
    *n_out = 0;
    for (const cJSON *h = kv->child; h; h = h->next) {
        if (!cJSON_IsString(h) || !valid_header_name(h->string, strlen(h->string)) || strpbrk(h->valuestring, "\r\n"))
            return fail(err, errlen, src, i, nm,
                        "header \"%s\" must be a string without line breaks, named without ':' or spaces", h->string);
        for (int k = 0; k < *n_out; k++)
            if (same_header_name(tmpl[k], h->string))
                return fail(err, errlen, src, i, nm, "header \"%s\" is set twice (header names ignore case)",
                            h->string);
        size_t l = strlen(h->string) + strlen(h->valuestring) + 3;
        char *line = malloc(l);
        if (!line)
            return OOM(err, errlen, src);
        snprintf(line, l, "%s: %s", h->string, h->valuestring);
        tmpl[(*n_out)++] = line;
    }
    return 0;
}

static int parse_timeout(const cJSON *kv, long *out, const char *src, int i, const char *nm, char *err, size_t errlen)
{
    if (!cJSON_IsNumber(kv) || kv->valuedouble < 1 || kv->valuedouble > 86400000)
        return fail(err, errlen, src, i, nm, "\"timeout_ms\" must be a number from 1 to 86400000");
    *out = (long)kv->valuedouble;
    return 0;
}

static int parse_retries(const cJSON *kv, int *out, const char *src, int i, const char *nm, char *err, size_t errlen)
{
    if (!cJSON_IsNumber(kv) || kv->valuedouble < 0 || kv->valuedouble > 100)
        return fail(err, errlen, src, i, nm, "\"retries\" must be a number from 0 to 100");
    *out = (int)kv->valuedouble;
    return 0;
}

/* "concurrency": a number of requests in flight, or "auto" (an adaptive limit, limit.h). */
static int parse_concurrency(const cJSON *kv, int *out, const char *src, int i, const char *nm, char *err,
                             size_t errlen)
{
    if (cJSON_IsString(kv) && !strcmp(kv->valuestring, "auto")) {
        *out = STAGE_CONCURRENCY_AUTO;
        return 0;
    }
    if (!cJSON_IsNumber(kv) || kv->valuedouble < 1 || kv->valuedouble > STAGE_CONCURRENCY_MAX ||
        kv->valuedouble != floor(kv->valuedouble))
        return fail(err, errlen, src, i, nm, "\"concurrency\" must be a whole number from 1 to %d, or \"auto\"",
                    STAGE_CONCURRENCY_MAX);
    *out = (int)kv->valuedouble;
    return 0;
}

/* "max_rps": requests per second, as --max-rps (without its 0: a stage without a limit says
 * nothing). */
static int parse_max_rps(const cJSON *kv, double *out, const char *src, int i, const char *nm, char *err,
                         size_t errlen)
{
    if (!cJSON_IsNumber(kv) || !(kv->valuedouble >= 0.001) || kv->valuedouble > 1e7)
        return fail(err, errlen, src, i, nm, "\"max_rps\" must be a number of requests per second from 0.001 to 10000000");
    *out = kv->valuedouble;
    return 0;
}

/* "batch": {"size": N, "max_wait_ms": T, "item": TEMPLATE}; *item gets "item" or NULL. */
static int parse_batch(const cJSON *kv, struct stage *s, const cJSON **item, const char *src, int i, char *err,
                       size_t errlen)
{
    if (!cJSON_IsObject(kv))
        return fail(err, errlen, src, i, s->name,
                    "\"batch\" must be an object: {\"size\": N, \"max_wait_ms\": T}");
    s->batch_wait_ms = STAGE_BATCH_WAIT_MS;
    for (const cJSON *b = kv->child; b; b = b->next) {
        if (!strcmp(b->string, "size")) {
            if (!cJSON_IsNumber(b) || b->valuedouble != (double)(int)b->valuedouble || b->valuedouble < 1 ||
                b->valuedouble > STAGE_BATCH_MAX)
                return fail(err, errlen, src, i, s->name, "\"batch\": \"size\" must be a whole number from 1 to %d",
                            STAGE_BATCH_MAX);
            s->batch_size = (int)b->valuedouble;
        } else if (!strcmp(b->string, "max_wait_ms")) {
            if (!cJSON_IsNumber(b) || !(b->valuedouble >= 0) || b->valuedouble > 60000)
                return fail(err, errlen, src, i, s->name,
                            "\"batch\": \"max_wait_ms\" must be a number of milliseconds from 0 to 60000");
            s->batch_wait_ms = (long)b->valuedouble;
        } else if (!strcmp(b->string, "item")) {
            *item = b;
        } else {
            return fail(err, errlen, src, i, s->name, "\"batch\": unknown key \"%s\" (known: size, max_wait_ms, item)",
                        b->string);
        }
    }
    if (!s->batch_size)
        return fail(err, errlen, src, i, s->name, "\"batch\" needs \"size\": the most items one request carries");
    return 0;
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

static int parse_fields(struct pipeline *p, int i, const cJSON *kv, const char *src, char *err, size_t errlen)
{
    struct stage *s = &p->stages[i];
    if (!cJSON_IsObject(kv))
        return fail(err, errlen, src, i, s->name, "\"fields\" must be an object");
    int n = cJSON_GetArraySize(kv);
    s->fields = calloc((size_t)n + 1, sizeof *s->fields);
    if (!s->fields)
        return OOM(err, errlen, src);
    for (const cJSON *f = kv->child; f; f = f->next) {
        struct stage_field *sf = &s->fields[s->n_fields++];
        sf->result_of = -1;
        if (!(sf->name = strdup(f->string)))
            return OOM(err, errlen, src);
        if (!strcmp(f->string, "im_str"))
            return fail(err, errlen, src, i, s->name, "\"fields\" may not set \"im_str\": it is the input");
        for (int j = 0; j < s->n_fields - 1; j++)
            if (!strcmp(s->fields[j].name, f->string))
                return fail(err, errlen, src, i, s->name, "field \"%s\" is set twice", f->string);
        const cJSON *only = cJSON_IsObject(f) && cJSON_GetArraySize(f) == 1 ? f->child : NULL;
        const char *meant = only ? near_field_word(only->string) : NULL;
        if (meant)
            return fail(err, errlen, src, i, s->name,
                        "field \"%s\": {\"%.40s\": ...} is not a reference; did you mean \"%s\"? (to send an "
                        "object with that key as it is, give it a second key)",
                        f->string, only->string, meant);
        if (only && !strcmp(only->string, "result_of")) {
            if (ref(p, i, only, "\"result_of\"", &sf->result_of, src, err, errlen))
                return -1;
            s->dep_mask |= 1ull << sf->result_of;
        } else if (!(sf->literal = cJSON_PrintUnformatted(f))) {
            return OOM(err, errlen, src);
        }
    }
    return 0;
}

/* Where a stage's template placeholders and jq "when" look up stage names. */
struct name_ctx {
    const struct pipeline *p;
    int i;
    const cJSON *all; /* the file's "stages" array, for "a later stage" */
};

/* 1 when name is the name of a stage after stage i. */
static int later_stage(const struct name_ctx *c, const char *name, size_t n)
{
    int k = 0;
    for (const cJSON *js = c->all ? c->all->child : NULL; js; js = js->next, k++) {
        const cJSON *nm = k > c->i ? cJSON_GetObjectItemCaseSensitive(js, "name") : NULL;
        if (cJSON_IsString(nm) && strlen(nm->valuestring) == n && !memcmp(nm->valuestring, name, n))
            return 1;
    }
    return 0;
}

static int placeholder_stage(void *arg, const char *name, char *err, size_t errlen)
{
    const struct name_ctx *c = arg;
    int k = find_stage(c->p, c->i, name);
    if (k >= 0)
        return k;
    if (!strcmp(name, c->p->stages[c->i].name))
        snprintf(err, errlen, "a stage cannot send its own result");
    else if (later_stage(c, name, strlen(name)))
        snprintf(err, errlen, "\"%s\" is a later stage; a stage may only send earlier stages' results", name);
    else
        snprintf(err, errlen, "unknown placeholder (known: image, image.bytes, image.file, image.mime, path, name, "
                              "index, or an earlier stage's name)");
    return -1;
}

static int is_word_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

/* The stages a jq "when" names: each earlier stage's name that appears in it as a whole word
 * (.model_01.x, .["model_01"]). A later stage's name is an error. */
static int when_refs(const struct name_ctx *c, const char *text, uint64_t *mask, char *bad, size_t badlen)
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
            int k = find_stage(c->p, c->i, nm);
            if (k >= 0) {
                *mask |= 1ull << k;
                break;
            }
            if (later_stage(c, nm, end - a) || !strcmp(nm, c->p->stages[c->i].name)) {
                snprintf(bad, badlen, "%s", nm);
                return -1;
            }
        }
        a = b;
    }
    return 0;
}

static int parse_expr(struct expr *e, const cJSON *kv, const char *key, const char *src, int i, const char *nm,
                      char *err, size_t errlen)
{
    if (!cJSON_IsString(kv) || !kv->valuestring[0])
        return fail(err, errlen, src, i, nm, "\"%s\" must be a jq expression (a string)", key);
    char why[400];
    if (expr_compile(e, kv->valuestring, why, sizeof why))
        return fail(err, errlen, src, i, nm, "\"%s\": %s", key, why);
    return 0;
}

static int parse_stage(struct pipeline *p, int i, const cJSON *js, const cJSON *all, const char *src, char *err,
                       size_t errlen)
{
    struct name_ctx nctx = {p, i, all};
    const cJSON *body = NULL, *form = NULL, *fields = NULL, *batch = NULL, *item = NULL;
    struct stage *s = &p->stages[i];
    s->each_stage = -1;
    s->n_retry_on = -1;
    s->csv = 1;
    s->timeout_ms = -1;
    s->retries = -1;
    if (!cJSON_IsObject(js))
        return fail(err, errlen, src, i, NULL, "a stage must be a JSON object");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
    if (!cJSON_IsString(name))
        return fail(err, errlen, src, i, NULL, "\"name\" is missing or not a string");
    if (!valid_name(name->valuestring))
        return fail(err, errlen, src, i, NULL,
                    "\"name\" \"%.64s\" must be a non-empty string of letters, digits, '_', '-' or '.'",
                    name->valuestring);
    if (!(s->name = strdup(name->valuestring)))
        return OOM(err, errlen, src);
    if (find_stage(p, i, s->name) >= 0)
        return fail(err, errlen, src, i, s->name, "the name is used by an earlier stage");
    if (!strcmp(s->name, "path") || !strcmp(s->name, "status") || !strcmp(s->name, "error") ||
        !strcmp(s->name, "attempts") || !strcmp(s->name, "elapsed_ms"))
        return fail(err, errlen, src, i, s->name, "the name is taken by a fixed CSV column");
    const char *dup = duplicate_key(js);
    if (dup)
        return fail(err, errlen, src, i, s->name, "key \"%s\" appears twice", dup);

    for (const cJSON *kv = js->child; kv; kv = kv->next) {
        const char *k = kv->string;
        if (!strcmp(k, "name"))
            continue;
        if (!strcmp(k, "url")) {
            char what[128];
            int n = cJSON_IsArray(kv) ? cJSON_GetArraySize(kv) : 1;
            if (cJSON_IsArray(kv) && (n < 1 || n > PIPELINE_MAX_REPLICAS))
                return fail(err, errlen, src, i, s->name, "\"url\" must be a URL or a list of 1 to %d replicas' URLs",
                            PIPELINE_MAX_REPLICAS);
            if (!(s->urls = calloc((size_t)n, sizeof *s->urls)) || !(s->rep_full = calloc((size_t)n, sizeof *s->rep_full)) ||
                !(s->rep_shown = calloc((size_t)n, sizeof *s->rep_shown)))
                return OOM(err, errlen, src);
            for (int r = 0; r < n; r++) {
                const cJSON *u = cJSON_IsArray(kv) ? cJSON_GetArrayItem(kv, r) : kv;
                if (!cJSON_IsString(u) || !u->valuestring[0])
                    return fail(err, errlen, src, i, s->name, "\"url\" must be a non-empty string (or a list of them)");
                if (url_problem(u->valuestring, what, sizeof what))
                    return fail(err, errlen, src, i, s->name, "\"url\" %s", what);
                for (int q = 0; q < r; q++)
                    if (!strcmp(s->urls[q], u->valuestring))
                        return fail(err, errlen, src, i, s->name, "\"url\" lists \"%s\" twice", u->valuestring);
                if (!(s->urls[r] = strdup(u->valuestring)))
                    return OOM(err, errlen, src);
                s->n_urls = r + 1;
            }
            if (p->n_replica_slots + n > PIPELINE_MAX_REPLICA_SLOTS && n > 1)
                return fail(err, errlen, src, i, s->name, "more than %d replicas in the pipeline", PIPELINE_MAX_REPLICA_SLOTS);
            if (n > 1) {
                s->replica_base = p->n_replica_slots;
                p->n_replica_slots += n;
            }
            if (!(s->url = strdup(s->urls[0])))
                return OOM(err, errlen, src);
        } else if (!strcmp(k, "input")) {
            if (cJSON_IsString(kv) && !strcmp(kv->valuestring, "image"))
                continue;
            const char *shape = "\"input\" must be \"image\", {\"each\": STAGE, \"items\": EXPR} or "
                                "{\"each\": STAGE, \"array\": KEY, \"field\": KEY}";
            if (!cJSON_IsObject(kv))
                return fail(err, errlen, src, i, s->name, "%s", shape);
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(kv, "each");
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(kv, "array");
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(kv, "field");
            const cJSON *it = cJSON_GetObjectItemCaseSensitive(kv, "items");
            int keys = cJSON_GetArraySize(kv);
            if (!e || !((keys == 3 && cJSON_IsString(a) && cJSON_IsString(f)) || (keys == 2 && it)))
                return fail(err, errlen, src, i, s->name, "%s", shape);
            if (ref(p, i, e, "\"input.each\"", &s->each_stage, src, err, errlen))
                return -1;
            s->input = INPUT_EACH;
            if (it) {
                if (parse_expr(&s->items, it, "input.items", src, i, s->name, err, errlen))
                    return -1;
            } else if (!(s->each_array = strdup(a->valuestring)) || !(s->each_field = strdup(f->valuestring))) {
                return OOM(err, errlen, src);
            }
            s->dep_mask |= 1ull << s->each_stage;
        } else if (!strcmp(k, "fields")) {
            if (parse_fields(p, i, kv, src, err, errlen))
                return -1;
            fields = kv;
        } else if (!strcmp(k, "body")) {
            body = kv;
        } else if (!strcmp(k, "form")) {
            form = kv;
        } else if (!strcmp(k, "result") || !strcmp(k, "error") || !strcmp(k, "retry_if") ||
                   !strcmp(k, "retry_after")) {
            struct expr *e = k[0] == 'e' ? &s->error : k[6] == 'i' ? &s->retry_if : k[6] == 'a' ? &s->retry_after : &s->result;
            if (parse_expr(e, kv, k, src, i, s->name, err, errlen))
                return -1;
        } else if (!strcmp(k, "retry_on")) {
            int n = cJSON_GetArraySize(kv);
            if (!cJSON_IsArray(kv) || n > (int)(sizeof s->retry_on / sizeof s->retry_on[0]))
                return fail(err, errlen, src, i, s->name, "\"retry_on\" must be a list of up to 32 HTTP status codes");
            s->n_retry_on = 0;
            for (const cJSON *c = kv->child; c; c = c->next) {
                if (!cJSON_IsNumber(c) || c->valuedouble != (int)c->valuedouble || c->valuedouble < 100 || c->valuedouble > 599)
                    return fail(err, errlen, src, i, s->name, "\"retry_on\": each entry must be a status code from 100 to 599");
                s->retry_on[s->n_retry_on++] = (int)c->valuedouble;
            }
        } else if (!strcmp(k, "when") && cJSON_IsString(kv)) {
            char bad[128];
            if (parse_expr(&s->when, kv, "when", src, i, s->name, err, errlen))
                return -1;
            if (when_refs(&nctx, kv->valuestring, &s->when_mask, bad, sizeof bad))
                return fail(err, errlen, src, i, s->name, "\"when\" names \"%s\", which is not an earlier stage", bad);
            s->dep_mask |= s->when_mask;
        } else if (!strcmp(k, "when")) {
            if (!cJSON_IsArray(kv))
                return fail(err, errlen, src, i, s->name,
                            "\"when\" must be an array of stage names or a jq expression (a string)");
            for (const cJSON *w = kv->child; w; w = w->next) {
                int idx;
                if (ref(p, i, w, "\"when\"", &idx, src, err, errlen))
                    return -1;
                s->when_mask |= 1ull << idx;
                s->dep_mask |= 1ull << idx;
            }
        } else if (!strcmp(k, "csv")) {
            if (!cJSON_IsBool(kv))
                return fail(err, errlen, src, i, s->name, "\"csv\" must be true or false");
            s->csv = cJSON_IsTrue(kv);
        } else if (!strcmp(k, "timeout_ms")) {
            if (parse_timeout(kv, &s->timeout_ms, src, i, s->name, err, errlen))
                return -1;
        } else if (!strcmp(k, "retries")) {
            if (parse_retries(kv, &s->retries, src, i, s->name, err, errlen))
                return -1;
        } else if (!strcmp(k, "headers")) {
            if (parse_headers(kv, &s->header_tmpl, &s->n_headers, src, i, s->name, err, errlen))
                return -1;
        } else if (!strcmp(k, "concurrency")) {
            if (parse_concurrency(kv, &s->concurrency, src, i, s->name, err, errlen))
                return -1;
        } else if (!strcmp(k, "max_rps")) {
            if (parse_max_rps(kv, &s->max_rps, src, i, s->name, err, errlen))
                return -1;
        } else if (!strcmp(k, "batch")) {
            if (parse_batch(kv, s, &item, src, i, err, errlen))
                return -1;
            batch = kv;
        } else {
            return fail(err, errlen, src, i, s->name,
                        "unknown key \"%s\" (known: name, url, input, body, form, fields, result, error, retry_if, "
                        "retry_after, retry_on, when, csv, timeout_ms, retries, headers, concurrency, max_rps, batch)",
                        k);
        }
    }
    if (!s->url)
        return fail(err, errlen, src, i, s->name, "\"url\" is missing");
    if ((body || form) && fields)
        return fail(err, errlen, src, i, s->name,
                    "\"fields\" belongs to the seed's body; with \"%s\", put the fields in it", body ? "body" : "form");
    if (body && form)
        return fail(err, errlen, src, i, s->name, "\"body\" and \"form\" are two kinds of body: give one");
    char why[400];
    if (item && !body)
        return fail(err, errlen, src, i, s->name,
                    "\"batch\": \"item\" goes with a \"body\" holding \"{{batch}}\" (the seed's body makes its own items)");
    cJSON *image_item = NULL;
    const cJSON *outer = NULL;
    if (batch && body) {
        /* The body is the request around the items; each item is "item" (default: the image). */
        outer = body;
        if (!item && !(item = image_item = cJSON_CreateString("{{image}}")))
            return OOM(err, errlen, src);
        body = item;
    }
    int bad = body ? body_compile_json(&s->body, body, placeholder_stage, &nctx, why, sizeof why)
             : form ? body_compile_form(&s->body, form, placeholder_stage, &nctx, why, sizeof why) : 0;
    cJSON_Delete(image_item);
    if (bad)
        return fail(err, errlen, src, i, s->name, "\"%s\": %s", outer ? "batch\": \"item" : body ? "body" : "form", why);
    if (!body && !form) {
        struct seed_field sf[64];
        int n = s->n_fields < 64 ? s->n_fields : 64;
        for (int f = 0; f < n; f++)
            sf[f] = (struct seed_field){s->fields[f].name, s->fields[f].literal, s->fields[f].result_of};
        if (s->n_fields > 64)
            return fail(err, errlen, src, i, s->name, "\"fields\" holds more than 64 fields");
        if (body_compile_seed(&s->body, sf, n))
            return OOM(err, errlen, src);
    }
    if (batch && body_batch(&s->body, outer, why, sizeof why))
        return fail(err, errlen, src, i, s->name, "\"%s\": %s", outer ? "body" : "batch", why);
    s->dep_mask |= s->body.stage_refs;
    if (!s->result.text && expr_compile(&s->result, ".result", why, sizeof why))
        return OOM(err, errlen, src);
    if (s->body.kind == BODY_RAW && !header_named(s->header_tmpl, s->n_headers, "Content-Type"))
        s->type_of_image = 1;
    if (s->body.kind == BODY_FORM && header_named(s->header_tmpl, s->n_headers, "Content-Type"))
        return fail(err, errlen, src, i, s->name,
                    "a \"form\" body sets its own Content-Type (multipart/form-data with its boundary): "
                    "remove the stage's Content-Type header");
    return 0;
}

/* "defaults": what every stage gets unless it says otherwise. */
static int parse_defaults(struct pipeline *p, const cJSON *js, long *timeout_ms, int *retries, int *concurrency,
                          double *max_rps, const char *src, char *err, size_t errlen)
{
    if (!cJSON_IsObject(js))
        return fail(err, errlen, src, IDX_DEFAULTS, NULL,
                    "must be an object with \"headers\", \"timeout_ms\", \"retries\", \"concurrency\" or \"max_rps\"");
    const char *dup = duplicate_key(js);
    if (dup)
        return fail(err, errlen, src, IDX_DEFAULTS, NULL, "key \"%s\" appears twice", dup);
    for (const cJSON *kv = js->child; kv; kv = kv->next) {
        if (!strcmp(kv->string, "headers")) {
            if (parse_headers(kv, &p->default_headers, &p->n_default_headers, src, IDX_DEFAULTS, NULL, err, errlen))
                return -1;
        } else if (!strcmp(kv->string, "timeout_ms")) {
            if (parse_timeout(kv, timeout_ms, src, IDX_DEFAULTS, NULL, err, errlen))
                return -1;
        } else if (!strcmp(kv->string, "retries")) {
            if (parse_retries(kv, retries, src, IDX_DEFAULTS, NULL, err, errlen))
                return -1;
        } else if (!strcmp(kv->string, "concurrency")) {
            if (parse_concurrency(kv, concurrency, src, IDX_DEFAULTS, NULL, err, errlen))
                return -1;
        } else if (!strcmp(kv->string, "max_rps")) {
            if (parse_max_rps(kv, max_rps, src, IDX_DEFAULTS, NULL, err, errlen))
                return -1;
        } else {
            return fail(err, errlen, src, IDX_DEFAULTS, NULL,
                        "unknown key \"%s\" (known: headers, timeout_ms, retries, concurrency, max_rps)", kv->string);
        }
    }
    return 0;
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
    struct pipeline *p = calloc(1, sizeof *p);
    if (!p || !(p->source = strdup(source)) || !(p->text = malloc(len + 1))) {
        pipeline_free(p);
        cJSON_Delete(root);
        return OOM(err, errlen, source);
    }
    memcpy(p->text, text, len);
    p->text[len] = 0;
    p->text_len = len;
    int rc = 0;
    /* cJSON stops at the end of the first value: what follows it would be ignored. */
    size_t used = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
    for (size_t k = used; k < len; k++)
        if (text[k] != ' ' && text[k] != '\t' && text[k] != '\r' && text[k] != '\n') {
            rc = fail(err, errlen, source, IDX_FILE, NULL,
                      "text after the end of the JSON object (line %d); a pipeline file holds one object",
                      line_of(text, len, k));
            goto done;
        }
    int nul_stage;
    long nul = find_nul(text, used, &nul_stage);
    if (nul >= 0) {
        const cJSON *st = nul_stage >= 0 ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "stages"), nul_stage) : NULL;
        const cJSON *nm = st ? cJSON_GetObjectItemCaseSensitive(st, "name") : NULL;
        rc = fail(err, errlen, source, st ? nul_stage : IDX_FILE,
                  cJSON_IsString(nm) && valid_name(nm->valuestring) ? nm->valuestring : NULL,
                  "a string holds a NUL character (\\u0000) on line %d; it cannot be sent",
                  line_of(text, len, (size_t)nul));
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        rc = fail(err, errlen, source, IDX_FILE, NULL, "expected an object with a \"stages\" array");
        goto done;
    }
    const char *dup = duplicate_key(root);
    if (dup) {
        rc = fail(err, errlen, source, IDX_FILE, NULL, "top-level key \"%s\" appears twice", dup);
        goto done;
    }
    long def_timeout = -1;
    int def_retries = -1, def_concurrency = 0;
    double def_max_rps = 0;
    for (const cJSON *kv = root->child; kv; kv = kv->next) {
        if (!strcmp(kv->string, "defaults")) {
            if ((rc = parse_defaults(p, kv, &def_timeout, &def_retries, &def_concurrency, &def_max_rps, source, err,
                                     errlen)))
                goto done;
        } else if (strcmp(kv->string, "stages")) {
            rc = fail(err, errlen, source, IDX_FILE, NULL, "unknown top-level key \"%s\" (known: stages, defaults)",
                      kv->string);
            goto done;
        }
    }
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(root, "stages");
    if (!cJSON_IsArray(stages)) {
        rc = fail(err, errlen, source, IDX_FILE, NULL, "expected an object with a \"stages\" array");
        goto done;
    }
    int n = cJSON_GetArraySize(stages);
    if (n == 0 || n > PIPELINE_MAX_STAGES) {
        rc = fail(err, errlen, source, IDX_FILE, NULL, "\"stages\" must hold 1 to %d stages", PIPELINE_MAX_STAGES);
        goto done;
    }
    if (!(p->stages = calloc((size_t)n, sizeof *p->stages))) {
        rc = OOM(err, errlen, source);
        goto done;
    }
    int i = 0;
    for (const cJSON *js = stages->child; js; js = js->next, i++) {
        p->n = i + 1;
        if ((rc = parse_stage(p, i, js, stages, source, err, errlen)))
            goto done;
        if (p->stages[i].timeout_ms < 0)
            p->stages[i].timeout_ms = def_timeout;
        if (p->stages[i].retries < 0)
            p->stages[i].retries = def_retries;
        if (p->stages[i].concurrency == 0)
            p->stages[i].concurrency = def_concurrency;
        if (p->stages[i].max_rps == 0)
            p->stages[i].max_rps = def_max_rps;
    }
done:
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

/* ---- header values ---- */

/* Frees a buffer that may hold a token, wiping it first. */
static void wipe_free(char *p, size_t len)
{
    if (p)
        memset(p, 0, len);
    free(p);
}

/* A string that may hold a token. Growing it copies into a new buffer and wipes the old one
 * (realloc would leave a copy of the token in freed memory). */
struct secret {
    char *s;
    size_t len, cap;
};

/* Makes room for extra more bytes (and a NUL). */
static int secret_reserve(struct secret *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = (b->len + extra + 1) * 2;
    char *bigger = malloc(cap);
    if (!bigger)
        return -1;
    if (b->s)
        memcpy(bigger, b->s, b->len + 1);
    else
        bigger[0] = 0;
    wipe_free(b->s, b->cap);
    b->s = bigger;
    b->cap = cap;
    return 0;
}

static int secret_put(struct secret *b, const char *s, size_t n)
{
    if (secret_reserve(b, n))
        return -1;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
    return 0;
}

#define SECRET_FILE_MAX (64 * 1024)

/* ${file:PATH}: the file's content with one trailing newline (LF or CR LF) removed, appended to
 * b. Read with read(2) straight into b's memory, so that no stdio buffer keeps a copy. Only a
 * regular file: a FIFO or a terminal would block the start of the run. Errors name the path,
 * never the content. */
static int put_file(struct secret *b, const char *path, const char *where, const char *hname, char *err,
                    size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        snprintf(err, errlen, "%s: header \"%s\" uses ${file:%s}, which cannot be read: %s", where, hname, path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > SECRET_FILE_MAX) {
        close(fd);
        snprintf(err, errlen, "%s: header \"%s\" uses ${file:%s}, which is %s", where, hname, path,
                 S_ISDIR(st.st_mode) ? "a directory" : !S_ISREG(st.st_mode) ? "not a regular file" : "larger than 64 KiB");
        return -1;
    }
    /* One byte more than the file's size: a file that grew since fstat shows as too large. */
    if (secret_reserve(b, (size_t)st.st_size + 1)) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", where);
        return -1;
    }
    char *v = b->s + b->len;
    size_t room = (size_t)st.st_size + 1, got = 0;
    while (got < room) {
        ssize_t r = read(fd, v + got, room - got);
        if (r == 0)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            memset(v, 0, got);
            snprintf(err, errlen, "%s: header \"%s\" uses ${file:%s}, which cannot be read: %s", where, hname, path,
                     strerror(e));
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    size_t n = got;
    if (n && v[n - 1] == '\n')
        n--;
    if (n && v[n - 1] == '\r')
        n--;
    const char *why = got > (size_t)st.st_size ? "growing while it is read"
                      : memchr(v, '\n', n) || memchr(v, '\r', n) ? "holding a line break (a header is one line)"
                      : memchr(v, 0, n) ? "holding a NUL byte"
                      : NULL;
    if (why) {
        memset(v, 0, got);
        b->s[b->len] = 0;
        snprintf(err, errlen, "%s: header \"%s\" uses ${file:%s}, which is refused for %s", where, hname, path, why);
        return -1;
    }
    memset(v + n, 0, got - n);
    b->len += n;
    b->s[b->len] = 0;
    return 0;
}

/* Expands ${NAME} from the environment and ${file:PATH} in a "Name: value" template. Returns a
 * new buffer (wipe it when done), or NULL with err: the header's name and the variable or the
 * path, never a value. where says whose header it is: "FILE: stage 2 (m)", "--header". */
static char *expand_header(const char *tmpl, const char *where, char *err, size_t errlen)
{
    struct secret b = {0};
    char hname[104];
    size_t hl = header_name_len(tmpl);
    snprintf(hname, sizeof hname, "%.*s", (int)(hl < 100 ? hl : 100), tmpl);
    if (secret_reserve(&b, strlen(tmpl)))
        goto oom;
    for (const char *c = tmpl; *c;) {
        const char *end;
        if (!(c[0] == '$' && c[1] == '{' && (end = strchr(c + 2, '}')))) {
            if (secret_put(&b, c++, 1))
                goto oom;
            continue;
        }
        size_t nl = (size_t)(end - c - 2);
        if (nl >= 5 && !strncmp(c + 2, "file:", 5)) {
            char path[4096];
            if (nl == 5 || nl - 5 >= sizeof path) {
                snprintf(err, errlen, "%s: header \"%s\" has a bad ${file:PATH} reference (%s)", where, hname,
                         nl == 5 ? "no path" : "the path is too long");
                goto fail;
            }
            memcpy(path, c + 7, nl - 5);
            path[nl - 5] = 0;
            if (put_file(&b, path, where, hname, err, errlen))
                goto fail;
        } else {
            char name[128];
            if (nl == 0 || nl >= sizeof name) {
                snprintf(err, errlen, "%s: header \"%s\" has a bad ${...} reference", where, hname);
                goto fail;
            }
            memcpy(name, c + 2, nl);
            name[nl] = 0;
            const char *v = getenv(name);
            if (!v) {
                snprintf(err, errlen,
                         "%s: header \"%s\" uses ${%s}, which is not set in the environment (export it and run again)",
                         where, hname, name);
                goto fail;
            }
            if (strpbrk(v, "\r\n")) {
                snprintf(err, errlen, "%s: header \"%s\" uses ${%s}, whose value holds a line break (strip it and run again)",
                         where, hname, name);
                goto fail;
            }
            if (secret_put(&b, v, strlen(v)))
                goto oom;
        }
        c = end + 1;
    }
    return b.s;
oom:
    snprintf(err, errlen, "%s: out of memory", where);
fail:
    wipe_free(b.s, b.cap);
    return NULL;
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
    char what[128];
    size_t sl = !strncmp(base, "http://", 7) ? 7 : !strncmp(base, "https://", 8) ? 8 : 0;
    if (!sl)
        return snprintf(err, errlen, "must start with http:// or https://"), -1;
    if (!base[sl] || base[sl] == '/')
        return snprintf(err, errlen, "has no host after %.*s", (int)sl, base), -1;
    if (url_problem(base, what, sizeof what))
        return snprintf(err, errlen, "%s", what), -1;
    /* "http://h/v1?k=1" + "/m" would put the stage's path inside the query. */
    if (strpbrk(base, "?#"))
        return snprintf(err, errlen, "holds a query or fragment ('?' or '#'), which stage URLs cannot be joined after"),
               -1;
    return 0;
}

int pipeline_add_header(struct pipeline *p, const char *line, char *err, size_t errlen)
{
    size_t nl = header_name_len(line);
    /* Without a well-formed name the text may be a bare token: none of it is shown. */
    if (!line[nl])
        return snprintf(err, errlen, "--header: give 'Name: value' (there is no ':'; the text is not shown)"), -1;
    if (!valid_header_name(line, nl))
        return snprintf(err, errlen,
                        "--header: the text before ':' is not a header name (one word, no blanks; the text is not shown)"),
               -1;
    const char *v = line + nl + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (strpbrk(v, "\r\n"))
        return snprintf(err, errlen, "--header %.*s: the value holds a line break (a header is one line)", (int)nl, line),
               -1;
    for (int k = 0; k < p->n_cli_headers; k++)
        if (same_header_name(p->cli_headers[k], line))
            return snprintf(err, errlen, "--header %.*s is given twice (header names ignore case)", (int)nl, line), -1;
    char **more = realloc(p->cli_headers, (size_t)(p->n_cli_headers + 1) * sizeof *more);
    if (!more)
        return snprintf(err, errlen, "out of memory"), -1;
    p->cli_headers = more;
    size_t l = nl + 2 + strlen(v) + 1;
    char *t = malloc(l);
    if (!t)
        return snprintf(err, errlen, "out of memory"), -1;
    snprintf(t, l, "%.*s: %s", (int)nl, line, v);
    p->cli_headers[p->n_cli_headers++] = t;
    return 0;
}

static void wipe_lines(char **v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        if (v[i])
            wipe_free(v[i], strlen(v[i]));
    free(v);
}

/* curl copies each line into the list: those copies hold tokens too. */
static void wipe_slist(struct curl_slist *l)
{
    for (struct curl_slist *c = l; c; c = c->next)
        if (c->data)
            memset(c->data, 0, strlen(c->data));
    curl_slist_free_all(l);
}

static int expand_all(char *const *tmpl, int n, const char *where, char ***out, char *err, size_t errlen)
{
    *out = calloc((size_t)n + 1, sizeof **out);
    if (!*out)
        return snprintf(err, errlen, "%s: out of memory", where), -1;
    for (int i = 0; i < n; i++)
        if (!((*out)[i] = expand_header(tmpl[i], where, err, errlen))) {
            wipe_lines(*out, i);
            *out = NULL;
            return -1;
        }
    return 0;
}

static int named_in(char *const *lines, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (same_header_name(lines[i], name))
            return 1;
    return 0;
}

static int append(struct curl_slist **l, const char *line)
{
    struct curl_slist *n = curl_slist_append(*l, line);
    if (!n)
        return -1;
    *l = n;
    return 0;
}

/* One stage's header list: its own lines, then the defaults' and --header's of other names,
 * then our fixed ones unless a user header of that name replaces them. */
static int build_headers(struct stage *s, char *const *def, int n_def, char *const *cli, int n_cli,
                         const char *where, struct curl_slist **out, char *err, size_t errlen)
{
    char **own;
    if (expand_all(s->header_tmpl, s->n_headers, where, &own, err, errlen))
        return -1;
    struct curl_slist *l = NULL;
    int rc = 0;
    for (int h = 0; h < s->n_headers && !rc; h++)
        rc = append(&l, own[h]);
    /* A JSON body's Content-Type may come from anywhere; a raw or multipart body's type is the
     * stage's own, or the image's / the boundary's: a "defaults" application/json is not it. */
    int json = s->body.kind == BODY_SEED || s->body.kind == BODY_JSON;
    for (int h = 0; h < n_def && !rc; h++)
        if (!named_in(own, s->n_headers, def[h]) && (json || !same_header_name(def[h], "Content-Type")))
            rc = append(&l, def[h]);
    for (int h = 0; h < n_cli && !rc; h++)
        if (!named_in(own, s->n_headers, cli[h]) && !named_in(def, n_def, cli[h]) &&
            (json || !same_header_name(cli[h], "Content-Type")))
            rc = append(&l, cli[h]);
    /* Fixed headers: a JSON body's type, and no 'Expect: 100-continue' round trip for large
     * bodies. */
    static const char *const fixed[] = {"Content-Type: application/json", "Expect:"};
    for (int f = json ? 0 : 1; f < 2 && !rc; f++)
        if (!named_in(own, s->n_headers, fixed[f]) && !named_in(def, n_def, fixed[f]) && !named_in(cli, n_cli, fixed[f]))
            rc = append(&l, fixed[f]);
    wipe_lines(own, s->n_headers);
    if (rc) {
        wipe_slist(l);
        return snprintf(err, errlen, "%s: out of memory", where), -1;
    }
    *out = l;
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

static int stage_headers(struct stage *s, char *const *def, int n_def, char *const *cli, int n_cli,
                         const char *where, char *err, size_t errlen)
{
    return build_headers(s, def, n_def, cli, n_cli, where, &s->headers, err, errlen);
}

static int any_file_ref(char *const *tmpl, int n)
{
    for (int i = 0; i < n; i++)
        if (strstr(tmpl[i], "${file:"))
            return 1;
    return 0;
}

/* 1 when stage s's headers take a value from a file. */
static int uses_files(const struct pipeline *p, const struct stage *s)
{
    return any_file_ref(s->header_tmpl, s->n_headers) || any_file_ref(p->default_headers, p->n_default_headers) ||
           any_file_ref(p->cli_headers, p->n_cli_headers);
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
            if (url_problem(val, what, sizeof what)) {
                snprintf(err, errlen, "\"url\" uses ${%s}, whose value %s", var, what);
                free(out);
                return NULL;
            }
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

/* Guards the stages' header lists, which a 401 may replace while requests are made. */
static pthread_mutex_t header_mu = PTHREAD_MUTEX_INITIALIZER;

const struct curl_slist *pipeline_headers(const struct stage *s, unsigned *gen)
{
    pthread_mutex_lock(&header_mu);
    const struct curl_slist *l = s->headers;
    *gen = s->header_gen;
    pthread_mutex_unlock(&header_mu);
    return l;
}

static int same_lines(const struct curl_slist *a, const struct curl_slist *b)
{
    for (; a && b; a = a->next, b = b->next)
        if (strcmp(a->data, b->data))
            return 0;
    return !a && !b;
}

int pipeline_refresh_headers(const struct pipeline *cp, int i, unsigned gen)
{
    struct pipeline *p = (struct pipeline *)cp; /* only the header list changes, under header_mu */
    struct stage *s = &p->stages[i];
    if (!s->file_headers)
        return 0;
    pthread_mutex_lock(&header_mu);
    int rc = 0;
    if (s->header_gen != gen) {
        rc = 1; /* another request has re-read them already */
        goto out;
    }
    char **def = NULL, **cli = NULL, err[512];
    struct curl_slist *l = NULL;
    if (expand_all(p->default_headers, p->n_default_headers, "defaults", &def, err, sizeof err) == 0 &&
        expand_all(p->cli_headers, p->n_cli_headers, "--header", &cli, err, sizeof err) == 0 &&
        build_headers(s, def, p->n_default_headers, cli, p->n_cli_headers, s->name, &l, err, sizeof err) == 0) {
        struct curl_slist **old = l && !same_lines(l, s->headers)
                                      ? realloc(s->old_headers, (size_t)(s->n_old_headers + 1) * sizeof *old)
                                      : NULL;
        if (old) {
            /* The old list stays until pipeline_free: a request in flight may still hold it. */
            s->old_headers = old;
            old[s->n_old_headers++] = s->headers;
            s->headers = l;
            s->header_gen++;
            l = NULL;
            rc = 1;
        }
    }
    wipe_slist(l);
    if (def)
        wipe_lines(def, p->n_default_headers);
    if (cli)
        wipe_lines(cli, p->n_cli_headers);
out:
    pthread_mutex_unlock(&header_mu);
    return rc;
}

/* One URL template of stage i: ${VAR} expanded and joined to base (bl bytes) into *full, and
 * joined unexpanded into *shown. 0, or -1 with err. */
static int resolve_url(const struct pipeline *p, int i, const char *tmpl, const char *base, size_t bl, int base_ok,
                       const char *base_why, char **full, char **shown_out, char *err, size_t errlen)
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
        return 0;
    }
    if (!base_ok) {
        free(url);
        return fail(err, errlen, p->source, i, s->name, "url \"%s\" is relative to --server \"%s\", which %s", tmpl,
                    pipeline_printable(base, shown, sizeof shown), base_why);
    }
    *full = join_url(base, bl, url);
    *shown_out = join_url(base, bl, tmpl);
    free(url);
    return *full && *shown_out ? 0 : OOM(err, errlen, p->source);
}

int pipeline_resolve(struct pipeline *p, const char *base, char *err, size_t errlen)
{
    char base_why[160], where[400];
    int base_ok = pipeline_check_base(base, base_why, sizeof base_why) == 0;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    char **def = NULL, **cli = NULL;
    snprintf(where, sizeof where, "%s: \"defaults\"", p->source);
    if (expand_all(p->default_headers, p->n_default_headers, where, &def, err, errlen))
        return -1;
    if (expand_all(p->cli_headers, p->n_cli_headers, "--header", &cli, err, errlen)) {
        wipe_lines(def, p->n_default_headers);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        struct stage *s = &p->stages[i];
        free(s->full_url);
        s->full_url = NULL;
        wipe_slist(s->headers);
        s->headers = NULL;
        s->file_headers = uses_files(p, s);
        free(s->shown_url);
        s->shown_url = NULL;
        if ((rc = resolve_url(p, i, s->url, base, bl, base_ok, base_why, &s->full_url, &s->shown_url, err, errlen)))
            break;
        for (int k = 1; k < s->n_urls && !rc; k++) {
            free(s->rep_full[k]);
            free(s->rep_shown[k]);
            s->rep_full[k] = s->rep_shown[k] = NULL;
            rc = resolve_url(p, i, s->urls[k], base, bl, base_ok, base_why, &s->rep_full[k], &s->rep_shown[k], err,
                             errlen);
        }
        if (rc)
            break;
        snprintf(where, sizeof where, "%s: stage %d (%s)", p->source, i + 1, s->name);
        rc = stage_headers(s, def, p->n_default_headers, cli, p->n_cli_headers, where, err, errlen);
    }
    wipe_lines(def, p->n_default_headers);
    wipe_lines(cli, p->n_cli_headers);
    return rc;
}

int pipeline_adopt_resolved(struct pipeline *p, int i, const char *full_url, const char *shown_url,
                            const char *const *lines, int n)
{
    struct stage *s = &p->stages[i];
    s->file_headers = uses_files(p, s);
    free(s->shown_url);
    if (!(s->shown_url = strdup(shown_url)))
        return -1;
    free(s->full_url);
    curl_slist_free_all(s->headers);
    s->headers = NULL;
    if (!(s->full_url = strdup(full_url)))
        return -1;
    for (int h = 0; h < n; h++) {
        struct curl_slist *l = curl_slist_append(s->headers, lines[h]);
        if (!l)
            return -1;
        s->headers = l;
    }
    return 0;
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
        if (p->stages[i].input == INPUT_IMAGE)
            n |= p->stages[i].body.needs;
    return n;
}

int pipeline_csv_columns(const struct pipeline *p)
{
    int n = 0;
    for (int i = 0; i < p->n; i++)
        n += p->stages[i].csv;
    return n;
}

void pipeline_free(struct pipeline *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        struct stage *s = &p->stages[i];
        free(s->name);
        free(s->url);
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
        expr_free(&s->error);
        expr_free(&s->retry_if);
        expr_free(&s->retry_after);
        expr_free(&s->when);
        expr_free(&s->items);
        wipe_lines(s->header_tmpl, s->n_headers);
        wipe_slist(s->headers);
        for (int h = 0; h < s->n_old_headers; h++)
            wipe_slist(s->old_headers[h]);
        free(s->old_headers);
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
    wipe_lines(p->default_headers, p->n_default_headers);
    wipe_lines(p->cli_headers, p->n_cli_headers);
    free(p->stages);
    free(p->source);
    free(p->text);
    free(p);
}
