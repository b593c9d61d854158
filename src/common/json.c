/* json: see json.h. A recursive-descent skipper: each function takes the position of a value's
 * first byte and returns the position after it, or (size_t)-1 with the reason in the context. */
#include "common/json.h"
#include "common/hex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD ((size_t)-1)

struct ctx {
    const char *s;
    size_t n;
    int depth;
    char *err;
    size_t errlen;
};

static size_t fail(struct ctx *c, size_t at, const char *what)
{
    if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "%s at byte %zu", what, at);
    return BAD;
}

static size_t ws(const struct ctx *c, size_t i)
{
    while (i < c->n && (c->s[i] == ' ' || c->s[i] == '\t' || c->s[i] == '\n' || c->s[i] == '\r'))
        i++;
    return i;
}

/* Length of the valid UTF-8 sequence at s[i] (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t i, size_t n)
{
    unsigned char b = s[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        len = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        if (b == 0xE0)
            lo = 0xA0;
        if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        if (b == 0xF0)
            lo = 0x90;
        if (b == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (i + len > n)
        return 0;
    if (s[i + 1] < lo || s[i + 1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (s[i + k] < 0x80 || s[i + k] > 0xBF)
            return 0;
    return len;
}

/* Reads \uXXXX at s[i] (i at the backslash); returns the code unit or -1. */
static long u_escape(const struct ctx *c, size_t i)
{
    if (i + 6 > c->n || c->s[i + 1] != 'u')
        return -1;
    long v = 0;
    for (int k = 2; k < 6; k++) {
        int h = hex_digit(c->s[i + k]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A string starting at the quote at i. Lone surrogate escapes are accepted (JSON's grammar
 * allows them; the text is kept as sent). */
static size_t skip_string(struct ctx *c, size_t i)
{
    const unsigned char *u = (const unsigned char *)c->s;
    size_t start = i++;
    while (i < c->n) {
        unsigned char ch = u[i];
        if (ch == '"')
            return i + 1;
        if (ch < 0x20)
            return fail(c, i, "a raw control character in a string");
        if (ch == '\\') {
            if (i + 1 >= c->n)
                break;
            char e = c->s[i + 1];
            if (e == 'u') {
                if (u_escape(c, i) < 0)
                    return fail(c, i, "a bad \\u escape");
                i += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                i += 2;
            } else {
                return fail(c, i, "an unknown escape in a string");
            }
            continue;
        }
        size_t l = utf8_len(u, i, c->n);
        if (!l)
            return fail(c, i, "invalid UTF-8");
        i += l;
    }
    return fail(c, start, "an unterminated string");
}

static size_t skip_number(struct ctx *c, size_t i)
{
    size_t start = i;
    if (i < c->n && c->s[i] == '-')
        i++;
    if (i < c->n && c->s[i] == '0')
        i++;
    else if (i < c->n && c->s[i] >= '1' && c->s[i] <= '9')
        while (i < c->n && c->s[i] >= '0' && c->s[i] <= '9')
            i++;
    else
        return fail(c, start, "not JSON");
    if (i < c->n && c->s[i] == '.') {
        i++;
        size_t d = i;
        while (i < c->n && c->s[i] >= '0' && c->s[i] <= '9')
            i++;
        if (i == d)
            return fail(c, start, "a bad number");
    }
    if (i < c->n && (c->s[i] == 'e' || c->s[i] == 'E')) {
        i++;
        if (i < c->n && (c->s[i] == '+' || c->s[i] == '-'))
            i++;
        size_t d = i;
        while (i < c->n && c->s[i] >= '0' && c->s[i] <= '9')
            i++;
        if (i == d)
            return fail(c, start, "a bad number");
    }
    return i;
}

static size_t skip_value(struct ctx *c, size_t i);

/* An array or object starting at its bracket at i. */
static size_t skip_container(struct ctx *c, size_t i)
{
    int obj = c->s[i] == '{';
    char close = obj ? '}' : ']';
    if (++c->depth > JSON_MAX_DEPTH)
        return fail(c, i, "nested too deep");
    i = ws(c, i + 1);
    if (i < c->n && c->s[i] == close) {
        c->depth--;
        return i + 1;
    }
    for (;;) {
        if (obj) {
            if (i >= c->n || c->s[i] != '"')
                return fail(c, i, "not JSON (an object key must be a string)");
            if ((i = skip_string(c, i)) == BAD)
                return BAD;
            i = ws(c, i);
            if (i >= c->n || c->s[i] != ':')
                return fail(c, i, "not JSON (':' expected)");
            i = ws(c, i + 1);
        }
        if ((i = skip_value(c, i)) == BAD)
            return BAD;
        i = ws(c, i);
        if (i < c->n && c->s[i] == ',') {
            i = ws(c, i + 1);
            continue;
        }
        if (i < c->n && c->s[i] == close) {
            c->depth--;
            return i + 1;
        }
        return fail(c, i, obj ? "not JSON (',' or '}' expected)" : "not JSON (',' or ']' expected)");
    }
}

static size_t literal(struct ctx *c, size_t i, const char *word)
{
    size_t l = strlen(word);
    if (i + l > c->n || memcmp(c->s + i, word, l))
        return fail(c, i, "not JSON");
    return i + l;
}

static size_t skip_value(struct ctx *c, size_t i)
{
    if (i >= c->n)
        return fail(c, i, "not JSON (the text ends where a value should be)");
    switch (c->s[i]) {
    case '{':
    case '[':
        return skip_container(c, i);
    case '"':
        return skip_string(c, i);
    case 't':
        return literal(c, i, "true");
    case 'f':
        return literal(c, i, "false");
    case 'n':
        return literal(c, i, "null");
    default:
        return skip_number(c, i);
    }
}

int json_check(const char *s, size_t n, char *err, size_t errlen)
{
    struct ctx c = {s, n, 0, err, errlen};
    size_t i = skip_value(&c, ws(&c, 0));
    if (i == BAD)
        return -1;
    i = ws(&c, i);
    if (i != n) {
        fail(&c, i, "text after the JSON value");
        return -1;
    }
    return 0;
}

/* ---- paths ---- */

/* Appends the UTF-8 of code point cp. */
static size_t put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Unescapes the JSON string whose quote is at s[i] (already checked) into out (room for its
 * length); returns the byte count. Surrogate pairs are joined; a lone one becomes U+FFFD, but
 * with bytes set a lone U+DC80..U+DCFF becomes the byte it stands for (json_put_bytes). */
static size_t unescape_as(const char *s, size_t n, size_t i, char *out, int bytes)
{
    struct ctx c = {s, n, 0, NULL, 0};
    size_t o = 0;
    for (i++; i < n && s[i] != '"';) {
        if (s[i] != '\\') {
            out[o++] = s[i++];
            continue;
        }
        char e = s[i + 1];
        if (e != 'u') {
            const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
            out[o++] = to[strchr(from, e) - from];
            i += 2;
            continue;
        }
        unsigned long cp = (unsigned long)u_escape(&c, i);
        i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= n && s[i] == '\\') {
            long lo = u_escape(&c, i);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
                i += 6;
            }
        }
        if (bytes && cp >= 0xDC80 && cp <= 0xDCFF) {
            out[o++] = (char)(cp - 0xDC00);
            continue;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 0xFFFD;
        o += put_utf8(out + o, cp);
    }
    return o;
}

static size_t unescape(const char *s, size_t n, size_t i, char *out)
{
    return unescape_as(s, n, i, out, 0);
}

int json_path_parse(const char *expr, struct json_path *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    size_t n = strlen(expr);
    while (n && (expr[n - 1] == ' ' || expr[n - 1] == '\t' || expr[n - 1] == '\n'))
        n--;
    size_t i = 0;
    while (i < n && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n'))
        i++;
    if (!(p->storage = malloc(n + 1))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t used = 0;
    if (i >= n || expr[i] != '.')
        goto bad;
    if (i + 1 == n)
        return 0; /* "." */
    while (i < n) {
        if (p->n == JSON_MAX_STEPS)
            goto bad;
        struct json_step *st = &p->step[p->n];
        if (expr[i] == '.' && i + 1 < n && expr[i + 1] != '[') {
            /* .name: letters, digits, '_' (jq's identifiers), not starting with a digit */
            size_t k = ++i;
            while (i < n && (expr[i] == '_' || (expr[i] >= 'a' && expr[i] <= 'z') || (expr[i] >= 'A' && expr[i] <= 'Z') ||
                             (expr[i] >= '0' && expr[i] <= '9')))
                i++;
            if (i == k || (expr[k] >= '0' && expr[k] <= '9'))
                goto bad;
            memcpy(p->storage + used, expr + k, i - k);
            st->key = p->storage + used;
            st->keylen = i - k;
            used += i - k;
            p->n++;
            continue;
        }
        if (expr[i] == '.')
            i++; /* ".[" */
        if (i >= n || expr[i] != '[')
            goto bad;
        i++;
        if (i < n && expr[i] == '"') {
            struct ctx c = {expr, n, 0, NULL, 0};
            size_t end = skip_string(&c, i);
            if (end == BAD || end >= n || expr[end] != ']')
                goto bad;
            st->key = p->storage + used;
            st->keylen = unescape(expr, n, i, p->storage + used);
            used += st->keylen;
            i = end + 1;
        } else {
            size_t k = i;
            long v = 0;
            while (i < n && expr[i] >= '0' && expr[i] <= '9' && v < 100000000)
                v = v * 10 + (expr[i++] - '0');
            if (i == k || i >= n || expr[i] != ']')
                goto bad;
            st->index = v;
            i++;
        }
        p->n++;
    }
    return 0;
bad:
    json_path_free(p);
    snprintf(err, errlen, "\"%s\" is not a plain path (.key, .[\"key\"], .[N] steps)", expr);
    return -1;
}

void json_path_free(struct json_path *p)
{
    if (!p)
        return;
    free(p->storage);
    memset(p, 0, sizeof *p);
}

/* 1 when the JSON string at s[i] (checked) unescapes to key. */
static int key_is(const char *s, size_t n, size_t i, size_t end, const struct json_step *st)
{
    size_t raw = end - i - 2;
    if (!memchr(s + i + 1, '\\', raw))
        return raw == st->keylen && !memcmp(s + i + 1, st->key, raw);
    char small[256], *buf = raw < sizeof small ? small : malloc(raw + 1);
    if (!buf)
        return 0;
    size_t l = unescape(s, n, i, buf);
    int eq = l == st->keylen && !memcmp(buf, st->key, l);
    if (buf != small)
        free(buf);
    return eq;
}

int json_find(const char *s, size_t n, const struct json_path *p, const char **v, size_t *vlen)
{
    struct ctx c = {s, n, 0, NULL, 0};
    size_t i = ws(&c, 0);
    for (int k = 0; k < p->n; k++) {
        const struct json_step *st = &p->step[k];
        if (i >= n || (st->key ? s[i] != '{' : s[i] != '['))
            return -1;
        size_t found = BAD;
        i = ws(&c, i + 1);
        long index = 0;
        while (i < n && s[i] != '}' && s[i] != ']') {
            int match;
            if (st->key) {
                size_t kend = skip_string(&c, i);
                if (kend == BAD)
                    return -1;
                match = key_is(s, n, i, kend, st);
                i = ws(&c, ws(&c, kend) + 1); /* past ':' */
            } else {
                match = index++ == st->index;
            }
            size_t end = skip_value(&c, i);
            if (end == BAD)
                return -1;
            if (match) {
                found = i;
                if (!st->key)
                    break; /* indexes are unique; keys: the last one counts */
            }
            i = ws(&c, end);
            if (i < n && s[i] == ',')
                i = ws(&c, i + 1);
        }
        if (found == BAD)
            return -1;
        i = found;
    }
    size_t end = skip_value(&c, i);
    if (end == BAD)
        return -1;
    *v = s + i;
    *vlen = end - i;
    return 0;
}

int json_elements(const char *s, size_t n, int (*each)(void *arg, const char *v, size_t vlen), void *arg)
{
    struct ctx c = {s, n, 0, NULL, 0};
    size_t i = ws(&c, 0);
    if (i >= n || s[i] != '[')
        return -1;
    int count = 0;
    i = ws(&c, i + 1);
    if (i < n && s[i] == ']')
        return 0;
    for (;;) {
        size_t end = skip_value(&c, i);
        if (end == BAD)
            return -1;
        if (each && each(arg, s + i, end - i))
            return -1;
        count++;
        i = ws(&c, end);
        if (i < n && s[i] == ',') {
            i = ws(&c, i + 1);
            continue;
        }
        return i < n && s[i] == ']' ? count : -1;
    }
}

int json_members(const char *s, size_t n,
                 int (*each)(void *arg, const char *key, size_t keylen, const char *v, size_t vlen), void *arg)
{
    struct ctx c = {s, n, 0, NULL, 0};
    size_t i = ws(&c, 0);
    if (i >= n || s[i] != '{')
        return -1;
    int count = 0;
    i = ws(&c, i + 1);
    if (i < n && s[i] == '}')
        return 0;
    for (;;) {
        size_t kend = i < n && s[i] == '"' ? skip_string(&c, i) : BAD;
        if (kend == BAD)
            return -1;
        size_t v = ws(&c, kend);
        if (v >= n || s[v] != ':')
            return -1;
        v = ws(&c, v + 1);
        size_t end = skip_value(&c, v);
        if (end == BAD)
            return -1;
        if (each && each(arg, s + i + 1, kend - i - 2, s + v, end - v))
            return -1;
        count++;
        i = ws(&c, end);
        if (i < n && s[i] == ',') {
            i = ws(&c, i + 1);
            continue;
        }
        return i < n && s[i] == '}' ? count : -1;
    }
}

size_t json_put_bytes(const char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n;) {
        unsigned char b = u[i];
        size_t l = b < 0x80 ? 1 : utf8_len(u, i, n);
        if (l > 1) { /* a whole UTF-8 character, as it is */
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
            continue;
        }
        i++;
        const char *esc = b == '"'  ? "\\\""
                          : b == '\\' ? "\\\\"
                          : b == '\n' ? "\\n"
                          : b == '\r' ? "\\r"
                          : b == '\t' ? "\\t"
                                      : NULL;
        if (esc) {
            memcpy(out + o, esc, 2);
            o += 2;
        } else if (b >= 0x20 && b < 0x80) {
            out[o++] = (char)b;
        } else { /* a control character, or a byte of no UTF-8 character: \u00XX, \udcXX */
            memcpy(out + o, b < 0x80 ? "\\u00" : "\\udc", 4);
            out[o + 4] = hex[b >> 4];
            out[o + 5] = hex[b & 15];
            o += 6;
        }
    }
    out[o++] = '"';
    return o;
}

long json_string_bytes(const char *v, size_t vlen, char *out)
{
    struct ctx c = {v, vlen, 0, NULL, 0};
    if (vlen < 2 || v[0] != '"' || skip_string(&c, 0) != vlen)
        return -1;
    return (long)unescape_as(v, vlen, 0, out, 1);
}
