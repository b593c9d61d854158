/* pipeline: parse and validate the stage table. See pipeline.h for the file format. Validation
 * is strict (unknown keys are errors) because a typo in a long run's config should fail in the
 * first second, not after six hours. */
#include "pipeline.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int fail(char *err, size_t errlen, const char *source, int idx, const char *name,
                const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (idx < 0)
        snprintf(err, errlen, "%s: %s", source, what);
    else if (name)
        snprintf(err, errlen, "%s: stage %d (%s): %s", source, idx + 1, name, what);
    else
        snprintf(err, errlen, "%s: stage %d: %s", source, idx + 1, what);
    return -1;
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

static int parse_stage(struct pipeline *p, int i, const cJSON *js, const char *src, char *err,
                       size_t errlen)
{
    struct stage *s = &p->stages[i];
    s->each_stage = -1;
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
    s->name = strdup(name->valuestring);
    if (find_stage(p, i, s->name) >= 0)
        return fail(err, errlen, src, i, s->name, "the name is used by an earlier stage");
    if (!strcmp(s->name, "path") || !strcmp(s->name, "status") || !strcmp(s->name, "error") ||
        !strcmp(s->name, "attempts") || !strcmp(s->name, "elapsed_ms"))
        return fail(err, errlen, src, i, s->name, "the name is taken by a fixed CSV column");

    for (const cJSON *kv = js->child; kv; kv = kv->next) {
        const char *k = kv->string;
        for (const cJSON *prev = js->child; prev != kv; prev = prev->next)
            if (!strcmp(prev->string, k))
                return fail(err, errlen, src, i, s->name, "key \"%s\" appears twice", k);
        if (!strcmp(k, "name"))
            continue;
        if (!strcmp(k, "url")) {
            if (!cJSON_IsString(kv) || !kv->valuestring[0])
                return fail(err, errlen, src, i, s->name, "\"url\" must be a non-empty string");
            s->url = strdup(kv->valuestring);
        } else if (!strcmp(k, "input")) {
            if (cJSON_IsString(kv) && !strcmp(kv->valuestring, "image"))
                continue;
            if (!cJSON_IsObject(kv))
                return fail(err, errlen, src, i, s->name,
                            "\"input\" must be \"image\" or {\"each\": STAGE, \"array\": KEY, \"field\": KEY}");
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(kv, "each");
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(kv, "array");
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(kv, "field");
            if (cJSON_GetArraySize(kv) != 3 || !e || !cJSON_IsString(a) || !cJSON_IsString(f))
                return fail(err, errlen, src, i, s->name,
                            "\"input\" must be {\"each\": STAGE, \"array\": KEY, \"field\": KEY}");
            if (ref(p, i, e, "\"input.each\"", &s->each_stage, src, err, errlen))
                return -1;
            s->input = INPUT_EACH;
            s->each_array = strdup(a->valuestring);
            s->each_field = strdup(f->valuestring);
            s->dep_mask |= 1ull << s->each_stage;
        } else if (!strcmp(k, "fields")) {
            if (!cJSON_IsObject(kv))
                return fail(err, errlen, src, i, s->name, "\"fields\" must be an object");
            int n = cJSON_GetArraySize(kv);
            s->fields = calloc((size_t)n + 1, sizeof *s->fields);
            for (const cJSON *f = kv->child; f; f = f->next) {
                struct stage_field *sf = &s->fields[s->n_fields++];
                sf->name = strdup(f->string);
                sf->result_of = -1;
                if (!strcmp(f->string, "im_str"))
                    return fail(err, errlen, src, i, s->name,
                                "\"fields\" may not set \"im_str\": it is the input");
                for (int j = 0; j < s->n_fields - 1; j++)
                    if (!strcmp(s->fields[j].name, f->string))
                        return fail(err, errlen, src, i, s->name, "field \"%s\" is set twice", f->string);
                const cJSON *ro = cJSON_IsObject(f) ? cJSON_GetObjectItemCaseSensitive(f, "result_of") : NULL;
                if (ro && cJSON_GetArraySize(f) == 1) {
                    if (ref(p, i, ro, "\"result_of\"", &sf->result_of, src, err, errlen))
                        return -1;
                    s->dep_mask |= 1ull << sf->result_of;
                } else {
                    sf->literal = cJSON_PrintUnformatted(f);
                }
            }
        } else if (!strcmp(k, "when")) {
            if (!cJSON_IsArray(kv))
                return fail(err, errlen, src, i, s->name, "\"when\" must be an array of stage names");
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
            if (!cJSON_IsNumber(kv) || kv->valuedouble < 1 || kv->valuedouble > 86400000)
                return fail(err, errlen, src, i, s->name, "\"timeout_ms\" must be a number from 1 to 86400000");
            s->timeout_ms = (long)kv->valuedouble;
        } else if (!strcmp(k, "retries")) {
            if (!cJSON_IsNumber(kv) || kv->valuedouble < 0 || kv->valuedouble > 100)
                return fail(err, errlen, src, i, s->name, "\"retries\" must be a number from 0 to 100");
            s->retries = (int)kv->valuedouble;
        } else if (!strcmp(k, "headers")) {
            if (!cJSON_IsObject(kv))
                return fail(err, errlen, src, i, s->name, "\"headers\" must be an object of strings");
            int n = cJSON_GetArraySize(kv);
            s->header_tmpl = calloc((size_t)n + 1, sizeof *s->header_tmpl);
            for (const cJSON *h = kv->child; h; h = h->next) {
                if (!cJSON_IsString(h) || !h->string[0] || strpbrk(h->string, ": \r\n") ||
                    strpbrk(h->valuestring, "\r\n"))
                    return fail(err, errlen, src, i, s->name,
                                "header \"%s\" must be a string without line breaks, named without ':' or spaces",
                                h->string);
                size_t l = strlen(h->string) + strlen(h->valuestring) + 3;
                char *line = malloc(l);
                snprintf(line, l, "%s: %s", h->string, h->valuestring);
                s->header_tmpl[s->n_headers++] = line;
            }
        } else {
            return fail(err, errlen, src, i, s->name,
                        "unknown key \"%s\" (known: name, url, input, fields, when, csv, timeout_ms, retries, headers)", k);
        }
    }
    if (!s->url)
        return fail(err, errlen, src, i, s->name, "\"url\" is missing");
    return 0;
}

int pipeline_parse(const char *text, size_t len, const char *source, struct pipeline **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        if (at && at >= text && at <= text + len)
            for (const char *c = text; c < at; c++)
                line += *c == '\n';
        return fail(err, errlen, source, -1, NULL, "not valid JSON (near line %d)", line);
    }
    struct pipeline *p = calloc(1, sizeof *p);
    if (!p || !(p->source = strdup(source)) || !(p->text = malloc(len + 1))) {
        cJSON_Delete(root);
        pipeline_free(p);
        return fail(err, errlen, source, -1, NULL, "out of memory");
    }
    memcpy(p->text, text, len);
    p->text[len] = 0;
    p->text_len = len;
    const cJSON *stages = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "stages") : NULL;
    int rc = 0;
    if (!cJSON_IsArray(stages)) {
        rc = fail(err, errlen, source, -1, NULL, "expected an object with a \"stages\" array");
        goto done;
    }
    for (const cJSON *kv = root->child; kv; kv = kv->next)
        if (strcmp(kv->string, "stages")) {
            rc = fail(err, errlen, source, -1, NULL, "unknown top-level key \"%s\" (known: stages)", kv->string);
            goto done;
        }
    int n = cJSON_GetArraySize(stages);
    if (n == 0 || n > PIPELINE_MAX_STAGES) {
        rc = fail(err, errlen, source, -1, NULL, "\"stages\" must hold 1 to %d stages", PIPELINE_MAX_STAGES);
        goto done;
    }
    p->stages = calloc((size_t)n, sizeof *p->stages);
    int i = 0;
    for (const cJSON *js = stages->child; js; js = js->next, i++) {
        p->n = i + 1;
        if ((rc = parse_stage(p, i, js, source, err, errlen)))
            goto done;
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
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            if (cap > (16u << 20)) {
                fclose(f);
                free(buf);
                snprintf(err, errlen, "%s: the pipeline file is larger than 16 MiB", path);
                return -1;
            }
            buf = realloc(buf, cap *= 2);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "%s: cannot read the pipeline file", path);
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

/* Frees a buffer that may hold a token, wiping it first. */
static void wipe_free(char *p, size_t len)
{
    if (p)
        memset(p, 0, len);
    free(p);
}

/* Expands ${NAME} from the environment. Returns NULL (and names the variable, never a value)
 * when one is unset or its value would break the header onto a new line. */
static char *expand_env(const char *tmpl, char *err, size_t errlen, const char *src, int i,
                        const char *stage)
{
    /* Sized up front so the buffer is never reallocated (a realloc would leave a copy of a
     * token in freed memory). */
    size_t cap = strlen(tmpl) + 1, len = 0;
    for (const char *c = tmpl; (c = strstr(c, "${"));) {
        const char *end = strchr(c + 2, '}');
        if (!end)
            break;
        char name[128];
        size_t nl = (size_t)(end - c - 2);
        if (nl && nl < sizeof name) {
            memcpy(name, c + 2, nl);
            name[nl] = 0;
            const char *v = getenv(name);
            cap += v ? strlen(v) : 0;
        }
        c = end + 1;
    }
    char *out = malloc(cap);
    for (const char *c = tmpl; *c;) {
        const char *end;
        if (c[0] == '$' && c[1] == '{' && (end = strchr(c + 2, '}'))) {
            char name[128];
            size_t nl = (size_t)(end - c - 2);
            if (nl == 0 || nl >= sizeof name) {
                wipe_free(out, len);
                fail(err, errlen, src, i, stage, "a header has a bad ${...} reference");
                return NULL;
            }
            memcpy(name, c + 2, nl);
            name[nl] = 0;
            const char *v = getenv(name);
            if (!v) {
                wipe_free(out, len);
                fail(err, errlen, src, i, stage,
                     "a header uses ${%s}, which is not set in the environment (export it and run again)", name);
                return NULL;
            }
            if (strpbrk(v, "\r\n")) {
                wipe_free(out, len);
                fail(err, errlen, src, i, stage,
                     "a header uses ${%s}, whose value holds a line break (strip it and run again)", name);
                return NULL;
            }
            size_t vl = strlen(v);
            memcpy(out + len, v, vl);
            len += vl;
            c = end + 1;
        } else {
            out[len++] = *c++;
        }
    }
    out[len] = 0;
    return out;
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

int pipeline_resolve(struct pipeline *p, const char *base, char *err, size_t errlen)
{
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    for (int i = 0; i < p->n; i++) {
        struct stage *s = &p->stages[i];
        free(s->full_url);
        if (has_scheme(s->url)) {
            s->full_url = strdup(s->url);
        } else {
            size_t ul = strlen(s->url);
            s->full_url = malloc(bl + ul + 2);
            memcpy(s->full_url, base, bl);
            size_t o = bl;
            if (s->url[0] != '/')
                s->full_url[o++] = '/';
            memcpy(s->full_url + o, s->url, ul + 1);
        }
        if (strncmp(s->full_url, "http://", 7) && strncmp(s->full_url, "https://", 8))
            return fail(err, errlen, p->source, i, s->name,
                        "url \"%s\" must start with http:// or https:// (or be relative to --server)", s->full_url);
        curl_slist_free_all(s->headers);
        s->headers = NULL;
        /* Fixed headers: JSON bodies, and no 'Expect: 100-continue' round trip for large ones. */
        s->headers = curl_slist_append(s->headers, "Content-Type: application/json");
        s->headers = curl_slist_append(s->headers, "Expect:");
        for (int h = 0; h < s->n_headers; h++) {
            char *line = expand_env(s->header_tmpl[h], err, errlen, p->source, i, s->name);
            if (!line)
                return -1;
            s->headers = curl_slist_append(s->headers, line);
            wipe_free(line, strlen(line)); /* it may hold a token */
        }
    }
    return 0;
}

int pipeline_adopt_resolved(struct pipeline *p, int i, const char *full_url, const char *const *lines, int n)
{
    struct stage *s = &p->stages[i];
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
        for (int h = 0; h < s->n_headers; h++)
            free(s->header_tmpl[h]);
        free(s->header_tmpl);
        curl_slist_free_all(s->headers);
    }
    free(p->stages);
    free(p->source);
    free(p->text);
    free(p);
}
