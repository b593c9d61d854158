/* listfile: the --files-from source (source.h). Entries end with a newline (a CR before it is
 * dropped, for lists written on Windows), or with a NUL byte under -0; empty entries are
 * skipped. Each is read with a bounded buffer, so a file with no newline cannot grow memory:
 * an entry longer than SOURCE_LINE_MAX is refused. What an entry is:
 *   s3://BUCKET/KEY        an S3 object (the key as written, not %-decoded)
 *   http://..., https://...  an image URL (the scheme in any case)
 *   SCHEME://...           another scheme: a failed row (not something annotate reads)
 *   anything else          a local file (relative to the working directory; links followed)
 * The path column holds the entry as written, and --shard hashes it whole. */
#include "flow/source.h"
#include "common/url.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "flow/item.h"
#include "results/resume.h"
#include "select.h"
#include "sources/s3.h"

struct list {
    struct source base;
    const struct config *cfg;
    FILE *f;
    int own;              /* f is ours to close (not standard input) */
    int delim;
    int counting;
    char line[SOURCE_LINE_MAX + 2];
    uint64_t entries;     /* entries read, for messages */
    struct doneset *given; /* the entries given so far: a second one of a path is skipped */
    struct doneset *named; /* with --retry-failed: every entry of the list (source_finds) */
    int failed;           /* it could not be read on: why */
    char why[400];
    char error[300];      /* the current entry's, when it is a failed row */
};

/* Reads the next entry into buf (room for SOURCE_LINE_MAX + 1 bytes and a NUL). Returns its
 * length, -1 at the end, or -2 when longer than SOURCE_LINE_MAX (the rest of it is skipped).
 * *ioerr is set on a read error. */
static long read_entry(FILE *f, int delim, char *buf, int *ioerr)
{
    size_t n = 0;
    int c, too_long = 0;
    while ((c = getc_unlocked(f)) != EOF && c != delim) {
        if (n < SOURCE_LINE_MAX + 1)
            buf[n++] = (char)c;
        else
            too_long = 1;
    }
    *ioerr = ferror(f) != 0;
    if (c == EOF && n == 0 && !too_long)
        return -1;
    if (too_long || n > SOURCE_LINE_MAX)
        return -2;
    if (delim == '\n' && n && buf[n - 1] == '\r')
        n--;
    buf[n] = 0;
    return (long)n;
}

/* What the entry p[0..n) is: its kind, or -1 with why (a failed row). */
static int entry_kind(const char *p, size_t n, char *why, size_t wl)
{
    if (n >= 5 && !memcmp(p, "s3://", 5)) {
        struct s3_location loc;
        char err[300];
        if (s3_url_parse(p, &loc, err, sizeof err)) {
            snprintf(why, wl, "not an S3 object's URL: %.250s", err);
            return -1;
        }
        int object = loc.prefix[0] && loc.prefix[strlen(loc.prefix) - 1] != '/';
        s3_location_free(&loc);
        if (!object) {
            snprintf(why, wl, "not an S3 object's URL (s3://BUCKET/KEY, the key not ending in '/')");
            return -1;
        }
        return ITEM_S3;
    }
    if ((n > 7 && !strncasecmp(p, "http://", 7)) || (n > 8 && !strncasecmp(p, "https://", 8))) {
        char what[200];
        if (url_check(p, what, sizeof what)) { /* p[n] is NUL: read_entry ends it */
            snprintf(why, wl, "not an image URL annotate can fetch: it %s", what);
            return -1;
        }
        return ITEM_HTTP;
    }
    size_t k = 0;
    while (k < n && (isalnum((unsigned char)p[k]) || p[k] == '+' || p[k] == '-' || p[k] == '.'))
        k++;
    if (k > 0 && isalpha((unsigned char)p[0]) && n - k >= 3 && !memcmp(p + k, "://", 3)) {
        snprintf(why, wl, "a URL annotate cannot read (only s3:// and http(s):// URLs, and local paths)");
        return -1;
    }
    return ITEM_LISTED_FILE;
}

/* The next entry, checked. 1 with its length in *n, 0 at the end (or when it cannot go on:
 * l->failed). */
static int next_line(struct list *l, size_t *n)
{
    for (;;) {
        int ioerr;
        long got = read_entry(l->f, l->delim, l->line, &ioerr);
        if (ioerr) {
            snprintf(l->why, sizeof l->why, "cannot read %s: %s", l->base.name, strerror(errno));
            l->failed = 1;
            return 0;
        }
        if (got == -1)
            return 0;
        l->entries++;
        if (got == -2 || (l->delim == '\n' && memchr(l->line, 0, (size_t)got))) {
            snprintf(l->why, sizeof l->why, "%s: entry %llu %s", l->base.name, (unsigned long long)l->entries,
                     got == -2 ? "is longer than 65536 bytes (a list of NUL-separated names needs -0)"
                               : "holds a NUL byte (a list of NUL-separated names needs -0)");
            l->failed = 1;
            return 0;
        }
        if (got > 0) {
            *n = (size_t)got;
            return 1;
        }
    }
}

static int list_next(struct source *s, struct source_entry *out)
{
    struct list *l = (struct list *)s;
    size_t n;
    for (;;) {
        if (l->failed || !next_line(l, &n))
            return 0;
        int added = l->given ? doneset_add(l->given, l->line, n) : 1;
        if (added == 0)
            continue; /* named twice: one image, one row */
        if (added < 0) {
            snprintf(l->why, sizeof l->why, "out of memory remembering the entries of %s", l->base.name);
            l->failed = 1;
            return 0;
        }
        int kind = entry_kind(l->line, n, l->error, sizeof l->error);
        if (kind < 0 && l->counting)
            continue;
        memset(out, 0, sizeof *out);
        out->e.path = out->e.rel = l->line;
        out->e.path_len = out->e.rel_len = n;
        out->e.error = kind < 0 ? l->error : NULL;
        out->kind = kind < 0 ? ITEM_LISTED_FILE : kind;
        return kind < 0 ? 2 : 1;
    }
}

static int list_finds(struct source *s, const char *path, size_t len)
{
    struct list *l = (struct list *)s;
    return l->named && doneset_has(l->named, path, len) && selection_in_shard(l->cfg, path, len);
}

static int list_incomplete(const struct source *s, char *why, size_t len)
{
    const struct list *l = (const struct list *)s;
    if (l->failed)
        snprintf(why, len, "%s", l->why);
    return l->failed;
}

static uint64_t list_warnings(const struct source *s, const char **last)
{
    (void)s;
    *last = NULL;
    return 0;
}

static void list_close(struct source *s)
{
    struct list *l = (struct list *)s;
    if (l->own && l->f)
        fclose(l->f);
    doneset_free(l->given);
    doneset_free(l->named);
    free(l);
}

/* Opens the list's file (or takes standard input); *regular says whether it can be read twice.
 * 0, or -1 with err. */
static int open_file(struct list *l, const char *name, int *regular, char *err, size_t errlen)
{
    *regular = 0;
    if (!strcmp(name, "-")) {
        l->f = stdin;
        return 0;
    }
    if (!(l->f = fopen(name, "re"))) {
        snprintf(err, errlen, "--files-from %s: cannot read it: %s", name, strerror(errno));
        return -1;
    }
    l->own = 1;
    struct stat st;
    if (fstat(fileno(l->f), &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "--files-from %s: is a directory; give a file listing one image a line", name);
        return -1;
    }
    *regular = S_ISREG(st.st_mode);
    return 0;
}

/* --retry-failed: every entry of the list, read through now (then read again from the start). */
static int read_named(struct list *l, char *err, size_t errlen)
{
    size_t n;
    if (!(l->named = doneset_new()))
        goto oom;
    while (next_line(l, &n))
        if (doneset_add(l->named, l->line, n) < 0)
            goto oom;
    if (l->failed) {
        snprintf(err, errlen, "%s", l->why);
        return -1;
    }
    rewind(l->f);
    l->entries = 0;
    return 0;
oom:
    snprintf(err, errlen, "out of memory reading %s", l->base.name);
    return -1;
}

struct source *source_list(const struct config *cfg, struct sources *src, int counting, char *err, size_t errlen)
{
    (void)src;
    if (counting && !strcmp(cfg->files_from, "-"))
        return NULL; /* standard input is read once */
    struct list *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->cfg = cfg;
    l->delim = cfg->list_nul ? '\0' : '\n';
    l->counting = counting;
    l->base = (struct source){list_next, list_finds, list_incomplete, list_warnings, list_close, NULL,
                              !strcmp(cfg->files_from, "-") ? "standard input" : cfg->files_from, NULL};
    int regular, rc = open_file(l, cfg->files_from, &regular, err, errlen);
    if (rc == 0 && counting && !regular)
        rc = -1, err[0] = 0; /* a pipe is read once: by the run */
    if (rc == 0 && !counting && !(l->given = doneset_new()))
        rc = -1, snprintf(err, errlen, "out of memory");
    if (rc == 0 && !counting && cfg->retry_failed && !regular)
        rc = -1, snprintf(err, errlen, "--retry-failed keeps a failed row whose image the list no longer names, so "
                                       "it reads the list first: give --files-from a regular file");
    if (rc == 0 && !counting && cfg->retry_failed)
        rc = read_named(l, err, errlen);
    if (rc) {
        list_close(&l->base);
        return NULL;
    }
    return &l->base;
}

int source_list_check(const struct config *cfg, char *err, size_t errlen)
{
    struct list *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->delim = cfg->list_nul ? '\0' : '\n';
    l->base.name = cfg->files_from;
    int regular, s3 = 0, rc = open_file(l, cfg->files_from, &regular, err, errlen);
    size_t n;
    while (rc == 0 && regular && next_line(l, &n))
        s3 |= n >= 5 && !memcmp(l->line, "s3://", 5);
    if (l->failed) {
        snprintf(err, errlen, "%s", l->why);
        rc = -1;
    }
    list_close(&l->base);
    return rc ? -1 : s3;
}
