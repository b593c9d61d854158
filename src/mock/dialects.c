/* dialects: the seven other model servers (spec in dialects.h, wire protocols in
 * docs/PROTOCOLS.md).
 *
 * Each dialect is three things: the answer it builds for an image (a cJSON tree whose numbers
 * are raw text, printed in the layout that server's JSON writer uses), the error answers it
 * gives (the shapes of PROTOCOLS.md), and a strict check of the request that decides between
 * the two. The tests predict answers and CSV cells through mock_dialect_answer and
 * mock_dialect_cell, which call the very builders the server uses, so what is predicted is
 * what is sent.
 *
 * Where PROTOCOLS.md says what the real server answers, the mock answers that (status, shape,
 * and the message when it is known). Where the real server would accept what the mock refuses
 * (TF Serving ignores Content-Type, TorchServe takes any Content-Type), the mock still refuses,
 * in the server's error shape, with a message that says what is wrong: it is a test double
 * for a client that must send the right thing. */
#include "mock/dialects.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/b64.h"
#include "mock/answers.h"
#include "mock/server.h" /* enum mock_fault */

static const char *const LABELS[8] = {"cat", "dog", "car", "tree", "boat", "bird", "house", "person"};
/* Google's knowledge-graph ids and descriptions of the same labels. */
static const char *const MIDS[8] = {"/m/01yrx", "/m/0bt9lr", "/m/0k4j", "/m/07j7r",
                                    "/m/019jd", "/m/015p6", "/m/03jm5", "/m/01g317"};
static const char *const DESCRIPTIONS[8] = {"Cat", "Dog", "Car", "Tree", "Boat", "Bird", "House", "Person"};

static const char *const NAMES[MOCK_N_DIALECTS] = {
    [MOCK_D_KSERVE] = "kserve-v2",         [MOCK_D_TORCHSERVE] = "torchserve",
    [MOCK_D_TFSERVING] = "tfserving",      [MOCK_D_OPENAI] = "openai-vision",
    [MOCK_D_HF] = "hf-endpoint",           [MOCK_D_MULTIPART] = "multipart",
    [MOCK_D_GOOGLE] = "google-vision",
};

static const char *const PATHS[MOCK_N_DIALECTS] = {
    [MOCK_D_KSERVE] = "/v2/models/classifier/infer",
    [MOCK_D_TORCHSERVE] = "/predictions/classifier",
    [MOCK_D_TFSERVING] = "/v1/models/classifier:predict",
    [MOCK_D_OPENAI] = "/v1/chat/completions",
    [MOCK_D_HF] = "/models/classifier",
    [MOCK_D_MULTIPART] = "/classifier",
    [MOCK_D_GOOGLE] = "/v1/images:annotate",
};

#define MODEL "classifier"
#define MAX_LABELS 8
#define JSON_CT "application/json"

const char *mock_dialect_name(int d)
{
    return d >= 0 && d < MOCK_N_DIALECTS ? NAMES[d] : NULL;
}

int mock_dialect_from_name(const char *name)
{
    for (int d = 0; name && d < MOCK_N_DIALECTS; d++)
        if (!strcmp(name, NAMES[d]))
            return d;
    return -1;
}

const char *mock_dialect_path(int d)
{
    return d >= 0 && d < MOCK_N_DIALECTS ? PATHS[d] : NULL;
}

static int has_prefix(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && !memcmp(s, prefix, k);
}

static int is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && !memcmp(s, lit, n);
}

int mock_dialect_route(const char *path, size_t n)
{
    if (is(path, n, PATHS[MOCK_D_OPENAI]))
        return MOCK_D_OPENAI;
    if (is(path, n, PATHS[MOCK_D_GOOGLE]))
        return MOCK_D_GOOGLE;
    if (is(path, n, PATHS[MOCK_D_MULTIPART]))
        return MOCK_D_MULTIPART;
    if (has_prefix(path, n, "/v2/") || is(path, n, "/v2"))
        return MOCK_D_KSERVE;
    if (has_prefix(path, n, "/predictions/") || is(path, n, "/predictions"))
        return MOCK_D_TORCHSERVE;
    if (has_prefix(path, n, "/v1/models/"))
        return MOCK_D_TFSERVING;
    if (has_prefix(path, n, "/models/"))
        return MOCK_D_HF;
    return -1;
}

const char *mock_mime_of(const unsigned char *p, size_t n)
{
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8))
        return "image/png";
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return "image/jpeg";
    if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6)))
        return "image/gif";
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4))
        return "image/webp";
    if (n >= 2 && p[0] == 'B' && p[1] == 'M')
        return "image/bmp";
    if (n >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4)))
        return "image/tiff";
    return NULL;
}

const char *mock_http_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    }
    return "Unknown";
}

int mock_token_read(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    for (;;) {
        if (n == cap) { /* no room for the NUL: too long */
            close(fd);
            return -1;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n == cap || memchr(buf, '\0', n))
        return -1;
    buf[n] = '\0';
    return 0;
}

/* ---- text ---------------------------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_s(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_c(struct sbuf *b, char c)
{
    sb_add(b, &c, 1);
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t need;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        need = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        need = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 4, min = 0x10000;
    else
        return 0;
    if (n < need)
        return 0;
    unsigned cp = c & (0xffu >> (need + 1));
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

/* A JSON string of n bytes, quoted and escaped. Valid UTF-8 is kept as it is; a byte that is
 * not part of valid UTF-8 is read as Latin-1 (as Starlette reads header bytes), so that
 * whatever a request carried, the answer is valid JSON. */
static void sb_jstr(struct sbuf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    sb_c(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            sb_add(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            const char *short_esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                                  : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
            if (short_esc) {
                sb_s(b, short_esc);
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                sb_s(b, esc);
            }
            i++;
        } else if (c < 0x80) {
            size_t k = i;
            while (k < n && p[k] >= 0x20 && p[k] < 0x80 && p[k] != '"' && p[k] != '\\')
                k++;
            sb_add(b, p + i, k - i);
            i = k;
        } else {
            size_t k = utf8_len(p + i, n - i);
            if (k) {
                sb_add(b, p + i, k);
                i += k;
            } else {
                char two[2] = {(char)(0xc0 | c >> 6), (char)(0x80 | (c & 0x3f))};
                sb_add(b, two, 2);
                i++;
            }
        }
    }
    sb_c(b, '"');
}

/* How a server's JSON writer lays its output out. Items are always separated by ','; with an
 * indent each item goes on a line of its own. */
struct style {
    int indent;        /* spaces per level; 0: all on one line */
    const char *colon; /* between a key and its value */
    int newline_end;   /* a '\n' after the value */
};

static const struct style COMPACT = {0, ":", 0};      /* Triton, Starlette, vLLM */
static const struct style PY_INDENT2 = {2, ": ", 0};  /* Python's json.dumps(indent=2): TorchServe */
static const struct style GSON = {2, ": ", 1};        /* TorchServe's front end: Gson pretty + '\n' */
static const struct style RAPID4 = {4, ": ", 0};      /* TF Serving: rapidjson's PrettyWriter */
static const struct style OPENAI4 = {4, ": ", 1};     /* OpenAI's error bodies */
static const struct style GOOGLE2 = {2, ": ", 1};     /* Google's front end */

static void newline(struct sbuf *b, const struct style *st, int depth)
{
    if (!st->indent)
        return;
    sb_c(b, '\n');
    for (int i = 0; i < st->indent * depth; i++)
        sb_c(b, ' ');
}

/* v printed as if it sat depth levels deep in a document of this style. Numbers are raw text
 * (cJSON_CreateRaw) so that they read exactly as the server would write them; plain cJSON
 * numbers, used for integers only, print as integers. */
static void print_value(struct sbuf *b, const cJSON *v, const struct style *st, int depth)
{
    if (cJSON_IsRaw(v)) {
        sb_s(b, v->valuestring);
    } else if (cJSON_IsString(v)) {
        sb_jstr(b, v->valuestring, strlen(v->valuestring));
    } else if (cJSON_IsNumber(v)) {
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)v->valuedouble);
        sb_s(b, num);
    } else if (cJSON_IsTrue(v)) {
        sb_s(b, "true");
    } else if (cJSON_IsFalse(v)) {
        sb_s(b, "false");
    } else if (cJSON_IsNull(v)) {
        sb_s(b, "null");
    } else {
        int obj = cJSON_IsObject(v);
        sb_c(b, obj ? '{' : '[');
        for (const cJSON *c = v->child; c; c = c->next) {
            if (c != v->child)
                sb_c(b, ',');
            newline(b, st, depth + 1);
            if (obj) {
                sb_jstr(b, c->string, strlen(c->string));
                sb_s(b, st->colon);
            }
            print_value(b, c, st, depth + 1);
        }
        if (v->child)
            newline(b, st, depth);
        sb_c(b, obj ? '}' : ']');
    }
}

/* A whole document. */
static void print_doc(struct sbuf *b, const cJSON *v, const struct style *st)
{
    print_value(b, v, st, 0);
    if (st->newline_end)
        sb_c(b, '\n');
}

/* ---- building trees ------------------------------------------------------------------------ */

/* Tree building that notes a failed allocation once instead of at every call: the tree is
 * checked (tb.oom) when it is printed. */
struct tb {
    int oom;
};

/* Adds item to parent (under key when parent is an object); returns item, or NULL (and notes
 * it) when either is NULL or the link fails, item then freed. */
static cJSON *add(struct tb *t, cJSON *parent, const char *key, cJSON *item)
{
    int ok = parent && item
             && (cJSON_IsArray(parent) ? cJSON_AddItemToArray(parent, item)
                                       : cJSON_AddItemToObject(parent, key, item));
    if (!ok) {
        cJSON_Delete(item);
        t->oom = 1;
        return NULL;
    }
    return item;
}

static cJSON *root(struct tb *t, cJSON *v)
{
    if (!v)
        t->oom = 1;
    return v;
}

#define STR(s) cJSON_CreateString(s)
#define RAW(s) cJSON_CreateRaw(s)
#define INT(i) cJSON_CreateNumber((double)(i))
#define OBJ() cJSON_CreateObject()
#define ARR() cJSON_CreateArray()
#define NUL() cJSON_CreateNull()

/* ---- the model ----------------------------------------------------------------------------- */

struct cls {
    int label[MAX_LABELS];  /* index into LABELS */
    int milli[MAX_LABELS];  /* score in thousandths */
};

static void classify(uint64_t key, struct cls *c)
{
    int l = (int)((key >> 8) % 8);
    int rest = 1000 - (c->milli[0] = 500 + (int)((key >> 16) % 500));
    c->label[0] = l;
    for (int i = 1; i < MAX_LABELS; i++) {
        c->label[i] = (l + i) % 8;
        c->milli[i] = rest / 2;
        rest -= c->milli[i];
    }
}

/* A score as the servers' JSON writers print that value: the shortest text that reads back as
 * it, with at least one decimal (Python's repr, rapidjson, protobuf): 0.734, 0.5, 0.0. */
static const char *num_server(int milli, char buf[8])
{
    unsigned m = (unsigned)milli % 1000000; /* 0 .. 1000 in practice; bounded for the compiler */
    snprintf(buf, 8, "%u.%03u", m / 1000 % 10, m % 1000);
    size_t n = strlen(buf);
    while (n > 3 && buf[n - 1] == '0')
        buf[--n] = '\0';
    return buf;
}

/* The same value as libjq 1.6 prints it (jvp_dtoa_fmt: shortest, no ".0"): 0.734, 0.5, 0. */
static const char *num_jq(int milli, char buf[8])
{
    num_server(milli, buf);
    size_t n = strlen(buf);
    if (n == 3 && buf[2] == '0')
        buf[1] = '\0';
    return buf;
}

static cJSON *rawnum(int milli)
{
    char buf[8];
    return RAW(num_server(milli, buf));
}

/* ---- answers ------------------------------------------------------------------------------- */

/* KServe v2 / Triton: {"model_name", "model_version", ["id",] "outputs": [OUTPUT: the label
 * (BYTES), SCORE: its score (FP32)]}, the outputs asked for or all of them. */
static cJSON *kserve_answer(struct tb *t, const struct cls *c, const char *id, int want_label,
                            int want_score)
{
    cJSON *o = root(t, OBJ());
    add(t, o, "model_name", STR(MODEL));
    add(t, o, "model_version", STR("1"));
    if (id)
        add(t, o, "id", STR(id));
    cJSON *outs = add(t, o, "outputs", ARR());
    if (want_label) {
        cJSON *e = add(t, outs, NULL, OBJ());
        add(t, e, "name", STR("OUTPUT"));
        add(t, e, "datatype", STR("BYTES"));
        add(t, add(t, e, "shape", ARR()), NULL, INT(1));
        add(t, add(t, e, "data", ARR()), NULL, STR(LABELS[c->label[0]]));
    }
    if (want_score) {
        cJSON *e = add(t, outs, NULL, OBJ());
        add(t, e, "name", STR("SCORE"));
        add(t, e, "datatype", STR("FP32"));
        add(t, add(t, e, "shape", ARR()), NULL, INT(1));
        add(t, add(t, e, "data", ARR()), NULL, rawnum(c->milli[0]));
    }
    return o;
}

/* TorchServe's image_classifier: the top 5 as {label: probability}, best first. */
static cJSON *torch_answer(struct tb *t, const struct cls *c)
{
    cJSON *o = root(t, OBJ());
    for (int i = 0; i < 5; i++)
        add(t, o, LABELS[c->label[i]], rawnum(c->milli[i]));
    return o;
}

/* One TF Serving prediction: a model with two named outputs, so an object. */
static cJSON *tfs_prediction(struct tb *t, const struct cls *c)
{
    cJSON *o = root(t, OBJ());
    add(t, o, "label", STR(LABELS[c->label[0]]));
    add(t, o, "score", rawnum(c->milli[0]));
    return o;
}

/* What the chat model writes as its message: a JSON text, scores with three decimals. */
static void openai_content(const struct cls *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "{\"label\": \"%s\", \"score\": %d.%03d}", LABELS[c->label[0]],
             c->milli[0] / 1000, c->milli[0] % 1000);
}

/* An OpenAI chat.completion object (as vLLM writes it: compact). */
static cJSON *openai_answer(struct tb *t, uint64_t key, const struct cls *c)
{
    char id[40], content[96];
    snprintf(id, sizeof id, "chatcmpl-%016" PRIx64, key);
    openai_content(c, content, sizeof content);
    cJSON *o = root(t, OBJ());
    add(t, o, "id", STR(id));
    add(t, o, "object", STR("chat.completion"));
    add(t, o, "created", INT(1735142223));
    add(t, o, "model", STR(MODEL));
    cJSON *ch = add(t, add(t, o, "choices", ARR()), NULL, OBJ());
    add(t, ch, "index", INT(0));
    cJSON *msg = add(t, ch, "message", OBJ());
    add(t, msg, "role", STR("assistant"));
    add(t, msg, "content", STR(content));
    add(t, ch, "finish_reason", STR("stop"));
    cJSON *u = add(t, o, "usage", OBJ());
    add(t, u, "prompt_tokens", INT(97));
    add(t, u, "completion_tokens", INT(14));
    add(t, u, "total_tokens", INT(111));
    return o;
}

/* Hugging Face image-classification: [{"label", "score"}, ...], top_k of them, best first. */
static cJSON *hf_answer(struct tb *t, const struct cls *c, int top_k)
{
    cJSON *a = root(t, ARR());
    for (int i = 0; i < top_k && i < MAX_LABELS; i++) {
        cJSON *e = add(t, a, NULL, OBJ());
        add(t, e, "label", STR(LABELS[c->label[i]]));
        add(t, e, "score", rawnum(c->milli[i]));
    }
    return a;
}

/* The FastAPI app: {"filename": the part's filename, "label", "score"}. */
static cJSON *fastapi_answer(struct tb *t, const char *filename, const struct cls *c)
{
    cJSON *o = root(t, OBJ());
    add(t, o, "filename", STR(filename ? filename : ""));
    add(t, o, "label", STR(LABELS[c->label[0]]));
    add(t, o, "score", rawnum(c->milli[0]));
    return o;
}

#define GOOGLE_DEFAULT_RESULTS 5

/* One Google Vision AnnotateImageResponse: the labels, or the per-image error of bytes that are
 * not an image. */
static cJSON *google_response(struct tb *t, const unsigned char *img, size_t len, int max_results)
{
    cJSON *r = root(t, OBJ());
    if (len == 0 || !mock_mime_of(img, len)) {
        cJSON *e = add(t, r, "error", OBJ());
        add(t, e, "code", INT(3));
        add(t, e, "message", STR("Bad image data."));
        return r;
    }
    struct cls c;
    classify(mock_key(img, len), &c);
    cJSON *la = add(t, r, "labelAnnotations", ARR());
    for (int i = 0; i < max_results && i < MAX_LABELS; i++) {
        cJSON *e = add(t, la, NULL, OBJ());
        add(t, e, "mid", STR(MIDS[c.label[i]]));
        add(t, e, "description", STR(DESCRIPTIONS[c.label[i]]));
        add(t, e, "score", rawnum(c.milli[i]));
        add(t, e, "topicality", rawnum(c.milli[i]));
    }
    return r;
}

/* ---- replies ------------------------------------------------------------------------------- */

/* Prints tree (freed here) into out as the body of a status answer. 0, or -1 out of memory. */
static int reply(struct mock_dans *out, struct tb *t, cJSON *tree, const struct style *st,
                 int status, int outcome)
{
    struct sbuf b = {0};
    if (tree && !t->oom)
        print_doc(&b, tree, st);
    cJSON_Delete(tree);
    if (!tree || t->oom || b.oom || !b.p) {
        free(b.p);
        return -1;
    }
    out->status = status;
    out->content_type = JSON_CT;
    out->outcome = outcome;
    out->body = b.p;
    out->len = b.n;
    return 0;
}

static int reply_text(struct mock_dans *out, int status, const char *ct, const char *text, int outcome)
{
    size_t n = strlen(text);
    if (!(out->body = malloc(n + 1)))
        return -1;
    memcpy(out->body, text, n + 1);
    out->len = n;
    out->status = status;
    out->content_type = ct;
    out->outcome = outcome;
    return 0;
}

#define REJ MOCK_D_REJECTED

/* Triton and KServe: {"error": "<message>"} */
static int err_kserve(struct mock_dans *out, int status, const char *msg)
{
    struct tb t = {0};
    cJSON *o = root(&t, OBJ());
    add(&t, o, "error", STR(msg));
    return reply(out, &t, o, &COMPACT, status, REJ);
}

/* TorchServe's front end: {"code", "type": the Java exception, "message"}, Gson pretty. */
static int err_torch(struct mock_dans *out, int status, const char *type, const char *msg)
{
    struct tb t = {0};
    cJSON *o = root(&t, OBJ());
    add(&t, o, "code", INT(status));
    add(&t, o, "type", STR(type));
    add(&t, o, "message", STR(msg));
    return reply(out, &t, o, &GSON, status, REJ);
}

/* TF Serving: {"error": "<message>"}, rapidjson pretty. */
static int err_tfs(struct mock_dans *out, int status, const char *msg)
{
    struct tb t = {0};
    cJSON *o = root(&t, OBJ());
    add(&t, o, "error", STR(msg));
    return reply(out, &t, o, &RAPID4, status, REJ);
}

/* OpenAI: {"error": {"message", "type", "param", "code"}}; param and code may be null. */
static int err_openai(struct mock_dans *out, int status, const char *msg, const char *type,
                      const char *param, const char *code)
{
    struct tb t = {0};
    cJSON *o = root(&t, OBJ());
    cJSON *e = add(&t, o, "error", OBJ());
    add(&t, e, "message", STR(msg));
    add(&t, e, "type", STR(type));
    add(&t, e, "param", param ? STR(param) : NUL());
    add(&t, e, "code", code ? STR(code) : NUL());
    return reply(out, &t, o, &OPENAI4, status, REJ);
}

static int err_openai_bad(struct mock_dans *out, const char *msg, const char *param)
{
    return err_openai(out, 400, msg, "invalid_request_error", param, NULL);
}

/* Hugging Face: {"error": "<message>"} */
static int err_hf(struct mock_dans *out, int status, const char *msg)
{
    return err_kserve(out, status, msg);
}

/* FastAPI's HTTPException: {"detail": "<message>"} */
static int err_detail(struct mock_dans *out, int status, const char *msg)
{
    struct tb t = {0};
    cJSON *o = root(&t, OBJ());
    add(&t, o, "detail", STR(msg));
    return reply(out, &t, o, &COMPACT, status, REJ);
}

/* FastAPI's 422 for the `file` parameter (Pydantic v2 items): type "missing" when the form has
 * no such field, "value_error" when the field is not a file. */
static int err_fastapi_422(struct mock_dans *out, int not_a_file)
{
    struct tb t = {0};
    cJSON *o = root(&t, OBJ());
    cJSON *item = add(&t, add(&t, o, "detail", ARR()), NULL, OBJ());
    add(&t, item, "type", STR(not_a_file ? "value_error" : "missing"));
    cJSON *loc = add(&t, item, "loc", ARR());
    add(&t, loc, NULL, STR("body"));
    add(&t, loc, NULL, STR("file"));
    add(&t, item, "msg", STR(not_a_file ? "Value error, Expected UploadFile, received: <class 'str'>"
                                        : "Field required"));
    add(&t, item, "input", NUL());
    if (not_a_file)
        add(&t, add(&t, item, "ctx", OBJ()), "error", OBJ());
    return reply(out, &t, o, &COMPACT, 422, REJ);
}

static const char *google_status(int status)
{
    switch (status) {
    case 400: return "INVALID_ARGUMENT";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 429: return "RESOURCE_EXHAUSTED";
    case 503: return "UNAVAILABLE";
    }
    return "INTERNAL";
}

/* Google's error model (AIP-193): {"error": {"code", "message", "status"[, "details": [an
 * ErrorInfo with reason]]}}. */
static int err_google(struct mock_dans *out, int status, const char *msg, const char *reason, int outcome)
{
    struct tb t = {0};
    cJSON *o = root(&t, OBJ());
    cJSON *e = add(&t, o, "error", OBJ());
    add(&t, e, "code", INT(status));
    add(&t, e, "message", STR(msg));
    add(&t, e, "status", STR(google_status(status)));
    if (reason) {
        cJSON *info = add(&t, add(&t, e, "details", ARR()), NULL, OBJ());
        add(&t, info, "@type", STR("type.googleapis.com/google.rpc.ErrorInfo"));
        add(&t, info, "reason", STR(reason));
        add(&t, info, "domain", STR("googleapis.com"));
        add(&t, add(&t, info, "metadata", OBJ()), "service", STR("vision.googleapis.com"));
    }
    return reply(out, &t, o, &GOOGLE2, status, outcome);
}

/* ---- injected faults ----------------------------------------------------------------------- */

#define GARBAGE "<html>injected fault: garbage {\"result\": "

/* The answer of an injected fault in the server's own shape. --error-rate gives each server's
 * usual transient failure: a 500, TorchServe's 503 "Prediction failed" (any handler
 * exception), Hugging Face's 503 "currently loading" with estimated_time, FastAPI's plain-text
 * 500. --rate-429 a 429 with Retry-After. */
static int serve_fault(const struct mock_dreq *rq, struct mock_dans *out)
{
    int rc = 0;
    if (rq->fault == MOCK_FAULT_GARBAGE) {
        rc = reply_text(out, 200, JSON_CT, GARBAGE, MOCK_D_FAULTED);
        return rc;
    }
    int r429 = rq->fault == MOCK_FAULT_429;
    switch (rq->dialect) {
    case MOCK_D_KSERVE:
        rc = err_kserve(out, r429 ? 429 : 500, r429 ? "injected fault: rate limited" : "injected fault: error");
        break;
    case MOCK_D_TORCHSERVE:
        rc = r429 ? err_torch(out, 429, "ServiceUnavailableException", "injected fault: rate limited")
                  : err_torch(out, 503, "InternalServerException", "Prediction failed");
        break;
    case MOCK_D_TFSERVING:
        rc = err_tfs(out, r429 ? 429 : 500, r429 ? "injected fault: rate limited" : "injected fault: error");
        break;
    case MOCK_D_OPENAI:
        rc = r429 ? err_openai(out, 429, "Rate limit reached for classifier (injected fault). Please try "
                               "again later.", "requests", NULL, "rate_limit_exceeded")
                  : err_openai(out, 500, "The server had an error while processing your request. Sorry "
                               "about that!", "server_error", NULL, NULL);
        break;
    case MOCK_D_HF:
        if (r429) {
            rc = err_hf(out, 429, "Rate limit reached (injected fault). Please try again later.");
        } else {
            struct tb t = {0};
            char secs[24];
            snprintf(secs, sizeof secs, "%d.0", rq->retry_after);
            cJSON *o = root(&t, OBJ());
            add(&t, o, "error", STR("Model " MODEL " is currently loading"));
            add(&t, o, "estimated_time", RAW(secs));
            rc = reply(out, &t, o, &COMPACT, 503, MOCK_D_FAULTED);
        }
        break;
    case MOCK_D_MULTIPART:
        rc = r429 ? err_detail(out, 429, "injected fault: rate limited")
                  : reply_text(out, 500, "text/plain; charset=utf-8", "Internal Server Error", MOCK_D_FAULTED);
        break;
    case MOCK_D_GOOGLE:
        rc = r429 ? err_google(out, 429, "Quota exceeded for quota metric 'Requests' (injected fault).",
                               "RATE_LIMIT_EXCEEDED", MOCK_D_FAULTED)
                  : err_google(out, 500, "Internal error encountered.", NULL, MOCK_D_FAULTED);
        break;
    }
    if (rc == 0) {
        out->outcome = MOCK_D_FAULTED;
        if (r429)
            out->retry_after = rq->retry_after;
    }
    return rc;
}

/* ---- request checks, shared ---------------------------------------------------------------- */

#define WHY 256

/* The media type of a Content-Type (parameters cut off, blanks trimmed) into buf, lowercased;
 * "" when ct is NULL. */
static const char *media_type(const char *ct, char *buf, size_t cap)
{
    size_t n = 0;
    if (ct) {
        while (*ct == ' ' || *ct == '\t')
            ct++;
        while (ct[n] && ct[n] != ';')
            n++;
        while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
            n--;
    }
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(ct[i] >= 'A' && ct[i] <= 'Z' ? ct[i] + 32 : ct[i]);
    buf[n] = '\0';
    return buf;
}

static int is_json_ct(const char *ct)
{
    char mt[128];
    return !strcmp(media_type(ct, mt, sizeof mt), JSON_CT);
}

/* NULL when ct is right for raw image bytes whose magic type is mime (NULL: not an image the
 * magic numbers know): that type exactly, or when the magic is unknown any image/... or
 * application/octet-stream. Else the reason, in why. */
static const char *raw_ct_problem(const char *ct, const char *mime, char *why)
{
    char mt[128];
    media_type(ct, mt, sizeof mt);
    if (!ct || !*mt) {
        snprintf(why, WHY, "no Content-Type: send the image's own type (%s)",
                 mime ? mime : "image/... or application/octet-stream");
        return why;
    }
    if (mime ? !strcmp(mt, mime) : (!strncmp(mt, "image/", 6) && mt[6]) || !strcmp(mt, "application/octet-stream"))
        return NULL;
    if (mime)
        snprintf(why, WHY, "Content-Type is %.60s but the bytes are %s", mt, mime);
    else
        snprintf(why, WHY, "Content-Type is %.60s: send image/... or application/octet-stream", mt);
    return why;
}

static int only_space(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return 0;
    return 1;
}

/* 1 when some object in v has a key twice. */
static int dup_keys(const cJSON *v)
{
    for (const cJSON *c = v ? v->child : NULL; c; c = c->next) {
        if (cJSON_IsObject(v))
            for (const cJSON *d = c->next; d; d = d->next)
                if (!strcmp(c->string, d->string))
                    return 1;
        if (dup_keys(c))
            return 1;
    }
    return 0;
}

/* The body as one JSON value: a tree, or NULL with the reason in why. A key given twice and an
 * escaped NUL are refused (cJSON would keep both keys, and cut a string at the NUL). */
static cJSON *parse_json(const struct mock_dreq *rq, char *why)
{
    const char *body = (const char *)rq->body, *end = NULL;
    if (rq->len == 0) {
        snprintf(why, WHY, "the body is empty");
        return NULL;
    }
    if (memmem(body, rq->len, "\\u0000", 6)) {
        snprintf(why, WHY, "the body holds an escaped NUL (\\u0000)");
        return NULL;
    }
    cJSON *doc = cJSON_ParseWithLengthOpts(body, rq->len, &end, 0);
    if (!doc) {
        snprintf(why, WHY, "the body is not valid JSON");
        return NULL;
    }
    if (!only_space(end, body + rq->len)) {
        snprintf(why, WHY, "trailing data after the JSON value");
    } else if (dup_keys(doc)) {
        snprintf(why, WHY, "a key is given twice");
    } else {
        return doc;
    }
    cJSON_Delete(doc);
    return NULL;
}

/* NULL when every key of obj is in the NULL-terminated list; else the first other key. */
static const char *unknown_key(const cJSON *obj, const char *const *allowed)
{
    for (const cJSON *c = obj->child; c; c = c->next) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++)
            ok = !strcmp(c->string, allowed[i]);
        if (!ok)
            return c->string;
    }
    return NULL;
}

/* Strict base64 (standard alphabet, padded, no line breaks, unused bits zero) of a non-empty
 * image: 0 and a malloc'd *img; 1 when it is not strict base64; 2 when it decodes to nothing;
 * -1 out of memory. */
static int unb64(const char *text, unsigned char **img, size_t *len)
{
    size_t n = strlen(text);
    unsigned char *p = malloc(b64_decoded_max(n) + 1);
    if (!p)
        return -1;
    if (b64_decode(text, n, p, len) != 0) {
        free(p);
        return 1;
    }
    if (*len == 0) {
        free(p);
        return 2;
    }
    *img = p;
    return 0;
}

#define B64_RULE "strict base64: standard alphabet, padded, no line breaks"

static int is_post(const struct mock_dreq *rq)
{
    return rq->method && !strcmp(rq->method, "POST");
}

/* The path's component after prefix up to the next '/' or ':' (stop chars), as a string. */
static void component(const char *s, size_t n, const char *stops, char *buf, size_t cap, size_t *used)
{
    size_t k = 0;
    while (k < n && !strchr(stops, s[k]))
        k++;
    size_t c = k < cap - 1 ? k : cap - 1;
    memcpy(buf, s, c);
    buf[c] = '\0';
    *used = k;
}

/* ---- kserve-v2 ----------------------------------------------------------------------------- */

static int serve_kserve(const struct mock_dreq *rq, struct mock_dans *out)
{
    const char *p = rq->path + 3; /* after "/v2" */
    size_t n = rq->path_len - 3;
    char why[WHY], name[128], version[64] = "";
    if (is(p, n, "/health/live") || is(p, n, "/health/ready")) {
        if (strcmp(rq->method, "GET"))
            return err_kserve(out, 405, "Method Not Allowed");
        return reply_text(out, 200, JSON_CT, "", MOCK_D_OK);
    }
    if (!has_prefix(p, n, "/models/"))
        return err_kserve(out, 404, "Not Found");
    p += 8, n -= 8;
    size_t k;
    component(p, n, "/", name, sizeof name, &k);
    p += k, n -= k;
    if (has_prefix(p, n, "/versions/")) {
        component(p + 10, n - 10, "/", version, sizeof version, &k);
        p += 10 + k, n -= 10 + k;
    }
    enum { META, READY, INFER } what;
    if (n == 0)
        what = META;
    else if (is(p, n, "/ready"))
        what = READY;
    else if (is(p, n, "/infer"))
        what = INFER;
    else
        return err_kserve(out, 404, "Not Found");
    if (strcmp(name, MODEL)) {
        snprintf(why, sizeof why, "Request for unknown model: '%s' is not found", name);
        return err_kserve(out, 400, why);
    }
    if (*version && strcmp(version, "1")) {
        snprintf(why, sizeof why, "Request for unknown model: '" MODEL "' version %s is not found", version);
        return err_kserve(out, 400, why);
    }
    if (what == READY)
        return strcmp(rq->method, "GET") ? err_kserve(out, 405, "Method Not Allowed")
                                         : reply_text(out, 200, JSON_CT, "", MOCK_D_OK);
    if (what == META) {
        if (strcmp(rq->method, "GET"))
            return err_kserve(out, 405, "Method Not Allowed");
        return reply_text(out, 200, JSON_CT,
            "{\"name\":\"" MODEL "\",\"versions\":[\"1\"],\"platform\":\"python\",\"inputs\":[{\"name\":"
            "\"INPUT\",\"datatype\":\"BYTES\",\"shape\":[1]}],\"outputs\":[{\"name\":\"OUTPUT\",\"datatype\":"
            "\"BYTES\",\"shape\":[1]},{\"name\":\"SCORE\",\"datatype\":\"FP32\",\"shape\":[1]}]}", MOCK_D_OK);
    }
    if (!is_post(rq))
        return err_kserve(out, 405, "Method Not Allowed");
    if (!is_json_ct(rq->content_type))
        return err_kserve(out, 400, "Content-Type must be application/json for a JSON inference request");
    cJSON *doc = parse_json(rq, why);
    if (!doc)
        return err_kserve(out, 400, why);
    static const char *const TOP[] = {"id", "parameters", "inputs", "outputs", NULL};
    static const char *const IN[] = {"name", "shape", "datatype", "data", "parameters", NULL};
    static const char *const OUT[] = {"name", "parameters", NULL};
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(doc, "parameters");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc, "inputs");
    const cJSON *outputs = cJSON_GetObjectItemCaseSensitive(doc, "outputs");
    const cJSON *in = cJSON_IsArray(inputs) ? inputs->child : NULL;
    const char *bad = NULL;
    unsigned char *img = NULL;
    size_t len = 0;
    int want_label = !outputs, want_score = !outputs;
    int rc;
    if (!cJSON_IsObject(doc)) {
        bad = "the request must be a JSON object";
    } else if ((bad = unknown_key(doc, TOP))) {
        snprintf(why, sizeof why, "unexpected key '%.60s' in the inference request", bad);
        bad = why;
    } else if (id && !cJSON_IsString(id)) {
        bad = "'id' must be a string";
    } else if (params && !cJSON_IsObject(params)) {
        bad = "'parameters' must be an object";
    } else if (!cJSON_IsArray(inputs)) {
        bad = "missing 'inputs' array in the inference request";
    } else if (cJSON_GetArraySize(inputs) != 1) {
        snprintf(why, sizeof why, "expected 1 inputs but got %d inputs for model '" MODEL "'",
                 cJSON_GetArraySize(inputs));
        bad = why;
    } else if (!cJSON_IsObject(in) || unknown_key(in, IN)) {
        bad = "an input must be an object of name, shape, datatype, data (and parameters)";
    }
    if (!bad) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(in, "name");
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(in, "datatype");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(in, "shape");
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(in, "data");
        if (!cJSON_IsString(nm)) {
            bad = "input 'name' must be a string";
        } else if (strcmp(nm->valuestring, "INPUT")) {
            snprintf(why, sizeof why, "unexpected inference input '%.60s' for model '" MODEL "'", nm->valuestring);
            bad = why;
        } else if (!cJSON_IsString(dt)) {
            bad = "input 'datatype' must be a string";
        } else if (strcmp(dt->valuestring, "BYTES")) {
            snprintf(why, sizeof why, "inference input 'INPUT' data-type is '%.30s', but model '" MODEL
                     "' expects 'BYTES'", dt->valuestring);
            bad = why;
        } else if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 1 || !cJSON_IsNumber(shape->child)
                   || shape->child->valuedouble != 1) {
            char *got = cJSON_PrintUnformatted(shape);
            snprintf(why, sizeof why, "unexpected shape for input 'INPUT' for model '" MODEL "'. Expected [1], "
                     "got %.60s", got ? got : "?");
            free(got);
            bad = why;
        } else if (!cJSON_IsArray(data) || cJSON_GetArraySize(data) != 1) {
            snprintf(why, sizeof why, "unexpected number of string elements %d for inference input 'INPUT', "
                     "expecting 1", cJSON_IsArray(data) ? cJSON_GetArraySize(data) : 0);
            bad = why;
        } else if (!cJSON_IsString(data->child)) {
            bad = "input 'INPUT' holds BYTES: its data must be a string";
        } else if ((rc = unb64(data->child->valuestring, &img, &len)) != 0) {
            if (rc < 0) {
                cJSON_Delete(doc);
                return -1;
            }
            bad = rc == 1 ? "input 'INPUT': the data is not " B64_RULE : "input 'INPUT': the image is empty";
        }
    }
    for (const cJSON *o = cJSON_IsArray(outputs) ? outputs->child : NULL; !bad && o; o = o->next) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
        if (!cJSON_IsObject(o) || unknown_key(o, OUT) || !cJSON_IsString(nm)) {
            bad = "each requested output must be {\"name\": ...}";
        } else if (!strcmp(nm->valuestring, "OUTPUT")) {
            want_label = 1;
        } else if (!strcmp(nm->valuestring, "SCORE")) {
            want_score = 1;
        } else {
            snprintf(why, sizeof why, "unexpected inference output '%.60s' for model '" MODEL "'", nm->valuestring);
            bad = why;
        }
    }
    if (!bad && outputs && !cJSON_IsArray(outputs))
        bad = "'outputs' must be an array";
    if (bad) {
        rc = err_kserve(out, 400, bad);
    } else {
        struct cls c;
        struct tb t = {0};
        classify(mock_key(img, len), &c);
        rc = reply(out, &t, kserve_answer(&t, &c, id ? id->valuestring : NULL, want_label, want_score),
                   &COMPACT, 200, MOCK_D_OK);
    }
    free(img);
    cJSON_Delete(doc);
    return rc;
}

/* ---- torchserve ---------------------------------------------------------------------------- */

/* The front end does not look at the method (PUT works, and so does GET with a body). */
static int serve_torch(const struct mock_dreq *rq, struct mock_dans *out)
{
    const char *p = rq->path + 12; /* after "/predictions" */
    size_t n = rq->path_len - 12, k;
    char why[WHY], name[128], version[64] = "";
    if (n <= 1)
        return err_torch(out, 404, "ResourceNotFoundException",
                         "Requested resource is not found, please refer to API document.");
    component(p + 1, n - 1, "/", name, sizeof name, &k);
    p += 1 + k, n -= 1 + k;
    if (n > 0) {
        component(p + 1, n - 1, "/", version, sizeof version, &k);
        if (1 + k != n)
            return err_torch(out, 404, "ResourceNotFoundException",
                             "Requested resource is not found, please refer to API document.");
    }
    if (strcmp(name, MODEL)) {
        snprintf(why, sizeof why, "Model not found: %s", name);
        return err_torch(out, 404, "ModelNotFoundException", why);
    }
    if (n > 0 && strcmp(version, "1.0")) {
        snprintf(why, sizeof why, "Model version: %s does not exist for model: " MODEL, version);
        return err_torch(out, 404, "ModelVersionNotFoundException", why);
    }
    /* An empty body reaches the handler, which cannot open it as an image: like any handler
     * exception, that is a 503 "Prediction failed". */
    if (rq->len == 0)
        return err_torch(out, 503, "InternalServerException", "Prediction failed");
    const char *mime = mock_mime_of(rq->body, rq->len);
    if (raw_ct_problem(rq->content_type, mime, why))
        return err_torch(out, 400, "BadRequestException", why);
    struct cls c;
    struct tb t = {0};
    classify(mock_key(rq->body, rq->len), &c);
    return reply(out, &t, torch_answer(&t, &c), &PY_INDENT2, 200, MOCK_D_OK);
}

/* ---- tfserving ----------------------------------------------------------------------------- */

static int serve_tfs(const struct mock_dreq *rq, struct mock_dans *out)
{
    const char *p = rq->path + 11; /* after "/v1/models/" */
    size_t n = rq->path_len - 11, k;
    char why[WHY], name[128], sub[64] = "";
    component(p, n, "/:", name, sizeof name, &k);
    p += k, n -= k;
    int label = 0;
    if (has_prefix(p, n, "/versions/") || has_prefix(p, n, "/labels/")) {
        label = p[1] == 'l';
        size_t skip = label ? 8 : 10;
        component(p + skip, n - skip, "/:", sub, sizeof sub, &k);
        p += skip + k, n -= skip + k;
    }
    int predict = is(p, n, ":predict");
    if (!predict && !(n == 0 && !strcmp(rq->method, "GET")) ) {
        snprintf(why, sizeof why, "Malformed request: %s %.*s", rq->method, (int)(rq->path_len > 120 ? 120 : rq->path_len),
                 rq->path);
        return err_tfs(out, 400, why);
    }
    if (predict && !is_post(rq)) {
        snprintf(why, sizeof why, "Malformed request: %s %.*s", rq->method, (int)(rq->path_len > 120 ? 120 : rq->path_len),
                 rq->path);
        return err_tfs(out, 400, why);
    }
    if (strcmp(name, MODEL) || (*sub && !label && strcmp(sub, "1"))) {
        if (*sub && !label)
            snprintf(why, sizeof why, "Servable not found for request: Specific(%s, %s)", name, sub);
        else
            snprintf(why, sizeof why, "Servable not found for request: Latest(%s)", name);
        return err_tfs(out, 404, why);
    }
    if (label) {
        snprintf(why, sizeof why, "Unrecognized servable version label: %s", sub);
        return err_tfs(out, 404, why);
    }
    if (!predict) /* GET /v1/models/classifier: the model's status */
        return reply_text(out, 200, JSON_CT,
            "{\n    \"model_version_status\": [\n        {\n            \"version\": \"1\",\n"
            "            \"state\": \"AVAILABLE\",\n            \"status\": {\n"
            "                \"error_code\": \"OK\",\n                \"error_message\": \"\"\n"
            "            }\n        }\n    ]\n}", MOCK_D_OK);
    if (!is_json_ct(rq->content_type))
        return err_tfs(out, 400, "Content-Type must be application/json");
    cJSON *doc = parse_json(rq, why);
    if (!doc) {
        char msg[WHY + 20];
        snprintf(msg, sizeof msg, "JSON Parse error: %s", why);
        return err_tfs(out, 400, msg);
    }
    static const char *const TOP[] = {"instances", "inputs", "signature_name", NULL};
    const cJSON *inst = cJSON_GetObjectItemCaseSensitive(doc, "instances");
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(doc, "signature_name");
    const char *bad = NULL, *key;
    if (!cJSON_IsObject(doc)) {
        bad = "JSON Value: the request must be an object";
    } else if ((key = unknown_key(doc, TOP))) {
        snprintf(why, sizeof why, "Unknown key '%.60s' in the request; use \"instances\"", key);
        bad = why;
    } else if (inst && cJSON_GetObjectItemCaseSensitive(doc, "inputs")) {
        bad = "Request can have either of 'instances' or 'inputs', but NOT both";
    } else if (!inst && cJSON_GetObjectItemCaseSensitive(doc, "inputs")) {
        bad = "This model takes the row format: {\"instances\": [{\"b64\": ...}]}";
    } else if (!inst) {
        bad = "Missing 'instances' or 'inputs' key";
    } else if (sig && (!cJSON_IsString(sig) || strcmp(sig->valuestring, "serving_default"))) {
        bad = "Serving signature name not found in signature def (it is \"serving_default\")";
    } else if (!cJSON_IsArray(inst) || cJSON_GetArraySize(inst) == 0) {
        bad = "'instances' must be a non-empty list";
    }
    struct tb t = {0};
    cJSON *ans = bad ? NULL : root(&t, OBJ());
    cJSON *preds = bad ? NULL : add(&t, ans, "predictions", ARR());
    int i = 0;
    for (const cJSON *e = bad ? NULL : inst->child; e && !bad; e = e->next, i++) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(e, "b64");
        unsigned char *img = NULL;
        size_t len = 0;
        int rc;
        if (!cJSON_IsObject(e) || cJSON_GetArraySize(e) != 1 || !cJSON_IsString(b)) {
            snprintf(why, sizeof why, "instances[%d]: a binary value must be {\"b64\": \"<base64>\"}", i);
            bad = why;
        } else if ((rc = unb64(b->valuestring, &img, &len)) != 0) {
            if (rc < 0)
                t.oom = 1;
            snprintf(why, sizeof why, rc == 1 ? "instances[%d]: Unable to base64 decode (" B64_RULE ")"
                                              : "instances[%d]: the image is empty", i);
            bad = why;
        } else {
            struct cls c;
            classify(mock_key(img, len), &c);
            add(&t, preds, NULL, tfs_prediction(&t, &c));
            free(img);
        }
    }
    cJSON_Delete(doc);
    if (t.oom) {
        cJSON_Delete(ans);
        return -1;
    }
    if (bad) {
        cJSON_Delete(ans);
        return err_tfs(out, 400, bad);
    }
    return reply(out, &t, ans, &RAPID4, 200, MOCK_D_OK);
}

/* ---- openai-vision ------------------------------------------------------------------------- */

/* The Bearer token, checked first as OpenAI does: *done 0 when it passes; else *done 1 and
 * the answer is in out (no key: 401 "You didn't provide an API key"; a wrong one: 401
 * invalid_api_key, whose message never quotes the token sent). -1 out of memory. */
static int openai_auth(const struct mock_dreq *rq, struct mock_dans *out, int *done)
{
    *done = 1;
    if (rq->token_unreadable) {
        if (err_openai(out, 500, "mock: cannot read --token-file", "server_error", NULL, NULL) != 0)
            return -1;
        out->outcome = MOCK_D_FAULTED;
        return 0;
    }
    const char *a = rq->authorization;
    if (!a || strncasecmp(a, "Bearer ", 7) != 0 || !a[7])
        return err_openai(out, 401, "You didn't provide an API key. You need to provide your API key in "
                          "an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                          "invalid_request_error", NULL, NULL);
    if (rq->token && strcmp(a + 7, rq->token))
        return err_openai(out, 401, "Incorrect API key provided. You can find your API key at "
                          "https://platform.openai.com/account/api-keys.", "invalid_request_error", NULL,
                          "invalid_api_key");
    *done = 0;
    return 0;
}

/* Checks one message's content parts; counts the image_url parts into *images and keeps the
 * last one's url in *url. NULL, or the reason. */
static const char *openai_parts(const cJSON *content, int user, int *images, const char **url, char *why)
{
    static const char *const TEXT[] = {"type", "text", NULL};
    static const char *const IMAGE[] = {"type", "image_url", NULL};
    static const char *const IMAGE_URL[] = {"url", "detail", NULL};
    if (cJSON_IsString(content))
        return NULL;
    if (!cJSON_IsArray(content))
        return "a message's content must be a string or a list of content parts";
    int i = 0;
    for (const cJSON *part = content->child; part; part = part->next, i++) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
            snprintf(why, WHY, "content part %d must be an object with a \"type\"", i);
            return why;
        }
        if (!strcmp(type->valuestring, "text")) {
            if (unknown_key(part, TEXT) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(part, "text"))) {
                snprintf(why, WHY, "content part %d: a text part is {\"type\": \"text\", \"text\": string}", i);
                return why;
            }
        } else if (!strcmp(type->valuestring, "image_url")) {
            const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(iu, "url");
            const cJSON *detail = cJSON_GetObjectItemCaseSensitive(iu, "detail");
            if (!user)
                return "only user messages may hold images";
            if (unknown_key(part, IMAGE) || !cJSON_IsObject(iu) || unknown_key(iu, IMAGE_URL) || !cJSON_IsString(u)) {
                snprintf(why, WHY, "content part %d: an image part is {\"type\": \"image_url\", "
                         "\"image_url\": {\"url\": string}}", i);
                return why;
            }
            if (detail && (!cJSON_IsString(detail) || (strcmp(detail->valuestring, "auto")
                           && strcmp(detail->valuestring, "low") && strcmp(detail->valuestring, "high"))))
                return "image_url.detail must be one of auto, low, high";
            ++*images;
            *url = u->valuestring;
        } else {
            snprintf(why, WHY, "content part %d: unknown type '%.40s'", i, type->valuestring);
            return why;
        }
    }
    return NULL;
}

/* A number of the request (temperature and the like): NULL when absent or in [lo, hi]. */
static int num_ok(const cJSON *v, double lo, double hi)
{
    return !v || (cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi);
}

/* Bytes that are not an image (vLLM, like OpenAI, opens what PIL opens; the mock knows the six
 * types of mock_mime_of). */
#define OPENAI_UNSUPPORTED "You uploaded an unsupported image. Please make sure your image is a " \
                           "valid PNG, JPEG, GIF, WebP, BMP or TIFF file."

/* The image of a data: URL checked as OpenAI checks it: *img malloc'd, or an answer sent. */
static int openai_image(const char *url, struct mock_dans *out, unsigned char **img, size_t *len, int *done)
{
    char why[WHY];
    *done = 1;
    if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8))
        return err_openai(out, 400, "This mock does not fetch image URLs: send the image as a data: URL.",
                          "invalid_request_error", "url", "invalid_image_url");
    const char *semi = strncmp(url, "data:", 5) ? NULL : strstr(url, ";base64,");
    if (!semi || semi == url + 5)
        return err_openai(out, 400, "Invalid image URL: expected data:<image type>;base64,<data>.",
                          "invalid_request_error", "url", "invalid_image_url");
    char mt[64];
    size_t mlen = (size_t)(semi - url - 5);
    snprintf(mt, sizeof mt, "%.*s", (int)(mlen < sizeof mt ? mlen : sizeof mt - 1), url + 5);
    int rc = unb64(semi + 8, img, len);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return err_openai(out, 400, rc == 1 ? "Invalid base64 in the image URL (" B64_RULE ")."
                                            : "The image in the data: URL is empty.",
                          "invalid_request_error", "url", "invalid_image_url");
    const char *mime = mock_mime_of(*img, *len);
    if (!mime || strcasecmp(mt, mime)) {
        free(*img);
        *img = NULL;
        if (!mime)
            return err_openai(out, 400, OPENAI_UNSUPPORTED, "invalid_request_error", NULL,
                              "invalid_image_format");
        snprintf(why, sizeof why, "The data: URL says %.40s but the image is %s.", mt, mime);
        return err_openai(out, 400, why, "invalid_request_error", "url", "invalid_image_format");
    }
    *done = 0;
    return 0;
}

static int serve_openai(const struct mock_dreq *rq, struct mock_dans *out)
{
    char why[WHY];
    int done;
    int rc = openai_auth(rq, out, &done);
    if (done)
        return rc;
    if (!is_post(rq)) {
        snprintf(why, sizeof why, "Invalid method for URL (%.10s " "/v1/chat/completions)", rq->method);
        return err_openai(out, 405, why, "invalid_request_error", NULL, NULL);
    }
    if (!is_json_ct(rq->content_type))
        return err_openai_bad(out, "Content-Type must be application/json: the OpenAI API expects a JSON "
                              "payload.", NULL);
    cJSON *doc = parse_json(rq, why);
    if (!doc)
        return err_openai_bad(out, "We could not parse the JSON body of your request. (HINT: This likely "
                              "means you aren't using your HTTP library correctly. The OpenAI API expects a "
                              "JSON payload.)", NULL);
    static const char *const TOP[] = {"model", "messages", "temperature", "top_p", "max_tokens",
                                      "max_completion_tokens", "response_format", "n", "seed", "stream",
                                      "stop", "user", "frequency_penalty", "presence_penalty", NULL};
    static const char *const ROLES[] = {"system", "developer", "user", "assistant", NULL};
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(doc, "model");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(doc, "messages");
    const cJSON *nv = cJSON_GetObjectItemCaseSensitive(doc, "n");
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(doc, "stream");
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(doc, "response_format");
    const cJSON *rft = cJSON_GetObjectItemCaseSensitive(rf, "type");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(doc, "max_tokens");
    const char *bad = NULL, *param = NULL, *key, *url = NULL;
    int images = 0;
    if (!cJSON_IsObject(doc)) {
        bad = "The request body must be a JSON object.";
    } else if ((key = unknown_key(doc, TOP))) {
        snprintf(why, sizeof why, "Unrecognized request argument supplied: %.60s", key);
        bad = why;
    } else if (!model) {
        bad = "you must provide a model parameter", param = "model";
    } else if (!cJSON_IsString(model)) {
        bad = "Invalid type for 'model': expected a string.", param = "model";
    } else if (strcmp(model->valuestring, MODEL)) {
        snprintf(why, sizeof why, "The model `%.60s` does not exist or you do not have access to it.",
                 model->valuestring);
        rc = err_openai(out, 404, why, "invalid_request_error", NULL, "model_not_found");
        cJSON_Delete(doc);
        return rc;
    } else if (!msgs) {
        bad = "Missing required parameter: 'messages'.", param = "messages";
    } else if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        bad = "Invalid 'messages': expected a non-empty array.", param = "messages";
    } else if (nv && !(cJSON_IsNumber(nv) && nv->valuedouble == 1)) {
        bad = "This model gives one choice: 'n' must be 1.", param = "n";
    } else if (stream && !cJSON_IsFalse(stream)) {
        bad = "This mock does not stream: 'stream' must be false.", param = "stream";
    } else if (!num_ok(cJSON_GetObjectItemCaseSensitive(doc, "temperature"), 0, 2)) {
        bad = "Invalid 'temperature': expected a number from 0 to 2.", param = "temperature";
    } else if (!num_ok(cJSON_GetObjectItemCaseSensitive(doc, "top_p"), 0, 1)) {
        bad = "Invalid 'top_p': expected a number from 0 to 1.", param = "top_p";
    } else if (mt && !(cJSON_IsNumber(mt) && mt->valuedouble >= 1 && mt->valuedouble == (double)(long)mt->valuedouble)) {
        bad = "Invalid 'max_tokens': expected an integer of at least 1.", param = "max_tokens";
    } else if (rf && (!cJSON_IsObject(rf) || !cJSON_IsString(rft)
                      || (strcmp(rft->valuestring, "text") && strcmp(rft->valuestring, "json_object")
                          && strcmp(rft->valuestring, "json_schema")))) {
        bad = "Invalid 'response_format': its type must be text, json_object or json_schema.",
        param = "response_format";
    }
    int i = 0;
    for (const cJSON *m = bad ? NULL : msgs->child; m && !bad; m = m->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        int known = 0;
        for (int r = 0; cJSON_IsString(role) && ROLES[r]; r++)
            known |= !strcmp(role->valuestring, ROLES[r]);
        if (!cJSON_IsObject(m) || !known || !content) {
            snprintf(why, sizeof why, "Invalid 'messages[%d]': a message is {\"role\": system|developer|user|"
                     "assistant, \"content\": ...}.", i);
            bad = why, param = "messages";
        } else if ((bad = openai_parts(content, !strcmp(role->valuestring, "user"), &images, &url, why))) {
            param = "messages";
        }
    }
    if (!bad && images != 1)
        bad = "This model classifies exactly one image: send one image_url content part.", param = "messages";
    if (bad) {
        rc = err_openai_bad(out, bad, param);
        cJSON_Delete(doc);
        return rc;
    }
    unsigned char *img = NULL;
    size_t len = 0;
    rc = openai_image(url, out, &img, &len, &done);
    cJSON_Delete(doc);
    if (done)
        return rc;
    uint64_t key64 = mock_key(img, len);
    free(img);
    struct cls c;
    struct tb t = {0};
    classify(key64, &c);
    return reply(out, &t, openai_answer(&t, key64, &c), &COMPACT, 200, MOCK_D_OK);
}

/* ---- hf-endpoint --------------------------------------------------------------------------- */

#define HF_TOP_K 5

/* A JSON request: {"inputs": "<base64>", "parameters": {"top_k", "function_to_apply"},
 * "options": {...}}: *img malloc'd and *top_k, or an answer sent. */
static int hf_json(const struct mock_dreq *rq, struct mock_dans *out, unsigned char **img, size_t *len,
                   int *top_k, int *done)
{
    static const char *const TOP[] = {"inputs", "parameters", "options", NULL};
    static const char *const PARAMS[] = {"top_k", "function_to_apply", NULL};
    static const char *const OPTS[] = {"wait_for_model", "use_cache", NULL};
    char why[WHY];
    const char *bad = NULL, *key;
    *done = 1;
    cJSON *doc = parse_json(rq, why);
    if (!doc)
        return err_hf(out, 400, why);
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(doc, "inputs");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(doc, "parameters");
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(doc, "options");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(params, "top_k");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(params, "function_to_apply");
    int rc = 0;
    if (!cJSON_IsObject(doc)) {
        bad = "the body must be a JSON object";
    } else if ((key = unknown_key(doc, TOP))) {
        snprintf(why, sizeof why, "unknown key '%.60s': send {\"inputs\": \"<base64>\", \"parameters\": {...}}", key);
        bad = why;
    } else if (!cJSON_IsString(inputs)) {
        bad = "'inputs' must be the image as a base64 string";
    } else if (params && (!cJSON_IsObject(params) || unknown_key(params, PARAMS))) {
        bad = "'parameters' may hold top_k and function_to_apply";
    } else if (k && !(cJSON_IsNumber(k) && k->valuedouble >= 1 && k->valuedouble == (double)(int)k->valuedouble)) {
        bad = "'top_k' must be an integer of at least 1";
    } else if (fn && (!cJSON_IsString(fn) || (strcmp(fn->valuestring, "sigmoid") && strcmp(fn->valuestring, "softmax")
                                             && strcmp(fn->valuestring, "none")))) {
        bad = "'function_to_apply' must be sigmoid, softmax or none";
    } else if (opts && (!cJSON_IsObject(opts) || unknown_key(opts, OPTS))) {
        bad = "'options' may hold wait_for_model and use_cache";
    } else if ((rc = unb64(inputs->valuestring, img, len)) != 0) {
        bad = rc == 1 ? "'inputs' is not " B64_RULE : "'inputs' decodes to an empty image";
    }
    if (k && !bad)
        *top_k = (int)k->valuedouble;
    cJSON_Delete(doc);
    if (rc < 0)
        return -1;
    if (bad)
        return err_hf(out, 400, bad);
    *done = 0;
    return 0;
}

static int serve_hf(const struct mock_dreq *rq, struct mock_dans *out)
{
    char why[WHY];
    const char *name = rq->path + 8; /* after "/models/": ids may hold '/' (google/vit-base) */
    size_t n = rq->path_len - 8;
    if (!is(name, n, MODEL)) {
        snprintf(why, sizeof why, "Model %.*s does not exist", (int)(n > 100 ? 100 : n), name);
        return err_hf(out, 404, why);
    }
    if (!is_post(rq))
        return err_hf(out, 405, "Method Not Allowed");
    int top_k = HF_TOP_K, done;
    unsigned char *owned = NULL;
    const unsigned char *img = rq->body;
    size_t len = rq->len;
    if (is_json_ct(rq->content_type)) {
        int rc = hf_json(rq, out, &owned, &len, &top_k, &done);
        if (done)
            return rc;
        img = owned;
    } else if (len == 0) {
        return err_hf(out, 400, "the body is empty: send the image bytes");
    } else if (raw_ct_problem(rq->content_type, mock_mime_of(img, len), why)) {
        return err_hf(out, 400, why);
    }
    struct cls c;
    struct tb t = {0};
    classify(mock_key(img, len), &c);
    free(owned);
    return reply(out, &t, hf_answer(&t, &c, top_k), &COMPACT, 200, MOCK_D_OK);
}

/* ---- multipart (FastAPI UploadFile) -------------------------------------------------------- */

struct part {
    char name[128];
    char *filename;      /* malloc'd; NULL: none given */
    char ctype[128];     /* "" when none */
    const unsigned char *data;
    size_t len;
};

/* A header parameter's value at *pp (a quoted string, or a token) into a malloc'd string; *pp
 * moved past it. In a quoted string only \" and \\ are escapes, as python-multipart reads
 * them (curl sends a filename's backslash as it is). NULL when malformed or out of memory. */
static char *param_value(const char **pp, const char *end)
{
    const char *p = *pp;
    struct sbuf b = {0};
    if (p < end && *p == '"') {
        for (p++; p < end && *p != '"'; p++) {
            if (*p == '\\' && p + 1 < end && (p[1] == '"' || p[1] == '\\'))
                p++;
            sb_c(&b, *p);
        }
        if (p == end) {
            free(b.p);
            return NULL;
        }
        p++;
    } else {
        while (p < end && *p != ';' && *p != ' ' && *p != '\t')
            sb_c(&b, *p++);
    }
    sb_add(&b, "", 0); /* a buffer even for an empty value */
    if (b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    *pp = p;
    return b.p;
}

/* Content-Disposition: form-data; name="..."; filename="...". 0, or -1 when it is not that. */
static int disposition(const char *v, const char *end, struct part *pt)
{
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    if (end - v < 9 || strncasecmp(v, "form-data", 9))
        return -1;
    v += 9;
    for (;;) {
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        if (v == end)
            return 0;
        if (*v++ != ';')
            return -1;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        const char *k = v;
        while (v < end && *v != '=' && *v != ';')
            v++;
        if (v == end || *v != '=')
            return -1;
        size_t klen = (size_t)(v - k);
        v++;
        char *val = param_value(&v, end);
        if (!val)
            return -1;
        if (klen == 4 && !strncasecmp(k, "name", 4)) {
            snprintf(pt->name, sizeof pt->name, "%s", val);
            free(val);
        } else if (klen == 8 && !strncasecmp(k, "filename", 8)) {
            free(pt->filename);
            pt->filename = val;
        } else {
            free(val);
        }
    }
}

enum { MP_OK, MP_NOT_FORM, MP_BAD, MP_NO_FILE };

/* The last part named "file" of a multipart/form-data body into *file (its filename is then
 * the caller's). MP_NOT_FORM: the Content-Type is not multipart/form-data; MP_BAD: framing
 * that cannot be parsed (no boundary, no closing delimiter, a part without its blank line);
 * MP_NO_FILE: no part named file. */
static int multipart_file(const struct mock_dreq *rq, struct part *file)
{
    char mt[128];
    if (strcmp(media_type(rq->content_type, mt, sizeof mt), "multipart/form-data"))
        return MP_NOT_FORM;
    /* boundary=..., quoted or not, among the parameters. */
    const char *ct = strchr(rq->content_type, ';'), *ctend = rq->content_type + strlen(rq->content_type);
    char *boundary = NULL;
    while (ct && !boundary) {
        ct++;
        while (*ct == ' ' || *ct == '\t')
            ct++;
        if (!strncasecmp(ct, "boundary=", 9)) {
            ct += 9;
            boundary = param_value(&ct, ctend);
            break;
        }
        ct = strchr(ct, ';');
    }
    size_t blen = boundary ? strlen(boundary) : 0;
    if (!boundary || blen == 0 || blen > 70) {
        free(boundary);
        return MP_BAD;
    }
    char delim[80];
    size_t dlen = (size_t)snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    free(boundary);
    const char *body = (const char *)rq->body, *end = body + rq->len, *p = body;
    int found = 0;
    /* The body starts with the first delimiter (its leading CRLF is optional there). */
    if ((size_t)(end - p) < dlen - 2 || memcmp(p, delim + 2, dlen - 2))
        return MP_BAD;
    p += dlen - 2;
    for (;;) {
        if (end - p >= 2 && !memcmp(p, "--", 2))
            return found ? MP_OK : MP_NO_FILE; /* the close delimiter; an epilogue may follow */
        if (end - p < 2 || memcmp(p, "\r\n", 2))
            return MP_BAD;
        p += 2;
        struct part pt = {.name = "", .ctype = ""};
        int disp = 0;
        for (;;) { /* header lines, then a blank line */
            const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
            if (!eol || memchr(p, '\0', (size_t)(eol - p))) {
                free(pt.filename);
                return MP_BAD;
            }
            if (eol == p) {
                p += 2;
                break;
            }
            const char *colon = memchr(p, ':', (size_t)(eol - p));
            if (!colon) {
                free(pt.filename);
                return MP_BAD;
            }
            size_t hn = (size_t)(colon - p);
            if (hn == 19 && !strncasecmp(p, "Content-Disposition", 19)) {
                if (disposition(colon + 1, eol, &pt) != 0) {
                    free(pt.filename);
                    return MP_BAD;
                }
                disp = 1;
            } else if (hn == 12 && !strncasecmp(p, "Content-Type", 12)) {
                const char *v = colon + 1;
                while (v < eol && (*v == ' ' || *v == '\t'))
                    v++;
                snprintf(pt.ctype, sizeof pt.ctype, "%.*s", (int)(eol - v), v);
            }
            p = eol + 2;
        }
        const char *next = memmem(p, (size_t)(end - p), delim, dlen);
        if (!next || !disp) {
            free(pt.filename);
            return MP_BAD;
        }
        pt.data = (const unsigned char *)p;
        pt.len = (size_t)(next - p);
        p = next + dlen;
        if (!strcmp(pt.name, "file")) { /* as a form's last value for a name wins */
            free(file->filename);
            *file = pt;
            found = 1;
        } else {
            free(pt.filename);
        }
    }
}

static int serve_multipart(const struct mock_dreq *rq, struct mock_dans *out)
{
    char why[WHY];
    if (!is_post(rq))
        return err_detail(out, 405, "Method Not Allowed");
    struct part file = {.filename = NULL};
    int rc, r = multipart_file(rq, &file);
    if (r == MP_BAD) {
        rc = err_detail(out, 400, "There was an error parsing the body");
    } else if (r != MP_OK) {
        rc = err_fastapi_422(out, 0);
    } else if (!file.filename) {
        rc = err_fastapi_422(out, 1); /* a plain form field, not a file */
    } else if (file.len == 0) {
        rc = err_detail(out, 400, "The uploaded file is empty.");
    } else if (raw_ct_problem(file.ctype[0] ? file.ctype : NULL, mock_mime_of(file.data, file.len), why)) {
        char msg[WHY + 24];
        snprintf(msg, sizeof msg, "The part 'file': %s", why);
        rc = err_detail(out, 400, msg);
    } else {
        struct cls c;
        struct tb t = {0};
        classify(mock_key(file.data, file.len), &c);
        rc = reply(out, &t, fastapi_answer(&t, file.filename, &c), &COMPACT, 200, MOCK_D_OK);
    }
    free(file.filename);
    return rc;
}

/* ---- google-vision ------------------------------------------------------------------------- */

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The value of the query parameter "key", percent-decoded, malloc'd; NULL when absent. *oom
 * is set when memory runs out. */
static char *query_key(const struct mock_dreq *rq, int *oom)
{
    const char *q = rq->query, *end = q ? q + rq->query_len : NULL;
    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        if (stop - q >= 4 && !memcmp(q, "key=", 4)) {
            struct sbuf b = {0};
            for (const char *p = q + 4; p < stop; p++) {
                if (*p == '%' && stop - p >= 3 && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
                    sb_c(&b, (char)(hexval(p[1]) * 16 + hexval(p[2])));
                    p += 2;
                } else {
                    sb_c(&b, *p);
                }
            }
            sb_add(&b, "", 0);
            if (b.oom) {
                free(b.p);
                *oom = 1;
                return NULL;
            }
            return b.p;
        }
        q = stop + 1;
    }
    return NULL;
}

static int serve_google(const struct mock_dreq *rq, struct mock_dans *out)
{
    char why[WHY];
    if (rq->token_unreadable)
        return err_google(out, 500, "mock: cannot read --token-file", NULL, MOCK_D_FAULTED);
    int oom = 0;
    char *key = query_key(rq, &oom);
    if (oom)
        return -1;
    const char *given = key ? key : rq->goog_api_key;
    int rc;
    if (!given || !*given) {
        rc = err_google(out, 403, "Method doesn't allow unregistered callers (callers without established "
                        "identity). Please use API Key or other form of API consumer identity to call this API.",
                        NULL, REJ);
    } else if (rq->token && strcmp(given, rq->token)) {
        rc = err_google(out, 400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID", REJ);
    } else {
        rc = 1;
    }
    free(key);
    if (rc != 1)
        return rc;
    if (!is_post(rq))
        return err_google(out, 404, "Method not found.", NULL, REJ);
    if (!is_json_ct(rq->content_type))
        return err_google(out, 400, "Invalid Content-Type: this method takes application/json.", NULL, REJ);
    cJSON *doc = parse_json(rq, why);
    if (!doc)
        return err_google(out, 400, "Invalid JSON payload received. Unexpected token.", NULL, REJ);
    static const char *const TOP[] = {"requests", "parent", NULL};
    static const char *const REQ[] = {"image", "features", "imageContext", NULL};
    static const char *const FEAT[] = {"type", "maxResults", "model", NULL};
    const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(doc, "requests");
    const char *bad = NULL, *k;
    if (!cJSON_IsObject(doc)) {
        bad = "Invalid JSON payload received. Expected an object.";
    } else if ((k = unknown_key(doc, TOP))) {
        snprintf(why, sizeof why, "Invalid JSON payload received. Unknown name \"%.60s\": Cannot find field.", k);
        bad = why;
    } else if (!cJSON_IsArray(reqs) || cJSON_GetArraySize(reqs) == 0) {
        bad = "No requests: 'requests' must list 1 to 16 images.";
    } else if (cJSON_GetArraySize(reqs) > 16) {
        bad = "Too many images per request: at most 16.";
    }
    struct tb t = {0};
    cJSON *ans = bad ? NULL : root(&t, OBJ());
    cJSON *resps = bad ? NULL : add(&t, ans, "responses", ARR());
    int i = 0;
    for (const cJSON *r = bad ? NULL : reqs->child; r && !bad; r = r->next, i++) {
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(r, "image");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(image, "content");
        const cJSON *feats = cJSON_GetObjectItemCaseSensitive(r, "features");
        int max_results = GOOGLE_DEFAULT_RESULTS;
        if (!cJSON_IsObject(r)) {
            snprintf(why, sizeof why, "Invalid JSON payload received. 'requests[%d]' must be an object.", i);
            bad = why;
            break;
        }
        if ((k = unknown_key(r, REQ))) {
            snprintf(why, sizeof why, "Invalid JSON payload received. Unknown name \"%.60s\" at 'requests[%d]': "
                     "Cannot find field.", k, i);
            bad = why;
            break;
        }
        if (!cJSON_IsObject(image) || cJSON_GetArraySize(image) != 1 || !cJSON_IsString(content)) {
            snprintf(why, sizeof why, "requests[%d].image: this mock takes the image as {\"content\": \"<base64>\"}", i);
            bad = why;
            break;
        }
        if (!cJSON_IsArray(feats) || cJSON_GetArraySize(feats) == 0) {
            snprintf(why, sizeof why, "requests[%d].features: at least one feature is required", i);
            bad = why;
            break;
        }
        for (const cJSON *f = feats->child; f && !bad; f = f->next) {
            const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "type");
            const cJSON *mr = cJSON_GetObjectItemCaseSensitive(f, "maxResults");
            if (!cJSON_IsObject(f) || unknown_key(f, FEAT) || !cJSON_IsString(type)
                || strcmp(type->valuestring, "LABEL_DETECTION")) {
                snprintf(why, sizeof why, "requests[%d].features: this mock does LABEL_DETECTION only", i);
                bad = why;
            } else if (mr && !(cJSON_IsNumber(mr) && mr->valuedouble >= 1
                               && mr->valuedouble == (double)(int)mr->valuedouble)) {
                snprintf(why, sizeof why, "Invalid value at 'requests[%d].features[0].max_results' (TYPE_INT32)", i);
                bad = why;
            } else if (mr) {
                max_results = (int)mr->valuedouble;
            }
        }
        if (bad)
            break;
        /* An empty content is Google's per-image "Bad image data.", not a request error. */
        unsigned char *img = NULL;
        size_t len = 0;
        int r2 = *content->valuestring ? unb64(content->valuestring, &img, &len) : 2;
        if (r2 < 0)
            t.oom = 1;
        if (r2 == 1) {
            snprintf(why, sizeof why, "Invalid value at 'requests[%d].image.content' (TYPE_BYTES), Base64 "
                     "decoding failed (" B64_RULE ")", i);
            bad = why;
            break;
        }
        add(&t, resps, NULL, google_response(&t, img, len, max_results));
        free(img);
    }
    cJSON_Delete(doc);
    if (t.oom) {
        cJSON_Delete(ans);
        return -1;
    }
    if (bad) {
        cJSON_Delete(ans);
        return err_google(out, 400, bad, NULL, REJ);
    }
    return reply(out, &t, ans, &GOOGLE2, 200, MOCK_D_OK);
}

/* ---- the entry points ---------------------------------------------------------------------- */

int mock_dialect_serve(const struct mock_dreq *rq, struct mock_dans *out)
{
    memset(out, 0, sizeof *out);
    out->retry_after = -1;
    if (rq->dialect < 0 || rq->dialect >= MOCK_N_DIALECTS || !rq->path || !rq->method)
        return -1;
    if (rq->fault >= 0)
        return serve_fault(rq, out);
    switch (rq->dialect) {
    case MOCK_D_KSERVE: return serve_kserve(rq, out);
    case MOCK_D_TORCHSERVE: return serve_torch(rq, out);
    case MOCK_D_TFSERVING: return serve_tfs(rq, out);
    case MOCK_D_OPENAI: return serve_openai(rq, out);
    case MOCK_D_HF: return serve_hf(rq, out);
    case MOCK_D_MULTIPART: return serve_multipart(rq, out);
    case MOCK_D_GOOGLE: return serve_google(rq, out);
    }
    return -1;
}

char *mock_dialect_answer(int d, const unsigned char *img, size_t len, const char *filename,
                          int *status, size_t *out_len)
{
    struct cls c;
    uint64_t key = mock_key(img, len);
    struct tb t = {0};
    cJSON *tree = NULL;
    const struct style *st = &COMPACT;
    struct mock_dans ans = {0};
    classify(key, &c);
    *status = 200;
    switch (d) {
    case MOCK_D_KSERVE:
        tree = kserve_answer(&t, &c, NULL, 1, 1);
        break;
    case MOCK_D_TORCHSERVE:
        tree = torch_answer(&t, &c), st = &PY_INDENT2;
        break;
    case MOCK_D_TFSERVING:
        tree = root(&t, OBJ());
        add(&t, add(&t, tree, "predictions", ARR()), NULL, tfs_prediction(&t, &c));
        st = &RAPID4;
        break;
    case MOCK_D_OPENAI:
        if (!mock_mime_of(img, len)) {
            /* the same refusal serve_openai sends */
            if (err_openai(&ans, 400, OPENAI_UNSUPPORTED, "invalid_request_error", NULL,
                           "invalid_image_format") != 0)
                return NULL;
            *status = ans.status;
            *out_len = ans.len;
            return ans.body;
        }
        tree = openai_answer(&t, key, &c);
        break;
    case MOCK_D_HF:
        tree = hf_answer(&t, &c, HF_TOP_K);
        break;
    case MOCK_D_MULTIPART:
        tree = fastapi_answer(&t, filename, &c);
        break;
    case MOCK_D_GOOGLE:
        tree = root(&t, OBJ());
        add(&t, add(&t, tree, "responses", ARR()), NULL, google_response(&t, img, len, GOOGLE_DEFAULT_RESULTS));
        st = &GOOGLE2;
        break;
    default:
        return NULL;
    }
    if (reply(&ans, &t, tree, st, 200, MOCK_D_OK) != 0)
        return NULL;
    *out_len = ans.len;
    return ans.body;
}

/* A subtree printed at its depth in a document of style st, malloc'd. */
static char *print_at(struct tb *t, cJSON *tree, const struct style *st, int depth)
{
    struct sbuf b = {0};
    if (tree && !t->oom)
        print_value(&b, tree, st, depth);
    cJSON_Delete(tree);
    if (!tree || t->oom || b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

int mock_dialect_cell(int d, const unsigned char *img, size_t len, char **cell, const char **error)
{
    struct cls c;
    struct tb t = {0};
    char buf[8];
    *cell = NULL;
    *error = NULL;
    classify(mock_key(img, len), &c);
    struct sbuf b = {0};
    switch (d) {
    case MOCK_D_KSERVE:
    case MOCK_D_MULTIPART:
        sb_jstr(&b, LABELS[c.label[0]], strlen(LABELS[c.label[0]]));
        break;
    case MOCK_D_TORCHSERVE:
    case MOCK_D_HF: {
        int status;
        size_t n;
        if (!(*cell = mock_dialect_answer(d, img, len, NULL, &status, &n)))
            return -1;
        return 0;
    }
    case MOCK_D_TFSERVING:
        /* {"predictions": [HERE]}: the root is depth 0, the list 1, its element 2 */
        return (*cell = print_at(&t, tfs_prediction(&t, &c), &RAPID4, 2)) ? 0 : -1;
    case MOCK_D_OPENAI:
        if (!mock_mime_of(img, len)) {
            *error = "unsupported image";
            return 1;
        }
        sb_s(&b, "{\"label\":");
        sb_jstr(&b, LABELS[c.label[0]], strlen(LABELS[c.label[0]]));
        sb_s(&b, ",\"score\":");
        sb_s(&b, num_jq(c.milli[0], buf));
        sb_c(&b, '}');
        break;
    case MOCK_D_GOOGLE: {
        if (len == 0 || !mock_mime_of(img, len)) {
            *error = "Bad image data.";
            return 1;
        }
        /* {"responses": [{"labelAnnotations": HERE}]}: depths 0, 1, 2, and the value at 3 */
        cJSON *r = google_response(&t, img, len, GOOGLE_DEFAULT_RESULTS);
        cJSON *la = cJSON_DetachItemFromObjectCaseSensitive(r, "labelAnnotations");
        cJSON_Delete(r);
        if (!la)
            t.oom = 1;
        return (*cell = print_at(&t, la, &GOOGLE2, 3)) ? 0 : -1;
    }
    default:
        return -1;
    }
    if (b.oom || !b.p) {
        free(b.p);
        return -1;
    }
    *cell = b.p;
    return 0;
}
