/* template: see template.h. */
#include "pipeline/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_seg(struct tmpl *t, enum tseg_kind k, enum tseg_ctx c, const char *text, size_t len, int stage)
{
    if (k == T_TEXT && len == 0)
        return 0;
    if (k == T_TEXT && t->n && t->seg[t->n - 1].kind == T_TEXT) { /* one run of fixed text */
        struct tseg *s = &t->seg[t->n - 1];
        char *nt = realloc(s->text, s->len + len + 1);
        if (!nt)
            return -1;
        memcpy(nt + s->len, text, len);
        s->len += len;
        nt[s->len] = 0;
        s->text = nt;
        return 0;
    }
    if (t->n == t->cap) {
        int cap = t->cap ? t->cap * 2 : 8;
        struct tseg *ns = realloc(t->seg, (size_t)cap * sizeof *ns);
        if (!ns)
            return -1;
        t->seg = ns;
        t->cap = cap;
    }
    struct tseg *s = &t->seg[t->n];
    memset(s, 0, sizeof *s);
    s->kind = k;
    s->ctx = c;
    s->stage = stage;
    if (k == T_TEXT) {
        if (!(s->text = malloc(len + 1)))
            return -1;
        memcpy(s->text, text, len);
        s->text[len] = 0;
        s->len = len;
    }
    t->n++;
    return 0;
}

static void tmpl_free(struct tmpl *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->seg[i].text);
    free(t->seg);
    memset(t, 0, sizeof *t);
}

void body_free(struct body *b)
{
    if (!b)
        return;
    tmpl_free(&b->t);
    tmpl_free(&b->outer);
    for (int i = 0; i < b->n_parts; i++) {
        free(b->parts[i].name);
        tmpl_free(&b->parts[i].value);
    }
    free(b->parts);
    memset(b, 0, sizeof *b);
}

/* Valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF): the length of the sequence at s,
 * or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t l = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!l || l > n)
        return 0;
    for (size_t i = 1; i < l; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return l;
}

char *json_escape_text(const char *s, size_t n, size_t *out_len, int *bad)
{
    *bad = 0;
    size_t cap = n + 16, o = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n;) {
        if (o + 8 > cap) {
            cap = cap * 2 + 8;
            char *no = realloc(out, cap);
            if (!no) {
                free(out);
                return NULL;
            }
            out = no;
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
            i++;
        } else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            const char *esc = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
            if (esc) {
                memcpy(out + o, esc, 2);
                o += 2;
            } else {
                memcpy(out + o, "\\u00", 4);
                out[o + 4] = hex[c >> 4];
                out[o + 5] = hex[c & 15];
                o += 6;
            }
            i++;
        } else {
            size_t l = utf8_seq((const unsigned char *)s + i, n - i);
            if (!l) {
                free(out);
                *bad = 1;
                return NULL;
            }
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

/* ---- compiling ---- */

struct cc {
    tmpl_stage_ref ref;
    void *arg;
    char *err;
    size_t errlen;
    struct body *b;
    int in_form;
    int outer;   /* compiling a batch's outer template: only {{batch}} and {{batch.size}} */
    int batches; /* {{batch}} placeholders seen */
};

static int oom(struct cc *c)
{
    snprintf(c->err, c->errlen, "out of memory");
    return -1;
}

/* Appends fixed text, expanding ${VAR}, escaped for ctx. */
static int add_text(struct cc *c, struct tmpl *t, const char *s, size_t n, enum tseg_ctx ctx)
{
    size_t i = 0;
    while (i < n) {
        const char *d = memmem(s + i, n - i, "${", 2);
        size_t lit = d ? (size_t)(d - (s + i)) : n - i;
        const char *piece = s + i;
        size_t pl = lit;
        char *esc = NULL;
        for (int pass = 0; pass < 2; pass++) {
            if (pl) {
                if (ctx == C_STRING) {
                    int bad;
                    size_t el;
                    if (!(esc = json_escape_text(piece, pl, &el, &bad)))
                        return bad ? (snprintf(c->err, c->errlen, "the body's text is not valid UTF-8"), -1) : oom(c);
                    int r = add_seg(t, T_TEXT, ctx, esc, el, -1);
                    free(esc);
                    esc = NULL;
                    if (r)
                        return oom(c);
                } else if (add_seg(t, T_TEXT, ctx, piece, pl, -1)) {
                    return oom(c);
                }
            }
            if (pass == 1 || !d)
                break;
            /* ${VAR}: the environment's value */
            const char *end = memchr(d + 2, '}', n - (size_t)(d + 2 - s));
            if (!end) {
                snprintf(c->err, c->errlen, "an unclosed ${ in the body");
                return -1;
            }
            char var[128];
            size_t vl = (size_t)(end - (d + 2));
            if (vl == 0 || vl >= sizeof var) {
                snprintf(c->err, c->errlen, "a ${...} in the body must name a variable");
                return -1;
            }
            memcpy(var, d + 2, vl);
            var[vl] = 0;
            for (size_t k = 0; k < vl; k++)
                if (!(var[k] == '_' || (var[k] >= 'A' && var[k] <= 'Z') || (var[k] >= 'a' && var[k] <= 'z') ||
                      (k && var[k] >= '0' && var[k] <= '9'))) {
                    snprintf(c->err, c->errlen, "\"${%.64s}\" in the body is not an environment variable's name", var);
                    return -1;
                }
            const char *val = getenv(var);
            if (!val) {
                snprintf(c->err, c->errlen, "the body uses ${%s}, which is not set", var);
                return -1;
            }
            piece = val;
            pl = strlen(val);
            i = (size_t)(end + 1 - s);
        }
        if (!d)
            break;
    }
    return 0;
}

/* One {{placeholder}} (name without braces), in ctx. */
static int add_placeholder(struct cc *c, struct tmpl *t, const char *name, enum tseg_ctx ctx, int whole)
{
    enum tseg_kind k;
    int stage = -1;
    int batch_ph = !strcmp(name, "batch") || !strcmp(name, "batch.size");
    if (batch_ph != c->outer) {
        if (batch_ph)
            snprintf(c->err, c->errlen, "{{%s}} belongs in the body of a stage with \"batch\"", name);
        else
            snprintf(c->err, c->errlen,
                     "in a stage with \"batch\" the body is the request around the items: {{%.64s}} goes in "
                     "\"batch\": {\"item\": ...}",
                     name);
        return -1;
    }
    if (batch_ph) {
        if (name[5] == 0 && !whole) {
            snprintf(c->err, c->errlen, "{{batch}} (the list of items) must be a whole string value, \"{{batch}}\"");
            return -1;
        }
        c->batches += name[5] == 0;
        return add_seg(t, name[5] == 0 ? T_BATCH : T_BATCH_SIZE, ctx, NULL, 0, -1) ? oom(c) : 0;
    }
    if (!strcmp(name, "image")) {
        k = T_B64;
        c->b->needs |= NEED_B64;
    } else if (!strcmp(name, "image.bytes") || !strcmp(name, "image.file")) {
        int file = name[6] == 'f';
        if (!file && whole && c->b->kind == BODY_RAW && !c->in_form) {
            c->b->needs |= NEED_BYTES;
            return add_seg(t, T_BYTES, C_RAW, NULL, 0, -1) ? oom(c) : 0;
        }
        if (c->in_form && file && whole)
            return 0; /* the caller makes the part a file part */
        snprintf(c->err, c->errlen, "%s",
                 file ? (c->in_form ? "{{image.file}} must be a form field's whole value"
                                    : "{{image.file}} belongs in \"form\" (multipart), not in \"body\"")
                      : c->in_form ? "{{image.bytes}} in a form: use {{image.file}} for the file part"
                                   : "{{image.bytes}} (raw bytes) cannot go inside a JSON body: use \"body\": \"{{image.bytes}}\" for a raw body, or {{image}} for base64");
        return -1;
    } else if (!strcmp(name, "image.mime")) {
        k = T_MIME;
    } else if (!strcmp(name, "image.width") || !strcmp(name, "image.height")) {
        k = name[6] == 'w' ? T_WIDTH : T_HEIGHT;
        c->b->needs |= NEED_SIZE;
    } else if (!strcmp(name, "path")) {
        k = T_PATH;
    } else if (!strcmp(name, "name")) {
        k = T_NAME;
    } else if (!strcmp(name, "index")) {
        k = T_INDEX;
    } else {
        char why[256];
        if ((stage = c->ref(c->arg, name, why, sizeof why)) < 0) {
            snprintf(c->err, c->errlen, "placeholder {{%.64s}}: %s", name, why);
            return -1;
        }
        k = T_STAGE;
        c->b->stage_refs |= 1ull << stage;
    }
    /* A whole-string image/mime/path/name is a JSON string: its quotes are fixed text. */
    int quoted = ctx == C_VALUE && k != T_INDEX && k != T_STAGE && k != T_WIDTH && k != T_HEIGHT; /* (never T_BATCH*) */
    if (quoted && add_seg(t, T_TEXT, ctx, "\"", 1, -1))
        return oom(c);
    if (add_seg(t, k, quoted ? C_STRING : ctx, NULL, 0, stage))
        return oom(c);
    if (quoted && add_seg(t, T_TEXT, ctx, "\"", 1, -1))
        return oom(c);
    return 0;
}

/* A string value with placeholders: in a JSON body (ctx C_VALUE: with its quotes) or as a form
 * field's raw text (C_RAW). */
static int add_string(struct cc *c, struct tmpl *t, const char *s, enum tseg_ctx ctx)
{
    size_t n = strlen(s);
    const char *open = strstr(s, "{{");
    const char *close = open ? strstr(open + 2, "}}") : NULL;
    if (open == s && close && close + 2 == s + n && !memchr(s + 2, '{', (size_t)(close - s - 2))) {
        char name[128];
        size_t nl = (size_t)(close - open - 2);
        if (nl >= sizeof name) {
            snprintf(c->err, c->errlen, "placeholder {{%.40s...}} is too long", open + 2);
            return -1;
        }
        memcpy(name, open + 2, nl);
        name[nl] = 0;
        return add_placeholder(c, t, name, ctx, 1);
    }
    enum tseg_ctx inner = ctx == C_VALUE ? C_STRING : C_RAW;
    if (ctx == C_VALUE && add_seg(t, T_TEXT, ctx, "\"", 1, -1))
        return oom(c);
    size_t i = 0;
    while (i < n) {
        const char *o = strstr(s + i, "{{");
        const char *e = o ? strstr(o + 2, "}}") : NULL;
        size_t lit = (o && e) ? (size_t)(o - (s + i)) : n - i;
        if (add_text(c, t, s + i, lit, inner))
            return -1;
        if (!(o && e))
            break;
        char name[128];
        size_t nl = (size_t)(e - o - 2);
        if (nl >= sizeof name) {
            snprintf(c->err, c->errlen, "placeholder {{%.40s...}} is too long", o + 2);
            return -1;
        }
        memcpy(name, o + 2, nl);
        name[nl] = 0;
        if (add_placeholder(c, t, name, inner, 0))
            return -1;
        i = (size_t)(e + 2 - s);
    }
    if (ctx == C_VALUE && add_seg(t, T_TEXT, ctx, "\"", 1, -1))
        return oom(c);
    return 0;
}

static int add_value(struct cc *c, struct tmpl *t, const cJSON *v, int depth)
{
    if (depth > 64) {
        snprintf(c->err, c->errlen, "the body is nested too deep");
        return -1;
    }
    if (cJSON_IsString(v))
        return add_string(c, t, v->valuestring, C_VALUE);
    if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int obj = cJSON_IsObject(v);
        if (add_seg(t, T_TEXT, C_VALUE, obj ? "{" : "[", 1, -1))
            return oom(c);
        for (const cJSON *e = v->child; e; e = e->next) {
            if (e != v->child && add_seg(t, T_TEXT, C_VALUE, ",", 1, -1))
                return oom(c);
            if (obj) {
                int bad;
                size_t kl;
                char *k = json_escape_text(e->string, strlen(e->string), &kl, &bad);
                if (!k && bad) {
                    snprintf(c->err, c->errlen, "a key of the body is not valid UTF-8");
                    return -1;
                }
                int r = !k || add_seg(t, T_TEXT, C_VALUE, "\"", 1, -1) || add_seg(t, T_TEXT, C_VALUE, k, kl, -1) ||
                        add_seg(t, T_TEXT, C_VALUE, "\":", 2, -1);
                free(k);
                if (r)
                    return oom(c);
            }
            if (add_value(c, t, e, depth + 1))
                return -1;
        }
        return add_seg(t, T_TEXT, C_VALUE, obj ? "}" : "]", 1, -1) ? oom(c) : 0;
    }
    char *txt = cJSON_PrintUnformatted(v);
    int r = !txt || add_seg(t, T_TEXT, C_VALUE, txt, strlen(txt), -1);
    free(txt);
    return r ? oom(c) : 0;
}

int body_compile_json(struct body *b, const cJSON *v, tmpl_stage_ref ref, void *arg, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    struct cc c = {ref, arg, err, errlen, b, 0, 0, 0};
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "{{image.bytes}}")) {
        b->kind = BODY_RAW;
        b->needs = NEED_BYTES;
        return add_seg(&b->t, T_BYTES, C_RAW, NULL, 0, -1) ? (body_free(b), oom(&c)) : 0;
    }
    b->kind = BODY_JSON;
    if (add_value(&c, &b->t, v, 0)) {
        body_free(b);
        return -1;
    }
    return 0;
}

int body_compile_form(struct body *b, const cJSON *v, tmpl_stage_ref ref, void *arg, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->kind = BODY_FORM;
    struct cc c = {ref, arg, err, errlen, b, 1, 0, 0};
    if (!cJSON_IsObject(v) || !v->child) {
        snprintf(err, errlen, "\"form\" must be an object of fields, e.g. {\"file\": \"{{image.file}}\"}");
        return -1;
    }
    int n = cJSON_GetArraySize(v), files = 0;
    if (!(b->parts = calloc((size_t)n, sizeof *b->parts)))
        return oom(&c);
    for (const cJSON *f = v->child; f; f = f->next) {
        struct form_part *p = &b->parts[b->n_parts++];
        if (!(p->name = strdup(f->string))) {
            body_free(b);
            return oom(&c);
        }
        if (!cJSON_IsString(f)) {
            snprintf(err, errlen, "form field \"%.64s\" must be a string", f->string);
            body_free(b);
            return -1;
        }
        if (!strcmp(f->valuestring, "{{image.file}}")) {
            p->file = 1;
            b->needs |= NEED_BYTES;
            files++;
            continue;
        }
        if (add_string(&c, &p->value, f->valuestring, C_RAW)) {
            body_free(b);
            return -1;
        }
    }
    if (files > 1) {
        snprintf(err, errlen, "\"form\" has %d {{image.file}} parts; one is enough", files);
        body_free(b);
        return -1;
    }
    return 0;
}

int body_batch(struct body *b, const cJSON *outer, char *err, size_t errlen)
{
    if (b->kind != BODY_SEED && b->kind != BODY_JSON) {
        snprintf(err, errlen, "a %s body holds one image: \"batch\" needs the seed's body or a JSON \"body\"",
                 b->kind == BODY_RAW ? "raw" : "multipart");
        return -1;
    }
    struct cc c = {NULL, NULL, err, errlen, b, 0, 1, 0};
    if (!outer) {
        if (add_seg(&b->outer, T_BATCH, C_VALUE, NULL, 0, -1))
            return oom(&c);
    } else {
        if (add_value(&c, &b->outer, outer, 0))
            return -1;
        if (c.batches != 1) {
            snprintf(err, errlen, "the body of a stage with \"batch\" must hold \"{{batch}}\" (the list of items) %s",
                     c.batches ? "once" : "where the items go");
            return -1;
        }
    }
    if (b->kind == BODY_SEED) {
        /* The seed's single request is a list of one: its item is that list's element. */
        struct tseg *first = &b->t.seg[0], *last = &b->t.seg[b->t.n - 1];
        memmove(first->text, first->text + 1, first->len--);
        last->len--;
        last->text[last->len] = 0;
    }
    b->batch = 1;
    return 0;
}

int body_compile_seed(struct body *b, const struct seed_field *f, int n)
{
    memset(b, 0, sizeof *b);
    b->kind = BODY_SEED;
    b->needs = NEED_B64;
    struct tmpl *t = &b->t;
    int bad = add_seg(t, T_TEXT, C_VALUE, "[{\"im_str\":\"", 12, -1) || add_seg(t, T_B64, C_STRING, NULL, 0, -1) ||
              add_seg(t, T_TEXT, C_VALUE, "\"", 1, -1);
    for (int i = 0; i < n && !bad; i++) {
        int e;
        size_t kl;
        char *k = json_escape_text(f[i].name, strlen(f[i].name), &kl, &e);
        bad = !k || add_seg(t, T_TEXT, C_VALUE, ",\"", 2, -1) || add_seg(t, T_TEXT, C_VALUE, k, kl, -1) ||
              add_seg(t, T_TEXT, C_VALUE, "\":", 2, -1) ||
              (f[i].stage >= 0 ? add_seg(t, T_STAGE, C_VALUE, NULL, 0, f[i].stage)
                               : add_seg(t, T_TEXT, C_VALUE, f[i].literal, strlen(f[i].literal), -1));
        free(k);
        if (f[i].stage >= 0)
            b->stage_refs |= 1ull << f[i].stage;
    }
    if (bad || add_seg(t, T_TEXT, C_VALUE, "}]", 2, -1)) {
        body_free(b);
        return -1;
    }
    return 0;
}

/* ---- filling ---- */

static int put_piece(struct filled *f, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if ((f->n & 15) == 0) {
        struct piece *np = realloc(f->pc, (size_t)(f->n + 16) * sizeof *np);
        if (!np)
            return -1;
        f->pc = np;
    }
    f->pc[f->n++] = (struct piece){p, n};
    f->total += n;
    return 0;
}

/* Keeps s (malloc'd, or NULL: out of memory) for the life of f and sends it. */
static int put_owned(struct filled *f, char *s, size_t n)
{
    if (!s)
        return -1;
    if ((f->n_owned & 7) == 0) {
        char **no = realloc(f->owned, (size_t)(f->n_owned + 8) * sizeof *no);
        if (!no) {
            free(s);
            return -1;
        }
        f->owned = no;
    }
    f->owned[f->n_owned++] = s;
    return put_piece(f, s, n);
}

/* Keeps s, which a piece already points into, for the life of f. */
static int put_owned_keep(struct filled *f, char *s)
{
    if ((f->n_owned & 7) == 0) {
        char **no = realloc(f->owned, (size_t)(f->n_owned + 8) * sizeof *no);
        if (!no) {
            free(s);
            return -1;
        }
        f->owned = no;
    }
    f->owned[f->n_owned++] = s;
    return 0;
}

/* s as ctx wants it: as it is (C_RAW), or escaped inside a JSON string. */
static int put_text(struct filled *f, const char *s, size_t n, enum tseg_ctx ctx, const char *what, char *err,
                    size_t errlen)
{
    if (ctx != C_STRING) {
        return put_piece(f, s, n);
    }
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80)
            break;
        i++;
    }
    if (i == n)
        return put_piece(f, s, n); /* nothing to escape: sent from where it is */
    int bad;
    size_t el;
    char *e = json_escape_text(s, n, &el, &bad);
    if (!e && bad) {
        snprintf(err, errlen, "%s is not valid UTF-8, so it cannot go into a JSON body", what);
        return -2;
    }
    return put_owned(f, e, el);
}

int tmpl_fill(const struct tmpl *t, const struct fill_src *src, struct filled *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < t->n; i++) {
        const struct tseg *s = &t->seg[i];
        int r = 0;
        switch (s->kind) {
        case T_TEXT:
            r = put_piece(out, s->text, s->len);
            break;
        case T_B64:
            r = src->b64_ours ? put_piece(out, src->b64, src->b64_len)
                              : put_text(out, src->b64, src->b64_len, s->ctx, "the element", err, errlen);
            break;
        case T_BYTES:
            r = put_piece(out, (const char *)src->bytes, src->bytes_len);
            break;
        case T_MIME:
            r = put_piece(out, src->mime, strlen(src->mime));
            break;
        case T_PATH:
            r = put_text(out, src->path, src->path_len, s->ctx, "the path", err, errlen);
            break;
        case T_NAME:
            r = put_text(out, src->name, strlen(src->name), s->ctx, "the file name", err, errlen);
            break;
        case T_WIDTH:
        case T_HEIGHT:
        case T_INDEX: {
            char num[24];
            int l = snprintf(num, sizeof num, "%d",
                             s->kind == T_INDEX ? src->index : s->kind == T_WIDTH ? src->width : src->height);
            r = put_owned(out, strdup(num), (size_t)l);
            break;
        }
        case T_STAGE: {
            const cJSON *v = src->results[s->stage];
            if (s->ctx != C_VALUE && cJSON_IsString(v)) {
                /* A string result inside a string: its text. */
                r = put_text(out, v->valuestring, strlen(v->valuestring), s->ctx, "a result", err, errlen);
                break;
            }
            char *txt = cJSON_IsRaw(v) ? NULL : v ? cJSON_PrintUnformatted(v) : strdup("null");
            if (!cJSON_IsRaw(v) && !txt) {
                r = -1;
                break;
            }
            const char *p = txt ? txt : v->valuestring;
            size_t n = strlen(p);
            if (s->ctx != C_VALUE && n >= 2 && p[0] == '"') {
                if (s->ctx == C_STRING) {
                    /* The JSON text of a string, without its quotes, is already escaped as the
                     * inside of a JSON string wants it. */
                    r = put_piece(out, p + 1, n - 2);
                } else {
                    cJSON *tree = cJSON_Parse(p);
                    const char *str = cJSON_GetStringValue(tree);
                    r = str ? put_owned(out, strdup(str), strlen(str)) : -1;
                    cJSON_Delete(tree);
                }
            } else {
                r = put_text(out, p, n, s->ctx, "a result", err, errlen);
            }
            if (txt && r == 0 && out->n && out->pc[out->n - 1].p >= txt && out->pc[out->n - 1].p < txt + n + 1)
                r = put_owned_keep(out, txt); /* the piece points into txt: keep it */
            else
                free(txt);
            break;
        }
        case T_BATCH:
        case T_BATCH_SIZE:
            r = -1; /* an outer template is filled by batch_fill */
            break;
        }
        if (r) {
            if (r != -2)
                snprintf(err, errlen, "out of memory for the request body");
            filled_free(out);
            return -1;
        }
    }
    return 0;
}

int batch_fill(const struct tmpl *outer, const struct filled *const *items, int n, struct filled *out)
{
    memset(out, 0, sizeof *out);
    int r = 0;
    for (int i = 0; i < outer->n && !r; i++) {
        const struct tseg *s = &outer->seg[i];
        if (s->kind == T_BATCH) {
            r = put_piece(out, "[", 1);
            for (int k = 0; k < n && !r; k++) {
                if (k)
                    r = put_piece(out, ",", 1);
                for (int j = 0; j < items[k]->n && !r; j++)
                    r = put_piece(out, items[k]->pc[j].p, items[k]->pc[j].n);
            }
            if (!r)
                r = put_piece(out, "]", 1);
        } else if (s->kind == T_BATCH_SIZE) {
            char num[24];
            int l = snprintf(num, sizeof num, "%d", n);
            r = put_owned(out, strdup(num), (size_t)l);
        } else {
            r = put_piece(out, s->text, s->len);
        }
    }
    if (r)
        filled_free(out);
    return r ? -1 : 0;
}

void filled_free(struct filled *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n_owned; i++)
        free(f->owned[i]);
    free(f->owned);
    free(f->pc);
    memset(f, 0, sizeof *f);
}

size_t filled_read(const struct filled *f, size_t *pos, char *buf, size_t n)
{
    size_t done = 0, at = 0;
    for (int i = 0; i < f->n && done < n; i++) {
        const struct piece *p = &f->pc[i];
        if (*pos >= at + p->n) {
            at += p->n;
            continue;
        }
        size_t off = *pos - at, take = p->n - off;
        if (take > n - done)
            take = n - done;
        memcpy(buf + done, p->p + off, take);
        done += take;
        *pos += take;
        at += p->n;
    }
    return done;
}
