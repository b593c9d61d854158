/* resume: see resume.h. The file is mapped and fed to libcsv a line at a time: a record can only
 * end at a newline, so after each line we know whether the bytes so far form whole rows. What
 * follows the last whole row is a torn write, and is cut off. */
#include "results/resume.h"
#include "common/json.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>


/* ---- the done-set: open addressing over (hash, offset into an arena) ----
 * Out of memory, doneset_add returns -1 and the set is as it was. Each entry carries a value
 * (doneset_put), beside its length in the arena. */

#define ENTRY_HEAD 12 /* u32 length, u64 value */

struct doneset {
    uint64_t *hashes;   /* 0 = empty slot */
    uint64_t *offs;     /* offset of the entry in the arena */
    size_t cap, n;
    char *arena;        /* entries: u32 length, u64 value, then the bytes */
    size_t arena_len, arena_cap;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return h ? h : 1;
}

struct doneset *doneset_new(void)
{
    struct doneset *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->cap = 1024;
    d->hashes = calloc(d->cap, sizeof *d->hashes);
    d->offs = calloc(d->cap, sizeof *d->offs);
    if (!d->hashes || !d->offs) {
        doneset_free(d);
        return NULL;
    }
    return d;
}

static int entry_eq(const struct doneset *d, uint64_t off, const char *path, size_t len)
{
    uint32_t l;
    memcpy(&l, d->arena + off, 4);
    return l == len && memcmp(d->arena + off + ENTRY_HEAD, path, len) == 0;
}

static int grow_table(struct doneset *d)
{
    size_t cap = d->cap * 2;
    uint64_t *h = calloc(cap, sizeof *h), *o = calloc(cap, sizeof *o);
    if (!h || !o) {
        free(h);
        free(o);
        return -1;
    }
    for (size_t i = 0; i < d->cap; i++) {
        if (!d->hashes[i])
            continue;
        size_t j = d->hashes[i] & (cap - 1);
        while (h[j])
            j = (j + 1) & (cap - 1);
        h[j] = d->hashes[i];
        o[j] = d->offs[i];
    }
    free(d->hashes);
    free(d->offs);
    d->hashes = h;
    d->offs = o;
    d->cap = cap;
    return 0;
}

/* The slot of path, or of the empty slot where it would go; h gets its hash. */
static size_t find_slot(const struct doneset *d, const char *path, size_t len, uint64_t *h)
{
    *h = hash_bytes(path, len);
    size_t j = *h & (d->cap - 1);
    while (d->hashes[j] && !(d->hashes[j] == *h && entry_eq(d, d->offs[j], path, len)))
        j = (j + 1) & (d->cap - 1);
    return j;
}

/* Adds path with value; when it is there already, sets its value if overwrite. 1 added, 0 there,
 * -1 out of memory. */
static int insert(struct doneset *d, const char *path, size_t len, uint64_t value, int overwrite)
{
    if (len > UINT32_MAX || ((d->n + 1) * 4 > d->cap * 3 && grow_table(d)))
        return -1;
    uint64_t h;
    size_t j = find_slot(d, path, len, &h);
    if (d->hashes[j]) {
        if (overwrite)
            memcpy(d->arena + d->offs[j] + 4, &value, 8);
        return 0;
    }
    if (d->arena_len + len + ENTRY_HEAD > d->arena_cap) {
        size_t c = d->arena_cap ? d->arena_cap : 1 << 16;
        while (d->arena_len + len + ENTRY_HEAD > c)
            c *= 2;
        char *a = realloc(d->arena, c);
        if (!a)
            return -1;
        d->arena = a;
        d->arena_cap = c;
    }
    uint32_t l = (uint32_t)len;
    memcpy(d->arena + d->arena_len, &l, 4);
    memcpy(d->arena + d->arena_len + 4, &value, 8);
    memcpy(d->arena + d->arena_len + ENTRY_HEAD, path, len);
    d->hashes[j] = h;
    d->offs[j] = d->arena_len;
    d->arena_len += len + ENTRY_HEAD;
    d->n++;
    return 1;
}

int doneset_put(struct doneset *d, const char *path, size_t len, uint64_t value)
{
    return insert(d, path, len, value, 1);
}

int doneset_add(struct doneset *d, const char *path, size_t len)
{
    return insert(d, path, len, 0, 0);
}

int doneset_get(const struct doneset *d, const char *path, size_t len, uint64_t *value)
{
    if (!d || !d->n)
        return 0;
    uint64_t h;
    size_t j = find_slot(d, path, len, &h);
    if (!d->hashes[j])
        return 0;
    if (value)
        memcpy(value, d->arena + d->offs[j] + 4, 8);
    return 1;
}

int doneset_has(const struct doneset *d, const char *path, size_t len)
{
    return doneset_get(d, path, len, NULL);
}

/* 1 when path[0, l), which begins with the folder prefix (ending in '/'), goes on with an empty or
 * "." part: the folder spelled otherwise (DIR//x, DIR/./x). */
static int folder_respelled(const char *path, size_t l, size_t plen)
{
    const char *r = path + plen;
    size_t rl = l - plen;
    return (rl && r[0] == '/') || (rl >= 2 && r[0] == '.' && r[1] == '/');
}

int doneset_outside(const struct doneset *d, const char *prefix, size_t plen, int folder, char *example,
                    size_t exlen)
{
    for (size_t off = 0; d && off < d->arena_len;) {
        uint32_t l;
        memcpy(&l, d->arena + off, 4);
        const char *path = d->arena + off + ENTRY_HEAD;
        if (l < plen || memcmp(path, prefix, plen) != 0 || (folder && folder_respelled(path, l, plen))) {
            snprintf(example, exlen, "%.*s", (int)(l > 200 ? 200 : l), path);
            return 1;
        }
        off += ENTRY_HEAD + (size_t)l;
    }
    return 0;
}

uint64_t doneset_size(const struct doneset *d)
{
    return d ? d->n : 0;
}

void doneset_free(struct doneset *d)
{
    if (!d)
        return;
    free(d->hashes);
    free(d->offs);
    free(d->arena);
    free(d);
}

/* ---- reading rows back ---- */

struct parse {
    char **want;             /* expected column names */
    int n_want;
    int field;               /* index of the current field in the record */
    int64_t records;         /* complete records, header included */
    char *path;              /* the current record's path */
    size_t path_len, path_cap;
    int status;              /* 1 ok, 2 failed, 0 other */
    char status_text[48];    /* the current record's status, printable, for a message */
    int64_t rec_line;        /* the line the current record begins on (the header's is 1) */
    int bad;                 /* set with msg on an error */
    int oom;                 /* out of memory: csv_rows returns -2 */
    char msg[320];
    csv_row_fn fn;
    void *ud;
    size_t rec_start, rec_end;
};

/* Up to outlen - 4 bytes of s, each byte that is not printable ASCII as '?', "..." when cut. */
static void printable(const char *s, size_t len, char *out, size_t outlen)
{
    size_t n = len < outlen - 4 ? len : outlen - 4, k;
    for (k = 0; k < n; k++)
        out[k] = s[k] >= 0x20 && s[k] < 0x7f ? s[k] : '?';
    snprintf(out + k, outlen - k, "%s", n < len ? "..." : "");
}

static void on_field(void *s, size_t len, void *data)
{
    struct parse *ps = data;
    int f = ps->field++;
    if (ps->records == 0) {
        if (f >= ps->n_want || strlen(ps->want[f]) != len || memcmp(ps->want[f], s, len)) {
            if (!ps->bad)
                snprintf(ps->msg, sizeof ps->msg, "its header is not this pipeline's (column %d is \"%.*s\", "
                         "expected \"%s\")", f + 1, (int)(len > 40 ? 40 : len), (const char *)s,
                         f < ps->n_want ? ps->want[f] : "(none)");
            ps->bad = 1;
        }
        return;
    }
    if (f == 0) {
        if (len + 1 > ps->path_cap) {
            char *np = realloc(ps->path, len + 64);
            if (!np) {
                ps->oom = ps->bad = 1;
                snprintf(ps->msg, sizeof ps->msg, "out of memory");
                return;
            }
            ps->path = np;
            ps->path_cap = len + 64;
        }
        memcpy(ps->path, s, len);
        ps->path_len = len;
    } else if (f == 1) {
        ps->status = len == 2 && !memcmp(s, "ok", 2) ? 1 : len == 6 && !memcmp(s, "failed", 6) ? 2 : 0;
        if (!ps->status)
            printable(s, len, ps->status_text, sizeof ps->status_text);
    }
}

static void on_record(int c, void *data)
{
    struct parse *ps = data;
    if (c == '\r' && !ps->bad) {
        /* The rows this tool writes end with a newline alone (a carriage return in a cell is
         * quoted). A record that a bare carriage return ends may be followed by another on the
         * same line, and rows are told apart by lines (csv_rows). */
        snprintf(ps->msg, sizeof ps->msg, "line %lld is not a row this tool wrote: a carriage return outside "
                 "quotes ends it (rows end with a newline alone; was the file saved with Windows line ends?)",
                 (long long)ps->rec_line);
        ps->bad = 1;
    }
    if (ps->records == 0) {
        if (ps->field != ps->n_want && !ps->bad) {
            snprintf(ps->msg, sizeof ps->msg, "its header has %d columns; this pipeline's has %d", ps->field,
                     ps->n_want);
            ps->bad = 1;
        }
    } else if (!ps->bad) {
        if (ps->field != ps->n_want) {
            snprintf(ps->msg, sizeof ps->msg, "line %lld is not a row this tool wrote: it has %d field%s, and this "
                     "pipeline's rows have %d (path, status, the stage columns, error, attempts, elapsed_ms)",
                     (long long)ps->rec_line, ps->field, ps->field == 1 ? "" : "s", ps->n_want);
            ps->bad = 1;
        } else if (ps->status == 0) {
            snprintf(ps->msg, sizeof ps->msg, "line %lld is not a row this tool wrote: its status (field 2) is "
                     "\"%s\", and a status is \"ok\" or \"failed\" (lower case)", (long long)ps->rec_line,
                     ps->status_text);
            ps->bad = 1;
        } else {
            ps->fn(ps->ud, ps->path, ps->path_len, ps->status == 1, ps->rec_start, ps->rec_end);
        }
    }
    ps->records++;
    ps->field = 0;
}

static int no_space(unsigned char c)
{
    (void)c;
    return 0;
}

/* Splits the header line into column names. -1 when out of memory (nothing left allocated). */
static int split_header(const char *header, char ***want)
{
    int n = 1;
    for (const char *c = header; *c; c++)
        n += *c == ',';
    if (!(*want = calloc((size_t)n, sizeof **want)))
        return -1;
    int i = 0;
    const char *start = header;
    for (const char *c = header;; c++) {
        if (*c == ',' || *c == '\n' || *c == 0) {
            if (!((*want)[i++] = strndup(start, (size_t)(c - start)))) {
                while (i > 0)
                    free((*want)[--i]);
                free(*want);
                *want = NULL;
                return -1;
            }
            start = c + 1;
            if (*c != ',')
                break;
        }
    }
    return i;
}

int64_t csv_rows(const char *text, size_t len, const char *header, csv_row_fn fn, void *ud,
                 size_t *complete_len, char *err, size_t errlen)
{
    struct parse ps = {0};
    if ((ps.n_want = split_header(header, &ps.want)) < 0) {
        snprintf(err, errlen, "out of memory");
        return -2;
    }
    ps.fn = fn;
    ps.ud = ud;
    struct csv_parser cp;
    csv_init(&cp, CSV_STRICT);
    csv_set_space_func(&cp, no_space); /* fields are read back byte for byte, blanks included */
    size_t pos = 0, done = 0;
    int64_t rc = 0, line = 0;
    ps.rec_line = 1;
    while (pos < len && !ps.bad) {
        line++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;
        /* A record can only end at a newline: tell the callback where this one would end. */
        ps.rec_start = done;
        ps.rec_end = end;
        int64_t before = ps.records;
        if (csv_parse(&cp, text + pos, end - pos, on_field, on_record, &ps) != end - pos) {
            if (csv_error(&cp) == CSV_ENOMEM) { /* never a torn row: nothing may be cut off */
                ps.oom = ps.bad = 1;
                snprintf(ps.msg, sizeof ps.msg, "out of memory");
                break;
            }
            /* A malformed quote: in the last line it is a torn write, earlier it is damage. */
            if (!nl)
                break;
            snprintf(ps.msg, sizeof ps.msg, "line %lld is not valid CSV (%s)", (long long)ps.rec_line,
                     csv_strerror(csv_error(&cp)));
            ps.bad = 1;
            break;
        }
        pos = end;
        if (ps.records != before && nl) {
            done = end;
            ps.rec_line = line + 1;
        }
    }
    csv_free(&cp);
    if (ps.bad) {
        snprintf(err, errlen, "%s", ps.msg);
        rc = ps.oom ? -2 : -1;
    } else {
        *complete_len = done;
        rc = ps.records;
    }
    for (int i = 0; i < ps.n_want; i++)
        free(ps.want[i]);
    free(ps.want);
    free(ps.path);
    return rc;
}

/* ---- JSON Lines ---- */

enum results_format results_format_of(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    if ((n >= 6 && !strcasecmp(path + n - 6, ".jsonl")) || (n >= 7 && !strcasecmp(path + n - 7, ".ndjson")))
        return RESULTS_JSONL;
    return RESULTS_CSV;
}

const char *results_format_name(enum results_format f)
{
    return f == RESULTS_JSONL ? "jsonl" : "csv";
}

/* One line's members, checked against the columns as they come. */
struct jrow {
    char **want;
    int n_want, k;
    const char *path, *status; /* the spans of their values */
    size_t path_len, status_len;
    const char *why;
    char whybuf[160];
};

static int is_number_text(const char *v, size_t n)
{
    return n > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'));
}

static int jrow_member(void *arg, const char *key, size_t keylen, const char *v, size_t vlen)
{
    struct jrow *r = arg;
    int k = r->k++;
    if (k >= r->n_want || strlen(r->want[k]) != keylen || memcmp(r->want[k], key, keylen)) {
        r->why = "its keys are not this pipeline's columns";
        return -1;
    }
    int last = k == r->n_want - 1, attempts = k == r->n_want - 2, error = k == r->n_want - 3;
    if (k == 0) {
        r->path = v;
        r->path_len = vlen;
    } else if (k == 1) {
        r->status = v;
        r->status_len = vlen;
    } else if ((last || attempts) && !is_number_text(v, vlen)) {
        r->why = "attempts and elapsed_ms must be numbers";
        return -1;
    } else if (error && v[0] != '"' && !(vlen == 4 && !memcmp(v, "null", 4))) {
        r->why = "error must be a string or null";
        return -1;
    }
    return 0;
}

/* The row's path (decoded into *buf) and status, or -1 with why. */
static int jsonl_row(const char *line, size_t len, struct jrow *r, char **buf, size_t *cap, size_t *plen, int *ok)
{
    char err[160];
    r->k = 0;
    r->why = NULL;
    r->path = r->status = NULL;
    if (json_check(line, len, err, sizeof err)) {
        r->why = "it is not JSON";
        return -1;
    }
    if (json_members(line, len, jrow_member, r) < 0 || r->k != r->n_want) {
        if (!r->why)
            r->why = r->k < r->n_want && line[0] == '{' ? "it lacks columns of this pipeline" : "it is not a JSON object";
        return -1;
    }
    if (r->path_len + 1 > *cap) {
        char *nb = realloc(*buf, r->path_len + 64);
        if (!nb)
            return -2;
        *buf = nb;
        *cap = r->path_len + 64;
    }
    long pl = json_string_bytes(r->path, r->path_len, *buf);
    *ok = r->status_len == 4 && !memcmp(r->status, "\"ok\"", 4);
    if (pl <= 0 || memchr(*buf, '\0', (size_t)pl)) {
        r->why = "its path is not a non-empty string without NUL bytes";
        return -1;
    }
    if (!(*ok || (r->status_len == 8 && !memcmp(r->status, "\"failed\"", 8)))) {
        char shown[48];
        printable(r->status, r->status_len, shown, sizeof shown);
        snprintf(r->whybuf, sizeof r->whybuf, "its status is %s, and a status is \"ok\" or \"failed\" (lower case)",
                 shown);
        r->why = r->whybuf;
        return -1;
    }
    *plen = (size_t)pl;
    return 0;
}

static int64_t jsonl_rows(const char *text, size_t len, const char *header, csv_row_fn fn, void *ud,
                          size_t *complete_len, char *err, size_t errlen)
{
    struct jrow r = {0};
    if ((r.n_want = split_header(header, &r.want)) < 0) {
        snprintf(err, errlen, "out of memory");
        return -2;
    }
    char *path = NULL;
    size_t cap = 0, pos = 0;
    int64_t rows = 0, rc = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        if (!nl)
            break; /* the torn last line of a crash */
        size_t end = (size_t)(nl - text) + 1, plen;
        int ok, got = jsonl_row(text + pos, end - 1 - pos, &r, &path, &cap, &plen, &ok);
        if (got == -2) {
            snprintf(err, errlen, "out of memory");
            rc = -2;
            break;
        }
        if (got < 0) {
            snprintf(err, errlen, "line %lld is not a row this tool wrote: %s", (long long)rows + 1, r.why);
            rc = -1;
            break;
        }
        fn(ud, path, plen, ok, pos, end);
        rows++;
        pos = end;
    }
    if (rc == 0) {
        *complete_len = pos;
        rc = rows + 1;
    }
    for (int i = 0; i < r.n_want; i++)
        free(r.want[i]);
    free(r.want);
    free(path);
    return rc;
}

/* A NUL byte is in no row this tool writes: NULs are a block the disk never wrote (a power cut
 * leaves zeros where the file system had given the file room). In the last line, which has no
 * newline, they are part of a torn write, cut off as one is; in a line before it they are damage,
 * and the rows they replaced are lost. -1 with err then, else 0. */
static int zero_block(const char *text, size_t len, char *err, size_t errlen)
{
    const char *last_nl = len ? memrchr(text, '\n', len) : NULL;
    const char *z = last_nl ? memchr(text, '\0', (size_t)(last_nl - text)) : NULL;
    if (!z)
        return 0;
    size_t at = (size_t)(z - text), n = 0;
    while (at + n < len && !text[at + n])
        n++;
    long long line = 1;
    for (const char *c = text; (c = memchr(c, '\n', (size_t)(z - c))); c++)
        line++;
    snprintf(err, errlen, "line %lld holds %zu zero byte%s from byte %zu: a block the disk never wrote (as after a "
             "power cut), so the rows there are lost; remove the zero bytes (tr -d '\\000') and the line they cut "
             "short, if any", line, n, n == 1 ? "" : "s", at);
    return -1;
}

int64_t results_rows(enum results_format f, const char *text, size_t len, const char *header, csv_row_fn fn,
                     void *ud, size_t *complete_len, char *err, size_t errlen)
{
    if (zero_block(text, len, err, errlen))
        return -1;
    if (f == RESULTS_JSONL)
        return jsonl_rows(text, len, header, fn, ud, complete_len, err, errlen);
    return csv_rows(text, len, header, fn, ud, complete_len, err, errlen);
}

struct columns {
    char *buf;
    size_t len, cap;
    int bad;
};

static int add_column(void *arg, const char *key, size_t keylen, const char *v, size_t vlen)
{
    (void)v;
    (void)vlen;
    struct columns *c = arg;
    for (size_t i = 0; i < keylen; i++) {
        char ch = key[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-' || ch == '.'))
            return -1;
    }
    if (keylen == 0)
        return -1;
    if (c->len + keylen + 3 > c->cap) { /* ',', the name, then '\n' and NUL at the end */
        size_t cap = 2 * (c->len + keylen + 3);
        char *nb = realloc(c->buf, cap);
        if (!nb)
            return -1;
        c->buf = nb;
        c->cap = cap;
    }
    if (c->len)
        c->buf[c->len++] = ',';
    memcpy(c->buf + c->len, key, keylen);
    c->len += keylen;
    return 0;
}

char *jsonl_columns(const char *line, size_t len)
{
    if (len && line[len - 1] == '\n')
        len--;
    struct columns c = {0};
    if (json_check(line, len, NULL, 0) || json_members(line, len, add_column, &c) <= 0) {
        free(c.buf);
        return NULL;
    }
    c.buf[c.len++] = '\n';
    c.buf[c.len] = 0;
    return c.buf;
}

size_t results_plain_folder(const char *p, size_t n, char *out)
{
    size_t o = 0;
    if (n && p[0] == '/')
        out[o++] = '/';
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && p[j] != '/')
            j++;
        if (j > i && !(j - i == 1 && p[i] == '.')) {
            if (o && out[o - 1] != '/')
                out[o++] = '/';
            memcpy(out + o, p + i, j - i);
            o += j - i;
        }
        i = j + 1;
    }
    return o;
}

int resume_path_exists(void *ud, const char *path, size_t len)
{
    (void)ud;
    int folder = len > 1 && path[len - 1] == '/';
    if (folder)
        len--; /* lstat("dir/") would follow a link named dir */
    if (len == 0 || memchr(path, '\0', len))
        return 0;
    char *p = strndup(path, len);
    struct stat st;
    int ok = p && lstat(p, &st) == 0 && (folder ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
    free(p);
    return ok;
}

struct collect {
    struct doneset *set;
    struct resume_info *info;
    const struct resume_redo *redo;
    int oom;
};

static void collect_row(void *ud, const char *path, size_t len, int ok, size_t start, size_t end)
{
    (void)start;
    (void)end;
    struct collect *c = ud;
    const struct resume_redo *r = c->redo;
    c->info->rows++;
    if (ok)
        c->info->ok++;
    else
        c->info->failed++;
    int folder = len > 0 && path[len - 1] == '/';
    if (!ok && (r->retry_failed || folder)) {
        /* A second failed row of a path already dropped is dropped too (one decision per path). */
        int again = r->redo && doneset_has(r->redo, path, len);
        if (again || (!doneset_has(c->set, path, len) &&
                      (r->can_redo ? r->can_redo(r->ud, path, len) : resume_path_exists(NULL, path, len)))) {
            c->info->dropped_failed++;
            if (r->redo && !again && doneset_add(r->redo, path, len) < 0)
                c->oom = 1;
            return;
        }
        if (r->retry_failed && !folder && !doneset_has(c->set, path, len))
            c->info->kept_missing++;
    }
    /* A path's first row is the one kept (compact): its status is the path's. */
    int added = doneset_has(c->set, path, len) ? 0 : doneset_put(c->set, path, len, ok ? 0 : RESUME_ROW_FAILED);
    if (added < 0)
        c->oom = 1;
    else if (!added)
        c->info->duplicates++;
    else if (!ok)
        c->info->kept_failed++;
}

int64_t resume_parse_rows(enum results_format f, const char *text, size_t len, const char *header,
                          const struct resume_redo *redo, struct doneset *set, size_t *complete_len,
                          struct resume_info *info, char *err, size_t errlen)
{
    struct collect c = {set, info, redo, 0};
    int64_t n = results_rows(f, text, len, header, collect_row, &c, complete_len, err, errlen);
    if (n >= 0 && c.oom) {
        snprintf(err, errlen, "out of memory");
        return -2;
    }
    if (n >= 0)
        info->torn_bytes = len - *complete_len;
    return n;
}

int64_t resume_parse_redo(const char *text, size_t len, const char *header, const struct resume_redo *redo,
                          struct doneset *set, size_t *complete_len, struct resume_info *info,
                          char *err, size_t errlen)
{
    return resume_parse_rows(RESULTS_CSV, text, len, header, redo, set, complete_len, info, err, errlen);
}

int64_t resume_parse(const char *text, size_t len, const char *header, int retry_failed,
                     struct doneset *set, size_t *complete_len, struct resume_info *info,
                     char *err, size_t errlen)
{
    struct resume_redo r = {retry_failed, NULL, NULL, NULL};
    return resume_parse_redo(text, len, header, &r, set, complete_len, info, err, errlen);
}

/* ---- one row's stage cells ---- */

struct cells {
    int field, n_want, done, oom;
    char *buf;
    size_t len, cap;
};

/* Appends a cell: its length (u32), then its bytes. */
static void put_cell(struct cells *c, const char *s, size_t n)
{
    if (c->oom || n > UINT32_MAX)
        return;
    if (c->len + n + 4 > c->cap) {
        size_t cap = 2 * (c->len + n + 4);
        char *nb = realloc(c->buf, cap);
        if (!nb) {
            c->oom = 1;
            return;
        }
        c->buf = nb;
        c->cap = cap;
    }
    uint32_t l = (uint32_t)n;
    memcpy(c->buf + c->len, &l, 4);
    memcpy(c->buf + c->len + 4, s, n);
    c->len += n + 4;
}

/* Fields 2 .. n_want - 4 are the stage columns (path and status before, error, attempts and
 * elapsed_ms after). */
static int is_stage_cell(const struct cells *c, int f)
{
    return f >= 2 && f < c->n_want - 3;
}

static void cell_field(void *s, size_t len, void *data)
{
    struct cells *c = data;
    if (is_stage_cell(c, c->field))
        put_cell(c, s, len);
    c->field++;
}

static void cell_record(int ch, void *data)
{
    (void)ch;
    ((struct cells *)data)->done = 1;
}

static int cell_member(void *arg, const char *key, size_t keylen, const char *v, size_t vlen)
{
    (void)key;
    (void)keylen;
    struct cells *c = arg;
    if (is_stage_cell(c, c->field))
        put_cell(c, v, vlen);
    c->field++;
    return 0;
}

/* The CSV record that begins at text: libcsv fed a line at a time until it ends. */
static void csv_cells(const char *text, size_t len, struct cells *c)
{
    struct csv_parser cp;
    csv_init(&cp, CSV_STRICT);
    csv_set_space_func(&cp, no_space);
    for (size_t pos = 0; pos < len && !c->done;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) + 1 : len;
        if (csv_parse(&cp, text + pos, end - pos, cell_field, cell_record, c) != end - pos)
            break;
        pos = end;
    }
    csv_free(&cp);
}

int results_row_cells(enum results_format f, const char *text, size_t len, size_t start, const char *header,
                      char **cells, size_t *cells_len)
{
    struct cells c = {.n_want = 1};
    for (const char *h = header; *h; h++)
        c.n_want += *h == ',';
    text += start;
    len -= start;
    if (f == RESULTS_JSONL) {
        const char *nl = memchr(text, '\n', len);
        c.done = nl && json_members(text, (size_t)(nl - text), cell_member, &c) == c.n_want;
    } else {
        csv_cells(text, len, &c);
    }
    if (!c.done || c.oom || c.field != c.n_want) {
        free(c.buf);
        return -1;
    }
    *cells = c.buf;
    *cells_len = c.len;
    return 0;
}
