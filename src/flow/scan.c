/* scan: a streaming, recursive directory walk that yields image files (see scan.h).
 *
 * The walk keeps a stack of levels, one per directory between the root and the directory being
 * read. Each level holds an open directory stream (openat + fdopendir relative to its parent's
 * fd, with O_DIRECTORY|O_NOFOLLOW, so no path is ever re-resolved and paths longer than PATH_MAX
 * work) and the length of its prefix in one growing path buffer. A file's path is built in that
 * buffer only when its name has an image extension; nothing is allocated per file.
 *
 * The type of an entry comes from readdir's d_type; fstatat(AT_SYMLINK_NOFOLLOW) is called only
 * for DT_UNKNOWN. Regular files are candidates; directories are descended into; symbolic links,
 * FIFOs, sockets and devices are skipped and never opened.
 *
 * A directory that cannot be opened, read to its end, or re-opened is counted as a warning and,
 * with scan_report_folders, queued (its path copied, with a '/' at its end) to be returned by
 * scan_next before anything else, so the run writes a row for it.
 *
 * Deep trees: at most SCAN_MAX_OPEN (or opts->max_open) directory streams are open at once (the
 * root's included).
 * Past that the shallowest open level below the root is closed ("evicted") after its position
 * (telldir) and identity (st_dev, st_ino) are saved. When the walk climbs back to an evicted
 * level it re-opens it with openat(child_fd, "..") and checks the identity; if that fails (the
 * directory moved) it re-opens it component by component from the nearest open ancestor, again
 * with O_NOFOLLOW and the identity check, and resumes with seekdir. A level that cannot be
 * re-opened is counted as a warning and the rest of it is skipped. The same eviction runs when
 * openat fails with EMFILE/ENFILE, so a process short of fds degrades instead of losing
 * subtrees; with nothing left to evict it waits for a descriptor (up to about 5 s). Memory is O(depth): one stack entry per level, one glibc stream buffer (32 KiB) per
 * open level, and the path buffer. */
#include "flow/scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef SCAN_MAX_OPEN
#define SCAN_MAX_OPEN 128 /* directory streams open at once, the root's included */
#endif
#define SCAN_EXT_MAX 31   /* longest extension accepted, in bytes */
#define SCAN_WARN_MAX 1024

enum level_state { LV_OPEN, LV_EVICTED, LV_DEAD };

struct level {
    DIR *d;           /* the open stream when state == LV_OPEN, else NULL */
    size_t prefix;    /* bytes of path up to and including the '/' after this directory */
    long pos;         /* telldir position saved at eviction */
    dev_t dev;        /* identity saved at eviction, checked when re-opened */
    ino_t ino;
    enum level_state state;
};

struct ext {
    char s[SCAN_EXT_MAX + 1]; /* lower case */
    size_t len;
};

/* A folder (or entry) that could not be read, waiting to be returned by scan_next. */
struct pend {
    char *path; /* malloc'd, NUL-terminated */
    size_t len;
    char error[160];
};

struct scanner {
    struct level *lv;
    size_t depth, cap; /* levels in use / allocated */
    size_t n_open;     /* levels whose state is LV_OPEN */
    char *path;
    size_t path_cap;
    size_t root_prefix; /* where rel starts in path */
    struct ext *exts;
    size_t n_exts, ext_max;
    uint64_t warnings;
    char warn[SCAN_WARN_MAX];
    size_t max_open;   /* SCAN_MAX_OPEN unless opts said otherwise */
    int report;        /* scan_report_folders */
    struct pend *pend; /* FIFO of folders to return with 2 */
    size_t n_pend, cap_pend;
    char *given;       /* the path of the last one returned (valid until the next call) */
    char warn_given[160]; /* and its reason */
    uint64_t lost;     /* folders that could not be queued (out of memory): scan_lost */
};

static const char *const default_exts[] = {"jpg", "jpeg", "png", "gif", "bmp", "webp"};

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Appends src to dst[*at..cap), escaping control bytes, backslash and DEL so that a warning
 * naming a hostile path stays on one line. Bytes >= 0x80 are kept (UTF-8 names stay readable). */
static void append_escaped(char *dst, size_t cap, size_t *at, const char *src, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        char tmp[4];
        size_t k = 0;
        if (c == '\n') { tmp[0] = '\\'; tmp[1] = 'n'; k = 2; }
        else if (c == '\r') { tmp[0] = '\\'; tmp[1] = 'r'; k = 2; }
        else if (c == '\t') { tmp[0] = '\\'; tmp[1] = 't'; k = 2; }
        else if (c == '\\') { tmp[0] = '\\'; tmp[1] = '\\'; k = 2; }
        else if (c < 0x20 || c == 0x7f) {
            tmp[0] = '\\'; tmp[1] = 'x'; tmp[2] = hex[c >> 4]; tmp[3] = hex[c & 15]; k = 4;
        } else { tmp[0] = (char)c; k = 1; }
        if (*at + k + 1 > cap) {
            /* Out of room: end with "..." when it fits. */
            if (cap >= 4) {
                size_t e = *at < cap - 4 ? *at : cap - 4;
                memcpy(dst + e, "...", 3);
                *at = e + 3;
            }
            break;
        }
        memcpy(dst + *at, tmp, k);
        *at += k;
    }
    dst[*at < cap ? *at : cap - 1] = '\0';
}

/* Records a warning "<what> '<path[0..path_len)>': <strerror(err)>". */
static void warn(scanner *s, const char *what, size_t path_len, int err)
{
    size_t at = 0;
    int n = snprintf(s->warn, sizeof s->warn, "%s '", what);
    at = n > 0 ? (size_t)n : 0;
    if (at >= sizeof s->warn)
        at = sizeof s->warn - 1;
    /* Leave room for the quote and the error text. */
    append_escaped(s->warn, sizeof s->warn - 64, &at, s->path, path_len);
    snprintf(s->warn + at, sizeof s->warn - at, "': %s", strerror(err));
    s->warnings++;
}

/* Queues path[0..path_len) (plus a '/' for a folder) to be returned by scan_next with its
 * reason, "<what>: strerror(err)". Out of memory, it stays a warning only. */
static void pend_add(scanner *s, size_t path_len, int folder, const char *what, int err)
{
    if (!s->report)
        return;
    if (s->n_pend == s->cap_pend) {
        size_t cap = s->cap_pend ? s->cap_pend * 2 : 4;
        struct pend *p = realloc(s->pend, cap * sizeof *p);
        if (!p) {
            s->lost++;
            return;
        }
        s->pend = p;
        s->cap_pend = cap;
    }
    struct pend *p = &s->pend[s->n_pend];
    if (!(p->path = malloc(path_len + 2))) {
        s->lost++;
        return;
    }
    memcpy(p->path, s->path, path_len);
    if (folder && (path_len == 0 || p->path[path_len - 1] != '/'))
        p->path[path_len++] = '/';
    p->path[path_len] = '\0';
    p->len = path_len;
    snprintf(p->error, sizeof p->error, "%s: %s", what, strerror(err));
    s->n_pend++;
}

/* Returns the oldest queued folder in *out. */
static int pend_give(scanner *s, struct scan_entry *out)
{
    free(s->given);
    struct pend p = s->pend[0];
    memmove(s->pend, s->pend + 1, --s->n_pend * sizeof *s->pend);
    s->given = p.path;
    /* The error text lives in the scanner too: keep it in the warning buffer's tail. */
    snprintf(s->warn_given, sizeof s->warn_given, "%s", p.error);
    out->path = p.path;
    out->path_len = p.len;
    out->rel = p.path + (p.len >= s->root_prefix ? s->root_prefix : p.len);
    out->rel_len = p.len - (size_t)(out->rel - p.path);
    out->error = s->warn_given;
    return 2;
}

static int path_reserve(scanner *s, size_t need)
{
    if (need <= s->path_cap)
        return 0;
    size_t cap = s->path_cap ? s->path_cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(s->path, cap);
    if (!p)
        return -1;
    s->path = p;
    s->path_cap = cap;
    return 0;
}

static int is_image(const scanner *s, const char *name, size_t len)
{
    const char *dot = memrchr(name, '.', len);
    if (!dot)
        return 0;
    size_t elen = len - (size_t)(dot - name) - 1;
    if (elen == 0 || elen > s->ext_max)
        return 0;
    char buf[SCAN_EXT_MAX + 1];
    for (size_t i = 0; i < elen; i++)
        buf[i] = (char)lower((unsigned char)dot[1 + i]);
    for (size_t i = 0; i < s->n_exts; i++)
        if (s->exts[i].len == elen && memcmp(s->exts[i].s, buf, elen) == 0)
            return 1;
    return 0;
}

int scan_name_is_image(const struct scan_opts *opts, const char *name, size_t len)
{
    const char *const *exts = default_exts;
    size_t n_exts = sizeof default_exts / sizeof default_exts[0];
    if (opts && opts->exts && opts->n_exts) {
        exts = opts->exts;
        n_exts = opts->n_exts;
    }
    const char *dot = memrchr(name, '.', len);
    if (!dot)
        return 0;
    size_t elen = len - (size_t)(dot - name) - 1;
    for (size_t i = 0; i < n_exts; i++) {
        const char *e = exts[i];
        if (!e)
            continue;
        if (*e == '.')
            e++;
        if (elen == 0 || elen > SCAN_EXT_MAX || strlen(e) != elen)
            continue;
        size_t j = 0;
        while (j < elen && lower((unsigned char)dot[1 + j]) == lower((unsigned char)e[j]))
            j++;
        if (j == elen)
            return 1;
    }
    return 0;
}

/* Closes the shallowest open level below the root, saving where to resume. Returns 0, or -1 when
 * there is nothing to evict. */
static int evict_one(scanner *s)
{
    for (size_t i = 1; i + 1 < s->depth; i++) {
        struct level *L = &s->lv[i];
        if (L->state != LV_OPEN)
            continue;
        struct stat st;
        if (fstat(dirfd(L->d), &st) == 0) {
            L->dev = st.st_dev;
            L->ino = st.st_ino;
        } else {
            L->dev = 0;
            L->ino = 0;
        }
        L->pos = telldir(L->d);
        closedir(L->d);
        L->d = NULL;
        L->state = LV_EVICTED;
        s->n_open--;
        return 0;
    }
    return -1;
}

static int same_dir(int fd, const struct level *L)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_dev == L->dev && st.st_ino == L->ino;
}

/* Opens level k's directory by walking the path components from the nearest open ancestor. */
static int open_by_components(scanner *s, size_t k)
{
    size_t a = k;
    while (a > 0 && s->lv[a - 1].state != LV_OPEN)
        a--;
    if (a == 0)
        return -1; /* cannot happen: the root stays open */
    a--;
    int fd = dirfd(s->lv[a].d), owned = 0;
    size_t start = s->lv[a].prefix, end = s->lv[k].prefix; /* path[end-1] == '/' */
    while (start < end) {
        char *slash = memchr(s->path + start, '/', end - start);
        size_t len = (size_t)(slash - (s->path + start));
        *slash = '\0';
        int nfd = openat(fd, s->path + start, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        *slash = '/';
        if (owned)
            close(fd);
        if (nfd < 0)
            return -1;
        fd = nfd;
        owned = 1;
        start += len + 1;
    }
    return owned ? fd : -1;
}

/* Re-opens evicted level k (k + 1 is the level being left, open or dead). */
static void reopen(scanner *s, size_t k)
{
    struct level *L = &s->lv[k], *child = &s->lv[k + 1];
    int fd = -1;
    if (child->state == LV_OPEN) {
        fd = openat(dirfd(child->d), "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0 && !same_dir(fd, L)) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        fd = open_by_components(s, k);
        if (fd >= 0 && !same_dir(fd, L)) {
            close(fd);
            fd = -1;
            errno = ESTALE;
        }
    }
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        warn(s, "cannot re-open directory (rest of it skipped)", L->prefix - 1, e);
        pend_add(s, L->prefix, 1, "cannot read folder (the rest of it was skipped)", e);
        L->state = LV_DEAD;
        return;
    }
    seekdir(d, L->pos);
    L->d = d;
    L->state = LV_OPEN;
    s->n_open++;
}

/* Leaves the top level. */
static void pop(scanner *s)
{
    size_t top = s->depth - 1;
    if (top > 0 && s->lv[top - 1].state == LV_EVICTED)
        reopen(s, top - 1); /* before closing the child: ".." is taken from its fd */
    struct level *L = &s->lv[top];
    if (L->state == LV_OPEN) {
        closedir(L->d);
        s->n_open--;
    }
    L->d = NULL;
    s->depth--;
}

/* Enters the directory `name` of the top level. */
static void push(scanner *s, const char *name, size_t len)
{
    struct level *P = &s->lv[s->depth - 1];
    size_t prefix = P->prefix + len + 1;
    if (path_reserve(s, prefix + 1) != 0) {
        s->warnings++;
        snprintf(s->warn, sizeof s->warn, "out of memory for a path of %zu bytes", prefix);
        /* No room to spell the folder: its parent gets the row (it could not be read whole). */
        pend_add(s, P->prefix, 1, "cannot read folder (out of memory for the path of a folder in it)", ENOMEM);
        return;
    }
    memcpy(s->path + P->prefix, name, len);
    s->path[P->prefix + len] = '\0';
    if (s->depth == s->cap) {
        size_t cap = s->cap * 2;
        struct level *lv = realloc(s->lv, cap * sizeof *lv);
        if (!lv) {
            warn(s, "out of memory entering directory", P->prefix + len, ENOMEM);
            pend_add(s, P->prefix + len, 1, "cannot read folder", ENOMEM);
            return;
        }
        s->lv = lv;
        s->cap = cap;
        P = &s->lv[s->depth - 1];
    }
    /* evict_one closes the shallowest open level below P (never P, whose fd is needed here). */
    if (s->n_open >= s->max_open)
        evict_one(s);
    int fd;
    for (int waits = 0;;) {
        fd = openat(dirfd(P->d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0 || (errno != EMFILE && errno != ENFILE))
            break;
        if (evict_one(s) == 0)
            continue;
        /* Nothing of ours left to close: the rest of the process holds the descriptors. They
         * come and go (files being read, connections), so wait for one, up to about 5 s. */
        if (waits++ >= 500)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        warn(s, "cannot open directory", P->prefix + len, e);
        pend_add(s, P->prefix + len, 1, "cannot read folder", e);
        return;
    }
    s->path[P->prefix + len] = '/';
    struct level *L = &s->lv[s->depth++];
    L->d = d;
    L->prefix = prefix;
    L->pos = 0;
    L->dev = 0;
    L->ino = 0;
    L->state = LV_OPEN;
    s->n_open++;
}

scanner *scan_open(const char *root, const struct scan_opts *opts, char *err, size_t errlen)
{
    if (!root) {
        if (err && errlen)
            snprintf(err, errlen, "scan: no directory given");
        return NULL;
    }
    scanner *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    const char *const *exts = default_exts;
    size_t n_exts = sizeof default_exts / sizeof default_exts[0];
    if (opts && opts->exts && opts->n_exts) {
        exts = opts->exts;
        n_exts = opts->n_exts;
    }
    s->exts = calloc(n_exts, sizeof *s->exts);
    if (!s->exts)
        goto oom;
    for (size_t i = 0; i < n_exts; i++) {
        const char *e = exts[i];
        if (!e)
            continue;
        if (*e == '.')
            e++;
        size_t len = strlen(e);
        if (len == 0 || len > SCAN_EXT_MAX)
            continue; /* cannot match anything */
        struct ext *x = &s->exts[s->n_exts++];
        for (size_t j = 0; j < len; j++)
            x->s[j] = (char)lower((unsigned char)e[j]);
        x->len = len;
        if (len > s->ext_max)
            s->ext_max = len;
    }

    size_t root_len = strlen(root);
    if (path_reserve(s, root_len + 256 > 4096 ? root_len + 256 : 4096) != 0)
        goto oom;
    memcpy(s->path, root, root_len);
    s->root_prefix = root_len;
    if (root_len == 0 || root[root_len - 1] != '/')
        s->path[s->root_prefix++] = '/';
    s->path[s->root_prefix] = '\0';
    s->max_open = opts && opts->max_open ? (opts->max_open < 2 ? 2 : opts->max_open) : SCAN_MAX_OPEN;
    s->cap = 16;
    s->lv = calloc(s->cap, sizeof *s->lv);
    if (!s->lv)
        goto oom;

    /* The root itself is opened following a symbolic link (like find -H): `annotate ~/photos`
     * should work when photos is a link. Nothing below it is followed. */
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (err && errlen) {
            size_t at = 0;
            int n = snprintf(err, errlen, "cannot scan '");
            at = n > 0 && (size_t)n < errlen ? (size_t)n : 0;
            append_escaped(err, errlen > 64 ? errlen - 48 : errlen, &at, root, root_len);
            if (e == ENOTDIR)
                snprintf(err + at, errlen - at, "': not a directory");
            else
                snprintf(err + at, errlen - at, "': %s", strerror(e));
        }
        scan_close(s);
        return NULL;
    }
    s->lv[0].d = d;
    s->lv[0].prefix = s->root_prefix;
    s->lv[0].state = LV_OPEN;
    s->depth = 1;
    s->n_open = 1;
    return s;

oom:
    if (err && errlen)
        snprintf(err, errlen, "scan: out of memory");
    scan_close(s);
    return NULL;
}

int scan_next(scanner *s, struct scan_entry *out)
{
    if (!s)
        return 0;
    out->error = NULL;
    for (;;) {
        if (s->n_pend)
            return pend_give(s, out);
        if (s->depth == 0)
            break;
        struct level *L = &s->lv[s->depth - 1];
        if (L->state != LV_OPEN) { /* dead: could not be re-opened */
            pop(s);
            continue;
        }
        errno = 0;
        struct dirent *e = readdir(L->d);
        if (!e) {
            if (errno) {
                int err = errno;
                warn(s, "cannot read directory", L->prefix - 1, err);
                pend_add(s, L->prefix, 1, "cannot read folder (the rest of it was skipped)", err);
            }
            pop(s);
            continue;
        }
        const char *name = e->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
            continue;
        unsigned char type = e->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(L->d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno != ENOENT) { /* ENOENT: removed since readdir; nothing to report */
                    int err = errno;
                    size_t len = strlen(name);
                    if (path_reserve(s, L->prefix + len + 1) == 0) {
                        memcpy(s->path + L->prefix, name, len);
                        warn(s, "cannot stat", L->prefix + len, err);
                        pend_add(s, L->prefix + len, 0, "cannot stat", err);
                    }
                }
                continue;
            }
            type = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : DT_UNKNOWN;
        }
        if (type == DT_REG) {
            size_t len = strlen(name);
            if (!is_image(s, name, len))
                continue;
            if (path_reserve(s, L->prefix + len + 1) != 0) {
                s->warnings++;
                snprintf(s->warn, sizeof s->warn, "out of memory for a path");
                continue;
            }
            memcpy(s->path + L->prefix, name, len + 1);
            out->path = s->path;
            out->path_len = L->prefix + len;
            out->rel = s->path + s->root_prefix;
            out->rel_len = out->path_len - s->root_prefix;
            return 1;
        }
        if (type == DT_DIR)
            push(s, name, strlen(name));
    }
    return 0;
}

void scan_report_folders(scanner *s, int on)
{
    if (s)
        s->report = on;
}

uint64_t scan_lost(const scanner *s)
{
    return s ? s->lost : 0;
}

uint64_t scan_warnings(const scanner *s)
{
    return s ? s->warnings : 0;
}

const char *scan_last_warning(const scanner *s)
{
    return s && s->warnings ? s->warn : NULL;
}

void scan_close(scanner *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->depth; i++)
        if (s->lv[i].state == LV_OPEN && s->lv[i].d)
            closedir(s->lv[i].d);
    for (size_t i = 0; i < s->n_pend; i++)
        free(s->pend[i].path);
    free(s->pend);
    free(s->given);
    free(s->lv);
    free(s->exts);
    free(s->path);
    free(s);
}

int scan_parse_exts(const char *list, struct scan_opts *opts, char **storage, char *err, size_t errlen)
{
    if (storage)
        *storage = NULL;
    if (!list || !opts || !storage) {
        if (err && errlen)
            snprintf(err, errlen, "extension list: missing argument");
        return -1;
    }
    size_t n = 1, len = strlen(list);
    for (size_t i = 0; i < len; i++)
        n += list[i] == ',';
    /* One block: the pointer array, then a copy of the list that the pointers point into. */
    char *block = malloc(n * sizeof(char *) + len + 1);
    if (!block) {
        if (err && errlen)
            snprintf(err, errlen, "extension list: out of memory");
        return -1;
    }
    const char **ptrs = (const char **)(void *)block;
    char *copy = block + n * sizeof(char *);
    memcpy(copy, list, len + 1);

    size_t k = 0;
    char *item = copy;
    for (size_t i = 0; i < n; i++) {
        char *end = strchr(item, ',');
        if (end)
            *end = '\0';
        char *next = end ? end + 1 : item + strlen(item);
        /* Trim blanks, then one leading dot (".jpg" means "jpg"). */
        while (*item == ' ' || *item == '\t')
            item++;
        char *t = item + strlen(item);
        while (t > item && (t[-1] == ' ' || t[-1] == '\t'))
            *--t = '\0';
        if (*item == '.')
            item++;
        size_t il = strlen(item);
        const char *why = NULL;
        if (il == 0)
            why = "is empty";
        else if (il > SCAN_EXT_MAX)
            why = "is too long";
        else if (strchr(item, '.'))
            why = "has a dot inside (only what follows the last dot of a name is its extension)";
        else
            for (size_t j = 0; j < il && !why; j++) {
                unsigned char c = (unsigned char)item[j];
                if (c == '/' || c < 0x20 || c == 0x7f || c == ' ' || c == '*' || c == '?')
                    why = "has a character that cannot be in an extension";
            }
        if (why) {
            if (err && errlen) {
                size_t at = 0;
                int m = snprintf(err, errlen, "extension list '");
                at = m > 0 && (size_t)m < errlen ? (size_t)m : 0;
                append_escaped(err, errlen > 160 ? errlen - 120 : errlen, &at, list, len);
                snprintf(err + at, errlen - at, "': item %zu %s", i + 1, why);
            }
            free(block);
            return -1;
        }
        ptrs[k++] = item;
        item = next;
    }
    opts->exts = ptrs;
    opts->n_exts = k;
    *storage = block;
    return 0;
}
