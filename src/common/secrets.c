/* secrets: see secrets.h. */
#include "common/secrets.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One form of a value. The table is kept longest first, so that where two forms match at one
 * place ("Bearer X" and "X") the longer one is replaced. */
struct form {
    char *s;
    size_t len;
    uint64_t age;  /* the value's registration number: the oldest goes first when full */
    int raw;       /* the value as registered, not an echoed form */
};

/* Writers first: threads scrubbing one reason after another must not keep a 401's new token
 * waiting. */
static pthread_rwlock_t mu = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static struct form forms[SECRETS_MAX];
static int n_forms;
static uint64_t next_age;
static unsigned char first[256]; /* 1 for a byte some form starts with: other bytes are copied */

static void index_firsts(void)
{
    memset(first, 0, sizeof first);
    for (int i = 0; i < n_forms; i++)
        first[(unsigned char)forms[i].s[0]] = 1;
}

static void wipe_free(char *s, size_t len)
{
    if (s)
        memset(s, 0, len);
    free(s);
}

/* ---- the forms of a value ---- */

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

/* v percent-encoded (RFC 3986: all but the unreserved characters), malloc'd, in *olen. */
static char *percent_form(const char *v, size_t len, size_t *olen)
{
    static const char hex[] = "0123456789ABCDEF";
    char *o = malloc(len * 3 + 1);
    size_t n = 0;
    for (size_t i = 0; o && i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (unreserved(c)) {
            o[n++] = (char)c;
        } else {
            o[n++] = '%';
            o[n++] = hex[c >> 4];
            o[n++] = hex[c & 15];
        }
    }
    *olen = n;
    return o;
}

/* v as inside a JSON string: '"' and '\' escaped, and '/' as "\/" when slash is set (PHP's
 * json_encode, Java's org.json). malloc'd, in *olen. */
static char *json_form(const char *v, size_t len, int slash, size_t *olen)
{
    char *o = malloc(len * 2 + 1);
    size_t n = 0;
    for (size_t i = 0; o && i < len; i++) {
        if (v[i] == '"' || v[i] == '\\' || (slash && v[i] == '/'))
            o[n++] = '\\';
        o[n++] = v[i];
    }
    *olen = n;
    return o;
}

/* ---- the table (under the write lock) ---- */

static int known(const char *v, size_t len)
{
    for (int i = 0; i < n_forms; i++)
        if (forms[i].len == len && !memcmp(forms[i].s, v, len))
            return 1;
    return 0;
}

/* A value registered again is in use: its forms become the newest, the last to be forgotten.
 * Returns 1 when v is a registered value. */
static int refresh(const char *v, size_t len)
{
    for (int i = 0; i < n_forms; i++)
        if (forms[i].raw && forms[i].len == len && !memcmp(forms[i].s, v, len)) {
            uint64_t was = forms[i].age, now = next_age++;
            for (int k = 0; k < n_forms; k++)
                if (forms[k].age == was)
                    forms[k].age = now;
            return 1;
        }
    return 0;
}

/* Forgets every form of the oldest value. */
static void drop_oldest(void)
{
    uint64_t oldest = forms[0].age;
    for (int i = 1; i < n_forms; i++)
        if (forms[i].age < oldest)
            oldest = forms[i].age;
    int k = 0;
    for (int i = 0; i < n_forms; i++) {
        if (forms[i].age == oldest)
            wipe_free(forms[i].s, forms[i].len);
        else
            forms[k++] = forms[i];
    }
    n_forms = k;
    index_firsts();
}

/* Puts a form (taking s) in its place by length; a form known already is wiped. */
static void insert(char *s, size_t len, uint64_t age, int raw)
{
    if (!s || len < SECRETS_MIN || known(s, len)) {
        wipe_free(s, len);
        return;
    }
    if (n_forms == SECRETS_MAX)
        drop_oldest();
    int at = 0;
    while (at < n_forms && forms[at].len >= len)
        at++;
    memmove(&forms[at + 1], &forms[at], (size_t)(n_forms - at) * sizeof *forms);
    forms[at] = (struct form){s, len, age, raw};
    n_forms++;
    index_firsts();
}

static char *dup_bytes(const char *v, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, v, len);
        s[len] = 0;
    }
    return s;
}

void secrets_add(const char *v, size_t len)
{
    if (!v || len < SECRETS_MIN)
        return;
    pthread_rwlock_wrlock(&mu);
    if (!refresh(v, len) && !known(v, len)) {
        uint64_t age = next_age++;
        size_t l;
        insert(dup_bytes(v, len), len, age, 1);
        char *f = json_form(v, len, 0, &l);
        insert(f, f ? l : 0, age, 0);
        f = json_form(v, len, 1, &l);
        insert(f, f ? l : 0, age, 0);
        f = percent_form(v, len, &l);
        insert(f, f ? l : 0, age, 0);
    }
    pthread_rwlock_unlock(&mu);
}

/* 1 when a header of this name (len bytes) carries a credential. */
static int credential_name(const char *name, size_t len)
{
    static const char *const words[] = {"key", "token", "secret", "auth", "pass", "session", "signature",
                                        "credential", "cookie", NULL};
    for (int w = 0; words[w]; w++) {
        size_t wl = strlen(words[w]);
        for (size_t i = 0; i + wl <= len; i++)
            if (!strncasecmp(name + i, words[w], wl))
                return 1;
    }
    return 0;
}

void secrets_add_credential_header(const char *line)
{
    size_t nl = strcspn(line, ":");
    if (!line[nl] || !credential_name(line, nl))
        return;
    const char *v = line + nl + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    secrets_add(v, vl);
    const char *sp = memchr(v, ' ', vl); /* "Bearer X", "Basic X": X alone */
    if (sp) {
        while (sp < v + vl && *sp == ' ')
            sp++;
        secrets_add(sp, (size_t)(v + vl - sp));
    }
}

/* ---- the scrub (under the read lock) ---- */

/* The length of the longest form at src[i..len), or 0. Failing that, a form's first
 * SECRETS_CUT_MIN or more bytes followed by "..." (a value cut by someone else: jq's messages
 * quote a value that way), with the dots. */
static size_t match_at(const char *src, size_t len, size_t i)
{
    for (int k = 0; k < n_forms; k++)
        if (forms[k].len <= len - i && src[i] == forms[k].s[0] && !memcmp(src + i, forms[k].s, forms[k].len))
            return forms[k].len;
    for (int k = 0; k < n_forms; k++) {
        if (src[i] != forms[k].s[0])
            continue;
        size_t p = 0;
        while (p < forms[k].len && i + p < len && src[i + p] == forms[k].s[p])
            p++;
        if (p >= SECRETS_CUT_MIN && p < forms[k].len && len - i - p >= 3 && !memcmp(src + i + p, "...", 3))
            return p + 3;
    }
    return 0;
}

size_t secrets_scrub_to(const char *src, size_t len, char *out, size_t cap)
{
    size_t o = 0, room = cap - 1;
    pthread_rwlock_rdlock(&mu);
    if (n_forms == 0) {
        o = len < room ? len : room;
        memcpy(out, src, o);
    }
    size_t ml = sizeof SECRETS_MARK - 1;
    for (size_t i = 0; n_forms && i < len && o < room;) {
        /* a marker already there is text (a reason scrubbed twice stays as it was) */
        size_t keep = src[i] == '[' && len - i >= ml && !memcmp(src + i, SECRETS_MARK, ml) ? ml : 1;
        size_t m = keep == 1 && first[(unsigned char)src[i]] ? match_at(src, len, i) : 0;
        if (!m) {
            size_t put = keep < room - o ? keep : room - o;
            memcpy(out + o, src + i, put);
            o += put;
            i += keep;
            continue;
        }
        size_t put = ml < room - o ? ml : room - o;
        memcpy(out + o, SECRETS_MARK, put);
        o += put;
        i += m;
    }
    pthread_rwlock_unlock(&mu);
    out[o] = 0;
    return o;
}

void secrets_scrub(char *buf, size_t cap)
{
    size_t len = strlen(buf);
    pthread_rwlock_rdlock(&mu);
    int any = n_forms > 0;
    pthread_rwlock_unlock(&mu);
    if (!any || cap == 0)
        return;
    char *copy = dup_bytes(buf, len);
    if (!copy) { /* no room to scrub: say nothing rather than something secret */
        buf[0] = 0;
        return;
    }
    secrets_scrub_to(copy, len, buf, cap);
    wipe_free(copy, len);
}

int secrets_each(int (*fn)(void *arg, const char *v, size_t len), void *arg)
{
    int rc = 0;
    pthread_rwlock_rdlock(&mu);
    for (int i = 0; i < n_forms && !rc; i++)
        if (forms[i].raw)
            rc = fn(arg, forms[i].s, forms[i].len);
    pthread_rwlock_unlock(&mu);
    return rc;
}

int secrets_count(void)
{
    pthread_rwlock_rdlock(&mu);
    int n = n_forms;
    pthread_rwlock_unlock(&mu);
    return n;
}

void secrets_clear(void)
{
    pthread_rwlock_wrlock(&mu);
    for (int i = 0; i < n_forms; i++)
        wipe_free(forms[i].s, forms[i].len);
    n_forms = 0;
    index_firsts();
    pthread_rwlock_unlock(&mu);
}
