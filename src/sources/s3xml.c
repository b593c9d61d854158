/* s3xml: a ListObjectsV2 answer (or an S3 <Error> document) read with libxml2's xmlTextReader,
 * node by node, into a struct s3_page (see s3.h).
 *
 * Only these are read, by their local names (any namespace) and at their place in the tree:
 *   ListBucketResult/IsTruncated, /NextContinuationToken, /EncodingType, /Contents/Key, /Contents/Size
 *   Error/Code, /Message, /Region
 * Everything else (Name, Prefix, KeyCount, ETag, Owner, CommonPrefixes...) is skipped. The keys'
 * text goes straight into the page's arena, one after the other, each NUL-terminated; when the
 * answer says EncodingType url they are decoded in place at the end (a decoded key is never
 * longer), and the objects' pointers are set last, when the arena no longer moves. */
#include "sources/s3.h"
#include "sources/s3int.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/parser.h>
#include <libxml/xmlreader.h>

#define LEAF_MAX 8192 /* the text of any element read here but a key */

enum leaf { L_NONE, L_TRUNC, L_TOKEN, L_ENC, L_KEY, L_SIZE, L_CODE, L_MSG, L_REGION };
enum root { R_NONE, R_LIST, R_ERROR };

struct rd {
    struct s3_page *p;
    enum root root;
    int in_contents, have_key, have_size, encoded, leaf_depth;
    enum leaf leaf;
    size_t key_start; /* where the current key's text began in the arena */
    size_t key_len;
    int64_t size;
    char text[LEAF_MAX + 1];
    size_t tlen;
    char *err;
    size_t errlen;
    int failed; /* err holds the reason */
};

static int fail(struct rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct rd *r, const char *fmt, ...)
{
    if (!r->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
        for (char *c = r->err; *c; c++) /* it may quote the answer: one printable line */
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
    }
    r->failed = 1;
    return -1;
}

/* libxml2's reports: the first becomes the reason; nothing is printed. */
static void on_xml_error(void *arg, xmlErrorPtr e)
{
    struct rd *r = arg;
    char msg[200];
    s3_printable(msg, sizeof msg, e && e->message ? e->message : "?", e && e->message ? strlen(e->message) : 1);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == ' ')
        msg[--n] = '\0';
    if (!r->failed)
        snprintf(r->err, r->errlen, "not well-formed XML (line %d): %s", e ? e->line : 0, msg);
    r->failed = 1;
}

static int arena_put(struct s3_page *p, const char *s, size_t n)
{
    if (p->arena_len + n + 1 > p->arena_cap) {
        size_t cap = p->arena_cap ? p->arena_cap : 4096;
        while (cap < p->arena_len + n + 1)
            cap *= 2;
        char *a = realloc(p->arena, cap);
        if (!a)
            return -1;
        p->arena = a;
        p->arena_cap = cap;
    }
    memcpy(p->arena + p->arena_len, s, n);
    p->arena_len += n;
    p->arena[p->arena_len] = '\0';
    return 0;
}

/* ---- the leaves ---- */

static int parse_size(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - (*s - '0')) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

static int set_token(struct rd *r)
{
    struct s3_page *p = r->p;
    if (r->tlen == 0)
        return 0;
    if (r->tlen + 1 > p->next_token_cap) {
        char *t = realloc(p->next_token, r->tlen + 1);
        if (!t)
            return fail(r, "out of memory");
        p->next_token = t;
        p->next_token_cap = r->tlen + 1;
    }
    memcpy(p->next_token, r->text, r->tlen + 1);
    return 0;
}

/* The end of the leaf being read: its text is r->text (a key's is in the arena). */
static int leaf_end(struct rd *r)
{
    struct s3_page *p = r->p;
    const char *t = r->text;
    enum leaf l = r->leaf;
    r->leaf = L_NONE;
    switch (l) {
    case L_TRUNC:
        if (strcmp(t, "true") && strcmp(t, "false"))
            return fail(r, "IsTruncated is neither true nor false: %.40s", t);
        p->truncated = !strcmp(t, "true");
        return 0;
    case L_TOKEN:
        return set_token(r);
    case L_ENC:
        r->encoded = !strcmp(t, "url");
        return 0;
    case L_KEY:
        r->key_len = p->arena_len - r->key_start;
        if (r->have_key)
            return fail(r, "a Contents with two Keys");
        if (arena_put(p, "", 0) != 0)
            return fail(r, "out of memory");
        p->arena_len++; /* past the key's NUL: the next key begins after it */
        r->have_key = 1;
        return 0;
    case L_SIZE:
        if (r->have_size || parse_size(t, &r->size) != 0)
            return fail(r, "a Size that is not one decimal number: %.40s", t);
        r->have_size = 1;
        return 0;
    case L_CODE:
        s3_printable(p->code, sizeof p->code, t, r->tlen);
        return 0;
    case L_MSG:
        s3_printable(p->message, sizeof p->message, t, r->tlen);
        return 0;
    case L_REGION:
        s3_printable(p->region, sizeof p->region, t, r->tlen);
        return 0;
    case L_NONE:
        break;
    }
    return 0;
}

static int contents_end(struct s3_page *p, struct rd *r)
{
    r->in_contents = 0;
    if (!r->have_key || !r->have_size)
        return fail(r, "a Contents without %s", r->have_key ? "Size" : "Key");
    if (p->n == p->obj_cap) {
        size_t cap = p->obj_cap ? p->obj_cap * 2 : 64;
        struct s3_object *o = realloc(p->obj, cap * sizeof *o);
        if (!o)
            return fail(r, "out of memory");
        p->obj = o;
        p->obj_cap = cap;
    }
    /* the key's place is found again at the end (the arena may still move) */
    p->obj[p->n].key = NULL;
    p->obj[p->n].key_len = r->key_len;
    p->obj[p->n].size = r->size;
    p->n++;
    return 0;
}

/* ---- the nodes ---- */

static enum leaf leaf_of(const struct rd *r, int depth, const char *name)
{
    if (r->root == R_LIST && depth == 1) {
        if (!strcmp(name, "IsTruncated"))
            return L_TRUNC;
        if (!strcmp(name, "NextContinuationToken"))
            return L_TOKEN;
        if (!strcmp(name, "EncodingType"))
            return L_ENC;
    } else if (r->root == R_LIST && depth == 2 && r->in_contents) {
        if (!strcmp(name, "Key"))
            return L_KEY;
        if (!strcmp(name, "Size"))
            return L_SIZE;
    } else if (r->root == R_ERROR && depth == 1) {
        if (!strcmp(name, "Code"))
            return L_CODE;
        if (!strcmp(name, "Message"))
            return L_MSG;
        if (!strcmp(name, "Region"))
            return L_REGION;
    }
    return L_NONE;
}

static int on_element(struct rd *r, xmlTextReaderPtr x)
{
    int depth = xmlTextReaderDepth(x), empty = xmlTextReaderIsEmptyElement(x);
    const char *name = (const char *)xmlTextReaderConstLocalName(x);
    if (!name)
        return fail(r, "out of memory");
    if (r->leaf != L_NONE)
        return fail(r, "an element inside a value: <%.40s>", name);
    if (depth == 0) {
        r->root = !strcmp(name, "ListBucketResult") ? R_LIST : !strcmp(name, "Error") ? R_ERROR : R_NONE;
        return r->root == R_NONE ? fail(r, "neither a ListBucketResult nor an Error: <%.40s>", name) : 0;
    }
    if (r->root == R_LIST && depth == 1 && !strcmp(name, "Contents")) {
        r->in_contents = 1;
        r->have_key = r->have_size = 0;
        return empty ? contents_end(r->p, r) : 0;
    }
    r->leaf = leaf_of(r, depth, name);
    r->leaf_depth = depth;
    r->tlen = 0;
    r->text[0] = '\0';
    r->key_start = r->p->arena_len;
    return r->leaf != L_NONE && empty ? leaf_end(r) : 0;
}

static int on_text(struct rd *r, xmlTextReaderPtr x)
{
    const char *v = (const char *)xmlTextReaderConstValue(x);
    size_t n = v ? strlen(v) : 0;
    if (r->leaf == L_NONE || n == 0)
        return 0;
    if (r->leaf == L_KEY) {
        if (r->p->arena_len - r->key_start + n > 3 * S3_KEY_MAX)
            return fail(r, "a Key longer than %d bytes", 3 * S3_KEY_MAX);
        return arena_put(r->p, v, n) == 0 ? 0 : fail(r, "out of memory");
    }
    if (r->tlen + n > LEAF_MAX)
        return fail(r, "a value longer than %d bytes", LEAF_MAX);
    memcpy(r->text + r->tlen, v, n);
    r->tlen += n;
    r->text[r->tlen] = '\0';
    return 0;
}

static int on_end(struct rd *r, xmlTextReaderPtr x)
{
    int depth = xmlTextReaderDepth(x);
    if (r->leaf != L_NONE && depth == r->leaf_depth)
        return leaf_end(r);
    if (r->in_contents && depth == 1)
        return contents_end(r->p, r);
    return 0;
}

static int on_node(struct rd *r, xmlTextReaderPtr x)
{
    switch (xmlTextReaderNodeType(x)) {
    case XML_READER_TYPE_DOCUMENT_TYPE:
        return fail(r, "a DOCTYPE (S3 never sends one)");
    case XML_READER_TYPE_ELEMENT:
        return on_element(r, x);
    case XML_READER_TYPE_TEXT:
    case XML_READER_TYPE_CDATA:
    case XML_READER_TYPE_WHITESPACE:
    case XML_READER_TYPE_SIGNIFICANT_WHITESPACE:
        return on_text(r, x);
    case XML_READER_TYPE_END_ELEMENT:
        return on_end(r, x);
    case XML_READER_TYPE_ENTITY_REFERENCE:
        return fail(r, "an entity reference");
    default:
        return 0;
    }
}

/* ---- the whole page ---- */

/* The keys in the arena, one after the other: decoded when the answer was encoded, checked,
 * and pointed at. */
static int finish_keys(struct rd *r)
{
    struct s3_page *p = r->p;
    size_t rpos = 0, wpos = 0;
    for (size_t i = 0; i < p->n; i++) {
        struct s3_object *o = &p->obj[i];
        const char *raw = p->arena + rpos;
        size_t len = o->key_len;
        rpos += len + 1;
        if (r->encoded && s3_decode(raw, len, 1, p->arena + wpos, &len) != 0)
            return fail(r, "a Key with a bad %%-escape: %.80s", raw);
        if (!r->encoded)
            memmove(p->arena + wpos, raw, len + 1);
        if (len == 0 || len > S3_KEY_MAX || memchr(p->arena + wpos, '\0', len))
            return fail(r, "Contents %zu: a Key that is empty, longer than %d bytes or holds a NUL", i + 1,
                        S3_KEY_MAX);
        o->key = p->arena + wpos;
        o->key_len = len;
        wpos += len + 1;
    }
    return 0;
}

static void page_reset(struct s3_page *p)
{
    p->n = 0;
    p->truncated = 0;
    p->is_error = 0;
    p->code[0] = p->message[0] = p->region[0] = '\0';
    p->arena_len = 0;
    if (p->next_token)
        p->next_token[0] = '\0';
}

static int read_all(struct rd *r, const char *xml, size_t len)
{
    xmlTextReaderPtr x = xmlReaderForMemory(xml, (int)len, NULL, NULL,
                                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!x)
        return fail(r, "cannot start the XML reader (out of memory)");
    xmlTextReaderSetStructuredErrorHandler(x, on_xml_error, r);
    int k = 0;
    while (!r->failed && (k = xmlTextReaderRead(x)) == 1)
        on_node(r, x);
    if (!r->failed && k < 0)
        fail(r, "not well-formed XML");
    xmlFreeTextReader(x);
    return r->failed ? -1 : 0;
}

int s3_page_parse(struct s3_page *p, const char *xml, size_t len, char *err, size_t errlen)
{
    xmlInitParser();
    page_reset(p);
    struct rd *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->p = p;
    r->err = err;
    r->errlen = errlen;
    int rc = -1;
    if (len == 0 || len > INT_MAX)
        fail(r, "%s", len ? "an answer too large to read" : "an empty answer");
    else if (read_all(r, xml, len) == 0 && r->root == R_NONE)
        fail(r, "no XML element");
    else if (!r->failed && r->root == R_ERROR)
        rc = p->is_error = 1;
    else if (!r->failed && p->truncated && (!p->next_token || !p->next_token[0]))
        fail(r, "IsTruncated is true but there is no NextContinuationToken");
    else if (!r->failed && finish_keys(r) == 0)
        rc = 0;
    if (rc < 0)
        page_reset(p);
    if (rc == 1 && !p->code[0])
        snprintf(p->code, sizeof p->code, "(none)");
    free(r);
    return rc;
}

void s3_page_free(struct s3_page *p)
{
    free(p->obj);
    free(p->arena);
    free(p->next_token);
    memset(p, 0, sizeof *p);
}
