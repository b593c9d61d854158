/* merge: see merge.h. CSV or JSON Lines, as the inputs are. Two passes over memory-mapped inputs:
 * the first collects the paths that have an ok row anywhere, with where the winning one is
 * (comparing an image's ok rows as they come, and each folder's spelling), the second writes each
 * path's winning row once. The output goes to a
 * temporary file renamed over OUT, so OUT is never half-written.
 *
 * The temporary file is OUT.merge.tmp, taken before any input is read: opened without following
 * a link (a link or other non-regular file there is removed first, an empty directory too), locked, and checked to still be the file
 * of that name. A merge killed with -9 leaves it behind unlocked, so the next merge takes it over
 * and truncates it; one whose owner is alive is locked, and the merge exits 2 without touching
 * it. From then on every exit but success removes it, while still holding the lock. */
#include "results/merge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "results/resume.h"

struct input {
    const char *name;
    const char *text; /* the file's bytes: its map, or "" when it is empty */
    size_t len;
    void *map;        /* what munmap gives back, or NULL */
};

/* Which ok row wins when an image has two whose results differ (--prefer). */
enum prefer { PREFER_NONE, PREFER_FIRST, PREFER_LAST };

/* Where a row is: its input and its first byte, as a done-set value (never 0). */
#define LOC(input, start) ((uint64_t)(input) << 48 | ((uint64_t)(start) + 1))
#define LOC_INPUT(v) ((int)((v) >> 48))
#define LOC_START(v) ((size_t)(((v) & ((1ull << 48) - 1)) - 1))

/* One spelling of a folder (see spell_check): the input whose rows first spelled it so, and one of
 * those rows' paths. */
struct spelling {
    int input;
    char *raw, *example;
};

struct pass {
    struct merge *m;
    struct doneset *ok;      /* paths with an ok row; value: the winning ok row's LOC */
    struct doneset *written; /* paths whose failed row is written */
    struct doneset *dirs;    /* folders as spelled in some row */
    struct doneset *norms;   /* folders in their plain spelling; value: index in spellings + 1 */
    struct spelling *spellings;
    size_t n_spellings, cap_spellings;
    FILE *f;
    const char *text;
    int input;               /* the input being read */
    int second;
    int oom;
    int bad;                 /* a message is on stderr: stop */
    uint64_t conflicts;      /* images whose ok rows hold different results */
    unsigned long long rows_in, rows_out;
};

/* 1 when the line [h, h + len) (without its newline) is an annotate results header:
 * path,status, then the stage columns (pipeline names: letters, digits, _ - .), then
 * error,attempts,elapsed_ms. A CSV from anything else would otherwise be merged by whatever sits
 * in its first two columns. */
static int results_header(const char *h, size_t len)
{
    static const char head[] = "path,status,", tail[] = "error,attempts,elapsed_ms";
    size_t hl = sizeof head - 1, tl = sizeof tail - 1;
    if (len < hl + tl || memcmp(h, head, hl) || memcmp(h + len - tl, tail, tl))
        return 0;
    /* The middle is empty or "name," repeated. */
    size_t field = 0;
    for (size_t i = hl; i < len - tl; i++) {
        char c = h[i];
        if (c == ',') {
            if (field == 0)
                return 0;
            field = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                   c == '-' || c == '.') {
            field++;
        } else {
            return 0;
        }
    }
    return field == 0;
}

/* Opens tmp for writing, locked and empty (see the top of the file). Returns the descriptor, or -1
 * with a message on stderr. */
static int take_tmp(const char *tmp, const char *out)
{
    for (int tries = 0; tries < 100; tries++) {
        struct stat st;
        if (lstat(tmp, &st) == 0 && !S_ISREG(st.st_mode) && (S_ISDIR(st.st_mode) ? rmdir(tmp) : unlink(tmp)) &&
            errno != ENOENT) {
            fprintf(stderr, "annotate merge: cannot remove %s (not a regular file): %s\n", tmp, strerror(errno));
            return -1;
        }
        int fd = open(tmp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            if (errno == ELOOP)
                continue; /* became a link since the lstat: remove it again */
            fprintf(stderr, "annotate merge: cannot create %s: %s\n", tmp, strerror(errno));
            return -1;
        }
        if (flock(fd, LOCK_EX | LOCK_NB)) {
            if (errno == EWOULDBLOCK)
                fprintf(stderr, "annotate merge: another annotate merge is writing %s (it holds %s); wait for it to "
                                "end\n", out, tmp);
            else
                fprintf(stderr, "annotate merge: cannot lock %s: %s\n", tmp, strerror(errno));
            close(fd);
            return -1;
        }
        /* The name may have been renamed over (the merge that held it finished) or removed
         * between our open and our lock: then the lock is on a file that is not tmp. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && S_ISREG(a.st_mode) && lstat(tmp, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            if (ftruncate(fd, 0) == 0)
                return fd;
            fprintf(stderr, "annotate merge: cannot truncate %s: %s\n", tmp, strerror(errno));
            unlink(tmp);
            close(fd);
            return -1;
        }
        close(fd);
    }
    fprintf(stderr, "annotate merge: cannot take %s: it keeps being replaced\n", tmp);
    return -1;
}

/* One merge: the output, its temporary file, the inputs and the two passes over them. */
struct merge {
    const char *out;
    enum prefer prefer;
    char *const *names; /* the inputs' names, [n] */
    int n;
    struct input *in;   /* [n] */
    char tmp[4096];     /* OUT.merge.tmp */
    int tmp_fd;         /* until the second pass opens it as pass.f */
    int own_tmp;        /* tmp is ours (locked): removed on any failure */
    enum results_format format; /* the inputs': all CSV or all JSON Lines (resume.h) */
    char *header;       /* the inputs' header line, with its newline (JSON Lines: their columns as
                           such a line, from the first row) */
    struct pass pass;
    char conflict[3][700]; /* the first images with different ok rows, described */
};

/* The inputs, the output's name and its temporary file (taken, locked and empty). 0, or -1 with a
 * message on stderr. */
static int prepare(struct merge *m)
{
    if (!(m->in = calloc((size_t)m->n, sizeof *m->in))) {
        fprintf(stderr, "annotate merge: out of memory\n");
        return -1;
    }
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->names[i], m->out)) {
            fprintf(stderr, "annotate merge: %s is both an input and the output; write to a new file\n", m->out);
            return -1;
        }
    if ((size_t)snprintf(m->tmp, sizeof m->tmp, "%s.merge.tmp", m->out) >= sizeof m->tmp) {
        fprintf(stderr, "annotate merge: the output name is too long\n");
        return -1;
    }
    if ((m->tmp_fd = take_tmp(m->tmp, m->out)) < 0)
        return -1;
    m->own_tmp = 1;
    return 0;
}

/* Maps the input named name into in. 0, or -1 with a message on stderr. */
static int map_input(struct input *in, const char *name)
{
    in->name = name;
    int fd = open(name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        fprintf(stderr, "annotate merge: cannot read %s: %s\n", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    in->len = (size_t)st.st_size;
    void *map = in->len ? mmap(NULL, in->len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (map == MAP_FAILED) {
        fprintf(stderr, "annotate merge: cannot map %s: %s\n", name, strerror(errno));
        return -1;
    }
    in->map = map;
    in->text = map ? map : "";
    return 0;
}

/* The length of in's header line, an annotate results header, without its newline. 0, or -1
 * with a message on stderr. */
static int check_header(const struct input *in, size_t *hlen)
{
    const char *nl = memchr(in->text, '\n', in->len);
    if (!nl) {
        fprintf(stderr, "annotate merge: %s has no header line: is it a results file?\n", in->name);
        return -1;
    }
    *hlen = (size_t)(nl - in->text);
    if (results_header(in->text, *hlen))
        return 0;
    char shown[81];
    size_t sl = *hlen < sizeof shown - 1 ? *hlen : sizeof shown - 1;
    for (size_t k = 0; k < sl; k++) /* the file's own bytes, made printable */
        shown[k] = in->text[k] >= 0x20 && in->text[k] < 0x7f ? in->text[k] : '?';
    shown[sl] = 0;
    fprintf(stderr,
            "annotate merge: %s is not an annotate results file: its header \"%s%s\" is not "
            "path,status,<stage columns>,error,attempts,elapsed_ms\n",
            in->name, shown, *hlen > sl ? "..." : "");
    return -1;
}

/* The format of the inputs: that of the first one that is not empty (a JSON Lines row begins
 * with '{', a CSV file with its header), else the output's name's. Every input must have it, and
 * an output named .jsonl or .csv must agree. 0, or -1 with a message on stderr. */
static int pick_format(struct merge *m)
{
    const char *first = NULL;
    int seen = 0;
    for (int i = 0; i < m->n; i++) {
        if (!m->in[i].len)
            continue;
        enum results_format f = m->in[i].text[0] == '{' ? RESULTS_JSONL : RESULTS_CSV;
        if (seen && f != m->format) {
            fprintf(stderr, "annotate merge: %s is %s but %s is %s: merge results files of one format\n",
                    m->in[i].name, f == RESULTS_JSONL ? "JSON Lines" : "CSV", first,
                    f == RESULTS_JSONL ? "CSV" : "JSON Lines");
            return -1;
        }
        if (!seen)
            first = m->in[i].name;
        m->format = f;
        seen = 1;
    }
    if (!seen)
        m->format = results_format_of(m->out);
    size_t ol = strlen(m->out);
    int named_csv = ol >= 4 && !strcasecmp(m->out + ol - 4, ".csv");
    if ((m->format == RESULTS_CSV && results_format_of(m->out) == RESULTS_JSONL) ||
        (m->format == RESULTS_JSONL && named_csv)) {
        fprintf(stderr, "annotate merge: the inputs are %s: name the output .%s, not %s\n",
                m->format == RESULTS_JSONL ? "JSON Lines" : "CSV", results_format_name(m->format), m->out);
        return -1;
    }
    return 0;
}

/* A JSON Lines input's columns, from its first row (none yet when it is empty or holds only a
 * torn line). 0, or -1 with a message on stderr. */
static int jsonl_header(struct merge *m, const struct input *in)
{
    const char *nl = memchr(in->text, '\n', in->len);
    if (m->header || !nl)
        return 0;
    size_t hl = (size_t)(nl - in->text);
    char *cols = jsonl_columns(in->text, hl);
    if (cols && results_header(cols, strlen(cols) - 1)) {
        m->header = cols;
        return 0;
    }
    free(cols);
    fprintf(stderr, "annotate merge: %s is not an annotate results file: its first line is not a row with the keys "
                    "path, status, <stage columns>, error, attempts, elapsed_ms\n", in->name);
    return -1;
}

/* Maps every input and checks its header; the first one's is the output's. */
static int map_inputs(struct merge *m)
{
    for (int i = 0; i < m->n; i++)
        if (map_input(&m->in[i], m->names[i]))
            return -1;
    if (pick_format(m))
        return -1;
    for (int i = 0; i < m->n; i++) {
        size_t hlen;
        if (m->format == RESULTS_JSONL) {
            if (jsonl_header(m, &m->in[i]))
                return -1;
            continue;
        }
        if (check_header(&m->in[i], &hlen))
            return -1;
        if (!m->header && !(m->header = strndup(m->in[i].text, hlen + 1))) {
            fprintf(stderr, "annotate merge: out of memory\n");
            return -1;
        }
    }
    return 0;
}

/* The second pass writes into the temporary file, from the header on. */
static int open_output(struct merge *m)
{
    struct pass *p = &m->pass;
    if (!(p->f = fdopen(m->tmp_fd, "wb"))) {
        fprintf(stderr, "annotate merge: cannot write %s: %s\n", m->tmp, strerror(errno));
        return -1;
    }
    m->tmp_fd = -1; /* p->f owns it now */
    if (m->format == RESULTS_CSV)
        fputs(m->header, p->f);
    return 0;
}

/* ---- one folder, two spellings ----
 * Rows are keyed by path as the run's DIR spelled it (results.h: --resume refuses a DIR spelled
 * otherwise), so shards of runs given ./ds and ds would hold one image under two keys, and the
 * merge would keep both rows. A folder is known by its plain spelling (no "." or empty
 * components: ./ds, ds/ and ds//. are all ds); two inputs that spell one folder differently are
 * refused. Each folder of each path is checked (ds/a for ds/a/x.jpg, and ds), once per spelling.
 * Paths of URLs (s3://, https://) are kept as they are: their keys are exact. */

/* Records that input p->input spells the folder raw[0, n) so (seen in the row of path). 0, or -1
 * with a message on stderr when another input spells it otherwise (or memory ran out). */
static int spell_folder(struct pass *p, const char *raw, size_t n, const char *path, size_t len)
{
    char *plain = malloc(n + 1);
    if (!plain)
        return p->oom = 1, -1;
    size_t pl = results_plain_folder(raw, n, plain);
    uint64_t v;
    int rc = 0;
    if (pl && doneset_get(p->norms, plain, pl, &v)) {
        const struct spelling *o = &p->spellings[v - 1];
        if (o->input != p->input && (strlen(o->raw) != n || memcmp(o->raw, raw, n))) {
            const struct merge *m = p->m;
            fprintf(stderr, "annotate merge: %s and %s spell one folder two ways, \"%s\" and \"%.*s\" (in the rows "
                            "of \"%s\" and \"%.*s\"): they come from runs given DIR spelled differently, and would "
                            "hold one image under two paths. Merge the results of runs given DIR spelled the same "
                            "way\n", m->in[o->input].name, m->in[p->input].name, o->raw, (int)n, raw, o->example,
                    (int)(len > 200 ? 200 : len), path);
            rc = -1;
        }
    } else if (pl) {
        if (p->n_spellings == p->cap_spellings) {
            size_t cap = p->cap_spellings ? 2 * p->cap_spellings : 64;
            struct spelling *ns = realloc(p->spellings, cap * sizeof *ns);
            if (!ns)
                return free(plain), p->oom = 1, -1;
            p->spellings = ns;
            p->cap_spellings = cap;
        }
        struct spelling *sp = &p->spellings[p->n_spellings];
        sp->input = p->input;
        sp->raw = strndup(raw, n);
        sp->example = strndup(path, len > 200 ? 200 : len);
        if (!sp->raw || !sp->example || doneset_put(p->norms, plain, pl, ++p->n_spellings) < 0) {
            p->oom = 1;
            rc = -1;
        }
    }
    free(plain);
    return rc;
}

/* Checks every folder of path (see above) the first time its spelling is seen. 0, or -1. */
static int spell_check(struct pass *p, const char *path, size_t len)
{
    if (memmem(path, len, "://", 3))
        return 0;
    const char *slash = memrchr(path, '/', len);
    if (!slash || slash == path)
        return 0;
    size_t dl = (size_t)(slash - path);
    int added = doneset_add(p->dirs, path, dl);
    if (added <= 0)
        return added < 0 ? (p->oom = 1, -1) : 0;
    for (size_t i = 1; i <= dl; i++)
        if ((i == dl || path[i] == '/') && spell_folder(p, path, i, path, len))
            return -1;
    return 0;
}

/* ---- two ok rows of one image ---- */

/* 1 when the rows at LOCs a and b hold the same results (the same stage cells), 0 when not, -1
 * when out of memory. */
static int same_results(const struct merge *m, uint64_t a, uint64_t b)
{
    const struct input *ia = &m->in[LOC_INPUT(a)], *ib = &m->in[LOC_INPUT(b)];
    char *ca = NULL, *cb = NULL;
    size_t la = 0, lb = 0;
    int rc = -1;
    if (!results_row_cells(m->format, ia->text, ia->len, LOC_START(a), m->header, &ca, &la) &&
        !results_row_cells(m->format, ib->text, ib->len, LOC_START(b), m->header, &cb, &lb))
        rc = la == lb && !memcmp(ca, cb, la);
    free(ca);
    free(cb);
    return rc;
}

/* The line of the input at LOC v that its row begins on. */
static long long line_of(const struct merge *m, uint64_t v)
{
    const char *t = m->in[LOC_INPUT(v)].text, *end = t + LOC_START(v);
    long long line = 1;
    for (const char *c = t; c < end && (c = memchr(c, '\n', (size_t)(end - c))); c++)
        line++;
    return line;
}

/* A second ok row of path, at LOC cur, whose first is at LOC first: a conflict when their results
 * differ. --prefer last makes each later ok row the winner. */
static void second_ok(struct pass *p, const char *path, size_t len, uint64_t first, uint64_t cur)
{
    struct merge *m = p->m;
    int same = same_results(m, first, cur);
    if (same < 0) {
        p->oom = 1;
        return;
    }
    if (!same && p->conflicts < sizeof m->conflict / sizeof m->conflict[0])
        snprintf(m->conflict[p->conflicts], sizeof m->conflict[0], "\"%.*s\": %s line %lld and %s line %lld",
                 (int)(len > 200 ? 200 : len), path, m->in[LOC_INPUT(first)].name, line_of(m, first),
                 m->in[LOC_INPUT(cur)].name, line_of(m, cur));
    p->conflicts += !same;
    if (m->prefer == PREFER_LAST && doneset_put(p->ok, path, len, cur) < 0)
        p->oom = 1;
}

/* The first pass: each ok row's path and where it is (checking two ok rows of one image against
 * each other), and each path's folders' spellings. */
static void first_pass_row(struct pass *p, const char *path, size_t len, int ok, size_t start)
{
    p->rows_in++;
    if (spell_check(p, path, len)) {
        p->bad = 1;
        return;
    }
    uint64_t cur = LOC(p->input, start), first;
    if (!ok)
        return;
    if (doneset_get(p->ok, path, len, &first))
        second_ok(p, path, len, first, cur);
    else if (doneset_put(p->ok, path, len, cur) < 0)
        p->oom = 1;
}

/* The second pass writes each image's winning row: its chosen ok row, else its first failed row. */
static void on_row(void *ud, const char *path, size_t len, int ok, size_t start, size_t end)
{
    struct pass *p = ud;
    if (p->bad || p->oom)
        return;
    if (!p->second) {
        first_pass_row(p, path, len, ok, start);
        return;
    }
    uint64_t win;
    int has_ok = doneset_get(p->ok, path, len, &win);
    int added = 0;
    if (ok)
        added = win == LOC(p->input, start);
    else if (!has_ok && (added = doneset_add(p->written, path, len)) < 0)
        p->oom = 1;
    if (added > 0) {
        fwrite(p->text + start, 1, end - start, p->f);
        p->rows_out++;
    }
}

/* One pass over one input's rows (on_row does the pass's work). 0, or -1 with a message. */
static int pass_over(struct merge *m, const struct input *in)
{
    struct pass *p = &m->pass;
    char err[300];
    size_t complete;
    p->text = in->text;
    p->input = (int)(in - m->in);
    if (!m->header)
        return 0; /* JSON Lines with no whole row anywhere: nothing to merge */
    int64_t got = results_rows(m->format, in->text, in->len, m->header, on_row, p, &complete, err, sizeof err);
    if (got == -2 || p->oom) {
        fprintf(stderr, "annotate merge: out of memory reading %s\n", in->name);
        return -1;
    }
    if (p->bad)
        return -1;
    if (got < 0) {
        /* The reader's words are a resume's: "this pipeline" is the first input's here. */
        fprintf(stderr, "annotate merge: %s: %s%s\n", in->name, err,
                strstr(err, "this pipeline") ? " (all inputs must come from the same pipeline)" : "");
        return -1;
    }
    if (!p->second && complete < in->len)
        fprintf(stderr, "annotate merge: %s ends in a torn row (%zu bytes), ignored\n", in->name, in->len - complete);
    return 0;
}

/* After the first pass: images whose ok rows hold different results exit 2, naming them, unless
 * --prefer says which row wins. 0, or -1 with a message on stderr. */
static int refuse_conflicts(const struct merge *m)
{
    uint64_t n = m->pass.conflicts;
    if (!n || m->prefer != PREFER_NONE)
        return 0;
    fprintf(stderr, "annotate merge: %llu image%s ha%s ok rows with different results, and the merge would keep "
                    "whichever came first:\n", (unsigned long long)n, n == 1 ? "" : "s", n == 1 ? "s" : "ve");
    for (uint64_t i = 0; i < n && i < sizeof m->conflict / sizeof m->conflict[0]; i++)
        fprintf(stderr, "annotate merge:   %s\n", m->conflict[i]);
    if (n > sizeof m->conflict / sizeof m->conflict[0])
        fprintf(stderr, "annotate merge:   and %llu more\n",
                (unsigned long long)(n - sizeof m->conflict / sizeof m->conflict[0]));
    fprintf(stderr, "annotate merge: say which row wins with --prefer first (the earlier file's) or --prefer last "
                    "(the later file's)\n");
    return -1;
}

/* The first pass collects the paths that have an ok row (and where the winning one is); the
 * second writes each path's winning row once. */
static int merge_rows(struct merge *m)
{
    struct pass *p = &m->pass;
    p->m = m;
    p->ok = doneset_new();
    p->written = doneset_new();
    p->dirs = doneset_new();
    p->norms = doneset_new();
    if (!p->ok || !p->written || !p->dirs || !p->norms) {
        fprintf(stderr, "annotate merge: out of memory\n");
        return -1;
    }
    for (p->second = 0; p->second < 2; p->second++) {
        if (p->second && (refuse_conflicts(m) || open_output(m)))
            return -1;
        for (int i = 0; i < m->n; i++)
            if (pass_over(m, &m->in[i]))
                return -1;
    }
    return 0;
}

/* The temporary file, on disk, renamed over OUT while still locked. */
static int commit(struct merge *m)
{
    FILE *f = m->pass.f;
    if (fflush(f) || ferror(f) || fsync(fileno(f)) || rename(m->tmp, m->out)) {
        fprintf(stderr, "annotate merge: cannot write %s: %s\n", m->out, strerror(errno));
        return -1;
    }
    return 0;
}

/* On a failure the temporary file is removed while still locked; then everything is let go. */
static void merge_end(struct merge *m, int rc)
{
    if (rc && m->own_tmp)
        unlink(m->tmp);
    if (m->pass.f)
        fclose(m->pass.f);
    if (m->tmp_fd >= 0)
        close(m->tmp_fd);
    doneset_free(m->pass.ok);
    doneset_free(m->pass.written);
    doneset_free(m->pass.dirs);
    doneset_free(m->pass.norms);
    for (size_t i = 0; i < m->pass.n_spellings; i++) {
        free(m->pass.spellings[i].raw);
        free(m->pass.spellings[i].example);
    }
    free(m->pass.spellings);
    for (int i = 0; m->in && i < m->n; i++)
        if (m->in[i].map)
            munmap(m->in[i].map, m->in[i].len);
    free(m->in);
    free(m->header);
}

static const char usage[] =
    "usage: annotate merge [--prefer first|last] OUT.csv SHARD.csv...\n"
    "       annotate merge [--prefer first|last] OUT.jsonl SHARD.jsonl...\n"
    "Combines results files into OUT with one row per image: an ok row wins over a failed one.\n"
    "An image with two ok rows whose results differ exits 2, naming it, unless --prefer says\n"
    "which wins: first (the row of the file named earlier) or last (of the file named later).\n";

/* The options before OUT: --prefer first|last (or --prefer=...), then "--" or the first word
 * that is not an option. Returns the index of OUT, 0 for --help, or -1 with a message. */
static int merge_options(int argc, char **argv, struct merge *m)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--"))
            return i + 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 0;
        if (!strcmp(a, "--prefer") && i + 1 < argc)
            v = argv[++i];
        else if (!strncmp(a, "--prefer=", 9))
            v = a + 9;
        if (v && (!strcmp(v, "first") || !strcmp(v, "last"))) {
            m->prefer = !strcmp(v, "first") ? PREFER_FIRST : PREFER_LAST;
            continue;
        }
        if (v || !strcmp(a, "--prefer"))
            fprintf(stderr, "annotate merge: --prefer %s: say first or last\n", v ? v : "needs a value:");
        else
            fprintf(stderr, "annotate merge: unknown option %s\n", a);
        return -1;
    }
    return i;
}

int merge_main(int argc, char **argv)
{
    struct merge m = {.tmp_fd = -1};
    int at = merge_options(argc, argv, &m);
    if (at <= 0 || argc - at < 2) {
        fputs(usage, at == 0 ? stdout : stderr);
        return at == 0 ? 0 : 2;
    }
    if (argc - at > 65535) {
        fprintf(stderr, "annotate merge: at most 65535 inputs at once (merge them in groups)\n");
        return 2;
    }
    m.out = argv[at];
    m.names = argv + at + 1;
    m.n = argc - at - 1;
    int rc = prepare(&m) || map_inputs(&m) || merge_rows(&m) || commit(&m) ? 2 : 0;
    if (rc == 0)
        fprintf(stderr, "annotate merge: %llu rows in, %llu images out, in %s\n", m.pass.rows_in, m.pass.rows_out,
                m.out);
    if (rc == 0 && m.pass.conflicts)
        fprintf(stderr, "annotate merge: %llu image%s had ok rows with different results: kept the %s file's row "
                        "(--prefer %s)\n", (unsigned long long)m.pass.conflicts, m.pass.conflicts == 1 ? "" : "s",
                m.prefer == PREFER_FIRST ? "earlier" : "later", m.prefer == PREFER_FIRST ? "first" : "last");
    merge_end(&m, rc);
    return rc;
}
