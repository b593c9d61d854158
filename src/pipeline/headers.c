/* headers: see headers.h. */
#include "pipeline/headers.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/secrets.h"
#include "pipeline/pipeline.h"

struct stage_headers {
    struct curl_slist *list; /* as sent now */
    unsigned gen;            /* bumped each time a 401 made the list be rebuilt */
    struct curl_slist **old; /* lists replaced since; freed with the pipeline */
    int n_old;
};

/* Guards every stage's struct stage_headers, which a 401 may change while requests are made. */
static pthread_mutex_t header_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- names ---- */

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

int header_named(char *const *lines, int n, const char *name)
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

/* ---- the three sources ---- */

int headers_parse(const cJSON *kv, char ***out, int *n_out, char *what, size_t wl)
{
    if (!cJSON_IsObject(kv))
        return snprintf(what, wl, "\"headers\" must be an object of strings"), -1;
    int n = cJSON_GetArraySize(kv);
    char **tmpl = calloc((size_t)n + 1, sizeof *tmpl);
    if (!tmpl)
        return HEADERS_OOM;
    *out = tmpl;
    *n_out = 0;
    for (const cJSON *h = kv->child; h; h = h->next) {
        if (!cJSON_IsString(h) || !valid_header_name(h->string, strlen(h->string)) || strpbrk(h->valuestring, "\r\n"))
            return snprintf(what, wl, "header \"%s\" must be a string without line breaks, named without ':' or spaces",
                            h->string), -1;
        for (int k = 0; k < *n_out; k++)
            if (same_header_name(tmpl[k], h->string))
                return snprintf(what, wl, "header \"%s\" is set twice (header names ignore case)", h->string), -1;
        size_t l = strlen(h->string) + strlen(h->valuestring) + 3;
        char *line = malloc(l);
        if (!line)
            return HEADERS_OOM;
        snprintf(line, l, "%s: %s", h->string, h->valuestring);
        tmpl[(*n_out)++] = line;
    }
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
    if (header_named(p->cli_headers, p->n_cli_headers, line))
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

/* ---- wiping ---- */

/* Frees a buffer that may hold a token, wiping it first. */
static void wipe_free(char *p, size_t len)
{
    if (p)
        memset(p, 0, len);
    free(p);
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

/* ---- values: ${VAR} and ${file:PATH} ---- */

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

/* Who uses a ${file:PATH}, for its messages: "FILE: stage 2 (m)" and the header's name. */
struct file_ref {
    const char *path, *where, *hname;
};

/* Opens the file of ${file:PATH}, a regular file of at most SECRET_FILE_MAX bytes, without
 * blocking on a FIFO or taking a terminal. Returns the descriptor and its size, or -1 with err. */
static int open_secret_file(const struct file_ref *f, size_t *size, char *err, size_t errlen)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        snprintf(err, errlen, "%s: header \"%s\" uses ${file:%s}, which cannot be read: %s", f->where, f->hname, f->path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > SECRET_FILE_MAX) {
        close(fd);
        snprintf(err, errlen, "%s: header \"%s\" uses ${file:%s}, which is %s", f->where, f->hname, f->path,
                 S_ISDIR(st.st_mode) ? "a directory" : !S_ISREG(st.st_mode) ? "not a regular file" : "larger than 64 KiB");
        return -1;
    }
    *size = (size_t)st.st_size;
    return fd;
}

/* Reads up to room bytes of fd into v. Returns the bytes read, or -1 with errno. */
static ssize_t read_upto(int fd, char *v, size_t room)
{
    size_t got = 0;
    while (got < room) {
        ssize_t r = read(fd, v + got, room - got);
        if (r == 0)
            break;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            memset(v, 0, got);
            errno = e;
            return -1;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Why got bytes read at v, from a file of size bytes, cannot be a header value (their length
 * without the trailing newline in *n), or NULL. */
static const char *refused_value(const char *v, size_t got, size_t size, size_t *n)
{
    *n = got;
    if (*n && v[*n - 1] == '\n')
        (*n)--;
    if (*n && v[*n - 1] == '\r')
        (*n)--;
    return got > size ? "growing while it is read"
           : memchr(v, '\n', *n) || memchr(v, '\r', *n) ? "holding a line break (a header is one line)"
           : memchr(v, 0, *n) ? "holding a NUL byte"
           : NULL;
}

/* ${file:PATH}: the file's content with one trailing newline (LF or CR LF) removed, appended to
 * b. Read with read(2) straight into b's memory, so that no stdio buffer keeps a copy. Only a
 * regular file: a FIFO or a terminal would block the start of the run. Errors name the path,
 * never the content. */
static int put_file(struct secret *b, const struct file_ref *f, char *err, size_t errlen)
{
    size_t size;
    int fd = open_secret_file(f, &size, err, errlen);
    if (fd < 0)
        return -1;
    /* One byte more than the file's size: a file that grew since fstat shows as too large. */
    if (secret_reserve(b, size + 1)) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", f->where);
        return -1;
    }
    char *v = b->s + b->len;
    ssize_t got = read_upto(fd, v, size + 1);
    int e = errno;
    close(fd);
    if (got < 0) {
        snprintf(err, errlen, "%s: header \"%s\" uses ${file:%s}, which cannot be read: %s", f->where, f->hname, f->path,
                 strerror(e));
        return -1;
    }
    size_t n;
    const char *why = refused_value(v, (size_t)got, size, &n);
    if (why) {
        memset(v, 0, (size_t)got);
        b->s[b->len] = 0;
        snprintf(err, errlen, "%s: header \"%s\" uses ${file:%s}, which is refused for %s", f->where, f->hname, f->path,
                 why);
        return -1;
    }
    memset(v + n, 0, (size_t)got - n);
    secrets_add(v, n); /* a rotated token's new value too: every read registers what it read */
    b->len += n;
    b->s[b->len] = 0;
    return 0;
}

/* ${NAME} (nl bytes at name): the environment's value appended to b. 0; -1 with err; or
 * HEADERS_OOM. */
static int put_env(struct secret *b, const char *name, size_t nl, const char *where, const char *hname, char *err,
                   size_t errlen)
{
    char var[128];
    if (nl == 0 || nl >= sizeof var)
        return snprintf(err, errlen, "%s: header \"%s\" has a bad ${...} reference", where, hname), -1;
    memcpy(var, name, nl);
    var[nl] = 0;
    const char *v = getenv(var);
    if (!v)
        return snprintf(err, errlen,
                        "%s: header \"%s\" uses ${%s}, which is not set in the environment (export it and run again)",
                        where, hname, var), -1;
    if (strpbrk(v, "\r\n"))
        return snprintf(err, errlen, "%s: header \"%s\" uses ${%s}, whose value holds a line break (strip it and run again)",
                        where, hname, var), -1;
    secrets_add(v, strlen(v));
    return secret_put(b, v, strlen(v)) ? HEADERS_OOM : 0;
}

/* ${file:PATH} (the nl bytes between "${" and "}" at ref) appended to b. 0, or -1 with err. */
static int put_file_ref(struct secret *b, const char *ref, size_t nl, const char *where, const char *hname, char *err,
                        size_t errlen)
{
    char path[4096];
    if (nl == 5 || nl - 5 >= sizeof path)
        return snprintf(err, errlen, "%s: header \"%s\" has a bad ${file:PATH} reference (%s)", where, hname,
                        nl == 5 ? "no path" : "the path is too long"), -1;
    memcpy(path, ref + 5, nl - 5);
    path[nl - 5] = 0;
    struct file_ref f = {path, where, hname};
    return put_file(b, &f, err, errlen);
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
    int rc = secret_reserve(&b, strlen(tmpl)) ? HEADERS_OOM : 0;
    for (const char *c = tmpl; *c && !rc;) {
        const char *end;
        if (!(c[0] == '$' && c[1] == '{' && (end = strchr(c + 2, '}')))) {
            rc = secret_put(&b, c++, 1) ? HEADERS_OOM : 0;
            continue;
        }
        size_t nl = (size_t)(end - c - 2);
        rc = nl >= 5 && !strncmp(c + 2, "file:", 5) ? put_file_ref(&b, c + 2, nl, where, hname, err, errlen)
                                                    : put_env(&b, c + 2, nl, where, hname, err, errlen);
        c = end + 1;
    }
    if (!rc) {
        secrets_add_credential_header(b.s); /* a literal token in an Authorization header too */
        return b.s;
    }
    if (rc == HEADERS_OOM)
        snprintf(err, errlen, "%s: out of memory", where);
    wipe_free(b.s, b.cap);
    return NULL;
}

/* n templates expanded into *out (n lines and a NULL). 0, or -1 with err (*out then NULL). */
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

int header_sources_expand(const struct pipeline *p, const char *defaults_where, struct header_sources *hs,
                          char *err, size_t errlen)
{
    *hs = (struct header_sources){NULL, NULL, p->n_default_headers, p->n_cli_headers};
    if (expand_all(p->default_headers, p->n_default_headers, defaults_where, &hs->defaults, err, errlen))
        return -1;
    if (expand_all(p->cli_headers, p->n_cli_headers, "--header", &hs->cli, err, errlen)) {
        header_sources_wipe(hs);
        return -1;
    }
    return 0;
}

void header_sources_wipe(struct header_sources *hs)
{
    wipe_lines(hs->defaults, hs->n_defaults);
    wipe_lines(hs->cli, hs->n_cli);
    hs->defaults = hs->cli = NULL;
}

/* ---- a stage's list ---- */

static int append(struct curl_slist **l, const char *line)
{
    struct curl_slist *n = curl_slist_append(*l, line);
    if (!n)
        return -1;
    *l = n;
    return 0;
}

/* Appends the lines of hs (and the fixed ones) that a header of own, or of an earlier source,
 * does not replace. json: the body is JSON, so a Content-Type from anywhere is its type. */
static int append_shared(struct curl_slist **l, char *const *own, int n_own, const struct header_sources *hs, int json)
{
    int rc = 0;
    for (int h = 0; h < hs->n_defaults && !rc; h++)
        if (!header_named(own, n_own, hs->defaults[h]) && (json || !same_header_name(hs->defaults[h], "Content-Type")))
            rc = append(l, hs->defaults[h]);
    for (int h = 0; h < hs->n_cli && !rc; h++)
        if (!header_named(own, n_own, hs->cli[h]) && !header_named(hs->defaults, hs->n_defaults, hs->cli[h]) &&
            (json || !same_header_name(hs->cli[h], "Content-Type")))
            rc = append(l, hs->cli[h]);
    /* Fixed headers: a JSON body's type, and no 'Expect: 100-continue' round trip for large
     * bodies. */
    static const char *const fixed[] = {"Content-Type: application/json", "Expect:"};
    for (int f = json ? 0 : 1; f < 2 && !rc; f++)
        if (!header_named(own, n_own, fixed[f]) && !header_named(hs->defaults, hs->n_defaults, fixed[f]) &&
            !header_named(hs->cli, hs->n_cli, fixed[f]))
            rc = append(l, fixed[f]);
    return rc;
}

/* One stage's header list: its own lines, then the defaults' and --header's of other names,
 * then our fixed ones unless a user header of that name replaces them. */
static int build_list(const struct stage *s, const struct header_sources *hs, const char *where,
                      struct curl_slist **out, char *err, size_t errlen)
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
    if (!rc)
        rc = append_shared(&l, own, s->n_headers, hs, json);
    wipe_lines(own, s->n_headers);
    if (rc) {
        wipe_slist(l);
        return snprintf(err, errlen, "%s: out of memory", where), -1;
    }
    *out = l;
    return 0;
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

/* Stage s's live headers, made empty the first time. NULL when out of memory. */
static struct stage_headers *live_of(struct stage *s)
{
    if (!s->live)
        s->live = calloc(1, sizeof *s->live);
    return s->live;
}

/* Puts l in place of the stage's list, wiping the one it had. */
static void set_list(struct stage_headers *h, struct curl_slist *l)
{
    wipe_slist(h->list);
    h->list = l;
}

int headers_resolve_stage(const struct pipeline *p, struct stage *s, const struct header_sources *hs,
                          const char *where, char *err, size_t errlen)
{
    struct stage_headers *h = live_of(s);
    if (!h)
        return snprintf(err, errlen, "%s: out of memory", where), -1;
    set_list(h, NULL);
    s->file_headers = uses_files(p, s);
    struct curl_slist *l;
    if (build_list(s, hs, where, &l, err, errlen))
        return -1;
    set_list(h, l);
    return 0;
}

int headers_adopt(const struct pipeline *p, struct stage *s, const char *const *lines, int n)
{
    struct stage_headers *h = live_of(s);
    if (!h)
        return -1;
    s->file_headers = uses_files(p, s);
    set_list(h, NULL);
    for (int i = 0; i < n; i++) {
        secrets_add_credential_header(lines[i]);
        if (append(&h->list, lines[i]))
            return -1;
    }
    return 0;
}

const struct curl_slist *pipeline_headers(const struct stage *s, unsigned *gen)
{
    pthread_mutex_lock(&header_mu);
    const struct curl_slist *l = s->live ? s->live->list : NULL;
    if (gen)
        *gen = s->live ? s->live->gen : 0;
    pthread_mutex_unlock(&header_mu);
    return l;
}

/* ---- the re-read on a 401 ---- */

static int same_lines(const struct curl_slist *a, const struct curl_slist *b)
{
    for (; a && b; a = a->next, b = b->next)
        if (strcmp(a->data, b->data))
            return 0;
    return !a && !b;
}

/* Makes l stage h's list, keeping the one it replaces until pipeline_free (a request in flight
 * may still hold it). 0, or -1 when out of memory (nothing changed). */
static int replace_list(struct stage_headers *h, struct curl_slist *l)
{
    struct curl_slist **old = realloc(h->old, (size_t)(h->n_old + 1) * sizeof *old);
    if (!old)
        return -1;
    h->old = old;
    old[h->n_old++] = h->list;
    h->list = l;
    h->gen++;
    return 0;
}

/* Builds stage s's list again, reading the files again; replaces h's when it differs. Returns 1
 * when it did. Under header_mu. */
static int reread(const struct pipeline *p, const struct stage *s, struct stage_headers *h)
{
    struct header_sources hs;
    struct curl_slist *l = NULL;
    char err[512];
    int rc = 0;
    if (header_sources_expand(p, "defaults", &hs, err, sizeof err) == 0) {
        if (build_list(s, &hs, s->name, &l, err, sizeof err) == 0 && l && !same_lines(l, h->list) &&
            replace_list(h, l) == 0) {
            l = NULL;
            rc = 1;
        }
        header_sources_wipe(&hs);
    }
    wipe_slist(l);
    return rc;
}

int pipeline_refresh_headers(const struct pipeline *p, int i, unsigned gen)
{
    const struct stage *s = &p->stages[i];
    struct stage_headers *h = s->live; /* what a run may change of a const pipeline */
    if (!s->file_headers || !h)
        return 0;
    pthread_mutex_lock(&header_mu);
    int rc = h->gen != gen ? 1 /* another request has re-read them already */ : reread(p, s, h);
    pthread_mutex_unlock(&header_mu);
    return rc;
}

void headers_free(struct pipeline *p)
{
    for (int i = 0; i < p->n; i++) {
        struct stage *s = &p->stages[i];
        wipe_lines(s->header_tmpl, s->n_headers);
        if (s->live) {
            wipe_slist(s->live->list);
            for (int h = 0; h < s->live->n_old; h++)
                wipe_slist(s->live->old[h]);
            free(s->live->old);
            free(s->live);
        }
    }
    wipe_lines(p->default_headers, p->n_default_headers);
    wipe_lines(p->cli_headers, p->n_cli_headers);
}
