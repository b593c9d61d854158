/* errtally: see errtally.h. */
#include "common/errtally.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct errtally {
    pthread_mutex_t mu;
    struct errtally_entry e[ERRTALLY_MAX];
    int n;
    uint64_t other, total;
};

struct errtally *errtally_new(void)
{
    struct errtally *t = calloc(1, sizeof *t);
    if (t)
        pthread_mutex_init(&t->mu, NULL);
    return t;
}

void errtally_free(struct errtally *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static int name_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.';
}

/* Copies at most len - 1 bytes of s[0..n), each outside printable ASCII as '?'. */
static void copy_printable(char *out, size_t len, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < len; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (len)
        out[o] = 0;
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The length of s once a trailing " (after N attempts)" or " (tried N times)" is taken off. */
static size_t without_count(const char *s, size_t n)
{
    static const char *const opens[] = {" (after ", " (tried "};
    if (n == 0 || s[n - 1] != ')')
        return n;
    for (size_t k = 0; k < 2; k++) {
        size_t ol = strlen(opens[k]);
        for (size_t i = n; i-- > 0;) {
            if (i + ol <= n && !strncmp(s + i, opens[k], ol)) {
                const char *d = s + i + ol;
                if (isdigit((unsigned char)*d))
                    return i;
                break;
            }
        }
    }
    return n;
}

/* Each number that stands alone (not part of a word such as resnet50, UTF-8 or HTTP/2) becomes N. */
static void numbers_to_n(char *s)
{
    char *w = s;
    for (char *r = s; *r;) {
        int alone_before = r == s || !(isalnum((unsigned char)r[-1]) || r[-1] == '_' || r[-1] == '-' || r[-1] == '/');
        if (isdigit((unsigned char)*r) && alone_before) {
            char *e = r;
            while (isdigit((unsigned char)*e))
                e++;
            if (!(isalpha((unsigned char)*e) || *e == '_')) {
                *w++ = 'N';
                r = e;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = 0;
}

/* The length up to the first occurrence of needle at or after from, or n. */
static size_t cut_at(const char *s, size_t n, size_t from, const char *needle)
{
    if (from > n)
        return n;
    const char *p = strstr(s + from, needle);
    return p && (size_t)(p - s) < n ? (size_t)(p - s) : n;
}

void errtally_normalise(const char *error, char *stage, size_t stagelen, char *reason, size_t reasonlen)
{
    if (stagelen)
        stage[0] = 0;
    if (!error || !*error) {
        snprintf(reason, reasonlen, "no reason given");
        return;
    }
    /* "NAME: ..." or "NAME[i]: ...": stage names are letters, digits and _ - . only, so a load
     * error ("empty file (0 bytes): ...") is never taken for one. */
    const char *p = error;
    while (name_char((unsigned char)*p))
        p++;
    size_t name_len = (size_t)(p - error);
    if (name_len && *p == '[') {
        const char *q = p + 1;
        while (isdigit((unsigned char)*q))
            q++;
        if (q > p + 1 && *q == ']')
            p = q + 1;
    }
    const char *rest = error;
    if (name_len && name_len < stagelen && p[0] == ':' && p[1] == ' ') {
        memcpy(stage, error, name_len);
        stage[name_len] = 0;
        rest = p + 2;
    }
    char buf[1024];
    size_t n = strlen(rest);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, rest, n);
    buf[n] = 0;
    n = without_count(buf, n);
    buf[n] = 0;

    if (starts(buf, "HTTP ") && isdigit((unsigned char)buf[5]) && isdigit((unsigned char)buf[6]) &&
        isdigit((unsigned char)buf[7]) && !isdigit((unsigned char)buf[8])) {
        /* the status is the kind; the body excerpt (or a redirect's target) differs by image */
        snprintf(reason, reasonlen, "HTTP %.3s", buf + 5);
        return;
    }
    if (starts(buf, "Failed to connect to ")) {
        /* libcurl: "Failed to connect to HOST port P after N ms: Connection refused" */
        const char *why = NULL;
        for (const char *c = buf; (c = strstr(c, ": ")); c += 2)
            why = c + 2;
        char w[256];
        snprintf(w, sizeof w, "%s", why ? why : "");
        snprintf(buf, sizeof buf, "cannot connect%s%s", w[0] ? ": " : "", w);
        n = strlen(buf);
    } else if (strstr(buf, "timed out")) {
        /* libcurl: "Operation timed out after 30001 milliseconds with 0 bytes received",
         * "Connection timed out after 5001 milliseconds", "Resolving timed out after ..." */
        const char *kind = starts(buf, "Connection timed out") ? "connect timed out"
                           : starts(buf, "Resolving timed out") ? "resolving timed out"
                                                                : "timed out";
        snprintf(reason, reasonlen, "%s", kind);
        return;
    } else if (starts(buf, "the answer ")) {
        /* garbled: "WHY: <excerpt of the body>", WHY ending in " at byte N" when it has one */
        size_t a = cut_at(buf, n, 0, " at byte ");
        n = a < n ? a : cut_at(buf, n, 0, ": ");
    } else if (starts(buf, "\"result\" failed: ")) {
        n = cut_at(buf, n, strlen("\"result\" failed: "), ": "); /* jq's message, then the excerpt */
    } else if (starts(buf, "\"result\" yielded")) {
        n = cut_at(buf, n, 0, ": ");
    }
    buf[n] = 0;
    while (n && buf[n - 1] == ' ')
        buf[--n] = 0;
    char pr[sizeof buf];
    copy_printable(pr, sizeof pr, buf, n);
    numbers_to_n(pr);
    if (!pr[0])
        snprintf(pr, sizeof pr, "no reason given");
    copy_printable(reason, reasonlen, pr, strlen(pr));
}

void errtally_add(struct errtally *t, const char *error)
{
    if (!t)
        return;
    char stage[ERRTALLY_STAGE], reason[ERRTALLY_REASON];
    errtally_normalise(error, stage, sizeof stage, reason, sizeof reason);
    pthread_mutex_lock(&t->mu);
    t->total++;
    int i;
    for (i = 0; i < t->n; i++)
        if (!strcmp(t->e[i].stage, stage) && !strcmp(t->e[i].reason, reason))
            break;
    if (i < t->n) {
        t->e[i].count++;
    } else if (t->n < ERRTALLY_MAX) {
        struct errtally_entry *e = &t->e[t->n++];
        memcpy(e->stage, stage, sizeof stage);
        memcpy(e->reason, reason, sizeof reason);
        const char *ex = error ? error : "";
        copy_printable(e->example, sizeof e->example, ex, strlen(ex));
        e->count = 1;
    } else {
        t->other++;
    }
    pthread_mutex_unlock(&t->mu);
}

int errtally_top(struct errtally *t, struct errtally_entry *out, int max, uint64_t *other, uint64_t *total)
{
    if (other)
        *other = 0;
    if (total)
        *total = 0;
    if (!t)
        return 0;
    pthread_mutex_lock(&t->mu);
    int idx[ERRTALLY_MAX];
    for (int i = 0; i < t->n; i++) {
        /* insertion sort by count, descending; equal counts keep the order they were first seen */
        int j = i;
        while (j > 0 && t->e[idx[j - 1]].count < t->e[i].count) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    int k = max < t->n ? (max > 0 ? max : 0) : t->n;
    uint64_t left = t->other;
    for (int i = 0; i < t->n; i++) {
        if (i < k)
            out[i] = t->e[idx[i]];
        else
            left += t->e[idx[i]].count;
    }
    if (other)
        *other = left;
    if (total)
        *total = t->total;
    pthread_mutex_unlock(&t->mu);
    return k;
}

void errtally_label(const struct errtally_entry *e, char *buf, size_t len)
{
    if (e->stage[0])
        snprintf(buf, len, "%s: %s", e->stage, e->reason);
    else
        snprintf(buf, len, "%s", e->reason);
}
